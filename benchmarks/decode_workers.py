"""Decode processes or none: indexing speed on this machine with ``--workers 0`` and ``--workers 1``.

Indexes the same photos with the default model (INT8, as a new index) and, optionally, VGG16 pruned
to 50% of its FLOPs (not recovered: speed only), alternating the two settings ``--runs`` times each:
- ``small``: the first ``--photos`` benchmark photos (photos/samples/vacation + pixabay, as
  benchmarks/model_variants.py), a fraction of a megapixel each;
- ``12MP``: ``--big`` pixabay photos upscaled to 4000 px on the long side and saved as JPEG q90
  (about 12 megapixels, what a phone writes), so decoding costs what it costs for real libraries.
``indexer.update.updater.default_workers`` takes 0 on 2 cores from this measurement.

Run:  PYTHONPATH=. python benchmarks/decode_workers.py [--photos 150] [--big 40] [--runs 2] [--pruned]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from model_variants import DATA, exported, int8_copy, photo_folder, probe_models  # noqa: E402


def big_folder(tmp: Path, n: int) -> Path:
    from PIL import Image

    out = tmp / "12MP"
    out.mkdir()
    for i, p in enumerate(sorted((DATA / "photos" / "samples" / "pixabay").rglob("*.jp*g"))[:n]):
        im = Image.open(p).convert("RGB")
        s = 4000 / max(im.size)
        im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.BICUBIC).save(
            out / f"{i:03d}.jpg", quality=90
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=150)
    ap.add_argument("--big", type=int, default=40)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--pruned", action="store_true", help="also VGG16 pruned to 50%% of its FLOPs")
    args = ap.parse_args()

    from indexer import Index

    tmp = Path(tempfile.mkdtemp(prefix="vgg-workers-"))
    try:
        small = photo_folder(tmp, args.photos)
        folders = {"small": small, "12MP": big_folder(tmp, args.big)}
        rows = []
        for name, s, n in probe_models(pruned=args.pruned):
            d8 = int8_copy(exported(s, n, tmp / name), small, tmp / f"{name}-8")
            for label, folder in folders.items():
                got = {0: [], 1: []}
                for k in range(args.runs):
                    for w in (0, 1):
                        with Index.create(
                            tmp / f"ix-{len(rows)}-{label}-{k}-{w}", s, net=n, model_dir=d8
                        ) as idx:
                            got[w].append(idx.update([folder], progress=False, workers=w).images_per_second)
                rows.append((name, label, len(list(folder.iterdir())), got))
                print(f"  {name} {label}: {got}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        "\n| model | photos | n | img/s, decode in-process (best) | img/s, 1 decode process (best) | ratio |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for name, label, n, got in rows:
        a, b = max(got[0]), max(got[1])
        print(f"| {name} | {label} | {n} | {a:.2f} | {b:.2f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
