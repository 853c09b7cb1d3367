"""Alerts that cannot be lost: each channel's deliveries are recorded, what a channel still owes goes out at the
end of the next run, the next scan or `archiver alerts send`, and an upgrade or a hidden comment never
announces a hit again. Real SMTP (aiosmtpd) and webhook servers on loopback, real archives made by runs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from typer.testing import CliRunner

import archiver.store
from archiver.cli import app
from archiver.config import load_config
from archiver.doctor import check_alerts
from tests.graph_clinic import ANN, Hospital, ago, fb_key

from . import test_phi_alerts
from .test_config import DISABLED
from .test_ledger import behind_the_back
from .test_phi_alerts import ENV, SMTP_PASSWORD, Mailbox, alerts_toml, free_port, write_config

# test_phi_alerts' fixtures: a sample Mastodon clinic, and real SMTP and webhook servers on loopback
clinic = test_phi_alerts.clinic
channels = test_phi_alerts.channels


def cli(config: Path, *args: str):
    return CliRunner().invoke(app, [*args, "--config", str(config)], env=ENV)


def run(config: Path):
    return cli(config, "run", "--json")


def rows(arch: Path, sql: str, *params: object) -> list[tuple]:
    conn = sqlite3.connect(arch / "archive.db")
    try:
        return [tuple(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def high_flags(arch: Path) -> list[int]:
    return [r[0] for r in rows(arch, "SELECT id FROM flags WHERE severity = 'high' ORDER BY id")]


def deliveries(arch: Path) -> list[tuple]:
    return rows(arch, "SELECT channel, outcome, count(*) FROM alert_deliveries GROUP BY 1, 2 ORDER BY 1, 2")


def smtp_on(port: int, mailbox: Mailbox) -> Controller:
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, authenticator=mailbox, auth_require_tls=False)
    controller.start()
    return controller


def verifies(config: Path) -> None:
    result = cli(config, "verify")
    assert result.exit_code == 0, result.output


def test_smtp_down_for_a_run_is_delivered_by_the_next_run_once(tmp_path, clinic, channels):
    _, _, hooks = channels
    port = free_port()  # nothing listens there yet
    config = write_config(tmp_path, clinic.base_url, port, hooks.url)
    first = run(config)
    assert first.exit_code == 0, first.output  # the run archives; a channel's failure is a notice
    notices = json.loads(first.stdout)["notices"]
    failed = [n for n in notices if n.startswith(f"alert e-mail via 127.0.0.1:{port} failed:")]
    assert len(failed) == 1 and failed[0].endswith("; its flags stay owed"), notices
    arch = tmp_path / "arch"
    high = high_flags(arch)
    assert len(high) > 1
    [(_, payload)] = hooks.posts
    assert payload["count"] == len(high)
    assert deliveries(arch) == [("email", "failed", len(high)), ("webhook", "sent", len(high))]
    [(error,)] = rows(arch, "SELECT DISTINCT error FROM alert_deliveries WHERE outcome = 'failed'")
    assert error.startswith(f"alert e-mail via 127.0.0.1:{port} failed:") and "\n" not in error
    assert SMTP_PASSWORD not in error

    mailbox = Mailbox()
    controller = smtp_on(port, mailbox)
    try:
        second = run(config)
        assert second.exit_code == 0, second.output
        [mail] = mailbox.messages  # the flags the first run could not mail, once
        assert mail["Subject"] == f"[archiver] {len(high)} new high-severity PHI flag(s)"
        body = mail.get_payload(decode=True).decode()
        assert f"flag {high[0]}: high" in body
        assert len(hooks.posts) == 1  # the webhook had them already
        assert run(config).exit_code == 0
        assert len(mailbox.messages) == 1 and len(hooks.posts) == 1
    finally:
        controller.stop()
    assert deliveries(arch) == [
        ("email", "failed", len(high)),
        ("email", "sent", len(high)),
        ("webhook", "sent", len(high)),
    ]
    verifies(config)


def test_alerts_send_retries_after_an_outage_and_pending_says_what_is_owed(tmp_path, clinic, channels, monkeypatch):
    _, _, hooks = channels
    port = free_port()
    config = write_config(tmp_path, clinic.base_url, port, hooks.url)
    assert run(config).exit_code == 0
    high = high_flags(tmp_path / "arch")

    pending = cli(config, "alerts", "pending", "--json")
    assert pending.exit_code == 0, pending.output
    email, webhook = json.loads(pending.stdout)
    assert (email["channel"], email["destination"]) == ("email", "privacy@clinic.test, security@clinic.test")
    assert email["owed"] == len(high) and [f["id"] for f in email["flags"]] == high
    assert email["last_attempt"]["outcome"] == "failed" and f"127.0.0.1:{port} failed" in email["last_attempt"]["error"]
    assert (webhook["owed"], webhook["flags"], webhook["last_attempt"]["outcome"]) == (0, [], "sent")
    assert "matched" not in email["flags"][0]  # what is owed is said without the PHI
    text = cli(config, "alerts", "pending")
    assert f"email (privacy@clinic.test, security@clinic.test): {len(high)} flag(s) owed; last attempt" in text.output
    # the morning's doctor says so too (a warning: exit 1, its output mailed by cron), in the run's environment
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    [email_check, webhook_check] = check_alerts(load_config(config))
    assert (email_check.status, webhook_check.status) == ("warn", "ok")
    assert str(email_check).startswith(f"WARN alerts email: {len(high)} flag(s) in the review queue never delivered")
    assert f"127.0.0.1:{port} failed" in str(email_check) and "archiver alerts send" in str(email_check)

    still_down = cli(config, "alerts", "send")
    assert still_down.exit_code == 1
    assert f"alert e-mail via 127.0.0.1:{port} failed:" in still_down.output

    mailbox = Mailbox()
    controller = smtp_on(port, mailbox)
    try:
        sent = cli(config, "alerts", "send")
        assert sent.exit_code == 0, sent.output
        assert f"alert e-mail sent to privacy@clinic.test, security@clinic.test ({len(high)} flags)" in sent.output
        [mail] = mailbox.messages
        assert mail["Subject"] == f"[archiver] {len(high)} new high-severity PHI flag(s)"
        again = cli(config, "alerts", "send")
        assert again.exit_code == 0 and "nothing owed" in again.output
        assert len(mailbox.messages) == 1 and len(hooks.posts) == 1
    finally:
        controller.stop()
    owed = [(c["channel"], c["owed"]) for c in json.loads(cli(config, "alerts", "pending", "--json").stdout)]
    assert owed == [("email", 0), ("webhook", 0)]
    assert [c.status for c in check_alerts(load_config(config))] == ["ok", "ok"]
    verifies(config)


def test_a_delivery_sent_but_not_recorded_is_sent_again(tmp_path, clinic, channels, monkeypatch):
    """A stop (SIGTERM is a KeyboardInterrupt in archiver) between the channel's answer and the record: the
    flags stay owed, and the next `alerts send` sends them again (at least once, never dropped)."""
    from archiver.scan import delivery

    mailbox, smtp_port, hooks = channels
    config = write_config(tmp_path, clinic.base_url, smtp_port, hooks.url)
    with_channels = config.read_text()
    config.write_text(with_channels.split("[alerts.email]")[0])  # archived before any channel was set up
    assert run(config).exit_code == 0
    assert mailbox.messages == [] and hooks.posts == []
    config.write_text(with_channels)

    def stopped(*args: object) -> int:
        raise KeyboardInterrupt

    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    store = archiver.store.Store.open(tmp_path / "arch" / "archive.db")
    try:
        with monkeypatch.context() as patch:
            patch.setattr(delivery, "append_delivery", stopped)
            with pytest.raises(KeyboardInterrupt):
                delivery.deliver_owed(store, load_config(config), None)
    finally:
        store.close()
    assert len(mailbox.messages) == 1 and hooks.posts == []  # mailed, then stopped before the record
    assert rows(tmp_path / "arch", "SELECT count(*) FROM alert_deliveries") == [(0,)]

    sent = cli(config, "alerts", "send")
    assert sent.exit_code == 0, sent.output
    high = high_flags(tmp_path / "arch")
    assert len(mailbox.messages) == 2 and mailbox.messages[1]["Subject"] == mailbox.messages[0]["Subject"]
    [(_, payload)] = hooks.posts
    assert payload["count"] == len(high)
    assert deliveries(tmp_path / "arch") == [("email", "sent", len(high)), ("webhook", "sent", len(high))]
    assert cli(config, "alerts", "send").exit_code == 0
    assert len(mailbox.messages) == 2 and len(hooks.posts) == 1
    verifies(config)


def test_deliveries_are_append_only_and_one_removed_behind_the_triggers_is_caught(tmp_path, clinic, channels):
    _, smtp_port, hooks = channels
    config = write_config(tmp_path, clinic.base_url, smtp_port, hooks.url)
    assert run(config).exit_code == 0
    arch = tmp_path / "arch"
    conn = sqlite3.connect(arch / "archive.db")
    for statement in ("UPDATE alert_deliveries SET outcome = 'failed'", "DELETE FROM alert_deliveries"):
        with pytest.raises(sqlite3.IntegrityError, match="alert_deliveries is append-only"):
            conn.execute(statement)
    conn.close()
    verifies(config)
    [(first, flag)] = rows(arch, "SELECT id, flag_id FROM alert_deliveries WHERE channel = 'webhook' LIMIT 1")
    behind_the_back(arch / "archive.db", f"DELETE FROM alert_deliveries WHERE id = {first}")
    result = cli(config, "verify")
    assert result.exit_code == 1
    assert f"alert_deliveries id={first}: row entered at ledger seq" in result.output, result.output
    # and the flag whose record went is owed again: it would be sent again, never lost
    webhook = json.loads(cli(config, "alerts", "pending", "--json").stdout)[1]
    assert [f["id"] for f in webhook["flags"]] == [flag]


# -- Facebook: a Page whose moderator hides comments (a new version, the same text) --------------------------


@pytest.fixture
def hospital(tmp_path, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    h = Hospital(tmp_path, monkeypatch)
    yield h
    h.stop()


def fb_run(hospital: Hospital, extra: str) -> None:
    code, output = hospital.run("facebook", extra=extra)
    assert code == 0, output


def queue_of(hospital: Hospital, comment: dict) -> list[tuple]:
    return hospital.rows(
        "SELECT flag_id, version_id, status FROM flag_queue WHERE item_key = ? AND category != 'consent'",
        fb_key(comment["id"]),
    )


def flag_of(hospital: Hospital, comment: dict) -> list[tuple]:
    """The comment's flags (id, version id) with flag_status's decision, oldest first."""
    return hospital.rows(
        "SELECT flag_id, version_id, decision FROM flag_status WHERE item_key = ? ORDER BY flag_id",
        fb_key(comment["id"]),
    )


def test_a_hidden_comment_is_not_alerted_again_and_keeps_its_decision(hospital, channels):
    mailbox, smtp_port, hooks = channels
    s, page = hospital.state, hospital.page
    post = s.add_post(page, "Flu shots on Monday, 9-12", ago(days=3))
    escalated = s.add_comment(post, ANN, "My MRN is 00482913, please call me", ago(days=2))
    decided = s.add_comment(post, ANN, "My DOB is 03/14/1985", ago(days=2, hours=1))
    unreviewed = s.add_comment(post, ANN, "My mother was diagnosed with type 2 diabetes", ago(days=2, hours=2))
    hospital.start()
    channels_toml = alerts_toml(smtp_port, hooks.url)
    fb_run(hospital, channels_toml)
    [(_, payload)] = hooks.posts
    assert payload["count"] == 3 and len(mailbox.messages) == 1
    [(first_escalated, v1, _)] = flag_of(hospital, escalated)
    [(first_decided, _, _)] = flag_of(hospital, decided)
    assert len(flag_of(hospital, unreviewed)) == 1
    config = hospital.tmp_path / "archiver.toml"
    assert cli(config, "review", str(first_escalated), "--decision", "escalated").exit_code == 0
    assert cli(config, "review", str(first_decided), "--decision", "violation", "--note", "hide it").exit_code == 0

    for comment in (escalated, decided, unreviewed):
        s.set_hidden(comment["id"], True)
    fb_run(hospital, channels_toml)
    visibility = hospital.rows("SELECT visibility FROM item_versions WHERE item_key = ?", fb_key(escalated["id"]))
    assert visibility == [("public",), ("hidden",)]  # a new version, the same text: the scan flags it again
    [_, (again_escalated, v2, decision)] = flag_of(hospital, escalated)
    assert v2 > v1 and decision == "escalated"  # the decision carried over to the same hit
    [_, (again_decided, _, decision)] = flag_of(hospital, decided)
    assert decision == "violation"
    [_, (again_unreviewed, _, decision)] = flag_of(hospital, unreviewed)
    assert decision is None
    assert len(mailbox.messages) == 1 and len(hooks.posts) == 1  # no second alert for the same hits
    # the queue: one row a hit, on the latest version; none for the hit decided
    assert queue_of(hospital, escalated) == [(again_escalated, v2, "escalated")]
    assert queue_of(hospital, decided) == []
    assert [r[0] for r in queue_of(hospital, unreviewed)] == [again_unreviewed]
    owed = json.loads(cli(config, "alerts", "pending", "--json").stdout)
    assert [c["owed"] for c in owed] == [0, 0]
    assert again_decided not in {f for f, *_ in hospital.rows("SELECT flag_id FROM flag_queue")}
    verifies(config)


def test_an_upgraded_archive_owes_nothing_for_flags_made_before(hospital, channels, monkeypatch):
    mailbox, smtp_port, hooks = channels
    s, page = hospital.state, hospital.page
    post = s.add_post(page, "Flu shots on Monday, 9-12", ago(days=3))
    old = s.add_comment(post, ANN, "My MRN is 00482913, please call me", ago(days=2))
    hospital.start()
    before = archiver.store.load_migrations()[:10]  # the archive as the software before migration 0011 made it
    with monkeypatch.context() as patch:
        patch.setattr(archiver.store, "load_migrations", lambda: before)
        fb_run(hospital, "")
    assert hospital.rows("SELECT max(version) FROM schema_migrations") == [(10,)]
    [(old_flag, _, _)] = flag_of(hospital, old)
    config = hospital.tmp_path / "archiver.toml"
    config.write_text(config.read_text() + alerts_toml(smtp_port, hooks.url))
    pending = cli(config, "alerts", "pending", "--json")  # read-only: the archive is not upgraded by it
    assert pending.exit_code == 0 and [c["owed"] for c in json.loads(pending.stdout)] == [0, 0]

    s.set_hidden(old["id"], True)  # the old hit again, on a new version
    new = s.add_comment(post, ANN, "My DOB is 03/14/1985", ago(hours=1))
    fb_run(hospital, alerts_toml(smtp_port, hooks.url))  # applies migration 0011 (and any later one)
    assert hospital.rows("SELECT max(version) FROM schema_migrations") == [(len(archiver.store.load_migrations()),)]
    assert hospital.rows("SELECT count(*) FROM schema_migrations WHERE version = 11") == [(1,)]
    [(new_flag, _, _)] = flag_of(hospital, new)
    [(_, payload)] = hooks.posts  # only the flag made since: the archive's history is not announced
    assert payload["count"] == 1 and [f["flag_id"] for f in payload["flags"]] == [new_flag]
    [mail] = mailbox.messages
    assert mail["Subject"] == "[archiver] 1 new high-severity PHI flag(s)"
    assert len(flag_of(hospital, old)) == 2 and old_flag not in [r[0] for r in queue_of(hospital, old)]
    assert [c["owed"] for c in json.loads(cli(config, "alerts", "pending", "--json").stdout)] == [0, 0]
    verifies(config)


def test_the_alerts_commands_need_a_channel_and_an_archive(tmp_path):
    bare = tmp_path / "bare.toml"
    bare.write_text(f'[archive]\ndir = "arch"\n{DISABLED}', "utf-8")
    for command in ("send", "pending"):
        result = cli(bare, "alerts", command)
        assert result.exit_code == 2, result.output
        assert f"{bare}: no alert channel configured; add [alerts.email] or [alerts.webhook]" in result.output
    config = tmp_path / "archiver.toml"
    config.write_text(f'[archive]\ndir = "arch"\n{DISABLED}' + alerts_toml(25, "http://127.0.0.1:9/hook"), "utf-8")
    for command in ("send", "pending"):
        result = cli(config, "alerts", command)
        assert result.exit_code == 2 and "archive database not found" in result.output, result.output
    assert not (tmp_path / "arch" / "archive.db").exists()


def test_the_consent_check_command_sends_what_is_owed_too(tmp_path, clinic, channels):
    """`archiver consent check` appends flags like a scan: it ends like one, delivering every flag owed (here the
    run's PHI flags, archived before any channel was set up), its JSON on stdout untouched."""
    mailbox, smtp_port, hooks = channels
    config = write_config(tmp_path, clinic.base_url, smtp_port, hooks.url)
    with_channels = config.read_text()
    config.write_text(with_channels.split("[alerts.email]")[0])
    assert run(config).exit_code == 0
    high = high_flags(tmp_path / "arch")
    assert high and mailbox.messages == [] and hooks.posts == []
    config.write_text(with_channels)
    result = CliRunner().invoke(app, ["consent", "check", "--json", "--config", str(config)], env=ENV)
    assert result.exit_code in (0, 1), result.output
    assert "open_flags" in json.loads(result.stdout)
    assert f"({len(high)} flags)" in result.stderr
    assert len(mailbox.messages) == 1 and len(hooks.posts) == 1
    assert deliveries(tmp_path / "arch") == [("email", "sent", len(high)), ("webhook", "sent", len(high))]
