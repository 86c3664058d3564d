"""Watch mode: `index --watch` keeps an index current; SIGTERM stops it with the index consistent.

Runs on SQLite and on PostgreSQL (conftest's BOTH_DATABASES): the index is made by make_index, and the
watching CLI finds its database through the folder alone.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import SAMPLES, copy_photos
from PIL import Image

from indexer import Index
from indexer.update.watch import fingerprint, watch
from retrieval.errors import UserError

TIMEOUT = 180  # generous: 2 shared cores


def _wait_for(what, predicate, proc=None):
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(
                f"watch exited ({proc.returncode}) while waiting for {what}: {proc.stderr.read()[-2000:]}"
            )
        try:
            if predicate():
                return
        except UserError:
            pass  # e.g. the vectors file replaced between two reads: look again
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _state(ix):
    """{path: sha256} of the committed index."""
    with Index.open(ix) as idx:
        with idx.store.session() as s:
            from indexer.storage.tables import ImageRow

            return {r.path: r.sha256 for r in s.query(ImageRow)}


def test_watch_cli_follows_adds_changes_removes_and_stops_on_sigterm(tmp_path, make_index, photos):
    ix = tmp_path / "ix"
    make_index(ix).close()
    cmd = [
        sys.executable,
        "-m",
        "indexer",
        "index",
        str(photos),
        "--index",
        str(ix),
        "--watch",
        "--interval",
        "0.3",
        "--workers",
        "0",
        "--batch-size",
        "1",
        "--commit-every",
        "1",
        "-q",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for("the first pass", lambda: len(_state(ix)) == 6, proc)
        added = copy_photos(photos, ["pixabay/ship01.jpg"], flat=True)[0]
        _wait_for("the added file", lambda: str(added) in _state(ix), proc)
        changed = photos / "skimage" / "coffee.png"
        old_sha = _state(ix)[str(changed)]
        Image.open(SAMPLES / "opencv" / "fruits.jpg").save(tmp_path / "new.png")
        os.replace(tmp_path / "new.png", changed)  # whole, as rsync or a photo app writes it
        _wait_for("the changed file", lambda: _state(ix).get(str(changed), old_sha) != old_sha, proc)
        removed = photos / "pixabay" / "dog01.jpg"
        removed.unlink()
        _wait_for("the removed file", lambda: str(removed) not in _state(ix), proc)
        assert len(_state(ix)) == 6

        # SIGTERM while it works on a batch of new files (or just after): a clean stop either way
        more = copy_photos(
            tmp_path / "more",
            [
                f"pixabay/{n}"
                for n in (
                    "airplane01.jpg",
                    "bird01.jpg",
                    "car01.jpg",
                    "cat01.jpg",
                    "horse01.jpg",
                    "truck01.jpg",
                )
            ],
        )
        for p in more:
            shutil.move(str(p), photos / ("new-" + p.name))
        _wait_for("a first commit of the new batch", lambda: len(_state(ix)) > 6, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    assert "stopped watching" in err
    # one line per pass that changed something: the first pass, the add, the change, the removal
    lines = out.splitlines()
    assert any("1 added, 0 updated, 0 removed" in line for line in lines), out
    assert any("0 added, 1 updated, 0 removed" in line for line in lines), out
    assert any("0 added, 0 updated, 1 removed" in line for line in lines), out
    check = subprocess.run(
        [sys.executable, "-m", "indexer", "check", "--index", str(ix)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert check.returncode == 0 and ": OK (" in check.stdout, check.stdout + check.stderr
    # and what the interrupted pass left out, the next run adds
    r = subprocess.run(cmd[:7] + ["--workers", "0", "-q"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert len(_state(ix)) == 12  # 6 + the 6 new ones


def test_unchanged_passes_only_stat_and_stop_event_ends_the_loop(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    lines = []
    stats = watch(
        idx, [photos], interval=0.01, max_passes=4, out=lines.append, handle_signals=False, workers=0
    )
    assert (stats.passes, stats.updates, stats.changed) == (4, 1, 1)  # only the first pass updated
    generation = idx.store.meta("generation")
    assert len(lines) == 2 and "6 added" in lines[0]
    assert (
        "no classifier: it needs at least 2 labels" in lines[1]
    )  # the update's word on the folder classifier

    # another thread changes a file, then stops the loop
    stop = threading.Event()
    seen = []

    def change_then_stop():
        deadline = time.time() + TIMEOUT
        while time.time() < deadline and not seen:  # the first pass (nothing changed) reported
            time.sleep(0.05)
        (photos / "pixabay" / "cat01.jpg").unlink()
        while time.time() < deadline and not any("1 removed" in line for line in seen):
            time.sleep(0.05)
        stop.set()

    t = threading.Thread(target=change_then_stop)
    t.start()
    stats = watch(idx, [photos], interval=0.05, out=seen.append, stop=stop, handle_signals=False, workers=0)
    t.join()
    assert stats.changed == 2 and "1 removed" in seen[1]  # the first pass (no change), then the removal
    assert idx.store.meta("generation") > generation and idx.count == 5 and idx.check().ok


def test_an_emptied_folder_is_not_taken_for_deleted_photos(tmp_path, make_index, photos):
    """A mount that went away looks like an empty folder: watch must not drop every image of it."""
    idx = make_index(tmp_path / "ix")
    watch(idx, [photos], interval=0.01, max_passes=1, out=lambda _: None, handle_signals=False, workers=0)
    assert idx.count == 6
    aside = tmp_path / "aside"
    os.rename(photos, aside)
    photos.mkdir()  # the empty mount point
    lines = []
    stats = watch(
        idx, [photos], interval=0.01, max_passes=2, out=lines.append, handle_signals=False, workers=0
    )
    assert stats.updates == 0 and idx.count == 6 and "unmounted?" in lines[0]
    photos.rmdir()
    os.rename(aside, photos)  # back: nothing to do
    stats = watch(
        idx, [photos], interval=0.01, max_passes=1, out=lines.append, handle_signals=False, workers=0
    )
    assert idx.count == 6 and stats.updates == 1


def test_fingerprint_sees_adds_changes_removes_and_chmod(tmp_path, photos):
    base = fingerprint([str(photos)])[1]
    assert fingerprint([str(photos)])[1] == base
    f = photos / "pixabay" / "cat01.jpg"
    os.chmod(f, 0o600)
    after_chmod = fingerprint([str(photos)])[1]
    assert after_chmod != base
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert fingerprint([str(photos)])[1] != after_chmod
    counts, _, _ = fingerprint([str(tmp_path / "missing")])
    assert counts == {str(tmp_path / "missing"): 0}


def test_watch_user_mistakes(tmp_path, make_index, photos):
    from indexer.cli import main

    idx = make_index(tmp_path / "ix")
    with pytest.raises(UserError, match="interval"):
        watch(idx, [photos], interval=0, handle_signals=False)
    with pytest.raises(UserError, match="folder not found"):  # the first pass's errors are the user's
        watch(idx, [tmp_path / "nope"], interval=1, max_passes=1, handle_signals=False)
    idx.close()
    assert main(["index", str(photos), "--index", str(tmp_path / "ix"), "--interval", "5"]) == 2
