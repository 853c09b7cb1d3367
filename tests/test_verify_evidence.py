"""Plain `archiver verify` holds each event to the WARC records its evidence names: a deletion's captured answer
(in the file named, a response, with the URL, HTTP status, quoted body and capture time the evidence states), the
listing it was absent from, a restoration's record, and a created or edited event's own version record. Each case
is an archive whose run wrote evidence no captured record backs (a connector or store bug)."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from archiver.connectors.mastodon import _MastodonRun
from archiver.demo.mastodon_server import SampleMastodonServer
from archiver.store import Store

from .test_run_wedges import TOKEN, clinic, config, run, verifies


@pytest.fixture
def server() -> Iterator[SampleMastodonServer]:
    with SampleMastodonServer(clinic(replies=6), TOKEN, rate_limit=1_000_000) as s:
        yield s


def archive_with_a_deletion(server: SampleMastodonServer, tmp_path: Path, patch: Callable[[], None] | None) -> Path:
    """Two runs; a reply deleted on the platform between them; `patch` in force for the second run."""
    cfg = config(tmp_path, server)
    assert run(cfg).exit_code == 0
    reply = next(s for s in server.state.statuses.values() if s.get("in_reply_to_id"))
    server.state.delete_status(reply["id"])
    if patch is not None:
        patch()
    assert run(cfg).exit_code == 0
    arch = cfg.parent / "arch"
    conn = sqlite3.connect(arch / "archive.db")
    assert conn.execute("SELECT count(*) FROM events WHERE event = 'deleted'").fetchone()[0] == 1
    conn.close()
    return arch


def evidence_changed(monkeypatch, change: Callable[[dict], None]) -> Callable[[], None]:  # noqa: ANN001
    def patch() -> None:
        real = _MastodonRun.lookup_evidence

        def lookup_evidence(self, exchange):  # noqa: ANN001, ANN202
            evidence = real(self, exchange)
            change(evidence)
            return evidence

        monkeypatch.setattr(_MastodonRun, "lookup_evidence", lookup_evidence)

    return patch


def test_deletion_evidence_as_captured_verifies(server, tmp_path):
    arch = archive_with_a_deletion(server, tmp_path, None)
    assert verifies(arch) == []


CHANGES: dict[str, tuple[Callable[[dict], None], str]] = {
    "another url": (lambda e: e.update(url=e["url"] + "0"), "URL expected http://"),
    "another status": (lambda e: e.update(http_status=410), "HTTP status expected 410, found 404"),
    "another body": (lambda e: e.update(response='{"error": "Gone"}'), "the response quoted is not the record's body"),
    "a record not there": (
        lambda e: e.update(warc_record_id="<urn:uuid:00000000-0000-0000-0000-000000000000>"),
        "names WARC record <urn:uuid:00000000-0000-0000-0000-000000000000> in archiver-",
    ),
    "another file": (lambda e: e.update(warc_file="elsewhere.warc.gz"), "names a record of WARC elsewhere.warc.gz"),
    "a listing never captured": (
        lambda e: e.update(listed_in={"url": "http://x/", "warc_record_id": "<urn:uuid:1>"}),
        "evidence listed_in names WARC record <urn:uuid:1>: in no WARC file",
    ),
}


@pytest.mark.parametrize("case", CHANGES, ids=str)
def test_deletion_evidence_no_record_backs_is_named(server, tmp_path, monkeypatch, case):
    change, expected = CHANGES[case]
    arch = archive_with_a_deletion(server, tmp_path, evidence_changed(monkeypatch, change))
    problems = [p for p in verifies(arch) if p != "WARC elsewhere.warc.gz: referenced but missing"]
    assert len(problems) == 1 and problems[0].startswith("events id=") and expected in problems[0], problems


def test_a_deletion_dated_otherwise_than_its_record_is_named(server, tmp_path, monkeypatch):
    def patch() -> None:
        real = Store.append_deletion

        def append_deletion(self, deletion, run_id):  # noqa: ANN001, ANN202
            source = dataclasses.replace(deletion.source, date="2026-01-01T00:00:00.000000Z")
            return real(self, dataclasses.replace(deletion, source=source), run_id)

        monkeypatch.setattr(Store, "append_deletion", append_deletion)

    arch = archive_with_a_deletion(server, tmp_path, patch)
    problems = verifies(arch)
    assert len(problems) == 1 and "observed_at 2026-01-01T00:00:00.000000Z, the record's date 20" in problems[0]


def test_a_created_event_naming_another_record_is_named(server, tmp_path, monkeypatch):
    real = Store._append_event

    def append_event(self, item_key, event, version_id, run_id, evidence, observed_at):  # noqa: ANN001, ANN202
        if event == "created" and version_id == 3:
            evidence = {**evidence, "warc_record_id": "<urn:uuid:2>"}
        return real(self, item_key, event, version_id, run_id, evidence, observed_at)

    monkeypatch.setattr(Store, "_append_event", append_event)
    cfg = config(tmp_path, server)
    assert run(cfg).exit_code == 0
    problems = verifies(cfg.parent / "arch")
    assert len(problems) == 1 and "evidence expected its version's WARC record <urn:uuid:" in problems[0], problems
