"""Fuzz the decode path (not run in CI): mutated real images must either decode or raise ImageError.

Hypothesis draws mutations (byte flips, inserted runs, truncation, header-field overwrites) of real
JPEG/PNG/GIF/WebP/TIFF/BMP files; each goes through ``load_and_prepare`` exactly as the indexer
calls it. Any other exception, or a result of the wrong shape, is a finding. Also watches the
process's memory across the run (a leak would show as steady RSS growth).

    python benchmarks/fuzz_decode.py --seconds 120
"""

from __future__ import annotations

import argparse
import collections
import io
import resource
import sys
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from retrieval.preprocess import ImageError, load_and_prepare

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos" / "samples"


def seeds() -> dict[str, bytes]:
    base = Image.open(DATA / "skimage" / "coffee.png").convert("RGB").resize((120, 80))
    out = {}
    for fmt, kw in (
        ("JPEG", {"quality": 80}),
        ("PNG", {}),
        ("GIF", {}),
        ("WEBP", {}),
        ("TIFF", {}),
        ("BMP", {}),
    ):
        buf = io.BytesIO()
        base.save(buf, fmt, **kw)
        out[fmt] = buf.getvalue()
    out["JPEG-real"] = (DATA / "pixabay" / "cat01.jpg").read_bytes()[:60000]
    return out


SEEDS = seeds()
mutation = st.tuples(
    st.sampled_from(["flip", "insert", "overwrite32", "truncate"]),
    st.floats(0, 1),
    st.binary(min_size=1, max_size=8),
)


def mutate(data: bytes, plan) -> bytes:
    b = bytearray(data)
    for kind, where, blob in plan:
        i = int(where * (len(b) - 1)) if b else 0
        if kind == "flip" and b:
            b[i] ^= blob[0] or 1
        elif kind == "insert":
            b[i:i] = blob
        elif kind == "overwrite32":
            b[i : i + 4] = (blob * 4)[:4]  # width/height/length fields: large or zero values
        elif kind == "truncate":
            del b[max(1, i) :]
    return bytes(b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    outcomes: collections.Counter = collections.Counter()
    findings: list[str] = []
    rss: list[int] = []

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.sampled_from(sorted(SEEDS)), st.lists(mutation, min_size=1, max_size=6))
    def one(fmt, plan):
        data = mutate(SEEDS[fmt], plan)
        try:
            p = load_and_prepare(data, 64, max_pixels=20_000_000)
            assert p.array.shape == (64, 64, 3) and 1 <= p.valid[0] <= 64 and 1 <= p.valid[1] <= 64
            outcomes["decoded"] += 1
        except ImageError as e:
            outcomes["ImageError: " + str(e).split(":")[0].split("(")[0].strip()[:40]] += 1
        except Exception:
            findings.append(f"{fmt} {plan}: {traceback.format_exc().splitlines()[-1]}")
            outcomes["FINDING"] += 1

    t0 = time.time()
    rounds = 0
    while time.time() - t0 < args.seconds:
        one()
        rounds += 1
        rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    total = sum(outcomes.values())
    print(
        f"\n{total} mutated inputs in {time.time() - t0:.0f} s ({rounds} rounds of 300), "
        f"{len(findings)} findings; max RSS {rss[0] // 1024} MiB after round 1, {rss[-1] // 1024} MiB at the end\n"
    )
    print("| outcome | count |\n|---|---:|")
    for k, v in outcomes.most_common():
        print(f"| {k} | {v} |")
    for f in findings[:20]:
        print("FINDING:", f)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
