"""Other people's content in a bundle: what else the whole WARC records it copies hold.

A record is copied whole, byte for byte, because it is the evidence. But a version read from a listing, a
thread or a conversation page, or a deletion concluded from a listing, brings the whole page along, with
other people's posts, comments or messages. This names the archived items, other than the selected ones,
that each copied response holds, for custody.json, the report and the export's own output: those whose
versions were read from that very record, and those an object of its JSON names by the id its platform gives
it (an item unchanged since an earlier capture, say).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from warcio.archiveiterator import ArchiveIterator

from ..items import KINDS
from .extract import block_chunks
from .select import chunks

# The keys by which the platforms' API objects name themselves: id (Mastodon, Graph, X, YouTube, LinkedIn
# posts), uri (Bluesky), commentUrn (LinkedIn comments). A reference (in_reply_to_id) is not the object.
ID_KEYS = ("id", "uri", "commentUrn")
JSON_PEEK = 64  # a JSON payload shows its first bracket within this many bytes


def other_items(
    conn: sqlite3.Connection, extract: Path, catalogue: list[dict[str, Any]], versions: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """For each copied response holding archived items besides the selected ones: its record id, URL and
    those items' keys, in the extract's order."""
    selected = {v["item_key"] for v in versions}
    prefixes = _prefixes(_samples(conn, versions))
    found = []
    with open(extract, "rb") as fh:
        for entry in catalogue:
            if entry["type"] != "response":
                continue
            read_from = conn.execute(
                "SELECT DISTINCT item_key, native_id FROM item_versions WHERE warc_file = ? AND warc_offset = ?",
                (entry["source_file"], entry["source_offset"]),
            ).fetchall()
            keys = {key for key, _ in read_from}
            names = _object_ids(_payload(fh, entry["offset"]))
            keys |= _held(conn, {p + n for p in prefixes | _prefixes(read_from) for n in names})
            keys -= selected
            if keys:
                found.append(
                    {"record_id": entry["record_id"], "target_uri": entry["target_uri"], "item_keys": sorted(keys)}
                )
    return found


def _samples(conn: sqlite3.Connection, versions: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(item key, native id) of the selected versions and of one item of each kind of their accounts: how
    each builds its item keys from native ids."""
    pairs = {(v["item_key"], v["native_id"]) for v in versions}
    for account in sorted({v["account"] for v in versions}):
        for kind in KINDS:
            row = conn.execute(
                "SELECT item_key, native_id FROM item_versions WHERE account = ? AND kind = ? LIMIT 1", (account, kind)
            ).fetchone()
            if row is not None:
                pairs.add((row[0], row[1]))
    return pairs


def _prefixes(pairs: Any) -> set[str]:
    return {key[: len(key) - len(native)] for key, native in pairs if native and key.endswith(native)}


def _payload(fh: Any, offset: int) -> bytes:
    """The HTTP body of the response record at `offset` when it may be JSON, else nothing: reading stops at
    the body's first bytes, so a media file (a video, say) is never inflated whole."""
    fh.seek(offset)
    for record in ArchiveIterator(fh, no_record_parse=True):
        body = bytearray()
        for chunk, in_body in block_chunks(record.raw_stream):
            if in_body:
                body += chunk
                if len(body) >= JSON_PEEK and not _may_be_json(body):
                    return b""
        return bytes(body) if _may_be_json(body) else b""
    return b""


def _may_be_json(body: bytes | bytearray) -> bool:
    return body[:JSON_PEEK].lstrip()[:1] in (b"{", b"[")


def _object_ids(body: bytes) -> set[str]:
    """The ids the objects of a JSON payload name themselves by; none when it is not JSON."""
    if not _may_be_json(body):
        return set()  # a media file, an HTML page
    try:
        stack = [json.loads(body)]
    except ValueError:
        return set()
    found = set()
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in ID_KEYS:
                value = node.get(key)
                if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
                    found.add(str(value))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _held(conn: sqlite3.Connection, keys: set[str]) -> set[str]:
    """Those of `keys` that are archived items."""
    held = set()
    for chunk in chunks(sorted(keys), 500):
        marks = ",".join("?" for _ in chunk)
        held |= {
            r[0]
            for r in conn.execute(f"SELECT DISTINCT item_key FROM item_versions WHERE item_key IN ({marks})", chunk)
        }
    return held
