"""The sample X and Bluesky servers over real HTTP: the documented shapes the connectors' tests rely on.

Auth, paging (X's meta.next_token, AT Protocol cursors), error shapes (X's `errors` with "Not Found Error",
XRPC's `{error, message}`), rate-limit headers and 429s, access-level gates, edit chains, chat gating.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from archiver.demo.bluesky_server import BlueskyState, SampleBlueskyServer
from archiver.demo.png import make_png
from archiver.demo.x_server import SampleXServer, XState

TOKEN = "sample-x-token-9Kq2"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def x():
    state = XState()
    clinic = state.add_user("clinic", "Clinic")
    ann = state.add_user("ann", "Ann")
    posts = [state.add_tweet(clinic["id"], f"post {i}", created_at=NOW - timedelta(hours=30 - i)) for i in range(25)]
    with SampleXServer(state, TOKEN, rate_limit=40) as server:
        yield server, state, clinic, ann, posts


def get(server, path, token=TOKEN, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(server.base_url + path, params=params, headers=headers, timeout=5)


def test_x_requires_the_bearer_token(x):
    server = x[0]
    response = get(server, "/2/users/me", token="wrong")
    assert response.status_code == 401 and response.json()["title"] == "Unauthorized"


def test_x_timeline_pages_with_next_token_and_only_default_fields(x):
    server, _, clinic, _, posts = x
    first = get(server, f"/2/users/{clinic['id']}/tweets", max_results=10).json()
    assert [t["id"] for t in first["data"]] == [p["id"] for p in reversed(posts)][:10]
    assert set(first["data"][0]) == {"id", "text", "edit_history_tweet_ids"}
    assert first["meta"]["result_count"] == 10 and first["meta"]["next_token"]
    seen = [t["id"] for t in first["data"]]
    token = first["meta"]["next_token"]
    while token:
        page = get(server, f"/2/users/{clinic['id']}/tweets", max_results=10, pagination_token=token).json()
        seen += [t["id"] for t in page["data"]]
        token = page["meta"].get("next_token")
    assert seen == [p["id"] for p in reversed(posts)]
    newest = get(server, f"/2/users/{clinic['id']}/tweets", since_id=posts[-1]["id"]).json()
    assert newest == {"meta": {"result_count": 0}}


def test_x_edit_chain_lookup_errors_and_expansions(x):
    server, state, clinic, ann, posts = x
    edited = state.edit_tweet(posts[0]["id"], "post 0, fixed", at=NOW - timedelta(hours=1))
    reply = state.add_tweet(ann["id"], "a reply", created_at=NOW - timedelta(minutes=5), reply_to=edited["id"])
    state.delete_tweet(posts[1]["id"])
    body = get(
        server,
        "/2/tweets",
        ids=f"{posts[0]['id']},{posts[1]['id']},{reply['id']}",
        expansions="edit_history_tweet_ids,referenced_tweets.id,author_id",
        **{"tweet.fields": "created_at,referenced_tweets,conversation_id"},
    ).json()
    assert [t["id"] for t in body["data"]] == [posts[0]["id"], reply["id"]]
    assert body["data"][0]["edit_history_tweet_ids"] == [posts[0]["id"], edited["id"]]
    assert {t["id"] for t in body["includes"]["tweets"]} == {edited["id"]}
    assert {u["username"] for u in body["includes"]["users"]} == {"clinic", "ann"}
    (error,) = body["errors"]
    assert error["title"] == "Not Found Error" and error["resource_id"] == posts[1]["id"]
    assert error["type"] == "https://api.twitter.com/2/problems/resource-not-found"
    listing = get(server, f"/2/users/{clinic['id']}/tweets", max_results=100).json()["data"]
    assert edited["id"] in [t["id"] for t in listing] and posts[0]["id"] not in [t["id"] for t in listing]


def test_x_long_post_text_is_cut_and_whole_only_in_a_note_tweet_asked_for(x):
    """As on X: a post over 280 characters has `text` cut at a word within 280 characters, and its whole text in
    `note_tweet.text`, only when tweet.fields names note_tweet; an edit's note_tweet is the new text's."""
    server, state, clinic, ann, _ = x
    whole = "Please call me back about my results. " * 8 + "My DOB is 03/14/1948."
    post = state.add_tweet(ann["id"], whole, created_at=NOW - timedelta(minutes=5))
    (plain,) = get(server, "/2/tweets", ids=post["id"], **{"tweet.fields": "created_at"}).json()["data"]
    assert set(plain) == {"id", "text", "edit_history_tweet_ids", "created_at"}
    assert len(plain["text"]) <= 280 and whole.startswith(plain["text"]) and whole[len(plain["text"])] == " "
    (noted,) = get(server, "/2/tweets", ids=post["id"], **{"tweet.fields": "created_at,note_tweet"}).json()["data"]
    assert noted["text"] == plain["text"] and noted["note_tweet"] == {"text": whole}
    short = get(server, f"/2/users/{clinic['id']}/tweets", max_results=5, **{"tweet.fields": "note_tweet"}).json()
    assert all("note_tweet" not in t for t in short["data"])
    edited = state.edit_tweet(post["id"], "Sorted, thanks.", at=NOW)
    (after,) = get(server, "/2/tweets", ids=edited["id"], **{"tweet.fields": "note_tweet"}).json()["data"]
    assert after["text"] == "Sorted, thanks." and "note_tweet" not in after


def test_x_search_window_and_access_level(x):
    server, state, clinic, ann, _ = x
    old = state.add_tweet(clinic["id"], "old", created_at=NOW - timedelta(days=10))
    state.add_tweet(ann["id"], "old reply", created_at=NOW - timedelta(days=9), reply_to=old["id"])
    recent = get(server, "/2/tweets/search/recent", query=f"conversation_id:{old['id']}").json()
    assert recent == {"meta": {"result_count": 0}}
    forbidden = get(server, "/2/tweets/search/all", query=f"conversation_id:{old['id']}")
    assert forbidden.status_code == 403 and forbidden.json()["reason"] == "client-not-enrolled"
    server.access_level = "pro"
    full = get(
        server, "/2/tweets/search/all", query=f"conversation_id:{old['id']}", start_time=old["created_at"]
    ).json()
    assert [t["text"] for t in full["data"]] == ["old reply", "old"]


def test_x_rate_limit_headers_and_429(x):
    server, _, clinic, _, _ = x
    responses = [get(server, f"/2/users/{clinic['id']}/tweets") for _ in range(41)]
    assert responses[0].headers["x-rate-limit-limit"] == "40"
    assert responses[0].headers["x-rate-limit-remaining"] == "39"
    assert int(responses[0].headers["x-rate-limit-reset"]) > time.time()
    assert responses[-1].status_code == 429 and responses[-1].json()["title"] == "Too Many Requests"
    assert get(server, "/2/users/me").status_code == 200  # limits are per endpoint


def test_x_dm_events_and_dm_media_need_the_token(x):
    server, state, clinic, ann, _ = x
    event = state.add_dm(
        "1-2", ann["id"], text="hi", created_at=NOW - timedelta(hours=1), media=[(make_png(4, 4, 1), "scan")]
    )
    body = get(server, "/2/dm_events", expansions="attachments.media_keys,sender_id").json()
    assert body["data"][0]["id"] == event["id"] and body["data"][0]["event_type"] == "MessageCreate"
    url = body["includes"]["media"][0]["url"]
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).content == make_png(4, 4, 1)


@pytest.fixture
def bsky():
    state = BlueskyState()
    clinic = state.add_account("clinic.example.org", "Clinic", "pass-word-pass-word")
    ann = state.add_account("ann.example.org", "Ann")
    posts = [state.add_post(clinic.did, f"post {i}", created_at=NOW - timedelta(hours=30 - i)) for i in range(7)]
    with SampleBlueskyServer(state, rate_limit=50) as server:
        yield server, state, clinic, ann, posts


def xrpc(server, nsid, token=None, headers=None, **params):
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    return requests.get(f"{server.base_url}/xrpc/{nsid}", params=params, headers=sent, timeout=5)


def test_bluesky_identity_resolution(bsky):
    server, _, clinic, _, _ = bsky
    assert xrpc(server, "com.atproto.identity.resolveHandle", handle=clinic.handle).json() == {"did": clinic.did}
    missing = xrpc(server, "com.atproto.identity.resolveHandle", handle="nobody.example.org")
    assert missing.status_code == 400 and missing.json()["error"] == "InvalidRequest"
    document = requests.get(f"{server.base_url}/{clinic.did}", timeout=5).json()
    assert document["alsoKnownAs"] == [f"at://{clinic.handle}"]
    (service,) = document["service"]
    assert service["id"] == "#atproto_pds" and service["serviceEndpoint"] == server.base_url


def test_bluesky_list_records_cursor_until_an_empty_page(bsky):
    server, _, clinic, _, posts = bsky
    seen, cursor, pages = [], None, 0
    while True:
        params = {"repo": clinic.did, "collection": "app.bsky.feed.post", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = xrpc(server, "com.atproto.repo.listRecords", **params).json()
        pages += 1
        seen += [r["uri"] for r in page["records"]]
        cursor = page.get("cursor")
        if not page["records"]:
            assert cursor is None
            break
    assert seen == [p["uri"] for p in reversed(posts)] and pages == 4


def test_bluesky_get_record_replace_delete_and_thread(bsky):
    server, state, clinic, ann, posts = bsky
    reply = state.add_post(ann.did, "reply", created_at=NOW - timedelta(hours=2), reply_to=posts[0]["uri"])
    nested = state.add_post(clinic.did, "nested", created_at=NOW - timedelta(hours=1), reply_to=reply["uri"])
    replaced = state.replace_post(posts[0]["uri"], "post 0 replaced")
    assert replaced["uri"] == posts[0]["uri"] and replaced["cid"] != posts[0]["cid"]
    rkey = posts[0]["uri"].rsplit("/", 1)[1]
    got = xrpc(server, "com.atproto.repo.getRecord", repo=clinic.did, collection="app.bsky.feed.post", rkey=rkey)
    assert got.json()["cid"] == replaced["cid"]
    state.delete_post(reply["uri"])
    gone = xrpc(
        server, "com.atproto.repo.getRecord", repo=ann.did, collection="app.bsky.feed.post", rkey=reply["uri"][-13:]
    )
    assert gone.status_code == 400 and gone.json()["error"] == "RecordNotFound"
    thread = xrpc(server, "app.bsky.feed.getPostThread", uri=posts[0]["uri"], depth=10).json()["thread"]
    assert thread["$type"] == "app.bsky.feed.defs#threadViewPost" and thread["post"]["cid"] == replaced["cid"]
    (placeholder,) = thread["replies"]
    assert placeholder == {"$type": "app.bsky.feed.defs#notFoundPost", "uri": reply["uri"], "notFound": True}
    assert nested["uri"] not in str(thread)  # below a deleted post the AppView shows nothing
    missing = xrpc(server, "app.bsky.feed.getPostThread", uri=reply["uri"])
    assert missing.status_code == 400 and missing.json()["error"] == "NotFound"


def test_bluesky_session_chat_and_rate_limits(bsky):
    server, state, clinic, ann, _ = bsky
    url = f"{server.base_url}/xrpc/com.atproto.server.createSession"
    refused = requests.post(url, json={"identifier": clinic.handle, "password": "nope"}, timeout=5)
    assert refused.status_code == 401 and refused.json()["error"] == "AuthenticationRequired"
    session = requests.post(url, json={"identifier": clinic.did, "password": "pass-word-pass-word"}, timeout=5).json()
    assert {"did", "handle", "accessJwt", "refreshJwt"} <= set(session)
    convo = state.add_convo([clinic.did, ann.did])
    state.add_message(convo, ann.did, "hello", at=NOW)
    proxy = {"atproto-proxy": "did:web:api.bsky.chat#bsky_chat"}
    assert xrpc(server, "chat.bsky.convo.listConvos", headers=proxy).status_code == 401
    listed = xrpc(server, "chat.bsky.convo.listConvos", token=session["accessJwt"], headers=proxy).json()
    assert listed["convos"][0]["id"] == convo.id
    server.expire_sessions()
    expired = xrpc(server, "chat.bsky.convo.listConvos", token=session["accessJwt"], headers=proxy)
    assert expired.status_code == 400 and expired.json()["error"] == "ExpiredToken"
    answers = [xrpc(server, "com.atproto.repo.describeRepo", repo=clinic.did) for _ in range(60)]
    assert answers[0].headers["RateLimit-Limit"] == "50" and answers[0].headers["RateLimit-Policy"] == "50;w=300"
    assert answers[-1].status_code == 429 and answers[-1].json()["error"] == "RateLimitExceeded"
