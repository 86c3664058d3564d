"""Web UI latency: from an upload to the first page of results, on an index of ~5,000 real photos.

Builds (once, then reuses) a real index over ../shared/data/photos/flowers5 (+ hymenoptera and the
vacation photos: ~4,900 images) with the tiny random VGG11 at 64 px, then times where one upload's
time goes, through the same code the search page runs (``ui.logic.service.Service``):

    decode      read + check the uploaded bytes (Pillow, size/pixel caps)
    model       the descriptor (OpenVINO)
    faiss       FAISS top-k + the SQL rows of the hits (Index.search_vectors) + filtering
    thumbnails  the first page of result thumbnails (12, cold cache: decode + resize + JPEG)

then the whole Streamlit script run for an upload (AppTest: the page's Python side, no browser), and
optionally (--browser) the real thing: page load in headless Chromium to the first results shown.
--vgg16 adds the model time of the shared VGG16 at 224 px (the default model) for comparison.

    python benchmarks/ui_latency.py [--index-dir DIR] [--queries 10] [--browser] [--vgg16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("VGG_RETRIEVAL_DATA", ROOT.parent / "shared" / "data"))
FOLDERS = [
    DATA / "photos" / "flowers5",
    DATA / "photos" / "hymenoptera",
    DATA / "photos" / "samples" / "vacation",
]
PAGE = 12


def build_index(directory: Path) -> None:
    from indexer import Index
    from retrieval.nets.builder import build

    if Index.exists(directory):
        with Index.open(directory) as idx:
            if idx.count > 4000:
                return
    t0 = time.perf_counter()
    spec, net = build("vgg11", "random", input_size=64)
    with Index.create(directory, spec, net) as idx:
        rep = idx.update(FOLDERS, progress=False, workers=1)
    print(f"built {directory}: {rep.summary()} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def queries(n: int) -> list[Path]:
    """Real photos as uploads: every k-th flower, so they are indexed (their neighbour is known)."""
    files = sorted((DATA / "photos" / "flowers5").rglob("*.jpg"))
    step = max(1, len(files) // n)
    return files[::step][:n]


def ms(values) -> str:
    return f"{statistics.median(values) * 1000:8.1f} {min(values) * 1000:8.1f} {max(values) * 1000:8.1f}"


def bench_core(index_dir: Path, n: int) -> dict[str, list[float]]:
    from ui.logic import Service, Settings

    t0 = time.perf_counter()
    svc = Service(index_dir, "openvino").warm()
    load = time.perf_counter() - t0
    settings = Settings(index_dir)
    out: dict[str, list[float]] = {"decode": [], "model": [], "faiss": [], "thumbnails": [], "total": []}
    hits_ok = 0
    for q in queries(n):
        svc._thumbs.clear()  # cold thumbnails, like a new query's results
        t = time.perf_counter()
        query = svc.query_from_upload(q.name, q.read_bytes(), settings)
        result = svc.search(query, want=PAGE + 1)
        t_f = time.perf_counter()
        for h in result.hits[:PAGE]:
            svc.thumbnail(h.id)
        t_end = time.perf_counter()
        out["decode"].append(query.timings["decode"])
        out["model"].append(query.timings["model"])
        out["faiss"].append(result.seconds)
        out["thumbnails"].append(t_end - t_f)
        out["total"].append(t_end - t)
        hits_ok += result.hits[0].path == str(q.resolve())
    print(
        f"index: {svc.index.count:,} images, {svc.spec.describe()}; model load (once per process) "
        f"{load * 1000:.0f} ms; query found itself first in {hits_ok}/{n}"
    )
    return out


def bench_apptest(index_dir: Path, n: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    os.environ["VGG_RETRIEVAL_INDEX"] = str(index_dir)
    at = AppTest.from_file(str(ROOT / "ui" / "app.py"), default_timeout=120)
    at.run()  # first run: opens the index and loads the model (cached for the process)
    times = []
    for q in queries(n):
        at.file_uploader(key="upload").upload(q.name, q.read_bytes(), "image/jpeg")
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
        assert not at.exception and not at.error, (at.exception, at.error)
    return times


def bench_browser(index_dir: Path, n: int) -> tuple[float, list[float]]:
    from tests.e2e.browser import chromium, search_by_upload, serve

    times = []
    with serve(index_dir) as url, chromium() as page:
        t = time.perf_counter()
        search_by_upload(page, url, queries(1)[0])
        first = time.perf_counter() - t  # includes the server's one-off index + model load
        for q in queries(n)[1:]:
            t = time.perf_counter()
            search_by_upload(page, url, q)  # fresh page load + upload + results
            times.append(time.perf_counter() - t)
    return first, times


def bench_vgg16_model(n: int) -> list[float]:
    from retrieval.engines import load_embedder
    from retrieval.engines.export import export_model
    from retrieval.nets.builder import build
    from retrieval.preprocess import open_image

    spec, net = build("vgg16", str(DATA / "weights" / "vgg16_features_imagenet_like.pth"))
    with tempfile.TemporaryDirectory() as tmp:
        emb = load_embedder("openvino", spec, export_model(spec, net, Path(tmp) / "model"))
        ims = [open_image(q) for q in queries(n)]
        emb.embed(ims[:1])
        times = []
        for im in ims:
            t = time.perf_counter()
            emb.embed([im])
            times.append(time.perf_counter() - t)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index-dir", type=Path, default=Path(tempfile.gettempdir()) / "vgg-retrieval-ui-bench")
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--browser", action="store_true", help="also time page load to results in Chromium")
    ap.add_argument("--vgg16", action="store_true", help="also time the VGG16@224 model on the queries")
    a = ap.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    build_index(a.index_dir)
    core = bench_core(a.index_dir, a.queries)
    print(
        f"\n{'one upload -> first page (' + str(PAGE) + ' results)':44s} {'median':>8s} {'min':>8s} {'max':>8s}  ms"
    )
    for k in ("decode", "model", "faiss", "thumbnails", "total"):
        print(f"  {k:42s} {ms(core[k])}")
    print(f"  {'Streamlit script run (AppTest, no browser)':42s} {ms(bench_apptest(a.index_dir, a.queries))}")
    if a.browser:
        first, times = bench_browser(a.index_dir, a.queries)
        print(f"  {'browser: first load, cold server':42s} {first * 1000:8.1f}")
        print(f"  {'browser: page load + upload -> results':42s} {ms(times)}")
    if a.vgg16:
        print(f"  {'model with VGG16@224 instead (OpenVINO)':42s} {ms(bench_vgg16_model(a.queries))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
