"""archiver.toml: validation errors name the key and the fix; exit code 2 from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.checkpoints import PRIVATE_KEY
from archiver.cli import app
from archiver.config import EXAMPLE_CONFIG, load_config, resolve_token
from archiver.errors import ConfigError

GOOD = """
[archive]
dir = "arch"

[[accounts]]
name = "clinic"
platform = "mastodon"
api_base = "https://social.example/"
account = "@clinic"
token_env = "CLINIC_TOKEN"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "archiver.toml"
    path.write_text(text)
    return path


def test_good_config_resolves_paths_relative_to_the_file(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.archive.dir == (tmp_path / "arch").resolve()
    assert cfg.archive.database == cfg.archive.dir / "archive.db"
    assert cfg.archive.warc_dir == cfg.archive.dir / "warcs"
    assert cfg.archive.recheck_days == 14
    (account,) = cfg.accounts
    assert account.api_base == "https://social.example"
    assert account.credential_ref == "$CLINIC_TOKEN"
    assert len(cfg.sha256) == 64


def test_example_config_written_by_init_is_valid(tmp_path):
    cfg = load_config(write(tmp_path, EXAMPLE_CONFIG))
    assert [a.name for a in cfg.accounts] == ["clinic-mastodon"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t.replace('platform = "mastodon"', 'platform = "myspace"'), "accounts[0].platform: 'myspace'"),
        (lambda t: t.replace('token_env = "CLINIC_TOKEN"', ""), "accounts[0]: set exactly one of token_env"),
        (lambda t: t + 'token_file = "/x"\n', "accounts[0]: set exactly one of token_env"),
        (lambda t: t.replace('dir = "arch"', 'dir = "arch"\nwarc_size = 5'), "archive: unknown key warc_size"),
        (
            lambda t: t.replace('api_base = "https://social.example/"', 'api_base = "social.example"'),
            "accounts[0].api_base: 'social.example' is not valid",
        ),
        (lambda t: t.replace("[archive]", "[archive"), "not valid TOML"),
        (lambda t: t.replace('name = "clinic"', 'name = "has space"'), "accounts[0].name"),
        (lambda t: t + t[t.index("[[accounts]]") :], "accounts[1].name: 'clinic' is used twice"),
        (lambda t: t.replace('dir = "arch"', ""), "archive: 'dir' is a required property; add it"),
        (lambda t: t + '[backup]\nto = "/mnt/b"\nmax_age_hours = 0\n', "backup.max_age_hours: 0 is less than"),
        (lambda t: t + "[backup]\nmax_age_hours = 24\n", "backup: 'to' is a required property"),
        (
            lambda t: "accounts = []\n" + t[: t.index("[[accounts]]")],
            "accounts: the list is empty; add an [[accounts]]",
        ),
        (
            lambda t: t.replace('api_base = "https://social.example/"', 'api_base = "https://social.example/ x"'),
            "accounts[0].api_base: 'https://social.example/ x' is not valid",
        ),
        (lambda t: t.replace('account = "@clinic"', 'account = ""'), "accounts[0].account: empty; give a value"),
        (
            lambda t: t.replace('platform = "mastodon"', 'platform = "facebook"').replace('account = "@clinic"', ""),
            "accounts[0]: no facebook account named; set options.page_id (or account) to the Page's numeric id",
        ),
        (
            lambda t: t.replace('platform = "mastodon"', 'platform = "instagram"').replace('account = "@clinic"', ""),
            "accounts[0]: no instagram account named; set options.ig_user_id (or account)",
        ),
    ],
)
def test_bad_config_gets_one_line_naming_the_key(tmp_path, change, expected):
    path = write(tmp_path, change(GOOD))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message


def test_cli_exits_2_on_bad_config_and_touches_nothing(tmp_path):
    path = write(tmp_path, GOOD.replace('platform = "mastodon"', 'platform = "myspace"'))
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    assert "accounts[0].platform" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "arch").exists()


def test_missing_config_file_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["status", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "archiver init" in result.output


def test_init_writes_example_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "archiver.toml"
    assert CliRunner().invoke(app, ["init", "--config", str(path)]).exit_code == 0
    assert path.read_text() == EXAMPLE_CONFIG
    again = CliRunner().invoke(app, ["init", "--config", str(path)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_init_puts_the_key_in_the_archive_folder_it_writes_into_the_config(tmp_path):
    """The README's setup: the archive lives apart from the config; its key must be where runs will look."""
    path, folder = tmp_path / "etc" / "archiver.toml", tmp_path / "var" / "archiver"
    result = CliRunner().invoke(app, ["init", "--config", str(path), "--dir", str(folder)])
    assert result.exit_code == 0, result.output
    assert load_config(path).archive.dir == folder
    assert f"generated the archive's signing key {folder / 'keys' / PRIVATE_KEY} (mode 0600)" in result.output
    assert not (path.parent / "archive").exists()
    exported = CliRunner().invoke(app, ["key", "export", "--config", str(path)])
    assert exported.exit_code == 0 and exported.output.startswith("-----BEGIN PUBLIC KEY-----")


def test_key_export_without_a_key_says_what_creates_one(tmp_path):
    path = write(tmp_path, GOOD)
    result = CliRunner().invoke(app, ["key", "export", "--config", str(path)])
    assert result.exit_code == 2
    assert "signing key not found; `archiver checkpoint` (or the first run) creates it" in result.output
    assert "archiver init" not in result.output  # init refuses a config that exists


def test_token_by_reference_only(tmp_path, monkeypatch):
    cfg = load_config(write(tmp_path, GOOD))
    monkeypatch.delenv("CLINIC_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="CLINIC_TOKEN is not set"):
        resolve_token(cfg.accounts[0])
    monkeypatch.setenv("CLINIC_TOKEN", " s3cret-value \n")
    assert resolve_token(cfg.accounts[0]) == "s3cret-value"
    token_file = tmp_path / "tok"
    token_file.write_text("file-secret\n")
    token_file.chmod(0o600)
    cfg2 = load_config(write(tmp_path, GOOD.replace('token_env = "CLINIC_TOKEN"', 'token_file = "tok"')))
    assert resolve_token(cfg2.accounts[0]) == "file-secret"
    assert "file-secret" not in repr(cfg2)
    # Two lines pasted into the file: refused without quoting it (requests would print it, escaped, in an error
    # that ends up in the run's output and its append-only results).
    token_file.write_text("file-secret-1\nsecond-line-2\n")
    with pytest.raises(ConfigError) as refused:
        resolve_token(cfg2.accounts[0])
    assert "line break" in str(refused.value) and str(token_file) in str(refused.value)
    assert "file-secret" not in str(refused.value) and "second-line" not in str(refused.value)
    from archiver.logs import redact_secrets

    assert "file-secret-1" not in redact_secrets(repr("file-secret-1\nsecond-line-2"))


def test_platform_options_are_checked_against_the_platform_schema(tmp_path, monkeypatch):
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"api_version": {"type": "string", "pattern": "^v[0-9]+\\.0$", "default": "v24.0"}},
    }
    monkeypatch.setattr("archiver.config.platform_options_schema", lambda platform: schema)
    good = write(tmp_path, GOOD.replace('token_env = "CLINIC_TOKEN"', 'token_env = "CLINIC_TOKEN"\noptions = {}'))
    assert load_config(good).accounts[0].options == {"api_version": "v24.0"}  # the schema's default
    bad = write(
        tmp_path,
        GOOD.replace('token_env = "CLINIC_TOKEN"', 'token_env = "CLINIC_TOKEN"\noptions = {api_version = "24"}'),
    )
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.options\.api_version: '24' is not valid"):
        load_config(bad)
    unknown = write(
        tmp_path, GOOD.replace('token_env = "CLINIC_TOKEN"', 'token_env = "CLINIC_TOKEN"\noptions = {versoin = "v1.0"}')
    )
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.options: unknown key versoin"):
        load_config(unknown)


def test_options_on_a_platform_without_options_are_refused(tmp_path):
    path = write(tmp_path, GOOD.replace('token_env = "CLINIC_TOKEN"', 'token_env = "CLINIC_TOKEN"\noptions = {x = 1}'))
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.options: platform mastodon takes no options"):
        load_config(path)


# An account that a run does not capture: configs of commands that need an archive but no platform.
DISABLED = """
[[accounts]]
name = "off"
platform = "mastodon"
api_base = "http://127.0.0.1:9"
token_env = "T"
enabled = false
"""


def one_account(platform: str, account: str | None) -> str:
    line = f'account = "{account}"\n' if account is not None else ""
    head = f'[archive]\ndir = "arch"\n\n[[accounts]]\nname = "a"\nplatform = "{platform}"\n'
    return f'{head}api_base = "https://x.example"\n{line}token_env = "T"\n'


@pytest.mark.parametrize(
    ("platform", "account"),
    [
        ("mastodon", "@clinic"),
        ("mastodon", "@clinic@mastodon.example"),
        ("mastodon", "@clinic@mastodön.example"),
        ("mastodon", "@clinic@social.example:8443"),
        ("mastodon", "nobody-here"),
        ("mastodon", "109876543210"),
        ("mastodon", None),
        ("x", "@riversideclinic"),
        ("x", "1234567890123456789"),
        ("x", None),
        ("bluesky", "@riverside-clinic.example.org"),
        ("bluesky", "clinic.bsky.social"),
        ("bluesky", "did:plc:z72i7hdynmk6r22z27h6tvur"),
        ("linkedin", "urn:li:organization:1001"),
        ("linkedin", "1002"),
        ("youtube", "@RiversideClinic"),
        ("youtube", "@cl·inic"),
        ("youtube", "UCRcMKY4TUlcS3jHYUoW6fYS"),
        ("youtube", None),
        ("facebook", "1000000000001"),
        ("facebook", "me"),
        ("instagram", "17841410000000002"),
    ],
)
def test_each_platform_takes_its_own_account_forms(tmp_path, platform, account):
    assert load_config(write(tmp_path, one_account(platform, account))).accounts[0].account == account


@pytest.mark.parametrize(
    ("platform", "account", "hint"),
    [
        ("mastodon", "not a handle", "@user, @user@instance.example or the numeric account id"),
        ("mastodon", "@clinic@other.example@x", "@user@instance.example"),
        ("mastodon", "https://x.example/@clinic", "@user@instance.example"),
        ("x", "@@clinic", "@username (up to 15 letters, digits or _)"),
        ("x", "clinic with space", "@username"),
        ("bluesky", "@not_a_valid_handle", "handle (@clinic.bsky.social"),
        ("bluesky", "did:plc:", "its DID"),
        ("linkedin", "organization:501", "urn:li:organization:<id>"),
        ("linkedin", "urn:li:organization:abc", "urn:li:organization:<id>"),
        ("youtube", "@", "its @handle or its channel id"),
        ("youtube", "UCshort", "UC and 22 more characters"),
        ("facebook", "clinic-page", "numeric id"),
        ("instagram", "@clinic", "numeric id"),
    ],
)
def test_a_malformed_account_is_a_config_error_naming_it(tmp_path, platform, account, hint):
    """Found by the config check, not by a run that has already written its run row."""
    path = write(tmp_path, one_account(platform, account))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: accounts[0].account: {account!r} is not valid. Set ")
    assert hint in message and "\n" not in message


@pytest.mark.parametrize("platform", ["bluesky", "linkedin"])
def test_platforms_that_name_no_own_account_need_one(tmp_path, platform):
    with pytest.raises(ConfigError, match=r"accounts\[0\]: 'account' is a required property; add it"):
        load_config(write(tmp_path, one_account(platform, None)))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620], ids=lambda mode: f"{mode:o}")
def test_a_token_file_others_can_open_is_refused_like_an_ssh_key(tmp_path, mode):
    token_file = tmp_path / "tok"
    token_file.write_text("file-secret-Zq7\n")
    token_file.chmod(mode)
    cfg = load_config(write(tmp_path, GOOD.replace('token_env = "CLINIC_TOKEN"', 'token_file = "tok"')))
    with pytest.raises(ConfigError) as refused:
        resolve_token(cfg.accounts[0])
    assert str(refused.value) == (
        f"account clinic: token_file {token_file} is mode {mode:o}, open to group or others; chmod 600 {token_file}"
    )
    token_file.chmod(0o400)
    assert resolve_token(cfg.accounts[0]) == "file-secret-Zq7"


def test_a_token_file_that_is_not_text_is_one_line(tmp_path):
    token_file = tmp_path / "tok"
    token_file.write_bytes(b"\xff\xfe secret")
    token_file.chmod(0o600)
    cfg = load_config(write(tmp_path, GOOD.replace('token_env = "CLINIC_TOKEN"', 'token_file = "tok"')))
    with pytest.raises(ConfigError, match=f"token_file {token_file} is not UTF-8 text; keep only the token"):
        resolve_token(cfg.accounts[0])


def test_an_archive_path_that_cannot_be_used_is_one_line_and_exit_2(tmp_path):
    """Python's and SQLite's own errors (a folder that is a file, a database that is not one) are said in one
    line naming the path, not as a traceback."""
    (tmp_path / "afile").write_text("not a folder")
    config = tmp_path / "archiver.toml"
    config.write_text(f'[archive]\ndir = "afile"\n{DISABLED}')
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert str(tmp_path / "afile") in result.output and "Traceback" not in result.output
    (tmp_path / "arch").mkdir()
    (tmp_path / "arch" / "archive.db").write_text("not a database, but long enough to be read as one " * 200)
    config.write_text(f'[archive]\ndir = "arch"\n{DISABLED}')
    result = CliRunner().invoke(app, ["status", "--config", str(config)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "archive database cannot be used" in result.output


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda t: t.replace("https://social.example/", "https://social.example:99999/"),
            "accounts[0].api_base: its port is not a number from 1 to 65535 ('https://social.example:99999/')",
        ),
        (
            lambda t: t.replace("https://social.example/", "https://social.example:443x"),
            "accounts[0].api_base: its port is not a number from 1 to 65535",
        ),
        (
            lambda t: t + '[alerts]\ndatasette_url = "http://127.0.0.1:80011"\n',
            "alerts.datasette_url: its port is not a number from 1 to 65535 ('http://127.0.0.1:80011')",
        ),
    ],
)
def test_a_url_with_a_port_that_cannot_be_used_is_a_config_error(tmp_path, change, expected):
    """urlsplit(url).port raises for these, wherever the URL is shown or called: found now, not mid-run."""
    path = write(tmp_path, change(GOOD))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: {expected}") and "\n" not in str(info.value)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan"])
def test_a_number_that_is_not_finite_is_refused_naming_the_key(tmp_path, value):
    """TOML has nan and inf; nan fails no comparison, so the schema's bounds let it through to requests."""
    path = write(tmp_path, GOOD.replace('dir = "arch"', f'dir = "arch"\nrequest_timeout = {value}'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    shown = value.lstrip("+")
    assert str(info.value) == f"{path}: archive.request_timeout: {shown} is not a finite number; give a number"
    result = CliRunner().invoke(app, ["doctor", "--config", str(path)])
    assert result.exit_code == 2 and "archive.request_timeout" in result.output and "Traceback" not in result.output


def test_a_non_finite_number_anywhere_is_named_by_its_key(tmp_path):
    path = write(
        tmp_path, GOOD.replace('token_env = "CLINIC_TOKEN"', 'token_env = "CLINIC_TOKEN"\noptions = {q = nan}')
    )
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.options\.q: nan is not a finite number"):
        load_config(path)


def test_running_a_disabled_account_by_name_says_it_is_not_captured(tmp_path, monkeypatch, caplog):
    """Named on the command line, a disabled account is still not captured (a run of none, exit 0, as
    tests/test_cli_bad_input.py pins), but the run says so instead of passing over it in silence."""
    from archiver.config import check_tokens

    monkeypatch.delenv("T", raising=False)
    cfg = load_config(write(tmp_path, f'[archive]\ndir = "arch"\n{DISABLED}'))
    with caplog.at_level("WARNING", logger="archiver.config"):
        check_tokens(cfg, ["off"])
    assert cfg.selected_accounts(["off"]) == []
    assert [r.getMessage() for r in caplog.records] == [
        "account off has enabled = false and is not captured; set enabled = true to capture it"
    ]
