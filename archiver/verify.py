"""Read-only integrity checks of an archive: what `archiver verify` reports.

Checks: the schema is exactly what the archive's migrations make (tables, indexes, append-only triggers,
views) and the search index holds every version; the ledger's hash chain recomputes from the rows as they are
and covers every row, once; every checkpoint is signed by the archive's key; every recorded WARC file exists
with the recorded and signed size and sha256 and no unknown WARC lies beside them; every item version and media
file points at a WARC record with that id whose sha256 block digest holds, and an item's stored raw JSON is
found in the captured payload; each event's evidence names records that back it (evidence_check.py);
checkpoint copies kept elsewhere, when given, name ledger entries the archive still holds. Each problem names
the place, what was expected and what was found.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders

from .access_log import access_log_path, check_signed_heads, verify_access_log
from .checkpoints import (
    SignedWarc,
    key_fingerprint,
    load_public_key,
    missing_key_problem,
    signed_access_log_heads,
    signed_warc_files,
    verify_checkpoints,
    verify_kept_copies,
)
from .evidence_check import EvidenceRecords, versions_named
from .ledger import verify_ledger
from .problems import Problem
from .recovery import Recovery, WarcScan, interrupted_runs, recoveries, run_of, scan_warc
from .schema_check import check_schema
from .store import Store, readonly_uri
from .warc import HEADERS_END, SMALL_BLOCK, Block, read_block, read_block_at

# From this many ledger entries the chain is recomputed in a second process while this one reads the WARCs
# (two independent scans, each CPU-bound). A process takes ~0.3 s to start, about 10,000 entries' worth (the
# chain goes at ~32,000 entries/s): below this, one process is as quick. See BENCHMARKS.md (verify).
PARALLEL_LEDGER_FROM = int(os.environ.get("ARCHIVER_VERIFY_PARALLEL_FROM", "20000"))


@dataclass(frozen=True)
class SignedExtent:
    """How far the last checkpoint reaches into the ledger."""

    last_signed: int | None  # the ledger seq the last checkpoint signed; None before the first checkpoint
    entries: int  # the ledger's entries
    own_entry: int | None  # that checkpoint's own ledger entry, just after the head it signs

    @property
    def unsigned(self) -> int:
        return self.entries - (self.own_entry or self.last_signed or 0)


@dataclass(frozen=True)
class ArchiveCheck:
    problems: list[Problem]
    extent: SignedExtent


def verify_archive(
    database: Path,
    warc_dir: Path,
    public_key: Path | None = None,
    on_step: Callable[[str, int, int], None] | None = None,
    kept_checkpoints: Path | None = None,
    access_log: Path | None = None,
) -> list[Problem]:
    """All problems found; an empty list means the archive verifies (see check_archive)."""
    return check_archive(database, warc_dir, public_key, on_step, kept_checkpoints, access_log).problems


def check_archive(
    database: Path,
    warc_dir: Path,
    public_key: Path | None = None,
    on_step: Callable[[str, int, int], None] | None = None,
    kept_checkpoints: Path | None = None,
    access_log: Path | None = None,
) -> ArchiveCheck:
    """All problems found (none: the archive verifies) and how much of the ledger is signed, both as of one
    snapshot of the database, which is opened read-only.

    `public_key` is the archive's public key file (PEM): every checkpoint must be signed by it. Without one,
    an archive with checkpoints does not verify. `kept_checkpoints` is a folder of checkpoint copies kept away
    from the archive: each must still be in the ledger as signed. `access_log` is the access log whose heads
    the checkpoints signed (default: the one beside the database).
    """
    trusted = load_public_key(public_key) if public_key is not None else None
    on_step = on_step or (lambda step, done, total: None)
    store = Store.open(database, readonly=True)
    pool: ProcessPoolExecutor | None = None
    now = ArchiveNow(Path(database))
    try:
        read_one_snapshot(store.conn)
        on_step("schema", 0, 0)
        schema = list(check_schema(store.conn))
        ledger: Future[list[Problem]] | None = None
        chain: list[Problem] = []
        if (os.cpu_count() or 1) > 1 and _ledger_entries(store) >= PARALLEL_LEDGER_FROM:
            # spawned, not forked: a fresh interpreter with its own read-only connection
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            ledger = pool.submit(ledger_problems, Path(database))
        else:
            on_step("ledger", 0, 0)
            chain = list(verify_ledger(store.conn))
        on_step("checkpoints", 0, 0)
        checkpoints = list(_check_key(store, trusted))
        checkpoints += verify_checkpoints(store.conn, warc_dir, trusted, now.in_ledger)
        if kept_checkpoints is not None:
            checkpoints += verify_kept_copies(store.conn, kept_checkpoints, trusted)
        log_path = access_log or access_log_path(Path(database))
        checkpoints += check_signed_heads(log_path, signed_access_log_heads(store.conn))
        if Path(log_path).is_file():  # its chain too: a row changed in place keeps the signed heads' hashes
            checkpoints += verify_access_log(log_path)
        signed = signed_warc_files(store.conn, trusted)
        warcs = list(_check_warcs(store, warc_dir, on_step, now, signed))
        if ledger is not None:
            on_step("ledger", 0, 0)
            try:
                chain = ledger.result()
            except BrokenProcessPool:  # the second process died (killed, out of memory): check it here
                chain = list(verify_ledger(store.conn))
        return ArchiveCheck(schema + chain + checkpoints + warcs, signed_extent(store))
    finally:
        if pool is not None:
            pool.shutdown()
        store.close()


def ledger_problems(database: Path) -> list[Problem]:
    """The ledger check on its own read-only connection (what the second process runs)."""
    store = Store.open(database, readonly=True)
    try:
        read_one_snapshot(store.conn)
        return list(verify_ledger(store.conn))
    finally:
        store.close()


def read_one_snapshot(conn: sqlite3.Connection) -> None:
    """Every later read of `conn` sees the archive as it is now, whatever a run appends meanwhile (WAL keeps
    the snapshot for the read transaction, which lasts until the connection closes): rows, ledger and
    checkpoints are checked against each other as of one moment."""
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()


class ArchiveNow:
    """The archive as it is now, read outside verify's snapshot: tells files a run wrote after the snapshot
    (a run that went on or started while verify ran) from files nobody recorded."""

    def __init__(self, database: Path):
        self.database = database

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = sqlite3.connect(readonly_uri(self.database), uri=True)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def run_state(self, run_id: str) -> str | None:
        """The run's state now: finished, running (no result yet), or None when the archive does not know it."""
        found = self._query(
            "SELECT EXISTS (SELECT 1 FROM run_results WHERE run_id = ?) FROM runs WHERE id = ?", (run_id, run_id)
        )
        return None if not found else ("finished" if found[0][0] else "running")

    def in_ledger(self, seq: int, entry_hash: str) -> bool:
        return self._query("SELECT 1 FROM ledger WHERE seq = ? AND hash = ?", (seq, entry_hash)) != []


def _ledger_entries(store: Store) -> int:
    if not store.ledger_on:
        return 0
    return store.conn.execute("SELECT coalesce(max(seq), 0) FROM ledger").fetchone()[0]


def _check_key(store: Store, trusted: Any) -> Iterator[Problem]:
    if trusted is None and store.conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0]:
        yield missing_key_problem()


def signed_extent(store: Store) -> SignedExtent:
    last = store.conn.execute("SELECT max(ledger_seq) FROM checkpoints").fetchone()[0]
    entries = store.conn.execute("SELECT coalesce(max(seq), 0) FROM ledger").fetchone()[0]
    # The checkpoint's own row enters the ledger just after the head it signs: not an unsigned fact.
    own = store.conn.execute(
        "SELECT max(seq) FROM ledger WHERE table_name = 'checkpoints' AND seq = ?", ((last or 0) + 1,)
    ).fetchone()[0]
    return SignedExtent(last, entries, own)


def trust_summary(extent: SignedExtent, public_key: Path | None, key_in_archive: bool) -> list[str]:
    """What the signatures prove, in words: which key was trusted and from where, and how much of the ledger
    the last checkpoint signed (what came after is not signed yet)."""
    lines = []
    if public_key is not None:
        where = "the archive's own key folder" if key_in_archive else str(public_key)
        lines.append(
            f"checkpoints checked against the public key {key_fingerprint(load_public_key(public_key))}, from {where}"
        )
        if key_in_archive:
            lines.append("  (a key kept elsewhere, given with --public-key, also proves that key was not replaced)")
    if extent.last_signed is not None:
        unsigned = extent.unsigned
        lines.append(
            f"last checkpoint signs ledger seq {extent.last_signed} of {extent.entries}"
            + (f"; {unsigned} ledger entries appended since are not signed yet" if unsigned else "")
        )
    return lines


def _check_warcs(
    store: Store,
    warc_dir: Path,
    on_step: Callable[[str, int, int], None],
    now: ArchiveNow,
    signed: dict[str, SignedWarc],
) -> Iterator[Problem]:
    on_step("WARC files", 0, 0)
    known = store.known_warc_files()
    evidence = EvidenceRecords.of_archive(store.conn)
    yield from evidence.malformed
    yield from versions_named(store.conn)
    referenced = {
        r[0]
        for r in store.conn.execute(
            "SELECT DISTINCT warc_file FROM item_versions UNION SELECT DISTINCT warc_file FROM media_files"
        )
    } | set(evidence.in_file)
    read: set[str] = set()
    interrupted = interrupted_runs(store.conn)
    recovered = recoveries(store.conn)
    runs = {row[0] for row in store.conn.execute("SELECT id FROM runs")}
    yield from _recorded_after_recovery(store.conn, recovered)
    names = sorted(set(known) | referenced | set(signed))
    total_bytes = sum((warc_dir / n).stat().st_size for n in names if (warc_dir / n).exists())
    done = 0
    interrupted_scans: dict[str, WarcScan] = {}  # an interrupted run's file is scanned once
    on_step("WARC files", 0, total_bytes)
    for name in names:
        path = warc_dir / name
        row = known.get(name)
        if not path.exists():
            where = f"WARC {name}"
            if row is None and name in signed:
                yield Problem(where, f"signed by checkpoints id={signed[name].checkpoint_id} but missing on disk")
            else:
                yield Problem(where, "recorded in warc_files but missing on disk" if row else "referenced but missing")
            continue
        torn_from = None
        if row is None and run_of(name) in interrupted:
            # Read no further than its complete records: a run still going may be writing the next one.
            found = interrupted_scans[name] = scan_warc(path)
            torn_from = found.complete_bytes
        scan = FileCheck(path, torn_from, evidence)
        yield from scan.check_rows(store.conn)
        read.add(name)
        if row is not None:
            if scan.size != row["size"]:
                yield Problem(f"WARC {name}", f"size expected {row['size']}, found {scan.size}")
            if scan.sha256 != row["sha256"]:
                yield Problem(f"WARC {name}", f"sha256 expected {row['sha256']}, found {scan.sha256}")
        elif run_of(name) not in interrupted:
            yield Problem(f"WARC {name}", "referenced by rows but not recorded in warc_files")
        if name in signed:
            yield from _check_signed(name, signed[name], row, scan)
        done += scan.size
        on_step("WARC files", done, total_bytes)
    if warc_dir.exists():
        for path in sorted(warc_dir.glob("*.warc.gz")):
            if path.name in known:
                continue
            run = run_of(path.name)
            later = _written_later(run, runs, interrupted, now)
            if later:
                yield Problem(f"WARC {path.name}", f"{later}; verify again to check it", "note")
            elif run in recovered:
                yield Problem(
                    f"WARC {path.name}",
                    f"names interrupted run {run}, whose files run {recovered[run].by} recorded when it started: "
                    "it was put there since (no run of the archive leaves one later)",
                )
            elif run in interrupted:
                scan_info = interrupted_scans.get(path.name) or scan_warc(path)
                tail = f", torn tail after offset {scan_info.complete_bytes}" if scan_info.torn else ""
                yield Problem(
                    f"WARC {path.name}",
                    f"left by interrupted run {run}: {scan_info.records} complete records{tail}; "
                    "the next run records it",
                    "note",
                )
            else:
                yield Problem(f"WARC {path.name}", "on disk but not recorded in warc_files (unknown file)")
    yield from evidence.never_met(read)


def _check_signed(name: str, signed: SignedWarc, row: Any, scan: FileCheck) -> Iterator[Problem]:
    """A closed WARC as a checkpoint signed it: the file, and its warc_files row, must say the same."""
    by = f"as checkpoints id={signed.checkpoint_id} signed"
    if (scan.sha256, scan.size) != (signed.sha256, signed.size):
        yield Problem(f"WARC {name}", f"sha256 expected {signed.sha256} {by}, found {scan.sha256}")
    if row is not None and (row["sha256"], row["size"]) != (signed.sha256, signed.size):
        yield Problem(f"warc_files name={name}", f"sha256 expected {signed.sha256} {by}, found {row['sha256']}")


def _recorded_after_recovery(conn: sqlite3.Connection, recovered: dict[str, Recovery]) -> Iterator[Problem]:
    """A WARC file of an interrupted run recorded after the run that recovered its files had finished: no run
    of the archive does that, so it was planted (and a later run, which records what interrupted runs left, was
    made to take it for theirs)."""
    if not recovered:
        return
    for name, seq in conn.execute("SELECT row_key, seq FROM ledger WHERE table_name = 'warc_files' ORDER BY seq"):
        recovery = recovered.get(run_of(name) or "")
        if recovery is not None and seq > recovery.finished_seq:
            yield Problem(
                f"warc_files {name}",
                f"recorded at ledger seq {seq}, after run {recovery.by} had recorded interrupted run {run_of(name)}'s "
                f"files and finished (seq {recovery.finished_seq}): a file put there since",
            )


def _written_later(run: str, runs: set[str], interrupted: set[str], now: ArchiveNow) -> str | None:
    """Why a WARC file verify's snapshot does not record is nonetheless expected, if it is: its run, unfinished
    in the snapshot (`runs`, `interrupted`), has finished since, or it started after the snapshot. None
    otherwise (an interrupted run's file, or an unknown one)."""
    state = now.run_state(run)
    if run in interrupted and state == "finished":
        return f"written by run {run}, which was still going when verify began"
    if run not in runs and state is not None:
        return f"written by run {run}, which started after verify began"
    return None


class _HashingReader:
    """A read-only file wrapper that hashes every byte read: one pass gives the file's digest too."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


class FileCheck:
    """One sequential read of a WARC file: its sha256, each record's block digest, the rows into it, and the
    records events' evidence names."""

    def __init__(self, path: Path, torn_from: int | None = None, evidence: EvidenceRecords | None = None):
        self.path = path
        self.torn_from = torn_from  # an interrupted run's torn tail starts here: expected, not tampering
        self.evidence = evidence
        self.sha256 = ""
        self.size = 0

    def _records(self, reader: _HashingReader) -> Iterator[tuple[int, StatusAndHeaders, Block] | Problem]:
        """Each record, its block held when small and read as a stream when not (a video: see `_whole`)."""
        iterator = ArchiveIterator(reader, no_record_parse=True)
        try:
            for record in iterator:
                block = read_block(record.raw_stream, record.length, SMALL_BLOCK)
                iterator.read_to_end(record)
                yield iterator.get_record_offset(), record.rec_headers, block
        except Exception as exc:  # a damaged gzip member: the rest of the file cannot be read as records
            yield Problem(f"WARC {self.path.name}", f"unreadable after offset {iterator.offset} ({type(exc).__name__})")

    def _whole(self, offset: int, block: Block) -> bytes:
        """The whole block of a record read as a stream, when a row or evidence needs more than its digests (a JSON
        answer over SMALL_BLOCK): read again, on its own. Rare: an API page is a few hundred KB."""
        if block.data is not None:
            return block.data
        whole = read_block_at(self.path, offset, None)[1].data
        assert whole is not None
        return whole

    def check_rows(self, conn: sqlite3.Connection) -> Iterator[Problem]:
        """Merge the file's records with the rows pointing into it, both in offset order."""
        name = self.path.name
        rows = conn.execute(
            "SELECT 'item_versions id ' || id AS place, warc_offset, warc_record_id, raw_json, NULL AS sha256 "
            "FROM item_versions WHERE warc_file = ? "
            "UNION ALL SELECT 'media_files ' || url, warc_offset, warc_record_id, NULL, sha256 "
            "FROM media_files WHERE warc_file = ? ORDER BY warc_offset",
            (name, name),
        )
        pending = rows.fetchone()
        with open(self.path, "rb") as fh:
            reader = _HashingReader(fh)
            for entry in self._records(reader):
                if isinstance(entry, Problem):
                    if self.torn_from is None:
                        yield entry
                    break
                offset, headers, block = entry
                record_id = headers.get_header("WARC-Record-ID")
                if self.torn_from is not None and offset >= self.torn_from:
                    break  # the torn tail: reported as a note with the file, set aside by the next run
                if self.evidence is not None and self.evidence.names(name, record_id):
                    yield from self.evidence.check_record(name, record_id, headers, self._whole(offset, block))
                if not block.digest_ok(headers.get_header("WARC-Block-Digest")):
                    yield Problem(f"WARC {name}", f"record {record_id} at offset {offset}: block digest does not match")
                while pending is not None and pending[1] < offset:
                    yield Problem(pending[0], f"no WARC record starts at {name}:{pending[1]}")
                    pending = rows.fetchone()
                payload: Any = _UNPARSED
                while pending is not None and pending[1] == offset:
                    place, _, expected_id, raw_json, media_sha = pending
                    if record_id != expected_id:
                        yield Problem(
                            place, f"WARC record at {name}:{offset} expected id {expected_id}, found {record_id}"
                        )
                    elif media_sha is not None:
                        if block.body_sha256 != media_sha:
                            yield Problem(place, f"sha256 expected {media_sha}, found {block.body_sha256}")
                    else:
                        if payload is _UNPARSED:
                            payload = _JsonIndex.of(self._whole(offset, block).partition(HEADERS_END)[2])
                        if payload is None or not payload.contains(json.loads(raw_json)):
                            yield Problem(place, f"raw_json not found in the payload of WARC record {record_id}")
                    pending = rows.fetchone()
            reader.drain()
        while pending is not None:
            yield Problem(pending[0], f"no WARC record starts at {name}:{pending[1]}")
            pending = rows.fetchone()
        self.sha256, self.size = reader.digest.hexdigest(), reader.size


_UNPARSED = object()


class _JsonIndex:
    """A parsed payload with its objects indexed by their keys, so each row's object is found at once."""

    def __init__(self, value: Any):
        self.by_keys: dict[tuple[str, ...], list[dict]] = {}
        stack = [value]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                self.by_keys.setdefault(tuple(sorted(node)), []).append(node)
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)

    @classmethod
    def of(cls, body: bytes) -> _JsonIndex | None:
        try:
            return cls(json.loads(body))
        except ValueError:
            return None

    def contains(self, obj: Any) -> bool:
        return isinstance(obj, dict) and obj in self.by_keys.get(tuple(sorted(obj)), [])
