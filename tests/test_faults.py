"""Fault injection against the loopback platform servers: every fault, every platform, the same promises.

For each fault: a first clean run fills the archive; a second run meets the fault (transient faults are
retried or waited out and the run succeeds; lasting ones fail that account, exit 1); the healthy account on
another server is archived either way; nothing is marked deleted; a third run without the fault completes
the work with exactly the items of a run that never met a fault, and no version is duplicated.

A platform takes part through a harness: its sample server, a small clinic whose threads sit inside the
re-check window (so the faulty run re-reads them), where its listing and thread requests go, and how it
signals a rate limit.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from urllib.request import Request, urlopen

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.connectors.facebook import POST_FIELDS as FB_POST_FIELDS
from archiver.connectors.graph import DEFAULT_GRAPH_VERSION
from archiver.connectors.instagram import MEDIA_FIELDS as IG_MEDIA_FIELDS
from archiver.demo.graph_server import GraphState, SampleGraphServer
from archiver.demo.loopback import Fault
from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer
from archiver.http import with_params

from .pages_harnesses import LinkedInHarness, YouTubeHarness
from .xbsky_harnesses import BlueskyHarness, XHarness

NOW = datetime.now(UTC).replace(microsecond=0)


class Harness(Protocol):
    platform: str
    items: int
    listing: str  # regex of the account's main listing requests
    thread: str  # regex of a request made while re-reading a thread inside the window

    def start(self, token: str) -> None: ...
    def stop(self) -> None: ...
    def account(self, name: str, token_env: str) -> str: ...
    def add_fault(self, fault: Fault) -> None: ...
    def clear_faults(self) -> None: ...
    def set_token(self, token: str) -> None: ...
    def rate_limit_headers(self, seconds: int) -> dict[str, str]: ...
    def listing_page(self) -> tuple[str, bytes]: ...


class MastodonHarness:
    platform = "mastodon"
    listing = r"/api/v1/accounts/\d+/statuses"
    thread = r"/context"
    items = 6  # what a complete capture of the clinic holds

    def start(self, token: str) -> None:
        state = MastodonState()
        clinic = state.add_account("clinic", "Riverside Clinic")
        ann = state.add_account("ann", "Ann Patient")
        for i in range(3):
            post = state.add_status(clinic["id"], f"Clinic post {i}", created_at=NOW - timedelta(days=2, minutes=i))
            state.add_status(ann["id"], f"Reply {i}", in_reply_to_id=post["id"], created_at=NOW - timedelta(days=1))
        self.server = SampleMastodonServer(state, token).start()

    def stop(self) -> None:
        self.server.stop()

    def account(self, name: str, token_env: str) -> str:
        return (
            f'[[accounts]]\nname = "{name}"\nplatform = "mastodon"\napi_base = "{self.server.base_url}"\n'
            f'account = "@clinic"\ntoken_env = "{token_env}"\n'
        )

    def add_fault(self, fault: Fault) -> None:
        self.server.faults.append(fault)

    def clear_faults(self) -> None:
        self.server.faults.clear()

    def set_token(self, token: str) -> None:
        self.server._token = token

    def rate_limit_headers(self, seconds: int) -> dict[str, str]:
        reset = (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}

    def listing_page(self) -> tuple[str, bytes]:
        """The first page of the listing as the server sends it, and its URL (for a page that links to itself)."""
        me = next(a for a in self.server.state.accounts.values() if a["username"] == "clinic")
        url = f"{self.server.base_url}/api/v1/accounts/{me['id']}/statuses?limit=40"
        request = Request(url, headers={"Authorization": f"Bearer {self.server._token}"})
        with urlopen(request, timeout=5) as response:
            return url, response.read()


class GraphHarness:
    """A Facebook Page or an Instagram account on the sample Graph API server (see tests/graph_clinic.py)."""

    platform = "graph"
    listing = ""
    thread = r"/comments\?"
    items = 6

    def start(self, token: str) -> None:
        self.state = GraphState()
        self.page = self.state.add_page("Riverside Clinic", "riversideclinic")
        self.ig = self.state.add_ig_user("riverside.clinic", "Riverside Clinic")
        self.fill()  # each platform's clinic (the subclasses)
        self.server = SampleGraphServer(self.state, token).start()

    def stop(self) -> None:
        self.server.stop()

    def add_fault(self, fault: Fault) -> None:
        self.server.faults.append(fault)

    def clear_faults(self) -> None:
        self.server.faults.clear()

    def set_token(self, token: str) -> None:
        self.server._token = token

    def rate_limit_headers(self, seconds: int) -> dict[str, str]:
        """Meta's usage header at 100%, with its estimate in whole minutes."""
        minutes = max(1, -(-seconds // 60))
        usage = {"call_count": 100, "total_cputime": 20, "total_time": 20, "estimated_time_to_regain_access": minutes}
        return {"X-Business-Use-Case-Usage": json.dumps({self.page["id"]: [{"type": "pages", **usage}]})}

    def listing_page(self) -> tuple[str, bytes]:
        """The first page as the server sends it, its paging.next pointing back at itself (for the loop case)."""
        url = self.first_page_url()
        request = Request(url, headers={"Authorization": f"Bearer {self.server._token}"})
        with urlopen(request, timeout=5) as response:
            page = json.loads(response.read())
        page.setdefault("paging", {})["next"] = url
        return url, json.dumps(page).encode()


class FacebookHarness(GraphHarness):
    platform = "facebook"
    listing = r"/feed\?"

    def fill(self) -> None:
        for i in range(3):
            post = self.state.add_post(self.page, f"Clinic post {i}", NOW - timedelta(days=2, minutes=i))
            self.state.add_comment(
                post, {"name": "Ann Patient", "id": "61000001"}, f"Reply {i}", NOW - timedelta(days=1)
            )

    def account(self, name: str, token_env: str) -> str:
        return (
            f'[[accounts]]\nname = "{name}"\nplatform = "facebook"\napi_base = "{self.server.base_url}"\n'
            f'token_env = "{token_env}"\noptions = {{ page_id = "{self.page["id"]}" }}\n'
        )

    def first_page_url(self) -> str:
        base = f"{self.server.base_url}/{DEFAULT_GRAPH_VERSION}/{self.page['id']}/feed"
        return with_params(base, {"fields": FB_POST_FIELDS, "limit": 25})


class InstagramHarness(GraphHarness):
    platform = "instagram"
    listing = r"/media\?"

    def fill(self) -> None:
        for i in range(3):
            media = self.state.add_ig_media(self.ig, f"Clinic photo {i}", NOW - timedelta(days=2, minutes=i), [b"png"])
            self.state.add_ig_comment(media, "ann", f"Reply {i}", NOW - timedelta(days=1))

    def account(self, name: str, token_env: str) -> str:
        return (
            f'[[accounts]]\nname = "{name}"\nplatform = "instagram"\napi_base = "{self.server.base_url}"\n'
            f'token_env = "{token_env}"\n'
            f'options = {{ ig_user_id = "{self.ig["id"]}", page_id = "{self.page["id"]}" }}\n'
        )

    def first_page_url(self) -> str:
        base = f"{self.server.base_url}/{DEFAULT_GRAPH_VERSION}/{self.ig['id']}/media"
        return with_params(base, {"fields": IG_MEDIA_FIELDS, "limit": 25})


HARNESSES: list[type] = [
    MastodonHarness,
    FacebookHarness,
    InstagramHarness,
    XHarness,
    BlueskyHarness,
    LinkedInHarness,
    YouTubeHarness,
]


@dataclass(frozen=True)
class Case:
    name: str
    lasting: bool  # True: the account fails this run (exit 1); False: retried or waited out (exit 0)
    first_run: bool = False  # met by the first run (a loop shows only while a listing holds new items)


CASES = [
    Case("timeout", False),
    Case("timeout-lasting", True),
    Case("connection-reset", False),
    Case("connection-reset-lasting", True),
    Case("http-500", False),
    Case("http-502", False),
    Case("http-503-lasting", True),
    Case("rate-limited", False),
    Case("malformed-json", True),
    Case("truncated-json", True),
    Case("paging-loop", True, first_run=True),
    Case("expired-token", True),
]


def inject(harness: Harness, case: Case) -> None:
    lasting = 100 if case.lasting else 1
    if case.name.startswith("timeout"):
        harness.add_fault(Fault(harness.thread, status=200, delay=1.5, times=lasting))
    elif case.name.startswith("connection-reset"):
        harness.add_fault(Fault(harness.thread, drop_connection=True, times=lasting))
    elif case.name.startswith("http-"):
        status = int(case.name.split("-")[1])
        harness.add_fault(Fault(harness.thread, status=status, times=lasting))
    elif case.name == "rate-limited":
        body = json.dumps({"error": "Too many requests"}).encode()
        harness.add_fault(Fault(harness.listing, status=429, body=body, headers=harness.rate_limit_headers(2)))
    elif case.name == "malformed-json":
        harness.add_fault(Fault(harness.listing, status=200, body=b"<html>Bad gateway</html>", times=lasting))
    elif case.name == "truncated-json":
        _, page = harness.listing_page()
        harness.add_fault(Fault(harness.listing, status=200, body=page[: len(page) // 2], times=lasting))
    elif case.name == "paging-loop":
        url, page = harness.listing_page()
        harness.add_fault(Fault(harness.listing, status=200, body=page, headers={"Link": f'<{url}>; rel="next"'}))
    elif case.name == "expired-token":
        harness.set_token("a-token-the-platform-issued-later")
    else:  # pragma: no cover - a new case must say how it is injected
        raise AssertionError(case.name)


class Site:
    """The faulty platform's clinic plus a healthy Mastodon clinic on another server, one archive."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, harness_type: type, waits: list[float]):
        self.tmp_path = tmp_path
        self.waits = waits  # backoffs and rate-limit waits, recorded instead of slept (conftest's http_waits)
        monkeypatch.setenv("FAULTY_TOKEN", "faulty-platform-token-3141")
        monkeypatch.setenv("HEALTHY_TOKEN", "healthy-platform-token-2718")
        self.faulty: Harness = harness_type()
        self.faulty.start("faulty-platform-token-3141")
        self.healthy = MastodonHarness()
        self.healthy.start("healthy-platform-token-2718")
        self.config = tmp_path / "archiver.toml"
        self.config.write_text(
            '[archive]\ndir = "arch"\nrequest_timeout = 0.5\nretries = 2\nmax_rate_limit_wait = 60\n\n'
            + self.faulty.account("faulty", "FAULTY_TOKEN")
            + "\n"
            + self.healthy.account("healthy", "HEALTHY_TOKEN")
        )

    def run(self) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["run", "--config", str(self.config), "--quiet"])
        return result.exit_code, result.output

    def query(self, sql: str) -> list[tuple]:
        conn = sqlite3.connect(self.tmp_path / "arch" / "archive.db")
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def items(self, account: str) -> set[str]:
        return {r[0] for r in self.query(f"SELECT item_key FROM item_versions WHERE account = '{account}'")}

    def stop(self) -> None:
        self.faulty.stop()
        self.healthy.stop()


@pytest.fixture(params=HARNESSES, ids=lambda h: h.platform)
def site(request, tmp_path, monkeypatch, http_waits):
    s = Site(tmp_path, monkeypatch, request.param, http_waits)
    yield s
    s.stop()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fault_is_survived_and_the_next_run_completes(site, case):
    runs = 0
    if not case.first_run:
        code, output = site.run()
        runs += 1
        assert code == 0, output
        assert (len(site.items("faulty")), len(site.items("healthy"))) == (site.faulty.items, site.healthy.items)

    inject(site.faulty, case)
    code, output = site.run()
    assert code == (1 if case.lasting else 0), output
    last = dict(site.query(f"SELECT account, status FROM account_runs WHERE id > {2 * runs}"))
    assert last == {"faulty": "failed" if case.lasting else "ok", "healthy": "ok"}, output
    assert ("account faulty failed: " in output) == case.lasting, output  # the log's warning, for cron's mail
    assert len(site.items("healthy")) == site.healthy.items, "the healthy account was not archived"
    if case.name == "paging-loop":
        assert "paging loop" in output
    assert site.query("SELECT count(*) FROM events WHERE event = 'deleted'") == [(0,)], "a fault made a deletion"

    site.faulty.clear_faults()
    site.faulty.set_token("faulty-platform-token-3141")
    code, output = site.run()
    assert code == 0, output
    assert (len(site.items("faulty")), len(site.items("healthy"))) == (site.faulty.items, site.healthy.items)
    assert site.query("SELECT count(*) FROM events WHERE event = 'deleted'") == [(0,)]
    duplicated = site.query("SELECT item_key FROM item_versions GROUP BY item_key HAVING count(*) > 1")
    assert duplicated == [], "a fault left a duplicated version"
    verified = CliRunner().invoke(app, ["verify", "--config", str(site.config)])
    assert verified.exit_code == 0, verified.output
