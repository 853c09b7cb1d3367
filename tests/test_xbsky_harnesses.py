"""The X and Bluesky fault harnesses on their own: a clean run captures the harness's items; a paging loop,
a truncated listing and a withdrawn credential fail the account without a deletion; a throttled listing is
waited out; the next clean run completes. (The shared fault suite runs every fault through them.)"""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from archiver.cli import app

from .xbsky_harnesses import BlueskyHarness, Fault, XHarness

TOKEN = "harness-token-5150-Qw"


@pytest.fixture(params=[XHarness, BlueskyHarness], ids=lambda h: h.platform)
def harness(request, tmp_path, monkeypatch, http_waits):
    monkeypatch.setenv("HARNESS_TOKEN", TOKEN)
    h = request.param()
    h.start(TOKEN)
    h.waits = http_waits
    h.config = tmp_path / "archiver.toml"
    h.config.write_text('[archive]\ndir = "arch"\nretries = 1\n\n' + h.account("clinic", "HARNESS_TOKEN"))
    h.db = tmp_path / "arch" / "archive.db"
    yield h
    h.stop()


def run(h) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["run", "--config", str(h.config), "--quiet"])
    return result.exit_code, result.output


def query(h, sql: str) -> list[tuple]:
    conn = sqlite3.connect(h.db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_faults_through_the_harness(harness):
    h = harness
    url, page = h.listing_page()
    assert json.loads(page) and url.startswith("http://127.0.0.1:")
    # A loop shows while the listing holds new items: met by the first run, as in the shared suite.
    h.add_fault(Fault(h.listing, status=200, body=page))
    code, output = run(h)
    assert code == 1 and "paging loop" in output, output
    h.clear_faults()
    assert run(h)[0] == 0
    assert query(h, "SELECT count(*) FROM items") == [(h.items,)]
    h.add_fault(Fault(h.listing, status=200, body=page[: len(page) // 2], times=100))
    code, output = run(h)
    assert code == 1 and "not valid JSON" in output, output
    h.clear_faults()
    h.set_token("a-token-the-platform-issued-later")
    code, output = run(h)
    assert code == 1 and "refused" in output
    h.set_token(TOKEN)
    h.add_fault(Fault(h.listing, status=429, body=b'{"error":"Too many requests"}', headers=h.rate_limit_headers(2)))
    code, output = run(h)
    assert code == 0, output
    assert h.waits and 0 < max(h.waits) <= 3
    h.clear_faults()
    assert run(h)[0] == 0
    assert query(h, "SELECT count(*) FROM items") == [(h.items,)]
    assert query(h, "SELECT count(*) FROM events WHERE event = 'deleted'") == [(0,)]
    assert query(h, "SELECT item_key FROM item_versions GROUP BY item_key HAVING count(*) > 1") == []
    assert CliRunner().invoke(app, ["verify", "--config", str(h.config)]).exit_code == 0
