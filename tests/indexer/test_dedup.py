"""Duplicate finding: grouping rules, keeper choice, FAISS pairs, reports, apply/undo safety.

Logic tests use the tiny random VGG11 (make_index); the pairs.txt test uses the shared VGG16 on the
~17 images of ../shared/data/dedup. Real files in tmp dirs, real FAISS, real SQLite.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, SAMPLES
from PIL import Image, ImageOps

from indexer.cli import main
from indexer.dedup import DedupReport, Group, Member, find_duplicates
from indexer.dedup.apply import apply_report
from indexer.dedup.candidates import near_pairs
from indexer.dedup.groups import group_pairs, keeper_rank
from indexer.dedup.rule import MIN_KEYPOINTS
from indexer.dedup.undo import undo
from retrieval.errors import UserError


# --- grouping and keeper rules (pure logic) ---------------------------------------------------
def test_chain_does_not_merge_far_ends():
    # A~B and B~C are similar, A and C are not: with A the best file, C must not join A's group.
    A, B, C = 0, 1, 2
    i, j, s = np.array([A, B]), np.array([B, C]), np.array([0.95, 0.95], np.float32)
    groups = group_pairs(3, i, j, s, rank=np.array([0, 1, 2]))
    assert groups == [(A, [B], [pytest.approx(0.95)])]
    # with B the best file, both ends are near duplicates of the keeper: one group
    groups = group_pairs(3, i, j, s, rank=np.array([1, 0, 2]))
    assert [(k, sorted(m)) for k, m, _ in groups] == [(B, [A, C])]


def test_a_refined_group_offers_the_new_keeper_its_own_neighbours():
    # 0 (first in the order) is made from 1; 2 agrees with 1 but not with 0; 3 agrees with 0 only.
    # The group starts at 0 and is re-kept around 1: 2 joins it, verified against 1; 3, which fails
    # against 1, is free again (here: alone, as it has no other pair).
    agree = {(0, 1), (1, 2), (0, 3), (2, 4)}
    i, j = np.array([0, 1, 0, 2, 0]), np.array([1, 2, 3, 4, 2])
    s = np.array([0.9, 0.9, 0.9, 0.9, 0.9], np.float32)
    asked = []

    def check(node, nb, sc):
        asked.extend((min(node, o), max(node, o)) for o in nb.tolist())
        return np.array([(min(node, o), max(node, o)) in agree for o in nb.tolist()])

    def refine(keep, members, scores):
        if keep == 0 and 1 in members:  # re-verified around 1 (as keeper.rekeep does)
            ok = [m for m in [0, *members] if m != 1 and (min(1, m), max(1, m)) in agree]
            return 1, ok, [0.9] * len(ok)
        return keep, members, scores

    rank = np.arange(5)
    groups = group_pairs(5, i, j, s, rank, check=check, refine=refine)
    assert [(k, sorted(m)) for k, m, _ in groups] == [(1, [0, 2])]
    assert (1, 2) in asked and (0, 2) in asked  # 2 was asked about against both keepers
    # 4 agrees with 2 only, a member now: never grouped through it
    assert all(4 not in [k, *m] for k, m, _ in groups)
    # without refine: the old order, 2 never reaches 1
    plain = group_pairs(5, i, j, s, rank, check=check)
    assert [(k, sorted(m)) for k, m, _ in plain][0] == (0, [1, 3])


def test_every_member_is_similar_to_its_keeper():
    rng = np.random.default_rng(0)
    n = 300
    i = rng.integers(0, n, 2000)
    j = rng.integers(0, n, 2000)
    keep = i < j
    i, j = i[keep], j[keep]
    s = rng.uniform(0.9, 1.0, len(i)).astype(np.float32)
    i, j = np.unique(np.stack([i, j], 1), axis=0).T
    s = s[: len(i)]
    edges = {(a, b): w for a, b, w in zip(i.tolist(), j.tolist(), s.tolist())}
    rank = rng.permutation(n)
    seen = set()
    for k, members, scores in group_pairs(n, i, j, s, rank):
        assert all(rank[k] < rank[m] for m in members)  # the keeper is the group's best file
        for m, sc in zip(members, scores):
            assert edges.get((min(k, m), max(k, m))) == pytest.approx(sc)  # a direct edge to the keeper
        assert scores == sorted(scores, reverse=True)
        assert not (seen & {k, *members})  # each file in one group at most
        seen |= {k, *members}


def test_keeper_rank_resolution_then_oldest_then_size():
    # ids:        0     1     2     3     4
    pixels = [100, 400, 400, 400, 400]
    size = [9000, 500, 800, 800, 900]
    mtime = [1, 5, 7, 3, 5]
    rank = keeper_rank(pixels, size, mtime, [0, 1, 2, 3, 4])
    assert list(np.argsort(rank)) == [3, 4, 1, 2, 0]  # the larger file only between equally old ones
    pixels, size, mtime = pixels[:4], size[:4], mtime[:4]
    assert list(np.argsort(keeper_rank(pixels, size, mtime, [0, 1, 2, 3], "size"))) == [0, 3, 2, 1]
    assert np.argsort(keeper_rank(pixels, size, mtime, [0, 1, 2, 3], "oldest"))[0] == 0
    assert np.argsort(keeper_rank(pixels, size, mtime, [0, 1, 2, 3], "newest"))[0] == 2
    preferred = [False, True, False, False]
    assert np.argsort(keeper_rank(pixels, size, mtime, [0, 1, 2, 3], preferred=preferred))[0] == 1


# --- FAISS pairs ------------------------------------------------------------------------------
def _planted(n=3000, d=64, clusters=200, seed=0):
    rng = np.random.default_rng(seed)
    x = np.abs(rng.standard_normal((n, d))).astype(np.float32)
    truth = set()
    for c in range(clusters):
        base = 3 * c
        for m in (1, 2):
            x[base + m] = x[base] + 0.15 * rng.standard_normal(d).astype(np.float32)
            truth.add((base, base + m))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, truth


def test_near_pairs_equal_brute_force_and_ivf_recalls_them():
    x, _ = _planted()
    sims = x @ x.T  # fine at this size: the reference, not the method
    a, b = np.nonzero(np.triu(sims >= 0.95, 1))
    expected = set(zip(a.tolist(), b.tolist()))
    assert len(expected) > 300
    i, j, s, info = near_pairs(x, 0.95)
    assert info["faiss"].startswith("IndexFlatIP")
    assert set(zip(i.tolist(), j.tolist())) == expected
    assert np.allclose(s, sims[i, j], atol=1e-5)
    i, j, s, info = near_pairs(x, 0.95, exact_limit=0, nlist=64, nprobe=8)  # the inverted-file path
    assert info["faiss"].startswith("PCA64,IVF64_HNSW32")
    found = set(zip(i.tolist(), j.tolist()))
    assert found <= expected and len(found) >= 0.99 * len(expected)


def test_dense_cluster_is_requeried_beyond_k():
    rng = np.random.default_rng(1)
    x = np.abs(rng.standard_normal((500, 32))).astype(np.float32)
    x[:40] = x[0] + 0.01 * rng.standard_normal((40, 32)).astype(np.float32)  # 40 near-identical vectors
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    i, j, _, info = near_pairs(x, 0.99, k=4)
    pairs = set(zip(i.tolist(), j.tolist()))
    assert {(0, m) for m in range(1, 40)} <= pairs
    assert info["dense_rows_requeried"] >= 40


# --- find_duplicates over a real index ---------------------------------------------------------
def _library(root: Path) -> dict[str, Path]:
    """Real photos with an exact copy, a half-size copy, and a corrupt file."""
    files = {}
    for name in [
        "skimage/astronaut.png",
        "skimage/coffee.png",
        "skimage/chelsea.png",
        "pixabay/dog01.jpg",
        "pixabay/ship01.jpg",
        "sklearn/china.jpg",
    ]:
        dst = root / "photos" / Path(name).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SAMPLES / name, dst)
        files[Path(name).stem] = dst
    (root / "backup" / "old & <odd>").mkdir(parents=True)
    files["copy"] = root / "backup" / "old & <odd>" / "astronaut.png"
    shutil.copy2(files["astronaut"], files["copy"])
    later = files["astronaut"].stat().st_mtime_ns + 10**12
    os.utime(files["copy"], ns=(later, later))  # a newer copy: the original (older) is kept
    files["small"] = root / "backup" / "astronaut_small.png"
    with Image.open(files["astronaut"]) as im:
        im.resize((im.width // 2, im.height // 2), Image.LANCZOS).save(files["small"])
    files["corrupt"] = root / "photos" / "broken.jpg"
    files["corrupt"].write_bytes((SAMPLES / "pixabay/dog01.jpg").read_bytes()[:300])
    return files


@pytest.fixture
def library(tmp_path, make_index):
    files = _library(tmp_path / "lib")
    idx = make_index(tmp_path / "index")
    idx.update([tmp_path / "lib"], progress=False, workers=0)
    # the threshold for the tiny random model: just below the similarity of the half-size copy
    v = {
        k: idx.vector(idx.store.row_by_path(str(p.resolve())).id) for k, p in files.items() if k != "corrupt"
    }
    near = float(v["astronaut"] @ v["small"])
    others = [float(v["astronaut"] @ v[k]) for k in ("coffee", "chelsea", "dog01", "ship01", "china")]
    assert near > max(others) + 0.002, "test precondition: the half-size copy must be the nearest image"
    return tmp_path, files, idx, near - 0.001


def _snapshot(root: Path) -> dict:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_find_duplicates_groups_exact_and_near_copies(library):
    tmp, files, idx, threshold = library
    rep = find_duplicates(idx, threshold=threshold)
    assert rep.threshold == threshold and rep.index_dir == str((tmp / "index").resolve())
    assert len(rep.groups) == 1
    g = rep.groups[0]
    assert g.keeper.path == str(files["astronaut"].resolve())  # full size, and older than its exact copy
    by_path = {m.path: m for m in g.members}
    assert set(by_path) == {str(files["copy"].resolve()), str(files["small"].resolve())}
    exact = by_path[str(files["copy"].resolve())]
    assert exact.reason == "exact copy (same sha256)" and exact.score == 1.0
    small = by_path[str(files["small"].resolve())]
    assert small.reason.startswith("near duplicate (cosine ") and threshold <= small.score < 1.0
    assert (small.width, small.height) == (g.keeper.width // 2, g.keeper.height // 2)
    assert [e["path"] for e in rep.errors] == [str(files["corrupt"].resolve())]
    # exact-only mode and the newest-keeper policy
    rep = find_duplicates(idx, threshold=threshold, near=False, keeper="newest")
    assert len(rep.groups) == 1 and rep.groups[0].keeper.path == str(files["copy"].resolve())
    assert [m.path for m in rep.groups[0].members] == [str(files["astronaut"].resolve())]
    # a stricter threshold drops the near copy, unless its keypoints verify it
    strict = min(1.0, small.score + 0.0005)
    rep = find_duplicates(idx, threshold=strict, verify=False)
    assert [len(g.members) for g in rep.groups] == [1] and rep.rule == {"threshold": strict}
    rep = find_duplicates(idx, threshold=strict, verify_floor=small.score - 0.01)
    again = {m.path: m for m in rep.groups[0].members}[str(files["small"].resolve())]
    assert again.keypoints >= MIN_KEYPOINTS and f"{again.keypoints} keypoint matches agree" in again.reason
    assert again.evidence["pixel"] >= 0.5 and rep.groups[0].kind == "duplicates"
    assert rep.stats["verified_duplicates"] >= 1 and "aligned pixels agree" in rep.summary()
    rep = find_duplicates(idx, threshold=strict, verify_floor=small.score - 0.01, min_keypoints=10**6)
    assert [len(g.members) for g in rep.duplicate_groups] == [
        1
    ]  # (the pair is still shown, as a similar shot)
    with pytest.raises(UserError):
        find_duplicates(idx, threshold=1.5)


def test_report_json_csv_html(library):
    tmp, files, idx, threshold = library
    rep = find_duplicates(idx, threshold=threshold)
    base = tmp / "out" / "report"
    paths = rep.save(base)
    assert [p.name for p in paths] == ["report.json", "report.csv", "report.html"]
    back = DedupReport.load(base.with_suffix(".json"))
    assert back == rep
    assert DedupReport.load(base.with_suffix(".html")) == rep  # finds the sibling JSON
    d = json.loads(paths[0].read_text())
    assert d["threshold"] == threshold and d["groups"][0]["keeper"]["path"] == str(
        files["astronaut"].resolve()
    )
    rows = list(csv.DictReader(paths[1].open()))
    assert [r["role"] for r in rows] == ["keep", "duplicate", "duplicate", "unreadable"]
    assert {r["path"] for r in rows[1:3]} == {str(files["copy"].resolve()), str(files["small"].resolve())}
    assert all(float(r["threshold"]) == pytest.approx(threshold, abs=1e-4) for r in rows)
    assert float(rows[2]["score"]) < 1.0 and rows[3]["path"] == str(files["corrupt"].resolve())
    page = paths[2].read_text()
    assert f"cosine &ge; {threshold:.3f}" in page
    assert len(re.findall(r'src="data:image/jpeg;base64,[A-Za-z0-9+/=]{100,}"', page)) == 3
    assert not re.search(r'(src|href)="(https?:)?//', page)  # self-contained: opens offline
    assert "<script>" in page and "function apply()" in page
    assert "old &amp; &lt;odd&gt;" in page and "<odd>" not in page  # paths are escaped
    assert str(files["corrupt"].resolve()) in page
    bad = tmp / "bad.json"
    bad.write_text("{}")
    with pytest.raises(UserError):
        DedupReport.load(bad)


def test_cli_dedup_writes_report(library, capsys):
    tmp, files, idx, threshold = library
    out = tmp / "r" / "dups.html"
    assert (
        main(["dedup", "--index", str(tmp / "index"), "--threshold", str(threshold), "--out", str(out)]) == 0
    )
    assert all((tmp / "r" / f"dups.{ext}").is_file() for ext in ("json", "csv", "html"))
    assert "1 groups" in capsys.readouterr().out
    assert main(["dedup", "--out", str(out)]) == 2
    assert main(["dedup", "--index", str(tmp / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: no index at" in err and "Traceback" not in err


# --- apply / undo -------------------------------------------------------------------------------
def test_dry_run_changes_nothing(library, capsys):
    tmp, files, idx, threshold = library
    rep = find_duplicates(idx, threshold=threshold)
    rep.save_json(tmp / "rep.json")
    before = _snapshot(tmp / "lib")
    count = idx.count
    q = tmp / "quarantine"
    assert main(["dedup", "apply", str(tmp / "rep.json"), "--move-to", str(q)]) == 0
    out = capsys.readouterr().out
    assert "would move" in out and "nothing was changed" in out
    assert _snapshot(tmp / "lib") == before
    assert not q.exists() and idx.count == count


def test_apply_undo_round_trip(library, capsys):
    tmp, files, idx, threshold = library
    rep = find_duplicates(idx, threshold=threshold)
    rep.save_json(tmp / "rep.json")
    before = _snapshot(tmp / "lib")
    count = idx.count
    q = tmp / "quarantine"
    log = tmp / "undo.json"
    assert (
        main(["dedup", "apply", str(tmp / "rep.json"), "--move-to", str(q), "--log", str(log), "--yes"]) == 0
    )
    # moved with their paths relative to the indexed folder; keepers stay
    assert (q / "backup" / "old & <odd>" / "astronaut.png").read_bytes() == before[
        "backup/old & <odd>/astronaut.png"
    ][0]
    assert (q / "backup" / "astronaut_small.png").is_file()
    assert not files["copy"].exists() and not files["small"].exists() and files["astronaut"].exists()
    moves = json.loads(log.read_text())["moves"]
    assert {m["src"] for m in moves} == {str(files["copy"].resolve()), str(files["small"].resolve())}
    # the index forgot them, crash-safely (the normal update), and still checks out
    assert idx.count == count - 2
    assert idx.store.row_by_path(str(files["copy"].resolve())) is None
    assert idx.check().ok
    # the dry-run undo changes nothing; the real one restores every byte, path and mtime
    middle = _snapshot(tmp)
    assert main(["dedup", "undo", str(log)]) == 0
    assert _snapshot(tmp) == middle
    assert main(["dedup", "undo", str(log), "--execute"]) == 0
    assert _snapshot(tmp / "lib") == before
    assert not (q / "backup").exists()  # the emptied quarantine folders are tidied
    assert idx.count == count and idx.check().ok
    assert json.loads(log.read_text())["state"] == "undone"
    # undo again: nothing left to restore
    assert undo(log, execute=True, echo=lambda *_: None).moves == []


@pytest.mark.parametrize("change", ["content", "touch", "delete_keeper"])
def test_stale_report_is_refused(library, capsys, change):
    tmp, files, idx, threshold = library
    rep = find_duplicates(idx, threshold=threshold)
    rep.save_json(tmp / "rep.json")
    if change == "content":
        data = bytearray(files["copy"].read_bytes())
        data[-1] ^= 0xFF  # same size, other bytes
        st = files["copy"].stat()
        files["copy"].write_bytes(bytes(data))
        os.utime(files["copy"], ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime too: only sha256 tells
    elif change == "touch":
        os.utime(files["small"], ns=(2_000_000_000_000_000_000, 2_000_000_000_000_000_000))
    else:
        files["astronaut"].unlink()
    before = _snapshot(tmp / "lib")
    q = tmp / "quarantine"
    assert main(["dedup", "apply", str(tmp / "rep.json"), "--move-to", str(q), "--yes"]) == 2
    err = capsys.readouterr().err
    assert (
        "error: the report is older than 1 of the files it names" in err
        and len(err.strip().splitlines()) == 1
    )
    assert _snapshot(tmp / "lib") == before and not q.exists()


def test_apply_refusals_and_keep_override(library):
    tmp, files, idx, threshold = library
    rep = find_duplicates(idx, threshold=threshold)
    with pytest.raises(UserError, match="inside the indexed folder"):
        apply_report(rep, tmp / "lib" / "q", execute=True, echo=lambda *_: None)
    taken = tmp / "q" / "backup" / "astronaut_small.png"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"someone else's file")
    with pytest.raises(UserError, match="already exist"):
        apply_report(rep, tmp / "q", execute=True, echo=lambda *_: None)
    assert taken.read_bytes() == b"someone else's file" and files["small"].exists()
    # --keep: the small copy stays, the suggested keeper goes to quarantine
    out = apply_report(
        find_duplicates(idx, threshold=threshold),
        tmp / "q2",
        keep=[files["small"]],
        execute=True,
        update_index=False,
        echo=lambda *_: None,
    )
    assert {m.src for m in out.moves} == {str(files["astronaut"].resolve()), str(files["copy"].resolve())}
    assert files["small"].exists() and not files["astronaut"].exists()
    with pytest.raises(UserError, match="not a file of this report"):
        apply_report(rep, tmp / "q3", keep=[tmp / "nowhere.png"], echo=lambda *_: None)


def test_report_round_trip_without_index():
    m = Member(1, "/a.jpg", "0" * 64, 10, 20, 300, 4, 1.0, "keeper")
    rep = DedupReport(0.9, 1.0, "/idx", [Group(m, [Member(2, "/b.jpg", "1" * 64, 5, 5, 3, 4, 0.93, "near")])])
    assert rep.groups[0].min_score == pytest.approx(0.93) and rep.duplicate_count == 1


# --- the real dedup set with the shared VGG16 ------------------------------------------------------
def test_shared_dedup_set_pairs_found(tmp_path, vgg16_model):
    from indexer import Index

    spec, net, model_dir = vgg16_model
    src = DATA / "dedup"
    root = tmp_path / "dedup"
    shutil.copytree(src, root)
    pairs = [
        line.split()
        for line in (src / "pairs.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(pairs) == 6
    with Index.create(tmp_path / "index", spec, model_dir=model_dir) as idx:
        idx.update([root], progress=False, workers=0)
        # the default (keypoint verification) finds every pair; cosine alone at its precision-first
        # threshold finds the exact, mirrored and resized copies, and the rotated (cosine 0.74) and
        # grey (0.80) copies need a lower one - measured in docs/dedup.md
        every = ("exact_copy", "hflip", "resize", "rotation", "grayscale")
        for threshold, verify, must_find in [
            (None, True, every),
            (None, False, ("exact_copy", "hflip", "resize")),
            (0.72, False, every),
        ]:
            rep = find_duplicates(idx, threshold=threshold, verify=verify)
            group_of = {}
            for n, g in enumerate(rep.groups):
                for m in g.files:
                    group_of[os.path.relpath(m.path, root.resolve())] = n
            for a, b, kind in pairs:
                found = a in group_of and group_of.get(a) == group_of.get(b)
                assert found or kind not in must_find, f"pair not found at {rep.threshold}: {a} {b} ({kind})"
            for g in rep.groups:  # no false pair: a group holds one UKBench object only
                assert len({re.search(r"ukbench(\d+)", Path(m.path).name).group(1) for m in g.files}) == 1
            assert [os.path.relpath(e["path"], root.resolve()) for e in rep.errors] == [
                "mixed_images/ukbench09268_corrupt.jpg"
            ]


def test_crafted_report_cannot_move_files_outside_the_index(library, tmp_path):
    """A report is just a file: naming a file outside the indexed folders (with its true size, mtime
    and sha256, so it is not "stale") must not get it moved."""
    import hashlib
    import json
    import shutil

    from indexer.dedup.apply import apply_report
    from retrieval.errors import UserError

    tmp, files, idx, threshold = library
    rep = find_duplicates(idx, threshold=threshold)
    rep.save_json(tmp / "rep.json")
    outside = tmp_path / "elsewhere" / "precious.jpg"
    outside.parent.mkdir()
    shutil.copy(next(iter(files.values())), outside)
    data = json.loads((tmp / "rep.json").read_text())
    member = data["groups"][0]["members"][0]
    st = outside.stat()
    member.update(
        path=str(outside),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha256=hashlib.sha256(outside.read_bytes()).hexdigest(),
    )
    (tmp / "crafted.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="not inside the report's indexed folders"):
        apply_report(
            DedupReport.load(tmp / "crafted.json"), tmp_path / "q", execute=True, echo=lambda *_: None
        )
    assert outside.exists() and not (tmp_path / "q").exists()


# --- border trimming (ModelSpec.trim_borders) and the default threshold ------------------------------
def test_default_threshold_follows_the_model():
    from indexer.dedup.find import (
        DEFAULT_THRESHOLD,
        UNTRIMMED_THRESHOLD,
        VERIFIED_THRESHOLD,
        default_threshold,
    )
    from retrieval.spec import ModelSpec

    legacy = ModelSpec(trim_borders=False).to_dict()
    del legacy["trim_borders"]  # an index made before trimming existed
    assert default_threshold(ModelSpec.from_dict(legacy), verify=False) == UNTRIMMED_THRESHOLD == 0.90
    assert (
        default_threshold(ModelSpec(trim_borders=True), verify=False)
        == DEFAULT_THRESHOLD
        < UNTRIMMED_THRESHOLD
    )
    # with keypoint verification (the default) only the sure pairs skip it, whatever the model
    assert default_threshold(ModelSpec(trim_borders=True)) == VERIFIED_THRESHOLD > DEFAULT_THRESHOLD
    assert ModelSpec().trim_borders  # new models trim


def test_bordered_and_screenshot_copies_found_with_trimming(tmp_path, vgg16_model):
    """End to end with the shared VGG16: a photo's padded copy and its screenshot-like copy are
    near duplicates of it at the default threshold once borders are trimmed; without trimming
    (an old index) the frame pulls them apart."""
    from PIL import ImageDraw, ImageOps

    from indexer import Index
    from indexer.dedup.find import DEFAULT_THRESHOLD, VERIFIED_THRESHOLD

    spec, net, model_dir = vgg16_model
    lib = tmp_path / "lib"
    lib.mkdir()
    photo = Image.open(SAMPLES / "pixabay" / "dog01.jpg").convert("RGB")
    photo.save(lib / "dog.jpg", quality=95)
    ImageOps.expand(photo, border=int(0.18 * max(photo.size)), fill=(255, 255, 255)).save(
        lib / "dog_border.jpg", quality=92
    )
    small = photo.resize((photo.width // 2, photo.height // 2))
    canvas = Image.new("RGB", (int(small.width * 1.4), int(small.height * 1.45)), (240, 240, 240))
    d = ImageDraw.Draw(canvas)
    bar = canvas.height // 14
    d.rectangle((0, 0, canvas.width, bar), fill=(50, 50, 60))
    d.rectangle((0, canvas.height - bar, canvas.width, canvas.height), fill=(220, 220, 225))
    canvas.paste(small, ((canvas.width - small.width) // 2, (canvas.height - small.height) // 2))
    canvas.save(lib / "dog_screenshot.jpg", quality=85)
    for name in ("cat01.jpg", "horse01.jpg", "ship01.jpg"):
        shutil.copy(SAMPLES / "pixabay" / name, lib / name)
    cos = {}
    for trim in (True, False):
        # the exported folder's sidecar names its spec (trimming included): export again for the other
        made = dict(model_dir=model_dir) if spec.trim_borders == trim else dict(net=net)
        with Index.create(tmp_path / f"index-{trim}", spec.replace(trim_borders=trim), **made) as idx:
            idx.update([lib], progress=False, workers=0)
            v = {p.name: idx.vector(idx.store.row_by_path(str(p.resolve())).id) for p in lib.iterdir()}
            cos[trim] = {k: float(v["dog.jpg"] @ v[k]) for k in ("dog_border.jpg", "dog_screenshot.jpg")}
            rep = find_duplicates(idx, verify=False)
            groups = [sorted(Path(m.path).name for m in g.files) for g in rep.groups]
            if trim:
                assert rep.threshold == DEFAULT_THRESHOLD < 0.90
                assert groups == [["dog.jpg", "dog_border.jpg", "dog_screenshot.jpg"]], (groups, cos)
                # the default (keypoint verification) finds the same group and nothing else
                rep = find_duplicates(idx)
                assert [sorted(Path(m.path).name for m in g.files) for g in rep.groups] == groups
                assert rep.threshold == VERIFIED_THRESHOLD and rep.rule["verify_floor"] == 0.55
            else:
                assert rep.threshold == 0.90
    for k in cos[True]:
        assert cos[True][k] > cos[False][k] + 0.05, cos


# --- safe to act on: the original is kept, similar shots are only shown, turned copies are found ----
VACATION = SAMPLES / "vacation"


def _index_of(tmp_path, make_index, files: dict[str, Image.Image | Path]):
    """A tiny-model index over ``files`` (name -> image to save, or a file to copy)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for name, what in files.items():
        if isinstance(what, Path):
            shutil.copy2(what, lib / name)
        else:
            what.save(
                lib / name, **({"quality": int(name.split("_q")[1].split(".")[0])} if "_q" in name else {})
            )
    idx = make_index(tmp_path / "index")
    idx.update([lib], progress=False, workers=0)
    return lib, idx


def _groups(rep, kind=None):
    return [sorted(Path(m.path).name for m in g.files) for g in rep.groups if kind is None or g.kind == kind]


def test_keeper_is_the_colour_original_not_a_bigger_grey_or_recompressed_copy(tmp_path, make_index):
    photo = Image.open(SAMPLES / "pixabay" / "dog01.jpg").convert("RGB")
    lib, idx = _index_of(
        tmp_path,
        make_index,
        {
            "dog_q80.jpg": photo,  # the original
            "dog_grey.png": photo.convert("L"),  # same pixels, a much larger file, but grey
            "dog_copy_q20.jpg": photo,  # same pixels, colour, heavily re-compressed
            "dog_framed_q80.jpg": ImageOps.expand(
                photo, border=photo.width // 4, fill=(30, 60, 120)
            ),  # more pixels
            "cat.jpg": SAMPLES / "pixabay" / "cat01.jpg",
        },
    )
    assert (lib / "dog_grey.png").stat().st_size > (lib / "dog_q80.jpg").stat().st_size
    rep = find_duplicates(idx, threshold=1.0, verify_floor=-1.0)  # every pair verified, by its pixels
    (g,) = rep.groups
    assert g.kind == "duplicates" and Path(g.keeper.path).name == "dog_q80.jpg"
    assert sorted(Path(m.path).name for m in g.members) == [
        "dog_copy_q20.jpg",
        "dog_framed_q80.jpg",
        "dog_grey.png",
    ]
    assert (
        "colour (the copy is greyscale)" in g.keeper_reason
        and "less compression (JPEG quality ~80" in g.keeper_reason
    )
    assert (
        "no border or frame added (the copy is" in g.keeper_reason
    )  # its frame is more pixels, not more picture
    assert g.keeper.reason.startswith("keeper: ")
    # the older policies still rank by their own key first (here: the largest file)
    assert (
        Path(find_duplicates(idx, threshold=1.0, verify_floor=-1.0, keeper="size").groups[0].keeper.path).name
        == "dog_grey.png"
    )


def test_file_quality_reads_jpeg_quality_colour_and_metadata(tmp_path):
    from indexer.dedup.quality import read_quality

    photo = Image.open(SAMPLES / "pixabay" / "dog01.jpg").convert("RGB")
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS 5D"
    for q in (10, 35, 60, 90):
        photo.save(tmp_path / f"q{q}.jpg", quality=q)
    photo.save(tmp_path / "camera.jpg", quality=90, exif=exif)
    ImageOps.grayscale(photo).convert("RGB").save(
        tmp_path / "grey_rgb.jpg", quality=90
    )  # grey in an RGB file
    found = {p.stem: read_quality(str(p)) for p in tmp_path.iterdir()}
    assert [found[f"q{q}"].jpeg_quality for q in (10, 35, 60, 90)] == sorted(
        found[f"q{q}"].jpeg_quality for q in (10, 35, 60, 90)
    )
    assert abs(found["q60"].jpeg_quality - 60) <= 2 and abs(found["q90"].jpeg_quality - 90) <= 2
    assert found["camera"].metadata and not found["q90"].metadata
    assert found["q90"].colour and not found["grey_rgb"].colour
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    assert not read_quality(str(broken)).readable


def test_turned_copies_found_without_exif(tmp_path, make_index):
    photo = Image.open(SAMPLES / "pixabay" / "ship01.jpg").convert("RGB")
    lib, idx = _index_of(
        tmp_path,
        make_index,
        {
            "ship.jpg": photo,
            "ship_turn90.jpg": photo.transpose(Image.ROTATE_90),
            "ship_turn180.jpg": photo.transpose(Image.ROTATE_180),
            "ship_turn270.jpg": photo.transpose(Image.ROTATE_270),
            "cat.jpg": SAMPLES / "pixabay" / "cat01.jpg",
            "dog.jpg": SAMPLES / "pixabay" / "dog01.jpg",
        },
    )
    # no descriptor candidates at all (floor 1.0): only the rotation search can propose the pairs
    rep = find_duplicates(idx, threshold=1.0, verify_floor=1.0)
    assert _groups(rep) == [["ship.jpg", "ship_turn180.jpg", "ship_turn270.jpg", "ship_turn90.jpg"]]
    assert rep.stats["rotated_candidates"] >= 3
    g = rep.groups[0]  # (the four are alike: which one is kept is a tie)
    turns = sorted(re.search(r"turned (\d+)", m.reason).group(1) for m in g.members)
    assert len(turns) == 3 and turns.count("180") == 1 and set(turns) <= {"90", "180", "270"}, g.members
    assert all("turned" in m.reason and "pixels agree" in m.reason for m in g.members)
    assert _groups(find_duplicates(idx, threshold=1.0, verify_floor=1.0, rotations=False)) == []


def test_similar_shots_are_reported_for_review_and_never_applied(tmp_path, make_index, capsys):
    """Real vacation photos the old rule grouped as duplicates (a second shot of a canyon, two
    landscapes, two cave shots) plus one true copy: one duplicate group, the second canyon shot as
    a similar shot, the landscapes and cave shots in no group; apply moves only the copy."""
    canyon = Image.open(VACATION / "image00074.jpg").convert("RGB")
    w, h = canyon.size
    names = [
        "image00074.jpg",
        "image00075.jpg",
        "image00057.jpg",
        "image00060.jpg",
        "image00038.jpg",
        "image00039.jpg",
    ]
    files = {n: VACATION / n for n in names}
    files["image00074_crop_q70.jpg"] = canyon.crop((w // 10, h // 10, w - w // 10, h - h // 12))
    lib, idx = _index_of(tmp_path, make_index, files)
    rep = find_duplicates(
        idx, threshold=1.0, verify_floor=-1.0
    )  # every pair a candidate: the verification decides
    assert _groups(rep, "duplicates") == [["image00074.jpg", "image00074_crop_q70.jpg"]]
    assert _groups(rep, "similar") == [["image00074.jpg", "image00075.jpg"]]
    similar = rep.similar_groups[0]
    assert "similar shot" in similar.members[0].reason and "not copies" in similar.why
    paths = rep.save(tmp_path / "out" / "rep")
    page = paths[2].read_text()
    assert "similar shots, review only" in page and "vgg-retrieval dedup apply" in page
    assert page.count("data-large=") == 4 and "function big(" in page  # a click opens a larger, embedded view
    assert [r["kind"] for r in csv.DictReader(paths[1].open())] == ["duplicates"] * 2 + ["similar"] * 2
    assert DedupReport.load(paths[0]) == rep
    # apply: the duplicate only; the similar shot is left alone unless asked for
    q = tmp_path / "q"
    assert main(["dedup", "apply", str(paths[0]), "--move-to", str(q)]) == 0
    out = capsys.readouterr().out
    assert "would move" in out and "image00074_crop_q70.jpg" in out and "image00075" not in out
    assert "1 group(s) of similar shots left alone" in out
    moved = apply_report(rep, q, include_similar=True, echo=lambda *_: None).moves
    assert sorted(Path(m.src).name for m in moved) == ["image00074_crop_q70.jpg", "image00075.jpg"]


def test_reports_from_before_the_kinds_still_load_and_apply(library):
    tmp, files, idx, threshold = library
    rep = find_duplicates(idx, threshold=threshold)
    d = rep.as_dict()
    d["version"] = 1
    for g in d["groups"]:
        for k in ("kind", "why", "keeper_reason"):
            g.pop(k)
        for m in [g["keeper"], *g["members"]]:
            m.pop("evidence")
    d["rule"] = {"threshold": threshold, "verify_floor": 0.55, "min_keypoints": 20}
    (tmp / "v1.json").write_text(json.dumps(d))
    old = DedupReport.load(tmp / "v1.json")
    assert [g.kind for g in old.groups] == ["duplicates"] and old.duplicate_count == rep.duplicate_count
    assert "or >= 0.550 with >= 20 agreeing keypoint matches" in old.summary()
    moves = apply_report(old, tmp / "q", echo=lambda *_: None).moves
    assert {m.src for m in moves} == {m.path for m in rep.groups[0].members}
    d["groups"][0]["kind"] = "maybe"
    (tmp / "bad.json").write_text(json.dumps(d))
    with pytest.raises(UserError, match="damaged"):
        DedupReport.load(tmp / "bad.json")


def test_between_copies_alike_but_for_file_size_the_older_file_is_kept(tmp_path, make_index):
    """A copy with grain added and a mirrored copy, both saved at the original's pixels and JPEG
    quality after it: file size is all that differs (the grain makes the larger file), and the
    keeper is the original, as the older file."""
    photo = Image.open(SAMPLES / "pixabay" / "dog01.jpg").convert("RGB")
    rng = np.random.default_rng(0)
    grain = np.asarray(photo, np.float32) + rng.normal(0, 6, (photo.height, photo.width, 1))
    lib, idx = _index_of(
        tmp_path,
        make_index,
        {
            "dog_q90.jpg": photo,  # the original
            "dog_grain_q90.jpg": Image.fromarray(np.clip(grain, 0, 255).astype(np.uint8)),
            "dog_mirror_q90.jpg": ImageOps.mirror(photo),
            "cat.jpg": SAMPLES / "pixabay" / "cat01.jpg",
        },
    )
    assert (lib / "dog_grain_q90.jpg").stat().st_size > (lib / "dog_q90.jpg").stat().st_size
    t = (lib / "dog_q90.jpg").stat().st_mtime_ns
    for n, name in enumerate(("dog_grain_q90.jpg", "dog_mirror_q90.jpg"), 1):
        os.utime(lib / name, ns=(t + n * 10**9, t + n * 10**9))  # made after the original
    idx.update([lib], progress=False, workers=0)
    rep = find_duplicates(idx, threshold=1.0, verify_floor=-1.0)
    (g,) = rep.duplicate_groups
    assert sorted(Path(m.path).name for m in g.files) == [
        "dog_grain_q90.jpg",
        "dog_mirror_q90.jpg",
        "dog_q90.jpg",
    ]
    assert Path(g.keeper.path).name == "dog_q90.jpg" and "older file" in g.keeper_reason
    # made before its copies' originals were: the larger file wins among equally old files
    for name in ("dog_q90.jpg", "dog_grain_q90.jpg", "dog_mirror_q90.jpg"):
        os.utime(lib / name, ns=(t, t))
    idx.update([lib], progress=False, workers=0)
    (g,) = find_duplicates(idx, threshold=1.0, verify_floor=-1.0).duplicate_groups
    largest = max(g.files, key=lambda m: (lib / Path(m.path).name).stat().st_size)
    assert g.keeper.path == largest.path and "larger file" in g.keeper_reason
