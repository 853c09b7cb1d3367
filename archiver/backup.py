"""A verified copy of the archive in another folder (another disk, a mounted share), made again each night.

The copy is laid out like the archive folder, so it can take the archive's place. Under the archive's lock
(no run, scan or export writes meanwhile) it takes:
- the database and the access log as SQLite backups, each one consistent snapshot, in rollback-journal mode
  (a reader of the copy leaves no WAL file beside it);
- every file under the WARC folder (WARCs, checkpoint copies, torn tails set aside): only the new ones after
  the first time, since a closed WARC never changes; each through a temporary name, fsynced, then moved;
- the public key and the users file. The private signing key stays where it is: a backup that held it
  would let whoever reads the backup sign checkpoints (keep it apart, in a vault).

Each backup ends by writing `backup.json` in the folder: when it ran, whether the copy verified, and when
and at which ledger entry the last copy that verified was made (what `archiver doctor` checks).

A backup never replaces a good copy with a changed one: a WARC whose bytes no longer match its recorded
sha256, or any other file that changed since it was copied, is reported and the copy kept. The new database
snapshot is verified (`verify_archive`, against the copied WARCs) before it replaces the previous one; when
it does not verify it is kept beside it as `NAME.unverified` and the previous one stays in place. New files
wait under temporary names until then, so a backup stopped or out of disk leaves the folder as it was.
"""

from __future__ import annotations

import errno
import filecmp
import hashlib
import json
import os
import signal
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, ledger
from .access_log import TABLE as ACCESS_LOG_TABLE
from .access_log import access_log_head, access_log_path, check_signed_heads, verify_access_log
from .checkpoints import (
    CHECKPOINT_DIR,
    PUBLIC_KEY,
    fingerprint,
    load_public_key,
    public_b64,
    restore_copies,
    signed_access_log_heads,
    signed_warc_files,
)
from .config import ArchiveConfig
from .errors import ArchiverError, ConfigError
from .lock import archive_lock
from .problems import Problem
from .recovery import file_sha256, fsync_path
from .store import Store
from .users import users_path
from .verify import verify_archive
from .warc import iso, utcnow

PARTIAL = ".partial"  # suffix of a file being written; left only by a backup that was stopped
UNVERIFIED = ".unverified"
MANIFEST = "backup.json"
DAMAGED = "damaged"  # a key file there that is not a public key


class BackupDiskFull(ArchiverError):
    """The backup folder's disk filled up: the backup stopped, the folder is left as the last one made it."""

    exit_code = 1


@dataclass
class BackupOutcome:
    destination: Path
    ledger_seq: int = 0
    copied: int = 0  # files of the WARC folder, and the public key, copied this time
    unchanged: int = 0  # already in the backup, checked equal
    bytes_copied: int = 0
    problems: list[Problem] = field(default_factory=list)
    public_key: str | None = None  # fingerprint of the archive's public key

    @property
    def errors(self) -> int:
        """Problems that are not notes: the copy cannot be trusted as it is."""
        return sum(1 for p in self.problems if p.severity == "error")


@dataclass(frozen=True)
class _Staged:
    """A file copied under a temporary name, moved into place only once the folder as a whole verifies."""

    path: Path
    target: Path
    new: bool = False  # not in the backup before: the new snapshot records it, so it goes in only with it
    size: int | None = None  # bytes copied, for a file the outcome counts
    kind: str = "file"  # or "database", "access log": moved last, or set aside when they do not verify


def back_up_archive(
    archive: ArchiveConfig,
    destination: Path,
    on_step: Callable[[str, int, int], None] | None = None,
) -> BackupOutcome:
    """Copy the archive into `destination` and verify the copy. `on_step(step, done, total)` shows progress:
    the files of the WARC folder copied or checked, then verify's steps."""
    on_step = on_step or (lambda step, done, total: None)
    destination = _checked_destination(archive, destination)
    outcome = BackupOutcome(destination)
    with archive_lock(archive.dir, "archiver backup"):
        # Before anything is written there: another archive's backup must not receive this one's PHI.
        ours, theirs, signer = _keys(archive, destination)
        outcome.public_key = fingerprint(ours) if ours not in (None, DAMAGED) else None
        # A run stopped between a checkpoint's commit and moving its copy: the copy the database records.
        for notice in _complete_checkpoint_copies(archive):
            outcome.problems.append(Problem(str(archive.warc_dir / CHECKPOINT_DIR), notice, "note"))
        staged: list[_Staged] = []
        try:
            _back_up(archive, destination, (ours, theirs, signer), staged, outcome, on_step)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise BackupDiskFull(_disk_full(destination, exc.strerror or str(exc))) from None
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
                raise
            raise BackupDiskFull(_disk_full(destination, str(exc))) from None
        finally:
            for left in staged:  # what a failure left unmoved: the folder stays as the last backup made it
                left.path.unlink(missing_ok=True)
    fsync_path(destination)
    return outcome


def _disk_full(destination: Path, detail: str) -> str:
    return (
        f"--to {destination}: the backup folder's disk is full ({detail}); the backup stopped and the folder is "
        "left as the last backup made it; free some space there and run `archiver backup` again"
    )


def _back_up(
    archive: ArchiveConfig,
    destination: Path,
    keys: tuple[str | None, str | None, str | None],
    staged: list[_Staged],
    outcome: BackupOutcome,
    on_step: Callable[[str, int, int], None],
) -> None:
    try:
        destination.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise ConfigError(f"--to {destination}: cannot create the backup folder ({exc.strerror})") from None
    if not os.access(destination, os.W_OK | os.X_OK):
        raise ConfigError(f"--to {destination}: the backup folder is not writable")
    _remove_partials(destination)
    # the backup is laid out with the default names whatever the config names, so `verify --archive-dir`
    # and a restore find it as an archive folder
    layout = ArchiveConfig.in_folder(destination)
    database = layout.database
    snapshot = database.with_name(database.name + PARTIAL)
    staged.append(_Staged(snapshot, database, kind="database"))  # listed first: removed should the copy fail
    _snapshot(archive.database, snapshot)
    warcs = layout.warc_dir
    key_copy = _stage_key(archive, destination, keys, staged, outcome)
    rows = _checkpoint_rows(snapshot)
    recorded, outcome.ledger_seq = _recorded_warcs_and_head(snapshot, key_copy)
    sources = {p.relative_to(archive.warc_dir).as_posix(): p for p in _files_under(archive.warc_dir)}
    for done, (name, source) in enumerate(sources.items(), start=1):
        reference = _sha256_reference(recorded[name]) if name in recorded else rows.get(name)
        _stage_unless_kept(source, warcs / name, reference, staged, outcome)
        on_step("copying files", done, len(sources))
    for name in sorted(set(recorded) - set(sources)):
        kept = "; the backup's copy is kept" if (warcs / name).is_file() else ""
        message = f"recorded in warc_files but missing from the archive{kept}"
        outcome.problems.append(Problem(f"backup of {archive.warc_dir / name}", message))
    users = users_path(archive.database)
    if users.is_file():  # the users file changes when people are added or removed: the latest is right
        target_users = users_path(layout.database)
        staged.append(_Staged(_stage_copy(users, target_users)[0], target_users))
    log = access_log_path(archive.database)
    target_log = access_log_path(layout.database)
    # The log's snapshot after the database's: the checkpoints in the database sign heads of it.
    staged_log = target_log.with_name(target_log.name + PARTIAL) if log.is_file() else None
    if staged_log is not None:
        staged.append(_Staged(staged_log, target_log, kind="access log"))
        _snapshot(log, staged_log)
    with tempfile.TemporaryDirectory(prefix="archiver-backup-") as view:
        # The WARC folder as it will be once the staged files are in place, for verify to check the snapshot by.
        folder = _folder_view(warcs, staged, Path(view))
        problems = verify_archive(
            snapshot,
            folder,
            key_copy,
            lambda step, n, total: on_step(f"verifying {step}", n, total),
            access_log=staged_log or target_log,
        )
    problems = [_renamed(p, {str(folder): str(warcs), str(snapshot): str(database)}) for p in problems]
    log_in_place = True
    if staged_log is not None:
        log_problems = [p for p in problems if str(staged_log) in p.where]
        problems = [p for p in problems if p not in log_problems]
        log_in_place = _judge_log(staged_log, target_log, log_problems, outcome)
        if not log_in_place and target_log.is_file():  # the snapshot must agree with the log that stays
            problems += check_signed_heads(target_log, _signed_log_heads(snapshot))
    db_in_place = _judge_snapshot(database, problems, staged, outcome)
    with _stops_held():
        _move_into_place(staged, db_in_place, log_in_place, outcome)
        _write_manifest(destination, outcome)


@contextmanager
def _stops_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait for the few moves into place: a stop between them would leave files beside a
    snapshot that does not record them. (Only the main thread can hold them for Python's handlers.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _move_into_place(staged: list[_Staged], db_in_place: bool, log_in_place: bool, outcome: BackupOutcome) -> None:
    """Files under the WARC folder and the keys first, then the access log, the database last: a snapshot
    in place never records a file that is not there yet, and the log in place holds every head it signs."""
    order = {"file": 0, "access log": 1, "database": 2}
    for item in sorted(staged, key=lambda item: order[item.kind]):
        staged.remove(item)
        if item.new and not db_in_place:
            item.path.unlink()  # the snapshot recording it stays aside; the next backup copies it again
            continue
        in_place = {"database": db_in_place, "access log": log_in_place}.get(item.kind, True)
        os.replace(item.path, item.target if in_place else _unverified(item.target))
        fsync_path(item.target.parent)
        if item.size is not None:
            outcome.copied += 1
            outcome.bytes_copied += item.size


def read_manifest(destination: Path) -> dict | None:
    """The folder's `backup.json`, or None when no backup finished there (or it cannot be read)."""
    try:
        return json.loads((Path(destination) / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _write_manifest(destination: Path, outcome: BackupOutcome) -> None:
    errors = outcome.errors
    attempt = {
        "at": iso(utcnow()),
        "verified": not errors,
        "problems": errors,
        "ledger_seq": outcome.ledger_seq,
        "copied": outcome.copied,
        "unchanged": outcome.unchanged,
    }
    previous = read_manifest(destination) or {}
    verified = {"at": attempt["at"], "ledger_seq": outcome.ledger_seq} if not errors else previous.get("last_verified")
    manifest = {
        "software_version": __version__,
        "public_key": outcome.public_key or previous.get("public_key"),  # whose backup this folder holds
        "last_backup": attempt,
        "last_verified": verified,
    }
    with _staged(destination / MANIFEST) as staged:
        staged.write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        os.replace(staged, destination / MANIFEST)


def _checked_destination(archive: ArchiveConfig, destination: Path) -> Path:
    destination = Path(destination).resolve()
    source = archive.dir.resolve()
    if destination == source or source in destination.parents or destination in source.parents:
        raise ConfigError(
            f"--to {destination}: the backup must be outside the archive folder {source} (and not hold it)"
        )
    if destination.exists() and not destination.is_dir():
        raise ConfigError(f"--to {destination}: a file is in the way; name a folder")
    if not archive.database.is_file():
        raise ConfigError(f"{archive.database}: archive database not found; nothing to back up")
    return destination


def _remove_partials(destination: Path) -> None:
    """Temporary files of a backup that was stopped: ours, never part of a copy."""
    for path in destination.rglob(f"*{PARTIAL}"):
        if path.is_file():
            path.unlink()


def _files_under(folder: Path) -> list[Path]:
    """The regular files under the WARC folder, but for another process's temporary ones."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith((".tmp", PARTIAL)))


def _snapshot(source: Path, target: Path) -> Path:
    """One consistent copy of a SQLite file (its WAL included), in rollback-journal mode, mode 0600."""
    target.unlink(missing_ok=True)
    target.touch(mode=0o600)
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # all pages in one step: one read snapshot of the source
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()
    fsync_path(target)
    return target


def _unverified(target: Path) -> Path:
    return target.with_name(target.name + UNVERIFIED)


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)


def _read_key(path: Path) -> str | None:
    """The key file's key as base64, DAMAGED when it is not a public key, None when there is none."""
    if not path.is_file():
        return None
    try:
        return public_b64(load_public_key(path))
    except ConfigError:
        return DAMAGED


def _keys(archive: ArchiveConfig, destination: Path) -> tuple[str | None, str | None, str | None]:
    """The archive's public key, the backup's copy, and the key the newest checkpoint is signed with. Refuses
    a folder holding another archive's backup (its key, or the one its backup.json names, is none of this
    archive's), before anything is written there."""
    ours = _read_key(archive.keys_dir / PUBLIC_KEY)
    theirs = _read_key(ArchiveConfig.in_folder(destination).keys_dir / PUBLIC_KEY)
    conn = _read_only(archive.database)
    try:
        signers = [row[0] for row in conn.execute("SELECT public_key FROM checkpoints ORDER BY id")]
    finally:
        conn.close()
    known = {key for key in (ours, *signers) if key not in (None, DAMAGED)}
    # backup.json names whose backup the folder holds; a key copy that differs from it was damaged there.
    recorded = (read_manifest(destination) or {}).get("public_key")
    if recorded:
        found = recorded if recorded not in {fingerprint(key) for key in known} else None
    else:
        found = fingerprint(theirs) if theirs not in (None, DAMAGED) and theirs not in known else None
    if found is None:
        return ours, theirs, signers[-1] if signers else None
    mine = ", ".join(sorted(fingerprint(key) for key in known)) or "none"
    raise ConfigError(
        f"--to {destination}: the folder holds the backup of another archive (public key {found}; this "
        f"archive's: {mine}); nothing was copied: name another folder"
    )


def _complete_checkpoint_copies(archive: ArchiveConfig) -> list[str]:
    """What a run does first (restore_copies): under the lock, so the copies match the snapshot taken next."""
    conn = _read_only(archive.database)
    try:
        return restore_copies(conn, archive.warc_dir)
    finally:
        conn.close()


def _stage_key(
    archive: ArchiveConfig,
    destination: Path,
    keys: tuple[str | None, str | None, str | None],
    staged: list[_Staged],
    outcome: BackupOutcome,
) -> Path | None:
    """Stage the public key where the backup lacks a good copy; returns the key file to verify the copy by
    (None when no good one is at hand). The right key is the one the checkpoints are signed with."""
    ours, theirs, signer = keys
    source = archive.keys_dir / PUBLIC_KEY
    target = ArchiveConfig.in_folder(destination).keys_dir / PUBLIC_KEY
    where = f"backup of {source}"
    if theirs is not None and theirs == ours:
        outcome.unchanged += 1
        return target
    archive_right = ours not in (None, DAMAGED) and signer in (None, ours)
    if theirs is None or archive_right:
        if ours is None:
            return None
        path = _stage_copy(source, target)[0]
        staged.append(_Staged(path, target, size=path.stat().st_size))
        if ours == DAMAGED:
            outcome.problems.append(Problem(where, "not a public key; copied as it is, the only copy"))
            return None
        if theirs is not None:
            outcome.problems.append(Problem(f"backup {target}", "damaged in the backup, copied again", "note"))
        return path
    found = "missing from" if ours is None else "changed in"
    if theirs == DAMAGED:
        outcome.problems.append(Problem(where, f"{found} the archive, and the backup's copy is damaged: left"))
        return None
    outcome.unchanged += 1
    message = f"{found} the archive since it was backed up (the checkpoints are signed by the backup's copy)"
    outcome.problems.append(Problem(where, f"{message}; the backup's copy is kept"))
    return target


Reference = Callable[[Path], str | None]  # what is wrong with a file, by what the database records; None: right


def _sha256_reference(expected: str) -> Reference:
    def check(path: Path) -> str | None:
        found = file_sha256(path)
        return None if found == expected else f"sha256 expected {expected} (recorded and signed), found {found}"

    return check


def _checkpoint_reference(checkpoint_id: int, document: dict[str, str]) -> Reference:
    expected = (json.dumps(document, indent=2) + "\n").encode("utf-8")  # as checkpoints.py writes each copy

    def check(path: Path) -> str | None:
        return None if path.read_bytes() == expected else f"differs from checkpoints id={checkpoint_id}"

    return check


def _checkpoint_rows(database: Path) -> dict[str, Reference]:
    """Each checkpoint copy's name under the WARC folder -> its check against the row it copies."""
    conn = _read_only(database)
    try:
        rows = conn.execute("SELECT id, file_name, statement, signature, public_key FROM checkpoints").fetchall()
    finally:
        conn.close()
    return {
        f"{CHECKPOINT_DIR}/{name}": _checkpoint_reference(id_, {"statement": s, "signature": sig, "public_key": k})
        for id_, name, s, sig, k in rows
    }


def _stage_unless_kept(
    source: Path, target: Path, reference: Reference | None, staged: list[_Staged], outcome: BackupOutcome
) -> None:
    """Stage a copy of `source` unless the backup already holds a good one; never over a good copy.

    `reference` says whether a file is the one the database records (a WARC's signed or recorded sha256, a
    checkpoint's row): a copy that is right is kept; the backup's copy is replaced only by the archive's when
    that one is right. A file nothing records is copied once and must not change afterwards."""
    where = f"backup of {source}"
    if target.is_file():
        if reference is None:
            if target.stat().st_size == source.stat().st_size and filecmp.cmp(source, target, shallow=False):
                outcome.unchanged += 1
            else:
                outcome.problems.append(Problem(where, "the file changed since it was backed up; the copy is kept"))
            return
        if (wrong := reference(target)) is None:
            outcome.unchanged += 1
            if (found := reference(source)) is not None:  # a closed file never changes: say so when it has
                outcome.problems.append(Problem(where, f"{found}: changed in the archive, the backup's copy is kept"))
            return
    path, _ = _stage_copy(source, target)
    found = reference(path) if reference is not None else None
    if target.is_file():
        if found is not None:  # and the backup's does not match either: leave it, a person must look
            path.unlink()
            outcome.problems.append(Problem(where, f"{found}; the backup's copy does not match either, left"))
            return
        outcome.problems.append(Problem(f"backup {target}", f"{wrong}: damaged in the backup, copied again", "note"))
    elif found is not None:
        outcome.problems.append(Problem(where, f"{found}; copied as it is, the only copy"))
    staged.append(_Staged(path, target, new=not target.is_file(), size=path.stat().st_size))


def _stage_copy(source: Path, target: Path) -> tuple[Path, str]:
    """Copy `source` to `target`'s temporary name (mode 0600, fsynced); returns it and the bytes' sha256."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = target.with_name(target.name + PARTIAL)
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    try:
        return path, _copy_bytes(source, path)
    except BaseException:
        path.unlink(missing_ok=True)  # a full disk: give the space back
        raise


def _folder_view(warcs: Path, staged: list[_Staged], view: Path) -> Path:
    """The backup's WARC folder as it will be once the staged files are in place, as links in a local temporary
    folder: verify checks the new snapshot against it before anything in the backup is replaced."""
    root = view / warcs.name
    root.mkdir()
    files = {p.relative_to(warcs): p for p in _files_under(warcs)}
    files.update({s.target.relative_to(warcs): s.path for s in staged if warcs in s.target.parents})
    for name, path in files.items():
        link = root / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve())
    return root


def _renamed(problem: Problem, names: dict[str, str]) -> Problem:
    where, message = problem.where, problem.message
    for old, new in names.items():
        where, message = where.replace(old, new), message.replace(old, new)
    return Problem(where, message, problem.severity)


def _signed_log_heads(database: Path) -> list[tuple[str, int, str]]:
    store = Store.open(database, readonly=True)
    try:
        return signed_access_log_heads(store.conn)
    finally:
        store.close()


def _judge_log(staged: Path, target: Path, problems: list[Problem], outcome: BackupOutcome) -> bool:
    """The access log's snapshot goes in place only when it holds every head the checkpoints signed, its own
    chain holds, and it extends the backup's copy: a log cut behind the archive's back never replaces it."""
    problems = problems + verify_access_log(staged)
    reason = "does not verify" if any(p.severity == "error" for p in problems) else _does_not_extend(target, staged)
    shown = _unverified(target) if reason else target
    for p in problems:
        outcome.problems.append(Problem(f"backup {p.where.replace(str(staged), str(shown))}", p.message, p.severity))
    if reason is None:
        return True
    previous = "the previous stays" if target.exists() else "there is no verified one yet"
    outcome.problems.append(Problem(f"backup {target}", f"the new snapshot {reason}: kept as {shown.name}, {previous}"))
    return False


def _does_not_extend(previous: Path, staged: Path) -> str | None:
    """Why the new log snapshot is not the backup's copy with rows added, or None when it is."""
    try:
        head = access_log_head(previous)
    except sqlite3.DatabaseError:
        return None  # the backup's copy is not a database (damaged there): the new one, which verifies, replaces it
    if head is None:
        return None
    seq, digest = head
    conn = _read_only(staged)
    try:
        found = conn.execute(f"SELECT hash FROM {ACCESS_LOG_TABLE} WHERE seq = ?", (seq,)).fetchone()
    finally:
        conn.close()
    if found is None:
        return f"lacks entry {seq}, the last of the backup's copy (rows removed in the archive)"
    if found[0] != digest:
        return f"holds entry {seq} with hash {found[0]}, the backup's copy {digest} (rewritten in the archive)"
    return None


def _judge_snapshot(database: Path, problems: list[Problem], staged: list[_Staged], outcome: BackupOutcome) -> bool:
    """The database's snapshot goes in place only when the folder, with it, verifies as a whole."""
    for p in problems:
        outcome.problems.append(Problem(f"backup {p.where}", p.message, p.severity))
    if not any(p.severity == "error" for p in problems):
        return True
    kept = _unverified(database)
    previous = "the previous stays" if database.exists() else "there is no verified one yet"
    new = sum(1 for s in staged if s.new)
    left = f"; the {new} new file(s) it records are copied once one verifies" if new else ""
    outcome.problems.append(
        Problem(f"backup {database}", f"the new snapshot does not verify: kept as {kept.name}, {previous}{left}")
    )
    return False


def _recorded_warcs_and_head(database: Path, signer: Path | None) -> tuple[dict[str, str], int]:
    """The snapshot's WARC files (name -> sha256 as a checkpoint signed it, else as recorded) and its last
    ledger entry. The signed digest comes first: rows can be added behind the archiver's back, signatures by
    the archive's key cannot."""
    trusted = load_public_key(signer) if signer is not None else None
    store = Store.open(database, readonly=True)
    try:
        recorded = {name: row["sha256"] for name, row in store.known_warc_files().items()}
        recorded.update({name: signed.sha256 for name, signed in signed_warc_files(store.conn, trusted).items()})
        return recorded, ledger.head(store.conn)[0]
    finally:
        store.close()


@contextmanager
def _staged(target: Path) -> Iterator[Path]:
    """A temporary file beside `target` (mode 0600), removed unless the caller moved it into place."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=PARTIAL)
    os.close(fd)
    staged = Path(name)
    try:
        yield staged
    finally:
        staged.unlink(missing_ok=True)
    fsync_path(target.parent)


def _copy_bytes(source: Path, target: Path) -> str:
    """Copy and fsync; returns the sha256 of the bytes copied."""
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(target, "wb") as out:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()
