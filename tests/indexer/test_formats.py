"""Every photo a real library holds: HEIC/HEIF, AVIF, JPEG XL and camera RAW/DNG, recognised by their
content, decoded upright, indexed with their capture metadata, and found as duplicates of their JPEG.

Real files, no mocks: HEIC, AVIF and JPEG XL are encoded here from the shared photos (their EXIF
kept) with pillow-heif, Pillow and pillow-jxl-plugin; the DNG is a real one written with tifffile
(a Bayer mosaic of a shared photo with the DNG tags LibRaw needs, and a small RGB preview), which
rawpy reads like a camera's. No pip package here ships a camera's RAW file; see the README.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, copy_photos
from dng import write_dng
from PIL import Image

from indexer import Index
from indexer.cli import main
from indexer.update.capture import capture_time, read_capture
from indexer.update.decode import decode_file
from indexer.update.scan import Entry, classify, sniff
from retrieval.formats import image_kind, read_head
from retrieval.preprocess import ImageError, load_and_prepare, open_image

pillow_heif = pytest.importorskip("pillow_heif")
rawpy = pytest.importorskip("rawpy")
tifffile = pytest.importorskip("tifffile")
pillow_heif.register_heif_opener()

TINY = ["--arch", "vgg11", "--weights", "random", "--size", "64", "--workers", "0", "-q"]
IPHONE = "opencv/leuvenA.jpg"  # an iPhone 6 photo: DateTimeOriginal, SubSecTimeOriginal 830, GPS
NIKON = "pixabay/cat01.jpg"


def encode(src: str, dest: Path, fmt: str, orientation: int | None = None, **options) -> Path:
    """The shared photo ``src`` saved as ``fmt`` with its EXIF (orientation replaced when given)."""
    im = Image.open(SAMPLES / src)
    exif = im.getexif()
    if orientation is not None:
        exif[0x0112] = orientation
    im.convert("RGB").save(dest, fmt, exif=exif.tobytes(), **options)
    return dest


def make_dng(src: str, dest: Path, date: str = "2015:12:29 10:30:47", preview: int = 4) -> Path:
    """A real DNG of the shared photo ``src`` (``dng.write_dng``) with Make/Model/DateTimeOriginal and
    an RGB preview ``preview`` times smaller."""
    rgb = np.asarray(Image.open(SAMPLES / src).convert("RGB"))
    exif = ((271, "s", 0, "TestMake", True), (272, "s", 0, "DNG-1", True), (36867, "s", 0, date, True))
    return write_dng(rgb, dest, preview=preview, exif=exif)


def _similar(a: Image.Image, b: Image.Image) -> float:
    """Correlation of two pictures' grey 64x64 thumbnails (1.0: the same picture)."""
    x, y = (np.asarray(im.convert("L").resize((64, 64)), dtype=np.float64).ravel() for im in (a, b))
    return float(np.corrcoef(x, y)[0, 1])


@pytest.fixture(scope="module")
def files(module_tmp):
    d = module_tmp("formats")
    out = {
        "heic": encode(IPHONE, d / "leuven.heic", "HEIF", quality=90),
        "avif": encode(NIKON, d / "cat.avif", "AVIF", quality=80),
        "heic_rotated": encode(NIKON, d / "rotated.heic", "HEIF", orientation=6),
        "avif_rotated": encode(NIKON, d / "rotated.avif", "AVIF", orientation=6),
        "dng": make_dng("pixabay/dog01.jpg", d / "dog.dng"),
        "heic_named_jpg": encode(IPHONE, d / "renamed.jpg", "HEIF"),
    }
    try:
        import pillow_jxl  # noqa: F401

        out["jxl"] = encode("pixabay/ship01.jpg", d / "ship.jxl", "JXL", quality=90, lossless_jpeg=False)
    except ImportError:
        pass
    return out


def test_each_format_is_recognised_by_its_content(files):
    kinds = {name: image_kind(read_head(p), str(p)) for name, p in files.items()}
    assert kinds["heic"] == kinds["heic_named_jpg"] == "HEIF" and kinds["avif"] == "AVIF"
    assert kinds["dng"] == "RAW" and kinds.get("jxl", "JXL") == "JXL"
    for name in files:  # the scan keeps them all as images (a HEIC is no longer "an ISO media file")
        e = classify(Entry(str(files[name]), str(files[name].parent), os.path.getsize(files[name]), 0))
        assert e is not None and e.problem is None and e.kind == "image", name
    assert sniff(files["heic"].read_bytes()[:64]) == "HEIF"
    assert image_kind(read_head(SAMPLES / IPHONE), IPHONE) is None  # Pillow's own formats: as before


def test_every_format_decodes_to_the_same_upright_picture(files):
    jpeg = open_image(SAMPLES / NIKON)
    for name in ("avif", "heic_rotated", "avif_rotated"):
        im = open_image(files[name])
        assert im.mode == "RGB"
        if name.endswith("rotated"):  # EXIF orientation 6: turned a quarter clockwise
            assert im.size == (jpeg.height, jpeg.width), name
            assert _similar(im, jpeg.transpose(Image.Transpose.ROTATE_270)) > 0.95, name
        else:
            assert im.size == jpeg.size and _similar(im, jpeg) > 0.95, name
    heic = open_image(files["heic"])
    assert heic.info["vgg_retrieval_format"] == "HEIF" and _similar(heic, open_image(SAMPLES / IPHONE)) > 0.95
    if "jxl" in files:
        assert _similar(open_image(files["jxl"]), open_image(SAMPLES / "pixabay/ship01.jpg")) > 0.95
    p = load_and_prepare(files["heic_rotated"], 64)
    assert (p.width, p.height) == (jpeg.height, jpeg.width)
    assert p.valid == (round(64 * jpeg.width / jpeg.height), 64)  # the portrait cat lies on its side now


def test_a_heif_collection_gives_its_primary_image(tmp_path):
    first, primary = Image.new("RGB", (64, 48), (255, 0, 0)), Image.new("RGB", (80, 60), (0, 0, 255))
    first.save(tmp_path / "two.heic", save_all=True, append_images=[primary], primary_index=1)
    im = open_image(tmp_path / "two.heic")
    assert im.size == primary.size and np.asarray(im)[..., 2].mean() > 200 > np.asarray(im)[..., 0].mean()


def test_a_raw_file_gives_its_preview_when_big_enough_else_a_demosaic(files):
    source = Image.open(SAMPLES / "pixabay/dog01.jpg")
    preview = open_image(files["dng"], draft_size=64)  # the preview (a quarter of the size) is enough
    demosaiced = open_image(files["dng"], draft_size=900)  # too small for that: half-size demosaic
    assert preview.info["vgg_retrieval_raw"] == "preview"
    assert demosaiced.info["vgg_retrieval_raw"] == "demosaic"
    assert max(preview.size) == max(source.size) // 4 and max(demosaiced.size) == max(source.size) // 2
    for im in (preview, demosaiced):
        assert im.info["vgg_retrieval_full_size"] == (source.width // 2 * 2, source.height // 2 * 2)
        assert _similar(im, source) > 0.9


def test_bad_files_of_each_format_are_one_line_each(files, tmp_path):
    for name in ("heic", "avif", "dng") + (("jxl",) if "jxl" in files else ()):
        data = files[name].read_bytes()
        for cut in (data[: len(data) // 2], data[:200]):
            bad = tmp_path / files[name].name
            bad.write_bytes(cut)
            d = decode_file((str(bad), str(tmp_path), 64, 0))
            assert d.problem and "\n" not in d.problem and d.array is None, (name, d.problem)
            assert any(w in d.problem for w in ("truncated", "corrupt", "not a RAW")), (name, d.problem)
    with pytest.raises(ImageError, match="too large"):
        open_image(files["dng"], max_pixels=1000)
    with pytest.raises(ImageError, match="too large"):
        open_image(files["heic"], max_pixels=1000)


@pytest.mark.parametrize("module,package", [("pillow_heif", "pillow-heif"), ("rawpy", "rawpy")])
def test_a_missing_package_is_an_error_line_naming_it(files, module, package):
    """Run where the package cannot be imported (a fresh interpreter with it blocked): its files are
    an error line naming what to install; the other formats still decode."""
    path = files["heic"] if module == "pillow_heif" else files["dng"]
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from indexer.update.decode import decode_file\n"
        f"d = decode_file(({str(path)!r}, '/', 64, 0)); print(d.problem)\n"
        f"d = decode_file(({str(SAMPLES / NIKON)!r}, '/', 64, 0)); print(d.problem, d.array.shape)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.strip().splitlines()
    assert f"pip install '{package}'" in first and "photo" in first
    assert second == "None (64, 64, 3)"


def test_capture_metadata_is_read_from_every_format(files):
    assert capture_time("2019:04:14 13:46:10", "830", "+02:00") == "2019-04-14T13:46:10.830+02:00"
    assert capture_time("0000:00:00 00:00:00") is None and capture_time("  ") is None
    jpeg = read_capture((SAMPLES / IPHONE).read_bytes(), IPHONE)
    assert jpeg.captured == "2019-04-14T13:46:10.830" and jpeg.camera == "Apple iPhone 6"
    assert jpeg.gps_lat is not None and 40 < jpeg.gps_lat < 60 and 0 < jpeg.gps_lon < 10  # Leuven
    assert read_capture(files["heic"].read_bytes(), "x.heic") == jpeg  # the HEIC kept the EXIF
    cat = read_capture((SAMPLES / NIKON).read_bytes(), NIKON)
    assert cat.captured == "2015-12-29T10:30:47" and cat.model == "NIKON D3200"
    assert read_capture(files["avif"].read_bytes(), "x.avif") == cat
    dng = read_capture(files["dng"].read_bytes(), "dog.dng")
    assert dng.captured == "2015-12-29T10:30:47" and dng.camera == "TestMake DNG-1"
    assert read_capture(b"not an image at all", "x.jpg").empty


@pytest.fixture(scope="module")
def library(module_tmp, files, vgg16_model):
    """A folder with a JPEG and its HEIC copy, the AVIF, DNG (and JXL) files, other photos and a
    truncated HEIC, indexed with the shared VGG16 (FP32)."""
    base = module_tmp("library")
    folder = base / "photos"
    copy_photos(
        folder,
        [IPHONE, NIKON, "pixabay/ship01.jpg", "pixabay/bird01.jpg", "sklearn/china.jpg", "opencv/home.jpg"],
        flat=True,
    )
    for name in ("heic", "avif", "dng", "jxl"):
        if name in files:
            (folder / files[name].name).write_bytes(files[name].read_bytes())
    (folder / "broken.heic").write_bytes(files["heic"].read_bytes()[:300])
    spec, net, model_dir = vgg16_model
    ix = base / "ix"
    with Index.create(ix, spec, model_dir=model_dir) as idx:
        report = idx.update([folder], workers=0, progress=False)
    return folder, ix, report


def test_the_index_holds_every_format_and_a_heic_finds_its_jpeg(library, capsys):
    folder, ix, report = library
    names = {
        "leuvenA.jpg",
        "cat01.jpg",
        "ship01.jpg",
        "bird01.jpg",
        "china.jpg",
        "home.jpg",
        "leuven.heic",
        "cat.avif",
        "dog.dng",
    } | ({"ship.jxl"} if (folder / "ship.jxl").exists() else set())
    assert [Path(p).name for p, _ in report.errors] == ["broken.heic"]
    with Index.open(ix) as idx:
        assert {Path(p).name for _, p, *_ in idx.store.photo_facts()} == names and idx.check().ok
        formats = {Path(r.path).name: r.format for r in idx.store.rows_by_id(idx.store.all_ids()).values()}
        assert (formats["leuven.heic"], formats["dog.dng"], formats["cat.avif"]) == ("HEIF", "RAW", "AVIF")
    capsys.readouterr()
    assert main(["search", str(folder / "leuven.heic"), "--index", str(ix), "--json", "-k", "3"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert [Path(h["path"]).name for h in hits[:2]] == ["leuven.heic", "leuvenA.jpg"]
    assert hits[1]["captured"] == "2019-04-14T13:46:10.830" and hits[1]["camera"] == "Apple iPhone 6"
    assert main(["search", str(folder / "cat01.jpg"), "--index", str(ix), "--json", "-k", "2"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert [Path(h["path"]).name for h in hits] == ["cat01.jpg", "cat.avif"]
    assert all(h["captured"] == "2015-12-29T10:30:47" and h["camera"] == "NIKON D3200" for h in hits)
    assert main(["info", "--index", str(ix)]) == 0
    out = capsys.readouterr().out
    # dated: leuvenA.jpg and its HEIC, cat01.jpg and its AVIF, ship01.jpg (and its JXL), bird01.jpg, dog.dng
    dated = 7 + int((folder / "ship.jxl").exists())
    assert f"captured: {dated} photos dated, 2012-09-01T15:47:47 to 2019-04-14T13:46:10.830" in out
    assert "Apple iPhone 6 (2)" in out and "NIKON D3200 (2)" in out


def test_capture_metadata_by_id_and_path_for_the_duplicate_finder(library):
    folder, ix, _ = library
    with Index.open(ix) as idx:
        jpeg, heic = str(folder / "leuvenA.jpg"), str(folder / "leuven.heic")
        by_path = idx.capture_metadata([jpeg, heic, str(folder / "home.jpg")])
        assert set(by_path) == {jpeg, heic}  # home.jpg has no capture metadata
        assert by_path[jpeg].captured == by_path[heic].captured and by_path[jpeg].model == "iPhone 6"
        assert (by_path[heic].width, by_path[heic].height) == (751, 563)
        row = idx.store.row_by_path(heic)
        assert idx.capture_metadata([row.id]) == {row.id: by_path[heic]}


def test_a_heic_copy_of_a_jpeg_is_its_duplicate_and_the_heic_is_kept(library, tmp_path):
    from indexer.dedup import dedup_index

    folder, ix, _ = library
    report, _ = dedup_index(ix, tmp_path / "report")
    jpeg = str(folder / "leuvenA.jpg")
    groups = [g for g in report.groups if jpeg in [m.path for m in g.members] + [g.keeper.path]]
    assert len(groups) == 1
    g = groups[0]
    assert Path(g.keeper.path).name == "leuven.heic"
    assert [Path(m.path).name for m in g.members] == ["leuvenA.jpg"]
    cat = [g for g in report.groups if Path(g.keeper.path).name in ("cat01.jpg", "cat.avif")]
    assert cat and Path(cat[0].keeper.path).name in ("cat01.jpg", "cat.avif")  # AVIF is no camera original


def test_an_index_made_before_capture_metadata_opens_and_updates(tmp_path, make_index):
    folder = tmp_path / "photos"
    copy_photos(folder, [IPHONE], flat=True)
    make_index(tmp_path / "ix").update([folder], workers=0, progress=False)
    db = sqlite3.connect(tmp_path / "ix" / "index.sqlite")
    db.execute("DROP TABLE captures")
    db.commit()
    db.close()
    copy_photos(folder, [NIKON], flat=True)
    with Index.open(tmp_path / "ix") as idx:
        assert idx.store.has_captures  # made again when the index is opened
        rep = idx.update([folder], workers=0, progress=False)
        assert rep.added == 1 and idx.count == 2
        found = idx.capture_metadata([str(folder / "cat01.jpg"), str(folder / "leuvenA.jpg")])
        assert found[str(folder / "cat01.jpg")].model == "NIKON D3200"
        assert found[str(folder / "leuvenA.jpg")].model == "iPhone 6"  # indexed before: read once now
        assert idx.store.photos_without_capture() == []


def test_a_folder_of_videos_only_indexes_with_the_defaults(tmp_path):
    from test_video_index import make_clip

    folder = tmp_path / "clips"
    folder.mkdir()
    make_clip(folder / "a.mp4", ["pixabay/cat01.jpg", "pixabay/ship01.jpg"])
    make_clip(folder / "b.mp4", ["pixabay/dog01.jpg", "sklearn/china.jpg"])
    ix = tmp_path / "ix"
    assert main(["index", str(folder), "--index", str(ix), *TINY]) == 0  # INT8, the default
    model = json.loads((ix / "model" / "model.json").read_text())
    assert model["precision"] == "int8" and model["quantization"]["calibration_images"] >= 3  # keyframes
    with Index.open(ix) as idx:
        assert idx.count >= 4 and idx.check().ok
    shutil.rmtree(ix / "model")  # lost: made again at INT8, calibrated on the keyframes again
    with Index.open(ix) as idx:
        idx.ensure_exported_model()
        assert idx.check().ok
    again = json.loads((ix / "model" / "model.json").read_text())
    assert again["precision"] == "int8" and again["quantization"]["calibration_images"] >= 3


def test_too_few_pictures_start_an_fp32_index_and_say_so(tmp_path, capsys):
    folder = tmp_path / "photos"
    copy_photos(folder, [IPHONE], flat=True)
    (folder / "x.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40)  # a broken HEIC: no picture
    ix = tmp_path / "ix"
    capsys.readouterr()
    assert main(["index", str(folder), "--index", str(ix), *TINY]) == 0
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if "too few pictures" in x]
    assert len(line) == 1 and "(1, at least 3 needed)" in line[0] and "FP32" in line[0]
    with Index.open(ix) as idx:
        assert idx.precision == "fp32" and idx.count == 1


RAW_KDC = Path(__file__).resolve().parents[1] / "data" / "raw" / "RAW_KODAK_DC50.KDC"


def test_a_real_camera_raw_file_is_read_and_indexed(tmp_path, make_index):
    """A Kodak DC50 KDC from a real camera (rawpy's own test file): recognised as RAW, demosaiced
    (it has no preview big enough) to the camera's 3:2 picture, indexed beside a JPEG."""
    head = read_head(RAW_KDC)
    assert image_kind(head, RAW_KDC.name) == "RAW"
    im = open_image(str(RAW_KDC))
    assert im.mode == "RGB" and im.info.get("vgg_retrieval_format") == "RAW"
    assert sorted(im.size) == [256, 384] and np.asarray(im).std() > 10  # a picture, not a flat frame
    folder = tmp_path / "photos"
    copy_photos(folder, ["pixabay/cat01.jpg"], flat=True)
    shutil.copy(RAW_KDC, folder / RAW_KDC.name)
    idx = make_index(tmp_path / "ix")
    rep = idx.update([folder], progress=False, workers=0)
    assert rep.errors == [] and idx.count == 2
    hits = idx.search(str(folder / RAW_KDC.name), k=2)
    assert Path(hits[0].path).name == RAW_KDC.name and hits[0].score > 0.99 and len(hits) == 2
    idx.close()
