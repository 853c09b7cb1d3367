"""Which items an export holds: selectors that combine, read against the archive (read-only).

Different selectors narrow each other (AND); a selector given several times widens itself (OR: two authors
select the items of either). An item is selected when any of its versions matches, so a word edited away or
a deleted post is still found. Thread context, when asked for, adds every item of each selected item's thread
or conversation and the chain of parents above it.

A value of a list selector that selects nothing (a mistyped --item key, an account of another config) is not
dropped in silence: the selection names it, for the export's output and custody.json.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..errors import ConfigError
from ..oneline import refuse_invisible as refuse_invisible  # bundle/write.py's import of it


@dataclass(frozen=True)
class Selectors:
    item_keys: tuple[str, ...] = ()
    threads: tuple[str, ...] = ()  # the key of any item of a thread or conversation, or a conversation key
    authors: tuple[str, ...] = ()  # handle (with or without a leading @) or platform author id
    accounts: tuple[str, ...] = ()  # configured account names
    platforms: tuple[str, ...] = ()
    query: str | None = None  # full-text (FTS5) over every version's text and author
    posted_from: str | None = None
    posted_to: str | None = None
    captured_from: str | None = None
    captured_to: str | None = None
    flagged_only: bool = False
    thread_context: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The selectors exactly as given (custody.json, the exports register)."""
        found = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in found.items()}

    def narrows(self) -> bool:
        return bool(
            self.item_keys
            or self.threads
            or self.authors
            or self.accounts
            or self.platforms
            or self.query
            or self.posted_from
            or self.posted_to
            or self.captured_from
            or self.captured_to
            or self.flagged_only
        )


# The selectors given as lists, and the option that gives each (the export's notes, custody.json).
LIST_OPTIONS = {
    "item_keys": "--item",
    "threads": "--thread",
    "authors": "--author",
    "accounts": "--account",
    "platforms": "--platform",
}
# What a version of a selected item shows of each: a value is matched when one of these holds it.
MATCHED_BY = {
    "item_keys": ("v.item_key",),
    "threads": ("v.thread_key", "v.conversation_key", "v.item_key"),
    "authors": ("lower(ltrim(v.author_handle, '@'))", "v.author_id"),
    "accounts": ("v.account",),
    "platforms": ("v.platform",),
}


@dataclass(frozen=True)
class Selection:
    item_keys: list[str]
    # each list selector value that selected no item together with the other selectors: {"option", "value"}
    unmatched: list[dict[str, str]] = field(default_factory=list)


def parse_when(value: str | None, option: str, *, end: bool = False) -> str | None:
    """An ISO date or date-time as the archive stores times (UTC, microseconds, Z). A bare date as an end
    bound means the whole day: `--posted-to 2026-11-01` includes everything posted that day."""
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            # the day's last microsecond, not the next day's start less one: 9999-12-31 has no next day
            moment = day.replace(hour=23, minute=59, second=59, microsecond=999999) if end else day
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        raise ConfigError(
            f"{option} {value!r}: not a date; use YYYY-MM-DD or an ISO date-time such as 2026-11-01T09:30:00Z"
        ) from None
    try:
        return _utc_text(moment)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in year 0 in UTC, which datetime cannot hold
        raise ConfigError(
            f"{option} {value!r}: outside the years 0001 to 9999 in UTC; leave {option} out for no bound"
        ) from None


def parse_range(start: str | None, end: str | None, option: str) -> tuple[str | None, str | None]:
    """`{option}-from` and `{option}-to` as bounds (see parse_when). A range that ends before it starts is
    refused: it could only select nothing, which the export would report as an unmatched selection."""
    low, high = parse_when(start, f"{option}-from"), parse_when(end, f"{option}-to", end=True)
    if low is not None and high is not None and low > high:
        raise ConfigError(
            f"{option}-from {start!r} is after {option}-to {end!r}: no time is in that range; swap the two dates"
        )
    return low, high


def utc_time(value: str | None) -> str | None:
    """A stored time in the form the bounds take (UTC, microseconds, Z). Platforms give their own precision
    and zone ("...:30Z", "...:30.845Z", "+02:00"), which compared as text order wrongly at a bound: "...:30Z"
    sorts after "...:30.000000Z". A value that is not an ISO time (or not one in UTC's years 1 to 9999) is left
    as it is."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return _utc_text(moment)
    except (ValueError, AttributeError, TypeError, OverflowError):
        return value


def _utc_text(moment: datetime) -> str:
    # isoformat pads the year to four digits (strftime's %Y gives "999"), so that bounds compare as text
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


_DAY = timedelta(days=1)


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _any_of(column: str, values: tuple[str, ...], params: list[Any]) -> str:
    params.extend(values)
    return f"{column} IN ({','.join('?' for _ in values)})"


def select_item_keys(conn: sqlite3.Connection, selectors: Selectors) -> Selection:
    """The keys of the selected items, in the order they were first captured, and the values that selected
    none."""
    if not selectors.narrows():
        raise ConfigError(
            "export: name at least one selector (--item, --thread, --author, --account, --platform, --query, "
            "--posted-from/--posted-to, --captured-from/--captured-to or --flagged)"
        )
    if selectors.flagged_only and not has_table(conn, "flags"):
        raise ConfigError("--flagged: this archive has no flags table yet (no scan has run); drop --flagged")
    where: list[str] = []
    params: list[Any] = []
    if selectors.item_keys:
        where.append(_any_of("v.item_key", selectors.item_keys, params))
    threads = _thread_names(conn, selectors.threads)
    if threads:
        names = tuple(sorted(set().union(*threads.values())))
        marks = ",".join("?" for _ in names)
        where.append(f"(v.thread_key IN ({marks}) OR v.conversation_key IN ({marks}) OR v.item_key IN ({marks}))")
        params.extend(names * 3)
    if selectors.authors:
        where.append(_author_condition(conn, selectors.authors, params))
    if selectors.accounts:
        where.append(_any_of("v.account", selectors.accounts, params))
    if selectors.platforms:
        where.append(_any_of("v.platform", selectors.platforms, params))
    conn.create_function("utc_time", 1, utc_time, deterministic=True)
    for bound, op in ((selectors.posted_from, ">="), (selectors.posted_to, "<=")):
        if bound is not None:
            where.append(posted_bound(bound, op, params))
    for bound, op in ((selectors.captured_from, ">="), (selectors.captured_to, "<=")):
        if bound is not None:  # captured_at is written by the archiver in the bounds' form
            where.append(f"v.captured_at {op} ?")
            params.append(bound)
    if selectors.query:
        where.append("v.id IN (SELECT rowid FROM item_versions_fts WHERE item_versions_fts MATCH ?)")
        params.append(selectors.query)
    if selectors.flagged_only:
        where.append("v.item_key IN (SELECT item_key FROM flags)")
    condition = " AND ".join(where)
    # The matching versions are found first, by the index their conditions suit, and grouped after: grouped in one
    # statement, SQLite (without statistics) walks item_versions_item in item_key order to save the sort, reading
    # every version at random when no index serves the conditions (4.9 s at a million versions, not 0.7 s in order).
    sql = (
        f"WITH hits AS MATERIALIZED (SELECT v.item_key, v.id FROM item_versions v WHERE {condition}) "
        "SELECT item_key, min(id) AS first FROM hits GROUP BY item_key ORDER BY first"
    )
    try:
        keys = [row[0] for row in conn.execute(sql, params)]
    except sqlite3.OperationalError as exc:
        if selectors.query:  # the only part of the statement a person writes
            raise ConfigError(
                f"--query {selectors.query!r}: not a valid full-text query ({exc}); put a phrase in double quotes"
            ) from None
        raise
    unmatched = _unmatched(conn, selectors, threads, condition, params, keys) if keys else []
    if selectors.thread_context and keys:
        keys = _with_thread_context(conn, keys)
    return Selection(keys, unmatched)


def _author_condition(conn: sqlite3.Connection, authors: tuple[str, ...], params: list[Any]) -> str:
    """--author as a condition on the versions (alias v): a handle, with or without its '@' and in any case of its
    letters, or a platform author id.

    Handles are compared without their '@' on both sides (YouTube stores "@name", the others "name") and without
    case (X and Mastodon keep the case the person chose, "AnnP"). That comparison, the condition's exact test,
    cannot use an index; the handle spellings the archive holds (`stored_handles`) can, so they narrow first."""
    handles = tuple(a.lstrip("@").lower() for a in authors)
    spellings = sorted({spelling for handle in set(handles) for spelling in stored_handles(conn, handle)})
    ids = ",".join("?" for _ in authors)
    narrow = f"v.author_id IN ({ids})"
    if spellings:
        narrow = f"v.author_handle IN ({','.join('?' for _ in spellings)}) OR {narrow}"
        params.extend(spellings)
    params.extend(authors)
    marks = ",".join("?" for _ in handles)
    params.extend(handles + authors)
    return f"({narrow}) AND (lower(ltrim(v.author_handle, '@')) IN ({marks}) OR v.author_id IN ({ids}))"


def stored_handles(conn: sqlite3.Connection, handle: str) -> list[str]:
    """The author_handle values held that `lower(ltrim(author_handle, '@'))` makes `handle` (given without its
    '@', in lower case): "ann" finds "ann", "Ann", "@ANN". Read from item_versions_author a character at a time,
    each letter in its two cases (SQLite's lower() folds A-Z only), going on only from prefixes some handle has."""
    found: list[str] = []
    ats = ""  # ltrim takes away any number of leading '@'
    while True:
        prefixes = [ats]
        for char in handle:
            cases = (char, char.upper()) if "a" <= char <= "z" else (char,)
            prefixes = [p + c for p in prefixes for c in cases if _handles_start(conn, p + c)]
        found += [p for p in prefixes if conn.execute(_HANDLE_HELD, (p,)).fetchone()]
        ats += "@"
        if not _handles_start(conn, ats):
            return found


_HANDLE_HELD = "SELECT 1 FROM item_versions WHERE author_handle = ? LIMIT 1"
# Texts from a prefix up to the prefix with its last byte one higher: every text that starts with it, in the
# index's BINARY (byte) order. UTF-8 has no byte 0xFF, so the last byte always has a next one.
_HANDLE_STARTS = "SELECT 1 FROM item_versions WHERE author_handle >= ? AND author_handle < CAST(? AS TEXT) LIMIT 1"


def _handles_start(conn: sqlite3.Connection, prefix: str) -> bool:
    data = prefix.encode()
    return conn.execute(_HANDLE_STARTS, (prefix, data[:-1] + bytes([data[-1] + 1]))).fetchone() is not None


def posted_bound(bound: str, op: str, params: list[Any]) -> str:
    """`utc_time(v.created_at) {op} bound` (op ">=" or "<=", bound as parse_when gives it), in a form the index
    item_versions_created serves: utc_time, a Python function, costs ~5 µs a row.

    created_at is kept as the platform gave it ("...Z", "...+02:00"), and text orders an offset wrongly; but no
    offset moves a time by a whole day, so a created_at dated two days or more before the bound's day, or two days
    or more after it, is in or out as its text reads, and only the days between go through utc_time (as
    workspace/search.py does for its bounds, which always start a day). A created_at that is no ISO time is
    compared as text either way. Only ISO 8601's basic and week forms ("20261001T0930Z", "2026-W40-4"), which no
    platform gives, could fall otherwise."""
    exact, exact_params = f"utc_time(v.created_at) {op} ?", [bound]
    try:
        day = date.fromisoformat(bound[:10])
    except ValueError:  # not as parse_when gives it: the exact test alone
        params.extend(exact_params)
        return exact
    early = str(day - _DAY) if day > date.min else None  # (no day lies beyond the calendar's ends)
    late = str(day + 2 * _DAY) if day < date.max - _DAY else None
    # `keep`: the index range (what lies outside is outside the bound); `take`: surely inside, no utc_time needed
    keep, take = (("v.created_at >= ?", early), ("v.created_at >= ?", late))
    if op == "<=":
        keep, take = (("v.created_at < ?", late), ("v.created_at < ?", early))
    sql, found = exact, exact_params
    if take[1] is not None:
        sql, found = f"({take[0]} OR {sql})", [take[1], *found]
    if keep[1] is not None:
        sql, found = f"{keep[0]} AND {sql}", [keep[1], *found]
    params.extend(found)
    return f"({sql})"


def _thread_names(conn: sqlite3.Connection, values: tuple[str, ...]) -> dict[str, set[str]]:
    """What each --thread value names: itself (a root item or a conversation key) and, when it is the key of an
    item, that item's thread and conversation, so that a reply's key selects its whole thread."""
    names = {value: {value} for value in values}
    for chunk in chunks(list(values), 500):
        marks = ",".join("?" for _ in chunk)
        for key, thread, conversation in conn.execute(
            f"SELECT DISTINCT item_key, thread_key, conversation_key FROM item_versions WHERE item_key IN ({marks})",
            chunk,
        ):
            names[key].update(k for k in (thread, conversation) if k)
    return names


def _unmatched(
    conn: sqlite3.Connection,
    selectors: Selectors,
    threads: dict[str, set[str]],
    condition: str,
    params: list[Any],
    keys: list[str],
) -> list[dict[str, str]]:
    """The list selector values that no version matching every selector shows (each list selector's values
    widen each other, so one that selects nothing is otherwise lost without a word)."""
    found = []
    # Only the selected items hold matching versions: read those items' versions, not the archive again (unless a
    # key holds a NUL, which json_each cuts the text at).
    if not any("\x00" in key for key in keys):
        condition = f"v.item_key IN (SELECT value FROM json_each(?)) AND {condition}"
        params = [json.dumps(keys, ensure_ascii=False), *params]
    for name, option in LIST_OPTIONS.items():
        values = getattr(selectors, name)
        if not values:
            continue
        sql = f"SELECT DISTINCT {', '.join(MATCHED_BY[name])} FROM item_versions v WHERE {condition}"
        seen = {value for row in conn.execute(sql, params) for value in row if value is not None}
        for value in values:
            if name == "threads":
                names = threads[value]
            elif name == "authors":
                names = {value.lstrip("@").lower(), value}
            else:
                names = {value}
            if not names & seen:
                found.append({"option": option, "value": value})
    return found


def _with_thread_context(conn: sqlite3.Connection, keys: list[str]) -> list[str]:
    """Add each item's parents (up to the root) and every item of its thread or conversation."""
    chosen = dict.fromkeys(keys)
    threads: set[str] = set()
    conversations: set[str] = set()
    pending = list(keys)
    while pending:
        key = pending.pop()
        for parent, thread, conversation in conn.execute(
            "SELECT DISTINCT parent_key, thread_key, conversation_key FROM item_versions WHERE item_key = ?", (key,)
        ):
            if thread:
                threads.add(thread)
            if conversation:
                conversations.add(conversation)
            if parent and parent not in chosen:
                chosen[parent] = None
                pending.append(parent)
    for column, values in (("thread_key", threads), ("conversation_key", conversations), ("item_key", threads)):
        for value in sorted(values):
            for (key,) in conn.execute(
                f"SELECT item_key FROM item_versions WHERE {column} = ? GROUP BY item_key ORDER BY min(id)", (value,)
            ):
                chosen.setdefault(key, None)
    # Only items the archive holds (a parent may be outside it, e.g. a reply to another account's post).
    held = {
        row[0]
        for chunk in chunks(list(chosen), 500)
        for row in conn.execute(
            f"SELECT DISTINCT item_key FROM item_versions WHERE item_key IN ({','.join('?' for _ in chunk)})", chunk
        )
    }
    return [k for k in chosen if k in held]


def chunks(values: list[Any], size: int) -> list[list[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]
