"""The workspace's open sessions: a sign-in opens one, signing out closes it at once.

The session cookie is signed, so the server could tell a real one without keeping anything; but a signed
cookie stays good until it expires, and signing out only asks the browser to forget it. A copy taken before
(from a shared computer, a proxy's log) would go on reading PHI for the rest of the working day. So each
sign-in also gets a random id kept here, and a cookie is honoured only while its id is open. Kept in the
server's memory: a restart signs everyone out, which errs on the safe side.

A session also belongs to the person's record as it was when they signed in (its fingerprint: see
`User.fingerprint`), not only to their name: a password reset, or removing the person and adding them again,
ends every session opened before, and a copy of an old cookie does not come back to life with the name.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable


class OpenSessions:
    def __init__(self, lifetime: float, clock: Callable[[], float] = time.time):
        self.lifetime = lifetime
        self.clock = clock
        self._open: dict[str, tuple[str, str, float]] = {}  # id -> (user name, record's fingerprint, expiry)

    def open(self, name: str, fingerprint: str) -> str:
        """A new session for this person, as their record's fingerprint is now: its id, for the signed cookie."""
        self._forget_expired()
        session = secrets.token_urlsafe(24)
        self._open[session] = (name, fingerprint, self.clock() + self.lifetime)
        return session

    def is_open(self, session: object, name: str, fingerprint: str | None) -> bool:
        """Whether a cookie's session id is one this server opened for this person and has not closed, and the
        person's record (fingerprint None: they have none now) is still the one it was opened for. A session
        whose record has changed or gone is closed for good: the record coming back does not reopen it."""
        if not isinstance(session, str):
            return False
        found = self._open.get(session)
        if found is None or found[0] != name:
            return False
        if found[1] != fingerprint or self.clock() > found[2]:
            del self._open[session]
            return False
        return True

    def close(self, session: object) -> None:
        if isinstance(session, str):
            self._open.pop(session, None)

    def _forget_expired(self) -> None:
        now = self.clock()
        for session in [s for s, (_, _, expires) in self._open.items() if expires < now]:
            del self._open[session]
