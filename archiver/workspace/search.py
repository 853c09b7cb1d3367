"""One search over every item of every platform: FTS5 ranked by bm25, one row per item, with facets.

A hit is an item version whose text or author matches; an item is listed once, at the rank of its best
matching version, showing its latest version (so words edited away still find the item). Filters on
platform, account, kind, author and dates apply to the matching versions (posted = the platform's
created_at, captured = when a version was captured); status and flagged are the item's. Without words it
lists items, newest posted first.

`flagged` needs the `flags` table (migration 0005, PHI scan): on an archive without it the facet is absent
and the filter is refused with a message, checked in sqlite_master on every search.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

PAGE_SIZE = 25
FACETS = ("platform", "account", "kind", "status", "flagged", "author")
FACET_LIMIT = 15
STATUSES = ("live", "edited", "deleted")
FLAGGED = ("flagged", "not flagged")
MARK_START, MARK_END = "\x02", "\x03"  # snippet() markers: never in archived text after escaping
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class SearchInputError(ValueError):
    """A filter value that cannot be used: the message names it and says what to give."""


@dataclass
class SearchQuery:
    q: str = ""
    platform: str = ""
    account: str = ""
    kind: str = ""
    status: str = ""
    flagged: str = ""
    author: str = ""
    posted_from: str = ""
    posted_to: str = ""
    captured_from: str = ""
    captured_to: str = ""
    page: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> SearchQuery:
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in ("page", "extra"):
                continue
            values[f.name] = (params.get(f.name) or "").strip()
        for name in ("posted_from", "posted_to", "captured_from", "captured_to"):
            if values[name] and not _DATE.match(values[name]):
                raise SearchInputError(f"{name}={values[name]!r}: give a date as YYYY-MM-DD")
        if values["status"] and values["status"] not in STATUSES:
            raise SearchInputError(f"status={values['status']!r}: use one of {', '.join(STATUSES)}")
        if values["flagged"] and values["flagged"] not in FLAGGED:
            raise SearchInputError(f"flagged={values['flagged']!r}: use 'flagged' or 'not flagged'")
        try:
            page = int(params.get("page") or 1)
        except ValueError:
            raise SearchInputError(f"page={params.get('page')!r}: give a page number") from None
        return cls(page=max(1, min(page, 1000)), **values)

    def filters(self) -> dict[str, str]:
        """The filters in force (for links that change one of them)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("page", "extra")}


def fts_match(q: str) -> str:
    """The user's words as an FTS5 query: each word quoted (no FTS syntax errors), all must match."""
    words = q.split()
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


VERSION_COLUMNS = "v.platform, v.account, v.kind, v.author_handle, v.created_at"


def _hits_sql(query: SearchQuery, params: dict[str, Any]) -> str:
    """Matching item versions grouped to one row per item: item_key, rank, hit_version and the columns that
    do not change between versions (SQLite takes them from the row that gave min / max)."""
    where: list[str] = []
    for column, value in (
        ("platform", query.platform),
        ("account", query.account),
        ("kind", query.kind),
        ("author_handle", query.author),
    ):
        if value:
            params[column] = value
            where.append(f"v.{column} = :{column}")
    for name, column, op in (
        ("posted_from", "created_at", ">="),
        ("posted_to", "created_at", "<"),
        ("captured_from", "captured_at", ">="),
        ("captured_to", "captured_at", "<"),
    ):
        value = getattr(query, name)
        if value:
            params[name] = value
            bound = f"date(:{name}, '+1 day')" if op == "<" else f":{name}"  # "to" includes that whole day
            where.append(f"v.{column} {op} {bound}")
    if query.q:
        params["match"] = fts_match(query.q)
        conditions = " AND ".join(["item_versions_fts MATCH :match", *where])
        return (
            f"SELECT v.item_key, min(f.rank) AS rank, f.rowid AS hit_version, {VERSION_COLUMNS} "
            "FROM item_versions_fts f JOIN item_versions v ON v.id = f.rowid "
            f"WHERE {conditions} GROUP BY v.item_key"
        )
    conditions = " AND ".join(where) or "1"
    return (
        f"SELECT v.item_key, NULL AS rank, max(v.id) AS hit_version, {VERSION_COLUMNS} "
        f"FROM item_versions v WHERE {conditions} GROUP BY v.item_key"
    )


def _flagged_sql(has_flags: bool, key: str) -> str:
    if not has_flags:
        return "NULL"
    return f"CASE WHEN EXISTS (SELECT 1 FROM flags g WHERE g.item_key = {key}) THEN 'flagged' ELSE 'not flagged' END"


# Per item: its version count, status and flags. Evaluated only for the rows that need it (the page's, or
# every hit when the search filters or counts on them), since each costs index lookups per item.
ITEM_STATE = """
  (SELECT count(*) FROM item_versions c WHERE c.item_key = h.item_key) AS versions,
  CASE WHEN (SELECT e.event FROM events e WHERE e.item_key = h.item_key AND e.event IN ('deleted', 'restored')
             ORDER BY e.id DESC LIMIT 1) = 'deleted' THEN 'deleted'
       WHEN (SELECT count(*) FROM item_versions c WHERE c.item_key = h.item_key) > 1 THEN 'edited'
       ELSE 'live' END AS status,
  {flagged} AS flagged"""


def _state_filter(query: SearchQuery, params: dict[str, Any], has_flags: bool) -> list[str]:
    where = []
    if query.status:
        params["status"] = query.status
        where.append("status = :status")
    if query.flagged:
        if not has_flags:
            raise SearchInputError("flagged: this archive has no flags yet (run the PHI scan first)")
        params["flagged"] = query.flagged
        where.append("flagged = :flagged")
    return where


def page_sql(query: SearchQuery, has_flags: bool, size: int = PAGE_SIZE) -> tuple[str, dict[str, Any]]:
    """One page of items: best rank first (newest posted first without words), with their latest version."""
    params: dict[str, Any] = {"limit": size + 1, "offset": (query.page - 1) * size}
    order = "rank, created_at DESC, item_key" if query.q else "created_at DESC, item_key"
    hits = _hits_sql(query, params)
    state = ITEM_STATE.format(flagged=_flagged_sql(has_flags, "h.item_key"))
    where = _state_filter(query, params, has_flags)
    if where:  # status or flags filter: every hit's state is needed before the page can be cut
        page = (
            f"SELECT * FROM (SELECT h.*, {state} FROM ({hits}) h) WHERE {' AND '.join(where)} "
            f"ORDER BY {order} LIMIT :limit OFFSET :offset"
        )
    else:  # cut the page first, then look up the state of its rows only
        page = f"SELECT h.*, {state} FROM ({hits} ORDER BY {order} LIMIT :limit OFFSET :offset) h"
    sql = f"""
SELECT p.item_key, p.rank, p.hit_version, p.versions, p.status, p.flagged,
       v.id AS version_id, v.platform, v.account, v.kind, v.author_handle, v.author_name, v.created_at,
       v.captured_at, v.text, v.url, v.parent_key, v.thread_key, v.conversation_key
FROM ({page}) p
JOIN item_versions v ON v.id = (SELECT max(l.id) FROM item_versions l WHERE l.item_key = p.item_key)
ORDER BY {order.replace("item_key", "p.item_key").replace("created_at", "p.created_at")}"""
    return sql, params


def facets_sql(query: SearchQuery, has_flags: bool, *, state: bool) -> tuple[str, dict[str, Any]]:
    """Total and facet counts over every matching item: rows of (facet, value, count).

    state=False counts the columns every version shares (platform, account, kind, author), cheap even for
    a large match; state=True counts status and flagged, which need per-item lookups."""
    params: dict[str, Any] = {"facet_limit": FACET_LIMIT}
    hits = _hits_sql(query, params)
    where = _state_filter(query, params, has_flags)
    if where or state:
        item_state = ITEM_STATE.format(flagged=_flagged_sql(has_flags, "h.item_key"))
        base = f"SELECT * FROM (SELECT h.*, {item_state} FROM ({hits}) h) WHERE {' AND '.join(where) or '1'}"
    else:
        base = hits
    columns = {"status": "status", **({"flagged": "flagged"} if has_flags else {})} if state else {}
    if not state:
        columns = {"platform": "platform", "account": "account", "kind": "kind", "author": "author_handle"}
    parts = [] if state else ["SELECT 'total' AS facet, NULL AS value, count(*) AS n FROM m"]
    for facet, column in columns.items():
        parts.append(
            f"SELECT * FROM (SELECT '{facet}', {column}, count(*) AS n FROM m GROUP BY {column} "
            "ORDER BY n DESC LIMIT :facet_limit)"
        )
    return f"WITH m AS MATERIALIZED ({base}) " + " UNION ALL ".join(parts), params


def snippet_sql(version_ids: list[int]) -> str:
    marks = f"char({ord(MARK_START)}), char({ord(MARK_END)})"
    ids = ", ".join(str(int(i)) for i in version_ids)
    return (
        f"SELECT rowid, snippet(item_versions_fts, -1, {marks}, '…', 24) FROM item_versions_fts "
        f"WHERE item_versions_fts MATCH :match AND rowid IN ({ids})"
    )


def highlight(snippet: str) -> str:
    """A snippet as safe HTML: the text escaped, then the matched words wrapped in <mark>."""
    return html.escape(snippet).replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


async def has_table(db: Any, name: str) -> bool:
    result = await db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name])
    return bool(result.rows)


async def run_search(db: Any, query: SearchQuery, *, facet_time_limit_ms: int) -> dict[str, Any]:
    """The page of results, the total and the facets (those cut off by the time limit are listed as slow)."""
    from datasette.database import QueryInterrupted

    has_flags = await has_table(db, "flags")
    sql, params = page_sql(query, has_flags)
    result = await db.execute(sql, params, truncate=True, log_sql_errors=False)
    rows = [dict(zip(result.columns, r, strict=True)) for r in result.rows]
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    if query.q and rows:
        found = await db.execute(
            snippet_sql([r["hit_version"] for r in rows]), {"match": fts_match(query.q)}, log_sql_errors=False
        )
        snippets = dict(found.rows)
        for r in rows:
            r["snippet_html"] = highlight(snippets.get(r["hit_version"]) or "")
    else:
        for r in rows:
            text = r["text"] or ""
            r["snippet_html"] = html.escape(text[:240] + ("…" if len(text) > 240 else ""))
    facets: dict[str, list[tuple[Any, int]]] = {}
    total: int | None = None
    slow: list[str] = []
    for state in (False, True):
        fsql, fparams = facets_sql(query, has_flags, state=state)
        try:
            counted = await db.execute(fsql, fparams, custom_time_limit=facet_time_limit_ms, log_sql_errors=False)
        except QueryInterrupted:
            slow += ["status", "flagged"] if state else ["platform", "account", "kind", "author", "total"]
            continue
        for facet, value, n in counted.rows:
            if facet == "total":
                total = n
            else:
                facets.setdefault(facet, []).append((value, n))
    return {
        "rows": rows,
        "more": more,
        "total": total,
        "facets": facets,
        "slow_facets": slow,  # counts cut off by the time limit: the search is too broad to count quickly
        "has_flags": has_flags,
        "page": query.page,
        "page_size": PAGE_SIZE,
    }
