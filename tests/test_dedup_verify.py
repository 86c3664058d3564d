"""Keypoint verification (indexer/dedup/verify.py): real photos and the edits people make.

Real OpenCV ORB + RANSAC on real photos; the edited copies are made here. What matters: every
edit of a photo keeps enough agreeing keypoints, other photos (even of the same subject) do not."""
from __future__ import annotations

import json

import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from indexer.cli import main
from indexer.dedup.verify import MIN_KEYPOINTS, Verifier

from conftest import SAMPLES

PIX = SAMPLES / "pixabay"


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """A photo, its edited copies, and other photos (two of the same kind of subject)."""
    d = tmp_path_factory.mktemp("verify")
    photo = Image.open(PIX / "dog01.jpg").convert("RGB")
    photo.save(d / "dog.jpg", quality=95)
    w, h = photo.size
    copies = {
        "grey": photo.convert("L"),
        "crop30": photo.crop((int(0.15 * w), int(0.15 * h), int(0.85 * w), int(0.85 * h))),
        "rotate8": photo.rotate(8, resample=Image.BICUBIC, expand=True, fillcolor=(0, 0, 0)),
        "mirror": ImageOps.mirror(photo),
        "small": photo.resize((w // 3, h // 3)),
        "contrast": ImageEnhance.Contrast(ImageEnhance.Brightness(photo).enhance(1.3)).enhance(0.7),
        "border": ImageOps.expand(photo, border=w // 5, fill=(255, 255, 255)),
    }
    overlay = photo.copy()
    ImageDraw.Draw(overlay).rectangle((0, h - h // 6, w, h), fill=(20, 20, 20))
    ImageDraw.Draw(overlay).text((w // 10, h - h // 8), "(c) 2026 somebody's blog", fill=(255, 255, 255))
    copies["overlay"] = overlay
    for name, im in copies.items():
        im.save(d / f"dog_{name}.jpg", quality=40 if name == "small" else 85)
    others = ["dog02.jpg", "dog03.jpg", "cat01.jpg", "car01.jpg", "bird01.jpg"]
    for name in others:
        Image.open(PIX / name).convert("RGB").save(d / name, quality=90)
    return d, sorted(copies), others


def test_every_edit_of_a_photo_verifies(edited):
    d, copies, _ = edited
    v = Verifier()
    counts = {name: v.match(str(d / "dog.jpg"), str(d / f"dog_{name}.jpg")) for name in copies}
    assert all(c >= MIN_KEYPOINTS for c in counts.values()), counts
    assert v.match(str(d / "dog_mirror.jpg"), str(d / "dog.jpg")) >= MIN_KEYPOINTS  # either way round


def test_other_photos_do_not_verify(edited):
    d, _, others = edited
    v = Verifier()
    files = ["dog.jpg", *others]
    counts = {(a, b): v.match(str(d / a), str(d / b)) for n, a in enumerate(files) for b in files[n + 1:]}
    assert all(c < MIN_KEYPOINTS for c in counts.values()), counts
    assert v.unreadable == set()


def test_unreadable_files_verify_nothing(edited, tmp_path):
    d, _, _ = edited
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((d / "dog.jpg").read_bytes()[:300])
    gone = tmp_path / "gone.jpg"
    v = Verifier()
    counts = v.verify([(str(d / "dog.jpg"), str(broken)), (str(gone), str(d / "dog.jpg")),
                       (str(d / "dog.jpg"), str(d / "dog_grey.jpg"))])
    assert counts[0] == 0 and counts[1] == 0 and counts[2] >= MIN_KEYPOINTS
    assert v.unreadable == {str(broken), str(gone)}


def test_verify_runs_pairs_in_parallel_and_reports_progress(edited):
    d, copies, others = edited
    pairs = [(str(d / "dog.jpg"), str(d / f"dog_{c}.jpg")) for c in copies] + \
            [(str(d / "dog.jpg"), str(d / o)) for o in others]
    seen = []
    counts = Verifier(workers=2, cache_size=3).verify(pairs, progress=lambda done, total: seen.append((done, total)))
    assert list(counts >= MIN_KEYPOINTS) == [True] * len(copies) + [False] * len(others)
    assert seen[-1] == (len(pairs), len(pairs))
    one_by_one = Verifier(workers=1)
    assert [one_by_one.match(*p) for p in pairs] == counts.tolist()  # same answer, whatever the order


def test_cli_dedup_verifies_by_default_and_says_its_rule(tmp_path, tiny_model, edited, capsys):
    """The CLI's default finds the grey copy through keypoints where cosine alone (at a threshold
    above the pair's cosine) does not; both reports state the rule they used."""
    from indexer import Index

    d, _, others = edited
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ["dog.jpg", "dog_grey.jpg", *others]:
        (lib / name).write_bytes((d / name).read_bytes())
    spec, _, model_dir = tiny_model
    with Index.create(tmp_path / "index", spec, model_dir=model_dir) as idx:
        idx.update([lib], progress=False, workers=0)
        v = {p.name: idx.vector(idx.store.row_by_path(str(p.resolve())).id) for p in lib.iterdir()}
    cos = float(v["dog.jpg"] @ v["dog_grey.jpg"])
    threshold = min(0.999, cos + 0.001)
    floor = min(cos, min(float(v["dog.jpg"] @ v[o]) for o in others)) - 0.01  # every pair is a candidate
    out = tmp_path / "rep"
    args = ["dedup", "--index", str(tmp_path / "index"), "--threshold", f"{threshold:.4f}", "--out", str(out)]
    assert main(args + ["--no-verify"]) == 0
    assert "0 groups" in capsys.readouterr().out
    assert main(args + ["--verify-floor", f"{floor:.4f}"]) == 0
    text = capsys.readouterr().out
    assert "1 groups" in text and f"or >= {floor:.3f} with >= {MIN_KEYPOINTS} agreeing keypoint matches" in text
    rep = json.loads((tmp_path / "rep.json").read_text())
    (group,) = rep["groups"]
    assert group["members"][0]["path"].endswith("dog_grey.jpg") and group["members"][0]["keypoints"] >= MIN_KEYPOINTS
    assert rep["rule"]["verify_floor"] == pytest.approx(floor, abs=1e-4) and rep["stats"]["verified_pairs"] >= 1
    assert "agreeing keypoint matches" in (tmp_path / "rep.html").read_text()
    assert main(args + ["--min-keypoints", "0"]) == 2
    assert "--min-keypoints must be at least 1" in capsys.readouterr().err
