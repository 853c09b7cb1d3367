"""Load and validate archiver.toml against schemas/config.schema.json.

Secrets are held only by reference (`token_env` or `token_file`, and a platform's `<name>_env` or
`<name>_file` options listed in SECRET_OPTIONS); `resolve_token` and `resolve_option_secret` read one at the
moment it is needed and the value never goes back into a Config object, nor into an error message.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import math
import os
import re
import ssl
import stat
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema

from .errors import ConfigError
from .logs import register_secret

DEFAULT_CONFIG = Path("archiver.toml")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountConfig:
    name: str
    platform: str
    api_base: str
    account: str | None = None
    token_env: str | None = None
    token_file: Path | None = None
    media: bool = True
    direct_messages: bool = True
    enabled: bool = True
    options: dict[str, Any] = field(default_factory=dict, hash=False)  # per platform, defaults filled in
    # The config file it came from, and its `*_file` values as written there (before they were taken from the
    # config's folder): what errors name, and how they judge whether a value may be repeated (`shown_path`).
    config_path: Path | None = field(default=None, compare=False, repr=False)
    paths_as_written: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def credential_ref(self) -> str:
        """Where the token comes from, safe to print: a value that may be the token itself is not repeated."""
        if self.token_env:
            return f"${self.token_env}" if shown_env_name(self.token_env) else "the variable named by token_env"
        if self.token_file is not None and shown_path(self.token_file, self.paths_as_written.get("token_file")):
            return f"file {self.token_file}"
        return "the file named by token_file"


DEFAULT_DATABASE, DEFAULT_WARC_DIR, DEFAULT_KEYS_DIR = "archive.db", "warcs", "keys"


@dataclass(frozen=True)
class ArchiveConfig:
    dir: Path
    database: Path
    warc_dir: Path
    keys_dir: Path
    organisation: str = ""
    warc_max_bytes: int = 1_000_000_000
    recheck_days: int = 14
    max_rate_limit_wait: int = 900
    request_timeout: float = 30.0
    retries: int = 3
    parallel_platforms: int = 4
    token_warning_days: int = 14

    @classmethod
    def in_folder(cls, folder: Path) -> ArchiveConfig:
        """An archive folder (or a backup of one) laid out with the default names, read without a config."""
        folder = Path(folder).resolve()
        return cls(folder, folder / DEFAULT_DATABASE, folder / DEFAULT_WARC_DIR, folder / DEFAULT_KEYS_DIR)


@dataclass(frozen=True)
class ScanConfig:
    """`[scan]`: the organisation's own identifiers (allow-listed) and its own rule files."""

    rule_files: tuple[Path, ...] = ()
    own_phones: tuple[str, ...] = ()
    own_domains: tuple[str, ...] = ()
    own_handles: tuple[str, ...] = ()
    own_addresses: tuple[str, ...] = ()
    staff: tuple[str, ...] = ()
    staff_file: Path | None = None
    spacy_model: Path | None = None
    workers: int | None = None  # processes detecting in a large scan; None: one a core but the capture's


@dataclass(frozen=True)
class EmailAlert:
    smtp_host: str
    sender: str
    to: tuple[str, ...]
    smtp_port: int = 25
    starttls: bool = False
    implicit_tls: bool = False  # TLS from the first byte (SMTPS, port 465) rather than STARTTLS
    username: str | None = None
    password_env: str | None = None
    ca_file: Path | None = None  # the CA that signs the server's certificate; None: the system's CAs


@dataclass(frozen=True)
class WebhookAlert:
    url: str
    token_env: str | None = None


@dataclass(frozen=True)
class AlertsConfig:
    """`[alerts]`: where new flags of `severity` or worse go after a run."""

    severity: str = "high"
    datasette_url: str = "http://127.0.0.1:8001"
    email: EmailAlert | None = None
    webhook: WebhookAlert | None = None
    deadline: float = 15.0  # seconds one message may take on a channel, all of it (connect, TLS, login, answer)


@dataclass(frozen=True)
class BackupConfig:
    """`[backup]`: the folder `archiver backup` copies to, and the age past which doctor asks for a person."""

    to: Path | None = None
    max_age_hours: int = 36


@dataclass(frozen=True)
class Config:
    path: Path
    sha256: str
    archive: ArchiveConfig
    accounts: list[AccountConfig] = field(default_factory=list)
    scan: ScanConfig = field(default_factory=ScanConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)

    def account(self, name: str) -> AccountConfig:
        for account in self.accounts:
            if account.name == name:
                return account
        known = ", ".join(a.name for a in self.accounts) or "none"
        raise ConfigError(f"{self.path}: no account named {name!r} (configured: {known})")

    def selected_accounts(self, only: Sequence[str] | None = None) -> list[AccountConfig]:
        """The enabled accounts a run captures: all of them, or those named in `only` (ConfigError for a name
        not configured). A disabled account named in `only` is left out, as a config with only disabled
        accounts runs none: `check_tokens` says so before the run."""
        for name in only or ():
            self.account(name)
        return [a for a in self.accounts if a.enabled and (not only or a.name in only)]


def config_schema() -> dict[str, Any]:
    text = resources.files("archiver.schemas").joinpath("config.schema.json").read_text("utf-8")
    return json.loads(text)


def platform_options_schema(platform: str) -> dict[str, Any] | None:
    """The schema of a platform's `options` table (schemas/platforms/<platform>.json), if it has options."""
    entry = resources.files("archiver.schemas").joinpath("platforms", f"{platform}.json")
    return json.loads(entry.read_text("utf-8")) if entry.is_file() else None


def _platform_options(acc: dict[str, Any], where: str, path: Path) -> dict[str, Any]:
    """The account's options checked against its platform's schema, with the schema's defaults filled in."""
    options = acc.get("options", {})
    schema = platform_options_schema(acc["platform"])
    if schema is None:
        if options:
            raise ConfigError(f"{path}: {where}.options: platform {acc['platform']} takes no options; remove them")
        return {}
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(options), key=lambda e: (len(e.absolute_path), e.path)
    )
    if errors:
        detail = _describe(errors[0], options).removeprefix("(top level)")
        raise ConfigError(f"{path}: {where}.options{detail if detail.startswith(':') else '.' + detail}")
    defaults = {k: v["default"] for k, v in schema.get("properties", {}).items() if "default" in v}
    resolved = {**defaults, **options}
    for name in SECRET_OPTIONS:
        if resolved.get(f"{name}_file"):  # like token_file: relative to the config's folder, not the cwd
            resolved[f"{name}_file"] = str((path.parent / resolved[f"{name}_file"]).resolve())
    return resolved


def _error_location(error: jsonschema.ValidationError) -> str:
    parts = []
    for part in error.absolute_path:
        parts.append(f"[{part}]" if isinstance(part, int) else (f".{part}" if parts else str(part)))
    return "".join(parts) or "(top level)"


# Keys whose refused value may be a secret: a token pasted where its variable's name belongs, or a chat
# webhook URL (its secret is in the path). Their errors name the key and what it takes, never the value (of a
# URL, its scheme and host at most).
ENV_NAME_KEYS = frozenset({"token_env", "password_env", "app_secret_env"})
SECRET_TABLES = frozenset({"webhook"})  # [alerts.webhook]: its url and everything under it
ENV_NAME_HINT = (
    "give the name of the environment variable (letters, digits and _, not starting with a digit) that holds "
    "the secret, never the secret itself"
)
SECRET_HINTS = {
    "url": "give an http:// or https:// URL with a host",
    "webhook": "make it a table: [alerts.webhook] with url = ...",
}
TOML_TYPES = {"object": "a table", "array": "a list", "string": "a string", "boolean": "true or false"}

# A value the schema lets through where a variable's NAME or a file's path belongs may still be the secret
# itself, pasted there: the name pattern takes any token of letters and digits (a Meta Page token is one). A
# message repeats a `*_env` value only when it looks as variable names conventionally do, and a `*_file` value
# only when it looks like a path (`shown_env_name`, `shown_path`); otherwise it names the file and the key.
CONVENTIONAL_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
NOT_REPEATED = "not repeated: it may be the secret itself"
MASKED_MIN_LENGTH = 16  # an unrepeated value this long is masked in log lines too; a shorter one is no token


def shown_env_name(name: str) -> bool:
    """Whether a `*_env` value may be repeated: CLINIC_TOKEN, TOKEN or ARCHIVER_SMTP_PASSWORD, not EAAGm0PX4...
    (lower case), nor 17 or more upper-case letters and digits without an _ (an API key id, AKIA...)."""
    return bool(CONVENTIONAL_ENV_NAME.fullmatch(name)) and (len(name) <= 16 or "_" in name)


def shown_path(path: Path, as_written: str | None = None) -> bool:
    """Whether a `*_file` path may be repeated: the file is there, or the value as written (`as_written`,
    default the path) holds a / and the folder it names is there and is not /. A token pasted as the path holds
    no /, or names a folder that is not there."""
    if os.path.lexists(path):
        return True
    folder = Path(path).parent
    written = str(path) if as_written is None else as_written
    return "/" in written and folder != Path(folder.anchor) and os.path.isdir(folder)


def _not_repeated(key: str, config_path: Path | None, belongs: str) -> str:
    """The end of a message about `key` whose value is not repeated: where the operator finds it, and the fix."""
    where = f"{key} in {config_path}" if config_path is not None else key
    return f" (the value of {where} is {NOT_REPEATED}, pasted where {belongs} belongs)"


def _mask_unshown(value: Any, shown: bool) -> None:
    """A backstop for a value no message repeats: the log filter and doctor's alert payload mask it too."""
    if isinstance(value, str) and not shown and len(value) >= MASKED_MIN_LENGTH:
        register_secret(value)


def _may_hold_secret(error: jsonschema.ValidationError) -> bool:
    keys = [part for part in error.absolute_path if isinstance(part, str)]
    return bool(keys) and (keys[-1] in ENV_NAME_KEYS or bool(SECRET_TABLES.intersection(keys)))


def _shown_url(url: Any) -> str | None:
    """A URL as an error may show it: its scheme and host only, as alerts.shown_webhook shows a webhook (chat
    services keep the secret in the path); None without `://`, where a host cannot be told from a secret."""
    if not isinstance(url, str) or "://" not in url:
        return None
    scheme, rest = url.split("://", 1)
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return f"{scheme}://{authority.rpartition('@')[2]}{'/...' if rest != authority else ''}"


def _describe_secret(where: str, error: jsonschema.ValidationError) -> str:
    key = next((part for part in reversed(error.absolute_path) if isinstance(part, str)), "")
    shown = _shown_url(error.instance) if key == "url" and error.validator == "pattern" else None
    if shown is not None:
        return f"{where}: {shown!r} is not valid (only its scheme and host are shown); {SECRET_HINTS['url']}"
    if error.validator == "type":
        expected = error.validator_value if isinstance(error.validator_value, str) else "of another type"
        problem = f"not {TOML_TYPES.get(expected, f'a {expected}')}"
    elif error.instance == "":
        problem = "empty"
    elif key in ENV_NAME_KEYS:
        problem = "not a valid environment variable name"
    else:
        problem = "not an http:// or https:// URL"
    hint = ENV_NAME_HINT if key in ENV_NAME_KEYS else SECRET_HINTS.get(key, "fix the value")
    return f"{where}: {problem} (the value is not repeated: it may hold a secret); {hint}"


def _describe(error: jsonschema.ValidationError, data: dict[str, Any]) -> str:
    """One line naming the key and the fix for the most relevant schema error."""
    where = _error_location(error)
    if error.validator == "oneOf" and where.startswith("accounts["):
        return f"{where}: set exactly one of token_env (an environment variable name) or token_file (a path)"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"{where}: unknown key {', '.join(extra)} (allowed: {allowed})"
    if error.validator == "required":
        return f"{where}: {error.message}; add it"
    if error.validator == "minItems" and not error.instance:
        return f"{where}: the list is empty; {error.schema.get('description') or 'add at least one entry'}"
    if _may_hold_secret(error):  # every message below repeats the value
        return _describe_secret(where, error)
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    forbidden = error.validator_value if error.validator == "not" else None
    if isinstance(forbidden, dict) and forbidden.get("description"):
        return f"{where}: {forbidden['description']}"  # the schema says which combination is refused
    if error.validator == "pattern":
        hint = error.schema.get("description", "")
        value = repr(error.instance)
        if _has_userinfo(error.instance):  # a password before the host is not repeated
            value = f"{_shown_url(error.instance)!r} (only its scheme and host shown)"
        return f"{where}: {value} is not valid. {hint}".strip()
    if error.validator == "minLength" and error.instance == "":
        hint = error.schema.get("description", "")
        return f"{where}: empty; give a value or leave the key out. {hint}".strip()
    return f"{where}: {error.message}"


# Platforms whose token reaches many accounts: the one to capture is named by `account` or by this option.
NAMED_BY_OPTION = {"facebook": ("page_id", "the Page's numeric id"), "instagram": ("ig_user_id", "its numeric id")}


def _require_named_account(account: AccountConfig, where: str, path: Path) -> None:
    option = NAMED_BY_OPTION.get(account.platform)
    if option is None or account.account or account.options.get(option[0]):
        return
    name, what = option
    missing = f"no {account.platform} account named; set options.{name} (or account) to {what}"
    raise ConfigError(f"{path}: {where}: {missing}")


def _refuse_non_finite(value: Any, path: Path, where: str = "") -> None:
    """TOML has nan and inf, and JSON Schema's bounds let nan through (it fails no comparison): refused
    here for every number, before a timeout of nan reaches requests in the middle of a run."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: {where or '(top level)'}: {value} is not a finite number; give a number")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_non_finite(item, path, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_non_finite(item, path, f"{where}[{index}]")


def _url_problem(url: str) -> str | None:
    """What makes a URL the schema's pattern let through unusable, or None. `urlsplit(url).port` raises for
    a port out of range or not a number, and code that shows or calls the URL reads it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "its host cannot be read (an IPv6 address without its closing ]?)"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if parts.scheme not in ("http", "https"):
        return "it does not start with http:// or https://"
    if not parts.hostname:
        return "it names no host"
    if port == 0:
        return "its port is not a number from 1 to 65535"
    return None


def _has_userinfo(url: Any) -> bool:
    """Whether a URL carries a user name or password before its host (https://user:password@host/)."""
    if not isinstance(url, str) or "://" not in url:
        return False
    return "@" in re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]


def _check_url(url: str, where: str, path: Path, *, secret: bool = False, account: str | None = None) -> None:
    """A URL the archiver can call and show: no user name or password in it (it would be written into every
    WARC record and error that names the URL), a host, a port from 1 to 65535."""
    named = f"{where} (account {account})" if account else where
    if _has_userinfo(url):
        raise ConfigError(
            f"{path}: {named}: it holds a user name or password before its host ({_shown_url(url)!r}, only its "
            "scheme and host shown); remove it: a credential is named by an *_env or *_file key, never written in "
            "the config"
        )
    problem = _url_problem(url)
    if problem is None:
        return
    shown = f"{_shown_url(url)!r}, only its scheme and host shown" if secret else repr(url)
    raise ConfigError(f"{path}: {where}: {problem} ({shown}); fix the URL")


def _refuse_cleartext(url: str, where: str, path: Path, what: str) -> None:
    """Secrets never cross the network in clear: a URL that a credential goes to (or that says where one goes)
    is https://, or http:// to a loopback host (a test server, a local relay)."""
    parts = urlsplit(url)
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        raise ConfigError(
            f"{path}: {where}: {what} would travel in clear to {_shown_url(url)!r} (only its scheme and host "
            "shown); use its https:// URL"
        )


def _url_options(platform: str) -> list[str]:
    """The platform's options that are URLs the connector calls (their schema's pattern asks for http(s)://)."""
    properties = (platform_options_schema(platform) or {}).get("properties", {})
    return sorted(k for k, v in properties.items() if str(v.get("pattern", "")).startswith("^https?://"))


def _check_account_urls(acc: dict[str, Any], options: dict[str, Any], index: int, path: Path) -> None:
    """An account's api_base and URL options: the token, or the answers that say where it goes (a PDS named by
    a PLC directory), never travel in clear beyond loopback."""
    name = acc["name"]
    _refuse_cleartext(acc["api_base"], f"accounts[{index}].api_base (account {name})", path, "the account's token")
    for key in _url_options(acc["platform"]):
        if isinstance(options.get(key), str):
            where = f"accounts[{index}].options.{key}"
            _check_url(options[key], where, path, account=name)
            _refuse_cleartext(options[key], f"{where} (account {name})", path, "the account's requests")


def parse_config(data: dict[str, Any], path: Path, sha256: str = "") -> Config:
    """Validate parsed TOML and build a Config; relative paths are taken from the config file's folder."""
    _refuse_non_finite(data, path)
    validator = jsonschema.Draft202012Validator(config_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        # The shallowest error is usually the real one (a oneOf failure explains its children).
        raise ConfigError(f"{path}: {_describe(errors[0], data)}")
    _check_urls(data, path)
    ca_file = _check_alert_channels(data.get("alerts", {}), path)
    base = path.parent
    arc = data["archive"]
    archive_dir = (base / arc["dir"]).resolve()
    archive = ArchiveConfig(
        dir=archive_dir,
        database=archive_dir / arc.get("database", DEFAULT_DATABASE),
        warc_dir=archive_dir / arc.get("warc_dir", DEFAULT_WARC_DIR),
        keys_dir=archive_dir / arc.get("keys_dir", DEFAULT_KEYS_DIR),
        organisation=arc.get("organisation", ""),
        warc_max_bytes=arc.get("warc_max_bytes", 1_000_000_000),
        recheck_days=arc.get("recheck_days", 14),
        max_rate_limit_wait=arc.get("max_rate_limit_wait", 900),
        request_timeout=float(arc.get("request_timeout", 30)),
        retries=arc.get("retries", 3),
        parallel_platforms=arc.get("parallel_platforms", 4),
        token_warning_days=arc.get("token_warning_days", 14),
    )
    accounts: list[AccountConfig] = []
    seen: set[str] = set()
    for index, acc in enumerate(data["accounts"]):
        if acc["name"] in seen:
            raise ConfigError(f"{path}: accounts[{index}].name: {acc['name']!r} is used twice; names must be unique")
        seen.add(acc["name"])
        token_file = acc.get("token_file")
        options = _platform_options(acc, f"accounts[{index}]", path)
        _check_account_urls(acc, options, index, path)
        written = {"token_file": token_file} if token_file else {}
        written |= {f"options.{k}": v for k, v in acc.get("options", {}).items() if k.endswith("_file")}
        accounts.append(
            AccountConfig(
                name=acc["name"],
                platform=acc["platform"],
                api_base=acc["api_base"].rstrip("/"),
                account=acc.get("account"),
                token_env=acc.get("token_env"),
                token_file=(base / token_file).resolve() if token_file else None,
                media=acc.get("media", True),
                direct_messages=acc.get("direct_messages", True),
                enabled=acc.get("enabled", True),
                options=options,
                config_path=path,
                paths_as_written=written,
            )
        )
        _mask_unshown_references(accounts[-1])
        _require_named_account(accounts[-1], f"accounts[{index}]", path)  # once its options are known good
    return Config(
        path=path,
        sha256=sha256,
        archive=archive,
        accounts=accounts,
        scan=_scan_config(data.get("scan", {}), base),
        alerts=_alerts_config(data.get("alerts", {}), ca_file),
        backup=BackupConfig(
            to=(base / data["backup"]["to"]).resolve() if "backup" in data else None,
            max_age_hours=data.get("backup", {}).get("max_age_hours", 36),
        ),
    )


def _mask_unshown_references(account: AccountConfig) -> None:
    """Register every `*_env` / `*_file` value that messages do not repeat (see NOT_REPEATED) as a secret."""
    for key, value in [("token_env", account.token_env), *account.options.items()]:
        if key.endswith("_env") and isinstance(value, str):
            _mask_unshown(value, shown_env_name(value))
    for key, written in account.paths_as_written.items():
        value = account.token_file if key == "token_file" else account.options.get(key.removeprefix("options."))
        if value is not None:
            _mask_unshown(written, shown_path(Path(value), written))


def _check_urls(data: dict[str, Any], path: Path) -> None:
    """Every URL the archiver calls or shows, checked now: a bad port found at the end of a run would stop
    it before its captures are signed."""
    for index, acc in enumerate(data["accounts"]):
        _check_url(acc["api_base"], f"accounts[{index}].api_base", path, account=acc["name"])
    alerts = data.get("alerts", {})
    if "datasette_url" in alerts:
        _check_url(alerts["datasette_url"], "alerts.datasette_url", path)
    if "webhook" in alerts:
        _check_url(alerts["webhook"]["url"], "alerts.webhook.url", path, secret=True)


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: a connection that never leaves the machine (a test server, a local relay)."""
    if host.strip("[]").lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_alert_channels(alerts: dict[str, Any], path: Path) -> Path | None:
    """A secret never crosses the network in clear, and a CA file is one ssl can load; returns the CA file."""
    email, ca_file = alerts.get("email"), None
    if email is not None:
        host, tls = email["smtp_host"], email.get("starttls", False) or email.get("implicit_tls", False)
        if email.get("starttls") and email.get("implicit_tls"):
            raise ConfigError(
                f"{path}: alerts.email: starttls and implicit_tls are both true; keep starttls = true (port 587) or "
                "implicit_tls = true (port 465)"
            )
        if email.get("username") and not tls and not is_loopback(host):
            raise ConfigError(
                f"{path}: alerts.email.username: the SMTP login to {host!r} would send the password in clear; set "
                "starttls = true (port 587) or implicit_tls = true (port 465), or relay through a server on loopback"
            )
        if "ca_file" in email:
            ca_file = _ca_file(email, tls, path)
    webhook = alerts.get("webhook")
    if webhook is not None and webhook.get("token_env"):
        _refuse_cleartext(webhook["url"], "alerts.webhook.token_env", path, "the bearer token")
    return ca_file


def _ca_file(email: dict[str, Any], tls: bool, path: Path) -> Path:
    ca_file = (path.parent / email["ca_file"]).resolve()
    where = f"{path}: alerts.email.ca_file: {str(ca_file)!r}"  # a public certificate's path: no secret goes there
    if not tls:
        raise ConfigError(f"{where} is of no use without TLS; set starttls = true or implicit_tls = true")
    try:
        ssl.create_default_context(cafile=str(ca_file))
    except FileNotFoundError:
        raise ConfigError(
            f"{where} not found; give the PEM file of the CA that signs the SMTP server's certificate"
        ) from None
    except OSError as exc:  # ssl.SSLError among them: not PEM, or no certificate in it
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
        raise ConfigError(f"{where} cannot be loaded as PEM certificates ({reason}); give the CA's PEM file") from None
    return ca_file


def _scan_config(scan: dict[str, Any], base: Path) -> ScanConfig:
    staff_file = scan.get("staff_file")
    return ScanConfig(
        rule_files=tuple((base / f).resolve() for f in scan.get("rule_files", [])),
        own_phones=tuple(scan.get("own_phones", [])),
        own_domains=tuple(scan.get("own_domains", [])),
        own_handles=tuple(scan.get("own_handles", [])),
        own_addresses=tuple(scan.get("own_addresses", [])),
        staff=tuple(scan.get("staff", [])),
        staff_file=(base / staff_file).resolve() if staff_file else None,
        spacy_model=(base / scan["spacy_model"]).resolve() if scan.get("spacy_model") else None,
        workers=scan.get("workers"),
    )


def _alerts_config(alerts: dict[str, Any], ca_file: Path | None) -> AlertsConfig:
    email = alerts.get("email")
    webhook = alerts.get("webhook")
    for variable in ((email or {}).get("password_env"), (webhook or {}).get("token_env")):
        if variable:
            _mask_unshown(variable, shown_env_name(variable))
    return AlertsConfig(
        severity=alerts.get("severity", "high"),
        datasette_url=alerts.get("datasette_url", "http://127.0.0.1:8001").rstrip("/"),
        email=EmailAlert(
            smtp_host=email["smtp_host"],
            sender=email["from"],
            to=tuple(email["to"]),
            smtp_port=email.get("smtp_port", 465 if email.get("implicit_tls") else 25),
            starttls=email.get("starttls", False),
            implicit_tls=email.get("implicit_tls", False),
            username=email.get("username"),
            password_env=email.get("password_env"),
            ca_file=ca_file,
        )
        if email
        else None,
        webhook=WebhookAlert(url=webhook["url"], token_env=webhook.get("token_env")) if webhook else None,
        deadline=float(alerts.get("deadline", 15)),
    )


def load_config(path: Path | str = DEFAULT_CONFIG) -> Config:
    """Read and validate a config file; any problem is a ConfigError naming the file and the key."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found; create one with `archiver init` or pass --config PATH"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    return parse_config(data, path.resolve(), hashlib.sha256(raw).hexdigest())


# Options naming a secret the way token_env / token_file name the token: `<name>_env` or `<name>_file` (in
# schemas/platforms/*.json), read and refused by the same rules, and checked with the tokens before a run.
SECRET_OPTIONS = {"app_secret": "app secret"}


def resolve_token(account: AccountConfig) -> str:
    """The account's token, read now from the environment or its file. Raises ConfigError naming the source."""
    return _read_secret(account, "token", account.token_env, "token_env", account.token_file, "token_file")


def resolve_option_secret(account: AccountConfig, name: str) -> str | None:
    """The secret named by options `<name>_env` or `<name>_file` (e.g. app_secret), read now like the token;
    None when the account names none. Raises ConfigError naming the source, never the value."""
    env, file = account.options.get(f"{name}_env"), account.options.get(f"{name}_file")
    if not env and not file:
        return None
    what = SECRET_OPTIONS.get(name, name.replace("_", " "))
    return _read_secret(account, what, env, f"options.{name}_env", Path(file) if file else None, f"options.{name}_file")


def _read_secret(
    account: AccountConfig, what: str, env: str | None, env_key: str, file: Path | None, file_key: str
) -> str:
    """The secret from the variable `env` names (key `env_key`) or the file `file` (key `file_key`). Each message
    names the variable or the file only when it cannot be the secret pasted there (`shown_env_name`,
    `shown_path`); otherwise it names the key and the config file."""
    if env:
        if shown_env_name(env):
            source = f"environment variable {env}" + ("" if env_key == "token_env" else f" ({env_key})")
            after = ""
        else:
            source = f"the environment variable named by {env_key}"
            after = _not_repeated(env_key, account.config_path, "the variable's NAME")
        if env not in os.environ:
            raise ConfigError(f"account {account.name}: {source} is not set; export the {what} there{after}")
        value = os.environ[env].strip()
        if not value:
            raise ConfigError(f"account {account.name}: {source} is set but blank; export the {what} there{after}")
        return _checked_secret(account, what, source, value, from_file=False, after=after)
    assert file is not None  # guaranteed by the schemas: token_env or token_file, <name>_env or <name>_file
    shown = shown_path(file, account.paths_as_written.get(file_key))
    source = f"{file_key} {file}" if shown else file_key
    after = "" if shown else _not_repeated(file_key, account.config_path, "a path")
    value = _read_secret_file(account, what, file, source, after)
    if not value:
        raise ConfigError(f"account {account.name}: {source} is empty{after}")
    return _checked_secret(account, what, source, value, from_file=True, after=after)


def _read_secret_file(account: AccountConfig, what: str, path: Path, source: str, after: str) -> str:
    """The file's text, refused like ssh refuses a private key when others may read it: a secret that others
    could copy is as good as leaked. The mode is taken from the file opened, so no swap can slip in between."""
    try:
        with path.open(encoding="utf-8") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            if mode & 0o077:
                fix = f"chmod 600 {path}" if not after else "chmod 600 it"
                raise ConfigError(
                    f"account {account.name}: {source} is mode {mode:o}, open to group or others; {fix}{after}"
                )
            return handle.read().strip()
    except OSError as exc:
        raise ConfigError(
            f"account {account.name}: cannot read {source} ({exc.strerror}); put the {what} there or fix the "
            f"path{after}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"account {account.name}: {source} is not UTF-8 text; keep only the {what}{after}") from None


def check_tokens(config: Config, only: Sequence[str] | None = None) -> None:
    """Read the token (and any secret option, e.g. the Meta app secret) of every account a run would capture,
    and drop them: a variable not set or a file that cannot be used is then a ConfigError before the run
    takes the lock or opens the archive, not a failed account in a run row."""
    for name in only or ():
        if not config.account(name).enabled:
            # Not an error: a run of disabled accounts only is a run of none (tests/test_cli_bad_input.py).
            log.warning("account %s has enabled = false and is not captured; set enabled = true to capture it", name)
    for account in config.selected_accounts(only):
        resolve_token(account)
        for name in SECRET_OPTIONS:
            resolve_option_secret(account, name)


def _checked_secret(
    account: AccountConfig, what: str, source: str, value: str, *, from_file: bool, after: str = ""
) -> str:
    register_secret(value)  # first: whatever is said next must not carry it
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(
            f"account {account.name}: the {what} in {source} holds a line break or another control character "
            f"(two lines pasted?); keep only the {what}{after}"
        )
    # Beyond ASCII a secret cannot go in an HTTP header (UnicodeEncodeError mid-run) and is no real token.
    position = next((i for i, c in enumerate(value, 1) if ord(c) > 126), None)
    if position is not None:
        if value[position - 1] != "\ufeff":
            hint = f"a typographic quote or a letter beyond ASCII? copy the {what} again as plain text"
        elif from_file:
            hint = "a byte-order mark? save the file as plain ASCII"
        else:
            hint = f"a byte-order mark? set the variable again to the {what} as plain text"
        raise ConfigError(
            f"account {account.name}: the {what} in {source} contains a character that is not printable ASCII at "
            f"position {position} ({hint}); keep only the {what}{after}"
        )
    return value


EXAMPLE_DIR_LINE = 'dir = "archive"                 # archive folder, relative to this file'
EXAMPLE_CONFIG = """\
# archiver.toml: what to archive and where. Checked against schemas/config.schema.json.
# Credentials are never written here: name an environment variable (token_env) or a file (token_file).

[archive]
dir = "archive"                 # archive folder, relative to this file
# database = "archive.db"       # SQLite file inside dir (or an absolute path: kept private like dir)
# warc_dir = "warcs"            # WARC files inside dir (or an absolute path, e.g. a big volume)
# keys_dir = "keys"             # signing keys inside dir
# organisation = "St. Example Hospital"
# warc_max_bytes = 1000000000   # rotate WARC files at about 1 GB
# recheck_days = 14             # re-read posts this young for new replies, edits and deletions
# max_rate_limit_wait = 900     # give an account up for the night after waiting this long (seconds)
# request_timeout = 30
# retries = 3
# token_warning_days = 14       # `archiver doctor` warns this long before a token expires
# parallel_platforms = 4        # platforms captured at once (one platform's accounts run one at a time)

[[accounts]]
name = "clinic-mastodon"        # short unique name
platform = "mastodon"
api_base = "https://mastodon.example"
account = "@clinic"             # @handle or numeric id; leave out for the token's own account
token_env = "ARCHIVER_CLINIC_MASTODON_TOKEN"
# token_file = "/etc/archiver/tokens/clinic-mastodon"   # instead of token_env; mode 0600 (chmod 600)
# media = true                  # fetch images and video into the WARC
# direct_messages = true        # capture direct conversations (token scope read:statuses read:conversations)

# A Facebook Page and an Instagram professional account (Graph API; see README for the token's permissions):
# [[accounts]]
# name = "clinic-facebook"
# platform = "facebook"
# api_base = "https://graph.facebook.com"
# token_env = "ARCHIVER_CLINIC_PAGE_TOKEN"
# options = { page_id = "104123456789012", graph_version = "v26.0" }
#
# [[accounts]]
# name = "clinic-instagram"
# platform = "instagram"
# api_base = "https://graph.facebook.com"
# token_env = "ARCHIVER_CLINIC_PAGE_TOKEN"
# options = { ig_user_id = "17841400000000000", page_id = "104123456789012" }

# A LinkedIn organisation page (Community Management API, token of a page administrator):
# [[accounts]]
# name = "clinic-linkedin"
# platform = "linkedin"
# api_base = "https://api.linkedin.com"
# account = "urn:li:organization:1234567"
# token_file = "/etc/archiver/tokens/clinic-linkedin"
# options = { api_version = "202610" }     # the LinkedIn-Version header (YYYYMM)

# A YouTube channel (Data API v3, an API key or the owner's OAuth token):
# [[accounts]]
# name = "clinic-youtube"
# platform = "youtube"
# api_base = "https://www.googleapis.com"
# account = "@ClinicChannel"               # or the channel id UC...
# token_env = "ARCHIVER_CLINIC_YOUTUBE_KEY"
# options = { auth = "api_key", daily_quota = 10000 }

# PHI / policy scanning after every run. The organisation's own identifiers are never flagged.
# [scan]
# own_phones = ["(555) 010-0100"]
# own_domains = ["clinic.example"]
# own_handles = ["clinic"]
# own_addresses = ["100 River Road"]
# staff = ["Helen Arbogast"]     # or staff_file = "/etc/archiver/staff.txt" (one name a line)
# rule_files = ["/etc/archiver/rules/ours.yml"]   # extra rules and lexicon words (see README)
# spacy_model = "/opt/models/en_core_web_sm/en_core_web_sm-3.8.0"   # optional: names from a spaCy model's folder

# A verified copy elsewhere each night (`archiver backup`); doctor fails when the last one is too old.
# [backup]
# to = "/mnt/backup/archiver"
# max_age_hours = 36

# New high-severity flags announced after each run: links to Datasette, never the flagged text.
# [alerts]
# severity = "high"
# datasette_url = "https://archive.clinic.example"
# [alerts.email]
# smtp_host = "smtp.clinic.example"
# smtp_port = 587
# starttls = true                  # or implicit_tls = true (port 465); ca_file = "..." for a private CA
# username = "archiver"
# password_env = "ARCHIVER_SMTP_PASSWORD"
# from = "archiver@clinic.example"
# to = ["privacy-office@clinic.example"]
# [alerts.webhook]
# url = "https://chat.clinic.example/hooks/privacy"
# token_env = "ARCHIVER_WEBHOOK_TOKEN"
"""
