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
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from typing import Any

from ..bundle.select import utc_time

PAGE_SIZE = 25
# A search whose words match more item versions than this, with no other filter, is ranked and counted over
# the newest WINDOW matching versions (the page says so): bm25 and the facet pass over 190,000 matches of a
# common word take a second; an investigator narrows with a filter or another word to reach older ones.
WINDOW = 5_000
# Words with a date range: the range is read first (its ids from the date's index, ~0.5 µs each at 1M versions)
# when it holds fewer than NARROWER times the versions the words match (each match's row read, ~2 µs). Matches
# are counted up to MATCHES_COUNTED (a doclist walk, ~0.07 µs each); past that the range is allowed 3x as many.
NARROWER = 3
MATCHES_COUNTED = 200_000
FACETS = ("platform", "account", "kind", "status", "flagged", "author")
FACET_LIMIT = 15
STATUSES = ("live", "edited", "deleted")
FLAGGED = ("flagged", "not flagged")
MARK_START, MARK_END = "\x02", "\x03"  # snippet() markers: never in archived text after escaping
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab and line breaks are spaces between words
# Every word is a phrase all matches must hold: a few dozen find what anyone types; thousands (a pasted page) keep
# SQLite busy until the time limit.
MAX_WORDS = 64


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
        if _CONTROL.search(values["q"]):  # FTS5 reads a quoted word only up to a NUL
            raise SearchInputError("q: remove the control characters (such as NUL) from the words")
        if len(values["q"].split()) > MAX_WORDS:
            raise SearchInputError(f"q: give at most {MAX_WORDS} words, and narrow the search with filters")
        for name in ("posted_from", "posted_to", "captured_from", "captured_to"):
            if values[name] and not _is_date(values[name]):
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


def _is_date(value: str) -> bool:
    try:
        return bool(_DATE.match(value)) and bool(date.fromisoformat(value))
    except ValueError:  # "2026-02-30" has the shape but is no day
        return False


def fts_match(q: str) -> str:
    """The user's words as an FTS5 query: each word quoted (no FTS syntax errors), all must match."""
    words = q.split()
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


VERSION_COLUMNS = "v.platform, v.account, v.kind, v.author_handle, v.created_at"


_DAY = timedelta(days=1)


def register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions the search calls, on each of the server's connections (the plugin's prepare_connection)."""
    conn.create_function("utc_time", 1, utc_time, deterministic=True)


# created_at in UTC, as text. "Z" is how most platforms give it, and then its text orders against a date at any
# precision ("2026-03-01T00:00:00Z" >= "2026-03-01"); a call into Python costs ~5 µs a row, so only other forms
# (an offset) go through utc_time.
_POSTED_UTC = "CASE WHEN substr({v}.created_at, -1) = 'Z' THEN {v}.created_at ELSE utc_time({v}.created_at) END"


def _posted_bound(name: str, day: date, op: str, params: dict[str, Any], v: str = "v") -> str:
    """created_at `op` the start of `day` in UTC, for every form platforms store it in.

    created_at is kept as the platform gave it: "...:30Z" (Graph, YouTube), "...:30.845Z" (Mastodon, X),
    microseconds (LinkedIn), or the poster's own offset (a Bluesky post's createdAt), and text orders an offset
    wrongly: "2026-03-01T19:00:00-05:00" is 2 March in UTC. So the exact test is on utc_time(created_at), as the
    export does; but no offset moves a time by a whole day, so created_at text more than a day from the bound is
    in or out as it reads: the exact test runs only on the two days around the bound, and the created_at index
    still gives the range."""
    # (at the ends of the calendar, the day itself: no date lies beyond it)
    lo, hi = max(day, date.min + _DAY) - _DAY, min(day, date.max - _DAY) + _DAY
    params |= {name: str(day), f"{name}_lo": str(lo), f"{name}_hi": str(hi)}
    utc = _POSTED_UTC.format(v=v)
    if op == ">=":
        return f"{v}.created_at >= :{name}_lo AND ({v}.created_at >= :{name}_hi OR {utc} >= :{name})"
    return f"{v}.created_at < :{name}_hi AND ({v}.created_at < :{name}_lo OR {utc} < :{name})"


def _version_filters(query: SearchQuery, params: dict[str, Any], v: str = "v") -> list[str]:
    """The conditions a matching version meets (platform, account, kind, author, dates), on table alias `v`."""
    where: list[str] = []
    for column, value in (
        ("platform", query.platform),
        ("account", query.account),
        ("kind", query.kind),
        ("author_handle", query.author),
    ):
        if value:
            params[column] = value
            # With a posted bound, the created_at range leads: an archive has no ANALYZE statistics, and SQLite then
            # takes item_versions_account_kind (an account's every version, ~170 ms at 1M items over 12 accounts).
            dated = column == "account" and (query.posted_from or query.posted_to)
            where.append(f"{'+' if dated else ''}{v}.{column} = :{column}")
    return where + _date_filters(query, params, v)


def _date_filters(query: SearchQuery, params: dict[str, Any], v: str = "v") -> list[str]:
    """The posted and captured bounds a matching version meets, on table alias `v`."""
    return _posted_filters(query, params, v) + _captured_filters(query, params, v)


def _posted_filters(query: SearchQuery, params: dict[str, Any], v: str) -> list[str]:
    where: list[str] = []
    if query.posted_from:
        where.append(_posted_bound("posted_from", date.fromisoformat(query.posted_from), ">=", params, v))
    if query.posted_to and (to := date.fromisoformat(query.posted_to)) < date.max:  # to 9999-12-31: no bound
        where.append(_posted_bound("posted_before", to + _DAY, "<", params, v))  # "to" includes that whole day
    return where


def _captured_filters(query: SearchQuery, params: dict[str, Any], v: str) -> list[str]:
    # captured_at is written by the archiver, always in UTC with Z: its text orders as its time
    where: list[str] = []
    if query.captured_from:
        params["captured_from"] = query.captured_from
        where.append(f"{v}.captured_at >= :captured_from")
    if query.captured_to and (to := date.fromisoformat(query.captured_to)) < date.max:  # to 9999-12-31: no bound
        params["captured_before"] = str(to + _DAY)  # "to" includes that whole day
        where.append(f"{v}.captured_at < :captured_before")
    return where


def _dated_versions_sql(query: SearchQuery, params: dict[str, Any]) -> str | None:
    """The ids of the versions within the query's posted range (else its captured range), read from that date's
    index alone, without a table row; None without a date bound."""
    if posted := _posted_filters(query, params, "d"):
        return f"SELECT d.id FROM item_versions d INDEXED BY item_versions_created WHERE {' AND '.join(posted)}"
    if captured := _captured_filters(query, params, "d"):
        return f"SELECT d.id FROM item_versions d INDEXED BY item_versions_captured WHERE {' AND '.join(captured)}"
    return None


def _hits_sql(query: SearchQuery, params: dict[str, Any], within_dates: bool = False) -> str:
    """Matching item versions, one row per item: item_key, rank, hit_version and the columns that do not
    change between versions (from the version that gave the rank, or the item's latest matching version).

    `within_dates` (words and a date range that holds fewer versions than the words match, see `dates_narrower`):
    the word's matches are kept to the ids of the range, read from its index, before any is looked up in
    item_versions. Otherwise each match's row is read to test its date (~2 µs each: 50 ms for a word in 2.5% of
    1M versions, whatever the range)."""
    where = _version_filters(query, params)
    if query.q:
        params["match"] = fts_match(query.q)
        if "min_rowid" in params:  # a broad search: only the newest WINDOW matching versions
            where.append("f.rowid >= :min_rowid")
        # "+": a plain rowid IN would make FTS5 run the query once per id, bm25's word totals each time too
        if within_dates and (dated := _dated_versions_sql(query, params)):
            where.append(f"+f.rowid IN ({dated})")
        conditions = " AND ".join(["item_versions_fts MATCH :match", *where])
        return (
            f"SELECT v.item_key, min(f.rank) AS rank, f.rowid AS hit_version, {VERSION_COLUMNS} "
            "FROM item_versions_fts f JOIN item_versions v ON v.id = f.rowid "
            f"WHERE {conditions} GROUP BY v.item_key"
        )
    # Without words, an item's row is its latest matching version: the one no later matching version of the same
    # item follows (an index probe that finds nothing for most items). A GROUP BY gave the same rows but sorted
    # every match before the page could be cut, and with posted_from alone SQLite read the whole table in
    # item_key order to avoid that sort; this walks the created_at index newest first and stops at the page.
    later = " AND ".join(["l.item_key = v.item_key", "l.id > v.id", *_version_filters(query, params, "l")])
    conditions = " AND ".join([*where, f"NOT EXISTS (SELECT 1 FROM item_versions l WHERE {later})"])
    return (
        f"SELECT v.item_key, NULL AS rank, v.id AS hit_version, {VERSION_COLUMNS} "
        f"FROM item_versions v WHERE {conditions}"
    )


def _flagged_sql(has_flags: bool, key: str) -> str:
    if not has_flags:
        return "NULL"
    return f"CASE WHEN {key} IN (SELECT item_key FROM flags) THEN 'flagged' ELSE 'not flagged' END"


# An item's status from its events, as sets: few items are edited or deleted, and each set is read once per
# query through the events(event) index, so a status for every hit of a broad search costs a lookup in a
# small in-memory set instead of index searches per item. Every version after the first comes with an
# `edited` event (Store.append_item), so "has an edited event" is "has more than one version".
STATE_SETS = """
fates AS (SELECT item_key, max(id) AS id FROM events WHERE event IN ('deleted', 'restored') GROUP BY item_key),
deleted_items AS (SELECT f.item_key FROM fates f JOIN events e ON e.id = f.id WHERE e.event = 'deleted'),
edited_items AS (SELECT item_key FROM events WHERE event = 'edited')"""

ITEM_STATE = """
  CASE WHEN h.item_key IN deleted_items THEN 'deleted' WHEN h.item_key IN edited_items THEN 'edited'
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


def page_sql(
    query: SearchQuery,
    has_flags: bool,
    size: int = PAGE_SIZE,
    *,
    top: int | None = None,
    min_rowid: int | None = None,
    within_dates: bool = False,
) -> tuple[str, dict[str, Any]]:
    """One page of items: best rank first (newest posted first without words), with their latest version.

    `top`: rank only the `top` best-matching versions (FTS5 keeps just those while it ranks); exact whenever
    they hold enough distinct items for the page, which run_search checks before it falls back."""
    params: dict[str, Any] = {"limit": size + 1, "offset": (query.page - 1) * size}
    if min_rowid is not None:
        params["min_rowid"] = min_rowid
    # Equal ranks: the most recently captured match first, the order the `top` cut keeps too.
    order = "rank, hit_version DESC" if query.q else "created_at DESC, item_key"
    if not query.q and (query.captured_from or query.captured_to) and not (query.posted_from or query.posted_to):
        # Read the captured range (item_versions_captured) and sort it: walking versions newest posted first to fill
        # the page reads most of the archive when the range holds new versions of old posts, as a night's run does.
        order = "+" + order
    if top is not None:
        params["match"], params["top"] = fts_match(query.q), top
        hits = (
            f"SELECT v.item_key, min(t.rank) AS rank, t.rowid AS hit_version, {VERSION_COLUMNS} "
            "FROM (SELECT rowid, rank FROM item_versions_fts WHERE item_versions_fts MATCH :match "
            f"{'AND rowid >= :min_rowid ' if min_rowid is not None else ''}"
            "ORDER BY rank, rowid DESC LIMIT :top) t JOIN item_versions v ON v.id = t.rowid GROUP BY v.item_key"
        )
    else:
        hits = _hits_sql(query, params, within_dates)
    state = ITEM_STATE.format(flagged=_flagged_sql(has_flags, "h.item_key"))
    where = _state_filter(query, params, has_flags)
    if where:  # status or flags filter: every hit's state is needed before the page can be cut
        page = (
            f"SELECT * FROM (SELECT h.*, {state} FROM ({hits}) h) WHERE {' AND '.join(where)} "
            f"ORDER BY {order} LIMIT :limit OFFSET :offset"
        )
    else:  # cut the page first, then look up the state of its rows only
        page = f"SELECT h.*, {state} FROM ({hits} ORDER BY {order} LIMIT :limit OFFSET :offset) h"
    sql = f"""WITH {STATE_SETS}
SELECT p.item_key, p.rank, p.hit_version, p.status, p.flagged,
       (SELECT count(*) FROM item_versions c WHERE c.item_key = p.item_key) AS versions,
       v.id AS version_id, v.platform, v.account, v.kind, v.author_handle, v.author_name, v.created_at,
       v.captured_at, v.text, v.url, v.parent_key, v.thread_key, v.conversation_key
FROM ({page}) p
JOIN item_versions v ON v.id = (SELECT max(l.id) FROM item_versions l WHERE l.item_key = p.item_key)
ORDER BY {order.replace("item_key", "p.item_key").replace("created_at", "p.created_at").replace("hit_", "p.hit_")}"""
    return sql, params


def has_version_filters(query: SearchQuery) -> bool:
    return any(
        getattr(query, name)
        for name in ("platform", "account", "kind", "author", "posted_from", "posted_to", "captured_from")
    ) or bool(query.captured_to)


def facets_sql(
    query: SearchQuery, has_flags: bool, min_rowid: int | None = None, within_dates: bool = False
) -> tuple[str, dict[str, Any]]:
    """Total and facet counts over every matching item, in one pass: rows of (facet, value, count)."""
    params: dict[str, Any] = {"facet_limit": FACET_LIMIT}
    if min_rowid is not None:
        params["min_rowid"] = min_rowid
    hits = _hits_sql(query, params, within_dates)
    where = _state_filter(query, params, has_flags)
    item_state = ITEM_STATE.format(flagged=_flagged_sql(has_flags, "h.item_key"))
    columns = {"platform": "platform", "account": "account", "kind": "kind", "status": "status"}
    if has_flags:
        columns["flagged"] = "flagged"
    few = ", ".join(columns.values())
    columns["author"] = "author_handle"
    kept = ", ".join(columns.values())
    base = f"SELECT {kept} FROM (SELECT h.*, {item_state} FROM ({hits}) h) WHERE {' AND '.join(where) or '1'}"
    # Facets of few values are summed from one grouping of the matches by all of them (a few hundred rows), not
    # each from a sort of every match; authors, about one an item, are counted from the matches.
    parts = ["SELECT 'total' AS facet, NULL AS value, count(*) AS n FROM m"]
    for facet, column in columns.items():
        source, n = ("m", "count(*)") if facet == "author" else ("g", "sum(n)")
        parts.append(
            f"SELECT * FROM (SELECT '{facet}', {column}, {n} AS n FROM {source} GROUP BY {column} "
            "ORDER BY n DESC LIMIT :facet_limit)"
        )
    grouped = f"g AS MATERIALIZED (SELECT {few}, count(*) AS n FROM m GROUP BY {few})"
    return f"WITH {STATE_SETS}, m AS MATERIALIZED ({base}), {grouped} " + " UNION ALL ".join(parts), params


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


async def has_table(db: Any, name: str, kind: str = "table") -> bool:
    result = await db.execute("SELECT 1 FROM sqlite_master WHERE type = ? AND name = ?", [kind, name])
    return bool(result.rows)


async def dates_narrower(db: Any, query: SearchQuery) -> bool:
    """Whether a search with words and dates should read the date range first (`within_dates`): when the range
    holds fewer than NARROWER times the versions the words match. Both counts stop at that size, and walking
    FTS5's doclist without ranking or an index range costs a small part of either plan."""
    params: dict[str, Any] = {}
    dated = _dated_versions_sql(query, params) if query.q else None
    if dated is None:
        return False  # no words, or no date bound
    if "item_versions_captured" in dated and not await has_table(db, "item_versions_captured", "index"):
        return False  # an archive served before the run that adds the index (migration 0009)
    found = await db.execute(
        "SELECT count(*) FROM (SELECT rowid FROM item_versions_fts WHERE item_versions_fts MATCH :match LIMIT :cap)",
        {"match": fts_match(query.q), "cap": MATCHES_COUNTED},
        log_sql_errors=False,
    )
    limit = NARROWER * int(found.rows[0][0])
    in_range = await db.execute(f"SELECT count(*) FROM ({dated} LIMIT :limit)", {**params, "limit": limit})
    return int(in_range.rows[0][0]) < limit


async def window_floor(db: Any, q: str) -> int | None:
    """The rowid of the WINDOW-th newest matching version when the words match more than WINDOW versions
    (FTS5 walks its doclist newest first, without ranking), else None: the whole match is ranked."""
    found = await db.execute(
        "SELECT rowid FROM item_versions_fts WHERE item_versions_fts MATCH :match ORDER BY rowid DESC "
        "LIMIT 1 OFFSET :skip",
        {"match": fts_match(q), "skip": WINDOW},
        log_sql_errors=False,
    )
    if not found.rows:
        return None
    return int(found.rows[0][0]) + 1  # the (WINDOW+1)-th newest is just outside: keep exactly WINDOW


async def _page_rows(db: Any, query: SearchQuery, has_flags: bool) -> tuple[list[dict[str, Any]], int | None, bool]:
    """The page's rows (one more than the page, to tell whether there are more), with how they were found: the
    window's floor (`window_floor`) and whether the date range was read first (`dates_narrower`)."""
    rows: list[dict[str, Any]] = []
    words_only = bool(query.q) and not has_version_filters(query) and not query.status and not query.flagged
    min_rowid = await window_floor(db, query.q) if words_only else None
    within_dates = await dates_narrower(db, query)
    if words_only:
        # Fast path: rank only the best versions; exact when they hold more distinct items than the page.
        top = max(200, 4 * query.page * (PAGE_SIZE + 1))
        sql, params = page_sql(query, has_flags, top=top, min_rowid=min_rowid)
        result = await db.execute(sql, params, truncate=True, log_sql_errors=False)
        rows = [dict(zip(result.columns, r, strict=True)) for r in result.rows]
        if len(rows) <= PAGE_SIZE:  # the best versions held too few items (or the match is small): rank all
            rows = []
    if not rows:
        sql, params = page_sql(query, has_flags, min_rowid=min_rowid, within_dates=within_dates)
        result = await db.execute(sql, params, truncate=True, log_sql_errors=False)
        rows = [dict(zip(result.columns, r, strict=True)) for r in result.rows]
    return rows, min_rowid, within_dates


async def run_search(db: Any, query: SearchQuery, *, facet_time_limit_ms: int) -> dict[str, Any]:
    """The page of results, the total and the facets (none when counting them took longer than the limit)."""
    from datasette.database import QueryInterrupted

    has_flags = await has_table(db, "flags")
    try:
        rows, min_rowid, within_dates = await _page_rows(db, query, has_flags)
    except QueryInterrupted:  # Datasette's time limit for any query: the page is not to be had
        raise SearchInputError("the search took longer than this server allows: add a word or a filter") from None
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
    slow = False
    fsql, fparams = facets_sql(query, has_flags, min_rowid, within_dates)
    try:
        counted = await db.execute(fsql, fparams, custom_time_limit=facet_time_limit_ms, log_sql_errors=False)
    except QueryInterrupted:
        slow = True  # too broad to count in time: the page is shown without counts
    else:
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
        "facets_timed_out": slow,
        "window": WINDOW if min_rowid is not None else None,  # ranked and counted over the newest WINDOW matches
        "has_flags": has_flags,
        "page": query.page,
        "page_size": PAGE_SIZE,
    }
