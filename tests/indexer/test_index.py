"""The index: incremental updates, search API, consistency checks, model and writer guards."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import SAMPLES, copy_photos
from PIL import Image

from indexer import Index
from indexer import vectors as vec
from indexer.storage.tables import ImageRow
from retrieval.errors import ModelMismatchError, UserError


def _paths(idx):
    with idx.store.session() as s:
        return sorted(r.path for r in s.query(ImageRow))


def test_incremental_add_change_delete(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    r = idx.update([photos], workers=1, progress=False)
    assert (r.added, r.updated, r.removed, r.errors) == (6, 0, 0, [])
    ids_before = {p: idx.store.row_by_path(p).id for p in _paths(idx)}
    v_before = {p: idx.vector(i) for p, i in ids_before.items()}

    r = idx.update([photos], workers=0, progress=False)
    assert (r.added, r.updated, r.removed, r.unchanged, r.embedded) == (0, 0, 0, 6, 0)

    # add one, change one (different picture, same name), delete one
    copy_photos(photos, ["pixabay/ship01.jpg"], flat=True)
    changed = photos / "skimage" / "coffee.png"
    Image.open(SAMPLES / "opencv" / "fruits.jpg").save(changed)
    deleted = photos / "pixabay" / "dog01.jpg"
    deleted.unlink()
    r = idx.update([photos], workers=0, progress=False)
    assert (r.added, r.updated, r.removed, r.unchanged, r.embedded) == (1, 1, 1, 4, 2)
    paths = _paths(idx)
    assert str(deleted) not in paths and str(photos / "ship01.jpg") in paths
    assert idx.store.row_by_path(str(changed)).id == ids_before[str(changed)]  # same id, new vector
    assert np.dot(idx.vector(ids_before[str(changed)]), v_before[str(changed)]) < 0.999
    unchanged = str(photos / "skimage" / "astronaut.png")
    assert np.allclose(idx.vector(ids_before[unchanged]), v_before[unchanged])
    assert idx.check().ok and idx.count == 6
    # the changed file is found by its new content
    hit = idx.search(SAMPLES / "opencv" / "fruits.jpg", k=1)[0]
    assert hit.path == str(changed) and hit.score > 0.999


def test_metadata_row(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    idx.update([photos], workers=0, progress=False)
    row = idx.store.row_by_path(str(photos / "pixabay" / "cat01.jpg"))
    src = SAMPLES / "pixabay" / "cat01.jpg"
    im = Image.open(src)
    import hashlib

    assert row.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert (row.width, row.height, row.format, row.label) == (im.width, im.height, "JPEG", "pixabay")
    assert row.size == src.stat().st_size and row.indexed_at > time.time() - 600


def test_search_api_inputs_and_large_k(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    idx.update([photos], workers=0, progress=False)
    q = photos / "skimage" / "chelsea.png"
    by_path = idx.search(str(q), k=3)
    by_pil = idx.search(Image.open(q), k=3)
    by_bytes = idx.search(q.read_bytes(), k=3)
    assert by_path[0].path == by_pil[0].path == by_bytes[0].path == str(q)
    everything = idx.search(q, k=1000)
    assert len(everything) == 6
    scores = [h.score for h in everything]
    assert scores == sorted(scores, reverse=True)
    many = idx.search_many([q, photos / "sklearn" / "china.jpg"], k=2)
    assert [m[0].path for m in many] == [str(q), str(photos / "sklearn" / "china.jpg")]
    with pytest.raises(UserError, match="not found"):
        idx.search(tmp_path / "missing.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    with pytest.raises(UserError, match="bad.jpg"):
        idx.search(bad)


def test_reopen_and_model_guard(tmp_path, make_index, photos, tiny_model):
    from retrieval.spec import ModelSpec

    make_index(tmp_path / "ix").update([photos], workers=0, progress=False)
    with Index.open(tmp_path / "ix", engine="onnxruntime") as idx:
        assert idx.count == 6
        assert idx.search(photos / "pixabay" / "cat01.jpg", k=1)[0].score > 0.9999
        idx.require_model(tiny_model[0])
        other = tiny_model[0].replace(pooling="mac")
        with pytest.raises(ModelMismatchError, match="refusing to mix"):
            idx.require_model(other)
    with pytest.raises(UserError, match="no index at"):
        Index.open(tmp_path / "nowhere")
    with pytest.raises(UserError, match="already exists"):
        make_index(tmp_path / "ix")
    assert isinstance(tiny_model[0], ModelSpec)


def test_check_detects_tampering(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    idx.update([photos], workers=0, progress=False)
    assert idx.check(deep=2).ok
    name = idx.store.meta("vectors_file")
    good = (tmp_path / "ix" / name).read_bytes()

    # 1) a vector removed behind the database's back (file rewritten, sha no longer matches)
    f = vec.load(tmp_path / "ix" / name)
    vec.remove(f, [vec.ids_of(f)[0]])
    vec.faiss.write_index(f, str(tmp_path / "ix" / name))
    problems = " | ".join(idx.check().problems)
    assert "sha256" in problems and "5 vectors but 6 image rows" in problems and "no vector" in problems

    # 2) a flipped byte
    data = bytearray(good)
    data[-100] ^= 0xFF
    (tmp_path / "ix" / name).write_bytes(bytes(data))
    assert not idx.check().ok

    # 3) a row deleted from the database
    (tmp_path / "ix" / name).write_bytes(good)
    assert idx.check().ok
    with idx.store.session.begin() as s:
        s.delete(s.query(ImageRow).first())
    assert any("no image row" in p for p in idx.check().problems)

    # 4) the vectors file gone
    (tmp_path / "ix" / name).unlink()
    assert any("missing" in p for p in idx.check().problems)


def test_deep_check_sees_a_wrong_vector(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    idx.update([photos], workers=0, progress=False)
    name = idx.store.meta("vectors_file")
    f = vec.load(tmp_path / "ix" / name)
    ids = vec.ids_of(f)
    v = vec.all_vectors(f)
    f2 = vec.new_index(512)
    f2.add_with_ids(np.roll(v, 1, axis=0), ids)  # every vector moved to another image
    new_name, digest = vec.save(f2, tmp_path / "ix", 99)
    with idx.store.session.begin() as s:
        idx.store.set_meta(s, "vectors_file", new_name)
        idx.store.set_meta(s, "vectors_sha256", digest)
    assert idx.check().ok  # shape-consistent...
    assert any("differs from a fresh embedding" in p for p in idx.check(deep=6).problems)  # ...but wrong


def test_interrupted_save_leaves_the_committed_state(tmp_path, make_index, photos):
    """A vectors file written but never committed (crash between the two) is ignored and removed."""
    idx = make_index(tmp_path / "ix")
    idx.update([photos], workers=0, progress=False)
    committed = idx.store.meta("vectors_file")
    f = vec.load(tmp_path / "ix" / committed)
    vec.remove(f, vec.ids_of(f)[:3])
    orphan, _ = vec.save(f, tmp_path / "ix", 1000)
    (tmp_path / "ix" / "vectors-001001.faiss.tmp").write_bytes(b"half a file")
    with Index.open(tmp_path / "ix") as again:
        rep = again.check()
        assert rep.ok and any("leftover" in n for n in rep.notes)
        assert len(again.search(photos / "pixabay" / "cat01.jpg", k=100)) == 6
        again.update([photos], workers=0, progress=False)
    assert sorted(p.name for p in (tmp_path / "ix").glob("vectors-*")) == [committed]


def test_second_writer_is_refused(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys, time\n"
                f"fd = os.open({str(tmp_path / 'ix' / 'index.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
                "print('locked', flush=True); time.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"another process \\(pid {holder.pid}\\)"):
            idx.update([photos], workers=0, progress=False)
    finally:
        holder.kill()
        holder.wait()
    # the holder died: its lock went with it
    assert idx.update([photos], workers=0, progress=False).added == 6


def test_nested_and_multiple_roots(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    other = tmp_path / "other"
    copy_photos(other, ["opencv/baboon.jpg"], flat=True)
    idx.update([photos, other], workers=0, progress=False)
    assert idx.count == 7
    # updating one root leaves the other alone; a nested root adds nothing new
    r = idx.update([photos / "skimage"], workers=0, progress=False)
    assert (r.added, r.removed, r.unchanged) == (0, 0, 3) and idx.count == 7
    (other / "baboon.jpg").unlink()
    r = idx.update([], workers=0, progress=False)  # all known roots
    assert r.removed == 1 and idx.count == 6 and idx.check().ok


def test_sigkill_during_indexing_then_rerun_gives_the_clean_result(tmp_path, tiny_model):
    """Kill the real CLI mid-run (after some commits), run it again: consistent, complete, exact."""
    import signal

    photos = tmp_path / "photos"
    copy_photos(
        photos,
        [
            f"pixabay/{n}"
            for n in (
                "airplane01.jpg",
                "airplane02.jpg",
                "bird01.jpg",
                "bird02.jpg",
                "car01.jpg",
                "cat01.jpg",
                "dog01.jpg",
                "horse01.jpg",
                "ship01.jpg",
                "truck01.jpg",
                "frog01.jpg",
                "deer01.jpg",
            )
        ],
    )
    ix = tmp_path / "ix"
    cmd = [
        sys.executable,
        "-m",
        "indexer",
        "index",
        str(photos),
        "--index",
        str(ix),
        "--model",
        str(tiny_model[2]),
        "--commit-every",
        "2",
        "--batch-size",
        "1",
        "--workers",
        "0",
        "-q",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(ix.glob("vectors-00000[2-9].faiss")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Index.open(ix) as idx:
        assert idx.check().ok  # the killed run left a consistent, partial index
        partial = idx.count
    assert 0 < partial < 12
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    clean = (
        tmp_path / "clean"
    )  # the reference: one uninterrupted update, the run's settings (no second CLI process)
    with Index.create(clean, tiny_model[0], model_dir=tiny_model[2], batch_size=1) as ref:
        ref.update([photos], workers=0, progress=False, commit_every=2)
    with Index.open(ix) as idx, Index.open(clean) as ref:
        assert idx.check().ok and idx.count == 12 and len(set(_paths(idx))) == 12
        for p in _paths(ref):
            a = idx.vector(idx.store.row_by_path(p).id)
            b = ref.vector(ref.store.row_by_path(p).id)
            assert np.dot(a, b) > 0.99999


def test_forget_drops_rows_and_vectors_without_scanning(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    idx.update([photos], workers=0, progress=False)
    gone = photos / "pixabay" / "cat01.jpg"
    copy_photos(photos, ["opencv/baboon.jpg"], flat=True)  # new, but forget() must not scan for it
    r = idx.forget([str(gone), str(photos / "not-indexed.jpg")])
    assert r.removed == 1 and r.added == 0 and idx.count == 5 and idx.check().ok
    assert str(gone) not in _paths(idx) and str(photos / "baboon.jpg") not in _paths(idx)
    ids, vecs = idx.all_vectors()
    assert len(ids) == 5 and vecs.shape == (5, 512) and set(ids.tolist()) == set(idx.store.all_ids())


def test_search_prints_top_classes_when_the_model_has_a_classifier(tmp_path, photos, capsys):
    """One forward pass gives neighbours and classes; `search` shows the top 5 (text and JSON)."""
    from conftest import tiny_net

    from indexer.cli import main

    classes = ["ant", "bee", "cat", "dog", "eel", "fox"]
    spec, net = tiny_net(classes, size=32)
    Index.create(tmp_path / "ix", spec, net).update([photos], workers=0, progress=False)
    q = photos / "pixabay" / "cat01.jpg"
    assert main(["search", str(q), "--index", str(tmp_path / "ix"), "-k", "2", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["results"][0]["path"] == str(q)
    assert len(row["classes"]) == 5 and {c["class"] for c in row["classes"]} <= set(classes)
    ps = [c["p"] for c in row["classes"]]
    assert ps == sorted(ps, reverse=True) and 0 < sum(ps) <= 1.0001
    assert main(["search", str(q), "--index", str(tmp_path / "ix"), "-k", "1"]) == 0
    assert "  classes (model): " in capsys.readouterr().out
    # and a model without a classifier prints none
    idx2 = Index.create(tmp_path / "ix2", *tiny_net(classes, size=32, head=""))
    idx2.update([photos], workers=0, progress=False)
    hits, top = idx2.search_and_classify([q], k=1)
    assert top is None and hits[0][0].path == str(q)


def test_trim_borders_flag_is_part_of_the_model(tmp_path):
    """--no-trim-borders makes an index with the old input policy; asking an existing index for the
    other policy is refused in one line (exit 2), and export writes the choice into the sidecar."""
    from indexer.cli import main
    from indexer.index import Index
    from retrieval.engines.export import read_sidecar

    photos = tmp_path / "photos"
    copy_photos(photos, ["skimage/coffee.png", "skimage/chelsea.png"])
    tiny = ["--arch", "vgg11", "--weights", "random", "--size", "64"]
    assert (
        main(
            [
                "index",
                str(photos),
                "--index",
                str(tmp_path / "ix"),
                *tiny,
                "--no-trim-borders",
                "--precision",
                "fp32",
                "-q",
            ]
        )
        == 0
    )  # the input policy, not the precision, is tested
    with Index.open(tmp_path / "ix") as idx:
        assert idx.spec.trim_borders is False and idx.count == 2
    assert (
        main(["index", str(photos), "--index", str(tmp_path / "ix"), *tiny, "-q"]) == 0
    )  # keeps the index's
    assert main(["index", str(photos), "--index", str(tmp_path / "ix"), *tiny, "--trim-borders", "-q"]) == 2
    assert main(["export", "--out", str(tmp_path / "m"), *tiny, "--no-trim-borders"]) == 0
    spec, _ = read_sidecar(tmp_path / "m")
    assert spec.trim_borders is False
    with Index.open(tmp_path / "ix") as idx:
        assert spec.model_id == idx.spec.model_id


def test_progress_callback_counts_files_and_a_raise_stops_cleanly(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix", batch_size=2)
    calls = []
    r = idx.update(
        [photos], workers=0, progress=lambda done, total: calls.append((done, total)), commit_every=2
    )
    assert r.added == 6 and calls and calls[-1] == (6, 6)
    assert [d for d, _ in calls] == sorted({d for d, _ in calls}) and {t for _, t in calls} == {6}

    # a cancel (the UI's stop button raises) after a commit: the update stops, the index is whole
    copy_photos(photos, ["pixabay/ship01.jpg", "opencv/fruits.jpg", "opencv/baboon.jpg"], flat=True)
    seen = []

    def cancel(done, total):
        seen.append((done, total))
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        idx.update([photos], workers=0, progress=cancel, commit_every=1)
    assert seen[0][1] == 3 and seen[-1][0] == 2
    kept = idx.count
    assert 6 <= kept < 9 and idx.check().ok
    r = idx.update([photos], workers=0, progress=False)  # the next run finishes the job
    assert idx.count == 9 and r.added == 9 - kept and idx.check().ok


def test_default_decode_workers_leave_two_cores_to_the_engine(tmp_path):
    """On 2 cores decoding runs in the indexing process (a decode process beside the engine's
    threads was measured slower); more cores get half of them as decode processes, at most 4. The
    web UI's indexing keeps at least one decode process: a crashing decoder must not kill the server."""
    from indexer.update.updater import default_workers
    from ui.logic import IndexingJob

    assert [default_workers(c) for c in (1, 2, 3, 4, 8, 32)] == [0, 0, 1, 2, 4, 4]
    assert IndexingJob(tmp_path / "ix", []).workers == max(1, default_workers())
    assert IndexingJob(tmp_path / "ix", [], workers=0).workers == 0


def test_slow_commits_are_spaced_and_fast_ones_are_not(tmp_path, make_index, photos, monkeypatch):
    """A commit rewrites the whole vectors file, so it slows as the index grows: after a commit of at
    least ``SLOW_COMMIT`` seconds the next waits (commits stay under ``COMMIT_SHARE`` of the run);
    fast commits still come every ``commit_every`` items. Nothing is lost either way."""
    from indexer.update import updater

    def run(idx, delay):
        commits = []
        real = idx._commit

        def timed(added, *args):
            commits.append(len(added))
            time.sleep(delay)  # the cost of rewriting a large vectors file
            return real(added, *args)

        idx._commit = timed
        idx.update([photos], workers=0, progress=False, commit_every=1)
        return commits

    slow = make_index(tmp_path / "slow")
    commits = run(slow, updater.SLOW_COMMIT)  # each commit waits 19x its time: the rest in one more
    assert commits[0] == 1 and sum(commits) == 6 and len(commits) < 6, commits
    monkeypatch.setattr(updater, "SLOW_COMMIT", 60.0)  # no commit here is slow (PostgreSQL's first can be)
    fast = make_index(tmp_path / "fast")
    assert run(fast, 0.0) == [1] * 6  # one photo per commit, as asked
    for idx in (fast, slow):
        assert idx.count == 6 and idx.check().ok
