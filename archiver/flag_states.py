"""The review queue as recorded: each flag's state appended when it changes (flag_states, migration 0023).

flag_status computes every flag's state on every read (its latest decision over the same hit, whether the latest
scan still finds it, a consent flag's condition): too slow for the queue page at tens of thousands of flags. Each
command that appends what a state depends on calls record_flag_states in its own transaction, and flag_queue reads
the latest row of each flag. The state recorded is flag_status's, so the two cannot disagree in what they mean. A
consent flag's state also depends on the day (a consent expires): the queue takes it from flag_status again on a
local day no whole recording was made on, and a run records, whatever else it did, before it ends.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    live: dict[int, State] = {}
    recorded: dict[int, State] = {}
    if item_keys is None:
        live = {row[0]: tuple(row[1:]) for row in conn.execute(_LIVE)}
        recorded = {row[0]: tuple(row[1:]) for row in conn.execute(_RECORDED)}
    else:
        keys = sorted(set(item_keys))
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
    changed = [(flag_id, live[flag_id]) for flag_id in sorted(live) if recorded.get(flag_id) != live[flag_id]]
    if not changed and item_keys is not None:
        return 0
    # the day flag_status judged consents on, as SQLite gives it to this connection (the view reads the same)
    local_day = conn.execute("SELECT date('now', 'localtime')").fetchone()[0]
    recording = store._insert(
        "flag_recordings",
        {"command": command, "whole": int(item_keys is None), "local_day": local_day, "recorded_at": iso(utcnow())},
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
