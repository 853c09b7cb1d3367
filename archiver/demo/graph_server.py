"""A Graph API (Facebook Pages, Instagram professional accounts) on loopback: the tests' and the demo's stand-in.

It serves the documented node and edge shapes (Page, Page Post, Comment, IG User, IG Media with carousel
children, IG Comment, Conversation, Message) with field selection (`fields=a,b,c{d}`), cursor paging
(`{"data": [...], "paging": {"cursors": {"before", "after"}, "next"}}`, `paging.next` absent on the last
page), privacy-filtered short pages that are not the end, the error envelope
`{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}` (190 for a bad or expired token,
100/33 for an object that does not exist, throttling codes), X-App-Usage and X-Business-Use-Case-Usage
headers, appsecret_proof checking, media on a CDN path (`/cdn/media/<file>`; Instagram Direct attachments on
the messaging CDN's `/ig_messaging_cdn/?asset_id=...&signature=...`), and injected faults. Standard library
only; one lock guards the state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from .loopback import Fault, LoopbackServer, Reply, Request

MEDIA_PREFIX = "/cdn/media/"
# Instagram Direct attachments come from Meta's messaging CDN, named by the query, not the path:
# https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=<id>&signature=<signature>
IG_MESSAGING_PREFIX = "/ig_messaging_cdn/"
VERSION = re.compile(r"v\d+\.\d+")
__all__ = ["Fault", "GraphState", "SampleGraphServer", "Throttle", "graph_time", "parse_fields"]


def graph_time(ts: datetime) -> str:
    """Graph's timestamp form: 2026-11-20T10:00:00+0000."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


# -- field selection -------------------------------------------------------------------------------------------
def parse_fields(text: str) -> dict[str, Any]:
    """`a,b{c,d{e}},f.limit(5)` -> {"a": None, "b": {"c": None, "d": {"e": None}}, "f": None}."""
    pos = 0

    def parse_list() -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        while pos < len(text):
            match = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z_]+\([^)]*\))*").match(text, pos)
            if not match:
                break
            name = match.group(0).split(".")[0]
            pos = match.end()
            sub = None
            if pos < len(text) and text[pos] == "{":
                pos += 1
                sub = parse_list()
                if pos < len(text) and text[pos] == "}":
                    pos += 1
            out[name] = sub
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            break
        return out

    return parse_list()


def project(obj: dict[str, Any], spec: dict[str, Any] | None) -> dict[str, Any]:
    """The requested fields of a node (id always); absent or null fields are left out, as Graph does."""
    public = {k: v for k, v in obj.items() if not k.startswith("_")}
    if spec is None:
        return public
    out: dict[str, Any] = {}
    for name, sub in spec.items():
        value = public.get(name)
        if value is None:
            continue
        if sub is not None and isinstance(value, dict):
            if isinstance(value.get("data"), list):
                value = {**value, "data": [project(entry, sub) for entry in value["data"]]}
            else:
                value = project(value, sub)
        out[name] = value
    if "id" in public:
        out = {"id": public["id"], **{k: v for k, v in out.items() if k != "id"}}
    return out


# -- the platform's data ---------------------------------------------------------------------------------------
class GraphState:
    """Pages, posts, comments, Instagram media and comments, conversations and messages. Methods take the lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.base_url = "http://127.0.0.1"
        self.nodes: dict[str, dict[str, Any]] = {}  # every object by id; "_kind" says which
        self.deleted: set[str] = set()
        self.filtered: set[str] = set()  # left out of listings (privacy filtering), found by lookups
        self.media: dict[str, bytes] = {}
        self.assets: dict[str, bytes] = {}  # Instagram messaging CDN files by asset_id
        self._seq = 0

    def _next(self, width: int = 15) -> str:
        self._seq += 1
        return str(10**width + self._seq)

    def _file(self, data: bytes, extension: str = "png") -> str:
        name = f"{hashlib.sha256(data).hexdigest()[:16]}_{self._next(6)}.{extension}"
        self.media[MEDIA_PREFIX + name] = data
        return f"{self.base_url}{MEDIA_PREFIX}{name}"

    def _asset(self, data: bytes) -> str:
        asset_id = "1790" + self._next()
        self.assets[asset_id] = data
        signature = "Ab" + hashlib.sha256(asset_id.encode()).hexdigest()[:20]
        return f"{self.base_url}{IG_MESSAGING_PREFIX}?{urlencode({'asset_id': asset_id, 'signature': signature})}"

    def rebase(self, new_base: str) -> None:
        """Media URLs made before the server's port was known now point at the server."""
        old = self.base_url
        self.base_url = new_base

        def walk(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: walk(v) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v) for v in value]
            if isinstance(value, str) and value.startswith((old + MEDIA_PREFIX, old + IG_MESSAGING_PREFIX)):
                return new_base + value[len(old) :]
            return value

        with self.lock:
            for key, node in list(self.nodes.items()):
                self.nodes[key] = walk(node)

    # -- Facebook ----------------------------------------------------------------------------------------------
    def add_page(self, name: str, username: str) -> dict:
        with self.lock:
            page_id = self._next(12)
            page = {"id": page_id, "name": name, "username": username, "link": f"https://www.facebook.com/{username}"}
            self.nodes[page_id] = {**page, "_kind": "page"}
            return self.nodes[page_id]

    def _photo_attachment(self, data: bytes, description: str) -> dict:
        photo_id = self._next()
        return {
            "media_type": "photo",
            "type": "photo",
            "url": f"https://www.facebook.com/photo/?fbid={photo_id}",
            "description": description,
            "media": {"image": {"height": 48, "width": 64, "src": self._file(data)}},
            "target": {"id": photo_id, "url": f"https://www.facebook.com/photo/?fbid={photo_id}"},
        }

    def add_post(
        self,
        page: dict,
        message: str,
        created: datetime,
        *,
        author: dict | None = None,
        photos: list[tuple[bytes, str]] | None = None,
    ) -> dict:
        """A post on the Page (by the Page, or by a visitor when `author` is given); several photos make an album."""
        with self.lock:
            post_id = f"{page['id']}_{self._next()}"
            who = author or {"id": page["id"], "name": page["name"]}
            post: dict[str, Any] = {
                "id": post_id,
                "message": message,
                "created_time": graph_time(created),
                "updated_time": graph_time(created),
                "permalink_url": f"https://www.facebook.com/{page['username']}/posts/{post_id.split('_')[1]}",
                "from": who,
                "is_hidden": False,
                "_kind": "post",
                "_page": page["id"],
                "_by_page": author is None,
            }
            photos = photos or []
            if len(photos) == 1:
                post["attachments"] = {"data": [self._photo_attachment(*photos[0])]}
            elif photos:
                subs = [self._photo_attachment(*p) for p in photos]
                post["attachments"] = {
                    "data": [
                        {
                            "media_type": "album",
                            "type": "album",
                            "title": "Album",
                            "url": post["permalink_url"],
                            "subattachments": {"data": subs},
                        }
                    ]
                }
            self.nodes[post_id] = post
            return post

    def edit_post(self, post_id: str, message: str, at: datetime) -> dict:
        with self.lock:
            post = self.nodes[post_id]
            post["message"] = message
            post["updated_time"] = graph_time(at)
            return post

    def add_comment(
        self,
        post: dict,
        author: dict,
        message: str,
        created: datetime,
        *,
        parent: dict | None = None,
        hidden: bool = False,
        photo: tuple[bytes, str] | None = None,
    ) -> dict:
        """A comment on a post, or a reply to a comment (`parent`); replies sit in the post's stream too."""
        with self.lock:
            comment_id = f"{post['id'].split('_')[1]}_{self._next()}"
            comment: dict[str, Any] = {
                "id": comment_id,
                "message": message,
                "created_time": graph_time(created),
                "from": author,
                "is_hidden": hidden,
                "permalink_url": f"{post['permalink_url']}?comment_id={comment_id.split('_')[1]}",
                "comment_count": 0,
                "_kind": "comment",
                "_post": post["id"],
            }
            if parent is not None:
                comment["parent"] = {"id": parent["id"], "created_time": parent["created_time"]}
                parent["comment_count"] += 1
            if photo is not None:
                comment["attachment"] = self._photo_attachment(*photo)
            self.nodes[comment_id] = comment
            return comment

    # -- Instagram ---------------------------------------------------------------------------------------------
    def add_ig_user(self, username: str, name: str) -> dict:
        with self.lock:
            user_id = "178414" + self._next(10)
            self.nodes[user_id] = {"id": user_id, "username": username, "name": name, "_kind": "ig_user"}
            return self.nodes[user_id]

    def add_ig_media(
        self,
        user: dict,
        caption: str,
        created: datetime,
        images: list[bytes],
        *,
        video: bytes | None = None,
    ) -> dict:
        """An IMAGE, a VIDEO (with a thumbnail), or a CAROUSEL_ALBUM when several images are given."""
        with self.lock:
            media_id = "179" + self._next()
            code = base64.urlsafe_b64encode(media_id.encode()).decode()[:11]
            media: dict[str, Any] = {
                "id": media_id,
                "caption": caption,
                "media_product_type": "FEED",
                "permalink": f"https://www.instagram.com/p/{code}/",
                "timestamp": graph_time(created),
                "username": user["username"],
                "is_comment_enabled": True,
                "comments_count": 0,
                "_kind": "ig_media",
                "_user": user["id"],
            }
            if video is not None:
                media.update(media_type="VIDEO", media_url=self._file(video, "mp4"))
                media["thumbnail_url"] = self._file(images[0])
            elif len(images) == 1:
                media.update(media_type="IMAGE", media_url=self._file(images[0]))
            else:
                children = []
                for data in images:
                    child_id = "179" + self._next()
                    child = {
                        "id": child_id,
                        "media_type": "IMAGE",
                        "media_url": self._file(data),
                        "timestamp": graph_time(created),
                        "_kind": "ig_media_child",
                    }
                    self.nodes[child_id] = child
                    children.append({k: v for k, v in child.items() if not k.startswith("_")})
                media.update(media_type="CAROUSEL_ALBUM", children={"data": children})
            self.nodes[media_id] = media
            return media

    def add_ig_comment(
        self,
        media: dict,
        username: str,
        text: str,
        created: datetime,
        *,
        parent: dict | None = None,
        hidden: bool = False,
    ) -> dict:
        """A comment on a media, or a reply to a top-level comment (Instagram nests one level only)."""
        with self.lock:
            comment_id = "178" + self._next()
            comment: dict[str, Any] = {
                "id": comment_id,
                "text": text,
                "timestamp": graph_time(created),
                "username": username,
                "from": {"id": str(int(hashlib.sha256(username.encode()).hexdigest()[:12], 16)), "username": username},
                "hidden": hidden,
                "like_count": 0,
                "media": {"id": media["id"]},
                "_kind": "ig_comment",
                "_media": media["id"],
            }
            if parent is not None:
                comment["parent_id"] = parent["id"]
            self.nodes[comment_id] = comment
            media["comments_count"] += 1
            return comment

    def edit_caption(self, media_id: str, caption: str) -> dict:
        with self.lock:
            self.nodes[media_id]["caption"] = caption
            return self.nodes[media_id]

    # -- conversations -----------------------------------------------------------------------------------------
    def add_conversation(self, page: dict, platform: str, participant: dict) -> dict:
        """A Messenger (platform="messenger") or Instagram Direct (platform="instagram") conversation."""
        with self.lock:
            conv_id = "t_" + self._next()
            if platform == "instagram":
                own = {"username": page.get("_ig_username", page["username"]), "id": page["id"]}
            else:
                own = {"name": page["name"], "email": f"{page['id']}@facebook.com", "id": page["id"]}
            conversation = {
                "id": conv_id,
                "link": f"/{page['username']}/inbox/{conv_id}",
                "updated_time": graph_time(datetime(2000, 1, 1, tzinfo=UTC)),
                "message_count": 0,
                "participants": {"data": [participant, own]},
                "_kind": "conversation",
                "_page": page["id"],
                "_platform": platform,
            }
            self.nodes[conv_id] = conversation
            return conversation

    def add_message(
        self,
        conversation: dict,
        sender: dict,
        text: str,
        created: datetime,
        *,
        images: list[tuple[bytes, str]] | None = None,
    ) -> dict:
        with self.lock:
            message_id = "m_" + base64.urlsafe_b64encode(self._next().encode()).decode().rstrip("=")
            recipients = [p for p in conversation["participants"]["data"] if p["id"] != sender["id"]]
            message: dict[str, Any] = {
                "id": message_id,
                "created_time": graph_time(created),
                "from": sender,
                "to": {"data": recipients},
                "message": text,
                "_kind": "message",
                "_conversation": conversation["id"],
            }
            if images:
                # Messenger serves files from scontent (named by the path), Instagram from its messaging CDN.
                file = self._asset if conversation["_platform"] == "instagram" else self._file
                message["attachments"] = {
                    "data": [
                        {
                            "id": self._next(),
                            "mime_type": "image/png",
                            "name": name,
                            "size": len(data),
                            "image_data": {
                                "width": 64,
                                "height": 48,
                                "max_width": 64,
                                "max_height": 48,
                                "url": file(data),
                                "preview_url": file(data),
                            },
                        }
                        for data, name in images
                    ]
                }
            self.nodes[message_id] = message
            conversation["message_count"] += 1
            conversation["updated_time"] = max(conversation["updated_time"], message["created_time"])
            return message

    # -- changes -----------------------------------------------------------------------------------------------
    def delete(self, object_id: str) -> None:
        """Gone: lookups answer code 100 / subcode 33, listings leave it out."""
        with self.lock:
            self.nodes.pop(object_id)
            self.deleted.add(object_id)

    def set_hidden(self, object_id: str, hidden: bool) -> None:
        with self.lock:
            node = self.nodes[object_id]
            node["is_hidden" if "is_hidden" in node else "hidden"] = hidden

    # -- queries (under the lock) ------------------------------------------------------------------------------
    def edge(self, object_id: str, name: str, query: dict[str, str]) -> list[dict] | None:
        """The ordered entries of an edge, or None when the object has no such edge."""
        node = self.nodes.get(object_id)
        if node is None:
            return None
        kind = node["_kind"]
        every = list(self.nodes.values())

        def newest_first(items: list[dict], key: str) -> list[dict]:
            return sorted(items, key=lambda n: (n[key], n["id"]), reverse=True)

        if kind == "page" and name in ("feed", "published_posts", "posts"):
            posts = [n for n in every if n["_kind"] == "post" and n["_page"] == object_id]
            if name != "feed":
                posts = [p for p in posts if p["_by_page"]]
            return newest_first(posts, "created_time")
        if kind == "page" and name == "conversations":
            platform = query.get("platform", "messenger")
            conversations = [
                n for n in every if n["_kind"] == "conversation" and n["_page"] == object_id and n["message_count"]
            ]
            return newest_first([c for c in conversations if c["_platform"] == platform], "updated_time")
        if kind in ("post", "comment") and name == "comments":
            if kind == "post":
                comments = [n for n in every if n["_kind"] == "comment" and n["_post"] == object_id]
                if query.get("filter") != "stream":
                    comments = [c for c in comments if "parent" not in c]
            else:
                comments = [
                    n for n in every if n["_kind"] == "comment" and (n.get("parent") or {}).get("id") == object_id
                ]
            ordered = sorted(comments, key=lambda c: (c["created_time"], c["id"]))
            return ordered[::-1] if query.get("order") == "reverse_chronological" else ordered
        if kind == "conversation" and name == "messages":
            messages = [n for n in every if n["_kind"] == "message" and n["_conversation"] == object_id]
            return newest_first(messages, "created_time")
        if kind == "ig_user" and name == "media":
            return newest_first([n for n in every if n["_kind"] == "ig_media" and n["_user"] == object_id], "timestamp")
        if kind == "ig_media" and name == "comments":
            comments = [
                n for n in every if n["_kind"] == "ig_comment" and n["_media"] == object_id and "parent_id" not in n
            ]
            return sorted(comments, key=lambda c: (c["timestamp"], c["id"]), reverse=True)
        if kind == "ig_media" and name == "children":
            return [self.nodes[c["id"]] for c in (node.get("children") or {}).get("data", []) if c["id"] in self.nodes]
        if kind == "ig_comment" and name == "replies":
            replies = [n for n in every if n["_kind"] == "ig_comment" and n.get("parent_id") == object_id]
            return sorted(replies, key=lambda c: (c["timestamp"], c["id"]))
        return None


@dataclass
class Throttle:
    """The next `times` API calls are refused with a Graph throttling error (code 4, 17, 32, 613, 80001...)."""

    code: int = 80001
    times: int = 1
    regain_minutes: int = 1
    http_status: int = 400
    served: int = field(default=0, init=False)


THROTTLE_MESSAGES = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
}


def _cursor(object_id: str) -> str:
    return base64.urlsafe_b64encode(object_id.encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


class SampleGraphServer(LoopbackServer):
    """Serves a GraphState on 127.0.0.1 from a daemon thread. Use as a context manager or start()/stop()."""

    name = "sample-graph"

    def __init__(
        self,
        state: GraphState,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        app_secret: str | None = None,
        call_budget: int = 100_000,
    ):
        super().__init__(host, port)
        self.state = state
        self._token = token
        self._app_secret = app_secret
        self.expired_tokens: set[str] = set()
        self.token_expires_at = 0  # debug_token's expires_at (Unix seconds; 0 = never, as a Page token)
        self.data_access_expires_at = 0  # debug_token's data_access_expires_at (0 = not reported)
        self.moderate = True  # the token may read comments' is_hidden
        self.signed_media_urls = False  # media URLs carry a fresh signature query in every answer, as Meta's CDN
        self.call_budget = call_budget  # calls per run of the server before usage reaches 100%
        self.reported_usage: int | None = None  # a fixed percentage for the usage headers, instead of the count
        self.calls = 0
        self.throttles: list[Throttle] = []
        state.rebase(self.base_url)

    # -- errors and usage --------------------------------------------------------------------------------------
    @staticmethod
    def error(code: int, message: str, kind: str = "OAuthException", subcode: int | None = None) -> dict:
        body: dict[str, Any] = {"message": message, "type": kind, "code": code}
        if subcode is not None:
            body["error_subcode"] = subcode
        body["fbtrace_id"] = "A" + secrets.token_urlsafe(14)
        return {"error": body}

    def _usage_headers(self, regain_minutes: int = 0, full: bool = False) -> dict[str, str]:
        percent = min(100, self.calls * 100 // max(self.call_budget, 1))
        percent = 100 if full else (self.reported_usage if self.reported_usage is not None else percent)
        app = {"call_count": percent, "total_cputime": percent // 2, "total_time": percent // 2}
        owner = next((n["id"] for n in self.state.nodes.values() if n["_kind"] == "page"), "0")
        buc = {
            owner: [
                {
                    "type": "pages",
                    "call_count": percent,
                    "total_cputime": percent // 2,
                    "total_time": percent // 2,
                    "estimated_time_to_regain_access": regain_minutes,
                }
            ]
        }
        return {"X-App-Usage": json.dumps(app), "X-Business-Use-Case-Usage": json.dumps(buc)}

    # -- HTTP --------------------------------------------------------------------------------------------------
    def log_entry(self, method: str, path: str, query: str, headers: dict[str, str]) -> tuple:
        """(path, query, headers), the token masked wherever it travels."""
        values = {k: v[-1] for k, v in parse_qs(query).items()}
        masked = {k: ("[token]" if k in ("access_token", "appsecret_proof") else v) for k, v in values.items()}
        shown = {k: ("[token]" if k.lower() == "authorization" else v) for k, v in headers.items()}
        return (path, urlencode(masked), shown)

    def fault_body(self, fault: Fault) -> bytes:
        return b'{"error": {"message": "Injected fault"}}'

    def respond(self, request: Request) -> Reply:
        path = request.path
        if path.startswith(MEDIA_PREFIX):
            with self.state.lock:
                data = self.state.media.get(path)
            if data is None:
                return Reply(404, b"Not Found", content_type="text/plain")
            return Reply(200, data, content_type="video/mp4" if path.endswith(".mp4") else "image/png")
        if path == IG_MESSAGING_PREFIX:
            if not request.query.get("signature"):
                return Reply(403, b"URL signature mismatch", content_type="text/plain")
            with self.state.lock:
                data = self.state.assets.get(request.query.get("asset_id", ""))
            if data is None:
                return Reply(404, b"Not Found", content_type="text/plain")
            return Reply(200, data, content_type="image/png")
        query = {k: v[-1] for k, v in parse_qs(request.raw_query).items()}
        status, value, extra = self._answer(path, query, request.headers.get("authorization", ""))
        body = json.dumps(value)
        if self.signed_media_urls:
            signature = f"?oh={secrets.token_hex(8)}&oe={secrets.token_hex(4)}"
            body = re.sub(rf'({re.escape(MEDIA_PREFIX)}[^"?]+)', lambda m: m[1] + signature, body)
            asset = rf'({re.escape(IG_MESSAGING_PREFIX)}\?asset_id=[0-9]+&signature=)[^"&]+'
            body = re.sub(asset, rf"\g<1>Ab{secrets.token_hex(10)}", body)
        return Reply(status, body.encode("utf-8"), extra, "application/json; charset=UTF-8")

    def _token_of(self, authorization: str, query: dict[str, str]) -> str | None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and value:
            return value.strip()
        return query.get("access_token")

    def _answer(self, path: str, query: dict[str, str], authorization: str) -> tuple[int, Any, dict[str, str]]:
        segments = [s for s in path.split("/") if s]
        if not segments or not VERSION.fullmatch(segments[0]):
            return 400, self.error(2500, f"Unknown path components: {path}"), {}
        token = self._token_of(authorization, query)
        if not token:
            return 400, self.error(2500, "An active access token must be used to query information."), {}
        if token in self.expired_tokens:
            message = "Error validating access token: Session has expired on Sunday, 01-Nov-26 10:00:00 PST."
            return 400, self.error(190, message, subcode=463), {}
        if token != self._token:
            return 400, self.error(190, "Invalid OAuth access token - Cannot parse access token"), {}
        if self._app_secret is not None:
            proof = query.get("appsecret_proof")
            if not proof:
                return 400, self.error(100, "API calls from the server require an appsecret_proof argument"), {}
            expected = hmac.new(self._app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(proof, expected):
                message = "Invalid appsecret_proof provided in the API argument"
                return 400, self.error(100, message, "GraphMethodException"), {}
        with self.state.lock:
            self.calls += 1
            throttle = next((t for t in self.throttles if t.served < t.times), None)
            if throttle is not None:
                throttle.served += 1
                message = THROTTLE_MESSAGES.get(throttle.code, "(#80001) There have been too many calls to this Page.")
                headers = self._usage_headers(throttle.regain_minutes, full=True)
                return throttle.http_status, self.error(throttle.code, message), headers
            if self.calls > self.call_budget:
                return 400, self.error(4, THROTTLE_MESSAGES[4]), self._usage_headers(1, full=True)
            status, value = self._route(segments[1:], query, path)
            return status, value, self._usage_headers()

    def _missing(self, object_id: str) -> tuple[int, dict]:
        message = (
            f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be loaded due to missing "
            "permissions, or does not support this operation. Please read the Graph API documentation at "
            "https://developers.facebook.com/docs/graph-api"
        )
        return 400, self.error(100, message, "GraphMethodException", 33)

    def _route(self, segments: list[str], query: dict[str, str], path: str) -> tuple[int, Any]:
        state = self.state
        spec = parse_fields(query["fields"]) if query.get("fields") else None
        if segments == ["debug_token"]:
            data = {
                "app_id": "1000000000001",
                "type": "PAGE",
                "is_valid": query.get("input_token") == self._token,
                "expires_at": self.token_expires_at,
                "data_access_expires_at": self.data_access_expires_at,
                "scopes": ["pages_read_engagement", "pages_manage_metadata", "pages_messaging"],
            }
            return 200, {"data": data}
        if segments == ["me"]:
            page = next((n for n in state.nodes.values() if n["_kind"] == "page"), None)
            return (200, project(page, spec or {"id": None, "name": None})) if page else self._missing("me")
        if len(segments) == 1:
            node = state.nodes.get(segments[0])
            if node is None:
                return self._missing(segments[0])
            if spec and "is_hidden" in spec and node["_kind"] == "comment" and not self.moderate:
                return 400, self.error(10, "(#10) This endpoint requires the MODERATE task on the Page")
            return 200, project(node, spec or {"id": None})
        if len(segments) != 2:
            return 400, self.error(2500, f"Unknown path components: /{'/'.join(segments[2:])}")
        object_id, edge = segments
        if object_id not in state.nodes:
            return self._missing(object_id)
        if spec and "is_hidden" in spec and edge == "comments" and not self.moderate:
            return 400, self.error(10, "(#10) This endpoint requires the MODERATE task on the Page")
        entries = state.edge(object_id, edge, query)
        if entries is None:
            message = f"(#100) Tried accessing nonexisting field ({edge}) on node type"
            return 400, self.error(100, message, "GraphMethodException")
        try:
            limit = max(1, min(int(query.get("limit", 25)), 100))
        except ValueError:
            limit = 25
        start = 0
        if query.get("after"):
            after = _uncursor(query["after"])
            ids = [e["id"] for e in entries]
            if after not in ids:
                # Meta's cursors die with the item they point at: the reason never to keep one.
                return 400, self.error(100, "(#100) The after cursor is invalid or has expired", "GraphMethodException")
            start = ids.index(after) + 1
        window = entries[start : start + limit]
        shown = [project(e, spec or {"id": None}) for e in window if e["id"] not in state.filtered]
        page: dict[str, Any] = {"data": shown}
        if window:
            page["paging"] = {"cursors": {"before": _cursor(window[0]["id"]), "after": _cursor(window[-1]["id"])}}
            if start + limit < len(entries):
                following = {k: v for k, v in query.items() if k not in ("after", "before", "access_token")}
                following["after"] = _cursor(window[-1]["id"])
                page["paging"]["next"] = f"{self.base_url}{path}?{urlencode(following)}"
        return 200, page
