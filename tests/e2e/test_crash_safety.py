"""A crash at the worst moments, a full disk, a read-only index: the index stays correct."""

import os
import resource
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import SAMPLES, copy_photos

from indexer import Index
from indexer.faults import DECODE_POINT, ENV, POINTS
from indexer.storage.tables import ImageRow
from indexer.update.decode import DecodeJournal

FIRST = ["pixabay/airplane01.jpg", "pixabay/bird01.jpg", "pixabay/cat01.jpg"]
MORE = ["pixabay/dog01.jpg", "pixabay/ship01.jpg", "skimage/coffee.png"]


def run_index(folder, ix, model, env=None, preexec=None, privileged=True):
    cmd = [
        sys.executable,
        "-m",
        "indexer",
        "index",
        str(folder),
        "--index",
        str(ix),
        "--model",
        str(model),
        "--workers",
        "0",
        "--batch-size",
        "2",
        "--commit-every",
        "2",
        "-q",
    ]
    if not privileged and os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec,
    )


def snapshot(ix):
    with Index.open(ix) as idx:
        rep = idx.check()
        assert rep.ok, rep.problems
        with idx.store.session() as s:
            rows = {r.path: r.id for r in s.query(ImageRow)}
        return {p: idx.vector(i) for p, i in rows.items()}


@pytest.fixture(scope="module")
def template(module_tmp, tiny_model):
    """Made once for the module: an index of 3 photos (run through the CLI) and its vectors, kept
    pristine next to the place the tests use. The index stores absolute photo paths, so every test
    works at that same place (``work``), restored from the pristine copy (copy2 keeps mtimes)."""
    base = module_tmp("crash")
    work, pristine = base / "work", base / "pristine"
    folder, ix = work / "photos", work / "ix"
    copy_photos(folder, FIRST, flat=True)
    assert run_index(folder, ix, tiny_model[2]).returncode == 0
    before = snapshot(ix)
    shutil.copytree(work, pristine, symlinks=True)
    return work, pristine, before


def _restore(template):
    """The template's folder and index at ``work``, as made, with the 3 MORE photos added since."""
    work, pristine, before = template
    shutil.rmtree(work)
    shutil.copytree(pristine, work, symlinks=True)
    copy_photos(work / "photos", MORE, flat=True)
    return work / "photos", work / "ix", dict(before)


@pytest.fixture
def indexed(template):
    """An index of 3 photos, and 3 more photos added to the folder since."""
    return _restore(template)


@pytest.fixture(scope="module")
def reference(template, tiny_model):
    """The vectors of a clean index made in one run of the 6 photos at the tests' own paths."""
    folder, _, _ = _restore(template)
    clean = template[0].parent / "clean"
    assert run_index(folder, clean, tiny_model[2]).returncode == 0
    return snapshot(clean)


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_each_crash_point(tiny_model, reference, indexed, point):
    folder, ix, before = indexed
    r = run_index(folder, ix, tiny_model[2], env={ENV: point})
    assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr[-500:])
    after_kill = snapshot(ix)  # check() passes
    assert set(before) <= set(after_kill)
    if point in ("after_scan", "after_embed", "vectors_tmp_written", "vectors_renamed"):
        assert set(after_kill) == set(before)  # nothing committed: exactly the previous state
    else:
        assert len(after_kill) > len(before)
    for p, v in before.items():
        assert np.allclose(after_kill[p], v)
    r = run_index(folder, ix, tiny_model[2])
    assert r.returncode == 0, r.stderr
    final = snapshot(ix)
    assert len(final) == 6
    assert set(final) == set(reference)
    for p in final:
        assert float(np.dot(final[p], reference[p])) > 0.99999
    assert len(list(ix.glob("vectors-*"))) == 1  # leftovers cleaned


def test_a_file_that_crashes_the_decoder_in_process_is_reported_on_the_next_run(tiny_model, indexed):
    """Decoding in the indexing process (the default on 2 cores): a decoder crash kills the run; the
    next run decodes that file in a process of its own, reports it and indexes the rest."""
    folder, ix, before = indexed
    bad = DECODE_POINT + "dog01.jpg"
    r = run_index(folder, ix, tiny_model[2], env={ENV: bad})
    assert r.returncode == -signal.SIGKILL, r.stderr[-500:]
    assert str(folder / "dog01.jpg") in DecodeJournal(ix).suspects()  # with the file(s) decoded beside it
    assert set(snapshot(ix)) == set(before)
    r = run_index(folder, ix, tiny_model[2], env={ENV: bad})  # the file still crashes the decoder
    assert r.returncode == 0, r.stderr[-500:]
    assert not (ix / DecodeJournal.NAME).exists()
    final = snapshot(ix)
    assert len(final) == 5 and str(folder / "dog01.jpg") not in final
    with Index.open(ix) as idx:
        assert {e.path: e.reason for e in idx.store.errors()}.get(
            str(folder / "dog01.jpg")
        ) == "the image decoder crashed on this file"


def test_disk_full_keeps_the_last_saved_state(tiny_model, indexed):
    folder, ix, before = indexed

    def small_disk():  # every file write past 40 KiB fails, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40 * 1024, 40 * 1024))

    more = sorted(p.name for p in (SAMPLES / "pixabay").glob("*.jpg"))[:24]
    copy_photos(folder, [f"pixabay/{n}" for n in more], flat=True)
    r = run_index(folder, ix, tiny_model[2], preexec=small_disk)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and f"cannot save the index in {ix}" in err[0] and "last saved state" in err[0], (
        r.stderr
    )
    after = snapshot(ix)  # check() passes: the last commit that fitted, nothing half-written
    assert set(before) <= set(after) < {str(p) for p in folder.iterdir()}
    assert len(list(ix.glob("vectors-*"))) == 1
    assert run_index(folder, ix, tiny_model[2]).returncode == 0
    assert set(snapshot(ix)) == {str(p) for p in folder.iterdir()}


def test_read_only_index_folder(tiny_model, indexed):
    folder, ix, before = indexed
    os.chmod(ix.parent, 0o755)
    for p in [ix, *ix.iterdir()]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)
    try:
        r = run_index(folder, ix, tiny_model[2], privileged=False)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "read-only" in r.stderr, r.stderr
        s = subprocess.run(
            [
                "setpriv",
                "--bounding-set",
                "-dac_override,-dac_read_search",
                sys.executable,
                "-m",
                "indexer",
                "search",
                str(folder / "cat01.jpg"),
                "--index",
                str(ix),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert s.returncode == 0, s.stderr  # a read-only index is still searchable
        assert '"score": 1.0' in s.stdout or '"score": 0.99999' in s.stdout
    finally:
        for p in [ix, *ix.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
    assert set(snapshot(ix)) == set(before)


def test_an_interrupt_as_the_commit_closes_keeps_the_committed_file(tmp_path, make_index, photos):
    """A signal handled while the transaction closes (``index --watch`` stopped by SIGTERM: its
    handler raises inside the update) arrives after the database committed: the vectors file the
    database now names must stay. Found by the watch test in a full CI run, where `check` then said
    "vectors file named by the database is missing"."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    ix = tmp_path / "ix"
    with make_index(ix) as idx:
        idx.update([photos], progress=False, workers=0)
        before = idx.count
        copy_photos(photos, ["pixabay/ship01.jpg"], flat=True)
        fired = []
        files_before = set(ix.glob("vectors-*.faiss"))

        def interrupt(session):  # after the commit that names a new vectors file, not an earlier one
            if not fired and set(ix.glob("vectors-*.faiss")) - files_before:
                fired.append(True)
                raise KeyboardInterrupt  # what a signal handler's exception looks like at this moment

        event.listen(Session, "after_commit", interrupt)
        try:
            with pytest.raises(KeyboardInterrupt):
                idx.update([photos], progress=False, workers=0)
        finally:
            event.remove(Session, "after_commit", interrupt)
        assert fired
    with Index.open(ix) as again:  # the folder remembers its database
        rep = again.check()
        assert rep.ok, rep.problems
        assert again.count == before + 1  # the commit went through, file and rows
