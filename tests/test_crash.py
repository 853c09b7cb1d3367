"""Crash safety: a run SIGKILLed at many points leaves an archive that verifies (a torn WARC tail aside),
and the next run ends with exactly the versions of an uninterrupted run, none duplicated."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.checkpoints import PUBLIC_KEY
from archiver.cli import app
from archiver.config import load_config
from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer
from archiver.demo.png import make_png
from archiver.rebuild import rebuild_database
from archiver.replay_check import compare_databases
from archiver.verify import verify_archive

TOKEN = "crash-test-token-Vb61q"
KILL_POINTS = 21


def small_clinic(now: datetime) -> MastodonState:
    rng = random.Random(3)
    state = MastodonState()
    clinic = state.add_account("riverside", "Riverside Clinic")
    people = [state.add_account(f"p{i}", f"Person {i}") for i in range(20)]
    posts = []
    for i in range(30):
        at = now - timedelta(days=30 - i, hours=rng.randrange(0, 12))
        media = [(make_png(16, 12, i), f"image {i}")] if i % 6 == 0 else []
        posts.append(state.add_status(clinic["id"], f"Post {i} about clinic hours", created_at=at, media=media))
    for i in range(90):
        parent = rng.choice(posts)
        at = datetime.fromisoformat(parent["created_at"].replace("Z", "+00:00")) + timedelta(minutes=10 + i)
        state.add_status(rng.choice(people)["id"], f"Reply {i}", in_reply_to_id=parent["id"], created_at=at)
    for i in range(8):
        person = people[i]
        first = state.add_status(
            person["id"], f"@riverside question {i}", visibility="direct", created_at=now - timedelta(days=20 - i)
        )
        state.add_status(
            clinic["id"],
            f"@{person['acct']} answer {i}",
            visibility="direct",
            in_reply_to_id=first["id"],
            created_at=now - timedelta(days=20 - i, minutes=-30),
        )
    state.edit_status(posts[-1]["id"], "Post 29 about clinic hours (edited)", at=now - timedelta(hours=1))
    return state


@pytest.fixture(scope="module")
def server():
    with SampleMastodonServer(small_clinic(datetime.now(UTC)), TOKEN, rate_limit=1_000_000) as s:
        yield s


def config(directory: Path, base_url: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "archiver.toml"
    path.write_text(
        f'[archive]\ndir = "arch"\n\n[[accounts]]\nname = "clinic"\nplatform = "mastodon"\n'
        f'api_base = "{base_url}"\naccount = "@riverside"\ntoken_env = "CRASH_TOKEN"\n'
    )
    return path


def versions(directory: Path) -> list[tuple]:
    conn = sqlite3.connect(directory / "arch" / "archive.db")
    found = conn.execute(
        "SELECT item_key, kind, content_sha256, text, edited_at FROM item_versions ORDER BY item_key, id"
    ).fetchall()
    conn.close()
    return found


def test_killed_runs_verify_and_resume_without_duplicates(server, tmp_path, monkeypatch):
    monkeypatch.setenv("CRASH_TOKEN", TOKEN)
    reference = tmp_path / "reference"
    start = len(server.requests_log)
    assert CliRunner().invoke(app, ["run", "--config", str(config(reference, server.base_url)), "-q"]).exit_code == 0
    total = len(server.requests_log) - start
    expected = versions(reference)
    assert total > 40 and len(expected) > 120

    points = sorted({max(1, round(total * (i + 0.5) / KILL_POINTS)) for i in range(KILL_POINTS)})
    assert len(points) >= 20
    killed = committed = 0
    for point in points:
        directory = tmp_path / f"kill-{point}"
        cfg = config(directory, server.base_url)
        begin = len(server.requests_log)
        process = subprocess.Popen(
            [sys.executable, "-m", "archiver.cli", "run", "--config", str(cfg), "--quiet"],
            env={**os.environ, "CRASH_TOKEN": TOKEN, "ARCHIVER_COMMIT_EVERY": "7"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while process.poll() is None and len(server.requests_log) - begin < point:
            assert time.time() < deadline
            time.sleep(0.002)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait()

        arch = directory / "arch"
        if (arch / "archive.db").exists():
            problems = verify_archive(arch / "archive.db", arch / "warcs", public_key(arch))
            assert [str(p) for p in problems if p.severity != "note"] == [], f"kill at request {point}"
            committed += bool(versions(directory))
        result = CliRunner().invoke(app, ["run", "--config", str(cfg), "-q"])
        assert result.exit_code == 0, f"kill at request {point}: {result.output}"
        assert versions(directory) == expected, f"kill at request {point}"
        assert verify_archive(arch / "archive.db", arch / "warcs", public_key(arch)) == [], f"kill at request {point}"
        # The WARCs still make the database: the killed run replays as far as it committed, so the next run's
        # replay asks what it asked (before run_progress, a kill between two commits broke every later replay).
        rebuilt = rebuild_database(load_config(cfg), directory / "rebuilt.db")
        assert [str(p) for p in rebuilt.errors] == [], f"kill at request {point}"
        live, replayed = sqlite3.connect(arch / "archive.db"), sqlite3.connect(directory / "rebuilt.db")
        assert [str(p) for p in compare_databases(live, replayed)] == [], f"kill at request {point}"
        live.close()
        replayed.close()
    assert killed >= 20
    assert committed >= 10, "most kills should land after some versions were committed"


def public_key(arch: Path) -> Path | None:
    """The archive's public key, once its first checkpoint made it (a run killed before has none)."""
    key = arch / "keys" / PUBLIC_KEY
    return key if key.exists() else None
