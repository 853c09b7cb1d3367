"""URLs in the config that would put a credential on the network in clear, or into every WARC record and error:
an account's api_base and URL options over http:// beyond loopback (the token goes with every request), and a
user name and password before any URL's host. Both are bad input, exit 2, one line naming the file, the account
and the key, and never the password."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.config import load_config

PASSWORD = "GatewayPassw0rd-77"
# Hosts that never answer (.invalid, RFC 6761; documentation addresses, RFC 5737 and 3849): were a refusal to
# regress, the run would still call no one.


def write(tmp_path: Path, api_base: str, options: str = "", extra: str = "", platform: str = "mastodon") -> Path:
    account = 'account = "clinic.example"\n' if platform == "bluesky" else ""
    path = tmp_path / "archiver.toml"
    path.write_text(
        f'[archive]\ndir = "arch"\n\n[[accounts]]\nname = "clinic"\nplatform = "{platform}"\n'
        f'api_base = "{api_base}"\n{account}token_env = "CLINIC_TOKEN"\n{options}\n{extra}',
        "utf-8",
    )
    return path


def refused(path: Path, *words: str) -> str:
    """`archiver run` on `path`: exit 2, one line naming the file and `words`, never the password."""
    result = CliRunner().invoke(app, ["run", "--config", str(path), "--quiet"])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith(f"archiver: error: {path}: "), result.output
    assert PASSWORD not in result.output and "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output
    assert not (path.parent / "arch").exists()
    return result.output


@pytest.mark.parametrize(
    ("api_base", "options", "key"),
    [
        ("http://mastodon.clinic.invalid", "", "accounts[0].api_base (account clinic)"),
        ("http://192.0.2.10:8080/api", "", "accounts[0].api_base (account clinic)"),
        ("http://[2001:db8::1]/", "", "accounts[0].api_base (account clinic)"),
        ("https://bsky.invalid", 'options = { pds = "http://pds.clinic.invalid" }', "accounts[0].options.pds"),
        ("https://bsky.invalid", 'options = { appview = "http://appview.invalid" }', "accounts[0].options.appview"),
        ("https://bsky.invalid", 'options = { plc_directory = "http://plc.invalid" }', "options.plc_directory"),
    ],
)
def test_an_account_url_in_clear_beyond_loopback_is_refused(tmp_path, monkeypatch, http_waits, api_base, options, key):
    monkeypatch.setenv("CLINIC_TOKEN", "clinic-token-value-1")
    platform = "bluesky" if options else "mastodon"
    output = refused(write(tmp_path, api_base, options, platform=platform), key, "would travel in clear")
    assert "(account clinic)" in output and "use its https:// URL" in output


@pytest.mark.parametrize(
    ("api_base", "options", "extra", "key"),
    [
        (f"https://archiver:{PASSWORD}@gateway.clinic.invalid/mastodon", "", "", "accounts[0].api_base"),
        (f"http://archiver:{PASSWORD}@127.0.0.1:8000", "", "", "accounts[0].api_base"),  # loopback or not
        (f"https://:{PASSWORD}@gateway.clinic.invalid", "", "", "accounts[0].api_base"),
        (f"https://archiver:{PASSWORD}@gateway.invalid:99999/", "", "", "accounts[0].api_base"),  # and a bad port
        (f"https://archiver:{PASSWORD}@gateway.invalid/ x", "", "", "accounts[0].api_base"),  # and a bad pattern
        ("https://bsky.invalid", f'options = {{ pds = "https://u:{PASSWORD}@pds.invalid" }}', "", "options.pds"),
        ("https://social.invalid", "", f'[alerts]\ndatasette_url = "https://u:{PASSWORD}@archive.invalid"\n',
         "alerts.datasette_url"),
        ("https://social.invalid", "", f'[alerts.webhook]\nurl = "https://u:{PASSWORD}@hooks.invalid/x"\n',
         "alerts.webhook.url"),
    ],
)  # fmt: skip
def test_a_user_name_and_password_in_a_url_is_refused_and_not_repeated(
    tmp_path, monkeypatch, api_base, options, extra, key
):
    monkeypatch.setenv("CLINIC_TOKEN", "clinic-token-value-1")
    platform = "bluesky" if "pds" in options else "mastodon"
    refused(write(tmp_path, api_base, options, extra, platform=platform), key)
    status = CliRunner().invoke(app, ["status", "--config", str(tmp_path / "archiver.toml")])
    assert status.exit_code == 2 and PASSWORD not in status.output


def test_user_info_errors_name_the_account_and_show_only_the_host(tmp_path, http_waits):
    output = refused(write(tmp_path, f"https://archiver:{PASSWORD}@gateway.clinic.invalid/mastodon"))
    assert (
        "accounts[0].api_base (account clinic): it holds a user name or password before its host "
        "('https://gateway.clinic.invalid/...', only its scheme and host shown)"
    ) in output


@pytest.mark.parametrize(
    "base",
    ["http://127.0.0.1:9", "http://127.8.9.10:9/api", "http://localhost:9", "http://[::1]:9", "https://x.example"],
)
def test_loopback_and_https_are_accepted(tmp_path, base):
    """The tests and the demo serve their sample platforms on http://127.0.0.1; a local proxy does the same."""
    options = f'options = {{ pds = "{base}", appview = "{base}", plc_directory = "{base}" }}'
    (account,) = load_config(write(tmp_path, base, options, platform="bluesky")).accounts
    assert account.api_base == base.rstrip("/") and account.options["pds"] == base
    assert load_config(write(tmp_path, base)).accounts[0].api_base == base.rstrip("/")
