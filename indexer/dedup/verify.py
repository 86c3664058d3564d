"""Pixel-level verification of near-duplicate candidates: is one image a copy of the other?

More: docs/design-notes.md (``indexer.dedup.verify``)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial

import numpy as np

from retrieval.preprocess import open_image

from . import capture as capture_evidence
from . import resave
from .align import Features, detail_outside, fits, hull_share, pixel_agreement, plausible, ratio_matches
from .copytests import extra_detail, local_agreement, mid_image, residual, spill
from .featurecache import FeatureCache
from .filereads import FileReads, grey_of
from .photofeatures import PhotoFeatures
from .progress import ticker
from .retake import crossed, relit, shifted
from .rule import (
    FRAME_ASPECT,
    MIN_KEYPOINTS,
    Evidence,
    classify,
    copy_failures,
    copy_proven,
    degraded,
    scene,
    turned_round,
)

_Evidence = Evidence
FEATURES = 1000
MAX_SIDE = 512
MIN_SIDE = 256
PIXEL_SIDE = 128
RATIO = 0.8
# a scene pair failing at most this many copy tests one way is measured the other way round: copies
# that fail one way by chance fail 1-2 (41 of the generated set's 43; 2 fail 3), while 190 of the
# 259 real same-scene pairs fail 3 or more (docs/dedup.md, "Both ways round")
BACKWARD_FAILURES = 2


def copy_possible(capture: str | None) -> bool:
    """Could a pair with this capture evidence be a duplicate at all - were its copy tests perfect?
    (When not - EXIF says two captures - the copy tests, the costliest part, are not run: they
    could not change the verdict.)"""
    perfect = _Evidence(
        inliers=1 << 30,
        matches=1 << 30,
        cover=1.0,
        pixel=1.0,
        cells=1.0,
        overlap=1.0,
        outside=0.0,
        residual=0.0,
        residual_px=0.0,
        local=1.0,
        weakest=1.0,
        moved=0.0,
        spill=0.0,
        extra=0.0,
        capture=capture,
    )
    return classify(perfect) == "duplicate" or classify(replace(perfect, frame=True)) == "duplicate"


def _refined(cv2, src: np.ndarray, dst: np.ndarray, found: list) -> list:
    """The RANSAC fits' transforms, and a least-squares homography through the largest inlier set
    (RANSAC's 8 px tolerance leaves a copy misaligned by a fraction of a pixel at 384 px)."""
    out = [f[0] for f in found]
    inl = max(found, key=lambda f: int(f[1].sum()))[1]
    if inl.sum() >= 8:
        hom, _ = cv2.findHomography(src[inl], dst[inl], 0)
        if hom is not None and abs(hom[2, 2]) > 1e-12 and plausible(hom):
            out.append(hom / hom[2, 2])
    return out


def _cv2():
    try:
        import cv2
    except ImportError:  # pragma: no cover - a dependency; this is for broken installs
        from retrieval.errors import UserError  # lazy: only a broken install gets here

        raise UserError(
            "keypoint verification needs OpenCV: pip install opencv-python-headless "
            "(or run dedup with --no-verify)"
        ) from None
    return cv2


def grey_image(path: str, max_side: int = MAX_SIDE, min_side: int = 0) -> np.ndarray:
    """The image at ``path`` as grey uint8, at most ``max_side`` px per side (EXIF-rotated); an
    image whose long side is under ``min_side`` is enlarged to it."""
    return read_grey(path, max_side, min_side)[0]


def read_grey(path: str, max_side: int = MAX_SIDE, min_side: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """(``grey_image``, the file's own (width, height) after its EXIF rotation)."""
    return grey_of(open_image(path, draft_size=max_side), max_side, min_side)


class Verifier:
    """``verify(pairs of paths)`` -> Evidence per pair (see the module doc)."""

    def __init__(
        self,
        features: int | None = None,
        max_side: int = MAX_SIDE,
        cache_size: int = 4096,
        workers: int | None = None,
        min_keypoints: int = MIN_KEYPOINTS,
        cache_file=None,
        captures=None,
        settle_early: bool = False,
    ):
        """``cache_file``: where the features are kept between runs (``featurecache``; None: this run
        only); ``captures``: capture evidence already known, by path (the index's); ``settle_early``:
        skip the copy tests where the capture evidence already rules a duplicate out (the verdict
        is the same; the evidence then lacks their measures)."""
        self.cv2 = _cv2()
        features = FEATURES if features is None else features  # read at call time (benchmarks set it)
        self.features, self.max_side, self.min_keypoints = features, max_side, min_keypoints
        self.cache_size = cache_size
        self.workers = workers or min(8, os.cpu_count() or 1)
        disk = None
        if cache_file is not None:
            disk = FeatureCache(
                cache_file, {"features": features, "max_side": max_side, "min_side": MIN_SIDE}
            )
        self.store = PhotoFeatures(self._compute, cache_size, disk, captures)
        self.settle_early = settle_early
        self._local = threading.local()
        self.reads = FileReads()  # the copy tests' and keeper checks' file reads, the latest few

    @property
    def unreadable(self) -> set[str]:
        return self.store.unreadable

    # --- features -----------------------------------------------------------------------------
    def _orb(self):
        """This thread's ORB detector: OpenCV objects are not shared across threads."""
        if not hasattr(self._local, "orb"):
            self._local.orb = self.cv2.ORB_create(nfeatures=self.features)
        return self._local.orb

    def features_of(self, path: str, mirrored: bool = False) -> Features | None:
        """ORB keypoints and a small grey copy of ``path`` (of its mirror image); None if unreadable.
        Made once per file (``photofeatures``), kept on disk when the verifier has a ``cache_file``."""
        return self.store.get(path, mirrored)

    def prefetch(self, paths, progress=None, mirrored=()) -> None:
        """The features of ``paths`` (and of the mirror images of ``mirrored``) made on the
        verifier's workers, before the pairs need them."""
        self.store.prefetch(paths, self.workers, progress, mirrored)

    def close(self) -> None:
        """Write what the feature cache still holds and close it."""
        self.store.close()

    def _compute(self, path: str, mirrored: bool) -> Features:
        """The features of ``path`` (its mirror image), its capture left for the caller."""
        last = getattr(self._local, "decoded", None)  # the upright one's, made just before on this thread
        grey, native = (
            last[1:] if last is not None and last[0] == path else read_grey(path, self.max_side, MIN_SIDE)
        )
        self._local.decoded = None if mirrored else (path, grey, native)
        if mirrored:
            grey = np.ascontiguousarray(grey[:, ::-1])
        points, desc = self._orb().detectAndCompute(grey, None)
        h, w = grey.shape
        s = min(1.0, PIXEL_SIDE / max(h, w))
        small = self.cv2.resize(
            grey, (max(1, round(w * s)), max(1, round(h * s))), interpolation=self.cv2.INTER_AREA
        ).astype(np.float32)
        return Features(
            np.float32([p.pt for p in points]).reshape(-1, 2),
            desc if desc is not None else np.zeros((0, 32), np.uint8),
            (w, h),
            small,
            mid_image(self.cv2, grey, native),
            None,
            native,
            path,
            mirrored,
        )

    # --- matching -----------------------------------------------------------------------------
    def evidence(
        self, a: Features | None, b: Features | None, mirrored: bool = False, capture: str | None = None
    ) -> Evidence:
        """Keypoint and pixel agreement of ``a`` and ``b`` (see the module doc); ``capture``: their
        ``capture.compare`` (the copy tests are skipped when it already rules a duplicate out)."""
        cv2 = self.cv2
        Evidence = partial(_Evidence, capture=capture)  # noqa: N806 - every evidence below carries it
        if a is None or b is None:
            return Evidence(mirrored=mirrored)
        if len(a.descriptors) < 8 or len(b.descriptors) < 8:
            return self._frame_to_frame(a, b, Evidence(mirrored=mirrored))
        qi, ti = ratio_matches(a.descriptors, b.descriptors, RATIO)
        matches = len(qi)
        if matches < 8:
            return self._frame_to_frame(a, b, Evidence(matches=matches, mirrored=mirrored))
        src, dst = a.points[qi], b.points[ti]
        fits_found = fits(cv2, src, dst, min(self.min_keypoints, MIN_KEYPOINTS))
        if not fits_found:
            return self._frame_to_frame(a, b, Evidence(matches=matches, mirrored=mirrored))
        # the counted transform: the similarity or affine most matches agree on (a homography's 8
        # degrees of freedom find more chance agreement; it only competes on the pixels below)
        t, inl = max(
            fits_found[:-1] if len(fits_found) > 1 and fits_found[-1][2] else fits_found,
            key=lambda f: int(f[1].sum()),
        )[:2]
        n = int(inl.sum())
        scale = float(np.sqrt(abs(np.linalg.det(t[:2, :2]))))
        rotation = float(np.degrees(np.arctan2(t[1, 0], t[0, 0])) % 360)
        cover = min(hull_share(src[inl], a.size), hull_share(dst[inl], b.size))
        base = dict(
            inliers=n, matches=matches, cover=cover, rotation=rotation, scale=scale, mirrored=mirrored
        )
        if n < min(self.min_keypoints, MIN_KEYPOINTS):  # too few to align by
            return self._frame_to_frame(a, b, Evidence(**base))
        # the pixels, aligned by each plausible transform (a squashed or keystoned copy needs the
        # affine or the homography): the best agreement counts
        (pixel, cells, overlap), t = max(
            ((pixel_agreement(cv2, a, b, f[0]), f[0]) for f in fits_found), key=lambda r: (r[0][0], r[0][1])
        )
        sides = (detail_outside(cv2, a, b, t), detail_outside(cv2, b, a, np.linalg.inv(t)))
        ev = Evidence(pixel=pixel, cells=cells, overlap=overlap, outside=min(sides), **base)
        return self._copy_tests(
            a, b, [t] + _refined(cv2, src, dst, fits_found), ev, src[inl], dst[inl], sides
        )

    def _copy_tests(
        self, a: Features, b: Features, ts: list, ev: Evidence, src=None, dst=None, sides=(0.0, 0.0)
    ) -> Evidence:
        """``ev`` with the copy tests' measures (``copytests``), for a pair that passes the scene test;
        ``ts``: the transforms to align by (the one agreeing best at the compare resolution counts)."""
        if (
            not scene(ev, self.min_keypoints)
            or a.mid is None
            or b.mid is None
            or (self.settle_early and not copy_possible(ev.capture))
        ):
            return ev
        ts = list({np.asarray(t, np.float64).tobytes(): t for t in ts}.values())  # each transform once
        (local, weakest, moved), t = max(
            ((local_agreement(self.cv2, a, b, t), t) for t in ts), key=lambda r: (r[0][0] - r[0][2], r[0][1])
        )
        res = residual(self.cv2, src, dst, max(b.size)) if src is not None else ev.residual
        res_px = res * min(max(a.native or a.size), max(b.native or b.size))
        read = self._read_flipped(a, b)
        extra = extra_detail(self.cv2, a, b, t, sides, read=read)
        ev = replace(
            ev,
            local=local,
            weakest=weakest,
            moved=moved,
            residual=res,
            residual_px=res_px,
            extra=extra,
            transform=tuple(float(v) for v in (t / t[2, 2]).ravel()),
            spill=spill(self.cv2, a, b, t),
        )
        # the re-take tests (retake.py), for the pairs still a copy: the costliest last (it reads
        # both files again)
        if copy_proven(ev):
            ev = replace(ev, crossed=crossed(self.cv2, a, b, t), relit=relit(self.cv2, a, b, t))
        if copy_proven(ev):
            ev = replace(ev, shifted=shifted(self.cv2, a, b, t, read))
        return ev

    def _read_flipped(self, a: Features, b: Features):
        """``read_grey`` for the copy tests, mirrored like the Features of that path in this pair."""
        flipped = {f.path: bool(f.mirrored) for f in (a, b)}

        def read(path, side):
            grey, native = self._read_once(path, side)
            return (np.ascontiguousarray(grey[:, ::-1]) if flipped.get(path) else grey), native

        return read

    def _read_once(self, path: str, side: int):
        """``read_grey(path, side)``, kept for the next pairs of that file (``filereads``)."""
        return self.reads.read(path, side)

    def native_tile(self, path: str) -> np.ndarray:
        """``keeper.native_tile(path)``, kept for the next pairs of that file (``filereads``)."""
        return self.reads.native_tile(path)

    def _frame_to_frame(self, a: Features, b: Features, ev: Evidence) -> Evidence:
        """``ev`` with the pixels compared frame to frame when the two pictures have the same
        aspect (upright or turned by 180) or swapped aspects (turned by 90 or 270)."""
        (wa, ha), (wb, hb) = a.size, b.size
        same, swapped = abs(wa / ha - wb / hb), abs(wa / ha - hb / wb)
        if min(same, swapped) > FRAME_ASPECT * wa / ha:
            return ev
        sx, sy = (wb / wa, hb / ha) if same <= swapped else (wb / ha, hb / wa)
        turns = (
            ([[sx, 0, 0], [0, sy, 0]], [[-sx, 0, wb], [0, -sy, hb]])
            if same <= swapped
            else ([[0, sx, 0], [-sy, 0, hb]], [[0, -sx, wb], [sy, 0, 0]])
        )
        best = None
        for t in turns:
            t = np.vstack([np.array(t, np.float64), [0, 0, 1]])
            found = pixel_agreement(self.cv2, a, b, t)
            if best is None or found[0] > best[0][0]:
                best = (found, t)
        (pixel, cells, overlap), t = best
        ev = replace(
            ev,
            frame=True,
            pixel=pixel,
            cells=cells,
            overlap=overlap,
            outside=0.0,
            rotation=float(np.degrees(np.arctan2(t[1, 0], t[0, 0])) % 360),
            scale=float(np.sqrt(abs(np.linalg.det(t[:2, :2])))),
        )
        return self._copy_tests(a, b, [t], ev)

    def compare(self, path_a: str, path_b: str, mirror: bool = True) -> Evidence:
        """The evidence for two files: direct, or (``mirror``) mirrored when that agrees better;
        measured the other way round too when one way shows one scene but narrowly proves no copy
        (``BACKWARD_FAILURES``: matching and the model fits depend on which file asks, so a copy
        can fail one way by chance, and the verdict depended on the order of two names)."""
        a, b = self.features_of(path_a), self.features_of(path_b)
        cap = capture_evidence.compare(a.capture, b.capture) if a is not None and b is not None else None
        ev = self._one_way(a, b, path_b, mirror, cap)
        found = resave.lower(path_a, path_b) if cap != capture_evidence.DIFFERS else None
        if found is not None:  # one file a JPEG well below the other: a re-save of it?
            ev = replace(ev, resaved=found[2])
        if (
            cap != capture_evidence.DIFFERS
            and scene(ev, self.min_keypoints)
            and not degraded(ev)  # (the copy tests prove nothing either way)
            and classify(ev, self.min_keypoints) != "duplicate"
            and len(copy_failures(ev)) <= BACKWARD_FAILURES
        ):
            back = self.evidence(b, self.features_of(path_a, mirrored=ev.mirrored), ev.mirrored, cap)
            back = replace(turned_round(back), capture=cap, resaved=ev.resaved)
            if classify(back, self.min_keypoints) == "duplicate":
                ev = back
        if found is not None and found[3] and classify(ev, self.min_keypoints) != "duplicate":
            ev = replace(ev, resave_changed=resave.changed_files(found[0], found[1]))  # else no change
        return ev

    def _one_way(self, a, b, path_b: str, mirror: bool, cap) -> Evidence:
        """``evidence(a, b)``, or b mirrored (``mirror``) when that agrees better."""
        ev = replace(self.evidence(a, b, capture=cap), capture=cap)
        if (
            mirror
            and classify(ev, self.min_keypoints) != "duplicate"
            and a is not None
            and cap != capture_evidence.DIFFERS
        ):  # a mirrored copy?
            mirrored = replace(
                self.evidence(a, self.features_of(path_b, mirrored=True), mirrored=True, capture=cap),
                capture=cap,
            )
            if classify(mirrored, self.min_keypoints) == "duplicate" or (
                classify(ev, self.min_keypoints) is None and mirrored.inliers > ev.inliers
            ):
                ev = mirrored
        return ev

    def match(self, path_a: str, path_b: str) -> int:
        """Agreeing keypoint matches between two files (the evidence's ``inliers``)."""
        return self.compare(path_a, path_b).inliers

    def verify(self, pairs: list[tuple[str, str]], progress=None, mirror=None) -> list[Evidence]:
        """Evidence for each (path_a, path_b); ``progress(done, total)`` as they finish; ``mirror``:
        per pair, whether a mirrored copy is worth trying (default: all)."""
        out: list[Evidence] = [Evidence()] * len(pairs)
        if not pairs:
            return out
        # pairs sharing a file run close together, so its features are still cached
        order = sorted(range(len(pairs)), key=lambda n: pairs[n])
        mirror = [True] * len(pairs) if mirror is None else [bool(m) for m in mirror]
        tick = ticker(progress, len(pairs))
        with ThreadPoolExecutor(self.workers) as threads:
            run = lambda n: self.compare(*pairs[n], mirror=mirror[n])  # noqa: E731
            for done, (n, ev) in enumerate(zip(order, threads.map(run, order)), 1):
                out[n] = ev
                tick(done)
        return out
