"""Every candidate pair verified ahead, in one batch, for the grouping passes (``find``).

The passes (``groups.group_pairs`` with ``decide.PairJudge``) consult nearly every candidate pair,
a few at a time (one photo's neighbours): too few to keep every core busy. ``Settled`` verifies
them all at once first, on every core (``verify.Verifier.verify``'s threads), and hands
each pass the evidence it asks for: the same evidence, so the same groups."""

from __future__ import annotations

from .decide import MIRROR_COSINE


class Settled:
    """The verifier with every candidate pair verified ahead, in one batch (the grouping passes
    consult nearly all of them, a few at a time: too few to keep every core busy); a pair it was
    not given (or with another mirror setting) is verified when asked, as before."""

    def __init__(self, verifier, paths, i, j, sc, photos: int, progress=None):
        self.inner = verifier
        keys = [
            (paths[a], paths[b], bool(s >= MIRROR_COSINE))
            for a, b, s in zip(i.tolist(), j.tolist(), sc.tolist())
        ]

        def photos_done(done, total):  # the work done, in photos (for photos/s and the time left)
            progress(round(photos * done / total), photos)

        found = verifier.verify(
            [k[:2] for k in keys], progress=photos_done if progress else None, mirror=[k[2] for k in keys]
        )
        self.ready = dict(zip(keys, found))

    def __getattr__(self, name):  # features_of, cv2, unreadable...: the verifier's own
        return getattr(self.inner, name)

    def verify(self, pairs, progress=None, mirror=None):
        mirror = [True] * len(pairs) if mirror is None else mirror
        keys = [(a, b, bool(m)) for (a, b), m in zip(pairs, mirror)]
        todo = list(dict.fromkeys(k for k in keys if k not in self.ready))
        if todo:
            self.ready.update(
                zip(todo, self.inner.verify([k[:2] for k in todo], mirror=[k[2] for k in todo]))
            )
        return [
            self.ready.pop(k) if k in self.ready else self.inner.verify([k[:2]], mirror=[k[2]])[0]
            for k in keys
        ]
