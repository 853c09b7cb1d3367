"""`archiver review-replay`: after an upgrade whose parser reads old captures into other rows, `verify --replay`
names those rows as errors for ever; a person who has read them records so, and only those exact differences
become notes. Anything else the replay finds, or a reviewed row changed since, stays an error."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from archiver.cli import app
from archiver.connectors import mastodon
from archiver.connectors.mastodon import MastodonConnector
from archiver.replay_review import Difference, difference_set
from archiver.store import Store

REVIEWER = "Dana Lee"
NOTE = "mastodon parser revision: text read anew (release notes)"


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_template) -> Path:
    return demo_template.copy_to(tmp_path_factory.mktemp("replay-review") / "demo")


@pytest.fixture
def archive(demo, tmp_path, monkeypatch) -> Path:
    """A copy of the demo archive, its replay's temporary folder in the test's own."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return shutil.copytree(demo, tmp_path / "demo")


@pytest.fixture
def upgraded(monkeypatch) -> None:
    """This software's Mastodon parser reads the same records into other text, and says so by its revision."""
    monkeypatch.setattr(mastodon, "html_to_text", lambda html: "READ ANEW")
    monkeypatch.setattr(MastodonConnector, "PARSER_REVISION", MastodonConnector.PARSER_REVISION + 1)


def cli(archive: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--config", str(archive / "archiver.toml")])


def listed_set(result: Result) -> str:
    found = re.search(r"--confirm ([0-9a-f]{12}) ", result.output)
    assert found, result.output
    return found.group(1)


def reviews(archive: Path) -> list[tuple]:
    with sqlite3.connect(archive / "archive" / "archive.db") as conn:
        return conn.execute("SELECT reviewer, note, operator, place FROM replay_reviews ORDER BY id").fetchall()


def test_reviewed_differences_become_notes_and_verify_passes(archive, upgraded):
    before = cli(archive, "verify", "--replay")
    assert before.exit_code == 1
    errors = [line for line in before.output.splitlines() if line.startswith("item_versions ")]
    assert errors and all("a parser change since may explain this" in line for line in errors)
    assert "`archiver review-replay` records so" in before.output

    listing = cli(archive, "review-replay")
    assert listing.exit_code == 0, listing.output
    shown = [line for line in listing.output.splitlines() if line.startswith("difference ")]
    assert len(shown) == len(errors)
    assert reviews(archive) == []  # listing records nothing

    recorded = cli(archive, "review-replay", "--confirm", listed_set(listing), "--reviewer", REVIEWER, "--note", NOTE)
    assert recorded.exit_code == 0, recorded.output
    assert f"recorded {len(errors)} replay review(s) by {REVIEWER}" in recorded.output
    rows = reviews(archive)
    assert len(rows) == len(errors)
    assert {(r[0], r[1]) for r in rows} == {(REVIEWER, NOTE)} and all(r[2] for r in rows)

    after = cli(archive, "verify", "--replay")
    assert after.exit_code == 0, after.output
    # one review of many differences is one line to read; --json names each
    conn = sqlite3.connect(archive / "archive" / "archive.db")
    ids = [r[0] for r in conn.execute("SELECT id FROM replay_reviews")]
    conn.close()
    notes = [line for line in after.output.splitlines() if line.startswith("note: replay: ")]
    assert len(errors) > 1 and len(notes) == 1, after.output
    assert notes[0].startswith(f"note: replay: {len(errors)} differences in item_versions reviewed by {REVIEWER} on ")
    assert notes[0].endswith(
        f": {NOTE} (replay_reviews ids {min(ids)} to {max(ids)}; `archiver verify --replay --json` lists each)"
    )
    assert not any(line.startswith("note: item_versions ") for line in after.output.splitlines())
    assert f"replay: {len(errors)} difference(s) a person reviewed earlier" in after.output
    assert "archive verifies" in after.output
    listed = json.loads(cli(archive, "verify", "--replay", "--json").output)["problems"]
    each = [p for p in listed if p["where"].startswith("item_versions ") and p["severity"] == "note"]
    assert len(each) == len(errors) and sorted(p["review_id"] for p in each) == sorted(ids)
    assert all(f"reviewed by {REVIEWER} on " in p["message"] and p["message"].endswith(NOTE) for p in each)

    again = cli(archive, "review-replay")
    assert again.exit_code == 0 and "no difference a parser change may explain is left to review" in again.output


def test_a_difference_read_otherwise_since_is_an_error_again(archive, upgraded, monkeypatch):
    """The digest covers the replayed row whole: the same live row read into yet another text is not what the
    person reviewed."""
    listing = cli(archive, "review-replay")
    assert cli(archive, "review-replay", "--confirm", listed_set(listing), "--note", NOTE).exit_code == 0
    monkeypatch.setattr(mastodon, "html_to_text", lambda html: "READ ANEW, AGAIN")
    result = cli(archive, "verify", "--replay")
    assert result.exit_code == 1
    assert "reviewed by" not in result.output


def test_a_row_appended_after_the_review_is_still_an_error(archive, upgraded):
    """Someone with write access appends a version no capture made, in an old run of the upgraded platform: its
    difference carries the parser hint too, but nobody reviewed it."""
    listing = cli(archive, "review-replay")
    assert cli(archive, "review-replay", "--confirm", listed_set(listing), "--note", NOTE).exit_code == 0
    store = Store.open(archive / "archive" / "archive.db")
    try:
        cur = store.conn.execute("SELECT * FROM item_versions WHERE platform = 'mastodon' ORDER BY id LIMIT 1")
        row = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
        with store.transaction():
            store._insert("item_versions", {**{k: v for k, v in row.items() if k != "id"}, "text": "FORGED"})
    finally:
        store.close()
    result = cli(archive, "verify", "--replay")
    assert result.exit_code == 1
    forged = [line for line in result.output.splitlines() if "FORGED" in line]
    assert forged and all(not line.startswith("note:") and "parser change since may explain" in line for line in forged)


def test_confirm_must_name_the_set_read_and_a_note(archive, upgraded):
    listing = cli(archive, "review-replay")
    found = listed_set(listing)
    wrong = cli(archive, "review-replay", "--confirm", "0" * 12, "--note", NOTE)
    assert wrong.exit_code == 2
    assert f"the differences left to review are now set '{found}'" in wrong.output
    no_note = cli(archive, "review-replay", "--confirm", found)
    assert no_note.exit_code == 2 and "--note: needed with --confirm" in no_note.output
    hidden = cli(archive, "review-replay", "--confirm", found, "--note", "fine\x1b[2K")
    assert hidden.exit_code == 2 and "U+001B" in hidden.output
    nobody = cli(archive, "review-replay", "--confirm", found, "--note", NOTE, "--reviewer", "  ")
    assert nobody.exit_code == 2 and "--reviewer: empty" in nobody.output
    assert reviews(archive) == []


def test_a_difference_no_parser_change_explains_cannot_be_reviewed(archive, monkeypatch):
    """The same rows read otherwise, by a parser of the same revision: nothing explains it, nothing to review."""
    monkeypatch.setattr(mastodon, "html_to_text", lambda html: "READ ANEW")
    result = cli(archive, "review-replay")
    assert result.exit_code == 1
    assert "no difference a parser change may explain is left to review" in result.output
    assert "other difference(s) no parser change explains" in result.output
    assert reviews(archive) == []


def test_an_archive_that_does_not_verify_records_nothing(archive, upgraded):
    warc = next((archive / "archive" / "warcs").glob("*.warc.gz"))
    data = bytearray(warc.read_bytes())
    data[len(data) // 2] ^= 0xFF
    warc.write_bytes(bytes(data))
    result = cli(archive, "review-replay", "--confirm", "0" * 12, "--note", NOTE)
    assert result.exit_code == 1
    assert "nothing recorded" in result.output and reviews(archive) == []


def test_the_set_names_the_differences_not_their_order():
    a, b = Difference("x", "m", digest="a" * 64), Difference("y", "n", digest="b" * 64)
    assert difference_set([a, b]) == difference_set([b, a]) != difference_set([a])


def test_replay_reviews_are_append_only_and_a_removed_one_is_caught(archive, upgraded):
    listing = cli(archive, "review-replay")
    assert cli(archive, "review-replay", "--confirm", listed_set(listing), "--note", NOTE).exit_code == 0
    database = archive / "archive" / "archive.db"
    with sqlite3.connect(database) as conn, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE replay_reviews SET note = 'x'")
    with sqlite3.connect(database) as conn:
        conn.execute("DROP TRIGGER replay_reviews_append_only_delete")
        conn.execute("DELETE FROM replay_reviews WHERE id = (SELECT max(id) FROM replay_reviews)")
    result = cli(archive, "verify")
    assert result.exit_code == 1
    assert "replay_reviews" in result.output
