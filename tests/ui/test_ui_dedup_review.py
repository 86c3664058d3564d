"""Reviewing duplicates in the web UI (Streamlit AppTest, real script runs): keep/quarantine per file,
apply, undo, "keep all" remembered in the index, bulk apply of exact copies, refusals. A real index
(tiny model) over real photos with a grey copy, a half-size copy and a byte copy; real moves."""

from __future__ import annotations

import io
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


def find_now(at, verify: bool = True) -> AppTest:
    if at.checkbox(key="dedup_verify").value != verify:
        at.checkbox(key="dedup_verify").set_value(verify).run()
    at.button(key="dedup_run").click().run()  # the run's thread is followed until it ends
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["dedup_job"] is None
    return at


LAST: dict = {}  # the page session shown() looked at last


def shown(at, kind: str = "dups") -> dict:
    """keeper file name -> group, as the page lists them (``kind``: "dups" or "similar")."""
    LAST["at"] = at
    return {Path(g.keeper.path).name: g for g in at.session_state["dedup"][kind]}


def key(g, name, what="pick") -> str:
    """The page's widget key ``what`` of group ``g`` (the file ``name``'s choice for "pick"), in the
    page session ``shown`` last looked at (its keys carry the number of the report it shows)."""
    from ui.logic import group_key

    gk = f"{LAST['at'].session_state['dedup']['gen']}_{group_key(g)}"
    if what != "pick":
        return f"dd_{what}_{gk}"
    m = next(m for m in g.files if Path(m.path).name == name)
    return f"dd_pick_{gk}_{m.id}"


def in_index(index_dir, path: Path) -> bool:
    from indexer import Index

    with Index.open(index_dir) as idx:
        return idx.store.row_by_path(str(path)) is not None


def confirm(at, g) -> str:
    """Press the group's Apply: the question it asks (nothing has moved yet); then Move."""
    LAST["at"] = at
    at.button(key=key(g, None, "apply")).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    question = [w.value for w in at.warning if w.value.startswith("Move ")]
    assert len(question) == 1, [w.value for w in at.warning]
    return question[0]


def test_quarantine_one_file_asks_first_stays_in_place_undo_and_keep_all(review, monkeypatch):
    tmp, files = review
    q = tmp / "quarantine"  # the page's default: next to the index folder
    at = find_now(open_page(tmp / "index", monkeypatch))
    assert at.text_input(key="dedup_quarantine").value == str(q)
    # strongest first: the byte copies, then the copies proven by the pixel tests
    assert list(shown(at)) == ["coffee.png", "dog01.jpg"], list(shown(at))
    dog = shown(at)["dog01.jpg"]
    assert {Path(m.path).name for m in dog.members} == {"dog01-grey.jpg", "dog01-small.jpg"}
    md = "\n".join(m.value for m in at.markdown)
    assert (
        "Byte copies · safe to quarantine" in md
        and "Copies proven by the pixel tests · safe to quarantine" in md
    )
    # a proven group: the keeper is preselected keep, the copies quarantine
    assert at.radio(key=key(dog, "dog01.jpg")).value == "keep"
    assert at.radio(key=key(dog, "dog01-grey.jpg")).value == "quarantine"
    # keep the small copy too; Apply asks first, naming what moves where, and moves nothing yet
    at.radio(key=key(dog, "dog01-small.jpg")).set_value("keep").run()
    question = confirm(at, dog)
    assert question.startswith(f"Move 1 file (dog01-grey.jpg) to {q}?"), question
    assert "dog01.jpg, dog01-small.jpg stay" in question, question
    assert files["dog01-grey"].exists() and not q.exists()
    # Cancel: nothing moves, the group is as it was
    at.button(key=key(dog, None, "no")).click().run()
    assert not [w for w in at.warning if w.value.startswith("Move ")] and files["dog01-grey"].exists()
    confirm(at, dog)
    at.button(key=key(dog, None, "yes")).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    said = [m.value for m in at.success if m.value.startswith("Moved 1 files")]
    assert said, [m.value for m in at.success]
    assert not files["dog01-grey"].exists() and (q / "dog01-grey.jpg").is_file()
    assert files["dog01"].exists() and files["dog01-small"].exists()
    assert not in_index(tmp / "index", files["dog01-grey"]) and in_index(tmp / "index", files["dog01"])
    # the applied group stays in its place on the page (saying what happened), without its buttons
    assert list(shown(at)) == ["coffee.png", "dog01.jpg"]
    assert not [b for b in at.button if b.key in (key(dog, None, "apply"), key(dog, None, "yes"))]
    log = next(q.glob("dedup-undo-*.json"))
    assert json.loads(log.read_text())["state"] == "moved"
    # undo: the file is back, the index has it again, the group can be acted on again
    at.button(key="dedup_undo").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [m.value for m in at.success if m.value.startswith('Undid "apply": restored 1 files')]
    assert files["dog01-grey"].exists() and not (q / "dog01-grey.jpg").exists()
    assert in_index(tmp / "index", files["dog01-grey"])
    assert json.loads(log.read_text())["state"] == "undone"
    assert [b for b in at.button if b.key == key(dog, None, "apply")]
    assert at.button(key="dedup_undo").disabled
    # keep all: the group says so, and does not come back on the next run
    at.button(key=key(dog, None, "keepall")).click().run()
    assert not at.exception and [m.value for m in at.success if m.value.startswith("Kept all 3 files")]
    find_now(at)
    assert list(shown(at)) == ["coffee.png"]
    assert "2 files left out (kept in review)" in "\n".join(m.value for m in at.markdown)


def test_dismissed_group_stays_dismissed_after_reopening_and_in_the_cli(review, monkeypatch, capsys):
    from indexer import Index
    from indexer.cli import main
    from indexer.dedup import find_duplicates

    tmp, files = review
    at = find_now(open_page(tmp / "index", monkeypatch))
    at.button(key=key(shown(at)["dog01.jpg"], None, "keepall")).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
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


def test_apply_all_byte_copies_asks_and_a_stale_report_is_refused(review, monkeypatch):
    tmp, files = review
    q = tmp / "elsewhere" / "q"
    at = find_now(open_page(tmp / "index", monkeypatch, VGG_RETRIEVAL_UI_QUARANTINE=str(q)))
    assert at.text_input(key="dedup_quarantine").value == str(q)
    # a file changed since the report: nothing moves, one line says why
    later = files["coffee-copy"].stat().st_mtime_ns + 10**9
    os.utime(files["coffee-copy"], ns=(later, later))  # (still newer than the original: not the keeper)
    at.button(key="dedup_apply_exact").click().run()
    question = [w.value for w in at.warning if w.value.startswith("Move ")]
    assert question == [
        f"Move 1 file (coffee-copy.png) to {q}? coffee.png stays. Nothing is deleted; Undo moves them back."
    ], question
    at.button(key="dd_yes_exact").click().run()
    assert at.error and "the report is older than 1 of the files it names" in at.error[0].value
    assert files["coffee-copy"].exists() and not q.exists()
    # once the index is up to date, a new run; the bulk apply moves the byte copy only (the near
    # copies' group is left alone)
    from indexer import Index

    with Index.open(tmp / "index") as idx:
        assert "1 updated" in idx.update(progress=False, workers=0).summary()
    find_now(at)
    at.button(key="dedup_apply_exact").click().run()
    at.button(key="dd_yes_exact").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not files["coffee-copy"].exists() and (q / "coffee-copy.png").is_file()
    assert files["coffee"].exists() and files["dog01-grey"].exists() and files["dog01-small"].exists()
    assert at.session_state["dedup"]["done"] and at.button(key="dedup_apply_exact").disabled
    # another page session (a reload) still offers the undo, from the newest undo log in the quarantine
    later = find_now(open_page(tmp / "index", monkeypatch, VGG_RETRIEVAL_UI_QUARANTINE=str(q)))
    undo = later.button(key="dedup_undo")
    assert not undo.disabled and undo.label.startswith("Undo: apply of dedup-undo-"), undo.label
    undo.click().run()
    assert not later.error and [
        m.value for m in later.success if m.value.startswith('Undid "apply of dedup-undo-')
    ]
    assert files["coffee-copy"].exists() and in_index(tmp / "index", files["coffee-copy"])
    assert later.button(key="dedup_undo").disabled
    # a quarantine inside the indexed folder is refused (the library's rule), in the group
    at.text_input(key="dedup_quarantine").set_value(str(tmp / "photos" / "q")).run()
    confirm(at, shown(at)["dog01.jpg"])
    at.button(key=key(shown(at)["dog01.jpg"], None, "yes")).click().run()
    assert at.error and "inside the indexed folder" in at.error[0].value
    assert files["dog01-grey"].exists()


def test_read_only_hides_the_actions(review, monkeypatch):
    tmp, _ = review
    at = find_now(open_page(tmp / "index", monkeypatch, VGG_RETRIEVAL_UI_READ_ONLY="1"))
    assert len(shown(at)) == 2 and not [r for r in at.radio if r.key and r.key.startswith("dd_")]
    assert not [t for t in at.text_input if t.key == "dedup_path"]  # no paths on the server in read-only
    acts = ("dd_apply", "dd_keepall", "dd_yes", "dedup_apply", "dedup_undo")
    assert not [b for b in at.button if b.key and b.key.startswith(acts)]
    # comparing is not acting: Compare opens the keeper and the copy, aligned, with their differences
    dog = shown(at)["dog01.jpg"]
    grey = next(m for m in dog.members if Path(m.path).name == "dog01-grey.jpg")
    at.button(key=f"dd_cmp_{key(dog, None, 'x')[5:]}_{grey.id}").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    said = "\n".join(m.value for m in at.markdown)
    assert "dog01-grey.jpg" in said and "aligned by" in said and "differs on" in said, said
    assert not [t for t in at.text_input if t.key == "dedup_quarantine"]


def radios_of(at, g) -> dict:
    """file name -> the page's keep/quarantine choice, for every file of ``g``."""
    LAST["at"] = at
    return {Path(m.path).name: at.radio(key=key(g, Path(m.path).name)).value for m in g.files}


def saved(at, path: Path, edit=None) -> Path:
    """The page's report as JSON at ``path`` (``edit(dict)`` changes it first: a report is data)."""
    d = at.session_state["dedup"]["report"].as_dict()
    if edit:
        edit(d)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d))
    return path


def open_path(at, text) -> AppTest:
    at.text_input(key="dedup_path").set_value(str(text))
    at.button(key="dedup_open_path").click().run()
    assert not at.exception, at.exception
    return at


def test_nothing_is_preselected_unless_the_report_proves_the_group(review, monkeypatch):
    tmp, files = review
    at = find_now(open_page(tmp / "index", monkeypatch), verify=False)
    # descriptors only (the tiny model finds everything alike): one big group, not proven, all kept
    groups = at.session_state["dedup"]["dups"]
    assert groups and all(
        not g.is_proven for g in groups if not all(m.sha256 == g.keeper.sha256 for m in g.members)
    )
    for g in groups:
        assert set(radios_of(at, g).values()) == {"keep"}, radios_of(at, g)
        assert at.button(key=key(g, None, "apply")).disabled  # nothing marked: nothing to apply
    md = "\n".join(m.value for m in at.markdown)
    assert "Not proven copies · review before moving anything" in md and "safe to quarantine" not in md
    # a report that says "proven" without the evidence for a member is not believed
    at = find_now(at, verify=True)

    def strip(d):
        for g in d["groups"]:
            for m in g["members"]:
                m["evidence"] = None

    open_path(at, saved(at, tmp / "reports" / "claims.json", strip))
    assert not at.error, [e.value for e in at.error]
    dog, coffee = shown(at)["dog01.jpg"], shown(at)["coffee.png"]
    assert dog.proven is True and set(radios_of(at, dog).values()) == {"keep"}
    assert radios_of(at, coffee) == {"coffee.png": "keep", "coffee-copy.png": "quarantine"}  # bytes prove it
    assert list(shown(at)) == ["coffee.png", "dog01.jpg"]


def test_groups_come_strongest_first_and_similar_shots_apart():
    from indexer.dedup import Group, Member
    from ui.logic import PROOF_LABEL, is_safe, ordered, proof

    def m(n, sha="x", score=1.0, capture=None, evidence=True):
        ev = {"capture": capture, "inliers": 50} if evidence else None
        return Member(n, f"/p/{n}.jpg", sha, 10, 10, 100, 0, score, "", None if not evidence else 50, ev)

    k = m(0, "k")
    pixels_low = Group(m(1, "a"), [m(11, "b", 0.80)], proven=True)
    pixels_high = Group(m(2, "a"), [m(12, "b", 0.95)], proven=True)
    capture = Group(m(3, "a"), [m(13, "b", 0.70, "same")], proven=True)
    byte = Group(m(4, "s"), [m(14, "s")], proven=True)
    differs = Group(m(5, "a"), [m(15, "b", 0.99, "differs")], proven=True)  # a claim its evidence denies
    unproven = Group(m(6, "a"), [m(16, "b", 0.99, evidence=False)], proven=False)
    old = Group(m(7, "a"), [m(17, "a")], proven=None)  # a version 1 report: byte copies are proven
    similar = Group(k, [m(18, "b", 0.9)], kind="similar")
    groups = [similar, unproven, pixels_low, differs, capture, old, pixels_high, byte]
    got = ordered(groups)
    assert [id(g) for g in got[:2]] == [id(byte), id(old)]  # byte copies (sorted by keeper path)
    assert [id(g) for g in got[2:5]] == [id(capture), id(pixels_high), id(pixels_low)]
    assert {id(g) for g in got[5:]} == {id(differs), id(unproven)}  # not proven: last
    assert ordered(groups, similar=True) == [similar]
    assert [is_safe(g) for g in (byte, old, capture, pixels_low, differs, unproven, similar)] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert "safe to quarantine" not in PROOF_LABEL[proof(differs)] + PROOF_LABEL[proof(similar)]


def test_reports_saved_elsewhere_open_and_bad_ones_are_refused_in_one_line(review, monkeypatch):
    from indexer.cli import main

    tmp, files = review
    out = tmp / "elsewhere" / "dups"
    assert main(["dedup", "--index", str(tmp / "index"), "--out", str(out)]) == 0
    at = open_page(tmp / "index", monkeypatch)
    for text in (
        out,
        out.with_suffix(".html"),
        out.with_suffix(".json"),
    ):  # as --out named it, or a file of it
        open_path(at, text)
        assert not at.error and list(shown(at)) == ["coffee.png", "dog01.jpg"], [e.value for e in at.error]
    refusals = {
        tmp / "nothing-here.json": "no report there",
        files["dog01"]: "no report there",
    }
    (tmp / "other.json").write_text(json.dumps({"format": "something else"}))
    refusals[tmp / "other.json"] = "is not a dedup report"
    report = json.loads(out.with_suffix(".json").read_text())
    outside = json.loads(json.dumps(report))
    outside["groups"][0]["members"][0]["path"] = "/etc/hosts"
    (tmp / "outside.json").write_text(json.dumps(outside))
    refusals[tmp / "outside.json"] = "names /etc/hosts, outside the indexed folders"
    other_index = dict(report, index_dir=str(tmp / "another-index"))
    (tmp / "another.json").write_text(json.dumps(other_index))
    refusals[tmp / "another.json"] = "is a report of another index"
    for path, why in refusals.items():
        at = open_page(tmp / "index", monkeypatch)
        open_path(at, path)
        assert len(at.error) == 1 and why in at.error[0].value, (path, [e.value for e in at.error])
        assert "\n" not in at.error[0].value and at.session_state["dedup"] is None
    # an uploaded report is checked the same way
    at = open_page(tmp / "index", monkeypatch)
    at.file_uploader(key="dedup_upload").upload(
        "outside.json", json.dumps(outside).encode(), "application/json"
    )
    at.run()
    assert at.error and "names /etc/hosts, outside the indexed folders" in at.error[0].value


def test_similar_shots_offer_a_pick_never_preselected_never_red(review, monkeypatch):
    tmp, files = review
    at = find_now(open_page(tmp / "index", monkeypatch))

    def as_similar(d):
        for g in d["groups"]:
            if g["kind"] == "duplicates" and g["keeper"]["path"].endswith("dog01.jpg"):
                g["kind"], g["proven"] = "similar", False
        d["groups"] = [g for g in d["groups"] if g["kind"] == "duplicates" or "dog01-grey" in json.dumps(g)]

    open_path(at, saved(at, tmp / "reports" / "similar.json", as_similar))
    assert list(shown(at)) == ["coffee.png"] and list(shown(at, "similar")) == ["dog01.jpg"]
    at.radio(key="dedup_view").set_value("similar").run()
    g = shown(at, "similar")["dog01.jpg"]
    best = at.radio(key=key(g, None, "best"))
    assert best.value is None  # nothing chosen for the user
    assert not [r for r in at.radio if r.key and r.key.startswith("dd_pick_")]
    apply = at.button(key=key(g, None, "apply"))
    assert apply.disabled and apply.proto.type != "primary"
    assert "Similar shots (other captures) · pick the one to keep" in "\n".join(m.value for m in at.markdown)
    small = next(m for m in g.files if Path(m.path).name == "dog01-small.jpg")
    best.set_value(small.id).run()
    apply = at.button(key=key(g, None, "apply"))
    assert not apply.disabled and apply.proto.type != "primary"
    question = confirm(at, g)
    assert question.startswith("Move 2 files (dog01.jpg, dog01-grey.jpg) to "), question
    assert at.button(key=key(g, None, "yes")).proto.type != "primary"
    at.button(key=key(g, None, "yes")).click().run()
    assert not at.error, [e.value for e in at.error]
    assert files["dog01-small"].exists() and not files["dog01"].exists() and not files["dog01-grey"].exists()


def test_the_similarity_slider_shows_the_reports_bounds_and_filters_by_them(review, monkeypatch):
    tmp, _ = review
    at = find_now(open_page(tmp / "index", monkeypatch))
    state = at.session_state["dedup"]
    scores = [m.score for g in state["dups"] + state["similar"] for m in g.members]
    slider = next(s for s in at.slider if s.key and s.key.startswith("dedup_show_"))
    assert slider.value == pytest.approx(min(scores)) and slider.min == pytest.approx(min(scores))
    assert f"this report: {min(scores):.3f} - {max(scores):.3f}" in slider.label
    dog = shown(at)["dog01.jpg"]
    slider.set_value(min(1.0, dog.min_score + 0.0005)).run()
    shown_now = [b.key for b in at.button if b.key and b.key.startswith("dd_apply_")]
    assert (
        key(dog, None, "apply") not in shown_now and key(shown(at)["coffee.png"], None, "apply") in shown_now
    )


def test_a_dedup_run_reports_progress_and_stops_when_cancelled(review):
    from ui.logic import DedupJob

    tmp, _ = review
    job = DedupJob(tmp / "index")
    job.cancel()
    assert job.start().wait(120) and job.report is None and job.error is None and job.cancelled
    job = DedupJob(tmp / "index")
    seen = []
    real = job._progress

    def spy(stage, done, total):
        real(stage, done, total)
        seen.append(job.text())

    job._progress = spy
    assert job.start().wait(240) and job.error is None and job.report is not None
    assert any(t.startswith("verifying pairs: ") and " / " in t and "photos" in t for t in seen), seen
    assert {Path(g.keeper.path).name for g in job.report.duplicate_groups} == {"coffee.png", "dog01.jpg"}


def test_the_compare_view_aligns_a_copy_and_shows_another_photo_differs(review):
    from ui.logic import compare_images

    _, files = review
    with (
        Image.open(files["dog01"]) as a,
        Image.open(files["dog01-small"]) as b,
        Image.open(files["cat01"]) as c,
    ):
        copy = compare_images(a, b)
        mirrored = compare_images(a, ImageOps.mirror(b))
        other = compare_images(a, c)
    assert copy.aligned.startswith("aligned by") and copy.differ < 0.02 and copy.overlap > 0.95, copy.aligned
    assert "(mirrored)" in mirrored.aligned and mirrored.differ < 0.05
    assert other.differ > 0.2, (other.aligned, other.differ)
    for c in (copy, other):
        assert all(Image.open(io.BytesIO(d)).size == c.size for d in (c.keeper, c.member, c.diff))
