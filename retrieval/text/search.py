"""The query side of search by words, model only: tokenizers + ONNX Runtime + numpy, never torch.
Searching an index with it is ``TextSearcher``, on the index side (``text_search``).

More: docs/design-notes.md (``retrieval.text.search``)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from retrieval.errors import UserError

TEXT_DIR = "text"
CONFIG = "text.json"
FORMAT = "vgg-retrieval-text"
MAX_QUERY_CHARS = 1000


def text_dir(index_dir) -> Path:
    return Path(index_dir) / TEXT_DIR


def has_text_model(index_dir) -> bool:
    return (text_dir(index_dir) / CONFIG).is_file()


def read_config(index_dir) -> dict:
    d = text_dir(index_dir)
    if not (d / CONFIG).is_file():
        raise UserError(
            f"the index {index_dir} has no text model yet: run vgg-retrieval text-train --index {index_dir}"
        )
    try:
        cfg = json.loads((d / CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise UserError(
            f"cannot read {d / CONFIG}: {str(e).splitlines()[0][:200]}; "
            f"run vgg-retrieval text-train --index {index_dir} again"
        ) from None
    if cfg.get("format") != FORMAT:
        raise UserError(f"{d / CONFIG} is not a vgg-retrieval text model")
    return cfg


class TextQueryModel:
    """The text model in ``INDEX/text/`` of the index at ``index_dir``, made for the image model
    ``model_id`` (``model_name``: how it is shown): query texts and stored descriptors into the shared
    space. Thread-safe (one lock)."""

    def __init__(self, index_dir, model_id: str, model_name: str, threads: int | None = None):
        self.directory = text_dir(index_dir)
        self.config = read_config(index_dir)
        if self.config.get("index_model_id") != model_id:
            raise UserError(
                f"the text model in {self.directory} was trained for another image model than this "
                f"index's ({model_name}): run vgg-retrieval text-train --index "
                f"{index_dir} again"
            )
        for name in ("tokenizer.json", "text.onnx", "image.onnx"):
            if not (self.directory / name).is_file():
                raise UserError(
                    f"{self.directory / name} is missing: run vgg-retrieval text-train --index "
                    f"{index_dir} again"
                )
        self.threads = threads
        self.dim = int(self.config["dim"])
        self._lock = threading.RLock()
        self._tok = self._text = self._image = None

    # --- models -------------------------------------------------------------------------------
    def _session(self, name: str):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        opts.log_severity_level = 3
        return ort.InferenceSession(str(self.directory / name), opts, providers=["CPUExecutionProvider"])

    def _tokenizer(self):
        if self._tok is None:
            try:
                from tokenizers import Tokenizer
            except ImportError:
                raise UserError(
                    "search by words needs its extra: pip install 'vgg-retrieval[text]'"
                ) from None

            tok = Tokenizer.from_file(str(self.directory / "tokenizer.json"))
            tok.enable_truncation(int(self.config.get("max_length", 64)))
            tok.enable_padding(
                pad_id=int(self.config.get("pad_id", 0)), pad_token=self.config.get("pad_token", "[PAD]")
            )
            self._tok = tok
        return self._tok

    def embed_texts(self, texts) -> np.ndarray:
        """Shared-space embeddings [N, dim] (L2-normalised) of query texts."""
        texts = [self.check_query(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            if self._text is None:
                self._text = self._session("text.onnx")
            enc = self._tokenizer().encode_batch(texts)
            ids = np.array([e.ids for e in enc], np.int64)
            mask = np.array([e.attention_mask for e in enc], np.int64)
            out = self._text.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return np.ascontiguousarray(out, np.float32)

    @staticmethod
    def check_query(text) -> str:
        text = " ".join(str(text or "").split())
        if not text:
            raise UserError('the text query is empty: describe what to find, e.g. --text "a red flower"')
        return text[:MAX_QUERY_CHARS]

    # --- stored descriptors ------------------------------------------------------------------
    def project_descriptors(self, descriptors: np.ndarray) -> np.ndarray:
        with self._lock:
            if self._image is None:
                self._image = self._session("image.onnx")
            out = [
                self._image.run(
                    None, {"descriptor": np.ascontiguousarray(descriptors[i : i + 4096], np.float32)}
                )[0]
                for i in range(0, len(descriptors), 4096)
            ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
