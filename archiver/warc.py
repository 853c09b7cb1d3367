"""WARC 1.1 writing and reading: warcinfo, request/response/resource records, sha256 digests, rotation.

warcio frames and gzips the records; the block and payload digests are computed here (sha256, base32 as
warcio writes sha1) and handed to warcio, which then leaves them alone. Every file's own sha256 is computed
while it is written, so closing a file costs no second read.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import socket
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

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


def sha256_digest(data: bytes) -> str:
    """A WARC digest value: `sha256:` and the base32 of the digest."""
    return "sha256:" + base64.b32encode(hashlib.sha256(data).digest()).decode("ascii")


def block_digest_ok(header: str | None, block: bytes) -> bool:
    """Whether a record's WARC-Block-Digest (sha256, base32 as written here, or hex) matches its block."""
    if not header or not header.startswith("sha256:"):
        return False
    value = header.split(":", 1)[1]
    digest = hashlib.sha256(block).digest()
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


@dataclass(frozen=True)
class HttpMessage:
    """One side of an HTTP exchange as it goes into the WARC (already stripped of secrets)."""

    start_line: str  # "GET /path HTTP/1.1" or "HTTP/1.1 200 OK"
    headers: list[tuple[str, str]]
    body: bytes

    def block(self) -> bytes:
        head = self.start_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self.headers) + "\r\n"
        return head.encode("utf-8") + self.body


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
        self._write(None, "warcinfo", body, "application/warc-fields", {"WARC-Filename": self._name})

    def _write(
        self,
        uri: str | None,
        rec_type: str,
        block: bytes,
        content_type: str,
        extra: dict[str, str],
        payload: bytes | None = None,
    ) -> CaptureRef:
        assert self._file is not None and self._writer is not None
        headers = {
            "WARC-Type": rec_type,
            "WARC-Record-ID": self.record_id(),
            "WARC-Date": iso(self.clock()),
            "WARC-Block-Digest": sha256_digest(block),
        }
        if uri is not None:
            headers["WARC-Target-URI"] = uri
        if payload is not None:
            headers["WARC-Payload-Digest"] = sha256_digest(payload)
        headers.update(extra)
        record = self._writer.create_warc_record(
            uri or "",
            rec_type,
            payload=io.BytesIO(block),
            length=len(block),
            warc_content_type=content_type,
            warc_headers_dict=headers,
        )
        if record.http_headers is not None:
            # warcio parsed the HTTP head out of the block and would write it re-serialised (e.g. trailing
            # spaces of header values dropped), which breaks the digest: write the block exactly as hashed.
            record.http_headers = None
            record.raw_stream.seek(0)
            record.length = record.payload_length = len(block)
        if uri is None:
            record.rec_headers.remove_header("WARC-Target-URI")
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
            req = self._write(uri, "request", request.block(), "application/http; msgtype=request", tag, request.body)
            cut = {"WARC-Truncated": truncated} if truncated else {}
            resp = self._write(
                uri,
                "response",
                response.block(),
                "application/http; msgtype=response",
                {"WARC-Concurrent-To": req.record_id, **tag, **cut},
                response.body,
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
def read_raw_block(path: Path, ref_offset: int) -> tuple[ArcWarcRecord, bytes]:
    """The record at an offset and its whole block (HTTP headers included), as written."""
    with open(path, "rb") as fh:
        fh.seek(ref_offset)
        for record in ArchiveIterator(fh, no_record_parse=True):
            # warcio falls back to the older ARC format when the bytes are no WARC record: an offset inside a
            # record whose next line happens to hold five fields "parses" as one (seen once in the suite)
            if record.format != "warc":
                break
            return record, record.raw_stream.read()
    raise ValueError(f"{path}: no WARC record at offset {ref_offset}")


def parse_http_headers(block: bytes) -> tuple[StatusAndHeaders, bytes]:
    """Split a stored HTTP block into its status line + headers and its body."""
    head, _, body = block.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    headers = [tuple(line.split(":", 1)) for line in lines[1:] if ":" in line]
    protocol, _, status = lines[0].partition(" ")
    return StatusAndHeaders(status, [(k.strip(), v.strip()) for k, v in headers], protocol=protocol), body
