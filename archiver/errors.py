"""The one exception tree of the archiver.

ArchiverError                 anything the archiver reports to a person (one line, no secrets)
├── ConfigError               bad configuration or input: exit code 2, nothing archived is touched
├── LockedError               another run holds the archive's lock
├── StoreError                the archive database refused something (e.g. an append-only trigger)
├── Interrupted               a run was told to stop (Ctrl-C, SIGTERM); what it captured is kept
└── PlatformError             a platform call failed for one account; the run goes on with the others
    ├── AuthError             the platform refused the credential (expired, revoked): a person must act
    └── RateLimitedError      throttled for longer than the configured wait
"""

from __future__ import annotations


class ArchiverError(Exception):
    """An error meant for a person: its message is one line naming what is wrong and what to do."""

    exit_code = 1


class ConfigError(ArchiverError):
    exit_code = 2


class LockedError(ArchiverError):
    exit_code = 1


class StoreError(ArchiverError):
    exit_code = 1


class Interrupted(ArchiverError):
    exit_code = 130  # a shell's code for a stop by SIGINT


class PlatformError(ArchiverError):
    exit_code = 1


class AuthError(PlatformError):
    pass


class RateLimitedError(PlatformError):
    pass
