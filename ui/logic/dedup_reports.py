"""The Duplicates page's logic over ``indexer.dedup``: reports come from a run, from the index folder,
or from an upload held in memory; members are shown only through their row in the index."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from indexer.dedup import REPORT_FORMAT, DedupReport, find_duplicates
from retrieval import UserError

REPORTS_DIR = "dedup"  # inside the index folder
MAX_REPORT_BYTES = 64 * 1024 * 1024


def run_dedup(svc, threshold: float, near: bool = True, verify: bool = True):

    return find_duplicates(svc.index, threshold=threshold, near=near, verify=verify)


def find_reports(directory: Path, limit: int = 200) -> list[Path]:
    """Dedup reports (JSON) saved inside the index folder, newest first."""

    found = []
    directory = Path(directory)
    for dirpath, dirnames, files in os.walk(directory):
        rel = os.path.relpath(dirpath, directory)
        dirnames[:] = [d for d in dirnames if d != "model" and not d.startswith(".")]
        if rel != "." and rel.count(os.sep) >= 2:
            dirnames[:] = []
        for f in files:
            if not f.endswith(".json"):
                continue
            p = Path(dirpath) / f
            try:
                with open(p, "rb") as fh:
                    head = fh.read(400)
            except OSError:
                continue
            if REPORT_FORMAT.encode() in head:
                found.append(p)
    found.sort(key=lambda p: p.stat().st_mtime if p.exists() else 0, reverse=True)
    return found[:limit]


def load_report_file(directory: Path, choice: str):
    """A report from the index folder; anything else is refused."""

    path = Path(choice).resolve()
    if path not in {p.resolve() for p in find_reports(directory)}:
        raise UserError(f"{choice} is not a dedup report in the index folder")
    return DedupReport.load(path)


def load_report_bytes(name: str, data: bytes):
    """A report uploaded through the page (parsed in memory, never written anywhere)."""

    if len(data) > MAX_REPORT_BYTES:
        raise UserError(f"{name} is too large for a report ({len(data) / 1e6:.0f} MB)")
    try:
        d = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{name} is not JSON ({e})") from None
    return DedupReport.from_dict(d, name)


def save_report(report, directory: Path) -> list[Path]:
    out = Path(directory) / REPORTS_DIR
    out.mkdir(exist_ok=True)
    return [report.save_json(out / time.strftime("dedup-%Y%m%d-%H%M%S.json"))]


def member_row(svc, member):
    """The index row of a report member (same id and path, else same path); None if not indexed."""
    row = svc.lookup_row(member.id)
    if row is not None and row.path == member.path:
        return row
    return svc.lookup_path(member.path)
