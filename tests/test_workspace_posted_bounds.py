"""The workspace search's posted dates are whole UTC days, inclusive, whatever form a platform stored
created_at in: "Z" at seconds, milliseconds or microseconds, "+00:00", or the poster's own offset."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import requests

from archiver.items import Item
from archiver.store import Store
from archiver.warc import CaptureRef
from archiver.workspace import search

from .workspace_server import serving

DAY = "2026-03-01"
# (platform, created_at as its connector stores it), at both edges of DAY. graph_time (Facebook, Instagram) and
# YouTube give seconds, Mastodon and X milliseconds, LinkedIn (warc.iso) microseconds; a Bluesky post's
# createdAt is its client's, any RFC 3339 form.
INSIDE = [
    ("facebook", "2026-03-01T00:00:00Z"),
    ("mastodon", "2026-03-01T00:00:00.000Z"),
    ("linkedin", "2026-03-01T00:00:00.000000Z"),
    ("bluesky", "2026-03-01T00:00:00+00:00"),
    ("bluesky", "2026-02-28T19:00:00-05:00"),  # 2026-03-01T00:00:00Z
    ("youtube", "2026-03-01T23:59:59Z"),
    ("x", "2026-03-01T23:59:59.999Z"),
    ("linkedin", "2026-03-01T23:59:59.999999Z"),
    ("bluesky", "2026-03-02T00:59:59.999+01:00"),  # 2026-03-01T23:59:59.999Z
]
BEFORE = [
    ("facebook", "2026-02-28T23:59:59Z"),
    ("mastodon", "2026-02-28T23:59:59.999Z"),
    ("bluesky", "2026-03-01T00:59:59.999+01:00"),  # 2026-02-28T23:59:59.999Z
]
AFTER = [
    ("facebook", "2026-03-02T00:00:00Z"),
    ("linkedin", "2026-03-02T00:00:00.000000Z"),
    ("bluesky", "2026-03-01T19:00:00-05:00"),  # 2026-03-02T00:00:00Z
]


def key(platform: str, created_at: str) -> str:
    return f"{platform}:clinic:{created_at}"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    directory: Path = tmp_path_factory.mktemp("posted-bounds")
    store = Store.open(directory / "archive" / "archive.db")
    store.append_run("run1", "host", "0" * 64, ["clinic"])
    with store.transaction():
        for n, (platform, created_at) in enumerate(INSIDE + BEFORE + AFTER):
            item = Item(
                item_key=key(platform, created_at),
                platform=platform,
                kind="post",
                native_id=str(n),
                source=CaptureRef("f.warc.gz", n, 1, f"<urn:uuid:{n}>"),
                raw={"id": n},
                text=f"clinic hours {n}",
                created_at=created_at,
            )
            store.append_item("clinic", item, "run1")
    store.close()
    (directory / "archiver.toml").write_text(
        '[archive]\ndir = "archive"\n[[accounts]]\nname = "clinic"\nplatform = "mastodon"\n'
        'api_base = "http://127.0.0.1:9"\ntoken_env = "X"\n'
    )
    with serving(directory) as base:  # loopback, no accounts: no sign-in
        yield base


def found(server: str, **params: str) -> set[str]:
    response = requests.get(f"{server}/-/search.json", params=params, timeout=30)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["total"] == len(result["rows"]), result["total"]  # the facet pass counts the same items
    return {r["item_key"] for r in result["rows"]}


def keys(*groups: list[tuple[str, str]]) -> set[str]:
    return {key(platform, created_at) for group in groups for platform, created_at in group}


@pytest.mark.parametrize("q", ["", "clinic"])  # the listing, and a word search with the dates as filters
def test_posted_bounds_are_whole_utc_days_in_every_stored_form(server, q):
    assert found(server, q=q, posted_from=DAY, posted_to=DAY) == keys(INSIDE)
    assert found(server, q=q, posted_from=DAY) == keys(INSIDE, AFTER)
    assert found(server, q=q, posted_to=DAY) == keys(BEFORE, INSIDE)
    assert found(server, q=q, posted_from="2026-03-02") == keys(AFTER)
    assert found(server, q=q, posted_to="2026-02-28") == keys(BEFORE)


def test_the_calendars_first_and_last_days_are_bounds_like_any_other(server):
    """The exact test looks a day either side of a bound: at 0001-01-01 and 9999-12-31 there is none."""
    everything = keys(BEFORE, INSIDE, AFTER)
    assert found(server, posted_from="0001-01-01") == everything
    assert found(server, posted_to="9999-12-31") == everything
    assert found(server, posted_from="0001-01-01", posted_to="9999-12-30") == everything
    assert found(server, posted_from="9999-12-31") == set()
    assert found(server, posted_to="0001-01-01") == set()


def test_captured_to_the_calendars_last_day_is_no_bound(server):
    """date('9999-12-31', '+1 day') is NULL in SQLite: as a bound it found nothing."""
    everything = keys(BEFORE, INSIDE, AFTER)  # all captured today
    assert found(server, captured_to="9999-12-31") == everything
    assert found(server, q="clinic", captured_to="9999-12-31") == everything
    assert found(server, captured_from="0001-01-01", captured_to="9999-12-31") == everything


def test_a_posted_date_that_is_no_day_is_refused(server):
    response = requests.get(f"{server}/-/search.json", params={"posted_to": "2026-02-30"}, timeout=30)
    assert response.status_code == 400 and "YYYY-MM-DD" in response.json()["error"]


@pytest.mark.parametrize(
    "bounds", [{"posted_from": DAY}, {"posted_to": DAY}, {"posted_from": DAY, "posted_to": DAY, "account": "clinic"}]
)
def test_a_listing_by_posted_date_reads_the_range_in_created_at_order(tmp_path, bounds):
    """Without words, the page and the counts read only the versions in the date range, newest first, without
    sorting them: grouping them by item made SQLite read every version of the archive in item_key order for one
    bound, and sort every version in the range before it could cut the page for two (or read all of the account's
    versions, by item_versions_account_kind)."""
    for plan in _plans(tmp_path, bounds):
        read = next(row for row in plan if row[3].startswith(("SCAN v", "SEARCH v ")))
        assert read[3].startswith("SEARCH v USING INDEX item_versions_created (created_at"), plan
        beside = {row[3] for row in plan if row[1] == read[1]}
        assert not beside & {"USE TEMP B-TREE FOR GROUP BY", "USE TEMP B-TREE FOR ORDER BY"}, plan


@pytest.mark.parametrize(
    "bounds", [{"captured_from": DAY}, {"captured_to": DAY}, {"captured_from": DAY, "kind": "post"}]
)
def test_a_listing_by_captured_date_reads_only_the_captured_range(tmp_path, bounds):
    """Captured bounds read item_versions_captured (migration 0009); without it every version was read."""
    for plan in _plans(tmp_path, bounds):
        reads = [row[3] for row in plan if row[3].startswith(("SCAN v", "SEARCH v "))]
        assert reads[0].startswith("SEARCH v USING INDEX item_versions_captured (captured_at"), plan


def _plans(directory: Path, bounds: dict[str, str]) -> list[list[tuple[int, int, int, str]]]:
    """EXPLAIN QUERY PLAN of the page and of the counts, on an empty archive as the archiver makes it (so without
    the ANALYZE statistics that would guide SQLite's choices)."""
    Store.open(directory / "archive.db").close()
    conn = sqlite3.connect(directory / "archive.db")
    search.register_functions(conn)
    query = search.SearchQuery.from_params(bounds)
    plans = [
        conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()  # rows of (id, parent, _, step)
        for sql, params in (search.page_sql(query, has_flags=True), search.facets_sql(query, has_flags=True))
    ]
    conn.close()
    return plans
