# vgg-retrieval: the CLI, the indexer (one-shot and --watch) and the Streamlit UI, on CPU.
#   docker-compose build            (see docker-compose.yml and docs/deploy.md)
#   docker build -t vgg-retrieval .
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TORCH_HOME=/models/torch \
    TQDM_DISABLE=1

# PyTorch (model export, --weights) from its CPU-only wheel index: the default wheels carry CUDA and
# would make the image several GB larger. Set TORCH_INDEX_URL to another index (or a mirror) to change it.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch>=2.4,<3" "torchvision>=0.19"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY retrieval retrieval
COPY indexer indexer
COPY ui ui
# the package and its PostgreSQL driver (psycopg 3 with its bundled libpq)
RUN pip install . "psycopg[binary]>=3.1"

# an unprivileged user; the index and model volumes start out owned by it
RUN useradd --create-home --uid 1000 vgg \
    && mkdir -p /index /models/torch /photos \
    && chown -R vgg:vgg /index /models
USER vgg
VOLUME ["/index", "/models"]
EXPOSE 8501

ENTRYPOINT ["vgg-retrieval"]
CMD ["--help"]
