"""The archive's schema as its migrations make it, compared with what the database file holds.

The ledger proves rows; it cannot see the schema around them. With another tool one can redefine a view
(the `items` an investigator reads), rewrite a trigger's body so it refuses nothing, rebuild a table without
its primary key (so a second row may share a key the ledger entered once), or take versions out of the
full-text index (a search for a patient then finds nothing). The migrations that made the archive are known
(their versions are ledgered rows), so the schema they make is known too: every table, index, trigger and
view must be exactly that, and the search index must hold exactly the versions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from .problems import Problem, listed
from .store import load_migrations, split_sql

FTS_TABLE = "item_versions_fts"


def expected_schema(version: int) -> dict[tuple[str, str], str]:
    """(type, name) -> SQL of every object that migrations 1..version make, as SQLite stores it."""
    conn = sqlite3.connect(":memory:")
    try:
        for migration in load_migrations()[:version]:
            for statement in split_sql(migration.sql):
                conn.execute(statement)
        return _objects(conn)
    finally:
        conn.close()


def _objects(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
    # sqlite_* objects are SQLite's own (autoindexes, sqlite_sequence, ANALYZE's statistics).
    rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
    return {(kind, name): sql or "" for kind, name, sql in rows}


def check_schema(conn: sqlite3.Connection) -> Iterator[Problem]:
    """One problem per object missing, added or redefined, and per version missing from or added to the
    search index."""
    version = _migrated_to(conn)
    if version is None:
        yield Problem("table schema_migrations", "missing or empty: the archive's schema cannot be checked")
        return
    stored = conn.execute("PRAGMA user_version").fetchone()[0]
    if stored != version:
        yield Problem("schema", f"user_version expected {version} (the last migration applied), found {stored}")
    expected, found = expected_schema(version), _objects(conn)
    for kind, name in sorted(expected.keys() - found.keys()):
        yield Problem(f"{kind} {name}", f"missing: migration {version}'s schema has it (dropped)")
    for kind, name in sorted(found.keys() - expected.keys()):
        yield Problem(f"{kind} {name}", "not made by the archive's migrations (added behind the archiver's back)")
    for key in sorted(expected.keys() & found.keys()):
        if expected[key] != found[key]:
            yield Problem(f"{key[0]} {key[1]}", f"definition changed: {_difference(expected[key], found[key])}")
    if ("table", FTS_TABLE) in found and ("table", f"{FTS_TABLE}_docsize") in found:
        yield from _check_search_index(conn)


def _migrated_to(conn: sqlite3.Connection) -> int | None:
    try:
        found = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    except sqlite3.DatabaseError:
        return None
    return found[0] if found and isinstance(found[0], int) else None


def _difference(expected: str, found: str) -> str:
    """Where two definitions part, with a little of each from there."""
    at = next(
        (i for i, (a, b) in enumerate(zip(expected, found, strict=False)) if a != b), min(len(expected), len(found))
    )
    start = max(0, at - 20)

    def part(sql: str) -> str:
        return " ".join(sql[start : at + 40].split()) or "(end)"

    return f"from character {at}, expected {part(expected)!r}, found {part(found)!r}"


def _check_search_index(conn: sqlite3.Connection) -> Iterator[Problem]:
    """Every version is in the full-text index and nothing else is: FTS5 keeps one `_docsize` row per
    document it indexed, by the version's id (a document taken out of the index loses its row)."""
    missing = conn.execute(
        f"SELECT id FROM item_versions WHERE id NOT IN (SELECT id FROM {FTS_TABLE}_docsize) ORDER BY id"
    )
    yield from listed(
        missing,
        lambda r: Problem(f"item_versions id={r[0]}", f"not in the search index {FTS_TABLE} (search misses it)"),
        "versions not in the search index",
        FTS_TABLE,
    )
    yield from listed(
        _indexed_otherwise(conn),
        lambda r: Problem(
            f"item_versions id={r[0]}",
            f"indexed with other text than the row holds ({r[1]} words in the index, {r[2]} in the row): "
            "search misses what it says",
        ),
        "versions indexed with other text",
        FTS_TABLE,
    )
    extra = conn.execute(
        f"SELECT id FROM {FTS_TABLE}_docsize WHERE id NOT IN (SELECT id FROM item_versions) ORDER BY id"
    )
    yield from listed(
        extra,
        lambda r: Problem(f"{FTS_TABLE} rowid={r[0]}", "indexed, but no item version has this id"),
        "indexed ids no version has",
        FTS_TABLE,
    )


def _indexed_otherwise(conn: sqlite3.Connection, batch: int = 5_000) -> Iterator[tuple[int, int, int]]:
    """Versions whose index entry counts other words than their text, author handle and name: FTS5's 'delete'
    command can take a version's words out and index others under its id, and the `_docsize` row stays. The
    rows are tokenized again, a batch at a time, into a contentless index in the connection's temporary
    database (the archive is opened read-only), and each document's word counts compared with the live
    index's. (id, words indexed, words in the row) for each that differs."""
    conn.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.fts_recount USING fts5("
        "text, author_handle, author_name, content='', tokenize='porter unicode61')"
    )
    try:
        last = 0
        while True:
            # in SQL alone: a row's text need not be valid UTF-8 (the schema check names that; it is no reason
            # to stop here)
            upto = conn.execute(
                "SELECT max(id) FROM (SELECT id FROM item_versions WHERE id > ? ORDER BY id LIMIT ?)", (last, batch)
            ).fetchone()[0]
            if upto is None:
                return
            conn.execute("INSERT INTO temp.fts_recount(fts_recount) VALUES ('delete-all')")
            conn.execute(
                "INSERT INTO temp.fts_recount (rowid, text, author_handle, author_name) "
                "SELECT id, text, author_handle, author_name FROM item_versions WHERE id > ? AND id <= ?",
                (last, upto),
            )
            yield from (
                (doc, _words(indexed), _words(recounted))
                for doc, indexed, recounted in conn.execute(
                    f"SELECT r.id, d.sz, r.sz FROM temp.fts_recount_docsize r JOIN {FTS_TABLE}_docsize d ON "
                    "d.id = r.id WHERE d.sz != r.sz ORDER BY r.id"
                )
            )
            last = upto
    finally:
        conn.execute("DROP TABLE IF EXISTS temp.fts_recount")


def _words(sizes: bytes) -> int:
    """The word count of a `_docsize` row: one SQLite varint per column (7 bits a byte, the first the highest,
    the top bit set on every byte but a number's last)."""
    total = value = 0
    for byte in sizes:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            total, value = total + value, 0
    return total
