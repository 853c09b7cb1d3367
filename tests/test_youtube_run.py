"""YouTube end to end: a loopback server playing the Data API v3, archived by real runs.

Each test builds a clinic's channel with hand-written videos, comment threads and replies in the documented
shapes and asserts exact rows: the uploads chain (channels -> playlistItems -> videos), pageToken paging,
all replies through comments.list?parentId=, updatedAt edits, deletions only when a lookup by id no longer
returns the item (never from a failed listing), the quota counted call by call with a stop that names the
videos left and a next run that reads them, a quotaExceeded 403 handled the same way (not as an auth
failure), a run that stops (a failure, a quota stop) after storing videos but before reading their comments
followed by one that reads them all, short-term rate-limit 403s waited out, no key or token in any byte under
the archive, `warcio check`, and a rebuild with the same rows.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from archiver.cli import app
from archiver.config import EXAMPLE_CONFIG, load_config
from archiver.connectors import connector_for
from archiver.connectors.youtube import (
    FOLLOW_UPS_CURSOR,
    PACIFIC,
    PENDING_CURSOR,
    QUOTA_CURSOR,
    YouTubeConnector,
)
from archiver.demo.loopback import Fault
from archiver.demo.youtube_server import (
    QUOTA_EXCEEDED,
    SampleYouTubeServer,
    YouTubeState,
    _page_token,
    google_error,
)
from archiver.errors import AuthError
from archiver.pipeline import run_archive
from tests.revisions import recorded_revisions, verify_replay
from tests.test_rebuild import COMPARED

API_KEY = "AIzaSyTestKey-riverside-Zq81mPx0"
OAUTH = "ya29.test-oauth-token-Lw93Hd0Kz"
NOW = datetime.now(UTC).replace(microsecond=0)


class Channel:
    """A clinic's channel with a few videos, served on loopback."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, videos: int = 3, server_quota: int = 10_000):
        self.state = YouTubeState()
        self.channel = self.state.add_channel("Riverside Clinic", "@RiversideClinic", NOW - timedelta(days=900))
        self.videos = [
            self.state.add_video(
                self.channel["id"],
                f"Health tip {i}",
                f"Episode {i} of our series",
                published_at=NOW - timedelta(days=3, hours=i),
            )
            for i in range(videos)
        ]
        self.tmp_path = tmp_path
        monkeypatch.setenv("RIVERSIDE_YT_KEY", API_KEY)
        monkeypatch.setenv("RIVERSIDE_YT_OAUTH", OAUTH)
        self.server = SampleYouTubeServer(self.state, api_key=API_KEY, oauth_token=OAUTH, daily_quota=server_quota)
        self.server.start()

    def config(self, options: str = "", account: str | None = None, token_env: str = "RIVERSIDE_YT_KEY") -> Path:
        path = self.tmp_path / "archiver.toml"
        path.write_text(
            f"""
[archive]
dir = "arch"
recheck_days = 14

[[accounts]]
name = "riverside-yt"
platform = "youtube"
api_base = "{self.server.base_url}"
{f'account = "{self.channel["id"] if account is None else account}"' if account != "" else ""}
token_env = "{token_env}"
{options}
"""
        )
        return path

    def run(self, *args: str, **config: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["run", "--config", str(self.config(**config)), "--quiet", *args])
        return result.exit_code, result.output

    def last_run_quota_day(self) -> str:
        """The quota day (Pacific date) the last run started in: a run at the real time may begin after a
        midnight Pacific that NOW, taken at import, was before. Read from the run id, which is the run's own clock
        reading to the second (the connector's quota day comes from the same reading); runs.started_at is another
        reading, a moment later, which a midnight could fall before."""
        conn = self.db()
        (run_id,) = conn.execute("SELECT id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
        conn.close()
        started = datetime.strptime(run_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return started.astimezone(PACIFIC).date().isoformat()

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.tmp_path / "arch" / "archive.db")
        conn.row_factory = sqlite3.Row
        return conn

    def rows(self, archive: str = "arch") -> list[tuple]:
        conn = sqlite3.connect(self.tmp_path / archive / "archive.db")
        found = [
            tuple(r)
            for r in conn.execute(
                "SELECT item_key, kind, author_handle, text, parent_key, thread_key, status, versions FROM items "
                "ORDER BY created_at, item_key"
            )
        ]
        conn.close()
        return found

    def cursor(self, name: str) -> str | None:
        conn = self.db()
        row = conn.execute("SELECT value FROM cursors WHERE name = ? ORDER BY id DESC LIMIT 1", (name,)).fetchone()
        conn.close()
        return row[0] if row else None

    def rows_of_an_uninterrupted_run(self) -> list[tuple]:
        """The rows one run without faults or quota stops archives from the channel as it is now (a fresh
        archive beside the test's, same server)."""
        path = self.tmp_path / "uninterrupted" / "archiver.toml"
        path.parent.mkdir()
        path.write_text(self.config().read_text())
        assert run_archive(load_config(path)).exit_code == 0
        return self.rows("uninterrupted/arch")

    def stop(self) -> None:
        self.server.stop()


def v(video: dict) -> str:
    return f"youtube:video:{video['id']}"


def c(comment: dict) -> str:
    return f"youtube:comment:{comment['id']}"


@pytest.fixture
def channel(tmp_path, monkeypatch):
    ch = Channel(tmp_path, monkeypatch)
    yield ch
    ch.stop()


def test_first_run_archives_uploads_threads_and_every_reply(channel):
    state, video = channel.state, channel.videos[0]
    at = NOW - timedelta(days=2)
    question = state.add_comment(video["id"], "@AnnPatient", "Does this apply to kids?", at=at)
    replies = [
        state.add_reply(
            question["id"], "@RiversideClinic" if i % 2 else "@BobPublic", f"reply {i}", at=at + timedelta(hours=i + 1)
        )
        for i in range(4)
    ]
    single = state.add_comment(channel.videos[1]["id"], "@BobPublic", "Great tip", at=at + timedelta(minutes=30))
    code, output = channel.run()
    assert code == 0, output
    title = lambda i: f"Health tip {i}\n\nEpisode {i} of our series"  # noqa: E731
    expected = [
        *[
            (v(channel.videos[i]), "post", None, title(i), None, v(channel.videos[i]), "live", 1)
            for i in reversed(range(3))
        ],
        (c(question), "comment", "@AnnPatient", "Does this apply to kids?", v(video), v(video), "live", 1),
        (c(single), "comment", "@BobPublic", "Great tip", v(channel.videos[1]), v(channel.videos[1]), "live", 1),
        *[
            (c(r), "comment", r["snippet"]["authorDisplayName"], f"reply {i}", c(question), v(video), "live", 1)
            for i, r in enumerate(replies)
        ],
    ]
    assert channel.rows() == expected
    # The thread showed 2 of its 4 replies: comments.list?parentId= was asked for all of them.
    assert [q["parentId"] for q in channel.server.api_calls("comments")] == [question["id"]]
    assert {q["videoId"] for q in channel.server.api_calls("commentThreads")} == {x["id"] for x in channel.videos}
    # The uploads chain, with the key as the `key` parameter.
    assert channel.server.api_calls("channels")[0]["id"] == channel.channel["id"]
    assert channel.server.api_calls("playlistItems")[0]["playlistId"] == "UU" + channel.channel["id"][2:]
    assert channel.server.api_calls("videos")[0]["part"] == "snippet,status,statistics"
    # Quota: every call counted, and the count kept for the quota day (midnight Pacific).
    day = channel.last_run_quota_day()
    assert channel.cursor(QUOTA_CURSOR) == f"{day}:{channel.server.units_spent}"
    conn = channel.db()
    assert conn.execute("SELECT count(*) FROM media_files").fetchone()[0] == 3  # the thumbnails
    identity = conn.execute("SELECT platform_account_id, handle FROM accounts").fetchone()
    assert tuple(identity) == (channel.channel["id"], "@riversideclinic")
    conn.close()
    assert CliRunner().invoke(app, ["verify", "--config", str(channel.config())]).exit_code == 0


def test_page_token_paging_of_uploads_threads_and_replies(tmp_path, monkeypatch):
    ch = Channel(tmp_path, monkeypatch, videos=60)
    try:
        busy = ch.videos[-1]
        at = NOW - timedelta(days=2)
        threads = [ch.state.add_comment(busy["id"], f"@viewer{i}", f"thread {i}", at=at) for i in range(130)]
        for i in range(105):
            ch.state.add_reply(threads[0]["id"], f"@replier{i}", f"reply {i}", at=at + timedelta(minutes=i))
        code, output = ch.run()
        assert code == 0, output
        conn = ch.db()
        assert dict(conn.execute("SELECT kind, count(*) FROM items GROUP BY kind").fetchall()) == {
            "post": 60,
            "comment": 235,
        }
        conn.close()
        playlist = ch.server.api_calls("playlistItems")
        assert len(playlist) == 2 and "pageToken" not in playlist[0] and playlist[1]["pageToken"]
        assert [len(q["id"].split(",")) for q in ch.server.api_calls("videos")] == [50, 10]
        busy_pages = [q for q in ch.server.api_calls("commentThreads") if q["videoId"] == busy["id"]]
        assert len(busy_pages) == 2 and busy_pages[1]["pageToken"]
        reply_pages = ch.server.api_calls("comments")
        assert len(reply_pages) == 2 and all(q["parentId"] == threads[0]["id"] for q in reply_pages)
    finally:
        ch.stop()


def test_comment_edits_and_video_edits_are_new_versions(channel):
    video = channel.videos[0]
    comment = channel.state.add_comment(
        video["id"], "@AnnPatient", "whats the clinic number", at=NOW - timedelta(days=2)
    )
    assert channel.run()[0] == 0
    assert channel.run()[0] == 0  # nothing changed: nothing appended
    conn = channel.db()
    assert conn.execute("SELECT count(*) FROM item_versions").fetchone()[0] == 4
    conn.close()
    channel.state.edit_comment(comment["id"], "What's the clinic's number?", at=NOW - timedelta(hours=1))
    channel.state.edit_video(video["id"], title="Health tip 0 (updated)")
    assert channel.run()[0] == 0
    conn = channel.db()
    versions = [
        tuple(r)
        for r in conn.execute(
            "SELECT text, edited_at, json_extract(raw_json, '$.snippet.textOriginal') FROM item_versions "
            "WHERE item_key = ? ORDER BY id",
            (c(comment),),
        )
    ]
    assert versions == [
        ("whats the clinic number", None, "whats the clinic number"),
        (
            "What's the clinic's number?",
            channel.state.comments[comment["id"]]["snippet"]["updatedAt"],
            "What's the clinic's number?",
        ),
    ]
    titles = [r[0] for r in conn.execute("SELECT text FROM item_versions WHERE item_key = ? ORDER BY id", (v(video),))]
    assert [t.split("\n")[0] for t in titles] == ["Health tip 0", "Health tip 0 (updated)"]
    assert dict(conn.execute("SELECT event, count(*) FROM events GROUP BY event").fetchall()) == {
        "created": 4,
        "edited": 2,
    }
    conn.close()


def test_deletions_only_when_a_lookup_no_longer_returns_the_item(channel, http_waits):
    video, gone_video = channel.videos[0], channel.videos[2]
    thread = channel.state.add_comment(video["id"], "@AnnPatient", "my MRN is 00482913", at=NOW - timedelta(days=2))
    reply = channel.state.add_reply(
        thread["id"], "@RiversideClinic", "Please do not post that here", at=NOW - timedelta(days=1)
    )
    kept = channel.state.add_comment(video["id"], "@BobPublic", "thanks", at=NOW - timedelta(days=2))
    assert channel.run()[0] == 0
    channel.state.delete_comment(thread["id"])  # takes its reply with it
    channel.state.delete_video(gone_video["id"])
    # The comment listing fails: nothing is concluded from the half-read video.
    channel.server.faults.append(Fault(r"commentThreads\?", status=500, times=100, body=b'{"error": {"code": 500}}'))
    code, output = channel.run()
    assert code == 1 and "HTTP 500" in output
    assert http_waits  # the failing call was retried, after back-off waits
    conn = channel.db()
    deleted = [r[0] for r in conn.execute("SELECT item_key FROM events WHERE event = 'deleted'")]
    assert deleted == [v(gone_video)]  # the video's lookup by id answered without it
    conn.close()
    channel.server.faults.clear()
    code, output = channel.run()
    assert code == 0, output
    conn = channel.db()
    deleted = {
        r["item_key"]: json.loads(r["evidence"])
        for r in conn.execute("SELECT item_key, evidence FROM events WHERE event = 'deleted'")
    }
    assert set(deleted) == {v(gone_video), c(thread), c(reply)}
    evidence = deleted[c(thread)]
    assert evidence["method"] == "lookup" and evidence["looked_up"] == thread["id"]
    assert "/youtube/v3/comments?" in evidence["url"] and "key=[REDACTED]" in evidence["url"]
    assert evidence["absent_from"].startswith(f"the comment threads of video {video['id']}")
    assert deleted[v(gone_video)]["absent_from"].startswith("the channel's uploads playlist")
    # With an API key a private video is absent the same way, and a held comment always: the evidence says so.
    assert deleted[v(gone_video)]["also_if"].startswith("the video was made private")
    assert evidence["also_if"].startswith("the comment is held for review")
    assert dict(conn.execute("SELECT item_key, status FROM items").fetchall())[c(kept)] == "live"
    conn.close()


def test_quota_stop_names_the_videos_left_and_the_next_day_reads_them(channel):
    for i, video in enumerate(channel.videos):
        channel.state.add_comment(video["id"], "@AnnPatient", f"question on video {i}", at=NOW - timedelta(days=2))
    config = load_config(channel.config(options="options = {daily_quota = 5}"))
    # 5 units: channels, playlistItems, videos, then the comments of two videos; the third must wait.
    # noon Pacific of NOW's quota day: "later the same quota day" must not cross a midnight Pacific
    day_one = datetime.combine(NOW.astimezone(PACIFIC).date(), time(12), PACIFIC).astimezone(UTC)
    first = run_archive(config, now=lambda: day_one)
    (result,) = first.accounts
    assert result.status == "ok" and first.exit_code == 0
    left = channel.videos[0]["id"]  # the uploads playlist lists the last uploaded first: video 0 comes last
    (notice,) = result.notices
    assert "YouTube quota stop" in notice and "5 of the daily_quota of 5 units" in notice
    assert f"comments of 1 video(s) remain for the next run: {left}" in notice
    assert channel.server.units_spent == 5
    assert channel.cursor(PENDING_CURSOR) == left
    conn = channel.db()
    assert conn.execute("SELECT count(*) FROM items WHERE kind = 'comment'").fetchone()[0] == 2
    conn.close()
    # Later the same quota day: not one call; the run says what waits.
    calls = len(channel.server.requests_log)
    again = run_archive(config, now=lambda: day_one + timedelta(minutes=10))
    assert again.exit_code == 0 and len(channel.server.requests_log) == calls
    assert left in again.accounts[0].notices[0]
    # The next quota day (after midnight Pacific) starts with the video left over.
    channel.server.reset_quota()
    next_day = datetime.combine(
        day_one.astimezone(PACIFIC).date() + timedelta(days=1), datetime.min.time(), PACIFIC
    ) + timedelta(hours=1)
    third = run_archive(config, now=lambda: next_day.astimezone(UTC))
    assert third.exit_code == 0
    assert channel.server.api_calls("commentThreads")[2]["videoId"] == left
    # The re-check window's videos follow, within the same 5 units: the last of them waits again.
    assert third.accounts[0].notices[0].endswith(f"remain for the next run: {channel.videos[1]['id']}")
    conn = channel.db()
    texts = {r[0] for r in conn.execute("SELECT text FROM items WHERE kind = 'comment'")}
    conn.close()
    assert texts == {f"question on video {i}" for i in range(3)}
    assert channel.cursor(QUOTA_CURSOR).startswith(next_day.date().isoformat() + ":")


def test_quota_exceeded_403_is_a_quota_stop_not_an_auth_failure(tmp_path, monkeypatch):
    ch = Channel(tmp_path, monkeypatch, server_quota=4)
    try:
        for video in ch.videos:
            ch.state.add_comment(video["id"], "@AnnPatient", "hello", at=NOW - timedelta(days=2))
        code, output = ch.run()
        assert code == 0, output
        conn = ch.db()
        (status, error) = conn.execute("SELECT status, error FROM account_runs").fetchone()
        (summary,) = conn.execute("SELECT summary FROM run_results").fetchone()
        assert conn.execute("SELECT count(*) FROM items WHERE kind = 'comment'").fetchone()[0] == 1
        conn.close()
        assert (status, error) == ("ok", None)
        notices = json.loads(summary)["accounts"][0]["notices"]
        assert "403 quotaExceeded" in notices[0] and "comments of 2 video(s) remain" in notices[0]
        assert "renew" not in output
        day, units = ch.cursor(QUOTA_CURSOR).split(":")
        assert int(units) == 10_000  # the project's quota is spent for the day, whatever was configured
        assert day == ch.last_run_quota_day()
        assert QUOTA_EXCEEDED["error"]["errors"][0]["reason"] == "quotaExceeded"
    finally:
        ch.stop()


def test_a_bad_key_is_an_auth_failure_and_the_key_is_never_shown(channel, monkeypatch):
    monkeypatch.setenv("WRONG_KEY", "AIzaSyWrongKey-00000000000")
    code, output = channel.run(token_env="WRONG_KEY")
    assert code == 1
    assert "refused the credential from $WRONG_KEY" in output and "renew" in output
    assert "AIzaSyWrongKey-00000000000" not in output


def test_oauth_token_by_reference_as_a_bearer_header(channel):
    private = channel.state.add_video(
        channel.channel["id"], "Staff only", "internal", published_at=NOW, privacy="private"
    )
    code, output = channel.run(options='options = {auth = "oauth"}', account="", token_env="RIVERSIDE_YT_OAUTH")
    assert code == 0, output
    assert channel.server.api_calls("channels")[0] == {"part": "snippet,contentDetails", "mine": "true"}
    assert not any("key=" in q for _, _, q in channel.server.requests_log)
    conn = channel.db()
    assert conn.execute("SELECT visibility FROM items WHERE item_key = ?", (v(private),)).fetchone()[0] == "private"
    conn.close()
    for path in (channel.tmp_path / "arch").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            data += gzip.decompress(data) if path.suffix == ".gz" else b""
            assert OAUTH.encode() not in data, path


def test_no_key_under_the_archive_warcs_check_and_rebuild_gives_the_same_rows(channel, tmp_path):
    video = channel.videos[0]  # listed last: its replies and the lookup wait for the second run
    thread = channel.state.add_comment(video["id"], "@AnnPatient", "first", at=NOW - timedelta(days=2))
    for i in range(3):
        channel.state.add_reply(thread["id"], "@BobPublic", f"r{i}", at=NOW - timedelta(days=1, hours=i))
    gone = channel.state.add_comment(video["id"], "@BobPublic", "to be removed", at=NOW - timedelta(days=2))
    config = load_config(channel.config(options="options = {daily_quota = 6}"))
    assert run_archive(config).exit_code == 0  # stops on quota: one video waits
    channel.state.edit_comment(thread["id"], "first (edited)", at=NOW - timedelta(minutes=3))
    channel.state.delete_comment(gone["id"])
    channel.server.reset_quota()
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    assert run_archive(config, now=lambda: tomorrow).exit_code == 0
    arch = channel.tmp_path / "arch"
    for path in arch.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data += gzip.decompress(data)
            assert API_KEY.encode() not in data, path
    warcs = sorted((arch / "warcs").glob("*.warc.gz"))
    assert len(warcs) == 2
    for warc in warcs:
        check = subprocess.run(
            [sys.executable, "-m", "warcio.cli", "check", "-v", str(warc)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout
    out = tmp_path / "rebuilt.db"
    # The replay takes its quota decisions from the same options (daily_quota) as the live runs.
    rebuild_config = channel.config(options="options = {daily_quota = 6}")
    result = CliRunner().invoke(app, ["rebuild", "--config", str(rebuild_config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    live, rebuilt = sqlite3.connect(arch / "archive.db"), sqlite3.connect(out)
    for name, query in COMPARED.items():
        expected = live.execute(query).fetchall()
        assert expected, name
        assert rebuilt.execute(query).fetchall() == expected, name
    statuses = dict(rebuilt.execute("SELECT status, count(*) FROM items GROUP BY status").fetchall())
    assert statuses == {"live": 6, "edited": 1, "deleted": 1}


def test_disabled_comments_are_a_notice_and_prove_nothing(channel):
    video = channel.videos[0]
    kept = channel.state.add_comment(video["id"], "@AnnPatient", "before it was closed", at=NOW - timedelta(days=2))
    assert channel.run()[0] == 0
    channel.state.disabled_comments.add(video["id"])
    config = load_config(channel.config())
    (result,) = run_archive(config).accounts
    assert result.status == "ok" and result.deletions == 0
    assert any(f"video {video['id']}: comments not read (commentsDisabled" in n for n in result.notices)
    conn = channel.db()
    assert conn.execute("SELECT status FROM items WHERE item_key = ?", (c(kept),)).fetchone()[0] == "live"
    conn.close()


def test_check_credential_names_the_channel_or_refuses_the_key(channel):
    account = load_config(channel.config()).accounts[0]
    connector = connector_for("youtube", account)
    assert connector.check_credential(account, API_KEY, 5).who == "@riversideclinic"
    with pytest.raises(AuthError, match="renew"):
        connector.check_credential(account, "AIzaSyNotTheKey-000000", 5)


def test_the_example_configs_linkedin_and_youtube_accounts_are_valid(tmp_path, monkeypatch):
    """`archiver init` writes them commented out; uncommented, they load with their options' defaults filled."""
    lines = EXAMPLE_CONFIG.splitlines()
    blocks, current = [], None
    for line in lines:
        if line == "# [[accounts]]":
            current = ["[[accounts]]"]
            blocks.append(current)
        elif current is not None and line.startswith("# "):
            current.append(line[2:])
        else:
            current = None
    assert len(blocks) == 4  # Facebook, Instagram, LinkedIn, YouTube
    path = tmp_path / "archiver.toml"
    path.write_text(EXAMPLE_CONFIG + "\n" + "\n\n".join("\n".join(b) for b in blocks) + "\n")
    accounts = {a.platform: a for a in load_config(path).accounts}
    assert accounts["linkedin"].options == {"api_version": "202610"}
    assert accounts["youtube"].options == {"auth": "api_key", "daily_quota": 10000}


def test_a_page_token_that_leads_back_is_a_paging_loop(channel):
    assert channel.run()[0] == 0
    playlist = "UU" + channel.channel["id"][2:]
    url = f"{channel.server.base_url}/youtube/v3/playlistItems"
    page = requests.get(url, params={"part": "contentDetails", "playlistId": playlist, "key": API_KEY}, timeout=5)
    looping = {**page.json(), "nextPageToken": _page_token(0)}  # the first page again, and again
    channel.server.faults.append(
        Fault(r"playlistItems\?(?!.*pageToken)", status=200, body=json.dumps(looping).encode())
    )
    code, output = channel.run()
    assert code == 1 and "paging loop" in output
    conn = channel.db()
    assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 0
    conn.close()


def old_videos_with_comments(ch: Channel, count: int) -> list[dict]:
    """Videos published long before the re-check window, each with a thread and a reply: only a run that
    takes them for new (or owed) reads their comments."""
    videos = []
    for i in range(count):
        video = ch.state.add_video(
            ch.channel["id"], f"Archive clip {i}", "from the old site", published_at=NOW - timedelta(days=100 + i)
        )
        thread = ch.state.add_comment(video["id"], "@AnnPatient", f"question on clip {i}", at=NOW - timedelta(days=90))
        ch.state.add_reply(thread["id"], "@RiversideClinic", f"answer on clip {i}", at=NOW - timedelta(days=89))
        videos.append(video)
    return videos


def test_comments_a_failed_run_left_unread_are_read_by_the_next_run(tmp_path, monkeypatch, http_waits):
    ch = Channel(tmp_path, monkeypatch, videos=0)
    try:
        old = old_videos_with_comments(ch, 3)  # listed newest upload first: clip 2, clip 1, clip 0
        ch.server.faults.append(Fault(rf"commentThreads\?.*videoId={old[1]['id']}", status=503, times=100))
        code, output = ch.run()
        assert code == 1 and "HTTP 503" in output
        assert http_waits  # retried after back-off waits, then given up
        # Every video was stored before the comments were read; those of clips 1 and 0 were not.
        conn = ch.db()
        assert conn.execute("SELECT count(*) FROM items WHERE kind = 'post'").fetchone()[0] == 3
        texts = {r[0] for r in conn.execute("SELECT text FROM items WHERE kind = 'comment'")}
        conn.close()
        assert texts == {"question on clip 2", "answer on clip 2"}
        ch.server.faults.clear()
        code, output = ch.run()
        assert code == 0, output
        assert ch.rows() == ch.rows_of_an_uninterrupted_run()
        assert len([r for r in ch.rows() if r[1] == "comment"]) == 6
        assert ch.cursor(FOLLOW_UPS_CURSOR) == ""  # all read: the next run reads only new and recent videos
    finally:
        ch.stop()


def test_a_quota_stop_while_the_videos_are_listed_leaves_their_comments_to_the_next_day(tmp_path, monkeypatch):
    ch = Channel(tmp_path, monkeypatch, videos=0)
    try:
        old_videos_with_comments(ch, 60)  # two videos.list calls: 50 ids, then 10
        config = load_config(ch.config(options="options = {daily_quota = 4}"))
        # 4 units: channels, two playlistItems pages and the first videos.list; the second must wait.
        (first,) = run_archive(config, now=lambda: NOW).accounts
        assert first.status == "ok"
        assert "quota stop" in first.notices[0] and "uploads were not all listed" in first.notices[0]
        conn = ch.db()
        assert conn.execute("SELECT count(*) FROM items WHERE kind = 'post'").fetchone()[0] == 50
        assert conn.execute("SELECT count(*) FROM items WHERE kind = 'comment'").fetchone()[0] == 0
        conn.close()
        ch.server.reset_quota()
        second = run_archive(load_config(ch.config()), now=lambda: NOW + timedelta(days=1))
        assert second.exit_code == 0 and second.accounts[0].notices == []
        assert {q["videoId"] for q in ch.server.api_calls("commentThreads")} == set(ch.state.videos)
        assert ch.rows() == ch.rows_of_an_uninterrupted_run()
        assert len([r for r in ch.rows() if r[1] == "comment"]) == 120
        assert ch.cursor(FOLLOW_UPS_CURSOR) == ""
    finally:
        ch.stop()


@pytest.mark.parametrize("reason", ["rateLimitExceeded", "userRateLimitExceeded"])
def test_a_short_term_rate_limit_403_is_waited_out_and_retried(channel, http_waits, reason):
    video = channel.videos[1]
    comment = channel.state.add_comment(video["id"], "@AnnPatient", "is the clinic open", at=NOW - timedelta(days=2))
    # Unlike the daily quotaExceeded, these limits pass within a minute or so (no Retry-After from Google).
    refused = google_error(403, reason, "Rate Limit Exceeded", "usageLimits")
    channel.server.faults.append(
        Fault(rf"commentThreads\?.*videoId={video['id']}", status=403, times=2, body=json.dumps(refused).encode())
    )
    code, output = channel.run()
    assert code == 0, output
    assert http_waits == [60.0, 60.0]
    assert [q["videoId"] for q in channel.server.api_calls("commentThreads")].count(video["id"]) == 3
    assert c(comment) in {r[0] for r in channel.rows()}
    day = channel.last_run_quota_day()
    assert channel.cursor(QUOTA_CURSOR) == f"{day}:{len(channel.server.requests_log) - 3}"  # the thumbnails are free


def test_comments_that_take_several_days_of_quota_are_read_once_each(tmp_path, monkeypatch):
    """A quota stop hands what is left to the pending list: the next days read those, not again every video
    stored since the first stop."""
    ch = Channel(tmp_path, monkeypatch, videos=0)
    try:
        old = old_videos_with_comments(ch, 6)
        config = load_config(ch.config(options="options = {daily_quota = 5}"))
        # 5 units a day: channels, playlistItems and videos, then the comments of two videos.
        for day in range(4):
            ch.server.reset_quota()
            assert run_archive(config, now=lambda day=day: NOW + timedelta(days=day)).exit_code == 0
        read = [q["videoId"] for q in ch.server.api_calls("commentThreads")]
        assert read == [video["id"] for video in reversed(old)]  # newest upload first; the fourth day none
        assert ch.cursor(PENDING_CURSOR) == "" and ch.cursor(FOLLOW_UPS_CURSOR) == ""
        assert len([r for r in ch.rows() if r[1] == "comment"]) == 12
    finally:
        ch.stop()


# -- a video whose comments the credential may not read (403 forbidden on its commentThreads.list) -------------


def comment_texts(ch: Channel) -> set[str]:
    conn = ch.db()
    texts = {r[0] for r in conn.execute("SELECT text FROM items WHERE kind = 'comment'")}
    conn.close()
    return texts


def last_run_notices(ch: Channel) -> list[str]:
    conn = ch.db()
    (summary,) = conn.execute("SELECT summary FROM run_results ORDER BY rowid DESC LIMIT 1").fetchone()
    conn.close()
    return [n for account in json.loads(summary)["accounts"] for n in account["notices"]]


def assert_rebuilt_as_live(ch: Channel, out: Path) -> None:
    result = CliRunner().invoke(app, ["rebuild", "--config", str(ch.config()), "--out", str(out)])
    assert result.exit_code == 0, result.output
    live, rebuilt = ch.db(), sqlite3.connect(out)
    for name, query in COMPARED.items():
        assert [tuple(r) for r in rebuilt.execute(query)] == [tuple(r) for r in live.execute(query)], name
    live.close()
    rebuilt.close()


def test_a_video_whose_comments_are_forbidden_is_a_notice_and_the_run_goes_on(channel, tmp_path):
    for i, video in enumerate(channel.videos):
        channel.state.add_comment(video["id"], "@AnnPatient", f"question on video {i}", at=NOW - timedelta(days=2))
    members_only = channel.videos[1]  # read second: video 2's comments before it, video 0's after it
    channel.state.forbidden_comments.add(members_only["id"])
    code, output = channel.run()
    assert code == 0, output  # as a video with comments disabled: a notice, not a failure
    assert "renew" not in output
    assert [q["videoId"] for q in channel.server.api_calls("commentThreads")] == [v["id"] for v in channel.videos[::-1]]
    assert comment_texts(channel) == {"question on video 0", "question on video 2"}
    conn = channel.db()
    assert tuple(conn.execute("SELECT status, error FROM account_runs").fetchone()) == ("ok", None)
    assert conn.execute("SELECT count(*) FROM items WHERE kind = 'post'").fetchone()[0] == 3
    conn.close()
    (notice,) = last_run_notices(channel)
    assert notice.startswith(f"video {members_only['id']}: comments not read (forbidden")
    assert notice.endswith("; nothing concluded")
    assert "/youtube/v3/commentThreads?" in notice and "key=[REDACTED]" in notice and API_KEY not in notice
    assert "/vi/" not in notice  # no media URL
    assert channel.cursor(FOLLOW_UPS_CURSOR) == ""
    assert_rebuilt_as_live(channel, tmp_path / "rebuilt.db")


def test_known_comments_of_a_video_whose_comments_are_forbidden_are_not_taken_for_deleted(channel):
    video, other = channel.videos[1], channel.videos[0]  # video 0 is read after video 1
    kept = channel.state.add_comment(video["id"], "@AnnPatient", "members-only question", at=NOW - timedelta(days=2))
    reply = channel.state.add_reply(kept["id"], "@RiversideClinic", "answered", at=NOW - timedelta(days=1))
    gone = channel.state.add_comment(other["id"], "@BobPublic", "to be removed", at=NOW - timedelta(days=2))
    assert channel.run()[0] == 0
    channel.state.forbidden_comments.add(video["id"])
    channel.state.delete_comment(kept["id"])  # gone on YouTube too: a forbidden read cannot tell, so proves nothing
    channel.state.delete_comment(gone["id"])
    asked = len(channel.server.api_calls("comments"))
    code, output = channel.run()
    assert code == 0, output
    looked_up = [q["id"] for q in channel.server.api_calls("comments")[asked:] if "id" in q]
    assert looked_up == [gone["id"]]  # the forbidden video's known comments were not looked up
    conn = channel.db()
    assert [r[0] for r in conn.execute("SELECT item_key FROM events WHERE event = 'deleted'")] == [c(gone)]
    statuses = dict(conn.execute("SELECT item_key, status FROM items").fetchall())
    conn.close()
    assert statuses[c(kept)] == statuses[c(reply)] == "live"
    assert any(n.startswith(f"video {video['id']}: comments not read (forbidden") for n in last_run_notices(channel))


def test_comments_forbidden_on_every_video_fail_the_account_as_a_refused_credential(channel):
    for i, video in enumerate(channel.videos):
        channel.state.add_comment(video["id"], "@AnnPatient", f"question on video {i}", at=NOW - timedelta(days=2))
    channel.state.forbidden_comments.update(v["id"] for v in channel.videos)
    code, output = channel.run()
    assert code == 1
    assert "refused the credential from $RIVERSIDE_YT_KEY (HTTP 403 forbidden at " in output
    assert "and for the comments of all 3 video(s) asked); renew the API key or OAuth token" in output
    assert API_KEY not in output
    # Every video was asked before the run concluded that the credential reads no comments at all.
    assert sorted(q["videoId"] for q in channel.server.api_calls("commentThreads")) == sorted(channel.state.videos)
    conn = channel.db()
    (status, error) = conn.execute("SELECT status, error FROM account_runs").fetchone()
    conn.close()
    assert status == "failed" and "all 3 video(s) asked" in error and "renew" in error
    assert comment_texts(channel) == set()
    # The videos stay owed: once the credential may read them, the next run reads their comments.
    assert channel.cursor(FOLLOW_UPS_CURSOR)
    channel.state.forbidden_comments.clear()
    assert channel.run()[0] == 0
    assert comment_texts(channel) == {f"question on video {i}" for i in range(3)}


@pytest.mark.parametrize("method", ["channels", "playlistItems"])
def test_forbidden_on_the_channel_calls_is_still_a_refused_credential(channel, method):
    refused = google_error(403, "forbidden", "Access forbidden. The request may not be properly authorized.")
    channel.server.faults.append(Fault(rf"{method}\?", status=403, times=100, body=json.dumps(refused).encode()))
    code, output = channel.run()
    assert code == 1
    assert "refused the credential from $RIVERSIDE_YT_KEY (HTTP 403 forbidden at " in output
    assert "renew the API key or OAuth token" in output and "video(s) asked" not in output
    assert channel.server.api_calls("commentThreads") == []


def test_a_capture_at_revision_2_that_stopped_on_a_forbidden_video_replays_as_it_stopped(
    channel, monkeypatch, tmp_path
):
    """Request revision 2 failed the account on the first video whose comments were forbidden; its capture
    holds nothing after that video, and today's connector replays it asking what it asked (youtube=2 in its
    warcinfo). A run at the newest revision goes on past the video, and rebuilds too."""
    for i, video in enumerate(channel.videos):
        channel.state.add_comment(video["id"], "@AnnPatient", f"question on video {i}", at=NOW - timedelta(days=2))
    members_only = channel.videos[1]
    channel.state.forbidden_comments.add(members_only["id"])
    with monkeypatch.context() as old:
        old.setattr(YouTubeConnector, "REQUEST_REVISION", 2)
        code, output = channel.run()
    assert code == 1 and "refused the credential" in output
    asked = [q["videoId"] for q in channel.server.api_calls("commentThreads")]
    assert asked == [channel.videos[2]["id"], members_only["id"]]  # stopped there: video 0 never asked
    assert comment_texts(channel) == {"question on video 2"}
    code, output = channel.run()
    assert code == 0, output
    assert comment_texts(channel) == {"question on video 0", "question on video 2"}
    newest = {"youtube": YouTubeConnector.REQUEST_REVISION}
    assert recorded_revisions(channel.tmp_path / "arch" / "warcs") == [{"youtube": 2}, newest]
    assert_rebuilt_as_live(channel, tmp_path / "rebuilt.db")
    result = verify_replay(channel.config())
    assert result.exit_code == 0, result.output


def test_the_one_video_a_run_asks_about_answering_forbidden_is_a_notice_not_a_refused_credential(tmp_path, monkeypatch):
    """A channel whose only recent video is members-only: one video proves nothing of the credential."""
    ch = Channel(tmp_path, monkeypatch, videos=1)
    try:
        ch.state.forbidden_comments.add(ch.videos[0]["id"])
        code, output = ch.run()
        assert code == 0, output
        assert [q["videoId"] for q in ch.server.api_calls("commentThreads")] == [ch.videos[0]["id"]]
        assert any("comments not read (forbidden" in notice for notice in last_run_notices(ch))
    finally:
        ch.stop()
