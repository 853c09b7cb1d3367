"""The review queue reads recorded flag states (flag_states, migration 0023): every command that changes what a
flag's state depends on records the state flag_status gives, in its own transaction, so the queue it reads is the
one flag_status computes. Checked on the demo archive after each kind of command, on an archive upgraded from
schema 22, and for tampering."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

import archiver.pipeline
import archiver.store
from archiver.bundle.gather import flags_in_review_queue
from archiver.config import load_config
from archiver.demo.run import run_demo
from archiver.pipeline import run_archive
from archiver.store import Store

from .test_consent_check import DAY0, NOW, ConsentClinic
from .test_consent_register import judge_on
from .test_ledger import behind_the_back
from .test_phi_archive import EXTRA_RULES, cli, db, problems

LIVE_QUEUE = """
    SELECT flag_id, coalesce(decision, 'open') FROM flag_status
    WHERE current = 1 AND (decision IS NULL OR decision = 'escalated')
    ORDER BY CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, flag_id DESC"""
# flags whose state flag_status gives now is not the latest one recorded
UNRECORDED = """
    SELECT s.flag_id FROM flag_status s
    LEFT JOIN flag_states r ON r.id = (SELECT max(x.id) FROM flag_states x WHERE x.flag_id = s.flag_id)
    WHERE r.id IS NULL OR r.current != coalesce(s.current, 0) OR r.decision IS NOT s.decision
       OR r.review_id IS NOT s.review_id"""
CSV_HEADER = "consent_id,patient_ref,account,item,scope,granted_on,expires_on,revoked_on,document_sha256\n"


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_template) -> Path:
    return demo_template.copy_to(tmp_path_factory.mktemp("flag-states") / "demo")


@pytest.fixture
def copy(demo, tmp_path) -> Path:
    shutil.copytree(demo, tmp_path / "demo")
    return tmp_path / "demo"


def queue(directory: Path) -> list[tuple[int, str]]:
    with db(directory) as conn:
        return [tuple(r) for r in conn.execute("SELECT flag_id, status FROM flag_queue")]


def as_recorded(directory: Path) -> tuple[list[tuple[int, str]], list[int]]:
    """The queue read from flag_states and the flags whose recorded state is not flag_status's, after asserting the
    queue is the one flag_status gives."""
    conn = db(directory)
    recorded = [tuple(r) for r in conn.execute("SELECT flag_id, status FROM flag_queue")]
    live = [tuple(r) for r in conn.execute(LIVE_QUEUE)]
    unrecorded = [r[0] for r in conn.execute(UNRECORDED)]
    conn.close()
    assert recorded == live
    return recorded, unrecorded


def states_since(directory: Path, after: int) -> list[dict]:
    with db(directory) as conn:
        return [
            dict(r)
            for r in conn.execute(
                "SELECT s.*, f.item_key FROM flag_states s JOIN flags f ON f.id = s.flag_id WHERE s.id > ?", (after,)
            )
        ]


def last_state_id(directory: Path) -> int:
    with db(directory) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM flag_states").fetchone()[0]


def test_the_demo_runs_record_every_flag_and_the_queue_is_flag_status_s(demo):
    recorded, unrecorded = as_recorded(demo)
    assert recorded and unrecorded == []
    conn = db(demo)
    flags = conn.execute("SELECT count(*) FROM flags").fetchone()[0]
    assert conn.execute("SELECT count(DISTINCT flag_id) FROM flag_states").fetchone()[0] == flags
    # each row extends the ledger like every other
    states = conn.execute("SELECT count(*) FROM flag_states").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM ledger WHERE table_name = 'flag_states'").fetchone()[0] == states
    # the queue reads the recorded states, not flag_status (whose correlated look-ups made it slow)
    plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN SELECT count(*) FROM flag_queue"))
    assert "flag_states_by_flag" in plan
    conn.close()


def test_a_review_records_its_item_s_flags_at_once(copy):
    before = queue(copy)
    (flag, _), (escalated, _) = before[0], before[1]
    mark = last_state_id(copy)
    assert cli(copy, "review", str(flag), "--decision", "violation").exit_code == 0
    recorded, unrecorded = as_recorded(copy)
    assert unrecorded == [] and flag not in dict(recorded)
    with db(copy) as conn:
        item = conn.execute("SELECT item_key FROM flags WHERE id = ?", (flag,)).fetchone()[0]
    added = states_since(copy, mark)
    assert [s["decision"] for s in added if s["flag_id"] == flag] == ["violation"]
    assert {s["item_key"] for s in added} == {item}  # a decision carries over within its item only

    assert cli(copy, "review", str(escalated), "--decision", "escalated").exit_code == 0
    recorded, unrecorded = as_recorded(copy)
    assert unrecorded == [] and dict(recorded)[escalated] == "escalated"
    assert problems(copy) == []


def test_a_scan_with_other_rules_records_the_flags_it_retires(copy):
    old = {flag for flag, _ in queue(copy)}
    (copy / "ours.yml").write_text(EXTRA_RULES, "utf-8")
    config = copy / "archiver.toml"
    config.write_text(config.read_text().replace("[scan]\n", '[scan]\nrule_files = ["ours.yml"]\n'), "utf-8")
    result = cli(copy, "scan", "--all")
    assert result.exit_code == 0, result.output
    recorded, unrecorded = as_recorded(copy)
    assert unrecorded == []
    with db(copy) as conn:
        phi = {r[0] for r in conn.execute("SELECT id FROM flags WHERE category != 'consent'")}
    # the earlier rules' flags left the queue, their rescan's copies came in
    assert old & phi and not (old & phi) & {flag for flag, _ in recorded}


def unconsented_post(directory: Path) -> tuple[int, str]:
    """A consent.missing flag in the queue, and its post."""
    with db(directory) as conn:
        flag, item = conn.execute(
            "SELECT flag_id, item_key FROM flag_queue WHERE rule_id = 'consent.missing' LIMIT 1"
        ).fetchone()
    return flag, item


def import_consent(directory: Path, consent_id: str, patient: str, item: str, linked: bool) -> None:
    """`archiver consent import` of a live consent for `item`'s account, linked to it or not."""
    with db(directory) as conn:
        account = conn.execute("SELECT account FROM item_versions WHERE item_key = ?", (item,)).fetchone()[0]
    granted = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    form = hashlib.sha256(f"signed consent form {consent_id}".encode()).hexdigest()
    row = f"{consent_id},{patient},{account},{item if linked else ''},patient story,{granted},,,{form}\n"
    csv = directory / f"{consent_id}.csv"
    csv.write_text(CSV_HEADER + row, "utf-8")
    result = cli(directory, "consent", "import", str(csv))
    assert result.exit_code == 0, result.output


def test_a_consent_imported_for_a_post_takes_its_flag_out_of_the_queue_at_once(copy):
    flag, item = unconsented_post(copy)
    import_consent(copy, "C-NEW", "PT-555001", item, linked=True)
    recorded, unrecorded = as_recorded(copy)
    assert unrecorded == [] and flag not in dict(recorded)
    assert problems(copy) == []


def test_a_consent_linked_to_a_post_takes_its_flag_out_of_the_queue_at_once(copy):
    flag, item = unconsented_post(copy)
    import_consent(copy, "C-LINK", "PT-555002", item, linked=False)
    assert flag in dict(queue(copy))
    mark = last_state_id(copy)
    result = cli(copy, "consent", "link", "C-LINK", item)
    assert result.exit_code == 0, result.output
    recorded, unrecorded = as_recorded(copy)
    assert unrecorded == [] and flag not in dict(recorded)
    assert {s["item_key"] for s in states_since(copy, mark)} == {item}


def append_unrecorded_flag(archive: Path) -> int:
    """A PHI flag of another hit beside a queued one, appended as a library caller would, recording no state."""
    store = Store.open(archive / "archive" / "archive.db")
    row = dict(
        store.conn.execute(
            "SELECT f.* FROM flags f JOIN flag_queue q ON q.flag_id = f.id WHERE f.category != 'consent' LIMIT 1"
        ).fetchone()
    )
    del row["id"]
    row["span_start"], row["span_end"] = row["span_start"] + 10_000, row["span_end"] + 10_000  # another hit
    with store.transaction():
        new = store._insert("flags", row)
    store.close()
    return new


def test_a_flag_no_command_recorded_is_judged_as_flag_status_judges_it(copy):
    """A flag appended by a path that records nothing (a library caller) is still in the queue: the view judges a
    flag without a recorded state by flag_status."""
    new = append_unrecorded_flag(copy)
    recorded, unrecorded = as_recorded(copy)
    assert unrecorded == [new] and dict(recorded)[new] == "open"


def test_flag_states_are_append_only_and_a_change_behind_the_triggers_is_caught(copy):
    conn = sqlite3.connect(copy / "archive" / "archive.db")
    for statement in ("UPDATE flag_states SET current = 0", "DELETE FROM flag_states WHERE id = 1"):
        with pytest.raises(sqlite3.IntegrityError, match="flag_states is append-only"):
            conn.execute(statement)
    conn.close()
    assert problems(copy) == []
    # a flag whose recorded state the queue reads on any day (a consent flag's, only on the day it was recorded)
    with db(copy) as conn:
        flag = conn.execute("SELECT flag_id FROM flag_queue WHERE category != 'consent' LIMIT 1").fetchone()[0]
    behind_the_back(
        copy / "archive" / "archive.db",
        f"UPDATE flag_states SET current = 0 WHERE id = (SELECT max(id) FROM flag_states WHERE flag_id = {flag})",
    )
    assert flag not in dict(queue(copy))  # what a tamperer would want: a flag out of the queue
    found = problems(copy)
    assert any(p.startswith("flag_states id=") and "row changed since ledger seq" in p for p in found), found


def test_an_archive_upgraded_from_schema_22_records_every_flag_and_keeps_its_queue(tmp_path, monkeypatch):
    """As 0.3.0 left it: the demo's two runs at schema 22. Opening it with this software applies migration 0023,
    which records each flag's state; the queue is the one the 0.3.0 view computed."""
    before = archiver.store.load_migrations()[:22]
    monkeypatch.setattr(archiver.store, "load_migrations", lambda: before)
    directory = tmp_path / "demo"
    assert run_demo(directory, echo=lambda line: None, now=datetime.now(UTC)).exit_code == 0
    with db(directory) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 22
        old_queue = [tuple(r) for r in conn.execute("SELECT flag_id, status FROM flag_queue")]
        flags = conn.execute("SELECT count(*) FROM flags").fetchone()[0]
    assert old_queue
    monkeypatch.undo()

    Store.open(directory / "archive" / "archive.db").close()
    conn = db(directory)
    assert conn.execute("PRAGMA user_version").fetchone()[0] >= 23
    assert tuple(conn.execute("SELECT count(*), count(DISTINCT flag_id) FROM flag_states").fetchone()) == (flags, flags)
    conn.close()
    recorded, unrecorded = as_recorded(directory)
    assert recorded == old_queue and unrecorded == []
    assert problems(directory) == []


def test_consent_flags_are_judged_as_flag_status_judges_them_on_a_day_no_recording_was_made(demo):
    """A consent's state changes with the day alone (it expires; a revocation dated ahead takes effect): on a day the
    archive has no recording of every flag from, the queue judges consent flags by flag_status, on that day."""
    with db(demo) as conn:
        lapsed = {r[0] for r in conn.execute("SELECT flag_id FROM flag_queue WHERE rule_id = 'consent.lapsed'")}
        granted = conn.execute("SELECT min(granted_on) FROM consent_register").fetchone()[0]
    assert lapsed  # the demo's photo consent expired yesterday
    before_expiry = (date.fromisoformat(granted) + timedelta(days=1)).isoformat()
    conn = judge_on(db(demo), before_expiry)
    recorded = [tuple(r) for r in conn.execute("SELECT flag_id, status FROM flag_queue")]
    live = [tuple(r) for r in conn.execute(LIVE_QUEUE)]
    conn.close()
    assert recorded == live and not lapsed & {flag for flag, _ in recorded}


def test_an_interrupted_run_still_brings_a_restored_post_s_flag_back(tmp_path, monkeypatch):
    """A run stopped after its captures committed skips the scan and the consent check, which record the queue:
    it records before it ends, so a post put back up is in the queue again at once, its consent flag with it."""
    c = ConsentClinic(tmp_path, monkeypatch)
    try:
        c.run_on(DAY0 - timedelta(days=2))
        key = c.key("unconsented")
        assert (key, "consent.missing") in c.queue()
        c.state.delete_status(c.ids["unconsented"], by_moderator=True)
        c.run_on(DAY0 - timedelta(days=1))
        assert (key, "consent.missing") not in c.queue()

        c.state.restore_status(c.ids["unconsented"])
        capture = archiver.pipeline.run_platforms

        def stopped_once_captured(accounts, parallel, run, progress, stop):
            results = capture(accounts, parallel, run, progress, stop)
            stop.set()  # SIGTERM after every account committed
            return results

        monkeypatch.setattr(archiver.pipeline, "run_platforms", stopped_once_captured)
        moment = datetime.combine(DAY0, NOW.time(), tzinfo=UTC)
        result = run_archive(load_config(c.config), now=lambda: moment)
        assert result.interrupted
        assert (key, "consent.missing") in c.queue()
        with c.db() as conn:
            events = [r[0] for r in conn.execute("SELECT event FROM events WHERE item_key = ? ORDER BY id", (key,))]
            commands = [r[0] for r in conn.execute("SELECT command FROM flag_recordings ORDER BY id")]
        assert events[-1] == "restored" and commands[-1] == "run"
    finally:
        c.server.stop()


def test_a_bundle_signs_the_queue_as_flag_status_gives_it_at_export(copy):
    """custody.json's flags_in_review_queue is the archive's judgement at export, not the state a command last
    recorded: a recorded state that is not flag_status's (here one appended by hand) does not reach a bundle."""
    store = Store.open(copy / "archive" / "archive.db")
    flag = store.conn.execute("SELECT flag_id FROM flag_queue WHERE category != 'consent' LIMIT 1").fetchone()[0]
    with store.transaction():
        recording = store._insert(
            "flag_recordings", {"command": "by hand", "whole": 0, "local_day": "2026-01-01", "recorded_at": "x"}
        )
        store._insert(
            "flag_states",
            {"recording_id": recording, "flag_id": flag, "current": 0, "decision": None, "review_id": None},
        )
    assert flag not in {r[0] for r in store.conn.execute("SELECT flag_id FROM flag_queue")}
    assert flags_in_review_queue(store.conn, [flag]) == [flag]
    store.close()
