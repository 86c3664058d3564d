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

from retrieval.errors import UserError

REPORT_FORMAT = "vgg-retrieval-dedup-report"
REPORT_KIND = "a dedup report (JSON written by vgg-retrieval dedup)"
REPORT_VERSION = 2
EXACT_REASON = "exact copy (same sha256)"
KEEPER_REASON = "keeper"
DUPLICATES, SIMILAR = "duplicates", "similar"
KINDS = (DUPLICATES, SIMILAR)
WHY = {DUPLICATES: "copies of one capture, each proven against the keeper itself: byte-identical, the same "
                   "EXIF capture, or aligned pixels that agree everywhere at the finer scale with nothing a copy "
                   "could not have (no parallax, no local motion, no extra detail); safe to quarantine",
       SIMILAR: "similar shots, not copies (none proven the same capture): the same scene (keypoints agree on one transform) but not "
                "the same capture (a burst, a re-take, a zoom, another angle or moment, or another EXIF capture "
                "time), or the pixels cannot tell; for review, never applied by default"}
UNPROVEN_WHY = ("near duplicates by descriptor similarity only (--no-verify): not proven copies; review before "
                "quarantine")


def near_reason(score: float, keypoints: int | None = None, evidence: str | None = None, kind: str = DUPLICATES) -> str:
    what = "similar shot" if kind == SIMILAR else "near duplicate"
    if evidence:
        return f"{what} (cosine {score:.3f}; {evidence})"
    if keypoints is not None:
        return f"{what} (cosine {score:.3f}, {keypoints} keypoint matches agree)"
    return f"{what} (cosine {score:.3f})"


def rule_text(threshold: float, rule: dict | None) -> str:
    """How pairs were called duplicates, e.g. 'cosine >= 0.900, or >= 0.550 with >= 20 agreeing
    keypoint matches' (version 1) or the pixel rule (version 2, ``rule["pixel"]``)."""
    if rule and rule.get("pixel") is not None:
        return (f"candidates at cosine >= {rule['verify_floor']:.2f} (and turned copies); a duplicate when >= "
                f"{rule['min_keypoints']} keypoint matches agree on one transform and the aligned pixels agree "
                f"(correlation >= {rule['pixel']:.2f}, >= {rule['cells']:.0%} of detail cells) with one picture "
                f"showing nothing the other lacks (<= {rule.get('outside', 0.1):.0%} of its detail outside), or - "
                f"too little texture for keypoints - frame to frame, or without keypoints at cosine >= "
                f"{threshold:.3f}{' (since issue 24: a similar shot, unproven)' if rule.get('copy') else ''}; a similar shot when >= {rule['similar_keypoints']} matches agree over >= "
                f"{rule['cover']:.0%} of both pictures but the pixels do not" + _copy_text(rule.get("copy")))
    text = f"cosine >= {threshold:.3f}"
    if rule and rule.get("verify_floor") is not None and rule["verify_floor"] < threshold:
        text += f", or >= {rule['verify_floor']:.3f} with >= {rule['min_keypoints']} agreeing keypoint matches"
    return text


def _copy_text(copy: dict | None) -> str:
    """The copy tests of the rule (reports since issue 24), in words."""
    if not copy:
        return ""
    return (f"; a pair passing that scene test is a duplicate only when proven one capture: the same EXIF capture, "
            f"or one homography fits its keypoints (median error <= {copy['max_residual']:.1%} of the side or "
            f"<= {copy['max_residual_px']} px), at {copy['compare_side']} px >= {copy['min_local']:.0%} of detail "
            f"cells agree (20% quantile >= {copy['min_weakest']}) and <= {copy.get('max_moved', 0.05):.0%} changed "
            f"with as much detail on both sides (motion), one picture shows <= {copy['max_spill']:.1%} "
            f"of its detail outside the other, and a narrower picture holds no detail beyond the wider one's "
            f"resolution (<= {copy['max_extra']:.1%}); EXIF capture times or cameras that differ are never "
            f"duplicates; the rest of the scene's pairs are similar shots")


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
        return cls(int(d["id"]), str(d["path"]), str(d["sha256"]), int(d["width"]), int(d["height"]),
                   int(d["size"]), int(d["mtime_ns"]), float(d.get("score", 1.0)), str(d.get("reason", "")),
                   None if d.get("keypoints") is None else int(d["keypoints"]),
                   dict(d["evidence"]) if isinstance(d.get("evidence"), dict) else None)


@dataclass
class Group:
    keeper: Member
    members: list[Member]  # the others (to quarantine, for duplicates), most similar first
    kind: str = DUPLICATES  # DUPLICATES or SIMILAR
    why: str = ""  # the kind in words (WHY[kind] unless more is known)
    keeper_reason: str = ""  # why the keeper is kept rather than the others
    proven: bool | None = None  # every member a proven copy of the keeper (None: the old rule, byte copies only)

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
        return {"kind": self.kind, "why": self.why, "keeper_reason": self.keeper_reason, "proven": self.is_proven,
                "keeper": self.keeper.as_dict(), "members": [m.as_dict() for m in self.members]}

    @classmethod
    def from_dict(cls, d: dict) -> "Group":
        kind = str(d.get("kind", DUPLICATES))
        if kind not in KINDS:
            raise ValueError(f"unknown group kind {kind!r}")
        proven = d.get("proven")
        return cls(Member.from_dict(d["keeper"]), [Member.from_dict(m) for m in d["members"]], kind,
                   str(d.get("why", "")), str(d.get("keeper_reason", "")), None if proven is None else bool(proven))


@dataclass
class DedupReport:
    threshold: float
    created_at: float
    index_dir: str
    groups: list[Group]
    errors: list[dict] = field(default_factory=list)  # {"path", "reason"}: files the index could not read
    roots: list[str] = field(default_factory=list)  # the index's folders (for quarantine relative paths)
    stats: dict = field(default_factory=dict)  # how the search ran (index type, parameters, counts, timing)
    rule: dict = field(default_factory=dict)  # {"threshold"[, "verify_floor", "min_keypoints"]}: see rule_text

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
        shots = f", {len(similar)} groups of similar shots for review ({sum(len(g.files) for g in similar)} files)" \
            if similar else ""
        dismissed = self.stats.get("dismissed_left_out") or 0
        kept = f", {dismissed} files left out (kept in review)" if dismissed else ""
        return (f"{len(self.duplicate_groups)} groups ({self.exact_groups} exact-only), {self.duplicate_count} duplicate "
                f"files, {self.reclaimable_bytes / 1e6:.1f} MB reclaimable{shots}, {len(self.errors)} unreadable "
                f"files{kept}")

    def summary(self) -> str:
        return f"{self.counts()}; duplicates: {self.rule_text}"

    # --- saving and loading -------------------------------------------------------------------
    def as_dict(self) -> dict:
        return {"format": REPORT_FORMAT, "version": REPORT_VERSION, "threshold": self.threshold,
                "rule": dict(self.rule, text=self.rule_text), "created_at": self.created_at, "index_dir": self.index_dir, "roots": list(self.roots),
                "stats": self.stats, "errors": list(self.errors), "groups": [g.as_dict() for g in self.groups]}

    def save_json(self, path) -> Path:
        path = Path(path)
        _atomic_write(path, json.dumps(self.as_dict(), indent=1))
        return path

    def save_csv(self, path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["group", "role", "path", "score", "reason", "width", "height", "size", "mtime_ns",
                        "sha256", "id", "threshold", "keypoints", "rule", "kind", "why", "keeper_reason", "pixel"])
            for gi, g in enumerate(self.groups, 1):
                other = "duplicate" if g.is_duplicates else "similar"
                for role, m in [("keep", g.keeper)] + [(other, m) for m in g.members]:
                    pixel = "" if not m.evidence else m.evidence.get("pixel", "")
                    w.writerow([gi, role, m.path, f"{m.score:.6f}", m.reason, m.width, m.height, m.size,
                                m.mtime_ns, m.sha256, m.id, f"{self.threshold:.4f}",
                                "" if m.keypoints is None else m.keypoints, self.rule_text, g.kind,
                                g.why or WHY[g.kind], g.keeper_reason if role == "keep" else "", pixel])
            for e in self.errors:
                w.writerow(["", "unreadable", e["path"], "", e["reason"], "", "", "", "", "", "",
                            f"{self.threshold:.4f}", "", self.rule_text, "", "", "", ""])
        os.replace(tmp, path)
        return path

    def save_html(self, path, max_groups: int = 2000, thumb: int = 160) -> Path:
        from .report_html import render

        path = Path(path)
        _atomic_write(path, render(self, max_groups=max_groups, thumb=thumb, json_path=path.with_suffix(".json").resolve()))
        return path

    def save(self, base) -> list[Path]:
        """All three formats next to each other: BASE.json, BASE.csv, BASE.html."""
        base = Path(base)
        if base.suffix.lower() in (".json", ".csv", ".html", ".htm"):
            base = base.with_suffix("")
        if base.parent and not base.parent.exists():
            base.parent.mkdir(parents=True, exist_ok=True)
        return [self.save_json(base.with_name(base.name + ".json")),
                self.save_csv(base.with_name(base.name + ".csv")),
                self.save_html(base.with_name(base.name + ".html"))]

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
        if int(d.get("version", 0)) > REPORT_VERSION:
            raise UserError(f"{name} was written by a newer vgg-retrieval (report version {d.get('version')})")
        try:
            return cls(float(d["threshold"]), float(d["created_at"]), str(d["index_dir"]),
                       [Group.from_dict(g) for g in d["groups"]], list(d.get("errors", [])),
                       list(d.get("roots", [])), dict(d.get("stats", {})),
                       {k: v for k, v in dict(d.get("rule") or {}).items() if k != "text"})
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"the report {name} is damaged ({type(e).__name__}: {e})") from None


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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def now() -> float:
    return time.time()
