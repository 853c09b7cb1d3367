"""The live database against a replay of its WARCs: what `archiver verify --replay` adds to verify.

Plain verify proves that the rows are as the ledger entered them and the WARCs as the checkpoints signed them.
It cannot tell a row that a capture produced from one that was appended, properly chained, by someone with
write access: the next checkpoint signs it too. The replay can. Every WARC record is replayed through the same
connectors and change detection into a temporary database (`rebuild_database`), and each table a replay
produces is compared with the live one, fact by fact. A row the live database holds and the replay does not
produce is a fact no captured record backs; a row the replay produces and the live database lacks is evidence
the database lost; a row in both that differs names its columns.

Rows are matched by what they are about (an item's versions and events by its item_key, in the order they
were appended; a cursor by account and name; ...), never by row id: ids follow the order in which a run's
platform threads happened to append, which the WARCs do not record.

Only the tables a replay produces are vouched for (REPLAYED); NOT_REPLAYED says why each other one is not.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from difflib import SequenceMatcher
from itertools import groupby
from pathlib import Path
from typing import Any

from .config import Config
from .connectors import CONNECTORS
from .connectors.base import FIRST_REVISION
from .errors import ArchiverError, ConfigError
from .pipeline import RunProgress
from .problems import Problem
from .rebuild import rebuild_database
from .recovery import interrupted_runs
from .replay_review import Difference, difference_digest, mark_reviewed, reviews_by_difference
from .store import Store
from .verify import read_one_snapshot

Row = tuple[Any, ...]


@dataclass(frozen=True)
class ReplayedTable:
    """A table a replay produces, as compared: `group` names what its rows are about (each group's rows in
    the order they were appended), `columns` the rest that must be equal, `run` the column naming the run."""

    name: str
    key: str  # how a live row is named in a problem (its primary key)
    group: tuple[str, ...]
    columns: tuple[str, ...]  # SQL expressions, `expr AS label` where a column is re-expressed
    run: str
    order: str = "id"  # append order within a group
    # Where and when a row was captured, which a run that did not finish legitimately moves (see _compare_table);
    # the other columns are what the row says, which no such run changes.
    provenance: tuple[str, ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(c.rsplit(" AS ", 1)[-1] for c in self.columns)

    def substance(self, row: Row) -> Row:
        """What a row says, without where and when it was captured."""
        return tuple(v for label, v in zip(self.labels, row, strict=True) if label not in self.provenance)

    def query(self, named: bool = False) -> str:
        """The rows as compared, by group then append order; `named` puts the live row's key first."""
        selected = ([f"{self.key} AS _key"] if named else []) + [*self.group, *self.columns]
        return f"SELECT {', '.join(selected)} FROM {self.name} ORDER BY {', '.join(self.group)}, {self.order}"


def _version_number(version_id: str) -> str:
    """A version named by its place in its item's history (1 for the first), not by its row id; prefixed
    with its item_key when it is another item's than the event's own."""
    return (
        "(SELECT CASE WHEN v.item_key = events.item_key THEN count(*) ELSE v.item_key || ' version ' || count(*) "
        "END FROM item_versions v JOIN item_versions w ON w.item_key = v.item_key AND w.id <= v.id "
        f"WHERE v.id = {version_id})"
    )


def _names(columns: str) -> tuple[str, ...]:
    return tuple(columns.split(", "))


# An edit's evidence names the version it replaced by row id: compared by its version number instead.
_PREVIOUS = "'$.previous_version_id'"
_EVIDENCE = (
    f"CASE WHEN NOT json_valid(evidence) THEN evidence WHEN json_type(evidence, {_PREVIOUS}) IS NULL THEN evidence "
    f"ELSE json_set(evidence, {_PREVIOUS}, {_version_number(f'json_extract(evidence, {_PREVIOUS})')}) END AS evidence"
)

# What a replay vouches for: the facts captured records make. Left out, each for its reason:
# - row ids (`id`): the order of appends, which interleaves platforms captured in parallel differently from a
#   replay, account by account; events name versions by number instead (version_id, previous_version_id).
# - cursors.recorded_at, accounts.recorded_at: the clock of whoever appended the row, not of the capture.
REPLAYED: tuple[ReplayedTable, ...] = (
    ReplayedTable(
        "item_versions",
        "id",
        ("item_key",),
        _names(
            "platform, account, kind, native_id, parent_key, thread_key, conversation_key, author_id, author_handle, "
            "author_name, created_at, edited_at, text, url, visibility, media, raw_json, content_sha256, run_id, "
            "captured_at, warc_file, warc_offset, warc_length, warc_record_id"
        ),
        "run_id",
        # raw_json too: a later run's capture of the same content may differ in counts; plain verify holds
        # each row's raw_json to the WARC record it names
        provenance=_names("raw_json, run_id, captured_at, warc_file, warc_offset, warc_length, warc_record_id"),
    ),
    ReplayedTable(
        "events",
        "id",
        ("item_key",),
        ("event", f"{_version_number('version_id')} AS version", "run_id", "observed_at", _EVIDENCE),
        "run_id",
        provenance=("run_id", "observed_at", "evidence"),
    ),
    ReplayedTable(
        "media_files",
        "url",
        ("url",),
        _names("sha256, size, content_type, run_id, captured_at, warc_file, warc_offset, warc_length, warc_record_id"),
        "run_id",
        "url",
        provenance=_names("run_id, captured_at, warc_file, warc_offset, warc_length, warc_record_id"),
    ),
    # A cursor's values follow the requests a run made, which differ once a run before it did not finish.
    ReplayedTable("cursors", "id", ("account", "name"), ("value", "run_id"), "run_id", provenance=("value", "run_id")),
    ReplayedTable(
        "accounts",
        "id",
        ("name",),
        _names("platform, api_base, platform_account_id, handle, display_name, first_seen_run"),
        "first_seen_run",
        provenance=("first_seen_run",),
    ),
)

# What a replay does not vouch for, and why: `verify --replay` says so.
NOT_REPLAYED: dict[str, str] = {
    "runs": "run bookkeeping: a replay records its own (software version, hosts' clocks, counts)",
    "run_results": "run bookkeeping (as runs)",
    "account_runs": "run bookkeeping (as runs)",
    "warc_files": "checked by plain verify against the files and the signed checkpoints",
    "schema_migrations": "when the schema was applied: checked by plain verify's schema check",
    "ledger": "the chain over the rows as appended: recomputed by plain verify",
    "checkpoints": "signatures made at capture time: checked by plain verify",
    "scan_runs": "made by the PHI scan, not by a capture (`archiver scan --all` re-derives flags)",
    "flags": "made by the PHI scan and consent checks, under the rules of their time",
    "flag_reviews": "people's decisions, not in any captured record",
    "consent_imports": "imported from the organisation's records",
    "consent_register": "imported from the organisation's records",
    "consent_links": "people's decisions, not in any captured record",
    "consent_checks": "made by consent checks, not by a capture",
    "exports": "the register of evidence bundles made",
    "alert_deliveries": "made by alert deliveries, not by a capture",
    "review_operators": "who recorded people's decisions, not in any captured record",
    "run_progress": "how far a run had committed: the replay reads it, to stop a run that did not finish there",
    "scan_skips": "made by the PHI scan, not by a capture",
    "scan_retries": "made by the PHI scan, not by a capture",
    "consent_signals": "made by consent checks, not by a capture",
    "flag_recordings": "when the review queue was recorded, not from a capture",
    "flag_states": "recorded from flags, reviews and the consent register, not from a capture",
    "replay_reviews": "people's reading of the replay's differences, not in any captured record",
}
NOT_REPLAYED_FILES = "the access log (checked by `archiver access-log verify` and the checkpoints' signed heads)"


def compare_databases(
    live: sqlite3.Connection,
    replayed: sqlite3.Connection,
    unfinished: set[str] | frozenset[str] = frozenset(),
    on_table: Callable[[str, int, int], None] | None = None,
    parsed_at: Mapping[str, Mapping[str, int]] | None = None,
) -> Iterator[Problem]:
    """Every difference between the live database and a replay of its WARCs, table by table (REPLAYED).

    `unfinished` are runs the live database does not record as finished (interrupted, or still going): it
    holds what such a run committed, the replay everything it captured, so an item, cursor or account whose
    rows involve one may legitimately differ, and its differences are notes.

    `parsed_at` names, for each replayed run, the parser revision it read each platform's responses at (its
    warcinfo; absent: revision 1). A row that says something else than the replay of the same record, made by
    a run whose parser for the row's platform is older than this software's, may be what that parser made: the
    error says so, naming both revisions. It stays an error: a row rewritten, its ledger rechained and signed
    again, looks the same, and telling the two apart is a person's work (the revisions' notes in
    connectors/base.py say what each changed)."""
    older = _OlderParsers(parsed_at, _platforms_of_accounts(live, replayed)) if parsed_at is not None else None
    order = {run_id: n for n, (run_id,) in enumerate(live.execute("SELECT id FROM runs ORDER BY rowid"))}
    for done, table in enumerate(REPLAYED):
        if on_table:
            on_table(f"comparing {table.name}", done, len(REPLAYED))
        yield from _compare_table(table, live, replayed, unfinished, older, order)
    if on_table:
        on_table("compared", len(REPLAYED), len(REPLAYED))


def _groups(conn: sqlite3.Connection, table: ReplayedTable) -> Iterator[tuple[Row, list[tuple[Any, Row]]]]:
    """(group, [(key, row)]) in group order; a row is the compared columns."""
    width = len(table.group)
    rows = (tuple(r) for r in conn.execute(table.query(named=True)))
    for group, members in groupby(rows, key=lambda r: r[1 : 1 + width]):
        yield group, [(r[0], r[1 + width :]) for r in members]


def _platforms_of_accounts(*conns: sqlite3.Connection) -> dict[str, str]:
    """Each configured account's platform, where its name has only ever been one platform's (a row of cursors
    names its account, not its platform)."""
    seen: dict[str, set[str]] = {}
    for conn in conns:
        for name, platform in conn.execute("SELECT DISTINCT name, platform FROM accounts"):
            seen.setdefault(name, set()).add(platform)
    return {name: next(iter(platforms)) for name, platforms in seen.items() if len(platforms) == 1}


class _OlderParsers:
    """Which runs read which platform at a parser revision older than this software's."""

    def __init__(self, parsed_at: Mapping[str, Mapping[str, int]], platforms: Mapping[str, str] | None = None):
        self.parsed_at = parsed_at
        self.platforms = platforms or {}  # account name -> platform

    def of(self, table: ReplayedTable, group: Row, row: Row) -> str | None:
        """'x parser revision 1, this software's 2' when the row's run read its platform at an older revision;
        None when not, or when the row's run or platform is not known (then the difference says nothing of it)."""
        labels = table.labels
        if "platform" in labels:
            platform = row[labels.index("platform")]
        elif "item_key" in table.group:
            platform = str(group[table.group.index("item_key")]).split(":", 1)[0]
        elif "account" in table.group and str(group[table.group.index("account")]) in self.platforms:
            platform = self.platforms[str(group[table.group.index("account")])]
        else:
            return None
        run = row[labels.index(table.run)]
        connector = CONNECTORS.get(platform)
        if connector is None or run not in self.parsed_at:
            return None
        then = self.parsed_at[run].get(platform, FIRST_REVISION)
        now = connector.PARSER_REVISION
        return f"{platform} parser revision {then}, this software's {now}" if then < now else None


def _compare_table(
    table: ReplayedTable,
    live: sqlite3.Connection,
    replayed: sqlite3.Connection,
    unfinished: set[str] | frozenset,
    older: _OlderParsers | None = None,
    order: Mapping[str, int] | None = None,
) -> Iterator[Problem]:
    """Errors row by row. A group that a run which did not finish touched may differ in where and when its rows
    were captured (that run committed part of what it captured, the replay gives all of it, and a later run
    records again what was not committed): when each live row still says what a replayed row says, in the
    same order, the difference is counted into one note per run(s); a live row that says what no replayed
    row says is an error, whichever run it names. Only rows of runs after the unfinished one (`order`: the
    live runs' order) may differ in provenance: the unfinished run's own rows, and those before it, must match
    a replayed row in every column, since its replay gives all it committed (a deletion's date or evidence
    rewritten in such a row is an error, not a note)."""
    explained: dict[tuple[str, ...], list[str]] = {}  # run(s) -> the groups that differ
    run = table.labels.index(table.run)
    order = order or {}
    for group, held, made in _differing_groups(table, live, replayed):
        runs = tuple(sorted(({row[run] for _, row in held} | {row[run] for row in made}) & unfinished))
        if not runs:
            yield from _group_problems(table, group, held, made, older)
            continue
        first = min(order.get(r, -1) for r in runs)
        whole = [order.get(row[run], -1) <= first for _, row in held]  # rows held to every column
        unbacked = _unbacked([row for _, row in held], made, whole, table.substance)
        if not table.substance(table.labels):  # every column is provenance (cursors): nothing to hold rows to
            unbacked = []
        if not unbacked:
            explained.setdefault(runs, []).append(_named(table, group))
        for index in unbacked:
            key, row = held[index]
            yield Problem(
                f"{table.name} {table.key}={key}",
                f"no captured record backs it (no replayed row says this, though run(s) {', '.join(runs)} did not "
                f"finish): {_named(table, group)}, {_show_row(table.labels, row)}",
            )
    for runs, groups in explained.items():
        yield Problem(
            f"{table.name} of run {', '.join(runs)}",
            f"{len(groups)} {'/'.join(table.group)}(s) differ from the replay (e.g. {groups[0]}): the run did not "
            "finish, so the live database holds what it committed and the replay all it captured; a later run "
            "records again what it did not commit",
            "note",
        )


def _unbacked(held: list[Row], made: list[Row], whole: list[bool], substance: Callable[[Row], Row]) -> list[int]:
    """Indexes of the live rows that are not matched, in order, by replayed rows: in every column where
    `whole`, else in their substance (greedy matching finds a match for every row whenever the live rows are
    a subsequence of the replayed ones)."""
    unmatched, j = [], 0
    for index, row in enumerate(held):
        seen = (lambda r: r) if whole[index] else substance
        wanted, k = seen(row), j
        while k < len(made) and seen(made[k]) != wanted:
            k += 1
        if k == len(made):
            unmatched.append(index)
        else:
            j = k + 1
    return unmatched


def _differing_groups(
    table: ReplayedTable, live: sqlite3.Connection, replayed: sqlite3.Connection
) -> Iterator[tuple[Row, list[tuple[Any, Row]], list[Row]]]:
    """(group, its live (key, row)s, its replayed rows) for each group whose rows are not the same."""
    # Both sides in the same group order (SQLite orders text by its UTF-8 bytes, as Python orders str), merged.
    mine, theirs = _groups(live, table), _groups(replayed, table)
    here, there = next(mine, None), next(theirs, None)
    while here is not None or there is not None:
        group = min(g[0] for g in (here, there) if g is not None)
        held: list[tuple[Any, Row]] = []
        made: list[Row] = []
        if here is not None and here[0] == group:
            held, here = here[1], next(mine, None)
        if there is not None and there[0] == group:
            made, there = [row for _, row in there[1]], next(theirs, None)
        if [row for _, row in held] != made:
            yield group, held, made


def _named(table: ReplayedTable, group: Row) -> str:
    return ", ".join(f"{name}={_show(value)}" for name, value in zip(table.group, group, strict=True))


def _group_problems(
    table: ReplayedTable,
    group: Row,
    held: list[tuple[Any, Row]],
    made: list[Row],
    older: _OlderParsers | None = None,
) -> Iterator[Problem]:
    """The differences within one group: its live rows aligned with the replayed ones, in order. A pair made by
    the same run, whose parser for the platform was older (`older`), says so."""
    labels, named = table.labels, _named(table, group)
    run = labels.index(table.run)
    matcher = SequenceMatcher(None, [row for _, row in held], made, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        pairs = min(i2 - i1, j2 - j1) if op == "replace" else 0
        for (key, mine), theirs in zip(held[i1 : i1 + pairs], made[j1 : j1 + pairs], strict=True):
            changed = [(n, a, b) for n, a, b in zip(labels, mine, theirs, strict=True) if a != b]
            why = _parser_hint(table, group, mine, older) if mine[run] == theirs[run] else ""
            values = "; ".join(f"{n} {_show(a)} here, {_show(b)} replayed" for n, a, b in changed)
            yield _difference(
                table,
                group,
                (key, mine),
                theirs,
                f"{table.key}={key}",
                f"{named}: differs from the replay in {', '.join(n for n, _, _ in changed)}: {values}{why}",
                why,
            )
        # A row on one side alone is named with its run's parser revision too: a parser that has since learned to
        # keep a row (a cursor, say) gives the replay rows the live database never had, and one that no longer
        # makes a row leaves live rows the replay does not produce.
        for key, row in held[i1 + pairs : i2]:
            why = _parser_hint(table, group, row, older)
            said = f"no captured record backs it (the replay does not produce it): {named}, {_show_row(labels, row)}"
            yield _difference(table, group, (key, row), None, f"{table.key}={key}", said + why, why)
        for row in made[j1 + pairs : j2]:
            why = _parser_hint(table, group, row, older)
            said = f"missing: the replay produces {_show_row(labels, row)}, the live database lacks it"
            yield _difference(table, group, None, row, named, said + why, why)


def _difference(
    table: ReplayedTable,
    group: Row,
    live: tuple[Any, Row] | None,
    replayed: Row | None,
    place: str,
    message: str,
    why: str,
) -> Problem:
    """An error; a Difference, which a person may review, only when a parser change may explain it (`why`)."""
    where = f"{table.name} {place}"
    if not why:
        return Problem(where, message)
    return Difference(where, message, digest=difference_digest(table.name, group, live, replayed))


def _parser_hint(table: ReplayedTable, group: Row, row: Row, older: _OlderParsers | None) -> str:
    """' (run R read it with the x parser revision 1, ...)' when the row's run read its platform with an older
    parser than this software's; '' otherwise."""
    revisions = older.of(table, group, row) if older is not None else None
    if not revisions:
        return ""
    return (
        f" (run {row[table.labels.index(table.run)]} read it with the {revisions}: a parser change since may "
        "explain this; see PARSER_REVISION in archiver/connectors)"
    )


SHOWN = 80  # characters of a value a problem shows (whole ids and digests; texts cut)


def _show(value: Any) -> str:
    shown = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)
    return shown if len(shown) <= SHOWN else f"{shown[: SHOWN - 1]}…({len(shown)} chars)"


def _show_row(labels: tuple[str, ...], row: Row) -> str:
    return ", ".join(f"{n}={_show(v)}" for n, v in zip(labels, row, strict=True) if v is not None)


@dataclass(frozen=True)
class ReplayCheck:
    """What `verify --replay` found: the problems (the replay's own, then the differences) and its extent."""

    problems: list[Problem]
    runs: int  # runs replayed
    compared: bool  # False when the replay was not run or was incomplete: nothing was compared

    def summary(self) -> list[str]:
        """What the replay vouches for and what it does not, in words."""
        if not self.compared:
            return ["replay: nothing compared"]
        tables = ", ".join(t.name for t in REPLAYED)
        lines = [
            f"replay: {self.runs} run(s) of WARC records replayed; compared {tables}",
            f"replay: not covered (no captured record makes them): {', '.join(NOT_REPLAYED)}; {NOT_REPLAYED_FILES}",
        ]
        differences = [p for p in self.problems if isinstance(p, Difference)]
        if reviewed := sum(1 for p in differences if p.severity == "note"):
            lines.append(f"replay: {reviewed} difference(s) a person reviewed earlier (replay_reviews), shown as notes")
        if left := len(differences) - reviewed:
            lines.append(
                f"replay: {left} difference(s) in rows an older parser made: once a person has read them against "
                "the revision's change, `archiver review-replay` records so"
            )
        return lines


def check_replay(
    config: Config,
    public_key: Path | None = None,
    *,
    prior: list[Problem] | None = None,
    progress: RunProgress | None = None,
    on_run: Callable[[str, int], None] | None = None,
    on_step: Callable[[str, int, int], None] | None = None,
    temp_dir: Path | None = None,
) -> ReplayCheck:
    """Replay the archive's WARCs into a temporary database and compare the live database with it.

    Not run when `prior` (plain verify's problems) holds an error: a replay over damaged or unsigned evidence
    would only repeat those problems as differences. The live database is read in one read-only snapshot taken
    before the replay (rows a run commits meanwhile point at records the replay reads too). The temporary
    database goes in `temp_dir` (default: the system's, which honours TMPDIR), never inside the archive folder,
    and is removed whatever happens."""
    if prior is not None and any(p.severity == "error" for p in prior):
        skipped = "not run: a replay over the problems above would only repeat them; fix them first"
        return ReplayCheck([Problem("replay", skipped, "note")], 0, False)
    base = Path(temp_dir or tempfile.gettempdir()).resolve()
    if base.is_relative_to(config.archive.dir.resolve()):
        raise ConfigError(
            f"{base}: the replay's temporary database would be inside the archive folder, which verify never "
            "changes; set TMPDIR to a folder outside it"
        )
    live = Store.open(config.archive.database, readonly=True)
    try:
        read_one_snapshot(live.conn)  # all the reads below see one moment, whatever a run commits meanwhile
        unfinished = interrupted_runs(live.conn)
        known = {row[0] for row in live.conn.execute("SELECT id FROM runs")}
        left = "left by a verify --replay that was killed (a copy of archive data)"
        cleared = [Problem("replay", f"removed {folder}, {left}", "note") for folder in remove_stale_replays(base)]
        with tempfile.TemporaryDirectory(prefix=f"{REPLAY_PREFIX}{os.getpid()}-", dir=base) as folder:
            out = Path(folder) / "replayed.db"
            try:
                with _run_log_silenced():
                    outcome = rebuild_database(config, out, public_key=public_key, progress=progress, on_run=on_run)
            except ArchiverError as exc:  # e.g. a run captured an account the config no longer names
                return ReplayCheck([*cleared, Problem("replay", f"cannot replay: {exc}")], 0, False)
            problems = cleared + [Problem(f"replay: {p.where}", p.message, p.severity) for p in outcome.problems]
            if outcome.errors:
                problems.append(Problem("replay", "incomplete (see above): the live database was not compared"))
                return ReplayCheck(problems, outcome.runs, False)
            replayed = sqlite3.connect(out)
            try:
                captured = {row[0] for row in replayed.execute("SELECT id FROM runs")}
                # A run the snapshot does not know started after it: unfinished as far as the snapshot tells.
                # Only runs whose WARCs were replayed can explain a difference: a run row alone, which anyone
                # with write access can append, explains nothing.
                unfinished = (unfinished | (captured - known)) & captured
                differences = compare_databases(live.conn, replayed, unfinished, on_step, outcome.parsed_at)
                problems += mark_reviewed(differences, reviews_by_difference(live.conn))
            finally:
                replayed.close()
        return ReplayCheck(problems, outcome.runs, True)
    finally:
        live.close()


REPLAY_PREFIX = "archiver-replay-"  # then the pid of the verify that made the folder


def remove_stale_replays(base: Path) -> list[Path]:
    """Remove the replay folders that a verify killed outright (SIGKILL, power loss) left in `base`: each holds
    a copy of an archive's data, PHI included. A folder is stale when the process named in it is gone."""
    removed = []
    for folder in base.glob(f"{REPLAY_PREFIX}*"):
        pid = folder.name.removeprefix(REPLAY_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)) or not folder.is_dir() or folder.stat().st_uid != os.getuid():
            continue  # a running verify's, or another user's (theirs to remove)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


@contextmanager
def _run_log_silenced() -> Iterator[None]:
    """A replayed account that fails is one of the check's problems (said once, as a note or an error), not a
    line of a run's log: the replay goes through the run's code, which logs one."""
    log = logging.getLogger("archiver.run")
    was = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = was
