"""Load the scan rules: YAML files checked against schemas/rules.schema.json, merged in order.

The built-in files (archiver/scan/rules/) come first, then the organisation's own (`[scan] rule_files`):
their lexicon entries are added to the lists of the same name and a rule with a known id replaces it. The
rules version recorded with every flag is the files' version labels plus a digest of their bytes, so any
edit to any file makes a new version (and `archiver scan --all` appends the flags it finds as new).
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


@dataclass
class RuleSet:
    version: str
    files: list[str]
    patterns: list[PatternRule] = field(default_factory=list)
    context: list[ContextRule] = field(default_factory=list)
    lexicons: dict[str, list[str]] = field(default_factory=dict)


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
                    _compile(text[3:], f"{name}: lexicons.{entry_name}[{index}]")
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
            )
    for rule_id, rule in context.items():
        for lexicon in (*rule.terms, *rule.located):
            if lexicon not in lexicons:
                raise ConfigError(
                    f"{context_sources[rule_id]}: names lexicon {lexicon!r}, which no rule file defines "
                    f"(known: {', '.join(sorted(lexicons))})"
                )
    version = "+".join([*labels, digest.hexdigest()[:12]])
    return RuleSet(version, [n for n, _ in sources], list(patterns.values()), list(context.values()), lexicons)


def _compile(expression: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(expression)
    except re.error as exc:
        raise ConfigError(f"{where}: not a valid regular expression ({exc}); fix the expression") from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
