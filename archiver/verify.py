"""Read-only integrity checks of an archive: what `archiver verify` reports.

Checks: every archive table still carries its append-only triggers; the ledger's hash chain recomputes
from the rows as they are and covers every row; every recorded WARC file exists with
the recorded size and sha256 and no unknown WARC lies beside them; every item version and media file points
at a WARC record with that id whose sha256 block digest holds, and an item's stored raw JSON is found in the
captured payload. Each problem names the place, what was expected and what was found.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .checkpoints import load_public_key, verify_checkpoints
from .ledger import verify_ledger
from .problems import Problem
from .recovery import file_sha256, interrupted_runs, run_of, scan_warc
from .store import ARCHIVE_TABLES, Store
from .warc import read_raw_block


def _digest_ok(header: str | None, data: bytes) -> bool:
    if not header or not header.startswith("sha256:"):
        return False
    value = header.split(":", 1)[1]
    return (
        value == base64.b32encode(hashlib.sha256(data).digest()).decode("ascii")
        or value == hashlib.sha256(data).hexdigest()
    )


def _contains(haystack: Any, needle: Any) -> bool:
    if haystack == needle:
        return True
    if isinstance(haystack, dict):
        return any(_contains(v, needle) for v in haystack.values())
    if isinstance(haystack, list):
        return any(_contains(v, needle) for v in haystack)
    return False


def verify_archive(
    database: Path,
    warc_dir: Path,
    public_key: Path | None = None,
    on_step: Callable[[str, int, int], None] | None = None,
) -> list[Problem]:
    """All problems found; an empty list means the archive verifies. Opens the database read-only.

    `public_key` is the archive's public key file (PEM): every checkpoint must be signed by it.
    """
    trusted = load_public_key(public_key) if public_key is not None else None
    store = Store.open(database, readonly=True)
    try:
        return list(_verify(store, warc_dir, trusted, on_step or (lambda step, done, total: None)))
    finally:
        store.close()


def _verify(
    store: Store, warc_dir: Path, trusted: Ed25519PublicKey | None, on_step: Callable[[str, int, int], None]
) -> Iterator[Problem]:
    on_step("triggers", 0, 0)
    triggers = {row[0] for row in store.conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    for table in ARCHIVE_TABLES:
        for action in ("update", "delete"):
            name = f"{table}_append_only_{action}"
            if name not in triggers:
                yield Problem(f"table {table}", f"append-only trigger {name} is missing")

    on_step("ledger", 0, 0)
    yield from verify_ledger(store.conn)
    on_step("checkpoints", 0, 0)
    yield from verify_checkpoints(store.conn, warc_dir, trusted)

    on_step("WARC files", 0, 0)
    known = store.known_warc_files()
    for name, row in known.items():
        path = warc_dir / name
        if not path.exists():
            yield Problem(f"WARC {name}", "recorded in warc_files but missing on disk")
            continue
        size = path.stat().st_size
        if size != row["size"]:
            yield Problem(f"WARC {name}", f"size expected {row['size']}, found {size}")
        found = file_sha256(path)
        if found != row["sha256"]:
            yield Problem(f"WARC {name}", f"sha256 expected {row['sha256']}, found {found}")
    if warc_dir.exists():
        interrupted = interrupted_runs(store.conn)
        for path in sorted(warc_dir.glob("*.warc.gz")):
            if path.name in known:
                continue
            run = run_of(path.name)
            if run in interrupted:
                scan = scan_warc(path)
                tail = f", torn tail after offset {scan.complete_bytes}" if scan.torn else ""
                yield Problem(
                    f"WARC {path.name}",
                    f"left by interrupted run {run}: {scan.records} complete records{tail}; the next run records it",
                    "note",
                )
            else:
                yield Problem(f"WARC {path.name}", "on disk but not recorded in warc_files (unknown file)")

    total = store.conn.execute("SELECT (SELECT count(*) FROM item_versions) + (SELECT count(*) FROM media_files)")
    total_rows, done = total.fetchone()[0], 0
    on_step("records", 0, total_rows)
    payloads: dict[tuple[str, int], tuple[Any, list[Problem]]] = {}

    def check_record(where: str, file: str, offset: int, record_id: str) -> tuple[Any, list[Problem]]:
        cached = payloads.get((file, offset))
        if cached is not None:
            body, problems = cached
            # Report a bad record once; later rows pointing at it are skipped, not re-reported.
            return (None if problems else body), []
        problems: list[Problem] = []
        body: Any = None
        path = warc_dir / file
        try:
            record, block = read_raw_block(path, offset)
        except Exception as exc:  # unreadable gzip member or missing file: report, keep checking
            problems.append(Problem(where, f"cannot read WARC record at {file}:{offset} ({type(exc).__name__})"))
            payloads[(file, offset)] = (None, problems)
            return payloads[(file, offset)]
        found_id = record.rec_headers.get_header("WARC-Record-ID")
        if found_id != record_id:
            problems.append(Problem(where, f"WARC record at {file}:{offset} expected id {record_id}, found {found_id}"))
        if not _digest_ok(record.rec_headers.get_header("WARC-Block-Digest"), block):
            problems.append(Problem(where, f"WARC record at {file}:{offset} block digest does not match its content"))
        _, _, raw_body = block.partition(b"\r\n\r\n")
        body = raw_body
        payloads[(file, offset)] = (body, problems)
        return payloads[(file, offset)]

    parsed: dict[tuple[str, int], Any] = {}
    for row in store.conn.execute(
        "SELECT id, raw_json, warc_file, warc_offset, warc_record_id FROM item_versions ORDER BY id"
    ):
        where = f"item_versions id {row['id']}"
        done += 1
        if done % 1000 == 0:
            on_step("records", done, total_rows)
        body, problems = check_record(where, row["warc_file"], row["warc_offset"], row["warc_record_id"])
        yield from problems
        if body is None or problems:
            continue
        key = (row["warc_file"], row["warc_offset"])
        if key not in parsed:
            try:
                parsed[key] = json.loads(body)
            except ValueError:
                parsed[key] = None
        if parsed[key] is None or not _contains(parsed[key], json.loads(row["raw_json"])):
            yield Problem(where, f"raw_json not found in the payload of WARC record {row['warc_record_id']}")

    for row in store.conn.execute("SELECT url, sha256, warc_file, warc_offset, warc_record_id FROM media_files"):
        where = f"media_files {row['url']}"
        done += 1
        body, problems = check_record(where, row["warc_file"], row["warc_offset"], row["warc_record_id"])
        yield from problems
        if body is not None and not problems and hashlib.sha256(body).hexdigest() != row["sha256"]:
            yield Problem(where, f"sha256 expected {row['sha256']}, found {hashlib.sha256(body).hexdigest()}")
    on_step("records", total_rows, total_rows)
