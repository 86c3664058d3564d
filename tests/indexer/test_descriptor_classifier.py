"""The classifier fitted on an index's stored descriptors and folder labels (indexer.classify.index_classes):
the automatic rule, refitting, label choices, files next to the index, and the numpy fit itself."""

import json
import shutil

import numpy as np
import pytest
from conftest import DATA

from indexer.classify import descriptor_classifier as dc
from indexer.classify import index_classes as ic
from indexer.classify import logistic
from retrieval.errors import UserError

FLOWERS = DATA / "photos" / "flowers5"
MIN_SKILL = ic.MIN_SKILL  # the rule's bar (the tests of the fit's mechanics lower it: ``any_labels``)


def _copy_flowers(dest, per_class: dict, start: int = 0):
    for label, n in per_class.items():
        (dest / label).mkdir(parents=True, exist_ok=True)
        for src in sorted((FLOWERS / label).iterdir())[start : start + n]:
            shutil.copy2(src, dest / label / src.name)
    return dest


@pytest.fixture(autouse=True)
def any_labels(request, monkeypatch):
    """The tiny models' descriptors carry little meaning (cross-validated skill 0.1-0.4 on these
    photos): the tests of the fit's mechanics take any labels; the refusal has tests of its own, and
    the tests on the shared VGG16 keep the rule."""
    if "vgg16_model" not in request.fixturenames:
        monkeypatch.setattr(ic, "MIN_SKILL", float("-inf"))


@pytest.fixture
def labelled(tmp_path):
    n = ic.MIN_PER_CLASS
    return _copy_flowers(tmp_path / "photos", {"daisy": n, "rose": n + 2})


def test_index_with_labelled_folders_gets_a_classifier(tmp_path, make_index, labelled):
    idx = make_index(tmp_path / "ix")
    idx.update([labelled], workers=0, progress=False)
    result = ic.auto_fit(idx)
    clf = result.classifier
    assert clf is not None and result.changed and "2 classes" in result.note
    assert clf.classes == ("daisy", "rose") and clf.model_id == idx.spec.model_id
    assert (tmp_path / "ix" / dc.JSON_FILE).is_file() and (tmp_path / "ix" / dc.NPZ_FILE).is_file()
    cv = clf.info["cv"]
    assert set(cv["per_class"]) == {"daisy", "rose"} and 0 <= cv["accuracy"] <= 1
    # saved and loaded back: the same scores; a query gets top classes that sum to one
    again = ic.load(idx)
    _, vectors = idx.all_vectors()
    assert np.allclose(again.logits(vectors), clf.logits(vectors), atol=1e-5)
    top = ic.classify_vectors(idx, vectors[:3], k=5)
    assert len(top) == 3 and len(top[0]) == 2 and abs(sum(p for _, p in top[0]) - 1) < 1e-6
    both = ic.query_classes(idx, vectors[:2], logits=None)  # the tiny model has no head of its own
    assert [set(q) for q in both] == [{"folders"}, {"folders"}] and both[0]["folders"] == top[0]
    # on its own training photos a linear classifier is right about most of them
    assert (
        np.mean(
            np.array(clf.predict(vectors))
            == np.array([r.label for r in idx.store.rows_by_id(idx.all_vectors()[0]).values()])
        )
        >= 0.8
    )


def test_unlabelled_folder_gets_no_classifier_and_a_plain_note(tmp_path, make_index):
    flat = tmp_path / "flat"
    flat.mkdir()
    for src in sorted((FLOWERS / "tulip").iterdir())[:6]:
        shutil.copy2(src, flat / src.name)
    idx = make_index(tmp_path / "ix")
    idx.update([flat], workers=0, progress=False)
    result = ic.auto_fit(idx)
    assert result.classifier is None and not result.changed
    assert result.note.startswith("no classifier:") and "found 1 label" in result.note
    assert ic.load(idx) is None and not (tmp_path / "ix" / dc.JSON_FILE).exists()


def test_refit_only_when_labels_changed_enough(tmp_path, make_index, labelled):
    idx = make_index(tmp_path / "ix")
    idx.update([labelled], workers=0, progress=False)
    first = ic.auto_fit(idx).classifier
    # nothing changed: kept as it is
    kept = ic.auto_fit(idx)
    assert not kept.changed and kept.note.startswith("classifier kept")
    assert kept.classifier.info["fitted_at"] == first.info["fitted_at"]
    # a new label with enough photos: fitted again, now with three classes
    _copy_flowers(labelled, {"tulip": ic.MIN_PER_CLASS})
    idx.update([labelled], workers=0, progress=False)
    refit = ic.auto_fit(idx)
    assert refit.changed and refit.classifier.classes == ("daisy", "rose", "tulip")
    assert refit.note.startswith("labels changed")
    # one photo fewer (3%): kept
    next(iter((labelled / "rose").iterdir())).unlink()
    idx.update([labelled], workers=0, progress=False)
    assert not ic.auto_fit(idx).changed
    # labels gone below the rule: the classifier goes too
    shutil.rmtree(labelled / "rose")
    shutil.rmtree(labelled / "tulip")
    idx.update([labelled], workers=0, progress=False)
    gone = ic.auto_fit(idx)
    assert gone.classifier is None and gone.changed and "removed" in gone.note
    assert ic.load(idx) is None


def test_skill_tells_labels_the_photos_carry_from_labels_dealt_at_random():
    """The refusal rule's measure: clusters labelled by cluster are far above ``MIN_SKILL``; the same
    vectors with the labels shuffled are below it (top-1 no better than always the largest label)."""
    rng = np.random.default_rng(0)
    d, per, classes = 32, 100, 4
    centres = rng.normal(size=(classes, d)) * 3
    x = np.concatenate([c + rng.normal(size=(per, d)) for c in centres])
    y = [f"c{n}" for n in range(classes) for _ in range(per)]
    cv = dc.cross_validate(x, y, 5)
    assert cv["chance"] == pytest.approx(0.25) and ic.skill(cv) >= 0.9
    shuffled = dc.cross_validate(x, list(rng.permutation(y)), 5)
    assert ic.skill(shuffled) < MIN_SKILL
    assert ic.skill({"accuracy": None, "chance": 0.5}) is None
    # a classifier saved before ``chance`` was recorded: chance from its label counts
    assert ic.skill({"accuracy": 0.75}, {"a": 30, "b": 10}) == pytest.approx(0.0)


def test_labels_the_photos_do_not_predict_get_no_classifier_and_no_refit_per_update(
    tmp_path, make_index, labelled, monkeypatch, capsys
):
    """Refused labels: no classifier, one line saying why with the numbers, and a record so that
    the updates after do not cross-validate them again until the labels change by REFIT_CHANGE."""
    monkeypatch.setattr(ic, "MIN_SKILL", 1.01)  # no labels pass: the mechanics, whatever the model
    fits = []
    real = ic.cross_validate
    monkeypatch.setattr(ic, "cross_validate", lambda *a, **k: fits.append(1) or real(*a, **k))
    idx = make_index(tmp_path / "ix")
    idx.update([labelled], workers=0, progress=False)
    refused = ic.auto_fit(idx)
    assert refused.classifier is None and ic.load(idx) is None and len(fits) == 1
    assert refused.note.startswith("no classifier: the photos do not predict their 2 labels (labels: folder")
    assert "cross-validated top-1" in refused.note and "by always answering the largest" in refused.note
    record = json.loads((tmp_path / "ix" / ic.REFUSED_FILE).read_text())
    assert record["model_id"] == idx.spec.model_id and record["skill"] < 1.01
    # an update that changes 1 photo of 22: refused again from the record, not cross-validated
    next(iter((labelled / "rose").iterdir())).unlink()
    idx.update([labelled], workers=0, progress=False)
    again = ic.auto_fit(idx)
    assert again.classifier is None and len(fits) == 1 and "tried again above 10%" in again.note
    # a new label: tried again (and refused again under the same bar)
    _copy_flowers(labelled, {"tulip": ic.MIN_PER_CLASS})
    idx.update([labelled], workers=0, progress=False)
    assert ic.auto_fit(idx).classifier is None and len(fits) == 2
    # `classes` with a lower bar fits them, and the record goes
    code, out, _ = _cli(["classes", "--index", tmp_path / "ix", "--min-skill", "-1"], capsys)
    assert code == 0 and out.startswith("classifier fitted on") and ic.load(idx) is not None
    assert not (tmp_path / "ix" / ic.REFUSED_FILE).exists()
    code, out, _ = _cli(["classes", "--index", tmp_path / "ix", "--min-skill", "2"], capsys)
    assert code == 0 and out.startswith("no classifier: the photos do not predict their 3 labels")
    assert "the old classifier was removed" in out and ic.load(idx) is None


def test_a_damaged_refusal_record_means_judging_the_labels_again_not_an_error(tmp_path, make_index, labelled):
    idx = make_index(tmp_path / "ix")
    idx.update([labelled], workers=0, progress=False)
    counts = {"daisy": ic.MIN_PER_CLASS, "rose": ic.MIN_PER_CLASS + 2}  # the labels as they are
    edited = {"model_id": idx.spec.model_id, "label_counts": counts, "all_label_counts": counts, "skill": "?"}
    edited["cv"], edited["min_skill"] = {"accuracy": "high", "folds": 5, "chance": 0.5}, 0.1
    for text in ("{not json", '{"cv": 3, "label_counts": []}', json.dumps(edited)):
        (tmp_path / "ix" / ic.REFUSED_FILE).write_text(text)
        assert ic.refusal(idx) is None
        assert ic.auto_fit(idx).classifier is not None  # any labels (the fixture): fitted
        assert not (tmp_path / "ix" / ic.REFUSED_FILE).exists()
        dc.DescriptorClassifier.remove(tmp_path / "ix")


def test_a_classifier_fitted_before_the_rule_is_judged_without_a_refit(
    tmp_path, make_index, labelled, monkeypatch
):
    idx = make_index(tmp_path / "ix")
    idx.update([labelled], workers=0, progress=False)
    assert ic.auto_fit(idx).classifier is not None  # any labels (the fixture)
    meta_path = tmp_path / "ix" / dc.JSON_FILE
    meta = json.loads(meta_path.read_text())
    for key in ("skill", "min_skill"):  # as saved before the rule
        meta.pop(key)
    meta["cv"].pop("chance")
    meta["cv"]["accuracy"] = 0.5  # under always "rose" (12 of 22)
    meta_path.write_text(json.dumps(meta))
    assert ic.load(idx) is not None  # still a valid classifier
    monkeypatch.setattr(ic, "MIN_SKILL", MIN_SKILL)
    monkeypatch.setattr(ic, "cross_validate", lambda *a, **k: pytest.fail("judged from what it saved"))
    judged = ic.auto_fit(idx)
    assert judged.classifier is None and judged.changed and "the old classifier was removed" in judged.note
    assert "top-1 50.0% against 54.5%" in judged.note and ic.load(idx) is None


def test_labels_by_depth_and_by_csv(tmp_path, make_index):
    root = tmp_path / "photos"
    n = ic.MIN_PER_CLASS
    _copy_flowers(root / "2023", {"daisy": n // 2, "rose": n - n // 2})
    _copy_flowers(root / "2024", {"tulip": n}, start=20)
    idx = make_index(tmp_path / "ix")
    idx.update([root], workers=0, progress=False)
    by_folder = ic.fit_index(idx)  # daisy, rose, tulip: only tulip has enough photos
    assert by_folder.classifier is None and "1 with enough photos" in by_folder.note
    by_year = ic.fit_index(idx, ic.LabelChoice(depth=1)).classifier
    assert by_year.classes == ("2023", "2024") and by_year.info["depth"] == 1
    assert ic.index_labels(idx, ic.LabelChoice(depth=2))[2][0] == "2023/daisy"
    # a CSV naming each photo (relative to the CSV's folder), with a header row
    rows = ["path,label"] + [
        f"photos/{p.relative_to(root).as_posix()},{'even' if i % 2 else 'odd'}"
        for i, p in enumerate(sorted(root.rglob("*.jpg")))
    ]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    by_csv = ic.fit_index(idx, ic.LabelChoice(csv=str(tmp_path / "labels.csv"))).classifier
    assert by_csv.classes == ("even", "odd") and by_csv.info["labels"] == "csv"
    # refitting automatically keeps the CSV as the labels' source
    assert ic.auto_fit(idx).classifier.classes == ("even", "odd")


@pytest.mark.parametrize("text,line", [("a.jpg,cat\nb.jpg\n", 2), ("a.jpg,cat,extra\n", 1), ("a.jpg,\n", 1)])
def test_bad_label_csv_is_one_line_naming_file_and_line(tmp_path, text, line):
    bad = tmp_path / "labels.csv"
    bad.write_text(text)
    with pytest.raises(UserError) as e:
        ic.read_label_csv(bad)
    msg = str(e.value)
    assert str(bad) in msg and f"line {line}" in msg and "\n" not in msg


def test_csv_naming_no_indexed_photo_and_missing_csv_are_errors(tmp_path, make_index, labelled):
    idx = make_index(tmp_path / "ix")
    idx.update([labelled], workers=0, progress=False)
    other = tmp_path / "other.csv"
    other.write_text("/nowhere/x.jpg,cat\n")
    with pytest.raises(UserError, match="none of its 1 paths"):
        ic.fit_index(idx, ic.LabelChoice(csv=str(other)))
    with pytest.raises(UserError, match="cannot read labels file"):
        ic.read_label_csv(tmp_path / "missing.csv")


def test_classifier_is_refused_for_another_model_and_when_damaged(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 16))
    clf = dc.fit(x, ["a"] * 20 + ["b"] * 20, model_id="m1")
    clf.save(tmp_path)
    assert dc.DescriptorClassifier.load(tmp_path, "m1").classes == ("a", "b")
    with pytest.raises(UserError, match="fitted on descriptors of model m1"):
        dc.DescriptorClassifier.load(tmp_path, "m2")
    (tmp_path / dc.NPZ_FILE).write_bytes(b"not an npz")
    with pytest.raises(UserError, match="damaged classifier"):
        dc.DescriptorClassifier.load(tmp_path, "m1")
    meta = json.loads((tmp_path / dc.JSON_FILE).read_text())
    assert meta["model_id"] == "m1" and meta["classes"] == ["a", "b"]


def test_fit_matches_scikit_learns_logistic_regression():
    """The numpy fit reaches the same optimum as scikit-learn's multinomial lbfgs (same objective)."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 32))
    y = rng.integers(0, 3, 300)
    x = np.abs(centres[y] + 2.0 * rng.normal(size=(300, 32)))
    labels = [f"c{v}" for v in y]
    l2 = 1e-2
    ours = dc.fit(x, labels, l2=l2, balanced=False)
    z = (dc._normalised(x) - ours.mean) / ours.scale
    ref = sklearn.LogisticRegression(C=1 / (l2 * len(y)), max_iter=10000, tol=1e-10).fit(z, y)
    assert np.abs(ref.coef_.T - ours.weight).max() < 2e-3 * np.abs(ref.coef_).max()
    assert np.array_equal(ref.predict(z), np.searchsorted(ours.classes, ours.predict(x)))


def test_cross_validation_is_stratified_and_reports_each_class():
    rng = np.random.default_rng(2)
    x = np.vstack([rng.normal(1.0, 0.3, size=(30, 8)), rng.normal(-1.0, 0.3, size=(12, 8))])
    labels = ["big"] * 30 + ["small"] * 12
    folds = dc.folds_of(labels, 4)
    for f in range(4):  # every fold holds both classes in proportion
        assert 7 <= np.sum(folds[:30] == f) <= 8 and 3 == np.sum(folds[30:] == f)
    cv = dc.cross_validate(x, labels, folds=5)
    assert cv["folds"] == 5 and cv["per_class"] == {"big": 1.0, "small": 1.0}


def _clusters(n_classes: int, per_class: int, dim: int = 16, seed: int = 3):
    """Rows around ``n_classes`` random centres (well apart), and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), per_class)
    return centres[y] + 0.15 * rng.normal(size=(len(y), dim)), [f"c{v:03d}" for v in y]


def test_small_fits_keep_every_row_and_every_iteration():
    """Below the budget (every labelled set we have: flowers5's 5 x ~860, hymenoptera's 2 x ~200) the
    fit is the plain one."""
    assert logistic.fit_budget([1052, 984, 784, 764, 733]) == (
        logistic.MAX_PER_CLASS,
        logistic.MAX_ITERATIONS,
    )
    assert logistic.fit_budget([200, 197]) == (logistic.MAX_PER_CLASS, logistic.MAX_ITERATIONS)
    # 100 folders of 1,000 photos (benchmarks/scale.py at 100,000): every row, fewer iterations
    assert logistic.fit_budget([1000] * 100) == (1000, logistic.MIN_ITERATIONS)
    # 1,000 folders: fewer rows a class too, never below the floor
    per_class, iterations = logistic.fit_budget([1000] * 1000)
    assert per_class == logistic.MIN_FIT_PER_CLASS and iterations == logistic.MIN_ITERATIONS


def test_a_fit_over_many_classes_stays_within_its_budget(monkeypatch):
    """Many folders of many photos: the fit keeps rows x classes x iterations near FIT_WORK, the rule
    keeps MEMBER_BUDGET photos in all, cross-validation runs on a stratified sample - and the
    classifier still tells the classes apart."""
    # 30 iterations over 60 rows of each of 40 classes
    monkeypatch.setattr(logistic, "FIT_WORK", 40 * 60 * 40 * 30)
    monkeypatch.setattr(logistic, "MIN_ITERATIONS", 30)
    monkeypatch.setattr(dc, "MEMBER_BUDGET", 40 * 12)
    monkeypatch.setattr(dc, "CV_ROWS", 40 * 15)
    x, labels = _clusters(40, 100)
    clf = dc.fit(x, labels)
    assert clf.info["rows"] == 4000 and clf.info["rows_fitted"] == 40 * 60 and clf.info["iterations"] == 30
    counts = np.bincount(clf.member_class, minlength=40)
    assert len(clf.members) == 40 * 12 and counts.min() == counts.max() == 12
    assert np.mean(np.array(clf.predict(x)) == np.array(labels)) > 0.95
    cv = dc.cross_validate(x, labels, folds=5)
    assert cv["rows"] == 40 * 15 and len(cv["per_class"]) == 40 and cv["accuracy"] > 0.9
    # the budget never takes a class below its floors
    monkeypatch.setattr(logistic, "FIT_WORK", 1)
    monkeypatch.setattr(dc, "MEMBER_BUDGET", 1)
    few = dc.fit(x, labels)
    assert few.info["rows_fitted"] == 40 * logistic.MIN_FIT_PER_CLASS
    assert np.bincount(few.member_class).min() == 2 * dc.NEIGHBOURS


def test_class_closeness_is_the_mean_of_each_class_s_nearest_members():
    rng = np.random.default_rng(4)
    sims = rng.normal(size=(7, 50)).astype(np.float32)
    member_class = rng.integers(0, 4, 50)
    k = np.array([1, 3, 5, 60, 5])
    got = dc.class_closeness(sims, member_class, 5, k)
    for c in range(4):
        mine = np.sort(sims[:, member_class == c], axis=1)[:, ::-1]
        assert np.allclose(got[:, c], mine[:, : min(k[c], mine.shape[1])].mean(axis=1), atol=1e-6)
    assert np.all(got[:, 4] == -1.0)  # a class without members


def test_the_note_says_when_cross_validation_ran_on_a_sample(tmp_path, make_index, labelled, monkeypatch):
    idx = make_index(tmp_path / "ix")
    idx.update([labelled], workers=0, progress=False)
    monkeypatch.setattr(dc, "CV_ROWS", 16)
    result = ic.fit_index(idx)
    assert result.classifier.info["cv"]["rows"] == 16
    assert "(on a sample of 16 photos)" in result.note and "fitted on 22 photos" in result.note


# --- the command line: `index` fits by itself, `classes`, `search` shows each classifier's classes ---
def _cli(args, capsys):
    from indexer.cli import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


MODEL = [
    "--arch",
    "vgg11",
    "--weights",
    "random",
    "--size",
    "32",
    "--workers",
    "0",
    "--precision",
    "fp32",
]  # about the classifier, not the precision: no INT8 calibration


def test_cli_index_fits_a_classifier_and_search_shows_its_classes(tmp_path, labelled, capsys):
    ix = tmp_path / "ix"
    code, out, _ = _cli(["index", labelled, "--index", ix, "-q", *MODEL], capsys)
    assert code == 0 and "classifier fitted on" in out and "2 classes" in out
    query = next(iter(sorted((labelled / "rose").iterdir())))
    code, out, _ = _cli(["search", query, "--index", ix, "-k", "2", "--json"], capsys)
    row = json.loads(out)
    assert code == 0 and "classes" not in row  # the random model has no head of its own
    assert {c["class"] for c in row["folder_classes"]} == {"daisy", "rose"}
    assert abs(sum(c["p"] for c in row["folder_classes"]) - 1) < 1e-4
    code, out, _ = _cli(["search", query, "--index", ix, "-k", "1"], capsys)
    assert "  classes (folders): " in out
    # `classes` refits on demand and reports each class's cross-validated accuracy
    code, out, _ = _cli(["classes", "--index", ix], capsys)
    assert code == 0 and out.count("cross-validated top-1") == 3  # the summary and one per class
    # nothing changed: `index` does not refit (no note); a bad CSV is one line, exit 2
    code, out, _ = _cli(["index", "--index", ix, "-q", "--workers", "0"], capsys)
    assert code == 0 and "classifier" not in out
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nonly-a-path\n")
    code, out, err = _cli(["classes", "--index", ix, "--labels", bad], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and f"{bad} line 2" in err


def test_cli_index_of_an_unlabelled_folder_says_why_there_is_no_classifier(tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for src in sorted((FLOWERS / "daisy").iterdir())[:3]:
        shutil.copy2(src, flat / src.name)
    code, out, _ = _cli(["index", flat, "--index", tmp_path / "ix", "-q", *MODEL], capsys)
    assert code == 0 and "no classifier: it needs at least 2 labels" in out
    code, out, _ = _cli(["search", next(flat.iterdir()), "--index", tmp_path / "ix", "--json"], capsys)
    assert "folder_classes" not in json.loads(out)


def test_none_of_these_keeps_held_out_photos_and_refuses_far_ones(tmp_path):
    """The calibrated rule: photos drawn like a class's own stay that class (about 95% by
    construction), descriptors far from every class are "none of these"; the rule is saved with the
    classifier and a classifier saved before it (no members) recognises everything, as before."""
    rng = np.random.default_rng(0)
    d, per = 64, 60
    centers = rng.normal(size=(3, d))

    def draw(c, n):
        return centers[c] + 0.8 * rng.normal(size=(n, d))

    x = np.concatenate([draw(c, per) for c in range(3)])
    labels = [name for name in ("a", "b", "c") for _ in range(per)]
    clf = dc.fit(x, labels, model_id="m")
    assert clf.has_rule and clf.members.shape == (3 * per, d) and clf.bounds.shape == (3,)
    held_out = np.concatenate([draw(c, 100) for c in range(3)])
    kept = clf.recognised(held_out).mean()
    far = clf.recognised(rng.normal(size=(200, d)) * 3).mean()
    assert kept >= 0.85 and far <= 0.05, (kept, far)
    v = clf.verdicts(np.stack([centers[0], rng.normal(size=d) * 3]), k=2)
    assert v[0]["known"] and not v[1]["known"] and v[1]["similarity"] < v[1]["bound"]
    assert [c for c, _ in v[0]["top"]][0] == "a"
    clf.save(tmp_path)
    again = dc.DescriptorClassifier.load(tmp_path, "m")
    assert np.array_equal(again.recognised(held_out), clf.recognised(held_out))
    old = dc.DescriptorClassifier(clf.classes, clf.weight, clf.bias, clf.mean, clf.scale, "m")
    assert old.recognised(rng.normal(size=(5, d))).all() and not old.has_rule


def test_the_demo_learns_its_classes_its_cat_finds_cats_and_a_laptop_is_none_of_these(
    tmp_path, vgg16_model, capsys
):
    """examples/demo.sh's steps on its photos with the shared VGG16: classes from folders of 3-4
    photos (``classes --min-per-class 3``), the cat query's three best hits are the three cats and its
    class is "cat"; the laptop is none of the folders ("none of these", in the text and the JSON)."""
    from pathlib import Path

    from indexer import Index

    examples = Path(__file__).resolve().parents[2] / "examples"
    spec, _, model_dir = vgg16_model
    with Index.create(tmp_path / "ix", spec, model_dir=model_dir) as idx:
        idx.update([examples / "photos"], workers=0, progress=False)
        assert idx.count == 27 and ic.auto_fit(idx).classifier is None  # 3-4 photos a folder: not by itself
    code, out, _ = _cli(["classes", "--index", tmp_path / "ix", "--min-per-class", "3"], capsys)
    assert code == 0 and "8 classes" in out, out
    queries = [examples / "queries" / name for name in ("cat01.jpg", "laptop01.jpg")]
    code, out, _ = _cli(["search", *queries, "--index", tmp_path / "ix", "--top-k", "3", "--json"], capsys)
    cat, laptop = (json.loads(line) for line in out.splitlines())
    assert [Path(r["path"]).parent.name for r in cat["results"]] == ["cat"] * 3, cat["results"]
    assert cat["folder_classes"][0]["class"] == "cat" and "folder_classes_none_of_these" not in cat
    none = laptop["folder_classes_none_of_these"]
    folders = {p.name for p in (examples / "photos").iterdir()}
    assert none["similarity"] < none["bound"] and none["nearest"] in folders, none
    code, out, _ = _cli(["search", queries[1], "--index", tmp_path / "ix", "--top-k", "1"], capsys)
    assert code == 0 and "classes (folders): none of these (nearest " in out, out
