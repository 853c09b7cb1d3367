"""The archive database: open and migrate it, append rows, answer the questions a run asks.

Nothing here updates or deletes: every write is an INSERT, and the schema's triggers refuse anything else.
The schema lives in schemas/archive.sql, split into numbered migrations (see its header).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import sqlite_utils

from . import __version__, ledger
from .checkpoints import Checkpoint
from .errors import ConfigError, StoreError
from .items import AccountIdentity, Deletion, Item, MediaFile
from .warc import iso, utcnow

LEDGER_MIGRATION = 2  # from this schema version on, every appended row extends the ledger
FLAG_STATES_MIGRATION = 23  # the review queue reads recorded flag states: the flags already there get theirs
FTS_AT_COMMIT_MIGRATION = 8  # from this one on, Store.commit fills the full-text index (no trigger)
MIGRATION_LINE = re.compile(r"^-- migration (\d{4}): (.+)$", re.MULTILINE)
# Once a checkpoint has emptied it, the WAL file is cut back to this size. A reader that holds a snapshot
# (a long `archiver verify`) keeps SQLite from reusing the WAL, so a run meanwhile grows it by all it writes;
# without a limit the file would keep that size for good. An ordinary run's WAL stays well below it.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
# The JSON of a version's media and of an event's evidence, as json.dumps wrote them, without building a new
# encoder for every row (the store's JSON work is a third of an append).
_MEDIA_JSON = json.JSONEncoder(ensure_ascii=False)
_EVIDENCE_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True)

# Every table that holds archive facts; each has the two append-only triggers.
ARCHIVE_TABLES = (
    "schema_migrations",
    "runs",
    "run_results",
    "account_runs",
    "accounts",
    "warc_files",
    "item_versions",
    "events",
    "media_files",
    "cursors",
    "ledger",
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
)


@dataclass(frozen=True)
class Migration:
    version: int
    title: str
    sql: str


def load_migrations() -> list[Migration]:
    """The numbered blocks of schemas/archive.sql, in order."""
    text = resources.files("archiver.schemas").joinpath("archive.sql").read_text("utf-8")
    marks = list(MIGRATION_LINE.finditer(text))
    migrations = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        migrations.append(Migration(int(mark.group(1)), mark.group(2).strip(), text[mark.end() : end]))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(f"schemas/archive.sql: migrations must be numbered 0001, 0002, ... (found {versions})")
    return migrations


@dataclass(frozen=True)
class KnownItem:
    """What the archive holds about an item, as a connector needs it to decide what to re-read."""

    item_key: str
    native_id: str
    kind: str
    thread_key: str | None
    conversation_key: str | None
    parent_key: str | None
    created_at: str | None
    edited_at: str | None
    content_sha256: str
    deleted: bool
    account: str | None = None  # the configured account whose run captured the latest version
    visibility: str | None = None


# The latest state of items, as KnownItem takes it: the caller adds its WHERE conditions.
_KNOWN_ITEMS_SQL = """
    SELECT v.item_key, v.native_id, v.kind, v.thread_key, v.conversation_key, v.parent_key,
           v.created_at, v.edited_at, v.content_sha256,
           coalesce((SELECT e.event FROM events e WHERE e.item_key = v.item_key
                     AND e.event IN ('deleted','restored') ORDER BY e.id DESC LIMIT 1), '') = 'deleted',
           v.account, v.visibility
    FROM item_versions v
    WHERE v.id = (SELECT max(l.id) FROM item_versions l WHERE l.item_key = v.item_key)
"""


def _known_item(row: sqlite3.Row) -> KnownItem:
    return KnownItem(*row[:9], deleted=bool(row[9]), account=row[10], visibility=row[11])


@dataclass(frozen=True)
class AccountNames:
    """The configured names under which the archive files one platform account's captures, as one run of one of
    them sees them (see `Store.account_names`). A renamed account's items keep the name they were captured under:
    these say which of them the run re-checks."""

    account: str
    recheck: tuple[str, ...]  # the names whose captures this account's run re-checks: its own first
    same: frozenset[str]  # every name recorded as this platform account and as no other (its own included)
    running: tuple[str, ...] = ()  # other names of the same platform account that the same run captures too

    @classmethod
    def alone(cls, account: str) -> AccountNames:
        """An account whose platform identity the run has not observed (yet): its own captures only."""
        return cls(account, (account,), frozenset((account,)))


# The other names the archive recorded as this platform account (same platform, api_base and platform account id)
# and never as another: a name that was ever another platform account (a handle reused, a name given to a new
# account) is left to its own runs, so that no account re-checks another's captures. The accounts table holds a
# row per name and identity, a few hundred at most: read once per account and run.
_SAME_ACCOUNT_SQL = """
    SELECT a.name FROM accounts a
    WHERE a.platform = ? AND a.api_base = ? AND a.platform_account_id = ? AND a.name <> ?
      AND NOT EXISTS (SELECT 1 FROM accounts b WHERE b.name = a.name
                      AND (b.platform <> a.platform OR b.api_base <> a.api_base
                           OR b.platform_account_id <> a.platform_account_id))
    ORDER BY a.id
"""


@dataclass(frozen=True)
class TableColumns:
    """A table's columns as `_as_stored` needs them: the Python type each stores, and which have defaults."""

    kinds: dict[str, type]  # column -> int or str; a column of another declared type makes it NoneType
    defaults: frozenset[str]
    rowid_alias: str | None  # the INTEGER PRIMARY KEY column, whose value is the rowid when not given

    @classmethod
    def of(cls, conn: sqlite3.Connection, table: str) -> TableColumns:
        kinds: dict[str, type] = {}
        defaults, alias = set(), None
        rows = conn.execute(f"PRAGMA table_info({table})").fetchall()
        for _, name, declared, _, default, pk in rows:
            kinds[name] = {"INTEGER": int, "TEXT": str}.get(declared.upper(), type(None))
            if default is not None:
                defaults.add(name)
            if pk == 1 and declared.upper() == "INTEGER" and sum(1 for r in rows if r[5]) == 1:
                alias = name
        if any(kind is type(None) for kind in kinds.values()):
            defaults |= set(kinds)  # a column of another type: never guess, always ask SQLite
        return cls(kinds, frozenset(defaults), alias)


@dataclass
class AppendOutcome:
    new_item: bool = False
    new_version: bool = False
    deleted: bool = False
    restored: bool = False
    new_media: bool = False


def schema_has(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the archive's schema holds a table, view, index or trigger of this name (an archive held at an older
    schema lacks what later migrations made)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def readonly_uri(path: Path | str) -> str:
    """The SQLite URI that opens the database at `path` read-only. The path is percent-encoded: in a raw
    `file:{path}` a `#` or `?` ends the path (another file is opened, or made) and a `%` is decoded."""
    return f"{Path(path).resolve().as_uri()}?mode=ro"


def database_not_found(path: Path) -> ConfigError:
    return ConfigError(
        f"{path}: archive database not found; run `archiver run` first, or point [archive] dir at the archive"
    )


def require_database(path: Path) -> None:
    """ConfigError (exit 2) when the archive database is missing or another application's. Call it before taking
    the archive's lock in a command that needs an existing archive: a config pointing at no archive then creates
    nothing, not even a folder."""
    if not Path(path).exists():
        raise database_not_found(path)
    check_database_file(path)


def refuse_foreign_database(conn: sqlite3.Connection, path: Path) -> None:
    """ConfigError when `conn` holds another application's tables (schema version 0 with tables in it), which the
    migrations would otherwise turn into an archive. A new, empty file is fine: that is a new archive."""
    if conn.execute("PRAGMA user_version").fetchone()[0] != 0:
        return
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite%' ORDER BY name")]
    if names:
        conn.close()  # the caller gets this error instead of a store
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise ConfigError(
            f"{path}: not an archive database (it holds other tables: {shown}); point [archive] database at the "
            "archive's file, or at a new one"
        )


def sqlite_companions(path: Path) -> tuple[Path, Path]:
    """The -wal and -shm files SQLite keeps beside a database in WAL mode."""
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def refuse_unwritable(path: Path) -> None:
    """ConfigError naming the file when the database, or its -wal or -shm, cannot be written by this user. SQLite
    would open a read-only database for reading without a word and fail at the first write; and it gives a new
    -wal or -shm the database's mode, so a run while the database was read-only leaves them read-only after the
    database's mode is put back: every later run then failed, saying nothing of them (review s F1)."""
    for file in (path, *sqlite_companions(path)):
        if file.exists() and not os.access(file, os.W_OK):
            state = file.stat()
            why = "" if file == path else " (SQLite made it with the database's mode while the database was read-only)"
            raise ConfigError(
                f"{file}: cannot be written by this user (mode {state.st_mode & 0o777:04o}, owner uid {state.st_uid})"
                f"{why}; give it back to the user that runs archiver, mode 0600"
            )


def refuse_no_archive_yet(conn: sqlite3.Connection, path: Path) -> None:
    """ConfigError when the database holds no table at all: a first run stopped before the schema was made (it is
    made in one transaction), which the next run makes; there is nothing to read or check yet."""
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
        conn.close()
        raise ConfigError(
            f"{path}: no archive yet (the first run stopped before making it: nothing was archived); run `archiver run`"
        )


def refuse_newer_schema(conn: sqlite3.Connection, path: Path, known: int | None = None) -> None:
    """ConfigError when the archive's schema is newer than the migrations this software has (`known`)."""
    known = len(load_migrations()) if known is None else known
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > known:
        raise ConfigError(
            f"{path}: archive schema version {current} is newer than this software knows ({known}); upgrade archiver"
        )


def check_database_file(path: Path) -> None:
    """Read-only: ConfigError when a file at `path` is not an archive database (another application's tables),
    before a run takes the lock or sets the folder's mode. A missing or empty file is a new archive."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    conn = sqlite3.connect(reading_uri(path), uri=True)
    refuse_foreign_database(conn, path)
    conn.close()


def reading_uri(path: Path) -> str:
    """readonly_uri, read as the file is when nobody can be writing it: the folder or the database cannot be
    written by this user (an auditor's account, a read-only or WORM copy, a database made read-only) and no -wal
    holds anything. SQLite would otherwise make the -wal and -shm it reads through, with the database's mode: a
    read-only -shm, left behind, that stops every later run once the database's mode is put back (review s F1)."""
    wal, _ = sqlite_companions(path)
    uri = readonly_uri(path)
    unwritable = not os.access(path.parent, os.W_OK) or not os.access(path, os.W_OK)
    if unwritable and not (wal.exists() and wal.stat().st_size):
        uri += "&immutable=1"
    return uri


class Store:
    """An open archive database. Use `Store.open(path)`; `readonly=True` for views and checks."""

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool):
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self.path = path
        self.readonly = readonly
        self.ledger_on = self._has_ledger()
        # Migration 0008 applied: versions reach the full-text index at commit, not by a trigger.
        self.index_at_commit = self.schema_version >= FTS_AT_COMMIT_MIGRATION
        # The ledger head as this connection left it inside its current write transaction: saves reading it
        # back for every row. Only valid between begin() and commit()/rollback(), when nobody else can write.
        self._ledger_head: tuple[int, str] | None = None
        self._table_columns: dict[str, TableColumns] = {}
        self._insert_statements: dict[tuple[str, tuple[str, ...]], str] = {}  # (table, columns) -> its INSERT
        # The first item_versions row of this transaction not yet in the full-text index (see migration 0008).
        self._unindexed_from: int | None = None

    # -- opening -------------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, path: Path, *, readonly: bool = False, create: bool = True, durable: bool = True, any_schema: bool = False
    ) -> Store:
        """`durable=False` (a rebuild's new file, moved into place only once complete) skips the fsyncs.
        `any_schema=True` reads an archive a newer archiver upgraded (doctor, to say so), which is refused else."""
        path = Path(path)
        if (readonly or not create) and not path.exists():
            raise database_not_found(path)
        if readonly:
            conn = sqlite3.connect(reading_uri(path), uri=True)
            conn.row_factory = sqlite3.Row
            refuse_foreign_database(conn, path)
            refuse_no_archive_yet(conn, path)
            # Older software reading a newer archive (a rolled-back upgrade) would take tables and views it does
            # not know for tampering: refused, as a writer refuses it. An older archive is read as it is.
            try:
                if not any_schema:
                    refuse_newer_schema(conn, path)
            except ConfigError:
                conn.close()
                raise
            return cls(conn, path, True)
        path.parent.mkdir(parents=True, exist_ok=True)
        refuse_unwritable(path)
        # explicit transactions only; a run's platform threads share the connection under the run's lock
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        refuse_foreign_database(conn, path)  # before the pragmas below: WAL mode alone rewrites the file's header
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        # A committed row survives power loss; a file that is thrown away when interrupted need not.
        conn.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=OFF")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        # The indexes of a large archive are read on every append: keep their hot pages in memory (64 MB).
        conn.execute("PRAGMA cache_size=-65536")
        store = cls(conn, path, False)
        try:
            store.ensure_schema()
        except BaseException:
            conn.close()  # the last connection's close also takes away the -wal and -shm files it made
            raise
        return store

    def close(self) -> None:
        self.conn.close()

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def ensure_schema(self) -> list[int]:
        """Apply the migrations this database has not had yet; returns the versions applied."""
        migrations = load_migrations()
        current = self.schema_version
        refuse_newer_schema(self.conn, self.path, len(migrations))  # nothing is touched: it waits for its software
        # A new archive's schema is made whole or not at all: a first run stopped half way through its migrations
        # left tables that no read-only command could take for an archive (review s F4).
        with self.transaction() if current == 0 else nullcontext():
            applied = self._apply(migrations, current)
        return applied

    def _apply(self, migrations: list[Migration], current: int) -> list[int]:
        applied = []
        for migration in migrations[current:]:
            with self.transaction():
                if self.schema_version >= migration.version:
                    # another process applied it between our first read and this write lock (the CLI's archive
                    # lock keeps its commands apart; a library caller has none)
                    self.ledger_on = self._has_ledger()
                    self.index_at_commit = self.schema_version >= FTS_AT_COMMIT_MIGRATION
                    continue
                for statement in split_sql(migration.sql):
                    self.conn.execute(statement)
                self.ledger_on = self._has_ledger()
                if migration.version == LEDGER_MIGRATION:
                    ledger.backfill(self.conn)
                if migration.version == FLAG_STATES_MIGRATION:
                    from .flag_states import record_flag_states  # it reads the schema with schema_has, from here

                    record_flag_states(self, "migration")
                self._insert(
                    "schema_migrations",
                    {
                        "version": migration.version,
                        "title": migration.title,
                        "applied_at": iso(utcnow()),
                        "software_version": __version__,
                    },
                )
                self.conn.execute(f"PRAGMA user_version = {migration.version}")
                self.index_at_commit = migration.version >= FTS_AT_COMMIT_MIGRATION
            applied.append(migration.version)
        return applied

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        if self.conn.in_transaction:  # joined to the caller's transaction (e.g. a WARC rotated mid-account)
            yield
            return
        self.begin()
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def begin(self) -> None:
        """Start a write transaction (the write lock is taken now, not at the first write)."""
        self._ledger_head = self._unindexed_from = None
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """Index the transaction's new versions for full-text search, then commit them together."""
        self.index_new_versions()
        self._ledger_head = None
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self._ledger_head = self._unindexed_from = None
        self.conn.execute("ROLLBACK")

    def index_new_versions(self) -> None:
        """Add the versions appended since the last call to the full-text index, in one statement."""
        if self._unindexed_from is None:
            return
        self.conn.execute(
            "INSERT INTO item_versions_fts (rowid, text, author_handle, author_name) "
            "SELECT id, text, author_handle, author_name FROM item_versions WHERE id >= ? ORDER BY id",
            (self._unindexed_from,),
        )
        self._unindexed_from = None

    def _insert_sql(self, table: str, columns: tuple[str, ...]) -> str:
        sql = self._insert_statements.get((table, columns))
        if sql is None:
            names, marks = ", ".join(columns), ", ".join("?" for _ in columns)
            sql = self._insert_statements[table, columns] = f"INSERT INTO {table} ({names}) VALUES ({marks})"
        return sql

    def _insert(self, table: str, row: dict[str, Any]) -> int:
        insert = self._insert_sql(table, tuple(row))
        try:
            if not self.ledger_on:
                cur = self.conn.execute(insert, tuple(row.values()))
                return int(cur.lastrowid or 0)
            stored = self._as_stored(table, row)
            if stored is not None:
                cur = self.conn.execute(insert, tuple(row.values()))
                rowid = int(cur.lastrowid or 0)
                key = self._columns(table).rowid_alias
                if key is not None and stored[key] is None:
                    stored[key] = rowid
            else:
                # RETURNING gives the row as stored (defaults, affinity) for the ledger without reading it back.
                cur = self.conn.execute(f"{insert} RETURNING rowid AS _rowid, *", tuple(row.values()))
                names = [d[0] for d in cur.description]
                values = cur.fetchone()
                cur.fetchall()  # the statement completes only once its rows are read
                rowid = int(values[0])
                stored = dict(zip(names[1:], values[1:], strict=True))
            at = self._ledger_head if self.conn.in_transaction else None
            head = ledger.append_entry(self.conn, table, rowid, stored, at)
            self._ledger_head = head if self.conn.in_transaction else None
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise  # no refusal but a full disk: it goes up as SQLite said it (cli.py: free some space)
            raise StoreError(f"{self.path}: cannot append to {table}: {exc}") from exc
        if table == "item_versions" and self.index_at_commit:
            if self._unindexed_from is None:
                self._unindexed_from = rowid
            if not self.conn.in_transaction:
                self.index_new_versions()
        return rowid

    def _columns(self, table: str) -> TableColumns:
        found = self._table_columns.get(table)
        if found is None:
            found = self._table_columns[table] = TableColumns.of(self.conn, table)
        return found

    def _as_stored(self, table: str, row: dict[str, Any]) -> dict[str, Any] | None:
        """The row exactly as SQLite will store it, when that is certain without asking SQLite: every value
        already has its column's type (int for INTEGER, str for TEXT, or None) and every column left out is
        NULL by default. Otherwise None, and the INSERT's RETURNING tells. Saves a third of an append."""
        info = self._columns(table)
        stored: dict[str, Any] = {}
        for name, kind in info.kinds.items():
            if name in row:
                value = row[name]
                if value is not None and type(value) is not kind:  # bool is an int, stored as 0/1: ask SQLite
                    return None
                stored[name] = value
            elif name in info.defaults:
                return None
            else:
                stored[name] = None
        if not row.keys() <= info.kinds.keys():
            return None  # a column the table lacks: let SQLite say so
        return stored

    def _has_ledger(self) -> bool:
        return schema_has(self.conn, "ledger")

    # -- runs ----------------------------------------------------------------------------------------------
    def append_run(self, run_id: str, host: str, config_sha256: str, accounts: list[str]) -> None:
        with self.transaction():
            self._insert(
                "runs",
                {
                    "id": run_id,
                    "started_at": iso(utcnow()),
                    "host": host,
                    "software_version": __version__,
                    "config_sha256": config_sha256,
                    "accounts_selected": json.dumps(accounts),
                },
            )
            # none committed yet: a run killed before its first commit is replayed as having applied nothing
            self.append_run_progress(run_id, dict.fromkeys(accounts, 0))

    def append_account_run(self, row: dict[str, Any]) -> None:
        with self.transaction():
            self._insert("account_runs", {**row, "finished_at": iso(utcnow())})

    def append_run_progress(self, run_id: str, observations: dict[str, int]) -> None:
        """How many observations of each account the run has applied, in the transaction that commits them (an
        archive held at a schema before migration 0017, as tests make one, keeps none)."""
        if not self._columns("run_progress").kinds:
            return
        with self.transaction():
            for account, count in observations.items():
                self._insert("run_progress", {"run_id": run_id, "account": account, "observations": count})

    def append_run_result(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        with self.transaction():
            self._insert(
                "run_results",
                {
                    "run_id": run_id,
                    "finished_at": iso(utcnow()),
                    "status": status,
                    "summary": json.dumps(summary),
                },
            )

    def append_warc_file(self, run_id: str, name: str, sha256: str, size: int, records: int) -> None:
        with self.transaction():
            self._insert(
                "warc_files",
                {
                    "name": name,
                    "run_id": run_id,
                    "sha256": sha256,
                    "size": size,
                    "records": records,
                    "closed_at": iso(utcnow()),
                },
            )

    def append_checkpoint(self, checkpoint: Checkpoint, run_id: str | None) -> None:
        self._insert(
            "checkpoints",
            {
                "created_at": iso(utcnow()),
                "run_id": run_id,
                "ledger_seq": checkpoint.ledger_seq,
                "ledger_hash": checkpoint.ledger_hash,
                "statement": checkpoint.statement,
                "public_key": checkpoint.public_key,
                "signature": checkpoint.signature,
                "file_name": checkpoint.file_name,
            },
        )

    def append_export(self, row: dict[str, Any]) -> int:
        """Record an evidence bundle written from this archive (see archiver/bundle)."""
        with self.transaction():
            return self._insert("exports", row)

    def known_warc_files(self) -> dict[str, sqlite3.Row]:
        return {row["name"]: row for row in self.conn.execute("SELECT * FROM warc_files")}

    # -- accounts and cursors ------------------------------------------------------------------------------
    def append_account_identity(
        self, account: str, platform: str, api_base: str, ident: AccountIdentity, run_id: str
    ) -> bool:
        """Record the platform identity of a configured account the first time it is seen; True if new."""
        exists = self.conn.execute(
            "SELECT 1 FROM accounts WHERE name=? AND platform=? AND api_base=? AND platform_account_id=?",
            (account, platform, api_base, ident.platform_account_id),
        ).fetchone()
        if exists:
            return False
        self._insert(
            "accounts",
            {
                "name": account,
                "platform": platform,
                "api_base": api_base,
                "platform_account_id": ident.platform_account_id,
                "handle": ident.handle,
                "display_name": ident.display_name,
                "first_seen_run": run_id,
                "recorded_at": iso(utcnow()),
            },
        )
        return True

    def account_names(
        self, account: str, platform: str, api_base: str, platform_account_id: str, run_id: str | None
    ) -> AccountNames:
        """The names under which the archive files the captures of `account`, which run `run_id` observed to be
        platform account `platform_account_id` at `api_base`: an account renamed in the config keeps re-checking
        what its earlier names captured.

        Only the recorded platform identity links two names, never their spelling. Each capture is re-checked once
        a run: a name the run captures too (both old and new name enabled) re-checks its own captures, and the
        earlier names that the run does not capture go to the first of them in the run's order. Everything read
        here (the accounts table, the run's selection) is replayed alike by `archiver rebuild`."""
        others = [
            row[0] for row in self.conn.execute(_SAME_ACCOUNT_SQL, (platform, api_base, platform_account_id, account))
        ]
        found = self.conn.execute("SELECT accounts_selected FROM runs WHERE id = ?", (run_id,)).fetchone()
        selected: list[str] = json.loads(found[0]) if found else []
        running = tuple(name for name in selected if name in others)
        place = selected.index(account) if account in selected else len(selected)
        first = all(selected.index(name) > place for name in running)
        earlier = tuple(name for name in others if name not in selected) if first else ()
        return AccountNames(account, (account, *earlier), frozenset((account, *others)), running)

    def cursor(self, account: str, name: str) -> str | None:
        row = self.conn.execute(
            "SELECT value FROM cursors WHERE account=? AND name=? ORDER BY id DESC LIMIT 1", (account, name)
        ).fetchone()
        return row[0] if row else None

    def append_cursor(self, account: str, name: str, value: str, run_id: str) -> None:
        if self.cursor(account, name) == value:
            return
        self._insert(
            "cursors",
            {
                "account": account,
                "name": name,
                "value": value,
                "run_id": run_id,
                "recorded_at": iso(utcnow()),
            },
        )

    # -- items ---------------------------------------------------------------------------------------------
    def last_version_id(self) -> int:
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM item_versions").fetchone()[0]

    def latest_version(self, item_key: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM item_versions WHERE item_key=? ORDER BY id DESC LIMIT 1", (item_key,)
        ).fetchone()

    def is_deleted(self, item_key: str) -> bool:
        row = self.conn.execute(
            "SELECT event FROM events WHERE item_key=? AND event IN ('deleted','restored') ORDER BY id DESC LIMIT 1",
            (item_key,),
        ).fetchone()
        return bool(row and row[0] == "deleted")

    def _only_media_moved(self, item: Item, version_id: int, content_sha256: str) -> str | None:
        """Why a changed item is no edit when all that changed is where its attachments are served from (same
        ids, in the same order): Mastodon re-caching a remote file, a Bluesky account moving to another PDS."""
        if not item.media:
            return None
        (stored,) = self.conn.execute("SELECT media FROM item_versions WHERE id = ?", (version_id,)).fetchone()
        before = json.loads(stored or "[]")
        if len(before) != len(item.media) or not all(
            b.get("id") and b.get("id") == m.get("id") for b, m in zip(before, item.media, strict=True)
        ):
            return None
        moved_back = dataclasses.replace(
            item, media=tuple({**m, "url": b.get("url")} for b, m in zip(before, item.media, strict=True))
        )
        if moved_back.content_sha256 != content_sha256:
            return None
        return "only the attachments' URLs changed, not their ids: the platform serves the same files from elsewhere"

    def append_item(self, account: str, item: Item, run_id: str) -> AppendOutcome:
        """Append a version when the item is new or its content changed, with its events."""
        outcome = AppendOutcome()
        latest = self.conn.execute(
            "SELECT id, content_sha256 FROM item_versions WHERE item_key=? ORDER BY id DESC LIMIT 1", (item.item_key,)
        ).fetchone()
        now = item.source.date or iso(utcnow())
        digest = item.content_sha256
        version_id = None
        if latest is None or latest["content_sha256"] != digest:
            version_id = self._insert(
                "item_versions",
                {
                    "item_key": item.item_key,
                    "platform": item.platform,
                    "account": account,
                    "kind": item.kind,
                    "native_id": item.native_id,
                    "parent_key": item.parent_key,
                    "thread_key": item.thread_key,
                    "conversation_key": item.conversation_key,
                    "author_id": item.author_id,
                    "author_handle": item.author_handle,
                    "author_name": item.author_name,
                    "created_at": item.created_at,
                    "edited_at": item.edited_at,
                    "text": item.text,
                    "url": item.url,
                    "visibility": item.visibility,
                    "media": _MEDIA_JSON.encode(list(item.media)),
                    "raw_json": item.raw_json,
                    "content_sha256": digest,
                    "run_id": run_id,
                    "captured_at": now,
                    "warc_file": item.source.warc_file,
                    "warc_offset": item.source.offset,
                    "warc_length": item.source.length,
                    "warc_record_id": item.source.record_id,
                },
            )
            event = "created" if latest is None else "edited"
            evidence = {"warc_record_id": item.source.record_id, "warc_file": item.source.warc_file}
            if latest is not None:
                evidence["previous_version_id"] = latest["id"]
                not_an_edit = item.not_an_edit or self._only_media_moved(item, latest["id"], latest["content_sha256"])
                if not_an_edit:
                    evidence["not_an_edit"] = not_an_edit
            self._append_event(item.item_key, event, version_id, run_id, evidence, now)
            outcome.new_item = latest is None
            outcome.new_version = True
        if latest is not None and self.is_deleted(item.item_key):
            # Seen again after a proven deletion: the platform shows it (e.g. a moderation reversal).
            current = version_id or latest["id"]
            self._append_event(
                item.item_key,
                "restored",
                current,
                run_id,
                {"observed_in": item.source.record_id, "warc_file": item.source.warc_file},
                now,
            )
            outcome.restored = True
        return outcome

    def append_deletion(self, deletion: Deletion, run_id: str) -> AppendOutcome:
        outcome = AppendOutcome()
        latest = self.latest_version(deletion.item_key)
        if latest is None or self.is_deleted(deletion.item_key):
            return outcome
        observed = deletion.source.date if deletion.source and deletion.source.date else iso(utcnow())
        self._append_event(deletion.item_key, "deleted", latest["id"], run_id, deletion.evidence, observed)
        outcome.deleted = True
        return outcome

    def _append_event(
        self, item_key: str, event: str, version_id: int | None, run_id: str, evidence: dict, observed_at: str
    ) -> None:
        self._insert(
            "events",
            {
                "item_key": item_key,
                "event": event,
                "version_id": version_id,
                "run_id": run_id,
                "observed_at": observed_at,
                "evidence": _EVIDENCE_JSON.encode(evidence),
            },
        )

    def has_media(self, url: str) -> bool:
        return self.conn.execute("SELECT 1 FROM media_files WHERE url=?", (url,)).fetchone() is not None

    def append_media(self, media: MediaFile, run_id: str) -> AppendOutcome:
        outcome = AppendOutcome()
        if self.has_media(media.url):
            return outcome
        self._insert(
            "media_files",
            {
                "url": media.url,
                "sha256": media.sha256,
                "size": media.size,
                "content_type": media.content_type,
                "run_id": run_id,
                "captured_at": media.source.date or iso(utcnow()),
                "warc_file": media.source.warc_file,
                "warc_offset": media.source.offset,
                "warc_length": media.source.length,
                "warc_record_id": media.source.record_id,
            },
        )
        outcome.new_media = True
        return outcome

    def known_items(
        self,
        account: str | tuple[str, ...],
        *,
        created_since: str | None = None,
        kinds: tuple[str, ...] = (),
        thread_key: str | None = None,
        conversation_key: str | None = None,
        key_prefix: str | None = None,
    ) -> list[KnownItem]:
        """Latest state of the account's items, filtered by creation time, kinds, thread, conversation or the start
        of their key (a Bluesky account's own records: not the replies and messages of others). `account` may be
        several names (a renamed account's, see `account_names`): the items whose latest version any captured."""
        names = (account,) if isinstance(account, str) else account
        if len(names) == 1:
            sql = _KNOWN_ITEMS_SQL + " AND v.account = ?"
        else:  # still one search of item_versions_account_kind (or of the thread's index) per name
            sql = _KNOWN_ITEMS_SQL + f" AND v.account IN ({','.join('?' for _ in names)})"
        params: list[Any] = list(names)
        if created_since is not None:
            sql += " AND v.created_at >= ?"
            params.append(created_since)
        if thread_key is not None:
            sql += " AND v.thread_key = ?"
            params.append(thread_key)
        if conversation_key is not None:
            sql += " AND v.conversation_key = ?"
            params.append(conversation_key)
        if key_prefix is not None:
            sql += " AND substr(v.item_key, 1, ?) = ?"
            params.extend([len(key_prefix), key_prefix])
        if kinds:
            sql += f" AND v.kind IN ({','.join('?' for _ in kinds)})"
            params.extend(kinds)
        return [_known_item(row) for row in self.conn.execute(sql, params)]

    def thread_items(self, thread_key: str) -> list[KnownItem]:
        """Latest state of every item of a thread, whatever account captured it, by item key.

        Two archived accounts of one platform (one Mastodon instance, or Bluesky) share a thread's items: each
        is filed under the account whose run captured its latest version, and a re-check of the thread by
        either account must weigh them all."""
        sql = _KNOWN_ITEMS_SQL + " AND v.thread_key = ? ORDER BY v.item_key"
        return [_known_item(row) for row in self.conn.execute(sql, (thread_key,))]

    def first_archived_since(self, account: str, item_key: str, since: str, kinds: tuple[str, ...] = ()) -> bool:
        """Whether the account's first version of the item (of one of `kinds`) was captured at or after `since`
        (ISO UTC); False for an item it has not archived."""
        sql = "SELECT min(captured_at) FROM item_versions WHERE item_key = ? AND account = ?"
        params: list[Any] = [item_key, account]
        if kinds:
            sql += f" AND kind IN ({','.join('?' for _ in kinds)})"
            params.extend(kinds)
        first = self.conn.execute(sql, params).fetchone()[0]
        return first is not None and first >= since

    def counts(self) -> dict[str, int]:
        """Rows in each archive table this archive's schema has: one that a later migration adds is left out until
        a writer upgrades the archive (a read-only command never does)."""
        names = {row[0] for row in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {
            table: self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ARCHIVE_TABLES
            if table in names
        }


def split_sql(sql: str) -> list[str]:
    """Statements of a migration block; trigger bodies (BEGIN ... END;) stay whole."""
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--") and not buffer.strip():
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise StoreError(f"schemas/archive.sql: incomplete statement: {buffer.strip()[:80]}")
    return statements
