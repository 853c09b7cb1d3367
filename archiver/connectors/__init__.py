"""Platform connectors: generators of observations from a platform's API (see base.py)."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Connector
from .facebook import FacebookConnector
from .instagram import InstagramConnector
from .bluesky import BlueskyConnector
from .mastodon import MastodonConnector
from .x import XConnector

CONNECTORS: dict[str, type[Connector]] = {
    "mastodon": MastodonConnector,
    "facebook": FacebookConnector,
    "instagram": InstagramConnector,
    "x": XConnector,
    "bluesky": BlueskyConnector,
}


def connector_for(platform: str) -> Connector:
    try:
        return CONNECTORS[platform]()
    except KeyError:
        raise ConfigError(f"platform {platform!r} has no connector (known: {', '.join(CONNECTORS)})") from None
