"""Connectors keep bounded memory of what they handled in a run (RecentSet), whatever the account's size.

Forgetting may cost a repeated request, never a fact: the store's change detection makes an item handled
twice harmless. The demo's seven platforms, with room for only two keys, give the archive a normal run gives,
with the same number of requests (what decides a look-up, e.g. LinkedIn's window posts, is kept whole).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from archiver.connectors import base, bluesky, graph, linkedin, mastodon, x, youtube
from archiver.demo.run import run_demo


def archive_facts(database: Path) -> dict[str, list[tuple]]:
    """What the runs archived, without what differs between two builds of the demo: ids, run ids, capture
    places, the sample servers' ports (in URLs, raw JSON, content digests) and keys made from the clock
    (Bluesky's conversation ids). Versions and events are told apart by their platform, kind and text."""
    conn = sqlite3.connect(database)
    try:
        return {
            "versions": conn.execute(
                "SELECT platform, kind, text, created_at, edited_at, count(*) FROM item_versions"
                " GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
            ).fetchall(),
            "events": conn.execute(
                "SELECT v.platform, v.kind, v.text, e.event, count(*) FROM events e"
                " JOIN item_versions v ON v.id = e.version_id GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
            ).fetchall(),
            "media": conn.execute("SELECT sha256, count(*) FROM media_files GROUP BY 1 ORDER BY 1").fetchall(),
            # Forgetting must not cost requests either where it could: LinkedIn's look-ups of window posts.
            "requests": conn.execute("SELECT account, requests FROM account_runs ORDER BY account, id").fetchall(),
            "items": conn.execute(
                "SELECT platform, kind, status, count(*) FROM items GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            ).fetchall(),
        }
    finally:
        conn.close()


def test_connectors_that_forget_handled_items_archive_the_same(tmp_path, monkeypatch, demo_template):
    normal = demo_template.directory / "archive" / "archive.db"  # a normal build, made with the same clock
    for module in (bluesky, graph, linkedin, mastodon, x, youtube):
        monkeypatch.setattr(module, "RecentSet", lambda: base.RecentSet(2))
    forgetful = run_demo(tmp_path / "forgetful", echo=lambda line: None, now=demo_template.now)
    assert forgetful.exit_code == 0

    expected = archive_facts(normal)
    found = archive_facts(forgetful.config.archive.database)
    assert len(expected["versions"]) > 1000 and expected["media"]
    assert {platform for platform, *_ in expected["items"]} == {
        "mastodon",
        "x",
        "bluesky",
        "facebook",
        "instagram",
        "linkedin",
        "youtube",
    }
    for name in expected:
        assert found[name] == expected[name], name
