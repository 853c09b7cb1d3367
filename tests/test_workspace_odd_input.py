"""Odd input to the workspace's own pages gets a clear 400 or 404, never an internal error: a control character
or a pasted page in the search box, a search that runs out of time, a raw record asked for inside a record."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from datasette.database import QueryInterrupted

from archiver.workspace import search

from .workspace_server import serving


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_template) -> Path:
    return demo_template.copy_to(tmp_path_factory.mktemp("odd-input-demo") / "demo")


@pytest.fixture(scope="module")
def server(demo):
    with serving(demo) as base:  # loopback, no accounts: no sign-in
        yield base


@pytest.mark.parametrize("q", ["\x00", "pain\x00", "MRN\x07", "fever\x1b[2J"])
def test_a_control_character_in_the_words_is_refused_by_name(server, q):
    answer = requests.get(f"{server}/-/search.json", params={"q": q}, timeout=30)
    assert answer.status_code == 400 and answer.json()["error"].startswith("q: remove the control characters")
    page = requests.get(f"{server}/-/search", params={"q": q}, timeout=30)
    assert page.status_code == 400 and "remove the control characters" in page.text


def test_tabs_and_line_breaks_are_spaces_between_words(server):
    spaced = requests.get(f"{server}/-/search.json", params={"q": "appointment clinic"}, timeout=30).json()
    pasted = requests.get(f"{server}/-/search.json", params={"q": "appointment\tclinic\r\n"}, timeout=30).json()
    assert pasted["ok"] and pasted["total"] == spaced["total"] and spaced["total"] > 0


def test_a_pasted_page_of_words_is_refused_before_it_is_searched(server):
    at_most = requests.get(f"{server}/-/search.json", params={"q": " ".join(["MRN"] * search.MAX_WORDS)}, timeout=30)
    assert at_most.status_code == 200
    too_many = requests.get(f"{server}/-/search.json", params={"q": "MRN " * 3000}, timeout=30)
    assert too_many.status_code == 400 and f"at most {search.MAX_WORDS} words" in too_many.json()["error"]


def test_a_raw_record_asked_for_inside_a_record_is_not_found(server, demo):
    conn = sqlite3.connect(demo / "archive" / "archive.db")
    warc, offset = conn.execute("SELECT warc_file, warc_offset FROM item_versions LIMIT 1").fetchone()
    conn.close()
    assert requests.get(f"{server}/-/raw", params={"warc": warc, "offset": offset}, timeout=30).status_code == 200
    for inside in (offset + 1, offset + 100):
        for path in ("/-/raw", "/-/raw/body"):
            answer = requests.get(f"{server}{path}", params={"warc": warc, "offset": inside}, timeout=30)
            assert answer.status_code == 404, (path, inside, answer.text[:200])


class SlowDatabase:
    """Datasette's Database as the search uses it, whose every query over item_versions runs out of time."""

    def __init__(self, path: Path):
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        search.register_functions(self.conn)

    async def execute(self, sql: str, params: Any = None, **_: Any) -> SimpleNamespace:
        if "item_versions" in sql and "sqlite_master" not in sql:
            raise QueryInterrupted(sqlite3.OperationalError("interrupted"), sql, params)
        return SimpleNamespace(rows=self.conn.execute(sql, params or {}).fetchall())


def test_a_search_that_runs_out_of_time_says_what_to_do(demo):
    db = SlowDatabase(demo / "archive" / "archive.db")
    try:
        for params in ({"q": "appointment"}, {"q": "appointment", "posted_from": "2026-01-01"}, {"kind": "post"}):
            with pytest.raises(search.SearchInputError, match="took longer than this server allows: add a word"):
                asyncio.run(search.run_search(db, search.SearchQuery.from_params(params), facet_time_limit_ms=500))
    finally:
        db.conn.close()
