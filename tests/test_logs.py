"""Logs: JSON lines off a terminal, and no resolved token in any record whoever logs it."""

from __future__ import annotations

import json
import logging

from archiver.config import AccountConfig, resolve_token
from archiver.logs import setup_logging

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
