"""The sample LinkedIn and YouTube servers and the demo's page and channel, over real HTTP on loopback.

The LinkedIn and YouTube tests and `archiver demo` trust these stand-ins to behave like the platforms: the
required headers and URL-encoded URNs, start/count and pageToken paging, the documented error bodies, the
bare 429 and the quotaExceeded 403, and injected faults. These tests pin that behaviour down.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
import requests

from archiver.demo.linkedin_server import LinkedInState, SampleLinkedInServer
from archiver.demo.loopback import Fault
from archiver.demo.png import make_png
from archiver.demo.sample_pages import LINKEDIN_ORG, build_linkedin_page, build_youtube_channel
from archiver.demo.youtube_server import SampleYouTubeServer, YouTubeState

TOKEN = "sample-pages-token-Ue72Lq"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HEADERS = {"Authorization": f"Bearer {TOKEN}", "LinkedIn-Version": "202610", "X-Restli-Protocol-Version": "2.0.0"}


def enc(urn: str) -> str:
    return quote(urn, safe="")


@pytest.fixture
def linkedin() -> Iterator[tuple[LinkedInState, SampleLinkedInServer]]:
    state = LinkedInState()
    state.add_organization(77, "Clinic", "clinic")
    with SampleLinkedInServer(state, {TOKEN: {77}}, daily_limit=30) as server:
        yield state, server


def li_get(server: SampleLinkedInServer, path: str, headers: dict | None = None) -> requests.Response:
    return requests.get(server.base_url + path, headers=HEADERS if headers is None else headers, timeout=5)


def test_linkedin_requires_its_headers_and_encoded_urns(linkedin):
    state, server = linkedin
    post = state.add_post(77, "hello", created_at=NOW)
    author = "urn%3Ali%3Aorganization%3A77"
    assert li_get(server, f"/rest/posts?q=author&author={author}").status_code == 200
    missing = li_get(server, f"/rest/posts?q=author&author={author}", {"Authorization": HEADERS["Authorization"]})
    assert missing.status_code == 400 and missing.json()["code"] == "VERSION_MISSING"
    old = li_get(server, f"/rest/posts?q=author&author={author}", {**HEADERS, "LinkedIn-Version": "202001"})
    assert old.status_code == 426 and old.json()["code"] == "NONEXISTENT_VERSION"
    raw = li_get(server, "/rest/posts?q=author&author=urn:li:organization:77")
    assert raw.status_code == 400 and raw.json()["code"] == "ILLEGAL_ARGUMENT"
    assert li_get(server, f"/rest/posts/{post['id']}").status_code == 400  # a raw URN in the path
    assert li_get(server, f"/rest/posts/{enc(post['id'])}").json()["commentary"] == "hello"
    bad = li_get(server, "/rest/organizations/77", {**HEADERS, "Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json() == {
        "status": 401,
        "code": "INVALID_ACCESS_TOKEN",
        "message": "Invalid access token",
        "serviceErrorCode": 65600,
    }
    assert li_get(server, "/rest/organizations/78").status_code == 403


def test_linkedin_start_count_paging_nested_comments_media_and_404(linkedin):
    state, server = linkedin
    posts = [state.add_post(77, f"p{i}", created_at=NOW - timedelta(minutes=i)) for i in range(12)]
    page = li_get(server, "/rest/posts?q=author&author=urn%3Ali%3Aorganization%3A77&start=10&count=5").json()
    assert [p["commentary"] for p in page["elements"]] == ["p10", "p11"]
    assert page["paging"] == {"start": 10, "count": 5, "links": [], "total": 12}
    first = li_get(server, "/rest/posts?q=author&author=urn%3Ali%3Aorganization%3A77&count=5").json()
    assert first["paging"]["links"][0]["rel"] == "next" and "start=5" in first["paging"]["links"][0]["href"]
    top = state.add_comment(posts[0]["id"], "urn:li:person:a", "q?", created_at=NOW)
    reply = state.add_comment(top["commentUrn"], "urn:li:organization:77", "a!", created_at=NOW)
    listed = li_get(server, f"/rest/socialActions/{enc(posts[0]['id'])}/comments").json()["elements"]
    assert [c["id"] for c in listed] == [top["id"]] and listed[0]["commentsSummary"]["totalFirstLevelComments"] == 1
    nested = li_get(server, f"/rest/socialActions/{enc(top['commentUrn'])}/comments").json()["elements"]
    assert nested == [reply] and reply["parentComment"] == top["commentUrn"]
    state.delete_comment(reply["commentUrn"])
    gone = li_get(server, f"/rest/socialActions/{enc(top['commentUrn'])}/comments/{reply['id']}")
    assert gone.status_code == 404 and gone.json()["code"] == "NOT_FOUND"
    pic = state.add_post(77, "pic", created_at=NOW, image=(make_png(4, 4, 1), "alt"))
    image = li_get(server, f"/rest/images/{enc(pic['content']['media']['id'])}").json()
    assert image["status"] == "AVAILABLE" and requests.get(image["downloadUrl"], timeout=5).content == make_png(4, 4, 1)


def test_linkedin_bare_429_after_the_daily_budget_and_injected_faults(linkedin):
    _, server = linkedin
    answers = [li_get(server, "/rest/organizations/77") for _ in range(31)]
    assert [a.status_code for a in answers[:30]] == [200] * 30
    throttled = answers[30]
    assert throttled.status_code == 429 and throttled.json()["code"] == "TOO_MANY_REQUESTS"
    assert not any(h.lower().startswith(("retry-after", "x-ratelimit", "ratelimit")) for h in throttled.headers)
    server.faults.append(Fault(r"/rest/posts/", status=503, times=1))
    assert li_get(server, "/rest/posts/x").status_code == 503


@pytest.fixture
def youtube() -> Iterator[tuple[YouTubeState, SampleYouTubeServer, dict]]:
    state = YouTubeState()
    channel = state.add_channel("Clinic", "@Clinic", NOW - timedelta(days=100))
    with SampleYouTubeServer(state, api_key=TOKEN, daily_quota=12) as server:
        yield state, server, channel


def yt_get(server: SampleYouTubeServer, method: str, **params: object) -> requests.Response:
    params.setdefault("key", TOKEN)
    return requests.get(f"{server.base_url}/youtube/v3/{method}", params=params, timeout=5)


def test_youtube_uploads_chain_page_tokens_and_reply_subset(youtube):
    state, server, channel = youtube
    videos = [state.add_video(channel["id"], f"v{i}", "d", published_at=NOW - timedelta(days=i)) for i in range(7)]
    found = yt_get(server, "channels", part="contentDetails", forHandle="@clinic").json()
    assert found["kind"] == "youtube#channelListResponse"
    uploads = found["items"][0]["contentDetails"]["relatedPlaylists"]["uploads"]
    first = yt_get(server, "playlistItems", part="contentDetails", playlistId=uploads, maxResults=5).json()
    second = yt_get(
        server, "playlistItems", part="contentDetails", playlistId=uploads, pageToken=first["nextPageToken"]
    )
    ids = [i["contentDetails"]["videoId"] for i in first["items"] + second.json()["items"]]
    assert ids == [v["id"] for v in reversed(videos)] and "nextPageToken" not in second.json()
    listed = yt_get(server, "videos", part="snippet,status", id=",".join([videos[0]["id"], "gone0000000"])).json()
    assert [v["id"] for v in listed["items"]] == [videos[0]["id"]] and "statistics" not in listed["items"][0]
    thread = state.add_comment(videos[0]["id"], "@ann", "hi", at=NOW)
    for i in range(3):
        state.add_reply(thread["id"], "@bob", f"r{i}", at=NOW + timedelta(minutes=i))
    (resource,) = yt_get(server, "commentThreads", part="snippet,replies", videoId=videos[0]["id"]).json()["items"]
    assert resource["snippet"]["totalReplyCount"] == 3 and len(resource["replies"]["comments"]) == 2
    replies = yt_get(server, "comments", part="snippet", parentId=thread["id"]).json()["items"]
    assert [r["snippet"]["textOriginal"] for r in replies] == ["r0", "r1", "r2"]
    assert all(r["snippet"]["parentId"] == thread["id"] for r in replies)


def test_youtube_error_bodies_and_the_quota(youtube):
    state, server, channel = youtube
    video = state.add_video(channel["id"], "v", "d", published_at=NOW)
    state.disabled_comments.add(video["id"])
    disabled = yt_get(server, "commentThreads", part="snippet", videoId=video["id"])
    assert disabled.status_code == 403 and disabled.json()["error"]["errors"][0]["reason"] == "commentsDisabled"
    missing = yt_get(server, "commentThreads", part="snippet", videoId="nope0000000")
    assert missing.status_code == 404 and missing.json()["error"]["errors"][0]["reason"] == "videoNotFound"
    bad_key = yt_get(server, "channels", part="id", id=channel["id"], key="wrong")
    assert bad_key.status_code == 400 and bad_key.json()["error"]["status"] == "INVALID_ARGUMENT"
    while server.units_spent < server.daily_quota:
        assert yt_get(server, "channels", part="id", id=channel["id"]).status_code == 200
    over = yt_get(server, "channels", part="id", id=channel["id"])
    assert over.status_code == 403
    error = over.json()["error"]
    assert error["code"] == 403 and error["errors"][0] == {
        "message": error["message"],
        "domain": "youtube.quota",
        "reason": "quotaExceeded",
    }
    assert "exceeded your" in error["message"]
    server.reset_quota()
    assert yt_get(server, "channels", part="id", id=channel["id"]).status_code == 200


def test_demo_page_and_channel_keep_their_promised_shape():
    page, page_facts = build_linkedin_page(NOW)
    channel, channel_facts = build_youtube_channel(NOW)
    assert page_facts.linkedin_posts == 24 and page_facts.linkedin_comments >= 60
    assert channel_facts.youtube_videos == 8 and channel_facts.youtube_comments >= 30
    assert len(page_facts.recent_comments) >= 2 and len(channel_facts.recent_threads) >= 2
    assert any("article" in (p.get("content") or {}) for p in page.posts.values())
    assert all(p["author"] == f"urn:li:organization:{LINKEDIN_ORG}" for p in page.posts.values())
    newest = max(c["created"]["time"] for c in page.comments.values())
    assert newest <= int((NOW - timedelta(hours=1)).timestamp() * 1000)  # the changes come after
    assert max(c["snippet"]["publishedAt"] for c in channel.comments.values()) <= "2026-03-01T11:00:00Z"
