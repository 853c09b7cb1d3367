"""A run-failed alert names no host of a member of the public. On Bluesky a commenter's records live on the PDS
their DID document names, which may be their own server (a did:web, or a did:plc naming a self-hosted service
endpoint: `janedoe-pds.example`): a lookup of a reply gone from its thread, or a blob of theirs, asks that host,
and its failure (a 5xx after the retries, a throttle past max_rate_limit_wait) ends the account's capture with an
error naming it. The alert, which leaves the archive for e-mail or chat, says "another server" there; the run log
and `archiver status` keep the whole line. The account's configured hosts and its platform's own stay named."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.config import load_config
from archiver.connectors.bluesky import MEDIA_FAILURES_NOTED, BlueskyConnector
from archiver.demo.bluesky_server import Fault
from archiver.demo.png import make_png
from archiver.scan.alerts import OTHER_SERVER, failure_payload

from .test_bluesky_other_servers import with_own_pds
from .test_bluesky_run import NOW, BskyClinic
from .test_config import DISABLED
from .test_phi_alerts import Hooks


@pytest.fixture
def commenter(tmp_path, monkeypatch, http_waits):
    """The clinic's Bluesky services, a commenter (Jane) whose DID document names her own PDS (a second loopback
    server on the same records), and a webhook receiving the alerts. Captured at request revision 3: from revision
    4 on (OTHER_SERVERS_NOTED) a failure at her server is a notice and no longer ends the account's capture, but
    a run of an older revision, or an error naming such a host some other way, must still not carry it."""
    monkeypatch.setattr(BlueskyConnector, "REQUEST_REVISION", MEDIA_FAILURES_NOTED)
    clinic = BskyClinic(tmp_path, monkeypatch)
    jane, own_pds = with_own_pds(clinic)
    hooks = Hooks()
    config = clinic.config(direct_messages=False)
    config.write_text(config.read_text() + f'\n[alerts.webhook]\nurl = "{hooks.url}"\n')
    try:
        yield clinic, jane, own_pds, hooks, config
    finally:
        hooks.stop()
        own_pds.stop()
        clinic.server.stop()


def run(config) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
    return result.exit_code, result.output


def failed_alert(hooks: Hooks) -> str:
    [failed] = [body for _, body in hooks.posts if body.get("event") == "run-failed"]
    [account] = failed["accounts"]
    return account["error"]


def assert_kept_whole(config, host: str, output: str) -> None:
    """The run's output and `archiver status` name the host: whoever runs the archive needs it."""
    assert host in output, output
    status = CliRunner().invoke(app, ["status", "--config", str(config)])
    assert host in status.output, status.output


def test_a_reply_looked_up_on_the_commenters_own_pds_that_fails_is_another_server_in_the_alert(commenter):
    """Jane's reply leaves its thread: the lookup that decides whether it was deleted asks her own PDS, which
    answers 503 every time, and the account fails naming it; the alert says "another server"."""
    clinic, jane, own_pds, hooks, config = commenter
    reply = clinic.state.add_post(
        jane.did, "My scan results came back", created_at=NOW - timedelta(days=1), reply_to=clinic.posts[2]["uri"]
    )
    assert run(config)[0] == 0
    clinic.state.delete_post(reply["uri"])
    own_pds.faults.append(Fault(r"com\.atproto\.repo\.getRecord", status=503, times=10**6))
    code, output = run(config)
    assert code == 1, output
    host = own_pds.base_url.removeprefix("http://")
    assert_kept_whole(config, host, output)
    error = failed_alert(hooks)
    assert re.fullmatch(
        rf"GET {re.escape(OTHER_SERVER)}: HTTP 503 after 4 attempt\(s\) \(WARC record <urn:uuid:[0-9a-f-]+>\)", error
    ), error
    assert host not in json.dumps(hooks.posts)


def test_a_blob_throttled_by_the_commenters_own_pds_is_another_server_in_the_alert(commenter):
    """Jane's reply carries an image, fetched from her own PDS, which throttles for an hour (past the 900 s of
    max_rate_limit_wait): the account stops naming the file's host; the alert says "another server"."""
    clinic, jane, own_pds, hooks, config = commenter
    image = [(make_png(4, 4, 7), "my rash")]
    clinic.state.add_post(
        jane.did, "Is this normal?", created_at=NOW - timedelta(days=1), reply_to=clinic.posts[2]["uri"], images=image
    )
    throttled = {"Retry-After": "3600"}
    own_pds.faults.append(Fault(r"com\.atproto\.sync\.getBlob", status=429, headers=throttled, times=10**6))
    code, output = run(config)
    assert code == 1, output
    host = own_pds.base_url.removeprefix("http://")
    assert_kept_whole(config, host, output)
    error = failed_alert(hooks)
    assert error == (
        f"account clinic-bsky: throttled (HTTP 429) at media file from {OTHER_SERVER}; waiting 3600s more would pass "
        "the max_rate_limit_wait of 900s; the next run resumes"
    ), error
    assert host not in json.dumps(hooks.posts)


BLUESKY = """
[[accounts]]
name = "clinic-bsky"
platform = "bluesky"
api_base = "https://bsky.social"
account = "@riverside.example.org"
token_env = "T"
options = { appview = "https://appview.riverside-health.example" }
"""


@pytest.mark.parametrize(
    ("error", "alerted"),
    [
        # Hosts that may not be named: a commenter's self-hosted PDS, whatever form the error gives it.
        (
            "GET https://janedoe-pds.example/xrpc/com.atproto.repo.getRecord?repo=did:web:janedoe-pds.example: "
            "HTTP 503 after 4 attempt(s)",
            f"GET {OTHER_SERVER}: HTTP 503 after 4 attempt(s)",
        ),
        (
            "GET https://janedoe-pds.example/.well-known/did.json: ConnectionError after 4 attempts",
            f"GET {OTHER_SERVER}: ConnectionError after 4 attempts",
        ),
        (
            "account clinic-bsky: GET to https://janedoe-pds.example: HTTP 302 redirect to "
            "https://[REDACTED]@jane.example:8443 not followed",
            f"account clinic-bsky: GET to {OTHER_SERVER}: HTTP 302 redirect to {OTHER_SERVER} not followed",
        ),
        (
            "GET media file from janedoe-pds.example:8443: HTTP 503 after 4 attempt(s)",
            f"GET media file from {OTHER_SERVER}: HTTP 503 after 4 attempt(s)",
        ),
        ("at media file from JaneDoe-PDS.example.", f"at media file from {OTHER_SERVER}."),
        # A host named like one of the platform's, but not under its domain.
        ("GET https://bsky.social.janedoe.example/x: HTTP 500", f"GET {OTHER_SERVER}: HTTP 500"),
        ("GET https://notbsky.social/x: HTTP 500", f"GET {OTHER_SERVER}: HTTP 500"),
        # Under bsky.social are people's handles, not the platform's services.
        ("GET https://janedoe.bsky.social/x: HTTP 500", f"GET {OTHER_SERVER}: HTTP 500"),
        # Hosts that are named: the account's configured ones, the platform's, the domain of its own handle.
        ("GET https://bsky.social/xrpc/x?handle=a: HTTP 500", "GET https://bsky.social/…: HTTP 500"),
        (
            "GET https://appview.riverside-health.example/xrpc/app.bsky.feed.getPostThread?uri=at://x: HTTP 502",
            "GET https://appview.riverside-health.example/…: HTTP 502",
        ),
        ("GET https://plc.directory/did:plc:abc: HTTP 500", "GET https://plc.directory/…: HTTP 500"),
        (
            "GET https://morel.us-east.host.bsky.network/xrpc/x: HTTP 500",
            "GET https://morel.us-east.host.bsky.network/…: HTTP 500",
        ),
        ("GET https://public.api.bsky.app/xrpc/x: HTTP 500", "GET https://public.api.bsky.app/…: HTTP 500"),
        ("GET https://pds.riverside.example.org/xrpc/x: HTTP 500", "GET https://pds.riverside.example.org/…: HTTP 500"),
        ("GET media file from cdn.bsky.app: HTTP 503", "GET media file from cdn.bsky.app: HTTP 503"),
        ("GET media file from an unnamed host: HTTP 503", "GET media file from an unnamed host: HTTP 503"),
    ],
)
def test_an_alert_names_only_the_accounts_and_its_platforms_hosts(tmp_path, error, alerted):
    path = tmp_path / "archiver.toml"
    path.write_text(
        f'[archive]\ndir = "arch"\n{DISABLED}{BLUESKY}\n[alerts]\n[alerts.webhook]\nurl = "https://h.test"\n'
    )
    payload = failure_payload(load_config(path), "run-1", [("clinic-bsky", "bluesky", error)])
    assert payload["accounts"][0]["error"] == alerted
