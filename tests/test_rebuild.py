"""The WARCs are the evidence: a database rebuilt from them alone equals the live one."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from archiver.checkpoints import PUBLIC_KEY, fingerprint, raw_public
from archiver.cli import app
from archiver.connectors.base import REVISIONS_FIELD
from archiver.connectors.mastodon import MastodonConnector
from archiver.demo.mastodon_server import SampleMastodonServer
from archiver.rebuild import index_runs, joined_headers
from archiver.recovery import file_sha256, scan_warc
from archiver.replay_check import REPLAYED, compare_databases
from archiver.warc import WarcWriter

from .test_crash import TOKEN, small_clinic
from .test_crash import config as crash_config

# The rows a replay must give again, by what they are about and in append order: one definition, shared with
# `archiver verify --replay` (archiver/replay_check.py says which tables and columns, and why the rest are not).
COMPARED = {table.name: table.query() for table in REPLAYED}


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_template):
    return demo_template.copy_to(tmp_path_factory.mktemp("demo") / "demo")


def test_rebuilt_database_equals_the_live_one(demo, tmp_path):
    out = tmp_path / "rebuilt.db"
    result = CliRunner().invoke(app, ["rebuild", "--config", str(demo / "archiver.toml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == f"rebuilt {out} from 2 run(s) of WARC records"
    assert "note:" not in result.output and "INCOMPLETE" not in result.output
    live = sqlite3.connect(demo / "archive" / "archive.db")
    rebuilt = sqlite3.connect(out)
    for name, query in COMPARED.items():
        assert live.execute(query).fetchall(), f"the demo archive should have {name}"
    assert list(compare_databases(live, rebuilt)) == []
    # The demo captures one platform at a time: the row ids are equal too.
    for table in ("item_versions", "events"):
        ids = f"SELECT id, item_key FROM {table} ORDER BY id"
        assert rebuilt.execute(ids).fetchall() == live.execute(ids).fetchall(), table
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
        outcome = rebuild_database(
            load_config(demo / "archiver.toml"), tmp_path / "r.db", progress=progress, on_run=progress.run_started
        )
    assert outcome.runs == 2 and not outcome.problems and len(bars.tasks) == 2
    for task in bars.tasks:
        assert task.total and task.total > 100 and task.completed == task.total, task
    assert "replaying run" in screen.getvalue()


def rebuild(config: Path, out: Path) -> Result:
    return CliRunner().invoke(app, ["rebuild", "--config", str(config), "--out", str(out)])


def recorded_warcs(archive: Path) -> list[tuple[str, str, int]]:
    conn = sqlite3.connect(archive / "archive.db")
    try:
        return conn.execute("SELECT name, sha256, size FROM warc_files ORDER BY name").fetchall()
    finally:
        conn.close()


def flip_a_byte_in_the_first_recorded_warc(demo: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    """A copy of the demo with one byte flipped a third of the way into its first recorded WARC file:
    (the copy, the file, the sha256 the archive signed for it)."""
    copy = shutil.copytree(demo, tmp_path / "demo")
    name, signed_sha, size = recorded_warcs(copy / "archive")[0]
    path = copy / "archive" / "warcs" / name
    data = bytearray(path.read_bytes())
    data[size // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    return copy, path, signed_sha


def test_a_byte_flipped_in_a_recorded_warc_fails_the_rebuild_naming_file_and_offset(demo, tmp_path):
    """Damage inside a closed file the archive recorded and signed is not a torn tail: the rebuild names the
    file, the signed and the found digest and where the damage starts, and exits 1 (not a note and exit 0
    with a third of the item versions)."""
    copy, path, signed_sha = flip_a_byte_in_the_first_recorded_warc(demo, tmp_path)
    name = path.name
    damaged_at = scan_warc(path).complete_bytes  # the start of the record the flipped byte is in
    assert 0 < damaged_at <= path.stat().st_size // 3

    result = rebuild(copy / "archiver.toml", tmp_path / "rebuilt.db")
    assert result.exit_code == 1, result.output
    assert f"WARC {name}: sha256 expected {signed_sha} as signed in checkpoint-" in result.output
    assert f"found {file_sha256(path)}" in result.output
    assert f"WARC {name}: damaged record at offset {damaged_at} " in result.output
    assert "torn tail" not in result.output
    assert "replay failed" in result.output  # the accounts whose exchanges lie after the damage
    assert "INCOMPLETE" in result.output


def test_a_recorded_warc_deleted_fails_the_rebuild_naming_it(demo, tmp_path):
    copy = shutil.copytree(demo, tmp_path / "demo")
    name, signed_sha, _ = recorded_warcs(copy / "archive")[-1]
    (copy / "archive" / "warcs" / name).unlink()
    result = rebuild(copy / "archiver.toml", tmp_path / "rebuilt.db")
    assert result.exit_code == 1, result.output
    assert f"WARC {name}: sha256 expected {signed_sha} as signed in checkpoint-" in result.output
    assert "found no such file" in result.output
    assert "INCOMPLETE" in result.output


def test_a_tail_added_to_a_recorded_warc_is_not_taken_for_a_torn_tail(demo, tmp_path):
    """Bytes after the end of a closed, signed file: the file is not the one the archive recorded."""
    copy = shutil.copytree(demo, tmp_path / "demo")
    warcs = sorted((copy / "archive" / "warcs").glob("*.warc.gz"))
    size = warcs[-1].stat().st_size
    with open(warcs[-1], "ab") as fh:
        fh.write(warcs[0].read_bytes()[:300])  # the start of a record, cut short
    result = rebuild(copy / "archiver.toml", tmp_path / "rebuilt.db")
    assert result.exit_code == 1, result.output
    assert f"WARC {warcs[-1].name}: damaged record at offset {size} " in result.output
    assert f"WARC {warcs[-1].name}: sha256 expected" in result.output
    assert "torn tail" not in result.output


def test_a_checkpoint_statement_changed_without_the_key_is_not_trusted(demo, tmp_path):
    """A listing is believed only under the archive key's signature: a statement edited to match a changed
    file is named, and the file is still checked against what the database recorded. The statement after it,
    which lists only the files recorded since, names the copy it follows as no longer trusted."""
    copy, path, signed_sha = flip_a_byte_in_the_first_recorded_warc(demo, tmp_path)
    name = path.name
    found = file_sha256(path)
    edited = []
    copies = sorted((copy / "archive" / "warcs" / "checkpoints").glob("checkpoint-*.json"))
    for copy_path in copies:
        document = json.loads(copy_path.read_text())
        if signed_sha in document["statement"]:  # the statement that added the file: later ones list it no more
            document["statement"] = document["statement"].replace(signed_sha, found)
            copy_path.write_text(json.dumps(document))
            edited.append(copy_path.name)
    assert edited == [copies[0].name]
    result = rebuild(copy / "archiver.toml", tmp_path / "rebuilt.db")
    assert result.exit_code == 1, result.output
    assert f"checkpoint file {edited[0]}: signature does not match the statement" in result.output
    follows = f"checkpoint file {copies[1].name}: lists the WARC files recorded after ledger seq "
    assert f"{follows}{int(edited[0][11:21])}: {edited[0]}, which lists those before, is missing or not trusted" in (
        result.output
    )
    assert f"WARC {name}: sha256 expected {signed_sha} as recorded in warc_files" in result.output


def test_a_checkpoint_re_signed_with_another_key_is_not_trusted(demo, tmp_path):
    """Whoever changes a WARC and signs new statements with a key of their own is named: only the archive's
    key vouches for a listing."""
    copy, path, signed_sha = flip_a_byte_in_the_first_recorded_warc(demo, tmp_path)
    name = path.name
    forger = Ed25519PrivateKey.generate()
    forged_public = base64.b64encode(raw_public(forger.public_key())).decode("ascii")
    for copy_path in sorted((copy / "archive" / "warcs" / "checkpoints").glob("checkpoint-*.json")):
        statement = json.loads(copy_path.read_text())["statement"].replace(signed_sha, file_sha256(path))
        signature = base64.b64encode(forger.sign(statement.encode("utf-8"))).decode("ascii")
        copy_path.write_text(json.dumps({"statement": statement, "signature": signature, "public_key": forged_public}))
    result = rebuild(copy / "archiver.toml", tmp_path / "rebuilt.db")
    assert result.exit_code == 1, result.output
    assert f"signed with another key ({fingerprint(forged_public)})" in result.output
    assert f"WARC {name}: sha256 expected {signed_sha} as recorded in warc_files" in result.output


def test_the_public_key_kept_elsewhere_is_given_with_public_key(demo, tmp_path):
    """As for verify: without keys/archive-ed25519.pub no signature can be trusted, which is an error, and
    --public-key names the copy kept elsewhere."""
    copy = shutil.copytree(demo, tmp_path / "demo")
    kept = tmp_path / "kept.pub"
    (copy / "archive" / "keys" / PUBLIC_KEY).rename(kept)
    result = rebuild(copy / "archiver.toml", tmp_path / "rebuilt.db")
    assert result.exit_code == 1, result.output
    assert "public key: none to check the checkpoints' signatures against" in result.output
    out = tmp_path / "with-key.db"
    result = CliRunner().invoke(
        app, ["rebuild", "--config", str(copy / "archiver.toml"), "--out", str(out), "--public-key", str(kept)]
    )
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """An archive whose second run was SIGKILLed half way (as tests/test_crash.py kills runs): its WARC file
    is not recorded, and its run has no result. The server holds its answer to the 15th request until the
    run is dead, so the kill always lands there."""
    directory = tmp_path_factory.mktemp("killed")
    with SampleMastodonServer(small_clinic(datetime.now(UTC)), TOKEN, rate_limit=1_000_000) as server:
        cfg = crash_config(directory, server.base_url)
        result = CliRunner().invoke(app, ["run", "--config", str(cfg), "-q"], env={"CRASH_TOKEN": TOKEN})
        assert result.exit_code == 0, result.output
        kill_a_run_at_request(server, cfg, 15)
    return directory


def kill_a_run_at_request(server: SampleMastodonServer, cfg: Path, request: int) -> None:
    """Start `archiver run` in its own process and SIGKILL it while the server holds its `request`-th request
    (counted from now): the run is dead while that request is under way, so the kill always lands there."""
    reached, release = threading.Event(), threading.Event()
    begin = len(server.requests_log)

    def hold(path: str) -> None:
        if len(server.requests_log) - begin >= request:
            reached.set()
            release.wait(60)

    server.on_request = hold
    process = subprocess.Popen(
        [sys.executable, "-m", "archiver.cli", "run", "--config", str(cfg), "--quiet"],
        env={**os.environ, "CRASH_TOKEN": TOKEN, "ARCHIVER_COMMIT_EVERY": "7"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert reached.wait(60), f"the run never reached its request {request}"
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        release.set()
        server.on_request = None


def killed_run_warc(directory: Path) -> Path:
    recorded = {name for name, _, _ in recorded_warcs(directory / "arch")}
    [path] = [p for p in (directory / "arch" / "warcs").glob("*.warc.gz") if p.name not in recorded]
    return path


def test_a_torn_tail_of_a_killed_run_is_a_note_and_the_rebuild_succeeds(killed, tmp_path):
    """A killed run's last file may end in a record cut short (until the next run sets it aside): the rebuild
    replays its complete records, says where the tail starts, says that the account's replay stops where the
    run's commits stopped (run_progress), and exits 0. The rebuilt rows are the live ones."""
    copy = shutil.copytree(killed, tmp_path / "killed")
    path = killed_run_warc(copy)
    torn_at = scan_warc(path).complete_bytes  # the kill itself may have cut the last record
    with open(path, "ab") as fh:
        fh.write(sorted(path.parent.glob("*.warc.gz"))[0].read_bytes()[:300])  # the start of a record, cut short
    out = tmp_path / "rebuilt.db"
    result = rebuild(copy / "archiver.toml", out)
    assert result.exit_code == 0, result.output
    assert f"note: WARC {path.name}: the record at offset {torn_at} is incomplete (torn tail)" in result.output
    assert "note: account clinic of run " in result.output and "observation(s) it committed" in result.output
    assert "account clinic failed" not in result.output  # the note says it; no warning as if a capture failed
    assert "INCOMPLETE" not in result.output
    live = sqlite3.connect(copy / "arch" / "archive.db").execute(COMPARED["item_versions"]).fetchall()
    rebuilt = sqlite3.connect(out).execute(COMPARED["item_versions"]).fetchall()
    assert live and live == rebuilt


def test_damage_followed_by_readable_records_in_a_killed_run_file_is_an_error(killed, tmp_path):
    """Even in the file a killed run left, damage is a torn tail only at its end."""
    copy = shutil.copytree(killed, tmp_path / "killed")
    path = killed_run_warc(copy)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    damaged_at = scan_warc(path).complete_bytes
    result = rebuild(copy / "archiver.toml", tmp_path / "rebuilt.db")
    assert result.exit_code == 1, result.output
    assert f"WARC {path.name}: damaged record at offset {damaged_at} " in result.output
    assert "followed by a readable record at offset" in result.output
    assert "replay failed (replay of account clinic: no captured response for GET" in result.output
    assert f"after the damage in {path.name}" in result.output
    assert "torn tail" not in result.output and "note: account clinic" not in result.output


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


def test_each_runs_connector_revisions_are_read_from_its_warcinfo(tmp_path):
    """A run names its connectors' request revisions in its warcinfo; one of before revisions names none, so its
    connectors replay at revision 1; a malformed field is an error naming the file."""
    second = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
    infos = ({REVISIONS_FIELD: "mastodon=2, x=1"}, {}, {REVISIONS_FIELD: "mastodon=two"})
    for n, info in enumerate(infos):
        writer = WarcWriter(
            tmp_path, f"20261123T090000Z-00000{n}", info=info, clock=lambda n=n: second.replace(microsecond=n + 1)
        )
        assert writer.current_name  # opens the file: its warcinfo is written
        writer.close()
    problems: list = []
    assert [run.revisions for run in index_runs(tmp_path, problems.append)] == [{"mastodon": 2, "x": 1}, {}, {}]
    (problem,) = problems
    assert problem.severity == "error" and "Z-000002-" in problem.where and "'mastodon=two'" in problem.message


def test_a_capture_of_a_newer_connector_revision_fails_its_replay_saying_so(tmp_path, monkeypatch):
    """A run captured by newer software (a request revision this software does not know) cannot be replayed
    faithfully: the rebuild says which revision, not a missing response somewhere."""
    monkeypatch.setenv("CRASH_TOKEN", TOKEN)
    with SampleMastodonServer(small_clinic(datetime.now(UTC)), TOKEN, rate_limit=1_000_000) as server:
        cfg = crash_config(tmp_path / "newer", server.base_url)
        with monkeypatch.context() as newer:
            newer.setattr(MastodonConnector, "REQUEST_REVISION", MastodonConnector.REQUEST_REVISION + 1)
            result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"])
            assert result.exit_code == 0, result.output
    result = rebuild(cfg, tmp_path / "rebuilt.db")
    assert result.exit_code == 1
    newest = MastodonConnector.REQUEST_REVISION
    assert f"revisions 1 to {newest}, and the capture was made at revision {newest + 1}" in result.output
    assert "no captured response" not in result.output


class SplitLinkServer(SampleMastodonServer):
    """Sends its paging links as two `Link` fields, `next` then `prev`, as RFC 8288 allows (a platform or a
    proxy in front of it may): http.server writes a value as given, so the CRLF starts the second field."""

    def _link(self, path, query, page):
        joined = super()._link(path, query, page)
        if joined:
            next_link, prev_link = joined["Link"].split(", <", 1)
            joined["Link"] = f"{next_link}\r\nLink: <{prev_link}"
        return joined


def test_link_fields_sent_twice_are_read_on_replay_as_the_live_session_read_them(tmp_path, monkeypatch):
    headers = joined_headers([("Link", "<a>; rel=next"), ("X", "1"), ("link", "<b>; rel=prev")])
    assert len(headers) == 2 and headers["LINK"] == "<a>; rel=next, <b>; rel=prev" and headers["x"] == "1"
    monkeypatch.setenv("CRASH_TOKEN", TOKEN)
    state = small_clinic(datetime.now(UTC))
    (clinic,) = [a for a in state.accounts.values() if a["username"] == "riverside"]
    for i in range(20):  # 50 posts: the listing's pages hold 40
        state.add_status(clinic["id"], f"Notice {i}", created_at=datetime.now(UTC) - timedelta(days=40 + i))
    with SplitLinkServer(state, TOKEN, rate_limit=1_000_000) as server:
        cfg = crash_config(tmp_path / "split", server.base_url)
        result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"])
        assert result.exit_code == 0, result.output
    result = rebuild(cfg, tmp_path / "rebuilt.db")
    assert result.exit_code == 0, result.output
    live, rebuilt = (
        sqlite3.connect(tmp_path / "split" / "arch" / "archive.db"),
        sqlite3.connect(tmp_path / "rebuilt.db"),
    )
    count = "SELECT count(*) FROM item_versions"
    assert rebuilt.execute(count).fetchone() == live.execute(count).fetchone() > (100,)  # pages past the first
    assert list(compare_databases(live, rebuilt)) == []


def test_a_replay_asks_as_the_run_asked_though_the_config_changed_since(tmp_path, monkeypatch):
    """Direct messages captured, then turned off, and the platform's address changed (X's api.twitter.com became
    api.x.com; a Graph version is upgraded the same way): the run recorded what shaped its requests in its
    warcinfo, and the replay asks as it did. A run of before that field, replayed as configured now, never asks
    for what it captured: an error, never a quiet success."""
    monkeypatch.setenv("CRASH_TOKEN", TOKEN)
    with SampleMastodonServer(small_clinic(datetime.now(UTC)), TOKEN, rate_limit=1_000_000) as server:
        cfg = crash_config(tmp_path / "dms", server.base_url)
        result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"])
        assert result.exit_code == 0, result.output
        captured_at = server.base_url
    cfg.write_text(cfg.read_text().replace(captured_at, "https://mastodon.example") + "direct_messages = false\n")
    result = rebuild(cfg, tmp_path / "rebuilt.db")
    assert result.exit_code == 0, result.output
    live = sqlite3.connect(tmp_path / "dms" / "arch" / "archive.db")
    assert list(compare_databases(live, sqlite3.connect(tmp_path / "rebuilt.db"))) == []
    assert live.execute("SELECT count(*) FROM item_versions WHERE kind = 'message'").fetchone()[0] > 0

    cfg.write_text(cfg.read_text().replace("https://mastodon.example", captured_at))
    monkeypatch.setattr("archiver.rebuild.ACCOUNT_REQUESTS_FIELD", "not-in-this-warcinfo")  # a run of before it
    result = rebuild(cfg, tmp_path / "older.db")
    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.output.splitlines() if "never asked for" in line]
    assert line.startswith("account clinic of run ") and "(the first: GET http://127.0.0.1:" in line
    assert "/api/v1/conversations" in line and "direct_messages" in line
    assert "INCOMPLETE" in result.output


def test_runs_are_replayed_in_the_order_the_live_database_appended_them_when_the_clock_stepped_back(
    tmp_path, monkeypatch
):
    """An NTP correction or a VM restored from a snapshot steps the clock back between two runs: the later
    run's files are dated earlier. The live database knows the runs' order; the dates would replay them
    backwards, and the replay of each would ask for what the other captured."""
    import archiver.pipeline as pipeline

    class SteppedBack(WarcWriter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "clock": lambda: datetime.now(UTC) - timedelta(hours=2)})

    monkeypatch.setenv("CRASH_TOKEN", TOKEN)
    now = datetime.now(UTC)
    state = small_clinic(now)
    with SampleMastodonServer(state, TOKEN, rate_limit=1_000_000) as server:
        cfg = crash_config(tmp_path / "stepped", server.base_url)
        assert CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"]).exit_code == 0
        posts = sorted(
            (s for s in state.statuses.values() if s["account"]["id"] == state.owner_id), key=lambda s: int(s["id"])
        )
        state.edit_status(posts[-1]["id"], "Post edited after the first run", at=now - timedelta(minutes=5))
        state.delete_status(posts[-2]["id"])
        state.add_status(state.owner_id, "New after the step", created_at=now - timedelta(minutes=3))
        with monkeypatch.context() as stepped:
            stepped.setattr(pipeline, "WarcWriter", SteppedBack)
            result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"])
            assert result.exit_code == 0, result.output
    live = sqlite3.connect(tmp_path / "stepped" / "arch" / "archive.db")
    appended = [r[0] for r in live.execute("SELECT id FROM runs ORDER BY rowid")]
    dated = [run.run_id for run in index_runs(tmp_path / "stepped" / "arch" / "warcs")]
    assert dated == appended[::-1]  # by their dates alone, the second run comes first
    result = rebuild(cfg, tmp_path / "rebuilt.db")
    assert result.exit_code == 0, result.output
    assert list(compare_databases(live, sqlite3.connect(tmp_path / "rebuilt.db"))) == []
    assert verify_replay_passes(cfg)


def verify_replay_passes(cfg: Path) -> bool:
    result = CliRunner().invoke(app, ["verify", "--replay", "--config", str(cfg)])
    return result.exit_code == 0 and result.output.splitlines()[-1] == "archive verifies"


def test_a_replay_names_a_media_file_it_has_no_answer_for_by_its_host_only(tmp_path):
    """As the live session does (http.media_label): a file's path can be its own name, a patient's."""
    from archiver.connectors.base import MEDIA_ANSWERS
    from archiver.errors import PlatformError
    from archiver.rebuild import ReplaySession

    session = ReplaySession(tmp_path, "clinic", [])
    url = "https://cdn.example/v/t59/123_n.pdf/Maria-Lopez-biopsy-results.pdf?oh=sig"
    with pytest.raises(PlatformError) as media:
        session.get(url, auth=False, ok=MEDIA_ANSWERS)
    assert "cdn.example" in str(media.value) and "Maria" not in str(media.value) and "sig" not in str(media.value)
    with pytest.raises(PlatformError) as api:  # an API call keeps its URL: ids only, and what to look for
        session.get("https://api.example/v1/statuses/1")
    assert "https://api.example/v1/statuses/1" in str(api.value)
