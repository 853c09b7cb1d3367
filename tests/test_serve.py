"""Datasette over the archive, as a real process on loopback: search works, writes are refused."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from archiver.cli import app
from archiver.serve import ReadOnlyDatabase, build_datasette
from archiver.store import Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("serve-demo")
    result = CliRunner().invoke(app, ["demo", "--dir", str(directory), "--no-serve"])
    assert result.exit_code == 0, result.output
    return directory


@pytest.fixture(scope="module")
def server(demo):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "archiver.cli", "serve", "--config", str(demo / "archiver.toml"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            if requests.get(f"{base}/-/versions.json", timeout=1).ok:
                break
        except requests.ConnectionError:
            pass
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline, "Datasette did not start"
        time.sleep(0.2)
    yield base
    process.terminate()
    output = process.communicate(timeout=10)[0]
    assert "Traceback" not in output and "locals" not in output, output


def rows(url: str, **params) -> list[dict]:
    response = requests.get(url, params={"_shape": "objects", **params}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["rows"]


def db_state(demo: Path) -> tuple[str, dict]:
    path = demo / "archive" / "archive.db"
    store = Store.open(path, readonly=True)
    counts = store.counts()
    store.close()
    return hashlib.sha256(path.read_bytes()).hexdigest(), counts


def test_search_finds_a_comment_and_a_direct_message(server):
    comments = rows(f"{server}/archive/items.json", _search="MRN", kind="comment")
    assert comments and all("MRN" in r["text"] for r in comments)
    messages = rows(f"{server}/archive/items.json", _search="vaccination record", kind="message")
    assert messages and all(r["conversation_key"] for r in messages)


def test_statuses_and_canned_queries(server):
    deleted = rows(f"{server}/archive/deleted_items.json")
    assert len(deleted) == 2 and all('"http_status": 404' in r["evidence"] for r in deleted)
    edited = rows(f"{server}/archive/edited_items.json")
    assert len(edited) == 3 and all(r["versions"] >= 2 for r in edited)
    key = edited[0]["item_key"]
    history = rows(f"{server}/archive/item_history.json", item_key=key)
    assert [h["what"] for h in history].count("version") == edited[0]["versions"]
    thread_root = rows(f"{server}/archive/items.json", kind="post", _sort_desc="versions", _size=1)[0]
    thread = rows(f"{server}/archive/thread.json", thread_key=thread_root["thread_key"])
    assert thread[0]["item_key"] == thread_root["thread_key"]
    dms = rows(f"{server}/archive/direct_messages.json", start="", end="")
    assert len(dms) > 100 and {d["item_key"] for d in dms} >= {m["item_key"] for m in dms[:3]}
    by_author = rows(f"{server}/archive/by_author.json", author="riverside")
    assert by_author and all(r["account"] == "riverside-mastodon" for r in by_author)
    assert rows(f"{server}/archive/run_log.json")


@pytest.mark.parametrize(
    "sql",
    [
        "insert into cursors (account, name, value, run_id, recorded_at) values ('a','b','c','d','e')",
        "update item_versions set text = 'x'",
        "delete from events",
        "drop table events",
        "attach database '/tmp/x.db' as x",
        "pragma user_version = 99",
        "select 1; delete from events",
        "with x as (select 1) delete from events",
    ],
)
def test_writes_through_sql_are_refused_and_change_nothing(server, demo, sql):
    before = db_state(demo)
    response = requests.get(f"{server}/archive.json", params={"sql": sql}, timeout=10)
    assert response.status_code >= 400
    assert db_state(demo) == before


def test_other_write_routes_are_refused(server, demo):
    before = db_state(demo)
    assert requests.post(f"{server}/archive/deleted_items", data={"x": "1"}, timeout=10).status_code >= 400
    assert (
        requests.post(f"{server}/archive/-/create", json={"table": "x", "rows": [{"a": 1}]}, timeout=10).status_code
        >= 400
    )
    assert requests.post(f"{server}/archive/events/1/-/delete", timeout=10).status_code >= 400
    assert (
        requests.post(f"{server}/archive/events/-/insert", json={"row": {"event": "deleted"}}, timeout=10).status_code
        >= 400
    )
    assert requests.get(f"{server}/archive.db", timeout=10).status_code == 403  # no download of the PHI database
    assert db_state(demo) == before


def test_new_rows_appended_while_serving_are_visible(server, demo):
    before = rows(f"{server}/archive/cursors.json")
    store = Store.open(demo / "archive" / "archive.db")
    run_id = store.conn.execute("SELECT id FROM runs LIMIT 1").fetchone()[0]
    with store.transaction():
        store.append_cursor("riverside-mastodon", "test_cursor", "42", run_id)
    store.close()
    after = rows(f"{server}/archive/cursors.json")
    assert len(after) == len(before) + 1


def test_database_refuses_a_writable_connection(demo):
    ds = build_datasette(demo / "archive" / "archive.db")
    database = ds.get_database("archive")
    assert isinstance(database, ReadOnlyDatabase)
    with pytest.raises(PermissionError):
        database.connect(write=True)
    conn = database.connect()
    with pytest.raises(Exception, match="readonly"):
        conn.execute("DELETE FROM cursors")


def test_serving_beyond_loopback_is_refused_until_login_exists(demo):
    result = CliRunner().invoke(app, ["serve", "--config", str(demo / "archiver.toml"), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "loopback only" in result.output
