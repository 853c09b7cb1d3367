"""The organisation's own replies and messages, known by the archived account's platform id: "your biopsy" in
what the hospital writes is the addressee's health, whether or not the platform gives its author a handle.

A Facebook Page's comments and Messenger replies carry no username (a real capture from the sample Graph API
server); LinkedIn names authors by URN and YouTube by display name (the store directly). No `[scan]
own_handles` is configured: the `accounts` table alone says who the archived account is.
"""

from __future__ import annotations

import pytest

from archiver.items import AccountIdentity
from archiver.scan.archive import append_scan, build_detector
from archiver.store import Store
from tests.graph_clinic import ANN, BOB, Hospital, ago, fb_key

from .test_store import make_item

TO_PATIENT = "So sorry about the wait. Your biopsy came back and your oncologist will call about the chemo plan."
DM = "Your HIV test result is ready, and your PrEP prescription was sent to the pharmacy."
# the span: from the first "your" to the last health term of the sentence
REPLY_SPAN = (TO_PATIENT.index("Your"), TO_PATIENT.index(" plan."))
DM_SPAN = (0, DM.index(" was sent"))


@pytest.fixture
def hospital(tmp_path, monkeypatch):
    h = Hospital(tmp_path, monkeypatch)
    yield h
    h.stop()


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "a.db")
    s.append_run("run1", "host", "0" * 64, ["a"])
    yield s
    s.close()


def non_consent_flags(rows: list[tuple]) -> list[tuple]:
    return [r for r in rows if r[-1] != "consent"]


def test_a_facebook_pages_own_replies_and_messages_disclosing_the_addressees_health_are_flagged(hospital):
    s, page = hospital.state, hospital.page
    post = s.add_post(page, "Tell us about your visit this week", ago(days=1))
    question = s.add_comment(post, ANN, "Still waiting to hear back from you...", ago(hours=10))
    reply = s.add_comment(post, hospital.page_author, TO_PATIENT, ago(hours=9), parent=question)
    # a visitor's "your" is the hospital, never a patient: the same words from Bob are not the addressee's health
    visitor = s.add_comment(post, BOB, TO_PATIENT, ago(hours=8))
    conversation = s.add_conversation(page, "messenger", {**ANN, "email": "6100000000000001@facebook.com"})
    s.add_message(conversation, ANN, "any news?", ago(hours=6))
    dm = s.add_message(conversation, hospital.page_author, DM, ago(hours=5))
    hospital.start()

    code, output = hospital.run("facebook")
    assert code == 0, output
    # the connector gives these no author handle: only the Page's id says they are the hospital's
    assert hospital.rows(
        "SELECT author_handle, author_id FROM item_versions WHERE item_key IN (?, ?)",
        fb_key(reply["id"]),
        fb_key(dm["id"]),
    ) == [(None, page["id"]), (None, page["id"])]
    flags = hospital.rows("SELECT item_key, rule_id, severity, span_start, span_end, category FROM flags ORDER BY id")
    assert non_consent_flags(flags) == [
        (fb_key(reply["id"]), "health.addressee", "high", *REPLY_SPAN, "health-addressee"),
        (fb_key(dm["id"]), "health.addressee", "high", *DM_SPAN, "health-addressee"),
    ]
    assert fb_key(visitor["id"]) not in {f[0] for f in flags}


def scan_own_and_visitor(store: Store, account: str, platform: str, own_id: str, own_handle: str) -> list[tuple]:
    """The account's own comment and a visitor's, same words; the flags a scan appends."""
    store.append_account_identity(account, platform, "https://api.example", AccountIdentity(own_id, None), "run1")
    with store.transaction():
        for n, (author_id, handle) in enumerate([(own_id, own_handle), (f"{own_id}-visitor", "Visitor Name")]):
            item = make_item(
                TO_PATIENT,
                item_key=f"{platform}:{n}",
                platform=platform,
                native_id=str(n),
                kind="comment",
                author_id=author_id,
                author_handle=handle,
            )
            store.append_item(account, item, "run1")
    append_scan(store, build_detector(None), mode="new")
    return [
        tuple(r) for r in store.conn.execute("SELECT item_key, rule_id, span_start, span_end FROM flags ORDER BY id")
    ]


def test_linkedin_organisation_comments_are_known_by_the_organisation_urn(store):
    # LinkedIn gives the URN as the author (and the connector as its handle): no own_handles entry matches it
    org = "urn:li:organization:2414183"
    assert scan_own_and_visitor(store, "clinic-linkedin", "linkedin", org, org) == [
        ("linkedin:0", "health.addressee", *REPLY_SPAN)
    ]


def test_youtube_channel_replies_are_known_by_the_channel_id(store):
    # YouTube gives a display name, which may be anything and is nobody's handle
    channel = "UCx7Riverside0000000000a"
    assert scan_own_and_visitor(store, "clinic-youtube", "youtube", channel, "Riverside Hospital") == [
        ("youtube:0", "health.addressee", *REPLY_SPAN)
    ]


def test_an_author_id_of_another_archived_account_is_not_this_ones(store):
    # the id must be the identity of the account that archived the version, on its platform
    store.append_account_identity("other", "linkedin", "https://api.example", AccountIdentity("urn:li:x", None), "run1")
    store.append_item(
        "clinic-linkedin",
        make_item(TO_PATIENT, platform="linkedin", kind="comment", author_id="urn:li:x", author_handle="urn:li:x"),
        "run1",
    )
    append_scan(store, build_detector(None), mode="new")
    assert store.conn.execute("SELECT count(*) FROM flags").fetchone()[0] == 0
