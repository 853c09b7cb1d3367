"""The sample Graph API server over real HTTP on loopback.

The Facebook and Instagram tests and the demo trust this stand-in to behave like the Graph API: token
checks and the error envelope, field selection, cursor paging with paging.next (and short pages that are
not the end), stream comments with parents, lookups of deleted objects (code 100 / subcode 33), usage
headers, throttling, appsecret_proof, conversations, media files and injected faults. These tests pin it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator

import pytest
import requests

from archiver.demo.graph_server import Fault, GraphState, SampleGraphServer, Throttle, parse_fields, project
from archiver.demo.png import make_png
from tests.graph_clinic import ANN, BOB, ago

TOKEN = "EAAServerTestToken-93kd7"


class Api:
    def __init__(self, server: SampleGraphServer, token: str | None = TOKEN):
        self.server = server
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path_or_url: str, **params: object) -> requests.Response:
        url = path_or_url if path_or_url.startswith("http") else f"{self.server.base_url}/v26.0/{path_or_url}"
        return self.session.get(url, params=params or None, timeout=5)

    def walk(self, path: str, **params: object) -> Iterator[dict]:
        """Every page of an edge, following paging.next until it is absent."""
        response = self.get(path, **params)
        while True:
            assert response.status_code == 200, response.text
            page = response.json()
            yield page
            following = page.get("paging", {}).get("next")
            if not following:
                return
            response = self.get(following)


@pytest.fixture
def world() -> Iterator[tuple[GraphState, SampleGraphServer, dict]]:
    s = GraphState()
    page = s.add_page("Riverside Hospital", "riversidehospital")
    post = s.add_post(page, "Flu shots", ago(days=2), photos=[(make_png(4, 4, 1), "desk")])
    top = s.add_comment(post, ANN, "Where?", ago(days=1))
    reply = s.add_comment(post, {"id": page["id"], "name": page["name"]}, "Main St", ago(hours=20), parent=top)
    nested = s.add_comment(post, ANN, "Thanks", ago(hours=19), parent=reply)
    other = s.add_comment(post, BOB, "Spam", ago(hours=18), hidden=True)
    ig = s.add_ig_user("riverside", "Riverside Hospital")
    carousel = s.add_ig_media(ig, "Open day", ago(days=1), [make_png(4, 4, 2), make_png(4, 4, 3)])
    ig_top = s.add_ig_comment(carousel, "ann", "Parking?", ago(hours=10))
    ig_reply = s.add_ig_comment(carousel, "riverside", "Free", ago(hours=9), parent=ig_top)
    conversation = s.add_conversation(page, "messenger", {**ANN, "email": "x@facebook.com"})
    message = s.add_message(conversation, ANN, "card attached", ago(hours=2), images=[(make_png(4, 4, 4), "card.png")])
    objects = dict(
        page=page,
        post=post,
        top=top,
        reply=reply,
        nested=nested,
        other=other,
        ig=ig,
        carousel=carousel,
        ig_top=ig_top,
        ig_reply=ig_reply,
        conversation=conversation,
        message=message,
    )
    with SampleGraphServer(s, TOKEN) as server:
        yield s, server, objects


def error_of(response: requests.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "code", "fbtrace_id"} <= set(body["error"])
    return body["error"]


def test_field_selection_parses_nesting_and_modifiers():
    assert parse_fields("id,message,attachments{media{image}},comments.limit(5){id}") == {
        "id": None,
        "message": None,
        "attachments": {"media": {"image": None}},
        "comments": {"id": None},
    }
    node = {"id": "1", "a": 1, "b": None, "_secret": 2, "c": {"data": [{"id": "2", "x": 1, "y": 2}]}}
    assert project(node, parse_fields("a,b,c{x}")) == {"id": "1", "a": 1, "c": {"data": [{"id": "2", "x": 1}]}}


def test_tokens_are_checked_with_the_documented_error_envelope(world):
    s, server, o = world
    assert error_of(Api(server, None).get(o["page"]["id"]))["code"] == 2500
    bad = Api(server, "not-the-token").get(o["page"]["id"])
    assert bad.status_code == 400 and error_of(bad)["code"] == 190 and error_of(bad)["type"] == "OAuthException"
    server.expired_tokens.add("old-token")
    expired = error_of(Api(server, "old-token").get(o["page"]["id"]))
    assert (expired["code"], expired["error_subcode"]) == (190, 463) and "expired" in expired["message"]
    # The token is accepted as a header (Bearer or OAuth) and as the access_token parameter.
    assert Api(server).get(o["page"]["id"]).status_code == 200
    oauth = requests.get(
        f"{server.base_url}/v26.0/{o['page']['id']}", headers={"Authorization": f"OAuth {TOKEN}"}, timeout=5
    )
    assert oauth.status_code == 200
    assert Api(server, None).get(o["page"]["id"], access_token=TOKEN).status_code == 200
    # The server never logs a token.
    assert TOKEN not in json.dumps(server.requests_log)


def test_nodes_answer_only_the_fields_asked_for(world):
    s, server, o = world
    api = Api(server)
    assert api.get(o["post"]["id"]).json() == {"id": o["post"]["id"]}
    post = api.get(o["post"]["id"], fields="message,created_time,from,attachments{media}").json()
    assert set(post) == {"id", "message", "created_time", "from", "attachments"}
    assert post["created_time"].endswith("+0000")
    src = post["attachments"]["data"][0]["media"]["image"]["src"]
    assert requests.get(src, timeout=5).content == make_png(4, 4, 1)  # media files need no token (a CDN)
    carousel = api.get(o["carousel"]["id"], fields="media_type,children{media_url}").json()
    assert carousel["media_type"] == "CAROUSEL_ALBUM"
    urls = [c["media_url"] for c in carousel["children"]["data"]]
    assert [requests.get(u, timeout=5).content for u in urls] == [make_png(4, 4, 2), make_png(4, 4, 3)]
    # A path without a version is refused.
    wrong = requests.get(f"{server.base_url}/latest/me", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert error_of(wrong)["code"] == 2500


def test_stream_comments_include_replies_with_their_parent(world):
    s, server, o = world
    api = Api(server)
    fields = "id,message,parent{id},is_hidden"
    top_level = api.get(f"{o['post']['id']}/comments", fields=fields).json()["data"]
    assert [c["id"] for c in top_level] == [o["top"]["id"], o["other"]["id"]]
    stream = api.get(f"{o['post']['id']}/comments", filter="stream", order="chronological", fields=fields).json()
    assert [(c["id"], c.get("parent", {}).get("id")) for c in stream["data"]] == [
        (o["top"]["id"], None),
        (o["reply"]["id"], o["top"]["id"]),
        (o["nested"]["id"], o["reply"]["id"]),
        (o["other"]["id"], None),
    ]
    assert [c["is_hidden"] for c in stream["data"]] == [False, False, False, True]
    replies = api.get(f"{o['top']['id']}/comments", fields="id").json()["data"]
    assert replies == [{"id": o["reply"]["id"]}]
    server.moderate = False
    assert error_of(api.get(f"{o['post']['id']}/comments", fields=fields))["code"] == 10
    ig_replies = api.get(f"{o['ig_top']['id']}/replies", fields="id,text,parent_id").json()["data"]
    assert ig_replies == [{"id": o["ig_reply"]["id"], "text": "Free", "parent_id": o["ig_top"]["id"]}]
    ig_comments = api.get(f"{o['carousel']['id']}/comments", fields="id").json()["data"]
    assert ig_comments == [{"id": o["ig_top"]["id"]}]  # replies are not top-level comments


def test_paging_follows_next_through_filtered_short_pages(world):
    s, server, o = world
    posts = [s.add_post(o["page"], f"Tip {i}", ago(hours=1, minutes=i)) for i in range(12)]
    s.filtered.add(posts[1]["id"])
    pages = list(Api(server).walk(f"{o['page']['id']}/feed", limit=5, fields="id"))
    assert [len(p["data"]) for p in pages] == [4, 5, 3]  # the first is short, yet not the last
    assert all("next" in p["paging"] for p in pages[:-1]) and "next" not in pages[-1]["paging"]
    assert all(set(p["paging"]["cursors"]) == {"before", "after"} for p in pages)
    listed = [e["id"] for p in pages for e in p["data"]]
    assert listed == [p["id"] for p in posts if p is not posts[1]] + [o["post"]["id"]]
    # A filtered object is still there for a direct lookup.
    assert Api(server).get(posts[1]["id"]).status_code == 200
    # A cursor dies with the item it points at.
    after = pages[0]["paging"]["next"]
    s.delete(posts[4]["id"])  # the last of the first page
    assert error_of(Api(server).get(after))["code"] == 100


def test_deleted_objects_answer_code_100_subcode_33(world):
    s, server, o = world
    s.delete(o["reply"]["id"])
    response = Api(server).get(o["reply"]["id"], fields="id,message")
    error = error_of(response)
    assert response.status_code == 400
    assert (error["code"], error["error_subcode"], error["type"]) == (100, 33, "GraphMethodException")
    assert o["reply"]["id"] in error["message"] and "does not exist" in error["message"]
    stream = Api(server).get(f"{o['post']['id']}/comments", filter="stream", fields="id").json()["data"]
    assert o["reply"]["id"] not in [c["id"] for c in stream]


def test_usage_headers_throttling_and_budget(world):
    s, server, o = world
    api = Api(server)
    response = api.get(o["page"]["id"])
    app_usage = json.loads(response.headers["X-App-Usage"])
    assert set(app_usage) == {"call_count", "total_cputime", "total_time"}
    buc = json.loads(response.headers["X-Business-Use-Case-Usage"])
    (entries,) = buc.values()
    assert entries[0]["type"] == "pages" and entries[0]["estimated_time_to_regain_access"] == 0
    server.throttles.append(Throttle(code=80001, times=2, regain_minutes=7))
    for _ in range(2):
        throttled = api.get(o["page"]["id"])
        assert throttled.status_code == 400 and error_of(throttled)["code"] == 80001
        (entries,) = json.loads(throttled.headers["X-Business-Use-Case-Usage"]).values()
        assert entries[0]["estimated_time_to_regain_access"] == 7 and entries[0]["call_count"] == 100
    assert api.get(o["page"]["id"]).status_code == 200
    server.call_budget = server.calls  # the next call is over budget
    over = api.get(o["page"]["id"])
    assert error_of(over)["code"] == 4 and "Application request limit" in error_of(over)["message"]


def test_appsecret_proof_is_required_when_the_app_has_a_secret():
    s = GraphState()
    page = s.add_page("P", "p")
    with SampleGraphServer(s, TOKEN, app_secret="app-secret-x1") as server:
        api = Api(server)
        assert "appsecret_proof" in error_of(api.get(page["id"]))["message"]
        assert error_of(api.get(page["id"], appsecret_proof="00"))["code"] == 100
        proof = hmac.new(b"app-secret-x1", TOKEN.encode(), hashlib.sha256).hexdigest()
        assert api.get(page["id"], appsecret_proof=proof).status_code == 200


def test_conversations_and_messages_with_attachments(world):
    s, server, o = world
    api = Api(server)
    ig_conv = s.add_conversation(o["page"], "instagram", {"username": "ann", "id": "178000001"})
    s.add_message(ig_conv, {"username": "ann", "id": "178000001"}, "hi", ago(hours=1))
    messenger = api.get(f"{o['page']['id']}/conversations", platform="messenger", fields="id,updated_time").json()
    assert [c["id"] for c in messenger["data"]] == [o["conversation"]["id"]]
    assert messenger["data"][0]["updated_time"] == o["message"]["created_time"]
    instagram = api.get(f"{o['page']['id']}/conversations", platform="instagram", fields="id").json()
    assert [c["id"] for c in instagram["data"]] == [ig_conv["id"]]
    fields = "id,message,from,attachments{mime_type,name,image_data{url}}"
    (message,) = api.get(f"{o['conversation']['id']}/messages", fields=fields).json()["data"]
    assert message["from"]["name"] == "Ann Patient" and message["message"] == "card attached"
    attachment = message["attachments"]["data"][0]
    assert (attachment["mime_type"], attachment["name"]) == ("image/png", "card.png")
    assert requests.get(attachment["image_data"]["url"], timeout=5).content == make_png(4, 4, 4)


def test_injected_faults_fire_then_stop(world):
    s, server, o = world
    server.faults.append(Fault(r"/feed\?", status=500, times=1))
    api = Api(server)
    assert api.get(f"{o['page']['id']}/feed", fields="id").status_code == 500
    assert api.get(f"{o['page']['id']}/feed", fields="id").status_code == 200
    server.faults.append(Fault(r"/feed", drop_connection=True))
    with pytest.raises(requests.ConnectionError):
        api.get(f"{o['page']['id']}/feed")
