"""How a run shows itself: rich progress on a terminal, log lines under cron, and the closing summary."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .config import AccountConfig
from .pipeline import AccountResult, RunProgress, RunResult

log = logging.getLogger("archiver.run")


def summary_counts(a: AccountResult) -> tuple[int, ...]:
    return a.requests, a.new_items, a.new_versions, a.deletions, a.restorations, a.media


class LogProgress(RunProgress):
    """Under cron: one line per account start and end, waits logged."""

    def account_started(self, account: AccountConfig) -> None:
        log.info("account %s (%s): started", account.name, account.platform)

    def waiting(self, account: str, message: str) -> None:
        log.info(message)

    def account_finished(self, result: AccountResult) -> None:
        log.info("account %s: %s", result.account, result.status)


class RichProgress(RunProgress):
    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def account_started(self, account: AccountConfig) -> None:
        self.tasks[account.name] = self.progress.add_task(f"{account.name}: starting", total=None)

    def _describe(self, result: AccountResult) -> str:
        return (
            f"{result.account}: {result.requests} requests, {result.new_items} new items, "
            f"{result.new_versions} edits, {result.deletions} deletions"
        )

    def observed(self, result: AccountResult) -> None:
        self.progress.update(self.tasks[result.account], description=self._describe(result))

    def waiting(self, account: str, message: str) -> None:
        self.progress.update(self.tasks[account], description=message)

    def account_finished(self, result: AccountResult) -> None:
        mark = "done" if result.status == "ok" else "FAILED"
        self.progress.update(
            self.tasks[result.account], description=f"{self._describe(result)} [{mark}]", total=1, completed=1
        )


@contextmanager
def make_progress(enabled: bool) -> Iterator[RunProgress]:
    if not enabled:
        yield LogProgress()
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield RichProgress(progress)


@contextmanager
def verify_progress(enabled: bool, label: str = "verifying") -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar for `archiver verify` (or `backup`) on a terminal, showing the current step after
    `label`; a no-op callback otherwise."""
    if not enabled:
        yield lambda step, done, total: None
        return
    columns = (TextColumn(f"{label} {{task.description}}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("", total=None)

        def update(step: str, done: int, total: int) -> None:
            progress.update(task, description=step, completed=done, total=total or None)

        yield update


@contextmanager
def count_progress(enabled: bool, label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar counting `label` (e.g. "scanning versions") on a terminal; a no-op callback otherwise."""
    if not enabled:
        yield lambda done, total: None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("", total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total or None)


class ReplayProgress(RunProgress):
    """`archiver rebuild`: on a terminal a bar per run counting its captured responses replayed, else a line
    per run (`echo`)."""

    def __init__(self, progress: Progress | None, echo: Callable[[str], None]):
        self.progress = progress
        self.echo = echo
        self.task: TaskID | None = None
        self.done = 0  # responses replayed by the run's finished accounts

    def run_started(self, run_id: str, responses: int) -> None:
        self.done = 0
        if self.progress is None:
            self.echo(f"replaying run {run_id} ({responses:,} captured responses)")
        else:
            self.task = self.progress.add_task(f"replaying run {run_id}", total=responses or None)

    def observed(self, result: AccountResult) -> None:
        self._show(self.done + result.requests)

    def account_finished(self, result: AccountResult) -> None:
        self.done += result.requests
        self._show(self.done)

    def _show(self, completed: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=completed)


@contextmanager
def replay_progress(enabled: bool, echo: Callable[[str], None]) -> Iterator[ReplayProgress]:
    if not enabled:
        yield ReplayProgress(None, echo)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield ReplayProgress(progress, echo)


@contextmanager
def replay_check_progress(enabled: bool) -> Iterator[tuple[ReplayProgress, Callable[[str, int, int], None]]]:
    """`archiver verify --replay` on a terminal: a bar per run replayed, then one for the comparison, gone once
    done (as verify's); nothing otherwise, since verify prints only what it found."""
    if not enabled:
        yield ReplayProgress(None, lambda line: None), lambda step, done, total: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task: TaskID | None = None

        def update(step: str, done: int, total: int) -> None:
            nonlocal task
            if task is None:
                task = progress.add_task(f"replay: {step}", total=total or None)
            progress.update(task, description=f"replay: {step}", completed=done, total=total or None)

        yield ReplayProgress(progress, lambda line: None), update


SUMMARY_COLUMNS = ("requests", "new items", "edits", "deletions", "restored", "media")


def render_summary(result: RunResult, console: Console | None = None) -> None:
    """The run summary on stdout: a table on a terminal; off one (cron's log, a pipe) a line an account, whole,
    since a table there is cut to 80 columns and a long account name would lose its end."""
    console = console or Console()
    # a failed PHI scan or consent check fails the run too (result.status), though every account was captured
    outcome = "INTERRUPTED" if result.interrupted else "ok" if result.status == "ok" else "FAILED"
    title = f"run {result.run_id}: {outcome}"
    rows = [(a.account, a.status, *map(str, summary_counts(a))) for a in result.accounts]
    if console.is_terminal:
        table = Table(title=title, show_lines=False)
        for column in ("account", "status", *SUMMARY_COLUMNS):
            table.add_column(column, overflow="fold")  # a narrow terminal wraps a name or a count, never cuts it
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:
        console.print(title, markup=False, highlight=False, soft_wrap=True)
        for name, status, *counts in rows:
            counted = ", ".join(f"{count} {column}" for count, column in zip(counts, SUMMARY_COLUMNS, strict=True))
            console.print(f"{name}: {status}; {counted}", markup=False, highlight=False, soft_wrap=True)
    for a in result.accounts:
        if a.error:
            console.print(f"{a.account}: error: {a.error}", markup=False, highlight=False, soft_wrap=True)
        for notice in a.notices[:20]:
            console.print(f"{a.account}: note: {notice}", markup=False, highlight=False, soft_wrap=True)
        if len(a.notices) > 20:
            console.print(f"{a.account}: note: and {len(a.notices) - 20} more notices", markup=False, soft_wrap=True)
    for notice in result.notices:
        console.print(f"note: {notice}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"WARC files: {', '.join(result.warc_files) or 'none'}", markup=False, highlight=False, soft_wrap=True
    )
