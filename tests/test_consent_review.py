"""The consent register after review 2026-11-24j: what a link may name, a register import that outlives an
account, what a later row may change, cells that would forge lines, spreadsheet exports, and the dates and
statuses the views give a lapse."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.consent.state import consent_status
from archiver.items import AccountIdentity, Deletion, Item
from archiver.store import Store

from .test_consent_register import HEADER, REF, SHA_A, counts, db, invoke, judge_on, write

HOST = "clinic.example"
POST = f"mastodon:{HOST}:101"
OWN_REPLY = f"mastodon:{HOST}:102"
PUBLIC_REPLY = f"mastodon:{HOST}:103"
MESSAGE = f"mastodon:{HOST}:104"
GONE = f"mastodon:{HOST}:105"
CLINIC_ID = "1"  # the clinic account's id on its platform


def item(item_key: str, kind: str, author_id: str, handle: str, text: str) -> Item:
    return Item(
        item_key=item_key,
        platform="mastodon",
        kind=kind,
        native_id=item_key.rsplit(":", 1)[1],
        source=REF,
        raw={"id": item_key},
        text=text,
        created_at="2026-11-01T10:00:00.000Z",
        parent_key=POST if kind == "comment" else None,
        author_id=author_id,
        author_handle=handle,
    )


def config_text(*accounts: str) -> str:
    text = '[archive]\ndir = "arch"\n'
    for name in accounts:
        text += (
            f'\n[[accounts]]\nname = "{name}"\nplatform = "mastodon"\napi_base = "https://{name}.example"\n'
            f'account = "@{name}"\ntoken_env = "T"\n'
        )
    return text


@pytest.fixture
def archive(tmp_path) -> Path:
    """The clinic's account with its recorded identity: its post, its own reply, a member of the public's
    reply, a direct message it sent, and a post it took down."""
    config = tmp_path / "archiver.toml"
    config.write_text(config_text("clinic", "other"))
    store = Store.open(tmp_path / "arch" / "archive.db")
    store.append_run("run1", "host", "0" * 64, ["clinic"])
    with store.transaction():
        store.append_account_identity("clinic", "mastodon", f"https://{HOST}", AccountIdentity(CLINIC_ID), "run1")
        store.append_item("clinic", item(POST, "post", CLINIC_ID, "clinic", "Meet our patient Ann"), "run1")
        store.append_item("clinic", item(OWN_REPLY, "comment", CLINIC_ID, "clinic", "Ann is home today!"), "run1")
        store.append_item("clinic", item(PUBLIC_REPLY, "comment", "99", "pat", "Go Ann!"), "run1")
        store.append_item("clinic", item(MESSAGE, "message", CLINIC_ID, "clinic", "Your photo is up"), "run1")
        store.append_item("clinic", item(GONE, "post", CLINIC_ID, "clinic", "Meet our patient Bo"), "run1")
        store.append_deletion(Deletion(GONE, {"lookup": "404"}, REF), "run1")
    store.close()
    return config


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def imported(archive: Path, tmp_path: Path, name: str, body: str) -> None:
    result = invoke("consent", "import", str(write(tmp_path, name, body)), "--config", str(archive))
    assert result.exit_code == 0, result.output


def test_link_refuses_what_the_check_never_reads(archive, tmp_path):
    imported(archive, tmp_path, "a.csv", f"C-1,PT-0001,mastodon,clinic,,story,2026-10-01,,,{SHA_A}\n")
    cfg = str(archive)
    before = counts(archive)
    why = (
        "the consent check reads only what the organisation published (its posts and its own replies); link the "
        "consent to the organisation's post or reply that shows the patient"
    )
    for key, message in (
        (PUBLIC_REPLY, f"item '{PUBLIC_REPLY}': a comment by @pat, not by the account 'clinic': {why}"),
        (MESSAGE, f"item '{MESSAGE}': a direct message is not published: {why}"),
    ):
        result = run("consent", "link", "C-1", key, "--config", cfg)
        assert (result.exit_code, result.stderr) == (2, f"archiver: error: {message}\n")
    assert counts(archive) == before
    # the import's item column is held to the same rule, all or nothing
    bad = write(tmp_path, "b.csv", f"C-2,PT-0002,mastodon,clinic,{PUBLIC_REPLY},story,2026-10-01,,,{SHA_A}\n")
    result = run("consent", "import", str(bad), "--config", cfg)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"archiver: error: {bad}: row 2: item '{PUBLIC_REPLY}': a comment by @pat, not by the account 'clinic': {why}"
    )
    assert counts(archive) == before

    # The clinic's own reply is what the check reads; a post it took down is linked with a notice, not a promise.
    result = run("consent", "link", "C-1", OWN_REPLY, "--config", cfg)
    assert (result.exit_code, result.stdout, result.stderr) == (0, f"consent C-1 linked to {OWN_REPLY}\n", "")
    result = run("consent", "link", "C-1", GONE, "--config", cfg)
    assert (result.exit_code, result.stdout) == (0, f"consent C-1 linked to {GONE}\n")
    assert result.stderr == (
        f"notice: {GONE} is deleted on the platform (the archive keeps it); `archiver consent check` reads it again "
        "only if it is restored\n"
    )
    conn = db(archive)
    assert [r[0] for r in conn.execute("SELECT item_key FROM consent_links ORDER BY id")] == [OWN_REPLY, GONE]
    conn.close()


def test_a_removed_accounts_unchanged_rows_still_import(tmp_path):
    """The records system's full export names consents of an account since removed from the config: those
    rows, unchanged, are skipped, and a revocation of another consent in the same file is recorded."""
    full, reduced = tmp_path / "full.toml", tmp_path / "reduced.toml"
    full.write_text(config_text("clinic", "closed"))
    reduced.write_text(config_text("clinic"))
    day1 = (
        f"C-1,PT-0001,,clinic,,story,2026-01-10,,,{SHA_A}\nC-2,PT-0002,,closed,,photo,2026-01-10,2026-06-30,,{SHA_A}\n"
    )
    imported(full, tmp_path, "day1.csv", day1)
    day2 = day1.replace("2026-01-10,,,", "2026-01-10,,2026-11-20,", 1)
    result = invoke("consent", "import", str(write(tmp_path, "day2.csv", day2)), "--config", str(reduced))
    assert result.exit_code == 0, result.output
    assert "0 new consent(s), 1 changed, 1 unchanged" in result.output
    conn = db(full)
    assert conn.execute("SELECT revoked_on FROM consents WHERE consent_id = 'C-1'").fetchone()[0] == "2026-11-20"
    conn.close()

    # A new or changed row naming the removed account is still refused, naming the row and the account.
    before = counts(full)
    for name, body in (
        ("new.csv", f"C-3,PT-0003,,closed,,photo,2026-02-01,,,{SHA_A}\n"),
        ("changed.csv", day2.replace("2026-06-30,,", "2026-06-30,2026-11-21,")),
    ):
        csv_file = write(tmp_path, name, body)
        result = run("consent", "import", str(csv_file), "--config", str(reduced))
        assert result.exit_code == 2
        row = 2 if name == "new.csv" else 3
        assert result.stderr.splitlines() == [
            f"archiver: error: {csv_file}: row {row}: account 'closed': not a configured account (configured: "
            "clinic); correct the row, or add the account to the config (a consent of an account no longer "
            "configured is skipped only while its row is unchanged)",
            "archiver: nothing imported: 1 bad row(s); fix them and import the whole file again",
        ]
    assert counts(full) == before


def test_what_a_consent_covers_and_its_form_cannot_change(archive, tmp_path):
    first = f"C-1,PT-0001,mastodon,clinic,{POST},story,2026-10-01,2027-09-30,,{SHA_A}\n"
    imported(archive, tmp_path, "a.csv", first)
    before = counts(archive)
    other_sha = "f" * 64
    first = first.replace(POST, "")  # the link is made; later rows need not repeat it
    for changed, what in (
        (first.replace(",clinic,", ",other,"), "account 'other' (the register has 'clinic')"),
        (first.replace("mastodon,clinic", ",clinic"), "platform empty (the register has 'mastodon')"),
        (first.replace(",story,", ",another campaign,"), "scope 'another campaign' (the register has 'story')"),
        (first.replace(SHA_A, other_sha), f"document_sha256 '{other_sha}' (the register has '{SHA_A}')"),
    ):
        csv_file = write(tmp_path, "b.csv", changed)
        result = run("consent", "import", str(csv_file), "--config", str(archive))
        assert result.exit_code == 2, what
        assert result.stderr.splitlines()[0] == (
            f"archiver: error: {csv_file}: row 2: {what}: what consent C-1 covers and its signed form cannot "
            "change: record a new consent id"
        )
    assert counts(archive) == before
    # What the README promises stays: a new expiry, then a revocation.
    imported(archive, tmp_path, "c.csv", first.replace("2027-09-30,,", "2028-09-30,,"))
    imported(archive, tmp_path, "d.csv", first.replace("2027-09-30,,", "2028-09-30,2026-11-20,"))
    conn = db(archive)
    assert conn.execute("SELECT count(*) FROM consent_register").fetchone()[0] == 3
    conn.close()


@pytest.mark.parametrize(
    ("cell", "column", "found"),
    [
        ('"story\nC-9  live     patient PT-9"', "scope", "character 6 is U+000A (a control character)"),
        ("story \x1b[31mred", "scope", "character 7 is U+001B (a control character)"),
        ("story \u202eyroc", "scope", "character 7 is U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ],
    ids=["line-break", "escape", "bidi"],
)
def test_a_cell_that_breaks_or_hides_a_line_is_refused(archive, tmp_path, cell, column, found):
    before = counts(archive)
    csv_file = write(tmp_path, "a.csv", f"C-1,PT-0001,mastodon,clinic,,{cell},2026-10-01,,,{SHA_A}\n")
    result = run("consent", "import", str(csv_file), "--config", str(archive))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"archiver: error: {csv_file}: row 2: {column}: {found}, which breaks or hides a line; remove it in the "
        "file and import it again",
        "archiver: nothing imported: 1 bad row(s); fix them and import the whole file again",
    ]
    assert counts(archive) == before


def test_an_item_cell_with_a_control_character_is_refused_too(archive, tmp_path):
    csv_file = write(tmp_path, "a.csv", f"C-1,PT-0001,mastodon,clinic,{POST}\x1b,,2026-10-01,,,{SHA_A}\n")
    result = run("consent", "import", str(csv_file), "--config", str(archive))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith(
        f"archiver: error: {csv_file}: row 2: item: character {len(POST) + 1} is U+001B"
    )


def test_a_spreadsheets_empty_columns_at_the_end_are_accepted(archive, tmp_path):
    csv_file = tmp_path / "excel.csv"
    csv_file.write_text(
        HEADER.rstrip("\n") + ",,\n" + f"C-1,PT-0001,mastodon,clinic,,story,2026-10-01,,,{SHA_A},,\n" + ",,,,,,,,,,,\n"
    )
    result = invoke("consent", "import", str(csv_file), "--config", str(archive))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{csv_file}: 1 row(s): 1 new consent(s)")
    # a value under no column name, or a name missing in the middle, is refused with what to do
    csv_file.write_text(HEADER.rstrip("\n") + ",,\n" + f"C-2,PT-0002,mastodon,clinic,,s,2026-10-01,,,{SHA_A},,x\n")
    result = run("consent", "import", str(csv_file), "--config", str(archive))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"archiver: error: {csv_file}: row 2: has 12 fields, the header has 10; the values after column 10 have no "
        "column name: name it in row 1 or delete them"
    )
    csv_file.write_text("consent_id,patient_ref,,granted_on,document_sha256\n" + f"C-2,PT-0002,,2026-10-01,{SHA_A}\n")
    result = run("consent", "import", str(csv_file), "--config", str(archive))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith(
        f"archiver: error: {csv_file}: row 1 (header): column(s) 3 have no name; the columns are consent_id"
    )


@pytest.mark.parametrize(
    ("expires", "revoked", "status", "lapsed_on"),
    [
        ("2026-11-10", "2026-11-20", "expired", "2026-11-11"),  # expired, revoked later: the expiry ended it
        ("2026-12-31", "2026-11-15", "revoked", "2026-11-15"),  # revoked before it would have expired
        ("2026-11-14", "2026-11-15", "revoked", "2026-11-15"),  # the same first day: the revocation is named
    ],
)
def test_status_and_lapsed_on_name_what_ended_the_consent_first(archive, tmp_path, expires, revoked, status, lapsed_on):
    today = "2026-11-25"
    assert consent_status("2026-10-01", expires, revoked, date.fromisoformat(today)) == status
    imported(archive, tmp_path, "a.csv", f"C-1,PT-0001,mastodon,clinic,{POST},story,2026-10-01,{expires},,{SHA_A}\n")
    imported(
        archive, tmp_path, "b.csv", f"C-1,PT-0001,mastodon,clinic,{POST},story,2026-10-01,{expires},{revoked},{SHA_A}\n"
    )
    conn = judge_on(db(archive), today)
    assert conn.execute("SELECT status FROM consents").fetchone()[0] == status
    lapsed = conn.execute("SELECT consent_status, lapsed_on FROM lapsed_consents").fetchall()
    assert [tuple(r) for r in lapsed] == [(status, lapsed_on)]
    conn.close()


def test_lapsed_consents_leaves_out_links_the_check_never_reads(archive, tmp_path):
    """An archive made before links were refused may hold one to a member of the public's comment: the view of
    what the check flags does not list it."""
    imported(archive, tmp_path, "a.csv", f"C-1,PT-0001,mastodon,clinic,{POST},story,2026-10-01,2026-10-31,,{SHA_A}\n")
    store = Store.open(archive.parent / "arch" / "archive.db")
    with store.transaction():
        for key in (PUBLIC_REPLY, MESSAGE):
            store._insert(
                "consent_links",
                {"consent_id": "C-1", "item_key": key, "linked_by": "old", "linked_at": "2026-11-01T00:00:00Z"},
            )
    store.close()
    conn = db(archive)
    assert [r[0] for r in conn.execute("SELECT item_key FROM lapsed_consents")] == [POST]
    conn.close()


def test_list_into_a_reader_that_stopped_ends_quietly(archive, tmp_path):
    """`archiver consent list | head -1`: the reader goes away; no error message, the exit of SIGPIPE."""
    imported(archive, tmp_path, "a.csv", f"C-1,PT-0001,mastodon,clinic,,story,2026-10-01,,,{SHA_A}\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has already stopped
    try:
        done = subprocess.run(
            [sys.executable, "-m", "archiver", "consent", "list", "--config", str(archive)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr.decode()) == (141, "")
