"""Datasette over the archive, as a real process on loopback: search works, writes are refused."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from typer.testing import CliRunner

from archiver.access_log import access_log_path
from archiver.cli import app
from archiver.errors import ConfigError
from archiver.serve import ReadOnlyDatabase, build_datasette
from archiver.store import Store

from .workspace_server import free_port, serving, wait_until_serving


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_template) -> Path:
    return demo_template.copy_to(tmp_path_factory.mktemp("serve-demo") / "demo")


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
    wait_until_serving(base, process, "/-/versions.json")
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
    proof = {
        "mastodon": '"http_status": 404',
        "facebook": '"error_subcode": 33',
        "instagram": '"error_subcode": 33',
        "x": '"title": "Not Found Error"',
        "bluesky": '"RecordNotFound"',
        "linkedin": '"http_status": 404',
        "youtube": '"method": "lookup"',
    }
    assert all(proof[r["platform"]] in r["evidence"] for r in deleted), deleted
    by_platform = {p: sum(r["platform"] == p for r in deleted) for p in proof}
    assert by_platform == {
        "mastodon": 2,
        "facebook": 1,
        "instagram": 1,
        "x": 2,
        "bluesky": 2,
        "linkedin": 1,
        "youtube": 2,
    }
    edited = rows(f"{server}/archive/edited_items.json")
    assert len(edited) == 9 and all(r["versions"] >= 2 for r in edited)  # Mastodon 3, one on each other platform
    assert len({r["platform"] for r in edited}) == 7
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


def test_items_view_status_matches_versions_and_deletions(server):
    deleted = {r["item_key"] for r in rows(f"{server}/archive/deleted_items.json")}
    assert {r["item_key"] for r in rows(f"{server}/archive/items.json", status="deleted")} == deleted
    edited = rows(f"{server}/archive/items.json", status="edited")
    assert edited and all(r["versions"] > 1 for r in edited)
    # the canned query reads item_versions and events, not the view (a million items): the same items
    assert {r["item_key"] for r in rows(f"{server}/archive/edited_items.json")} == {r["item_key"] for r in edited}
    live = rows(f"{server}/archive/items.json", status="live", _size=1000)
    assert live and all(r["versions"] == 1 and r["item_key"] not in deleted for r in live)
    history = rows(f"{server}/archive/item_history.json", item_key=edited[0]["item_key"])
    versions = [h for h in history if h["what"] == "version"]
    assert edited[0]["version_id"] == max(v["row_id"] for v in versions)  # the view shows the latest version
    assert edited[0]["text"] == versions[-1]["text"]


def test_direct_messages_between_dates(server):
    newest = rows(f"{server}/archive/direct_messages.json")[0]  # no parameters at all: no bounds
    day = newest["created_at"][:10]
    that_day = rows(f"{server}/archive/direct_messages.json", start=day, end=day)
    assert newest["item_key"] in {r["item_key"] for r in that_day}
    assert all(r["created_at"].startswith(day) for r in that_day)
    assert rows(f"{server}/archive/direct_messages.json", start="2999-01-01", end="") == []


@pytest.mark.parametrize(
    "sql",
    [
        "insert into cursors (account, name, value, run_id, recorded_at) values ('a','b','c','d','e')",
        "update item_versions set text = 'x'",
        "delete from events",
        "drop table events",
        "attach database '/tmp/x.db' as x",
        "pragma user_version = 99",
        "pragma journal_mode = delete",
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


def test_a_path_with_uri_characters_opens_that_file_read_only(demo, tmp_path):
    folder = tmp_path / "odd #name?mode=rwc"
    folder.mkdir()
    copy = folder / "archive.db"
    with sqlite3.connect(demo / "archive" / "archive.db") as source, sqlite3.connect(copy) as target:
        source.backup(target)
    before = sorted(tmp_path.iterdir())
    conn = build_datasette(copy).get_database("archive").connect()
    assert conn.execute("SELECT count(*) FROM items").fetchone()[0] > 0
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("INSERT INTO cursors (account, name, value, run_id, recorded_at) VALUES (1, 2, 3, 4, 5)")
    conn.close()
    assert sorted(tmp_path.iterdir()) == before  # no stray database created at the URI's cut-off path


def test_missing_or_foreign_database_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="archiver demo"):
        build_datasette(tmp_path / "absent.db")
    (tmp_path / "notes.db").write_text("not sqlite\n")
    with pytest.raises(ConfigError, match="cannot be read"):
        build_datasette(tmp_path / "notes.db")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ConfigError, match="not an archive"):
        build_datasette(tmp_path / "other.db")
    with pytest.raises(ConfigError, match="metadata not found"):
        build_datasette(tmp_path / "other.db", metadata_path=tmp_path / "absent.yml")


def test_module_entry_reports_a_missing_database(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "archiver.serve", str(tmp_path / "absent.db"), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "archiver demo" in result.stderr and "Traceback" not in result.stderr


def test_consent_views_and_queue(server):
    """The demo's register over HTTP: one consent live, one revoked between the runs, one expired; the review
    queue holds their lapses and the patient story with no consent on file."""
    register = rows(f"{server}/archive/consents_today.json", status="")
    assert [(r["consent_id"], r["status"], r["linked_items"], r["register_rows"]) for r in register] == [
        ("C-DEMO-001", "live", 1, 1),
        ("C-DEMO-002", "revoked", 1, 2),
        ("C-DEMO-003", "expired", 1, 1),
    ]
    assert [r["consent_id"] for r in rows(f"{server}/archive/consents_today.json", status="revoked")] == ["C-DEMO-002"]
    history = rows(f"{server}/archive/consent_history.json", consent_id="C-DEMO-002")
    assert [h["what"] for h in history] == ["register row", "link", "register row"]
    assert history[0]["revoked_on"] is None and history[2]["revoked_on"] == register[1]["revoked_on"]
    assert history[2]["source"].endswith("consent-revocation.csv")
    lapsed = rows(f"{server}/archive/lapsed_consents.json", _sort="consent_id")
    assert [(r["consent_id"], r["consent_status"]) for r in lapsed] == [
        ("C-DEMO-002", "revoked"),
        ("C-DEMO-003", "expired"),
    ]
    items = rows(f"{server}/archive/consent_items.json", _sort="consent_id")
    assert [(r["consent_id"], r["item_status"]) for r in items] == [
        ("C-DEMO-001", "published"),
        ("C-DEMO-002", "published"),
        ("C-DEMO-003", "published"),
    ]
    queue = rows(f"{server}/archive/consent_review_queue.json")
    assert sorted((r["rule_id"], r["reason"].split(":")[0]) for r in queue) == [
        ("consent.lapsed", "consent lapsed, content still published"),
        ("consent.lapsed", "consent lapsed, content still published"),
        ("consent.missing", "patient content without consent on file"),
    ]
    assert {r["item_key"] for r in queue if r["rule_id"] == "consent.lapsed"} == {r["item_key"] for r in lapsed}
    assert "Omar" in next(r["text"] for r in queue if r["rule_id"] == "consent.missing")
    # the same flags in the shared review queue, beside the PHI flags
    shared = rows(f"{server}/archive/flag_queue.json", category="consent")
    assert sorted(r["flag_id"] for r in shared) == sorted(r["flag_id"] for r in queue)


def access_rows(demo: Path) -> list[dict]:
    conn = sqlite3.connect(f"file:{access_log_path(demo / 'archive' / 'archive.db')}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    found = [dict(r) for r in conn.execute("SELECT * FROM access_log ORDER BY seq")]
    conn.close()
    return found


def test_a_request_addressed_to_another_host_name_is_refused(server, demo):
    """DNS rebinding: a web page whose name the attacker points at 127.0.0.1 reaches this server, with its own
    name in Host. Without accounts the server answers only requests addressed to a loopback name."""
    port = urlparse(server).port
    foreign = [f"rebind.attacker.example:{port}", "rebind.attacker.example", f"127.0.0.1.nip.example:{port}"]
    foreign += [f"localhost.attacker.example:{port}", f"0.0.0.0:{port}"]
    for host in foreign:
        response = requests.get(f"{server}/archive/items.json", headers={"Host": host}, timeout=10)
        assert response.status_code == 400 and "rows" not in response.json(), (host, response.text[:200])
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"LocalHost:{port}", f"[::1]:{port}"):
        response = requests.get(f"{server}/archive/items.json", headers={"Host": host}, timeout=10)
        assert response.status_code == 200, (host, response.text[:200])
    refused = [r for r in access_rows(demo) if r["path"] == "/archive/items.json" and r["status"] == 400]
    assert len(refused) == len(foreign) and {r["client"] for r in refused} == {"127.0.0.1"}


def test_a_forwarded_for_header_does_not_change_the_client(server, demo):
    """Any local process could otherwise name the client address logged (and throttled) by X-Forwarded-For."""
    marker = "xff-marker-5150"
    response = requests.get(
        f"{server}/archive/items.json",
        params={"_search": marker},
        headers={"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9"},
        timeout=10,
    )
    assert response.status_code == 200, response.text[:200]
    assert [r["client"] for r in access_rows(demo) if marker in r["query"]] == ["127.0.0.1"]


def test_a_failing_query_does_not_print_its_search_words(demo_template, tmp_path):
    """Datasette prints a failed query's SQL and parameters to stderr; the parameters are search terms (PHI)."""
    demo = demo_template.copy_to(tmp_path / "demo")
    words = "Ulla Ibarra DOB 1961-04-02 ("
    output: list[str] = []
    with serving(demo, output=output) as base:
        response = requests.get(
            f"{base}/archive/item_versions.json", params={"_search": words, "_searchmode": "raw"}, timeout=10
        )
        assert response.status_code >= 400
        failed_sql = requests.get(f"{base}/archive.json", params={"sql": "select * from nowhere_1961"}, timeout=10)
        assert failed_sql.status_code >= 400
    assert "Ulla" not in output[0] and "1961" not in output[0], output[0]


def test_facet_values_count_as_rows_returned(server, demo):
    """`?_facet=text&_size=0` shows every distinct text and no row: the access log counts the values shown."""
    params = {"_facet": ["text", "kind"], "_facet_size": "max", "_size": "0", "_nocount": "1"}
    response = requests.get(f"{server}/archive/items.json", params=params, timeout=30)
    assert response.status_code == 200, response.text[:200]
    facets = response.json()["facet_results"]  # those asked for and the view's own (metadata)
    assert {"text", "kind"} <= set(facets) and not any(f["truncated"] for f in facets.values())
    shown = sum(len(f["results"]) for f in facets.values())
    assert len(facets["text"]["results"]) > 100
    logged = [r for r in access_rows(demo) if r["path"] == "/archive/items.json" and "_facet=text" in r["query"]]
    assert logged[-1]["rows"] == shown + 1  # the page's own query fetches one row more than the none it shows
