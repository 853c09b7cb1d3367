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
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.recordloader import ArcWarcRecord

from .warc import SMALL_BLOCK, Block, read_block

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


class CompleteRecords:
    """The complete records of an open WARC file, in order, as (record, block, offset, length); a block larger than
    SMALL_BLOCK (a video's) is read as a stream and not held (see warc.Block).

    A record is complete only when its block digest holds: a record cut short by a crash can still parse
    (its gzip member ends early), and must count as the start of the torn tail. Reading stops there, or at
    the first record that cannot be read. Once iterated, `end` is the offset just after the last complete
    record, and `stopped` says why reading stopped early: "incomplete", or "unreadable" with the exception's
    name in `error`; None when the whole file was read.
    """

    def __init__(self, fh: BinaryIO):
        self.iterator = ArchiveIterator(fh, no_record_parse=True)
        self.end = 0
        self.stopped: str | None = None
        self.error: str | None = None

    def __iter__(self) -> Iterator[tuple[ArcWarcRecord, Block, int, int]]:
        try:
            for record in self.iterator:
                block = read_block(record.raw_stream, record.length, SMALL_BLOCK)
                self.iterator.read_to_end(record)
                if not block.digest_ok(record.rec_headers.get_header("WARC-Block-Digest")):
                    self.stopped = "incomplete"
                    return
                offset, length = self.iterator.get_record_offset(), self.iterator.get_record_length()
                self.end = offset + length
                yield record, block, offset, length
        except Exception as exc:  # warcio raises several types (EOFError, zlib.error, ArchiveLoadFailed) here
            self.stopped, self.error = "unreadable", type(exc).__name__


def scan_warc(path: Path) -> WarcScan:
    """Count the complete records of a WARC file and where the last one ends (see CompleteRecords)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        records = CompleteRecords(fh)
        count = sum(1 for _ in records)
    return WarcScan(count, records.end, size)


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by its path (a folder: so that a file moved or linked into it stays there)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run_of(name: str) -> str | None:
    match = WARC_NAME.match(name)
    return match.group("run") if match else None


def interrupted_runs(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT id FROM runs WHERE id NOT IN (SELECT run_id FROM run_results)")}


@dataclass(frozen=True)
class Recovery:
    """The run that recovered an interrupted run's WARC files: each run records the files interrupted runs
    left, at its start, so once a later run has finished (`finished_seq`, its run_results row's ledger entry),
    none of the interrupted run's files can still be waiting. One that turns up after that was put there."""

    by: str
    finished_seq: int


def recoveries(conn: sqlite3.Connection) -> dict[str, Recovery]:
    """Each interrupted run that a later run has recovered, by the ledger's order (clocks may step back): the
    first run appended after it whose result is recorded."""
    started, finished = (
        dict(conn.execute("SELECT row_key, seq FROM ledger WHERE table_name = ?", (table,)).fetchall())
        for table in ("runs", "run_results")
    )
    done = sorted((started[run], run) for run in finished if run in started)
    found = {}
    for run in interrupted_runs(conn):
        if run not in started:
            continue
        later = next((other for seq, other in done if seq > started[run]), None)
        if later is not None:
            found[run] = Recovery(later, finished[later])
    return found


def set_aside_torn_tail(path: Path, scan: WarcScan) -> Path:
    """Move the bytes after the last complete record to the torn/ folder, then cut the file there.

    A stop between the two steps leaves the tail both aside and still in the file: the next run finds the same
    tail and goes on (the copy aside is written whole under a temporary name first, so it is never half a
    tail). Bytes already aside are never overwritten: an aside of that name holding other bytes keeps them,
    and this tail goes beside it."""
    folder = path.parent / TORN_DIR
    folder.mkdir(exist_ok=True)
    # The tail is copied and compared a chunk at a time: it can be most of a video's record.
    tail = (scan.complete_bytes, path.stat().st_size - scan.complete_bytes)
    aside = folder / f"{path.name}.tail-at-{scan.complete_bytes}"
    number = 1
    while aside.exists() and (aside.stat().st_size != tail[1] or file_sha256(aside) != _range_sha256(path, *tail)):
        aside = folder / f"{path.name}.tail-at-{scan.complete_bytes}.{number}"
        number += 1
    if not aside.exists():
        staged = aside.with_name(aside.name + ".partial")
        with open(path, "rb") as fh, open(staged, "wb") as out:
            fh.seek(tail[0])
            shutil.copyfileobj(fh, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staged, aside)
        fsync_path(folder)
    with open(path, "r+b") as fh:
        fh.truncate(scan.complete_bytes)
        fh.flush()
        os.fsync(fh.fileno())
    return aside


def _range_sha256(path: Path, start: int, length: int) -> str:
    """The sha256 of `length` bytes of a file from `start` (fewer if the file ends first)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(start)
        while length > 0 and (chunk := fh.read(min(1 << 20, length))):
            digest.update(chunk)
            length -= len(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
