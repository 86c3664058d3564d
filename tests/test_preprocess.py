"""Decoding and the input policy: modes, EXIF, aspect ratio, draft decoding, padding, limits."""
import io

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLES
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
        arr = (np.asarray(base.convert("L"), dtype=np.uint16) * 257)
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
    from test_bad_input import png_bomb

    with pytest.raises(ImageError, match="image too large"):
        open_image(png_bomb(10000, 9500), max_pixels=90_000_000)  # 95 MP: over our limit
    with pytest.raises(ImageError, match="corrupt|truncated"):
        open_image(png_bomb(10000, 9500), max_pixels=100_000_000)  # under it: decoded, and it is broken
