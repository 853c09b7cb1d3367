"""Which items an export holds: selectors that combine, read against the archive (read-only).

Different selectors narrow each other (AND); a selector given several times widens itself (OR: two authors
select the items of either). An item is selected when any of its versions matches, so a word edited away or
a deleted post is still found. Thread context, when asked for, adds every item of each selected item's thread
or conversation and the chain of parents above it.

A value of a list selector that selects nothing (a mistyped --item key, an account of another config) is not
dropped in silence: the selection names it, for the export's output and custody.json.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
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
        # Handles compared without their '@' on both sides: YouTube stores "@name", the others "name".
        handles = tuple(a.lstrip("@").lower() for a in selectors.authors)
        marks = ",".join("?" for _ in handles)
        where.append(f"(lower(ltrim(v.author_handle, '@')) IN ({marks}) OR v.author_id IN ({marks}))")
        params.extend(handles + tuple(selectors.authors))
    if selectors.accounts:
        where.append(_any_of("v.account", selectors.accounts, params))
    if selectors.platforms:
        where.append(_any_of("v.platform", selectors.platforms, params))
    conn.create_function("utc_time", 1, utc_time, deterministic=True)
    for column, bound, op in (
        ("utc_time(v.created_at)", selectors.posted_from, ">="),  # as the platform gave it
        ("utc_time(v.created_at)", selectors.posted_to, "<="),
        ("v.captured_at", selectors.captured_from, ">="),  # written by the archiver in the bounds' form
        ("v.captured_at", selectors.captured_to, "<="),
    ):
        if bound is not None:
            where.append(f"{column} {op} ?")
            params.append(bound)
    if selectors.query:
        where.append("v.id IN (SELECT rowid FROM item_versions_fts WHERE item_versions_fts MATCH ?)")
        params.append(selectors.query)
    if selectors.flagged_only:
        where.append("v.item_key IN (SELECT item_key FROM flags)")
    condition = " AND ".join(where)
    sql = f"SELECT v.item_key, min(v.id) AS first FROM item_versions v WHERE {condition} GROUP BY v.item_key"
    try:
        keys = [row[0] for row in conn.execute(sql + " ORDER BY first", params)]
    except sqlite3.OperationalError as exc:
        if selectors.query:  # the only part of the statement a person writes
            raise ConfigError(
                f"--query {selectors.query!r}: not a valid full-text query ({exc}); put a phrase in double quotes"
            ) from None
        raise
    unmatched = _unmatched(conn, selectors, threads, condition, params) if keys else []
    if selectors.thread_context and keys:
        keys = _with_thread_context(conn, keys)
    return Selection(keys, unmatched)


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
    conn: sqlite3.Connection, selectors: Selectors, threads: dict[str, set[str]], condition: str, params: list[Any]
) -> list[dict[str, str]]:
    """The list selector values that no version matching every selector shows (each list selector's values
    widen each other, so one that selects nothing is otherwise lost without a word)."""
    found = []
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
