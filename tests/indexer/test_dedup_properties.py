"""Property-based tests (Hypothesis) of the two files dedup reads back: the report (``dedup apply``)
and the undo log (``dedup undo``). Whatever a hostile or damaged file says, the readers give a
``UserError`` of one line (never another exception), and nothing is ever moved outside the folders:
an undo only moves files from inside its quarantine to inside the index's folders, an apply plans
only moves from inside the index's folders into the quarantine. Each example edits a true file at
random - values of any JSON type, paths chosen to hurt (``/etc/passwd``, ``..``, links out of the
quarantine, NUL bytes) - and half the undo logs are signed again with the index's own key, as
someone who could read it would, so the checks behind the signature are tried too."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_undo_log import library, snapshot

from indexer.cli.options import one_line_text
from indexer.dedup import DedupReport, find_duplicates
from indexer.dedup.apply import apply_report
from indexer.dedup.undo import undo
from indexer.storage.undo_log import index_key, inside, signature
from retrieval.errors import UserError

EXAMPLES = 300
COUNTS = {
    "undo log": 0,
    "report": 0,
    "undo refused": 0,
    "undo moved": 0,
    "report refused": 0,
    "report planned": 0,
}


def hurtful_paths(tmp: Path) -> list[str]:
    lib, q = tmp / "lib", tmp / "q"
    return [
        "/etc/passwd",
        "/etc/cron.d/planted",
        "/",
        "/etc",
        str(tmp / "elsewhere" / "precious.jpg"),
        str(tmp / "elsewhere" / "planted.jpg"),
        str(lib),
        str(lib / "copies" / "astronaut.png"),
        str(lib / ".." / "elsewhere" / "x.jpg"),
        str(lib) + "/../../etc/passwd",
        str(q),
        str(q / "copies" / "astronaut.png"),
        str(q / "link" / "passwd"),
        str(q / ".." / "elsewhere"),
        str(tmp / "index" / "dedup.key"),
        "relative/path.jpg",
        "",
        "\x00",
        str(lib / "a\x00b"),
        "//etc/passwd",
        str(lib) + "/",
        str(lib / "copies" / "new\nline.jpg"),
    ]


def json_values(paths: list[str]):
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=False)
        | st.text(max_size=12)
        | st.sampled_from(paths)
    )
    return st.recursive(
        leaves,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
        max_leaves=6,
    )


def edit(draw, doc, paths: list[str], depth: int = 0):
    """``doc`` with one random edit somewhere inside it: a value replaced (by any JSON, or a hurtful
    path), a key dropped or added, a list entry dropped or doubled, two values swapped."""
    values = json_values(paths)
    if isinstance(doc, dict) and doc:
        key = draw(st.sampled_from(sorted(doc)))
        how = draw(st.sampled_from(["into", "into", "replace", "path", "drop", "add", "swap"]))
        if how == "into" and depth < 4:
            doc[key] = edit(draw, doc[key], paths, depth + 1)
        elif how == "drop":
            del doc[key]
        elif how == "add":
            doc[draw(st.text(max_size=8))] = draw(values)
        elif how == "swap":
            other = draw(st.sampled_from(sorted(doc)))
            doc[key], doc[other] = doc[other], doc[key]
        else:
            doc[key] = draw(st.sampled_from(paths)) if how == "path" else draw(values)
        return doc
    if isinstance(doc, list) and doc:
        n = draw(st.integers(0, len(doc) - 1))
        how = draw(st.sampled_from(["into", "into", "drop", "double", "replace"]))
        if how == "into" and depth < 4:
            doc[n] = edit(draw, doc[n], paths, depth + 1)
        elif how == "drop":
            del doc[n]
        elif how == "double":
            doc.append(json.loads(json.dumps(doc[n])))
        else:
            doc[n] = draw(values)
        return doc
    return draw(st.sampled_from(paths)) if draw(st.booleans()) else draw(values)


def _true_hashes(doc) -> None:
    """Give each move the size and sha256 of the file its ``dst`` names (so the hash check is not
    what stops it: the paths must be)."""
    for m in doc.get("moves", []) if isinstance(doc, dict) and isinstance(doc.get("moves"), list) else []:
        if (
            isinstance(m, dict)
            and isinstance(m.get("dst"), str)
            and "\x00" not in m["dst"]
            and os.path.isfile(m["dst"])
        ):
            m["size"] = os.path.getsize(m["dst"])
            m["sha256"] = hashlib.sha256(Path(m["dst"]).read_bytes()).hexdigest()


def one_line(e: UserError) -> None:
    """What the CLI prints of it (``error: `` and the message, control characters of the names the
    file gave escaped) is one line."""
    shown = f"error: {one_line_text(str(e))}"
    assert len(shown.splitlines()) == 1 and str(e).strip(), repr(str(e))


def _etc_state():
    return Path("/etc/passwd").read_bytes(), os.path.exists("/etc/cron.d/planted")


def test_undo_log_reader_never_tracebacks_nor_moves_outside(tmp_path, make_index):
    lib, idx = library(tmp_path, make_index)
    q, log = tmp_path / "q", tmp_path / "undo.json"
    apply_report(find_duplicates(idx, near=False), q, execute=True, log=log, echo=lambda *_: None)
    (tmp_path / "elsewhere").mkdir()
    shutil.copy2(lib / "cat01.jpg", tmp_path / "elsewhere" / "precious.jpg")
    (q / "link").symlink_to("/etc", target_is_directory=True)  # a way out of the quarantine
    true_log, key = log.read_text(), index_key(tmp_path / "index")
    paths, roots = hurtful_paths(tmp_path), idx.store.roots()
    watched = (lib, q, tmp_path / "elsewhere")
    before, etc = snapshot(*watched), _etc_state()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def check(data):
        doc = json.loads(true_log)
        for _ in range(data.draw(st.integers(1, 3))):
            doc = edit(data.draw, doc, paths)
        if data.draw(st.booleans()):
            _true_hashes(doc)
        if isinstance(doc, dict) and data.draw(st.booleans()):
            doc["signature"] = signature(doc, key)  # signed again with the index's key
        log.write_text(json.dumps(doc))
        COUNTS["undo log"] += 1
        try:
            out = undo(log, execute=True, update_index=False, echo=lambda *_: None)
        except UserError as e:
            one_line(e)
            COUNTS["undo refused"] += 1
            assert snapshot(*watched) == before
        else:  # an edit undo may accept: it moved only from the quarantine into the folders
            COUNTS["undo moved"] += 1
            for mv in out.moves:
                assert inside(mv.dst, str(q)) and os.path.realpath(os.path.dirname(mv.dst)).startswith(str(q))
                assert any(inside(mv.src, r) for r in roots) and os.path.isfile(mv.src)
                os.makedirs(os.path.dirname(mv.dst), exist_ok=True)
                os.rename(mv.src, mv.dst)  # back into the quarantine for the next example
            assert snapshot(*watched) == before
        assert _etc_state() == etc and not (tmp_path / "index" / "dedup.journal").exists()
        log.write_text(true_log)

    check()
    print(
        f"\nhostile undo logs tried: {COUNTS['undo log']} ({COUNTS['undo refused']} refused, "
        f"{COUNTS['undo moved']} accepted: harmless edits, moves checked)"
    )
    assert COUNTS["undo log"] >= EXAMPLES // 2


def test_report_reader_never_tracebacks_nor_plans_a_move_outside(tmp_path, make_index):
    lib, idx = library(tmp_path, make_index)
    report = find_duplicates(idx, near=False)
    assert len(report.groups) == 2
    true_report = json.dumps(report.as_dict())
    q = tmp_path / "q"
    (tmp_path / "elsewhere").mkdir()
    shutil.copy2(lib / "cat01.jpg", tmp_path / "elsewhere" / "precious.jpg")
    paths, roots = hurtful_paths(tmp_path), idx.store.roots()
    before = snapshot(lib, tmp_path / "elsewhere")

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def check(data):
        doc = json.loads(true_report)
        for _ in range(data.draw(st.integers(1, 3))):
            doc = edit(data.draw, doc, paths)
        include_similar = data.draw(st.booleans())
        COUNTS["report"] += 1
        try:
            rep = DedupReport.from_dict(doc, "report.json")
            out = apply_report(rep, q, execute=False, echo=lambda *_: None, include_similar=include_similar)
        except UserError as e:
            one_line(e)
            COUNTS["report refused"] += 1
        else:
            COUNTS["report planned"] += 1
            for mv in out.moves:
                assert any(inside(mv.src, r) and mv.src != r for r in roots) and os.path.isfile(mv.src)
                assert inside(mv.dst, str(q)) and os.path.normpath(mv.dst) == mv.dst
        assert snapshot(lib, tmp_path / "elsewhere") == before and not q.exists()

    check()
    print(
        f"\nhostile reports tried: {COUNTS['report']} ({COUNTS['report refused']} refused, "
        f"{COUNTS['report planned']} accepted: harmless edits, moves checked)"
    )
    assert COUNTS["report"] >= EXAMPLES // 2
