"""Events held to the WARC records their evidence names: part of `archiver verify`.

A created or edited event names its version's record (checked in the database: the version's own row is held to
the record by the WARC check). A deletion names the captured answer that proves it, and often the complete
listing it was absent from; a restoration names the response it was seen in again. Each such record must be in
the WARC file named, be a response, and say what the evidence quotes of it: its URL, HTTP status, the start of
its body and, for a deletion, its capture time (the date of the deletion). `verify --replay` goes further and
derives the events again; this check is one pass over what the WARC check reads anyway.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from warcio.statusandheaders import StatusAndHeaders

from .problems import Problem

# As the connectors quote a captured answer: its first 500 bytes, decoded (connectors/*.py lookup_evidence).
QUOTED_BYTES = 500
# Evidence keys that hold an object of the answer as it came (x.py's "error", bluesky.py's "message").
QUOTED_OBJECTS = ("error", "message")


@dataclass(frozen=True)
class NamedRecord:
    """What an event's evidence says of one WARC record."""

    place: str  # "events id=N" (a bundle's: "data/events.jsonl id=N")
    field: str  # where in the evidence: "warc_record_id", "observed_in", "absent_from"
    url: str | None = None
    status: int | None = None
    response: str | None = None
    captured_at: str | None = None  # the event's observed_at, when it is the record's capture time
    quoted: tuple[dict, ...] = ()  # objects of the answer the evidence quotes whole (X's error, Bluesky's message)


def _named(place: str, event: str, observed_at: str, evidence: Any) -> Iterator[tuple[str | None, str, NamedRecord]]:
    """(WARC file or None for any, record id, what is said of it) for each record the evidence names."""
    if not isinstance(evidence, dict):
        return
    file = evidence.get("warc_file")
    record_id = evidence.get("warc_record_id")
    if event == "deleted" and isinstance(record_id, str):
        status = evidence.get("http_status")
        yield (
            file,
            record_id,
            NamedRecord(
                place,
                "warc_record_id",
                evidence.get("url"),
                status if isinstance(status, int) else None,
                evidence.get("response") if isinstance(evidence.get("response"), str) else None,
                observed_at,
                tuple(evidence[k] for k in QUOTED_OBJECTS if isinstance(evidence.get(k), dict)),
            ),
        )
    observed_in = evidence.get("observed_in")
    if event == "restored" and isinstance(observed_in, str):
        yield file, observed_in, NamedRecord(place, "observed_in")
    for key, value in sorted(evidence.items()):  # the listing it was absent from, the thread root gone with it
        if isinstance(value, dict) and isinstance(value.get("warc_record_id"), str):
            yield None, value["warc_record_id"], NamedRecord(place, key, value.get("url"))


class EvidenceRecords:
    """The records the deletions' and restorations' evidence names (a few per run: loaded whole), checked as the
    WARC check reads each file, and those never met reported at the end."""

    def __init__(self, events: Iterable[tuple[Any, str, str, str]], place: str = "events"):
        """`events`: (id, event, observed_at, evidence JSON text) of the deletions and restorations; `place`
        names where their rows are (the table, or a bundle's file)."""
        self.in_file: dict[str, dict[str, list[NamedRecord]]] = {}
        self.anywhere: dict[str, list[NamedRecord]] = {}
        self.malformed: list[Problem] = []
        for event_id, event, observed_at, text in events:
            try:
                evidence = json.loads(text)
            except (TypeError, ValueError):
                self.malformed.append(Problem(f"{place} id={event_id}", "evidence is not JSON"))
                continue
            for file, record_id, named in _named(f"{place} id={event_id}", event, observed_at, evidence):
                if file is None:
                    self.anywhere.setdefault(record_id, []).append(named)
                else:
                    self.in_file.setdefault(file, {}).setdefault(record_id, []).append(named)

    @classmethod
    def of_archive(cls, conn: sqlite3.Connection) -> EvidenceRecords:
        return cls(
            conn.execute(
                "SELECT id, event, observed_at, evidence FROM events WHERE event NOT IN ('created', 'edited') "
                "ORDER BY id"
            )
        )

    def names(self, file: str, record_id: str) -> bool:
        """Whether any evidence names this record of `file` (whose block check_record then needs whole)."""
        return record_id in self.in_file.get(file, {}) or record_id in self.anywhere

    def check_record(self, file: str, record_id: str, headers: StatusAndHeaders, block: bytes) -> Iterator[Problem]:
        """Hold a record of `file` to what the evidence says of it (most records are named by none)."""
        named = self.in_file.get(file, {}).pop(record_id, []) + self.anywhere.pop(record_id, [])
        if not named:
            return
        head, _, body = block.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].split()
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else None
        uri = headers.get_header("WARC-Target-URI")
        for said in named:
            where = f"WARC record {record_id} in {file} (evidence {said.field})"
            if headers.get_header("WARC-Type") != "response":
                yield Problem(said.place, f"{where}: a {headers.get_header('WARC-Type')} record, not a response")
                continue
            if said.url is not None and said.url != uri:
                yield Problem(said.place, f"{where}: URL expected {said.url}, found {uri}")
            if said.status is not None and said.status != status:
                yield Problem(said.place, f"{where}: HTTP status expected {said.status}, found {status}")
            if said.response is not None and said.response != body[:QUOTED_BYTES].decode("utf-8", "replace"):
                yield Problem(said.place, f"{where}: the response quoted is not the record's body")
            if said.quoted and not all(_holds(body, obj) for obj in said.quoted):
                yield Problem(said.place, f"{where}: an object the evidence quotes is not in the record's body")
            date = headers.get_header("WARC-Date")
            if said.captured_at is not None and said.captured_at != date:
                yield Problem(said.place, f"{where}: observed_at {said.captured_at}, the record's date {date}")

    def never_met(self, files_read: set[str]) -> Iterator[Problem]:
        """The records named and not found: in the file named (when that file was read: a missing file is its
        own problem), or in any file."""
        for file, records in sorted(self.in_file.items()):
            for record_id, named in records.items():
                for said in named:
                    if file in files_read:
                        found = f"names WARC record {record_id} in {file}: not there"
                    else:
                        found = f"names a record of WARC {file}, not read"
                    yield Problem(said.place, f"evidence {said.field} {found}")
        for record_id, named in sorted(self.anywhere.items()):
            for said in named:
                yield Problem(said.place, f"evidence {said.field} names WARC record {record_id}: in no WARC file")


def _holds(body: bytes, quoted: dict) -> bool:
    """Whether the JSON body holds `quoted` as one of its objects."""
    try:
        stack = [json.loads(body)]
    except ValueError:
        return False
    while stack:
        node = stack.pop()
        if node == quoted:
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def versions_named(conn: sqlite3.Connection) -> Iterator[Problem]:
    """A created or edited event names its version's own record, in its version's file."""
    rows = conn.execute(
        "SELECT e.id, e.evidence, v.warc_record_id, v.warc_file "
        "FROM events e JOIN item_versions v ON v.id = e.version_id "
        "WHERE e.event IN ('created', 'edited') AND (NOT json_valid(e.evidence) "
        "OR json_extract(e.evidence, '$.warc_record_id') IS NOT v.warc_record_id "
        "OR json_extract(e.evidence, '$.warc_file') IS NOT v.warc_file) ORDER BY e.id"
    )
    for event_id, evidence, record_id, file in rows:
        yield Problem(
            f"events id={event_id}",
            f"evidence expected its version's WARC record {record_id} in {file}, found {evidence[:200]}",
        )
