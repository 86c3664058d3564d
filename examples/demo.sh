#!/usr/bin/env bash
# Set up, index the bundled sample photos and search them with two photos that are not in the index.
# Weights: $VGG_RETRIEVAL_WEIGHTS if set, else the shared local VGG16 trunk if present, else
# torchvision's IMAGENET1K_V1 (downloaded on a connected machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q -e .
if [ -z "${VGG_RETRIEVAL_WEIGHTS:-}" ] && [ -f ../shared/data/weights/vgg16_features_imagenet_like.pth ]; then
  export VGG_RETRIEVAL_WEIGHTS=../shared/data/weights/vgg16_features_imagenet_like.pth
fi
vgg-retrieval index examples/photos --index demo-index
vgg-retrieval search examples/queries/cat03.jpg examples/queries/ship04.jpg --index demo-index --top-k 3
vgg-retrieval check --index demo-index
