"""Instagram professional account end to end: the sample Graph API server over real HTTP, archived by `archiver run`.

Exact rows for media (an image, a video with its thumbnail, a carousel with its children), comments and
their replies, hidden comments and Instagram Direct conversations with attachments; paging; a caption
edited between runs; deletions proven by lookup (never from a failed replies listing); throttling (80002)
honoured and resumed; the token never written; WARCs that `warcio check` accepts; rebuild giving the same rows.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.connectors.graph import media_identity
from archiver.demo.graph_server import Fault, Throttle
from tests.graph_clinic import TOKEN, Hospital, ago, ig_key

CDN_PATHS = ("/cdn/", "/ig_messaging_cdn/")  # media files: posts' on scontent, Direct attachments on lookaside
ITEM_COLUMNS = "item_key, kind, author_handle, text, parent_key, thread_key, conversation_key, visibility, status"


@pytest.fixture
def hospital(tmp_path, monkeypatch):
    h = Hospital(tmp_path, monkeypatch)
    yield h
    h.stop()


@pytest.fixture
def feed(hospital):
    s, ig = hospital.state, hospital.ig
    image = s.add_ig_media(ig, "Meet our nurses #nursesweek", ago(days=4), [hospital.png(11)])
    video = s.add_ig_media(ig, "A tour of the maternity ward", ago(days=3), [hospital.png(12)], video=b"\x00mp4-bytes")
    carousel = s.add_ig_media(
        ig, "Open day in pictures", ago(days=2), [hospital.png(13), hospital.png(14), hospital.png(15)]
    )
    question = s.add_ig_comment(carousel, "ann.patient", "Is parking free?", ago(days=1, hours=12))
    answer = s.add_ig_comment(carousel, "riverside.hospital", "Yes, 2 hours", ago(days=1, hours=10), parent=question)
    thanks = s.add_ig_comment(carousel, "ann.patient", "Great, see you Tuesday", ago(days=1, hours=9), parent=question)
    troll = s.add_ig_comment(image, "troll99", "Nurses are overpaid", ago(days=3), hidden=True)
    conversation = s.add_conversation(
        {**hospital.page, "_ig_username": "riverside.hospital"},
        "instagram",
        {"username": "ann.patient", "id": "17800000000000042"},
    )
    dm = s.add_message(
        conversation,
        {"username": "ann.patient", "id": "17800000000000042"},
        "Can you look at this rash?",
        ago(hours=3),
        images=[(hospital.png(16), "rash.png")],
    )
    hospital.start()
    return dict(
        image=image,
        video=video,
        carousel=carousel,
        question=question,
        answer=answer,
        thanks=thanks,
        troll=troll,
        conversation=conversation,
        dm=dm,
    )


def test_first_run_archives_media_carousels_comments_replies_hidden_and_dms(hospital, feed):
    code, output = hospital.run("instagram")
    assert code == 0, output
    k = ig_key
    image, video, carousel = k(feed["image"]["id"]), k(feed["video"]["id"]), k(feed["carousel"]["id"])
    conv = f"instagram:conversation:{feed['conversation']['id']}"
    me = "riverside.hospital"
    assert hospital.rows(f"SELECT {ITEM_COLUMNS} FROM items ORDER BY item_key") == sorted(
        [
            (image, "post", me, "Meet our nurses #nursesweek", None, image, None, "public", "live"),
            (video, "post", me, "A tour of the maternity ward", None, video, None, "public", "live"),
            (carousel, "post", me, "Open day in pictures", None, carousel, None, "public", "live"),
            (k(feed["question"]["id"]), "comment", "ann.patient", "Is parking free?", carousel, carousel, None,
             "public", "live"),
            (k(feed["answer"]["id"]), "comment", me, "Yes, 2 hours", k(feed["question"]["id"]), carousel, None,
             "public", "live"),
            (k(feed["thanks"]["id"]), "comment", "ann.patient", "Great, see you Tuesday", k(feed["question"]["id"]),
             carousel, None, "public", "live"),
            (k(feed["troll"]["id"]), "comment", "troll99", "Nurses are overpaid", image, image, None, "hidden",
             "live"),
            (k(feed["dm"]["id"]), "message", "ann.patient", "Can you look at this rash?", None, None, conv, "direct",
             "live"),
        ]
    )  # fmt: skip
    # The carousel is archived with each child's file; the video with its file and its thumbnail.
    media = json.loads(hospital.rows("SELECT media FROM item_versions WHERE item_key=?", carousel)[0][0])
    children = feed["carousel"]["children"]["data"]
    assert [m["id"] for m in media] == [c["id"] for c in children]
    assert [m["sha256"] for m in media] == [hashlib.sha256(hospital.png(s)).hexdigest() for s in (13, 14, 15)]
    video_media = json.loads(hospital.rows("SELECT media FROM item_versions WHERE item_key=?", video)[0][0])
    assert [m["sha256"] for m in video_media] == [
        hashlib.sha256(b"\x00mp4-bytes").hexdigest(),
        hashlib.sha256(hospital.png(12)).hexdigest(),
    ]
    types = dict(hospital.rows("SELECT sha256, content_type FROM media_files"))
    assert types[hashlib.sha256(b"\x00mp4-bytes").hexdigest()] == "video/mp4"
    assert types[hashlib.sha256(hospital.png(16)).hexdigest()] == "image/png"  # the DM's attachment
    assert len(types) == 7
    assert hospital.rows("SELECT platform, platform_account_id, handle FROM accounts") == [
        ("instagram", hospital.ig["id"], "riverside.hospital")
    ]
    # DMs were read through the linked Page's conversations edge, for Instagram.
    assert any(
        p.endswith(f"/{hospital.page['id']}/conversations") and "platform=instagram" in q
        for p, q, _ in hospital.server.requests_log
    )


def test_media_paging_and_rerun_without_changes(hospital):
    for i in range(30):
        hospital.state.add_ig_media(hospital.ig, f"Tip {i}", ago(days=1, minutes=i), [hospital.png(100 + i)])
    hospital.start()
    assert hospital.run("instagram")[0] == 0
    assert len([p for p, _, _ in hospital.server.requests_log if p.endswith("/media")]) == 2
    assert hospital.rows("SELECT count(*) FROM items WHERE kind='post'") == [(30,)]
    counts = "SELECT (SELECT count(*) FROM item_versions), (SELECT count(*) FROM events)"
    before = hospital.rows(counts)
    assert hospital.run("instagram")[0] == 0
    assert hospital.rows(counts) == before


def test_signed_cdn_urls_that_change_make_no_new_versions_or_downloads(hospital, feed):
    hospital.server.signed_media_urls = True
    assert hospital.run("instagram")[0] == 0
    counts = "SELECT (SELECT count(*) FROM item_versions), (SELECT count(*) FROM media_files)"
    before = hospital.rows(counts)
    downloads = len([p for p, _, _ in hospital.server.requests_log if p.startswith(CDN_PATHS)])
    assert before[0][1] == 7 and downloads == 7
    assert hospital.run("instagram")[0] == 0  # every answer now carries new signatures
    assert hospital.rows(counts) == before
    assert len([p for p, _, _ in hospital.server.requests_log if p.startswith(CDN_PATHS)]) == downloads
    media = json.loads(hospital.rows("SELECT media FROM item_versions WHERE kind='post' LIMIT 1")[0][0])
    assert all("?" not in m["url"] for m in media)
    hospital.assert_rebuild_equal("instagram")


def test_direct_attachments_on_the_messaging_cdn_are_each_archived(hospital):
    """Instagram Direct files come from lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=...&signature=...: the path
    is the same for all of them, so each is known by its message and attachment, and each is downloaded; a new
    signature in every answer is still no new version and no second download."""
    s = hospital.state
    page = {**hospital.page, "_ig_username": "riverside.hospital"}
    ann = {"username": "ann.patient", "id": "17800000000000042"}
    bob = {"username": "bob.public", "id": "17800000000000043"}
    card = s.add_message(
        s.add_conversation(page, "instagram", ann), ann, "My card", ago(hours=5), images=[(hospital.png(21), "c.png")]
    )
    pages = [(hospital.png(22), "rx-1.png"), (hospital.png(23), "rx-2.png")]
    rx = s.add_message(s.add_conversation(page, "instagram", bob), bob, "My prescription", ago(hours=4), images=pages)
    hospital.start()
    assert hospital.run("instagram")[0] == 0
    sha = {seed: hashlib.sha256(hospital.png(seed)).hexdigest() for seed in (21, 22, 23)}
    stored = dict(hospital.rows("SELECT url, sha256 FROM media_files"))
    assert sorted(stored.values()) == sorted(sha.values())
    keys = []
    for message, seeds in ((card, (21,)), (rx, (22, 23))):
        (media_json,) = hospital.rows("SELECT media FROM item_versions WHERE item_key=?", ig_key(message["id"]))[0]
        media = json.loads(media_json)
        assert [m["sha256"] for m in media] == [sha[seed] for seed in seeds]
        assert [stored[m["url"]] for m in media] == [sha[seed] for seed in seeds]  # each entry names its own file
        assert all("signature" not in m["url"] for m in media)  # the key keeps no signature
        keys += [m["url"] for m in media]
    assert len(set(keys)) == 3

    hospital.server.signed_media_urls = True
    counts = "SELECT (SELECT count(*) FROM item_versions), (SELECT count(*) FROM media_files)"
    before = hospital.rows(counts)
    downloads = len([p for p, _, _ in hospital.server.requests_log if p.startswith(CDN_PATHS)])
    assert downloads == 3
    assert hospital.run("instagram")[0] == 0
    assert hospital.rows(counts) == before
    assert len([p for p, _, _ in hospital.server.requests_log if p.startswith(CDN_PATHS)]) == downloads
    hospital.assert_rebuild_equal("instagram")


@pytest.mark.parametrize(
    "url, attachment, key",
    [
        # A path that names the file: the key it always had, whatever signs, sizes or routes it.
        (
            "https://scontent-lhr8-1.xx.fbcdn.net/v/t39.30808-6/468_n.jpg?stp=dst-jpg_s720x720&_nc_cat=1&ccb=1-7"
            "&_nc_sid=127cfc&_nc_ohc=Q7k&_nc_ht=scontent-lhr8-1.xx&oh=00_AYB&oe=6748F6A9",
            "m_1/2",
            "https://scontent-lhr8-1.xx.fbcdn.net/v/t39.30808-6/468_n.jpg",
        ),
        # The messaging CDN's endpoint names no file: the message and its attachment do...
        (
            "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17905817880029001&signature=AbxY",
            "aWdfZAG1/17905",
            "https://lookaside.fbsbx.com/ig_messaging_cdn/#attachment=aWdfZAG1/17905",
        ),
        # ...or, with no attachment, the query less what only signs it.
        (
            "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17905817880029001&signature=AbxY",
            None,
            "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17905817880029001",
        ),
        (
            "https://external.xx.fbcdn.net/safe_image.php?d=AQB&url=https%3A%2F%2Fclinic.example%2Fa.png&_nc_hash=AQ",
            None,
            "https://external.xx.fbcdn.net/safe_image.php?d=AQB&url=https%3A%2F%2Fclinic.example%2Fa.png",
        ),
        # Nothing but a signature left to tell files apart: all of it, rather than one key for several files.
        ("https://cdn.example/fetch/?oh=1&oe=2", None, "https://cdn.example/fetch/?oh=1&oe=2"),
    ],
)
def test_media_identity_never_shares_a_key_between_files(url, attachment, key):
    assert media_identity(url, attachment) == key


def test_caption_edit_and_hiding_between_runs_make_new_versions(hospital, feed):
    assert hospital.run("instagram")[0] == 0
    hospital.state.edit_caption(feed["image"]["id"], "Meet our wonderful nurses #nursesweek")
    hospital.state.set_hidden(feed["thanks"]["id"], True)
    assert hospital.run("instagram")[0] == 0
    image = ig_key(feed["image"]["id"])
    assert hospital.rows("SELECT text FROM item_versions WHERE item_key=? ORDER BY id", image) == [
        ("Meet our nurses #nursesweek",),
        ("Meet our wonderful nurses #nursesweek",),
    ]
    thanks = ig_key(feed["thanks"]["id"])
    assert hospital.rows("SELECT visibility FROM item_versions WHERE item_key=? ORDER BY id", thanks) == [
        ("public",),
        ("hidden",),
    ]
    assert hospital.rows("SELECT event, count(*) FROM events GROUP BY event ORDER BY event") == [
        ("created", 8),
        ("edited", 2),
    ]


def test_deleted_reply_and_media_are_proven_by_lookup(hospital, feed):
    assert hospital.run("instagram")[0] == 0
    hospital.state.delete(feed["answer"]["id"])
    hospital.state.delete(feed["video"]["id"])
    assert hospital.run("instagram")[0] == 0
    deleted = dict(hospital.rows("SELECT item_key, evidence FROM events WHERE event='deleted'"))
    assert set(deleted) == {ig_key(feed["answer"]["id"]), ig_key(feed["video"]["id"])}
    for evidence in deleted.values():
        error = json.loads(evidence)["graph_error"]
        assert (error["code"], error["error_subcode"], error["type"]) == (100, 33, "GraphMethodException")


def test_a_failed_replies_listing_concludes_nothing(hospital, feed, http_waits):
    assert hospital.run("instagram")[0] == 0
    hospital.state.delete(feed["thanks"]["id"])
    hospital.server.faults.append(Fault(r"/replies\?", status=503, times=100))
    code, output = hospital.run("instagram")
    assert code == 1 and "HTTP 503" in output
    assert http_waits  # the failing call was retried, after back-off waits
    assert hospital.rows("SELECT count(*) FROM events WHERE event='deleted'") == [(0,)]
    hospital.server.faults.clear()
    assert hospital.run("instagram")[0] == 0
    assert hospital.rows("SELECT item_key FROM events WHERE event='deleted'") == [(ig_key(feed["thanks"]["id"]),)]


def test_throttled_instagram_account_resumes(hospital, feed, http_waits):
    hospital.server.throttles.append(Throttle(code=80002, times=1, regain_minutes=3, http_status=403))
    code, output = hospital.run("instagram")
    assert code == 0, output
    assert http_waits == [180.0]
    assert hospital.rows("SELECT count(*) FROM items") == [(8,)]


def test_direct_messages_need_the_linked_page(hospital, feed):
    config = hospital.config("instagram").read_text().replace(f', page_id = "{hospital.page["id"]}"', "")
    path = hospital.tmp_path / "no-page.toml"
    path.write_text(config)
    result = CliRunner().invoke(app, ["run", "--config", str(path), "--quiet"])
    assert result.exit_code == 1
    assert "set options.page_id, or direct_messages = false" in result.output
    # What was read before is kept: the media and comments.
    assert hospital.rows("SELECT count(*) FROM items WHERE kind != 'message'") == [(7,)]


def test_token_never_written_warcs_check_and_rebuild(hospital, feed):
    assert hospital.run("both")[0] == 0
    hospital.state.edit_caption(feed["carousel"]["id"], "Open day: thank you all!")
    hospital.state.delete(feed["troll"]["id"])
    hospital.state.add_ig_comment(feed["carousel"], "bob", "Loved it", ago(minutes=30))
    assert hospital.run("both")[0] == 0
    hospital.assert_never_written(TOKEN)
    hospital.assert_warcs_check()
    hospital.assert_rebuild_equal("both")


def test_facebook_and_instagram_captured_at_the_same_time(hospital, feed):
    s = hospital.state
    post = s.add_post(hospital.page, "Open day on Saturday", ago(days=1))
    s.add_comment(post, {"name": "Ann Patient", "id": "6100000000000001"}, "See you there", ago(hours=20))
    code, output = hospital.run("both", parallel=2)
    assert code == 0, output
    by_platform = dict(hospital.rows("SELECT platform, count(*) FROM items GROUP BY platform"))
    assert by_platform == {"facebook": 2, "instagram": 8}
    hospital.assert_never_written(TOKEN)
    hospital.assert_warcs_check()
