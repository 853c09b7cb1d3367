"""The WARCs are the evidence: a database rebuilt from them alone equals the live one."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.rebuild import index_runs
from archiver.warc import WarcWriter

VERSION_COLUMNS = (
    "item_key, platform, account, kind, native_id, parent_key, thread_key, conversation_key, author_id, "
    "author_handle, author_name, created_at, edited_at, text, url, visibility, media, raw_json, content_sha256, "
    "run_id, captured_at, warc_file, warc_offset, warc_length, warc_record_id"
)
COMPARED = {
    "item_versions": f"SELECT {VERSION_COLUMNS} FROM item_versions ORDER BY id",
    "events": "SELECT item_key, event, version_id, run_id, observed_at, evidence FROM events ORDER BY id",
    "media_files": "SELECT url, sha256, size, content_type, run_id, captured_at, warc_file, warc_offset, "
    "warc_length, warc_record_id FROM media_files ORDER BY url",
    "items": "SELECT * FROM items ORDER BY item_key",
    "cursors": "SELECT account, name, value, run_id FROM cursors ORDER BY id",
    "accounts": "SELECT name, platform, api_base, platform_account_id, handle, first_seen_run FROM accounts",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_template):
    return demo_template.copy_to(tmp_path_factory.mktemp("demo") / "demo")


def test_rebuilt_database_equals_the_live_one(demo, tmp_path):
    out = tmp_path / "rebuilt.db"
    result = CliRunner().invoke(app, ["rebuild", "--config", str(demo / "archiver.toml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "from 2 run(s)" in result.output
    live = sqlite3.connect(demo / "archive" / "archive.db")
    rebuilt = sqlite3.connect(out)
    for name, query in COMPARED.items():
        expected = live.execute(query).fetchall()
        assert expected, f"the demo archive should have {name}"
        assert rebuilt.execute(query).fetchall() == expected, name
    # Deletions and edits are among what was rebuilt: their evidence is in the WARCs too.
    statuses = dict(rebuilt.execute("SELECT status, count(*) FROM items GROUP BY status").fetchall())
    assert statuses["deleted"] >= 10 and statuses["edited"] >= 9  # every platform deletes and edits


def test_rebuild_progress_counts_every_captured_response_of_each_run(demo, tmp_path):
    """The bar of each run goes from 0 to the responses it captured: every one of them is replayed."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    from archiver.config import load_config
    from archiver.progress import ReplayProgress
    from archiver.rebuild import rebuild_database

    screen = io.StringIO()
    with Progress(console=Console(file=screen, force_terminal=True, width=100)) as bars:
        progress = ReplayProgress(bars, echo=lambda line: None)
        runs = rebuild_database(
            load_config(demo / "archiver.toml"), tmp_path / "r.db", progress=progress, on_run=progress.run_started
        )
    assert runs == 2 and len(bars.tasks) == 2
    for task in bars.tasks:
        assert task.total and task.total > 100 and task.completed == task.total, task
    assert "replaying run" in screen.getvalue()


def test_a_torn_tail_left_by_a_killed_run_is_not_replayed_and_is_reported(demo, tmp_path):
    """Until the next run sets it aside, a killed run's last WARC ends in a record cut short. Rebuild replays
    the complete records only, says where the tail starts, and gives the same database (rows never point
    into a torn tail)."""
    import shutil

    copy = tmp_path / "demo"
    shutil.copytree(demo, copy)
    warcs = sorted((copy / "archive" / "warcs").glob("*.warc.gz"))
    size = warcs[-1].stat().st_size
    with open(warcs[-1], "ab") as fh:
        fh.write(warcs[0].read_bytes()[:300])  # the start of a record, cut short
    out = tmp_path / "rebuilt.db"
    result = CliRunner().invoke(app, ["rebuild", "--config", str(copy / "archiver.toml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"note: WARC {warcs[-1].name}: the record at offset {size} is incomplete (torn tail)" in result.output
    live = sqlite3.connect(copy / "archive" / "archive.db")
    rebuilt = sqlite3.connect(out)
    for name, query in COMPARED.items():
        assert rebuilt.execute(query).fetchall() == live.execute(query).fetchall(), name


def test_rebuild_refuses_to_overwrite(demo):
    live = demo / "archive" / "archive.db"
    result = CliRunner().invoke(app, ["rebuild", "--config", str(demo / "archiver.toml"), "--out", str(live)])
    assert result.exit_code == 2
    assert "already exists" in result.output


def test_an_interrupted_rebuild_leaves_no_database_behind(demo, tmp_path):
    """The new database is written under a temporary name and moved to --out only once complete: a rebuild
    that stops half way (here, on a run whose account the config no longer names) leaves nothing there."""
    config = tmp_path / "archiver.toml"
    text = (demo / "archiver.toml").read_text()
    assert 'name = "riverside-youtube"' in text  # replayed after the other platforms' accounts
    config.write_text(
        text.replace('name = "riverside-youtube"', 'name = "riverside-tube"').replace(
            'dir = "archive"', f'dir = "{demo / "archive"}"'
        )
    )
    out = tmp_path / "out" / "rebuilt.db"
    result = CliRunner().invoke(app, ["rebuild", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "'riverside-youtube', which the config no longer names" in result.output
    assert "replaying run" in result.output
    assert list(out.parent.iterdir()) == []  # neither the database nor its partial file, WAL or shared memory


def test_runs_in_the_same_second_are_replayed_in_capture_order(tmp_path):
    """File names carry seconds only (and a random run id): the warcinfo date decides the order."""
    second = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
    for run_id, micro in (("20261123T090000Z-ffffff", 1000), ("20261123T090000Z-000000", 900_000)):
        writer = WarcWriter(tmp_path, run_id, clock=lambda micro=micro: second.replace(microsecond=micro))
        assert writer.current_name  # opens the file: its warcinfo is written
        writer.close()
    names = sorted(p.name for p in tmp_path.glob("*.warc.gz"))
    assert "000000" in names[0]  # by name, the later run would come first
    assert [run.run_id for run in index_runs(tmp_path)] == ["20261123T090000Z-ffffff", "20261123T090000Z-000000"]
