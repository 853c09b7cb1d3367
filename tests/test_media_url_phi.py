"""A media file's URL can carry the name it was uploaded under: a Messenger attachment's `file_url` ends in the
patient's own file name (`.../<id>_n.pdf/Maria-Lopez-biopsy-results-DOB-1971-04-12.pdf?oh=...&oe=...`). That
name is content: the archive keeps it behind its sign-in, and nothing outside the archive may repeat it (the run
output, which is the cron log; the JSON log lines; `archiver status`; account_runs and run_results; the alert
webhook and e-mail). A file the CDN refuses, fails (5xx after the retries) or never answers is named by its host
and the WARC record of its answer (http.media_label), and since request revision 2 of the Graph connectors it
leaves its message archived without it, the next run asking again; a capture made at revision 1, where the
failure stopped the account, still replays as captured."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.connectors.facebook import FacebookConnector
from archiver.demo.graph_server import MEDIA_PREFIX
from archiver.demo.loopback import Fault
from archiver.scan.alerts import without_url_paths
from tests.graph_clinic import ANN, Hospital, ago
from tests.revisions import captured_at_revision_1, verify_replay
from tests.test_phi_alerts import Hooks

PHI_NAME = "Maria-Lopez-biopsy-results-DOB-1971-04-12.pdf"
LEAKS = ("Maria-Lopez", "biopsy", "1971-04-12", "987654321_n.pdf", "oe=6A1B2C3D")
FAULTS = {
    "403": dict(status=403),
    "503": dict(status=503),
    "timeout": dict(delay=2.0),  # request_timeout is 0.5 s: no answer in time, every attempt
    "dropped": dict(drop_connection=True),
}


@pytest.fixture
def hooks():
    receiver = Hooks()
    yield receiver
    receiver.stop()


def patient_file(hospital: Hospital) -> dict:
    """A Messenger message from a patient with a PDF whose URL ends in the patient's file name (Meta's shape)."""
    state = hospital.state
    conversation = state.add_conversation(hospital.page, "messenger", ANN)
    message = state.add_message(conversation, ANN, "Here are my results", ago(hours=3), images=[(b"x", "x.png")])
    path = f"{MEDIA_PREFIX}987654321_n.pdf/{PHI_NAME}"
    state.media[path] = b"%PDF-1.4 the results"
    attachment = message["attachments"]["data"][0]
    attachment.pop("image_data")
    attachment.update(
        {"mime_type": "application/pdf", "name": PHI_NAME, "file_url": f"{state.base_url}{path}?oh=abc&oe=6A1B2C3D"}
    )
    return message


def run(hospital: Hospital, hooks: Hooks, *args: str) -> tuple[int, str]:
    extra = f'\n[alerts]\nseverity = "high"\n[alerts.webhook]\nurl = "{hooks.url}"\n'
    config = hospital.config("facebook", extra=extra, archive_extra="retries = 1\nrequest_timeout = 0.5")
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet", "--verbose", *args])
    status = CliRunner().invoke(app, ["status", "--config", str(config)])
    return result.exit_code, result.output + status.output


def outside_the_archive(hospital: Hospital, hooks: Hooks, output: str) -> str:
    """Everything a run put outside the archive's items: output (stdout, stderr's log lines), what account_runs
    and run_results keep (errors, the summary with its notices), and every webhook body."""
    rows = hospital.rows("SELECT coalesce(error, '') FROM account_runs") + hospital.rows(
        "SELECT coalesce(summary, '') FROM run_results"
    )
    return "\n".join([output, *(str(r[0]) for r in rows), *(json.dumps(body) for _, body in hooks.posts)])


def assert_never_named(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} in: {[line for line in text.splitlines() if leak in line][:3]}"


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("failure", list(FAULTS))
def test_a_file_not_fetched_is_named_by_host_and_record_and_the_next_run_asks_again(
    tmp_path, monkeypatch, http_waits, hooks, failure, as_json
):
    hospital = Hospital(tmp_path, monkeypatch)
    patient_file(hospital)
    server = hospital.start()
    try:
        fault = Fault(r"biopsy", times=10_000, **FAULTS[failure])
        server.faults.append(fault)
        code, output = run(hospital, hooks, *(["--json"] if as_json else []))
        assert code == 0, output
        assert fault.matched == (1 if failure == "403" else 2)  # a refusal is not retried; the others are, once
        assert hospital.rows("SELECT status FROM account_runs") == [("ok",)]
        assert len(hospital.rows("SELECT item_key FROM items WHERE kind = 'message'")) == 1  # kept without it
        assert hospital.rows("SELECT url FROM media_files WHERE url LIKE '%987654321%'") == []
        text = outside_the_archive(hospital, hooks, output)
        assert_never_named(text)
        host = re.escape(server.base_url.removeprefix("http://"))
        if failure == "403":
            said = rf"media file from {host} \(WARC record <urn:uuid:[0-9a-f-]+>\) answered HTTP 403; kept the item"
        else:
            said = rf"media file from {host}: .*; kept the item without it, and the next run asks for it again"
        assert re.search(said, text), text
        # The next run asks again, and keeps the file.
        server.faults.remove(fault)
        code, output = run(hospital, hooks)
        assert code == 0, output
        assert len(hospital.rows("SELECT url FROM media_files WHERE url LIKE '%987654321%'")) == 1
        assert_never_named(outside_the_archive(hospital, hooks, output))
        # The failed download replays as it was captured: the same rows.
        hospital.assert_rebuild_equal("facebook")
        replayed = verify_replay(hospital.config("facebook"))
        assert replayed.exit_code == 0, replayed.output
    finally:
        hospital.stop()


@pytest.mark.parametrize("failure", ["503", "timeout"])
def test_a_capture_of_revision_1_fails_its_account_without_naming_the_file_and_still_replays(
    tmp_path, monkeypatch, http_waits, hooks, failure
):
    """Revision 1 of the Graph connectors stopped the account when a file failed: such a capture replays as it was
    made, and its error, which goes to every alert channel, names the file's host (and record), not its URL."""
    hospital = Hospital(tmp_path, monkeypatch)
    hospital.state.add_post(hospital.page, "Open day on Saturday", ago(days=1))  # archived before the messages
    patient_file(hospital)
    server = hospital.start()
    try:
        server.faults.append(Fault(r"biopsy", times=10_000, **FAULTS[failure]))
        with captured_at_revision_1(monkeypatch, FacebookConnector):
            code, output = run(hospital, hooks)
        assert code == 1, output
        [(error,)] = hospital.rows("SELECT error FROM account_runs")
        host = server.base_url.removeprefix("http://")
        assert error.startswith(f"GET media file from {host}: "), error
        assert_never_named(outside_the_archive(hospital, hooks, output))
        [failed] = [body for _, body in hooks.posts if body.get("event") == "run-failed"]
        assert failed["accounts"][0]["error"].startswith(f"GET media file from {host}: ")
        hospital.assert_rebuild_equal("facebook")
    finally:
        hospital.stop()


def test_an_alert_cuts_every_url_in_an_error_to_its_host():
    """The backstop behind the errors' own wording: an alert leaves the network, so a URL in an account's error
    goes out as its scheme and host only (the run log and `archiver status` keep the whole line)."""
    error = (
        "GET https://cdn.fbsbx.com/v/t59/1_n.pdf/Maria-Lopez.pdf?oh=a&oe=b: HTTP 500 after 4 attempt(s) "
        "(WARC record <urn:uuid:1>); see https://user:pw@gw.example:8443/x, or https://h.example."
    )
    assert without_url_paths(error) == (
        "GET https://cdn.fbsbx.com/…: HTTP 500 after 4 attempt(s) (WARC record <urn:uuid:1>); see "
        "https://[REDACTED]@gw.example:8443/…, or https://h.example."
    )


def test_the_rebuilt_database_is_the_live_one_for_a_failed_file(tmp_path, monkeypatch, http_waits, hooks):
    """verify --replay compares every replayed table: a file that failed leaves no difference."""
    hospital = Hospital(tmp_path, monkeypatch)
    patient_file(hospital)
    server = hospital.start()
    try:
        server.faults.append(Fault(r"biopsy", status=502, times=10_000))
        assert run(hospital, hooks)[0] == 0
        live = sqlite3.connect(hospital.archive / "archive.db")
        media = live.execute("SELECT media FROM item_versions WHERE kind = 'message'").fetchone()[0]
        live.close()
        assert '"sha256"' not in media  # the message's attachment says it was not captured
        result = verify_replay(hospital.config("facebook"))
        assert result.exit_code == 0, result.output
    finally:
        hospital.stop()
