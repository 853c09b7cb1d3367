"""Checkpoint statements of type 2 (schemas/ledger.md): each lists the WARC files closed since the previous
checkpoint, and the count and digest of them all, so a statement stays the size of its run's work (a type 1
statement listed every file: 148 KB a night after three years, review q). verify checks the listing against the
ledger, rebuild against the other copies; statements of type 1 an older archiver signed still read."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import archiver.checkpoints
from archiver.checkpoints import EVERY_FILE_TYPE, STATEMENT_TYPE, load_private_key
from archiver.cli import app
from archiver.demo.mastodon_server import SampleMastodonServer
from archiver.items import canonical_json

from .test_run_wedges import TOKEN, clinic, config, run, verifies


@pytest.fixture
def demo(tmp_path_factory, demo_template) -> Path:
    return demo_template.copy_to(tmp_path_factory.mktemp("demo") / "demo")


def statements(archive: Path) -> list[dict]:
    conn = sqlite3.connect(archive / "archive.db")
    try:
        return [json.loads(text) for (text,) in conn.execute("SELECT statement FROM checkpoints ORDER BY id")]
    finally:
        conn.close()


def signed_copy(archive: Path, statement: dict) -> dict[str, str]:
    """A checkpoint document signing `statement` with the archive's own key (as whoever holds it could)."""
    key = load_private_key(archive / "keys")
    text = canonical_json(statement).decode("utf-8")
    public = archiver.checkpoints.public_b64(key.public_key())
    signature = base64.b64encode(key.sign(text.encode("utf-8"))).decode("ascii")
    return {"statement": text, "signature": signature, "public_key": public}


def verify_lines(archive: Path, *more: str) -> tuple[int, str]:
    args = ["verify", "--archive-dir", str(archive), *more]
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


def test_each_statement_lists_what_was_closed_since_the_one_before_and_digests_the_folder(demo):
    archive = demo / "archive"
    signed = statements(archive)
    assert len(signed) >= 2 and {s["type"] for s in signed} == {STATEMENT_TYPE}
    added = [[f["name"] for f in s["warc_files"]["added"]] for s in signed]
    on_disk = sorted(p.name for p in (archive / "warcs").glob("*.warc.gz"))
    assert sorted(name for names in added for name in names) == on_disk  # each file listed once, by one statement
    assert all(names for names in added[:2])  # the demo's two runs each closed files
    assert [s["warc_files"]["since"] for s in signed] == [0] + [s["ledger"]["seq"] for s in signed[:-1]]
    # The documented check, with nothing but coreutils: the count and digest of the folder's files.
    folder_digest = subprocess.run(
        "sha256sum *.warc.gz | sha256sum",
        shell=True,
        cwd=archive / "warcs",
        env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    latest = signed[-1]["warc_files"]
    assert (latest["count"], latest["sha256"]) == (len(on_disk), folder_digest)
    assert verifies(archive) == []


def test_a_listing_signed_wrong_is_named_by_verify(demo, tmp_path):
    """A statement the archive's key signed whose listing is not what the ledger recorded: kept elsewhere (a copy
    made by a buggy or forged signer), verify names what differs; the archive's own statements are unaffected."""
    archive = demo / "archive"
    last = statements(archive)[-1]
    first = statements(archive)[0]
    dropped = first["warc_files"]["added"][0]
    wrong_added = {**first, "warc_files": {**first["warc_files"], "added": first["warc_files"]["added"][1:]}}
    wrong_count = {**last, "warc_files": {**last["warc_files"], "count": last["warc_files"]["count"] - 1}}
    kept = tmp_path / "kept"
    kept.mkdir()
    for statement in (wrong_added, wrong_count):
        name = f"checkpoint-{statement['ledger']['seq']:010d}.json"
        (kept / name).write_text(json.dumps(signed_copy(archive, statement)))
    code, output = verify_lines(archive, "--checkpoints", str(kept))
    assert code == 1, output
    first_where = f"kept checkpoint {kept}/checkpoint-{first['ledger']['seq']:010d}.json"
    assert (
        f"{first_where}: its WARC files added after ledger seq 0 are not those the ledger records up to seq "
        f"{first['ledger']['seq']}: only in the statement none; only in the archive {dropped['name']}"
    ) in output
    last_where = f"kept checkpoint {kept}/checkpoint-{last['ledger']['seq']:010d}.json"
    count = last["warc_files"]["count"]
    assert (
        f"{last_where}: signs {count - 1} WARC files of digest {last['warc_files']['sha256']}; the archive recorded "
        f"{count} by ledger seq {last['ledger']['seq']}, of digest {last['warc_files']['sha256']}"
    ) in output
    assert len([line for line in output.splitlines() if line.startswith("kept checkpoint")]) == 2, output
    assert verifies(archive) == []


def test_a_statement_of_a_later_type_is_said_to_need_a_later_archiver(demo, tmp_path):
    archive = demo / "archive"
    later = {**statements(archive)[-1], "type": "archiver-checkpoint/9"}
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / f"checkpoint-{later['ledger']['seq']:010d}.json").write_text(json.dumps(signed_copy(archive, later)))
    code, output = verify_lines(archive, "--checkpoints", str(kept))
    assert code == 1
    assert (
        "statement of type 'archiver-checkpoint/9', which this archiver does not know: check it with a newer one"
        in (output)
    )


def test_rebuild_needs_every_copy_as_each_lists_only_what_its_run_added(demo, tmp_path):
    """Beside the WARCs, without the database: a copy gone takes its files' signatures with it. The copy after it
    names it, and the latest copy's count and digest are not what the copies left list."""
    archive = demo / "archive"
    copies = sorted((archive / "warcs" / "checkpoints").glob("checkpoint-*.json"))
    good = CliRunner().invoke(app, ["rebuild", "--config", str(demo / "archiver.toml"), "--out", str(tmp_path / "a")])
    assert good.exit_code == 0, good.output
    shutil.move(copies[0], tmp_path / copies[0].name)
    (archive / "archive.db").rename(tmp_path / "away.db")  # rebuild from the WARCs and their copies alone
    result = CliRunner().invoke(app, ["rebuild", "--config", str(demo / "archiver.toml"), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1, result.output
    seq = int(copies[0].name[11:21])
    assert (
        f"checkpoint file {copies[1].name}: lists the WARC files recorded after ledger seq {seq}: {copies[0].name}, "
        "which lists those before, is missing or not trusted"
    ) in result.output
    assert f"checkpoint file {copies[-1].name}: signs " in result.output
    assert "the trusted copies beside it list" in result.output


@pytest.fixture
def server() -> Iterator[SampleMastodonServer]:
    with SampleMastodonServer(clinic(), TOKEN, rate_limit=1_000_000) as s:
        yield s


def every_file_statement(make):  # noqa: ANN001, ANN201 - make_statement and its stand-in
    """make_statement as archiver 0.2.0 made it: type 1, every closed WARC file listed."""

    def made(conn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        statement = make(conn, *args, **kwargs)
        rows = conn.execute("SELECT name, sha256, size FROM warc_files ORDER BY name").fetchall()
        listed = [{"name": name, "sha256": sha, "size": size} for name, sha, size in rows]
        return {**statement, "type": EVERY_FILE_TYPE, "warc_files": listed}

    return made


def test_statements_an_older_archiver_signed_still_read_and_the_next_one_follows_them(server, tmp_path, monkeypatch):
    cfg = config(tmp_path, server)
    with monkeypatch.context() as patch:
        patch.setattr(archiver.checkpoints, "make_statement", every_file_statement(archiver.checkpoints.make_statement))
        assert run(cfg).exit_code == 0
    arch = cfg.parent / "arch"
    older = statements(arch)
    assert [s["type"] for s in older] == [EVERY_FILE_TYPE] and older[0]["warc_files"]
    owner = next(a for a in server.state.accounts.values() if a["username"] == "riverside")
    server.state.add_status(owner["id"], "riverside post after the upgrade")
    assert run(cfg).exit_code == 0
    newer = statements(arch)[-1]
    assert newer["type"] == STATEMENT_TYPE and newer["warc_files"]["since"] == older[0]["ledger"]["seq"]
    assert newer["warc_files"]["added"] and newer["warc_files"]["count"] == len(older[0]["warc_files"]) + len(
        newer["warc_files"]["added"]
    )
    assert verifies(arch) == []
    rebuilt = CliRunner().invoke(app, ["rebuild", "--config", str(cfg), "--out", str(tmp_path / "rebuilt.db")])
    assert rebuilt.exit_code == 0, rebuilt.output
