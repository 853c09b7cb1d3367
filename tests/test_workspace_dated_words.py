"""Words with a date range: when the range holds few versions against the words' matches, the search reads the
range's ids from its date index first (`within_dates`) instead of each match's row; the page and the counts
must be the same either way."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from archiver.items import Item
from archiver.store import Store
from archiver.warc import CaptureRef
from archiver.workspace import search

# 40 days of posts, 12 a day: "fever" in every other text, "parking" in every sixth, "rash" in one. Some are
# edited later: the new version moves created_at two days on, or to the poster's own offset, or drops "fever";
# edits are captured three weeks after the post.
DAYS, PER_DAY = 40, 12


def _created(day: int, n: int) -> str:
    return f"2026-03-{day + 1:02d}T{n:02d}:30:00.000Z" if day < 31 else f"2026-04-{day - 30:02d}T{n:02d}:30:00Z"


def _captured(day: int) -> str:
    return f"2026-{3 + (day + 1) // 31:02d}-{(day + 1) % 31 or 1:02d}T23:00:00Z"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dated-words") / "archive.db"
    store = Store.open(path)
    store.append_run("run1", "host", "0" * 64, ["clinic", "pharmacy"])
    with store.transaction():
        for day in range(DAYS):
            for n in range(PER_DAY):
                i = day * PER_DAY + n
                words = ["clinic", "hours", f"w{i}"] + ["fever"] * (i % 2 == 0) + ["parking"] * (i % 6 == 0)
                store.append_item("clinic" if i % 3 else "pharmacy", _item(i, day, words, _created(day, n)), "run1")
                if i % 7 == 0:  # edited: another created_at, and the word kept or gone
                    created = (
                        _created(min(day + 2, DAYS - 1), n) if i % 2 else f"2026-03-{day % 28 + 1:02d}T20:00:00-05:00"
                    )
                    edited = words + ["edited"] if i % 14 else [w for w in words if w != "fever"]
                    store.append_item(
                        "clinic" if i % 3 else "pharmacy", _item(i, min(day + 21, DAYS - 1), edited, created), "run1"
                    )
        store.append_item("clinic", _item(99_999, 5, ["rash", "clinic"], _created(5, 3)), "run1")
    store.close()
    return path


def _item(i: int, captured_day: int, words: list[str], created_at: str) -> Item:
    return Item(
        item_key=f"mastodon:clinic:{i}",
        platform="mastodon",
        kind="post" if i % 5 else "comment",
        native_id=str(i),
        source=CaptureRef("f.warc.gz", i, 1, f"<urn:uuid:{i}>", _captured(captured_day)),
        raw={"id": i, "words": words},
        text=" ".join(words),
        created_at=created_at,
        author_handle=f"author{i % 9}",
    )


QUERIES = [
    {"q": "fever", "posted_from": "2026-03-10", "posted_to": "2026-03-12"},
    {"q": "fever", "posted_from": "2026-03-04"},
    {"q": "fever", "posted_to": "2026-03-04"},
    {"q": "fever clinic", "posted_from": "2026-03-01", "posted_to": "2026-03-01"},
    {"q": "parking", "posted_from": "2026-03-10", "posted_to": "2026-03-20", "account": "pharmacy"},
    {"q": "fever", "posted_from": "2026-03-05", "posted_to": "2026-03-25", "status": "edited"},
    {"q": "fever", "posted_from": "2026-03-05", "posted_to": "2026-03-25", "kind": "comment", "page": "2"},
    {"q": "fever", "captured_from": "2026-03-25", "captured_to": "2026-03-30"},
    {"q": "fever", "captured_to": "2026-03-03"},
    {"q": "clinic", "posted_from": "2026-03-06", "posted_to": "2026-03-08", "captured_from": "2026-03-20"},
    {"q": "edited", "posted_from": "2026-03-01", "posted_to": "9999-12-31"},
    {"q": "rash", "posted_from": "2026-03-01", "posted_to": "2026-04-09"},
]


@pytest.mark.parametrize("params", QUERIES, ids=lambda p: " ".join(f"{k}={v}" for k, v in p.items()))
def test_reading_the_dates_first_finds_the_same_page_and_counts(archive, params):
    conn = sqlite3.connect(f"file:{archive}?mode=ro", uri=True)
    search.register_functions(conn)
    query = search.SearchQuery.from_params(params)
    answers = []
    for within in (False, True):
        page_sql, page_params = search.page_sql(query, has_flags=True, within_dates=within)
        facets_sql, facet_params = search.facets_sql(query, has_flags=True, within_dates=within)
        answers.append(
            (conn.execute(page_sql, page_params).fetchall(), sorted(conn.execute(facets_sql, facet_params).fetchall()))
        )
    conn.close()
    assert answers[0] == answers[1]
    assert ("total", None, 0) not in answers[0][1], "each query finds something"


def test_reading_the_dates_first_walks_the_words_once_and_the_range_in_its_index(tmp_path):
    """On an archive as the archiver makes it (no ANALYZE statistics): the FTS5 match is one scan, without a rowid
    constraint (with one, FTS5 runs the query again for every id, bm25's word totals included), and the range's
    ids come from item_versions_created alone."""
    Store.open(tmp_path / "archive.db").close()
    conn = sqlite3.connect(tmp_path / "archive.db")
    search.register_functions(conn)
    query = search.SearchQuery.from_params({"q": "fever", "posted_from": "2026-03-10", "posted_to": "2026-03-12"})
    for sql, params in (
        search.page_sql(query, has_flags=True, within_dates=True),
        search.facets_sql(query, has_flags=True, within_dates=True),
    ):
        steps = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        assert any(s.startswith("SCAN f VIRTUAL TABLE INDEX 0:M") for s in steps), steps  # "0:=M": by rowid
        assert any(s.startswith("SEARCH d USING COVERING INDEX item_versions_created (created_at") for s in steps), (
            steps
        )
    conn.close()


class ReadOnlyDatabase:
    """What the search asks of Datasette's Database (`execute` to rows), on a connection with the server's SQL
    functions; the HTTP tests (test_workspace_posted_bounds) take the same path through a real server."""

    def __init__(self, path: Path):
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        search.register_functions(self.conn)

    async def execute(self, sql: str, params: Any = None, **_: Any) -> SimpleNamespace:
        return SimpleNamespace(rows=self.conn.execute(sql, params or {}).fetchall())


def _narrower(path: Path, params: dict[str, str]) -> bool:
    db = ReadOnlyDatabase(path)
    try:
        return asyncio.run(search.dates_narrower(db, search.SearchQuery.from_params(params)))
    finally:
        db.conn.close()


def test_the_range_is_read_first_only_when_it_holds_fewer_versions_than_the_words_match(archive, tmp_path):
    assert _narrower(archive, {"q": "fever", "posted_from": "2026-03-10", "posted_to": "2026-03-12"})
    assert _narrower(archive, {"q": "fever", "captured_from": "2026-03-25", "captured_to": "2026-03-26"})
    assert not _narrower(archive, {"q": "rash", "posted_from": "2026-03-01", "posted_to": "2026-04-09"})
    # the whole archive (550 versions) against a word in one sixth of them (fever, in half, would be read first)
    assert not _narrower(archive, {"q": "parking", "posted_to": "2026-04-09"})
    assert not _narrower(archive, {"q": "fever"})
    assert not _narrower(archive, {"posted_from": "2026-03-10"})  # a listing: no words to weigh against
    assert not _narrower(archive, {"q": "fever", "posted_to": "9999-12-31"})  # no bound at all
    # An archive served before the run that adds item_versions_captured (migration 0009): no index to read
    older = tmp_path / "older.db"
    shutil.copy(archive, older)
    conn = sqlite3.connect(older)
    conn.execute("DROP INDEX item_versions_captured")
    conn.commit()
    conn.close()
    assert not _narrower(older, {"q": "fever", "captured_from": "2026-03-25", "captured_to": "2026-03-26"})
    assert _narrower(older, {"q": "fever", "posted_from": "2026-03-10", "posted_to": "2026-03-12"})
