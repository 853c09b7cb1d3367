"""The bundle's WARC: the original records copied byte for byte, and the media files taken out of them.

Every record the archive wrote is its own gzip member, so copying the member's bytes (offset and length as
stored) keeps the record exactly as captured: same WARC-Record-ID, same digests, same compressed bytes. A
version's response goes with the request it answered (WARC-Concurrent-To), the evidence of each event (the
404 of a lookup, the listing an item was absent from) with its request too, and the warcinfo record of every
source file, which says which run, host and software captured it.

Records are read and copied as streams, a chunk at a time: a video's record is never held whole in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.limitreader import LimitReader

from ..errors import ArchiverError
from ..warc import block_chunks

RECORD_ID = re.compile(r"^<urn:uuid:[0-9a-fA-F-]+>$")
GZIP_MAGIC = b"\x1f\x8b\x08"
CHUNK = 1 << 16  # how much of a record is read, inflated or copied at a time (as shutil copies)


@dataclass(frozen=True)
class SourceRecord:
    record_id: str
    type: str
    source_file: str
    offset: int
    length: int
    concurrent_to: str | None
    target_uri: str | None


def index_warc(path: Path) -> dict[str, SourceRecord]:
    """Every record of a WARC file by record id: one sequential read."""
    found: dict[str, SourceRecord] = {}
    with open(path, "rb") as fh:
        iterator = ArchiveIterator(fh, no_record_parse=True)
        for record in iterator:
            iterator.read_to_end(record)
            headers = record.rec_headers
            record_id = headers.get_header("WARC-Record-ID")
            found[record_id] = SourceRecord(
                record_id,
                headers.get_header("WARC-Type"),
                path.name,
                iterator.get_record_offset(),
                iterator.get_record_length(),
                headers.get_header("WARC-Concurrent-To"),
                headers.get_header("WARC-Target-URI"),
            )
    return found


def evidence_record_ids(evidence: str) -> set[str]:
    """The WARC record ids an event's evidence names, wherever they sit in its JSON."""
    found: set[str] = set()
    stack: list[Any] = [json.loads(evidence)]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and RECORD_ID.match(node):
            found.add(node)
    return found


REQUEST_WINDOW = 256 * 1024  # a request record is small: its member lies within this many bytes before


def _headers_of(fh: BinaryIO, length: int, source_file: str, offset: int) -> SourceRecord | None:
    """The record in the `length` bytes at `fh`'s position (None when they are not exactly one gzip member
    holding one WARC record). Inflated a chunk at a time and let go: a media record may be a whole video."""
    start = fh.tell()
    try:
        if not _one_member(fh, length):
            return None
        fh.seek(start)
        records = list(_iterate(LimitReader(fh, length)))
    except (zlib.error, ValueError):
        return None
    if len(records) != 1:
        return None
    headers = records[0]
    return SourceRecord(
        headers.get_header("WARC-Record-ID"),
        headers.get_header("WARC-Type"),
        source_file,
        offset,
        length,
        headers.get_header("WARC-Concurrent-To"),
        headers.get_header("WARC-Target-URI"),
    )


def _one_member(fh: BinaryIO, length: int) -> bool:
    """Whether the next `length` bytes are one whole gzip member, ending exactly there."""
    inflater = zlib.decompressobj(wbits=31)
    while length > 0:
        data = fh.read(min(CHUNK, length))
        if not data or inflater.eof:
            return False  # cut short, or bytes after the member's end
        length -= len(data)
        while data:  # the inflated bytes are dropped as they come: only where the member ends counts
            inflater.decompress(data, CHUNK)
            data = inflater.unconsumed_tail
        if inflater.unused_data:
            return False
    return inflater.eof


def _iterate(stream: Any) -> Iterator[Any]:
    iterator = ArchiveIterator(stream, no_record_parse=True)
    for record in iterator:
        iterator.read_to_end(record)
        yield record.rec_headers


class SourceIndex:
    """Finds the records a bundle needs in the archive's WARC files, reading as little as it can.

    A row names its record's offset and length, so that record is read alone; the request it answered was
    written just before it, so its gzip member ends where the response's begins and is found by looking
    back for a gzip header and checking the member (whole, ending exactly there, with the expected record
    id). Only records known by id alone (the evidence of a deletion) need a file read through.
    """

    def __init__(self, warc_dir: Path):
        self.warc_dir = warc_dir
        self.by_file: dict[str, dict[str, SourceRecord]] = {}
        self.known: dict[str, SourceRecord] = {}

    def _path(self, name: str) -> Path:
        path = self.warc_dir / name
        if not path.exists():
            raise ArchiverError(f"{path}: WARC file missing from the archive; run `archiver verify`")
        return path

    def at(self, name: str, offset: int, length: int, record_id: str) -> SourceRecord:
        with open(self._path(name), "rb") as fh:
            fh.seek(offset)
            record = _headers_of(fh, length, name, offset)
        if record is None or record.record_id != record_id:
            raise ArchiverError(f"{name}:{offset}: no WARC record {record_id} there; run `archiver verify`")
        self.known[record_id] = record
        return record

    def warcinfo(self, name: str) -> SourceRecord | None:
        with open(self._path(name), "rb") as fh:
            iterator = ArchiveIterator(fh, no_record_parse=True)
            for record in iterator:
                iterator.read_to_end(record)
                headers = record.rec_headers
                if headers.get_header("WARC-Type") != "warcinfo":
                    return None
                found = SourceRecord(
                    headers.get_header("WARC-Record-ID"), "warcinfo", name, 0, iterator.get_record_length(), None, None
                )
                self.known[found.record_id] = found
                return found
        return None

    def request_of(self, response: SourceRecord) -> SourceRecord | None:
        if response.concurrent_to is None:
            return None
        if response.concurrent_to in self.known:
            return self.known[response.concurrent_to]
        start = max(0, response.offset - REQUEST_WINDOW)
        with open(self._path(response.source_file), "rb") as fh:
            fh.seek(start)
            window = fh.read(response.offset - start)
        at = window.rfind(GZIP_MAGIC)
        while at >= 0:
            record = _headers_of(io.BytesIO(window[at:]), len(window) - at, response.source_file, start + at)
            if record is not None:
                if record.record_id == response.concurrent_to:
                    self.known[record.record_id] = record
                    return record
                break  # a whole member ends here but it is another record: look it up by id
            at = window.rfind(GZIP_MAGIC, 0, at)
        return self.find(response.concurrent_to, [response.source_file])

    def file(self, name: str) -> dict[str, SourceRecord]:
        if name not in self.by_file:
            self.by_file[name] = index_warc(self._path(name))
        return self.by_file[name]

    def find(self, record_id: str, files: Iterable[str]) -> SourceRecord | None:
        """A record known by id alone: looked for in `files`, each read through once."""
        if record_id in self.known:
            return self.known[record_id]
        for name in files:
            if record_id in self.file(name):
                return self.by_file[name][record_id]
        return None


def select_records(
    index: SourceIndex, rows: dict[str, list[dict[str, Any]]], files_of_run: Callable[[str], list[str]]
) -> list[SourceRecord]:
    """The records a bundle carries for its rows, each once, in source file and offset order."""
    chosen: dict[str, SourceRecord] = {}

    def add(record: SourceRecord) -> None:
        if record.record_id in chosen:
            return
        chosen[record.record_id] = record
        request = index.request_of(record)
        if request is not None:
            chosen.setdefault(request.record_id, request)

    for row in [*rows.get("item_versions", []), *rows.get("media_files", [])]:
        if row["warc_record_id"] not in chosen:
            add(index.at(row["warc_file"], row["warc_offset"], row["warc_length"], row["warc_record_id"]))
    for event in rows.get("events", []):
        evidence = json.loads(event["evidence"])
        files = [evidence["warc_file"]] if isinstance(evidence, dict) and evidence.get("warc_file") else []
        for record_id in sorted(evidence_record_ids(event["evidence"])):
            if record_id not in chosen:
                record = index.find(record_id, [*files, *files_of_run(event["run_id"])])
                if record is not None:
                    add(record)
    # The warcinfo of every source file: which software, host and run captured these records.
    for name in sorted({r.source_file for r in chosen.values()}):
        info = index.warcinfo(name)
        if info is not None:
            chosen.setdefault(info.record_id, info)
    return sorted(chosen.values(), key=lambda r: (r.source_file, r.offset))


def write_extract(warc_dir: Path, records: list[SourceRecord], out: Path) -> list[dict[str, Any]]:
    """Copy each record's gzip member as stored; returns the catalogue of what was copied from where."""
    catalogue = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "xb") as dest:
        handles: dict[str, Any] = {}
        try:
            for record in records:
                fh = handles.get(record.source_file)
                if fh is None:
                    fh = handles[record.source_file] = open(warc_dir / record.source_file, "rb")  # noqa: SIM115
                offset = dest.tell()
                digest = _copy(fh, record.offset, record.length, dest)
                catalogue.append(
                    {
                        "record_id": record.record_id,
                        "type": record.type,
                        "target_uri": record.target_uri,
                        "source_file": record.source_file,
                        "source_offset": record.offset,
                        "length": record.length,
                        "offset": offset,
                        "sha256": digest,  # of the gzip member as stored
                    }
                )
        finally:
            for fh in handles.values():
                fh.close()
    return catalogue


# The platform names a media file's type; a name ending that a viewer would run (.html, .svg, .js) would open
# the platform's bytes as a page on the investigator's machine. Only these types keep theirs; the rest are .bin
# (media.jsonl still says what the platform called them).
MEDIA_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/avif": ".avif",
    "image/heic": ".heic",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "application/pdf": ".pdf",
}


def media_extension(content_type: str | None) -> str:
    return MEDIA_EXTENSIONS.get((content_type or "").split(";")[0].strip().lower(), ".bin")


def _copy(fh: BinaryIO, offset: int, length: int, dest: BinaryIO) -> str:
    """Copy `length` bytes at `offset` to `dest` a chunk at a time; their sha256."""
    fh.seek(offset)
    digest = hashlib.sha256()
    while length > 0:
        chunk = fh.read(min(CHUNK, length))
        if not chunk:
            raise ArchiverError(f"{getattr(fh, 'name', 'WARC file')}: ends inside a record; run `archiver verify`")
        digest.update(chunk)
        dest.write(chunk)
        length -= len(chunk)
    return digest.hexdigest()


def media_name(row: dict[str, Any]) -> str:
    """A media file's name in the bundle's media/ folder: its sha256 and the ending its type may keep (the
    report, made again by verify-bundle, names it from the row the same way)."""
    return f"{row['sha256']}{media_extension(row['content_type'])}"


def write_media(warc_dir: Path, media_rows: list[dict[str, Any]], media_dir: Path, prefix: str) -> dict[str, str]:
    """Each media file's body out of its WARC response, named by its sha256; url -> payload path."""
    paths: dict[str, str] = {}
    for row in media_rows:
        media_dir.mkdir(parents=True, exist_ok=True)
        name = media_name(row)
        target = media_dir / name
        partial = None if target.exists() else media_dir / f".{name}.partial"  # the same bytes, another row
        digest = _body_sha256(warc_dir / row["warc_file"], row["warc_offset"], partial)
        if digest != row["sha256"]:
            raise ArchiverError(
                f"{row['warc_file']}:{row['warc_offset']}: media {row['url']} sha256 expected {row['sha256']}, "
                f"found {digest}; run `archiver verify`"
            )
        if partial is not None:
            partial.rename(target)
        paths[row["url"]] = f"{prefix}/{name}"
    return paths


def _body_sha256(path: Path, offset: int, target: Path | None) -> str:
    """The sha256 of the HTTP body of the response record at `offset`, written to `target` (when given) as it
    is read."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh, open(target, "xb") if target else contextlib.nullcontext() as out:
        fh.seek(offset)
        for record in ArchiveIterator(fh, no_record_parse=True):
            for chunk, in_body in block_chunks(record.raw_stream):
                if in_body:
                    digest.update(chunk)
                    if out is not None:
                        out.write(chunk)
            return digest.hexdigest()
    raise ArchiverError(f"{path}: no WARC record at offset {offset}; run `archiver verify`")
