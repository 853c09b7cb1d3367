"""X (API v2): the account's posts with their edit chains, replies from anyone, direct messages, media.

API (docs.x.com): GET /2/users/:id/tweets (newest first, `pagination_token` <- `meta.next_token`, `since_id`
for increments); /2/tweets/search/recent (or /search/all with Pro/Enterprise access) with
`query=conversation_id:<root>` for the replies of a thread (`next_token` paging); /2/tweets?ids= (up to 100)
as the lookup that proves a deletion: a deleted post is absent from `data` and named in `errors` as a
"Not Found Error" (type .../problems/resource-not-found); /2/dm_events (user context with dm.read) for
MessageCreate / ParticipantsJoin / ParticipantsLeave events grouped by `dm_conversation_id`.

Edits: each edit is a new post id; `edit_history_tweet_ids` lists the chain oldest first. The chain is one
item (keyed by its first id) whose versions are the posts of the chain; `native_id` is the version's own id.
Long posts: `text` holds only about the first 280 characters; `tweet.fields=note_tweet` adds `note_tweet.text`,
the whole text, which is the item's text (asked for from request revision 2).
Rate limits: x-rate-limit-remaining / x-rate-limit-reset (Unix seconds), and 429 (code 88) answered by
waiting for the reset, bounded by the archive's max_rate_limit_wait.

Recent search only reaches back a week: a thread older than the configured search window cannot be read
again for new replies; the run summary says so, and its known posts are still checked by lookup.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests

from ..config import AccountConfig
from ..errors import AuthError, PlatformError
from ..http import Exchange, HeaderRateLimit, Session, check_json, check_request
from ..items import AccountIdentity, CursorUpdate, Deletion, Item, MediaFile, Notice, Observation
from ..store import KnownItem
from ..warc import CaptureRef
from .base import (
    AccountState,
    Credential,
    CursorTrail,
    FetchWindow,
    RecentSet,
    RequestRevisions,
    fetch_media_file,
)

log = logging.getLogger("archiver.x")

PAGE_SIZE = 100
LOOKUP_BATCH = 100  # /2/tweets?ids= takes at most 100 ids
TWEETS_CURSOR = "tweets_newest_id"
DM_CURSOR = "dm_events_newest_id"
NOT_FOUND_TYPE = "https://api.twitter.com/2/problems/resource-not-found"
FULL_ARCHIVE_LEVELS = ("pro", "enterprise")
RATE_LIMIT_CODE = 88
STANDALONE = ""  # thread_key of a quoted post: not part of any thread this account's re-check reads
TWEET_FIELDS = (
    "id,text,created_at,author_id,conversation_id,in_reply_to_user_id,referenced_tweets,attachments,"
    "edit_history_tweet_ids,edit_controls,entities,lang,possibly_sensitive,reply_settings"
)
# The request revision (see base.RequestRevisions) from which `note_tweet` is asked for: without it X cuts a long
# post's `text` at about 280 characters, and the rest (PHI included) was neither archived nor scanned.
NOTE_TWEET = 2
# The request revision from which a media download that fails (a 5xx, no answer, after the retries) leaves its
# post archived without the file, with a notice, and the run goes on (base.fetch_media_file); before, it stopped
# the account.
MEDIA_FAILURES_NOTED = 3
TWEET_EXPANSIONS = (
    "author_id,attachments.media_keys,referenced_tweets.id,referenced_tweets.id.author_id,edit_history_tweet_ids"
)
MEDIA_FIELDS = "media_key,type,url,preview_image_url,alt_text,variants,width,height"
USER_FIELDS = "id,name,username"
DM_FIELDS = "id,text,event_type,created_at,dm_conversation_id,sender_id,participant_ids,referenced_tweets,attachments"
DM_EXPANSIONS = "attachments.media_keys,sender_id,participant_ids,referenced_tweets.id"


def tweet_fields(revision: int | None = None) -> str:
    """The post fields asked for at a request revision (default: the newest)."""
    revision = XConnector.REQUEST_REVISION if revision is None else revision
    return TWEET_FIELDS + (",note_tweet" if revision >= NOTE_TWEET else "")


def tweet_params(revision: int | None = None) -> dict[str, str]:
    return {
        "tweet.fields": tweet_fields(revision),
        "expansions": TWEET_EXPANSIONS,
        "media.fields": MEDIA_FIELDS,
        "user.fields": USER_FIELDS,
    }


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _expect(condition: bool, exchange: Exchange, what: str) -> None:
    if not condition:
        raise PlatformError(
            f"GET {exchange.url}: unexpected response shape ({what}); "
            f"raw response in WARC record {exchange.ref.record_id}"
        )


def full_text(tweet: dict[str, Any]) -> str:
    """A post's whole text: a long post's is in `note_tweet` (when asked for), its `text` only the start."""
    note = tweet.get("note_tweet")
    if isinstance(note, dict) and isinstance(note.get("text"), str):
        return note["text"]
    return tweet.get("text") or ""


def is_not_found(error: dict[str, Any]) -> bool:
    """An `errors` entry saying the resource does not exist (deleted, or never was)."""
    return error.get("type") == NOT_FOUND_TYPE or error.get("title") == "Not Found Error"


def x_endpoint(url: str) -> str:
    """The endpoint a call counts against: X limits each one on its own (/2/users/:id/tweets, /2/dm_events,
    /2/tweets/search/recent ...), per 15-minute window."""
    version, _, rest = urlsplit(url).path.lstrip("/").partition("/")  # "2", then the path under it
    return f"/{version}/" + "/".join(":id" if re.fullmatch(r"[0-9-]+", part) else part for part in rest.split("/"))


class XRateLimit(HeaderRateLimit):
    """x-rate-limit-* headers per 15-minute window; a 429 (code 88) waits for x-rate-limit-reset.

    A 429 for the monthly usage cap will not clear by waiting a window: it asks for a wait longer than any
    allowed, so the session gives the account up for this run at once.
    """

    def __init__(self) -> None:
        super().__init__("x-rate-limit-remaining", "x-rate-limit-reset", default_wait=15 * 60, endpoint=x_endpoint)

    def wait_after_429(self, response: requests.Response, now: float) -> float:
        try:
            body = response.json()
        except ValueError:
            body = {}
        problem = json.dumps(body) if isinstance(body, dict) else ""
        if "usage-capped" in problem or "UsageCapExceeded" in problem:
            return 31 * 24 * 3600.0
        codes = [e.get("code") for e in body.get("errors", []) if isinstance(e, dict)] if isinstance(body, dict) else []
        if RATE_LIMIT_CODE in codes:
            log.info("X answered 429 code 88 (rate limit exceeded)")
        return super().wait_after_429(response, now)


@dataclass
class Includes:
    """A page's `includes`, indexed: users by id, posts by id, media by media_key."""

    users: dict[str, dict] = field(default_factory=dict)
    tweets: dict[str, dict] = field(default_factory=dict)
    media: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def of(cls, page: dict[str, Any]) -> Includes:
        inc = page.get("includes") or {}
        return cls(
            {str(u["id"]): u for u in inc.get("users", []) if isinstance(u, dict) and "id" in u},
            {str(t["id"]): t for t in inc.get("tweets", []) if isinstance(t, dict) and "id" in t},
            {str(m["media_key"]): m for m in inc.get("media", []) if isinstance(m, dict) and "media_key" in m},
        )


class XConnector(RequestRevisions):
    platform: ClassVar[str] = "x"
    token_param: ClassVar[str | None] = None
    # 2: tweet.fields asks for note_tweet (NOTE_TWEET); 3: a media download that fails is a notice, and the run goes
    # on (MEDIA_FAILURES_NOTED).
    REQUEST_REVISION: ClassVar[int] = MEDIA_FAILURES_NOTED

    def rate_limit_policy(self) -> XRateLimit:
        return XRateLimit()

    def check_credential(self, account: AccountConfig, token: str, timeout: float) -> Credential:
        url = f"{account.api_base}/2/users/me"
        response = check_request(
            account.name, "GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
        if response.status_code in (401, 403):
            raise AuthError(
                f"account {account.name}: the platform refused the token from {account.credential_ref} "
                f"(HTTP {response.status_code}); renew the token"
            )
        if response.status_code != 200:
            raise PlatformError(f"account {account.name}: GET {url} answered HTTP {response.status_code}")
        try:
            return Credential("@" + str(check_json(account.name, response)["data"]["username"]))
        except (KeyError, TypeError):
            raise PlatformError(f"account {account.name}: GET {url} did not answer a User") from None

    def fetch(
        self, session: Session, account: AccountConfig, state: AccountState, window: FetchWindow
    ) -> Iterator[Observation]:
        yield from _XRun(session, account, state, window, self.revision).fetch()


class _XRun:
    def __init__(
        self,
        session: Session,
        account: AccountConfig,
        state: AccountState,
        window: FetchWindow,
        revision: int | None = None,  # the request revision to ask as (default: the newest)
    ):
        self.session = session
        self.revision = XConnector.REQUEST_REVISION if revision is None else revision
        self.account = account
        self.state = state
        self.window = window
        self.base = account.api_base
        self.options = account.options
        self.access_level = str(self.options.get("access_level", "basic"))
        self.full_archive = self.access_level in FULL_ARCHIVE_LEVELS
        self.search_window = timedelta(days=int(self.options.get("search_window_days", 7)))
        self.seen = RecentSet()  # version ids observed lately in this run
        # keys of the items of the re-check window observed this run (confirm_known looks up the others)
        self.seen_items: set[str] = set()
        self.threads_read: set[str] = set()
        self.out_of_window: list[str] = []
        self.media_fetched = RecentSet()
        self.me: dict[str, Any] = {}
        self.now: datetime | None = None  # capture time of the first answer: the same when replayed

    def key(self, post_id: str) -> str:
        return f"x:{post_id}"

    def api(self, path: str) -> str:
        return f"{self.base}/2/{path}"

    # -- the account ---------------------------------------------------------------------------------------
    def fetch(self) -> Iterator[Observation]:
        yield self.fetch_identity()
        yield from self.fetch_own_posts()
        yield from self.recheck_threads()
        yield from self.confirm_known()
        if self.out_of_window:
            shown = ", ".join(self.out_of_window[:20]) + (" ..." if len(self.out_of_window) > 20 else "")
            days = self.search_window.days
            yield Notice(
                f"{len(self.out_of_window)} thread(s) older than the {days}-day search window of access level "
                f"{self.access_level!r} could not be re-read for new replies (their known posts were checked by "
                f"lookup): {shown}"
            )
        if self.account.direct_messages:
            yield from self.fetch_dm_events()

    def fetch_identity(self) -> AccountIdentity:
        ref = (self.account.account or "").strip()
        if not ref:
            path = "users/me"
        elif ref.isdigit():
            path = f"users/{ref}"
        else:
            path = f"users/by/username/{ref.lstrip('@')}"
        exchange = self.session.get(self.api(path), {"user.fields": USER_FIELDS})
        self.now = _time(exchange.ref.date) or datetime.now(UTC)
        body = exchange.json()
        _expect(isinstance(body, dict), exchange, "a JSON object")
        user = body.get("data")
        if not isinstance(user, dict) or "id" not in user:
            errors = body.get("errors") or []
            if any(isinstance(e, dict) and is_not_found(e) for e in errors):
                raise PlatformError(f"account {self.account.name}: X has no user {ref!r}; fix `account` in the config")
            _expect(False, exchange, "a User in `data`")
        self.me = user
        return AccountIdentity(str(user["id"]), user.get("username"), user.get("name"))

    def paginate(self, url: str, params: dict[str, Any], token_param: str) -> Iterator[tuple[Exchange, dict]]:
        """Every page of a listing, following `meta.next_token` until a page has none."""
        next_token: str | None = None
        # A token this listing already followed, or a page of only posts it listed lately, is a paging loop (a
        # platform bug or a hostile answer), not more data: stop, never spin. CursorTrail keeps a digest per
        # token and the last posts only, so a long listing (a thread read from the full archive) stays small.
        trail = CursorTrail()
        while True:
            exchange = self.session.get(url, {**params, **({token_param: next_token} if next_token else {})})
            page = exchange.json()
            _expect(isinstance(page, dict) and isinstance(page.get("meta", {}), dict), exchange, "a page")
            _expect(isinstance(page.get("data", []), list), exchange, "a list in `data`")
            ids = {str(o.get("id")) for o in page.get("data", []) if isinstance(o, dict)}
            token = (page.get("meta") or {}).get("next_token")
            next_token = str(token) if token else None
            loop = trail.loop(ids, next_token)
            if loop:
                raise PlatformError(
                    f"GET {exchange.url}: paging loop: X answered {loop}; the listing stopped "
                    f"(WARC record {exchange.ref.record_id})"
                )
            if next_token:
                trail.follow(ids, next_token)
            yield exchange, page
            if not next_token:
                return

    def fetch_own_posts(self) -> Iterator[Observation]:
        """The account's posts newer than the last complete listing; each new thread is read."""
        since = self.state.cursor(TWEETS_CURSOR)
        params: dict[str, Any] = {"max_results": PAGE_SIZE, **tweet_params(self.revision)}
        if since:
            params["since_id"] = since
        newest: int | None = int(since) if since else None
        roots: list[tuple[str, str | None]] = []
        for exchange, page in self.paginate(self.api(f"users/{self.me['id']}/tweets"), params, "pagination_token"):
            includes = Includes.of(page)
            for tweet in page.get("data", []):
                _expect(isinstance(tweet, dict) and "id" in tweet, exchange, "a Post with an id")
                newest = max(newest or 0, int(tweet["id"]))
                yield from self.observe_post(tweet, includes, exchange.ref)
                conversation = str(tweet.get("conversation_id") or tweet["id"])
                roots.append((conversation, tweet.get("created_at")))
        for conversation, created_at in roots:
            yield from self.read_thread(conversation, created_at)
        if newest is not None:
            yield CursorUpdate(TWEETS_CURSOR, str(newest))

    def recheck_threads(self) -> Iterator[Observation]:
        """Threads whose root is inside the re-check window: read again for new replies."""
        known = self.state.known_items(created_since=self.window.recheck_since, kinds=("post", "comment"))
        earliest: dict[str, str] = {}  # thread -> its root's creation, or the oldest known post in it
        for k in known:
            if not k.thread_key or k.deleted or not k.created_at:
                continue
            if k.item_key == k.thread_key or k.created_at < earliest.get(k.thread_key, "~"):
                earliest[k.thread_key] = k.created_at
        for root_key in sorted(earliest, key=lambda t: int(t.removeprefix("x:")), reverse=True):
            yield from self.read_thread(root_key.removeprefix("x:"), earliest[root_key])

    # -- threads -------------------------------------------------------------------------------------------
    def read_thread(self, root_id: str, root_created_at: str | None) -> Iterator[Observation]:
        """Every reply in a conversation, from the search endpoint the access level allows."""
        root_key = self.key(root_id)
        if root_key in self.threads_read:
            return
        self.threads_read.add(root_key)
        started = _time(root_created_at)
        now = self.now or datetime.now(UTC)
        if not self.full_archive and started is not None and started < now - self.search_window:
            self.out_of_window.append(root_id)
            return
        path = "tweets/search/all" if self.full_archive else "tweets/search/recent"
        params: dict[str, Any] = {
            "query": f"conversation_id:{root_id}",
            "max_results": PAGE_SIZE,
            **tweet_params(self.revision),
        }
        if self.full_archive and started is not None:
            # search/all reads only the last 30 days unless told; X takes YYYY-MM-DDTHH:mm:ssZ
            params["start_time"] = started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for exchange, page in self.paginate(self.api(path), params, "next_token"):
            includes = Includes.of(page)
            for tweet in page.get("data", []):
                _expect(isinstance(tweet, dict) and "id" in tweet, exchange, "a Post with an id")
                yield from self.observe_post(tweet, includes, exchange.ref, thread_key=root_key)

    def confirm_known(self) -> Iterator[Observation]:
        """Known posts of the re-check window not seen this run: a lookup proves each present or deleted."""
        missing = [
            k
            for k in self.state.known_items(created_since=self.window.recheck_since, kinds=("post", "comment"))
            if not k.deleted and k.item_key not in self.seen_items
        ]
        missing.sort(key=lambda k: int(k.native_id))
        for start in range(0, len(missing), LOOKUP_BATCH):
            batch = missing[start : start + LOOKUP_BATCH]
            by_id = {k.native_id: k for k in batch}
            exchange = self.session.get(self.api("tweets"), {"ids": ",".join(by_id), **tweet_params(self.revision)})
            page = exchange.json()
            _expect(isinstance(page, dict) and isinstance(page.get("data", []), list), exchange, "a lookup answer")
            includes = Includes.of(page)
            for tweet in page.get("data", []):
                _expect(isinstance(tweet, dict) and "id" in tweet, exchange, "a Post with an id")
                known = by_id.get(str(tweet["id"]))
                yield from self.observe_post(
                    tweet, includes, exchange.ref, thread_key=known.thread_key if known else None
                )
            for error in page.get("errors", []):
                if not isinstance(error, dict):
                    continue
                gone = str(error.get("resource_id") or error.get("value") or "")
                if gone not in by_id:
                    continue
                if is_not_found(error):
                    evidence = {
                        "method": "lookup",
                        "url": exchange.url,
                        "http_status": exchange.status,
                        "error": error,
                        "warc_file": exchange.ref.warc_file,
                        "warc_record_id": exchange.ref.record_id,
                    }
                    yield Deletion(by_id[gone].item_key, evidence, exchange.ref)
                else:
                    yield Notice(f"post {gone}: lookup answered {error.get('title')!r} ({error.get('detail')}); kept")

    # -- posts ---------------------------------------------------------------------------------------------
    def observe_post(
        self, tweet: dict[str, Any], includes: Includes, ref: CaptureRef, thread_key: str | None = None
    ) -> Iterator[Observation]:
        """A post and the versions of its edit chain the archive does not hold yet, oldest first."""
        chain = [str(i) for i in (tweet.get("edit_history_tweet_ids") or [tweet["id"]])]
        if str(tweet["id"]) not in chain:
            chain.append(str(tweet["id"]))
        key = self.key(chain[0])
        known = self.state.latest(key)
        known_at = chain.index(known.native_id) if known is not None and known.native_id in chain else -1
        versions = {str(tweet["id"]): tweet}
        for version_id in chain:
            if version_id in includes.tweets:
                versions.setdefault(version_id, includes.tweets[version_id])
        first = versions.get(chain[0])
        created_at = (first or {}).get("created_at") or (known.created_at if known else None) or tweet.get("created_at")
        if not created_at or created_at >= self.window.recheck_since:
            self.seen_items.add(key)  # only these are ever looked up: memory follows the window, not the account
        for position, version_id in enumerate(chain):
            version = versions.get(version_id)
            if version is None or version_id in self.seen:
                continue
            if position < known_at:
                continue  # an older version than the archive's latest: already archived
            self.seen.add(version_id)
            yield from self.observe_referenced(version, includes, ref, thread_key)
            yield from self.item(version, includes, ref, key, position, created_at, thread_key, known)

    def observe_referenced(
        self, tweet: dict[str, Any], includes: Includes, ref: CaptureRef, thread_key: str | None
    ) -> Iterator[Observation]:
        """Posts this one quotes, answers or reposts, as the expansion delivered them (context for a reader; for a
        repost, whose own `text` X cuts at 140 characters, the only whole copy of what the account published).

        A quoted or reposted post belongs to another conversation: it gets no thread, so its thread is never searched.
        """
        for reference in tweet.get("referenced_tweets") or []:
            other = includes.tweets.get(str(reference.get("id")))
            if other is None or str(other["id"]) in self.seen:
                continue
            if reference.get("type") == "replied_to":
                yield from self.observe_post(other, includes, ref, thread_key)
            elif reference.get("type") in ("quoted", "retweeted"):
                yield from self.observe_post(other, includes, ref, STANDALONE)

    def root_of(self, post_id: str, includes: Includes) -> str:
        """The item key of the chain a (possibly edited) post id belongs to."""
        other = includes.tweets.get(post_id)
        chain = (other or {}).get("edit_history_tweet_ids") or [post_id]
        return self.key(str(chain[0]))

    def item(
        self,
        tweet: dict[str, Any],
        includes: Includes,
        ref: CaptureRef,
        key: str,
        position: int,
        created_at: str | None,
        thread_key: str | None,
        known: KnownItem | None,
    ) -> Iterator[Observation]:
        references = tweet.get("referenced_tweets") or []
        parent = next((str(r["id"]) for r in references if r.get("type") == "replied_to" and "id" in r), None)
        conversation = tweet.get("conversation_id")
        if thread_key == STANDALONE:
            thread_key = None
        elif thread_key is None:
            thread_key = self.key(str(conversation)) if conversation else (None if parent else key)
        author = includes.users.get(str(tweet.get("author_id")), {})
        keys = (tweet.get("attachments") or {}).get("media_keys") or []
        media = list((yield from self.fetch_media(keys, includes)))
        username = author.get("username")
        item = Item(
            item_key=key,
            platform="x",
            kind="comment" if parent else "post",
            native_id=str(tweet["id"]),
            source=ref,
            raw=tweet,
            text=full_text(tweet),
            created_at=created_at,
            edited_at=tweet.get("created_at") if position > 0 else None,
            parent_key=self.root_of(parent, includes) if parent else None,
            thread_key=thread_key,
            conversation_key=None,
            author_id=str(tweet["author_id"]) if tweet.get("author_id") else None,
            author_handle=username,
            author_name=author.get("name"),
            url=f"https://x.com/{username or 'i/web'}/status/{tweet['id']}",
            visibility="public",
            media=tuple(media),
            extra={
                "version_id": str(tweet["id"]),
                "referenced_tweets": [{"type": r.get("type"), "id": r.get("id")} for r in references],
                "possibly_sensitive": bool(tweet.get("possibly_sensitive")),
            },
        )
        if (
            "note_tweet" in tweet
            and known is not None
            and known.native_id == item.native_id
            and known.content_sha256 != item.content_sha256
        ):
            # An edit on X is a new post id: the same id read anew with its note_tweet is the fuller capture of a
            # long post archived truncated (before revision NOTE_TWEET), not an edit by its author.
            why = (
                "the whole text, read from note_tweet, where the version before holds the start X cuts long posts "
                "to (archived before the archiver asked for note_tweet)"
            )
            item = dataclasses.replace(item, not_an_edit=why)
            yield Notice(
                f"post {key} (id {item.native_id}): its whole text was read from note_tweet, where the version "
                "archived holds the text X cuts long posts to; the new version is that fuller capture, not an edit"
            )
        yield item

    def fetch_media(self, media_keys: list[str], includes: Includes) -> Iterator[Observation]:
        """Fetch attachments into the WARC (once per URL); returns the normalised media list."""
        normalised = []
        for media_key in media_keys:
            media = includes.media.get(str(media_key), {"media_key": media_key})
            url = media.get("url")
            variants = [v for v in media.get("variants") or [] if isinstance(v, dict) and v.get("url")]
            if not url and variants:
                url = max(variants, key=lambda v: v.get("bit_rate") or 0)["url"]
            url = url or media.get("preview_image_url")
            entry = {"id": str(media_key), "type": media.get("type"), "url": url, "description": media.get("alt_text")}
            if url and self.account.media and url not in self.media_fetched and not self.state.has_media(url):
                self.media_fetched.add(url)
                # The token goes only to the API's own host (DM media sit there); never to a CDN.
                same_host = urlsplit(url).netloc == urlsplit(self.base).netloc
                keep_going = self.revision >= MEDIA_FAILURES_NOTED
                exchange = yield from fetch_media_file(self.session, url, keep_going, auth=same_host)
                if exchange is not None and exchange.status == 200:
                    digest = exchange.body_sha256
                    entry["sha256"] = digest
                    yield MediaFile(url, digest, exchange.body_size, exchange.headers.get("Content-Type"), exchange.ref)
            normalised.append(entry)
        return normalised

    # -- direct messages -----------------------------------------------------------------------------------
    def fetch_dm_events(self) -> Iterator[Observation]:
        """DM events newest first, down to the newest one of the last complete pass (X keeps 30 days)."""
        done_upto = self.state.cursor(DM_CURSOR)
        newest: int | None = int(done_upto) if done_upto else None
        params = {
            "max_results": PAGE_SIZE,
            "dm_event.fields": DM_FIELDS,
            "expansions": DM_EXPANSIONS,
            "media.fields": MEDIA_FIELDS,
            "user.fields": USER_FIELDS,
            "tweet.fields": tweet_fields(self.revision),
        }
        for exchange, page in self.paginate(self.api("dm_events"), params, "pagination_token"):
            includes = Includes.of(page)
            reached = False
            for event in page.get("data", []):
                _expect(isinstance(event, dict) and "id" in event, exchange, "a DM event with an id")
                if done_upto and int(event["id"]) <= int(done_upto):
                    reached = True
                    break
                newest = max(newest or 0, int(event["id"]))
                yield from self.dm_item(event, includes, exchange.ref)
            if reached:
                break
        if newest is not None:
            yield CursorUpdate(DM_CURSOR, str(newest))

    def dm_item(self, event: dict[str, Any], includes: Includes, ref: CaptureRef) -> Iterator[Observation]:
        conversation = f"x:dm:{event.get('dm_conversation_id')}"
        sender = includes.users.get(str(event.get("sender_id")), {})
        keys = (event.get("attachments") or {}).get("media_keys") or []
        media = list((yield from self.fetch_media(keys, includes)))
        yield Item(
            item_key=f"x:dm_event:{event['id']}",
            platform="x",
            kind="message",
            native_id=str(event["id"]),
            source=ref,
            raw=event,
            text=event.get("text") or "",
            created_at=event.get("created_at"),
            thread_key=conversation,
            conversation_key=conversation,
            author_id=str(event["sender_id"]) if event.get("sender_id") else None,
            author_handle=sender.get("username"),
            author_name=sender.get("name"),
            visibility="direct",
            media=tuple(media),
            extra={
                "event_type": event.get("event_type"),
                "participant_ids": [str(p) for p in event.get("participant_ids") or []],
                "referenced_tweets": [r.get("id") for r in event.get("referenced_tweets") or []],
            },
        )
