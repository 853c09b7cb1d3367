"""`archiver doctor` on answers nobody planned for, and what its report (mailed by cron, sent by --alert) names.

A credential check is one request sent as a run sends its own (http.check_request): a page that is not JSON (a
captive portal's, a proxy's) or a redirect fails that account's check, on one line naming the host, and doctor
goes on; a redirect is never followed, wherever it points. The report names no case folder, and warns of an
http:// webhook."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.bundle.staging import MARKER
from archiver.cli import app
from archiver.demo.loopback import Fault
from archiver.http import origin_of

from . import test_doctor, test_phi_alerts
from .test_faults import HARNESSES
from .test_phi_alerts import SMTP_PASSWORD, WEBHOOK_TOKEN, alerts_toml

archived = test_doctor.archived  # the fixture: a Mastodon archive after one run
channels = test_phi_alerts.channels  # the fixture: a real SMTP server and webhook receiver on loopback

TOKEN = "tok-doctor-Zq7-8842"


class Elsewhere:
    """Another host (`localhost`, where the platform is 127.0.0.1): every request that reaches it."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's hook name
                seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"id": "1", "acct": "x", "handle": "x", "data": {"username": "x"}}')

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=HARNESSES, ids=lambda h: h.platform)
def platform(request, tmp_path, monkeypatch):
    harness = request.param()
    harness.start(TOKEN)
    monkeypatch.setenv("DOCTOR_TOKEN", TOKEN)
    config = tmp_path / "archiver.toml"
    config.write_text('[archive]\ndir = "arch"\n\n' + harness.account("clinic", "DOCTOR_TOKEN"))
    yield harness, config
    harness.stop()


def account_line(output: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith(("OK   account", "FAIL account"))]
    return line


def test_a_page_that_is_not_json_fails_the_account_and_doctor_goes_on(platform):
    """A captive portal's sign-in page answered in the platform's place (HTTP 200, HTML): before, YouTube's check
    raised, and doctor printed nothing but a misleading "check the path and its permissions" (exit 2)."""
    harness, config = platform
    portal = b"<html><body>Sign in to the guest Wi-Fi to continue</body></html>"
    harness.add_fault(Fault(r".", status=200, body=portal, headers={"Content-Type": "text/html"}, times=100))
    result = CliRunner().invoke(app, ["doctor", "--config", str(config)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "config:" in result.output and "backup:" in result.output  # the other checks went on
    line = account_line(result.output)
    host = origin_of(harness.server.base_url)
    assert line.startswith(f"FAIL account clinic: {'POST' if harness.platform == 'bluesky' else 'GET'} to {host} ")
    assert "answered HTTP 200 with something other than JSON (a captive portal's sign-in page" in line, line
    assert "Wi-Fi" not in result.output and TOKEN not in result.output


def test_a_redirect_is_a_failed_check_and_is_not_followed(platform):
    """A credential check asks the platform itself: a Location would take the token (a query's key=, a login's
    body on a 307) to wherever it points, and what answers there proves nothing. Before, six of the seven checks
    followed it to the other host and passed."""
    harness, config = platform
    elsewhere = Elsewhere()
    try:
        location = f"{elsewhere.base}/captured/maria-lopez?key={TOKEN}"
        for status in (302, 307):
            harness.clear_faults()
            harness.add_fault(Fault(r".", status=status, body=b"", headers={"Location": location}, times=100))
            result = CliRunner().invoke(app, ["doctor", "--config", str(config)])
            assert result.exit_code == 1, result.output
            line = account_line(result.output)
            host = origin_of(harness.server.base_url)
            assert f"to {host} answered HTTP {status}, a redirect, not followed" in line, line
            assert elsewhere.base not in result.output and "maria-lopez" not in result.output
            assert TOKEN not in result.output
        assert elsewhere.seen == []
    finally:
        elsewhere.stop()


def test_a_bug_in_one_credential_check_fails_that_account_only(archived, monkeypatch):
    """An answer nobody expected that a connector does not handle: one failed line, named by the exception's type
    (its message may quote a URL or the answer), and the checks after it still run."""
    from archiver.connectors.mastodon import MastodonConnector

    def broken(self, account, token, timeout):
        raise KeyError("https://mastodon.example/?access_token=x and the answer's text")

    monkeypatch.setattr(MastodonConnector, "check_credential", broken)
    result = CliRunner().invoke(app, ["doctor", "--config", str(archived.config())])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception  # no KeyError
    assert (
        "FAIL account clinic: unexpected KeyError in the credential check (a bug: report it); the other checks "
        "went on" in result.output
    ), result.output
    assert "access_token" not in result.output and "OK   signing key" in result.output


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://chat.intranet.example:8065/hooks/xq4secretpath", True),
        ("http://127.0.0.1:9/hooks/xq4secretpath", False),  # loopback: a local relay
        ("https://chat.intranet.example/hooks/xq4secretpath", False),
    ],
)
def test_an_http_webhook_beyond_loopback_is_a_warning(archived, url, warned):
    """Accepted without a token (its messages hold no PHI, an intranet chat may have no https://), but said: the
    messages and the hook's URL, a chat service's secret, cross the network in clear. Named by scheme and host."""
    config = archived.config()
    config.write_text(config.read_text() + f'\n[alerts.webhook]\nurl = "{url}"\n')
    result = CliRunner().invoke(app, ["doctor", "--config", str(config)])
    lines = [line for line in result.output.splitlines() if line.startswith("WARN alerts webhook")]
    if warned:
        assert lines == [
            "WARN alerts webhook: http://chat.intranet.example:8065/... is not https://: the alerts and the webhook's "
            "URL (a chat hook's secret) cross the network in clear; give [alerts.webhook] url its https:// address"
        ], result.output
    else:
        assert lines == [], result.output
    assert "xq4secretpath" not in result.output


def test_what_a_stopped_export_left_is_not_named_by_its_case_folder(archived, channels, monkeypatch):
    """The staging folder sits beside --out, often a case's folder named after a person: doctor's report, mailed by
    cron and sent by --alert, names the marker in the archive folder instead, which names the folder."""
    mailbox, smtp_port, hooks = channels
    monkeypatch.setenv("ALERT_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("ALERT_TEST_HOOK_TOKEN", WEBHOOK_TOKEN)
    case = archived.tmp_path / "cases" / "maria-lopez-complaint"
    staging = case.parent / f".{case.name}.partial-1"
    staging.mkdir(parents=True)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    marker = archived.tmp_path / "arch" / MARKER
    pid = int(ended.stdout)  # a process that has ended: its export is not at work
    marker.write_text(json.dumps({"staging": str(staging), "pid": pid, "host": socket.gethostname()}))
    config = archived.config()
    config.write_text(config.read_text() + "\n" + alerts_toml(smtp_port, hooks.url))
    result = CliRunner().invoke(app, ["doctor", "--config", str(config), "--alert"])
    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("WARN export staging")]
    assert line == (
        f"WARN export staging: an export stopped on the way (pid {pid}) left an unfinished bundle holding PHI beside "
        f"its --out (the folder {marker} names); the next `archiver export` removes it, or remove it yourself"
    )
    [(_, payload)] = hooks.posts
    [mail] = mailbox.messages
    sent = json.dumps(payload) + mail.get_payload(decode=True).decode()
    assert "export staging" in sent and str(Path(MARKER)) in sent
    for said in (result.output, sent):
        assert "maria-lopez" not in said and "cases" not in said
