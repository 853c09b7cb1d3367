"""The embedded default: a sample clinic on loopback servers of every platform, archived twice.

The clinic has a Mastodon account, a Facebook Page, an Instagram account, an X account, a Bluesky account,
a LinkedIn page and a YouTube channel. The second run follows a change to the sample (new replies and
comments, edits, deleted posts, comments and replies) so the demo archive shows versions and deletions on
every platform, and a consent register whose consents lapse. The demo's token (also the sample Bluesky
account's app password) comes from ARCHIVER_DEMO_TOKEN (a fixed value otherwise); like any token it is never
written under the demo directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..config import Config, load_config
from ..consent.register import import_consents, link_consent
from ..pipeline import RunResult, run_archive
from .bluesky_server import SampleBlueskyServer
from .consent_sample import add_patient_posts
from .graph_sample import build_graph_dataset, mutate_graph_for_second_run
from .graph_server import SampleGraphServer
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
from .social_sample import build_bluesky_sample, build_x_sample, mutate_bluesky_sample, mutate_x_sample
from .x_server import SampleXServer
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


def demo_config_text(api_base: str, other_accounts: str = "") -> str:
    return f"""\
# The demo archive, written by `archiver demo`. The sample servers it captured are gone; serve, verify and
# status work on this archive like on any other:
#   archiver serve --config {{this file}}
[archive]
dir = "archive"
organisation = "Riverside Community Clinic (fictional)"
recheck_days = 14
# One platform at a time: rows then follow capture order exactly, so `archiver rebuild` of the demo gives the
# same row ids (captured in parallel, the platforms' rows interleave in an order a replay cannot know).
parallel_platforms = 1

[[accounts]]
name = "riverside-mastodon"
platform = "mastodon"
api_base = "{api_base}"
account = "@riverside"
token_env = "{TOKEN_ENV}"
{other_accounts}
# The clinic's own handle, number and staff: never flagged as PHI.
[scan]
own_handles = ["riverside"]
own_phones = ["555-0100"]
staff = ["Helen Arbogast", "Samuel Ndiaye", "Priya Raman", "Tomas Velde", "Kit Oduya"]
"""


def account_block(name: str, platform: str, api_base: str, account: str = "", options: str = "", note: str = "") -> str:
    lines = ["", "[[accounts]]", f'name = "{name}"', f'platform = "{platform}"', f'api_base = "{api_base}"']
    if account:
        lines.append(f'account = "{account}"')
    lines.append(f'token_env = "{TOKEN_ENV}"' + (f"  # {note}" if note else ""))
    if options:
        lines.append(f"options = {{ {options} }}")
    return "\n".join(lines) + "\n"


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
    """Serve the sample clinic on every platform, archive it, change it, archive it again."""
    token = os.environ[TOKEN_ENV]
    state, facts = build_clinic_dataset(now)
    consent = add_patient_posts(state, facts.clinic_id, "riverside-mastodon", now)
    graph_state, graph_facts = build_graph_dataset(now)
    x_sample = build_x_sample(now)
    bluesky_sample = build_bluesky_sample(now, token)
    page, page_facts = build_linkedin_page(now)
    channel, channel_facts = build_youtube_channel(now)
    outcome: DemoOutcome
    with ExitStack() as servers:
        # The sample servers enforce platform-like rate limits by default; the demo should not wait.
        server = servers.enter_context(SampleMastodonServer(state, token, rate_limit=100_000))
        graph = servers.enter_context(SampleGraphServer(graph_state, token))
        x_server = servers.enter_context(SampleXServer(x_sample.state, token, rate_limit=100_000))
        bluesky = servers.enter_context(SampleBlueskyServer(bluesky_sample.state, rate_limit=100_000))
        linkedin = servers.enter_context(SampleLinkedInServer(page, {token: {LINKEDIN_ORG}}))
        youtube = servers.enter_context(SampleYouTubeServer(channel, api_key=token))
        page_id, ig_user_id = graph_facts.page_id, graph_facts.ig_user_id
        others = "".join(
            [
                account_block("riverside-facebook", "facebook", graph.base_url, options=f'page_id = "{page_id}"'),
                account_block(
                    "riverside-instagram",
                    "instagram",
                    graph.base_url,
                    options=f'ig_user_id = "{ig_user_id}", page_id = "{page_id}"',
                ),
                account_block("riverside-x", "x", x_server.base_url, "@riversideclinic"),
                account_block(
                    "riverside-bluesky",
                    "bluesky",
                    bluesky.base_url,
                    "@riverside-clinic.example.org",
                    f'appview = "{bluesky.base_url}", plc_directory = "{bluesky.base_url}"',
                    note="the sample account's app password",
                ),
                account_block(
                    "riverside-linkedin", "linkedin", linkedin.base_url, f"urn:li:organization:{LINKEDIN_ORG}"
                ),
                account_block("riverside-youtube", "youtube", youtube.base_url, "@RiversideClinic"),
            ]
        )
        config_path.write_text(demo_config_text(server.base_url, others), "utf-8")
        config = load_config(config_path)
        outcome = DemoOutcome(config)
        echo(
            f"sample clinic served at {server.base_url}: {facts.posts + len(consent.status_ids)} posts "
            f"({len(consent.status_ids)} patient stories), {facts.replies} replies, "
            f"{facts.dm_conversations} direct conversations"
        )
        echo(
            f"its Facebook Page and Instagram account at {graph.base_url}: {graph_facts.posts} Page posts, "
            f"{graph_facts.comments} comments, {graph_facts.media} Instagram media, {graph_facts.ig_comments} "
            f"Instagram comments, {graph_facts.conversations} Messenger and Instagram conversations"
        )
        echo(f"its X account at {x_server.base_url}, its Bluesky account at {bluesky.base_url}")
        echo(
            f"its LinkedIn page at {linkedin.base_url}: {page_facts.linkedin_posts} posts, "
            f"{page_facts.linkedin_comments} comments; its YouTube channel at {youtube.base_url}: "
            f"{channel_facts.youtube_videos} videos, {channel_facts.youtube_comments} comments"
        )
        imported = import_consents(config, consent.register_csv(config_path.parent / "consents.csv"))
        echo(f"consent register: {len(imported.new)} consents imported from consents.csv")
        echo("first run: archiving everything ...")
        outcome.runs.append(_run_and_report(config, echo))
        for consent_id, item_key in consent.links(server.base_url.split("://", 1)[1]):
            link_consent(config, consent_id, item_key)
        echo("consents linked to the posts they cover (one of them expired yesterday)")
        mutation = mutate_for_second_run(state, facts, now)
        echo(
            f"the clinic's account changed: {len(mutation.new_reply_ids)} new replies, post "
            f"{mutation.edited_post_id} edited, post {mutation.deleted_post_id} and reply "
            f"{mutation.deleted_reply_id} deleted"
        )
        import_consents(config, consent.revocation_csv(config_path.parent / "consent-revocation.csv"))
        echo("a patient revoked consent C-DEMO-002 today (consent-revocation.csv imported)")
        meta = mutate_graph_for_second_run(graph_state, graph_facts, now)
        echo(
            f"on Meta: {len(meta.new_comment_ids)} new comments, Page post {meta.edited_post_id} and Instagram "
            f"media {meta.edited_media_id} edited, comment {meta.deleted_comment_id} and Instagram reply "
            f"{meta.deleted_ig_reply_id} deleted"
        )
        echo(mutate_x_sample(x_sample, now))
        echo(mutate_bluesky_sample(bluesky_sample, now))
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
    for notice in result.notices:
        if notice.startswith(("PHI scan", "consent check")):
            echo(f"  {notice}")
    return result
