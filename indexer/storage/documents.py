"""Reading the JSON documents we write (dedup reports, undo logs): one line when a file is not ours."""

from __future__ import annotations

import json
from pathlib import Path

from retrieval.errors import UserError


def read_json_document(path: Path, fmt: str, what: str, kind: str) -> dict:
    """A JSON file of ours (``{"format": fmt, ...}``), or a one-line UserError saying what is wrong."""
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the {what} {path}: {e}") from None
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise UserError(f"{path} is not {kind}")
    return d
