"""The bundle's WARC: the original records copied byte for byte, and the media files taken out of them.

Every record the archive wrote is its own gzip member, so copying the member's bytes (offset and length as
stored) keeps the record exactly as captured: same WARC-Record-ID, same digests, same compressed bytes. A
version's response goes with the request it answered (WARC-Concurrent-To), the evidence of each event (the
404 of a lookup, the listing an item was absent from) with its request too, and the warcinfo record of every
source file, which says which run, host and software captured it.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warcio.archiveiterator import ArchiveIterator

from ..errors import ArchiverError
from ..warc import read_raw_block

RECORD_ID = re.compile(r"^<urn:uuid:[0-9a-fA-F-]+>$")


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


class SourceIndex:
    """Record ids of the archive's WARC files, indexed file by file as they are needed."""

    def __init__(self, warc_dir: Path, files_of_run: Callable[[str], list[str]]):
        self.warc_dir = warc_dir
        self.files_of_run = files_of_run
        self.by_file: dict[str, dict[str, SourceRecord]] = {}
        self.by_id: dict[str, SourceRecord] = {}

    def file(self, name: str) -> dict[str, SourceRecord]:
        if name not in self.by_file:
            path = self.warc_dir / name
            if not path.exists():
                raise ArchiverError(f"{path}: WARC file missing from the archive; run `archiver verify`")
            self.by_file[name] = index_warc(path)
            self.by_id.update(self.by_file[name])
        return self.by_file[name]

    def find(self, record_id: str, files: Iterable[str]) -> SourceRecord | None:
        for name in files:
            if record_id in self.file(name):
                return self.by_file[name][record_id]
        return self.by_id.get(record_id)


@dataclass
class ExtractResult:
    records: list[dict[str, Any]]  # catalogue: record id, type, source file and offset, offset in the extract
    media_paths: dict[str, str]  # media url -> path inside the payload


def select_records(
    index: SourceIndex, rows: dict[str, list[dict[str, Any]]], run_of_event: Callable[[dict[str, Any]], list[str]]
) -> list[SourceRecord]:
    """The records a bundle carries for its rows, each once, in source file and offset order."""
    chosen: dict[str, SourceRecord] = {}

    def add(record: SourceRecord) -> None:
        if record.record_id in chosen:
            return
        chosen[record.record_id] = record
        if record.concurrent_to:  # a response's request
            pair = index.find(record.concurrent_to, [record.source_file])
            if pair is not None:
                chosen.setdefault(pair.record_id, pair)

    for row in [*rows.get("item_versions", []), *rows.get("media_files", [])]:
        record = index.file(row["warc_file"]).get(row["warc_record_id"])
        if record is None:
            raise ArchiverError(f"{row['warc_file']}: record {row['warc_record_id']} is missing; run `archiver verify`")
        add(record)
    for event in rows.get("events", []):
        evidence = json.loads(event["evidence"])
        files = [evidence["warc_file"]] if isinstance(evidence, dict) and evidence.get("warc_file") else []
        for record_id in sorted(evidence_record_ids(event["evidence"])):
            record = index.find(record_id, [*files, *run_of_event(event)])
            if record is not None:
                add(record)
    # The warcinfo of every source file: which software, host and run captured these records.
    for name in sorted({r.source_file for r in chosen.values()}):
        for record in index.file(name).values():
            if record.type == "warcinfo":
                chosen.setdefault(record.record_id, record)
                break
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
                fh.seek(record.offset)
                member = fh.read(record.length)
                catalogue.append(
                    {
                        "record_id": record.record_id,
                        "type": record.type,
                        "target_uri": record.target_uri,
                        "source_file": record.source_file,
                        "source_offset": record.offset,
                        "length": record.length,
                        "offset": dest.tell(),
                        "sha256": hashlib.sha256(member).hexdigest(),  # of the gzip member as stored
                    }
                )
                dest.write(member)
        finally:
            for fh in handles.values():
                fh.close()
    return catalogue


def write_media(warc_dir: Path, media_rows: list[dict[str, Any]], media_dir: Path, prefix: str) -> dict[str, str]:
    """Each media file's body out of its WARC response, named by its sha256; url -> payload path."""
    paths: dict[str, str] = {}
    for row in media_rows:
        _, block = read_raw_block(warc_dir / row["warc_file"], row["warc_offset"])
        body = block.partition(b"\r\n\r\n")[2]
        digest = hashlib.sha256(body).hexdigest()
        if digest != row["sha256"]:
            raise ArchiverError(
                f"{row['warc_file']}:{row['warc_offset']}: media {row['url']} sha256 expected {row['sha256']}, "
                f"found {digest}; run `archiver verify`"
            )
        ext = mimetypes.guess_extension((row["content_type"] or "").split(";")[0].strip()) or ".bin"
        name = f"{digest}{ext}"
        media_dir.mkdir(parents=True, exist_ok=True)
        target = media_dir / name
        if not target.exists():
            target.write_bytes(body)
        paths[row["url"]] = f"{prefix}/{name}"
    return paths
