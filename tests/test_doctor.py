"""`archiver doctor`: one line per check, exit 1 when something needs a person, never a token shown."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver import doctor
from archiver.checkpoints import PRIVATE_KEY, PUBLIC_KEY
from archiver.cli import app
from archiver.config import load_config

from . import test_phi_alerts
from .test_ledger import behind_the_back
from .test_mastodon_run import TOKEN, Clinic
from .test_phi_alerts import SMTP_PASSWORD, WEBHOOK_TOKEN, alerts_toml


@pytest.fixture
def archived(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "WARN_FREE_BYTES", 0)  # the test machine's free space is not under test
    monkeypatch.setattr(doctor, "MIN_FREE_BYTES", 0)
    clinic = Clinic(tmp_path, monkeypatch)
    assert clinic.run()[0] == 0
    yield clinic
    clinic.stop()


def test_healthy_archive_passes(archived):
    config = archived.config()
    alone = CliRunner().invoke(app, ["doctor", "--config", str(config)])
    # An archive with no backup is its evidence's only copy: the one line that needs a person.
    assert alone.exit_code == 1, alone.output
    assert [line for line in alone.output.splitlines() if not line.startswith("OK")] == [
        "WARN backup: no [backup] folder in the config: nothing copies the archive elsewhere; set [backup] to "
        "(another disk or share) and schedule `archiver backup` (README, Backups)"
    ]
    config.write_text(config.read_text() + '\n[backup]\nto = "nightly"\n')
    assert CliRunner().invoke(app, ["backup", "--config", str(config), "--quiet"]).exit_code == 0
    result = CliRunner().invoke(app, ["doctor", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "OK   backup: verified in" in result.output
    assert "OK   account clinic: token from $CLINIC_TOKEN accepted (@riverside)" in result.output
    assert "OK   last run:" in result.output and "OK   signing key:" in result.output
    # The credential check is not archived: the run's WARC files are all there is.
    assert not any("doctor" in p.name for p in (archived.tmp_path / "arch" / "warcs").iterdir())


def test_refused_token_and_loose_key_need_a_person(archived, monkeypatch):
    monkeypatch.setenv("CLINIC_TOKEN", "wrong-token-value-991")
    (archived.tmp_path / "arch" / "keys" / PRIVATE_KEY).chmod(0o644)
    result = CliRunner().invoke(app, ["doctor", "--config", str(archived.config())])
    assert result.exit_code == 1
    assert "FAIL account clinic: the platform refused the token from $CLINIC_TOKEN (HTTP 401); renew" in result.output
    assert "FAIL signing key:" in result.output and "chmod 600" in result.output
    assert "wrong-token-value-991" not in result.output and TOKEN not in result.output


def test_a_missed_night_is_a_warning(archived):
    config = load_config(archived.config())
    checks = doctor.run_doctor(config, now=datetime.now(UTC) + timedelta(days=2))
    (last,) = [c for c in checks if c.name == "last run"]
    assert last.status == "warn" and "cron job or timer" in last.message


def test_unreachable_platform_fails_the_account(archived):
    archived.stop()
    checks = doctor.run_doctor(load_config(archived.config()))
    (account,) = [c for c in checks if c.name == "account clinic"]
    assert account.status == "fail" and "cannot reach" in account.message


@pytest.mark.parametrize(
    ("days_left", "status", "words"),
    [(40, "ok", "valid until"), (5, "warn", "expires on"), (-1, "fail", "expired on")],
)
def test_token_expiry_is_announced_ahead(archived, monkeypatch, days_left, status, words):
    """A platform that tells the token's expiry gets a warning `token_warning_days` (14) ahead, a failure after."""
    from archiver.connectors.base import Credential
    from archiver.connectors.mastodon import MastodonConnector

    now = datetime.now(UTC)
    real = MastodonConnector.check_credential

    def with_expiry(self, account, token, timeout):
        return Credential(real(self, account, token, timeout).who, now + timedelta(days=days_left))

    monkeypatch.setattr(MastodonConnector, "check_credential", with_expiry)
    checks = doctor.run_doctor(load_config(archived.config()), now=now)
    (account,) = [c for c in checks if c.name == "account clinic"]
    assert account.status == status and words in account.message, account


def test_status_names_the_next_token_to_expire(archived):
    """What a connector recorded of its token's expiry during a run is shown without calling the platform."""
    from archiver.connectors.base import CREDENTIAL_EXPIRY
    from archiver.store import Store

    store = Store.open(archived.tmp_path / "arch" / "archive.db")
    run = store.conn.execute("SELECT id FROM runs").fetchone()[0]
    with store.transaction():
        store.append_cursor("clinic", CREDENTIAL_EXPIRY, "2026-12-01T00:00:00Z", run)
    store.close()
    result = CliRunner().invoke(app, ["status", "--config", str(archived.config())])
    assert result.exit_code == 0, result.output
    assert "next token to expire: clinic on 2026-12-01T00:00:00Z" in result.output


def test_the_backup_folder_is_checked_once_configured(archived):
    """No backup yet, a verified one, one that is too old, one that found a problem: each is one line."""
    config_path = archived.config()
    config_path.write_text(config_path.read_text() + '\n[backup]\nto = "nightly"\nmax_age_hours = 30\n')

    def backup_check(now: datetime | None = None) -> doctor.Check:
        (found,) = [c for c in doctor.run_doctor(load_config(config_path), now=now) if c.name == "backup"]
        return found

    assert backup_check().status == "fail" and "no backup has finished in" in backup_check().message
    assert CliRunner().invoke(app, ["backup", "--config", str(config_path), "--quiet"]).exit_code == 0
    found = backup_check()
    assert found.status == "ok" and "h ago, up to ledger entry" in found.message, found
    named = {c.name: c for c in doctor.run_doctor(load_config(config_path))}
    assert named["backup disk space"].status == "ok" and named["backup folder"].status == "ok"
    (archived.tmp_path / "nightly").chmod(0o755)  # made by hand before the first backup, say
    loose = {c.name: c for c in doctor.run_doctor(load_config(config_path))}["backup folder"]
    assert loose.status == "warn" and "others can read PHI; chmod 700" in loose.message
    late = backup_check(datetime.now(UTC) + timedelta(hours=31))
    assert late.status == "fail" and "is 31 h old (max_age_hours 30)" in late.message, late
    statement = next((archived.tmp_path / "arch" / "warcs" / "checkpoints").glob("*.json"))
    statement.write_bytes(statement.read_bytes() + b"\n")
    assert CliRunner().invoke(app, ["backup", "--config", str(config_path), "--quiet"]).exit_code == 1
    failed = backup_check()
    assert failed.status == "fail" and "found 1 problem(s)" in failed.message, failed
    result = CliRunner().invoke(app, ["doctor", "--config", str(config_path)])
    assert result.exit_code == 1 and "FAIL backup:" in result.output
    shown = CliRunner().invoke(app, ["status", "--config", str(config_path)]).output
    assert "1 problem(s); last verified " in shown.splitlines()[-1], shown


def test_a_snapshot_that_did_not_verify_stays_in_view(archived):
    """Rows changed behind the ledger: that night's backup fails and keeps its snapshot aside. Doctor names
    that file for as long as it is there, whatever the later backups find."""
    config_path = archived.config()
    config_path.write_text(config_path.read_text() + '\n[backup]\nto = "nightly"\n')
    assert CliRunner().invoke(app, ["backup", "--config", str(config_path), "--quiet"]).exit_code == 0
    behind_the_back(archived.tmp_path / "arch" / "archive.db", "UPDATE item_versions SET text = 'gone' WHERE id = 1")
    assert CliRunner().invoke(app, ["backup", "--config", str(config_path), "--quiet"]).exit_code == 1
    named = {c.name: c for c in doctor.run_doctor(load_config(config_path))}
    kept = archived.tmp_path / "nightly" / "archive.db.unverified"
    assert named["backup"].status == "fail"
    assert named["backup snapshot"].status == "warn" and str(kept) in named["backup snapshot"].message
    assert "changed behind its back" in named["backup snapshot"].message


def test_an_archive_the_run_cannot_write_needs_a_person(archived, monkeypatch):
    """A folder remounted read-only or a database copied in by another user: the night's run would fail. What
    access(2) answers is staged (the tests run as root, whom file modes do not stop)."""
    arch = (archived.tmp_path / "arch").resolve()
    real_access = doctor.os.access
    monkeypatch.setattr(doctor.os, "access", lambda p, mode: Path(p) != arch / "warcs" and real_access(p, mode))
    result = CliRunner().invoke(app, ["doctor", "--config", str(archived.config())])
    assert result.exit_code == 1
    assert f"FAIL writable: {arch / 'warcs'} cannot be written by this user; fix its owner or mount" in result.output


def test_an_archive_from_newer_software_needs_an_upgrade(archived):
    conn = sqlite3.connect(archived.tmp_path / "arch" / "archive.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    (schema,) = [c for c in doctor.run_doctor(load_config(archived.config())) if c.name == "schema"]
    assert schema.status == "fail" and "newer than this software's" in schema.message


def test_a_key_or_lock_the_service_user_cannot_use_needs_a_person(archived, monkeypatch):
    """Left root's by `sudo archiver init` or a run under sudo: the service user's next run fails. What access(2)
    answers is staged (the tests run as root)."""
    arch = (archived.tmp_path / "arch").resolve()
    key, lock = arch / "keys" / PRIVATE_KEY, arch / "archiver.lock"
    assert lock.exists()
    real_access = doctor.os.access
    monkeypatch.setattr(doctor.os, "access", lambda p, mode: Path(p) not in (key, lock) and real_access(p, mode))
    result = CliRunner().invoke(app, ["doctor", "--config", str(archived.config())])
    assert result.exit_code == 1
    assert f"FAIL writable: {lock} cannot be written by this user; fix its owner or mount" in result.output
    assert f"FAIL signing key: {key} cannot be read by this user" in result.output


def test_a_missing_public_key_needs_a_person(archived):
    public = archived.tmp_path / "arch" / "keys" / PUBLIC_KEY
    public.unlink()
    result = CliRunner().invoke(app, ["doctor", "--config", str(archived.config())])
    assert result.exit_code == 1
    assert "FAIL signing key:" in result.output and "archive-ed25519.pub is missing" in result.output


channels = test_phi_alerts.channels  # the fixture: a real SMTP server and webhook receiver on loopback


def test_alert_sends_what_needs_a_person_by_the_configured_channels(archived, channels, monkeypatch):
    """Under systemd nothing mails doctor's output: --alert sends the checks that are not OK, without secrets."""
    mailbox, smtp_port, hooks = channels
    monkeypatch.setenv("ALERT_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("ALERT_TEST_HOOK_TOKEN", WEBHOOK_TOKEN)
    monkeypatch.setenv("CLINIC_TOKEN", "wrong-token-value-991")
    config = archived.config()
    config.write_text(config.read_text() + "\n" + alerts_toml(smtp_port, hooks.url))
    result = CliRunner().invoke(app, ["doctor", "--config", str(config), "--alert"])
    assert result.exit_code == 1, result.output
    needs = [line for line in result.stdout.splitlines() if not line.startswith("OK")]
    assert len(needs) == 2 and any("FAIL account clinic: the platform refused the token" in n for n in needs)
    [mail] = mailbox.messages
    assert (
        mail["Subject"].endswith(": 2 check(s) need a person")
        and mail["To"] == "privacy@clinic.test, security@clinic.test"
    )
    body = mail.get_payload(decode=True).decode().replace("\r\n", "\n")
    assert all(line in body for line in needs) and "OK " not in body
    [(headers, payload)] = hooks.posts
    assert headers["Authorization"] == f"Bearer {WEBHOOK_TOKEN}"
    assert payload["event"] == "doctor" and payload["count"] == 2 and payload["ok"] >= 5
    assert [f"{c['status'].upper():4} {c['check']}: {c['message']}" for c in payload["checks"]] == needs
    assert "alert e-mail sent to privacy@clinic.test" in result.stderr and "alert webhook" in result.stderr
    for secret in ("wrong-token-value-991", SMTP_PASSWORD, WEBHOOK_TOKEN):
        assert secret not in body and secret not in json.dumps(payload) and secret not in result.output

    # All well (a backup made, the token right): nothing is sent.
    monkeypatch.setenv("CLINIC_TOKEN", TOKEN)
    config.write_text(config.read_text() + '\n[backup]\nto = "nightly"\n')
    assert CliRunner().invoke(app, ["backup", "--config", str(config), "--quiet"]).exit_code == 0
    assert CliRunner().invoke(app, ["doctor", "--config", str(config), "--alert"]).exit_code == 0
    assert len(mailbox.messages) == 1 and len(hooks.posts) == 1


def test_alert_without_a_channel_is_a_config_error(archived):
    result = CliRunner().invoke(app, ["doctor", "--config", str(archived.config()), "--alert"])
    assert result.exit_code == 2
    assert result.output.strip().endswith("no alert channel configured; add [alerts.email] or [alerts.webhook]")
    assert "OK " not in result.output  # refused before any check


def test_systemd_units_call_doctor_when_a_run_or_backup_fails():
    """The shipped units: doctor's own timer, started too by a failed run or backup, with the archive writable (its
    check that the run can write there would fail on a read-only view) and the tokens' environment."""
    deploy = Path(__file__).resolve().parent.parent / "deploy"

    def unit(name: str) -> dict[str, list[str]]:
        keys: dict[str, list[str]] = {}
        for line in (deploy / name).read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                keys.setdefault(key, []).append(value)
        return keys

    doctor_unit = unit("archiver-doctor.service")
    assert doctor_unit["ExecStart"][0].endswith(" doctor --config /etc/archiver/archiver.toml --alert")
    run_unit = unit("archiver.service")
    for key in ("ReadWritePaths", "EnvironmentFile", "User"):
        assert doctor_unit[key] == run_unit[key]
    assert (
        unit("archiver-doctor.timer")["OnCalendar"]
        and "archiver-doctor.timer" in (deploy / "archiver-doctor.service").read_text()
    )
    for name in ("archiver.service", "archiver-backup.service"):
        assert unit(name)["OnFailure"] == ["archiver-doctor.service"]


def test_an_alert_secret_missing_from_the_environment_needs_a_person(archived, monkeypatch):
    """The run shares doctor's environment: a password or token variable not set there fails every alert."""
    config = archived.config()
    config.write_text(config.read_text() + "\n" + alerts_toml(25, "https://hooks.clinic.test/privacy"))
    monkeypatch.delenv("ALERT_TEST_SMTP_PASSWORD", raising=False)
    monkeypatch.setenv("ALERT_TEST_HOOK_TOKEN", "  ")
    result = CliRunner().invoke(app, ["doctor", "--config", str(config)])
    assert result.exit_code == 1
    assert (
        "FAIL alerts email: [alerts.email] password_env names $ALERT_TEST_SMTP_PASSWORD, which is not set: every "
        "alert on it fails; export it" in result.output
    )
    assert "FAIL alerts webhook: [alerts.webhook] token_env names $ALERT_TEST_HOOK_TOKEN, which is set but blank" in (
        result.output
    )
    monkeypatch.setenv("ALERT_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("ALERT_TEST_HOOK_TOKEN", WEBHOOK_TOKEN)
    result = CliRunner().invoke(app, ["doctor", "--config", str(config)])
    assert "FAIL alerts" not in result.output and SMTP_PASSWORD not in result.output
