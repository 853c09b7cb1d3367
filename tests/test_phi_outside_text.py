"""PHI outside an item's text: an attachment's alt text, a Mastodon content warning, a poll option, a link
preview. A real `archiver run` against the sample Mastodon server, with alerts to a webhook on loopback.

Such a flag has no span (its place is not in the text) and its reason says where it was found; one flag a
rule and version names every place, so a review decides it once and carries over like any other.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer
from archiver.demo.png import make_png
from archiver.items import AccountIdentity
from archiver.scan import parallel
from archiver.scan.archive import append_scan, build_detector
from archiver.scan.fields import parse_fields
from archiver.scan.parallel import VersionScanner
from archiver.store import Store

from .test_phi_alerts import Hooks
from .test_store import make_item

TOKEN = "outside-text-token-Hq42"
NOW = datetime.now(UTC).replace(microsecond=0)
PHI = "member ID XJH123456789, DOB 04/12/1971, MRN 00482913"
IDS = ["XJH123456789", "04/12/1971", "00482913"]
CATEGORIES = ["member-id", "dob", "mrn"]


@pytest.fixture
def clinic(tmp_path, monkeypatch):
    """Ann's replies to the clinic: PHI in the body, the alt text, a content warning, a poll and a link preview."""
    state = MastodonState()
    clinic = state.add_account("riverside", "Riverside Clinic")
    ann = state.add_account("ann", "Ann Patient")
    post = state.add_status(
        clinic["id"], "Questions about the billing portal? Reply here.", created_at=NOW - timedelta(hours=9)
    )
    at = iter(NOW - timedelta(hours=8 - n) for n in range(8))
    replies = {
        "body": state.add_status(ann["id"], f"Here is my {PHI}", in_reply_to_id=post["id"], created_at=next(at)),
        "alt": state.add_status(
            ann["id"], "Can you check this photo?", in_reply_to_id=post["id"], created_at=next(at),
            media=[(make_png(8, 6, 1), "Our lobby"), (make_png(8, 6, 2), f"Photo of my card: {PHI}")],
        ),
        "cw": state.add_status(
            ann["id"], "Question about my bill", in_reply_to_id=post["id"], created_at=next(at), spoiler_text=PHI
        ),
        "poll": state.add_status(ann["id"], "Which one is mine?", in_reply_to_id=post["id"], created_at=next(at)),
        "card": state.add_status(ann["id"], "See this page", in_reply_to_id=post["id"], created_at=next(at)),
        "both": state.add_status(
            ann["id"], "Two places", in_reply_to_id=post["id"], created_at=next(at),
            media=[(make_png(8, 6, 3), "MRN 00482913")], spoiler_text="MRN 00519377",
        ),
    }  # fmt: skip
    replies["poll"]["poll"] = {
        "id": "31",
        "expires_at": None,
        "expired": False,
        "multiple": False,
        "votes_count": 0,
        "options": [{"title": "the blue card", "votes_count": 0}, {"title": "MRN 00482913", "votes_count": 0}],
        "emojis": [],
    }
    replies["card"]["card"] = {
        "url": "https://portal.example/claims/77",
        "title": "Claim status",
        "description": "Claim for DOB 04/12/1971",
        "type": "link",
    }
    monkeypatch.setenv("OUTSIDE_TOKEN", TOKEN)
    with SampleMastodonServer(state, TOKEN, rate_limit=100_000) as server:
        hooks = Hooks()
        config = tmp_path / "archiver.toml"
        config.write_text(
            f"""[archive]
dir = "arch"
organisation = "Riverside Clinic"

[[accounts]]
name = "riverside-mastodon"
platform = "mastodon"
api_base = "{server.base_url}"
account = "@riverside"
token_env = "OUTSIDE_TOKEN"

[scan]
own_handles = ["riverside"]
workers = 0

[alerts]
datasette_url = "https://archive.clinic.test"
[alerts.webhook]
url = "{hooks.url}"
"""
        )
        host = server.base_url.split("//")[1]
        yield config, hooks, {name: f"mastodon:{host}:{status['id']}" for name, status in replies.items()}
        hooks.stop()


def db(config: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(config.parent / "arch" / "archive.db")
    conn.row_factory = sqlite3.Row
    return conn


def cli(config: Path, *args: str):
    return CliRunner().invoke(app, [*args, "--config", str(config)])


def test_alt_text_content_warnings_polls_and_link_previews_are_scanned_and_alerted(clinic):
    config, hooks, keys = clinic
    result = cli(config, "run", "--quiet")
    assert result.exit_code == 0, result.output
    conn = db(config)
    flags = conn.execute("SELECT * FROM flags WHERE category != 'consent' ORDER BY id").fetchall()
    by_item: dict[str, list[tuple]] = {}
    for f in flags:
        by_item.setdefault(f["item_key"], []).append((f["category"], f["span_start"], f["span_end"], f["matched"]))
    body = conn.execute("SELECT text FROM item_versions WHERE item_key = ?", (keys["body"],)).fetchone()[0]
    # in the text: spans into it, as before
    assert by_item[keys["body"]] == [
        (c, body.index(i), body.index(i) + len(i), i) for c, i in zip(CATEGORIES, IDS, strict=True)
    ]
    # outside it: no span, the matched value, one flag a rule
    outside = [(c, None, None, i) for c, i in zip(CATEGORIES, IDS, strict=True)]
    assert by_item[keys["alt"]] == outside
    assert by_item[keys["cw"]] == outside
    assert by_item[keys["poll"]] == [("mrn", None, None, "00482913")]
    assert by_item[keys["card"]] == [("dob", None, None, "04/12/1971")]
    assert by_item[keys["both"]] == [("mrn", None, None, "00482913 | 00519377")]
    assert len(by_item) == 6  # the clinic's own post, and its lobby photo, have none

    # the reason says where, in words, and never quotes what was found
    reasons = {f["item_key"]: f["reason"] for f in flags if f["category"] == "mrn"}
    assert reasons[keys["alt"]].endswith("(in the alt text of attachment 2)")
    assert reasons[keys["cw"]].endswith("(in the content warning)")
    assert reasons[keys["poll"]].endswith("(in poll option 2)")
    assert reasons[keys["both"]].endswith("(in the alt text of attachment 1, the content warning)")
    dob = next(f for f in flags if f["item_key"] == keys["card"])
    assert dob["reason"].endswith("(in the link preview's description)")
    assert not any(f["matched"].split(" | ")[0] in f["reason"] for f in flags)

    # alerted like any other: every high flag in the webhook, the alt text's among them, no PHI
    high = [f["id"] for f in flags if f["severity"] == "high"]
    [(_, payload)] = hooks.posts
    assert [f["flag_id"] for f in payload["flags"]] == high
    key_of = {f["id"]: f["item_key"] for f in flags}  # an alert names no item key (it may name the author)
    assert {key_of[f["flag_id"]] for f in payload["flags"]} >= {keys["alt"], keys["cw"], keys["poll"], keys["both"]}
    assert not any(key in json.dumps(payload) for key in keys.values())
    assert not any(phi in json.dumps(payload) for phi in [*IDS, "00519377", "my card"])

    # in the review queue with the reason; a review takes it out, the same rule elsewhere stays
    queue = {(r["item_key"], r["category"]): r for r in conn.execute("SELECT * FROM flag_queue")}
    alt_mrn = queue[(keys["alt"], "mrn")]
    assert alt_mrn["matched"] == "00482913" and "alt text of attachment 2" in alt_mrn["reason"]
    reviewed = cli(config, "review", str(alt_mrn["flag_id"]), "--decision", "violation", "--reviewer", "Pat Reviewer")
    assert reviewed.exit_code == 0, reviewed.output
    left = {(r["item_key"], r["category"]) for r in conn.execute("SELECT * FROM flag_queue")}
    assert (keys["alt"], "mrn") not in left and (keys["cw"], "mrn") in left and (keys["alt"], "dob") in left

    # a rescan with the same rules appends nothing; the next run finds nothing new to alert
    count = len(flags)
    rescan = cli(config, "scan", "--all")
    assert rescan.exit_code == 0, rescan.output
    assert conn.execute("SELECT count(*) FROM flags WHERE category != 'consent'").fetchone()[0] == count
    assert cli(config, "run", "--quiet").exit_code == 0
    assert len(hooks.posts) == 1
    conn.close()


def test_a_decision_carries_over_to_a_rescans_copy_of_a_hit_outside_the_text(clinic, tmp_path):
    config, _, keys = clinic
    assert cli(config, "run", "--quiet").exit_code == 0
    conn = db(config)
    flag = conn.execute("SELECT id FROM flags WHERE item_key = ? AND category = 'mrn'", (keys["cw"],)).fetchone()[0]
    assert cli(config, "review", str(flag), "--decision", "false-positive", "--reviewer", "Pat").exit_code == 0
    rules = tmp_path / "ours.yml"
    rules.write_text('version: "ours-2"\nlexicons:\n  conditions: [zzyzx syndrome]\n')
    config.write_text(config.read_text().replace("workers = 0", f'workers = 0\nrule_files = ["{rules}"]'))
    assert cli(config, "scan", "--all").exit_code == 0
    again = conn.execute(
        "SELECT decision, current FROM flag_status WHERE item_key = ? AND category = 'mrn' ORDER BY flag_id",
        (keys["cw"],),
    ).fetchall()
    assert [tuple(r) for r in again] == [("false-positive", 0), ("false-positive", 1)]
    conn.close()


def test_fields_outside_the_text_of_each_platform():
    media = json.dumps([{"description": "Lobby"}, {"description": None}, {"description": "same as the text"}])
    assert parse_fields("x", "same as the text", media, "{}") == [("the alt text of attachment 1", "Lobby")]
    facebook = {
        "message": "Our new wing",
        "attachments": {"data": [
            {"type": "share", "title": "Patient portal", "description": "Sign in with your MRN"},
            {"type": "album", "title": "Album", "subattachments": {"data": [
                {"type": "photo", "description": "Our new wing", "media": {"image": {"src": "u"}}},
            ]}},
        ]},
    }  # fmt: skip
    assert parse_fields("facebook", "Our new wing", "[]", json.dumps(facebook)) == [
        ("the link preview's title", "Patient portal"),
        ("the link preview's description", "Sign in with your MRN"),
        ("the attachment's title", "Album"),
    ]
    comment = {"attachment": {"type": "share", "title": "A page"}}
    assert parse_fields("facebook", "", "[]", json.dumps(comment)) == [("the link preview's title", "A page")]
    linkedin = {
        "content": {
            "article": {"source": "https://a.example", "title": "Story", "description": "About Ann"},
            "poll": {"question": "Which?", "options": [{"text": "One"}, {"text": "Two"}]},
        }
    }
    assert parse_fields("linkedin", "", "[]", json.dumps(linkedin)) == [
        ("the article preview's title", "Story"),
        ("the article preview's description", "About Ann"),
        ("the poll question", "Which?"),
        ("poll option 1", "One"),
        ("poll option 2", "Two"),
    ]
    external = {"$type": "app.bsky.embed.external", "external": {"uri": "https://a", "title": "T", "description": "D"}}
    bluesky = {"record": {"embed": {"$type": "app.bsky.embed.recordWithMedia", "media": external}}}
    assert parse_fields("bluesky", "", "[]", json.dumps(bluesky)) == [
        ("the link preview's title", "T"),
        ("the link preview's description", "D"),
    ]
    # a shape not as documented is nothing more to read, never an error
    assert parse_fields("mastodon", "t", "[1]", '{"poll": [1], "card": "x", "spoiler_text": 3}') == []


def test_workers_append_the_same_flags_outside_the_text_as_one_process(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "BATCH", 7)
    texts = [f"MRN 0048{n:04d}" if n % 3 else f"my mother has diabetes, DOB 04/12/19{n % 90 + 10}" for n in range(60)]
    stores = []
    for name in ("alone", "together"):
        store = Store.open(tmp_path / f"{name}.db")
        store.append_run("run1", "host", "0" * 64, ["a"])
        store.append_account_identity("a", "mastodon", "https://h", AccountIdentity("1"), "run1")
        with store.transaction():
            for n, text in enumerate(texts):
                raw = {"id": str(n), "content": "", "spoiler_text": text, "poll": {"options": [{"title": text[:9]}]}}
                media = ({"id": "m", "type": "image", "url": f"https://h/{n}.png", "description": f"{text} (alt)"},)
                author = "1" if n % 2 else "2"  # half by the account itself
                item = make_item(
                    "",
                    item_key=f"mastodon:h:{n}",
                    native_id=str(n),
                    kind="message",
                    raw=raw,
                    media=media,
                    author_id=author,
                )
                store.append_item("a", item, "run1")
        stores.append(store)
    detector = build_detector(None)
    try:
        append_scan(stores[0], detector, mode="new")
        scanner = VersionScanner(stores[1].conn, stores[1].path, detector, 1, workers=2, parallel_from=0)
        append_scan(stores[1], detector, mode="new", scanner=scanner)
        assert scanner.done_by_workers > 0
        fields = "version_id, rule_id, category, severity, span_start, span_end, matched, reason"
        alone, together = (s.conn.execute(f"SELECT {fields} FROM flags ORDER BY id").fetchall() for s in stores)
        assert alone == together and len(alone) > 60
        assert all(row[4] is None for row in alone)
    finally:
        for store in stores:
            store.close()
