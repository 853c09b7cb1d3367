"""Whether a consent covers a given day: pure date logic, shared by the register listing and the check.

A consent covers granted_on through expires_on inclusive (no expiry when empty) and nothing from revoked_on
on. The status says why the consent stopped first: a consent that expired and was revoked later stays
"expired" (from the day after its expiry), one revoked before it would have expired is "revoked". A revocation
on the very first day after the expiry counts as the revocation. The consents view (schemas/archive.sql,
migration 0013) says the same in SQL.

The register's dates are the organisation's calendar days, so "today" and the day a post went up are judged
in the local time zone of the process (the TZ variable, or the machine's zone), never in UTC: at 7 pm in
Chicago it is already tomorrow in UTC. The views do the same with SQLite's 'localtime' (migration 0016).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

STATUSES = ("live", "pending", "expired", "revoked")


@dataclass(frozen=True)
class ConsentState:
    """The current row of a consent (its latest in consent_register)."""

    consent_id: str
    patient_ref: str
    platform: str | None
    account: str | None
    scope: str
    granted_on: str
    expires_on: str | None
    revoked_on: str | None
    document_sha256: str

    def status(self, today: date) -> str:
        """live, pending (not granted yet), expired or revoked, on `today`."""
        return consent_status(self.granted_on, self.expires_on, self.revoked_on, today)

    def lapsed_on(self) -> str | None:
        """The first day the consent no longer covers (revocation or the day after expiry), if any."""
        ends = []
        if self.revoked_on:
            ends.append(self.revoked_on)
        if self.expires_on:
            ends.append((date.fromisoformat(self.expires_on) + timedelta(days=1)).isoformat())
        return min(ends) if ends else None

    def lapse_reason(self) -> str | None:
        """ "revoked on D" or "expired on D" (the last day covered), whichever ended it first; None if neither."""
        lapsed = self.lapsed_on()
        if lapsed is None:
            return None
        if self.revoked_on and self.revoked_on == lapsed:
            return f"revoked on {self.revoked_on}"
        return f"expired on {self.expires_on}"


def consent_status(granted_on: str, expires_on: str | None, revoked_on: str | None, today: date) -> str:
    """live, pending, expired or revoked on `today`; a lapsed consent's status names what ended it first."""
    day = today.isoformat()
    after_expiry = (date.fromisoformat(expires_on) + timedelta(days=1)).isoformat() if expires_on else None
    if revoked_on and revoked_on <= day and (after_expiry is None or revoked_on <= after_expiry):
        return "revoked"
    if expires_on and expires_on < day:
        return "expired"
    if granted_on > day:
        return "pending"
    return "live"


def local_today(now: datetime | None = None) -> date:
    """Today in the local time zone (`now`, an aware time, stands for the clock)."""
    return (now or datetime.now(UTC)).astimezone().date()


def local_day(moment: str | None) -> str | None:
    """The local calendar day (YYYY-MM-DD) of an archived time (ISO 8601, UTC when it names no offset); None
    when there is none. A time that is not ISO keeps its first ten characters, as the views' date() would fail
    on it too."""
    if not moment:
        return None
    if len(moment) == 10:  # a day already, no time to move
        return moment
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return moment[:10]
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone().date().isoformat()
