"""What an item version says outside its text: attachments' alt text, Mastodon content warnings and poll
options, link previews, LinkedIn article previews and polls. It is archived (item_versions.media and
raw_json) and published with the item, so the PHI scan reads it as it reads the text.

What the account re-published of someone else's is read too, as theirs: a Mastodon boost is a status with no
content of its own and the boosted status under `reblog` (docs.joinmastodon.org, Status entity). The
organisation spread it, so PHI in it is the organisation's matter; it is read with the boosted author's handle,
so the rules for what the organisation itself writes ("call us at" its own number) do not apply to it.

A hit there has no place in the version's text, whose offsets the flags' spans are: such a flag has no span
(NULL, like a consent flag found in alt text) and its reason names where it was found. A review carries over
to "the same hit" by version, rule and span, so all of a rule's hits outside the text of one version are one
flag, naming every place, and one decision covers them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..items import html_to_text, without_lone_surrogates
from .engine import Detector, Hit

Field = tuple[str, str]  # where (words for a reason, never the content), what it says


@dataclass(frozen=True)
class Quoted:
    """Fields of someone else's item that the version re-publishes, with that item's author's handle."""

    author: str | None
    fields: list[Field]


@dataclass(frozen=True)
class OutsideHit:
    """A rule's hits outside the version's text, as one flag-to-be (the engine's Hit without a span)."""

    rule_id: str
    category: str
    severity: str
    matched: str
    reason: str
    start: None = None
    end: None = None


def parse_fields(platform: str, text: str | None, media: str | None, raw_json: str | None) -> list[Field]:
    """The texts a version holds besides its text, each with where it is; a text already read (the version's
    own, or one shown twice, as Facebook repeats a photo post's message as its description) is left out."""
    found: list[Field] = []
    for number, attachment in enumerate(_list(_json(media)), start=1):
        if isinstance(attachment, dict):
            found.append((f"the alt text of attachment {number}", _str(attachment.get("description"))))
    raw = _json(raw_json) if platform in _RAW_FIELDS else None
    if isinstance(raw, dict):
        found.extend(_RAW_FIELDS[platform](raw))
    return _distinct(found, read=(text or "").strip())


def _distinct(found: Iterable[Field], read: str = "") -> list[Field]:
    """The fields with something to read, each text once (`read`: one read already, the version's own)."""
    seen = {read}
    fields = []
    for where, value in found:
        value = value.strip()
        if value and value not in seen:
            seen.add(value)
            fields.append((where, value))
    return fields


def _mastodon(status: dict[str, Any], of: str = "") -> Iterable[Field]:
    yield f"the content warning{of}", _str(status.get("spoiler_text"))
    for number, option in enumerate(_list(_dict(status.get("poll")).get("options")), start=1):
        yield f"poll option {number}{of}", _str(_dict(option).get("title"))
    yield from _preview(_dict(status.get("card")), f"the link preview{of}")


def quoted_fields(platform: str, raw_json: str | None) -> list[Quoted]:
    """What the version re-publishes of another's item (a Mastodon boost's status), field by field."""
    raw = _json(raw_json) if platform == "mastodon" else None
    boosted = _dict(raw.get("reblog")) if isinstance(raw, dict) else {}
    if not boosted:
        return []
    of = " of the boosted post"
    found: list[Field] = [("the boosted post", html_to_text(_str(boosted.get("content"))))]
    for number, attachment in enumerate(_list(boosted.get("media_attachments")), start=1):
        found.append((f"the alt text of attachment {number}{of}", _str(_dict(attachment).get("description"))))
    found.extend(_mastodon(boosted, of))
    fields = _distinct(found)
    return [Quoted(_str(_dict(boosted.get("account")).get("acct")) or None, fields)] if fields else []


def _facebook(node: dict[str, Any]) -> Iterable[Field]:
    # a post's attachments (an album's photos are subattachments), a comment's one attachment
    parts = [*_list(_dict(node.get("attachments")).get("data")), node.get("attachment")]
    for part in [p for p in parts if isinstance(p, dict)]:
        for sub in [part, *_list(_dict(part.get("subattachments")).get("data"))]:
            sub = _dict(sub)
            shared = not sub.get("media") and not sub.get("subattachments")  # a link, not a photo or an album
            yield from _preview(sub, "the link preview" if shared else "the attachment")


def _linkedin(post: dict[str, Any]) -> Iterable[Field]:
    content = _dict(post.get("content"))
    yield from _preview(_dict(content.get("article")), "the article preview")
    poll = _dict(content.get("poll"))
    yield "the poll question", _str(poll.get("question"))
    for number, option in enumerate(_list(poll.get("options")), start=1):
        yield f"poll option {number}", _str(_dict(option).get("text"))


def _bluesky(view: dict[str, Any]) -> Iterable[Field]:
    embed = _dict(_dict(view.get("record")).get("embed"))
    for external in (embed.get("external"), _dict(embed.get("media")).get("external")):
        yield from _preview(_dict(external), "the link preview")


def _preview(card: dict[str, Any], where: str) -> Iterable[Field]:
    yield f"{where}'s title", _str(card.get("title"))
    yield f"{where}'s description", _str(card.get("description"))


_RAW_FIELDS = {"mastodon": _mastodon, "facebook": _facebook, "linkedin": _linkedin, "bluesky": _bluesky}
RAW_PLATFORMS = tuple(_RAW_FIELDS)  # the platforms whose raw JSON holds fields to scan


def _json(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None  # stored as captured: a shape we cannot read has nothing more to scan


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    # A raw field may hold a lone surrogate (items.py): a hit's matched text would then fail to be stored.
    return without_lone_surrogates(value) if isinstance(value, str) else ""


def detect_outside(
    detector: Detector,
    fields: list[Field],
    kind: str | None,
    author: str | None,
    own: bool | None,
    quoted: Iterable[Quoted] = (),
) -> list[OutsideHit]:
    """The hits in `fields` and in what the version re-publishes (`quoted`, read as its author's: a post, own
    only if that author is one of the organisation's handles), one a rule: its distinct matches, its reasons and
    every place it was found."""
    readings = [(where, value, kind, author, own) for where, value in fields]
    readings += [(where, value, "post", q.author, None) for q in quoted for where, value in q.fields]
    by_rule: dict[str, list[tuple[str, Hit]]] = {}
    for where, value, as_kind, by, is_own in readings:
        for hit in detector.detect(value, as_kind, by, own=is_own):
            by_rule.setdefault(hit.rule_id, []).append((where, hit))
    found = []
    for rule_id, hits in by_rule.items():
        first = hits[0][1]
        matched = " | ".join(dict.fromkeys(hit.matched for _, hit in hits))
        reasons = "; ".join(dict.fromkeys(hit.reason for _, hit in hits))
        places = ", ".join(dict.fromkeys(where for where, _ in hits))
        found.append(OutsideHit(rule_id, first.category, first.severity, matched, f"{reasons} (in {places})"))
    return found
