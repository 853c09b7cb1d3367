"""The consent register: CSV import (all or nothing, one line per bad row), link, list, append-only rows."""

from __future__ import annotations

import json
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.consent import register
from archiver.consent.register import list_consents
from archiver.consent.state import ConsentState, consent_status
from archiver.items import Item
from archiver.ledger import verify_ledger
from archiver.store import Store
from archiver.warc import CaptureRef

from .test_ledger import behind_the_back

REF = CaptureRef("f.warc.gz", 10, 20, "<urn:uuid:1>")
SHA_A = "a" * 64
SHA_B = "B" * 64  # upper case is accepted and stored in lower case
POST = "mastodon:clinic.example:101"
PHOTO_POST = "mastodon:clinic.example:102"
PHOTO_URL = "https://clinic.example/media/102.png"
OTHER_ACCOUNT_POST = "mastodon:other.example:7"

HEADER = "consent_id,patient_ref,platform,account,item,scope,granted_on,expires_on,revoked_on,document_sha256\n"


def post(item_key: str, account: str, text: str, media: tuple = ()) -> Item:
    return Item(
        item_key=item_key,
        platform="mastodon",
        kind="post",
        native_id=item_key.rsplit(":", 1)[1],
        source=REF,
        raw={"id": item_key},
        text=text,
        created_at="2026-11-01T10:00:00.000Z",
        media=media,
    )


@pytest.fixture
def archive(tmp_path) -> Path:
    """A config with two accounts and an archive holding three posts."""
    config = tmp_path / "archiver.toml"
    config.write_text(
        '[archive]\ndir = "arch"\n\n'
        '[[accounts]]\nname = "clinic"\nplatform = "mastodon"\napi_base = "https://clinic.example"\n'
        'account = "@clinic"\ntoken_env = "T"\n\n'
        '[[accounts]]\nname = "other"\nplatform = "mastodon"\napi_base = "https://other.example"\n'
        'account = "@other"\ntoken_env = "T"\n'
    )
    store = Store.open(tmp_path / "arch" / "archive.db")
    store.append_run("run1", "host", "0" * 64, ["clinic", "other"])
    with store.transaction():
        store.append_item("clinic", post(POST, "clinic", "Meet our patient Ann"), "run1")
        photo = {"id": "m1", "type": "image", "url": PHOTO_URL, "description": "Ann with her nurse"}
        store.append_item("clinic", post(PHOTO_POST, "clinic", "A good day", (photo,)), "run1")
        store.append_item("other", post(OTHER_ACCOUNT_POST, "other", "Hours"), "run1")
    store.close()
    return config


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(HEADER + body)
    return path


def db(config: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(config.parent / "arch" / "archive.db")
    conn.row_factory = sqlite3.Row
    return conn


_connect = sqlite3.connect  # the module's own, whatever judge_every_connection_on puts in its place


def judge_on(conn: sqlite3.Connection, day: str) -> sqlite3.Connection:
    """`conn` with the views judging consents on `day`: they read today as date('now', 'localtime'); every
    other date() call keeps SQLite's own answer."""
    real = _connect(":memory:", check_same_thread=False)
    conn.create_function(
        "date",
        2,
        lambda value, modifier: (
            day if value == "now" else real.execute("SELECT date(?, ?)", (value, modifier)).fetchone()[0]
        ),
    )
    return conn


def judge_every_connection_on(monkeypatch: pytest.MonkeyPatch, day: str) -> None:
    """Every connection opened in this process for the rest of the test, the in-process commands' own included,
    judges as judge_on does: SQLite's day then stays `day` when the real one turns."""
    monkeypatch.setattr(sqlite3, "connect", lambda *args, **kwargs: judge_on(_connect(*args, **kwargs), day))


def counts(config: Path) -> dict[str, int]:
    conn = db(config)
    tables = ("consent_imports", "consent_register", "consent_links", "ledger")
    found = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    conn.close()
    return found


GOOD = (
    f"C-001,PT-0001,mastodon,clinic,{POST},story and photo,2026-10-01,2027-09-30,,{SHA_A}\n"
    f"C-002,PT-0002,,clinic,,testimonial,2026-10-15,,,{SHA_B}\n"
    f"C-003,PT-0003,mastodon,,,,2026-11-01,2026-12-01,,{SHA_A}\n"
    "\n"  # a trailing blank line, as spreadsheets write
)


def test_good_register_csv_is_imported_with_its_links(archive, tmp_path):
    csv_file = write(tmp_path, "consents.csv", GOOD)
    result = invoke("consent", "import", str(csv_file), "--config", str(archive))
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"{csv_file}: 3 row(s): 3 new consent(s), 0 changed, 0 unchanged, 1 link(s) to items (import 1)\n"
    )
    conn = db(archive)
    rows = [
        tuple(r)
        for r in conn.execute(
            "SELECT consent_id, patient_ref, platform, account, scope, granted_on, expires_on, revoked_on, "
            "document_sha256, import_id, source_row FROM consent_register ORDER BY id"
        )
    ]
    assert rows == [
        ("C-001", "PT-0001", "mastodon", "clinic", "story and photo", "2026-10-01", "2027-09-30", None, SHA_A, 1, 2),
        ("C-002", "PT-0002", None, "clinic", "testimonial", "2026-10-15", None, None, SHA_B.lower(), 1, 3),
        ("C-003", "PT-0003", "mastodon", None, "", "2026-11-01", "2026-12-01", None, SHA_A, 1, 4),
    ]
    imports = conn.execute("SELECT file_name, rows_read, rows_appended, links_appended FROM consent_imports").fetchall()
    assert [tuple(r) for r in imports] == [(str(csv_file), 3, 3, 1)]
    links = conn.execute("SELECT consent_id, item_key, media_url, import_id FROM consent_links").fetchall()
    assert [tuple(r) for r in links] == [("C-001", POST, None, 1)]
    # every appended row is in the hash chain
    assert list(verify_ledger(conn)) == []
    conn.close()


def test_reimporting_the_same_file_appends_nothing(archive, tmp_path):
    csv_file = write(tmp_path, "consents.csv", GOOD)
    assert invoke("consent", "import", str(csv_file), "--config", str(archive)).exit_code == 0
    before = counts(archive)
    result = invoke("consent", "import", str(csv_file), "--config", str(archive))
    assert result.exit_code == 0
    assert result.output.endswith("0 new consent(s), 0 changed, 3 unchanged, 0 link(s) to items; nothing appended\n")
    assert counts(archive) == before


BAD = (
    f"C-010,PT-0010,mastodon,clinic,,ok row,2026-10-01,,,{SHA_A}\n"  # row 2: good, yet not imported
    f"C-011,PT-0011,mastodon,clinic,,,2026-13-01,,,{SHA_A}\n"  # row 3: bad date
    f"C-012,Maria Lopez,mastodon,clinic,,,2026-10-01,,,{SHA_A}\n"  # row 4: a name as patient_ref
    f"C-013,PT-0013,mastodon,clinic,,,2026-10-01,2026-09-01,,{SHA_A}\n"  # row 5: expires before granted
    "C-014,PT-0014,mastodon,clinic,,,2026-10-01,,,abc123\n"  # row 6: not a sha256
    f"C-015,PT-0015,myspace,,,,2026-10-01,,,{SHA_A}\n"  # row 7: unknown platform
    f"C-016,PT-0016,,,,,2026-10-01,,,{SHA_A}\n"  # row 8: covers nothing
    f"C-010,PT-0017,mastodon,clinic,,,2026-10-01,,,{SHA_A}\n"  # row 9: consent id twice
    f"C-018,PT-0018,mastodon,clinic\n"  # row 10: short row
    f"C-019,PT-0019,,pharmacy,,,2026-10-01,,,{SHA_A}\n"  # row 11: unknown account
    f"C-020,PT-0020,mastodon,clinic,,,,,,{SHA_A}\n"  # row 12: no granted date
    f"C-021,PT-0021,mastodon,clinic,{OTHER_ACCOUNT_POST},,2026-10-01,,,{SHA_A}\n"  # row 13: item of another account
    f"C-022,PT-0022,mastodon,clinic,mastodon:clinic.example:999,,2026-10-01,,,{SHA_A}\n"  # row 14: unknown item
)


@pytest.mark.parametrize(
    "ref",
    [
        "Maria.Lopez.1970-03-02",
        "maria_lopez_42",
        "Maria1",
        "MariaLopez1",
        "JOHN-SMITH-1",
        "PT-1970.03.02",
        "X-03/02/1970",
        "ann.lee.7",
        "maria1970",
        "john01",
        "mariaLopez1",
        "MARIA1970",
        "PT-12Apr1970",
        "X-04/12/70",
    ],
)
def test_a_patient_ref_holding_a_given_name_or_a_birth_date_is_refused_unrepeated(archive, tmp_path, ref):
    csv_file = write(tmp_path, "named.csv", f"C-030,{ref},mastodon,clinic,,,2026-10-01,,,{SHA_A}\n")
    before = counts(archive)
    result = CliRunner().invoke(app, ["consent", "import", str(csv_file), "--config", str(archive)])
    assert result.exit_code == 2
    assert f"row 2: patient_ref ({len(ref)} characters, value not repeated)" in result.stderr
    assert ref not in result.stderr + result.stdout
    assert counts(archive) == before


@pytest.mark.parametrize(
    "ref",
    [
        "PT-004211",
        "MRN12345678",
        "20110512",  # eight digits: as likely a record number as a date
        "Lopez1970",  # a surname alone is not in the given-name lexicon: let through, as README says
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "urn:oid:2.16.840.1.113883.19.5:12345",
        "6E8BC430-9C3A-11D9-9669-0800200C9A66",
        "eM5CWtq15N0WJeuCet5bJlQ3",  # a FHIR id
        "deb88-7a4",  # hex: lower-case letters next to digits
        "ab632fb7-4dec57-bc5e",  # "4 Dec 57" in hex digits: part of a digest
        "URXQB10MEI6ST148X0RCX598",  # random capitals and digits ("MEI", "ST"), not one run that is a name
    ],
)
def test_opaque_patient_refs_are_accepted(archive, tmp_path, ref):
    csv_file = write(tmp_path, "opaque.csv", f"C-031,{ref},mastodon,clinic,,,2026-10-01,,,{SHA_A}\n")
    result = CliRunner().invoke(app, ["consent", "import", str(csv_file), "--config", str(archive)])
    assert result.exit_code == 0, result.stderr


def test_bad_rows_each_get_one_line_and_nothing_is_imported(archive, tmp_path):
    before = counts(archive)
    csv_file = write(tmp_path, "bad.csv", BAD)
    result = CliRunner().invoke(app, ["consent", "import", str(csv_file), "--config", str(archive)])
    assert result.exit_code == 2
    f = str(csv_file)
    assert result.stderr.splitlines() == [
        f"archiver: error: {f}: row 3: granted_on '2026-13-01': not a date; write YYYY-MM-DD",
        f"archiver: error: {f}: row 4: patient_ref (11 characters, value not repeated): must be an opaque id from "
        "the records system (3-64 letters, digits, . _ : / -, at least one digit, no spaces), never a name or a "
        "date of birth",
        f"archiver: error: {f}: row 5: expires_on '2026-09-01' is before granted_on '2026-10-01'",
        f"archiver: error: {f}: row 6: document_sha256 'abc123': must be the 64 hex digits of the signed form's "
        "SHA-256",
        f"archiver: error: {f}: row 7: platform 'myspace': unknown "
        "(known: bluesky, facebook, instagram, linkedin, mastodon, x, youtube)",
        f"archiver: error: {f}: row 8: platform and account are both empty: name the platform or the account the "
        "consent covers",
        f"archiver: error: {f}: row 9: consent_id 'C-010' is also on row 2; one row per consent in a file (import a "
        "later change as another file)",
        f"archiver: error: {f}: row 10: has 4 fields, the header has 10",
        f"archiver: error: {f}: row 11: account 'pharmacy': not a configured account (configured: clinic, other); "
        "correct the row, or add the account to the config (a consent of an account no longer configured is skipped "
        "only while its row is unchanged)",
        f"archiver: error: {f}: row 12: granted_on is empty: the date the form was signed, as YYYY-MM-DD",
        "archiver: nothing imported: 10 bad row(s); fix them and import the whole file again",
    ]
    assert "Maria" not in result.output  # a name in the wrong column is not echoed into logs
    assert counts(archive) == before

    # Once the field errors are fixed, the archive-level errors (items) are reported, still all or nothing.
    rows = BAD.splitlines()
    csv_file = write(tmp_path, "bad2.csv", "\n".join([rows[0], *rows[-2:]]) + "\n")
    result = CliRunner().invoke(app, ["consent", "import", str(csv_file), "--config", str(archive)])
    assert result.exit_code == 2
    f = str(csv_file)
    assert result.stderr.splitlines() == [
        f"archiver: error: {f}: row 3: item '{OTHER_ACCOUNT_POST}': consent C-021 covers account 'clinic', the item "
        "is from 'other'",
        f"archiver: error: {f}: row 4: item 'mastodon:clinic.example:999': not in the archive; leave it empty and "
        "link the post with `archiver consent link` once a run has archived it",
        "archiver: nothing imported: 2 bad row(s); fix them and import the whole file again",
    ]
    assert counts(archive) == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty file; the first row must name the columns"),
        (
            b"consent_id,patient,granted_on\n",
            "row 1 (header): unknown column(s) 'patient'; missing column(s) patient_ref, document_sha256; the columns",
        ),
        (b"consent_id,patient_ref,granted_on,document_sha256\n", "no consent rows after the header"),
        (HEADER.encode() + b"C-1,PT-\xe91,mastodon,,,,2026-10-01,,," + SHA_A.encode(), "is not UTF-8; save the file"),
    ],
    ids=["empty", "header", "no-rows", "not-utf8"],
)
def test_unreadable_files_are_refused_with_one_line(archive, tmp_path, body, message):
    before = counts(archive)
    csv_file = tmp_path / "x.csv"
    csv_file.write_bytes(body)
    result = CliRunner().invoke(app, ["consent", "import", str(csv_file), "--config", str(archive)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"archiver: error: {csv_file}: ") and message in lines[0]
    assert counts(archive) == before


def test_a_revocation_is_a_new_row_and_the_latest_row_is_the_state(archive, tmp_path):
    assert invoke("consent", "import", str(write(tmp_path, "a.csv", GOOD)), "--config", str(archive)).exit_code == 0
    later = (
        f"C-001,PT-0001,mastodon,clinic,{POST},story and photo,2026-10-01,2027-09-30,2026-11-20,{SHA_A}\n"
        f"C-002,PT-0002,,clinic,,testimonial,2026-10-15,2026-12-31,,{SHA_B}\n"
        f"C-003,PT-0003,mastodon,,,,2026-11-01,2026-12-01,,{SHA_A}\n"
    )
    result = invoke("consent", "import", str(write(tmp_path, "b.csv", later)), "--config", str(archive))
    assert result.exit_code == 0, result.output
    assert "0 new consent(s), 2 changed, 1 unchanged, 0 link(s) to items (import 2)" in result.output
    conn = db(archive)
    history = conn.execute(
        "SELECT consent_id, expires_on, revoked_on, import_id FROM consent_register ORDER BY id"
    ).fetchall()
    assert [tuple(r) for r in history] == [
        ("C-001", "2027-09-30", None, 1),
        ("C-002", None, None, 1),
        ("C-003", "2026-12-01", None, 1),
        ("C-001", "2027-09-30", "2026-11-20", 2),
        ("C-002", "2026-12-31", None, 2),
    ]
    statuses = {c.consent.consent_id: c.status for c in list_consents(conn, date(2026, 11, 25))}
    assert statuses == {"C-001": "revoked", "C-002": "live", "C-003": "live"}
    statuses = {c.consent.consent_id: c.status for c in list_consents(conn, date(2026, 12, 2))}
    assert statuses == {"C-001": "revoked", "C-002": "live", "C-003": "expired"}
    view = conn.execute("SELECT consent_id, revoked_on, register_rows FROM consents ORDER BY consent_id").fetchall()
    assert [tuple(r) for r in view] == [("C-001", "2026-11-20", 2), ("C-002", None, 2), ("C-003", None, 1)]
    conn.close()

    # A revocation cannot be withdrawn, nor a consent handed to another patient: all or nothing again.
    before = counts(archive)
    undo = (
        f"C-001,PT-0001,mastodon,clinic,,story and photo,2026-10-01,2027-09-30,,{SHA_A}\n"
        f"C-003,PT-0999,mastodon,,,,2026-11-01,2026-12-01,,{SHA_A}\n"
    )
    csv_file = write(tmp_path, "c.csv", undo)
    result = CliRunner().invoke(app, ["consent", "import", str(csv_file), "--config", str(archive)])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[:2] == [
        f"archiver: error: {csv_file}: row 2: revoked_on empty: consent C-001 was revoked on 2026-11-20; a "
        "revocation cannot be withdrawn or re-dated: record a new consent id",
        f"archiver: error: {csv_file}: row 3: patient_ref differs from the register's for consent C-003; a "
        "consent's patient cannot change: record a new consent id",
    ]
    assert counts(archive) == before


def test_link_checks_consent_item_coverage_and_media(archive, tmp_path):
    assert invoke("consent", "import", str(write(tmp_path, "a.csv", GOOD)), "--config", str(archive)).exit_code == 0
    cfg = str(archive)
    result = invoke("consent", "link", "C-002", PHOTO_POST, "--media", PHOTO_URL, "--config", cfg)
    assert result.exit_code == 0, result.output
    assert result.output == f"consent C-002 linked to {PHOTO_POST} ({PHOTO_URL})\n"
    again = invoke("consent", "link", "C-002", PHOTO_POST, "--media", PHOTO_URL, "--config", cfg)
    assert again.output == f"consent C-002 was already linked to {PHOTO_POST} ({PHOTO_URL})\n"
    before = counts(archive)
    refusals = [
        (["C-404", POST], "consent 'C-404': not in the register; import it first with `archiver consent import`"),
        (
            ["C-002", "mastodon:clinic.example:999"],
            "item 'mastodon:clinic.example:999': not in the archive; give the item_key as the items table shows it "
            "(platform:host:id), after a run has archived the post",
        ),
        (
            ["C-002", OTHER_ACCOUNT_POST],
            f"item '{OTHER_ACCOUNT_POST}': consent C-002 covers account 'clinic', the item is from 'other'; link it "
            "to a consent that covers it",
        ),
        (
            ["C-002", POST, "--media", "https://x/1.png"],
            f"--media 'https://x/1.png': not an attachment of {POST} (its attachments: none)",
        ),
    ]
    for args, message in refusals:
        result = CliRunner().invoke(app, ["consent", "link", *args, "--config", cfg])
        assert result.exit_code == 2, args
        assert result.stderr == f"archiver: error: {message}\n"
    assert counts(archive) == before
    conn = db(archive)
    links = conn.execute("SELECT consent_id, item_key, media_url, import_id, linked_by FROM consent_links").fetchall()
    assert [tuple(r)[:4] for r in links] == [("C-001", POST, None, 1), ("C-002", PHOTO_POST, PHOTO_URL, None)]
    assert all(r["linked_by"] for r in links)
    conn.close()


def test_linking_a_lapsed_consent_warns(archive, tmp_path):
    body = f"C-009,PT-0009,mastodon,,,,2020-01-01,2020-12-31,,{SHA_A}\n"
    assert invoke("consent", "import", str(write(tmp_path, "a.csv", body)), "--config", str(archive)).exit_code == 0
    result = CliRunner().invoke(app, ["consent", "link", "C-009", POST, "--config", str(archive)])
    assert result.exit_code == 0
    assert result.stderr == (
        "warning: consent C-009 is expired today; `archiver consent check` will flag the post while it is published\n"
    )


def test_list_shows_state_status_and_items(archive, tmp_path):
    later = f"C-003,PT-0003,mastodon,,,,2026-11-01,2026-12-01,2026-11-10,{SHA_A}\n"
    for name, body in (("a.csv", GOOD), ("b.csv", later)):
        assert invoke("consent", "import", str(write(tmp_path, name, body)), "--config", str(archive)).exit_code == 0
    result = invoke("consent", "list", "--as-of", "2026-11-05", "--config", str(archive))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"C-001  live     patient PT-0001  covers mastodon / clinic  granted 2026-10-01, expires 2027-09-30  "
        f"items: {POST}  scope: story and photo",
        "C-002  live     patient PT-0002  covers clinic  granted 2026-10-15  items: none  scope: testimonial",
        "C-003  live     patient PT-0003  covers mastodon  granted 2026-11-01, expires 2026-12-01, revoked 2026-11-10  "
        "items: none",
        "3 consent(s) on 2026-11-05",
    ]
    result = invoke(
        "consent", "list", "--as-of", "2026-11-10", "--status", "revoked", "--json", "--config", str(archive)
    )
    assert json.loads(result.output) == [
        {
            "consent_id": "C-003",
            "patient_ref": "PT-0003",
            "platform": "mastodon",
            "account": None,
            "scope": "",
            "granted_on": "2026-11-01",
            "expires_on": "2026-12-01",
            "revoked_on": "2026-11-10",
            "document_sha256": SHA_A,
            "status": "revoked",
            "linked_items": [],
            "rows": 2,
        }
    ]
    bad = CliRunner().invoke(app, ["consent", "list", "--status", "gone", "--config", str(archive)])
    assert bad.exit_code == 2
    assert bad.stderr == "archiver: error: --status 'gone': not one of live, pending, expired, revoked\n"


def test_register_rows_changed_behind_the_back_are_caught(archive, tmp_path):
    assert invoke("consent", "import", str(write(tmp_path, "a.csv", GOOD)), "--config", str(archive)).exit_code == 0
    database = archive.parent / "arch" / "archive.db"
    # Quietly "un-revoke" by editing the row, and drop a link: both break the chain.
    behind_the_back(
        database,
        "UPDATE consent_register SET expires_on = '2099-12-31' WHERE consent_id = 'C-003'",
        "DELETE FROM consent_links WHERE id = 1",
    )
    conn = sqlite3.connect(database)
    problems = [str(p) for p in verify_ledger(conn)]
    conn.close()
    assert any(p.startswith("consent_register id=3: row changed since ledger seq") for p in problems), problems
    assert any(p.startswith("consent_links id=1: row entered at ledger seq") for p in problems), problems


def test_the_register_refuses_update_and_delete(archive, tmp_path):
    assert invoke("consent", "import", str(write(tmp_path, "a.csv", GOOD)), "--config", str(archive)).exit_code == 0
    conn = sqlite3.connect(archive.parent / "arch" / "archive.db")
    for table in ("consent_imports", "consent_register", "consent_links"):
        with pytest.raises(sqlite3.IntegrityError, match=f"{table} is append-only: UPDATE refused"):
            conn.execute(f"UPDATE {table} SET id = id")
        with pytest.raises(sqlite3.IntegrityError, match=f"{table} is append-only: DELETE refused"):
            conn.execute(f"DELETE FROM {table}")
    conn.close()


@pytest.mark.parametrize(
    ("granted", "expires", "revoked", "today", "status"),
    [
        ("2026-11-01", None, None, "2026-10-31", "pending"),
        ("2026-11-01", None, None, "2026-11-01", "live"),
        ("2026-11-01", "2026-12-01", None, "2026-12-01", "live"),  # the expiry day is still covered
        ("2026-11-01", "2026-12-01", None, "2026-12-02", "expired"),
        ("2026-11-01", "2026-12-01", "2026-11-15", "2026-11-14", "live"),
        ("2026-11-01", "2026-12-01", "2026-11-15", "2026-11-15", "revoked"),  # nothing from the revocation day
        ("2026-11-01", "2026-12-01", "2026-11-15", "2026-12-05", "revoked"),  # the revocation came first
    ],
)
def test_consent_status_on_a_day(granted, expires, revoked, today, status):
    assert consent_status(granted, expires, revoked, date.fromisoformat(today)) == status


def test_lapse_reason_names_what_ended_it_first():
    base = dict(consent_id="C", patient_ref="PT-1", platform="mastodon", account=None, scope="", document_sha256="")
    expired_first = ConsentState(**base, granted_on="2026-01-01", expires_on="2026-06-30", revoked_on="2026-08-01")
    assert (expired_first.lapsed_on(), expired_first.lapse_reason()) == ("2026-07-01", "expired on 2026-06-30")
    revoked_first = ConsentState(**base, granted_on="2026-01-01", expires_on="2026-06-30", revoked_on="2026-03-01")
    assert (revoked_first.lapsed_on(), revoked_first.lapse_reason()) == ("2026-03-01", "revoked on 2026-03-01")
    open_ended = ConsentState(**base, granted_on="2026-01-01", expires_on=None, revoked_on=None)
    assert (open_ended.lapsed_on(), open_ended.lapse_reason()) == (None, None)


def test_link_and_check_need_an_archive_but_import_may_start_one(tmp_path):
    config = tmp_path / "archiver.toml"
    config.write_text(
        '[archive]\ndir = "arch"\n\n[[accounts]]\nname = "clinic"\nplatform = "mastodon"\n'
        'api_base = "https://clinic.example"\naccount = "@clinic"\ntoken_env = "T"\n'
    )
    database = tmp_path / "arch" / "archive.db"
    for args in (["consent", "link", "C-001", POST], ["consent", "check"]):
        result = CliRunner().invoke(app, [*args, "--config", str(config)])
        assert result.exit_code == 2
        assert result.stderr == f"archiver: error: {database}: archive database not found; run `archiver run` first\n"
        assert not database.exists()
    assert invoke("consent", "list", "--config", str(config)).output.startswith("0 consent(s) on ")
    result = invoke("consent", "import", str(write(tmp_path, "a.csv", GOOD.replace(POST, ""))), "--config", str(config))
    assert result.exit_code == 0, result.output
    assert database.exists() and (tmp_path / "arch").stat().st_mode & 0o077 == 0


def test_a_consent_imported_before_the_name_check_can_still_be_revoked(archive, tmp_path, monkeypatch):
    """An older release let 'maria1970' through; the consent's patient can never change, so its revocation must
    repeat that value, and the daily full export names it: refused, it would block every import."""
    first = write(tmp_path, "old.csv", f"C-040,maria1970,mastodon,clinic,,,2026-10-01,,,{SHA_A}\n")
    monkeypatch.setattr(register, "names_someone", lambda ref: False)  # as the older release judged it
    assert CliRunner().invoke(app, ["consent", "import", str(first), "--config", str(archive)]).exit_code == 0
    monkeypatch.undo()
    revocation = f"C-040,maria1970,mastodon,clinic,,,2026-10-01,,2026-11-01,{SHA_A}\n"
    both = write(tmp_path, "both.csv", revocation + f"C-041,john01,mastodon,clinic,,,2026-10-01,,,{SHA_A}\n")
    result = CliRunner().invoke(app, ["consent", "import", str(both), "--config", str(archive)])
    assert result.exit_code == 2  # the new consent's name is refused, not the one the register holds
    assert "row 3: patient_ref" in result.stderr and "row 2" not in result.stderr
    alone = write(tmp_path, "revocation.csv", revocation)
    result = CliRunner().invoke(app, ["consent", "import", str(alone), "--config", str(archive)])
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("midnight_between", [False, True])
def test_a_recording_is_labelled_with_the_day_its_states_were_judged_on(archive, tmp_path, midnight_between):
    """Helper 83: every flag was judged in one statement and the recording's day read in a later one; a midnight
    between labelled states judged on one day with the next, and all that day the queue showed a flag flag_status
    had cleared. Here midnight falls right after the judgement: the states are judged again, on the new day."""
    from archiver.config import load_config
    from archiver.consent.check import append_consent_check, build_signal_detector
    from archiver.consent.register import append_consent_import, config_accounts
    from archiver.flag_states import compare_review_queue

    first, second = "2026-12-31", "2027-01-01"
    config = load_config(archive)
    store = Store.open(tmp_path / "arch" / "archive.db")
    judge_on(store.conn, first)
    append_consent_check(store, build_signal_detector(config), date.fromisoformat(first))  # the story's flag
    day, judged = [first], [False]
    real = _connect(":memory:")
    store.conn.create_function(
        "date", 2, lambda v, m: day[0] if v == "now" else real.execute("SELECT date(?, ?)", (v, m)).fetchone()[0]
    )

    def clock(sql: str) -> None:
        if "FROM flag_status" in sql:
            judged[0] = True
        elif midnight_between and judged[0] and "date('now', 'localtime')" in sql:
            day[0] = second

    store.conn.set_trace_callback(clock)
    # a consent granted tomorrow, linked to the story: today its flag stays open, tomorrow it is covered
    consents = tmp_path / "c.csv"
    consents.write_text(
        "consent_id,patient_ref,platform,account,item,scope,granted_on,expires_on,revoked_on,document_sha256\n"
        f"C-1,PT-0001,mastodon,clinic,{POST},story,{second},,,{SHA_A}\n"
    )
    append_consent_import(store, consents, platforms=["mastodon"], accounts=config_accounts(config))
    store.close()
    real.close()
    conn = judge_on(Store.open(tmp_path / "arch" / "archive.db").conn, day[0])
    latest = conn.execute("SELECT local_day FROM flag_recordings ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert latest == day[0]
    assert compare_review_queue(conn).agree, compare_review_queue(conn)
