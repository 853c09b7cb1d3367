"""`archiver doctor`: what an operator checks before trusting the nightly run, each as one line.

Nothing here writes to the archive. Credentials are tried with one cheap authenticated call per account,
made outside the capturing session (a health check is not evidence, so it is not archived) but by its rules, and
never redirected (http.check_request). What doctor says may leave the machine (cron mails it, --alert sends it):
it names no export's folder (a case's, maybe named after a patient)."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .access_log import access_log_path
from .backup import UNVERIFIED, read_manifest
from .bundle.staging import MARKER, leftover
from .checkpoints import CHECKPOINT_DIR, PRIVATE_KEY, PUBLIC_KEY
from .config import NOT_REPEATED, AccountConfig, ArchiveConfig, Config, resolve_token, shown_env_name
from .connectors import connector_for
from .errors import ArchiverError
from .flag_states import QueueComparison, compare_review_queue
from .http import Redactor, sends_in_clear
from .lock import LOCK_NAME
from .scan.alerts import configured_channels, shown_webhook
from .store import Store, load_migrations, sqlite_companions

MIN_FREE_BYTES = 1 << 30  # below this the next run may not fit
WARN_FREE_BYTES = 10 << 30
LAST_RUN_MAX_AGE = timedelta(hours=36)  # a nightly job that missed a night
QUEUE_FLAGS_SHOWN = 5  # of each side of a review queue that is not flag_status's


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    message: str

    def __str__(self) -> str:
        return f"{self.status.upper():4} {self.name}: {self.message}"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_files(config: Config) -> list[Check]:
    archive = config.archive
    checks = []
    if not archive.dir.exists():
        return [Check("archive folder", "fail", f"{archive.dir} does not exist; run `archiver run` once")]
    checks.append(_private_folder("archive folder", archive.dir))
    checks.extend(_outside_folders(archive))
    checks.extend(
        _writable(
            archive.dir,
            archive.warc_dir,
            archive.database,
            *sqlite_companions(archive.database),
            archive.dir / LOCK_NAME,
            access_log_path(archive.database),
        )
    )
    checks.extend(_keys(archive.keys_dir))
    checks.append(_disk_space("disk space", archive.dir))
    checks.extend(_export_leftover(archive.dir))
    return checks


def _export_leftover(archive_dir: Path) -> list[Check]:
    """An export stopped on the way (kill -9, the OOM killer, a power cut) leaves its unfinished bundle, PHI
    outside the archive, in a staging folder beside its --out; the next export removes it."""
    try:
        found = leftover(archive_dir)
    except ArchiverError as exc:
        return [Check("export staging", "warn", str(exc))]
    if found is None or not found.staging.exists() or found.running():
        return []
    # Not named by its path: a bundle's folder is often named after its case ("/cases/maria-lopez-complaint"), and
    # this line leaves the machine (cron mails doctor's output, --alert sends it); the marker, in the private
    # archive folder, names it to whoever may read the archive.
    return [
        Check(
            "export staging",
            "warn",
            f"an export stopped on the way (pid {found.pid}) left an unfinished bundle holding PHI beside its --out "
            f"(the folder {archive_dir / MARKER} names); the next `archiver export` removes it, or remove it yourself",
        )
    ]


def _keys(keys_dir: Path) -> list[Check]:
    """The run signs with the private key, so this user must read it, and nobody else; verify and backups check
    against the public key. A key left root's by `sudo archiver init` stops the service user's run (exit 2)."""
    key, public = keys_dir / PRIVATE_KEY, keys_dir / PUBLIC_KEY
    if not key.exists():
        return [Check("signing key", "fail", f"{key} is missing; checkpoints cannot be signed")]
    if _mode(key) & 0o077:
        return [Check("signing key", "fail", f"{key} is mode {_mode(key):o}; chmod 600 {key}")]
    if not os.access(key, os.R_OK):
        return [Check("signing key", "fail", f"{key} cannot be read by this user; chown it to the user runs run as")]
    if not public.exists():
        message = f"{public} is missing: verify and backups check against it; put back the copy kept elsewhere"
        return [Check("signing key", "fail", message)]
    return [Check("signing key", "ok", f"{key} (mode 600); public key {public}")]


def _private_folder(name: str, folder: Path) -> Check:
    """A folder that holds PHI: nobody but its owner may read it."""
    mode = _mode(folder)
    if mode & 0o077:
        return Check(name, "warn", f"{folder} is mode {mode:o}: others can read PHI; chmod 700 {folder}")
    return Check(name, "ok", f"{folder} (mode {mode:o})")


def _outside_folders(archive: ArchiveConfig) -> list[Check]:
    """`database`, `warc_dir` and `keys_dir` may name folders outside `dir` (a big volume for the WARCs): each
    such folder holds PHI or the signing key as `dir` does, so nobody but its owner may read it either. A folder
    inside another one checked here and private to its owner is covered by it. In a folder others can enter,
    each file of the archive's database (SQLite's -wal and -shm, and the access log, beside it) is checked too."""
    folders = {  # resolved: `database = "../big/archive.db"` is outside dir, whatever its spelling
        "database folder": archive.database.parent.resolve(),
        "WARC folder": archive.warc_dir.resolve(),
        "checkpoints folder": (archive.warc_dir / CHECKPOINT_DIR).resolve(),
        "key folder": archive.keys_dir.resolve(),
    }
    covered = [archive.dir.resolve()]  # dir's own check speaks for what is inside it
    checks, seen = [], set(covered)
    for name, folder in sorted(folders.items(), key=lambda item: len(item[1].parts)):  # outer folders first
        if folder in seen or not folder.is_dir() or any(folder.is_relative_to(p) for p in covered):
            continue
        seen.add(folder)
        check = _private_folder(name, folder)
        checks.append(check)
        if check.status == "ok":
            covered.append(folder)
        elif name == "database folder":
            checks.extend(_private_files(_database_files(archive.database)))
    return checks


def _database_files(database: Path) -> list[Path]:
    access_log = access_log_path(database)
    return [Path(f"{db}{suffix}") for db in (database, access_log) for suffix in ("", "-wal", "-shm", "-journal")]


def _private_files(paths: list[Path]) -> list[Check]:
    """Files holding PHI in a folder others can enter: each one others can read is a warning."""
    checks = []
    for path in paths:
        if path.is_file() and _mode(path) & 0o077:
            message = f"{path} is mode {_mode(path):o}: others can read PHI; chmod 600 {path}"
            checks.append(Check("archive file", "warn", message))
    return checks


def _writable(*paths: Path) -> list[Check]:
    """The run appends to the database, writes WARCs and takes its lock file: each of these it must be able to
    write (a folder remounted read-only, a database copied in by another user), or the night's run fails."""
    cannot = [p for p in paths if p.exists() and not os.access(p, os.W_OK)]
    if not cannot:
        return [Check("writable", "ok", f"{paths[0]} and what it holds can be written by this user")]
    return [Check("writable", "fail", f"{p} cannot be written by this user; fix its owner or mount") for p in cannot]


def _disk_space(name: str, folder: Path) -> Check:
    free = shutil.disk_usage(folder).free
    level = "fail" if free < MIN_FREE_BYTES else "warn" if free < WARN_FREE_BYTES else "ok"
    return Check(name, level, f"{free / 1e9:.1f} GB free at {folder}")


def check_last_run(config: Config, now: datetime) -> list[Check]:
    if not config.archive.database.exists():
        return [Check("archive database", "fail", f"{config.archive.database} does not exist yet")]
    store = Store.open(config.archive.database, readonly=True, any_schema=True)
    try:
        checks = []
        known = len(load_migrations())
        version = store.schema_version
        if version > known:
            checks.append(Check("schema", "fail", f"version {version} is newer than this software's {known}; upgrade"))
        elif version < known:
            checks.append(Check("schema", "warn", f"version {version} (this software: {known}; the next run migrates)"))
        else:
            checks.append(Check("schema", "ok", f"version {version}"))
        last = store.conn.execute(
            "SELECT r.id, r.started_at, rr.status FROM runs r LEFT JOIN run_results rr ON rr.run_id = r.id "
            "ORDER BY r.started_at DESC LIMIT 1"
        ).fetchone()
        if last is None:
            checks.append(Check("last run", "fail", "no run yet"))
        else:
            started = datetime.fromisoformat(last["started_at"].replace("Z", "+00:00"))
            age = now - started
            if last["status"] != "ok":
                what = "did not finish" if last["status"] is None else "failed"
                checks.append(Check("last run", "fail", f"{last['id']} {what}; see `archiver status`"))
            elif age > LAST_RUN_MAX_AGE:
                checks.append(
                    Check(
                        "last run",
                        "warn",
                        f"{last['id']} was {age.total_seconds() / 3600:.0f} h ago; is the cron job or timer running?",
                    )
                )
            else:
                checks.append(Check("last run", "ok", f"{last['id']} succeeded {age.total_seconds() / 3600:.1f} h ago"))
        return checks
    finally:
        store.close()


def check_review_queue(config: Config) -> list[Check]:
    """The review queue staff work from (flag_queue, read from the states commands recorded: migration 0023) against
    the one flag_status computes now. They differ after a run stopped between its captures and its scan, or when a
    flag_states row was appended outside the commands (ledgered like any other, so `archiver verify` passes): a flag
    taken out of the queue with no review, no operator, on it. Every scan records every flag's state again."""
    database = config.archive.database
    if not database.exists():
        return []  # the last run's check says so
    store = Store.open(database, readonly=True, any_schema=True)
    try:
        if store.schema_version > len(load_migrations()):
            return []  # a later schema may queue otherwise: the schema's check says to upgrade
        compared = compare_review_queue(store.conn, QUEUE_FLAGS_SHOWN)
    finally:
        store.close()
    if compared is None:
        return []  # no recorded states before migration 0023, which the next run applies
    if compared.agree:
        return [Check("review queue", "ok", f"{compared.queued} flag(s), as flag_status computes it")]
    missing, extra = compared.missing, compared.extra
    return [
        Check(
            "review queue",
            "fail",
            f"it lacks {len(missing)} flag(s) flag_status puts in it{_flags(compared, missing)} and holds "
            f"{len(extra)} flag_status does not{_flags(compared, extra)}: their states recorded in flag_states are not "
            "flag_status's (a run stopped before its scan, or a row appended outside the commands); run `archiver "
            "scan` (once any run going now ends), which records every flag's state again, and find out who made a "
            "recording named here that no command of yours made",
        )
    ]


def _flags(compared: QueueComparison, flags: list[int]) -> str:
    """The first few of `flags`, each with the recording of its latest state: " (12 recorded by 'review' at ...)"."""
    if not flags:
        return ""
    named = []
    for flag_id in flags[:QUEUE_FLAGS_SHOWN]:
        by = compared.recorded_by.get(flag_id)
        # the command is whatever a library caller wrote: kept to one short line
        named.append(f"{flag_id} recorded by '{_one_line(by[0])}' at {_one_line(by[1])}" if by else str(flag_id))
    more = f"; {len(flags) - QUEUE_FLAGS_SHOWN} more" if len(flags) > QUEUE_FLAGS_SHOWN else ""
    return f" ({'; '.join(named)}{more})"


def _one_line(text: str, limit: int = 40) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def check_alerts(config: Config) -> list[Check]:
    """The channels' secrets, and flags a channel still owes: a channel that keeps failing (SMTP down, a webhook
    moved) leaves high flags unannounced, and only this line and the runs' notices say so."""
    from .scan.delivery import pending_alerts

    if not configured_channels(config.alerts):
        return []
    checks = _alert_secrets(config) + _webhook_in_clear(config)
    if not config.archive.database.exists():
        return checks
    store = Store.open(config.archive.database, readonly=True, any_schema=True)
    try:
        pending = pending_alerts(store.conn, config.alerts)
    finally:
        store.close()
    for owed in pending:
        name = f"alerts {owed.channel}"
        last = owed.last_attempt
        if not owed.flags:
            checks.append(Check(name, "ok", f"nothing owed ({owed.destination})"))
            continue
        said = f"; last attempt {last['at']}: {last['error'] or last['outcome']}" if last else ""
        checks.append(
            Check(
                name,
                "warn",
                f"{len(owed.flags)} flag(s) in the review queue never delivered to {owed.destination}{said}; fix the "
                "channel and run `archiver alerts send`",
            )
        )
    return checks


def _alert_secrets(config: Config) -> list[Check]:
    """The alert channels' secrets, named by variable: one not set (or blank) in this environment, which the
    nightly run shares, makes every alert fail (an SMTP login refused, a webhook answering 401) until fixed."""
    alerts, named = config.alerts, []
    if alerts.email is not None and alerts.email.username and alerts.email.password_env:
        named.append(("alerts email", "[alerts.email] password_env", alerts.email.password_env, "password"))
    if alerts.webhook is not None and alerts.webhook.token_env:
        named.append(("alerts webhook", "[alerts.webhook] token_env", alerts.webhook.token_env, "token"))
    checks = []
    for name, key, variable, what in named:
        if not os.environ.get(variable, "").strip():
            state = "is not set" if variable not in os.environ else "is set but blank"
            if shown_env_name(variable):
                message = f"{key} names ${variable}, which {state}: every alert on it fails; export it"
            else:  # it may be the password itself, pasted where the variable's name belongs
                message = (
                    f"{key} in {config.path} names a variable that {state}: every alert on it fails; give it the "
                    f"NAME of the variable that holds the {what} and export it (the value is {NOT_REPEATED})"
                )
            checks.append(Check(name, "fail", message))
    return checks


def _webhook_in_clear(config: Config) -> list[Check]:
    """An http:// webhook beyond loopback, which the config accepts without a token (a token would be refused):
    its messages carry no PHI (counts, rule names and links), but they and the webhook's URL, the secret of most
    chat services' hooks, cross the network in clear. Not refused (an intranet chat may have no https://), said."""
    webhook = config.alerts.webhook
    if webhook is None or not sends_in_clear(webhook.url):
        return []
    return [
        Check(
            "alerts webhook",
            "warn",
            f"{shown_webhook(webhook.url)} is not https://: the alerts and the webhook's URL (a chat hook's secret) "
            "cross the network in clear; give [alerts.webhook] url its https:// address",
        )
    ]


def check_backup(config: Config, now: datetime) -> list[Check]:
    """The last backup in the `[backup]` folder. An archive without one has a single copy of its evidence."""
    folder = config.backup.to
    if folder is None:
        return [
            Check(
                "backup",
                "warn",
                "no [backup] folder in the config: nothing copies the archive elsewhere; set [backup] to "
                "(another disk or share) and schedule `archiver backup` (README, Backups)",
            )
        ]
    return [_last_backup(folder, config.backup.max_age_hours, now), *_backup_folder(folder)]


def _last_backup(folder: Path, max_age_hours: int, now: datetime) -> Check:
    manifest = read_manifest(folder)
    if manifest is None:
        return Check("backup", "fail", f"no backup has finished in {folder}; run `archiver backup`")
    last, verified = manifest.get("last_backup") or {}, manifest.get("last_verified")
    if not last.get("verified"):
        return Check(
            "backup",
            "fail",
            f"the last backup in {folder} ({last.get('at')}) found {last.get('problems')} problem(s); "
            "run `archiver backup` and read what it reports",
        )
    age = now - datetime.fromisoformat(str(verified["at"]).replace("Z", "+00:00"))
    hours = age.total_seconds() / 3600
    if hours > max_age_hours:
        return Check(
            "backup",
            "fail",
            f"the last verified backup in {folder} is {hours:.0f} h old (max_age_hours {max_age_hours}); "
            "is its cron job running?",
        )
    seq = verified["ledger_seq"]
    return Check("backup", "ok", f"verified in {folder} {hours:.1f} h ago, up to ledger entry {seq}")


def _backup_folder(folder: Path) -> list[Check]:
    """The backup holds PHI and grows like the archive: who can read it, and room for the next nights. A
    snapshot kept because it did not verify stays until a person has looked at it (later backups succeed
    beside it, so only this line keeps it in view)."""
    if not folder.is_dir():
        return []
    checks = [_private_folder("backup folder", folder), _disk_space("backup disk space", folder)]
    for kept in sorted(folder.glob(f"*{UNVERIFIED}")):
        made = datetime.fromtimestamp(kept.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
        checks.append(
            Check(
                "backup snapshot",
                "warn",
                f"{kept} (made {made}) did not verify: the archive had been changed behind its back then; "
                "keep it with what that backup reported, then move it out of the backup folder",
            )
        )
    return checks


def check_expiry(name: str, expires_at: datetime | None, now: datetime, warn_days: int) -> Check | None:
    """Expired: a person must renew it now; inside the warning window: renew it before the nights run out."""
    if expires_at is None:
        return None
    left = expires_at - now
    when = expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if left <= timedelta(0):
        return Check(name, "fail", f"the token expired on {when}; renew it")
    if left <= timedelta(days=warn_days):
        days = left.total_seconds() / 86400
        return Check(name, "warn", f"the token expires on {when} (in {days:.1f} days); renew it before then")
    return None


def check_account(account: AccountConfig, timeout: float, now: datetime, warn_days: int) -> list[Check]:
    name = f"account {account.name}"
    redactor = Redactor([])
    try:
        # Also refuses a token_file that others can read, naming the chmod to run.
        token = resolve_token(account)
        redactor.secrets.append(token)
        credential = connector_for(account.platform, account).check_credential(account, token, timeout)
    except ArchiverError as exc:
        return [Check(name, "fail", redactor.text(str(exc)).removeprefix(f"{name}: "))]
    except Exception as exc:  # a connector's bug on an answer nobody expected: this account's check, not doctor's end
        what = f"unexpected {type(exc).__name__} in the credential check"  # its message may quote a URL or an answer
        return [Check(name, "fail", f"{what} (a bug: report it); the other checks went on")]
    expiry = check_expiry(name, credential.expires_at, now, warn_days)
    if expiry is not None:
        return [expiry]
    until = f", valid until {credential.expires_at:%Y-%m-%d}" if credential.expires_at else ""
    return [Check(name, "ok", f"token from {account.credential_ref} accepted ({credential.who}{until})")]


def check_time_zone(now: datetime) -> Check:
    """The zone the consent register's days are judged in (consent/state.py, and the views' 'localtime'). A TZ
    the C library cannot read is taken as UTC without a word, so a name the tz database does not know, or one
    this machine has no data for, is a warning."""
    local = now.astimezone()
    offset = f"UTC{local:%z}"
    tz = os.environ.get("TZ")
    if not tz:
        return Check(
            "time zone", "ok", f"consent days are judged in the machine's zone, {local.tzname()} ({offset} now)"
        )
    try:
        known = ZoneInfo(tz.removeprefix(":")).utcoffset(now) == local.utcoffset()
    except (ZoneInfoNotFoundError, ValueError):
        known = False
    if not known:
        return Check(
            "time zone",
            "warn",
            f"TZ={tz!r} is not a zone this machine knows, so consent days are judged in {offset}; set TZ to a tz "
            "database name (America/Chicago) and install the tzdata package",
        )
    return Check("time zone", "ok", f"consent days are judged in {tz} ({offset} now)")


def run_doctor(config: Config, now: datetime | None = None) -> list[Check]:
    now = now or datetime.now(UTC)
    checks = [Check("config", "ok", f"{config.path}: {len(config.accounts)} account(s)")]
    checks += check_files(config)
    checks.append(check_time_zone(now))
    checks += check_last_run(config, now)
    checks += check_review_queue(config)
    checks += check_backup(config, now)
    checks += check_alerts(config)
    for account in config.accounts:
        if account.enabled:
            checks += check_account(account, config.archive.request_timeout, now, config.archive.token_warning_days)
    return checks
