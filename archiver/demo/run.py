"""The embedded default: a sample clinic on loopback Mastodon, LinkedIn and YouTube servers, archived twice.

The second run follows a change to the sample (new replies, edits, a deleted post and deleted replies and
comments) so the demo archive shows versions and deletions. The demo's token comes from ARCHIVER_DEMO_TOKEN (a fixed
value otherwise); like any token it is never written under the demo directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..config import Config, load_config
from ..pipeline import RunResult, run_archive
from .linkedin_server import SampleLinkedInServer
from .mastodon_server import SampleMastodonServer
from .sample_data import build_clinic_dataset, mutate_for_second_run
from .sample_pages import (
    LINKEDIN_ORG,
    build_linkedin_page,
    build_youtube_channel,
    mutate_linkedin_page,
    mutate_youtube_channel,
)
from .youtube_server import SampleYouTubeServer

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


def demo_config_text(api_base: str, linkedin_base: str | None = None, youtube_base: str | None = None) -> str:
    return (
        f"""\
# The demo archive, written by `archiver demo`. The sample server it captured is gone; serve, verify and
# status work on this archive like on any other:
#   archiver serve --config {{this file}}
[archive]
dir = "archive"
organisation = "Riverside Community Clinic (fictional)"
recheck_days = 14
# One platform after another: `archiver rebuild` replays accounts in turn, so its row ids then equal these.
parallel_platforms = 1

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
name = "riverside-linkedin"
platform = "linkedin"
api_base = "{linkedin_base}"
account = "urn:li:organization:{LINKEDIN_ORG}"
token_env = "{TOKEN_ENV}"
"""
            if linkedin_base
            else ""
        )
        + (
            f"""
[[accounts]]
name = "riverside-youtube"
platform = "youtube"
api_base = "{youtube_base}"
account = "@RiversideClinic"
token_env = "{TOKEN_ENV}"
"""
            if youtube_base
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
    """Serve the sample clinic, archive it, change it, archive it again."""
    token = os.environ[TOKEN_ENV]
    state, facts = build_clinic_dataset(now)
    page, page_facts = build_linkedin_page(now)
    channel, channel_facts = build_youtube_channel(now)
    outcome: DemoOutcome
    with ExitStack() as servers:
        # The sample server enforces Mastodon's 300 requests / 5 minutes by default; the demo should not wait.
        server = servers.enter_context(SampleMastodonServer(state, token, rate_limit=100_000))
        linkedin = servers.enter_context(SampleLinkedInServer(page, {token: {LINKEDIN_ORG}}))
        youtube = servers.enter_context(SampleYouTubeServer(channel, api_key=token))
        config_path.write_text(demo_config_text(server.base_url, linkedin.base_url, youtube.base_url), "utf-8")
        config = load_config(config_path)
        outcome = DemoOutcome(config)
        echo(
            f"sample clinic served at {server.base_url}: {facts.posts} posts, {facts.replies} replies, "
            f"{facts.dm_conversations} direct conversations"
        )
        echo(
            f"sample LinkedIn page at {linkedin.base_url}: {page_facts.linkedin_posts} posts, "
            f"{page_facts.linkedin_comments} comments; sample YouTube channel at {youtube.base_url}: "
            f"{channel_facts.youtube_videos} videos, {channel_facts.youtube_comments} comments"
        )
        echo("first run: archiving everything ...")
        outcome.runs.append(_run_and_report(config, echo))
        mutation = mutate_for_second_run(state, facts, now)
        echo(
            f"the clinic's account changed: {len(mutation.new_reply_ids)} new replies, post "
            f"{mutation.edited_post_id} edited, post {mutation.deleted_post_id} and reply "
            f"{mutation.deleted_reply_id} deleted"
        )
        mutate_linkedin_page(page, page_facts, now)
        mutate_youtube_channel(channel, channel_facts, now)
        echo("the LinkedIn page and the YouTube channel changed too: a comment edited, one deleted, one new on each")
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
