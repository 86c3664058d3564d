"""Decoding and the input policy: modes, EXIF, aspect ratio, draft decoding, padding, limits."""

import io

import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image

from retrieval.preprocess import ImageError, load_and_prepare, open_image, prepare, target_size


def _bytes(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_target_size_keeps_aspect_and_longer_side():
    assert target_size(640, 480, 224) == (224, 168)
    assert target_size(480, 640, 224) == (168, 224)
    assert target_size(1, 1, 224) == (224, 224)
    assert target_size(5000, 1, 224) == (224, 1)


def test_prepare_pads_bottom_right_with_zeros():
    im = Image.new("RGB", (200, 100), (200, 10, 30))
    p = prepare(im, 64)
    assert p.array.shape == (64, 64, 3) and p.array.dtype == np.uint8
    assert p.valid == (32, 64)
    assert (p.array[:32] == (200, 10, 30)).all()
    assert (p.array[32:] == 0).all()


@pytest.mark.parametrize("mode", ["P", "LA", "CMYK", "I;16", "RGBA", "L", "1"])
def test_any_mode_becomes_rgb(mode):
    base = Image.open(SAMPLES / "skimage" / "coffee.png").convert("RGB").resize((60, 40))
    if mode == "I;16":
        arr = np.asarray(base.convert("L"), dtype=np.uint16) * 257
        im = Image.fromarray(arr)
        assert im.mode.startswith("I;16")
        data = _bytes(im, "PNG")
    elif mode == "CMYK":
        data = _bytes(base.convert("CMYK"), "JPEG")
    elif mode == "P":
        pal = base.convert("P", palette=Image.Palette.ADAPTIVE)
        pal.info["transparency"] = 0
        data = _bytes(pal, "PNG", transparency=0)
    else:
        data = _bytes(base.convert(mode), "PNG" if mode != "1" else "BMP")
    im = open_image(data)
    assert im.mode == "RGB" and im.size == (60, 40)
    a = np.asarray(im, dtype=np.float64)
    if mode == "I;16":  # 16-bit scaled to 8-bit, not clipped to white
        assert abs(a.mean() - np.asarray(base.convert("L")).mean()) < 2
    assert 5 < a.mean() < 250


def test_transparent_pixels_become_white():
    im = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert np.asarray(open_image(_bytes(im, "PNG")))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (80, 40), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 40, 40))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    p = load_and_prepare(_bytes(im, "JPEG", exif=exif, quality=95), 64)
    assert (p.width, p.height) == (40, 80)
    assert p.valid == (64, 32)
    top = p.array[:16, :32].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60  # red half is on top after rotation


def test_jpeg_draft_decoding_matches_full_decode():
    src = Image.open(SAMPLES / "opencv" / "baboon.jpg").convert("RGB").resize((1600, 1600))
    data = _bytes(src, "JPEG", quality=92)
    drafted = load_and_prepare(data, 224)
    full = prepare(Image.open(io.BytesIO(data)).convert("RGB"), 224)
    assert (drafted.width, drafted.height) == (1600, 1600)  # metadata is of the file, not the draft
    diff = np.abs(drafted.array.astype(int) - full.array.astype(int)).mean()
    assert diff < 6
    im = Image.open(io.BytesIO(data))
    im.draft("RGB", (224, 224))
    assert im.size[0] < 1600  # draft mode really reduces the decode


def test_first_frame_of_animated_gif_and_multipage_tiff():
    frames = [Image.new("RGB", (20, 20), c) for c in [(255, 0, 0), (0, 255, 0)]]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(open_image(gif.getvalue()))[0, 0, 0] > 200
    tif = io.BytesIO()
    frames[1].save(tif, "TIFF", save_all=True, append_images=frames[:1])
    assert np.asarray(open_image(tif.getvalue()))[0, 0].tolist() == [0, 255, 0]
    assert open_image(SAMPLES / "skimage" / "multipage.tif").mode == "RGB"  # a real 2-page TIFF


def test_bad_inputs_raise_image_error_with_reason():
    with pytest.raises(ImageError, match="empty"):
        open_image(b"")
    with pytest.raises(ImageError, match="not an image"):
        open_image(b"hello world, not an image")
    good = _bytes(Image.new("RGB", (300, 300), (1, 2, 3)), "JPEG")
    with pytest.raises(ImageError, match="truncated|corrupt"):
        open_image(good[: len(good) // 2])
    with pytest.raises(ImageError, match="too large"):
        open_image(_bytes(Image.new("L", (200, 200)), "PNG"), max_pixels=100 * 100)


def test_pixel_limit_is_ours_not_pillows_warning():
    """Found by benchmarks/fuzz_decode.py: a header between Pillow's warning threshold (89 MP) and
    our limit escaped as a raw DecompressionBombWarning."""
    from conftest import png_bomb

    with pytest.raises(ImageError, match="image too large"):
        open_image(png_bomb(10000, 9500), max_pixels=90_000_000)  # 95 MP: over our limit
    with pytest.raises(ImageError, match="corrupt|truncated"):
        open_image(png_bomb(10000, 9500), max_pixels=100_000_000)  # under it: decoded, and it is broken


# --- border trimming (ModelSpec.trim_borders) --------------------------------------------------
def _photo(name="pixabay/cat01.jpg"):
    return Image.open(SAMPLES / name).convert("RGB")


def _jpeg_round_trip(im, quality=85):
    return Image.open(io.BytesIO(_bytes(im, "JPEG", quality=quality))).convert("RGB")


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (200, 200, 200), (30, 60, 120)])
def test_trim_removes_a_solid_border(colour):
    from PIL import ImageOps

    from retrieval.preprocess import border_box, trim_borders

    photo = _photo()
    pad = int(0.15 * max(photo.size))
    framed = _jpeg_round_trip(ImageOps.expand(photo, border=pad, fill=colour))
    box = border_box(framed)
    assert box is not None
    expect = (pad, pad, pad + photo.width, pad + photo.height)
    # JPEG ringing next to the picture (8x8 blocks) may leave a few lines of the border, never more
    assert all(abs(a - b) <= 12 for a, b in zip(box, expect)), (box, expect)
    assert box[0] <= expect[0] + 2 and box[1] <= expect[1] + 2  # no picture cut away
    assert box[2] >= expect[2] - 2 and box[3] >= expect[3] - 2
    assert trim_borders(framed).size == (box[2] - box[0], box[3] - box[1])


def test_trim_removes_a_screenshot_canvas_and_bars():
    from PIL import ImageDraw

    from retrieval.preprocess import border_box

    small = _photo().resize((160, 240))
    canvas = Image.new("RGB", (224, 336), (240, 240, 240))
    d = ImageDraw.Draw(canvas)
    d.rectangle((0, 0, 224, 15), fill=(50, 50, 60))  # title bar
    d.rectangle((0, 320, 224, 336), fill=(220, 220, 225))  # status bar
    canvas.paste(small, (32, 48))
    assert border_box(canvas) == (32, 48, 192, 288)
    # JPEG's 8x8 blocks (16x16 for colour) ring next to the picture: a few lines of canvas may stay
    box = border_box(_jpeg_round_trip(canvas))
    assert box is not None
    assert all(abs(a - b) <= 10 for a, b in zip(box, (32, 48, 192, 288))), box


@pytest.mark.parametrize(
    "name",
    [
        "skimage/coffee.png",
        "skimage/chelsea.png",
        "skimage/astronaut.png",
        "sklearn/china.jpg",
        "opencv/baboon.jpg",
        "pixabay/cat01.jpg",
    ],
)
def test_trim_leaves_photos_without_borders_alone(name):
    from retrieval.preprocess import border_box, trim_borders

    im = _photo(name)
    assert border_box(im) is None
    assert trim_borders(im) is im


def test_trim_keeps_a_dark_sky_and_a_gradient_sky():
    """Real content that is nearly uniform: a dark night sky over 40% of the picture (longer than
    a side may lose) and a smooth blue gradient sky (not a solid band) stay whole."""
    from retrieval.preprocess import border_box

    rng = np.random.default_rng(0)
    photo = np.asarray(_photo().resize((300, 200)), dtype=np.int16)
    night = photo.copy()
    night[:80] = 8 + rng.integers(-2, 3, size=(80, 300, 3))  # 40% near-black sky with sensor noise
    assert border_box(Image.fromarray(np.clip(night, 0, 255).astype(np.uint8))) is None
    day = photo.copy()
    ramp = np.linspace(0, 1, 60)[:, None, None]
    day[:60] = (
        np.array([60, 110, 190]) + ramp * np.array([60, 50, 40]) + rng.integers(-1, 2, size=(60, 300, 3))
    )
    box = border_box(Image.fromarray(np.clip(day, 0, 255).astype(np.uint8)))
    assert box is None or box[1] <= 0.05 * 200  # at most a sliver of the gradient's first lines


def test_trimmed_copy_prepares_like_the_original():
    """What trimming is for: a bordered copy and its original give nearly the same model input."""
    from PIL import ImageOps

    photo = _photo()
    framed = ImageOps.expand(photo, border=int(0.2 * max(photo.size)), fill=(255, 255, 255))
    a, b = prepare(photo, 96, trim=True), prepare(framed, 96, trim=True)
    assert a.valid == b.valid
    assert np.abs(a.array.astype(int) - b.array.astype(int)).mean() < 6
    untrimmed = prepare(framed, 96)
    assert untrimmed.valid != a.valid  # without trimming the picture shrinks inside the frame
    assert (b.width, b.height) == framed.size  # the image's own size is reported, not the trimmed one


def test_trim_prepared_matches_on_the_model_input():
    from PIL import ImageOps

    from retrieval.preprocess import trim_prepared

    photo = _photo()
    framed = ImageOps.expand(photo, border=int(0.15 * max(photo.size)), fill=(0, 0, 0))
    p = prepare(framed, 128)
    arr, valid = trim_prepared(p.array, p.valid)
    ref = prepare(photo, 128)
    assert abs(valid[0] - ref.valid[0]) <= 2 and abs(valid[1] - ref.valid[1]) <= 2
    assert arr.shape == (128, 128, 3) and (arr[valid[0] :] == 0).all() and (arr[:, valid[1] :] == 0).all()
    plain = prepare(photo, 128)
    same, v2 = trim_prepared(plain.array, plain.valid)
    assert same is plain.array and v2 == plain.valid  # nothing to trim: untouched


def test_spec_trim_borders_round_trips_and_old_specs_keep_their_model_id():
    from retrieval.spec import ModelSpec

    old = ModelSpec(trim_borders=False)
    new = ModelSpec(trim_borders=True)
    assert new.model_id != old.model_id
    for s in (old, new):
        assert ModelSpec.from_dict(s.to_dict()) == s
        assert ModelSpec.from_dict(s.to_dict()).model_id == s.model_id
    legacy = old.to_dict()
    del legacy["trim_borders"], legacy["input_policy"], legacy["scales"]  # a spec stored before these fields
    loaded = ModelSpec.from_dict(legacy)
    assert loaded.trim_borders is False and loaded.model_id == old.model_id
    # the id of an untrimmed spec is computed exactly as before the field existed
    import hashlib
    import json

    d = {k: v for k, v in legacy.items() if k not in ("weights", "class_names", "head")}
    assert old.model_id == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    assert "+trim" in new.describe() and "+trim" not in old.describe()


@pytest.mark.parametrize("engine", ["torch", "openvino"])
def test_every_engine_trims_when_the_spec_says_so(tiny_model, engine):
    """Embedder.embed_batch applies spec.trim_borders (the same code for every engine): a framed
    copy embeds like its trimmed input, the caller's arrays are left alone, and a spec without
    trimming embeds the frame as it is."""
    from PIL import ImageOps

    from retrieval.engines import load_embedder
    from retrieval.preprocess import trim_prepared

    spec, net, model_dir = tiny_model
    photo = _photo()
    framed = ImageOps.expand(photo, border=int(0.2 * max(photo.size)), fill=(255, 255, 255))
    p = load_and_prepare(framed, spec.input_geometry)
    images, sizes = p.array[None].copy(), np.array([p.valid], dtype=np.int64)
    before = images.copy(), sizes.copy()
    on = load_embedder(engine, spec.replace(trim_borders=True), model_dir, net=net)
    off = load_embedder(engine, spec.replace(trim_borders=False), model_dir, net=net)
    trimmed, valid = trim_prepared(p.array, p.valid, spec.input_geometry)
    assert valid != p.valid  # precondition: there is a frame to trim
    d_on = on.embed_batch(images, sizes)
    assert (images == before[0]).all() and (sizes == before[1]).all()
    d_ref = off.embed_batch(trimmed[None], np.array([valid], dtype=np.int64))
    d_off = off.embed_batch(images, sizes)
    assert float(d_on[0] @ d_ref[0]) > 0.9999
    assert float(d_on[0] @ d_off[0]) < 0.999  # the frame does change the descriptor
    # photos without a frame: identical either way
    q = load_and_prepare(photo, spec.input_geometry)
    a = on.embed_batch(q.array[None], np.array([q.valid]))
    b = off.embed_batch(q.array[None], np.array([q.valid]))
    assert np.allclose(a, b, atol=1e-6)
