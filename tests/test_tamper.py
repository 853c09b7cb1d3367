"""The tamper matrix, each case on a real archive made by a run: every change is caught and named."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from archiver.checkpoints import PUBLIC_KEY, sign_checkpoint
from archiver.cli import app
from archiver.demo.mastodon_server import SampleMastodonServer
from archiver.verify import verify_archive

from .test_crash import TOKEN, config, small_clinic
from .test_ledger import behind_the_back


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tamper")
    with SampleMastodonServer(small_clinic(datetime.now(UTC)), TOKEN, rate_limit=1_000_000) as server:
        cfg = config(directory, server.base_url)
        for _ in range(2):  # two runs: two WARC files, two checkpoints
            result = CliRunner().invoke(app, ["run", "--config", str(cfg), "-q"], env={"CRASH_TOKEN": TOKEN})
            assert result.exit_code == 0, result.output
    return directory / "arch"


def problems(arch: Path) -> list[str]:
    key = arch / "keys" / PUBLIC_KEY
    return [str(p) for p in verify_archive(arch / "archive.db", arch / "warcs", key if key.exists() else None)]


def warcs(arch: Path) -> list[Path]:
    """The WARC files in capture order: by name only within a run, since two runs started in one second sort
    by their random suffix."""
    order: dict[str, int] = {}
    with sqlite3.connect(arch / "archive.db") as conn:
        for i, (name,) in enumerate(conn.execute("SELECT name FROM warc_files ORDER BY rowid")):
            order.setdefault(name, i)  # a tampered table may hold a name twice
    return sorted((arch / "warcs").glob("*.warc.gz"), key=lambda path: (order.get(path.name, len(order)), path.name))


def flip_byte(arch: Path) -> str:
    path = warcs(arch)[0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return f"WARC {path.name}: sha256 expected"


def delete_warc(arch: Path) -> str:
    path = warcs(arch)[-1]
    path.unlink()
    return f"WARC {path.name}: recorded in warc_files but missing on disk"


def add_unknown_warc(arch: Path) -> str:
    stranger = arch / "warcs" / "archiver-20260101000000-20260101T000000Z-abcdef-00001.warc.gz"
    shutil.copy(warcs(arch)[0], stranger)
    return f"WARC {stranger.name}: on disk but not recorded in warc_files (unknown file)"


def update_row(arch: Path) -> str:
    behind_the_back(arch / "archive.db", "UPDATE item_versions SET text = 'nothing to see' WHERE id = 5")
    return "item_versions id=5: row changed since ledger seq"


def delete_row(arch: Path) -> str:
    behind_the_back(arch / "archive.db", "DELETE FROM events WHERE id = 7")
    return "events id=7: row entered at ledger seq"


def insert_behind_ledger(arch: Path) -> str:
    behind_the_back(
        arch / "archive.db",
        "INSERT INTO events (item_key, event, run_id, observed_at, evidence) "
        "SELECT item_key, 'deleted', run_id, captured_at, '{}' FROM item_versions WHERE id = 3",
    )
    return "row is not in the ledger (inserted behind the archiver's back)"


def edit_checkpoint(arch: Path) -> str:
    behind_the_back(
        arch / "archive.db", "UPDATE checkpoints SET statement = replace(statement, 'seq', 'SEQ') WHERE id = 1"
    )
    return "checkpoints id=1: signature does not match the statement"


def checkpoint_with_another_key(arch: Path) -> str:
    conn = sqlite3.connect(arch / "archive.db")
    conn.row_factory = sqlite3.Row
    forged = sign_checkpoint(conn, Ed25519PrivateKey.generate(), arch / "warcs")
    conn.close()
    behind_the_back(
        arch / "archive.db",
        "INSERT INTO checkpoints (created_at, ledger_seq, ledger_hash, statement, public_key, signature, file_name) "
        f"VALUES ('t', {forged.ledger_seq}, '{forged.ledger_hash}', '{forged.statement}', '{forged.public_key}', "
        f"'{forged.signature}', '{forged.file_name}')",
    )
    return "signed with another key"


def truncate_ledger(arch: Path) -> str:
    conn = sqlite3.connect(arch / "archive.db")
    first_checkpoint_seq = conn.execute("SELECT min(ledger_seq) FROM checkpoints").fetchone()[0]
    conn.close()
    # Cut the ledger back to before the second run, with the rows it covered: a consistent-looking archive.
    statements = []
    conn = sqlite3.connect(arch / "archive.db")
    for table, key in conn.execute(
        "SELECT table_name, row_key FROM ledger WHERE seq > ?", (first_checkpoint_seq + 1,)
    ).fetchall():
        column = {"runs": "id", "run_results": "run_id", "warc_files": "name", "media_files": "url"}.get(table, "id")
        statements.append(f"DELETE FROM {table} WHERE CAST({column} AS TEXT) = '{key}'")
    conn.close()
    statements.append(f"DELETE FROM ledger WHERE seq > {first_checkpoint_seq + 1}")
    behind_the_back(arch / "archive.db", *statements)
    return "ledger truncated"


def second_row_for_an_edited_warc(arch: Path) -> str:
    """The table rebuilt without its primary key, a signed WARC lengthened, and a second warc_files row under
    the same name with the new digest: the ledger entered the name once, so a check by key saw nothing."""
    path = warcs(arch)[0]
    with path.open("ab") as fh:
        fh.write(gzip.compress(b"WARC/1.1\r\nWARC-Type: resource\r\n\r\n"))
    data = path.read_bytes()
    behind_the_back(
        arch / "archive.db",
        "CREATE TABLE warc_files_copy AS SELECT * FROM warc_files",
        "DROP TABLE warc_files",
        "CREATE TABLE warc_files (name TEXT, run_id TEXT NOT NULL REFERENCES runs(id), sha256 TEXT NOT NULL, "
        "size INTEGER NOT NULL, records INTEGER NOT NULL, closed_at TEXT NOT NULL)",
        "INSERT INTO warc_files SELECT * FROM warc_files_copy ORDER BY rowid",
        "DROP TABLE warc_files_copy",
        f"INSERT INTO warc_files SELECT name, run_id, '{hashlib.sha256(data).hexdigest()}', {len(data)}, records, "
        f"closed_at FROM warc_files WHERE name = '{path.name}'",
    )
    return f"warc_files name={path.name}: 2 rows hold this key, the ledger entered one"


def redefine_a_view(arch: Path) -> str:
    behind_the_back(
        arch / "archive.db",
        "DROP VIEW flag_queue",
        "CREATE VIEW flag_queue AS SELECT * FROM flags WHERE 0",
    )
    return "view flag_queue: definition changed"


def neuter_a_trigger(arch: Path) -> str:
    conn = sqlite3.connect(arch / "archive.db")
    conn.execute("DROP TRIGGER item_versions_append_only_update")
    conn.execute("CREATE TRIGGER item_versions_append_only_update BEFORE UPDATE ON item_versions BEGIN SELECT 1; END")
    conn.commit()
    conn.close()
    return "trigger item_versions_append_only_update: definition changed"


def take_versions_out_of_search(arch: Path, words: str | None = None) -> str:
    """Version 4's words taken out of the search index (FTS5's 'delete' command); with `words`, those indexed
    under its id instead."""
    conn = sqlite3.connect(arch / "archive.db")
    row = conn.execute("SELECT id, text, author_handle, author_name FROM item_versions WHERE id = 4").fetchone()
    conn.execute(
        "INSERT INTO item_versions_fts (item_versions_fts, rowid, text, author_handle, author_name) "
        "VALUES ('delete', ?, ?, ?, ?)",
        row,
    )
    if words is not None:
        conn.execute(
            "INSERT INTO item_versions_fts (rowid, text, author_handle, author_name) VALUES (?, ?, ?, ?)",
            (row[0], words, row[2], row[3]),
        )
    conn.commit()
    conn.close()
    return "item_versions id=4: not in the search index"


def index_a_version_with_other_text(arch: Path) -> str:
    """Its `_docsize` row stays, so only the words tell: search misses what the version says."""
    take_versions_out_of_search(arch, "x")
    return "item_versions id=4: indexed with other text than the row holds"


def blob_in_a_row(arch: Path) -> str:
    behind_the_back(arch / "archive.db", "UPDATE item_versions SET text = X'DEADBEEF' WHERE id = 6")
    return "item_versions id=6: row changed since ledger seq"


def invalid_utf8_in_a_row(arch: Path) -> str:
    behind_the_back(arch / "archive.db", "UPDATE item_versions SET text = CAST(X'C328' AS TEXT) WHERE id = 6")
    return "item_versions id=6: row changed since ledger seq"


def delete_the_public_key(arch: Path) -> str:
    (arch / "keys" / PUBLIC_KEY).unlink()
    return "public key: none to check the checkpoints' signatures against"


CASES = [
    flip_byte,
    delete_warc,
    add_unknown_warc,
    update_row,
    delete_row,
    insert_behind_ledger,
    edit_checkpoint,
    checkpoint_with_another_key,
    truncate_ledger,
    second_row_for_an_edited_warc,
    redefine_a_view,
    neuter_a_trigger,
    take_versions_out_of_search,
    index_a_version_with_other_text,
    blob_in_a_row,
    invalid_utf8_in_a_row,
    delete_the_public_key,
]


def test_the_untouched_archive_verifies(original):
    assert problems(original) == []


@pytest.mark.parametrize("tamper", CASES, ids=lambda f: f.__name__)
def test_tampering_is_caught_and_named(original, tmp_path, tamper):
    arch = tmp_path / "arch"
    shutil.copytree(original, arch)
    expected = tamper(arch)
    found = problems(arch)
    assert any(expected in p for p in found), found


def test_a_signed_warc_changed_under_a_second_row_is_caught_three_ways(original, tmp_path):
    """The file against what the checkpoint signed, the table's schema, and the key entered once."""
    arch = tmp_path / "arch"
    shutil.copytree(original, arch)
    duplicate = second_row_for_an_edited_warc(arch)
    found = problems(arch)
    name = warcs(arch)[0].name
    assert any(duplicate in p for p in found), found
    assert any(p.startswith(f"WARC {name}: sha256 expected") and "as checkpoints id=1 signed" in p for p in found)
    assert any(p.startswith("table warc_files: definition changed") for p in found), found


def test_a_whole_last_run_cut_away_is_caught_by_checkpoint_copies_kept_elsewhere(original, tmp_path):
    """Rows, ledger entries, WARC and checkpoint of the last run all removed: what remains is consistent and
    signed, so the archive alone cannot show the cut. The checkpoint copies kept elsewhere do."""
    arch, kept = tmp_path / "arch", tmp_path / "worm"
    shutil.copytree(original, arch)
    shutil.copytree(arch / "warcs" / "checkpoints", kept)
    conn = sqlite3.connect(arch / "archive.db")
    triggers = [r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE name LIKE '%append_only%'")]
    conn.close()
    truncate_ledger(arch)
    conn = sqlite3.connect(arch / "archive.db")
    for trigger in triggers:  # put back as they were: the schema check sees nothing
        conn.execute(trigger)
    conn.commit()
    conn.close()
    last = sorted((arch / "warcs" / "checkpoints").glob("checkpoint-*.json"))[-1]
    last.unlink()
    warcs(arch)[-1].unlink()
    assert [p for p in problems(arch) if not p.startswith("note")] == []  # the limit of a self-contained check
    result = CliRunner().invoke(app, ["verify", "--archive-dir", str(arch), "--checkpoints", str(kept)])
    assert result.exit_code == 1
    assert f"kept checkpoint {kept / last.name}: signed ledger seq" in result.output
    assert "which the archive no longer holds (ledger cut back)" in result.output
    untouched = CliRunner().invoke(app, ["verify", "--archive-dir", str(original), "--checkpoints", str(kept)])
    assert untouched.exit_code == 0, untouched.output
    missing = CliRunner().invoke(app, ["verify", "--archive-dir", str(original), "--checkpoints", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "--checkpoints" in missing.output


def test_an_access_log_rewritten_after_a_checkpoint_signed_it_is_caught(original, tmp_path):
    """The access log (who looked at PHI) has its own chain, which anyone can recompute after removing a row.
    Each checkpoint signs the log's head, so a log rewritten before it is found; later rows add to it."""
    from archiver.access_log import TABLE, Access, AccessLog, access_log_path
    from archiver.ledger import GENESIS, canonical_row_bytes, chain_hash

    root = tmp_path / "root"
    shutil.copytree(original.parent, root)
    arch = root / "arch"
    log = AccessLog(access_log_path(arch / "archive.db"))
    for query in ("q=flu", "q=Raman", "q=MRN", "q=results"):
        log.append(Access("ivan", "investigator", "127.0.0.1", "GET", "/-/search", query, 200, 3))
    log.close()
    result = CliRunner().invoke(app, ["checkpoint", "--config", str(root / "archiver.toml")])
    assert result.exit_code == 0, result.output
    log = AccessLog(access_log_path(arch / "archive.db"))
    log.append(Access("ivan", "investigator", "127.0.0.1", "GET", "/-/search", "q=later", 200, 1))
    log.close()
    assert problems(arch) == []
    # Remove the search for a patient's name, renumber, recompute the chain: the log alone verifies again.
    conn = sqlite3.connect(access_log_path(arch / "archive.db"))
    conn.execute(f"DROP TRIGGER {TABLE}_append_only_update")
    conn.execute(f"DROP TRIGGER {TABLE}_append_only_delete")
    rows = conn.execute(f"SELECT * FROM {TABLE} WHERE query != 'q=Raman' ORDER BY seq").fetchall()
    names = [d[0] for d in conn.execute(f"SELECT * FROM {TABLE}").description]
    conn.execute(f"DELETE FROM {TABLE}")
    prev = GENESIS
    for seq, found in enumerate(rows, start=1):
        row = dict(zip(names, found, strict=True), seq=seq)
        chained = {k: row[k] for k in names if k not in ("prev_hash", "hash")}
        row["prev_hash"], row["hash"] = prev, chain_hash(prev, canonical_row_bytes(TABLE, chained))
        prev = row["hash"]
        conn.execute(f"INSERT INTO {TABLE} VALUES ({', '.join('?' * len(names))})", [row[n] for n in names])
    conn.commit()
    conn.close()
    found = problems(arch)
    assert any("access-log.db seq 4: hash expected" in p and "as checkpoints id=" in p for p in found), found
    # `archiver access-log verify` finds it too: the chain alone verifies, the signed heads do not.
    result = CliRunner().invoke(app, ["access-log", "verify", "--config", str(root / "archiver.toml")])
    assert result.exit_code == 1 and "seq 4: hash expected" in result.output, result.output


def test_a_hundred_problems_of_a_kind_are_named_and_the_rest_counted(original, tmp_path):
    arch = tmp_path / "arch"
    shutil.copytree(original, arch)
    behind_the_back(
        arch / "archive.db",
        *(
            f"INSERT INTO cursors (account, name, value, run_id, recorded_at) "
            f"SELECT account, name || '-{n}', value, run_id, recorded_at FROM cursors LIMIT 1"
            for n in range(150)
        ),
    )
    found = problems(arch)
    assert sum("row is not in the ledger" in p for p in found) == 100
    assert "cursors: and 50 more rows not in the ledger" in found


def test_an_access_log_row_changed_in_place_is_caught_by_verify(original, tmp_path):
    """The other way round: a row changed with its hashes left alone keeps every signed head, but breaks the
    log's own chain, which `archiver verify` recomputes too."""
    from archiver.access_log import TABLE, Access, AccessLog, access_log_path

    root = tmp_path / "root"
    shutil.copytree(original.parent, root)
    arch = root / "arch"
    log = AccessLog(access_log_path(arch / "archive.db"))
    for who in ("erin", "ivan", "erin"):
        log.append(Access(who, "investigator", "127.0.0.1", "GET", "/archive/direct_messages", "", 200, 3))
    log.close()
    assert CliRunner().invoke(app, ["checkpoint", "--config", str(root / "archiver.toml")]).exit_code == 0
    conn = sqlite3.connect(access_log_path(arch / "archive.db"))
    conn.execute(f"DROP TRIGGER {TABLE}_append_only_update")
    conn.execute(f"UPDATE {TABLE} SET actor = 'nobody', path = '/about' WHERE seq = 2")
    conn.commit()
    conn.close()
    found = problems(arch)
    assert any("access-log.db seq 2: hash" in p and "does not match the row" in p for p in found), found


def test_the_ledger_checked_in_a_second_process_finds_the_same(original, tmp_path, monkeypatch):
    """Large archives recompute the chain in a second process beside the WARC check: same problems, same
    order, on an archive tampered in both (a row changed, a WARC byte flipped, a row deleted). If that
    process dies, the chain is checked in the first."""
    from concurrent.futures import ProcessPoolExecutor

    from archiver import verify

    arch = tmp_path / "arch"
    shutil.copytree(original, arch)
    expected = [update_row(arch), flip_byte(arch), delete_row(arch)]
    in_process = problems(arch)
    assert all(any(e in p for p in in_process) for e in expected), in_process

    pools: list[ProcessPoolExecutor] = []

    def counted_pool(*args, **kwargs) -> ProcessPoolExecutor:
        pools.append(ProcessPoolExecutor(*args, **kwargs))
        return pools[-1]

    monkeypatch.setattr(verify, "PARALLEL_LEDGER_FROM", 1)
    monkeypatch.setattr(verify, "ProcessPoolExecutor", counted_pool)
    assert problems(arch) == in_process
    monkeypatch.setattr(verify, "ledger_problems", die)
    assert problems(arch) == in_process
    assert len(pools) == 2


def die(database: Path) -> list:
    os._exit(9)  # the second process killed mid-check


def test_verify_while_runs_go_on_reports_no_tampering(tmp_path, monkeypatch):
    """Verify reads one snapshot of the database; files written after it by a run that was going, or started,
    meanwhile are notes, never tampering. Here run 2 is half way (its open WARC has committed rows) when
    verify begins and finishes as verify reads the checkpoints; run 3 starts and finishes during the WARC
    check. Before, run 3's WARC was reported as an unknown file."""
    import threading

    from archiver import pipeline
    from archiver.config import load_config

    now = datetime.now(UTC)
    state = small_clinic(now)
    clinic_id = next(a for a, account in state.accounts.items() if account["username"] == "riverside")
    monkeypatch.setenv("CRASH_TOKEN", TOKEN)
    monkeypatch.setattr(pipeline, "COMMIT_EVERY", 5)
    with SampleMastodonServer(state, TOKEN, rate_limit=1_000_000) as server:
        cfg = load_config(config(tmp_path, server.base_url))
        arch = cfg.archive.dir
        assert pipeline.run_archive(cfg).ok
        for i in range(12):
            state.add_status(clinic_id, f"New post {i} during verify", created_at=now)

        paused, resume, calls = threading.Event(), threading.Event(), []
        run_account = pipeline.run_account

        def pausing(*args, **kwargs):
            result = run_account(*args, **kwargs)
            calls.append(1)
            if len(calls) == 1:  # run 2, its captures made: wait (the run is still going)
                paused.set()
                assert resume.wait(60)
            return result

        monkeypatch.setattr(pipeline, "run_account", pausing)
        second = threading.Thread(target=pipeline.run_archive, args=(cfg,))
        second.start()
        assert paused.wait(60)
        for i in range(3):
            state.add_status(clinic_id, f"Newer post {i}", created_at=now)
        steps: list[str] = []

        def on_step(step: str, done: int, total: int) -> None:
            steps.append(step)
            if step == "checkpoints":
                resume.set()
                second.join(60)  # run 2 finishes: its WARC recorded, its checkpoint written
            elif step == "WARC files" and total and steps.count("WARC files") == 2:
                assert pipeline.run_archive(cfg).ok  # run 3, from start to end

        found = verify_archive(arch / "archive.db", arch / "warcs", arch / "keys" / PUBLIC_KEY, on_step)
        after = problems(arch)
    assert not second.is_alive()
    assert [str(p) for p in found if p.severity == "error"] == []
    notes = [str(p) for p in found]
    assert any("which was still going when verify began" in n for n in notes), notes
    assert any("which started after verify began" in n for n in notes), notes
    assert any(n.startswith("note: checkpoint file") and "after verify began" in n for n in notes), notes
    assert after == []  # verified again once the runs are done: all of it checks


def test_verify_reads_an_archive_folder_it_may_not_write(original):
    """An auditor's account, a read-only mount or a WORM copy: verify cannot make SQLite's WAL index there, and
    needs none (nothing writes), so it reads the database as it is."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="archiver-readonly-", dir="/tmp"))  # /tmp: other users may enter
    try:
        copy = folder / "arch"
        shutil.copytree(original, copy)
        for extra in ("archive.db-wal", "archive.db-shm"):
            (copy / extra).unlink(missing_ok=True)
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        command = [sys.executable, "-m", "archiver", "verify", "--archive-dir", str(copy)]
        if os.geteuid() == 0:  # root writes anywhere: verify as nobody instead
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HOME": str(folder)})
        assert done.returncode == 0, done.stdout + done.stderr
        assert "archive verifies" in done.stdout
        assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in original.iterdir() if "-" not in p.name)
    finally:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o700)
        shutil.rmtree(folder)
