"""The compliance workspace through a real Datasette process bound beyond loopback, with accounts: search,
item history, raw records, roles, login, the access log, and no way to write to the archive."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import sqlite3
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from typer.testing import CliRunner

from archiver.access_log import verify_access_log
from archiver.cli import app
from archiver.store import Store

from .workspace_server import PASSWORDS, add_users, login, serving


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_template) -> Path:
    directory = demo_template.copy_to(tmp_path_factory.mktemp("workspace-demo") / "demo")
    add_users(directory)
    return directory


@pytest.fixture(scope="module")
def server(demo):
    # Bound to every interface, as a deployment would be: login is required. Requests go to loopback only.
    with serving(demo, host="0.0.0.0") as base:
        yield base


@pytest.fixture(scope="module")
def viewer(server) -> requests.Session:
    return login(server, "ann")


@pytest.fixture(scope="module")
def investigator(server) -> requests.Session:
    return login(server, "ivan")


def archive_state(demo: Path) -> tuple[str, dict]:
    path = demo / "archive" / "archive.db"
    store = Store.open(path, readonly=True)
    counts = store.counts()
    store.close()
    return hashlib.sha256(path.read_bytes()).hexdigest(), counts


def search(session: requests.Session, server: str, **params) -> dict:
    response = session.get(f"{server}/-/search.json", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def log_rows(investigator: requests.Session, server: str, **params) -> list[dict]:
    response = investigator.get(
        f"{server}/access_log/access_log.json", params={"_shape": "objects", "_size": "max", **params}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()["rows"]


# -- search -------------------------------------------------------------------------------------------------
def test_search_finds_a_direct_message_and_a_comment_by_text(viewer, server):
    messages = search(viewer, server, q="vaccination record")
    assert messages["rows"] and {r["kind"] for r in messages["rows"]} == {"message"}
    assert all("<mark>vaccination</mark>" in r["snippet_html"].lower() for r in messages["rows"])
    comments = search(viewer, server, q="MRN")
    assert "comment" in {r["kind"] for r in comments["rows"]}
    assert comments["total"] == len(comments["rows"]) and comments["facets"]["kind"]
    page = viewer.get(f"{server}/-/search", params={"q": "lab results"}, timeout=30)
    assert page.status_code == 200 and "<mark>lab</mark>" in page.text and "/-/item?key=" in page.text


def test_search_ranks_and_lists_each_item_once(viewer, server):
    rows = search(viewer, server, q="flu")["rows"]
    assert len({r["item_key"] for r in rows}) == len(rows)
    assert [r["rank"] for r in rows] == sorted(r["rank"] for r in rows)  # bm25: lower is better


def test_facets_and_filters(viewer, server):
    everything = search(viewer, server)
    facets = everything["facets"]
    assert set(facets) == {"platform", "account", "kind", "status", "author", "flagged"}  # the PHI scan's flags
    assert sum(n for _, n in facets["kind"]) == everything["total"]
    statuses = dict(facets["status"])
    assert statuses["deleted"] >= 2 and statuses["edited"] >= 1
    deleted = search(viewer, server, status="deleted")
    assert deleted["total"] == statuses["deleted"] and {r["status"] for r in deleted["rows"]} == {"deleted"}
    messages = search(viewer, server, kind="message", author=everything["rows"][0]["author_handle"])
    assert all(r["kind"] == "message" for r in messages["rows"])
    newest = everything["rows"][0]
    day = newest["created_at"][:10]
    that_day = search(viewer, server, posted_from=day, posted_to=day)
    assert newest["item_key"] in {r["item_key"] for r in that_day["rows"]}
    assert all(r["created_at"].startswith(day) for r in that_day["rows"])
    assert search(viewer, server, posted_from="2999-01-01")["total"] == 0
    captured_day = newest["captured_at"][:10]
    assert search(viewer, server, captured_from=captured_day, captured_to=captured_day)["total"] > 0
    assert search(viewer, server, captured_to="2000-01-01")["total"] == 0
    flagged = search(viewer, server, flagged="flagged")
    assert flagged["total"] > 0 and {r["flagged"] for r in flagged["rows"]} == {"flagged"}  # the demo's PHI
    bad_date = viewer.get(f"{server}/-/search.json", params={"posted_from": "yesterday"}, timeout=10)
    assert bad_date.status_code == 400 and "YYYY-MM-DD" in bad_date.json()["error"]


def test_search_words_are_never_fts_syntax(viewer, server):
    for q in ['"unbalanced', "NEAR(", "a OR", "*", "col:thing", "-x"]:
        response = viewer.get(f"{server}/-/search.json", params={"q": q}, timeout=10)
        assert response.status_code == 200, (q, response.text)


# -- item page and raw record ------------------------------------------------------------------------------------
def test_item_page_shows_two_versions_with_the_change(viewer, server):
    edited = search(viewer, server, status="edited")["rows"][0]
    item = viewer.get(f"{server}/-/item.json", params={"key": edited["item_key"]}, timeout=10).json()
    assert len(item["versions"]) >= 2 and item["status"] == "edited"
    assert "text" in item["versions"][1]["changed"]
    assert [e["event"] for e in item["events"]][:2] == ["created", "edited"]
    page = viewer.get(f"{server}/-/item", params={"key": edited["item_key"]}, timeout=10).text
    assert page.count('class="ws-version"') == len(item["versions"])
    added = re.search(r"<ins>(.*?)</ins>", page, re.S).group(1).strip()
    assert added and added in item["versions"][1]["text"] and added not in item["versions"][0]["text"]


def test_item_page_shows_a_deletion_with_its_evidence_record(viewer, server):
    deleted = search(viewer, server, status="deleted", platform="mastodon")["rows"]  # proof: a 404 lookup
    for row in deleted:
        item = viewer.get(f"{server}/-/item.json", params={"key": row["item_key"]}, timeout=10).json()
        event = [e for e in item["events"] if e["event"] == "deleted"][-1]
        assert event["evidence"]["http_status"] == 404 and event["records"]
        page = viewer.get(f"{server}/-/item", params={"key": row["item_key"]}, timeout=10).text
        assert 'id="item-status">deleted' in page and 'data-event="deleted"' in page
        deletion = page[page.rindex('data-event="deleted"') :]
        link = re.search(r'href="(/-/raw\?[^"]*record=[^"]*)"', deletion)
        assert link
        raw = viewer.get(server + link.group(1).replace("&amp;", "&"), timeout=30)
        assert raw.status_code == 200 and re.search(r'id="status-line">HTTP/1\.\d 404', raw.text)


def test_item_page_of_a_reply_shows_its_parent_and_a_post_its_replies(viewer, server):
    comments = search(viewer, server, kind="comment", q="MRN")["rows"]
    item = viewer.get(f"{server}/-/item.json", params={"key": comments[0]["item_key"]}, timeout=10).json()
    assert item["parent"] and item["parent"]["item_key"] == comments[0]["parent_key"]
    parent = viewer.get(f"{server}/-/item.json", params={"key": item["parent"]["item_key"]}, timeout=10).json()
    assert comments[0]["item_key"] in {r["item_key"] for r in parent["replies"]}
    missing = viewer.get(f"{server}/-/item", params={"key": "nope:x:1"}, timeout=10)
    assert missing.status_code == 404


def test_raw_response_body_hashes_to_the_stored_digest(viewer, server, demo):
    edited = search(viewer, server, status="edited", platform="mastodon")["rows"][0]
    page = viewer.get(f"{server}/-/item", params={"key": edited["item_key"]}, timeout=10).text
    raw_url = re.search(r'class="raw-link" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    raw = viewer.get(server + raw_url, timeout=10)
    assert raw.status_code == 200 and 'id="body-json"' in raw.text and "matches the bytes read" in raw.text
    payload_digest = re.search(r'id="payload-digest">(sha256:[A-Z2-7=]+)<', raw.text).group(1)
    body_url = re.search(r'id="body-link" href="([^"]+)"', raw.text).group(1).replace("&amp;", "&")
    body = viewer.get(server + body_url, timeout=10)
    assert body.headers["content-type"] == "application/octet-stream"
    assert body.headers["x-content-type-options"] == "nosniff"
    assert payload_digest == "sha256:" + base64.b32encode(hashlib.sha256(body.content).digest()).decode()
    assert hashlib.sha256(body.content).hexdigest() in raw.text
    # ... and that digest is the one the WARC file itself holds for the record the version points at.
    params = parse_qs(urlparse(raw_url).query)
    conn = sqlite3.connect(demo / "archive" / "archive.db")
    version = conn.execute(
        "SELECT raw_json, warc_record_id FROM item_versions WHERE warc_file = ? AND warc_offset = ?",
        (params["warc"][0], int(params["offset"][0])),
    ).fetchone()
    conn.close()
    assert html.escape(version[1]) in raw.text
    assert json.loads(version[0]) in _objects(json.loads(body.content))
    from archiver.warc import read_block_at

    record, _ = read_block_at(demo / "archive" / "warcs" / params["warc"][0], int(params["offset"][0]), None)
    assert record.rec_headers.get_header("WARC-Payload-Digest") == payload_digest


def _objects(data) -> list:
    return data if isinstance(data, list) else [data, *data.get("descendants", []), *data.get("ancestors", [])]


def test_raw_route_reads_only_warc_files_of_the_archive(viewer, server):
    for params in (
        {"warc": "../archive.db", "offset": "0"},
        {"warc": "/etc/passwd", "offset": "0"},
        {"warc": "absent.warc.gz", "offset": "0"},
        {"warc": "users.json"},
    ):
        assert viewer.get(f"{server}/-/raw", params=params, timeout=10).status_code == 404, params


def test_media_shown_inline_from_the_warc(viewer, server, demo):
    conn = sqlite3.connect(demo / "archive" / "archive.db")
    url, sha = conn.execute("SELECT url, sha256 FROM media_files WHERE content_type LIKE 'image/%' LIMIT 1").fetchone()
    key = conn.execute("SELECT item_key FROM item_versions WHERE media LIKE ? LIMIT 1", (f"%{url}%",)).fetchone()[0]
    conn.close()
    page = viewer.get(f"{server}/-/item", params={"key": key}, timeout=10).text
    src = re.search(r'<img src="(/-/raw/body\?[^"]+)"', page).group(1).replace("&amp;", "&")
    image = viewer.get(server + src, timeout=10)
    assert image.headers["content-type"].startswith("image/") and hashlib.sha256(image.content).hexdigest() == sha


# -- roles and login ---------------------------------------------------------------------------------------------
def test_anonymous_requests_off_loopback_are_refused(server):
    assert requests.get(f"{server}/archive/items.json", timeout=10).status_code == 401
    page = requests.get(f"{server}/-/search?q=MRN", allow_redirects=False, timeout=10)
    assert page.status_code == 302 and page.headers["location"] == "/-/login"
    body = requests.get(f"{server}/-/raw/body?warc=x.warc.gz&offset=0", allow_redirects=False, timeout=10)
    assert body.status_code == 302
    assert requests.post(f"{server}/-/search.json", timeout=10).status_code == 405
    assert requests.get(f"{server}/robots.txt", timeout=10).text.strip().endswith("Disallow: /")
    assert requests.get(f"{server}/-/login", timeout=10).status_code == 200


def test_wrong_password_and_forged_cookie_are_refused(server):
    session = requests.Session()
    from .workspace_server import csrftoken

    token = csrftoken(session, f"{server}/-/login")
    response = session.post(
        f"{server}/-/login",
        data={"username": "ann", "password": "wrong-password-0", "csrftoken": token},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 200 and "Invalid username or password" in response.text
    forged = {"ds_actor": base64.b64encode(b'{"a":{"id":"ivan","role":"investigator"}}').decode()}
    assert requests.get(f"{server}/archive.json", cookies=forged, timeout=10).status_code == 401
    basic = requests.get(f"{server}/archive.json", auth=("ivan", PASSWORDS["ivan"]), timeout=10)
    assert basic.status_code == 401  # sign-in is by the login form only


def test_a_viewer_cannot_run_sql_but_an_investigator_can(viewer, investigator, server):
    assert viewer.get(f"{server}/archive.json", params={"sql": "select 1"}, timeout=10).status_code == 403
    canned = viewer.get(f"{server}/archive/deleted_items.json", timeout=10)
    assert canned.status_code == 200 and len(canned.json()["rows"]) >= 2
    result = investigator.get(f"{server}/archive.json", params={"sql": "select count(*) from items"}, timeout=10)
    assert result.status_code == 200 and result.json()["rows"][0][0] > 0


@pytest.mark.parametrize(
    "sql",
    [
        "insert into cursors (account, name, value, run_id, recorded_at) values ('a','b','c','d','e')",
        "update item_versions set text = 'x'",
        "delete from events",
        "drop table events",
        "attach database '/tmp/x.db' as x",
        "pragma journal_mode = delete",
        "with x as (select 1) delete from events",
    ],
)
def test_an_investigator_cannot_write_through_sql(investigator, server, demo, sql):
    before = archive_state(demo)
    assert investigator.get(f"{server}/archive.json", params={"sql": sql}, timeout=10).status_code >= 400
    assert archive_state(demo) == before


def test_canned_queries_for_the_compliance_questions(viewer, server):
    def canned(name, **params):
        response = viewer.get(f"{server}/archive/{name}.json", params={"_shape": "objects", **params}, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["rows"]

    person = canned("about_person", person="riverside")
    assert {r["relation"] for r in person} >= {"by", "about"}  # replies mention @riverside
    run_id = canned("run_log")[0]["run_id"]
    captured = canned("captured_in_run", run_id=run_id)
    assert captured and all(r["captured_at"] for r in captured)
    assert canned("flagged_awaiting_review")  # the demo's PHI, flagged by each run's scan
    assert canned("edited_items") and canned("direct_messages", start="", end="")


def test_the_access_log_is_for_investigators_only(viewer, investigator, server):
    assert viewer.get(f"{server}/access_log/access_log.json", timeout=10).status_code == 403
    assert viewer.get(f"{server}/access_log.json", params={"sql": "select 1"}, timeout=10).status_code == 403
    assert log_rows(investigator, server, _size=1)


def test_each_request_appears_in_the_access_log_with_its_person(viewer, investigator, server, demo):
    marker = "unique-marker-4242"
    viewer.get(f"{server}/-/search", params={"q": marker}, timeout=10)
    viewer.get(f"{server}/archive/items.json", params={"_search": marker}, timeout=10)
    viewer.get(f"{server}/archive.json", params={"sql": f"select '{marker}'"}, timeout=10)
    requests.get(f"{server}/-/search", params={"q": marker}, allow_redirects=False, timeout=10)
    listed = viewer.get(f"{server}/archive/events.json", params={"_size": 3}, timeout=10)
    assert listed.status_code == 200
    facet_values = sum(len(f["results"]) for f in listed.json()["facet_results"].values())  # the table's own
    rows = log_rows(investigator, server, query__contains=marker)
    seen = {(r["actor"], r["path"], r["status"]) for r in rows}
    assert ("ann", "/-/search", 200) in seen
    assert ("ann", "/archive/items.json", 200) in seen
    assert ("ann", "/archive.json", 403) in seen
    assert (None, "/-/search", 302) in seen
    assert all(r["role"] == "viewer" for r in rows if r["actor"] == "ann")
    events = [r for r in log_rows(investigator, server, path="/archive/events.json") if r["actor"] == "ann"]
    # A table page fetches one row more than it shows (to know whether a next page exists): 3 + 1, and the
    # values of its facets.
    assert facet_values > 0 and events[-1]["rows"] == 4 + facet_values and events[-1]["query"] == "_size=3"
    logins = log_rows(investigator, server, path="/-/login", method="POST")
    assert {("ann", 302), ("ivan", 302)} <= {(r["actor"], r["status"]) for r in logins}
    assert not any(p in json.dumps(rows + logins) for p in PASSWORDS.values())
    assert verify_access_log(demo / "archive" / "access-log.db") == []


def test_a_removed_user_is_refused_at_the_next_request(server, demo):
    session = login(server, "temp")
    assert session.get(f"{server}/archive/items.json", timeout=10).status_code == 200
    config = str(demo / "archiver.toml")
    assert CliRunner().invoke(app, ["users", "remove", "temp", "-c", config]).exit_code == 0
    assert session.get(f"{server}/archive/items.json", timeout=10).status_code == 401
    assert (
        CliRunner()
        .invoke(
            app, ["users", "add", "temp", "--role", "viewer", "--password-stdin", "-c", config], input="x" * 12 + "\n"
        )
        .exit_code
        == 0
    )
    # The same name again, but a new record (another password): the old session stays ended.
    assert session.get(f"{server}/archive/items.json", timeout=10).status_code == 401


# -- nothing writes to the archive --------------------------------------------------------------------------------
def test_only_vetted_plugins_are_loaded(viewer, server):
    from archiver.serve import ALLOWED_PLUGINS

    plugins = viewer.get(f"{server}/-/plugins.json", timeout=10).json()
    assert {p["name"] for p in plugins} <= ALLOWED_PLUGINS
    assert viewer.get(f"{server}/-/metadata.json", timeout=10).status_code == 404  # it would list the login config


# Datasette 1.0's write API, should a later Datasette bring it: tried as well.
WRITE_API = ["/archive/-/create", "/archive/events/-/insert", "/archive/events/-/upsert", "/archive/events/-/drop"]
WRITE_API += ["/archive/events/1/-/delete", "/archive/events/1/-/update"]


def route_urls(demo: Path) -> list[str]:
    """One concrete URL (and its .json twin) for every route Datasette and its plugins serve."""
    from archiver.serve import build_datasette

    ds = build_datasette(demo / "archive" / "archive.db")
    values = {"database": "archive", "table": "events", "pks": "1", "path": "app.css", "rest": ""}
    urls = set(WRITE_API)
    for regex, _ in ds._routes():
        pattern = getattr(regex, "pattern", regex).lstrip("^").rstrip("$")
        has_format = "format>" in pattern
        pattern = re.sub(r"\(\\\.\(\?P<format>[^)]*\)\)\?|\(\?P<format>[^)]*\)\?", "", pattern)
        url = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values.get(m.group(1), "x"), pattern).replace("\\", "")
        url = "/" + url.lstrip("/")
        urls.add(url)
        if has_format:
            urls.add(url.rstrip("/") + ".json" if url != "/" else "/.json")
    return sorted(urls)


def test_no_route_writes_to_the_archive(investigator, server, demo):
    urls = route_urls(demo)
    assert {"/archive", "/archive/events", "/archive/events/1", "/archive/events/1.json", "/-/search"} <= set(urls)
    before = archive_state(demo)
    token = re.search(r'name="csrftoken" value="([^"]+)"', investigator.get(f"{server}/-/login", timeout=10).text)
    bodies = {"row": {"event": "deleted"}, "rows": [{"a": 1}], "table": "x", "update": {"text": "x"}}
    for url in urls:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            response = investigator.request(
                method,
                server + url,
                json=bodies,
                headers={"x-csrftoken": token.group(1) if token else ""},
                allow_redirects=False,
                timeout=30,
            )
            if not (method == "POST" and url in ("/-/login", "/-/logout")):
                assert response.status_code in (404, 405), (method, url, response.status_code)
        form = investigator.post(
            server + url,
            data={"sql": "delete from events", "csrftoken": token.group(1) if token else ""},
            allow_redirects=False,
            timeout=30,
        )
        assert form.status_code in (404, 405) or url in ("/-/login", "/-/logout"), url
    assert archive_state(demo) == before


# -- the access log file and the users file ------------------------------------------------------------------------
def test_access_log_tampering_is_found(tmp_path):
    from archiver.access_log import Access, AccessLog

    path = tmp_path / "access-log.db"
    log = AccessLog(path)
    for n in range(4):
        log.append(Access(f"user{n}", "viewer", "127.0.0.1", "GET", "/-/search", f"q={n}", 200, n))
    log.close()
    assert verify_access_log(path) == []
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE access_log SET actor = 'someone' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM access_log WHERE seq = 2")
    conn.execute("DROP TRIGGER access_log_append_only_update")
    conn.execute("DROP TRIGGER access_log_append_only_delete")
    conn.execute("UPDATE access_log SET actor = 'someone' WHERE seq = 2")
    conn.execute("DELETE FROM access_log WHERE seq = 3")
    conn.commit()
    conn.close()
    found = "\n".join(str(p) for p in verify_access_log(path))
    assert "trigger access_log_append_only_update is missing" in found
    assert "seq 2: hash" in found and "seq 4: expected seq 3" in found


def test_access_log_verify_command(demo, server, viewer):
    result = CliRunner().invoke(app, ["access-log", "verify", "-c", str(demo / "archiver.toml")])
    assert result.exit_code == 0 and "verifies" in result.output


def test_users_commands(tmp_path):
    config = tmp_path / "archiver.toml"
    config.write_text(
        '[archive]\ndir = "arc"\n[[accounts]]\nname = "a"\nplatform = "mastodon"\n'
        'api_base = "http://127.0.0.1:9"\ntoken_env = "X"\n'
    )

    def users(*args, input=None):
        return CliRunner().invoke(app, ["users", *args, "-c", str(config)], input=input)

    assert "no users" in users("list").output
    assert users("add", "dana", "--role", "investigator", "--password-stdin", input="correct horse 1\n").exit_code == 0
    path = tmp_path / "arc" / "users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "correct horse" not in path.read_text() and "pbkdf2_sha256$" in path.read_text()
    again = users("add", "dana", "--role", "viewer", "--password-stdin", input="another password\n")
    assert again.exit_code == 2 and "--replace" in again.output
    assert users("add", "eve", "--role", "admin", "--password-stdin", input="long enough pw\n").exit_code == 2
    short = users("add", "eve", "--role", "viewer", "--password-stdin", input="short\n")
    assert short.exit_code == 2 and "at least 12" in short.output
    assert users("add", "Bad_Name", "--role", "viewer", "--password-stdin", input="long enough pw\n").exit_code == 2
    assert "dana\tinvestigator" in users("list").output
    assert users("remove", "dana").exit_code == 0
    missing = users("remove", "dana")
    assert missing.exit_code == 2 and "no user named" in missing.output


def test_flagged_facet_and_query_follow_the_review_queue(demo, tmp_path):
    """The flagged facet and filter count the items with flags; a decision takes its flag out of the queue."""
    import asyncio

    from archiver.scan.archive import append_review
    from archiver.serve import build_datasette
    from archiver.store import Store

    copy = tmp_path / "archive.db"
    with sqlite3.connect(demo / "archive" / "archive.db") as source, sqlite3.connect(copy) as target:
        source.backup(target)
    store = Store.open(copy)
    queued = [r[0] for r in store.conn.execute("SELECT flag_id FROM flag_queue ORDER BY flag_id")]
    append_review(store, queued[0], "false-positive", "ivan", "the clinic's own fax number")
    store.close()

    async def fetch(path: str, **params) -> dict:
        ds = build_datasette(copy)
        await ds.invoke_startup()
        response = await ds.client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    result = asyncio.run(fetch("/-/search.json", flagged="flagged"))
    assert result["total"] > 0 and {r["flagged"] for r in result["rows"]} == {"flagged"}
    assert dict(result["facets"]["flagged"]) == {"flagged": result["total"]}
    everything = asyncio.run(fetch("/-/search.json"))
    assert dict(everything["facets"]["flagged"])["not flagged"] == everything["total"] - result["total"]
    awaiting = asyncio.run(fetch("/archive/flagged_awaiting_review.json", _shape="objects", _size="max"))
    assert {r["flag_id"] for r in awaiting["rows"]} == set(queued[1:])
    # when the flag was raised, and apart from it when the item was posted
    conn = sqlite3.connect(demo / "archive" / "archive.db")
    times = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT f.id, f.created_at, v.created_at FROM flags f JOIN item_versions v ON v.id = f.version_id"
        )
    }
    conn.close()
    assert {r["flag_id"]: (r["flagged_at"], r["posted_at"]) for r in awaiting["rows"]} == {
        r["flag_id"]: times[r["flag_id"]] for r in awaiting["rows"]
    }


def test_sessions_expire_and_need_our_sign_in(demo, tmp_path):
    import time

    from datasette.utils import baseconv

    from archiver.datasette_plugin import SESSION_SECONDS, resolve_actor, workspace_of
    from archiver.serve import build_datasette

    ds = build_datasette(demo / "archive" / "archive.db")
    workspace = workspace_of(ds)
    actor = {"id": "ivan", "role": "viewer"}

    def scope(signed: dict) -> dict:
        return {"headers": [(b"cookie", f"ds_actor={ds.sign(signed, 'actor')}".encode())]}

    fresh = baseconv.base62.encode(int(time.time()) + 60)
    stale = baseconv.base62.encode(int(time.time()) - 1)
    users = workspace.users.users()
    opened = workspace.sessions.open("ivan", users["ivan"].fingerprint())
    other = workspace.sessions.open("ann", users["ann"].fingerprint())
    signed = {"a": actor, "e": fresh, "s": opened}
    assert resolve_actor(ds, workspace, scope(signed)) == {"id": "ivan", "role": "investigator"}
    assert resolve_actor(ds, workspace, scope({**signed, "e": stale})) is None
    assert resolve_actor(ds, workspace, scope({"a": actor, "s": opened})) is None  # no expiry: not our sign-in
    assert resolve_actor(ds, workspace, scope({"a": actor, "e": fresh})) is None  # no session: not our sign-in
    assert resolve_actor(ds, workspace, scope({**signed, "s": other})) is None  # another person's session
    assert resolve_actor(ds, workspace, scope({**signed, "s": "made-up"})) is None
    assert resolve_actor(ds, workspace, scope({**signed, "a": {"id": "nobody"}})) is None
    workspace.sessions.close(opened)  # signed out
    assert resolve_actor(ds, workspace, scope(signed)) is None
    stale_record = workspace.sessions.open("ivan", "fingerprint-of-an-earlier-record")
    assert resolve_actor(ds, workspace, scope({**signed, "s": stale_record})) is None  # password reset since
    assert SESSION_SECONDS <= 12 * 3600


def test_sign_in_cookie_carries_the_session_lifetime(server):
    from archiver.datasette_plugin import SESSION_SECONDS

    from .workspace_server import csrftoken

    session = requests.Session()
    token = csrftoken(session, f"{server}/-/login")
    response = session.post(
        f"{server}/-/login",
        data={"username": "ann", "password": PASSWORDS["ann"], "csrftoken": token},
        allow_redirects=False,
        timeout=30,
    )
    cookie = response.headers["set-cookie"]
    assert f"Max-Age={SESSION_SECONDS}" in cookie
    assert "HttpOnly" in cookie.split("; ") and "samesite=lax" in cookie.lower()  # no script reads the session
    assert session.get(f"{server}/archive/items.json", timeout=10).status_code == 200


def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(server, demo):
    """Signing out closes the session on the server: the cookie, copied before (a shared computer, a proxy's
    log), no longer reads the archive, though its signature and expiry are still good. Others stay in."""
    from .workspace_server import csrftoken

    password = "sign-out-test-pw"
    added = CliRunner().invoke(
        app,
        ["users", "add", "olga", "--role", "viewer", "--password-stdin", "-c", str(demo / "archiver.toml")],
        input=password + "\n",
    )
    assert added.exit_code == 0, added.output
    session = login(server, "olga", password)
    copied = requests.Session()
    copied.cookies.update(session.cookies)
    other = login(server, "olga", password)
    assert copied.get(f"{server}/archive/items.json", timeout=10).status_code == 200
    token = csrftoken(session, f"{server}/-/logout")
    response = session.post(f"{server}/-/logout", data={"csrftoken": token}, allow_redirects=False, timeout=10)
    assert response.status_code == 302
    assert copied.get(f"{server}/archive/items.json", timeout=10).status_code == 401
    assert copied.get(f"{server}/-/search", allow_redirects=False, timeout=10).status_code == 302
    assert other.get(f"{server}/archive/items.json", timeout=10).status_code == 200  # another sign-in of olga


def test_a_sign_in_form_with_a_repeated_field_is_refused(server):
    """The throttle counts the name this form signs in; the login page reads the last `username` of a form. A
    form naming several (a decoy first) would be counted for the decoy and checked for the real name."""
    from .workspace_server import csrftoken

    for body in (
        f"username=decoy&username=ann&password={PASSWORDS['ann']}",
        f"username=ann&password=wrong-guess-1&password={PASSWORDS['ann']}",
    ):
        session = requests.Session()
        body += f"&csrftoken={csrftoken(session, f'{server}/-/login')}"
        response = session.post(
            f"{server}/-/login",
            data=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
            allow_redirects=False,
            timeout=30,
        )
        assert response.status_code == 400 and "once" in response.text, (body, response.status_code)
        assert "ds_actor" not in response.headers.get("set-cookie", "")


def test_sign_in_from_another_site_is_refused(server):
    """Login CSRF: a page elsewhere posts the attacker's credentials (no cookies, so no CSRF token is asked
    for) and the browser would be signed in as the attacker, its searches logged under that name."""
    form = {"username": "ann", "password": PASSWORDS["ann"]}
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": server.replace("127.0.0.1", "localhost")},
        {"Referer": "https://evil.example/page"},
    ):
        response = requests.post(f"{server}/-/login", data=form, headers=headers, allow_redirects=False, timeout=30)
        assert response.status_code == 403, (headers, response.status_code)
        assert "ds_actor" not in response.headers.get("set-cookie", "")
    for headers in ({"Origin": server}, {"Referer": f"{server}/-/login"}, {}):
        response = requests.post(f"{server}/-/login", data=form, headers=headers, allow_redirects=False, timeout=30)
        assert response.status_code == 302 and "ds_actor=" in response.headers["set-cookie"], headers


def test_an_item_url_becomes_a_link_only_when_it_is_http(demo, tmp_path):
    """The archived item's URL comes from the platform: a `javascript:` URL must not become a link."""
    import asyncio

    from archiver.serve import build_datasette

    copy = tmp_path / "archive.db"
    with sqlite3.connect(demo / "archive" / "archive.db") as source, sqlite3.connect(copy) as target:
        source.backup(target)
    conn = sqlite3.connect(copy)
    keys = [r[0] for r in conn.execute("SELECT item_key FROM items WHERE versions = 1 LIMIT 4")]
    conn.execute("DROP TRIGGER item_versions_append_only_update")
    urls = [
        "javascript:alert(document.cookie)",
        " JavaScript:alert(1)",
        "data:text/html,<b>x</b>",
        "https://ok.example/1",
    ]
    for key, url in zip(keys, urls, strict=True):
        conn.execute("UPDATE item_versions SET url = ? WHERE item_key = ?", (url, key))
    conn.commit()
    conn.close()

    async def pages() -> list[str]:
        ds = build_datasette(copy)
        await ds.invoke_startup()
        return [(await ds.client.get("/-/item", params={"key": key})).text for key in keys]

    shown = asyncio.run(pages())
    for page in shown[:3]:
        assert "on the platform</a>" not in page and not re.search(r'href="\s*(javascript|data):', page, re.I)
    assert '<a href="https://ok.example/1" rel="noreferrer noopener">on the platform</a>' in shown[3]


def test_a_name_without_an_account_costs_the_same_password_check(demo, monkeypatch):
    """The login page hashes the password (PBKDF2) only for a name that has an account: without an equal
    check for other names, the answer's delay would list who has an account. Shown by what is computed, not
    by timing it: sign-in hashes once, at the accounts' own cost, for each name without an account only."""
    import asyncio

    from archiver import datasette_plugin
    from archiver.serve import build_datasette
    from archiver.users import UsersFile, users_path

    database = demo / "archive" / "archive.db"
    accounts = UsersFile(users_path(database)).users()
    hashed: list[str] = []
    monkeypatch.setattr(datasette_plugin, "verify_password", lambda password, hash: hashed.append(hash))
    datasette_plugin.check_unknown_name("wrong-guess-0", accounts)
    rounds = {user.password_hash.split("$")[1] for user in accounts.values()}
    assert len(hashed) == 1 and hashed[0].split("$")[:2] == ["pbkdf2_sha256", *rounds]

    checked: list[str] = []
    monkeypatch.setattr(datasette_plugin, "check_unknown_name", lambda password, users: checked.append(password))

    async def sign_in(name: str) -> int:
        ds = build_datasette(database, require_login=True)
        await ds.invoke_startup()
        form = {"username": name, "password": f"guess-for-{name}"}
        return (await ds.client.post("/-/login", data=form)).status_code

    for name in ("ann", "ivan", "nobody", "temp", "mallory"):
        asyncio.run(sign_in(name))
    assert checked == ["guess-for-nobody", "guess-for-mallory"]


def test_password_guessing_is_refused_after_five_failures_for_a_name(demo):
    """Eight wrong passwords for one name sent at once: five are checked, the others refused with 429 and
    Retry-After before any password is checked; so is the right password next. Others still sign in from the
    same address, and the access log shows the refusals."""
    from concurrent.futures import ThreadPoolExecutor

    from archiver.login_throttle import USER_LIMIT, WINDOW_SECONDS

    from .workspace_server import csrftoken

    def attempt(name: str, password: str) -> requests.Response:
        session = requests.Session()
        form = {"username": name, "password": password, "csrftoken": csrftoken(session, f"{base}/-/login")}
        return session.post(f"{base}/-/login", data=form, allow_redirects=False, timeout=60)

    with serving(demo, host="0.0.0.0") as base:  # its own process: its own count of failures
        with ThreadPoolExecutor(8) as pool:
            guesses = list(pool.map(lambda n: attempt("ann", f"wrong-guess-{n}"), range(8)))
        checked = [r for r in guesses if r.status_code == 200]
        assert len(checked) == USER_LIMIT and all("Invalid username or password" in r.text for r in checked)
        assert sorted(r.status_code for r in guesses if r not in checked) == [429] * (8 - USER_LIMIT)
        refused = attempt("ann", PASSWORDS["ann"])
        assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
        assert WINDOW_SECONDS - 120 < int(refused.headers["Retry-After"]) <= WINDOW_SECONDS + 1
        assert "ds_actor" not in refused.headers.get("set-cookie", "")
        investigator = login(base, "ivan")
        logins = log_rows(investigator, base, path="/-/login", method="POST")
    assert [r["status"] for r in logins if r["status"] == 429] == [429] * (9 - USER_LIMIT)


def test_serving_refuses_an_unvetted_plugin(demo):
    import types

    from datasette import hookimpl
    from datasette.plugins import pm

    from archiver.errors import ConfigError
    from archiver.serve import build_datasette

    writer = types.ModuleType("datasette_write_something")
    writer.extra_template_vars = hookimpl(lambda: {})
    pm.register(writer, name="datasette_write_something")
    try:
        with pytest.raises(ConfigError, match="datasette_write_something"):
            build_datasette(demo / "archive" / "archive.db")
    finally:
        pm.unregister(name="datasette_write_something")
    build_datasette(demo / "archive" / "archive.db")


def test_evidence_record_found_in_another_file_of_its_run(demo, tmp_path):
    """A run that rotated its WARC writes a listing to one file and a lookup to the next: evidence naming the
    lookup's file still finds the listing's record."""
    import shutil

    from warcio.archiveiterator import ArchiveIterator

    from archiver.workspace.raw import RecordNotFound, read_record

    first, second = sorted((demo / "archive" / "warcs").glob("*.warc.gz"))[:2]
    rotated = tmp_path / first.name.replace("-00001.", "-00002.")
    shutil.copy(first, rotated)
    shutil.copy(second, tmp_path / first.name)  # another run's bytes under the first file's name
    with open(rotated, "rb") as fh:
        wanted = next(iter(ArchiveIterator(fh))).rec_headers.get_header("WARC-Record-ID")
    record = read_record(tmp_path, first.name, record_id=wanted)
    assert record.warc_file == rotated.name and record.record_id == wanted and record.block_digest_ok
    with pytest.raises(RecordNotFound, match="other WARC files of its run"):
        read_record(tmp_path, first.name, record_id="<urn:uuid:00000000-0000-0000-0000-000000000000>")


def test_a_broad_search_is_ranked_and_counted_over_the_newest_matches(demo, tmp_path, monkeypatch):
    """Words matching more than WINDOW versions: the page and the counts cover the newest WINDOW matching
    versions, and say so; a filter lifts the window."""
    import asyncio

    from archiver.serve import build_datasette
    from archiver.workspace import search as search_module

    monkeypatch.setattr(search_module, "WINDOW", 40)
    database = tmp_path / "archive.db"  # beside no users file: served to loopback without sign-in
    with sqlite3.connect(demo / "archive" / "archive.db") as source, sqlite3.connect(database) as target:
        source.backup(target)
    conn = sqlite3.connect(database)
    matches = [
        r[0]
        for r in conn.execute(
            "SELECT rowid FROM item_versions_fts WHERE item_versions_fts MATCH '\"the\"' ORDER BY rowid DESC"
        )
    ]
    newest = matches[:40]
    in_window = {
        r[0]
        for r in conn.execute(f"SELECT DISTINCT item_key FROM item_versions WHERE id IN ({','.join(map(str, newest))})")
    }
    conn.close()
    assert len(matches) > 40

    async def fetch(**params) -> dict:
        ds = build_datasette(database)
        await ds.invoke_startup()
        response = await ds.client.get("/-/search.json", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    broad = asyncio.run(fetch(q="the"))
    assert broad["window"] == 40 and broad["total"] == len(in_window)
    assert {r["item_key"] for r in broad["rows"]} <= in_window
    page = asyncio.run(_page(database, "/-/search?q=the"))
    assert 'id="search-window"' in page and "among the newest 40" in page
    filtered = asyncio.run(fetch(q="the", platform="mastodon"))
    assert filtered["window"] is None


async def _page(database, path: str) -> str:
    from archiver.serve import build_datasette

    ds = build_datasette(database)
    await ds.invoke_startup()
    return (await ds.client.get(path)).text
