"""deploy/: the cron lines run as cron runs them (sh, no environment), with the archiver and paths staged."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).parent.parent / "deploy"
ARCHIVER = "/opt/archiver/.venv/bin/archiver"


def cron_lines() -> list[tuple[str, str]]:
    """(schedule, command) of each job line of archiver.cron, which runs as the user `archiver`."""
    jobs = []
    for line in (DEPLOY / "archiver.cron").read_text().splitlines():
        if not line.strip() or line.startswith("#") or "=" in line.split()[0]:
            continue
        fields = line.split(None, 6)
        assert fields[5] == "archiver", line  # /etc/cron.d lines name the user
        jobs.append((" ".join(fields[:5]), fields[6]))
    return jobs


def staged(command: str, tmp_path: Path) -> str:
    return (
        command.replace(ARCHIVER, str(tmp_path / "archiver"))
        .replace("/etc/archiver/env", str(tmp_path / "env"))
        .replace("/var/log/archiver", str(tmp_path / "log"))
    )


@pytest.mark.parametrize("job", range(3))
def test_each_cron_line_reads_the_tokens_systemd_reads(tmp_path, job):
    """cron passes no environment: a token named by token_env must come from /etc/archiver/env, as with
    EnvironmentFile=, and a value with a $ in single quotes must arrive as written."""
    (tmp_path / "log").mkdir()
    (tmp_path / "env").write_text("ARCHIVER_CLINIC_TOKEN='tok$en-1'\n")
    fake = tmp_path / "archiver"
    fake.write_text(f'#!/bin/sh\nprintf "%s|%s\\n" "$ARCHIVER_CLINIC_TOKEN" "$*" >> {tmp_path}/seen\n')
    fake.chmod(0o755)
    schedule, command = cron_lines()[job]
    done = subprocess.run(
        ["sh", "-c", staged(command, tmp_path)], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout == "", (schedule, done.stdout, done.stderr)
    seen = (tmp_path / "seen").read_text().splitlines()
    assert seen and all(line.startswith("tok$en-1|") for line in seen)
    assert all("--config /etc/archiver/archiver.toml" in line for line in seen)


def test_a_failed_run_is_mailed_and_its_output_kept(tmp_path):
    (tmp_path / "log").mkdir()
    fake = tmp_path / "archiver"
    fake.write_text("#!/bin/sh\necho 'account clinic failed'\nexit 1\n")
    fake.chmod(0o755)
    _, command = cron_lines()[0]  # no env file: like EnvironmentFile=-, not an error
    done = subprocess.run(["sh", "-c", staged(command, tmp_path)], capture_output=True, text=True)
    assert done.stdout.startswith("archiver run failed (exit 1)")  # cron mails stdout
    assert (tmp_path / "log" / "run.log").read_text() == "account clinic failed\n"
