"""The `archiver` command: a thin layer over the library. Each command parses, calls, renders."""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import sqlite3
import sys
from collections.abc import Callable
from datetime import date
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__
from .config import DEFAULT_CONFIG, EXAMPLE_CONFIG, EXAMPLE_DIR_LINE, load_config
from .consent.state import local_today
from .errors import ArchiverError, ConfigError, Interrupted, StoreError, storage_failure
from .logs import setup_logging

app = typer.Typer(
    help="Compliance archive of an organisation's social media accounts: append-only SQLite + WARC, "
    "searched read-only in Datasette.\n\nStart with `archiver demo`, or `archiver init` for a real archive.",
    pretty_exceptions_show_locals=False,  # locals can hold tokens
    no_args_is_help=True,
    add_completion=False,
)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Config file.", show_default=True, dir_okay=False)]


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print an ArchiverError as one line on stderr and exit with its code (2 for bad input). A disk that fails
    under a command (full, a quota, read-only, an I/O error) is no bad input: one line naming the file, exit 1."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ArchiverError as exc:
            # the store's "cannot append" over a failing disk: said as the disk's failure, with what to do
            database = _archive_database(kwargs) if isinstance(exc, StoreError) else None
            failure = storage_failure(exc, database=database) if database is not None else None
            typer.echo(f"archiver: error: {failure or exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # a path the archive needs that cannot be made, read or written
            if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():
                # the reader of stdout stopped early (`| head`): no message, and the exit of a command SIGPIPE ends
                _silence_stdout()
                raise typer.Exit(128 + signal.SIGPIPE) from None
            failure = storage_failure(exc, fallback=_target(kwargs))
            if failure is not None:
                typer.echo(f"archiver: error: {failure}", err=True)
                raise typer.Exit(failure.exit_code) from None
            where = f"{exc.filename}: " if exc.filename else ""
            typer.echo(f"archiver: error: {where}{exc.strerror or exc}; check the path and its permissions", err=True)
            raise typer.Exit(2) from None
        except sqlite3.DatabaseError as exc:
            database = _archive_database(kwargs)
            failure = storage_failure(exc, database=database)
            if failure is not None:  # a full or failing disk, as an OSError says it
                typer.echo(f"archiver: error: {failure}", err=True)
                raise typer.Exit(failure.exit_code) from None
            where = f"{database}: " if database is not None else ""
            fix = "check that the config's database names an archive"
            message = f"{where}the archive database cannot be used ({exc}); {fix}"
            typer.echo(f"archiver: error: {message}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:  # a run stops gracefully on its own (see pipeline.run_platforms); this is the rest
            typer.echo("archiver: interrupted; what was committed is kept, and a run resumes with the next", err=True)
            raise typer.Exit(Interrupted.exit_code) from None

    return wrapper


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader went away (its write end polls as an error): a broken pipe
    elsewhere (a mail server's connection) stays an error."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no file descriptor (captured in tests)
        return False


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises nothing more (Python's documented way
    for a pipe whose reader went away)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (stdout captured in tests): nothing is left to flush
        pass


def _archive_database(options: dict[str, Any]) -> Path | None:
    """The archive database a command was given (--archive-dir, else its config's), to name in an error: sqlite3's
    own messages ("file is not a database") name no file. None without a config, or one that cannot be read."""
    from .config import ArchiveConfig

    if options.get("archive_dir") is not None:
        return ArchiveConfig.in_folder(options["archive_dir"]).database
    if "config" not in options:  # demo, verify-bundle: no archive of a config
        return None
    try:
        return load_config(options.get("config") or DEFAULT_CONFIG).archive.database
    except (ArchiverError, OSError):
        return None


def _target(options: dict[str, Any]) -> str | None:
    """What a command writes, to name when an error names no file: export's bundle folder, the --out or --to a
    command was given, else the archive folder of its config."""
    if options.get("out") is not None:
        return f"the bundle folder {options['out']}" if "case" in options else f"--out {options['out']}"
    if options.get("to") is not None:
        return f"--to {options['to']}"
    database = _archive_database(options)
    return str(database.parent) if database is not None else None


def on_terminal() -> bool:
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"archiver {__version__}")
        raise typer.Exit(0)


# Every file the archive writes holds PHI or a secret: the database and its -wal/-shm, the WARCs, checkpoints,
# the access log, the signing key, users.json, bundles, backups. The run makes `dir` 0700, but `database`,
# `warc_dir` and `keys_dir` may be folders elsewhere (a big volume for the WARCs), and cron runs with umask 022,
# so files there would be world-readable. Nothing here is meant for another user (bundles and backups are
# already 0700/0600, `archiver serve` reads as the user who runs it; the systemd units set UMask=0077 too), so
# every command starts with this umask. The one file made for others, the config `init` writes, is made with
# the umask the command was started with (`_inherited_umask`).
PRIVATE_UMASK = 0o077
_inherited_umask = PRIVATE_UMASK


@app.callback()
def options(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
    ] = False,
) -> None:
    """(--version is eager: it answers before click asks for the command it needs otherwise.)"""
    global _inherited_umask
    _inherited_umask = os.umask(PRIVATE_UMASK)  # before any command runs: see PRIVATE_UMASK


@app.command()
@reports_errors
def init(
    config: ConfigOption = DEFAULT_CONFIG,
    archive_dir: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="The archive folder (database, WARCs, signing key), written into the config; default: 'archive' "
            "beside the config file.",
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Write a commented example config to start a real archive, and the archive's signing key in its folder.

    Example: archiver init --config /etc/archiver/archiver.toml --dir /var/lib/archiver
    """
    if config.exists():
        raise ConfigError(f"{config}: already exists; edit it, or choose another path with --config")
    from .checkpoints import ensure_signing_key

    text = EXAMPLE_CONFIG
    if archive_dir is not None:
        # the key goes where the config says the archive is: choose the folder now, not after the key is made
        chosen = f"dir = {json.dumps(str(archive_dir.absolute()))}  # archive folder (database, WARCs, keys)"
        text = text.replace(EXAMPLE_DIR_LINE, chosen, 1)
    # The config holds no secret and the service user reads what root wrote (README, Nightly run): it and its
    # folder are made with the umask `init` was started with; the key below is made under PRIVATE_UMASK.
    private = os.umask(_inherited_umask)
    try:
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(text, "utf-8")
    finally:
        os.umask(private)
    next_step = f"archiver run --config {shlex.quote(str(config))}"  # to paste into a shell as it is
    typer.echo(f"wrote {config}: set api_base, account and token_env, then run `{next_step}`")
    key_path, created = ensure_signing_key(load_config(config).archive.keys_dir)
    typer.echo(f"{'generated' if created else 'kept'} the archive's signing key {key_path} (mode 0600)")


@app.command()
@reports_errors
def run(
    config: ConfigOption = DEFAULT_CONFIG,
    account: Annotated[
        list[str] | None, typer.Option("--account", "-a", help="Only this account (repeatable).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display, only the summary.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every wait and retry.")] = False,
) -> None:
    """Archive every configured account once: the nightly job.

    Exit code 0 when every account succeeded, 1 when one failed (the others are still archived), when the PHI
    scan or the consent check at the end failed (e.g. a bad rule file: what was captured is kept and signed;
    fix it and run `archiver scan`), when a disk under the archive failed (full, a quota, read-only, an I/O
    error: one line names the file; what was committed is kept and the next run takes up the rest) or another
    run holds the archive, 2 for bad input found before anything is
    touched (the config, an account's token, a database file that is not an archive), 130 when stopped by
    Ctrl-C or SIGTERM (what was captured is kept and signed; the next run resumes). An alert channel that
    fails is a notice: its flags stay owed, and the next run or `archiver alerts send` sends them.

    Example: archiver run --config /etc/archiver/archiver.toml --quiet
    """
    from .config import check_tokens
    from .pipeline import run_archive
    from .progress import make_progress
    from .store import check_database_file

    setup_logging(verbose)
    cfg = load_config(config)
    # Bad input found here is exit 2 with nothing touched; found by the run, it would be a failed run row.
    check_tokens(cfg, account)
    check_database_file(cfg.archive.database)
    with make_progress(enabled=on_terminal() and not quiet and not as_json) as progress:
        result = run_archive(cfg, only=account or None, progress=progress)
    if as_json:
        typer.echo(json.dumps(result.summary(), indent=2))
    else:
        from .progress import render_summary

        render_summary(result)
    raise typer.Exit(result.exit_code)


@app.command()
@reports_errors
def serve(
    config: ConfigOption = DEFAULT_CONFIG,
    host: Annotated[str, typer.Option(help="Address to bind; loopback by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8001,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            metavar="ADDRESS",
            help="IP address or network of the reverse proxy in front of the server (repeat for several): its "
            "X-Forwarded-For names the client logged and throttled. From any other peer the header is ignored.",
        ),
    ] = None,
) -> None:
    """Serve the archive read-only in Datasette for compliance staff.

    Without accounts it serves on loopback only, to anyone there; once `archiver users add` has made one,
    everyone signs in, and --host may bind beyond loopback. Every request goes to the access log. Behind a
    reverse proxy, name it with --trusted-proxy: every client then has its own address in the access log and
    the sign-in throttle, instead of the proxy's.

    Example: archiver serve --config demo-archive/archiver.toml --port 8001
    """
    from .serve import run_server

    cfg = load_config(config)
    run_server(
        cfg.archive.database,
        host=host,
        port=port,
        warc_dir=cfg.archive.warc_dir,
        trusted_proxies=trusted_proxy or (),
        on_ready=lambda url: typer.echo(f"serving {url}"),
    )


def require_kept_folder(checkpoints: Path | None) -> None:
    """--checkpoints of verify and verify-bundle: a folder, when given."""
    if checkpoints is not None and not checkpoints.is_dir():
        raise ConfigError(f"--checkpoints {checkpoints}: no such folder; name the folder of kept checkpoint copies")


@app.command()
@reports_errors
def verify(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Print problems as JSON.")] = False,
    public_key: Annotated[
        Path | None,
        typer.Option(help="The archive's public key (PEM) kept elsewhere; default: the one in the key folder."),
    ] = None,
    archive_dir: Annotated[
        Path | None,
        typer.Option(help="Check this archive folder (a backup, a copy) instead of the config's; no config needed."),
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option(
            help="A folder of checkpoint copies kept away from the archive (checkpoint-*.json): each must still be "
            "in the archive's ledger as signed.",
            file_okay=False,
        ),
    ] = None,
    replay: Annotated[
        bool,
        typer.Option(
            "--replay",
            help="Then, when the archive verifies, replay every WARC into a temporary database and compare: names "
            "each row no captured record backs, each captured fact missing, each row that differs. Needs the "
            "config's accounts (with --archive-dir too).",
        ),
    ] = False,
) -> None:
    """Check the archive's integrity without changing anything; exit 1 when a problem is found.

    Checks the schema, recomputes the ledger's hash chain, checks every checkpoint's signature, re-hashes
    every WARC file and every item's WARC record. What the archive's own folder holds can be rewritten by
    whoever holds the private key too: a public key and checkpoint copies kept elsewhere rule that out.

    With --replay it then rebuilds the database from the WARCs alone in a temporary folder (TMPDIR) and
    compares items' versions, events, media, cursors and accounts with the live ones.

    Example: archiver verify --public-key /safe/archive-ed25519.pub --checkpoints /worm/riverside-checkpoints
    """
    from dataclasses import replace

    from .checkpoints import PUBLIC_KEY
    from .config import ArchiveConfig
    from .progress import verify_progress
    from .verify import check_archive, trust_summary

    if archive_dir is not None:
        archive = ArchiveConfig.in_folder(archive_dir)
        if not archive.database.is_file():
            raise ConfigError(f"--archive-dir {archive.dir}: no {archive.database.name} there; name an archive folder")
    else:
        archive = load_config(config).archive
    require_kept_folder(checkpoints)
    key_in_archive = public_key is None and (archive.keys_dir / PUBLIC_KEY).exists()
    if key_in_archive:
        public_key = archive.keys_dir / PUBLIC_KEY
    # The config's accounts say how to replay this archive's WARCs: read before the checks, as bad input is.
    replay_config = replace(load_config(config), archive=archive) if replay else None
    with verify_progress(enabled=on_terminal() and not as_json) as on_step:
        check = check_archive(archive.database, archive.warc_dir, public_key, on_step, checkpoints)
    problems = check.problems
    replay_summary: list[str] = []
    if replay_config is not None:
        from .progress import replay_check_progress
        from .replay_check import check_replay

        with replay_check_progress(on_terminal() and not as_json) as (progress, on_compare):
            replayed = check_replay(
                replay_config,
                public_key,
                prior=problems,
                progress=progress,
                on_run=progress.run_started,
                on_step=on_compare,
            )
        problems, replay_summary = problems + replayed.problems, replayed.summary()
    errors = [p for p in problems if p.severity == "error"]
    trust = trust_summary(check.extent, public_key, key_in_archive)
    if as_json:
        found = {"ok": not errors, "problems": [p.__dict__ for p in problems], "trust": trust}
        typer.echo(json.dumps(found | ({"replay": replay_summary} if replay else {}), indent=2))
    else:
        from .replay_review import condensed

        for problem in condensed(problems):
            typer.echo(str(problem))
        for line in replay_summary:
            typer.echo(line)
        for line in trust:
            typer.echo(line)
        typer.echo("archive verifies" if not errors else f"{len(errors)} problem(s) found", err=bool(errors))
    raise typer.Exit(1 if errors else 0)


@app.command("review-replay")
@reports_errors
def review_replay(
    confirm: Annotated[
        str | None,
        typer.Option(
            "--confirm",
            help="The set of differences you read, as the listing named it: records each as reviewed. Without it, "
            "the command lists them and records nothing.",
        ),
    ] = None,
    note: Annotated[
        str | None, typer.Option("--note", "-n", help="Why they are explained (needed with --confirm).")
    ] = None,
    reviewer: Annotated[
        str | None,
        typer.Option(
            "--reviewer",
            help="Who read them; default $ARCHIVER_REVIEWER, else the account this runs as. The account is recorded "
            "beside it either way.",
        ),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(help="The archive's public key (PEM) kept elsewhere; default: the one in the key folder."),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Record that a person read the differences `verify --replay` finds in rows an older parser made.

    After an upgrade whose parser reads some captured records into other rows, `verify --replay` names those rows
    as errors, for ever. This replays the archive (as verify --replay does) and lists the differences a parser
    change may explain that nobody has reviewed, with the name of their set. Read each against the revision's
    change (PARSER_REVISION in archiver/connectors), then run it again with --confirm SET: it appends one
    replay_reviews row per difference, and verify --replay shows them as notes from then on. Any other
    difference, or a reviewed row changed since, stays an error. Exit 1 when the archive does not verify or
    differences no parser change explains remain; 2 when the set found is not the one --confirm names.

    Example: archiver review-replay --confirm 3f2a9c1d0b7e --reviewer "Dana Lee" --note "x parser 3: reposts whole"
    """
    from .checkpoints import PUBLIC_KEY
    from .lock import archive_lock
    from .oneline import refuse_invisible
    from .operator import current_operator
    from .progress import replay_check_progress, verify_progress
    from .replay_check import check_replay
    from .replay_review import Difference, append_replay_reviews, difference_set, unreviewed
    from .store import Store, require_database
    from .verify import check_archive

    for option, value in (
        ("--reviewer", reviewer),
        ("--note", note),
        ("$ARCHIVER_REVIEWER", os.environ.get("ARCHIVER_REVIEWER")),
    ):
        if value:
            refuse_invisible(option, value)
    if confirm is not None and not (note or "").strip():
        raise ConfigError(
            "--note: needed with --confirm; say why the differences are explained (the revision's change)"
        )
    who = (reviewer or os.environ.get("ARCHIVER_REVIEWER") or current_operator().name).strip()
    if confirm is not None and not who:
        raise ConfigError("--reviewer: empty; give the name of the person who read the differences")
    cfg = load_config(config)
    require_database(cfg.archive.database)
    if public_key is None and (cfg.archive.keys_dir / PUBLIC_KEY).exists():
        public_key = cfg.archive.keys_dir / PUBLIC_KEY
    with verify_progress(enabled=on_terminal()) as on_step:
        problems = check_archive(cfg.archive.database, cfg.archive.warc_dir, public_key, on_step).problems
    with replay_check_progress(on_terminal()) as (progress, on_compare):
        replayed = check_replay(
            cfg, public_key, prior=problems, progress=progress, on_run=progress.run_started, on_step=on_compare
        )
    if not replayed.compared:
        for problem in problems + replayed.problems:
            typer.echo(str(problem))
        typer.echo(
            "the archive does not verify or replay: fix what `archiver verify --replay` says first; nothing recorded",
            err=True,
        )
        raise typer.Exit(1)
    todo = unreviewed(replayed.problems)
    others = [p for p in replayed.problems if p.severity == "error" and not isinstance(p, Difference)]
    found = difference_set(todo)
    if confirm is None:
        for n, difference in enumerate(todo, 1):
            typer.echo(f"difference {n} of {len(todo)}: {difference}")
        if todo:
            typer.echo(
                f"{len(todo)} difference(s) a parser change may explain, not reviewed yet (set {found}); once read, "
                f"record them: archiver review-replay --confirm {found} --reviewer NAME --note WHY"
            )
        else:
            typer.echo("no difference a parser change may explain is left to review")
    else:
        if confirm != found:
            raise ConfigError(
                f"--confirm {confirm!r}: the differences left to review are now set {found!r} ({len(todo)} of them), "
                "not the set you read; list them again and read what changed; nothing recorded"
            )
        with archive_lock(cfg.archive.dir, "archiver review-replay"):
            store = Store.open(cfg.archive.database, create=False)
            try:
                ids = append_replay_reviews(store, todo, who, (note or "").strip())
            finally:
                store.close()
        typer.echo(
            f"recorded {len(ids)} replay review(s) by {who}"
            + (f" (replay_reviews ids {ids[0]}-{ids[-1]})" if ids else "")
        )
    if others:
        typer.echo(
            f"{len(others)} other difference(s) no parser change explains: see `archiver verify --replay`", err=True
        )
    raise typer.Exit(1 if others else 0)


@app.command()
@reports_errors
def backup(
    to: Annotated[
        Path | None,
        typer.Option(help="The backup folder (created if absent; later backups add to it); default: the config's."),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Copy the archive to another folder and verify the copy; exit 1 when the copy does not verify.

    Takes a consistent snapshot of the database and the access log, every WARC and checkpoint file (after
    the first time only the new ones), the public key and the users file; never the private key. A good
    copy is never replaced by a changed file. Run it after the nightly run (it waits for no run: a run
    going on makes it exit 1).

    Example: archiver backup --config /etc/archiver/archiver.toml --to /mnt/backup/archiver
    """
    from .backup import back_up_archive
    from .progress import verify_progress

    cfg = load_config(config)
    to = to or cfg.backup.to
    if to is None:
        raise ConfigError(f"{cfg.path}: name the backup folder with --to FOLDER or `to` in a [backup] table")
    with verify_progress(on_terminal() and not quiet, "backup:") as on_step:
        outcome = back_up_archive(cfg.archive, to, on_step)
    for problem in outcome.problems:
        typer.echo(str(problem))
    typer.echo(
        f"backup in {outcome.destination}: database at ledger seq {outcome.ledger_seq}, "
        f"{outcome.copied} file(s) copied ({outcome.bytes_copied / 1e6:,.1f} MB), {outcome.unchanged} unchanged"
    )
    errors = outcome.errors
    typer.echo("backup verifies" if not errors else f"{errors} problem(s) found", err=bool(errors))
    raise typer.Exit(1 if errors else 0)


@app.command()
@reports_errors
def rebuild(
    out: Annotated[Path, typer.Option("--out", help="The new database to write (must not exist).")],
    config: ConfigOption = DEFAULT_CONFIG,
    public_key: Annotated[
        Path | None,
        typer.Option(help="The archive's public key (PEM) kept elsewhere; default: the one in the key folder."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, one line per run.")] = False,
) -> None:
    """Rebuild the database from the WARC files alone, replaying every capture through the connectors.

    Proves every fact in the database is backed by a captured record; also how a fixed parser re-reads old
    captures. The live database is not touched. The WARC files are first checked against the signed
    checkpoints; exit 1 when one is missing, changed or damaged, or an account's replay fails (the database
    is still written, and said incomplete).

    Example: archiver rebuild --config /etc/archiver/archiver.toml --out /tmp/rebuilt.db
    """
    from .progress import replay_progress
    from .rebuild import rebuild_database

    cfg = load_config(config)
    with replay_progress(on_terminal() and not quiet, typer.echo) as progress:
        outcome = rebuild_database(
            cfg,
            out,
            public_key=public_key,
            progress=progress,
            on_run=progress.run_started,
            on_problem=lambda problem: typer.echo(str(problem)),
        )
    done = f"rebuilt {out} from {outcome.runs} run(s) of WARC records"
    if outcome.errors:
        typer.echo(f"{done}, but it is INCOMPLETE: {len(outcome.errors)} problem(s) above", err=True)
        raise typer.Exit(1)
    typer.echo(done)


@app.command()
@reports_errors
def doctor(
    config: ConfigOption = DEFAULT_CONFIG,
    alert: Annotated[
        bool,
        typer.Option(
            "--alert", help="When something needs a person, also send the report on the configured alert channels."
        ),
    ] = False,
) -> None:
    """Check what the nightly run needs: folders and key permissions, that the archive can be written, disk
    space, the last run, the review queue against the flags' states computed now, the last backup (a warning
    when the config names no backup folder), and every account's credential (one cheap call each, not
    archived). Exit 1 when something needs a person.

    --alert is for systemd timers, which mail nothing: the checks that need a person go by [alerts.email] and
    [alerts.webhook] (the channels' notices on stderr).

    Example: archiver doctor --config /etc/archiver/archiver.toml --alert
    """
    from .doctor import run_doctor
    from .scan.alerts import send_doctor_alert
    from .scan.delivery import require_channels

    cfg = load_config(config)
    if alert:
        require_channels(cfg)  # before any check: an alert that could never go is a config error
    checks = run_doctor(cfg)
    for check in checks:
        typer.echo(str(check))
    if alert:
        for notice in send_doctor_alert(cfg, [(c.name, c.status, c.message) for c in checks]):
            typer.echo(notice, err=True)
    raise typer.Exit(0 if all(c.status == "ok" for c in checks) else 1)


@app.command()
@reports_errors
def export(
    case: Annotated[str, typer.Option("--case", help="The case identifier (goes into bag-info.txt and custody).")],
    out: Annotated[Path, typer.Option("--out", help="The bundle folder to write (new or empty).")],
    config: ConfigOption = DEFAULT_CONFIG,
    item: Annotated[list[str] | None, typer.Option("--item", help="An item key (repeatable).")] = None,
    thread: Annotated[
        list[str] | None,
        typer.Option("--thread", help="Any item key of a thread or conversation, or a conversation key (repeatable)."),
    ] = None,
    author: Annotated[list[str] | None, typer.Option("--author", help="An author handle or id (repeatable).")] = None,
    account: Annotated[list[str] | None, typer.Option("--account", help="A configured account (repeatable).")] = None,
    platform: Annotated[list[str] | None, typer.Option("--platform", help="A platform (repeatable).")] = None,
    query: Annotated[str | None, typer.Option("--query", help="Full-text query over every version.")] = None,
    posted_from: Annotated[str | None, typer.Option("--posted-from", help="Posted on or after (YYYY-MM-DD).")] = None,
    posted_to: Annotated[str | None, typer.Option("--posted-to", help="Posted on or before (YYYY-MM-DD).")] = None,
    captured_from: Annotated[
        str | None, typer.Option("--captured-from", help="A version captured on or after (YYYY-MM-DD).")
    ] = None,
    captured_to: Annotated[
        str | None, typer.Option("--captured-to", help="A version captured on or before (YYYY-MM-DD).")
    ] = None,
    flagged: Annotated[bool, typer.Option("--flagged", help="Only items with flags.")] = False,
    thread_context: Annotated[
        bool, typer.Option("--thread-context", help="Add each item's parents and the rest of its thread.")
    ] = False,
    wacz: Annotated[bool, typer.Option("--wacz", help="Also write data/evidence.wacz (ReplayWeb.page, pywb).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on a terminal.")] = False,
) -> None:
    """Write an evidence bundle (signed BagIt bag) of the selected items with every version and event.

    Selectors combine: different ones narrow (AND), a repeated one widens (OR). The bag holds the rows as
    JSON Lines and CSV, the original WARC records, the media, report.html and custody.json, and its manifest
    is signed with the archive's key. The export is recorded in the archive's `exports` table.

    Example: archiver export --config demo-archive/archiver.toml --case HR-2026-014 --author theo47 --out case-014
    """
    from .bundle.select import Selectors, parse_range
    from .bundle.write import export_bundle

    cfg = load_config(config)
    posted = parse_range(posted_from, posted_to, "--posted")
    captured = parse_range(captured_from, captured_to, "--captured")
    selectors = Selectors(
        item_keys=tuple(item or ()),
        threads=tuple(thread or ()),
        authors=tuple(author or ()),
        accounts=tuple(account or ()),
        platforms=tuple(platform or ()),
        query=query,
        posted_from=posted[0],
        posted_to=posted[1],
        captured_from=captured[0],
        captured_to=captured[1],
        flagged_only=flagged,
        thread_context=thread_context,
    )
    show = on_terminal() and not quiet  # steps on a terminal; only the outcome under cron
    result = export_bundle(
        cfg, out, case, selectors, wacz=wacz, on_step=lambda step: typer.echo(step) if show else None
    )
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    typer.echo(f"wrote {result.path}: {counts}; manifest sha256 {result.manifest_sha256} (export {result.export_id})")
    for note in result.notes:
        typer.echo(note)
    for missed in result.unmatched:
        typer.echo(
            f"note: {missed['option']} {missed['value']!r} selected no item (with the other selectors); the bundle "
            "holds nothing for it (custody.json: unmatched_selectors)",
            err=True,
        )


@app.command("verify-bundle")
@reports_errors
def verify_bundle_command(
    bundle: Annotated[Path, typer.Argument(help="The bundle folder.", exists=True, file_okay=False)],
    public_key: Annotated[
        Path | None, typer.Option(help="The archive's public key (PEM) obtained separately, to trust.")
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option(
            help="A folder of checkpoint copies kept away from the archive (checkpoint-*.json): each must be in the "
            "bundle's checkpoint history, unchanged; the rows their ledger trees hold are then vouched for by them.",
        ),
    ] = None,
) -> None:
    """Check an evidence bundle without the archive: the bag, its signature, every WARC record's digests, every
    row against its ledger entry and the signed checkpoint, and the checkpoints before it. Exit 1 with one line
    per problem. Without --public-key the signature is checked only against the key the bundle carries (its
    fingerprint is printed), which a forger who signs a changed bundle again passes too; --checkpoints holds the
    bundle to checkpoint copies kept where the archive's operators cannot change them.

    Example: archiver verify-bundle case-014 --public-key archive-ed25519.pub --checkpoints /worm/checkpoints
    """
    from .bundle.verify import verified_summary, verify_bundle

    require_kept_folder(checkpoints)
    problems = verify_bundle(bundle, public_key, checkpoints)
    for problem in problems:
        typer.echo(str(problem))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        typer.echo(f"{len(errors)} problem(s) found", err=True)
        raise typer.Exit(1)
    for line in verified_summary(bundle, public_key, checkpoints):
        typer.echo(line)


key_app = typer.Typer(help="The archive's signing key.", no_args_is_help=True)
app.add_typer(key_app, name="key")


@key_app.command("export")
@reports_errors
def key_export(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Print the archive's public key (PEM), to keep where the archive's operators cannot change it.

    Example: archiver key export --config /etc/archiver/archiver.toml > archive-ed25519.pub
    """
    from .checkpoints import load_private_key, public_pem

    cfg = load_config(config)
    typer.echo(public_pem(load_private_key(cfg.archive.keys_dir).public_key()).decode("ascii"), nl=False)


users_app = typer.Typer(help="The people who may sign in to `archiver serve`, and their roles.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("add")
@reports_errors
def users_add(
    name: Annotated[str, typer.Argument(help="Sign-in name: lower-case letters, digits, '.', '-'.")],
    role: Annotated[str, typer.Option(help="viewer (search, browse) or investigator (also SQL, access log).")],
    config: ConfigOption = DEFAULT_CONFIG,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (for scripts).")
    ] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Give an existing user a new password and role.")] = False,
) -> None:
    """Add a person who may sign in (the password is asked for twice and stored only as a PBKDF2 hash).

    Example: archiver users add dana --role investigator --config /etc/archiver/archiver.toml
    """
    from .users import add_user, users_path

    cfg = load_config(config)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = add_user(users_path(cfg.archive.database), name, password, role, replace=replace)
    typer.echo(f"{user.name}: {user.role}")


@users_app.command("remove")
@reports_errors
def users_remove(
    name: Annotated[str, typer.Argument(help="The user to remove.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Remove a person: a running server refuses them from their next request.

    Example: archiver users remove dana --config /etc/archiver/archiver.toml
    """
    from .users import remove_user, users_path

    cfg = load_config(config)
    remove_user(users_path(cfg.archive.database), name)
    typer.echo(f"removed {name}")


@users_app.command("list")
@reports_errors
def users_list(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """List who may sign in, with their role and when they were added.

    Example: archiver users list --config /etc/archiver/archiver.toml
    """
    from .users import load_users, users_path

    cfg = load_config(config)
    users = load_users(users_path(cfg.archive.database))
    if not users:
        typer.echo("no users: `archiver serve` serves loopback only, without sign-in")
    for user in sorted(users.values(), key=lambda u: u.name):
        typer.echo(f"{user.name}\t{user.role}\tadded {user.added_at}")


access_app = typer.Typer(help="The access log of `archiver serve` (who looked at what).", no_args_is_help=True)
app.add_typer(access_app, name="access-log")


@access_app.command("verify")
@reports_errors
def access_log_verify(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Check the access log's hash chain and append-only triggers, and that every entry a checkpoint signed is
    still there as signed (rows cut away with the chain recomputed); exit 1 on any problem.

    Example: archiver access-log verify --config /etc/archiver/archiver.toml
    """
    from .access_log import access_log_path, check_signed_heads, verify_access_log
    from .checkpoints import signed_access_log_heads
    from .store import Store, require_database

    cfg = load_config(config)
    require_database(cfg.archive.database)
    path = access_log_path(cfg.archive.database)
    problems = verify_access_log(path)
    store = Store.open(cfg.archive.database, readonly=True)
    try:
        problems += check_signed_heads(path, signed_access_log_heads(store.conn)) if path.is_file() else []
    finally:
        store.close()
    for problem in problems:
        typer.echo(str(problem))
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{path}: access log verifies")


@app.command()
@reports_errors
def checkpoint(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Sign the ledger head and the closed WARC files now (each run does this at its end).

    Example: archiver checkpoint --config /etc/archiver/archiver.toml
    """
    from .lock import archive_lock
    from .pipeline import checkpoint_archive
    from .store import Store, require_database

    cfg = load_config(config)
    require_database(cfg.archive.database)
    with archive_lock(cfg.archive.dir, "archiver checkpoint"):
        store = Store.open(cfg.archive.database, create=False)
        try:
            made = checkpoint_archive(store, cfg, None)
        finally:
            store.close()
    typer.echo(f"checkpoint {made.file_name}: ledger seq {made.ledger_seq} hash {made.ledger_hash}")


@app.command()
@reports_errors
def status(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show the last run, each account's last outcome, counts and archive size.

    Example: archiver status --config demo-archive/archiver.toml
    """
    from .status import read_status, status_json

    cfg = load_config(config)
    st = read_status(cfg.archive.database, cfg.archive.dir, cfg.backup.to)
    if as_json:
        typer.echo(status_json(st))
        return
    last = st.last_run or {}
    typer.echo(f"archive {st.database} ({st.size_bytes / 1e6:.1f} MB)")
    typer.echo(f"last run {last.get('id', '-')} started {last.get('started_at', '-')}: {last.get('status', '-')}")
    for acc in st.accounts:
        line = f"  {acc['account']}: {acc['status']} at {acc['finished_at']} (+{acc['new_items']} items, "
        line += f"+{acc['new_versions']} versions, {acc['deletions']} deletions)"
        typer.echo(line + (f" error: {acc['error']}" if acc["error"] else ""))
    typer.echo("items: " + ", ".join(f"{k} {v}" for k, v in sorted(st.items_by_status.items())))
    if st.schema_version < st.software_schema_version:
        typer.echo(
            f"archive schema {st.schema_version}, this software's {st.software_schema_version}: "
            "the next run (or any command that writes) upgrades it"
        )
    if st.unscanned_versions:
        typer.echo(
            f"PHI scan: {st.unscanned_versions} version(s) could not be scanned; review their text by hand "
            "(Datasette: unscanned_versions)"
        )
    if st.next_token_expiry:
        typer.echo(f"next token to expire: {st.next_token_expiry['account']} on {st.next_token_expiry['expires_at']}")
    if st.backup is not None:
        done, verified = st.backup.get("last_backup"), st.backup.get("last_verified")
        line = f"last backup in {st.backup['folder']}: "
        if done is None:
            line += "none yet"
        else:
            line += f"{done['at']}, " + ("verified" if done["verified"] else f"{done['problems']} problem(s)")
            if verified and not done["verified"]:
                line += f"; last verified {verified['at']}"
        typer.echo(line)


@app.command()
@reports_errors
def scan(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Config file (allow-lists, rule files); default ./archiver.toml.", dir_okay=False
        ),
    ] = None,
    all_versions: Annotated[
        bool, typer.Option("--all", help="Rescan every version (after a rule change); default: only unscanned ones.")
    ] = False,
    text: Annotated[
        str | None,
        typer.Option("--text", help="Scan a JSON Lines file of {id, text} (- for stdin) instead of the archive."),
    ] = None,
) -> None:
    """Scan for PHI / policy hits and append flags (each run already scans its new versions).

    Then sends the alert channels every flag they owe (an alert channel that fails is a notice; its flags stay
    owed). Exit 1 when a version's detection raised (a detector bug on an odd text): the versions left out are
    named, for review by hand. With --text, no archive is touched: prints one JSON line per input (id, flagged,
    flags with category, rule, span and reason); --config is then optional.

    Example: archiver scan --all --config /etc/archiver/archiver.toml
    """
    from .scan.archive import append_scan, build_detector, open_text_source, scan_text_lines
    from .scan.parallel import worker_count

    if text is not None:
        if all_versions:
            raise ConfigError("--all rescans the archive and --text scans a file without one: give only one of them")
        cfg = load_config(config) if config is not None else None
        detector = build_detector(cfg)
        stream, source = open_text_source(text)
        try:
            for result in scan_text_lines(detector, stream, source):
                typer.echo(json.dumps(result, ensure_ascii=False))
        finally:
            if text != "-":
                stream.close()
        return
    from .lock import archive_lock
    from .progress import count_progress
    from .scan.delivery import alert_after
    from .store import Store, require_database

    cfg = load_config(config or DEFAULT_CONFIG)
    require_database(cfg.archive.database)
    detector = build_detector(cfg)
    notices: list[str] = []
    with archive_lock(cfg.archive.dir, "archiver scan"):
        store = Store.open(cfg.archive.database, create=False)
        try:
            with count_progress(on_terminal(), "scanning versions") as on_progress:
                outcome = append_scan(
                    store,
                    detector,
                    mode="all" if all_versions else "new",
                    on_progress=on_progress,
                    workers=worker_count(cfg.scan.workers),
                )
            alert_after(store, cfg, None, notices)
        finally:
            store.close()
    typer.echo(outcome.summary())
    for notice in notices:
        typer.echo(notice)
    problem = outcome.problem()  # versions left out because their detection raised: a person must look
    if problem is not None:
        typer.echo(problem)
        raise typer.Exit(1)


@app.command()
@reports_errors
def review(
    flag: Annotated[int, typer.Argument(help="The flag's id (flag_id in the flag_queue).")],
    decision: Annotated[
        str, typer.Option("--decision", "-d", help="violation, false-positive or escalated.", show_default=False)
    ],
    note: Annotated[str | None, typer.Option("--note", "-n", help="Why; what was done.")] = None,
    reviewer: Annotated[
        str | None,
        typer.Option(
            "--reviewer",
            help="Who decides; default $ARCHIVER_REVIEWER, else the account this runs as. The account (its uid, and "
            "SUDO_USER as claimed) is recorded beside it either way.",
        ),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Record a decision on a flag (appended with the reviewer's name and the account that recorded it; earlier
    reviews stay).

    Example: archiver review 42 --decision false-positive --note "clinic's public fax number"
    """
    from .lock import archive_lock
    from .oneline import refuse_invisible
    from .operator import current_operator
    from .scan.archive import append_review
    from .store import Store, require_database

    # The name and the note stay in append-only rows and print as one line: a line break or an escape sequence
    # in either could never be taken out again, and would forge output. Refused before anything is touched.
    if reviewer:
        refuse_invisible("--reviewer", reviewer)
    elif os.environ.get("ARCHIVER_REVIEWER"):
        refuse_invisible("$ARCHIVER_REVIEWER", os.environ["ARCHIVER_REVIEWER"])
    if note is not None:
        refuse_invisible("--note", note)
    who = reviewer or os.environ.get("ARCHIVER_REVIEWER") or current_operator().name
    cfg = load_config(config)
    require_database(cfg.archive.database)
    with archive_lock(cfg.archive.dir, "archiver review"):
        store = Store.open(cfg.archive.database, create=False)
        try:
            review_id = append_review(store, flag, decision, who, note)
        finally:
            store.close()
    typer.echo(f"review {review_id}: flag {flag} {decision} by {who}")


@app.command()
@reports_errors
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Where to build the demo archive.")] = Path("demo-archive"),
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Stop after archiving.")] = False,
    host: Annotated[str, typer.Option(help="Address for Datasette.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for Datasette.", min=1, max=65535)] = 8001,
) -> None:
    """Archive a built-in sample clinic (served on loopback) twice, then serve the archive in Datasette.

    The second run sees new replies, an edit, a deleted post and a deleted reply. Leaves DIR/archiver.toml
    so that serve, verify and status work on the demo archive afterwards.

    Example: archiver demo --dir demo-archive --no-serve
    """
    from .demo.run import run_demo

    setup_logging(False)
    outcome = run_demo(directory, echo=typer.echo)
    if no_serve:
        raise typer.Exit(outcome.exit_code)
    from .serve import run_server

    run_server(
        outcome.config.archive.database,
        host=host,
        port=port,
        warc_dir=outcome.config.archive.warc_dir,
        on_ready=lambda url: typer.echo(f"serving the demo archive at {url} (Ctrl-C to stop)"),
    )


alerts_app = typer.Typer(
    help="Alerts of new flags: what each channel (e-mail, webhook) still owes, and sending it now.",
    no_args_is_help=True,
)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("send")
@reports_errors
def alerts_send(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Send every flag the alert channels still owe, now (each run and scan already does, at its end).

    For after an outage: fix the SMTP server or the webhook, then send. Exit 0 when everything owed was
    delivered (or nothing was owed), 1 when a channel failed (its flags stay owed), 2 when no channel is
    configured.

    Example: archiver alerts send --config /etc/archiver/archiver.toml
    """
    from .scan.delivery import send_owed_alerts

    answers = send_owed_alerts(load_config(config))
    for answer in answers:
        typer.echo(answer.notice, err=not answer.sent)
    if not answers:
        typer.echo("nothing owed: every alerted flag in the review queue was delivered on every channel")
    raise typer.Exit(0 if all(answer.sent for answer in answers) else 1)


@alerts_app.command("pending")
@reports_errors
def alerts_pending(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON, every owed flag listed.")] = False,
) -> None:
    """List what each alert channel still owes: flags in the review queue it has not delivered, and its last
    attempt (read-only).

    Example: archiver alerts pending --config /etc/archiver/archiver.toml
    """
    from .scan.alerts import ALERT_LISTED
    from .scan.delivery import read_pending_alerts

    pending = read_pending_alerts(load_config(config))
    if as_json:
        typer.echo(json.dumps([owed.as_json() for owed in pending], indent=2))
        return
    for owed in pending:
        last = owed.last_attempt
        said = f"; last attempt {last['at']}: {last['error'] or last['outcome']}" if last else ""
        typer.echo(f"{owed.channel} ({owed.destination}): {len(owed.flags)} flag(s) owed{said}")
        for flag in owed.flags[:ALERT_LISTED]:
            typer.echo(
                f"  flag {flag['id']}: {flag['severity']} {flag['category']} ({flag['rule_id']}) {flag['item_key']} "
                f"flagged {flag['flagged_at']}"
            )
        if len(owed.flags) > ALERT_LISTED:
            typer.echo(f"  ... and {len(owed.flags) - ALERT_LISTED} more (--json lists them all)")


consent_app = typer.Typer(
    help="The consent register: patients' written consents to appear in the organisation's posts.",
    no_args_is_help=True,
)
app.add_typer(consent_app, name="consent")


@consent_app.command("import")
@reports_errors
def consent_import(
    file: Annotated[Path, typer.Argument(help="CSV file, first row the column names.", dir_okay=False)],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Import consents from a CSV file into the archive's register: every row or none.

    Columns: consent_id, patient_ref (an opaque id, never a name), granted_on and document_sha256 (the signed
    form's SHA-256), and optionally platform, account, item, scope, expires_on, revoked_on. A consent already
    in the register with the same values is skipped; a revocation or a new expiry is imported as a new row
    of the same consent_id. Each bad row is reported on one line and nothing is imported (exit 2).

    Example: archiver consent import consents-2026-11.csv --config /etc/archiver/archiver.toml
    """
    from .consent.register import ConsentInputError, import_consents

    try:
        outcome = import_consents(load_config(config), file)
    except ConsentInputError as exc:
        for line in exc.lines:
            typer.echo(f"archiver: error: {line}", err=True)
        typer.echo(f"archiver: {exc.summary}", err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo(
        f"{file}: {outcome.rows_read} row(s): {len(outcome.new)} new consent(s), {len(outcome.changed)} changed, "
        f"{outcome.unchanged} unchanged, {outcome.links} link(s) to items"
        + (f" (import {outcome.import_id})" if outcome.import_id else "; nothing appended")
    )


@consent_app.command("link")
@reports_errors
def consent_link(
    consent: Annotated[str, typer.Argument(help="The consent_id in the register.")],
    item: Annotated[str, typer.Argument(help="The item_key of the archived post (as the items table shows it).")],
    media: Annotated[
        str | None, typer.Option("--media", help="The URL of the one attachment the consent covers.")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Record that a consent covers an archived post or own reply (or one photo of it), so the check knows it is
    on file. An item the check never reads (a member of the public's comment, a direct message) is refused.

    Example: archiver consent link C-2026-014 mastodon:social.example:113502 --config /etc/archiver/archiver.toml
    """
    from .consent.register import link_consent

    outcome = link_consent(load_config(config), consent, item, media)
    what = f"{outcome.item_key} ({outcome.media_url})" if outcome.media_url else outcome.item_key
    verb = "linked to" if outcome.appended else "was already linked to"
    typer.echo(f"consent {outcome.consent_id} {verb} {what}")
    if outcome.item_deleted:
        typer.echo(
            f"notice: {outcome.item_key} is deleted on the platform (the archive keeps it); "
            "`archiver consent check` reads it again only if it is restored",
            err=True,
        )
    elif outcome.consent_status != "live":
        typer.echo(
            f"warning: consent {outcome.consent_id} is {outcome.consent_status} today; "
            "`archiver consent check` will flag the post while it is published",
            err=True,
        )


@consent_app.command("list")
@reports_errors
def consent_list(
    config: ConfigOption = DEFAULT_CONFIG,
    status: Annotated[
        str | None, typer.Option("--status", help="Only consents in this status: live, pending, expired, revoked.")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Status on this day (YYYY-MM-DD) instead of today.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the register: each consent's current state, its status today and the items linked to it.

    Example: archiver consent list --status revoked --config /etc/archiver/archiver.toml
    """
    from .consent.register import read_consents
    from .consent.state import STATUSES

    if status is not None and status not in STATUSES:
        raise ConfigError(f"--status {status!r}: not one of {', '.join(STATUSES)}")
    today = _day_option("--as-of", as_of)
    listing = read_consents(load_config(config), today, status)
    if as_json:
        rows = [
            {**c.consent.__dict__, "status": c.status, "linked_items": list(c.linked_items), "rows": c.register_rows}
            for c in listing
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    for entry in listing:
        c = entry.consent
        covers = " / ".join(x for x in (c.platform, c.account) if x)
        ends = ", ".join(
            part
            for part in (c.expires_on and f"expires {c.expires_on}", c.revoked_on and f"revoked {c.revoked_on}")
            if part
        )
        typer.echo(
            f"{c.consent_id}  {entry.status:<8} patient {c.patient_ref}  covers {covers}  granted {c.granted_on}"
            + (f", {ends}" if ends else "")
            + f"  items: {', '.join(entry.linked_items) or 'none'}"
            + (f"  scope: {c.scope}" if c.scope else "")
        )
    typer.echo(f"{len(listing)} consent(s) on {today.isoformat()}")


@consent_app.command("check")
@reports_errors
def consent_check(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome and the new flags as JSON.")] = False,
) -> None:
    """Check the organisation's published posts and own replies against the register (each run already does).

    Flags, into the review queue: an own post or reply that looks like a patient story, testimonial or photo
    with no live consent linked ("patient content without consent on file"), and one whose linked consent
    expired or was revoked while it is still published ("consent lapsed, content still published"). Then sends the
    alert channels every flag they owe (what they answered goes to stderr). Exit 1 while consent flags are open
    in the review queue.

    Example: archiver consent check --config /etc/archiver/archiver.toml
    """
    from .consent.check import check_consents

    outcome = check_consents(load_config(config), local_today())
    for notice in outcome.notices:  # stderr: --json's stdout stays one document
        typer.echo(notice, err=True)
    if as_json:
        summary = {k: v for k, v in outcome.__dict__.items() if k not in ("flags", "notices")}
        typer.echo(json.dumps({**summary, "new_flags": outcome.flags}, indent=2))
    else:
        for flag in outcome.flags:
            typer.echo(f"flag {flag['id']} {flag['item_key']}: {flag['reason']}")
        typer.echo(outcome.summary())
    raise typer.Exit(1 if outcome.open_flags else 0)


def _day_option(option: str, value: str | None) -> date:
    if value is None:
        return local_today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option} {value!r}: not a date; write YYYY-MM-DD") from None


# typer's own copy of click (typer 0.29 and later) or click itself: a BadParameter is a UsageError in both.
UsageError = next(base for base in typer.BadParameter.__mro__ if base.__name__ == "UsageError")


def main() -> None:
    """The `archiver` command. A usage mistake (an unknown option or command, a missing argument) is one line
    naming it, exit 2, like every other bad input: click would draw it as a five-line box."""
    # SIGTERM (a service manager's stop, cron's timeout) stops a command as Ctrl-C does: a run signs what it
    # captured, a replay removes its temporary database, and the exit is 130 with one line, not a kill.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        code = app(prog_name="archiver", standalone_mode=False)
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `archiver` alone: typer printed the help as it raised
            sys.exit(exc.exit_code)
        where = exc.ctx.command_path if exc.ctx is not None else "archiver"
        typer.echo(f"archiver: error: {exc.format_message().rstrip('.')}; see `{where} --help`", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:  # Ctrl-C at a prompt (a password)
        typer.echo("archiver: interrupted", err=True)
        sys.exit(Interrupted.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
