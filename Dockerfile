# vgg-retrieval: the CLI, the indexer (one-shot and --watch) and the Streamlit UI, on CPU.
#   docker-compose build                                  (see docker-compose.yml and docs/deploy.md)
#   docker build -t vgg-retrieval:0.1.0 .                 (the base install: no PyTorch)
#   docker build -t vgg-retrieval:0.1.0-train --build-arg WITH_TORCH=1 .   (+ PyTorch, CPU build)
# The base image is pinned (a patch release, not a moving "3.11-slim"); set PYTHON_IMAGE to change it.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models/hf \
    TORCH_HOME=/models/torch \
    TQDM_DISABLE=1

# Indexing, search, dedup and the UI run on OpenVINO/ONNX Runtime: the model is written as an ONNX
# graph from the weights (safetensors, or IMAGENET1K_V1 from the Hugging Face hub into $HF_HOME), so the
# image has no PyTorch unless WITH_TORCH=1 (the `train` extra: training, pruning, --engine torch, the
# feature-map page, reading .pth weights). PyTorch then comes from its CPU-only wheel index: the default
# wheels carry CUDA and would make the image several GB larger. TORCH_INDEX_URL changes the index (a mirror).
ARG WITH_TORCH=0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN if [ "${WITH_TORCH}" = "1" ]; then \
        pip install --index-url "${TORCH_INDEX_URL}" "torch>=2.4,<3" "torchvision>=0.19"; \
    fi

WORKDIR /app
COPY pyproject.toml README.md ./
COPY retrieval retrieval
COPY indexer indexer
COPY ui ui
# the package with search by words (`text`) and the PostgreSQL driver (`postgres`: psycopg 3 with its
# bundled libpq); `train` too when WITH_TORCH=1 (its torch is already the CPU build installed above)
RUN extras="text,postgres"; \
    if [ "${WITH_TORCH}" = "1" ]; then extras="${extras},train"; fi; \
    pip install ".[${extras}]"

# an unprivileged user; the index and model volumes start out owned by it; /weights is for a
# read-only bind mount of your own weights files (VGG_RETRIEVAL_WEIGHTS=/weights/NAME.safetensors)
RUN useradd --create-home --uid 1000 vgg \
    && mkdir -p /index /models/hf /models/torch /photos /weights \
    && chown -R vgg:vgg /index /models
USER vgg
VOLUME ["/index", "/models"]
EXPOSE 8501

# The UI's health (Streamlit answers "ok" on /_stcore/health); the slim image has no curl. Containers
# of this image that run no server (the indexer, the watcher) turn it off in docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).read().strip() != b'ok')"]

ENTRYPOINT ["vgg-retrieval"]
CMD ["--help"]
