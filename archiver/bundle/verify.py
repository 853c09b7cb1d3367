"""`archiver verify-bundle`: check an evidence bundle on its own, without the archive it came from.

Checks, each problem one line:
- the bag: the `bagit` library's own validation (every payload file listed and its sha256 right, no file
  missing or added, the tag manifest right); and since bagit counts a file listed in any manifest as
  listed while only the sha256 ones are signed, no other manifest, and data/ holding exactly the files
  manifest-sha256.txt lists; beside data/, only the files a bundle has (nothing signs any other); no
  symbolic link anywhere (a linked folder is walked by no check, so it could show anything);
- the signature: tagmanifest-sha256.txt (listing bagit.txt, bag-info.txt and manifest-sha256.txt) signed by
  the key in signature.json, whose PEM form is the same key; that key is the key that signed the checkpoint
  in custody.json, and the key given with --public-key when there is one; bag-info.txt's case, organisation
  and contact those of custody.json;
- the checkpoint: its Ed25519 signature over its statement; the checkpoints before it (history.py): each
  signed by the same key, none left out, each one's ledger tree proven (RFC 9162 consistency) the first
  entries of the bundle's, and with --checkpoints each copy kept elsewhere found in them unchanged;
- the WARC extract: every record's block and payload digests, and the catalogue in custody.json (same record
  ids, same gzip members), read as a stream: only the digests and the JSON payloads the rows are checked
  against are kept, never a media file's body;
- the rows: each row's ledger entry recomputed from the row as it is in the bundle (row sha256 and chain
  hash), entries no later than the signed checkpoint, neighbouring entries linked, the checkpoint's own head
  entry equal to the signed hash when the bundle holds it; each version's raw JSON found in the payload of
  its WARC record, each media file's sha256 equal to its row's and to its record's body, and each attachment
  a version names by its sha256 in the bundle (its media_files row and file);
- the consent rows: each link's consent has its register rows in the bundle, and each import a link or
  register row names its consent_imports row;
- the CSV files equal to the JSON Lines they accompany (a cell a spreadsheet would run as a formula with
  its leading ', as written), and items.jsonl equal to the items its version and event rows make;
- report.html made again from the rows and custody.json, byte for byte; a bundle made before the report was
  (no report_format of today in custody.json) whose report differs only has to show each version's text and
  each event as its rows state them, and verify-bundle says so.

What cannot be shown from the bundle alone: the entries between two rows of the bundle (other people's
rows, deliberately left out), so the chain is shown link by link where it can be, and anchored at the
checkpoint. `archiver verify` on the archive checks the whole chain.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import json
import logging
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bagit
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from warcio.archiveiterator import ArchiveIterator

from .. import merkle
from ..checkpoints import _signature_ok, fingerprint, load_public_key, public_b64, signed_tree
from ..errors import ConfigError
from ..evidence_check import EvidenceRecords
from ..ledger import canonical_row_bytes, chain_hash
from ..problems import Problem
from ..verify import _JsonIndex
from .extract import CHUNK, block_chunks
from .gather import ROW_TABLES, attachments, items_view, media_index, media_row_of, row_key_column
from .history import check_kept, history_lines, read_history
from .report import REPORT_FORMAT, render_report
from .write import (
    CUSTODY_TYPE,
    CUSTODY_TYPES,
    EXTRACT,
    LEGACY_SIGNATURE_TYPE,
    MANIFEST,
    NO_ORGANISATION,
    SIGNATURE_FILE,
    SIGNATURE_TYPE,
    SIGNED_FILE,
    TAG_FILES,
    TAGMANIFEST,
    csv_text,
)

ANY_MANIFEST = re.compile(r"^(tag)?manifest-.+\.txt$")
HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# What every report so far has written for a version's text and an event's timeline row (up to its record).
REPORT_TEXT = re.compile(r'<div class="text">([^<]*)</div>')
REPORT_EVENT = re.compile(r"<tr><td>[^<]*</td><td>[^<]*</td><td>[^<]*</td><td><code>[^<]*</code>")
BUNDLE_FILES = ("bagit.txt", "bag-info.txt", MANIFEST, TAGMANIFEST, SIGNATURE_FILE)  # and data/
SIGNATURE_FIELDS = ("type", "signed_file", "signature", "public_key", "public_key_pem")
# Per format of signature.json: the file it signs, and the files the tag manifest lists.
SIGNS = {
    SIGNATURE_TYPE: (SIGNED_FILE, TAG_FILES),
    LEGACY_SIGNATURE_TYPE: (MANIFEST, (*TAG_FILES, SIGNATURE_FILE)),
}


@dataclass(frozen=True)
class SeenRecord:
    """What the row checks need of a WARC record of the extract, once its digests are checked."""

    body_sha256: str  # of the HTTP body (the block after its headers): a media file's digest
    payload: bytes | None  # that body, kept only for the records versions' raw JSON is looked for in


def verify_bundle(path: Path, public_key: Path | None = None, kept: Path | None = None) -> list[Problem]:
    """Every problem found in the bundle at `path`; an empty list means it verifies. `kept`: a folder of checkpoint
    copies kept away from the archive, each to be found, unchanged, in the bundle's checkpoint history."""
    trusted = load_public_key(public_key) if public_key is not None else None
    path = Path(path)
    problems = list(_verify_bag(path))
    if not (path / "bagit.txt").exists():
        return problems
    problems.extend(_verify_files(path))
    data = path / "data"
    custody = _read_object(data / "custody.json", problems)
    problems.extend(_verify_signature(path, custody, trusted))
    if custody is None:
        return problems
    if not problems:  # the bag and its signature hold: what custody.json says is what was exported
        refuse_newer_format(path, custody)
    if custody.get("type") not in CUSTODY_TYPES:
        problems.append(Problem("data/custody.json", f"type expected {CUSTODY_TYPE}, found {custody.get('type')}"))
        return problems
    problems.extend(_verify_bag_info(path / "bag-info.txt", custody))
    malformed = _verify_custody_shape(custody)
    if malformed:  # the records and rows are checked against what custody.json says: it must say it in form
        return [*problems, *malformed]
    checkpoint = custody["checkpoint"]
    if not _signature_ok(checkpoint["public_key"], checkpoint["signature"], checkpoint["statement"]):
        problems.append(Problem("data/custody.json checkpoint", "signature does not match the statement"))
    history = read_history(custody, _carries_history(custody))
    problems.extend(history.problems)
    if kept is not None:
        problems.extend(check_kept(history, kept, public_b64(trusted) if trusted else None).problems)
    unreadable: list[Problem] = []
    tables = {t: _read_jsonl(data / f"{t}.jsonl", unreadable) for t in ROW_TABLES if (data / f"{t}.jsonl").exists()}
    keep = {str(row.get("warc_record_id")) for row in tables.get("item_versions", [])}
    # A deletion's or restoration's evidence (a signed row) says what its records answered: the 404 of a lookup,
    # the listing the item was absent from. The records are signed only by the bundle's signature: held to the
    # rows, a record rewritten (a 404 made a 200) and signed again is caught.
    evidence = EvidenceRecords(
        (
            (row.get("id"), row.get("event"), row.get("observed_at"), row.get("evidence"))
            for row in tables.get("events", [])
            if row.get("event") not in ("created", "edited")
        ),
        "data/events.jsonl",
    )
    extract_problems, records = _verify_extract(data / EXTRACT, custody, keep, evidence)
    problems.extend([*extract_problems, *unreadable])
    problems.extend(_verify_ledger(tables, custody))
    if records is not None:  # else reported: the rows cannot be matched to records that cannot be read
        problems.extend(evidence.malformed)
        problems.extend(evidence.never_met({str(r.get("source_file")) for r in custody["warc_records"]}))
        problems.extend(_verify_payloads(data, tables, records))
        problems.extend(_verify_record_places(tables, custody))
    problems.extend(_verify_attachments(tables))
    items_path = data / "items.jsonl"
    if not items_path.exists():
        return [*problems, Problem(_rel(items_path), "missing")]
    items = _read_jsonl(items_path, problems)
    problems.extend(_verify_items(items, tables))
    problems.extend(_verify_consents(tables))
    # A bundle of the older format wrote every CSV cell as the text it is, formulas included.
    cell = _str_cell if _signature_type(path) == LEGACY_SIGNATURE_TYPE else csv_text
    for name, rows in [*tables.items(), ("items", items)]:
        problems.extend(_verify_csv(data / f"{name}.jsonl", rows, cell))
    # The report is held to the rows once they hold: rows found changed or incomplete are said above, and the
    # report made of them would differ for that reason alone.
    if not any(p.severity == "error" for p in problems):
        problems.extend(_verify_report(data, tables, custody)[0])
    return problems


def _carries_history(custody: dict[str, Any]) -> bool:
    """Whether the bundle's format carries its earlier checkpoints (archiver-custody/3 on)."""
    return custody.get("type") not in ("archiver-custody/1", "archiver-custody/2")


def _history_lines(path: Path, public_key: Path | None, kept: Path | None) -> list[str]:
    custody = json.loads((path / "data" / "custody.json").read_text("utf-8"))
    history = read_history(custody, _carries_history(custody))
    trusted = public_b64(load_public_key(public_key)) if public_key is not None else None
    copies = check_kept(history, kept, trusted) if kept is not None else None
    return history_lines(history, custody["ledger_entries"], copies, kept)


def _signature_type(path: Path) -> Any:
    try:
        return json.loads((path / SIGNATURE_FILE).read_text("utf-8")).get("type")
    except (OSError, ValueError, AttributeError):
        return None  # reported by _verify_signature


def _e(value: Any) -> str:
    """A value as every report so far has escaped it (kept here: an older report is held to how it was made)."""
    return html.escape("" if value is None else str(value))


def _str_cell(value: Any) -> str:
    return "" if value is None else str(value)


def refuse_newer_format(path: Path, custody: dict[str, Any]) -> None:
    """ConfigError (exit 2) for a bundle a newer archiver made, whose signature holds: a format number above this
    software's, or ledger entries of a table it does not know. Checked as if it were ours, its rows would read as
    removed or added: a false report of tampering."""
    kind = str(custody.get("type"))
    number = re.fullmatch(r"archiver-custody/(\d+)", kind)
    newer = number is not None and int(number.group(1)) > int(CUSTODY_TYPE.rsplit("/", 1)[1])
    entries = custody.get("ledger_entries")
    tables = {e.get("table_name") for e in entries if isinstance(e, dict)} if isinstance(entries, list) else set()
    unknown = sorted(str(t) for t in tables - set(ROW_TABLES))
    if newer or unknown:
        what = f"its format is {kind}" if newer else f"it carries rows of {', '.join(unknown)}"
        raise ConfigError(
            f"{path}: made by a newer archiver ({what}; this verify-bundle checks {', '.join(CUSTODY_TYPES)}): "
            "check it with that archiver or a later one"
        )


def _verify_custody_shape(custody: dict[str, Any]) -> list[Problem]:
    """custody.json holds what the other checks read, in the form they read it; each departure one line."""
    where = "data/custody.json"
    problems = []
    checkpoint = custody.get("checkpoint")
    if not isinstance(checkpoint, dict) or not all(
        isinstance(checkpoint.get(k), str) for k in ("statement", "signature", "public_key")
    ):
        problems.append(Problem(f"{where} checkpoint", "not an object with statement, signature and public_key"))
    else:
        try:
            signed = json.loads(checkpoint["statement"])["ledger"]
            ok = isinstance(signed["seq"], int) and isinstance(signed["hash"], str)
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            problems.append(Problem(f"{where} checkpoint", "statement is not JSON naming the ledger's seq and hash"))
    shapes = {
        "ledger_entries": ({"seq": int, "table_name": str, "row_key": str}, ("row_sha256", "prev_hash", "hash")),
        "warc_records": ({"record_id": str, "offset": int, "length": int}, ("sha256",)),
    }
    for name, (typed, digests) in shapes.items():
        values = custody.get(name)
        if not isinstance(values, list):
            problems.append(Problem(f"{where} {name}", "not a list"))
            continue
        for n, value in enumerate(values):
            if not (
                isinstance(value, dict)
                and all(type(value.get(k)) is t for k, t in typed.items())
                and all(isinstance(value.get(k), str) and HEX_SHA256.match(value[k]) for k in digests)
            ):
                fields = ", ".join([*typed, *digests])
                problems.append(Problem(f"{where} {name}[{n}]", f"not an object with {fields} (digests in hex)"))
    return problems


def verified_summary(path: Path, public_key: Path | None, kept: Path | None = None) -> list[str]:
    """What a bundle that verifies proves, in words, ending with the verdict. Checked only against the key
    the bundle carries, the signature shows the bundle is as whoever holds that key left it: a forger who
    changes a bundle and signs it again with a key of their own passes that too. So say which key that is,
    and how to check against the archive's key instead."""
    document = json.loads((Path(path) / SIGNATURE_FILE).read_text("utf-8"))
    signer = fingerprint(document["public_key"])
    report = report_checked(Path(path))
    history = _history_lines(Path(path), public_key, kept)
    if public_key is not None:
        given = f"signature checked against the given public key {signer} ({public_key})"
        return [given, *history, report, "bundle verifies"]
    return [
        f"signature checked only against the key the bundle carries itself, {signer}: a bundle changed and "
        "signed again with any key passes this too",
        "to check it against the archive's key, obtain archive-ed25519.pub from the archive's operators "
        f"(`archiver key export`) and run: archiver verify-bundle {shlex.quote(str(path))} "
        "--public-key archive-ed25519.pub",
        *history,
        report,
        "bundle verifies against the key it carries, not a key you trust",
    ]


REGENERATED = "report.html made again from the bundle's rows and custody.json: identical, byte for byte"
OLDER_REPORT = (
    "made by an older archiver and cannot be made again from the rows: checked only that it shows each version's "
    "text and each event as the rows state them (anything else it says is not checked)"
)
SHOWS_ROWS = f"report.html {OLDER_REPORT}"


def report_checked(path: Path) -> str:
    """How verify-bundle checked the report of a bundle that verifies, in words."""
    data = path / "data"
    custody = json.loads((data / "custody.json").read_text("utf-8"))
    if custody.get("report_format") == REPORT_FORMAT:
        return REGENERATED  # it verified, so it was made again and found identical
    tables = {t: _read_jsonl(data / f"{t}.jsonl", []) for t in ROW_TABLES if (data / f"{t}.jsonl").exists()}
    return REGENERATED if _verify_report(data, tables, custody)[1] else SHOWS_ROWS


def _verify_report(
    data: Path, tables: dict[str, list[dict[str, Any]]], custody: dict[str, Any]
) -> tuple[list[Problem], bool]:
    """report.html is the report the rows and custody.json make, byte for byte: what a person reads cannot say
    other than the proven rows. A bundle of another report format (made before the report could be made
    again, or by a later archiver) that differs must at least show every version's text and event as its rows
    state them. Returns the problems and whether it was made again identical."""
    where = "data/report.html"
    try:
        found = (data / "report.html").read_bytes()
    except FileNotFoundError:
        return [Problem(where, "missing")], False
    try:
        made = render_report(tables, custody).encode("utf-8")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        made = None  # rows or custody.json not as a bundle writes them: reported by the other checks
    if made == found:
        return [], True
    if custody.get("report_format") == REPORT_FORMAT:
        return [
            Problem(where, f"differs from the report its rows and custody.json make ({_first_difference(found, made)})")
        ], False
    unshown = _unshown(found.decode("utf-8", "replace"), tables)
    if unshown:
        return [Problem(where, f"does not show {unshown} as the rows state it (changed)")], False
    return [Problem(where, OLDER_REPORT, "note")], False


def _first_difference(found: bytes, made: bytes | None) -> str:
    if made is None:
        return "the rows cannot make one"
    for n, (a, b) in enumerate(zip(found.splitlines(), made.splitlines(), strict=False), 1):
        if a != b:
            return f"first at line {n}"
    return f"{len(found.splitlines())} lines, expected {len(made.splitlines())}"


def _unshown(report: str, tables: dict[str, list[dict[str, Any]]]) -> str | None:
    """The first version or event an older report does not show as its row states it (text HTML-escaped, an
    event's timeline cells and evidence record, as every report so far has written them); None if all are.
    Escaped text holds no "<", so each match ends where the report's own markup does: looked up in sets, not
    searched for one by one through a report of many megabytes."""
    texts = set(REPORT_TEXT.findall(report))
    rows = set(REPORT_EVENT.findall(report))
    for version in tables.get("item_versions", []):
        if _e(version.get("text")) not in texts:
            return f"the text of version {version.get('id')}"
    for event in tables.get("events", []):
        try:
            evidence = json.loads(event["evidence"])
            record = evidence.get("warc_record_id") or evidence.get("observed_in") or ""
        except (KeyError, TypeError, ValueError, AttributeError):
            record = ""
        cells = (event.get("observed_at"), event.get("event"), event.get("version_id"))
        row = "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + f"<td><code>{_e(record)}</code>"
        if row not in rows:
            return f"event {event.get('id')}"
    return None


def _verify_consents(tables: dict[str, list[dict[str, Any]]]) -> list[Problem]:
    """Each consent a link names has its register rows in the bundle, and each import a consent row names its
    consent_imports row: a consent's history is carried whole, never a link alone."""
    if "consent_links" not in tables:
        return []  # a bundle made before consents were carried, or of an archive without a register
    consents = {row.get("consent_id") for row in tables.get("consent_register", [])}
    imports = {row.get("id") for row in tables.get("consent_imports", [])}
    problems = []
    for link in tables["consent_links"]:
        if link.get("consent_id") not in consents:
            problems.append(
                Problem(
                    f"data/consent_links.jsonl id={link.get('id')}",
                    f"consent {link.get('consent_id')} has no row in data/consent_register.jsonl (left out)",
                )
            )
    for table in ("consent_links", "consent_register"):
        for row in tables.get(table, []):
            if row.get("import_id") is not None and row["import_id"] not in imports:
                problems.append(
                    Problem(
                        f"data/{table}.jsonl id={row.get('id')}",
                        f"import {row['import_id']} has no row in data/consent_imports.jsonl (left out)",
                    )
                )
    return problems


def _verify_items(items: list[dict[str, Any]], tables: dict[str, list[dict[str, Any]]]) -> list[Problem]:
    """items.jsonl (the reading aid) says what the version and event rows say: each item's latest version,
    status and version count, as the archive's `items` view gives them."""
    try:
        expected = {item["item_key"]: item for item in items_view(tables)}
    except (KeyError, TypeError):
        expected = {}  # rows not as a bundle writes them: reported by the row checks
    found = []
    for item in items:
        if item != expected.pop(item.get("item_key"), None):
            found.append(Problem(f"data/items.jsonl {item.get('item_key')}", "differs from its version and event rows"))
    found.extend(Problem(f"data/items.jsonl {key}", "missing (its version rows are in the bundle)") for key in expected)
    return found


def _read_object(path: Path, problems: list[Problem]) -> dict[str, Any] | None:
    """A JSON file's object; None, with the problem said, when it is missing or not a JSON object."""
    try:
        value = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        problems.append(Problem(_rel(path), "missing"))
        return None
    except ValueError as exc:
        problems.append(Problem(_rel(path), f"not valid JSON ({exc})"))
        return None
    if not isinstance(value, dict):
        problems.append(Problem(_rel(path), "not a JSON object"))
        return None
    return value


def _read_jsonl(path: Path, problems: list[Problem]) -> list[dict[str, Any]]:
    """The rows of a JSON Lines file; a line that is not a JSON object is a problem, and left out."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(_rel(path), f"cannot be read as UTF-8 text ({exc})"))
        return []
    rows = []
    # split at "\n" only, as written: str.splitlines also splits at U+2028, U+0085 and the like, which JSON
    # keeps unescaped inside a string (a post's text may hold them)
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            problems.append(Problem(f"{_rel(path)} line {n}", "not valid JSON"))
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            problems.append(Problem(f"{_rel(path)} line {n}", "not a JSON object"))
    return rows


def _rel(path: Path) -> str:
    parts = path.parts
    return "/".join(parts[parts.index("data") :]) if "data" in parts else path.name


def _verify_bag(path: Path) -> list[Problem]:
    logging.getLogger("bagit").setLevel(logging.CRITICAL)  # its findings are reported here, one line each
    try:
        bag = bagit.Bag(str(path))
        bag.validate()
    except bagit.BagValidationError as exc:
        if not exc.details:
            found = [Problem("bag", str(exc.message))]
            # bagit stops at a wrong Payload-Oxum (file count and size); name the files too: those missing or
            # added, else those whose digest changed.
            try:
                bag._validate_completeness()
                bag._validate_entries(1)
            except bagit.BagValidationError as more:
                found.extend(_bag_details(more))
            return found
        return _bag_details(exc)
    except bagit.BagError as exc:
        return [Problem(str(path), f"not a valid BagIt bag ({exc})")]
    return []


def _bag_details(exc: bagit.BagValidationError) -> list[Problem]:
    found = []
    for detail in exc.details:
        if isinstance(detail, bagit.ChecksumMismatch):
            found.append(Problem(detail.path, f"{detail.algorithm} expected {detail.expected}, found {detail.found}"))
        elif isinstance(detail, bagit.FileMissing):
            found.append(Problem(detail.path, "listed in the manifest but missing"))
        elif isinstance(detail, bagit.UnexpectedFile):
            continue  # _verify_payload_listed names every file the signed manifest does not list
        else:
            found.append(Problem("bag", str(detail)))
    return found


def _verify_files(path: Path) -> list[Problem]:
    """The bundle holds its own files and nothing else. Beside data/, a file no signature covers could say
    anything ("verified by the regulator"), so it is refused. In data/, exactly the files the signed manifest
    lists: bagit takes a file listed in any manifest (a manifest-sha512.txt, say) as listed, but only
    manifest-sha256.txt is signed. (A file listed but missing is bagit's finding.)"""
    problems = _symlinks(path)
    for entry in sorted(path.iterdir()):
        if entry.is_symlink():
            continue  # said above
        if entry.name in BUNDLE_FILES and entry.is_file() or entry.name == "data" and entry.is_dir():
            continue
        if ANY_MANIFEST.match(entry.name):
            why = f"a manifest a bundle never has, not signed: only {MANIFEST} and {TAGMANIFEST} count (added)"
        else:
            why = "not a file a bundle has; no signature covers it (added)"
        problems.append(Problem(entry.name, why))
    problems.extend(Problem(name, "missing") for name in (TAGMANIFEST, "bag-info.txt") if not (path / name).exists())
    try:
        listed = _manifest_paths((path / MANIFEST).read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return [*problems, Problem(MANIFEST, f"cannot be read ({type(exc).__name__})")]
    data = path / "data"
    present = set()
    if data.is_dir() and not data.is_symlink():
        present = {p.relative_to(path).as_posix() for p in data.rglob("*") if not p.is_dir() and not p.is_symlink()}
    problems.extend(
        Problem(name, f"not listed in {MANIFEST}, the signed manifest (added)") for name in sorted(present - listed)
    )
    return problems


def _symlinks(path: Path) -> list[Problem]:
    """Every symbolic link in the bundle, one line each. A bundle holds none: a linked folder is walked by no
    check (bagit's, `find -type f`, ours would skip it), so it could bring any unsigned document into data/,
    and a linked file shows bytes from outside the bundle."""
    found = []
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in sorted([*dirs, *files]):
            entry = Path(root, name)
            if entry.is_symlink():
                where = entry.relative_to(path).as_posix()
                found.append(Problem(where, f"a symbolic link (to {os.readlink(entry)}); a bundle holds none (added)"))
    return found


def _manifest_paths(text: str) -> set[str]:
    """The paths a BagIt manifest lists (`<digest> <path>` lines; CR, LF and % percent-encoded)."""
    paths = set()
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and not line.startswith("#"):
            name = parts[1].lstrip("*")
            paths.add(name.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%"))
    return paths


def _verify_signature(path: Path, custody: Any, trusted: Ed25519PublicKey | None) -> list[Problem]:
    where = SIGNATURE_FILE
    problems: list[Problem] = []
    document = _read_object(path / SIGNATURE_FILE, problems)
    if document is None:
        return problems
    if not all(isinstance(document.get(k), str) for k in SIGNATURE_FIELDS):
        return [Problem(where, f"not a bundle signature ({', '.join(SIGNATURE_FIELDS)})")]
    problems.extend(
        Problem(where, f"field {name} is not part of a bundle signature (added)")
        for name in sorted(set(document) - set(SIGNATURE_FIELDS))
    )
    if document["type"] not in SIGNS:
        return [*problems, Problem(where, f"type {document['type']!r} is not {SIGNATURE_TYPE}")]
    signed_file, tag_files = SIGNS[document["type"]]
    if document["type"] == LEGACY_SIGNATURE_TYPE:
        problems.append(
            Problem(
                where,
                f"an older bundle ({LEGACY_SIGNATURE_TYPE}): its signature covers {MANIFEST} and so the payload, "
                "not bag-info.txt, whose case, organisation and contact are checked against custody.json instead",
                "note",
            )
        )
    if document["signed_file"] != signed_file:
        return [*problems, Problem(where, f"signs {document['signed_file']}, expected {signed_file}")]
    try:
        signed = (path / signed_file).read_bytes()
    except FileNotFoundError:
        return [*problems, Problem(where, f"signed file {signed_file} is missing")]
    key_b64 = document["public_key"]
    if not _raw_ok(key_b64, document["signature"], signed):
        problems.append(Problem(where, f"signature does not match {signed_file} (changed)"))
    if _pem_b64(document["public_key_pem"]) != key_b64:
        problems.append(Problem(where, "public_key_pem is not the key in public_key"))
    if trusted is not None:
        trusted_b64 = public_b64(trusted)
        if key_b64 != trusted_b64:
            problems.append(Problem(where, f"signed with key {key_b64}, not the given public key {trusted_b64}"))
    checkpoint = custody.get("checkpoint") if isinstance(custody, dict) else None
    if isinstance(checkpoint, dict) and checkpoint.get("public_key") != key_b64:
        problems.append(
            Problem(where, f"signed with key {key_b64}, not the archive key that signed the checkpoint in custody.json")
        )
    if signed_file == TAGMANIFEST:
        listed = _manifest_paths(signed.decode("utf-8", "replace"))
        problems.extend(
            Problem(TAGMANIFEST, f"does not list {name}: no signature covers it")
            for name in tag_files
            if name not in listed
        )
        problems.extend(
            Problem(TAGMANIFEST, f"lists {name}; a bundle's lists {', '.join(tag_files)} only")
            for name in sorted(listed)
            if name not in tag_files
        )
    return problems


def _pem_b64(pem: str) -> str | None:
    """The base64 raw form of an Ed25519 public key in PEM, as public_key holds it; None if it is not one."""
    try:
        key = serialization.load_pem_public_key(pem.encode("utf-8"))
    except ValueError:
        return None
    return public_b64(key) if isinstance(key, Ed25519PublicKey) else None


def _verify_bag_info(path: Path, custody: dict[str, Any]) -> list[Problem]:
    """bag-info.txt names the case, organisation and exporter that the signed custody.json names."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return []  # missing: reported with the bundle's files
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon:
            found.setdefault(name.strip(), value.strip())
    expected = {
        "External-Identifier": custody.get("case_id"),
        "Source-Organization": custody.get("organisation") or NO_ORGANISATION,
        "Contact-Name": custody.get("exported_by"),
    }
    problems = []
    for name, value in expected.items():
        value = re.sub(r"[\r\n]", "", str(value)).strip()  # as bagit writes a value
        if found.get(name) != value:
            problems.append(Problem(path.name, f"{name} {found.get(name, '(missing)')}, custody.json says {value}"))
    return problems


def _raw_ok(key_b64: str, signature_b64: str, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key_b64)).verify(base64.b64decode(signature_b64), data)
    except (InvalidSignature, ValueError):
        return False
    return True


def _verify_extract(
    extract: Path, custody: dict[str, Any], keep: set[str], evidence: EvidenceRecords | None = None
) -> tuple[list[Problem], dict[str, SeenRecord] | None]:
    """Each record's digests; the records are those the catalogue lists, member for member. Read as a stream,
    one chunk at a time: what is kept of each record is its body's digest, and its body only when it is in
    `keep`; a record an event's evidence names is held to what the evidence says of it (`evidence`). None for
    the records when the extract cannot be read to its end."""
    where = f"data/{EXTRACT}"
    if not extract.exists():
        return [Problem(where, "missing")], {}
    problems = []
    catalogue = {r["record_id"]: r for r in custody.get("warc_records", [])}
    records: dict[str, SeenRecord] = {}
    with open(extract, "rb") as fh, open(extract, "rb") as members:
        iterator = ArchiveIterator(fh, no_record_parse=True)
        try:
            for record in iterator:
                headers = record.rec_headers
                record_id = headers.get_header("WARC-Record-ID")
                block, body = hashlib.sha256(), hashlib.sha256()
                kept = bytearray() if record_id in keep else None
                entry = catalogue.get(record_id)
                source = str(entry.get("source_file")) if entry is not None else ""
                named = evidence is not None and evidence.names(source, record_id)
                whole = bytearray() if named else None  # an evidence record: a lookup's answer, a listing
                for chunk, in_body in block_chunks(record.raw_stream):
                    block.update(chunk)
                    if whole is not None:
                        whole += chunk
                    if in_body:
                        body.update(chunk)
                        if kept is not None:
                            kept += chunk
                iterator.read_to_end(record)
                offset, length = iterator.get_record_offset(), iterator.get_record_length()
                if not _digest_ok(headers.get_header("WARC-Block-Digest"), block.digest()):
                    problems.append(
                        Problem(where, f"record {record_id} at offset {offset}: block digest does not match")
                    )
                payload_digest = headers.get_header("WARC-Payload-Digest")
                if payload_digest and not _digest_ok(payload_digest, body.digest()):
                    problems.append(
                        Problem(where, f"record {record_id} at offset {offset}: payload digest does not match")
                    )
                if evidence is not None and whole is not None:
                    problems.extend(evidence.check_record(source, record_id, headers, bytes(whole)))
                if entry is None:
                    problems.append(Problem(where, f"record {record_id} at offset {offset} is not in custody.json"))
                elif _member_sha256(members, offset, length) != entry["sha256"]:
                    problems.append(Problem(where, f"record {record_id}: bytes differ from the copied original"))
                records[record_id] = SeenRecord(body.hexdigest(), bytes(kept) if kept is not None else None)
        except Exception as exc:  # a damaged gzip member: the rest cannot be read as records
            unread = len(set(catalogue) - set(records))
            problems.append(
                Problem(
                    where,
                    f"unreadable after offset {iterator.offset} ({type(exc).__name__}): "
                    f"{unread} record(s) listed in custody.json cannot be checked",
                )
            )
            return problems, None
    for record_id in sorted(set(catalogue) - set(records)):
        problems.append(Problem(where, f"record {record_id} listed in custody.json is missing (dropped)"))
    return problems, records


def _digest_ok(header: str | None, digest: bytes) -> bool:
    """Whether a WARC digest header (sha256, base32 as the archive writes it, or hex) is `digest`."""
    if not header or not header.startswith("sha256:"):
        return False
    value = header.split(":", 1)[1]
    return value == base64.b32encode(digest).decode("ascii") or value == digest.hex()


def _member_sha256(fh: Any, offset: int, length: int) -> str:
    """The sha256 of the extract's bytes at offset, read in chunks."""
    fh.seek(offset)
    digest = hashlib.sha256()
    while length > 0 and (chunk := fh.read(min(CHUNK, length))):
        digest.update(chunk)
        length -= len(chunk)
    return digest.hexdigest()


def _verify_ledger(tables: dict[str, list[dict[str, Any]]], custody: dict[str, Any]) -> list[Problem]:
    problems = []
    statement = json.loads(custody["checkpoint"]["statement"])
    signed_seq, signed_hash = statement["ledger"]["seq"], statement["ledger"]["hash"]
    entries = {(e["table_name"], e["row_key"]): e for e in custody.get("ledger_entries", [])}
    by_seq = {e["seq"]: e for e in entries.values()}
    used = set()
    for table, rows in tables.items():
        key_column = row_key_column(table)
        for row in rows:
            key = str(row.get(key_column))
            where = f"data/{table}.jsonl {key_column}={key}"
            entry = entries.get((table, key))
            if entry is None:
                problems.append(Problem(where, "no ledger entry in custody.json"))
                continue
            used.add((table, key))
            canonical = canonical_row_bytes(table, row)
            found = hashlib.sha256(canonical).hexdigest()
            if found != entry["row_sha256"]:
                problems.append(
                    Problem(
                        where,
                        f"row differs from ledger seq {entry['seq']}: sha256 expected "
                        f"{entry['row_sha256']}, found {found}",
                    )
                )
            elif chain_hash(entry["prev_hash"], canonical) != entry["hash"]:
                problems.append(Problem(where, f"ledger seq {entry['seq']}: chain hash does not recompute"))
    for (table, key), entry in sorted(entries.items(), key=lambda kv: kv[1]["seq"]):
        where = f"ledger seq {entry['seq']}"
        if (table, key) not in used:
            problems.append(Problem(where, f"{table} {key} is in custody.json but not in the bundle (row removed)"))
        if entry["seq"] > signed_seq:
            problems.append(Problem(where, f"after the signed checkpoint's seq {signed_seq}: not covered"))
        before = by_seq.get(entry["seq"] - 1)
        if before is not None and before["hash"] != entry["prev_hash"]:
            problems.append(Problem(where, f"prev_hash does not link to seq {before['seq']}'s hash"))
        if entry["seq"] == signed_seq and entry["hash"] != signed_hash:
            problems.append(Problem(where, f"hash differs from the signed checkpoint head {signed_hash}"))
    problems.extend(_verify_inclusion(statement, sorted(entries.values(), key=lambda e: e["seq"])))
    return problems


def _verify_inclusion(statement: dict[str, Any], entries: list[dict[str, Any]]) -> list[Problem]:
    """Each entry's RFC 9162 inclusion proof against the ledger tree root the checkpoint signs: the row is
    proven part of the signed ledger, at its seq, without the rows between (schemas/ledger.md)."""
    try:
        tree = signed_tree(statement)
    except (KeyError, TypeError, ValueError):
        return [Problem("data/custody.json checkpoint", "its ledger_tree is not {size, root}")]
    if tree is None:
        message = (
            "signs no ledger tree (made before checkpoints did): each row's entry is linked to its neighbours in "
            "the bundle only, not proven part of the signed ledger"
        )
        return [Problem("data/custody.json checkpoint", message, "note")]
    size, root = tree
    problems = []
    for entry in entries:
        where = f"ledger seq {entry['seq']}"
        try:
            proof = [bytes.fromhex(h) for h in entry["inclusion"]]
            proven = merkle.verify_inclusion(
                int(entry["seq"]) - 1, size, bytes.fromhex(entry["row_sha256"]), proof, bytes.fromhex(root)
            )
        except (KeyError, TypeError, ValueError):
            problems.append(Problem(where, "has no inclusion proof (`inclusion`, hex hashes) in custody.json"))
            continue
        if not proven:
            problems.append(
                Problem(
                    where,
                    f"its row is not at this seq in the ledger tree the checkpoint signs ({size} entries, root "
                    f"{root}): the row or its entry is not the archive's",
                )
            )
    return problems


def _verify_payloads(
    data: Path, tables: dict[str, list[dict[str, Any]]], records: dict[str, SeenRecord]
) -> list[Problem]:
    problems: list[Problem] = []
    payloads: dict[str, _JsonIndex | None] = {}  # a listing's record holds many versions: parse it once
    for row in tables.get("item_versions", []):
        where = f"data/item_versions.jsonl id={row.get('id')}"
        record_id = str(row.get("warc_record_id"))
        record = records.get(record_id)
        if record is None or record.payload is None:
            problems.append(Problem(where, f"WARC record {record_id} is not in the extract"))
            continue
        try:
            raw = json.loads(row["raw_json"])
        except (KeyError, TypeError, ValueError):
            problems.append(Problem(where, "raw_json missing or not JSON text"))
            continue
        if record_id not in payloads:
            payloads[record_id] = _JsonIndex.of(record.payload)
        payload = payloads[record_id]
        if payload is None or not payload.contains(raw):
            problems.append(Problem(where, f"raw_json not found in the payload of WARC record {record_id}"))
    media_dir = data / "media"
    on_disk = {p.name.split(".")[0]: p for p in media_dir.iterdir()} if media_dir.is_dir() else {}
    for row in tables.get("media_files", []):
        where = f"data/media_files.jsonl url={row.get('url')}"
        record_id, sha = str(row.get("warc_record_id")), str(row.get("sha256"))
        record = records.get(record_id)
        if record is None or record.body_sha256 != sha:
            problems.append(Problem(where, f"WARC record {record_id} body sha256 is not {sha}"))
        file = on_disk.get(sha)
        if file is None:
            problems.append(Problem(where, f"media file {sha} missing from data/media"))
        elif file.is_symlink():
            continue  # said with the bundle's files
        else:
            with open(file, "rb") as fh:
                if hashlib.file_digest(fh, "sha256").hexdigest() != sha:
                    problems.append(Problem(f"data/media/{file.name}", f"sha256 is not {sha}"))
    return problems


def _verify_record_places(tables: dict[str, list[dict[str, Any]]], custody: dict[str, Any]) -> list[Problem]:
    """Each version's record is where its signed row says it was captured: the WARC file, offset and length that
    custody.json gives its copy (a member's bytes are its original's, which the catalogue's sha256 holds)."""
    catalogue = {r["record_id"]: r for r in custody["warc_records"]}
    problems = []
    for row in tables.get("item_versions", []):
        entry = catalogue.get(str(row.get("warc_record_id")))
        if entry is None:
            continue  # said by _verify_payloads: not in the extract
        said = (row.get("warc_file"), row.get("warc_offset"), row.get("warc_length"))
        found = (entry.get("source_file"), entry.get("source_offset"), entry.get("length"))
        if said != found:
            problems.append(
                Problem(
                    f"data/item_versions.jsonl id={row.get('id')}",
                    f"WARC record {row.get('warc_record_id')}: the row says file, offset, length {list(said)}, "
                    f"custody.json's copy {list(found)}",
                )
            )
    return problems


def _verify_attachments(tables: dict[str, list[dict[str, Any]]]) -> list[Problem]:
    """Each file a version says was captured (its media entry's sha256) is in the bundle: its media_files row,
    found by the URLs the file may be stored under or its sha256 (whose file the payload checks find)."""
    by_url, by_sha = media_index(tables.get("media_files", []))
    problems = []
    for row in tables.get("item_versions", []):
        for attachment in attachments(row):
            sha = attachment.get("sha256")
            if isinstance(sha, str) and media_row_of(attachment, by_url, by_sha) is None:
                problems.append(
                    Problem(
                        f"data/item_versions.jsonl id={row.get('id')}",
                        f"attachment {attachment.get('url')} (sha256 {sha}) was captured, but the bundle has no "
                        "media_files row for it (left out)",
                    )
                )
    return problems


def _verify_csv(jsonl: Path, rows: list[dict[str, Any]], cell: Callable[[Any], str]) -> list[Problem]:
    """The CSV holds the same rows as the JSON Lines, each value as `cell` writes it."""
    path = jsonl.with_suffix(".csv")
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            found = list(csv.DictReader(fh))
    except FileNotFoundError:
        return [Problem(_rel(path), "missing")]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return [Problem(_rel(path), f"cannot be read as CSV ({exc})")]
    expected = [{k: cell(v) for k, v in row.items()} for row in rows]
    if len(found) != len(expected):
        return [Problem(_rel(path), f"{len(found)} rows, the JSON Lines hold {len(expected)}")]
    for n, (a, b) in enumerate(zip(found, expected, strict=True), 2):
        if a != b:
            return [Problem(f"{_rel(path)} line {n}", "differs from the JSON Lines row")]
    return []
