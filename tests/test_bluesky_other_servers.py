"""A commenter's own server cannot stop or stall the clinic's Bluesky capture (request revision 4 of the connector,
OTHER_SERVERS_NOTED).

A commenter's records and blobs live on the PDS her DID document names, which may be her own server: a did:plc naming
a self-hosted endpoint (Jane here: a second loopback server on the same records, her document in the clinic's PLC
directory naming it), or a did:web, whose document is on its own host too. The archiver asks it for a reply that left
its thread, a reply under one of the clinic's deleted posts, and blobs. What it fails to answer (401 or 403, which say
nothing of the clinic's app password since none is sent there, a 503 after the retries, a throttle past
max_rate_limit_wait, an answer that is not the record asked for) is a notice naming the item; the item keeps its last
known state (only RecordNotFound is a deletion); the next run asks again. Its rate-limit budget and its waits are its
own: the clinic's requests are not held up. Runs captured before (revision 3, where such a failure ended the account)
replay as they were made.
"""

from __future__ import annotations

import json
import re
import sqlite3
import ssl
import time
from dataclasses import dataclass
from datetime import timedelta

import pytest

from archiver.connectors.bluesky import MEDIA_FAILURES_NOTED, BlueskyConnector
from archiver.demo.bluesky_server import Account, Fault, SampleBlueskyServer
from archiver.demo.png import make_png
from tests.revisions import recorded_revisions, verify_replay
from tests.test_alert_hardening import self_signed
from tests.test_bluesky_run import NOW, BskyClinic, assert_rebuild_equals, fates, k

WARC_RECORD = r"\(WARC record <urn:uuid:[0-9a-f-]+>\)"
AGAIN = "; not concluded deleted, its status is checked again next run"
RENEW = "renew the token"
FOREVER = 10**6


@dataclass
class Commenter:
    """The clinic, Jane, her own PDS (`host` as the archiver names it) and two replies of hers: `in_thread` under the
    clinic's post `post`, `orphan` under the clinic's post `gone`, which the clinic deletes after the first run."""

    clinic: BskyClinic
    jane: Account
    pds: SampleBlueskyServer
    base: str  # her PDS's URL, as her DID document names it
    host: str
    post: dict
    gone: dict
    in_thread: dict
    orphan: dict

    def run(self) -> tuple[int, str]:
        return self.clinic.run()

    def db(self) -> sqlite3.Connection:
        return self.clinic.db()

    def record_lookups(self, reply: dict) -> int:
        rkey = reply["uri"].rsplit("/", 1)[1]
        return len([q for _, p, q in self.pds.requests_log if p.endswith("getRecord") and rkey in q])


def jane_on(clinic: BskyClinic, jane: Account, pds: SampleBlueskyServer, base: str | None = None) -> Commenter:
    """Two replies of Jane's, archived by a first run; then the clinic deletes `gone`, and Jane `in_thread`."""
    post, gone = clinic.posts[2], clinic.posts[1]
    state = clinic.state
    in_thread = state.add_post(
        jane.did, "My scan results came back", created_at=NOW - timedelta(days=1), reply_to=post["uri"]
    )
    orphan = state.add_post(jane.did, "Is the clinic open?", created_at=NOW - timedelta(hours=20), reply_to=gone["uri"])
    code, output = clinic.run()
    assert code == 0, output
    state.delete_post(gone["uri"])
    state.delete_post(in_thread["uri"])
    base = base or pds.base_url
    return Commenter(clinic, jane, pds, base, base.split("://", 1)[1], post, gone, in_thread, orphan)


def with_own_pds(clinic: BskyClinic) -> tuple[Account, SampleBlueskyServer]:
    """Jane, a commenter whose DID document in the clinic's PLC directory names her own PDS: a second loopback server
    on the same records, started (the caller stops it)."""
    jane = clinic.state.add_account("janedoe.example", "Jane Doe")
    pds = SampleBlueskyServer(clinic.state)
    pds.start()
    document = {
        "id": jane.did,
        "alsoKnownAs": [f"at://{jane.handle}"],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds.base_url}],
    }
    clinic.server.faults.append(Fault(rf"^/{jane.did}$", status=200, body=json.dumps(document).encode(), times=FOREVER))
    return jane, pds


@pytest.fixture
def commenter(tmp_path, monkeypatch, http_waits):
    """Jane, a did:plc whose document in the clinic's PLC directory names her own PDS (tests/test_alert_hosts.py)."""
    clinic = BskyClinic(tmp_path, monkeypatch)
    jane, pds = with_own_pds(clinic)
    try:
        yield clinic, jane, pds
    finally:
        pds.stop()
        clinic.server.stop()


@pytest.fixture
def jane(commenter) -> Commenter:
    return jane_on(*commenter)


def unread(jane: Commenter, reply: dict, why: str) -> str:
    """The notice (a pattern) of a reply whose record on her server could not be read, `why` a pattern too."""
    where = rf"a reply's record on another server \({re.escape(jane.host)}\)"
    return rf"{re.escape(reply['uri'])}: {where} could not be read: {why}{AGAIN}"


def notices(output: str) -> list[str]:
    return [
        line.removeprefix("clinic-bsky: note: ")
        for line in output.splitlines()
        if line.startswith("clinic-bsky: note:")
    ]


def versions(conn: sqlite3.Connection, record: dict) -> int:
    return conn.execute("SELECT count(*) FROM item_versions WHERE item_key = ?", (k(record),)).fetchone()[0]


def assert_kept_as_it_was(jane: Commenter, *replies: dict) -> None:
    conn = jane.db()
    for reply in replies:
        assert fates(conn, k(reply)) == ["created"] and versions(conn, reply) == 1, reply["uri"]
    conn.close()


def assert_resolved_next_run(jane: Commenter) -> None:
    """Her server answers again: the reply she deleted is proven deleted by its RecordNotFound there, the one she kept
    is read and stays as it was; the captures replay to the same rows."""
    asked = jane.record_lookups(jane.orphan)
    code, output = jane.run()
    assert code == 0, output
    assert not [n for n in notices(output) if "another server" in n], output
    conn = jane.db()
    assert fates(conn, k(jane.in_thread)) == ["created", "deleted"]
    evidence = json.loads(
        conn.execute(
            "SELECT evidence FROM events WHERE item_key = ? AND event = 'deleted'", (k(jane.in_thread),)
        ).fetchone()[0]
    )
    assert evidence["error"] == "RecordNotFound" and evidence["url"].startswith(
        f"{jane.base}/xrpc/com.atproto.repo.getRecord"
    )
    assert fates(conn, k(jane.orphan)) == ["created"] and versions(conn, jane.orphan) == 1
    conn.close()
    assert jane.record_lookups(jane.orphan) == asked + 1
    assert_rebuild_equals(jane.clinic, jane.clinic.tmp_path / "rebuilt.db").close()
    result = verify_replay(jane.clinic.config())
    assert result.exit_code == 0, result.output


# -- (a) 401 / 403 ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [401, 403])
def test_her_pds_refusing_a_lookup_is_a_notice_not_a_refused_token(jane, status):
    """Her PDS answers getRecord 401 or 403 (it wants a login, or refuses strangers): the clinic's account is
    captured (exit 0), each of her replies it could not check is a notice naming it, none is marked deleted, nothing
    says the clinic's token was refused; the next run, her PDS answering, decides each."""
    jane.pds.faults.append(Fault(r"com\.atproto\.repo\.getRecord", status=status, times=FOREVER))
    code, output = jane.run()
    assert code == 0, output
    assert RENEW not in output and "refused" not in output
    for reply in (jane.in_thread, jane.orphan):
        assert [n for n in notices(output) if re.fullmatch(unread(jane, reply, f"HTTP {status} {WARC_RECORD}"), n)], (
            output
        )
        assert jane.record_lookups(reply) == 1  # an answer for that record: the other reply is still asked
    conn = jane.db()
    assert fates(conn, k(jane.gone)) == ["created", "deleted"]  # the clinic's own post: its own PDS decides
    conn.close()
    assert_kept_as_it_was(jane, jane.in_thread, jane.orphan)
    jane.pds.faults.clear()
    assert_resolved_next_run(jane)


# -- (b) 503 after the retries ----------------------------------------------------------------------------------------
def test_her_pds_failing_is_a_notice_and_asked_nothing_more_that_run(jane, http_waits):
    """Her PDS answers 503 to every attempt: the first lookup is retried (4 attempts, the back-off waited), then
    noted, and her server is asked nothing more that run (the second reply is noted without a request): a server
    that fails cannot hold the run up request after request. The account is captured; the next run decides."""
    jane.pds.faults.append(Fault(r"com\.atproto\.repo\.getRecord", status=503, times=FOREVER))
    code, output = jane.run()
    assert code == 0, output
    assert RENEW not in output
    why = rf"HTTP 503 after 4 attempt\(s\) {WARC_RECORD}"
    assert [n for n in notices(output) if re.fullmatch(unread(jane, jane.in_thread, why), n)], output
    why = rf"not asked, as it gave no answer earlier in this run \({why}\)"
    assert [n for n in notices(output) if re.fullmatch(unread(jane, jane.orphan, why), n)], output
    assert (jane.record_lookups(jane.in_thread), jane.record_lookups(jane.orphan)) == (4, 0)
    assert len(http_waits) == 3  # the back-offs between the four attempts, and no other wait
    assert_kept_as_it_was(jane, jane.in_thread, jane.orphan)
    jane.pds.faults.clear()
    assert_resolved_next_run(jane)


# -- (c) throttling ---------------------------------------------------------------------------------------------------
def test_her_pds_spent_for_an_hour_holds_up_only_her_own_lookups(jane, http_waits):
    """Her PDS answers the first lookup (RecordNotFound: a real answer, the reply is deleted) saying its budget is
    spent for an hour. The clinic's own requests after it (quotes, threads at the AppView) go at once: the budget was
    hers. Her next lookup would wait an hour, past max_rate_limit_wait: it is a notice, and the account is captured."""
    reset = str(int(time.time()) + 3600)
    spent = {"RateLimit-Limit": "3000", "RateLimit-Remaining": "0", "RateLimit-Reset": reset}
    gone = b'{"error":"RecordNotFound","message":"Could not locate record"}'
    rkey = jane.in_thread["uri"].rsplit("/", 1)[1]
    jane.pds.faults.append(Fault(rf"getRecord.*{rkey}", status=400, body=gone, headers=spent))
    appview_before = len(jane.clinic.server.requests_log)
    code, output = jane.run()
    assert code == 0, output
    assert http_waits == []  # nothing waited: not the clinic's requests, and not an hour for hers
    asked = [p for _, p, _ in jane.clinic.server.requests_log[appview_before:]]
    assert asked.count("/xrpc/app.bsky.feed.getQuotes") == 2  # both posts' quotes, after her spent answer
    why = "it throttles this archiver for longer than max_rate_limit_wait allows"
    assert [n for n in notices(output) if re.fullmatch(unread(jane, jane.orphan, why), n)], output
    assert jane.record_lookups(jane.orphan) == 0
    conn = jane.db()
    assert fates(conn, k(jane.in_thread)) == ["created", "deleted"]
    conn.close()
    assert_kept_as_it_was(jane, jane.orphan)
    code, output = jane.run()  # her budget is hers alone: the next run (a new session) asks again
    assert code == 0, output
    assert jane.record_lookups(jane.orphan) == 1
    assert_kept_as_it_was(jane, jane.orphan)
    assert_rebuild_equals(jane.clinic, jane.clinic.tmp_path / "rebuilt.db").close()
    assert verify_replay(jane.clinic.config()).exit_code == 0


def test_her_waits_do_not_use_up_the_clinics_max_rate_limit_wait(jane, http_waits):
    """Her PDS throttles the first lookup for 600 s, the AppView then throttles the clinic for 600 s: each wait is
    within max_rate_limit_wait (900 s), and hers count apart from the clinic's, so both are waited out and the
    account is captured. (One budget for both gave the account up at the second wait.)"""
    rkey = jane.in_thread["uri"].rsplit("/", 1)[1]
    jane.pds.faults.append(Fault(rf"getRecord.*{rkey}", status=429, headers={"Retry-After": "600"}))
    jane.clinic.server.faults.append(Fault(r"getQuotes", status=429, headers={"Retry-After": "600"}))
    code, output = jane.run()
    assert code == 0, output
    assert http_waits == [600, 600]
    conn = jane.db()
    assert fates(conn, k(jane.in_thread)) == ["created", "deleted"]
    conn.close()


def test_her_pds_throttling_a_blob_is_a_notice(commenter, http_waits):
    """Her reply carries an image, fetched from her PDS, which throttles for an hour: the reply is archived without
    the file, with a notice, and the account is captured; the next run fetches the file."""
    clinic, jane, pds = commenter
    image = make_png(4, 4, 7)
    reply = clinic.state.add_post(
        jane.did,
        "Is this normal?",
        created_at=NOW - timedelta(days=1),
        reply_to=clinic.posts[2]["uri"],
        images=[(image, "my rash")],
    )
    pds.faults.append(Fault(r"com\.atproto\.sync\.getBlob", status=429, headers={"Retry-After": "3600"}, times=FOREVER))
    code, output = clinic.run()
    assert code == 0, output
    host = pds.base_url.removeprefix("http://")
    assert notices(output) == [
        f"blob file from {host}: it throttles this archiver for longer than max_rate_limit_wait allows; kept the post "
        "without it, and the next run asks for it again"
    ]
    conn = clinic.db()
    assert versions(conn, reply) == 1
    assert conn.execute("SELECT count(*) FROM media_files").fetchone()[0] == 1  # the clinic's own image only
    conn.close()
    pds.faults.clear()
    code, output = clinic.run()
    assert code == 0, output
    conn = clinic.db()
    assert conn.execute("SELECT count(*) FROM media_files").fetchone()[0] == 2
    assert versions(conn, reply) == 1
    conn.close()


# -- answers that are not the record asked for ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("forged", "it answered another record than the one asked for"),
        ("odd", "it answered a record whose reply is not a pair of references"),
        ("html", "it answered something other than JSON"),
    ],
)
def test_an_answer_that_is_not_her_record_is_a_notice_and_archives_nothing(commenter, answer, why):
    """Her PDS answers the lookup of her reply with another account's record (Ann's reply elsewhere, its text made
    up), a record the parser cannot read, or an HTML page: nothing of it is archived, the reply is noted."""
    clinic, jane_account, pds = commenter
    old = clinic.state.add_post(clinic.clinic.did, "An old post", created_at=NOW - timedelta(days=30))
    ann = clinic.state.add_post(clinic.ann.did, "Thank you", created_at=NOW - timedelta(days=29), reply_to=old["uri"])
    jane = jane_on(clinic, jane_account, pds)
    rkey = jane.orphan["uri"].rsplit("/", 1)[1]
    bodies = {
        "forged": {**ann, "value": {**ann["value"], "text": "My MRN is 00482913, call me"}},
        "odd": {**jane.orphan, "value": {**jane.orphan["value"], "reply": "bogus"}},
    }
    body = json.dumps(bodies[answer]).encode() if answer in bodies else b"<html>Sign in</html>"
    pds.faults.append(Fault(rf"getRecord.*{rkey}", status=200, body=body))
    code, output = jane.run()
    assert code == 0, output
    assert [n for n in notices(output) if re.fullmatch(unread(jane, jane.orphan, f"{why} {WARC_RECORD}"), n)], output
    assert_kept_as_it_was(jane, jane.orphan, ann)
    conn = jane.db()
    assert conn.execute("SELECT text FROM items WHERE item_key = ?", (k(ann),)).fetchone()[0] == "Thank you"
    conn.close()


# -- (d) captures of before: revision 3 --------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [403, 503])
def test_runs_captured_before_replay_as_they_were_made(jane, monkeypatch, status):
    """A run captured at request revision 3, where her PDS's 403 (a request sent without credentials, refused) or 503
    ended the account, replays ending it the same way; the runs of today's revision, which note it and go on, replay
    too: `archiver rebuild` gives the live rows and `verify --replay` is clean."""
    jane.pds.faults.append(Fault(r"com\.atproto\.repo\.getRecord", status=status, times=FOREVER))
    with monkeypatch.context() as old:
        old.setattr(BlueskyConnector, "REQUEST_REVISION", MEDIA_FAILURES_NOTED)
        code, output = jane.run()
    assert code == 1, output
    # her server was asked without a credential: its 403 is no refused token to renew
    assert RENEW not in output and ("sent without credentials" in output) == (status == 403), output
    code, output = jane.run()  # today's revision: the same failure is a notice
    assert code == 0, output
    assert RENEW not in output and [n for n in notices(output) if "another server" in n]
    jane.pds.faults.clear()
    code, output = jane.run()
    assert code == 0, output
    newest = BlueskyConnector.REQUEST_REVISION
    assert newest > MEDIA_FAILURES_NOTED
    warcs = jane.clinic.tmp_path / "arch" / "warcs"
    assert recorded_revisions(warcs) == [
        {"bluesky": newest},
        {"bluesky": MEDIA_FAILURES_NOTED},
        *[{"bluesky": newest}] * 2,
    ]
    conn = jane.db()
    assert fates(conn, k(jane.in_thread)) == ["created", "deleted"]
    assert fates(conn, k(jane.orphan)) == ["created"]
    conn.close()
    rebuilt = assert_rebuild_equals(jane.clinic, jane.clinic.tmp_path / "rebuilt.db")
    statuses = [r[0] for r in rebuilt.execute("SELECT status FROM account_runs ORDER BY rowid")]
    rebuilt.close()
    assert statuses == ["ok", "failed", "ok", "ok"]
    result = verify_replay(jane.clinic.config())
    assert result.exit_code == 0, result.output


# -- a did:web, its document on her own https host ---------------------------------------------------------------------
@pytest.fixture
def web_commenter(tmp_path, monkeypatch, http_waits):
    """Jane as did:web:127.0.0.1%3A<port>: her DID document at https://127.0.0.1:<port>/.well-known/did.json, on her
    own server (a certificate requests is told to trust), which is her PDS too."""
    clinic = BskyClinic(tmp_path, monkeypatch)
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    pds = SampleBlueskyServer(clinic.state)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    pds._httpd.socket = context.wrap_socket(pds._httpd.socket, server_side=True)
    pds.start()
    base = f"https://127.0.0.1:{pds._httpd.server_address[1]}"
    did = f"did:web:{base.removeprefix('https://').replace(':', '%3A')}"
    jane = Account(did, "janedoe.example", "Jane Doe")
    clinic.state.accounts[did] = jane
    clinic.state.repos[did] = {}
    clinic.state.profiles[did] = {"$type": "app.bsky.actor.profile", "displayName": jane.display_name}
    service = {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": base}
    document = json.dumps({"id": did, "alsoKnownAs": [f"at://{jane.handle}"], "service": [service]}).encode()
    pds.faults.append(Fault(r"^/\.well-known/did\.json$", status=200, body=document, times=FOREVER))
    try:
        yield clinic, jane, pds, base
    finally:
        pds.stop()
        clinic.server.stop()


@pytest.mark.parametrize("status", [403, 503])
def test_her_did_web_document_refused_or_failing_is_a_notice(web_commenter, status):
    """Her did:web document's host answers 403 (or 503): the reply she deleted is noted, not deleted; her reply with
    an image, still in the thread, is not read again (without her PDS its blob's URL would differ, a new version out
    of nothing), with a notice; the account is captured. The next run decides."""
    clinic, jane, pds, base = web_commenter
    pictured = clinic.state.add_post(
        jane.did,
        "Is this normal?",
        created_at=NOW - timedelta(hours=22),
        reply_to=clinic.posts[2]["uri"],
        images=[(make_png(4, 4, 7), "my rash")],
    )
    commenter = jane_on(clinic, jane, pds, base)
    conn = commenter.db()
    assert conn.execute("SELECT count(*) FROM media_files").fetchone()[0] == 2  # hers came over https
    conn.close()
    pds.faults.insert(0, Fault(r"^/\.well-known/did\.json$", status=status, times=FOREVER))
    code, output = commenter.run()
    assert code == 0, output
    assert RENEW not in output
    why = rf"HTTP 403 {WARC_RECORD}" if status == 403 else rf"HTTP 503 after 4 attempt\(s\) {WARC_RECORD}"
    no_document = rf"its DID document on another server \({re.escape(commenter.host)}\) could not be read: {why}"
    for reply in (commenter.in_thread, commenter.orphan):
        expected = rf"{re.escape(reply['uri'])}: {no_document}{AGAIN}"
        assert [n for n in notices(output) if re.fullmatch(expected, n)], output
    again = rf"{re.escape(pictured['uri'])}: not read again this run: {no_document}; the next run reads it again"
    assert [n for n in notices(output) if re.fullmatch(again, n)], output
    documents = [p for _, p, _ in pds.requests_log if p == "/.well-known/did.json"]
    # Asked once by each run; the failing one retried it, then asked her server nothing more.
    assert len(documents) == 1 + (1 if status == 403 else 4)
    assert_kept_as_it_was(commenter, commenter.in_thread, commenter.orphan, pictured)
    del pds.faults[0]
    assert_resolved_next_run(commenter)
    assert_kept_as_it_was(commenter, pictured)
