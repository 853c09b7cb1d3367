"""A problem found by a read-only check: where it is, and what was expected and found."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

LISTED = 100  # problems of one kind named one by one; the rest are counted


@dataclass(frozen=True)
class Problem:
    where: str
    message: str
    severity: str = "error"  # "note": expected after a crash (e.g. a torn WARC tail), not tampering

    def __str__(self) -> str:
        prefix = "note: " if self.severity == "note" else ""
        return f"{prefix}{self.where}: {self.message}"


def listed(rows: Iterable[Any], problem: Callable[[Any], Problem], kind: str, where: str) -> Iterator[Problem]:
    """A problem for each of the first LISTED rows, then one that counts the rest: a tampered table can hold a
    million, and a report that stops at a hundred without saying so reads as if that were all."""
    more = 0
    for n, row in enumerate(rows):
        if n < LISTED:
            yield problem(row)
        else:
            more += 1
    if more:
        yield Problem(where, f"and {more} more {kind}")
