"""The workspace's open sessions: a sign-in opens one, signing out closes it at once.

The session cookie is signed, so the server could tell a real one without keeping anything; but a signed
cookie stays good until it expires, and signing out only asks the browser to forget it. A copy taken before
(from a shared computer, a proxy's log) would go on reading PHI for the rest of the working day. So each
sign-in also gets a random id kept here, and a cookie is honoured only while its id is open. Kept in the
server's memory: a restart signs everyone out, which errs on the safe side.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable


class OpenSessions:
    def __init__(self, lifetime: float, clock: Callable[[], float] = time.time):
        self.lifetime = lifetime
        self.clock = clock
        self._open: dict[str, tuple[str, float]] = {}  # id -> (user name, when it expires)

    def open(self, name: str) -> str:
        """A new session for this person: its id, to carry in the signed cookie."""
        self._forget_expired()
        session = secrets.token_urlsafe(24)
        self._open[session] = (name, self.clock() + self.lifetime)
        return session

    def is_open(self, session: object, name: str) -> bool:
        """Whether a cookie's session id is one this server opened for this person and has not closed."""
        if not isinstance(session, str):
            return False
        found = self._open.get(session)
        return found is not None and found[0] == name and self.clock() <= found[1]

    def close(self, session: object) -> None:
        if isinstance(session, str):
            self._open.pop(session, None)

    def _forget_expired(self) -> None:
        now = self.clock()
        for session in [s for s, (_, expires) in self._open.items() if expires < now]:
            del self._open[session]
