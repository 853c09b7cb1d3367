"""Alerts after a run, to a real SMTP server (aiosmtpd) and a real webhook receiver on loopback: the new
high-severity flags with links into Datasette, and none of the PHI itself; a failing channel is a notice."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from typer.testing import CliRunner

from archiver.cli import app
from archiver.demo.mastodon_server import SampleMastodonServer
from archiver.demo.sample_data import build_clinic_dataset
from archiver.scan.alerts import ALERT_LISTED, shown_webhook

from .test_config import DISABLED
from .workspace_server import free_port

TOKEN = "alerts-test-token-Zq81"
SMTP_PASSWORD = "smtp-pass-Kx93-secret"
WEBHOOK_TOKEN = "hook-token-Ty55-secret"
DATASETTE = "https://archive.clinic.test:8443"


class Mailbox:
    """An aiosmtpd handler keeping every message, and an authenticator checking the configured password."""

    def __init__(self):
        self.messages: list[Message] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(message_from_bytes(envelope.original_content))
        return "250 OK"

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
            return AuthResult(success=auth_data.password.decode() == SMTP_PASSWORD)
        return AuthResult(success=False)


class Hooks:
    """A webhook receiver: every POST's headers and JSON body."""

    def __init__(self):
        self.posts: list[tuple[dict, dict]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's hook name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hooks.posts.append((dict(self.headers), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/privacy"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def alerts_toml(smtp_port: int, hook_url: str) -> str:
    """Both channels, the e-mail's with a login, the webhook's with a bearer token (secrets from ENV)."""
    return f"""\
[alerts]
datasette_url = "{DATASETTE}/"

[alerts.email]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
username = "archiver"
password_env = "ALERT_TEST_SMTP_PASSWORD"
from = "archiver@clinic.test"
to = ["privacy@clinic.test", "security@clinic.test"]

[alerts.webhook]
url = "{hook_url}"
token_env = "ALERT_TEST_HOOK_TOKEN"
"""


def write_config(directory: Path, api_base: str, smtp_port: int, hook_url: str, extra_scan: str = "") -> Path:
    path = directory / "archiver.toml"
    path.write_text(
        f"""\
[archive]
dir = "arch"
organisation = "Riverside Community Clinic"

[[accounts]]
name = "riverside-mastodon"
platform = "mastodon"
api_base = "{api_base}"
account = "@riverside"
token_env = "ALERT_TEST_TOKEN"

[scan]
own_handles = ["riverside"]
own_phones = ["555-0100"]
{extra_scan}

{alerts_toml(smtp_port, hook_url)}""",
        "utf-8",
    )
    return path


ENV = {"ALERT_TEST_TOKEN": TOKEN, "ALERT_TEST_SMTP_PASSWORD": SMTP_PASSWORD, "ALERT_TEST_HOOK_TOKEN": WEBHOOK_TOKEN}


def run(config: Path):
    return CliRunner().invoke(app, ["run", "--config", str(config), "--json"], env=ENV)


@pytest.fixture(scope="module")
def clinic():
    state, _ = build_clinic_dataset(datetime.now(UTC))
    with SampleMastodonServer(state, TOKEN, rate_limit=100_000) as server:
        yield server


@pytest.fixture
def channels():
    mailbox = Mailbox()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), authenticator=mailbox, auth_require_tls=False
    )
    controller.start()
    hooks = Hooks()
    yield mailbox, controller.port, hooks
    controller.stop()
    hooks.stop()


def test_new_high_flags_are_mailed_and_posted_with_links_and_without_phi(tmp_path, clinic, channels):
    mailbox, smtp_port, hooks = channels
    config = write_config(tmp_path, clinic.base_url, smtp_port, hooks.url)
    result = run(config)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)

    conn = sqlite3.connect(tmp_path / "arch" / "archive.db")
    conn.row_factory = sqlite3.Row
    high = conn.execute("SELECT * FROM flags WHERE severity = 'high' ORDER BY id").fetchall()
    others = conn.execute("SELECT * FROM flags WHERE severity != 'high'").fetchall()
    flagged_versions = conn.execute(
        "SELECT v.text, v.author_handle FROM item_versions v WHERE v.id IN (SELECT version_id FROM flags)"
    ).fetchall()
    assert high and others  # there is something to leave out
    assert len(high) > ALERT_LISTED  # and more high flags than an alert names
    listed, unlisted = high[:ALERT_LISTED], high[ALERT_LISTED:]

    assert mailbox.logins == [("archiver", SMTP_PASSWORD)]
    [mail] = mailbox.messages
    assert mail["To"] == "privacy@clinic.test, security@clinic.test"
    assert mail["Subject"] == f"[archiver] {len(high)} new high-severity PHI flag(s)"
    body = mail.get_payload(decode=True).decode().replace("\r\n", "\n")
    assert f"{DATASETTE}/archive/flag_queue\n" in body
    for flag in listed:
        assert f"flag {flag['id']}: high {flag['category']} ({flag['rule_id']})" in body
        assert f"{DATASETTE}/archive/flag_queue?flag_id={flag['id']}" in body
        assert f"{DATASETTE}/archive/item_versions/{flag['version_id']}" in body
        assert flag["item_key"] not in body  # a key may name the author (a Bluesky AT URI holds their DID)
    for flag in [*unlisted, *others]:
        assert f"flag {flag['id']}:" not in body
    assert f"... and {len(unlisted)} more: see the queue ({DATASETTE}/archive/flag_queue)" in body

    [(headers, payload)] = hooks.posts
    assert headers["Authorization"] == f"Bearer {WEBHOOK_TOKEN}"
    assert headers["Content-Type"] == "application/json"
    assert payload["count"] == len(high) and payload["run_id"] == summary["run_id"]
    assert [f["flag_id"] for f in payload["flags"]] == [f["id"] for f in listed]
    assert payload["listed"] == ALERT_LISTED
    assert payload["flags"][0] == {
        "flag_id": high[0]["id"],
        "severity": "high",
        "category": high[0]["category"],
        "rule_id": high[0]["rule_id"],
        "reason": high[0]["reason"],
        "version_id": high[0]["version_id"],
        "flag_url": f"{DATASETTE}/archive/flag_queue?flag_id={high[0]['id']}",
        "version_url": f"{DATASETTE}/archive/item_versions/{high[0]['version_id']}",
    }

    # no PHI in either message: not the matched text, not the item's text, not its author
    hook_text = json.dumps(payload)
    for message in (body, hook_text, mail["Subject"]):
        for flag in [*high, *others]:
            assert flag["matched"] not in message, flag["matched"]
        for version in flagged_versions:
            assert version["text"] not in message
            assert f"@{version['author_handle']}" not in message and f'"{version["author_handle"]}"' not in message
    for phi in ("00482913", "03/14/1985", "555-201-7734", "HIV", "diabetes", "chemo"):
        assert phi not in body and phi not in hook_text

    # the run's summary says where the alerts went, and no secret is printed anywhere
    assert any(n.startswith("alert e-mail sent to privacy@clinic.test") for n in summary["notices"])
    assert any(n.startswith(f"alert webhook {shown_webhook(hooks.url)} answered 204") for n in summary["notices"])
    assert not any(urlsplit(hooks.url).path in n for n in summary["notices"])  # chat webhooks' secret is there
    for secret in (SMTP_PASSWORD, WEBHOOK_TOKEN, TOKEN):
        assert secret not in result.output
        assert secret not in body and secret not in hook_text

    # the next run finds nothing new: no alert
    result = run(config)
    assert result.exit_code == 0, result.output
    assert len(mailbox.messages) == 1 and len(hooks.posts) == 1


def test_a_failing_channel_is_a_notice_and_the_run_still_succeeds(tmp_path, clinic, channels):
    _, _, hooks = channels
    closed = free_port()  # nothing listens there
    config = write_config(tmp_path, clinic.base_url, closed, hooks.url)
    result = run(config)
    assert result.exit_code == 0, result.output
    notices = json.loads(result.stdout)["notices"]
    assert any(n.startswith(f"alert e-mail via 127.0.0.1:{closed} failed:") for n in notices), notices
    assert len(hooks.posts) == 1  # the other channel still got it
    assert SMTP_PASSWORD not in result.output


def test_a_bad_rule_file_fails_the_run_keeps_its_captures_and_a_later_scan_alerts_the_flags(tmp_path, clinic, channels):
    mailbox, smtp_port, hooks = channels
    (tmp_path / "ours.yml").write_text(
        "context: [{id: y, category: c, severity: high, reason: r, anchor: self, terms: [nosuch]}]\n"
    )
    config = write_config(tmp_path, clinic.base_url, smtp_port, hooks.url, 'rule_files = ["ours.yml"]')
    result = run(config)
    assert result.exit_code == 1, result.output  # every account captured, but the scan and the check failed
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed" and all(a["status"] == "ok" for a in summary["accounts"])
    notices = summary["notices"]
    assert any("PHI scan failed: " in n and "ours.yml: context[0] (y): names lexicon 'nosuch'" in n for n in notices)
    assert any(n.startswith("consent check failed: ") for n in notices)
    conn = sqlite3.connect(tmp_path / "arch" / "archive.db")
    assert conn.execute("SELECT count(*) FROM item_versions").fetchone()[0] > 0
    assert conn.execute("SELECT count(*) FROM flags").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 1
    assert conn.execute("SELECT status FROM run_results").fetchone()[0] == "failed"
    assert mailbox.messages == [] and hooks.posts == []
    # once fixed, `archiver scan` reads the versions the run could not, and alerts their flags
    (tmp_path / "ours.yml").write_text("version: fixed\n")
    result = CliRunner().invoke(app, ["scan", "--config", str(config)], env=ENV)
    assert result.exit_code == 0, result.output
    high = [r[0] for r in conn.execute("SELECT id FROM flags WHERE severity = 'high' ORDER BY id")]
    assert high
    [mail] = mailbox.messages
    assert mail["Subject"] == f"[archiver] {len(high)} new high-severity PHI flag(s)"
    [(_, payload)] = hooks.posts
    assert payload["count"] == len(high) and payload["run_id"] is None
    assert f"alert e-mail sent to privacy@clinic.test, security@clinic.test ({len(high)} flags)" in result.output
    # the next run finds them delivered
    assert run(config).exit_code == 0
    assert len(mailbox.messages) == 1 and len(hooks.posts) == 1


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('[alerts]\nseverity = "urgent"', "alerts.severity: 'urgent' is not one of low, medium, high"),
        ('[alerts.email]\nsmtp_host = "mail"\nto = ["a@b.c"]', "alerts.email: 'from' is a required property"),
        ('[alerts.webhook]\nurl = "ftp://x"', "alerts.webhook.url: 'ftp://x' is not valid"),
        ('[scan]\nown_phone = ["1"]', "scan: unknown key own_phone"),
    ],
)
def test_a_bad_alerts_or_scan_section_is_exit_2_naming_the_field(tmp_path, section, message):
    path = tmp_path / "archiver.toml"
    path.write_text(f'[archive]\ndir = "arch"\n{DISABLED}{section}\n', "utf-8")
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert not (tmp_path / "arch").exists()


def test_a_failed_account_is_announced_on_every_channel_without_its_token(tmp_path, clinic, channels, http_waits):
    mailbox, smtp_port, hooks = channels
    config = write_config(tmp_path, clinic.base_url, smtp_port, hooks.url)
    broken = '[[accounts]]\nname = "clinic-gone"\nplatform = "mastodon"\napi_base = "http://127.0.0.1:9"\n'
    broken += 'account = "@riverside"\ntoken_env = "ALERT_TEST_TOKEN"\n\n[scan]'
    config.write_text(config.read_text().replace("[scan]", broken, 1))
    result = run(config)
    assert result.exit_code == 1, result.output
    assert http_waits  # the refused connection was retried, after back-off waits
    failure = [body for _, body in hooks.posts if body.get("event") == "run-failed"]
    assert len(failure) == 1 and failure[0]["count"] == 1
    (account,) = failure[0]["accounts"]
    assert account["account"] == "clinic-gone" and account["platform"] == "mastodon"
    assert "ConnectionError" in account["error"] or "cannot" in account["error"]
    subjects = [m["Subject"] for m in mailbox.messages]
    assert any(s.endswith(": 1 account(s) failed") for s in subjects), subjects
    text = "".join(m.get_payload(decode=True).decode() for m in mailbox.messages) + json.dumps(hooks.posts)
    assert TOKEN not in text and SMTP_PASSWORD not in text


def test_a_large_alert_names_the_most_severe_and_counts_the_rest(tmp_path, channels, monkeypatch):
    """A first run over a large archive can add thousands of flags: the scan keeps a bounded list of them
    (ALERT_LISTED of each severity), and an alert names the most severe, oldest first, and counts the rest."""
    from archiver.config import load_config
    from archiver.scan.alerts import send_flags
    from archiver.scan.archive import ScanOutcome

    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    mailbox, smtp_port, hooks = channels
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9", smtp_port, hooks.url))
    outcome = ScanOutcome(1, "rules-1", "new", 1200)
    all_flags = []
    for n, severity in enumerate(["medium", "high", "low"] * 400, start=1):
        flag = {"id": n, "version_id": n, "item_key": f"x:{n}", "rule_id": "r", "category": "c", "reason": "why"}
        all_flags.append({**flag, "severity": severity})
        outcome.add_flag(all_flags[-1])
    assert outcome.flags_added == 1200 and len(outcome.flags) == 3 * ALERT_LISTED
    assert "1200 new flags (400 high)" in outcome.summary()

    owed = [flag for flag in all_flags if flag["severity"] == "high"]  # what the channels owe (scan/delivery.py)
    answers = [send_flags(config, channel, owed, "run-1") for channel in ("email", "webhook")]
    assert all(a.sent and "400 flags" in a.notice for a in answers), answers
    high_ids = list(range(2, 1201, 3))
    [(_, payload)] = hooks.posts
    assert payload["count"] == 400 and payload["listed"] == ALERT_LISTED
    assert [f["flag_id"] for f in payload["flags"]] == high_ids[:ALERT_LISTED]
    [mail] = mailbox.messages
    body = mail.get_payload(decode=True).decode()
    assert mail["Subject"] == "[archiver] 400 new high-severity PHI flag(s)"
    assert f"flag {high_ids[ALERT_LISTED - 1]}: high" in body and f"flag {high_ids[ALERT_LISTED]}:" not in body
    assert f"... and {400 - ALERT_LISTED} more: see the queue ({DATASETTE}/archive/flag_queue)" in body
