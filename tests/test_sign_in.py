"""Signing in never holds up other people's pages: the password's PBKDF2 is checked off the event loop.

Shown by order, not by timing: the one account's hash costs ten times the usual iterations, so its check takes
seconds of CPU; once the server is seen spending that CPU on a sign-in, another page is asked for, and it must
be answered while the sign-in has still had no answer at all.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from datasette_auth_passwords.utils import hash_password
from typer.testing import CliRunner

from archiver.cli import app
from archiver.users import users_path

from .workspace_server import PASSWORDS, csrftoken, serving

SLOW_ITERATIONS = 10 * 480_000  # datasette-auth-passwords' own count, ten times over: seconds of CPU a check
CHECK_STARTED = 0.3  # CPU seconds the server spends only once it is inside a password check (~1/10 of one)
NEVER = 120  # a deadline that only a hung server reaches


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_template) -> Path:
    """A demo archive whose one account, ann, has a slow password hash of the library's own format."""
    directory = demo_template.copy_to(tmp_path_factory.mktemp("sign-in-demo") / "demo")
    added = CliRunner().invoke(
        app,
        ["users", "add", "ann", "--role", "viewer", "--password-stdin", "-c", str(directory / "archiver.toml")],
        input=PASSWORDS["ann"] + "\n",
    )
    assert added.exit_code == 0, added.output
    path = users_path(directory / "archive" / "archive.db")
    data = json.loads(path.read_text("utf-8"))
    data["users"]["ann"]["password_hash"] = hash_password(PASSWORDS["ann"], iterations=SLOW_ITERATIONS)
    path.write_text(json.dumps(data), "utf-8")
    return directory


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has spent, all its threads together (utime + stime of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def answered(sock: socket.socket) -> bool:
    """Whether any byte of the response has arrived (or the connection closed)."""
    return bool(select.select([sock], [], [], 0)[0])


def sign_in_while_browsing(base: str, server: subprocess.Popen, form: dict[str, str]) -> tuple[int, str, str]:
    """Send a sign-in form; once the server is inside its password check, fetch the login page and require it
    answered before any byte of the sign-in's answer. Returns the sign-in's status, Set-Cookie and body."""
    session = requests.Session()
    body = urlencode({**form, "csrftoken": csrftoken(session, f"{base}/-/login")})
    cookies = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=NEVER)
    try:
        before = cpu_seconds(server.pid)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookies}
        conn.request("POST", "/-/login", body=body, headers=headers)
        assert conn.sock is not None
        deadline = time.monotonic() + NEVER
        while cpu_seconds(server.pid) < before + CHECK_STARTED:
            assert not answered(conn.sock), "the sign-in was answered before its password was checked"
            assert time.monotonic() < deadline, "the server never started checking the password"
            time.sleep(0.01)
        page = requests.get(f"{base}/-/login", timeout=NEVER)
        assert page.status_code == 200 and 'name="password"' in page.text
        assert not answered(conn.sock), "the login page waited for another person's password check"
        response = conn.getresponse()
        return response.status, response.getheader("set-cookie") or "", response.read().decode("utf-8")
    finally:
        conn.close()


def test_other_pages_are_answered_while_a_password_is_checked(demo):
    processes: list[subprocess.Popen] = []
    with serving(demo, processes=processes) as base:
        server = processes[0]
        wrong = sign_in_while_browsing(base, server, {"username": "ann", "password": "wrong-password-0"})
        unknown = sign_in_while_browsing(base, server, {"username": "nobody", "password": "wrong-password-0"})
        right = sign_in_while_browsing(base, server, {"username": "ann", "password": PASSWORDS["ann"]})
        session = requests.Session()  # a form without the token its cookie signs is still refused (CSRF)
        csrftoken(session, f"{base}/-/login")
        form = {"username": "ann", "password": PASSWORDS["ann"], "csrftoken": "forged"}
        forged = session.post(f"{base}/-/login", data=form, allow_redirects=False, timeout=NEVER)
        assert forged.status_code == 403 and "ds_actor" not in forged.headers.get("set-cookie", "")
    # A wrong password and a name without an account get the same answer.
    for status, cookie, page in (wrong, unknown):
        assert status == 200 and "Invalid username or password" in page and "ds_actor" not in cookie
    assert wrong[2].split('name="csrftoken"')[0] == unknown[2].split('name="csrftoken"')[0]
    status, cookie, _ = right
    assert status == 302 and cookie.startswith("ds_actor=") and "HttpOnly" in cookie


def test_the_plugin_s_own_login_view_is_never_reached(demo):
    """datasette-auth-passwords' view (it hashes on the event loop) is shadowed by ours, and it is given no
    accounts: even reached, it would check no password."""
    from datasette.utils import resolve_routes

    from archiver import datasette_plugin
    from archiver.serve import build_datasette

    ds = build_datasette(demo / "archive" / "archive.db")
    _, view = resolve_routes(ds._routes(), "/-/login")
    assert view.__wrapped__ is datasette_plugin.login_view
    assert not ds.plugin_config("datasette-auth-passwords")
