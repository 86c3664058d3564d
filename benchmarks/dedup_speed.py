"""How fast ``dedup`` is after indexing: this tree against a baseline checkout, in one run.

Per real set (the indexes of benchmarks/dedup_eval.py under --work, idx-<set>; made there on first
use), each measured in a fresh process on its own copy of the index, one after the other:

* ``baseline``: ``find_duplicates`` of the code at --baseline (e.g. a worktree of the commit
  before; its index copy is opened only by it);
* ``first``: this tree, no feature cache yet (every photo's features computed; the capture evidence
  comes from the index - the copy is brought up to date once, untimed, as ``index`` would);
* ``again``: this tree, the second run (features, file facts and verified pairs read from the
  index's cache: ``paircache``; only the candidate search and the grouping run again);
* ``pairs anew``: the same with the stored pairs forgotten (every pair verified again from the
  cached features: what a later run costs for pairs it has not seen);
* ``pairs anew, 1 worker``: the same with one verification thread (the report must be identical).

Columns: photos, verified pairs, pairs taken from the cache, seconds and photos/s (wall), CPU
seconds (all threads), the ratio to the baseline (wall and CPU), features computed, and whether the groups (kind, keeper,
members, evidence) equal the baseline's. The machine may be shared: compare ratios from one run.
Run:  python benchmarks/dedup_speed.py --baseline /path/to/old/checkout [--sets paris5,holidays150]
                                       [--work /tmp/vgg-retrieval-dedup-eval] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = "paris5,holidays150,vacation,hymenoptera"

# run in a child process: python -c CHILD INDEX_DIR WORKERS(0: default) CACHE(0/1) FILL(0/1)
CHILD = r"""
import hashlib, json, os, sys, time
from indexer.index import Index
from indexer.dedup import find_duplicates
idx_dir, workers, fill = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
ix = Index.open(idx_dir)
if fill:  # what the next index update does for an index made before capture evidence was kept
    from indexer.update.capture import fill_missing
    fill_missing(ix.store)
kw = {}
made = []
if workers:
    from indexer.dedup.verify import Verifier
    from indexer.dedup import find as find_module
    made_by = find_module._index_verifier
    def one_worker(index, rows, k):
        v = made_by(index, rows, k)
        v.workers = workers
        made.append(v)
        return v
    find_module._index_verifier = one_worker
t0, c0 = time.perf_counter(), time.process_time()
rep = find_duplicates(ix, **kw)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
def digest(x):
    return hashlib.sha256(json.dumps(x, sort_keys=True).encode()).hexdigest()[:12]
groups = [[g.kind, g.keeper.path, [m.path for m in g.members]] for g in rep.groups]
evidence = [[m.evidence for m in g.members] for g in rep.groups]
print("RESULT " + json.dumps({"images": rep.stats["images"], "wall": wall, "cpu": cpu,
      "pairs": rep.stats.get("verified_pairs", 0), "groups": digest(groups), "evidence": digest(evidence),
      "computed": rep.stats.get("features_computed"), "cached": rep.stats.get("pairs_cached")}))
"""


def child(code_root: Path, index_dir: Path, workers: int = 0, fill: bool = False) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code_root))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(index_dir), str(workers), "1" if fill else "0"],
        cwd=str(code_root),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"dedup failed under {code_root}:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def copy_index(src: Path, dst: Path) -> None:
    """A copy of the index at ``src`` (its model folder linked, not copied); no feature cache."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.name in ("index.lock", "dedup-features.sqlite"):
            continue
        if p.is_dir():
            (dst / p.name).symlink_to(p.resolve(), target_is_directory=True)
        else:
            shutil.copy2(p, dst / p.name)


def forget_pairs(index_dir: Path) -> None:
    """Empty the index's stored pairs (``paircache``), keeping its features and file facts."""
    import sqlite3

    with sqlite3.connect(index_dir / "dedup-features.sqlite") as db:
        db.execute("DELETE FROM pairs")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True, help="A checkout of the code to compare with")
    ap.add_argument("--sets", default=SETS)
    ap.add_argument("--work", type=Path, default=Path("/tmp/vgg-retrieval-dedup-eval"))
    ap.add_argument("--repeat", type=int, default=1, help="Runs of each (the fastest counts)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from dedup_eval import REAL_SETS, indexed

    rows = []
    with tempfile.TemporaryDirectory(prefix="dedup-speed-") as tmp:
        for name in [s for s in args.sets.split(",") if s]:
            src = args.work / f"idx-{name}"
            if not (src / "index.sqlite").is_file():
                indexed(src, [REAL_SETS[name]]).close()
            best: dict = {}
            for _ in range(args.repeat):
                base, new = Path(tmp) / f"base-{name}", Path(tmp) / f"new-{name}"
                copy_index(src, base)
                copy_index(src, new)
                child(ROOT, new, fill=True)  # untimed: schema upgrade + capture evidence, and a warm-up
                (new / "dedup-features.sqlite").unlink(missing_ok=True)
                runs = {
                    "baseline": child(args.baseline, base),
                    "first": child(ROOT, new),
                    "again": child(ROOT, new),
                }
                forget_pairs(new)
                runs["pairs anew"] = child(ROOT, new)
                forget_pairs(new)
                runs["pairs anew, 1 worker"] = child(ROOT, new, workers=1)
                for k, r in runs.items():
                    if k not in best or r["wall"] < best[k]["wall"]:
                        best[k] = r
            rows.append((name, best))
    print(
        "\n| set | run | photos | verified pairs | pairs cached | seconds | photos/s | CPU s | x baseline (wall) "
        "| x baseline (CPU) | features computed | groups as baseline | evidence as first | evidence as baseline |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, best in rows:
        b, f = best["baseline"], best["first"]
        for k, r in best.items():
            computed = "-" if r["computed"] is None else r["computed"]
            print(
                f"| {name} | {k} | {r['images']} | {r['pairs']} | {'-' if r.get('cached') is None else r['cached']} "
                f"| {r['wall']:.1f} | {r['images'] / r['wall']:.1f} "
                f"| {r['cpu']:.1f} | {b['wall'] / r['wall']:.2f} | {b['cpu'] / r['cpu']:.2f} | {computed} "
                f"| {'yes' if r['groups'] == b['groups'] else 'NO'} "
                f"| {'-' if k == 'baseline' else ('yes' if r['evidence'] == f['evidence'] else 'NO')} "
                f"| {'yes' if r['evidence'] == b['evidence'] else 'NO'} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
