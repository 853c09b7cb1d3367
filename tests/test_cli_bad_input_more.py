"""More bad input to the CLI (see test_cli_bad_input.py): files that are not UTF-8, values that would break a line
of an append-only row, ports, dates and ids out of range, a config naming no archive. Each is one line naming the
file, option or value, exit 2, and the archive as it was; none is a traceback."""

from __future__ import annotations

import shlex
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.bundle.select import parse_when
from archiver.cli import app

from .test_cli_bad_input import archive_files, assert_one_line_exit_2, invoke, run_rows, write_config
from .test_config import DISABLED

LATIN_1_STAFF = "Helen Arbogast\nJosé García\n".encode("latin-1")


def count(database: Path, table: str) -> int:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def archived(tmp_path: Path) -> Path:
    """An archive holding one run (of no account), its config at tmp_path / archiver.toml."""
    result = invoke("run", "--config", str(write_config(tmp_path, DISABLED)), "--quiet")
    assert result.exit_code == 0 and run_rows(tmp_path / "arch") == 1, result.output
    return tmp_path / "arch"


# -- a staff file that is not UTF-8 ---------------------------------------------------------------------------------
def test_a_staff_file_not_in_utf8_fails_the_scan_as_a_missing_one_does_and_the_run_is_kept(tmp_path):
    """As a missing staff file: the run captures, signs and records its result; its scan fails with the notice
    naming the file (exit 1); `archiver scan` alone is one line, exit 2."""
    (tmp_path / "staff.txt").write_bytes(LATIN_1_STAFF)
    config = write_config(tmp_path, DISABLED + '\n[scan]\nstaff_file = "staff.txt"\n')
    result = invoke("run", "--config", str(config), "--quiet")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    said = f"[scan] staff_file {tmp_path / 'staff.txt'}: line 2: byte 0xe9 is not UTF-8; save the file as UTF-8"
    assert f"PHI scan failed: {config}: {said}" in result.output, result.output
    database = tmp_path / "arch" / "archive.db"
    assert (count(database, "runs"), count(database, "run_results"), count(database, "checkpoints")) == (1, 1, 1)
    before = archive_files(tmp_path / "arch")
    assert_one_line_exit_2(invoke("scan", "--config", str(config)), said)
    assert archive_files(tmp_path / "arch") == before


# -- scan --text ----------------------------------------------------------------------------------------------------
def test_scan_text_of_a_file_not_in_utf8_names_the_file_and_line(tmp_path):
    source = tmp_path / "posts.jsonl"
    source.write_bytes(b'\n{"id": 2, "text": "caf\xe9"}\n{"id": 3, "text": "fine"}\n')  # line 1 is blank
    assert_one_line_exit_2(
        invoke("scan", "--text", str(source)), f"{source}: line 2: byte 0xe9 is not UTF-8; save the file as UTF-8"
    )


def test_scan_text_from_stdin_not_in_utf8_is_one_line():
    result = CliRunner().invoke(app, ["scan", "--text", "-"], input=b'{"id": 1, "text": "caf\xe9"}\n')
    assert_one_line_exit_2(result, "<stdin>: line 1: byte 0xe9 is not UTF-8")


def test_scan_text_still_reads_utf8_from_a_file_and_stdin(tmp_path):
    source = tmp_path / "posts.jsonl"
    source.write_text('{"id": "a", "text": "Zoë had a lovely day"}\n\n', "utf-8")
    for args, stdin in ((["--text", str(source)], None), (["--text", "-"], source.read_bytes())):
        result = CliRunner().invoke(app, ["scan", *args], input=stdin)
        assert result.exit_code == 0 and result.output == '{"id": "a", "flagged": false, "flags": []}\n', result.output


def test_scan_text_with_all_is_a_contradiction(tmp_path):
    source = tmp_path / "posts.jsonl"
    source.write_text('{"id": 1, "text": "hello"}\n', "utf-8")
    assert_one_line_exit_2(invoke("scan", "--text", str(source), "--all"), "--all", "--text", "give only one")


# -- review: names and notes that would break a line, ids beyond SQLite's integers ----------------------------------
@pytest.fixture
def flagged(demo_template, tmp_path) -> Path:
    """The demo archive's config: it holds flags (flag 1 among them)."""
    return demo_template.copy_to(tmp_path / "demo") / "archiver.toml"


@pytest.mark.parametrize(
    ("args", "env", "option", "char"),
    [
        (["--reviewer", "bob\nreview 2: flag 1 false-positive by alice"], {}, "--reviewer", "\n"),
        (["--reviewer", "bob\u202eecila"], {}, "--reviewer", "\u202e"),  # shows as "bobalice"
        (["--note", "\x1b[2Jall clear"], {}, "--note", "\x1b"),
        (["--note", "fax number\u2028review 9: escalated"], {}, "--note", "\u2028"),
        ([], {"ARCHIVER_REVIEWER": "bob\r\nreview 2: by alice"}, "$ARCHIVER_REVIEWER", "\r"),
    ],
    ids=["reviewer newline", "reviewer bidi override", "note escape", "note line separator", "env reviewer CR"],
)
def test_review_refuses_characters_that_break_or_hide_a_line_and_writes_nothing(flagged, args, env, option, char):
    database = flagged.parent / "archive" / "archive.db"
    before = (count(database, "flag_reviews"), count(database, "ledger"))
    result = CliRunner().invoke(app, ["review", "1", "-d", "escalated", *args, "--config", str(flagged)], env=env)
    assert_one_line_exit_2(result, f"{option} ", f"is U+{ord(char):04X}", "breaks or hides a line")
    assert (count(database, "flag_reviews"), count(database, "ledger")) == before


def test_review_keeps_names_and_notes_in_any_script(flagged):
    """Only what breaks or hides a line is refused: accents, other scripts and emoji (joined by U+200D) are not."""
    note = "patient's name removed 👩‍⚕️; ok per Ωmega policy"
    who = ["--reviewer", "Zoë Ñúñez", "--note", note]
    result = CliRunner().invoke(app, ["review", "1", "-d", "false-positive", *who, "--config", str(flagged)])
    assert result.exit_code == 0 and result.output.endswith("flag 1 false-positive by Zoë Ñúñez\n"), result.output
    conn = sqlite3.connect(flagged.parent / "archive" / "archive.db")
    assert conn.execute("SELECT reviewer, note FROM flag_reviews ORDER BY id DESC").fetchone() == ("Zoë Ñúñez", note)
    conn.close()


def test_review_of_an_id_beyond_sqlite_integers_is_no_such_flag(archived, tmp_path):
    before = count(archived / "archive.db", "ledger")
    result = invoke("review", "99999999999999999999", "-d", "violation", "--config", str(tmp_path / "archiver.toml"))
    assert_one_line_exit_2(result, "flag 99999999999999999999: no such flag")
    assert count(archived / "archive.db", "ledger") == before


# -- rebuild with a config that names no archive --------------------------------------------------------------------
def test_rebuild_of_a_config_naming_no_archive_is_exit_2_and_writes_nothing(tmp_path):
    config = write_config(tmp_path, DISABLED)
    config.write_text(config.read_text().replace('dir = "arch"', 'dir = "no-such-archive"'))
    out = tmp_path / "rebuilt.db"
    result = invoke("rebuild", "--config", str(config), "--out", str(out), "--quiet")
    assert_one_line_exit_2(result, f"{tmp_path / 'no-such-archive' / 'warcs'}: no such WARC folder", str(config))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archiver.toml"]


# -- serve and demo: ports -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("command", "port"), [("serve", "70000"), ("serve", "-1"), ("serve", "0"), ("demo", "70000")])
def test_a_port_out_of_range_is_one_line_exit_2_before_anything(tmp_path, command, port):
    config = write_config(tmp_path, DISABLED)
    where = ["--config", str(config)] if command == "serve" else ["--dir", str(tmp_path / "demo")]
    done = subprocess.run(
        [sys.executable, "-m", "archiver", command, *where, f"--port={port}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("archiver: error: ") and "'--port'" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archiver.toml"]


def test_serving_on_a_port_in_use_is_one_line_exit_2_and_makes_no_access_log(archived, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = archive_files(archived)
        result = invoke("serve", "--config", str(tmp_path / "archiver.toml"), "--port", str(port))
    assert_one_line_exit_2(result, f"127.0.0.1:{port}: already in use", "--port")
    assert "serving" not in result.output
    assert archive_files(archived) == before and not (archived / "access-log.db").exists()


# -- export: dates at the ends of the calendar, ranges that end before they start ------------------------------------
@pytest.fixture
def demo_config(demo_template, tmp_path) -> Path:
    return demo_template.copy_to(tmp_path / "demo") / "archiver.toml"


def export(config: Path, out: Path, *args: str):
    return invoke("export", "--config", str(config), "--case", "C-1", "--out", str(out), "--quiet", *args)


def test_export_posted_to_the_last_day_of_the_calendar_means_no_upper_bound(demo_config, tmp_path):
    everything, bounded = tmp_path / "all", tmp_path / "bounded"
    assert export(demo_config, everything, "--platform", "x").exit_code == 0
    result = export(demo_config, bounded, "--platform", "x", "--posted-to", "9999-12-31", "--posted-from", "0001-01-01")
    assert result.exit_code == 0, result.output
    items = "data/items.jsonl"
    assert (bounded / items).read_text() == (everything / items).read_text() != ""


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--posted-from", "0001-01-01T00:00+01:00"], ["--posted-from '0001-01-01T00:00+01:00': outside the years"]),
        (["--captured-to", "9999-12-31T23:00-05:00"], ["--captured-to '9999-12-31T23:00-05:00': outside the years"]),
        (
            ["--posted-from", "2026-12-01", "--posted-to", "2026-11-01"],
            ["--posted-from '2026-12-01' is after --posted-to '2026-11-01'", "swap"],
        ),
        (
            ["--captured-from", "2026-11-02T00:00Z", "--captured-to", "2026-11-01"],
            ["--captured-from '2026-11-02T00:00Z' is after --captured-to '2026-11-01'"],
        ),
    ],
    ids=["posted-from before year 1", "captured-to after 9999", "posted reversed", "captured reversed"],
)
def test_export_dates_out_of_range_or_reversed_are_one_line_and_write_nothing(demo_config, tmp_path, args, words):
    database = demo_config.parent / "archive" / "archive.db"
    before = [count(database, t) for t in ("exports", "checkpoints", "ledger")]
    assert_one_line_exit_2(export(demo_config, tmp_path / "out", "--platform", "x", *args), *words)
    assert [count(database, t) for t in ("exports", "checkpoints", "ledger")] == before
    assert not (tmp_path / "out").exists()


def test_a_day_before_the_year_1000_is_a_bound_that_compares_as_text():
    """strftime's %Y writes the year 999 as "999", which sorts after "2026": the bound would select nothing."""
    assert parse_when("0999-01-01", "--posted-from") == "0999-01-01T00:00:00.000000Z"
    assert parse_when("9999-12-31", "--posted-to", end=True) == "9999-12-31T23:59:59.999999Z"


# -- a database that is not one: named ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["not sqlite", "a folder"])
def test_a_database_that_cannot_be_opened_is_named(tmp_path, kind):
    config = write_config(tmp_path, DISABLED)
    config.write_text(config.read_text().replace('dir = "arch"', 'dir = "arch"\ndatabase = "notes.db"'))
    database = tmp_path / "arch" / "notes.db"
    database.parent.mkdir()
    if kind == "a folder":
        database.mkdir()
    else:
        database.write_text("not sqlite\n")
    assert_one_line_exit_2(
        invoke("status", "--config", str(config)), f"{database}: the archive database cannot be used"
    )


# -- init: the next step can be pasted into a shell -------------------------------------------------------------------
def test_init_quotes_the_config_path_in_the_next_step(tmp_path):
    config = tmp_path / "my archive" / "archiver's.toml"
    result = invoke("init", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert f"then run `archiver run --config {shlex.quote(str(config))}`" in result.output
