"""Facebook Page end to end: the sample Graph API server over real HTTP, archived by `archiver run`.

Exact rows for posts (a visitor's post and an album too), comments and nested replies from filter=stream,
hidden comments, Messenger conversations with attachments; paging through a short page that is not the
last; edits between runs; deletions proven by a lookup answering code 100 / subcode 33 (and never from a
short page or a failed listing); throttling honoured and resumed; an expired token; the token and app
secret never written; WARCs that `warcio check` accepts; `archiver rebuild` giving the same rows.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.config import load_config
from archiver.demo.graph_server import Fault, Throttle
from tests.graph_clinic import ANN, BOB, TOKEN, Hospital, ago, fb_key

ITEM_COLUMNS = "item_key, kind, author_name, text, parent_key, thread_key, conversation_key, visibility, status"


@pytest.fixture
def hospital(tmp_path, monkeypatch):
    h = Hospital(tmp_path, monkeypatch)
    yield h
    h.stop()


@pytest.fixture
def page(hospital):
    """A Page with a photo post, a visitor's post, an album, a thread two replies deep and a hidden comment."""
    s, p = hospital.state, hospital.page
    photo = s.add_post(p, "Flu shots on Monday, 9-12", ago(days=3), photos=[(hospital.png(1), "Nurse at the desk")])
    visitor = s.add_post(p, "Thank you to the ER team!", ago(days=2, hours=12), author=BOB)
    album = s.add_post(p, "Our new wing", ago(days=2), photos=[(hospital.png(2), "Lobby"), (hospital.png(3), "Garden")])
    question = s.add_comment(photo, ANN, "Do I need an appointment?", ago(days=2, hours=20))
    answer = s.add_comment(photo, hospital.page_author, "No, just walk in", ago(days=2, hours=18), parent=question)
    follow_up = s.add_comment(photo, ANN, "Thanks! My results were 7.2", ago(days=2, hours=17), parent=answer)
    spam = s.add_comment(album, BOB, "Cheap pills here", ago(days=1), hidden=True)
    conversation = s.add_conversation(p, "messenger", {**ANN, "email": "6100000000000001@facebook.com"})
    dm = s.add_message(
        conversation, ANN, "Here is my insurance card", ago(hours=5), images=[(hospital.png(9), "card.png")]
    )
    reply = s.add_message(conversation, hospital.page_author, "Thanks Ann, we will call you", ago(hours=4))
    hospital.start()
    return dict(
        photo=photo,
        visitor=visitor,
        album=album,
        question=question,
        answer=answer,
        follow_up=follow_up,
        spam=spam,
        conversation=conversation,
        dm=dm,
        reply=reply,
    )


def test_first_run_archives_posts_nested_comments_hidden_and_messages(hospital, page):
    code, output = hospital.run("facebook")
    assert code == 0, output
    k = fb_key
    photo, album = k(page["photo"]["id"]), k(page["album"]["id"])
    conv = f"facebook:conversation:{page['conversation']['id']}"
    rows = hospital.rows(f"SELECT {ITEM_COLUMNS} FROM items ORDER BY item_key")
    assert rows == sorted([
        (photo, "post", "Riverside Hospital", "Flu shots on Monday, 9-12", None, photo, None, "public", "live"),
        (k(page["visitor"]["id"]), "post", "Bob Visitor", "Thank you to the ER team!", None,
         k(page["visitor"]["id"]), None, "public", "live"),
        (album, "post", "Riverside Hospital", "Our new wing", None, album, None, "public", "live"),
        (k(page["question"]["id"]), "comment", "Ann Patient", "Do I need an appointment?", photo, photo, None,
         "public", "live"),
        (k(page["answer"]["id"]), "comment", "Riverside Hospital", "No, just walk in", k(page["question"]["id"]),
         photo, None, "public", "live"),
        (k(page["follow_up"]["id"]), "comment", "Ann Patient", "Thanks! My results were 7.2",
         k(page["answer"]["id"]), photo, None, "public", "live"),
        (k(page["spam"]["id"]), "comment", "Bob Visitor", "Cheap pills here", album, album, None, "hidden", "live"),
        (k(page["dm"]["id"]), "message", "Ann Patient", "Here is my insurance card", None, None, conv, "direct",
         "live"),
        (k(page["reply"]["id"]), "message", "Riverside Hospital", "Thanks Ann, we will call you", None, None, conv,
         "direct", "live"),
    ])  # fmt: skip
    # Media: the photo, both album photos and the DM's attachment, each in the WARC with its digest.
    media = dict(hospital.rows("SELECT sha256, size FROM media_files"))
    for seed in (1, 2, 3, 9):
        data = hospital.png(seed)
        assert media[hashlib.sha256(data).hexdigest()] == len(data)
    album_media = json.loads(hospital.rows("SELECT media FROM item_versions WHERE item_key=?", album)[0][0])
    assert [(m["type"], m["description"]) for m in album_media] == [("photo", "Lobby"), ("photo", "Garden")]
    assert all(m["sha256"] for m in album_media)
    dm_media = json.loads(hospital.rows("SELECT media FROM item_versions WHERE item_key=?", k(page["dm"]["id"]))[0][0])
    assert dm_media[0]["type"] == "image/png" and dm_media[0]["sha256"] == hashlib.sha256(hospital.png(9)).hexdigest()
    assert hospital.rows("SELECT platform, platform_account_id, handle FROM accounts") == [
        ("facebook", hospital.page["id"], "riversidehospital")
    ]
    # Times are the archive's ISO UTC form; the raw JSON keeps the Graph original.
    created, raw = hospital.rows("SELECT created_at, raw_json FROM item_versions WHERE item_key=?", photo)[0]
    assert created.endswith("Z") and json.loads(raw)["created_time"].endswith("+0000")
    # The comments were asked for as a stream (replies included) and every call named the pinned version.
    comment_calls = [q for p, q, _ in hospital.server.requests_log if p.endswith("/comments")]
    assert comment_calls and all("filter=stream" in q for q in comment_calls)
    assert all(p.startswith("/v26.0/") for p, _, _ in hospital.server.requests_log if not p.startswith("/cdn/"))


def test_rerun_without_changes_appends_nothing(hospital, page):
    assert hospital.run("facebook")[0] == 0
    counts = "SELECT (SELECT count(*) FROM item_versions), (SELECT count(*) FROM events)"
    before = hospital.rows(counts)
    assert hospital.run("facebook")[0] == 0
    after = hospital.rows(counts)
    assert after == before
    # Only timestamps are kept between runs, never a Graph paging cursor.
    assert {name for (name,) in hospital.rows("SELECT name FROM cursors")} == {
        "posts_newest_created_time",
        "conversations_newest_updated_time",
    }
    assert all(value.endswith("Z") for (value,) in hospital.rows("SELECT value FROM cursors"))


def test_paging_follows_next_through_a_short_page_that_is_not_the_last(hospital):
    s = hospital.state
    posts = [s.add_post(hospital.page, f"Daily tip {i}", ago(days=1, minutes=i)) for i in range(60)]
    # Privacy filtering: the first page (25 cut, then filtered) comes back with 22 posts and a next link.
    s.filtered.update(p["id"] for p in posts[3:6])
    hospital.start()
    code, output = hospital.run("facebook")
    assert code == 0, output
    feed_calls = [q for p, q, _ in hospital.server.requests_log if p.endswith("/feed")]
    assert len(feed_calls) == 3  # 25 (22 shown) + 25 + 10
    archived = {key for (key,) in hospital.rows("SELECT item_key FROM items WHERE kind='post'")}
    assert archived == {fb_key(p["id"]) for p in posts} - {fb_key(p["id"]) for p in posts[3:6]}


def test_edits_and_hiding_between_runs_make_new_versions(hospital, page):
    assert hospital.run("facebook")[0] == 0
    hospital.state.edit_post(page["photo"]["id"], "Flu shots on Monday AND Tuesday, 9-12", ago(hours=1))
    hospital.state.set_hidden(page["follow_up"]["id"], True)
    assert hospital.run("facebook")[0] == 0
    photo = fb_key(page["photo"]["id"])
    versions = hospital.rows("SELECT text, edited_at FROM item_versions WHERE item_key=? ORDER BY id", photo)
    assert [v[0] for v in versions] == ["Flu shots on Monday, 9-12", "Flu shots on Monday AND Tuesday, 9-12"]
    assert versions[0][1] is None and versions[1][1].endswith("Z")
    follow_up = fb_key(page["follow_up"]["id"])
    assert hospital.rows("SELECT visibility FROM item_versions WHERE item_key=? ORDER BY id", follow_up) == [
        ("public",),
        ("hidden",),
    ]
    statuses = dict(hospital.rows("SELECT item_key, status FROM items"))
    assert statuses[photo] == "edited" and statuses[follow_up] == "edited"
    assert sum(1 for s in statuses.values() if s == "edited") == 2
    assert hospital.rows("SELECT event, count(*) FROM events GROUP BY event ORDER BY event") == [
        ("created", 9),
        ("edited", 2),
    ]


def test_deletions_are_proven_by_lookup_with_the_graph_error_as_evidence(hospital, page):
    assert hospital.run("facebook")[0] == 0
    for name in ("answer", "visitor", "dm"):
        hospital.state.delete(page[name]["id"])
    assert hospital.run("facebook")[0] == 0
    deleted = hospital.rows("SELECT item_key, evidence FROM events WHERE event='deleted' ORDER BY item_key")
    assert [key for key, _ in deleted] == sorted(fb_key(page[n]["id"]) for n in ("answer", "visitor", "dm"))
    for key, evidence in deleted:
        proof = json.loads(evidence)
        assert proof["method"] == "lookup" and proof["http_status"] == 400
        assert proof["graph_error"]["code"] == 100 and proof["graph_error"]["error_subcode"] == 33
        assert "does not exist" in proof["graph_error"]["message"] and proof["graph_error"]["fbtrace_id"]
        assert "Meta gives the same code 100, subcode 33" in proof["also_if"]
        assert proof["url"].split("?")[0].endswith("/" + key.split(":", 1)[1])
        assert proof["absent_from"]["warc_record_id"].startswith("<urn:uuid:")
        # The proving answer is in the WARC, under the record the evidence names.
        assert proof["warc_record_id"].encode() in hospital.warc_bytes()
    statuses = dict(hospital.rows("SELECT item_key, status FROM items"))
    assert statuses[fb_key(page["follow_up"]["id"])] == "live"  # a reply to a deleted comment is not concluded gone


def test_absence_from_a_short_page_is_not_a_deletion(hospital, page):
    assert hospital.run("facebook")[0] == 0
    # Filtered out of the listings (privacy), yet still there: the lookup finds them, nothing is deleted.
    hospital.state.filtered.update({page["visitor"]["id"], page["question"]["id"]})
    assert hospital.run("facebook")[0] == 0
    assert hospital.rows("SELECT count(*) FROM events WHERE event='deleted'") == [(0,)]
    lookups = [p for p, _, _ in hospital.server.requests_log if p.rsplit("/", 1)[-1] == page["visitor"]["id"]]
    assert lookups  # it was looked up, and found
    assert hospital.rows("SELECT status FROM items WHERE item_key=?", fb_key(page["question"]["id"])) == [("live",)]


def test_a_listing_that_fails_marks_nothing_deleted(hospital, page, http_waits):
    assert hospital.run("facebook")[0] == 0
    hospital.state.delete(page["answer"]["id"])
    hospital.state.delete(page["album"]["id"])
    hospital.server.faults.append(Fault(r"/comments\?", status=500, times=100, after=0))
    code, output = hospital.run("facebook")
    assert code == 1
    assert "HTTP 500" in output
    assert http_waits  # the failing call was retried, after back-off waits
    assert hospital.rows("SELECT count(*) FROM events WHERE event='deleted'") == [(0,)]
    hospital.server.faults.clear()
    # An error answer in the middle of the feed (a later page) stops the account before any conclusion too.
    hospital.server.faults.append(
        Fault(r"/feed\?.*after=", status=400, body=b'{"error":{"message":"boom","type":"OAuthException","code":1}}')
    )
    for i in range(30):
        hospital.state.add_post(hospital.page, f"Filler {i}", ago(hours=30, minutes=i))
    code, output = hospital.run("facebook")
    assert code == 1 and "Graph error 1: boom" in output
    assert hospital.rows("SELECT count(*) FROM events WHERE event='deleted'") == [(0,)]
    hospital.server.faults.clear()
    assert hospital.run("facebook")[0] == 0
    assert {k for (k,) in hospital.rows("SELECT item_key FROM events WHERE event='deleted'")} == {
        fb_key(page["answer"]["id"]),
        fb_key(page["album"]["id"]),
    }


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80001])
def test_throttled_account_waits_the_estimated_time_and_resumes(hospital, page, http_waits, code):
    hospital.server.throttles.append(Throttle(code=code, times=2, regain_minutes=2))
    code_, output = hospital.run("facebook")
    assert code_ == 0, output
    assert http_waits[:2] == [120.0, 120.0]
    assert hospital.rows("SELECT count(*) FROM items") == [(9,)]
    # The refused calls are evidence too: both throttled answers are in the WARC.
    assert hospital.warc_bytes().count(f'"code": {code}'.encode()) == 2
    hospital.assert_rebuild_equal("facebook")


def test_throttled_longer_than_the_allowed_wait_gives_up_clearly(hospital, page, http_waits):
    hospital.server.throttles.append(Throttle(code=80001, times=1, regain_minutes=30))
    code, output = hospital.run("both", archive_extra="max_rate_limit_wait = 900")
    assert code == 1
    assert "throttled" in output and "max_rate_limit_wait of 900s" in output
    outcome = dict(hospital.rows("SELECT account, status FROM account_runs"))
    assert outcome == {"hospital-facebook": "failed", "hospital-instagram": "ok"}
    # The next run resumes once the limit has passed.
    assert hospital.run("facebook")[0] == 0
    assert hospital.rows("SELECT count(*) FROM items WHERE platform='facebook'") == [(9,)]
    hospital.assert_rebuild_equal("both")  # the replay gives up where the live run did, then resumes alike


def test_slows_down_as_usage_nears_the_limit(hospital, page, http_waits):
    hospital.server.reported_usage = 90  # every answer says 90% of the budget is used
    # Pauses of our own choosing are not throttles: they do not use up max_rate_limit_wait (which gave the
    # account up once they added to it), however many calls the Page needs.
    code, output = hospital.run("facebook", archive_extra="max_rate_limit_wait = 10")
    assert code == 0, output
    calls = len(hospital.server.requests_log)
    # A pause before every call after the first answer: halfway from 80 to 100%.
    assert http_waits == [5.0] * (calls - 1) and sum(http_waits) > 10


def test_past_the_budget_without_an_estimate_waits_then_gives_up(hospital, page, http_waits):
    hospital.server.call_budget = 3  # then code 4 on every call
    code, output = hospital.run("facebook")
    assert code == 1
    assert "max_rate_limit_wait of 900s" in output
    # Usage at 100%: the default wait before the next call.
    assert sum(http_waits) <= 900 and http_waits[0] == 300.0


def test_expired_token_fails_the_account_naming_the_token_and_others_carry_on(hospital, page, monkeypatch):
    monkeypatch.setenv("OLD_TOKEN", "EAAExpiredToken-00000000")
    hospital.server.expired_tokens.add("EAAExpiredToken-00000000")
    extra = f"""
[[accounts]]
name = "old-page"
platform = "facebook"
api_base = "{hospital.server.base_url}"
token_env = "OLD_TOKEN"
options = {{ page_id = "{hospital.page["id"]}" }}
"""
    code, output = hospital.run("facebook", extra=extra)
    assert code == 1
    assert "refused the access token from $OLD_TOKEN" in output and "190" in output and "renew" in output
    assert "EAAExpiredToken-00000000" not in output
    assert dict(hospital.rows("SELECT account, status FROM account_runs")) == {
        "hospital-facebook": "ok",
        "old-page": "failed",
    }


def test_hidden_status_refused_archives_comments_without_it(hospital, page):
    hospital.server.moderate = False
    code, output = hospital.run("facebook")
    assert code == 0, output
    (summary,) = hospital.rows("SELECT summary FROM run_results")[0]
    notices = json.loads(summary)["accounts"][0]["notices"]
    assert len(notices) == 1 and "(#10)" in notices[0] and "without their hidden status" in notices[0]
    assert hospital.rows("SELECT count(*) FROM item_versions WHERE kind='comment' AND visibility IS NULL") == [(4,)]
    hospital.assert_rebuild_equal("facebook")  # the refusal and the second reading replay the same way


@pytest.mark.parametrize("unread_by", ["task removed", "option off"])
def test_a_hidden_status_that_cannot_be_read_is_unknown_not_an_edit(hospital, page, unread_by):
    """`is_hidden` not read (the token lost the MODERATE task, or hidden_status = false) says nothing about a
    comment: unchanged comments keep their versions, and again when it can be read; a real edit meanwhile gets a
    version that claims no status; a comment hidden meanwhile is seen hidden once the status can be read."""
    comments = [fb_key(page[name]["id"]) for name in ("question", "answer", "follow_up", "spam")]
    question, answer = comments[:2]
    history = "SELECT item_key, visibility, raw_json FROM item_versions WHERE kind='comment' ORDER BY id"
    assert hospital.run("facebook")[0] == 0
    first = hospital.rows(history)
    statuses = ["public", "public", "public", "hidden"]
    assert sorted((key, vis) for key, vis, _ in first) == sorted(zip(comments, statuses, strict=True))

    unread = {"fb_options": "hidden_status = false"} if unread_by == "option off" else {}
    hospital.server.moderate = unread_by != "task removed"
    with hospital.state.lock:
        hospital.state.nodes[page["question"]["id"]]["message"] = "Do I need an appointment? I am 82"
    hospital.state.set_hidden(page["answer"]["id"], True)  # not seen: the status is not read
    code, output = hospital.run("facebook", **unread)
    assert code == 0, output
    edits = "SELECT item_key FROM events WHERE event='edited' ORDER BY id"
    assert hospital.rows(edits) == [(question,)]
    (key, visibility, raw), *_ = hospital.rows(history)[len(first) :]
    # The new version is honest: no hidden status claimed, none in the raw response.
    assert (key, visibility) == (question, None) and "is_hidden" not in json.loads(raw)
    assert hospital.rows(history)[: len(first)] == first and len(hospital.rows(history)) == len(first) + 1
    summary = json.loads(hospital.rows("SELECT summary FROM run_results ORDER BY rowid DESC LIMIT 1")[0][0])
    notices = summary["accounts"][0]["notices"]
    if unread_by == "task removed":
        assert len(notices) == 1 and "(#10)" in notices[0] and "last known hidden status" in notices[0]

    hospital.server.moderate = True
    assert hospital.run("facebook")[0] == 0
    # Read again: the comment hidden meanwhile is a new version; the others, and the edited one read public
    # (a status that was unknown), are not.
    assert hospital.rows(edits) == [(question,), (answer,)]
    assert hospital.rows(history)[-1][:2] == (answer, "hidden")
    assert len(hospital.rows(history)) == len(first) + 2
    if unread_by == "task removed":
        hospital.assert_rebuild_equal("facebook")  # (hidden_status = false asked other URLs than this config)


def test_token_never_written_and_warcs_check_and_rebuild(hospital, page):
    assert hospital.run("facebook")[0] == 0
    hospital.state.edit_post(page["album"]["id"], "Our new wing opens Friday", ago(hours=2))
    hospital.state.delete(page["spam"]["id"])
    assert hospital.run("facebook")[0] == 0
    hospital.assert_never_written(TOKEN)
    warcs = hospital.warc_bytes()
    assert b"Authorization: Bearer [REDACTED]" in warcs and b"access_token" not in warcs
    # The token went in the header only: no request the server saw carried it in the URL.
    assert all("access_token" not in q for _, q, _ in hospital.server.requests_log)
    hospital.assert_warcs_check()
    hospital.assert_rebuild_equal("facebook")


def test_appsecret_proof_is_sent_and_never_written(tmp_path, monkeypatch):
    """Two pages of posts: Meta repeats the request's query, the proof included, in `paging.next` (the sample
    server does too), so the first page's body holds it. The session masks it there as it masks the token."""
    hospital = Hospital(tmp_path, monkeypatch, app_secret="meta-app-secret-4f9a2c")
    try:
        for i in range(30):  # the connector asks 25 a page: a second page follows paging.next
            hospital.state.add_post(hospital.page, f"Hello {i}", ago(days=1, minutes=i))
        hospital.start()
        code, output = hospital.run("facebook")
        assert code == 0, output
        proofs = {q for p, q, _ in hospital.server.requests_log if not p.startswith("/cdn/")}
        assert proofs and all("appsecret_proof=%5Btoken%5D" in q for q in proofs)
        feeds = [q for p, q, _ in hospital.server.requests_log if p.endswith("/feed")]
        assert len(feeds) == 2 and "after=" in feeds[1]  # the second page, asked by its paging.next
        assert len(hospital.rows("SELECT item_key FROM items WHERE kind = 'post'")) == 30
        # The proof is an HMAC of the token: neither it nor the secret is written, the bodies' paging.next included.
        proof = hmac.new(b"meta-app-secret-4f9a2c", TOKEN.encode(), hashlib.sha256).hexdigest()
        hospital.assert_never_written(TOKEN, "meta-app-secret-4f9a2c", proof)
        assert b"appsecret_proof=[REDACTED]" in hospital.warc_bytes()
        assert proof not in output
        hospital.assert_rebuild_equal("facebook")
    finally:
        hospital.stop()


@pytest.mark.parametrize(
    "options, message",
    [
        ('graph_version = "26"', "options.graph_version: '26' is not valid"),
        ('page_id = "riverside"', "options.page_id: 'riverside' is not valid"),
        ('posts_edge = "timeline"', "options.posts_edge: 'timeline' is not one of feed, published_posts"),
        ('app_secret_env = "A", app_secret_file = "b"', "set only one of app_secret_env or app_secret_file"),
        ("since = 3", "unknown key since"),
    ],
)
def test_bad_options_are_bad_input(hospital, page, options, message):
    path = hospital.tmp_path / "bad.toml"
    text = hospital.config("facebook").read_text()
    text = text.replace(f'page_id = "{hospital.page["id"]}", graph_version = "v26.0"', options)
    path.write_text(text)
    result = CliRunner().invoke(app, ["run", "--config", str(path), "--quiet"])
    assert result.exit_code == 2
    assert message in result.output and str(path) in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (hospital.tmp_path / "arch").exists()


def test_doctor_checks_both_graph_tokens_without_archiving_or_showing_them(hospital, page, monkeypatch):
    from archiver import doctor

    monkeypatch.setattr(doctor, "WARN_FREE_BYTES", 0)
    monkeypatch.setattr(doctor, "MIN_FREE_BYTES", 0)
    checks = {c.name: c for c in doctor.run_doctor(load_config(hospital.config("both")))}
    assert checks["account hospital-facebook"].status == "ok"
    assert "accepted (Riverside Hospital)" in checks["account hospital-instagram"].message
    hospital.server.expired_tokens.add(TOKEN)
    checks = {c.name: c for c in doctor.run_doctor(load_config(hospital.config("both")))}
    failed = checks["account hospital-facebook"]
    assert failed.status == "fail" and "refused the token from $PAGE_TOKEN" in failed.message
    assert "190, subcode 463" in failed.message and "renew" in failed.message and TOKEN not in failed.message
    assert not hospital.archive.exists()


def test_doctor_warns_ahead_of_the_expiry_meta_reports(hospital, page, monkeypatch):
    """debug_token tells when the token (or its 90-day data access) ends: doctor warns token_warning_days ahead."""
    import time

    from archiver import doctor

    monkeypatch.setattr(doctor, "WARN_FREE_BYTES", 0)
    monkeypatch.setattr(doctor, "MIN_FREE_BYTES", 0)
    config = load_config(hospital.config("facebook"))
    check = {c.name: c for c in doctor.run_doctor(config)}["account hospital-facebook"]
    assert check.status == "ok" and "valid until" not in check.message  # expires_at 0: a Page token never expires
    hospital.server.data_access_expires_at = int(time.time()) + 5 * 86400
    check = {c.name: c for c in doctor.run_doctor(config)}["account hospital-facebook"]
    assert check.status == "warn" and "expires on" in check.message and "renew it before then" in check.message
    hospital.server.data_access_expires_at = int(time.time()) + 60 * 86400
    check = {c.name: c for c in doctor.run_doctor(config)}["account hospital-facebook"]
    assert check.status == "ok" and "valid until" in check.message and TOKEN not in check.message


def test_init_example_for_facebook_and_instagram_is_valid_once_uncommented(tmp_path):
    from archiver.config import EXAMPLE_CONFIG

    block = EXAMPLE_CONFIG.split("# A Facebook Page and an Instagram", 1)[1].split("\n", 1)[1].split("\n\n", 1)[0]
    text = EXAMPLE_CONFIG.replace(block, "\n".join(line.removeprefix("# ") for line in block.splitlines()) + "\n")
    path = tmp_path / "archiver.toml"
    path.write_text(text)
    accounts = {a.name: a for a in load_config(path).accounts}
    assert accounts["clinic-facebook"].options == {
        "page_id": "104123456789012",
        "graph_version": "v26.0",
        "posts_edge": "feed",
        "hidden_status": True,
    }
    assert accounts["clinic-instagram"].options["graph_version"] == "v26.0"
