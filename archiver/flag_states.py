"""The review queue as recorded: each flag's state appended when it changes (flag_states, migration 0023).

flag_status computes every flag's state on every read (its latest decision over the same hit, whether the latest
scan still finds it, a consent flag's condition): too slow for the queue page at tens of thousands of flags. Each
command that appends what a state depends on calls record_flag_states in its own transaction, and flag_queue reads
the latest row of each flag. The state recorded is flag_status's, so the two cannot disagree in what they mean. A
consent flag's state also depends on the day (a consent expires): the queue takes it from flag_status again on a
local day no whole recording was made on, and a run records, whatever else it did, before it ends. `archiver doctor`
compares the queue read from the recorded states with the one flag_status computes (compare_review_queue).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from .store import Store, schema_has
from .warc import iso, utcnow

State = tuple[int, str | None, int | None]  # current, decision, review_id

_LIVE = "SELECT flag_id, coalesce(current, 0), decision, review_id FROM flag_status"
_RECORDED = (
    "SELECT r.flag_id, r.current, r.decision, r.review_id FROM flag_states r"
    " WHERE r.id = (SELECT max(x.id) FROM flag_states x WHERE x.flag_id = r.flag_id)"
)
# SQLite's default limit on a statement's parameters is 999 in older builds
_CHUNK = 500
# Which states flag_queue shows (migration 0023's view, and every flag_queue before it): on flag_status's columns.
IN_QUEUE = "current = 1 AND (decision IS NULL OR decision = 'escalated')"


def record_flag_states(store: Store, command: str, item_keys: Iterable[str] | None = None) -> int:
    """Append the state of each flag whose state flag_status now gives differs from its latest recorded one (or
    that has none), under a flag_recordings row naming `command`: all flags, or only those of `item_keys` where the
    caller's change reaches no other item (a review: a decision carries over only within its item). A recording of
    all flags is kept even when nothing changed: it says on which local day the consent flags were judged. Call
    inside the transaction that made the change. Returns the number of states appended; none on an archive
    older than migration 0023."""
    conn = store.conn
    if not schema_has(conn, "flag_states"):
        return 0
    # The day flag_status judges consents on, as SQLite gives it to this connection, read before and after the
    # states: a midnight between would label states judged on one day with the next (the queue reads a consent
    # flag's recorded state on its recording's day only), so they are read again, on the new day.
    keys = None if item_keys is None else sorted(set(item_keys))  # read more than once
    day = _local_day(conn)
    while True:
        live, recorded = _states(conn, keys)
        if (after := _local_day(conn)) == day:
            break
        day = after
    changed = [(flag_id, live[flag_id]) for flag_id in sorted(live) if recorded.get(flag_id) != live[flag_id]]
    if not changed and item_keys is not None:
        return 0
    recording = store._insert(
        "flag_recordings",
        {"command": command, "whole": int(item_keys is None), "local_day": day, "recorded_at": iso(utcnow())},
    )
    for flag_id, (current, decision, review_id) in changed:
        store._insert(
            "flag_states",
            {
                "recording_id": recording,
                "flag_id": flag_id,
                "current": current,
                "decision": decision,
                "review_id": review_id,
            },
        )
    return len(changed)


def _local_day(conn: sqlite3.Connection) -> str:
    return conn.execute("SELECT date('now', 'localtime')").fetchone()[0]


def _states(conn: sqlite3.Connection, keys: list[str] | None) -> tuple[dict[int, State], dict[int, State]]:
    """flag_status's state of every flag (of the items `keys` only, when given) and its latest recorded one."""
    live: dict[int, State] = {}
    recorded: dict[int, State] = {}
    if keys is None:
        live = {row[0]: tuple(row[1:]) for row in conn.execute(_LIVE)}
        recorded = {row[0]: tuple(row[1:]) for row in conn.execute(_RECORDED)}
        return live, recorded
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        live.update((r[0], tuple(r[1:])) for r in conn.execute(f"{_LIVE} WHERE item_key IN ({marks})", chunk))
        recorded.update(
            (r[0], tuple(r[1:]))
            for r in conn.execute(
                f"{_RECORDED} AND r.flag_id IN (SELECT id FROM flags WHERE item_key IN ({marks}))", chunk
            )
        )
    return live, recorded


def live_review_queue(conn: sqlite3.Connection, flag_ids: list[int] | None = None) -> set[int]:
    """The flags flag_status puts in the review queue now, as flag_queue would with every state recorded: of
    `flag_ids`, or of every flag (about a second at 66,000 flags: not for a page)."""
    if flag_ids is None:
        return {r[0] for r in conn.execute(f"SELECT flag_id FROM flag_status WHERE {IN_QUEUE}")}
    queued: set[int] = set()
    for start in range(0, len(flag_ids), _CHUNK):
        chunk = flag_ids[start : start + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        sql = f"SELECT flag_id FROM flag_status WHERE flag_id IN ({marks}) AND {IN_QUEUE}"
        queued.update(r[0] for r in conn.execute(sql, chunk))
    return queued


@dataclass(frozen=True)
class QueueComparison:
    """The review queue as flag_queue reads it (the recorded states) against the one flag_status computes."""

    queued: int  # flags in flag_queue
    missing: list[int]  # flag_status puts them in the queue; flag_queue lacks them
    extra: list[int]  # flag_queue holds them; flag_status does not
    # flag id -> (command, recorded_at) of the flag_recordings row of its latest state, for the first few of each
    recorded_by: dict[int, tuple[str, str]]

    @property
    def agree(self) -> bool:
        return not self.missing and not self.extra


def compare_review_queue(conn: sqlite3.Connection, shown: int = 5) -> QueueComparison | None:
    """Compare flag_queue's flags with flag_status's queue, both read in one snapshot (a command committing between
    the two reads would look like a divergence). A flag with no recorded state, and a consent flag on a day no
    recording of every flag was made, are judged by flag_status in the view itself: they can never differ. What
    can: a state recorded that is not flag_status's (a flag_states row appended by a library caller, ledgered like
    any other), or one flag_status has moved on from with nothing recorded since (a run that stopped after its
    captures committed). None on an archive without recorded states (before migration 0023)."""
    if not schema_has(conn, "flag_states"):
        return None
    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")
    try:
        recorded = {r[0] for r in conn.execute("SELECT flag_id FROM flag_queue")}
        live = live_review_queue(conn)
        missing, extra = sorted(live - recorded), sorted(recorded - live)
        recorded_by = _recorded_by(conn, missing[:shown] + extra[:shown])
    finally:
        if began:
            conn.execute("COMMIT")
    return QueueComparison(len(recorded), missing, extra, recorded_by)


def _recorded_by(conn: sqlite3.Connection, flag_ids: list[int]) -> dict[int, tuple[str, str]]:
    """The command and time of the recording of each flag's latest state (by flag_states_by_flag: a few look-ups)."""
    found: dict[int, tuple[str, str]] = {}
    for flag_id in flag_ids:
        row = conn.execute(
            "SELECT d.command, d.recorded_at FROM flag_states s JOIN flag_recordings d ON d.id = s.recording_id"
            " WHERE s.flag_id = ? ORDER BY s.id DESC LIMIT 1",
            (flag_id,),
        ).fetchone()
        if row is not None:
            found[flag_id] = (row[0], row[1])
    return found
