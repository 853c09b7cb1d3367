"""The connector contract.

A connector is a generator: given a capturing session (every request it makes is already in the WARC), the
account's configuration and a read-only view of what the archive holds, it yields observations (items,
proven deletions, media files, the account's identity, cursor updates, notices). It touches no database and
no file and keeps no global state; the pipeline appends what it yields, as it yields it.

Rules every connector keeps:
- yield a CursorUpdate only after the listing it summarises completed;
- yield a Deletion only with proof: a direct lookup the platform answered "gone", or absence from a listing
  that completed without error and must have contained the item, confirmed by such a lookup;
- raise a PlatformError (one line, naming the URL) for anything that stops the account; never swallow it;
- name a media file by http.media_label (its host, the WARC record of its answer), never by its URL, whose path
  can be the file's own name (fetch_media_file does, for every connector's downloads and notices).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Generator, Hashable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from ..config import AccountConfig
from ..errors import ArchiverError, AuthError, PlatformError, RateLimitedError
from ..http import DownloadFailed, Exchange, RateLimitPolicy, Refused, Session, media_label, redact_url, with_params
from ..items import CursorUpdate, Notice, Observation
from ..store import KnownItem
from ..warc import iso, utcnow

V = TypeVar("V")

# The answers a media download may give without failing its account: a file refused (401, 403: a CDN that wants
# a signature we do not hold, X's DM media behind OAuth 1.0a) or gone (404, 410) leaves its item archived
# without it, with a notice. Media are fetched without the account's token, so a 401 there says nothing of it.
MEDIA_ANSWERS = (200, 401, 403, 404, 410)


def fetch_media_file(
    session: Session,
    url: str,
    keep_going: bool,
    *,
    what: str = "media",
    kept: str = "the item",
    auth: bool = False,
    ok: tuple[int, ...] = MEDIA_ANSWERS,
) -> Generator[Observation, None, Exchange | None]:
    """GET one media file into the WARC: its exchange, whatever it answered of `ok`, with a Notice when that was not
    200 (its item is archived without it; nothing records the file, so the next run asks again).

    With `keep_going` (the connector's request revision that made it so) a download that failed after the
    session's retries (a 5xx, no answer in time, a redirect not followed, an answer outside `ok`) is a Notice
    too, and None: one file a CDN could not serve tonight does not stop the account's posts and messages from
    being archived. Without it the account fails, as the revision that captured it did (a replay must stop where
    its capture stopped). A throttle past max_rate_limit_wait stops the account either way.

    A notice names the file by media_label (its host, the WARC record of its answer), never by its URL, which can
    hold the file's own name (a Messenger attachment's is the patient's). A replay's errors quote the URI they
    found no answer for: only the live session's words (DownloadFailed, Refused) are repeated."""
    try:
        exchange = session.get(url, auth=auth, ok=ok)
    except (AuthError, RateLimitedError):
        raise
    except PlatformError as exc:
        if not keep_going:
            raise
        why = exc.why if isinstance(exc, DownloadFailed | Refused) else "no answer"
        yield Notice(f"{what} {media_label(url)}: {why}; kept {kept} without it, and the next run asks for it again")
        return None
    if exchange.status != 200:
        label = media_label(exchange.url, exchange.ref.record_id)
        yield Notice(f"{what} {label} answered HTTP {exchange.status}; kept {kept} without it")
    return exchange


class AccountState(Protocol):
    """What a connector may ask of the archive about its own account, and of a thread about every account's
    items in it (read-only)."""

    def cursor(self, name: str) -> str | None: ...
    def has_media(self, url: str) -> bool: ...
    def latest(self, item_key: str) -> KnownItem | None: ...
    def known_items(
        self,
        *,
        created_since: str | None = None,
        kinds: tuple[str, ...] = (),
        thread_key: str | None = None,
        conversation_key: str | None = None,
        key_prefix: str | None = None,
    ) -> list[KnownItem]: ...
    def first_archived_since(self, item_key: str, since: str, kinds: tuple[str, ...] = ()) -> bool:
        """Whether the account's first version of the item (of one of `kinds`) was captured at or after `since`
        (ISO UTC)."""
        ...

    def thread_items(self, thread_key: str) -> list[KnownItem]:
        """Every known item of a thread, whatever account's run captured it (KnownItem.account says which)."""
        ...


@dataclass(frozen=True)
class Credential:
    """What a cheap authenticated call says of a token: whose it is and, where the platform tells, when it
    expires (Meta's debug_token, an OAuth expiry, a session JWT's `exp`)."""

    who: str
    expires_at: datetime | None = None


# A connector that learns its token's expiry during a run yields CursorUpdate(CREDENTIAL_EXPIRY, iso time),
# so that `archiver status` can show the next token to renew without calling any platform.
CREDENTIAL_EXPIRY = "credential_expires_at"
# Empty pages in a row, each saying there is more, before a listing is taken for a paging loop: a platform
# can cut a page before it leaves out what the reader may not see, rarely many pages running.
EMPTY_PAGES_MAX = 20


# Entry ids a listing's loop guard remembers (CursorTrail): a RecentSet of 2,000 holds at least the last 1,000,
# ten pages at the largest page size a connector asks for (100), whatever the listing's length.
LISTED_REMEMBERED = 2_000


def page_digest(text: str) -> bytes:
    """16 bytes for a page's URL, cursor or entry id: what a loop guard keeps of it then does not depend on how
    long the platform (or a hostile server) makes it. A collision (2^-128 a pair) could only stop a listing as a
    loop, never conclude anything from one."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class PageTrail:
    """The pages one listing has asked for. A next link that comes back is a paging loop (a platform bug or
    a hostile answer), not more data: the account stops with an error instead of reading forever.

    One digest a page, about 100 bytes with its set slot, where the URL itself took 150 (Mastodon) to 500 bytes
    (a Graph next link with its fields and cursor): 1M items at 25 a page keep some 4 MB, not 20. Every page is
    kept, so a loop is caught however long it is.
    """

    def __init__(self, account: str, listing: str):
        self.account = account
        self.listing = listing
        self.asked: set[bytes] = set()

    def visit(self, url: str, params: dict | None = None) -> None:
        """Record the page about to be asked for; raises PlatformError when it was asked for before."""
        page = with_params(url, params)
        digest = page_digest(page)
        if digest in self.asked:
            raise PlatformError(
                f"account {self.account}: {self.listing} paging loop: the next page {redact_url(page)} was already "
                "read in this listing; the listing stopped (the platform sent a next link that repeats)"
            )
        self.asked.add(digest)


class CursorTrail:
    """The loop guards of one cursor-paged listing whose pages name their entries (X, Bluesky), in memory that
    does not grow with the entries listed.

    Every cursor followed is kept, as a digest: about 100 bytes a page of up to 100 entries, some 1 MB for a
    million entries. A cursor that comes back is a loop however far back it was followed, and that stops every
    loop of a server whose answer depends on the cursor asked and that has finitely many cursors to give (a
    listing stuck on a bug): to go round it must give one again. Entry ids go to a RecentSet (LISTED_REMEMBERED):
    a page holding only entries of the last ten pages or so is a loop too, before its cursor comes round.

    What this no longer catches (the guard that kept every id did): a page of entries all listed further back,
    under a cursor never followed. Only a server that mints a new cursor for every page does that, and such a
    server can page forever with made-up entries as well, which no guard of this kind stops: the old one only
    grew with them until memory ran out.
    """

    def __init__(self, remembered: int = LISTED_REMEMBERED):
        self.cursors: set[bytes] = set()
        self.listed = RecentSet(remembered)

    def loop(self, ids: Collection[str], cursor: str | None) -> str | None:
        """Why a page of these entry ids, with this next cursor, is a paging loop; None when it is not."""
        if ids and all(page_digest(i) in self.listed for i in ids):
            return "a page of entries already listed"
        if cursor is not None and page_digest(cursor) in self.cursors:
            return f"a cursor this listing already followed ({cursor[:60]!r})"
        return None

    def follow(self, ids: Collection[str], cursor: str) -> None:
        """Record a page's entries as listed and its next cursor as followed."""
        for entry_id in ids:
            self.listed.add(page_digest(entry_id))
        self.cursors.add(page_digest(cursor))


class FollowUps:
    """The reads that follow a listing (a post's thread, a video's comments) for the items it found new.

    The listing stores each item as it comes and the follow-up reads come after, so a run that stops in
    between (a failed call, a quota stop) leaves items the next run takes for known and would never follow up.
    A cursor therefore holds when the first run whose follow-ups did not all finish started: `begin()` sets it
    before anything is stored, `finished()` clears it once every follow-up is done, and while it is set every
    item first archived since then is followed up again (`owed`). Re-reading one that was done is harmless:
    the store's change detection adds nothing.
    """

    def __init__(self, state: AccountState, cursor: str, window: FetchWindow, kinds: tuple[str, ...] = ()):
        self.cursor = cursor
        self.state = state
        self.kinds = kinds
        self.since = state.cursor(cursor) or None
        self.started_at = window.started_at or iso(utcnow())

    def begin(self) -> Iterator[Observation]:
        """Yield before the listing stores anything (a run after an unfinished one keeps its earlier mark)."""
        if self.since is None:
            yield CursorUpdate(self.cursor, self.started_at)

    def owed(self, item_key: str) -> bool:
        """Whether an earlier, unfinished run may have left this item's follow-ups unread. Asked of the archive
        item by item: a first run of a large account that stopped leaves up to all its items owed, too many to
        hold as a set."""
        return self.since is not None and self.state.first_archived_since(item_key, self.since, self.kinds)

    def finished(self) -> Iterator[Observation]:
        yield CursorUpdate(self.cursor, "")


_OFFSET_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?([+-]\d\d:?\d\d)")


def utc_iso(value: str | None) -> str | None:
    """A platform's ISO time with a UTC offset (AT Protocol lets each client write its own, "-08:00") as UTC with
    "Z", its fraction of a second kept: the archive compares and sorts times as text. A time already in "Z", or
    one that is not ISO, is returned as given."""
    if not value or not (match := _OFFSET_TIME.fullmatch(value)):
        return value
    whole, fraction, offset = match.groups()
    try:
        moment = datetime.fromisoformat(whole + offset)
    except ValueError:
        return value
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + (fraction or "") + "Z"


class RecentMap(Generic[V]):
    """What a connector has handled lately in this run, with what handling each key found, for the repeats (a
    parent that comes again with each reply, an image several posts show). Bounded, so that memory stays flat
    whatever the account's size: past `capacity` entries the older half is forgotten. A repeat that comes back
    later is handled again, which the store's change detection makes harmless (no new version, no new event)."""

    def __init__(self, capacity: int = 100_000):
        self.half = max(1, capacity // 2)
        self._new: dict[Hashable, V] = {}
        self._old: dict[Hashable, V] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._new or key in self._old

    def get(self, key: Hashable) -> V | None:
        return self._new[key] if key in self._new else self._old.get(key)

    def put(self, key: Hashable, value: V) -> None:
        self._new[key] = value
        if len(self._new) >= self.half:
            self._old, self._new = self._new, {}


class RecentSet(RecentMap[None]):
    """A RecentMap of keys alone."""

    def add(self, key: Hashable) -> None:
        self.put(key, None)


@dataclass(frozen=True)
class FetchWindow:
    """Items created at or after `recheck_since` (ISO UTC) are re-read each run.

    `started_at` (ISO UTC) is when the run started: a connector that decides by the time of day (a daily
    quota, a limit that resets at midnight) takes "now" from here, so that a rebuild decides the same way.
    """

    recheck_since: str
    started_at: str | None = None


# A run's warcinfo field naming the request revision of each connector it used ("mastodon=2, x=2"). A warcinfo
# without it, or without a connector in it, was written before revisions were: that connector asked as revision 1.
REVISIONS_FIELD = "connector-revisions"
FIRST_REVISION = 1
# A run's warcinfo field holding, for each account it captured, what of its config shapes the requests (api_base,
# account, media, direct_messages and its options; no secret's name or file): a replay asks as the run asked, even
# after the config changed (a new api_base, an upgraded graph_version, media turned off). JSON on one line.
ACCOUNT_REQUESTS_FIELD = "account-requests"


def account_requests(accounts: Iterable[AccountConfig]) -> str:
    """The ACCOUNT_REQUESTS_FIELD value of a run over `accounts`."""
    return json.dumps(
        {
            a.name: {
                "api_base": a.api_base,
                "account": a.account,
                "media": a.media,
                "direct_messages": a.direct_messages,
                "options": {k: v for k, v in a.options.items() if not k.endswith(("_env", "_file"))},
            }
            for a in accounts
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def as_captured(account: AccountConfig, recorded: dict[str, Any] | None) -> AccountConfig:
    """`account` as a run recorded it in ACCOUNT_REQUESTS_FIELD (as configured now when it recorded none)."""
    if not recorded:
        return account
    return replace(
        account,
        api_base=recorded.get("api_base", account.api_base),
        account=recorded.get("account", account.account),
        media=recorded.get("media", account.media),
        direct_messages=recorded.get("direct_messages", account.direct_messages),
        options={**account.options, **recorded.get("options", {})},
    )


# A run's warcinfo field naming the parser revision of each connector it used ("mastodon=2, x=2"): how that
# connector read its responses into rows then. A warcinfo without it was written at parser revision 1.
PARSER_REVISIONS_FIELD = "parser-revisions"
# 2 (every connector, 2026-11-24): the store says not_an_edit for a version whose only change is where its
#   attachments are served from; X keeps a repost's whole reposted post; Bluesky times are UTC; LinkedIn says
#   not_an_edit when the post says its author never edited it. Captures read before give other rows. Runs of
#   before 2026-11-23 23:17 (revision 1 too: the field came later) also lack what came then: a deletion's
#   evidence names what else the platform's answer can mean (`also_if`), and Bluesky and YouTube keep cursors of
#   the threads a run left unfinished (threads_unfinished_since, comments_unfinished_since).
PARSER_REVISION = 2


class RequestRevisions:
    """What a connector asks the platform, versioned, so that every capture replays (`archiver rebuild`, `verify
    --replay`): a replay can only answer the requests its run made.

    REQUEST_REVISION is bumped whenever a change of the connector changes what it requests (a lookup added, a
    field asked for), and the new requests are made only when `self.revision` is at least that revision. A live
    run asks at the newest and records it in its warcinfo (REVISIONS_FIELD); a replay asks as the recorded
    revision did. Parsing is never gated: a fixed parser reading old captures again is the point of a replay.
    PARSER_REVISION is bumped whenever a change makes rows of the same responses differ (for this connector, or
    for all in base.PARSER_REVISION); a run records it (PARSER_REVISIONS_FIELD), so that `verify --replay` tells
    a row an older parser made from one no capture backs."""

    platform: ClassVar[str]
    REQUEST_REVISION: ClassVar[int] = FIRST_REVISION
    PARSER_REVISION: ClassVar[int] = PARSER_REVISION
    _revision: int | None = None  # set for a replay; a live run asks at the newest

    @property
    def revision(self) -> int:
        return self._revision or self.REQUEST_REVISION

    def asking_as(self, revision: int) -> Self:
        """This connector, set to make the requests of `revision` (a replayed run's)."""
        if not FIRST_REVISION <= revision <= self.REQUEST_REVISION:
            raise ArchiverError(
                f"the {self.platform} connector of this software makes requests of revisions {FIRST_REVISION} to "
                f"{self.REQUEST_REVISION}, and the capture was made at revision {revision}: replay it with the "
                "software that captured it, or a newer one"
            )
        self._revision = revision
        return self


def parse_revisions(value: str, field: str = REVISIONS_FIELD) -> dict[str, int]:
    """Platform -> revision from a REVISIONS_FIELD (or PARSER_REVISIONS_FIELD) value; raises ValueError on a
    malformed entry."""
    revisions = {}
    for entry in value.split(","):
        if entry.strip():
            platform, sep, revision = entry.partition("=")
            if not sep or not platform.strip() or not revision.strip().isdigit():
                raise ValueError(f"{field}: {entry.strip()!r} is not platform=revision")
            revisions[platform.strip()] = int(revision)
    return revisions


class Connector(Protocol):
    platform: ClassVar[str]
    token_param: ClassVar[str | None]  # query parameter that carries the credential; None sends a Bearer header
    REQUEST_REVISION: ClassVar[int]
    PARSER_REVISION: ClassVar[int]

    @property
    def revision(self) -> int: ...
    def asking_as(self, revision: int) -> Self: ...

    def rate_limit_policy(self) -> RateLimitPolicy: ...

    def check_credential(self, account: AccountConfig, token: str, timeout: float) -> Credential:
        """One cheap authenticated call, not archived: who the token is and when it expires, where the platform
        tells. Raises AuthError if refused."""
        ...

    def fetch(
        self, session: Session, account: AccountConfig, state: AccountState, window: FetchWindow
    ) -> Iterator[Observation]: ...
