"""Reading an archive across an upgrade (review r): a read-only command on an archive an older archiver wrote works
before any writer has upgraded it, and says so; an older archiver reading an archive a newer one upgraded refuses
it (exit 2) instead of reporting the tables and views it does not know as tampering."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

import archiver.store
from archiver.cli import app
from archiver.demo.mastodon_server import SampleMastodonServer

from .test_run_wedges import ENV, TOKEN, clinic, config, query, run, verifies

OLDER = 17  # the schema before run_progress's migration 0017 made alert_deliveries, run_progress, scan_skips...


@pytest.fixture
def server() -> Iterator[SampleMastodonServer]:
    with SampleMastodonServer(clinic(), TOKEN, rate_limit=1_000_000) as s:
        yield s


def cli(*args: str):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(app, list(args), env=ENV)


def test_status_of_an_archive_an_older_archiver_wrote_works_before_the_upgrade(server, tmp_path, monkeypatch):
    cfg = config(tmp_path, server)
    older = archiver.store.load_migrations()[: OLDER - 1]
    with monkeypatch.context() as patch:
        patch.setattr(archiver.store, "load_migrations", lambda: older)
        assert run(cfg).exit_code == 0
    assert query(cfg, "PRAGMA user_version") == [(OLDER - 1,)]
    result = cli("status", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    known = len(archiver.store.load_migrations())
    line = f"archive schema {OLDER - 1}, this software's {known}: the next run (or any command that writes) upgrades it"
    assert line in result.output
    as_json = cli("status", "--json", "--config", str(cfg))
    assert as_json.exit_code == 0, as_json.output
    shown = json.loads(as_json.output)
    assert (shown["schema_version"], shown["software_schema_version"]) == (OLDER - 1, known)
    assert shown["counts"]["item_versions"] > 0 and "run_progress" not in shown["counts"]
    assert query(cfg, "PRAGMA user_version") == [(OLDER - 1,)]  # read, not upgraded

    assert run(cfg).exit_code == 0  # the next run upgrades it
    upgraded = cli("status", "--config", str(cfg))
    assert upgraded.exit_code == 0 and "archive schema" not in upgraded.output, upgraded.output
    assert verifies(cfg.parent / "arch") == []


@pytest.mark.parametrize(
    "command",
    [
        ("status",),
        ("verify",),
        ("verify", "--replay"),
        ("consent", "list"),
        ("alerts", "pending"),
        ("backup", "--to", "BACKUP"),
    ],
)
def test_an_older_archiver_refuses_an_archive_a_newer_one_upgraded(server, tmp_path, command):
    cfg = config(tmp_path, server)
    assert run(cfg).exit_code == 0
    database = cfg.parent / "arch" / "archive.db"
    known = len(archiver.store.load_migrations())
    conn = sqlite3.connect(database)  # what a newer archiver's migration leaves: a table, and its version
    conn.execute("CREATE TABLE made_by_a_newer_archiver (id INTEGER PRIMARY KEY)")
    conn.execute(f"PRAGMA user_version = {known + 1}")
    conn.commit()
    conn.close()
    if "alerts" in command:
        cfg.write_text(cfg.read_text() + '\n[alerts.webhook]\nurl = "http://127.0.0.1:9/hook"\n')
    args = [str(tmp_path / "backup") if arg == "BACKUP" else arg for arg in command]
    result = cli(*args, "--config", str(cfg))
    assert result.exit_code == 2, result.output
    assert f"archive schema version {known + 1} is newer than this software knows ({known}); upgrade archiver" in (
        result.output
    )
    assert "tamper" not in result.output and "behind" not in result.output
