"""WARC 1.1 writing and reading: warcinfo, request/response/resource records, sha256 digests, rotation.

warcio frames and gzips the records; the block and payload digests are computed here (sha256, base32 as
warcio writes sha1) and handed to warcio, which then leaves them alone. Every file's own sha256 is computed
while it is written, so closing a file costs no second read.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import itertools
import os
import socket
import tempfile
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from . import __version__
from .errors import StorageWriteError

SOFTWARE = f"archiver/{__version__}"
ACCOUNT_FIELD = "Archiver-Account"  # extension field: which configured account made the exchange


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def warc_digest(digest: bytes) -> str:
    """A sha256 digest as a WARC digest field holds it: `sha256:` and its base32."""
    return "sha256:" + base64.b32encode(digest).decode("ascii")


def digest_matches(header: str | None, digest: bytes) -> bool:
    """Whether a WARC digest field (sha256, base32 as written here, or hex) names this sha256 digest."""
    if not header or not header.startswith("sha256:"):
        return False
    value = header.split(":", 1)[1]
    return value == base64.b32encode(digest).decode("ascii") or value == digest.hex()


def new_record_id() -> str:
    return f"<urn:uuid:{uuid.uuid4()}>"


@dataclass(frozen=True)
class CaptureRef:
    """Where a captured record lives: enough to read it back and to cite it as evidence."""

    warc_file: str
    offset: int
    length: int
    record_id: str
    date: str = ""  # WARC-Date of the record: when it was captured


@dataclass(frozen=True)
class WarcFileInfo:
    name: str
    sha256: str
    size: int
    records: int


class SpooledBody:
    """A body too large to hold in memory (a video), written as it arrives (its secrets already masked) to an
    unnamed temporary file in the WARC folder's file system, with its sha256 and size; the file goes when closed, or
    with the process. An error writing or reading it is a StorageWriteError naming the folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._hash = hashlib.sha256()
        self.size = 0
        with self._storage():
            make_private_folder(folder)
            # O_TMPFILE where the file system has it (never visible), else made 0600 and unlinked at once
            self._file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 (lives as long as the body)

    @contextlib.contextmanager
    def _storage(self) -> Iterator[None]:
        try:
            yield
        except StorageWriteError:
            raise
        except OSError as exc:
            raise StorageWriteError(exc.errno, exc.strerror or str(exc), str(self.folder)) from exc

    def write(self, data: bytes) -> None:
        with self._storage():
            self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    @property
    def digest(self) -> bytes:
        return self._hash.digest()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def chunks(self) -> Iterator[bytes]:
        """The body from its start, READ_CHUNK at a time."""
        with self._storage():
            self._file.flush()
            self._file.seek(0)
            while chunk := self._file.read(READ_CHUNK):
                yield chunk

    def read_all(self) -> bytes:
        return b"".join(self.chunks())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


class _HeadThenFile:
    """A record block as warcio reads it to write: the HTTP head, then a spooled body."""

    def __init__(self, head: bytes, body: SpooledBody):
        self._pieces = itertools.chain([head], body.chunks())
        self._left = b""

    def read(self, size: int = -1) -> bytes:
        while not self._left:
            self._left = next(self._pieces, b"")
            if not self._left:
                return b""
        if size < 0 or size >= len(self._left):
            piece, self._left = self._left, b""
        else:
            piece, self._left = self._left[:size], self._left[size:]
        return piece


@dataclass(frozen=True)
class HttpMessage:
    """One side of an HTTP exchange as it goes into the WARC (already stripped of secrets). The body is bytes, or a
    SpooledBody (a large media file), which is written to the WARC as a stream."""

    start_line: str  # "GET /path HTTP/1.1" or "HTTP/1.1 200 OK"
    headers: list[tuple[str, str]]
    body: bytes | SpooledBody

    def head(self) -> bytes:
        head = self.start_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self.headers) + "\r\n"
        return head.encode("utf-8")


def make_private_folder(folder: Path) -> None:
    """`folder` and each missing folder above it made 0700 (mkdir's mode only takes bits away from the umask's):
    `warc_dir` may be outside the archive folder, which the run makes private, and holds PHI."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):
        each.mkdir(mode=0o700, exist_ok=True)


class WarcWriteError(StorageWriteError):
    """A WARC file (or its folder) could not be written. The file may now end in a torn record, so its writer takes
    no further record (nothing may follow a torn record but the tail `recovery` sets aside), and the run stops."""


class _HashingFile:
    """A write-only file that keeps the sha256 and size of everything written."""

    def __init__(self, path: Path):
        # O_EXCL: never overwrite; 0600: a WARC holds PHI, whatever the umask of the process writing it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "wb")  # lives as long as the WARC is open
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._file.flush()

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> str:
        self.sync()
        self._file.close()
        return self._hash.hexdigest()

    def abandon(self) -> None:
        """Close after a failed write, keeping nothing back: what the buffer still holds is the torn record's."""
        with contextlib.suppress(OSError):
            self._file.close()


# zlib level of each record's gzip member. warcio's own writer uses 9; on JSON, 6 compresses within 1% of it
# at 1.6 times the speed (bench/ingest_bench.py measures a run).
GZIP_LEVEL = 6


class _GzipMembers:
    """The writer's output: every record becomes its own gzip member (as WARC readers expect), at GZIP_LEVEL.

    warcio (gzip off) writes a record's bytes here and calls flush() once at its end, which closes the member.
    """

    def __init__(self, out: _HashingFile):
        self.out = out
        self._compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)

    def write(self, data: bytes) -> int:
        self.out.write(self._compressor.compress(data))
        return len(data)

    def flush(self) -> None:
        self.out.write(self._compressor.flush())
        self.out.flush()
        self._compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)


class WarcWriter:
    """Writes a run's records into rotating gzipped WARC files inside `directory`.

    `on_close(info)` is called for every file closed (by rotation or by `close()`), so the caller can record
    it. `clock` and `record_id` are injectable so that tests get byte-comparable output.
    """

    def __init__(
        self,
        directory: Path,
        run_id: str,
        *,
        max_bytes: int = 1_000_000_000,
        info: dict[str, str] | None = None,
        on_close: Callable[[WarcFileInfo], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        record_id: Callable[[], str] = new_record_id,
        lock: threading.RLock | None = None,
    ):
        self.directory = directory
        # Accounts of different platforms capture in parallel threads; an exchange's two records, a rotation
        # and its on_close callback happen under this lock (the run shares it with the database).
        self.lock = lock or threading.RLock()
        self.run_id = run_id
        self.max_bytes = max_bytes
        self.info = dict(info or {})
        self.on_close = on_close
        self.clock = clock
        self.record_id = record_id
        self._sequence = 0
        self._file: _HashingFile | None = None
        self._name = ""
        self._records = 0
        self._writer: WARCWriter | None = None
        self._failed: WarcWriteError | None = None
        self.closed_files: list[WarcFileInfo] = []

    # -- files ---------------------------------------------------------------------------------------------
    @property
    def current_name(self) -> str:
        with self.lock, self._writing():
            self._ensure_open()
            return self._name

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Every write (lock held). An OSError becomes a WarcWriteError naming the file (the folder, when the file
        could not be made), and every later write raises it again: no account appends after a failed write."""
        if self._failed is not None:
            failed = self._failed
            raise WarcWriteError(failed.errno, failed.strerror, failed.filename)
        try:
            yield
        except OSError as exc:
            where = self.directory / self._name if self._file is not None else self.directory
            self._failed = WarcWriteError(exc.errno, exc.strerror or str(exc), str(where))
            if self._file is not None:
                self._file.abandon()
            self._file = self._writer = None
            raise self._failed from exc

    def _ensure_open(self) -> None:
        if self._file is not None:
            return
        make_private_folder(self.directory)
        self._sequence += 1
        stamp = self.clock().strftime("%Y%m%d%H%M%S")
        self._name = f"archiver-{stamp}-{self.run_id}-{self._sequence:05d}.warc.gz"
        self._file = _HashingFile(self.directory / self._name)
        self._writer = WARCWriter(_GzipMembers(self._file), gzip=False, warc_version="WARC/1.1")
        self._records = 0
        fields = {
            "software": SOFTWARE,
            "format": "WARC File Format 1.1",
            "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
            "hostname": socket.gethostname(),
            "run-id": self.run_id,
            **self.info,
        }
        body = "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode("utf-8")
        self._write(None, "warcinfo", b"", body, "application/warc-fields", {"WARC-Filename": self._name}, False)

    def _write(
        self,
        uri: str | None,
        rec_type: str,
        head: bytes,
        body: bytes | SpooledBody,
        content_type: str,
        extra: dict[str, str],
        payload_digest: bool = True,
    ) -> CaptureRef:
        """One record whose block is `head` then `body` (a SpooledBody is hashed and written as a stream);
        `payload_digest`: the body is an HTTP payload, whose digest the record names too."""
        assert self._file is not None and self._writer is not None
        if isinstance(body, SpooledBody):
            block_hash = hashlib.sha256(head)
            for chunk in body.chunks():
                block_hash.update(chunk)
            block_digest, body_digest, length = block_hash.digest(), body.digest, len(head) + body.size
            stream: BinaryIO | _HeadThenFile = _HeadThenFile(head, body)
        else:
            block = head + body
            block_digest, body_digest, length = hashlib.sha256(block).digest(), b"", len(block)
            stream = io.BytesIO(block)
            if payload_digest:
                body_digest = hashlib.sha256(body).digest()
        headers = {
            "WARC-Type": rec_type,
            "WARC-Record-ID": self.record_id(),
            "WARC-Date": iso(self.clock()),
            "WARC-Block-Digest": warc_digest(block_digest),
        }
        if uri is not None:
            headers["WARC-Target-URI"] = uri
        if payload_digest:
            headers["WARC-Payload-Digest"] = warc_digest(body_digest)
        headers.update(extra)
        # No URI given to warcio: it would parse the HTTP head out of the block and write it re-serialised
        # (trailing spaces of header values dropped), which breaks the digest. The block goes out exactly as hashed.
        record = self._writer.create_warc_record(
            "", rec_type, payload=stream, length=length, warc_content_type=content_type, warc_headers_dict=headers
        )
        offset = self._file.tell()
        self._writer.write_record(record)
        self._records += 1
        return CaptureRef(
            self._name, offset, self._file.tell() - offset, headers["WARC-Record-ID"], headers["WARC-Date"]
        )

    def _rotate_if_full(self) -> None:
        if self._file is not None and self._file.size >= self.max_bytes:
            self._close_current()

    def _close_current(self) -> None:
        if self._file is None:
            return
        size = self._file.size
        digest = self._file.close()
        info = WarcFileInfo(self._name, digest, size, self._records)
        self._file = None
        self._writer = None
        self.closed_files.append(info)
        if self.on_close:
            self.on_close(info)

    # -- records -------------------------------------------------------------------------------------------
    def write_exchange(
        self,
        uri: str,
        request: HttpMessage,
        response: HttpMessage,
        account: str | None = None,
        truncated: str | None = None,
    ) -> tuple[CaptureRef, CaptureRef]:
        """Write a request and its response; returns (request ref, response ref). Data is flushed, not synced.

        `account` goes into an `Archiver-Account` field of both records, so a rebuild can replay each
        account's exchanges through its connector. `truncated` is the response's WARC-Truncated reason (WARC 1.1:
        "length" for a body over the size kept), for an answer whose body was left out.
        """
        with self.lock, self._writing():
            self._ensure_open()
            tag = {ACCOUNT_FIELD: account} if account else {}
            req = self._write(uri, "request", request.head(), request.body, "application/http; msgtype=request", tag)
            cut = {"WARC-Truncated": truncated} if truncated else {}
            resp = self._write(
                uri,
                "response",
                response.head(),
                response.body,
                "application/http; msgtype=response",
                {"WARC-Concurrent-To": req.record_id, **tag, **cut},
            )
            assert self._file is not None
            self._file.flush()
            self._rotate_if_full()
            return req, resp

    def sync(self) -> None:
        """Make everything written so far durable: called before database rows that point to it commit."""
        with self.lock, self._writing():
            if self._file is not None:
                self._file.sync()

    def close(self) -> list[WarcFileInfo]:
        with self.lock, self._writing():
            self._close_current()
            return self.closed_files


# -- reading -------------------------------------------------------------------------------------------------
READ_CHUNK = 1 << 16  # how much of a block is read (or a spooled body copied) at a time, as shutil copies
HEADERS_END = b"\r\n\r\n"
# What is kept of the head of a block read as a stream. An HTTP head is a few KB, but the server of a file decides it:
# kept whole up to what the live session's HTTP client accepts (http.client: 100 fields, lines of 64 KiB), so that a
# replay sees every field the live run saw (a Content-Type after 80 KB of other fields, say).
HEAD_KEPT = 8 * 2**20
# What a reader that needs no body reads whole (faster than as a stream); anything larger (a video) as a stream.
SMALL_BLOCK = 1 << 20


def block_chunks(stream: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """A record block's bytes, a chunk at a time, each with whether it is of the HTTP body (the bytes after
    the first blank line, as `block.partition(b"\\r\\n\\r\\n")[2]` would give them)."""
    carry = b""  # the last bytes of the headers so far: the blank line may straddle two chunks
    in_body = False
    while chunk := stream.read(READ_CHUNK):
        if in_body:
            yield chunk, True
            continue
        window = carry + chunk
        at = window.find(HEADERS_END)
        if at < 0:
            carry = window[-(len(HEADERS_END) - 1) :]
            yield chunk, False
            continue
        end = at + len(HEADERS_END) - len(carry)  # where the body starts in this chunk
        in_body = True
        yield chunk[:end], False
        if end < len(chunk):
            yield chunk[end:], True


class Block:
    """A record's block as read: its head (up to the first blank line: an HTTP status line and header fields, or
    the whole of a block that has none), its body when it was held, and the digests of the block and the body.

    A block larger than its reader asked to hold (a video) was read as a stream: `data` and `body` are None, the
    head is kept up to HEAD_KEPT, and only the digests and the body's size say what the rest was. A held block is
    split and its body hashed only when asked (verify reads every record: most are not asked)."""

    def __init__(self, data: bytes | None, sha256: bytes, streamed: tuple[bytes, str, int] = (b"", "", 0)):
        self.data = data  # the whole block, when held
        self.sha256 = sha256  # of the whole block
        self._streamed = streamed  # a block read as a stream: its head, its body's sha256 (hex) and size

    @functools.cached_property
    def _parts(self) -> tuple[bytes, bytes, bytes]:
        assert self.data is not None
        return self.data.partition(HEADERS_END)

    @property
    def head(self) -> bytes:
        return self._parts[0] if self.data is not None else self._streamed[0]

    @property
    def body(self) -> bytes | None:
        return self._parts[2] if self.data is not None else None

    @functools.cached_property
    def body_sha256(self) -> str:
        """The sha256 (hex) of the body."""
        return hashlib.sha256(self._parts[2]).hexdigest() if self.data is not None else self._streamed[1]

    @property
    def body_size(self) -> int:
        return len(self._parts[2]) if self.data is not None else self._streamed[2]

    def digest_ok(self, header: str | None) -> bool:
        """Whether a WARC-Block-Digest field names this block."""
        return digest_matches(header, self.sha256)


def read_block(stream: BinaryIO, length: int | None, hold: int | None) -> Block:
    """Read a record's block from its raw stream: whole when its `length` (the record's Content-Length) is at most
    `hold` bytes (None: any size), else as a stream in flat memory (see Block)."""
    if hold is None or (length is not None and length <= hold):
        data = stream.read()
        return Block(data, hashlib.sha256(data).digest())
    block_hash, body_hash = hashlib.sha256(), hashlib.sha256()
    head_pieces: list[bytes] = []
    head_size = body_size = 0
    for chunk, in_body in block_chunks(stream):
        block_hash.update(chunk)
        if in_body:
            body_hash.update(chunk)
            body_size += len(chunk)
        elif head_size < HEAD_KEPT:
            head_pieces.append(chunk[: HEAD_KEPT - head_size])
            head_size += len(head_pieces[-1])
    head = b"".join(head_pieces)
    if head.endswith(HEADERS_END):  # a head without a blank line (warcinfo's) is the whole block, as partition has it
        head = head[: -len(HEADERS_END)]
    return Block(None, block_hash.digest(), (head, body_hash.hexdigest(), body_size))


def read_block_at(path: Path, offset: int, hold: int | None) -> tuple[ArcWarcRecord, Block]:
    """The record at an offset and its block (see read_block)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        for record in ArchiveIterator(fh, no_record_parse=True):
            # warcio falls back to the older ARC format when the bytes are no WARC record: an offset inside a
            # record whose next line happens to hold five fields "parses" as one (seen once in the suite)
            if record.format != "warc":
                break
            return record, read_block(record.raw_stream, record.length, hold)
    raise ValueError(f"{path}: no WARC record at offset {offset}")


def parse_http_headers(block: bytes) -> tuple[StatusAndHeaders, bytes]:
    """Split a stored HTTP block into its status line + headers and its body."""
    head, _, body = block.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    headers = [tuple(line.split(":", 1)) for line in lines[1:] if ":" in line]
    protocol, _, status = lines[0].partition(" ")
    return StatusAndHeaders(status, [(k.strip(), v.strip()) for k, v in headers], protocol=protocol), body
