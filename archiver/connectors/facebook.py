"""Facebook Page: its posts, every comment and reply on them, hidden status, and Messenger conversations.

API (Graph API, version from options.graph_version): GET /{page-id} (the page), /{page-id}/feed or
/published_posts (posts, newest first), /{post-id}/comments?filter=stream (every comment of the post,
replies included, each naming its `parent`), /{object-id} (direct lookups), /{page-id}/conversations
?platform=messenger and /{conversation-id}/messages. Paging, errors and rate limits: graph.py.

Incremental: no cursor is kept (Meta invalidates them); the newest post time seen is, and each run lists
posts down to the older of that time and the re-check window, reading every listed post's comments again.
Edits: `updated_time` is the post's edit time; a change makes a new version. Deletions: a known item missing
from a listing that completed and must have held it is looked up; only the answer "does not exist"
(code 100, subcode 33) is a deletion, recorded with that answer as evidence. Hidden status: a comment's
`is_hidden` needs the MODERATE task; when it is not read, it is unknown, never a change (settle_hidden_status).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any, ClassVar

from ..config import AccountConfig
from ..errors import ConfigError
from ..http import Exchange, Session
from ..items import AccountIdentity, Item, Notice, Observation
from ..store import KnownItem
from ..warc import CaptureRef
from .base import AccountState, Credential, FetchWindow, RequestRevisions
from .graph import (
    MEDIA_FAILURES_NOTED,
    GraphAnswer,
    GraphPermissionError,
    GraphRun,
    GraphUsagePolicy,
    check_graph_credential,
    graph_time,
)

ATTACHMENT_FIELDS = "media_type,type,url,title,description,media,target,subattachments"
POST_FIELDS = (
    f"id,message,story,created_time,updated_time,permalink_url,from,is_hidden,attachments{{{ATTACHMENT_FIELDS}}}"
)
COMMENT_FIELDS = "id,message,created_time,from,parent{id},permalink_url,attachment"
HIDDEN_FIELD = "is_hidden"
POSTS_CURSOR = "posts_newest_created_time"


def page_id_of(account: AccountConfig) -> str:
    page_id = account.options.get("page_id") or account.account
    if not page_id:
        raise ConfigError(
            f"account {account.name}: no Facebook Page named; set options.page_id (or account) to the Page's id"
        )
    return str(page_id)


def attachment_media(attachment: dict[str, Any]) -> list[dict[str, Any]]:
    """A post's or comment's attachment (and its subattachments, e.g. an album) as media entries."""
    out = []
    for part in [attachment, *((attachment.get("subattachments") or {}).get("data") or [])]:
        media = part.get("media") or {}
        url = media.get("source") or (media.get("image") or {}).get("src")
        if not url:
            continue
        out.append(
            {
                "id": str((part.get("target") or {}).get("id") or "") or None,
                "type": part.get("media_type") or part.get("type"),
                "url": url,
                "description": part.get("description") or part.get("title"),
            }
        )
    return out


def with_hidden_status(item: Item, hidden: bool | None) -> Item:
    """The comment with `is_hidden` as given (None: not read), in its visibility and its extra alike."""
    visibility = None if hidden is None else ("hidden" if hidden else "public")
    return replace(item, visibility=visibility, extra={**item.extra, "is_hidden": hidden})


def settle_hidden_status(item: Item, read: bool | None, latest: KnownItem | None) -> Item:
    """The comment to compare with its latest version, `read` being the `is_hidden` its response carried (None:
    not asked for, the MODERATE task refused or hidden_status = false).

    A status not read is unknown, not a change. The stored row is evidence of one response and the digest is
    what decides whether a row is stored, so: if the comment with its last known status has its latest version's
    digest, it goes with that status and is stored as nothing (no row claims a status its response did not
    carry); if anything else changed, the new version says the status is unknown. Read again after a version
    that could not say, a comment seen public is no news (no version), one seen hidden is a new version.
    """
    if latest is None:
        return item
    if read is None:
        for known in (False, True):
            carried = with_hidden_status(item, known)
            if carried.content_sha256 == latest.content_sha256:
                return carried
    elif not read:
        unknown = with_hidden_status(item, None)
        if unknown.content_sha256 == latest.content_sha256:
            return unknown
    return item


class FacebookConnector(RequestRevisions):
    platform: ClassVar[str] = "facebook"
    token_param: ClassVar[str | None] = None  # a Page access token, sent in the Authorization header
    REQUEST_REVISION: ClassVar[int] = MEDIA_FAILURES_NOTED  # 2: a media download that fails is a notice

    def rate_limit_policy(self) -> GraphUsagePolicy:
        return GraphUsagePolicy()

    def check_credential(self, account: AccountConfig, token: str, timeout: float) -> Credential:
        return check_graph_credential(account, token, timeout)

    def fetch(
        self, session: Session, account: AccountConfig, state: AccountState, window: FetchWindow
    ) -> Iterator[Observation]:
        yield from _FacebookRun(session, account, state, window, self.revision).fetch()


class _FacebookRun(GraphRun):
    platform = "facebook"

    def __init__(
        self, session: Session, account: AccountConfig, state: AccountState, window: FetchWindow, revision: int
    ):
        super().__init__(session, account, state, window, revision)
        self.page_id = page_id_of(account)
        self.hidden_allowed = bool(account.options.get("hidden_status", True))

    def fetch(self) -> Iterator[Observation]:
        page = self.client.node(self.page_id, {"fields": "id,name,username,link"}, "the Page").value
        yield AccountIdentity(str(page["id"]), page.get("username"), page.get("name"))
        yield from self.fetch_posts()
        if self.account.direct_messages:
            yield from self.fetch_conversations(self.page_id, "messenger")

    # -- posts -------------------------------------------------------------------------------------------------
    def fetch_posts(self) -> Iterator[Observation]:
        """Posts newest first down to the older of the newest already archived and the re-check window."""
        edge = self.account.options.get("posts_edge", "feed")
        yield from self.list_newest_first(
            f"{self.page_id}/{edge}",
            {"fields": POST_FIELDS, "limit": 25},
            f"Page posts ({edge})",
            POSTS_CURSOR,
            "created_time",
            self.observe_post,
            self.fetch_comments,
        )

    def observe_post(self, post: dict[str, Any], ref: CaptureRef) -> Iterator[Observation]:
        key = self.key(str(post["id"]))
        if key in self.seen:
            return
        self.seen.add(key)
        entries = []
        for attachment in (post.get("attachments") or {}).get("data") or []:
            entries.extend(attachment_media(attachment))
        media = list((yield from self.fetch_media(entries)))
        created, updated = graph_time(post.get("created_time")), graph_time(post.get("updated_time"))
        author = post.get("from") or {}
        yield Item(
            item_key=key,
            platform="facebook",
            kind="post",
            native_id=str(post["id"]),
            source=ref,
            raw=post,
            text=post.get("message") or post.get("story") or "",
            created_at=created,
            edited_at=updated if updated and updated != created else None,
            thread_key=key,
            author_id=str(author["id"]) if author.get("id") else None,
            author_name=author.get("name"),
            url=post.get("permalink_url"),
            visibility="hidden" if post.get("is_hidden") else "public",
            media=tuple(media),
            extra={"story": post.get("story") or "", "is_hidden": bool(post.get("is_hidden"))},
        )

    # -- comments ----------------------------------------------------------------------------------------------
    def fetch_comments(self, post: dict[str, Any]) -> Iterator[Observation]:
        """Every comment of a post; `is_hidden` needs the MODERATE task, so without it comments are read anyway."""
        try:
            yield from self.read_comments(post)
        except GraphPermissionError as exc:
            if not self.hidden_allowed:
                raise
            self.hidden_allowed = False
            yield Notice(
                f"{exc}: comments are read without their hidden status; an unchanged one keeps its last known "
                "hidden status, a new or edited one is archived without any"
            )
            yield from self.read_comments(post)

    def comment_fields(self) -> str:
        return f"{COMMENT_FIELDS},{HIDDEN_FIELD}" if self.hidden_allowed else COMMENT_FIELDS

    def read_comments(self, post: dict[str, Any]) -> Iterator[Observation]:
        """All comments, replies included (filter=stream), then a lookup for each known one left out."""
        post_key = self.key(str(post["id"]))
        # The latest version of each comment archived: what a listing must hold, and what a comment whose hidden
        # status was not read is compared with.
        known = {k.item_key: k for k in self.state.known_items(thread_key=post_key) if k.kind == "comment"}
        listed: set[str] = set()
        last_page: Exchange | None = None
        params = {"filter": "stream", "order": "chronological", "limit": 100, "fields": self.comment_fields()}
        for exchange, comments in self.client.pages(f"{post['id']}/comments", params, "comments"):
            last_page = exchange
            for comment in comments:
                listed.add(self.key(str(comment["id"])))
                yield from self.observe_comment(comment, exchange.ref, post_key, known)
        missing = [k for k in known.values() if not k.deleted and k.item_key not in listed]

        def again(left_out: KnownItem, answer: GraphAnswer) -> Iterator[Observation]:
            yield from self.observe_comment(answer.value, answer.exchange.ref, post_key, known)

        yield from self.confirm_absent(missing, last_page, self.comment_fields(), again)

    def observe_comment(
        self, comment: dict[str, Any], ref: CaptureRef, post_key: str, known: dict[str, KnownItem]
    ) -> Iterator[Observation]:
        key = self.key(str(comment["id"]))
        if key in self.seen:
            return
        self.seen.add(key)
        media = list((yield from self.fetch_media(attachment_media(comment.get("attachment") or {}))))
        parent = (comment.get("parent") or {}).get("id")
        author = comment.get("from") or {}
        hidden = comment.get("is_hidden")
        read = hidden if isinstance(hidden, bool) else None
        item = Item(
            item_key=key,
            platform="facebook",
            kind="comment",
            native_id=str(comment["id"]),
            source=ref,
            raw=comment,
            text=comment.get("message") or "",
            created_at=graph_time(comment.get("created_time")),
            parent_key=self.key(str(parent)) if parent else post_key,
            thread_key=post_key,
            author_id=str(author["id"]) if author.get("id") else None,
            author_name=author.get("name"),
            url=comment.get("permalink_url"),
            visibility=None if read is None else ("hidden" if read else "public"),
            media=tuple(media),
            extra={"is_hidden": read},
        )
        yield settle_hidden_status(item, read, known.get(key))
