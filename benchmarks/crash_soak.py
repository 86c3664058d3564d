"""Crash-safety soak: SIGKILL `vgg-retrieval index` at random moments, over and over (not in CI).

Each round changes the photo folder a little (adds, rewrites or deletes files), starts the real CLI,
and kills it with SIGKILL either after a random delay or at one of the named crash points
(scan, embed, vectors file written, renamed, committed). After every kill: `check` must pass and
every indexed path must be there exactly once. At the end the index is completed and compared with a
clean build of the same folder: same files, same descriptors.

    python benchmarks/crash_soak.py --kills 30 [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos" / "samples"
sys.path.insert(0, str(ROOT))


def index_cmd(folder: Path, ix: Path, model: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "indexer",
        "index",
        str(folder),
        "--index",
        str(ix),
        "--model",
        str(model),
        "--commit-every",
        "3",
        "--batch-size",
        "2",
        "--workers",
        "1",
        "-q",
    ]


def state(ix: Path) -> dict:
    from indexer import Index
    from indexer.storage.tables import ImageRow

    with Index.open(ix) as idx:
        rep = idx.check()
        if not rep.ok:
            raise AssertionError(f"check failed: {rep.problems}")
        with idx.store.session() as s:
            rows = [(r.path, r.id) for r in s.query(ImageRow)]
        paths = [p for p, _ in rows]
        if len(paths) != len(set(paths)):
            raise AssertionError("a file is indexed twice")
        return {p: idx.vector(i) for p, i in rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    from indexer.faults import ENV, POINTS
    from retrieval.engines.export import export_model
    from retrieval.nets.builder import build

    pool = sorted((PHOTOS / "pixabay").glob("*.jpg")) + sorted((PHOTOS / "vacation").glob("*.jpg"))[:60]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec, net = build("vgg11", "random", input_size=96)
        model = export_model(spec, net, tmp / "model")
        folder, ix = tmp / "photos", tmp / "ix"
        folder.mkdir()
        for p in rng.sample(pool, 40):
            shutil.copy(p, folder / p.name)
        how = collections.Counter()
        t0 = time.time()
        kills = 0
        while kills < args.kills:
            # change the folder a little
            present = sorted(folder.iterdir())
            for p in rng.sample(pool, 3):
                shutil.copy(p, folder / p.name)
            if len(present) > 20:
                rng.choice(present).unlink()
                victim = rng.choice(sorted(folder.iterdir()))
                shutil.copy(rng.choice(pool), victim)  # same name, other picture
            env = dict(os.environ)
            if rng.random() < 0.5:
                point = rng.choice(POINTS)
                env[ENV] = point
                proc = subprocess.Popen(
                    index_cmd(folder, ix, model),
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                proc.wait(timeout=600)
                label = f"crash point {point}"
            else:
                delay = rng.uniform(0.3, 6.0)
                proc = subprocess.Popen(
                    index_cmd(folder, ix, model), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                label = "random delay"
            if proc.returncode == -signal.SIGKILL:
                kills += 1
                how[label] += 1
            else:
                how[f"{label}: finished before the kill"] += 1
            if ix.exists() and (ix / "index.sqlite").exists():
                state(ix)  # raises on any inconsistency
        subprocess.run(index_cmd(folder, ix, model), check=True, capture_output=True)
        final = state(ix)
        subprocess.run(index_cmd(folder, tmp / "clean", model), check=True, capture_output=True)
        clean = state(tmp / "clean")
        same_files = set(final) == set(clean) == {str(p) for p in folder.iterdir()}
        worst = min(float(np.dot(final[p], clean[p])) for p in clean)
        print(f"\n{kills} SIGKILLs survived in {time.time() - t0:.0f} s; check passed after every one\n")
        print("| how | count |\n|---|---:|")
        for k, v in sorted(how.items()):
            print(f"| {k} | {v} |")
        print(
            f"\nfinal index = clean build: files {'identical' if same_files else 'DIFFER'} "
            f"({len(final)} images), lowest descriptor cosine {worst:.6f}"
        )
        return 0 if same_files and worst > 0.99999 else 1


if __name__ == "__main__":
    sys.exit(main())
