"""Alerts by e-mail (SMTP) and webhook (JSON POST): flags of the configured severity or worse that a channel
still owes (scan/delivery.py decides which, and records each attempt), accounts a run could not capture, and
`archiver doctor --alert`'s report when something needs a person (systemd, unlike cron, mails nothing).

A message names each flag's id, severity, category, rule and reason, and links to the flag and the item's
history in Datasette: the ALERT_LISTED most severe (then oldest); any others are counted, with the link to
the review queue, so that a first run over a large archive sends a message a mail server or chat accepts.
It never carries the flagged text, the item's text or its author: only the archive, behind its access
control, holds PHI. A channel that fails is a notice of the run, not a failed run: its flags stay owed.
"""

from __future__ import annotations

import os
import smtplib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from ..config import AlertsConfig, Config
from ..logs import redact_secrets, register_secret

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}
TIMEOUT = 15
ALERT_LISTED = 50  # flags named one by one in an alert
CHANNELS = ("email", "webhook")


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
    `run_id` is the run sending it (None for `archiver scan` and `archiver alerts send`)."""
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
                "item_key": f["item_key"],
                "flag_url": f"{base}/archive/flag_queue?flag_id={f['id']}",
                "item_url": f"{base}/archive/item_history?item_key={quote(f['item_key'], safe='')}",
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
        lines.append(f"  item: {flag['item_url']}")
    if payload["count"] > payload["listed"]:
        lines.append(f"... and {payload['count'] - payload['listed']} more: see the queue ({payload['queue_url']})")
    lines.append("")
    lines.append("Record a decision: archiver review FLAG --decision violation|false-positive|escalated --note ...")
    return _email(
        config, f"[archiver] {payload['count']} new {payload['severity_at_least']}-severity PHI flag(s)", lines
    )


def failure_payload(config: Config, run_id: str, failed: list[tuple[str, str, str]]) -> dict[str, Any]:
    """A run whose accounts failed: which accounts and the one-line errors (already free of secrets)."""
    base = config.alerts.datasette_url
    return {
        "event": "run-failed",
        "archive": config.archive.organisation or str(config.archive.dir),
        "run_id": run_id,
        "count": len(failed),
        "accounts": [{"account": a, "platform": p, "error": e} for a, p, e in failed],
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


def _send(config: Config, payload: dict[str, Any], email: Callable[[], EmailMessage], what: str) -> list[str]:
    alerts = config.alerts
    answers = []
    if alerts.email is not None:
        answers.append(_send_email(config, email(), what))
    if alerts.webhook is not None:
        answers.append(_send_webhook(config, payload, what))
    return [answer.notice for answer in answers]


def _failed(channel: str, to: str, message: str) -> ChannelAnswer:
    line = " ".join(redact_secrets(message).split())  # an SMTP reply can run over several lines
    return ChannelAnswer(channel, to, line, line)


def _send_email(config: Config, message: EmailMessage, what: str) -> ChannelAnswer:
    email = config.alerts.email
    assert email is not None
    to = destination(config.alerts, "email")
    try:
        with smtplib.SMTP(email.smtp_host, email.smtp_port, timeout=TIMEOUT) as smtp:
            if email.starttls:
                smtp.starttls()
            if email.username:
                password = os.environ.get(email.password_env or "", "")
                register_secret(password)
                smtp.login(email.username, password)
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        return _failed("email", to, f"alert e-mail via {email.smtp_host}:{email.smtp_port} failed: {exc}")
    return ChannelAnswer("email", to, f"alert e-mail sent to {to} ({what})")


def _send_webhook(config: Config, payload: dict[str, Any], what: str) -> ChannelAnswer:
    webhook = config.alerts.webhook
    assert webhook is not None
    headers = {}
    if webhook.token_env and os.environ.get(webhook.token_env):
        token = os.environ[webhook.token_env]
        register_secret(token)
        headers["Authorization"] = f"Bearer {token}"
    shown = destination(config.alerts, "webhook")
    try:
        response = requests.post(webhook.url, json=payload, headers=headers, timeout=TIMEOUT)
    except requests.RequestException as exc:
        return _failed("webhook", shown, f"alert webhook {shown} failed: {type(exc).__name__}")
    if response.status_code >= 300:
        return _failed("webhook", shown, f"alert webhook {shown} failed: HTTP {response.status_code}")
    return ChannelAnswer("webhook", shown, f"alert webhook {shown} answered {response.status_code} ({what})")


def shown_webhook(url: str) -> str:
    """A webhook as said in output and kept in run results: its scheme and host only. Chat services (Slack,
    Teams, Google Chat) carry the secret in the path or the query, and anyone holding the URL may post."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    more = "/..." if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{more}"
