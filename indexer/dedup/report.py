"""The dedup report: groups with a keeper each, saved as JSON (the source of truth that ``dedup
apply`` reads), CSV (one row per file) and a self-contained HTML page.

A group is of one of two kinds: ``duplicates`` (copies and edits of one picture: safe to quarantine,
what ``dedup apply`` acts on) or ``similar`` (other shots of one scene - bursts, other angles: shown
for review, never applied by default). Each group says which it is and why (``why``), and why its
keeper is kept (``keeper_reason``). Reports of version 1 (before the kinds) load as duplicates."""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from indexer.storage.documents import read_json_document
from retrieval.errors import UserError

from .report_text import DUPLICATES, EXACT_REASON, SIMILAR, WHY, rule_text

REPORT_FORMAT = "vgg-retrieval-dedup-report"
REPORT_KIND = "a dedup report (JSON written by vgg-retrieval dedup)"
REPORT_VERSION = 2
KINDS = (DUPLICATES, SIMILAR)


@dataclass
class Member:
    id: int
    path: str
    sha256: str
    width: int
    height: int
    size: int
    mtime_ns: int
    score: float = 1.0  # similarity to the group's keeper (cosine; 1.0 for exact copies and the keeper)
    reason: str = ""
    keypoints: int | None = None  # agreeing keypoint matches with the keeper, for keypoint-verified pairs
    evidence: dict | None = None  # verify.Evidence.as_dict() of the pair with the keeper, when verified

    @property
    def pixels(self) -> int:
        return int(self.width) * int(self.height)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["score"] = round(float(self.score), 6)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Member":
        return cls(
            int(d["id"]),
            _path(d["path"]),
            str(d["sha256"]),
            int(d["width"]),
            int(d["height"]),
            int(d["size"]),
            int(d["mtime_ns"]),
            float(d.get("score", 1.0)),
            str(d.get("reason", "")),
            None if d.get("keypoints") is None else int(d["keypoints"]),
            dict(d["evidence"]) if isinstance(d.get("evidence"), dict) else None,
        )


@dataclass
class Group:
    keeper: Member
    members: list[Member]  # the others (to quarantine, for duplicates), most similar first
    kind: str = DUPLICATES  # DUPLICATES or SIMILAR
    why: str = ""  # the kind in words (WHY[kind] unless more is known)
    keeper_reason: str = ""  # why the keeper is kept rather than the others
    proven: bool | None = (
        None  # every member a proven copy of the keeper (None: the old rule, byte copies only)
    )

    @property
    def is_duplicates(self) -> bool:
        return self.kind == DUPLICATES

    @property
    def is_proven(self) -> bool:
        """Safe to quarantine: a duplicate group whose members are byte copies of the keeper or copies
        proven by capture metadata or the pixel tests (reports before this flag: byte copies only)."""
        if not self.is_duplicates or not self.members:
            return False
        if self.proven is None:
            return all(m.sha256 == self.keeper.sha256 for m in self.members)
        return bool(self.proven)

    @property
    def min_score(self) -> float:
        return min((m.score for m in self.members), default=1.0)

    @property
    def files(self) -> list[Member]:
        return [self.keeper, *self.members]

    @property
    def reclaimable_bytes(self) -> int:
        return sum(m.size for m in self.members)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "why": self.why,
            "keeper_reason": self.keeper_reason,
            "proven": self.is_proven,
            "keeper": self.keeper.as_dict(),
            "members": [m.as_dict() for m in self.members],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Group":
        kind = str(d.get("kind", DUPLICATES))
        if kind not in KINDS:
            raise ValueError(f"unknown group kind {kind!r}")
        proven = d.get("proven")
        return cls(
            Member.from_dict(d["keeper"]),
            [Member.from_dict(m) for m in d["members"]],
            kind,
            str(d.get("why", "")),
            str(d.get("keeper_reason", "")),
            None if proven is None else bool(proven),
        )


@dataclass
class DedupReport:
    threshold: float
    created_at: float
    index_dir: str
    groups: list[Group]
    errors: list[dict] = field(default_factory=list)  # {"path", "reason"}: files the index could not read
    roots: list[str] = field(default_factory=list)  # the index's folders (for quarantine relative paths)
    stats: dict = field(default_factory=dict)  # how the search ran (index type, parameters, counts, timing)
    rule: dict = field(
        default_factory=dict
    )  # {"threshold"[, "verify_floor", "min_keypoints"]}: see rule_text

    @property
    def rule_text(self) -> str:
        return rule_text(self.threshold, self.rule)

    # --- views --------------------------------------------------------------------------------
    @property
    def duplicate_groups(self) -> list[Group]:
        return [g for g in self.groups if g.is_duplicates]

    @property
    def similar_groups(self) -> list[Group]:
        return [g for g in self.groups if not g.is_duplicates]

    @property
    def exact_groups(self) -> int:
        return sum(1 for g in self.duplicate_groups if all(m.reason == EXACT_REASON for m in g.members))

    @property
    def duplicate_count(self) -> int:
        return sum(len(g.members) for g in self.duplicate_groups)

    @property
    def reclaimable_bytes(self) -> int:
        return sum(g.reclaimable_bytes for g in self.duplicate_groups)

    def counts(self) -> str:
        similar = self.similar_groups
        shots = (
            f", {len(similar)} groups of similar shots for review ({sum(len(g.files) for g in similar)} files)"
            if similar
            else ""
        )
        dismissed = self.stats.get("dismissed_left_out") or 0
        kept = f", {dismissed} files left out (kept in review)" if dismissed else ""
        return (
            f"{len(self.duplicate_groups)} groups ({self.exact_groups} exact-only), {self.duplicate_count} duplicate "
            f"files, {self.reclaimable_bytes / 1e6:.1f} MB reclaimable{shots}, {len(self.errors)} unreadable "
            f"files{kept}"
        )

    def summary(self) -> str:
        return f"{self.counts()}; duplicates: {self.rule_text}"

    # --- saving and loading -------------------------------------------------------------------
    def as_dict(self) -> dict:
        return {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "threshold": self.threshold,
            "rule": dict(self.rule, text=self.rule_text),
            "created_at": self.created_at,
            "index_dir": self.index_dir,
            "roots": list(self.roots),
            "stats": self.stats,
            "errors": list(self.errors),
            "groups": [g.as_dict() for g in self.groups],
        }

    def save_json(self, path) -> Path:
        path = Path(path)
        _atomic_write(path, json.dumps(self.as_dict(), indent=1))
        return path

    def save_csv(self, path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(
                [
                    "group",
                    "role",
                    "path",
                    "score",
                    "reason",
                    "width",
                    "height",
                    "size",
                    "mtime_ns",
                    "sha256",
                    "id",
                    "threshold",
                    "keypoints",
                    "rule",
                    "kind",
                    "why",
                    "keeper_reason",
                    "pixel",
                ]
            )
            for gi, g in enumerate(self.groups, 1):
                other = "duplicate" if g.is_duplicates else "similar"
                for role, m in [("keep", g.keeper)] + [(other, m) for m in g.members]:
                    pixel = "" if not m.evidence else m.evidence.get("pixel", "")
                    w.writerow(
                        [
                            gi,
                            role,
                            m.path,
                            f"{m.score:.6f}",
                            m.reason,
                            m.width,
                            m.height,
                            m.size,
                            m.mtime_ns,
                            m.sha256,
                            m.id,
                            f"{self.threshold:.4f}",
                            "" if m.keypoints is None else m.keypoints,
                            self.rule_text,
                            g.kind,
                            g.why or WHY[g.kind],
                            g.keeper_reason if role == "keep" else "",
                            pixel,
                        ]
                    )
            for e in self.errors:
                w.writerow(
                    [
                        "",
                        "unreadable",
                        e["path"],
                        "",
                        e["reason"],
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                        f"{self.threshold:.4f}",
                        "",
                        self.rule_text,
                        "",
                        "",
                        "",
                        "",
                    ]
                )
        os.replace(tmp, path)
        return path

    def save_html(self, path, max_groups: int = 2000, thumb: int = 160) -> Path:
        from .report_html import render  # lazy: keeps the command line's start light

        path = Path(path)
        _atomic_write(
            path,
            render(self, max_groups=max_groups, thumb=thumb, json_path=path.with_suffix(".json").resolve()),
        )
        return path

    def save(self, base) -> list[Path]:
        """All three formats next to each other: BASE.json, BASE.csv, BASE.html."""
        base = Path(base)
        if base.suffix.lower() in (".json", ".csv", ".html", ".htm"):
            base = base.with_suffix("")
        if base.parent and not base.parent.exists():
            base.parent.mkdir(parents=True, exist_ok=True)
        return [
            self.save_json(base.with_name(base.name + ".json")),
            self.save_csv(base.with_name(base.name + ".csv")),
            self.save_html(base.with_name(base.name + ".html")),
        ]

    @classmethod
    def load(cls, path) -> "DedupReport":
        path = Path(path)
        if path.suffix.lower() in (".html", ".htm", ".csv") or not path.exists():
            sibling = path.with_suffix(".json")
            if sibling.is_file():
                path = sibling
        d = read_json_document(path, REPORT_FORMAT, "report", REPORT_KIND)
        return cls.from_dict(d, str(path))

    @classmethod
    def from_dict(cls, d: dict, name: str = "report") -> "DedupReport":
        """A report from its parsed JSON (as written by ``save_json``); UserError when it is not one."""
        if not isinstance(d, dict) or d.get("format") != REPORT_FORMAT:
            raise UserError(f"{name} is not {REPORT_KIND}")
        version = d.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise UserError(f"the report {name} is damaged (its version is not a number)")
        if version > REPORT_VERSION:
            raise UserError(f"{name} was written by a newer vgg-retrieval (report version {version})")
        try:
            return cls(
                float(d["threshold"]),
                float(d["created_at"]),
                _path(d["index_dir"]),
                [Group.from_dict(g) for g in _list(d["groups"])],
                _errors(d.get("errors", [])),
                [_path(r) for r in _list(d.get("roots", []))],
                dict(d.get("stats", {})),
                {k: v for k, v in dict(d.get("rule") or {}).items() if k != "text"},
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            what = " ".join(str(e).split())[:200]
            raise UserError(f"the report {name} is damaged ({type(e).__name__}: {what})") from None


def _path(value) -> str:
    """A path as a report names it: text without NUL bytes (ValueError otherwise)."""
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError(f"not a path: {str(value)[:80]!r}")
    return value


def _list(value) -> list:
    if not isinstance(value, list):
        raise TypeError(f"a list was expected, not {type(value).__name__}")
    return value


def _errors(value) -> list[dict]:
    if not all(
        isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("reason"), str)
        for e in _list(value)
    ):
        raise ValueError('"errors" must list {"path", "reason"} objects')
    return list(value)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def now() -> float:
    return time.time()
