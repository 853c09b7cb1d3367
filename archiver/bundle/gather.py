"""Every archive row an export holds for its selected items, as stored, with the ledger entries covering them.

Rows are copied with every column exactly as stored, so that anyone can rebuild each row's canonical bytes
(schemas/ledger.md) from the bundle and recompute its ledger entry.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from ..checkpoints import ledger_digests, signed_tree
from ..errors import ArchiverError
from ..flag_states import live_review_queue
from ..items import attachment_urls
from ..ledger import LEDGER_KEYS
from ..merkle import prove
from ..store import schema_has
from .history import add_consistency, old_sizes
from .select import chunks, has_table

# The ledgered tables a bundle carries, in the order they are written and checked. A bundle made before the
# consent tables were carried simply lacks their files.
ROW_TABLES = (
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
CONSENT_TABLES = ("consent_links", "consent_register", "consent_imports")


@dataclass
class Gathered:
    item_keys: list[str]
    items: list[dict[str, Any]]  # the latest state of each item (the `items` view): a reading aid, not ledgered
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # table -> rows as stored
    ledger: list[dict[str, Any]] = field(default_factory=list)  # the entries covering those rows, by seq
    # the ids of the bundle's flags in the archive's review queue at export; None where it has no flag_queue
    in_review_queue: list[int] | None = None
    # every checkpoint before the bundle's own, each with its consistency proof to it (history.py)
    earlier_checkpoints: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"items": len(self.items), **{table: len(rows) for table, rows in self.rows.items()}}


def row_key_column(table: str) -> str:
    return LEDGER_KEYS.get(table, "id")


def _rows(conn: sqlite3.Connection, sql: str, values: list[Any], order: str) -> list[dict[str, Any]]:
    """SELECT * rows whose column is in `values` (in chunks: SQLite limits bound parameters)."""
    found: list[dict[str, Any]] = []
    for chunk in chunks(values, 500):
        cur = conn.execute(sql.format(marks=",".join("?" for _ in chunk)), chunk)
        names = [d[0] for d in cur.description]
        found.extend(dict(zip(names, tuple(row), strict=True)) for row in cur)
    found.sort(key=lambda r: r[order])
    return found


def gather_rows(conn: sqlite3.Connection, item_keys: list[str]) -> Gathered:
    """Every version, event, media file and account row of the items, and their flags, reviews and consent
    records where the archive has them."""
    items = _rows(conn, "SELECT * FROM items WHERE item_key IN ({marks})", item_keys, "version_id")
    gathered = Gathered(item_keys, items)
    versions = _rows(conn, "SELECT * FROM item_versions WHERE item_key IN ({marks})", item_keys, "id")
    gathered.rows["item_versions"] = versions
    gathered.rows["events"] = _rows(conn, "SELECT * FROM events WHERE item_key IN ({marks})", item_keys, "id")
    gathered.rows["media_files"] = _media_rows(conn, [a for v in versions for a in attachments(v)])
    accounts = sorted({v["account"] for v in versions})
    gathered.rows["accounts"] = _rows(conn, "SELECT * FROM accounts WHERE name IN ({marks})", accounts, "id")
    if has_table(conn, "flags"):
        flags = _rows(conn, "SELECT * FROM flags WHERE item_key IN ({marks})", item_keys, "id")
        gathered.rows["flags"] = flags
        if has_table(conn, "flag_reviews"):
            ids = [f["id"] for f in flags]
            gathered.rows["flag_reviews"] = _rows(
                conn, "SELECT * FROM flag_reviews WHERE flag_id IN ({marks})", ids, "id"
            )
            if has_table(conn, "review_operators"):
                reviews = [r["id"] for r in gathered.rows["flag_reviews"]]
                gathered.rows["review_operators"] = _rows(
                    conn, "SELECT * FROM review_operators WHERE review_id IN ({marks})", reviews, "review_id"
                )
        gathered.in_review_queue = flags_in_review_queue(conn, [f["id"] for f in flags])
    if all(has_table(conn, t) for t in CONSENT_TABLES):
        gathered.rows.update(_consent_rows(conn, item_keys, gathered.rows.get("flags", [])))
    gathered.ledger = ledger_entries(conn, gathered.rows)
    return gathered


def _consent_rows(
    conn: sqlite3.Connection, item_keys: list[str], flags: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """The items' consent links, every register row of those consents (grants, changes, revocation: a
    consent's whole history, so that a lapse is read against what was granted) and the imports they came by."""
    links = _rows(conn, "SELECT * FROM consent_links WHERE item_key IN ({marks})", item_keys, "id")
    # a lapse flag names its consent (`matched`): the bundle holds that consent's rows even without its link
    named = {f["matched"] for f in flags if f.get("rule_id") == "consent.lapsed" and f.get("matched")}
    ids = sorted({link["consent_id"] for link in links} | named)
    register = _rows(conn, "SELECT * FROM consent_register WHERE consent_id IN ({marks})", ids, "id")
    imports = sorted({r["import_id"] for r in [*links, *register] if r["import_id"] is not None})
    return {
        "consent_links": links,
        "consent_register": register,
        "consent_imports": _rows(conn, "SELECT * FROM consent_imports WHERE id IN ({marks})", imports, "id"),
    }


def flags_in_review_queue(conn: sqlite3.Connection, flag_ids: list[int]) -> list[int] | None:
    """Which of the flags the archive's review queue holds now; None where the archive has no queue. Whether a
    flag is current depends on the whole archive (a consent linked since, a later version, a rescan), so it is
    read here and recorded, not worked out from the bundle's rows. It is read from flag_status, as of the export,
    not from the states flag_queue reads as the last command recorded them (migration 0023): a few flags cost
    little there, and what a bundle signs should not depend on when a command last ran."""
    if not schema_has(conn, "flag_queue"):
        return None
    return sorted(live_review_queue(conn, flag_ids))


# The `items` view's columns taken from the latest version as they are, after its status and version count.
ITEM_COLUMNS = (
    "author_name",
    "parent_key",
    "thread_key",
    "conversation_key",
    "url",
    "visibility",
    "edited_at",
    "captured_at",
)


def items_view(rows: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The archive's `items` view (schemas/archive.sql) worked out from the bundle's own version and event
    rows: each item's latest version, its status and version count, in latest-version order. The report is
    made from this, not from items.jsonl, so that it rests on ledgered rows only."""
    versions: dict[Any, list[dict[str, Any]]] = {}
    for version in sorted(rows.get("item_versions", []), key=lambda v: v["id"]):
        versions.setdefault(version["item_key"], []).append(version)
    deleted: dict[Any, bool] = {}
    for event in sorted(rows.get("events", []), key=lambda e: e["id"]):
        if event["event"] in ("deleted", "restored"):
            deleted[event["item_key"]] = event["event"] == "deleted"
    items = []
    for key, found in versions.items():
        v = found[-1]
        status = "deleted" if deleted.get(key) else "edited" if len(found) > 1 else "live"
        items.append(
            {
                **{c: v[c] for c in ("item_key", "platform", "account", "kind", "created_at", "author_handle", "text")},
                "status": status,
                "versions": len(found),
                **{c: v[c] for c in ITEM_COLUMNS},
                "version_id": v["id"],
            }
        )
    return sorted(items, key=lambda item: item["version_id"])


def attachments(version: dict[str, Any]) -> list[dict[str, Any]]:
    """A version's media entries (none when its media column is not a JSON list, as in a tampered bundle)."""
    try:
        media = json.loads(version.get("media") or "[]")
    except (TypeError, ValueError):
        return []
    return [m for m in media if isinstance(m, dict)] if isinstance(media, list) else []


def media_row_of(
    attachment: dict[str, Any], by_url: dict[str, dict[str, Any]], by_sha: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """The media_files row holding an attachment's file: by a URL it is stored under, else by its sha256 (the
    same bytes stored under another URL, e.g. fetched again by a signed URL that changed)."""
    for url in attachment_urls(attachment):
        if url in by_url:
            return by_url[url]
    sha = attachment.get("sha256")
    return by_sha.get(sha) if isinstance(sha, str) else None


def media_index(rows: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """media_files rows by url, and by sha256 (the first captured of the same bytes)."""
    by_sha: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (str(r.get("captured_at")), str(r.get("url")))):
        by_sha.setdefault(str(row.get("sha256")), row)
    return {str(r.get("url")): r for r in rows}, by_sha


def _media_rows(conn: sqlite3.Connection, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The media_files row of each attachment that has one, each once, by url."""
    urls = sorted({u for a in entries for u in attachment_urls(a)})
    shas = sorted({a["sha256"] for a in entries if isinstance(a.get("sha256"), str)})
    candidates = _rows(conn, "SELECT * FROM media_files WHERE url IN ({marks})", urls, "url")
    candidates += _rows(conn, "SELECT * FROM media_files WHERE sha256 IN ({marks})", shas, "url")
    by_url, by_sha = media_index(candidates)
    chosen = {row["url"]: row for a in entries if (row := media_row_of(a, by_url, by_sha)) is not None}
    return [chosen[url] for url in sorted(chosen)]


def ledger_entries(conn: sqlite3.Connection, rows: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The ledger entry of every row, in seq order."""
    entries: list[dict[str, Any]] = []
    for table, table_rows in rows.items():
        keys = [str(r[row_key_column(table)]) for r in table_rows]
        for chunk in chunks(keys, 500):
            cur = conn.execute(
                "SELECT seq, table_name, row_key, row_sha256, prev_hash, hash FROM ledger "
                f"WHERE table_name = ? AND row_key IN ({','.join('?' for _ in chunk)})",
                [table, *chunk],
            )
            names = [d[0] for d in cur.description]
            entries.extend(dict(zip(names, tuple(row), strict=True)) for row in cur)
    entries.sort(key=lambda e: e["seq"])
    return entries


def add_proofs(
    conn: sqlite3.Connection, entries: list[dict[str, Any]], statement: dict[str, Any], earlier: list[dict[str, Any]]
) -> None:
    """Give each entry its RFC 9162 inclusion proof (`inclusion`, hex, bottom up) in the ledger tree the
    checkpoint statement signs: what ties a row to the signed ledger without the rows between (schemas/ledger.md);
    and each earlier checkpoint its consistency proof to that tree (history.add_consistency). One pass."""
    tree = signed_tree(statement)
    if tree is None:
        raise ArchiverError("the checkpoint signs no ledger tree: the bundle's rows could not be proven")
    size = tree[0]
    proofs = prove(ledger_digests(conn), size, [e["seq"] - 1 for e in entries], old_sizes(earlier))
    if proofs.root.hex() != tree[1]:
        raise ArchiverError(
            f"the ledger's tree of {size} entries does not have the root the checkpoint signed: run `archiver verify`"
        )
    for entry in entries:
        entry["inclusion"] = [h.hex() for h in proofs.inclusion[entry["seq"] - 1]]
    add_consistency(earlier, proofs, size)
