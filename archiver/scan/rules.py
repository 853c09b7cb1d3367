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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
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
                    _compile(text[3:], where)
                    _compile_in_lexicon(text[3:], [text[3:]], where)
                    expression_sources.setdefault((entry_name, text[3:]), where)
                if text and text not in seen:
                    known.append(text)
                    seen.add(text)
        for index, rule in enumerate(data.get("patterns", [])):
            where = f"{name}: patterns[{index}] ({rule['id']})"
            regex = _compile(rule["regex"], f"{where}.regex")
            group = rule.get("value", "value")
            patterns[rule["id"]] = PatternRule(
                id=rule["id"],
                category=rule["category"],
                severity=rule["severity"],
                reason=rule["reason"],
                regex=regex,
                value_group=group if group in regex.groupindex else None,
                require=_compile(rule["require"], f"{where}.require") if "require" in rule else None,
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


def _compile(expression: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(expression)
    except re.error as exc:
        raise ConfigError(f"{where}: not a valid regular expression ({exc}); fix the expression") from None


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
