"""A run always ends with its result, its checkpoint and its alerts, and the next run is not stuck behind the same
fault: a detector that raises on one text (or on every text), an unexpected error in the scan or the consent
check, a worker pool that cannot start a process, a scan-ahead that fails, a disk that fills during the capture,
an archive folder whose path holds URI characters, an organisation rule that backtracks without end, and a stop
while a worker is busy."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver import pipeline
from archiver.checkpoints import PUBLIC_KEY
from archiver.cli import app
from archiver.consent import check as consent_check
from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer
from archiver.errors import ConfigError
from archiver.scan import archive as scan_archive
from archiver.scan import parallel
from archiver.scan.archive import build_detector
from archiver.scan.engine import Detector
from archiver.scan.parallel import VersionScanner, detect_versions
from archiver.scan.rules import BUILTIN_FILES, build_rules, load_rules, runaway_repeat
from archiver.store import Store
from archiver.verify import ArchiveNow, verify_archive

from .test_store import make_item

TOKEN = "wedge-test-token-Hq27"
ENV = {"WEDGE_TOKEN": TOKEN}
ODD = "ODDMARK"  # the text a faulty detector raises on
STUCK = "STUCKMARK"  # the text a worker hangs on
PHI = "my MRN 44550{:03d} and I was diagnosed with diabetes"


class OddDetector(Detector):
    """Raises on a text holding ODD (a detector bug on an odd text), in the run's process and in a worker alike."""

    def detect(self, text, *args, **kwargs):  # type: ignore[no-untyped-def]
        if text and ODD in text:
            raise ValueError("detector bug on an odd text")
        return super().detect(text, *args, **kwargs)


class BrokenDetector(Detector):
    """Raises on every text: a broken detector, not an odd text."""

    def detect(self, text, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise ValueError("broken detector")


class StuckDetector(Detector):
    """In a worker, hangs on a text holding STUCK, as a backtracking rule does; first it writes its pid to
    `marker`. Detects as usual in the run's own process."""

    marker = ""

    def detect(self, text, *args, **kwargs):  # type: ignore[no-untyped-def]
        if parallel._worker is not None and text and STUCK in text:  # noqa: SLF001 - only in a worker
            written = Path(f"{self.marker}.tmp")
            written.write_text(str(os.getpid()))
            written.rename(self.marker)  # whole, or not there: the test reads it as soon as it is
            time.sleep(600)
        return super().detect(text, *args, **kwargs)


def as_class(detector: Detector, cls: type[Detector], **attrs: str) -> Detector:
    detector.__class__ = cls
    detector.__dict__.update(attrs)
    return detector


def clinic(replies: int = 40, marker: str | None = None, marker_at: int = 3, in_post: bool = False) -> MastodonState:
    """A clinic's posts with replies, every fifth one holding PHI; reply `marker_at` (or its post) holds `marker`."""
    now = datetime.now(UTC)
    state = MastodonState()
    owner = state.add_account("riverside", "Riverside Clinic")
    person = state.add_account("pat", "Pat")
    for i in range(replies):
        marked = marker is not None and i == marker_at
        post_text = f"riverside post {i}" + (f" {marker}" if marked and in_post else "")
        post = state.add_status(owner["id"], post_text, created_at=now - timedelta(days=12, minutes=-i))
        text = f"reply {i}" + (" " + PHI.format(i) if i % 5 == 0 else "")
        if marked and not in_post:
            text = f"reply {i} {marker} here"
        state.add_status(person["id"], text, in_reply_to_id=post["id"], created_at=now - timedelta(days=11, minutes=-i))
    return state


@pytest.fixture
def server() -> Iterator[SampleMastodonServer]:
    with SampleMastodonServer(clinic(marker=ODD), TOKEN, rate_limit=1_000_000) as s:
        yield s


def config(directory: Path, server: SampleMastodonServer, scan: str = "", folder: str = "arch") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "archiver.toml"
    path.write_text(
        f'[archive]\ndir = "{folder}"\n\n[[accounts]]\nname = "riverside"\nplatform = "mastodon"\n'
        f'api_base = "{server.base_url}"\naccount = "@riverside"\ntoken_env = "WEDGE_TOKEN"\n'
        + (f"\n[scan]\n{scan}\n" if scan else "")
    )
    return path


def run(cfg: Path, *more: str):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(app, ["run", "--config", str(cfg), "--json", *more], env=ENV)


def query(cfg: Path, sql: str, *args: object, folder: str = "arch") -> list[tuple]:
    conn = sqlite3.connect(cfg.parent / folder / "archive.db")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def verifies(arch: Path) -> list[str]:
    """The problems `archiver verify` finds; notes (what a stopped run left for the next one) are none."""
    problems = verify_archive(arch / "archive.db", arch / "warcs", arch / "keys" / PUBLIC_KEY)
    return [str(p) for p in problems if p.severity != "note"]


def last_summary(cfg: Path) -> tuple[str, dict]:
    status, summary = query(cfg, "SELECT status, summary FROM run_results ORDER BY rowid DESC LIMIT 1")[0]
    return status, json.loads(summary)


def expected_flags(cfg: Path) -> list[tuple]:
    """What detecting every version in one process finds (the PHI scan's flags, without the consent check's)."""
    detector = build_detector(None)  # the real one, whatever a test put in its place for the run
    conn = sqlite3.connect(cfg.parent / "arch" / "archive.db")
    try:
        return [
            (version_id, hit.rule_id, hit.start, hit.end)
            for version_id, _, hits in detect_versions(conn, detector, 1, 10**9)[1]
            for hit in hits
        ]
    finally:
        conn.close()


def scan_flags(cfg: Path) -> list[tuple]:
    return query(
        cfg,
        "SELECT f.version_id, f.rule_id, f.span_start, f.span_end FROM flags f JOIN scan_runs s ON s.id = f.scan_id "
        "WHERE f.category != ? ORDER BY f.id",
        consent_check.CATEGORY,
    )


@pytest.fixture
def workers_on(monkeypatch) -> None:
    """Worker processes from the first commit, small batches, a commit every few observations."""
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 0)
    monkeypatch.setattr(parallel, "BATCH", 7)
    monkeypatch.setattr(pipeline, "COMMIT_EVERY", 5)


# -- a detector that raises ---------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "workers"])
def test_a_text_the_detector_raises_on_is_named_and_the_scan_goes_on(
    server, tmp_path, monkeypatch, workers_on, workers
):
    """The version is named in the run's notices (exit 1, the run recorded and signed), every other version is
    scanned and flagged, and the next run scans only what is new: one odd text never blocks the scan again."""
    build = scan_archive.build_detector
    monkeypatch.setattr(scan_archive, "build_detector", lambda config: as_class(build(config), OddDetector))
    cfg = config(tmp_path, server, f"workers = {workers}")

    first = run(cfg)
    assert first.exit_code == 1, first.output
    assert first.exception is None or isinstance(first.exception, SystemExit)
    (odd_id, odd_key), *_ = query(cfg, "SELECT id, item_key FROM item_versions WHERE text LIKE ?", f"%{ODD}%")
    status, summary = last_summary(cfg)
    assert status == "failed" and summary["accounts"][0]["status"] == "ok"
    named = [n for n in summary["notices"] if "could not be scanned and are not flagged" in n]
    assert len(named) == 1 and f"version {odd_id} ({odd_key}: ValueError" in named[0], summary["notices"]
    assert "detector bug" not in named[0]  # the error's type and place, never its message (it may quote the text)
    assert query(cfg, "SELECT count(*) FROM checkpoints")[0][0] == 1
    last = query(cfg, "SELECT max(id) FROM item_versions")[0][0]
    assert query(cfg, "SELECT from_version_id, to_version_id, versions_scanned FROM scan_runs") == [(1, last, last - 1)]
    assert scan_flags(cfg) == expected_flags(cfg)  # every other version, those after the odd one too
    assert any(version_id > odd_id for version_id, *_ in scan_flags(cfg))
    assert verifies(cfg.parent / "arch") == []

    person = next(a for a in server.state.accounts.values() if a["username"] == "pat")
    post = next(s for s in server.state.statuses.values() if s["account"]["id"] != person["id"])
    server.state.add_status(person["id"], "new reply " + PHI.format(999), in_reply_to_id=post["id"])
    second = run(cfg)
    assert second.exit_code == 0, second.output
    (scanned,) = query(cfg, "SELECT from_version_id, to_version_id FROM scan_runs WHERE id = 2")
    assert scanned[0] == last + 1 and scanned[1] > last
    assert scan_flags(cfg) == expected_flags(cfg)
    assert verifies(cfg.parent / "arch") == []


def test_archiver_scan_names_the_versions_it_left_out_and_exits_1(server, tmp_path, monkeypatch):
    cfg = config(tmp_path, server, "workers = 0")
    with monkeypatch.context() as patched:  # a run whose scan failed: `archiver scan` does it
        patched.setattr(scan_archive, "append_scan", lambda *args, **kwargs: 1 / 0)
        assert run(cfg).exit_code == 1
    build = scan_archive.build_detector
    monkeypatch.setattr(scan_archive, "build_detector", lambda config: as_class(build(config), OddDetector))
    result = CliRunner().invoke(app, ["scan", "--config", str(cfg)], env=ENV)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    (odd_id,) = query(cfg, "SELECT id FROM item_versions WHERE text LIKE ?", f"%{ODD}%")[0]
    assert f"could not be scanned and are not flagged: version {odd_id} (" in result.output
    assert scan_flags(cfg) == expected_flags(cfg) != []


def test_a_detector_raising_on_every_text_fails_the_scan_whole_and_the_next_run_scans(server, tmp_path, monkeypatch):
    """Not one odd text but a broken detector: the scan appends nothing (the next run scans the same versions
    again), the run is recorded and signed with a notice, exit 1."""
    build = scan_archive.build_detector
    monkeypatch.setattr(scan_archive, "build_detector", lambda config: as_class(build(config), BrokenDetector))
    cfg = config(tmp_path, server, "workers = 0")
    first = run(cfg)
    assert first.exit_code == 1, first.output
    status, summary = last_summary(cfg)
    failed = [n for n in summary["notices"] if n.startswith("PHI scan failed:")]
    assert len(failed) == 1 and "broken detector" not in failed[0] and "ValueError" in failed[0], summary["notices"]
    assert query(cfg, "SELECT count(*) FROM scan_runs")[0][0] == 0
    assert query(cfg, "SELECT count(*) FROM checkpoints")[0][0] == 1
    assert verifies(cfg.parent / "arch") == []

    monkeypatch.setattr(scan_archive, "build_detector", build)  # fixed
    second = run(cfg)
    assert second.exit_code == 0, second.output
    assert query(cfg, "SELECT from_version_id FROM scan_runs") == [(1,)]
    assert scan_flags(cfg) == expected_flags(cfg) != []


def test_an_unexpected_error_in_the_scan_or_the_consent_check_is_a_notice(server, tmp_path, monkeypatch):
    def scan_bug(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("scan bug")

    def check_bug(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyError("check bug")

    monkeypatch.setattr(scan_archive, "append_scan", scan_bug)
    monkeypatch.setattr(consent_check, "append_consent_check", check_bug)
    cfg = config(tmp_path, server)
    result = run(cfg)
    assert result.exit_code == 1, result.output
    status, summary = last_summary(cfg)
    assert status == "failed" and summary["accounts"][0]["status"] == "ok"
    assert any(n.startswith("PHI scan failed: unexpected RuntimeError: scan bug") for n in summary["notices"])
    assert any(n.startswith("consent check failed: unexpected KeyError: 'check bug'") for n in summary["notices"])
    assert query(cfg, "SELECT count(*) FROM checkpoints")[0][0] == 1
    assert verifies(cfg.parent / "arch") == []


# -- worker pool and scan-ahead -------------------------------------------------------------------------------


def test_a_pool_that_cannot_start_a_process_leaves_the_scan_to_the_run(server, tmp_path, monkeypatch, workers_on):
    """EAGAIN at RLIMIT_NPROC or a container's pids limit: the run scans in its own process, exit 0."""

    def no_process(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(ProcessPoolExecutor, "submit", no_process)
    cfg = config(tmp_path, server, "workers = 2")
    result = run(cfg)
    assert result.exit_code == 0, result.output
    assert query(cfg, "SELECT status, error FROM account_runs") == [("ok", None)]
    assert scan_flags(cfg) == expected_flags(cfg) != []
    assert verifies(cfg.parent / "arch") == []


def test_a_pool_that_stops_starting_processes_midway_loses_no_batch(tmp_path, monkeypatch):
    """The first process starts, the next cannot: every batch is still detected, and closing does not hang."""
    monkeypatch.setattr(parallel, "BATCH", 5)
    submit = ProcessPoolExecutor.submit
    calls: list[int] = []

    def first_only(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) > 1:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        return submit(self, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", first_only)
    store = Store.open(tmp_path / "a.db")
    try:
        store.append_run("run1", "host", "0" * 64, ["a"])
        with store.transaction():
            for n in range(40):
                text = PHI.format(n) if n % 3 == 0 else f"text {n}"
                store.append_item("a", make_item(text, item_key=f"mastodon:h:{n}", native_id=str(n)), "run1")
        detector = Detector(load_rules())
        last = store.last_version_id()
        expected = detect_versions(store.conn, detector, 1, last)[1]
        scanner = VersionScanner(store.conn, store.path, detector, 1, workers=2, parallel_from=0)
        scanner.committed(last)
        assert len(calls) == 2 and scanner.workers == 0
        found = [hit for _, _, (_, batch) in scanner.batches(1, last) for hit in batch]
        assert found == expected
        closing = threading.Thread(target=scanner.close, daemon=True)
        closing.start()
        closing.join(120)  # a guard against a hang, not a measure of speed
        assert not closing.is_alive(), "closing the scanner hung"
    finally:
        store.close()


def test_a_scan_ahead_that_fails_does_not_end_the_capture(server, tmp_path, monkeypatch, workers_on):
    """The scan's head start during the capture is an optimisation: when it fails, it is given up, the capture
    goes on in its transactions, and the scan after it does the work."""
    committed = VersionScanner.committed
    calls: list[int] = []

    def bug_once(self, last):  # type: ignore[no-untyped-def]
        calls.append(last)
        if len(calls) == 1:
            raise RuntimeError("scan-ahead bug")
        committed(self, last)

    monkeypatch.setattr(VersionScanner, "committed", bug_once)
    cfg = config(tmp_path, server, "workers = 2")
    result = run(cfg)
    assert result.exit_code == 0, result.output
    assert len(calls) == 2  # the first commit's, then only the scan's own: the head start was given up
    assert query(cfg, "SELECT status, error FROM account_runs") == [("ok", None)]
    assert scan_flags(cfg) == expected_flags(cfg) != []
    assert verifies(cfg.parent / "arch") == []


# -- a full disk ----------------------------------------------------------------------------------------------


def test_a_disk_that_fills_during_the_capture_is_reported_as_a_full_disk(server, tmp_path, monkeypatch):
    """SQLITE_FULL mid-capture: exit 1 and "free some space; nothing committed is lost" (not a config problem,
    exit 2); the archive verifies, and once there is space the next run completes the work."""
    cfg = config(tmp_path / "full", server)
    assert run(cfg).exit_code == 0
    person = next(a for a in server.state.accounts.values() if a["username"] == "pat")
    owner = next(a for a in server.state.accounts.values() if a["username"] == "riverside")
    for i in range(150):
        post = server.state.add_status(owner["id"], f"later post {i} " + "lorem ipsum " * 40)
        server.state.add_status(person["id"], f"later reply {i} " + "dolor sit " * 40, in_reply_to_id=post["id"])

    opened = Store.open.__func__  # type: ignore[attr-defined]

    def nearly_full(cls, path, **kwargs):  # type: ignore[no-untyped-def]
        store = opened(cls, path, **kwargs)
        if not kwargs.get("readonly"):  # room for a few pages more: the disk fills during the capture
            pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
            store.conn.execute(f"PRAGMA max_page_count = {pages + 12}")
        return store

    monkeypatch.setattr(Store, "open", classmethod(nearly_full))
    full = run(cfg)
    assert full.exit_code == 1, full.output
    assert "free some space; nothing committed is lost" in full.output
    assert "names an archive" not in full.output and "no transaction is active" not in full.output
    monkeypatch.undo()
    assert verifies(cfg.parent / "arch") == []

    again = run(cfg)
    assert again.exit_code == 0, again.output
    reference = config(tmp_path / "reference", server)
    assert run(reference).exit_code == 0
    versions = "SELECT item_key, content_sha256 FROM item_versions ORDER BY item_key, id"
    assert query(cfg, versions) == query(reference, versions)
    assert verifies(cfg.parent / "arch") == []


# -- URI characters in the archive's path ---------------------------------------------------------------------


def test_an_archive_folder_with_uri_characters_in_its_path_works(server, tmp_path, monkeypatch, workers_on):
    folder = "arch#2?x=%41"
    cfg = config(tmp_path, server, "workers = 2", folder=folder)
    for _ in range(2):  # the second finds the database there (the check before the lock opens it read-only)
        result = run(cfg)
        assert result.exit_code == 0, result.output
        assert scan_flags_in(cfg, folder) != []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder, "archiver.toml"])  # no stray file
    arch = tmp_path / folder
    assert verifies(arch) == []
    for command in (["verify"], ["status"]):
        done = CliRunner().invoke(app, [*command, "--config", str(cfg)], env=ENV)
        assert done.exit_code == 0, done.output
    run_id = query(cfg, "SELECT id FROM runs LIMIT 1", folder=folder)[0][0]
    assert ArchiveNow(arch / "archive.db").run_state(run_id) == "finished"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder, "archiver.toml"])


def scan_flags_in(cfg: Path, folder: str) -> list[tuple]:
    return query(cfg, "SELECT version_id FROM flags", folder=folder)


# -- a rule that backtracks without end -----------------------------------------------------------------------


def rule_file(regex: str, field: str = "regex") -> bytes:
    """An organisation's rule file of one pattern rule, `regex` as its `field` (regex or require)."""
    lines = ["version: ours-1", "patterns:", "  - id: ours.ward-code", "    category: other", "    severity: medium"]
    lines.append("    reason: a ward code")
    if field != "regex":
        lines.append("    regex: '(?P<value>\\d+)'")
    lines.append(f"    {field}: '{regex}'")
    return "\n".join([*lines, ""]).encode()


RUNAWAY = [
    r"(?P<value>(?:\w+\s?)+)#WARD",
    r"(a+)+b",
    r"(a|a)*b",
    r"(?:ab|\wb)+x",
    r"(?:a{1,4})+b",
    r"(a?a)+b",
    r"(\w+\s?){2,5}#",
    r"(?:\s*\w+)+#",
    r"(?:(?:a+|b)c?)*d",
    r"(?:.+,)+x",
]
BOUNDED = [
    r"\w+(?:\s\w+)*#WARD",
    r"(?:\d{3}[-.])+\d{4}",
    r"(?:[^,]+,)*x",
    r"(?:\w+\s+)+#",
    r"(?:\w+\s?,)+#",
    r"(?:\s?\w)+#",
    r"(?:x(?:a+|b)c?)*d",
    r"\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}",
    r"(?:ab|cd)+",
    r"[A-Z][a-z]+(?:[ -][A-Z][a-z]+)*",
    r"(?:\d{2})+",
    r"(?:a++)+b",
    r"a+b+c+",
]


@pytest.mark.parametrize("regex", RUNAWAY)
def test_an_organisation_pattern_that_can_backtrack_without_end_is_refused(regex):
    assert runaway_repeat(regex)
    with pytest.raises(ConfigError) as refused:
        build_rules([("/etc/archiver/ours.yml", rule_file(regex))])
    message = str(refused.value)
    assert message.startswith("/etc/archiver/ours.yml: patterns[0] (ours.ward-code).regex: ")
    assert "\n" not in message and "rewrite" in message


@pytest.mark.parametrize("regex", BOUNDED)
def test_a_pattern_whose_repeats_have_one_way_to_match_is_accepted(regex):
    assert not runaway_repeat(regex)
    build_rules([("/etc/archiver/ours.yml", rule_file(regex))])


def test_require_and_lexicon_expressions_are_checked_too():
    with pytest.raises(ConfigError, match=r"patterns\[0\] \(ours.ward-code\)\.require: "):
        build_rules([("ours.yml", rule_file(r"(a+)+", field="require"))])
    lexicon = b"version: ours-1\nlexicons:\n  conditions: ['re:(?:\\w+\\s?)+ward']\n"
    with pytest.raises(ConfigError, match=r"^ours.yml: lexicons.conditions\[0\]: "):
        build_rules([("ours.yml", lexicon)])


def test_every_built_in_expression_passes_the_check():
    rules = load_rules(builtin=(*BUILTIN_FILES, "consent.yml"))
    expressions = [r.regex.pattern for r in rules.patterns] + [r.require.pattern for r in rules.patterns if r.require]
    expressions += [e[3:] for entries in rules.lexicons.values() for e in entries if e.startswith("re:")]
    assert len(expressions) > 20
    assert [e for e in expressions if runaway_repeat(e)] == []


def test_archiver_scan_refuses_such_a_rule_file_with_exit_2(tmp_path):
    (tmp_path / "ours.yml").write_bytes(rule_file(r"(?P<value>(?:\w+\s?)+)#WARD"))
    cfg = tmp_path / "archiver.toml"
    cfg.write_text(
        f'[archive]\ndir = "arch"\n\n[[accounts]]\nname = "riverside"\nplatform = "mastodon"\n'
        f'api_base = "https://riverside.example"\naccount = "@riverside"\ntoken_env = "WEDGE_TOKEN"\n'
        f'\n[scan]\nrule_files = ["{tmp_path / "ours.yml"}"]\n'
    )
    Store.open(tmp_path / "arch" / "archive.db").close()
    result = CliRunner().invoke(app, ["scan", "--config", str(cfg)])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line]
    assert line.startswith(f"archiver: error: {tmp_path / 'ours.yml'}: patterns[0] (ours.ward-code).regex: ")


# -- a stop while a worker is busy ----------------------------------------------------------------------------


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return True
    return state in ("Z", "X")  # ended; its parent (now init) has not reaped it yet


def drain(batches: Iterator[object]) -> None:
    """Run a scan to its end, or to whatever closing the scanner under it makes it raise."""
    with contextlib.suppress(BaseException):  # the scanner was closed under it: what follows is not the test's
        for _ in batches:
            pass


@pytest.mark.parametrize("waited_for", [False, True], ids=["queued", "waited-for"])
def test_closing_a_scanner_does_not_wait_for_a_busy_worker(tmp_path, monkeypatch, waited_for):
    """Closed while a worker is deep in a text: before the scan reached that batch, or while the scan waits for
    it (a stop then ends that wait, and the scan closes the scanner)."""
    monkeypatch.setattr(parallel, "BATCH", 5)
    marker = tmp_path / "stuck"
    store = Store.open(tmp_path / "a.db")
    pid, scan = None, None
    try:
        store.append_run("run1", "host", "0" * 64, ["a"])
        with store.transaction():
            for n in range(5):  # one batch: the scan waits for it alone
                text = f"text {n} {STUCK}" if n == 1 else f"text {n}"
                store.append_item("a", make_item(text, item_key=f"mastodon:h:{n}", native_id=str(n)), "run1")
        detector = as_class(Detector(load_rules()), StuckDetector, marker=str(marker))
        scanner = VersionScanner(store.conn, store.path, detector, 1, workers=1, parallel_from=0)
        scanner.committed(store.last_version_id())
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert time.monotonic() < deadline, "the worker never reached the text"
            time.sleep(0.05)
        pid = int(marker.read_text())
        if waited_for:
            scan = threading.Thread(target=lambda: drain(scanner.batches(1, store.last_version_id())), daemon=True)
            scan.start()
            while 1 in scanner._in_pool:  # noqa: SLF001 - until the scan has taken the busy batch to wait for it
                assert time.monotonic() < deadline, "the scan never waited for the busy batch"
                time.sleep(0.05)
        closing = threading.Thread(target=scanner.close, daemon=True)
        closing.start()
        closing.join(120)  # a guard against a hang: the worker sleeps for 10 minutes
        assert not closing.is_alive(), "closing the scanner waited for the busy worker"
        deadline = time.monotonic() + 60
        while not gone(pid):
            assert time.monotonic() < deadline, "the busy worker was left running"
            time.sleep(0.05)
    finally:
        if pid is not None and not gone(pid):
            os.kill(pid, signal.SIGKILL)
        if scan is not None:
            scan.join(120)  # it goes on in this process once the worker is gone; then its connection can close
        if scan is None or not scan.is_alive():
            store.close()


@pytest.fixture
def stuck_server() -> Iterator[SampleMastodonServer]:
    with SampleMastodonServer(clinic(marker=STUCK, marker_at=39, in_post=True), TOKEN, rate_limit=1_000_000) as s:
        yield s


def test_sigterm_ends_a_run_whose_worker_is_busy(stuck_server, tmp_path):
    """SIGTERM to the run's pid (`kill PID`, `timeout`) while a worker is deep in one text: exit 130 with one line,
    the worker ends too, and the next run completes the work; the archive verifies."""
    marker = tmp_path / "stuck"
    cfg = config(tmp_path / "stopped", stuck_server, "workers = 2")
    child = (
        "import sys\n"
        "import archiver.scan.archive as scan_archive\n"
        "import archiver.scan.parallel as parallel\n"
        "parallel.BATCH = 5\n"
        "from tests.test_run_wedges import StuckDetector, as_class\n"
        "build, marker = scan_archive.build_detector, sys.argv[2]\n"
        "scan_archive.build_detector = lambda config: as_class(build(config), StuckDetector, marker=marker)\n"
        "sys.argv = ['archiver', 'run', '--config', sys.argv[1], '--quiet']\n"
        "from archiver.cli import main\n"
        "main()\n"
    )
    env = {**os.environ, **ENV, "ARCHIVER_SCAN_PARALLEL_FROM": "0", "ARCHIVER_COMMIT_EVERY": "5"}
    process = subprocess.Popen(
        [sys.executable, "-c", child, str(cfg), str(marker)],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pid = None
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the worker never reached the text"
            time.sleep(0.05)
        pid = int(marker.read_text())
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=120)  # the worker would sleep for 10 minutes
        except subprocess.TimeoutExpired:
            pytest.fail("the run did not end after SIGTERM while a worker was busy")
        assert process.returncode == 130, err
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("archiver: interrupted")
        deadline = time.monotonic() + 60
        while not gone(pid):
            assert time.monotonic() < deadline, "the busy worker was left running"
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        if pid is not None and not gone(pid):
            os.kill(pid, signal.SIGKILL)
    resumed = run(cfg)
    assert resumed.exit_code == 0, resumed.output
    assert verifies(cfg.parent / "arch") == []
