"""A disk that fails under the archive (full, a quota, read-only, an I/O error, a WARC folder the run cannot write)
stops the command as a whole: exit 1, not bad input (2); one line naming the file that failed (and so its volume)
and what to do; nothing committed lost, nothing written after the failure (no record behind a torn one, no row
outside the run's transaction); once the disk is fixed, the next run completes the work as after a crash.

The faults are injected in the process (the write that fails raises the errno the kernel or SQLite would give), so
the tests need no mount, no root and no LD_PRELOAD; a review reproduced each of them for real on a small tmpfs."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from archiver import ledger, pipeline
from archiver.checkpoints import PUBLIC_KEY
from archiver.cli import app
from archiver.config import load_config
from archiver.connectors import CONNECTORS
from archiver.connectors.mastodon import MastodonConnector
from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer
from archiver.errors import StorageError
from archiver.scan.alerts import stopped_email, stopped_payload
from archiver.store import Store
from archiver.verify import verify_archive
from archiver.warc import _HashingFile

from .test_crash import small_clinic
from .test_phi_alerts import Hooks

TOKEN = "storage-test-token-Rk4w9"
ENV = {"STORAGE_TOKEN": TOKEN}
MESSAGES = {
    errno.ENOSPC: "No space left on device",
    errno.EDQUOT: "Disk quota exceeded",
    errno.EROFS: "Read-only file system",
    errno.EIO: "Input/output error",
}


class SecondPlatform(MastodonConnector):
    """Mastodon's API under another platform name: its account is captured in a thread of its own."""

    platform: ClassVar[str] = "x"


def two_clinics(now: datetime) -> MastodonState:
    """The crash tests' clinic, and a second clinic on the same server for a second account."""
    state = small_clinic(now)
    north = state.add_account("northside", "Northside Clinic")
    for i in range(12):
        state.add_status(north["id"], f"Northside post {i}", created_at=now - timedelta(days=9, minutes=-i))
    return state


@pytest.fixture(scope="module")
def server() -> Iterator[SampleMastodonServer]:
    with SampleMastodonServer(two_clinics(datetime.now(UTC)), TOKEN, rate_limit=1_000_000) as s:
        yield s


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    """Commits every 7 observations, as the crash tests make them: faults land between committed batches."""
    monkeypatch.setattr(pipeline, "COMMIT_EVERY", 7)


@pytest.fixture
def two_platforms(monkeypatch):
    monkeypatch.setitem(CONNECTORS, "x", SecondPlatform)


def config(directory: Path, server: SampleMastodonServer, second: str = "mastodon", parallel: int = 1) -> Path:
    """Two accounts: riverside (most of the data, captured first) and northside, on `second`'s platform."""
    directory.mkdir(parents=True, exist_ok=True)
    accounts = "".join(
        f'\n[[accounts]]\nname = "{name}"\nplatform = "{platform}"\napi_base = "{server.base_url}"\n'
        f'account = "@{name}"\ntoken_env = "STORAGE_TOKEN"\n'
        for name, platform in (("riverside", "mastodon"), ("northside", second))
    )
    path = directory / "archiver.toml"
    path.write_text(f'[archive]\ndir = "arch"\nparallel_platforms = {parallel}\n{accounts}')
    return path


def run(cfg: Path):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(app, ["run", "--config", str(cfg), "-q"], env=ENV)


def query(cfg: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(cfg.parent / "arch" / "archive.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


VERSIONS = "SELECT item_key, kind, content_sha256, text, edited_at FROM item_versions ORDER BY item_key, id"


def verifies(cfg: Path) -> list[str]:
    """What `archiver verify` finds that is not a note (a torn WARC tail set aside is a note)."""
    arch = cfg.parent / "arch"
    key = arch / "keys" / PUBLIC_KEY
    problems = verify_archive(arch / "archive.db", arch / "warcs", key if key.exists() else None)
    return [str(p) for p in problems if p.severity != "note"]


@pytest.fixture(scope="module")
def reference(server, tmp_path_factory) -> tuple[list[tuple], int]:
    """The versions of an uninterrupted run, and how many writes its WARC file took."""
    calls = []
    write = _HashingFile.write
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_HashingFile, "write", lambda self, data: calls.append(1) or write(self, data))
        cfg = config(tmp_path_factory.mktemp("reference"), server)
        result = run(cfg)
    assert result.exit_code == 0, result.output
    return query(cfg, VERSIONS), len(calls)


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def resumes_exactly(cfg: Path, reference: tuple[list[tuple], int]) -> None:
    """The archive verifies (a torn tail aside), and the next run completes it to the uninterrupted run's versions."""
    assert verifies(cfg) == []
    again = run(cfg)
    assert again.exit_code == 0, again.output
    assert query(cfg, VERSIONS) == reference[0]
    assert verifies(cfg) == []


# -- the WARC files -----------------------------------------------------------------------------------------------


def failing_write(monkeypatch, at: int, code: int, torn: bool = False) -> list[int]:
    """The `at`th write into a WARC file fails once with `code` (having written half its bytes when `torn`, as a
    write that ran out of room does); later writes would succeed. Returns the writes tried after it."""
    write = _HashingFile.write
    calls = {"n": 0}
    after: list[int] = []

    def flaky(self, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] > at:
            after.append(len(data))
        elif calls["n"] == at:
            if torn:
                self._file.write(data[: len(data) // 2])
                self._file.flush()
            raise OSError(code, MESSAGES[code])
        return write(self, data)

    monkeypatch.setattr(_HashingFile, "write", flaky)
    return after


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (errno.ENOSPC, "its disk is full (No space left on device): free some space"),
        (errno.EDQUOT, "the user's disk quota is exceeded (Disk quota exceeded): free some space or raise the quota"),
        (
            errno.EROFS,
            "the file system became read-only (Read-only file system): find out why (the kernel log) and remount it "
            "read-write",
        ),
        (errno.EIO, "the disk reported an I/O error (Input/output error): check the device"),
    ],
    ids=["ENOSPC", "EDQUOT", "EROFS", "EIO"],
)
def test_a_failed_warc_write_stops_the_run_naming_the_file_and_what_to_do(
    server, reference, tmp_path, monkeypatch, code, said
):
    cfg = config(tmp_path, server)
    failing_write(monkeypatch, reference[1] // 4, code)
    result = run(cfg)
    assert result.exit_code == 1, result.output  # the run did not complete; not bad input (2)
    line = one_line(result.output)
    warcs = cfg.parent / "arch" / "warcs"
    [warc] = sorted(warcs.glob("*.warc.gz"))
    assert (
        line == f"archiver: error: {warc}: {said}; nothing committed is lost: the next run takes up what this one left"
    )
    assert query(cfg, "SELECT count(*) FROM account_runs") == [(0,)]  # no account blamed for the disk
    monkeypatch.undo()
    resumes_exactly(cfg, reference)


def test_the_alert_channels_hear_of_a_run_the_disk_stopped(server, reference, tmp_path, monkeypatch):
    """A full disk stopped the night's run: cron's mail said so, but the channels that hear of a failed account (the
    compliance team's chat, IT's mailbox) heard nothing. They get the run's one line, naming the file and the fix."""
    hooks = Hooks()
    try:
        cfg = config(tmp_path, server)
        webhook = f'[alerts.webhook]\nurl = "{hooks.url}"\n\n[[accounts]]'
        cfg.write_text(cfg.read_text().replace("[[accounts]]", webhook, 1))
        failing_write(monkeypatch, reference[1] // 4, errno.ENOSPC)
        result = run(cfg)
        assert result.exit_code == 1, result.output
        line = one_line(result.output)  # still the one line: what the channels answered goes to the log
        [(_, stopped)] = [post for post in hooks.posts if post[1].get("event") == "run-stopped"]
        assert stopped["error"] == line.removeprefix("archiver: error: ") and "its disk is full" in stopped["error"]
        assert stopped["host"] and stopped["archive"] == str(cfg.parent / "arch")
        assert [post["event"] for _, post in hooks.posts] == ["run-stopped"]  # no account blamed for the disk
    finally:
        hooks.stop()


def test_the_stopped_run_e_mail_says_the_host_the_line_and_that_nothing_committed_is_lost(server, tmp_path):
    cfg = config(tmp_path, server)
    mail = '[alerts.email]\nsmtp_host = "127.0.0.1"\nfrom = "archiver@clinic.test"\nto = ["it@clinic.test"]\n\n'
    cfg.write_text(cfg.read_text().replace("[[accounts]]", mail + "[[accounts]]", 1))
    loaded = load_config(cfg)
    line = f"{cfg.parent / 'arch' / 'warcs'}: its disk is full (No space left on device): free some space"
    message = stopped_email(loaded, stopped_payload(loaded, line))
    host = socket.gethostname()
    assert message["Subject"] == f"[archiver] run stopped on {host}: the archive's storage failed"
    body = message.get_content()
    assert line in body and "What was committed is kept; once the disk is fixed, the next run resumes." in body


def test_after_a_write_torn_mid_record_no_account_writes_to_the_file_again(server, reference, tmp_path, monkeypatch):
    """A write fails halfway through a record, once (a quota hit for a moment): the file now ends in a torn record.
    Before, the run went on with the next account into the same file, behind the torn record: damage in the middle
    of a WARC file. Now nothing more is written to it, `verify` finds at most a torn tail, and the next run sets
    it aside and completes the work."""
    cfg = config(tmp_path, server)
    after = failing_write(monkeypatch, reference[1] // 4, errno.EIO, torn=True)
    result = run(cfg)
    assert after == []  # not a byte more into any WARC file, whichever account (before: 200 writes more)
    assert result.exit_code == 1, result.output
    assert "the disk reported an I/O error" in one_line(result.output)
    monkeypatch.undo()
    resumes_exactly(cfg, reference)
    assert len(list((cfg.parent / "arch" / "warcs" / "torn").iterdir())) == 1  # the torn tail, set aside


def test_a_warc_folder_the_run_cannot_write_is_one_line_not_a_failure_per_account(
    server, reference, tmp_path, monkeypatch
):
    """Before: every account failed with "unexpected PermissionError" (one warning each), and the run went on."""
    cfg = config(tmp_path, server)
    assert run(cfg).exit_code == 0
    warcs = cfg.parent / "arch" / "warcs"

    def refused(self, path: Path) -> None:  # the folder made 0500 under the run (root passes mode bits: injected)
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(_HashingFile, "__init__", refused)
    result = run(cfg)
    assert result.exit_code == 1, result.output
    assert one_line(result.output) == (
        f"archiver: error: {warcs}: the user running archiver cannot write it (Permission denied): check its owner, "
        "mode and mount; nothing committed is lost: the next run takes up what this one left"
    )
    assert query(cfg, "SELECT count(*) FROM account_runs") == [(2,)]  # the first run's two; none of the second
    monkeypatch.undo()
    resumes_exactly(cfg, reference)


# -- the database ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "said"),
    [
        (sqlite3.SQLITE_IOERR | (3 << 8), "disk I/O error", "the disk reported an I/O error (disk I/O error): check"),
        (sqlite3.SQLITE_READONLY, "attempt to write a readonly database", "it cannot be written (attempt to write"),
        (sqlite3.SQLITE_FULL, "database or disk is full", "its disk is full (database or disk is full): free"),
    ],
    ids=["IOERR_WRITE", "READONLY", "FULL"],
)
def test_a_failed_database_write_stops_the_run_naming_the_database(
    server, reference, tmp_path, monkeypatch, code, message, said
):
    """SQLite's every errno but ENOSPC is "disk I/O error": a quota, a read-only remount, a failing device. Before,
    the store's error made it one account's failure, and the run went on."""
    cfg = config(tmp_path, server)
    append = ledger.append_entry
    calls = {"n": 0}

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 60:
            error = sqlite3.OperationalError(message)
            error.sqlite_errorcode = code
            raise error
        return append(*args, **kwargs)

    monkeypatch.setattr(ledger, "append_entry", failing)
    result = run(cfg)
    assert result.exit_code == 1, result.output
    line = one_line(result.output)
    assert line.startswith(f"archiver: error: {cfg.parent / 'arch' / 'archive.db'}: {said}"), line
    assert line.endswith("nothing committed is lost: the next run takes up what this one left")
    monkeypatch.undo()
    resumes_exactly(cfg, reference)


def sqlite_rolls_back_at_the_fifth_commit(monkeypatch, error: sqlite3.Error) -> list[str]:  # noqa: ANN001
    """Store.commit's fifth call rolls back and raises `error`, as SQLite does on an I/O error in COMMIT; returns
    the tables any row is appended to outside a transaction after it (filled as the run goes)."""
    commit, insert = Store.commit, Store._insert
    state = {"commits": 0, "failed": False}
    outside: list[str] = []

    def failing_commit(self: Store) -> None:
        state["commits"] += 1
        if state["commits"] == 5 and not state["failed"]:
            state["failed"] = True
            self.conn.execute("ROLLBACK")
            raise error
        commit(self)

    def watched_insert(self: Store, table: str, row: dict) -> int:
        if state["failed"] and not self.conn.in_transaction:
            outside.append(table)
        return insert(self, table, row)

    monkeypatch.setattr(Store, "commit", failing_commit)
    monkeypatch.setattr(Store, "_insert", watched_insert)
    return outside


@pytest.mark.parametrize("parallel", [1, 2], ids=["one-thread", "parallel-platforms"])
def test_after_sqlite_rolls_the_run_back_nothing_is_written_outside_a_transaction(
    server, reference, tmp_path, monkeypatch, two_platforms, parallel
):
    """An I/O error in COMMIT: SQLite rolls the transaction back by itself. Before, the failed account's row and the
    other platform's rows were then appended in autocommit, and the run ended on "cannot commit - no transaction
    is active", exit 2. Now the run stops at once with the original error."""
    cfg = config(tmp_path, server, second="x", parallel=parallel)
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode = sqlite3.SQLITE_IOERR | (3 << 8)  # SQLITE_IOERR_WRITE
    outside = sqlite_rolls_back_at_the_fifth_commit(monkeypatch, error)
    result = run(cfg)
    assert outside == []  # before: the other platform's versions and events, or the failed account's row
    assert result.exit_code == 1, result.output
    assert one_line(result.output) == (
        f"archiver: error: {cfg.parent / 'arch' / 'archive.db'}: the disk reported an I/O error (disk I/O error): "
        "check the device, and the user's disk quota (SQLite reports a quota exceeded so too); nothing committed "
        "is lost: the next run takes up what this one left"
    )
    assert query(cfg, "SELECT count(*) FROM run_results") == [(0,)]
    monkeypatch.undo()
    monkeypatch.setitem(CONNECTORS, "x", SecondPlatform)
    assert verifies(cfg) == []
    assert run(cfg).exit_code == 0
    assert query(cfg, VERSIONS) == reference[0]


def test_any_error_sqlite_ends_the_run_transaction_on_stops_the_run(server, reference, tmp_path, monkeypatch):
    """Not only a disk's: whatever error SQLite rolled the transaction back on, no row is written after it (before:
    the failed account's row, in autocommit, then "cannot commit - no transaction is active", exit 2)."""
    cfg = config(tmp_path, server)
    error = sqlite3.DatabaseError("database disk image is malformed")
    error.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
    outside = sqlite_rolls_back_at_the_fifth_commit(monkeypatch, error)
    result = run(cfg)
    assert outside == []
    assert result.exit_code == 1, result.output
    assert one_line(result.output) == (
        f"archiver: error: {cfg.parent / 'arch' / 'archive.db'}: SQLite rolled the run's transaction back after "
        "DatabaseError: database disk image is malformed; the run stopped there; nothing committed is lost: the "
        "next run takes up what this one left"
    )
    monkeypatch.undo()
    resumes_exactly(cfg, reference)


def test_a_failure_before_the_capture_that_names_no_file_names_the_archive_folder(server, tmp_path, monkeypatch):
    """An I/O error whose OSError names no file (an fsync, a write) is said with the folders the run writes in."""
    cfg = config(tmp_path, server)

    def failing(archive) -> None:  # type: ignore[no-untyped-def]
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(pipeline, "tighten_outside_files", failing)
    result = run(cfg)
    assert result.exit_code == 1, result.output
    assert one_line(result.output).startswith(
        f"archiver: error: {cfg.parent / 'arch'}: the disk reported an I/O error (Input/output error): check the device"
    )


# -- checkpoint, export, serve --------------------------------------------------------------------------------------


def test_a_checkpoint_copy_that_cannot_be_written_is_named(server, tmp_path, monkeypatch):
    cfg = config(tmp_path, server)
    assert run(cfg).exit_code == 0
    write_text = Path.write_text

    def full(self: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.name.endswith(".json.tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")  # as a write's error: no file named
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    result = CliRunner().invoke(app, ["checkpoint", "--config", str(cfg)], env=ENV)
    assert result.exit_code == 1, result.output
    line = one_line(result.output)
    checkpoints = cfg.parent / "arch" / "warcs" / "checkpoints"
    assert line.startswith(f"archiver: error: {checkpoints}/checkpoint-"), line
    assert line.endswith(
        ".json.tmp: its disk is full (No space left on device): free some space; nothing committed is lost"
    )
    monkeypatch.undo()
    assert CliRunner().invoke(app, ["checkpoint", "--config", str(cfg)], env=ENV).exit_code == 0
    assert verifies(cfg) == []


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (errno.ENOSPC, "its disk is full (No space left on device): free some space"),
        (errno.EDQUOT, "the user's disk quota is exceeded (Disk quota exceeded): free some space or raise the quota"),
    ],
    ids=["ENOSPC", "EDQUOT"],
)
def test_an_export_whose_bundle_folder_fills_names_the_bundle_folder(server, tmp_path, monkeypatch, code, said):
    from archiver.bundle import write

    cfg = config(tmp_path, server)
    assert run(cfg).exit_code == 0
    out = tmp_path / "cases" / "case-1"
    write_json = write._write_json

    def full(path: Path, value: object) -> None:
        if path.name == "custody.json":
            raise OSError(code, MESSAGES[code])  # as a write's error: no file named
        write_json(path, value)

    monkeypatch.setattr(write, "_write_json", full)
    export = ["export", "--config", str(cfg), "--case", "C-1", "--account", "riverside", "--out", str(out), "-q"]
    result = CliRunner().invoke(app, export, env=ENV)
    assert result.exit_code == 1, result.output
    assert one_line(result.output) == (
        f"archiver: error: the bundle folder {out}: {said}; no bundle was left there: export again once it is fixed"
    )
    assert list(out.parent.iterdir()) == []  # no bundle, no staging folder
    monkeypatch.undo()
    assert CliRunner().invoke(app, export, env=ENV).exit_code == 0
    assert CliRunner().invoke(app, ["verify-bundle", str(out)], env=ENV).exit_code == 0


def test_serve_says_why_the_access_log_could_not_be_written_and_which_file(server, tmp_path, monkeypatch):
    """A full disk under the access log: every request is refused (503), and the log line says why and where;
    before, it said only "access log not written (OperationalError)". (The COMMIT fails and SQLite rolls back:
    the access log's own ROLLBACK, had it been tried, would have failed with "no transaction is active".)"""
    from archiver.serve import build_datasette

    cfg = config(tmp_path, server)
    assert run(cfg).exit_code == 0
    arch = cfg.parent / "arch"

    async def requests() -> list[int]:
        ds = build_datasette(arch / "archive.db", access_log=arch / "access-log.db")
        await ds.invoke_startup()
        log = ds.archiver_workspace.access_log  # type: ignore[attr-defined]
        pages = log.conn.execute("PRAGMA page_count").fetchone()[0]
        log.conn.execute(f"PRAGMA max_page_count = {pages}")  # its disk full: no page more
        return [(await ds.client.get(f"/archive/items?_size=3&n={i}")).status_code for i in range(60)]

    said: list[str] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    # the runs before set up the archiver's log handlers on CliRunner's streams, closed since: this one alone
    logger = logging.getLogger("archiver.serve")
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "handlers", [handler])
    statuses = asyncio.run(requests())
    assert statuses[-1] == 503 and set(statuses) == {200, 503}
    assert len(said) == statuses.count(503)
    assert said[0].endswith(
        f"answered 503: access log not written to {arch / 'access-log.db'}: its disk is full (database or disk is "
        "full): free some space"
    )


def test_serve_on_a_full_disk_says_the_disk_not_that_the_file_is_no_archive(server, tmp_path, monkeypatch):
    """A WAL database's reader needs its -shm: on a full disk SQLite cannot make it and says "disk I/O error", which
    serve reported as "cannot be read as an archive database". (The review saw it on a real full tmpfs; here the
    -shm's failure and the full file system are injected.)"""
    from archiver import errors, serve

    cfg = config(tmp_path, server)
    assert run(cfg).exit_code == 0
    database = cfg.parent / "arch" / "archive.db"

    def no_shm(sql_uri: str, **kwargs: object) -> sqlite3.Connection:
        failure = sqlite3.OperationalError("disk I/O error")
        failure.sqlite_errorcode = sqlite3.SQLITE_IOERR_SHMOPEN  # as SQLite sets it
        raise failure

    full = os.statvfs(database.parent)
    monkeypatch.setattr(serve.sqlite3, "connect", no_shm)
    monkeypatch.setattr(errors.os, "statvfs", lambda path: os.statvfs_result((*full[:4], 0, *full[5:])))
    with pytest.raises(StorageError) as refused:
        serve.build_datasette(database)  # checks the archive before anything is served
    assert str(refused.value) == (
        f"{database}: its disk is full (disk I/O error): free some space; the archive was not changed: serve it once "
        "that is fixed"
    )
