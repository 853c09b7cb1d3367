"""The capturing session: secrets stripped before the WARC, bounded retries, rate limits honoured."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from archiver.errors import AuthError, PlatformError, RateLimitedError
from archiver.http import CapturingSession, HeaderRateLimit, redact_url
from archiver.warc import WarcWriter, read_block_at

TOKEN = "tok-9f8e7d6c5b4a-distinctive"


class Script:
    """Answers queued per path: (status, headers, body); the last answer repeats."""

    def __init__(self):
        self.answers: dict[str, list[tuple[int, dict, bytes]]] = {}
        self.seen: list[tuple[str, str | None]] = []
        self.posted: list[bytes] = []


@pytest.fixture
def server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            script.seen.append((self.path, self.headers.get("Authorization")))
            path = self.path.split("?")[0]
            queue = script.answers.get(path, [(404, {}, b'{"error":"Not found"}')])
            status, headers, body = queue.pop(0) if len(queue) > 1 else queue[0]
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            script.posted.append(self.rfile.read(length))
            self.do_GET()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()
    httpd.server_close()


def session(tmp_path, **kw):
    warc = WarcWriter(tmp_path / "warcs", "run1")
    sleeps: list[float] = []
    s = CapturingSession(warc, account="acct", token=TOKEN, credential_ref="$TOK", sleep=sleeps.append, **kw)
    return s, warc, sleeps


def all_bytes(tmp_path) -> bytes:
    import gzip

    return b"".join(gzip.decompress(p.read_bytes()) for p in (tmp_path / "warcs").glob("*.warc.gz"))


def test_token_is_sent_but_never_written(tmp_path, server):
    base, script = server
    echo = json.dumps({"you_sent": f"Bearer {TOKEN}"}).encode()
    script.answers["/api/echo"] = [(200, {"Set-Cookie": "session=abc123secret"}, echo)]
    s, warc, _ = session(tmp_path)
    exchange = s.get(f"{base}/api/echo", {"access_token": TOKEN, "q": "x"})
    warc.close()
    assert script.seen[0][1] == f"Bearer {TOKEN}"
    assert TOKEN not in exchange.body.decode()
    data = all_bytes(tmp_path)
    assert TOKEN.encode() not in data
    assert b"abc123secret" not in data
    assert b"Authorization: Bearer [REDACTED]" in data
    assert b"access_token=%5BREDACTED%5D" in data or b"access_token=[REDACTED]" in data
    record, held = read_block_at(tmp_path / "warcs" / exchange.ref.warc_file, exchange.ref.offset, None)
    block = held.data
    assert record.rec_type == "response" and block.endswith(exchange.body)


def test_retries_5xx_then_succeeds(tmp_path, server):
    base, script = server
    script.answers["/api/x"] = [(502, {}, b"bad gateway"), (503, {}, b"busy"), (200, {}, b"[]")]
    s, warc, sleeps = session(tmp_path, retries=3)
    assert s.get(f"{base}/api/x").json() == []
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]
    assert s.requests_made == 3
    warc.close()
    assert all_bytes(tmp_path).count(b"HTTP/1.0 50") == 2  # the failed answers are evidence too


def test_gives_up_after_bounded_retries(tmp_path, server):
    base, script = server
    script.answers["/api/x"] = [(500, {}, b"oops")]
    s, _, sleeps = session(tmp_path, retries=2)
    with pytest.raises(PlatformError, match=r"HTTP 500 after 3 attempt"):
        s.get(f"{base}/api/x")
    assert len(sleeps) == 2


def test_429_waits_until_reset_then_resumes(tmp_path, server):
    base, script = server
    script.answers["/api/x"] = [(429, {"Retry-After": "7"}, b'{"error":"Too many requests"}'), (200, {}, b"{}")]
    s, _, sleeps = session(tmp_path)
    assert s.get(f"{base}/api/x").json() == {}
    assert sleeps == [7.0]


def test_429_longer_than_max_wait_gives_up(tmp_path, server):
    base, script = server
    script.answers["/api/x"] = [(429, {"Retry-After": "3600"}, b"{}")]
    s, _, sleeps = session(tmp_path, max_wait=60)
    with pytest.raises(RateLimitedError, match="max_rate_limit_wait"):
        s.get(f"{base}/api/x")
    assert sleeps == []


@pytest.mark.parametrize(
    "headers",
    [{"Retry-After": "0"}, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2020-01-01T00:00:00.000Z"}],
    ids=["retry-after-0", "reset-already-past"],
)
def test_a_throttle_asking_for_no_wait_still_waits_and_the_budget_ends_it(tmp_path, server, headers):
    """A 429 whose reset is past by our clock (or Retry-After: 0) was asked again at once, without end."""
    base, script = server
    script.answers["/api/x"] = [(429, headers, b'{"error":"Too many requests"}')]
    s, _, sleeps = session(tmp_path, rate_limit=HeaderRateLimit(), max_wait=900)
    with pytest.raises(RateLimitedError, match="max_rate_limit_wait"):
        s.get(f"{base}/api/x")
    assert sleeps[:7] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0] and set(sleeps[7:]) == {60.0}
    assert sum(sleeps) <= 900 and s.requests_made == len(sleeps) + 1


def test_retry_after_as_an_http_date(tmp_path, server):
    from email.utils import formatdate

    base, script = server
    later = formatdate(time.time() + 120, usegmt=True)
    script.answers["/api/x"] = [(429, {"Retry-After": later}, b"{}"), (200, {}, b"{}")]
    s, _, sleeps = session(tmp_path, rate_limit=HeaderRateLimit(default_wait=5))
    assert s.get(f"{base}/api/x").json() == {}
    assert len(sleeps) == 1 and 115 < sleeps[0] <= 120


def test_remaining_zero_waits_before_next_request(tmp_path, server):
    base, script = server
    script.answers["/api/x"] = [(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}, b"{}")]
    s, _, sleeps = session(tmp_path, rate_limit=HeaderRateLimit())
    s.get(f"{base}/api/x")
    s.get(f"{base}/api/x")
    assert len(sleeps) == 1 and 25 < sleeps[0] <= 30


def test_refused_token_is_an_auth_error_naming_the_reference(tmp_path, server):
    base, script = server
    script.answers["/api/x"] = [(401, {}, b'{"error":"The access token is invalid"}')]
    s, _, _ = session(tmp_path)
    with pytest.raises(AuthError) as info:
        s.get(f"{base}/api/x")
    assert "$TOK" in str(info.value) and "renew" in str(info.value) and TOKEN not in str(info.value)


def test_connection_refused_is_retried_then_reported(tmp_path):
    s, _, sleeps = session(tmp_path, retries=1)
    with pytest.raises(PlatformError, match="ConnectionError after 2 attempts"):
        s.get("http://127.0.0.1:9/api/x")
    assert len(sleeps) == 1


def test_redact_url_masks_credential_parameters():
    assert (
        redact_url("https://h/p?a=1&access_token=abc&key=k") == "https://h/p?a=1&access_token=[REDACTED]&key=[REDACTED]"
    )
    assert redact_url("https://h/p") == "https://h/p"


def test_token_as_query_parameter_is_sent_but_never_written(tmp_path, server):
    base, script = server
    script.answers["/v3/videos"] = [(200, {}, b'{"items":[]}')]
    s, warc, _ = session(tmp_path, token_param="key")
    exchange = s.get(f"{base}/v3/videos", {"id": "abc"}, headers={"X-Platform-Version": "202611"})
    warc.close()
    assert script.seen[0] == (f"/v3/videos?id=abc&key={TOKEN}", None)  # no Authorization header at all
    assert exchange.url.endswith("/v3/videos?id=abc&key=[REDACTED]")
    data = all_bytes(tmp_path)
    assert TOKEN.encode() not in data
    assert b"X-Platform-Version: 202611" in data


def test_login_body_and_issued_token_are_masked(tmp_path, server):
    """A login POST carries the password; the platform answers with a session token: neither is written."""
    base, script = server
    issued = "jwt-issued-by-platform-0a1b2c3d"
    script.answers["/xrpc/createSession"] = [(200, {}, json.dumps({"accessJwt": issued}).encode())]
    script.answers["/xrpc/getRecord"] = [(200, {}, json.dumps({"echo": issued}).encode())]
    s, warc, _ = session(tmp_path)
    body = {"identifier": "clinic", "password": s.secret()}
    login = s.post(f"{base}/xrpc/createSession", body, auth=False, secret_fields=("accessJwt",))
    assert json.loads(login.body) == {"accessJwt": "[REDACTED]"}
    s.use_token(login.issued["accessJwt"])
    s.get(f"{base}/xrpc/getRecord")
    warc.close()
    assert json.loads(script.posted[0]) == {"identifier": "clinic", "password": TOKEN}
    assert script.seen[1][1] == f"Bearer {issued}"
    data = all_bytes(tmp_path)
    assert TOKEN.encode() not in data and issued.encode() not in data
    assert b"POST /xrpc/createSession HTTP/1.1" in data
    assert b'"password": "[REDACTED]"' in data


def test_proxy_from_the_environment_is_used(tmp_path, server, monkeypatch):
    """Hospital networks send traffic through a proxy named in HTTP(S)_PROXY: the session honours it."""
    proxy, script = server
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    script.answers["http://platform.invalid/api/v1/ping"] = [(200, {}, b"{}")]
    s, warc, _ = session(tmp_path)
    # auth=False: the token never goes to an http:// host beyond loopback (test_no_credential_in_clear_...)
    s.get("http://platform.invalid/api/v1/ping", auth=False)
    s.get("http://platform.invalid/api/v1/ping", auth=False)
    warc.close()
    assert [path for path, _ in script.seen] == ["http://platform.invalid/api/v1/ping"] * 2


def test_redact_url_keeps_the_rest_of_the_query_as_it_was_sent():
    sent = "https://h/rest/posts?author=urn%3Ali%3Aorganization%3A1001&q=author&key=k&part=snippet%2Creplies"
    assert redact_url(sent) == (
        "https://h/rest/posts?author=urn%3Ali%3Aorganization%3A1001&q=author&key=[REDACTED]&part=snippet%2Creplies"
    )
    assert redact_url("https://h/p?Access%5FToken=abc&x") == "https://h/p?Access%5FToken=[REDACTED]&x"


# -- media files are named by host and record, never by their URL (review 2026-11-24p, 1) ----------------------
PATIENT_FILE = "/cdn/v/t59/987654321_n.pdf/Maria-Lopez-biopsy-results.pdf"


def test_a_media_download_that_fails_names_its_host_never_its_path(tmp_path, server, caplog):
    """A Messenger file's URL ends in the name the patient gave it: the session's errors and its --verbose retry
    lines name a media download by its host (and its last answer's record), never by its path or query."""
    from archiver.connectors.base import MEDIA_ANSWERS
    from archiver.http import DownloadFailed

    base, script = server
    script.answers[PATIENT_FILE] = [(503, {}, b"busy")]
    s, warc, sleeps = session(tmp_path, retries=2)
    with caplog.at_level("INFO", logger="archiver.http"), pytest.raises(DownloadFailed) as info:
        s.get(f"{base}{PATIENT_FILE}?oh=abc&oe=6A1B", auth=False, ok=MEDIA_ANSWERS)
    warc.close()
    host = base.removeprefix("http://")
    message = str(info.value)
    assert message.startswith(f"GET media file from {host}: HTTP 503 after 3 attempt(s) (WARC record <urn:uuid:")
    assert info.value.why.startswith("HTTP 503 after 3 attempt(s)") and len(sleeps) == 2
    assert "retry 2" in caplog.text
    for text in (message, caplog.text):
        assert "Maria" not in text and "987654321" not in text and "oe=" not in text
    assert b"Maria-Lopez-biopsy-results.pdf" in all_bytes(tmp_path)  # the archive keeps what was asked


@pytest.mark.parametrize(
    "url, why",
    [
        ("http://127.0.0.1:9/cdn/Maria-Lopez-biopsy-results.pdf", "ConnectionError after 2 attempts"),
        ("http:///cdn/Maria-Lopez-biopsy-results.pdf", "InvalidURL"),  # requests' message would quote the URL
    ],
    ids=["no-answer", "malformed"],
)
def test_a_media_download_with_no_answer_names_its_host_never_its_path(tmp_path, url, why):
    from archiver.connectors.base import MEDIA_ANSWERS
    from archiver.http import DownloadFailed

    s, _, _ = session(tmp_path, retries=1)
    with pytest.raises(DownloadFailed) as info:
        s.get(url, auth=False, ok=MEDIA_ANSWERS)
    assert info.value.why == why and "Maria" not in str(info.value), str(info.value)


def test_an_api_call_that_fails_still_names_its_url(tmp_path, server):
    """API URLs are paths of ids: an API failure keeps naming its URL (secrets masked), as before."""
    base, script = server
    script.answers["/api/v1/statuses/42"] = [(500, {}, b"oops")]
    s, _, _ = session(tmp_path, retries=0, token_param="access_token")
    with pytest.raises(PlatformError, match=r"GET http://127\.0\.0\.1:\d+/api/v1/statuses/42\?access_token="):
        s.get(f"{base}/api/v1/statuses/42")


# -- a secret the connector registers (Graph's appsecret_proof), masked everywhere like the token (5) ----------
def test_a_registered_secret_is_masked_in_bodies_headers_and_links(tmp_path, server):
    base, script = server
    proof = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
    page = json.dumps({"paging": {"next": f"{base}/feed?appsecret_proof={proof}&after=QVFI"}}).encode()
    link = f'<{base}/feed?appsecret_proof={proof}&after=QVFI>; rel="next"'
    script.answers["/feed"] = [(200, {"Link": link, "X-Echo": proof}, page)]
    s, warc, _ = session(tmp_path)
    s.add_secret(proof)
    exchange = s.get(f"{base}/feed", {"appsecret_proof": proof})
    warc.close()
    assert script.seen[0][0] == f"/feed?appsecret_proof={proof}"  # sent as it is
    assert proof not in exchange.body.decode() and proof not in exchange.links["next"]
    assert proof.encode() not in all_bytes(tmp_path)
    assert b"appsecret_proof=[REDACTED]&after=QVFI" in all_bytes(tmp_path)


# -- credentials in a URL's authority (6) and credentials in clear (4) ----------------------------------------
def test_redact_url_masks_a_user_name_and_password_before_the_host():
    assert redact_url("https://archiver:Passw0rd-77@gw.example:8443/api/v1/x?a=1") == (
        "https://[REDACTED]@gw.example:8443/api/v1/x?a=1"
    )
    assert redact_url("https://user@gw.example/p?token=t") == "https://[REDACTED]@gw.example/p?token=[REDACTED]"
    assert redact_url("https://gw.example/p@home") == "https://gw.example/p@home"  # an @ in the path is no user


@pytest.mark.parametrize("auth", [True, False])
def test_a_url_naming_a_user_and_password_is_never_asked(tmp_path, server, auth):
    """requests would send them as Basic auth in place of the token: whoever wrote them (a config, a platform's
    link), the session sends only the configured credential, so such a URL is not asked at all."""
    from archiver.http import Refused

    base, script = server
    script.answers["/api/v1/x"] = [(200, {}, b"{}")]
    s, _, _ = session(tmp_path)
    url = base.replace("http://", "http://archiver:GatewayPassw0rd-77@") + "/api/v1/x"
    with pytest.raises(Refused) as info:
        s.get(url, auth=auth)
    message = str(info.value)
    assert script.seen == [] and s.requests_made == 0
    assert "GatewayPassw0rd" not in message and "archiver:" not in message and "/api/v1/x" not in message
    assert f"http://[REDACTED]@{base.removeprefix('http://')}" in message


@pytest.fixture
def beyond_loopback(server, monkeypatch):
    """http://platform.invalid (a host beyond loopback) reached through the test server as an HTTP proxy, as every
    http:// request is (the server sees absolute URLs): one the session sends is seen, one it refuses is not."""
    proxy, script = server
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    return proxy, script


@pytest.mark.parametrize("carried", ["bearer", "token_param", "login_body"])
def test_no_credential_in_clear_beyond_loopback(tmp_path, beyond_loopback, carried):
    """A URL may come from a DID document (Bluesky's PDS), a link or a redirect, not only from the config: the
    session itself refuses to send a credential over http:// beyond loopback, naming the host and not the path."""
    from archiver.http import Refused

    _, script = beyond_loopback
    script.answers["http://platform.invalid/xrpc/com.atproto.server.createSession"] = [(200, {}, b"{}")]
    s, _, _ = session(tmp_path, token_param="key" if carried == "token_param" else None)
    url = "http://platform.invalid/xrpc/com.atproto.server.createSession"
    with pytest.raises(Refused) as info:
        if carried == "login_body":
            s.post(url, {"identifier": "clinic", "password": s.secret()}, auth=False)
        else:
            s.get(url)
    assert script.seen == [] and script.posted == [] and s.requests_made == 0
    message = str(info.value)
    assert "travel in clear to http://platform.invalid" in message and "https://" in message
    assert "createSession" not in message and TOKEN not in message and len(message.splitlines()) == 1
    # Without a credential the same URL is asked (a public DID document, a media file on an http CDN).
    s.get(url, auth=False)
    assert [path for path, _ in script.seen] == [url]


@pytest.mark.parametrize(
    "case",
    ["token_in_location", "login_307", "userinfo_location", "bearer_to_another_host"],
)
def test_a_redirect_is_not_followed_where_it_would_carry_a_credential_in_clear(tmp_path, beyond_loopback, case):
    """requests drops the Authorization header on a redirect to another host or scheme, but not a token in the
    Location's query, nor a login's body on a 307/308, and it would follow a Location naming a user and a password:
    the session stops such a redirect (not followed, nothing sent) and follows the others."""
    from archiver.http import Refused

    proxy, script = beyond_loopback
    s, _, _ = session(tmp_path, token_param="key" if case == "token_in_location" else None)
    location = {
        "token_in_location": f"http://platform.invalid/v3/videos?key={TOKEN}",
        "login_307": "http://platform.invalid/xrpc/com.atproto.server.createSession",
        "userinfo_location": f"{proxy.replace('http://', 'http://user:Passw0rd-77@')}/elsewhere",
        "bearer_to_another_host": "http://platform.invalid/elsewhere",
    }[case]
    status = 307 if case == "login_307" else 302
    script.answers[f"{proxy}/moved"] = [(status, {"Location": location}, b"")]
    script.answers["http://platform.invalid/elsewhere"] = [(200, {}, b"{}")]
    if case == "login_307":
        send = lambda: s.post(f"{proxy}/moved", {"password": s.secret()}, auth=False)  # noqa: E731
    else:
        send = lambda: s.get(f"{proxy}/moved", auth=case != "userinfo_location")  # noqa: E731
    if case == "bearer_to_another_host":
        assert send().status == 200
        assert script.seen[-1] == ("http://platform.invalid/elsewhere", None)  # followed, without the token
        return
    with pytest.raises(Refused, match=r"HTTP 30\d redirect to http://.* not followed") as info:
        send()
    assert [path.split("?")[0] for path, _ in script.seen] == [f"{proxy}/moved"] and len(script.posted) <= 1
    message = str(info.value)
    assert TOKEN not in message and "Passw0rd" not in message and "createSession" not in message
