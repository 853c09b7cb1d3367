"""WARC files left by an interrupted run (killed, power lost): find them, set a torn tail aside, record them.

A run records a WARC file in `warc_files` only when it closes it. After a crash the file is on disk,
unrecorded, and its last record may be torn. Rows in the database never point past the last complete
record (the WARC is fsynced before they commit), so the complete records are all the evidence there is:
the torn bytes are moved to `torn/<file>.tail-at-<offset>` (kept, reported) and the file is recorded as it
now stands. Nothing is cut silently and nothing complete is changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from .warc import block_digest_ok

TORN_DIR = "torn"
WARC_NAME = re.compile(r"^archiver-\d{14}-(?P<run>.+)-\d{5}\.warc\.gz$")


@dataclass(frozen=True)
class WarcScan:
    records: int
    complete_bytes: int  # offset just after the last complete record
    size: int

    @property
    def torn(self) -> bool:
        return self.complete_bytes < self.size


def scan_warc(path: Path) -> WarcScan:
    """Count the complete records of a WARC file and where the last one ends.

    A record is complete only when its block digest holds: a record cut short by a crash can still parse
    (its gzip member ends early), and must count as the start of the torn tail.
    """
    size = path.stat().st_size
    records, end = 0, 0
    with open(path, "rb") as fh:
        iterator = ArchiveIterator(fh, no_record_parse=True)
        try:
            for record in iterator:
                block = record.raw_stream.read()
                iterator.read_to_end(record)
                if not block_digest_ok(record.rec_headers.get_header("WARC-Block-Digest"), block):
                    break
                records += 1
                end = iterator.get_record_offset() + iterator.get_record_length()
        except Exception:  # warcio raises several types (EOFError, zlib.error, ArchiveLoadFailed) for a torn member
            pass
    return WarcScan(records, end, size)


def run_of(name: str) -> str | None:
    match = WARC_NAME.match(name)
    return match.group("run") if match else None


def interrupted_runs(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT id FROM runs WHERE id NOT IN (SELECT run_id FROM run_results)")}


def set_aside_torn_tail(path: Path, scan: WarcScan) -> Path:
    """Move the bytes after the last complete record to the torn/ folder, then cut the file there."""
    folder = path.parent / TORN_DIR
    folder.mkdir(exist_ok=True)
    aside = folder / f"{path.name}.tail-at-{scan.complete_bytes}"
    with open(path, "rb") as fh:
        fh.seek(scan.complete_bytes)
        tail = fh.read()
    with open(aside, "xb") as out:
        out.write(tail)
        out.flush()
        os.fsync(out.fileno())
    with open(path, "r+b") as fh:
        fh.truncate(scan.complete_bytes)
        fh.flush()
        os.fsync(fh.fileno())
    return aside


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
