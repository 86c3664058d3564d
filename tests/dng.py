"""Writing real DNG files (tifffile) for the format tests and benchmarks/formats.py: a picture's
linearised pixels as a 12-bit RGGB Bayer mosaic with the DNG tags LibRaw needs, and optionally an RGB
preview in IFD 0 with the raw image in its sub-IFD, as cameras write them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

XYZ_TO_SRGB = [
    3.2404542,
    -1.5371385,
    -0.4985314,
    -0.969266,
    1.8760108,
    0.041556,
    0.0556434,
    -0.2040259,
    1.0572252,
]
RAW_TAGS = [
    (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
    (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: RGGB
    (50714, "H", 1, (0,), True),  # BlackLevel
    (50717, "H", 1, (4095,), True),  # WhiteLevel
]


def write_dng(
    rgb: np.ndarray,
    dest: Path,
    preview: int | None = 4,
    camera: str = "vgg-retrieval test camera",
    exif: tuple = (),
) -> Path:
    """A DNG of the uint8 RGB picture ``rgb`` at ``dest``; ``preview``: an RGB preview that many times
    smaller (None: none); ``exif``: more IFD 0 tags as tifffile extratags (Make, DateTimeOriginal...)."""
    import tifffile
    from PIL import Image

    h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    lin = (rgb[:h, :w].astype(np.float64) / 255.0) ** 2.2 * 4095
    cfa = np.zeros((h, w), np.uint16)
    cfa[0::2, 0::2], cfa[0::2, 1::2] = lin[0::2, 0::2, 0], lin[0::2, 1::2, 1]
    cfa[1::2, 0::2], cfa[1::2, 1::2] = lin[1::2, 0::2, 1], lin[1::2, 1::2, 2]
    ifd0 = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, camera, True),  # UniqueCameraModel
        (50721, "2i", 9, [v for x in XYZ_TO_SRGB for v in (int(round(x * 10000)), 10000)], True),
        (50778, "H", 1, (21,), True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
        *exif,
    ]
    with tifffile.TiffWriter(dest) as t:
        if preview:
            small = Image.fromarray(np.ascontiguousarray(rgb[:h, :w])).resize((w // preview, h // preview))
            t.write(
                np.asarray(small), photometric="rgb", subfiletype=1, subifds=1, extratags=ifd0, metadata=None
            )
            t.write(cfa, photometric=32803, subfiletype=0, extratags=RAW_TAGS, metadata=None)
        else:
            t.write(cfa, photometric=32803, subfiletype=0, extratags=ifd0 + RAW_TAGS, metadata=None)
    return dest
