"""A 401 or 403 to a request that carried no credential of the account is not the token refused.

The session sends a credential as the Authorization header or as the platform's `token_param`; a request sent with
`auth=False`, by a session without a token, or followed by requests to another host (which drops the Authorization
header: should_strip_auth) carries none. A refusal of such a request fails as the other refusals do (RequestFailed),
saying the server refused a request sent without credentials; only a request that carried the token is told to renew
it (AuthError). A replay judges the recorded request the same way, and an archive captured before, when every 401 and
403 said "renew the token", still verifies with --replay.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.demo.bluesky_server import Fault
from archiver.errors import AuthError
from archiver.http import CapturingSession, RequestFailed
from archiver.rebuild import ReplaySession, index_runs
from archiver.warc import WarcWriter
from tests.revisions import verify_replay
from tests.test_bluesky_run import BskyClinic, assert_rebuild_equals

TOKEN = "tok-5e4d3c2b1a-refusal-distinctive"
RENEW = "renew the token"
WITHOUT = "the server refused a request sent without credentials"
MEANING = (
    "the endpoint wants authentication or the server refuses this client; check the account's api_base and URL "
    "options, and the platform's status"
)
FOREVER = 10**6


class Loopback:
    """A loopback server answering each path with (status, headers); every request's path and Authorization kept."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, dict[str, str]]] = {}
        self.seen: list[tuple[str, str | None]] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                script.seen.append((self.path, self.headers.get("Authorization")))
                status, headers = script.answers.get(self.path.split("?")[0], (404, {}))
                body = b'{"error":"AuthRequired","message":"Authentication Required"}'
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()  # quick shutdown

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Loopback, Loopback]]:
    first, second = Loopback(), Loopback()
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def capturing(tmp_path, token: str | None = TOKEN, **kw) -> CapturingSession:
    warc = WarcWriter(tmp_path / "warcs", "run1")
    return CapturingSession(
        warc, account="acct", token=token, credential_ref="$TOK", sleep=lambda seconds: None, retries=0, **kw
    )


def replayed(tmp_path, session: CapturingSession, **kw) -> ReplaySession:
    """A replay of what `session` captured."""
    session.warc.close()
    (run,) = index_runs(tmp_path / "warcs")
    return ReplaySession(tmp_path / "warcs", "acct", run.exchanges["acct"], **kw)


def assert_refused_without_credentials(error: Exception, status: int, shown: str, moved: str = "") -> None:
    text = str(error)
    record = (rf" from {re.escape(moved)} after a redirect" if moved else "") + r", WARC record <urn:uuid:[0-9a-f-]+>"
    expected = rf"GET {re.escape(shown)}: {WITHOUT} \(HTTP {status}{record}\): {re.escape(MEANING)}"
    assert re.fullmatch(expected, text), text
    assert RENEW not in text and "renew" not in text and TOKEN not in text
    assert isinstance(error, RequestFailed) and not isinstance(error, AuthError)
    assert error.why == text.removeprefix(f"GET {shown}: ")


# -- live ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [401, 403])
def test_a_refusal_of_a_request_sent_with_auth_false_is_not_the_token(tmp_path, servers, status):
    """The token is configured but not sent (auth=False, as Bluesky reads its public AppView): no "renew the token"."""
    server, _ = servers
    server.answers["/xrpc/app.bsky.feed.getPostThread"] = (status, {})
    s = capturing(tmp_path)
    url = server.url("/xrpc/app.bsky.feed.getPostThread")
    with pytest.raises(RequestFailed) as refused:
        s.get(url, {"uri": "at://did:plc:x/app.bsky.feed.post/1"}, auth=False)
    assert server.seen == [
        ("/xrpc/app.bsky.feed.getPostThread?uri=at%3A%2F%2Fdid%3Aplc%3Ax%2Fapp.bsky.feed.post%2F1", None)
    ]
    assert_refused_without_credentials(
        refused.value, status, f"{url}?uri=at%3A%2F%2Fdid%3Aplc%3Ax%2Fapp.bsky.feed.post%2F1"
    )


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusal_to_a_session_without_a_token_is_not_the_token(tmp_path, servers, status):
    """An account configured without a credential sends none, whatever `auth` says."""
    server, _ = servers
    server.answers["/api/v1/ping"] = (status, {})
    s = capturing(tmp_path, token=None, token_param="access_token")
    with pytest.raises(RequestFailed) as refused:
        s.get(server.url("/api/v1/ping"))
    assert server.seen == [("/api/v1/ping", None)]
    assert_refused_without_credentials(refused.value, status, server.url("/api/v1/ping"))


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("token_param", [None, "access_token"])
def test_a_refusal_of_the_token_sent_still_says_renew_it(tmp_path, servers, status, token_param):
    """The token sent as the Authorization header or as the query parameter the platform wants: AuthError, as before."""
    server, _ = servers
    server.answers["/api/v1/ping"] = (status, {})
    s = capturing(tmp_path, token_param=token_param)
    with pytest.raises(AuthError) as refused:
        s.get(server.url("/api/v1/ping"))
    (sent,) = server.seen
    assert sent == (
        ("/api/v1/ping", f"Bearer {TOKEN}") if token_param is None else (f"/api/v1/ping?access_token={TOKEN}", None)
    )
    text = str(refused.value)
    assert text.startswith("account acct: the platform refused the token from $TOK") and text.endswith(RENEW)
    assert f"(HTTP {status} at " in text and TOKEN not in text and WITHOUT not in text


@pytest.mark.parametrize("token_param", [None, "access_token"])
def test_a_redirect_to_another_host_that_refuses_is_not_the_token(tmp_path, servers, token_param):
    """The platform redirects to another host, which answers 401: requests dropped the Authorization header on the
    way (should_strip_auth), and the Location does not repeat the token's query parameter; none was sent there."""
    platform, other = servers
    elsewhere = other.url("/files/list", host="localhost")
    platform.answers["/api/v1/list"] = (302, {"Location": elsewhere})
    other.answers["/files/list"] = (401, {})
    s = capturing(tmp_path, token_param=token_param)
    with pytest.raises(RequestFailed) as refused:
        s.get(platform.url("/api/v1/list"))
    (asked,) = platform.seen
    assert asked == (
        ("/api/v1/list", f"Bearer {TOKEN}") if token_param is None else (f"/api/v1/list?access_token={TOKEN}", None)
    )
    assert other.seen == [("/files/list", None)]  # nothing of the credential went there
    asked_url = platform.url("/api/v1/list") + ("?access_token=[REDACTED]" if token_param else "")
    assert_refused_without_credentials(refused.value, 401, asked_url, f"http://localhost:{other.port}")


def test_a_redirect_on_the_same_host_keeps_the_token_and_its_refusal(tmp_path, servers):
    """requests keeps the Authorization header on a redirect to the same host: a 401 there is the token's refusal."""
    platform, _ = servers
    platform.answers["/api/v1/list"] = (302, {"Location": "/api/v2/list"})
    platform.answers["/api/v2/list"] = (401, {})
    s = capturing(tmp_path)
    with pytest.raises(AuthError, match=RENEW):
        s.get(platform.url("/api/v1/list"))
    assert [auth for _, auth in platform.seen] == [f"Bearer {TOKEN}"] * 2


# -- replay -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [401, 403])
def test_a_replay_judges_the_recorded_request_as_the_live_session_did(tmp_path, servers, status):
    """The replay reads the captured request: no Authorization header there (auth=False, or dropped on a redirect to
    another host), no token in its query: the same failure as live, replayed; the token sent: AuthError as before."""
    platform, other = servers
    platform.answers["/public"] = (status, {})
    platform.answers["/private"] = (status, {})
    platform.answers["/moved"] = (302, {"Location": other.url("/files/list", host="localhost")})
    other.answers["/files/list"] = (status, {})
    s = capturing(tmp_path)
    for path, auth in [("/public", False), ("/moved", True), ("/private", True)]:
        with pytest.raises((RequestFailed, AuthError)):
            s.get(platform.url(path), auth=auth)
    replay = replayed(tmp_path, s)
    for path, auth in [("/public", False), ("/moved", True)]:
        with pytest.raises(Exception) as refused:
            replay.get(platform.url(path), auth=auth)
        text = str(refused.value)
        assert not isinstance(refused.value, AuthError), text
        assert text == f"GET {refused_uri(platform, path, other)}: {WITHOUT} (HTTP {status}): {MEANING} (replayed)"
    with pytest.raises(AuthError, match=rf"HTTP {status} at .*/private \(replayed\)"):
        replay.get(platform.url("/private"))
    assert replay.unreplayed() == 0


def refused_uri(platform: Loopback, path: str, other: Loopback) -> str:
    return other.url("/files/list", host="localhost") if path == "/moved" else platform.url(path)


def test_a_replayed_token_parameter_is_the_credential_sent(tmp_path, servers):
    """The token as the platform's query parameter, masked in the record: the replay sees it was sent."""
    platform, _ = servers
    platform.answers["/api/v1/ping"] = (403, {})
    s = capturing(tmp_path, token_param="access_token")
    with pytest.raises(AuthError):
        s.get(platform.url("/api/v1/ping"))
    replay = replayed(tmp_path, s, token_param="access_token")
    with pytest.raises(AuthError, match=r"HTTP 403 at .*access_token=\[REDACTED\] \(replayed\)"):
        replay.get(platform.url("/api/v1/ping"))


# -- a Bluesky account: its AppView's or its own PDS's public reads, sent without a token ----------------------------
@pytest.fixture
def clinic(tmp_path, monkeypatch, http_waits) -> Iterator[BskyClinic]:
    clinic = BskyClinic(tmp_path, monkeypatch, chat=False)
    try:
        yield clinic
    finally:
        clinic.server.stop()


def bluesky_failure(output: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith("clinic-bsky") and "failed" in line]
    return line


@pytest.mark.parametrize(
    ("read", "status"),
    [("app.bsky.feed.getPostThread", 401), ("com.atproto.repo.listRecords", 403)],
)
def test_a_bluesky_public_read_refused_fails_without_blaming_the_app_password(clinic, read, status):
    """The AppView's thread read (401) or the own PDS's listing (403), both sent without any credential, refused:
    the account fails saying so, not "renew the token"; `archiver status` says the same; the replay ends the account
    the same way and `verify --replay` passes."""
    code, output = clinic.run()
    assert code == 0, output
    clinic.server.faults.append(Fault(rf"^/xrpc/{re.escape(read)}\?", status=status, times=FOREVER))
    code, output = clinic.run()
    assert code == 1, output
    assert RENEW not in output and WITHOUT in output, output
    assert f"{WITHOUT} (HTTP {status}, WARC record <urn:uuid:" in output and MEANING in output, output
    status_output = CliRunner().invoke(app, ["status", "--config", str(clinic.config())]).output
    assert WITHOUT in status_output and RENEW not in status_output, status_output
    result = verify_replay(clinic.config())
    assert result.exit_code == 0, result.output
    replayed_as = f"failed when captured too (replayed: GET {clinic.server.base_url}/xrpc/{read}?"
    assert replayed_as in result.output and f"{WITHOUT} (HTTP {status}): {MEANING} (replayed))" in result.output
    rebuilt = assert_rebuild_equals(clinic, clinic.tmp_path / "rebuilt.db")
    statuses = [r[0] for r in rebuilt.execute("SELECT status FROM account_runs ORDER BY rowid")]
    rebuilt.close()
    assert statuses == ["ok", "failed"]


def test_an_archive_captured_before_still_verifies(clinic, monkeypatch):
    """A capture made when every 401 said "renew the token" (the old judgement: every request carried the token)
    replays with today's judgement of the same record: the account failed then and fails now, which is what a
    replay compares (account_runs' error text is run bookkeeping, not replayed); `verify --replay` passes."""
    code, output = clinic.run()
    assert code == 0, output
    clinic.server.faults.append(Fault(r"^/xrpc/app\.bsky\.feed\.getPostThread\?", status=401, times=FOREVER))
    with monkeypatch.context() as before:
        before.setattr(CapturingSession, "_sent_credential", lambda *args: True, raising=False)
        code, output = clinic.run()
    assert code == 1 and RENEW in output and WITHOUT not in output, output
    result = verify_replay(clinic.config())
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "archive verifies", result.output
    rebuilt = assert_rebuild_equals(clinic, clinic.tmp_path / "rebuilt.db")
    statuses = [r[0] for r in rebuilt.execute("SELECT status FROM account_runs ORDER BY rowid")]
    rebuilt.close()
    assert statuses == ["ok", "failed"]
