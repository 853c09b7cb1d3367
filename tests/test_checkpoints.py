"""Signed checkpoints: made at each run's end, checked against the archive's key; tampering is caught."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from typer.testing import CliRunner

from archiver.checkpoints import (
    CHECKPOINT_DIR,
    PRIVATE_KEY,
    PUBLIC_KEY,
    load_private_key,
    load_public_key,
    sign_checkpoint,
)
from archiver.cli import app
from archiver.items import canonical_json
from archiver.verify import verify_archive

from .test_config import DISABLED
from .test_ledger import behind_the_back
from .test_merkle import mth

NO_ENCRYPTION = serialization.NoEncryption()


@pytest.fixture
def archive(tmp_path):
    """An empty-account run: runs, results, a WARC-less checkpoint; keys generated on the way."""
    config = tmp_path / "archiver.toml"
    config.write_text(f'[archive]\ndir = "arch"\n{DISABLED}')
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    return tmp_path / "arch", config


def problems(arch):
    return [str(p) for p in verify_archive(arch / "archive.db", arch / "warcs", arch / "keys" / PUBLIC_KEY)]


def test_run_ends_with_a_checkpoint_anyone_can_check(archive):
    arch, config = archive
    key_file = arch / "keys" / PRIVATE_KEY
    assert key_file.stat().st_mode & 0o777 == 0o600
    conn = sqlite3.connect(arch / "archive.db")
    (statement, signature, public, file_name, seq) = conn.execute(
        "SELECT statement, signature, public_key, file_name, ledger_seq FROM checkpoints"
    ).fetchone()
    conn.close()
    # Checked with nothing but cryptography and the exported public key.
    exported = CliRunner().invoke(app, ["key", "export", "--config", str(config)]).output.encode()
    assert exported.startswith(b"-----BEGIN PUBLIC KEY-----")
    key = load_public_key(arch / "keys" / PUBLIC_KEY)
    key.verify(base64.b64decode(signature), statement.encode())
    assert json.loads(statement)["ledger"]["seq"] == seq
    copy = json.loads((arch / "warcs" / CHECKPOINT_DIR / file_name).read_text())
    assert copy == {"statement": statement, "signature": signature, "public_key": public}
    assert problems(arch) == []
    result = CliRunner().invoke(app, ["verify", "--config", str(config)])
    assert result.exit_code == 0 and "archive verifies" in result.output


def test_an_edited_checkpoint_is_caught(archive):
    arch, _ = archive
    conn = sqlite3.connect(arch / "archive.db")
    statement = conn.execute("SELECT statement FROM checkpoints").fetchone()[0]
    conn.close()
    forged = statement.replace('"seq":', '"seq":1')
    behind_the_back(arch / "archive.db", f"UPDATE checkpoints SET statement = '{forged}'")
    found = problems(arch)
    assert any("checkpoints id=1: signature does not match the statement" in p for p in found)
    assert any(p.startswith("checkpoints id=1: row changed since ledger seq") for p in found)


def test_a_checkpoint_signed_with_another_key_is_caught(archive):
    arch, _ = archive
    conn = sqlite3.connect(arch / "archive.db")
    conn.row_factory = sqlite3.Row
    with conn:
        other = sign_checkpoint(conn, Ed25519PrivateKey.generate(), arch / "warcs")
    conn.close()
    behind_the_back(
        arch / "archive.db",
        "INSERT INTO checkpoints (created_at, ledger_seq, ledger_hash, statement, public_key, signature, file_name) "
        f"VALUES ('t', {other.ledger_seq}, '{other.ledger_hash}', '{other.statement}', '{other.public_key}', "
        f"'{other.signature}', '{other.file_name}')",
    )
    found = problems(arch)
    assert any("checkpoints id=2: signed with another key" in p for p in found)


def test_a_truncated_ledger_is_caught_by_the_signed_head(archive):
    arch, config = archive
    # A second checkpoint so the first is not the last thing in the ledger.
    assert CliRunner().invoke(app, ["checkpoint", "--config", str(config)]).exit_code == 0
    conn = sqlite3.connect(arch / "archive.db")
    last_signed = conn.execute("SELECT max(ledger_seq) FROM checkpoints").fetchone()[0]
    conn.close()
    behind_the_back(
        arch / "archive.db",
        f"DELETE FROM ledger WHERE seq >= {last_signed}",
        "DELETE FROM checkpoints WHERE id = 2",
        "DELETE FROM schema_migrations WHERE version > 100",
    )
    found = problems(arch)
    assert any("not recorded in the database" in p and "ledger truncated" in p for p in found), found


def test_verify_exits_1_and_names_the_place(archive):
    arch, config = archive
    (arch / "warcs" / CHECKPOINT_DIR / "checkpoint-0000000001.json").write_text("{}")
    result = CliRunner().invoke(app, ["verify", "--config", str(config)])
    assert result.exit_code == 1
    assert "checkpoint file checkpoint-0000000001.json: not a checkpoint document" in result.output


def test_public_key_loader_rejects_other_files(tmp_path):
    path = tmp_path / "k.pub"
    path.write_text("nope")
    with pytest.raises(Exception, match="not a PEM public key"):
        load_public_key(path)
    assert isinstance(Ed25519PrivateKey.generate().public_key(), Ed25519PublicKey)


def test_a_run_stopped_between_its_checkpoint_commit_and_the_copy_is_completed_by_the_next(archive, monkeypatch):
    """The copy beside the WARCs is staged before the commit and moved into place after it: a stop in between
    leaves a committed checkpoint whose copy is still staged. Verify calls that a note, not tampering; the next
    run writes the copy from the row, byte for byte what it would have been."""
    from archiver import pipeline
    from archiver.config import load_config

    arch, config = archive
    folder = arch / "warcs" / CHECKPOINT_DIR
    first = {p.name: p.read_bytes() for p in folder.glob("*.json")}

    def stop(*args):
        raise KeyboardInterrupt  # killed right after the commit

    monkeypatch.setattr(pipeline, "publish_copy", stop)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_archive(load_config(config))
    monkeypatch.undo()
    conn = sqlite3.connect(arch / "archive.db")
    names = [row[0] for row in conn.execute("SELECT file_name FROM checkpoints ORDER BY id")]
    conn.close()
    assert len(names) == 2 and not (folder / names[1]).exists()
    staged = (folder / names[1]).with_suffix(".json.tmp").read_bytes()
    found = problems(arch)
    assert found == [
        f"note: checkpoint file {names[1]}: not moved into place (stopped after its commit); "
        "the next run or checkpoint restores it"
    ]

    result = CliRunner().invoke(app, ["run", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert f"checkpoint copy {names[1]} was missing" in result.output
    assert (folder / names[1]).read_bytes() == staged
    assert all((folder / name).read_bytes() == data for name, data in first.items())
    assert problems(arch) == []


def test_only_the_newest_checkpoint_may_be_staged_and_only_as_signed(archive):
    """Every checkpoint restores staged copies first, so an earlier copy "staged" is someone's doing: an empty
    or other file in its place is an error, never the note a stopped checkpoint gets."""
    arch, config = archive
    folder = arch / "warcs" / CHECKPOINT_DIR
    assert CliRunner().invoke(app, ["checkpoint", "--config", str(config)]).exit_code == 0
    names = sorted(p.name for p in folder.glob("*.json"))
    earlier, newest = folder / names[0], folder / names[-1]
    earlier.unlink()
    earlier.with_suffix(".json.tmp").write_text("")
    newest.rename(newest.with_suffix(".json.tmp"))
    newest.with_suffix(".json.tmp").write_text("{}")
    assert problems(arch) == [
        f"checkpoint file {earlier.name}: missing beside the WARCs ({earlier.stem}.json.tmp staged, though later "
        "checkpoints were made)",
        f"checkpoint file {newest.name}: missing beside the WARCs ({newest.stem}.json.tmp staged beside it holding "
        "something else)",
    ]


def test_a_checkpoint_staged_but_never_committed_is_removed_by_the_next_run(archive, monkeypatch):
    """A stop between staging the copy and committing the row rolls the checkpoint back: its staged copy signs
    a head the archive never held. Verify ignores it; the next run removes it and says so."""
    from archiver import pipeline
    from archiver.config import load_config
    from archiver.store import Store

    arch, config = archive
    folder = arch / "warcs" / CHECKPOINT_DIR
    before = sorted(p.name for p in folder.iterdir())

    def stop(*args):
        raise KeyboardInterrupt  # killed after staging, before the row is appended

    monkeypatch.setattr(Store, "append_checkpoint", stop)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_archive(load_config(config))
    monkeypatch.undo()
    (stale,) = [p for p in folder.iterdir() if p.name not in before]
    assert stale.name.endswith(".json.tmp") and problems(arch) == []

    result = CliRunner().invoke(app, ["run", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert f"removed {stale.name}: a checkpoint a stopped run staged but never committed" in result.output
    assert not any(p.name.endswith(".tmp") for p in folder.iterdir())
    assert problems(arch) == []


def test_a_missing_private_key_stops_runs_and_checkpoints_instead_of_making_a_new_one(archive):
    """After a restore from a backup (which never holds the private key), a new key made quietly would change
    the archive's signing identity: every earlier checkpoint would then read as signed with another key."""
    from archiver.checkpoints import key_fingerprint

    arch, config = archive
    public = (arch / "keys" / PUBLIC_KEY).read_bytes()
    (arch / "keys" / PRIVATE_KEY).unlink()
    conn = sqlite3.connect(arch / "archive.db")
    before = conn.execute("SELECT count(*) FROM ledger").fetchone()[0]
    conn.close()
    fingerprint = key_fingerprint(load_public_key(arch / "keys" / PUBLIC_KEY))
    for command in (["run", "--quiet"], ["checkpoint"]):
        result = CliRunner().invoke(app, [*command, "--config", str(config)])
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and str(arch / "keys" / PRIVATE_KEY) in result.output
        assert f"signed with key {fingerprint}" in result.output and "put that key back" in result.output
    assert not (arch / "keys" / PRIVATE_KEY).exists() and (arch / "keys" / PUBLIC_KEY).read_bytes() == public
    conn = sqlite3.connect(arch / "archive.db")
    assert conn.execute("SELECT count(*) FROM ledger").fetchone()[0] == before  # nothing appended
    conn.close()
    assert problems(arch) == []


def test_a_checkpoint_signs_the_ledger_trees_root(archive):
    """The root is RFC 9162's over the ledger's row digests, recomputed here from its definition."""
    arch, _ = archive
    conn = sqlite3.connect(arch / "archive.db")
    statement = json.loads(conn.execute("SELECT statement FROM checkpoints").fetchone()[0])
    size = statement["ledger_tree"]["size"]
    leaves = [
        bytes.fromhex(r[0]) for r in conn.execute("SELECT row_sha256 FROM ledger WHERE seq <= ? ORDER BY seq", (size,))
    ]
    conn.close()
    assert size == statement["ledger"]["seq"] == len(leaves)
    assert statement["ledger_tree"]["root"] == mth(leaves).hex()


def test_a_tree_root_re_signed_with_the_archives_own_key_is_caught(archive):
    """Whoever holds the key can sign anything; what they sign must still be the ledger's own tree."""
    arch, _ = archive
    conn = sqlite3.connect(arch / "archive.db")
    statement = conn.execute("SELECT statement FROM checkpoints").fetchone()[0]
    conn.close()
    parsed = json.loads(statement)
    parsed["ledger_tree"]["root"] = "ab" * 32
    forged = canonical_json(parsed).decode()
    signature = base64.b64encode(load_private_key(arch / "keys").sign(forged.encode())).decode()
    behind_the_back(arch / "archive.db", f"UPDATE checkpoints SET statement = '{forged}', signature = '{signature}'")
    found = problems(arch)
    size = parsed["ledger_tree"]["size"]
    assert any(
        p.startswith(f"checkpoints id=1: ledger tree of {size} entries: root expected {'ab' * 32} as signed")
        for p in found
    ), found


def test_a_public_key_lost_beside_its_private_key_is_written_again_by_the_next_run(archive):
    """A first run of an earlier version killed between its two key files left the private key alone: the next
    run writes the public key again from it, says so, and the archive verifies."""
    arch, config = archive
    public = (arch / "keys" / PUBLIC_KEY).read_bytes()
    (arch / "keys" / PUBLIC_KEY).unlink()
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"the public key {arch / 'keys' / PUBLIC_KEY} was missing: wrote it again" in result.output
    assert (arch / "keys" / PUBLIC_KEY).read_bytes() == public
    assert problems(arch) == []
    # Written again only from the key that signed the checkpoints: from another, the run stops and says so.
    (arch / "keys" / PUBLIC_KEY).unlink()
    swapped = Ed25519PrivateKey.generate()
    pem = swapped.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, NO_ENCRYPTION)
    (arch / "keys" / PRIVATE_KEY).write_bytes(pem)
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "is not the key that signed the archive's checkpoints (SHA256:" in result.output
    assert not (arch / "keys" / PUBLIC_KEY).exists()


def test_a_first_run_stopped_between_the_key_files_never_leaves_a_private_key_alone(tmp_path, monkeypatch):
    from archiver import checkpoints

    written: list[str] = []
    real = checkpoints._write_whole

    def stop_after_first(path, data, mode, replace):
        if written:
            raise KeyboardInterrupt  # killed between the two files
        written.append(path.name)
        real(path, data, mode, replace)

    monkeypatch.setattr(checkpoints, "_write_whole", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.ensure_signing_key(tmp_path / "keys")
    assert written == [PUBLIC_KEY] and sorted(p.name for p in (tmp_path / "keys").iterdir()) == [PUBLIC_KEY]
    monkeypatch.setattr(checkpoints, "_write_whole", real)
    path, created = checkpoints.ensure_signing_key(tmp_path / "keys")  # the next run makes the pair again
    assert created and path.stat().st_mode & 0o777 == 0o600
    key = load_private_key(tmp_path / "keys")
    assert load_public_key(tmp_path / "keys" / PUBLIC_KEY).public_bytes_raw() == key.public_key().public_bytes_raw()
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [PRIVATE_KEY, PUBLIC_KEY]  # no temporary left
