"""Reviewing duplicates in the web UI (Streamlit AppTest, real script runs): keep/quarantine per file,
apply, undo, "keep all" remembered in the index, bulk apply of exact copies, refusals. A real index
(tiny model) over real photos with a grey copy, a half-size copy and a byte copy; real moves."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import copy_photos
from PIL import Image, ImageOps
from streamlit.testing.v1 import AppTest  # the web UI's tests need: pip install streamlit
from test_ui_apptest import app

PHOTOS = ["pixabay/dog01.jpg", "pixabay/ship01.jpg", "skimage/coffee.png", "pixabay/cat01.jpg"]
# the tiny random model finds every photo alike (cosine ~0.97): at 1.0 only verified pairs are duplicates
THRESHOLD = 1.0


def edited_copies(folder: Path) -> dict[str, Path]:
    """dog01 with a grey and a half-size copy, coffee with a byte copy (newer, so not the keeper)."""
    copy_photos(folder, PHOTOS, flat=True)
    f = {p.stem: p.resolve() for p in folder.iterdir()}
    with Image.open(f["dog01"]) as im:
        ImageOps.grayscale(im).save(folder / "dog01-grey.jpg", quality=90)
        im.resize((im.width // 2, im.height // 2), Image.LANCZOS).save(folder / "dog01-small.jpg", quality=90)
    shutil.copy2(f["coffee"], folder / "coffee-copy.png")
    later = f["coffee"].stat().st_mtime_ns + 10**12
    os.utime(folder / "coffee-copy.png", ns=(later, later))
    return {p.stem: p.resolve() for p in folder.iterdir()}


@pytest.fixture
def review(tiny_model, make_index, tmp_path, monkeypatch):
    files = edited_copies(tmp_path / "photos")
    make_index(tmp_path / "index").update([tmp_path / "photos"], workers=0, progress=False)
    return tmp_path, files


def open_page(index_dir, monkeypatch, **env) -> AppTest:
    at = app(index_dir, monkeypatch, **env)
    at.switch_page("pages/duplicates.py").run()
    assert not at.exception, at.exception
    return at


def find_now(at) -> AppTest:
    at.slider(key="dedup_threshold_1").set_value(THRESHOLD)
    at.button(key="dedup_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at


def shown(at) -> dict:
    """keeper file name -> group, as the page's report holds them."""
    return {Path(g.keeper.path).name: g for g in at.session_state["dedup"]["report"].groups}


def key(g, name, what="pick") -> str:
    from ui.logic import group_key

    if what != "pick":
        return f"dd_{what}_{group_key(g)}"
    m = next(m for m in g.files if Path(m.path).name == name)
    return f"dd_pick_{group_key(g)}_{m.id}"


def in_index(index_dir, path: Path) -> bool:
    from indexer import Index

    with Index.open(index_dir) as idx:
        return idx.store.row_by_path(str(path)) is not None


def test_quarantine_one_file_undo_it_and_keep_all_stays_dismissed(review, monkeypatch):
    tmp, files = review
    q = tmp / "quarantine"  # the page's default: next to the index folder
    at = find_now(open_page(tmp / "index", monkeypatch))
    assert at.text_input(key="dedup_quarantine").value == str(q)
    groups = shown(at)
    assert set(groups) == {"dog01.jpg", "coffee.png"}, groups
    dog = groups["dog01.jpg"]
    assert {Path(m.path).name for m in dog.members} == {"dog01-grey.jpg", "dog01-small.jpg"}
    # the keeper is preselected keep, the copies quarantine
    assert at.radio(key=key(dog, "dog01.jpg")).value == "keep"
    assert at.radio(key=key(dog, "dog01-grey.jpg")).value == "quarantine"
    # keep the small copy too, quarantine only the grey one
    at.radio(key=key(dog, "dog01-small.jpg")).set_value("keep")
    at.button(key=key(dog, None, "apply")).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.success and at.success[0].value.startswith("Moved 1 files"), at.success[0].value
    assert not files["dog01-grey"].exists() and (q / "dog01-grey.jpg").is_file()
    assert files["dog01"].exists() and files["dog01-small"].exists()
    assert not in_index(tmp / "index", files["dog01-grey"]) and in_index(tmp / "index", files["dog01"])
    assert "dog01.jpg" not in shown(at)
    log = next(q.glob("dedup-undo-*.json"))
    assert json.loads(log.read_text())["state"] == "moved"
    # undo: the file is back, the index has it again, the group is shown again
    at.button(key="dedup_undo").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.success[0].value.startswith('Undid "apply": restored 1 files'), at.success[0].value
    assert files["dog01-grey"].exists() and not (q / "dog01-grey.jpg").exists()
    assert in_index(tmp / "index", files["dog01-grey"])
    assert json.loads(log.read_text())["state"] == "undone"
    assert "dog01.jpg" in shown(at) and not [b for b in at.button if b.key == "dedup_undo"]
    # keep all: the group goes, and does not come back on the next run
    dog = shown(at)["dog01.jpg"]
    at.button(key=key(dog, None, "keepall")).click().run()
    assert not at.exception and at.success[0].value.startswith("Kept all 3 files")
    assert "dog01.jpg" not in shown(at)
    find_now(at)
    assert set(shown(at)) == {"coffee.png"}
    assert "2 files left out (kept in review)" in "\n".join(m.value for m in at.markdown)


def test_dismissed_group_stays_dismissed_after_reopening_and_in_the_cli(review, monkeypatch, capsys):
    from indexer import Index
    from indexer.cli import main
    from indexer.dedup import find_duplicates

    tmp, files = review
    at = find_now(open_page(tmp / "index", monkeypatch))
    at.button(key=key(shown(at)["dog01.jpg"], None, "keepall")).click().run()
    assert not at.exception and not at.error
    with Index.open(tmp / "index") as idx:
        rep = find_duplicates(idx, threshold=THRESHOLD)
        assert [Path(g.keeper.path).name for g in rep.groups] == ["coffee.png"]
        assert rep.stats["dismissed_left_out"] == 2
        again = find_duplicates(idx, threshold=THRESHOLD, include_dismissed=True)
        assert {Path(g.keeper.path).name for g in again.groups} == {"coffee.png", "dog01.jpg"}
    out = tmp / "r" / "dups"
    assert (
        main(["dedup", "--index", str(tmp / "index"), "--threshold", str(THRESHOLD), "--out", str(out)]) == 0
    )
    assert [g["keeper"]["path"] for g in json.loads(out.with_suffix(".json").read_text())["groups"]] == [
        str(files["coffee"])
    ]
    assert "2 files left out (kept in review)" in capsys.readouterr().out
    assert (
        main(
            [
                "dedup",
                "--index",
                str(tmp / "index"),
                "--threshold",
                str(THRESHOLD),
                "--out",
                str(out),
                "--include-dismissed",
            ]
        )
        == 0
    )
    assert len(json.loads(out.with_suffix(".json").read_text())["groups"]) == 2
    # a file that changes is judged again: the grey copy, made again (another sha256), comes back
    with Image.open(files["dog01"]) as im:
        ImageOps.grayscale(im).save(files["dog01-grey"], quality=80)
    with Index.open(tmp / "index") as idx:
        idx.update(progress=False, workers=0)
        rep = find_duplicates(idx, threshold=THRESHOLD)
    dog = [g for g in rep.groups if Path(g.keeper.path).name == "dog01.jpg"]
    assert [[m.path for m in g.members] for g in dog] == [[str(files["dog01-grey"])]]


def test_apply_all_exact_copies_and_a_stale_report_is_refused(review, monkeypatch):
    tmp, files = review
    q = tmp / "elsewhere" / "q"
    at = find_now(open_page(tmp / "index", monkeypatch, VGG_RETRIEVAL_UI_QUARANTINE=str(q)))
    assert at.text_input(key="dedup_quarantine").value == str(q)
    # a file changed since the report: nothing moves, one line says why
    later = files["coffee-copy"].stat().st_mtime_ns + 10**9
    os.utime(files["coffee-copy"], ns=(later, later))  # (still newer than the original: not the keeper)
    at.button(key="dedup_apply_exact").click().run()
    assert at.error and "the report is older than 1 of the files it names" in at.error[0].value
    assert files["coffee-copy"].exists() and not q.exists()
    # once the index is up to date, a new run; the bulk apply moves the byte copy only (the near
    # copies' group is left alone)
    from indexer import Index

    with Index.open(tmp / "index") as idx:
        assert "1 updated" in idx.update(progress=False, workers=0).summary()
    find_now(at)
    at.button(key="dedup_apply_exact").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not files["coffee-copy"].exists() and (q / "coffee-copy.png").is_file()
    assert files["coffee"].exists() and files["dog01-grey"].exists() and files["dog01-small"].exists()
    assert set(shown(at)) == {"dog01.jpg"}
    # another page session (a reload) still offers the undo, from the newest undo log in the quarantine
    later = find_now(open_page(tmp / "index", monkeypatch, VGG_RETRIEVAL_UI_QUARANTINE=str(q)))
    undo = [b for b in later.button if b.key == "dedup_undo"]
    assert undo and undo[0].label.startswith("Undo: apply of dedup-undo-"), [b.label for b in later.button]
    undo[0].click().run()
    assert not later.error and later.success[0].value.startswith('Undid "apply of dedup-undo-')
    assert files["coffee-copy"].exists() and in_index(tmp / "index", files["coffee-copy"])
    assert not [b for b in later.button if b.key == "dedup_undo"]
    # a quarantine inside the indexed folder is refused (the library's rule)
    at.text_input(key="dedup_quarantine").set_value(str(tmp / "photos" / "q"))
    at.button(key=key(shown(at)["dog01.jpg"], None, "apply")).click().run()
    assert at.error and "inside the indexed folder" in at.error[0].value
    assert files["dog01-grey"].exists()


def test_read_only_hides_the_actions(review, monkeypatch):
    tmp, _ = review
    at = find_now(open_page(tmp / "index", monkeypatch, VGG_RETRIEVAL_UI_READ_ONLY="1"))
    assert len(shown(at)) == 2 and not at.radio
    assert not [
        b for b in at.button if b.key and (b.key.startswith("dd_") or b.key.startswith("dedup_apply"))
    ]
    assert not [t for t in at.text_input if t.key == "dedup_quarantine"]
