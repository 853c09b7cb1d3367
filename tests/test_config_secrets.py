"""Secrets in the config and beside it: errors name the key or the file, never the value; the Meta app secret is
read and checked like the token; a token that is not printable ASCII is bad input, not a failed run."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.config import load_config, resolve_option_secret, resolve_token
from archiver.errors import ConfigError

from .graph_clinic import TOKEN, Hospital, ago
from .test_config import GOOD, write

SECRET = "Zx9-SecretTokenValue_123"
HOOK_SECRET = "XyZsEcReTpAtH123"


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


def facebook(options: str) -> str:
    """One Facebook account on a dead loopback port: bad input must be found before anything calls it."""
    return (
        '[archive]\ndir = "arch"\n\n[[accounts]]\nname = "fb"\nplatform = "facebook"\napi_base = "http://127.0.0.1:9"\n'
        f'token_env = "FB_TOKEN"\noptions = {{ page_id = "1"{options} }}\n'
    )


NOT_REPEATED = "(the value is not repeated: it may hold a secret)"
NOT_A_NAME = f"not a valid environment variable name {NOT_REPEATED}"


@pytest.mark.parametrize(
    ("text", "where", "secret"),
    [
        (GOOD.replace('"CLINIC_TOKEN"', f'"{SECRET}"'), f"accounts[0].token_env: {NOT_A_NAME}", SECRET),
        (GOOD.replace('"CLINIC_TOKEN"', f'"{SECRET} "'), f"accounts[0].token_env: {NOT_A_NAME}", SECRET),
        (GOOD + f'[alerts.email]\nsmtp_host = "h"\nfrom = "a@b"\nto = ["c@d"]\npassword_env = "{SECRET}"\n',
         f"alerts.email.password_env: {NOT_A_NAME}", SECRET),
        (GOOD + f'[alerts.webhook]\nurl = "hooks.slack.com/services/T0001/B0001/{HOOK_SECRET}"\n',
         f"alerts.webhook.url: not an http:// or https:// URL {NOT_REPEATED}", HOOK_SECRET),
        (GOOD + f'[alerts.webhook]\nurl = "ftp://user:{SECRET}@hooks.example/services/{HOOK_SECRET}"\n',
         "alerts.webhook.url: 'ftp://hooks.example/...' is not valid (only its scheme and host are shown)",
         HOOK_SECRET),
        (GOOD + f'[alerts.webhook]\nurl = "https://hooks.example/{HOOK_SECRET}"\ntoken_env = "{SECRET}"\n',
         f"alerts.webhook.token_env: {NOT_A_NAME}", SECRET),
        (GOOD + f'[alerts]\nwebhook = "https://hooks.example/{HOOK_SECRET}"\n',
         f"alerts.webhook: not a table {NOT_REPEATED}", HOOK_SECRET),
        (facebook(f', app_secret_env = "{SECRET}"'),
         f"accounts[0].options.app_secret_env: {NOT_A_NAME}", SECRET),
    ],
    ids=["token_env", "token_env-space", "password_env", "webhook-url", "webhook-url-host", "webhook-token_env",
         "webhook-type", "app"],
)  # fmt: skip
def test_a_secret_in_a_key_that_names_it_is_not_repeated(tmp_path, text, where, secret):
    message = refused(write(tmp_path, text))
    assert where in message and secret not in message and SECRET not in message


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://hooks.example:99999/services/T0/B0/", "its port is not a number from 1 to 65535"),
        ("https://hooks.example:443x/services/T0/B0/", "its port is not a number from 1 to 65535"),
        ("https://hooks.example:0/services/T0/B0/", "its port is not a number from 1 to 65535"),
        ("https://:443/services/T0/B0/", "it names no host"),
        ("http://[::1/services/T0/B0/", "its host cannot be read"),
    ],
)
def test_a_webhook_url_that_cannot_be_called_stops_the_run_before_it_starts(tmp_path, monkeypatch, url, problem):
    """Found at the end of a run, the URL stopped it before its captures were signed; the URL may carry the chat
    service's secret, so it is shown by its scheme and host only."""
    monkeypatch.setenv("CLINIC_TOKEN", "t0ken-value")
    path = write(tmp_path, GOOD + f'[alerts.webhook]\nurl = "{url}{HOOK_SECRET}"\n')
    message = refused(path)
    assert f"alerts.webhook.url: {problem} (" in message and HOOK_SECRET not in message
    assert "/...', only its scheme and host shown); fix the URL" in message
    for command in (["run", "--quiet"], ["alerts", "pending"]):
        result = CliRunner().invoke(app, [*command, "--config", str(path)])
        assert result.exit_code == 2 and "alerts.webhook.url" in result.output, result.output
        assert HOOK_SECRET not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "arch").exists()


@pytest.mark.parametrize(
    ("content", "position", "hint"),
    [
        ("\ufeffSECRETTOKEN123\n", 1, "a byte-order mark? save the file as plain ASCII"),
        ("SECRET\u201ctoken123\n", 7, "a typographic quote or a letter beyond ASCII?"),
        ("SECRETtökén123", 8, "copy the token again as plain text"),
    ],
    ids=["bom", "smart-quote", "accents"],
)
def test_a_token_file_beyond_printable_ascii_is_bad_input(tmp_path, monkeypatch, content, position, hint):
    token_file = tmp_path / "tok"
    token_file.write_text(content, "utf-8")
    token_file.chmod(0o600)
    path = write(tmp_path, GOOD.replace('token_env = "CLINIC_TOKEN"', 'token_file = "tok"'))
    with pytest.raises(ConfigError) as info:
        resolve_token(load_config(path).accounts[0])
    message = str(info.value)
    assert message.startswith(
        f"account clinic: the token in token_file {token_file} contains a character that is not printable ASCII at "
        f"position {position} ("
    )
    assert hint in message and message.endswith("; keep only the token") and "SECRET" not in message
    result = CliRunner().invoke(app, ["run", "--config", str(path), "--quiet"])
    assert result.exit_code == 2 and str(token_file) in result.output, result.output
    assert "SECRET" not in result.output and not (tmp_path / "arch").exists()
    doctor = CliRunner().invoke(app, ["doctor", "--config", str(path)])
    assert "Traceback" not in doctor.output and "not printable ASCII" in doctor.output, doctor.output
    assert "SECRET" not in doctor.output


def test_a_token_variable_beyond_printable_ascii_is_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINIC_TOKEN", "\ufeffSECRETTOKEN123")
    account = load_config(write(tmp_path, GOOD)).accounts[0]
    with pytest.raises(
        ConfigError, match=r"environment variable CLINIC_TOKEN contains .* at position 1 \(a byte-order"
    ):
        resolve_token(account)


@pytest.mark.parametrize("value", ["", "  \t "])
def test_a_blank_variable_is_said_to_be_blank_not_unset(tmp_path, monkeypatch, value):
    monkeypatch.setenv("CLINIC_TOKEN", value)
    account = load_config(write(tmp_path, GOOD)).accounts[0]
    with pytest.raises(ConfigError) as info:
        resolve_token(account)
    assert str(info.value) == (
        "account clinic: environment variable CLINIC_TOKEN is set but blank; export the token there"
    )


# -- the Meta app secret, read like the token ------------------------------------------------------------------
def test_a_relative_app_secret_file_is_taken_from_the_config_folder(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    secret_file = tmp_path / "cfg" / "appsecret"
    secret_file.write_text("APPSECRETVALUE\n")
    secret_file.chmod(0o600)
    monkeypatch.chdir(tmp_path)  # not the config's folder: cron starts elsewhere
    path = tmp_path / "cfg" / "archiver.toml"
    path.write_text(facebook(', app_secret_file = "appsecret"'))
    account = load_config(path).accounts[0]
    assert account.options["app_secret_file"] == str(secret_file)
    assert resolve_option_secret(account, "app_secret") == "APPSECRETVALUE"


def bad_app_secret(tmp_path: Path, kind: str) -> tuple[str, list[str]]:
    """Options naming an app secret that cannot be used, and the words that say why."""
    secret_file = tmp_path / "appsecret"
    if kind in ("open to others", "empty", "bom"):
        secret_file.write_text({"empty": "\n", "bom": "\ufeffAPPSECRETVALUE"}.get(kind, "APPSECRETVALUE\n"))
        secret_file.chmod(0o644 if kind == "open to others" else 0o600)
    file, env = ', app_secret_file = "appsecret"', ', app_secret_env = "META_SECRET_{}"'
    return {
        "open to others": (file, [f"is mode 644, open to group or others; chmod 600 {secret_file}"]),
        # written without a / and not there: it may be the secret pasted as the path, so it is not repeated
        "missing": (file, ["cannot read options.app_secret_file (No such file", "not repeated: it may be the secret"]),
        "empty": (file, [f"options.app_secret_file {secret_file} is empty"]),
        "bom": (file, ["the app secret in options.app_secret_file", "byte-order mark"]),
        "unset": (env.format("UNSET"), ["environment variable META_SECRET_UNSET (options.app_secret_env) is not set"]),
        "blank": (env.format("BLANK"), ["META_SECRET_BLANK (options.app_secret_env) is set but blank"]),
    }[kind]


@pytest.mark.parametrize("kind", ["open to others", "missing", "empty", "bom", "unset", "blank"])
def test_an_app_secret_that_cannot_be_used_stops_the_run_before_it_starts(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("FB_TOKEN", "fb-token-value-1")
    monkeypatch.delenv("META_SECRET_UNSET", raising=False)
    monkeypatch.setenv("META_SECRET_BLANK", " ")
    options, words = bad_app_secret(tmp_path, kind)
    path = write(tmp_path, facebook(options))
    monkeypatch.chdir("/")
    result = CliRunner().invoke(app, ["run", "--config", str(path), "--quiet"])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("archiver: error: account fb: ")
    assert all(word in result.output for word in words), result.output
    assert "APPSECRETVALUE" not in result.output and not (tmp_path / "arch").exists()


def test_a_run_signs_calls_with_an_app_secret_file_from_any_folder(tmp_path, monkeypatch):
    hospital = Hospital(tmp_path, monkeypatch, app_secret="meta-app-secret-4f9a2c")
    monkeypatch.delenv("META_APP_SECRET")
    (tmp_path / "appsecret").write_text("meta-app-secret-4f9a2c\n")
    (tmp_path / "appsecret").chmod(0o600)
    try:
        hospital.state.add_post(hospital.page, "Hello", ago(days=1))
        hospital.start()
        config = hospital.config("facebook")
        config.write_text(
            config.read_text().replace('app_secret_env = "META_APP_SECRET"', 'app_secret_file = "appsecret"')
        )
        monkeypatch.chdir("/")
        result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
        assert result.exit_code == 0, result.output
        proofs = {q for p, q, _ in hospital.server.requests_log if not p.startswith("/cdn/")}
        assert proofs and all("appsecret_proof=%5Btoken%5D" in q for q in proofs)  # the server checked each
        proof = hmac.new(b"meta-app-secret-4f9a2c", TOKEN.encode(), hashlib.sha256).hexdigest()
        hospital.assert_never_written(TOKEN, "meta-app-secret-4f9a2c", proof)
    finally:
        hospital.stop()
