"""Score the detector on a labelled set: precision, recall, and recall per expected category.

A labelled row is JSON with `id`, `text`, `label` (true when it holds PHI), `categories` (the kinds of PHI
it holds, e.g. ["dob", "mrn"]) and optionally `kind` and `author`. An item counts as flagged when any rule
hits; a category counts as found when a flag of that category is among the hits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .engine import Detector

STRUCTURED = frozenset(
    {"phone", "email", "ssn", "mrn", "member-id", "account-number", "dob", "address", "ip", "url-id"}
)


@dataclass
class Scores:
    items: int = 0
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    expected: Counter[str] = field(default_factory=Counter)
    found: Counter[str] = field(default_factory=Counter)
    mistakes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def precision(self) -> float:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else 1.0

    @property
    def recall(self) -> float:
        positives = self.true_positives + self.false_negatives
        return self.true_positives / positives if positives else 1.0

    def category_recall(self, category: str) -> float:
        return self.found[category] / self.expected[category] if self.expected[category] else 1.0

    @property
    def structured_recall(self) -> float:
        expected = sum(self.expected[c] for c in STRUCTURED)
        return sum(self.found[c] for c in STRUCTURED) / expected if expected else 1.0

    def report(self) -> str:
        lines = [
            f"{self.items} items: precision {self.precision:.3f}, recall {self.recall:.3f}, "
            f"structured identifiers recall {self.structured_recall:.3f} "
            f"(TP {self.true_positives}, FP {self.false_positives}, FN {self.false_negatives})"
        ]
        for category in sorted(self.expected):
            lines.append(
                f"  {category:<18} recall {self.category_recall(category):.3f} "
                f"({self.found[category]}/{self.expected[category]})"
            )
        return "\n".join(lines)


def evaluate(detector: Detector, rows: Iterable[dict[str, Any]]) -> Scores:
    scores = Scores()
    for row in rows:
        scores.items += 1
        hits = detector.detect(row["text"], row.get("kind"), row.get("author"))
        found = {h.category for h in hits}
        if row["label"] and hits:
            scores.true_positives += 1
        elif row["label"]:
            scores.false_negatives += 1
        elif hits:
            scores.false_positives += 1
        for category in row.get("categories", []):
            scores.expected[category] += 1
            if category in found:
                scores.found[category] += 1
        missed = [c for c in row.get("categories", []) if c not in found]
        if bool(hits) != bool(row["label"]) or missed:
            scores.mistakes.append(
                {"id": row["id"], "text": row["text"], "expected": row.get("categories", []), "found": sorted(found)}
            )
    return scores
