"""The embedded default: a sample clinic on loopback Mastodon, X and Bluesky servers, archived twice.

The second run follows a change to the sample (new replies, edits, a deleted post and a deleted reply on
each platform) so the demo archive shows versions and deletions. The demo's token (also the sample Bluesky
account's app password) comes from ARCHIVER_DEMO_TOKEN (a fixed value otherwise); like any token it is never
written under the demo directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..config import Config, load_config
from ..pipeline import RunResult, run_archive
from .bluesky_server import SampleBlueskyServer
from .mastodon_server import SampleMastodonServer
from .sample_data import build_clinic_dataset, mutate_for_second_run
from .social_sample import build_bluesky_sample, build_x_sample, mutate_bluesky_sample, mutate_x_sample
from .x_server import SampleXServer

TOKEN_ENV = "ARCHIVER_DEMO_TOKEN"
DEFAULT_TOKEN = "archiver-demo-token-5e7c1d94a2"


@dataclass
class DemoOutcome:
    config: Config
    runs: list[RunResult] = field(default_factory=list)
    reused: bool = False

    @property
    def exit_code(self) -> int:
        return max((run.exit_code for run in self.runs), default=0)


def demo_config_text(api_base: str, x_base: str | None = None, bluesky_base: str | None = None) -> str:
    return (
        f"""\
# The demo archive, written by `archiver demo`. The sample servers it captured are gone; serve, verify and
# status work on this archive like on any other:
#   archiver serve --config {{this file}}
[archive]
dir = "archive"
organisation = "Riverside Community Clinic (fictional)"
recheck_days = 14

[[accounts]]
name = "riverside-mastodon"
platform = "mastodon"
api_base = "{api_base}"
account = "@riverside"
token_env = "{TOKEN_ENV}"
"""
        + (
            f"""
[[accounts]]
name = "riverside-x"
platform = "x"
api_base = "{x_base}"
account = "@riversideclinic"
token_env = "{TOKEN_ENV}"
"""
            if x_base
            else ""
        )
        + (
            f"""
[[accounts]]
name = "riverside-bluesky"
platform = "bluesky"
api_base = "{bluesky_base}"
account = "@riverside-clinic.example.org"
token_env = "{TOKEN_ENV}"            # the sample account's app password
options = {{ appview = "{bluesky_base}", plc_directory = "{bluesky_base}" }}
"""
            if bluesky_base
            else ""
        )
    )


def run_demo(directory: Path, *, echo: Callable[[str], None] = print, now: datetime | None = None) -> DemoOutcome:
    """Build (or reuse) the demo archive in `directory`; returns its config and the runs made."""
    directory = Path(directory)
    config_path = directory / "archiver.toml"
    if config_path.exists():
        config = load_config(config_path)
        if config.archive.database.exists():
            echo(f"{directory} already holds a demo archive; using it (remove the folder to build it anew)")
            return DemoOutcome(config, reused=True)
    directory.mkdir(parents=True, exist_ok=True)
    # The runs read the token from the environment, like any account; set only for this call, never written.
    added = TOKEN_ENV not in os.environ
    os.environ.setdefault(TOKEN_ENV, DEFAULT_TOKEN)
    try:
        outcome = _archive_sample(config_path, echo, now or datetime.now(UTC))
    finally:
        if added:
            del os.environ[TOKEN_ENV]
    echo(f"demo archive ready: {outcome.config.archive.dir} (config {config_path})")
    return outcome


def _archive_sample(config_path: Path, echo: Callable[[str], None], now: datetime) -> DemoOutcome:
    """Serve the sample clinic (Mastodon, X, Bluesky), archive it, change it, archive it again."""
    token = os.environ[TOKEN_ENV]
    state, facts = build_clinic_dataset(now)
    x_sample = build_x_sample(now)
    bluesky_sample = build_bluesky_sample(now, token)
    outcome: DemoOutcome
    # The sample servers enforce platform-like rate limits by default; the demo should not wait.
    with (
        SampleMastodonServer(state, token, rate_limit=100_000) as server,
        SampleXServer(x_sample.state, token, rate_limit=100_000) as x_server,
        SampleBlueskyServer(bluesky_sample.state, rate_limit=100_000) as bluesky_server,
    ):
        config_path.write_text(demo_config_text(server.base_url, x_server.base_url, bluesky_server.base_url), "utf-8")
        config = load_config(config_path)
        outcome = DemoOutcome(config)
        echo(
            f"sample clinic served at {server.base_url}: {facts.posts} posts, {facts.replies} replies, "
            f"{facts.dm_conversations} direct conversations"
        )
        echo(f"sample X account at {x_server.base_url}, sample Bluesky account at {bluesky_server.base_url}")
        echo("first run: archiving everything ...")
        outcome.runs.append(_run_and_report(config, echo))
        mutation = mutate_for_second_run(state, facts, now)
        echo(
            f"the clinic's account changed: {len(mutation.new_reply_ids)} new replies, post "
            f"{mutation.edited_post_id} edited, post {mutation.deleted_post_id} and reply "
            f"{mutation.deleted_reply_id} deleted"
        )
        echo(mutate_x_sample(x_sample, now))
        echo(mutate_bluesky_sample(bluesky_sample, now))
        echo("second run: capturing the changes ...")
        outcome.runs.append(_run_and_report(config, echo))
    return outcome


def _run_and_report(config: Config, echo: Callable[[str], None]) -> RunResult:
    result = run_archive(config)
    for account in result.accounts:
        line = (
            f"  {account.account}: {account.status}, {account.requests} requests, {account.new_items} new items, "
            f"{account.new_versions} edits, {account.deletions} deletions, {account.media} media files"
        )
        echo(line + (f", error: {account.error}" if account.error else ""))
    return result
