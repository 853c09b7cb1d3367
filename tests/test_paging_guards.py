"""Paging-loop guards hold memory that does not grow with the entries of a listing, and still stop loops.

A guard keeps one digest per page (its cursor or link) and the last entries only, so a listing of a million
entries costs it about a megabyte, not the million ids. Sizes are measured by walking what the guard holds
(`deep_size`), never by timing. The loops the guards caught before are still caught: a repeated cursor (however
far back), a page of entries listed a few pages back under a fresh cursor, too many empty pages in a row
(tests/test_bluesky_run.py, test_x_run.py, test_faults.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from archiver.config import AccountConfig
from archiver.connectors import bluesky, facebook, x
from archiver.connectors.base import FetchWindow, PageTrail
from archiver.demo.bluesky_server import BlueskyState, SampleBlueskyServer
from archiver.demo.loopback import Fault
from archiver.demo.x_server import SampleXServer, XState
from archiver.errors import PlatformError
from archiver.http import CapturingSession
from archiver.pipeline import StoreAccountState
from archiver.store import Store
from archiver.warc import WarcWriter, iso
from tests.test_bluesky_run import BskyClinic
from tests.test_x_run import XClinic

NOW = datetime.now(UTC).replace(microsecond=0)
X_TOKEN = "x-guard-test-token-5sQm"
# What a guard may hold whatever the listing's length: the last 2,000 entries (base.LISTED_REMEMBERED) at up to
# 150 bytes each (a 16-byte digest and its set slots), and up to 200 bytes a page for its cursor's digest (80 to
# 155 as the set's table grows). Keeping every entry id, as the guards did, costs 110 (an X id) to 175 bytes (an
# at:// URI) an entry: 11 to 17 KB a page of 100.
REMEMBERED_BYTES = 2_000 * 150
PAGE_BYTES = 200


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes held by an object and everything it references (containers, attributes), each counted once."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(deep_size(item, seen) for item in obj)
    elif hasattr(obj, "__dict__"):
        size += deep_size(vars(obj), seen)
    return size


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[WarcWriter]:
    warc = WarcWriter(tmp_path / "warcs", "guard-test")
    yield warc
    warc.close()


def test_a_bluesky_listing_guard_keeps_a_digest_a_page_not_every_record(capture):
    state = BlueskyState()
    account = state.add_account("riverside.example.org", "Riverside Clinic")
    for i in range(20_000):  # 200 pages of 100
        state.add_post(account.did, f"post {i}", created_at=NOW - timedelta(minutes=i))
    server = SampleBlueskyServer(state, chat=False)
    server.start()
    try:
        session = CapturingSession(capture, account="clinic-bsky", token=None)
        paging = bluesky.Paging("the repository's posts (com.atproto.repo.listRecords)")
        url = f"{server.base_url}/xrpc/com.atproto.repo.listRecords"
        cursors: list[str] = []
        first = 0
        while True:
            params = {"repo": account.did, "collection": bluesky.POST, "limit": bluesky.PAGE_LIMIT}
            if cursors:
                params["cursor"] = cursors[-1]
            exchange = session.get(url, params, auth=False)
            cursor = paging.next_cursor(exchange.json(), "records", exchange)
            first = first or deep_size(paging)
            if not cursor:
                break
            cursors.append(cursor)
        assert len(cursors) == 200
        assert deep_size(paging) - first < REMEMBERED_BYTES + len(cursors) * PAGE_BYTES
        # Every cursor is still known: one the listing followed 200 pages back is a loop, with new entries too.
        page = {
            "records": [{"uri": f"at://{account.did}/{bluesky.POST}/new{i}"} for i in range(3)],
            "cursor": cursors[0],
        }
        with pytest.raises(PlatformError, match="paging loop: the service answered a cursor this listing already"):
            paging.next_cursor(page, "records", exchange)
    finally:
        server.stop()


def test_an_x_listing_guard_keeps_a_digest_a_page_not_every_post(tmp_path, capture):
    state = XState()
    user = state.add_user("riversideclinic", "Riverside Clinic")
    for i in range(10_000):  # 100 pages of 100
        state.add_tweet(user["id"], f"post {i}", created_at=NOW - timedelta(minutes=i))
    server = SampleXServer(state, X_TOKEN, rate_limit=1_000_000)
    server.start()
    store = Store.open(tmp_path / "archive.db")
    try:
        account = AccountConfig("clinic-x", "x", server.base_url, "@riversideclinic", token_env="X_TOKEN")
        policy = x.XConnector().rate_limit_policy()
        session = CapturingSession(capture, account=account.name, token=X_TOKEN, rate_limit=policy)
        window = FetchWindow(iso(NOW - timedelta(days=14)), iso(NOW))
        run = x._XRun(session, account, StoreAccountState(store, account.name), window)
        pages = run.paginate(run.api(f"users/{user['id']}/tweets"), {"max_results": x.PAGE_SIZE}, "pagination_token")
        sizes = []
        for _ in pages:  # what the listing holds between two pages, besides the run itself
            assert pages.gi_frame is not None
            sizes.append(deep_size({k: v for k, v in pages.gi_frame.f_locals.items() if k != "self"}))
        assert len(sizes) == 100
        assert sizes[-1] - sizes[0] < REMEMBERED_BYTES + len(sizes) * PAGE_BYTES
    finally:
        store.close()
        server.stop()


def test_a_page_trail_keeps_a_digest_a_page_not_the_link():
    # A Graph next link: the fields asked for and a cursor, some 400 bytes a page of 25 posts.
    base = f"https://graph.example/v21.0/42_7/feed?{urlencode({'fields': facebook.POST_FIELDS, 'limit': 25})}"
    links = [f"{base}&after=QVFIU{i:0>200}" for i in range(5_000)]
    trail = PageTrail("clinic-fb", "Page posts (feed)")
    first = 0
    for link in links:
        trail.visit(link, {"access_token": "EAAB-secret"})
        first = first or deep_size(trail)
    assert deep_size(trail) - first < len(links) * PAGE_BYTES
    # Every page is still known: the first link again, 5,000 pages on, is a loop; the token not in the message.
    with pytest.raises(PlatformError, match="paging loop") as caught:
        trail.visit(links[0], {"access_token": "EAAB-secret"})
    assert "EAAB-secret" not in str(caught.value)


def test_a_bluesky_page_of_records_listed_two_pages_back_under_a_new_cursor_is_a_loop(tmp_path, monkeypatch):
    clinic = BskyClinic(tmp_path, monkeypatch, posts=6, chat=False)
    try:
        clinic.server.page_max = 2
        newest_first = sorted(clinic.posts, key=lambda r: r["uri"], reverse=True)
        # The first page again, as the answer to the second cursor, with a cursor the listing never had.
        again = json.dumps({"records": newest_first[:2], "cursor": "2222222222222"}).encode()
        clinic.server.faults.append(Fault(r"listRecords\?.*cursor=", status=200, body=again, after=1))
        code, output = clinic.run()
        assert code == 1 and "paging loop: the service answered a page of entries already listed" in output
        assert sum(1 for _, p, _ in clinic.server.requests_log if p.endswith("listRecords")) == 3
        conn = clinic.db()
        assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 0
        conn.close()
        clinic.server.faults.clear()
        assert clinic.run()[0] == 0
    finally:
        clinic.server.stop()


def test_an_x_page_of_posts_listed_two_pages_back_under_a_new_token_is_a_loop(tmp_path, monkeypatch):
    clinic = XClinic(tmp_path, monkeypatch)
    try:
        newest, middle, _ = sorted(clinic.posts, key=lambda t: int(t["id"]), reverse=True)

        def page(tweet: dict, token: str) -> bytes:
            return json.dumps({"data": [tweet], "meta": {"result_count": 1, "next_token": token}}).encode()

        listing = r"^/2/users/\d+/tweets\?"
        clinic.server.faults += [
            Fault(listing + r"(?!.*pagination_token=)", status=200, body=page(newest, "t1"), times=1),
            Fault(listing + r".*pagination_token=t1", status=200, body=page(middle, "t2"), times=1),
            # The first page's post again, under a token the listing never had.
            Fault(listing + r".*pagination_token=t2", status=200, body=page(newest, "t3"), times=1),
        ]
        code, output = clinic.run()
        assert code == 1 and "paging loop: X answered a page of entries already listed" in output
        assert sum(1 for p in clinic.paths() if p.endswith("/tweets") and "/users/" in p) == 3
        clinic.server.faults.clear()
        assert clinic.run()[0] == 0
        conn = clinic.db()
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 3
        assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 0
        conn.close()
    finally:
        clinic.server.stop()
