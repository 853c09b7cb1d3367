"""What the consent check reads: what the organisation published itself and has not taken down.

Own: written by the account's own platform identity (the `accounts` table), a post or a reply/comment alike:
a clinic that goes on with a patient's story in a reply to its own post has published it as surely as the post.
Members of the public's posts and comments are their words, not the organisation's, and a direct message is
not published at all. A top-level post counts as the account's own when nothing says otherwise: the account's
identity was never recorded, or the post names no author (its listing is the account's own). A comment needs
the identity: nothing else tells the organisation's replies from the public's.

`lapsed_consents` (schemas/archive.sql, migration 0013) repeats OWN_ITEM in SQL: change both together.
"""

from __future__ import annotations

import sqlite3

# Over item_versions v: the version was published by the organisation's own account.
OWN_ITEM = """
    (v.kind IN ('post', 'comment')
     AND (v.author_id IN (SELECT a.platform_account_id FROM accounts a WHERE a.name = v.account)
          OR (v.kind = 'post' AND (v.author_id IS NULL
                                   OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.name = v.account)))))
"""

# Over item_versions v: the item's latest deletion event is not undone by a restoration.
DELETED = """
    (coalesce((SELECT e.event FROM events e WHERE e.item_key = v.item_key
               AND e.event IN ('deleted', 'restored') ORDER BY e.id DESC LIMIT 1), '') = 'deleted')
"""


def not_read_by_check(conn: sqlite3.Connection, item_key: str) -> str | None:
    """Why the consent check never reads the archived item (its latest version), or None when it reads it
    while it is published: a direct message, or what someone other than the organisation's account wrote."""
    row = conn.execute(
        f"SELECT v.kind, v.author_handle, v.account, {OWN_ITEM} FROM item_versions v "
        "WHERE v.item_key = ? ORDER BY v.id DESC LIMIT 1",
        (item_key,),
    ).fetchone()
    if row is None or row[3]:
        return None
    kind, author, account = row[0], row[1], row[2]
    what = "the consent check reads only what the organisation published (its posts and its own replies)"
    if kind == "message":
        return f"a direct message is not published: {what}"
    by = f"@{author.lstrip('@')}" if author else "another author"
    return f"a {kind} by {by}, not by the account {account!r}: {what}"


def is_deleted(conn: sqlite3.Connection, item_key: str) -> bool:
    """Whether the item's deletion on the platform is proven (and not undone by a restoration)."""
    row = conn.execute(
        f"SELECT {DELETED} FROM item_versions v WHERE v.item_key = ? LIMIT 1",
        (item_key,),
    ).fetchone()
    return bool(row and row[0])
