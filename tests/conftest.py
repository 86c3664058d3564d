"""Shared fixtures: a tiny random VGG for logic tests, the shared VGG16 for quality tests, real photos.

Real photos and the VGG16 trunk come from ../shared/data (see its README). Nothing here needs the
network. Heavy objects are session-scoped so the suite stays within a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VGG_RETRIEVAL_DATA", ROOT.parent / "shared" / "data"))
VGG16_WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"
SAMPLES = DATA / "photos" / "samples"

# The stereo / viewpoint pairs of the retrieval-quality test, and extra distractors.
PAIRS = [
    ("skimage/motorcycle_left.png", "skimage/motorcycle_right.png"),
    ("opencv/leuvenA.jpg", "opencv/leuvenB.jpg"),
    ("opencv/graf1.png", "opencv/graf3.png"),
    ("opencv/left01.jpg", "opencv/right01.jpg"),
]
DISTRACTORS = ["skimage/astronaut.png", "skimage/coffee.png", "skimage/chelsea.png", "skimage/rocket.jpg",
               "sklearn/china.jpg", "sklearn/flower.jpg", "opencv/baboon.jpg", "opencv/fruits.jpg",
               "opencv/building.jpg", "opencv/messi5.jpg", "opencv/home.jpg", "opencv/aero1.jpg",
               "pixabay/airplane01.jpg", "pixabay/cat01.jpg", "pixabay/dog01.jpg", "pixabay/ship01.jpg",
               "pixabay/car01.jpg", "pixabay/horse01.jpg", "pixabay/bird01.jpg", "pixabay/truck01.jpg"]

TINY_SIZE = 64


def pytest_configure(config):
    if not DATA.is_dir():
        raise pytest.UsageError(f"shared test data not found at {DATA} (set VGG_RETRIEVAL_DATA)")
    os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(spec, net, model_dir): VGG11 with seeded random weights at 64 px, exported once."""
    from retrieval.builder import build
    from retrieval.export import export_model

    spec, net = build("vgg11", "random", input_size=TINY_SIZE)
    model_dir = export_model(spec, net, tmp_path_factory.mktemp("tiny") / "model")
    return spec, net, model_dir


@pytest.fixture(scope="session")
def vgg16_model(tmp_path_factory):
    """(spec, net, model_dir): the shared VGG16 trunk at the default input size, exported once."""
    from retrieval.builder import build
    from retrieval.export import export_model

    spec, net = build("vgg16", str(VGG16_WEIGHTS))
    model_dir = export_model(spec, net, tmp_path_factory.mktemp("vgg16") / "model")
    return spec, net, model_dir


@pytest.fixture
def make_index(tiny_model):
    """make_index(dir, **options) -> a new Index over the tiny model (no re-export)."""
    from indexer import Index

    spec, net, model_dir = tiny_model
    opened = []

    def make(directory, **options):
        idx = Index.create(directory, spec, model_dir=model_dir, **options)
        opened.append(idx)
        return idx

    yield make
    for idx in opened:
        idx.close()


def copy_photos(dest: Path, names, flat: bool = False) -> list[Path]:
    out = []
    for name in names:
        src = SAMPLES / name
        target = dest / (src.name if flat else name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        out.append(target)
    return out


@pytest.fixture
def photos(tmp_path):
    """A small folder of real photos in two sub-folders, safe to modify."""
    folder = tmp_path / "photos"
    copy_photos(folder, ["skimage/astronaut.png", "skimage/coffee.png", "skimage/chelsea.png",
                         "pixabay/cat01.jpg", "pixabay/dog01.jpg", "sklearn/china.jpg"])
    return folder
