"""The names inside an index folder.

DIR/index.sqlite          metadata (images, errors, roots, meta) - or any SQLAlchemy URL
DIR/database.json         names that database when it is not DIR/index.sqlite (see database_link)
DIR/vectors-<gen>.faiss   the vectors of the committed generation, ids = images.id
DIR/model/                the exported model that made them (ONNX, OpenVINO IR, model.json)
DIR/index.lock            held by the one process allowed to update the index
DIR/.creating             only while the index is being made (see creating)
DIR/dedup-features.sqlite dedup's caches: per-photo verification features (indexer.dedup.featurecache),
                          file facts (factcache) and verified pairs (paircache)
"""

DB_FILE = "index.sqlite"
MODEL_DIR = "model"
LOCK_FILE = "index.lock"
FEATURE_CACHE = "dedup-features.sqlite"
FORMAT = "vgg-retrieval-index"
FORMAT_VERSION = 1
