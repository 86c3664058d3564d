"""Issue 25's minor findings: a folder whose name is not UTF-8, the index folder among its own
folders, file names with newlines, click's usage errors, broken HEIC/AVIF files: one line each, one
result per line, every passed-over photo listed with its reason."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import SAMPLES, copy_photos

from indexer import Index
from indexer.cli import main


def one_error_line(capsys, expect: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], err
    assert "Traceback" not in err
    return lines[0]


def test_a_folder_name_that_is_not_utf8_is_one_line_and_leaves_no_index(tmp_path, tiny_model, capsys):
    bad = tmp_path / os.fsdecode(b"caf\xe9-photos")
    copy_photos(bad, ["skimage/coffee.png"], flat=True)
    ix = tmp_path / "ix"
    assert main(["index", str(bad), "--index", str(ix), "--model", str(tiny_model[2]), "-q"]) == 2
    assert "caf\\xe9-photos (rename the folder)" in one_error_line(capsys, "folder name is not valid UTF-8")
    assert not ix.exists()
    # an existing index is refused the same way, and keeps what it had
    good = tmp_path / "good"
    copy_photos(good, ["skimage/chelsea.png"], flat=True)
    assert (
        main(["index", str(good), "--index", str(ix), "--model", str(tiny_model[2]), "-q", "--workers", "0"])
        == 0
    )
    capsys.readouterr()
    assert main(["index", str(bad), "--index", str(ix), "-q"]) == 2
    one_error_line(capsys, "folder name is not valid UTF-8")
    with Index.open(ix) as idx:
        assert idx.count == 1 and idx.store.roots() == [str(good)]


def test_the_index_folder_is_never_indexed(tmp_path, tiny_model, capsys):
    model = str(tiny_model[2])
    ix = tmp_path / "ix"
    ix.mkdir()
    assert main(["index", str(ix), "--index", str(ix), "--model", model, "-q"]) == 2
    one_error_line(capsys, "is the index folder")
    assert list(ix.iterdir()) == []  # no empty index left behind
    # an index folder inside the indexed folder: indexed around, never into
    photos = tmp_path / "photos"
    copy_photos(photos, ["skimage/coffee.png", "skimage/chelsea.png"], flat=True)
    inner = photos / ".index"
    assert main(["index", str(photos), "--index", str(inner), "--model", model, "-q", "--workers", "0"]) == 0
    shutil.copy2(SAMPLES / "skimage" / "astronaut.png", inner / "planted.png")
    assert main(["index", "--index", str(inner), "-q", "--workers", "0"]) == 0
    with Index.open(inner) as idx:
        paths = {p for p, *_ in idx.store.images_under(str(photos))}
        assert paths == {str(photos / "coffee.png"), str(photos / "chelsea.png")}
        assert not [e.path for e in idx.store.errors() if e.path.startswith(str(inner))]
    capsys.readouterr()
    assert main(["index", str(inner / "model"), "--index", str(inner), "-q"]) == 2
    one_error_line(capsys, "is the index folder")


def test_one_result_per_line_whatever_the_file_name(tmp_path, make_index, capsys):
    photos = tmp_path / "photos"
    copy_photos(photos, ["skimage/coffee.png", "skimage/chelsea.png"], flat=True)
    odd = photos / "two\nlines\x1b[31m.png"
    shutil.copy2(SAMPLES / "skimage" / "astronaut.png", odd)
    (photos / "bad\nname.jpg").write_bytes(b"not a photo")
    idx = make_index(tmp_path / "ix")
    idx.update([photos], progress=False, workers=0)
    idx.close()
    assert (
        main(["search", str(photos / "coffee.png"), "--index", str(tmp_path / "ix"), "-k", "3", "--qe", "0"])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + 3 and all(line.startswith("   ") for line in out[1:]), out
    assert any(line.endswith("/two\\nlines\\x1b[31m.png  [photos]") for line in out), out
    assert main(["info", "--index", str(tmp_path / "ix"), "--errors"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if "name.jpg" in line] == [
        f"  {photos}/bad\\nname.jpg: not an image: content is text"
    ]


@pytest.mark.parametrize(
    "args, expect",
    [
        (["index", "--bogus"], "No such option '--bogus' (see vgg-retrieval index --help)"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["search", "--top-k", "many", "x.jpg"], "'many' is not a valid integer"),
        (["dedup", "apply"], "Missing argument 'REPORT'"),
    ],
)
def test_usage_errors_are_one_line(capsys, args, expect):
    assert main(args) == 2
    one_error_line(capsys, expect)


def test_broken_photos_of_the_newer_formats_are_listed_with_their_reason(tmp_path, make_index, capsys):
    """HEIC and AVIF are read now (issue 27); a file that only starts like one is still never passed
    over in silence: it is listed with its reason, one line, and a text file is not."""
    photos = tmp_path / "photos"
    copy_photos(photos, ["skimage/coffee.png"], flat=True)
    (photos / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    (photos / "shot.avif").write_bytes(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64)
    (photos / "no-extension").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    (photos / "notes.txt").write_text("a text file: not a photo, passed over in silence")
    idx = make_index(tmp_path / "ix")
    rep = idx.update([photos], progress=False, workers=0)
    assert rep.added == 1 and len(rep.errors) == 3
    idx.close()
    capsys.readouterr()
    assert main(["info", "--index", str(tmp_path / "ix"), "--errors"]) == 0
    out = capsys.readouterr().out
    assert "errors:  3" in out and "notes.txt" not in out
    for name in ("IMG_0001.HEIC", "shot.avif", "no-extension"):
        line = next(ln for ln in out.splitlines() if ln.startswith(f"  {photos / name}: "))
        assert len(line) > len(f"  {photos / name}: ") + 5 and "Traceback" not in out
    # unchanged, they are not read again nor reported again
    with Index.open(tmp_path / "ix") as again:
        rep = again.update([photos], progress=False, workers=0)
        assert rep.errors == [] and len(again.store.errors()) == 3


@pytest.mark.parametrize("command", [["search", "photo.jpg"], ["info"], ["check"], ["index"]])
def test_a_missing_index_option_is_one_line(command, monkeypatch, capsys):
    """click >= 8.3 takes an explicit ``default=None`` as a value given: a required --index with one
    let commands run with no index and end in a TypeError traceback."""
    monkeypatch.delenv("VGG_RETRIEVAL_INDEX", raising=False)
    assert main(command) == 2
    one_error_line(capsys, "--index")
