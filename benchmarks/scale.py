"""A large collection end to end: index, search, the web UI's search, dedup and check on N photos.

Photos: the real photos of ../shared/data (holidays150, paris5, vacation, hymenoptera, flowers5 and
the samples, about 5,600), then variants of them to reach ``--photos`` (a seeded crop of 80-95%, a
mirror, a tone change, a resize to 200-640 px and a JPEG quality of 70-95, written once into
``--work`` and reused). Variants are copies, so dedup has real groups to find at every size.

Each command runs as the user runs it, a process of its own, timed as a whole, its peak RSS read
from the kernel (``wait4``):
- ``index``: ``vgg-retrieval index PHOTOS --index IX -q`` (the defaults: INT8 model made and
  calibrated on the photos, then every photo embedded); img/s over the whole command; index size on disk;
- ``search``: ``Index.search`` of ``--queries`` indexed photos by path (each file decoded and
  embedded; the default search: neighbour re-ranking, and rotation search since 2026-12-07), p50 and
  p99 in ms, in this process after one warm-up; then the same without rotation search;
- ``UI search``: what the search page runs for an upload (``ui.logic.Service``: decode, model, FAISS,
  the first page of thumbnails, cold), p50 and p99, with and without rotation search;
- ``dedup``: ``vgg-retrieval dedup --index IX --out REPORT`` (verification on, the defaults); then
  ``dedup again`` with nothing changed (features, file facts and verified pairs from the index's
  cache); then ``--grow`` new variant photos (default 1% of N) indexed into a folder of their own
  and ``dedup after adding`` them (only pairs with a new photo verified); the new photos then
  leave the folder and the index again (an ``index`` update), so the index stays N photos;
- ``check``: ``vgg-retrieval check --index IX``.
``--model tiny`` runs the same with the random VGG11 at 64 px (``--arch vgg11 --weights random --size
64``): what the pipeline around the model costs at a size the default model cannot reach in the time.

Run:  PYTHONPATH=. python benchmarks/scale.py --photos 2000 [--model default|tiny] [--work DIR]
                                            [--no-dedup | --dedup-only] [--grow M]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from decode_overlap import cpu_line  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"
SOURCES = (
    "retrieval/holidays150",
    "retrieval/paris5",
    "photos/samples",
    "photos/hymenoptera",
    "photos/flowers5",
)
TINY = ["--arch", "vgg11", "--weights", "random", "--size", "64"]


def real_photos() -> list[Path]:
    from retrieval.compress.distill_data import photo_paths

    return [Path(p) for p in photo_paths([DATA / s for s in SOURCES]) if not p.endswith(".gif")]


def variant(src: Path, out: Path, seed: int) -> None:
    from PIL import Image, ImageEnhance, ImageOps

    rng = random.Random(seed)
    with Image.open(src) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
    share = rng.uniform(0.8, 0.95)
    w, h = im.size
    cw, ch = int(w * share), int(h * share)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    im = im.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.8, 1.2))
    side = rng.randint(200, 640)
    s = side / max(im.size)
    im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.BILINEAR)
    im.save(out, quality=rng.randint(70, 95))


def make_photos(work: Path, n: int) -> Path:
    """``work``/photos-N: the real photos linked, then variants up to ``n`` (made once, on every core;
    a variant already made for a smaller N is the same file, seed for seed, and is linked instead)."""
    folder = work / f"photos-{n}"
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    smaller = sorted(
        (f for f in work.glob("photos-*") if (f / ".complete").exists() and f != folder),
        key=lambda f: int(f.name.split("-")[1]),
    )
    t = time.perf_counter()
    step = 2000
    with ProcessPoolExecutor(os.cpu_count()) as workers:
        jobs = [(folder, smaller, i, min(n, i + step)) for i in range(0, n, step)]
        for stop in workers.map(_make_range, jobs):
            print(f"  photos: {stop}/{n} ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    done.touch()
    return folder


def _make_range(job: tuple) -> int:
    """Photos ``start``..``stop`` of ``make_photos``' folder (see there); returns ``stop``."""
    folder, smaller, start, stop = job
    pool = real_photos()
    for i in range(start, stop):
        src = pool[i % len(pool)]
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        if i < len(pool):
            target = sub / f"{i:06d}{src.suffix.lower()}"
            if not target.exists():
                target.symlink_to(src)
            continue
        target = sub / f"{i:06d}.jpg"
        made = [f / sub.name / target.name for f in smaller if int(f.name.split("-")[1]) > i]
        made = [m for m in made if m.is_file()]
        if not target.exists() and made:
            os.link(made[0], target)
        k = i
        while not target.exists():  # a source Pillow cannot open (a multipage TIFF): the next one
            try:
                variant(pool[k % len(pool)], target, i)
            except (OSError, ValueError):
                k += 1
    return stop


def run(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of a command run as its own process."""
    env = dict(os.environ, VGG_RETRIEVAL_WEIGHTS=str(WEIGHTS), PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) not in (0, 1):  # check exits 1 when it finds a problem
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return seconds, usage.ru_maxrss / 1024


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "indexer", *args]


def du_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return 1000 * v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def search_times(ix: Path, photos: list[Path], n: int, rotations: bool = True) -> list[float]:
    from indexer import Index

    rng = random.Random(1)
    picks = rng.sample(photos, min(n, len(photos)))
    out = []
    with Index.open(ix) as idx:
        idx.search(picks[0], k=24, rotations=rotations)
        for p in picks:
            t = time.perf_counter()
            idx.search(p, k=24, rotations=rotations)
            out.append(time.perf_counter() - t)
    return out


def ui_times(ix: Path, photos: list[Path], n: int, rotations: bool = True) -> list[float]:
    from ui.logic import Service, Settings

    svc = Service(ix, "openvino").warm()
    settings = Settings(ix)
    rng = random.Random(2)
    out = []
    for p in rng.sample(photos, min(n, len(photos))):
        svc._thumbs.clear()  # cold thumbnails, as for a new query
        t = time.perf_counter()
        query = svc.query_from_upload(p.name, p.read_bytes(), settings)
        result = svc.search(query, want=25, rotations=rotations)
        for h in result.hits[:24]:
            svc.thumbnail(h.id)
        out.append(time.perf_counter() - t)
    return out


def dedup_rows(args, ix: Path, photos: list[Path]) -> list[tuple]:
    """dedup, dedup again (all cached), and dedup after adding ``--grow`` photos (see the module doc)."""
    report = str(args.work / f"report-{args.photos}")
    rows = []
    for what in ("dedup", "dedup again (nothing changed)"):
        s, rss = run(cli("dedup", "--index", str(ix), "--out", report))
        rows.append((what, f"{s:.0f} s", f"{len(photos) / s:.1f} photos/s", f"{rss:.0f}", ""))
    grow = args.grow if args.grow is not None else max(1, args.photos // 100)
    if grow:
        new = args.work / f"grow-{args.photos}"
        new.mkdir(parents=True, exist_ok=True)
        pool = real_photos()
        for i in range(grow):  # seeds past the collection's own: other crops, tones and sizes
            variant(pool[i * 7919 % len(pool)], new / f"g{i:06d}.jpg", 10**7 + i)
        run(cli("index", str(new), "--index", str(ix), "-q"))
        s, rss = run(cli("dedup", "--index", str(ix), "--out", report))
        rows.append(
            (
                f"dedup after adding {grow:,} photos",
                f"{s:.0f} s",
                f"{(len(photos) + grow) / s:.1f} photos/s",
                f"{rss:.0f}",
                "",
            )
        )
        for f in new.iterdir():  # the index back to its N photos
            f.unlink()
        run(cli("index", "--index", str(ix), "-q"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--model", choices=("default", "tiny"), default="default")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--work", type=Path, default=Path("/tmp/vgg-scale"))
    ap.add_argument("--no-dedup", action="store_true", help="leave out dedup (search again on a made index)")
    ap.add_argument("--dedup-only", action="store_true", help="leave out search and check (a made index)")
    ap.add_argument(
        "--grow", type=int, default=None, help="photos added for the last dedup [1%% of --photos]"
    )
    args = ap.parse_args()
    folder = make_photos(args.work, args.photos)
    photos = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    ix = args.work / f"ix-{args.photos}-{args.model}"
    rows = []
    if not (ix / "model").exists():
        extra = TINY if args.model == "tiny" else []
        s, rss = run(cli("index", str(folder), "--index", str(ix), "-q", *extra))
        rows.append(
            ("index", f"{s:.0f} s", f"{len(photos) / s:.1f} img/s", f"{rss:.0f}", f"{du_mib(ix):.0f} MiB")
        )
    searches, ui = [], []
    for rotations, how in () if args.dedup_only else ((True, "default"), (False, "--no-rotations")):
        searches = search_times(ix, photos, args.queries, rotations)
        rows.append(
            (
                f"search by path, {how} (p50 / p99)",
                f"{pct(searches, 0.5):.1f} ms",
                f"{pct(searches, 0.99):.1f} ms",
                "",
                "",
            )
        )
    for rotations, how in () if args.dedup_only else ((True, "default"), (False, "no rotations")):
        ui = ui_times(ix, photos, max(10, args.queries // 10), rotations)
        rows.append(
            (
                f"UI search, upload to thumbnails, {how} (p50 / p99)",
                f"{pct(ui, 0.5):.0f} ms",
                f"{pct(ui, 0.99):.0f} ms",
                "",
                "",
            )
        )
    if not args.no_dedup:
        rows += dedup_rows(args, ix, photos)
    if not args.dedup_only:
        s, rss = run(cli("check", "--index", str(ix)))
        rows.append(("check", f"{s:.1f} s", "", f"{rss:.0f}", ""))
    print(f"\n{cpu_line()}; {len(photos):,} photos; model: {args.model}")
    print("\n| step | time | rate | peak RSS MiB | size |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if ui:
        print(
            f"\n(search: {len(searches)} queries; UI: {len(ui)} uploads; median {statistics.median(ui) * 1000:.0f} ms)"
        )


if __name__ == "__main__":
    main()
