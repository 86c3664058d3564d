"""Real same-scene pairs with one side re-saved as JPEG at a lower quality: does dedup take any of
them for a duplicate? (docs/dedup.md, "Re-saves")

The pairs are dedup_margins.py's negatives (every real pair that passes the scene test, minus the
judged copies), from the indexes dedup_eval.py made under --work; each pair of one size is
compared with either side re-saved at each quality. Prints the verdicts and every duplicate.

    PYTHONPATH=. python benchmarks/dedup_resaved_retakes.py --work /tmp/eval_main
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SETS = "paris5,holidays150,vacation,hymenoptera,tree,opencv"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="dedup_eval.py's --work")
    ap.add_argument("--sets", default=SETS)
    ap.add_argument("--qualities", default="5,15,30,50,70")
    args = ap.parse_args()
    from dedup_margins import negatives
    from PIL import Image

    from indexer.dedup.rule import classify, describe
    from indexer.dedup.verify import Verifier

    pairs = negatives(args.work, args.sets.split(","))
    v, count = Verifier(workers=1), collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, a, b, _) in enumerate(pairs):
            with Image.open(a) as ia, Image.open(b) as ib:
                one_size = ia.size == ib.size
            if not one_size:
                count["pairs of two sizes (not re-saved)"] += 1
                continue
            for side, (low, keep) in enumerate(((b, a), (a, b))):
                with Image.open(low) as im:
                    raw = im.convert("RGB")
                    exif = {"exif": im.info["exif"]} if "exif" in im.info else {}
                for q in map(int, args.qualities.split(",")):
                    p = Path(tmp) / f"{i}_{side}_{q}.jpg"  # a path of its own: features are kept by path
                    raw.save(p, "JPEG", quality=q, **exif)
                    ev = v.compare(keep, str(p))
                    verdict = classify(ev)
                    count[verdict or "neither"] += 1
                    if verdict == "duplicate":
                        print(
                            f"DUPLICATE {name}: {Path(keep).name} / {Path(low).name} at quality {q}: {describe(ev)}"
                        )
    print(f"{len(pairs)} real same-scene pairs; re-saved comparisons by verdict: {dict(count)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
