"""X end to end: the sample X API v2 on loopback, archived by `archiver run`.

Exact rows for posts, replies (inside and outside the search window), edit chains stored as versions of
one item, media and quoted posts through expansions, DM events grouped by conversation, deletions proven by
a /2/tweets?ids= lookup (never from a failed listing), a 429 honoured and resumed, the token never written,
`warcio check` on the WARCs and `archiver rebuild` giving the same rows.
"""

from __future__ import annotations

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

from archiver import doctor
from archiver.cli import app
from archiver.config import load_config
from archiver.connectors.x import XConnector, XRateLimit
from archiver.demo.png import make_png
from archiver.demo.x_server import Fault, SampleXServer, XState
from tests.revisions import captured_at_revision_1, recorded_revisions
from tests.test_rebuild import COMPARED

TOKEN = "x-user-context-token-Zr81QmvB"
NOW = datetime.now(UTC).replace(microsecond=0)


class XClinic:
    """A clinic's X account, two members of the public, a few posts; served on loopback."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, posts: int = 3, access_level: str = "basic"):
        self.state = XState()
        self.clinic = self.state.add_user("riversideclinic", "Riverside Clinic")
        self.ann = self.state.add_user("ann_p", "Ann Patient")
        self.bob = self.state.add_user("bob_q", "Bob Public")
        self.posts = [
            self.state.add_tweet(
                self.clinic["id"],
                f"Clinic post number {i}",
                created_at=NOW - timedelta(days=2, minutes=posts - i),
                media=[(make_png(8, 8, i), f"photo {i}")] if i == 0 else None,
            )
            for i in range(posts)
        ]
        self.tmp_path = tmp_path
        self.access_level = access_level
        monkeypatch.setenv("X_TOKEN", TOKEN)
        self.server = SampleXServer(self.state, TOKEN, access_level=access_level)
        self.server.start()

    def config(self, options: str = "") -> Path:
        path = self.tmp_path / "archiver.toml"
        path.write_text(
            f"""
[archive]
dir = "arch"
recheck_days = 14

[[accounts]]
name = "clinic-x"
platform = "x"
api_base = "{self.server.base_url}"
account = "@riversideclinic"
token_env = "X_TOKEN"
{options or f'options = {{ access_level = "{self.access_level}" }}'}
"""
        )
        return path

    def run(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["run", "--config", str(self.config()), "--quiet", *args])
        return result.exit_code, result.output

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.tmp_path / "arch" / "archive.db")
        conn.row_factory = sqlite3.Row
        return conn

    def counts(self) -> dict[str, int]:
        conn = self.db()
        found = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("item_versions", "events", "media_files", "cursors")
        }
        conn.close()
        return found

    def paths(self, since: int = 0) -> list[str]:
        return [p for _, p, _ in self.server.requests_log[since:]]


@pytest.fixture
def clinic(tmp_path, monkeypatch):
    c = XClinic(tmp_path, monkeypatch)
    yield c
    c.server.stop()


def next_second() -> None:
    """Wait into the next second: `archiver rebuild` orders WARC files by name, whose time has 1 s resolution
    (two runs in one second replay in the order of their random run ids)."""
    time.sleep(1 - datetime.now(UTC).microsecond / 1e6 + 0.01)


def k(tweet: dict) -> str:
    return f"x:{tweet['id']}"


def test_first_run_archives_posts_replies_quotes_media_and_dms(clinic):
    state = clinic.state
    post = clinic.posts[2]
    reply = state.add_tweet(
        clinic.ann["id"], "When are flu shots?", created_at=NOW - timedelta(days=1), reply_to=post["id"]
    )
    nested = state.add_tweet(
        clinic.clinic["id"], "Mondays 9-12!", created_at=NOW - timedelta(hours=20), reply_to=reply["id"]
    )
    other = state.add_tweet(clinic.bob["id"], "Public health notice", created_at=NOW - timedelta(days=3))
    quote = state.add_tweet(
        clinic.clinic["id"], "Worth reading", created_at=NOW - timedelta(hours=2), quote=other["id"]
    )
    conv = f"{clinic.clinic['id']}-{clinic.ann['id']}"
    dm1 = state.add_dm(conv, clinic.ann["id"], text="my DOB is 01/02/1980", created_at=NOW - timedelta(hours=5))
    dm2 = state.add_dm(
        conv,
        clinic.clinic["id"],
        text="Thanks, see the form",
        created_at=NOW - timedelta(hours=4),
        media=[(make_png(4, 4, 9), "intake form")],
    )
    group = "1578398451921985538"
    join = state.add_dm(
        group,
        clinic.clinic["id"],
        event_type="ParticipantsJoin",
        participant_ids=[clinic.bob["id"]],
        created_at=NOW - timedelta(hours=3),
    )
    leave = state.add_dm(
        group,
        clinic.bob["id"],
        event_type="ParticipantsLeave",
        participant_ids=[clinic.bob["id"]],
        created_at=NOW - timedelta(hours=1),
    )
    code, output = clinic.run()
    assert code == 0, output
    conn = clinic.db()
    rows = [
        tuple(r)
        for r in conn.execute(
            "SELECT item_key, kind, author_handle, text, parent_key, thread_key, conversation_key, status, versions "
            "FROM items ORDER BY item_key"
        )
    ]
    c1, c2 = f"x:dm:{conv}", f"x:dm:{group}"
    expected = [
        (k(clinic.posts[0]), "post", "riversideclinic", "Clinic post number 0", None, k(clinic.posts[0]), None),
        (k(clinic.posts[1]), "post", "riversideclinic", "Clinic post number 1", None, k(clinic.posts[1]), None),
        (k(post), "post", "riversideclinic", "Clinic post number 2", None, k(post), None),
        (k(reply), "comment", "ann_p", "When are flu shots?", k(post), k(post), None),
        (k(nested), "comment", "riversideclinic", "Mondays 9-12!", k(reply), k(post), None),
        (k(other), "post", "bob_q", "Public health notice", None, None, None),
        (k(quote), "post", "riversideclinic", "Worth reading", None, k(quote), None),
        (f"x:dm_event:{dm1['id']}", "message", "ann_p", "my DOB is 01/02/1980", None, c1, c1),
        (f"x:dm_event:{dm2['id']}", "message", "riversideclinic", "Thanks, see the form", None, c1, c1),
        (f"x:dm_event:{join['id']}", "message", "riversideclinic", "", None, c2, c2),
        (f"x:dm_event:{leave['id']}", "message", "bob_q", "", None, c2, c2),
    ]
    assert rows == sorted(e + ("live", 1) for e in expected)
    kinds = dict(
        conn.execute("SELECT item_key, json_extract(raw_json, '$.event_type') FROM item_versions WHERE kind='message'")
    )
    assert kinds[f"x:dm_event:{join['id']}"] == "ParticipantsJoin"
    assert kinds[f"x:dm_event:{leave['id']}"] == "ParticipantsLeave"
    media = {r["sha256"] for r in conn.execute("SELECT sha256 FROM media_files")}
    assert media == {hashlib.sha256(make_png(8, 8, 0)).hexdigest(), hashlib.sha256(make_png(4, 4, 9)).hexdigest()}
    item_media = json.loads(
        conn.execute("SELECT media FROM item_versions WHERE item_key = ?", (k(clinic.posts[0]),)).fetchone()[0]
    )
    assert item_media[0]["description"] == "photo 0" and item_media[0]["type"] == "photo"
    assert [tuple(r) for r in conn.execute("SELECT event, count(*) FROM events GROUP BY event")] == [("created", 11)]
    conn.close()
    # The replies came from recent search on the conversation; the listing asked for the expansions.
    timeline = [q for _, p, q in clinic.server.requests_log if p.endswith("/tweets") and "/users/" in p]
    assert "edit_history_tweet_ids" in timeline[0] and "attachments.media_keys" in timeline[0]
    assert "/2/tweets/search/recent" in clinic.paths() and "/2/tweets/search/all" not in clinic.paths()
    result = CliRunner().invoke(app, ["verify", "--config", str(clinic.config())])
    assert result.exit_code == 0, result.output


def test_a_repost_keeps_the_whole_post_it_reposted(clinic):
    """X cuts a repost's own text ("RT @user: ...") at 140 characters: what the account published is whole only
    in the reposted post, which the expansion brings and the archive keeps (and scans)."""
    long = (
        "Community clinic update: our walk-in hours change next week. Patients with appointments keep them; "
        "everyone else please call ahead. Front desk: Maria R., DOB 04/12/1961, asked us to share this."
    )
    original = clinic.state.add_tweet(clinic.bob["id"], long, created_at=NOW - timedelta(hours=6))
    repost = clinic.state.add_tweet(
        clinic.clinic["id"], "", created_at=NOW - timedelta(hours=5), retweet=original["id"]
    )
    assert len(repost["text"]) == 140 and repost["text"].startswith("RT @bob_q: ")
    code, output = clinic.run()
    assert code == 0, output
    conn = clinic.db()
    found = dict(conn.execute("SELECT item_key, text FROM items WHERE item_key IN (?, ?)", (k(original), k(repost))))
    flagged = {r[0] for r in conn.execute("SELECT item_key FROM flags")}
    conn.close()
    assert found == {k(original): long, k(repost): repost["text"]}
    assert k(original) in flagged  # the date of birth after the cut was scanned


def test_paging_and_since_id_increments(tmp_path, monkeypatch):
    c = XClinic(tmp_path, monkeypatch, posts=230)
    try:
        code, output = c.run()
        assert code == 0, output
        conn = c.db()
        assert conn.execute("SELECT count(*) FROM items WHERE kind = 'post'").fetchone()[0] == 230
        newest = max(int(p["id"]) for p in c.posts)
        assert conn.execute("SELECT value FROM cursors WHERE name = 'tweets_newest_id'").fetchone()[0] == str(newest)
        conn.close()
        pages = [q for _, p, q in c.server.requests_log if p == f"/2/users/{c.clinic['id']}/tweets"]
        assert len(pages) == 3 and "pagination_token" not in pages[0]
        assert all("pagination_token=" in q for q in pages[1:])
        before = len(c.server.requests_log)
        new = c.state.add_tweet(c.clinic["id"], "A new post", created_at=NOW - timedelta(minutes=5))
        assert c.run()[0] == 0
        second = [q for _, p, q in c.server.requests_log[before:] if p == f"/2/users/{c.clinic['id']}/tweets"]
        assert len(second) == 1 and f"since_id={newest}" in second[0]
        conn = c.db()
        assert conn.execute("SELECT text FROM items WHERE item_key = ?", (k(new),)).fetchone()[0] == "A new post"
        conn.close()
    finally:
        c.server.stop()


def test_edit_chain_is_one_item_with_every_version(clinic):
    post = clinic.posts[1]
    first_edit = clinic.state.edit_tweet(post["id"], "Clinic post number 1 (fixed typo)", at=NOW - timedelta(days=1))
    assert clinic.run()[0] == 0
    second_edit = clinic.state.edit_tweet(first_edit["id"], "Clinic post number 1 (final)", at=NOW - timedelta(hours=1))
    assert clinic.run()[0] == 0
    conn = clinic.db()
    versions = [
        tuple(r)
        for r in conn.execute(
            "SELECT native_id, text, edited_at IS NOT NULL FROM item_versions WHERE item_key = ? ORDER BY id",
            (k(post),),
        )
    ]
    assert versions == [
        (post["id"], "Clinic post number 1", 0),
        (first_edit["id"], "Clinic post number 1 (fixed typo)", 1),
        (second_edit["id"], "Clinic post number 1 (final)", 1),
    ]
    assert conn.execute("SELECT count(*) FROM items WHERE text LIKE 'Clinic post number 1%'").fetchone()[0] == 1
    events = [r[0] for r in conn.execute("SELECT event FROM events WHERE item_key = ? ORDER BY id", (k(post),))]
    assert events == ["created", "edited", "edited"]
    assert tuple(conn.execute("SELECT status, versions FROM items WHERE item_key = ?", (k(post),)).fetchone()) == (
        "edited",
        3,
    )
    conn.close()
    # A third run sees nothing new: no version is appended twice.
    before = clinic.counts()
    assert clinic.run()[0] == 0
    assert clinic.counts() == before


def test_thread_older_than_the_search_window_is_said_and_still_checked(clinic):
    old = clinic.state.add_tweet(clinic.clinic["id"], "Ten days ago", created_at=NOW - timedelta(days=10))
    old_reply = clinic.state.add_tweet(
        clinic.ann["id"], "late answer", created_at=NOW - timedelta(days=9), reply_to=old["id"]
    )
    result = CliRunner().invoke(app, ["run", "--config", str(clinic.config()), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    (notice,) = [n for n in summary["accounts"][0]["notices"] if "search window" in n]
    assert "1 thread(s) older than the 7-day search window" in notice and old["id"] in notice
    conn = clinic.db()
    keys = {r[0] for r in conn.execute("SELECT item_key FROM items")}
    assert k(old) in keys and k(old_reply) not in keys  # recent search cannot see it
    conn.close()
    # Still inside the re-check window: a later deletion of the old post is proven by lookup.
    clinic.state.delete_tweet(old["id"])
    assert clinic.run()[0] == 0
    conn = clinic.db()
    assert conn.execute("SELECT status FROM items WHERE item_key = ?", (k(old),)).fetchone()[0] == "deleted"
    conn.close()


def test_full_archive_access_reads_old_threads(tmp_path, monkeypatch):
    c = XClinic(tmp_path, monkeypatch, access_level="pro")
    try:
        old = c.state.add_tweet(c.clinic["id"], "Ten days ago", created_at=NOW - timedelta(days=10))
        reply = c.state.add_tweet(c.ann["id"], "late answer", created_at=NOW - timedelta(days=9), reply_to=old["id"])
        code, output = c.run()
        assert code == 0, output
        assert "search window" not in output
        conn = c.db()
        row = conn.execute("SELECT parent_key, thread_key FROM items WHERE item_key = ?", (k(reply),)).fetchone()
        assert tuple(row) == (k(old), k(old))
        conn.close()
        searches = [q for _, p, q in c.server.requests_log if p == "/2/tweets/search/all"]
        assert searches and any("start_time=" in q for q in searches)
    finally:
        c.server.stop()


def test_deletions_are_proven_by_lookup(clinic):
    post, other = clinic.posts[2], clinic.posts[1]
    reply = clinic.state.add_tweet(
        clinic.bob["id"], "my MRN is 00482913", created_at=NOW - timedelta(days=1), reply_to=other["id"]
    )
    assert clinic.run()[0] == 0
    clinic.state.delete_tweet(post["id"])
    clinic.state.delete_tweet(reply["id"])
    code, output = clinic.run()
    assert code == 0, output
    conn = clinic.db()
    deleted = {
        r["item_key"]: json.loads(r["evidence"])
        for r in conn.execute("SELECT item_key, evidence FROM events WHERE event = 'deleted'")
    }
    assert set(deleted) == {k(post), k(reply)}
    for key, evidence in deleted.items():
        assert evidence["method"] == "lookup" and "/2/tweets?ids=" in evidence["url"]
        assert evidence["error"]["title"] == "Not Found Error"
        assert evidence["error"]["type"] == "https://api.twitter.com/2/problems/resource-not-found"
        assert evidence["error"]["resource_id"] == key.removeprefix("x:")
    statuses = dict(conn.execute("SELECT item_key, status FROM items").fetchall())
    assert statuses[k(other)] == "live" and statuses[k(clinic.posts[0])] == "live"
    conn.close()


def test_failed_lookup_or_listing_marks_nothing_deleted(clinic, http_waits):
    reply = clinic.state.add_tweet(
        clinic.bob["id"], "thanks", created_at=NOW - timedelta(days=1), reply_to=clinic.posts[1]["id"]
    )
    assert clinic.run()[0] == 0
    clinic.state.delete_tweet(reply["id"])
    clinic.server.faults.append(Fault(r"^/2/tweets\?ids=", status=503, times=100))
    code, output = clinic.run()
    assert code == 1 and "HTTP 503" in output
    assert http_waits  # the failing call was retried, after back-off waits
    conn = clinic.db()
    assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 0
    conn.close()
    # Conversation search fails (the thread cannot be read): still no conclusion drawn from the absence.
    clinic.server.faults[:] = [Fault(r"^/2/tweets/search/recent", status=500, times=100)]
    code, output = clinic.run()
    assert code == 1
    conn = clinic.db()
    assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 0
    conn.close()
    clinic.server.faults.clear()
    assert clinic.run()[0] == 0
    conn = clinic.db()
    assert [r[0] for r in conn.execute("SELECT item_key FROM events WHERE event = 'deleted'")] == [k(reply)]
    conn.close()


def test_each_endpoint_has_its_own_budget(tmp_path, monkeypatch, http_waits):
    """X limits each endpoint on its own: one whose budget is spent for this window (remaining 0) makes only
    its own next call wait, not a call to another endpoint."""
    single = XClinic(tmp_path, monkeypatch, posts=1)
    single.server.rate_limit = 1  # every endpoint's first answer says: nothing left in this window
    try:
        code, output = single.run()
        endpoints = [re.sub(r"/\d[\d-]*", "/:id", path) for path in single.paths()]
    finally:
        single.server.stop()
    assert code == 0, output
    assert len(endpoints) == len(set(endpoints)) > 2 and http_waits == []
    policy = XRateLimit()
    spent = requests.Response()
    spent.headers["x-rate-limit-remaining"], spent.headers["x-rate-limit-reset"] = "0", "1800000600"
    spent.request = requests.Request("GET", "https://api.x.com/2/users/12/tweets?max_results=100").prepare()
    policy.observe(spent, 1_800_000_000.0)
    assert policy.wait_before_request(1_800_000_000.0, "https://api.x.com/2/users/12/tweets?pagination_token=b") == 600
    assert policy.wait_before_request(1_800_000_000.0, "https://api.x.com/2/tweets/search/recent?query=x") == 0


def test_rate_limited_run_waits_for_the_reset_and_resumes(clinic, http_waits):
    reset = int(datetime.now(UTC).timestamp()) + 2
    clinic.server.faults.append(
        Fault(
            r"^/2/users/\d+/tweets",
            status=429,
            times=1,
            body=json.dumps({"errors": [{"code": 88, "message": "Rate limit exceeded"}]}).encode(),
            headers={"x-rate-limit-limit": "900", "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)},
        )
    )
    code, output = clinic.run()
    assert code == 0, output
    assert http_waits and 0 < http_waits[0] <= 3
    assert clinic.counts()["item_versions"] == 3
    assert_rebuild_equals(clinic, clinic.tmp_path / "rebuilt-1.db")  # the 429 is in the WARC and replayed
    # A reset further away than max_rate_limit_wait gives the account up for this run, without hammering.
    clinic.server.faults.append(
        Fault(
            r"^/2/users/\d+/tweets",
            status=429,
            times=100,
            body=b'{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}',
            headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset + 3600)},
        )
    )
    before = len(clinic.server.requests_log)
    code, output = clinic.run()
    assert code == 1 and "max_rate_limit_wait" in output
    assert sum(1 for p in clinic.paths(before) if p.endswith("/tweets") and "/users/" in p) == 1


def test_token_never_written_warcs_check_and_rebuild_equals(clinic, tmp_path):
    post = clinic.posts[1]
    clinic.state.add_tweet(clinic.ann["id"], "hello", created_at=NOW - timedelta(days=1), reply_to=post["id"])
    edit = clinic.state.edit_tweet(post["id"], "edited once", at=NOW - timedelta(days=1))
    assert clinic.run()[0] == 0
    next_second()
    clinic.state.edit_tweet(edit["id"], "edited twice", at=NOW - timedelta(hours=1))
    clinic.state.delete_tweet(clinic.posts[2]["id"])
    conv = f"{clinic.clinic['id']}-{clinic.ann['id']}"
    clinic.state.add_dm(conv, clinic.ann["id"], text="hi", created_at=NOW - timedelta(hours=1))
    assert clinic.run()[0] == 0
    arch = clinic.tmp_path / "arch"
    for path in arch.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data += gzip.decompress(data)
            assert TOKEN.encode() not in data, path
    for warc in sorted((arch / "warcs").glob("*.warc.gz")):
        check = subprocess.run(
            [sys.executable, "-m", "warcio.cli", "check", "-v", str(warc)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout
    rebuilt = assert_rebuild_equals(clinic, tmp_path / "rebuilt.db")
    statuses = dict(rebuilt.execute("SELECT status, count(*) FROM items GROUP BY status").fetchall())
    assert statuses["deleted"] == 1 and statuses["edited"] == 1


def assert_rebuild_equals(clinic: XClinic, out: Path) -> sqlite3.Connection:
    """`archiver rebuild` from the WARCs alone gives the same items, versions, events, media and cursors."""
    result = CliRunner().invoke(app, ["rebuild", "--config", str(clinic.config()), "--out", str(out)])
    assert result.exit_code == 0, result.output
    live, rebuilt = clinic.db(), sqlite3.connect(out)
    for name, query in COMPARED.items():
        expected = [tuple(r) for r in live.execute(query).fetchall()]
        assert [tuple(r) for r in rebuilt.execute(query).fetchall()] == expected, name
    live.close()
    return rebuilt


def test_doctor_checks_the_token_with_one_call(clinic, monkeypatch):
    config = load_config(clinic.config())
    (check,) = [c for c in doctor.run_doctor(config) if c.name == "account clinic-x"]
    assert (check.status, check.message) == ("ok", "token from $X_TOKEN accepted (@riversideclinic)")
    assert clinic.paths() == ["/2/users/me"]
    monkeypatch.setenv("X_TOKEN", "expired-x-token-77")
    (check,) = [c for c in doctor.run_doctor(config) if c.name == "account clinic-x"]
    assert check.status == "fail" and "refused the token from $X_TOKEN (HTTP 401)" in check.message
    assert "expired-x-token-77" not in check.message


def test_a_next_token_that_repeats_stops_the_listing(clinic):
    page = {"data": [{"id": clinic.posts[0]["id"], "text": "x"}], "meta": {"result_count": 1, "next_token": "again"}}
    clinic.server.faults.append(Fault(r"^/2/users/\d+/tweets", status=200, body=json.dumps(page).encode(), times=2))
    code, output = clinic.run()
    assert code == 1 and "paging loop" in output
    assert sum(1 for p in clinic.paths() if p.endswith("/tweets") and "/users/" in p) == 2
    clinic.server.faults.clear()
    assert clinic.run()[0] == 0
    conn = clinic.db()
    assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 3
    assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 0
    conn.close()


def test_forgetting_handled_posts_changes_nothing(tmp_path, monkeypatch):
    """The connector's memory of handled posts is bounded (RecentSet). With room for only two, every post
    is handled again whenever it comes back, and the archive is the same: no duplicate version or event."""
    from archiver.connectors import base, x

    (tmp_path / "small").mkdir()
    small = XClinic(tmp_path / "small", monkeypatch)
    try:
        small.state.add_tweet(
            small.ann["id"], "a reply", created_at=NOW - timedelta(days=1), reply_to=small.posts[0]["id"]
        )
        monkeypatch.setattr(x, "RecentSet", lambda: base.RecentSet(2))
        assert small.run()[0] == 0
        assert small.run()[0] == 0
        db = sqlite3.connect(small.tmp_path / "arch" / "archive.db")
        versions = db.execute("SELECT count(*), count(DISTINCT item_key) FROM item_versions").fetchone()
        events = db.execute("SELECT event, count(*) FROM events GROUP BY event").fetchall()
    finally:
        small.server.stop()
    assert versions == (4, 4) and events == [("created", 4)]
    memory = base.RecentSet(4)
    for key in "abcde":
        memory.add(key)
    assert "e" in memory and "d" in memory and "a" not in memory


# A long post (X Premium): X's `text` keeps only about the first 280 characters; the PHI comes after them.
LONG_REPLY = (
    "Thank you for the reminder about flu shots this week. I wanted to say how kind the evening staff were when I "
    "brought my mother in last Tuesday: the nurse explained everything twice, and the wait was much shorter than we "
    "feared it would be. We will be back for her booster next month. For the front desk, her date of birth is "
    "03/14/1948 and her chart is under her maiden name."
)


def dob_flags(conn: sqlite3.Connection, key: str) -> list[tuple[int, int]]:
    """(version id, where the flagged span starts) of each date-of-birth flag of the item."""
    query = "SELECT version_id, span_start FROM flags WHERE item_key = ? AND category = 'dob' ORDER BY id"
    return [tuple(r) for r in conn.execute(query, (key,))]


def test_a_long_post_is_archived_whole_and_scanned_past_the_cut(clinic, tmp_path):
    """X cuts a long post's `text`; the whole text is in `note_tweet`, asked for in tweet.fields: it is the
    item's text, so the date of birth after the cut is archived and flagged, and the rebuild gives the same."""
    reply = clinic.state.add_tweet(
        clinic.ann["id"], LONG_REPLY, created_at=NOW - timedelta(days=1), reply_to=clinic.posts[1]["id"]
    )
    cut = reply["text"]
    assert len(cut) <= 280 < LONG_REPLY.index("03/14/1948") and LONG_REPLY.startswith(cut)
    assert clinic.run()[0] == 0
    conn = clinic.db()
    ((version, text),) = conn.execute("SELECT id, text FROM item_versions WHERE item_key = ?", (k(reply),))
    assert text == LONG_REPLY
    assert [start >= 280 for v, start in dob_flags(conn, k(reply)) if v == version] == [True]
    conn.close()
    reads = [q for _, p, q in clinic.server.requests_log if p.startswith("/2/tweets") or p.endswith("/tweets")]
    assert reads and all("note_tweet" in q for q in reads)
    assert recorded_revisions(clinic.tmp_path / "arch" / "warcs") == [{"x": XConnector.REQUEST_REVISION}]
    assert_rebuild_equals(clinic, tmp_path / "rebuilt.db")


def test_a_long_post_archived_cut_is_read_whole_by_the_next_run_which_says_it_is_no_edit(clinic, monkeypatch, tmp_path):
    """A run at request revision 1 did not ask for note_tweet and archived the cut text; it still rebuilds. The
    next run reads the same post id whole: a new version (flagged past the cut) with no edit time, which the run
    summary says is the fuller capture, not an edit (on X an edit is a new post id)."""
    reply = clinic.state.add_tweet(
        clinic.ann["id"], LONG_REPLY, created_at=NOW - timedelta(days=1), reply_to=clinic.posts[1]["id"]
    )
    with captured_at_revision_1(monkeypatch, XConnector):
        assert clinic.run()[0] == 0
    assert not [q for _, _, q in clinic.server.requests_log if "note_tweet" in q]
    assert clinic.run()[0] == 0
    conn = clinic.db()
    versions = conn.execute(
        "SELECT id, native_id, edited_at, text FROM item_versions WHERE item_key = ? ORDER BY id", (k(reply),)
    ).fetchall()
    assert [tuple(v)[1:] for v in versions] == [(reply["id"], None, reply["text"]), (reply["id"], None, LONG_REPLY)]
    events = conn.execute("SELECT event, evidence FROM events WHERE item_key = ? ORDER BY id", (k(reply),)).fetchall()
    assert [e[0] for e in events] == ["created", "edited"]
    assert "not_an_edit" not in json.loads(events[0][1])
    assert json.loads(events[1][1])["not_an_edit"].startswith("the whole text, read from note_tweet")
    assert [v for v, _ in dob_flags(conn, k(reply))] == [versions[1][0]]
    (summary,) = conn.execute("SELECT summary FROM run_results ORDER BY rowid DESC LIMIT 1").fetchone()
    (notice,) = [n for a in json.loads(summary)["accounts"] for n in a["notices"] if k(reply) in n]
    assert "note_tweet" in notice and "not an edit" in notice
    conn.close()
    assert recorded_revisions(clinic.tmp_path / "arch" / "warcs") == [{"x": 1}, {"x": XConnector.REQUEST_REVISION}]
    assert_rebuild_equals(clinic, tmp_path / "rebuilt.db")
