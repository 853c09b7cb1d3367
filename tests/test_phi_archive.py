"""Flags in a real archive: the built-in demo (a sample Mastodon server on loopback, archived twice) is
scanned at the end of each run; rescans, reviews, append-only and tamper evidence, and the review queue
served by a real Datasette process."""

from __future__ import annotations

import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from archiver.checkpoints import PUBLIC_KEY
from archiver.cli import app
from archiver.verify import verify_archive

from .test_ledger import behind_the_back
from .workspace_server import free_port, wait_until_serving

EXTRA_RULES = """\
version: ours-1
patterns:
  - id: ours.greeting
    category: policy-greeting
    severity: low
    reason: the clinic's standard reply (to count them)
    regex: 'Thanks for reaching out'
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_template) -> Path:
    return demo_template.copy_to(tmp_path_factory.mktemp("phi-demo") / "demo")


@pytest.fixture
def copy(demo, tmp_path) -> Path:
    shutil.copytree(demo, tmp_path / "demo")
    return tmp_path / "demo"


def db(directory: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(directory / "archive" / "archive.db")
    conn.row_factory = sqlite3.Row
    return conn


def cli(directory: Path, *args: str, env: dict | None = None):
    return CliRunner().invoke(app, [*args, "--config", str(directory / "archiver.toml")], env=env)


def problems(directory: Path) -> list[str]:
    arch = directory / "archive"
    return [str(p) for p in verify_archive(arch / "archive.db", arch / "warcs", arch / "keys" / PUBLIC_KEY)]


def test_each_run_scans_its_new_versions_and_flags_the_phi(demo):
    conn = db(demo)
    runs = [r["id"] for r in conn.execute("SELECT id FROM runs ORDER BY started_at")]
    scans = [dict(r) for r in conn.execute("SELECT * FROM scan_runs ORDER BY id")]
    last_version = conn.execute("SELECT max(id) FROM item_versions").fetchone()[0]
    # one scan per run, each over the versions that run appended, together covering every version once
    assert [s["run_id"] for s in scans] == runs
    assert scans[0]["from_version_id"] == 1
    assert scans[1]["from_version_id"] == scans[0]["to_version_id"] + 1
    assert scans[1]["to_version_id"] == last_version
    assert sum(s["versions_scanned"] for s in scans) == last_version
    assert all(s["mode"] == "new" for s in scans) and len({s["rules_version"] for s in scans}) == 1
    flags = conn.execute(
        "SELECT f.*, v.text, v.run_id AS version_run FROM flags f JOIN item_versions v ON v.id = f.version_id"
        " WHERE f.category != 'consent'"  # the consent check's flags share the table (archiver/consent)
    ).fetchall()
    assert sum(s["flags_added"] for s in scans) == len(flags) > 0
    for flag in flags:
        assert flag["text"][flag["span_start"] : flag["span_end"]] == flag["matched"]
        assert flag["run_id"] == flag["version_run"]
        assert flag["matched"] not in flag["reason"]
    found = {f["category"] for f in flags}
    assert {"mrn", "dob", "phone", "account-number", "health-self", "health-relative"} <= found
    # the sample's PHI replies and DMs are all flagged
    for text in (
        "my MRN is 00482913",
        "My DOB is 03/14/1985",
        "call me back at 555-201-7734",
        "My mother was diagnosed with type 2 diabetes",
        "I'm HIV positive",
    ):
        rows = conn.execute(
            "SELECT count(*) FROM item_versions v WHERE instr(v.text, ?) > 0 AND NOT EXISTS "
            "(SELECT 1 FROM flags f WHERE f.version_id = v.id AND f.category != 'consent')",
            (text,),
        ).fetchone()[0]
        present = conn.execute("SELECT count(*) FROM item_versions WHERE instr(text, ?) > 0", (text,)).fetchone()[0]
        assert present and rows == 0, text
    # the clinic's own number (allow-listed in the demo config) and its posts are not
    assert conn.execute("SELECT count(*) FROM flags WHERE matched LIKE '%555-0100%'").fetchone()[0] == 0
    assert (
        conn.execute(
            "SELECT count(*) FROM flags f JOIN item_versions v ON v.id = f.version_id"
            " WHERE v.kind = 'post' AND f.category != 'consent'"
        ).fetchone()[0]
        == 0
    )


def test_the_run_summary_reports_the_scan(demo_template):
    notices = [n for run in demo_template.notices for n in run if n.startswith("PHI scan")]
    assert len(notices) == 2 and "new flags" in notices[0]


def test_rescan_with_unchanged_rules_appends_nothing_and_a_rule_change_appends_new_flags(copy):
    conn = db(copy)
    before = conn.execute("SELECT count(*) FROM flags WHERE category != 'consent'").fetchone()[0]
    old_version = conn.execute("SELECT rules_version FROM scan_runs").fetchone()[0]
    conn.close()

    result = cli(copy, "scan", "--all")
    assert result.exit_code == 0, result.output
    assert "0 new flags" in result.output
    result = cli(copy, "scan")
    assert result.exit_code == 0 and "0 versions, 0 new flags" in result.output

    (copy / "ours.yml").write_text(EXTRA_RULES, "utf-8")
    config = copy / "archiver.toml"
    config.write_text(config.read_text().replace("[scan]\n", '[scan]\nrule_files = ["ours.yml"]\n'), "utf-8")
    result = cli(copy, "scan", "--all")
    assert result.exit_code == 0, result.output
    conn = db(copy)
    new_version = conn.execute("SELECT rules_version FROM scan_runs ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert new_version != old_version and "+ours-1+" in new_version
    greetings = conn.execute(
        "SELECT count(*) FROM item_versions WHERE instr(text, 'Thanks for reaching out') > 0"
    ).fetchone()[0]
    by_version = dict(
        conn.execute(
            "SELECT rules_version, count(*) FROM flags WHERE category != 'consent' GROUP BY rules_version"
        ).fetchall()
    )
    # every earlier hit found again under the new version, plus the new rule's, and the old flags untouched
    assert by_version == {old_version: before, new_version: before + greetings}
    assert conn.execute("SELECT count(*) FROM flags WHERE rule_id = 'ours.greeting'").fetchone()[0] == greetings > 0
    # the queue shows only the current version's flags
    queued = conn.execute("SELECT DISTINCT rules_version FROM flag_queue WHERE category != 'consent'")
    assert {r[0] for r in queued} == {new_version}
    conn.close()
    assert problems(copy) == []


def test_reviews_are_appended_with_the_reviewer_and_shape_the_queue(copy):
    conn = db(copy)
    queue = [r["flag_id"] for r in conn.execute("SELECT flag_id FROM flag_queue")]
    first, second, third = queue[:3]
    conn.close()

    result = cli(copy, "review", str(first), "--decision", "violation", "--note", "asked the author to delete")
    assert result.exit_code == 0, result.output
    assert f"flag {first} violation by" in result.output
    result = cli(copy, "review", str(second), "--decision", "escalated", "--reviewer", "Pat Privacy")
    assert result.exit_code == 0, result.output
    result = cli(
        copy, "review", str(third), "-d", "false-positive", "-n", "a public number", env={"ARCHIVER_REVIEWER": "Lee"}
    )
    assert result.exit_code == 0, result.output
    result = cli(copy, "review", str(second), "--decision", "violation", "--reviewer", "Chief Privacy Officer")
    assert result.exit_code == 0, result.output

    conn = db(copy)
    reviews = [tuple(r) for r in conn.execute("SELECT flag_id, decision, reviewer, note FROM flag_reviews ORDER BY id")]
    assert reviews[1:] == [
        (second, "escalated", "Pat Privacy", None),
        (third, "false-positive", "Lee", "a public number"),
        (second, "violation", "Chief Privacy Officer", None),
    ]
    assert reviews[0][:2] == (first, "violation") and reviews[0][2] and reviews[0][3] == "asked the author to delete"
    open_now = {r["flag_id"]: r["status"] for r in conn.execute("SELECT flag_id, status FROM flag_queue")}
    assert first not in open_now and second not in open_now and third not in open_now
    assert len(open_now) == len(queue) - 3
    reviewed = [(r["flag_id"], r["decision"]) for r in conn.execute("SELECT * FROM reviewed_flags")]
    assert reviewed == [(second, "violation"), (third, "false-positive"), (second, "escalated"), (first, "violation")]
    conn.close()

    # an escalated flag stays in the queue, marked
    fourth = queue[3]
    assert cli(copy, "review", str(fourth), "--decision", "escalated").exit_code == 0
    conn = db(copy)
    assert conn.execute("SELECT status FROM flag_queue WHERE flag_id = ?", (fourth,)).fetchone()[0] == "escalated"
    conn.close()
    assert problems(copy) == []


def test_a_decision_carries_over_to_the_same_hit_after_a_rescan(copy):
    conn = db(copy)
    flag = conn.execute(
        "SELECT flag_id, version_id, rule_id FROM flag_queue WHERE category != 'consent' LIMIT 1"
    ).fetchone()
    conn.close()
    assert cli(copy, "review", str(flag["flag_id"]), "--decision", "false-positive").exit_code == 0
    (copy / "ours.yml").write_text(EXTRA_RULES, "utf-8")
    config = copy / "archiver.toml"
    config.write_text(config.read_text().replace("[scan]\n", '[scan]\nrule_files = ["ours.yml"]\n'), "utf-8")
    assert cli(copy, "scan", "--all").exit_code == 0
    conn = db(copy)
    copies = conn.execute(
        "SELECT id FROM flags WHERE version_id = ? AND rule_id = ? AND id != ?",
        (flag["version_id"], flag["rule_id"], flag["flag_id"]),
    ).fetchall()
    assert copies  # the rescan found the hit again ...
    for (copy_id,) in copies:  # ... and the queue knows it was decided
        assert conn.execute("SELECT count(*) FROM flag_queue WHERE flag_id = ?", (copy_id,)).fetchone()[0] == 0
    conn.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["review", "1", "--decision", "maybe"],
            "--decision 'maybe': must be one of violation, false-positive, escalated",
        ),
        (["review", "999999", "--decision", "violation"], "flag 999999: no such flag"),
        (["review", "1", "--decision", "violation", "--reviewer", " "], "--reviewer: empty"),
    ],
)
def test_bad_review_is_exit_2_and_appends_nothing(copy, args, message):
    before = db(copy).execute("SELECT count(*) FROM ledger").fetchone()[0]
    result = cli(copy, *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert db(copy).execute("SELECT count(*) FROM ledger").fetchone()[0] == before


def test_flags_and_reviews_cannot_be_changed_and_a_change_behind_the_triggers_is_caught(copy):
    assert cli(copy, "review", "1", "--decision", "violation").exit_code == 0
    conn = db(copy)
    for statement in (
        "UPDATE flags SET severity = 'low'",
        "DELETE FROM flags",
        "UPDATE flag_reviews SET decision = 'false-positive'",
        "DELETE FROM flag_reviews",
        "DELETE FROM scan_runs",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
    conn.close()
    assert problems(copy) == []
    behind_the_back(
        copy / "archive" / "archive.db", "UPDATE flags SET matched = 'nothing', severity = 'low' WHERE id = 2"
    )
    behind_the_back(copy / "archive" / "archive.db", "DELETE FROM flag_reviews WHERE id = 1")
    found = problems(copy)
    assert any(p.startswith("flags id=2: row changed since ledger seq") for p in found), found
    assert any(p.startswith("flag_reviews id=1: row entered at ledger seq") for p in found), found


def test_a_bad_rule_file_is_exit_2_for_scan_and_appends_nothing(copy):
    (copy / "ours.yml").write_text("patterns: [{id: x, category: c, severity: high, reason: r, regex: '(oops'}]\n")
    config = copy / "archiver.toml"
    config.write_text(config.read_text().replace("[scan]\n", '[scan]\nrule_files = ["ours.yml"]\n'), "utf-8")
    before = db(copy).execute("SELECT count(*) FROM ledger").fetchone()[0]
    result = cli(copy, "scan", "--all")
    assert result.exit_code == 2
    assert "ours.yml: patterns[0] (x).regex: not a valid regular expression" in result.output
    assert db(copy).execute("SELECT count(*) FROM ledger").fetchone()[0] == before


def test_the_review_queue_and_reviews_over_real_http(copy):
    conn = db(copy)
    flag_id = conn.execute(
        "SELECT flag_id FROM flag_queue WHERE severity = 'high' AND category != 'consent' LIMIT 1"
    ).fetchone()[0]
    conn.close()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "archiver.cli", "serve", "--config", str(copy / "archiver.toml"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, process, "/-/versions.json")

        def rows(path: str, **params) -> list[dict]:
            response = requests.get(f"{base}/archive/{path}.json", params={"_shape": "objects", **params}, timeout=10)
            assert response.status_code == 200, response.text
            return response.json()["rows"]

        queue = rows("flag_queue", _size="max", category__not="consent")
        assert queue and queue[0]["severity"] == "high"
        assert any(r["flag_id"] == flag_id and r["status"] == "open" for r in queue)
        assert all(r["matched"] and r["matched"] in r["text"] for r in queue)
        assert rows("flag_review_queue", severity="high")[0]["severity"] == "high"
        item_key = queue[0]["item_key"]
        assert queue[0]["flag_id"] in {r["flag_id"] for r in rows("flags_of_item", item_key=item_key)}
        # a review appended while Datasette serves shows up at once (read-only, never cached)
        assert cli(copy, "review", str(flag_id), "--decision", "violation", "--note", "removed").exit_code == 0
        assert not any(r["flag_id"] == flag_id for r in rows("flag_queue", _size="max", category__not="consent"))
        reviewed = rows("reviewed_flags")
        assert reviewed[0]["flag_id"] == flag_id and reviewed[0]["decision"] == "violation"
        assert reviewed[0]["note"] == "removed" and reviewed[0]["reviewer"]
        # the single flag link the alerts send
        assert [r["flag_id"] for r in rows("flag_queue", flag_id=str(queue[1]["flag_id"]))] == [queue[1]["flag_id"]]
        # and the view stays read-only
        response = requests.post(f"{base}/archive/-/query", data={"sql": "DELETE FROM flags"}, timeout=10)
        assert response.status_code >= 400
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "Traceback" not in output, output
    assert db(copy).execute("SELECT count(*) FROM flags").fetchone()[0] > 0


def test_a_review_records_the_account_that_made_it_beside_the_name_given(copy):
    """--reviewer is whatever was typed, and $LOGNAME too: the effective uid's account is recorded beside it,
    with SUDO_USER marked as the environment's claim."""
    conn = db(copy)
    first, second = (r[0] for r in conn.execute("SELECT flag_id FROM flag_queue LIMIT 2"))
    conn.close()
    env = {"LOGNAME": "chief.privacy.officer", "USER": "chief.privacy.officer", "SUDO_USER": "dana"}
    given = cli(copy, "review", str(first), "-d", "violation", "--reviewer", "Chief Privacy Officer", env=env)
    default = cli(copy, "review", str(second), "-d", "false-positive", env={**env, "ARCHIVER_REVIEWER": ""})
    assert given.exit_code == 0 and default.exit_code == 0, (given.output, default.output)
    account = pwd.getpwuid(os.geteuid()).pw_name
    recorded = f"{account} (uid {os.geteuid()}), SUDO_USER dana (claimed by the environment, not proof)"
    conn = db(copy)
    rows = conn.execute(
        "SELECT flag_id, reviewer, recorded_by FROM reviewed_flags WHERE flag_id IN (?, ?) ORDER BY review_id",
        (first, second),
    ).fetchall()
    conn.close()
    assert [tuple(r) for r in rows] == [(first, "Chief Privacy Officer", recorded), (second, account, recorded)]
    assert problems(copy) == []
