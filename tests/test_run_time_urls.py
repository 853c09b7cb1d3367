"""URLs a run meets that no config check saw: a PDS named by a DID document, a media URL from a post. The session
never sends the account's credential in clear beyond loopback, whoever named the URL (review 2026-11-24p, 4), and
the account's one-line error names the host, not the path, and what to do."""

from __future__ import annotations

import json
import sqlite3

from typer.testing import CliRunner

from archiver.cli import app
from archiver.demo.loopback import Reply
from tests.test_bluesky_run import APP_PASSWORD, BskyClinic

PDS = "http://pds.clinic.invalid"  # beyond loopback, in clear: reached through the sample server as a proxy


def test_a_pds_in_clear_named_by_a_did_document_never_gets_the_app_password(tmp_path, monkeypatch):
    clinic = BskyClinic(tmp_path, monkeypatch)
    try:
        server = clinic.server
        named = server._did_document

        def in_clear(did: str) -> Reply:
            reply = named(did)
            document = json.loads(reply.body)
            for service in document.get("service", []):
                service["serviceEndpoint"] = PDS
            return Reply.json(reply.status, document)

        monkeypatch.setattr(server, "_did_document", in_clear)
        monkeypatch.setenv("HTTP_PROXY", server.base_url)  # every http:// request goes through the sample server
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        result = CliRunner().invoke(app, ["run", "--config", str(clinic.config()), "--quiet"])
        assert result.exit_code == 1, result.output
        logins = [entry for entry in server.requests_log if "createSession" in str(entry)]
        assert logins == []  # the app password was never sent
        assert any("listRecords" in str(entry) for entry in server.requests_log)  # public reads went there
        conn = sqlite3.connect(tmp_path / "arch" / "archive.db")
        [(status, error)] = conn.execute("SELECT status, error FROM account_runs").fetchall()
        conn.close()
        assert status == "failed"
        assert f"credential would travel in clear to {PDS} (not https://, not loopback)" in error, error
        assert "use the platform's https:// address" in error and "/xrpc/" not in error
        assert APP_PASSWORD not in result.output and len(error.splitlines()) == 1
    finally:
        clinic.server.stop()
