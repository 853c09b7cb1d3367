"""Values that must stay one visible line: names, case ids and notes that go into append-only rows, bag-info.txt
and the lines a command prints. One definition for every command that takes such a value.

A control character (a line break, ESC, NUL), a line or paragraph separator breaks the line (bagit, Python's
splitlines, a terminal) or shows as nothing; a bidi embedding, override or isolate reorders what is shown after
it, so "bob" could read as another name. Either would stay in the archive for ever, forging lines of its output.
"""

from __future__ import annotations

import unicodedata

from .errors import ConfigError

LINE_BREAKING = ("Cc", "Zl", "Zp")  # Unicode categories
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def breaks_or_hides(char: str) -> bool:
    """True for a character that no one-line value may hold (see the module's docstring)."""
    return char in BIDI_CONTROLS or unicodedata.category(char) in LINE_BREAKING


def refuse_invisible(option: str, value: str) -> None:
    """ConfigError (exit 2) naming `option`, the character and its place when `value` holds one that breaks or
    hides a line (pasted from a word processor, say): refused before anything is written, never cleaned up."""
    for n, char in enumerate(value):
        if breaks_or_hides(char):
            name = unicodedata.name(char, "a control character")
            raise ConfigError(
                f"{option} {value!r}: character {n + 1} is U+{ord(char):04X} ({name}), which breaks or hides a line; "
                "give the value again without it"
            )


def escape_invisible(text: str) -> str:
    """`text` with each such character written as \\uXXXX: for a value read from the environment and kept as a
    claim (it is not ours to refuse), so that it still shows as one line."""
    return "".join(f"\\u{ord(c):04x}" if breaks_or_hides(c) else c for c in text)
