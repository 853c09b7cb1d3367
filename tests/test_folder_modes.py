"""Every file the archive writes holds PHI or a secret, wherever the config puts it: `database`, `warc_dir` and
`keys_dir` may be folders outside `[archive] dir` (a big volume for the WARCs), and cron runs with umask 022. The
CLI starts with umask 077, the WARC writer makes its files 0600 and its folders 0700, and doctor checks the
folders outside `dir` as it checks `dir`."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver import doctor
from archiver.cli import app
from archiver.warc import HttpMessage, WarcWriter

from .test_mastodon_run import Clinic


@pytest.fixture
def cron_umask() -> Iterator[None]:
    """The umask cron runs its jobs with (the systemd units set UMask=0077 themselves); restored after."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def open_to_others(*folders: Path) -> list[str]:
    return [f"{mode(p):o} {p}" for folder in folders for p in [folder, *folder.rglob("*")] if mode(p) & 0o077]


@pytest.fixture
def outside(tmp_path, monkeypatch, cron_umask) -> Iterator[tuple[Clinic, Path, Path]]:
    """A clinic archived once under umask 022 with its WARCs, database and keys on another volume (`bigdisk`,
    made by an administrator with the usual 0755); returns the clinic, the volume and the config."""
    monkeypatch.setattr(doctor, "WARN_FREE_BYTES", 0)  # the test machine's free space is not under test
    monkeypatch.setattr(doctor, "MIN_FREE_BYTES", 0)
    big = tmp_path / "bigdisk"
    big.mkdir()
    big.chmod(0o755)
    clinic = Clinic(tmp_path, monkeypatch)
    config = clinic.config()
    config.write_text(
        config.read_text().replace(
            "recheck_days = 14\n",
            f'recheck_days = 14\nwarc_dir = "{big}/warcs"\ndatabase = "{big}/db/archive.db"\nkeys_dir = "{big}/keys"\n',
        )
    )
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    yield clinic, big, config
    clinic.stop()


def test_a_run_under_cron_umask_leaves_nothing_readable_by_others(outside):
    clinic, big, _ = outside
    warcs = list((big / "warcs").glob("*.warc.gz"))
    assert warcs and (big / "db" / "archive.db").exists() and (big / "warcs" / "checkpoints").is_dir()
    assert (big / "keys" / "archive-ed25519.key").exists()
    made = list(big.iterdir())  # the volume's own folder is the administrator's
    assert open_to_others(*made, clinic.tmp_path / "arch") == []


def test_doctor_checks_folders_outside_the_archive_folder(outside):
    _, big, config = outside
    result = CliRunner().invoke(app, ["doctor", "--config", str(config)])
    for name, folder in [("database folder", big / "db"), ("WARC folder", big / "warcs"), ("key folder", big / "keys")]:
        assert f"OK   {name}: {folder} (mode 700)" in result.output, result.output
    assert "checkpoints folder" not in result.output  # inside a WARC folder that is private: covered by it

    (big / "warcs").chmod(0o755)  # as an earlier version made it under cron
    (big / "db").chmod(0o755)
    (big / "db" / "archive.db").chmod(0o644)
    result = CliRunner().invoke(app, ["doctor", "--config", str(config)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    warcs, db = big / "warcs", big / "db"
    assert f"WARN WARC folder: {warcs} is mode 755: others can read PHI; chmod 700 {warcs}" in lines
    assert f"WARN database folder: {db} is mode 755: others can read PHI; chmod 700 {db}" in lines
    database = db / "archive.db"
    assert f"WARN archive file: {database} is mode 644: others can read PHI; chmod 600 {database}" in lines
    assert f"OK   checkpoints folder: {warcs / 'checkpoints'} (mode 700)" in lines  # no longer covered: checked


def test_a_run_makes_private_what_an_earlier_version_left_open_outside_the_archive_folder(outside):
    """The umask covers new files only, and SQLite gives a new -wal the database file's mode."""
    clinic, big, config = outside
    database = big / "db" / "archive.db"
    for path, loose in [(big / "warcs", 0o755), (big / "keys", 0o755), (database, 0o644)]:
        path.chmod(loose)  # as an earlier version made them under cron
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    assert (mode(big / "warcs"), mode(big / "keys"), mode(database)) == (0o700, 0o700, 0o600)
    assert open_to_others(big / "warcs", big / "keys", *big.glob("db/archive.db*")) == []


def test_the_default_layout_is_covered_by_the_archive_folder(tmp_path, monkeypatch):
    """Folders inside `dir` are private with it (the run makes it 0700): doctor says nothing more about them."""
    monkeypatch.setattr(doctor, "WARN_FREE_BYTES", 0)
    monkeypatch.setattr(doctor, "MIN_FREE_BYTES", 0)
    clinic = Clinic(tmp_path, monkeypatch)
    try:
        assert clinic.run()[0] == 0
        (tmp_path / "arch" / "warcs").chmod(0o755)
        result = CliRunner().invoke(app, ["doctor", "--config", str(clinic.config())])
        assert "folder" not in result.output.replace("archive folder", "").replace("[backup] folder", "")
    finally:
        clinic.stop()


def test_init_under_cron_umask_writes_a_config_the_service_user_reads_and_a_private_key(tmp_path, cron_umask):
    """The config holds no secret and root writes it for the service user (README, Nightly run): it keeps the
    umask `init` was started with; the archive folder and the key are private."""
    config = tmp_path / "etc" / "archiver" / "archiver.toml"
    result = CliRunner().invoke(app, ["init", "--config", str(config), "--dir", str(tmp_path / "var" / "archiver")])
    assert result.exit_code == 0, result.output
    assert mode(config) == 0o644 and mode(config.parent) == 0o755
    keys = tmp_path / "var" / "archiver" / "keys"
    assert mode(keys) == 0o700 and mode(keys / "archive-ed25519.key") == 0o600
    assert open_to_others(tmp_path / "var" / "archiver") == []


def test_the_warc_writer_makes_private_files_and_folders_whatever_the_umask(tmp_path, cron_umask):
    """Used as a library (no CLI, so no umask of its own), the WARC writer still writes PHI for its owner only."""
    writer = WarcWriter(tmp_path / "volume" / "warcs", "run1")
    request = HttpMessage("GET / HTTP/1.1", [("Host", "h")], b"")
    writer.write_exchange("https://h/", request, HttpMessage("HTTP/1.1 200 OK", [], b"{}"))
    (info,) = writer.close()
    assert mode(tmp_path / "volume") == 0o700 and mode(tmp_path / "volume" / "warcs") == 0o700
    assert mode(tmp_path / "volume" / "warcs" / info.name) == 0o600
