"""The ledger: every appended row is chained; changes made behind the triggers' back are found."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from archiver.ledger import GENESIS, LEDGER_KEYS, canonical_row_bytes, verify_ledger
from archiver.store import Store

from .test_store import fill_every_table


@pytest.fixture
def archive(tmp_path):
    store = Store.open(tmp_path / "a.db")
    store.append_run("run1", "host", "0" * 64, ["a"])
    fill_every_table(store)
    store.close()
    return tmp_path / "a.db"


def problems(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    found = [str(p) for p in verify_ledger(conn)]
    conn.close()
    return found


def behind_the_back(path, *statements):
    """Another tool: drops the triggers, changes rows, and leaves."""
    conn = sqlite3.connect(path)
    triggers = [
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger' AND name LIKE '%append_only%'")
    ]
    for name in triggers:
        conn.execute(f"DROP TRIGGER {name}")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_every_row_of_every_table_is_chained(archive):
    assert problems(archive) == []
    conn = sqlite3.connect(archive)
    entries = conn.execute(
        "SELECT seq, table_name, row_key, row_sha256, prev_hash, hash FROM ledger ORDER BY seq"
    ).fetchall()
    covered = {t for _, t, *_ in entries}
    assert covered == set(LEDGER_KEYS)
    for table in LEDGER_KEYS:
        rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        assert rows == sum(1 for e in entries if e[1] == table), table
    # Recomputed by hand from the documented definition (schemas/ledger.md).
    prev = GENESIS
    for _seq, table, row_key, row_sha, prev_hash, entry_hash in entries:
        cur = conn.execute(f"SELECT * FROM {table} WHERE CAST({LEDGER_KEYS[table]} AS TEXT) = ?", (row_key,))
        row = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
        canonical = json.dumps(
            {"row": row, "table": table}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        assert canonical == canonical_row_bytes(table, row)
        assert prev_hash == prev
        assert row_sha == hashlib.sha256(canonical).hexdigest()
        assert entry_hash == hashlib.sha256(bytes.fromhex(prev) + canonical).hexdigest()
        prev = entry_hash
    conn.close()


def test_an_update_behind_the_triggers_is_found(archive):
    behind_the_back(archive, "UPDATE item_versions SET text = 'innocent' WHERE id = 1")
    (problem,) = problems(archive)
    assert problem.startswith("item_versions id=1: row changed since ledger seq")


def test_a_delete_behind_the_triggers_is_found(archive):
    behind_the_back(archive, "DELETE FROM events WHERE id = 2")
    (problem,) = problems(archive)
    assert problem.startswith("events id=2: row entered at ledger seq") and "missing" in problem


def test_a_row_inserted_behind_the_ledger_is_found(archive):
    behind_the_back(
        archive,
        "INSERT INTO cursors (account, name, value, run_id, recorded_at) VALUES ('a', 'x', '1', 'run1', 't')",
    )
    (problem,) = problems(archive)
    assert problem == "cursors id=2: row is not in the ledger (inserted behind the archiver's back)"


def test_an_edited_ledger_entry_is_found(archive):
    behind_the_back(archive, "UPDATE ledger SET hash = '" + "ab" * 32 + "' WHERE seq = 3")
    found = problems(archive)
    assert found[0].startswith("ledger seq 3: hash expected")
    assert found[1].startswith("ledger seq 4: prev_hash expected")


def test_entries_removed_from_the_middle_are_found(archive):
    behind_the_back(archive, "DELETE FROM ledger WHERE seq = 5")
    found = problems(archive)
    assert any(p.startswith("ledger seq 6: sequence expected 5, found 6") for p in found)
    assert any("not in the ledger" in p for p in found)


def test_ledger_md_names_every_ledgered_table_and_each_key_that_is_not_id(archive):
    """Review v: a third party recomputes the chain from schemas/ledger.md alone. It must name every table the
    ledger covers, the key each is fetched by, and what the archive holds besides."""
    text = " ".join((Path(__file__).parent.parent / "schemas" / "ledger.md").read_text().split())
    listed = text.split("The ledgered tables are ", 1)[1].split(". A row is entered", 1)[0]
    named = {name.strip() for name in listed.split(": ", 1)[1].split(",")}
    assert named == set(LEDGER_KEYS)
    for table, key in LEDGER_KEYS.items():
        assert key == "id" or f"`{key}` of `{table}`" in text
    conn = sqlite3.connect(archive)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert {t for t in tables - set(LEDGER_KEYS) if not t.startswith("item_versions_fts")} == {"ledger"}
    assert "`item_versions_fts`" in text
