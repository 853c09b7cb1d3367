"""One capturing HTTP session per account: every exchange goes to the WARC before anyone parses it.

Secrets are removed before anything is written: the Authorization header's value, query parameters that
carry credentials, a user name and password before a URL's host, and any occurrence of the token's value (or
of another secret the connector registered, see `add_secret`) in what the platform sent back. A credential is
never sent in clear beyond loopback, nor one taken from a URL (see `_refusal`). Retries are bounded (timeouts,
connection errors, bodies cut short, 5xx) and rate limits are honoured through a per-platform policy. Every
body is read in pieces against a deadline and a size cap (see _BodyReader).

A media file is never named by its URL in an error, a log line or a notice (`media_label`): a file's URL can
carry its original name (a Messenger attachment's is the name the patient gave the file), which is content,
and those lines go to the cron log, `archiver status` and the alert channels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import unquote_plus, urlencode, urljoin, urlsplit, urlunsplit

import requests
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError
from urllib3.exceptions import SSLError as Urllib3SSLError

from . import __version__
from .config import is_loopback
from .errors import AuthError, Interrupted, PlatformError, RateLimitedError
from .logs import register_secret, secret_forms
from .warc import CaptureRef, HttpMessage, SpooledBody, WarcWriter

log = logging.getLogger("archiver.http")

REDACTED = "[REDACTED]"
REDACTED_BYTES = REDACTED.encode("ascii")
SECRET_PARAMS = {
    "access_token",
    "token",
    "key",
    "api_key",
    "apikey",
    "password",
    "client_secret",
    "appsecret_proof",
    "input_token",  # Meta's debug_token takes the token to inspect in the query
}
SECRET_HEADERS = {"authorization", "cookie", "proxy-authorization", "x-api-key"}
USER_AGENT = f"archiver/{__version__} (compliance archive)"
# The least wait after a throttle answer, doubled for each one in a row on the same request, up to the cap.
MIN_THROTTLE_WAIT = 1.0
MAX_THROTTLE_FLOOR = 60.0
STOPPED = "interrupted (Ctrl-C or SIGTERM) before it finished; what was captured is kept, the next run resumes"

# The bounds of one exchange. requests' timeout bounds each socket read, not an exchange: a server that sends a byte
# now and then (a broken proxy, a slow-loris CDN) held a run forever, and a body without end filled the memory.
# An attempt may take EXCHANGE_TIMEOUTS request_timeouts (connecting, the first byte of the answer and the body may
# each take one), and a second more for each SLOWEST_RATE bytes of body that arrived: a big video on a slow link
# (1 Mbit/s or better) still arrives whole, a trickle is given up after a few request_timeouts.
EXCHANGE_TIMEOUTS = 3
SLOWEST_RATE = 128 * 1024
# The size caps: an API answer is JSON (pages of a few MB at most); a media file is mostly a video, and the platforms'
# limits for one posted through their APIs are at or under 512 MB (X 512 MB, LinkedIn 500 MB, Instagram reels 300 MB
# to 1 GB, Bluesky and Mastodon about 100 MB; Facebook allows far more). An API answer is held in memory (it is
# parsed); a media file's body past BODY_HELD bytes is not: it goes to a temporary file as it arrives (SpooledBody)
# and from there to the WARC, and its connector is given its sha256 and size (Exchange.digest). A replay, verify and
# rebuild read such a record as a stream too, so memory stays flat whatever the file's size (BENCHMARKS.md, "Memory
# with one large media file").
API_MAX_BYTES = 64 * 2**20
MEDIA_MAX_BYTES = 512 * 2**20
BODY_HELD = 2**20
READ_SIZE = 256 * 1024  # the most one read asks for; it returns what has arrived, so a deadline is checked often
# What a media download accepts besides 200 (connectors/base.py MEDIA_ANSWERS): a file refused or gone, which its
# connector notes and goes on without. Such a caller is given a file over the cap the same way (see NotKept).
FILE_GONE_ANSWERS = frozenset({401, 403, 404, 410})
# What a body cut short or garbled raises: a failed attempt, retried like a timeout.
RETRIED = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def redact_url(url: str) -> str:
    """The URL with credential-bearing query parameters and any `user:password@` before its host masked; every
    other byte stays as it was sent.

    The query is not re-encoded: the WARC then shows a request exactly as it went out (LinkedIn, for one,
    refuses a URN in a query unless it is percent-encoded, and the record should show that it was).
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc and not parts.query:
        return url
    if "@" in parts.netloc:
        parts = parts._replace(netloc=f"{REDACTED}@{host_of(url)}")
    pieces = []
    for piece in parts.query.split("&") if parts.query else []:
        name = piece.split("=", 1)[0]
        pieces.append(f"{name}={REDACTED}" if unquote_plus(name).lower() in SECRET_PARAMS else piece)
    return urlunsplit(parts._replace(query="&".join(pieces)))


def host_of(url: str) -> str:
    """The URL's host and port as sent in a Host header: no user name or password, no path."""
    try:
        return urlsplit(url).netloc.rpartition("@")[2]
    except ValueError:
        return ""


def origin_of(url: str) -> str:
    """scheme://host[:port] of the URL, for a message: nothing of its path, query or user name and password."""
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    return f"{scheme or '?'}://{host_of(url) or '?'}"


def media_label(url: str, record_id: str | None = None) -> str:
    """How an error, a log line or a notice names a media file: the host it was asked of and, once it answered,
    the WARC record of the answer (which holds the URL, behind the archive's access control). Never the URL's
    path or query: a file's URL can carry the name it was uploaded under (a Messenger attachment's `file_url`
    ends in the patient's own file name, `Maria-Lopez-biopsy-results.pdf`), and a CDN's signature."""
    where = f"file from {host_of(url) or 'an unnamed host'}"
    return f"{where} (WARC record {record_id})" if record_id else where


def sends_in_clear(url: str) -> bool:
    """Whether a request to `url` crosses the network unencrypted: anything but https:// beyond loopback."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return True
    return parts.scheme.lower() != "https" and not is_loopback(host)


def names_credentials(url: str) -> bool:
    """Whether the URL carries a user name or password before its host (`https://user:password@host/`)."""
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return False


def with_params(url: str, params: dict[str, Any] | None) -> str:
    """The URL a GET with these parameters asks for (also how a replay finds the recorded exchange)."""
    return url + ("&" if "?" in url else "?") + urlencode(params) if params else url


def sent_credential(url: str, header_names: Iterable[str], body: bytes) -> bool:
    """Whether a request, as recorded (its URL and body masked by redact_url and the Redactor), carried a credential:
    an Authorization header (the token, set by the session on a request sent with `auth`), a credential-bearing query
    parameter (the token as a platform's `token_param`), or a secret the session knows in its URL (a platform
    echoing the token into a Location) or body (a login's password). The live session and a replay judge the same
    recorded request alike with it (CapturingSession._sent_credential, rebuild.ReplaySession)."""
    return any(name.lower() == "authorization" for name in header_names) or REDACTED in url or REDACTED_BYTES in body


def refused_without_credentials(status: int, record_id: str | None = None, redirected_to: str = "") -> str:
    """What a 401 or 403 to a request that carried no credential (sent_credential) says, live and replayed: no token
    was refused, so there is none to renew; the answer is the endpoint's or the server's, not the account's.
    `redirected_to`: the origin (origin_of) that answered, when a redirect led away from the URL asked."""
    where = (f" from {redirected_to} after a redirect" if redirected_to else "") + (
        f", WARC record {record_id}" if record_id else ""
    )
    return (
        f"the server refused a request sent without credentials (HTTP {status}{where}): the endpoint wants "
        "authentication or the server refuses this client; check the account's api_base and URL options, and the "
        "platform's status"
    )


class Redactor:
    """Removes the known secret values from text and bytes (URLs, headers, bodies, error messages)."""

    def __init__(self, secrets: list[str]):
        self.secrets = list(secrets)

    def _values(self) -> list[str]:
        return sorted({form for s in self.secrets for form in secret_forms(s)}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._values():
            value = value.replace(secret, REDACTED)
        return value

    def bytes(self, value: bytes) -> bytes:
        for secret in self._values():
            value = value.replace(secret.encode("utf-8"), REDACTED.encode("ascii"))
        return value

    def stream(self) -> StreamRedactor:
        """A redactor for a body that arrives in pieces (see StreamRedactor), with the secrets known now."""
        return StreamRedactor([value.encode("utf-8") for value in self._values()])


class StreamRedactor:
    """Masks the secrets in a body that arrives in pieces: `feed` each piece, then `finish`; the outputs joined are
    the body masked. A secret split across two pieces is masked whole: the last bytes of a piece that could start
    one wait for the next. Where two secrets overlap, the one that starts first is masked (Redactor.bytes masks the
    longer first); either way no secret is left."""

    def __init__(self, secrets: list[bytes]):
        values = sorted({value for value in secrets if value}, key=len, reverse=True)  # longest first, as a match
        self.pattern = re.compile(b"|".join(re.escape(value) for value in values)) if values else None
        self.wait = max(map(len, values), default=1) - 1
        self.carry = b""

    def feed(self, piece: bytes) -> bytes:
        if self.pattern is None:
            return piece
        data = self.carry + piece
        limit = len(data) - self.wait  # a secret starting here or later may go on in the next piece
        out, at = [], 0
        for found in self.pattern.finditer(data):
            if found.start() >= limit:
                break
            out += [data[at : found.start()], REDACTED_BYTES]
            at = found.end()
        cut = max(at, limit)
        out.append(data[at:cut])
        self.carry = data[cut:]
        return b"".join(out)

    def finish(self) -> bytes:
        data, self.carry = self.carry, b""
        return self.pattern.sub(REDACTED_BYTES, data) if self.pattern is not None else data


@dataclass(frozen=True)
class BodyDigest:
    """What a connector is given of a media body it is not given whole (over BODY_HELD): its sha256 (hex) and size."""

    sha256: str
    size: int


def given_body(body: bytes | SpooledBody, file_download: bool) -> tuple[bytes, BodyDigest | None]:
    """What an Exchange hands its connector of a (masked) body, alike live and on replay: a media file's larger than
    BODY_HELD by its digest and size alone, anything else whole."""
    size = body.size if isinstance(body, SpooledBody) else len(body)
    if file_download and size > BODY_HELD:
        sha256 = body.sha256 if isinstance(body, SpooledBody) else hashlib.sha256(body).hexdigest()
        return b"", BodyDigest(sha256, size)
    return (body.read_all() if isinstance(body, SpooledBody) else body), None


@dataclass
class Exchange:
    """A captured response: status, headers, body, and where its WARC record is."""

    url: str  # redacted
    status: int
    headers: CaseInsensitiveDict
    body: bytes
    ref: CaptureRef
    request_ref: CaptureRef
    links: dict[str, str] = field(default_factory=dict)
    issued: dict[str, str] = field(default_factory=dict)  # secrets the platform issued (see `post`), unmasked
    digest: BodyDigest | None = None  # a media body not held (over BODY_HELD; `body` is then empty)

    @property
    def body_sha256(self) -> str:
        """The sha256 (hex) of the body as recorded, held or not."""
        return self.digest.sha256 if self.digest is not None else hashlib.sha256(self.body).hexdigest()

    @property
    def body_size(self) -> int:
        return self.digest.size if self.digest is not None else len(self.body)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise PlatformError(
                f"GET {self.url}: HTTP {self.status} body is not valid JSON ({exc}); "
                f"the raw response is in WARC record {self.ref.record_id}"
            ) from None


class RequestFailed(PlatformError):
    """A request that got no answer its caller accepts, after the retries: a 5xx, no answer in time, a connection
    refused or cut, another status outside `ok`. `why` is what happened without the URL ("HTTP 503 after 4
    attempt(s) (WARC record ...)"), for a connector that notes the failure and goes on."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


class DownloadFailed(RequestFailed):
    """A media download that failed so; the message names the file by media_label only."""


class Refused(PlatformError):
    """A request the session would not send, or a redirect it would not follow (see CapturingSession._refusal);
    `why` says which and why, naming a host at most."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


class BodyTooSlow(requests.Timeout):
    """An answer whose body did not arrive whole by the attempt's deadline: a failed attempt, like a timeout."""


class BodyTooLarge(Exception):
    """An answer whose body is over the cap (as its Content-Length declares, or as it arrived); left unread."""

    def __init__(self, response: requests.Response, cap: int):
        super().__init__(f"HTTP {response.status_code} with a body over the {mebibytes(cap)} cap")
        self.response = response
        self.cap = cap


class NotKept(int):
    """The status of a media download whose body was left unread (over the cap): never 200, so the connector takes
    its "kept the item without it" path, and it prints as what happened, which is how the connector's notice (which
    prints the status) names the cap: "media URL answered HTTP 200 with a body over the 512 MiB cap ..."."""

    answered: int
    why: str

    def __new__(cls, answered: int, why: str) -> NotKept:
        status = super().__new__(cls, 0)
        status.answered, status.why = answered, why
        return status

    def __str__(self) -> str:
        return f"{self.answered} {self.why}"


TRUNCATED_LENGTH = "length"  # WARC 1.1's WARC-Truncated reason for a body over the size kept


def not_kept(answered: int, cap: int) -> NotKept:
    return NotKept(answered, f"with a body over the {mebibytes(cap)} cap for a media file (left unread, not archived)")


def is_file_download(ok: tuple[int, ...]) -> bool:
    """Whether a request with these acceptable statuses is a media download (see FILE_GONE_ANSWERS)."""
    return set(ok) >= FILE_GONE_ANSWERS


def mebibytes(size: int) -> str:
    return f"{size / 2**20:g} MiB"


def _read1(raw: Any) -> bytes:
    """What has arrived of a body, up to READ_SIZE: at most one read of the socket, so a trickle returns at once
    (a plain read waits until READ_SIZE bytes are in). Errors as requests' own reading raises them."""
    try:
        return raw.read1(READ_SIZE, decode_content=True)
    except ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from None
    except DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from None
    except ReadTimeoutError as exc:
        raise requests.ConnectionError(exc) from None
    except Urllib3SSLError as exc:
        raise requests.exceptions.SSLError(exc) from None


SPOOLED = "archiver_spooled"  # the attribute of a requests.Response whose body _BodyReader spooled


def spooled_body(response: requests.Response) -> SpooledBody | None:
    """The body of a response _BodyReader wrote to a temporary file (its `content` is then empty), if it did."""
    return response.__dict__.get(SPOOLED)


class _BodyReader:
    """A response hook reading the body of each answer of one attempt (every redirect too: requests would read a
    redirect's body whole before following it) in pieces, against the attempt's deadline and a size cap, and giving
    up as soon as the run is told to stop. The body ends up where requests keeps a body it read itself, so what is
    recorded, and how, is as before; except, with `spool` (a media download), a body past BODY_HELD bytes, which
    is masked as it arrives and written to the SpooledBody and StreamRedactor `spool` gives (see spooled_body)."""

    def __init__(
        self,
        grace: float,
        cap: int,
        stop: threading.Event | None,
        spool: Callable[[], tuple[SpooledBody, StreamRedactor]] | None = None,
    ):
        self.started = time.monotonic()
        self.grace = grace
        self.cap = cap
        self.stop = stop
        self.spool = spool
        self.spools: list[SpooledBody] = []  # every body of the attempt spooled (its redirects' too)
        self.received = 0  # bytes of body of the attempt so far, every redirect's included

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            body = self._read(response)
        except BaseException:
            response.close()  # what is left of the body is still on the line: the connection is not reused
            raise
        if isinstance(body, SpooledBody):
            response.__dict__[SPOOLED] = body
            body = b""
        response._content = body
        response._content_consumed = True
        return response

    def _read(self, response: requests.Response) -> bytes | SpooledBody:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.cap:
            raise BodyTooLarge(response, self.cap)
        chunks: list[bytes] = []
        size = 0
        spooled: tuple[SpooledBody, StreamRedactor] | None = None
        try:
            while True:
                self._check()
                chunk = _read1(response.raw)
                if not chunk:
                    break
                size += len(chunk)
                self.received += len(chunk)
                if size > self.cap:  # checked before keeping it: no more than the cap is ever held
                    raise BodyTooLarge(response, self.cap)
                if spooled is not None:
                    spooled[0].write(spooled[1].feed(chunk))
                    continue
                chunks.append(chunk)
                if self.spool is not None and size > BODY_HELD:
                    spooled = self.spool()
                    self.spools.append(spooled[0])
                    for held in chunks:
                        spooled[0].write(spooled[1].feed(held))
                    chunks = []
            if spooled is None:
                return b"".join(chunks)
            spooled[0].write(spooled[1].finish())
            return spooled[0]
        except BaseException:
            if spooled is not None:
                spooled[0].close()
            raise

    def close_spools(self) -> None:
        """Let go of every spooled body of the attempt (recording one closes it; one never recorded, as a redirect's
        of an attempt that failed after it, would keep its file and its disk space until collected)."""
        for spooled in self.spools:
            spooled.close()

    def _check(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Interrupted(STOPPED)
        elapsed = time.monotonic() - self.started
        if elapsed > self.grace + self.received / SLOWEST_RATE:
            raise BodyTooSlow(f"body too slow ({self.received} bytes in {elapsed:.0f}s)")


class Session(Protocol):
    """What a connector calls: a live CapturingSession, or a replay of captured records (rebuild).

    `headers` are extra request headers a platform requires (recorded in the WARC). `post` sends a JSON
    body (a login exchange, for example); the body is recorded with every secret in it masked.
    `secret_fields` names top-level fields of the JSON answer that are credentials the platform issues (a
    session JWT): they are masked before the answer is recorded and handed back unmasked in
    `Exchange.issued`. `use_token` then switches the session to such a credential.
    """

    requests_made: int

    def get(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        *,
        auth: bool = True,
        ok: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
    ) -> Exchange: ...

    def post(
        self,
        url: str,
        body: dict[str, Any],
        *,
        auth: bool = True,
        ok: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
        secret_fields: tuple[str, ...] = (),
    ) -> Exchange: ...

    def secret(self) -> str | None:
        """The configured credential, for a connector that must send it inside a body (a login call)."""
        ...

    def use_token(self, token: str) -> None: ...

    def add_secret(self, value: str) -> None:
        """A value the connector sends that is as secret as the token (Graph's appsecret_proof): masked from now
        on wherever the session writes (URLs, headers, bodies, Link headers, errors). Only a live session is asked
        (a replay reads records already masked)."""
        ...

    def close(self) -> None: ...


class RateLimitPolicy(Protocol):
    """How a platform signals its limits. A policy may also define `is_throttled(status, headers, body) -> bool`
    for platforms that refuse a throttled call with something other than HTTP 429 (Meta's Graph API answers
    an error envelope with a throttling code); the session then waits `wait_after_429` and tries again. And
    `pace(now) -> float`, a pause of its own before each request to stay under a limit (not counted against
    max_wait, which bounds the waits the platform imposes). And `wait_pool(url) -> str`, the share of max_wait a
    wait for `url` counts against (without it, one for every request): a platform whose requests also go to servers
    of members of the public (a Bluesky commenter's own PDS) keeps their waits from using up the account's own."""

    def wait_before_request(self, now: float, url: str = "") -> float: ...
    def observe(self, response: requests.Response, now: float) -> None: ...
    def wait_after_429(self, response: requests.Response, now: float) -> float: ...


def retry_after_seconds(headers: Any, now: float) -> float | None:
    """The wait a `Retry-After` header asks for: delay-seconds or an HTTP date (RFC 9110, 10.2.3); None when
    absent or unreadable."""
    value = (headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now) if when.tzinfo is not None else None


def policy_says_throttled(policy: object, status: int, headers: Any, body: bytes) -> bool:
    """The policy's own throttle signal, if it has one (see RateLimitPolicy)."""
    check = getattr(policy, "is_throttled", None)
    return bool(check and check(status, headers, body))


class HeaderRateLimit:
    """Rate limits signalled by Limit/Remaining/Reset headers (Reset as ISO time or Unix seconds).

    With `endpoint` (a URL -> the name of the limit it counts against), each endpoint's budget is kept apart:
    a platform that limits each endpoint on its own (X) would otherwise make a call to a fresh endpoint wait
    for the reset of one that is spent."""

    def __init__(
        self,
        remaining: str = "X-RateLimit-Remaining",
        reset: str = "X-RateLimit-Reset",
        default_wait: float = 60.0,
        endpoint: Callable[[str], str] | None = None,
    ):
        self.remaining_header = remaining
        self.reset_header = reset
        self.default_wait = default_wait
        self.endpoint = endpoint
        self.budgets: dict[str, tuple[int, float | None]] = {}  # endpoint ("" for one shared limit) -> last seen

    def _key(self, url: str) -> str:
        return self.endpoint(url) if self.endpoint is not None else ""

    def _reset_time(self, response: requests.Response) -> float | None:
        value = response.headers.get(self.reset_header)
        if not value:
            return None
        try:
            number = float(value)
            return number if number > 1e9 else time.time() + number
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).timestamp()
        except ValueError:
            return None

    def observe(self, response: requests.Response, now: float) -> None:
        value = response.headers.get(self.remaining_header)
        if value is not None and value.strip().lstrip("-").isdigit():
            asked = response.request.url if response.request is not None else response.url
            self.budgets[self._key(str(asked or response.url))] = (int(value), self._reset_time(response))

    def wait_before_request(self, now: float, url: str = "") -> float:
        remaining, reset_at = self.budgets.get(self._key(url), (None, None))
        if remaining is not None and remaining <= 0 and reset_at:
            return max(0.0, reset_at - now)
        return 0.0

    def wait_after_429(self, response: requests.Response, now: float) -> float:
        asked = retry_after_seconds(response.headers, now)
        if asked is not None:
            return asked
        reset = self._reset_time(response)
        if reset is not None:
            return max(0.0, reset - now)
        return self.default_wait


def pause(seconds: float, stop: threading.Event | None = None) -> None:
    """Every wait of a live session: a rate limit, a back-off, pacing. With `stop`, the wait ends as soon as the
    run is told to stop (a plain sleep would hold a Ctrl-C up for as long as a platform asked: up to 15 min)."""
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise Interrupted(STOPPED)


def plain_session() -> requests.Session:
    """A requests session as the archiver sends every platform call: the environment read once, not on every
    request (requests re-reads it per call: ~10% of a run), and never for .netrc credentials: only the configured
    token is ever sent. Proxies come from the environment per origin (`requests.utils.get_environ_proxies`)."""
    session = requests.Session()
    session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    session.trust_env = False
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return session


class CapturingSession:
    """GET requests for one account, recorded to the WARC, with retries and rate limits."""

    def __init__(
        self,
        warc: WarcWriter,
        *,
        account: str,
        token: str | None,
        credential_ref: str = "",
        rate_limit: RateLimitPolicy | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        max_wait: float = 900.0,
        backoff: float = 0.5,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
        on_wait: Callable[[str], None] | None = None,
        token_param: str | None = None,
        redactor: Redactor | None = None,
        stop: threading.Event | None = None,
        max_api_bytes: int | None = None,
        max_media_bytes: int | None = None,
    ):
        self.warc = warc
        self.account = account
        self.token = token
        self.credential_ref = credential_ref
        self.rate_limit = rate_limit or HeaderRateLimit()
        self.timeout = timeout
        self.retries = retries
        self.max_wait = max_wait
        self.backoff = backoff
        self.stop = stop  # set when the run is told to stop: no request is sent after it, no wait goes on, no body read
        self.max_api_bytes = API_MAX_BYTES if max_api_bytes is None else max_api_bytes
        self.max_media_bytes = MEDIA_MAX_BYTES if max_media_bytes is None else max_media_bytes
        self.sleep = sleep or (lambda seconds: pause(seconds, self.stop))  # looked up late: tests patch pause
        self.clock = clock
        self.on_wait = on_wait
        self.token_param = token_param  # the platform wants the credential as this query parameter, not a header
        self.redactor = redactor if redactor is not None else Redactor([])
        if token:
            self.redactor.secrets.append(token)
        self.requests_made = 0
        self.waited: dict[str, float] = {}  # seconds waited, by the policy's wait_pool ("" for the only one)
        self._session = plain_session()
        self._proxies: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        self._session.close()

    def secret(self) -> str | None:
        return self.token

    def use_token(self, token: str) -> None:
        self.add_secret(token)
        self.token = token

    def add_secret(self, value: str) -> None:
        if value not in self.redactor.secrets:
            self.redactor.secrets.append(value)
        register_secret(value)

    def _proxies_for(self, url: str) -> dict[str, str]:
        """HTTP(S)_PROXY / NO_PROXY from the environment, looked up once per scheme and host."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxies:
            self._proxies[origin] = requests.utils.get_environ_proxies(origin)
        return self._proxies[origin]

    def _issued_secrets(self, response: requests.Response, names: tuple[str, ...]) -> dict[str, str]:
        """Credentials named in `names` from a JSON answer, made secrets before the answer is recorded."""
        if not names:
            return {}
        try:
            payload = response.json()
        except ValueError:
            return {}
        issued = {n: payload[n] for n in names if isinstance(payload, dict) and isinstance(payload.get(n), str)}
        for value in issued.values():
            self.add_secret(value)
        return issued

    # -- capture -------------------------------------------------------------------------------------------
    def _record(
        self, response: requests.Response, truncated: str | None = None, file_download: bool = False
    ) -> Exchange:
        """Write the exchange to the WARC; `truncated` (WARC-Truncated): its body was left out. A spooled body is
        written from its file, which then goes; a media file's (`file_download`) is given by its digest when it is
        larger than BODY_HELD (given_body)."""
        prepared = response.request
        url = self.redactor.text(redact_url(prepared.url or ""))
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        req_headers = [("Host", host_of(url))]  # as sent: never a user name and password
        for name, value in prepared.headers.items():
            if name.lower() in SECRET_HEADERS:
                value = (value.split(" ", 1)[0] + " " + REDACTED) if " " in value else REDACTED
            req_headers.append((name, self.redactor.text(value)))
        body = self.redactor.bytes(prepared.body or b"") if isinstance(prepared.body, bytes) else b""
        request = HttpMessage(f"{prepared.method} {target or '/'} HTTP/1.1", req_headers, body)
        version = {10: "HTTP/1.0", 11: "HTTP/1.1", 20: "HTTP/2"}.get(getattr(response.raw, "version", 11), "HTTP/1.1")
        resp_headers = []
        for name, value in response.raw.headers.items():
            if name.lower() == "transfer-encoding":
                # The body is stored de-chunked; keep the fact without the framing.
                name = "X-Archiver-Orig-Transfer-Encoding"
            elif name.lower() == "set-cookie":
                value = REDACTED
            resp_headers.append((name, self.redactor.text(value)))
        spooled = spooled_body(response)
        kept: bytes | SpooledBody = b""
        if not truncated:
            kept = spooled if spooled is not None else self.redactor.bytes(response.content)
        reply = HttpMessage(f"{version} {response.status_code} {response.reason or ''}".rstrip(), resp_headers, kept)
        try:
            req_ref, resp_ref = self.warc.write_exchange(url, request, reply, self.account, truncated)
            body, digest = given_body(kept, file_download)
        finally:
            if spooled is not None:
                spooled.close()
        links = {rel: self.redactor.text(link["url"]) for rel, link in response.links.items()}
        return Exchange(url, response.status_code, response.headers, body, resp_ref, req_ref, links, digest=digest)

    def _spool(self) -> tuple[SpooledBody, StreamRedactor]:
        """Where a media body past BODY_HELD goes as it arrives: a temporary file beside the WARCs (the same file
        system: a disk that cannot hold the file cannot hold its record either), masked with the secrets known."""
        return SpooledBody(self.warc.directory), self.redactor.stream()

    def _not_kept(self, too_large: BodyTooLarge) -> Exchange:
        """A media file over the cap, given back as an answer its connector goes on without (it notes the file and
        the status, which names the cap). Its request and its answer's headers are written, the body left out
        (WARC-Truncated: length): the record says the file was there and not kept, and a replay answers the
        connector the same way (rebuild.py). The next run asks for the file again."""
        response = too_large.response
        self.rate_limit.observe(response, self.clock())
        recorded = self._record(response, truncated=TRUNCATED_LENGTH)
        status = not_kept(response.status_code, too_large.cap)
        label = media_label(recorded.url, recorded.ref.record_id)
        log.warning("account %s: media %s answered HTTP %s", self.account, label, status)
        return Exchange(recorded.url, status, response.headers, b"", recorded.ref, recorded.request_ref)

    def _throttle_wait(self, response: requests.Response, throttles: int) -> float:
        """What the platform asks after a throttle answer, but never less than MIN_THROTTLE_WAIT doubled for
        each throttle of this request before: an answer asking for no wait (a reset time already past by our
        clock, `Retry-After: 0`) would otherwise be asked again at once, endlessly, since a throttle is not a
        failed attempt. Every wait counts against max_wait, which ends such a loop."""
        asked = self.rate_limit.wait_after_429(response, self.clock())
        return max(asked, min(MAX_THROTTLE_FLOOR, MIN_THROTTLE_WAIT * 2**throttles))

    def _wait(self, seconds: float, why: str, shown: str, url: str) -> None:
        pool = getattr(self.rate_limit, "wait_pool", None)
        share = pool(url) if pool is not None else ""
        waited = self.waited.get(share, 0.0)
        if waited + seconds > self.max_wait:
            raise RateLimitedError(
                f"account {self.account}: {why} at {shown}; waiting {seconds:.0f}s more would pass the "
                f"max_rate_limit_wait of {self.max_wait:.0f}s; the next run resumes"
            )
        if seconds > 0:
            message = f"account {self.account}: {why}, waiting {seconds:.0f}s"
            log.info(message)
            if self.on_wait:
                self.on_wait(message)
            self.sleep(seconds)
            self.waited[share] = waited + seconds

    def get(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        *,
        auth: bool = True,
        ok: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
    ) -> Exchange:
        """GET a URL; returns the captured exchange when its status is in `ok`, raises a PlatformError otherwise."""
        return self._send("GET", with_params(url, params), None, auth, ok, headers)

    def post(
        self,
        url: str,
        body: dict[str, Any],
        *,
        auth: bool = True,
        ok: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
        secret_fields: tuple[str, ...] = (),
    ) -> Exchange:
        """POST a JSON body; captured and checked like a GET (see Session.post for `secret_fields`)."""
        return self._send("POST", url, json.dumps(body).encode("utf-8"), auth, ok, headers, secret_fields)

    def _send(
        self,
        method: str,
        url: str,
        data: bytes | None,
        auth: bool,
        ok: tuple[int, ...],
        extra_headers: dict[str, str] | None,
        secret_fields: tuple[str, ...] = (),
    ) -> Exchange:
        headers = dict(extra_headers or {})
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth and self.token:
            if self.token_param:
                url = with_params(url, {self.token_param: self.token})
            else:
                headers["Authorization"] = f"Bearer {self.token}"
        file_download = is_file_download(ok)
        # A media file is named by its host (and its answer's record), never by its URL: see media_label.
        shown = f"media {media_label(url)}" if file_download else self.redactor.text(redact_url(url))
        fail = self._download_failure(method, shown) if file_download else self._api_failure(method, shown)
        refusal = self._refusal(url, bool(headers.get("Authorization")) or self._holds_secret(url, data))
        if refusal:  # named by scheme and host alone: the path may be a file's name
            raise Refused(f"account {self.account}: {method} request not sent: {refusal}", f"not sent: {refusal}")
        cap = self.max_media_bytes if file_download else self.max_api_bytes
        spool = self._spool if file_download else None
        attempt = throttles = 0
        last_problem = ""
        pace = getattr(self.rate_limit, "pace", None)
        while True:
            if self.stop is not None and self.stop.is_set():
                raise Interrupted(STOPPED)
            self._wait(self.rate_limit.wait_before_request(self.clock(), url), "rate limit reached", shown, url)
            if pace is not None and (gap := pace(self.clock())) > 0:
                log.debug("account %s: pacing %.1fs before %s", self.account, gap, shown)
                self.sleep(gap)
            reader = _BodyReader(EXCHANGE_TIMEOUTS * self.timeout, cap, self.stop, spool)
            try:
                self.requests_made += 1
                response = self._session.request(
                    method,
                    url,
                    data=data,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=True,
                    proxies=self._proxies_for(url),
                    stream=True,  # the body is read by _BodyReader, never whole by requests
                    hooks={"response": [reader, self._redirect_guard(method, data)]},
                )
            except BodyTooLarge as exc:  # not retried: it would be as large again
                if file_download:
                    return self._not_kept(exc)
                raise PlatformError(
                    f"{method} {shown}: HTTP {exc.response.status_code} with a body over the {mebibytes(cap)} cap "
                    "for an API answer; left unread"
                ) from None
            except RETRIED as exc:
                last_problem = str(exc) if isinstance(exc, BodyTooSlow) else type(exc).__name__
                if attempt >= self.retries:
                    raise fail(f"{last_problem} after {attempt + 1} attempts") from None
            except requests.RequestException as exc:
                # Not retried (a malformed URL or redirect, too many redirects): named by its type alone, since
                # requests' messages quote the URL.
                raise fail(type(exc).__name__) from None
            else:
                for hop in response.history:  # every redirect is an exchange too (media often sit behind one)
                    self._record(hop, file_download=file_download)
                issued = self._issued_secrets(response, secret_fields)
                exchange = self._record(response, file_download=file_download)
                exchange.issued = issued
                self.rate_limit.observe(response, self.clock())
                if policy_says_throttled(self.rate_limit, response.status_code, response.headers, response.content):
                    why = f"throttled (HTTP {response.status_code}, platform throttling error)"
                    self._wait(self._throttle_wait(response, throttles), why, shown, url)
                    throttles += 1
                    continue  # like a 429: not a failed attempt, and bounded by max_wait
                if response.status_code in ok:
                    return exchange
                if response.status_code == 429:
                    self._wait(self._throttle_wait(response, throttles), "throttled (HTTP 429)", shown, url)
                    throttles += 1
                    continue  # a throttle is not a failed attempt; the wait is bounded by max_wait
                if response.status_code in (401, 403):
                    if not self._sent_credential(response, exchange):  # no token to renew: say what was refused
                        moved = origin_of(response.url) if origin_of(response.url) != origin_of(url) else ""
                        raise fail(refused_without_credentials(response.status_code, exchange.ref.record_id, moved))
                    raise AuthError(
                        f"account {self.account}: the platform refused the token from {self.credential_ref} "
                        f"(HTTP {response.status_code} at {shown}); renew the token"
                    )
                if response.status_code < 500 or attempt >= self.retries:
                    raise fail(
                        f"HTTP {response.status_code} after {attempt + 1} attempt(s) "
                        f"(WARC record {exchange.ref.record_id})"
                    )
                last_problem = f"HTTP {response.status_code}"
            finally:
                reader.close_spools()  # a redirect's body of an attempt that failed after it was never recorded
            attempt += 1
            delay = self.backoff * (2 ** (attempt - 1)) * (1 + random.random() / 2)
            log.info("account %s: %s at %s, retry %d in %.1fs", self.account, last_problem, shown, attempt, delay)
            self.sleep(delay)

    def _sent_credential(self, response: requests.Response, exchange: Exchange) -> bool:
        """Whether the request that got `response`, the last of its redirects, carried a credential, judged by
        sent_credential on what was recorded of it (`exchange.url` masked, its body masked here as _record masks it),
        as a replay judges it. requests drops the Authorization header on a redirect to another host or scheme
        (should_strip_auth), and a Location holds the token only where the platform put it."""
        sent = response.request
        body = self.redactor.bytes(sent.body) if isinstance(sent.body, bytes) else b""
        return sent_credential(exchange.url, sent.headers.keys(), body)

    @staticmethod
    def _api_failure(method: str, shown: str) -> Callable[[str], PlatformError]:
        return lambda why: RequestFailed(f"{method} {shown}: {why}", why)

    @staticmethod
    def _download_failure(method: str, shown: str) -> Callable[[str], PlatformError]:
        return lambda why: DownloadFailed(f"{method} {shown}: {why}", why)

    # -- where credentials may go -------------------------------------------------------------------------------
    def _holds_secret(self, url: str, body: bytes | None = None) -> bool:
        """Whether the URL (the token as a query parameter, a platform echoing it) or the body (a login call's
        password) carries a secret the session knows."""
        return self.redactor.text(url) != url or (body is not None and self.redactor.bytes(body) != body)

    @staticmethod
    def _refusal(url: str, credential: bool) -> str | None:
        """Why a request to `url` (carrying the account's credential, or not) must not be sent; None when it may.

        A user name and password before the host are never sent, whoever put them there (requests would put them
        in a Basic Authorization header in place of the token): a platform's link or redirect does not make the
        archiver authenticate somewhere. A credential never travels in clear beyond loopback, whichever URL it is
        sent to (the config refuses an http:// api_base, but a URL also comes from a DID document, a link, a
        redirect). Only the scheme and the host are named: the path may be a media file's name."""
        if names_credentials(url):
            return (
                f"its URL names a user name and password before the host "
                f"({origin_of(url).replace('://', f'://{REDACTED}@', 1)}): the archiver sends only the account's "
                "configured credential, never one taken from a URL"
            )
        if credential and sends_in_clear(url):
            return (
                f"the account's credential would travel in clear to {origin_of(url)} (not https://, not loopback); "
                "use the platform's https:// address (the account's api_base or URL options, or the PDS its DID "
                "document names)"
            )
        return None

    def _redirect_guard(self, method: str, data: bytes | None) -> Callable[..., requests.Response]:
        """A response hook stopping a redirect requests would follow with a credential in clear (the token in the
        query of an http:// Location, a login's body re-sent on a 307/308) or to a URL that names a user and a
        password. requests itself drops the Authorization header on a redirect to another host or scheme."""

        def guard(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
            if not response.is_redirect:
                return response
            target = urljoin(response.url, self._session.get_redirect_target(response) or "")
            asked = response.request
            credential = (
                bool(asked.headers.get("Authorization"))
                and not self._session.should_strip_auth(asked.url or "", target)
            ) or self._holds_secret(target, data if response.status_code in (307, 308) else None)
            refusal = self._refusal(target, credential)
            if refusal:
                response.close()
                why = f"HTTP {response.status_code} redirect to {origin_of(target)} not followed: {refusal}"
                raise Refused(f"account {self.account}: {method} to {origin_of(response.url)}: {why}", why)
            return response

        return guard


# -- a credential check (`archiver doctor`): one request, not archived, sent by the runs' rules -------------------
def check_request(
    account: str,
    method: str,
    url: str,
    *,
    timeout: float,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    json_body: dict[str, Any] | None = None,
) -> requests.Response:
    """One authenticated request of a credential check, not archived, sent as a run sends its requests (no .netrc,
    the environment's proxies and CA bundle, a body bounded in time and size, never a credential in clear beyond
    loopback nor to a URL naming a user and a password: CapturingSession._refusal), and no redirect followed. A
    check asks the platform itself: a Location could carry the credential (the `key=` of a query it repeats, a
    login body re-sent on a 307/308) to another host or over http://, and whatever answers there proves nothing of
    the token. A 3xx, no answer or a refusal raises PlatformError naming the account, the method, the host and
    what happened (never a Location nor a query); any other status is the caller's to judge."""
    target = with_params(url, params)
    where = f"account {account}: {method} to {origin_of(target)}"
    refusal = CapturingSession._refusal(target, credential=True)
    if refusal:
        raise PlatformError(f"{where} not sent: {refusal}")
    reader = _BodyReader(EXCHANGE_TIMEOUTS * timeout, API_MAX_BYTES, None)
    session = plain_session()
    try:
        response = session.request(
            method,
            target,
            json=json_body,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
            proxies=requests.utils.get_environ_proxies(target),
            stream=True,  # the body is read by _BodyReader, as a run's are
            hooks={"response": [reader]},
        )
    except BodyTooLarge as exc:
        raise PlatformError(
            f"{where} answered HTTP {exc.response.status_code} with a body over the {mebibytes(exc.cap)} cap for an "
            "API answer (left unread): not the platform's answer; check the account's api_base"
        ) from None
    except requests.RequestException as exc:  # named by its type alone: requests' messages quote the URL
        raise PlatformError(
            f"account {account}: cannot reach {origin_of(target)} ({method}: {type(exc).__name__}); check this "
            "machine's way there (DNS, firewall, HTTPS_PROXY) and the account's api_base"
        ) from None
    finally:
        session.close()
    if 300 <= response.status_code < 400:
        raise PlatformError(
            f"{where} answered HTTP {response.status_code}, a redirect, not followed: a credential check asks the "
            "platform itself; check the account's api_base (its https:// address as the platform gives it), or the "
            "proxy in between"
        )
    return response


def check_json(account: str, response: requests.Response) -> Any:
    """The JSON of a credential check's answer; PlatformError naming the host when it is not JSON: a captive
    portal's sign-in page, or a proxy's or a load balancer's own page, answered in the platform's place."""
    try:
        return json.loads(response.content)
    except ValueError:  # a UnicodeDecodeError too
        method = response.request.method if response.request is not None else "GET"
        raise PlatformError(
            f"account {account}: {method} to {origin_of(response.url)} answered HTTP {response.status_code} with "
            "something other than JSON (a captive portal's sign-in page, a proxy's own page?): not the platform's "
            "answer; check this machine's way there (HTTPS_PROXY, the network's sign-in) and the account's api_base"
        ) from None
