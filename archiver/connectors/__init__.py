"""Platform connectors: generators of observations from a platform's API (see base.py)."""

from __future__ import annotations

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


def connector_for(platform: str, account: AccountConfig | None = None) -> Connector:
    """The platform's connector; given the account, one set up for it (e.g. how its credential is sent)."""
    try:
        cls = CONNECTORS[platform]
    except KeyError:
        raise ConfigError(f"platform {platform!r} has no connector (known: {', '.join(CONNECTORS)})") from None
    for_account = getattr(cls, "for_account", None)
    return for_account(account) if for_account is not None and account is not None else cls()
