"""Instagram professional account: its media (carousel children included), comments, replies, hidden status, DMs.

API (Graph API with Facebook Login, version from options.graph_version): GET /{ig-user-id} (the account),
/{ig-user-id}/media (newest first; `children` expanded for carousels), /{ig-media-id}/comments (top-level
comments), /{ig-comment-id}/replies (replies are one level deep), /{object-id} (direct lookups), and the
linked Page's /{page-id}/conversations?platform=instagram with each conversation's messages.
Paging, errors and rate limits: graph.py.

Incremental: no cursor is kept; the newest media timestamp is, and each run lists media down to the older
of that time and the re-check window, reading every listed media's comments and replies again. Instagram
offers no edit time: a changed caption or comment is a new version because its content changed. Deletions
only on a lookup answering "does not exist" (code 100, subcode 33), recorded as the evidence.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from ..config import AccountConfig
from ..errors import ConfigError
from ..http import Exchange, Session
from ..items import AccountIdentity, Item, Observation
from ..store import KnownItem
from ..warc import CaptureRef
from .base import AccountState, Credential, FetchWindow, RequestRevisions
from .graph import MEDIA_FAILURES_NOTED, GraphAnswer, GraphRun, GraphUsagePolicy, check_graph_credential, graph_time

CHILD_FIELDS = "id,media_type,media_url,thumbnail_url,timestamp"
MEDIA_FIELDS = (
    "id,caption,media_type,media_product_type,media_url,thumbnail_url,permalink,timestamp,username,"
    f"is_comment_enabled,children{{{CHILD_FIELDS}}}"
)
COMMENT_FIELDS = "id,text,timestamp,username,from,hidden,parent_id"
MEDIA_CURSOR = "media_newest_timestamp"


def ig_user_id_of(account: AccountConfig) -> str:
    user_id = account.options.get("ig_user_id") or account.account
    if not user_id:
        raise ConfigError(
            f"account {account.name}: no Instagram account named; set options.ig_user_id (or account) to the "
            "Instagram professional account's id"
        )
    return str(user_id)


def media_entries(media: dict[str, Any]) -> list[dict[str, Any]]:
    """The files of a media object: its own, or each carousel child's (videos by file, with their thumbnail)."""
    parts = (media.get("children") or {}).get("data") or [media]
    out = []
    for part in parts:
        for url in (part.get("media_url"), part.get("thumbnail_url")):
            if url:
                out.append({"id": str(part.get("id")), "type": part.get("media_type"), "url": url, "description": None})
    return out


class InstagramConnector(RequestRevisions):
    platform: ClassVar[str] = "instagram"
    token_param: ClassVar[str | None] = None
    REQUEST_REVISION: ClassVar[int] = MEDIA_FAILURES_NOTED  # 2: a media download that fails is a notice

    def rate_limit_policy(self) -> GraphUsagePolicy:
        return GraphUsagePolicy()

    def check_credential(self, account: AccountConfig, token: str, timeout: float) -> Credential:
        return check_graph_credential(account, token, timeout)

    def fetch(
        self, session: Session, account: AccountConfig, state: AccountState, window: FetchWindow
    ) -> Iterator[Observation]:
        yield from _InstagramRun(session, account, state, window, self.revision).fetch()


class _InstagramRun(GraphRun):
    platform = "instagram"

    def __init__(
        self, session: Session, account: AccountConfig, state: AccountState, window: FetchWindow, revision: int
    ):
        super().__init__(session, account, state, window, revision)
        self.user_id = ig_user_id_of(account)

    def fetch(self) -> Iterator[Observation]:
        me = self.client.node(self.user_id, {"fields": "id,username,name"}, "the Instagram account").value
        yield AccountIdentity(str(me["id"]), me.get("username"), me.get("name"))
        yield from self.fetch_media_list()
        if self.account.direct_messages:
            page_id = self.account.options.get("page_id")
            if not page_id:
                raise ConfigError(
                    f"account {self.account.name}: Instagram direct messages are read through the linked Facebook "
                    "Page: set options.page_id, or direct_messages = false"
                )
            yield from self.fetch_conversations(str(page_id), "instagram")

    # -- media -------------------------------------------------------------------------------------------------
    def fetch_media_list(self) -> Iterator[Observation]:
        """Media newest first down to the older of the newest already archived and the re-check window."""
        yield from self.list_newest_first(
            f"{self.user_id}/media",
            {"fields": MEDIA_FIELDS, "limit": 25},
            "media",
            MEDIA_CURSOR,
            "timestamp",
            self.observe_media,
            self.fetch_comments,
        )

    def observe_media(self, media: dict[str, Any], ref: CaptureRef) -> Iterator[Observation]:
        key = self.key(str(media["id"]))
        if key in self.seen:
            return
        self.seen.add(key)
        files = list((yield from self.fetch_media(media_entries(media))))
        yield Item(
            item_key=key,
            platform="instagram",
            kind="post",
            native_id=str(media["id"]),
            source=ref,
            raw=media,
            text=media.get("caption") or "",
            created_at=graph_time(media.get("timestamp")),
            thread_key=key,
            author_id=self.user_id,
            author_handle=media.get("username"),
            url=media.get("permalink"),
            visibility="public",
            media=tuple(files),
            extra={"media_type": media.get("media_type"), "media_product_type": media.get("media_product_type")},
        )

    # -- comments and replies ----------------------------------------------------------------------------------
    def fetch_comments(self, media: dict[str, Any]) -> Iterator[Observation]:
        """Top-level comments, each one's replies, then a lookup for each known comment left out."""
        media_key = self.key(str(media["id"]))
        listed: set[str] = set()
        last_page: Exchange | None = None
        params = {"fields": COMMENT_FIELDS, "limit": 50}
        for exchange, comments in self.client.pages(f"{media['id']}/comments", params, "comments"):
            last_page = exchange
            for comment in comments:
                listed.add(self.key(str(comment["id"])))
                yield from self.observe_comment(comment, exchange.ref, media_key, media_key)
                for reply_page, replies in self.client.pages(f"{comment['id']}/replies", params, "replies"):
                    for reply in replies:
                        listed.add(self.key(str(reply["id"])))
                        parent = self.key(str(reply.get("parent_id") or comment["id"]))
                        yield from self.observe_comment(reply, reply_page.ref, parent, media_key)
        missing = [
            known
            for known in self.state.known_items(thread_key=media_key)
            if not known.deleted and known.kind == "comment" and known.item_key not in listed
        ]

        def again(known: KnownItem, answer: GraphAnswer) -> Iterator[Observation]:
            parent = answer.value.get("parent_id")
            parent_key = self.key(str(parent)) if parent else media_key
            yield from self.observe_comment(answer.value, answer.exchange.ref, parent_key, media_key)

        yield from self.confirm_absent(missing, last_page, COMMENT_FIELDS, again)

    def observe_comment(
        self, comment: dict[str, Any], ref: CaptureRef, parent_key: str, media_key: str
    ) -> Iterator[Observation]:
        key = self.key(str(comment["id"]))
        if key in self.seen:
            return
        self.seen.add(key)
        author = comment.get("from") or {}
        hidden = comment.get("hidden")
        yield Item(
            item_key=key,
            platform="instagram",
            kind="comment",
            native_id=str(comment["id"]),
            source=ref,
            raw=comment,
            text=comment.get("text") or "",
            created_at=graph_time(comment.get("timestamp")),
            parent_key=parent_key,
            thread_key=media_key,
            author_id=str(author["id"]) if author.get("id") else None,
            author_handle=comment.get("username") or author.get("username"),
            visibility=None if hidden is None else ("hidden" if hidden else "public"),
            extra={"hidden": hidden},
        )
