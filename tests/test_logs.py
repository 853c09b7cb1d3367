"""Logs: JSON lines off a terminal, and no resolved token in any record whoever logs it."""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import quote, unquote

from archiver.config import AccountConfig, resolve_token
from archiver.http import Redactor
from archiver.logs import redact_secrets, register_secret, secret_forms, setup_logging

from .test_mastodon_run import Clinic


def test_json_lines_and_tokens_masked(capsys, monkeypatch):
    monkeypatch.setenv("SOME_TOKEN", "tok-LOGS-82hf61")
    token = resolve_token(AccountConfig("a", "mastodon", "http://h", token_env="SOME_TOKEN"))
    setup_logging(verbose=True, json_lines=True)
    logging.getLogger("somewhere.else").warning("request with %s failed", f"Bearer {token}")
    try:
        raise RuntimeError(f"boom {token}")
    except RuntimeError:
        logging.getLogger("x").exception("failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["message"] == "request with Bearer [REDACTED] failed"
    assert lines[0]["level"] == "warning" and lines[0]["logger"] == "somewhere.else" and lines[0]["time"]
    assert "boom [REDACTED]" in lines[1]["exception"]
    assert token not in json.dumps(lines)


def test_verbose_run_logs_json_without_the_token(tmp_path, monkeypatch):
    clinic = Clinic(tmp_path, monkeypatch)
    try:
        from typer.testing import CliRunner

        from archiver.cli import app

        result = CliRunner().invoke(app, ["run", "--config", str(clinic.config()), "-q", "-v"])
        assert result.exit_code == 0
        logged = result.stderr
        assert logged.strip(), "a verbose run logs its accounts"
        for line in logged.splitlines():
            entry = json.loads(line)
            assert set(entry) >= {"time", "level", "logger", "message"}
        assert "mastodon-test-token" not in logged + result.stdout
    finally:
        clinic.stop()
        logging.getLogger().handlers.clear()


def test_a_token_is_masked_as_a_server_may_echo_it_decoded_or_with_lower_case_hex():
    """X's app-only bearer tokens hold a literal `%2B` and `%3D`: a server that decoded one echoes `+` and `=`,
    and an encoder may write `%2b`. The log filter and the HTTP layer's Redactor mask the same forms, from one
    list (secret_forms); a form under 4 characters is not masked, whatever it is a form of."""
    token = "AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid%2BULvsea4JtiGRiSDSJSI%3DEUifiRBkKG5E2Xz"
    slashed = "tok/LOGS+92=zz"

    def lower_hex(text: str) -> str:
        return re.sub(r"%[0-9A-F]{2}", lambda hex_digits: hex_digits.group(0).lower(), text)

    echoes = [
        unquote(token),  # "…0+uSeid+ULvsea…SJSI=EUif…"
        json.dumps(unquote(token))[1:-1],
        lower_hex(token),
        lower_hex(quote(slashed, safe="")),  # tok%2fLOGS%2b92%3dzz
        lower_hex(quote(slashed)),  # tok/LOGS%2b92%3dzz
    ]
    for secret in (token, slashed):
        register_secret(secret)
    redactor = Redactor([token, slashed])
    for echo in echoes:
        assert redact_secrets(f"error: {echo}!") == "error: [REDACTED]!", echo
        assert redactor.text(f"error: {echo}!") == "error: [REDACTED]!", echo
        assert redactor.bytes(f"error: {echo}!".encode()) == b"error: [REDACTED]!", echo
    assert "AB" not in secret_forms("%41%42") and secret_forms("%41%42")  # "AB" would mask ordinary text
