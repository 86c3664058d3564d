"""Duplicate finding that users can act on: recall on generated copies, false pairs on real photos.

By default one table from one run (benchmarks/dedup_table.py): rows = sets (paris5, holidays150,
vacation, hymenoptera, frames of opencv-doc's tree.avi >= 0.5 s apart, the opencv samples, and the
generated copies per edit kind), columns = photos, false duplicate pairs per 1,000 photos,
similar-shot groups, recall of generated copies, keeper correct, photos/s of ``find_duplicates``.
The real sets' indexes live under --work as idx-<set> (made on first use).
Run:  python benchmarks/dedup_eval.py [--originals 50 --distractors 150] [--real paris5,...] [--work DIR]
(the generated set is made once per --work, and a folder made with other counts is refused; the
tables of docs/dedup.md before 2026-12-07 are of --originals 30 --distractors 90)

With --compare, the older report (before issue 24), two measurements in one run at the defaults
of ``find_duplicates``:

1. **Generated copies** (benchmarks/near_duplicates.py: seeded edited copies of real photos - 24
   edit kinds, turned by 90/180/270 and perspective included - plus real distractor photos, many
   of them other shots of the same places): P/R/F1 per edit, against cosine only (--no-verify
   default) and imagehash pHash (64-bit, Hamming <= 10, same keeper-centred grouping) on the same
   files. Recall = copies in the same *duplicate* group as their own original; precision = the
   duplicate groups' (keeper, member) links that join two files of one original.
2. **Real collections without copies** (../shared/data/photos: samples/vacation, hymenoptera,
   flowers5 - many same-place and same-subject shots, no copies apart from flowers5's six
   byte-identical files): every (keeper, member) link of a duplicate group that is not a
   byte-identical copy is a false pair; reported per 1,000 photos (the headline), with pHash's on
   the same files, and the similar-shot groups (review only) counted apart.

Then a sweep of the pixel rule's thresholds (``verify.MIN_PIXEL``, ``MIN_CELLS``, ``MAX_OUTSIDE``,
``MIN_KEYPOINTS``) over both, each pair verified once (evidence cached), to show the margin.
Embeddings are cached as indexes under --work (/tmp, not the repository): a rerun embeds nothing.
Needs: pip install imagehash (the bench extra).
Run:  python benchmarks/dedup_eval.py [--quick] [--originals 50] [--distractors 150] [--seed 0]
                                     [--real vacation,hymenoptera,flowers5] [--flowers-limit N] [--work DIR]
                                     [--pooling rmac]  (another pooling than the default: its own --work)
--quick: 6 originals x 24 edits + 18 distractors, and vacation + hymenoptera (547 photos).
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
PHOTOS = DATA / "photos"
RETRIEVAL = DATA / "retrieval"
REAL_SETS = {
    "paris5": RETRIEVAL / "paris5",
    "holidays150": RETRIEVAL / "holidays150",
    "vacation": PHOTOS / "samples" / "vacation",
    "hymenoptera": PHOTOS / "hymenoptera",
    "tree": None,
    "opencv": PHOTOS / "samples" / "opencv",
    "flowers5": PHOTOS / "flowers5",
}
TABLE_SETS = "paris5,holidays150,vacation,hymenoptera,tree,opencv"
PHASH_DEFAULT = 10  # imagededup's default max Hamming distance for pHash
SWEEP = {
    "MIN_PIXEL": (0.3, 0.4, 0.5, 0.6, 0.7),
    "MIN_CELLS": (0.3, 0.4, 0.5, 0.6, 0.7),
    "MAX_OUTSIDE": (0.05, 0.10, 0.20, 1.0),
    "MIN_KEYPOINTS": (12, 16, 20, 30),
}


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


def score(groups, fam: dict, edit: dict, kinds: list[str]):
    """{row: (tp, fp, fn, P, R, F1, links)} for 'overall' and each edit kind (see the module doc)."""
    where = {f: n for n, files in enumerate(groups) for f in files}
    links = links_of(groups)
    rows = {}
    for kind in ["overall"] + kinds:
        copies = [c for c in edit if kind == "overall" or edit[c] == kind]
        orig = {c: str(Path(c).parents[1] / fam[c]) for c in copies}
        tp_r = sum(1 for c in copies if c in where and where[c] == where.get(orig[c]))
        mine = [(a, b) for a, b in links if kind == "overall" or edit.get(a) == kind or edit.get(b) == kind]
        tp_p = sum(1 for a, b in mine if fam[a] == fam[b])
        P = tp_p / len(mine) if mine else 1.0
        R = tp_r / len(copies) if copies else 1.0
        rows[kind] = (
            tp_r,
            len(mine) - tp_p,
            len(copies) - tp_r,
            P,
            R,
            2 * P * R / (P + R) if P + R else 0.0,
            len(mine),
        )
    return rows


class MemoVerifier:
    """The real Verifier, each pair verified once across a sweep and across runs (the evidence does
    not depend on the thresholds swept; they act in ``verify.classify``). The cache file under
    --work is keyed by the verification's sources (verify, align, copytests, capture), so a change to
    the verification starts afresh."""

    def __init__(self, cache: Path | None = None):
        import hashlib
        import pickle

        import indexer.dedup.verify as verify

        self.inner = verify.Verifier()
        self.unreadable = self.inner.unreadable
        self.seconds = 0.0
        self.cache = cache
        self.version = hashlib.sha256(
            b"".join(
                Path(verify.__file__).with_name(f).read_bytes()
                for f in ("verify.py", "align.py", "copytests.py", "capture.py")
            )
        ).hexdigest()
        self.memo: dict = {}
        if cache and cache.is_file():
            version, memo = pickle.loads(cache.read_bytes())
            self.memo = memo if version == self.version else {}

    def __getattr__(self, name):  # features_of, cv2...: the keeper (keeper.rekeep) reads them
        return getattr(self.inner, name)

    def verify(self, pairs, progress=None, mirror=None):
        mirror = [True] * len(pairs) if mirror is None else list(mirror)
        keys = [(a, b, bool(m)) for (a, b), m in zip(pairs, mirror)]
        todo = [k for k in dict.fromkeys(keys) if k not in self.memo]
        t0 = time.perf_counter()
        self.memo.update(zip(todo, self.inner.verify([k[:2] for k in todo], mirror=[k[2] for k in todo])))
        self.seconds += time.perf_counter() - t0
        return [self.memo[k] for k in keys]

    def save(self):
        import pickle

        if self.cache:
            self.cache.write_bytes(pickle.dumps((self.version, self.memo)))


def dedup_groups(index, verifier=None, duplicates_only=True, **options):
    from indexer.dedup import find_duplicates

    rep = find_duplicates(index, verifier=verifier, **options)
    return [[m.path for m in g.files] for g in rep.groups if g.is_duplicates or not duplicates_only], rep


def phash_groups(paths, hashes, max_dist, meta):
    from indexer.dedup.groups import group_pairs, keeper_rank

    h = np.array([[int(b) for b in x.hash.flatten()] for x in hashes], dtype=np.uint8)
    packed = np.packbits(h, axis=1)
    ii, jj, ss = [], [], []
    for a in range(len(paths)):  # brute force is fine at this size (the baseline, not our method)
        d = np.unpackbits(packed[a] ^ packed[a + 1 :], axis=1).sum(1)
        hit = np.nonzero(d <= max_dist)[0]
        ii += [a] * len(hit)
        jj += (a + 1 + hit).tolist()
        ss += (1 - d[hit] / 64.0).tolist()
    groups = group_pairs(
        len(paths),
        np.array(ii, np.int64),
        np.array(jj, np.int64),
        np.array(ss, np.float32),
        keeper_rank(*meta),
    )
    return [[paths[k]] + [paths[m] for m in members] for k, members, _ in groups]


def phash_groups_of(paths):
    """pHash groups (Hamming <= PHASH_DEFAULT) of the readable files among ``paths``."""
    import imagehash
    from PIL import Image

    ok, hashes, meta = [], [], ([], [], [], [])
    for p in paths:
        try:
            with Image.open(p) as im:
                h = imagehash.phash(im.convert("RGB"))
                pixels = im.width * im.height
        except Exception:  # noqa: BLE001 - a file no photo tool can read is no pHash candidate either
            continue
        st = Path(p).stat()
        for lst, v in zip((hashes, *meta), (h, pixels, st.st_size, st.st_mtime_ns, len(ok))):
            lst.append(v)
        ok.append(p)
    return phash_groups(ok, hashes, PHASH_DEFAULT, meta)


def open_index(idx_dir: Path, trim: bool = True, pooling: str | None = None):
    """The index under ``idx_dir``, created with the default model (``pooling``: another pooling)
    when there is none; one of another model is refused (its descriptors are not the ones asked for)."""
    from indexer import Index
    from retrieval.nets.builder import build
    from retrieval.spec import DEFAULT_INPUT_POLICY, DEFAULT_POOLING

    if Index.exists(idx_dir):
        index = Index.open(idx_dir)
        want = (trim, pooling or DEFAULT_POOLING, DEFAULT_INPUT_POLICY)
        have = (index.spec.trim_borders, index.spec.pooling, index.spec.input_policy)
        if have != want:
            raise SystemExit(
                f"{idx_dir} was built with (trim_borders, pooling, input_policy) = {have}, not {want}; "
                f"delete it or use another --work"
            )
        return index
    spec, net = build("vgg16", str(WEIGHTS), pooling=pooling)
    return Index.create(idx_dir, spec.replace(trim_borders=trim), net)


def indexed(idx_dir: Path, folders, limit: int | None = None, pooling: str | None = None):
    """The index of ``folders`` under ``idx_dir`` (embedding only what is new; ``limit``: at most
    that many files of the folders, sorted, copied nowhere - a subset is indexed through a folder
    of links)."""
    if limit:
        sub = idx_dir.parent / (idx_dir.name + "-files")
        files = sorted(p for f in folders for p in Path(f).rglob("*") if p.is_file())[:limit]
        for p in files:
            link = sub / p.relative_to(Path(folders[0]).parent)
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(p)
        folders = [sub]
    t0 = time.perf_counter()
    index = open_index(idx_dir, pooling=pooling)
    rep = index.update(folders, progress=False)
    print(
        f"index {idx_dir.name}: {rep.summary()} ({time.perf_counter() - t0:.0f}s); model {index.spec.describe()}"
    )
    return index


def family_indexes(base: Path, index, edit: dict, kinds: list[str]):
    """Two copies of the generated set's index, each with half of the edit kinds (alternating):
    24 copies of one photo would be a family larger than the k = 16 neighbours the search keeps
    (real collections rarely hold more than a few copies of a picture), so each pass has families
    of 13 (the original and 12 copies), as in the held-out set. Made once (no embedding: the
    other half is forgotten)."""
    import shutil

    from indexer import Index

    out = []
    for n, half in enumerate((kinds[0::2], kinds[1::2])):
        d = base / f"index-trim-family{n}"
        if not Index.exists(d):
            shutil.copytree(index.directory, d)
            with Index.open(d) as ix:
                ix.forget([c for c, k in edit.items() if k not in half])
        out.append((Index.open(d), set(half)))
    return out


def _combine(parts: list[dict], kinds: list[str]) -> dict:
    """Rows per edit from the pass that holds it; overall from the summed counts."""
    rows = {}
    for kind in kinds:
        rows[kind] = next(r[kind] for r, half in parts if kind in half)
    tp, fp, fn, links = (sum(r["overall"][i] for r, _ in parts) for i in (0, 1, 2, 6))
    P = 1 - fp / links if links else 1.0
    R = tp / max(1, tp + fn)
    rows["overall"] = (tp, fp, fn, P, R, 2 * P * R / (P + R) if P + R else 0.0, links)
    return rows


def generated(args, memo):
    """Rows per edit for the default, cosine only and pHash on the generated set."""
    from near_duplicates import EDITS, generate, read_truth

    from indexer.dedup.find import default_threshold

    base = args.work / "quick" if args.quick else args.work
    data = base / "set"
    if not (data / "truth.tsv").is_file():
        generate(data, args.originals, args.distractors, args.seed)
    truth = read_truth(data / "truth.tsv")  # its counts checked in main (check_generated)
    fam, edit = family_map(data.resolve(), truth)
    kinds = [k for k in EDITS if k in set(edit.values())]
    index = indexed(base / "index-trim", [data], pooling=args.pooling)
    print(
        f"generated set: {len(truth)} copies of {len(set(t[0] for t in truth))} originals ({len(kinds)} edit "
        f"kinds) + {sum(1 for f in fam if '/distractors/' in f)} real distractors = {len(fam)} images; "
        f"evaluated in two passes of {len(kinds) // 2} edit kinds (families of {len(kinds) // 2 + 1} files)"
    )
    parts = {"default": [], "cosine only": [], "pHash": []}
    fps, t0, stats, similar_copies = [], time.perf_counter(), [], 0
    passes = family_indexes(base, index, edit, kinds)
    for ix, half in passes:
        e = {c: k for c, k in edit.items() if k in half}
        f = {p: o for p, o in fam.items() if p not in edit or p in e}
        groups, rep = dedup_groups(ix, memo)
        parts["default"].append((score(groups, f, e, kinds), half))
        stats.append(rep.stats)
        similar_copies += sum(
            1 for g in rep.similar_groups for m in g.members if f.get(m.path) == f.get(g.keeper.path)
        )
        fps += sorted((a, b) for a, b in links_of(groups) if f[a] != f[b])
        parts["cosine only"].append((score(dedup_groups(ix, verify=False)[0], f, e, kinds), half))
        parts["pHash"].append((score(phash_groups_of(sorted(f)), f, e, kinds), half))
    rows = {m: _combine(v, kinds) for m, v in parts.items()}
    print(
        f"\ndefault ({rep.rule_text}): {time.perf_counter() - t0:.0f}s for both passes (with cosine only and "
        f"pHash), {sum(x.get('verified_pairs', 0) for x in stats)} pairs verified, "
        f"{sum(x.get('rotated_candidates', 0) for x in stats)} turned candidates; {similar_copies} true copies "
        f"reported as similar shots instead; cosine only at {default_threshold(index.spec, False):.2f}"
    )
    print("\n| edit | default P | R | F1 | cosine only P | R | F1 | pHash P | R | F1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in ["overall"] + kinds:
        cells = " | ".join(
            f"{rows[m][kind][3]:.3f} | {rows[m][kind][4]:.3f} | {rows[m][kind][5]:.3f}" for m in rows
        )
        print(f"| {kind} | {cells} |")
    print(f"\nfalse pairs: {len(fps)}")
    for a, b in fps[:15]:
        print(f"  {Path(a).name} ~ {Path(b).name}")
    return passes, fam, edit, kinds


def false_pairs(rep) -> list[tuple[str, str, str]]:
    from indexer.dedup.report_text import EXACT_REASON

    return [
        (g.keeper.path, m.path, m.reason)
        for g in rep.duplicate_groups
        for m in g.members
        if m.reason != EXACT_REASON
    ]


def real(args, memo):
    """False pairs per 1,000 photos on each real set (default and pHash)."""
    out = {}
    print(
        "\n| real set | photos | default: false pairs | per 1,000 | similar-shot groups | exact copies | "
        "pHash false pairs | per 1,000 | verify s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.real:
        if name in args.real_index:  # a ready index of (part of) the set: used as it is
            from indexer import Index

            index = Index.open(args.real_index[name])
        else:
            limit = args.flowers_limit if name == "flowers5" else None
            index = indexed(
                args.work / (f"real-{name}" + (f"-{limit}" if limit else "")),
                [REAL_SETS[name]],
                limit,
                args.pooling,
            )
        t0 = time.perf_counter()
        _, rep = dedup_groups(index, memo)
        fp = false_pairs(rep)
        n = rep.stats["images"]
        sha = _sha_of(index)
        ph = phash_groups_of(sorted(sha))
        ph_fp = sum(1 for a, b in links_of(ph) if sha[a] != sha[b])
        exact = sum(
            len(g.members) for g in rep.duplicate_groups for m in g.members if m.reason.startswith("exact")
        )
        print(
            f"| {name} | {n} | {len(fp)} | {1000 * len(fp) / n:.1f} | {len(rep.similar_groups)} | {exact} | {ph_fp} | "
            f"{1000 * ph_fp / n:.1f} | {time.perf_counter() - t0:.0f} |"
        )
        out[name] = (index, n)
        for a, b, why in fp[:10]:
            print(f"    false pair: {Path(a).name} ~ {Path(b).name}: {why}")
    return out


def _sha_of(index) -> dict[str, str]:
    """path -> sha256 of the index's photos (byte-identical files are true duplicates)."""
    from sqlalchemy import select

    from indexer.storage.tables import ImageRow

    with index.store.session() as s:
        return dict(s.execute(select(ImageRow.path, ImageRow.sha256).where(ImageRow.source.is_(None))).all())


def sweep(memo, gen, reals):
    """The rule's thresholds one at a time around the defaults: recall on copies vs false pairs."""
    import indexer.dedup.rule as verify  # the thresholds live in rule.py since issue 24

    passes, fam, edit, kinds = gen
    print("\n### Sweep (one threshold at a time, the others at their defaults)\n")
    print("| setting | generated P | R | F1 | real false pairs | per 1,000 |")
    print("|---|---|---|---|---|---|")
    n = sum(c for _, c in reals.values())
    for name, values in SWEEP.items():
        default = getattr(verify, name)
        for v in values:
            setattr(verify, name, v)
            opts = {"min_keypoints": v} if name == "MIN_KEYPOINTS" else {}
            try:
                parts = []
                for ix, half in passes:
                    e = {c: k for c, k in edit.items() if k in half}
                    f = {p: o for p, o in fam.items() if p not in edit or p in e}
                    parts.append((score(dedup_groups(ix, memo, **opts)[0], f, e, kinds), half))
                r = _combine(parts, kinds)["overall"]
                fp = sum(len(false_pairs(dedup_groups(ix, memo, **opts)[1])) for ix, _ in reals.values())
            finally:
                setattr(verify, name, default)
            mark = " (default)" if v == default else ""
            print(
                f"| {name} = {v}{mark} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.3f} | {fp} | {1000 * fp / n:.2f} |"
            )


def check_generated(args) -> None:
    """Refuse a --work whose generated set was made with other counts than asked (the tables would
    be of another set): checked before anything is measured."""
    from near_duplicates import read_truth

    data = (args.work / "quick" if args.quick else args.work) / "set"
    if not (data / "truth.tsv").is_file():
        return
    made = (
        len({row[0] for row in read_truth(data / "truth.tsv")}),
        len(list((data / "distractors").iterdir())),
    )
    if made != (args.originals, args.distractors):
        raise SystemExit(
            f"{data} holds a generated set of {made[0]} originals and {made[1]} distractors, not "
            f"{args.originals} and {args.distractors}: pass those counts, or another --work"
        )


def generated_set(args):
    """(passes, fam, edit, kinds) of the generated set under --work (made and indexed once)."""
    from near_duplicates import EDITS, generate, read_truth

    base = args.work / "quick" if args.quick else args.work
    data = base / "set"
    if not (data / "truth.tsv").is_file():
        generate(data, args.originals, args.distractors, args.seed)
    check_generated(args)
    truth = read_truth(data / "truth.tsv")
    fam, edit = family_map(data.resolve(), truth)
    kinds = [k for k in EDITS if k in set(edit.values())]
    index = indexed(base / "index-trim", [data], pooling=args.pooling)
    return family_indexes(base, index, edit, kinds), fam, edit, kinds


def table(args) -> None:
    """The one table (benchmarks/dedup_table.py): real sets, then the generated set per edit kind."""
    from dedup_table import generated_row, judged_copies, print_table, real_row, tree_frames

    copies, rows = judged_copies(), []
    for name in args.real:
        folder = tree_frames(args.work) if name == "tree" else REAL_SETS[name]
        if folder is None:
            print(f"{name}: skipped (tree.avi is not installed: apt-get install opencv-doc)")
            continue
        rows.append(
            real_row(name, indexed(args.work / f"idx-{name}", [folder], pooling=args.pooling), copies)
        )
    row, per_kind = generated_row(*generated_set(args))
    print_table(rows + [row], per_kind)


def main() -> int:
    from retrieval.spec import POOLINGS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="6 originals, 18 distractors; vacation + hymenoptera"
    )
    ap.add_argument("--originals", type=int, default=50)
    ap.add_argument("--distractors", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--real",
        default=None,
        help=f"Comma-separated real sets [{TABLE_SETS}; --compare: "
        "vacation,hymenoptera,flowers5; --quick: vacation,hymenoptera]",
    )
    ap.add_argument(
        "--flowers-limit", type=int, default=None, help="Only the first N flowers5 files (sorted)"
    )
    ap.add_argument(
        "--real-index",
        action="append",
        default=[],
        metavar="SET=DIR",
        help="Use this ready index for a real set (e.g. a subset indexed elsewhere); repeatable",
    )
    ap.add_argument("--no-sweep", dest="do_sweep", action="store_false")
    ap.add_argument(
        "--compare",
        action="store_true",
        help="The older report instead of the table: P/R against cosine only and pHash, and the sweep",
    )
    ap.add_argument(
        "--pooling",
        choices=POOLINGS,
        default=None,
        help="Descriptor pooling of the indexes [the model default]; one --work per pooling",
    )
    ap.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/vgg-retrieval-dedup-eval"),
        help="Working folder: generated sets and the indexes (embedding cache) [/tmp/vgg-retrieval-dedup-eval]",
    )
    args = ap.parse_args()
    if args.quick:
        args.originals, args.distractors = 6, 18
    default_real = (
        "vacation,hymenoptera"
        if args.quick
        else ("vacation,hymenoptera,flowers5" if args.compare else TABLE_SETS)
    )
    args.real = [s for s in (args.real or default_real).split(",") if s]
    args.real_index = dict(x.split("=", 1) for x in args.real_index)
    if set(args.real) - set(REAL_SETS):
        raise SystemExit(f"--real takes {', '.join(REAL_SETS)}")
    check_generated(args)
    if not args.compare:
        t0 = time.perf_counter()
        table(args)
        print(f"\n{time.perf_counter() - t0:.0f}s in all")
        return 0
    memo = MemoVerifier(args.work / "evidence-cache.pkl")
    gen = generated(args, memo)
    memo.save()
    reals = real(args, memo)
    memo.save()
    if args.do_sweep:
        sweep(memo, gen, reals)
        memo.save()
    print(f"\nverification: {len(memo.memo)} distinct pairs in {memo.seconds:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
