"""The consent check: what the organisation itself published, still up, against the consent register.

It reads the latest version of every post, reply and comment the organisation's own accounts wrote (own.py)
that is not proven deleted. Four flags, all rows of the `flags` table (category "consent") so they reach the
same review queue as the PHI flags:

- "patient content without consent on file" (rule consent.missing): an own post or reply that looks like a
  patient story, testimonial or patient photo (the patient-* rules of the rule files, over the text and the
  attachments' alt text) and has no consent linked that is live today;
- "consent lapsed, content still published" (rule consent.lapsed): an own post or reply linked to a consent
  that has expired or been revoked, while it is still published (no proven deletion) and the same patient has
  no live consent for what the lapsed one covered (the whole item, or the attachment it was linked to).
  Another patient's consent never covers it. Its reason carries the dates.
- "patient content published before its consent was granted" (rule consent.late): an own post or reply with
  a consent on file (live or lapsed), published on a day before every consent of one of its patients linked
  to it was first granted (`matched`: that patient's earliest). The post was public for those days without
  that patient's consent: a disclosure the privacy office must assess, whatever happened since, so the flag
  stays in the queue until reviewed, even if the post is taken down, unless a consent of the same patient
  granted in time is linked.
- "edited after its consent was linked" (rule consent.edited, severity medium): an own post or reply with a
  consent on file, edited (a real edit, not a `not_an_edit` version) after the newest link of a patient's
  consent to the whole post was made (`matched`: that consent). A consent covers what the patient agreed to;
  an edit may add to it (another patient, a detail), so a person compares the two. A new link of the same
  patient's consent to the whole post, made since, says they did.

A flag is appended once: consent.missing once per item version, consent.lapsed once per item, consent and
lapse (a renewed consent that lapses again is a new lapse), consent.late once per item and patient,
consent.edited once per version and patient. A flag stays in the archive for ever; the review queue shows it
while its condition holds, a lapse flag only while its own lapse does (see flag_status).

Whether a version looks like patient content depends only on its text and alt texts, which never change, and on
the signals' version (rules, engine, allow-lists, this module's SIGNALS_REVISION, any spaCy model): each check
appends its answer for every version it read to `consent_signals` (migration 0020) and reads again only the
versions with no answer under its own version, so a night costs what is new, not the whole archive.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from ..config import Config
from ..errors import ArchiverError
from ..flag_states import record_flag_states
from ..scan.archive import detector_for
from ..scan.engine import Detector
from ..scan.rules import is_signal
from ..store import Store, schema_has
from ..warc import iso, utcnow
from .own import DELETED, OWN_ITEM
from .register import current_consents
from .state import ConsentState, local_day

log = logging.getLogger("archiver.consent")

CATEGORY = "consent"
MISSING_RULE = "consent.missing"
LAPSED_RULE = "consent.lapsed"
LATE_RULE = "consent.late"
EDITED_RULE = "consent.edited"
MISSING_REASON = "patient content without consent on file"
LAPSED_REASON = "consent lapsed, content still published"
LATE_REASON = "patient content published before its consent was granted"
EDITED_REASON = "edited after its consent was linked"
SIGNAL_RULE_FILES = ("lexicons.yml", "consent.yml")  # the built-in files the check loads (then [scan] rule_files)
# What this module does with the detector's hits (patient_content: which texts it reads, with which kind, author and
# `own`, which hits it keeps) is part of the signals' version, next to the detector's: bump it with any change that
# can change whether a version looks like patient content, so the answers kept in consent_signals are read again.
SIGNALS_REVISION = 1


class Signal(Protocol):
    """One hit of a patient-content rule (the PHI engine's Hit has this shape)."""

    rule_id: str
    category: str
    severity: str
    start: int
    end: int
    matched: str
    reason: str


class SignalDetector(Protocol):
    version: str

    def detect(
        self, text: str | None, kind: str | None = None, author: str | None = None, *, own: bool | None = None
    ) -> list[Any]: ...


@dataclass(frozen=True)
class OwnPost:
    """The latest version of an item the organisation published: a post, or one of its own replies."""

    item_key: str
    version_id: int
    platform: str
    account: str
    created_at: str | None
    text: str
    media: tuple[dict[str, Any], ...]
    author_handle: str | None
    kind: str = "post"  # or "comment": a reply of the organisation's
    known: bool | None = None  # whether an earlier check found patient content under the same signals; None: unread


@dataclass(frozen=True)
class PatientContent:
    """Why a post looks like patient content: the first signal (for the flag's span) and every reason."""

    first: Signal
    in_alt_text: bool
    reasons: tuple[str, ...]


@dataclass
class ConsentCheckOutcome:
    posts_checked: int = 0
    patient_posts: int = 0
    flags: list[dict[str, Any]] = field(default_factory=list)  # the flags appended, as stored
    open_flags: int = 0  # consent flags in the review queue after the check (new or older, undecided)
    notices: list[str] = field(default_factory=list)  # what the alert channels answered

    def summary(self) -> str:
        def count(rule: str) -> int:
            return sum(1 for f in self.flags if f["rule_id"] == rule)

        later = [(count(LATE_RULE), "published before consent"), (count(EDITED_RULE), "edited after consent")]
        return (
            f"consent check: {self.posts_checked} own posts and replies, "
            f"{self.patient_posts} look like patient content; "
            f"{len(self.flags)} new flags ({count(MISSING_RULE)} without consent, {count(LAPSED_RULE)} consent "
            f"lapsed{''.join(f', {n} {what}' for n, what in later if n)}); "
            f"{self.open_flags} consent flags open in the review queue"
        )


def own_live_posts(conn: sqlite3.Connection, signals_version: str | None) -> Iterator[OwnPost]:
    """The latest version of every post and reply the organisation's accounts published (own.py) that is not
    proven deleted, one at a time: at a million versions a hospital's own posts are a hundred thousand or more,
    and the check holds only its flags. Each carries the answer kept for it under `signals_version` (`known`),
    found by index as it is read; None: an archive held at a schema before migration 0020 keeps none."""
    known = (
        "(SELECT s.patient_content FROM consent_signals s WHERE s.version_id = v.id AND s.rules_version = ? LIMIT 1)"
        if signals_version is not None
        else "?"
    )
    rows = conn.execute(
        f"""
        SELECT v.item_key, v.id, v.platform, v.account, v.created_at, v.text, v.media, v.author_handle, v.kind,
               {known}
        FROM item_versions v
        WHERE {OWN_ITEM}
          AND v.id = (SELECT max(l.id) FROM item_versions l WHERE l.item_key = v.item_key)
          AND NOT {DELETED}
        ORDER BY v.id
        """,
        (signals_version,),
    )
    for r in rows:
        known = None if r[9] is None else bool(r[9])
        yield OwnPost(r[0], r[1], r[2], r[3], r[4], r[5] or "", tuple(json.loads(r[6] or "[]")), r[7], r[8], known)


def patient_content(detector: SignalDetector, post: OwnPost) -> PatientContent | None:
    """Signals in the post's text, then in each attachment's alt text; None when there is none."""
    found: list[tuple[Signal, bool, str]] = []
    # own=True: the organisation wrote it, whatever its handle (a Facebook Page's replies have none)
    for hit in detector.detect(post.text, post.kind, post.author_handle, own=True):
        if is_signal(hit.category):
            found.append((hit, False, hit.reason))
    for number, media in enumerate(post.media, start=1):
        for hit in detector.detect(media.get("description") or "", post.kind, post.author_handle, own=True):
            if is_signal(hit.category):
                found.append((hit, True, f"{hit.reason} (alt text of attachment {number})"))
    if not found:
        return None
    reasons = tuple(dict.fromkeys(reason for _, _, reason in found))
    first, in_alt, _ = found[0]
    return PatientContent(first, in_alt, reasons)


@dataclass
class Judged:
    """The versions a check read with the detector, and its answers, in the order read: 9 bytes a version, as the
    first check of a large archive reads every own post (137,507 at a million versions)."""

    version_ids: array[int] = field(default_factory=lambda: array("q"))
    patient: bytearray = field(default_factory=bytearray)

    def add(self, version_id: int, patient: bool) -> None:
        self.version_ids.append(version_id)
        self.patient.append(patient)

    def __iter__(self) -> Iterator[tuple[int, bool]]:
        return ((version_id, bool(patient)) for version_id, patient in zip(self.version_ids, self.patient, strict=True))


def judge(detector: SignalDetector, post: OwnPost, judged: Judged) -> tuple[bool, PatientContent | None]:
    """Whether the post looks like patient content: the answer kept for it under the detector's version, or the
    detector's (noted in `judged`, to be kept). The content, with its spans and reasons, only when read now."""
    if post.known is not None:
        return post.known, None
    content = patient_content(detector, post)
    judged.add(post.version_id, content is not None)
    return content is not None, content


@dataclass(frozen=True)
class ConsentLink:
    """A consent linked to a post: to all of it (media_url None) or to one attachment."""

    consent: ConsentState
    media_url: str | None

    def covered_by(self, other: ConsentLink) -> bool:
        """Whether `other` (a live consent's link to the same post) covers what this one covered: only the same
        patient's consent, for the whole post or for the same attachment."""
        return other.consent.patient_ref == self.consent.patient_ref and other.media_url in (None, self.media_url)


def consents_by_item(conn: sqlite3.Connection) -> dict[str, list[ConsentLink]]:
    """The current state of each consent linked to each item, one entry per link."""
    states = {c.consent_id: c for c in current_consents(conn)}
    linked: dict[str, list[ConsentLink]] = {}
    for consent_id, item_key, media_url in conn.execute(
        "SELECT DISTINCT consent_id, item_key, media_url FROM consent_links ORDER BY consent_id, media_url"
    ):
        if consent_id in states:
            linked.setdefault(item_key, []).append(ConsentLink(states[consent_id], media_url))
    return linked


def uncovered_lapses(links: list[ConsentLink], today: date) -> list[ConsentState]:
    """The expired or revoked consents of a post with a link no live consent of the same patient covers, in
    consent id order (a consent linked to two photos is one lapse)."""
    live = [link for link in links if link.consent.status(today) == "live"]
    lapses: dict[str, ConsentState] = {}
    for link in links:
        if link.consent.status(today) not in ("expired", "revoked"):
            continue
        if not any(link.covered_by(other) for other in live):
            lapses.setdefault(link.consent.consent_id, link.consent)
    return list(lapses.values())


def lapse_reason(consent: ConsentState, post: OwnPost, today: date) -> str:
    published = local_day(post.created_at) or "on an unknown day"
    return (
        f"{LAPSED_REASON}: consent {consent.consent_id} {consent.lapse_reason()} (granted {consent.granted_on}); "
        f"post published {published}, still published on {today.isoformat()}"
    )


def lapse_prefix(consent: ConsentState) -> str:
    """The part of a lapse flag's reason that identifies the lapse (the rest changes from day to day)."""
    return f"{LAPSED_REASON}: consent {consent.consent_id} {consent.lapse_reason()} "


def missing_reason(content: PatientContent, linked: Iterable[ConsentState], today: date) -> str:
    reason = f"{MISSING_REASON}: {'; '.join(content.reasons)}"
    pending = [c for c in linked if c.status(today) == "pending"]
    if pending:
        reason += "; " + ", ".join(f"consent {c.consent_id} is granted only from {c.granted_on}" for c in pending)
    return reason


# A real edit: an 'edited' event the store did not mark not_an_edit (only where its attachments are served from
# changed). Its SQL twin is in flag_status (migration 0015), for when a consent.edited flag leaves the queue.
REAL_EDIT = "e.event = 'edited' AND json_extract(e.evidence, '$.not_an_edit') IS NULL"


def first_grants(conn: sqlite3.Connection) -> dict[str, str]:
    """Each consent's first day granted, over all its register rows: a renewal that moves granted_on later does
    not make a post published under the first grant late."""
    return dict(conn.execute("SELECT consent_id, min(granted_on) FROM consent_register GROUP BY consent_id"))


def patients_of(conn: sqlite3.Connection) -> dict[str, str]:
    """consent id -> its patient_ref (which never changes: register.py refuses a row that would)."""
    return dict(conn.execute("SELECT consent_id, min(patient_ref) FROM consent_register GROUP BY consent_id"))


def late_consents(
    post: OwnPost, consent_ids: Iterable[str], first_granted: dict[str, str], patients: dict[str, str]
) -> list[tuple[str, str]]:
    """(consent id, reason) for each patient of the post whose linked consents were all first granted after the
    day it was published (that patient's earliest, in patient order); none when the day is unknown. Judged
    patient by patient: another patient's earlier consent does not make this one's story consented."""
    published = local_day(post.created_at) or ""
    earliest: dict[str, tuple[str, str]] = {}  # patient -> (first grant, consent id)
    for consent_id in consent_ids:
        if consent_id in first_granted and consent_id in patients:
            grant = (first_granted[consent_id], consent_id)
            earliest[patients[consent_id]] = min(earliest.get(patients[consent_id], grant), grant)
    late = []
    for _, (granted, consent_id) in sorted(earliest.items()):
        if not published or granted <= published:
            continue
        try:
            days = (date.fromisoformat(granted) - date.fromisoformat(published)).days
            gap = f" ({days} day{'' if days == 1 else 's'} later)"
        except ValueError:  # a created_at that is not a date: the reason still names both days
            gap = ""
        late.append(
            (
                consent_id,
                f"{LATE_REASON}: post published {published}; consent {consent_id}, the earliest of its patient "
                f"linked to it, granted {granted}{gap}; public without that patient's consent in between",
            )
        )
    return late


def edits_after_links(conn: sqlite3.Connection, item_key: str, patients: dict[str, str]) -> list[tuple[int, str, str]]:
    """(version, consent id, reason) for each patient whose newest link of a consent to the whole item was made
    before the item's latest real edit was captured: nobody has said that patient's consent covers the edit.
    A consent linked to one attachment only is left out (the text is not what it covers)."""
    edit = conn.execute(
        f"SELECT v.id, v.captured_at FROM events e JOIN item_versions v ON v.id = e.version_id "
        f"WHERE e.item_key = ? AND {REAL_EDIT} ORDER BY e.version_id DESC LIMIT 1",
        (item_key,),
    ).fetchone()
    if edit is None:
        return []
    newest: dict[str, tuple[str, str]] = {}  # patient -> (linked_at, consent id) of its newest whole-item link
    for consent_id, linked_at in conn.execute(
        "SELECT consent_id, linked_at FROM consent_links WHERE item_key = ? AND media_url IS NULL", (item_key,)
    ):
        if consent_id in patients:
            link = (linked_at, consent_id)
            newest[patients[consent_id]] = max(newest.get(patients[consent_id], link), link)
    found = []
    for _, (linked_at, consent_id) in sorted(newest.items()):
        if edit[1] > linked_at:
            found.append(
                (
                    edit[0],
                    consent_id,
                    f"{EDITED_REASON}: consent {consent_id} linked {linked_at[:16].replace('T', ' ')} UTC; this "
                    f"version, captured {edit[1][:16].replace('T', ' ')} UTC, changes what was published then; "
                    "check that consent covers it",
                )
            )
    return found


def find_consent_flags(
    conn: sqlite3.Connection, detector: SignalDetector, today: date
) -> tuple[ConsentCheckOutcome, list[dict[str, Any]], Judged]:
    """What the check would flag today (read-only): the outcome's counts, the flag rows not yet in the archive
    (without run, time and id) and the versions the detector read (those with no answer kept under its version)."""
    outcome = ConsentCheckOutcome()
    judged = Judged()
    keeps = schema_has(conn, "consent_signals")  # an archive held at an older schema: every post read, none kept
    linked = consents_by_item(conn)
    missing_flagged = {
        row[0] for row in conn.execute("SELECT version_id FROM flags WHERE rule_id = ?", (MISSING_RULE,))
    }
    lapse_flagged: dict[str, list[str]] = {}
    for item_key, reason in conn.execute("SELECT item_key, reason FROM flags WHERE rule_id = ?", (LAPSED_RULE,)):
        lapse_flagged.setdefault(item_key, []).append(reason)
    granted, patients = first_grants(conn), patients_of(conn)
    # a late flag is once per item and patient, an edit flag once per version and patient (`matched`: a consent)
    late_flagged = {
        (item_key, patients.get(matched))
        for item_key, matched in conn.execute("SELECT item_key, matched FROM flags WHERE rule_id = ?", (LATE_RULE,))
    }
    edit_flagged = {
        (version_id, patients.get(matched))
        for version_id, matched in conn.execute(
            "SELECT version_id, matched FROM flags WHERE rule_id = ?", (EDITED_RULE,)
        )
    }
    rows: list[dict[str, Any]] = []
    for post in own_live_posts(conn, detector.version if keeps else None):
        outcome.posts_checked += 1
        links = linked.get(post.item_key, [])
        consents = list({link.consent.consent_id: link.consent for link in links}.values())
        patient, content = judge(detector, post, judged)
        if patient:
            outcome.patient_posts += 1
        base = {"version_id": post.version_id, "item_key": post.item_key, "category": CATEGORY}
        for consent in uncovered_lapses(links, today):
            known = lapse_flagged.get(post.item_key, [])
            if any(reason.startswith(lapse_prefix(consent)) for reason in known):
                continue
            rows.append(
                {
                    **base,
                    "rule_id": LAPSED_RULE,
                    "severity": "high",
                    "span_start": None,
                    "span_end": None,
                    "matched": consent.consent_id,
                    "reason": lapse_reason(consent, post, today),
                }
            )
        # a linked consent that is live or lapsed answers "is there a consent on file"; a pending one does not
        on_file = any(c.status(today) != "pending" for c in consents)
        late = late_consents(post, [c.consent_id for c in consents], granted, patients) if on_file else []
        for consent_id, reason in late:
            if (post.item_key, patients[consent_id]) in late_flagged:
                continue
            rows.append(
                {
                    **base,
                    "rule_id": LATE_RULE,
                    "severity": "high",
                    "span_start": None,
                    "span_end": None,
                    "matched": consent_id,
                    "reason": reason,
                }
            )
        edits = edits_after_links(conn, post.item_key, patients) if on_file else []  # pending: missing's matter
        for version_id, consent_id, reason in edits:
            if (version_id, patients[consent_id]) in edit_flagged:
                continue
            rows.append(
                {
                    **base,
                    "version_id": version_id,
                    "rule_id": EDITED_RULE,
                    "severity": "medium",
                    "span_start": None,
                    "span_end": None,
                    "matched": consent_id,
                    "reason": reason,
                }
            )
        if not on_file and patient and post.version_id not in missing_flagged:
            # an answer kept by an earlier check says only yes: the flag's span and reasons need the detector
            content = content or patient_content(detector, post)
            if content is None:  # a detector that answers otherwise under the same version: today's answer holds
                log.warning("version %s: the signals no longer find the patient content kept for it", post.version_id)
                continue
            rows.append(
                {
                    **base,
                    "rule_id": MISSING_RULE,
                    "severity": "high",
                    "span_start": None if content.in_alt_text else content.first.start,
                    "span_end": None if content.in_alt_text else content.first.end,
                    "matched": content.first.matched,
                    "reason": missing_reason(content, consents, today),
                }
            )
    return outcome, rows, judged if keeps else Judged()


def build_signal_detector(config: Config | None) -> Detector:
    """The patient-content signals: the built-in consent.yml (with the shared lexicons) and the patient-*
    rules of the organisation's rule files, with its allow-lists (staff are never a named patient).

    Its version, which the check records and keeps its answers under, is the detector's (rule files, engine,
    allow-lists) with SIGNALS_REVISION and, when `[scan] spacy_model` is set, a digest of the model, which finds
    names the rules do not know and is otherwise in no version."""
    detector = detector_for(config, is_signal, SIGNAL_RULE_FILES)
    detector.version += f"+signals-{SIGNALS_REVISION}"
    return detector


def append_consent_check(
    store: Store, detector: SignalDetector, today: date, run_id: str | None = None
) -> ConsentCheckOutcome:
    """Check every own published post and reply against the register on `today`; append the new flags and a
    consent_checks row, in one transaction."""
    started = iso(utcnow())
    with store.transaction():
        outcome, rows, judged = find_consent_flags(store.conn, detector, today)
        check_id = store.conn.execute("SELECT coalesce(max(id), 0) + 1 FROM consent_checks").fetchone()[0]
        for row in rows:
            stored = {
                **row,
                "rules_version": detector.version,
                "run_id": run_id,
                "scan_id": check_id,
                "created_at": iso(utcnow()),
            }
            stored["id"] = store._insert("flags", stored)
            outcome.flags.append(stored)
        store._insert(
            "consent_checks",
            {
                "id": check_id,
                "run_id": run_id,
                "rules_version": detector.version,
                "checked_on": today.isoformat(),
                "posts_checked": outcome.posts_checked,
                "patient_posts": outcome.patient_posts,
                "flags_added": len(outcome.flags),
                "started_at": started,
                "finished_at": iso(utcnow()),
            },
        )
        for version_id, patient in judged:  # after the check's row, which they refer to
            store._insert(
                "consent_signals",
                {
                    "check_id": check_id,
                    "version_id": version_id,
                    "rules_version": detector.version,
                    "patient_content": int(patient),
                },
            )
        record_flag_states(store, "consent check")  # a consent's day come, as well as the flags added
    outcome.open_flags = store.conn.execute(
        "SELECT count(*) FROM flag_queue WHERE category = ?", (CATEGORY,)
    ).fetchone()[0]
    return outcome


def check_consents(config: Config, today: date) -> ConsentCheckOutcome:
    """`archiver consent check`: the configured archive, under the run lock."""
    from ..scan.delivery import alert_after
    from .register import writable_archive

    detector = build_signal_detector(config)
    with writable_archive(config, "archiver consent check") as store:
        outcome = append_consent_check(store, detector, today)
        alert_after(store, config, None, outcome.notices)  # its new flags, and any other flag still owed
        return outcome


def consent_check_after_run(store: Store, config: Config, run_id: str, today: date, notices: list[str]) -> bool:
    """The end of `archiver run`, after the PHI scan: a failure, expected or not, is a notice and a log line, never
    a lost run (the run still records its result, signs and alerts); False tells the run it failed. The run then
    alerts what is owed (scan/delivery.py)."""
    try:
        outcome = append_consent_check(store, build_signal_detector(config), today, run_id)
    except (ArchiverError, OSError) as exc:
        message = f"consent check failed: {exc}; fix it and run `archiver consent check`"
        log.error(message)
        notices.append(message)
        return False
    except Exception as exc:  # a bug: nothing of the check was appended (it checks everything again next run)
        message = f"consent check failed: unexpected {type(exc).__name__}: {exc}"
        message += "; fix it and run `archiver consent check`"
        log.error(message)
        log.debug("consent check failed", exc_info=True)
        notices.append(message)
        return False
    notices.append(outcome.summary())
    return True
