"""LinkedIn organisation pages (Community Management API): the page's posts, every comment and reply, media.

API (learn.microsoft.com/linkedin, versioned REST): the Posts finder GET /rest/posts?q=author&author={org URN}
(start/count paging, newest change first with sortBy=LAST_MODIFIED), GET /rest/posts/{post URN},
GET /rest/socialActions/{post or comment URN}/comments (start/count; replies are the comments of a comment),
GET /rest/socialActions/{URN}/comments/{id}, and /rest/images|videos|documents/{URN} for a media
`downloadUrl`. Every call carries `LinkedIn-Version: YYYYMM` and `X-Restli-Protocol-Version: 2.0.0`; URNs
are percent-encoded wherever they appear in a URL.

Incremental: posts come newest change first; the listing stops at posts unchanged since the last complete
pass and older than the re-check window. Posts in the window get their comments re-read; a known post the
listing did not show is looked up by URN, and only a 404 there proves it deleted (likewise a comment, by its
own lookup, after it was missing from a complete read of its thread).

Rate limits: LinkedIn answers a spent daily budget with a bare 429 (no Retry-After, no rate-limit headers)
and resets it at midnight UTC. The account then stops for the day: the time it may call again is kept as a
cursor, and runs before then do not call LinkedIn for it at all; the other accounts carry on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

import requests

from ..config import AccountConfig
from ..errors import AuthError, PlatformError, RateLimitedError
from ..http import Exchange, Session, check_json, check_request, retry_after_seconds, with_params
from ..items import AccountIdentity, CursorUpdate, Deletion, Item, MediaFile, Notice, Observation
from ..warc import CaptureRef, iso
from .base import (
    EMPTY_PAGES_MAX,
    AccountState,
    Credential,
    FetchWindow,
    RecentMap,
    RecentSet,
    RequestRevisions,
    fetch_media_file,
)

PAGE_COUNT = 50
# Request revision 2: a media file is known by its stable /rest/images (videos, documents) resource, and an item
# whose attachment the archive lacks is resolved again though its content is unchanged (a CDN that refused the
# signed downloadUrl once no longer loses the image for good). Revision 1 keyed the file by the signed URL and
# resolved media only with changed content.
STABLE_MEDIA = 2
# Request revision 3: a media download that fails (a 5xx, no answer, after the retries) leaves its item archived
# without the file, with a notice, and the run goes on (base.fetch_media_file); before, it stopped the account.
MEDIA_FAILURES_NOTED = 3
COMMENT_COUNT = 100
DEFAULT_VERSION = "202610"
STOPPED_UNTIL = "daily_limit_until"  # cursor: no call for this account before this ISO time (UTC)
MODIFIED_UPTO = "posts_last_modified_upto"  # cursor: newest lastModifiedAt (ms) of the last complete listing
MEDIA_RESOURCES = {"image": "images", "video": "videos", "document": "documents"}


def encode_urn(urn: str) -> str:
    """A URN as a URL path segment or query value: every reserved character percent-encoded (Rest.li 2.0)."""
    return quote(urn, safe="")


def _ms_iso(value: Any) -> str | None:
    if not isinstance(value, int | float):
        return None
    return iso(datetime.fromtimestamp(value / 1000, UTC))


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def next_midnight_utc(at: datetime) -> datetime:
    return (at.astimezone(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


class DailyLimitUTC:
    """LinkedIn's rate limit: a bare 429 means the day's calls are spent until 00:00 UTC.

    LinkedIn sends no Retry-After and no rate-limit headers, so the only safe reading of a bare 429 is "not
    again today": the wait it asks for lasts until midnight UTC, which the session turns into a
    RateLimitedError unless midnight is within max_rate_limit_wait (then it waits and goes on), and any later
    request on the session waits for midnight too. A Retry-After, should LinkedIn ever send one, is honoured.
    The connector turns the RateLimitedError into a stop until midnight UTC that later runs respect.
    """

    def __init__(self) -> None:
        self.until: float | None = None

    def observe(self, response: requests.Response, now: float) -> None:
        if response.status_code == 429 and not response.headers.get("Retry-After"):
            self.until = next_midnight_utc(datetime.fromtimestamp(now, UTC)).timestamp()

    def wait_before_request(self, now: float, url: str = "") -> float:  # one limit for every call
        return max(0.0, self.until - now) if self.until is not None else 0.0

    def wait_after_429(self, response: requests.Response, now: float) -> float:
        asked = retry_after_seconds(response.headers, now)
        if asked is not None:
            return asked
        return next_midnight_utc(datetime.fromtimestamp(now, UTC)).timestamp() - now


def _expect(condition: bool, exchange: Exchange, what: str) -> None:
    if not condition:
        raise PlatformError(
            f"GET {exchange.url}: unexpected response shape ({what}); "
            f"raw response in WARC record {exchange.ref.record_id}"
        )


def organization_urn(account: AccountConfig) -> str:
    ref = (account.account or "").strip()
    if ref.isdigit():
        return f"urn:li:organization:{ref}"
    if ref.startswith("urn:li:organization:") and ref.rsplit(":", 1)[1].isdigit():
        return ref
    raise PlatformError(
        f"account {account.name}: account = {ref!r} is not an organisation; set it to the page's "
        "urn:li:organization:<id> (or the numeric id)"
    )


class LinkedInConnector(RequestRevisions):
    platform: ClassVar[str] = "linkedin"
    token_param: ClassVar[str | None] = None  # a 3-legged OAuth member token, sent as a Bearer header
    REQUEST_REVISION: ClassVar[int] = MEDIA_FAILURES_NOTED

    def __init__(self) -> None:
        self.policy = DailyLimitUTC()

    def rate_limit_policy(self) -> DailyLimitUTC:
        return self.policy

    def check_credential(self, account: AccountConfig, token: str, timeout: float) -> Credential:
        """The organisation lookup: proves the token may read the page (LinkedIn tells no expiry here)."""
        urn = organization_urn(account)
        url = f"{account.api_base}/rest/organizations/{urn.rsplit(':', 1)[1]}"
        headers = {**_headers(account), "Authorization": f"Bearer {token}"}
        response = check_request(account.name, "GET", url, headers=headers, timeout=timeout)
        if response.status_code in (401, 403):
            raise AuthError(
                f"account {account.name}: LinkedIn refused the token from {account.credential_ref} "
                f"(HTTP {response.status_code}); renew it with an administrator of the page"
            )
        if response.status_code != 200:
            raise PlatformError(f"account {account.name}: GET {url} answered HTTP {response.status_code}")
        try:
            return Credential(str(check_json(account.name, response).get("localizedName") or urn))
        except AttributeError:
            raise PlatformError(f"account {account.name}: GET {url} did not answer an Organization") from None

    def fetch(
        self, session: Session, account: AccountConfig, state: AccountState, window: FetchWindow
    ) -> Iterator[Observation]:
        now = _parse_time(window.started_at) if window.started_at else datetime.now(UTC)
        stopped_until = state.cursor(STOPPED_UNTIL)
        if stopped_until and now < _parse_time(stopped_until):
            raise RateLimitedError(
                f"account {account.name}: LinkedIn's daily call limit was reached earlier; not called again "
                f"before {stopped_until} (midnight UTC), when the next run resumes"
            )
        run = _LinkedInRun(session, account, state, window, now, self.revision)
        try:
            yield from run.fetch()
        except RateLimitedError:
            # The session gave up on a 429 (DailyLimitUTC): the day's budget is spent. The stop is dated from
            # the last captured exchange, so that a rebuild, which replays it, dates it the same.
            until = iso(next_midnight_utc(run.last_seen))
            yield CursorUpdate(STOPPED_UNTIL, until)
            raise RateLimitedError(
                f"account {account.name}: LinkedIn answered HTTP 429 (daily call limit reached) at {run.asking}; "
                f"this account is not called again before {until} (midnight UTC); the other accounts carry on"
            ) from None


def _headers(account: AccountConfig) -> dict[str, str]:
    return {
        "LinkedIn-Version": str(account.options.get("api_version", DEFAULT_VERSION)),
        "X-Restli-Protocol-Version": "2.0.0",
    }


class _LinkedInRun:
    def __init__(
        self,
        session: Session,
        account: AccountConfig,
        state: AccountState,
        window: FetchWindow,
        now: datetime,
        revision: int,
    ):
        self.session = session
        self.stable_media = revision >= STABLE_MEDIA
        self.media_failures_noted = revision >= MEDIA_FAILURES_NOTED
        self.account = account
        self.state = state
        self.window = window
        self.base = account.api_base.rstrip("/")
        self.headers = _headers(account)
        self.org_urn = organization_urn(account)
        self.seen = RecentSet()  # item keys handled lately in this run
        self.window_posts: set[str] = set()  # posts of the re-check window read this run (all: the look-ups skip them)
        # media URN -> what resolving it added to its entry ({} when it failed), for a URN that comes again
        self.media_fetched: RecentMap[dict[str, str]] = RecentMap()
        self.recheck_ms = int(_parse_time(window.recheck_since).timestamp() * 1000)
        self.last_seen = now  # capture time of the latest exchange
        self.asking = ""  # the call in progress, for messages

    @staticmethod
    def key(urn: str) -> str:
        return f"linkedin:{urn}"

    def get(self, path: str, params: dict[str, Any] | None = None, *, ok: tuple[int, ...] = (200,)) -> Exchange:
        """An API call with LinkedIn's headers (a 429 is the session's and DailyLimitUTC's to handle)."""
        finder = {"X-RestLi-Method": "FINDER"} if params and "q" in params else {}
        self.asking = with_params(f"{self.base}{path}", params)
        return self.seen_at(self.session.get(f"{self.base}{path}", params, ok=ok, headers={**self.headers, **finder}))

    def seen_at(self, exchange: Exchange) -> Exchange:
        if exchange.ref.date:
            self.last_seen = _parse_time(exchange.ref.date)
        return exchange

    def paged(self, path: str, params: dict[str, Any], count: int) -> Iterator[tuple[Exchange, list[dict]]]:
        """start/count paging until LinkedIn shows no next page (a `next` link, or `total` not yet reached).

        A short or empty page is not the end while LinkedIn says there is more: it can leave out, after paging,
        what the member may not see. More than `EMPTY_PAGES_MAX` empty pages in a row is a paging loop.
        """
        start = 0
        previous: list[Any] = []
        empty_in_a_row = 0
        while True:
            exchange = self.get(path, {**params, "start": start, "count": count})
            page = exchange.json()
            _expect(isinstance(page, dict) and isinstance(page.get("elements"), list), exchange, "a collection")
            elements = page["elements"]
            yield exchange, elements
            paging = page.get("paging") or {}
            nexts = [link for link in paging.get("links") or [] if link.get("rel") == "next"]
            has_next = bool(nexts)
            next_start = None
            for link in nexts:
                moved = parse_qs(urlsplit(str(link.get("href", ""))).query).get("start", ["0"])[-1]
                if not moved.isdigit() or int(moved) <= start:
                    raise PlatformError(
                        f"account {self.account.name}: paging loop at {exchange.url}: the next link "
                        f"{link.get('href')} does not move past start={start}; the listing stopped"
                    )
                next_start = int(moved)
            total = paging.get("total")
            if isinstance(total, int) and start + len(elements) < total:
                has_next = True
            if not has_next:
                return
            empty_in_a_row = 0 if elements else empty_in_a_row + 1
            if empty_in_a_row > EMPTY_PAGES_MAX:
                raise PlatformError(
                    f"account {self.account.name}: paging loop at {exchange.url}: {empty_in_a_row} empty pages in "
                    "a row, each saying there is more; the listing stopped"
                )
            ids = [e.get("id") or e.get("commentUrn") for e in elements if isinstance(e, dict)]
            if ids and ids == previous:
                raise PlatformError(
                    f"account {self.account.name}: paging loop at {exchange.url}: the page repeats the previous "
                    "one; the listing stopped"
                )
            previous = ids
            # Where LinkedIn's next link says; else past what came (a short page is not the end while `total`
            # says there is more).
            start = next_start if next_start is not None else start + (len(elements) or count)

    # -- the page ------------------------------------------------------------------------------------------
    def fetch(self) -> Iterator[Observation]:
        org_id = self.org_urn.rsplit(":", 1)[1]
        exchange = self.get(f"/rest/organizations/{org_id}")
        org = exchange.json()
        _expect(isinstance(org, dict) and "id" in org, exchange, "an Organization")
        yield AccountIdentity(self.org_urn, org.get("vanityName"), org.get("localizedName"))
        yield from self.fetch_posts()
        yield from self.recheck_posts()

    def fetch_posts(self) -> Iterator[Observation]:
        """The page's posts, most recently changed first, down to those unchanged since the last complete pass."""
        upto = self.state.cursor(MODIFIED_UPTO)
        newest: int | None = None
        params = {"author": self.org_urn, "q": "author", "sortBy": "LAST_MODIFIED"}
        for exchange, posts in self.paged("/rest/posts", params, PAGE_COUNT):
            for post in posts:
                _expect(isinstance(post, dict) and "id" in post, exchange, "a Post with an id")
                modified = post.get("lastModifiedAt") or post.get("createdAt") or 0
                newest = max(newest or modified, modified)
                if upto is not None and modified <= int(upto) and modified < self.recheck_ms:
                    break  # unchanged since a complete pass and outside the re-check window: so is the rest
                yield from self.read_post(post, exchange.ref)
            else:
                continue
            break
        if newest is not None:
            yield CursorUpdate(MODIFIED_UPTO, str(max(newest, int(upto or 0))))

    def recheck_posts(self) -> Iterator[Observation]:
        """Known posts of the window the listing did not show: a lookup by URN decides (404 = deleted)."""
        for known in self.state.known_items(created_since=self.window.recheck_since, kinds=("post",)):
            if known.deleted or known.item_key in self.window_posts:
                continue
            exchange = self.get(f"/rest/posts/{encode_urn(known.native_id)}", ok=(200, 404))
            if exchange.status == 404:
                yield Deletion(known.item_key, self.lookup_evidence(exchange), exchange.ref)
                continue
            post = exchange.json()
            _expect(isinstance(post, dict) and "id" in post, exchange, "a Post")
            yield from self.read_post(post, exchange.ref)

    def read_post(self, post: dict[str, Any], ref: CaptureRef) -> Iterator[Observation]:
        key = self.key(post["id"])
        if key in self.seen:
            return
        self.seen.add(key)
        item = self.post_item(post, ref, self.media_entries(post))
        if item.created_at is None or item.created_at >= self.window.recheck_since:
            self.window_posts.add(key)  # only these are ever looked up: memory follows the window, not the page
        yield from self.observe(item)
        yield from self.read_comments(post["id"])

    # -- comments ------------------------------------------------------------------------------------------
    def read_comments(self, post_urn: str) -> Iterator[Observation]:
        """Every comment and reply under a post; known ones missing from this complete read are looked up."""
        post_key = self.key(post_urn)
        present: set[str] = set()
        yield from self.read_comment_level(post_urn, post_key, post_key, present)
        missing = [
            known
            for known in self.state.known_items(thread_key=post_key)
            if known.kind == "comment" and not known.deleted and known.item_key not in present
        ]
        for known in missing:
            on = (known.parent_key or post_key).removeprefix("linkedin:")
            comment_id = known.native_id.rstrip(")").rsplit(",", 1)[-1]
            lookup = self.get(f"/rest/socialActions/{encode_urn(on)}/comments/{comment_id}", ok=(200, 404))
            if lookup.status == 404:
                evidence = self.lookup_evidence(lookup)
                evidence["absent_from"] = {"comments_of": post_urn}
                yield Deletion(known.item_key, evidence, lookup.ref)
            else:
                comment = lookup.json()
                _expect(isinstance(comment, dict) and "commentUrn" in comment, lookup, "a Comment")
                yield from self.observe(self.comment_item(comment, lookup.ref, post_key))

    def read_comment_level(self, on: str, parent_key: str, post_key: str, present: set[str]) -> Iterator[Observation]:
        for exchange, comments in self.paged(f"/rest/socialActions/{encode_urn(on)}/comments", {}, COMMENT_COUNT):
            for comment in comments:
                _expect(isinstance(comment, dict) and "commentUrn" in comment, exchange, "a Comment with a commentUrn")
                item = self.comment_item(comment, exchange.ref, post_key, parent_key)
                present.add(item.item_key)
                yield from self.observe(item)
                if (comment.get("commentsSummary") or {}).get("totalFirstLevelComments"):
                    yield from self.read_comment_level(comment["commentUrn"], item.item_key, post_key, present)

    # -- items ---------------------------------------------------------------------------------------------
    def observe(self, item: Item) -> Iterator[Observation]:
        """Yield an item, resolving its media into the WARC first when it is new or changed, or (revision 2) when
        the archive lacks one of its files."""
        known = self.state.latest(item.item_key)
        unchanged = known is not None and known.content_sha256 == item.content_sha256
        if not item.media or not self.account.media or (unchanged and not self.lacks_media(item)):
            yield item
            return
        media = []
        for entry in item.media:
            media.append((yield from self.resolve_media(dict(entry))))
        yield replace(item, media=tuple(media))

    def lacks_media(self, item: Item) -> bool:
        """Whether an attachment of the item is not in the archive (revision 2: known by its stable resource)."""
        return self.stable_media and any(e.get("url") and not self.state.has_media(e["url"]) for e in item.media)

    def resolve_media(self, entry: dict[str, Any]) -> Iterator[Observation]:
        """The media's downloadUrl from its resource, then its bytes (from the CDN, without the token)."""
        urn = entry["id"]
        resource = MEDIA_RESOURCES.get(urn.split(":")[2] if urn.count(":") >= 3 else "")
        if resource is None:
            return entry
        if urn in self.media_fetched:  # another post of this run shows the same image: same bytes, same digest
            entry.update(self.media_fetched.get(urn) or {})
            return entry
        if self.stable_media and self.state.has_media(entry["url"]):  # captured by an earlier run
            return entry
        self.media_fetched.put(urn, {})
        meta = self.get(f"/rest/{resource}/{encode_urn(urn)}", ok=(200, 403, 404))
        if meta.status != 200:
            yield Notice(f"media {urn}: {meta.url} answered HTTP {meta.status}; kept the item without it")
            return entry
        download = (meta.json() or {}).get("downloadUrl")
        if not download:
            yield Notice(f"media {urn}: no downloadUrl (status {meta.json().get('status')}); kept the item without it")
            return entry
        exchange = yield from fetch_media_file(self.session, download, self.media_failures_noted, what=f"media {urn}:")
        if exchange is None:
            return entry
        self.seen_at(exchange)
        if exchange.status != 200:
            return entry
        digest = exchange.body_sha256
        resolved = {"download_url": exchange.url, "sha256": digest}
        self.media_fetched.put(urn, resolved)
        entry.update(resolved)
        known_by = entry["url"] if self.stable_media else exchange.url  # revision 1: the signed URL
        yield MediaFile(known_by, digest, exchange.body_size, exchange.headers.get("Content-Type"), exchange.ref)
        return entry

    def media_entries(self, post: dict[str, Any]) -> list[dict[str, Any]]:
        """The media a post references by URN; `url` is the stable resource (its downloadUrl is signed)."""
        content = post.get("content") or {}
        refs: list[tuple[str, str | None]] = []
        if isinstance(content.get("media"), dict) and content["media"].get("id"):
            refs.append((content["media"]["id"], content["media"].get("altText") or content["media"].get("title")))
        for image in (content.get("multiImage") or {}).get("images") or []:
            if image.get("id"):
                refs.append((image["id"], image.get("altText")))
        article = content.get("article") or {}
        if article.get("thumbnail"):
            refs.append((article["thumbnail"], article.get("thumbnailAltText")))
        return [self.media_entry(urn, description) for urn, description in refs]

    def media_entry(self, urn: str, description: str | None) -> dict[str, Any]:
        kind = urn.split(":")[2] if urn.count(":") >= 3 else "unknown"
        resource = MEDIA_RESOURCES.get(kind)
        url = f"{self.base}/rest/{resource}/{encode_urn(urn)}" if resource else None
        return {"id": urn, "type": kind, "url": url, "description": description}

    def post_item(self, post: dict[str, Any], ref: CaptureRef, media: list[dict[str, Any]]) -> Item:
        created = post.get("createdAt") or post.get("publishedAt")
        modified = post.get("lastModifiedAt")
        article = (post.get("content") or {}).get("article") or {}
        author = str(post.get("author") or "")
        # LinkedIn moves lastModifiedAt for changes of its own too (a lifecycle state, a moderation); a post its
        # author never edited says so, and a new version of it is then evidence of a change, not of an edit.
        not_by_author = (post.get("lifecycleStateInfo") or {}).get("isEditedByAuthor") is False
        return Item(
            item_key=self.key(post["id"]),
            platform="linkedin",
            kind="post",
            native_id=post["id"],
            source=ref,
            raw=post,
            text=str(post.get("commentary") or ""),
            created_at=_ms_iso(created),
            edited_at=_ms_iso(modified) if modified and modified != created else None,
            thread_key=self.key(post["id"]),
            author_id=author or None,
            author_handle=author or None,
            url=f"https://www.linkedin.com/feed/update/{post['id']}/",
            visibility=post.get("visibility"),
            media=tuple(media),
            extra={
                "lifecycleState": post.get("lifecycleState"),
                "article": {k: article.get(k) for k in ("source", "title", "description")} if article else None,
                "reshareOf": (post.get("reshareContext") or {}).get("parent"),
            },
            not_an_edit="LinkedIn says its author has not edited the post (isEditedByAuthor false)"
            if not_by_author
            else None,
        )

    def comment_item(
        self, comment: dict[str, Any], ref: CaptureRef, post_key: str, parent_key: str | None = None
    ) -> Item:
        urn = comment["commentUrn"]
        created = (comment.get("created") or {}).get("time")
        modified = (comment.get("lastModified") or {}).get("time")
        if parent_key is None:
            parent = comment.get("parentComment")
            parent_key = self.key(parent) if parent else post_key
        media = []
        for content in comment.get("content") or []:
            image = (content.get("entity") or {}).get("image")
            if image:
                media.append(self.media_entry(image, None))
            elif content.get("url"):
                media.append({"id": None, "type": str(content.get("type", "")).lower(), "url": content["url"]})
        actor = comment.get("actor")
        return Item(
            item_key=self.key(urn),
            platform="linkedin",
            kind="comment",
            native_id=urn,
            source=ref,
            raw=comment,
            text=str((comment.get("message") or {}).get("text") or ""),
            created_at=_ms_iso(created),
            edited_at=_ms_iso(modified) if modified and modified != created else None,
            parent_key=parent_key,
            thread_key=post_key,
            author_id=actor,
            author_handle=actor,
            media=tuple(media),
        )

    def lookup_evidence(self, exchange: Exchange) -> dict[str, Any]:
        return {
            "method": "lookup",
            "url": exchange.url,
            "http_status": exchange.status,
            "response": exchange.body[:500].decode("utf-8", "replace"),
            "warc_file": exchange.ref.warc_file,
            "warc_record_id": exchange.ref.record_id,
        }
