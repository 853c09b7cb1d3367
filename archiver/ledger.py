"""The hash chain over every appended row (see schemas/ledger.md for the canonical bytes).

The triggers stop honest mistakes; the chain makes a change made behind their back (a row edited, removed,
or inserted with another tool) visible to `archiver verify`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from typing import Any

from .items import canonical_json
from .problems import Problem, listed

GENESIS = "0" * 64

# The primary key of every ledgered table: what `row_key` holds.
LEDGER_KEYS: dict[str, str] = {
    "schema_migrations": "version",
    "runs": "id",
    "run_results": "run_id",
    "account_runs": "id",
    "accounts": "id",
    "warc_files": "name",
    "item_versions": "id",
    "events": "id",
    "media_files": "url",
    "cursors": "id",
    "checkpoints": "id",
    "scan_runs": "id",
    "flags": "id",
    "flag_reviews": "id",
    "consent_imports": "id",
    "consent_register": "id",
    "consent_links": "id",
    "consent_checks": "id",
    "exports": "id",
    "alert_deliveries": "id",
    "review_operators": "review_id",
    "run_progress": "id",
    "scan_skips": "id",
    "scan_retries": "id",
    "consent_signals": "id",
    "flag_recordings": "id",
    "flag_states": "id",
    "replay_reviews": "id",
}
INTEGER_KEYS = {
    "schema_migrations",
    "account_runs",
    "accounts",
    "item_versions",
    "events",
    "cursors",
    "checkpoints",
    "scan_runs",
    "flags",
    "flag_reviews",
    "consent_imports",
    "consent_register",
    "consent_links",
    "consent_checks",
    "exports",
    "alert_deliveries",
    "review_operators",
    "run_progress",
    "scan_skips",
    "scan_retries",
    "consent_signals",
    "flag_recordings",
    "flag_states",
    "replay_reviews",
}


def canonical_row_bytes(table: str, row: dict[str, Any]) -> bytes:
    return canonical_json({"row": row, "table": table})


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()


def _row_by_rowid(conn: sqlite3.Connection, table: str, rowid: int) -> dict[str, Any]:
    cur = conn.execute(f"SELECT * FROM {table} WHERE rowid = ?", (rowid,))
    names = [d[0] for d in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def _row_by_key(conn: sqlite3.Connection, table: str, key: str) -> dict[str, Any] | None:
    value: Any = int(key) if table in INTEGER_KEYS else key
    cur = conn.execute(f"SELECT * FROM {table} WHERE {LEDGER_KEYS[table]} = ?", (value,))
    found = cur.fetchone()
    if found is None:
        return None
    return dict(zip([d[0] for d in cur.description], found, strict=True))


def head(conn: sqlite3.Connection) -> tuple[int, str]:
    """(seq, hash) of the last entry; (0, GENESIS) for an empty ledger."""
    found = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    return (found[0], found[1]) if found else (0, GENESIS)


def append_entry(
    conn: sqlite3.Connection,
    table: str,
    rowid: int,
    row: dict[str, Any] | None = None,
    at: tuple[int, str] | None = None,
) -> tuple[int, str]:
    """Enter the row just inserted (inside the caller's transaction); returns the new head.

    `row` is the row as stored (an INSERT's RETURNING *, defaults and type affinity applied); without it the
    row is read back. `at` is the head as the caller last left it in this same write transaction (nobody else
    can write meanwhile); without it the head is read.
    """
    row = row if row is not None else _row_by_rowid(conn, table, rowid)
    canonical = canonical_row_bytes(table, row)
    seq, prev = at if at is not None else head(conn)
    entry_hash = chain_hash(prev, canonical)
    conn.execute(
        "INSERT INTO ledger (seq, table_name, row_key, row_sha256, prev_hash, hash) VALUES (?,?,?,?,?,?)",
        (seq + 1, table, str(row[LEDGER_KEYS[table]]), hashlib.sha256(canonical).hexdigest(), prev, entry_hash),
    )
    return seq + 1, entry_hash


def backfill(conn: sqlite3.Connection) -> int:
    """Enter rows that predate the ledger, table by table in LEDGER_KEYS order, then by key."""
    entered = 0
    existing = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table, key in LEDGER_KEYS.items():
        if table not in existing:
            continue  # made by a later migration; its rows are entered as they are appended
        for (rowid,) in conn.execute(f"SELECT rowid FROM {table} ORDER BY {key}").fetchall():
            append_entry(conn, table, rowid)
            entered += 1
    return entered


class _Undecodable:
    """A TEXT value that is not UTF-8, read as its bytes: reported as a changed row instead of stopping verify."""

    def __init__(self, data: bytes):
        self.data = data


def _text_or_undecodable(data: bytes) -> str | _Undecodable:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _Undecodable(data)


def _canonical_or_none(table: str, row: dict[str, Any]) -> bytes | None:
    """The row's canonical bytes; None when a value has no canonical form (a BLOB or text that is not UTF-8,
    which the archiver never writes)."""
    try:
        return canonical_row_bytes(table, row)
    except (TypeError, ValueError):
        return None


class _TableScan:
    """A table's rows in insertion (rowid) order: the order the ledger entered them in, so the chain is
    checked with one scan per table instead of one lookup per entry. A row that is not next (a backfilled
    archive's key order, a row removed) is looked up by key instead."""

    def __init__(self, conn: sqlite3.Connection, table: str):
        self.conn = conn
        self.table = table
        self.key = LEDGER_KEYS[table]
        self.cursor = conn.execute(f"SELECT * FROM {table} ORDER BY rowid")
        self.names = [d[0] for d in self.cursor.description]
        self.next: dict[str, Any] | None = self._advance()

    def _advance(self) -> dict[str, Any] | None:
        found = self.cursor.fetchone()
        return dict(zip(self.names, found, strict=True)) if found is not None else None

    def row(self, key: str) -> dict[str, Any] | None:
        if self.next is not None and str(self.next[self.key]) == key:
            row, self.next = self.next, self._advance()
            return row
        return _row_by_key(self.conn, self.table, key)


def verify_ledger(conn: sqlite3.Connection) -> Iterator[Problem]:
    """Recompute the chain from the rows as they are now; one problem per broken place."""
    text_factory = conn.text_factory
    conn.text_factory = _text_or_undecodable
    try:
        yield from _verify_ledger(conn)
    finally:
        conn.text_factory = text_factory


def _verify_ledger(conn: sqlite3.Connection) -> Iterator[Problem]:
    expected_seq, prev = 1, GENESIS
    existing = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    scans = {table: _TableScan(conn, table) for table in LEDGER_KEYS if table in existing}
    entered = dict.fromkeys(LEDGER_KEYS, 0)
    for seq, table, key, row_sha, prev_hash, entry_hash in conn.execute(
        "SELECT seq, table_name, row_key, row_sha256, prev_hash, hash FROM ledger ORDER BY seq"
    ):
        where = f"ledger seq {seq}"
        if seq != expected_seq:
            yield Problem(where, f"sequence expected {expected_seq}, found {seq} (entries missing)")
        if prev_hash != prev:
            yield Problem(where, f"prev_hash expected {prev}, found {prev_hash} (chain broken)")
        if table not in LEDGER_KEYS:
            yield Problem(where, f"names unknown table {table!r}")
        elif table not in scans:
            yield Problem(where, f"names table {table}, which is missing from the database (dropped)")
        else:
            entered[table] += 1
            row = scans[table].row(key)
            canonical = _canonical_or_none(table, row) if row is not None else None
            if row is None:
                yield Problem(f"{table} {LEDGER_KEYS[table]}={key}", f"row entered at {where} is missing (deleted)")
            elif canonical is None:
                yield Problem(
                    f"{table} {LEDGER_KEYS[table]}={key}",
                    f"row changed since {where}: it holds a BLOB or text that is not UTF-8, which the archiver "
                    "never writes",
                )
            else:
                found = hashlib.sha256(canonical).hexdigest()
                if found != row_sha:
                    yield Problem(
                        f"{table} {LEDGER_KEYS[table]}={key}",
                        f"row changed since {where}: sha256 expected {row_sha}, found {found}",
                    )
                elif chain_hash(prev_hash, canonical) != entry_hash:
                    yield Problem(where, f"hash expected {chain_hash(prev_hash, canonical)}, found {entry_hash}")
        expected_seq, prev = seq + 1, entry_hash
    for table, key in LEDGER_KEYS.items():
        if table not in existing:
            continue
        cast = "" if table not in INTEGER_KEYS else "CAST"
        outside = conn.execute(
            f"SELECT {key} FROM {table} WHERE {cast}({key} {'AS TEXT' if cast else ''}) NOT IN "
            "(SELECT row_key FROM ledger WHERE table_name = ?) ORDER BY rowid",
            (table,),
        ).fetchall()
        yield from listed(
            outside,
            lambda r, t=table, k=key: Problem(
                f"{t} {k}={r[0]}", "row is not in the ledger (inserted behind the archiver's back)"
            ),
            "rows not in the ledger",
            table,
        )
        # A second row under a key the ledger entered once passes the check above (its key is entered): only
        # possible once the table has lost its primary key, which the schema check reports too.
        rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if rows > entered[table] + len(outside):
            doubled = conn.execute(
                f"SELECT {key}, count(*) FROM {table} GROUP BY {key} HAVING count(*) > 1 ORDER BY {key}"
            )
            yield from listed(
                doubled,
                lambda r, t=table, k=key: Problem(
                    f"{t} {k}={r[0]}",
                    f"{r[1]} rows hold this key, the ledger entered one (rows added behind the archiver's back)",
                ),
                "keys held by more than one row",
                table,
            )
