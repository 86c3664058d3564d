"""OpenVINO's compiled models: one per bucket (dynamic batch size, the engine) against one per
(batch size, bucket) (static shapes, the engine before), indexing the same photos.

With the "buckets" input policy a batch of 8 photos splits into a chunk per bucket, of 1 to 8
photos; static shapes compile a model for every (chunk size, bucket) that comes, about 0.2 s each
for an INT8 VGG16 on this CPU. Each run creates an index (a fresh engine: it compiles what it needs)
and indexes the first ``--photos`` benchmark photos (as benchmarks/model_variants.py), then re-embeds them
with the same engine (``steady``: nothing left to compile). The two rules alternate ``--runs``
times. Models: the default (buckets 224 GeM, INT8, as a new index) and, with ``--student CKPT``,
a pruned + recovered checkpoint in INT8; ``--pruned`` adds VGG16 pruned to 50% of its FLOPs (not
recovered: speed only).

Run:  PYTHONPATH=. python benchmarks/compiled_shapes.py [--photos 200] [--runs 3] [--student CKPT | --pruned]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from model_variants import exported, int8_copy, photo_folder, probe_models  # noqa: E402

from retrieval.engines.openvino_engine import OpenVinoEmbedder  # noqa: E402


class StaticShapes(OpenVinoEmbedder):
    """The rule before: a model compiled for each batch size too (``[n, h, w, 3]``)."""

    def _run(self, images, sizes):
        key = images.shape[:3]
        if key not in self._requests:
            model = self._model.clone()
            model.reshape({"image": list(images.shape), "size": list(sizes.shape)})
            compiled = self._core.compile_model(model, self.device, self.config)
            self._requests[key] = (compiled.create_infer_request(), compiled.output("descriptor"), None)
        request, output, _ = self._requests[key]
        return np.array(request.infer({"image": images, "size": sizes})[output], dtype=np.float32)


def one_run(rule: str, spec, net, model_dir: Path, folder: Path, index_dir: Path) -> tuple[float, float, int]:
    """(index img/s, steady img/s, compiled models) of one fresh index of ``folder``."""
    from indexer import Index
    from retrieval.preprocess import load_and_prepare

    paths = sorted(folder.iterdir())
    with Index.create(index_dir, spec, net=net, model_dir=model_dir) as idx:
        if rule == "static":
            idx._embedder = StaticShapes(spec, model_dir / "model.xml", batch_size=idx.batch_size)
        t = time.perf_counter()
        idx.update([folder], progress=False)
        first = len(paths) / (time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(0, len(paths), idx.batch_size):
            idx.embedder.embed_prepared(
                [load_and_prepare(p, spec.input_geometry) for p in paths[i : i + idx.batch_size]]
            )
        steady = len(paths) / (time.perf_counter() - t)
        return first, steady, len(idx.embedder._requests)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--student", type=Path, default=None, help="checkpoint of a pruned, recovered VGG16")
    ap.add_argument("--pruned", action="store_true", help="also VGG16 pruned to 50%% of its FLOPs")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="vgg-shapes-"))
    try:
        folder = photo_folder(tmp, args.photos)
        rows = []
        for name, s, n in probe_models(args.student, args.pruned):
            d8 = int8_copy(exported(s, n, tmp / name), folder, tmp / f"{name}-8")
            got: dict[str, list] = {"static": [], "dynamic": []}
            for k in range(args.runs):
                for rule in got:
                    got[rule].append(one_run(rule, s, n, d8, folder, tmp / f"ix-{len(rows)}-{rule}-{k}"))
                    print(f"  {name} {rule} run {k}: {got[rule][-1]}", file=sys.stderr, flush=True)
            rows.append((name, got))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{args.photos} photos, median of {args.runs} runs per rule (alternated)\n")
    print("| model | rule | compiled models | index img/s | steady img/s | index x static |")
    print("|---|---|---:|---:|---:|---:|")
    for name, got in rows:
        base = statistics.median(r[0] for r in got["static"])
        for rule, runs in got.items():
            first = statistics.median(r[0] for r in runs)
            print(
                f"| {name} | {'one per (batch size, bucket)' if rule == 'static' else 'one per bucket'} | "
                f"{runs[0][2]} | {first:.2f} | {statistics.median(r[1] for r in runs):.2f} | {first / base:.2f} |"
            )


if __name__ == "__main__":
    main()
