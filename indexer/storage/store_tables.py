"""The queries of the index's optional tables (offline folders, dedup decisions, capture metadata),
as parts of ``Store``: all SQL stays in the store, this module only keeps store.py short."""

from __future__ import annotations

import time

from sqlalchemy import delete, func, insert, select, tuple_
from sqlalchemy.orm import Session

from indexer.reports import Capture
from retrieval.errors import UserError

from .tables import EVIDENCE_FIELDS, KEEP_BOTH, CaptureRow, DedupDecisionRow, ImageRow, OfflineFolderRow


class OfflineFolderQueries:
    def offline_folders(self) -> dict[str, tuple[float, str]]:
        """folder -> (offline since, reason) of every folder the last updates could not list."""
        if not self.has_offline:
            return {}
        with self.session() as s:
            return {
                r.path: (r.since, r.reason)
                for r in s.scalars(select(OfflineFolderRow).order_by(OfflineFolderRow.path))
            }

    def mark_folders(self, offline: dict[str, tuple[str, str]], online) -> None:
        """Mark ``offline`` (folder -> (root, reason); an earlier "since" is kept) and drop the marks
        of the ``online`` folders, in one transaction."""
        if not self.has_offline or not (offline or online):
            return
        with self.session.begin() as s:
            for path in online:
                s.execute(delete(OfflineFolderRow).where(OfflineFolderRow.path == path))
            for path, (root, reason) in offline.items():
                row = s.get(OfflineFolderRow, path)
                if row is None:
                    s.add(OfflineFolderRow(path=path, root=root, reason=reason, since=time.time()))
                else:
                    row.reason = reason


class DedupDecisionQueries:
    def record_dedup_decisions(self, pairs, decision: str = KEEP_BOTH) -> list[tuple[str, str]]:
        """Remember ``decision`` for each pair ``((path, sha256), (path, sha256))`` (replacing an
        earlier one); the (sha_a, sha_b) keys written, for ``forget_dedup_decisions``."""
        if not self.has_decisions:
            raise UserError(
                f"the index database {self.shown} has no table for review decisions and cannot be "
                f"upgraded (read-only?); open it once with write access"
            )
        keys, now = [], time.time()
        with self.session.begin() as s:
            for (pa, sa), (pb, sb) in pairs:
                if sb < sa:
                    (pa, sa), (pb, sb) = (pb, sb), (pa, sa)
                s.merge(DedupDecisionRow(sha_a=sa, sha_b=sb, decision=decision, path_a=pa, path_b=pb, at=now))
                keys.append((sa, sb))
        return keys

    def forget_dedup_decisions(self, keys) -> int:
        """Drop the decisions of these (sha_a, sha_b) keys; how many there were."""
        keys = [tuple(k) for k in keys]
        if not keys or not self.has_decisions:
            return 0
        gone = 0
        with self.session.begin() as s:
            for i in range(0, len(keys), 200):
                gone += (
                    s.execute(
                        delete(DedupDecisionRow).where(
                            tuple_(DedupDecisionRow.sha_a, DedupDecisionRow.sha_b).in_(keys[i : i + 200])
                        )
                    ).rowcount
                    or 0
                )
        return gone

    def dismissed_pairs(self) -> set[tuple[str, str]]:
        """(sha_a, sha_b), ``sha_a <= sha_b``, of every pair a person kept both of."""
        if not self.has_decisions:
            return set()
        with self.session() as s:
            return {
                tuple(r)
                for r in s.execute(
                    select(DedupDecisionRow.sha_a, DedupDecisionRow.sha_b).where(
                        DedupDecisionRow.decision == KEEP_BOTH
                    )
                )
            }


class CaptureQueries:
    def captures(self, keys, by: str = "id") -> dict:
        """The stored capture metadata (``Capture``) of these image ids, or with ``by="path"`` of these
        indexed paths: those that have a row, keyed as asked."""
        keys = [int(k) if by == "id" else str(k) for k in keys]
        column = ImageRow.id if by == "id" else ImageRow.path
        out: dict = {}
        if not self.has_captures:
            return out
        with self.session() as s:
            for i in range(0, len(keys), 500):
                for key, row, w, h in s.execute(
                    select(column, CaptureRow, ImageRow.width, ImageRow.height)
                    .join(CaptureRow, CaptureRow.image_id == ImageRow.id)
                    .where(column.in_(keys[i : i + 500]))
                ):
                    out[key] = _capture(row, w, h)
        return out

    def capture_summary(self) -> dict:
        """For ``info``: photos with a capture time, their first and last, and the cameras (by count)."""
        out = {"dated": 0, "first": None, "last": None, "cameras": []}
        if self.has_captures:
            c, n = CaptureRow, func.count()
            with self.session() as s:
                out["dated"], out["first"], out["last"] = s.execute(
                    select(func.count(c.captured), func.min(c.captured), func.max(c.captured))
                ).one()
                rows = s.execute(
                    select(c.make, c.model, n)
                    .where(c.model.is_not(None))
                    .group_by(c.make, c.model)
                    .order_by(n.desc())
                )
                out["cameras"] = [(Capture(make=m, model=mo).camera, k) for m, mo, k in rows]
        return out

    def photos_without_capture(self) -> list[tuple[int, str]]:
        """(id, path) of the photos that have no capture row (indexed before they were kept), or one
        without the capture evidence (kept before it was), by id."""
        with self.session() as s:  # (a session connects only when used)
            return (
                []
                if not self.has_captures
                else [
                    tuple(r)
                    for r in s.execute(
                        select(ImageRow.id, ImageRow.path)
                        .outerjoin(CaptureRow, CaptureRow.image_id == ImageRow.id)
                        .where(
                            ImageRow.source.is_(None),
                            CaptureRow.image_id.is_(None) | CaptureRow.evidence.is_(None),
                        )
                        .order_by(ImageRow.id)
                    )
                ]
            )

    @staticmethod
    def write_captures_in(s: Session, pairs) -> None:
        """Store (image id, Capture) pairs, replacing what those ids had: one delete and one
        multi-row insert per 500 (a merge per row cost 0.5 ms per photo on a commit)."""
        rows = {
            int(image_id): dict(
                image_id=int(image_id),
                captured=c.captured,
                make=c.make,
                model=c.model,
                lens=c.lens,
                gps_lat=c.gps_lat,
                gps_lon=c.gps_lon,
                **{f: getattr(c, f) for f in EVIDENCE_FIELDS},
                evidence=1 if c.evidence else None,
            )
            for image_id, c in pairs
        }  # an id given twice: the last one, as merging did
        if not rows:
            return
        CaptureQueries.delete_captures_in(s, list(rows))
        rows = list(rows.values())
        for i in range(0, len(rows), 500):
            s.execute(insert(CaptureRow), rows[i : i + 500])

    @staticmethod
    def delete_captures_in(s: Session, ids) -> None:
        ids = [int(i) for i in ids]
        for i in range(0, len(ids), 500):
            s.execute(delete(CaptureRow).where(CaptureRow.image_id.in_(ids[i : i + 500])))


def _capture(row: CaptureRow, w: int = 0, h: int = 0) -> Capture:
    return Capture(
        row.captured,
        row.make,
        row.model,
        row.lens,
        row.gps_lat,
        row.gps_lon,
        w or 0,
        h or 0,
        **{f: getattr(row, f) for f in EVIDENCE_FIELDS},
        evidence=bool(row.evidence),
    )
