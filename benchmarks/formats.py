"""Indexing speed per file format: the same photos as JPEG, HEIC, AVIF and DNG, in one run.

The photos (photos/samples/pixabay, then vacation) are written in each format at two sizes:
- ``small``: as they are (under 1 megapixel, what a web or chat copy holds);
- ``12MP``: upscaled to 4032 px on the long side, about 12 megapixels (what phones and most
  cameras write), where decoding costs what it costs in a real library.
JPEG is saved at quality 90, HEIC (pillow-heif, x265) at 90, with a 320 px thumbnail as iPhones
write it (``HEIC+thumbnail``: decoded instead of the picture when big enough) or without one,
AVIF (Pillow) at 80, each with the photo's EXIF. The DNGs are real DNG files (tifffile): the photo as a
12-bit RGGB Bayer mosaic with
the DNG tags LibRaw needs, and an RGB preview a quarter of the size in IFD 0, as cameras write
(``DNG+preview``: the preview is big enough for the model, so it is used), or without one (``DNG
raw only``: half-size demosaic). Each folder is indexed by a new index with the default model
(VGG16, INT8 calibrated on the small JPEGs, OpenVINO) and the default decode workers; ``decode
img/s`` is ``load_and_prepare`` alone (decode, orient, resize) in this process. Ratios are against
JPEG at the same size. The machine is shared: repeat a run before trusting a difference of 10%.

Run:  PYTHONPATH=. python benchmarks/formats.py [--photos 100] [--big 20] [--runs 1]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from model_variants import DATA, exported, int8_copy, probe_models  # noqa: E402

FORMATS = ("JPEG", "HEIC+thumbnail", "HEIC", "AVIF", "DNG+preview", "DNG raw only")


def sources(n: int) -> list[Path]:
    base = DATA / "photos" / "samples"
    found = sorted((base / "pixabay").glob("*.jpg")) + sorted((base / "vacation").glob("*.jpg"))
    return found[:n]


def write_dng(rgb: np.ndarray, dest: Path, preview: bool) -> None:
    """A real DNG of the RGB uint8 picture ``rgb``: RGGB mosaic (12 bit) + DNG tags (+ RGB preview)."""
    from tests.dng import write_dng as write

    write(rgb, dest, preview=4 if preview else None, camera="benchmark camera")


def write_folders(tmp: Path, photos: list[Path], label: str, long_side: int | None) -> dict[str, Path]:
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    out = {f: tmp / label / f.replace(" ", "_").replace("+", "_") for f in FORMATS}
    for d in out.values():
        d.mkdir(parents=True)
    for i, p in enumerate(photos):
        src = Image.open(p)
        exif = src.getexif().tobytes()
        im = src.convert("RGB")
        if long_side:
            s = long_side / max(im.size)
            im = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.BICUBIC)
        im.save(out["JPEG"] / f"{i:03d}.jpg", quality=90, exif=exif)
        im.save(out["HEIC+thumbnail"] / f"{i:03d}.heic", "HEIF", quality=90, exif=exif, thumbnails=[320])
        im.save(out["HEIC"] / f"{i:03d}.heic", "HEIF", quality=90, exif=exif)
        im.save(out["AVIF"] / f"{i:03d}.avif", "AVIF", quality=80, exif=exif, speed=8)
        a = np.asarray(im)
        write_dng(a, out["DNG+preview"] / f"{i:03d}.dng", preview=True)
        write_dng(a, out["DNG raw only"] / f"{i:03d}.dng", preview=False)
    return out


def decode_rate(folder: Path, geometry) -> float:
    from retrieval.preprocess import load_and_prepare

    files = sorted(folder.iterdir())
    t0 = time.perf_counter()
    for f in files:
        load_and_prepare(f.read_bytes(), geometry, name=f.name)
    return len(files) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=100, help="photos at their own size")
    ap.add_argument("--big", type=int, default=20, help="of them, upscaled to ~12 MP")
    ap.add_argument("--runs", type=int, default=1, help="indexing runs per folder (the best is shown)")
    args = ap.parse_args()

    from indexer import Index

    tmp = Path(tempfile.mkdtemp(prefix="vgg-formats-"))
    try:
        photos = sources(args.photos)
        t0 = time.perf_counter()
        sets = {
            "small": write_folders(tmp, photos, "small", None),
            "12MP": write_folders(tmp, photos[: args.big], "12MP", 4032),
        }
        print(f"wrote the files in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
        name, spec, net = probe_models()[0]
        model = int8_copy(exported(spec, net, tmp / "fp32"), sets["small"]["JPEG"], tmp / "int8")
        rows = []
        for label, folders in sets.items():
            for fmt, folder in folders.items():
                rates = []
                for k in range(args.runs):
                    with Index.create(
                        tmp / f"ix-{label}-{folder.name}-{k}", spec, net=net, model_dir=model
                    ) as idx:
                        rep = idx.update([folder], progress=False)
                        assert not rep.errors, rep.errors[:3]
                        rates.append(rep.images_per_second)
                dec = decode_rate(folder, spec.input_geometry)
                size = sum(f.stat().st_size for f in folder.iterdir()) / len(list(folder.iterdir())) / 1e6
                rows.append((label, fmt, len(list(folder.iterdir())), size, max(rates), dec))
                print(
                    f"  {label} {fmt}: {max(rates):.2f} img/s indexing, {dec:.1f} decode",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nmodel: {name} ({spec.describe()})")
    print("| size | format | files | MB/file | indexing img/s | vs JPEG | decode img/s | vs JPEG |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    base = {r[0]: r for r in rows if r[1] == "JPEG"}
    for label, fmt, n, mb, rate, dec in rows:
        b = base[label]
        print(
            f"| {label} | {fmt} | {n} | {mb:.2f} | {rate:.2f} | {rate / b[4]:.2f} | {dec:.1f} | {dec / b[5]:.2f} |"
        )


if __name__ == "__main__":
    main()
