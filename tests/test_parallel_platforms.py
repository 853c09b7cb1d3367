"""Accounts of different platforms are captured at the same time; one platform's accounts never overlap.

Three loopback servers: two accounts on one platform, one on another. The first request of each platform
waits until the other platform's first request has arrived, so a sequential run cannot pass; a global
sequence of requests shows the same platform's two accounts one after the other.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.config import load_config
from archiver.connectors import CONNECTORS
from archiver.connectors.mastodon import MastodonConnector
from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer
from archiver.pipeline import run_archive

TOKEN = "parallel-test-token-K2m8Qz"
NOW = datetime.now(UTC).replace(microsecond=0)


class SecondPlatform(MastodonConnector):
    """Mastodon's API under another platform name: enough to be scheduled as a different platform."""

    platform: ClassVar[str] = "x"


def clinic_server(name: str, posts: int) -> SampleMastodonServer:
    state = MastodonState(host=f"{name}.example")
    clinic = state.add_account("clinic", f"{name} clinic")
    patient = state.add_account("pat", "A Patient")
    for i in range(posts):
        post = state.add_status(clinic["id"], f"{name} post {i}", created_at=NOW - timedelta(days=2, minutes=i))
        state.add_status(patient["id"], f"reply to {name} {i}", in_reply_to_id=post["id"], created_at=NOW)
    return SampleMastodonServer(state, TOKEN).start()


@pytest.fixture
def servers(monkeypatch):
    monkeypatch.setitem(CONNECTORS, "x", SecondPlatform)
    monkeypatch.setenv("PARALLEL_TOKEN", TOKEN)
    started = {"m1": clinic_server("m1", 3), "m2": clinic_server("m2", 2), "x1": clinic_server("x1", 4)}
    yield started
    for server in started.values():
        server.stop()


def write_config(tmp_path: Path, servers: dict[str, SampleMastodonServer], parallel: int) -> Path:
    platforms = {"m1": "mastodon", "m2": "mastodon", "x1": "x"}
    accounts = "".join(
        f'\n[[accounts]]\nname = "{name}"\nplatform = "{platforms[name]}"\napi_base = "{server.base_url}"\n'
        f'account = "@clinic"\ntoken_env = "PARALLEL_TOKEN"\n'
        for name, server in servers.items()
    )
    path = tmp_path / "archiver.toml"
    path.write_text(f'[archive]\ndir = "arch"\nparallel_platforms = {parallel}\n{accounts}')
    return path


def test_platforms_run_in_parallel_and_one_platform_runs_in_turn(tmp_path, servers):
    sequence = itertools.count()
    seen: dict[str, list[int]] = {name: [] for name in servers}
    arrived = {"mastodon": threading.Event(), "x": threading.Event()}
    met: dict[str, bool] = {}

    def hook(name: str, platform: str, other: str):
        def on_request(path: str) -> None:
            seen[name].append(next(sequence))
            if platform not in met:
                met[platform] = False
                arrived[platform].set()
                met[platform] = arrived[other].wait(20)  # only a parallel run gets past this in time

        return on_request

    servers["m1"].on_request = hook("m1", "mastodon", "x")
    servers["m2"].on_request = lambda path: seen["m2"].append(next(sequence))
    servers["x1"].on_request = hook("x1", "x", "mastodon")

    result = run_archive(load_config(write_config(tmp_path, servers, parallel=4)))

    assert met == {"mastodon": True, "x": True}, "the two platforms' first requests did not overlap"
    assert max(seen["m1"]) < min(seen["m2"]), "two accounts of one platform overlapped"
    assert [a.account for a in result.accounts] == ["m1", "m2", "x1"]  # config order, whatever finished first
    assert [a.status for a in result.accounts] == ["ok", "ok", "ok"]
    assert [a.new_items for a in result.accounts] == [6, 4, 8]
    conn = sqlite3.connect(tmp_path / "arch" / "archive.db")
    per_account = dict(conn.execute("SELECT account, count(*) FROM item_versions GROUP BY account").fetchall())
    assert per_account == {"m1": 6, "m2": 4, "x1": 8}
    assert conn.execute("SELECT count(*) FROM account_runs").fetchone()[0] == 3
    conn.close()
    verified = CliRunner().invoke(app, ["verify", "--config", str(tmp_path / "archiver.toml")])
    assert verified.exit_code == 0, verified.output


def test_parallel_platforms_1_runs_accounts_one_after_another(tmp_path, servers):
    sequence = itertools.count()
    seen: dict[str, list[int]] = {name: [] for name in servers}
    for name, server in servers.items():
        server.on_request = lambda path, name=name: seen[name].append(next(sequence))
    result = run_archive(load_config(write_config(tmp_path, servers, parallel=1)))
    assert result.ok
    assert max(seen["m1"]) < min(seen["m2"]) and max(seen["m2"]) < min(seen["x1"])


def test_a_failing_platform_does_not_stop_the_other(tmp_path, servers):
    servers["x1"]._token = "another-token-entirely"  # every x request is refused: that account fails
    code = CliRunner().invoke(app, ["run", "--config", str(write_config(tmp_path, servers, 4)), "--quiet"])
    assert code.exit_code == 1
    conn = sqlite3.connect(tmp_path / "arch" / "archive.db")
    rows = dict(conn.execute("SELECT account, status FROM account_runs").fetchall())
    assert rows == {"m1": "ok", "m2": "ok", "x1": "failed"}
    assert conn.execute("SELECT count(*) FROM item_versions WHERE account = 'x1'").fetchone()[0] == 0
    conn.close()
