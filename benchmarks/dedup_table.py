"""The one table of benchmarks/dedup_eval.py: per set, what ``dedup`` at its defaults reports.

Rows: real sets without copies (paris5, holidays150, vacation, hymenoptera, frames of tree.avi at
least 0.5 s apart, the opencv samples with their left/right series) and the generated set
(near_duplicates.py: seeded edited copies of real photos + real distractors), whose copies are
also broken down per edit kind. Columns: photos; false duplicate pairs per 1,000 photos (every
(keeper, member) link of a duplicate group that is neither byte-identical nor one capture - the
pairs judged by eye in data/dedup_judged_pairs.csv as "duplicate" are copies); similar-shot
groups; recall of generated copies (a copy in the same duplicate group as its own original);
keeper correct (groups holding an original kept by it); photos/s of ``find_duplicates`` after
indexing (a fresh Verifier, so every feature is computed; search + verification + grouping).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
JUDGED = HERE / "data" / "dedup_judged_pairs.csv"
TREE_AVI = Path("/usr/share/doc/opencv-doc/examples/data/tree.avi")
TREE_STEP = 8  # frames: 15 frames/s, so >= 0.53 s apart


def judged_copies() -> set[frozenset]:
    """Pairs of file names judged by eye to be one capture (a copy)."""
    if not JUDGED.is_file():
        return set()
    with open(JUDGED, newline="") as f:
        return {
            frozenset((Path(r["a"]).name, Path(r["b"]).name))
            for r in csv.DictReader(f)
            if r["verdict"] == "duplicate"
        }


def tree_frames(work: Path) -> Path | None:
    """Frames of tree.avi at least 0.5 s apart as PNGs under ``work`` (None: no opencv-doc)."""
    if not TREE_AVI.is_file():
        return None
    out = work / "tree-frames"
    if not out.is_dir() or not any(out.iterdir()):
        import cv2

        out.mkdir(parents=True, exist_ok=True)
        cap, n = cv2.VideoCapture(str(TREE_AVI)), 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if n % TREE_STEP == 0:
                cv2.imwrite(str(out / f"tree_{n:03d}.png"), frame)
            n += 1
    return out


def timed_report(index):
    """(report, seconds) of find_duplicates at its defaults with a fresh Verifier and no feature cache
    (benchmarks/dedup_speed.py measures the second run too)."""
    from indexer.dedup import find_duplicates
    from indexer.storage.layout import FEATURE_CACHE

    (Path(index.directory) / FEATURE_CACHE).unlink(missing_ok=True)  # a first run: every feature made
    t0 = time.perf_counter()
    rep = find_duplicates(index)
    return rep, time.perf_counter() - t0


def false_links(rep, copies: set[frozenset]) -> list[tuple[str, str, str]]:
    """(keeper, member, reason) of duplicate links that are not byte-identical or judged copies."""
    return [
        (g.keeper.path, m.path, m.reason)
        for g in rep.duplicate_groups
        for m in g.members
        if m.sha256 != g.keeper.sha256
        and frozenset((Path(g.keeper.path).name, Path(m.path).name)) not in copies
    ]


def real_row(name: str, index, copies) -> dict:
    rep, secs = timed_report(index)
    n = rep.stats["images"]
    fp = false_links(rep, copies)
    return {
        "set": name,
        "photos": n,
        "false": len(fp),
        "per1000": 1000 * len(fp) / max(1, n),
        "similar": len(rep.similar_groups),
        "recall": None,
        "keeper": None,
        "speed": n / secs,
        "fp_list": fp,
        "verified": rep.stats.get("verified_pairs", 0),
    }


def generated_row(passes, fam: dict, edit: dict, kinds: list[str]) -> tuple[dict, dict]:
    """The generated set's row and its recall per edit kind (two passes of half the kinds each)."""
    found, total, fp, keep_ok, keep_n, similar, n_photos, secs = {}, {}, [], 0, 0, 0, 0, 0.0
    for ix, half in passes:
        rep, s = timed_report(ix)
        secs, n_photos = secs + s, n_photos + rep.stats["images"]
        e = {c: k for c, k in edit.items() if k in half}
        f = {p: o for p, o in fam.items() if p not in edit or p in e}
        where = {m.path: gi for gi, g in enumerate(rep.duplicate_groups) for m in g.files}
        for c, k in e.items():
            orig = str(Path(c).parents[1] / f[c])
            total[k] = total.get(k, 0) + 1
            found[k] = found.get(k, 0) + (c in where and where[c] == where.get(orig))
        for g in rep.duplicate_groups:
            fp += [
                (g.keeper.path, m.path, m.reason) for m in g.members if f.get(m.path) != f.get(g.keeper.path)
            ]
            origs = [m.path for m in g.files if m.path in f and m.path not in e and "/originals/" in m.path]
            if origs:
                keep_n += 1
                keep_ok += g.keeper.path in origs
        similar += len(rep.similar_groups)
    per_kind = {k: found.get(k, 0) / total[k] for k in kinds if k in total}
    row = {
        "set": "generated",
        "photos": n_photos,
        "false": len(fp),
        "per1000": 1000 * len(fp) / max(1, n_photos),
        "similar": similar,
        "recall": sum(found.values()) / max(1, sum(total.values())),
        "keeper": (keep_ok, keep_n),
        "speed": n_photos / secs,
        "fp_list": fp,
        "verified": None,
    }
    return row, per_kind


def print_table(rows: list[dict], per_kind: dict) -> None:
    print(
        "\n| set | photos | false duplicate pairs | per 1,000 photos | similar-shot groups | recall of generated "
        "copies | keeper correct | dedup photos/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        keeper = "-" if r["keeper"] is None else f"{r['keeper'][0]}/{r['keeper'][1]}"
        recall = "-" if r["recall"] is None else f"{r['recall']:.3f}"
        print(
            f"| {r['set']} | {r['photos']} | {r['false']} | {r['per1000']:.1f} | {r['similar']} | {recall} | "
            f"{keeper} | {r['speed']:.1f} |"
        )
    for k, v in per_kind.items():
        print(f"| generated: {k} | | | | | {v:.3f} | | |")
    for r in rows:
        for a, b, why in r["fp_list"][:10]:
            print(f"  false duplicate ({r['set']}): {Path(a).name} ~ {Path(b).name}: {why}")
