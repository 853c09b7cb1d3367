"""YouTube channels (Data API v3): the channel's uploads, every comment thread and all replies, thumbnails.

API (developers.google.com/youtube/v3): channels.list (contentDetails.relatedPlaylists.uploads) ->
playlistItems.list over the uploads playlist -> videos.list (snippet, status, statistics; 50 ids a call);
commentThreads.list?videoId= (a thread carries only some of its replies) and comments.list?parentId= for
all of a thread's replies; comments.list?id= and videos.list?id= as lookups. Paging by pageToken /
nextPageToken. The credential is an API key (the `key` parameter) or a channel owner's OAuth access token.

Quota: every call costs units (1 for each list call here, a failed one too) from the project's daily quota,
which resets at midnight Pacific time. The connector counts what it spends, keeps the count for the quota
day in a cursor, and stops before the configured `daily_quota` is spent; a 403 `quotaExceeded` stops it the
same way (it is not an authentication failure). Either way the run summary names the videos whose comments
are left, and the next run reads those first. A 403 `rateLimitExceeded` or `userRateLimitExceeded` is a
short-term limit, not the daily quota: the session waits it out and asks again.

A 403 `forbidden` is a refused credential (AuthError) for the channel-level calls; for one video's
commentThreads.list it is about that video (one whose comments the credential may not read): a notice, and
the run goes on to the next video. Only when every one of two or more videos whose comments a run asked
answers `forbidden` does the run take it for the credential, and fail the account the same way (see
FORBIDDEN_VIDEOS_NOTED).

Incremental: the uploads listing is cheap and read in full every run; comments are read for new videos,
videos published inside the re-check window and videos a quota stop left. Videos are stored as they are
listed and their comments read after, so a run that stops in between (a failed call, a quota stop before the
videos left were known) leaves its new videos owed: the next run reads their comments too (FollowUps).
Deletions only on proof: a video missing from the complete listing, or a comment missing from a complete
read of its video's threads, is looked up by id, and only an answer without it concludes the deletion.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from ..config import AccountConfig
from ..errors import ArchiverError, AuthError, PlatformError
from ..http import Exchange, HeaderRateLimit, Session, check_json, check_request
from ..items import AccountIdentity, CursorUpdate, Deletion, Item, MediaFile, Notice, Observation
from ..warc import CaptureRef
from .base import AccountState, Credential, FetchWindow, FollowUps, RecentSet, RequestRevisions, fetch_media_file

API_PATH = "/youtube/v3/"
QUOTA_CURSOR = "quota_units_used"  # "<quota day (Pacific date)>:<units this account spent that day>"
PENDING_CURSOR = "videos_pending_comments"  # space-separated video ids a quota stop left for the next run
# When the run started that stored videos and stopped before reading all their comments ("" once all are read)
FOLLOW_UPS_CURSOR = "comments_unfinished_since"
PACIFIC = ZoneInfo("America/Los_Angeles")  # Google resets the daily quota at midnight Pacific time
QUOTA_REASONS = ("quotaExceeded", "dailyLimitExceeded")
THROTTLE_REASONS = ("rateLimitExceeded", "userRateLimitExceeded")  # short-term limits: wait, then ask again
NAMED_IN_NOTICE = 50
# What else a lookup answered without the item can mean: YouTube answers the same for these, so the deletion
# evidence says so rather than let a reader take a hidden item for a removed one.
PRIVATE_VIDEO_CAVEAT = "the video was made private: with an API key YouTube returns public and unlisted videos only"
HELD_COMMENT_CAVEAT = "the comment is held for review or hidden by the channel: YouTube returns published ones only"
LOOKUP_BATCH = 50
# The request revision (see base.RequestRevisions) from which a thumbnail download that fails (a 5xx, no answer,
# after the retries) leaves its video archived without it, with a notice, and the run goes on
# (base.fetch_media_file); before, it stopped the account.
MEDIA_FAILURES_NOTED = 2
# The request revision from which a 403 `forbidden` on one video's commentThreads.list is a notice and the run
# goes on to the next video (it asks for more than before: the videos after it); before, it failed the account
# there, and a replay of such a capture stops there too. Google's errors page gives the core `forbidden` (403)
# as "Access forbidden. The request may not be properly authorized."
# (https://developers.google.com/youtube/v3/docs/errors), which sends each method's own errors to its reference
# page; commentThreads.list's (https://developers.google.com/youtube/v3/docs/commentThreads/list, "Errors") has
# `forbidden` for threads that could not be retrieved for insufficient permissions, as comments.delete's has
# "could not be deleted because of insufficient permissions": a refusal that can be about one video's comments.
FORBIDDEN_VIDEOS_NOTED = 3


@dataclass
class _QuotaSpent(Exception):
    why: str


def google_reason(exchange: Exchange) -> str:
    """The first `errors[].reason` of a Google error body ("" when there is none)."""
    return _reason(exchange.body)


def _reason(body: bytes) -> str:
    try:
        errors = json.loads(body)["error"]["errors"]
        return str(errors[0].get("reason", ""))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""


class YouTubeRateLimit(HeaderRateLimit):
    """Google sends no rate-limit headers; the daily quota is counted by the connector. A 403 (or 429) whose
    reason is a short-term limit is a throttle: the session waits `Retry-After` if sent, else `default_wait`."""

    def is_throttled(self, status: int, headers: Any, body: bytes) -> bool:
        return status in (403, 429) and _reason(body) in THROTTLE_REASONS


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _expect(condition: bool, exchange: Exchange, what: str) -> None:
    if not condition:
        raise PlatformError(
            f"GET {exchange.url}: unexpected response shape ({what}); "
            f"raw response in WARC record {exchange.ref.record_id}"
        )


class YouTubeConnector(RequestRevisions):
    platform: ClassVar[str] = "youtube"
    token_param: ClassVar[str | None] = "key"
    # 2: a thumbnail that fails is a notice; 3: a video whose comments are forbidden is a notice
    REQUEST_REVISION: ClassVar[int] = FORBIDDEN_VIDEOS_NOTED

    def __init__(self, auth: str = "api_key") -> None:
        # An API key travels as `key=`; an OAuth access token as a Bearer header (options.auth).
        self.token_param = "key" if auth == "api_key" else None  # type: ignore[misc]

    @classmethod
    def for_account(cls, account: AccountConfig) -> YouTubeConnector:
        return cls(str(account.options.get("auth", "api_key")))

    def rate_limit_policy(self) -> YouTubeRateLimit:
        return YouTubeRateLimit()

    def check_credential(self, account: AccountConfig, token: str, timeout: float) -> Credential:
        """One channels.list call (1 quota unit): the key or token works for this channel."""
        url = f"{account.api_base.rstrip('/')}{API_PATH}channels"
        params = {"part": "id,snippet", **_channel_selector(account)}
        headers: dict[str, str] = {}
        if self.token_param:
            params[self.token_param] = token
        else:
            headers["Authorization"] = f"Bearer {token}"
        response = check_request(account.name, "GET", url, params=params, headers=headers, timeout=timeout)
        body = response.text
        if response.status_code in (400, 401, 403) and "quotaExceeded" not in body:
            raise AuthError(
                f"account {account.name}: YouTube refused the credential from {account.credential_ref} "
                f"(HTTP {response.status_code}); renew the API key or OAuth token"
            )
        if response.status_code != 200:
            raise PlatformError(f"account {account.name}: GET {url} answered HTTP {response.status_code}")
        try:
            items = check_json(account.name, response).get("items") or []
            channel = items[0] if items else None
            who = channel and (channel.get("snippet", {}).get("customUrl") or channel["id"])
        except (AttributeError, KeyError, TypeError):
            raise PlatformError(f"account {account.name}: GET {url} did not answer a channel list") from None
        if not who:
            raise PlatformError(f"account {account.name}: no YouTube channel {account.account!r}; fix `account`")
        return Credential(str(who))

    def fetch(
        self, session: Session, account: AccountConfig, state: AccountState, window: FetchWindow
    ) -> Iterator[Observation]:
        yield from _YouTubeRun(session, account, state, window, self.revision).fetch()


def _channel_selector(account: AccountConfig) -> dict[str, str]:
    ref = (account.account or "").strip()
    if ref.startswith("@"):
        return {"forHandle": ref}
    if ref:
        return {"id": ref}
    return {"mine": "true"}


class _YouTubeRun:
    def __init__(
        self, session: Session, account: AccountConfig, state: AccountState, window: FetchWindow, revision: int = 1
    ):
        self.session = session
        self.media_failures_noted = revision >= MEDIA_FAILURES_NOTED
        self.forbidden_videos_noted = revision >= FORBIDDEN_VIDEOS_NOTED
        self.comment_videos_asked = 0  # videos whose comment threads this run asked for
        self.forbidden_videos = 0  # of them, those answered `forbidden`
        self.last_forbidden: Exchange | None = None
        self.account = account
        self.state = state
        self.window = window
        self.base = account.api_base.rstrip("/")
        now = _time(window.started_at) or datetime.now(UTC)
        self.recheck_since = _time(window.recheck_since) or now
        self.quota_day = now.astimezone(PACIFIC).date().isoformat()
        self.daily_quota = int(account.options.get("daily_quota", 10_000))
        day, _, units = (state.cursor(QUOTA_CURSOR) or "").partition(":")
        self.used = int(units) if day == self.quota_day and units.isdigit() else 0
        self.pending = (state.cursor(PENDING_CURSOR) or "").split()
        self.remaining: list[str] | None = None  # videos whose comments are still to read, once planned
        self.follow_ups = FollowUps(state, FOLLOW_UPS_CURSOR, window, kinds=("post",))
        self.seen = RecentSet()  # item keys handled lately in this run

    @staticmethod
    def video_key(video_id: str) -> str:
        return f"youtube:video:{video_id}"

    @staticmethod
    def comment_key(comment_id: str) -> str:
        return f"youtube:comment:{comment_id}"

    # -- calls and quota -----------------------------------------------------------------------------------
    def call(self, method: str, params: dict[str, Any], expected: tuple[str, ...] = ()) -> Exchange:
        """One API call, its units counted; stops the run before the quota is spent (see module doc).

        Answers whose Google error reason is in `expected` are returned for the caller to read.
        """
        if self.used + 1 > self.daily_quota:
            raise _QuotaSpent(
                f"{self.used} of the daily_quota of {self.daily_quota} units are spent for {self.quota_day} "
                "(the quota resets at midnight Pacific time)"
            )
        before = self.session.requests_made
        exchange = self.session.get(f"{self.base}{API_PATH}{method}", params, ok=(200, 400, 403, 404))
        self.used += max(1, self.session.requests_made - before)  # a retried call is paid for every attempt
        if exchange.status == 200:
            return exchange
        reason = google_reason(exchange)
        if exchange.status == 403 and reason in QUOTA_REASONS:
            self.used = max(self.used, self.daily_quota)
            raise _QuotaSpent(f"YouTube answered HTTP 403 {reason} at {exchange.url}")
        if reason and reason in expected:
            return exchange
        if exchange.status in (400, 403) and reason in ("keyInvalid", "badRequest", "forbidden", "authError", ""):
            raise self.refused(exchange, reason)
        raise PlatformError(
            f"GET {exchange.url}: HTTP {exchange.status} {reason} (WARC record {exchange.ref.record_id})".replace(
                "  ", " "
            )
        )

    def refused(self, exchange: Exchange, reason: str, why: str = "") -> AuthError:
        return AuthError(
            f"account {self.account.name}: YouTube refused the credential from {self.account.credential_ref} "
            f"(HTTP {exchange.status} {reason or 'error'} at {exchange.url}{why}); renew the API key or OAuth token"
        )

    def paged(self, method: str, params: dict[str, Any], expected: tuple[str, ...] = ()) -> Iterator[Exchange]:
        """Every page of a list call, following nextPageToken; a page with an expected error ends it."""
        token: str | None = None
        used: set[str] = set()
        previous: list[Any] = []
        while True:
            exchange = self.call(method, {**params, **({"pageToken": token} if token else {})}, expected)
            if exchange.status != 200:
                yield exchange
                return
            body = exchange.json()
            _expect(isinstance(body, dict) and isinstance(body.get("items"), list), exchange, "a list response")
            ids = [item.get("id") for item in body["items"] if isinstance(item, dict)]
            token = body.get("nextPageToken")
            if (ids and ids == previous) or (token and token in used):
                raise PlatformError(
                    f"account {self.account.name}: paging loop at {exchange.url}: the nextPageToken led back to "
                    "a page already read in this listing; the listing stopped"
                )
            yield exchange
            if not token:
                return
            used.add(token)
            previous = ids

    # -- the run -------------------------------------------------------------------------------------------
    def fetch(self) -> Iterator[Observation]:
        try:
            yield from self.fetch_channel()
        except _QuotaSpent as stop:
            yield from self.quota_stop(stop.why)
        except ArchiverError:
            yield CursorUpdate(QUOTA_CURSOR, f"{self.quota_day}:{self.used}")
            raise
        yield CursorUpdate(QUOTA_CURSOR, f"{self.quota_day}:{self.used}")

    def quota_stop(self, why: str) -> Iterator[Observation]:
        if self.remaining is None:
            left = self.pending
            what = "the channel's uploads were not all listed yet; the next run lists them again"
        else:
            left = self.remaining
            what = "nothing is left"
        if left:
            named = " ".join(left[:NAMED_IN_NOTICE])
            if len(left) > NAMED_IN_NOTICE:
                named += f" and {len(left) - NAMED_IN_NOTICE} more"
            what = f"comments of {len(left)} video(s) remain for the next run: {named}"
        if self.remaining is not None:
            # Every video owed comments was read but these: the pending list now says all that is owed, and
            # the next run starts with them. Ending the follow-ups here keeps a channel that takes more than
            # a day's quota from re-reading every video stored since the first stop, day after day.
            yield CursorUpdate(PENDING_CURSOR, " ".join(left))
            yield from self.follow_ups.finished()
        yield Notice(f"account {self.account.name}: YouTube quota stop ({why}); {what}")

    def fetch_channel(self) -> Iterator[Observation]:
        yield from self.follow_ups.begin()
        exchange = self.call("channels", {"part": "snippet,contentDetails", **_channel_selector(self.account)})
        body = exchange.json()
        _expect(isinstance(body, dict) and isinstance(body.get("items"), list), exchange, "a channel list")
        if not body["items"]:
            raise PlatformError(
                f"account {self.account.name}: YouTube has no channel {self.account.account!r}; fix `account` "
                '(a channel id UC..., an @handle, or empty with auth = "oauth" for the token\'s own channel)'
            )
        channel = body["items"][0]
        snippet = channel.get("snippet") or {}
        yield AccountIdentity(str(channel["id"]), snippet.get("customUrl"), snippet.get("title"))
        uploads = ((channel.get("contentDetails") or {}).get("relatedPlaylists") or {}).get("uploads")
        _expect(bool(uploads), exchange, "contentDetails.relatedPlaylists.uploads")

        # In listing order, each video once (dict, not list: membership in a list made a large channel quadratic)
        listed: dict[str, None] = {}
        for page in self.paged("playlistItems", {"part": "contentDetails", "playlistId": uploads, "maxResults": 50}):
            for entry in page.json()["items"]:
                video_id = (entry.get("contentDetails") or {}).get("videoId")
                _expect(bool(video_id), page, "a playlistItem with contentDetails.videoId")
                listed.setdefault(video_id)

        to_read: set[str] = set()
        ids = list(listed)
        for start in range(0, len(ids), 50):
            batch = ids[start : start + 50]
            page = self.call("videos", {"part": "snippet,status,statistics", "id": ",".join(batch), "maxResults": 50})
            for video in page.json().get("items") or []:
                key = self.video_key(video["id"])
                published = _time((video.get("snippet") or {}).get("publishedAt"))
                recent = published is not None and published >= self.recheck_since
                if self.state.latest(key) is None or recent or self.follow_ups.owed(key):
                    to_read.add(video["id"])
                yield from self.observe_video(video, page.ref)

        yield from self.confirm_videos_absent(set(listed))
        ordered = [v for v in self.pending if v in listed or self.state.latest(self.video_key(v))]
        chosen = set(ordered)
        ordered += [v for v in listed if v in to_read and v not in chosen]
        self.remaining = ordered
        while self.remaining:
            yield from self.read_comments(self.remaining[0])
            self.remaining.pop(0)
        asked = self.comment_videos_asked
        if self.last_forbidden is not None and asked > 1 and self.forbidden_videos == asked:
            # Not one of several videos' comments could be read: the credential cannot read comments at all (one
            # video alone, a quiet night's members-only upload, proves nothing of the credential). Raised before
            # the pending list and the follow-ups are cleared, so the next run asks for these videos again.
            why = f", and for the comments of all {asked} video(s) asked"
            raise self.refused(self.last_forbidden, "forbidden", why)
        if self.pending:
            yield CursorUpdate(PENDING_CURSOR, "")
        yield from self.follow_ups.finished()

    def confirm_videos_absent(self, listed: set[str]) -> Iterator[Observation]:
        """Known videos the complete uploads listing no longer shows: looked up by id; absent = gone."""
        missing = [
            k
            for k in self.state.known_items(kinds=("post",))
            if not k.deleted and k.native_id not in listed and k.item_key not in self.seen
        ]
        for start in range(0, len(missing), LOOKUP_BATCH):
            batch = missing[start : start + LOOKUP_BATCH]
            ids = ",".join(k.native_id for k in batch)
            lookup = self.call("videos", {"part": "snippet,status,statistics", "id": ids, "maxResults": 50})
            found = {v["id"]: v for v in lookup.json().get("items") or []}
            for known in batch:
                if known.native_id in found:
                    yield from self.observe_video(found[known.native_id], lookup.ref)
                else:
                    evidence = self.lookup_evidence(lookup, known.native_id)
                    evidence["absent_from"] = "the channel's uploads playlist, listed in full"
                    if self.account.options.get("auth", "api_key") == "api_key":  # sees what the public sees
                        evidence["also_if"] = PRIVATE_VIDEO_CAVEAT
                    yield Deletion(known.item_key, evidence, lookup.ref)

    # -- comments ------------------------------------------------------------------------------------------
    def read_comments(self, video_id: str) -> Iterator[Observation]:
        """Every thread of a video and all their replies; known comments missing from it are looked up."""
        video_key = self.video_key(video_id)
        present: set[str] = set()
        params = {"part": "snippet,replies", "videoId": video_id, "maxResults": 100, "textFormat": "plainText"}
        expected = ("commentsDisabled", "videoNotFound") + (("forbidden",) if self.forbidden_videos_noted else ())
        self.comment_videos_asked += 1
        for page in self.paged("commentThreads", params, expected=expected):
            if page.status != 200:
                # Returns before the lookups of known comments missing from the read: a video whose comments
                # were not read in full proves none of them deleted.
                reason = google_reason(page)
                if reason == "forbidden":
                    self.forbidden_videos += 1
                    self.last_forbidden = page
                    reason = "forbidden: this credential may not read the video's comments"
                yield Notice(f"video {video_id}: comments not read ({reason} at {page.url}); nothing concluded")
                return
            for thread in page.json()["items"]:
                snippet = thread.get("snippet") or {}
                top = snippet.get("topLevelComment")
                _expect(isinstance(top, dict) and "id" in top, page, "a commentThread with a topLevelComment")
                present.add(self.comment_key(top["id"]))
                yield self.comment_item(top, page.ref, video_key, video_key)
                included = (thread.get("replies") or {}).get("comments") or []
                replies: list[tuple[dict[str, Any], CaptureRef]] = [(r, page.ref) for r in included]
                if int(snippet.get("totalReplyCount") or 0) > len(included):
                    replies = list(self.fetch_replies(top["id"]))
                for reply, ref in replies:
                    present.add(self.comment_key(reply["id"]))
                    yield self.comment_item(reply, ref, video_key, self.comment_key(top["id"]))
        missing = [
            k
            for k in self.state.known_items(thread_key=video_key)
            if k.kind == "comment" and not k.deleted and k.item_key not in present
        ]
        for start in range(0, len(missing), LOOKUP_BATCH):
            batch = missing[start : start + LOOKUP_BATCH]
            params = {"part": "snippet", "id": ",".join(k.native_id for k in batch), "textFormat": "plainText"}
            lookup = self.call("comments", params)
            found = {c["id"]: c for c in lookup.json().get("items") or []}
            for known in batch:
                if known.native_id in found:
                    yield self.comment_item(found[known.native_id], lookup.ref, video_key, known.parent_key)
                else:
                    evidence = self.lookup_evidence(lookup, known.native_id)
                    evidence["absent_from"] = f"the comment threads of video {video_id}, read in full"
                    evidence["also_if"] = HELD_COMMENT_CAVEAT
                    yield Deletion(known.item_key, evidence, lookup.ref)

    def fetch_replies(self, thread_id: str) -> Iterator[tuple[dict[str, Any], CaptureRef]]:
        params = {"part": "snippet", "parentId": thread_id, "maxResults": 100, "textFormat": "plainText"}
        for page in self.paged("comments", params):
            for reply in page.json()["items"]:
                _expect(isinstance(reply, dict) and "id" in reply, page, "a comment with an id")
                yield reply, page.ref

    # -- items ---------------------------------------------------------------------------------------------
    def observe_video(self, video: dict[str, Any], ref: CaptureRef) -> Iterator[Observation]:
        key = self.video_key(video["id"])
        if key in self.seen:
            return
        self.seen.add(key)
        snippet = video.get("snippet") or {}
        status = video.get("status") or {}
        thumbnails = snippet.get("thumbnails") or {}
        sizes = ("maxres", "standard", "high", "medium", "default")
        best = next((thumbnails[n] for n in sizes if n in thumbnails), None)
        media: list[dict[str, Any]] = []
        if best and best.get("url"):
            entry = {"id": f"{video['id']}/thumbnail", "type": "image", "url": best["url"], "description": "thumbnail"}
            yield from self.fetch_thumbnail(entry)
            media.append(entry)
        title, description = str(snippet.get("title") or ""), str(snippet.get("description") or "")
        yield Item(
            item_key=key,
            platform="youtube",
            kind="post",
            native_id=str(video["id"]),
            source=ref,
            raw=video,
            text=f"{title}\n\n{description}".strip(),
            created_at=snippet.get("publishedAt"),
            thread_key=key,
            author_id=snippet.get("channelId"),
            author_name=snippet.get("channelTitle"),
            url=f"https://www.youtube.com/watch?v={video['id']}",
            visibility=status.get("privacyStatus"),
            media=tuple(media),
            extra={"title": title, "tags": snippet.get("tags") or [], "madeForKids": status.get("madeForKids")},
        )

    def fetch_thumbnail(self, entry: dict[str, Any]) -> Iterator[Observation]:
        url = entry["url"]
        if not self.account.media or self.state.has_media(url):
            return
        # Thumbnails live on Google's image host: the credential is never sent there.
        exchange = yield from fetch_media_file(
            self.session, url, self.media_failures_noted, what="thumbnail", kept="the video"
        )
        if exchange is not None and exchange.status == 200:
            digest = exchange.body_sha256
            entry["sha256"] = digest
            yield MediaFile(url, digest, exchange.body_size, exchange.headers.get("Content-Type"), exchange.ref)

    def comment_item(self, comment: dict[str, Any], ref: CaptureRef, video_key: str, parent_key: str | None) -> Item:
        snippet = comment.get("snippet") or {}
        published, updated = snippet.get("publishedAt"), snippet.get("updatedAt")
        changed = _time(updated) is not None and _time(published) is not None and _time(updated) > _time(published)
        video_id = video_key.rsplit(":", 1)[1]
        return Item(
            item_key=self.comment_key(comment["id"]),
            platform="youtube",
            kind="comment",
            native_id=str(comment["id"]),
            source=ref,
            raw=comment,
            # textOriginal is the author's own text (given to the channel owner); textDisplay may be rendered.
            text=str(snippet.get("textOriginal") or snippet.get("textDisplay") or ""),
            created_at=published,
            edited_at=updated if changed else None,
            parent_key=parent_key,
            thread_key=video_key,
            author_id=(snippet.get("authorChannelId") or {}).get("value"),
            author_handle=snippet.get("authorDisplayName"),
            author_name=snippet.get("authorDisplayName"),
            url=f"https://www.youtube.com/watch?v={video_id}&lc={comment['id']}",
        )

    def lookup_evidence(self, exchange: Exchange, native_id: str) -> dict[str, Any]:
        return {
            "method": "lookup",
            "url": exchange.url,
            "http_status": exchange.status,
            "looked_up": native_id,
            "answer": "not among the returned items",
            "response": exchange.body[:500].decode("utf-8", "replace"),
            "warc_file": exchange.ref.warc_file,
            "warc_record_id": exchange.ref.record_id,
        }
