"""One item's page: its thread (parent, root, replies) or conversation, every version side by side with what
changed, its events with their evidence, and its media, each pointing at the WARC record it came from.

Reads only through the indexed columns (item_key, thread_key, conversation_key), so it stays quick on a
large archive.
"""

from __future__ import annotations

import difflib
import html
import json
import re
from typing import Any

from ..items import attachment_urls

COMPARED_FIELDS = ("text", "media", "visibility", "url", "author_name", "edited_at")
THREAD_LIMIT = 200
_TOKEN = re.compile(r"(\s+)")
_LINKABLE = re.compile(r"https?://[^\x00-\x20\x7f]+", re.IGNORECASE)

LATEST_OF = """
SELECT v.*,
  (SELECT count(*) FROM item_versions c WHERE c.item_key = v.item_key) AS versions,
  CASE WHEN (SELECT e.event FROM events e WHERE e.item_key = v.item_key AND e.event IN ('deleted', 'restored')
             ORDER BY e.id DESC LIMIT 1) = 'deleted' THEN 'deleted'
       WHEN (SELECT count(*) FROM item_versions c WHERE c.item_key = v.item_key) > 1 THEN 'edited'
       ELSE 'live' END AS status
FROM item_versions v
"""
IS_LATEST = "v.id = (SELECT max(l.id) FROM item_versions l WHERE l.item_key = v.item_key)"


def word_diff(old: str, new: str) -> tuple[str, str]:
    """Both texts as HTML, words removed wrapped in <del> (old side) and words added in <ins> (new side)."""
    a, b = _TOKEN.split(old or ""), _TOKEN.split(new or "")
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        old_part, new_part = html.escape("".join(a[i1:i2])), html.escape("".join(b[j1:j2]))
        if op == "equal":
            left.append(old_part)
            right.append(new_part)
        else:
            if old_part:
                left.append(f"<del>{old_part}</del>")
            if new_part:
                right.append(f"<ins>{new_part}</ins>")
    return "".join(left), "".join(right)


def parse_web_link(url: str | None) -> str | None:
    """The URL if it may become a link on our page: http(s) only, nothing a browser would strip or read as
    another scheme (`javascript:`, `data:`, or ` javascript:` with a leading space). The platform gave it."""
    return url if url and _LINKABLE.fullmatch(url) else None


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(zip(result.columns, r, strict=True)) for r in result.rows]


def compare_versions(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each version with the fields that changed from the one before and its text diffed against it."""
    shown = []
    previous: dict[str, Any] | None = None
    for version in versions:
        entry = dict(version)
        entry["media_list"] = json.loads(version["media"] or "[]")
        if previous is None:
            entry["changed"] = []
            entry["text_html"] = html.escape(version["text"] or "")
            entry["previous_html"] = None
        else:
            entry["changed"] = [f for f in COMPARED_FIELDS if previous[f] != version[f]]
            entry["previous_html"], entry["text_html"] = word_diff(previous["text"], version["text"])
        shown.append(entry)
        previous = version
    return shown


def parse_evidence(event: dict[str, Any]) -> dict[str, Any]:
    try:
        evidence = json.loads(event["evidence"] or "{}")
    except ValueError:
        evidence = {"unparsed": event["evidence"]}
    records = []
    if isinstance(evidence, dict):
        status = f" (HTTP {evidence['http_status']})" if evidence.get("http_status") else ""
        sources = [(evidence, f"{evidence.get('method', 'captured')} response{status}")]
        absent = evidence.get("absent_from")
        if isinstance(absent, dict):
            sources.append(
                (
                    absent | {"warc_file": absent.get("warc_file", evidence.get("warc_file", ""))},
                    "the listing it was absent from",
                )
            )
        for source, label in sources:
            if source.get("warc_record_id"):
                records.append(
                    {"warc_file": source.get("warc_file", ""), "record_id": source["warc_record_id"], "label": label}
                )
    return {"evidence": evidence, "records": records, "pretty": json.dumps(evidence, indent=2, ensure_ascii=False)}


async def load_item(db: Any, item_key: str) -> dict[str, Any] | None:
    """Everything the item page shows, or None when the archive holds no such item."""
    versions = _rows(await db.execute("SELECT * FROM item_versions WHERE item_key = ? ORDER BY id", [item_key]))
    if not versions:
        return None
    latest = versions[-1]
    events = _rows(await db.execute("SELECT * FROM events WHERE item_key = ? ORDER BY id", [item_key]))
    for event in events:
        event.update(parse_evidence(event))
    fates = [e["event"] for e in events if e["event"] in ("deleted", "restored")]
    status = "deleted" if fates and fates[-1] == "deleted" else ("edited" if len(versions) > 1 else "live")

    async def latest_where(condition: str, params: list[Any]) -> list[dict[str, Any]]:
        sql = f"{LATEST_OF} WHERE {condition} AND {IS_LATEST} ORDER BY v.created_at, v.id LIMIT {THREAD_LIMIT}"
        return _rows(await db.execute(sql, params))

    parent = root = None
    if latest["parent_key"]:
        found = await latest_where("v.item_key = ?", [latest["parent_key"]])
        parent = found[0] if found else {"item_key": latest["parent_key"], "missing": True}
    if latest["thread_key"] and latest["thread_key"] not in (item_key, latest["parent_key"]):
        found = await latest_where("v.item_key = ?", [latest["thread_key"]])
        root = found[0] if found else {"item_key": latest["thread_key"], "missing": True}
    thread = latest["thread_key"] or item_key
    replies = await latest_where("v.thread_key = ? AND v.parent_key = ?", [thread, item_key])
    conversation: list[dict[str, Any]] = []
    if latest["conversation_key"]:
        conversation = await latest_where("v.conversation_key = ?", [latest["conversation_key"]])

    media = []
    seen: set[str] = set()
    for version in versions:
        for attachment in json.loads(version["media"] or "[]"):
            url = attachment.get("url")
            if not url or url in seen:
                continue
            seen.add(url)
            # As bundles find it: under a URL the entry names, else the same bytes by their digest.
            urls, sha = attachment_urls(attachment), attachment.get("sha256")
            stored = _rows(
                await db.execute(
                    f"SELECT * FROM media_files WHERE url IN ({', '.join('?' * len(urls))}) OR sha256 = ? "
                    "ORDER BY url = ? DESC, captured_at LIMIT 1",
                    [*urls, sha if isinstance(sha, str) else None, url],
                )
            )
            media.append({**attachment, "file": stored[0] if stored else None})
    around = [r for r in (parent, root) if r and not r.get("missing")]  # their text is shown: rows read too
    return {
        "item_key": item_key,
        "latest": latest,
        "platform_link": parse_web_link(latest["url"]),
        "status": status,
        "versions": compare_versions(versions),
        "events": events,
        "parent": parent,
        "root": root,
        "replies": replies,
        "conversation": conversation,
        "media": media,
        "rows_returned": len(versions) + len(events) + len(replies) + len(conversation) + len(media) + len(around),
    }
