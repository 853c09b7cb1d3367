"""LinkedIn end to end: a loopback server playing the Community Management API, archived by real runs.

Each test builds organisation pages with hand-written posts and comments in the documented shapes, runs the
archive and asserts exact rows: the required headers and URL-encoded URNs, start/count paging, nested
comments, media resolved by URN, edits between runs (lastModified), deletions only on a 404 lookup and never
from a listing that failed, the bare 429 that stops one account until midnight UTC while the others carry on,
no token in any byte under the archive, `warcio check`, and a rebuild that gives the same rows.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import re
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from archiver.cli import app
from archiver.config import load_config
from archiver.connectors import connector_for
from archiver.connectors.base import EMPTY_PAGES_MAX, RecentMap
from archiver.connectors.linkedin import (
    DEFAULT_VERSION,
    STOPPED_UNTIL,
    DailyLimitUTC,
    LinkedInConnector,
    next_midnight_utc,
)
from archiver.demo.linkedin_server import MEDIA_PREFIX, LinkedInState, SampleLinkedInServer
from archiver.demo.loopback import Fault
from archiver.demo.png import make_png
from archiver.errors import AuthError
from archiver.pipeline import run_archive
from tests.revisions import captured_at_revision_1, recorded_revisions, verify_replay
from tests.test_rebuild import COMPARED

TOKEN = "linkedin-member-token-Aq7Zr0x9LkPw"
OTHER_TOKEN = "linkedin-member-token-Hs2Kd8Vb3NnQ"
NOW = datetime.now(UTC).replace(microsecond=0)
ANN = "urn:li:person:ann0Pat1ent"
BOB = "urn:li:person:b0bPub1ic"


class Pages:
    """Two clinics' LinkedIn pages served on loopback; `riverside` is the one most tests look at."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, posts: int = 3):
        self.state = LinkedInState()
        self.state.add_organization(1001, "Riverside Clinic", "riverside-clinic")
        self.state.add_organization(1002, "Hillside Clinic", "hillside-clinic")
        self.posts = [
            self.state.add_post(
                1001, f"Clinic update number {i}", created_at=NOW - timedelta(days=2, minutes=posts - i)
            )
            for i in range(posts)
        ]
        self.hillside = self.state.add_post(1002, "Hillside is open on Saturdays", created_at=NOW - timedelta(days=1))
        self.tmp_path = tmp_path
        monkeypatch.setenv("RIVERSIDE_LI_TOKEN", TOKEN)
        monkeypatch.setenv("HILLSIDE_LI_TOKEN", OTHER_TOKEN)
        self.server = SampleLinkedInServer(self.state, {TOKEN: {1001}, OTHER_TOKEN: {1002}})
        self.server.start()

    def config(self, accounts: str = "riverside", options: str = "", max_wait: int = 60) -> Path:
        path = self.tmp_path / "archiver.toml"
        text = f'[archive]\ndir = "arch"\nrecheck_days = 14\nmax_rate_limit_wait = {max_wait}\n'
        if "riverside" in accounts:
            text += f"""
[[accounts]]
name = "riverside-li"
platform = "linkedin"
api_base = "{self.server.base_url}"
account = "urn:li:organization:1001"
token_env = "RIVERSIDE_LI_TOKEN"
{options}
"""
        if "hillside" in accounts:
            text += f"""
[[accounts]]
name = "hillside-li"
platform = "linkedin"
api_base = "{self.server.base_url}"
account = "1002"
token_env = "HILLSIDE_LI_TOKEN"
"""
        path.write_text(text)
        return path

    def run(self, accounts: str = "riverside", *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["run", "--config", str(self.config(accounts)), "--quiet", *args])
        return result.exit_code, result.output

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.tmp_path / "arch" / "archive.db")
        conn.row_factory = sqlite3.Row
        return conn

    def rows(self) -> list[tuple]:
        conn = self.db()
        found = [
            tuple(r)
            for r in conn.execute(
                "SELECT item_key, kind, author_handle, text, parent_key, thread_key, status, versions FROM items "
                "ORDER BY created_at, item_key"
            )
        ]
        conn.close()
        return found

    def paths(self, since: int = 0) -> list[str]:
        return [p + ("?" + q if q else "") for _, p, q, _ in self.server.requests_log[since:]]

    def stop(self) -> None:
        self.server.stop()


def k(urn: str) -> str:
    return f"linkedin:{urn}"


@pytest.fixture
def pages(tmp_path, monkeypatch):
    p = Pages(tmp_path, monkeypatch)
    yield p
    p.stop()


def test_first_run_archives_posts_comments_replies_and_media(pages):
    state = pages.state
    photo = make_png(10, 6, 3)
    pic = state.add_post(1001, "Our new clinic wing", created_at=NOW - timedelta(days=1), image=(photo, "new wing"))
    article = state.add_post(
        1001,
        "Read our flu season guide",
        created_at=NOW - timedelta(hours=20),
        article={"source": "https://riverside.example/flu", "title": "Flu season guide", "description": "What to do"},
    )
    question = state.add_comment(pic["id"], ANN, "Is parking free?", created_at=NOW - timedelta(hours=10))
    answer = state.add_comment(
        question["commentUrn"], "urn:li:organization:1001", "Yes, for patients", created_at=NOW - timedelta(hours=9)
    )
    other = state.add_comment(pic["id"], BOB, "Looks great", created_at=NOW - timedelta(hours=8))
    code, output = pages.run()
    assert code == 0, output
    org = "urn:li:organization:1001"
    expected = [
        *[(k(p["id"]), "post", org, p["commentary"], None, k(p["id"]), "live", 1) for p in pages.posts],
        (k(pic["id"]), "post", org, "Our new clinic wing", None, k(pic["id"]), "live", 1),
        (k(article["id"]), "post", org, "Read our flu season guide", None, k(article["id"]), "live", 1),
        (k(question["commentUrn"]), "comment", ANN, "Is parking free?", k(pic["id"]), k(pic["id"]), "live", 1),
        (
            k(answer["commentUrn"]),
            "comment",
            org,
            "Yes, for patients",
            k(question["commentUrn"]),
            k(pic["id"]),
            "live",
            1,
        ),
        (k(other["commentUrn"]), "comment", BOB, "Looks great", k(pic["id"]), k(pic["id"]), "live", 1),
    ]
    assert pages.rows() == expected
    conn = pages.db()
    (media,) = conn.execute("SELECT url, sha256, size, content_type FROM media_files").fetchall()
    assert media["sha256"] == hashlib.sha256(photo).hexdigest() and media["content_type"] == "image/png"
    item_media = json.loads(
        conn.execute("SELECT media FROM item_versions WHERE item_key = ?", (k(pic["id"]),)).fetchone()[0]
    )
    assert item_media[0]["id"].startswith("urn:li:image:") and item_media[0]["description"] == "new wing"
    assert item_media[0]["sha256"] == media["sha256"]
    raw = json.loads(
        conn.execute("SELECT raw_json FROM item_versions WHERE item_key = ?", (k(article["id"]),)).fetchone()[0]
    )
    assert raw["content"]["article"]["title"] == "Flu season guide" and raw["lifecycleState"] == "PUBLISHED"
    identity = conn.execute("SELECT platform_account_id, handle FROM accounts").fetchone()
    assert tuple(identity) == (org, "riverside-clinic")
    conn.close()
    # Every API call carried LinkedIn's headers; the finder says so; URNs were percent-encoded everywhere.
    api = [entry for entry in pages.server.requests_log if entry[1].startswith("/rest/")]
    assert api and all(h["LinkedIn-Version"] == DEFAULT_VERSION for _, _, _, h in api)
    assert all(h["X-Restli-Protocol-Version"] == "2.0.0" for _, _, _, h in api)
    finder = [(q, h) for _, p, q, h in api if p == "/rest/posts"]
    assert finder and all(h.get("X-RestLi-Method") == "FINDER" for _, h in finder)
    assert all("author=urn%3Ali%3Aorganization%3A1001" in q and "q=author" in q for q, _ in finder)
    encoded_reply_path = "/rest/socialActions/urn%3Ali%3Acomment%3A%28urn%3Ali%3Aactivity%3A"
    assert any(p.startswith(encoded_reply_path) for _, p, _, _ in api), "replies are read under the comment URN"
    assert not any(":" in p for _, p, _, _ in api)
    # The WARC shows the requests as they went out: URNs percent-encoded in the query too.
    (warc,) = (pages.tmp_path / "arch" / "warcs").glob("*.warc.gz")
    data = gzip.decompress(warc.read_bytes())
    assert b"GET /rest/posts?author=urn%3Ali%3Aorganization%3A1001&q=author" in data and b"author=urn:li" not in data
    assert CliRunner().invoke(app, ["verify", "--config", str(pages.config())]).exit_code == 0


def test_an_image_shown_by_two_posts_is_fetched_once_and_recorded_on_both(pages):
    """The second post with the same image URN gets the first one's download URL and digest, so its bundle carries
    the image instead of calling it "not captured"."""
    photo = make_png(8, 5, 7)
    first = pages.state.add_post(1001, "Flu clinic Saturday", created_at=NOW - timedelta(days=2), image=(photo, "x"))
    again = pages.state.add_post(1001, "Reminder: flu clinic", created_at=NOW - timedelta(days=1))
    again["content"] = {"media": {"id": first["content"]["media"]["id"], "altText": "flu clinic"}}
    code, output = pages.run()
    assert code == 0, output
    conn = pages.db()
    (media,) = conn.execute("SELECT url, sha256 FROM media_files").fetchall()
    entries = [
        json.loads(conn.execute("SELECT media FROM item_versions WHERE item_key = ?", (k(post["id"]),)).fetchone()[0])
        for post in (first, again)
    ]
    conn.close()
    assert media["sha256"] == hashlib.sha256(photo).hexdigest()
    for (entry,) in entries:  # the file is known by the image's stable resource; its signed URL is kept too
        assert (entry["url"], entry["sha256"]) == (media["url"], media["sha256"])
        assert entry["download_url"] != media["url"] and "/rest/images/" in media["url"]
    out = pages.tmp_path / "bundle"
    config = str(pages.config())
    result = CliRunner().invoke(
        app, ["export", "--config", config, "--case", "C-7", "--out", str(out), "--quiet", "--item", k(again["id"])]
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in (out / "data" / "media").iterdir()] != []
    assert CliRunner().invoke(app, ["verify-bundle", str(out)]).exit_code == 0


def item_page_media(pages: Pages, post: dict) -> dict:
    """The post's one attachment as the Datasette item page (`/-/item`) shows it."""
    from datasette.app import Datasette

    from archiver.workspace.item import load_item

    datasette = Datasette([str(pages.tmp_path / "arch" / "archive.db")])
    (attachment,) = asyncio.run(load_item(datasette.get_database("archive"), k(post["id"])))["media"]
    return attachment


def test_an_image_the_cdn_refused_is_fetched_by_the_next_run_though_the_post_is_unchanged(pages):
    photo = make_png(9, 4, 2)
    pic = pages.state.add_post(1001, "Open day", created_at=NOW - timedelta(days=1), image=(photo, "lobby"))
    pages.server.faults.append(Fault(MEDIA_PREFIX, status=403, times=1))  # the signed download refused once
    code, output = pages.run()
    assert code == 0 and "answered HTTP 403; kept the item without it" in output, output
    assert pages.db().execute("SELECT count(*) FROM media_files").fetchone()[0] == 0
    for _ in range(2):  # the next run fetches it; the one after asks nothing more of it
        since = len(pages.server.requests_log)
        code, output = pages.run()
        assert code == 0, output
        asked = [p for p in pages.paths(since) if "/rest/images/" in p or p.startswith(MEDIA_PREFIX)]
        assert len(asked) == (2 if _ == 0 else 0), asked
    conn = pages.db()
    (url, sha) = conn.execute("SELECT url, sha256 FROM media_files").fetchone()
    (versions,) = conn.execute("SELECT count(*) FROM item_versions WHERE item_key = ?", (k(pic["id"]),)).fetchone()
    (entry,) = json.loads(
        conn.execute("SELECT media FROM item_versions WHERE item_key = ?", (k(pic["id"]),)).fetchone()[0]
    )
    conn.close()
    # One version (nothing changed); the page and bundles find the file by the attachment's url.
    assert sha == hashlib.sha256(photo).hexdigest() and versions == 1 and entry["url"] == url


def test_captures_of_revision_1_still_replay_and_revision_2_fetches_their_images_once(pages, monkeypatch):
    """Revision 1 kept a file under its signed URL; its captures replay as they were made. The first run of
    revision 2 fetches each image once more, under the image's stable resource."""
    post = pages.state.add_post(1001, "Open day", created_at=NOW - timedelta(days=1), image=(make_png(5, 5, 5), "x"))
    with captured_at_revision_1(monkeypatch, LinkedInConnector):
        assert pages.run()[0] == 0
    assert recorded_revisions(pages.tmp_path / "arch" / "warcs") == [{"linkedin": 1}]
    assert MEDIA_PREFIX in item_page_media(pages, post)["file"]["url"]  # the item page finds it by download_url
    time.sleep(1.1)  # WARC names (which rebuild replays in order) have one-second resolution
    assert pages.run()[0] == 0
    conn = pages.db()
    urls = [r[0] for r in conn.execute("SELECT url FROM media_files ORDER BY rowid")]
    conn.close()
    assert len(urls) == 2 and MEDIA_PREFIX in urls[0] and "/rest/images/" in urls[1]
    assert item_page_media(pages, post)["file"]["url"] == urls[1]
    result = verify_replay(pages.config())
    assert result.exit_code == 0, result.output


def test_the_memory_of_resolved_media_is_bounded():
    memory: RecentMap[str] = RecentMap(4)
    for key in "abcde":
        memory.put(key, key.upper())
    assert memory.get("e") == "E" and memory.get("d") == "D" and "a" not in memory and memory.get("a") is None


def test_start_count_paging_of_posts_and_comments(tmp_path, monkeypatch):
    p = Pages(tmp_path, monkeypatch, posts=120)
    try:
        busy = p.posts[-1]
        for i in range(130):
            p.state.add_comment(busy["id"], ANN if i % 2 else BOB, f"comment {i}", created_at=NOW - timedelta(hours=30))
        code, output = p.run()
        assert code == 0, output
        conn = p.db()
        kinds = dict(conn.execute("SELECT kind, count(*) FROM items GROUP BY kind").fetchall())
        conn.close()
        assert kinds == {"post": 120, "comment": 130}
        post_pages = [q for _, path, q, _ in p.server.requests_log if path == "/rest/posts"]
        assert [s for q in post_pages for s in q.split("&") if s.startswith("start=")] == [
            "start=0",
            "start=50",
            "start=100",
        ]
        comment_pages = [
            q for _, path, q, _ in p.server.requests_log if path.endswith(f"{busy['id'].replace(':', '%3A')}/comments")
        ]
        assert len(comment_pages) == 2 and "start=100" in comment_pages[1]
    finally:
        p.stop()


def test_edits_between_runs_are_new_versions(pages):
    post = pages.posts[1]
    comment = pages.state.add_comment(post["id"], ANN, "Whats the phone number", created_at=NOW - timedelta(days=1))
    assert pages.run()[0] == 0
    assert pages.run()[0] == 0  # nothing changed: nothing appended
    conn = pages.db()
    assert conn.execute("SELECT count(*) FROM item_versions").fetchone()[0] == 4
    conn.close()
    pages.state.edit_post(post["id"], "Clinic update number 1 (corrected hours)", at=NOW - timedelta(hours=1))
    pages.state.edit_comment(comment["commentUrn"], "What's the phone number?", at=NOW - timedelta(minutes=30))
    draft_back = pages.posts[2]
    pages.state.edit_post(
        draft_back["id"],
        draft_back["commentary"],
        at=NOW - timedelta(minutes=5),
        lifecycle_state="DRAFT",
        by_author=False,
    )
    assert pages.run()[0] == 0
    conn = pages.db()
    versions = lambda key: [  # noqa: E731
        tuple(r)
        for r in conn.execute(
            "SELECT text, edited_at IS NOT NULL FROM item_versions WHERE item_key = ? ORDER BY id", (key,)
        )
    ]
    assert versions(k(post["id"])) == [("Clinic update number 1", 0), ("Clinic update number 1 (corrected hours)", 1)]
    assert versions(k(comment["commentUrn"])) == [("Whats the phone number", 0), ("What's the phone number?", 1)]
    states = [
        json.loads(r[0])["lifecycleState"]
        for r in conn.execute(
            "SELECT raw_json FROM item_versions WHERE item_key = ? ORDER BY id", (k(draft_back["id"]),)
        )
    ]
    assert states == ["PUBLISHED", "DRAFT"]
    events = dict(conn.execute("SELECT event, count(*) FROM events GROUP BY event").fetchall())
    assert events == {"created": 4, "edited": 3}
    # The author's edits are edits; the change LinkedIn made to a post nobody edited says it is not one.
    evidence = {
        key: json.loads(e).get("not_an_edit")
        for key, e in conn.execute("SELECT item_key, evidence FROM events WHERE event = 'edited'")
    }
    assert evidence == {
        k(post["id"]): None,
        k(comment["commentUrn"]): None,
        k(draft_back["id"]): "LinkedIn says its author has not edited the post (isEditedByAuthor false)",
    }
    conn.close()


def test_deletion_needs_a_404_and_never_comes_from_a_failed_listing(pages, http_waits):
    post, other = pages.posts[2], pages.posts[0]
    doomed = pages.state.add_comment(other["id"], BOB, "my MRN is 00482913", created_at=NOW - timedelta(days=1))
    kept = pages.state.add_comment(other["id"], ANN, "thanks", created_at=NOW - timedelta(days=1))
    assert pages.run()[0] == 0
    pages.state.delete_post(post["id"])
    pages.state.delete_comment(doomed["commentUrn"])
    # First the comment listing of every post fails: the absent comment proves nothing, nothing is deleted.
    pages.server.faults.append(Fault(r"/comments\?", status=500, times=100))
    code, output = pages.run()
    assert code == 1 and "HTTP 500" in output
    assert http_waits  # the failing call was retried, after back-off waits
    conn = pages.db()
    assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 0
    conn.close()
    pages.server.faults.clear()
    mark = len(pages.server.requests_log)
    code, output = pages.run()
    assert code == 0, output
    conn = pages.db()
    deleted = {
        r["item_key"]: json.loads(r["evidence"])
        for r in conn.execute("SELECT item_key, evidence FROM events WHERE event = 'deleted'")
    }
    assert set(deleted) == {k(post["id"]), k(doomed["commentUrn"])}
    assert deleted[k(post["id"])]["http_status"] == 404
    assert deleted[k(post["id"])]["url"].endswith("/rest/posts/" + post["id"].replace(":", "%3A"))
    assert deleted[k(doomed["commentUrn"])]["http_status"] == 404
    assert deleted[k(doomed["commentUrn"])]["absent_from"] == {"comments_of": other["id"]}
    statuses = dict(conn.execute("SELECT item_key, status FROM items").fetchall())
    assert statuses[k(kept["commentUrn"])] == "live" and statuses[k(other["id"])] == "live"
    conn.close()
    lookups = [p for p in pages.paths(mark) if "/comments/" in p]
    assert lookups == [f"/rest/socialActions/{other['id'].replace(':', '%3A')}/comments/{doomed['id']}"]


def test_a_bare_429_stops_that_account_until_midnight_utc_and_the_others_carry_on(pages):
    pages.state.add_comment(pages.hillside["id"], ANN, "open Sundays?", created_at=NOW - timedelta(hours=3))
    # no wait allowed: a bare 429 within max_rate_limit_wait of midnight UTC is waited out; the test runs at any hour
    config = load_config(pages.config("riverside hillside", max_wait=0))
    # LinkedIn's answer when the day's calls are spent: 429, no Retry-After, no rate-limit header at all.
    pages.server.faults.append(Fault(r"/rest/posts\?.*organization%3A1002", status=429, times=1))
    before = datetime.now(UTC)
    first = run_archive(config)
    after = datetime.now(UTC)
    outcome = {a.account: a for a in first.accounts}
    assert outcome["riverside-li"].status == "ok" and outcome["riverside-li"].new_items == 3
    hillside = outcome["hillside-li"]
    assert hillside.status == "failed" and "HTTP 429" in hillside.error and "midnight UTC" in hillside.error
    conn = pages.db()
    (until,) = conn.execute(
        "SELECT value FROM cursors WHERE account = 'hillside-li' AND name = ?", (STOPPED_UNTIL,)
    ).fetchone()
    conn.close()
    reset = datetime.fromisoformat(until.replace("Z", "+00:00"))
    # the midnight after the run's last exchange: the one after its start, or after its end if midnight fell between
    assert reset in (next_midnight_utc(before), next_midnight_utc(after))
    assert reset.hour == reset.minute == reset.second == 0
    # A run later the same day does not call LinkedIn for that account at all.
    mark = len(pages.server.requests_log)
    second = run_archive(config, now=lambda: reset - timedelta(minutes=1))
    outcome = {a.account: a for a in second.accounts}
    assert outcome["riverside-li"].status == "ok"
    assert outcome["hillside-li"].status == "failed" and outcome["hillside-li"].requests == 0
    assert "not called again before" in outcome["hillside-li"].error
    assert not any(h.get("Authorization") == f"Bearer {OTHER_TOKEN}" for *_, h in pages.server.requests_log[mark:])
    # After midnight UTC it is called again and completes.
    third = run_archive(config, now=lambda: reset + timedelta(minutes=1))
    outcome = {a.account: a for a in third.accounts}
    assert outcome["hillside-li"].status == "ok" and outcome["hillside-li"].new_items == 2
    assert third.exit_code == 0


def test_a_429_with_retry_after_is_waited_out(pages, http_waits):
    pages.server.faults.append(Fault(r"/rest/posts\?", status=429, times=1, headers={"Retry-After": "2"}))
    code, output = pages.run()
    assert code == 0, output
    assert 2.0 in http_waits
    conn = pages.db()
    assert conn.execute("SELECT count(*) FROM cursors WHERE name = ?", (STOPPED_UNTIL,)).fetchone()[0] == 0
    conn.close()


def test_a_page_that_repeats_is_a_paging_loop_not_more_data(pages):
    assert pages.run()[0] == 0
    comments = f"/rest/socialActions/{pages.posts[0]['id'].replace(':', '%3A')}/comments"
    state = pages.state
    first = state.add_comment(pages.posts[0]["id"], ANN, "a", created_at=NOW - timedelta(days=1))
    page = {
        "paging": {"start": 0, "count": 100, "links": [{"rel": "next", "href": f"{comments}?start=1"}]},
        "elements": [state.comments[first["commentUrn"]]],
    }
    pages.server.faults.append(Fault(re.escape(comments), status=200, body=json.dumps(page).encode(), times=50))
    code, output = pages.run()
    assert code == 1 and "paging loop" in output
    conn = pages.db()
    assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 0
    conn.close()


def test_daily_limit_policy_waits_for_midnight_utc():
    policy = DailyLimitUTC()
    at = datetime(2026, 11, 23, 21, 30, tzinfo=UTC).timestamp()
    bare = requests.Response()
    bare.status_code = 429
    assert policy.wait_before_request(at) == 0
    policy.observe(bare, at)
    assert policy.wait_after_429(bare, at) == pytest.approx(2.5 * 3600)
    assert policy.wait_before_request(at + 3600) == pytest.approx(1.5 * 3600)  # nothing more today
    told = requests.Response()
    told.status_code = 429
    told.headers["Retry-After"] = "30"
    assert DailyLimitUTC().wait_after_429(told, at) == 30


def test_api_version_option_is_checked_and_sent(pages):
    bad = pages.config(options='options = {api_version = "2026-10"}')
    result = CliRunner().invoke(app, ["run", "--config", str(bad), "--quiet"])
    assert result.exit_code == 2
    assert "accounts[0].options.api_version: '2026-10' is not valid" in result.output
    good = pages.config(options='options = {api_version = "202601"}')
    result = CliRunner().invoke(app, ["run", "--config", str(good), "--quiet"])
    assert result.exit_code == 0, result.output
    assert {h["LinkedIn-Version"] for *_, h in pages.server.requests_log if h.get("LinkedIn-Version")} == {"202601"}


def test_no_token_under_the_archive_warcs_check_and_rebuild_gives_the_same_rows(pages, tmp_path):
    photo = make_png(7, 7, 9)
    pic = pages.state.add_post(1001, "Vaccines are in", created_at=NOW - timedelta(days=1), image=(photo, "vials"))
    comment = pages.state.add_comment(pic["id"], ANN, "Do I need to book?", created_at=NOW - timedelta(hours=5))
    pages.state.add_comment(comment["commentUrn"], BOB, "No, walk in", created_at=NOW - timedelta(hours=4))
    config = load_config(pages.config("riverside hillside", max_wait=0))  # the 429 below stops at any hour
    assert run_archive(config).exit_code == 0
    pages.state.edit_comment(comment["commentUrn"], "Do I need to book? (asking for my mother)", at=NOW)
    pages.state.delete_post(pages.posts[0]["id"])
    pages.server.faults.append(Fault(r"organization%3A1002", status=429, times=1))
    # Run ids (and WARC names, which rebuild replays in order) have one-second resolution: keep them apart.
    second = run_archive(config, now=lambda: datetime.now(UTC) + timedelta(seconds=2))
    assert [a.status for a in second.accounts] == ["ok", "failed"]
    arch = pages.tmp_path / "arch"
    for path in arch.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data += gzip.decompress(data)
            assert TOKEN.encode() not in data and OTHER_TOKEN.encode() not in data, path
    warcs = sorted((arch / "warcs").glob("*.warc.gz"))
    assert len(warcs) == 2
    for warc in warcs:
        check = subprocess.run(
            [sys.executable, "-m", "warcio.cli", "check", "-v", str(warc)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout
    out = tmp_path / "rebuilt.db"
    result = CliRunner().invoke(
        app, ["rebuild", "--config", str(pages.config("riverside hillside")), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    live, rebuilt = sqlite3.connect(arch / "archive.db"), sqlite3.connect(out)
    for name, query in COMPARED.items():
        expected = live.execute(query).fetchall()
        assert expected, name
        assert rebuilt.execute(query).fetchall() == expected, name
    statuses = dict(rebuilt.execute("SELECT status, count(*) FROM items GROUP BY status").fetchall())
    assert statuses == {"live": 5, "edited": 1, "deleted": 1}


def test_check_credential_names_the_page_or_refuses_the_token(pages):
    account = load_config(pages.config()).accounts[0]
    connector = connector_for("linkedin", account)
    assert connector.check_credential(account, TOKEN, 5).who == "Riverside Clinic"
    with pytest.raises(AuthError, match="renew"):
        connector.check_credential(account, OTHER_TOKEN, 5)  # a token of another page's administrator


def test_a_short_page_is_not_the_end_and_proves_nothing(pages):
    post = pages.posts[1]
    first = pages.state.add_comment(post["id"], ANN, "first", created_at=NOW - timedelta(days=1))
    second = pages.state.add_comment(post["id"], BOB, "second", created_at=NOW - timedelta(days=1))
    assert pages.run()[0] == 0
    # LinkedIn answers a page with fewer elements than asked for, and says there is more.
    comments = f"/rest/socialActions/{post['id'].replace(':', '%3A')}/comments"
    short = {
        "paging": {"start": 0, "count": 100, "links": [{"rel": "next", "href": f"{comments}?start=1&count=100"}]},
        "elements": [pages.state.comments[first["commentUrn"]]],
    }
    pages.server.faults.append(Fault(re.escape(comments) + r"\?start=0", status=200, body=json.dumps(short).encode()))
    mark = len(pages.server.requests_log)
    code, output = pages.run()
    assert code == 0, output
    asked = [q for _, p, q, _ in pages.server.requests_log[mark:] if p == comments]
    assert asked == ["start=0&count=100", "start=1&count=100"]
    conn = pages.db()
    assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 0
    statuses = dict(conn.execute("SELECT item_key, status FROM items").fetchall())
    assert statuses[k(first["commentUrn"])] == statuses[k(second["commentUrn"])] == "live"
    conn.close()


def test_an_empty_page_that_says_there_is_more_is_not_the_end(pages):
    """LinkedIn can leave out, after paging, what the member may not see: a page may come back empty with a
    next link and no total. The listing goes on where the link says; more than EMPTY_PAGES_MAX such pages in
    a row is a paging loop. Neither is taken for a deletion."""
    post = pages.posts[1]
    first = pages.state.add_comment(post["id"], ANN, "first", created_at=NOW - timedelta(days=1))
    second = pages.state.add_comment(post["id"], BOB, "second", created_at=NOW - timedelta(days=1))
    assert pages.run()[0] == 0
    third = pages.state.add_comment(post["id"], ANN, "third", created_at=NOW - timedelta(hours=1))
    comments = f"/rest/socialActions/{post['id'].replace(':', '%3A')}/comments"

    def empty(start: int) -> bytes:
        links = [{"rel": "next", "href": f"{comments}?start={start}&count=100"}]
        return json.dumps({"paging": {"start": 0, "count": 100, "links": links}, "elements": []}).encode()

    pages.server.faults.append(Fault(re.escape(comments) + r"\?start=0", status=200, body=empty(1)))
    mark = len(pages.server.requests_log)
    code, output = pages.run()
    assert code == 0, output
    asked = [q for _, p, q, _ in pages.server.requests_log[mark:] if p == comments]
    assert asked == ["start=0&count=100", "start=1&count=100"], asked
    conn = pages.db()
    assert conn.execute("SELECT count(*) FROM item_versions WHERE text = 'third'").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 0
    conn.close()
    # Empty pages without end: the account stops with the loop named, nothing concluded from the listing.
    for start in range(EMPTY_PAGES_MAX + 5):
        pages.server.faults.append(Fault(re.escape(f"{comments}?start={start}&"), status=200, body=empty(start + 1)))
    code, output = pages.run()
    assert code == 1 and f"{EMPTY_PAGES_MAX + 1} empty pages in a row" in output, output
    conn = pages.db()
    assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 0
    statuses = dict(conn.execute("SELECT item_key, status FROM items").fetchall())
    assert {statuses[k(c["commentUrn"])] for c in (first, second, third)} == {"live"}
    conn.close()
