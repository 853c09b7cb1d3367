"""Ctrl-C and SIGTERM stop a run promptly, even in a long rate-limit wait: each account is recorded as
interrupted with what it captured, the run is signed and the archive verifies, and the next run completes
the work. A second Ctrl-C stops at once, which the archive survives as it survives a crash."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.checkpoints import PUBLIC_KEY
from archiver.cli import app
from archiver.demo.loopback import Fault
from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer
from archiver.verify import verify_archive

TOKEN = "interrupt-test-token-Qe41"


def clinic(handle: str) -> MastodonState:
    now = datetime.now(UTC)
    state = MastodonState()
    owner = state.add_account(handle, f"{handle.title()} Clinic")
    person = state.add_account("pat", "Pat")
    for i in range(12):
        post = state.add_status(owner["id"], f"{handle} post {i}", created_at=now - timedelta(days=12 - i))
        state.add_status(person["id"], f"reply {i}", in_reply_to_id=post["id"], created_at=now - timedelta(days=11 - i))
    return state


@pytest.fixture
def servers() -> Iterator[tuple[SampleMastodonServer, SampleMastodonServer]]:
    with (
        SampleMastodonServer(clinic("riverside"), TOKEN, rate_limit=1_000_000) as first,
        SampleMastodonServer(clinic("northside"), TOKEN, rate_limit=1_000_000) as second,
    ):
        yield first, second


def config(directory: Path, first: SampleMastodonServer, second: SampleMastodonServer) -> Path:
    """Two accounts of one platform: they run one after the other, so the second has not begun at the stop."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "archiver.toml"
    accounts = "".join(
        f'\n[[accounts]]\nname = "{name}"\nplatform = "mastodon"\napi_base = "{server.base_url}"\n'
        f'account = "@{name}"\ntoken_env = "INTERRUPT_TOKEN"\n'
        for name, server in (("riverside", first), ("northside", second))
    )
    path.write_text(f'[archive]\ndir = "arch"\n{accounts}')
    return path


def start_run(cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "archiver.cli", "run", "--config", str(cfg)],
        env={**os.environ, "INTERRUPT_TOKEN": TOKEN},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_requests(server: SampleMastodonServer, count: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(server.requests_log) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never reached the point of the test"
        time.sleep(0.02)


def versions(arch: Path) -> list[tuple]:
    with sqlite3.connect(arch / "archive.db") as conn:
        return conn.execute("SELECT item_key, content_sha256, text FROM item_versions ORDER BY item_key, id").fetchall()


def verifies(arch: Path) -> list[str]:
    return [str(p) for p in verify_archive(arch / "archive.db", arch / "warcs", arch / "keys" / PUBLIC_KEY)]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_in_a_rate_limit_wait_ends_the_run_and_keeps_what_it_captured(servers, tmp_path, stop_signal):
    first, second = servers
    # The instance's limit runs out after 6 requests: the run then waits for its reset, 5 minutes away.
    first.rate_limit = 6
    cfg = config(tmp_path / "stopped", first, second)
    process = start_run(cfg)
    wait_for_requests(first, 6, process)
    time.sleep(0.3)  # into the wait
    process.send_signal(stop_signal)
    try:
        out, err = process.communicate(timeout=60)  # far less than the 5 minutes it would otherwise wait
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the run did not stop within 60 s of the signal")

    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "INTERRUPTED" in out and "riverside: error: interrupted (Ctrl-C or SIGTERM)" in out
    assert second.requests_log == []  # the stop came before the second account began: it never did
    arch = tmp_path / "stopped" / "arch"
    with sqlite3.connect(arch / "archive.db") as conn:
        accounts = conn.execute("SELECT account, status, error FROM account_runs ORDER BY id").fetchall()
        (status, summary), *_ = conn.execute("SELECT status, summary FROM run_results").fetchall()
        signed = conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
    assert [(a, s) for a, s, _ in accounts] == [("riverside", "failed"), ("northside", "failed")]
    assert all(e.startswith("interrupted") for _, _, e in accounts)
    assert status == "failed" and json.loads(summary)["interrupted"] is True
    assert signed == 1  # what the stopped run captured is signed
    assert verifies(arch) == []

    first.rate_limit = 1_000_000
    resumed = CliRunner().invoke(app, ["run", "--config", str(cfg), "-q"], env={"INTERRUPT_TOKEN": TOKEN})
    assert resumed.exit_code == 0, resumed.output
    reference = config(tmp_path / "reference", first, second)
    whole = CliRunner().invoke(app, ["run", "--config", str(reference), "-q"], env={"INTERRUPT_TOKEN": TOKEN})
    assert whole.exit_code == 0, whole.output
    assert versions(arch) == versions(tmp_path / "reference" / "arch")
    assert verifies(arch) == []


def test_a_second_ctrl_c_stops_at_once_and_the_next_run_recovers(servers, tmp_path):
    first, second = servers
    # The first listing answers only after 2 minutes: the first Ctrl-C waits for it, the second does not.
    first.faults.append(Fault(r"/statuses", status=503, delay=120))
    cfg = config(tmp_path / "stopped", first, second)
    process = start_run(cfg)
    deadline = time.monotonic() + 60
    while not first.faults[0].matched:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    time.sleep(1)
    assert process.poll() is None  # the first Ctrl-C waits for the request under way
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("a second Ctrl-C did not stop the run")
    assert process.returncode == 130 and "Traceback" not in err

    first.faults.clear()
    resumed = CliRunner().invoke(app, ["run", "--config", str(cfg), "-q"], env={"INTERRUPT_TOKEN": TOKEN})
    assert resumed.exit_code == 0, resumed.output
    assert verifies(tmp_path / "stopped" / "arch") == []


def test_sigterm_after_the_capture_is_a_stop_too(servers, tmp_path):
    """SIGTERM while the run signs its checkpoint (after the capture threads are done): exit 130 with one line,
    as for Ctrl-C, not a kill; the next run completes and the archive verifies. The signal is sent by the
    process to itself at that moment."""
    first, second = servers
    cfg = config(tmp_path / "stopped", first, second)
    child = (
        "import os, signal, sys\n"
        "import archiver.pipeline as pipeline\n"
        "sign = pipeline.checkpoint_archive\n"
        "def stopped(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return sign(*args, **kwargs)\n"
        "pipeline.checkpoint_archive = stopped\n"
        "sys.argv = ['archiver', 'run', '--config', sys.argv[1], '--quiet']\n"
        "from archiver.cli import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, str(cfg)],
        env={**os.environ, "INTERRUPT_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines()[-1].startswith("archiver: interrupted") and "Traceback" not in done.stderr
    resumed = CliRunner().invoke(app, ["run", "--config", str(cfg), "-q"], env={"INTERRUPT_TOKEN": TOKEN})
    assert resumed.exit_code == 0, resumed.output
    assert verifies(tmp_path / "stopped" / "arch") == []
