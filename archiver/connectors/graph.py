"""Meta's Graph API, shared by the Facebook Page and Instagram connectors: paging, errors, rate limits.

Paging: every edge answers `{"data": [...], "paging": {"cursors": {...}, "next": URL}}`; the listing goes on
while `paging.next` is present, however short a page is (Meta filters pages for privacy after cutting
them, so a short page is not the end). Cursors are never kept between runs: Meta invalidates them when an
item is deleted. Connectors keep the newest timestamp they saw instead and re-read a recent window.

Errors come as an envelope `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`:
- code 190 (and 102): the access token is expired or revoked: AuthError, a person must renew it;
- code 100 with subcode 33: the object does not exist (a direct lookup's proof of deletion);
- codes 4, 17, 32, 613 and 80001-80014: throttled; the session waits (GraphUsagePolicy) and tries again;
- codes 10 and 200-299: a permission is missing: GraphPermissionError names it;
- anything else: PlatformError naming the URL, code and message.

Rate limits: X-App-Usage and X-Business-Use-Case-Usage carry percentages of the budget used (and, for the
business use case, `estimated_time_to_regain_access` in minutes); the policy slows down as usage nears 100%
and waits the estimated time once throttled, within the archive's max_rate_limit_wait.

The token travels in the Authorization header only; `appsecret_proof` (HMAC-SHA256 of the token keyed with
the app secret) is added to every call when the account names an app secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import requests

from ..config import AccountConfig, resolve_option_secret
from ..errors import AuthError, PlatformError
from ..http import REDACTED, SECRET_PARAMS, Exchange, Session, check_json, check_request, retry_after_seconds
from ..items import CursorUpdate, Deletion, Item, MediaFile, Observation
from ..store import KnownItem
from ..warc import CaptureRef
from .base import FIRST_REVISION, AccountState, Credential, FetchWindow, PageTrail, RecentSet, fetch_media_file

DEFAULT_GRAPH_VERSION = "v26.0"
THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
AUTH_CODES = frozenset({102, 190})
# The answer a direct lookup gets for an object that is gone.
GONE = (100, 33)
# Graph answers error envelopes with these statuses; 5xx stays with the session's retries.
ERROR_STATUSES = (400, 401, 403, 404)
# The request revision (see base.RequestRevisions) of both Graph connectors from which a media download that fails
# (a 5xx, no answer, after the retries) leaves its item archived without the file, with a notice, and the run goes
# on (base.fetch_media_file); before, it stopped the account.
MEDIA_FAILURES_NOTED = 2


# -- times -----------------------------------------------------------------------------------------------------
def graph_time(value: str | None) -> str | None:
    """A Graph timestamp ("2026-11-20T10:00:00+0000") as the archive's ISO UTC form ("...Z")."""
    if not value:
        return None
    text = value.replace("Z", "+00:00")
    if len(text) >= 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- errors ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphError:
    http_status: int
    code: int | None
    subcode: int | None
    message: str
    type: str
    fbtrace_id: str

    @property
    def gone(self) -> bool:
        return (self.code, self.subcode) == GONE

    def evidence(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "error_subcode": self.subcode,
            "message": self.message,
            "type": self.type,
            "fbtrace_id": self.fbtrace_id,
        }

    def describe(self) -> str:
        sub = f", subcode {self.subcode}" if self.subcode is not None else ""
        return f"Graph error {self.code}{sub}: {self.message}"


class GraphPermissionError(PlatformError):
    """The token lacks a permission (Graph codes 10, 200-299)."""


def parse_graph_error(status: int, body: bytes) -> GraphError | None:
    """The error envelope of a Graph answer, or None when the body carries none."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None

    def number(value: Any) -> int | None:
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    return GraphError(
        status,
        number(error.get("code")),
        number(error.get("error_subcode")),
        str(error.get("message") or ""),
        str(error.get("type") or ""),
        str(error.get("fbtrace_id") or ""),
    )


# -- rate limits -----------------------------------------------------------------------------------------------
def usage_from_headers(headers: Any) -> tuple[float | None, float]:
    """(highest usage percentage, longest estimated_time_to_regain_access in minutes) from the usage headers."""
    highest: float | None = None
    regain = 0.0

    def consider(entry: Any) -> None:
        nonlocal highest, regain
        if not isinstance(entry, dict):
            return
        for name in ("call_count", "total_cputime", "total_time"):
            value = entry.get(name)
            if isinstance(value, int | float):
                highest = max(highest or 0.0, float(value))
        eta = entry.get("estimated_time_to_regain_access")
        if isinstance(eta, int | float):
            regain = max(regain, float(eta))

    for header in ("X-App-Usage", "X-Business-Use-Case-Usage"):
        raw = headers.get(header)
        if not raw:
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if header == "X-App-Usage":
            consider(value)
        elif isinstance(value, dict):
            for entries in value.values():
                for entry in entries if isinstance(entries, list) else [entries]:
                    consider(entry)
    return highest, regain


class GraphUsagePolicy:
    """Slow down as the usage headers near 100%; once throttled, wait the time Meta estimates."""

    def __init__(self, slow_down_at: float = 80.0, max_pause: float = 10.0, default_wait: float = 300.0):
        self.slow_down_at = slow_down_at
        self.max_pause = max_pause
        self.default_wait = default_wait
        self.usage: float | None = None
        self.regain_at: float | None = None

    def observe(self, response: requests.Response, now: float) -> None:
        usage, regain_minutes = usage_from_headers(response.headers)
        if usage is not None:
            self.usage = usage
        self.regain_at = now + regain_minutes * 60 if regain_minutes > 0 else None

    def wait_before_request(self, now: float, url: str = "") -> float:  # one limit for every call
        if self.regain_at is not None and self.regain_at > now:
            wait, self.regain_at, self.usage = self.regain_at - now, None, None
            return wait
        if self.usage is not None and self.usage >= 100:
            self.usage = None  # wait once; the next answer's headers say where usage stands
            return self.default_wait
        return 0.0

    def pace(self, now: float) -> float:
        """A pause of our own choosing between 80 and 100% usage, to stay clear of a throttle. It is not a
        wait the platform imposed, so it does not count against max_rate_limit_wait: a Page that needs many
        calls at high usage is read more slowly, not given up."""
        if self.usage is None or not self.slow_down_at <= self.usage < 100:
            return 0.0
        return self.max_pause * (self.usage - self.slow_down_at) / (100 - self.slow_down_at)

    def is_throttled(self, status: int, headers: Any, body: bytes) -> bool:
        if status == 200:
            return False
        error = parse_graph_error(status, body)
        return error is not None and error.code in THROTTLE_CODES

    def wait_after_429(self, response: requests.Response, now: float) -> float:
        _, regain_minutes = usage_from_headers(response.headers)
        self.regain_at, self.usage = None, None  # this wait covers it
        if regain_minutes > 0:
            return regain_minutes * 60
        asked = retry_after_seconds(response.headers, now)
        return asked if asked is not None else self.default_wait


# -- credentials -----------------------------------------------------------------------------------------------
def read_app_secret(account: AccountConfig) -> str | None:
    """The app secret named by options.app_secret_env or options.app_secret_file, read now; None if not named.
    Read and refused like the token (config.resolve_option_secret), and checked with it before a run."""
    return resolve_option_secret(account, "app_secret")


def appsecret_proof(app_secret: str, token: str) -> str:
    return hmac.new(app_secret.encode("utf-8"), token.encode("utf-8"), hashlib.sha256).hexdigest()


def check_graph_credential(account: AccountConfig, token: str, timeout: float, fields: str = "id,name") -> Credential:
    """GET /me with the token (not archived): who the token is, or AuthError naming the token to renew."""
    version = account.options.get("graph_version", DEFAULT_GRAPH_VERSION)
    url = f"{account.api_base}/{version}/me"
    params = {"fields": fields}
    secret = read_app_secret(account)
    if secret:
        params["appsecret_proof"] = appsecret_proof(secret, token)
    headers = {"Authorization": f"Bearer {token}"}
    response = check_request(account.name, "GET", url, params=params, headers=headers, timeout=timeout)
    if response.status_code != 200:
        error = parse_graph_error(response.status_code, response.content)
        if (error is not None and error.code in AUTH_CODES) or response.status_code == 401:
            detail = error.describe() if error else f"HTTP {response.status_code}"
            raise AuthError(
                f"account {account.name}: Graph API refused the token from {account.credential_ref} ({detail}); "
                "renew the token"
            )
        raise PlatformError(f"account {account.name}: GET {url} answered HTTP {response.status_code}")
    try:
        me = check_json(account.name, response)
        who = str(me.get("name") or me.get("username") or me["id"])
    except (KeyError, TypeError, AttributeError):
        raise PlatformError(f"account {account.name}: GET {url} did not answer a Graph node") from None
    return Credential(who, graph_token_expiry(account, token, timeout, version, params))


def graph_token_expiry(
    account: AccountConfig, token: str, timeout: float, version: str, params: dict[str, str]
) -> datetime | None:
    """When the token stops working, from Meta's debug_token: the sooner of `expires_at` (0 = never) and
    `data_access_expires_at` (the 90-day window after which a Page token reads nothing). None when Meta does
    not say (the check is advisory: a refusal here is not the token's failure)."""
    url = f"{account.api_base}/{version}/debug_token"
    query = {"input_token": token, **{k: v for k, v in params.items() if k == "appsecret_proof"}}
    try:
        headers = {"Authorization": f"Bearer {token}"}
        response = check_request(account.name, "GET", url, params=query, headers=headers, timeout=timeout)
        data = check_json(account.name, response).get("data") if response.status_code == 200 else None
    except (PlatformError, AttributeError):
        return None
    if not isinstance(data, dict):
        return None
    moments = [data.get("expires_at"), data.get("data_access_expires_at")]
    stamps = [int(m) for m in moments if isinstance(m, int | float) and m > 0]
    return datetime.fromtimestamp(min(stamps), UTC) if stamps else None


# -- media -----------------------------------------------------------------------------------------------------
# Query parameters by which Meta's CDNs sign, expire, size or route a file, never name it: every answer brings new
# values. Any other parameter may name the file (the messaging CDN's asset_id) and is kept.
VOLATILE_MEDIA_PARAMS = frozenset({"oh", "oe", "stp", "ccb", "efg", "edm", "ig_cache_key", "signature"})


def media_identity(url: str, attachment: str | None = None) -> str:
    """The key a media file is known by (in its item's content digest, in `media_files`, for has_media), from the
    signed URL it is fetched by.

    A path that names a file (scontent's `/v/t39.30808-6/123_n.jpg`) is the key, without the query: that is how
    every file was keyed so far, so an archived item keeps its digest. A path that is an endpoint (the messaging
    CDN's `/ig_messaging_cdn/?asset_id=...`, `safe_image.php`) names no file: the Graph attachment
    (`message-id/attachment-id`) does, when there is one; otherwise the query without the parameters known to sign
    or expire, or the whole query when nothing else is left (a new version when it changes, never a file lost
    behind another's key).
    """
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    name = parts.path.rsplit("/", 1)[-1]
    if (name and not name.endswith(".php")) or not parts.query:
        return base
    if attachment:
        return f"{base}#attachment={attachment}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in query if k not in VOLATILE_MEDIA_PARAMS and not k.startswith("_nc_")]
    return f"{base}?{urlencode(kept or query)}"


# -- the client ------------------------------------------------------------------------------------------------
@dataclass
class GraphAnswer:
    exchange: Exchange
    value: Any  # the parsed JSON of a 200
    error: GraphError | None


def _without_secrets(url: str) -> str:
    """A paging URL without credentials (Meta repeats access_token in paging.next when it was in the query)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in SECRET_PARAMS]
    return urlunsplit(parts._replace(query=urlencode(query)))


class GraphClient:
    """Graph calls for one account over a capturing (or replaying) session."""

    def __init__(self, session: Session, account: AccountConfig):
        self.session = session
        self.account = account
        self.version = account.options.get("graph_version", DEFAULT_GRAPH_VERSION)
        self.base = f"{account.api_base}/{self.version}"
        self.app_secret = read_app_secret(account) if self._live() else None
        self.proof: str | None = None  # the appsecret_proof of the session's token, once computed

    def _live(self) -> bool:
        return self.session.secret() not in (None, REDACTED)

    def _proof(self) -> dict[str, str]:
        names_secret = self.account.options.get("app_secret_env") or self.account.options.get("app_secret_file")
        if not names_secret:
            return {}
        token = self.session.secret()
        if self.app_secret is None or token in (None, REDACTED):
            return {"appsecret_proof": REDACTED}  # a replay: the recorded value was masked the same way
        if self.proof is None:
            self.proof = appsecret_proof(self.app_secret, token)
            # As secret as the token while it lives (a system user's Page token never expires), and Meta repeats
            # it in every paging.next: masked wherever the session writes, bodies included, like the token.
            self.session.add_secret(self.proof)
        return {"appsecret_proof": self.proof}

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def call(self, url: str, params: dict[str, Any] | None = None) -> GraphAnswer:
        """GET a Graph URL; an error envelope is returned (not raised) unless it stops the account."""
        exchange = self.session.get(url, {**(params or {}), **self._proof()}, ok=(200, *ERROR_STATUSES))
        if exchange.status == 200:
            return GraphAnswer(exchange, exchange.json(), None)
        error = parse_graph_error(exchange.status, exchange.body)
        if error is None and exchange.status == 401:
            raise AuthError(
                f"account {self.account.name}: Graph API refused the access token from "
                f"{self.account.credential_ref} (HTTP 401); renew the token"
            )
        if error is None:
            raise PlatformError(
                f"GET {exchange.url}: HTTP {exchange.status} without a Graph error envelope "
                f"(WARC record {exchange.ref.record_id})"
            )
        if error.code in AUTH_CODES or exchange.status == 401:
            raise AuthError(
                f"account {self.account.name}: Graph API refused the access token from "
                f"{self.account.credential_ref} ({error.describe()}); renew the token"
            )
        return GraphAnswer(exchange, None, error)

    def fail(self, answer: GraphAnswer, doing: str) -> PlatformError:
        """The exception that stops the account after an error answer, naming the permission when one is missing."""
        error = answer.error
        assert error is not None
        where = f"GET {answer.exchange.url} ({doing})"
        if error.code == 10 or (error.code is not None and 200 <= error.code <= 299):
            return GraphPermissionError(
                f"account {self.account.name}: {where}: {error.describe()}; grant the token the permission "
                "README names for this platform"
            )
        return PlatformError(
            f"account {self.account.name}: {where}: {error.describe()} "
            f"(fbtrace_id {error.fbtrace_id}, WARC record {answer.exchange.ref.record_id})"
        )

    def node(self, path: str, params: dict[str, Any] | None = None, doing: str = "read") -> GraphAnswer:
        """A node that must exist (the page, the Instagram user)."""
        answer = self.call(self.url(path), params)
        if answer.error is not None:
            raise self.fail(answer, doing)
        expect(isinstance(answer.value, dict) and "id" in answer.value, answer.exchange, "a node with an id")
        return answer

    def lookup(self, object_id: str, fields: str) -> GraphAnswer:
        """A direct lookup: `value` is the object, or `error.gone` proves it no longer exists."""
        answer = self.call(self.url(object_id), {"fields": fields})
        if answer.error is not None and not answer.error.gone:
            raise self.fail(answer, f"lookup of {object_id}")
        return answer

    def pages(self, path: str, params: dict[str, Any], doing: str) -> Iterator[tuple[Exchange, list[dict]]]:
        """Every page of an edge, following paging.next until it is absent (never stopping at a short page)."""
        url: str | None = self.url(path)
        query: dict[str, Any] | None = params
        trail = PageTrail(self.account.name, doing)
        while url:
            trail.visit(url, query)  # a paging.next that comes back is a loop, not more data
            answer = self.call(url, query)
            if answer.error is not None:
                raise self.fail(answer, doing)
            page = answer.value
            expect(isinstance(page, dict) and isinstance(page.get("data"), list), answer.exchange, "a Graph edge page")
            for entry in page["data"]:
                expect(isinstance(entry, dict) and "id" in entry, answer.exchange, "an edge entry with an id")
            yield answer.exchange, page["data"]
            following = (page.get("paging") or {}).get("next")
            url, query = (_without_secrets(following), None) if following else (None, None)


def expect(condition: bool, exchange: Exchange, what: str) -> None:
    if not condition:
        raise PlatformError(
            f"GET {exchange.url}: unexpected response shape ({what}); "
            f"raw response in WARC record {exchange.ref.record_id}"
        )


# -- what both connectors do alike -----------------------------------------------------------------------------
MESSAGE_FIELDS = (
    "id,created_time,from,to,message,"
    "attachments{id,mime_type,name,size,file_url,image_data{url,preview_url,width,height},video_data{url,preview_url}}"
)
CONVERSATION_FIELDS = "id,updated_time,link,participants,message_count"
CONVERSATIONS_CURSOR = "conversations_newest_updated_time"
MESSAGES_IN_DETAIL = 20


class GraphRun:
    """One account's run: the state both Graph connectors share (seen items, media, proofs, conversations)."""

    platform = "graph"

    def __init__(
        self,
        session: Session,
        account: AccountConfig,
        state: AccountState,
        window: FetchWindow,
        revision: int = FIRST_REVISION,
    ):
        self.client = GraphClient(session, account)
        self.session = session
        self.media_failures_noted = revision >= MEDIA_FAILURES_NOTED
        self.account = account
        self.state = state
        self.window = window
        self.seen = RecentSet()  # item keys handled lately in this run
        self.media_fetched = RecentSet()

    def key(self, object_id: str) -> str:
        return f"{self.platform}:{object_id}"

    def conversation_key(self, conversation_id: str) -> str:
        return f"{self.platform}:conversation:{conversation_id}"

    # -- proofs ----------------------------------------------------------------------------------------------
    def lookup_evidence(self, answer: GraphAnswer, listing: Exchange | None) -> dict[str, Any]:
        assert answer.error is not None
        evidence: dict[str, Any] = {
            "method": "lookup",
            "url": answer.exchange.url,
            "http_status": answer.exchange.status,
            "graph_error": answer.error.evidence(),
            "warc_file": answer.exchange.ref.warc_file,
            "warc_record_id": answer.exchange.ref.record_id,
            # Meta's own words for code 100 / subcode 33: the object "does not exist, cannot be loaded due to
            # missing permissions, or does not support this operation". Said here as for the other platforms.
            "also_if": "the token may no longer load it (a permission or task of the Page removed, or a "
            "restricted commenter): Meta gives the same code 100, subcode 33",
        }
        if listing is not None:
            evidence["absent_from"] = {"url": listing.url, "warc_record_id": listing.ref.record_id}
        return evidence

    def list_newest_first(
        self,
        edge: str,
        params: dict[str, Any],
        what: str,
        cursor: str,
        time_field: str,
        observe: Callable[[dict[str, Any], CaptureRef], Iterator[Observation]],
        read_children: Callable[[dict[str, Any]], Iterator[Observation]],
    ) -> Iterator[Observation]:
        """A Page's posts or an account's media, newest first, each observed then its children read, down to
        the older of the newest already archived (`cursor`) and the re-check window. The listing then
        completed: every known one at least as new as where it stopped must have been in it; a lookup decides
        about each left out."""
        newest_known = self.state.cursor(cursor)
        stop_before = min(newest_known, self.window.recheck_since) if newest_known else None
        newest: str | None = None
        listed: set[str] = set()
        last_page: Exchange | None = None
        reached_stop = False
        for exchange, objects in self.client.pages(edge, params, what):
            last_page = exchange
            for obj in objects:
                created = graph_time(obj.get(time_field)) or ""
                if stop_before and created < stop_before:
                    reached_stop = True
                    break
                newest = max(newest or created, created)
                listed.add(self.key(str(obj["id"])))
                yield from observe(obj, exchange.ref)
                yield from read_children(obj)
            if reached_stop:
                break
        missing = [
            known
            for known in self.state.known_items(kinds=("post",))
            if not known.deleted
            and known.item_key not in listed
            and (stop_before is None or (known.created_at or "") >= stop_before)
        ]

        def again(known: KnownItem, answer: GraphAnswer) -> Iterator[Observation]:
            yield from observe(answer.value, answer.exchange.ref)

        yield from self.confirm_absent(missing, last_page, params["fields"], again)
        if newest:
            yield CursorUpdate(cursor, max(newest, newest_known or ""))

    def confirm_absent(
        self,
        missing: list[KnownItem],
        listing: Exchange | None,
        fields: str,
        observe: Callable[[KnownItem, GraphAnswer], Iterator[Observation]],
    ) -> Iterator[Observation]:
        """Known items a complete listing left out: a direct lookup decides. Gone (code 100, subcode 33) is a
        proven deletion with the answer as evidence; found means filtered from the listing, observed again."""
        for known in sorted(missing, key=lambda k: k.item_key):
            answer = self.client.lookup(known.native_id, fields)
            if answer.error is not None:
                yield Deletion(known.item_key, self.lookup_evidence(answer, listing), answer.exchange.ref)
            else:
                expect(isinstance(answer.value, dict) and "id" in answer.value, answer.exchange, "a Graph object")
                yield from observe(known, answer)

    # -- media -----------------------------------------------------------------------------------------------
    def fetch_media(self, entries: list[dict[str, Any]], message_id: str | None = None) -> Iterator[Observation]:
        """Download each media file into the WARC once (never with the token: it is a CDN); returns the entries.

        Meta's CDN URLs carry signatures that change from one answer to the next: the file is known by
        media_identity (the entry's `url`, part of the content digest), and fetched by the full URL. A message's
        attachments (`message_id`) are named by the message and their Graph id (their place when there is none),
        which hold where the URL names no file."""
        out = []
        for index, entry in enumerate(entries):
            fetch_url = entry.get("url")
            attachment = None
            if message_id is not None:
                attachment = f"{quote(message_id, safe='')}/{quote(str(entry.get('id') or f'#{index}'), safe='')}"
            url = media_identity(fetch_url, attachment) if fetch_url else None
            entry = {**entry, "url": url}
            if fetch_url and self.account.media and url not in self.media_fetched and not self.state.has_media(url):
                self.media_fetched.add(url)
                # Named in a notice by its host and record only: a Messenger file's URL ends in its own name.
                exchange = yield from fetch_media_file(self.session, fetch_url, self.media_failures_noted)
                if exchange is not None and exchange.status == 200:
                    digest = exchange.body_sha256
                    entry["sha256"] = digest
                    yield MediaFile(url, digest, exchange.body_size, exchange.headers.get("Content-Type"), exchange.ref)
            out.append(entry)
        return out

    # -- conversations (Messenger and Instagram Direct share the Page's conversations edge) ------------------
    def fetch_conversations(self, page_id: str, platform: str) -> Iterator[Observation]:
        """Conversations by last activity, down to those unchanged since the last complete pass and out of the
        re-check window; each one read is listed whole (the messages edge follows paging.next)."""
        done_upto = self.state.cursor(CONVERSATIONS_CURSOR)
        newest: str | None = None
        stopped = False
        for exchange, conversations in self.client.pages(
            f"{page_id}/conversations",
            {"platform": platform, "fields": CONVERSATION_FIELDS, "limit": 25},
            f"{platform} conversations",
        ):
            for conversation in conversations:
                updated = graph_time(conversation.get("updated_time")) or ""
                newest = max(newest or updated, updated)
                if done_upto and updated <= done_upto and updated < self.window.recheck_since:
                    stopped = True
                    break
                yield from self.read_conversation(conversation, exchange)
            if stopped:
                break
        if newest:
            yield CursorUpdate(CONVERSATIONS_CURSOR, max(newest, done_upto or ""))

    def read_conversation(self, conversation: dict[str, Any], listing: Exchange) -> Iterator[Observation]:
        conv_key = self.conversation_key(str(conversation["id"]))
        present: set[str] = set()
        oldest: str | None = None
        last_page: Exchange | None = None
        for exchange, messages in self.client.pages(
            f"{conversation['id']}/messages", {"fields": MESSAGE_FIELDS, "limit": 25}, "messages"
        ):
            last_page = exchange
            for message in messages:
                created = graph_time(message.get("created_time")) or ""
                oldest = min(oldest or created, created)
                present.add(self.key(str(message["id"])))
                yield from self.observe_message(message, exchange.ref, conv_key)
        # The listing completed. Meta serves only a conversation's most recent messages in detail, so in a long
        # one only messages as new as the oldest listed must have been there; a short one must hold them all.
        whole = len(present) < MESSAGES_IN_DETAIL
        missing = [
            known
            for known in self.state.known_items(conversation_key=conv_key)
            if not known.deleted
            and known.item_key not in present
            and (whole or (oldest and (known.created_at or "") >= oldest))
        ]

        def again(known: KnownItem, answer: GraphAnswer) -> Iterator[Observation]:
            yield from self.observe_message(answer.value, answer.exchange.ref, conv_key)

        yield from self.confirm_absent(missing, last_page or listing, MESSAGE_FIELDS, again)

    def observe_message(self, message: dict[str, Any], ref: CaptureRef, conv_key: str) -> Iterator[Observation]:
        key = self.key(str(message["id"]))
        if key in self.seen:
            return
        self.seen.add(key)
        entries = []
        for attachment in (message.get("attachments") or {}).get("data", []):
            url = (
                (attachment.get("image_data") or {}).get("url")
                or (attachment.get("video_data") or {}).get("url")
                or attachment.get("file_url")
            )
            entries.append(
                {
                    "id": attachment.get("id"),
                    "type": attachment.get("mime_type"),
                    "url": url,
                    "description": attachment.get("name"),
                }
            )
        media = list((yield from self.fetch_media(entries, str(message["id"]))))
        author = message.get("from") or {}
        yield Item(
            item_key=key,
            platform=self.platform,
            kind="message",
            native_id=str(message["id"]),
            source=ref,
            raw=message,
            text=message.get("message") or "",
            created_at=graph_time(message.get("created_time")),
            conversation_key=conv_key,
            author_id=str(author["id"]) if author.get("id") else None,
            author_handle=author.get("username"),
            author_name=author.get("name"),
            visibility="direct",
            media=tuple(media),
        )
