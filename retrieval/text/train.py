"""Training search by words: captioned descriptors -> trained projections -> ``INDEX/text/``
(the index side's ``text_search.train_text_model`` gathers the captions of an index)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import UserError

from .search import CONFIG, FORMAT, TEXT_DIR


@dataclass
class TextTrainReport:
    images: int
    captions: int
    initial_loss: float
    final_loss: float
    losses: list
    seconds: float
    text_model: str
    out: Path

    def summary(self) -> str:
        return (
            f"trained on {self.images} captioned images ({self.captions} distinct captions) in "
            f"{self.seconds:.1f}s: contrastive loss {self.initial_loss:.3f} -> {self.final_loss:.3f}; "
            f"wrote {self.out}"
        )


def train_text_model(
    index_dir,
    image_spec,
    vecs,
    captions,
    per_image,
    text_model: str | None = None,
    epochs: int = 60,
    dim: int = 256,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    log=None,
) -> TextTrainReport:
    """Train the joint embedding on captioned descriptors (``vecs`` [N, D] of the image model
    ``image_spec``, ``per_image``: indices into ``captions``) and write ``index_dir/text/``
    (replacing any previous one only once the new one is complete)."""
    t0 = time.perf_counter()
    index_dir = Path(index_dir)
    if len(vecs) < 2:
        raise UserError(
            f"found {len(vecs)} captioned images in {index_dir}: search by words learns from "
            f"folder names, file names and caption files (IMAGE.txt); index labelled folders first"
        )
    if len(captions) < 2:
        raise UserError(
            f"all {len(vecs)} images share one caption ({captions[0]!r}): nothing to tell apart; "
            f"index images in folders named by what they show, or add IMAGE.txt captions"
        )
    from .model import (
        MAX_LENGTH,
        encode_sentences,
        export_image_tower,
        export_text_tower,
        load_text_encoder,
        train_projections,
    )  # lazy: loads torch only when used

    if log:
        log(f"{len(vecs)} captioned images, {len(captions)} distinct captions; loading the text model")
    tok, enc, resolved = load_text_encoder(text_model)
    cap_vecs = encode_sentences(tok, enc, captions)
    res = train_projections(
        vecs, cap_vecs, per_image, dim=dim, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, log=log
    )
    final = index_dir / TEXT_DIR
    tmp = index_dir / f".{TEXT_DIR}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        export_text_tower(tok, enc, res.text_proj, tmp / "text.onnx")
        export_image_tower(res.image_proj, vecs.shape[1], tmp / "image.onnx")
        tok.backend_tokenizer.save(str(tmp / "tokenizer.json"))
        _save_heads(res, int(cap_vecs.shape[1]), int(vecs.shape[1]), dim, tmp / "heads.pt")
        digest = hashlib.sha256((tmp / "image.onnx").read_bytes()).hexdigest()[:12]
        cfg = {
            "format": FORMAT,
            "version": 1,
            "index_model_id": image_spec.model_id,
            "index_model": image_spec.describe(),
            "text_model": resolved if not os.path.isdir(resolved) else (text_model or "all-MiniLM-L6-v2"),
            "text_hidden": int(enc.config.hidden_size),
            "dim": dim,
            "image_dim": int(vecs.shape[1]),
            "temperature": 1.0 / res.logit_scale,
            "max_length": MAX_LENGTH,
            "pad_id": int(tok.pad_token_id or 0),
            "pad_token": tok.pad_token or "[PAD]",
            "images": int(len(vecs)),
            "captions": len(captions),
            "epochs": epochs,
            "seed": seed,
            "initial_loss": res.initial_loss,
            "final_loss": res.final_loss,
            "trained_at": time.time(),
            "trained_at_key": digest,
        }
        (tmp / CONFIG).write_text(json.dumps(cfg, indent=2))
        old = index_dir / f".{TEXT_DIR}.{os.getpid()}.old"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return TextTrainReport(
        len(vecs),
        len(captions),
        res.initial_loss,
        res.final_loss,
        res.losses,
        time.perf_counter() - t0,
        cfg["text_model"],
        final,
    )


def _save_heads(res, text_in: int, image_in: int, dim: int, path: Path) -> None:
    """The trained heads, for checks and further training (search reads the ONNX files)."""
    import torch

    torch.save(
        {
            "text_proj": res.text_proj.state_dict(),
            "image_proj": res.image_proj.state_dict(),
            "logit_scale": res.logit_scale,
            "text_in": text_in,
            "image_in": image_in,
            "dim": dim,
        },
        path,
    )
