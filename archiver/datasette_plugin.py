"""Datasette plugin of the archive: the compliance workspace around Datasette's own pages.

- a gate in front of every request: only GET and HEAD pass (and the login and logout forms, only from this
  server's own pages); the signed-in person is re-checked against the users file on every request (removed
  people and changed roles take effect at once), login is demanded whenever the server is reachable beyond
  loopback or anyone has an account, a request answered without sign-in must be addressed to a loopback
  name (DNS rebinding), a path is served only as Datasette writes it (an alias in another tilde encoding is
  redirected), and every request — refused ones too — is appended to the access log with that person, the
  status and the rows its queries returned, before any of its response leaves (a record's body, streamed, leaves
  a part at a time once logged: see Streaming); every response but static files carries headers against framing,
  type sniffing and caching;
- sessions: each opened for the person's record as it was at sign-in, so a password reset ends them;
- SQL: functions that are a hazard in SQL others write (fts3_tokenizer) are refused on every connection;
- pages: one search over every item (/-/search), an item's thread and history (/-/item), and the raw
  captured record from the WARC (/-/raw, its exact body at /-/raw/body);
- sign-in: datasette-auth-passwords' login page, form and hash format, its accounts read from the users file
  (never from the metadata) and each password checked on a thread of its own, never on the event loop;
- errors answered without dumping locals: Datasette's own handler prints every local variable (search
  terms: PHI) to the server's log; ours answers the same JSON / HTML error and logs one line.

Nothing here writes to the archive: the pages only read, through the read-only database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from datasette import Response, hookimpl
from datasette.utils import baseconv, tilde_decode, tilde_encode
from datasette.utils.asgi import Base400
from datasette.views.base import DatasetteError
from datasette_auth_passwords.utils import verify_password
from itsdangerous import BadSignature
from markupsafe import Markup

from .access_log import Access, AccessLog, RequestRows, count_rows, current_rows
from .errors import storage_condition
from .login_throttle import LoginThrottle
from .sessions import OpenSessions
from .users import User, UsersFile
from .workspace import item as item_page
from .workspace import raw as raw_page
from .workspace import search as search_page

log = logging.getLogger("archiver.serve")

ARCHIVE_DB = "archive"
ACCESS_LOG_DB = "access_log"
# Pages anyone may reach before signing in: the login form, robots.txt and static files.
PUBLIC_PATHS = ("/-/login", "/robots.txt", "/favicon.ico")
PUBLIC_PREFIXES = ("/-/static/", "/-/static-plugins/")
STATIC_PATHS = ("/favicon.ico",)  # with PUBLIC_PREFIXES: files of the software, no PHI, cacheable
# On every other response: no other site frames a page (clickjacking of a signed-in officer), no browser reads
# a body as another type than it is sent as (a platform's text as HTML), no page (PHI) kept in a browser's or a
# proxy's cache, with or without accounts, and no address sent on to another site: a search's words, an author's
# name in a query are PHI, and "on the platform" is not the only link out (a table cell's URL). same-origin, not
# no-referrer: under no-referrer a browser sends `Origin: null` with the sign-in form, which from_another_site
# must refuse.
SECURITY_HEADERS = {
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"cache-control": b"no-store",
    b"referrer-policy": b"same-origin",
}
FRAME_ANCESTORS = b"frame-ancestors 'none'"
# Routes the workspace does not offer: the metadata page would list the login config, the password tool
# and the root token login are not for a PHI archive, the databases page names the archive's file on the server
# and the threads page the server's internals.
BLOCKED_PATHS = (
    "/-/metadata",
    "/-/metadata.json",
    "/-/password-tool",
    "/-/auth-token",
    "/-/databases",
    "/-/databases.json",
    "/-/threads",
    "/-/threads.json",
)
# The workspace only reads: any other method is refused before Datasette sees it, but for signing in and out.
READ_METHODS = ("GET", "HEAD")
FORM_PATHS = ("/-/login", "/-/logout")
LOGIN_PATH = "/-/login"
LOGOUT_PATH = "/-/logout"
MAX_FORM_BYTES = 64 * 1024  # a sign-in form is a few hundred bytes
INVALID_SIGN_IN = "Invalid username or password"  # datasette-auth-passwords' words, for any failed sign-in
SESSION_SECONDS = 8 * 3600  # a working day; then sign in again
_FORMAT = re.compile(r"\.\w+$")  # `.json`, `.csv` after a database, table or row in Datasette's routes
# A part of a streamed record body: read on a thread (a few ms), then sent; a request holds about two of them.
SEND_BYTES = 1 << 20


class Streaming:
    """Between the gate and a response that streams its body (a record's body: a video is not held whole). The
    response says so (`on`) before it starts, its rows counted: the gate then logs the request at the first part
    and lets the parts through as they come, instead of holding them all until the last. The gate says when it
    answered 503 in the response's place (the access log could not be written): the response then stops."""

    def __init__(self) -> None:
        self.on = False
        self.stopped = False


# The request being served, as current_rows: the gate sets it, a streamed response reads it.
current_streaming: ContextVar[Streaming | None] = ContextVar("current_streaming", default=None)


@dataclass
class Workspace:
    """What the plugin needs to know about this server; set on the Datasette instance by serve.py."""

    warc_dir: Path
    users: UsersFile
    access_log: AccessLog | None
    require_login: bool
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    sessions: OpenSessions = field(default_factory=lambda: OpenSessions(SESSION_SECONDS))

    def login_required(self, client: str) -> bool:
        return self.require_login or bool(self.users.users()) or not _is_loopback(client)


def workspace_of(datasette: Any) -> Workspace | None:
    return getattr(datasette, "archiver_workspace", None)


def _is_loopback(host: str) -> bool:
    from .serve import is_loopback

    return is_loopback(host)


# -- errors ----------------------------------------------------------------------------------------------
@hookimpl
def handle_exception(datasette: Any, request: Any, exception: Exception) -> Any:
    async def inner() -> Response:
        title = None
        info: dict[str, Any] = {}
        if isinstance(exception, Base400):
            status, message = exception.status, exception.args[0]
        elif isinstance(exception, DatasetteError):
            status, info, message, title = (
                exception.status,
                dict(exception.error_dict),
                exception.message,
                exception.title,
            )
            if exception.message_is_html:
                message = Markup(message)
        else:
            status, message = 500, "Internal error"
            log.error("error serving %s: %s", request.path, type(exception).__name__)
        info.update({"ok": False, "error": message, "status": status, "title": title})
        if request.path.endswith(".json"):
            return Response.json(info, status=status)
        template = datasette.jinja_env.select_template([f"{status}.html", "error.html"])
        context = dict(info, urls=datasette.urls, app_css_hash=datasette.app_css_hash(), menu_links=lambda: [])
        return Response.html(await template.render_async(context), status=status)

    return inner


# Functions refused to all SQL on the server's connections. fts3_tokenizer() gives a tokenizer's address in
# memory (one argument) and installs one from an address (two): SQLite documents it as a hazard where others
# write the SQL, as investigators do. (The workspace's search uses FTS5.)
REFUSED_FUNCTIONS = frozenset({"fts3_tokenizer"})


def authorize_sql(action: int, arg1: str | None, arg2: str | None, database: str | None, source: str | None) -> int:
    """SQLite's authorizer: a statement calling a refused function is not prepared ("not authorized"). An
    authorizer rather than functions defined over SQLite's: Datasette prints the traceback of any exception
    raised in a Python SQL function to the server's log."""
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in REFUSED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


@hookimpl
def prepare_connection(conn: Any) -> None:
    search_page.register_functions(conn)  # utc_time, for the posted bounds
    conn.set_authorizer(authorize_sql)


# -- sign-in ----------------------------------------------------------------------------------------------
# Password checks (PBKDF2, ~0.3 s of CPU each; hashlib lets go of the GIL meanwhile) get threads of their own:
# a burst of sign-ins queues here, not on the event loop nor in the default pool that every request's
# access-log append waits for.
_password_checks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="archiver-sign-in")


def check_unknown_name(password: str, users: dict[str, Any]) -> None:
    """Spend on a name without an account the time the login page spends checking a real one's password (a
    PBKDF2 of the same cost), so that the answer's delay does not tell which names have accounts."""
    iterations = "480000"  # datasette-auth-passwords' own, for when there are no users to copy it from
    for user in users.values():
        iterations = user.password_hash.split("$")[1]
        break
    verify_password(password, f"pbkdf2_sha256${iterations}$not-an-account$")


def check_sign_in(users: dict[str, User], username: str, password: str) -> User | None:
    """The person a sign-in form names, when the password is theirs; else None. One PBKDF2 of the accounts'
    cost either way (check_unknown_name for a name without an account). Blocking: run it off the loop."""
    user = users.get(username)
    if user is None:
        if users:
            check_unknown_name(password, users)
        return None
    return user if verify_password(password, user.password_hash) else None


async def login_view(request: Any, datasette: Any) -> Response:
    """The login page of datasette-auth-passwords (its template, error and actor cookie), with the password
    checked on a thread: the plugin's own view hashes on the event loop, and every other request would wait.
    The gate has throttled the form by then, and Datasette checked its CSRF token."""
    workspace = workspace_of(datasette)
    users = workspace.users.users() if workspace else {}
    error = None if users else "This instance does not have any configured accounts"
    if request.method == "POST":
        form = await request.post_vars()
        username, password = form.get("username") or "", form.get("password") or ""
        loop = asyncio.get_running_loop()
        user = await loop.run_in_executor(_password_checks, check_sign_in, users, username, password)
        if user is not None:
            response = Response.redirect(datasette.urls.path("/"))
            # The gate opens the session for the record checked here ("f"), and re-signs the cookie without it.
            signed = datasette.sign({"a": user.actor(), "f": user.fingerprint()}, "actor")
            response.set_cookie("ds_actor", signed)
            return response
        error = INVALID_SIGN_IN
    return Response.html(await datasette.render_template("password_login.html", {"error": error}, request=request))


@hookimpl
def menu_links(datasette: Any, actor: dict[str, Any] | None) -> list[dict[str, str]]:
    if workspace_of(datasette) is None:
        return []
    links = [{"href": datasette.urls.path("/-/search"), "label": "Search the archive"}]
    if actor and actor.get("role") == "investigator":
        links.append({"href": datasette.urls.path(f"/{ACCESS_LOG_DB}/access_log"), "label": "Access log"})
    return links


# -- the gate and the access log ----------------------------------------------------------------------------
def _cookies(scope: dict[str, Any]) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            with contextlib.suppress(CookieError):  # a malformed cookie header: no actor
                jar.load(value.decode("latin-1"))
    return jar


def session_of(datasette: Any, workspace: Workspace, scope: dict[str, Any]) -> tuple[User, str] | None:
    """The session this request's cookie carries, as (person, session id), while it is open and the person's
    record in the users file is the one it was opened for; else None."""
    morsel = _cookies(scope).get("ds_actor")
    if morsel is None or not morsel.value:
        return None
    try:
        signed = datasette.unsign(morsel.value, "actor")
        name = signed["a"]["id"]
        expires = int(baseconv.base62.decode(signed["e"]))
        session = signed["s"]
    except (BadSignature, KeyError, TypeError, ValueError):
        return None  # forged, or not made by our sign-in (which always sets an expiry and a session)
    user = workspace.users.users().get(name) if isinstance(name, str) else None
    if not workspace.sessions.is_open(session, name, user.fingerprint() if user else None):
        return None  # signed out, opened before this server started, or the person's record changed or went
    if user is None or time.time() > expires:
        return None
    return user, session


def resolve_actor(datasette: Any, workspace: Workspace, scope: dict[str, Any]) -> dict[str, str] | None:
    """The person signed in on this request, as the users file says now (None: nobody)."""
    return _actor(session_of(datasette, workspace, scope))


def _actor(session: tuple[User, str] | None) -> dict[str, str] | None:
    return session[0].actor() if session else None


def _with_actor(datasette: Any, scope: dict[str, Any], actor: dict[str, str] | None) -> dict[str, Any]:
    """The request as Datasette sees it: the actor cookie re-signed from the users file (or dropped), and no
    Authorization header (sign-in is by the login form only)."""
    jar = _cookies(scope)
    jar.pop("ds_actor", None)
    pairs = [f"{k}={m.coded_value}" for k, m in jar.items()]
    if actor is not None:
        pairs.append(f"ds_actor={datasette.sign({'a': actor}, 'actor')}")
    headers = [(k, v) for k, v in scope.get("headers", []) if k not in (b"cookie", b"authorization")]
    if pairs:
        headers.append((b"cookie", "; ".join(pairs).encode("latin-1")))
    return dict(scope, headers=headers)


def _signed_in_by(
    datasette: Any, workspace: Workspace, headers: list[tuple[bytes, bytes]]
) -> tuple[dict[str, str] | None, list]:
    """The actor a response signs in (the login form's answer sets the actor cookie), and the headers with
    that cookie given an expiry and a newly opened session: a session lasts SESSION_SECONDS from sign-in,
    until its person signs out, or until their record in the users file changes (login_view names the record
    whose password it checked by its fingerprint, which the cookie sent on does not carry)."""
    who, out = None, []
    for name, value in headers:
        if name.lower() == b"set-cookie" and value.startswith(b"ds_actor="):
            token, _, rest = value[len(b"ds_actor=") :].partition(b";")
            try:
                made = datasette.unsign(token.decode("latin-1").strip('"'), "actor")
                actor, fingerprint = made["a"], made["f"]
                session = workspace.sessions.open(actor["id"], fingerprint)
            except (BadSignature, KeyError, TypeError):
                out.append((name, value))  # not our sign-in's cookie: without an expiry and a session, never honoured
                continue
            who = actor
            expires = baseconv.base62.encode(int(time.time()) + SESSION_SECONDS)
            signed = datasette.sign({"a": actor, "e": expires, "s": session}, "actor")
            value = f"ds_actor={signed}; Max-Age={SESSION_SECONDS}".encode("latin-1") + (b";" + rest if rest else b"")
            if b"httponly" not in rest.lower():  # no script of a page (an injected one) reads the session
                value += b"; HttpOnly"
            if b"samesite" not in rest.lower():
                value += b"; SameSite=Lax"
        out.append((name, value))
    return who, out


def _secured(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The response's headers with SECURITY_HEADERS in place of its own, and `frame-ancestors 'none'` added to
    its Content-Security-Policy (the raw body's sandbox policy is kept), or as the policy when it has none."""
    csp = b"content-security-policy"
    policies = [v for k, v in headers if k.lower() == csp]
    kept = [(k, v) for k, v in headers if k.lower() not in SECURITY_HEADERS and k.lower() != csp]
    policies = [p if b"frame-ancestors" in p else p.rstrip(b"; ") + b"; " + FRAME_ANCESTORS for p in policies]
    return [*kept, *((csp, p) for p in policies or [FRAME_ANCESTORS]), *SECURITY_HEADERS.items()]


async def _refuse(
    send: Any,
    scope: dict[str, Any],
    status: int,
    message: str,
    location: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    if location:
        response = Response.redirect(location)
    elif scope["path"].endswith(".json"):
        response = Response.json({"ok": False, "error": message, "status": status}, status=status, headers=headers)
    else:
        response = Response.text(message, status=status, headers=headers)
    await response.asgi_send(send)


async def _read_form(receive: Any) -> tuple[bytes | None, Any]:
    """The request body (None when larger than a sign-in form), and a `receive` that replays it to the app."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None, receive  # the client went away
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = message.get("more_body", False)
        if size > MAX_FORM_BYTES:
            return None, receive
    body, replayed = b"".join(chunks), False

    async def replay() -> dict[str, Any]:
        nonlocal replayed
        if replayed:
            return await receive()  # after the body: the disconnect, when it comes
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


def parse_login_form(body: bytes) -> dict[str, str] | None:
    """A sign-in form's fields, read as the login page reads them; None for a form that the page would read
    otherwise than the throttle counts it (a field given twice: the page takes the last) or cannot read."""
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return None
    names = [k for k, _ in fields]
    if names.count("username") > 1 or names.count("password") > 1:
        return None
    return dict(fields)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _host_and_port(netloc: str) -> tuple[str, int | None] | None:
    """`host[:port]` as in a Host header, the host lowercased and IPv6 unbracketed; None when malformed."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        host, bracket, rest = netloc[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        host, _, port = netloc.partition(":")
    if not host or (port and not port.isdigit()):
        return None
    return host, int(port) if port else None


def canonical_path(raw_path: str) -> str:
    """The path as Datasette itself writes it. Datasette tilde-decodes the database, table (or canned query)
    and row segments of a path, so `/archive/~64irect~5Fmessages` serves `direct_messages`; each is given
    here as tilde_encode(tilde_decode(segment)), before its `.format`, the row's key part by part. The
    server's own pages (/-/...) are routed as written. A segment with `%` is left alone: Datasette never
    decodes one (it redirects `%XX` to `~XX` itself)."""
    if raw_path.startswith("/-/"):
        return raw_path
    segments = raw_path.split("/")
    for index in range(1, min(len(segments), 4)):  # database, table or query, row key
        segment = segments[index]
        if "%" in segment:
            continue
        found = _FORMAT.search(segment)
        name, suffix = (segment[: found.start()], found.group()) if found else (segment, "")
        parts = name.split(",") if index == 3 else [name]  # a compound key's parts are joined by commas
        segments[index] = ",".join(tilde_encode(tilde_decode(part)) for part in parts) + suffix
    return "/".join(segments)


def _raw_path(scope: dict[str, Any]) -> str | None:
    """The path as sent, which Datasette routes on (None: not ASCII, which Datasette cannot route)."""
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    try:
        return raw.partition(b"?")[0].decode("ascii")
    except UnicodeDecodeError:
        return None


def addressed_to_loopback(scope: dict[str, Any]) -> bool:
    """Whether the request names a loopback address or `localhost` in its Host header. A web page whose name
    was rebound to 127.0.0.1 reaches a loopback server with its own name there (DNS rebinding)."""
    found = _host_and_port(_header(scope, b"host") or "")
    return found is not None and _is_loopback(found[0])


def from_another_site(scope: dict[str, Any]) -> bool:
    """Whether a browser sent this form from a page of another origin (its Origin, or without one its Referer,
    names another host or port than the Host it is sent to). No such header: not a browser's cross-site post."""
    source = _header(scope, b"origin") or _header(scope, b"referer")
    if source is None:
        return False
    url = urlsplit(source)
    ours = _host_and_port(_header(scope, b"host") or "")
    if url.scheme not in ("http", "https") or not url.hostname or ours is None:
        return True  # `Origin: null` (a sandboxed or file page), or no Host to compare
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        return True
    # A proxy passing `Host: name` without the port is taken to serve the scheme's default port.
    return (url.hostname, port) != (ours[0], ours[1] or port)


def access_log_failure(log_file: Path, exc: BaseException) -> str:
    """Why the access log could not be written, naming its file, and the fix when its disk is at fault."""
    condition = storage_condition(exc, log_file)
    why = f"{condition[0]} ({exc}): {condition[1]}" if condition else f"{type(exc).__name__}: {exc}"
    return f"access log not written to {log_file}: {why}"


@hookimpl
def asgi_wrapper(datasette: Any) -> Any:
    def wrap(app: Any) -> Any:
        async def gate(scope: dict[str, Any], receive: Any, send: Any) -> None:
            workspace = workspace_of(datasette)
            if workspace is None or scope["type"] != "http":
                await app(scope, receive, send)
                return
            path = scope["path"]
            raw_path = _raw_path(scope)
            client = (scope.get("client") or ("unknown", 0))[0]
            session = session_of(datasette, workspace, scope)
            actor = _actor(session)
            scope = _with_actor(datasette, scope, actor)
            seen: dict[str, Any] = {"status": 500, "signed_in": None, "logged": False}
            counter = RequestRows()

            async def record() -> None:
                if workspace.access_log is None or seen["logged"]:
                    return
                seen["logged"] = True
                # A sign-in is logged as the person it signs in, even over someone else's session.
                who = seen["signed_in"] or actor
                entry = Access(
                    actor=who["id"] if who else None,
                    role=who.get("role") if who else None,
                    client=client,
                    method=scope["method"],
                    path=path,
                    query=scope.get("query_string", b"").decode("latin-1"),
                    status=seen["status"],
                    rows=counter.rows,
                )
                await asyncio.to_thread(workspace.access_log.append, entry)

            # The response is held back until the request is logged: its start, and its body, which Datasette
            # sends in parts for a CSV export (a row each). Without streaming of all rows (allow_csv_stream off) an
            # export is at most max_returned_rows (1,000) rows: at most what the same page as JSON holds anyway.
            # A record's body (a video) streams instead (Streaming): logged at its first part, then passed on.
            held: dict[str, Any] = {"start": None, "body": []}
            streaming = Streaming()

            async def observe(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    seen["status"] = message["status"]
                    seen["signed_in"], headers = _signed_in_by(datasette, workspace, message.get("headers", []))
                    if signing_out and session and message["status"] == 302:
                        workspace.sessions.close(session[1])  # Datasette's sign-out passed its CSRF check
                    headers = [*headers, (b"x-robots-tag", b"noindex")]
                    if not (path in STATIC_PATHS or path.startswith(PUBLIC_PREFIXES)):
                        headers = _secured(headers)
                    held["start"] = dict(message, headers=headers)
                elif message["type"] == "http.response.body" and message.get("more_body") and not streaming.on:
                    held["body"].append(message.get("body", b""))
                elif message["type"] == "http.response.body":
                    if streaming.stopped:
                        return  # the 503 went out in its place
                    try:
                        await record()  # before any of the response leaves: nothing is seen unlogged
                    except (sqlite3.Error, OSError) as exc:
                        log.error("%s answered 503: %s", path, access_log_failure(workspace.access_log.path, exc))
                        held["start"], held["body"] = None, []
                        await _refuse(observe, scope, 503, "The access log cannot be written: try again later")
                        streaming.stopped = streaming.on
                        return
                    start, body = held["start"], b"".join([*held["body"], message.get("body", b"")])
                    held["start"], held["body"] = None, []
                    if start is not None:
                        await send(start)
                    await send(dict(message, body=body))
                else:
                    await send(message)

            token = current_rows.set(counter)
            streaming_token = current_streaming.set(streaming)
            signing_in = scope["method"] == "POST" and path == LOGIN_PATH
            signing_out = scope["method"] == "POST" and path == LOGOUT_PATH
            body: bytes | None = b""
            form: dict[str, str] | None = {}
            try:
                public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
                wait = 0.0
                if signing_in:
                    body, receive = await _read_form(receive)
                    form = parse_login_form(body) if body is not None else {}
                user = form.get("username", "") if form is not None else ""
                if signing_in and form is not None:
                    wait = workspace.login_throttle.retry_after(client, user)
                if not workspace.login_required(client) and not addressed_to_loopback(scope):
                    message = "Without accounts this archive answers only requests to 127.0.0.1, localhost or [::1]"
                    await _refuse(observe, scope, 400, message)
                elif path in BLOCKED_PATHS:
                    await _refuse(observe, scope, 404, "Not found")
                elif signing_in and body is None:
                    await _refuse(observe, scope, 413, "The sign-in form is too large")
                elif signing_in and form is None:
                    await _refuse(observe, scope, 400, "Give the username and the password once each, in UTF-8")
                elif scope["method"] == "POST" and path in FORM_PATHS and from_another_site(scope):
                    log.warning("%s refused from %s: the form was sent from another site", path, client)
                    await _refuse(observe, scope, 403, "Sign in from this archive's own login page")
                elif wait > 0:
                    minutes = max(1, round(wait / 60))
                    log.warning("sign-in refused from %s: too many failed attempts; retry in %d min", client, minutes)
                    message = f"Too many failed sign-ins; try again in {minutes} minute(s)"
                    await _refuse(observe, scope, 429, message, headers={"Retry-After": str(int(wait) + 1)})
                elif scope["method"] not in READ_METHODS and not (scope["method"] == "POST" and path in FORM_PATHS):
                    await _refuse(observe, scope, 405, "This archive is read-only: only GET requests are answered")
                elif actor is None and not public and workspace.login_required(client):
                    if not workspace.users.users():
                        message = "No one can sign in yet: add a user with `archiver users add`"
                        await _refuse(observe, scope, 403, message)
                    elif scope["method"] == "GET" and not path.endswith(".json"):
                        await _refuse(observe, scope, 302, "Sign in first", datasette.urls.path("/-/login"))
                    else:
                        await _refuse(observe, scope, 401, "Sign in first (at /-/login)")
                elif raw_path is not None and (canonical := canonical_path(raw_path)) != raw_path:
                    # Served only under the path Datasette writes, so the access log's path is the one an audit
                    # looks for (`/archive/direct_messages`, never an alias of it).
                    query = scope.get("query_string", b"").decode("latin-1")
                    await _refuse(observe, scope, 302, "Moved", canonical + (f"?{query}" if query else ""))
                else:
                    if signing_in:
                        workspace.login_throttle.attempt(client, user)
                    await app(scope, receive, observe)
                    if signing_in and seen["signed_in"]:
                        workspace.login_throttle.succeeded(client, user)
            finally:
                current_rows.reset(token)
                current_streaming.reset(streaming_token)
                await record()  # a request that failed or was cut off before its last byte

        return gate

    return wrap


# -- pages ------------------------------------------------------------------------------------------------
async def _may_view_archive(datasette: Any, request: Any) -> None:
    from datasette.utils.asgi import Forbidden

    if not await datasette.permission_allowed(request.actor, "view-instance", default=True):
        raise Forbidden("You may not view this archive")
    if not await datasette.permission_allowed(request.actor, "view-database", ARCHIVE_DB, default=True):
        raise Forbidden("You may not view this archive")


async def search_view(request: Any, datasette: Any) -> Response:
    await _may_view_archive(datasette, request)
    db = datasette.get_database(ARCHIVE_DB)
    as_json = request.url_vars.get("format") == ".json"
    error = None
    result = None
    query = search_page.SearchQuery()
    try:
        query = search_page.SearchQuery.from_params(request.args)
        result = await search_page.run_search(db, query, facet_time_limit_ms=datasette.setting("facet_time_limit_ms"))
        count_rows(len(result["rows"]))
    except search_page.SearchInputError as exc:
        error = str(exc)
    if as_json:
        if error:
            return Response.json({"ok": False, "error": error}, status=400)
        assert result is not None
        facets = {k: [[v, n] for v, n in vs] for k, vs in result["facets"].items()}
        return Response.json({"ok": True, "query": query.filters(), **result, "facets": facets})

    def link(**changes: Any) -> str:
        params = {k: v for k, v in query.filters().items() if v}
        params.update({k: v for k, v in changes.items() if k != "page"})
        params = {k: v for k, v in params.items() if v not in ("", None)}
        if changes.get("page", 1) != 1:
            params["page"] = changes["page"]
        return datasette.urls.path("/-/search") + ("?" + urlencode(params) if params else "")

    context = {
        "query": query.filters(),
        "result": result,
        "error": error,
        "facet_names": search_page.FACETS,
        "link": link,
    }
    return Response.html(
        await datasette.render_template("search.html", context, request=request), status=400 if error else 200
    )


async def item_view(request: Any, datasette: Any) -> Response:
    await _may_view_archive(datasette, request)
    key = request.args.get("key") or ""
    item = await item_page.load_item(datasette.get_database(ARCHIVE_DB), key) if key else None
    if item is None:
        raise DatasetteError(f"No item {key!r} in the archive", status=404)
    count_rows(item["rows_returned"])
    if request.url_vars.get("format") == ".json":
        versions = [{k: v for k, v in ver.items() if not k.endswith("_html")} for ver in item["versions"]]
        return Response.json({"ok": True, **item, "versions": versions}, default=str)
    return Response.html(await datasette.render_template("item.html", {"item": item}, request=request))


Found = TypeVar("Found")


async def _find_record(request: Any, datasette: Any, read: Callable[..., Found]) -> Found:
    """The record the request names (`warc` and `offset`, or `record`), as `read` (read_record, open_body) gives
    it, read on a thread; 404 when there is none."""
    await _may_view_archive(datasette, request)
    workspace = workspace_of(datasette)
    assert workspace is not None
    offset_arg = request.args.get("offset")
    try:
        offset = int(offset_arg) if offset_arg not in (None, "") else None
    except ValueError:
        raise DatasetteError(f"offset={offset_arg!r}: give a byte offset", status=400) from None
    try:
        found = await asyncio.to_thread(
            read,
            workspace.warc_dir,
            request.args.get("warc") or "",
            offset=offset,
            record_id=request.args.get("record") or None,
        )
    except raw_page.RecordNotFound as exc:
        raise DatasetteError(str(exc), status=404) from None
    count_rows(1)
    return found


async def raw_view(request: Any, datasette: Any) -> Response:
    record = await _find_record(request, datasette, raw_page.read_record)
    body_url = datasette.urls.path("/-/raw/body") + "?" + urlencode({"warc": record.warc_file, "offset": record.offset})
    context = {"record": record, "pretty": record.pretty(), "body_url": body_url, "shown": raw_page.PRETTY_LIMIT}
    return Response.html(await datasette.render_template("raw.html", context, request=request))


async def raw_body_view(request: Any, datasette: Any) -> Response:
    """The body bytes exactly as captured, streamed from the WARC file (see StreamedBody). Media types play inline;
    anything else (a platform's HTML too) is served as bytes to download, never as a page of this site."""
    body = await _find_record(request, datasette, raw_page.open_body)
    content_type = body.content_type if body.inline_media else "application/octet-stream"
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}
    if not body.inline_media:
        headers["Content-Disposition"] = f'attachment; filename="record-{body.offset}.bin"'
    return StreamedBody(body, request.receive, request.method == "HEAD", headers, content_type)


class StreamedBody(Response):
    """A record's body sent a part at a time (SEND_BYTES, each read on a thread) with its Content-Length, so that
    a video is never held whole; it tells the gate so (Streaming). It stops when the client goes away or the gate
    answered 503 instead. A file that cannot be read to the end cuts the response short (the client sees fewer
    bytes than Content-Length says), as nothing can be said once the first part has gone."""

    def __init__(
        self,
        body: raw_page.RecordBody,
        receive: Callable[[], Awaitable[dict[str, Any]]],
        head_only: bool,
        headers: dict[str, str],
        content_type: str,
    ):
        super().__init__(b"", 200, headers, content_type)
        self.record_body = body
        self.receive = receive
        self.head_only = head_only

    async def asgi_send(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        streaming = current_streaming.get() or Streaming()
        gone = asyncio.Event()
        listener = asyncio.create_task(_until_disconnect(self.receive, gone))
        try:
            streaming.on = True
            headers = {**self.headers, "content-type": self.content_type, "content-length": str(self.record_body.size)}
            raw_headers = [[k.encode("latin-1"), v.encode("latin-1")] for k, v in headers.items()]
            raw_headers += [[b"set-cookie", cookie.encode("utf-8")] for cookie in self._set_cookie_headers]
            await send({"type": "http.response.start", "status": self.status, "headers": raw_headers})
            if self.head_only:
                await send({"type": "http.response.body", "body": b""})
            else:
                await self._send_parts(send, streaming, gone)
        finally:
            listener.cancel()
            self.record_body.close()

    async def _send_parts(
        self, send: Callable[[dict[str, Any]], Awaitable[None]], streaming: Streaming, gone: asyncio.Event
    ) -> None:
        sent, size = 0, self.record_body.size
        while not (gone.is_set() or streaming.stopped):
            try:
                part = await asyncio.to_thread(self.record_body.read, SEND_BYTES)
            except raw_page.READ_ERRORS as exc:
                if not sent:
                    raise  # nothing has left yet: answered as an error (and logged so)
                log.error("/-/raw/body cut short after %d of %d bytes: %s", sent, size, type(exc).__name__)
                return  # left unfinished: the server closes the connection
            if part:
                sent += len(part)
                await send({"type": "http.response.body", "body": part, "more_body": True})
            elif sent == size:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            else:
                log.error("/-/raw/body cut short after %d of %d bytes: the record ends there", sent, size)
                return


async def _until_disconnect(receive: Callable[[], Awaitable[dict[str, Any]]], gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


# tryfirst: our /-/login is routed before datasette-auth-passwords' own (same pattern), which is never reached;
# and it has no accounts to check (none are given to it in the metadata), so it could not hash if it were.
@hookimpl(tryfirst=True)
def register_routes(datasette: Any) -> list[tuple[str, Any]]:
    return [
        (r"^/-/login$", login_view),
        (r"^/-/search(?P<format>\.json)?$", search_view),
        (r"^/-/item(?P<format>\.json)?$", item_view),
        (r"^/-/raw$", raw_view),
        (r"^/-/raw/body$", raw_body_view),
    ]
