"""Mastodon end to end: a loopback server playing the Mastodon API, archived by `archiver run`.

Each test builds a small clinic with hand-written statuses in the documented shapes, runs the archive
through the CLI and asserts exact rows: paging, replies, edits with history, media, DMs, deletions only on
proof (and none from a listing that failed half way), no change appends nothing, the token never written.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.connectors.mastodon import MastodonConnector
from archiver.demo.loopback import Fault
from archiver.demo.mastodon_server import MEDIA_PREFIX, MastodonState, SampleMastodonServer
from archiver.demo.png import make_png
from tests.revisions import captured_at_revision_1, recorded_revisions, verify_replay

TOKEN = "mastodon-test-token-7Qx91LmZ"
NOW = datetime.now(UTC).replace(microsecond=0)


class Clinic:
    """A tiny clinic account with a few followers, served on loopback."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, posts: int = 3):
        self.state = MastodonState()
        self.clinic = self.state.add_account("riverside", "Riverside Clinic")
        self.ann = self.state.add_account("ann", "Ann Patient")
        self.bob = self.state.add_account("bob", "Bob Public")
        self.posts = []
        for i in range(posts):
            media = [(make_png(8, 8, i), f"photo {i}")] if i == 0 else []
            self.posts.append(
                self.state.add_status(
                    self.clinic["id"],
                    f"Clinic post number {i}",
                    created_at=NOW - timedelta(days=2, minutes=posts - i),
                    media=media,
                )
            )
        self.tmp_path = tmp_path
        monkeypatch.setenv("CLINIC_TOKEN", TOKEN)
        self.server = SampleMastodonServer(self.state, TOKEN)
        self.server.start()

    def config(self, extra_accounts: str = "") -> Path:
        path = self.tmp_path / "archiver.toml"
        path.write_text(
            f"""
[archive]
dir = "arch"
recheck_days = 14

[[accounts]]
name = "clinic"
platform = "mastodon"
api_base = "{self.server.base_url}"
account = "@riverside"
token_env = "CLINIC_TOKEN"
{extra_accounts}
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
            for t in ("item_versions", "events", "media_files", "cursors", "accounts")
        }
        conn.close()
        return found

    def key(self, status: dict) -> str:
        return f"mastodon:{self.server.base_url.split('//')[1]}:{status['id']}"

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def clinic(tmp_path, monkeypatch):
    c = Clinic(tmp_path, monkeypatch)
    yield c
    c.stop()


def test_first_run_archives_posts_replies_media_and_dms(clinic):
    post = clinic.posts[2]
    reply = clinic.state.add_status(
        clinic.ann["id"], "When are flu shots?", in_reply_to_id=post["id"], created_at=NOW - timedelta(days=1)
    )
    answer = clinic.state.add_status(
        clinic.clinic["id"], "Mondays 9-12!", in_reply_to_id=reply["id"], created_at=NOW - timedelta(hours=20)
    )
    dm = clinic.state.add_status(
        clinic.ann["id"], "@riverside my DOB is 01/02/1980", visibility="direct", created_at=NOW - timedelta(hours=5)
    )
    dm_answer = clinic.state.add_status(
        clinic.clinic["id"],
        "Thanks Ann, we will call you",
        visibility="direct",
        in_reply_to_id=dm["id"],
        created_at=NOW - timedelta(hours=4),
    )
    code, output = clinic.run()
    assert code == 0, output
    conn = clinic.db()
    rows = [
        tuple(r)
        for r in conn.execute(
            "SELECT item_key, kind, author_handle, text, parent_key, thread_key, status, versions FROM items "
            "ORDER BY item_key"
        )
    ]
    k = clinic.key
    expected = sorted(
        [
            (k(clinic.posts[0]), "post", "riverside", "Clinic post number 0", None, k(clinic.posts[0]), "live", 1),
            (k(clinic.posts[1]), "post", "riverside", "Clinic post number 1", None, k(clinic.posts[1]), "live", 1),
            (k(post), "post", "riverside", "Clinic post number 2", None, k(post), "live", 1),
            (k(reply), "comment", "ann", "When are flu shots?", k(post), k(post), "live", 1),
            (k(answer), "comment", "riverside", "Mondays 9-12!", k(reply), k(post), "live", 1),
            (k(dm), "message", "ann", "@riverside my DOB is 01/02/1980", None, k(dm), "live", 1),
            (k(dm_answer), "message", "riverside", "Thanks Ann, we will call you", k(dm), k(dm), "live", 1),
        ]
    )
    assert rows == expected
    conversations = {r[0] for r in conn.execute("SELECT conversation_key FROM items WHERE kind = 'message'")}
    assert len(conversations) == 1 and None not in conversations
    # The media file is in the WARC, hashed, and linked from its item.
    (media,) = conn.execute("SELECT url, sha256, size FROM media_files").fetchall()
    assert media["sha256"] == hashlib.sha256(make_png(8, 8, 0)).hexdigest()
    item_media = json.loads(
        conn.execute("SELECT media FROM item_versions WHERE item_key = ?", (k(clinic.posts[0]),)).fetchone()[0]
    )
    assert item_media[0]["sha256"] == media["sha256"] and item_media[0]["description"] == "photo 0"
    assert [tuple(r) for r in conn.execute("SELECT event, count(*) FROM events GROUP BY event")] == [("created", 7)]
    conn.close()
    # verify: every version's WARC record exists, its digest holds and its payload contains the raw JSON.
    result = CliRunner().invoke(app, ["verify", "--config", str(clinic.config())])
    assert result.exit_code == 0, result.output


def test_rerun_without_changes_appends_nothing(clinic):
    clinic.state.add_status(
        clinic.ann["id"], "nice", in_reply_to_id=clinic.posts[0]["id"], created_at=NOW - timedelta(days=1)
    )
    assert clinic.run()[0] == 0
    before = clinic.counts()
    requests_before = len(clinic.server.requests_log)
    assert clinic.run()[0] == 0
    assert clinic.counts() == before
    second = clinic.server.requests_log[requests_before:]
    paths = [p for _, p, _ in second]
    # One page of the own listing, then the re-check of the 3 recent threads (lookup + context each).
    assert paths.count(f"/api/v1/accounts/{clinic.clinic['id']}/statuses") == 1
    assert sum(1 for p in paths if p.endswith("/context")) == 3
    assert not any(p.startswith("/system/") for p in paths), "media already archived must not be fetched again"


def test_paging_through_more_than_one_page(tmp_path, monkeypatch):
    c = Clinic(tmp_path, monkeypatch, posts=95)
    try:
        code, output = c.run()
        assert code == 0, output
        conn = c.db()
        assert conn.execute("SELECT count(*) FROM items WHERE kind = 'post'").fetchone()[0] == 95
        conn.close()
        pages = [q for _, p, q in c.server.requests_log if p.endswith("/statuses")]
        # 40 + 40 + 15, then the empty page that ends the listing (a short page is not proof of the end).
        assert len(pages) == 4 and all("max_id=" in q for q in pages[1:])
        newest = max(int(p["id"]) for p in c.posts)
        cur = c.db().execute("SELECT value FROM cursors WHERE name = 'statuses_newest_id'").fetchone()[0]
        assert int(cur) == newest
    finally:
        c.stop()


def test_edits_before_and_between_runs_keep_every_version(clinic):
    post = clinic.posts[1]
    clinic.state.edit_status(post["id"], "Clinic post number 1 (fixed typo)", at=NOW - timedelta(days=1, hours=12))
    assert clinic.run()[0] == 0
    clinic.state.edit_status(post["id"], "Clinic post number 1 (final)", at=NOW - timedelta(hours=1))
    assert clinic.run()[0] == 0
    conn = clinic.db()
    versions = [
        tuple(r)
        for r in conn.execute(
            "SELECT text, edited_at IS NOT NULL FROM item_versions WHERE item_key = ? ORDER BY id", (clinic.key(post),)
        )
    ]
    assert versions == [
        ("Clinic post number 1", 0),
        ("Clinic post number 1 (fixed typo)", 1),
        ("Clinic post number 1 (final)", 1),
    ]
    events = [
        r[0] for r in conn.execute("SELECT event FROM events WHERE item_key = ? ORDER BY id", (clinic.key(post),))
    ]
    assert events == ["created", "edited", "edited"]
    assert conn.execute("SELECT status, versions FROM items WHERE item_key = ?", (clinic.key(post),)).fetchone()[:] == (
        "edited",
        3,
    )
    conn.close()


def test_deletions_are_recorded_only_with_proof(clinic):
    post, other = clinic.posts[2], clinic.posts[1]
    reply = clinic.state.add_status(
        clinic.bob["id"], "my MRN is 00482913", in_reply_to_id=other["id"], created_at=NOW - timedelta(days=1)
    )
    assert clinic.run()[0] == 0
    clinic.state.delete_status(post["id"])
    clinic.state.delete_status(reply["id"])
    code, output = clinic.run()
    assert code == 0, output
    conn = clinic.db()
    deleted = {
        r["item_key"]: json.loads(r["evidence"])
        for r in conn.execute("SELECT item_key, evidence FROM events WHERE event = 'deleted'")
    }
    assert set(deleted) == {clinic.key(post), clinic.key(reply)}
    assert deleted[clinic.key(post)]["method"] == "lookup" and deleted[clinic.key(post)]["http_status"] == 404
    assert deleted[clinic.key(reply)]["http_status"] == 404
    assert "has blocked this one since" in deleted[clinic.key(reply)]["also_if"]  # what else a 404 can mean
    assert deleted[clinic.key(reply)]["absent_from"]["url"].endswith(f"/statuses/{other['id']}/context")
    statuses = dict(conn.execute("SELECT item_key, status FROM items").fetchall())
    assert statuses[clinic.key(post)] == "deleted" and statuses[clinic.key(reply)] == "deleted"
    assert statuses[clinic.key(other)] == "live"
    conn.close()


def test_a_listing_that_fails_half_way_marks_nothing_deleted(clinic, http_waits):
    other = clinic.posts[1]
    reply = clinic.state.add_status(
        clinic.bob["id"], "thanks", in_reply_to_id=other["id"], created_at=NOW - timedelta(days=1)
    )
    assert clinic.run()[0] == 0
    before = clinic.counts()
    clinic.state.delete_status(reply["id"])
    # The thread's context and every lookup fail: the absence cannot be proven.
    clinic.server.faults.append(Fault(r"/context", status=500, times=100))
    code, output = clinic.run()
    assert code == 1
    assert "HTTP 500" in output
    assert http_waits  # the failing call was retried, after back-off waits
    conn = clinic.db()
    assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 0
    conn.close()
    assert clinic.counts()["item_versions"] == before["item_versions"]
    clinic.server.faults.clear()
    assert clinic.run()[0] == 0
    conn = clinic.db()
    assert conn.execute("SELECT item_key FROM events WHERE event = 'deleted'").fetchall()[0][0] == clinic.key(reply)
    conn.close()


def test_a_failing_account_does_not_stop_the_others(clinic):
    extra = f"""
[[accounts]]
name = "broken"
platform = "mastodon"
api_base = "{clinic.server.base_url}"
account = "@nobody-here"
token_env = "CLINIC_TOKEN"

[[accounts]]
name = "expired"
platform = "mastodon"
api_base = "{clinic.server.base_url}"
token_env = "EXPIRED_TOKEN"
"""
    config = clinic.config(extra)
    result = CliRunner().invoke(
        app, ["run", "--config", str(config), "--quiet"], env={"EXPIRED_TOKEN": "expired-token-value-123"}
    )
    assert result.exit_code == 1
    assert "no account '@nobody-here'" in result.output
    assert "refused the token from $EXPIRED_TOKEN" in result.output and "renew" in result.output
    assert "expired-token-value-123" not in result.output
    conn = clinic.db()
    outcome = dict(conn.execute("SELECT account, status FROM account_runs").fetchall())
    assert outcome == {"clinic": "ok", "broken": "failed", "expired": "failed"}
    assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 3
    conn.close()


def test_rate_limited_run_waits_and_resumes(clinic, http_waits):
    reset = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    clinic.server.faults.append(
        Fault(
            r"/statuses\?",
            status=429,
            times=1,
            body=b'{"error":"Too many requests"}',
            headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset},
        )
    )
    code, output = clinic.run()
    assert code == 0, output
    assert http_waits and 0 < http_waits[0] <= 2.5
    assert clinic.counts()["item_versions"] == 3


def test_token_never_reaches_the_archive_and_warcs_check(clinic):
    clinic.state.add_status(
        clinic.ann["id"], "hello", in_reply_to_id=clinic.posts[0]["id"], created_at=NOW - timedelta(days=1)
    )
    assert clinic.run()[0] == 0
    arch = clinic.tmp_path / "arch"
    for path in arch.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data += gzip.decompress(data)
            assert TOKEN.encode() not in data, path
    warcs = sorted((arch / "warcs").glob("*.warc.gz"))
    assert warcs
    for warc in warcs:
        check = subprocess.run(
            [sys.executable, "-m", "warcio.cli", "check", "-v", str(warc)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout
        assert "sha256:" in gzip.decompress(warc.read_bytes()).decode("utf-8", "replace")
        assert "sha1:" not in gzip.decompress(warc.read_bytes()).decode("utf-8", "replace")


def test_malformed_json_fails_the_account_with_the_record_named(clinic):
    clinic.server.faults.append(Fault(r"/statuses\?", status=200, body=b'[{"id": "1", "content": ', times=1))
    code, output = clinic.run()
    assert code == 1
    assert "is not valid JSON" in output and "WARC record <urn:uuid:" in output
    # The broken response is kept as evidence; the next run completes the work.
    clinic.server.faults.clear()
    assert clinic.run()[0] == 0
    assert clinic.counts()["item_versions"] == 3


def test_unknown_account_name_is_bad_input(clinic):
    code, output = clinic.run("--account", "nope")
    assert code == 2
    assert "no account named 'nope'" in output


def test_redirected_media_records_every_hop_and_rebuilds(clinic, tmp_path):
    media_path = r"/system/media_attachments/files/\d+/original/image\.png$"
    clinic.server.faults.append(Fault(media_path, status=302, body=b"", times=10, headers={"Location": "?served=cdn"}))
    code, output = clinic.run()
    assert code == 0, output
    conn = clinic.db()
    (url, sha, warc_file, offset) = conn.execute(
        "SELECT url, sha256, warc_file, warc_offset FROM media_files"
    ).fetchone()
    conn.close()
    assert sha == hashlib.sha256(make_png(8, 8, 0)).hexdigest()
    data = gzip.decompress((clinic.tmp_path / "arch" / "warcs" / warc_file).read_bytes())
    assert b"HTTP/1.1 302 Found" in data and b"served=cdn" in data  # the redirect is evidence too
    assert CliRunner().invoke(app, ["verify", "--config", str(clinic.config())]).exit_code == 0
    out = tmp_path / "rebuilt.db"
    result = CliRunner().invoke(app, ["rebuild", "--config", str(clinic.config()), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rebuilt = sqlite3.connect(out)
    assert rebuilt.execute("SELECT url, sha256, warc_file, warc_offset FROM media_files").fetchall() == [
        (url, sha, warc_file, offset)
    ]
    assert rebuilt.execute("SELECT count(*) FROM item_versions").fetchone()[0] == clinic.counts()["item_versions"]


def test_a_media_file_that_answers_401_is_a_notice_not_a_refused_token(clinic):
    """Media go without the token, so a 401 there (a CDN wanting its own signature; X's DM media behind OAuth
    1.0a) says nothing of the account's token: the item is kept without the file, and the run goes on."""
    clinic.server.faults.append(Fault(r"/system/media_attachments/", status=401, times=1))
    code, output = clinic.run()
    assert code == 0, output
    assert "answered HTTP 401; kept the item without it" in output and "renew" not in output
    conn = clinic.db()
    kept = conn.execute("SELECT count(*) FROM items WHERE item_key = ?", (clinic.key(clinic.posts[0]),)).fetchone()
    conn.close()
    assert kept[0] == 1 and clinic.counts()["media_files"] == 0
    # The next run fetches the file once it is served.
    code, output = clinic.run()
    assert code == 0 and clinic.counts()["media_files"] == 1, output


def assert_rebuild_equals(clinic: Clinic, config: Path) -> None:
    """`archiver rebuild` from the WARCs alone gives the same versions, events, media, cursors and accounts."""
    from tests.test_rebuild import COMPARED  # late: test_rebuild imports this module's neighbours

    out = clinic.tmp_path / "rebuilt.db"
    result = CliRunner().invoke(app, ["rebuild", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    live, rebuilt = clinic.db(), sqlite3.connect(out)
    for name, query in COMPARED.items():
        assert rebuilt.execute(query).fetchall() == [tuple(r) for r in live.execute(query).fetchall()], name
    live.close()
    rebuilt.close()


def fates(conn: sqlite3.Connection, key: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT event FROM events WHERE item_key = ? ORDER BY id", (key,))]


def test_replies_of_a_deleted_root_are_looked_up_while_its_thread_is_in_the_window(clinic):
    """Mastodon keeps the replies of a deleted status, and a deleted root has no context to read: while its
    thread is in the re-check window, each known reply is looked up by id, so a reply deleted or edited with
    or after its root is recorded, not left live in the archive for good."""
    post = clinic.posts[2]
    kept = clinic.state.add_status(
        clinic.ann["id"], "Reply that will be edited", in_reply_to_id=post["id"], created_at=NOW - timedelta(days=1)
    )
    gone = clinic.state.add_status(
        clinic.bob["id"],
        "My MRN is 00482913, please call",
        in_reply_to_id=post["id"],
        created_at=NOW - timedelta(days=1),
    )
    later = clinic.state.add_status(
        clinic.bob["id"], "and my DOB is 01/02/1980", in_reply_to_id=kept["id"], created_at=NOW - timedelta(hours=20)
    )
    quiet = clinic.state.add_status(
        clinic.ann["id"], "Thank you", in_reply_to_id=post["id"], created_at=NOW - timedelta(hours=19)
    )
    assert clinic.run()[0] == 0
    # The clinic deletes its post; Bob deletes his reply with it; Ann edits hers.
    clinic.state.delete_status(post["id"])
    clinic.state.delete_status(gone["id"])
    clinic.state.edit_status(kept["id"], "Reply edited after the root was deleted", at=NOW - timedelta(minutes=5))
    code, output = clinic.run()
    assert code == 0, output
    conn = clinic.db()
    status = dict(conn.execute("SELECT item_key, status FROM items").fetchall())
    k = clinic.key
    assert (status[k(post)], status[k(gone)], status[k(kept)], status[k(later)]) == (
        "deleted",
        "deleted",
        "edited",
        "live",
    )
    evidence = json.loads(
        conn.execute("SELECT evidence FROM events WHERE item_key = ? AND event = 'deleted'", (k(gone),)).fetchone()[0]
    )
    assert evidence["method"] == "lookup" and evidence["http_status"] == 404
    assert evidence["url"].endswith(f"/api/v1/statuses/{gone['id']}") and "also_if" in evidence
    assert evidence["under_deleted"]["item_key"] == k(post)
    assert evidence["under_deleted"]["url"].endswith(f"/api/v1/statuses/{post['id']}")
    texts = [r[0] for r in conn.execute("SELECT text FROM item_versions WHERE item_key = ? ORDER BY id", (k(kept),))]
    assert texts == ["Reply that will be edited", "Reply edited after the root was deleted"]
    # Mastodon nulled the orphans' in_reply_to_id: they still answer the root archived, and that is no edit.
    replies = conn.execute("SELECT item_key, parent_key, versions FROM items WHERE parent_key IS NOT NULL").fetchall()
    assert sorted(tuple(r) for r in replies) == sorted(
        [(k(kept), k(post), 2), (k(gone), k(post), 1), (k(later), k(kept), 1), (k(quiet), k(post), 1)]
    )
    conn.close()
    # Nothing new: the deleted thread costs its root's lookup and one lookup a live reply, and appends nothing.
    before, asked = clinic.counts(), len(clinic.server.requests_log)
    assert clinic.run()[0] == 0
    assert clinic.counts() == before
    paths = [p for _, p, _ in clinic.server.requests_log[asked:]]
    thread = {f"/api/v1/statuses/{s['id']}" for s in (post, gone, kept, later, quiet)}
    looked_up = sorted(f"/api/v1/statuses/{s['id']}" for s in (post, kept, later, quiet))
    assert sorted(p for p in paths if p in thread) == looked_up
    assert f"/api/v1/statuses/{post['id']}/context" not in paths
    # A reply deleted after its root was: recorded by the next run's lookup.
    clinic.state.delete_status(later["id"])
    assert clinic.run()[0] == 0
    conn = clinic.db()
    assert fates(conn, k(later)) == ["created", "deleted"]
    conn.close()
    assert_rebuild_equals(clinic, clinic.config())


def test_a_deleted_root_that_answers_again_is_restored(clinic):
    """A 404 can be undone (a moderator's removal reversed on appeal, an author's block lifted): a deleted root is
    looked up again while its thread is in the window, and recorded restored when it answers."""
    post = clinic.posts[1]
    reply = clinic.state.add_status(
        clinic.ann["id"], "When are flu shots?", in_reply_to_id=post["id"], created_at=NOW - timedelta(days=1)
    )
    assert clinic.run()[0] == 0
    clinic.state.delete_status(post["id"], by_moderator=True)
    assert clinic.run()[0] == 0
    clinic.state.restore_status(post["id"])
    code, output = clinic.run()
    assert code == 0, output
    conn = clinic.db()
    assert fates(conn, clinic.key(post)) == ["created", "deleted", "restored"]
    status = dict(conn.execute("SELECT item_key, status FROM items").fetchall())
    assert status[clinic.key(post)] == "live" and status[clinic.key(reply)] == "live"
    conn.close()
    assert_rebuild_equals(clinic, clinic.config())


TWO_ACCOUNTS = """
[archive]
dir = "arch"
recheck_days = 14
{blocks}
"""
ACCOUNT_BLOCK = """
[[accounts]]
name = "{name}"
platform = "mastodon"
api_base = "{base}"
account = "@{handle}"
token_env = "CLINIC_TOKEN"
"""


def test_two_accounts_on_one_instance_weigh_each_others_replies_in_a_thread(tmp_path, monkeypatch):
    """The hospital's emergency department replies in the clinic's thread and runs first: its run archives
    the thread's replies under its own name. The clinic's re-check of the thread weighs them all the same,
    whatever account they are filed under, so Bob's deleted reply is recorded, and Ann's edit is a new
    version filed under the clinic, whose run captured it."""
    clinic = Clinic(tmp_path, monkeypatch, posts=1)
    try:
        er = clinic.state.add_account("er", "Riverside Emergency")
        config = tmp_path / "two.toml"
        blocks = [("er", "er"), ("clinic", "riverside")]
        config.write_text(
            TWO_ACCOUNTS.format(
                blocks="".join(ACCOUNT_BLOCK.format(name=n, handle=h, base=clinic.server.base_url) for n, h in blocks)
            )
        )

        def run() -> None:
            result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
            assert result.exit_code == 0, result.output

        post = clinic.posts[0]
        run()
        clinic.state.add_status(
            er["id"], "Call the ER line for this", in_reply_to_id=post["id"], created_at=NOW - timedelta(hours=3)
        )
        phi = clinic.state.add_status(
            clinic.bob["id"], "My MRN is 00482913", in_reply_to_id=post["id"], created_at=NOW - timedelta(hours=2)
        )
        ann = clinic.state.add_status(
            clinic.ann["id"], "Thanks all", in_reply_to_id=post["id"], created_at=NOW - timedelta(hours=1)
        )
        run()
        conn = clinic.db()
        filed = dict(conn.execute("SELECT item_key, account FROM items").fetchall())
        assert filed[clinic.key(phi)] == "er" and filed[clinic.key(ann)] == "er" and filed[clinic.key(post)] == "clinic"
        conn.close()
        clinic.state.delete_status(phi["id"])
        clinic.state.edit_status(ann["id"], "Thanks all, see you Monday", at=NOW - timedelta(minutes=5))
        run()
        conn = clinic.db()
        (last_run,) = conn.execute("SELECT id FROM runs ORDER BY rowid DESC LIMIT 1").fetchone()
        assert fates(conn, clinic.key(phi)) == ["created", "deleted"]
        deletions = dict(conn.execute("SELECT account, deletions FROM account_runs WHERE run_id = ?", (last_run,)))
        assert deletions == {"er": 0, "clinic": 1}
        versions = conn.execute(
            "SELECT account, text FROM item_versions WHERE item_key = ? ORDER BY id", (clinic.key(ann),)
        ).fetchall()
        assert [tuple(v) for v in versions] == [("er", "Thanks all"), ("clinic", "Thanks all, see you Monday")]
        conn.close()
        assert_rebuild_equals(clinic, config)
    finally:
        clinic.stop()


def test_a_reply_whose_parent_was_deleted_keeps_its_parent_and_is_still_weighed(clinic):
    """Deleting a reply nulls its own replies' in_reply_to_id (Mastodon's schema): they drop out of the thread's
    context and are looked up by id each re-check, still filed as replies to the parent archived, with no
    version for the link the platform dropped; a later edit and deletion are recorded."""
    post = clinic.posts[0]
    parent = clinic.state.add_status(
        clinic.ann["id"], "my results?", in_reply_to_id=post["id"], created_at=NOW - timedelta(days=1)
    )
    child = clinic.state.add_status(
        clinic.bob["id"], "MRN 00482913", in_reply_to_id=parent["id"], created_at=NOW - timedelta(hours=20)
    )
    assert clinic.run()[0] == 0
    clinic.state.delete_status(parent["id"])
    assert clinic.run()[0] == 0
    clinic.state.edit_status(child["id"], "MRN removed", at=NOW - timedelta(minutes=5))
    assert clinic.run()[0] == 0
    conn = clinic.db()
    versions = conn.execute(
        "SELECT kind, parent_key, text FROM item_versions WHERE item_key = ? ORDER BY id", (clinic.key(child),)
    ).fetchall()
    assert [tuple(v) for v in versions] == [
        ("comment", clinic.key(parent), "MRN 00482913"),
        ("comment", clinic.key(parent), "MRN removed"),
    ]
    conn.close()
    clinic.state.delete_status(child["id"])
    assert clinic.run()[0] == 0
    conn = clinic.db()
    assert fates(conn, clinic.key(child)) == ["created", "edited", "deleted"]
    conn.close()


def test_runs_captured_before_the_deleted_root_lookups_still_rebuild_and_verify(clinic, monkeypatch):
    """Runs captured by the connector of before revisions (request revision 1, a warcinfo that names none) never
    looked up a deleted root or its replies: today's connector replays them asking what they asked, so the
    rebuild and verify --replay pass; a run at the newest revision then makes the lookups and rebuilds too."""
    post = clinic.posts[2]
    kept = clinic.state.add_status(
        clinic.ann["id"], "Reply that will be edited", in_reply_to_id=post["id"], created_at=NOW - timedelta(days=1)
    )
    gone = clinic.state.add_status(
        clinic.bob["id"], "My MRN is 00482913", in_reply_to_id=post["id"], created_at=NOW - timedelta(hours=20)
    )
    k = clinic.key
    with captured_at_revision_1(monkeypatch, MastodonConnector, named=False):
        assert clinic.run()[0] == 0
        clinic.state.delete_status(post["id"])
        clinic.state.delete_status(gone["id"])
        clinic.state.edit_status(kept["id"], "Edited after the root was deleted", at=NOW - timedelta(minutes=5))
        asked = len(clinic.server.requests_log)
        assert clinic.run()[0] == 0
        assert clinic.run()[0] == 0
    paths = [p for _, p, _ in clinic.server.requests_log[asked:]]
    # Revision 1: the root looked up once, while not yet known deleted; its replies never.
    assert paths.count(f"/api/v1/statuses/{post['id']}") == 1
    assert not {f"/api/v1/statuses/{s['id']}" for s in (kept, gone)} & set(paths)
    conn = clinic.db()
    status = dict(conn.execute("SELECT item_key, status FROM items").fetchall())
    assert (status[k(post)], status[k(gone)], status[k(kept)]) == ("deleted", "live", "live")
    conn.close()
    # Upgraded: the newest revision looks each reply of the deleted root up, and says so in its warcinfo.
    assert clinic.run()[0] == 0
    conn = clinic.db()
    status = dict(conn.execute("SELECT item_key, status FROM items").fetchall())
    assert (status[k(post)], status[k(gone)], status[k(kept)]) == ("deleted", "deleted", "edited")
    (evidence,) = conn.execute("SELECT evidence FROM events WHERE item_key = ? AND event = 'deleted'", (k(gone),))
    assert json.loads(evidence[0])["under_deleted"]["item_key"] == k(post)
    conn.close()
    newest = {"mastodon": MastodonConnector.REQUEST_REVISION}
    assert recorded_revisions(clinic.tmp_path / "arch" / "warcs") == [{}, {}, {}, newest]
    assert_rebuild_equals(clinic, clinic.config())
    result = verify_replay(clinic.config())
    assert result.exit_code == 0, result.output


def test_an_attachment_served_from_a_new_url_is_a_version_that_says_it_is_no_edit(clinic):
    """An instance re-caching a file (media_proxy) serves the same attachment id from another URL: the new
    version is kept (the URL is what was published), and its event says no one edited the post. A changed alt
    text is an edit."""
    assert clinic.run()[0] == 0
    post = clinic.posts[0]
    status = clinic.state.statuses[post["id"]]
    attachment = status["media_attachments"][0]
    moved = f"{MEDIA_PREFIX}cache/{attachment['id']}/original/image.png"
    clinic.state.media[moved] = make_png(8, 8, 0)
    attachment["url"] = f"{clinic.server.base_url}{moved}"
    assert clinic.run()[0] == 0
    attachment["description"] = "photo 0, now with an alt text naming the patient"
    assert clinic.run()[0] == 0
    conn = clinic.db()
    events = conn.execute(
        "SELECT event, evidence FROM events WHERE item_key = ? ORDER BY id", (clinic.key(post),)
    ).fetchall()
    urls = [r[0] for r in conn.execute("SELECT url FROM media_files ORDER BY rowid")]
    conn.close()
    assert [e["event"] for e in events] == ["created", "edited", "edited"]
    assert json.loads(events[1]["evidence"])["not_an_edit"].startswith("only the attachments' URLs changed")
    assert "not_an_edit" not in json.loads(events[2]["evidence"])
    assert any(url.endswith(moved) for url in urls)  # the file at its new place is captured too
    assert_rebuild_equals(clinic, clinic.config())
