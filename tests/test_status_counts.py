"""`archiver status` counts items by status without the `items` view (which works out every item's status: 4.6 s
at a million versions), and its counts are the view's: an edited item deleted since is deleted, a deleted item
restored since is live again (or edited)."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.status import DELETED_COUNTS_SQL, ITEM_COUNTS_SQL, count_items_by_status
from archiver.store import Store
from tests.test_mastodon_run import NOW, Clinic, fates


def by_view(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM items GROUP BY status").fetchall())


def status_counts(clinic: Clinic) -> dict[str, int]:
    result = CliRunner().invoke(app, ["status", "--config", str(clinic.config()), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["items_by_status"]


@pytest.fixture
def clinic(tmp_path, monkeypatch):
    c = Clinic(tmp_path, monkeypatch, posts=5)
    yield c
    c.stop()


def test_counts_equal_the_items_view_through_edits_deletions_and_a_restoration(clinic):
    """Equal on the old code too (it grouped the view): a guard that the counts keep the view's order of
    precedence."""
    edited_then_deleted, restored, restored_and_edited, edited = clinic.posts[:4]
    state = clinic.state
    replies = [
        state.add_status(
            clinic.ann["id"], f"Question {n}", in_reply_to_id=post["id"], created_at=NOW - timedelta(days=1)
        )
        for n, post in enumerate((restored, restored_and_edited))
    ]
    gone = state.add_status(clinic.bob["id"], "Reply deleted", in_reply_to_id=edited["id"], created_at=NOW)
    assert clinic.run()[0] == 0
    state.edit_status(edited_then_deleted["id"], "Clinic post, edited", at=NOW - timedelta(hours=3))
    state.edit_status(edited["id"], "Clinic post, edited once", at=NOW - timedelta(hours=3))
    assert clinic.run()[0] == 0
    state.delete_status(edited_then_deleted["id"])
    state.delete_status(gone["id"])
    for post in (restored, restored_and_edited):
        state.delete_status(post["id"], by_moderator=True)
    assert clinic.run()[0] == 0
    for post in (restored, restored_and_edited):
        state.restore_status(post["id"])
    state.edit_status(restored_and_edited["id"], "Clinic post, back and edited", at=NOW - timedelta(minutes=5))
    code, output = clinic.run()
    assert code == 0, output

    conn = clinic.db()
    assert fates(conn, clinic.key(edited_then_deleted)) == ["created", "edited", "deleted"]
    assert fates(conn, clinic.key(restored)) == ["created", "deleted", "restored"]
    assert fates(conn, clinic.key(restored_and_edited))[:3] == ["created", "deleted", "edited"]
    statuses = dict(conn.execute("SELECT item_key, status FROM items").fetchall())
    assert [statuses[clinic.key(p)] for p in (edited_then_deleted, restored, restored_and_edited, edited)] == [
        "deleted",
        "live",
        "edited",
        "edited",
    ]
    assert statuses[clinic.key(gone)] == "deleted" and statuses[clinic.key(replies[0])] == "live"
    view = by_view(conn)
    assert view == {"deleted": 2, "edited": 2, "live": len(statuses) - 4}
    assert count_items_by_status(conn) == view
    conn.close()
    assert status_counts(clinic) == view


def test_a_deletion_event_of_an_item_without_versions_is_no_item(tmp_path):
    """The view lists items by their versions: an event of a key no version has (written by hand, or by another
    tool) counts for nothing. Equal on the old code too: a guard."""
    store = Store.open(tmp_path / "archive.db")
    assert count_items_by_status(store.conn) == by_view(store.conn) == {}
    store.append_run("run1", "host", "0" * 64, ["clinic"])
    with store.transaction():
        store._append_event("mastodon:h:1", "deleted", None, "run1", {"by": "hand"}, "2026-11-24T00:00:00Z")
    assert count_items_by_status(store.conn) == by_view(store.conn) == {}
    store.close()


def test_the_counts_read_no_version_row_and_each_deletion_s_own_events(tmp_path):
    """Plans on a fresh archive (no statistics, as the archiver leaves one): the versions are counted from the
    covering index item_versions_item, never a table row per version; the deletions from the deletion events and
    each item's own events, never every deleted or restored event for each (events_event)."""
    store = Store.open(tmp_path / "archive.db")
    for sql in (ITEM_COUNTS_SQL, DELETED_COUNTS_SQL):
        steps = [row[3] for row in store.conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
        scans = [s for s in steps if s.startswith("SCAN")]
        assert set(scans) <= {"SCAN item_versions USING COVERING INDEX item_versions_item", "SCAN (subquery-1)"}, steps
        assert [s for s in steps if "events_event" in s] in ([], ["SEARCH x USING INDEX events_event (event=?)"]), steps
    store.close()
