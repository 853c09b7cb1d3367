"""A real `archiver serve` process over a demo archive with accounts, for the workspace tests."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from typer.testing import CliRunner

from archiver.cli import app

PASSWORDS = {"ann": "viewer-password-1", "ivan": "investigator-pw-2", "temp": "temporary-pass-3"}
ROLES = {"ann": "viewer", "ivan": "investigator", "temp": "viewer"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(base: str, process: subprocess.Popen, path: str = "/robots.txt") -> None:
    """Until the server at `base` answers `path`; fails with its output if the process ends, or after 30 s."""
    deadline = time.time() + 30
    while True:
        try:
            if requests.get(f"{base}{path}", timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        assert process.poll() is None, process.stdout.read() if process.stdout else "the server ended"
        assert time.time() < deadline, "the server did not start"
        time.sleep(0.2)


def add_users(directory: Path) -> None:
    for name, password in PASSWORDS.items():
        result = CliRunner().invoke(
            app,
            ["users", "add", name, "--role", ROLES[name], "--password-stdin", "-c", str(directory / "archiver.toml")],
            input=password + "\n",
        )
        assert result.exit_code == 0, result.output


@contextmanager
def serving(
    directory: Path,
    host: str = "127.0.0.1",
    output: list[str] | None = None,
    processes: list[subprocess.Popen] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[str]:
    """Start `archiver serve` bound to host (with `args`, more options of serve); yield the loopback URL to reach
    it; check its log at the end (and append it to `output`, when given, for the test to read after the block).
    The server's process is appended to `processes`, when given, for a test that watches it."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "archiver.cli", "serve", "-c", str(directory / "archiver.toml")]
        + ["--host", host, "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if processes is not None:
        processes.append(process)
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base, process)
    try:
        yield base
    finally:
        process.terminate()
        log = process.communicate(timeout=10)[0]
        if output is not None:
            output.append(log)
    assert "Traceback" not in log and "locals" not in log, log
    for password in PASSWORDS.values():
        assert password not in log


def csrftoken(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=10)
    found = re.search(r'name="csrftoken" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def login(base: str, name: str, password: str | None = None) -> requests.Session:
    session = requests.Session()
    token = csrftoken(session, f"{base}/-/login")
    response = session.post(
        f"{base}/-/login",
        data={"username": name, "password": password or PASSWORDS[name], "csrftoken": token},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 302, response.text[:500]
    return session
