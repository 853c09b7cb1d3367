"""What connectors yield: normalised items and the other observations of a run, and the content digest.

The content digest decides whether an observation is a new version. It covers what a reader of the item
would call its content (text, edit time, media, visibility, reply target and the platform's own content
flags in `extra`), never engagement counters, which change on every read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from .warc import CaptureRef

KINDS = ("post", "comment", "message")


# Built once: json.dumps makes a new encoder on every call, and a run makes several canonical forms an item.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> bytes:
    """Stable bytes for hashing: sorted keys, no whitespace, UTF-8."""
    return _CANONICAL.encode(value).encode("utf-8")


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
        if self.kind not in KINDS:
            raise ValueError(f"item {self.item_key}: kind {self.kind!r} is not one of {KINDS}")

    @property
    def raw_json(self) -> str:
        return json.dumps(self.raw, ensure_ascii=False, separators=(",", ":"))

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


@dataclass(frozen=True)
class MediaFile:
    url: str
    sha256: str
    size: int
    content_type: str | None
    source: CaptureRef


@dataclass(frozen=True)
class AccountIdentity:
    platform_account_id: str
    handle: str | None = None
    display_name: str | None = None


@dataclass(frozen=True)
class CursorUpdate:
    """A new incremental position, yielded only after the listing it summarises completed."""

    name: str
    value: str


@dataclass(frozen=True)
class Notice:
    """Something the operator should read in the run summary that is not a failure."""

    message: str


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
