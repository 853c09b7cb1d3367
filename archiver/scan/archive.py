"""Flags and reviews in the archive: scan item versions, append flags, append reviews.

Everything here appends (through Store._insert, so every row extends the ledger). A scan covers a range of
item versions with one rules version and ends with a `scan_runs` row; the nightly run scans what no scan
has covered yet, `archiver scan --all` everything again, appending only hits not already flagged under the
same rules version. A version whose detection raised is left out and kept in `scan_skips`; the next scan with
other rules takes it up again (`scan_retries`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..config import Config
from ..errors import ArchiverError, ConfigError
from ..flag_states import record_flag_states
from ..operator import operator_name
from ..store import Store, schema_has
from ..warc import iso, utcnow
from .alerts import ALERT_LISTED
from .engine import AllowList, Detector
from .parallel import UNSCANNABLE_LIMIT, Detection, Unscannable, VersionScanner, worker_count
from .rules import BUILTIN_FILES, is_signal, load_rules, select_rules

log = logging.getLogger("archiver.scan")

DECISIONS = ("violation", "false-positive", "escalated")
ALERT_FIELDS = ("version_id", "item_key", "rule_id", "category", "severity", "reason")


@dataclass
class ScanOutcome:
    scan_id: int
    rules_version: str
    mode: str
    versions_scanned: int
    # Some of the new flags, for a caller to show: ids, kinds and reasons, never the matched text. Only the
    # first ALERT_LISTED of each severity are kept, so a scan of a large archive holds a bounded list; `counts`
    # has them all. (Alerts read what is owed from the archive: scan/delivery.py.)
    flags: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # new flags by severity
    # Versions left out because their detection raised (see scan/parallel.py): covered by this scan's range (or
    # retried by it), never flagged by it. Named in `problem`, the run's notices and log, kept in scan_skips.
    unscannable: list[Unscannable] = field(default_factory=list)
    retried: int = 0  # versions earlier scans left out, taken up again by this one (other rules)

    @property
    def flags_added(self) -> int:
        return sum(self.counts.values())

    def add_flag(self, flag: dict[str, Any]) -> None:
        if self.counts[flag["severity"]] < ALERT_LISTED:
            self.flags.append(flag)
        self.counts[flag["severity"]] += 1

    def summary(self) -> str:
        left_out = f", {len(self.unscannable)} could not be scanned" if self.unscannable else ""
        retried = f" (and {self.retried} left out by earlier scans, tried again)" if self.retried else ""
        return (
            f"PHI scan {self.scan_id} ({self.mode}, rules {self.rules_version}): {self.versions_scanned} versions"
            f"{retried}{left_out}, {self.flags_added} new flags ({self.counts['high']} high)"
        )

    def problem(self) -> str | None:
        """One line naming the versions the scan left out, and what to do; None when there were none."""
        if not self.unscannable:
            return None
        named = ", ".join(f"version {v} ({key}: {error})" for v, key, error in self.unscannable)
        return (
            f"PHI scan {self.scan_id}: {len(self.unscannable)} version(s) could not be scanned and are not flagged: "
            f"{named}; review their text by hand (Datasette: unscanned_versions); the next scan with other rules "
            "(once archiver is fixed) tries them again"
        )


def build_detector(config: Config | None) -> Detector:
    """The built-in rules plus the organisation's rule files and allow-lists from `config` (None: built-in).
    Patient-content signals (the consent check's) are left out."""
    return detector_for(config, lambda category: not is_signal(category))


def detector_for(
    config: Config | None, keep: Callable[[str], bool], builtin: tuple[str, ...] = BUILTIN_FILES
) -> Detector:
    """A detector of the rules whose category `keep` accepts, from the built-in files `builtin` and the
    organisation's rule files, with its allow-lists and person finder (None: built-in rules only)."""
    if config is None:
        return Detector(select_rules(load_rules(builtin=builtin), keep))
    scan = config.scan
    staff = list(scan.staff)
    if scan.staff_file is not None:
        staff.extend(line.strip() for line in read_staff_file(config).splitlines())
    allow = AllowList.build(
        scan.own_phones, scan.own_domains, scan.own_handles, scan.own_addresses, staff, config.archive.organisation
    )
    finder = None
    if scan.spacy_model is not None:
        from .spacy_names import load_person_finder, model_digest

        finder = load_person_finder(scan.spacy_model, f"{config.path}: [scan]")
    detector = Detector(select_rules(load_rules(scan.rule_files, builtin=builtin), keep), allow, finder)
    if scan.spacy_model is not None:  # it finds names no rule file knows: another model, or one retrained, differs
        detector.version += f"+spacy-{model_digest(scan.spacy_model)}"
    return detector


def read_staff_file(config: Config) -> str:
    """The text of `[scan] staff_file`. One that cannot be read, or is not UTF-8 (a directory export saved as
    Latin-1), is a ConfigError naming it: `archiver scan` exits 2, and a run's scan fails with a notice while
    its captures are kept, as for any scan input."""
    path = config.scan.staff_file
    where = f"{config.path}: [scan] staff_file {path}"
    try:
        raw = path.read_bytes() if path is not None else b""
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read ({exc.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{where}: line {line}: byte 0x{raw[exc.start]:02x} is not UTF-8; save the file as UTF-8"
        ) from None


def next_unscanned(conn: sqlite3.Connection) -> int:
    """The first item version id no scan has covered yet."""
    return conn.execute("SELECT coalesce(max(to_version_id), 0) + 1 FROM scan_runs").fetchone()[0]


def left_out_earlier(conn: sqlite3.Connection, rules_version: str) -> list[int]:
    """Versions earlier scans left out that no later scan has scanned, under rules other than `rules_version`
    (detection is deterministic: the same rules raise on the same text again). At most UNSCANNABLE_LIMIT, oldest
    first, so that they can never fail a scan whole; the rest wait for the next scan."""
    if not schema_has(conn, "unscanned_versions"):
        return []  # an archive held at a schema before migration 0018 (tests make one)
    return [
        row[0]
        for row in conn.execute(
            "SELECT version_id FROM unscanned_versions WHERE rules_version != ? ORDER BY version_id LIMIT ?",
            (rules_version, UNSCANNABLE_LIMIT),
        )
    ]


def start_scanner(store: Store, config: Config) -> VersionScanner | None:
    """The scanner a run feeds as it commits (see scan/parallel.py); None when the detector cannot be built,
    which the scan after the run then reports."""
    try:
        detector = build_detector(config)
    except Exception:  # any failure: the scan after the run builds it again and reports it
        return None
    return VersionScanner(
        store.conn, store.path, detector, next_unscanned(store.conn), worker_count(config.scan.workers)
    )


def append_scan(
    store: Store,
    detector: Detector,
    *,
    mode: str,
    run_id: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    workers: int = 0,
    scanner: VersionScanner | None = None,
) -> ScanOutcome:
    """Scan the versions no scan has covered (mode "new") or all of them ("all"); append flags and a scan row.

    Detection runs in `workers` processes when there is enough to scan, or in `scanner` (a run's, which has
    done part of it already); the flags are appended here, in version order, either way. Mode "new" first
    takes up again what earlier scans left out, when the rules have changed since (left_out_earlier)."""
    started = iso(utcnow())
    with store.transaction():
        conn = store.conn
        scan_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM scan_runs").fetchone()[0]
        last = conn.execute("SELECT coalesce(max(id), 0) FROM item_versions").fetchone()[0]
        first = next_unscanned(conn) if mode == "new" else 1
        known: set[tuple[int, str, int, int]] = set()
        if mode == "all":
            known = {
                tuple(row)
                for row in conn.execute(
                    "SELECT version_id, rule_id, span_start, span_end FROM flags WHERE rules_version = ?",
                    (detector.version,),
                )
            }
        outcome = ScanOutcome(scan_id, detector.version, mode, 0)

        def append_flags(found: Iterable[Detection]) -> None:
            for version_id, item_key, hits in found:
                for hit in hits:
                    if (version_id, hit.rule_id, hit.start, hit.end) in known:
                        continue
                    row = {
                        "version_id": version_id,
                        "item_key": item_key,
                        "rule_id": hit.rule_id,
                        "rules_version": detector.version,
                        "category": hit.category,
                        "severity": hit.severity,
                        "span_start": hit.start,
                        "span_end": hit.end,
                        "matched": hit.matched,
                        "reason": hit.reason,
                        "run_id": run_id,
                        "scan_id": scan_id,
                        "created_at": iso(utcnow()),
                    }
                    flag_id = store._insert("flags", row)
                    outcome.add_flag({"id": flag_id, **{k: row[k] for k in ALERT_FIELDS}})

        # Older than this scan's range, so first: flags stay in version order. In this process: a few at most.
        retry = left_out_earlier(conn, detector.version) if mode == "new" else []
        with VersionScanner(conn, store.path, detector, 0) as retrying:
            for version_id in retry:
                for _, _, (scanned, found) in retrying.batches(version_id, version_id):
                    outcome.versions_scanned += scanned
                    append_flags(found)
        outcome.retried = len(retry)
        total = max(0, last - first + 1)
        if scanner is None or scanner.detector is not detector:
            scanner = VersionScanner(conn, store.path, detector, first, workers)
        with scanner:
            for _, end, (scanned, found) in scanner.batches(first, last):
                outcome.versions_scanned += scanned
                append_flags(found)
                if on_progress:
                    on_progress(end - first + 1, total)
            outcome.unscannable = retrying.unscannable + scanner.unscannable
        store._insert(
            "scan_runs",
            {
                "id": scan_id,
                "run_id": run_id,
                "rules_version": detector.version,
                "mode": mode,
                "from_version_id": first,
                "to_version_id": last,
                "versions_scanned": outcome.versions_scanned,
                "flags_added": outcome.flags_added,
                "started_at": started,
                "finished_at": iso(utcnow()),
            },
        )
        for version_id in retry:
            store._insert("scan_retries", {"scan_id": scan_id, "version_id": version_id})
        if outcome.unscannable and store._columns("scan_skips").kinds:  # none before migration 0018
            for version_id, item_key, error in outcome.unscannable:
                skip = {"version_id": version_id, "item_key": item_key, "rules_version": detector.version}
                store._insert("scan_skips", {"scan_id": scan_id, **skip, "error": error})
        # what the scan found, and the run's versions and events before it, in the review queue
        record_flag_states(store, "scan")
    return outcome


def append_review(store: Store, flag_id: int, decision: str, reviewer: str, note: str | None) -> int:
    """Append a reviewer's decision on a flag, and the operating-system account that recorded it (review_operators);
    returns the review's id. Earlier reviews stay as they were."""
    if decision not in DECISIONS:
        raise ConfigError(f"--decision {decision!r}: must be one of {', '.join(DECISIONS)}")
    if not reviewer.strip():
        raise ConfigError("--reviewer: empty; give the name of the person who reviewed the flag")
    # an id beyond SQLite's 64-bit integers is no flag either (sqlite3 would raise OverflowError on it)
    if not 0 < flag_id < 2**63 or store.conn.execute("SELECT 1 FROM flags WHERE id = ?", (flag_id,)).fetchone() is None:
        raise ConfigError(f"flag {flag_id}: no such flag in {store.path}; see the flag_queue in Datasette")
    with store.transaction():
        review_id = store._insert(
            "flag_reviews",
            {
                "flag_id": flag_id,
                "decision": decision,
                "reviewer": reviewer.strip(),
                "note": note,
                "created_at": iso(utcnow()),
            },
        )
        # the name given is whatever was typed: the account the system ran this as goes beside it
        store._insert("review_operators", {"review_id": review_id, "operator": operator_name()})
        # a decision carries over to the same hit on the same item only
        item_key = store.conn.execute("SELECT item_key FROM flags WHERE id = ?", (flag_id,)).fetchone()[0]
        record_flag_states(store, "review", [item_key])
        return review_id


def scan_after_run(
    store: Store, config: Config, run_id: str, notices: list[str], scanner: VersionScanner | None = None
) -> ScanOutcome | None:
    """The end of `archiver run`: scan the new versions (`scanner` holds what was detected during the capture).
    A failure here, expected or not, is a notice and a log line, never a lost run (the captures are already
    committed, and the run still records its result, signs and alerts); None tells the run it failed. Versions
    left out (`outcome.problem`) are a notice too. The run then alerts what is owed (scan/delivery.py)."""
    try:
        detector = scanner.detector if scanner is not None else build_detector(config)
        outcome = append_scan(store, detector, mode="new", run_id=run_id, scanner=scanner)
    except (ArchiverError, OSError) as exc:
        message = f"PHI scan failed: {exc}; fix it and run `archiver scan`"
        log.error(message)
        notices.append(message)
        return None
    except Exception as exc:  # a bug: nothing of the scan was appended, and the next run scans the same versions
        message = f"PHI scan failed: unexpected {type(exc).__name__}: {exc}; fix it and run `archiver scan`"
        log.error(message)
        log.debug("PHI scan failed", exc_info=True)
        notices.append(message)
        return None
    notices.append(outcome.summary())
    problem = outcome.problem()
    if problem is not None:
        log.error(problem)
        notices.append(problem)
    return outcome


def scan_text_lines(detector: Detector, lines: Iterable[bytes], source: str) -> Iterator[dict[str, Any]]:
    """`archiver scan --text`: one result per JSON line with `id` and `text` (optional `kind`, `author`).
    Lines come as bytes and are decoded one by one, so a line that is not UTF-8 is named by its number."""
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{source}: line {number}: byte 0x{raw[exc.start]:02x} is not UTF-8; save the file as UTF-8"
            ) from None
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: line {number}: not JSON ({exc.msg}); one JSON object a line") from None
        if not isinstance(record, dict) or "id" not in record or not isinstance(record.get("text"), str):
            raise ConfigError(f"{source}: line {number}: needs an `id` and a string `text`")
        hits = detector.detect(record["text"], record.get("kind"), record.get("author"))
        yield {
            "id": record["id"],
            "flagged": bool(hits),
            "flags": [
                {
                    "category": h.category,
                    "rule": h.rule_id,
                    "severity": h.severity,
                    "span": [h.start, h.end],
                    "reason": h.reason,
                }
                for h in hits
            ],
        }


def open_text_source(path: str) -> tuple[BinaryIO, str]:
    """The `--text` argument as a readable binary stream ("-" is stdin) and its name for messages."""
    if path == "-":
        return sys.stdin.buffer, "<stdin>"
    try:
        return open(path, "rb"), path  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}); give a JSON Lines file or - for stdin") from None
