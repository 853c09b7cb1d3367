"""The raw captured response, read from its WARC record: WARC headers, status line, HTTP headers, body.

The body is shown exactly as stored (pretty-printed too when it is JSON) next to the record's digests
recomputed from the bytes read, so a reader sees that what is on screen is what was captured. A record is
found by offset (item versions and media files store it) or by record id (an event's evidence names only
the id: the file is then scanned).
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from ..items import escape_lone_surrogates
from ..warc import block_digest_ok, parse_http_headers, read_raw_block

WARC_NAME = re.compile(r"^[A-Za-z0-9._-]+\.warc(\.gz)?$")
INLINE_TYPES = ("image/", "video/", "audio/")  # media shown inline; anything else is served as bytes only
PRETTY_LIMIT = 2_000_000


class RecordNotFound(LookupError):
    pass


@dataclass
class RawRecord:
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
    body: bytes

    @property
    def content_type(self) -> str:
        for name, value in self.http_headers:
            if name.lower() == "content-type":
                return value.split(";")[0].strip().lower()
        return ""

    @property
    def inline_media(self) -> bool:
        return self.content_type.startswith(INLINE_TYPES)

    def decoded_body(self) -> bytes:
        encoding = next((v for k, v in self.http_headers if k.lower() == "content-encoding"), "").lower()
        if encoding == "gzip":
            try:
                return gzip.decompress(self.body)
            except OSError:
                return self.body
        return self.body

    def pretty(self) -> str | None:
        """The body as indented JSON, or None when it is not JSON."""
        body = self.decoded_body()
        if len(body) > PRETTY_LIMIT or self.inline_media:
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


def read_record(warc_dir: Path, name: str, *, offset: int | None = None, record_id: str | None = None) -> RawRecord:
    path = warc_path(warc_dir, name)
    if offset is None:
        if not record_id:
            raise RecordNotFound("name a record by offset or record id")
        # Evidence may name the file of the lookup for a record the run wrote to another of its files.
        for candidate in [path, *same_run_files(path)]:
            try:
                offset = find_offset(candidate, record_id)
            except RecordNotFound:
                continue
            path, name = candidate, candidate.name
            break
        else:
            raise RecordNotFound(f"no record {record_id} in {name} or the other WARC files of its run")
    try:
        record, block = read_raw_block(path, offset)
    except (ValueError, OSError, EOFError, zlib.error, ArchiveLoadFailed) as exc:  # an offset inside a record
        raise RecordNotFound(f"no WARC record at offset {offset} of {name}") from exc
    headers = record.rec_headers
    found_id = headers.get_header("WARC-Record-ID") or ""
    if record_id and found_id != record_id:
        raise RecordNotFound(f"the record at offset {offset} of {name} is {found_id}, not {record_id}")
    rec_type = headers.get_header("WARC-Type") or ""
    status_line, http_headers, body = "", [], block
    if (headers.get_header("Content-Type") or "").startswith("application/http"):
        parsed, body = parse_http_headers(block)
        status_line = f"{parsed.protocol} {parsed.statusline}".strip()
        http_headers = list(parsed.headers)
    block_digest = headers.get_header("WARC-Block-Digest") or ""
    payload_digest = headers.get_header("WARC-Payload-Digest") or ""
    return RawRecord(
        warc_file=name,
        offset=offset,
        warc_headers=list(headers.headers),
        record_type=rec_type,
        record_id=found_id,
        block_digest=block_digest,
        payload_digest=payload_digest,
        block_digest_ok=block_digest_ok(block_digest, block),
        payload_digest_ok=block_digest_ok(payload_digest, body) if payload_digest else None,
        status_line=status_line,
        http_headers=http_headers,
        body=body,
    )
