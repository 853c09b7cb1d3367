"""The queries compliance staff and the nightly run use every day search an index per item, whatever the archive's
size: their plans, read on a fresh archive (no statistics, as the archiver leaves one). A review measured at a
million versions: the review queue at 12 s (Datasette's limit is 3 s) when flag_status's consent.edited test read
every edit event for each flag, the deleted-items query over a minute. Plans, not timings: they do not depend
on the machine."""

from __future__ import annotations

from pathlib import Path

import yaml

from archiver.consent.check import REAL_EDIT
from archiver.store import Store

METADATA = Path(__file__).parents[1] / "datasette-metadata.yml"


def plan(store: Store, sql: str, *args: object) -> list[str]:
    return [row[3] for row in store.conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]


def canned(name: str) -> str:
    queries = yaml.safe_load(METADATA.read_text())["databases"]["archive"]["queries"]
    return queries[name]["sql"]


def test_the_review_queue_finds_an_item_s_later_edits_by_its_own_events(tmp_path):
    store = Store.open(tmp_path / "archive.db")
    steps = plan(store, "SELECT * FROM flag_queue LIMIT 51")
    assert not [s for s in steps if "events_event" in s], steps  # every edit event, for each flag
    assert [s for s in steps if "events_item_event" in s], steps
    store.close()


def test_the_consent_check_finds_an_item_s_latest_edit_by_its_own_events(tmp_path):
    store = Store.open(tmp_path / "archive.db")
    sql = f"SELECT e.version_id FROM events e WHERE e.item_key = ? AND {REAL_EDIT} ORDER BY e.version_id DESC LIMIT 1"
    assert plan(store, sql, "x")[0].startswith("SEARCH e USING INDEX events_item_event (item_key=? AND event=?)")
    store.close()


def test_the_deleted_and_edited_items_queries_read_no_item_twice_over(tmp_path):
    store = Store.open(tmp_path / "archive.db")
    deleted = plan(store, canned("deleted_items"))
    assert deleted[0] == "SEARCH e USING INDEX events_event (event=?)", deleted  # the deletions, newest first
    assert not [s for s in deleted if s.startswith("SCAN")], deleted  # never the whole items view
    edited = plan(store, canned("edited_items"))
    scans = [s for s in edited if s.startswith("SCAN")]
    assert scans == ["SCAN item_versions USING COVERING INDEX item_versions_item", "SCAN x"], edited
    store.close()


def test_a_flag_s_scan_is_found_by_index_not_by_walking_back_through_every_nightly_scan(tmp_path):
    """Migration 0021: a row a night in scan_runs, read for every PHI flag (0.85 s at 1,098 scans and 58k flags)."""
    store = Store.open(tmp_path / "archive.db")
    steps = plan(store, "SELECT flag_id FROM flag_status WHERE current = 1")
    assert not [s for s in steps if s.startswith("SCAN") and s not in ("SCAN f", "SCAN CONSTANT ROW")], steps
    assert [s for s in steps if "scan_runs_by_mode_start" in s], steps
    store.close()
