"""PHI detection over item versions, in worker processes when there are many: read by id range, hits back.

Detection is pure CPU and every text stands alone, so a large scan can use every core. The workers only
read (their own read-only connection; WAL lets them read while a run writes) and send their hits back; the
one writer still appends every flag, in version order, exactly as a scan in one process would.

A run hands each committed batch of versions to the workers as it goes (`committed`), so most of its scan is
done by the time the capture ends. A small scan never starts a worker: a process costs about half a second.

A batch whose detection raises is detected again here, version by version: a version whose detection raises
alone (a detector bug on an odd text) is left out and named (`unscannable`), so that one text never blocks every
later scan; more of them than UNSCANNABLE_LIMIT in one scan is a broken detector, and the scan fails whole.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sqlite3
import threading
import traceback
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

from ..errors import ArchiverError
from .engine import Detector, Hit
from .fields import RAW_PLATFORMS, OutsideHit, detect_outside, parse_fields, quoted_fields

log = logging.getLogger("archiver.scan")

BATCH = 1000  # versions a task: a few hundred milliseconds of detection
# Versions to scan before workers are worth starting (the tests set it low).
PARALLEL_FROM = int(os.environ.get("ARCHIVER_SCAN_PARALLEL_FROM", "4000"))
# Versions of one scan whose detection may raise before the detector counts as broken (see DetectionFailed).
UNSCANNABLE_LIMIT = 20
# How long closing waits for a worker it terminated (a stop must not hang on one that does not end).
TERMINATE_WAIT = 10.0

Detection = tuple[int, str, list[Hit | OutsideHit]]  # version id, item key, its hits (only versions with hits)
Batch = tuple[int, list[Detection]]  # versions read, and those with hits
Unscannable = tuple[int, str, str]  # version id, item key, the error (its type and where it was raised)

_worker: tuple[Detector, sqlite3.Connection] | None = None  # a worker process's detector and connection


# `by_account`: written by the archived account itself, known by its platform id (the `accounts` table) where
# connectors have no handle for it (a Facebook Page's comments and Messenger replies); own_handles still count.
# raw_json (~1.5 KB a version) is read only for the platforms fields.py reads it for: an X archive's scan would
# otherwise page every version's whole raw JSON in from disk for nothing.
VERSIONS = f"""
SELECT v.id, v.item_key, v.kind, v.text, v.author_handle, v.platform, v.media,
       CASE WHEN v.platform IN ({", ".join(f"'{p}'" for p in RAW_PLATFORMS)}) THEN v.raw_json END,
       EXISTS (SELECT 1 FROM accounts a WHERE a.name = v.account AND a.platform = v.platform
               AND a.platform_account_id = v.author_id) AS by_account
FROM item_versions v WHERE v.id BETWEEN ? AND ? ORDER BY v.id
"""


def detect_versions(conn: sqlite3.Connection, detector: Detector, first: int, last: int) -> Batch:
    """Detect over the versions with ids first..last, in id order: each one's text, then what it says outside
    its text (alt text, content warnings, polls, link previews: see fields.py)."""
    rows = conn.execute(VERSIONS, (first, last)).fetchall()
    found = []
    for version_id, item_key, kind, text, author, platform, media, raw_json, by_account in rows:
        own = True if by_account else None
        hits: list[Hit | OutsideHit] = list(detector.detect(text, kind, author, own=own))
        fields = parse_fields(platform, text, media, raw_json)
        hits.extend(detect_outside(detector, fields, kind, author, own, quoted_fields(platform, raw_json)))
        if hits:
            found.append((version_id, item_key, hits))
    return len(rows), found


class DetectionFailed(ArchiverError):
    """Detection raised on more versions of one scan than UNSCANNABLE_LIMIT: the detector (or a rule) is broken,
    not one odd text. The scan appends nothing, so the next one scans the same versions again."""


def _start_worker(detector: Detector, uri: str) -> None:
    global _worker
    # A Ctrl-C on a terminal reaches the whole process group: the run decides how to stop, and shuts us down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker = detector, sqlite3.connect(uri, uri=True)  # store.readonly_uri, made by the run's process


def _detect_in_worker(first: int, last: int) -> Batch:
    assert _worker is not None, "worker not started"
    detector, conn = _worker
    return detect_versions(conn, detector, first, last)


def worker_count(setting: int | None) -> int:
    """`[scan] workers`: 0 keeps detection in the archiver's own process; None means one a core but the one
    the capture itself uses (none on a single core)."""
    return max(0, (os.cpu_count() or 1) - 1) if setting is None else setting


class VersionScanner:
    """Detections for ranges of committed item versions, batch by batch, from worker processes or in-process.

    `start` is the first version id the scan will ask for (batches are aligned on it, so that what was done
    ahead is found again). `conn` is the caller's connection, for what is detected in this process.

    Batches wait in a queue of ours and go to the pool a few at a time (one more than there are workers), so
    this process can take back the last ones while it waits for the first: once the capture is over it
    detects too. Nothing handed to the pool is cancelled while the scan goes on; closing it before the end (a
    stop, an error) cancels the rest and ends the workers rather than wait for one deep in a text.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        database: Path,
        detector: Detector,
        start: int,
        workers: int = 0,
        parallel_from: int | None = None,
    ):
        self.conn = conn
        self.database = database
        self.detector = detector
        self.start = start
        self.workers = workers if workers > 0 and _picklable(detector) else 0
        self.parallel_from = PARALLEL_FROM if parallel_from is None else parallel_from
        self.handed_over = 0  # batches given to the workers
        self.done_by_workers = 0  # and of those, the ones a worker did (the others were taken back)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()  # the queue is topped up from the pool's thread as batches finish
        self._queued: deque[tuple[int, int]] = deque()  # batches for the workers, not in the pool yet
        self._in_pool: dict[int, tuple[int, Future[Batch]]] = {}  # batch start -> (its end, its detection)
        self._running: set[Future[Batch]] = set()  # handed to the pool and not done (taken or not)
        self._lost = False  # a submit failed midway: the pool may run a batch nobody waits for
        self._done_here: dict[int, Batch] = {}  # batches taken back, done in this process
        self._next = start  # the first version id not handed over yet
        self.unscannable: list[Unscannable] = []  # versions whose detection raised alone, left out of the batches

    def committed(self, last: int) -> None:
        """Versions up to `last` are committed: queue every full batch of them for the workers, starting the
        workers once enough are waiting."""
        if not self.workers:
            return
        if self._pool is None and last - self._next + 1 < self.parallel_from:
            return
        while self._next + BATCH - 1 <= last:
            self._hand_over(self._next, self._next + BATCH - 1)

    def batches(self, first: int, last: int) -> Iterator[tuple[int, int, Batch]]:
        """(first id, last id, detections) for first..last in order: what was handed over ahead, the rest now."""
        if first == self.start and self.workers:
            self.committed(last)
            if self._pool is not None:
                while self._next <= last:  # the last, partial batch too
                    self._hand_over(self._next, min(last, self._next + BATCH - 1))
        cursor = first
        while cursor <= last:
            end = min(last, cursor + BATCH - 1)
            yield cursor, end, self._result(cursor, end)
            cursor = end + 1

    def close(self) -> None:
        """Shut the workers down: at once, ending them, when one may still be busy (the scan was stopped or
        failed): a worker deep in one text would otherwise hold the run, and its lock, until it is done."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with self._lock:
            busy = bool(self._running) or self._lost
        if not busy:
            pool.shutdown(wait=True)
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())  # the pool's own workers
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()  # they only read: nothing is lost
        for process in processes:
            process.join(TERMINATE_WAIT)
            if process.is_alive():
                process.kill()

    def __enter__(self) -> VersionScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _hand_over(self, first: int, last: int) -> None:
        if self._pool is None:
            # spawn: a fresh interpreter, never a fork of a process with threads and an open database
            from ..store import readonly_uri  # here: the workers need not import the store

            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.detector, readonly_uri(self.database)),
            )
        with self._lock:
            self._queued.append((first, last))
            self.handed_over += 1
        self._next = last + 1
        self._top_up()

    def _top_up(self) -> None:
        """Keep one batch more than there are workers in the pool."""
        submitted: list[Future[Batch]] = []
        with self._lock:
            while self._queued and self.workers:
                if sum(1 for _, f in self._in_pool.values() if not f.done()) > self.workers:
                    break
                first, last = self._queued.popleft()
                try:
                    future = self._pool.submit(_detect_in_worker, first, last) if self._pool else None
                except (BrokenProcessPool, RuntimeError, OSError) as exc:
                    # A worker died, or none could be started (EAGAIN at RLIMIT_NPROC or a container's pids
                    # limit): go on in this process. The pool may hold the batch anyway: never waited for.
                    log.warning("PHI scan workers stopped (%s); scanning in the archiver's process", exc)
                    self._queued.appendleft((first, last))
                    self.workers = 0
                    self._lost = isinstance(exc, OSError)
                    break
                if future is None:
                    break
                self._in_pool[first] = last, future
                self._running.add(future)
                submitted.append(future)
        # Outside the lock: a future already done runs its callback at once, in this thread, and the callback
        # takes the lock (inside it, a batch a worker finished that fast hung the run).
        for future in submitted:
            future.add_done_callback(self._done)

    def _done(self, future: Future[Batch]) -> None:
        """A batch left the pool (done, failed or cancelled): one fewer a stop must end; queue the next."""
        with self._lock:
            self._running.discard(future)
        self._top_up()

    def _result(self, first: int, last: int) -> Batch:
        with self._lock:
            done = self._done_here.pop(first, None)
            end, future = self._in_pool.pop(first, (last, None))
            if future is None and self._queued and self._queued[0][0] == first:
                self._queued.popleft()  # not in the pool yet: this process does it
        if done is not None:
            return done
        if future is None or end != last:
            return self._detect_here(first, last)
        while not future.done() and self._take_back_last():
            pass
        try:
            found = future.result()
        except BrokenProcessPool as exc:
            log.warning("PHI scan worker stopped (%s); scanning versions %d-%d here", exc, first, last)
            return self._detect_here(first, last)
        except Exception as exc:  # raised in the worker (a text, its connection): this process tries again
            log.warning("PHI scan worker failed (%s); scanning versions %d-%d here", type(exc).__name__, first, last)
            return self._detect_here(first, last)
        self.done_by_workers += 1
        return found

    def _take_back_last(self) -> bool:
        """Detect the last batch still queued here; False when none is left."""
        with self._lock:
            if not self._queued:
                return False
            first, last = self._queued.pop()
        self._done_here[first] = self._detect_here(first, last)
        return True

    def _detect_here(self, first: int, last: int) -> Batch:
        """Detect first..last in this process; when that raises, version by version, leaving out (and naming)
        each version whose detection raises alone. An error of the database is no text's: it goes up."""
        try:
            return detect_versions(self.conn, self.detector, first, last)
        except sqlite3.Error:
            raise
        except Exception as exc:
            log.debug("detection raised on versions %d-%d (%s): one by one now", first, last, type(exc).__name__)
        scanned, found = 0, []
        for version_id in range(first, last + 1):
            try:
                count, hits = detect_versions(self.conn, self.detector, version_id, version_id)
            except sqlite3.Error:
                raise
            except Exception as exc:
                self._left_out(version_id, exc)
                continue
            scanned += count
            found.extend(hits)
        return scanned, found

    def _left_out(self, version_id: int, exc: Exception) -> None:
        # The error's type and where it was raised, never its message: that can quote the text (PHI), and the
        # notice goes to logs and mail.
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        error = f"{type(exc).__name__} at {os.path.basename(frame.filename)}:{frame.lineno}"
        row = self.conn.execute("SELECT item_key FROM item_versions WHERE id = ?", (version_id,)).fetchone()
        self.unscannable.append((version_id, row[0] if row else "?", error))
        log.warning("PHI scan: version %d could not be scanned (%s)", version_id, error)
        if len(self.unscannable) > UNSCANNABLE_LIMIT:
            raise DetectionFailed(
                f"detection raised on more than {UNSCANNABLE_LIMIT} versions (the last, version {version_id}: "
                f"{error}): the detector or a rule is broken, not one text; nothing of this scan was appended"
            )


def _picklable(detector: Detector) -> bool:
    """Whether the detector can go to a worker (a spaCy person finder cannot: it stays in-process)."""
    try:
        pickle.dumps(detector)
    except (pickle.PicklingError, TypeError, AttributeError):
        return False
    return True
