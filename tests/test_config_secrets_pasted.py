"""A secret pasted where its variable's NAME or its file's path belongs. The schema's name pattern lets through a
token of letters and digits (a Meta Page token is one), so no message may repeat a `*_env` value that does not
look like a variable name, nor a `*_file` value that does not look like a path: `archiver run` (the cron log),
`archiver doctor` (mailed by cron) and `doctor --alert` (webhook, e-mail) name the config file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.config import NOT_REPEATED, load_config, resolve_token, shown_env_name, shown_path
from archiver.errors import ConfigError
from archiver.logs import redact_secrets

from . import test_phi_alerts

PASTED = "EAAGm0PX4ZCpsBAL7qZCZBvQ9xZAk3Nn1ZBxYQZDZD"  # the shape of a Meta Page token: letters and digits only
PASSWORD = "Winter2026Hospital"
HOOK_TOKEN = "Qm7xKf2LpZr9TtW4cVb8Nn"
DEAD = "http://127.0.0.1:9"  # loopback, nothing listens: bad input must be found before anything calls it

channels = test_phi_alerts.channels  # a real SMTP server and webhook receiver on loopback


def mastodon(reference: str) -> str:
    return f'[[accounts]]\nname = "clinic"\nplatform = "mastodon"\napi_base = "{DEAD}"\n{reference}\n'


def facebook(option: str) -> str:
    return (
        f'[[accounts]]\nname = "clinic-fb"\nplatform = "facebook"\napi_base = "{DEAD}"\ntoken_env = "FB_TOKEN"\n'
        f'options = {{ page_id = "1", {option} }}\n'
    )


PLACES = {
    "token_env": (mastodon(f'token_env = "{PASTED}"'), "token_env"),
    "token_file": (mastodon(f'token_file = "{PASTED}"'), "token_file"),
    "app_secret_env": (facebook(f'app_secret_env = "{PASTED}"'), "options.app_secret_env"),
    "app_secret_file": (facebook(f'app_secret_file = "{PASTED}"'), "options.app_secret_file"),
}


def write(tmp_path: Path, accounts: str, extra: str = "") -> Path:
    path = tmp_path / "archiver.toml"
    path.write_text(f'[archive]\ndir = "arch"\nretries = 0\n\n{accounts}\n{extra}', "utf-8")
    return path


@pytest.mark.parametrize("place", PLACES)
def test_a_token_pasted_as_a_name_or_path_is_never_repeated(tmp_path, monkeypatch, place):
    monkeypatch.setenv("FB_TOKEN", "fb-token-value-1")
    monkeypatch.delenv(PASTED, raising=False)
    accounts, key = PLACES[place]
    config = write(tmp_path, accounts)
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("archiver: error: account clinic"), result.output
    assert f"{key} in {config} is {NOT_REPEATED}" in result.output, result.output
    assert PASTED not in result.output and not (tmp_path / "arch").exists()
    doctor = CliRunner().invoke(app, ["doctor", "--config", str(config)])
    assert doctor.exit_code == 1 and "Traceback" not in doctor.output, doctor.output
    (line,) = [line for line in doctor.output.splitlines() if line.startswith("FAIL account clinic")]
    assert f"{key} in {config} is {NOT_REPEATED}" in line, doctor.output
    assert PASTED not in doctor.output


def test_alert_secrets_pasted_as_names_reach_neither_the_output_nor_the_alerts(tmp_path, monkeypatch, channels):
    """The SMTP password and the webhook token pasted into password_env and token_env: doctor names the keys, and
    neither the run's failure alert nor doctor --alert carries them (nor do the outputs)."""
    mailbox, smtp_port, hooks = channels
    for name in (PASSWORD, HOOK_TOKEN):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLINIC_TOKEN", "clinic-token-value-1")
    alerts = (
        test_phi_alerts.alerts_toml(smtp_port, hooks.url)
        .replace('"ALERT_TEST_SMTP_PASSWORD"', f'"{PASSWORD}"')
        .replace('"ALERT_TEST_HOOK_TOKEN"', f'"{HOOK_TOKEN}"')
        .replace("[alerts]\n", "[alerts]\ndeadline = 2\n")  # the SMTP login without a password waits for it
    )
    config = write(tmp_path, mastodon('token_env = "CLINIC_TOKEN"'), alerts)
    run = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
    assert run.exit_code == 1, run.output  # the account cannot be reached: a failure alert goes out
    doctor = CliRunner().invoke(app, ["doctor", "--config", str(config), "--alert"])
    assert doctor.exit_code == 1, doctor.output
    email_line = next(line for line in doctor.output.splitlines() if line.startswith("FAIL alerts email"))
    hook_line = next(line for line in doctor.output.splitlines() if line.startswith("FAIL alerts webhook"))
    assert f"[alerts.email] password_env in {config} names a variable that is not set" in email_line
    assert f"[alerts.webhook] token_env in {config} names a variable that is not set" in hook_line
    assert NOT_REPEATED in email_line and NOT_REPEATED in hook_line
    assert hooks.posts, "neither the run's failure alert nor doctor's went out"
    bodies = json.dumps([payload for _, payload in hooks.posts]) + "".join(str(m) for m in mailbox.messages)
    for secret in (PASSWORD, HOOK_TOKEN):
        assert secret not in run.output and secret not in doctor.output and secret not in bodies


def test_names_and_paths_that_look_like_them_are_still_repeated(tmp_path, monkeypatch):
    """The common mistakes keep their helpful message: a conventional name not exported, a path with a folder."""
    monkeypatch.delenv("CLINIC_TOKEN", raising=False)
    config = write(tmp_path, mastodon('token_env = "CLINIC_TOKEN"'))
    with pytest.raises(ConfigError, match=r"^account clinic: environment variable CLINIC_TOKEN is not set; export"):
        resolve_token(load_config(config).accounts[0])
    (tmp_path / "tokens").mkdir()
    config = write(tmp_path, mastodon('token_file = "tokens/clinic"'))
    with pytest.raises(ConfigError) as info:
        resolve_token(load_config(config).accounts[0])
    assert str(info.value).startswith(f"account clinic: cannot read token_file {tmp_path / 'tokens' / 'clinic'} (")
    assert NOT_REPEATED not in str(info.value)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("CLINIC_TOKEN", True),
        ("T", True),
        ("ARCHIVER_CLINIC_PAGE_TOKEN", True),
        ("_PRIVATE", True),
        (PASTED, False),  # mixed case
        (PASSWORD, False),
        ("clinic_token", False),  # legal, but not the convention: the key and the file are named instead
        ("AKIAIOSFODNN7EXAMPLE", False),  # 17+ upper-case letters and digits without an _: a key id, not a name
        ("A_" + "B" * 63, False),  # longer than 64
    ],
)
def test_which_variable_names_are_repeated(name, shown):
    assert shown_env_name(name) is shown


def test_which_paths_are_repeated(tmp_path):
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tok").write_text("x")
    assert shown_path(tmp_path / "tok", "tok")  # there: it is a path, whatever was written
    assert shown_path(tmp_path / "tokens" / "clinic", "tokens/clinic")  # a / and a folder that is there
    assert not shown_path(tmp_path / PASTED, PASTED)  # no /
    assert not shown_path(tmp_path / "ab" / "cd", "ab/cd")  # a token holding a / names no folder that is there
    assert not shown_path(Path("/" + PASTED), "/" + PASTED)  # nor one starting with it


def test_a_pasted_value_is_masked_in_log_lines_too(tmp_path):
    """A backstop: whatever is logged (and doctor's alert payload, which is redacted the same way) masks it."""
    load_config(write(tmp_path, mastodon(f'token_env = "{PASTED}"')))
    assert PASTED not in redact_secrets(f"variable {PASTED} not set")
    account = load_config(write(tmp_path, mastodon(f'token_file = "{PASTED}"'))).accounts[0]
    assert account.credential_ref == "the file named by token_file"
