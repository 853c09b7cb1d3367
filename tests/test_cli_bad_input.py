"""Bad input to the CLI: one line naming the file, field or value, exit 2, and the archive as it was (no run row
written, no file made). Found only by a run, the same input would be a failed run row and exit 1."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from archiver import __version__
from archiver.cli import app

from .test_config import DISABLED

SECRET = "s3cret-token-Zq7"


def write_config(tmp_path: Path, accounts: str) -> Path:
    path = tmp_path / "archiver.toml"
    path.write_text(f'[archive]\ndir = "arch"\nretries = 0\n{accounts}', "utf-8")
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def archive_files(arch: Path) -> dict[str, str]:
    """Every file of the archive folder and its digest; the lock file aside (any command may take the lock)."""
    return {
        str(p.relative_to(arch)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(arch.rglob("*"))
        if p.is_file() and p.name != "archiver.lock"
    }


def run_rows(arch: Path) -> int:
    conn = sqlite3.connect(f"file:{arch / 'archive.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    finally:
        conn.close()


def assert_one_line_exit_2(result: Result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("archiver: error: "), result.output
    assert "Traceback" not in result.output and SECRET not in result.output
    for word in words:
        assert word in result.output, result.output


@pytest.fixture
def archived(tmp_path: Path) -> Path:
    """An archive holding one run (of no account)."""
    result = invoke("run", "--config", str(write_config(tmp_path, DISABLED)), "--quiet")
    assert result.exit_code == 0, result.output
    assert run_rows(tmp_path / "arch") == 1
    return tmp_path / "arch"


def clinic(reference: str) -> str:
    return f'\n[[accounts]]\nname = "clinic"\nplatform = "mastodon"\napi_base = "http://127.0.0.1:9"\n{reference}\n'


def token_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "tok"
    if kind == "directory":
        path.mkdir()
        return
    if kind != "missing":
        path.write_text("" if kind == "empty" else SECRET + "\n")
        path.chmod(0o644 if kind == "open to others" else 0o600)


@pytest.mark.parametrize(
    ("kind", "reference", "words"),
    [
        ("unset", 'token_env = "ARCHIVER_TEST_UNSET"', ["account clinic: environment variable ARCHIVER_TEST_UNSET"]),
        ("missing", 'token_file = "tok"', ["account clinic: cannot read token_file", "No such file"]),
        ("directory", 'token_file = "tok"', ["account clinic: cannot read token_file", "Is a directory"]),
        ("empty", 'token_file = "tok"', ["account clinic: token_file", "is empty"]),
        ("open to others", 'token_file = "tok"', ["is mode 644, open to group or others; chmod 600"]),
    ],
)
def test_a_token_that_cannot_be_used_stops_the_run_before_it_touches_the_archive(
    archived, tmp_path, monkeypatch, http_waits, kind, reference, words
):
    monkeypatch.delenv("ARCHIVER_TEST_UNSET", raising=False)
    token_file(tmp_path, kind)
    config = write_config(tmp_path, DISABLED + clinic(reference))
    before = archive_files(archived)
    assert_one_line_exit_2(invoke("run", "--config", str(config), "--quiet"), *words)
    assert archive_files(archived) == before and run_rows(archived) == 1


def test_only_the_accounts_a_run_captures_are_checked(archived, tmp_path, monkeypatch):
    """--account picks the accounts; a disabled one is never read."""
    monkeypatch.delenv("ARCHIVER_TEST_UNSET", raising=False)
    config = write_config(tmp_path, DISABLED + clinic('token_env = "ARCHIVER_TEST_UNSET"'))
    assert_one_line_exit_2(invoke("run", "--config", str(config), "--account", "nosuch"), "no account named 'nosuch'")
    assert invoke("run", "--config", str(config), "--account", "off", "--quiet").exit_code == 0
    assert run_rows(archived) == 2


def test_a_malformed_handle_stops_the_run_before_it_touches_the_archive(archived, tmp_path, http_waits):
    config = write_config(tmp_path, DISABLED + clinic('account = "not a handle"\ntoken_env = "ARCHIVER_TEST_UNUSED"'))
    before = archive_files(archived)
    assert_one_line_exit_2(invoke("run", "--config", str(config), "--quiet"), "accounts[1].account: 'not a handle'")
    assert archive_files(archived) == before and run_rows(archived) == 1


def foreign_database(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE patients (id INTEGER, name TEXT)")
    conn.execute("INSERT INTO patients VALUES (1, 'Ann Example')")
    conn.commit()
    conn.close()
    return path.read_bytes()


@pytest.mark.parametrize("command", [["run", "--quiet"], ["status"], ["checkpoint"], ["verify"]])
def test_another_applications_sqlite_file_is_refused_untouched(tmp_path, command):
    database = tmp_path / "arch" / "archive.db"
    original = foreign_database(database)
    result = invoke(*command, "--config", str(write_config(tmp_path, DISABLED)))
    assert_one_line_exit_2(result, f"{database}: not an archive database (it holds other tables: patients)")
    assert database.read_bytes() == original
    assert sorted(p.name for p in database.parent.iterdir()) == ["archive.db"]  # no -wal, no lock file


def test_an_empty_database_file_is_a_new_archive(tmp_path):
    database = tmp_path / "arch" / "archive.db"
    database.parent.mkdir()
    database.touch()
    assert invoke("run", "--config", str(write_config(tmp_path, DISABLED)), "--quiet").exit_code == 0
    assert run_rows(tmp_path / "arch") == 1


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["verify"],
        ["checkpoint"],
        ["scan"],
        ["review", "1", "--decision", "violation"],
        ["export", "--case", "C-1", "--out", "bundle"],
        ["access-log", "verify"],
    ],
    ids=" ".join,
)
def test_a_missing_archive_is_exit_2_for_every_command_and_creates_nothing(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, DISABLED)
    result = invoke(*command, "--config", str(config))
    assert_one_line_exit_2(result, f"{tmp_path / 'arch' / 'archive.db'}: archive database not found", "archiver run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archiver.toml"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "--bogus"], "No such option: --bogus"),
        (["nosuch"], "No such command 'nosuch'"),
        (["export"], "Missing option '--case'"),
        (["consent", "nosuch"], "see `archiver consent --help`"),
    ],
    ids=" ".join,
)
def test_a_usage_mistake_is_one_line_exit_2(args, words):
    """The installed command (as `python -m archiver` runs it), not the bare Typer app: click draws these as a
    box of five or six lines."""
    done = subprocess.run([sys.executable, "-m", "archiver", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("archiver: error: ") and words in done.stderr


def test_version_answers_without_a_command():
    done = subprocess.run([sys.executable, "-m", "archiver", "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, f"archiver {__version__}\n")


@pytest.mark.parametrize("command", [["run", "--quiet"], ["scan"], ["checkpoint"]])
def test_an_archive_from_newer_software_is_exit_2_untouched(archived, tmp_path, command):
    """An older archiver after a rollback: the archive waits for the software that made it."""
    conn = sqlite3.connect(archived / "archive.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    before = archive_files(archived)
    result = invoke(*command, "--config", str(tmp_path / "archiver.toml"))
    assert_one_line_exit_2(result, "archive schema version 999 is newer than this software knows", "upgrade archiver")
    assert archive_files(archived) == before
