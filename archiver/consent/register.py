"""The consent register in the archive: import consents from a CSV file, link them to posts, list them.

Append-only like the rest of the archive: a consent's current state is its latest row, so a revocation, a
new expiry or a renewal is imported as a new row of the same consent id. An import is all or nothing: every
row is checked first (fields, then against the register and the archive) and one bad row means nothing is
appended; each bad row gets one line naming the row, the field and the value.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import re
import sqlite3
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path

from ..config import Config
from ..errors import ConfigError
from ..flag_states import record_flag_states
from ..lock import archive_lock
from ..oneline import breaks_or_hides
from ..operator import operator_name  # who made a link: the effective uid's account, not $USER
from ..scan.rules import load_rules
from ..store import Store
from ..warc import iso, utcnow
from .own import is_deleted, not_read_by_check
from .state import ConsentState, local_today

REQUIRED_COLUMNS = ("consent_id", "patient_ref", "granted_on", "document_sha256")
OPTIONAL_COLUMNS = ("platform", "account", "item", "scope", "expires_on", "revoked_on")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

CONSENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
# Opaque: no spaces, at least one digit. "Maria Lopez" or "MariaLopez" fails; "PT-004211" or a hash passes.
PATIENT_REF = re.compile(r"^(?=[^\d]*\d)[A-Za-z0-9][A-Za-z0-9._:/-]{2,63}$")
# A name or a birth date inside a reference that is otherwise well formed: a part (between the separators
# . _ : / -) of one run of letters, digits around it at most, whose words are a given name of the scan's
# lexicon, in lower case, capitals or capitalised words ("maria1970", "MARIA-1", "Maria.Lopez", "MariaLopez1");
# or a date, with its separators or with a month's name ("12Apr1970"). Left alone: a part of hex digits only
# ("deb88", "ada9": as likely a digest), a part of several runs or of mixed case as random ids have
# ("eM5CWtq15N0WJeuCet5bJlQ3", a FHIR id), and eight digits alone (as likely a record number).
REF_PARTS = re.compile(r"[._:/-]+")
HEX_PART = re.compile(r"[0-9a-fA-F]*\d[0-9a-fA-F]*")
SINGLE_RUN_PART = re.compile(r"\d*([A-Za-z]+)\d*")  # one run of letters, digits around it at most
CAMEL_RUN = re.compile(r"(?:[A-Z]?[a-z]+)+|[A-Z]+")  # "maria", "Maria", "MariaLopez", "MARIA"
CAPITALISED_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+")
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
REF_DATE = re.compile(
    # a four-digit year with its separators: 1970-03-02, 02/03/1970
    rf"(?<!\d)(?:(?:19|20)\d{{2}}[-./](?:0?[1-9]|1[0-2])[-./]{_DAY}|{_DAY}[-./]{_DAY}[-./](?:19|20)\d{{2}})(?!\d)"
    # a two-digit year, or a month's name, standing apart (not inside a digest or a dotted OID)
    rf"|(?<![A-Za-z0-9.])(?:{_DAY}[-/]{_DAY}[-/]\d{{2}}"
    rf"|(?i:{_DAY}[-./]?{_MONTH}[-./]?(?:(?:19|20)\d{{2}}|\d{{2}})|{_MONTH}[-./]?{_DAY},?[-./]?(?:19|20)\d{{2}}))"
    r"(?![A-Za-z0-9.])"
)
HEX_DATE = re.compile(r"[\d./-]*[a-fA-F][0-9a-fA-F./-]*")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_SCOPE = 500


class ConsentInputError(ConfigError):
    """Bad consent input; `lines` holds one line per bad row (the message is the first and a count)."""

    def __init__(self, lines: list[str], summary: str):
        self.lines = lines
        self.summary = summary
        super().__init__(lines[0] if len(lines) == 1 else f"{lines[0]} (and {len(lines) - 1} more)")


@dataclass(frozen=True)
class ImportRow:
    row: int  # the CSV row (header = 1), as a spreadsheet shows it
    consent: ConsentState
    item: str | None


@dataclass
class ImportOutcome:
    import_id: int | None
    rows_read: int
    new: list[str] = field(default_factory=list)  # consent ids first seen
    changed: list[str] = field(default_factory=list)  # consent ids with a new current row
    unchanged: int = 0
    links: int = 0


@dataclass(frozen=True)
class LinkOutcome:
    consent_id: str
    item_key: str
    media_url: str | None
    appended: bool  # False when the same link was already there
    consent_status: str
    item_deleted: bool = False  # proven deleted on the platform: the check reads it again only if restored


@dataclass(frozen=True)
class ConsentListing:
    consent: ConsentState
    status: str
    linked_items: tuple[str, ...]
    register_rows: int


# -- reading and checking a CSV file ---------------------------------------------------------------------------


def names_someone(patient_ref: str) -> bool:
    """Whether a well-formed reference still holds a given name or a date (see REF_PARTS)."""
    # A date spelt in hex digits only ("4dec57" in a digest: Dec and Feb are hex) is taken for part of a digest.
    if any(not HEX_DATE.fullmatch(found.group()) for found in REF_DATE.finditer(patient_ref)):
        return True
    given = given_names()
    for part in REF_PARTS.split(patient_ref):
        single = SINGLE_RUN_PART.fullmatch(part)
        if HEX_PART.fullmatch(part) or single is None:
            continue
        run = single.group(1)
        if CAMEL_RUN.fullmatch(run) and any(w.lower() in given for w in CAPITALISED_WORD.findall(run)):
            return True
    return False


@functools.cache
def given_names() -> frozenset[str]:
    """The scan's lexicon of given names, lower-cased."""
    return frozenset(n.lower() for n in load_rules(builtin=("lexicons.yml",)).lexicons.get("names", []))


def parse_consent_csv(
    name: str,
    data: bytes,
    *,
    platforms: Iterable[str],
    accounts: dict[str, str],
    register: Mapping[str, ConsentState] | None = None,
) -> list[ImportRow]:
    """Check every row's fields (pure: no archive). `accounts` maps configured account names to platforms;
    `register` holds the current state of the consents already imported, by consent id."""
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's export may start with a byte-order mark
    except UnicodeDecodeError as exc:
        raise ConsentInputError(
            [f"{name}: byte {exc.start} is not UTF-8; save the file as CSV UTF-8"], "nothing imported"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        records = list(reader)
    except csv.Error as exc:
        raise ConsentInputError([f"{name}: row {reader.line_num}: not valid CSV ({exc})"], "nothing imported") from None
    if not records or not any(cell.strip() for cell in records[0]):
        raise ConsentInputError(
            [f"{name}: empty file; the first row must name the columns ({', '.join(COLUMNS)})"], "nothing imported"
        )
    header = [cell.strip().lower() for cell in records[0]]
    # A spreadsheet that once used a column further right writes ",," at the end of every line: unnamed
    # columns at the end of the header are dropped, and a row may only leave them empty (below).
    while header and not header[-1]:
        header.pop()
    unnamed = [str(n) for n, h in enumerate(header, start=1) if not h]
    unknown = [h for h in header if h and h not in COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    doubled = sorted({h for h in header if h and header.count(h) > 1})
    if unnamed or unknown or missing or doubled:
        parts = []
        if unnamed:
            parts.append(f"column(s) {', '.join(unnamed)} have no name")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(repr(u) for u in unknown)}")
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if doubled:
            parts.append(f"column(s) named twice: {', '.join(doubled)}")
        raise ConsentInputError(
            [f"{name}: row 1 (header): {'; '.join(parts)}; the columns are {', '.join(COLUMNS)}"], "nothing imported"
        )
    known_platforms = set(platforms) | set(accounts.values())
    problems: list[str] = []
    rows: list[ImportRow] = []
    first_row: dict[str, int] = {}
    width = len(header)
    for number, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue  # blank lines at the end of a spreadsheet export
        if len(record) > width and not any(cell.strip() for cell in record[width:]):
            record = record[:width]  # the empty cells of the header's unnamed end columns
        if len(record) != len(header):
            extra = ""
            if len(record) > width:
                extra = f"; the values after column {width} have no column name: name it in row 1 or delete them"
            problems.append(f"{name}: row {number}: has {len(record)} fields, the header has {width}{extra}")
            continue
        values = {h: cell.strip() for h, cell in zip(header, record, strict=True)}
        found, parsed = _check_fields(values, known_platforms, accounts, register or {})
        consent_id = values.get("consent_id", "")
        if consent_id and consent_id in first_row:
            found.append(
                f"consent_id {consent_id!r} is also on row {first_row[consent_id]}; one row per consent in a file "
                "(import a later change as another file)"
            )
        elif consent_id:
            first_row[consent_id] = number
        if found:
            problems.append(f"{name}: row {number}: {'; '.join(found)}")
        elif parsed is not None:
            rows.append(ImportRow(number, parsed, values.get("item") or None))
    if problems:
        raise ConsentInputError(problems, _refused(problems))
    if not rows:
        raise ConsentInputError([f"{name}: no consent rows after the header"], "nothing imported")
    return rows


def _hidden_characters(values: dict[str, str]) -> list[str]:
    """A line break, ESC or bidi control in any cell (oneline.py): `consent list` prints scope and the rest as
    one line each, so such a character would forge or hide lines of it for ever. The value is not repeated
    (the cell may be a patient_ref, and this line goes to logs)."""
    found = []
    for column, value in values.items():
        for n, char in enumerate(value):
            if breaks_or_hides(char):
                what = unicodedata.name(char, "a control character")
                found.append(
                    f"{column}: character {n + 1} is U+{ord(char):04X} ({what}), which breaks or hides a line; "
                    "remove it in the file and import it again"
                )
                break
    return found


def _check_fields(
    values: dict[str, str], platforms: set[str], accounts: dict[str, str], register: Mapping[str, ConsentState]
) -> tuple[list[str], ConsentState | None]:
    found = _hidden_characters(values)
    if found:
        return found, None
    consent_id = values.get("consent_id", "")
    if not CONSENT_ID.match(consent_id):
        found.append(f"consent_id {consent_id!r}: required; letters, digits and . _ : / - (at most 64)")
    patient_ref = values.get("patient_ref", "")
    # A consent the register holds keeps its patient_ref, refused or not by today's names_someone: a revocation
    # of a consent imported before must still go in.
    held = register.get(consent_id)
    if not PATIENT_REF.match(patient_ref) or (
        names_someone(patient_ref) and (held is None or held.patient_ref != patient_ref)
    ):
        # The value is not repeated: a failing patient_ref is often a name, and this line goes to logs.
        found.append(
            f"patient_ref ({len(patient_ref)} characters, value not repeated): must be an opaque id from the "
            "records system (3-64 letters, digits, . _ : / -, at least one digit, no spaces), never a name or a "
            "date of birth"
        )
    platform = values.get("platform") or None
    account = values.get("account") or None
    # Against the config: waived below for a row the register already holds as it is (an account removed from
    # the config keeps its consents, and the full export that names them still imports).
    unconfigured: list[str] = []
    if platform is not None and platform not in platforms:
        unconfigured.append(f"platform {platform!r}: unknown (known: {', '.join(sorted(platforms))})")
    if account is not None:
        if account not in accounts:
            unconfigured.append(
                f"account {account!r}: not a configured account (configured: {', '.join(accounts) or 'none'}); "
                "correct the row, or add the account to the config (a consent of an account no longer configured "
                "is skipped only while its row is unchanged)"
            )
        elif platform is not None and accounts[account] != platform:
            unconfigured.append(f"account {account!r} is on {accounts[account]}, not on platform {platform!r}")
    if platform is None and account is None:
        found.append("platform and account are both empty: name the platform or the account the consent covers")
    scope = values.get("scope", "")
    if len(scope) > MAX_SCOPE:
        found.append(f"scope: {len(scope)} characters, at most {MAX_SCOPE}")
    dates: dict[str, str | None] = {}
    for column, required in (("granted_on", True), ("expires_on", False), ("revoked_on", False)):
        value = values.get(column, "")
        dates[column] = None
        if not value:
            if required:
                found.append(f"{column} is empty: the date the form was signed, as YYYY-MM-DD")
            continue
        if not ISO_DATE.match(value) or _date(value) is None:
            found.append(f"{column} {value!r}: not a date; write YYYY-MM-DD")
            continue
        dates[column] = value
    granted = dates["granted_on"]
    for column in ("expires_on", "revoked_on"):
        value = dates[column]
        if granted and value and value < granted:
            found.append(f"{column} {value!r} is before granted_on {granted!r}")
    digest = values.get("document_sha256", "")
    if not SHA256.match(digest):
        found.append(f"document_sha256 {digest!r}: must be the 64 hex digits of the signed form's SHA-256")
    item = values.get("item", "")
    if item and ":" not in item:
        found.append(f"item {item!r}: not an item key (platform:host:id, as in the items table)")
    if found:
        return found + unconfigured, None
    state = ConsentState(
        consent_id=consent_id,
        patient_ref=patient_ref,
        platform=platform,
        account=account,
        scope=scope,
        granted_on=str(granted),
        expires_on=dates["expires_on"],
        revoked_on=dates["revoked_on"],
        document_sha256=digest.lower(),
    )
    if unconfigured and register.get(consent_id) != state:
        return unconfigured, None
    return [], state


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _refused(problems: list[str]) -> str:
    return f"nothing imported: {len(problems)} bad row(s); fix them and import the whole file again"


# -- the register in the archive ---------------------------------------------------------------------------------
def current_consent(conn: sqlite3.Connection, consent_id: str) -> ConsentState | None:
    row = conn.execute(
        "SELECT * FROM consent_register WHERE consent_id = ? ORDER BY id DESC LIMIT 1", (consent_id,)
    ).fetchone()
    return _state(row) if row else None


def current_consents(conn: sqlite3.Connection) -> list[ConsentState]:
    rows = conn.execute(
        "SELECT r.* FROM consent_register r WHERE r.id = "
        "(SELECT max(l.id) FROM consent_register l WHERE l.consent_id = r.consent_id) ORDER BY r.consent_id"
    ).fetchall()
    return [_state(row) for row in rows]


def _state(row: sqlite3.Row) -> ConsentState:
    return ConsentState(**{f.name: row[f.name] for f in fields(ConsentState)})


def latest_item(conn: sqlite3.Connection, item_key: str) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT item_key, platform, account, kind, media FROM item_versions WHERE item_key = ? "
        "ORDER BY id DESC LIMIT 1",
        (item_key,),
    ).fetchone()


def _coverage_problem(consent: ConsentState, item: sqlite3.Row) -> str | None:
    if consent.account and item["account"] != consent.account:
        return f"consent {consent.consent_id} covers account {consent.account!r}, the item is from {item['account']!r}"
    if consent.platform and item["platform"] != consent.platform:
        return f"consent {consent.consent_id} covers {consent.platform}, the item is on {item['platform']}"
    return None


def _reading_problem(conn: sqlite3.Connection, item_key: str) -> str | None:
    """A link the consent check would never read is refused: it would promise a check that never comes."""
    problem = not_read_by_check(conn, item_key)
    return (
        f"{problem}; link the consent to the organisation's post or reply that shows the patient" if problem else None
    )


# What a consent covers and the form it rests on: a later row that changed them would carry the links made
# under the old ones (and the check's verdicts) over to a different consent. A new consent id is the record.
FIXED_FIELDS = ("platform", "account", "scope", "document_sha256")


def _change_problems(old: ConsentState, new: ConsentState) -> list[str]:
    """Why a new row may not follow the current one (empty when it may: a revocation added, an expiry set or
    moved, granted_on corrected)."""
    found = []
    if old.patient_ref != new.patient_ref:
        found.append(
            f"patient_ref differs from the register's for consent {new.consent_id}; a consent's patient cannot "
            "change: record a new consent id"
        )
    changed = [
        f"{column} {_shown(getattr(new, column))} (the register has {_shown(getattr(old, column))})"
        for column in FIXED_FIELDS
        if (getattr(old, column) or None) != (getattr(new, column) or None)
    ]
    if changed:
        found.append(
            f"{', '.join(changed)}: what consent {new.consent_id} covers and its signed form cannot change: "
            "record a new consent id"
        )
    if old.revoked_on and new.revoked_on != old.revoked_on:
        shown = repr(new.revoked_on) if new.revoked_on else "empty"
        found.append(
            f"revoked_on {shown}: consent {new.consent_id} was revoked on {old.revoked_on}; a revocation cannot be "
            "withdrawn or re-dated: record a new consent id"
        )
    return found


def _shown(value: str | None) -> str:
    return repr(value) if value else "empty"


def append_consent_import(
    store: Store, path: Path, *, platforms: Iterable[str], accounts: dict[str, str]
) -> ImportOutcome:
    """Import a consent CSV: all rows or none. Unchanged consents are skipped, so a full export can be
    imported every day; a changed one gets a new current row."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConsentInputError([f"{path}: cannot read ({exc.strerror})"], "nothing imported") from None
    name = str(path)
    conn = store.conn
    register = {c.consent_id: c for c in current_consents(conn)}
    rows = parse_consent_csv(name, data, platforms=platforms, accounts=accounts, register=register)
    outcome = ImportOutcome(None, len(rows))
    problems: list[str] = []
    appends: list[ImportRow] = []
    links: list[tuple[ImportRow, str]] = []
    for row in rows:
        new = row.consent
        old = register.get(new.consent_id)
        found = _change_problems(old, new) if old is not None else []
        if row.item:
            item = latest_item(conn, row.item)
            if item is None:
                found.append(
                    f"item {row.item!r}: not in the archive; leave it empty and link the post with "
                    "`archiver consent link` once a run has archived it"
                )
            elif (problem := _coverage_problem(new, item) or _reading_problem(conn, row.item)) is not None:
                found.append(f"item {row.item!r}: {problem}")
            elif not _linked(conn, new.consent_id, row.item, None):
                links.append((row, row.item))
        if found:
            problems.append(f"{name}: row {row.row}: {'; '.join(found)}")
            continue
        if old == new:
            outcome.unchanged += 1
        else:
            appends.append(row)
            (outcome.changed if old else outcome.new).append(new.consent_id)
    if problems:
        raise ConsentInputError(problems, _refused(problems))
    if not appends and not links:
        return outcome
    now = iso(utcnow())
    who = operator_name()
    with store.transaction():
        import_id = store._insert(
            "consent_imports",
            {
                "file_name": name,
                "file_sha256": hashlib.sha256(data).hexdigest(),
                "rows_read": len(rows),
                "rows_appended": len(appends),
                "links_appended": len(links),
                "imported_at": now,
            },
        )
        for row in appends:
            consent = row.consent
            store._insert(
                "consent_register",
                {
                    "consent_id": consent.consent_id,
                    "patient_ref": consent.patient_ref,
                    "platform": consent.platform,
                    "account": consent.account,
                    "scope": consent.scope,
                    "granted_on": consent.granted_on,
                    "expires_on": consent.expires_on,
                    "revoked_on": consent.revoked_on,
                    "document_sha256": consent.document_sha256,
                    "import_id": import_id,
                    "source_row": row.row,
                    "recorded_at": now,
                },
            )
        for row, item_key in links:
            _append_link(store, row.consent.consent_id, item_key, None, import_id, who, now)
        # a consent's dates reach every item linked to it, and its patient's other ones
        record_flag_states(store, "consent import")
    outcome.import_id = import_id
    outcome.links = len(links)
    return outcome


def _linked(conn: sqlite3.Connection, consent_id: str, item_key: str, media_url: str | None) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM consent_links WHERE consent_id = ? AND item_key = ? AND media_url IS ?",
            (consent_id, item_key, media_url),
        ).fetchone()
        is not None
    )


def _append_link(
    store: Store, consent_id: str, item_key: str, media_url: str | None, import_id: int | None, who: str, now: str
) -> None:
    store._insert(
        "consent_links",
        {
            "consent_id": consent_id,
            "item_key": item_key,
            "media_url": media_url,
            "import_id": import_id,
            "linked_by": who,
            "linked_at": now,
        },
    )


def append_consent_link(
    store: Store, consent_id: str, item_key: str, *, media_url: str | None = None, today: date | None = None
) -> LinkOutcome:
    """Record that a consent covers an archived item (or one of its attachments). A ConfigError names what is
    wrong: an unknown consent or item, an item outside what the consent covers, an attachment not on it."""
    conn = store.conn
    consent = current_consent(conn, consent_id)
    if consent is None:
        raise ConfigError(
            f"consent {consent_id!r}: not in the register; import it first with `archiver consent import`"
        )
    item = latest_item(conn, item_key)
    if item is None:
        raise ConfigError(
            f"item {item_key!r}: not in the archive; give the item_key as the items table shows it "
            "(platform:host:id), after a run has archived the post"
        )
    problem = _coverage_problem(consent, item)
    if problem:
        raise ConfigError(f"item {item_key!r}: {problem}; link it to a consent that covers it")
    problem = _reading_problem(conn, item_key)
    if problem:
        raise ConfigError(f"item {item_key!r}: {problem}")
    if media_url is not None:
        urls = [m.get("url") for m in json.loads(item["media"] or "[]")]
        if media_url not in urls:
            listed = ", ".join(u for u in urls if u) or "none"
            raise ConfigError(f"--media {media_url!r}: not an attachment of {item_key} (its attachments: {listed})")
    status = consent.status(today or local_today())
    # A deleted post is linked all the same: the link records a fact, and the check reads the post again if the
    # platform restores it. The command says so rather than promise a flag.
    deleted = is_deleted(conn, item_key)
    if _linked(conn, consent_id, item_key, media_url):
        return LinkOutcome(consent_id, item_key, media_url, False, status, deleted)
    with store.transaction():
        _append_link(store, consent_id, item_key, media_url, None, operator_name(), iso(utcnow()))
        # a consent flag's condition reads the links of its own item only
        record_flag_states(store, "consent link", [item_key])
    return LinkOutcome(consent_id, item_key, media_url, True, status, deleted)


def list_consents(conn: sqlite3.Connection, today: date, status: str | None = None) -> list[ConsentListing]:
    """Every consent's current state and status on `today`, with the items linked to it."""
    linked: dict[str, list[str]] = {}
    for consent_id, item_key in conn.execute(
        "SELECT DISTINCT consent_id, item_key FROM consent_links ORDER BY consent_id, item_key"
    ):
        linked.setdefault(consent_id, []).append(item_key)
    counts = dict(conn.execute("SELECT consent_id, count(*) FROM consent_register GROUP BY consent_id").fetchall())
    listing = []
    for consent in current_consents(conn):
        found = consent.status(today)
        if status is None or found == status:
            listing.append(
                ConsentListing(consent, found, tuple(linked.get(consent.consent_id, ())), counts[consent.consent_id])
            )
    return listing


# -- on a configured archive (what the commands call) ----------------------------------------------------------
@contextmanager
def writable_archive(config: Config, command: str, *, create: bool = False) -> Iterator[Store]:
    """The archive opened for appending, under the run lock (a run in progress makes this a LockedError).
    `create`: a new archive may start with its consent register, before the first run."""
    archive = config.archive
    if not create and not archive.database.exists():
        raise ConfigError(f"{archive.database}: archive database not found; run `archiver run` first")
    with archive_lock(archive.dir, command):
        archive.dir.chmod(0o700)  # patient data lives here: nobody else reads it
        store = Store.open(archive.database)
        try:
            yield store
        finally:
            store.close()


def config_accounts(config: Config) -> dict[str, str]:
    return {account.name: account.platform for account in config.accounts}


def import_consents(config: Config, path: Path) -> ImportOutcome:
    """`archiver consent import`: the CSV file into the configured archive, all rows or none."""
    from ..connectors import CONNECTORS

    with writable_archive(config, "archiver consent import", create=True) as store:
        return append_consent_import(store, path, platforms=CONNECTORS, accounts=config_accounts(config))


def link_consent(
    config: Config, consent_id: str, item_key: str, media_url: str | None = None, today: date | None = None
) -> LinkOutcome:
    """`archiver consent link`: record that a consent covers an archived item."""
    with writable_archive(config, "archiver consent link") as store:
        return append_consent_link(store, consent_id, item_key, media_url=media_url, today=today)


def read_consents(config: Config, today: date, status: str | None = None) -> list[ConsentListing]:
    """`archiver consent list`: read-only."""
    if not config.archive.database.exists():
        return []
    store = Store.open(config.archive.database, readonly=True)
    try:
        return list_consents(store.conn, today, status)
    finally:
        store.close()
