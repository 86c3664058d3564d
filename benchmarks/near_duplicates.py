"""Near-duplicate generator: seeded edited copies of real photos, plus a ground-truth file.

For each original it writes ``originals/<name>`` (a re-saved copy) and one copy per edit type in
``copies/<name>__<edit>.jpg``; real photos that are not originals go to ``distractors/``. The ground
truth ``truth.tsv`` has one line per copy: ``original<TAB>copy<TAB>edit<TAB>parameters`` (paths relative
to the output folder). Everything is decided by ``--seed``.

Edit types (parameters drawn per copy):
  crop        keep 60-90% of the area (10-40% cropped away), random aspect and position
  resize      scale 0.25-2x
  jpeg        JPEG quality 10-90
  rotate      rotation by +-(2-10) degrees, corners filled black
  hflip       horizontal mirror
  color       brightness, contrast and saturation each x0.6-1.4
  grey        greyscale
  overlay     a text caption and a logo-like box pasted on the photo
  border      padding of 5-20% of the side in a solid colour
  screenshot  downscaled and pasted into a larger "screen" canvas with UI bars, re-encoded
  combo_crop_jpeg_color  crop 10-30% + colour change + JPEG quality 30-70
  combo_resize_rotate_overlay  resize 0.5-1.5x + rotation +-3-8 deg + overlay
  rot90 / rot180 / rot270  turned by a right angle, no EXIF orientation (a phone's copy that lost it)
  perspective  the picture's corners moved inwards by up to 12% each (a photo of a print / keystone fix)
  thumbnail   at most 96 px a side
  jpeg_q5     JPEG quality 5
  squash      one axis scaled by 0.6-0.8 (aspect changed)
  sepia       greyscale toned brown
  banner      a caption strip of 12-20% added below (canvas grows)
  blur_noise  Gaussian blur (radius 1-2.5) + Gaussian noise (sigma 6-12)
  frame       the picture in a wide two-tone frame (15-30% of the side)
  mirror_crop horizontal mirror + 10-25% cropped

Run:  python benchmarks/near_duplicates.py OUT [--originals 40] [--distractors 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SOURCES = [
    "photos/samples/pixabay",
    "photos/samples/vacation",
    "photos/samples/skimage",
    "photos/samples/sklearn",
    "photos/hymenoptera/val/ants",
    "photos/hymenoptera/val/bees",
]
EDITS = [
    "crop",
    "resize",
    "jpeg",
    "rotate",
    "hflip",
    "color",
    "grey",
    "overlay",
    "border",
    "screenshot",
    "combo_crop_jpeg_color",
    "combo_resize_rotate_overlay",
    "rot90",
    "rot180",
    "rot270",
    "perspective",
    "thumbnail",
    "jpeg_q5",
    "squash",
    "sepia",
    "banner",
    "blur_noise",
    "frame",
    "mirror_crop",
]
MIN_SIDE = 200  # originals must be at least this big so that edits are meaningful


def _crop(im: Image.Image, rng: random.Random, lo=0.10, hi=0.40):
    removed = rng.uniform(lo, hi)
    keep = 1 - removed
    aspect = rng.uniform(0.75, 1.33)  # split of the kept area between width and height
    fw = min(1.0, (keep * aspect) ** 0.5)
    fh = min(1.0, keep / fw)
    w, h = im.size
    cw, ch = max(8, int(w * fw)), max(8, int(h * fh))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return im.crop((x, y, x + cw, y + ch)), f"cropped={removed:.2f}"


def _resize(im, rng, lo=0.25, hi=2.0):
    s = rng.uniform(lo, hi)
    w, h = im.size
    return im.resize((max(8, int(w * s)), max(8, int(h * s))), Image.LANCZOS), f"scale={s:.2f}"


def _rotate(im, rng, lo=2.0, hi=10.0):
    a = rng.uniform(lo, hi) * rng.choice((-1, 1))
    return im.rotate(a, resample=Image.BICUBIC, expand=False), f"angle={a:.1f}"


def _color(im, rng):
    b, c, s = (rng.uniform(0.6, 1.4) for _ in range(3))
    im = ImageEnhance.Brightness(im).enhance(b)
    im = ImageEnhance.Contrast(im).enhance(c)
    return ImageEnhance.Color(im).enhance(s), f"brightness={b:.2f},contrast={c:.2f},saturation={s:.2f}"


def _overlay(im, rng):
    im = im.copy()
    d = ImageDraw.Draw(im)
    w, h = im.size
    size = max(12, h // 10)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    text = rng.choice(["(c) 2024 PhotoShare", "SAMPLE", "my holiday!!", "@someone", "DO NOT COPY"])
    x, y = rng.randint(0, max(1, w // 3)), rng.randint(h // 2, max(h // 2 + 1, h - size - 4))
    d.text((x + 2, y + 2), text, fill=(0, 0, 0), font=font)
    d.text((x, y), text, fill=(255, 255, 255), font=font)
    lw, lh = max(10, w // 8), max(10, h // 10)  # a logo-like badge in a corner
    lx, ly = rng.choice([(4, 4), (w - lw - 4, 4)])
    colour = tuple(rng.randint(0, 255) for _ in range(3))
    d.rounded_rectangle((lx, ly, lx + lw, ly + lh), radius=lh // 4, fill=colour)
    d.ellipse((lx + lh // 4, ly + lh // 4, lx + lh * 3 // 4, ly + lh * 3 // 4), fill=(255, 255, 255))
    return im, f"text={text!r}"


def _border(im, rng):
    f = rng.uniform(0.05, 0.20)
    pad = max(2, int(max(im.size) * f))
    colour = rng.choice([(0, 0, 0), (255, 255, 255), (200, 200, 200), (30, 60, 120)])
    return ImageOps.expand(im, border=pad, fill=colour), f"pad={f:.2f}"


def _screenshot(im, rng):
    s = rng.uniform(0.4, 0.8)
    w, h = im.size
    small = im.resize((max(8, int(w * s)), max(8, int(h * s))), Image.BILINEAR)
    cw, ch = int(small.width * rng.uniform(1.15, 1.5)), int(small.height * rng.uniform(1.2, 1.5))
    canvas = Image.new("RGB", (cw, ch), (240, 240, 240))
    d = ImageDraw.Draw(canvas)
    bar = max(6, ch // 14)
    d.rectangle((0, 0, cw, bar), fill=(50, 50, 60))  # title bar
    d.rectangle((0, ch - bar, cw, ch), fill=(220, 220, 225))  # status bar
    canvas.paste(small, ((cw - small.width) // 2, bar + (ch - 2 * bar - small.height) // 2))
    return canvas, f"scale={s:.2f},canvas={cw}x{ch}"


def _perspective(im, rng, most=0.12):
    w, h = im.size
    corners = [(0, 0), (w, 0), (w, h), (0, h)]
    moved = [
        (
            x + (1 if x == 0 else -1) * rng.uniform(0, most) * w,
            y + (1 if y == 0 else -1) * rng.uniform(0, most) * h,
        )
        for x, y in corners
    ]
    # PIL's perspective transform maps output pixels to input pixels: solve for the 8 coefficients
    import numpy as np

    rows, rhs = [], []
    for (x, y), (u, v) in zip(moved, corners):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    coeffs = np.linalg.solve(np.array(rows, float), np.array(rhs, float))
    out = im.transform((w, h), Image.PERSPECTIVE, tuple(coeffs), Image.BICUBIC, fillcolor=(255, 255, 255))
    return out, "corners=" + ";".join(f"{x:.0f},{y:.0f}" for x, y in moved)


def _squash(im, rng):
    f = rng.uniform(0.6, 0.8)
    w, h = im.size
    if rng.random() < 0.5:
        return im.resize((max(8, int(w * f)), h), Image.LANCZOS), f"x={f:.2f}"
    return im.resize((w, max(8, int(h * f))), Image.LANCZOS), f"y={f:.2f}"


def _sepia(im):
    g = ImageOps.grayscale(im)
    return ImageOps.colorize(g, (40, 26, 13), (255, 240, 192)), ""


def _banner(im, rng):
    w, h = im.size
    bh = max(12, int(h * rng.uniform(0.12, 0.20)))
    canvas = Image.new("RGB", (w, h + bh), rng.choice([(255, 255, 255), (0, 0, 0), (240, 230, 200)]))
    canvas.paste(im, (0, 0))
    d = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=max(10, bh // 2))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    fill = (0, 0, 0) if canvas.getpixel((0, h + 1)) != (0, 0, 0) else (255, 255, 255)
    d.text(
        (bh // 3, h + bh // 5),
        rng.choice(["Summer 2019", "Greetings from the coast", "our trip!"]),
        fill=fill,
        font=font,
    )
    return canvas, f"banner={bh}px"


def _blur_noise(im, rng):
    import numpy as np
    from PIL import ImageFilter

    r, sigma = rng.uniform(1.0, 2.5), rng.uniform(6, 12)
    a = np.asarray(im.filter(ImageFilter.GaussianBlur(r)), dtype=np.float32)
    a = a + np.random.default_rng(rng.randrange(2**32)).normal(0, sigma, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)), f"blur={r:.1f},noise={sigma:.0f}"


def _frame(im, rng):
    f = rng.uniform(0.15, 0.30)
    pad = max(4, int(max(im.size) * f))
    outer = tuple(rng.randint(0, 255) for _ in range(3))
    inner = max(2, pad // 6)
    out = ImageOps.expand(
        ImageOps.expand(im, border=inner, fill=(245, 245, 235)), border=pad - inner, fill=outer
    )
    return out, f"frame={f:.2f}"


def _jpeg(im, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def edit(im: Image.Image, kind: str, rng: random.Random) -> tuple[Image.Image, str, int]:
    """(edited image, parameters, JPEG quality to save with)."""
    quality = 92
    if kind == "crop":
        out, p = _crop(im, rng)
    elif kind == "resize":
        out, p = _resize(im, rng)
    elif kind == "jpeg":
        quality = rng.randint(10, 90)
        out, p = im, f"quality={quality}"
    elif kind == "rotate":
        out, p = _rotate(im, rng)
    elif kind == "hflip":
        out, p = ImageOps.mirror(im), ""
    elif kind == "color":
        out, p = _color(im, rng)
    elif kind == "grey":
        out, p = ImageOps.grayscale(im).convert("RGB"), ""
    elif kind == "overlay":
        out, p = _overlay(im, rng)
    elif kind == "border":
        out, p = _border(im, rng)
    elif kind == "screenshot":
        out, p = _screenshot(im, rng)
        quality = 85
    elif kind == "combo_crop_jpeg_color":
        out, p1 = _crop(im, rng, 0.10, 0.30)
        out, p2 = _color(out, rng)
        quality = rng.randint(30, 70)
        p = f"{p1},{p2},quality={quality}"
    elif kind == "combo_resize_rotate_overlay":
        out, p1 = _resize(im, rng, 0.5, 1.5)
        out, p2 = _rotate(out, rng, 3.0, 8.0)
        out, p3 = _overlay(out, rng)
        p = f"{p1},{p2},{p3}"
    elif kind in ("rot90", "rot180", "rot270"):
        out, p = (
            im.transpose(
                {"rot90": Image.ROTATE_90, "rot180": Image.ROTATE_180, "rot270": Image.ROTATE_270}[kind]
            ),
            "",
        )
    elif kind == "perspective":
        out, p = _perspective(im, rng)
    elif kind == "thumbnail":
        out = im.copy()
        out.thumbnail((96, 96), Image.LANCZOS)
        p, quality = "", 85
    elif kind == "jpeg_q5":
        out, p, quality = im, "quality=5", 5
    elif kind == "squash":
        out, p = _squash(im, rng)
    elif kind == "sepia":
        out, p = _sepia(im)
    elif kind == "banner":
        out, p = _banner(im, rng)
    elif kind == "blur_noise":
        out, p = _blur_noise(im, rng)
    elif kind == "frame":
        out, p = _frame(im, rng)
    elif kind == "mirror_crop":
        out, p = _crop(ImageOps.mirror(im), rng, 0.10, 0.25)
    else:
        raise ValueError(f"unknown edit {kind!r}")
    return out, p, quality


def candidates() -> list[Path]:
    files = []
    for sub in SOURCES:
        folder = DATA / sub
        files += sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return files


def generate(
    out: Path, n_originals: int = 40, n_distractors: int = 100, seed: int = 0, edits: list[str] | None = None
) -> list[tuple[str, str, str, str]]:
    """Write the set into ``out``; returns the ground truth rows (original, copy, edit, params)."""
    edits = edits or EDITS
    rng = random.Random(seed)
    pool = []
    for p in candidates():
        try:
            with Image.open(p) as im:
                if min(im.size) >= MIN_SIDE:
                    pool.append(p)
        except OSError:
            continue  # e.g. a broken file in the sources: not ours to test here
    rng.shuffle(pool)
    if len(pool) < n_originals + n_distractors:
        raise SystemExit(f"only {len(pool)} usable photos for {n_originals}+{n_distractors}")
    originals, distractors = pool[:n_originals], pool[n_originals : n_originals + n_distractors]
    for sub in ("originals", "copies", "distractors"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    truth = []
    for p in originals:
        stem = f"{p.parent.name}_{p.stem}"
        with Image.open(p) as im:
            im = im.convert("RGB")
        orig = f"originals/{stem}.jpg"
        im.save(out / orig, "JPEG", quality=95)
        for kind in edits:
            r = random.Random(f"{seed}/{stem}/{kind}")
            copy, params, quality = edit(im, kind, r)
            name = f"copies/{stem}__{kind}.jpg"
            copy.convert("RGB").save(out / name, "JPEG", quality=quality)
            truth.append((orig, name, kind, params))
    for p in distractors:
        with Image.open(p) as im:
            im.convert("RGB").save(out / "distractors" / f"{p.parent.name}_{p.stem}.jpg", "JPEG", quality=95)
    with open(out / "truth.tsv", "w") as f:
        f.write("# original\tcopy\tedit\tparameters\n")
        for row in truth:
            f.write("\t".join(row) + "\n")
    return truth


def read_truth(path: Path) -> list[tuple[str, str, str, str]]:
    rows = []
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            a, b, kind, params = (line.split("\t") + [""])[:4]
            rows.append((a, b, kind, params))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--originals", type=int, default=40)
    ap.add_argument("--distractors", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    truth = generate(args.out, args.originals, args.distractors, args.seed)
    print(
        f"wrote {len(truth)} copies of {args.originals} originals and {args.distractors} distractors to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
