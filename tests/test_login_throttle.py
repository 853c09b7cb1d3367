"""Failed sign-ins are counted per user name and per client address; past the limit, sign-in waits."""

from __future__ import annotations

from archiver.login_throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_name_is_refused_after_its_failures_until_the_oldest_leaves_the_window():
    clock = Clock()
    throttle = LoginThrottle(user_limit=3, client_limit=100, window=600, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("10.0.0.1", "ann") == 0
        throttle.attempt("10.0.0.1", "ann")
        clock.now += 10
    # From any address, and whatever the case of the name.
    assert throttle.retry_after("10.0.0.9", "Ann") == 600 - 30
    assert throttle.retry_after("10.0.0.1", "ivan") == 0  # other people are not held up
    clock.now = 1000 + 600  # the first failure has left the window: one more try
    assert throttle.retry_after("10.0.0.1", "ann") == 0
    throttle.attempt("10.0.0.1", "ann")
    assert throttle.retry_after("10.0.0.1", "ann") == 10


def test_an_address_trying_many_names_is_refused():
    clock = Clock()
    throttle = LoginThrottle(user_limit=3, client_limit=4, window=600, clock=clock)
    for name in ("a", "b", "c", "d"):
        throttle.attempt("10.0.0.2", name)
    assert throttle.retry_after("10.0.0.2", "e") == 600
    assert throttle.retry_after("10.0.0.3", "e") == 0


def test_a_success_clears_that_name_and_takes_back_its_attempt():
    clock = Clock()
    throttle = LoginThrottle(user_limit=2, client_limit=3, window=600, clock=clock)
    throttle.attempt("10.0.0.1", "ann")
    throttle.attempt("10.0.0.1", "ivan")
    throttle.attempt("10.0.0.1", "ann")
    throttle.succeeded("10.0.0.1", "ann")
    assert throttle.retry_after("10.0.0.1", "ann") == 0
    throttle.attempt("10.0.0.1", "ivan")
    assert throttle.retry_after("10.0.0.1", "ivan") > 0
    # Signing in often from one address (everyone behind one proxy) never adds up to a refusal.
    for _ in range(10):
        assert throttle.retry_after("10.0.0.2", "dana") == 0
        throttle.attempt("10.0.0.2", "dana")
        throttle.succeeded("10.0.0.2", "dana")


def test_memory_stays_bounded_by_forgetting_expired_failures(monkeypatch):
    from archiver import login_throttle

    monkeypatch.setattr(login_throttle, "MAX_KEYS", 50)
    clock = Clock()
    throttle = LoginThrottle(window=60, clock=clock)
    for n in range(1000):
        throttle.attempt(f"10.0.{n // 250}.{n % 250}", f"user{n}")
        clock.now += 1
    assert len(throttle._failures) <= 2 * 60 + 50
