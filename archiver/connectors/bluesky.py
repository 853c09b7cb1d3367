"""Bluesky (AT Protocol): the account's posts from its own repository, threads and quotes, blobs, chat.

The repository is the source of truth for the account's posts, because feed endpoints can miss posts:
the handle is resolved to a DID (com.atproto.identity.resolveHandle on `api_base`), the DID to its PDS (its
DID document from the PLC directory or did:web, or the `pds` option), and the PDS lists every
app.bsky.feed.post record (com.atproto.repo.listRecords, cursor paging). A record is identified by its
at:// URI; its `cid` is part of its content, so a replaced record (same rkey, new cid) is a new version.

Threads come from the AppView (`appview` option): app.bsky.feed.getPostThread with the full depth, nested
replies included; `#notFoundPost` and `#blockedPost` placeholders are kept out of the items; quotes of the
account's posts from app.bsky.feed.getQuotes. Images and video are fetched from their author's PDS with
com.atproto.sync.getBlob into the WARC, their alt text kept as the media description. A run that stops
before every thread and quote is read leaves that owed (the `threads_unfinished_since` cursor, FollowUps): the
next run reads them for every post first archived since, however old.

Deletions, only on proof: a post of the account missing from a complete listRecords pass, or a reply missing
from (or `notFound` in) a complete thread read, is looked up with com.atproto.repo.getRecord on its
author's PDS; only an answer of `RecordNotFound` marks it deleted. Replies outlive the post they answer, and a
deleted post has no thread to read: while a deleted post of the account is in the re-check window, each known
reply under it is looked up so. A thread's known replies are weighed whatever archived account captured them.
A chat message is recorded deleted from its `deletedMessageView`, which only says that it was removed from
the account's own view (deleteMessageForSelf, chat's only deletion); the evidence says so in `also_if`.

Reads that need no login are made without one. Direct messages (chat.bsky.convo.*) need a session: the app
password is sent once to com.atproto.server.createSession (the JWTs it issues are masked before the answer
is recorded and never reach disk); a session that expires mid-run (ExpiredToken) is created anew. Chat calls
go to the PDS with the `atproto-proxy` header naming the chat service; a service that answers "not
implemented" gets one notice and the run carries on. Rate limits: RateLimit-* headers and 429, kept per host.

Servers other than the account's own (its PDS, the AppView, `api_base`, the PLC directory): a commenter's records
and blobs live on the PDS her DID document names, which may be her own server (did:web, or a did:plc naming a
self-hosted endpoint), and a did:web's document is on its host. From request revision OTHER_SERVERS_NOTED on, such
a server cannot stop the account's capture: what it fails to answer (a 401 or 403, which says nothing of the
account's credential since none is sent there, a 5xx or no answer after the retries, a throttle past
max_rate_limit_wait, an answer that is not the record asked for) is a notice naming what could not be checked, the
item keeps its last known state (only `RecordNotFound` is a deletion, as before), and the next run asks again. A
server that gave no answer at all (a failure, a throttle) is asked nothing more this run. Its throttles hold up its
own requests only: budgets are kept per host, and its waits count against a max_rate_limit_wait of their own
(BlueskyRateLimit).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any, ClassVar

from ..config import AccountConfig
from ..errors import AuthError, PlatformError, RateLimitedError
from ..http import (
    Exchange,
    HeaderRateLimit,
    Refused,
    RequestFailed,
    Session,
    check_json,
    check_request,
    host_of,
    media_label,
    with_params,
)
from ..items import AccountIdentity, CursorUpdate, Deletion, Item, MediaFile, Notice, Observation
from ..store import KnownItem
from ..warc import CaptureRef
from .base import (
    EMPTY_PAGES_MAX,
    MEDIA_ANSWERS,
    AccountState,
    Credential,
    CursorTrail,
    FetchWindow,
    FollowUps,
    RecentSet,
    RequestRevisions,
    fetch_media_file,
    utc_iso,
)

POST = "app.bsky.feed.post"
PAGE_LIMIT = 100
THREAD_DEPTH = 1000  # the lexicon's maximum: nested replies all the way down
THREAD_VIEW = "app.bsky.feed.defs#threadViewPost"
NOT_FOUND_POST = "app.bsky.feed.defs#notFoundPost"
BLOCKED_POST = "app.bsky.feed.defs#blockedPost"
DELETED_MESSAGE = "chat.bsky.convo.defs#deletedMessageView"
NOT_IMPLEMENTED = {"MethodNotImplemented", "XRPCNotSupported", "NotImplemented"}
SESSION_EXPIRED = {"ExpiredToken"}
AUTH_ERRORS = {"AuthRequired", "AuthenticationRequired", "InvalidToken", "ExpiredToken", "AccountTakedown"}
# Set when a run starts reading the account's posts, cleared once every thread and quote read is done: while
# set, posts first archived since are owed their threads and quotes (see FollowUps).
THREADS_CURSOR = "threads_unfinished_since"
# The request revision (see base.RequestRevisions) from which the known replies under the account's deleted posts
# are looked up, and a thread's absent replies weighed whatever archived account captured them and under deleted
# replies too; a run captured before asked neither.
UNDER_DELETED = 2
# The request revision from which a blob download that fails (a 5xx, no answer, after the retries) leaves its post
# archived without the file, with a notice, and the run goes on (base.fetch_media_file); before, it stopped the
# account.
MEDIA_FAILURES_NOTED = 3
# The request revision from which a server other than the account's own (a commenter's PDS, a did:web's host) cannot
# stop the account: its 401 or 403, a failure after the retries, a throttle past max_rate_limit_wait or an odd answer
# is a notice, and a server that gave no answer is asked nothing more that run (see the module's docstring); before,
# each stopped the account.
OTHER_SERVERS_NOTED = 4
# What another server's getRecord or DID document may answer without being a failure: 401 and 403 say nothing of the
# account's credential (none is sent there). Not 410 as well: with all four the session takes a request for a media
# download (http.is_file_download); a 410 is a failure, noted as one.
RECORD_ANSWERS = (200, 400, 401, 403, 404)
DOCUMENT_ANSWERS = (200, 401, 403, 404)
THROTTLED_PAST_WAIT = "it throttles this archiver for longer than max_rate_limit_wait allows"
# The wait pool (http.RateLimitPolicy.wait_pool) of every server other than the account's own.
OTHER_SERVERS = "other servers"
# What a deletedMessageView in the archived account's view can mean: the lexicon has no deletion for everyone.
DELETED_FOR_SELF = (
    "it was removed from the archived account's own view only (chat.bsky.convo.deleteMessageForSelf, Bluesky "
    "chat's only deletion): the other members of the conversation may still see it"
)


def _error_name(exchange: Exchange) -> str:
    try:
        body = exchange.json()
    except PlatformError:
        return ""
    return str(body.get("error") or "") if isinstance(body, dict) else ""


def _error_message(exchange: Exchange) -> str:
    try:
        body = exchange.json()
    except PlatformError:
        return ""
    return str(body.get("message") or "") if isinstance(body, dict) else ""


def _expect(condition: bool, exchange: Exchange, what: str) -> None:
    if not condition:
        raise PlatformError(
            f"GET {exchange.url}: unexpected response shape ({what}); "
            f"raw response in WARC record {exchange.ref.record_id}"
        )


class Paging:
    """The guards of one cursor-paged listing (listRecords, getQuotes, listConvos, getMessages).

    An empty page that carries a cursor is not the end: the AppView cuts a page before it leaves out what the
    viewer may not see (blocked, taken down) and keeps the cursor, so the listing goes on. A cursor this
    listing already followed, or a page holding only entries it listed lately, is a paging loop (a service
    bug or a hostile answer), not more data; so are more than `EMPTY_PAGES_MAX` empty pages in a row, each
    with a new cursor. The account then stops instead of reading forever, and nothing is concluded from the
    unfinished listing. Memory: a digest per cursor and the last entries only (CursorTrail says what that
    leaves out): a repository of 1M records costs the guard about 1 MB, where its 1M URIs took some 175 MB.
    """

    def __init__(self, listing: str):
        self.listing = listing
        self.trail = CursorTrail()
        self.empty_in_a_row = 0

    def next_cursor(self, page: dict[str, Any], key: str, exchange: Exchange) -> str | None:
        """The cursor to follow after a page of `page[key]` entries; None when the listing is complete."""
        entries = page[key]
        ids = {str(e.get("uri") or e.get("id")) for e in entries if isinstance(e, dict)}
        cursor = None if page.get("cursor") is None else str(page["cursor"])
        loop = self.trail.loop(ids, cursor)
        if loop:
            raise PlatformError(
                f"GET {exchange.url}: paging loop: the service answered {loop}; the listing of {self.listing} "
                f"stopped (WARC record {exchange.ref.record_id})"
            )
        if cursor is None:
            return None
        self.empty_in_a_row = 0 if entries else self.empty_in_a_row + 1
        if self.empty_in_a_row > EMPTY_PAGES_MAX:
            raise PlatformError(
                f"GET {exchange.url}: paging loop: the service answered {self.empty_in_a_row} empty pages in a "
                f"row, each with a new cursor; the listing of {self.listing} stopped "
                f"(WARC record {exchange.ref.record_id})"
            )
        self.trail.follow(ids, cursor)
        return cursor


def split_uri(uri: str) -> tuple[str, str, str]:
    """(did, collection, rkey) of an at:// URI."""
    parts = uri.removeprefix("at://").split("/")
    if len(parts) != 3:
        raise PlatformError(f"not an at:// record URI: {uri!r}")
    return parts[0], parts[1], parts[2]


def blob_cid(blob: Any) -> str | None:
    """The CID of a blob reference (current `ref.$link` form, or the legacy `cid` form)."""
    if not isinstance(blob, dict):
        return None
    ref = blob.get("ref")
    if isinstance(ref, dict) and ref.get("$link"):
        return str(ref["$link"])
    return str(blob["cid"]) if blob.get("cid") else None


def embedded_blobs(embed: Any) -> list[tuple[str, dict, str | None]]:
    """(kind, blob, alt text) of every blob a post record's embed carries."""
    if not isinstance(embed, dict):
        return []
    kind = embed.get("$type")
    if kind == "app.bsky.embed.images":
        return [("image", i.get("image"), i.get("alt")) for i in embed.get("images", []) if isinstance(i, dict)]
    if kind == "app.bsky.embed.video":
        return [("video", embed.get("video"), embed.get("alt"))]
    if kind == "app.bsky.embed.recordWithMedia":
        return embedded_blobs(embed.get("media"))
    if kind == "app.bsky.embed.external":
        external = embed.get("external") or {}
        return [("thumbnail", external["thumb"], external.get("title"))] if external.get("thumb") else []
    return []


def below(top: str, items: list[KnownItem]) -> set[str]:
    """Keys of `top` and of the items under it at any depth, by their parent keys."""
    children: dict[str, list[str]] = {}
    for known in items:
        if known.parent_key:
            children.setdefault(known.parent_key, []).append(known.item_key)
    under, stack = {top}, [top]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in under:
                under.add(child)
                stack.append(child)
    return under


def pds_endpoint(document: Any) -> str | None:
    """The `#atproto_pds` service endpoint a DID document names, whatever shape another server gave it; None when it
    names none."""
    services = document.get("service") if isinstance(document, dict) else None
    endpoint = None
    for service in services if isinstance(services, list) else []:
        if isinstance(service, dict) and str(service.get("id", "")).endswith("#atproto_pds"):
            endpoint = str(service.get("serviceEndpoint", "")).rstrip("/") or None
    return endpoint


def _readable_embed(embed: Any) -> bool:
    """Whether the parser (embedded_blobs, quoted_uri, observe's `external`) can read an embed: what it takes for an
    object or a list is one."""
    if not isinstance(embed, dict):
        return True  # not an embed: left out
    if not isinstance(embed.get("external") or {}, dict):
        return False
    kind = embed.get("$type")
    if kind == "app.bsky.embed.images":
        return isinstance(embed.get("images", []), list)
    if kind == "app.bsky.embed.record":
        return isinstance(embed.get("record") or {}, dict)
    if kind == "app.bsky.embed.recordWithMedia":
        record = embed.get("record") or {}
        return (
            isinstance(record, dict)
            and isinstance(record.get("record") or {}, dict)
            and _readable_embed(embed.get("media"))
        )
    return True


def odd_record(record: Any, uri: str) -> str | None:
    """What makes another server's getRecord answer unusable as the record `uri`; None when nothing does. A shape
    the parser cannot read, or another record than the one asked for: taken as it says, a commenter's server could
    write a made-up version of any item, the account's own posts included."""
    if not isinstance(record, dict) or not {"uri", "cid", "value"} <= set(record):
        return "something other than a record"
    if record["uri"] != uri:
        return "another record than the one asked for"
    value = record["value"]
    if not isinstance(value, dict):
        return "a record whose value is not an object"
    reply = value.get("reply") or {}
    refs = [reply, *([reply.get("parent") or {}, reply.get("root") or {}] if isinstance(reply, dict) else [])]
    if not all(isinstance(ref, dict) for ref in refs):
        return "a record whose reply is not a pair of references"
    if not isinstance(value.get("createdAt") or "", str) or not _readable_embed(value.get("embed")):
        return "a record of an unreadable shape"
    return None


def quoted_uri(embed: Any) -> str | None:
    if not isinstance(embed, dict):
        return None
    if embed.get("$type") == "app.bsky.embed.record":
        return (embed.get("record") or {}).get("uri")
    if embed.get("$type") == "app.bsky.embed.recordWithMedia":
        return ((embed.get("record") or {}).get("record") or {}).get("uri")
    return None


class BlueskyRateLimit(HeaderRateLimit):
    """RateLimit-Remaining / RateLimit-Reset, kept per host: the account's PDS, the AppView and each commenter's PDS
    limit on their own, and a commenter's server that says it is spent, far into the future, must not hold up the
    requests to the others. Waits at a server other than the account's own (`own_hosts`, which the run fills in as
    it learns them) count against max_rate_limit_wait apart from the account's own: together they can hold the run
    up no longer than that, and never use up what the account's own servers may ask."""

    def __init__(self) -> None:
        super().__init__("RateLimit-Remaining", "RateLimit-Reset", endpoint=host_of)
        self.own_hosts: set[str] = set()

    def wait_pool(self, url: str) -> str:
        return "" if host_of(url) in self.own_hosts else OTHER_SERVERS


class BlueskyConnector(RequestRevisions):
    platform: ClassVar[str] = "bluesky"
    token_param: ClassVar[str | None] = None
    # 2: replies under deleted posts (UNDER_DELETED); 3: a blob download that fails is a notice, and the run goes on
    # (MEDIA_FAILURES_NOTED); 4: a server other than the account's own cannot stop it (OTHER_SERVERS_NOTED).
    REQUEST_REVISION: ClassVar[int] = OTHER_SERVERS_NOTED
    policy: BlueskyRateLimit | None = None  # the last one handed out: its run tells it the account's own hosts

    def rate_limit_policy(self) -> BlueskyRateLimit:
        self.policy = BlueskyRateLimit()
        return self.policy

    def check_credential(self, account: AccountConfig, token: str, timeout: float) -> Credential:
        """Create a session with the app password (not archived, the JWTs dropped at once)."""
        base = account.options.get("pds") or account.api_base
        url = f"{base}/xrpc/com.atproto.server.createSession"
        identifier = (account.account or "").lstrip("@")
        # Not redirected: a 307/308 would send the password again, wherever it points.
        response = check_request(
            account.name, "POST", url, json_body={"identifier": identifier, "password": token}, timeout=timeout
        )
        if response.status_code in (400, 401, 403):
            raise AuthError(
                f"account {account.name}: the platform refused the app password from {account.credential_ref} "
                f"(HTTP {response.status_code}); create a new app password"
            )
        if response.status_code != 200:
            raise PlatformError(f"account {account.name}: POST {url} answered HTTP {response.status_code}")
        try:
            return Credential("@" + str(check_json(account.name, response)["handle"]))
        except (KeyError, TypeError):
            raise PlatformError(f"account {account.name}: POST {url} did not answer a session") from None

    def fetch(
        self, session: Session, account: AccountConfig, state: AccountState, window: FetchWindow
    ) -> Iterator[Observation]:
        yield from _BlueskyRun(session, account, state, window, self.revision, self.policy).fetch()


class _BlueskyRun:
    def __init__(
        self,
        session: Session,
        account: AccountConfig,
        state: AccountState,
        window: FetchWindow,
        revision: int,
        policy: BlueskyRateLimit | None = None,
    ):
        self.session = session
        self.revision = revision
        self.account = account
        self.state = state
        self.window = window
        options = account.options
        self.appview = str(options.get("appview") or "https://public.api.bsky.app").rstrip("/")
        self.plc = str(options.get("plc_directory") or "https://plc.directory").rstrip("/")
        self.pds_override = str(options.get("pds") or "").rstrip("/") or None
        self.chat_proxy = str(options.get("chat_proxy") or "did:web:api.bsky.chat#bsky_chat")
        self.read_quotes = bool(options.get("quotes", True))
        self.did = ""
        self.handle: str | None = None
        self.display_name: str | None = None
        self.pds = ""
        self.pds_of: dict[str, str | None] = {}
        self.seen = RecentSet()  # item keys handled lately in this run
        self.media_fetched = RecentSet()
        self.logged_in = False
        self.quotes_unsupported = False
        self.chat_answer = ""
        # The configured credential is the app password; kept now, before a session JWT replaces it.
        self.app_password = session.secret() or ""
        # The account's own servers, the resolved PDS added when known; shared with the session's rate-limit policy.
        configured = (account.api_base, self.appview, self.plc, self.pds_override)
        self.own_hosts: set[str] = {host_of(url) for url in configured if url}
        if policy is not None:
            policy.own_hosts = self.own_hosts
        self.unreachable: dict[str, str] = {}  # another server's host -> why it is asked nothing more this run
        self.unresolved: dict[str, str] = {}  # a DID -> why its document, on another server, could not be read

    @staticmethod
    def key(uri: str) -> str:
        return f"bluesky:{uri}"

    def own_prefix(self) -> str:
        return self.key(f"at://{self.did}/{POST}/")

    # -- XRPC ----------------------------------------------------------------------------------------------
    def elsewhere(self, url: str) -> bool:
        """Whether `url` is on a server other than the account's own, which may not stop the account's capture (from
        request revision OTHER_SERVERS_NOTED on)."""
        return self.revision >= OTHER_SERVERS_NOTED and host_of(url) not in self.own_hosts

    def ask_elsewhere(self, url: str, params: dict[str, Any] | None, ok: tuple[int, ...]) -> Exchange | str:
        """A GET of another server, without any credential: its answer when one of `ok`, else why there is none (a
        failure after the retries, a throttle past max_rate_limit_wait, a request or redirect refused). A host that
        gave no answer is asked nothing more this run (`unreachable`)."""
        host = host_of(url)
        if host in self.unreachable:
            return self.not_asked(host)
        try:
            return self.session.get(url, params, auth=False, ok=ok)
        except RateLimitedError:
            why = THROTTLED_PAST_WAIT
        except (RequestFailed, Refused) as exc:
            why = exc.why
        except PlatformError:  # an answer over the size cap; on a replay, the failure that left nothing captured
            why = "no usable answer"
        self.unreachable[host] = why
        return why

    def not_asked(self, host: str) -> str:
        return f"not asked, as it gave no answer earlier in this run ({self.unreachable[host]})"

    def xrpc(
        self,
        base: str,
        nsid: str,
        params: dict[str, Any] | None = None,
        *,
        ok: tuple[int, ...] = (200,),
        authed: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Exchange:
        """An XRPC query. Without `authed` no credential is sent at all; with it, the session's access JWT."""
        url = f"{base}/xrpc/{nsid}"
        if not authed:
            return self.session.get(url, params, auth=False, ok=ok, headers=headers)
        if not self.logged_in:
            self.login()
        exchange = self.session.get(url, params, auth=True, ok=(*ok, 400, 401), headers=headers)
        error = _error_name(exchange) if exchange.status in (400, 401) else ""
        if error in SESSION_EXPIRED:
            self.login()  # the access JWT lived out its hours: a new session, then the same call again
            exchange = self.session.get(url, params, auth=True, ok=(*ok, 400, 401), headers=headers)
            error = _error_name(exchange) if exchange.status in (400, 401) else ""
        if exchange.status == 401 or error in AUTH_ERRORS:
            raise AuthError(
                f"account {self.account.name}: the session from the app password in "
                f"{self.account.credential_ref} was refused ({error or exchange.status}: "
                f"{_error_message(exchange)} at {exchange.url}); a chat-capable app password is needed for "
                "direct messages, or set direct_messages = false"
            )
        if exchange.status in ok:
            return exchange
        raise PlatformError(
            f"GET {exchange.url}: HTTP {exchange.status} {error} (WARC record {exchange.ref.record_id})"
        )

    def login(self) -> None:
        """com.atproto.server.createSession with the app password; the issued JWTs never reach disk."""
        exchange = self.session.post(
            f"{self.pds}/xrpc/com.atproto.server.createSession",
            {"identifier": self.did, "password": self.app_password},
            auth=False,
            ok=(200, 400, 401),
            secret_fields=("accessJwt", "refreshJwt"),
        )
        if exchange.status != 200 or "accessJwt" not in exchange.issued:
            raise AuthError(
                f"account {self.account.name}: {self.pds} refused the app password from "
                f"{self.account.credential_ref} ({_error_name(exchange) or exchange.status}); create a new app "
                "password (Settings > Privacy and security > App passwords, with access to direct messages)"
            )
        self.session.use_token(exchange.issued["accessJwt"])
        self.logged_in = True

    # -- identity ------------------------------------------------------------------------------------------
    def fetch(self) -> Iterator[Observation]:
        # The listing stores each post as it comes and the threads are read after it: a run stopped in between
        # leaves the next run the posts it first archived to follow up, or their replies would never be read.
        follow_ups = FollowUps(self.state, THREADS_CURSOR, self.window, ("post", "comment"))
        yield self.fetch_identity()
        yield from follow_ups.begin()
        to_read = yield from self.fetch_own_posts(follow_ups)
        yield from self.read_threads(to_read)
        yield from follow_ups.finished()
        if self.revision >= UNDER_DELETED:
            yield from self.recheck_orphans()
        if self.account.direct_messages:
            yield from self.fetch_chats()

    def fetch_identity(self) -> AccountIdentity:
        ref = (self.account.account or "").strip().lstrip("@")
        if not ref:
            raise PlatformError(f"account {self.account.name}: set `account` to the Bluesky handle or DID")
        if ref.startswith("did:"):
            self.did = ref
        else:
            exchange = self.xrpc(
                self.account.api_base, "com.atproto.identity.resolveHandle", {"handle": ref}, ok=(200, 400)
            )
            body = exchange.json()
            if exchange.status != 200 or not isinstance(body, dict) or not body.get("did"):
                raise PlatformError(
                    f"account {self.account.name}: {self.account.api_base} cannot resolve the handle {ref!r} "
                    f"({_error_name(exchange) or exchange.status}); fix `account` in the config"
                )
            self.did = str(body["did"])
            self.handle = ref
        pds = self.pds_override or self.resolve_pds(self.did, own=True)
        if not pds:
            raise PlatformError(f"account {self.account.name}: the DID document of {self.did} names no PDS")
        self.pds = pds
        self.pds_of[self.did] = pds
        self.own_hosts.add(host_of(pds))
        profile = self.xrpc(
            self.pds,
            "com.atproto.repo.getRecord",
            {"repo": self.did, "collection": "app.bsky.actor.profile", "rkey": "self"},
            ok=(200, 400),
        )
        if profile.status == 200:
            value = (profile.json() or {}).get("value") or {}
            self.display_name = value.get("displayName")
        return AccountIdentity(self.did, self.handle, self.display_name)

    def resolve_pds(self, did: str, own: bool = False) -> str | None:
        """The PDS in a DID's document (did:plc from the PLC directory, did:web from its host); cached. A document on
        another server that could not be read resolves to None, and `unresolved` says why."""
        if did in self.pds_of:
            return self.pds_of[did]
        if did.startswith("did:plc:"):
            url = f"{self.plc}/{did}"
        elif did.startswith("did:web:"):
            url = f"https://{did.removeprefix('did:web:').replace('%3A', ':')}/.well-known/did.json"
        else:
            self.pds_of[did] = None
            return None
        if own:
            self.own_hosts.add(host_of(url))  # the account's own did:web host
        elif self.elsewhere(url):
            document = self.fetch_document_elsewhere(did, url)
            endpoint = pds_endpoint(document) if document is not None else None
            self.pds_of[did] = endpoint
            return endpoint
        exchange = self.session.get(url, auth=False, ok=(200,) if own else (200, 404, 410))
        document = exchange.json() if exchange.status == 200 else {}
        endpoint = None
        for service in document.get("service", []) if isinstance(document, dict) else []:
            if isinstance(service, dict) and str(service.get("id", "")).endswith("#atproto_pds"):
                endpoint = str(service.get("serviceEndpoint", "")).rstrip("/") or None
        if own and isinstance(document, dict) and not self.handle:
            aka = [a for a in document.get("alsoKnownAs", []) if isinstance(a, str) and a.startswith("at://")]
            self.handle = aka[0].removeprefix("at://") if aka else None
        self.pds_of[did] = endpoint
        return endpoint

    def fetch_document_elsewhere(self, did: str, url: str) -> Any | None:
        """A DID document on another server (a did:web's host); None when it could not be read (`unresolved` says
        why). A 404 is an answer, as before: a DID without a document names no PDS."""
        exchange = self.ask_elsewhere(url, None, DOCUMENT_ANSWERS)
        where = f"its DID document on another server ({host_of(url)}) could not be read"
        if isinstance(exchange, str):
            self.unresolved[did] = f"{where}: {exchange}"
            return None
        if exchange.status == 404:
            return {}
        if exchange.status != 200:
            self.unresolved[did] = f"{where}: HTTP {exchange.status} (WARC record {exchange.ref.record_id})"
            return None
        try:
            return exchange.json()
        except PlatformError:
            self.unresolved[did] = f"{where}: not JSON (WARC record {exchange.ref.record_id})"
            return None

    # -- the account's posts -------------------------------------------------------------------------------
    def fetch_own_posts(self, follow_ups: FollowUps) -> Iterator[Observation]:
        """Every post record in the repository; returns the URIs whose threads to read this run: posts new,
        deleted before, in the re-check window, or owed their threads by a run that stopped before reading them.

        Only a listing that completed can prove an absence: the known posts missing from it are then
        looked up, and each answered `RecordNotFound` is a proven deletion.
        """
        to_read: list[str] = []
        present: set[str] = set()
        cursor: str | None = None
        paging = Paging(f"the repository {self.did}'s posts (com.atproto.repo.listRecords)")
        last: Exchange | None = None
        while True:
            params: dict[str, Any] = {"repo": self.did, "collection": POST, "limit": PAGE_LIMIT}
            if cursor:
                params["cursor"] = cursor
            exchange = self.xrpc(self.pds, "com.atproto.repo.listRecords", params)
            last = exchange
            page = exchange.json()
            _expect(isinstance(page, dict) and isinstance(page.get("records"), list), exchange, "a record list")
            for record in page["records"]:
                _expect(isinstance(record, dict) and {"uri", "cid", "value"} <= set(record), exchange, "a record")
                uri = str(record["uri"])
                present.add(self.key(uri))
                known = self.state.latest(self.key(uri))
                created = utc_iso(str((record["value"] or {}).get("createdAt") or ""))
                owed = follow_ups.owed(self.key(uri))
                if known is None or known.deleted or created >= self.window.recheck_since or owed:
                    to_read.append(uri)
                author = (self.did, self.handle, self.display_name)
                yield from self.observe(uri, record["cid"], record["value"], author, record, exchange.ref)
            cursor = paging.next_cursor(page, "records", exchange)
            if not cursor:
                break
        # Only the account's own records: the others' replies and messages, read to memory as well, could be
        # many times as many (every run, whatever the account's size).
        missing = [
            k
            for k in self.state.known_items(key_prefix=self.own_prefix())
            if not k.deleted and k.item_key not in present
        ]
        if last is not None:  # always: the loop reads at least one page
            yield from self.confirm_absent(missing, last)
        return to_read

    def confirm_absent(self, missing: list[Any], listing: Exchange) -> Iterator[Observation]:
        """Records absent from a complete listing or thread: getRecord on their PDS decides."""
        yield from self.look_up(missing, {"absent_from": {"url": listing.url, "warc_record_id": listing.ref.record_id}})

    def look_up(self, items: list[Any], because: dict[str, Any]) -> Iterator[Observation]:
        """Each record with getRecord on its author's PDS: `RecordNotFound` is a deletion (its evidence says
        `because`), a record is observed."""
        for known in items:
            uri = known.item_key.removeprefix("bluesky:")
            did, collection, rkey = split_uri(uri)
            pds = self.resolve_pds(did)
            if pds is None:
                unread = self.unresolved.get(did)
                yield Notice(
                    f"{uri}: {unread}; not concluded deleted, its status is checked again next run"
                    if unread
                    else f"{uri}: its author's PDS cannot be resolved; its absence is not checked"
                )
                continue
            params = {"repo": did, "collection": collection, "rkey": rkey}
            if self.elsewhere(pds):
                lookup = yield from self.fetch_record_elsewhere(known, pds, params)
                if lookup is None:
                    continue
            else:
                lookup = self.xrpc(pds, "com.atproto.repo.getRecord", params, ok=(200, 400))
            if lookup.status == 400:
                error = _error_name(lookup)
                if error != "RecordNotFound":
                    yield Notice(f"{uri}: getRecord answered {error or 'HTTP 400'}; not concluded deleted")
                    continue
                evidence = {
                    "method": "lookup",
                    "url": lookup.url,
                    "http_status": lookup.status,
                    "error": error,
                    "response": lookup.body[:500].decode("utf-8", "replace"),
                    "warc_file": lookup.ref.warc_file,
                    "warc_record_id": lookup.ref.record_id,
                }
                yield Deletion(known.item_key, evidence | because, lookup.ref)
                continue
            record = lookup.json()
            _expect(isinstance(record, dict) and {"uri", "cid", "value"} <= set(record), lookup, "a record")
            author = (self.did, self.handle, self.display_name) if did == self.did else (did, None, None)
            yield from self.observe(str(record["uri"]), str(record["cid"]), record["value"], author, record, lookup.ref)

    def fetch_record_elsewhere(
        self, known: KnownItem, pds: str, params: dict[str, Any]
    ) -> Generator[Observation, None, Exchange | None]:
        """getRecord of `known` on another server: its answer when it is a record or an error to weigh (400), else
        a Notice naming the item, and None: the item keeps its last known state, and the next run asks again."""
        uri = known.item_key.removeprefix("bluesky:")
        lookup = self.ask_elsewhere(f"{pds}/xrpc/com.atproto.repo.getRecord", params, RECORD_ANSWERS)
        if isinstance(lookup, str):
            why = lookup
        elif lookup.status in (200, 400):
            try:
                odd = odd_record(lookup.json(), uri) if lookup.status == 200 else None
            except PlatformError:
                odd = "something other than JSON"
            if odd is None:
                return lookup
            why = f"it answered {odd} (WARC record {lookup.ref.record_id})"
        else:
            why = f"HTTP {lookup.status} (WARC record {lookup.ref.record_id})"
        what = "a reply" if known.kind == "comment" else f"a {known.kind}"
        yield Notice(
            f"{uri}: {what}'s record on another server ({host_of(pds)}) could not be read: {why}; not concluded "
            "deleted, its status is checked again next run"
        )
        return None

    def recheck_orphans(self) -> Iterator[Observation]:
        """The known replies under the account's deleted posts in the re-check window, each looked up: replies
        are records of their authors' and outlive the post they answer, and a deleted post has no thread to
        read, so one deleted or replaced with or after it would otherwise stay live in the archive for good.
        A deleted post that comes back is the repository listing's to see (it is observed, and so restored)."""
        own = self.own_prefix()
        gone = [
            post
            for post in self.state.known_items(key_prefix=own, created_since=self.window.recheck_since)
            if post.deleted
        ]
        for post in sorted(gone, key=lambda k: k.item_key):
            thread = self.state.thread_items(post.thread_key or post.item_key)
            under = below(post.item_key, thread)
            orphans = [
                k
                for k in thread
                if k.item_key in under
                and not k.deleted
                and not k.item_key.startswith(own)  # the account's own records: the repo listing decides
                and k.item_key not in self.seen  # observed this run already: it is there
            ]
            yield from self.look_up(orphans, {"under_deleted": {"item_key": post.item_key}})

    # -- threads and quotes --------------------------------------------------------------------------------
    def read_threads(self, uris: list[str]) -> Iterator[Observation]:
        """The thread under each post (from its root when the root is the account's own), and its quotes."""
        done: set[str] = set()
        for uri in uris:
            latest = self.state.latest(self.key(uri))
            if latest is None or latest.deleted:
                continue
            thread_root = (latest.thread_key or self.key(uri)).removeprefix("bluesky:")
            start = thread_root if thread_root.startswith(f"at://{self.did}/") else uri
            if start not in done:
                done.add(start)
                yield from self.read_thread(start, from_root=start == thread_root)
            if self.read_quotes and not self.quotes_unsupported:
                yield from self.fetch_quotes(uri)

    def read_thread(self, uri: str, from_root: bool) -> Iterator[Observation]:
        exchange = self.xrpc(
            self.appview,
            "app.bsky.feed.getPostThread",
            {"uri": uri, "depth": THREAD_DEPTH, "parentHeight": 0 if from_root else THREAD_DEPTH},
            ok=(200, 400),
        )
        if exchange.status == 400:
            if _error_name(exchange) == "NotFound":
                return  # the post itself is gone: its listing and lookup decide, not the AppView
            raise PlatformError(f"GET {exchange.url}: HTTP 400 {_error_name(exchange)}")
        body = exchange.json()
        _expect(isinstance(body, dict) and isinstance(body.get("thread"), dict), exchange, "a thread")
        thread = body["thread"]
        present: set[str] = set()
        not_found: set[str] = set()
        if thread.get("$type") == THREAD_VIEW:
            parent = thread.get("parent")
            while isinstance(parent, dict) and parent.get("$type") == THREAD_VIEW:
                yield from self.observe_view(parent["post"], exchange.ref)
                parent = parent.get("parent")
        yield from self.walk(thread, exchange.ref, present, not_found)
        top = self.key(uri)
        # Known replies under the post read, missing from it (or shown as notFound): a lookup decides. Every
        # archived account's, and under deleted replies too: their replies live on, out of the AppView's thread.
        top_known = self.state.latest(top)
        root_key = (top_known.thread_key if top_known else None) or top
        if self.revision >= UNDER_DELETED:
            thread = self.state.thread_items(root_key)
        else:  # revision 1: the account's own archive of the thread, and nothing under a deleted reply
            thread = [k for k in self.state.known_items(thread_key=root_key) if not k.deleted]
        under = below(top, thread)
        prefix = self.own_prefix()
        missing = [
            k
            for k in thread
            if k.item_key in under
            and k.item_key != top
            and not k.deleted
            and (k.item_key not in present or k.item_key in not_found)
            and not k.item_key.startswith(prefix)  # the account's own posts: the repo listing decides
        ]
        yield from self.confirm_absent(missing, exchange)

    def walk(
        self, node: dict[str, Any], ref: CaptureRef, present: set[str], not_found: set[str]
    ) -> Iterator[Observation]:
        kind = node.get("$type")
        if kind == THREAD_VIEW and isinstance(node.get("post"), dict):
            post = node["post"]
            present.add(self.key(str(post.get("uri"))))
            yield from self.observe_view(post, ref)
            for reply in node.get("replies") or []:
                if isinstance(reply, dict):
                    yield from self.walk(reply, ref, present, not_found)
        elif kind == NOT_FOUND_POST and node.get("uri"):
            not_found.add(self.key(str(node["uri"])))
        elif kind == BLOCKED_POST and node.get("uri"):
            present.add(self.key(str(node["uri"])))  # hidden from us, not gone: never a deletion

    def fetch_quotes(self, uri: str) -> Iterator[Observation]:
        cursor: str | None = None
        paging = Paging(f"the quotes of {uri} (app.bsky.feed.getQuotes)")
        while True:
            params: dict[str, Any] = {"uri": uri, "limit": PAGE_LIMIT}
            if cursor:
                params["cursor"] = cursor
            exchange = self.xrpc(self.appview, "app.bsky.feed.getQuotes", params, ok=(200, 400, 404, 501))
            if exchange.status != 200:
                error = _error_name(exchange)
                if exchange.status == 501 or exchange.status == 404 or error in NOT_IMPLEMENTED:
                    self.quotes_unsupported = True
                    yield Notice(f"the AppView {self.appview} does not offer app.bsky.feed.getQuotes; quotes skipped")
                    return
                raise PlatformError(f"GET {exchange.url}: HTTP {exchange.status} {error}")
            page = exchange.json()
            _expect(isinstance(page, dict) and isinstance(page.get("posts"), list), exchange, "a list of posts")
            for post in page["posts"]:
                yield from self.observe_view(post, exchange.ref)
            cursor = paging.next_cursor(page, "posts", exchange)
            if not cursor:
                return

    # -- one post ------------------------------------------------------------------------------------------
    def observe_view(self, post: Any, ref: CaptureRef) -> Iterator[Observation]:
        """A PostView from the AppView: its record and cid are what the archive keeps."""
        if not isinstance(post, dict) or not {"uri", "cid", "record", "author"} <= set(post):
            return
        author = post["author"] or {}
        who = (str(author.get("did") or ""), author.get("handle"), author.get("displayName"))
        yield from self.observe(str(post["uri"]), str(post["cid"]), post["record"], who, post, ref)

    def observe(
        self,
        uri: str,
        cid: str,
        record: dict[str, Any],
        author: tuple[str, str | None, str | None],
        raw: dict[str, Any],
        ref: CaptureRef,
    ) -> Iterator[Observation]:
        key = self.key(uri)
        if key in self.seen:
            return
        self.seen.add(key)
        did, _, rkey = split_uri(uri)
        reply = record.get("reply") or {}
        parent = (reply.get("parent") or {}).get("uri")
        root = (reply.get("root") or {}).get("uri")
        embed = record.get("embed")
        blobs = embedded_blobs(embed)
        if self.revision >= OTHER_SERVERS_NOTED and any(blob_cid(blob) for _, blob, _ in blobs):
            if self.account.media:
                self.resolve_pds(did)  # as fetch_blobs would, first: its blobs' URLs name the PDS it names
            if did in self.unresolved and self.state.latest(key) is not None:
                # Read without that PDS, the version would differ from the last in its blobs' URLs alone.
                yield Notice(f"{uri}: not read again this run: {self.unresolved[did]}; the next run reads it again")
                return
        media = list((yield from self.fetch_blobs(did, blobs)))
        yield Item(
            item_key=key,
            platform="bluesky",
            kind="comment" if parent else "post",
            native_id=uri,
            source=ref,
            raw=raw,
            text=str(record.get("text") or ""),
            created_at=utc_iso(record.get("createdAt")),
            parent_key=self.key(parent) if parent else None,
            thread_key=self.key(root) if root else key,
            author_id=author[0] or did,
            author_handle=author[1],
            author_name=author[2],
            url=f"https://bsky.app/profile/{did}/post/{rkey}",
            visibility="public",
            media=tuple(media),
            extra={
                "cid": cid,
                "quote": quoted_uri(embed),
                "external": ((embed or {}).get("external") or {}).get("uri") if isinstance(embed, dict) else None,
                "langs": record.get("langs") or [],
                "labels": record.get("labels"),
            },
        )

    def fetch_blobs(self, did: str, blobs: list[tuple[str, dict, str | None]]) -> Iterator[Observation]:
        """Fetch blobs from their author's PDS into the WARC (once each); returns the media list."""
        normalised = []
        for kind, blob, alt in blobs:
            cid = blob_cid(blob)
            if not cid:
                continue
            pds = self.resolve_pds(did) if self.account.media else self.pds_of.get(did)
            url = with_params(f"{pds}/xrpc/com.atproto.sync.getBlob", {"did": did, "cid": cid}) if pds else None
            entry = {"id": cid, "type": kind, "url": url, "description": alt, "mime_type": blob.get("mimeType")}
            if not url and did in self.unresolved and self.account.media:
                yield Notice(f"blob {cid} of {did}: {self.unresolved[did]}; kept the post without it")
            if url and self.account.media and url not in self.media_fetched and not self.state.has_media(url):
                self.media_fetched.add(url)
                exchange = yield from self.fetch_blob(url)
                if exchange is not None and exchange.status == 200:
                    digest = exchange.body_sha256
                    entry["sha256"] = digest
                    yield MediaFile(url, digest, exchange.body_size, exchange.headers.get("Content-Type"), exchange.ref)
            normalised.append(entry)
        return normalised

    def fetch_blob(self, url: str) -> Generator[Observation, None, Exchange | None]:
        """One blob into the WARC (base.fetch_media_file). From another server, a throttle past max_rate_limit_wait
        is a notice too, and a failure there leaves that host asked nothing more this run."""
        ok = (*MEDIA_ANSWERS, 400)  # 400: no such blob
        keep_going = self.revision >= MEDIA_FAILURES_NOTED
        if not self.elsewhere(url):
            return (yield from fetch_media_file(self.session, url, keep_going, what="blob", kept="the post", ok=ok))
        host = host_of(url)
        later = "kept the post without it, and the next run asks for it again"
        if host in self.unreachable:
            yield Notice(f"blob {media_label(url)}: {self.not_asked(host)}; {later}")
            return None
        try:
            exchange = yield from fetch_media_file(self.session, url, keep_going, what="blob", kept="the post", ok=ok)
        except RateLimitedError:
            self.unreachable[host] = THROTTLED_PAST_WAIT
            yield Notice(f"blob {media_label(url)}: {self.unreachable[host]}; {later}")
            return None
        if exchange is None:  # failed after the retries, and said so
            self.unreachable[host] = "a blob download failed"
        return exchange

    # -- chat ----------------------------------------------------------------------------------------------
    def chat(self, nsid: str, params: dict[str, Any], *, first: bool = False) -> Exchange | None:
        """A chat call through the PDS's service proxy; None when the service is not offered there.

        Only the first call of a run may conclude "not offered" (not implemented, unknown method, or a proxy
        the PDS cannot resolve); after that every failure is a failure. A 502 `UpstreamFailure` is not that:
        the PDS knows the service and could not reach it this time, so it is retried, then fails the account
        (the next run reads what was missed).
        """
        ok = (200, 400, 404, 500, 501) if first else (200,)
        exchange = self.xrpc(self.pds, nsid, params, ok=ok, authed=True, headers={"atproto-proxy": self.chat_proxy})
        if exchange.status == 200:
            return exchange
        error, message = _error_name(exchange), _error_message(exchange).lower()
        if (
            exchange.status in (404, 501)
            or error in NOT_IMPLEMENTED
            or "proxy" in message
            or "not implemented" in message
        ):
            self.chat_answer = f"HTTP {exchange.status} {error} {message}".strip()
            return None
        raise PlatformError(
            f"GET {exchange.url}: HTTP {exchange.status} {error} {message} (WARC record {exchange.ref.record_id})"
        )

    def fetch_chats(self) -> Iterator[Observation]:
        """Every conversation whose `rev` moved since its last complete read, every message in it."""
        cursor: str | None = None
        paging = Paging("the conversations (chat.bsky.convo.listConvos)")
        while True:
            params: dict[str, Any] = {"limit": PAGE_LIMIT}
            if cursor:
                params["cursor"] = cursor
            exchange = self.chat("chat.bsky.convo.listConvos", params, first=cursor is None)
            if exchange is None:
                yield Notice(
                    f"direct messages not captured: {self.pds} does not offer chat.bsky.convo via "
                    f"{self.chat_proxy} (it answered {self.chat_answer})"
                )
                return
            page = exchange.json()
            _expect(isinstance(page, dict) and isinstance(page.get("convos"), list), exchange, "a list of convos")
            for convo in page["convos"]:
                _expect(isinstance(convo, dict) and "id" in convo, exchange, "a convo")
                name = f"convo_rev:{convo['id']}"
                if convo.get("rev") and self.state.cursor(name) == str(convo["rev"]):
                    continue
                yield from self.read_convo(convo)
                if convo.get("rev"):
                    yield CursorUpdate(name, str(convo["rev"]))
            cursor = paging.next_cursor(page, "convos", exchange)
            if not cursor:
                return

    def read_convo(self, convo: dict[str, Any]) -> Iterator[Observation]:
        conversation = f"bluesky:chat:{convo['id']}"
        members = {str(m.get("did")): m for m in convo.get("members") or [] if isinstance(m, dict)}
        cursor: str | None = None
        paging = Paging(f"the messages of conversation {convo['id']} (chat.bsky.convo.getMessages)")
        while True:
            params: dict[str, Any] = {"convoId": convo["id"], "limit": PAGE_LIMIT}
            if cursor:
                params["cursor"] = cursor
            exchange = self.chat("chat.bsky.convo.getMessages", params)
            if exchange is None:  # never: only the first call may answer "not offered"
                raise PlatformError(f"chat.bsky.convo.getMessages of {convo['id']} was not answered")
            page = exchange.json()
            _expect(isinstance(page, dict) and isinstance(page.get("messages"), list), exchange, "a list of messages")
            for message in page["messages"]:
                _expect(isinstance(message, dict) and "id" in message, exchange, "a message")
                key = f"{conversation}:{message['id']}"
                if message.get("$type") == DELETED_MESSAGE:
                    known = self.state.latest(key)
                    if known is not None and not known.deleted:
                        evidence = {
                            "method": "deletedMessageView",
                            "url": exchange.url,
                            "message": message,
                            "warc_file": exchange.ref.warc_file,
                            "warc_record_id": exchange.ref.record_id,
                            "also_if": DELETED_FOR_SELF,
                        }
                        yield Deletion(key, evidence, exchange.ref)
                    continue
                sender = str((message.get("sender") or {}).get("did") or "")
                member = members.get(sender, {})
                embed = message.get("embed")
                yield Item(
                    item_key=key,
                    platform="bluesky",
                    kind="message",
                    native_id=str(message["id"]),
                    source=exchange.ref,
                    raw=message,
                    text=str(message.get("text") or ""),
                    created_at=utc_iso(message.get("sentAt")),
                    thread_key=conversation,
                    conversation_key=conversation,
                    author_id=sender or None,
                    author_handle=member.get("handle"),
                    author_name=member.get("displayName"),
                    visibility="direct",
                    extra={"quote": quoted_uri(embed)},
                )
            cursor = paging.next_cursor(page, "messages", exchange)
            if not cursor:
                return
