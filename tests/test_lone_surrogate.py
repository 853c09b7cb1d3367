"""A lone UTF-16 surrogate in a platform's JSON ("\\ud83d": half an emoji, a text cut at a code unit) is archived.

No UTF-8 encoder takes such a character, and SQLite is UTF-8: it used to fail its account with "unexpected
UnicodeEncodeError" every night, and nothing after the item was ever captured. Now the columns a reader sees hold
U+FFFD in its place, the raw JSON keeps its escape (it still equals the WARC payload, as verify compares them),
and the canonical bytes write it as its JSON escape, all other bytes as before (schemas/ledger.md).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sqlite3
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver import items
from archiver.cli import app
from archiver.connectors.mastodon import MastodonConnector
from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer
from archiver.demo.png import make_png
from archiver.errors import PlatformError
from archiver.items import AccountIdentity, CursorUpdate, Deletion, Item, MediaFile, Notice, canonical_json
from archiver.ledger import verify_ledger
from archiver.replay_check import compare_databases
from archiver.warc import CaptureRef
from archiver.workspace.raw import read_record

TOKEN = "surrogate-test-token-Hq52w"
HIGH, LOW = "\ud83d", "\ude00"  # the halves of U+1F600, each alone
FFFD = "\ufffd"

# The encoder canonical_json was before lone surrogates were escaped: what every existing archive was hashed with.
_OLD_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def old_canonical_json(value: object) -> bytes:
    return _OLD_CANONICAL.encode(value).encode("utf-8")


@dataclass(frozen=True)
class Archived:
    config: Path
    arch: Path
    served: int  # statuses the platform lists
    runs: tuple[int, int]  # the exit codes of two nightly runs


def clinic(now: datetime) -> MastodonState:
    state = MastodonState()
    owner = state.add_account("riverside", f"Riverside Clinic {HIGH}")
    pat = state.add_account("pat", f"Pat {LOW}")
    sam = state.add_account("sam", "Sam")
    posts = [
        state.add_status(owner["id"], f"Post {i} about clinic hours", created_at=now - timedelta(days=9, hours=-i))
        for i in range(4)
    ]
    state.add_status(pat["id"], f"Thanks! {HIGH}", in_reply_to_id=posts[0]["id"], created_at=now - timedelta(days=8))
    state.add_status(
        sam["id"], f"{LOW} great clinic", in_reply_to_id=posts[1]["id"], created_at=now - timedelta(days=8, hours=-1)
    )
    state.add_status(
        pat["id"],
        "Real emoji \U0001f600 stay",
        in_reply_to_id=posts[2]["id"],
        spoiler_text=f"cut {HIGH}",
        media=[(make_png(8, 8, 1), f"an x-ray {LOW}")],
        created_at=now - timedelta(days=8, hours=-2),
    )
    edited = state.add_status(sam["id"], "fine", in_reply_to_id=posts[3]["id"], created_at=now - timedelta(days=7))
    state.edit_status(edited["id"], f"fine {HIGH}{HIGH}", at=now - timedelta(days=6))
    # A PHI hit outside the text, in a content warning holding a surrogate: flagged, its matched text storable.
    state.add_status(
        pat["id"],
        "see the warning",
        in_reply_to_id=posts[1]["id"],
        spoiler_text=f"my MRN 4455012, my son{HIGH} has diabetes",
        created_at=now - timedelta(days=8, hours=-3),
    )
    # Older than every item with a surrogate: a listing stopped at one of them never reached it.
    state.add_status(sam["id"], "the oldest reply", in_reply_to_id=posts[0]["id"], created_at=now - timedelta(days=5))
    return state


def config(directory: Path, base_url: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "archiver.toml"
    path.write_text(
        f'[archive]\ndir = "arch"\n\n[[accounts]]\nname = "clinic"\nplatform = "mastodon"\n'
        f'api_base = "{base_url}"\naccount = "@riverside"\ntoken_env = "SURROGATE_TOKEN"\n'
    )
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"SURROGATE_TOKEN": TOKEN})


@pytest.fixture(scope="module")
def archived(tmp_path_factory) -> Archived:
    state = clinic(datetime.now(UTC))
    with SampleMastodonServer(state, TOKEN, rate_limit=1_000_000) as server:
        cfg = config(tmp_path_factory.mktemp("surrogate"), server.base_url)
        first = invoke("run", "--config", str(cfg), "-q")
        second = invoke("run", "--config", str(cfg), "-q")
    return Archived(cfg, cfg.parent / "arch", len(state.statuses), (first.exit_code, second.exit_code))


def query(archived: Archived, sql: str, *args: object) -> list[tuple]:
    conn = sqlite3.connect(archived.arch / "archive.db")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def latest_texts(database: Path) -> list[str]:
    conn = sqlite3.connect(database)
    try:
        return [
            row[0]
            for row in conn.execute(
                "SELECT text FROM item_versions v WHERE id = (SELECT max(id) FROM item_versions WHERE "
                "item_key = v.item_key) ORDER BY text"
            )
        ]
    finally:
        conn.close()


def test_every_item_is_archived_and_the_account_does_not_fail(archived):
    assert archived.runs == (0, 0)
    assert query(archived, "SELECT status, error FROM account_runs ORDER BY id") == [("ok", None), ("ok", None)]
    assert query(archived, "SELECT count(DISTINCT item_key) FROM item_versions") == [(archived.served,)]
    assert "the oldest reply" in latest_texts(archived.arch / "archive.db")
    # The second night found nothing new: the content digest of an item with a surrogate is deterministic.
    assert query(archived, "SELECT count(DISTINCT run_id) FROM item_versions") == [(1,)]


def test_the_columns_show_the_replacement_character_and_raw_json_keeps_the_escape(archived):
    texts = latest_texts(archived.arch / "archive.db")
    assert f"Thanks! {FFFD}" in texts and f"{FFFD} great clinic" in texts and f"fine {FFFD}{FFFD}" in texts
    assert "Real emoji \U0001f600 stay" in texts  # a whole emoji is a character, kept as it is
    assert query(archived, "SELECT DISTINCT author_name FROM item_versions WHERE author_handle = 'pat'") == [
        (f"Pat {FFFD}",)
    ]
    assert query(archived, "SELECT display_name FROM accounts") == [(f"Riverside Clinic {FFFD}",)]
    (media,) = query(archived, "SELECT media FROM item_versions WHERE media != '[]'")[0]
    assert json.loads(media)[0]["description"] == f"an x-ray {FFFD}"
    # Full-text search finds the item (its index holds what the columns hold).
    assert query(archived, "SELECT text FROM item_versions_fts WHERE item_versions_fts MATCH 'Thanks'") == [
        (f"Thanks! {FFFD}",)
    ]
    (raw_json,) = query(archived, "SELECT raw_json FROM item_versions WHERE text = ?", f"Thanks! {FFFD}")[0]
    assert "Thanks! \\ud83d" in raw_json  # JSON's own escape, lower-case hex as json.dumps writes it
    raw = json.loads(raw_json)
    assert HIGH in raw["content"] and raw["account"]["display_name"] == f"Pat {LOW}"
    (raw_json,) = query(archived, "SELECT raw_json FROM item_versions WHERE media != '[]'")[0]
    assert json.loads(raw_json)["spoiler_text"] == f"cut {HIGH}"
    # The WARC holds the answer as the platform served it.
    served = b"".join(
        gzip.decompress(path.read_bytes()) for path in sorted((archived.arch / "warcs").glob("*.warc.gz"))
    )
    assert b"Thanks! \\ud83d" in served and b"Pat \\ude00" in served


def test_a_hit_in_a_raw_field_holding_a_surrogate_is_flagged(archived):
    flagged = query(archived, "SELECT rule_id, matched FROM flags WHERE reason LIKE '%content warning%' ORDER BY id")
    assert ("mrn.labelled", "4455012") in flagged and ("health.relative", f"my son{FFFD} has diabetes") in flagged


def test_the_raw_view_shows_a_record_holding_a_surrogate(archived):
    (warc_file, offset), *_ = query(
        archived, "SELECT warc_file, warc_offset FROM item_versions WHERE text = ?", f"Thanks! {FFFD}"
    )
    shown = read_record(archived.arch / "warcs", warc_file, offset=offset).pretty()
    assert shown is not None and "Thanks! \\ud83d" in shown
    shown.encode("utf-8")  # what a page is sent as


def test_an_account_error_quoting_a_surrogate_is_recorded(tmp_path, monkeypatch):
    """An error message may quote the platform (a Graph error's message, a URL): the account fails, the run goes on."""

    def quoting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise PlatformError(f"the platform said: cut {HIGH}")
        yield

    monkeypatch.setattr(MastodonConnector, "fetch", quoting)
    with SampleMastodonServer(clinic(datetime.now(UTC)), TOKEN, rate_limit=1_000_000) as server:
        cfg = config(tmp_path, server.base_url)
        result = invoke("run", "--config", str(cfg), "-q")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    conn = sqlite3.connect(cfg.parent / "arch" / "archive.db")
    assert conn.execute("SELECT status, error FROM account_runs").fetchall() == [
        ("failed", f"the platform said: cut {FFFD}")
    ]
    conn.close()


def test_verify_passes_and_the_ledger_verifies(archived):
    assert len(query(archived, "SELECT id FROM item_versions WHERE text LIKE ?", f"%{FFFD}%")) >= 3
    result = invoke("verify", "--config", str(archived.config))
    assert result.exit_code == 0, result.output
    assert "archive verifies" in result.output
    conn = sqlite3.connect(archived.arch / "archive.db")
    try:
        assert list(verify_ledger(conn)) == []
    finally:
        conn.close()


def test_a_rebuild_from_the_warcs_equals_the_live_database(archived, tmp_path):
    out = tmp_path / "rebuilt.db"
    result = invoke("rebuild", "--config", str(archived.config), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert latest_texts(out) == latest_texts(archived.arch / "archive.db")
    assert f"Thanks! {FFFD}" in latest_texts(out)
    live, rebuilt = sqlite3.connect(archived.arch / "archive.db"), sqlite3.connect(out)
    try:
        assert [str(p) for p in compare_databases(live, rebuilt)] == []
    finally:
        live.close()
        rebuilt.close()


def test_an_archive_whose_account_failed_on_a_surrogate_before_the_fix_still_replays_as_it_was_captured(
    tmp_path, monkeypatch
):
    """An archive that met the bug holds runs whose account failed at such an item. The fixed parser reads those
    runs' responses further than they went, but their replay stops where each committed (run_progress), as a
    later run started from there: the replay still equals the live database."""
    now = datetime.now(UTC)
    state = MastodonState()
    owner, pat = state.add_account("riverside", "Riverside Clinic"), state.add_account("pat", "Pat")
    for i in range(6):
        post = state.add_status(owner["id"], f"Post {i}", created_at=now - timedelta(days=9, hours=-i))
        text = f"reply {i}" + (f" {HIGH}" if i == 3 else "")
        state.add_status(pat["id"], text, in_reply_to_id=post["id"], created_at=now - timedelta(days=8, hours=-i))
    with SampleMastodonServer(state, TOKEN, rate_limit=1_000_000) as server:
        cfg = config(tmp_path / "archive", server.base_url)
        with monkeypatch.context() as before_the_fix:
            before_the_fix.setattr(items, "_make_readable", lambda observation, fields: None)
            before_the_fix.setattr(items, "escape_lone_surrogates", lambda json_text: json_text)
            assert invoke("run", "--config", str(cfg), "-q").exit_code == 1
        assert invoke("run", "--config", str(cfg), "-q").exit_code == 0
    arch = cfg.parent / "arch"
    statuses = [row[0] for row in sqlite3.connect(arch / "archive.db").execute("SELECT status FROM account_runs")]
    assert statuses == ["failed", "ok"]
    assert f"reply 3 {FFFD}" in latest_texts(arch / "archive.db")
    result = invoke("verify", "--config", str(cfg), "--replay")
    assert result.exit_code == 0, result.output
    assert "replayed the " in result.output and "observation(s) it committed before it stopped" in result.output
    out = tmp_path / "rebuilt.db"
    assert invoke("rebuild", "--config", str(cfg), "--out", str(out)).exit_code == 0
    live, rebuilt = sqlite3.connect(arch / "archive.db"), sqlite3.connect(out)
    try:
        assert [str(p) for p in compare_databases(live, rebuilt)] == []
    finally:
        live.close()
        rebuilt.close()


ORDINARY = [
    None,
    True,
    0,
    -17,
    2**70,
    "",
    "plain ascii",
    'quotes " and \\ backslashes / slash',
    "controls \x00\x01\x1f\t\n\r and \x7f",
    "accents: café naïve Ünïcödé",
    "CJK 診療所, Hebrew שלום, Arabic مرحبا",
    "astral \U0001f600\U0001f44d\U0001f3fd and ZWJ \U0001f469\u200d\u2695\ufe0f",
    json.loads('"paired escapes \\ud83d\\ude00 are one character"'),
    "the replacement character itself \ufffd and BOM \ufeff and U+2028\u2028",
    "backslash-u as text: \\ud83d",
    {"b": 1, "a": [1, "\u00e9", {"z": None, "y": "\U0001f600"}], "\u00e9": "key order by code point"},
    {"row": {"id": 1, "text": "Thanks! \U0001f600", "raw_json": '{"t":"\\ud83d"}'}, "table": "item_versions"},
]


def test_canonical_bytes_are_unchanged_for_every_value_that_could_be_stored_and_extended_for_a_lone_surrogate():
    for value in ORDINARY:
        assert canonical_json(value) == old_canonical_json(value), value
    assert canonical_json(ORDINARY) == old_canonical_json(ORDINARY)
    for value, expected in [
        (f"Thanks! {HIGH}", b'"Thanks! \\ud83d"'),
        (f"{LOW} great", b'"\\ude00 great"'),
        ({f"k{HIGH}": [f"caf\u00e9 {LOW}\U0001f600"]}, '{"k\\ud83d":["café \\ude00😀"]}'.encode()),
        (f"\\{HIGH}", b'"\\\\\\ud83d"'),  # a backslash before it stays its own escape
    ]:
        with pytest.raises(UnicodeEncodeError):
            old_canonical_json(value)  # no archive could hold such a value: these bytes are new
        assert canonical_json(value) == expected
        assert json.loads(canonical_json(value)) == value


REF = CaptureRef("x.warc.gz", 0, 10, "<urn:uuid:1>", "2026-11-24T00:00:00Z")


def item(**fields: object) -> Item:
    values: dict = {"item_key": "mastodon:h:1", "platform": "mastodon", "kind": "comment", "native_id": "1"}
    return Item(source=REF, **(values | fields))


def test_every_observation_a_connector_yields_holds_no_lone_surrogate_outside_the_raw_json():
    raw = {"content": f"<p>Thanks! {HIGH}</p>", "account": {"display_name": f"Pat {LOW}"}}
    cut = item(
        raw=raw,
        text=f"Thanks! {HIGH}",
        author_handle=f"pat{LOW}",
        author_name=f"Pat {LOW}",
        url=f"https://h/{HIGH}",
        media=({"id": "m", "url": f"https://h/m{HIGH}.png", "description": f"x {LOW}", "meta": {"k": [HIGH]}},),
        extra={"spoiler_text": f"cut {HIGH}"},
    )
    assert (cut.text, cut.author_handle, cut.author_name, cut.url) == (
        f"Thanks! {FFFD}",
        f"pat{FFFD}",
        f"Pat {FFFD}",
        f"https://h/{FFFD}",
    )
    assert cut.media == (
        {"id": "m", "url": f"https://h/m{FFFD}.png", "description": f"x {FFFD}", "meta": {"k": [FFFD]}},
    )
    assert cut.raw is raw and json.loads(cut.raw_json) == raw  # exact, and UTF-8 encodable:
    cut.raw_json.encode("utf-8")
    assert "Thanks! \\ud83d<" in cut.raw_json and '"Pat \\ude00"' in cut.raw_json
    # The digest: deterministic, and the same after dataclasses.replace (which runs __post_init__ again).
    assert cut.content_sha256 == item(**{f: getattr(cut, f) for f in ("raw", "text", "media", "extra")}).content_sha256
    assert replace(cut, not_an_edit=f"why {HIGH}").content_sha256 == cut.content_sha256
    assert replace(cut, not_an_edit=f"why {HIGH}").not_an_edit == f"why {FFFD}"
    # An ordinary item is untouched: its fields are the very objects given.
    media = ({"id": "m", "url": "https://h/m.png", "description": "caf\u00e9 \U0001f600"},)
    raw = {"content": "hi \U0001f600 caf\u00e9", "paired": json.loads('"\\ud83d\\ude00"')}
    plain = item(raw=raw, text="hi \U0001f600", media=media, extra={"spoiler_text": "caf\u00e9"})
    assert plain.media is media and plain.text == "hi \U0001f600"
    assert plain.raw_json == json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
    assert plain.content_sha256 == hashlib.sha256(old_canonical_json(plain.content())).hexdigest()

    assert AccountIdentity(f"1{HIGH}", f"h{LOW}", f"Clinic {HIGH}") == AccountIdentity(
        "1" + FFFD, "h" + FFFD, "Clinic " + FFFD
    )
    assert CursorUpdate("since_id", f"9{LOW}").value == f"9{FFFD}"
    assert Notice(f"lookup answered {HIGH}").message == f"lookup answered {FFFD}"
    assert Deletion("k", {"detail": [f"gone {LOW}"]}).evidence == {"detail": [f"gone {FFFD}"]}
    assert MediaFile(f"https://h/m{HIGH}.png", "0" * 64, 1, "image/png", REF).url == f"https://h/m{FFFD}.png"
