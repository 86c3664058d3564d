"""The Duplicates page's logic over ``indexer.dedup``: reports come from a run, from the index folder,
from a path a person types (a report saved with ``dedup --out`` anywhere) or from an upload held in
memory; members are shown only through their row in the index.

A report is data, never instructions: one that is opened must be a dedup report of this index, and
every path it names must lie inside the index's folders (``check_report``), else it is refused with
one line."""

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


def load_report_path(text: str):
    """A report a person named by path (``dedup --out REPORT`` writes REPORT.json, .csv and .html: any
    of them, or REPORT, names the JSON); a UserError naming the file and the reason otherwise."""

    raw = (text or "").strip().strip("'\"")
    if not raw:
        raise UserError("enter the path of a report (the .json that vgg-retrieval dedup --out wrote)")
    path = Path(os.path.expanduser(raw))
    if path.suffix.lower() != ".json":
        sibling = path.with_suffix(".json") if path.suffix.lower() in (".csv", ".html", ".htm") else None
        path = sibling if sibling is not None else path.with_name(path.name + ".json")
    if not path.is_file():
        raise UserError(f"{raw}: no report there ({path} is not a file)")
    if path.stat().st_size > MAX_REPORT_BYTES:
        raise UserError(f"{path} is too large for a report ({path.stat().st_size / 1e6:.0f} MB)")
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


def _inside(path: str, roots: list[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == r or real.startswith(os.path.join(r, "")) for r in roots)


def check_report(report, svc, name: str) -> None:
    """Refuse (UserError, one line) a report of another index, or one naming a file outside the index's
    folders: what the page shows and moves comes from this index only."""

    if os.path.realpath(report.index_dir) != os.path.realpath(svc.directory):
        raise UserError(f"{name} is a report of another index ({report.index_dir}), not of {svc.directory}")
    roots = [os.path.realpath(r) for r in svc.roots()]
    for g in report.groups:
        for m in g.files:
            if not _inside(m.path, roots):
                raise UserError(
                    f"{name} names {m.path}, outside the indexed folders ({', '.join(roots) or 'none'}): "
                    f"not opened"
                )


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
