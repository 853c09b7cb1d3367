"""A Mastodon-compatible API on loopback, in-process: the demo's sample platform and the tests' stand-in.

It serves the documented entities (Account, Status, MediaAttachment, StatusEdit, Context, Conversation)
with Mastodon's paging (Link header, max_id / since_id / min_id), bearer-token auth, X-RateLimit-* headers
and 429s, and lets a test inject faults (errors, throttling, dropped connections, malformed bodies).
Standard library only; one lock guards the state so tests can change it while it serves.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from .loopback import LoopbackServer, Reply, Request

MEDIA_PREFIX = "/system/media_attachments/files/"
RATE_WINDOW = timedelta(minutes=5)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _html(text: str) -> str:
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join(f"<p>{para.replace(chr(10), '<br />')}</p>" for para in escaped.split("\n\n"))


class MastodonState:
    """The platform's data. Every method takes the lock: tests mutate it while the server answers."""

    def __init__(self, host: str = "riverside.example") -> None:
        self.lock = threading.RLock()
        self.host = host
        self.accounts: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self.conversations: dict[str, dict[str, Any]] = {}  # id -> {"id", "participants", "status_ids", ...}
        self.media: dict[str, bytes] = {}
        self.deleted: set[str] = set()
        self.discarded: dict[str, dict[str, Any]] = {}  # removed by a moderator: restore_status can undo it
        self.replies: dict[str, list[str]] = {}  # parent id -> reply ids: contexts without scanning everything
        self.owner_id: str | None = None  # the token's account
        self._seq = 0
        self.base_url = "http://127.0.0.1"  # set by the server; used in URLs of entities

    # -- ids -----------------------------------------------------------------------------------------------
    def _id(self, at: datetime) -> str:
        self._seq = (self._seq + 1) % 65536
        return str(int(at.timestamp() * 1000) << 16 | self._seq)

    # -- accounts ------------------------------------------------------------------------------------------
    def add_account(self, username: str, display_name: str, note: str = "", created_at: datetime | None = None) -> dict:
        with self.lock:
            created = created_at or datetime(2020, 1, 1, tzinfo=UTC)
            account_id = str(len(self.accounts) + 100000)
            account = {
                "id": account_id,
                "username": username,
                "acct": username,
                "display_name": display_name,
                "locked": False,
                "bot": False,
                "discoverable": True,
                "group": False,
                "created_at": _iso(created),
                "note": _html(note) if note else "",
                "url": f"https://{self.host}/@{username}",
                "uri": f"https://{self.host}/users/{username}",
                "avatar": f"https://{self.host}/avatars/original/missing.png",
                "avatar_static": f"https://{self.host}/avatars/original/missing.png",
                "header": f"https://{self.host}/headers/original/missing.png",
                "header_static": f"https://{self.host}/headers/original/missing.png",
                "followers_count": 0,
                "following_count": 0,
                "statuses_count": 0,
                "last_status_at": None,
                "emojis": [],
                "fields": [],
            }
            self.accounts[account_id] = account
            if self.owner_id is None:
                self.owner_id = account_id
            return account

    # -- statuses ------------------------------------------------------------------------------------------
    def _media_entities(self, status_id: str, media: list[tuple[bytes, str]]) -> list[dict]:
        entities = []
        for index, (data, description) in enumerate(media):
            media_id = f"{status_id}{index:02d}"
            path = f"{MEDIA_PREFIX}{media_id}/original/image.png"
            self.media[path] = data
            entities.append(
                {
                    "id": media_id,
                    "type": "image",
                    "url": f"{self.base_url}{path}",
                    "preview_url": f"{self.base_url}{path}",
                    "remote_url": None,
                    "preview_remote_url": None,
                    "text_url": None,
                    "meta": {"original": {"width": 64, "height": 48, "size": "64x48", "aspect": 1.3333}},
                    "description": description,
                    "blurhash": "UFC?7q~q00IU00xu%Mof~qM{IUof%Mof%MWB",
                }
            )
        return entities

    def add_status(
        self,
        account_id: str,
        text: str,
        *,
        in_reply_to_id: str | None = None,
        visibility: str = "public",
        created_at: datetime | None = None,
        media: list[tuple[bytes, str]] | None = None,
        spoiler_text: str = "",
    ) -> dict:
        with self.lock:
            created = created_at or datetime.now(UTC)
            status_id = self._id(created)
            account = self.accounts[account_id]
            parent = self.statuses.get(in_reply_to_id) if in_reply_to_id else None
            mentions = []
            if parent and parent["account"]["id"] != account_id:
                who = parent["account"]
                mentions.append({"id": who["id"], "username": who["username"], "url": who["url"], "acct": who["acct"]})
            status = {
                "id": status_id,
                "uri": f"https://{self.host}/users/{account['username']}/statuses/{status_id}",
                "url": f"https://{self.host}/@{account['username']}/{status_id}",
                "created_at": _iso(created),
                "edited_at": None,
                "account": account,
                "content": _html(text),
                "visibility": visibility,
                "sensitive": bool(spoiler_text),
                "spoiler_text": spoiler_text,
                "media_attachments": self._media_entities(status_id, media or []),
                "application": None,
                "mentions": mentions,
                "tags": [],
                "emojis": [],
                "reblogs_count": 0,
                "favourites_count": 0,
                "replies_count": 0,
                "in_reply_to_id": in_reply_to_id,
                "in_reply_to_account_id": parent["account"]["id"] if parent else None,
                "reblog": None,
                "poll": None,
                "card": None,
                "language": "en",
                "text": None,
            }
            self.statuses[status_id] = status
            if in_reply_to_id:
                self.replies.setdefault(in_reply_to_id, []).append(status_id)
            account["statuses_count"] += 1
            account["last_status_at"] = created.date().isoformat()
            if parent:
                parent["replies_count"] += 1
            if visibility == "direct":
                self._file_direct(status, parent)
            return status

    def _file_direct(self, status: dict, parent: dict | None) -> None:
        """Keep the Conversation of a direct status: the parent's, or a new one."""
        conversation = None
        if parent is not None:
            conversation = next((c for c in self.conversations.values() if parent["id"] in c["status_ids"]), None)
        if conversation is None:
            conversation_id = str(len(self.conversations) + 1)
            conversation = {"id": conversation_id, "status_ids": [], "participants": set(), "unread": True}
            self.conversations[conversation_id] = conversation
        conversation["status_ids"].append(status["id"])
        conversation["participants"].add(status["account"]["id"])
        for mention in status["mentions"]:
            conversation["participants"].add(mention["id"])
        if self.owner_id:
            conversation["participants"].add(self.owner_id)

    def edit_status(self, status_id: str, new_text: str, *, at: datetime | None = None) -> dict:
        with self.lock:
            status = self.statuses[status_id]
            when = at or datetime.now(UTC)
            history = self.histories.setdefault(status_id, [])
            if not history:
                history.append(self._edit_entry(status, status["created_at"]))
            status["content"] = _html(new_text)
            status["edited_at"] = _iso(when)
            history.append(self._edit_entry(status, status["edited_at"]))
            return status

    @staticmethod
    def _edit_entry(status: dict, created_at: str) -> dict:
        return {
            "content": status["content"],
            "spoiler_text": status["spoiler_text"],
            "sensitive": status["sensitive"],
            "created_at": created_at,
            "account": status["account"],
            "poll": None,
            "media_attachments": [dict(m) for m in status["media_attachments"]],
            "emojis": [],
        }

    def delete_status(self, status_id: str, *, by_moderator: bool = False) -> None:
        """Gone like on Mastodon: lookups 404, out of listings and contexts; its replies stay, orphaned. Its
        author's deletion destroys it, which nulls its replies' `in_reply_to_id` (Mastodon's schema: the foreign
        key is `on_delete: :nullify`; `in_reply_to_account_id` stays). A moderator's removal only discards it,
        links kept, and an approved appeal undoes that (`restore_status`)."""
        with self.lock:
            status = self.statuses.pop(status_id)
            self.deleted.add(status_id)
            status["account"]["statuses_count"] -= 1
            for conversation in self.conversations.values():
                if status_id in conversation["status_ids"]:
                    conversation["status_ids"].remove(status_id)
            if by_moderator:
                self.discarded[status_id] = status
                return
            for reply_id in self.replies.get(status_id, []):
                if reply_id in self.statuses:
                    self.statuses[reply_id]["in_reply_to_id"] = None

    def restore_status(self, status_id: str) -> dict:
        """A moderator's removal undone (an appeal approved: Mastodon undiscards the strike's statuses): the
        status answers again with its id, content and replies."""
        with self.lock:
            status = self.discarded.pop(status_id)
            self.deleted.discard(status_id)
            self.statuses[status_id] = status
            status["account"]["statuses_count"] += 1
            if status["visibility"] == "direct":
                self._file_direct(status, self.statuses.get(status["in_reply_to_id"] or ""))
            return status

    # -- queries (under the lock) --------------------------------------------------------------------------
    def children(self, status_id: str) -> list[dict]:
        ids = self.replies.get(status_id, [])
        return sorted((self.statuses[i] for i in ids if i in self.statuses), key=lambda s: int(s["id"]))

    def context(self, status_id: str) -> dict:
        status = self.statuses[status_id]
        ancestors = []
        parent_id = status["in_reply_to_id"]
        while parent_id and parent_id in self.statuses:
            parent = self.statuses[parent_id]
            ancestors.insert(0, parent)
            parent_id = parent["in_reply_to_id"]
        descendants: list[dict] = []

        def walk(node_id: str) -> None:
            for child in self.children(node_id):
                descendants.append(child)
                walk(child["id"])

        walk(status_id)
        return {"ancestors": ancestors, "descendants": descendants}

    def conversation_entities(self) -> list[tuple[int, dict]]:
        """(pagination id, Conversation) newest activity first."""
        out = []
        for conversation in self.conversations.values():
            if not conversation["status_ids"]:
                continue
            last_id = max(conversation["status_ids"], key=int)
            others = [self.accounts[a] for a in sorted(conversation["participants"]) if a != self.owner_id]
            entity = {
                "id": conversation["id"],
                "unread": conversation["unread"],
                "accounts": others,
                "last_status": self.statuses[last_id],
            }
            out.append((int(last_id), entity))
        return sorted(out, key=lambda pair: pair[0], reverse=True)


def _page(
    items: list[tuple[int, Any]], query: dict[str, str], default: int = 20, cap: int = 40
) -> list[tuple[int, Any]]:
    """Mastodon's id paging over (id, entity) sorted newest first."""
    try:
        limit = max(1, min(int(query.get("limit", default)), cap))
    except ValueError:
        limit = default
    max_id = int(query["max_id"]) if query.get("max_id", "").isdigit() else None
    since_id = int(query["since_id"]) if query.get("since_id", "").isdigit() else None
    min_id = int(query["min_id"]) if query.get("min_id", "").isdigit() else None
    selected = [(i, e) for i, e in items if (max_id is None or i < max_id) and (since_id is None or i > since_id)]
    if min_id is not None:
        newer = [(i, e) for i, e in selected if i > min_id]
        return sorted(newer, key=lambda pair: pair[0])[:limit][::-1]
    return selected[:limit]


class SampleMastodonServer(LoopbackServer):
    """Serves a MastodonState on 127.0.0.1 from a daemon thread. Use as a context manager or start()/stop()."""

    name = "sample-mastodon"

    def __init__(self, state: MastodonState, token: str, host: str = "127.0.0.1", port: int = 0, rate_limit: int = 300):
        super().__init__(host, port)
        self.state = state
        self._token = token
        self.rate_limit = rate_limit
        self._window_start = datetime.now(UTC)
        self._window_count = 0
        with state.lock:
            old = state.base_url
            state.base_url = self.base_url
            # Media URLs made before the port was known, in statuses and their edit histories.
            entries = [*state.statuses.values(), *(e for h in state.histories.values() for e in h)]
            for entry in entries:
                for media in entry["media_attachments"]:
                    for key in ("url", "preview_url"):
                        media[key] = media[key].replace(old, self.base_url)

    # -- rate limit ----------------------------------------------------------------------------------------
    def _rate_headers(self) -> tuple[bool, dict[str, str]]:
        now = datetime.now(UTC)
        with self.state.lock:
            if now - self._window_start >= RATE_WINDOW:
                self._window_start, self._window_count = now, 0
            self._window_count += 1
            remaining = self.rate_limit - self._window_count
            reset = self._window_start + RATE_WINDOW
        headers = {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(remaining, 0)),
            "X-RateLimit-Reset": _iso(reset),
        }
        return remaining < 0, headers

    # -- routing -------------------------------------------------------------------------------------------
    def respond(self, request: Request) -> Reply:
        if request.path.startswith(MEDIA_PREFIX):
            with self.state.lock:
                data = self.state.media.get(request.path)
            if data is None:
                return Reply.json(404, {"error": "Not found"})
            return Reply(200, data, content_type="image/png")
        if not request.path.startswith("/api/"):
            return Reply.json(404, {"error": "Not found"})
        if request.headers.get("authorization") != f"Bearer {self._token}":
            return Reply.json(401, {"error": "The access token is invalid"})
        limited, rate = self._rate_headers()
        if limited:
            return Reply.json(429, {"error": "Too many requests"}, rate)
        with self.state.lock:
            status, value, extra = self._route(request.path, request.query)
            body = json.dumps(value).encode("utf-8")
        return Reply(status, body, {**rate, **extra})

    def _link(self, path: str, query: dict[str, str], page: list[tuple[int, Any]]) -> dict[str, str]:
        if not page:
            return {}
        limit = query.get("limit", "20")
        base = f"{self.base_url}{path}"
        next_url = f"{base}?{urlencode({'limit': limit, 'max_id': page[-1][0]})}"
        prev_url = f"{base}?{urlencode({'limit': limit, 'min_id': page[0][0]})}"
        return {"Link": f'<{next_url}>; rel="next", <{prev_url}>; rel="prev"'}

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        state = self.state
        not_found = (404, {"error": "Record not found"}, {})
        if path == "/api/v1/accounts/verify_credentials":
            return 200, state.accounts[state.owner_id or ""], {}
        if path == "/api/v1/accounts/lookup":
            acct = query.get("acct", "").lstrip("@").split("@")[0]
            found = next((a for a in state.accounts.values() if a["username"] == acct), None)
            return (200, found, {}) if found else not_found
        if m := re.fullmatch(r"/api/v1/accounts/(\d+)", path):
            return (200, state.accounts[m[1]], {}) if m[1] in state.accounts else not_found
        if m := re.fullmatch(r"/api/v1/accounts/(\d+)/statuses", path):
            if m[1] not in state.accounts:
                return not_found
            own = m[1] == state.owner_id
            items = sorted(
                (
                    (int(s["id"]), s)
                    for s in state.statuses.values()
                    if s["account"]["id"] == m[1]
                    and (s["visibility"] in ("public", "unlisted") or own)
                    and not (query.get("exclude_replies") == "true" and s["in_reply_to_id"])
                ),
                key=lambda pair: pair[0],
                reverse=True,
            )
            page = _page(items, query)
            return 200, [s for _, s in page], self._link(path, query, page)
        if m := re.fullmatch(r"/api/v1/statuses/(\d+)(/context|/history)?", path):
            status = state.statuses.get(m[1])
            if status is None:
                return not_found
            if m[2] == "/context":
                return 200, state.context(m[1]), {}
            if m[2] == "/history":
                return 200, state.histories.get(m[1]) or [MastodonState._edit_entry(status, status["created_at"])], {}
            return 200, status, {}
        if path == "/api/v1/conversations":
            page = _page(state.conversation_entities(), query)
            return 200, [c for _, c in page], self._link(path, query, page)
        return 404, {"error": "Not found"}, {}
