"""Alert channels under attack or misbehaving: TLS that verifies the server, no secret in clear beyond loopback,
a recipient refused, a password beyond ASCII, a server that drips its answer or fumbles QUIT, and alerts that
never name a post's author. Real SMTP (aiosmtpd, plain, STARTTLS and implicit TLS) and HTTP servers on
loopback, and real runs where the outcome must reach the archive."""

from __future__ import annotations

import datetime
import ipaddress
import json
import smtplib
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from archiver.cli import app
from archiver.config import load_config
from archiver.connectors.bluesky import THREAD_VIEW, _BlueskyRun
from archiver.demo.loopback import Fault
from archiver.scan import delivery
from archiver.scan.alerts import alert_email, alert_payload, failure_email, failure_payload, send_flags

from . import test_phi_alerts
from .test_config import DISABLED
from .test_phi_alerts import ENV, SMTP_PASSWORD, TOKEN, free_port
from .test_phi_alerts import write_config as write_run_config

clinic = test_phi_alerts.clinic  # the sample Mastodon clinic a run captures
PASSWORD = "smtp-Pw-7Hq2-secret"


def flags(n: int = 1, key: str = "mastodon:clinic.example:1") -> list[dict]:
    return [
        {"id": i, "version_id": 100 + i, "item_key": key, "rule_id": "ssn.dashed", "category": "ssn"}
        | {"severity": "high", "reason": "a US Social Security number", "flagged_at": "x"}
        for i in range(1, n + 1)
    ]


def config_with(tmp_path: Path, alerts: str):
    path = tmp_path / "archiver.toml"
    path.write_text(f'[archive]\ndir = "arch"\n{DISABLED}\n[alerts]\n{alerts}\n', "utf-8")
    return load_config(path)


def email_toml(port: int, *extra: str, to: str = '["privacy@clinic.test"]') -> str:
    lines = ["[alerts.email]", 'smtp_host = "127.0.0.1"', f"smtp_port = {port}", 'from = "archiver@clinic.test"']
    return "\n".join([*lines, f"to = {to}", *extra])


LOGIN = ('username = "archiver"', 'password_env = "HARDENING_SMTP_PASSWORD"')


class Box:
    """An aiosmtpd handler and authenticator: the logins it saw (the password's bytes) and the messages."""

    def __init__(self, password: bytes = PASSWORD.encode()):
        self.password = password
        self.logins: list[bytes] = []
        self.messages: list[bytes] = []
        self.refuse_prefix = "\0"  # recipients whose address starts with this are refused

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's
        if address.startswith(self.refuse_prefix):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(envelope.original_content)
        return "250 OK"

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            self.logins.append(auth_data.password)
            return AuthResult(success=auth_data.password == self.password)
        return AuthResult(success=False)


@pytest.fixture
def smtp() -> Iterator[Callable[..., tuple[Box, int]]]:
    """Starts an aiosmtpd server on loopback with the options given; stops them all after the test."""
    started: list[Controller] = []

    def start(box: Box | None = None, **options) -> tuple[Box, int]:
        box = box or Box()
        options.setdefault("auth_require_tls", False)
        controller = Controller(box, hostname="127.0.0.1", port=free_port(), authenticator=box, **options)
        controller.start()
        started.append(controller)
        return box, controller.port

    yield start
    for controller in started:
        controller.stop()


def self_signed(directory: Path, prefix: str = "") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files in `directory`): a loopback TLS server's, which
    a client is told to trust as its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{prefix}cert.pem", directory / f"{prefix}key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
def tls(tmp_path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 (its PEM file, to give as ca_file) and a server context."""
    cert_file, key_file = self_signed(tmp_path, "smtp-")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return cert_file, context


@pytest.fixture
def password(monkeypatch) -> None:
    monkeypatch.setenv("HARDENING_SMTP_PASSWORD", PASSWORD)


# -- 01: TLS verifies the server ------------------------------------------------------------------------------


def test_starttls_refuses_a_certificate_nobody_vouches_for_and_trusts_the_ca_file(tmp_path, smtp, tls, password):
    cert_file, server_context = tls
    box, port = smtp(tls_context=server_context, require_starttls=True, auth_require_tls=True)
    untrusted = config_with(tmp_path, email_toml(port, "starttls = true", *LOGIN))
    answer = send_flags(untrusted, "email", flags(), None)
    assert not answer.sent and "CERTIFICATE_VERIFY_FAILED" in answer.notice, answer.notice
    assert box.logins == [] and box.messages == []  # the password and the alert stayed home

    trusted = config_with(tmp_path, email_toml(port, "starttls = true", 'ca_file = "smtp-cert.pem"', *LOGIN))
    assert trusted.alerts.email is not None and trusted.alerts.email.ca_file == cert_file
    answer = send_flags(trusted, "email", flags(), None)
    assert answer.sent, answer.notice
    assert box.logins == [PASSWORD.encode()] and len(box.messages) == 1


def test_implicit_tls_verifies_the_server_too(tmp_path, smtp, tls, password):
    cert_file, server_context = tls
    box, port = smtp(ssl_context=server_context)
    untrusted = config_with(tmp_path, email_toml(port, "implicit_tls = true", *LOGIN))
    answer = send_flags(untrusted, "email", flags(), None)
    assert not answer.sent and "CERTIFICATE_VERIFY_FAILED" in answer.notice, answer.notice
    assert box.logins == []
    trusted = config_with(tmp_path, email_toml(port, "implicit_tls = true", f'ca_file = "{cert_file}"', *LOGIN))
    answer = send_flags(trusted, "email", flags(), None)
    assert answer.sent, answer.notice
    assert box.logins == [PASSWORD.encode()] and len(box.messages) == 1


# -- 02: no secret in clear beyond loopback -------------------------------------------------------------------

HOOK_SECRET = "T0001/B0002/hookpathsecret"


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        (
            '[alerts.email]\nsmtp_host = "smtp.clinic.example"\nusername = "archiver"\npassword_env = "P"\n',
            "alerts.email.username: the SMTP login to 'smtp.clinic.example' would send the password in clear; set "
            "starttls = true (port 587) or implicit_tls = true (port 465), or relay through a server on loopback",
        ),
        (
            '[alerts.webhook]\nurl = "http://hooks.clinic.example/services/' + HOOK_SECRET + '"\ntoken_env = "T"\n',
            "alerts.webhook.token_env: the bearer token would travel in clear to 'http://hooks.clinic.example/...' "
            "(only its scheme and host shown); use its https:// URL",
        ),
        (
            '[alerts.email]\nsmtp_host = "smtp.clinic.example"\nstarttls = true\nimplicit_tls = true\n',
            "alerts.email: starttls and implicit_tls are both true; keep starttls = true (port 587) or "
            "implicit_tls = true (port 465)",
        ),
        (
            '[alerts.email]\nsmtp_host = "smtp.clinic.example"\nstarttls = true\nca_file = "nowhere.pem"\n',
            "nowhere.pem' not found; give the PEM file of the CA that signs the SMTP server's certificate",
        ),
        (
            '[alerts.email]\nsmtp_host = "smtp.clinic.example"\nstarttls = true\nca_file = "archiver.toml"\n',
            "archiver.toml' cannot be loaded as PEM certificates (",
        ),
        (
            '[alerts.email]\nsmtp_host = "smtp.clinic.example"\nca_file = "archiver.toml"\n',
            "archiver.toml' is of no use without TLS; set starttls = true or implicit_tls = true",
        ),
    ],
)
def test_a_secret_in_clear_or_an_unusable_tls_setting_is_exit_2_naming_the_key(tmp_path, alerts, message):
    path = tmp_path / "archiver.toml"
    email = alerts.startswith("[alerts.email]")
    alerts += 'from = "archiver@clinic.example"\nto = ["privacy@clinic.example"]\n' if email else ""
    path.write_text(f'[archive]\ndir = "arch"\n{DISABLED}\n{alerts}', "utf-8")
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"archiver: error: {path}: alerts.") and message in line, line
    assert HOOK_SECRET not in line
    assert not (tmp_path / "arch").exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.0.1", "localhost", "[::1]"])
def test_secrets_in_clear_stay_allowed_on_loopback(tmp_path, host):
    smtp_host = host.strip("[]")
    config = config_with(
        tmp_path,
        f'[alerts.email]\nsmtp_host = "{smtp_host}"\nusername = "a"\npassword_env = "P"\nfrom = "a@b"\nto = ["c@d"]\n'
        f'[alerts.webhook]\nurl = "http://{host}:8080/hook"\ntoken_env = "T"\n',
    )
    assert config.alerts.email is not None and config.alerts.webhook is not None


# -- 03: a recipient refused ----------------------------------------------------------------------------------


def owed(arch: Path) -> list[tuple]:
    conn = sqlite3.connect(arch / "archive.db")
    try:
        return conn.execute(
            "SELECT channel, outcome, count(*) FROM alert_deliveries GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    finally:
        conn.close()


def test_a_recipient_refused_fails_the_channel_and_the_flags_stay_owed(tmp_path, clinic, smtp, monkeypatch):
    box = Box(SMTP_PASSWORD.encode())
    box.refuse_prefix = "privacy@"
    box, port = smtp(box)
    config = write_run_config(tmp_path, clinic.base_url, port, "http://127.0.0.1:9/hook")
    config.write_text(config.read_text().split("[alerts.webhook]")[0])  # the e-mail alone
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--json"], env=ENV)
    assert result.exit_code == 0, result.output
    assert len(box.messages) == 1  # security@ got it; privacy@ did not
    notices = [n for n in json.loads(result.stdout)["notices"] if n.startswith("alert e-mail")]
    assert notices == [
        f"alert e-mail via 127.0.0.1:{port} failed: 1 of 2 recipients refused (privacy@clinic.test: 550 5.1.1 "
        "mailbox unavailable); its flags stay owed"
    ]
    [(channel, outcome, count)] = owed(tmp_path / "arch")
    assert (channel, outcome) == ("email", "failed") and count > 0
    pending = json.loads(CliRunner().invoke(app, ["alerts", "pending", "--json", "--config", str(config)]).stdout)
    assert pending[0]["owed"] == count

    box.refuse_prefix = "\0"  # the mailbox is back: the next attempt delivers to both, and they are settled
    sent = CliRunner().invoke(app, ["alerts", "send", "--config", str(config)], env=ENV)
    assert sent.exit_code == 0, sent.output
    assert owed(tmp_path / "arch") == [("email", "failed", count), ("email", "sent", count)]


# -- 04: a password beyond ASCII; any exception is a notice ---------------------------------------------------

UTF8_PASSWORD = "Geheimnis-\u00fc-2026"


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_a_password_beyond_ascii_logs_in_as_utf8(tmp_path, smtp, monkeypatch, mechanism):
    monkeypatch.setenv("HARDENING_SMTP_PASSWORD", UTF8_PASSWORD)
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    box, port = smtp(Box(UTF8_PASSWORD.encode("utf-8")), auth_exclude_mechanism=[other])
    answer = send_flags(config_with(tmp_path, email_toml(port, *LOGIN)), "email", flags(), None)
    assert answer.sent, answer.notice
    assert box.logins == [UTF8_PASSWORD.encode("utf-8")] and len(box.messages) == 1


def test_a_run_with_a_password_beyond_ascii_records_its_result_and_checkpoint(tmp_path, clinic, smtp):
    box, port = smtp(Box(UTF8_PASSWORD.encode("utf-8")))
    config = write_run_config(tmp_path, clinic.base_url, port, "http://127.0.0.1:9/hook")
    config.write_text(config.read_text().split("[alerts.webhook]")[0])
    env = {**ENV, "ALERT_TEST_SMTP_PASSWORD": UTF8_PASSWORD}
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert box.logins == [UTF8_PASSWORD.encode("utf-8")] and len(box.messages) == 1
    conn = sqlite3.connect(tmp_path / "arch" / "archive.db")
    assert conn.execute("SELECT status FROM run_results").fetchall() == [("ok",)]
    assert conn.execute("SELECT count(*) FROM checkpoints").fetchone() == (1,)
    conn.close()


def test_any_exception_on_a_channel_is_a_one_line_notice_without_its_text(tmp_path, smtp, password, monkeypatch):
    """An exception smtplib does not expect (here a UnicodeEncodeError, whose text quotes the character it could
    not encode) is the channel's failure: named by its type, its text left out, never escaping the run."""
    from archiver.scan import alerts

    def broken(self, *args, **kwargs):
        raise UnicodeEncodeError("ascii", PASSWORD, 3, 4, "ordinal not in range(128)")

    monkeypatch.setattr(alerts._SMTP, "login", broken)
    _, port = smtp()
    config = config_with(tmp_path, email_toml(port, *LOGIN))
    monkeypatch.setattr(delivery, "pending_alerts", lambda conn, a: [delivery.Owed("email", "x", flags())])
    monkeypatch.setattr(delivery, "append_delivery", lambda store, owed, answer, run_id: 1)
    notices: list[str] = []
    delivery.alert_after(SimpleNamespace(conn=None), config, "run-1", notices)  # type: ignore[arg-type]
    assert notices == [f"alert e-mail via 127.0.0.1:{port} failed: UnicodeEncodeError; its flags stay owed"]


# -- 05: an overall deadline ----------------------------------------------------------------------------------


def loopback_listener() -> socket.socket:
    """A socket on 127.0.0.1, on a free port, waiting for the one client a test's server answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    return listener


def dripping_server(answer: bytes, before: Callable[[socket.socket], None] = lambda conn: None) -> tuple[int, list]:
    """A server that drips `answer` a byte every 0.2 s to its first client (after `before`); returns its port
    and a list that gets True once the client hung up on it."""
    listener = loopback_listener()
    hung_up: list[bool] = []

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        try:
            before(conn)
            for byte in answer:
                conn.sendall(bytes([byte]))
                time.sleep(0.2)
        except OSError:
            hung_up.append(True)
        finally:
            conn.close()
            listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], hung_up


def read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)


def test_a_webhook_dripping_its_answer_fails_at_the_deadline(tmp_path):
    port, _ = dripping_server(b"HTTP/1.1 204 No Content\r\n\r\n", read_request)  # 5.6 s
    config = config_with(tmp_path, f'deadline = 1\n[alerts.webhook]\nurl = "http://127.0.0.1:{port}/hook"\n')
    started = time.monotonic()
    answer = send_flags(config, "webhook", flags(), None)
    assert time.monotonic() - started < 2.5
    assert not answer.sent
    assert answer.notice == f"alert webhook http://127.0.0.1:{port}/... failed: no answer within the deadline of 1 s"


def test_an_smtp_server_dripping_its_greeting_fails_at_the_deadline_and_is_hung_up_on(tmp_path):
    port, hung_up = dripping_server(b"220 " + b"x" * 40 + b"\r\n")  # 9 s
    config = config_with(tmp_path, "deadline = 1\n" + email_toml(port))
    started = time.monotonic()
    answer = send_flags(config, "email", flags(), None)
    assert time.monotonic() - started < 2.5
    assert answer.notice == f"alert e-mail via 127.0.0.1:{port} failed: no answer within the deadline of 1 s"
    for _ in range(20):  # the socket is shut at the deadline: the server's next byte finds nobody
        if hung_up:
            break
        time.sleep(0.1)
    assert hung_up


def test_a_tls_handshake_still_under_way_at_the_deadline_sends_nothing_after_it(tmp_path, tls):
    """ssl holds the socket during a STARTTLS handshake, so shutting it at the deadline does not stop it: the
    thread must not go on to send what the channel has already been recorded as failing to send."""
    cert_file, context = tls
    listener = loopback_listener()
    delivered: list[float] = []

    def serve() -> None:  # slow enough that the handshake ends after the deadline of 1 s
        conn, _ = listener.accept()
        conn.settimeout(10)
        try:
            conn.sendall(b"220 slow.test ESMTP\r\n")
            lines = conn.makefile("rb")
            lines.readline()  # EHLO
            conn.sendall(b"250-slow.test\r\n250 STARTTLS\r\n")
            lines.readline()  # STARTTLS
            time.sleep(0.6)
            conn.sendall(b"220 go ahead\r\n")
            time.sleep(0.6)  # each of the client's reads waits less than its timeout
            secure = context.wrap_socket(conn, server_side=True)
            lines = secure.makefile("rb")
            while line := lines.readline():
                command = line[:4].upper()
                if command == b"DATA":
                    secure.sendall(b"354 go\r\n")
                    while lines.readline() not in (b".\r\n", b""):
                        pass
                    delivered.append(time.monotonic())
                    secure.sendall(b"250 queued\r\n")
                else:
                    secure.sendall(b"221 bye\r\n" if command == b"QUIT" else b"250 ok\r\n")
        except OSError:
            pass
        finally:
            conn.close()
            listener.close()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    port = listener.getsockname()[1]
    config = config_with(tmp_path, "deadline = 1\n" + email_toml(port, "starttls = true", f'ca_file = "{cert_file}"'))
    answer = send_flags(config, "email", flags(), None)
    assert not answer.sent and "no answer within the deadline of 1 s" in answer.notice
    server.join(10)  # the handshake ends, then the client leaves without a message
    assert delivered == []


# -- 12: no author in an alert --------------------------------------------------------------------------------


def test_an_alert_names_no_item_key_so_no_author(tmp_path):
    did = "did:plc:patientjane7f3k2qz"
    keys = [_BlueskyRun.key(f"at://{did}/app.bsky.feed.post/3kabcxyz"), "mastodon:clinic.example:1177", "x:98765"]
    config = config_with(tmp_path, 'datasette_url = "https://archive.clinic.test"\n' + email_toml(25))
    owed = [flag | {"item_key": key} for flag, key in zip(flags(3), keys, strict=True)]
    payload = alert_payload(config, owed, None)
    body = alert_email(config, payload).get_content()
    for text in (body, json.dumps(payload)):
        assert did not in text and "did%3Aplc" not in text
        assert not any(key in text for key in keys)
    assert payload["flags"][0] == {
        "flag_id": 1,
        "severity": "high",
        "category": "ssn",
        "rule_id": "ssn.dashed",
        "reason": "a US Social Security number",
        "version_id": 101,
        "flag_url": "https://archive.clinic.test/archive/flag_queue?flag_id=1",
        "version_url": "https://archive.clinic.test/archive/item_versions/101",
    }
    assert "  flag: https://archive.clinic.test/archive/flag_queue?flag_id=1\n" in body
    assert "  version: https://archive.clinic.test/archive/item_versions/101\n" in body


def test_a_failed_accounts_alert_names_no_bluesky_did_or_at_uri(tmp_path, monkeypatch):
    """An AppView answering a reply under an AT URI the connector cannot read fails the account, and its error
    quotes the URI (whose DID is the commenter's): the run-failed webhook carries it cut ("at://…"), while the
    run's output and `archiver status` keep the whole line for whoever runs the archive."""
    from .test_bluesky_run import NOW, BskyClinic

    clinic = BskyClinic(tmp_path, monkeypatch)
    hooks = test_phi_alerts.Hooks()
    try:
        post = clinic.posts[-1]
        did = clinic.ann.did
        odd = f"at://{did}/app.bsky.feed.post/3kreply/again"
        record = {"text": "hi", "createdAt": NOW.isoformat()}
        reply = {"uri": odd, "cid": "bafyodd", "author": {"did": did}, "record": record}
        view = {"uri": post["uri"], "cid": post["cid"], "author": {"did": clinic.clinic.did}, "record": post["value"]}
        thread = {"thread": {"$type": THREAD_VIEW, "post": view, "replies": [{"$type": THREAD_VIEW, "post": reply}]}}
        clinic.server.faults.append(Fault(r"getPostThread", status=200, body=json.dumps(thread).encode(), times=100))
        config = clinic.config(direct_messages=False)
        config.write_text(config.read_text() + f'\n[alerts.webhook]\nurl = "{hooks.url}"\n')
        result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
        assert result.exit_code == 1, result.output
        assert odd in result.output  # the run's own output keeps the whole error
        [(_, failed)] = [post for post in hooks.posts if post[1].get("event") == "run-failed"]
        error = failed["accounts"][0]["error"]
        assert error == "not an at:// record URI: 'at://…'", error
        assert did not in json.dumps(hooks.posts) and did.split(":")[-1] not in json.dumps(hooks.posts)
    finally:
        hooks.stop()
        clinic.server.stop()


# -- 14: QUIT fumbled after the message was accepted ----------------------------------------------------------


@pytest.mark.parametrize("quit_reply", [b"421 closing\r\n", None])
def test_a_message_accepted_is_sent_whatever_the_answer_to_quit(tmp_path, quit_reply):
    """The server accepts the message (250 after DATA), then answers QUIT with 421, or never: delivered, and
    said so within the deadline (QUIT's answer is not waited for)."""
    listener = loopback_listener()
    delivered: list[bool] = []

    def serve() -> None:
        conn, _ = listener.accept()
        lines = conn.makefile("rb")
        conn.sendall(b"220 mx.test ESMTP\r\n")
        for line in lines:
            verb = line.split()[0].upper() if line.strip() else b""
            if verb == b"DATA":
                conn.sendall(b"354 go\r\n")
                while lines.readline() not in (b".\r\n", b""):
                    pass
                delivered.append(True)
                conn.sendall(b"250 queued\r\n")
            elif verb == b"QUIT":
                if quit_reply is None:
                    time.sleep(3)  # silent, past the deadline
                else:
                    conn.sendall(quit_reply)
                break
            else:
                conn.sendall(b"250 mx.test\r\n" if verb in (b"EHLO", b"MAIL", b"RCPT") else b"502 no\r\n")
        conn.close()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    config = config_with(tmp_path, "deadline = 1\n" + email_toml(listener.getsockname()[1]))
    started = time.monotonic()
    answer = send_flags(config, "email", flags(), None)
    assert delivered and answer.sent, answer.notice
    assert time.monotonic() - started < 1


def test_a_server_quoting_the_password_back_is_redacted_in_the_notice(tmp_path, smtp, password, monkeypatch):
    from archiver.scan import alerts

    def refused(self, user, password):
        raise smtplib.SMTPAuthenticationError(535, f"5.7.8 credentials {user}:{password} invalid".encode())

    monkeypatch.setattr(alerts._SMTP, "login", refused)
    _, port = smtp()
    answer = send_flags(config_with(tmp_path, email_toml(port, *LOGIN)), "email", flags(), None)
    assert not answer.sent and "535" in answer.notice and "credentials archiver:" in answer.notice
    assert PASSWORD not in answer.notice and TOKEN not in answer.notice


def test_an_unforeseen_error_reaches_the_alert_by_its_type_alone(tmp_path):
    """pipeline.py names an account's unforeseen error with Python's message, which may quote what the connector
    held (a patient's comment, a name): the run-failed alert says the type, the run log keeps the whole line."""
    config = config_with(tmp_path, email_toml(25))
    failed = [
        ("riverside", "facebook", "unexpected ValueError: invalid literal for int(): 'my MRN 44550123, Jane Roe'"),
        ("clinic-x", "x", "account clinic-x: the platform refused the token from $X_TOKEN (HTTP 401)"),
    ]
    payload = failure_payload(config, "run-1", failed)
    errors = [account["error"] for account in payload["accounts"]]
    assert errors == [
        "unexpected ValueError (a bug: its message is in the run log and `archiver status`)",
        "account clinic-x: the platform refused the token from $X_TOKEN (HTTP 401)",
    ]
    assert "Jane" not in failure_email(config, payload).get_content()
