"""A problem found by a read-only check: where it is, and what was expected and found."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    where: str
    message: str
    severity: str = "error"  # "note": expected after a crash (e.g. a torn WARC tail), not tampering

    def __str__(self) -> str:
        prefix = "note: " if self.severity == "note" else ""
        return f"{prefix}{self.where}: {self.message}"
