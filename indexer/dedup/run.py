"""One dedup run as a function: open the index, find the duplicates, write the report files
(what ``vgg-retrieval dedup`` does; the UI and tests can call it without the CLI)."""

from __future__ import annotations

from pathlib import Path

from indexer.index import Index

from .find import find_duplicates
from .report import DedupReport

REPORT_SUFFIXES = (".json", ".csv", ".html", ".htm")


def save_report(report: DedupReport, out, html_groups: int = 2000) -> list[Path]:
    """Write OUT.json, OUT.csv and OUT.html (a report suffix on ``out`` is dropped); their paths."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix.lower() in REPORT_SUFFIXES else out
    if base.parent and not base.parent.exists():
        base.parent.mkdir(parents=True, exist_ok=True)
    return [
        report.save_json(base.with_name(base.name + ".json")),
        report.save_csv(base.with_name(base.name + ".csv")),
        report.save_html(base.with_name(base.name + ".html"), max_groups=html_groups),
    ]


def dedup_index(
    index_dir, out, *, db_url=None, html_groups: int = 2000, progress=None, **find_options
) -> tuple[DedupReport, list[Path]]:
    """Find the duplicates of the index at ``index_dir`` (``find_options``: those of
    ``find.find_duplicates``) and write the report to ``out``; (report, files written)."""

    with Index.open(index_dir, db_url=db_url) as idx:
        report = find_duplicates(idx, progress=progress, **find_options)
    return report, save_report(report, out, html_groups)
