"""One demo archive per test session, built once and copied for each module that reads or extends one.

Building the demo (seven sample platforms, two runs, the PHI scan) takes about 8 s; a copy takes
milliseconds, and each module still gets its own archive to add users to, serve or tamper with.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from archiver.demo.run import run_demo

# The consent register's days are local days (archiver/consent/state.py): the suite judges them in UTC whatever
# the developer's zone, as CI does; tests of other zones set TZ themselves. Subprocesses inherit it.
os.environ["TZ"] = "UTC"
time.tzset()


@dataclass(frozen=True)
class DemoTemplate:
    directory: Path
    now: datetime  # the clock the sample data and both runs were made with
    notices: tuple[tuple[str, ...], ...]  # each run's notices, as its summary printed them

    def copy_to(self, destination: Path) -> Path:
        shutil.copytree(self.directory, destination)
        return destination


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> DemoTemplate:
    directory = tmp_path_factory.mktemp("demo-template") / "demo"
    now = datetime.now(UTC)
    outcome = run_demo(directory, echo=lambda line: None, now=now)
    assert outcome.exit_code == 0
    return DemoTemplate(directory, now, tuple(tuple(run.notices) for run in outcome.runs))


@pytest.fixture
def http_waits(monkeypatch) -> list[float]:
    """The waits `archiver.http` makes in the test's in-process runs (back-offs, rate-limit waits), recorded
    instead of slept: the test costs no waiting (a failing endpoint's back-off is about 4 s a run) and can
    check what was waited."""
    waits: list[float] = []
    monkeypatch.setattr("archiver.http.pause", lambda seconds, stop=None: waits.append(seconds))
    return waits
