"""An X API v2 stand-in on loopback: the tests' (and the demo's) sample X platform.

Response shapes follow docs.x.com (API v2):
- User: `{"data": {"id", "name", "username"}}`; an unknown user is HTTP 200 with only `errors`.
- Post: `id, text, created_at, author_id, conversation_id, edit_history_tweet_ids, edit_controls,
  referenced_tweets, in_reply_to_user_id, attachments.media_keys, lang, possibly_sensitive, reply_settings,
  note_tweet` (only `id, text, edit_history_tweet_ids` unless `tweet.fields` asks for more, as on X). A long post
  (over 280 characters) has its `text` cut at the last word that ends within 280 characters, and its whole text
  in `note_tweet.text`, served only when `tweet.fields` names note_tweet.
- Listings: `{"data": [...], "includes": {"users", "tweets", "media"}, "meta": {"result_count", "newest_id",
  "oldest_id", "next_token"}}` newest first; `pagination_token` (timelines, DM events) or `next_token`
  (search) continues; no `next_token` on the last page; an empty listing is `{"meta": {"result_count": 0}}`.
- GET /2/users/:id/tweets (since_id, until_id, max_results 5-100), /2/tweets/search/recent (last 7 days) and
  /2/tweets/search/all (only for access level pro/enterprise, start_time honoured; otherwise 403
  client-not-enrolled), query `conversation_id:<id>` only; /2/tweets?ids= answers present posts in `data`
  and each missing one in `errors` as a "Not Found Error" (type .../problems/resource-not-found).
- Edits: an edit is a new post whose `edit_history_tweet_ids` is the whole chain, oldest first; every
  version answers lookups by its own id; listings and search show the latest version; deleting a chain
  deletes all its versions.
- GET /2/dm_events: MessageCreate / ParticipantsJoin / ParticipantsLeave, newest first, expansions
  (attachments.media_keys, sender_id, participant_ids); DM media need the bearer token, post media do not.
- Bearer auth (401 problem otherwise); x-rate-limit-limit / -remaining / -reset (Unix seconds) per endpoint
  and 15-minute window; 429 `{"title": "Too Many Requests", ...}` past the limit. Faults as in the Mastodon
  sample (status, body, headers, dropped connections, delays).
Standard library only; one lock guards the state so tests can change it while it serves.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from .loopback import Fault, LoopbackServer, Reply, Request

__all__ = ["Fault", "SampleXServer", "XState"]

NOT_FOUND = "https://api.twitter.com/2/problems/resource-not-found"
TWITTER_EPOCH_MS = 1288834974657
RATE_WINDOW = 15 * 60
DEFAULT_FIELDS = ("id", "text", "edit_history_tweet_ids")
SHORT_POST = 280  # characters of a post's `text`; a longer post's whole text is its note_tweet's
RETWEET_CUT = 140  # characters of a repost's "RT @user: ..." `text`


def with_text(tweet: dict[str, Any], text: str) -> dict[str, Any]:
    """The post with this text, as X gives it: a long one cut in `text`, whole in `note_tweet`."""
    tweet = {k: v for k, v in tweet.items() if k != "note_tweet"}
    tweet["text"] = text
    if len(text) > SHORT_POST:
        head = text[: SHORT_POST + 1]  # a word that ends at 280 is followed by a space
        words = head.rsplit(None, 1) if head[-1].strip() else [head]
        tweet["text"] = (words[0] if len(words) > 1 else head[:SHORT_POST]).rstrip()
        tweet["note_tweet"] = {"text": text}
    return tweet


def x_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class XState:
    """Users, posts (every version), DM events and media. Tests change it while the server answers."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.tweets: dict[str, dict[str, Any]] = {}  # every version, by its own id
        self.deleted: set[str] = set()
        self.media: dict[str, dict[str, Any]] = {}  # media_key -> Media object
        self.media_bytes: dict[str, bytes] = {}  # path -> bytes
        self.dm_events: list[dict[str, Any]] = []
        self.owner_id: str | None = None
        self.base_url = "http://127.0.0.1"
        self._seq = 0

    def _id(self, at: datetime) -> str:
        """A snowflake: time-ordered like X's ids."""
        self._seq = (self._seq + 1) % 4096
        return str((int(at.timestamp() * 1000) - TWITTER_EPOCH_MS) << 22 | self._seq)

    def add_user(self, username: str, name: str) -> dict[str, Any]:
        user = {"id": str(1_000_000 + len(self.users)), "name": name, "username": username}
        self.users[user["id"]] = user
        self.owner_id = self.owner_id or user["id"]
        return user

    def _media(self, owner: str, data: bytes, alt: str, dm: bool) -> str:
        media_key = f"3_{self._id(datetime.now(UTC))}"
        path = f"/{'dm_media' if dm else 'media'}/{owner}/{media_key}.png"
        self.media_bytes[path] = data
        self.media[media_key] = {
            "media_key": media_key,
            "type": "photo",
            "url": self.base_url + path,
            "alt_text": alt,
            "width": 8,
            "height": 8,
        }
        return media_key

    def add_tweet(
        self,
        user_id: str,
        text: str,
        *,
        created_at: datetime,
        reply_to: str | None = None,
        quote: str | None = None,
        retweet: str | None = None,
        media: list[tuple[bytes, str]] | None = None,
    ) -> dict[str, Any]:
        """A post; with `retweet`, a repost of that post, whose `text` X gives as "RT @user: " and the original's
        text cut at 140 characters (`text` is then ignored: the original, whole, comes as an expansion)."""
        tweet_id = self._id(created_at)
        references = []
        conversation = tweet_id
        if retweet:
            original = self.tweets[retweet]
            author = self.users[original["author_id"]]["username"]
            text = f"RT @{author}: " + original.get("note_tweet", {}).get("text", original["text"])
            text = text if len(text) <= RETWEET_CUT else text[: RETWEET_CUT - 1] + "\u2026"
            references.append({"type": "retweeted", "id": retweet})
        tweet: dict[str, Any] = with_text({"id": tweet_id}, text)
        tweet.update({"created_at": x_time(created_at), "author_id": user_id})
        if reply_to:
            parent = self.tweets[reply_to]
            references.append({"type": "replied_to", "id": reply_to})
            conversation = parent["conversation_id"]
            tweet["in_reply_to_user_id"] = parent["author_id"]
        if quote:
            references.append({"type": "quoted", "id": quote})
        if references:
            tweet["referenced_tweets"] = references
        if media:
            tweet["attachments"] = {"media_keys": [self._media(tweet_id, d, alt, False) for d, alt in media]}
        tweet.update(
            {
                "conversation_id": conversation,
                "edit_history_tweet_ids": [tweet_id],
                "edit_controls": {
                    "is_edit_eligible": True,
                    "editable_until": x_time(created_at + timedelta(hours=1)),
                    "edits_remaining": 5,
                },
                "lang": "en",
                "possibly_sensitive": False,
                "reply_settings": "everyone",
            }
        )
        self.tweets[tweet_id] = tweet
        return tweet

    def edit_tweet(self, tweet_id: str, text: str, *, at: datetime) -> dict[str, Any]:
        """A new version with a new id; the whole chain learns it."""
        old = self.tweets[tweet_id]
        chain = list(old["edit_history_tweet_ids"])
        new_id = self._id(at)
        new = with_text({**old, "id": new_id, "created_at": x_time(at)}, text)
        chain.append(new_id)
        controls = dict(old["edit_controls"])
        controls["edits_remaining"] = max(0, controls["edits_remaining"] - 1)
        new["edit_controls"] = controls
        self.tweets[new_id] = new
        for version_id in chain:
            self.tweets[version_id]["edit_history_tweet_ids"] = list(chain)
        return new

    def delete_tweet(self, tweet_id: str) -> None:
        """Deleting any version deletes the whole chain."""
        for version_id in self.tweets[tweet_id]["edit_history_tweet_ids"]:
            self.deleted.add(version_id)

    def add_dm(
        self,
        conversation_id: str,
        sender_id: str,
        *,
        created_at: datetime,
        text: str = "",
        event_type: str = "MessageCreate",
        participant_ids: list[str] | None = None,
        media: list[tuple[bytes, str]] | None = None,
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "id": self._id(created_at),
            "event_type": event_type,
            "created_at": x_time(created_at),
            "dm_conversation_id": conversation_id,
            "sender_id": sender_id,
        }
        if event_type == "MessageCreate":
            event["text"] = text
        if participant_ids:
            event["participant_ids"] = participant_ids
        if media:
            event["attachments"] = {"media_keys": [self._media(event["id"], d, a, True) for d, a in media]}
        self.dm_events.append(event)
        return event

    # -- queries -------------------------------------------------------------------------------------------
    def live(self, tweet_id: str) -> bool:
        return tweet_id in self.tweets and tweet_id not in self.deleted

    def latest_versions(self) -> list[dict[str, Any]]:
        """Posts as listings show them: the latest version of each live chain, newest id first."""
        latest = {t["edit_history_tweet_ids"][-1] for t in self.tweets.values()}
        return sorted((self.tweets[i] for i in latest if self.live(i)), key=lambda t: int(t["id"]), reverse=True)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _problem(status: int, title: str, detail: str, kind: str = "about:blank") -> dict[str, Any]:
    return {"title": title, "detail": detail, "type": kind, "status": status}


def _not_found(resource: str, parameter: str, value: str) -> dict[str, Any]:
    return {
        "value": value,
        "detail": f"Could not find {resource} with {parameter}: [{value}].",
        "title": "Not Found Error",
        "resource_type": resource,
        "parameter": parameter,
        "resource_id": value,
        "type": NOT_FOUND,
    }


class SampleXServer(LoopbackServer):
    name = "sample-x"

    def __init__(
        self,
        state: XState,
        token: str,
        *,
        access_level: str = "basic",
        rate_limit: int = 10_000,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Any = time.time,
    ):
        super().__init__(host, port)
        self.state = state
        self._token = token
        self.access_level = access_level
        self.rate_limit = rate_limit
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        old, state.base_url = state.base_url, self.base_url
        for media in state.media.values():
            media["url"] = media["url"].replace(old, self.base_url)

    # -- plumbing ------------------------------------------------------------------------------------------
    def _rate(self, endpoint: str) -> tuple[bool, dict[str, str]]:
        now = self.clock()
        start, count = self._windows.get(endpoint, (now, 0))
        if now - start >= RATE_WINDOW:
            start, count = now, 0
        count += 1
        self._windows[endpoint] = (start, count)
        headers = {
            "x-rate-limit-limit": str(self.rate_limit),
            "x-rate-limit-remaining": str(max(self.rate_limit - count, 0)),
            "x-rate-limit-reset": str(int(start + RATE_WINDOW)),
        }
        return count > self.rate_limit, headers

    def respond(self, request: Request) -> Reply:
        with self.lock:
            data = self.state.media_bytes.get(request.path)
            authorised = request.headers.get("authorization") == f"Bearer {self._token}"
            if data is not None:
                if request.path.startswith("/media/") or authorised:
                    return Reply(200, data, content_type="image/png")
                return Reply.json(401, _problem(401, "Unauthorized", "Unauthorized"))
            if not request.path.startswith("/2/"):
                return Reply.json(404, _problem(404, "Not Found", "Not Found"))
            if not authorised:
                return Reply.json(401, _problem(401, "Unauthorized", "Unauthorized"))
            endpoint = re.sub(r"/\d+", "/:id", request.path)
            limited, rate = self._rate(endpoint)
            if limited:
                return Reply.json(429, _problem(429, "Too Many Requests", "Too Many Requests"), rate)
            status, value = self._route(request)
            return Reply.json(status, value, rate)

    # -- shaping -------------------------------------------------------------------------------------------
    @staticmethod
    def _fields(request: Request, name: str) -> set[str]:
        return {f for f in request.query.get(name, "").split(",") if f}

    def _shape_tweet(self, tweet: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        return {k: v for k, v in tweet.items() if k in DEFAULT_FIELDS or k in fields}

    def _shape_user(self, user: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        return {k: v for k, v in user.items() if k in ("id", "name", "username") or k in fields}

    def _includes(self, request: Request, objects: list[dict[str, Any]]) -> dict[str, Any]:
        """The `includes` the requested expansions ask for."""
        expansions = self._fields(request, "expansions")
        tweet_fields = self._fields(request, "tweet.fields")
        state = self.state
        given = {o["id"] for o in objects}
        users: dict[str, dict] = {}
        tweets: dict[str, dict] = {}
        media: dict[str, dict] = {}

        def add_user(user_id: Any) -> None:
            if user_id and str(user_id) in state.users:
                users[str(user_id)] = self._shape_user(state.users[str(user_id)], self._fields(request, "user.fields"))

        for obj in objects:
            if "author_id" in expansions:
                add_user(obj.get("author_id"))
            if "sender_id" in expansions:
                add_user(obj.get("sender_id"))
            if "participant_ids" in expansions:
                for participant in obj.get("participant_ids", []):
                    add_user(participant)
            if "attachments.media_keys" in expansions:
                for key in (obj.get("attachments") or {}).get("media_keys", []):
                    if key in state.media:
                        media[key] = state.media[key]
            if "referenced_tweets.id" in expansions:
                for reference in obj.get("referenced_tweets", []):
                    if state.live(reference["id"]) and reference["id"] not in given:
                        tweets[reference["id"]] = self._shape_tweet(state.tweets[reference["id"]], tweet_fields)
                        if "referenced_tweets.id.author_id" in expansions:
                            add_user(state.tweets[reference["id"]]["author_id"])
            if "edit_history_tweet_ids" in expansions:
                for version_id in obj.get("edit_history_tweet_ids", []):
                    if version_id not in given and state.live(version_id):
                        tweets[version_id] = self._shape_tweet(state.tweets[version_id], tweet_fields)
        includes: dict[str, Any] = {}
        if users:
            includes["users"] = list(users.values())
        if tweets:
            includes["tweets"] = list(tweets.values())
        if media:
            includes["media"] = list(media.values())
        return includes

    def _listing(self, request: Request, objects: list[dict], token_name: str, shape: Any) -> dict[str, Any]:
        """A page of `objects` (newest first) after the paging token, with includes and meta."""
        try:
            limit = max(1, min(int(request.query.get("max_results", 10)), 100))
        except ValueError:
            limit = 10
        token = request.query.get(token_name, "")
        if token:
            after = int(token, 36)
            objects = [o for o in objects if int(o["id"]) < after]
        page = objects[:limit]
        if not page:
            return {"meta": {"result_count": 0}}
        shaped = [shape(o) for o in page]
        meta: dict[str, Any] = {"result_count": len(page), "newest_id": page[0]["id"], "oldest_id": page[-1]["id"]}
        if len(objects) > limit:
            meta["next_token"] = format_base36(int(page[-1]["id"]))
        body: dict[str, Any] = {"data": shaped}
        includes = self._includes(request, page)
        if includes:
            body["includes"] = includes
        body["meta"] = meta
        return body

    # -- routes --------------------------------------------------------------------------------------------
    def _route(self, request: Request) -> tuple[int, Any]:
        state, path, query = self.state, request.path, request.query
        user_fields = self._fields(request, "user.fields")
        tweet_fields = self._fields(request, "tweet.fields")
        if path == "/2/users/me":
            return 200, {"data": self._shape_user(state.users[state.owner_id or ""], user_fields)}
        if m := re.fullmatch(r"/2/users/by/username/(\w+)", path):
            found = next((u for u in state.users.values() if u["username"].lower() == m[1].lower()), None)
            if found is None:
                return 200, {"errors": [_not_found("user", "username", m[1])]}
            return 200, {"data": self._shape_user(found, user_fields)}
        if m := re.fullmatch(r"/2/users/(\d+)", path):
            if m[1] not in state.users:
                return 200, {"errors": [_not_found("user", "id", m[1])]}
            return 200, {"data": self._shape_user(state.users[m[1]], user_fields)}
        if m := re.fullmatch(r"/2/users/(\d+)/tweets", path):
            since = int(query.get("since_id") or 0)
            until = int(query.get("until_id") or 0)
            posts = [
                t
                for t in state.latest_versions()
                if t["author_id"] == m[1] and int(t["id"]) > since and (not until or int(t["id"]) < until)
            ]
            return 200, self._listing(request, posts, "pagination_token", lambda t: self._shape_tweet(t, tweet_fields))
        if m := re.fullmatch(r"/2/tweets/search/(recent|all)", path):
            if m[1] == "all" and self.access_level not in ("pro", "enterprise"):
                problem = _problem(
                    403,
                    "Client Forbidden",
                    "When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens "
                    "from a Twitter developer App that is attached to a Project.",
                    "https://api.twitter.com/2/problems/client-forbidden",
                )
                return 403, {**problem, "reason": "client-not-enrolled"}
            wanted = re.fullmatch(r"conversation_id:(\d+)", query.get("query", "").strip())
            if not wanted:
                return 400, {"errors": [{"message": "this sample understands only conversation_id:<id>"}]}
            now = datetime.fromtimestamp(self.clock(), UTC)
            start = now - timedelta(days=7) if m[1] == "recent" else now - timedelta(days=30)
            if m[1] == "all" and query.get("start_time"):
                start = datetime.fromisoformat(query["start_time"].replace("Z", "+00:00"))
            posts = [
                t
                for t in state.latest_versions()
                if t["conversation_id"] == wanted[1]
                and datetime.fromisoformat(t["created_at"][:-1] + "+00:00") >= start
            ]
            return 200, self._listing(request, posts, "next_token", lambda t: self._shape_tweet(t, tweet_fields))
        if path == "/2/tweets":
            ids = [i for i in query.get("ids", "").split(",") if i]
            if not ids or len(ids) > 100:
                return 400, {"errors": [{"parameters": {"ids": ids}, "message": "ids: 1 to 100 ids"}]}
            found = [state.tweets[i] for i in ids if state.live(i)]
            body: dict[str, Any] = {}
            if found:
                body["data"] = [self._shape_tweet(t, tweet_fields) for t in found]
                includes = self._includes(request, found)
                if includes:
                    body["includes"] = includes
            missing = [_not_found("tweet", "ids", i) for i in ids if not state.live(i)]
            if missing:
                body["errors"] = missing
            return 200, body
        if path == "/2/dm_events":
            events = sorted(state.dm_events, key=lambda e: int(e["id"]), reverse=True)
            dm_fields = self._fields(request, "dm_event.fields") | {"id", "event_type", "text"}
            return 200, self._listing(
                request, events, "pagination_token", lambda e: {k: v for k, v in e.items() if k in dm_fields}
            )
        return 404, _problem(404, "Not Found", f"no route for {path}")


def format_base36(number: int) -> str:
    """An opaque-looking paging token (X's are opaque too)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rem = divmod(number, 36)
        out = digits[rem] + out
    return out or "0"
