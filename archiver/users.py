"""The people who may sign in to the Datasette workspace: name, role and a salted password hash.

They live in `users.json` beside the archive database (not in the archive: the archive is append-only
evidence, and people come and go). Passwords are hashed with datasette-auth-passwords' PBKDF2-SHA256
(480,000 iterations, random salt), which also checks them at login; the file holds no password and is
written owner-only. Roles: `viewer` (search and browse, no arbitrary SQL) and `investigator` (arbitrary
read-only SQL and the access log too).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from datasette_auth_passwords.utils import hash_password

from .errors import ConfigError

USERS_FILE = "users.json"
ROLES = ("viewer", "investigator")
MIN_PASSWORD_LENGTH = 12
_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}$")  # no "_": datasette-auth-passwords keys are NAME_password_hash


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str
    added_at: str

    def actor(self) -> dict[str, str]:
        """The Datasette actor of this person: `allow` blocks in the metadata match on `role`."""
        return {"id": self.name, "role": self.role}

    def fingerprint(self) -> str:
        """A digest of this record as it was added (password hash and time): it changes when the password is
        reset (`add --replace`) or the person is removed and added again, which ends the sessions opened before.
        A digest, so that the server's sessions never hold the password hash itself."""
        return hashlib.sha256(f"{self.password_hash}\n{self.added_at}".encode()).hexdigest()


def users_path(database: Path) -> Path:
    return Path(database).parent / USERS_FILE


def load_users(path: Path) -> dict[str, User]:
    """Everyone who may sign in; an absent file means nobody (the workspace then serves loopback only)."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the users file ({exc}); fix or remove it") from None
    try:
        users = {name: User(name, u["role"], u["password_hash"], u["added_at"]) for name, u in data["users"].items()}
    except (KeyError, TypeError, AttributeError):
        raise ConfigError(f"{path}: not a users file (expected {{'users': {{name: {{role, ...}}}}}})") from None
    for user in users.values():
        if user.role not in ROLES:
            raise ConfigError(f"{path}: user {user.name!r} has unknown role {user.role!r} (use {' or '.join(ROLES)})")
    return users


def _write_users(path: Path, users: dict[str, User]) -> None:
    data: dict[str, Any] = {
        "users": {
            u.name: {"role": u.role, "password_hash": u.password_hash, "added_at": u.added_at}
            for u in sorted(users.values(), key=lambda u: u.name)
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole to a temporary file and renamed: a crash never leaves half a users file.
    fd, tmp = tempfile.mkstemp(prefix=".users-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"user name {name!r}: use 1-64 lower-case letters, digits, '.' or '-', starting with a letter or digit"
        )
    return name


def add_user(path: Path, name: str, password: str, role: str, *, replace: bool = False) -> User:
    """Add a person (or, with replace, set a new password and role)."""
    check_name(name)
    if role not in ROLES:
        raise ConfigError(f"--role {role}: unknown role; use {' or '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"password for {name!r}: at least {MIN_PASSWORD_LENGTH} characters, please")
    users = load_users(path)
    if name in users and not replace:
        raise ConfigError(f"{path}: user {name!r} exists; use --replace to set a new password or role")
    user = User(name, role, hash_password(password), datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    users[name] = user
    _write_users(path, users)
    return user


def remove_user(path: Path, name: str) -> None:
    """Remove a person: their open sessions stop working at their next request."""
    users = load_users(path)
    if name not in users:
        raise ConfigError(f"{path}: no user named {name!r} (see `archiver users list`)")
    del users[name]
    _write_users(path, users)


class UsersFile:
    """The users file as the server sees it: re-read when it changes, so add/remove take effect at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}

    def users(self) -> dict[str, User]:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._users = load_users(self.path) if stamp else {}
            self._stamp = stamp
        return self._users
