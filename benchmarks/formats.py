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
from speed import DATA, exported, int8_copy, probe_models  # noqa: E402

FORMATS = ("JPEG", "HEIC+thumbnail", "HEIC", "AVIF", "DNG+preview", "DNG raw only")


def sources(n: int) -> list[Path]:
    base = DATA / "photos" / "samples"
    found = sorted((base / "pixabay").glob("*.jpg")) + sorted((base / "vacation").glob("*.jpg"))
    return found[:n]


def write_dng(rgb: np.ndarray, dest: Path, preview: bool) -> None:
    """A real DNG of the RGB uint8 picture ``rgb``: RGGB mosaic (12 bit) + DNG tags (+ RGB preview)."""
    import tifffile
    from PIL import Image

    h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    lin = (rgb[:h, :w].astype(np.float32) / 255.0) ** 2.2 * 4095
    cfa = np.empty((h, w), np.uint16)
    cfa[0::2, 0::2], cfa[0::2, 1::2] = lin[0::2, 0::2, 0], lin[0::2, 1::2, 1]
    cfa[1::2, 0::2], cfa[1::2, 1::2] = lin[1::2, 0::2, 1], lin[1::2, 1::2, 2]
    srgb = [
        3.2404542,
        -1.5371385,
        -0.4985314,
        -0.969266,
        1.8760108,
        0.041556,
        0.0556434,
        -0.2040259,
        1.0572252,
    ]
    ifd0 = [
        (50706, "B", 4, (1, 4, 0, 0), True),
        (50708, "s", 0, "benchmark camera", True),
        (50721, "2i", 9, [v for x in srgb for v in (int(round(x * 10000)), 10000)], True),
        (50778, "H", 1, (21,), True),
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),
    ]
    raw_tags = [
        (33421, "H", 2, (2, 2), True),
        (33422, "B", 4, (0, 1, 1, 2), True),
        (50714, "H", 1, (0,), True),
        (50717, "H", 1, (4095,), True),
    ]
    with tifffile.TiffWriter(dest) as t:
        if preview:
            small = np.asarray(
                Image.fromarray(rgb[:h, :w]).resize((w // 4, h // 4), Image.Resampling.BILINEAR)
            )
            t.write(small, photometric="rgb", subfiletype=1, subifds=1, extratags=ifd0, metadata=None)
            t.write(cfa, photometric=32803, subfiletype=0, extratags=raw_tags, metadata=None)
        else:
            t.write(cfa, photometric=32803, subfiletype=0, extratags=ifd0 + raw_tags, metadata=None)


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
