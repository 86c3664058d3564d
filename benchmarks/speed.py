"""Indexing speed against the engine's own, and what creating a new index costs: one table, one run.

In one run, on this CPU (its model name and flags are printed with the table):
- ``engine alone``: the INT8 model (as a new index makes it where INT8 pays: ``int8_gain``) on batches of 8 prepared
  beforehand (decoding, trimming and bucketing done before the clock starts): the rate an update
  could reach;
- ``index``: ``Index.update`` end to end, wall clock around the whole call (scan, decode, trim,
  embed, commit, classifier refit), with the same model already made, on ``400x300`` photos
  (retrieval/holidays150, as personal photos come) and on ``12MP`` JPEGs (pixabay photos upscaled to
  4000 px, q90, as a phone writes them); ``x engine``: its ratio to the engine alone on the same
  photos (the issue's target: 0.80);
- ``new index``: ``vgg-retrieval index FOLDER --index NEW -q`` as a whole process (imports, model
  export, INT8 calibration where the precision asks for it, embedding, commit) on ``--new`` photos,
  with the defaults (INT8, or FP32 where this CPU's INT8 does not pay), with ``--precision fp32``
  and, where the CPU runs bf16, ``--precision bf16``;
  the runs alternate, median of ``--runs``; ``x fp32``: the default's time over fp32's (<= 1: the
  defaults cost no more to start with).
The model-by-model table (FP32/INT8/pruned, latency, size, mAP) is ``benchmarks/model_variants.py``.

Run:  PYTHONPATH=. python benchmarks/speed.py [--photos 200] [--big 40] [--new 120] [--runs 3]
Speed figures are noisy on shared machines: run it idle and compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from decode_overlap import cpu_line, engine_rate  # noqa: E402
from decode_workers import big_folder  # noqa: E402
from model_variants import DATA, WEIGHTS, exported, int8_copy, probe_models  # noqa: E402

HOLIDAYS = DATA / "retrieval" / "holidays150" / "images"


def linked(tmp: Path, name: str, photos: list[Path]) -> Path:
    folder = tmp / name
    folder.mkdir()
    for p in photos:
        (folder / p.name).symlink_to(p)
    return folder


def timed_update(folder: Path, tmp: Path, spec, net, model_dir: Path, runs: int) -> tuple[float, object]:
    """Median img/s of ``runs`` updates of ``folder`` into new indexes of the made model, and the last
    index (open) for the engine's own rate."""
    from indexer import Index

    rates, idx = [], None
    for k in range(runs):
        if idx is not None:
            idx.close()
        idx = Index.create(tmp / f"ix-{folder.name}-{k}", spec, net=net, model_dir=model_dir)
        t = time.perf_counter()
        report = idx.update([folder], progress=False)
        rates.append(report.added / (time.perf_counter() - t))
    return statistics.median(rates), idx


def new_index_seconds(folder: Path, tmp: Path, precisions: list[str], runs: int) -> dict[str, float]:
    """Median seconds of ``vgg-retrieval index`` making a new index of ``folder`` at each precision
    (None: the defaults), the precisions alternated run by run."""
    env = dict(os.environ, VGG_RETRIEVAL_WEIGHTS=str(WEIGHTS), PYTHONPATH=str(ROOT))
    got: dict[str, list[float]] = {p: [] for p in precisions}
    for k in range(runs):
        for p in precisions:
            ix = tmp / f"new-{p}-{k}"
            extra = [] if p == "default" else ["--precision", p]
            cmd = [sys.executable, "-m", "indexer", "index", str(folder), "--index", str(ix), "-q", *extra]
            t = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            got[p].append(time.perf_counter() - t)
            shutil.rmtree(ix, ignore_errors=True)
            print(f"  new index {p}: {got[p][-1]:.1f} s", file=sys.stderr, flush=True)
    return {p: statistics.median(v) for p, v in got.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200, help="400x300 photos of the index rows")
    ap.add_argument("--big", type=int, default=40, help="12-MP JPEGs of the index rows")
    ap.add_argument("--new", type=int, default=120, help="photos of the new-index rows")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from retrieval.engines import cpu_runs_bf16

    photos = sorted(HOLIDAYS.glob("*.jpg"))
    tmp = Path(tempfile.mkdtemp(prefix="vgg-speed-"))
    rows = []
    try:
        small = linked(tmp, "400x300", photos[: args.photos])
        folders = [small, big_folder(tmp, args.big)]
        name, spec, net = probe_models()[0]
        d8 = int8_copy(exported(spec, net, tmp / "fp32"), small, tmp / "int8")
        for folder in folders:
            rate, idx = timed_update(folder, tmp, spec, net, d8, args.runs)
            with idx:
                engine = engine_rate(idx, folder, args.runs)
            rows.append((folder.name, len(list(folder.iterdir())), engine, rate))
            print(
                f"  {folder.name}: engine {engine:.1f}, index {rate:.1f} img/s", file=sys.stderr, flush=True
            )
        precisions = ["default", "fp32"] + (["bf16"] if cpu_runs_bf16() else [])
        new = linked(tmp, "new", photos[args.photos : args.photos + args.new] or photos[: args.new])
        n_new = len(list(new.iterdir()))
        seconds = new_index_seconds(new, tmp, precisions, args.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from indexer.opening import default_precision
    from retrieval.engines import int8_gain

    default = default_precision("openvino")
    print(f"\n{cpu_line()}; {name} ({spec.describe()}), batch 8, median of {args.runs}")
    print(
        f"INT8 convolutions here: {int8_gain():.2f}x FP32 (retrieval.engines.int8_gain), so a new "
        f"index's default is {default.upper()}; the rows below run the INT8 model"
    )
    print("\n| photos | n | engine alone img/s | index img/s | x engine |")
    print("|---|---:|---:|---:|---:|")
    for label, n, engine, rate in rows:
        print(f"| {label} | {n} | {engine:.1f} | {rate:.1f} | {rate / engine:.2f} |")
    print(f"\n| new index of {n_new} photos (400x300), whole command | seconds | x fp32 |")
    print("|---|---:|---:|")
    for p, s in seconds.items():
        label = f"defaults ({default.upper()})" if p == "default" else f"--precision {p}"
        print(f"| {label} | {s:.1f} | {s / seconds['fp32']:.2f} |")


if __name__ == "__main__":
    main()
