"""What `archiver status` shows: the last runs, each account's last outcome, counts and archive size."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backup import read_manifest
from .connectors.base import CREDENTIAL_EXPIRY
from .store import Store, load_migrations, schema_has


@dataclass
class ArchiveStatus:
    database: str
    last_run: dict[str, Any] | None
    accounts: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    items_by_status: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    next_token_expiry: dict[str, Any] | None = None  # the soonest expiry a connector recorded, with its account
    backup: dict[str, Any] | None = None  # the backup folder's backup.json, with the folder (when configured)
    unscanned_versions: int = 0  # versions the PHI scan left out and no scan has read since
    schema_version: int = 0  # the archive's; below this software's until a writer upgrades it (a read never does)
    software_schema_version: int = 0


# Every item and those with more than one version: one pass over the covering index item_versions_item.
ITEM_COUNTS_SQL = (
    "SELECT count(*), coalesce(sum(n > 1), 0) FROM (SELECT count(*) AS n FROM item_versions GROUP BY item_key)"
)
# The items whose latest deletion or restoration is a deletion, and of them those with more than one version: from
# the deletion events (events_event), each item's own events (events_item) and its versions (item_versions_item).
# `+e.event` keeps SQLite from reading every deleted or restored event for each deletion (events_event).
DELETED_COUNTS_SQL = """
SELECT count(*), coalesce(sum(n > 1), 0) FROM (
    SELECT (SELECT count(*) FROM item_versions c WHERE c.item_key = x.item_key) AS n
    FROM events x
    WHERE x.event = 'deleted'
      AND x.id = (SELECT max(e.id) FROM events e WHERE e.item_key = x.item_key AND +e.event IN ('deleted', 'restored'))
) WHERE n > 0
"""


def count_items_by_status(conn: sqlite3.Connection) -> dict[str, int]:
    """How many items the `items` view shows in each status, without working out every item's status (that view,
    grouped, took 4.6 s at a million versions): deleted first (an edited item deleted since is deleted), then
    edited (more than one version), then live. Statuses no item has are left out, as a GROUP BY leaves them."""
    items, several = conn.execute(ITEM_COUNTS_SQL).fetchone()
    deleted, deleted_several = conn.execute(DELETED_COUNTS_SQL).fetchone()  # items without versions left out
    edited = several - deleted_several
    found = {"deleted": deleted, "edited": edited, "live": items - deleted - edited}
    return {status: count for status, count in found.items() if count}


def read_status(database: Path, archive_dir: Path, backup_dir: Path | None = None) -> ArchiveStatus:
    backup = None
    if backup_dir is not None:
        backup = {"folder": str(backup_dir), **(read_manifest(backup_dir) or {})}
    store = Store.open(database, readonly=True)
    try:
        conn = store.conn
        last = conn.execute(
            "SELECT r.id, r.started_at, rr.finished_at, coalesce(rr.status, 'running or interrupted') AS status "
            "FROM runs r LEFT JOIN run_results rr ON rr.run_id = r.id ORDER BY r.started_at DESC LIMIT 1"
        ).fetchone()
        accounts = [
            dict(row)
            for row in conn.execute(
                "SELECT a.account, a.status, a.run_id, a.finished_at, a.new_items, a.new_versions, a.deletions, "
                "a.requests, a.error FROM account_runs a "
                "WHERE a.id = (SELECT max(b.id) FROM account_runs b WHERE b.account = a.account) ORDER BY a.account"
            )
        ]
        by_status = count_items_by_status(conn)
        size = sum(p.stat().st_size for p in archive_dir.rglob("*") if p.is_file())
        expiry = conn.execute(
            "SELECT c.account, c.value AS expires_at FROM cursors c WHERE c.name = ? AND c.id = "
            "(SELECT max(d.id) FROM cursors d WHERE d.account = c.account AND d.name = c.name) "
            "ORDER BY c.value LIMIT 1",
            (CREDENTIAL_EXPIRY,),
        ).fetchone()
        has_view = schema_has(conn, "unscanned_versions")
        unscanned = conn.execute("SELECT count(*) FROM unscanned_versions").fetchone()[0] if has_view else 0
        return ArchiveStatus(
            str(database),
            dict(last) if last else None,
            accounts,
            store.counts(),
            by_status,
            size,
            dict(expiry) if expiry else None,
            backup,
            unscanned,
            store.schema_version,
            len(load_migrations()),
        )
    finally:
        store.close()


def status_json(status: ArchiveStatus) -> str:
    return json.dumps(status.__dict__, indent=2, default=str)
