"""Logging: one JSON object per line when not on a terminal (for log shippers), plain lines on one.

Every token the process resolves is registered here, and a filter masks it in every record, whatever
logger wrote it: defence in depth behind the redaction the HTTP layer already does.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus

_SECRETS: set[str] = set()
MASK = "[REDACTED]"


def secret_forms(value: str) -> set[str]:
    """A secret as it may be written: as is, JSON-escaped (with or without `\\/` and `\\uXXXX`), quoted by
    repr() (how requests names a bad header value), and percent-encoded (a platform echoing a URL back)."""
    if not value or len(value) < 4:
        return set()
    forms = {value, repr(value)[1:-1], quote(value, safe=""), quote(value), quote_plus(value)}
    for ascii_only in (True, False):
        escaped = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        forms |= {escaped, escaped.replace("/", "\\/")}
    return {form for form in forms if len(form) >= 4}


def register_secret(value: str) -> None:
    _SECRETS.update(secret_forms(value))


def redact_secrets(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class SecretFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = redact_secrets(record.getMessage())
        record.msg, record.args = message, ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_secrets(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(verbose: bool, *, json_lines: bool | None = None) -> None:
    """Configure the root logger once per process (the CLI calls it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(SecretFilter())
    if json_lines if json_lines is not None else not sys.stderr.isatty():
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
