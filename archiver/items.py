"""What connectors yield: normalised items and the other observations of a run, and the content digest.

The content digest decides whether an observation is a new version. It covers what a reader of the item
would call its content (text, edit time, media, visibility, reply target and the platform's own content
flags in `extra`), never engagement counters, which change on every read.

A str parsed from a platform's JSON may hold a lone UTF-16 surrogate: `"\\ud83d"`, half an emoji, where a
platform that counts in UTF-16 code units (X) cut a text, or `json.loads` decoding a CESU-8 byte sequence. No
UTF-8 encoder takes one, and SQLite and every file are UTF-8. So every observation below, when it is made,
replaces each surrogate in the values that become columns, notices and evidence with U+FFFD (what a reader
sees), while an item's `raw` stays exact: `raw_json` writes such a character as its JSON escape, which parses
back to the same value (`archiver verify` holds it to the WARC payload), and so does `canonical_json`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from .warc import CaptureRef

KINDS = ("post", "comment", "message")


# Built once: json.dumps makes a new encoder on every call, and a run makes several canonical forms an item.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# A surrogate code point. A str parsed from JSON holds one only where the JSON had a lone `\udXXX` escape (a
# pair of escapes parses to one character) or, parsed from bytes, a surrogate's own 3-byte sequence.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT_CHARACTER = "\ufffd"


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"  # as json.dumps writes it: lower-case hex


def escape_lone_surrogates(json_text: str) -> str:
    """JSON text (as written with ensure_ascii=False) with each surrogate character as its `\\udXXX` escape,
    every other character as it is. Such a character can only stand inside a string there (the encoder writes
    no other), where the escape means the same: the text parses back to the same value, and is UTF-8 encodable."""
    return LONE_SURROGATE.sub(_json_escape, json_text) if not json_text.isascii() else json_text


def without_lone_surrogates(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD, for a column, a notice or a log line."""
    if text.isascii() or LONE_SURROGATE.search(text) is None:
        return text
    return LONE_SURROGATE.sub(REPLACEMENT_CHARACTER, text)


def _holds_surrogate(value: Any) -> bool:
    """Whether `value` (a str, or JSON-like dicts, lists and tuples of them) holds a surrogate anywhere."""
    if isinstance(value, str):
        return not value.isascii() and LONE_SURROGATE.search(value) is not None
    if isinstance(value, dict):
        for key, item in value.items():
            if _holds_surrogate(key) or _holds_surrogate(item):
                return True
    elif isinstance(value, list | tuple):
        for item in value:
            if _holds_surrogate(item):
                return True
    return False


def _readable(value: Any) -> Any:
    """`value` (as _holds_surrogate takes it) with every str made `without_lone_surrogates`."""
    if isinstance(value, str):
        return without_lone_surrogates(value)
    if isinstance(value, dict):
        return {_readable(key): _readable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_readable(item) for item in value)
    return value


def _make_readable(observation: Any, fields: tuple[str, ...]) -> None:
    """Replace lone surrogates in these fields of a frozen dataclass, in place (its __post_init__). Most values are
    None or ASCII: those cost one test, an item's handful of them a microsecond or two."""
    for name in fields:
        value = getattr(observation, name)
        if value is None or (value.__class__ is str and value.isascii()) or not _holds_surrogate(value):
            continue
        object.__setattr__(observation, name, _readable(value))


def canonical_json(value: Any) -> bytes:
    """Stable bytes for hashing: sorted keys, no whitespace, UTF-8; a lone surrogate as its JSON escape
    (schemas/ledger.md). Bytes of a value without one are as they always were."""
    text = _CANONICAL.encode(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # only a surrogate fails: nothing else a str holds is outside UTF-8
        return escape_lone_surrogates(text).encode("utf-8")


@dataclass(frozen=True)
class Item:
    item_key: str
    platform: str
    kind: str
    native_id: str
    source: CaptureRef
    raw: dict[str, Any]
    text: str = ""
    created_at: str | None = None
    edited_at: str | None = None
    parent_key: str | None = None
    thread_key: str | None = None
    conversation_key: str | None = None
    author_id: str | None = None
    author_handle: str | None = None
    author_name: str | None = None
    url: str | None = None
    visibility: str | None = None
    media: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # platform content flags that count as content
    # Why a new version is not the author's edit (e.g. a fuller capture of a text archived cut): kept in the
    # "edited" event's evidence; not content, so never a version of its own.
    not_an_edit: str | None = None

    def __post_init__(self) -> None:
        _make_readable(self, _ITEM_COLUMNS)
        if self.kind not in KINDS:
            raise ValueError(f"item {self.item_key}: kind {self.kind!r} is not one of {KINDS}")

    @property
    def raw_json(self) -> str:
        """The raw object as JSON text; a lone surrogate in it as its escape, so it parses back to `raw` exactly."""
        return escape_lone_surrogates(json.dumps(self.raw, ensure_ascii=False, separators=(",", ":")))

    def content(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "edited_at": self.edited_at,
            "visibility": self.visibility,
            "parent_key": self.parent_key,
            "media": [{k: m.get(k) for k in ("id", "type", "url", "description")} for m in self.media],
            "extra": self.extra,
        }

    @property
    def content_sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.content())).hexdigest()


# What of an Item becomes a column (raw as raw_json, above; extra only counts in the content digest, whose
# canonical bytes take it as it is).
_ITEM_COLUMNS = (
    "item_key",
    "platform",
    "kind",
    "native_id",
    "text",
    "created_at",
    "edited_at",
    "parent_key",
    "thread_key",
    "conversation_key",
    "author_id",
    "author_handle",
    "author_name",
    "url",
    "visibility",
    "media",
    "not_an_edit",
)


# The fields of a version's media entry that may name the URL its file is stored under (media_files.url): `url`
# for every platform, and LinkedIn's signed `download_url`, under which its request revision 1 stored the file.
MEDIA_URL_FIELDS = ("url", "download_url")


def attachment_urls(attachment: dict[str, Any]) -> list[str]:
    return [u for u in (attachment.get(f) for f in MEDIA_URL_FIELDS) if isinstance(u, str) and u]


@dataclass(frozen=True)
class Deletion:
    """Proof that an item is gone: `evidence` names the captured records (lookup answer, complete listing)."""

    item_key: str
    evidence: dict[str, Any]
    source: CaptureRef | None = None  # the record that proves it (its date is when the deletion was observed)

    def __post_init__(self) -> None:
        _make_readable(self, ("item_key", "evidence"))


@dataclass(frozen=True)
class MediaFile:
    url: str
    sha256: str
    size: int
    content_type: str | None
    source: CaptureRef

    def __post_init__(self) -> None:
        _make_readable(self, ("url", "content_type"))  # the url as the item's media entry holds it


@dataclass(frozen=True)
class AccountIdentity:
    platform_account_id: str
    handle: str | None = None
    display_name: str | None = None

    def __post_init__(self) -> None:
        _make_readable(self, ("platform_account_id", "handle", "display_name"))


@dataclass(frozen=True)
class CursorUpdate:
    """A new incremental position, yielded only after the listing it summarises completed."""

    name: str
    value: str

    def __post_init__(self) -> None:
        _make_readable(self, ("name", "value"))


@dataclass(frozen=True)
class Notice:
    """Something the operator should read in the run summary that is not a failure."""

    message: str

    def __post_init__(self) -> None:
        _make_readable(self, ("message",))


Observation = Item | Deletion | MediaFile | AccountIdentity | CursorUpdate | Notice


class _TextExtractor(HTMLParser):
    BREAKS = {"br", "p", "div", "li"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BREAKS - {"br"}:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(html: str) -> str:
    """Plain text of a status' HTML for search and reading; the raw JSON keeps the markup."""
    parser = _TextExtractor()
    parser.feed(html or "")
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()
