"""Offline folders (issue 25): a folder that cannot be listed is not a deleted folder.

An unplugged root keeps its entries, ``info`` says "offline since",
searches mark or leave out its files, dedup leaves them alone, and when it comes back nothing is
embedded again. Only ``index --forget-missing`` removes it. Real photos, the tiny VGG11, SQLite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_photos

from indexer.cli import main
from indexer.dedup import find_duplicates

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def two_disks(tmp_path, make_index):
    """An index of two roots: ``home`` (3 photos) and ``disk`` (3 photos, one an exact copy of home's)."""
    home, disk = tmp_path / "home", tmp_path / "disk"
    copy_photos(home, ["skimage/astronaut.png", "skimage/coffee.png", "pixabay/cat01.jpg"], flat=True)
    copy_photos(disk, ["pixabay/dog01.jpg", "pixabay/ship01.jpg"], flat=True)
    (disk / "sub").mkdir()
    shutil.copy2(home / "astronaut.png", disk / "sub" / "astronaut.png")
    idx = make_index(tmp_path / "index")
    rep = idx.update([home, disk], progress=False, workers=0)
    assert rep.added == 6
    return tmp_path, home, disk, idx


def rows(idx) -> dict[str, int]:
    return {p: idx.store.row_by_path(p).id for p, *_ in idx.store.images_under("/")}


def test_an_unplugged_root_keeps_its_entries_and_comes_back_without_re_embedding(two_disks, capsys):
    tmp, home, disk, idx = two_disks
    before = rows(idx)
    vectors = {p: idx.vector(i) for p, i in before.items()}
    away = tmp / "unplugged"
    os.rename(disk, away)  # the disk is unplugged
    capsys.readouterr()
    assert main(["index", "--index", str(tmp / "index"), "--workers", "0", "-q"]) == 0
    out = capsys.readouterr().out
    assert (
        f"offline {disk}: folder not found" in out and "0 removed" in out and "6 images in the index" in out
    )
    assert rows(idx) == before and idx.check().ok
    offline = idx.store.offline_folders()
    assert list(offline) == [str(disk)] and "unplugged" in offline[str(disk)][1]
    assert main(["info", "--index", str(tmp / "index")]) == 0
    info = capsys.readouterr().out
    assert f"folder:  {disk} (offline since " in info and f"folder:  {home}\n" in info
    from ui.logic.service import Service

    svc = Service(tmp / "index")
    try:  # the UI's index page shows the same
        shown = svc.info()["offline"]
        assert list(shown) == [str(disk)] and shown[str(disk)].startswith("offline since ")
    finally:
        svc.index.close()
    # searches show its files marked offline, or leave them out
    hits = idx.search(str(home / "coffee.png"), k=6)
    assert {h.path for h in hits} == set(before)
    assert {h.path for h in hits if h.offline} == {p for p in before if p.startswith(str(disk))}
    assert all(h.as_json().get("offline") is True for h in hits if h.offline)
    assert (
        main(["search", str(home / "coffee.png"), "--index", str(tmp / "index"), "-k", "6", "--qe", "0"]) == 0
    )
    shown = capsys.readouterr().out
    assert shown.count("(offline)") == 3
    assert (
        main(
            [
                "search",
                str(home / "coffee.png"),
                "--index",
                str(tmp / "index"),
                "-k",
                "6",
                "--qe",
                "0",
                "--skip-offline",
            ]
        )
        == 0
    )
    shown = capsys.readouterr().out
    assert "(offline)" not in shown and str(disk) not in shown and str(home / "coffee.png") in shown
    # dedup proposes nothing through it: the exact copy on the disk is not a duplicate now
    assert find_duplicates(idx, near=False).groups == []
    # the disk is back: nothing embedded again, same ids and vectors, no longer offline
    os.rename(away, disk)
    rep = idx.update(progress=False, workers=0)
    assert (rep.embedded, rep.added, rep.removed, rep.unchanged) == (0, 0, 0, 6) and rep.offline == []
    assert rows(idx) == before and idx.store.offline_folders() == {}
    for p, i in before.items():
        assert np.array_equal(idx.vector(i), vectors[p])
    assert len(find_duplicates(idx, near=False).groups) == 1


def test_forget_missing_removes_a_gone_folder_and_vanished_files_still_go(two_disks, capsys):
    tmp, home, disk, idx = two_disks
    (home / "cat01.jpg").unlink()  # a file deleted from a folder that can be listed: removed as always
    shutil.rmtree(disk)
    rep = idx.update(progress=False, workers=0)
    assert rep.removed == 1 and [f for f, _ in rep.offline] == [str(disk)]
    assert idx.count == 5
    capsys.readouterr()
    assert main(["index", "--index", str(tmp / "index"), "--workers", "0", "-q", "--forget-missing"]) == 0
    out = capsys.readouterr().out
    assert f"forgot the missing folder {disk}" in out and "3 removed" in out
    assert f"note: forgetting the entries of {disk} (folder not found" in out
    assert idx.count == 2 and idx.store.roots() == [str(home)] and idx.store.offline_folders() == {}
    assert idx.check().ok


def test_a_folder_that_cannot_be_listed_keeps_its_entries(two_disks):
    """Run without root's power to read anything (setpriv), as a user would."""
    tmp, home, disk, idx = two_disks
    before = rows(idx)
    os.chmod(disk / "sub", 0o000)
    try:
        cmd = [
            sys.executable,
            "-m",
            "indexer",
            "index",
            "--index",
            str(tmp / "index"),
            "--workers",
            "0",
            "-q",
        ]
        if os.geteuid() == 0:
            cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]
        r = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"},
        )
        assert r.returncode == 0, r.stderr
        assert f"offline {disk / 'sub'}: cannot list folder: Permission denied" in r.stdout, r.stdout
        assert "0 removed" in r.stdout and "Traceback" not in r.stderr
    finally:
        os.chmod(disk / "sub", 0o755)
    assert rows(idx) == before
    assert list(idx.store.offline_folders()) == [str(disk / "sub")]
    rep = idx.update(progress=False, workers=0)
    assert (rep.embedded, rep.removed) == (0, 0) and idx.store.offline_folders() == {}
