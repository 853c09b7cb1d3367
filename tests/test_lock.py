"""One run at a time: a second concurrent run exits with a clear message; a dead holder leaves no lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.errors import LockedError
from archiver.lock import archive_lock

from .test_config import DISABLED


def config(tmp_path):
    path = tmp_path / "archiver.toml"
    path.write_text(f'[archive]\ndir = "arch"\n{DISABLED}')
    return path


def test_second_run_is_refused_while_the_first_holds_the_lock(tmp_path):
    path = config(tmp_path)
    with archive_lock(tmp_path / "arch", "archiver backup"):
        result = CliRunner().invoke(app, ["run", "--config", str(path), "--quiet"])
    assert result.exit_code == 1
    # The message names the holder's command, so an operator can tell a slow backup from a stuck run.
    assert f"another archiver command holds this archive (archiver backup, pid {os.getpid()} on " in result.output
    # Once released, a run proceeds.
    assert CliRunner().invoke(app, ["run", "--config", str(path), "--quiet"]).exit_code == 0


def test_lock_of_a_killed_holder_is_not_stale(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from archiver.lock import archive_lock\n"
            f"with archive_lock(Path({str(tmp_path / 'arch')!r}), 'archiver run'):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(LockedError), archive_lock(tmp_path / "arch", "archiver run"):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    deadline = time.time() + 5
    while True:
        try:
            with archive_lock(tmp_path / "arch", "archiver run"):
                break
        except LockedError:
            assert time.time() < deadline, "lock of a killed process was not released"
            time.sleep(0.05)
