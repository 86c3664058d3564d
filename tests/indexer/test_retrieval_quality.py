"""Retrieval quality on real photos with the shared VGG16 trunk (OpenVINO engine)."""

import shutil

import pytest
from conftest import DATA, DISTRACTORS, PAIRS, SAMPLES, copy_photos

from indexer import Index


@pytest.fixture(scope="module")
def gallery_index(module_tmp, vgg16_model):
    spec, net, model_dir = vgg16_model
    root = module_tmp("gallery")
    photos = root / "photos"
    copy_photos(photos, [p for pair in PAIRS for p in pair] + DISTRACTORS)
    shutil.copytree(DATA / "dedup" / "base_images", photos / "ukbench")
    idx = Index.create(root / "ix", spec, model_dir=model_dir)
    report = idx.update([photos], workers=1, progress=False)
    assert report.errors == [] and idx.count == 2 * len(PAIRS) + len(DISTRACTORS) + 10
    yield idx, photos
    idx.close()


@pytest.mark.parametrize(
    "edited", ["ukbench00120_hflip.jpg", "ukbench00120_resize.jpg", "ukbench00120_rotation.jpg"]
)
def test_transformed_copy_finds_its_original_first(gallery_index, edited):
    idx, photos = gallery_index
    hits = idx.search(DATA / "dedup" / "mixed_images" / edited, k=5)
    assert hits[0].path == str(photos / "ukbench" / "ukbench00120.jpg"), [(h.path, h.score) for h in hits]
    assert hits[0].score > hits[1].score + 0.02


def test_grey_copy_finds_its_original_first(gallery_index):
    idx, photos = gallery_index
    hits = idx.search(DATA / "dedup" / "ukbench00120_gray.jpg", k=3)
    assert hits[0].path == str(photos / "ukbench" / "ukbench00120.jpg")


@pytest.mark.parametrize("a,b", PAIRS)
def test_stereo_and_viewpoint_pairs_find_their_partner_in_top3(gallery_index, a, b):
    idx, photos = gallery_index
    for query, partner in ((a, b), (b, a)):
        hits = [h for h in idx.search(SAMPLES / query, k=4) if h.path != str(photos / query)]
        assert str(photos / partner) in [h.path for h in hits[:3]], (query, [(h.path, h.score) for h in hits])


def test_exact_copy_scores_one(gallery_index):
    idx, photos = gallery_index
    hit = idx.search(SAMPLES / "skimage" / "chelsea.png", k=1)[0]
    assert hit.path == str(photos / "skimage" / "chelsea.png") and hit.score > 0.9999
