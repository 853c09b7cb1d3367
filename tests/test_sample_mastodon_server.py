"""The sample Mastodon server and clinic dataset, over real HTTP on loopback.

The archiver's Mastodon tests and `archiver demo` trust this stand-in to behave like Mastodon: auth,
Link-header paging (max_id / since_id / min_id), contexts, edit histories, deletions, conversations, media,
rate limits and injected faults. These tests pin that behaviour down, and the dataset's promised shape.
"""

from __future__ import annotations

import json
import re
import struct
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from archiver.demo.loopback import Fault
from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer
from archiver.demo.png import make_png
from archiver.demo.sample_data import SampleFacts, build_clinic_dataset, mutate_for_second_run

TOKEN = "sample-server-token-Qp83xZ"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Api:
    """A requests session against one server, authorised unless told otherwise."""

    def __init__(self, server: SampleMastodonServer, token: str | None = TOKEN):
        self.server = server
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path_or_url: str, **params: object) -> requests.Response:
        url = path_or_url if path_or_url.startswith("http") else self.server.base_url + path_or_url
        return self.session.get(url, params=params or None, timeout=5)

    def walk(self, path: str, **params: object) -> Iterator[requests.Response]:
        """Every page of a listing, following rel=next until an empty page."""
        response = self.get(path, **params)
        while True:
            assert response.status_code == 200, response.text
            yield response
            if not response.json():
                return
            response = self.get(response.links["next"]["url"])


@pytest.fixture(scope="module")
def clinic() -> Iterator[tuple[MastodonState, SampleFacts, SampleMastodonServer]]:
    state, facts = build_clinic_dataset(NOW)
    with SampleMastodonServer(state, TOKEN, rate_limit=100_000) as server:
        yield state, facts, server


@pytest.fixture
def api(clinic) -> Iterator[Api]:
    api = Api(clinic[2])
    yield api
    clinic[2].faults.clear()


@pytest.fixture
def small() -> Iterator[tuple[MastodonState, SampleMastodonServer, dict[str, dict]]]:
    """A hand-made thread (post <- reply <- nested reply, plus a sibling) that tests may change freely."""
    state = MastodonState()
    clinic = state.add_account("riverside", "Riverside Clinic")
    ann = state.add_account("ann", "Ann Example")
    post = state.add_status(clinic["id"], "Flu shots Monday #FluSeason", created_at=NOW - timedelta(days=2))
    reply = state.add_status(
        ann["id"], "@riverside where?", in_reply_to_id=post["id"], created_at=NOW - timedelta(days=1)
    )
    nested = state.add_status(
        clinic["id"], "@ann Main St", in_reply_to_id=reply["id"], created_at=NOW - timedelta(hours=20)
    )
    sibling = state.add_status(ann["id"], "thanks", in_reply_to_id=post["id"], created_at=NOW - timedelta(hours=10))
    statuses = {"post": post, "reply": reply, "nested": nested, "sibling": sibling, "clinic": clinic, "ann": ann}
    with SampleMastodonServer(state, TOKEN, rate_limit=1000) as server:
        yield state, server, statuses


def own_listing_ids(state: MastodonState, account_id: str) -> list[str]:
    return sorted((s["id"] for s in state.statuses.values() if s["account"]["id"] == account_id), key=int, reverse=True)


# -- auth, routing, logging --------------------------------------------------------------------------------
def test_api_needs_the_bearer_token_and_never_echoes_it(clinic):
    state, facts, server = clinic
    for api in (Api(server, token=None), Api(server, token="wrong-token")):
        response = api.get("/api/v1/accounts/verify_credentials")
        assert response.status_code == 401
        assert response.json() == {"error": "The access token is invalid"}
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    me = Api(server).get("/api/v1/accounts/verify_credentials")
    assert me.status_code == 200 and me.json()["id"] == facts.clinic_id and me.json()["username"] == "riverside"
    assert TOKEN not in me.text and TOKEN not in json.dumps(dict(me.headers))
    assert all(TOKEN not in " ".join(entry) for entry in server.requests_log) and TOKEN not in repr(server)


def test_accounts_lookup_and_unknown_paths(api, clinic):
    state, facts, _ = clinic
    found = api.get("/api/v1/accounts/lookup", acct="riverside").json()
    assert found["id"] == facts.clinic_id and found["display_name"].startswith("Riverside Community Clinic")
    assert api.get("/api/v1/accounts/lookup", acct="@riverside@riverside.example").json()["id"] == facts.clinic_id
    missing = api.get("/api/v1/accounts/lookup", acct="nobody-here")
    assert missing.status_code == 404 and missing.json() == {"error": "Record not found"}
    assert api.get(f"/api/v1/accounts/{facts.clinic_id}").json()["acct"] == "riverside"
    assert api.get("/api/v1/accounts/999999999").status_code == 404
    assert api.get("/api/v1/statuses/123").json() == {"error": "Record not found"}
    unknown = api.get("/api/v2/nothing")
    assert unknown.status_code == 404 and unknown.json() == {"error": "Not found"}
    assert Api(api.server, token=None).get("/elsewhere").status_code == 404


def test_requests_log_has_method_path_and_query(api):
    before = len(api.server.requests_log)
    api.get("/api/v1/accounts/lookup", acct="riverside")
    assert api.server.requests_log[before:] == [("GET", "/api/v1/accounts/lookup", "acct=riverside")]


# -- listings ----------------------------------------------------------------------------------------------
def test_paging_the_own_listing_returns_every_status_once_newest_first(api, clinic):
    state, facts, _ = clinic
    pages = list(api.walk(f"/api/v1/accounts/{facts.clinic_id}/statuses", limit=40))
    ids = [s["id"] for page in pages for s in page.json()]
    assert ids == own_listing_ids(state, facts.clinic_id)  # once each, newest first, direct ones included
    assert len(ids) > facts.posts and any(s["visibility"] == "direct" for p in pages for s in p.json())
    assert all(len(p.json()) == 40 for p in pages[:-2]) and pages[-1].json() == []
    assert "Link" not in pages[-1].headers
    first = pages[0]
    assert first.links["next"]["url"].endswith(f"?limit=40&max_id={ids[39]}")
    assert first.links["prev"]["url"].endswith(f"?limit=40&min_id={ids[0]}")
    status = first.json()[0]
    for key in ("created_at", "in_reply_to_account_id", "spoiler_text", "uri", "url", "replies_count", "card"):
        assert key in status
    assert status["created_at"].endswith("Z") and len(status["created_at"]) == len("2026-01-01T00:00:00.000Z")
    assert status["content"].startswith("<p>") and status["account"]["id"] == facts.clinic_id


def test_max_id_since_id_and_min_id(api, clinic):
    state, facts, _ = clinic
    ids = own_listing_ids(state, facts.clinic_id)
    path = f"/api/v1/accounts/{facts.clinic_id}/statuses"

    def page(**params: object) -> list[str]:
        return [s["id"] for s in api.get(path, **params).json()]

    assert page(limit=3, max_id=ids[10]) == ids[11:14]
    assert page(limit=5, since_id=ids[50]) == ids[:5]  # the newest ones above since_id
    assert page(limit=5, min_id=ids[50]) == ids[45:50]  # the ones just above min_id, still newest first
    assert page(limit=5, max_id=ids[10], since_id=ids[13]) == ids[11:13]
    assert len(page()) == 20 and len(page(limit=500)) == 40
    # rel=prev pages back towards the newest.
    older = api.get(path, limit=5, max_id=ids[20])
    assert [s["id"] for s in api.get(older.links["prev"]["url"]).json()] == ids[16:21]


def test_owner_sees_direct_statuses_others_listings_do_not(api, clinic):
    state, facts, _ = clinic
    conversation = next(iter(state.conversations.values()))
    person = next(a for a in conversation["participants"] if a != facts.clinic_id)
    theirs = [s for p in api.walk(f"/api/v1/accounts/{person}/statuses", limit=40) for s in p.json()]
    assert all(s["visibility"] in ("public", "unlisted") for s in theirs)
    assert [s["id"] for s in theirs] == [
        i for i in own_listing_ids(state, person) if state.statuses[i]["visibility"] != "direct"
    ]
    no_replies = api.get(f"/api/v1/accounts/{facts.clinic_id}/statuses", limit=40, exclude_replies="true")
    assert all(s["in_reply_to_id"] is None for s in no_replies.json())


# -- statuses ----------------------------------------------------------------------------------------------
def test_context_lists_ancestors_oldest_first_and_descendants_depth_first(api, clinic):
    state, _, _ = clinic
    deep = next(
        s
        for s in state.statuses.values()
        if s["in_reply_to_id"] and state.statuses[s["in_reply_to_id"]]["in_reply_to_id"] and s["visibility"] == "public"
    )
    chain = []
    parent_id = deep["in_reply_to_id"]
    while parent_id:
        chain.insert(0, parent_id)
        parent_id = state.statuses[parent_id]["in_reply_to_id"]
    context = api.get(f"/api/v1/statuses/{deep['id']}/context").json()
    assert [s["id"] for s in context["ancestors"]] == chain
    root = chain[0]
    children: dict[str, list[str]] = {}
    for status in state.statuses.values():
        if status["in_reply_to_id"]:
            children.setdefault(status["in_reply_to_id"], []).append(status["id"])

    def depth_first(node: str) -> list[str]:
        return [x for child in sorted(children.get(node, []), key=int) for x in (child, *depth_first(child))]

    descendants = [s["id"] for s in api.get(f"/api/v1/statuses/{root}/context").json()["descendants"]]
    assert descendants == depth_first(root) and deep["id"] in descendants
    assert api.get(f"/api/v1/statuses/{root}").json()["replies_count"] == len(children[root])


def test_history_of_an_edited_and_an_unedited_post(api, clinic):
    state, facts, _ = clinic
    edited = api.get(f"/api/v1/statuses/{facts.edited_post_ids[0]}").json()
    history = api.get(f"/api/v1/statuses/{edited['id']}/history").json()
    assert len(history) == 2
    assert history[0]["created_at"] == edited["created_at"] and history[-1]["created_at"] == edited["edited_at"]
    assert history[-1]["content"] == edited["content"] != history[0]["content"]
    for entry in history:
        assert set(entry) == {
            "content", "spoiler_text", "sensitive", "created_at", "account", "poll", "media_attachments", "emojis"
        }  # fmt: skip
    plain = next(s for s in state.statuses.values() if s["edited_at"] is None)
    (only,) = api.get(f"/api/v1/statuses/{plain['id']}/history").json()
    assert only["content"] == plain["content"] and only["created_at"] == plain["created_at"]


def test_edit_and_delete_like_mastodon(small):
    state, server, s = small
    api = Api(server)
    state.edit_status(s["post"]["id"], "Flu shots Tuesday #FluSeason", at=NOW - timedelta(days=1, hours=12))
    state.edit_status(s["post"]["id"], "Flu shots Wednesday", at=NOW - timedelta(hours=1))
    history = api.get(f"/api/v1/statuses/{s['post']['id']}/history").json()
    texts = [re.sub(r"<[^>]+>", "", h["content"]) for h in history]
    assert texts == ["Flu shots Monday #FluSeason", "Flu shots Tuesday #FluSeason", "Flu shots Wednesday"]
    assert api.get(f"/api/v1/statuses/{s['post']['id']}").json()["edited_at"] == history[-1]["created_at"]

    state.delete_status(s["reply"]["id"])
    for suffix in ("", "/context", "/history"):
        gone = api.get(f"/api/v1/statuses/{s['reply']['id']}{suffix}")
        assert gone.status_code == 404 and gone.json() == {"error": "Record not found"}
    root = api.get(f"/api/v1/statuses/{s['post']['id']}/context").json()
    assert [x["id"] for x in root["descendants"]] == [s["sibling"]["id"]]  # the orphaned branch is cut off
    orphan = api.get(f"/api/v1/statuses/{s['nested']['id']}")
    # Mastodon's schema nulls a destroyed status' replies' in_reply_to_id and keeps in_reply_to_account_id.
    assert orphan.status_code == 200 and orphan.json()["in_reply_to_id"] is None
    assert orphan.json()["in_reply_to_account_id"] == s["reply"]["account"]["id"]
    assert api.get(f"/api/v1/statuses/{s['nested']['id']}/context").json()["ancestors"] == []
    listing = api.get(f"/api/v1/accounts/{s['ann']['id']}/statuses").json()
    assert [x["id"] for x in listing] == [s["sibling"]["id"]]
    assert s["reply"]["id"] in state.deleted


# -- conversations -----------------------------------------------------------------------------------------
def test_conversations_page_by_last_activity(api, clinic):
    state, facts, _ = clinic
    pages = list(api.walk("/api/v1/conversations", limit=7))
    conversations = [c for page in pages for c in page.json()]
    assert len(conversations) == facts.dm_conversations == len({c["id"] for c in conversations})
    last_ids = [int(c["last_status"]["id"]) for c in conversations]
    assert last_ids == sorted(last_ids, reverse=True)
    assert pages[0].links["next"]["url"].endswith(f"max_id={last_ids[6]}")
    for conversation in conversations:
        assert set(conversation) == {"id", "unread", "accounts", "last_status"}
        (other,) = conversation["accounts"]
        assert other["id"] != facts.clinic_id
        last = conversation["last_status"]
        assert last["visibility"] == "direct"
        assert api.get(f"/api/v1/statuses/{last['id']}/context").json()["descendants"] == []  # the newest
        assert isinstance(conversation["unread"], bool)
    newer = api.get("/api/v1/conversations", min_id=last_ids[10], limit=3).json()
    assert [int(c["last_status"]["id"]) for c in newer] == last_ids[7:10]


def test_a_direct_thread_keeps_its_conversation_current(small):
    state, server, s = small
    api = Api(server)
    first = state.add_status(
        s["ann"]["id"], "@riverside my DOB is 01/02/1980", visibility="direct", created_at=NOW - timedelta(hours=3)
    )
    answer = state.add_status(
        s["clinic"]["id"],
        "@ann Thanks!",
        visibility="direct",
        in_reply_to_id=first["id"],
        created_at=NOW - timedelta(hours=2),
    )
    (listed,) = api.get("/api/v1/conversations").json()
    assert [a["id"] for a in listed["accounts"]] == [s["ann"]["id"]] and listed["last_status"]["id"] == answer["id"]
    later = state.add_status(
        s["ann"]["id"],
        "@riverside ok",
        visibility="direct",
        in_reply_to_id=answer["id"],
        created_at=NOW - timedelta(hours=1),
    )
    (listed,) = api.get("/api/v1/conversations").json()
    assert listed["last_status"]["id"] == later["id"]
    context = api.get(f"/api/v1/statuses/{later['id']}/context").json()
    assert [x["id"] for x in context["ancestors"]] == [first["id"], answer["id"]]
    state.delete_status(later["id"])
    (listed,) = api.get("/api/v1/conversations").json()
    assert listed["last_status"]["id"] == answer["id"]  # the newest remaining message


# -- media, rate limits, faults ----------------------------------------------------------------------------
def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def test_media_are_valid_pngs_served_without_auth(clinic):
    state, _, server = clinic
    status = next(s for s in state.statuses.values() if s["media_attachments"])
    media = status["media_attachments"][0]
    assert media["type"] == "image" and media["description"] and media["blurhash"]
    for url in (media["url"], media["preview_url"]):
        response = requests.get(url, timeout=5)
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
        chunks = png_chunks(response.content)
        assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
        width, height = struct.unpack(">II", chunks[0][1][:8])
        assert (width, height) == (media["meta"]["original"]["width"], media["meta"]["original"]["height"])
        assert len(zlib.decompress(chunks[1][1])) == height * (1 + 3 * width)
    assert requests.get(server.base_url + "/system/media_attachments/files/0/nope.png", timeout=5).status_code == 404
    assert make_png(64, 48, 5) == make_png(64, 48, 5) != make_png(64, 48, 6)


def test_rate_limit_headers_and_429(small):
    _, server, s = small
    server.rate_limit = 3
    api = Api(server)
    first = api.get("/api/v1/accounts/verify_credentials")
    assert first.headers["X-RateLimit-Limit"] == "3" and first.headers["X-RateLimit-Remaining"] == "2"
    reset = parse_time(first.headers["X-RateLimit-Reset"])
    assert first.headers["X-RateLimit-Reset"].endswith("Z") and "." in first.headers["X-RateLimit-Reset"]
    assert timedelta(minutes=4) < reset - datetime.now(UTC) <= timedelta(minutes=5)
    assert api.get("/api/v1/accounts/lookup", acct="ann").headers["X-RateLimit-Remaining"] == "1"
    assert api.get(f"/api/v1/statuses/{s['post']['id']}").headers["X-RateLimit-Remaining"] == "0"
    limited = api.get(f"/api/v1/statuses/{s['post']['id']}")
    assert limited.status_code == 429 and limited.json() == {"error": "Too many requests"}
    assert limited.headers["X-RateLimit-Remaining"] == "0"


def test_fault_after_and_times(api):
    api.server.faults.append(Fault(r"/verify_credentials$", status=503, after=1, times=2))
    codes = [api.get("/api/v1/accounts/verify_credentials").status_code for _ in range(4)]
    assert codes == [200, 503, 503, 200]
    assert api.get("/api/v1/accounts/verify_credentials").status_code == 200


def test_fault_429_with_reset_and_a_malformed_body(api, clinic):
    _, facts, server = clinic
    reset = "2030-01-01T00:00:00.000Z"
    body = b'{"error":"Too many requests"}'
    server.faults.append(Fault(r"/lookup\?", status=429, body=body, headers={"X-RateLimit-Reset": reset}))
    throttled = api.get("/api/v1/accounts/lookup", acct="riverside")
    assert throttled.status_code == 429 and throttled.headers["X-RateLimit-Reset"] == reset
    assert throttled.json() == {"error": "Too many requests"}
    server.faults.append(Fault(r"/statuses\?", status=200, body=b'[{"id": "1", "content": '))
    broken = api.get(f"/api/v1/accounts/{facts.clinic_id}/statuses", limit=40)
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()


def test_fault_fails_a_listing_half_way(api, clinic):
    _, facts, server = clinic
    server.faults.append(Fault(r"max_id=", status=500))
    first = api.get(f"/api/v1/accounts/{facts.clinic_id}/statuses", limit=40)
    assert first.status_code == 200
    assert api.get(first.links["next"]["url"]).status_code == 500
    assert api.get(first.links["next"]["url"]).status_code == 200  # fired once only


def test_fault_drops_the_connection_and_delays(api):
    api.server.faults.append(Fault(r"/lookup", drop_connection=True))
    with pytest.raises(requests.ConnectionError):
        api.get("/api/v1/accounts/lookup", acct="riverside")
    assert api.get("/api/v1/accounts/lookup", acct="riverside").status_code == 200
    api.server.faults.append(Fault(r"/verify_credentials", status=502, delay=0.2))
    started = time.monotonic()
    assert api.get("/api/v1/accounts/verify_credentials").status_code == 502
    assert time.monotonic() - started >= 0.2


# -- the dataset -------------------------------------------------------------------------------------------
def test_dataset_has_the_promised_shape(clinic):
    state, facts, _ = clinic
    assert facts.handle == "riverside" and state.accounts[facts.clinic_id]["note"]
    statuses = list(state.statuses.values())
    posts = [s for s in statuses if s["in_reply_to_id"] is None and s["visibility"] != "direct"]
    replies = [s for s in statuses if s["in_reply_to_id"] and s["visibility"] != "direct"]
    direct = [s for s in statuses if s["visibility"] == "direct"]
    assert len(posts) == facts.posts == 200 and len(replies) == facts.replies and 950 <= facts.replies <= 1100
    assert len(direct) == facts.dm_messages and facts.dm_conversations == 50
    sizes = [len(c["status_ids"]) for c in state.conversations.values()]
    assert all(1 <= n <= 6 for n in sizes) and sum(n >= 2 for n in sizes) >= 45  # thread sizes 2-6, roughly
    assert 25 <= facts.media <= 35
    assert sum(len(s["media_attachments"]) for s in posts) == facts.media
    assert all(m["description"] for s in posts for m in s["media_attachments"])
    assert 140 <= len({s["account"]["id"] for s in replies}) <= 151
    assert any(state.statuses[s["in_reply_to_id"]]["in_reply_to_id"] for s in replies)  # nested
    assert any(s["account"]["id"] == facts.clinic_id for s in replies)  # the clinic answers
    oldest = min(parse_time(s["created_at"]) for s in posts)
    assert NOW - timedelta(days=91) < oldest and all(parse_time(s["created_at"]) < NOW for s in statuses)
    recent = [s for s in replies if NOW - parse_time(s["created_at"]) < timedelta(days=14)]
    assert len(recent) >= 250
    assert len(facts.edited_post_ids) == 2 and all(state.statuses[i]["edited_at"] for i in facts.edited_post_ids)
    assert len(facts.recent_post_ids) >= 4
    texts = " ".join(s["content"] for s in statuses)
    assert "my MRN is 00482913" in texts and "DOB" in texts and "diagnosed with" in texts
    by_time = sorted(statuses, key=lambda s: (s["created_at"], int(s["id"])))
    assert [s["id"] for s in by_time] == sorted((s["id"] for s in statuses), key=int)  # ids are chronological


def test_dataset_is_deterministic_and_fast():
    started = time.perf_counter()
    one, facts_one = build_clinic_dataset(NOW, seed=3)
    assert time.perf_counter() - started < 1.5
    two, facts_two = build_clinic_dataset(NOW, seed=3)
    other, _ = build_clinic_dataset(NOW, seed=4)
    assert facts_one == facts_two
    assert json.dumps(one.statuses, sort_keys=True) == json.dumps(two.statuses, sort_keys=True)
    assert json.dumps(one.histories) == json.dumps(two.histories) and one.media == two.media
    assert json.dumps(one.statuses, sort_keys=True) != json.dumps(other.statuses, sort_keys=True)


def test_mutation_for_the_second_run_is_visible_over_http():
    state, facts = build_clinic_dataset(NOW)
    with SampleMastodonServer(state, TOKEN, rate_limit=100_000) as server:
        api = Api(server)
        newest_before = max(int(i) for i in state.statuses)
        change = mutate_for_second_run(state, facts, NOW)
        window = NOW - timedelta(days=14)
        assert len(change.new_reply_ids) == 10 and all(int(i) > newest_before for i in change.new_reply_ids)
        for reply_id in change.new_reply_ids:
            reply = api.get(f"/api/v1/statuses/{reply_id}").json()
            parent = api.get(f"/api/v1/statuses/{reply['in_reply_to_id']}").json()
            assert parse_time(parent["created_at"]) > window
            context = api.get(f"/api/v1/statuses/{parent['id']}/context").json()
            assert reply_id in [s["id"] for s in context["descendants"]]
        listing = api.get(f"/api/v1/accounts/{facts.clinic_id}/statuses", limit=5, exclude_replies="true").json()
        assert [s["id"] for s in listing if s["visibility"] != "direct"][0] == change.new_post_id
        edited = api.get(f"/api/v1/statuses/{change.edited_post_id}").json()
        assert parse_time(edited["created_at"]) > window and parse_time(edited["edited_at"]) < NOW
        assert len(api.get(f"/api/v1/statuses/{change.edited_post_id}/history").json()) >= 2
        assert api.get(f"/api/v1/statuses/{change.deleted_post_id}").status_code == 404
        assert change.deleted_post_id not in [
            s["id"] for p in api.walk(f"/api/v1/accounts/{facts.clinic_id}/statuses", limit=40) for s in p.json()
        ]
        assert api.get(f"/api/v1/statuses/{change.deleted_reply_id}").status_code == 404
        host = api.get(f"/api/v1/statuses/{change.deleted_reply_parent_id}/context").json()
        assert host["descendants"] and change.deleted_reply_id not in [s["id"] for s in host["descendants"]]
        assert change.deleted_reply_parent_id != change.deleted_post_id
        latest = api.get("/api/v1/conversations", limit=1).json()[0]
        assert latest["last_status"]["id"] == change.new_dm_id
        assert latest["last_status"]["in_reply_to_id"] is not None  # in an existing conversation
        assert len(state.conversations) == facts.dm_conversations
