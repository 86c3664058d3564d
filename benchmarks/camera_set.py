"""Camera-size photo folders for the dedup speed tables (docs/dedup.md, sixth pass): every other set
there is 400-1000 px, and a camera's 12 MP JPEG costs dedup far more to decode and resample.

* ``OUT/h12``: the first ``--series`` photos of retrieval/holidays150 (same-scene series, no
  copies) upscaled to 4000 px on the long side, JPEG quality 90, as a phone writes them;
* ``OUT/h12c``: every 15th of those at quality 95, each with one copy per kind of ``KINDS`` made by
  ``near_duplicates.edit`` (seed 0).

Index each folder (``python -m indexer index OUT/h12c --index IDX``), link the index as
``WORK/idx-h12c`` and time it with ``benchmarks/dedup_speed.py --work WORK --sets h12c``.
Run:  python benchmarks/camera_set.py OUT [--series 120]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from near_duplicates import edit  # noqa: E402 - the benchmark folder's own module

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "retrieval" / "holidays150" / "images"
KINDS = ("resize", "crop", "jpeg", "border", "color", "rotate", "hflip", "overlay", "screenshot", "banner")
SIDE = 4000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--series", type=int, default=120, help="holidays150 photos to upscale [120]")
    ap.add_argument("--data", type=Path, default=DATA, help="the holidays150 images folder")
    args = ap.parse_args()
    series, copies = args.out / "h12", args.out / "h12c"
    series.mkdir(parents=True, exist_ok=True)
    copies.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for n, path in enumerate(sorted(args.data.glob("*.jpg"))[: args.series]):
        im = Image.open(path).convert("RGB")
        scale = SIDE / max(im.size)
        big = im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC)
        big.save(series / path.name, quality=90)
        if n % 15 == 0:
            big = Image.open(series / path.name).convert("RGB")  # the photo as its file holds it
            big.save(copies / path.name, quality=95)
            for kind in KINDS:
                out, _, quality = edit(big, kind, rng)
                out.convert("RGB").save(copies / f"{path.stem}__{kind}.jpg", quality=quality)
    print(f"{series}: {len(list(series.iterdir()))} photos; {copies}: {len(list(copies.iterdir()))} photos")


if __name__ == "__main__":
    main()
