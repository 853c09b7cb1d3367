"""`archiver doctor` compares the review queue staff work from (flag_queue, read from the recorded flag states,
migration 0023) with the one flag_status computes: a state recorded that is not flag_status's (a flag_states row a
library caller appended, ledgered so `archiver verify` passes, or a run stopped before it recorded) is a problem,
named by flag, until a scan records every flag's state again."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

import archiver.store
from archiver import doctor
from archiver.config import ArchiveConfig, load_config
from archiver.items import Deletion
from archiver.store import Store

from .test_consent_register import judge_every_connection_on
from .test_flag_states import append_unrecorded_flag
from .test_phi_archive import cli, db, problems


@pytest.fixture(scope="module")
def template(tmp_path_factory, demo_template) -> Path:
    return demo_template.copy_to(tmp_path_factory.mktemp("doctor-queue") / "demo")


@pytest.fixture
def archive(template, tmp_path, monkeypatch) -> Path:
    """A copy of the demo, judged on the local day its runs recorded every flag's state: the queue reads a consent
    flag's recorded state on that day only, and the demo, made once a session, may be from before a midnight this
    test runs after (or the day may turn during the test)."""
    shutil.copytree(template, tmp_path / "demo")
    conn = db(tmp_path / "demo")
    (day,) = conn.execute("SELECT local_day FROM flag_recordings WHERE whole = 1 ORDER BY id DESC LIMIT 1").fetchone()
    conn.close()
    judge_every_connection_on(monkeypatch, day)
    return tmp_path / "demo"


def queue_check(directory: Path) -> list[doctor.Check]:
    return doctor.check_review_queue(load_config(directory / "archiver.toml"))


def queued(directory: Path) -> list[int]:
    with db(directory) as conn:
        return [r[0] for r in conn.execute("SELECT flag_id FROM flag_queue")]


def append_state(directory: Path, flag_id: int, current: int) -> None:
    """As an insider would: a recording and a state appended by the store's own append, ledgered like any row."""
    store = Store.open(directory / "archive" / "archive.db")
    with store.transaction():
        recording = store._insert(
            "flag_recordings",
            {"command": "by\nhand", "whole": 0, "local_day": "2026-01-01", "recorded_at": "2026-01-01T00:00:00Z"},
        )
        store._insert(
            "flag_states",
            {"recording_id": recording, "flag_id": flag_id, "current": current, "decision": None, "review_id": None},
        )
    store.close()


def test_the_untouched_archive_s_queue_is_flag_status_s(archive):
    count = len(queued(archive))
    assert count
    assert queue_check(archive) == [doctor.Check("review queue", "ok", f"{count} flag(s), as flag_status computes it")]


def test_doctor_prints_the_queue_s_line(archive):
    result = cli(archive, "doctor")
    assert f"OK   review queue: {len(queued(archive))} flag(s), as flag_status computes it" in result.output


@pytest.mark.parametrize("healing", [("scan",), ("consent", "check")])
def test_a_state_appended_by_a_library_caller_is_a_problem_until_the_queue_is_recorded_again(archive, healing):
    before = queued(archive)
    with db(archive) as conn:
        taken = conn.execute("SELECT flag_id FROM flag_queue WHERE category != 'consent' LIMIT 1").fetchone()[0]
        # a flag flag_status keeps out of the queue (in the demo, a consent flag no longer current: the queue reads
        # its recorded state, the demo's second run having recorded every flag on the day the test judges on)
        added = conn.execute(
            "SELECT flag_id FROM flag_status WHERE NOT (current = 1 AND (decision IS NULL OR decision = 'escalated'))"
            " LIMIT 1"
        ).fetchone()[0]
    append_state(archive, taken, 0)
    append_state(archive, added, 1)
    assert problems(archive) == []  # ledgered: verify cannot tell
    assert taken not in queued(archive) and added in queued(archive)

    result = cli(archive, "doctor")
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if "review queue" in line]
    assert line == (
        f"FAIL review queue: it lacks 1 flag(s) flag_status puts in it ({taken} recorded by 'by hand' at "
        f"2026-01-01T00:00:00Z) and holds 1 flag_status does not ({added} recorded by 'by hand' at "
        "2026-01-01T00:00:00Z): their states recorded in flag_states are not flag_status's (a run stopped before its "
        "scan, or a row appended outside the commands); run `archiver scan` (once any run going now ends), which "
        "records every flag's state again, and find out who made a recording named here that no command of yours made"
    )

    healed = cli(archive, *healing)
    # `consent check` exits 1 while consent flags are open in the queue, as the demo's are
    assert healed.exit_code == (0 if healing == ("scan",) else 1), healed.output
    assert queued(archive) == before
    (check,) = queue_check(archive)
    assert check.status == "ok", check


def test_a_run_stopped_after_its_captures_committed_is_a_problem_until_a_scan(archive):
    """A post deleted by a run killed before its scan: flag_status takes its consent flag out of the queue, the
    state recorded keeps it in."""
    with db(archive) as conn:
        flag, item = conn.execute(
            "SELECT flag_id, item_key FROM flag_queue WHERE rule_id = 'consent.missing' LIMIT 1"
        ).fetchone()
        run = conn.execute("SELECT id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]
    store = Store.open(archive / "archive" / "archive.db")
    with store.transaction():
        assert store.append_deletion(Deletion(item, {"lookup": "gone"}), run).deleted
    store.close()
    (check,) = queue_check(archive)
    assert check.status == "fail"
    assert check.message.startswith(
        f"it lacks 0 flag(s) flag_status puts in it and holds 1 flag_status does not ({flag} "
    )

    assert cli(archive, "scan").exit_code == 0
    (check,) = queue_check(archive)
    assert check.status == "ok" and flag not in queued(archive)


def test_a_flag_no_command_recorded_is_in_the_queue_as_flag_status_judges_it(archive):
    """The view judges a flag with no recorded state by flag_status: the queue shows it, so it is no divergence."""
    count = len(queued(archive))
    new = append_unrecorded_flag(archive)
    assert new in queued(archive)
    assert queue_check(archive) == [
        doctor.Check("review queue", "ok", f"{count + 1} flag(s), as flag_status computes it")
    ]


def test_many_flags_out_of_the_queue_are_counted_and_the_first_few_named(archive):
    flags = queued(archive)[:7]
    assert len(flags) == 7
    for flag in flags:
        append_state(archive, flag, 0)
    (check,) = queue_check(archive)
    shown = "; ".join(f"{f} recorded by 'by hand' at 2026-01-01T00:00:00Z" for f in sorted(flags)[:5])
    assert check.message.startswith(f"it lacks 7 flag(s) flag_status puts in it ({shown}; 2 more) and holds 0 ")


def test_an_archive_without_flags_or_database_or_recorded_states(archive, tmp_path, monkeypatch):
    """As the other checks: a database not made yet is the last run's check's line; one with no flags has an empty
    queue; one before migration 0023 has no recorded states, and doctor migrates nothing."""
    config = load_config(archive / "archiver.toml")
    elsewhere = dataclasses.replace(config, archive=ArchiveConfig.in_folder(tmp_path / "none"))
    assert doctor.check_review_queue(elsewhere) == []

    Store.open(elsewhere.archive.database).close()
    assert doctor.check_review_queue(elsewhere) == [
        doctor.Check("review queue", "ok", "0 flag(s), as flag_status computes it")
    ]

    before = archiver.store.load_migrations()[:22]
    older = dataclasses.replace(config, archive=ArchiveConfig.in_folder(tmp_path / "older"))
    monkeypatch.setattr(archiver.store, "load_migrations", lambda: before)
    Store.open(older.archive.database).close()
    monkeypatch.undo()
    stored = older.archive.database.read_bytes()
    assert doctor.check_review_queue(older) == []
    assert older.archive.database.read_bytes() == stored  # read only: not migrated
