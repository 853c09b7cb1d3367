"""One archive run: for each account, connector -> WARC -> store, then close the WARC and record the outcome.

Order of durability: the WARC holds an exchange before it is parsed, and it is fsynced before the rows
that point into it are committed. A failing account is recorded with a one-line error and the run goes on; a
failing disk (full, a quota, read-only, an I/O error, a WARC folder that refuses writes) is no account's failure:
the run stops as a whole with one line naming the file (StorageError), keeping what it committed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sqlite3
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .access_log import access_log_head, access_log_path
from .checkpoints import (
    PRIVATE_KEY,
    PUBLIC_KEY,
    Checkpoint,
    ensure_signing_key,
    fingerprint,
    load_private_key,
    public_b64,
    publish_copy,
    restore_copies,
    restore_public_key,
    sign_checkpoint,
)
from .config import AccountConfig, ArchiveConfig, Config, resolve_token
from .connectors import connector_for, parser_revisions, request_revisions
from .connectors.base import (
    ACCOUNT_REQUESTS_FIELD,
    PARSER_REVISIONS_FIELD,
    REVISIONS_FIELD,
    Connector,
    FetchWindow,
    account_requests,
)
from .consent.check import consent_check_after_run
from .consent.state import local_today
from .errors import NOTHING_LOST, ArchiverError, ConfigError, Interrupted, StorageError, StoreError, storage_failure
from .flag_states import record_flag_states
from .http import CapturingSession, Redactor, Session
from .items import AccountIdentity, CursorUpdate, Deletion, Item, MediaFile, Notice, without_lone_surrogates
from .lock import archive_lock
from .recovery import (
    TORN_DIR,
    file_sha256,
    interrupted_runs,
    recoveries,
    run_of,
    scan_warc,
    set_aside_torn_tail,
)
from .scan.alerts import send_failure_alert, send_stopped_alert
from .scan.archive import scan_after_run, start_scanner
from .scan.delivery import alert_after
from .store import AccountNames, KnownItem, Store
from .warc import WarcWriter, iso, utcnow

log = logging.getLogger("archiver.run")

# Set by a run on every account it captures, and so recorded in its warcinfo's account-requests: its runs re-check
# the captures of the account's earlier names (StoreAccountState.identified), which asks more of the platform, so
# the replay of a run does so only where the run did (runs of before it did not). No config sets it: every
# platform's options schema refuses a key it does not know.
EARLIER_NAMES_OPTION = "recheck_earlier_names"

# Observations per transaction: a bounded loss window with few fsyncs. The crash tests set it low through
# the environment so that kills land between committed batches.
COMMIT_EVERY = int(os.environ.get("ARCHIVER_COMMIT_EVERY", "500"))

# How the one line of a run stopped by a failing disk ends: what a person may rely on once it is fixed.
RUN_STOPPED = f"{NOTHING_LOST}: the next run takes up what this one left"


@dataclass
class AccountResult:
    account: str
    platform: str
    status: str = "ok"
    requests: int = 0
    new_items: int = 0
    new_versions: int = 0
    deletions: int = 0
    restorations: int = 0
    media: int = 0
    notices: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class RunResult:
    run_id: str
    accounts: list[AccountResult]
    warc_files: list[str]
    notices: list[str] = field(default_factory=list)
    interrupted: bool = False
    checks_failed: bool = False  # the PHI scan or the consent check at the end failed (the captures are kept)

    @property
    def ok(self) -> bool:
        """Every account captured (what the end-of-run checks found aside: see `status`)."""
        return all(a.status == "ok" for a in self.accounts)

    @property
    def status(self) -> str:
        return "ok" if self.ok and not self.checks_failed else "failed"

    @property
    def exit_code(self) -> int:
        return Interrupted.exit_code if self.interrupted else 0 if self.status == "ok" else 1

    def summary(self) -> dict:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "interrupted": self.interrupted,
            "accounts": [asdict(a) for a in self.accounts],
            "warc_files": self.warc_files,
            "notices": self.notices,
        }


class RunProgress:
    """Receives a run's progress; the CLI renders it (rich on a terminal, log lines under cron)."""

    def account_started(self, account: AccountConfig) -> None: ...
    def observed(self, result: AccountResult) -> None: ...
    def waiting(self, account: str, message: str) -> None: ...
    def account_finished(self, result: AccountResult) -> None: ...


class RunTransaction:
    """The run's one write transaction, shared by the platform threads: commits in batches under one lock.

    Every database call of a run happens under `lock`, which is also the WARC writer's lock, so a WARC
    rotation (which appends a row) and an observation never interleave. Before each commit the WARC is
    synced: no committed row points at data that could still be lost.

    A storage failure (a full disk, an I/O error: errors.storage_condition) or SQLite ending the transaction by
    itself (it rolls back on an I/O error in COMMIT) stops the whole run: `failure` keeps the error that says so,
    and every thread's next write raises it instead of writing, so nothing is ever appended outside the transaction.
    `then` ends its message: what the stop means for the command.
    """

    def __init__(
        self,
        store: Store,
        sync: Callable[[], None],
        lock: threading.RLock,
        every: int = 0,
        on_commit: Callable[[], None] | None = None,
        run_id: str | None = None,
        then: str = NOTHING_LOST,
    ):
        self.store = store
        self.sync = sync
        self.lock = lock
        self.every = every or COMMIT_EVERY
        self.pending = 0
        self.on_commit = on_commit  # told (lock held) after each commit: the PHI scan starts on what is committed
        # A live run records with each commit how many observations of each account it has applied (run_progress):
        # a replay of a run that did not finish applies that many and no more. None: not recorded (a replay).
        self.run_id = run_id
        self.observations: dict[str, int] = {}
        self.unrecorded: set[str] = set()
        self.then = then
        self.failure: ArchiverError | None = None

    def _record_progress(self) -> None:
        if self.run_id is not None and self.unrecorded:
            self.store.append_run_progress(self.run_id, {a: self.observations[a] for a in sorted(self.unrecorded)})
            self.unrecorded.clear()

    def __enter__(self) -> RunTransaction:
        with self.lock:
            self.store.begin()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        with self.lock:
            if exc_type is not None:
                if not self.store.conn.in_transaction:
                    return  # SQLite ended it (a commit that failed: a full disk); the error goes up as it was
                # Never commit after an error: what follows the last commit may point at WARC data not synced,
                # and a second failure would hide the first. Rows not committed are captured again next run.
                try:
                    self.store.rollback()
                except sqlite3.Error as error:
                    log.warning("could not roll the run's last transaction back (%s); SQLite does on close", error)
                return
            self.check()
            self.sync()
            self._record_progress()
            self.store.commit()
            self._committed()

    def applied(self, account: str) -> bool:
        """Count one observation of `account` (lock held); True when this made a commit."""
        self.observations[account] = self.observations.get(account, 0) + 1
        self.unrecorded.add(account)
        self.pending += 1
        if self.pending < self.every:
            return False
        self.commit()
        return True

    def commit(self) -> None:
        with self.lock:
            self.check()
            self.sync()
            self._record_progress()
            self.store.commit()
            self.store.begin()  # first: whatever on_commit does, the run's writes stay inside a transaction
            self.pending = 0
            self._committed()

    def check(self) -> None:
        """Before a write (lock held): raise the error that stopped the run, if one did, or if the transaction is
        gone without one (whatever ended it, a write now would be committed on its own)."""
        if self.failure is None and not self.store.conn.in_transaction:
            self.failure = StoreError(
                f"{self.store.path}: the run's transaction ended without a commit (SQLite rolled it back after an "
                f"error); the run stopped there; {self.then}"
            )
        if self.failure is not None:
            raise type(self.failure)(str(self.failure))

    def stopping(self, exc: BaseException) -> ArchiverError | None:
        """The error that stops the run, if `exc` is one (a storage failure, or an error SQLite ended the transaction
        on) or came after one: the first one, said once for every thread. None: `exc` is the account's alone."""
        with self.lock:
            if self.failure is None:
                self.failure = storage_failure(exc, database=self.store.path, then=self.then)
            if self.failure is None and not self.store.conn.in_transaction:
                # SQLite's own words, not another error's (a connector's may quote what an account must not show)
                after = f"{type(exc).__name__}: {exc}" if isinstance(exc, sqlite3.Error) else type(exc).__name__
                self.failure = StoreError(
                    f"{self.store.path}: SQLite rolled the run's transaction back after {after}; the run stopped "
                    f"there; {self.then}"
                )
            return None if self.failure is None else type(self.failure)(str(self.failure))

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """A block of the run's database writes: the lock held, refused once the run is stopping, and an error in it
        that stops the run recorded before the lock is let go (no other thread writes in between)."""
        with self.lock:
            self.check()
            try:
                yield
            except Exception as exc:
                self.stopping(exc)
                raise

    def _committed(self) -> None:
        """Tell on_commit; a failure there (the scan's head start) never ends the capture: the scan after the
        capture detects what the workers did not, so the head start is only given up."""
        if self.on_commit is None:
            return
        try:
            self.on_commit()
        except Exception as exc:
            if self.stopping(exc) is not None:
                raise  # a disk failing under the scan's head start fails the capture's writes as much
            log.warning(
                "PHI scan during the capture stopped (unexpected %s: %s); the scan after the capture does it",
                type(exc).__name__,
                exc,
            )
            self.on_commit = None


class StoreAccountState:
    """The read-only view of the archive a connector gets for one account (its reads take the run's lock).

    Once the run has observed the account's platform identity (`identified`), the captures its earlier names made
    (an account renamed in the config) are its own: `known_items` includes them and every item reports them as
    captured by this account, so a rename changes nothing of what its runs re-check."""

    def __init__(self, store: Store, account: str, lock: threading.RLock | None = None, run_id: str | None = None):
        self.store = store
        self.account = account
        self.lock = lock or threading.RLock()
        self.run_id = run_id
        self.names = AccountNames.alone(account)

    def identified(self, account: AccountConfig, identity: AccountIdentity) -> AccountNames:
        """Take up the names the archive records as the platform account the run observed (lock held)."""
        self.names = self.store.account_names(
            self.account, account.platform, account.api_base, identity.platform_account_id, self.run_id
        )
        return self.names

    def _as_own(self, known: KnownItem) -> KnownItem:
        if known.account != self.account and known.account in self.names.same:
            return replace(known, account=self.account)
        return known

    def cursor(self, name: str) -> str | None:
        with self.lock:
            return self.store.cursor(self.account, name)

    def has_media(self, url: str) -> bool:
        with self.lock:  # the url as a MediaFile or an item's media entry holds it (items.py)
            return self.store.has_media(without_lone_surrogates(url))

    def latest(self, item_key: str) -> KnownItem | None:
        with self.lock:
            row = self.store.latest_version(item_key)
            deleted = row is not None and self.store.is_deleted(item_key)
        if row is None:
            return None
        known = KnownItem(
            row["item_key"],
            row["native_id"],
            row["kind"],
            row["thread_key"],
            row["conversation_key"],
            row["parent_key"],
            row["created_at"],
            row["edited_at"],
            row["content_sha256"],
            deleted,
            row["account"],
            row["visibility"],
        )
        return self._as_own(known)

    def first_archived_since(self, item_key: str, since: str, kinds: tuple[str, ...] = ()) -> bool:
        with self.lock:
            return self.store.first_archived_since(self.account, item_key, since, kinds)

    def known_items(
        self,
        *,
        created_since: str | None = None,
        kinds: tuple[str, ...] = (),
        thread_key: str | None = None,
        conversation_key: str | None = None,
        key_prefix: str | None = None,
    ) -> list[KnownItem]:
        with self.lock:
            found = self.store.known_items(
                self.names.recheck,
                created_since=created_since,
                kinds=kinds,
                thread_key=thread_key,
                conversation_key=conversation_key,
                key_prefix=key_prefix,
            )
        return [self._as_own(known) for known in found]

    def thread_items(self, thread_key: str) -> list[KnownItem]:
        with self.lock:
            found = self.store.thread_items(thread_key)
        return [self._as_own(known) for known in found]


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def register_orphan_warcs(store: Store, warc_dir: Path) -> list[str]:
    """Record the WARC files interrupted runs left behind, a torn tail set aside first (see recovery.py)."""
    notices = []
    known = store.known_warc_files()
    interrupted = interrupted_runs(store.conn)
    recovered = recoveries(store.conn)
    for path in sorted(warc_dir.glob("*.warc.gz")):
        if path.name in known:
            continue
        run = run_of(path.name)
        if run not in interrupted:
            notices.append(f"WARC file {path.name} is not from an interrupted run of this archive; left alone")
            continue
        if run in recovered:  # its files were all recorded when run `by` started: this one came later
            notices.append(
                f"WARC file {path.name} names interrupted run {run}, whose files run {recovered[run].by} recorded: "
                "it appeared since, so it is not recorded; `archiver verify` reports it"
            )
            continue
        scan = scan_warc(path)
        if scan.records == 0:
            (warc_dir / TORN_DIR).mkdir(exist_ok=True)
            path.rename(warc_dir / TORN_DIR / path.name)
            notices.append(f"WARC file {path.name} of interrupted run {run} held no complete record: moved to torn/")
            continue
        if scan.torn:
            aside = set_aside_torn_tail(path, scan)
            notices.append(
                f"WARC file {path.name} of interrupted run {run}: torn tail after offset {scan.complete_bytes} "
                f"moved to {aside.relative_to(warc_dir)}"
            )
        with store.transaction():
            store.append_warc_file(run, path.name, file_sha256(path), path.stat().st_size, scan.records)
        notices.append(f"WARC file {path.name} of interrupted run {run} recorded ({scan.records} records)")
    return notices


def run_archive(
    config: Config,
    *,
    only: list[str] | None = None,
    progress: RunProgress | None = None,
    now: Callable[[], datetime] = utcnow,
) -> RunResult:
    """Run every enabled account (or those named in `only`) once. Raises LockedError if a run is active, and a
    StorageError when a disk under the archive fails (the run stops as a whole: no account's failure)."""
    progress = progress or RunProgress()
    accounts = config.selected_accounts(only)  # ConfigError for a name not configured
    accounts = [rechecking_earlier_names(a) for a in accounts]
    archive = config.archive
    try:
        return _run_locked(config, accounts, progress, now)
    except StorageError as failure:  # said by the run's transaction
        _alert_stopped(config, failure)
        raise
    except (OSError, sqlite3.Error, StoreError) as exc:
        failure = storage_failure(exc, database=archive.database, fallback=archive_places(archive), then=RUN_STOPPED)
        if failure is None:
            raise
        _alert_stopped(config, failure)
        raise failure from exc


def _alert_stopped(config: Config, failure: StorageError) -> None:
    """The alert channels need nothing of the failed disk: they hear of the stop now, as of failed accounts. Whether
    they took it goes to the log (--verbose): the error stays the run's one line."""
    for notice in send_stopped_alert(config, str(failure)):
        log.info(notice)


def archive_places(archive: ArchiveConfig) -> str:
    """The folders a run writes in, to name where an error names no file: the archive folder, and `warc_dir` and
    the database's folder where the config puts them elsewhere (a volume of their own)."""
    places = [archive.dir]
    for place in (archive.warc_dir, archive.database.parent):
        if not place.is_relative_to(archive.dir) and place not in places:
            places.append(place)
    return " or ".join(str(place) for place in places)


def _run_locked(
    config: Config,
    accounts: list[AccountConfig],
    progress: RunProgress,
    now: Callable[[], datetime],
) -> RunResult:
    archive = config.archive
    with archive_lock(archive.dir, "archiver run"):
        archive.dir.mkdir(parents=True, exist_ok=True)
        archive.dir.chmod(0o700)  # PHI lives here: nobody else reads it
        tighten_outside_files(archive)
        store = Store.open(archive.database)
        scanner = None
        try:
            key_notices: list[str] = []  # a key made or a public key written again: said in the run's notices
            archive_signing_key(store, archive.keys_dir, key_notices)  # before anything is captured it could not sign
            started = now().astimezone(UTC)
            run_id = new_run_id(started)
            window = FetchWindow(iso(started - timedelta(days=archive.recheck_days)), iso(started))
            store.append_run(run_id, socket.gethostname(), config.sha256, [a.name for a in accounts])
            notices = key_notices + (
                register_orphan_warcs(store, archive.warc_dir) if archive.warc_dir.exists() else []
            )
            warc = WarcWriter(
                archive.warc_dir,
                run_id,
                max_bytes=archive.warc_max_bytes,
                info={
                    "config-sha256": config.sha256,
                    "accounts": ", ".join(a.name for a in accounts),
                    "recheck-since": window.recheck_since,
                    "started-at": window.started_at,
                    REVISIONS_FIELD: request_revisions(a.platform for a in accounts),
                    PARSER_REVISIONS_FIELD: parser_revisions(a.platform for a in accounts),
                    ACCOUNT_REQUESTS_FIELD: account_requests(accounts),
                },
                on_close=lambda info: store.append_warc_file(run_id, info.name, info.sha256, info.size, info.records),
            )
            scanner = start_scanner(store, config)
            # only a scanner with workers does anything with a commit (see scan/parallel.py)
            on_commit = (lambda: scanner.committed(store.last_version_id())) if scanner and scanner.workers else None
            stop = threading.Event()
            transaction = RunTransaction(
                store, warc.sync, warc.lock, on_commit=on_commit, run_id=run_id, then=RUN_STOPPED
            )
            with transaction:
                results = run_platforms(
                    accounts,
                    archive.parallel_platforms,
                    lambda account: run_account(
                        store, warc, config, account, run_id, window, progress, transaction, stop
                    ),
                    progress,
                    stop,
                )
                warc.close()
            run = RunResult(run_id, results, [f.name for f in warc.closed_files], notices, stop.is_set())
            if run.interrupted:
                # Told to stop: sign what was captured and go. The scan and the consent check cover these
                # versions next run (they take up what no scan has covered); a stop asked for is no alert.
                notices.append("run interrupted: the PHI scan and the consent check run with the next run")
                record_review_queue(store)
            else:
                scanned = scan_after_run(store, config, run_id, notices, scanner)  # flags before the checkpoint signs
                checked = consent_check_after_run(store, config, run_id, local_today(now()), notices)
                # a version the scan had to leave out fails the run too: a person must look at its text
                run.checks_failed = scanned is None or bool(scanned.unscannable) or not checked
                if scanned is None and not checked:
                    record_review_queue(store)
                alert_after(store, config, run_id, notices)  # every flag owed, this run's and any earlier one's
                failed = [(a.account, a.platform, a.error or a.status) for a in results if a.status != "ok"]
                notices.extend(send_failure_alert(config, run_id, failed))
            store.append_run_result(run_id, run.status, run.summary())
            checkpoint_archive(store, config, run_id, notices)
            return run
        finally:
            if scanner is not None:
                scanner.close()
            store.close()


def record_review_queue(store: Store) -> None:
    """For a run whose scan and consent check, which record the review queue, did not run or failed: what the
    capture changed reaches the queue all the same (a post restored brings its consent flags back)."""
    with store.transaction():
        record_flag_states(store, "run")


def run_platforms(
    accounts: list[AccountConfig],
    parallel: int,
    run_one: Callable[[AccountConfig], AccountResult],
    progress: RunProgress,
    stop: threading.Event,
) -> list[AccountResult]:
    """Accounts of different platforms in parallel threads; one platform's accounts one after another.

    One platform's accounts usually share an app's or an instance's rate limits, so they never overlap;
    different platforms do not share limits, so their network waits overlap. Results keep config order.

    The accounts always run in worker threads, so that a Ctrl-C (or SIGTERM, which `cli.main` turns into
    one) reaches the main thread while it waits, never halfway through an append. It sets `stop`: each session
    sends no further request and ends its wait, each account is recorded as interrupted with what it
    captured, and the run returns. A second Ctrl-C ends the process at once, which the archive survives like
    any crash (see recovery.py).
    """
    by_platform: dict[str, list[AccountConfig]] = {}
    for account in accounts:
        by_platform.setdefault(account.platform, []).append(account)
    results: dict[str, AccountResult] = {}

    def run_platform(platform_accounts: list[AccountConfig]) -> None:
        try:
            for account in platform_accounts:
                progress.account_started(account)
                results[account.name] = result = run_one(account)
                progress.account_finished(result)
        except Exception:
            stop.set()  # the run stops (a disk failed): the other platforms send no further request
            raise

    workers = max(1, min(parallel, len(by_platform)))
    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="platform") as pool:
        try:
            for group in by_platform.values():
                futures.append(pool.submit(run_platform, group))
            for future in futures:
                future.result()  # archive_account keeps an account's failure inside its result
        except KeyboardInterrupt:
            stop.set()
            log.warning("interrupted: stopping after the requests under way; Ctrl-C again stops at once")
            try:
                wait(futures)
            except KeyboardInterrupt:
                os._exit(Interrupted.exit_code)
            for future in futures:
                future.result()
    return [results[a.name] for a in accounts]


def archive_signing_key(store: Store, keys_dir: Path, notices: list[str] | None = None) -> Ed25519PrivateKey:
    """The archive's private key; made only for an archive that has signed nothing yet. An archive whose
    checkpoints are signed must keep its key: a new one, made quietly (after a restore from a backup, which
    never holds the private key), would change the archive's signing identity."""
    path = keys_dir / PRIVATE_KEY
    if not path.exists():
        signer = store.conn.execute("SELECT public_key FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
        if signer is not None:
            raise ConfigError(
                f"{path}: the archive's signing key is missing, and its checkpoints are signed with key "
                f"{fingerprint(signer[0])}; put that key back (backups never hold it) before archiving or exporting"
            )
        key_path, created = ensure_signing_key(keys_dir)
        if created and notices is not None:
            notices.append(
                f"generated the archive's signing key {key_path}; export its public key with `archiver key export`"
            )
    key = load_private_key(keys_dir)
    if not (keys_dir / PUBLIC_KEY).exists():
        # Written again only from the key that signed the checkpoints: from another, it would make them all fail.
        signer = store.conn.execute("SELECT public_key FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
        if signer is not None and signer[0] != public_b64(key.public_key()):
            raise ConfigError(
                f"{keys_dir / PUBLIC_KEY}: missing, and the signing key {path} is not the key that signed the "
                f"archive's checkpoints ({fingerprint(signer[0])}); put the archive's own keys back"
            )
        restored = restore_public_key(keys_dir, key)
        if restored is not None and notices is not None:
            notices.append(f"the public key {restored} was missing: wrote it again from the signing key")
    return key


def checkpoint_archive(
    store: Store, config: Config, run_id: str | None, notices: list[str] | None = None
) -> Checkpoint:
    """Sign the ledger head and the closed WARC files, append the checkpoint, then put its copy beside the
    WARCs (call outside a transaction: the copy is moved into place once the row is committed). Copies an
    earlier stop left unplaced are restored first."""
    key = archive_signing_key(store, config.archive.keys_dir, notices)
    restored = restore_copies(store.conn, config.archive.warc_dir)
    if notices is not None:
        notices.extend(restored)
    with store.transaction():
        access_head = access_log_head(access_log_path(config.archive.database))
        checkpoint = sign_checkpoint(store.conn, key, config.archive.warc_dir, access_head)
        store.append_checkpoint(checkpoint, run_id)
    publish_copy(config.archive.warc_dir, checkpoint.file_name)
    return checkpoint


def run_account(
    store: Store,
    warc: WarcWriter,
    config: Config,
    account: AccountConfig,
    run_id: str,
    window: FetchWindow,
    progress: RunProgress,
    transaction: RunTransaction,
    stop: threading.Event | None = None,
) -> AccountResult:
    """Capture one account live: its token is read now, and every exchange goes to `warc`."""
    redactor = Redactor([])

    def open_session(connector: Connector) -> Session:
        return CapturingSession(
            warc,
            account=account.name,
            token=resolve_token(account),
            credential_ref=account.credential_ref,
            rate_limit=connector.rate_limit_policy(),
            token_param=connector.token_param,
            redactor=redactor,
            timeout=config.archive.request_timeout,
            retries=config.archive.retries,
            max_wait=config.archive.max_rate_limit_wait,
            on_wait=lambda message: progress.waiting(account.name, message),
            stop=stop,
        )

    result = archive_account(store, account, run_id, window, open_session, transaction, progress, redactor)
    if result.error:  # here, not in archive_account: a rebuild reports a replayed failure as a problem of its own
        log.warning("account %s failed: %s", account.name, result.error)
    return result


def archive_account(
    store: Store,
    account: AccountConfig,
    run_id: str,
    window: FetchWindow,
    open_session: Callable[[Connector], Session],
    transaction: RunTransaction,
    progress: RunProgress,
    redactor: Redactor,
    revision: int | None = None,
    limit: int | None = None,
) -> AccountResult:
    """Drive an account's connector over a session (live or replayed) and append what it yields.

    The connector's network calls run without the lock; each observation is appended under it. `revision` is the
    connector's request revision when replaying a run (the one it recorded); a live run asks at the newest.
    `limit`: replaying a run that did not finish, the observations it committed; the replay stops after them.
    """
    result = AccountResult(account.name, account.platform)
    session: Session | None = None
    lock = transaction.lock
    try:
        connector = connector_for(account.platform, account, revision)
        session = open_session(connector)
        state = StoreAccountState(store, account.name, lock, run_id)
        for applied, observation in enumerate(connector.fetch(session, account, state, window)):
            if limit is not None and applied >= limit:
                break  # what the run applied after this was never committed: the next run started without it
            with transaction.writing():
                apply_observation(store, account, run_id, observation, result)
                if isinstance(observation, AccountIdentity) and account.options.get(EARLIER_NAMES_OPTION):
                    note_same_account(account, state.identified(account, observation), result)
                committed = transaction.applied(account.name)
            if committed:
                result.requests = session.requests_made
                progress.observed(result)
    except Exception as exc:  # a connector bug or an unexpected shape must not stop the other accounts
        # ...but a disk that fails (a WARC write, SQLite) is no account's failure: every later write fails too, and
        # after a failed WARC write or SQLite's own rollback nothing may be written. The run stops, and says why.
        stop = transaction.stopping(exc)
        if stop is not None:
            raise stop from exc
        result.status = "failed"
        if isinstance(exc, ArchiverError):
            result.error = without_lone_surrogates(redactor.text(str(exc)))
        else:
            result.error = without_lone_surrogates(redactor.text(f"unexpected {type(exc).__name__}: {exc}"))
            log.debug("account %s failed:\n%s", account.name, redactor.text(traceback.format_exc()))
    finally:
        if session is not None:
            result.requests = session.requests_made
            session.close()
    with transaction.writing():
        store.append_account_run(
            {
                "run_id": run_id,
                "account": account.name,
                "status": result.status,
                "requests": result.requests,
                "new_items": result.new_items,
                "new_versions": result.new_versions,
                "deletions": result.deletions,
                "restorations": result.restorations,
                "media": result.media,
                "error": result.error,
            }
        )
        transaction.commit()  # what was captured before a failure is real evidence: keep it
    return result


def tighten_outside_files(archive: ArchiveConfig) -> None:
    """The archive's folders and database files where the config puts them outside `dir` (the WARCs on a big
    volume), made private as `dir` is. The umask (cli.py) covers new files only, and SQLite gives a new -wal or
    -shm the database file's mode: a database made 0644 before would keep writing world-readable logs. The
    database's folder is left as it is (it may hold others' files); one we may not change is doctor's to name."""
    files = [archive.database, access_log_path(archive.database)]
    files += [file.with_name(file.name + end) for file in files for end in ("-wal", "-shm")]
    for place, mode in [(archive.warc_dir, 0o700), (archive.keys_dir, 0o700), *((file, 0o600) for file in files)]:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if place.stat().st_mode & 0o077:
                place.chmod(mode)


def rechecking_earlier_names(account: AccountConfig) -> AccountConfig:
    """`account` as a run captures it: re-checking what its earlier names captured (EARLIER_NAMES_OPTION)."""
    return replace(account, options={**account.options, EARLIER_NAMES_OPTION: 1})


def note_same_account(account: AccountConfig, names: AccountNames, result: AccountResult) -> None:
    """Say when the run captures another configured name of the same platform account too: a rename whose old
    entry was left enabled. Both are captured; each re-checks what it captured (see Store.account_names)."""
    if names.running:
        others = ", ".join(names.running)
        result.notices.append(
            f"account {account.name} is the same {account.platform} account as {others}, which this run captures "
            "too: each re-checks the items it captured; set enabled = false on the old name (rebuild still needs it)"
        )


def apply_observation(
    store: Store, account: AccountConfig, run_id: str, observation: object, result: AccountResult
) -> None:
    if isinstance(observation, Item):
        outcome = store.append_item(account.name, observation, run_id)
        result.new_items += outcome.new_item
        result.new_versions += outcome.new_version and not outcome.new_item
        result.restorations += outcome.restored
    elif isinstance(observation, Deletion):
        result.deletions += store.append_deletion(observation, run_id).deleted
    elif isinstance(observation, MediaFile):
        result.media += store.append_media(observation, run_id).new_media
    elif isinstance(observation, CursorUpdate):
        store.append_cursor(account.name, observation.name, observation.value, run_id)
    elif isinstance(observation, AccountIdentity):
        store.append_account_identity(account.name, account.platform, account.api_base, observation, run_id)
    elif isinstance(observation, Notice):
        result.notices.append(observation.message)
    else:
        raise TypeError(f"connector yielded {type(observation).__name__}, not an observation")
