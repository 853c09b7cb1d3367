"""Load the scan rules: YAML files checked against schemas/rules.schema.json, merged in order.

The built-in files (archiver/scan/rules/) come first, then the organisation's own (`[scan] rule_files`):
their lexicon entries are added to the lists of the same name and a rule with a known id replaces it. The
rules version recorded with every flag is the files' version labels plus a digest of their bytes, so any
edit to any file makes a new version (and `archiver scan --all` appends the flags it finds as new); the
detector appends the engine's revision (engine.ENGINE_REVISION), so an upgrade that finds differently does too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import jsonschema
import yaml

from ..errors import ConfigError

BUILTIN_FILES = ("lexicons.yml", "default.yml")
BUILTIN_PREFIX = "archiver/scan/rules/"
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where PyYAML has it: a quicker start
# Rules of a category with this prefix are signals of patient content (a story, testimonial or photo): the
# consent check applies them (with consent.yml), the PHI scan leaves them out.
SIGNAL_PREFIX = "patient-"


@dataclass(frozen=True)
class PatternRule:
    id: str
    category: str
    severity: str
    reason: str
    regex: re.Pattern[str]
    value_group: str | None
    require: re.Pattern[str] | None
    min_digits: int
    allow: str | None


@dataclass(frozen=True)
class ContextRule:
    id: str
    category: str
    severity: str
    reason: str
    anchor: str
    terms: tuple[str, ...]
    located: tuple[str, ...]
    window: int
    kinds: tuple[str, ...]
    by_organisation: bool = False
    across: int = 0  # an anchor in another sentence this many characters from the term at most is tied too


@dataclass
class RuleSet:
    version: str
    files: list[str]
    patterns: list[PatternRule] = field(default_factory=list)
    context: list[ContextRule] = field(default_factory=list)
    lexicons: dict[str, list[str]] = field(default_factory=dict)


def lexicon_expressions(expressions: list[str] | tuple[str, ...]) -> str:
    """A lexicon's "re:" entries as the engine compiles them: one alternation, each entry a whole word ignoring
    case, inside a group. So an entry may not hold a global flag ("(?i)" at its start is an error inside a
    group) nor a group name another entry of the lexicon uses."""
    return "|".join(rf"(?i:(?<![\w])(?:{e})(?![\w]))" for e in expressions)


def is_signal(category: str) -> bool:
    """A patient-content signal (consent.yml): used by the consent check, never a PHI flag."""
    return category.startswith(SIGNAL_PREFIX)


def select_rules(rules: RuleSet, keep: Callable[[str], bool]) -> RuleSet:
    """The rules whose category `keep` accepts; lexicons and version as loaded."""
    return replace(
        rules,
        patterns=[r for r in rules.patterns if keep(r.category)],
        context=[r for r in rules.context if keep(r.category)],
    )


def rules_schema() -> dict[str, Any]:
    return json.loads(resources.files("archiver.schemas").joinpath("rules.schema.json").read_text("utf-8"))


def load_rules(extra_files: list[Path] | tuple[Path, ...] = (), builtin: tuple[str, ...] = BUILTIN_FILES) -> RuleSet:
    """The built-in rules plus `extra_files`; a ConfigError names the file, the rule and the field at fault."""
    sources: list[tuple[str, bytes]] = []
    folder = resources.files("archiver.scan").joinpath("rules")
    for name in builtin:
        sources.append((f"{BUILTIN_PREFIX}{name}", folder.joinpath(name).read_bytes()))
    for path in extra_files:
        try:
            sources.append((str(path), Path(path).read_bytes()))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read rule file ({exc.strerror}); fix [scan] rule_files") from None
    return build_rules(sources)


def build_rules(sources: list[tuple[str, bytes]]) -> RuleSet:
    validator = jsonschema.Draft202012Validator(rules_schema())
    labels: list[str] = []
    digest = hashlib.sha256()
    patterns: dict[str, PatternRule] = {}
    context: dict[str, ContextRule] = {}
    lexicons: dict[str, list[str]] = {}
    expression_sources: dict[tuple[str, str], str] = {}  # (lexicon, "re:" entry) -> where it was first given
    context_sources: dict[str, str] = {}
    for name, raw in sources:
        digest.update(name.rsplit("/", 1)[-1].encode() + b"\0" + raw + b"\0")
        # libyaml is quicker to start but more lenient with a malformed flow list: the organisation's own
        # files get the strict loader (the built-in ones are checked to parse the same with both)
        loader = FAST_LOADER if name.startswith(BUILTIN_PREFIX) else yaml.SafeLoader
        try:
            data = yaml.load(raw.decode("utf-8"), Loader=loader) or {}  # noqa: S506 - both are safe loaders
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{name}: not valid YAML ({_one_line(exc)}); fix the syntax") from None
        errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), list(e.absolute_path)))
        if errors:
            where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in errors[0].absolute_path)
            raise ConfigError(f"{name}: {where or '(top level)'}: {errors[0].message}".replace(".[", "["))
        if data.get("version"):
            labels.append(str(data["version"]))
        for entry_name, entries in data.get("lexicons", {}).items():
            known = lexicons.setdefault(entry_name, [])
            seen = set(known)
            for index, entry in enumerate(entries):
                text = str(entry).strip()
                if text.startswith("re:"):
                    where = f"{name}: lexicons.{entry_name}[{index}]"
                    _compile(text[3:], where, own=not name.startswith(BUILTIN_PREFIX))
                    _compile_in_lexicon(text[3:], [text[3:]], where)
                    expression_sources.setdefault((entry_name, text[3:]), where)
                if text and text not in seen:
                    known.append(text)
                    seen.add(text)
        for index, rule in enumerate(data.get("patterns", [])):
            where = f"{name}: patterns[{index}] ({rule['id']})"
            own = not name.startswith(BUILTIN_PREFIX)
            regex = _compile(rule["regex"], f"{where}.regex", own=own)
            group = rule.get("value", "value")
            patterns[rule["id"]] = PatternRule(
                id=rule["id"],
                category=rule["category"],
                severity=rule["severity"],
                reason=rule["reason"],
                regex=regex,
                value_group=group if group in regex.groupindex else None,
                require=_compile(rule["require"], f"{where}.require", own=own) if "require" in rule else None,
                min_digits=rule.get("min_digits", 0),
                allow=rule.get("allow"),
            )
        for index, rule in enumerate(data.get("context", [])):
            context_sources[rule["id"]] = f"{name}: context[{index}] ({rule['id']})"
            context[rule["id"]] = ContextRule(
                id=rule["id"],
                category=rule["category"],
                severity=rule["severity"],
                reason=rule["reason"],
                anchor=rule["anchor"],
                terms=tuple(rule["terms"]),
                located=tuple(rule.get("located", ())),
                window=rule.get("window", 0),
                kinds=tuple(rule.get("kinds", ())),
                by_organisation=rule.get("by_organisation", False),
                across=rule.get("across", 0),
            )
    for rule_id, rule in context.items():
        for lexicon in (*rule.terms, *rule.located):
            if lexicon not in lexicons:
                raise ConfigError(
                    f"{context_sources[rule_id]}: names lexicon {lexicon!r}, which no rule file defines "
                    f"(known: {', '.join(sorted(lexicons))})"
                )
    # each entry compiled alone above; together (as the engine compiles a lexicon) they may still clash
    for entry_name, entries in lexicons.items():
        expressions = [e[3:] for e in entries if e.startswith("re:")]
        if expressions and not _compiles(lexicon_expressions(expressions)):
            for count in range(2, len(expressions) + 1):
                entry = expressions[count - 1]
                _compile_in_lexicon(entry, expressions[:count], expression_sources[(entry_name, entry)])
    version = "+".join([*labels, digest.hexdigest()[:12]])
    return RuleSet(version, [n for n, _ in sources], list(patterns.values()), list(context.values()), lexicons)


def _compile(expression: str, where: str, own: bool = False) -> re.Pattern[str]:
    """`expression` compiled; an organisation's own (`own`) must also have no runaway repeat (see below)."""
    try:
        compiled = re.compile(expression)
    except re.error as exc:
        raise ConfigError(f"{where}: not a valid regular expression ({exc}); fix the expression") from None
    if own and runaway_repeat(expression):
        raise ConfigError(
            f"{where}: a repeated group can match the same text in many ways (a repeat inside a repeat, or "
            "alternatives that overlap), so one long text could stall the scan; rewrite it so that each repetition "
            r"has one way to match, e.g. \w+(?:\s\w+)* for (?:\w+\s?)+"
        )
    return compiled


# -- runaway repeats ---------------------------------------------------------------------------------------------
# Python's regex engine backtracks: a repeated group that can split the same text into its repetitions in many
# ways tries them all before it gives up, and a few dozen characters take longer than any night. The classic
# shapes: a quantified group holding a quantified element, one of them unbounded ((a+)+, (\w+\s?)+, (a{1,4})+),
# unless what follows the inner one must start with a character it cannot end with ((?:\s\w+)*, (?:\d+[-.])+);
# and an unbounded repeat of alternatives that can match the same text ((a|a)*, (?:ab|\wb)+). Characters are
# compared on a sample of the alphabet: a heuristic for the shapes people write, not a proof.
_SAMPLE = "".join(map(chr, range(0x250))) + "\u00a0\u0394\u0416\u0660\u2003\u200b\u2028\u3000\u4e2d\U0001f600"
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT)  # possessive repeats and atomic groups never backtrack
_ONE_CHAR = (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN)
_CATEGORIES = {
    sre.CATEGORY_DIGIT: re.compile(r"\d"),
    sre.CATEGORY_NOT_DIGIT: re.compile(r"\D"),
    sre.CATEGORY_SPACE: re.compile(r"\s"),
    sre.CATEGORY_NOT_SPACE: re.compile(r"\S"),
    sre.CATEGORY_WORD: re.compile(r"\w"),
    sre.CATEGORY_NOT_WORD: re.compile(r"\W"),
}
_ALL = frozenset(_SAMPLE)


def runaway_repeat(expression: str) -> bool:
    """Whether `expression` (valid) has a repeat that can backtrack without end: see above."""
    return _has_runaway(sre_parse.parse(expression))


def _has_runaway(items: Iterable[tuple[Any, Any]]) -> bool:
    for op, av in items:
        if op in _REPEATS and av[1] > 1 and _repeat_runs_away(av[1] == sre.MAXREPEAT, av[2]):
            return True
        if any(_has_runaway(child) for child in _children(op, av)):
            return True
    return False


def _children(op: Any, av: Any) -> list[Any]:
    """The sequences directly inside one parsed item."""
    if op in _REPEATS or op is sre.POSSESSIVE_REPEAT:
        return [av[2]]
    if op is sre.SUBPATTERN:
        return [av[3]]
    if op is sre.BRANCH:
        return list(av[1])
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return [av[1]]
    if op is sre.ATOMIC_GROUP:
        return [av]
    if op is sre.GROUPREF_EXISTS:
        return [part for part in av[1:] if part is not None]
    return []


def _repeat_runs_away(unbounded: bool, body: Any) -> bool:
    """Whether a repeat (max > 1) of `body` can split one text into repetitions in many ways: an element of the
    body with a repeat of varying length inside (a+, a?, a{1,4}; one of them or the outer repeat unbounded) that
    what follows it, in this repetition or the next, does not end: it must start with a character the element
    cannot end with. Or unbounded alternatives that overlap."""
    top = _flat(body)
    for i, item in enumerate(top):
        varying = _inner_repeats([item])
        if not varying or not (unbounded or any(av[1] == sre.MAXREPEAT for av in varying)):
            continue
        following, nullable = _edge(top[i + 1 :] + top[:i])
        if nullable or following & _edge([item], last=True)[0]:
            return True
    return unbounded and any(_overlapping(av[1]) for op, av in top if op is sre.BRANCH)


def _flat(items: Iterable[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """The items of a sequence with its groups opened: what each repetition takes, in order."""
    flat: list[tuple[Any, Any]] = []
    for op, av in items:
        flat.extend(_flat(av[3]) if op is sre.SUBPATTERN else [(op, av)])
    return flat


def _inner_repeats(items: Iterable[tuple[Any, Any]]) -> list[Any]:
    """The repeats in a sequence (itself included) whose length varies (not those in a lookaround, which takes
    nothing, nor in an atomic group, which never gives any back)."""
    found = []
    for op, av in items:
        if op in _REPEATS and av[1] > av[0]:
            found.append(av)
        if op not in (sre.ASSERT, sre.ASSERT_NOT, sre.ATOMIC_GROUP):
            for child in _children(op, av):
                found.extend(_inner_repeats(child))
    return found


def _overlapping(alternatives: list[Any]) -> bool:
    """Whether two alternatives can match the same text: both a run of single characters, as long, each
    position sharing a character."""
    runs = []
    for alternative in alternatives:
        flat = _flat(alternative)
        if all(op in _ONE_CHAR for op, _ in flat):
            runs.append([_one_char(op, av) for op, av in flat])
    return any(
        len(a) == len(b) and all(x & y for x, y in zip(a, b, strict=True))
        for i, a in enumerate(runs)
        for b in runs[i + 1 :]
    )


def _edge(items: list[tuple[Any, Any]], last: bool = False) -> tuple[frozenset[str], bool]:
    """The characters a sequence can start with (`last`: end with), and whether it can match nothing."""
    edge: frozenset[str] = frozenset()
    for op, av in reversed(items) if last else items:
        if op in _ONE_CHAR:
            return edge | _one_char(op, av), False
        if op is sre.SUBPATTERN:
            chars, nullable = _edge(list(av[3]), last)
        elif op is sre.ATOMIC_GROUP:
            chars, nullable = _edge(list(av), last)
        elif op in _REPEATS or op is sre.POSSESSIVE_REPEAT:
            chars, nullable = _edge(list(av[2]), last)
            nullable = nullable or av[0] == 0
        elif op is sre.BRANCH:
            parts = [_edge(list(alternative), last) for alternative in av[1]]
            chars, nullable = frozenset().union(*(c for c, _ in parts)), any(n for _, n in parts)
        elif op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            continue  # takes no character
        else:  # a back-reference, a conditional group: anything
            chars, nullable = _ALL, True
        edge |= chars
        if not nullable:
            return edge, False
    return edge, True


def _one_char(op: Any, av: Any) -> frozenset[str]:
    """The sample characters one single-character item matches (case as written)."""
    if op is sre.LITERAL:
        return frozenset([chr(av)])
    if op is sre.NOT_LITERAL:
        return _ALL - {chr(av)}
    if op is sre.ANY:
        return _ALL
    negate = any(o is sre.NEGATE for o, _ in av)
    found = set()
    for o, a in av:
        if o is sre.LITERAL:
            found.add(chr(a))
        elif o is sre.RANGE:
            found.update(c for c in _SAMPLE if a[0] <= ord(c) <= a[1])
        elif o is sre.CATEGORY:
            category = _CATEGORIES.get(a)
            found.update(c for c in _SAMPLE if category is None or category.match(c))
    return _ALL - found if negate else frozenset(found)


def _compiles(expression: str) -> bool:
    try:
        re.compile(expression)
    except re.error:
        return False
    return True


def _compile_in_lexicon(entry: str, expressions: list[str], where: str) -> None:
    """`entry` (valid alone) as the engine compiles it, with the lexicon's `expressions` before it."""
    try:
        re.compile(lexicon_expressions(expressions))
    except re.error as exc:
        others = " with the lexicon's other re: entries" if len(expressions) > 1 else ""
        raise ConfigError(
            f"{where}: {entry!r} cannot be compiled inside the lexicon's expression{others} ({exc.msg}); an entry "
            "is matched ignoring case as a whole word: leave out global flags such as (?i) and reuse no group name"
        ) from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
