"""Streamlit AppTest tests of every page of the web UI: a real index (tiny model, real photos), real
Streamlit script runs, no mocks. The browser end-to-end test is in test_ui_browser.py."""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, copy_photos
from streamlit.testing.v1 import AppTest  # the web UI's tests need: pip install streamlit

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "ui" / "app.py")
ANIMALS = ["pixabay/cat01.jpg", "pixabay/dog01.jpg", "skimage/chelsea.png"]
THINGS = ["skimage/coffee.png", "skimage/rocket.jpg", "sklearn/china.jpg"]


@pytest.fixture(scope="module")
def ui_index(tiny_model, module_tmp):
    """An index over real photos in two labelled folders, plus one unreadable file."""
    from indexer import Index

    spec, _, model_dir = tiny_model
    base = module_tmp("ui")
    photos = base / "photos"
    copy_photos(photos / "animals", ANIMALS, flat=True)
    copy_photos(photos / "things", THINGS, flat=True)
    (photos / "things" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with Index.create(base / "index", spec, model_dir=model_dir) as idx:
        idx.update([photos], workers=0, progress=False)
        assert idx.count == 6
    return base / "index", photos


def app(index_dir, monkeypatch, **env) -> AppTest:
    monkeypatch.setenv("VGG_RETRIEVAL_INDEX", str(index_dir))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at) -> str:
    return "\n".join(
        str(e.value)
        for kind in ("markdown", "caption", "info", "warning", "error", "success", "code")
        for e in getattr(at, kind)
    )


CAPTION = re.compile(
    r'^<div class="vr-cap" title="([^"]*)" data-label="[^"]*"><b>([^<]+)</b> · <span class="vr-name" title="([^"]*)"'
)


def result_captions(at) -> list[str]:
    """Each result card's caption as ``**score** · name\\nlabel · WxH · size...`` (its tooltip's details)."""
    out = []
    for m in at.markdown:
        hit = CAPTION.match(m.value)
        if hit:
            details, score, name = (html.unescape(g) for g in hit.groups())
            out.append(f"**{score}** · {name}\n{details}")
    return out


def upload(
    at, path: Path, name: str | None = None, data: bytes | None = None, key: str = "upload"
) -> AppTest:
    at.file_uploader(key=key).upload(
        name or path.name, path.read_bytes() if data is None else data, "image/jpeg"
    )
    at.run()
    assert not at.exception, at.exception
    return at


# --- search -----------------------------------------------------------------------------------
def test_search_upload_gives_results_timing_and_classification_note(ui_index, monkeypatch):
    index_dir, photos = ui_index
    at = app(index_dir, monkeypatch)
    assert "Upload an image or paste a path to search 6 indexed images" in texts(at)
    upload(at, photos / "animals" / "cat01.jpg", name="my-upload.jpg")
    caps = result_captions(at)
    # the uploaded file is in the index: said next to the query, not returned as its own first result
    assert len(caps) == 5 and not any("cat01.jpg" in c for c in caps), caps
    assert "**This image** is in the index: cat01.jpg" in texts(at)
    assert "Query time" in texts(at) and "model" in texts(at)
    # the index's model has no classifier, nor folder classes (2 folders of 3): the strip says so
    assert "**Classes:** none\\: the model has no classifier head (no ImageNet classes)" in texts(at)
    assert "and the index has no folder classes" in texts(at)
    # the upload is kept by its sha256 in the index's cache folder: its URL reloads it
    sha = hashlib.sha256((photos / "animals" / "cat01.jpg").read_bytes()).hexdigest()
    assert at.query_params["upload"] in (sha, [sha])
    assert (index_dir / "cache" / "uploads" / sha).read_bytes() == (
        photos / "animals" / "cat01.jpg"
    ).read_bytes()
    again = AppTest.from_file(APP, default_timeout=60)
    again.query_params.update({"upload": sha})
    again.run()
    assert not again.exception and not again.error, texts(again)
    assert "**Query:** my-upload.jpg" in texts(again) and result_captions(again) == caps
    # uploads are not written anywhere near the indexed folders
    assert sorted(p.name for p in (photos / "animals").iterdir()) == sorted(Path(n).name for n in ANIMALS)


def test_filters_threshold_and_pagination_change_results(ui_index, monkeypatch):
    index_dir, photos = ui_index
    at = upload(app(index_dir, monkeypatch), photos / "things" / "coffee.png")
    assert len(result_captions(at)) == 5
    at.multiselect(key="labels").set_value(["animals"]).run()
    caps = result_captions(at)
    assert len(caps) == 3 and all("\nanimals ·" in c for c in caps)
    at.multiselect(key="labels").set_value([]).run()
    at.slider(key="threshold").set_value(0.999).run()
    assert not result_captions(at) and "**This image** is in the index: coffee.png" in texts(at)
    assert at.query_params["min"] == ["1.00"] or at.query_params["min"] == "1.00"
    at.slider(key="threshold").set_value(0.0).run()
    assert len(result_captions(at)) == 5


def test_pages_of_results(tiny_model, make_index, tmp_path, monkeypatch):
    folder = tmp_path / "many"
    names = ["pixabay/" + p.name for p in sorted((SAMPLES / "pixabay").glob("*.jpg"))[:14]]
    copy_photos(folder, names, flat=True)
    idx = make_index(tmp_path / "index")
    idx.update([folder], workers=0, progress=False)
    at = upload(app(tmp_path / "index", monkeypatch), folder / Path(names[3]).name)
    at.selectbox(key="page_size").select(12).run()
    first = result_captions(at)
    assert len(first) == 12  # 13 others (the query itself is not a result)
    at.button(key="page_next").click().run()
    second = result_captions(at)
    assert len(second) == 1 and second[0] not in first
    assert at.query_params["page"] in ("2", ["2"]) and at.query_params["per"] in ("12", ["12"])
    assert [b for b in at.button if b.key == "page_next"][0].disabled
    at.button(key="page_prev").click().run()
    assert result_captions(at) == first


def test_more_like_this_open_and_path_query(ui_index, monkeypatch):
    from indexer import Index

    index_dir, photos = ui_index
    with Index.open(index_dir) as idx:
        dog = idx.store.row_by_path(str((photos / "animals" / "dog01.jpg").resolve()))
    at = upload(app(index_dir, monkeypatch), photos / "animals" / "cat01.jpg")
    at.button(key=f"more_{dog.id}").click().run()
    assert not at.exception
    assert "**Query:** dog01.jpg" in texts(at) and "**This image** is in the index: dog01.jpg" in texts(at)
    uploaders = list(at.get("file_uploader"))  # a new, empty uploader: the old file is no longer shown
    assert [u.key for u in uploaders] == ["upload1"] and not uploaders[0].value, uploaders
    assert at.query_params["id"] in (str(dog.id), [str(dog.id)])
    assert len(result_captions(at)) == 5
    # open a result larger (the lightbox): its metadata and the path to copy
    at.button(key=f"own_{dog.id}").click().run()
    assert any(c.value == dog.path for c in at.code)
    assert dog.sha256 in at.table[0].value["value"].tolist()
    assert at.query_params["open"] in (str(dog.id), [str(dog.id)])
    # paste the path of an indexed image, then crop a region of it
    at.text_input(key="path").set_value(str(photos / "things" / "rocket.jpg")).run()
    assert "**This image** is in the index: rocket.jpg" in texts(at) and len(result_captions(at)) == 5
    assert "open" not in at.query_params
    at.checkbox(key="crop_on").check().run()
    at.slider(key="crop_x").set_value((10, 60)).run()
    assert not at.exception and not at.error
    assert "**Query:** rocket.jpg (cropped)" in texts(at)
    assert len(result_captions(at)) == 6  # a crop is not the image itself: every image is a result


def test_a_url_restores_query_filters_page_and_open_result(ui_index, monkeypatch):
    """A shared link (st.query_params on the first run): the same query, filter, page size and the
    lightbox on the same result; a link to a row that is not in the index is a message."""
    from indexer import Index

    index_dir, photos = ui_index
    with Index.open(index_dir) as idx:
        cat = idx.store.row_by_path(str((photos / "animals" / "cat01.jpg").resolve()))
        dog = idx.store.row_by_path(str((photos / "animals" / "dog01.jpg").resolve()))
    monkeypatch.setenv("VGG_RETRIEVAL_INDEX", str(index_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"id": str(cat.id), "label": "animals", "per": "12", "open": str(dog.id)})
    at.run()
    assert not at.exception and not at.error, texts(at)
    assert "**Query:** cat01.jpg" in texts(at)
    caps = result_captions(at)
    assert len(caps) == 2 and all("\nanimals ·" in c for c in caps), caps
    assert at.multiselect(key="labels").value == ["animals"] and at.selectbox(key="page_size").value == 12
    assert any(c.value == dog.path for c in at.code)  # the lightbox shows the open result
    assert at.query_params["open"] in (str(dog.id), [str(dog.id)])  # nothing rewritten on a plain rerun
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"id": "999999"})
    at.run()
    assert not at.exception and at.error and "image #999999 is not in the index" in at.error[0].value


def scored_names(at) -> list[tuple[str, str]]:
    """(score as shown, file name) of each result card, in page order."""
    return [(c.split("**")[1], c.split(" · ")[1].split()[0]) for c in result_captions(at)]


def test_query_expansion_option_is_what_the_search_uses_and_lives_in_the_url(ui_index, monkeypatch):
    """The Search options' K is passed to the index's search: the page shows exactly the index's own
    results for that K (the indexed query itself aside), different for K = 0, 1 and 3."""
    from indexer import Index
    from indexer.search.query_expansion import DEFAULT_QE

    index_dir, photos = ui_index
    cat_path = photos / "animals" / "cat01.jpg"
    with Index.open(index_dir) as idx:
        cat = idx.store.row_by_path(str(cat_path.resolve()))
        vec = idx.vector(cat.id)[None, :]
        expected = {
            k: [
                (f"{h.score:.3f}", Path(h.path).name)
                for h in idx.search_vectors(vec, 6, qe=k)[0]
                if h.id != cat.id
            ]
            for k in (0, 1, 3)
        }
    assert expected[0] != expected[3] and expected[0] != expected[1]  # QE changes the scores here
    at = app(index_dir, monkeypatch)
    at.text_input(key="path").set_value(str(cat_path)).run()
    assert at.checkbox(key="rotations").value is True and "rot" not in at.query_params  # on by default
    at.checkbox(key="rotations").uncheck().run()  # the upright query alone, as search_vectors has it
    assert at.query_params["rot"] in ("0", ["0"])
    assert at.number_input(key="qe").value == DEFAULT_QE and "qe" not in at.query_params  # the default
    assert scored_names(at) == expected[DEFAULT_QE]
    for k in sorted({0, 1, 3} - {DEFAULT_QE}):
        at.number_input(key="qe").set_value(k).run()
        assert not at.exception
        assert scored_names(at) == expected[k], k
        assert at.query_params["qe"] in (str(k), [str(k)])
    # a link with the options opens with them
    monkeypatch.setenv("VGG_RETRIEVAL_INDEX", str(index_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"id": str(cat.id), "qe": "0", "rot": "0"})
    at.run()
    assert not at.exception and not at.error, texts(at)
    assert at.number_input(key="qe").value == 0 and at.checkbox(key="rotations").value is False


def test_rotation_option_finds_a_sideways_copy_first(vgg16_model, tmp_path, monkeypatch):
    """An indexed photo stored turned by 90 degrees (no EXIF orientation) comes first, at the same
    image's score less the turn margin, when the upright original is searched with "Also search
    rotated" (on by default); unticked, the upright query ranks it lower."""
    from PIL import Image

    from indexer.search.rotation import TURN_MARGIN

    folder = tmp_path / "photos"
    copy_photos(
        folder,
        [
            "pixabay/cat01.jpg",
            "pixabay/horse01.jpg",
            "skimage/coffee.png",
            "sklearn/china.jpg",
            "skimage/chelsea.png",
        ],
        flat=True,
    )
    with Image.open(SAMPLES / "pixabay" / "dog01.jpg") as im:
        im.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(folder / "dog-sideways.png")
    from indexer import Index

    spec, _, model_dir = vgg16_model  # real descriptors: unrelated photos score far below a copy
    with Index.create(tmp_path / "index", spec, model_dir=model_dir) as idx:
        idx.update([folder], workers=0, progress=False)
    at = upload(app(tmp_path / "index", monkeypatch), SAMPLES / "pixabay" / "dog01.jpg")
    assert not at.exception and not at.error, texts(at)
    turned = scored_names(at)
    assert turned[0][1] == "dog-sideways.png" and float(turned[0][0]) >= 0.999 - TURN_MARGIN, turned
    assert "rot" not in at.query_params and "rotations" in texts(at)  # the default; its time is shown
    at.checkbox(key="rotations").uncheck().run()
    assert not at.exception and not at.error, texts(at)
    upright = dict((name, float(score)) for score, name in scored_names(at))
    assert len(upright) == 6 and at.query_params["rot"] in ("0", ["0"])
    assert upright["dog-sideways.png"] < float(turned[0][0]), (turned, upright)
    assert all(float(s) >= upright[n] - 1e-3 for s, n in turned)  # each image keeps its best view


def test_bad_inputs_are_messages_not_tracebacks(ui_index, monkeypatch, tmp_path):
    index_dir, photos = ui_index
    at = app(index_dir, monkeypatch)
    upload(at, photos / "things" / "broken.jpg")
    assert at.error and "cannot use broken.jpg" in at.error[0].value
    assert not result_captions(at)
    upload(at, photos / "animals" / "cat01.jpg", name="notes.jpg", data=b"hello, not an image")
    assert at.error and "notes.jpg" in at.error[0].value
    # a path that is not a row of the index is refused, even when the file exists and is an image
    outside = tmp_path / "outside.jpg"
    shutil.copy2(photos / "animals" / "cat01.jpg", outside)
    at.file_uploader(key="upload").clear()
    at.text_input(key="path").set_value(str(outside)).run()
    assert at.error and "is not an image of this index" in at.error[0].value
    at.text_input(key="path").set_value("/etc/passwd").run()
    assert at.error and "is not an image of this index" in at.error[0].value
    # an empty crop box
    at.text_input(key="path").set_value(str(photos / "animals" / "cat01.jpg")).run()
    at.checkbox(key="crop_on").check().run()
    at.slider(key="crop_x").set_value((50, 50)).run()
    assert at.error and "crop box" in at.error[0].value
    assert not at.exception


def test_upload_caps_bytes_and_pixels(ui_index, monkeypatch):
    index_dir, photos = ui_index
    at = app(index_dir, monkeypatch, VGG_RETRIEVAL_UI_MAX_UPLOAD_MB="0.01")
    upload(at, photos / "animals" / "dog01.jpg")  # ~110 KB
    assert at.error and "uploads are limited to" in at.error[0].value
    at = app(index_dir, monkeypatch, VGG_RETRIEVAL_UI_MAX_UPLOAD_MB="20", VGG_RETRIEVAL_UI_MAX_PIXELS="10000")
    upload(at, photos / "animals" / "dog01.jpg")
    assert at.error and "too large" in at.error[0].value


def test_missing_index_is_a_message(tmp_path, monkeypatch):
    at = app(tmp_path / "nothing", monkeypatch)
    assert at.error and "no index at" in at.error[0].value


# --- classification ---------------------------------------------------------------------------
def test_classification_chart_lights_up_with_class_scores():
    """The same component the search page calls, given the top-5 of real logits over class names."""
    from retrieval.classes import top_classes  # what Service.classify gives the page

    names = ["daisy", "dandelion", "rose", "sunflower", "tulip", "other"]
    top = top_classes(np.array([0.1, 3.0, 0.5, 2.0, -1.0, 0.0]), names, 5)[0]
    assert [c for c, _ in top] == ["dandelion", "sunflower", "rose", "daisy", "other"]
    assert abs(sum(p for _, p in top_classes(np.zeros(6), names, 6)[0]) - 1) < 1e-9

    def page(top):
        from ui.widgets.components import classification  # a building block, tested alone

        classification("Classes from the model", top, "")

    at = AppTest.from_function(page, args=(top,), default_timeout=30)
    at.run()
    assert not at.exception
    assert not at.info
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")
    assert any("dandelion 6" in m.value for m in at.markdown)


def test_classification_note_for_named_classes_without_logits(tiny_model, tmp_path, monkeypatch, photos):
    """A spec with class names but a model without class scores: a note, and search still works."""
    from indexer import Index

    spec, _, model_dir = tiny_model
    named = spec.replace(class_names=("ant", "bee"))
    with Index.create(tmp_path / "index", named, model_dir=model_dir) as idx:
        idx.update([photos], workers=0, progress=False)
    at = upload(app(tmp_path / "index", monkeypatch), photos / "pixabay" / "cat01.jpg")
    assert "names 2 classes but exposes no class scores" in texts(at)
    assert "**This image** is in the index: cat01.jpg" in texts(at) and result_captions(at)


def test_classification_of_the_query_with_a_real_classifier_head(tmp_path, monkeypatch, photos):
    """An index whose model carries a classifier: the query strip names its top classes, as text."""
    from conftest import tiny_net

    from indexer import Index

    classes = ["ant", "bee", "cat", "dog", "eel", "fox"]
    spec, net = tiny_net(classes, size=32)
    with Index.create(tmp_path / "index", spec, net) as idx:
        idx.update([photos], workers=0, progress=False)
    at = upload(app(tmp_path / "index", monkeypatch), photos / "pixabay" / "cat01.jpg")
    assert not at.exception and "no classifier" not in texts(at)
    line = next(m.value for m in at.markdown if m.value.startswith("**Model classes:**"))
    assert line.count("%") == 3 and any(c in line for c in classes), line
    assert "**This image** is in the index: cat01.jpg" in texts(at) and result_captions(at)


def test_folder_labels_the_photos_do_not_predict_are_explained_not_asked_for(
    tmp_path, monkeypatch, tiny_model
):
    """Folders with enough photos whose labels were refused (the photos do not predict them): the
    query strip and the Index page give the refusal's numbers, not "they need 2+ folders"."""
    import shutil

    from conftest import DATA

    from indexer import Index
    from indexer.classify import index_classes as index_classifier

    photos = tmp_path / "photos"
    for label in ("daisy", "rose"):
        (photos / label).mkdir(parents=True)
        for src in sorted((DATA / "photos" / "flowers5" / label).iterdir())[: index_classifier.MIN_PER_CLASS]:
            shutil.copy2(src, photos / label / src.name)
    spec, _, model_dir = tiny_model  # no classifier head: the strip says why there are no classes
    monkeypatch.setattr(index_classifier, "MIN_SKILL", 1.01)  # no labels pass: the words, whatever the model
    with Index.create(tmp_path / "index", spec, model_dir=model_dir) as idx:
        idx.update([photos], workers=0, progress=False)
        assert index_classifier.auto_fit(idx).classifier is None
        assert index_classifier.refusal(idx).startswith("the photos do not predict their 2 labels")
    at = upload(app(tmp_path / "index", monkeypatch), next((photos / "rose").iterdir()))
    assert not at.exception
    strip = texts(at)
    assert "and the index has no folder classes (the photos do not predict their 2 labels" in strip
    assert "they need 2+ folders" not in strip
    at.switch_page("pages/index.py").run()
    assert "**Folder classes:** none (the photos do not predict their 2 labels" in texts(at)


def test_query_classes_from_the_model_and_from_the_folders_both_labelled(tmp_path, monkeypatch):
    """An index with a model head and a classifier learnt from its folders: two labelled lines, the
    same words as the Index page's."""
    import shutil

    from conftest import DATA, tiny_net

    from indexer import Index
    from indexer.classify import index_classes as index_classifier

    photos = tmp_path / "photos"
    for label in ("daisy", "rose"):
        (photos / label).mkdir(parents=True)
        for src in sorted((DATA / "photos" / "flowers5" / label).iterdir())[: index_classifier.MIN_PER_CLASS]:
            shutil.copy2(src, photos / label / src.name)
    spec, net = tiny_net(["ant", "bee", "cat", "dog", "eel", "fox"], size=32)
    # a tiny random model tells daisies from roses barely better than chance: take its labels anyway
    monkeypatch.setattr(index_classifier, "MIN_SKILL", float("-inf"))
    with Index.create(tmp_path / "index", spec, net) as idx:
        idx.update([photos], workers=0, progress=False)
        assert index_classifier.auto_fit(idx).classifier is not None
    at = upload(app(tmp_path / "index", monkeypatch), next((photos / "rose").iterdir()))
    assert not at.exception
    lines = [m.value for m in at.markdown if m.value.startswith("**") and "classes:**" in m.value]
    assert [v.split(":**")[0] for v in lines] == ["**Model classes", "**Folder classes"], lines
    assert "rose" in lines[1] or "none of these" in lines[1], lines
    at.switch_page("pages/index.py").run()
    facts = texts(at)
    assert "**Folder classes:** 2 (learnt from the index's 2 folders" in facts and "daisy, rose" in facts
    assert "**Model classes:** 6 (the model's own head)" in facts


# --- index page -------------------------------------------------------------------------------
def test_index_page_status_errors_and_indexing_with_progress(tiny_model, make_index, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    copy_photos(folder, ANIMALS, flat=True)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    idx = make_index(tmp_path / "index")
    idx.update([folder], workers=0, progress=False)
    at = app(tmp_path / "index", monkeypatch)
    at.switch_page("pages/index.py").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "3" and metrics["Files with errors"] == "1"
    assert metrics["Last update"] != "never" and metrics["Size on disk"].endswith("MB")
    facts = texts(at)  # lines that wrap on a phone, the model in words (its hashes in an expander)
    assert "**Model:** VGG11, GEM pooling, 64 px input, 512-d descriptors" in facts, facts
    assert "**Engine:** openvino" in facts and "IndexIDMap2(IndexFlatIP)" in facts
    assert "vgg11/gem@64/buckets" in facts  # spec.describe(), for comparing indexes
    assert "**Folder classes:** none" in facts and "**ImageNet classes:** none" in facts
    assert f"`{(folder / 'broken.jpg').resolve()}`" in facts
    # index one more folder: Index.update in a background thread, its progress and a Stop button shown
    more = tmp_path / "more"
    copy_photos(more, THINGS, flat=True)
    at.text_input(key="index_folder").set_value(str(more))
    at.button(key="index_start").click().run()
    assert not at.exception
    assert at.get("progress") and [b for b in at.button if b.key == "index_cancel"], texts(at)
    assert not [b for b in at.button if b.key == "index_start"]  # one update at a time
    finish_job(at, tmp_path / "index")
    assert at.success and "3 added" in at.success[0].value, texts(at)
    assert not at.get("progress") and not [b for b in at.button if b.key == "index_cancel"]
    assert {m.label: m.value for m in at.metric}["Images"] == "6"
    # a folder that is not there: a message
    at.text_input(key="index_folder").set_value(str(tmp_path / "nope"))
    at.button(key="index_start").click().run()
    assert at.error and "folder not found" in at.error[0].value


def finish_job(at, index_dir, timeout: float = 240) -> None:
    """Wait for the page's indexing job, then run the page as its next refresh would."""
    from ui.widgets import indexing_job

    job = indexing_job(index_dir)
    assert job is not None and job.wait(timeout), "the indexing job did not finish"
    at.run()
    assert not at.exception, at.exception


def test_index_page_stop_keeps_the_last_commit(tiny_model, make_index, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    copy_photos(folder, ANIMALS, flat=True)
    make_index(tmp_path / "index").update([folder], workers=0, progress=False)
    more = tmp_path / "more"
    for i in range(8):  # enough files that the update is still running when Stop is clicked
        copy_photos(more / f"copy{i}", THINGS + ANIMALS, flat=True)
    at = app(tmp_path / "index", monkeypatch)
    at.switch_page("pages/index.py").run()
    at.text_input(key="index_folder").set_value(str(more))
    at.button(key="index_start").click().run()
    at.button(key="index_cancel").click().run()
    assert not at.exception
    finish_job(at, tmp_path / "index")
    assert (
        at.error and at.error[0].value == "Indexing stopped: the index keeps its last commit (3 images)."
    ), texts(at)
    assert {m.label: m.value for m in at.metric}["Images"] == "3"
    # the form is back, and indexing the same folder again completes it
    at.button(key="index_start").click().run()
    finish_job(at, tmp_path / "index")
    assert at.success and "48 added" in at.success[0].value, texts(at)
    assert {m.label: m.value for m in at.metric}["Images"] == "51"


def test_indexing_job_reports_progress_and_stops_when_asked(tiny_model, make_index, tmp_path):
    """The page's job without the page: the progress callback sees every file; a stop requested
    before the first file completes leaves the index as it was."""
    from ui.logic import IndexingJob, Outcome

    folder = tmp_path / "photos"
    copy_photos(folder, ANIMALS + THINGS, flat=True)
    make_index(tmp_path / "index").close()
    stopped = IndexingJob(tmp_path / "index", [str(folder)], workers=0)
    stopped.cancel()
    assert stopped.start().wait(240) and not stopped.outcome.ok
    assert stopped.outcome.message == "Indexing stopped: the index keeps its last commit (0 images)."
    job = IndexingJob(tmp_path / "index", [str(folder)], workers=0).start()
    assert job.wait(240) and job.outcome.ok, job.outcome
    assert (job.done, job.total) == (6, 6)
    assert "6 added" in job.outcome.message and job.outcome.message.endswith("; 6 images in the index")
    assert job.outcome.note.startswith("no classifier:")  # one flat folder: one label
    # a failure is an outcome, not an exception in a thread nobody watches
    gone = IndexingJob(tmp_path / "index", [str(tmp_path / "gone")], workers=0).start()
    assert gone.wait(240) and gone.outcome == Outcome(
        False, f"Indexing failed: folder not found: {tmp_path / 'gone'}"
    )


def test_index_page_read_only_hides_indexing(ui_index, monkeypatch):
    index_dir, _ = ui_index
    at = app(index_dir, monkeypatch, VGG_RETRIEVAL_UI_READ_ONLY="1")
    at.switch_page("pages/index.py").run()
    assert not at.exception and not [b for b in at.button if b.key == "index_start"]
    assert "read-only" in texts(at)


# --- duplicates page --------------------------------------------------------------------------
def test_duplicates_page_run_browse_save_and_open(tiny_model, make_index, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    copy_photos(folder, ANIMALS + THINGS, flat=True)
    shutil.copy2(folder / "coffee.png", folder / "coffee-copy.png")
    idx = make_index(tmp_path / "index")
    idx.update([folder], workers=0, progress=False)
    at = app(tmp_path / "index", monkeypatch)
    at.switch_page("pages/duplicates.py").run()
    assert not at.exception
    at.checkbox(key="dedup_exact").check()
    at.button(key="dedup_run").click().run()
    assert not at.exception and not at.error, texts(at)
    md = texts(at)
    assert "1 groups" in md and "Group 1" in md and "KEEPER" in md
    shown = [c.value for c in at.code]
    assert (
        str((folder / "coffee.png").resolve()) in shown
        and str((folder / "coffee-copy.png").resolve()) in shown
    )
    assert len(at.get("image")) >= 2
    # save it into the index folder, then open it from there
    at.button(key="dedup_save").click().run()
    assert at.success and "dedup-" in at.success[0].value
    saved = list((tmp_path / "index" / "dedup").glob("*.json"))
    assert len(saved) == 1
    at = app(tmp_path / "index", monkeypatch)
    at.switch_page("pages/duplicates.py").run()
    at.button(key="dedup_open").click().run()
    assert not at.exception and "KEEPER" in texts(at)
    # an uploaded report that is not one: a message
    at.file_uploader(key="dedup_upload").upload(
        "x.json", json.dumps({"format": "nope"}).encode(), "application/json"
    )
    at.run()
    assert at.error and "is not a dedup report" in at.error[0].value


# --- feature maps page ------------------------------------------------------------------------
def test_feature_maps_page(ui_index, monkeypatch):
    index_dir, photos = ui_index
    at = app(index_dir, monkeypatch)
    at.switch_page("pages/feature_maps.py").run()
    assert not at.exception
    assert at.selectbox(key="fm_layer").options[0].startswith("conv1_1 (64 maps)")
    upload(at, photos / "animals" / "chelsea.png", key="fm_upload")
    assert not at.error, texts(at)
    captions = [c for i in at.get("image") for c in i.captions]
    assert len(captions) == 2 and captions[0] == "model input (72x48)", captions
    assert captions[1].startswith("conv4_") and "32 of 512 maps" in captions[1]
    at.selectbox(key="fm_layer").select("conv1_1").run()
    captions = [c for i in at.get("image") for c in i.captions]
    assert not at.exception and captions[1].startswith("conv1_1: 32 of 64 maps, 72x48 cells")
    at.file_uploader(key="fm_upload").upload("bad.png", b"\x89PNG nope", "image/png")
    at.run()
    assert at.error and "cannot use bad.png" in at.error[0].value


# --- the command ------------------------------------------------------------------------------
def test_ui_command_is_registered_and_builds_the_streamlit_command(tmp_path):
    from click.testing import CliRunner

    from indexer.cli import cli
    from ui.launch import streamlit_command, streamlit_env

    assert "ui" in cli.commands
    out = CliRunner().invoke(cli, ["ui", "--help"])
    assert out.exit_code == 0 and "--index" in out.output and "--port" in out.output
    cmd = streamlit_command(tmp_path, port=8555)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("ui/app.py")
    assert "--server.headless" in cmd and "8555" in cmd
    env = streamlit_env(tmp_path, engine="onnxruntime", base={})
    assert (
        env["VGG_RETRIEVAL_INDEX"] == str(tmp_path.resolve())
        and env["VGG_RETRIEVAL_UI_ENGINE"] == "onnxruntime"
    )
