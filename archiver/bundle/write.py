"""Write an evidence bundle: a BagIt bag (RFC 8493) of the selected items, signed with the archive's key.

    DIR/
      bagit.txt  bag-info.txt  manifest-sha256.txt  tagmanifest-sha256.txt
      signature.json              Ed25519 signature of tagmanifest-sha256.txt and the public key that made it
      data/
        items.jsonl / .csv        latest state of each selected item (a reading aid)
        item_versions.jsonl / .csv, events.*, media_files.*, accounts.*, flags.*, flag_reviews.*,
        review_operators.*, consent_links.*, consent_register.*, consent_imports.*
                                  the archive rows exactly as stored (every column)
        evidence.warc.gz          the original WARC records, copied whole, byte for byte (a listing or a
                                  conversation page brings other people's items along: custody.json, the
                                  report and the export's output name them)
        media/<sha256>.<ext>      the media files, out of their WARC records
        report.html               the human-readable report (no scripts, no network), made from the rows and
                                  custody.json only, so that verify-bundle can make it again
        custody.json              who, when, where, the selectors, counts, the signed checkpoint, the WARC
                                  records' provenance, and the ledger entry of every row
        evidence.wacz             with --wacz: the same records as a WACZ for ReplayWeb.page / pywb

The signature covers everything else: the tag manifest lists bagit.txt, bag-info.txt and manifest-sha256.txt,
which lists every payload file. signature.json is the one file nothing signs, so it is not in the tag manifest
and verify-bundle allows no other file beside these.

Before writing, the archive's ledger head is signed (a new checkpoint unless the latest one already covers
it), so every row in the bundle is covered by the checkpoint the bundle carries. The bundle is written into a
private staging folder beside --out (staging.py); the tag manifest is signed and the export, signature
included, appended to the archive's `exports` register before signature.json is written, and only then is the
folder moved to --out: a bundle at --out always has its export recorded, and an export killed before its row
is committed leaves no signed bundle (Ed25519 signatures are deterministic, so the row holds the signature
the file will hold).
"""

from __future__ import annotations

import base64
import csv
import errno
import hashlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bagit

from .. import __version__
from ..checkpoints import load_private_key, public_b64, public_pem
from ..config import Config
from ..errors import ArchiverError, ConfigError, storage_failure
from ..lock import archive_lock
from ..operator import current_operator
from ..store import Store, require_database
from ..warc import iso, utcnow
from .extract import SourceIndex, select_records, write_extract, write_media
from .gather import ROW_TABLES, Gathered, add_proofs, gather_rows
from .history import earlier_checkpoints
from .others import other_items
from .report import REPORT_FORMAT, render_report
from .select import Selection, Selectors, refuse_invisible, select_item_keys
from .staging import make_private, remove_leftover, staging_folder

# Bumped whenever a bundle gains a table or a field an older verify-bundle would misread: 2 carries the consent
# tables and review_operators (gather.ROW_TABLES), which a verify-bundle of format 1 takes for rows removed.
# 3 carries the checkpoint history (earlier_checkpoints, with their consistency proofs).
# A verify-bundle meeting a newer number says the bundle is a newer archiver's, not that it was tampered with.
CUSTODY_TYPE = "archiver-custody/3"
CUSTODY_TYPES = ("archiver-custody/1", "archiver-custody/2", CUSTODY_TYPE)  # what this verify-bundle checks
SIGNATURE_TYPE = "archiver-bundle-signature/2"  # signs the tag manifest
LEGACY_SIGNATURE_TYPE = "archiver-bundle-signature/1"  # signed manifest-sha256.txt only: the tag files were not
SIGNATURE_FILE = "signature.json"
MANIFEST = "manifest-sha256.txt"
TAGMANIFEST = "tagmanifest-sha256.txt"
SIGNED_FILE = TAGMANIFEST
TAG_FILES = ("bagit.txt", "bag-info.txt", MANIFEST)  # what the signed tag manifest lists
NO_ORGANISATION = "(not set: [archive] organisation in archiver.toml)"
# A cell a spreadsheet would run as a formula (OWASP's list); in the CSVs it gets a leading '.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
EXTRACT = "evidence.warc.gz"
# How the one line of an export stopped by its bundle folder's disk ends (the staging folder is removed).
EXPORT_STOPPED = "no bundle was left there: export again once it is fixed"
WACZ = "evidence.wacz"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    export_id: int
    counts: dict[str, int]
    manifest_sha256: str
    notes: tuple[str, ...] = ()  # what the person exporting must know before sharing the bundle
    unmatched: list[dict[str, str]] = field(default_factory=list)  # selector values that selected nothing


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: already exists and is not empty; choose a new folder (never overwritten)")


def _latest_checkpoint(store: Store, config: Config) -> dict[str, Any]:
    """The checkpoint covering the ledger head now: the latest one if it does, a new one otherwise."""
    from ..ledger import head
    from ..pipeline import checkpoint_archive

    latest = store.conn.execute("SELECT * FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
    # one made before checkpoints signed the ledger tree cannot anchor the rows' inclusion proofs
    if latest is None or latest["ledger_seq"] != head(store.conn)[0] or '"ledger_tree"' not in latest["statement"]:
        checkpoint_archive(store, config, None)
        latest = store.conn.execute("SELECT * FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
    return dict(latest)


def csv_text(value: Any) -> str:
    """A value as its CSV cell: text, empty for null; text a spreadsheet would take for a formula (a patient's
    comment starting with '=' or '@') with a leading ', so that it is shown, never run."""
    text = "" if value is None else str(value)
    return "'" + text if isinstance(value, str) and text.startswith(FORMULA_START) else text


def write_table(rows: list[dict[str, Any]], jsonl: Path, columns: list[str] | None = None) -> None:
    """Rows as JSON Lines (values as stored) and the same rows as CSV, for a spreadsheet."""
    with open(jsonl, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n")
    names = columns or (list(rows[0]) if rows else [])
    with open(jsonl.with_suffix(".csv"), "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        writer.writerows({k: csv_text(v) for k, v in row.items()} for row in rows)


def _columns(store: Store, table: str) -> list[str]:
    return [d[0] for d in store.conn.execute(f"SELECT * FROM {table} LIMIT 0").description]


def export_bundle(
    config: Config,
    out: Path,
    case_id: str,
    selectors: Selectors,
    *,
    wacz: bool = False,
    on_step: Callable[[str], None] = lambda step: None,
) -> ExportResult:
    """Write the bundle of the selected items to `out` (a new or empty folder) and record the export."""
    if not case_id.strip():
        raise ConfigError("--case: give the case identifier, e.g. --case HR-2026-014")
    refuse_invisible("--case", case_id)
    for author in selectors.authors:
        refuse_invisible("--author", author)
    out = Path(out).resolve()
    archive = config.archive
    require_database(archive.database)  # before the lock, which would make the folder
    with archive_lock(archive.dir, "archiver export"):
        removed = remove_leftover(archive.dir)
        store = Store.open(archive.database, create=False)
        try:
            on_step("selecting items")
            selection = select_item_keys(store.conn, selectors)
            keys = selection.item_keys
            if not keys:
                raise ConfigError(f"no archived item matches the selectors {json.dumps(selectors.as_dict())}")
            _check_out(out)
            # made first: an --out that cannot be made changes nothing
            with staging_folder(out, archive.dir) as staging:
                on_step(f"signing the ledger head ({len(keys)} items selected)")
                checkpoint = _latest_checkpoint(store, config)
                on_step("reading rows and ledger entries")
                gathered = gather_rows(store.conn, keys)
                gathered.earlier_checkpoints = earlier = earlier_checkpoints(store.conn, checkpoint["id"])
                on_step(
                    f"proving {len(gathered.ledger)} ledger entries and {len(earlier)} earlier checkpoints against the "
                    "signed ledger tree"
                )
                add_proofs(store.conn, gathered.ledger, json.loads(checkpoint["statement"]), earlier)
                try:
                    manifest, signed, custody = _write_bag(
                        config, store, staging, case_id, selection, selectors, gathered, checkpoint, wacz, on_step
                    )
                    make_private(staging)
                except OSError as exc:
                    raise bundle_write_failure(exc, out, staging) from exc
                on_step("recording the export")
                export_id = _record_export(
                    store, out, staging, selectors, checkpoint, custody, (manifest, signed["signature"])
                )
                _write_signature(staging, signed, out, export_id)
        finally:
            store.close()
    digest = hashlib.sha256(manifest).hexdigest()
    return ExportResult(out, export_id, custody["counts"], digest, (*removed, *_notes(custody)), selection.unmatched)


def bundle_write_failure(exc: OSError, out: Path, staging: Path) -> BaseException:
    """What a failed write of the bundle says: its disk (full, a quota, read-only, an I/O error) named as `--out`'s,
    where the bundle was being written. A write's error names no file, bagit's a name inside the bag (it works in
    it); an error naming another file (a WARC file it reads) goes up as it is. The staging folder is removed on the
    way up (staging.py): nothing is left at --out."""
    if exc.filename is not None:
        named = Path(os.fsdecode(exc.filename)) if isinstance(exc.filename, str | bytes) else None
        if named is not None and named.is_absolute() and not named.is_relative_to(staging):
            return exc
    unsure = exc.filename is None and exc.errno == errno.EIO  # a read of a WARC file fails so too, unnamed
    name = f"the bundle folder {out}" + (" (or a WARC file the export copies from)" if unsure else "")
    failure = storage_failure(exc, name=name, then=EXPORT_STOPPED)
    if failure is not None:
        return failure
    return ArchiverError(f"{name}: the bundle could not be written ({exc.strerror or exc}); {EXPORT_STOPPED}")


def _write_signature(staging: Path, document: dict[str, str], out: Path, export_id: int) -> None:
    """signature.json, once the export (signature included) is in the register: the last file of the bag."""
    try:
        _write_json(staging / SIGNATURE_FILE, document)  # after the tag manifest, which it signs: not listed in it
    except OSError as exc:
        raise ArchiverError(
            f"--out {out}: the bundle's signature could not be written ({exc.strerror or exc}); its export is in the "
            f"archive's exports register (export {export_id}), the bundle is not: export again to a new folder"
        ) from None


def _notes(custody: dict[str, Any]) -> tuple[str, ...]:
    others = custody["other_items_in_records"]
    if not others:
        return ()
    return (
        f"note: {len(others)} of the WARC records copied whole also hold "
        f"{custody['counts']['other_items_in_records']} other archived item(s), other people's posts, comments "
        "or messages on the same page among them: listed in data/custody.json (other_items_in_records) and "
        "data/report.html; review them before sharing the bundle",
    )


def _record_export(
    store: Store,
    out: Path,
    staging: Path,
    selectors: Selectors,
    checkpoint: dict[str, Any],
    custody: dict[str, Any],
    signed: tuple[bytes, str],
) -> int:
    """Append the export to the archive's register, before the bundle is moved to `out`."""
    manifest, signature = signed
    return store.append_export(
        {
            "case_id": custody["case_id"],
            "exported_at": custody["exported_at"],
            "exported_by": custody["exported_by"],
            "host": custody["host"],
            "software_version": __version__,
            "selectors": json.dumps(selectors.as_dict(), sort_keys=True),
            "counts": json.dumps(custody["counts"], sort_keys=True),
            "checkpoint_id": checkpoint["id"],
            "bundle_path": str(out),
            "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
            "tagmanifest_sha256": hashlib.sha256((staging / TAGMANIFEST).read_bytes()).hexdigest(),
            "signature": signature,
        }
    )


def _write_bag(
    config: Config,
    store: Store,
    staging: Path,
    case_id: str,
    selection: Selection,
    selectors: Selectors,
    gathered: Gathered,
    checkpoint: dict[str, Any],
    wacz: bool,
    on_step: Callable[[str], None],
) -> tuple[bytes, dict[str, str], dict[str, Any]]:
    """Write the payload, make the bag and sign its tag manifest; returns (manifest bytes, signature.json's
    content, custody)."""
    archive = config.archive
    # bagit moves everything written at the top of `staging` into data/
    for table in ROW_TABLES:
        if table in gathered.rows:
            write_table(gathered.rows[table], staging / f"{table}.jsonl", _columns(store, table))
    write_table(gathered.items, staging / "items.jsonl", _columns(store, "items"))
    on_step("copying WARC records")
    index = SourceIndex(archive.warc_dir)
    records = select_records(index, gathered.rows, lambda run: _files_of_run(store, run))
    catalogue = write_extract(archive.warc_dir, records, staging / EXTRACT)
    others = other_items(store.conn, staging / EXTRACT, catalogue, gathered.rows["item_versions"])
    write_media(archive.warc_dir, gathered.rows["media_files"], staging / "media", "media")
    if wacz:
        from .wacz import write_wacz

        on_step("writing the WACZ")
        write_wacz(staging / EXTRACT, catalogue, staging / WACZ, title=f"Case {case_id}")
    exported_at = iso(utcnow())
    custody = _custody(config, store, case_id, selectors, gathered, checkpoint, (catalogue, others), exported_at)
    custody["unmatched_selectors"] = selection.unmatched
    _write_json(staging / "custody.json", custody)
    on_step("writing the report")
    # from custody.json as written (JSON's types), as verify-bundle will make it again
    report = render_report(gathered.rows, json.loads((staging / "custody.json").read_text("utf-8")))
    (staging / "report.html").write_text(report, "utf-8")
    on_step("making the bag and signing its tag manifest")
    key = load_private_key(archive.keys_dir)
    _make_bag(staging, case_id, config.archive.organisation, custody)
    manifest = (staging / MANIFEST).read_bytes()
    signed = {
        "type": SIGNATURE_TYPE,
        "signed_file": SIGNED_FILE,
        "signature": base64.b64encode(key.sign((staging / SIGNED_FILE).read_bytes())).decode("ascii"),
        "public_key": public_b64(key.public_key()),
        "public_key_pem": public_pem(key.public_key()).decode("ascii"),
    }
    return manifest, signed, custody


def _files_of_run(store: Store, run_id: str) -> list[str]:
    return [r[0] for r in store.conn.execute("SELECT name FROM warc_files WHERE run_id = ? ORDER BY name", (run_id,))]


def _custody(
    config: Config,
    store: Store,
    case_id: str,
    selectors: Selectors,
    gathered: Gathered,
    checkpoint: dict[str, Any],
    records: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    exported_at: str,
) -> dict[str, Any]:
    catalogue, others = records
    counts = {
        **gathered.counts(),
        "warc_records": len(catalogue),
        "ledger_entries": len(gathered.ledger),
        "other_items_in_records": len({key for entry in others for key in entry["item_keys"]}),
    }
    sources = sorted({r["source_file"] for r in catalogue})
    files = {r["name"]: dict(r) for r in store.conn.execute("SELECT name, sha256, size, run_id FROM warc_files")}
    operator = current_operator()
    return {
        "type": CUSTODY_TYPE,
        "case_id": case_id,
        "organisation": config.archive.organisation,
        # the effective uid's account name, as bag-info.txt and the exports register hold it ($LOGNAME and $USER
        # name no one), and beside it the uid and SUDO_USER as the environment claims it
        "exported_by": operator.name,
        "exported_by_account": operator.as_dict(),
        "exported_at": exported_at,
        "host": socket.gethostname(),
        "software": {"name": "archiver", "version": __version__},
        # the file's name, not where it lives on the archive's host
        "archive": {"database": config.archive.database.name, "schema_version": store.schema_version},
        "selectors": selectors.as_dict(),
        "counts": counts,
        "item_keys": gathered.item_keys,
        "checkpoint": {
            "id": checkpoint["id"],
            "file_name": checkpoint["file_name"],
            "statement": checkpoint["statement"],
            "signature": checkpoint["signature"],
            "public_key": checkpoint["public_key"],
        },
        # every checkpoint the archive signed before it, with the proof that each one's ledger tree is the first
        # entries of this one's: a copy of one kept elsewhere vouches for the rows it covered (history.py)
        "earlier_checkpoints": gathered.earlier_checkpoints,
        "source_warc_files": [files.get(name, {"name": name, "sha256": None}) for name in sources],
        "warc_records": catalogue,
        # the archived items besides the selected ones that the records copied whole also hold
        "other_items_in_records": others,
        "ledger_entries": gathered.ledger,
        # what report.html is made from besides the rows, so that verify-bundle can make it again
        "report_format": REPORT_FORMAT,
        "flags_in_review_queue": gathered.in_review_queue,
    }


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n", "utf-8")
    path.chmod(0o600)


def _make_bag(out: Path, case_id: str, organisation: str, custody: dict[str, Any]) -> None:
    info = {
        "Source-Organization": organisation or NO_ORGANISATION,
        "External-Identifier": case_id,
        "Internal-Sender-Description": (
            f"Evidence bundle for case {case_id}: {custody['counts']['items']} items with every version and "
            "event, the original WARC records, and the chain of custody (data/custody.json). "
            "Check it with `archiver verify-bundle`."
        ),
        "Contact-Name": custody["exported_by"],
    }
    cwd = os.getcwd()  # bagit changes directory while it works
    try:
        bagit.make_bag(str(out), info, checksums=["sha256"])
    finally:
        os.chdir(cwd)
