"""A YouTube Data API v3 on loopback, in-process: the tests' and the demo's sample YouTube channel.

It serves the list methods a channel archive reads, in their documented shapes (`youtube#...ListResponse`
with `pageInfo`, `nextPageToken` paging and `maxResults` caps): channels.list (id, forHandle, mine),
playlistItems.list (the channel's uploads playlist, newest first), videos.list (snippet, status,
statistics; unknown ids are simply left out), commentThreads.list (a thread carries only some of its
replies; 403 `commentsDisabled` or `forbidden` for a video in `disabled_comments` or `forbidden_comments`)
and comments.list (parentId= for a thread's replies, id= for a lookup). Like Google it takes an API
key as the `key` parameter or an OAuth access token as a Bearer header, counts one quota unit a call against
a daily quota and answers past it with the 403 `quotaExceeded` error body; errors are Google's
`{"error": {"code", "message", "errors": [{"domain", "reason", ...}], "status"}}`. Comment thumbnails are
served from `/vi/{id}/hqdefault.jpg` without credentials, as i.ytimg.com does. Faults can be injected as on the
sample Mastodon server. Standard library only; one lock guards the state.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from .loopback import Fault, LoopbackServer, Reply, Request
from .png import make_png

API = "/youtube/v3/"
THUMB_PREFIX = "/vi/"
INCLUDED_REPLIES = 2  # commentThreads carries a subset of the replies; comments.list?parentId= has them all


def rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _etag(value: Any) -> str:
    return base64.urlsafe_b64encode(hashlib.sha1(json.dumps(value, sort_keys=True).encode()).digest()[:18]).decode()


def google_error(code: int, reason: str, message: str, domain: str = "global", status: str = "") -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "errors": [{"message": message, "domain": domain, "reason": reason}],
    }
    if status:
        error["status"] = status
    return {"error": error}


QUOTA_EXCEEDED = google_error(
    403,
    "quotaExceeded",
    "The request cannot be completed because you have exceeded your "
    '<a href="/youtube/v3/getting-started#quota">quota</a>.',
    "youtube.quota",
)


class YouTubeState:
    """Channels, their uploads, comment threads and replies. Tests change it while it serves."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.channels: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, list[str]] = {}  # channel id -> video ids, newest first
        self.videos: dict[str, dict[str, Any]] = {}
        self.threads: dict[str, dict[str, Any]] = {}  # thread id -> {"video", "replies": [comment ids]}
        self.comments: dict[str, dict[str, Any]] = {}
        self.disabled_comments: set[str] = set()
        # Videos whose comments the credential may not read (private, members-only, another channel's rules):
        # commentThreads.list answers them 403 `forbidden`, as it documents, while other videos read.
        self.forbidden_comments: set[str] = set()
        self.owner: str | None = None  # the OAuth token's channel
        self._seq = 0

    def _id(self, prefix: str, length: int) -> str:
        self._seq += 1
        digest = base64.urlsafe_b64encode(hashlib.sha256(f"{prefix}{self._seq}".encode()).digest()).decode()
        return prefix + digest[:length].replace("=", "x")

    def add_channel(self, title: str, handle: str, created_at: datetime) -> dict[str, Any]:
        with self.lock:
            channel_id = self._id("UC", 22)
            channel = {
                "kind": "youtube#channel",
                "id": channel_id,
                "snippet": {
                    "title": title,
                    "description": f"The official channel of {title}.",
                    "customUrl": handle.lower(),
                    "publishedAt": rfc3339(created_at),
                    "localized": {"title": title, "description": f"The official channel of {title}."},
                },
                "contentDetails": {"relatedPlaylists": {"likes": "", "uploads": "UU" + channel_id[2:]}},
                "statistics": {
                    "viewCount": "0",
                    "subscriberCount": "0",
                    "hiddenSubscriberCount": False,
                    "videoCount": "0",
                },
            }
            self.channels[channel_id] = channel
            self.uploads[channel_id] = []
            if self.owner is None:
                self.owner = channel_id
            return channel

    def add_video(
        self, channel_id: str, title: str, description: str, *, published_at: datetime, privacy: str = "public"
    ) -> dict[str, Any]:
        with self.lock:
            video_id = self._id("", 11)
            channel = self.channels[channel_id]
            video = {
                "kind": "youtube#video",
                "id": video_id,
                "snippet": {
                    "publishedAt": rfc3339(published_at),
                    "channelId": channel_id,
                    "title": title,
                    "description": description,
                    "thumbnails": {
                        "default": {"url": f"/vi/{video_id}/default.jpg", "width": 120, "height": 90},
                        "high": {"url": f"/vi/{video_id}/hqdefault.jpg", "width": 480, "height": 360},
                    },
                    "channelTitle": channel["snippet"]["title"],
                    "tags": [],
                    "categoryId": "26",
                    "liveBroadcastContent": "none",
                },
                "status": {
                    "uploadStatus": "processed",
                    "privacyStatus": privacy,
                    "license": "youtube",
                    "embeddable": True,
                    "publicStatsViewable": True,
                    "madeForKids": False,
                },
                "statistics": {"viewCount": "0", "likeCount": "0", "favoriteCount": "0", "commentCount": "0"},
            }
            self.videos[video_id] = video
            self.uploads[channel_id].insert(0, video_id)
            channel["statistics"]["videoCount"] = str(len(self.uploads[channel_id]))
            return video

    def edit_video(self, video_id: str, *, title: str | None = None, description: str | None = None) -> None:
        with self.lock:
            snippet = self.videos[video_id]["snippet"]
            snippet["title"] = title if title is not None else snippet["title"]
            snippet["description"] = description if description is not None else snippet["description"]

    def delete_video(self, video_id: str) -> None:
        with self.lock:
            video = self.videos.pop(video_id)
            self.uploads[video["snippet"]["channelId"]].remove(video_id)

    def _comment(self, comment_id: str, video_id: str, author: str, text: str, at: datetime) -> dict[str, Any]:
        channel_id = self.videos[video_id]["snippet"]["channelId"]
        author_channel = "UC" + hashlib.sha256(author.encode()).hexdigest()[:22]
        return {
            "kind": "youtube#comment",
            "id": comment_id,
            "snippet": {
                "channelId": channel_id,
                "videoId": video_id,
                "textDisplay": text,
                "textOriginal": text,
                "authorDisplayName": author,
                "authorProfileImageUrl": f"https://yt3.ggpht.example/{author_channel}=s48",
                "authorChannelUrl": f"http://www.youtube.com/{author}",
                "authorChannelId": {"value": author_channel},
                "canRate": True,
                "viewerRating": "none",
                "likeCount": 0,
                "publishedAt": rfc3339(at),
                "updatedAt": rfc3339(at),
            },
        }

    def add_comment(self, video_id: str, author: str, text: str, *, at: datetime) -> dict[str, Any]:
        """A top-level comment: a new comment thread whose id is the comment's id."""
        with self.lock:
            thread_id = self._id("Ugz", 20) + "4AaABAg"
            comment = self._comment(thread_id, video_id, author, text, at)
            self.comments[thread_id] = comment
            self.threads[thread_id] = {"video": video_id, "replies": []}
            self._recount(video_id)
            return comment

    def add_reply(self, thread_id: str, author: str, text: str, *, at: datetime) -> dict[str, Any]:
        with self.lock:
            thread = self.threads[thread_id]
            reply_id = f"{thread_id}.{self._id('A', 21)}"
            comment = self._comment(reply_id, thread["video"], author, text, at)
            del comment["snippet"]["videoId"]  # replies name their parent, not the video
            comment["snippet"]["parentId"] = thread_id
            self.comments[reply_id] = comment
            thread["replies"].append(reply_id)
            self._recount(thread["video"])
            return comment

    def edit_comment(self, comment_id: str, text: str, *, at: datetime) -> None:
        with self.lock:
            snippet = self.comments[comment_id]["snippet"]
            snippet.update(textDisplay=text, textOriginal=text, updatedAt=rfc3339(at))

    def delete_comment(self, comment_id: str) -> None:
        """Gone like on YouTube: a deleted top-level comment takes its thread and replies with it."""
        with self.lock:
            comment = self.comments.pop(comment_id)
            parent = comment["snippet"].get("parentId")
            if parent:
                self.threads[parent]["replies"].remove(comment_id)
                video = self.threads[parent]["video"]
            else:
                thread = self.threads.pop(comment_id)
                for reply in thread["replies"]:
                    self.comments.pop(reply, None)
                video = thread["video"]
            self._recount(video)

    def _recount(self, video_id: str) -> None:
        count = sum(1 + len(t["replies"]) for t in self.threads.values() if t["video"] == video_id)
        self.videos[video_id]["statistics"]["commentCount"] = str(count)

    # -- queries (under the lock) --------------------------------------------------------------------------
    def thread_resource(self, thread_id: str, with_replies: bool) -> dict[str, Any]:
        thread = self.threads[thread_id]
        video = self.videos[thread["video"]]
        resource: dict[str, Any] = {
            "kind": "youtube#commentThread",
            "id": thread_id,
            "snippet": {
                "channelId": video["snippet"]["channelId"],
                "videoId": thread["video"],
                "topLevelComment": self.comments[thread_id],
                "canReply": True,
                "totalReplyCount": len(thread["replies"]),
                "isPublic": True,
            },
        }
        if with_replies and thread["replies"]:
            # Newest replies first, and only some of them: as the API documents, a subset.
            shown = thread["replies"][::-1][:INCLUDED_REPLIES]
            resource["replies"] = {"comments": [self.comments[r] for r in shown]}
        return resource


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(token: str | None) -> int | None:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return int(text[7:]) if text.startswith("offset:") and text[7:].isdigit() else None


class SampleYouTubeServer(LoopbackServer):
    """Serves a YouTubeState on 127.0.0.1 from a daemon thread. Use as a context manager or start()/stop().

    `api_key` is accepted as `key=`, `oauth_token` as a Bearer header (it sees private videos too).
    `daily_quota` units are spent one a call, reset by `reset_quota()` (Google's midnight Pacific).
    """

    name = "sample-youtube"

    def __init__(
        self,
        state: YouTubeState,
        api_key: str | None = None,
        oauth_token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        daily_quota: int = 10_000,
    ):
        super().__init__(host, port)
        self.state = state
        self._key = api_key
        self._oauth = oauth_token
        self.daily_quota = daily_quota
        self.units_spent = 0

    def reset_quota(self) -> None:
        with self.state.lock:
            self.units_spent = 0

    def api_calls(self, method: str) -> list[dict[str, str]]:
        """The queries of the calls made to one API method (e.g. "commentThreads"), in order."""
        return [{k: v[-1] for k, v in parse_qs(q).items()} for _, p, q in self.requests_log if p == f"{API}{method}"]

    def log_entry(self, method: str, path: str, query: str, headers: dict[str, str]) -> tuple:
        return (method, path, re.sub(r"(^|&)key=[^&]*", r"\1key=***", query))  # the key masked

    def fault_body(self, fault: Fault) -> bytes:
        if fault.status == 403:
            return json.dumps(QUOTA_EXCEEDED).encode()
        return json.dumps(google_error(fault.status, "backendError", "Injected fault")).encode()

    @staticmethod
    def _json(status: int, value: Any) -> Reply:
        return Reply(status, json.dumps(value).encode("utf-8"), content_type="application/json; charset=UTF-8")

    def respond(self, request: Request) -> Reply:
        path, query = request.path, request.query
        if m := re.fullmatch(r"/vi/([\w-]+)/(hqdefault|default)\.jpg", path):
            if m[1] in self.state.videos:
                return Reply(200, make_png(12, 9, sum(map(ord, m[1]))), content_type="image/jpeg")
            return self._json(404, google_error(404, "notFound", "Not Found"))
        if not path.startswith(API):
            return self._json(404, google_error(404, "notFound", "Not Found"))
        auth = request.headers.get("authorization", "")
        oauth = bool(self._oauth) and auth == f"Bearer {self._oauth}"
        if auth and not oauth:
            message = "Request had invalid authentication credentials."
            return self._json(401, google_error(401, "authError", message, status="UNAUTHENTICATED"))
        if not oauth and (self._key is None or query.get("key") != self._key):
            if "key" in query:
                message = "API key not valid. Please pass a valid API key."
                return self._json(400, google_error(400, "badRequest", message, status="INVALID_ARGUMENT"))
            message = "The request is missing a valid API key."
            return self._json(403, google_error(403, "forbidden", message, status="PERMISSION_DENIED"))
        with self.state.lock:
            if self.units_spent + 1 > self.daily_quota:
                return self._json(403, QUOTA_EXCEEDED)
            self.units_spent += 1  # every list call costs one unit, a failed one too
            status, value = self._route(path[len(API) :], query, oauth)
        return self._json(status, value)

    @staticmethod
    def _list(kind: str, items: list[Any], query: dict[str, str], default: int, cap: int) -> tuple[int, Any]:
        try:
            size = max(0, min(int(query.get("maxResults", default)), cap))
        except ValueError:
            return 400, google_error(400, "invalidParameter", "Invalid value for maxResults")
        offset = _offset(query.get("pageToken"))
        if offset is None:
            message = "The request specifies an invalid page token."
            return 400, google_error(400, "invalidPageToken", message, "youtube.parameter")
        page = items[offset : offset + size]
        body: dict[str, Any] = {"kind": f"youtube#{kind}ListResponse", "etag": _etag([offset, size, page])}
        if offset + size < len(items):
            body["nextPageToken"] = _page_token(offset + size)
        if offset:
            body["prevPageToken"] = _page_token(max(0, offset - size))
        body["pageInfo"] = {"totalResults": len(items), "resultsPerPage": size}
        body["items"] = page
        return 200, body

    def _route(self, method: str, query: dict[str, str], oauth: bool) -> tuple[int, Any]:
        state = self.state
        parts = set(query.get("part", "").split(","))
        if not query.get("part"):
            return 400, google_error(400, "required", "Required parameter: part", status="INVALID_ARGUMENT")

        def visible(video: dict[str, Any]) -> bool:
            return oauth or video["status"]["privacyStatus"] != "private"

        if method == "channels":
            if query.get("mine") == "true" and oauth:
                found = [state.channels[state.owner]] if state.owner else []
            elif "forHandle" in query:
                handle = "@" + query["forHandle"].lstrip("@").lower()
                found = [c for c in state.channels.values() if c["snippet"]["customUrl"] == handle]
            else:
                ids = query.get("id", "").split(",")
                found = [state.channels[i] for i in ids if i in state.channels]
            return self._list("channel", found, {**query, "maxResults": "50"}, 5, 50)
        if method == "playlistItems":
            playlist = query.get("playlistId", "")
            channel_id = "UC" + playlist[2:]
            if not playlist.startswith("UU") or channel_id not in state.channels:
                return 404, google_error(
                    404,
                    "playlistNotFound",
                    "The playlist identified with the request's <code>playlistId</code> parameter cannot be found.",
                    "youtube.playlistItem",
                )
            entries = []
            for position, video_id in enumerate(v for v in state.uploads[channel_id] if visible(state.videos[v])):
                video = state.videos[video_id]
                entries.append(
                    {
                        "kind": "youtube#playlistItem",
                        "id": base64.urlsafe_b64encode(f"{playlist}.{video_id}".encode()).decode(),
                        "snippet": {
                            "publishedAt": video["snippet"]["publishedAt"],
                            "channelId": channel_id,
                            "title": video["snippet"]["title"],
                            "playlistId": playlist,
                            "position": position,
                            "resourceId": {"kind": "youtube#video", "videoId": video_id},
                        },
                        "contentDetails": {"videoId": video_id, "videoPublishedAt": video["snippet"]["publishedAt"]},
                    }
                )
            return self._list("playlistItem", entries, query, 5, 50)
        if method == "videos":
            ids = [i for i in query.get("id", "").split(",") if i]
            if len(ids) > 50:
                return 400, google_error(400, "invalidParameter", "Too many video ids (50 at most).")
            found = []
            for video_id in ids:
                video = state.videos.get(video_id)
                if video is not None and visible(video):
                    chosen = {k: v for k, v in video.items() if k in ("kind", "id") or k in parts}
                    resource = json.loads(json.dumps(chosen))
                    for thumb in (resource.get("snippet") or {}).get("thumbnails", {}).values():
                        thumb["url"] = self.base_url + thumb["url"]  # as absolute as i.ytimg.com's
                    found.append(resource)
            return self._list("video", found, {"maxResults": "50"}, 50, 50)
        if method == "commentThreads":
            video_id = query.get("videoId", "")
            video = state.videos.get(video_id)
            if video is None or not visible(video):
                return 404, google_error(
                    404,
                    "videoNotFound",
                    "The video identified by the <code>videoId</code> parameter could not be found.",
                    "youtube.commentThread",
                )
            if video_id in state.disabled_comments:
                return 403, google_error(
                    403,
                    "commentsDisabled",
                    "The video identified by the <code>videoId</code> parameter has disabled comments.",
                    "youtube.commentThread",
                )
            if video_id in state.forbidden_comments:
                return 403, google_error(
                    403,
                    "forbidden",
                    "The comment thread could not be retrieved due to insufficient permissions. "
                    "The request might not be properly authorized.",
                    "youtube.commentThread",
                )
            ids = [t for t, thread in state.threads.items() if thread["video"] == video_id][::-1]  # newest first
            threads = [state.thread_resource(t, "replies" in parts) for t in ids]
            return self._list("commentThread", threads, query, 20, 100)
        if method == "comments":
            if "parentId" in query:
                thread = state.threads.get(query["parentId"])
                replies = [state.comments[r] for r in thread["replies"]] if thread else []
                return self._list("comment", replies, query, 20, 100)
            ids = [i for i in query.get("id", "").split(",") if i]
            found = [state.comments[i] for i in ids if i in state.comments]
            return self._list("comment", found, {"maxResults": "50"}, 50, 50)
        return 404, google_error(404, "notFound", "Not Found")
