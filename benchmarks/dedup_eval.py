"""Near-duplicate detection quality: VGG16 descriptors + FAISS vs imagehash pHash, per edit type.

Builds a set with benchmarks/near_duplicates.py (seeded edited copies of real photos, plus real
distractor photos), indexes it with the shared VGG16 weights (OpenVINO engine, default input size),
runs ``find_duplicates`` and, in the same run, pHash (64-bit, Hamming distance) grouped by the same
keeper-centred rule. A pair of files is a true duplicate pair iff both come from the same original.

Metrics: recall = copies that end up in the same group as their own original; precision = the
report's (keeper, member) links that join two files of the same original (a link between different
photos, distractors included, is a false pair). Per edit type: that edit's copies and the links
that involve one of them; overall: all copies and all links.
Also prints a cosine-only threshold sweep (how the --no-verify default was chosen) and a sweep of
the keypoint-verification rule (threshold, floor, agreeing keypoints: how the defaults were chosen),
then a table at the defaults: verified vs cosine only vs pHash, with timings. ``--models plain,trim`` indexes
the set twice, without and with border trimming (ModelSpec.trim_borders), and compares them with
pHash in one run.
Needs: pip install imagehash (benchmark only).
Run:  python benchmarks/dedup_eval.py [--originals 50] [--distractors 150] [--seed 0] [--work DIR]
                                     [--models plain,trim] [--no-verify]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT.parent / "shared" / "data"
WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"
PHASH_DEFAULT = 10  # imagededup's default max Hamming distance for pHash


def family_map(root: Path, truth):
    fam, edit = {}, {}
    for orig, copy, kind, _ in truth:
        fam[str(root / orig)] = orig
        fam[str(root / copy)] = orig
        edit[str(root / copy)] = kind
    for p in sorted((root / "distractors").iterdir()):
        fam[str(p)] = str(p)
    return fam, edit


def links_of(groups) -> set[tuple[str, str]]:
    """The pairs a report claims: (keeper, member) of each group."""
    return {(files[0], m) for files in groups for m in files[1:]}


def same_group(groups) -> dict[str, int]:
    return {f: n for n, files in enumerate(groups) for f in files}


def score(groups, fam: dict, edit: dict, kinds: list[str]):
    """{row: (tp, fp, fn, P, R, F1)} for 'overall' and each edit kind.

    Recall: copies that end up in the same group as their original (TP) or not (FN).
    Precision: (keeper, member) links of the report that join files of one original (TP) or of two
    different photos (FP). Per edit kind: copies made with that edit, and links that involve one."""
    where = same_group(groups)
    links = links_of(groups)
    rows = {}
    for kind in ["overall"] + kinds:
        copies = [c for c in edit if kind == "overall" or edit[c] == kind]
        orig = {c: str(Path(c).parents[1] / fam[c]) for c in copies}
        tp_r = sum(1 for c in copies if c in where and where[c] == where.get(orig[c]))
        fn = len(copies) - tp_r
        mine = [(a, b) for a, b in links if kind == "overall" or edit.get(a) == kind or edit.get(b) == kind]
        tp_p = sum(1 for a, b in mine if fam[a] == fam[b])
        fp = len(mine) - tp_p
        P = tp_p / len(mine) if mine else 1.0
        R = tp_r / len(copies) if copies else 1.0
        F = 2 * P * R / (P + R) if P + R else 0.0
        rows[kind] = (tp_r, fp, fn, P, R, F)
    return rows


def vgg_groups(index, threshold, verify=False, verifier=None, **options):
    from indexer.dedup import find_duplicates

    rep = find_duplicates(index, threshold=threshold, verify=verify, verifier=verifier, **options)
    return [[m.path for m in g.files] for g in rep.groups], rep


class MemoVerifier:
    """The real Verifier, each pair matched once across a sweep (direct and mirrored always tried,
    so the count does not depend on the sweep's min_keypoints)."""

    def __init__(self):
        from indexer.dedup.verify import Verifier

        self.inner = Verifier(min_keypoints=10 ** 6)
        self.memo: dict = {}
        self.unreadable = self.inner.unreadable

    def verify(self, pairs, progress=None):
        todo = [p for p in dict.fromkeys(pairs) if p not in self.memo]
        for p, c in zip(todo, self.inner.verify(todo)):
            self.memo[p] = int(c)
        return np.array([self.memo[p] for p in pairs], dtype=np.int32)


def phash_groups(paths, hashes, max_dist, meta):
    from indexer.dedup.groups import group_pairs, keeper_rank

    h = np.array([[int(b) for b in x.hash.flatten()] for x in hashes], dtype=np.uint8)
    packed = np.packbits(h, axis=1)
    ii, jj, ss = [], [], []
    for a in range(len(paths)):  # brute force is fine at this size (the baseline, not our method)
        d = np.unpackbits(packed[a] ^ packed[a + 1:], axis=1).sum(1)
        hit = np.nonzero(d <= max_dist)[0]
        ii += [a] * len(hit)
        jj += (a + 1 + hit).tolist()
        ss += (1 - d[hit] / 64.0).tolist()
    rank = keeper_rank(*meta)
    groups = group_pairs(len(paths), np.array(ii, np.int64), np.array(jj, np.int64), np.array(ss, np.float32), rank)
    return [[paths[k]] + [paths[m] for m in members] for k, members, _ in groups]


def table(title, rows_vgg, rows_ph, kinds):
    print(f"\n### {title}\n")
    print("| edit | VGG P | VGG R | VGG F1 | pHash P | pHash R | pHash F1 | false pairs VGG / pHash |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in ["overall"] + kinds:
        v, p = rows_vgg[kind], rows_ph[kind]
        print(f"| {kind} | {v[3]:.3f} | {v[4]:.3f} | {v[5]:.3f} | {p[3]:.3f} | {p[4]:.3f} | {p[5]:.3f} | {v[1]} / {p[1]} |")


def open_index(idx_dir: Path, trim: bool):
    from indexer import Index
    from retrieval.builder import build

    if Index.exists(idx_dir):
        index = Index.open(idx_dir)
        if index.spec.trim_borders != trim:
            raise SystemExit(f"{idx_dir} was built with trim_borders={index.spec.trim_borders}; delete it or use --work")
        return index
    spec, net = build("vgg16", str(WEIGHTS))
    return Index.create(idx_dir, spec.replace(trim_borders=trim), net)


def evaluate(index, data, fam, edit, kinds, threshold, paths, hashes, meta, best_ph, verify=True):
    """Sweeps, main tables and misses for one index; returns the rows at the defaults."""
    from indexer.dedup.find import VERIFY_FLOOR, default_threshold
    from indexer.dedup.verify import MIN_KEYPOINTS

    name = index.spec.describe()
    plain_t = default_threshold(index.spec, verify=False)
    print(f"\n## {name}")
    print("\n### Threshold sweep, cosine only (overall)\n")
    print("| method | threshold | P | R | F1 |")
    print("|---|---|---|---|---|")
    best = (-1, None)
    for t in np.round(np.arange(0.60, 0.985, 0.02), 2):
        groups, _ = vgg_groups(index, float(t))
        r = score(groups, fam, edit, kinds)["overall"]
        print(f"| VGG16 cosine >= | {t:.2f} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.3f} |")
        if r[5] > best[0]:
            best = (r[5], float(t))
    print(f"\nbest-F1 cosine-only threshold on this set: {best[1]:.2f} (F1 {best[0]:.3f})")
    if verify:
        memo = MemoVerifier()
        print("\n### Keypoint verification sweep (overall): cosine >= T, or >= floor with >= K agreeing keypoints\n")
        print("| T | floor | K | P | R | F1 | pairs verified |")
        print("|---|---|---|---|---|---|---|")
        vbest = (-1, None)
        for t in (0.81, 0.86, 0.90, 0.94):
            for floor in (0.50, 0.55, 0.60, 0.65):
                for kp in (10, 15, 20, 30, 40):
                    groups, rep = vgg_groups(index, t, verify=True, verifier=memo, verify_floor=floor,
                                             min_keypoints=kp)
                    r = score(groups, fam, edit, kinds)["overall"]
                    print(f"| {t:.2f} | {floor:.2f} | {kp} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.3f} | "
                          f"{rep.stats.get('verified_pairs', 0)} |")
                    if r[5] > vbest[0]:
                        vbest = (r[5], (t, floor, kp))
        print(f"\nbest-F1 verification setting on this set: T {vbest[1][0]:.2f}, floor {vbest[1][1]:.2f}, "
              f"K {vbest[1][2]} (F1 {vbest[0]:.3f})")
        same = np.array([fam[a] == fam[b] for a, b in memo.memo], dtype=bool)
        counts = np.array(list(memo.memo.values()))
        for label, sel in (("copies of one photo", same), ("different photos", ~same)):
            if sel.any():
                pct = np.percentile(counts[sel], [1, 5, 50, 95, 99])
                print(f"agreeing keypoints, {label} ({int(sel.sum())} verified pairs): "
                      f"p1 {pct[0]:.0f}, p5 {pct[1]:.0f}, median {pct[2]:.0f}, p95 {pct[3]:.0f}, p99 {pct[4]:.0f}")
    # the defaults, timed with a fresh verifier (nothing cached)
    t2 = time.perf_counter()
    groups_plain, _ = vgg_groups(index, plain_t)
    t_plain = time.perf_counter() - t2
    rows_plain = score(groups_plain, fam, edit, kinds)
    groups, report = groups_plain, None
    rv = rows_plain
    if verify:
        t2 = time.perf_counter()
        groups, report = vgg_groups(index, threshold, verify=True)
        t_find = time.perf_counter() - t2
        rv = score(groups, fam, edit, kinds)
        print(f"\nfind_duplicates at the defaults ({report.rule_text}): {t_find:.1f}s, of which keypoint "
              f"verification {report.stats.get('verify_seconds', 0):.1f}s for {report.stats.get('verified_pairs', 0)} "
              f"pairs ({report.stats.get('verified_accepted', 0)} accepted); cosine only: {t_plain:.1f}s")
    rp = score(phash_groups(paths, hashes, PHASH_DEFAULT, meta), fam, edit, kinds)
    rp2 = score(phash_groups(paths, hashes, best_ph[1], meta), fam, edit, kinds)
    title = f"verified (cosine >= {threshold:.2f}, or >= {VERIFY_FLOOR} with >= {MIN_KEYPOINTS} keypoints)" \
        if verify else f"cosine >= {plain_t:.2f}"
    print(f"\n### {name}: {title} vs cosine only at {plain_t:.2f} vs pHash (Hamming <= {PHASH_DEFAULT}; "
          f"its best on this set: {best_ph[1]})\n")
    print("| edit | verified P | R | F1 | cosine-only P | R | F1 | pHash P | R | F1 | pHash@best F1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in ["overall"] + kinds:
        v, c, p, p2 = rv[kind], rows_plain[kind], rp[kind], rp2[kind]
        print(f"| {kind} | {v[3]:.3f} | {v[4]:.3f} | {v[5]:.3f} | {c[3]:.3f} | {c[4]:.3f} | {c[5]:.3f} | "
              f"{p[3]:.3f} | {p[4]:.3f} | {p[5]:.3f} | {p2[5]:.3f} |")
    # the misses and false pairs, for inspection
    fps = sorted((a, b) for a, b in links_of(groups) if fam[a] != fam[b])
    print(f"\nfalse pairs: {len(fps)}")
    sims = {}
    for g in (report.groups if report else []):
        for m in g.members:
            sims[(g.keeper.path, m.path)] = m.score
    for a, b in fps[:15]:
        print(f"  {Path(a).parent.name}/{Path(a).name}  ~  {Path(b).parent.name}/{Path(b).name}  "
              f"{sims.get((a, b), sims.get((b, a), float('nan'))):.3f}")
    where = same_group(groups)
    missed = [c for c in edit if where.get(c, -1) != where.get(str(data.resolve() / fam[c]), -2)]
    print(f"copies not grouped with their original: {len(missed)}")
    for c in missed[:25]:
        v1 = index.vector(index.store.row_by_path(c).id)
        v2 = index.vector(index.store.row_by_path(str(data.resolve() / fam[c])).id)
        print(f"  {Path(c).name}: cosine to original {float(np.dot(v1, v2)):.3f}")
    return rv


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--originals", type=int, default=50)
    ap.add_argument("--distractors", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/vgg-retrieval-dedup-eval"),
                    help="Working folder (reused when it already holds the set and indexes).")
    ap.add_argument("--threshold", type=float, default=None, help="Threshold for the main table [default: the default]")
    ap.add_argument("--models", default="trim",
                    help="Comma-separated: 'trim' (ModelSpec.trim_borders, the default for new indexes) and/or "
                         "'plain' (no trimming, indexes made before it); each gets its own index, one run [trim]")
    ap.add_argument("--no-verify", dest="verify", action="store_false",
                    help="Cosine only (no keypoint verification sweep and table)")
    args = ap.parse_args()
    import imagehash
    from PIL import Image

    from indexer.dedup.find import default_threshold
    from near_duplicates import EDITS, generate, read_truth

    data = args.work / "set"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or set(models) - {"trim", "plain"}:
        raise SystemExit("--models takes 'trim' and/or 'plain'")
    if not (data / "truth.tsv").is_file():
        generate(data, args.originals, args.distractors, args.seed)
    truth = read_truth(data / "truth.tsv")
    fam, edit = family_map(data.resolve(), truth)
    kinds = [k for k in EDITS if k in set(edit.values())]
    indexes = []
    for m in models:
        t0 = time.perf_counter()
        index = open_index(args.work / ("index" if m == "plain" else "index-trim"), m == "trim")
        rep = index.update([data], progress=False)
        indexes.append(index)
        print(f"model {index.spec.describe()}: index {rep.summary()} ({time.perf_counter() - t0:.0f}s)")
    print(f"set: {len(truth)} copies of {len(set(t[0] for t in truth))} originals ({len(kinds)} edit types) + "
          f"{sum(1 for f in fam if '/distractors/' in f)} real distractors = {len(fam)} images")

    # pHash of the same files, measured in the same run
    t1 = time.perf_counter()
    paths = sorted(fam)
    hashes, meta = [], ([], [], [], [])
    for n, p in enumerate(paths):
        with Image.open(p) as im:
            hashes.append(imagehash.phash(im))
            meta[0].append(im.width * im.height)
        st = Path(p).stat()
        meta[1].append(st.st_size)
        meta[2].append(st.st_mtime_ns)
        meta[3].append(n)
    t_phash = time.perf_counter() - t1
    print("\n### pHash sweep (overall)\n")
    print("| method | threshold | P | R | F1 |")
    print("|---|---|---|---|---|")
    best_ph = (-1, None)
    for d in range(0, 25, 2):
        r = score(phash_groups(paths, hashes, d, meta), fam, edit, kinds)["overall"]
        print(f"| pHash Hamming <= | {d} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.3f} |")
        if r[5] > best_ph[0]:
            best_ph = (r[5], d)
    print(f"\nbest pHash distance on this set: {best_ph[1]} (F1 {best_ph[0]:.3f}); pHash {t_phash:.1f}s")

    thrs = [default_threshold(ix.spec, args.verify) if args.threshold is None else args.threshold for ix in indexes]
    results = [evaluate(index, data, fam, edit, kinds, t, paths, hashes, meta, best_ph, verify=args.verify)
               for index, t in zip(indexes, thrs)]
    if len(indexes) > 1:  # before / after side by side, pHash from the same run
        rp = score(phash_groups(paths, hashes, PHASH_DEFAULT, meta), fam, edit, kinds)
        names = [f"{'trimmed' if ix.spec.trim_borders else 'plain'}@{t:.2f}" for ix, t in zip(indexes, thrs)]
        print(f"\n### At each model's default threshold: {' vs '.join(names)} vs pHash (Hamming <= {PHASH_DEFAULT})\n")
        print("| edit | " + " | ".join(f"{n} P | {n} R | {n} F1" for n in names) + " | pHash P | pHash R | pHash F1 |")
        print("|---|" + "---|" * (3 * len(names) + 3))
        for kind in ["overall"] + kinds:
            cells = [f"{r[kind][3]:.3f} | {r[kind][4]:.3f} | {r[kind][5]:.3f}" for r in results]
            print(f"| {kind} | " + " | ".join(cells) + f" | {rp[kind][3]:.3f} | {rp[kind][4]:.3f} | {rp[kind][5]:.3f} |")
    for index in indexes:
        index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
