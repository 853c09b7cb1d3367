"""X and Bluesky as fault-suite harnesses: a small clinic on each sample server, and how faults reach it.

The shape is the Harness protocol of the shared fault and secret suites (platform, items, listing and thread
request patterns, start/stop, an account table, faults, the token, rate-limit headers, a listing page for
the truncated-body and paging-loop cases): adding XHarness and BlueskyHarness to their HARNESSES list runs
every fault against these platforms. tests/test_xbsky_harnesses.py checks each harness on its own.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from urllib.request import Request, urlopen

from archiver.connectors.x import PAGE_SIZE, tweet_params
from archiver.demo.bluesky_server import BlueskyState, SampleBlueskyServer
from archiver.demo.loopback import Fault
from archiver.demo.x_server import SampleXServer, XState, format_base36
from archiver.http import with_params

NOW = datetime.now(UTC).replace(microsecond=0)


class XHarness:
    platform = "x"
    listing = r"/2/users/\d+/tweets\?"
    thread = r"/2/tweets/search/recent\?"
    items = 6  # three posts and a reply to each

    def start(self, token: str) -> None:
        self.state = XState()
        self.clinic = self.state.add_user("clinic", "Riverside Clinic")
        ann = self.state.add_user("ann", "Ann Patient")
        for i in range(3):
            created = NOW - timedelta(days=2, minutes=i)
            post = self.state.add_tweet(self.clinic["id"], f"Clinic post {i}", created_at=created)
            self.state.add_tweet(ann["id"], f"Reply {i}", created_at=NOW - timedelta(days=1), reply_to=post["id"])
        self.server = SampleXServer(self.state, token)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def account(self, name: str, token_env: str) -> str:
        return (
            f'[[accounts]]\nname = "{name}"\nplatform = "x"\napi_base = "{self.server.base_url}"\n'
            f'account = "@clinic"\ntoken_env = "{token_env}"\n'
        )

    def add_fault(self, fault: Fault) -> None:
        self.server.faults.append(fault)

    def clear_faults(self) -> None:
        self.server.faults.clear()

    def set_token(self, token: str) -> None:
        self.server._token = token

    def rate_limit_headers(self, seconds: int) -> dict[str, str]:
        reset = int(time.time()) + seconds
        return {"x-rate-limit-limit": "900", "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)}

    def listing_page(self) -> tuple[str, bytes]:
        """The first timeline page as the server sends it, with a next_token leading back to the same posts."""
        base = f"{self.server.base_url}/2/users/{self.clinic['id']}/tweets"
        url = with_params(base, {"max_results": PAGE_SIZE, **tweet_params()})
        request = Request(url, headers={"Authorization": f"Bearer {self.server._token}"})
        with urlopen(request, timeout=5) as response:
            page = json.loads(response.read())
        newest = max(int(t["id"]) for t in page["data"])
        page["meta"]["next_token"] = format_base36(newest + 1)  # "older than the newest + 1": every post again
        return url, json.dumps(page).encode()


class BlueskyHarness:
    platform = "bluesky"
    listing = r"com\.atproto\.repo\.listRecords\?"
    thread = r"app\.bsky\.feed\.getPostThread\?"
    items = 6  # three posts and a reply to each

    def start(self, token: str) -> None:
        self.state = BlueskyState()
        self.clinic = self.state.add_account("clinic.example.org", "Riverside Clinic", token)
        ann = self.state.add_account("ann.example.org", "Ann Patient")
        for i in range(3):
            created = NOW - timedelta(days=2, minutes=i)
            post = self.state.add_post(self.clinic.did, f"Clinic post {i}", created_at=created)
            self.state.add_post(ann.did, f"Reply {i}", created_at=NOW - timedelta(days=1), reply_to=post["uri"])
        self.server = SampleBlueskyServer(self.state)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def account(self, name: str, token_env: str) -> str:
        base = self.server.base_url
        return (
            f'[[accounts]]\nname = "{name}"\nplatform = "bluesky"\napi_base = "{base}"\n'
            f'account = "@clinic.example.org"\ntoken_env = "{token_env}"\n'
            f'options = {{ appview = "{base}", plc_directory = "{base}" }}\n'
        )

    def add_fault(self, fault: Fault) -> None:
        self.server.faults.append(fault)

    def clear_faults(self) -> None:
        self.server.faults.clear()

    def set_token(self, token: str) -> None:
        """The account's app password changes (the old one was revoked): the next login is refused."""
        self.clinic.app_password = token

    def rate_limit_headers(self, seconds: int) -> dict[str, str]:
        reset = int(time.time()) + seconds
        return {"RateLimit-Limit": "3000", "RateLimit-Remaining": "0", "RateLimit-Reset": str(reset)}

    def listing_page(self) -> tuple[str, bytes]:
        """The first listRecords page, its cursor pointing above every record (so the same records again)."""
        params = {"repo": self.clinic.did, "collection": "app.bsky.feed.post", "limit": 100}
        url = with_params(f"{self.server.base_url}/xrpc/com.atproto.repo.listRecords", params)
        with urlopen(url, timeout=5) as response:
            page = json.loads(response.read())
        page["cursor"] = "zzzzzzzzzzzzz"
        return url, json.dumps(page).encode()
