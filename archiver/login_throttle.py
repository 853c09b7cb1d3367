"""Failed sign-ins to the workspace, counted to slow down password guessing.

Counted per user name (guessing one person's password) and per client address (one password tried on many
names). An attempt counts as a failure from the moment it is let through, before its password is checked,
so that guesses sent all at once cannot slip past the count; a success takes it back and clears the name's
count. Past the limit within the window, sign-in is refused before any password is checked, until the
oldest counted failure leaves the window. The per-address limit is higher: behind a reverse proxy not named
with `archiver serve --trusted-proxy`, every client has the proxy's address, and one person's typos must not
lock out the rest. Kept in the server's memory: a restart forgets it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

USER_LIMIT = 5
CLIENT_LIMIT = 20
WINDOW_SECONDS = 15 * 60
MAX_KEYS = 10_000  # names and addresses remembered; past this the expired ones are dropped


class LoginThrottle:
    def __init__(
        self,
        user_limit: int = USER_LIMIT,
        client_limit: int = CLIENT_LIMIT,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.limits = {"user": user_limit, "client": client_limit}
        self.window = window
        self.clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _keys(self, client: str, user: str) -> list[tuple[str, str]]:
        return [("user", user.strip().lower()), ("client", client)]

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, client: str, user: str) -> float:
        """Seconds before this name may try again from this address; 0 when it may now."""
        now = self.clock()
        wait = 0.0
        for key in self._keys(client, user):
            times = self._recent(key, now)
            if len(times) >= self.limits[key[0]]:
                wait = max(wait, times[-self.limits[key[0]]] + self.window - now)
        return wait

    def attempt(self, client: str, user: str) -> None:
        """Count a sign-in let through (call after retry_after said 0), as a failure until it succeeds."""
        now = self.clock()
        if len(self._failures) >= MAX_KEYS:
            for key in list(self._failures):
                self._recent(key, now)
        for key in self._keys(client, user):
            times = self._failures.setdefault(key, deque(maxlen=self.limits[key[0]]))
            times.append(now)

    def succeeded(self, client: str, user: str) -> None:
        """The attempt counted for `user` from `client` signed in: forget the name's failures and this one."""
        self._failures.pop(("user", user.strip().lower()), None)
        times = self._failures.get(("client", client))
        if times:
            times.pop()
