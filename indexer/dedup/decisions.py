"""What people decided in review, applied to a report: pairs whose files they kept both of ("keep
all" in the UI; ``Store.dismissed_pairs``, by sha256) leave the groups, so a dismissed group does
not come back on the next run. A file that changed has another sha256 and is judged again."""

from __future__ import annotations

from itertools import combinations


def pair_key(sha_a: str, sha_b: str) -> tuple[str, str]:
    return (sha_a, sha_b) if sha_a <= sha_b else (sha_b, sha_a)


def kept_pairs(members) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Every pair of ``members`` (report Members) as ((path, sha256), (path, sha256)), for
    ``Store.record_dedup_decisions``."""
    return [((a.path, a.sha256), (b.path, b.sha256)) for a, b in combinations(members, 2)]


def drop_dismissed(groups, dismissed: set) -> tuple[list, int]:
    """``groups`` without the members whose pair with their keeper was dismissed (and without the
    groups left with no member); (groups, how many members were left out)."""
    if not dismissed:
        return groups, 0
    kept, dropped = [], 0
    for g in groups:
        members = [m for m in g.members if pair_key(g.keeper.sha256, m.sha256) not in dismissed]
        dropped += len(g.members) - len(members)
        if members:
            g.members = members
            kept.append(g)
    return kept, dropped
