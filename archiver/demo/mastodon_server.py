"""A Mastodon-compatible API on loopback, in-process: the demo's sample platform and the tests' stand-in.

It serves the documented entities (Account, Status, MediaAttachment, StatusEdit, StatusSource, Context,
Conversation) with Mastodon's paging (Link header, max_id / since_id / min_id), bearer-token auth,
X-RateLimit-* headers and 429s, and lets a test inject faults (errors, throttling, dropped connections,
malformed bodies). Standard library only; one lock guards the state so tests can change it while it serves.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

MEDIA_PREFIX = "/system/media_attachments/files/"
RATE_WINDOW = timedelta(minutes=5)
DEFAULT_LIMIT = 20
MAX_LIMIT = 40
VISIBILITIES = ("public", "unlisted", "private", "direct")
# Listing filters Mastodon carries over into the Link header's URLs.
LISTING_FILTERS = ("exclude_replies", "exclude_reblogs", "only_media")
# @mentions and #hashtags as Mastodon's plain-text formatter links them (simplified: local accounts only).
_TOKEN_RE = re.compile(r"(?<![\w/@#])(?:@(\w+)|#([A-Za-z_]\w*))")
_BLURHASH = "UFC?7q~q00IU00xu%Mof~qM{IUof%Mof%MWB"
_ERRORS = {401: "The access token is invalid", 404: "Record not found", 429: "Too many requests"}


def _iso(ts: datetime) -> str:
    """Mastodon's timestamps: UTC, milliseconds, `Z`."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _escape(text: str) -> str:
    for raw, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#39;")):
        text = text.replace(raw, entity)
    return text


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    return None


class MastodonState:
    """The platform's data. Every method takes the lock: tests mutate it while the server answers.

    The first account added is the token's owner (the clinic). Entities are kept in their served shape;
    nested accounts are shared dicts, so counters stay current everywhere they appear.
    """

    def __init__(self, host: str = "riverside.example") -> None:
        self.lock = threading.RLock()
        self.host = host
        self.accounts: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        self.histories: dict[str, list[dict[str, Any]]] = {}  # status id -> StatusEdit[], oldest first
        self.sources: dict[str, dict[str, str]] = {}  # status id -> StatusSource (the plain text)
        # id -> {"id", "status_ids", "participants", "unread"}; the served entity is built from it.
        self.conversations: dict[str, dict[str, Any]] = {}
        self.media: dict[str, bytes] = {}  # URL path -> bytes
        self.deleted: set[str] = set()
        self.replies: dict[str, list[str]] = {}  # parent id -> reply ids: contexts without a full scan
        self.owner_id: str | None = None  # the token's account
        self.base_url = "http://127.0.0.1"  # set by the server: media URLs point at it
        self._usernames: dict[str, str] = {}
        self._notes: dict[str, str] = {}
        self._conversation_of: dict[str, str] = {}  # direct status id -> conversation id
        self._seq = 0

    # -- ids -----------------------------------------------------------------------------------------------
    def _id(self, at: datetime) -> str:
        """Snowflake-like: milliseconds << 16 | sequence, so int(id) order is chronological."""
        self._seq = (self._seq + 1) % 65536
        return str(int(at.timestamp() * 1000) << 16 | self._seq)

    # -- accounts ------------------------------------------------------------------------------------------
    def add_account(
        self,
        username: str,
        display_name: str,
        note: str = "",
        created_at: datetime | None = None,
        *,
        bot: bool = False,
        followers_count: int = 0,
        fields: Sequence[tuple[str, str]] = (),
    ) -> dict:
        """A local Account; the first one added owns the token."""
        with self.lock:
            if username in self._usernames:
                raise ValueError(f"username {username!r} is taken")
            created = created_at or datetime(2020, 1, 1, tzinfo=UTC)
            account_id = str(len(self.accounts) + 100000)
            missing = f"https://{self.host}/avatars/original/missing.png"
            account = {
                "id": account_id,
                "username": username,
                "acct": username,
                "display_name": display_name,
                "locked": False,
                "bot": bot,
                "discoverable": True,
                "group": False,
                "created_at": _iso(created.replace(hour=0, minute=0, second=0, microsecond=0)),
                "note": self._render(note)[0] if note else "",
                "url": f"https://{self.host}/@{username}",
                "uri": f"https://{self.host}/users/{username}",
                "avatar": missing,
                "avatar_static": missing,
                "header": f"https://{self.host}/headers/original/missing.png",
                "header_static": f"https://{self.host}/headers/original/missing.png",
                "followers_count": followers_count,
                "following_count": 0,
                "statuses_count": 0,
                "last_status_at": None,
                "emojis": [],
                "fields": [{"name": n, "value": _escape(v), "verified_at": None} for n, v in fields],
            }
            self.accounts[account_id] = account
            self._usernames[username] = account_id
            self._notes[account_id] = note
            if self.owner_id is None:
                self.owner_id = account_id
            return account

    def account_by_username(self, username: str) -> dict | None:
        with self.lock:
            account_id = self._usernames.get(username.lstrip("@").split("@")[0])
            return self.accounts[account_id] if account_id else None

    def credential_account(self) -> dict:
        """verify_credentials' CredentialAccount: the owner's Account plus its `source`."""
        with self.lock:
            owner = self.accounts[self.owner_id or ""]
            source = {
                "privacy": "public",
                "sensitive": False,
                "language": "en",
                "note": self._notes[owner["id"]],
                "fields": [
                    {"name": f["name"], "value": f["value"], "verified_at": None} for f in owner["fields"]
                ],
                "follow_requests_count": 0,
            }
            return {**owner, "source": source}

    # -- text ----------------------------------------------------------------------------------------------
    def _render(self, text: str) -> tuple[str, list[dict], list[dict]]:
        """Plain text as Mastodon renders it (<p>, <br />, linked @mentions, #hashtags); mentions; tags."""
        mentions: dict[str, dict] = {}
        tags: dict[str, dict] = {}

        def line_html(line: str) -> str:
            out, pos = [], 0
            for match in _TOKEN_RE.finditer(line):
                out.append(_escape(line[pos : match.start()]))
                pos = match.end()
                username, tag = match[1], match[2]
                account_id = self._usernames.get(username) if username else None
                if account_id:
                    account = self.accounts[account_id]
                    mentions[account_id] = self._mention(account)
                    name = _escape(username)
                    link = f'<a href="{account["url"]}" class="u-url mention">@<span>{name}</span></a>'
                    out.append(f'<span class="h-card" translate="no">{link}</span>')
                elif tag:
                    url = f"https://{self.host}/tags/{tag.lower()}"
                    tags.setdefault(tag.lower(), {"name": tag.lower(), "url": url})
                    out.append(
                        f'<a href="{url}" class="mention hashtag" rel="tag">#<span>{_escape(tag)}</span></a>'
                    )
                else:
                    out.append(_escape(match[0]))
            out.append(_escape(line[pos:]))
            return "".join(out)

        paragraphs = [p for p in text.strip().split("\n\n") if p.strip()] or [""]
        html = "".join(
            "<p>" + "<br />".join(line_html(x) for x in p.strip().split("\n")) + "</p>" for p in paragraphs
        )
        return html, list(mentions.values()), list(tags.values())

    @staticmethod
    def _mention(account: dict) -> dict:
        return {
            "id": account["id"],
            "username": account["username"],
            "url": account["url"],
            "acct": account["acct"],
        }

    # -- statuses ------------------------------------------------------------------------------------------
    def _media_entities(self, status_id: str, media: Sequence[tuple[bytes, str]]) -> list[dict]:
        entities = []
        for index, (data, description) in enumerate(media):
            media_id = str(int(status_id) + index + 1)
            # Mastodon shards the id into 3-digit folders and names the file by a digest.
            shards = "/".join(re.findall(r"\d{3}", media_id.zfill(18)))
            name = hashlib.sha256(data).hexdigest()[:16] + ".png"
            original, small = (
                f"{MEDIA_PREFIX}{shards}/original/{name}",
                f"{MEDIA_PREFIX}{shards}/small/{name}",
            )
            self.media[original] = self.media[small] = data
            size = _png_size(data)
            meta: dict[str, Any] = {}
            if size:
                width, height = size
                dims = {
                    "width": width,
                    "height": height,
                    "size": f"{width}x{height}",
                    "aspect": width / height,
                }
                meta = {"original": dims, "small": dict(dims)}
            entities.append(
                {
                    "id": media_id,
                    "type": "image",
                    "url": f"{self.base_url}{original}",
                    "preview_url": f"{self.base_url}{small}",
                    "remote_url": None,
                    "preview_remote_url": None,
                    "text_url": None,
                    "meta": meta,
                    "description": description,
                    "blurhash": _BLURHASH,
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
        media: Sequence[tuple[bytes, str]] | None = None,
        spoiler_text: str = "",
        language: str = "en",
    ) -> dict:
        """Post a status as `account_id`; a direct one joins its parent's conversation (or starts one)."""
        if visibility not in VISIBILITIES:
            raise ValueError(f"visibility must be one of {VISIBILITIES}")
        with self.lock:
            created = created_at or datetime.now(UTC)
            account = self.accounts[account_id]
            parent = None
            if in_reply_to_id is not None:
                parent = self.statuses.get(in_reply_to_id)
                if parent is None:  # Mastodon refuses replies to unknown or deleted statuses
                    raise KeyError(f"no status {in_reply_to_id} to reply to")
            status_id = self._id(created)
            content, mentions, tags = self._render(text)
            if (
                parent
                and parent["account"]["id"] != account_id
                and parent["account"]["id"] not in {m["id"] for m in mentions}
            ):
                mentions.append(self._mention(parent["account"]))  # a reply notifies the parent's author
            status = {
                "id": status_id,
                "uri": f"https://{self.host}/users/{account['username']}/statuses/{status_id}",
                "url": f"https://{self.host}/@{account['username']}/{status_id}",
                "created_at": _iso(created),
                "edited_at": None,
                "account": account,
                "content": content,
                "visibility": visibility,
                "sensitive": bool(spoiler_text),
                "spoiler_text": spoiler_text,
                "media_attachments": self._media_entities(status_id, media or []),
                "application": None,
                "mentions": mentions,
                "tags": tags,
                "emojis": [],
                "reblogs_count": 0,
                "favourites_count": 0,
                "replies_count": 0,
                "in_reply_to_id": in_reply_to_id,
                "in_reply_to_account_id": parent["account"]["id"] if parent else None,
                "reblog": None,
                "poll": None,
                "card": None,
                "language": language,
                "text": None,
                "favourited": False,
                "reblogged": False,
                "muted": False,
                "bookmarked": False,
                "filtered": [],
            }
            self.statuses[status_id] = status
            self.sources[status_id] = {"id": status_id, "text": text, "spoiler_text": spoiler_text}
            if in_reply_to_id:
                self.replies.setdefault(in_reply_to_id, []).append(status_id)
            if visibility != "direct":  # Mastodon's counters leave direct messages out
                account["statuses_count"] += 1
                if parent:
                    parent["replies_count"] += 1
            last = account["last_status_at"]
            if last is None or created.date().isoformat() > last:
                account["last_status_at"] = created.date().isoformat()
            if visibility == "direct":
                self._file_direct(status, parent)
            return status

    def _file_direct(self, status: dict, parent: dict | None) -> None:
        """Keep the Conversation of a direct status: the parent's, or a new one."""
        conversation_id = self._conversation_of.get(parent["id"]) if parent else None
        if conversation_id is None:
            conversation_id = str(len(self.conversations) + 1)
            self.conversations[conversation_id] = {
                "id": conversation_id,
                "status_ids": [],
                "participants": set(),
                "unread": False,
            }
        conversation = self.conversations[conversation_id]
        conversation["status_ids"].append(status["id"])
        conversation["participants"].add(status["account"]["id"])
        conversation["participants"].update(m["id"] for m in status["mentions"])
        if self.owner_id:
            conversation["participants"].add(self.owner_id)
        newest = max(conversation["status_ids"], key=int)
        conversation["unread"] = self.statuses[newest]["account"]["id"] != self.owner_id
        self._conversation_of[status["id"]] = conversation_id

    def add_conversation(self, person_id: str, messages: Sequence[tuple[str, str, datetime]]) -> dict:
        """A direct-message thread between the owner and `person_id`; returns its Conversation entity.

        `messages` are (author account id, text, created_at), oldest first; each answers the one before, and
        a message that does not @mention the other side gets the mention prefixed, as a client would.
        """
        if not messages:
            raise ValueError("a conversation needs at least one message")
        with self.lock:
            previous: dict | None = None
            for author_id, text, at in messages:
                previous = self.add_direct_message(
                    person_id, author_id, text, created_at=at, previous=previous
                )
            assert previous is not None
            return self.conversation_entity(self._conversation_of[previous["id"]])

    def add_direct_message(
        self,
        person_id: str,
        author_id: str,
        text: str,
        *,
        created_at: datetime,
        previous: dict | None = None,
    ) -> dict:
        """One direct message between the owner and `person_id`, answering `previous` (None: a new thread)."""
        with self.lock:
            other = self.accounts[person_id if author_id == self.owner_id else self.owner_id or ""]
            if not re.search(rf"(?<![\w/])@{re.escape(other['username'])}\b", text):
                text = f"@{other['username']} {text}"
            return self.add_status(
                author_id,
                text,
                visibility="direct",
                in_reply_to_id=previous["id"] if previous else None,
                created_at=created_at,
            )

    def reply_in_conversation(
        self, conversation_id: str, author_id: str, text: str, *, created_at: datetime
    ) -> dict:
        """A new message answering the newest one of a conversation; returns the Status."""
        with self.lock:
            conversation = self.conversations[conversation_id]
            last = self.statuses[max(conversation["status_ids"], key=int)]
            person_id = next(a for a in sorted(conversation["participants"]) if a != self.owner_id)
            return self.add_direct_message(person_id, author_id, text, created_at=created_at, previous=last)

    def edit_status(self, status_id: str, new_text: str, *, at: datetime | None = None) -> dict:
        """Edit like Mastodon: the history gets the original on the first edit, then every new version."""
        with self.lock:
            status = self.statuses[status_id]
            when = at or datetime.now(UTC)
            if _parse(status["edited_at"] or status["created_at"]) >= when:
                raise ValueError("an edit must come after the status' creation and earlier edits")
            history = self.histories.setdefault(status_id, [])
            if not history:
                history.append(self._edit_entry(status, status["created_at"]))
            status["content"], status["mentions"], status["tags"] = self._render(new_text)
            status["edited_at"] = _iso(when)
            self.sources[status_id]["text"] = new_text
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

    def delete_status(self, status_id: str) -> dict:
        """Gone like on Mastodon: lookups 404, out of listings and contexts; its replies stay, orphaned.

        Returns the deleted Status with its source `text`, as Mastodon's DELETE answers.
        """
        with self.lock:
            status = self.statuses.pop(status_id)
            self.deleted.add(status_id)
            if status["visibility"] != "direct":
                status["account"]["statuses_count"] -= 1
                parent = self.statuses.get(status["in_reply_to_id"] or "")
                if parent:
                    parent["replies_count"] -= 1
            conversation_id = self._conversation_of.pop(status_id, None)
            if conversation_id:
                self.conversations[conversation_id]["status_ids"].remove(status_id)
            return {**status, "text": self.sources.pop(status_id)["text"]}

    # -- queries (under the lock) --------------------------------------------------------------------------
    def children(self, status_id: str) -> list[dict]:
        """The live direct replies of a status, oldest first."""
        with self.lock:
            ids = self.replies.get(status_id, [])
            return sorted((self.statuses[i] for i in ids if i in self.statuses), key=lambda s: int(s["id"]))

    def context(self, status_id: str) -> dict:
        """Context: live ancestors up to the first gap, oldest first; descendants in depth-first order."""
        with self.lock:
            status = self.statuses[status_id]
            ancestors = []
            parent_id = status["in_reply_to_id"]
            while parent_id and parent_id in self.statuses:
                parent = self.statuses[parent_id]
                ancestors.insert(0, parent)
                parent_id = parent["in_reply_to_id"]
            descendants: list[dict] = []
            stack = list(reversed(self.children(status_id)))
            while stack:
                child = stack.pop()
                descendants.append(child)
                stack.extend(reversed(self.children(child["id"])))
            return {"ancestors": ancestors, "descendants": descendants}

    def history(self, status_id: str) -> list[dict]:
        """StatusEdit[] oldest first; an unedited status has one entry, its current version."""
        with self.lock:
            status = self.statuses[status_id]
            return self.histories.get(status_id) or [self._edit_entry(status, status["created_at"])]

    def conversation_entity(self, conversation_id: str) -> dict:
        with self.lock:
            conversation = self.conversations[conversation_id]
            last_id = max(conversation["status_ids"], key=int)
            others = [self.accounts[a] for a in sorted(conversation["participants"]) if a != self.owner_id]
            return {
                "id": conversation["id"],
                "unread": conversation["unread"],
                "accounts": others,
                "last_status": self.statuses[last_id],
            }

    def conversation_entities(self) -> list[tuple[int, dict]]:
        """(pagination id = last status id, Conversation) newest activity first; emptied ones are gone."""
        with self.lock:
            out = [
                (max(int(i) for i in c["status_ids"]), self.conversation_entity(c["id"]))
                for c in self.conversations.values()
                if c["status_ids"]
            ]
            return sorted(out, key=lambda pair: pair[0], reverse=True)


@dataclass
class Fault:
    """Answer requests whose path+query matches `path_regex` (re.search) with an injected failure.

    The first `after` matching requests are served normally, the next `times` get `status` with `body` and
    `headers` (or a closed connection without any answer when `drop_connection`), after `delay` seconds.
    """

    path_regex: str
    status: int = 500
    body: bytes | None = None
    headers: dict[str, str] | None = None
    times: int = 1
    after: int = 0
    drop_connection: bool = False
    delay: float = 0.0
    matched: int = field(default=0, init=False)

    def fires(self, target: str) -> bool:
        if not re.search(self.path_regex, target):
            return False
        self.matched += 1
        return self.after < self.matched <= self.after + self.times

    def response_body(self) -> bytes:
        if self.body is not None:
            return self.body
        return json.dumps({"error": _ERRORS.get(self.status, "Internal server error")}).encode()


def _limit(query: dict[str, str]) -> int:
    try:
        return max(1, min(int(query.get("limit", DEFAULT_LIMIT)), MAX_LIMIT))
    except ValueError:
        return DEFAULT_LIMIT


def _page(items: list[tuple[int, Any]], query: dict[str, str]) -> list[tuple[int, Any]]:
    """Mastodon's id paging over (id, entity) sorted newest first.

    max_id / since_id bound the newest-first list; min_id instead takes the items immediately newer than
    it (paging backwards), still returned newest first.
    """
    limit = _limit(query)

    def bound(name: str) -> int | None:
        value = query.get(name, "")
        return int(value) if value.isdigit() else None

    max_id, since_id, min_id = bound("max_id"), bound("since_id"), bound("min_id")
    selected = [
        (i, e) for i, e in items if (max_id is None or i < max_id) and (since_id is None or i > since_id)
    ]
    if min_id is not None:
        newer = [(i, e) for i, e in selected if i > min_id]
        return sorted(newer, key=lambda pair: pair[0])[:limit][::-1]
    return selected[:limit]


class SampleMastodonServer:
    """Serves a MastodonState on 127.0.0.1 from a daemon thread. Use as a context manager or start()/stop().

    `requests_log` records (method, path, query) of every request, never headers; `faults` may be changed
    while serving. The token is only compared, never logged or echoed.
    """

    def __init__(
        self, state: MastodonState, token: str, host: str = "127.0.0.1", port: int = 0, rate_limit: int = 300
    ) -> None:
        self.state = state
        self._token = token
        self.rate_limit = rate_limit
        self.faults: list[Fault] = []
        self.requests_log: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._window_start = datetime.now(UTC)
        self._window_count = 0
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self.base_url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread: threading.Thread | None = None
        self._closed = False
        with state.lock:
            old = state.base_url
            state.base_url = self.base_url
            # Media URLs made before the port was known, in statuses and their edit histories.
            entries = [*state.statuses.values(), *(e for h in state.histories.values() for e in h)]
            for entry in entries:
                for media in entry["media_attachments"]:
                    for key in ("url", "preview_url"):
                        media[key] = media[key].replace(old, self.base_url, 1)

    def __repr__(self) -> str:  # never the token
        return f"SampleMastodonServer({self.base_url})"

    def start(self) -> SampleMastodonServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name="sample-mastodon", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port; safe to call twice or without start()."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> SampleMastodonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- bookkeeping ---------------------------------------------------------------------------------------
    def _log_and_fault(self, method: str, target: str) -> Fault | None:
        parts = urlsplit(target)
        with self._lock:
            self.requests_log.append((method, parts.path, parts.query))
            fired = None
            for fault in list(self.faults):
                if fault.fires(target) and fired is None:
                    fired = fault
            return fired

    def _rate_headers(self) -> tuple[bool, dict[str, str]]:
        """Count one request in the current 5-minute window; (over the limit?, X-RateLimit-* headers)."""
        now = datetime.now(UTC)
        with self._lock:
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

    # -- HTTP ----------------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One write per response and no Nagle: otherwise delayed ACKs add ~40 ms to every request.
            wbufsize = 1 << 16
            disable_nagle_algorithm = True
            server_version = "SampleMastodon/1.0"
            sys_version = ""

            def log_message(self, *args: Any) -> None:  # quiet, and never a header
                pass

            def send(
                self,
                status: int,
                body: bytes,
                headers: dict[str, str] | None = None,
                content_type: str = "application/json; charset=utf-8",
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def send_json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
                self.send(status, json.dumps(value, ensure_ascii=False).encode("utf-8"), headers)

            def drop(self) -> None:
                """Close the connection without a byte of answer, as a crashed proxy would."""
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def handle_request(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                fault = server._log_and_fault(method, self.path)
                if fault is not None:
                    if fault.delay:
                        time.sleep(fault.delay)
                    if fault.drop_connection:
                        self.drop()
                    else:
                        self.send(fault.status, fault.response_body(), fault.headers)
                    return
                parts = urlsplit(self.path)
                if method == "GET" and parts.path.startswith(MEDIA_PREFIX):
                    with server.state.lock:
                        data = server.state.media.get(parts.path)
                    if data is None:
                        self.send_json(404, {"error": "Not found"})
                    else:
                        self.send(200, data, content_type="image/png")
                    return
                if not parts.path.startswith("/api/"):
                    self.send_json(404, {"error": "Not found"})
                    return
                limited, rate = server._rate_headers()
                if limited:
                    self.send_json(429, {"error": _ERRORS[429]}, rate)
                    return
                if self.headers.get("Authorization") != f"Bearer {server._token}":
                    self.send_json(401, {"error": _ERRORS[401]}, rate)
                    return
                if method != "GET":  # read-only: the archiver never writes
                    self.send_json(404, {"error": "Not found"}, rate)
                    return
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                with server.state.lock:
                    status, value, extra = server._route(parts.path, query)
                    body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                self.send(status, body, {**rate, **extra})

            def do_GET(self) -> None:  # noqa: N802 - http.server's names
                self.handle_request("GET")

            def do_POST(self) -> None:  # noqa: N802
                self.handle_request("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self.handle_request("PUT")

            def do_PATCH(self) -> None:  # noqa: N802
                self.handle_request("PATCH")

            def do_DELETE(self) -> None:  # noqa: N802
                self.handle_request("DELETE")

        return Handler

    def _link(self, path: str, query: dict[str, str], page: list[tuple[int, Any]]) -> dict[str, str]:
        """Link header: next = older than the page's last item, prev = newer than its first; none if empty."""
        if not page:
            return {}
        keep = {"limit": str(_limit(query)), **{k: query[k] for k in LISTING_FILTERS if k in query}}
        base = f"{self.base_url}{path}"
        next_url = f"{base}?{urlencode({**keep, 'max_id': page[-1][0]})}"
        prev_url = f"{base}?{urlencode({**keep, 'min_id': page[0][0]})}"
        return {"Link": f'<{next_url}>; rel="next", <{prev_url}>; rel="prev"'}

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """(HTTP status, JSON value, extra headers) of an authorised GET; called under the state's lock."""
        state = self.state
        not_found = (404, {"error": _ERRORS[404]}, {})
        if path == "/api/v1/accounts/verify_credentials":
            return 200, state.credential_account(), {}
        if path == "/api/v1/accounts/lookup":
            found = state.account_by_username(query.get("acct", ""))
            return (200, found, {}) if found else not_found
        if m := re.fullmatch(r"/api/v1/accounts/(\d+)", path):
            return (200, state.accounts[m[1]], {}) if m[1] in state.accounts else not_found
        if m := re.fullmatch(r"/api/v1/accounts/(\d+)/statuses", path):
            if m[1] not in state.accounts:
                return not_found
            own = m[1] == state.owner_id
            visible = ("public", "unlisted", "private", "direct") if own else ("public", "unlisted")
            flag = {k: query.get(k, "").lower() in ("true", "1") for k in LISTING_FILTERS}
            items = sorted(
                (
                    (int(s["id"]), s)
                    for s in state.statuses.values()
                    if s["account"]["id"] == m[1]
                    and s["visibility"] in visible
                    # Mastodon's exclude_replies keeps self-replies (threads).
                    and not (
                        flag["exclude_replies"]
                        and s["in_reply_to_id"]
                        and s["in_reply_to_account_id"] != m[1]
                    )
                    and not (flag["only_media"] and not s["media_attachments"])
                ),
                key=lambda pair: pair[0],
                reverse=True,
            )
            page = _page(items, query)
            return 200, [s for _, s in page], self._link(path, query, page)
        if m := re.fullmatch(r"/api/v1/statuses/(\d+)(/context|/history|/source)?", path):
            if m[1] not in state.statuses:
                return not_found
            if m[2] == "/context":
                return 200, state.context(m[1]), {}
            if m[2] == "/history":
                return 200, state.history(m[1]), {}
            if m[2] == "/source":
                return 200, state.sources[m[1]], {}
            return 200, state.statuses[m[1]], {}
        if path == "/api/v1/conversations":
            page = _page(state.conversation_entities(), query)
            return 200, [c for _, c in page], self._link(path, query, page)
        return 404, {"error": "Not found"}, {}
