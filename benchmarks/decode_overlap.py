"""Indexing at the engine's speed: decoding and trimming in a thread beside inference, or in line.

For the default model (INT8, as a new index makes it), in one run:
- ``engine``: the engine alone on prepared batches (decoding, trimming and bucketing done before
  the clock starts): the rate an update could reach;
- ``index``: ``Index.update`` end to end (decode, trim, embed, commit) with the decoding thread
  (``LocalEmbedding.overlap``, the default) and without it, alternated ``--runs`` times;
on ``small`` photos (the speed benchmark's photos, well under a megapixel) and ``12MP`` JPEGs (pixabay
photos upscaled to 4000 px, q90, as a phone writes them). Prints the CPU's flags with the table.

Run:  PYTHONPATH=. python benchmarks/decode_overlap.py [--photos 200] [--big 40] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from decode_workers import big_folder  # noqa: E402
from model_variants import exported, int8_copy, photo_folder, probe_models  # noqa: E402


def cpu_line() -> str:
    info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("Model name")), "?")
    flags = [
        f
        for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
        if f" {f}" in info
    ]
    return f"{name}, {len(__import__('os').sched_getaffinity(0))} cores, flags: {' '.join(flags)}"


def engine_rate(idx, folder: Path, runs: int) -> float:
    """img/s of the index's engine on batches prepared beforehand (best of ``runs``)."""
    from retrieval.preprocess import load_and_prepare

    emb = idx.embedder
    by_shape: dict = {}  # full batches of one input shape each, as an update makes them
    for path in sorted(folder.iterdir()):
        p = load_and_prepare(path, emb.spec.input_geometry)
        images, sizes = emb.prepare_batch([p.array], np.array([p.valid], dtype=np.int64))
        by_shape.setdefault(images[0].shape, []).append((images[0], sizes[0]))
    prepared = [e for group in by_shape.values() for e in group]
    bs = idx.batch_size
    batches = [
        (
            [e[0] for e in group[i : i + bs]],
            np.array([e[1] for e in group[i : i + bs]], dtype=np.int64),
        )
        for group in by_shape.values()
        for i in range(0, len(group), bs)
    ]
    list(emb.embed_stream(batches[:2], ready=True))  # compile every shape first
    best = 0.0
    for _ in range(runs):
        t = time.perf_counter()
        for _ in emb.embed_stream(batches, ready=True):
            pass
        best = max(best, len(prepared) / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--big", type=int, default=40)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    from indexer import Index
    from indexer.update.embedding import LocalEmbedding

    tmp = Path(tempfile.mkdtemp(prefix="vgg-overlap-"))
    rows = []
    try:
        small = photo_folder(tmp, args.photos)
        folders = {"small": small, "12MP": big_folder(tmp, args.big)}
        name, spec, net = probe_models()[0]
        d8 = int8_copy(exported(spec, net, tmp / "fp32"), small, tmp / "int8")
        for label, folder in folders.items():
            got = {True: [], False: []}
            for k in range(args.runs):
                for overlap in (True, False):
                    LocalEmbedding.overlap = overlap
                    with Index.create(tmp / f"ix-{label}-{k}-{overlap}", spec, net=net, model_dir=d8) as idx:
                        got[overlap].append(idx.update([folder], progress=False, workers=0).images_per_second)
                        if k == 0 and overlap:
                            engine = engine_rate(idx, folder, args.runs)
                    print(
                        f"  {label} overlap={overlap}: {got[overlap][-1]:.1f} img/s",
                        file=sys.stderr,
                        flush=True,
                    )
            rows.append((label, len(list(folder.iterdir())), engine, got))
    finally:
        LocalEmbedding.overlap = True
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{name}, batch 8, decoding in-process; {cpu_line()}")
    print(
        "\n| photos | n | engine alone img/s | index, in line (median) | index, decode thread (median) "
        "| thread / in line | thread / engine |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, n, engine, got in rows:
        a, b = statistics.median(got[False]), statistics.median(got[True])
        print(f"| {label} | {n} | {engine:.1f} | {a:.1f} | {b:.1f} | {b / a:.2f} | {b / engine:.2f} |")


if __name__ == "__main__":
    main()
