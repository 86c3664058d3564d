"""Bad input through the real CLI: every bad file gets one line and an error row, the rest is indexed,
user mistakes are one-line errors with a non-zero exit, never a traceback."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import DATA, SAMPLES, copy_photos, png_bomb

from indexer import Index


def cli(*args, privileged=True, env=None):
    cmd = [sys.executable, "-m", "indexer", *map(str, args)]
    if not privileged and os.geteuid() == 0:  # root reads anything: drop that power for this run
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TQDM_DISABLE": "1", **(env or {})},
    )


@pytest.fixture
def bad_folder(tmp_path):
    folder = tmp_path / "mixed"
    copy_photos(folder, ["skimage/astronaut.png", "pixabay/cat01.jpg"], flat=True)
    shutil.copy(DATA / "photos/hymenoptera/train/ants/imageNotFound.gif", folder)  # a real GIF: indexed
    (folder / "notes.jpg").write_text("these are my holiday notes\n")
    (folder / "page.png").write_text("<!DOCTYPE html><html><body>hi</body></html>")
    (folder / "empty.jpg").write_bytes(b"")
    good = (SAMPLES / "opencv" / "baboon.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(400))
    (folder / "bomb.png").write_bytes(png_bomb())
    (folder / "broken.jpg").symlink_to(tmp_path / "does-not-exist.jpg")
    (folder / "folder.jpg").mkdir()
    (folder / "readme.txt").write_text("not an image and not named like one: skipped silently")
    os.mkfifo(folder / "pipe.png")
    secret = folder / "secret.jpg"
    shutil.copy(SAMPLES / "pixabay" / "dog01.jpg", secret)
    secret.chmod(0)
    (folder / "sub").mkdir()
    os.symlink(folder, folder / "sub" / "loop")  # a folder symlink loop: not followed
    weird = os.fsencode(str(folder)) + b"/caf\xe9.jpg"  # latin-1 name, not UTF-8
    with open(weird, "wb") as f:
        f.write(good)
    return folder


EXPECTED = {
    "notes.jpg": "not an image: content is text",
    "page.png": "not an image: content is HTML",
    "empty.jpg": "empty file",
    "truncated.jpg": "truncated",
    "corrupt.png": "corrupt",
    "bomb.png": "image too large",
    "broken.jpg": "broken symbolic link",
    "pipe.png": "not a regular file",
    "secret.jpg": "permission denied",
    "caf\\xe9.jpg": "not valid UTF-8",
}


def test_bad_files_are_reported_and_the_rest_indexed(tmp_path, bad_folder, tiny_model):
    ix = tmp_path / "ix"
    shutil.copytree(tiny_model[2], tmp_path / "model")
    os.chmod(tmp_path, 0o755)
    r = cli("index", bad_folder, "--index", ix, "--model", tmp_path / "model", privileged=False)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    lines = [l for l in r.stdout.splitlines() if l.startswith("  skipped ")]
    assert len(lines) == len(EXPECTED), r.stdout
    for name, reason in EXPECTED.items():
        match = [l for l in lines if f"/{name}: " in l]
        assert len(match) == 1 and reason in match[0], (name, match, r.stdout)
    assert "3 added" in r.stdout
    with Index.open(ix) as idx:
        assert idx.count == 3
        errors = {os.path.basename(e.path): e.reason for e in idx.store.errors()}
        assert set(errors) == set(EXPECTED)
        assert idx.check().ok
    # a second run re-reads nothing: same errors kept, nothing new embedded
    r2 = cli("index", bad_folder, "--index", ix, privileged=False)
    assert "0 added" in r2.stdout and "3 unchanged" in r2.stdout and "0 embedded" in r2.stdout
    # fixing a file makes it indexed and clears its error
    shutil.copy(SAMPLES / "opencv" / "baboon.jpg", bad_folder / "truncated.jpg")
    r3 = cli("index", bad_folder, "--index", ix, privileged=False)
    assert "1 added" in r3.stdout
    with Index.open(ix) as idx:
        assert idx.count == 4 and "truncated.jpg" not in {
            os.path.basename(e.path) for e in idx.store.errors()
        }


def test_user_mistakes_are_one_line_errors(tmp_path, tiny_model, photos):
    model = tiny_model[2]
    cases = [
        (["index", tmp_path / "nope", "--index", tmp_path / "ix", "--model", model], "folder not found"),
        (["search", SAMPLES / "skimage" / "coffee.png", "--index", tmp_path / "no-index"], "no index at"),
        (
            ["index", photos, "--index", tmp_path / "ix2", "--weights", tmp_path / "missing.pth"],
            "weights file not found",
        ),
        (["index", photos, "--index", tmp_path / "ix3", "--model", tmp_path], "no exported model"),
        (["check", "--index", photos], "no index at"),
        (["index", photos, "--index", photos, "--model", model], "is not empty and is not an index"),
    ]
    for args, message in cases:
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and message in err[0] and "Traceback" not in r.stderr, (args, r.stderr)
    assert not (tmp_path / "ix2").exists() or not any((tmp_path / "ix2").glob("vectors-*"))


def test_cli_search_json_and_check(tmp_path, tiny_model, photos):
    ix = tmp_path / "ix"
    assert cli("index", photos, "--index", ix, "--model", tiny_model[2], "--workers", "1").returncode == 0
    q1, q2 = photos / "pixabay" / "cat01.jpg", photos / "skimage" / "coffee.png"
    r = cli("search", q1, q2, "--index", ix, "--top-k", "100", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    assert [row["query"] for row in rows] == [str(q1), str(q2)]
    for row, q in zip(rows, (q1, q2)):
        assert len(row["results"]) == 6 and row["results"][0]["path"] == str(q)
        scores = [h["score"] for h in row["results"]]
        assert scores == sorted(scores, reverse=True)
    # a photo's result has 3 keys, and its capture time and camera when its EXIF has them
    assert set(rows[1]["results"][0]) == {"path", "score", "id"}  # coffee.png: no EXIF
    assert rows[0]["results"][0]["captured"] == "2015-12-29T10:30:47" and rows[0]["results"][0]["camera"]
    r = cli("check", "--index", ix)
    assert r.returncode == 0 and "OK (6 images" in r.stdout
    name = next(ix.glob("vectors-*.faiss"))
    name.write_bytes(name.read_bytes()[:-40])
    r = cli("check", "--index", ix)
    assert r.returncode == 1 and "problem:" in r.stdout
    # a different model is refused on an existing index
    r = cli(
        "index",
        photos,
        "--index",
        ix,
        "--pooling",
        "mac",
        "--arch",
        "vgg11",
        "--weights",
        "random",
        "--size",
        "64",
    )
    assert r.returncode == 2 and "refusing to mix" in r.stderr


def test_cli_starts_without_torch():
    """Every command parses its arguments before anything heavy loads: `import torch` takes seconds
    to a minute here, and search/check/info/dedup never need it."""
    import subprocess
    import sys

    code = (
        "import sys, indexer.cli; heavy = [m for m in ('torch', 'torchvision', 'transformers', 'ray') "
        "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
