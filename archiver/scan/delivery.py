"""Alert deliveries: which flags each channel still owes, sending them, and the record of every attempt.

A flag is owed on a configured channel while it is in the review queue (flag_queue: current, undecided or
escalated) at an alerted severity, with no 'sent' row in alert_deliveries on that channel. A PHI flag is
also settled by an earlier flag of the same hit (same item, rule, span and matched text, on an earlier or
the same version: a comment hidden by a moderator is flagged again) that was sent on the channel, was
decided, or predates the record. Flags made before migration 0011 was applied are not owed: an upgrade does
not announce the archive's history.

What is owed goes out at the end of every run and every `archiver scan`, and with `archiver alerts send`.
The attempt is appended only once the channel has answered, so a stop in between leaves the flags owed and
they are sent again: at least once, never silently dropped.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..config import AlertsConfig, Config
from ..errors import ArchiverError, ConfigError
from ..logs import redact_secrets
from ..store import Store
from ..warc import iso, utcnow
from .alerts import (
    ChannelAnswer,
    alerted_severities,
    channel_failed,
    configured_channels,
    destination,
    said,
    send_flags,
)

log = logging.getLogger("archiver.alerts")

DELIVERY_MIGRATION = 11  # the schema version that made alert_deliveries; older flags are not owed

# The review queue's flags at the alerted severities that `channel` has not settled (see the docstring). The
# same-hit test is flag_status's (migration 0011); a consent flag's hit is the flag alone.
_OWED_SQL = """
SELECT q.flag_id AS id, q.version_id, q.item_key, q.rule_id, q.category, q.severity, q.reason, q.flagged_at
FROM flag_queue q JOIN flags f ON f.id = q.flag_id
WHERE q.severity IN ({severities}) AND q.flagged_at >= :since
  AND NOT EXISTS (SELECT 1 FROM alert_deliveries d
                  WHERE d.flag_id = f.id AND d.channel = :channel AND d.outcome = 'sent')
  AND (f.category = 'consent' OR NOT EXISTS (
      SELECT 1 FROM flags g
      WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
        AND g.span_start IS f.span_start AND g.span_end IS f.span_end AND g.version_id <= f.version_id
        AND (g.version_id = f.version_id OR g.matched IS f.matched) AND g.id != f.id
        AND (g.created_at < :since
             OR EXISTS (SELECT 1 FROM flag_reviews r WHERE r.flag_id = g.id)
             OR EXISTS (SELECT 1 FROM alert_deliveries d
                        WHERE d.flag_id = g.id AND d.channel = :channel AND d.outcome = 'sent'))))
ORDER BY q.flag_id
"""


@dataclass
class Owed:
    """What one channel owes: the flags (as an alert names them) and its last attempt, if any."""

    channel: str
    destination: str
    flags: list[dict[str, Any]]
    last_attempt: dict[str, Any] | None = None  # outcome, error, at

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "destination": self.destination,
            "owed": len(self.flags),
            "last_attempt": self.last_attempt,
            "flags": self.flags,
        }


def owed_since(conn: sqlite3.Connection) -> str | None:
    """When migration 0011 was applied (flags made before are not owed); None for an archive without it."""
    try:
        found = conn.execute(
            "SELECT applied_at FROM schema_migrations WHERE version = ?", (DELIVERY_MIGRATION,)
        ).fetchone()
    except sqlite3.OperationalError:  # not an archive yet
        return None
    return found[0] if found else None


def owed_flags(conn: sqlite3.Connection, alerts: AlertsConfig, channel: str, since: str) -> list[dict[str, Any]]:
    """The flags `channel` owes, oldest first; `since` is owed_since's answer."""
    severities = alerted_severities(alerts)
    marks = {f"s{n}": severity for n, severity in enumerate(severities)}
    sql = _OWED_SQL.format(severities=", ".join(f":{mark}" for mark in marks))
    cursor = conn.execute(sql, {**marks, "since": since, "channel": channel})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def pending_alerts(conn: sqlite3.Connection, alerts: AlertsConfig) -> list[Owed]:
    """Every configured channel with what it owes (possibly nothing)."""
    since = owed_since(conn)
    pending = [Owed(channel, destination(alerts, channel), []) for channel in configured_channels(alerts)]
    if since is None:
        return pending
    for owed in pending:
        owed.flags = owed_flags(conn, alerts, owed.channel, since)
        last = conn.execute(
            "SELECT outcome, error, created_at FROM alert_deliveries WHERE channel = ? ORDER BY id DESC LIMIT 1",
            (owed.channel,),
        ).fetchone()
        if last is not None:
            owed.last_attempt = {"outcome": last[0], "error": last[1], "at": last[2]}
    return pending


def append_delivery(store: Store, owed: Owed, answer: ChannelAnswer, run_id: str | None) -> int:
    """Record one message's outcome for each flag it carried; returns the message's number."""
    with store.transaction():
        conn = store.conn
        message = conn.execute("SELECT coalesce(max(message), 0) + 1 FROM alert_deliveries").fetchone()[0]
        answered = iso(utcnow())
        for flag in owed.flags:
            store._insert(
                "alert_deliveries",
                {
                    "message": message,
                    "flag_id": flag["id"],
                    "channel": answer.channel,
                    "destination": answer.destination,
                    "outcome": "sent" if answer.sent else "failed",
                    "error": answer.error,
                    "run_id": run_id,
                    "created_at": answered,
                },
            )
    return message


def deliver_owed(store: Store, config: Config, run_id: str | None) -> list[ChannelAnswer]:
    """Send each channel what it owes, one message a channel, and record each outcome; one answer per message
    (none when nothing is owed)."""
    answers = []
    for owed in pending_alerts(store.conn, config.alerts):
        if not owed.flags:
            continue
        try:
            answer = send_flags(config, owed.channel, owed.flags, run_id)
        except Exception as exc:  # one channel's failure, whatever it is, leaves its flags owed
            answer = channel_failed(owed.channel, owed.destination, f"alert {owed.channel} failed: {said(exc)}")
        append_delivery(store, owed, answer, run_id)  # only now: a stop before this sends them again
        if not answer.sent:
            log.warning("%s; its %d flag(s) stay owed", answer.notice, len(owed.flags))
        answers.append(answer)
    return answers


def alert_after(store: Store, config: Config, run_id: str | None, notices: list[str]) -> None:
    """The end of a run or a scan: deliver what is owed. A failure is a notice (the flags stay owed), never a
    lost run."""
    try:
        answers = deliver_owed(store, config, run_id)
    except Exception as exc:  # the run's result and checkpoint come after: never lost to an alert
        shown = exc if isinstance(exc, (ArchiverError, sqlite3.DatabaseError)) else said(exc)
        message = redact_secrets(f"alerts not sent: {shown}; they stay owed: `archiver alerts send` retries")
        log.error(message)
        notices.append(message)
        return
    for answer in answers:
        notices.append(answer.notice if answer.sent else f"{answer.notice}; its flags stay owed")


def require_channels(config: Config) -> None:
    if not configured_channels(config.alerts):
        raise ConfigError(f"{config.path}: no alert channel configured; add [alerts.email] or [alerts.webhook]")


def send_owed_alerts(config: Config) -> list[ChannelAnswer]:
    """`archiver alerts send`: deliver what is owed now, under the archive's lock."""
    from ..consent.register import writable_archive

    require_channels(config)
    with writable_archive(config, "archiver alerts send") as store:
        return deliver_owed(store, config, None)


def read_pending_alerts(config: Config) -> list[Owed]:
    """`archiver alerts pending`: what each channel owes, read-only."""
    require_channels(config)
    store = Store.open(config.archive.database, readonly=True)
    try:
        return pending_alerts(store.conn, config.alerts)
    finally:
        store.close()
