"""`archiver export --author` and `--posted-from/--posted-to` select what they always did, by an index: a handle
found from item_versions_author in whatever '@' and case it is stored, created_at narrowed by its text to the days
around a bound before the exact test in UTC. Each selection is compared with the SQL the export used before, which
read every version (10.8 s for an author with 11 items at a million versions)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from archiver.bundle.select import Selectors, parse_when, select_item_keys, utc_time
from archiver.items import Item
from archiver.store import Store
from archiver.warc import CaptureRef

# Handles as connectors store them (X and Mastodon in the case the person chose, YouTube with its '@', LinkedIn a
# URN, Mastodon's acct with the instance), and spellings made to trip a prefix walk: a longer handle that starts
# with another, several '@', letters SQLite's lower() leaves alone (É, the Kelvin sign), LIKE and GLOB characters.
HANDLES = [
    "ann", "Ann", "ANN", "@ann", "@Ann", "@@aNN", "annie", "Annie", "an", "@an", "bob", "@Bob", "BOB", "émile",
    "Émile", "éMILE", "ÉMILE", "ann@clinic.example", "Ann@Clinic.Example", "urn:li:person:AnnP", "a%b_c", "a[b]*?",
    "", "@", "@@", None, "ｎａｎ", "\u212a", "k", "ß", "SS", "ann\x00x", "zed",
]  # fmt: skip
# Author ids, compared as given: "ann" is also others' handle, "Ann" differs from a given "ann" only in case.
AUTHOR_IDS = {"zed": "ann", "bob": "Ann", "BOB": "12345"}
# Items whose keys JSON escapes, or SQLite's json_each cuts (at a NUL), by their authors' handles.
ODD_KEYS = {"odd": ["x:clinic:nul\x00after"], "odd2": ['x:clinic:"quoted" \\ 😀 \u2028', "x:clinic:tab\there"]}
AUTHORS = [
    ("ann",), ("@ANN",), ("Ann",), ("@@ann",), ("annie",), ("an",), ("bob",), ("@bob",), ("émile",), ("Émile",),
    ("ÉMILE",), ("ann@clinic.example",), ("@Ann@clinic.example",), ("urn:li:person:annp",), ("a%b_c",), ("a[b]*?",),
    ("@",), ("",), ("12345",), ("K",), ("\u212a",), ("ß",), ("ss",), ("ｎａｎ",), ("nobody",), ("ann", "bob"),
    ("12345", "émile", "nobody"), ("ann\x00x",), ("odd", "nobody"), ("odd2", "nobody"),
]  # fmt: skip

# Bounds as parse_when gives them: a day's start and end, within a day, a microsecond past midnight.
BOUNDS = [
    parse_when("2026-03-01", "--posted-from"),
    parse_when("2026-03-01", "--posted-to", end=True),
    parse_when("2026-03-01T10:30:00+02:00", "--posted-from"),
    parse_when("2026-03-01T00:00:00.000001Z", "--posted-from"),
]
OFFSETS = [timedelta(hours=h, minutes=m) for h, m in ((-23, -59), (-12, 0), (-5, 0), (0, 0), (1, 0), (14, 0), (23, 59))]
DELTAS = [
    timedelta(hours=h, seconds=s, microseconds=us)
    for h, s, us in ((0, 0, 0), (0, 0, 1), (0, 0, -1), (0, 1, 0), (0, -1, 0), (1, 0, 0), (-1, 0, 0))
] + [timedelta(hours=sign * h) for sign in (1, -1) for h in (23, 24, 25, 47, 48, 49, 72)]
# Not ISO times, or not ones datetime holds: compared as text, before as now.
ODD_TIMES = [
    None, "", "yesterday", "2026-03-01", "2026-03-01T10:30", "2026-02-30T10:00:00Z", "2026-03-01 08:30:00+00:00",
    "2026-03-01T10:30:00+24:00", "2026-02-28T23:00:00 garbage", "2026-03-03", "2026-02-27T23:59:59.999999-23:59",
    "0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z",
]  # fmt: skip


def created_forms(moment: datetime, offset: timedelta) -> list[str]:
    """`moment` as platforms write it: in UTC with Z at three precisions, or at the poster's offset."""
    if not offset:
        return [moment.strftime("%Y-%m-%dT%H:%M:%SZ"), moment.isoformat(timespec="milliseconds")[:-6] + "Z",
                moment.isoformat(timespec="microseconds").replace("+00:00", "Z")]  # fmt: skip
    return [moment.astimezone(timezone(offset)).isoformat(timespec="microseconds")]


def created_ats() -> list[str | None]:
    found: list[str | None] = list(ODD_TIMES)
    for bound in BOUNDS:
        at = datetime.fromisoformat(bound.replace("Z", "+00:00"))
        for delta in DELTAS:
            for offset in OFFSETS:
                found += created_forms((at + delta).astimezone(UTC), offset)
    return list(dict.fromkeys(found))


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("select") / "archive.db"
    store = Store.open(path)
    store.append_run("run1", "host", "0" * 64, ["clinic"])
    with store.transaction():
        n = 0
        for handle in HANDLES:
            for created_at in ("2026-03-01T10:00:00Z", "2026-02-01T10:00:00Z"):  # one in a posted range, one not
                n += 1
                author_id = AUTHOR_IDS.get(handle or "", f"id-{n}")
                store.append_item("clinic", item(n, created_at, handle, author_id), "run1")
        for created_at in created_ats():
            n += 1
            store.append_item("clinic", item(n, created_at, "Ann" if n % 3 else "zed", f"id-{n}"), "run1")
        for handle, keys in ODD_KEYS.items():
            for key in keys:
                n += 1
                store.append_item("clinic", item(n, "2026-03-01T10:00:00Z", handle, f"id-{n}", key), "run1")
    store.close()
    return path


def item(n: int, created_at: str | None, handle: str | None, author_id: str, key: str | None = None) -> Item:
    return Item(
        item_key=key or f"x:clinic:{n}",
        platform="x",
        kind="post",
        native_id=str(n),
        source=CaptureRef("f.warc.gz", n, 1, f"<urn:uuid:{n}>"),
        raw={"id": n},
        text=f"post {n}",
        created_at=created_at,
        author_id=author_id,
        author_handle=handle,
    )


def reading(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def old_selection(conn: sqlite3.Connection, selectors: Selectors) -> tuple[list[str], list[dict[str, str]]]:
    """The selection as the export made it before (authors and posted bounds), and its unmatched --author values."""
    where: list[str] = []
    params: list[object] = []
    if selectors.authors:
        handles = tuple(a.lstrip("@").lower() for a in selectors.authors)
        marks = ",".join("?" for _ in handles)
        where.append(f"(lower(ltrim(v.author_handle, '@')) IN ({marks}) OR v.author_id IN ({marks}))")
        params.extend(handles + tuple(selectors.authors))
    conn.create_function("utc_time", 1, utc_time, deterministic=True)
    for bound, op in ((selectors.posted_from, ">="), (selectors.posted_to, "<=")):
        if bound is not None:
            where.append(f"utc_time(v.created_at) {op} ?")
            params.append(bound)
    condition = " AND ".join(where)
    sql = f"SELECT v.item_key, min(v.id) AS first FROM item_versions v WHERE {condition} GROUP BY v.item_key"
    keys = [row[0] for row in conn.execute(sql + " ORDER BY first", params)]
    unmatched = []
    if keys and selectors.authors:
        sql = f"SELECT DISTINCT lower(ltrim(v.author_handle, '@')), v.author_id FROM item_versions v WHERE {condition}"
        seen = {value for row in conn.execute(sql, params) for value in row if value is not None}
        unmatched = [
            {"option": "--author", "value": a} for a in selectors.authors if not {a.lstrip("@").lower(), a} & seen
        ]
    return keys, unmatched


def new_selection(conn: sqlite3.Connection, selectors: Selectors) -> tuple[list[str], list[dict[str, str]]]:
    found = select_item_keys(conn, selectors)
    return found.item_keys, found.unmatched


@pytest.mark.parametrize("authors", AUTHORS, ids=repr)
def test_authors_select_what_they_did_in_every_stored_spelling(archive, authors):
    conn = reading(archive)
    for selectors in (
        Selectors(authors=authors),
        Selectors(authors=authors, posted_from=BOUNDS[0], posted_to=BOUNDS[1]),
    ):
        assert new_selection(conn, selectors) == old_selection(conn, selectors), selectors
    conn.close()


def test_each_selection_above_is_not_empty_where_it_should_not_be(archive):
    """The comparisons above compare something: the handles match in their spellings, the ids as given."""
    conn = reading(archive)
    assert len(new_selection(conn, Selectors(authors=("@ANN",)))[0]) > 100  # "Ann" also wrote the dated posts
    assert len(new_selection(conn, Selectors(authors=("émile",)))[0]) == 4  # émile, éMILE; not Émile, ÉMILE
    assert len(new_selection(conn, Selectors(authors=("12345",)))[0]) == 2  # BOB's author id
    assert new_selection(conn, Selectors(authors=("nobody", "bob")))[1] == [{"option": "--author", "value": "nobody"}]
    conn.close()


@pytest.mark.parametrize("posted_from", [None, *BOUNDS])
@pytest.mark.parametrize("posted_to", [None, *BOUNDS])
def test_posted_bounds_select_what_they_did_whatever_the_offset(archive, posted_from, posted_to):
    if posted_from is None and posted_to is None:
        return
    conn = reading(archive)
    selectors = Selectors(posted_from=posted_from, posted_to=posted_to)
    keys, _ = new_selection(conn, selectors)
    assert (keys, []) == old_selection(conn, selectors)
    conn.close()


@pytest.mark.parametrize(
    ("start", "end"),
    [("0001-01-01", "9999-12-31"), ("0001-01-01", "0001-01-01"), ("9999-12-30", "9999-12-31"), ("9999-12-31", None)],
)
def test_posted_bounds_at_the_ends_of_the_calendar_select_what_they_did(archive, start, end):
    conn = reading(archive)
    low, high = parse_when(start, "--posted-from"), parse_when(end, "--posted-to", end=True)
    for selectors in (
        Selectors(posted_from=low, posted_to=high),
        Selectors(posted_from=low),
        Selectors(posted_to=high),
    ):
        if selectors.narrows():
            assert new_selection(conn, selectors)[0] == old_selection(conn, selectors)[0], selectors
    conn.close()


def main_plan(conn: sqlite3.Connection, selectors: Selectors) -> list[str]:
    """The plan of the statement that selects the items (the one ordered by each item's first matching version)."""
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        select_item_keys(conn, selectors)
    finally:
        conn.set_trace_callback(None)
    [sql] = [s for s in statements if s.rstrip().endswith("ORDER BY first")]
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]


def test_posted_bounds_read_the_created_at_index(archive):
    conn = reading(archive)
    steps = main_plan(conn, Selectors(posted_from=BOUNDS[0], posted_to=BOUNDS[1]))
    assert [s for s in steps if "USING INDEX item_versions_created (created_at>? AND created_at<?)" in s], steps
    assert not [s for s in steps if s.startswith("SCAN v")], steps
    conn.close()


def test_an_author_is_found_by_index(archive):
    """A handle and a platform author id are both found by index (migration 0022 indexed author ids; before it,
    `v.author_id IN (...)` read every version: 2.4-10.7 s at a million, review q finding 8)."""
    conn = reading(archive)
    steps = main_plan(conn, Selectors(authors=("@ANN", "12345")))
    assert not [s for s in steps if s.startswith("SCAN v")], steps
    assert [s for s in steps if "USING INDEX item_versions_author_id (author_id=?)" in s], steps
    assert [s for s in steps if "USING INDEX item_versions_author (author_handle=?)" in s], steps
    conn.close()
