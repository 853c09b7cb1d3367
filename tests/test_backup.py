"""`archiver backup`: a verified copy elsewhere, only what is new after the first time, never over a good copy."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from archiver import backup as backup_module
from archiver.access_log import SCHEMA, Access, AccessLog
from archiver.backup import MANIFEST, back_up_archive, read_manifest
from archiver.checkpoints import PRIVATE_KEY, PUBLIC_KEY, key_fingerprint, load_public_key, public_pem
from archiver.cli import app
from archiver.config import load_config
from archiver.lock import LOCK_NAME
from archiver.recovery import file_sha256
from archiver.users import add_user

from .test_ledger import behind_the_back


@pytest.fixture
def demo(tmp_path, demo_template) -> Path:
    return demo_template.copy_to(tmp_path / "demo")


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def verifies(answer: tuple[int, str]) -> bool:
    code, output = answer
    return code == 0 and output.splitlines()[-1] == "archive verifies" and "problem" not in output


def backup(demo: Path, to: Path) -> tuple[int, str]:
    return cli("backup", "--config", str(demo / "archiver.toml"), "--to", str(to), "--quiet")


def files(folder: Path) -> dict[str, str]:
    """Every file's sha256 but the backup's own manifest (rewritten by each backup)."""
    found = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in found}


def flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_backup_is_a_verified_copy_that_can_take_the_archives_place(demo, tmp_path):
    archive, to = demo / "archive", tmp_path / "backup"
    log = AccessLog(archive / "access-log.db")
    log.append(Access("ann", "investigator", "127.0.0.1", "GET", "/-/search", "q=mrn", 200, 3))
    log.close()
    add_user(archive / "users.json", "ann", "correct horse battery staple", "investigator")
    code, output = backup(demo, to)
    assert code == 0, output
    assert output.splitlines()[-1] == "backup verifies"
    source = files(archive / "warcs")
    assert source and files(to / "warcs") == source  # every WARC and checkpoint copy, byte for byte
    assert f"{len(source) + 1} file(s) copied" in output  # and the public key
    assert (to / "keys" / PUBLIC_KEY).read_bytes() == (archive / "keys" / PUBLIC_KEY).read_bytes()
    assert not list(to.rglob(PRIVATE_KEY)) and (archive / "keys" / PRIVATE_KEY).exists()
    assert (to / "users.json").read_bytes() == (archive / "users.json").read_bytes()
    assert not [p for p in to.rglob("*") if p.name.endswith((".partial", "-wal", "-journal"))]
    manifest = read_manifest(to)
    seq = sqlite3.connect(archive / "archive.db").execute("SELECT max(seq) FROM ledger").fetchone()[0]
    assert manifest["last_backup"]["verified"] and manifest["last_backup"]["ledger_seq"] == seq
    assert manifest["last_verified"] == {"at": manifest["last_backup"]["at"], "ledger_seq": seq}
    # PHI: only the owner may read the copy.
    assert stat.S_IMODE(to.stat().st_mode) == 0o700
    for path in (to / "archive.db", to / "access-log.db", *(to / "warcs").rglob("*.warc.gz")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # Anyone can check the copy as it lies, without a config; a folder without an archive is refused.
    code, output = cli("verify", "--archive-dir", str(to))
    assert code == 0 and output.splitlines()[-1] == "archive verifies", output
    assert "from the archive's own key folder" in output and "last checkpoint signs ledger seq" in output
    assert "not signed yet" not in output  # the checkpoint's own row, entered after its head, is not a gap
    code, output = cli("verify", "--archive-dir", str(tmp_path))
    assert code == 2 and output.count("\n") == 1 and "no archive.db there" in output
    # The copy takes the archive's place: with the private key put back it verifies, serves its log, and signs.
    restored = tmp_path / "restored"
    shutil.copytree(to, restored / "archive")
    shutil.copy(archive / "keys" / PRIVATE_KEY, restored / "archive" / "keys" / PRIVATE_KEY)
    config = restored / "archiver.toml"
    config.write_text((demo / "archiver.toml").read_text())
    assert verifies(cli("verify", "--config", str(config)))
    assert cli("access-log", "verify", "--config", str(config))[0] == 0
    code, output = cli("checkpoint", "--config", str(config))
    assert code == 0 and output.startswith("checkpoint ")
    assert verifies(cli("verify", "--config", str(config)))
    conn = sqlite3.connect(restored / "archive" / "archive.db")
    live = sqlite3.connect(archive / "archive.db")
    for table in ("item_versions", "events", "ledger"):
        query = f"SELECT * FROM {table} ORDER BY rowid"
        assert conn.execute(query).fetchall()[: len(live.execute(query).fetchall())] == live.execute(query).fetchall()
    conn.close()
    live.close()


def test_later_backups_copy_only_what_is_new_and_mend_a_damaged_copy(demo, tmp_path):
    to = tmp_path / "backup"
    assert backup(demo, to)[0] == 0
    code, output = backup(demo, to)
    assert code == 0 and "0 file(s) copied" in output, output
    # A new checkpoint is one new file; a WARC copy damaged or deleted in the backup is copied again.
    assert cli("checkpoint", "--config", str(demo / "archiver.toml"))[0] == 0
    damaged, deleted = sorted((to / "warcs").glob("*.warc.gz"))[:2]
    flip_byte(damaged, damaged.stat().st_size // 2)
    deleted.unlink()
    (to / "warcs" / ".left-by-a-stopped-backup.partial").write_bytes(b"half")
    code, output = backup(demo, to)
    assert code == 0, output
    assert "3 file(s) copied" in output
    assert files(to / "warcs") == files(demo / "archive" / "warcs")


def test_a_changed_warc_in_the_archive_never_replaces_the_good_copy(demo, tmp_path):
    to = tmp_path / "backup"
    assert backup(demo, to)[0] == 0
    good = files(to)
    warc = sorted((demo / "archive" / "warcs").glob("*.warc.gz"))[-1]
    flip_byte(warc, warc.stat().st_size // 2)
    code, output = backup(demo, to)
    assert code == 1
    assert f"backup of {warc}: sha256 expected" in output and "the backup's copy is kept" in output
    assert files(to) == good  # the database snapshot verifies against the good copies, unchanged since
    assert output.splitlines()[-1] == "1 problem(s) found"
    # Both sides damaged: nothing is copied over anything; verify reports the backup's copy too.
    copy = to / "warcs" / warc.name
    flip_byte(copy, 100)
    damaged = file_sha256(copy)
    code, output = backup(demo, to)
    assert code == 1 and "the backup's copy does not match either, left" in output
    assert file_sha256(copy) == damaged and f"backup WARC {warc.name}: sha256 expected" in output


def test_a_signed_warc_changed_under_a_second_row_never_replaces_the_good_copy(demo, tmp_path):
    """warc_files rebuilt without its key and given a second row with the changed file's digest: the backup
    goes by the digest the checkpoint signed, keeps its copy, and says so; the snapshot does not verify."""
    from .test_tamper import second_row_for_an_edited_warc

    to = tmp_path / "backup"
    assert backup(demo, to)[0] == 0
    warc = sorted((demo / "archive" / "warcs").glob("*.warc.gz"))[0]
    good = file_sha256(to / "warcs" / warc.name)
    second_row_for_an_edited_warc(demo / "archive")
    code, output = backup(demo, to)
    assert code == 1 and file_sha256(to / "warcs" / warc.name) == good
    assert f"backup of {warc}: sha256 expected {good}" in output and "the backup's copy is kept" in output
    assert f"warc_files name={warc.name}: 2 rows hold this key" in output


def test_a_warc_deleted_from_the_archive_is_reported_and_the_copy_kept(demo, tmp_path):
    to = tmp_path / "backup"
    assert backup(demo, to)[0] == 0
    good = files(to)
    warc = sorted((demo / "archive" / "warcs").glob("*.warc.gz"))[0]
    warc.unlink()
    code, output = backup(demo, to)
    assert code == 1
    assert f"backup of {warc}: recorded in warc_files but missing from the archive; the backup's copy is kept" in output
    assert files(to) == good


def test_a_tampered_database_is_kept_beside_and_the_verified_one_stays(demo, tmp_path):
    to = tmp_path / "backup"
    assert backup(demo, to)[0] == 0
    before = file_sha256(to / "archive.db")
    behind_the_back(demo / "archive" / "archive.db", "UPDATE item_versions SET text = 'nothing to see' WHERE id = 3")
    code, output = backup(demo, to)
    assert code == 1
    assert "item_versions" in output and "archive.db.unverified, the previous stays" in output
    assert file_sha256(to / "archive.db") == before
    manifest = read_manifest(to)
    assert not manifest["last_backup"]["verified"] and manifest["last_backup"]["problems"] > 0
    assert manifest["last_verified"]["at"] < manifest["last_backup"]["at"]  # the previous, verified snapshot
    unverified = sqlite3.connect(to / "archive.db.unverified")
    assert unverified.execute("SELECT text FROM item_versions WHERE id = 3").fetchone()[0] == "nothing to see"
    unverified.close()


def test_a_changed_checkpoint_copy_or_access_log_is_reported_and_the_copy_kept(demo, tmp_path):
    archive, to = demo / "archive", tmp_path / "backup"
    log = AccessLog(archive / "access-log.db")
    log.append(Access("ann", "investigator", "127.0.0.1", "GET", "/-/search", "q=mrn", 200, 3))
    log.close()
    assert backup(demo, to)[0] == 0
    good = files(to)
    statement = sorted((archive / "warcs" / "checkpoints").glob("*.json"))[0]
    statement.write_bytes(statement.read_bytes() + b" ")
    behind_the_back(archive / "access-log.db", "DELETE FROM access_log")
    code, output = backup(demo, to)
    assert code == 1
    assert (
        f"backup of {statement}: differs from checkpoints id=1: changed in the archive, the backup's copy is kept"
        in output
    )
    assert "access-log.db.unverified, the previous stays" in output
    assert {k: v for k, v in files(to).items() if not k.endswith(".unverified")} == good


def test_refused_inside_the_archive_or_while_a_run_holds_it(demo, tmp_path):
    code, output = backup(demo, demo / "archive" / "copies")
    assert code == 2 and len(output.strip().splitlines()) == 1
    assert "the backup must be outside the archive folder" in output
    assert not (demo / "archive" / "copies").exists()
    fd = os.open(demo / "archive" / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        code, output = backup(demo, tmp_path / "backup")
    finally:
        os.close(fd)
    assert code == 1 and "another archiver command holds this archive" in output
    assert not (tmp_path / "backup").exists()


def test_the_folder_comes_from_the_config_or_the_command_says_what_to_do(demo, tmp_path):
    config = demo / "archiver.toml"
    code, output = cli("backup", "--config", str(config))
    assert code == 2 and output.count("\n") == 1 and "name the backup folder with --to FOLDER" in output
    config.write_text(config.read_text() + '\n[backup]\nto = "../nightly-copy"\n')
    code, output = cli("backup", "--config", str(config), "--quiet")
    assert code == 0, output
    manifest = read_manifest(tmp_path / "nightly-copy")
    assert manifest["last_backup"]["verified"]
    code, output = cli("status", "--config", str(config))
    assert f"last backup in {tmp_path / 'nightly-copy'}: {manifest['last_backup']['at']}, verified" in output


def log_requests(archive: Path, count: int) -> None:
    log = AccessLog(archive / "access-log.db")
    for i in range(count):
        log.append(Access("ann", "investigator", "10.0.0.7", "GET", "/archive/items", f"q=patient+{i}", 200, 3))
    log.close()


def log_rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM access_log").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize(
    "cut_after, reason",
    [
        (45, "lacks entry 50, the last of the backup's copy (rows removed in the archive)"),  # past the signed head
        (20, "does not verify"),  # into what the checkpoint signed
    ],
)
def test_a_cut_access_log_never_replaces_the_backups_copy(demo, tmp_path, cut_after, reason):
    archive, to = demo / "archive", tmp_path / "backup"
    log_requests(archive, 40)
    assert cli("checkpoint", "--config", str(demo / "archiver.toml"))[0] == 0  # signs the log's head, seq 40
    log_requests(archive, 10)
    assert backup(demo, to)[0] == 0
    good = file_sha256(to / "access-log.db")
    behind_the_back(archive / "access-log.db", f"DELETE FROM access_log WHERE seq > {cut_after}")
    conn = sqlite3.connect(archive / "access-log.db")
    conn.executescript(SCHEMA)  # the triggers put back: what is left chains on its own
    conn.close()
    # The chain left verifies on its own; access-log verify finds a cut only into what a checkpoint signed.
    assert cli("access-log", "verify", "--config", str(demo / "archiver.toml"))[0] == (0 if cut_after >= 40 else 1)
    code, output = backup(demo, to)
    assert code == 1, output
    assert f"backup {to / 'access-log.db'}: the new snapshot {reason}: kept as access-log.db.unverified" in output
    assert "the previous stays" in output
    assert file_sha256(to / "access-log.db") == good and log_rows(to / "access-log.db") == 50
    assert log_rows(to / "access-log.db.unverified") == cut_after
    assert not read_manifest(to)["last_backup"]["verified"]
    assert verifies(cli("verify", "--archive-dir", str(to)))  # the database snapshot agrees with the log kept


def test_a_checkpoint_copy_a_stopped_run_left_staged_is_completed_before_the_snapshot(demo, tmp_path):
    archive, to = demo / "archive", tmp_path / "backup"
    assert backup(demo, to)[0] == 0
    assert cli("checkpoint", "--config", str(demo / "archiver.toml"))[0] == 0
    last = sorted((archive / "warcs" / "checkpoints").glob("checkpoint-*.json"))[-1]
    last.rename(last.with_suffix(".json.tmp"))  # stopped after the checkpoint's commit, before the move
    code, output = backup(demo, to)
    assert code == 0, output
    assert f"note: {last.parent}: checkpoint copy {last.name} was missing" in output
    assert last.is_file() and not last.with_suffix(".json.tmp").exists()
    assert files(to / "warcs") == files(archive / "warcs") and not list(to.glob("*.unverified"))


def test_a_checkpoint_copy_or_key_damaged_in_the_backup_is_copied_again(demo, tmp_path):
    archive, to = demo / "archive", tmp_path / "backup"
    assert backup(demo, to)[0] == 0
    copy = sorted((to / "warcs" / "checkpoints").glob("*.json"))[0]
    key = to / "keys" / PUBLIC_KEY
    flip_byte(copy, 40)
    flip_byte(key, 40)
    assert cli("checkpoint", "--config", str(demo / "archiver.toml"))[0] == 0
    code, output = backup(demo, to)
    assert code == 0, output
    assert f"note: backup {copy}: differs from checkpoints id=1: damaged in the backup, copied again" in output
    assert f"note: backup {key}: damaged in the backup, copied again" in output
    assert files(to / "warcs") == files(archive / "warcs")
    assert key.read_bytes() == (archive / "keys" / PUBLIC_KEY).read_bytes()
    seq = "SELECT max(seq) FROM ledger"
    assert sqlite3.connect(to / "archive.db").execute(seq).fetchone() == (
        sqlite3.connect(archive / "archive.db").execute(seq).fetchone()
    )
    # The archive's key damaged: the backup's, which the checkpoints are signed with, is kept.
    good = files(to)
    flip_byte(archive / "keys" / PUBLIC_KEY, 40)
    code, output = backup(demo, to)
    assert code == 1
    source = archive / "keys" / PUBLIC_KEY
    assert f"backup of {source}: changed in the archive since it was backed up" in output
    assert "the backup's copy is kept" in output and files(to) == good


def test_a_stopped_backup_leaves_the_folder_as_it_was(demo, tmp_path):
    to = tmp_path / "backup"
    assert backup(demo, to)[0] == 0
    before = files(to)
    assert cli("checkpoint", "--config", str(demo / "archiver.toml"))[0] == 0  # a new file for the next backup

    def stop(step: str, done: int, total: int) -> None:
        if step.startswith("verifying"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        back_up_archive(load_config(demo / "archiver.toml").archive, to, stop)
    assert files(to) == before
    assert verifies(cli("verify", "--archive-dir", str(to)))


@pytest.mark.parametrize("where", ["file", "database"])
def test_a_full_backup_disk_is_said_so_and_leaves_the_folder_as_it_was(demo, tmp_path, monkeypatch, where):
    to = tmp_path / "backup"
    assert backup(demo, to)[0] == 0
    before = files(to)
    assert cli("checkpoint", "--config", str(demo / "archiver.toml"))[0] == 0

    def copy_bytes(source: Path, target: Path) -> str:
        target.write_bytes(source.read_bytes()[:10])
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    def snapshot(source: Path, target: Path) -> Path:
        target.write_bytes(b"half")
        full = sqlite3.OperationalError("database or disk is full")
        full.sqlite_errorcode = sqlite3.SQLITE_FULL
        raise full

    if where == "file":
        monkeypatch.setattr(backup_module, "_copy_bytes", copy_bytes)
    else:
        monkeypatch.setattr(backup_module, "_snapshot", snapshot)
    code, output = backup(demo, to)
    assert code == 1 and output.count("\n") == 1, output
    assert f"--to {to}: the backup folder's disk is full" in output
    assert files(to) == before
    assert verifies(cli("verify", "--archive-dir", str(to)))


@pytest.mark.parametrize("named_by", ["key", "manifest"])
def test_a_folder_holding_another_archives_backup_is_refused_before_anything_is_copied(demo, tmp_path, named_by):
    archive, to = demo / "archive", tmp_path / "backup"
    assert backup(demo, to)[0] == 0
    manifest = read_manifest(to)
    assert manifest["public_key"] == key_fingerprint(load_public_key(archive / "keys" / PUBLIC_KEY))
    other = Ed25519PrivateKey.generate().public_key()
    if named_by == "key":  # a backup made before backup.json named the key
        (to / "keys" / PUBLIC_KEY).write_bytes(public_pem(other))
        del manifest["public_key"]
    else:
        (to / "keys" / PUBLIC_KEY).unlink()
        manifest["public_key"] = key_fingerprint(other)
    (to / MANIFEST).write_text(json.dumps(manifest))
    assert cli("checkpoint", "--config", str(demo / "archiver.toml"))[0] == 0
    before = files(to)
    code, output = backup(demo, to)
    assert code == 2 and output.count("\n") == 1, output
    assert f"the folder holds the backup of another archive (public key {key_fingerprint(other)}" in output
    assert files(to) == before and json.loads((to / MANIFEST).read_text()) == manifest


def test_a_backup_of_an_archive_with_named_files_is_laid_out_with_the_default_names(demo, tmp_path):
    """`database`, `warc_dir` named in the config: the backup still holds archive.db, warcs/ and keys/, so
    `verify --archive-dir` checks it without a config, and a later backup finds what it copied."""
    arch = demo / "archive"
    for suffix in ("", "-wal", "-shm"):
        if (arch / f"archive.db{suffix}").exists():
            (arch / f"archive.db{suffix}").rename(arch / f"riverside.db{suffix}")
    (arch / "data").mkdir()
    (arch / "warcs").rename(arch / "data" / "warcs")
    config = demo / "archiver.toml"
    text = config.read_text()
    config.write_text(
        text.replace('dir = "archive"\n', 'dir = "archive"\ndatabase = "riverside.db"\nwarc_dir = "data/warcs"\n', 1)
    )
    assert verifies(cli("verify", "--config", str(config)))
    to = tmp_path / "nightly"
    code, output = backup(demo, to)
    assert code == 0 and output.splitlines()[-1] == "backup verifies", output
    assert {"archive.db", "warcs", "keys"} <= {p.name for p in to.iterdir()}
    assert verifies(cli("verify", "--archive-dir", str(to)))
    before = files(to)
    code, output = backup(demo, to)
    assert code == 0, output
    assert {k: v for k, v in files(to).items() if k.startswith("warcs/")} == {
        k: v for k, v in before.items() if k.startswith("warcs/")
    }
