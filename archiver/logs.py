"""Logging: one JSON object per line when not on a terminal (for log shippers), plain lines on one.

Every token the process resolves is registered here, and a filter masks it in every record, whatever
logger wrote it: defence in depth behind the redaction the HTTP layer already does.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus, unquote

_SECRETS: set[str] = set()
MASK = "[REDACTED]"


_PERCENT = re.compile(r"%[0-9A-F]{2}")


@functools.lru_cache(maxsize=256)  # pure, and asked again for every text and body the HTTP layer redacts
def secret_forms(value: str) -> frozenset[str]:
    """A secret as it may be written: as is, JSON-escaped (with or without `\\/` and `\\uXXXX`), quoted by
    repr() (how requests names a bad header value), and percent-encoded (a platform echoing a URL back), with
    upper- or lower-case hex digits (`%2B`, `%2b`: encoders differ, a server may normalise). Each of them also of
    the value percent-decoded: a token holding a literal `%2B` (X's app-only bearer tokens do) comes back with
    `+` from a server that decoded it. Base64 is left out: no platform is known to echo a token so, and a
    base64 form depends on the bytes around it. Forms under 4 characters are not masked (they would mask
    ordinary text)."""
    if not value or len(value) < 4:
        return frozenset()
    forms: set[str] = set()
    for base in {value, unquote(value)}:
        forms |= {base, repr(base)[1:-1], quote(base, safe=""), quote(base), quote_plus(base)}
        for ascii_only in (True, False):
            escaped = json.dumps(base, ensure_ascii=ascii_only)[1:-1]
            forms |= {escaped, escaped.replace("/", "\\/")}
    forms |= {_PERCENT.sub(lambda hex_digits: hex_digits.group(0).lower(), form) for form in forms}
    return frozenset(form for form in forms if len(form) >= 4)


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
