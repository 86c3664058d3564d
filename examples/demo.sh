#!/usr/bin/env bash
# Set up, index the bundled sample photos (27 in 8 folders), learn classes from those folders (3+ photos
# each), and search with three photos that are not in the index: a cat, a ship, and a laptop (which is
# none of the folders' classes: "none of these"). Then: vgg-retrieval ui --index demo-index
# Weights: $VGG_RETRIEVAL_WEIGHTS if set, else the shared local VGG16 trunk if present (its .pth needs
# PyTorch; a .safetensors copy beside it does not), else IMAGENET1K_V1 (downloaded on a connected
# machine: torchvision's, or without PyTorch the same tensors from the Hugging Face hub).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q -e .
shared=../shared/data/weights/vgg16_features_imagenet_like
if [ -z "${VGG_RETRIEVAL_WEIGHTS:-}" ]; then
  if [ -f "$shared.safetensors" ]; then
    export VGG_RETRIEVAL_WEIGHTS="$shared.safetensors"
  elif [ -f "$shared.pth" ] && python3 -c "import torch" 2>/dev/null; then
    export VGG_RETRIEVAL_WEIGHTS="$shared.pth"
  fi
fi
vgg-retrieval index examples/photos --index demo-index
vgg-retrieval classes --index demo-index --min-per-class 3
vgg-retrieval search examples/queries/cat01.jpg examples/queries/ship04.jpg examples/queries/laptop01.jpg \
  --index demo-index --top-k 3
vgg-retrieval check --index demo-index
