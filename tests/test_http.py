"""The capturing session: secrets stripped before the WARC, bounded retries, rate limits honoured."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from archiver.errors import AuthError, PlatformError, RateLimitedError
from archiver.http import CapturingSession, HeaderRateLimit, redact_url
from archiver.warc import WarcWriter, read_raw_block

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
    record, block = read_raw_block(tmp_path / "warcs" / exchange.ref.warc_file, exchange.ref.offset)
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
    s.get("http://platform.invalid/api/v1/ping")
    s.get("http://platform.invalid/api/v1/ping")
    warc.close()
    assert [path for path, _ in script.seen] == ["http://platform.invalid/api/v1/ping"] * 2


def test_redact_url_keeps_the_rest_of_the_query_as_it_was_sent():
    sent = "https://h/rest/posts?author=urn%3Ali%3Aorganization%3A1001&q=author&key=k&part=snippet%2Creplies"
    assert redact_url(sent) == (
        "https://h/rest/posts?author=urn%3Ali%3Aorganization%3A1001&q=author&key=[REDACTED]&part=snippet%2Creplies"
    )
    assert redact_url("https://h/p?Access%5FToken=abc&x") == "https://h/p?Access%5FToken=[REDACTED]&x"
