"""Platform connectors: generators of observations from a platform's API (see base.py)."""

from __future__ import annotations

from collections.abc import Iterable

from ..config import AccountConfig
from ..errors import ConfigError
from .base import Connector
from .bluesky import BlueskyConnector
from .facebook import FacebookConnector
from .instagram import InstagramConnector
from .linkedin import LinkedInConnector
from .mastodon import MastodonConnector
from .x import XConnector
from .youtube import YouTubeConnector

CONNECTORS: dict[str, type[Connector]] = {
    "mastodon": MastodonConnector,
    "facebook": FacebookConnector,
    "instagram": InstagramConnector,
    "x": XConnector,
    "bluesky": BlueskyConnector,
    "linkedin": LinkedInConnector,
    "youtube": YouTubeConnector,
}


def connector_for(platform: str, account: AccountConfig | None = None, revision: int | None = None) -> Connector:
    """The platform's connector; given the account, one set up for it (e.g. how its credential is sent); given a
    revision (a replayed run's), one that makes the requests of that revision, else of the newest."""
    try:
        cls = CONNECTORS[platform]
    except KeyError:
        raise ConfigError(f"platform {platform!r} has no connector (known: {', '.join(CONNECTORS)})") from None
    for_account = getattr(cls, "for_account", None)
    connector = for_account(account) if for_account is not None and account is not None else cls()
    return connector if revision is None else connector.asking_as(revision)


def request_revisions(platforms: Iterable[str]) -> str:
    """The warcinfo value (base.REVISIONS_FIELD) of a run using these platforms: each connector's newest revision."""
    return ", ".join(f"{p}={CONNECTORS[p].REQUEST_REVISION}" for p in sorted(set(platforms)))


def parser_revisions(platforms: Iterable[str]) -> str:
    """The warcinfo value (base.PARSER_REVISIONS_FIELD) of a run using these platforms."""
    return ", ".join(f"{p}={CONNECTORS[p].PARSER_REVISION}" for p in sorted(set(platforms)))
