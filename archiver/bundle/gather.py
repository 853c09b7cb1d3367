"""Every archive row an export holds for its selected items, as stored, with the ledger entries covering them.

Rows are copied with every column exactly as stored, so that anyone can rebuild each row's canonical bytes
(schemas/ledger.md) from the bundle and recompute its ledger entry.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from ..ledger import LEDGER_KEYS
from .select import chunks, has_table

# The ledgered tables a bundle carries, in the order they are written and checked.
ROW_TABLES = ("item_versions", "events", "media_files", "accounts", "flags", "flag_reviews")


@dataclass
class Gathered:
    item_keys: list[str]
    items: list[dict[str, Any]]  # the latest state of each item (the `items` view): a reading aid, not ledgered
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # table -> rows as stored
    ledger: list[dict[str, Any]] = field(default_factory=list)  # the entries covering those rows, by seq

    def counts(self) -> dict[str, int]:
        return {"items": len(self.items), **{table: len(rows) for table, rows in self.rows.items()}}


def row_key_column(table: str) -> str:
    return LEDGER_KEYS.get(table, "id")


def _rows(conn: sqlite3.Connection, sql: str, values: list[Any], order: str) -> list[dict[str, Any]]:
    """SELECT * rows whose column is in `values` (in chunks: SQLite limits bound parameters)."""
    found: list[dict[str, Any]] = []
    for chunk in chunks(values, 500):
        cur = conn.execute(sql.format(marks=",".join("?" for _ in chunk)), chunk)
        names = [d[0] for d in cur.description]
        found.extend(dict(zip(names, tuple(row), strict=True)) for row in cur)
    found.sort(key=lambda r: r[order])
    return found


def gather_rows(conn: sqlite3.Connection, item_keys: list[str]) -> Gathered:
    """Every version, event, media file and account row of the items, and flags and reviews where the
    archive has them."""
    items = _rows(conn, "SELECT * FROM items WHERE item_key IN ({marks})", item_keys, "version_id")
    gathered = Gathered(item_keys, items)
    versions = _rows(conn, "SELECT * FROM item_versions WHERE item_key IN ({marks})", item_keys, "id")
    gathered.rows["item_versions"] = versions
    gathered.rows["events"] = _rows(conn, "SELECT * FROM events WHERE item_key IN ({marks})", item_keys, "id")
    urls = sorted({m["url"] for v in versions for m in json.loads(v["media"]) if m.get("url")})
    gathered.rows["media_files"] = _rows(conn, "SELECT * FROM media_files WHERE url IN ({marks})", urls, "url")
    accounts = sorted({v["account"] for v in versions})
    gathered.rows["accounts"] = _rows(conn, "SELECT * FROM accounts WHERE name IN ({marks})", accounts, "id")
    if has_table(conn, "flags"):
        flags = _rows(conn, "SELECT * FROM flags WHERE item_key IN ({marks})", item_keys, "id")
        gathered.rows["flags"] = flags
        if has_table(conn, "flag_reviews"):
            ids = [f["id"] for f in flags]
            gathered.rows["flag_reviews"] = _rows(
                conn, "SELECT * FROM flag_reviews WHERE flag_id IN ({marks})", ids, "id"
            )
    gathered.ledger = ledger_entries(conn, gathered.rows)
    return gathered


def ledger_entries(conn: sqlite3.Connection, rows: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The ledger entry of every row, in seq order."""
    entries: list[dict[str, Any]] = []
    for table, table_rows in rows.items():
        keys = [str(r[row_key_column(table)]) for r in table_rows]
        for chunk in chunks(keys, 500):
            cur = conn.execute(
                "SELECT seq, table_name, row_key, row_sha256, prev_hash, hash FROM ledger "
                f"WHERE table_name = ? AND row_key IN ({','.join('?' for _ in chunk)})",
                [table, *chunk],
            )
            names = [d[0] for d in cur.description]
            entries.extend(dict(zip(names, tuple(row), strict=True)) for row in cur)
    entries.sort(key=lambda e: e["seq"])
    return entries
