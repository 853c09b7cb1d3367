"""Every exchange is bounded: a body that trickles in meets a deadline, a body without end meets a size cap, a stop
ends a read under way, and a body cut short is retried. Real loopback servers that write raw bytes (a trickle, an
endless chunked body, a cut) stand in for a broken proxy or CDN; no test asserts timings, only outcomes within
generous bounds.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import socket
import sqlite3
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from archiver import http
from archiver.cli import app
from archiver.connectors.base import MEDIA_ANSWERS
from archiver.errors import Interrupted, PlatformError
from archiver.http import CapturingSession
from archiver.replay_check import compare_databases
from archiver.warc import WarcWriter

EMPTY_SHA256 = base64.b32encode(hashlib.sha256(b"").digest())  # the digest of a body left out

TOKEN = "tok-bounds-5e4d3c2b1a-distinctive"
MiB = 1 << 20
# What an "endless" body sends at most: far past the caps the tests set, small enough that the code before the
# fix (which read every body whole) failed these tests instead of exhausting the machine's memory.
ENDLESS = 48 * MiB
LIMIT = 30.0  # seconds any one call may take here, whatever the machine's load


class RawServer:
    """A TCP server on 127.0.0.1 whose handler gets each accepted socket and the request's path."""

    def __init__(self, handler: Callable[[RawServer, socket.socket, str], None]):
        self.handler = handler
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.requests = 0
        self.sent = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                while True:  # keep-alive: one request after another on the connection, as a client may send
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        head += chunk
                    self.requests += 1
                    if self.handler(self, conn, head.split(b" ", 2)[1].decode()) is not True:
                        return  # the handler did not frame a whole answer: the connection ends with it
            except OSError:  # the client went away (as it should from a trickle or an endless body)
                pass

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


def one_line_failure(outcome: object, path: str) -> str:
    """The account's failure as its one line: a PlatformError naming the URL's path, without the token."""
    assert isinstance(outcome, PlatformError), outcome
    message = str(outcome)
    assert path in message and TOKEN not in message and "\n" not in message, message
    return message


@pytest.fixture
def raw():
    servers: list[RawServer] = []

    def make(handler: Callable[[RawServer, socket.socket, str], Any]) -> RawServer:
        servers.append(RawServer(handler))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def answer(server: RawServer, conn: socket.socket, body: bytes, content_type: str = "application/json") -> bool:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    server.send(conn, head.encode() + body)
    return True


def trickle(server: RawServer, conn: socket.socket, head: bytes) -> None:
    """Headers at once, then a byte of body five times a second: every socket read succeeds, none ends it."""
    server.send(conn, head)
    while not server.stopped.wait(0.2):
        server.send(conn, b" ")


def endless(server: RawServer, conn: socket.socket, content_type: str = "video/mp4") -> None:
    """A chunked body of 1 MiB chunks that never ends (up to ENDLESS, then the connection just closes)."""
    server.send(conn, f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    frame = b"100000\r\n" + b"x" * MiB + b"\r\n"
    while server.sent < ENDLESS and not server.stopped.is_set():
        server.send(conn, frame)


def session(tmp_path: Path, **kw: Any) -> tuple[CapturingSession, WarcWriter]:
    warc = WarcWriter(tmp_path / "warcs", "run1")
    return CapturingSession(warc, account="acct", token=TOKEN, credential_ref="$TOK", sleep=lambda s: None, **kw), warc


def bounded(call: Callable[[], Any], limit: float = LIMIT) -> Any:
    """The call's result or exception; fails the test if the call is still going after `limit` seconds (the code
    before the fix never returned: its thread is left to end once the server stops)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the test to assert on
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert outcome, f"still going after {limit:.0f}s"
    return outcome[0]


def warc_bytes(tmp_path: Path) -> bytes:
    return b"".join(gzip.decompress(p.read_bytes()) for p in (tmp_path / "warcs").glob("*.warc.gz"))


# -- 1. a body that trickles in -------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["answer", "redirect"])
def test_a_body_that_trickles_in_is_given_up_at_its_deadline_and_retried(tmp_path, raw, where):
    """requests' timeout bounds each socket read, so a byte a second never trips it: the deadline does. A redirect's
    body (which requests itself would read whole before following it) is bounded the same way."""

    def handler(server: RawServer, conn: socket.socket, path: str) -> None:
        status = "302 Found\r\nLocation: /api/elsewhere" if where == "redirect" else "200 OK"
        trickle(
            server,
            conn,
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode(),
        )

    server = raw(handler)
    s, warc = session(tmp_path, timeout=1, retries=1)
    outcome = bounded(lambda: s.get(f"{server.base_url}/api/feed", {"access_token": TOKEN}))
    warc.close()
    message = one_line_failure(outcome, "/api/feed")
    assert "body too slow" in message and "after 2 attempts" in message, message
    assert server.connections == 2  # retried like a timeout
    assert b"WARC-Type: response" not in warc_bytes(tmp_path)  # an incomplete answer is no evidence: none written


def test_a_stop_ends_a_body_that_trickles_in(tmp_path, raw):
    """A stop (Ctrl-C, SIGTERM) must not wait for a read that the deadline allows to go on for minutes."""
    server = raw(lambda server, conn, path: trickle(server, conn, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"))
    stop = threading.Event()
    s, warc = session(tmp_path, timeout=30, stop=stop)  # the deadline alone would allow 90 s and more
    threading.Timer(1.0, stop.set).start()
    outcome = bounded(lambda: s.get(f"{server.base_url}/api/feed"))
    assert isinstance(outcome, Interrupted), outcome
    assert server.connections == 1


# -- 2. a body without end ------------------------------------------------------------------------------------
def serve_media(kind: str) -> Callable[[RawServer, socket.socket, str], bool | None]:
    def handler(server: RawServer, conn: socket.socket, path: str) -> bool | None:
        if path == "/small.png":
            return answer(server, conn, b"\x89PNG small", "image/png")
        if kind == "endless":
            endless(server, conn)
        else:  # declared far over the cap: one MiB is sent (the code before the fix waited for the rest)
            server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 10737418240\r\n\r\n")
            server.send(conn, b"x" * MiB)
        return None

    return handler


@pytest.mark.parametrize("kind", ["endless", "declared"])
def test_a_media_body_over_the_cap_is_left_unread_and_memory_stays_flat(tmp_path, raw, monkeypatch, kind):
    monkeypatch.setattr(http, "MEDIA_MAX_BYTES", 2 * MiB, raising=False)
    server = raw(serve_media(kind))
    s, warc = session(tmp_path)
    tracemalloc.start()
    try:
        exchange = bounded(lambda: s.get(f"{server.base_url}/media/tour.mp4", auth=False, ok=MEDIA_ANSWERS))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not isinstance(exchange, BaseException), exchange
    # Not 200, so a connector takes its "kept the item without it" path; its notice prints the status as this.
    assert exchange.status != 200 and exchange.body == b""
    assert str(exchange.status) == "200 with a body over the 2 MiB cap for a media file (left unread, not archived)"
    assert exchange.url == f"{server.base_url}/media/tour.mp4"
    assert peak < 16 * MiB, f"{peak / MiB:.0f} MiB held for a 2 MiB cap"
    assert server.sent < ENDLESS / 2  # the read stopped at the cap, not at the server's end
    # The session goes on: the next file arrives whole and is recorded; of the one left unread, only its answer's
    # headers are (WARC-Truncated: length), so the WARC says it was there and not kept.
    small = bounded(lambda: s.get(f"{server.base_url}/small.png", auth=False, ok=MEDIA_ANSWERS))
    warc.close()
    assert small.status == 200 and small.body == b"\x89PNG small"
    records = [r for r in warc_bytes(tmp_path).split(b"WARC/1.1\r\n") if b"WARC-Type: response" in r]
    assert len(records) == 2 and b"/media/tour.mp4" in records[0] and b"WARC-Truncated: length" in records[0]
    assert b"WARC-Truncated" not in records[1] and records[1].endswith(b"\x89PNG small\r\n\r\n")


@pytest.mark.parametrize("kind", ["endless", "declared"])
def test_an_api_answer_over_its_cap_fails_naming_the_url_and_the_cap(tmp_path, raw, monkeypatch, kind):
    """An API answer has no "without it" path: over the cap it fails the account (once: it would be over again)."""
    monkeypatch.setattr(http, "API_MAX_BYTES", 2 * MiB, raising=False)

    def handler(server: RawServer, conn: socket.socket, path: str) -> None:
        if kind == "endless":
            endless(server, conn, "application/json")
        else:
            server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3145728\r\n\r\n")
            server.send(conn, b" " * 3 * MiB)

    server = raw(handler)
    s, warc = session(tmp_path, retries=2)
    outcome = bounded(lambda: s.get(f"{server.base_url}/api/feed", {"access_token": TOKEN}))
    message = one_line_failure(outcome, "/api/feed")
    assert "over the 2 MiB cap for an API answer" in message, message
    assert server.connections == 1


def test_an_endless_media_file_is_a_notice_and_the_account_goes_on(tmp_path, raw, monkeypatch):
    """The whole run: the post is kept without the file, the notice names the file's host and record (never its
    path: http.media_label) and the cap, the run succeeds, and nothing of the unread body is in the WARC (the next
    run asks for the file again)."""
    from tests.test_mastodon_run import Clinic

    monkeypatch.setattr(http, "MEDIA_MAX_BYTES", 2 * MiB, raising=False)
    media = raw(serve_media("endless"))
    clinic = Clinic(tmp_path, monkeypatch)
    try:
        attachment = clinic.posts[0]["media_attachments"][0]
        attachment["url"] = f"{media.base_url}/media/tour.mp4"
        code, output = bounded(clinic.run, 120)
        assert code == 0, output
        host = media.base_url.removeprefix("http://")
        assert re.search(
            rf"media file from {re.escape(host)} \(WARC record <urn:uuid:[0-9a-f-]+>\) answered HTTP 200 with a body "
            "over the 2 MiB cap",
            output,
        ), output
        assert "tour.mp4" not in output
        assert clinic.counts()["media_files"] == 0
        conn = clinic.db()
        kept = conn.execute("SELECT count(*) FROM items WHERE item_key = ?", (clinic.key(clinic.posts[0]),)).fetchone()
        status = conn.execute("SELECT status FROM account_runs").fetchall()
        conn.close()
        assert kept[0] == 1 and [tuple(r) for r in status] == [("ok",)]
        # The WARC says the file was there and not kept: its answer's headers, no body, WARC-Truncated: length.
        warcs = b"".join(gzip.decompress(p.read_bytes()) for p in (tmp_path / "arch" / "warcs").glob("*.warc.gz"))
        target = f"WARC-Target-URI: {media.base_url}/media/tour.mp4\r\n".encode()
        [response] = [r for r in warcs.split(b"WARC/1.1\r\n") if target in r and b"WARC-Type: response" in r]
        assert b"WARC-Truncated: length" in response and b"WARC-Payload-Digest: sha256:" + EMPTY_SHA256 in response
        # A replay answers the connector as the live session did: the rebuilt rows are the live ones.
        rebuilt = CliRunner().invoke(
            app, ["rebuild", "--config", str(clinic.config()), "--out", str(tmp_path / "r.db")]
        )
        assert rebuilt.exit_code == 0, rebuilt.output
        assert list(compare_databases(clinic.db(), sqlite3.connect(tmp_path / "r.db"))) == []
    finally:
        clinic.stop()


# -- 3. a body cut short --------------------------------------------------------------------------------------
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_cut_short_is_retried(tmp_path, raw, framing):
    """A connection closed before the body is whole (a proxy's blip) raises ChunkedEncodingError, which is neither a
    Timeout nor a ConnectionError: it is retried like them, and only the whole answer is recorded."""

    def handler(server: RawServer, conn: socket.socket, path: str) -> bool | None:
        if server.connections > 1:
            return answer(server, conn, b'{"data":"whole"}')
        if framing == "chunked":
            server.send(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"x" * 100)
        else:
            server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        return None

    server = raw(handler)
    s, warc = session(tmp_path)
    exchange = bounded(lambda: s.get(f"{server.base_url}/api/feed"))
    warc.close()
    assert not isinstance(exchange, BaseException), exchange
    assert exchange.status == 200 and exchange.json() == {"data": "whole"} and server.connections == 2
    records = warc_bytes(tmp_path)
    assert records.count(b"WARC-Type: response") == 1 and b'{"data":"whole"}' in records


def test_a_body_that_cannot_be_decoded_is_retried(tmp_path, raw):
    def handler(server: RawServer, conn: socket.socket, path: str) -> bool:
        if server.requests > 1:
            return answer(server, conn, b'{"data":"whole"}')
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 12\r\n\r\nnot gzip....")
        return True

    server = raw(handler)
    s, warc = session(tmp_path)
    exchange = bounded(lambda: s.get(f"{server.base_url}/api/feed"))
    assert not isinstance(exchange, BaseException), exchange
    assert exchange.json() == {"data": "whole"} and server.requests == 2


def test_a_body_cut_on_every_attempt_fails_with_one_line_naming_the_url(tmp_path, raw):
    def handler(server: RawServer, conn: socket.socket, path: str) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)

    server = raw(handler)
    s, _ = session(tmp_path, retries=1)
    outcome = bounded(lambda: s.get(f"{server.base_url}/media/ward.png", {"access_token": TOKEN}))
    message = one_line_failure(outcome, "/media/ward.png")
    assert "ChunkedEncodingError after 2 attempts" in message, message
    assert server.connections == 2


# -- what stays as it was -------------------------------------------------------------------------------------
def test_chunked_answers_and_redirects_are_recorded_as_before(tmp_path, raw):
    """The read in pieces changes nothing in the records: a chunked body is stored de-chunked with the framing
    named in X-Archiver-Orig-Transfer-Encoding, and each hop of a redirect is an exchange of its own."""

    def handler(server: RawServer, conn: socket.socket, path: str) -> bool:
        if path == "/hop":
            server.send(conn, b"HTTP/1.1 302 Found\r\nLocation: /api/feed\r\nContent-Length: 5\r\n\r\nmoved")
        else:
            server.send(
                conn,
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                b'6\r\n{"a":1\r\n1\r\n}\r\n0\r\n\r\n',
            )
        return True

    server = raw(handler)
    s, warc = session(tmp_path)
    exchange = s.get(f"{server.base_url}/hop")
    warc.close()
    assert exchange.json() == {"a": 1}
    records = warc_bytes(tmp_path)
    assert b"HTTP/1.1 302 Found\r\nLocation: /api/feed\r\nContent-Length: 5\r\n\r\nmoved" in records
    assert (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Archiver-Orig-Transfer-Encoding: chunked\r\n\r\n"
        b'{"a":1}' in records
    )


def test_only_media_downloads_get_the_media_cap_and_the_notice():
    """http.py knows a media download by what it accepts (connectors/base.py MEDIA_ANSWERS): an API call that
    accepts some errors (Graph's error envelopes, a DID document that may be gone) keeps the API cap, and an
    answer over it fails the account rather than passing for a refused file."""
    from archiver.connectors.graph import ERROR_STATUSES

    is_media = http.is_file_download
    assert is_media(MEDIA_ANSWERS) and is_media((*MEDIA_ANSWERS, 400))  # Bluesky's blobs add 400
    assert not is_media((200, *ERROR_STATUSES)) and not is_media((200, 404, 410)) and not is_media((200,))
