"""Alerts by e-mail (SMTP) and webhook (JSON POST): flags of the configured severity or worse that a channel
still owes (scan/delivery.py decides which, and records each attempt), accounts a run could not capture (their
errors naming no host but the account's and its platform's: see hosts_named), and `archiver doctor --alert`'s
report when something needs a person (systemd, unlike cron, mails nothing).

A message names each flag's id, severity, category, rule and reason, and links to the flag and its item's
version in Datasette: the ALERT_LISTED most severe (then oldest); any others are counted, with the link to
the review queue, so that a first run over a large archive sends a message a mail server or chat accepts.
It never carries the flagged text, the item's text, its author or its key (which may name the author): only
the archive, behind its access control, holds PHI. A channel that fails (an exception, a recipient refused, no
answer within `[alerts] deadline`) is a notice of the run, not a failed run: its flags stay owed. Secrets go
only over TLS (config.py refuses a login or a token in clear beyond loopback), and TLS verifies the server.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import requests

from ..config import AlertsConfig, Config, EmailAlert
from ..logs import redact_secrets, register_secret

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}
TIMEOUT = 15
ALERT_LISTED = 50  # flags named one by one in an alert
CHANNELS = ("email", "webhook")
# How a run-failed alert names a host that is neither the account's nor its platform's (see hosts_named).
OTHER_SERVER = "another server (named in the run log and `archiver status`)"
# The hosts of each platform's own services (API, AppView, PDS shards, PLC directory, CDNs) that an alert may name:
# a name, or ".domain" for every host under it. Not bsky.social's subdomains: they are people's handles.
PLATFORM_HOSTS: dict[str, tuple[str, ...]] = {
    "bluesky": ("bsky.social", "bsky.app", ".bsky.app", ".host.bsky.network", "api.bsky.chat", "plc.directory"),
    "facebook": ("facebook.com", ".facebook.com", ".fbcdn.net", ".fbsbx.com"),
    "instagram": ("instagram.com", ".instagram.com", ".cdninstagram.com", ".facebook.com", ".fbcdn.net"),
    "linkedin": ("linkedin.com", ".linkedin.com", ".licdn.com"),
    "x": ("x.com", ".x.com", "twitter.com", ".twitter.com", ".twimg.com"),
    "youtube": (".googleapis.com", "youtube.com", ".youtube.com", ".ytimg.com", ".ggpht.com"),
}


@dataclass(frozen=True)
class ChannelAnswer:
    """What one channel made of one message: a notice for the summary, and the error when it failed."""

    channel: str
    destination: str
    notice: str
    error: str | None = None  # one line, free of secrets

    @property
    def sent(self) -> bool:
        return self.error is None


def alerted(alerts: AlertsConfig, severity: str) -> bool:
    """Whether flags of this severity reach the alert (`[alerts] severity` is the lowest that does)."""
    return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK[alerts.severity]


def alerted_severities(alerts: AlertsConfig) -> list[str]:
    return [severity for severity in SEVERITY_RANK if alerted(alerts, severity)]


def configured_channels(alerts: AlertsConfig) -> list[str]:
    return [channel for channel, on in zip(CHANNELS, (alerts.email, alerts.webhook), strict=True) if on is not None]


def destination(alerts: AlertsConfig, channel: str) -> str:
    """Where a channel's messages go, as said in output and kept in alert_deliveries (no secret in it)."""
    if channel == "email":
        assert alerts.email is not None  # only asked of configured channels
        return ", ".join(alerts.email.to)
    assert alerts.webhook is not None
    return shown_webhook(alerts.webhook.url)


def alert_payload(
    config: Config, flags: list[dict[str, Any]], run_id: str | None, count: int | None = None
) -> dict[str, Any]:
    """The webhook's JSON body (and the e-mail's content): ids, kinds and links, nothing quoted from items.
    `count` is how many flags the channel owes in all (default: those given); ALERT_LISTED of them are named.
    `run_id` is the run sending it (None for `archiver scan` and `archiver alerts send`).
    No item key: some name the author (a Bluesky key is an AT URI holding the author's DID), so a flag is
    found by its id and its version's row, whose pages (behind the workspace's sign-in) lead to the item."""
    base = config.alerts.datasette_url
    listed = sorted(flags, key=lambda f: (-SEVERITY_RANK.get(f["severity"], 0), f["id"]))[:ALERT_LISTED]
    return {
        "event": "new-flags",
        "archive": config.archive.organisation or str(config.archive.dir),
        "run_id": run_id,
        "severity_at_least": config.alerts.severity,
        "count": len(flags) if count is None else count,
        "listed": len(listed),
        "queue_url": f"{base}/archive/flag_queue",
        "flags": [
            {
                "flag_id": f["id"],
                "severity": f["severity"],
                "category": f["category"],
                "rule_id": f["rule_id"],
                "reason": f["reason"],
                "version_id": f["version_id"],
                "flag_url": f"{base}/archive/flag_queue?flag_id={f['id']}",
                "version_url": f"{base}/archive/item_versions/{f['version_id']}",
            }
            for f in listed
        ],
    }


def alert_email(config: Config, payload: dict[str, Any]) -> EmailMessage:
    run = f" (run {payload['run_id']})" if payload["run_id"] else ""
    lines = [
        f"The archive of {payload['archive']} has {payload['count']} new flag(s){run}.",
        "Review them in the queue (the flagged text is shown only there):",
        f"  {payload['queue_url']}",
        "",
    ]
    for flag in payload["flags"]:
        lines.append(f"flag {flag['flag_id']}: {flag['severity']} {flag['category']} ({flag['rule_id']})")
        lines.append(f"  why: {flag['reason']}")
        lines.append(f"  flag: {flag['flag_url']}")
        lines.append(f"  version: {flag['version_url']}")
    if payload["count"] > payload["listed"]:
        lines.append(f"... and {payload['count'] - payload['listed']} more: see the queue ({payload['queue_url']})")
    lines.append("")
    lines.append("Record a decision: archiver review FLAG --decision violation|false-positive|escalated --note ...")
    return _email(
        config, f"[archiver] {payload['count']} new {payload['severity_at_least']}-severity PHI flag(s)", lines
    )


# A URL in an account's error; what follows its host is left out of an alert (see without_url_paths).
_URL = re.compile(r"\b(https?)://([^/?#\s'\"<>]+)[^\s'\"<>]*", re.IGNORECASE)


def without_url_paths(text: str, named: Callable[[str], bool] | None = None) -> str:
    """`text` with every http(s) URL cut to its scheme and host ("https://cdn.example/…"), a user name and password
    before the host masked. An alert leaves the network, maybe in clear: a path or a query can hold what the
    archive keeps behind its sign-in (a media file's own name, an author's DID, a search's words). The errors are
    written without such URLs in the first place (http.media_label); this holds if one slips through. With `named`
    (see hosts_named), a URL whose host it does not name is OTHER_SERVER altogether. The run log and
    `archiver status` keep the whole error."""

    def cut(match: re.Match[str]) -> str:
        scheme, netloc = match.group(1), match.group(2)
        host = netloc.rpartition("@")[2]
        whole = match.group(0)
        if named is not None and not named(_bare_host(host)):
            return OTHER_SERVER + _TRAILING.search(whole).group(0)
        shown = f"{scheme}://{'[REDACTED]@' if '@' in netloc else ''}{host}"
        tail = whole[len(match.group(1)) + 3 + len(netloc) :]
        trailing = re.search(r"[.,;:)\]]*$", tail).group(0) if tail else ""  # punctuation after the URL stays
        return shown + ("/…" if tail[: len(tail) - len(trailing)] else "") + trailing

    return _URL.sub(cut, text)


# A media file as http.media_label names it ("file from cdn.example:8443"): by its host, which for_alerts judges as
# it does a URL's.
_FILE_HOST = re.compile(r"\bfile from (?!an unnamed host\b)(\[[0-9A-Fa-f:.]+\](?::\d+)?|[A-Za-z0-9.-]+(?::\d+)?)")


def hosts_named(config: Config, account: str, platform: str) -> Callable[[str], bool]:
    """Whether an alert about `account` may name a host ("host" or "host:port", as an error gives it): one of the
    account's configured URLs (api_base, URL options), of its platform's own services (PLATFORM_HOSTS) or, on
    Bluesky, under the domain of its own handle, which the organisation holds (its self-hosted PDS, most likely).
    Any other may be a member of the public's own server: a commenter's PDS that their DID document names (did:web,
    or a did:plc naming a self-hosted endpoint), asked for their records and blobs; the remote instance of a
    Mastodon commenter's media not yet cached (`remote_url`). Such a host cannot be told from a CDN the platform
    uses, so neither is named (the run log and `archiver status` name both)."""
    configured = next((a for a in config.accounts if a.name == account), None)
    names = set(PLATFORM_HOSTS.get(platform, ()))
    if configured is not None:
        urls = [configured.api_base, *(v for v in configured.options.values() if isinstance(v, str))]
        names |= {_host_key(urlsplit(u).netloc) for u in urls if u.lower().startswith(("http://", "https://"))}
        handle = (configured.account or "").strip().lstrip("@").lower()
        if platform == "bluesky" and "." in handle and not handle.startswith("did:"):
            names |= {handle, f".{handle}"}

    def named(netloc: str) -> bool:
        key = _host_key(netloc)
        host = key.partition("]")[0] + "]" if key.startswith("[") else key.partition(":")[0]
        return key in names or host in names or any(n.startswith(".") and host.endswith(n) for n in names)

    return named


def _bare_host(host: str) -> str:
    """A URL's host without the punctuation after it in a sentence ("https://cdn.example: HTTP 500")."""
    bare = host.rstrip(".,;:)")
    return bare[:-1] if bare.endswith("]") and not bare.startswith("[") else bare


def _host_key(netloc: str) -> str:
    """A host as compared: lower case, no user name and password, no default port."""
    key = netloc.rpartition("@")[2].lower().rstrip(".")
    return key.removesuffix(":443").removesuffix(":80")


# A Bluesky AT URI (at://did:plc:…/app.bsky.feed.post/…, or at://handle/…) or a DID in an account's error: each
# names a Bluesky account, maybe a commenter's (an item key is `bluesky:` and the post's AT URI).
_AT_URI = re.compile(r"\bat://[^\s'\"<>]+", re.IGNORECASE)
_DID = re.compile(r"\bdid:([a-z0-9]+):[A-Za-z0-9._:%-]+")
_TRAILING = re.compile(r"[.,;:)\]]*$")  # punctuation after what is cut stays
# An account that failed on an error nobody foresaw (pipeline.py: "unexpected KeyError: ..."): its message is
# Python's, and may quote whatever the connector held (a comment's text, a name): the alert keeps the type alone.
_UNEXPECTED = re.compile(r"^unexpected (\w+)(?::.*)?$", re.DOTALL)


def for_alerts(text: str, named: Callable[[str], bool]) -> str:
    """An account's error as an alert carries it: every URL cut to its scheme and host (without_url_paths), a host
    that `named` does not name (hosts_named), in a URL or a media file's label, said as OTHER_SERVER, every AT URI
    and DID left out ("at://…", "did:plc:…"). The errors name no other author's account on purpose, but some name
    a record by its URI (an answer of an unexpected shape), and a request to a commenter's own server names its
    host; an unforeseen error is named by its type alone. The run log and `archiver status` keep the whole line."""
    if unexpected := _UNEXPECTED.match(text):
        return f"unexpected {unexpected.group(1)} (a bug: its message is in the run log and `archiver status`)"

    def kept(shown: str) -> Callable[[re.Match[str]], str]:
        return lambda match: shown.format(*match.groups()) + _TRAILING.search(match.group(0)).group(0)

    def file_from(match: re.Match[str]) -> str:
        host = match.group(1).rstrip(".")
        return match.group(0) if named(host) else f"file from {OTHER_SERVER}" + match.group(1)[len(host) :]

    text = _FILE_HOST.sub(file_from, without_url_paths(text, named))
    text = _AT_URI.sub(kept("at://…"), text)
    return _DID.sub(kept("did:{}:…"), text)


def failure_payload(config: Config, run_id: str, failed: list[tuple[str, str, str]]) -> dict[str, Any]:
    """A run whose accounts failed: which accounts and the one-line errors (already free of secrets), every URL in
    them cut to its scheme and host, no host but the account's and its platform's, and no AT URI or DID
    (for_alerts)."""
    base = config.alerts.datasette_url
    return {
        "event": "run-failed",
        "archive": config.archive.organisation or str(config.archive.dir),
        "run_id": run_id,
        "count": len(failed),
        "accounts": [
            {"account": a, "platform": p, "error": for_alerts(e, hosts_named(config, a, p))} for a, p, e in failed
        ],
        "run_log_url": f"{base}/archive/run_log" if base else "",
    }


def failure_email(config: Config, payload: dict[str, Any]) -> EmailMessage:
    lines = [f"The nightly run {payload['run_id']} of the archive of {payload['archive']} did not capture:", ""]
    for account in payload["accounts"]:
        lines.append(f"{account['account']} ({account['platform']}): {account['error']}")
    lines += ["", "What was captured is kept; the next run resumes. Check with: archiver doctor --config ..."]
    if payload["run_log_url"]:
        lines.append(f"Run log: {payload['run_log_url']}")
    return _email(config, f"[archiver] run {payload['run_id']}: {payload['count']} account(s) failed", lines)


def stopped_payload(config: Config, error: str) -> dict[str, Any]:
    """A run the archive's storage stopped as a whole (a full disk, a quota, a read-only remount, an I/O error:
    errors.storage_failure). `error` is the one line the run printed: the archive's file or folder that failed, the
    condition and what to do; it names no account's data. The host says which machine's disk."""
    return {
        "event": "run-stopped",
        "archive": config.archive.organisation or str(config.archive.dir),
        "host": socket.gethostname(),
        "error": redact_secrets(error),
    }


def stopped_email(config: Config, payload: dict[str, Any]) -> EmailMessage:
    lines = [f"A run of the archive of {payload['archive']} on {payload['host']} stopped: its storage failed.", ""]
    lines += [payload["error"], "", "What was committed is kept; once the disk is fixed, the next run resumes."]
    lines.append("Check with: archiver doctor --config ...")
    return _email(config, f"[archiver] run stopped on {payload['host']}: the archive's storage failed", lines)


def doctor_payload(config: Config, checks: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Doctor's report (name, status, message per check; doctor's messages name no secret and no PHI): the checks
    that need a person first, then how many passed."""
    needs = [{"check": n, "status": s, "message": redact_secrets(m)} for n, s, m in checks if s != "ok"]
    return {
        "event": "doctor",
        "archive": config.archive.organisation or str(config.archive.dir),
        "host": socket.gethostname(),
        "config": str(config.path),
        "count": len(needs),
        "checks": needs,
        "ok": len(checks) - len(needs),
    }


def doctor_email(config: Config, payload: dict[str, Any]) -> EmailMessage:
    lines = [f"archiver doctor --config {payload['config']}, on {payload['host']}, for {payload['archive']}:", ""]
    lines += [f"{c['status'].upper():4} {c['check']}: {c['message']}" for c in payload["checks"]]
    lines += ["", f"{payload['ok']} other check(s) passed. Run the same command there to see them all."]
    return _email(config, f"[archiver] doctor on {payload['host']}: {payload['count']} check(s) need a person", lines)


def _email(config: Config, subject: str, lines: list[str]) -> EmailMessage:
    email = config.alerts.email
    assert email is not None  # only called when configured
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = email.sender
    message["To"] = ", ".join(email.to)
    message.set_content("\n".join(lines))
    return message


def send_doctor_alert(config: Config, checks: list[tuple[str, str, str]]) -> list[str]:
    """Doctor's report on every configured channel, when a check is not OK; a notice per channel."""
    payload = doctor_payload(config, checks)
    if not payload["count"]:
        return []
    return _send(config, payload, lambda: doctor_email(config, payload), f"{payload['count']} checks")


def send_flags(config: Config, channel: str, flags: list[dict[str, Any]], run_id: str | None) -> ChannelAnswer:
    """One message on one configured channel naming `flags` (all that it owes: the payload counts them)."""
    payload = alert_payload(config, flags, run_id)
    what = f"{payload['count']} flags"
    if channel == "email":
        return _send_email(config, alert_email(config, payload), what)
    return _send_webhook(config, payload, what)


def send_failure_alert(config: Config, run_id: str, failed: list[tuple[str, str, str]]) -> list[str]:
    """Announce the accounts a run could not capture (account, platform, error) on every configured channel."""
    if not failed:
        return []
    payload = failure_payload(config, run_id, failed)
    return _send(config, payload, lambda: failure_email(config, payload), f"{len(failed)} failed accounts")


def send_stopped_alert(config: Config, error: str) -> list[str]:
    """Announce a run its storage stopped on every configured channel. Nothing of it can be recorded (the disk is
    what failed), so it is sent once, as it happens; `archiver alerts pending` does not owe it."""
    payload = stopped_payload(config, error)
    return _send(config, payload, lambda: stopped_email(config, payload), "a stopped run")


def _send(config: Config, payload: dict[str, Any], email: Callable[[], EmailMessage], what: str) -> list[str]:
    alerts = config.alerts
    answers = []
    if alerts.email is not None:
        answers.append(_send_email(config, email(), what))
    if alerts.webhook is not None:
        answers.append(_send_webhook(config, payload, what))
    return [answer.notice for answer in answers]


def channel_failed(channel: str, to: str, message: str) -> ChannelAnswer:
    line = " ".join(redact_secrets(message).split())  # an SMTP reply can run over several lines
    return ChannelAnswer(channel, to, line, line)


def said(exc: BaseException) -> str:
    """An exception as a failure notice may say it: the expected kinds in full (a server's reply, a refused
    connection), any other by its type alone, as its text may quote a secret (a UnicodeEncodeError quotes the
    character of the password it could not encode)."""
    if isinstance(exc, (OSError, smtplib.SMTPException)):
        return str(exc) or type(exc).__name__
    return type(exc).__name__


def _within_deadline(
    config: Config,
    channel: str,
    to: str,
    what: str,
    work: Callable[[], ChannelAnswer],
    abort: Callable[[], None],
    then: Callable[[], None] = lambda: None,
) -> ChannelAnswer:
    """`work` on a thread of its own, given `[alerts] deadline` seconds in all: requests' and smtplib's timeouts
    are per read, and a server answering a byte at a time would otherwise hold the run (and the archive's lock)
    for as long as it likes. Past the deadline the channel has failed and `abort` cuts the exchange short; any
    exception is a failure too, never one that escapes into the run. `then` (leave politely) runs on the thread
    once the answer is known, and changes nothing of it."""
    answers: list[ChannelAnswer] = []
    lock = threading.Lock()
    given = threading.Event()

    def answer(found: ChannelAnswer) -> bool:
        with lock:
            if not answers:  # the first word stands: the work's own, or the deadline's
                answers.append(found)
                given.set()
            return answers[0] is found

    def run() -> None:
        try:
            answer(work())
        except Exception as exc:  # a channel's failure is a notice of the run, whatever it is
            answer(channel_failed(channel, to, f"{what} failed: {said(exc)}"))
        finally:
            with contextlib.suppress(Exception):
                then()

    threading.Thread(target=run, name=f"alert-{channel}", daemon=True).start()
    given.wait(config.alerts.deadline)
    late = channel_failed(channel, to, f"{what} failed: no answer within the deadline of {config.alerts.deadline:g} s")
    if answer(late):
        abort()
    return answers[0]


def _ssl_context(email: EmailAlert) -> ssl.SSLContext:
    """The server's certificate and name checked against the system's CAs, or `ca_file`'s alone."""
    return ssl.create_default_context(cafile=str(email.ca_file) if email.ca_file else None)


class _Utf8(str):
    """An AUTH response that smtplib.SMTP.auth, which asks for ASCII, encodes as UTF-8: PLAIN's credentials are
    UTF-8 (RFC 4616), and LOGIN and CRAM-MD5, which name no charset, are taken as UTF-8 by servers."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return str.encode(self, "utf-8", errors)


class _SMTP(smtplib.SMTP):
    """A password or user name beyond ASCII (say "Geheimnis-ü") logs in instead of raising UnicodeEncodeError."""

    user: str
    password: str

    def connect(self, host: str = "localhost", port: int = 0, source_address: Any = None) -> tuple[int, bytes]:
        # smtplib sets _host in __init__ alone, and TLS checks the certificate's name against it: made unconnected
        # (for the deadline to hold it from the start), this one learns its host here.
        self._host = host
        return super().connect(host, port, source_address)

    def auth_plain(self, challenge: bytes | None = None) -> str:
        return _Utf8(super().auth_plain(challenge))

    def auth_login(self, challenge: bytes | None = None) -> str:
        return _Utf8(super().auth_login(challenge))

    def auth_cram_md5(self, challenge: bytes | None = None) -> str | None:
        if challenge is None:  # CRAM-MD5 has no initial response
            return None
        digest = hmac.HMAC(self.password.encode("utf-8"), challenge, "md5").hexdigest()
        return _Utf8(f"{self.user} {digest}")


class _SMTPS(_SMTP, smtplib.SMTP_SSL):
    """SMTP over TLS from the first byte (implicit TLS, port 465), logging in as _SMTP does."""


def _send_email(config: Config, message: EmailMessage, what: str) -> ChannelAnswer:
    email = config.alerts.email
    assert email is not None
    to = destination(config.alerts, "email")
    via = f"alert e-mail via {email.smtp_host}:{email.smtp_port}"
    password = os.environ.get(email.password_env or "", "") if email.username else ""
    register_secret(password)  # here, before the thread: the redaction covers whatever the exchange says
    timeout = min(TIMEOUT, config.alerts.deadline)
    opened: list[smtplib.SMTP] = []
    aborted = threading.Event()

    def unless_aborted() -> None:
        # A TLS handshake under way is not cut short by shutting the socket (ssl holds it by then): past the
        # deadline, whose failure is recorded and leaves the flags owed, nothing more is sent.
        if aborted.is_set():
            raise TimeoutError("past the deadline")

    def send() -> ChannelAnswer:
        # Made unconnected and kept first, so that the deadline can shut its socket even before the greeting.
        if email.implicit_tls:
            smtp: smtplib.SMTP = _SMTPS(timeout=timeout, context=_ssl_context(email))
        else:
            smtp = _SMTP(timeout=timeout)
        opened.append(smtp)
        smtp.connect(email.smtp_host, email.smtp_port)
        if email.starttls:
            smtp.starttls(context=_ssl_context(email))
        unless_aborted()
        if email.username:
            smtp.login(email.username, password)
        unless_aborted()
        refused = smtp.send_message(message)
        if refused:
            # One row per flag and channel (alert_deliveries): a recipient refused fails the channel, so the
            # flags stay owed and the next attempt mails every recipient again.
            refusals = "; ".join(
                f"{address}: {code} {reply.decode(errors='replace')}" for address, (code, reply) in refused.items()
            )
            return channel_failed(
                "email", to, f"{via} failed: {len(refused)} of {len(email.to)} recipients refused ({refusals})"
            )
        return ChannelAnswer("email", to, f"alert e-mail sent to {to} ({what})")

    def leave() -> None:
        # After the answer: a server that answers QUIT with anything but 221 (or not at all) has the message
        # already, and recording it failed would mail it again.
        for smtp in opened:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

    def abort() -> None:
        aborted.set()
        for smtp in opened:
            _shut(smtp.sock)

    return _within_deadline(config, "email", to, via, send, abort, leave)


def _shut(sock: socket.socket | None) -> None:
    """Wake a thread blocked reading `sock` (closing it from another thread may not)."""
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: nothing to wake
            sock.shutdown(socket.SHUT_RDWR)


def _send_webhook(config: Config, payload: dict[str, Any], what: str) -> ChannelAnswer:
    webhook = config.alerts.webhook
    assert webhook is not None
    headers = {}
    if webhook.token_env and os.environ.get(webhook.token_env):
        token = os.environ[webhook.token_env]
        register_secret(token)
        headers["Authorization"] = f"Bearer {token}"
    shown = destination(config.alerts, "webhook")
    via = f"alert webhook {shown}"
    timeout = min(TIMEOUT, config.alerts.deadline)

    def post() -> ChannelAnswer:
        try:
            response = requests.post(webhook.url, json=payload, headers=headers, timeout=timeout)
        except requests.RequestException as exc:  # its text holds the URL, whose path may be the secret
            return channel_failed("webhook", shown, f"{via} failed: {type(exc).__name__}")
        if response.status_code >= 300:
            return channel_failed("webhook", shown, f"{via} failed: HTTP {response.status_code}")
        return ChannelAnswer("webhook", shown, f"{via} answered {response.status_code} ({what})")

    # requests keeps its socket to itself: past the deadline the POST is left to its thread (a daemon, which
    # ends with its read timeout or the process) and the flags stay owed, so at worst they are posted twice.
    return _within_deadline(config, "webhook", shown, via, post, lambda: None)


def shown_webhook(url: str) -> str:
    """A webhook as said in output and kept in run results: its scheme and host only. Chat services (Slack,
    Teams, Google Chat) carry the secret in the path or the query, and anyone holding the URL may post."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    more = "/..." if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{more}"
