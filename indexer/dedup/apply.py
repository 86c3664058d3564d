"""Acting on a report, safely: move the non-kept files into a quarantine folder (keeping their paths
relative to the indexed folder), write a JSON undo log first, never delete, and bring the index up
to date. ``undo`` moves them back. Both only print what they would do unless ``execute`` is set.

Only groups of kind "duplicates" are acted on; groups of similar shots (other photos of one scene)
are for review and are moved only when asked for (``include_similar``).

Refusals (nothing is moved): a file the report names changed since the report (size, mtime or
sha256) or vanished; a kept file changed or vanished; a destination already exists; the quarantine
folder lies inside an indexed folder (the next index update would index the quarantine).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.errors import UserError
from retrieval.files import file_sha256

from .report import DedupReport, read_json_document

LOG_FORMAT = "vgg-retrieval-dedup-undo"
LOG_VERSION = 1


@dataclass
class Move:
    src: str
    dst: str
    sha256: str
    size: int
    mtime_ns: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Outcome:
    moves: list[Move]
    executed: bool
    log: str | None = None
    index_summary: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(m.size for m in self.moves)


def stale_files(report: DedupReport, groups=None) -> list[str]:
    """'path: what changed' for every file of ``groups`` that is not as the report saw it."""
    problems = []
    for g in report.groups if groups is None else groups:
        for m in g.files:
            try:
                st = os.stat(m.path)
            except FileNotFoundError:
                problems.append(f"{m.path}: no longer exists")
                continue
            except OSError as e:
                problems.append(f"{m.path}: {e.strerror}")
                continue
            if st.st_size != m.size:
                problems.append(f"{m.path}: size changed ({m.size} -> {st.st_size} bytes)")
            elif st.st_mtime_ns != m.mtime_ns:
                problems.append(f"{m.path}: modified since the report")
            elif file_sha256(m.path) != m.sha256:
                problems.append(f"{m.path}: content changed (sha256)")
    return problems


def _root_of(path: str, roots: list[str]) -> str | None:
    best = None
    for r in roots:
        if path.startswith(os.path.join(r, "")) and (best is None or len(r) > len(best)):
            best = r
    return best


def _root_names(roots: list[str]) -> dict[str, str]:
    """Folder name under the quarantine for each root: '' for a single root, else its basename
    (made unique)."""
    if len(roots) <= 1:
        return {r: "" for r in roots}
    names, used = {}, set()
    for r in sorted(roots):
        base = os.path.basename(os.path.normpath(r)) or "root"
        name, n = base, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        names[r] = name
    return names


def with_keepers(report: DedupReport, keep=()) -> DedupReport:
    """``report`` with the named files made the keepers of their groups (user overrides)."""
    for k in keep:
        k = os.path.realpath(k)
        for g in report.groups:
            for n, m in enumerate(g.members):
                if m.path == k:
                    old = g.keeper
                    g.keeper, g.members[n] = m, old
                    old.reason = f"was the suggested keeper; {m.path} kept instead"
                    break
            else:
                continue
            break
        else:
            if not any(g.keeper.path == k for g in report.groups):
                raise UserError(f"--keep {k}: not a file of this report")
    return report


def acted_on(report: DedupReport, include_similar: bool = False) -> list:
    """The groups ``apply`` moves files of: duplicates, and similar shots only when asked for."""
    return [g for g in report.groups if g.is_duplicates or include_similar]


def plan(report: DedupReport, quarantine, include_similar: bool = False) -> list[Move]:
    quarantine = Path(os.path.abspath(quarantine))
    qreal = os.path.realpath(quarantine)
    roots = [os.path.realpath(r) for r in report.roots]
    for r in roots:
        if qreal == r or qreal.startswith(os.path.join(r, "")):
            raise UserError(f"the quarantine folder {quarantine} is inside the indexed folder {r}; "
                            f"choose a folder outside it")
    names = _root_names(roots)
    moves = []
    for g in acted_on(report, include_similar):
        for m in g.members:
            root = _root_of(m.path, roots)
            if root is None or os.path.normpath(m.path) != m.path:
                raise UserError(f"refusing to move {m.path}: it is not inside the report's indexed folders")
            rel = os.path.join(names[root], os.path.relpath(m.path, root)) if names[root] else \
                os.path.relpath(m.path, root)
            moves.append(Move(m.path, str(quarantine / rel), m.sha256, m.size, m.mtime_ns))
    dsts = [mv.dst for mv in moves]
    if len(set(dsts)) != len(dsts):
        raise UserError("two files would get the same quarantine path (files outside the indexed folders?)")
    taken = [d for d in dsts if os.path.lexists(d)]
    if taken:
        raise UserError(f"{len(taken)} quarantine destination(s) already exist, e.g. {taken[0]}; "
                        f"use another --move-to folder")
    return moves


def _move(src: str, dst: str) -> None:
    """Move a file without ever overwriting; across file systems copy, fsync, then unlink."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.lexists(dst):
        raise UserError(f"refusing to overwrite {dst}")
    try:
        os.link(src, dst)  # atomic, fails if dst exists; then drop the old name
        os.unlink(src)
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EACCES):
            raise
    tmp = dst + ".partial"
    shutil.copy2(src, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.rename(tmp, dst)
    os.unlink(src)


def _write_log(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _default_log(quarantine: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = quarantine / f"dedup-undo-{stamp}.json"
    n = 2
    while path.exists():
        path, n = quarantine / f"dedup-undo-{stamp}-{n}.json", n + 1
    return path


def _update_index(index_dir: str, paths: list[str], roots: list[str], moved_away: bool) -> str:
    """Bring the index in line with the moved files, through its crash-safe commits: files moved
    away are forgotten (no folder scan); files moved back are embedded by an update of their folders."""
    from indexer.index import Index

    if not Index.exists(index_dir):
        return f"index {index_dir} not found: not updated (run vgg-retrieval index to update it)"
    affected = sorted({r for r in (_root_of(p, roots) for p in paths) if r is not None})
    affected = [r for r in affected if os.path.isdir(r)]
    if not affected:
        return "no indexed folder affected"
    with Index.open(index_dir) as idx:
        rep = idx.forget(paths) if moved_away else idx.update(affected, progress=False, workers=0)
    return f"index updated: {rep.summary()}"


def _require_indexed(index_dir: str, paths: list[str]) -> None:
    """Only files the index holds, inside its folders, are ever moved (a report is just a file)."""
    from indexer.index import Index

    if not Index.exists(index_dir):
        raise UserError(f"the report's index {index_dir} is gone: cannot confirm what the report names")
    with Index.open(index_dir) as idx:
        for p in paths:
            idx.indexed_file(p)


def apply_report(report: DedupReport, quarantine, execute: bool = False, log=None, keep=(),
                 update_index: bool = True, echo=print, include_similar: bool = False) -> Outcome:
    """Move every non-kept file of ``report``'s duplicate groups under ``quarantine`` (only prints
    unless ``execute``); ``include_similar``: the similar-shot groups' too."""
    report = with_keepers(report, keep)
    quarantine = Path(os.path.abspath(quarantine))
    groups = acted_on(report, include_similar)
    problems = stale_files(report, groups)
    if problems:
        raise UserError(f"the report is older than {len(problems)} of the files it names (e.g. {problems[0]}); "
                        f"update the index (vgg-retrieval index --index DIR) and run dedup again")
    moves = plan(report, quarantine, include_similar)
    skipped = len(report.groups) - len(groups)
    if skipped:
        echo(f"{skipped} group(s) of similar shots left alone (for review; not copies)")
    _require_indexed(report.index_dir, [mv.src for mv in moves])
    out = Outcome(moves, executed=execute)
    verb = "move" if execute else "would move"
    for mv in moves:
        echo(f"{verb} {mv.src} -> {mv.dst}")
    if not execute:
        echo(f"dry run: {len(moves)} files ({out.bytes / 1e6:.1f} MB) would be moved to {quarantine}; "
             f"nothing was changed (add --yes to do it)")
        return out
    if not moves:
        echo("nothing to move")
        return out
    quarantine.mkdir(parents=True, exist_ok=True)
    log = Path(log) if log else _default_log(quarantine)
    if log.exists():
        raise UserError(f"undo log {log} already exists")
    data = {"format": LOG_FORMAT, "version": LOG_VERSION, "created_at": time.time(), "state": "moving",
            "report_created_at": report.created_at, "index_dir": report.index_dir, "roots": report.roots,
            "quarantine": str(quarantine), "moves": [m.as_dict() for m in moves]}
    _write_log(log, data)  # before anything moves: a crash leaves a log that undo can use
    out.log = str(log)
    for mv in moves:
        _move(mv.src, mv.dst)
    data["state"] = "moved"
    data["moved_at"] = time.time()
    _write_log(log, data)
    echo(f"moved {len(moves)} files ({out.bytes / 1e6:.1f} MB) to {quarantine}; undo log: {log}")
    if update_index:
        out.index_summary = _update_index(report.index_dir, [m.src for m in moves], report.roots,
                                          moved_away=True)
        echo(out.index_summary)
    return out


def read_log(path) -> dict:
    return read_json_document(Path(path), LOG_FORMAT, "undo log", "a dedup undo log")


def undo(log, execute: bool = False, update_index: bool = True, echo=print) -> Outcome:
    """Move the files of an undo log back where they were (only prints unless ``execute``)."""
    log = Path(log)
    data = read_log(log)
    moves = [Move(**m) for m in data["moves"]]
    todo, conflicts, missing = [], [], []
    for mv in moves:
        at_src, at_dst = os.path.lexists(mv.src), os.path.lexists(mv.dst)
        if at_dst and not at_src:
            todo.append(mv)
        elif at_dst and at_src:
            conflicts.append(mv.src)
        elif not at_dst and not at_src:
            missing.append(mv.dst)
        # only at src: never moved (or already back): nothing to do
    if conflicts:
        raise UserError(f"{len(conflicts)} original path(s) are taken again, e.g. {conflicts[0]}; "
                        f"move those aside first")
    if missing:
        raise UserError(f"{len(missing)} quarantined file(s) are gone, e.g. {missing[0]}; nothing was moved")
    out = Outcome(todo, executed=execute, log=str(log))
    verb = "restore" if execute else "would restore"
    for mv in todo:
        echo(f"{verb} {mv.dst} -> {mv.src}")
    if not execute:
        echo(f"dry run: {len(todo)} files would be restored; nothing was changed (add --yes to do it)")
        return out
    for mv in todo:
        _move(mv.dst, mv.src)
    quarantine = Path(data.get("quarantine", ""))
    for mv in todo:  # tidy the folders the quarantine made, if now empty
        d = Path(mv.dst).parent
        while quarantine in d.parents:
            try:
                d.rmdir()
            except OSError:
                break
            d = d.parent
    data["state"] = "undone"
    data["undone_at"] = time.time()
    _write_log(log, data)
    echo(f"restored {len(todo)} files")
    if update_index and todo:
        out.index_summary = _update_index(data["index_dir"], [m.src for m in todo], data.get("roots", []),
                                          moved_away=False)
        echo(out.index_summary)
    return out
