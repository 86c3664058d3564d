"""The files the copy tests and the keeper checks read at sizes of their own, kept for the next
pairs: a pair's re-take test reads each file at a size set by the pair (``retake.shifted``), the
detail test the narrower file (``copytests.extra_detail``), the keeper check a file's own pixels
(``keeper.native_tile``), and the pairs of one file run close together. The entropy decoding of a
camera JPEG costs about as much at any draft scale, so reads that decode the same pixels share one
decode (``decode_key``). Every array handed out is read-only and the same as a fresh read."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from retrieval.preprocess import open_image, target_size

READS = 8  # grey reads and native tiles kept (at most 2048 px: ~4 MB each)
DECODE_BYTES = 256 << 20  # decodes kept for reads at other sizes (RGB: a 12 MP photo at half size 9 MB)


def grey_of(im, max_side: int, min_side: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """``verify.read_grey`` of a picture that ``open_image`` decoded with ``draft_size=max_side``
    (or with another size that ``decode_key`` finds decodes the same pixels)."""
    from PIL import Image

    native = tuple(im.info.get("vgg_retrieval_full_size") or im.size)
    long_side = max(im.size)
    target = max_side if long_side > max_side else (max(long_side, min_side))
    if target != long_side:
        scale = target / long_side
        im = im.resize(
            (max(1, round(im.width * scale)), max(1, round(im.height * scale))),
            Image.BICUBIC if scale > 1 else Image.BILINEAR,
            reducing_gap=None if scale > 1 else 2.0,
        )
    return np.asarray(im.convert("L")), native


def decode_key(path: str, side: int):
    """A key that two ``open_image(path, draft_size=side)`` calls share exactly when they decode the
    same pixels: a JPEG at the same draft scale (a read at 700 px and one at 900 px both decode a
    4000 px file at a quarter), a PNG whole at any size; None for other formats (not shared)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", target_size(im.width, im.height, side))
                return path, im.format, im.size, im.mode
            if im.format == "PNG":
                return path, im.format, im.size, im.mode
    except Exception:  # noqa: BLE001 - not one Pillow opens (a RAW, gone): decoded as asked, not shared
        return None
    return None


class FileReads:
    """``read(path, side)``: (grey uint8, native (w, h)) as ``verify.read_grey(path, side)``;
    ``native_tile(path)``: as ``keeper.native_tile(path)``. Thread-safe; the latest few kept."""

    def __init__(self, reads: int = READS, decode_bytes: int = DECODE_BYTES):
        self.most_reads, self.decode_bytes = reads, decode_bytes
        self._greys: OrderedDict = OrderedDict()
        self._tiles: OrderedDict = OrderedDict()
        self._decodes: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def _kept(self, store: OrderedDict, key, make, most: int, cost=lambda value: 1):
        """``store[key]``, made by ``make()`` and kept (the latest, up to ``most`` of ``cost``: by
        default, entries) when not there yet; a key of None: made, not kept."""
        if key is not None:
            with self._lock:
                if key in store:
                    store.move_to_end(key)
                    return store[key][0]
        value = make()
        if key is not None:
            with self._lock:
                store[key] = (value, cost(value))
                while len(store) > 1 and sum(c for _, c in store.values()) > most:
                    store.popitem(last=False)
        return value

    def read(self, path: str, side: int) -> tuple[np.ndarray, tuple[int, int]]:
        def make():
            grey, native = grey_of(self._decoded(path, side), side)
            grey.setflags(write=False)
            return grey, native

        return self._kept(self._greys, (path, side), make, self.most_reads)

    def native_tile(self, path: str) -> np.ndarray:
        from .keeper import native_tile  # lazy: keeper reads the verifier's, not the other way

        def make():
            tile = native_tile(path)
            tile.setflags(write=False)
            return tile

        return self._kept(self._tiles, path, make, self.most_reads)

    def _decoded(self, path: str, side: int):
        """``open_image(path, draft_size=side)``, shared by the reads that decode the same pixels."""
        return self._kept(
            self._decodes,
            decode_key(path, side),
            lambda: open_image(path, draft_size=side),
            self.decode_bytes,
            lambda im: im.width * im.height * len(im.getbands()),  # bytes of the RGB (or grey) pixels
        )
