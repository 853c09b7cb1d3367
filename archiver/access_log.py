"""Who looked at what: every request to the workspace, appended to its own hash-chained SQLite file.

HIPAA asks who viewed PHI. The archive is served read-only, so the log is a separate database beside it
(`access-log.db`). Like the archive it is append-only: triggers refuse UPDATE and DELETE, and each row's
`hash` chains the row to the one before it (sha256 of the previous hash's 32 bytes and the row's canonical
JSON, as in schemas/ledger.md), so a row edited, removed or slipped in with another tool is found by
`verify_access_log` (`archiver access-log verify`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from .ledger import GENESIS, canonical_row_bytes, chain_hash
from .problems import Problem

ACCESS_LOG_FILE = "access-log.db"
TABLE = "access_log"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    seq INTEGER PRIMARY KEY,             -- 1, 2, 3 ... without gaps
    at TEXT NOT NULL,                    -- when the response was sent (ISO 8601 UTC)
    actor TEXT,                          -- the signed-in person; null: nobody signed in (loopback, no users)
    role TEXT,
    client TEXT NOT NULL,                -- address the request came from
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT NOT NULL,                 -- the query string as sent (search terms, SQL)
    status INTEGER NOT NULL,
    rows INTEGER,                        -- rows the page's queries returned; null where none ran
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS {TABLE}_append_only_update BEFORE UPDATE ON {TABLE}
BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS {TABLE}_append_only_delete BEFORE DELETE ON {TABLE}
BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: DELETE refused'); END;
"""
CHAINED_FIELDS = ("seq", "at", "actor", "role", "client", "method", "path", "query", "status", "rows")


class RequestRows:
    """Rows the queries of one request returned: the pages' own queries add to it (see serve.py)."""

    def __init__(self) -> None:
        self.rows: int | None = None

    def add(self, n: int) -> None:
        self.rows = (self.rows or 0) + n


# The request being served: the access log's middleware sets it, the read-only database counts into it.
current_rows: ContextVar[RequestRows | None] = ContextVar("current_rows", default=None)


def count_rows(n: int) -> None:
    counter = current_rows.get()
    if counter is not None:
        counter.add(n)


def access_log_path(database: Path) -> Path:
    return Path(database).parent / ACCESS_LOG_FILE


@dataclass(frozen=True)
class Access:
    actor: str | None
    role: str | None
    client: str
    method: str
    path: str
    query: str
    status: int
    rows: int | None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AccessLog:
    """The writer: one connection, one append at a time (the server's requests run concurrently)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")  # the server reads it read-only while this appends
        self.conn.executescript(SCHEMA)
        self.lock = threading.Lock()

    def close(self) -> None:
        self.conn.close()

    def append(self, access: Access) -> int:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                last = self.conn.execute(f"SELECT seq, hash FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
                row = {"seq": seq, "at": _now(), **asdict(access)}
                digest = chain_hash(prev, canonical_row_bytes(TABLE, row))
                self.conn.execute(
                    f"INSERT INTO {TABLE} ({', '.join(CHAINED_FIELDS)}, prev_hash, hash) "
                    f"VALUES ({', '.join('?' * len(CHAINED_FIELDS))}, ?, ?)",
                    [row[f] for f in CHAINED_FIELDS] + [prev, digest],
                )
                self.conn.execute("COMMIT")
            except BaseException:
                # A COMMIT that failed on a full disk has rolled back already: a ROLLBACK then would fail too, and
                # its error ("no transaction is active") would replace the one to report.
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            return seq


def verify_access_log(path: Path) -> list[Problem]:
    """Every problem in the log's chain (an empty list: it verifies). Opens the file read-only."""
    if not Path(path).is_file():
        return [Problem(str(path), "access log not found")]
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        return list(_verify(conn, str(path)))
    finally:
        conn.close()


def _verify(conn: sqlite3.Connection, where: str) -> Iterator[Problem]:
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    for name in (f"{TABLE}_append_only_update", f"{TABLE}_append_only_delete"):
        if name not in triggers:
            yield Problem(where, f"trigger {name} is missing: the log is no longer protected from edits")
    prev, expected_seq = GENESIS, 1
    cur = conn.execute(f"SELECT {', '.join(CHAINED_FIELDS)}, prev_hash, hash FROM {TABLE} ORDER BY seq")
    for found in cur:
        row = dict(zip(CHAINED_FIELDS, found[: len(CHAINED_FIELDS)], strict=True))
        stored_prev, stored_hash = found[-2], found[-1]
        seq = row["seq"]
        if seq != expected_seq:
            yield Problem(f"{where} seq {seq}", f"expected seq {expected_seq}: rows are missing")
        if stored_prev != prev:
            yield Problem(f"{where} seq {seq}", f"prev_hash {stored_prev} does not follow the row before ({prev})")
        digest = chain_hash(stored_prev, canonical_row_bytes(TABLE, row))
        if digest != stored_hash:
            yield Problem(f"{where} seq {seq}", f"hash {stored_hash} does not match the row (recomputed {digest})")
        prev, expected_seq = stored_hash, seq + 1


def access_log_head(path: Path) -> tuple[int, str] | None:
    """(seq, hash) of the log's last row, read without writing; None when there is no log or no row yet. A
    checkpoint signs it, so that a log rewritten since (rows removed, the chain recomputed) is found."""
    if not Path(path).is_file():
        return None
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT seq, hash FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
    except sqlite3.OperationalError:
        return None  # made by a server that has not logged a request yet
    finally:
        conn.close()


def check_signed_heads(path: Path, heads: list[tuple[str, int, str]]) -> Iterator[Problem]:
    """Each (checkpoint, seq, hash) a checkpoint signed must still be in the log as signed."""
    if not heads:
        return
    if not Path(path).is_file():
        yield Problem(str(path), f"access log missing, though {heads[-1][0]} signed its entry {heads[-1][1]}")
        return
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        for where, seq, signed in heads:
            found = conn.execute(f"SELECT hash FROM {TABLE} WHERE seq = ?", (seq,)).fetchone()
            if found is None:
                yield Problem(f"{path} seq {seq}", f"signed by {where}, no longer in the log (rows removed)")
            elif found[0] != signed:
                yield Problem(f"{path} seq {seq}", f"hash expected {signed} as {where} signed, found {found[0]}")
    finally:
        conn.close()
