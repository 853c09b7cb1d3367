"""`archiver verify --replay`: rows appended and signed by someone with write access pass plain verify (the
ledger chains them, the next checkpoint signs them); a replay of the WARCs does not produce them."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from archiver import ledger, replay_check
from archiver.cli import app
from archiver.connectors import mastodon
from archiver.connectors.mastodon import MastodonConnector
from archiver.demo import run as demo_run
from archiver.demo.mastodon_server import SampleMastodonServer
from archiver.items import CursorUpdate
from archiver.ledger import LEDGER_KEYS
from archiver.replay_check import NOT_REPLAYED, REPLAYED
from archiver.store import Store

from .test_crash import TOKEN, small_clinic
from .test_crash import config as crash_config
from .test_rebuild import kill_a_run_at_request

FAKE_TEXT = "Our new therapy cures diabetes in a week."


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_template) -> Path:
    return demo_template.copy_to(tmp_path_factory.mktemp("replay") / "demo")


@pytest.fixture
def temp(tmp_path, monkeypatch) -> list[Path]:
    """The system temp folder, as TMPDIR would set it, in the test's own folder; returns the replay databases
    made (each is checked to be gone afterwards)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    made: list[Path] = []
    rebuild = replay_check.rebuild_database

    def spy(config, out, **kwargs):
        made.append(out)
        return rebuild(config, out, **kwargs)

    monkeypatch.setattr(replay_check, "rebuild_database", spy)
    yield made
    assert list(folder.iterdir()) == []  # the temporary database and its folder are gone
    assert all(out.is_relative_to(folder) for out in made)


def verify(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["verify", "--config", str(config), *args])


def archive_files(folder: Path) -> dict[str, str]:
    """Every file of an archive folder with its sha256 (SQLite's shared-memory index aside: not content)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.endswith("-shm")
    }


def test_every_table_is_replayed_or_said_not_to_be():
    replayed = {table.name for table in REPLAYED}
    assert not replayed & NOT_REPLAYED.keys()
    assert replayed | NOT_REPLAYED.keys() == set(LEDGER_KEYS) | {"ledger"}


def test_an_untouched_archive_passes_verify_replay_and_is_not_changed(demo, temp):
    assert verify(demo / "archiver.toml").exit_code == 0  # SQLite makes its -wal file on the first read
    before = archive_files(demo / "archive")
    result = verify(demo / "archiver.toml", "--replay")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        "replay: 2 run(s) of WARC records replayed; compared item_versions, events, media_files, cursors, accounts"
        in lines
    )
    [covered] = [line for line in lines if line.startswith("replay: not covered")]
    for table in ("flags", "flag_reviews", "consent_register", "exports", "the access log"):
        assert table in covered
    assert lines[-1] == "archive verifies"
    assert len(temp) == 1
    assert archive_files(demo / "archive") == before


def test_parallel_capture_gives_other_row_ids_and_still_passes(tmp_path, temp, monkeypatch):
    """Platforms captured in parallel append their rows interleaved, a replay account by account: the ids
    differ, the facts do not, and the replay compares facts."""
    text = demo_run.demo_config_text
    monkeypatch.setattr(
        demo_run,
        "demo_config_text",
        lambda *args, **kwargs: text(*args, **kwargs).replace("parallel_platforms = 1", "parallel_platforms = 4"),
    )
    assert demo_run.run_demo(tmp_path / "demo", echo=lambda line: None).exit_code == 0
    result = verify(tmp_path / "demo" / "archiver.toml", "--replay")
    assert result.exit_code == 0, result.output
    # The ids did differ: a rebuild (a replay kept) shows it.
    out = tmp_path / "rebuilt.db"
    rebuilt = CliRunner().invoke(
        app, ["rebuild", "--config", str(tmp_path / "demo" / "archiver.toml"), "--out", str(out)]
    )
    assert rebuilt.exit_code == 0, rebuilt.output
    ids = "SELECT id, item_key FROM item_versions ORDER BY id"
    live = sqlite3.connect(tmp_path / "demo" / "archive" / "archive.db")
    assert sqlite3.connect(out).execute(ids).fetchall() != live.execute(ids).fetchall()


def append_fake_version(
    database: Path, where: str = "kind = 'post' AND platform = 'mastodon'", run_id: str | None = None
) -> int:
    """What someone with write access can do with the archiver's own code: a new version of a real post, with
    text nobody posted, its raw JSON and WARC pointers copied from the real one (so plain verify finds them in
    the capture), and its event; both properly entered in the ledger."""
    store = Store.open(database)
    try:
        row = dict(store.conn.execute(f"SELECT * FROM item_versions WHERE {where} ORDER BY id DESC LIMIT 1").fetchone())
        del row["id"]
        row["text"] = FAKE_TEXT
        row["run_id"] = run_id or row["run_id"]
        with store.transaction():
            version = store._insert("item_versions", row)
            store._insert(
                "events",
                {
                    "item_key": row["item_key"],
                    "event": "edited",
                    "version_id": version,
                    "run_id": row["run_id"],
                    "observed_at": row["captured_at"],
                    "evidence": json.dumps({"warc_file": row["warc_file"], "warc_record_id": row["warc_record_id"]}),
                },
            )
    finally:
        store.close()
    return version


def checkpoint(config: Path) -> None:
    result = CliRunner().invoke(app, ["checkpoint", "--config", str(config)])
    assert result.exit_code == 0, result.output


def test_a_fake_version_signed_by_a_checkpoint_passes_verify_but_not_the_replay(demo, tmp_path, temp):
    copy = shutil.copytree(demo, tmp_path / "demo")
    version = append_fake_version(copy / "archive" / "archive.db")
    checkpoint(copy / "archiver.toml")
    plain = verify(copy / "archiver.toml")
    assert plain.exit_code == 0, plain.output
    assert plain.output.splitlines()[-1] == "archive verifies"

    result = verify(copy / "archiver.toml", "--replay")
    assert result.exit_code == 1, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith(f"item_versions id={version}:")]
    assert "no captured record backs it (the replay does not produce it): item_key=" in line
    assert f'text="{FAKE_TEXT}"' in line
    assert "events id=" in result.output and 'event="edited", version=3' in result.output
    assert result.output.splitlines()[-1] == "2 problem(s) found"

    found = json.loads(verify(copy / "archiver.toml", "--replay", "--json").output)
    assert not found["ok"]
    assert [p["where"] for p in found["problems"]][0] == f"item_versions id={version}"
    assert found["replay"][0].startswith("replay: 2 run(s) of WARC records replayed")
    assert len(temp) == 2


def rewrite_history(archive: Path, *statements: str) -> None:
    """Whoever holds the archive's folder and its private key: changes rows with the triggers dropped, enters
    every row in the ledger again, in its order (the chain recomputes), and drops the checkpoints and their
    copies, to sign a new one (`archiver checkpoint`). Plain verify can tell none of it."""
    conn = sqlite3.connect(archive / "archive.db", isolation_level=None)
    triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%append_only%'")
    triggers = triggers.fetchall()
    conn.execute("BEGIN")
    for name, _ in triggers:
        conn.execute(f"DROP TRIGGER {name}")
    for statement in statements:
        conn.execute(statement)
    entries = conn.execute("SELECT table_name, row_key FROM ledger WHERE table_name != 'checkpoints' ORDER BY seq")
    entries = entries.fetchall()
    conn.execute("DELETE FROM ledger")
    conn.execute("DELETE FROM checkpoints")
    for table, key in entries:
        found = conn.execute(
            f"SELECT rowid FROM {table} WHERE CAST({LEDGER_KEYS[table]} AS TEXT) = ?", (key,)
        ).fetchone()
        if found is not None:
            ledger.append_entry(conn, table, found[0])
    for _, sql in triggers:
        conn.execute(sql)
    conn.execute("COMMIT")
    conn.close()
    for copy in (archive / "warcs" / "checkpoints").glob("checkpoint-*.json"):
        copy.unlink()


def test_a_deleted_event_with_the_ledger_rechained_and_re_signed_is_caught(demo, tmp_path, temp):
    """A proven deletion taken out of the record: the item looks live again."""
    copy = shutil.copytree(demo, tmp_path / "demo")
    conn = sqlite3.connect(copy / "archive" / "archive.db")
    event_id, item_key = conn.execute(
        "SELECT id, item_key FROM events WHERE event = 'deleted' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    conn.close()
    rewrite_history(copy / "archive", f"DELETE FROM events WHERE id = {event_id}")
    checkpoint(copy / "archiver.toml")
    plain = verify(copy / "archiver.toml")
    assert plain.exit_code == 0, plain.output

    result = verify(copy / "archiver.toml", "--replay")
    assert result.exit_code == 1, result.output
    problems = [line for line in result.output.splitlines() if line.startswith("events ")]
    assert len(problems) == 1, result.output
    assert problems[0].startswith(f'events item_key="{item_key}": missing: the replay produces event="deleted"')
    assert problems[0].endswith("the live database lacks it")


def test_a_version_rewritten_with_the_ledger_rechained_is_caught_naming_the_column(demo, tmp_path, temp):
    copy = shutil.copytree(demo, tmp_path / "demo")
    conn = sqlite3.connect(copy / "archive" / "archive.db")
    version, text = conn.execute("SELECT id, text FROM item_versions WHERE kind = 'comment' LIMIT 1").fetchone()
    conn.close()
    rewrite_history(
        copy / "archive",
        # the search index too, which plain verify compares with the rows
        "INSERT INTO item_versions_fts (item_versions_fts, rowid, text, author_handle, author_name) "
        f"SELECT 'delete', id, text, author_handle, author_name FROM item_versions WHERE id = {version}",
        f"UPDATE item_versions SET text = 'Thank you, all is well now' WHERE id = {version}",
        "INSERT INTO item_versions_fts (rowid, text, author_handle, author_name) "
        f"SELECT id, text, author_handle, author_name FROM item_versions WHERE id = {version}",
    )
    checkpoint(copy / "archiver.toml")
    assert verify(copy / "archiver.toml").exit_code == 0

    result = verify(copy / "archiver.toml", "--replay")
    assert result.exit_code == 1, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("item_versions ")]
    assert line.startswith(f"item_versions id={version}: item_key=")
    assert (
        f'differs from the replay in text: text "Thank you, all is well now" here, {json.dumps(text)} replayed' in line
    )


def test_the_replay_is_not_run_over_problems_plain_verify_found(demo, tmp_path, monkeypatch):
    copy = shutil.copytree(demo, tmp_path / "demo")
    warc = sorted((copy / "archive" / "warcs").glob("*.warc.gz"))[0]
    data = bytearray(warc.read_bytes())
    data[len(data) // 2] ^= 0x01
    warc.write_bytes(bytes(data))

    def no_replay(*args, **kwargs):
        raise AssertionError("replayed damaged WARCs")

    monkeypatch.setattr(replay_check, "rebuild_database", no_replay)
    result = verify(copy / "archiver.toml", "--replay")
    assert result.exit_code == 1, result.output
    assert f"WARC {warc.name}: sha256 expected" in result.output
    assert "note: replay: not run: a replay over the problems above would only repeat them" in result.output
    assert "replay: nothing compared" in result.output


def test_a_copy_of_the_archive_is_replayed_with_the_configs_accounts(demo, tmp_path, temp):
    backup = shutil.copytree(demo / "archive", tmp_path / "backup")
    version = append_fake_version(backup / "archive.db")
    result = verify(demo / "archiver.toml", "--archive-dir", str(backup), "--replay")
    assert result.exit_code == 1, result.output
    assert f"item_versions id={version}: no captured record backs it" in result.output


def test_a_capture_the_config_cannot_replay_is_an_error_after_the_usual_report(demo, tmp_path, temp):
    copy = shutil.copytree(demo, tmp_path / "demo")
    config = copy / "archiver.toml"
    config.write_text(config.read_text().replace('name = "riverside-youtube"', 'name = "riverside-tube"'))
    result = verify(config, "--replay")
    assert result.exit_code == 1, result.output
    assert "replay: cannot replay: " in result.output
    assert "captured account 'riverside-youtube', which the config no longer names" in result.output
    assert "last checkpoint signs ledger seq" in result.output  # the usual report is there
    assert result.output.splitlines()[-1] == "1 problem(s) found"


def test_the_temporary_database_never_goes_inside_the_archive(demo, monkeypatch):
    assert verify(demo / "archiver.toml").exit_code == 0  # SQLite makes its -wal file on the first read
    inside = demo / "archive" / "tmp"
    inside.mkdir()
    try:
        monkeypatch.setattr(tempfile, "tempdir", str(inside))
        before = archive_files(demo / "archive")
        result = verify(demo / "archiver.toml", "--replay")
        assert result.exit_code == 2, result.output
        assert "inside the archive folder, which verify never changes; set TMPDIR" in result.output
        assert archive_files(demo / "archive") == before and list(inside.iterdir()) == []
    finally:
        inside.rmdir()


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> tuple[Path, Path]:
    """An archive whose second run, with 40 new posts to capture, was SIGKILLed (as tests/test_rebuild.py kills
    one) after it had captured posts it had not committed: (a copy as the kill left it, the archive after the
    next run completed it)."""
    directory = tmp_path_factory.mktemp("interrupted")
    now = datetime.now(UTC)
    state = small_clinic(now)
    with SampleMastodonServer(state, TOKEN, rate_limit=1_000_000) as server:
        cfg = crash_config(directory, server.base_url)
        result = CliRunner().invoke(app, ["run", "--config", str(cfg), "-q"], env={"CRASH_TOKEN": TOKEN})
        assert result.exit_code == 0, result.output
        for i in range(40):
            state.add_status(state.owner_id, f"New post {i}", created_at=now - timedelta(hours=40 - i))
        kill_a_run_at_request(server, cfg, 8)
        killed = shutil.copytree(directory, tmp_path_factory.mktemp("killed") / "copy")
        result = CliRunner().invoke(app, ["run", "--config", str(cfg), "-q"], env={"CRASH_TOKEN": TOKEN})
        assert result.exit_code == 0, result.output
    return killed, directory


def replayed_at(interrupted: tuple[Path, Path], moment: str) -> tuple[str, Result]:
    """The killed run's id, and `verify --replay` of the archive as the kill left it or after the next run."""
    directory = interrupted[0] if moment == "as the kill left it" else interrupted[1]
    conn = sqlite3.connect(directory / "arch" / "archive.db")
    [killed] = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY started_at")][1:2]
    conn.close()
    return killed, verify(directory / "archiver.toml", "--replay")


@pytest.mark.parametrize("moment", ["as the kill left it", "after the next run"])
def test_a_killed_run_is_replayed_as_far_as_it_committed(interrupted, moment, temp):
    """A killed run committed part of what it captured, and run_progress says how much: its replay stops there,
    so the next run's replay starts from the state the live run left and every row is the same."""
    killed, result = replayed_at(interrupted, moment)
    assert result.exit_code == 0, result.output
    assert f"note: replay: account clinic of run {killed}: replayed the " in result.output
    assert "observation(s) it committed before it stopped" in result.output
    assert "differ from the replay" not in result.output
    assert result.output.splitlines()[-1] == "archive verifies"


@pytest.mark.parametrize("moment", ["as the kill left it", "after the next run"])
def test_a_killed_run_of_before_run_progress_leaves_notes_not_errors(interrupted, moment, temp, monkeypatch):
    """An archive of before migration 0017 does not say how far a killed run committed: the replay gives all it
    captured, and the next run records again, under its own run, what was not committed. Differences the
    interrupted run explains are notes."""
    monkeypatch.setattr("archiver.rebuild._committed", lambda conn: {})  # as if run_progress had no rows
    killed, result = replayed_at(interrupted, moment)
    assert result.exit_code == 0, result.output
    for table in ("item_versions", "events"):
        assert f"note: {table} of run {killed}: " in result.output
    assert "item_key(s) differ from the replay" in result.output and "the run did not finish" in result.output
    assert result.output.splitlines()[-1] == "archive verifies"


def test_a_run_row_alone_explains_no_difference(demo, tmp_path, temp):
    """A run that did not finish excuses the differences of the items it touched, as notes: a `runs` row
    appended with no result and no WARC, to name a fake version's run, must not."""
    copy = shutil.copytree(demo, tmp_path / "demo")
    store = Store.open(copy / "archive" / "archive.db")
    try:
        store.append_run("20260101T000000Z-deadbe", "host", "0" * 64, ["riverside-mastodon"])
    finally:
        store.close()
    version = append_fake_version(copy / "archive" / "archive.db", run_id="20260101T000000Z-deadbe")
    checkpoint(copy / "archiver.toml")
    result = verify(copy / "archiver.toml", "--replay")
    assert result.exit_code == 1, result.output
    assert f"item_versions id={version}: no captured record backs it" in result.output


def test_a_fake_version_under_a_killed_runs_name_is_still_caught(interrupted, tmp_path, temp):
    """The killed run's items: their rows may move between runs (the note), but a row that says what no
    replayed row says is backed by nothing, whichever run it names."""
    copy = shutil.copytree(interrupted[1], tmp_path / "copy")
    database = copy / "arch" / "archive.db"
    conn = sqlite3.connect(database)
    [killed] = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY started_at")][1:2]
    conn.close()
    # One of the posts the killed run captured (the next run recorded it again, under its own name).
    version = append_fake_version(database, where="text LIKE 'New post%'", run_id=killed)
    checkpoint(copy / "archiver.toml")
    result = verify(copy / "archiver.toml", "--replay")
    assert result.exit_code == 1, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith(f"item_versions id={version}:")]
    assert f"no captured record backs it (no replayed row says this, though run(s) {killed} did not finish)" in line
    assert f'text="{FAKE_TEXT}"' in line


def test_a_replay_folder_a_killed_verify_left_is_removed_by_the_next(demo, temp):
    """A verify --replay killed outright leaves its temporary copy of the archive's data (PHI) behind: the next
    one removes it, and leaves alone the folder of a verify still running."""
    folder = Path(tempfile.gettempdir())
    dead = folder / f"{replay_check.REPLAY_PREFIX}{2**22 + 1}-x1y2z3"  # above Linux's largest pid: no process
    running = folder / f"{replay_check.REPLAY_PREFIX}{os.getpid()}-a1b2c3"
    for made in (dead, running):
        made.mkdir()
        (made / "replayed.db").write_bytes(b"a copy of archive data")
    result = verify(demo / "archiver.toml", "--replay")
    assert result.exit_code == 0, result.output
    assert f"note: replay: removed {dead}, left by a verify --replay that was killed" in result.output
    assert not dead.exists() and (running / "replayed.db").exists()
    shutil.rmtree(running)


def test_a_difference_in_rows_an_older_parser_made_says_so_and_stays_an_error(demo, tmp_path, temp, monkeypatch):
    """Each run records the parser revision of each connector it used (its warcinfo). After an upgrade whose
    parser reads the same records into other rows, the replay names the revisions; it cannot tell such a row
    from one rewritten and signed again, so the difference stays an error for a person to judge."""
    copy = shutil.copytree(demo, tmp_path / "demo")
    warcinfo = next((copy / "archive" / "warcs").glob("*.warc.gz")).read_bytes()
    assert b"parser-revisions: " in gzip.decompress(warcinfo)[:4000]
    monkeypatch.setattr(mastodon, "html_to_text", lambda html: "READ ANEW")  # a parser changed since
    result = verify(copy / "archiver.toml", "--replay")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("item_versions ")]
    assert lines and all("differs from the replay in text" in line for line in lines)
    assert not any("parser change" in line for line in lines)  # the revision did not move: nothing to explain

    monkeypatch.setattr(MastodonConnector, "PARSER_REVISION", MastodonConnector.PARSER_REVISION + 1)
    result = verify(copy / "archiver.toml", "--replay")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("item_versions ")]
    now = MastodonConnector.PARSER_REVISION
    assert lines and all(
        f"with the mastodon parser revision {now - 1}, this software's {now}: a parser change since may explain" in line
        for line in lines
        if "mastodon:" in line
    )


def test_a_row_a_newer_parser_makes_on_one_side_only_names_the_revisions_too(demo, tmp_path, temp, monkeypatch):
    """Review r F3: a parser that has learned to keep a row (as Bluesky's and YouTube's unfinished-thread cursors
    came after the first runs) gives the replay rows the live database never had. Such a row is still an error,
    and says which parser revision read its run."""
    copy = shutil.copytree(demo, tmp_path / "demo")
    fetch = MastodonConnector.fetch

    def learned(self, *args, **kwargs):  # noqa: ANN001, ANN202 - a parser keeping one more cursor
        yield from fetch(self, *args, **kwargs)
        yield CursorUpdate("learned_since", "1")

    monkeypatch.setattr(MastodonConnector, "fetch", learned)
    monkeypatch.setattr(MastodonConnector, "PARSER_REVISION", MastodonConnector.PARSER_REVISION + 1)
    result = verify(copy / "archiver.toml", "--replay")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if "learned_since" in line]
    now = MastodonConnector.PARSER_REVISION
    assert lines and all(
        "missing: the replay produces" in line
        and f"with the mastodon parser revision {now - 1}, this software's {now}: a parser change since" in line
        for line in lines
    ), result.output


def test_the_killed_runs_own_rows_are_held_to_every_column(tmp_path, temp):
    """Rows of later runs may differ from the replay in where and when they were captured (the note); a row
    the killed run committed itself must not: its replay gives all it committed. A capture time rewritten in
    one, the ledger rechained and signed again, is an error naming the row."""
    now = datetime.now(UTC)
    state = small_clinic(now)
    with SampleMastodonServer(state, TOKEN, rate_limit=1_000_000) as server:
        cfg = crash_config(tmp_path / "killed", server.base_url)
        result = CliRunner().invoke(app, ["run", "--config", str(cfg), "-q"], env={"CRASH_TOKEN": TOKEN})
        assert result.exit_code == 0, result.output
        for i in range(40):
            state.add_status(state.owner_id, f"New post {i}", created_at=now - timedelta(hours=40 - i))
        kill_a_run_at_request(server, cfg, 30)  # past a few commits of 7 observations
        result = CliRunner().invoke(app, ["run", "--config", str(cfg), "-q"], env={"CRASH_TOKEN": TOKEN})
        assert result.exit_code == 0, result.output
    database = tmp_path / "killed" / "arch" / "archive.db"
    conn = sqlite3.connect(database)
    [killed] = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY started_at")][1:2]
    version = conn.execute("SELECT max(id) FROM item_versions WHERE run_id = ?", (killed,)).fetchone()[0]
    conn.close()
    assert version is not None  # the kill came after a commit
    rewrite_history(
        database.parent, f"UPDATE item_versions SET captured_at = '2026-01-01T00:00:00.000000Z' WHERE id = {version}"
    )
    checkpoint(cfg)
    assert verify(cfg).exit_code == 0
    result = verify(cfg, "--replay")
    assert result.exit_code == 1, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith(f"item_versions id={version}:")]
    assert "no captured record backs it" in line and 'captured_at="2026-01-01T00:00:00.000000Z"' in line
