"""An AT Protocol stand-in on loopback (PDS, PLC directory, AppView and chat in one), for tests and the demo.

Shapes follow the lexicons (github.com/bluesky-social/atproto/lexicons):
- com.atproto.identity.resolveHandle `{did}` (400 InvalidRequest "Unable to resolve handle").
- PLC directory: GET /<did> answers the DID document (`alsoKnownAs` at://handle, a `#atproto_pds` service of
  type AtprotoPersonalDataServer whose serviceEndpoint is this server).
- com.atproto.repo.listRecords `{records: [{uri, cid, value}], cursor}` newest rkey first (`reverse` for
  oldest first), `limit` 1-100 (default 50); like the reference PDS, a cursor comes with every non-empty
  page and the listing ends with an empty one. com.atproto.repo.getRecord `{uri, cid, value}` or 400
  RecordNotFound. com.atproto.sync.getBlob answers the bytes (400 BlobNotFound). A replaced record
  (putRecord) keeps its rkey and gets a new cid; a deleted one is gone from both.
- com.atproto.server.createSession `{did, handle, email, emailConfirmed, accessJwt, refreshJwt, active}` for
  the app password (401 AuthenticationRequired otherwise).
- app.bsky.feed.getPostThread `{thread}`: #threadViewPost `{post: PostView, parent?, replies?}` to `depth`
  (default 6) and `parentHeight` (default 80); a deleted post with live replies, or a deleted parent, shows
  as #notFoundPost `{uri, notFound: true}`; a thread whose post is gone is 400 NotFound.
  app.bsky.feed.getQuotes `{uri, posts, cursor?}` (or 501 MethodNotImplemented when switched off); like the
  AppView, it cuts a page first and then leaves out the posts in `hidden` (blocked, taken down), keeping the
  cursor, so a page can come back empty with a cursor to go on with.
- chat.bsky.convo.listConvos `{convos: [ConvoView], cursor?}` and getMessages `{messages: [#messageView |
  #deletedMessageView], cursor?}` newest first, only with a session's access JWT and an `atproto-proxy`
  header; 400 ExpiredToken once sessions are expired; 501 MethodNotImplemented when chat is off.
- RateLimit-Limit / -Remaining / -Reset (Unix seconds) / -Policy on every XRPC answer; 429
  RateLimitExceeded past the limit. Faults as in the Mastodon sample.
Standard library only; one lock guards the state so tests can change it while it serves.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .loopback import Fault, LoopbackServer, Reply, Request

__all__ = ["BlueskyState", "Fault", "SampleBlueskyServer"]

TID_CHARS = "234567abcdefghijklmnopqrstuvwxyz"
POST = "app.bsky.feed.post"
RATE_WINDOW = 300


def at_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def make_cid(value: Any) -> str:
    """A CIDv1-looking (base32 'bafyrei...') content id of a JSON value: equal content, equal cid."""
    data = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode()
    digest = base64.b32encode(hashlib.sha256(data).digest()).decode().lower().rstrip("=")
    return "bafyrei" + digest


@dataclass
class Account:
    did: str
    handle: str
    display_name: str
    app_password: str | None = None


@dataclass
class Convo:
    id: str
    members: list[str]
    messages: list[dict[str, Any]] = field(default_factory=list)
    rev: str = ""


class BlueskyState:
    """Accounts, their repositories (post records), blobs and chat conversations."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.repos: dict[str, dict[str, dict[str, Any]]] = {}  # did -> rkey -> {uri, cid, value}
        self.profiles: dict[str, dict[str, Any]] = {}
        self.blobs: dict[str, tuple[bytes, str]] = {}
        self.convos: dict[str, Convo] = {}
        self.indexed_at: dict[str, str] = {}
        self.tombstones: dict[str, str | None] = {}  # deleted post uri -> the uri it replied to
        self._clock = 0

    def tid(self, at: datetime) -> str:
        """A record key in TID form: microseconds then a clock id, base32-sortable."""
        self._clock = (self._clock + 1) % 1024
        number = int(at.timestamp() * 1_000_000) << 10 | self._clock
        out = ""
        for _ in range(13):
            out = TID_CHARS[number & 31] + out
            number >>= 5
        return out

    def add_account(self, handle: str, display_name: str, app_password: str | None = None) -> Account:
        did = "did:plc:" + base64.b32encode(hashlib.sha256(handle.encode()).digest()).decode().lower()[:24]
        account = Account(did, handle, display_name, app_password)
        self.accounts[did] = account
        self.repos[did] = {}
        self.profiles[did] = {"$type": "app.bsky.actor.profile", "displayName": display_name}
        return account

    def by_handle(self, handle: str) -> Account | None:
        return next((a for a in self.accounts.values() if a.handle == handle), None)

    # -- records -------------------------------------------------------------------------------------------
    def strong_ref(self, uri: str) -> dict[str, str]:
        did, _, rkey = uri.removeprefix("at://").split("/")
        return {"uri": uri, "cid": self.repos[did][rkey]["cid"]}

    def add_post(
        self,
        did: str,
        text: str,
        *,
        created_at: datetime,
        reply_to: str | None = None,
        quote: str | None = None,
        images: list[tuple[bytes, str]] | None = None,
    ) -> dict[str, Any]:
        value: dict[str, Any] = {"$type": POST, "text": text, "createdAt": at_time(created_at), "langs": ["en"]}
        if reply_to:
            parent = self.record(reply_to)
            if parent is None:
                raise ValueError(f"no record {reply_to}")
            root = (parent["value"].get("reply") or {}).get("root") or self.strong_ref(reply_to)
            value["reply"] = {"root": root, "parent": self.strong_ref(reply_to)}
        image_embed = None
        if images:
            image_embed = {"$type": "app.bsky.embed.images", "images": [self._image(d, alt) for d, alt in images]}
        if quote and image_embed:
            value["embed"] = {
                "$type": "app.bsky.embed.recordWithMedia",
                "record": {"$type": "app.bsky.embed.record", "record": self.strong_ref(quote)},
                "media": image_embed,
            }
        elif quote:
            value["embed"] = {"$type": "app.bsky.embed.record", "record": self.strong_ref(quote)}
        elif image_embed:
            value["embed"] = image_embed
        rkey = self.tid(created_at)
        return self._put(did, rkey, value)

    def _image(self, data: bytes, alt: str) -> dict[str, Any]:
        cid = make_cid(data)
        self.blobs[cid] = (data, "image/png")
        blob = {"$type": "blob", "ref": {"$link": cid}, "mimeType": "image/png", "size": len(data)}
        return {"image": blob, "alt": alt, "aspectRatio": {"width": 8, "height": 8}}

    def _put(self, did: str, rkey: str, value: dict[str, Any]) -> dict[str, Any]:
        uri = f"at://{did}/{POST}/{rkey}"
        record = {"uri": uri, "cid": make_cid(value), "value": value}
        self.repos[did][rkey] = record
        self.indexed_at[uri] = value["createdAt"]
        return record

    def replace_post(self, uri: str, text: str) -> dict[str, Any]:
        """putRecord on the same rkey: new content, new cid."""
        did, _, rkey = uri.removeprefix("at://").split("/")
        value = {**self.repos[did][rkey]["value"], "text": text}
        return self._put(did, rkey, value)

    def delete_post(self, uri: str) -> None:
        did, _, rkey = uri.removeprefix("at://").split("/")
        record = self.repos[did].pop(rkey)
        self.tombstones[uri] = ((record["value"].get("reply") or {}).get("parent") or {}).get("uri")

    def record(self, uri: str) -> dict[str, Any] | None:
        parts = uri.removeprefix("at://").split("/")
        if len(parts) != 3 or parts[1] != POST:
            return None
        return self.repos.get(parts[0], {}).get(parts[2])

    # -- chat ----------------------------------------------------------------------------------------------
    def add_convo(self, members: list[str]) -> Convo:
        convo = Convo(self.tid(datetime.now(UTC)), members)
        self.convos[convo.id] = convo
        return convo

    def add_message(self, convo: Convo, sender: str, text: str, *, at: datetime) -> dict[str, Any]:
        message = {
            "$type": "chat.bsky.convo.defs#messageView",
            "id": self.tid(at),
            "rev": self.tid(datetime.now(UTC)),
            "text": text,
            "sender": {"did": sender},
            "sentAt": at_time(at),
        }
        convo.messages.append(message)
        convo.rev = message["rev"]
        return message

    def delete_message(self, convo: Convo, message_id: str) -> None:
        """The archived account's deleteMessageForSelf (chat's only deletion): its view of the conversation, the
        one this server gives, shows a deletedMessageView from then on; the other members' would not."""
        for index, message in enumerate(convo.messages):
            if message["id"] == message_id:
                convo.rev = self.tid(datetime.now(UTC))
                convo.messages[index] = {
                    "$type": "chat.bsky.convo.defs#deletedMessageView",
                    "id": message["id"],
                    "rev": convo.rev,
                    "sender": message["sender"],
                    "sentAt": message["sentAt"],
                }


def _error(status: int, name: str, message: str) -> tuple[int, Any]:
    return status, {"error": name, "message": message}


class SampleBlueskyServer(LoopbackServer):
    name = "sample-bluesky"

    def __init__(
        self,
        state: BlueskyState,
        *,
        chat: bool = True,
        quotes: bool = True,
        rate_limit: int = 10_000,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        super().__init__(host, port)
        self.state = state
        self.chat_enabled = chat
        self.quotes_enabled = quotes
        self.rate_limit = rate_limit
        self.page_max = 100  # the lexicons' largest `limit`; a test lowers it to page through a few entries
        self.hidden: set[str] = set()  # post URIs the AppView leaves out of getQuotes pages
        self.sessions: dict[str, str] = {}  # access JWT -> did
        self.expired: set[str] = set()
        self.issued: list[str] = []  # every JWT handed out: tests prove none reaches the archive
        self.auth_seen: list[tuple[str, bool]] = []  # (path, carried an Authorization header)
        self._window = (time.time(), 0)

    def expire_sessions(self) -> None:
        """Every access JWT issued so far now answers ExpiredToken."""
        with self.lock:
            self.expired |= set(self.sessions)

    # -- plumbing ------------------------------------------------------------------------------------------
    def _rate(self) -> tuple[bool, dict[str, str]]:
        now = time.time()
        start, count = self._window
        if now - start >= RATE_WINDOW:
            start, count = now, 0
        count += 1
        self._window = (start, count)
        headers = {
            "RateLimit-Limit": str(self.rate_limit),
            "RateLimit-Remaining": str(max(self.rate_limit - count, 0)),
            "RateLimit-Reset": str(int(start + RATE_WINDOW)),
            "RateLimit-Policy": f"{self.rate_limit};w={RATE_WINDOW}",
        }
        return count > self.rate_limit, headers

    def respond(self, request: Request) -> Reply:
        with self.lock:
            self.auth_seen.append((request.path, "authorization" in request.headers))
            if request.path.startswith("/did:"):
                return self._did_document(request.path[1:])
            if not request.path.startswith("/xrpc/"):
                return Reply.json(404, {"error": "NotFound", "message": "Not Found"})
            limited, rate = self._rate()
            if limited:
                return Reply.json(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, rate)
            nsid = request.path.removeprefix("/xrpc/")
            if nsid == "com.atproto.sync.getBlob":
                blob = self.state.blobs.get(request.query.get("cid", ""))
                if blob is None:
                    return Reply.json(400, {"error": "BlobNotFound", "message": "Blob not found"}, rate)
                return Reply(200, blob[0], rate, content_type=blob[1])
            status, value = self._route(nsid, request)
            return Reply.json(status, value, rate)

    def _did_document(self, did: str) -> Reply:
        account = self.state.accounts.get(did)
        if account is None:
            return Reply.json(404, {"message": f"DID not registered: {did}"})
        return Reply.json(
            200,
            {
                "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
                "id": did,
                "alsoKnownAs": [f"at://{account.handle}"],
                "verificationMethod": [
                    {
                        "id": f"{did}#atproto",
                        "type": "Multikey",
                        "controller": did,
                        "publicKeyMultibase": "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF",
                    }
                ],
                "service": [
                    {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": self.base_url}
                ],
            },
        )

    def _session_did(self, request: Request) -> tuple[str | None, tuple[int, Any] | None]:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ")
        if not header.startswith("Bearer ") or token not in self.sessions:
            return None, _error(401, "AuthenticationRequired", "Authentication Required")
        if token in self.expired:
            return None, _error(400, "ExpiredToken", "Token has expired")
        return self.sessions[token], None

    # -- views ---------------------------------------------------------------------------------------------
    def _profile_basic(self, did: str) -> dict[str, Any]:
        account = self.state.accounts[did]
        return {"did": did, "handle": account.handle, "displayName": account.display_name, "labels": []}

    def _embed_view(self, did: str, embed: Any) -> dict[str, Any] | None:
        if not isinstance(embed, dict):
            return None
        if embed.get("$type") == "app.bsky.embed.images":
            images = []
            for image in embed["images"]:
                cid = image["image"]["ref"]["$link"]
                images.append(
                    {
                        "thumb": f"{self.base_url}/img/feed_thumbnail/plain/{did}/{cid}@jpeg",
                        "fullsize": f"{self.base_url}/img/feed_fullsize/plain/{did}/{cid}@jpeg",
                        "alt": image.get("alt", ""),
                        "aspectRatio": image.get("aspectRatio"),
                    }
                )
            return {"$type": "app.bsky.embed.images#view", "images": images}
        if embed.get("$type") == "app.bsky.embed.record":
            quoted = self.state.record(embed["record"]["uri"])
            if quoted is None:
                return {
                    "$type": "app.bsky.embed.record#view",
                    "record": {
                        "$type": "app.bsky.embed.record#viewNotFound",
                        "uri": embed["record"]["uri"],
                        "notFound": True,
                    },
                }
            qdid = quoted["uri"].removeprefix("at://").split("/")[0]
            return {
                "$type": "app.bsky.embed.record#view",
                "record": {
                    "$type": "app.bsky.embed.record#viewRecord",
                    "uri": quoted["uri"],
                    "cid": quoted["cid"],
                    "author": self._profile_basic(qdid),
                    "value": quoted["value"],
                    "indexedAt": self.state.indexed_at[quoted["uri"]],
                },
            }
        return None

    def _replies_of(self, uri: str) -> list[dict[str, Any]]:
        return sorted(
            (
                r
                for repo in self.state.repos.values()
                for r in repo.values()
                if ((r["value"].get("reply") or {}).get("parent") or {}).get("uri") == uri
            ),
            key=lambda r: r["value"]["createdAt"],
        )

    def _post_view(self, record: dict[str, Any]) -> dict[str, Any]:
        did = record["uri"].removeprefix("at://").split("/")[0]
        view: dict[str, Any] = {
            "uri": record["uri"],
            "cid": record["cid"],
            "author": self._profile_basic(did),
            "record": record["value"],
        }
        embed = self._embed_view(did, record["value"].get("embed"))
        if embed:
            view["embed"] = embed
        view.update(
            {
                "replyCount": len(self._replies_of(record["uri"])),
                "repostCount": 0,
                "likeCount": 0,
                "quoteCount": len(self._quotes_of(record["uri"])),
                "indexedAt": self.state.indexed_at[record["uri"]],
                "viewer": {},
                "labels": [],
            }
        )
        return view

    def _quotes_of(self, uri: str) -> list[dict[str, Any]]:
        out = []
        for repo in self.state.repos.values():
            for record in repo.values():
                embed = record["value"].get("embed") or {}
                target = (embed.get("record") or {}).get("uri") or (
                    (embed.get("record") or {}).get("record") or {}
                ).get("uri")
                if target == uri:
                    out.append(record)
        return sorted(out, key=lambda r: r["value"]["createdAt"], reverse=True)

    def _thread_view(self, uri: str, depth: int, height: int, with_parent: bool = True) -> dict[str, Any]:
        record = self.state.record(uri)
        if record is None:
            return {"$type": "app.bsky.feed.defs#notFoundPost", "uri": uri, "notFound": True}
        node: dict[str, Any] = {"$type": "app.bsky.feed.defs#threadViewPost", "post": self._post_view(record)}
        parent_uri = ((record["value"].get("reply") or {}).get("parent") or {}).get("uri")
        if with_parent and parent_uri and height > 0:
            node["parent"] = self._thread_view(parent_uri, 0, height - 1)
        if depth > 0:
            replies = [self._thread_view(r["uri"], depth - 1, 0, with_parent=False) for r in self._replies_of(uri)]
            # A deleted reply that still has live replies stays in the tree as a placeholder.
            for gone, parent in self.state.tombstones.items():
                if parent == uri and self._replies_of(gone):
                    replies.append({"$type": "app.bsky.feed.defs#notFoundPost", "uri": gone, "notFound": True})
            node["replies"] = replies
        return node

    # -- routes --------------------------------------------------------------------------------------------
    def _route(self, nsid: str, request: Request) -> tuple[int, Any]:
        state, query = self.state, request.query
        if nsid == "com.atproto.identity.resolveHandle":
            account = state.by_handle(query.get("handle", ""))
            return (200, {"did": account.did}) if account else _error(400, "InvalidRequest", "Unable to resolve handle")
        if nsid == "com.atproto.server.createSession" and request.method == "POST":
            try:
                body = json.loads(request.body)
            except ValueError:
                return _error(400, "InvalidRequest", "Request body is not JSON")
            ident = str(body.get("identifier", ""))
            account = state.accounts.get(ident) or state.by_handle(ident)
            if account is None or not account.app_password or body.get("password") != account.app_password:
                return _error(401, "AuthenticationRequired", "Invalid identifier or password")
            access, refresh = (
                f"eyJ0eXAiOiJhdCtqd3QifQ.{secrets.token_urlsafe(24)}",
                f"eyJyZWYifQ.{secrets.token_urlsafe(24)}",
            )
            self.sessions[access] = account.did
            self.issued += [access, refresh]
            return 200, {
                "did": account.did,
                "handle": account.handle,
                "email": f"{account.handle.split('.')[0]}@example.org",
                "emailConfirmed": True,
                "accessJwt": access,
                "refreshJwt": refresh,
                "active": True,
            }
        if nsid == "com.atproto.repo.listRecords":
            did = query.get("repo", "")
            if did not in state.repos:
                did = getattr(state.by_handle(did), "did", "")
            if not did:
                return _error(400, "InvalidRequest", f"Could not find repo: {query.get('repo')}")
            if query.get("collection") != POST:
                return 200, {"records": []}
            try:
                limit = max(1, min(int(query.get("limit", 50)), self.page_max))
            except ValueError:
                return _error(400, "InvalidRequest", "limit must be an integer")
            reverse = query.get("reverse") == "true"
            rkeys = sorted(state.repos[did], reverse=not reverse)
            cursor = query.get("cursor")
            if cursor:
                rkeys = [r for r in rkeys if (r > cursor if reverse else r < cursor)]
            page = [state.repos[did][r] for r in rkeys[:limit]]
            body: dict[str, Any] = {"records": page}
            if page:
                body["cursor"] = page[-1]["uri"].rsplit("/", 1)[1]
            return 200, body
        if nsid == "com.atproto.repo.getRecord":
            did = query.get("repo", "")
            collection, rkey = query.get("collection", ""), query.get("rkey", "")
            if collection == "app.bsky.actor.profile" and rkey == "self" and did in state.profiles:
                return 200, {
                    "uri": f"at://{did}/app.bsky.actor.profile/self",
                    "cid": make_cid(state.profiles[did]),
                    "value": state.profiles[did],
                }
            record = state.record(f"at://{did}/{collection}/{rkey}")
            if record is None:
                return _error(400, "RecordNotFound", f"Could not locate record: at://{did}/{collection}/{rkey}")
            return 200, record
        if nsid == "app.bsky.feed.getPostThread":
            uri = query.get("uri", "")
            if state.record(uri) is None:
                return _error(400, "NotFound", f"Post not found: {uri}")
            depth = min(int(query.get("depth", 6)), 1000)
            height = min(int(query.get("parentHeight", 80)), 1000)
            return 200, {"thread": self._thread_view(uri, depth, height)}
        if nsid == "app.bsky.feed.getQuotes":
            if not self.quotes_enabled:
                return _error(501, "MethodNotImplemented", "Method Not Implemented")
            uri = query.get("uri", "")
            quotes = self._quotes_of(uri)
            limit = max(1, min(int(query.get("limit", 50)), self.page_max))
            start = int(query.get("cursor") or 0)
            page = [r for r in quotes[start : start + limit] if r["uri"] not in self.hidden]
            body = {"uri": uri, "posts": [self._post_view(r) for r in page]}
            if start + limit < len(quotes):
                body["cursor"] = str(start + limit)
            return 200, body
        if nsid.startswith("chat.bsky.convo."):
            return self._chat(nsid, request)
        return _error(501, "MethodNotImplemented", "Method Not Implemented")

    def _chat(self, nsid: str, request: Request) -> tuple[int, Any]:
        did, problem = self._session_did(request)
        if problem:
            return problem
        if not self.chat_enabled or not request.headers.get("atproto-proxy"):
            return _error(501, "MethodNotImplemented", "Method Not Implemented")
        state, query = self.state, request.query
        limit = max(1, min(int(query.get("limit", 50)), self.page_max))
        if nsid == "chat.bsky.convo.listConvos":
            convos = sorted((c for c in state.convos.values() if did in c.members), key=lambda c: c.rev, reverse=True)
            start = int(query.get("cursor") or 0)
            page = convos[start : start + limit]
            body: dict[str, Any] = {
                "convos": [
                    {
                        "id": c.id,
                        "rev": c.rev,
                        "members": [self._profile_basic(m) for m in c.members],
                        **({"lastMessage": c.messages[-1]} if c.messages else {}),
                        "muted": False,
                        "status": "accepted",
                        "unreadCount": 0,
                    }
                    for c in page
                ]
            }
            if start + limit < len(convos):
                body["cursor"] = str(start + limit)
            return 200, body
        if nsid == "chat.bsky.convo.getMessages":
            convo = state.convos.get(query.get("convoId", ""))
            if convo is None or did not in convo.members:
                return _error(400, "InvalidRequest", "Convo not found")
            messages = sorted(convo.messages, key=lambda m: m["id"], reverse=True)
            cursor = query.get("cursor")
            if cursor:
                messages = [m for m in messages if m["id"] < cursor]
            page = messages[:limit]
            body = {"messages": page}
            if len(messages) > limit:
                body["cursor"] = page[-1]["id"]
            return 200, body
        return _error(501, "MethodNotImplemented", "Method Not Implemented")
