"""The raw-record view of a record larger than it holds (a captured video): the page shows the body's digest and
size from a block read as a stream, /-/raw/body sends the body a part at a time from the WARC file (logged before
the first part leaves), and a byte changed in the stored body is found."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import html
import random
import re
import sqlite3
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from warcio.archiveiterator import ArchiveIterator

import archiver.warc
from archiver import datasette_plugin
from archiver.serve import build_datasette
from archiver.store import Store
from archiver.warc import HttpMessage, SpooledBody, WarcWriter
from archiver.workspace import raw as raw_page

from .workspace_server import free_port, wait_until_serving

VIDEO = random.Random(7).randbytes(5_000_000)  # larger than raw.HOLD: read as a stream
VIDEO_HEAD = len(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 5000000\r\n\r\n")
# JSON too large to be pretty-printed or held, and a body sent gzipped whose stored bytes are over HOLD too
LISTING = b'{"data": [' + b", ".join(b'{"id": "%d", "text": "hello"}' % n for n in range(90_000)) + b"]}"
WORDS = " ".join(f"{n:x}" for n in random.Random(3).choices(range(1 << 40), k=400_000)).encode()
WORDS_GZIP = gzip.compress(WORDS, mtime=0)
assert len(VIDEO) > raw_page.HOLD and len(LISTING) > raw_page.HOLD and len(WORDS_GZIP) > raw_page.HOLD


@dataclass
class Archive:
    database: Path
    warcs: Path
    name: str
    video: int  # offsets of the responses
    listing: int
    words: int


def write_archive(folder: Path) -> Archive:
    """An archive database (empty) and one WARC file the real writer made, holding the three large responses."""
    store = Store.open(folder / "archive.db")
    store.close()
    warcs = folder / "warcs"
    writer = WarcWriter(warcs, "run-large")
    spooled = SpooledBody(warcs)  # as http.py keeps a video it captures: spooled to disk, never in memory
    for start in range(0, len(VIDEO), 1 << 20):
        spooled.write(VIDEO[start : start + (1 << 20)])
    offsets = []
    for path, content_type, body, extra in (
        ("/v.mp4", "video/mp4", spooled, []),
        ("/listing", "application/json", LISTING, []),
        ("/words", "text/plain; charset=utf-8", WORDS_GZIP, [("Content-Encoding", "gzip")]),
    ):
        request = HttpMessage(f"GET {path} HTTP/1.1", [("Host", "cdn.example")], b"")
        length = body.size if isinstance(body, SpooledBody) else len(body)
        headers = [("Content-Type", content_type), *extra, ("Content-Length", str(length))]
        response = HttpMessage("HTTP/1.1 200 OK", headers, body)
        offsets.append(writer.write_exchange(f"https://cdn.example{path}", request, response)[1].offset)
    spooled.close()
    (info,) = writer.close()
    return Archive(folder / "archive.db", warcs, info.name, *offsets)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Archive:
    return write_archive(tmp_path_factory.mktemp("large-record"))


def fetch(archive: Archive, path: str, **params: Any) -> Any:
    """One request to an in-process server of the archive (loopback, no accounts), its access log beside it."""

    async def get() -> Any:
        ds = build_datasette(archive.database, access_log=archive.database.parent / "access-log.db")
        await ds.invoke_startup()
        return await ds.client.get(path, params=params)

    return asyncio.run(get())


def raw_page_of(archive: Archive, offset: int) -> str:
    page = fetch(archive, "/-/raw", warc=archive.name, offset=offset)
    assert page.status_code == 200, page.text[:500]
    return page.text


def body_url(page: str) -> str:
    return html.unescape(re.search(r'id="body-link" href="([^"]+)"', page).group(1))


@pytest.fixture
def block_reads(monkeypatch) -> list[tuple[int, bool]]:
    """Every block read through archiver.warc while the test runs: its length, and whether it was held whole."""
    reads: list[tuple[int, bool]] = []
    read_block = archiver.warc.read_block

    def spy(stream, length, hold):  # noqa: ANN001, ANN202
        block = read_block(stream, length, hold)
        reads.append((length, block.data is not None))
        return block

    monkeypatch.setattr(archiver.warc, "read_block", spy)
    return reads


def test_the_page_of_a_large_video_shows_its_digests_and_size_without_holding_it(archive, block_reads):
    page = raw_page_of(archive, archive.video)
    assert block_reads == [(len(VIDEO) + VIDEO_HEAD, False)]  # read as a stream, not held
    assert re.search(r'id="body-sha256">([0-9a-f]{64})<', page).group(1) == hashlib.sha256(VIDEO).hexdigest()
    assert f'id="body-size">{len(VIDEO)}<' in page
    assert "matches the bytes read" in page and "matches the body below" in page and "DOES NOT MATCH" not in page
    src = html.unescape(re.search(r'<video controls src="([^"]+)"', page).group(1))
    assert src == body_url(page) == f"/-/raw/body?warc={archive.name}&offset={archive.video}"


def test_the_body_route_sends_exactly_the_video(archive, block_reads):
    body = fetch(archive, "/-/raw/body", warc=archive.name, offset=archive.video)
    assert not any(held for _, held in block_reads)  # nor read whole (hold None) for its size first
    assert body.status_code == 200
    assert hashlib.sha256(body.content).hexdigest() == hashlib.sha256(VIDEO).hexdigest()
    assert body.headers["content-length"] == str(len(VIDEO)) and body.headers["content-type"] == "video/mp4"
    assert body.headers["x-content-type-options"] == "nosniff" and "sandbox" in body.headers["content-security-policy"]
    assert "content-disposition" not in body.headers


def test_a_large_body_that_is_no_media_shows_its_start_and_downloads_whole(archive):
    page = raw_page_of(archive, archive.listing)
    assert 'id="body-json"' not in page and 'id="body-cut"' in page and "matches the body below" in page
    shown = html.unescape(re.search(r'id="body-text">(.*?)</pre>', page, re.S).group(1))
    assert len(shown) == raw_page.PRETTY_LIMIT and LISTING.decode().startswith(shown)
    body = fetch(archive, "/-/raw/body", warc=archive.name, offset=archive.listing)
    assert body.content == LISTING and body.headers["content-type"] == "application/octet-stream"
    assert body.headers["content-disposition"] == f'attachment; filename="record-{archive.listing}.bin"'
    # A gzipped body is shown decoded, and downloaded as stored.
    page = raw_page_of(archive, archive.words)
    shown = html.unescape(re.search(r'id="body-text">(.*?)</pre>', page, re.S).group(1))
    assert len(shown) > 1_000_000 and WORDS.decode().startswith(shown)
    assert fetch(archive, "/-/raw/body", warc=archive.name, offset=archive.words).content == WORDS_GZIP


def test_a_byte_changed_in_the_stored_video_is_found(archive, tmp_path):
    tampered = write_archive(tmp_path)
    flip_body_byte(tampered.warcs / tampered.name, tampered.video, at=len(VIDEO) // 2)
    page = raw_page_of(tampered, tampered.video)
    assert "DOES NOT MATCH the bytes read" in page and "DOES NOT MATCH the body" in page
    changed = bytearray(VIDEO)
    changed[len(VIDEO) // 2] ^= 0x01
    assert re.search(r'id="body-sha256">([0-9a-f]{64})<', page).group(1) == hashlib.sha256(changed).hexdigest()
    assert fetch(tampered, "/-/raw/body", warc=tampered.name, offset=tampered.video).content == bytes(changed)
    assert "DOES NOT MATCH" not in raw_page_of(tampered, tampered.listing)  # the other records are untouched


def flip_body_byte(path: Path, offset: int, at: int) -> None:
    """Change one bit of the body byte `at` of the record at `offset`, as an editor of the file could: its gzip
    member decompressed, changed and compressed again (a byte flipped in the compressed bytes would break the
    gzip stream, not the digests)."""
    data = path.read_bytes()
    with open(path, "rb") as fh:
        iterator = ArchiveIterator(fh)
        ends = [iterator.get_record_offset() + iterator.get_record_length() for _ in iterator]
    end = min(e for e in ends if e > offset)
    member = bytearray(zlib.decompress(data[offset:end], zlib.MAX_WBITS | 16))
    start = member.index(b"\r\n\r\n", member.index(b"HTTP/1.1 200 OK")) + 4
    member[start + at] ^= 0x01
    path.write_bytes(data[:offset] + gzip.compress(bytes(member)) + data[end:])


# -- streaming through the gate ----------------------------------------------------------------------------------
def call(archive: Archive, query: str, method: str = "GET", leave: bool = False, log_fails: bool = False) -> list:
    """The ASGI messages the app sends for one request (as uvicorn would get them), each with the number of
    access-log rows written by the time it was sent. `leave`: the client goes away at once."""
    log_file = archive.database.parent / "access-log.db"

    def logged() -> int:
        with sqlite3.connect(log_file) as conn:
            return conn.execute("SELECT count(*) FROM access_log").fetchone()[0]

    async def run() -> list:
        ds = build_datasette(archive.database, access_log=log_file)
        await ds.invoke_startup()
        if log_fails:

            def failing(entry: Any) -> int:
                raise sqlite3.OperationalError("database or disk is full")

            ds.archiver_workspace.access_log.append = failing
        sent: list = []
        asked = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict:
            if asked:
                return asked.pop()
            if not leave:
                await asyncio.Event().wait()  # never: the client stays
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append((message, logged()))

        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": "/-/raw/body",
            "raw_path": b"/-/raw/body",
            "query_string": query.encode(),
            "headers": [(b"host", b"localhost")],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8001),
        }
        await ds.app()(scope, receive, send)
        return sent

    return asyncio.run(run())


def test_the_body_passes_the_gate_in_parts_once_the_request_is_logged(archive):
    query = f"warc={archive.name}&offset={archive.video}"
    before = call(archive, "warc=none.warc.gz&offset=0")[-1][1]  # a 404 first: the log's rows so far
    messages = call(archive, query)
    start, parts = messages[0], messages[1:]
    assert start[0]["status"] == 200 and start[1] == before + 1  # logged before anything left
    assert (b"content-length", str(len(VIDEO)).encode()) in [tuple(h) for h in start[0]["headers"]]
    assert len(parts) > 3 and all(len(m["body"]) <= datasette_plugin.SEND_BYTES + (1 << 16) for m, _ in parts)
    assert b"".join(m["body"] for m, _ in parts) == VIDEO and not parts[-1][0].get("more_body")
    with sqlite3.connect(archive.database.parent / "access-log.db") as conn:
        row = conn.execute("SELECT path, query, status, rows FROM access_log ORDER BY seq DESC LIMIT 1").fetchone()
    assert row == ("/-/raw/body", query, 200, 1)
    head = call(archive, query, method="HEAD")
    assert [m["body"] for m, _ in head[1:]] == [b""]


def test_the_body_stops_when_the_client_leaves_or_the_log_cannot_be_written(archive):
    query = f"warc={archive.name}&offset={archive.video}"
    left = call(archive, query, leave=True)
    assert sum(len(m.get("body", b"")) for m, _ in left) <= datasette_plugin.SEND_BYTES + (1 << 16)
    refused = call(archive, query, log_fails=True)
    assert [m["status"] for m, _ in refused if m["type"] == "http.response.start"] == [503]
    assert b"".join(m.get("body", b"") for m, _ in refused) == b"The access log cannot be written: try again later"


def test_a_record_cut_short_in_its_file_cuts_the_response_short(tmp_path, caplog, monkeypatch):
    """A WARC file torn inside the video (a copy cut off), or a disk error half way: the parts read are sent, then
    the response is left unfinished (the client sees fewer bytes than Content-Length), and the server says so in
    one line. An error before the first part is an error page, logged as such."""
    torn = write_archive(tmp_path)
    path = torn.warcs / torn.name
    path.write_bytes(path.read_bytes()[: torn.video + len(VIDEO) // 2])
    query = f"warc={torn.name}&offset={torn.video}"

    def answered() -> tuple[int, bytes, bool]:
        caplog.clear()
        messages = [m for m, _ in call(torn, query)]
        starts = [m["status"] for m in messages if m["type"] == "http.response.start"]
        parts = [m for m in messages if m["type"] == "http.response.body"]
        return starts[-1], b"".join(m["body"] for m in parts), parts[-1].get("more_body", False)

    status, sent, unfinished = answered()
    assert status == 200 and 0 < len(sent) < len(VIDEO) and VIDEO.startswith(sent) and unfinished
    said = f"/-/raw/body cut short after {len(sent)} of {len(VIDEO)} bytes: the record ends there"
    assert [r.message for r in caplog.records] == [said]

    read = raw_page.RecordBody.read
    reads = {"done": 0, "failing": 2}  # the read that fails: the second (after one part), then the first

    def failing(self, size: int) -> bytes:  # noqa: ANN001
        reads["done"] += 1
        if reads["done"] == reads["failing"]:
            raise OSError(5, "Input/output error")
        return read(self, size)

    monkeypatch.setattr(raw_page.RecordBody, "read", failing)
    status, sent, unfinished = answered()
    assert status == 200 and len(sent) >= datasette_plugin.SEND_BYTES and VIDEO.startswith(sent) and unfinished
    assert [r.message for r in caplog.records] == [f"/-/raw/body cut short after {len(sent)} of 5000000 bytes: OSError"]
    reads.update(done=0, failing=1)
    status, sent, unfinished = answered()
    assert status == 500 and b"Internal error" in sent and not unfinished
    with sqlite3.connect(torn.database.parent / "access-log.db") as conn:
        assert conn.execute("SELECT status FROM access_log ORDER BY seq DESC LIMIT 1").fetchone() == (500,)


# -- a real server -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(archive) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    command = [sys.executable, "-m", "archiver.serve", str(archive.database), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base, process)
    try:
        yield base, process
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "Traceback" not in output and "error" not in output.lower(), output


def test_a_real_server_streams_the_video(archive, server):
    base, _ = server
    page = requests.get(f"{base}/-/raw", params={"warc": archive.name, "offset": archive.video}, timeout=60)
    assert page.status_code == 200 and f'id="body-size">{len(VIDEO)}<' in page.text
    with requests.get(base + body_url(page.text), stream=True, timeout=60) as body:
        assert body.headers["content-length"] == str(len(VIDEO)) and body.headers["content-type"] == "video/mp4"
        digest = hashlib.sha256()
        for chunk in body.iter_content(1 << 16):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(VIDEO).hexdigest()
    # A client that leaves after the first bytes: the server goes on serving.
    with requests.get(base + body_url(page.text), stream=True, timeout=60) as body:
        assert next(body.iter_content(1024))
    assert requests.get(base + body_url(page.text), timeout=60).content == VIDEO
