"""The consent check keeps whether each version looks like patient content (consent_signals, migration 0020) and
reads again only what it has no answer for under its signals' version: a night with nothing new runs the detector
over nothing, and gives the flags and counts a check reading everything gives."""

from __future__ import annotations

import logging
import sqlite3
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import spacy

from archiver.config import load_config
from archiver.consent.check import (
    ConsentCheckOutcome,
    append_consent_check,
    build_signal_detector,
    find_consent_flags,
)
from archiver.store import Store

from .test_config import DISABLED
from .test_consent_check import DAY0, SHA, STORY, ConsentClinic, use_rule_file
from .test_consent_check import OURS as HERO_RULES
from .test_store import make_item


class Counting:
    """The check's detector, counting the texts it reads; under another version label when given one."""

    def __init__(self, detector: Any, version: str | None = None, finds: bool = True):
        self.detector = detector
        self.version = version or detector.version
        self.finds = finds
        self.texts: list[str] = []

    def detect(self, text: str | None, kind: str | None = None, author: str | None = None, *, own: bool | None = None):
        self.texts.append(text or "")
        return self.detector.detect(text, kind, author, own=own) if self.finds else []


@pytest.fixture
def clinic(tmp_path, monkeypatch):
    c = ConsentClinic(tmp_path, monkeypatch)
    yield c
    c.server.stop()


def detector_of(c: ConsentClinic) -> Any:
    return build_signal_detector(load_config(c.config))


def open_store(c: ConsentClinic) -> Store:
    return Store.open(c.tmp_path / "arch" / "archive.db")


def kept(c: ConsentClinic) -> list[tuple]:
    conn = c.db()
    rows = conn.execute(
        "SELECT check_id, version_id, rules_version, patient_content FROM consent_signals ORDER BY id"
    ).fetchall()
    conn.close()
    return [tuple(r) for r in rows]


def both_ways(c: ConsentClinic, day: date) -> tuple[Counting, ConsentCheckOutcome, list[dict]]:
    """What the check finds on `day` with the answers kept (counting the detector's reads), asserted equal to what
    a check that keeps nothing (the same rules under another label) finds."""
    store = open_store(c)
    try:
        counting = Counting(detector_of(c))
        outcome, rows, judged = find_consent_flags(store.conn, counting, day)
        fresh = Counting(detector_of(c), version="read everything")
        outcome_fresh, rows_fresh, judged_fresh = find_consent_flags(store.conn, fresh, day)
    finally:
        store.close()
    assert (outcome, rows) == (outcome_fresh, rows_fresh)
    assert len(list(judged_fresh)) == outcome.posts_checked  # the other label has no answer kept: it read them all
    assert [v for v, _ in judged] == sorted(v for v, _ in judged)
    return counting, outcome, rows


def check_counting(c: ConsentClinic, day: date) -> tuple[Counting, ConsentCheckOutcome]:
    store = open_store(c)
    try:
        counting = Counting(detector_of(c))
        return counting, append_consent_check(store, counting, day)
    finally:
        store.close()


def test_a_second_check_over_unchanged_posts_reads_no_text_and_finds_the_same(clinic):
    c = clinic
    c.run_on(DAY0)  # the run's check reads every own post and keeps its answers
    version = detector_of(c).version
    answers = kept(c)
    assert (
        sorted((check, rules, patient) for check, _, rules, patient in answers)
        == [(1, version, 0)] * 4 + [(1, version, 1)] * 5
    )
    conn = c.db()
    assert [tuple(r) for r in conn.execute("SELECT posts_checked, patient_posts FROM consent_checks")] == [(9, 5)]
    conn.close()

    counting, outcome, rows = both_ways(c, DAY0)
    assert counting.texts == [] and rows == [] and (outcome.posts_checked, outcome.patient_posts) == (9, 5)
    counting, outcome = check_counting(c, DAY0)
    assert counting.texts == []
    assert (outcome.posts_checked, outcome.patient_posts, outcome.flags) == (9, 5, [])
    assert kept(c) == answers  # nothing read, nothing new kept

    # A new post is read, alone, the next night; its answer is kept with that night's check.
    c.state.add_status(c.clinic_id, "Meet our patient Rosa, home after her hip replacement.")
    c.run_on(DAY0 + timedelta(days=1))
    new = kept(c)[len(answers) :]
    assert [(check, rules, patient) for check, _, rules, patient in new] == [(3, version, 1)]
    counting, outcome, rows = both_ways(c, DAY0 + timedelta(days=1))
    assert counting.texts == [] and rows == [] and (outcome.posts_checked, outcome.patient_posts) == (10, 6)
    assert c.cli("verify").exit_code == 0


def test_other_signals_read_every_post_again(clinic):
    c = clinic
    c.run_on(DAY0)
    first = detector_of(c).version
    use_rule_file(c, HERO_RULES)  # the organisation adds a rule file: a new signals version
    second = detector_of(c).version
    assert second != first
    counting, outcome = check_counting(c, DAY0)
    assert len(counting.texts) == 11  # nine posts' texts and two alt texts
    assert (outcome.posts_checked, outcome.patient_posts) == (9, 5)
    assert [(check, rules) for check, _, rules, _ in kept(c)[9:]] == [(2, second)] * 9
    counting, _ = check_counting(c, DAY0)
    assert counting.texts == []
    # so does a change to the [scan] allow-lists (a staff name is never a patient)
    c.config.write_text(c.config.read_text().replace('staff = ["', 'staff = ["Omar Haddad", "'), "utf-8")
    assert detector_of(c).version not in (first, second)
    counting, _ = check_counting(c, DAY0)
    assert len(counting.texts) == 11


def test_a_kept_patient_post_whose_consent_lapses_or_turns_out_pending_is_flagged_as_a_fresh_reading_would(clinic):
    c = clinic
    d = DAY0
    granted = d - timedelta(days=40)
    c.import_csv(
        "register.csv",
        f"C-REV,PT-1002,clinic,testimonial,{granted},,,{SHA}\nC-STORY,PT-1001,clinic,story,{granted},,,{SHA}\n",
    )
    night1 = d - timedelta(days=8)
    c.run_on(night1)  # every patient post flagged as without consent, every answer kept
    for consent, name in (("C-REV", "testimonial"), ("C-STORY", "story")):
        assert c.cli("consent", "link", consent, c.key(name)).exit_code == 0
    # The story is edited after its consent was linked: the new version is read while a consent is on file.
    c.state.edit_status(c.ids["story"], STORY + " She thanks the whole team.")
    c.run_on(night1 + timedelta(days=1))
    conn = c.db()
    story_v2 = conn.execute("SELECT max(id) FROM item_versions WHERE item_key = ?", (c.key("story"),)).fetchone()[0]
    assert (
        conn.execute(
            "SELECT count(*) FROM flags WHERE version_id = ? AND rule_id = 'consent.missing'", (story_v2,)
        ).fetchone()[0]
        == 0
    )
    conn.close()
    assert (story_v2, 1) in [(version, patient) for _, version, _, patient in kept(c)]

    # C-REV is revoked: the lapse flag needs no reading.
    revoked_on = night1 + timedelta(days=2)
    c.import_csv("revocation.csv", f"C-REV,PT-1002,clinic,testimonial,{granted},,{revoked_on},{SHA}\n")
    counting, outcome, rows = both_ways(c, revoked_on)
    assert counting.texts == []
    assert [(r["item_key"], r["rule_id"], r["matched"]) for r in rows] == [
        (c.key("testimonial"), "consent.lapsed", "C-REV")
    ]
    assert rows[0]["reason"].startswith(
        f"consent lapsed, content still published: consent C-REV revoked on {revoked_on}"
    )

    # C-STORY's grant is corrected to a later day: nothing is on file for the story's new version, which no flag
    # names yet, so it is read again (it alone) for the flag's span and reasons.
    later = d + timedelta(days=10)
    c.import_csv("correction.csv", f"C-STORY,PT-1001,clinic,story,{later},,,{SHA}\n")
    counting, outcome, rows = both_ways(c, revoked_on)
    assert counting.texts == [STORY + " She thanks the whole team."]
    missing = [r for r in rows if r["rule_id"] == "consent.missing"]
    assert [(r["version_id"], r["matched"], r["span_start"], r["span_end"]) for r in missing] == [
        (story_v2, "Meet our patient", 0, len("Meet our patient"))
    ]
    assert missing[0]["reason"].endswith(f"; consent C-STORY is granted only from {later}")
    counting, outcome = check_counting(c, revoked_on)
    assert sorted(f["rule_id"] for f in outcome.flags) == ["consent.lapsed", "consent.missing"]
    assert len(counting.texts) == 1


def test_an_answer_kept_that_the_detector_no_longer_gives_is_not_flagged(tmp_path, caplog):
    """The signals' version covers everything that decides (rules, engine, allow-lists, spaCy model); should a
    detector still answer otherwise under the same version, today's reading holds and the log says so."""
    store = Store.open(tmp_path / "a.db")
    store.append_run("run1", "host", "0" * 64, ["a"])
    with store.transaction():
        store.append_item("a", make_item(STORY), "run1")
        store._insert(
            "consent_checks",
            {
                "id": 1,
                "run_id": None,
                "rules_version": "v1",
                "checked_on": "2026-11-01",
                "posts_checked": 1,
                "patient_posts": 1,
                "flags_added": 0,
                "started_at": "2026-11-01T00:00:00Z",
                "finished_at": "2026-11-01T00:00:00Z",
            },
        )
        store._insert("consent_signals", {"check_id": 1, "version_id": 1, "rules_version": "v1", "patient_content": 1})
    blind = Counting(build_signal_detector(None), version="v1", finds=False)
    with caplog.at_level(logging.WARNING, logger="archiver.consent"):
        _, rows, judged = find_consent_flags(store.conn, blind, DAY0)
    assert rows == [] and list(judged) == [] and blind.texts == [STORY]
    assert "version 1: the signals no longer find the patient content kept for it" in caplog.text
    seeing = Counting(build_signal_detector(None), version="v1")
    _, rows, _ = find_consent_flags(store.conn, seeing, DAY0)
    assert [r["rule_id"] for r in rows] == ["consent.missing"]
    store.close()


def test_a_check_that_fails_keeps_no_answer(clinic):
    c = clinic
    c.run_on(DAY0)
    use_rule_file(c, HERO_RULES)
    store = open_store(c)

    class Failing(Counting):
        def detect(self, text, kind=None, author=None, *, own=None):  # noqa: ANN001, ANN201
            if len(self.texts) == 5:
                raise RuntimeError("a detector bug")
            return super().detect(text, kind, author, own=own)

    try:
        with pytest.raises(RuntimeError):
            append_consent_check(store, Failing(detector_of(c)), DAY0)
    finally:
        store.close()
    assert len(kept(c)) == 9  # the run's answers only
    conn = c.db()
    assert conn.execute("SELECT count(*) FROM consent_checks").fetchone()[0] == 1
    conn.close()


def test_the_answers_are_append_only_and_ledgered(clinic):
    c = clinic
    c.run_on(DAY0)
    conn = sqlite3.connect(c.tmp_path / "arch" / "archive.db")
    for statement in ("UPDATE consent_signals SET patient_content = 0", "DELETE FROM consent_signals WHERE id = 1"):
        with pytest.raises(sqlite3.IntegrityError, match="consent_signals is append-only"):
            conn.execute(statement)
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM ledger WHERE table_name = 'consent_signals'").fetchone()[0] == len(
        kept(c)
    )
    assert c.cli("verify").exit_code == 0
    # A patient post's answer removed behind the triggers: verify names it (and the next check would read it again).
    conn.execute("DROP TRIGGER consent_signals_append_only_delete")
    conn.execute("DELETE FROM consent_signals WHERE id = 1")
    conn.commit()
    conn.close()
    result = c.cli("verify")
    assert result.exit_code != 0
    assert "consent_signals id=1: row entered at ledger seq" in result.output


def test_a_post_s_answer_is_found_by_index(tmp_path):
    store = Store.open(tmp_path / "archive.db")
    steps = [
        row[3]
        for row in store.conn.execute(
            "EXPLAIN QUERY PLAN SELECT s.patient_content FROM consent_signals s "
            "WHERE s.version_id = ? AND s.rules_version = ? LIMIT 1",
            (1, "v"),
        )
    ]
    assert steps == ["SEARCH s USING COVERING INDEX consent_signals_by_version (version_id=? AND rules_version=?)"]
    store.close()


def names_model(folder: Path, names: list[str]) -> Path:
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": [{"LOWER": name}]} for name in names])
    nlp.to_disk(folder)
    return folder


def test_the_spacy_model_is_part_of_the_signals_version(tmp_path):
    """It finds names the rules do not know (a named person and a treatment is patient content), and nothing
    else in the detector's version names it: another model, or the same folder retrained, is read again."""
    model = names_model(tmp_path / "names", ["zebulon"])
    path = tmp_path / "archiver.toml"

    def version(line: str) -> str:
        path.write_text(f'[archive]\ndir = "arch"\n{DISABLED}[scan]\n{line}\n')
        return build_signal_detector(load_config(path)).version

    without, with_model = version(""), version(f'spacy_model = "{model}"')
    assert without != with_model and with_model == version(f'spacy_model = "{model}"')
    names_model(model, ["zebulon", "thaddeus"])  # retrained in place
    assert version(f'spacy_model = "{model}"') not in (without, with_model)


def test_an_archive_held_at_an_older_schema_is_checked_whole_and_keeps_nothing(tmp_path, monkeypatch):
    """As a run of the software before migration 0020 left it (a run applies the migrations first; only a test holds
    an archive back): the check still reads every post and flags, with nowhere to keep its answers."""
    import archiver.store

    before = archiver.store.load_migrations()[:19]
    monkeypatch.setattr(archiver.store, "load_migrations", lambda: before)
    store = Store.open(tmp_path / "a.db")
    store.append_run("run1", "host", "0" * 64, ["a"])
    with store.transaction():
        store.append_item("a", make_item(STORY), "run1")
    counting = Counting(build_signal_detector(None))
    outcome = append_consent_check(store, counting, DAY0)
    assert counting.texts == [STORY] and [f["rule_id"] for f in outcome.flags] == ["consent.missing"]
    assert store.conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'consent_signals'").fetchone()[0] == 0
    store.close()
