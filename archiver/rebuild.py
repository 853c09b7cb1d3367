"""Rebuild the database from the WARCs alone: the WARCs are the evidence, the database is their index.

Every run's records are replayed in capture order: each account's connector runs again against a
ReplaySession that answers its requests with the captured responses (same URL, in the order they were
captured), and what it yields goes through the same store and change detection. Rows point at the original
records and take their times from them, so the rebuilt items, versions and events equal the live ones.
A fixed parser re-reads old captures the same way.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

from requests.structures import CaseInsensitiveDict
from requests.utils import parse_header_links
from warcio.archiveiterator import ArchiveIterator

from .config import Config
from .connectors.base import Connector, FetchWindow
from .errors import AuthError, ConfigError, PlatformError, RateLimitedError
from .http import REDACTED, Exchange, RateLimitPolicy, Redactor, policy_says_throttled, redact_url, with_params
from .pipeline import RunProgress, RunTransaction, archive_account
from .recovery import CompleteRecords, file_sha256, fsync_path, scan_warc
from .store import Store
from .warc import ACCOUNT_FIELD, CaptureRef, parse_http_headers, read_raw_block


@dataclass
class _Recorded:
    uri: str
    response: CaptureRef
    request: CaptureRef


@dataclass
class _RunRecords:
    run_id: str
    started_at: str
    host: str
    config_sha256: str
    recheck_since: str
    run_started_at: str  # the run's own clock at its start (FetchWindow.started_at)
    accounts: list[str] = field(default_factory=list)
    exchanges: dict[str, list[_Recorded]] = field(default_factory=lambda: defaultdict(list))
    files: list[Path] = field(default_factory=list)


REDIRECTS = (301, 302, 303, 307, 308)


class ReplaySession:
    """Answers a connector's GETs with the responses captured for its account, as the live session did."""

    def __init__(
        self,
        warc_dir: Path,
        account: str,
        recorded: list[_Recorded],
        token_param: str | None = None,
        rate_limit: RateLimitPolicy | None = None,
    ):
        self.warc_dir = warc_dir
        self.account = account
        self.token_param = token_param
        self.rate_limit = rate_limit  # only its throttle signal is used: the replay never waits
        self.queues: dict[str, deque[_Recorded]] = defaultdict(deque)
        for entry in recorded:
            self.queues[entry.uri].append(entry)
        self.requests_made = 0

    def close(self) -> None:
        pass

    def secret(self) -> str | None:
        return REDACTED  # what the live session sent was masked in the record; the replay never needs it

    def use_token(self, token: str) -> None:
        pass

    def _next(self, uri: str) -> Exchange:
        queue = self.queues.get(uri)
        if not queue:
            raise PlatformError(f"replay of account {self.account}: no captured response for GET {uri}")
        entry = queue.popleft()
        self.requests_made += 1
        record, block = read_raw_block(self.warc_dir / entry.response.warc_file, entry.response.offset)
        status_line, body = parse_http_headers(block)
        headers = CaseInsensitiveDict(status_line.headers)
        links = {}
        if headers.get("Link"):
            for link in parse_header_links(headers["Link"]):
                if link.get("rel"):
                    links[link["rel"]] = link["url"]
        status = int(status_line.get_statuscode() or 0)
        return Exchange(uri, status, headers, body, entry.response, entry.request, links)

    def get(
        self,
        url: str,
        params: dict | None = None,
        *,
        auth: bool = True,
        ok: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
    ) -> Exchange:
        return self._replay(with_params(url, params), auth, ok)

    def post(
        self,
        url: str,
        body: dict,
        *,
        auth: bool = True,
        ok: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
        secret_fields: tuple[str, ...] = (),
    ) -> Exchange:
        exchange = self._replay(url, auth, ok)
        exchange.issued = {name: REDACTED for name in secret_fields}  # masked when captured; unused on replay
        return exchange

    def _replay(self, url: str, auth: bool, ok: tuple[int, ...]) -> Exchange:
        if auth and self.token_param:
            url = with_params(url, {self.token_param: REDACTED})  # where the live session put the credential
        uri = redact_url(url)
        while True:
            exchange = self._next(uri)
            location = exchange.headers.get("Location")
            if exchange.status in REDIRECTS and location:
                uri = redact_url(urljoin(uri, location))  # the live session followed it: so does the replay
                continue
            if policy_says_throttled(self.rate_limit, exchange.status, exchange.headers, exchange.body):
                if self.queues.get(uri):
                    continue  # the live session waited and tried again: that attempt was captured too
                raise RateLimitedError(f"GET {uri}: throttled (replayed; no later attempt was captured)")
            if exchange.status in ok:
                return exchange
            if exchange.status == 429 or exchange.status >= 500:
                if self.queues.get(uri):
                    continue  # the live session waited or retried: its next attempt was captured too
                if exchange.status == 429:  # the live session gave up waiting: so does the replay
                    raise RateLimitedError(f"account {self.account}: throttled (HTTP 429) at {uri} (replayed)")
                raise PlatformError(f"GET {uri}: HTTP {exchange.status} (replayed; no later attempt was captured)")
            if exchange.status in (401, 403):
                raise AuthError(f"account {self.account}: HTTP {exchange.status} at {uri} (replayed)")
            raise PlatformError(f"GET {uri}: HTTP {exchange.status} (replayed)")


def _warc_fields(body: bytes) -> dict[str, str]:
    fields = {}
    for line in body.decode("utf-8", "replace").splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def _capture_order(path: Path) -> tuple[str, str]:
    """A file's place in capture order: its warcinfo's WARC-Date (microseconds; file names have only seconds,
    and two runs can start within one second), then its name (a run's rotated files share their warcinfo date)."""
    with open(path, "rb") as fh:
        for record in ArchiveIterator(fh, no_record_parse=True):
            return record.rec_headers.get_header("WARC-Date") or "", path.name
    return "", path.name


def index_runs(warc_dir: Path, on_note: Callable[[str], None] | None = None) -> Iterator[_RunRecords]:
    """Every run found in the WARC files, in capture order, with each account's exchanges.

    Only complete records are replayed: a file is read up to the first record whose block digest fails or
    that cannot be read, i.e. the torn tail a killed run leaves until the next run sets it aside (told to
    `on_note`). Rows never point past a complete record, so nothing the database holds is lost by it."""
    current: _RunRecords | None = None
    for path in sorted(warc_dir.glob("*.warc.gz"), key=_capture_order):
        with open(path, "rb") as fh:
            records = CompleteRecords(fh)
            pending_requests: dict[str, CaptureRef] = {}
            for record, body, offset, length in records:
                headers = record.rec_headers
                kind = headers.get_header("WARC-Type")
                ref = CaptureRef(
                    path.name,
                    offset,
                    length,
                    headers.get_header("WARC-Record-ID"),
                    headers.get_header("WARC-Date"),
                )
                if kind == "warcinfo":
                    info = _warc_fields(body)
                    run_id = info.get("run-id", "")
                    if current is None or current.run_id != run_id:
                        if current is not None:
                            yield current
                        current = _RunRecords(
                            run_id,
                            headers.get_header("WARC-Date"),
                            info.get("hostname", ""),
                            info.get("config-sha256", ""),
                            info.get("recheck-since", ""),
                            info.get("started-at") or headers.get_header("WARC-Date"),
                            [a.strip() for a in info.get("accounts", "").split(",") if a.strip()],
                        )
                    current.files.append(path)
                    continue
                account = headers.get_header(ACCOUNT_FIELD)
                if current is None or not account:
                    continue
                if kind == "request":
                    pending_requests[ref.record_id] = ref
                elif kind == "response":
                    request = pending_requests.pop(headers.get_header("WARC-Concurrent-To") or "", ref)
                    current.exchanges[account].append(_Recorded(headers.get_header("WARC-Target-URI"), ref, request))
        if on_note and records.stopped == "incomplete":
            on_note(f"WARC {path.name}: the record at offset {records.end} is incomplete (torn tail): not replayed")
        elif on_note and records.stopped:
            reason = f"{records.error}; torn tail"
            on_note(f"WARC {path.name}: unreadable after offset {records.end} ({reason}): not replayed")
    if current is not None:
        yield current


def rebuild_database(
    config: Config,
    out: Path,
    *,
    progress: RunProgress | None = None,
    on_run: Callable[[str, int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> int:
    """Replay every WARC under the archive into a new database at `out`; returns the number of runs.

    `on_run(run_id, responses)` is told as each run's replay starts, with the number of responses it captured;
    `progress` as its accounts' replays go (`observed` at each commit, `account_finished`); `on_note` of a
    torn tail left unreplayed."""
    if out.exists():
        raise ConfigError(f"{out}: already exists; rebuild writes a new database, choose another --out")
    if out.resolve() == config.archive.database.resolve():
        raise ConfigError(f"{out}: is the live archive database; choose another --out")
    progress = progress or RunProgress()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside `out` under a temporary name and moved there only once complete: an interrupted rebuild
    # never leaves a half database that looks like a result, so the file can skip the per-commit fsyncs.
    handle, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
    os.close(handle)
    partial = Path(name)
    try:
        store = Store.open(partial, durable=False)
        try:
            runs = _replay_runs(config, store, progress, on_run, on_note)
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            store.close()
        fsync_path(partial)
        try:
            os.link(partial, out)  # unlike a rename, never replaces a file that appeared at `out` meanwhile
        except FileExistsError:
            raise ConfigError(f"{out}: appeared during the rebuild; choose another --out") from None
        fsync_path(out.parent)
    finally:
        for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
            leftover.unlink(missing_ok=True)
    return runs


def _replay_runs(
    config: Config,
    store: Store,
    progress: RunProgress,
    on_run: Callable[[str, int], None] | None,
    on_note: Callable[[str], None] | None,
) -> int:
    accounts = {a.name: a for a in config.accounts}
    runs = 0
    for run in index_runs(config.archive.warc_dir, on_note):
        if on_run:
            on_run(run.run_id, sum(len(exchanges) for exchanges in run.exchanges.values()))
        with store.transaction():
            store._insert(
                "runs",
                {
                    "id": run.run_id,
                    "started_at": run.started_at,
                    "host": run.host,
                    "software_version": "rebuild",
                    "config_sha256": run.config_sha256,
                    "accounts_selected": json.dumps(run.accounts),
                },
            )
        statuses = []
        for name in run.accounts:
            account = accounts.get(name)
            if account is None:
                raise ConfigError(
                    f"{config.path}: run {run.run_id} captured account {name!r}, which the config no longer "
                    "names; add it back (enabled = false is enough) to rebuild"
                )
            recorded = run.exchanges.get(name, [])

            def open_session(connector: Connector, name: str = name, recorded: list = recorded) -> ReplaySession:
                return ReplaySession(
                    config.archive.warc_dir, name, recorded, connector.token_param, connector.rate_limit_policy()
                )

            with RunTransaction(store, lambda: None, threading.RLock()) as transaction:
                result = archive_account(
                    store,
                    account,
                    run.run_id,
                    FetchWindow(run.recheck_since, run.run_started_at),
                    open_session,
                    transaction,
                    progress,
                    Redactor([]),
                )
            progress.account_finished(result)
            statuses.append(result.status)
        for path in run.files:
            with store.transaction():
                size, records = path.stat().st_size, scan_warc(path).records
                store.append_warc_file(run.run_id, path.name, file_sha256(path), size, records)
        store.append_run_result(run.run_id, "ok" if all(s == "ok" for s in statuses) else "failed", {})
        runs += 1
    return runs
