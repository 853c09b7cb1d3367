"""PHI detection in worker processes: the same flags, in the same order, as detection in one process; a run
hands its committed versions to the workers during the capture; a detector that cannot go to a worker, or a
worker that dies, leaves the scan to the archiver's own process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
from concurrent import futures
from datetime import UTC, datetime
from pathlib import Path

import pytest

from archiver import pipeline
from archiver.config import load_config
from archiver.consent.check import CATEGORY as CONSENT_CATEGORY
from archiver.demo.run import run_demo
from archiver.scan import archive as scan_archive
from archiver.scan import parallel
from archiver.scan.alerts import ALERT_LISTED
from archiver.scan.archive import append_scan, build_detector
from archiver.scan.engine import Detector
from archiver.scan.parallel import VersionScanner, detect_versions
from archiver.scan.rules import load_rules
from archiver.store import Store

from .test_store import make_item

EVAL = Path(__file__).parent / "data" / "phi_eval.jsonl"
FLAG_FIELDS = "version_id, item_key, rule_id, rules_version, category, severity, span_start, span_end, matched, reason"


def archive_of_eval_texts(path: Path, copies: int = 3) -> Store:
    """An archive whose versions are the labelled texts (PHI and not), `copies` times over."""
    texts = [json.loads(line) for line in EVAL.read_text().splitlines() if line.strip()]
    store = Store.open(path)
    store.append_run("run1", "host", "0" * 64, ["a"])
    with store.transaction():
        for copy in range(copies):
            for n, record in enumerate(texts):
                key = f"mastodon:h:{copy}-{n}"
                item = make_item(record["text"], item_key=key, native_id=key, kind=record.get("kind", "comment"))
                store.append_item("a", item, "run1")
    return store


def flags_of(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute(f"SELECT {FLAG_FIELDS} FROM flags ORDER BY id").fetchall()


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(parallel, "BATCH", 97)


def test_workers_append_exactly_the_flags_one_process_appends(tmp_path, small_batches):
    detector = Detector(load_rules())
    alone = archive_of_eval_texts(tmp_path / "alone.db")
    together = archive_of_eval_texts(tmp_path / "together.db")
    try:
        one = append_scan(alone, detector, mode="new")
        scanner = VersionScanner(together.conn, together.path, detector, 1, workers=2, parallel_from=0)
        last = together.last_version_id()
        scanner.committed(last)  # every full batch queued; wait for the first ones the workers took
        futures.wait([future for _, future in scanner._in_pool.values()])  # noqa: SLF001
        two = append_scan(together, detector, mode="new", scanner=scanner)
        assert scanner.handed_over == -(-last // parallel.BATCH)  # every batch, the last partial one too
        assert scanner.done_by_workers >= 3  # those waited for (workers + 1), and more
        assert one.versions_scanned == two.versions_scanned == together.last_version_id()
        assert one.flags_added == two.flags_added > 100
        assert len(one.flags) <= 3 * ALERT_LISTED  # held for the alert: bounded, no PHI, kept small
        assert not any("matched" in flag for flag in one.flags)
        assert flags_of(alone.conn) == flags_of(together.conn)
    finally:
        alone.close()
        together.close()


def test_a_small_scan_starts_no_worker(tmp_path):
    store = archive_of_eval_texts(tmp_path / "a.db", copies=1)
    try:
        scanner = VersionScanner(store.conn, store.path, Detector(load_rules()), 1, workers=2)
        append_scan(store, scanner.detector, mode="new", scanner=scanner)
        assert store.last_version_id() < parallel.PARALLEL_FROM
        assert scanner.handed_over == 0
    finally:
        store.close()


def test_a_detector_that_cannot_go_to_a_worker_scans_in_process(tmp_path):
    store = archive_of_eval_texts(tmp_path / "a.db", copies=1)
    try:
        with_finder = Detector(load_rules(), person_finder=lambda text: [])  # like spaCy's: not picklable
        scanner = VersionScanner(store.conn, store.path, with_finder, 1, workers=2, parallel_from=0)
        assert scanner.workers == 0
        outcome = append_scan(store, with_finder, mode="new", scanner=scanner)
        assert scanner.handed_over == 0
        assert outcome.versions_scanned == store.last_version_id()
    finally:
        store.close()


def test_batches_no_worker_has_taken_are_done_by_the_process(tmp_path, small_batches):
    store = archive_of_eval_texts(tmp_path / "a.db")
    detector = Detector(load_rules())
    last = store.last_version_id()
    try:
        expected = list(detect_versions(store.conn, detector, 1, last)[1])
        with VersionScanner(store.conn, store.path, detector, 1, workers=1, parallel_from=0) as scanner:
            found = [hit for _, _, (_, batch) in scanner.batches(1, last) for hit in batch]
        assert found == expected
        assert scanner.handed_over == -(-last // parallel.BATCH)
        assert scanner.done_by_workers < scanner.handed_over  # one worker, just started: most were taken back
    finally:
        store.close()


def test_a_worker_that_dies_leaves_its_batches_to_the_process(tmp_path, small_batches):
    store = archive_of_eval_texts(tmp_path / "a.db", copies=1)
    detector = Detector(load_rules())
    last = store.last_version_id()
    try:
        expected = list(detect_versions(store.conn, detector, 1, last)[1])
        with VersionScanner(store.conn, store.path, detector, 1, workers=2, parallel_from=0) as scanner:
            scanner.committed(last)
            assert scanner.handed_over > 0
            for process in list(scanner._pool._processes.values()):  # noqa: SLF001 - the pool's own workers
                os.kill(process.pid, signal.SIGKILL)
            found = [hit for _, _, (_, batch) in scanner.batches(1, last) for hit in batch]
        assert found == expected
    finally:
        store.close()


def test_a_run_hands_its_committed_versions_to_the_workers_during_the_capture(tmp_path, monkeypatch, small_batches):
    """The demo (seven sample platforms, two runs) with workers forced on and a commit every few items: the
    flags are those of detecting every version in one process, and batches went to the workers while the
    capture was still going."""
    monkeypatch.setattr(pipeline, "COMMIT_EVERY", 13)
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    monkeypatch.setattr(scan_archive, "worker_count", lambda setting: 2)
    during_capture: list[int] = []
    committed = VersionScanner.committed

    def spy(self: VersionScanner, last: int) -> None:
        committed(self, last)
        during_capture.append(self.handed_over)

    monkeypatch.setattr(VersionScanner, "committed", spy)
    outcome = run_demo(tmp_path, echo=lambda line: None, now=datetime(2026, 11, 20, 12, tzinfo=UTC))
    assert outcome.exit_code == 0
    assert max(during_capture) > 5

    config = load_config(tmp_path / "archiver.toml")
    detector = build_detector(config)
    conn = sqlite3.connect(config.archive.database)
    try:
        expected = [
            (version_id, item_key, hit.rule_id, hit.category, hit.start, hit.end, hit.matched)
            for version_id, item_key, hits in detect_versions(conn, detector, 1, 10**9)[1]
            for hit in hits
        ]
        found = conn.execute(
            "SELECT version_id, item_key, rule_id, category, span_start, span_end, matched FROM flags"
            " WHERE category != ? ORDER BY id",
            (CONSENT_CATEGORY,),  # the consent check's flags come after, from its own rules
        ).fetchall()
    finally:
        conn.close()
    assert len(expected) > 50
    assert found == expected


class InstantPool:
    """A pool whose batches are done the moment they are submitted, as a fast worker's can be by the time
    add_done_callback is called: the callback then runs at once, in the submitting thread."""

    def __init__(self, conn: sqlite3.Connection, detector: Detector):
        self.conn, self.detector = conn, detector

    def submit(self, fn, first: int, last: int) -> futures.Future:
        done: futures.Future = futures.Future()
        done.set_result(detect_versions(self.conn, self.detector, first, last))
        return done

    def shutdown(self, wait: bool = True) -> None:
        pass


def test_a_batch_done_before_its_callback_is_attached_does_not_hang_the_scan(tmp_path, small_batches):
    """The queue was topped up under a lock that the done-callback takes too: a batch finished that fast ran
    the callback inside the lock, and the run hung (seen once in the full suite, a demo run under load)."""
    store = archive_of_eval_texts(tmp_path / "a.db", copies=1)
    detector = Detector(load_rules())
    last = store.last_version_id()
    try:
        expected = list(detect_versions(store.conn, detector, 1, last)[1])
        scanner = VersionScanner(store.conn, store.path, detector, 1, workers=2, parallel_from=0)
        scanner._pool = InstantPool(store.conn, detector)  # noqa: SLF001 - the pool a run starts, instant
        found: list = []

        def scan() -> None:
            found.extend(hit for _, _, (_, batch) in scanner.batches(1, last) for hit in batch)

        worker = threading.Thread(target=scan, daemon=True)
        worker.start()
        worker.join(60)  # a guard against a hang, not a measure of speed
        assert not worker.is_alive(), "the scan hung"
        assert found == expected and scanner.done_by_workers == scanner.handed_over > 0
    finally:
        store.close()
