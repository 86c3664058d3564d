"""``dedup undo`` treats its log as data (issue 25): malformed logs, hostile logs, edited logs and
apply/undo while the index is being updated are each refused with one line, with nothing moved.

Real photos in tmp folders, a real index (the tiny random VGG11), real SQLite; the CLI in-process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import copy_photos

from indexer.cli import main
from indexer.dedup import find_duplicates
from indexer.dedup.apply import apply_report
from indexer.storage.undo_log import KEY_FILE, index_key, signature

PHOTOS = ["skimage/astronaut.png", "skimage/coffee.png", "pixabay/dog01.jpg", "pixabay/cat01.jpg"]
ROOT = Path(__file__).resolve().parents[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(*folders: Path) -> dict:
    """Every file under ``folders`` (bytes and mtime), and every folder: what a refusal must not change."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            out[str(p)] = (
                (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() and not p.is_symlink() else p.is_dir()
            )
    return out


def library(tmp: Path, make_index):
    """An index of 4 photos and 2 exact copies (in lib/copies, newer: they are the duplicates)."""
    lib = tmp / "lib"
    copy_photos(lib, PHOTOS, flat=True)
    (lib / "copies").mkdir()
    for name in ("astronaut.png", "dog01.jpg"):
        shutil.copy2(lib / name, lib / "copies" / name)
        later = (lib / name).stat().st_mtime_ns + 10**12
        os.utime(lib / "copies" / name, ns=(later, later))
    idx = make_index(tmp / "index")
    idx.update([lib], progress=False, workers=0)
    return lib, idx


@pytest.fixture
def applied(tmp_path, make_index):
    """The 2 copies moved to the quarantine by ``dedup apply``; its undo log; a file outside everything."""
    lib, idx = library(tmp_path, make_index)
    rep = find_duplicates(idx, near=False)
    rep.save_json(tmp_path / "report.json")
    q, log = tmp_path / "q", tmp_path / "undo.json"
    out = apply_report(rep, q, execute=True, log=log, echo=lambda *_: None)
    assert len(out.moves) == 2 and not (lib / "copies" / "dog01.jpg").exists()
    outside = tmp_path / "elsewhere" / "precious.jpg"
    outside.parent.mkdir()
    shutil.copy2(lib / "cat01.jpg", outside)
    return SimpleNamespace(
        tmp=tmp_path,
        lib=lib,
        idx=idx,
        q=q,
        log=log,
        data=json.loads(log.read_text()),
        outside=outside,
        report=tmp_path / "report.json",
    )


def refused(capsys, env, data, expect: str, resign: bool = False, dry_run: bool = False):
    """Write ``data`` as the undo log (signed again with the index's key when ``resign``, as an
    attacker holding the key would), run ``dedup undo``: exit 2, one line with ``expect``, nothing moved."""
    if resign and isinstance(data, dict):
        data["signature"] = signature(data, index_key(env.tmp / "index"))
    env.log.write_text(data if isinstance(data, str) else json.dumps(data))
    watched = (env.lib, env.q, env.outside.parent)
    before = snapshot(*watched)
    capsys.readouterr()
    rc = main(["dedup", "undo", str(env.log)] + ([] if dry_run else ["--yes"]))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2, (rc, captured.out, captured.err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], captured.err
    assert "Traceback" not in captured.err and "would restore" not in captured.out
    assert snapshot(*watched) == before
    assert not (env.tmp / "index" / "dedup.journal").exists()
    return lines[0]


# --- the 7 malformed logs of the issue (each a traceback before) -------------------------------------
def _no_moves(d):
    del d["moves"]


def _no_src(d):
    del d["moves"][0]["src"]


def _src_null(d):
    d["moves"][0]["src"] = None


def _src_list(d):
    d["moves"][0]["src"] = ["/a", "/b"]


def _extra_key(d):
    d["moves"][0]["extra"] = 1


def _moves_int(d):
    d["moves"] = 5


def _move_int(d):
    d["moves"] = [5]


MALFORMED = {
    "KeyError 'moves'": _no_moves,
    "Move() missing 'src'": _no_src,
    "lstat NoneType": _src_null,
    "lstat list": _src_list,
    "unexpected keyword 'extra'": _extra_key,
    "'int' not iterable": _moves_int,
    "** must be a mapping": _move_int,
}


@pytest.mark.parametrize("dry_run", [False, True], ids=["yes", "dry-run"])
@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_undo_logs_are_one_line_and_move_nothing(applied, capsys, name, dry_run):
    data = json.loads(json.dumps(applied.data))
    MALFORMED[name](data)
    line = refused(capsys, applied, data, "is malformed", dry_run=dry_run)
    assert str(applied.log) in line


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"format": "vgg-retrieval-dedup-undo"}', "\x00\xff"])
def test_other_garbage_is_one_line(applied, capsys, text):
    refused(capsys, applied, text, str(applied.log))


# --- the 3 hostile logs of the issue ------------------------------------------------------------------
def _outside_source(env, d):
    """The quarantined file to restore is a file outside the quarantine (its true size and sha256)."""
    d["moves"][0].update(dst=str(env.outside), size=env.outside.stat().st_size, sha256=_sha(env.outside))


def _outside_destination(env, d):
    """The restore path is outside the index's folders."""
    d["moves"][0]["src"] = str(env.tmp / "elsewhere" / "planted.jpg")


def _etc(env, d):
    """/etc/passwd into the photo folder, and a file written into /etc/cron.d."""
    passwd = Path("/etc/passwd")
    d["moves"][0].update(dst=str(passwd), size=passwd.stat().st_size, sha256=_sha(passwd))
    d["moves"][1]["src"] = "/etc/cron.d/planted"


HOSTILE = {
    "outside source": (_outside_source, "is not inside the quarantine folder"),
    "outside destination": (_outside_destination, "is not inside the index's folders"),
    "/etc": (_etc, "is not inside the quarantine folder"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_undo_logs_are_refused_as_edited_and_by_their_paths(applied, capsys, name):
    edit, why = HOSTILE[name]
    data = json.loads(json.dumps(applied.data))
    edit(applied, data)
    assert "was edited" in refused(capsys, applied, dict(data), "signature does not match", dry_run=True)
    refused(capsys, applied, dict(data), "signature does not match")
    # even signed with the index's own key (someone who could read it), the paths are checked
    line = refused(capsys, applied, dict(data), why, resign=True)
    assert "entry " in line and "nothing was moved" in line
    line = refused(capsys, applied, dict(data), why, resign=True, dry_run=True)
    assert not Path("/etc/cron.d/planted").exists() and applied.outside.exists()


def test_a_swapped_quarantined_file_or_a_link_out_of_the_quarantine_is_refused(applied, capsys):
    moved = Path(applied.data["moves"][0]["dst"])
    original = moved.read_bytes()
    moved.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))  # same size, other bytes
    refused(capsys, applied, applied.data, "size or sha256 differ")
    moved.write_bytes(original)
    # the quarantine's sub-folder replaced by a link to a folder outside it, holding the same file
    away = applied.tmp / "away"
    shutil.move(str(moved.parent), away)
    moved.parent.symlink_to(away, target_is_directory=True)
    refused(capsys, applied, applied.data, "is not inside the quarantine folder")


def test_edited_unsigned_and_foreign_logs_are_refused(applied, capsys, make_index):
    data = json.loads(json.dumps(applied.data))
    data["moves"][0]["size"] += 1
    refused(capsys, applied, data, "was edited")
    old = {k: v for k, v in applied.data.items() if k != "signature"}
    refused(capsys, applied, dict(old, version=1), "is not signed")
    refused(capsys, applied, dict(old), "is malformed")  # version 2 without its signature
    # a log signed by another index's key
    other = applied.tmp / "other"
    (other).mkdir()
    (other / KEY_FILE).write_bytes(os.urandom(32))
    foreign = dict(old)
    foreign["signature"] = signature(foreign, (other / KEY_FILE).read_bytes())
    refused(capsys, applied, foreign, "signature does not match")
    key = applied.tmp / "index" / KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600


def test_undo_of_the_true_log_still_restores_everything(applied, capsys):
    """The checks refuse nothing that apply wrote: the signed log restores both files, index updated."""
    count = applied.idx.count
    assert main(["dedup", "undo", str(applied.log), "--yes"]) == 0
    out = capsys.readouterr().out
    assert "restored 2 files" in out and "index updated" in out
    assert (applied.lib / "copies" / "dog01.jpg").read_bytes() == (applied.lib / "dog01.jpg").read_bytes()
    assert applied.idx.count == count + 2 and applied.idx.check().ok
    assert json.loads(applied.log.read_text())["state"] == "undone"


# --- apply and undo take the index's write lock first ---------------------------------------------------
HOLD_LOCK = (
    "import sys, time\nfrom pathlib import Path\nfrom indexer.storage.folder import write_lock\n"
    "with write_lock(Path(sys.argv[1])):\n    print('locked', flush=True)\n    time.sleep(120)\n"
)


def test_apply_and_undo_while_the_index_is_updated_refuse_before_moving(tmp_path, make_index, capsys):
    lib, idx = library(tmp_path, make_index)
    find_duplicates(idx, near=False).save_json(tmp_path / "report.json")
    count = idx.count
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "index")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"  # the lock an `index` run holds
        before = snapshot(lib)
        capsys.readouterr()
        rc = main(
            ["dedup", "apply", str(tmp_path / "report.json"), "--move-to", str(tmp_path / "q"), "--yes"]
        )
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert f"is being updated by another process (pid {holder.pid})" in err
        assert snapshot(lib) == before and not (tmp_path / "q").exists() and idx.count == count
    finally:
        holder.kill()
        holder.wait()
    # the lock free: apply moves; undo under a held lock refuses before moving anything back
    log = tmp_path / "undo.json"
    assert (
        main(
            [
                "dedup",
                "apply",
                str(tmp_path / "report.json"),
                "--move-to",
                str(tmp_path / "q"),
                "--log",
                str(log),
                "--yes",
            ]
        )
        == 0
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "index")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(lib, tmp_path / "q")
        capsys.readouterr()
        assert main(["dedup", "undo", str(log), "--yes"]) == 2
        assert "is being updated by another process" in capsys.readouterr().err
        assert snapshot(lib, tmp_path / "q") == before
    finally:
        holder.kill()
        holder.wait()


def test_apply_on_a_read_only_index_refuses_before_moving(tmp_path, make_index):
    """As a user without root's power to write anything (setpriv), on an index folder made read-only."""
    lib, idx = library(tmp_path, make_index)
    find_duplicates(idx, near=False).save_json(tmp_path / "report.json")
    idx.close()
    ix = tmp_path / "index"
    for p in [ix, *ix.iterdir()]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)
    before = snapshot(lib)
    cmd = [
        sys.executable,
        "-m",
        "indexer",
        "dedup",
        "apply",
        str(tmp_path / "report.json"),
        "--move-to",
        str(tmp_path / "q"),
        "--yes",
    ]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    try:
        r = subprocess.run(
            cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
    finally:
        for p in [ix, *ix.iterdir()]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: index folder {ix} is read-only: it can be searched, not updated"
    ], r.stderr
    assert snapshot(lib) == before and not (tmp_path / "q").exists()
