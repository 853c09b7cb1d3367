"""The raw captured response, read from its WARC record: WARC headers, status line, HTTP headers, body.

The body is shown exactly as stored (pretty-printed too when it is JSON) next to the record's digests
recomputed from the bytes read, so a reader sees that what is on screen is what was captured. A record is
found by offset (item versions and media files store it) or by record id (an event's evidence names only
the id: the file is then scanned).

A record larger than HOLD (a video) is never held in memory: its block is read as a stream for the digests and
the body's size, the page shows the first PRETTY_LIMIT bytes of a body that is not media, and /-/raw/body sends
the body a part at a time from the file (RecordBody).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ArcWarcRecord

from ..items import escape_lone_surrogates
from ..warc import HEAD_KEPT, block_chunks, digest_matches, parse_http_headers, read_block_at

WARC_NAME = re.compile(r"^[A-Za-z0-9._-]+\.warc(\.gz)?$")
INLINE_TYPES = ("image/", "video/", "audio/")  # media shown inline; anything else is served as bytes only
PRETTY_LIMIT = 2_000_000
# Blocks up to this size (a body of PRETTY_LIMIT and a head of 64 KiB) are read whole: every body that can be shown
# pretty-printed still is, from the bytes held, as before. A larger block (a video) is read as a stream in flat
# memory, its head kept whole (warc.HEAD_KEPT). Not SMALL_BLOCK (1 MiB): a JSON answer of 1-2 MB would lose its
# pretty-printed view; a request holds at most a few times this.
HOLD = PRETTY_LIMIT + 2**16
# What reading a record can fail with when the offset is not a record's start, or the file is damaged there.
READ_ERRORS = (ValueError, OSError, EOFError, zlib.error, ArchiveLoadFailed)


class RecordNotFound(LookupError):
    pass


class _HttpHead:
    """What a record's HTTP header fields say about its body."""

    http_headers: list[tuple[str, str]]

    def _field(self, name: str) -> str:
        return next((v for k, v in self.http_headers if k.lower() == name), "")

    @property
    def content_type(self) -> str:
        return self._field("content-type").split(";")[0].strip().lower()

    @property
    def inline_media(self) -> bool:
        return self.content_type.startswith(INLINE_TYPES)

    @property
    def gzipped(self) -> bool:
        return self._field("content-encoding").lower() == "gzip"


@dataclass
class RawRecord(_HttpHead):
    warc_file: str
    offset: int
    warc_headers: list[tuple[str, str]]
    record_type: str
    record_id: str
    block_digest: str
    payload_digest: str
    block_digest_ok: bool
    payload_digest_ok: bool | None
    status_line: str
    http_headers: list[tuple[str, str]]
    body: bytes | None  # None: not held (the block is larger than HOLD); body_sha256 and body_size say what it is
    body_sha256: str  # hex
    body_size: int
    preview: bytes = b""  # of a body not held and not media: its first PRETTY_LIMIT bytes, gzip undone

    @property
    def body_held(self) -> bool:
        return self.body is not None

    def decoded_body(self) -> bytes:
        """The body as the platform meant it (gzip undone); of a body not held, its start only (`preview`)."""
        if self.body is None:
            return self.preview
        if self.gzipped:
            try:
                return gzip.decompress(self.body)
            except OSError:
                return self.body
        return self.body

    def pretty(self) -> str | None:
        """The body as indented JSON, or None when it is not JSON (or not held: only its start was read)."""
        if self.body is None or self.inline_media:
            return None
        body = self.decoded_body()
        if len(body) > PRETTY_LIMIT:
            return None
        try:
            # a lone surrogate (half an emoji) shown as the escape it came as: no page can be UTF-8 with it
            return escape_lone_surrogates(json.dumps(json.loads(body), indent=2, ensure_ascii=False))
        except ValueError:
            return None

    def text(self) -> str | None:
        if self.inline_media:
            return None
        return self.decoded_body()[:PRETTY_LIMIT].decode("utf-8", "replace")


def warc_path(warc_dir: Path, name: str) -> Path:
    """The WARC file of that name in the archive's WARC directory; nothing outside it can be named."""
    if not WARC_NAME.match(name or ""):
        raise RecordNotFound(f"{name!r} is not a WARC file name")
    path = Path(warc_dir) / name
    if not path.is_file():
        raise RecordNotFound(f"WARC file {name} is not in the archive")
    return path


def find_offset(path: Path, record_id: str) -> int:
    with open(path, "rb") as fh:
        iterator = ArchiveIterator(fh, no_record_parse=True)
        for record in iterator:
            if record.rec_headers.get_header("WARC-Record-ID") == record_id:
                return iterator.get_record_offset()
    raise RecordNotFound(f"no record {record_id} in {path.name}")


def same_run_files(path: Path) -> list[Path]:
    """The other WARC files the same run wrote (a run rotates files: NAME-00001, NAME-00002, ...)."""
    stem, _, number = path.name.split(".warc")[0].rpartition("-")
    if not stem or not number.isdigit():
        return []
    return sorted(p for p in path.parent.glob(f"{stem}-*.warc*") if p != path and WARC_NAME.match(p.name))


def locate(warc_dir: Path, name: str, offset: int | None, record_id: str | None) -> tuple[Path, int]:
    """The WARC file and offset of the record named by offset, or by record id (searched for in the file, then
    in the other files of its run)."""
    path = warc_path(warc_dir, name)
    if offset is not None:
        return path, offset
    if not record_id:
        raise RecordNotFound("name a record by offset or record id")
    # Evidence may name the file of the lookup for a record the run wrote to another of its files.
    for candidate in [path, *same_run_files(path)]:
        try:
            return candidate, find_offset(candidate, record_id)
        except RecordNotFound:
            continue
    raise RecordNotFound(f"no record {record_id} in {name} or the other WARC files of its run")


@contextlib.contextmanager
def _reading(name: str, offset: int) -> Iterator[None]:
    try:
        yield
    except READ_ERRORS as exc:  # an offset inside a record
        raise RecordNotFound(f"no WARC record at offset {offset} of {name}") from exc


def _checked_id(record: ArcWarcRecord, record_id: str | None, name: str, offset: int) -> str:
    found_id = record.rec_headers.get_header("WARC-Record-ID") or ""
    if record_id and found_id != record_id:
        raise RecordNotFound(f"the record at offset {offset} of {name} is {found_id}, not {record_id}")
    return found_id


def _is_http(record: ArcWarcRecord) -> bool:
    return (record.rec_headers.get_header("Content-Type") or "").startswith("application/http")


def read_record(warc_dir: Path, name: str, *, offset: int | None = None, record_id: str | None = None) -> RawRecord:
    """The record and its digests checked against the bytes read; its body held only up to HOLD (see RawRecord)."""
    path, offset = locate(warc_dir, name, offset, record_id)
    with _reading(path.name, offset):
        record, block = read_block_at(path, offset, HOLD)
    found_id = _checked_id(record, record_id, path.name, offset)
    headers = record.rec_headers
    status_line, http_headers = "", []
    if _is_http(record):
        parsed, _ = parse_http_headers(block.head + b"\r\n\r\n")
        status_line = f"{parsed.protocol} {parsed.statusline}".strip()
        http_headers = list(parsed.headers)
        body, body_sha256, body_size = block.body, block.body_sha256, block.body_size
    else:  # the whole block is the body
        body, body_sha256 = block.data, block.sha256.hex()
        body_size = len(block.data) if block.data is not None else record.length or 0
    block_digest = headers.get_header("WARC-Block-Digest") or ""
    payload_digest = headers.get_header("WARC-Payload-Digest") or ""
    raw = RawRecord(
        warc_file=path.name,
        offset=offset,
        warc_headers=list(headers.headers),
        record_type=headers.get_header("WARC-Type") or "",
        record_id=found_id,
        block_digest=block_digest,
        payload_digest=payload_digest,
        block_digest_ok=block.digest_ok(block_digest),
        payload_digest_ok=digest_matches(payload_digest, bytes.fromhex(body_sha256)) if payload_digest else None,
        status_line=status_line,
        http_headers=http_headers,
        body=body,
        body_sha256=body_sha256,
        body_size=body_size,
    )
    if body is None and not raw.inline_media:
        raw.preview = _decoded_start(path, offset, raw.gzipped)
    return raw


def _decoded_start(path: Path, offset: int, gzipped: bool) -> bytes:
    """The first PRETTY_LIMIT bytes of a record's body (gzip undone, as far as it goes: else as stored)."""
    with RecordBody(path, offset, None) as body:
        start = body.read(PRETTY_LIMIT)
    if not gzipped:
        return start
    try:
        return zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(start, PRETTY_LIMIT)
    except zlib.error:
        return start


def _record_at(fh: BinaryIO, offset: int) -> ArcWarcRecord:
    """The record at an offset of an open WARC file (as read_block_at finds it), its block left to read."""
    fh.seek(offset)
    for record in ArchiveIterator(fh, no_record_parse=True):
        if record.format != "warc":  # warcio's fallback to ARC on bytes that are no WARC record
            break
        return record
    raise ValueError(f"no WARC record at offset {offset}")


class RecordBody(_HttpHead):
    """A record's body read from its WARC file a part at a time, never held whole (for /-/raw/body): made, it has
    found the record (RecordNotFound as read_record has it) and read its HTTP head; `size` is the body's length
    (the record's length less its head). Close it when done (it is a context manager). Reads after the head
    may raise any of READ_ERRORS (a file damaged further in)."""

    def __init__(self, path: Path, offset: int, record_id: str | None):
        self._file = open(path, "rb")  # noqa: SIM115 (open while the body is sent)
        self.offset = offset
        try:
            with _reading(path.name, offset):
                record = _record_at(self._file, offset)
                _checked_id(record, record_id, path.name, offset)
                self._chunks = block_chunks(record.raw_stream)
                self._http = _is_http(record)
                if record.length is None:
                    raise ValueError("a WARC record without Content-Length")
                self.http_headers, self._next, head_size = self._head()
                self.size = record.length - head_size
            self._rest = (chunk for chunk, in_body in self._chunks if in_body or not self._http)
        except BaseException:
            self._file.close()
            raise

    def _head(self) -> tuple[list[tuple[str, str]], bytes, int]:
        """The HTTP header fields, the body's first chunk, and the length of the head (blank line included)."""
        if not self._http:
            return [], b"", 0
        kept, size = b"", 0
        for chunk, in_body in self._chunks:
            if in_body:
                return list(parse_http_headers(kept)[0].headers), chunk, size
            kept += chunk[: HEAD_KEPT - len(kept)]
            size += len(chunk)
        return list(parse_http_headers(kept)[0].headers), b"", size  # no blank line: no body

    def read(self, size: int) -> bytes:
        """The next `size` bytes of the body or a little more (up to a READ_CHUNK), fewer only at its end."""
        parts, got = [self._next], len(self._next)
        self._next = b""
        while got < size and (chunk := next(self._rest, b"")):
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordBody:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_body(warc_dir: Path, name: str, *, offset: int | None = None, record_id: str | None = None) -> RecordBody:
    """The body of the record named (as read_record names it), to read a part at a time."""
    path, offset = locate(warc_dir, name, offset, record_id)
    return RecordBody(path, offset, record_id)
