"""Prune + label-free distil in one call: the library behind ``vgg-retrieval optimize``.

``optimize_model`` prunes a teacher to a FLOPs target (``retrieval.compress.prune.prune_model``), recovers
it on unlabelled photos (``retrieval.compress.distill.distill``: closed-form layer refit, then descriptor
distillation) and writes a normal checkpoint (spec with the pruned widths, so its model id differs
from the teacher's and the two models' descriptors never share an index) plus a JSON report.
``indexer.student.optimize_index`` does the same for the model of an existing index, whose
stored descriptors stand in for the teacher on the plain views of its photos.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from retrieval.errors import UserError

from .defaults import EPOCHS, ROUND_TO  # noqa: F401 - the defaults optimize_model uses
from .distill import DistillConfig, descriptor_cosine, distill, save_student
from .prune import count_params, gflops, prune_model


def optimize_model(
    teacher,
    spec,
    paths,
    out,
    flops: float = 0.5,
    keep_last: bool = True,
    cfg=None,
    teacher_vectors=None,
    progress=None,
    round_to: int = ROUND_TO,
) -> dict:
    """Prune ``teacher`` (a DescriptorNet with ``spec``; a classifier head is kept) to ``flops`` of
    its FLOPs, distil it on ``paths`` and save it to the checkpoint ``out``; returns the report
    (also written next to it as ``<out>.json``)."""
    cfg = cfg or DistillConfig()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        student, pspec, kept = prune_model(teacher, spec, flops=flops, keep_last=keep_last, round_to=round_to)
    except ValueError as e:
        raise UserError(str(e)) from None
    t = time.perf_counter()
    run = distill(
        student, teacher, paths, cfg, spec=spec, teacher_vectors=teacher_vectors, kept=kept, progress=progress
    )
    idx = list(range(0, len(paths), max(1, len(paths) // 64)))[:64]  # a fixed sample, seen as search sees it
    held = [paths[i] for i in idx]
    cos = descriptor_cosine(
        student,
        held,
        spec.input_geometry,
        teacher=teacher if teacher_vectors is None else None,
        teacher_vectors=None if teacher_vectors is None else teacher_vectors[idx],
        kept=kept,
        trim=spec.trim_borders,
    )
    save_student(out, pspec, student, config={"extra": {"distilled_from": spec.model_id, "flops": flops}})
    report = {
        "checkpoint": str(out),
        "teacher_model_id": spec.model_id,
        "flops_target": flops,
        "keep_last": keep_last,
        "widths": list(pspec.widths),
        "descriptor_dim": pspec.descriptor_dim,
        "photos": len(paths),
        "teacher": {"gflops": gflops(teacher, spec.input_size), "params": count_params(teacher)},
        "student": {
            "gflops": gflops(student, spec.input_size),
            "params": count_params(student),
            "file_mb": out.stat().st_size / 1e6,
        },
        "cosine_to_teacher": {"mean": float(cos.mean()), "min": float(cos.min()), "photos": len(held)},
        "seconds": time.perf_counter() - t,
        "distill": run,
    }
    Path(str(out) + ".json").write_text(json.dumps(report, indent=2, default=str))
    return report
