"""WARC writing: sha256 digests that `warcio check` accepts, rotation, recorded file digests."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime
from itertools import count

import pytest
from warcio.archiveiterator import ArchiveIterator

from archiver.warc import HttpMessage, WarcWriter, read_block_at, warc_digest


def fixed_writer(directory, **kw):
    ids = count(1)
    return WarcWriter(
        directory,
        "run1",
        clock=lambda: datetime(2026, 11, 23, 5, 0, tzinfo=UTC),
        record_id=lambda: f"<urn:uuid:00000000-0000-0000-0000-{next(ids):012d}>",
        **kw,
    )


def whole_block(path, offset: int):
    """The record at an offset and its whole block, as written."""
    record, block = read_block_at(path, offset, None)
    return record, block.data


def exchange(n: int, size: int = 10, noise: bool = False):
    req = HttpMessage(f"GET /api/v1/x?n={n} HTTP/1.1", [("Host", "h"), ("Authorization", "Bearer [REDACTED]")], b"")
    resp = HttpMessage(
        "HTTP/1.1 200 OK",
        [("Content-Type", "application/json")],
        b'{"n":%d,"pad":"%s"}' % (n, os.urandom(size).hex().encode() if noise else b"x" * size),
    )
    return f"http://h/api/v1/x?n={n}", req, resp


def test_records_are_sha256_and_pass_warcio_check(tmp_path):
    writer = fixed_writer(tmp_path)
    refs = [writer.write_exchange(*exchange(i)) for i in range(3)]
    (info,) = writer.close()
    path = tmp_path / info.name
    assert info.records == 7  # warcinfo + 3 pairs
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.size == path.stat().st_size
    check = subprocess.run(
        [sys.executable, "-m", "warcio.cli", "check", "-v", str(path)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("digest pass") == 7
    with open(path, "rb") as fh:
        records = list(ArchiveIterator(fh))
    assert [r.rec_type for r in records] == ["warcinfo"] + ["request", "response"] * 3
    # A response record read back at its offset: digests are sha256 of the block and of the body.
    record, block = whole_block(path, refs[1][1].offset)
    assert record.rec_headers.get_header("WARC-Record-ID") == refs[1][1].record_id
    assert record.rec_headers.get_header("WARC-Block-Digest") == warc_digest(hashlib.sha256(block).digest())
    body = block.split(b"\r\n\r\n", 1)[1]
    assert record.rec_headers.get_header("WARC-Payload-Digest") == warc_digest(hashlib.sha256(body).digest())
    assert record.rec_headers.get_header("WARC-Concurrent-To") == refs[1][0].record_id
    assert record.rec_headers.protocol == "WARC/1.1"


def test_bytes_that_read_as_an_older_arc_record_are_no_record(tmp_path):
    """warcio reads a line of five fields as the header of an ARC record (the format before WARC): an offset
    that lands on such bytes, inside a record, must not come back as a record (the raw page answered 200)."""
    writer = fixed_writer(tmp_path)
    writer.write_exchange(*exchange(0))
    (info,) = writer.close()
    path = tmp_path / info.name
    inside = path.stat().st_size
    with open(path, "ab") as fh:  # such bytes, where a caller may point
        fh.write(b"http://x.example/ 10.0.0.1 20261124000000 text/html 5\nhello\n")
    with pytest.raises(ValueError, match="no WARC record at offset"):
        read_block_at(path, inside, None)


def test_output_is_byte_identical_with_fixed_clock_and_ids(tmp_path):
    out = []
    for name in ("a", "b"):
        writer = fixed_writer(tmp_path / name)
        writer.write_exchange(*exchange(1))
        (info,) = writer.close()
        out.append((tmp_path / name / info.name).read_bytes().replace(b"hostname", b""))
    # The hostname is the same machine; everything else is fixed, so the files are equal.
    assert out[0] == out[1]


def test_rotation_at_size_records_every_file(tmp_path):
    closed = []
    writer = fixed_writer(tmp_path, max_bytes=1024 * 1024, on_close=closed.append)
    for i in range(40):
        writer.write_exchange(*exchange(i, size=30_000, noise=True))
    writer.close()
    assert len(closed) >= 2
    assert [c.name for c in closed] == sorted(p.name for p in tmp_path.glob("*.warc.gz"))
    for info in closed:
        path = tmp_path / info.name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == info.sha256
        with open(path, "rb") as fh:
            first = next(iter(ArchiveIterator(fh)))
        assert first.rec_type == "warcinfo"


def test_header_values_are_written_exactly_as_received(tmp_path):
    """Odd but legal header whitespace must survive: the block digest is computed over the bytes as received."""
    writer = fixed_writer(tmp_path)
    request = HttpMessage("GET / HTTP/1.1", [("Host", "h")], b"")
    response = HttpMessage("HTTP/1.1 200 OK", [("Server", "Odd/1.0 "), ("X-Empty", "")], b"{}")
    _, ref = writer.write_exchange("http://h/", request, response)
    (info,) = writer.close()
    record, block = whole_block(tmp_path / info.name, ref.offset)
    assert block == response.head() + response.body
    assert record.rec_headers.get_header("WARC-Block-Digest") == warc_digest(hashlib.sha256(block).digest())
    check = subprocess.run(
        [sys.executable, "-m", "warcio.cli", "check", str(tmp_path / info.name)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout
