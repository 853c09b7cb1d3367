"""Evidence bundles: `archiver export` from the demo archive, checked the way a third party would check them
(the `bagit` library's validator, `warcio check`, `wacz validate`, headless Chromium) and by `archiver
verify-bundle` with no archive at hand; every kind of tampering is caught with a line naming it."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import bagit
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner
from warcio.archiveiterator import ArchiveIterator

from archiver.bundle.extract import media_extension
from archiver.bundle.write import write_table
from archiver.checkpoints import load_private_key, public_pem, raw_public
from archiver.cli import app
from archiver.demo.run import TOKEN_ENV, run_demo
from archiver.ledger import canonical_row_bytes, chain_hash
from archiver.store import Store
from tests.test_merkle import mth
from tests.test_merkle import path as rfc_path

SECRET = "demo-token-never-in-a-bundle-Q7x2"
ORGANISATION = "Riverside Community Clinic (fictional)"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo archive (two runs: edits, a deleted post, a deleted reply), captured with a known token."""
    directory = tmp_path_factory.mktemp("demo")
    previous = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = SECRET
    try:
        outcome = run_demo(directory, echo=lambda line: None)
    finally:
        if previous is None:
            del os.environ[TOKEN_ENV]
        else:
            os.environ[TOKEN_ENV] = previous
    assert outcome.exit_code == 0
    return directory


def config_of(demo: Path) -> str:
    return str(demo / "archiver.toml")


def db(demo: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{demo / 'archive' / 'archive.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def export(demo: Path, out: Path, *selectors: str, case: str = "HR-2026-014") -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["export", "--config", config_of(demo), "--case", case, "--out", str(out), "--quiet", *selectors]
    )
    return result.exit_code, result.output


def verify(bundle: Path, *args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["verify-bundle", str(bundle), *args])
    return result.exit_code, result.output.strip().splitlines()


def verifies(bundle: Path) -> bool:
    """verify-bundle finds no problem, not even a note (its last line then says against which key)."""
    code, lines = verify(bundle)
    return code == 0 and lines[-1].startswith("bundle verifies") and not any(ln.startswith("note:") for ln in lines)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def third_party_checks(bundle: Path) -> None:
    """What someone without our software runs: the bagit validator and warcio check."""
    bagit.Bag(str(bundle)).validate()
    cli = subprocess.run([sys.executable, "-m", "bagit", "--validate", str(bundle)], capture_output=True, text=True)
    assert cli.returncode == 0 and "is valid" in cli.stderr, cli.stderr[-500:]
    check = subprocess.run(
        [sys.executable, "-m", "warcio.cli", "check", "-v", str(bundle / "data" / "evidence.warc.gz")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and "digest pass" in check.stdout and "fail" not in check.stdout, check.stdout


def items_of(conn: sqlite3.Connection, where: str, *params) -> set[str]:
    return {r[0] for r in conn.execute(f"SELECT DISTINCT item_key FROM item_versions WHERE {where}", params)}


def test_export_by_author_holds_every_version_event_and_original_record(demo, tmp_path):
    out = tmp_path / "case"
    code, output = export(demo, out, "--author", "@ruth113")
    assert code == 0, output
    conn = db(demo)
    keys = items_of(conn, "author_handle = 'ruth113'")
    assert keys and {r["item_key"] for r in jsonl(out / "data" / "items.jsonl")} == keys
    marks = ",".join("?" for _ in keys)
    versions = [
        dict(r)
        for r in conn.execute(f"SELECT * FROM item_versions WHERE item_key IN ({marks}) ORDER BY id", list(keys))
    ]
    events = [
        dict(r) for r in conn.execute(f"SELECT * FROM events WHERE item_key IN ({marks}) ORDER BY id", list(keys))
    ]
    # Rows exactly as stored, every column.
    assert sorted(jsonl(out / "data" / "item_versions.jsonl"), key=lambda r: r["id"]) == versions
    assert sorted(jsonl(out / "data" / "events.jsonl"), key=lambda r: r["id"]) == events
    third_party_checks(out)
    assert verifies(out)
    info = (out / "bag-info.txt").read_text()
    assert "External-Identifier: HR-2026-014" in info and f"Source-Organization: {ORGANISATION}" in info
    custody = json.loads((out / "data" / "custody.json").read_text())
    assert custody["case_id"] == "HR-2026-014" and custody["selectors"]["authors"] == ["@ruth113"]
    # Where the archive lives on its host is not the recipient's business: its file name only.
    assert custody["archive"]["database"] == "archive.db"
    for path in out.rglob("*"):
        if path.is_file() and path.suffix not in (".gz", ".png", ".jpg", ".gif", ".webp", ".mp4", ".bin"):
            assert str(demo.resolve()).encode() not in path.read_bytes(), path
    assert custody["counts"]["item_versions"] == len(versions) and custody["exported_by"] and custody["host"]
    assert len(custody["ledger_entries"]) == sum(custody["counts"][t] for t in ("item_versions", "events", "accounts"))
    # Every WARC record is the original gzip member, byte for byte, with the same record id.
    extract = (out / "data" / "evidence.warc.gz").read_bytes()
    types = set()
    for record in custody["warc_records"]:
        source = (demo / "archive" / "warcs" / record["source_file"]).read_bytes()
        original = source[record["source_offset"] : record["source_offset"] + record["length"]]
        assert extract[record["offset"] : record["offset"] + record["length"]] == original
        assert record["record_id"].encode() in gzip.decompress(original)
        types.add(record["type"])
    assert types == {"warcinfo", "request", "response"}
    # Each response comes with the request it answered.
    with open(out / "data" / "evidence.warc.gz", "rb") as fh:
        headers = [r.rec_headers for r in ArchiveIterator(fh, no_record_parse=True)]
    ids = {h.get_header("WARC-Record-ID") for h in headers}
    responses = [h for h in headers if h.get_header("WARC-Type") == "response"]
    assert responses and all(h.get_header("WARC-Concurrent-To") in ids for h in responses)
    assert {v["warc_record_id"] for v in versions} <= {r["record_id"] for r in custody["warc_records"]}
    # The export is in the archive's register, and the archive still verifies.
    row = conn.execute("SELECT * FROM exports ORDER BY id DESC LIMIT 1").fetchone()
    assert row["case_id"] == "HR-2026-014" and row["bundle_path"] == str(out.resolve())
    assert row["manifest_sha256"] == hashlib.sha256((out / "manifest-sha256.txt").read_bytes()).hexdigest()
    assert json.loads(row["selectors"])["authors"] == ["@ruth113"]
    conn.close()
    check = CliRunner().invoke(app, ["verify", "--config", config_of(demo)])
    assert check.exit_code == 0, check.output


def test_export_by_thread_carries_deletion_evidence_and_media(demo, tmp_path):
    conn = db(demo)
    deleted = conn.execute("SELECT item_key, evidence FROM events WHERE event='deleted' ORDER BY id").fetchall()
    post = next(r for r in deleted if r["item_key"] in items_of(conn, "kind = 'post'"))
    with_media = conn.execute("SELECT thread_key FROM item_versions WHERE media != '[]' LIMIT 1").fetchone()[0]
    thread_items = items_of(conn, "thread_key IN (?, ?)", post["item_key"], with_media)
    conn.close()
    out = tmp_path / "thread"
    assert export(demo, out, "--thread", post["item_key"], "--thread", with_media)[0] == 0
    assert {r["item_key"] for r in jsonl(out / "data" / "items.jsonl")} == thread_items
    custody = json.loads((out / "data" / "custody.json").read_text())
    evidence = json.loads(post["evidence"])
    assert evidence["warc_record_id"] in {r["record_id"] for r in custody["warc_records"]}
    media = jsonl(out / "data" / "media_files.jsonl")
    assert media
    for row in media:
        (found,) = (out / "data" / "media").glob(row["sha256"] + ".*")
        assert hashlib.sha256(found.read_bytes()).hexdigest() == row["sha256"]
    report = (out / "data" / "report.html").read_text()
    assert "Deletion evidence" in report and evidence["warc_record_id"] in report.replace("&lt;", "<").replace(
        "&gt;", ">"
    )
    third_party_checks(out)
    assert verifies(out)


def test_export_by_query_brings_every_version_of_a_matching_item(demo, tmp_path):
    conn = db(demo)
    edited = conn.execute(
        "SELECT item_key FROM item_versions GROUP BY item_key HAVING count(DISTINCT text) > 1 ORDER BY min(id) LIMIT 1"
    ).fetchone()[0]
    texts = [r[0] for r in conn.execute("SELECT text FROM item_versions WHERE item_key=? ORDER BY id", (edited,))]
    # A word the edit added: the first version does not hold it, yet it comes along with the item.
    word = next(w.strip(".,:") for w in texts[-1].split() if w.strip(".,:").isalpha() and w not in texts[0])
    gone = word
    out = tmp_path / "query"
    assert export(demo, out, "--query", gone)[0] == 0
    keys = {r["item_key"] for r in jsonl(out / "data" / "items.jsonl")}
    assert edited in keys
    for key in keys:  # nothing that does not match came along
        assert conn.execute(
            "SELECT 1 FROM item_versions_fts f JOIN item_versions v ON v.id = f.rowid "
            "WHERE item_versions_fts MATCH ? AND v.item_key = ?",
            (gone, key),
        ).fetchone()
    assert len([v for v in jsonl(out / "data" / "item_versions.jsonl") if v["item_key"] == edited]) >= 2
    conn.close()
    assert verifies(out)


def test_export_by_dates_and_combined_selectors(demo, tmp_path):
    conn = db(demo)
    days = sorted({r[0][:10] for r in conn.execute("SELECT created_at FROM item_versions WHERE kind='comment'")})
    start, end = days[len(days) // 2], days[len(days) // 2 + 3]
    account = conn.execute(
        "SELECT account FROM item_versions WHERE created_at >= ? AND created_at < ? LIMIT 1", (start, end + "T99")
    ).fetchone()[0]
    expected = items_of(conn, "created_at >= ? AND created_at < ? AND account = ?", start, end + "T99", account)
    out = tmp_path / "dates"
    code, output = export(demo, out, "--posted-from", start, "--posted-to", end, "--account", account)
    assert code == 0, output
    assert {r["item_key"] for r in jsonl(out / "data" / "items.jsonl")} == expected
    # Author AND a period narrows; a period when nothing was captured selects nothing (exit 2, nothing written).
    author = conn.execute(
        "SELECT author_handle FROM item_versions WHERE created_at >= ? AND created_at < ? AND kind='comment' "
        "AND author_handle IS NOT NULL ORDER BY id LIMIT 1",
        (start, end + "T99"),
    ).fetchone()[0]
    both = tmp_path / "both"
    assert export(demo, both, "--author", author, "--posted-from", start, "--posted-to", end)[0] == 0
    assert {r["item_key"] for r in jsonl(both / "data" / "items.jsonl")} == items_of(
        conn, "created_at >= ? AND created_at < ? AND author_handle = ?", start, end + "T99", author
    )
    captured = {r[0][:10] for r in conn.execute("SELECT captured_at FROM item_versions")}
    conn.close()
    code, output = export(demo, tmp_path / "none", "--captured-from", "2001-01-01", "--captured-to", "2001-12-31")
    assert code == 2 and "no archived item matches" in output and not (tmp_path / "none").exists()
    day = sorted(captured)[0]
    assert export(demo, tmp_path / "captured", "--captured-from", day, "--captured-to", day)[0] == 0


def test_author_handles_stored_with_an_at_sign_are_selected(demo, tmp_path):
    """YouTube stores a handle with its '@' ("@MayaCastillo96"): --author finds it given with or without the
    '@', in any case, and alongside another author (where it used to be left out without a word)."""
    conn = db(demo)
    handle = conn.execute(
        "SELECT author_handle FROM item_versions WHERE platform = 'youtube' AND author_handle LIKE '@%' ORDER BY id"
    ).fetchone()[0]
    theirs = items_of(conn, "author_handle = ?", handle)
    ruths = items_of(conn, "author_handle = 'ruth113'")
    conn.close()
    assert theirs and ruths
    for n, given in enumerate((handle, handle[1:], handle[1:].lower())):
        code, output = export(demo, tmp_path / f"one-{n}", "--author", given)
        assert code == 0, output
        assert {r["item_key"] for r in jsonl(tmp_path / f"one-{n}" / "data" / "items.jsonl")} == theirs, given
    code, output = export(demo, tmp_path / "both", "--author", "ruth113", "--author", handle)
    assert code == 0, output
    assert {r["item_key"] for r in jsonl(tmp_path / "both" / "data" / "items.jsonl")} == theirs | ruths


@pytest.mark.parametrize("platform", ["facebook", "mastodon", "linkedin"])
def test_posted_bounds_include_an_item_posted_exactly_at_them(demo, tmp_path, platform):
    """Platforms give their own precision ("...30Z", "...30.845Z", "...30.845000Z"): an item posted exactly at
    --posted-from or --posted-to is inside both (they are inclusive), and one microsecond later is outside."""
    conn = db(demo)
    key, at = conn.execute(
        "SELECT item_key, created_at FROM item_versions WHERE platform = ? ORDER BY item_key", (platform,)
    ).fetchone()
    conn.close()
    later = (datetime.fromisoformat(at.replace("Z", "+00:00")) + timedelta(microseconds=1)).isoformat()
    for n, bounds in enumerate((["--posted-to", at], ["--posted-from", at], ["--posted-from", at, "--posted-to", at])):
        code, output = export(demo, tmp_path / f"at-{n}", "--item", key, *bounds)
        assert code == 0, (bounds, output)
    code, output = export(demo, tmp_path / "later", "--item", key, "--posted-from", later)
    assert code == 2 and "no archived item matches" in output, (later, output)


def test_thread_context_adds_parents_and_replies(demo, tmp_path):
    conn = db(demo)
    reply = conn.execute(
        "SELECT item_key, parent_key, thread_key FROM item_versions WHERE kind='comment' AND parent_key != thread_key "
        "LIMIT 1"
    ).fetchone()
    thread = items_of(conn, "thread_key = ? OR item_key = ?", reply["thread_key"], reply["thread_key"])
    conn.close()
    out = tmp_path / "context"
    assert export(demo, out, "--item", reply["item_key"], "--thread-context")[0] == 0
    keys = {r["item_key"] for r in jsonl(out / "data" / "items.jsonl")}
    assert {reply["item_key"], reply["parent_key"], reply["thread_key"]} <= keys and keys == thread
    alone = tmp_path / "alone"
    assert export(demo, alone, "--item", reply["item_key"])[0] == 0
    assert [r["item_key"] for r in jsonl(alone / "data" / "items.jsonl")] == [reply["item_key"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "name at least one selector"),
        (["--author", "ann", "--posted-from", "last tuesday"], "--posted-from 'last tuesday': not a date"),
        (["--query", 'flu AND "'], "--query"),
        (["--author", "ann", "--case", " "], "--case: give the case identifier"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_touches_nothing(demo, tmp_path, args, message):
    conn = db(demo)
    before = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("exports", "checkpoints", "ledger")]
    code, output = export(demo, tmp_path / "out", *args)
    after = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("exports", "checkpoints", "ledger")]
    conn.close()
    assert code == 2 and message in output and len(output.strip().splitlines()) == 1, output
    assert before == after and not (tmp_path / "out").exists()


def test_out_folder_is_never_overwritten(demo, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, output = export(demo, out, "--author", "ruth113")
    assert code == 2 and "already exists and is not empty" in output
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def archive_counts(demo: Path) -> list[int]:
    conn = db(demo)
    try:
        return [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("exports", "checkpoints", "ledger")]
    finally:
        conn.close()


@pytest.mark.parametrize("where", ["a file's subfolder", "/dev/null/bundle", "/proc/archiver-bundle"])
def test_an_out_folder_that_cannot_be_made_is_one_line_exit_2(demo, tmp_path, where):
    if where.startswith("a file"):
        (tmp_path / "afile").write_text("a file")
        out = tmp_path / "afile" / "bundle"
    else:
        out = Path(where)
    before = archive_counts(demo)
    code, output = export(demo, out, "--author", "ruth113")
    assert code == 2 and len(output.strip().splitlines()) == 1, output
    assert (
        output.startswith(f"archiver: error: --out {out}: cannot make the bundle folder there") and "choose" in output
    )
    assert archive_counts(demo) == before and not out.exists()


def test_a_bundle_at_out_always_has_its_export_recorded(demo, tmp_path, monkeypatch):
    """The export is recorded before the finished bundle moves into --out: when recording fails (a full
    disk, say), no bundle is left at --out, nor its staging folder beside it."""
    from archiver.errors import StoreError

    def refuse(self, row):
        raise StoreError("database or disk is full (injected)")

    monkeypatch.setattr(Store, "append_export", refuse)
    before = archive_counts(demo)[0]
    out = tmp_path / "case"
    code, output = export(demo, out, "--author", "ruth113")
    assert code == 1 and "database or disk is full (injected)" in output, output
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert archive_counts(demo)[0] == before


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_neutralised(demo, tmp_path):
    """A comment starting with '@' (a Mastodon mention), '=', '+', '-', a tab or a CR would be read by a
    spreadsheet as a formula: in the CSVs such a cell gets a leading ', the JSON Lines keep the text as
    stored, and verify-bundle holds the CSV to that same rule."""
    import csv

    conn = db(demo)
    key, text = conn.execute("SELECT item_key, text FROM items WHERE text LIKE '@%' ORDER BY item_key").fetchone()
    conn.close()
    out = tmp_path / "mention"
    assert export(demo, out, "--item", key)[0] == 0
    for name in ("items", "item_versions"):
        assert [r["text"] for r in jsonl(out / "data" / f"{name}.jsonl")][-1] == text
        with open(out / "data" / f"{name}.csv", encoding="utf-8", newline="") as fh:
            assert [r["text"] for r in csv.DictReader(fh)][-1] == "'" + text
    assert verifies(out)
    # A CSV with the cell as it was (a live formula) is not what the bundle's rule writes.
    forged = tmp_path / "forged"
    shutil.copytree(out, forged)
    path = forged / "data" / "items.csv"
    path.write_text(path.read_text("utf-8").replace("'" + text, text), "utf-8")
    regenerate_manifests(forged)
    code, lines = verify(forged)
    assert code == 1 and "data/items.csv line 2: differs from the JSON Lines row" in lines, lines


def native_ids_in(payload: object) -> set[str]:
    """Every "id" an object in a JSON payload has."""
    found, stack = set(), [payload]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("id"), str | int):
                found.add(str(node["id"]))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


@pytest.mark.parametrize("which", ["a direct message", "a deleted comment"])
def test_other_items_in_the_copied_records_are_disclosed(demo, tmp_path, which):
    """The WARC records are copied whole (they are the evidence), so one item's bundle also carries what else
    its records hold: the rest of a DM conversation page, the listing a deletion was concluded from. Export
    says so, and custody.json and the report list those other archived items."""
    conn = db(demo)
    if which == "a direct message":
        where = "kind = 'message' AND platform = 'mastodon'"
    else:
        where = "item_key IN (SELECT item_key FROM events WHERE event = 'deleted') AND platform = 'mastodon'"
    key = conn.execute(f"SELECT item_key FROM item_versions WHERE {where} ORDER BY id LIMIT 1").fetchone()[0]
    ids = {
        r[0]: r[1] for r in conn.execute("SELECT native_id, item_key FROM item_versions WHERE platform = 'mastodon'")
    }
    conn.close()
    out = tmp_path / "one"
    code, output = export(demo, out, "--item", key)
    assert code == 0, output
    # What the copied responses hold, found the way a reader would: each object's id against the archive.
    held = set()
    with open(out / "data" / "evidence.warc.gz", "rb") as fh:
        for record in ArchiveIterator(fh):
            if record.rec_type == "response":
                try:
                    held |= {ids[i] for i in native_ids_in(json.loads(record.content_stream().read())) if i in ids}
                except ValueError:
                    continue
    expected = held - {key}
    assert expected, "the demo's records hold other items"
    custody = json.loads((out / "data" / "custody.json").read_text())
    listed = {k for entry in custody["other_items_in_records"] for k in entry["item_keys"]}
    assert listed == expected and custody["counts"]["other_items_in_records"] == len(expected)
    record_ids = {r["record_id"] for r in custody["warc_records"]}
    assert all(entry["record_id"] in record_ids for entry in custody["other_items_in_records"])
    assert f"also hold {len(expected)} other archived item(s)" in output, output
    report = (out / "data" / "report.html").read_text()
    assert "Other archived items in the copied records" in report and all(k in report for k in expected)
    assert verifies(out)


def test_no_secret_in_the_bundle_and_wacz_validates(demo, tmp_path):
    out = tmp_path / "wacz"
    code, output = export(demo, out, "--platform", "mastodon", "--posted-from", "2000-01-01", "--wacz")
    assert code == 0, output
    contents = []
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            contents.append((path, data))
            if path.name.endswith(".gz"):
                contents.append((path, gzip.decompress(data)))
            if path.suffix == ".wacz":
                with zipfile.ZipFile(path) as wacz:
                    for name in wacz.namelist():
                        member = wacz.read(name)
                        contents.append((f"{path}:{name}", member))
                        if name.endswith(".gz"):
                            contents.append((f"{path}:{name}", gzip.GzipFile(fileobj=io.BytesIO(member)).read()))
    assert len(contents) > 10
    for name, data in contents:
        assert SECRET.encode() not in data, name
        assert b"PRIVATE KEY" not in data, name
    validate = subprocess.run(
        [
            sys.executable,
            "-c",
            "from wacz.main import main; raise SystemExit(main())",
            "validate",
            "-f",
            str(out / "data" / "evidence.wacz"),
        ],
        capture_output=True,
        text=True,
    )
    assert validate.returncode == 0 and "valid" in validate.stdout, validate.stdout + validate.stderr
    assert verifies(out)


def test_report_opens_offline_in_headless_chromium(demo, tmp_path):
    conn = db(demo)
    edited = conn.execute("SELECT item_key FROM items WHERE status != 'live'").fetchall()
    conn.close()
    out = tmp_path / "report"
    args = [a for row in edited for a in ("--item", row[0])]
    assert export(demo, out, *args)[0] == 0
    report = out / "data" / "report.html"
    html = report.read_text()
    assert "<script" not in html and "<link" not in html and 'src="http' not in html
    assert "Content-Security-Policy" in html and "Versions (2)" in html and "Deletion evidence" in html
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is needed for this test: apt-get install chromium (.ci/run installs it)"
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000


# -- tampering ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_bundle(demo, tmp_path_factory) -> Path:
    conn = db(demo)
    with_media = conn.execute("SELECT thread_key FROM item_versions WHERE media != '[]' LIMIT 1").fetchone()[0]
    deleted = conn.execute(
        "SELECT thread_key FROM item_versions WHERE item_key = (SELECT item_key FROM events WHERE event='deleted' "
        "ORDER BY id LIMIT 1)"
    ).fetchone()[0]
    conn.close()
    out = tmp_path_factory.mktemp("bundles") / "good"
    assert export(demo, out, "--thread", with_media, "--thread", deleted)[0] == 0
    assert verifies(out)
    return out


def regenerate_manifests(bundle: Path) -> None:
    """What a forger does after editing: make bagit's manifests right again (bagit validation then passes)."""
    cwd = os.getcwd()
    try:
        bagit.Bag(str(bundle)).save(manifests=True)
    finally:
        os.chdir(cwd)
    bagit.Bag(str(bundle)).validate()


def resign(bundle: Path, key: Ed25519PrivateKey) -> None:
    """A forger's own signature: the tag manifest made again (without signature.json, as the bundle's is) and
    signed with their key."""
    document = json.loads((bundle / "signature.json").read_text())
    (bundle / "signature.json").unlink()
    cwd = os.getcwd()
    try:
        bagit.Bag(str(bundle)).save()
    finally:
        os.chdir(cwd)
    document["signature"] = base64.b64encode(key.sign((bundle / "tagmanifest-sha256.txt").read_bytes())).decode()
    document["public_key"] = base64.b64encode(raw_public(key.public_key())).decode()
    document["public_key_pem"] = public_pem(key.public_key()).decode()
    (bundle / "signature.json").write_text(json.dumps(document))


def flip_byte(bundle: Path) -> None:
    path = bundle / "data" / "evidence.warc.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def remove_media(bundle: Path) -> None:
    next((bundle / "data" / "media").iterdir()).unlink()


def add_file(bundle: Path) -> None:
    (bundle / "data" / "extra.txt").write_text("slipped in")


def edit_row(bundle: Path) -> None:
    path = bundle / "data" / "item_versions.jsonl"
    rows = jsonl(path)
    rows[0]["text"] = "I never said that"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def edit_row_and_manifests(bundle: Path) -> None:
    edit_row(bundle)
    regenerate_manifests(bundle)


def remove_row(bundle: Path) -> None:
    path = bundle / "data" / "events.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[1:]))
    regenerate_manifests(bundle)


def drop_warc_record(bundle: Path) -> None:
    custody = json.loads((bundle / "data" / "custody.json").read_text())
    victim = next(r for r in custody["warc_records"] if r["type"] == "response")
    path = bundle / "data" / "evidence.warc.gz"
    data = path.read_bytes()
    path.write_bytes(data[: victim["offset"]] + data[victim["offset"] + victim["length"] :])
    regenerate_manifests(bundle)


def resigned_manifest(bundle: Path) -> None:
    edit_row(bundle)
    regenerate_manifests(bundle)
    resign(bundle, Ed25519PrivateKey.generate())


def swap_key(bundle: Path) -> None:
    resign(bundle, Ed25519PrivateKey.generate())


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (flip_byte, "data/evidence.warc.gz: sha256 expected"),
        (remove_media, "listed in the manifest but missing"),
        (add_file, "data/extra.txt: not listed in manifest-sha256.txt, the signed manifest (added)"),
        (edit_row, "data/item_versions.jsonl: sha256 expected"),
        (edit_row_and_manifests, "signature.json: signature does not match tagmanifest-sha256.txt"),
        (edit_row_and_manifests, "row differs from ledger seq"),
        (remove_row, "is in custody.json but not in the bundle (row removed)"),
        (drop_warc_record, "listed in custody.json is missing (dropped)"),
        (resigned_manifest, "not the archive key that signed the checkpoint"),
        (swap_key, "not the archive key that signed the checkpoint"),
    ],
    ids=lambda v: v.__name__ if callable(v) else "",
)
def test_tampering_is_caught(good_bundle, tmp_path, tamper, expected):
    bundle = tmp_path / "copy"
    shutil.copytree(good_bundle, bundle)
    tamper(bundle)
    code, lines = verify(bundle)
    assert code == 1
    assert any(expected in line for line in lines), lines
    assert lines[-1].endswith("problem(s) found")


def test_each_row_is_proven_in_the_signed_ledger_tree(good_bundle, demo):
    """Every ledger entry carries RFC 9162's audit path, the same as the RFC's PATH computed here from the
    archive's whole ledger, for the tree whose root the bundle's checkpoint signs."""
    custody = json.loads((good_bundle / "data" / "custody.json").read_text())
    tree = json.loads(custody["checkpoint"]["statement"])["ledger_tree"]
    conn = db(demo)
    leaves = [
        bytes.fromhex(r[0])
        for r in conn.execute("SELECT row_sha256 FROM ledger WHERE seq <= ? ORDER BY seq", (tree["size"],))
    ]
    conn.close()
    assert mth(leaves).hex() == tree["root"]
    entries = custody["ledger_entries"]
    assert entries
    for entry in entries[:: max(1, len(entries) // 25)]:
        assert entry["inclusion"] == [h.hex() for h in rfc_path(entry["seq"] - 1, leaves)]


def test_a_row_rewritten_with_its_own_ledger_entry_and_re_signed_with_the_archive_key_is_caught(
    good_bundle, demo, tmp_path
):
    """Whoever holds the archive's key can re-sign a bundle: a deletion re-dated, its entry's digests made
    again over the same prev_hash. Its neighbours still link; the signed tree does not hold it."""
    bundle = tmp_path / "forged"
    shutil.copytree(good_bundle, bundle)
    path = bundle / "data" / "events.jsonl"
    events = jsonl(path)
    deleted = next(e for e in events if e["event"] == "deleted")
    deleted["observed_at"] = "2030-01-01T00:00:00.000000Z"  # after a litigation hold, say
    write_table(events, path, list(events[0]))
    custody_path = bundle / "data" / "custody.json"
    custody = json.loads(custody_path.read_text())
    entry = next(
        e for e in custody["ledger_entries"] if e["table_name"] == "events" and e["row_key"] == str(deleted["id"])
    )
    canonical = canonical_row_bytes("events", deleted)
    entry["row_sha256"] = hashlib.sha256(canonical).hexdigest()
    entry["hash"] = chain_hash(entry["prev_hash"], canonical)
    custody_path.write_text(json.dumps(custody, indent=1, ensure_ascii=False) + "\n")
    regenerate_manifests(bundle)
    resign(bundle, load_private_key(demo / "archive" / "keys"))
    code, lines = verify(bundle)
    assert code == 1
    # the evidence's record was captured then, not in 2030: the row no longer says what its record does
    assert lines[0].startswith(f"data/events.jsonl id={deleted['id']}: WARC record ")
    assert lines[0].endswith("observed_at 2030-01-01T00:00:00.000000Z, the record's date " + lines[0].rsplit(" ", 1)[1])
    assert lines[1:-1] == [
        f"ledger seq {entry['seq']}: its row is not at this seq in the ledger tree the checkpoint signs "
        f"({json.loads(custody['checkpoint']['statement'])['ledger_tree']['size']} entries, root "
        f"{json.loads(custody['checkpoint']['statement'])['ledger_tree']['root']}): the row or its entry is not the "
        "archive's"
    ]


def rewrite_record(bundle: Path, record_id: str, change) -> None:
    """A record of the extract rewritten as a forger would: its block changed, its block digest and its gzip member
    made again, custody.json's catalogue (offsets, length, sha256) redone; the bag is not re-signed here."""
    custody_path = bundle / "data" / "custody.json"
    custody = json.loads(custody_path.read_text())
    entry = next(r for r in custody["warc_records"] if r["record_id"] == record_id)
    path = bundle / "data" / "evidence.warc.gz"
    data = path.read_bytes()
    start, end = entry["offset"], entry["offset"] + entry["length"]
    head, _, block = gzip.decompress(data[start:end]).partition(b"\r\n\r\n")
    block = change(block.removesuffix(b"\r\n\r\n"))
    digest = b"sha256:" + base64.b32encode(hashlib.sha256(block).digest())
    lines = [
        b"WARC-Block-Digest: " + digest if line.startswith(b"WARC-Block-Digest:") else line
        for line in head.split(b"\r\n")
    ]
    member = gzip.compress(b"\r\n".join(lines) + b"\r\n\r\n" + block + b"\r\n\r\n")
    path.write_bytes(data[:start] + member + data[end:])
    for other in custody["warc_records"]:
        if other["offset"] > start:
            other["offset"] += len(member) - entry["length"]
    entry["length"], entry["sha256"] = len(member), hashlib.sha256(member).hexdigest()
    custody_path.write_text(json.dumps(custody, indent=1, ensure_ascii=False) + "\n")


def test_a_deletions_404_made_a_200_and_re_signed_with_the_archive_key_is_caught(good_bundle, demo, tmp_path):
    """Review v B12: the records are signed by the bundle's signature alone, which the archive's key makes again.
    The deletion's evidence is a signed row: it says the lookup answered 404, and the record is held to it."""
    bundle = tmp_path / "forged"
    shutil.copytree(good_bundle, bundle)
    deleted = next(e for e in jsonl(bundle / "data" / "events.jsonl") if e["event"] == "deleted")
    record_id = json.loads(deleted["evidence"])["warc_record_id"]
    rewrite_record(bundle, record_id, lambda block: block.replace(b" 404 ", b" 200 ", 1))
    regenerate_manifests(bundle)
    resign(bundle, load_private_key(demo / "archive" / "keys"))
    code, lines = verify(bundle)
    assert code == 1
    assert any(
        line.startswith(f"data/events.jsonl id={deleted['id']}: WARC record {record_id} in ")
        and line.endswith("(evidence warc_record_id): HTTP status expected 404, found 200")
        for line in lines
    ), lines


def test_a_versions_record_said_to_come_from_elsewhere_is_caught(good_bundle, demo, tmp_path):
    """custody.json says where each record was copied from; a version's signed row says where it was captured."""
    bundle = tmp_path / "forged"
    shutil.copytree(good_bundle, bundle)
    version = jsonl(bundle / "data" / "item_versions.jsonl")[0]
    custody_path = bundle / "data" / "custody.json"
    custody = json.loads(custody_path.read_text())
    entry = next(r for r in custody["warc_records"] if r["record_id"] == version["warc_record_id"])
    entry["source_offset"] += 1
    custody_path.write_text(json.dumps(custody, indent=1, ensure_ascii=False) + "\n")
    regenerate_manifests(bundle)
    resign(bundle, load_private_key(demo / "archive" / "keys"))
    code, lines = verify(bundle)
    assert code == 1
    said = [version["warc_file"], version["warc_offset"], version["warc_length"]]
    assert (
        f"data/item_versions.jsonl id={version['id']}: WARC record {version['warc_record_id']}: the row says "
        f"file, offset, length {said}, custody.json's copy {[said[0], said[1] + 1, said[2]]}" in lines
    )


def edit_json(name: str, change) -> object:
    def tamper(bundle: Path) -> None:
        path = bundle / "data" / name
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    tamper.__name__ = change.__name__
    return tamper


def edit_rows(name: str, change) -> object:
    def tamper(bundle: Path) -> None:
        path = bundle / "data" / name
        rows = jsonl(path)
        change(rows)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    tamper.__name__ = change.__name__
    return tamper


def append_bytes(name: str, data: bytes) -> object:
    def tamper(bundle: Path) -> None:
        with open(bundle / "data" / name, "ab") as fh:
            fh.write(data)

    tamper.__name__ = f"append_{data!r}_to_{name}"
    return tamper


def signature_json_null(bundle: Path) -> None:
    (bundle / "signature.json").write_text("null")


def custody_a_list(custody):
    return []


def statement_not_json(custody):
    custody["checkpoint"]["statement"] = "not json"
    return custody


def statement_without_ledger(custody):
    custody["checkpoint"]["statement"] = "{}"
    return custody


def checkpoint_a_list(custody):
    custody["checkpoint"] = []
    return custody


def ledger_entry_a_list(custody):
    custody["ledger_entries"].append([1])
    return custody


def ledger_hash_not_hex(custody):
    custody["ledger_entries"][0]["prev_hash"] = "zz"
    return custody


def warc_record_a_string(custody):
    custody["warc_records"][0] = "x"
    return custody


def raw_json_not_json(rows):
    rows[0]["raw_json"] = "{"


def raw_json_missing(rows):
    del rows[0]["raw_json"]


def media_sha256_a_list(rows):
    rows[0]["sha256"] = [1]


@pytest.mark.parametrize(
    ("tamper", "where"),
    [
        (signature_json_null, "signature.json: not a JSON object"),
        (edit_json("custody.json", custody_a_list), "data/custody.json: not a JSON object"),
        (edit_json("custody.json", statement_not_json), "data/custody.json checkpoint: statement"),
        (edit_json("custody.json", statement_without_ledger), "data/custody.json checkpoint: statement"),
        (edit_json("custody.json", checkpoint_a_list), "data/custody.json checkpoint: "),
        (edit_json("custody.json", ledger_entry_a_list), "data/custody.json ledger_entries"),
        (edit_json("custody.json", ledger_hash_not_hex), "data/custody.json ledger_entries"),
        (edit_json("custody.json", warc_record_a_string), "data/custody.json warc_records"),
        (append_bytes("events.jsonl", b"[1,2]\n"), "data/events.jsonl line"),
        (append_bytes("item_versions.jsonl", b"{\n"), "data/item_versions.jsonl line"),
        (append_bytes("events.jsonl", b"\xff\n"), "data/events.jsonl"),
        (append_bytes("custody.json", b"\xff"), "data/custody.json"),
        (edit_rows("item_versions.jsonl", raw_json_not_json), "data/item_versions.jsonl id="),
        (edit_rows("item_versions.jsonl", raw_json_missing), "data/item_versions.jsonl id="),
        (edit_rows("media_files.jsonl", media_sha256_a_list), "data/media_files.jsonl url="),
    ],
    ids=lambda v: v.__name__ if callable(v) else "",
)
def test_malformed_bundle_files_are_problems_not_tracebacks(good_bundle, tmp_path, tamper, where):
    bundle = tmp_path / "copy"
    shutil.copytree(good_bundle, bundle)
    tamper(bundle)
    result = CliRunner().invoke(app, ["verify-bundle", str(bundle)])
    lines = result.output.strip().splitlines()
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.output
    assert lines[-1].endswith("problem(s) found") and any(line.startswith(where) for line in lines), lines


def test_verify_bundle_needs_no_archive(demo, tmp_path):
    """Export from a copy of the archive, remove the archive, move the bundle: it still verifies, in a new
    process started elsewhere."""
    copy = tmp_path / "archive-copy"
    shutil.copytree(demo, copy)
    assert export(copy, tmp_path / "made", "--author", "ruth113")[0] == 0
    shutil.rmtree(copy)
    moved = tmp_path / "elsewhere" / "bundle"
    moved.parent.mkdir()
    shutil.move(tmp_path / "made", moved)
    check = subprocess.run(
        [sys.executable, "-m", "archiver.cli", "verify-bundle", str(moved)],
        capture_output=True,
        text=True,
        cwd=moved.parent,
    )
    last = check.stdout.strip().splitlines()[-1]
    assert check.returncode == 0 and last.startswith("bundle verifies"), check.stdout + check.stderr


def test_trusted_public_key_given_on_the_command_line(good_bundle, archive_key, tmp_path):
    """Only a key the recipient obtained separately shows a bundle is the archive's: without one, a bundle
    re-signed by a forger verifies too, so verify-bundle says that it checked only the key the bundle
    carries, names that key by its fingerprint and says how to check against the archive's key."""
    from archiver.checkpoints import fingerprint, load_public_key

    archive_print = fingerprint(base64.b64encode(raw_public(load_public_key(archive_key))).decode())
    code, lines = verify(good_bundle, "--public-key", str(archive_key))
    assert code == 0 and lines[0] == f"signature checked against the given public key {archive_print} ({archive_key})"
    assert lines[1].startswith("checkpoint history: ")  # test_bundle_history.py
    assert lines[-2:] == [
        "report.html made again from the bundle's rows and custody.json: identical, byte for byte",
        "bundle verifies",
    ]
    # A forger who re-signs everything, checkpoint included, with a key of their own is caught only by the
    # key the recipient obtained separately.
    bundle = tmp_path / "forged"
    shutil.copytree(good_bundle, bundle)
    forger = Ed25519PrivateKey.generate()
    custody_path = bundle / "data" / "custody.json"
    custody = json.loads(custody_path.read_text())
    for checkpoint in [custody["checkpoint"], *custody["earlier_checkpoints"]]:
        checkpoint["signature"] = base64.b64encode(forger.sign(checkpoint["statement"].encode())).decode()
        checkpoint["public_key"] = base64.b64encode(raw_public(forger.public_key())).decode()
    custody_path.write_text(json.dumps(custody))
    regenerate_manifests(bundle)
    resign(bundle, forger)
    forger_print = fingerprint(base64.b64encode(raw_public(forger.public_key())).decode())
    code, lines = verify(bundle)
    assert code == 0 and lines[-1] == "bundle verifies against the key it carries, not a key you trust", lines
    assert f"checked only against the key the bundle carries itself, {forger_print}" in lines[0], lines
    assert f"archiver verify-bundle {bundle} --public-key archive-ed25519.pub" in lines[1], lines
    code, lines = verify(bundle, "--public-key", str(archive_key))
    assert code == 1 and any("not the given public key" in line for line in lines), lines


@pytest.fixture(scope="module")
def archive_key(demo, tmp_path_factory) -> Path:
    """The archive's public key as its recipient obtains it separately (`archiver key export`)."""
    path = tmp_path_factory.mktemp("key") / "archive-ed25519.pub"
    result = CliRunner().invoke(app, ["key", "export", "--config", config_of(demo)])
    assert result.exit_code == 0, result.output
    path.write_text(result.output)
    return path


def forged_copy(good_bundle: Path, tmp_path: Path) -> Path:
    bundle = tmp_path / "forged"
    shutil.copytree(good_bundle, bundle)
    return bundle


def set_payload_oxum(bundle: Path) -> None:
    """bag-info.txt's file count and size made right for what data/ now holds, as a forger would."""
    files = [p for p in (bundle / "data").rglob("*") if p.is_file()]
    oxum = f"{sum(p.stat().st_size for p in files)}.{len(files)}"
    info = bundle / "bag-info.txt"
    lines = [f"Payload-Oxum: {oxum}" if ln.startswith("Payload-Oxum:") else ln for ln in info.read_text().splitlines()]
    info.write_text("\n".join(lines) + "\n")


def rewrite_tagmanifest(bundle: Path) -> None:
    """tagmanifest-sha256.txt made right again for the files it lists, as a forger would."""
    path = bundle / "tagmanifest-sha256.txt"
    names = [line.split(None, 1)[1] for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(f"{hashlib.sha256((bundle / n).read_bytes()).hexdigest()} {n}\n" for n in names))


def test_files_listed_only_in_an_unsigned_manifest_are_refused(good_bundle, archive_key, tmp_path):
    """bagit counts a file listed in any manifest as listed, but only manifest-sha256.txt is signed: files a
    forger lists in a manifest-sha512.txt of their own pass bagit, and must not pass verify-bundle, not even
    with the archive's own key."""
    bundle = forged_copy(good_bundle, tmp_path)
    note = bundle / "data" / "NOTE.txt"
    note.write_text("Investigator note: the clinic admitted the breach.\n")
    planted = bundle / "data" / "media" / f"{'0' * 64}.png"
    planted.write_bytes(b"\x89PNG fabricated image")
    (bundle / "manifest-sha512.txt").write_text(
        "".join(
            f"{hashlib.sha512(p.read_bytes()).hexdigest()}  {p.relative_to(bundle).as_posix()}\n"
            for p in (note, planted)
        )
    )
    set_payload_oxum(bundle)
    rewrite_tagmanifest(bundle)
    bagit.Bag(str(bundle)).validate()  # the bagit validator is satisfied
    code, lines = verify(bundle, "--public-key", str(archive_key))
    assert code == 1, lines
    assert any(line.startswith("manifest-sha512.txt: ") and "not signed" in line for line in lines), lines
    for added in ("data/NOTE.txt", planted.relative_to(bundle).as_posix()):
        assert f"{added}: not listed in manifest-sha256.txt, the signed manifest (added)" in lines, lines


def reword_bag_info(bundle: Path) -> None:
    info = bundle / "bag-info.txt"
    text = info.read_text().replace("External-Identifier: HR-2026-014", "External-Identifier: HR-2025-999")
    info.write_text(text.replace(f"Source-Organization: {ORGANISATION}", "Source-Organization: Some Other Hospital"))
    rewrite_tagmanifest(bundle)


def swap_public_key_pem(bundle: Path) -> None:
    """The PEM a person would feed to openssl swapped for another key's; the raw key, which verify-bundle
    used to check alone, left as it was."""
    path = bundle / "signature.json"
    document = json.loads(path.read_text())
    document["public_key_pem"] = public_pem(Ed25519PrivateKey.generate().public_key()).decode()
    path.write_text(json.dumps(document, indent=1) + "\n")
    rewrite_tagmanifest(bundle)


def note_in_signature_json(bundle: Path) -> None:
    path = bundle / "signature.json"
    document = json.loads(path.read_text())
    document["note"] = "Checked and found complete by the regulator."
    path.write_text(json.dumps(document, indent=1) + "\n")
    rewrite_tagmanifest(bundle)


def add_tag_files(bundle: Path) -> None:
    (bundle / "VERIFIED-BY-REGULATOR.txt").write_text("Checked and found complete by the regulator.\n")
    (bundle / "notes").mkdir()
    (bundle / "notes" / "summary.txt").write_text("No breach.\n")


def drop_tagmanifest_and_reword(bundle: Path) -> None:
    (bundle / "tagmanifest-sha256.txt").unlink()
    info = bundle / "bag-info.txt"
    info.write_text(info.read_text().replace("External-Identifier: HR-2026-014", "External-Identifier: CLOSED"))


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (reword_bag_info, "signature.json: signature does not match tagmanifest-sha256.txt"),
        (reword_bag_info, "bag-info.txt: External-Identifier HR-2025-999, custody.json says HR-2026-014"),
        (swap_public_key_pem, "signature.json: public_key_pem is not the key in public_key"),
        (note_in_signature_json, "signature.json: field note is not part of a bundle signature"),
        (add_tag_files, "VERIFIED-BY-REGULATOR.txt: not a file a bundle has; no signature covers it (added)"),
        (add_tag_files, "notes: not a file a bundle has; no signature covers it (added)"),
        (drop_tagmanifest_and_reword, "tagmanifest-sha256.txt: missing"),
        (drop_tagmanifest_and_reword, "bag-info.txt: External-Identifier CLOSED, custody.json says HR-2026-014"),
    ],
    ids=lambda v: v.__name__ if callable(v) else "",
)
def test_tag_files_are_signed_too(good_bundle, archive_key, tmp_path, tamper, expected):
    """What bag-info.txt and signature.json say is covered by the signature (or checked against the signed
    custody.json), and a file a bundle does not have is refused, even when the forger keeps the signed
    manifest and its payload as they were and the recipient checks against the archive's own key."""
    bundle = forged_copy(good_bundle, tmp_path)
    tamper(bundle)
    code, lines = verify(bundle, "--public-key", str(archive_key))
    assert code == 1 and any(expected in line for line in lines), lines


def test_a_bundle_of_the_older_format_still_verifies(demo, archive_key, tmp_path):
    """Bundles handed over before the tag manifest was signed (archiver-bundle-signature/1: the signature
    covers manifest-sha256.txt, the tag manifest lists signature.json, the CSVs hold text as it is) still
    verify, with a note saying what their signature does not cover; their bag-info.txt is held to
    custody.json."""
    import csv

    from archiver.checkpoints import load_private_key

    conn = db(demo)
    mention = conn.execute("SELECT item_key FROM items WHERE text LIKE '@%' ORDER BY item_key").fetchone()[0]
    conn.close()
    bundle = tmp_path / "older"
    assert export(demo, bundle, "--item", mention, "--thread-context")[0] == 0
    mentions = 0
    for path in (bundle / "data").glob("*.jsonl"):
        rows = jsonl(path)
        mentions += sum(str(r.get("text", "")).startswith("@") for r in rows)
        with open(path.with_suffix(".csv"), encoding="utf-8", newline="") as fh:
            columns = next(csv.reader(fh))
        with open(path.with_suffix(".csv"), "w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    assert mentions  # the CSVs differ from what a bundle of today writes
    regenerate_manifests(bundle)
    key = load_private_key(demo / "archive" / "keys")
    document = json.loads((bundle / "signature.json").read_text())
    document["type"], document["signed_file"] = "archiver-bundle-signature/1", "manifest-sha256.txt"
    document["signature"] = base64.b64encode(key.sign((bundle / "manifest-sha256.txt").read_bytes())).decode()
    (bundle / "signature.json").write_text(json.dumps(document, indent=1) + "\n")
    cwd = os.getcwd()
    try:
        bagit.Bag(str(bundle)).save()  # as such a bundle was made: its tag manifest covers signature.json
    finally:
        os.chdir(cwd)
    code, lines = verify(bundle, "--public-key", str(archive_key))
    assert code == 0 and lines[0].startswith("note: signature.json: an older bundle") and "bundle verifies" in lines[-1]
    reword_bag_info(bundle)
    code, lines = verify(bundle, "--public-key", str(archive_key))
    assert code == 1 and any("External-Identifier HR-2025-999, custody.json says HR-2026-014" in ln for ln in lines)


def readme_manual_steps(bundle: Path, key: Path, signature: Path) -> str:
    """README's "Without our software" commands, for this bundle and key."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("cd /cases/HR-2026-014; KEY=")
    steps = readme[start : readme.index("```", start)]
    return (
        steps.replace("/cases/HR-2026-014", shlex.quote(str(bundle)))
        .replace("/safe/archive-ed25519.pub", shlex.quote(str(key)))
        .replace("/tmp/bundle.sig", shlex.quote(str(signature)))
    )


def add_file_and_list_it_in_a_sha512_manifest(bundle: Path) -> None:
    note = bundle / "data" / "NOTE.txt"
    note.write_text("Investigator note: the clinic admitted the breach.\n")
    (bundle / "manifest-sha512.txt").write_text(f"{hashlib.sha512(note.read_bytes()).hexdigest()}  data/NOTE.txt\n")
    set_payload_oxum(bundle)
    rewrite_tagmanifest(bundle)


@pytest.mark.parametrize(
    "tamper",
    [
        None,
        edit_row_and_manifests,
        resigned_manifest,
        add_file,
        add_file_and_list_it_in_a_sha512_manifest,
        reword_bag_info,
        add_tag_files,
        drop_tagmanifest_and_reword,
    ],
    ids=lambda v: v.__name__ if v else "untouched",
)
def test_readme_steps_without_our_software_catch_a_changed_bundle(good_bundle, archive_key, tmp_path, tamper):
    """The README's commands for a recipient without our software (openssl, sha256sum, warcio) pass on the
    bundle as exported and fail on each change, a bundle reworded and signed again included."""
    openssl = shutil.which("openssl")
    assert openssl, "OpenSSL 3 is needed for this test: apt-get install openssl"
    bundle = forged_copy(good_bundle, tmp_path)
    if tamper is not None:
        tamper(bundle)
    script = readme_manual_steps(bundle, archive_key, tmp_path / "bundle.sig")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], capture_output=True, text=True, env=env)
    if tamper is None:
        assert done.returncode == 0 and "Signature Verified Successfully" in done.stdout, done.stdout + done.stderr
    else:
        assert done.returncode != 0, done.stdout + done.stderr


# -- flags (the scan's tables, made here with the columns the flags branch gives them, until it lands) ----------
def test_flagged_only_exports_flags_and_reviews(demo, tmp_path):
    """The demo's runs flag its PHI (issue 7's scan); one flag gets a review; --flagged exports exactly those."""
    from archiver.scan.archive import append_review

    copy = tmp_path / "demo"
    shutil.copytree(demo, copy)
    store = Store.open(copy / "archive" / "archive.db")
    flagged = {r[0] for r in store.conn.execute("SELECT DISTINCT item_key FROM flags")}
    flag_count = store.conn.execute("SELECT count(*) FROM flags").fetchone()[0]
    first = store.conn.execute("SELECT id, rule_id FROM flags ORDER BY id LIMIT 1").fetchone()
    append_review(store, first[0], "violation", "privacy officer", "confirmed with the patient")
    store.close()
    assert flagged and flag_count
    out = tmp_path / "flagged"
    code, output = export(copy, out, "--flagged")
    assert code == 0, output
    assert {r["item_key"] for r in jsonl(out / "data" / "items.jsonl")} == flagged
    assert len(jsonl(out / "data" / "flags.jsonl")) == flag_count
    assert len(jsonl(out / "data" / "flag_reviews.jsonl")) == 1
    [operator] = jsonl(out / "data" / "review_operators.jsonl")  # who recorded it, ledgered with it
    assert operator["review_id"] == jsonl(out / "data" / "flag_reviews.jsonl")[0]["id"]
    assert operator["operator"] in (out / "data" / "report.html").read_text()
    assert first[1] in (out / "data" / "report.html").read_text()
    assert verifies(out)
    edit = out.parent / "edited"
    shutil.copytree(out, edit)
    reviews = edit / "data" / "flag_reviews.jsonl"
    reviews.write_text(reviews.read_text().replace("violation", "false-positive"))
    regenerate_manifests(edit)
    code, lines = verify(edit)
    assert code == 1 and any("data/flag_reviews.jsonl id=" in line and "row differs" in line for line in lines)


@pytest.mark.parametrize(
    ("content_type", "extension"),
    [
        ("image/jpeg", ".jpg"),
        ("IMAGE/PNG; charset=binary", ".png"),
        ("video/mp4", ".mp4"),
        ("image/svg+xml", ".bin"),
        ("text/html; charset=utf-8", ".bin"),
        ("application/javascript", ".bin"),
        ("application/xhtml+xml", ".bin"),
        ("", ".bin"),
        (None, ".bin"),
    ],
)
def test_a_media_file_never_gets_a_name_a_viewer_would_run(content_type, extension):
    """The platform's Content-Type named the file: an svg or html one, opened from the bundle, would run as a
    page on the investigator's machine."""
    assert media_extension(content_type) == extension


def with_custody(good_bundle: Path, demo: Path, tmp_path: Path, change, key: Ed25519PrivateKey | None = None) -> Path:
    """The bundle as an archiver of another format would have made it: custody.json changed, signed again with
    the archive's own key (or `key`)."""
    bundle = tmp_path / "other-format"
    shutil.copytree(good_bundle, bundle)
    path = bundle / "data" / "custody.json"
    custody = json.loads(path.read_text())
    change(custody)
    path.write_text(json.dumps(custody, indent=1, ensure_ascii=False) + "\n")
    regenerate_manifests(bundle)
    resign(bundle, key or load_private_key(demo / "archive" / "keys"))
    return bundle


def test_a_bundle_of_format_1_still_verifies(good_bundle, demo, tmp_path):
    bundle = with_custody(good_bundle, demo, tmp_path, lambda c: c.update(type="archiver-custody/1"))
    code, lines = verify(bundle, "--public-key", str(demo / "archive" / "keys" / "archive-ed25519.pub"))
    assert code == 0 and lines[-1].startswith("bundle verifies"), lines


@pytest.mark.parametrize("newer", ["format", "table"])
def test_a_bundle_a_newer_archiver_made_is_refused_not_reported_tampered(good_bundle, demo, tmp_path, newer):
    """Review r F4: a verify-bundle of format 1 took format 2's consent rows for rows removed (9 problems)."""

    def change(custody):  # noqa: ANN001, ANN202
        if newer == "format":
            custody["type"] = "archiver-custody/4"
        else:
            last = custody["ledger_entries"][-1]
            custody["ledger_entries"].append({**last, "table_name": "made_later", "row_key": "1"})

    bundle = with_custody(good_bundle, demo, tmp_path, change)
    code, lines = verify(bundle, "--public-key", str(demo / "archive" / "keys" / "archive-ed25519.pub"))
    assert code == 2, lines
    what = "its format is archiver-custody/4" if newer == "format" else "it carries rows of made_later"
    assert lines == [
        f"archiver: error: {bundle}: made by a newer archiver ({what}; this verify-bundle checks archiver-custody/1, "
        "archiver-custody/2, archiver-custody/3): check it with that archiver or a later one"
    ]


def test_a_newer_format_under_another_key_is_reported_as_tampering(good_bundle, demo, tmp_path):
    """Only a bundle whose signature holds is taken at its word about its format."""
    bundle = with_custody(
        good_bundle, demo, tmp_path, lambda c: c.update(type="archiver-custody/4"), Ed25519PrivateKey.generate()
    )
    code, lines = verify(bundle, "--public-key", str(demo / "archive" / "keys" / "archive-ed25519.pub"))
    assert code == 1 and any("type expected archiver-custody/3, found archiver-custody/4" in ln for ln in lines), lines


def test_the_bundle_format_names_the_tables_it_carries():
    """A table added to bundles needs a new CUSTODY_TYPE (an older verify-bundle would take its rows for rows
    removed, a newer one refuses what it does not know): bump it, then this list."""
    from archiver.bundle.gather import ROW_TABLES
    from archiver.bundle.write import CUSTODY_TYPE

    tables_2 = {
        "archiver-custody/2": (
            "item_versions",
            "events",
            "media_files",
            "accounts",
            "flags",
            "flag_reviews",
            "review_operators",
            "consent_links",
            "consent_register",
            "consent_imports",
        )
    }
    carried = {**tables_2, "archiver-custody/3": tables_2["archiver-custody/2"]}  # 3 added the checkpoint history
    assert carried.get(CUSTODY_TYPE) == ROW_TABLES
