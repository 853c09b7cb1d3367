"""The gate of `archiver serve` as a review found it wanting, each through a real server on loopback: sessions
that outlive a password reset, what the access log records (who signed in, rows shown, the path served, a CSV
export's row written before its bytes go out), security headers, SQL functions refused to investigators, and
the client address behind a trusted reverse proxy."""

from __future__ import annotations

import csv
import http.client
import io
import re
import sqlite3
from pathlib import Path
from urllib.parse import urlencode, urlparse

import pytest
import requests
from typer.testing import CliRunner

from archiver.cli import app
from archiver.login_throttle import CLIENT_LIMIT

from .workspace_server import PASSWORDS, add_users, csrftoken, login, serving

PROXY = "127.0.0.2"  # Linux routes all of 127/8 to loopback: a second local address plays the reverse proxy


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_template) -> Path:
    directory = demo_template.copy_to(tmp_path_factory.mktemp("gate-demo") / "demo")
    add_users(directory)
    return directory


@pytest.fixture(scope="module")
def server(demo):
    with serving(demo, host="0.0.0.0") as base:
        yield base


@pytest.fixture(scope="module")
def investigator(server) -> requests.Session:
    return login(server, "ivan")


def access_rows(directory: Path) -> list[dict]:
    conn = sqlite3.connect(f"file:{directory / 'archive' / 'access-log.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM access_log ORDER BY seq")]
    finally:
        conn.close()


def archive_query(directory: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{directory / 'archive' / 'archive.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def users_command(directory: Path, *args: str, password: str | None = None) -> None:
    config = str(directory / "archiver.toml")
    extra = ["--password-stdin"] if password is not None else []
    result = CliRunner().invoke(
        app, ["users", *args, *extra, "-c", config], input=f"{password}\n" if password is not None else None
    )
    assert result.exit_code == 0, result.output


# -- 1. a password reset ends the sessions opened before it ----------------------------------------------------
def test_a_password_reset_or_a_re_added_account_ends_the_sessions_opened_before(server, demo):
    """A cookie copied before `users add --replace` (a new password), or before the account was removed and
    added again (the usual reset of a compromised account), reads nothing after: the session belongs to the
    account's record of its sign-in, not to the name."""
    users_command(demo, "add", "rosa", "--role", "investigator", password="rosa-first-pass-1")
    before = login(server, "rosa", "rosa-first-pass-1")
    copied = requests.Session()
    copied.cookies.update(before.cookies)
    assert copied.get(f"{server}/archive/items.json", timeout=10).status_code == 200

    users_command(demo, "add", "rosa", "--role", "investigator", "--replace", password="rosa-second-pass-2")
    assert copied.get(f"{server}/archive/items.json", timeout=10).status_code == 401
    assert before.get(f"{server}/archive/items.json", timeout=10).status_code == 401
    after = login(server, "rosa", "rosa-second-pass-2")
    assert after.get(f"{server}/archive/items.json", timeout=10).status_code == 200

    users_command(demo, "remove", "rosa")
    assert after.get(f"{server}/archive/items.json", timeout=10).status_code == 401
    users_command(demo, "add", "rosa", "--role", "investigator", password="rosa-third-pass-3")
    assert after.get(f"{server}/archive/items.json", timeout=10).status_code == 401
    assert after.get(f"{server}/-/actor.json", timeout=10).status_code == 401
    assert login(server, "rosa", "rosa-third-pass-3").get(f"{server}/archive/items.json", timeout=10).ok


# -- 2. the access log names who signed in and counts what the item page shows ----------------------------------
def test_a_sign_in_over_another_person_s_session_is_logged_as_the_new_person(server, demo):
    session = login(server, "ann")
    token = csrftoken(session, f"{server}/-/login")
    form = {"username": "ivan", "password": PASSWORDS["ivan"], "csrftoken": token}
    response = session.post(f"{server}/-/login?switch-4711", data=form, allow_redirects=False, timeout=30)
    assert response.status_code == 302
    assert session.get(f"{server}/-/actor.json", timeout=10).json()["actor"]["id"] == "ivan"
    logged = [r for r in access_rows(demo) if r["query"] == "switch-4711"]
    assert [(r["actor"], r["role"], r["method"], r["status"]) for r in logged] == [
        ("ivan", "investigator", "POST", 302)
    ]


def test_the_item_page_counts_the_parent_and_the_thread_root_it_shows(investigator, server, demo):
    [(key,)] = archive_query(
        demo,
        "SELECT item_key FROM items WHERE parent_key IS NOT NULL AND thread_key IS NOT NULL "
        "AND parent_key != thread_key LIMIT 1",
    )
    item = investigator.get(f"{server}/-/item.json", params={"key": key, "m": "item-rows-17"}, timeout=10).json()
    assert item["parent"]["text"] and item["root"]["text"]  # both shown, with their text
    shown = sum(len(item[part]) for part in ("versions", "events", "replies", "conversation", "media")) + 2
    [logged] = [r for r in access_rows(demo) if r["query"].endswith("m=item-rows-17")]
    assert logged["rows"] == item["rows_returned"] == shown


# -- 3. a CSV export leaves only once its access-log row is committed ---------------------------------------------
def test_a_csv_export_is_not_delivered_when_its_access_log_row_cannot_be_written(demo_template, tmp_path):
    """Datasette streams a CSV export chunk by chunk; the row that logs it is written at the last one. Another
    writer holding the log's lock (a stuck backup, a full disk) makes that write fail: nothing of the export may
    have reached the client by then."""
    directory = demo_template.copy_to(tmp_path / "demo")
    add_users(directory)
    output: list[str] = []
    with serving(directory, output=output) as base:
        session = login(base, "ann")
        lock = sqlite3.connect(directory / "archive" / "access-log.db", isolation_level=None, timeout=30)
        lock.execute("BEGIN IMMEDIATE")  # held past the server's wait for the lock: its append fails
        try:
            refused = [session.get(f"{base}/archive/items.{f}?_size=max", timeout=60) for f in ("csv", "json")]
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        for response in refused:
            assert response.status_code == 503 and "access log cannot be written" in response.text
            assert "item_key" not in response.text
        exported = session.get(f"{base}/archive/items.csv?_size=999", timeout=60)
        assert exported.status_code == 200 and exported.text.startswith("item_key,")
        records = list(csv.reader(io.StringIO(exported.text)))
    [logged] = [r for r in access_rows(directory) if r["query"] == "_size=999"]
    assert (logged["status"], logged["rows"], len(records)) == (200, 999 + 1, 1 + 999)  # a row more fetched; header
    log_file = directory / "archive" / "access-log.db"  # the cause and the file: no disk at fault, so no fix given
    said = f"access log not written to {log_file}: OperationalError: database is locked"
    assert f"/archive/items.csv answered 503: {said}" in output[0]


# -- 4. only canonical paths are served, so the log's path is the one an audit looks for --------------------------
def test_a_tilde_alias_of_a_path_is_redirected_to_the_canonical_path(investigator, server, demo):
    from datasette.utils import tilde_encode

    [(name,)] = archive_query(demo, "SELECT name FROM warc_files LIMIT 1")
    canonical_row = "/archive/warc_files/" + tilde_encode(name)
    assert "~2E" in canonical_row and "warc" in canonical_row
    aliases = {
        "/archive/~64irect~5Fmessages.json?_size=1": "/archive/direct_messages.json?_size=1",
        "/~61ccess~5Flog/~61ccess~5Flog.json": "/access_log/access_log.json",
        "/~61rchive.json?sql=select+1": "/archive.json?sql=select+1",
        canonical_row.replace("~2E", "~2e") + ".json": canonical_row + ".json",
        canonical_row.replace("warc", "~77arc"): canonical_row,
        "/archive/items~20x": "/archive/items+x",
    }
    for alias, canonical in aliases.items():
        response = investigator.get(server + alias, allow_redirects=False, timeout=10)
        assert (response.status_code, response.headers.get("location")) == (302, canonical), alias
    assert investigator.get(server + canonical_row + ".json", timeout=10).json()["rows"]
    followed = investigator.get(f"{server}/archive/~64irect~5Fmessages.json?_size=1", timeout=10)
    assert followed.status_code == 200 and followed.url.endswith("/archive/direct_messages.json?_size=1")
    for canonical in ("/archive/items.json", "/archive/direct_messages", "/-/search", "/archive/items/x~2Ey"):
        assert investigator.get(server + canonical, allow_redirects=False, timeout=10).status_code != 302, canonical
    logged = access_rows(demo)
    assert not [r for r in logged if "~64irect" in r["path"] and r["status"] != 302]
    assert [r["rows"] for r in logged if r["path"] == "/archive/~64irect~5Fmessages.json"] == [None, None]
    served = [r for r in logged if r["path"] == "/archive/direct_messages.json" and r["query"] == "_size=1"]
    assert served and served[-1]["rows"]


def test_canonical_paths_are_datasette_s_own_and_redirect_once():
    """Datasette's own links are left as they are; any other spelling maps to one of them, which maps to itself
    (no redirect loop)."""
    from datasette.utils import path_from_row_pks, tilde_encode

    from archiver.datasette_plugin import canonical_path

    names = ["direct_messages", "a.b", "a b", "a/b", "é", "a,b", "~x", "100%", "a+b"]
    own = [f"/{tilde_encode(n)}/{tilde_encode(n)}.json" for n in names]
    own += [f"/archive/t/{path_from_row_pks({'a': a, 'b': 'x,y'}, ['a', 'b'], False)}.json" for a in names]
    own += ["/", "/.json", "/archive", "/archive.json", "/-/search.json", "/-/static/app.css", "/robots.txt"]
    for path in own:
        assert canonical_path(path) == path, path
    odd = ["/~61rchive/~64irect~5fmessages.csv", "/archive/a~2eb/~78,~79", "/archive/a~20b", "/x/é", "/\\evil.example/"]
    for path in odd:
        assert canonical_path(path) != path and canonical_path(canonical_path(path)) == canonical_path(path), path
    assert canonical_path("/-/se~61rch") == "/-/se~61rch"  # the server's own pages are routed as written


# -- 5. security headers on every page but static files -------------------------------------------------------------
def check_security_headers(response: requests.Response, label: str) -> None:
    headers = response.raw.headers
    assert headers.getlist("x-frame-options") == ["DENY"], label
    [csp] = headers.getlist("content-security-policy")  # one policy, merged with the page's own
    assert "frame-ancestors 'none'" in csp, label
    assert headers.getlist("x-content-type-options") == ["nosniff"], label
    assert headers.getlist("cache-control") == ["no-store"], label
    assert headers.getlist("referrer-policy") == ["same-origin"], label  # a search's words go nowhere else


def test_every_page_but_static_files_carries_the_security_headers(investigator, server, demo):
    [(key,)] = archive_query(demo, "SELECT item_key FROM items WHERE kind = 'comment' LIMIT 1")
    item_page = investigator.get(f"{server}/-/item", params={"key": key}, timeout=10)
    pages = {
        "/archive/items": 200,
        "/archive/items.json": 200,
        "/archive/items.csv?_size=1": 200,
        "/-/search?q=appointment": 200,
        "/-/search.json?q=appointment": 200,
        f"/-/item?{urlencode({'key': key})}": 200,
        f"/-/item.json?{urlencode({'key': key})}": 200,
        "/archive/direct_messages": 200,
        "/-/login": 200,
        "/archive/nowhere": 404,
        "/-/metadata": 404,
        "/-/databases.json": 404,  # it names the archive's file on the server
        "/-/threads.json": 404,
    }
    for path, status in pages.items():
        response = investigator.get(server + path, allow_redirects=False, timeout=30)
        assert response.status_code == status, path
        check_security_headers(response, path)
    for path, status in {"/archive/items.json": 401, "/-/search": 302, "/robots.txt": 200}.items():
        response = requests.get(server + path, allow_redirects=False, timeout=10)
        assert response.status_code == status, path
        check_security_headers(response, f"anonymous {path}")
    raw_url = re.search(r'class="raw-link" href="([^"]+)"', item_page.text).group(1).replace("&amp;", "&")
    raw = investigator.get(server + raw_url, timeout=10)
    check_security_headers(raw, "raw")
    body_url = re.search(r'id="body-link" href="([^"]+)"', raw.text).group(1).replace("&amp;", "&")
    body = investigator.get(server + body_url, timeout=10)
    check_security_headers(body, "raw body")
    assert "sandbox" in body.headers["content-security-policy"]  # its own policy kept
    assert "default-src 'none'" in body.headers["content-security-policy"]
    static = requests.get(f"{server}/-/static/app.css", timeout=10)
    assert static.status_code == 200 and "no-store" not in static.headers.get("cache-control", "")


def test_pages_served_without_accounts_are_not_cached_either(demo_template, tmp_path):
    directory = demo_template.copy_to(tmp_path / "demo")
    [(key,)] = archive_query(directory, "SELECT item_key FROM items WHERE kind = 'message' LIMIT 1")
    with serving(directory) as base:
        for path in ("/archive/items.csv?_size=1", "/-/search?q=appointment", f"/-/item?{urlencode({'key': key})}"):
            response = requests.get(base + path, timeout=30)
            assert response.status_code == 200, path
            check_security_headers(response, path)


# -- 6. SQLite's fts3_tokenizer() is not for investigators ----------------------------------------------------------
def test_investigator_sql_cannot_call_fts3_tokenizer(investigator, server):
    """Two-argument fts3_tokenizer() registers a tokenizer from a raw pointer, the one-argument form returns one
    (a library address): SQLite documents both as a hazard in the hands of whoever writes the SQL."""
    for database in ("archive", "access_log"):
        for sql in (
            "select hex(fts3_tokenizer('simple'))",
            "select hex(fts3_tokenizer('x', fts3_tokenizer('simple')))",
            "select FTS3_TOKENIZER('porter')",
        ):
            response = investigator.get(f"{server}/{database}.json", params={"sql": sql}, timeout=10)
            assert response.status_code == 400 and not response.json().get("rows"), (database, sql, response.text)
    allowed = investigator.get(f"{server}/archive.json", params={"sql": "select count(*) from items"}, timeout=10)
    assert allowed.status_code == 200 and allowed.json()["rows"][0][0] > 0
    assert investigator.get(f"{server}/-/search.json", params={"q": "appointment"}, timeout=10).json()["rows"]


# -- 7. behind a trusted reverse proxy, the client is the one it forwards for --------------------------------------
def through(base: str, source: str, method: str, path: str, forwarded_for: str | None, body: str = "") -> int:
    """Send a request from the local address `source` (the proxy, or anyone else), with X-Forwarded-For."""
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60, source_address=(source, 0))
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    try:
        conn.request(method, path, body=body or None, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_trusted_proxy_names_the_client_and_no_one_else_can(demo_template, tmp_path):
    """The client address logged and throttled is the one a trusted proxy forwards for (the last address it
    appended, not one the client wrote into the header itself); X-Forwarded-For from any other peer is ignored.
    So 20 failed sign-ins from one client behind the proxy no longer lock out everyone else."""
    directory = demo_template.copy_to(tmp_path / "demo")
    add_users(directory)
    with serving(directory, host="0.0.0.0", args=("--trusted-proxy", PROXY)) as base:
        assert through(base, PROXY, "GET", "/robots.txt?m=via-proxy", "198.51.100.7") == 200
        assert through(base, PROXY, "GET", "/robots.txt?m=via-proxy-chain", "10.9.9.9, 198.51.100.8") == 200
        assert through(base, PROXY, "GET", "/robots.txt?m=proxy-itself", None) == 200
        assert through(base, "127.0.0.1", "GET", "/robots.txt?m=spoofed", "198.51.100.9") == 200
        for n in range(CLIENT_LIMIT):
            form = urlencode({"username": f"nobody-{n}", "password": "a-wrong-guess"})
            assert through(base, PROXY, "POST", "/-/login", "203.0.113.66", form) == 200
        form = urlencode({"username": "ann", "password": PASSWORDS["ann"]})
        assert through(base, PROXY, "POST", "/-/login?m=locked-out", "203.0.113.66", form) == 429
        assert through(base, PROXY, "POST", "/-/login?m=other-client", "198.51.100.7", form) == 302
        assert through(base, "127.0.0.1", "POST", "/-/login?m=direct", "203.0.113.66", form) == 302
    clients = {r["query"]: (r["client"], r["status"]) for r in access_rows(directory) if r["query"].startswith("m=")}
    assert clients == {
        "m=via-proxy": ("198.51.100.7", 200),
        "m=via-proxy-chain": ("198.51.100.8", 200),
        "m=proxy-itself": (PROXY, 200),
        "m=spoofed": ("127.0.0.1", 200),
        "m=locked-out": ("203.0.113.66", 429),
        "m=other-client": ("198.51.100.7", 302),
        "m=direct": ("127.0.0.1", 302),
    }


def test_behind_a_trusted_proxy_a_server_without_accounts_answers_loopback_clients_only(demo_template, tmp_path):
    directory = demo_template.copy_to(tmp_path / "demo")
    with serving(directory, args=("--trusted-proxy", PROXY)) as base:
        assert through(base, PROXY, "GET", "/archive/items.json", "198.51.100.7") == 403
        assert through(base, PROXY, "GET", "/archive/items.json", "127.0.0.1") == 200
        assert through(base, "127.0.0.1", "GET", "/archive/items.json", "198.51.100.7") == 200


@pytest.mark.parametrize("value", ["*", "proxy.example", "10.0.0.0/33", ""])
def test_a_trusted_proxy_must_be_an_address_or_a_network(demo_template, tmp_path, value):
    directory = demo_template.copy_to(tmp_path / "demo")
    result = CliRunner().invoke(
        app, ["serve", "-c", str(directory / "archiver.toml"), "--port", "9", "--trusted-proxy", value]
    )
    assert result.exit_code == 2 and f"--trusted-proxy {value!r}" in result.output, result.output
