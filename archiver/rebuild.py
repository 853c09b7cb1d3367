"""Rebuild the database from the WARCs alone: the WARCs are the evidence, the database is their index.

Every run's records are replayed in capture order: each account's connector runs again against a
ReplaySession that answers its requests with the captured responses (same URL, in the order they were
captured), and what it yields goes through the same store and change detection. Rows point at the original
records and take their times from them, so the rebuilt items, versions and events equal the live ones.
A fixed parser re-reads old captures the same way. The requests made are not the newest version's but those of
the request revision each connector's run recorded in its warcinfo (revision 1 where none is): only those have
captured responses.

Before replaying, every WARC file is checked against what the archive recorded of it: the signed checkpoint
statements beside the WARCs (under the archive's key) and, when the live database can be read, its
`warc_files`. Damage is a torn tail (a note) only at the end of the last file of a run that did not finish
and that nothing recorded; anywhere else it is an error, and so is a replay that fails where the capture
shows no failure. Errors do not stop the rebuild: the database it can build is written, and said incomplete.
"""

from __future__ import annotations

import json
import mmap
import os
import sqlite3
import tempfile
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from requests.structures import CaseInsensitiveDict
from requests.utils import parse_header_links
from warcio.archiveiterator import ArchiveIterator

from .checkpoints import (
    CHECKPOINT_DIR,
    PUBLIC_KEY,
    copies_in,
    load_public_key,
    missing_key_problem,
    signed_warc_listings,
)
from .config import Config
from .connectors.base import (
    ACCOUNT_REQUESTS_FIELD,
    FIRST_REVISION,
    PARSER_REVISIONS_FIELD,
    REVISIONS_FIELD,
    Connector,
    FetchWindow,
    as_captured,
    parse_revisions,
)
from .errors import ArchiverError, AuthError, ConfigError, PlatformError, RateLimitedError
from .http import (
    BODY_HELD,
    MEDIA_MAX_BYTES,
    REDACTED,
    TRUNCATED_LENGTH,
    BodyDigest,
    Exchange,
    NotKept,
    RateLimitPolicy,
    Redactor,
    given_body,
    is_file_download,
    media_label,
    not_kept,
    policy_says_throttled,
    redact_url,
    refused_without_credentials,
    sent_credential,
    with_params,
)
from .pipeline import AccountResult, RunProgress, RunTransaction, archive_account
from .problems import Problem
from .recovery import CompleteRecords, file_sha256, fsync_path, recoveries, run_of, scan_warc
from .store import Store, schema_has
from .warc import ACCOUNT_FIELD, HEAD_KEPT, HEADERS_END, CaptureRef, parse_http_headers, read_block_at


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
    # platform -> the request revision its connector asked at; one not named asked at revision 1 (see RequestRevisions)
    revisions: dict[str, int] = field(default_factory=dict)
    # platform -> the parser revision its connector read responses at; one not named read at revision 1
    parsers: dict[str, int] = field(default_factory=dict)
    # account -> what of its config shaped the requests (ACCOUNT_REQUESTS_FIELD); none in runs of before it
    requests: dict[str, Any] = field(default_factory=dict)
    exchanges: dict[str, list[_Recorded]] = field(default_factory=lambda: defaultdict(list))
    files: list[Path] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # its files with damage that is not a torn tail


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
        self.uncaptured: str | None = None  # the GET the capture had no response for, if the replay asked one

    def unreplayed(self) -> int:
        """How many captured responses the replay has not asked for (none, when it went as the capture did)."""
        return sum(len(queue) for queue in self.queues.values())

    def first_unreplayed(self) -> str | None:
        """The URI of the earliest captured response the replay has not asked for, if any."""
        left = [queue[0] for queue in self.queues.values() if queue]
        return min(left, key=lambda entry: (entry.response.warc_file, entry.response.offset)).uri if left else None

    def close(self) -> None:
        pass

    def secret(self) -> str | None:
        return REDACTED  # what the live session sent was masked in the record; the replay never needs it

    def use_token(self, token: str) -> None:
        pass

    def add_secret(self, value: str) -> None:
        pass  # the records were masked when captured

    def _next(self, uri: str, shown: str, file_download: bool) -> Exchange:
        queue = self.queues.get(uri)
        if not queue:
            self.uncaptured = uri
            raise PlatformError(f"replay of account {self.account}: no captured response for GET {shown}")
        entry = queue.popleft()
        self.requests_made += 1
        # A media file's record past what the live session held is read as a stream, and given by its digest alone
        # (http.given_body), as it was live; an API answer is read whole (its size was capped when captured).
        hold = BODY_HELD + HEAD_KEPT if file_download else None
        record, block = read_block_at(self.warc_dir / entry.response.warc_file, entry.response.offset, hold)
        status_line, _ = parse_http_headers(block.head + HEADERS_END)
        if block.body is None:
            body, digest = b"", BodyDigest(block.body_sha256, block.body_size)
        else:
            body, digest = given_body(block.body, file_download)
        headers = joined_headers(status_line.headers)
        links = {}
        if headers.get("Link"):
            for link in parse_header_links(headers["Link"]):
                if link.get("rel"):
                    links[link["rel"]] = link["url"]
        status = int(status_line.get_statuscode() or 0)
        if record.rec_headers.get_header("WARC-Truncated") == TRUNCATED_LENGTH and status == 200:
            # a media file the live session left unread (over its cap): the connector is answered as it was then
            return Exchange(uri, not_kept(status, MEDIA_MAX_BYTES), headers, b"", entry.response, entry.request, links)
        return Exchange(uri, status, headers, body, entry.response, entry.request, links, digest=digest)

    def _sent_credential(self, exchange: Exchange) -> bool:
        """Whether the captured request of `exchange` carried a credential, judged as the live session judged it
        (http.sent_credential) on its request record: its Authorization header (the value masked), its URL and its
        body. An answer captured without its request record cannot tell: taken as a refused credential, as every
        401 and 403 was before."""
        if exchange.request_ref == exchange.ref:
            return True
        ref = exchange.request_ref
        _, block = read_block_at(self.warc_dir / ref.warc_file, ref.offset, BODY_HELD + HEAD_KEPT)
        request, _ = parse_http_headers(block.head + HEADERS_END)
        names = [name for name, _ in request.headers]
        return sent_credential(exchange.url, names, block.body or b"")

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
            # a media file by its host only, as the live session names it: its path can be the file's own name
            shown = media_label(uri) if is_file_download(ok) else uri
            exchange = self._next(uri, shown, is_file_download(ok))
            if isinstance(exchange.status, NotKept):
                return exchange  # as the live session gave it: a media file left unread
            location = exchange.headers.get("Location")
            if exchange.status in REDIRECTS and location:
                uri = redact_url(urljoin(uri, location))  # the live session followed it: so does the replay
                continue
            if policy_says_throttled(self.rate_limit, exchange.status, exchange.headers, exchange.body):
                if self.queues.get(uri):
                    continue  # the live session waited and tried again: that attempt was captured too
                raise RateLimitedError(f"GET {shown}: throttled (replayed; no later attempt was captured)")
            if exchange.status in ok:
                return exchange
            if exchange.status == 429 or exchange.status >= 500:
                if self.queues.get(uri):
                    continue  # the live session waited or retried: its next attempt was captured too
                if exchange.status == 429:  # the live session gave up waiting: so does the replay
                    raise RateLimitedError(f"account {self.account}: throttled (HTTP 429) at {shown} (replayed)")
                raise PlatformError(f"GET {shown}: HTTP {exchange.status} (replayed; no later attempt was captured)")
            if exchange.status in (401, 403):
                if not self._sent_credential(exchange):  # as the live session judged it: no token was refused
                    raise PlatformError(f"GET {shown}: {refused_without_credentials(exchange.status)} (replayed)")
                raise AuthError(f"account {self.account}: HTTP {exchange.status} at {shown} (replayed)")
            raise PlatformError(f"GET {shown}: HTTP {exchange.status} (replayed)")


def joined_headers(pairs: list[tuple[str, str]]) -> CaseInsensitiveDict:
    """A response's captured header fields as the live session read them: a field sent more than once (RFC
    9110 5.3: two `Link` fields, one with `next` and one with `prev`) joined with ", ", as urllib3 does.
    Keeping only the last would drop the `next` link and stop the replay's paging a page early."""
    headers: CaseInsensitiveDict = CaseInsensitiveDict()
    for name, value in pairs:
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _warc_fields(body: bytes) -> dict[str, str]:
    fields = {}
    for line in body.decode("utf-8", "replace").splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def _capture_order(path: Path, live: LiveArchive | None = None) -> tuple[int, int, str, str]:
    """A file's place in capture order. With the live database, its run's place among the runs recorded there
    (their append order: an NTP correction or a VM restored from a snapshot can step the clock back between
    two runs, so dates may lie); a run it does not know comes after those it does. Then the warcinfo's
    WARC-Date (microseconds; file names have only seconds, and two runs can start within one second), then the
    name (a run's rotated files share their warcinfo date)."""
    run = run_of(path.name)
    known = live.run_order.get(run) if live is not None and run is not None else None
    place = (0, known) if known is not None else (1, 0)
    return (*place, *_dated(path))


def _dated(path: Path) -> tuple[str, str]:
    try:
        with open(path, "rb") as fh:
            for record in ArchiveIterator(fh, no_record_parse=True):
                return record.rec_headers.get_header("WARC-Date") or "", path.name
    except Exception:  # warcio raises several types; the damage is reported when the file is read
        return "", path.name
    return "", path.name


@dataclass(frozen=True)
class LiveArchive:
    """What the live database recorded of its runs and WARC files (read-only, when it can be read)."""

    database: Path
    warc_files: dict[str, str]  # name -> sha256
    runs: set[str]
    finished_runs: set[str]  # runs with a result
    outcomes: dict[tuple[str, str], str]  # (run, account) -> ok / failed
    recovered: dict[str, str] = field(default_factory=dict)  # interrupted run -> the run that recorded its files
    # run -> its place among the runs, in the order they were appended (a clock stepped back cannot change it)
    run_order: dict[str, int] = field(default_factory=dict)
    # run that did not finish -> account -> the observations it committed (run_progress; none before 0017)
    committed: dict[str, dict[str, int]] = field(default_factory=dict)
    # (run, account) that failed in a run that finished -> the observations it committed (run_progress)
    committed_before_failing: dict[tuple[str, str], int] = field(default_factory=dict)


def read_live_archive(database: Path) -> tuple[LiveArchive | None, list[Problem]]:
    """The live database's record of its WARC files and runs; None (with a note why) when there is none to read:
    missing, unreadable, or holding no run (a database lost and made again empty)."""
    if not database.exists():
        return None, [
            Problem(f"database {database}", "not found: WARC files checked against the checkpoints only", "note")
        ]
    try:
        store = Store.open(database, readonly=True)
        try:
            conn = store.conn
            live = LiveArchive(
                database,
                {row[0]: row[1] for row in conn.execute("SELECT name, sha256 FROM warc_files")},
                {row[0] for row in conn.execute("SELECT id FROM runs")},
                {row[0] for row in conn.execute("SELECT run_id FROM run_results")},
                {(row[0], row[1]): row[2] for row in conn.execute("SELECT run_id, account, status FROM account_runs")},
                {run: recovery.by for run, recovery in recoveries(conn).items()},
                {row[0]: n for n, row in enumerate(conn.execute("SELECT id FROM runs ORDER BY rowid"))},
                _committed(conn),
                _committed_before_failing(conn),
            )
        finally:
            store.close()
    except (ArchiverError, sqlite3.Error) as exc:
        why = f"cannot be read ({exc}): WARC files checked against the checkpoints only"
        return None, [Problem(f"database {database}", why, "note")]
    if not live.runs:
        return None, [
            Problem(f"database {database}", "holds no run: WARC files checked against the checkpoints only", "note")
        ]
    return live, []


def _committed(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """For each run that did not finish, what it committed of each account (an archive of before migration 0017
    has no run_progress: its runs are replayed whole, as before)."""
    if not schema_has(conn, "run_progress"):
        return {}
    committed: dict[str, dict[str, int]] = {}
    for run_id, account, count in conn.execute(
        "SELECT run_id, account, max(observations) FROM run_progress "
        "WHERE run_id NOT IN (SELECT run_id FROM run_results) GROUP BY run_id, account"
    ):
        committed.setdefault(run_id, {})[account] = count
    return committed


def _committed_before_failing(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """For each account that failed in a run that finished, what the run committed of it (run_progress)."""
    if not schema_has(conn, "run_progress"):
        return {}
    rows = conn.execute(
        "SELECT p.run_id, p.account, max(p.observations) FROM run_progress p "
        "WHERE p.run_id IN (SELECT run_id FROM run_results) AND EXISTS (SELECT 1 FROM account_runs a "
        "WHERE a.run_id = p.run_id AND a.account = p.account AND a.status = 'failed') GROUP BY p.run_id, p.account"
    )
    return {(run_id, account): count for run_id, account, count in rows}


@dataclass
class WarcChecks:
    """Each WARC file on disk against what the archive recorded of it (see `check_warc_files`)."""

    sha256: dict[str, str]  # every file on disk: its digest now
    recorded: set[str]  # names a signed checkpoint or warc_files lists
    live: LiveArchive | None
    problems: list[Problem]
    last_of_run: dict[str, str] = field(default_factory=dict)  # run id -> its last file on disk, by name

    def may_end_torn(self, name: str) -> bool:
        """A file may end in a record cut short only when it is the last file of a run that did not finish
        (a killed run's, until the next run sets the tail aside) and nothing recorded it."""
        run = run_of(name)
        if name in self.recorded or run is None or self.last_of_run.get(run) != name:
            return False
        return self.live is None or run not in self.live.finished_runs

    def why_not_torn(self, name: str) -> str:
        run = run_of(name)
        if name in self.recorded:
            return "in a file the archive recorded"
        if run is None:
            return "in a file whose name names no run"
        if self.last_of_run.get(run) != name:
            return f"and file {self.last_of_run.get(run)} of the same run follows"
        return f"in a file of run {run}, which finished"


def check_warc_files(warc_dir: Path, trusted: Ed25519PublicKey | None, live: LiveArchive | None) -> WarcChecks:
    """Every WARC file the signed checkpoints or the live `warc_files` list must be on disk with that sha256;
    a file nothing lists must be a run's that has not finished (as far as the live database tells)."""
    listings, problems = signed_warc_listings(warc_dir, trusted)
    if live is not None:
        for name, sha in live.warc_files.items():
            listings.setdefault(name, {}).setdefault(sha, f"recorded in warc_files of {live.database}")
    on_disk = sorted(warc_dir.glob("*.warc.gz"))
    checks = WarcChecks({p.name: file_sha256(p) for p in on_disk}, set(listings), live, problems)
    for name in sorted(listings):
        found = checks.sha256.get(name)
        for sha, source in listings[name].items():
            if found != sha:
                problems.append(
                    Problem(f"WARC {name}", f"sha256 expected {sha} as {source}, found {found or 'no such file'}")
                )
            if found is None:
                break  # a missing file once
    for path in on_disk:
        run = run_of(path.name)
        if run is not None:
            checks.last_of_run[run] = max(checks.last_of_run.get(run, path.name), path.name, key=_sequence)
        if path.name in listings:
            continue
        if live is None:
            problems.append(
                Problem(f"WARC {path.name}", "listed in no signed checkpoint: a run that did not finish", "note")
            )
        elif run in live.finished_runs:
            problems.append(Problem(f"WARC {path.name}", f"not recorded by the archive, yet its run {run} finished"))
        elif run not in live.runs:
            problems.append(Problem(f"WARC {path.name}", "on disk but its run is not in the database (unknown file)"))
        elif run in live.recovered:
            problems.append(
                Problem(
                    f"WARC {path.name}",
                    f"names interrupted run {run}, whose files run {live.recovered[run]} recorded: put there since",
                )
            )
        else:
            problems.append(Problem(f"WARC {path.name}", f"left by interrupted run {run}, not yet recorded", "note"))
    return checks


def _sequence(name: str) -> int:
    """A run's files are numbered in the order it wrote them (archiver-STAMP-RUN-00001.warc.gz)."""
    return int(name.removesuffix(".warc.gz").rsplit("-", 1)[1])


GZIP_MEMBER = b"\x1f\x8b\x08"  # every record is a gzip member of its own


def _readable_record_after(path: Path, start: int) -> int | None:
    """Where the first complete record after `start` begins, if any: damage followed by one is not the end of
    a file that a killed run left cut short."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size <= start + 1:
            return None
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            at = data.find(GZIP_MEMBER, start + 1)
            while at != -1:
                fh.seek(at)
                if next(iter(CompleteRecords(fh)), None) is not None:
                    return at
                at = data.find(GZIP_MEMBER, at + 1)
    return None


def _damage(path: Path, records: CompleteRecords, checks: WarcChecks | None) -> Problem:
    """What to say of a file whose reading stopped early: a torn tail (a note) or damage (an error)."""
    name, end = path.name, records.end
    what = "block digest does not match" if records.stopped == "incomplete" else f"unreadable: {records.error}"
    may_end_torn = checks is not None and checks.may_end_torn(name)
    why_not = checks.why_not_torn(name) if checks is not None else "in a file nothing vouched for"
    following = _readable_record_after(path, end) if may_end_torn else None
    if may_end_torn and following is None:
        if records.stopped == "incomplete":
            return Problem(
                f"WARC {name}", f"the record at offset {end} is incomplete (torn tail): not replayed", "note"
            )
        return Problem(
            f"WARC {name}", f"unreadable after offset {end} ({records.error}; torn tail): not replayed", "note"
        )
    if following is not None:
        why_not = f"followed by a readable record at offset {following}"
    return Problem(
        f"WARC {name}", f"damaged record at offset {end} ({what}), {why_not}: not replayed, nor what follows"
    )


def index_runs(
    warc_dir: Path,
    on_problem: Callable[[Problem], None] | None = None,
    checks: WarcChecks | None = None,
) -> Iterator[_RunRecords]:
    """Every run found in the WARC files, in capture order, with each account's exchanges.

    Only complete records are replayed: a file is read up to the first record whose block digest fails or
    that cannot be read. That is a torn tail (a note to `on_problem`) only where `checks` allow one (the end
    of the last file of a run that did not finish, which nothing recorded); anywhere else it is an error.
    Rows never point past a complete record, so a torn tail loses nothing the database holds."""
    current: _RunRecords | None = None
    live = checks.live if checks is not None else None
    for path in sorted(warc_dir.glob("*.warc.gz"), key=lambda path: _capture_order(path, live)):
        with open(path, "rb") as fh:
            records = CompleteRecords(fh)
            pending_requests: dict[str, CaptureRef] = {}
            for record, block, offset, length in records:
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
                    info = _warc_fields(block.data if block.data is not None else block.head)
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
                        try:
                            current.revisions = parse_revisions(info.get(REVISIONS_FIELD, ""))
                        except ValueError as exc:
                            if on_problem:
                                on_problem(Problem(f"WARC {path.name}", f"warcinfo: {exc}; replayed as revision 1"))
                        try:
                            current.requests = json.loads(info.get(ACCOUNT_REQUESTS_FIELD) or "{}")
                        except ValueError as exc:
                            if on_problem:
                                why = f"warcinfo: {ACCOUNT_REQUESTS_FIELD} is not JSON ({exc}); replayed as configured"
                                on_problem(Problem(f"WARC {path.name}", why))
                        try:
                            current.parsers = parse_revisions(
                                info.get(PARSER_REVISIONS_FIELD, ""), PARSER_REVISIONS_FIELD
                            )
                        except ValueError as exc:  # what it explains in verify --replay: nothing, as revision 1
                            if on_problem:
                                on_problem(Problem(f"WARC {path.name}", f"warcinfo: {exc}; read as revision 1", "note"))
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
        if records.stopped:
            problem = _damage(path, records, checks)
            if problem.severity == "error" and current is not None and path in current.files:
                current.damaged.append(path.name)
            if on_problem:
                on_problem(problem)
    if current is not None:
        yield current


@dataclass
class RebuildOutcome:
    runs: int
    problems: list[Problem]
    # run id -> platform -> the parser revision the run read that platform's responses at (absent: 1)
    parsed_at: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        """Problems that make the rebuilt database incomplete (the rest are notes)."""
        return [p for p in self.problems if p.severity == "error"]


def rebuild_database(
    config: Config,
    out: Path,
    *,
    public_key: Path | None = None,
    progress: RunProgress | None = None,
    on_run: Callable[[str, int], None] | None = None,
    on_problem: Callable[[Problem], None] | None = None,
) -> RebuildOutcome:
    """Replay every WARC under the archive into a new database at `out`; returns the runs and the problems.

    The WARC files are first checked against the checkpoint copies beside them, signed by `public_key` (default:
    the archive's, in its key folder), and against the live database's `warc_files` when it can be read.
    `on_run(run_id, responses)` is told as each run's replay starts, with the number of responses it captured;
    `progress` as its accounts' replays go (`observed` at each commit, `account_finished`); `on_problem` of each
    problem as it is found: a file not as recorded, damage, a failed replay (errors: the database is written
    but incomplete), a torn tail of a killed run, an account that failed when captured too (notes)."""
    if out.exists():
        raise ConfigError(f"{out}: already exists; rebuild writes a new database, choose another --out")
    if out.resolve() == config.archive.database.resolve():
        raise ConfigError(f"{out}: is the live archive database; choose another --out")
    # Neither WARC folder nor database is a wrong config (a typo in [archive] dir), not an archive of no runs: an
    # empty database written as "rebuilt" would look like a result. (With the database there, its warc_files say
    # which WARC files are missing.)
    if not config.archive.warc_dir.is_dir() and not config.archive.database.exists():
        raise ConfigError(
            f"{config.archive.warc_dir}: no such WARC folder (and no {config.archive.database.name} beside it), so "
            f"nothing to rebuild from; check [archive] in {config.path}"
        )
    if public_key is None and (config.archive.keys_dir / PUBLIC_KEY).exists():
        public_key = config.archive.keys_dir / PUBLIC_KEY
    trusted = load_public_key(public_key) if public_key is not None else None
    problems: list[Problem] = []

    def found(problem: Problem) -> None:
        problems.append(problem)
        if on_problem:
            on_problem(problem)

    live, first = read_live_archive(config.archive.database)
    if trusted is None and copies_in(config.archive.warc_dir / CHECKPOINT_DIR):
        first.append(missing_key_problem())
    for problem in first:
        found(problem)
    checks = check_warc_files(config.archive.warc_dir, trusted, live)
    for problem in checks.problems:
        found(problem)
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
            parsed_at: dict[str, dict[str, int]] = {}
            runs = _replay_runs(config, store, progress, on_run, found, checks, parsed_at)
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
    return RebuildOutcome(runs, problems, parsed_at)


def _failed_replay(
    run: _RunRecords, result: AccountResult, session: ReplaySession | None, checks: WarcChecks
) -> Problem:
    """A replay that failed: a note where the capture explains it, else an error."""
    run_id, where = run.run_id, f"account {result.account} of run {run.run_id}"
    if run.damaged:
        return Problem(where, f"replay failed ({result.error}) after the damage in {', '.join(run.damaged)}")
    live = checks.live
    captured = live.outcomes.get((run_id, result.account)) if live is not None else None
    if captured == "failed":
        return Problem(where, f"failed when captured too (replayed: {result.error})", "note")
    if captured == "ok":
        return Problem(where, f"replay failed ({result.error}), though the capture went without failure")
    if live is not None and run_id in live.runs and run_id not in live.finished_runs:
        why = "the run was interrupted before the account finished: its replay stops where its capture stops"
        return Problem(where, f"{why} ({result.error})", "note")
    if session is not None and session.uncaptured is None and not session.unreplayed():
        return Problem(where, f"failed as captured: the replay used every captured response ({result.error})", "note")
    return Problem(where, f"replay failed: {result.error}")


def _unasked(run: _RunRecords, account: str, session: ReplaySession) -> Problem:
    """A replay that went through without asking for every response captured for the account: the rebuilt
    database may lack what those hold, so it is an error, never a quiet success. The usual cause is an option
    that shapes the requests changed in the config since the capture."""
    return Problem(
        f"account {account} of run {run.run_id}",
        f"the replay never asked for {session.unreplayed()} of the responses captured for it (the first: GET "
        f"{session.first_unreplayed()}), so what they hold is not in the rebuilt database; if the account's "
        "media, direct_messages, api_base or other options changed since the capture, set them back for the rebuild",
    )


def _replay_runs(
    config: Config,
    store: Store,
    progress: RunProgress,
    on_run: Callable[[str, int], None] | None,
    on_problem: Callable[[Problem], None],
    checks: WarcChecks,
    parsed_at: dict[str, dict[str, int]],
) -> int:
    accounts = {a.name: a for a in config.accounts}
    runs = 0
    for run in index_runs(config.archive.warc_dir, on_problem, checks):
        parsed_at[run.run_id] = run.parsers
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
            account = as_captured(account, run.requests.get(name))  # asked as the run asked, whatever changed since
            recorded = run.exchanges.get(name, [])
            sessions: list[ReplaySession] = []
            # A run that did not finish is replayed as far as it committed: the next run started from there.
            committed = checks.live.committed.get(run.run_id) if checks.live is not None else None
            limit = committed.get(name, 0) if committed is not None else None
            if limit is None and checks.live is not None:
                # An account that failed likewise: a parser fixed since (one that failed on a response, e.g. a lone
                # surrogate in its JSON) would read further than the run did, into what a later run recorded.
                limit = checks.live.committed_before_failing.get((run.run_id, name))

            def open_session(
                connector: Connector, name: str = name, recorded: list = recorded, sessions: list = sessions
            ) -> ReplaySession:
                sessions.append(
                    ReplaySession(
                        config.archive.warc_dir, name, recorded, connector.token_param, connector.rate_limit_policy()
                    )
                )
                return sessions[-1]

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
                    run.revisions.get(account.platform, FIRST_REVISION),
                    limit=limit,
                )
            progress.account_finished(result)
            statuses.append(result.status)
            if result.status != "ok":
                on_problem(_failed_replay(run, result, sessions[-1] if sessions else None, checks))
            elif limit is not None:
                why = f"replayed the {limit} observation(s) it committed before it stopped; a later run recorded again"
                on_problem(Problem(f"account {name} of run {run.run_id}", f"{why} what it captured after them", "note"))
            elif sessions and sessions[-1].unreplayed():
                on_problem(_unasked(run, name, sessions[-1]))
        for path in run.files:
            with store.transaction():
                size, records = path.stat().st_size, scan_warc(path).records
                sha = checks.sha256.get(path.name) or file_sha256(path)
                store.append_warc_file(run.run_id, path.name, sha, size, records)
        store.append_run_result(run.run_id, "ok" if all(s == "ok" for s in statuses) else "failed", {})
        runs += 1
    return runs
