"""The database's own files under a failing file system (review s): a database made read-only while cron runs, and
its -wal and -shm, which SQLite makes with the database's mode; a first run stopped while making the schema."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import archiver.store
from archiver.cli import app
from archiver.demo.mastodon_server import SampleMastodonServer
from archiver.store import Store, load_migrations, readonly_uri

from .test_run_wedges import ENV, TOKEN, clinic, config, run, verifies

# Root writes whatever the mode says: without these capabilities it is held to the modes as the archive's user is.
AS_A_USER = (
    ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
    if os.geteuid() == 0
    else []
)


@pytest.fixture
def server() -> Iterator[SampleMastodonServer]:
    with SampleMastodonServer(clinic(), TOKEN, rate_limit=1_000_000) as s:
        yield s


def as_a_user(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*AS_A_USER, sys.executable, "-m", "archiver", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=120,
    )


def test_a_database_or_its_shm_left_read_only_is_named_with_its_fix(server, tmp_path):
    cfg = config(tmp_path, server)
    assert run(cfg).exit_code == 0
    database = cfg.parent / "arch" / "archive.db"
    shm = database.with_name("archive.db-shm")
    assert not shm.exists()  # the run's last connection took its -wal and -shm away
    database.chmod(0o400)  # someone froze the archive while cron runs
    result = as_a_user("run", "--config", str(cfg), "--quiet")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"archiver: error: {database}: cannot be written by this user (mode 0400, owner uid {os.getuid()}); give it "
        "back to the user that runs archiver, mode 0600"
    )
    assert sorted(p.name for p in database.parent.glob("archive.db*")) == ["archive.db"]  # no read-only -shm made
    # What a run of an archiver before this check left: it read the database through SQLite's WAL index, which
    # SQLite made with the database's mode and left behind.
    older = f"import sqlite3; sqlite3.connect({readonly_uri(database)!r}, uri=True).execute('SELECT 1 FROM runs')"
    assert subprocess.run([*AS_A_USER, sys.executable, "-c", older], check=True).returncode == 0
    assert shm.stat().st_mode & 0o777 == 0o400
    database.chmod(0o600)
    result = as_a_user("run", "--config", str(cfg), "--quiet")
    assert result.returncode == 2
    assert f"{shm}: cannot be written by this user (mode 0400" in result.stderr
    assert "(SQLite made it with the database's mode while the database was read-only)" in result.stderr
    doctor = as_a_user("doctor", "--config", str(cfg))
    assert f"{shm} cannot be written by this user; fix its owner or mount" in doctor.stdout
    shm.chmod(0o600)  # what the message says to do
    assert run(cfg).exit_code == 0
    assert verifies(cfg.parent / "arch") == []


def test_a_first_run_stopped_while_making_the_schema_leaves_no_half_archive(server, tmp_path, monkeypatch):
    """The schema is made in one transaction: stopped at any migration, the file holds no table, which read-only
    commands call no archive yet (not a foreign database), and the next run makes it whole."""
    cfg = config(tmp_path, server)
    database = cfg.parent / "arch" / "archive.db"
    migrations = load_migrations()
    broken = [*migrations[:3], archiver.store.Migration(4, "stopped", "SELECT raise_stop();")]
    with monkeypatch.context() as patch:
        patch.setattr(archiver.store, "load_migrations", lambda: broken)
        with pytest.raises(sqlite3.OperationalError):
            Store.open(database)
    conn = sqlite3.connect(database)
    assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()
    for command in ("verify", "status"):
        result = CliRunner().invoke(app, [command, "--config", str(cfg)], env=ENV)
        assert result.exit_code == 2, result.output
        assert result.output.strip() == (
            f"archiver: error: {database}: no archive yet (the first run stopped before making it: nothing was "
            "archived); run `archiver run`"
        )
    assert run(cfg).exit_code == 0
    assert verifies(cfg.parent / "arch") == []
    assert Path(database).exists()
