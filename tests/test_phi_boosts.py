"""A Mastodon boost re-publishes someone else's status: no content of its own, the boosted status under `reblog`
(docs.joinmastodon.org, Status entity). The scan reads what it spreads, as the boosted author's words."""

from __future__ import annotations

import json
from pathlib import Path

from archiver.items import AccountIdentity
from archiver.scan.archive import append_scan, build_detector
from archiver.scan.engine import AllowList, Detector
from archiver.scan.fields import detect_outside, parse_fields, quoted_fields
from archiver.scan.rules import load_rules
from archiver.store import Store

from .test_store import make_item

PATIENT_WORDS = "<p>Please call us at 555-867-5309 about my mom&#39;s biopsy results</p>"


def boost_of(content: str, acct: str = "ann", **boosted) -> dict:
    """The account's boost as its statuses listing returns it: empty content, the original under reblog."""
    original = {"id": "5", "account": {"id": "77", "acct": acct}, "content": content, "spoiler_text": "", **boosted}
    return {"id": "9", "content": "", "spoiler_text": "", "media_attachments": [], "reblog": original}


def test_what_a_boost_spreads_is_flagged_as_the_boosted_authors(tmp_path: Path):
    store = Store.open(tmp_path / "a.db")
    store.append_run("run1", "host", "0" * 64, ["a"])
    store.append_account_identity("a", "mastodon", "https://h", AccountIdentity("1"), "run1")
    raw = boost_of(PATIENT_WORDS, media_attachments=[{"id": "m", "description": "my card, MRN 00482913"}])
    with store.transaction():  # the clinic's own status ("1"): what it writes itself may offer its numbers
        store.append_item("a", make_item("", raw=raw, author_id="1", author_handle="riverside"), "run1")
    try:
        append_scan(store, build_detector(None), mode="new")
        flags = store.conn.execute("SELECT category, span_start, matched, reason FROM flags ORDER BY id").fetchall()
    finally:
        store.close()
    found = {row[0]: row for row in flags}
    assert found["phone"][1:3] == (None, "555-867-5309")  # the family's number: "call us at" is not the clinic's
    assert found["phone"][3].endswith("(in the boosted post)")
    assert found["mrn"][2] == "00482913" and found["mrn"][3].endswith(
        "(in the alt text of attachment 1 of the boosted post)"
    )


def test_a_boost_of_the_organisations_own_post_is_read_as_its_own():
    detector = Detector(load_rules(), AllowList(handles=frozenset({"riverside"})))
    raw = boost_of("<p>Questions? Call us at 555-867-5309.</p>", acct="riverside")
    quoted = quoted_fields("mastodon", _json(raw))
    assert [(q.author, q.fields) for q in quoted] == [
        ("riverside", [("the boosted post", "Questions? Call us at 555-867-5309.")])
    ]
    assert detect_outside(detector, [], "post", "riverside", True, quoted) == []


def test_only_a_boost_has_quoted_fields_and_the_boost_adds_no_field_of_its_own():
    plain = {"id": "1", "content": "<p>hello</p>", "reblog": None}
    assert quoted_fields("mastodon", _json(plain)) == []
    assert quoted_fields("x", _json(boost_of(PATIENT_WORDS))) == []  # X keeps a repost's text in the item
    assert parse_fields("mastodon", "", "[]", _json(boost_of(PATIENT_WORDS))) == []
    poll = {"options": [{"title": "MRN 00482913"}]}
    [quoted] = quoted_fields("mastodon", _json(boost_of("<p>Vote</p>", spoiler_text="CW", poll=poll)))
    assert quoted.fields == [
        ("the boosted post", "Vote"),
        ("the content warning of the boosted post", "CW"),
        ("poll option 1 of the boosted post", "MRN 00482913"),
    ]


def _json(value: dict) -> str:
    return json.dumps(value)
