"""What `archiver status` shows: the last runs, each account's last outcome, counts and archive size."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backup import read_manifest
from .connectors.base import CREDENTIAL_EXPIRY
from .store import Store


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
        by_status = {row[0]: row[1] for row in conn.execute("SELECT status, count(*) FROM items GROUP BY status")}
        size = sum(p.stat().st_size for p in archive_dir.rglob("*") if p.is_file())
        expiry = conn.execute(
            "SELECT c.account, c.value AS expires_at FROM cursors c WHERE c.name = ? AND c.id = "
            "(SELECT max(d.id) FROM cursors d WHERE d.account = c.account AND d.name = c.name) "
            "ORDER BY c.value LIMIT 1",
            (CREDENTIAL_EXPIRY,),
        ).fetchone()
        has_view = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'unscanned_versions'").fetchone()
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
        )
    finally:
        store.close()


def status_json(status: ArchiveStatus) -> str:
    return json.dumps(status.__dict__, indent=2, default=str)
