"""Evidence bundles carry the consent record of their items, show which flags were still in the review queue,
and verify-bundle holds report.html to the rows it is made from (findings of the 2026-11-24 review: a bundle of
a revoked testimonial read as "never had consent"; a post's text changed only in report.html, re-signed with the
archive's key, verified)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from html import escape
from pathlib import Path

import pytest

from archiver.bundle.gather import ROW_TABLES, items_view
from archiver.bundle.report import NOT_QUEUED, render_report
from archiver.bundle.verify import REGENERATED, SHOWS_ROWS
from archiver.bundle.write import write_table
from archiver.checkpoints import load_private_key
from archiver.ledger import canonical_row_bytes, chain_hash
from tests.test_bundle import db, export, jsonl, regenerate_manifests, resign, verifies, verify

CONSENT_TABLES = ("consent_links", "consent_register", "consent_imports")


@pytest.fixture(scope="module")
def demo(demo_template, tmp_path_factory) -> Path:
    """The demo archive: a story whose consent is live, a testimonial whose consent was revoked, a photo whose
    consent expired, a story with none; each with its consent flags."""
    return demo_template.copy_to(tmp_path_factory.mktemp("consents") / "demo")


def rows(conn: sqlite3.Connection, sql: str, *params) -> list[dict]:
    return [dict(r) for r in conn.execute(sql, params)]


def consent_items(demo: Path) -> list[str]:
    """The items with a consent linked or a consent flag."""
    conn = db(demo)
    keys = {r[0] for r in conn.execute("SELECT item_key FROM consent_links UNION SELECT item_key FROM flags")}
    conn.close()
    return sorted(keys)


@pytest.fixture(scope="module")
def bundle(demo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "consents"
    code, output = export(demo, out, *[a for key in consent_items(demo) for a in ("--item", key)])
    assert code == 0, output
    return out


@pytest.fixture(scope="module")
def archive_key(demo, tmp_path_factory) -> Path:
    from archiver.checkpoints import public_pem

    path = tmp_path_factory.mktemp("key") / "archive-ed25519.pub"
    path.write_bytes(public_pem(load_private_key(demo / "archive" / "keys").public_key()))
    return path


def revoked_post(demo: Path) -> str:
    conn = db(demo)
    key = conn.execute("SELECT item_key FROM consent_links WHERE consent_id = 'C-DEMO-002'").fetchone()[0]
    conn.close()
    return key


def section_of(report: str, key: str) -> str:
    start = report.index(f"{escape(key)}</h2>")
    return report[start : report.index("</section>", start)]


def test_a_bundle_carries_the_consent_record_of_its_items(bundle, demo):
    """Each item's links, every register row of those consents (the grant and the revocation) and the imports
    they came by, exactly as stored, each with its ledger entry and inclusion proof; the report shows each
    consent with its dates, form digest, who linked it and its status on the export day."""
    data = bundle / "data"
    conn = db(demo)
    keys = sorted({r["item_key"] for r in jsonl(data / "items.jsonl")})
    marks = ",".join("?" for _ in keys)
    links = rows(conn, f"SELECT * FROM consent_links WHERE item_key IN ({marks}) ORDER BY id", *keys)
    assert {link["consent_id"] for link in links} == {"C-DEMO-001", "C-DEMO-002", "C-DEMO-003"}
    register = rows(conn, "SELECT * FROM consent_register ORDER BY id")
    imports = rows(conn, "SELECT * FROM consent_imports ORDER BY id")
    conn.close()
    assert jsonl(data / "consent_links.jsonl") == links
    assert jsonl(data / "consent_register.jsonl") == register  # C-DEMO-002 twice: granted, then revoked
    assert jsonl(data / "consent_imports.jsonl") == imports
    custody = json.loads((data / "custody.json").read_text())
    entries = {(e["table_name"], e["row_key"]): e for e in custody["ledger_entries"]}
    for table, found in (("consent_links", links), ("consent_register", register), ("consent_imports", imports)):
        assert custody["counts"][table] == len(found)
        for row in found:
            entry = entries[(table, str(row["id"]))]
            assert entry["row_sha256"] == hashlib.sha256(canonical_row_bytes(table, row)).hexdigest()
            assert entry["inclusion"]
    assert verifies(bundle)
    section = section_of((data / "report.html").read_text(), revoked_post(demo))
    consent = section[section.index("<h3>Consent</h3>") :]
    granted, revoked = [r for r in register if r["consent_id"] == "C-DEMO-002"]
    day = custody["exported_at"][:10]
    link = next(li for li in links if li["consent_id"] == "C-DEMO-002")
    assert (
        f"<tr><td>C-DEMO-002</td><td>{revoked['patient_ref']}</td><td>testimonial quote</td><td>the whole post</td>"
        f"<td>{revoked['granted_on']}</td><td></td><td>{revoked['revoked_on']}</td>"
        f"<td>{revoked['document_sha256']}</td><td>{escape(link['linked_by'])}</td><td>{link['linked_at']}</td>"
        "<td>revoked</td></tr>"
    ) in consent
    assert f"<th>status on {day}</th>" in consent
    for row in (granted, revoked):  # the whole history, each row with the import it came by
        source = next(i for i in imports if i["id"] == row["import_id"])
        assert f"<tr><td>{row['id']}</td><td>{row['recorded_at']}</td>" in consent
        assert f"{escape(source['file_name'])} row {row['source_row']} (import {source['id']}" in consent


@pytest.mark.parametrize(
    ("granted_on", "expires_on", "revoked_on", "status"),
    [
        ("2026-10-01", None, None, "live"),
        ("2026-11-21", None, None, "pending"),
        ("2026-10-01", "2026-11-20", None, "live"),  # the last day covered
        ("2026-10-01", "2026-11-19", None, "expired"),
        ("2026-10-01", None, "2026-11-20", "revoked"),
        ("2026-10-01", None, "2026-11-21", "live"),  # revoked from tomorrow: covered today
        ("2026-10-01", "2026-11-10", "2026-11-11", "revoked"),  # revoked on the first day after its expiry
        ("2026-10-01", "2026-11-10", "2026-11-15", "expired"),  # expired first, revoked later: it lapsed by expiring
    ],
)
def test_a_consents_status_on_the_export_day(granted_on, expires_on, revoked_on, status):
    """As the register decides it (archiver/consent/state.py), from the latest register row alone."""
    from archiver.bundle.report import consent_status

    row = {"granted_on": granted_on, "expires_on": expires_on, "revoked_on": revoked_on}
    assert consent_status(row, "2026-11-20") == status


def flags_in_queue(demo: Path, ids: list[int]) -> set[int]:
    conn = db(demo)
    found = {
        r[0] for r in conn.execute(f"SELECT flag_id FROM flag_queue WHERE flag_id IN ({','.join('?' * len(ids))})", ids)
    }
    conn.close()
    return found


def decisions(report: str) -> dict[int, str]:
    """Each flag row's decision cell, by the flag's position among the report's flag rows (flags.jsonl order
    within each item)."""
    found = []
    for table in report.split("<h3>Flags</h3>")[1:]:
        for row in table[: table.index("</table>")].split("<tr>")[2:]:
            found.append(row.split("<td>")[6].removesuffix("</td>"))
    return dict(enumerate(found))


def test_flags_no_longer_in_the_review_queue_are_not_shown_open(bundle, demo):
    """A consent.missing flag of a post a consent was linked to since has left the review queue: the report
    says so instead of "open", from the queue as custody.json records it at export."""
    data = bundle / "data"
    flags = jsonl(data / "flags.jsonl")
    custody = json.loads((data / "custody.json").read_text())
    queued = flags_in_queue(demo, [f["id"] for f in flags])
    assert custody["flags_in_review_queue"] == sorted(queued)
    left = [f for f in flags if f["id"] not in queued]
    assert any(f["rule_id"] == "consent.missing" and f["item_key"] == revoked_post(demo) for f in left)
    report = (data / "report.html").read_text()
    by_item: dict[str, list[dict]] = {}
    for flag in flags:
        by_item.setdefault(flag["item_key"], []).append(flag)
    ordered = [
        f
        for item in items_view({"item_versions": jsonl(data / "item_versions.jsonl")})
        for f in by_item.get(item["item_key"], [])
    ]
    shown = decisions(report)
    assert len(shown) == len(ordered)
    for n, flag in enumerate(ordered):  # none of them reviewed
        assert shown[n] == ("open (not reviewed)" if flag["id"] in queued else NOT_QUEUED), flag


def forge(bundle: Path, demo: Path, tmp_path: Path, change: Callable[[Path], None]) -> Path:
    """A copy of the bundle changed, its manifests made again and signed with the archive's own key."""
    forged = tmp_path / "forged"
    shutil.copytree(bundle, forged)
    change(forged / "data")
    regenerate_manifests(forged)
    resign(forged, load_private_key(demo / "archive" / "keys"))
    return forged


def rewrite(data: Path, table: str, change: Callable[[list[dict]], list[dict]]) -> None:
    path = data / f"{table}.jsonl"
    with open(path.with_suffix(".csv"), encoding="utf-8") as fh:
        columns = fh.readline().strip().split(",")
    write_table(change(jsonl(path)), path, columns)


def edit_custody(data: Path, change: Callable[[dict], None]) -> None:
    custody = json.loads((data / "custody.json").read_text())
    change(custody)
    (data / "custody.json").write_text(json.dumps(custody, indent=1, ensure_ascii=False) + "\n")


def revocation(data: Path) -> dict:
    return next(r for r in jsonl(data / "consent_register.jsonl") if r["revoked_on"])


def withdraw_revocation(data: Path) -> None:
    rewrite(data, "consent_register", lambda found: [{**r, "revoked_on": None} for r in found])


def drop_revocation(data: Path) -> None:
    rewrite(data, "consent_register", lambda found: [r for r in found if not r["revoked_on"]])


def drop_register(data: Path) -> None:
    (data / "consent_register.jsonl").unlink()
    (data / "consent_register.csv").unlink()


def withdraw_revocation_and_its_entry(data: Path) -> None:
    """The revocation row and its ledger entry made again over the same prev_hash: its neighbours still link."""
    row = {**revocation(data), "revoked_on": None}
    rewrite(data, "consent_register", lambda found: [row if r["id"] == row["id"] else r for r in found])

    def change(custody: dict) -> None:
        entry = next(
            e
            for e in custody["ledger_entries"]
            if e["table_name"] == "consent_register" and e["row_key"] == str(row["id"])
        )
        canonical = canonical_row_bytes("consent_register", row)
        entry["row_sha256"] = hashlib.sha256(canonical).hexdigest()
        entry["hash"] = chain_hash(entry["prev_hash"], canonical)

    edit_custody(data, change)


def drop_consent_with_its_entries(data: Path) -> None:
    """A consent's register rows and their ledger entries left out, its link kept."""
    gone = {str(r["id"]) for r in jsonl(data / "consent_register.jsonl") if r["consent_id"] == "C-DEMO-002"}
    rewrite(data, "consent_register", lambda found: [r for r in found if str(r["id"]) not in gone])

    def change(custody: dict) -> None:
        custody["ledger_entries"] = [
            e for e in custody["ledger_entries"] if not (e["table_name"] == "consent_register" and e["row_key"] in gone)
        ]

    edit_custody(data, change)


def drop_import_with_its_entry(data: Path) -> None:
    rewrite(data, "consent_imports", lambda found: [r for r in found if r["id"] != 2])
    edit_custody(
        data,
        lambda custody: custody.update(
            ledger_entries=[
                e
                for e in custody["ledger_entries"]
                if not (e["table_name"] == "consent_imports" and e["row_key"] == "2")
            ]
        ),
    )


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (withdraw_revocation, "data/consent_register.jsonl id={id}: row differs from ledger seq"),
        (drop_revocation, "consent_register {id} is in custody.json but not in the bundle (row removed)"),
        (drop_register, "consent_register {id} is in custody.json but not in the bundle (row removed)"),
        (withdraw_revocation_and_its_entry, "its row is not at this seq in the ledger tree the checkpoint signs"),
        (
            drop_consent_with_its_entries,
            "data/consent_links.jsonl id={link}: consent C-DEMO-002 has no row in data/consent_register.jsonl",
        ),
        (drop_import_with_its_entry, "import 2 has no row in data/consent_imports.jsonl (left out)"),
    ],
    ids=lambda v: v.__name__ if callable(v) else "",
)
def test_consent_rows_edited_or_left_out_are_refused(bundle, demo, archive_key, tmp_path, tamper, expected):
    """Re-signed with the archive's own key, checked against it: a revocation withdrawn, dropped, or made again
    with its ledger entry, a consent's rows or an import left out with their entries."""
    row = revocation(bundle / "data")
    link = next(li for li in jsonl(bundle / "data" / "consent_links.jsonl") if li["consent_id"] == "C-DEMO-002")
    forged = forge(bundle, demo, tmp_path, tamper)
    code, lines = verify(forged, "--public-key", str(archive_key))
    message = expected.format(id=row["id"], link=link["id"])
    assert code == 1 and any(message in line for line in lines), lines


def change_a_text_in_the_report(data: Path) -> None:
    """What the review found: the rows kept as they are, a post's words changed where a person reads them."""
    version = jsonl(data / "item_versions.jsonl")[0]
    report = data / "report.html"
    shown = f'<div class="text">{escape(version["text"])}</div>'
    assert shown in report.read_text()
    report.write_text(report.read_text().replace(shown, '<div class="text">We apologise for the error.</div>'))


def test_a_report_changed_apart_from_its_rows_is_refused(bundle, demo, archive_key, tmp_path):
    """Rows kept, report.html reworded, the bag made again and signed with the archive's key: one line names
    report.html. The bundle as exported says its report was made again."""
    forged = forge(bundle, demo, tmp_path, change_a_text_in_the_report)
    code, lines = verify(forged, "--public-key", str(archive_key))
    assert code == 1 and len(lines) == 2, lines
    assert lines[0].startswith("data/report.html: differs from the report its rows and custody.json make (first at")
    code, lines = verify(bundle, "--public-key", str(archive_key))
    assert code == 0 and lines[-2:] == [REGENERATED, "bundle verifies"], lines


def make_older(data: Path) -> None:
    """The bundle as an archiver before consents and the review queue were carried wrote it: no consent rows,
    no report_format or flags_in_review_queue in custody.json, and its report (the report the rows make then:
    the same bytes as that archiver's, checked with a bundle it made)."""
    for table in CONSENT_TABLES:
        (data / f"{table}.jsonl").unlink()
        (data / f"{table}.csv").unlink()

    def change(custody: dict) -> None:
        custody["ledger_entries"] = [e for e in custody["ledger_entries"] if e["table_name"] not in CONSENT_TABLES]
        for table in CONSENT_TABLES:
            del custody["counts"][table]
        custody["counts"]["ledger_entries"] = len(custody["ledger_entries"])
        del custody["report_format"], custody["flags_in_review_queue"]

    edit_custody(data, change)
    custody = json.loads((data / "custody.json").read_text())
    tables = {t: jsonl(data / f"{t}.jsonl") for t in ROW_TABLES if (data / f"{t}.jsonl").exists()}
    report = render_report(tables, custody)
    assert "<h3>Consent</h3>" not in report and NOT_QUEUED not in report
    (data / "report.html").write_text(report, "utf-8")


def make_older_report(data: Path) -> None:
    """A report an even older archiver wrote: laid out otherwise (here without its list of items), so it cannot
    be made again."""
    make_older(data)
    report = (data / "report.html").read_text()
    nav = report[report.index("<nav>") : report.index("</nav>") + len("</nav>")]
    (data / "report.html").write_text(report.replace(nav, ""))


def test_bundles_made_before_still_verify(bundle, demo, archive_key, tmp_path):
    """A bundle without the consent files verifies, its report made again byte for byte; one whose report was
    laid out otherwise verifies with a note, held to showing each version's text and each event, and says so;
    such a report with a text changed is refused."""
    older = forge(bundle, demo, tmp_path / "a", make_older)
    code, lines = verify(older, "--public-key", str(archive_key))
    assert code == 0 and lines[-2:] == [REGENERATED, "bundle verifies"] and not any("note" in ln for ln in lines)
    oldest = forge(bundle, demo, tmp_path / "b", make_older_report)
    code, lines = verify(oldest, "--public-key", str(archive_key))
    assert code == 0, lines
    assert lines[0].startswith("note: data/report.html: made by an older archiver") and lines[-2:] == [
        SHOWS_ROWS,
        "bundle verifies",
    ]
    changed = forge(oldest, demo, tmp_path / "c", change_a_text_in_the_report)
    version = jsonl(oldest / "data" / "item_versions.jsonl")[0]
    code, lines = verify(changed, "--public-key", str(archive_key))
    assert code == 1 and lines[:-1] == [
        f"data/report.html: does not show the text of version {version['id']} as the rows state it (changed)"
    ], lines
    event = jsonl(oldest / "data" / "events.jsonl")[-1]

    def redate_event(data: Path) -> None:
        report = data / "report.html"
        shown = f"<tr><td>{event['observed_at']}</td><td>{event['event']}</td>"
        assert report.read_text().count(shown) == 1
        report.write_text(report.read_text().replace(shown, f"<tr><td>2030-01-01</td><td>{event['event']}</td>"))

    redated = forge(oldest, demo, tmp_path / "d", redate_event)
    code, lines = verify(redated, "--public-key", str(archive_key))
    assert code == 1 and lines[:-1] == [
        f"data/report.html: does not show event {event['id']} as the rows state it (changed)"
    ], lines


def test_a_forged_report_format_does_not_excuse_a_changed_report(bundle, demo, archive_key, tmp_path):
    """Taking report_format out of custody.json (re-signed) only gets the older bundles' check, which still holds
    the report to every version's text, and verify-bundle says it checked no more."""

    def downgrade(data: Path) -> None:
        edit_custody(data, lambda custody: custody.pop("report_format"))
        change_a_text_in_the_report(data)

    forged = forge(bundle, demo, tmp_path, downgrade)
    code, lines = verify(forged, "--public-key", str(archive_key))
    assert code == 1 and any(ln.startswith("data/report.html: does not show the text of version") for ln in lines)


def test_items_jsonl_says_what_the_rows_say(bundle, demo, archive_key, tmp_path):
    """items.jsonl, the reading aid, is the archive's items view: an item's status changed there (an edited post
    shown as never edited) is refused, even re-signed."""
    keys = [r["item_key"] for r in jsonl(bundle / "data" / "items.jsonl")]

    def relabel(data: Path) -> None:
        rewrite(
            data,
            "items",
            lambda found: [{**found[0], "status": "live" if found[0]["status"] != "live" else "edited"}, *found[1:]],
        )

    forged = forge(bundle, demo, tmp_path, relabel)
    code, lines = verify(forged, "--public-key", str(archive_key))
    assert code == 1 and lines[:-1] == [f"data/items.jsonl {keys[0]}: differs from its version and event rows"], lines


def test_items_view_is_the_archives_items_view(bundle, demo):
    """Every item of the demo archive (edited and deleted ones among them), worked out from its rows as the
    view does; and a bundle's items.jsonl, its rows' view."""
    tables = {t: jsonl(bundle / "data" / f"{t}.jsonl") for t in ("item_versions", "events")}
    assert items_view(tables) == jsonl(bundle / "data" / "items.jsonl")
    conn = db(demo)
    tables = {t: rows(conn, f"SELECT * FROM {t} ORDER BY id") for t in ("item_versions", "events")}
    view = rows(conn, "SELECT * FROM items ORDER BY version_id")
    conn.close()
    assert {i["status"] for i in view} == {"live", "edited", "deleted"}
    assert items_view(tables) == view


def test_an_archive_without_a_consent_register_or_review_queue(demo, tmp_path):
    """An archive of before the consent register (or a scan) exports no consent files and records no queue;
    every undecided flag is open in the report, as before, and the bundle verifies."""
    copy = tmp_path / "demo"
    shutil.copytree(demo, copy)
    conn = sqlite3.connect(copy / "archive" / "archive.db")
    for view in ("flag_queue", "flag_status", "lapsed_consents", "consent_items", "consents"):
        conn.execute(f"DROP VIEW {view}")
    for table in CONSENT_TABLES:
        conn.execute(f"DROP TABLE {table}")
    conn.commit()
    conn.close()
    out = tmp_path / "bundle"
    code, output = export(copy, out, *[a for key in consent_items(demo) for a in ("--item", key)])
    assert code == 0, output
    data = out / "data"
    assert not any((data / f"{t}.jsonl").exists() for t in CONSENT_TABLES)
    assert json.loads((data / "custody.json").read_text())["flags_in_review_queue"] is None
    report = (data / "report.html").read_text()
    assert "<h3>Consent</h3>" not in report and NOT_QUEUED not in report
    assert report.count("open (not reviewed)") == len(jsonl(data / "flags.jsonl"))
    assert verifies(out)


def test_rows_holding_line_separators_are_read_as_written(tmp_path):
    """JSON keeps U+2028, U+2029 and U+0085 unescaped inside a string (ensure_ascii=False), and a post's text may
    hold them: a JSON Lines file is split at its newlines only, or such a row reads as broken and its report as
    changed."""
    from archiver.bundle.verify import _read_jsonl

    written = [{"id": 1, "text": "first line\u2028second\u2029third\x85fourth\x1cfifth"}, {"id": 2, "text": ""}]
    path = tmp_path / "item_versions.jsonl"
    write_table(written, path)
    problems: list = []
    assert _read_jsonl(path, problems) == written and problems == []
