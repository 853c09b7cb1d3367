"""The run summary keeps every account name and count whole, in cron's log and on a narrow terminal."""

from __future__ import annotations

import io

from rich.console import Console

from archiver.pipeline import AccountResult, RunResult
from archiver.progress import render_summary

LONG_NAME = "riverside-community-hospital-patient-relations-mastodon-main"


def summary(console: Console) -> str:
    result = RunResult(
        "20261124T020000Z-a1b2c3",
        [
            AccountResult(LONG_NAME, "mastodon", requests=1234, new_items=1234567),
            AccountResult("clinic-bsky", "bluesky", status="failed", error="HTTP 502 after 4 attempts"),
        ],
        ["x.warc.gz"],
    )
    render_summary(result, console)
    return console.file.getvalue()


def test_off_a_terminal_each_account_is_one_whole_line():
    text = summary(Console(file=io.StringIO(), width=80))
    assert f"{LONG_NAME}: ok; 1234 requests, 1234567 new items, 0 edits, 0 deletions, 0 restored, 0 media" in text
    assert "clinic-bsky: failed; 0 requests" in text and "clinic-bsky: error: HTTP 502 after 4 attempts" in text
    assert "…" not in text


def test_a_narrow_terminal_wraps_names_and_counts_but_never_cuts_them():
    text = summary(Console(file=io.StringIO(), width=60, force_terminal=True, color_system=None))
    body = [line.split("│")[1:-1] for line in text.splitlines() if line.startswith("│")]
    column = ["".join(cells[i].strip() for cells in body) for i in range(len(body[0]))]
    assert "…" not in text
    assert column[0] == LONG_NAME + "clinic-bsky" and column[3] == "12345670"
