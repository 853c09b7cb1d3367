"""Bluesky end to end: the sample AT Protocol services on loopback, archived by `archiver run`.

Exact rows for the account's posts (from its repository listing), threads with nested replies, quotes and
a notFoundPost placeholder, blobs with their alt text, chat conversations; a replaced record (new cid) as a
new version; deletions only from a complete listing confirmed by getRecord's RecordNotFound; a 429 honoured;
an expired session renewed; chat that is not offered said once; the app password and the JWTs never in any
byte under the archive; `warcio check` on the WARCs and `archiver rebuild` giving the same rows.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver import doctor
from archiver.cli import app
from archiver.config import load_config
from archiver.connectors.bluesky import EMPTY_PAGES_MAX, BlueskyConnector
from archiver.demo.bluesky_server import BlueskyState, Fault, SampleBlueskyServer
from archiver.demo.png import make_png
from archiver.pipeline import StoreAccountState
from tests.revisions import captured_at_revision_1, recorded_revisions, verify_replay
from tests.test_rebuild import COMPARED

APP_PASSWORD = "abcd-efgh-ijkl-mnop"
NOW = datetime.now(UTC).replace(microsecond=0)
PUBLIC_READS = (
    "com.atproto.repo.listRecords",
    "com.atproto.repo.getRecord",
    "app.bsky.feed.getPostThread",
    "app.bsky.feed.getQuotes",
    "com.atproto.sync.getBlob",
    "com.atproto.identity.resolveHandle",
)


class BskyClinic:
    """A clinic's Bluesky account and two members of the public, a few posts; served on loopback."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, posts: int = 3, chat: bool = True):
        self.state = BlueskyState()
        self.clinic = self.state.add_account("riverside.example.org", "Riverside Clinic", APP_PASSWORD)
        self.ann = self.state.add_account("ann.example.org", "Ann Patient")
        self.bob = self.state.add_account("bob.example.org", "Bob Public")
        self.posts = [
            self.state.add_post(
                self.clinic.did,
                f"Clinic post number {i}",
                created_at=NOW - timedelta(days=2, minutes=posts - i),
                images=[(make_png(8, 8, i), f"photo {i}, a waiting room")] if i == 0 else None,
            )
            for i in range(posts)
        ]
        self.tmp_path = tmp_path
        monkeypatch.setenv("BSKY_APP_PASSWORD", APP_PASSWORD)
        self.server = SampleBlueskyServer(self.state, chat=chat)
        self.server.start()

    def config(self, direct_messages: bool = True) -> Path:
        path = self.tmp_path / "archiver.toml"
        base = self.server.base_url
        path.write_text(
            f"""
[archive]
dir = "arch"
recheck_days = 14

[[accounts]]
name = "clinic-bsky"
platform = "bluesky"
api_base = "{base}"
account = "@riverside.example.org"
token_env = "BSKY_APP_PASSWORD"
direct_messages = {"true" if direct_messages else "false"}
options = {{ appview = "{base}", plc_directory = "{base}" }}
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
        found = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("item_versions", "events")}
        conn.close()
        return found


@pytest.fixture
def clinic(tmp_path, monkeypatch):
    c = BskyClinic(tmp_path, monkeypatch)
    yield c
    c.server.stop()


def k(record: dict) -> str:
    return f"bluesky:{record['uri']}"


def next_second() -> None:
    """Wait into the next second: `archiver rebuild` orders WARC files by name, whose time has 1 s resolution."""
    time.sleep(1 - datetime.now(UTC).microsecond / 1e6 + 0.01)


def test_first_run_archives_repo_posts_threads_quotes_blobs_and_chats(clinic):
    state = clinic.state
    post = clinic.posts[2]
    reply = state.add_post(
        clinic.ann.did, "When are flu shots?", created_at=NOW - timedelta(days=1), reply_to=post["uri"]
    )
    answer = state.add_post(
        clinic.clinic.did, "Mondays 9-12!", created_at=NOW - timedelta(hours=20), reply_to=reply["uri"]
    )
    deep = state.add_post(
        clinic.bob.did, "Thanks from me too", created_at=NOW - timedelta(hours=19), reply_to=answer["uri"]
    )
    quote = state.add_post(
        clinic.bob.did,
        "Look at this",
        created_at=NOW - timedelta(hours=10),
        quote=post["uri"],
        images=[(make_png(6, 6, 7), "a flu shot poster")],
    )
    convo = state.add_convo([clinic.clinic.did, clinic.ann.did])
    m1 = state.add_message(convo, clinic.ann.did, "my DOB is 01/02/1980", at=NOW - timedelta(hours=5))
    m2 = state.add_message(convo, clinic.clinic.did, "Thanks Ann, we will call", at=NOW - timedelta(hours=4))
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
    chat = f"bluesky:chat:{convo.id}"
    me = "riverside.example.org"
    expected = [
        (k(clinic.posts[0]), "post", me, "Clinic post number 0", None, k(clinic.posts[0]), None),
        (k(clinic.posts[1]), "post", me, "Clinic post number 1", None, k(clinic.posts[1]), None),
        (k(post), "post", me, "Clinic post number 2", None, k(post), None),
        (k(reply), "comment", "ann.example.org", "When are flu shots?", k(post), k(post), None),
        (k(answer), "comment", me, "Mondays 9-12!", k(reply), k(post), None),
        (k(deep), "comment", "bob.example.org", "Thanks from me too", k(answer), k(post), None),
        (k(quote), "post", "bob.example.org", "Look at this", None, k(quote), None),
        (f"{chat}:{m1['id']}", "message", "ann.example.org", "my DOB is 01/02/1980", None, chat, chat),
        (f"{chat}:{m2['id']}", "message", me, "Thanks Ann, we will call", None, chat, chat),
    ]
    assert rows == sorted(e + ("live", 1) for e in expected)
    # Blobs come from the author's PDS with getBlob; the alt text is the media description.
    media = {r["sha256"]: r["url"] for r in conn.execute("SELECT sha256, url FROM media_files")}
    assert set(media) == {hashlib.sha256(make_png(8, 8, 0)).hexdigest(), hashlib.sha256(make_png(6, 6, 7)).hexdigest()}
    assert all("/xrpc/com.atproto.sync.getBlob?did=did%3Aplc%3A" in url for url in media.values())
    item_media = json.loads(
        conn.execute("SELECT media FROM item_versions WHERE item_key = ?", (k(clinic.posts[0]),)).fetchone()[0]
    )
    assert item_media[0]["description"] == "photo 0, a waiting room" and item_media[0]["type"] == "image"
    extra_quote = conn.execute("SELECT raw_json FROM item_versions WHERE item_key = ?", (k(quote),)).fetchone()[0]
    assert json.loads(extra_quote)["record"]["embed"]["record"]["record"]["uri"] == post["uri"]
    conn.close()
    # Public reads went without any credential; only chat carried the session's JWT.
    sent = clinic.server.auth_seen
    assert not [p for p, auth in sent if auth and p.removeprefix("/xrpc/") in PUBLIC_READS]
    assert not [p for p, auth in sent if auth and p.startswith("/did:")]
    assert all(auth for p, auth in sent if "chat.bsky.convo" in p)
    # Threads were asked for at full depth.
    threads = [q for _, p, q in clinic.server.requests_log if p.endswith("getPostThread")]
    assert threads and all("depth=1000" in q for q in threads)
    assert CliRunner().invoke(app, ["verify", "--config", str(clinic.config())]).exit_code == 0


def test_a_time_written_with_an_offset_is_stored_in_utc_and_weighs_the_window_right(clinic):
    """A client may write createdAt with its own offset. A post 3 hours inside the re-check window, written
    at -08:00, is inside it: its thread is re-read and a new reply archived; its time is kept in UTC."""
    when = NOW - timedelta(days=14) + timedelta(hours=3)
    post = clinic.state.add_post(clinic.clinic.did, "Flu clinic this Saturday", created_at=when)
    value = {
        **post["value"],
        "createdAt": when.astimezone(timezone(timedelta(hours=-8))).isoformat("T", "milliseconds"),
    }
    post = clinic.state._put(clinic.clinic.did, post["uri"].rsplit("/", 1)[1], value)
    assert clinic.run()[0] == 0
    reply = clinic.state.add_post(clinic.ann.did, "Can my mother come?", created_at=NOW, reply_to=post["uri"])
    assert clinic.run()[0] == 0
    conn = clinic.db()
    stored = conn.execute("SELECT created_at FROM items WHERE item_key = ?", (k(post),)).fetchone()[0]
    replies = conn.execute("SELECT count(*) FROM items WHERE item_key = ?", (k(reply),)).fetchone()[0]
    conn.close()
    assert stored == when.strftime("%Y-%m-%dT%H:%M:%S.000Z") and replies == 1


def test_listing_pages_with_cursor_until_an_empty_page(tmp_path, monkeypatch):
    c = BskyClinic(tmp_path, monkeypatch, posts=230)
    try:
        code, output = c.run()
        assert code == 0, output
        conn = c.db()
        assert conn.execute("SELECT count(*) FROM items WHERE kind = 'post'").fetchone()[0] == 230
        conn.close()
        pages = [q for _, p, q in c.server.requests_log if p.endswith("listRecords")]
        assert len(pages) == 4 and "cursor=" not in pages[0] and all("cursor=" in q for q in pages[1:])
    finally:
        c.server.stop()


def test_replaced_record_is_a_new_version(clinic):
    post = clinic.posts[1]
    assert clinic.run()[0] == 0
    replaced = clinic.state.replace_post(post["uri"], "Clinic post number 1 (corrected)")
    assert replaced["cid"] != post["cid"]
    assert clinic.run()[0] == 0
    conn = clinic.db()
    versions = [
        (r["text"], json.loads(r["raw_json"])["cid"])
        for r in conn.execute("SELECT text, raw_json FROM item_versions WHERE item_key = ? ORDER BY id", (k(post),))
    ]
    assert versions == [("Clinic post number 1", post["cid"]), ("Clinic post number 1 (corrected)", replaced["cid"])]
    assert conn.execute("SELECT status FROM items WHERE item_key = ?", (k(post),)).fetchone()[0] == "edited"
    conn.close()
    before = clinic.counts()
    assert clinic.run()[0] == 0
    assert clinic.counts() == before  # the same cid again appends nothing


def test_the_repo_listing_weighs_only_the_accounts_own_records(clinic, monkeypatch):
    """Absence from the repository listing is asked of the account's own records only (its posts and its own
    replies, a deletion of which it proves), not of the public's replies and the messages, which the listing
    never holds and which were all read to memory every run before."""
    own_reply = clinic.state.add_post(
        clinic.clinic.did,
        "Our hours changed today",
        created_at=NOW - timedelta(days=1),
        reply_to=clinic.posts[0]["uri"],
    )
    public = clinic.state.add_post(
        clinic.ann.did, "thanks", created_at=NOW - timedelta(hours=5), reply_to=own_reply["uri"]
    )
    assert clinic.run()[0] == 0
    asked: list[tuple[dict, list[str]]] = []
    original = StoreAccountState.known_items

    def spy(self, **filters):
        found = original(self, **filters)
        asked.append((filters, [known.item_key for known in found]))
        return found

    monkeypatch.setattr(StoreAccountState, "known_items", spy)
    clinic.state.delete_post(own_reply["uri"])
    code, output = clinic.run()
    assert code == 0, output
    [(_, weighed)] = [(filters, keys) for filters, keys in asked if set(filters) == {"key_prefix"}]
    assert set(weighed) == {k(post) for post in clinic.posts} | {k(own_reply)}
    conn = clinic.db()
    deleted = {
        r[0]: json.loads(r[1]) for r in conn.execute("SELECT item_key, evidence FROM events WHERE event = 'deleted'")
    }
    conn.close()
    assert set(deleted) == {k(own_reply)} and "listRecords" in deleted[k(own_reply)]["absent_from"]["url"]
    assert k(public) not in deleted


def test_deletions_need_a_complete_listing_and_record_not_found(clinic, http_waits):
    post, other = clinic.posts[2], clinic.posts[1]
    reply = clinic.state.add_post(
        clinic.ann.did, "my MRN is 00482913", created_at=NOW - timedelta(days=1), reply_to=other["uri"]
    )
    below = clinic.state.add_post(
        clinic.bob.did, "same here", created_at=NOW - timedelta(hours=9), reply_to=reply["uri"]
    )
    assert clinic.run()[0] == 0
    clinic.state.delete_post(post["uri"])
    clinic.state.delete_post(reply["uri"])
    # The listing breaks: nothing is concluded from what it did not show.
    clinic.server.faults.append(Fault(r"listRecords", status=500, times=100))
    code, output = clinic.run()
    assert code == 1 and "HTTP 500" in output
    assert http_waits  # the failing call was retried, after back-off waits
    conn = clinic.db()
    assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 0
    conn.close()
    clinic.server.faults.clear()
    code, output = clinic.run()
    assert code == 0, output
    conn = clinic.db()
    deleted = {
        r["item_key"]: json.loads(r["evidence"])
        for r in conn.execute("SELECT item_key, evidence FROM events WHERE event = 'deleted'")
    }
    assert set(deleted) == {k(post), k(reply)}
    assert deleted[k(post)]["error"] == "RecordNotFound" and deleted[k(post)]["http_status"] == 400
    assert "listRecords" in deleted[k(post)]["absent_from"]["url"]
    assert deleted[k(reply)]["error"] == "RecordNotFound"
    assert "getPostThread" in deleted[k(reply)]["absent_from"]["url"]  # shown as notFoundPost in the thread
    statuses = dict(conn.execute("SELECT item_key, status FROM items").fetchall())
    assert statuses[k(below)] == "live" and statuses[k(other)] == "live"
    conn.close()
    placeholders = [
        q for _, p, q in clinic.server.requests_log if p.endswith("getRecord") and reply["uri"].split("/")[-1] in q
    ]
    assert placeholders  # the placeholder was confirmed by a lookup, not believed


def test_rate_limited_run_waits_and_resumes(clinic, http_waits):
    reset = int(datetime.now(UTC).timestamp()) + 2
    clinic.server.faults.append(
        Fault(
            r"listRecords",
            status=429,
            times=1,
            body=b'{"error":"RateLimitExceeded","message":"Rate Limit Exceeded"}',
            headers={"RateLimit-Limit": "3000", "RateLimit-Remaining": "0", "RateLimit-Reset": str(reset)},
        )
    )
    code, output = clinic.run()
    assert code == 0, output
    assert http_waits and 0 < http_waits[0] <= 3
    conn = clinic.db()
    assert conn.execute("SELECT count(*) FROM items WHERE kind = 'post'").fetchone()[0] == 3
    conn.close()
    assert_rebuild_equals(clinic, clinic.tmp_path / "rebuilt.db")  # the throttled answer is replayed too


def test_expired_session_is_renewed_and_chat_not_offered_is_said_once(clinic, tmp_path, monkeypatch):
    convo = clinic.state.add_convo([clinic.clinic.did, clinic.ann.did])
    clinic.state.add_message(convo, clinic.ann.did, "hello", at=NOW - timedelta(hours=3))
    first_chat = Fault(
        r"chat\.bsky\.convo\.getMessages",
        status=400,
        times=1,
        body=b'{"error":"ExpiredToken","message":"Token has expired"}',
    )
    clinic.server.faults.append(first_chat)
    code, output = clinic.run()
    assert code == 0, output
    logins = [p for m, p, _ in clinic.server.requests_log if m == "POST" and p.endswith("createSession")]
    assert len(logins) == 2  # one at the first chat call, one after the access JWT expired
    conn = clinic.db()
    assert conn.execute("SELECT count(*) FROM items WHERE kind = 'message'").fetchone()[0] == 1
    conn.close()
    assert_rebuild_equals(clinic, tmp_path / "rebuilt.db")  # the replay logs in again where the run did
    # A PDS without chat: one notice, the rest archived, exit 0.
    other = BskyClinic(tmp_path / "nochat", monkeypatch, chat=False)
    try:
        (tmp_path / "nochat").mkdir(exist_ok=True)
        result = CliRunner().invoke(app, ["run", "--config", str(other.config()), "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output[result.output.index("{") :])
        notices = summary["accounts"][0]["notices"]
        assert len([n for n in notices if "direct messages not captured" in n]) == 1
        assert "MethodNotImplemented" in notices[0] and "chat.bsky.convo" in notices[0]
    finally:
        other.server.stop()


def test_a_chat_service_that_fails_upstream_fails_the_account_not_offered_is_not_said(clinic, http_waits):
    """A 502 UpstreamFailure on the first chat call means the PDS knows the chat service and could not reach
    it: retried, and if it persists the account fails (the exit code tells); never "chat not offered". The
    posts are archived all the same, and the next run reads the messages."""
    convo = clinic.state.add_convo([clinic.clinic.did, clinic.ann.did])
    clinic.state.add_message(convo, clinic.ann.did, "my results came back", at=NOW - timedelta(hours=3))
    upstream = b'{"error":"UpstreamFailure","message":"Upstream Failure"}'
    clinic.server.faults.append(Fault(r"chat\.bsky\.convo\.listConvos", status=502, times=1, body=upstream))
    code, output = clinic.run()
    assert code == 0 and "not captured" not in output, output  # one 502, retried
    assert clinic.counts()["item_versions"] == len(clinic.posts) + 1
    clinic.state.add_message(convo, clinic.ann.did, "and the letter", at=NOW - timedelta(hours=1))
    clinic.server.faults.append(Fault(r"chat\.bsky\.convo\.listConvos", status=502, times=10, body=upstream))
    code, output = clinic.run()
    assert code == 1 and "listConvos" in output and "502" in output and "not captured" not in output, output
    clinic.server.faults.clear()
    assert clinic.run()[0] == 0
    conn = clinic.db()
    texts = {r[0] for r in conn.execute("SELECT text FROM items WHERE kind = 'message'")}
    assert texts == {"my results came back", "and the letter"}
    conn.close()


def test_wrong_app_password_fails_the_account_with_one_line(clinic, monkeypatch):
    monkeypatch.setenv("BSKY_APP_PASSWORD", "wxyz-wxyz-wxyz-wxyz")
    code, output = clinic.run()
    assert code == 1
    assert "refused the app password from $BSKY_APP_PASSWORD" in output and "wxyz-wxyz" not in output


def test_secrets_never_written_warcs_check_and_rebuild_equals(clinic, tmp_path):
    post = clinic.posts[1]
    reply = clinic.state.add_post(clinic.ann.did, "hello", created_at=NOW - timedelta(days=1), reply_to=post["uri"])
    convo = clinic.state.add_convo([clinic.clinic.did, clinic.ann.did])
    message = clinic.state.add_message(convo, clinic.ann.did, "private", at=NOW - timedelta(hours=3))
    assert clinic.run()[0] == 0
    next_second()
    clinic.state.replace_post(post["uri"], "replaced text")
    clinic.state.delete_post(reply["uri"])
    clinic.state.delete_message(convo, message["id"])
    clinic.server.expire_sessions()
    clinic.state.add_message(convo, clinic.clinic.did, "answer", at=NOW - timedelta(hours=1))
    assert clinic.run()[0] == 0
    conn = clinic.db()
    statuses = dict(conn.execute("SELECT item_key, status FROM items").fetchall())
    assert statuses[k(reply)] == "deleted" and statuses[k(post)] == "edited"
    assert statuses[f"bluesky:chat:{convo.id}:{message['id']}"] == "deleted"
    conn.close()
    secrets = [APP_PASSWORD, *clinic.server.issued]
    assert len(secrets) >= 5  # two sessions: two access and two refresh JWTs
    arch = clinic.tmp_path / "arch"
    for path in arch.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data += gzip.decompress(data)
            for secret in secrets:
                assert secret.encode() not in data, (path, secret[:8])
    for warc in sorted((arch / "warcs").glob("*.warc.gz")):
        check = subprocess.run(
            [sys.executable, "-m", "warcio.cli", "check", "-v", str(warc)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout
    assert_rebuild_equals(clinic, tmp_path / "rebuilt.db")


def assert_rebuild_equals(clinic: BskyClinic, out: Path) -> sqlite3.Connection:
    """`archiver rebuild` from the WARCs alone gives the same items, versions, events, media and cursors."""
    result = CliRunner().invoke(app, ["rebuild", "--config", str(clinic.config()), "--out", str(out)])
    assert result.exit_code == 0, result.output
    live, rebuilt = clinic.db(), sqlite3.connect(out)
    for name, query in COMPARED.items():
        expected = [tuple(r) for r in live.execute(query).fetchall()]
        assert [tuple(r) for r in rebuilt.execute(query).fetchall()] == expected, name
    live.close()
    return rebuilt


def test_doctor_checks_the_app_password(clinic, monkeypatch):
    config = load_config(clinic.config())
    (check,) = [c for c in doctor.run_doctor(config) if c.name == "account clinic-bsky"]
    assert (check.status, check.message) == ("ok", "token from $BSKY_APP_PASSWORD accepted (@riverside.example.org)")
    monkeypatch.setenv("BSKY_APP_PASSWORD", "zzzz-zzzz-zzzz-zzzz")
    (check,) = [c for c in doctor.run_doctor(config) if c.name == "account clinic-bsky"]
    assert check.status == "fail" and "refused the app password from $BSKY_APP_PASSWORD" in check.message
    assert "zzzz-zzzz" not in check.message


def test_a_cursor_that_repeats_stops_the_listing(clinic):
    record = clinic.posts[0]
    page = json.dumps({"records": [record], "cursor": "3zzzzzzzzzzzz"}).encode()
    clinic.server.faults.append(Fault(r"listRecords", status=200, body=page, times=2))
    code, output = clinic.run()
    assert code == 1 and "paging loop" in output
    assert sum(1 for _, p, _ in clinic.server.requests_log if p.endswith("listRecords")) == 2
    conn = clinic.db()
    assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 0
    conn.close()
    clinic.server.faults.clear()
    assert clinic.run()[0] == 0


def old_threads(c: BskyClinic) -> set[str]:
    """Three posts of the clinic's older than the re-check window, each with a reply, a reply to that and a
    quote; the keys a complete archive of them holds."""
    state, keys = c.state, set()
    for i in range(3):
        post = state.add_post(c.clinic.did, f"old post {i}", created_at=NOW - timedelta(days=100 + i))
        reply = state.add_post(c.ann.did, f"reply {i}", created_at=NOW - timedelta(days=90), reply_to=post["uri"])
        deeper = state.add_post(c.bob.did, f"me too {i}", created_at=NOW - timedelta(days=89), reply_to=reply["uri"])
        quote = state.add_post(c.bob.did, f"see this {i}", created_at=NOW - timedelta(days=95), quote=post["uri"])
        keys |= {k(post), k(reply), k(deeper), k(quote)}
    return keys


def item_keys(c: BskyClinic) -> set[str]:
    conn = c.db()
    try:
        return {r[0] for r in conn.execute("SELECT item_key FROM items")}
    finally:
        conn.close()


def test_threads_a_stopped_run_left_unread_are_read_by_the_next(tmp_path, monkeypatch, http_waits):
    whole = BskyClinic(tmp_path / "whole", monkeypatch, posts=0, chat=False)
    stopped = BskyClinic(tmp_path / "stopped", monkeypatch, posts=0, chat=False)
    try:
        for c in (whole, stopped):
            c.tmp_path.mkdir()
        expected = old_threads(whole)
        assert old_threads(stopped) == expected  # the same records: DIDs from handles, rkeys from times
        assert whole.run()[0] == 0
        assert item_keys(whole) == expected
        # The first run lists and stores every post, reads the first thread, then the AppView fails for good.
        stopped.server.faults.append(Fault(r"getPostThread", status=502, times=100, after=1))
        code, output = stopped.run()
        assert code == 1 and "HTTP 502" in output, output
        assert http_waits  # retried with back-off before giving up
        assert item_keys(stopped) < expected
        stopped.server.faults.clear()
        next_second()
        # The posts are known now and older than the window: read again because that run did not finish.
        code, output = stopped.run()
        assert code == 0, output
        assert item_keys(stopped) == expected
        conn = stopped.db()
        cursor = conn.execute(
            "SELECT value FROM cursors WHERE name = 'threads_unfinished_since' ORDER BY id DESC LIMIT 1"
        ).fetchone()[0]
        conn.close()
        assert cursor == ""  # every thread read: nothing owed any more
        assert_rebuild_equals(stopped, tmp_path / "rebuilt.db")
        # Owed no more, old and unchanged: the next run reads none of these threads again.
        threads = sum(1 for _, p, _ in stopped.server.requests_log if p.endswith("getPostThread"))
        assert stopped.run()[0] == 0
        assert sum(1 for _, p, _ in stopped.server.requests_log if p.endswith("getPostThread")) == threads
    finally:
        whole.server.stop()
        stopped.server.stop()


def test_an_empty_page_with_a_cursor_is_not_the_end(clinic):
    # getQuotes cuts a page, then leaves out what the viewer may not see, and keeps the cursor.
    post = clinic.posts[0]
    quotes = [
        clinic.state.add_post(clinic.bob.did, f"quote {i}", created_at=NOW - timedelta(hours=10 + i), quote=post["uri"])
        for i in range(6)
    ]
    clinic.server.page_max = 2
    clinic.server.hidden |= {quotes[2]["uri"], quotes[3]["uri"]}  # the second page comes back empty
    code, output = clinic.run()
    assert code == 0, output
    conn = clinic.db()
    archived = {r[0] for r in conn.execute("SELECT item_key FROM items WHERE text LIKE 'quote %'")}
    conn.close()
    assert archived == {k(q) for i, q in enumerate(quotes) if i not in (2, 3)}
    pages = [q for _, p, q in clinic.server.requests_log if p.endswith("getQuotes") and "post%2F" + k(post)[-13:] in q]
    assert len(pages) == 3 and "cursor=2" in pages[1] and "cursor=4" in pages[2]


def test_empty_pages_without_end_stop_the_listing(clinic):
    post = clinic.posts[0]
    quotes = [
        clinic.state.add_post(clinic.bob.did, f"quote {i}", created_at=NOW - timedelta(hours=10 + i), quote=post["uri"])
        for i in range(EMPTY_PAGES_MAX + 5)
    ]
    clinic.server.page_max = 1
    clinic.server.hidden |= {q["uri"] for q in quotes}  # page after page empty, each with a new cursor
    code, output = clinic.run()
    assert code == 1
    assert f"{EMPTY_PAGES_MAX + 1} empty pages in a row" in output and f"the quotes of {post['uri']}" in output
    pages = [q for _, p, q in clinic.server.requests_log if p.endswith("getQuotes") and "post%2F" + k(post)[-13:] in q]
    assert len(pages) == EMPTY_PAGES_MAX + 1
    # Shown again, the quotes are all read by the next run (the post is in the re-check window).
    clinic.server.hidden.clear()
    assert clinic.run()[0] == 0
    assert {k(q) for q in quotes} <= item_keys(clinic)


def fates(conn: sqlite3.Connection, key: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT event FROM events WHERE item_key = ? ORDER BY id", (key,))]


def test_replies_under_a_deleted_post_are_looked_up_while_it_is_in_the_window(clinic):
    """Replies are records in their authors' repositories and outlive the post they answer, and a deleted post
    has no thread to read: while it is in the re-check window, each known reply under it is looked up with
    getRecord on its author's PDS, so one deleted or replaced with or after the post is recorded."""
    state, post = clinic.state, clinic.posts[2]
    phi = state.add_post(clinic.ann.did, "My MRN is 00482913", created_at=NOW - timedelta(days=1), reply_to=post["uri"])
    kept = state.add_post(clinic.bob.did, "Same question", created_at=NOW - timedelta(hours=20), reply_to=post["uri"])
    deeper = state.add_post(clinic.ann.did, "me too", created_at=NOW - timedelta(hours=19), reply_to=kept["uri"])
    own = state.add_post(clinic.clinic.did, "Call us", created_at=NOW - timedelta(hours=18), reply_to=kept["uri"])
    assert clinic.run()[0] == 0
    state.delete_post(post["uri"])  # the clinic removes its post ...
    state.delete_post(phi["uri"])  # ... Ann deletes her reply with the MRN, Bob corrects his
    state.replace_post(kept["uri"], "Same question (corrected)")
    code, output = clinic.run()
    assert code == 0, output
    conn = clinic.db()
    status = dict(conn.execute("SELECT item_key, status FROM items").fetchall())
    assert [status[k(r)] for r in (post, phi, kept, deeper, own)] == ["deleted", "deleted", "edited", "live", "live"]
    evidence = json.loads(
        conn.execute("SELECT evidence FROM events WHERE item_key = ? AND event = 'deleted'", (k(phi),)).fetchone()[0]
    )
    assert evidence["error"] == "RecordNotFound" and "getRecord" in evidence["url"]
    assert evidence["under_deleted"] == {"item_key": k(post)}
    conn.close()
    # Nothing new: the deleted post's thread costs a getRecord a live reply of others (the clinic's own reply is
    # the repository listing's to weigh), and appends nothing.
    before, asked = clinic.counts(), len(clinic.server.requests_log)
    assert clinic.run()[0] == 0
    assert clinic.counts() == before
    looked_up = [q for _, p, q in clinic.server.requests_log[asked:] if p.endswith("com.atproto.repo.getRecord")]
    rkeys = sorted(r["uri"].rsplit("/", 1)[1] for r in (kept, deeper))
    assert sorted(q.rsplit("rkey=", 1)[1] for q in looked_up if "app.bsky.feed.post" in q) == rkeys
    state.delete_post(deeper["uri"])
    assert clinic.run()[0] == 0
    conn = clinic.db()
    assert fates(conn, k(deeper)) == ["created", "deleted"]
    conn.close()
    assert_rebuild_equals(clinic, clinic.tmp_path / "rebuilt.db")


def test_a_reply_under_a_deleted_reply_is_still_weighed(clinic):
    """A reply whose parent reply was deleted drops out of the thread the AppView shows: it is still weighed
    (looked up) when the thread is read, however many runs after its parent's deletion."""
    state, post = clinic.state, clinic.posts[1]
    parent = state.add_post(clinic.ann.did, "my results?", created_at=NOW - timedelta(days=1), reply_to=post["uri"])
    child = state.add_post(clinic.bob.did, "MRN 00482913", created_at=NOW - timedelta(hours=20), reply_to=parent["uri"])
    assert clinic.run()[0] == 0
    state.delete_post(parent["uri"])
    assert clinic.run()[0] == 0
    state.delete_post(child["uri"])
    assert clinic.run()[0] == 0
    conn = clinic.db()
    assert fates(conn, k(parent)) == ["created", "deleted"] and fates(conn, k(child)) == ["created", "deleted"]
    conn.close()


def test_two_accounts_weigh_each_others_replies_in_a_thread(tmp_path, monkeypatch):
    """The emergency department's account runs first and archives, from the quotes of its reply, Bob's reply
    to the clinic's post: filed under its name. The clinic's read of its post's thread weighs it all the same,
    so Bob's deletion is recorded, by the clinic's run."""
    c = BskyClinic(tmp_path, monkeypatch, posts=1, chat=False)
    try:
        er = c.state.add_account("er.example.org", "Riverside Emergency")
        base = c.server.base_url
        blocks = "".join(
            f"""
[[accounts]]
name = "{name}"
platform = "bluesky"
api_base = "{base}"
account = "@{handle}"
token_env = "BSKY_APP_PASSWORD"
direct_messages = false
options = {{ appview = "{base}", plc_directory = "{base}" }}
"""
            for name, handle in (("er-bsky", "er.example.org"), ("clinic-bsky", "riverside.example.org"))
        )
        config = tmp_path / "two.toml"
        config.write_text(f'[archive]\ndir = "arch"\nrecheck_days = 14\n{blocks}')

        def run() -> None:
            result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
            assert result.exit_code == 0, result.output

        post = c.posts[0]
        answer = c.state.add_post(er.did, "Call the ER", created_at=NOW - timedelta(hours=5), reply_to=post["uri"])
        phi = c.state.add_post(
            c.bob.did, "MRN 00482913", created_at=NOW - timedelta(hours=4), reply_to=post["uri"], quote=answer["uri"]
        )
        run()
        conn = c.db()
        assert conn.execute("SELECT account FROM items WHERE item_key = ?", (k(phi),)).fetchone()[0] == "er-bsky"
        conn.close()
        c.state.delete_post(phi["uri"])
        run()
        conn = c.db()
        (last_run,) = conn.execute("SELECT id FROM runs ORDER BY rowid DESC LIMIT 1").fetchone()
        assert fates(conn, k(phi)) == ["created", "deleted"]
        deletions = dict(conn.execute("SELECT account, deletions FROM account_runs WHERE run_id = ?", (last_run,)))
        assert deletions == {"er-bsky": 0, "clinic-bsky": 1}
        conn.close()
        result = CliRunner().invoke(app, ["rebuild", "--config", str(config), "--out", str(tmp_path / "rebuilt.db")])
        assert result.exit_code == 0, result.output
        live, rebuilt = c.db(), sqlite3.connect(tmp_path / "rebuilt.db")
        for name, query in COMPARED.items():
            assert rebuilt.execute(query).fetchall() == [tuple(r) for r in live.execute(query).fetchall()], name
    finally:
        c.server.stop()


def test_a_message_deleted_for_the_account_only_says_so(clinic):
    """Bluesky chat's only deletion is deleteMessageForSelf: a deletedMessageView in the archived account's view
    means the message was removed from that view, and the other members may still see it. The event says so."""
    convo = clinic.state.add_convo([clinic.clinic.did, clinic.ann.did])
    message = clinic.state.add_message(convo, clinic.ann.did, "my results came back", at=NOW - timedelta(hours=3))
    assert clinic.run()[0] == 0
    clinic.state.delete_message(convo, message["id"])  # the clinic's staff tidy the inbox: deleteMessageForSelf
    assert clinic.run()[0] == 0
    conn = clinic.db()
    (evidence,) = conn.execute(
        "SELECT evidence FROM events WHERE item_key = ? AND event = 'deleted'",
        (f"bluesky:chat:{convo.id}:{message['id']}",),
    ).fetchone()
    conn.close()
    evidence = json.loads(evidence)
    assert evidence["method"] == "deletedMessageView"
    assert "deleteMessageForSelf" in evidence["also_if"] and "other members" in evidence["also_if"]


def test_runs_captured_before_the_lookups_under_deleted_posts_still_rebuild_and_verify(clinic, monkeypatch):
    """Runs captured at request revision 1 never looked up the replies under a deleted post: today's connector
    replays them asking what they asked (their warcinfo says bluesky=1), so the rebuild and verify --replay pass;
    a run at the newest revision then looks the replies up, and rebuilds too."""
    state, post = clinic.state, clinic.posts[2]
    phi = state.add_post(clinic.ann.did, "My MRN is 00482913", created_at=NOW - timedelta(days=1), reply_to=post["uri"])
    kept = state.add_post(clinic.bob.did, "Same question", created_at=NOW - timedelta(hours=20), reply_to=post["uri"])
    with captured_at_revision_1(monkeypatch, BlueskyConnector):
        assert clinic.run()[0] == 0
        state.delete_post(post["uri"])
        state.delete_post(phi["uri"])
        asked = len(clinic.server.requests_log)
        assert clinic.run()[0] == 0
        assert clinic.run()[0] == 0
    looked_up = [q for _, p, q in clinic.server.requests_log[asked:] if p.endswith("com.atproto.repo.getRecord")]
    assert not [q for q in looked_up if phi["uri"].rsplit("/", 1)[1] in q or kept["uri"].rsplit("/", 1)[1] in q]
    conn = clinic.db()
    assert fates(conn, k(post)) == ["created", "deleted"] and fates(conn, k(phi)) == ["created"]
    conn.close()
    assert clinic.run()[0] == 0
    conn = clinic.db()
    assert fates(conn, k(phi)) == ["created", "deleted"] and fates(conn, k(kept)) == ["created"]
    conn.close()
    newest = {"bluesky": BlueskyConnector.REQUEST_REVISION}
    assert recorded_revisions(clinic.tmp_path / "arch" / "warcs") == [{"bluesky": 1}] * 3 + [newest]
    assert_rebuild_equals(clinic, clinic.tmp_path / "rebuilt.db")
    result = verify_replay(clinic.config())
    assert result.exit_code == 0, result.output
