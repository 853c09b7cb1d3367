"""The store: migrations, append-only triggers on every table, versions appended only on change."""

from __future__ import annotations

import sqlite3
from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import archiver.store
from archiver.checkpoints import sign_checkpoint
from archiver.consent.check import append_consent_check, build_signal_detector
from archiver.consent.register import append_consent_import
from archiver.errors import StoreError
from archiver.items import AccountIdentity, Deletion, Item, MediaFile
from archiver.replay_review import Difference, append_replay_reviews
from archiver.scan.alerts import ChannelAnswer
from archiver.scan.archive import append_review, append_scan
from archiver.scan.delivery import Owed, append_delivery
from archiver.scan.engine import Detector
from archiver.scan.rules import load_rules
from archiver.store import ARCHIVE_TABLES, Store, load_migrations
from archiver.warc import CaptureRef

REF = CaptureRef("f.warc.gz", 10, 20, "<urn:uuid:1>")


def make_item(text: str = "hello", **kw) -> Item:
    base = dict(
        item_key="mastodon:h:1",
        platform="mastodon",
        kind="post",
        native_id="1",
        source=REF,
        raw={"id": "1", "content": text},
        text=text,
        created_at="2026-11-01T00:00:00.000Z",
    )
    base.update(kw)
    return Item(**base)


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "a.db")
    s.append_run("run1", "host", "0" * 64, ["a"])
    yield s
    s.close()


def test_migrations_are_numbered_and_applied_once(tmp_path):
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    s = Store.open(tmp_path / "a.db")
    assert s.schema_version == len(migrations)
    assert s.ensure_schema() == []
    s.close()
    again = Store.open(tmp_path / "a.db")
    assert again.conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(migrations)
    assert again.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_a_migration_another_process_applied_meanwhile_is_not_applied_again(tmp_path, monkeypatch):
    """Two library callers open one unmigrated archive at once (the CLI's archive lock keeps its commands apart):
    the second read the schema version before the first migrated, and takes the write lock after (review r F6).
    It applies nothing twice and fails nothing."""
    path = tmp_path / "a.db"
    older = load_migrations()[:-1]
    with monkeypatch.context() as patch:  # an archive of the schema before the last migration
        patch.setattr(archiver.store, "load_migrations", lambda: older)
        Store.open(path).close()
    original = archiver.store.refuse_newer_schema
    other: list[Store] = []
    calls = []

    def the_other_process_first(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - refuse_newer_schema's own
        calls.append(args)
        if len(calls) == 1:  # the first caller has read the version and has not taken the write lock yet
            other.append(Store.open(path))
        return original(*args, **kwargs)

    monkeypatch.setattr(archiver.store, "refuse_newer_schema", the_other_process_first)
    late = Store.open(path)
    assert other[0].conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(load_migrations())
    assert late.schema_version == len(load_migrations())
    assert late.ensure_schema() == []
    late.close()
    other[0].close()


class RaisingDetector(Detector):
    def detect(self, text, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise ValueError("a detector bug")


def as_raising(detector: Detector) -> Detector:
    """The detector raising on every text, under another rules label (the next scan retries what it left out)."""
    detector.__class__ = RaisingDetector
    detector.version = "raising"
    return detector


def fill_every_table(store: Store) -> None:
    with store.transaction():
        store.append_item("a", make_item(), "run1")
        store.append_deletion(Deletion("mastodon:h:1", {"method": "lookup"}), "run1")
        store.append_cursor("a", "newest", "5", "run1")
        store.append_media(MediaFile("http://m/1", "ab" * 32, 1, "image/png", REF), "run1")
        store.append_account_identity("a", "mastodon", "http://h", AccountIdentity("1", "clinic", "Clinic"), "run1")
    store.append_warc_file("run1", "f.warc.gz", "ab" * 32, 10, 3)
    store.append_account_run(
        {
            "run_id": "run1",
            "account": "a",
            "status": "ok",
            "requests": 1,
            "new_items": 1,
            "new_versions": 0,
            "deletions": 1,
            "restorations": 0,
            "media": 0,
            "error": None,
        }
    )
    store.append_run_result("run1", "ok", {})
    consents = store.path.parent / "consents.csv"
    consents.write_text(
        "consent_id,patient_ref,platform,item,granted_on,document_sha256\n"
        f"C-1,PT-1,mastodon,mastodon:h:1,2026-11-01,{'a' * 64}\n"
    )
    append_consent_import(store, consents, platforms=["mastodon"], accounts={})
    with store.transaction():
        store.append_item("a", make_item("My MRN is 00482913", item_key="mastodon:h:2", native_id="2"), "run1")
    outcome = append_scan(store, Detector(load_rules()), mode="new", run_id="run1")
    append_review(store, outcome.flags[0]["id"], "violation", "pat reviewer", "asked the author to delete it")
    hook = ChannelAnswer("webhook", "https://chat.example/...", "alert webhook answered 204")
    append_delivery(store, Owed("webhook", hook.destination, outcome.flags[:1]), hook, "run1")
    with store.transaction():
        store.append_item("a", make_item("an odd text", item_key="mastodon:h:3", native_id="3"), "run1")
    append_scan(store, as_raising(Detector(load_rules())), mode="new", run_id="run1")  # left out: scan_skips
    append_scan(store, Detector(load_rules()), mode="new", run_id="run1")  # other rules: scan_retries
    append_consent_check(store, build_signal_detector(None), date(2026, 11, 23), "run1")
    with store.transaction():
        checkpoint = sign_checkpoint(store.conn, Ed25519PrivateKey.generate(), store.path.parent / "warcs")
        store.append_checkpoint(checkpoint, "run1")
    store.append_export(
        {
            "case_id": "CASE-1",
            "exported_at": "2026-11-02T00:00:00.000000Z",
            "exported_by": "investigator",
            "host": "host",
            "software_version": "0",
            "selectors": "{}",
            "counts": "{}",
            "checkpoint_id": 1,
            "bundle_path": "/tmp/bundle",
            "manifest_sha256": "ab" * 32,
            "tagmanifest_sha256": "cd" * 32,
            "signature": "c2ln",
        }
    )
    difference = Difference("item_versions id=1", "differs from the replay in text", digest="ef" * 32)
    append_replay_reviews(store, [difference], "pat reviewer", "the parser revision's change")


@pytest.mark.parametrize("table", ARCHIVE_TABLES)
def test_update_and_delete_are_refused_on_every_table(store, table):
    fill_every_table(store)
    count = store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    assert count >= 1, f"{table} should hold a row for this test"
    column = store.conn.execute(f"SELECT * FROM {table} LIMIT 1").description[0][0]
    with pytest.raises(sqlite3.IntegrityError, match=f"{table} is append-only: UPDATE refused"):
        store.conn.execute(f"UPDATE {table} SET {column} = {column}")
    with pytest.raises(sqlite3.IntegrityError, match=f"{table} is append-only: DELETE refused"):
        store.conn.execute(f"DELETE FROM {table}")
    # A plain sqlite3 connection, as another tool would open it, is refused the same way.
    other = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        other.execute(f"DELETE FROM {table}")
    other.close()
    assert store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == count


def test_every_table_in_the_schema_is_protected(store):
    tables = {
        r[0]
        for r in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE '%fts%' AND name NOT LIKE 'sqlite_%'"
        )
    }
    assert tables == set(ARCHIVE_TABLES)


def test_version_appended_only_when_content_changes(store):
    with store.transaction():
        first = store.append_item("a", make_item(), "run1")
        same = store.append_item("a", make_item(raw={"id": "1", "content": "hello", "favourites_count": 9}), "run1")
        edited = store.append_item("a", make_item("hello, edited", edited_at="2026-11-02T00:00:00.000Z"), "run1")
    assert (first.new_item, first.new_version) == (True, True)
    assert (same.new_item, same.new_version) == (False, False)
    assert (edited.new_item, edited.new_version) == (False, True)
    rows = store.conn.execute("SELECT text, edited_at FROM item_versions ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [("hello", None), ("hello, edited", "2026-11-02T00:00:00.000Z")]
    events = [r[0] for r in store.conn.execute("SELECT event FROM events ORDER BY id")]
    assert events == ["created", "edited"]
    item = store.conn.execute("SELECT status, versions, text FROM items").fetchone()
    assert tuple(item) == ("edited", 2, "hello, edited")


def test_deletion_and_restoration_events(store):
    with store.transaction():
        store.append_item("a", make_item(), "run1")
        assert store.append_deletion(Deletion("mastodon:h:1", {"method": "lookup", "http_status": 404}), "run1").deleted
        assert not store.append_deletion(Deletion("mastodon:h:1", {"method": "lookup"}), "run1").deleted
        assert not store.append_deletion(Deletion("mastodon:h:unknown", {"method": "lookup"}), "run1").deleted
    assert store.conn.execute("SELECT status FROM items").fetchone()[0] == "deleted"
    with store.transaction():
        assert store.append_item("a", make_item(), "run1").restored
    assert store.conn.execute("SELECT status FROM items").fetchone()[0] == "live"
    events = [r[0] for r in store.conn.execute("SELECT event FROM events ORDER BY id")]
    assert events == ["created", "deleted", "restored"]


def test_full_text_search_over_versions(store):
    with store.transaction():
        store.append_item("a", make_item("Flu shots available on Monday", author_handle="clinic"), "run1")
    hits = store.conn.execute(
        "SELECT v.text FROM item_versions_fts f JOIN item_versions v ON v.id = f.rowid "
        "WHERE item_versions_fts MATCH 'shot'"
    ).fetchall()
    assert [h[0] for h in hits] == ["Flu shots available on Monday"]


def fts_rowids(store) -> list[int]:
    return [r[0] for r in store.conn.execute("SELECT id FROM item_versions_fts_docsize ORDER BY id")]


def test_search_index_follows_commits_and_rollbacks(store):
    """Versions reach the full-text index when their transaction commits, all of them, and only then."""
    with store.transaction():
        for n in range(3):
            store.append_item("a", make_item(f"pharmacy refill {n}", item_key=f"mastodon:h:{n}"), "run1")
        assert fts_rowids(store) == []  # indexed at commit, in one statement
    assert fts_rowids(store) == [1, 2, 3]
    with pytest.raises(RuntimeError), store.transaction():
        store.append_item("a", make_item("rolled back", item_key="mastodon:h:9"), "run1")
        raise RuntimeError("the run failed")
    with store.transaction():
        store.append_item("a", make_item("pharmacy closed", item_key="mastodon:h:4"), "run1")
    ids = [r[0] for r in store.conn.execute("SELECT id FROM item_versions ORDER BY id")]
    assert fts_rowids(store) == ids
    found = store.conn.execute("SELECT count(*) FROM item_versions_fts WHERE item_versions_fts MATCH 'pharmacy'")
    assert found.fetchone()[0] == 4
    store.append_item("a", make_item("outside a transaction", item_key="mastodon:h:5"), "run1")
    assert len(fts_rowids(store)) == 5


def test_rows_entered_without_returning_match_the_stored_rows(store):
    """The ledger's canonical row is built in Python when the types are certain; values SQLite would convert
    (a bool, a number in a TEXT column) go through RETURNING. Either way verify agrees with what is stored."""
    from archiver.ledger import verify_ledger

    with store.transaction():
        store.append_item("a", make_item(), "run1")
        store._insert("cursors", {"account": "a", "name": "n", "value": "1", "run_id": "run1", "recorded_at": "t"})
        store._insert("cursors", {"account": "a", "name": "n", "value": 7, "run_id": "run1", "recorded_at": "t"})
        counts = dict.fromkeys(("new_items", "new_versions", "deletions", "restorations", "media"), 0)
        row = {"run_id": "run1", "account": "a", "status": "ok", "requests": True, **counts, "finished_at": "t"}
        store._insert("account_runs", row)
    assert store._as_stored("cursors", {"account": "a", "name": "n", "value": 7}) is None
    assert store.conn.execute("SELECT value FROM cursors ORDER BY id DESC").fetchone()[0] == "7"
    assert store.conn.execute("SELECT requests FROM account_runs").fetchone()[0] == 1
    assert list(verify_ledger(store.conn)) == []


def test_the_wal_grown_behind_a_long_reader_is_cut_back(tmp_path, monkeypatch):
    """A verify's snapshot makes a run grow the WAL by all it writes; once both are done it shrinks again."""
    monkeypatch.setattr("archiver.store.WAL_SIZE_LIMIT", 256 * 1024)
    store = Store.open(tmp_path / "a.db")
    store.append_run("run1", "host", "0" * 64, ["a"])
    wal = tmp_path / "a.db-wal"
    reader = sqlite3.connect(f"file:{tmp_path / 'a.db'}?mode=ro", uri=True, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM item_versions").fetchone()  # holds its snapshot from here
    for batch in range(12):
        with store.transaction():
            for n in range(100):
                key = f"mastodon:h:{batch}-{n}"
                store.append_item("a", make_item("x" * 2000 + key, item_key=key, native_id=key), "run1")
    assert wal.stat().st_size > 4 * 1024 * 1024  # nothing could be checkpointed past the reader
    reader.execute("COMMIT")
    reader.close()
    for n in range(2):  # the first commit checkpoints everything; the next write restarts the WAL, cut back
        store.append_run(f"run{n + 2}", "host", "0" * 64, ["a"])
    assert wal.stat().st_size <= 256 * 1024
    assert store.conn.execute("SELECT count(*) FROM item_versions").fetchone()[0] == 1200
    store.close()


def test_readonly_store_refuses_writes(store, tmp_path):
    ro = Store.open(tmp_path / "a.db", readonly=True)
    with pytest.raises(StoreError, match="read-only"), ro.transaction():
        pass
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.conn.execute(
            "INSERT INTO cursors (account, name, value, run_id, recorded_at) VALUES ('a','b','c','run1','t')"
        )
    ro.close()
