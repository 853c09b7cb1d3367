"""The detector: rules (rules.py) applied to one text, offline, with the standard library's `re` only.

Two passes. Pattern rules find structured identifiers and drop those the organisation's allow-lists clear
(its own phone numbers, domains, addresses). Context rules find health terms (lexicons of conditions,
procedures, medications, units) tied to an identifiable person: the author (I, my), a relative or friend
(my mother), a named person (not staff), a mentioned @handle, or in a message the person addressed. A term
followed by a community word ("flu shots", "diabetes support group") is about a service, not a person.

Both passes read the text normalised (normalise_for_matching: NFKC, one hyphen, no invisible characters, Cyrillic
and Greek look-alike letters as Latin inside a word that mixes scripts), so "123–45–6789", a zero-width space or
"DОB" with a Cyrillic О cannot hide an identifier; every span is mapped back to the original.

Every regex here runs on every text, hostile ones included (a public comment of 60,000 "!"): none may
backtrack more than a bounded amount at a position, and the Python loops over hits and anchors are kept to
near-linear work (tests/test_phi_hardening.py feeds long hostile runs).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache

from ..errors import ConfigError
from .rules import ContextRule, PatternRule, RuleSet, lexicon_expressions

# What the engine itself does to find hits (normalisation, sentence splitting, how anchors tie, caps) is part
# of the version every flag records, next to the rule files' labels and digest: bump it with any change that
# can change what is flagged, so `archiver scan --all` after an upgrade re-judges every version (flag_status
# shows only the latest scan's version; an old engine's flags leave the queue, its decided hits carry over).
# 2: label punctuation, invisible characters, sentence splitting without backtracking, organisation cues only
#    in the organisation's own texts, health.named within a sentence, one rule's hits merged past a cap.
# 3: a Mastodon boost's boosted status is read too, as its author's (scan/fields.py quoted_fields).
# 4: an author is the organisation's by its whole handle: "riverside@other.instance" is not "riverside".
# 5: Cyrillic / Greek look-alike letters read as Latin in a word mixing scripts ("DОB", "МRN"); an e-mail address
#    written "(at)" / "[dot]" / "at ... dot" is compared with the organisation's domains as "@" and ".".
ENGINE_REVISION = 5
# A rule with more hits than this in one text keeps the first MAX_HITS_PER_RULE - 1 and merges the rest into one
# hit spanning them: a comment of "I have flu. " x 700 is five flags for a reviewer, not 700 high alerts.
MAX_HITS_PER_RULE = 5

# Lexicons whose terms are never cleared by a following community word ("ICU nurses" still places a
# person in the ICU).
UNSUPPRESSED = frozenset({"units"})
# PRONOUN_START, SELF_ELIDED and kin_at_start are matched at a sentence's first word character (_Text.first_words),
# not with a leading \W*: that would rescan a run of "! ! ! ..." from every one of its sentence starts.
PRONOUN_START = re.compile(r"(?:he|she|they|his|her|hers|their|him|them)\b", re.IGNORECASE)
LOCATIVE_BEFORE = re.compile(
    r"(?i:\b(?:in|into|to|at|from|on|onto|out\s+of|left|leaving|visit|visiting|admitted\s+to)\s+"
    r"(?:the\s+|your\s+|our\s+|a\s+|an\s+|this\s+|that\s+)?)$"
)
# A sentence ends at a run of . ! ? (then closing quotes or brackets) and a space, or at line breaks; not after
# Dr. Mr. Mrs. Ms. St. No. (but "No!! I ..." ends one at its second mark). A match starts only at a run's first
# mark (its second after one of those words) and the run is taken possessively: "[.!?]+" tried from every mark
# of a run of 16,000 "!" without a space backtracked quadratically (seconds per comment).
SENTENCE_END = re.compile(
    r"(?:(?<![.!?])(?<!\bDr)(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bSt)(?<!\bNo)[.!?]"
    r"|(?<=\b(?:Dr|Mr|Ms|St|No)[.!?])[.!?]|(?<=\bMrs[.!?])[.!?])"
    r"[.!?]*+[\"')\]]*+\s+|\n+"
)
WORD_CHAR = re.compile(r"\w")
# "I" in capitals, or "i" / "im" / "ive" as people type them; never "Im" alone in capitals (instant messaging)
SELF = re.compile(
    r"\b(?:I|I'm|I'd|I've|I'll|Ive|i|i'm|i'd|i've|i'll|im|ive)(?!\w)|(?i:\b(?:me|my|myself|mine)\b)|\bIm(?= [a-z])"
)
SELF_ELIDED = re.compile(
    r"((?:just\s+|finally\s+|still\s+)?(?:got|been|had|having|finished|starting|started|recovering|dealing|"
    r"diagnosed|back\s+from|home\s+from|out\s+of|spent|went|ended\s+up|woke\s+up|came|stuck|sitting|waiting|"
    r"lying|currently)\b|as\s+(?:someone|somebody|a\s+person|a\s+patient|a\s+survivor)\b)",
    re.IGNORECASE,
)
ADDRESSEE = re.compile(r"(?i:\b(?:you|your|you're|you've|yours|yourself)\b)")
MENTION = re.compile(r"(?<![\w@])@(?P<handle>[A-Za-z0-9_]{1,30})(?:@[\w.-]+)?")
AFTER_NAME_STAFF = re.compile(r",?\s*(?:MD|M\.D\.|RN|DO|NP|PA|PA-C|PhD|DNP|LPN|CNM)\b")
PUNCTUATION = re.compile(r"[^\w\s]")
STREET_WORDS = {
    "street": "st",
    "avenue": "ave",
    "road": "rd",
    "boulevard": "blvd",
    "lane": "ln",
    "drive": "dr",
    "court": "ct",
    "place": "pl",
    "terrace": "ter",
    "parkway": "pkwy",
    "highway": "hwy",
    "circle": "cir",
    "square": "sq",
}


@dataclass(frozen=True)
class Hit:
    """One flag-to-be: which rule, what kind of information, where, and why (the reason never quotes PHI)."""

    rule_id: str
    category: str
    severity: str
    start: int
    end: int
    matched: str
    reason: str


def phone_digits(text: str) -> str:
    digits = re.sub(r"\D", "", text)
    return digits[1:] if len(digits) == 11 and digits.startswith("1") else digits


def normalise_address(text: str) -> str:
    words = PUNCTUATION.sub(" ", text.lower()).split()
    return " ".join(STREET_WORDS.get(w, w) for w in words)


# Look-alikes people's keyboards and devices put in identifiers: hyphens, figure / en dashes, minus signs,
# one apostrophe. Em dash and horizontal bar are punctuation ("7734—thanks" must stay a number's end), so they
# become "-" only between two digits (see normalise_for_matching).
HYPHENS = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2212\ufe63\uff0d", "-") | {"’": "'"})
DIGIT_DASHES = frozenset("\u2014\u2015")
# Invisible characters that are not format characters (Cf, dropped too): Unicode's Default_Ignorable_Code_Point
# (variation selectors such as the emoji one U+FE0F, the combining grapheme joiner, Hangul fillers, Mongolian
# selectors, tag and unassigned ignorables), and the keycap mark U+20E3, so "5\ufe0f\u20e3" (an emoji digit) is "5".
INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u20e3\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e0fff]"
)
# What normalise_for_matching may change: a run of non-ASCII characters, or the line break (and the spaces or
# tabs around it) of a number wrapped at its hyphen ("555-867-\n5309" is one number; a lone "\n" ends a sentence).
CHANGEABLE = re.compile(r"[^\x00-\x7f]+|(?<=\d[-\u2010-\u2015\u2212\ufe63\uff0d])[ \t]*\r?\n[ \t]*(?=\d)")


# Cyrillic and Greek letters drawn like Latin ones (NFKC leaves them; it already folds full-width and mathematical
# letters). A word that mixes scripts ("DОB" with a Cyrillic О, "ЅЅΝ") is disguised, and is read with them as
# Latin; a word in one script is read as written: "МЕ" (Greek "with") or Russian "МРТ" must not become "ME", "MPT".
# One letter for one, so no offset moves. A small table, not Unicode's confusables list: that maps digits, "rn"
# and hundreds of symbols, changes lengths and would make ordinary words of other scripts look like English.
LOOKALIKES = str.maketrans(
    "АВЕКМНОРСТХУІЈЅԚԜҮӀаеорсухіјѕһԁԛԝӏүΑΒΕΖΗΙΚΜΝΟΡΤΥΧϹͿαικνορυχϲϳ",
    "ABEKMHOPCTXYIJSQWYIaeopcyxijshdqwlyABEZHIKMNOPTYXCJaikvopuxcj",
)
LOOKALIKE = re.compile("[" + "".join(chr(c) for c in LOOKALIKES) + "]")
SCRIPTS = (
    re.compile("[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff]"),  # Latin
    re.compile("[\u0400-\u052f\u1c80-\u1c8f\ua640-\ua69f]"),  # Cyrillic
    re.compile("[\u0370-\u03ff\u1f00-\u1fff]"),  # Greek
)
LETTERS = re.compile(r"[^\W\d_]+")


def _mixes_scripts(text: str) -> bool:
    return sum(1 for script in SCRIPTS if script.search(text)) > 1


def fold_lookalikes(text: str) -> str:
    """`text` with the look-alike letters of every word that mixes scripts as Latin (the same length)."""
    if text.isascii() or not LOOKALIKE.search(text) or not _mixes_scripts(text):
        return text  # the usual case: checked in C, no loop over words
    parts: list[str] = []
    pos = 0
    for word in LETTERS.finditer(text):
        if LOOKALIKE.search(word.group()) and _mixes_scripts(word.group()):
            parts += (text[pos : word.start()], word.group().translate(LOOKALIKES))
            pos = word.end()
    return "".join(parts) + text[pos:] if parts else text


# How a dodged e-mail address spells "@" and "." ("(at)", "[dot]", " at ", " dot ", " @ "), for the allow-list. A
# match starts only at a run of spaces' first one (or at its bracket): tried from each space of a long run, the
# leading \s* would rescan it.
SPELLED_AT_DOT = re.compile(r"(?i)(?<!\s)\s*[(\[{<]\s*(at|@|dot)\s*[)\]}>]\s*|(?<!\s)\s+(at|dot)\s+|(?<!\s)\s*(@)\s*")


def plain_email(found: str) -> str:
    """ "maria [at] gmail [dot] com" as "maria@gmail.com"; a plain address as it is."""
    return SPELLED_AT_DOT.sub(lambda m: "." if (m[1] or m[2] or m[3]).lower() == "dot" else "@", found)


@lru_cache(maxsize=4096)
def _joins_previous(char: str) -> bool:
    """A mark (or a Hangul vowel / final jamo) that NFKC may compose with the character before it."""
    return unicodedata.category(char)[0] == "M" or "\u1160" <= char <= "\u11ff"


@lru_cache(maxsize=4096)
def _normalise_cluster(cluster: str) -> str:
    folded = unicodedata.normalize("NFKC", cluster).translate(HYPHENS)
    if folded.isascii():
        return folded
    # format characters (zero-width space / joiner, soft hyphen, BOM, direction marks) and the other invisible
    # ones (after NFKC: it makes U+3164 and U+FFA0 the filler U+1160) are dropped
    return INVISIBLE.sub("", "".join(c for c in folded if unicodedata.category(c) != "Cf"))


@dataclass(frozen=True)
class OffsetMap:
    """Where the characters of a normalised text come from: only the clusters whose length changed are kept,
    as (original start, original end, normalised start, normalised end); between them offsets shift by a
    constant. Built only when a length changed, asked only for the spans of hits (most texts have none)."""

    changes: tuple[tuple[int, int, int, int], ...]
    starts: tuple[int, ...]  # normalised start of each change, for bisect

    def char(self, pos: int) -> tuple[int, int]:
        """The original span of normalised character `pos` (a whole "ﬁ" for either of "f" and "i")."""
        k = bisect_right(self.starts, pos) - 1
        if k < 0:
            return pos, pos + 1
        start, end, n_start, n_end = self.changes[k]
        if pos < n_end:
            return start, end
        return end + pos - n_end, end + pos - n_end + 1

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original characters normalised text[start:end] was made of (format characters inside it too)."""
        first = self.char(start)[0]
        return (first, self.char(end - 1)[1]) if end > start else (first, first)


def normalise_for_matching(text: str) -> tuple[str, OffsetMap | None]:
    """`text` as the rules see it: NFKC, one hyphen, one apostrophe, no invisible characters, no line break
    inside a number wrapped at its hyphen, look-alike letters as Latin in a word mixing scripts (fold_lookalikes,
    after the rest: "D\u200bОB" is one word); and the map back to the original, None when every character kept its
    place (plain ASCII on one line, the usual case, is returned as it is). A character with its combining marks
    is normalised by itself, so the map is exact."""
    if text.isascii() and "\n" not in text:
        return text, None
    parts: list[str] = []
    changes: list[tuple[int, int, int, int]] = []
    pos = 0  # original text before pos is in parts
    shift = 0  # len(normalised so far) - pos
    for run in CHANGEABLE.finditer(text):
        start, end = run.span()
        if text[start].isascii():  # a wrapped number's line break: left out
            parts.append(text[pos:start])
            changes.append((start, end, start + shift, start + shift))
            shift -= end - start
            pos = end
            continue
        if start > pos and _joins_previous(text[start]):
            start -= 1  # "e" + combining acute: one cluster
        i = start
        while i < end:
            j = i + 1
            while j < end and _joins_previous(text[j]):
                j += 1
            cluster = text[i:j]
            if cluster in DIGIT_DASHES:
                between_digits = i > 0 and j < len(text) and text[i - 1].isdecimal() and text[j].isdecimal()
                normal = "-" if between_digits else cluster
            else:
                normal = _normalise_cluster(cluster)
            if normal != cluster:
                parts.append(text[pos:i])
                parts.append(normal)
                if len(normal) != 1 or j - i != 1:  # one for one ("’", "–") keeps every offset
                    changes.append((i, j, i + shift, i + shift + len(normal)))
                    shift += len(normal) - (j - i)
                pos = j
            i = j
    if not parts:
        return fold_lookalikes(text), None
    parts.append(text[pos:])
    normalised = fold_lookalikes("".join(parts))  # one letter for one: the map below stays exact
    if not changes:
        return normalised, None  # e.g. only curly apostrophes or en dashes: offsets unchanged
    return normalised, OffsetMap(tuple(changes), tuple(c[2] for c in changes))


def _outermost(hits: list[Hit]) -> list[Hit]:
    """The hits not inside a longer one of the same category: that is the same identifier ("555-0148" in a full
    number). One sort and sweep (a pairwise test was quadratic in a text of thousands of numbers)."""
    inside: set[int] = set()
    reach: dict[str, int] = {}  # per category, the furthest end of the hits starting earlier
    for k in sorted(range(len(hits)), key=lambda k: (hits[k].start, -hits[k].end)):
        hit = hits[k]
        if reach.get(hit.category, -1) >= hit.end:
            inside.add(k)
        else:
            reach[hit.category] = hit.end
    return [h for k, h in enumerate(hits) if k not in inside]


def _merge_past_cap(hits: list[Hit], text: str) -> list[Hit]:
    """A rule's first MAX_HITS_PER_RULE - 1 hits as they are, the rest merged into one hit: its span from the
    first merged hit's start to the last one's end, its reason saying how many it stands for. A review decides
    the lot, the queue and the alerts hold a handful of flags, not hundreds from one hostile comment."""
    by_rule: dict[str, list[Hit]] = {}
    for hit in hits:
        by_rule.setdefault(hit.rule_id, []).append(hit)
    if all(len(found) <= MAX_HITS_PER_RULE for found in by_rule.values()):
        return hits
    kept: list[Hit] = []
    for found in by_rule.values():
        if len(found) <= MAX_HITS_PER_RULE:
            kept.extend(found)
            continue
        found.sort(key=lambda h: (h.start, h.end))
        kept.extend(found[: MAX_HITS_PER_RULE - 1])
        rest = found[MAX_HITS_PER_RULE - 1 :]
        start, end = rest[0].start, max(h.end for h in rest)
        reasons = "; ".join(dict.fromkeys(h.reason for h in rest))
        reason = f"{reasons} ({len(rest)} hits of this rule in this stretch, one flag)"
        kept.append(replace(rest[0], start=start, end=end, matched=text[start:end], reason=reason))
    return kept


class _Coverage:
    """Whether a position is inside one of some spans (they may overlap): bisect, not a scan of them all."""

    def __init__(self, spans: list[tuple[int, int]]):
        ordered = sorted(spans)
        self.starts = [s for s, _ in ordered]
        self.reach: list[int] = []  # the furthest end among the spans up to each, in start order
        furthest = -1
        for _, end in ordered:
            furthest = max(furthest, end)
            self.reach.append(furthest)

    def covers(self, pos: int) -> bool:
        k = bisect_right(self.starts, pos) - 1
        return k >= 0 and self.reach[k] > pos


def _handle_forms(handle: str) -> tuple[str, ...]:
    """How the organisation's handle is written by the platforms: "riverside", or "riverside@instance" and, on
    its own instance, "riverside". A bare handle stands for the bare form alone, never "riverside@elsewhere"."""
    handle = handle.strip().lower().lstrip("@")
    return (handle, handle.split("@")[0]) if "@" in handle else (handle,)


@dataclass(frozen=True)
class AllowList:
    """What belongs to the organisation itself (from `[scan]` in the config): never a flag, never an anchor."""

    phones: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()
    handles: frozenset[str] = frozenset()
    addresses: tuple[str, ...] = ()
    staff: frozenset[str] = frozenset()
    staff_surnames: frozenset[str] = field(default=frozenset())
    organisation_words: frozenset[str] = field(default=frozenset())  # "Riverside" is not a person

    @classmethod
    def build(
        cls,
        phones: Iterable[str] = (),
        domains: Iterable[str] = (),
        handles: Iterable[str] = (),
        addresses: Iterable[str] = (),
        staff: Iterable[str] = (),
        organisation: str = "",
    ) -> AllowList:
        names = [" ".join(n.split()).lower() for n in staff if n.strip()]
        own_words = {w.lower() for w in re.findall(r"[A-Za-z]+", organisation) if len(w) > 2}
        return cls(
            phones=frozenset(d for d in (phone_digits(p) for p in phones) if d),
            domains=tuple(d.lower().lstrip("@.") for d in domains if d.strip()),
            handles=frozenset(form for h in handles if h.strip() for form in _handle_forms(h)),
            addresses=tuple(normalise_address(a) for a in addresses if a.strip()),
            staff=frozenset(names),
            staff_surnames=frozenset(n.split()[-1] for n in names if len(n.split()) > 1),
            organisation_words=frozenset(own_words),
        )

    def digest(self) -> str:
        """Twelve hex digits over everything allowed: part of the detector's version, so that a change to the
        `[scan]` lists (a number of the organisation's added) is a new version `archiver scan --all` re-judges by,
        as a rule change is."""
        listed = {f.name: sorted(getattr(self, f.name)) for f in fields(self)}
        return hashlib.sha256(json.dumps(listed, sort_keys=True).encode("utf-8")).hexdigest()[:12]

    def own_phone(self, digits: str) -> bool:
        for own in self.phones:
            if digits == own or (len(own) == 7 and digits.endswith(own)) or (len(digits) == 7 and own.endswith(digits)):
                return True
        return False

    def own_domain(self, email: str) -> bool:
        domain = email.rsplit("@", 1)[-1].lower()
        return any(domain == d or domain.endswith("." + d) for d in self.domains)

    def own_address(self, address: str) -> bool:
        found = normalise_address(address)
        return any(found.startswith(own) or own.startswith(found) for own in self.addresses)


def _alternation(entries: Iterable[str]) -> str:
    """One regex for many words, as a trie ("heart attack|heart failure" -> "heart\\s+(?:attack|failure)"):
    Python's re tries a flat alternation branch by branch at every position, a trie one character at a time,
    several times faster on lexicons of hundreds of words. Longer words win over their prefixes."""
    trie: dict = {}
    for entry in set(entries):
        node = trie
        for char in entry:
            node = node.setdefault(char, {})
        node[""] = {}  # end of a word
    return _trie_regex(trie)


def _trie_regex(node: dict) -> str:
    ends = "" in node
    branches = []
    for char in sorted(k for k in node if k):
        piece = r"\s+" if char == " " else re.escape(char)
        branches.append(piece + _trie_regex(node[char]))
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if ends else body  # a word may end here: try the longer ones first


@dataclass(frozen=True)
class LexiconRegex:
    """A lexicon compiled three ways: capitals as written, the rest in lower case (matched against the
    lower-cased text: Python's re is several times slower with IGNORECASE), and "re:" expressions."""

    exact: re.Pattern[str] | None
    lower: re.Pattern[str] | None
    folded: re.Pattern[str] | None  # the same as `lower`, ignoring case, for texts lower() changes in length
    expressions: re.Pattern[str] | None

    def spans(self, text: str, lowered: str | None) -> list[tuple[int, int]]:
        found = []
        if self.exact:
            found.extend(m.span() for m in self.exact.finditer(text))
        if self.lower and lowered is not None:
            found.extend(m.span() for m in self.lower.finditer(lowered))
        elif self.folded:
            found.extend(m.span() for m in self.folded.finditer(text))
        if self.expressions:
            found.extend(m.span() for m in self.expressions.finditer(text))
        return sorted(found)


def lexicon_regex(entries: Iterable[str]) -> LexiconRegex:
    """Entries in capitals match only in capitals; "re:" entries are expressions (ignoring case); the others
    ignore case and also match a plural."""
    entries = list(entries)
    expressions = [e[3:] for e in entries if e.startswith("re:")]
    words = [e for e in entries if not e.startswith("re:")]
    exact = [e for e in words if e.upper() == e and any(c.isalpha() for c in e)]
    folded = {e.lower() for e in words if e not in exact}
    lower = rf"(?<![\w])(?:{_alternation(folded)})(?:s|es)?(?![\w])" if folded else ""
    return LexiconRegex(
        exact=re.compile(rf"(?<![\w])(?:{_alternation(exact)})(?![\w])") if exact else None,
        lower=re.compile(lower) if folded else None,
        folded=re.compile(lower, re.IGNORECASE) if folded else None,
        expressions=re.compile(lexicon_expressions(expressions)) if expressions else None,
    )


def _words_before(entries: Iterable[str], tail: str) -> re.Pattern[str] | None:
    """Matches at the end of the text before a position when it ends with one of `entries` (then `tail`)."""
    entries = list(entries)
    return re.compile(rf"(?i:\b(?:{_alternation(entries)})\s+{tail})$") if entries else None


@dataclass
class _Anchors:
    """One kind of anchor in a text, indexed so a term finds its nearest without looking at every anchor (a long
    comment of "I have flu." holds thousands of each)."""

    spans: list[tuple[int, int]]  # as found: of two equally near, the first found wins
    order: list[int]  # indexes into spans, by start
    starts: list[int]  # the starts in that order, for bisect
    longest: int

    @classmethod
    def of(cls, spans: list[tuple[int, int]]) -> _Anchors:
        order = sorted(range(len(spans)), key=lambda k: spans[k][0])
        return cls(spans, order, [spans[k][0] for k in order], max((e - s for s, e in spans), default=0))


@dataclass
class _Text:
    """One text being scanned: its sentences and, computed once, its anchors and terms."""

    text: str
    kind: str | None
    by_organisation: bool
    starts: list[int]
    lowered: str | None = None  # text.lower() when it keeps every offset
    anchors: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    indexed: dict[str, _Anchors] = field(default_factory=dict)
    raw_terms: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    terms: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    words: list[int | None] | None = None
    pronoun: dict[int, bool] = field(default_factory=dict)

    def sentence(self, pos: int) -> int:
        return bisect_right(self.starts, pos) - 1

    def first_words(self) -> list[int | None]:
        """Where each sentence's first word character is (None: none follows). One pass over the text: a run of
        "! ! ! ..." holds a sentence start every two characters, all with the same first word."""
        if self.words is None:
            self.words = []
            found: int | None = -1
            for start in self.starts:
                if found is None or start > found:
                    match = WORD_CHAR.search(self.text, start)
                    found = match.start() if match else None
                self.words.append(found)
        return self.words

    def distinct_first_words(self) -> list[int]:
        """The first words' places, each once (sentences of a run of "! ! !" share theirs)."""
        return [w for w in dict.fromkeys(self.first_words()) if w is not None]

    def starts_with_pronoun(self, sentence: int) -> bool:
        if sentence not in self.pronoun:
            word = self.first_words()[sentence]
            self.pronoun[sentence] = word is not None and bool(PRONOUN_START.match(self.text, word))
        return self.pronoun[sentence]


class Detector:
    """Finds PHI / policy hits in short texts. Build once (compiles every rule), then call `detect`."""

    def __init__(
        self,
        rules: RuleSet,
        allow: AllowList | None = None,
        person_finder: Callable[[str], list[tuple[int, int]]] | None = None,
    ):
        """`person_finder` (optional) adds the person names it finds (e.g. a spaCy model's) to the lexicon's.
        A lexicon that does not compile is a ConfigError (load_rules checks its "re:" entries, but a rule set
        can be built without it): a scan or run reports it in one line, never a traceback."""
        self.rules = rules
        self.person_finder = person_finder
        self.allow = allow or AllowList()
        # what the flags record: the rule files' version, the engine's (ENGINE_REVISION) and, when the config
        # allows anything, a digest of what it allows
        listed = "" if self.allow == AllowList() else f"+allow-{self.allow.digest()}"
        self.version = f"{rules.version}+engine-{ENGINE_REVISION}{listed}"
        try:
            self._compile(rules.lexicons)
        except re.error as exc:
            files = ", ".join(rules.files) or "the rules"
            raise ConfigError(f"{files}: a lexicon does not compile ({exc}); fix its re: entries") from None

    def _compile(self, lex: dict[str, list[str]]) -> None:
        rules = self.rules
        self.toll_free = tuple(str(p) for p in lex.get("public_phone_prefixes", ()))
        needed = {name for rule in rules.context for name in rule.terms}
        self.term_regex = {name: lexicon_regex(lex.get(name, ())) for name in needed}
        community = lex.get("community_words", ())
        self.community = (
            # one word between ("flu vaccine clinic"), of at most 31 characters: an unbounded [\w'-]+ rescanned a
            # hyphenated run ("flu-flu-flu-...") to its end from every term in it
            re.compile(rf"(?i:[\s'’-]+(?:\w[\w'-]{{0,30}}\s+)?(?:{_alternation(community)})\b)") if community else None
        )
        relations = lex.get("relations", ())
        relation_parts = []
        if relations:
            relation_parts.append(
                rf"(?i:\b(?:my|our|your)\s+(?:[\w'-]+\s+){{0,3}}?(?:{_alternation(relations)})(?!\w))"
            )
        kin = lex.get("kin_names", ())
        if kin:
            relation_parts.append(rf"(?<![\w@])(?:{_alternation(kin)})(?![\w])")
        self.relation = re.compile("|".join(relation_parts)) if relation_parts else None
        # at a sentence's start, "my" is often left out: "hubby just got out of surgery"
        self.kin_at_start = re.compile(rf"((?i:{_alternation(kin)}))(?![\w])") if kin else None  # at a first word
        names = [n for n in lex.get("names", ()) if n[:1].isupper()]
        honorifics = [h.rstrip(".") for h in lex.get("honorifics", ())]
        name_parts = []
        if names:  # as written and capitalised ("Deshawn" for DeShawn), never in capitals ("ADA" is no Ada)
            forms = {*names, *(n.capitalize() for n in names)}
            name_parts.append(rf"(?<![\w@])(?:{_alternation(forms)})(?:\s+[A-Z][a-z'’]+(?:-[A-Z][a-z]+)?)?(?![\w])")
        if honorifics:
            name_parts.append(rf"\b(?:{_alternation(set(honorifics))})\.?\s+[A-Z][a-z'’]+(?:-[A-Z][a-z]+)?")
        cues = lex.get("name_cues", ())
        if cues:
            name_parts.append(
                rf"(?i:\b(?:{_alternation(cues)}))[\s,:!-]+(?:(?i:baby|little|lil|sweet|dear|our|my)\s+)?"
                rf"(?P<cued>[A-Z][a-z'’]+(?:\s+[A-Z][a-z'’]+)?)"
            )
        self.name = re.compile("|".join(name_parts)) if name_parts else None
        self.not_names = frozenset(w.lower() for w in lex.get("not_names", ()))
        self.topic_before = _words_before(lex.get("community_before", ()), r"(?:(?:the|a|an|your|our)\s+)?")
        self.workplace_before = _words_before(
            lex.get("workplace_before", ()), r"(?:in|at|on|for)\s+(?:(?:the|our|your|a|an|this|that)\s+)?"
        )
        self.generic_you = _words_before(lex.get("generic_you_before", ()), "")
        org_cues = lex.get("organisation_cues", ())
        self.organisation_before = (
            re.compile(rf"(?i:\b(?:{_alternation(org_cues)})\s*(?:(?:is|at|on|:|-)\s*)*)$") if org_cues else None
        )
        titles = [t.rstrip(".") for t in lex.get("staff_titles", ())]
        self.staff_before = re.compile(rf"(?i:\b(?:{_alternation(set(titles))})\.?\s*)$") if titles else None

    # -- the public call -----------------------------------------------------------------------------------
    def detect(
        self, text: str | None, kind: str | None = None, author: str | None = None, *, own: bool | None = None
    ) -> list[Hit]:
        """Every hit in `text`, ordered by position.

        `kind` (post / comment / message) and `author` (a handle) enable the rules limited to some kinds or
        to what the organisation's own accounts write (e.g. "your" in the clinic's reply is the patient);
        `own=True` says the archived account wrote it (known by its platform id), whatever its handle."""
        if not text:
            return []
        original = text
        # the rules match the normalised text; every span is mapped back to the original (what is stored)
        text, offsets = normalise_for_matching(original)
        # the handle as written: "riverside@other.instance" is someone else's account that took the same name
        own = bool(own) or (bool(author) and author.lower().lstrip("@") in self.allow.handles)
        hits: list[Hit] = []
        seen: set[tuple[str, int, int]] = set()
        for rule in self.rules.patterns:
            for hit in self._pattern_hits(rule, text, own):
                key = (hit.category, hit.start, hit.end)
                if key not in seen:
                    seen.add(key)
                    hits.append(hit)
        hits = _outermost(hits)
        if self.rules.context:
            lowered = text.lower()
            state = _Text(text, kind, own, self._sentence_starts(text), lowered if len(lowered) == len(text) else None)
            for rule in self.rules.context:
                hits.extend(self._context_hits(rule, state))
        hits = _merge_past_cap(hits, text)
        hits.sort(key=lambda h: (h.start, h.end, h.rule_id))
        if offsets is not None:
            spans = [offsets.span(h.start, h.end) for h in hits]
            hits = [replace(h, start=s, end=e, matched=original[s:e]) for h, (s, e) in zip(hits, spans, strict=True)]
        elif original is not text:
            hits = [replace(h, matched=original[h.start : h.end]) for h in hits]
        return hits

    # -- structured identifiers ----------------------------------------------------------------------------
    def _pattern_hits(self, rule: PatternRule, text: str, own: bool) -> Iterable[Hit]:
        for match in rule.regex.finditer(text):
            if rule.value_group and match.group(rule.value_group) is not None:
                start, end = match.span(rule.value_group)
            else:
                start, end = match.span()
            found = text[start:end]
            if rule.min_digits and sum(c.isdigit() for c in found) < rule.min_digits:
                continue
            if rule.require is not None and not rule.require.search(found):
                continue
            if rule.allow and self._allowed(rule.allow, found):
                continue
            if own and rule.allow in ("phone", "email") and self._organisation_offered(text, start):
                continue
            yield Hit(rule.id, rule.category, rule.severity, start, end, found, rule.reason)

    def _organisation_offered(self, text: str, start: int) -> bool:
        """ "Call us at ...", "our billing line ...": a number or address the organisation gives out. Asked only
        of what the organisation wrote: in a patient's or relative's comment "call us at" offers their own."""
        return bool(self.organisation_before and self.organisation_before.search(text, max(0, start - 40), start))

    def _allowed(self, allow: str, found: str) -> bool:
        if allow == "phone":
            digits = phone_digits(found)
            public = any(digits.startswith(p) for p in self.toll_free if len(digits) >= 10 or digits == p)
            return public or self.allow.own_phone(digits)
        if allow == "email":
            return self.allow.own_domain(plain_email(found))
        if allow == "address":
            return self.allow.own_address(found)
        return False

    # -- health context ------------------------------------------------------------------------------------
    def _context_hits(self, rule: ContextRule, state: _Text) -> list[Hit]:
        if rule.kinds and state.kind not in rule.kinds:
            return []
        if rule.by_organisation and not state.by_organisation:
            return []
        terms = [
            (start, end, lexicon)
            for lexicon in rule.terms
            for start, end in self._terms(lexicon, state, located=lexicon in rule.located)
        ]
        if not terms:
            return []  # most texts hold no health term: the anchors (and a name model) are never asked
        if not self._anchors(rule.anchor, state):
            return []
        if rule.anchor not in state.indexed:
            state.indexed[rule.anchor] = _Anchors.of(state.anchors[rule.anchor])
        anchors = state.indexed[rule.anchor]
        groups: dict[int, list[tuple[int, int, str]]] = {}
        for start, end, lexicon in terms:
            anchor = self._tied_anchor(rule, anchors, start, end, state)
            if anchor is not None:
                group = groups.setdefault(state.sentence(start), [])
                group.append((start, end, lexicon))
                group.append((anchor[0], anchor[1], ""))
        hits = []
        for spans in groups.values():
            start = min(s for s, _, _ in spans)
            end = max(e for _, e, _ in spans)
            kinds = sorted({lex for _, _, lex in spans if lex})
            reason = f"{rule.reason} ({', '.join(kinds)})"
            hits.append(Hit(rule.id, rule.category, rule.severity, start, end, state.text[start:end], reason))
        return hits

    def _tied_anchor(
        self, rule: ContextRule, anchors: _Anchors, start: int, end: int, state: _Text
    ) -> tuple[int, int] | None:
        """The anchor nearest the term among those the rule ties to it (of two as near, the first found).

        Anchors are visited outward from the term's place, only within the stretch of text where a tied one can
        start, and no further than the nearest found so far: near-linear in a text with thousands of each."""
        window, across = rule.window, rule.across
        sentence = state.sentence(start)
        lowest, highest = 0, len(state.text) + 1  # where a tied anchor may start
        if window != -1:
            previous = window == 0 and sentence > 0 and state.starts_with_pronoun(sentence)
            lowest = state.starts[sentence - 1] if previous else state.starts[sentence]
            highest = state.starts[sentence + 1] if sentence + 1 < len(state.starts) else len(state.text) + 1
            if across:
                lowest = min(lowest, start - across - anchors.longest)
                highest = max(highest, end + across + 1)
        best: tuple[int, int] | None = None  # (gap, index in anchors.spans)

        def consider(k: int) -> None:
            nonlocal best
            index = anchors.order[k]
            a_start, a_end = anchors.spans[index]
            gap = max(0, start - a_end, a_start - end)
            if window != -1:
                a_sentence = state.sentence(a_start)
                if a_sentence == sentence:
                    ok = window == 0 or gap <= window
                else:
                    pronoun = window == 0 and a_sentence == sentence - 1 and state.starts_with_pronoun(sentence)
                    ok = pronoun or (across > 0 and gap <= across)
                if not ok:
                    return
            if best is None or (gap, index) < best:
                best = (gap, index)

        first = bisect_left(anchors.starts, start)
        for k in range(first, len(anchors.starts)):  # starting at or after the term: gap >= a_start - end
            if anchors.starts[k] >= highest or (best is not None and anchors.starts[k] - end > best[0]):
                break
            consider(k)
        for k in range(first - 1, -1, -1):  # starting before it: gap >= start - (a_start + longest)
            a_start = anchors.starts[k]
            if a_start < lowest or (best is not None and start - a_start - anchors.longest > best[0]):
                break
            consider(k)
        return anchors.spans[best[1]] if best is not None else None

    def _terms(self, lexicon: str, state: _Text, located: bool) -> list[tuple[int, int]]:
        key = f"{lexicon}@" if located else lexicon
        if key in state.terms:
            return state.terms[key]
        if lexicon not in state.raw_terms:
            state.raw_terms[lexicon] = self.term_regex[lexicon].spans(state.text, state.lowered)
        found = []
        text = state.text
        for start, end in state.raw_terms[lexicon]:
            if lexicon not in UNSUPPRESSED and self.community and self.community.match(text, end):
                continue
            if self.topic_before and self.topic_before.search(text, max(0, start - 40), start):
                continue
            if located and not LOCATIVE_BEFORE.search(text, max(0, start - 30), start):
                continue
            if located and self.workplace_before and self.workplace_before.search(text, max(0, start - 40), start):
                continue
            found.append((start, end))
        state.terms[key] = found
        return found

    def _anchors(self, anchor: str, state: _Text) -> list[tuple[int, int]]:
        if anchor in state.anchors:
            return state.anchors[anchor]
        text = state.text
        found: list[tuple[int, int]] = []
        if anchor == "self":
            # "my" in "my mother" speaks of the mother: the relative rule's anchor, not the author's
            inside = _Coverage(self._anchors("relative", state))
            found = [s for s in (m.span() for m in SELF.finditer(text)) if not inside.covers(s[0])]
            # "just got out of surgery": a sentence with the subject left out is the author's
            found.extend(m.span(1) for w in state.distinct_first_words() if (m := SELF_ELIDED.match(text, w)))
        elif anchor == "addressee":
            found = [
                m.span()
                for m in ADDRESSEE.finditer(text)
                if not (self.generic_you and self.generic_you.search(text, max(0, m.start() - 20), m.start()))
            ]
        elif anchor == "relative" and self.relation:
            found = [m.span() for m in self.relation.finditer(text)]
            if self.kin_at_start:
                found.extend(m.span(1) for w in state.distinct_first_words() if (m := self.kin_at_start.match(text, w)))
        elif anchor == "mention":
            found = [m.span() for m in MENTION.finditer(text) if m.group("handle").lower() not in self.allow.handles]
        elif anchor == "name":
            spans = []
            for match in self.name.finditer(text) if self.name else ():
                if match.group("cued") is None:
                    spans.append(match.span())
                elif match.group("cued").split()[0].lower() not in self.not_names | self.allow.organisation_words:
                    spans.append(match.span("cued"))
            if self.person_finder is not None:
                spans.extend(self.person_finder(text))
            found = sorted({s for s in spans if not self._is_staff(text, *s)})
        state.anchors[anchor] = found
        return found

    def _is_staff(self, text: str, start: int, end: int) -> bool:
        if self.staff_before and self.staff_before.search(text, max(0, start - 16), start):
            return True
        if AFTER_NAME_STAFF.match(text, end):
            return True
        name = " ".join(text[start:end].split()).lower()
        words = name.replace(".", "").split()
        return name in self.allow.staff or (len(words) > 1 and words[-1] in self.allow.staff_surnames)

    @staticmethod
    def _sentence_starts(text: str) -> list[int]:
        return [0, *(m.end() for m in SENTENCE_END.finditer(text))]
