"""Search by words on held-out real photos: text-to-image retrieval quality by class, and query latency.

    python benchmarks/text_recall.py [--train 60] [--heldout 20] [--epochs 60] [--out DIR]

flowers5 (../shared/data/photos/flowers5, 5 classes, 128 px): a seeded subset per class is copied into
a folder per class and indexed with the shared VGG16 trunk at --size 128 (OpenVINO). ``text-train``
learns from the captions of the training images only; the held-out images are indexed but their
captions are never used. Each class is then queried with phrasings unlike the training templates
("a photo of a daisy", "daisy", ...), and ranked against the held-out images only (images the
model never saw a caption of). Reported per class, averaged over the phrasings:

- R@5: a held-out image of the class is among the top 5 (chance: 1 - C(N-n,5)/C(N,5));
- P@5: the fraction of the top 5 that are of the class (chance: n/N);
- AP: average precision of the class's held-out images over the whole held-out ranking (chance ~ n/N).

Then the query latency of ``vgg-retrieval search --text`` (a cold process, and warm in-process).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from math import comb
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("VGG_RETRIEVAL_DATA", ROOT.parent / "shared" / "data"))
FLOWERS = DATA / "photos" / "flowers5"
WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"

# Query phrasings: none is a training template ("a photo of a X", "X", "a picture of the X",
# "an image showing a X"); plurals and context words the captions never had.
QUERIES = {
    "daisy": ["white daisies with yellow centres", "a close-up shot of a daisy flower", "a field of daisies"],
    "dandelion": [
        "a yellow dandelion in the grass",
        "dandelions gone to seed",
        "a close-up shot of a dandelion flower",
    ],
    "rose": ["a bouquet of red roses", "a close-up shot of a rose flower", "pink roses in a garden"],
    "sunflower": [
        "a field of tall sunflowers",
        "a close-up shot of a sunflower",
        "bright yellow sunflowers against the sky",
    ],
    "tulip": ["colourful tulips in spring", "a close-up shot of a tulip flower", "a bed of red tulips"],
}


def make_subset(
    dest: Path, train: int, heldout: int, seed: int = 0, classes=None
) -> tuple[list[Path], list[Path]]:
    """Copy ``train + heldout`` photos per class (seeded choice) to dest/CLASS/; (train, held-out) paths."""
    rng = random.Random(seed)
    tr, ho = [], []
    for cls in classes or sorted(QUERIES):
        files = sorted((FLOWERS / cls).glob("*.jpg"))
        rng.shuffle(files)
        (dest / cls).mkdir(parents=True, exist_ok=True)
        for k, f in enumerate(files[: train + heldout]):
            target = dest / cls / f.name
            shutil.copy2(f, target)
            (tr if k < train else ho).append(target.resolve())
    return tr, ho


def build_index(photos: Path, index_dir: Path, size: int = 128) -> None:
    from indexer.cli import main

    rc = main(
        [
            "index",
            str(photos),
            "--index",
            str(index_dir),
            "--weights",
            str(WEIGHTS),
            "--size",
            str(size),
            "--engine",
            "openvino",
            "-q",
        ]
    )
    if rc:
        raise SystemExit(f"indexing failed ({rc})")


def evaluate(searcher, heldout_ids: np.ndarray, heldout_labels: list[str], queries: dict[str, list[str]]):
    """Per class {R@5, P@5, AP} averaged over its phrasings, ranking only the held-out images."""
    ids, vecs = searcher.index.all_vectors()
    pos = {int(i): k for k, i in enumerate(ids)}
    gallery = searcher.project_descriptors(vecs[[pos[int(i)] for i in heldout_ids]])
    labels = np.array(heldout_labels)
    out = {}
    for cls, phrasings in queries.items():
        rel_all = labels == cls
        r5 = p5 = ap = 0.0
        for q in phrasings:
            s = gallery @ searcher.embed_texts([q])[0]
            rel = rel_all[np.argsort(-s, kind="stable")]
            r5 += float(rel[:5].any())
            p5 += float(rel[:5].mean())
            hits = np.cumsum(rel)
            ap += float((hits[rel] / (np.flatnonzero(rel) + 1)).mean())
        n = len(phrasings)
        out[cls] = {"R@5": r5 / n, "P@5": p5 / n, "AP": ap / n, "relevant": int(rel_all.sum())}
    return out


def chance(n_rel: int, n_all: int) -> dict:
    return {"R@5": 1 - comb(n_all - n_rel, 5) / comb(n_all, 5), "P@5": n_rel / n_all, "AP": n_rel / n_all}


def latency(index_dir: Path, text: str, runs: int = 3) -> dict:
    """Cold: a whole ``vgg-retrieval search --text`` process; warm: embed + search in-process."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cold = []
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "indexer",
                "search",
                "--text",
                text,
                "--index",
                str(index_dir),
                "--json",
                "-k",
                "5",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        cold.append(time.perf_counter() - t)
        if p.returncode:
            raise SystemExit(p.stderr)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from indexer.cli import main; main(['search','--text','x','--index',"
            f"{str(index_dir)!r},'-k','1']); print('torch' in sys.modules, file=sys.stderr)",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    from indexer import Index
    from indexer.text.searcher import TextSearcher

    with Index.open(index_dir) as idx:
        t = time.perf_counter()
        s = TextSearcher(idx)
        s.search([text], 5)
        first = time.perf_counter() - t
        warm = []
        for q in ["a red flower", "yellow petals", "a bunch of white flowers", text] * 5:
            t = time.perf_counter()
            s.search([q], 5)
            warm.append(time.perf_counter() - t)
    return {
        "cold_process_s": float(np.median(cold)),
        "open_and_first_query_s": first,
        "warm_query_ms": 1000 * float(np.median(warm)),
        "torch_imported": probe.stderr.strip().splitlines()[-1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=60)
    ap.add_argument("--heldout", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", type=Path, default=None, help="Keep the photos and index here (default: a temp dir)."
    )
    ap.add_argument("--json", type=Path, default=None, help="Also write the numbers to this file.")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    work = args.out or Path(tempfile.mkdtemp(prefix="text-recall-"))
    photos, index_dir = work / "flowers", work / "index"
    t0 = time.perf_counter()
    if not index_dir.exists():
        shutil.rmtree(photos, ignore_errors=True)
        train, held = make_subset(photos, args.train, args.heldout, args.seed)
        build_index(photos, index_dir)
    else:  # reuse (--out): the same seeded subset
        train, held = make_subset(photos, args.train, args.heldout, args.seed)
    t_index = time.perf_counter() - t0

    from indexer import Index
    from indexer.text.searcher import TextSearcher, train_text_model

    with Index.open(index_dir) as idx:
        rep = train_text_model(
            idx,
            exclude={str(p) for p in held},
            epochs=args.epochs,
            seed=args.seed,
            log=lambda m: print(m, file=sys.stderr),
        )
        rows = {r.path: r for r in idx.store.rows_by_id(idx.all_vectors()[0].tolist()).values()}
        held_ids = np.array([rows[str(p)].id for p in held], np.int64)
        held_labels = [rows[str(p)].label for p in held]
        res = evaluate(TextSearcher(idx), held_ids, held_labels, QUERIES)
    lat = latency(index_dir, "a close-up shot of a sunflower")

    n_all = len(held)
    print(
        f"\nflowers5: {args.train} train + {args.heldout} held-out photos per class, VGG16 (shared trunk) at 128 px,"
        f" OpenVINO; text model {rep.text_model}; {rep.images} captioned training images, {rep.captions} captions;"
        f" loss {rep.initial_loss:.3f} -> {rep.final_loss:.3f} in {rep.seconds:.1f}s (indexing {t_index:.0f}s)"
    )
    print(
        f"queries: {sum(map(len, QUERIES.values()))} phrasings unlike the training templates, ranked against the "
        f"{n_all} held-out images\n"
    )
    print("| class | R@5 | P@5 | AP | chance R@5 | chance P@5 / AP |")
    print("|---|---|---|---|---|---|")
    for cls, m in res.items():
        c = chance(m["relevant"], n_all)
        print(
            f"| {cls} | {m['R@5']:.2f} | {m['P@5']:.2f} | {m['AP']:.2f} | {c['R@5']:.2f} | {c['P@5']:.2f} |"
        )
    mean = {k: float(np.mean([m[k] for m in res.values()])) for k in ("R@5", "P@5", "AP")}
    c = chance(args.heldout, n_all)
    print(
        f"| **mean** | {mean['R@5']:.2f} | {mean['P@5']:.2f} | {mean['AP']:.2f} | {c['R@5']:.2f} | {c['P@5']:.2f} |"
    )
    print(
        f"\nquery latency: cold `vgg-retrieval search --text` process {lat['cold_process_s']:.2f}s (median of 3); "
        f"open + first query {lat['open_and_first_query_s'] * 1000:.0f} ms; warm query {lat['warm_query_ms']:.1f} ms;"
        f" torch imported by search --text: {lat['torch_imported']}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "per_class": res,
                    "mean": mean,
                    "chance": c,
                    "latency": lat,
                    "train": {
                        "images": rep.images,
                        "captions": rep.captions,
                        "initial_loss": rep.initial_loss,
                        "final_loss": rep.final_loss,
                        "seconds": rep.seconds,
                    },
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
