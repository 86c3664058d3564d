"""``vgg-retrieval dedup``: find duplicates and write a report; ``dedup apply`` / ``dedup undo``."""

from __future__ import annotations

from pathlib import Path

import click

from indexer.dedup import (
    DEFAULT_THRESHOLD,
    KEEPER_POLICIES,
    MIN_KEYPOINTS,
    UNTRIMMED_THRESHOLD,
    VERIFIED_THRESHOLD,
    VERIFY_FLOOR,
    DedupReport,
    apply_report,
    dedup_index,
    undo,
)
from retrieval import UserError

from .options import db_option, index_option, one_line_text


@click.group("dedup", invoke_without_command=True)
@index_option(required=False)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="With verification: the cosine similarity at or above which a pair whose pictures are too "
    f"plain for keypoints is still a duplicate [default: {VERIFIED_THRESHOLD}]. With --no-verify: the "
    f"cosine at or above which two images are near duplicates [default: {DEFAULT_THRESHOLD}, or "
    f"{UNTRIMMED_THRESHOLD} for an index whose model does not trim borders]. See docs/dedup.md.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Verification: every candidate pair from --verify-floor up is a duplicate only when the two "
    "pictures, aligned by their agreeing keypoints, agree pixel for pixel (reads those files "
    "again; --no-verify: descriptors only, faster, and it calls look-alike photos duplicates).",
)
@click.option(
    "--similar/--no-similar",
    default=True,
    show_default=True,
    help="Also report similar shots (bursts, other angles) as their own groups, for review; "
    "`dedup apply` leaves them alone unless --include-similar.",
)
@click.option(
    "--rotations/--no-rotations",
    default=True,
    show_default=True,
    help="Also find copies turned by 90/180/270 degrees without EXIF orientation.",
)
@click.option(
    "--verify-floor",
    type=float,
    default=VERIFY_FLOOR,
    show_default=True,
    help="Lowest cosine similarity of a pair worth verifying.",
)
@click.option(
    "--min-keypoints",
    type=int,
    default=MIN_KEYPOINTS,
    show_default=True,
    help="Agreeing keypoint matches that make a verified pair a near duplicate.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Report path: writes OUT.json, OUT.csv and OUT.html (a .json/.csv/.html suffix is dropped).",
)
@click.option(
    "--keeper",
    type=click.Choice(KEEPER_POLICIES),
    default="resolution",
    show_default=True,
    help="Which file of a group to keep: most pixels, largest file, oldest or newest.",
)
@click.option(
    "--prefer",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Keep files under this folder first (repeatable).",
)
@click.option("--exact-only", is_flag=True, help="Only byte-identical copies (no similarity search).")
@click.option(
    "--include-dismissed",
    is_flag=True,
    help='Also report the pairs kept with "Keep all" in the UI\'s review (left out by default).',
)
@click.option(
    "--html-groups",
    type=int,
    default=2000,
    show_default=True,
    help="At most this many groups in the HTML page (all are in the CSV/JSON).",
)
@db_option
@click.pass_context
def dedup(
    ctx,
    index_dir,
    threshold,
    verify,
    similar,
    rotations,
    verify_floor,
    min_keypoints,
    out,
    keeper,
    prefer,
    exact_only,
    include_dismissed,
    html_groups,
    db_url,
):
    """Find exact and near duplicates in an index and write a report (HTML, CSV, JSON).

    Then review the HTML page and act on the report with `dedup apply REPORT --move-to FOLDER`."""
    if ctx.invoked_subcommand is not None:
        return
    if index_dir is None:
        raise UserError("dedup needs --index DIR (or $VGG_RETRIEVAL_INDEX)")
    if out is None:
        raise UserError("dedup needs --out REPORT (where to write the report)")

    with _Progress() as progress:
        report, paths = dedup_index(
            index_dir,
            out,
            db_url=db_url,
            html_groups=html_groups,
            progress=progress,
            threshold=threshold,
            keeper=keeper,
            prefer=prefer,
            near=not exact_only,
            verify=verify,
            verify_floor=verify_floor,
            min_keypoints=min_keypoints,
            similar=similar and verify,
            rotations=rotations and verify,
            include_dismissed=include_dismissed,
        )
    click.echo(f"{index_dir}: {report.summary()}")
    pairs = report.stats.get("verified_pairs", 0)
    if pairs:  # why a later run is fast: what it kept from an earlier one
        kept = report.stats.get("pairs_cached", 0)
        click.echo(
            f"  {pairs:,} candidate pairs judged: {kept:,} kept from an earlier run, {pairs - kept:,} verified"
        )
    for p in paths:
        click.echo(f"  wrote {p}")


class _Progress:
    """A tqdm bar per stage of find_duplicates (on stderr; quiet when it is not a terminal), each
    counting photos, with photos/s and the time left."""

    LABELS = {
        "search": "similarity search",
        "layouts": "turned copies (layouts)",
        "qualities": "keeper order (file qualities)",
        "features": "photo features",
        "verify": "verification",
        "similar": "similar shots",
    }

    def __enter__(self):
        self.bar, self.stage = None, None
        return self

    def __call__(self, stage, done, total):
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(
                total=total,
                desc=self.LABELS.get(stage, stage),
                unit=" photos",
                leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} photos "
                "[{elapsed} elapsed, {remaining} left, {rate_fmt}]",
            )
        self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __exit__(self, *exc):
        self.close()


def _execute_options(f):
    f = click.option("--execute", "execute2", is_flag=True, help="Same as --yes.")(f)
    f = click.option(
        "--yes", "execute", is_flag=True, help="Act (without it: a dry run that changes nothing)."
    )(f)
    return f


@dedup.command("apply")
@click.argument("report", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--move-to",
    "quarantine",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Quarantine folder (outside the indexed folders); files keep their relative paths.",
)
@click.option(
    "--keep",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Keep this file instead of its group's suggested keeper (repeatable).",
)
@click.option(
    "--log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Undo log path [default: QUARANTINE/dedup-undo-<time>.json].",
)
@click.option("--no-index-update", is_flag=True, help="Do not update the index after moving.")
@click.option(
    "--include-similar",
    is_flag=True,
    help="Also move the other files of similar-shot groups (not copies: review them first).",
)
@_execute_options
def apply_cmd(report, quarantine, keep, log, no_index_update, include_similar, execute, execute2):
    """Move the non-kept files of REPORT into a quarantine folder (dry run unless --yes).

    Never deletes. Refuses when a file changed since the report. Writes a JSON undo log."""

    apply_report(
        DedupReport.load(report),
        quarantine,
        execute=execute or execute2,
        log=log,
        keep=keep,
        update_index=not no_index_update,
        echo=_echo,
        include_similar=include_similar,
    )


@dedup.command("undo")
@click.argument("log", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--no-index-update", is_flag=True, help="Do not update the index after restoring.")
@_execute_options
def undo_cmd(log, no_index_update, execute, execute2):
    """Move the files of an undo LOG back where they were (dry run unless --yes).

    Refused, with nothing moved, unless every entry checks out: the log is signed by the index it
    names (not edited), each file lies inside the quarantine folder with the size and sha256 apply
    recorded, and goes back inside one of the index's folders."""

    undo(log, execute=execute or execute2, update_index=not no_index_update, echo=_echo)


def _echo(line: str) -> None:
    click.echo(one_line_text(line))


COMMANDS = (dedup,)
