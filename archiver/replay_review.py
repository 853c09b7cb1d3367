"""People's reading of `verify --replay`'s differences (the replay_reviews table).

After an upgrade whose parser reads some captured records into other rows, the replay names those rows as
differences. They are errors, since a row rewritten and signed again by someone with the key looks the same; and
since rows never change, they would be errors for ever. A person who has read them against the parser revision's
change records so (`archiver review-replay`), one row per difference naming it by its digest. A later replay shows
a reviewed difference as a note naming the review. The digest covers both rows whole, so the same row changed
since, or any other difference, is an error again. Only a Difference can be reviewed: a difference whose row a
run made with an older parser than this software's. Anything else a replay finds has no such explanation.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from .errors import ConfigError
from .items import canonical_json
from .operator import operator_name
from .problems import Problem
from .store import Store, schema_has
from .warc import iso, utcnow

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Difference(Problem):
    """A difference whose row a run made with an older parser than this software's (a parser change may explain
    it); `digest` names it whole (difference_digest)."""

    digest: str = ""
    review_id: int = 0  # the replay_reviews row that reviewed it (0: none)
    reviewed: str = ""  # that review in words: who, when, the note (one `--confirm` shares them)


def difference_digest(table: str, group: Row, live: tuple[Any, Row] | None, replayed: Row | None) -> str:
    """sha256 of the difference's canonical JSON: the table, what its rows are about, the live row (its key and
    every compared value in full: the printed line cuts long texts) and the replayed row."""
    facts = {
        "table": table,
        "group": list(group),
        "live": None if live is None else [live[0], list(live[1])],
        "replayed": None if replayed is None else list(replayed),
    }
    return hashlib.sha256(canonical_json(facts)).hexdigest()


@dataclass(frozen=True)
class ReplayReview:
    id: int
    reviewer: str
    note: str
    reviewed_at: str


def reviews_by_difference(conn: sqlite3.Connection) -> dict[str, ReplayReview]:
    """The latest review of each difference digest; none in an archive older than the table."""
    if not schema_has(conn, "replay_reviews"):
        return {}
    rows = conn.execute("SELECT id, difference_sha256, reviewer, note, reviewed_at FROM replay_reviews ORDER BY id")
    return {digest: ReplayReview(id, reviewer, note, at) for id, digest, reviewer, note, at in rows}


def mark_reviewed(problems: Iterable[Problem], reviews: dict[str, ReplayReview]) -> list[Problem]:
    """The problems, each Difference a person has reviewed made a note that names the review."""
    marked: list[Problem] = []
    for problem in problems:
        review = reviews.get(problem.digest) if isinstance(problem, Difference) else None
        if review is not None and problem.severity == "error":
            said = f"{problem.message}; reviewed by {review.reviewer} on {review.reviewed_at} (replay_reviews id "
            words = f"reviewed by {review.reviewer} on {review.reviewed_at}: {review.note}"
            message = f"{said}{review.id}): {review.note}"
            problem = replace(problem, severity="note", message=message, review_id=review.id, reviewed=words)
        marked.append(problem)
    return marked


def condensed(problems: Iterable[Problem]) -> list[Problem]:
    """For a person reading: the reviewed differences of one review (one `--confirm`: the same reviewer, time and
    note) as one note where the first stood, once there is more than one; a parser change can explain thousands
    of rows, read once. `--json` keeps each."""
    batches: dict[str, list[Difference]] = {}
    order: list[Problem | str] = []
    for problem in problems:
        if isinstance(problem, Difference) and problem.review_id and problem.severity == "note":
            if problem.reviewed not in batches:
                batches[problem.reviewed] = []
                order.append(problem.reviewed)
            batches[problem.reviewed].append(problem)
        else:
            order.append(problem)
    out: list[Problem] = []
    for entry in order:
        if not isinstance(entry, str):
            out.append(entry)
        elif len(batch := batches[entry]) == 1:
            out.append(batch[0])
        else:
            ids = sorted(d.review_id for d in batch)
            tables = ", ".join(sorted({d.where.split(" ", 1)[0] for d in batch}))
            message = (
                f"{len(batch)} differences in {tables} {entry} (replay_reviews ids {ids[0]} to {ids[-1]}; "
                "`archiver verify --replay --json` lists each)"
            )
            out.append(Problem("replay", message, "note"))
    return out


def unreviewed(problems: Iterable[Problem]) -> list[Difference]:
    """The differences still errors that a person may review."""
    return [p for p in problems if isinstance(p, Difference) and p.severity == "error"]


def difference_set(differences: Iterable[Difference]) -> str:
    """A short name of a set of differences (12 hex digits of the sha256 of their sorted digests): what a person
    read is what `--confirm` records, not what a replay finds later."""
    joined = "\n".join(sorted(d.digest for d in differences))
    return hashlib.sha256(joined.encode()).hexdigest()[:12]


def append_replay_reviews(store: Store, differences: Iterable[Difference], reviewer: str, note: str) -> list[int]:
    """Record, in one transaction, that `reviewer` read each difference and found it explained (`note`); the
    operating-system account that recorded it goes beside the name given. Returns the rows' ids."""
    if not reviewer.strip():
        raise ConfigError("--reviewer: empty; give the name of the person who read the differences")
    operator, at = operator_name(), iso(utcnow())
    with store.transaction():
        return [
            store._insert(
                "replay_reviews",
                {
                    "difference_sha256": d.digest,
                    "place": d.where,
                    "difference": d.message,
                    "reviewer": reviewer,
                    "note": note,
                    "operator": operator,
                    "reviewed_at": at,
                },
            )
            for d in differences
        ]
