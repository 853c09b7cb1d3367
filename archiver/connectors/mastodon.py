"""Mastodon: the account's statuses, every reply in their threads, direct conversations, edits, media.

API (docs.joinmastodon.org): GET /api/v1/accounts/:id/statuses (Link-header paging, newest first),
/api/v1/statuses/:id, /context (ancestors + descendants), /history (StatusEdit[], oldest first),
/api/v1/conversations (Link-header paging, by last activity). Rate limits: X-RateLimit-* headers, 429.

Incremental: the newest own status id is kept as a cursor; threads whose root is younger than the
re-check window are read again each run for new replies, edits and deletions. A status is concluded
deleted only when a direct lookup answers 404; absence from a complete context only triggers that lookup.
A deleted root has no context, and Mastodon keeps its replies: while its thread is in the window, the root
and each known item of its thread are looked up by id instead. A thread's known items are weighed whatever
archived account of the instance captured them (two accounts can share a thread).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from ..config import AccountConfig
from ..errors import AuthError, PlatformError
from ..http import Exchange, HeaderRateLimit, Session, check_json, check_request
from ..items import (
    AccountIdentity,
    CursorUpdate,
    Deletion,
    Item,
    MediaFile,
    Notice,
    Observation,
    html_to_text,
)
from ..store import KnownItem
from ..warc import CaptureRef
from .base import AccountState, Credential, FetchWindow, PageTrail, RecentSet, RequestRevisions, fetch_media_file

PAGE_LIMIT = 40
# Mastodon caps a context's descendants (4,096 for signed-in requests); a capped listing proves nothing absent.
CONTEXT_CAP = 4096
NEWEST_CURSOR = "statuses_newest_id"
CONVERSATIONS_CURSOR = "conversations_newest_last_status_id"
# Statuses any signed-in viewer may load: another archived account's absence from this account's view of them
# means something. A followers-only or direct one it may never have been shown.
SEEN_BY_ALL = ("public", "unlisted")
# The request revision (see base.RequestRevisions) from which deleted roots and every account's thread items are
# weighed; a run captured before asked neither.
UNDER_DELETED = 2
# The request revision from which a media download that fails (a 5xx, no answer, after the retries) leaves its
# status archived without the file, with a notice, and the run goes on (base.fetch_media_file); before, it stopped
# the account.
MEDIA_FAILURES_NOTED = 3


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _expect(condition: bool, exchange: Exchange, what: str) -> None:
    if not condition:
        raise PlatformError(
            f"GET {exchange.url}: unexpected response shape ({what}); "
            f"raw response in WARC record {exchange.ref.record_id}"
        )


class MastodonConnector(RequestRevisions):
    platform: ClassVar[str] = "mastodon"
    token_param: ClassVar[str | None] = None
    # 2: a deleted root of the re-check window is looked up again, and its thread's known items one by one; a
    # thread's absent items are weighed whatever archived account captured them (UNDER_DELETED).
    # 3: a media download that fails is a notice, and the run goes on (MEDIA_FAILURES_NOTED).
    REQUEST_REVISION: ClassVar[int] = MEDIA_FAILURES_NOTED

    def rate_limit_policy(self) -> HeaderRateLimit:
        return HeaderRateLimit("X-RateLimit-Remaining", "X-RateLimit-Reset")

    def check_credential(self, account: AccountConfig, token: str, timeout: float) -> Credential:
        """verify_credentials; Mastodon's access tokens do not expire (they are revoked), so no expiry."""
        url = f"{account.api_base}/api/v1/accounts/verify_credentials"
        response = check_request(
            account.name, "GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
        if response.status_code in (401, 403):
            raise AuthError(
                f"account {account.name}: the platform refused the token from {account.credential_ref} "
                f"(HTTP {response.status_code}); renew the token"
            )
        if response.status_code != 200:
            raise PlatformError(f"account {account.name}: GET {url} answered HTTP {response.status_code}")
        try:
            return Credential("@" + str(check_json(account.name, response)["acct"]))
        except (KeyError, TypeError):
            raise PlatformError(f"account {account.name}: GET {url} did not answer an Account") from None

    # -- one run -------------------------------------------------------------------------------------------
    def fetch(
        self, session: Session, account: AccountConfig, state: AccountState, window: FetchWindow
    ) -> Iterator[Observation]:
        run = _MastodonRun(session, account, state, window, self.revision)
        yield from run.fetch()


class _MastodonRun:
    def __init__(
        self, session: Session, account: AccountConfig, state: AccountState, window: FetchWindow, revision: int
    ):
        self.session = session
        self.revision = revision
        self.account = account
        self.state = state
        self.window = window
        self.base = account.api_base
        self.host = urlsplit(account.api_base).netloc
        self.seen = RecentSet()  # item keys handled lately in this run
        self.threads_read: set[str] = set()  # root keys whose context was read this run
        self.media_fetched = RecentSet()
        self.me: dict[str, Any] = {}

    def key(self, status_id: str) -> str:
        return f"mastodon:{self.host}:{status_id}"

    def api(self, path: str) -> str:
        return f"{self.base}/api/v1/{path}"

    # -- the account ---------------------------------------------------------------------------------------
    def fetch(self) -> Iterator[Observation]:
        yield self.fetch_identity()
        yield from self.fetch_own_statuses()
        yield from self.recheck_threads()
        if self.account.direct_messages:
            yield from self.fetch_conversations()

    def fetch_identity(self) -> AccountIdentity:
        ref = (self.account.account or "").strip()
        if not ref:
            exchange = self.session.get(self.api("accounts/verify_credentials"))
        elif ref.isdigit():
            exchange = self.session.get(self.api(f"accounts/{ref}"))
        else:
            exchange = self.session.get(self.api("accounts/lookup"), {"acct": ref.lstrip("@")}, ok=(200, 404))
            if exchange.status == 404:
                raise PlatformError(
                    f"account {self.account.name}: {self.host} has no account {ref!r}; fix `account` in the config"
                )
        me = exchange.json()
        _expect(isinstance(me, dict) and "id" in me, exchange, "an Account object")
        self.me = me
        return AccountIdentity(str(me["id"]), me.get("acct"), me.get("display_name"))

    def fetch_own_statuses(self) -> Iterator[Observation]:
        """Newest first until the newest status already archived; every new status' thread is read."""
        newest_known = self.state.cursor(NEWEST_CURSOR)
        url: str | None = self.api(f"accounts/{self.me['id']}/statuses")
        params: dict[str, Any] | None = {"limit": PAGE_LIMIT}
        newest_seen: str | None = None
        trail = PageTrail(self.account.name, "the statuses listing")
        while url:
            trail.visit(url, params)
            exchange = self.session.get(url, params)
            page = exchange.json()
            _expect(isinstance(page, list), exchange, "a list of Status")
            reached_known = False
            for status in page:
                _expect(isinstance(status, dict) and "id" in status, exchange, "a Status with an id")
                if newest_known and int(status["id"]) <= int(newest_known):
                    reached_known = True
                    break
                if newest_seen is None or int(status["id"]) > int(newest_seen):
                    newest_seen = str(status["id"])
                if status.get("visibility") == "direct":
                    continue  # direct messages are captured with their conversation
                yield from self.read_thread(status, exchange.ref)
            if reached_known or not page:
                break
            url, params = exchange.links.get("next"), None
        if newest_seen:
            yield CursorUpdate(NEWEST_CURSOR, newest_seen)

    def recheck_threads(self) -> Iterator[Observation]:
        """Re-read the threads whose root is inside the re-check window: new replies, edits, deletions.

        A root recorded deleted is looked up again while in the window: a 404 can be undone (a removal reversed
        on appeal, a block lifted; see `also_if`), and an answer records it restored. While it stays gone, its
        thread's known items are looked up one by one (`recheck_orphans`)."""
        under_deleted = self.revision >= UNDER_DELETED
        roots = [
            known
            for known in self.state.known_items(created_since=self.window.recheck_since, kinds=("post",))
            if known.thread_key == known.item_key
            and known.item_key not in self.threads_read
            and (under_deleted or not known.deleted)
        ]
        for root in sorted(roots, key=lambda k: int(k.native_id), reverse=True):
            exchange = self.session.get(self.api(f"statuses/{root.native_id}"), ok=(200, 404))
            if exchange.status == 404:
                if not root.deleted:
                    yield Deletion(root.item_key, self.lookup_evidence(exchange), exchange.ref)
                if under_deleted:
                    yield from self.recheck_orphans(root, exchange)
                continue
            status = exchange.json()
            _expect(isinstance(status, dict) and "id" in status, exchange, "a Status")
            yield from self.read_thread(status, exchange.ref)

    def recheck_orphans(self, root: KnownItem, gone: Exchange) -> Iterator[Observation]:
        """The known, live items of a deleted root's thread, each looked up by id. Mastodon keeps the replies of a
        deleted status and a deleted root has no context to list them, so a reply deleted or edited with or
        after its root would otherwise stay live in the archive for good."""
        orphans = [
            known
            for known in self.state.thread_items(root.item_key)
            if known.item_key != root.item_key
            and not known.deleted
            and known.item_key not in self.seen  # observed this run already: it is there
            and self.weighable(known)
        ]
        because = {"under_deleted": {"item_key": root.item_key, "url": gone.url, "warc_record_id": gone.ref.record_id}}
        yield from self.look_up(sorted(orphans, key=lambda k: int(k.native_id)), because)

    def weighable(self, known: KnownItem) -> bool:
        """Whether this account's view can tell the item gone: one its own runs captured, or one any signed-in
        viewer may load. Another account's followers-only or direct status is missing from this account's
        contexts, and answers it 404, whether it still exists or not."""
        return known.account in (None, self.account.name) or known.visibility in SEEN_BY_ALL

    # -- threads -------------------------------------------------------------------------------------------
    def read_thread(self, status: dict[str, Any], status_ref: CaptureRef) -> Iterator[Observation]:
        """Observe a status and its whole thread; known replies missing from a complete thread are checked."""
        exchange, ancestors, descendants = self.fetch_context(status["id"])
        if exchange.status == 404:
            # Gone between two calls: keep what the listing showed; the next run's lookup proves the deletion.
            yield from self.observe_status(status, status_ref, None, None)
            return
        if ancestors:
            # Only a context read from the root lists the whole thread: read it from there.
            root = ancestors[0]
            root_key = self.key(str(root["id"]))
            if root_key not in self.threads_read:
                yield from self.read_thread(root, exchange.ref)
            for other in [*ancestors, *descendants]:
                yield from self.observe_status(other, exchange.ref, None, root_key)
            yield from self.observe_status(status, status_ref, None, root_key)
            return
        root_key = self.key(str(status["id"]))
        self.threads_read.add(root_key)
        yield from self.observe_status(status, status_ref, None, root_key)
        for other in descendants:
            yield from self.observe_status(other, exchange.ref, None, root_key)
        if len(descendants) >= CONTEXT_CAP:
            yield Notice(f"thread {root_key} has {len(descendants)} replies, the API's cap: absences not checked")
            return
        present = {self.key(str(s["id"])) for s in descendants} | {root_key}
        # Every archived account's items of the thread: another account of this instance may have captured them
        # (revision 1 weighed the account's own only).
        weighed = (
            self.state.thread_items(root_key)
            if self.revision >= UNDER_DELETED
            else self.state.known_items(thread_key=root_key)
        )
        missing = [
            known for known in weighed if not known.deleted and known.item_key not in present and self.weighable(known)
        ]
        yield from self.confirm_absent(missing, exchange)

    def fetch_context(self, status_id: str) -> tuple[Exchange, list[dict], list[dict]]:
        """A status' Context (ancestors oldest first, descendants in tree order); empty lists on a 404."""
        exchange = self.session.get(self.api(f"statuses/{status_id}/context"), ok=(200, 404))
        if exchange.status == 404:
            return exchange, [], []
        context = exchange.json()
        _expect(
            isinstance(context, dict)
            and isinstance(context.get("ancestors"), list)
            and isinstance(context.get("descendants"), list),
            exchange,
            "a Context with ancestors and descendants",
        )
        return exchange, context["ancestors"], context["descendants"]

    def confirm_absent(self, missing: list[Any], listing: Exchange) -> Iterator[Observation]:
        """Items absent from a complete listing: a direct lookup decides (404 = deleted, 200 = still there)."""
        yield from self.look_up(missing, {"absent_from": {"url": listing.url, "warc_record_id": listing.ref.record_id}})

    def look_up(self, items: list[Any], because: dict[str, Any]) -> Iterator[Observation]:
        """Each item by id: a 404 is a deletion (its evidence says `because`), an answer is observed."""
        for known in items:
            lookup = self.session.get(self.api(f"statuses/{known.native_id}"), ok=(200, 404))
            if lookup.status == 404:
                yield Deletion(known.item_key, self.lookup_evidence(lookup) | because, lookup.ref)
                continue
            status = lookup.json()
            _expect(isinstance(status, dict) and "id" in status, lookup, "a Status")
            yield from self.observe_status(
                status,
                lookup.ref,
                kind=known.kind,
                thread_key=known.thread_key,
                conversation_key=known.conversation_key,
            )

    def lookup_evidence(self, exchange: Exchange) -> dict[str, Any]:
        return {
            "method": "lookup",
            "url": exchange.url,
            "http_status": exchange.status,
            "response": exchange.body[:500].decode("utf-8", "replace"),
            "warc_file": exchange.ref.warc_file,
            "warc_record_id": exchange.ref.record_id,
            # Mastodon turns "not permitted to see" into the same 404 (StatusPolicy#show?, e.g. an author blocking
            # the archiving account): the evidence says so rather than let a hidden status pass for a removed one.
            "also_if": "another account wrote it and has blocked this one since: Mastodon answers a status the "
            "viewer may not see with the same 404",
        }

    # -- conversations -------------------------------------------------------------------------------------
    def fetch_conversations(self) -> Iterator[Observation]:
        """Direct conversations by last activity, down to those unchanged since the last complete pass.

        The early stop is safe only below the cursor of a pass that completed: an interrupted pass leaves
        older conversations unread, and the next run reads on until it gets past them.
        """
        done_upto = self.state.cursor(CONVERSATIONS_CURSOR)
        newest: int | None = None
        url: str | None = self.api("conversations")
        params: dict[str, Any] | None = {"limit": PAGE_LIMIT}
        trail = PageTrail(self.account.name, "the conversations listing")
        while url:
            trail.visit(url, params)
            exchange = self.session.get(url, params)
            page = exchange.json()
            _expect(isinstance(page, list), exchange, "a list of Conversation")
            for conversation in page:
                _expect(isinstance(conversation, dict) and "id" in conversation, exchange, "a Conversation")
                last = conversation.get("last_status")
                if not last:
                    continue
                last_id = int(last["id"])
                newest = max(newest or last_id, last_id)
                known = self.state.latest(self.key(str(last["id"])))
                unchanged = done_upto is not None and last_id <= int(done_upto) and known is not None
                if unchanged and (known.created_at or "") < self.window.recheck_since:
                    url = None  # the rest was archived by a complete pass and is out of the window
                    break
                yield from self.read_conversation(conversation, exchange)
            else:
                url, params = (exchange.links.get("next"), None) if page else (None, None)
        if newest is not None:
            yield CursorUpdate(CONVERSATIONS_CURSOR, str(max(newest, int(done_upto or 0))))

    def read_conversation(self, conversation: dict[str, Any], listing: Exchange) -> Iterator[Observation]:
        conv_key = f"mastodon:{self.host}:conversation:{conversation['id']}"
        last = conversation["last_status"]
        exchange, ancestors, descendants = self.fetch_context(last["id"])
        if exchange.status == 404:
            return
        thread = [*ancestors, last, *descendants]
        root_key = self.key(str(thread[0]["id"]))
        for status in ancestors:
            yield from self.observe_status(status, exchange.ref, "message", root_key, conv_key)
        yield from self.observe_status(last, listing.ref, "message", root_key, conv_key)
        for status in descendants:
            yield from self.observe_status(status, exchange.ref, "message", root_key, conv_key)
        present = {self.key(str(s["id"])) for s in thread}
        missing = [
            known
            for known in self.state.known_items(conversation_key=conv_key)
            if not known.deleted and known.item_key not in present
        ]
        yield from self.confirm_absent(missing, exchange)

    # -- one status ----------------------------------------------------------------------------------------
    def observe_status(
        self,
        status: dict[str, Any],
        ref: CaptureRef,
        kind: str | None,
        thread_key: str | None,
        conversation_key: str | None = None,
    ) -> Iterator[Observation]:
        """Yield a status' media, its earlier versions when it was edited since last seen, then the status."""
        key = self.key(str(status["id"]))
        if key in self.seen:
            return
        self.seen.add(key)
        parent = status.get("in_reply_to_id")
        # Deleting a status nulls its replies' in_reply_to_id (Mastodon's schema: on_delete nullify) and keeps
        # their in_reply_to_account_id: such a reply still answers the parent archived, which is no edit of it.
        orphan = not parent and status.get("in_reply_to_account_id") is not None
        if kind is None:
            kind = "message" if status.get("visibility") == "direct" else "comment" if parent or orphan else "post"
        known = self.state.latest(key)
        if known is not None:
            thread_key = thread_key or known.thread_key
            conversation_key = conversation_key or known.conversation_key
        if thread_key is None and not parent:
            thread_key = key
        parent_key = self.key(str(parent)) if parent else (known.parent_key if orphan and known else None)
        media = list((yield from self.fetch_media(status.get("media_attachments") or [])))
        if status.get("edited_at") and (known is None or _time(known.edited_at) != _time(status["edited_at"])):
            yield from self.fetch_history(status, known, kind, thread_key, conversation_key, parent_key)
        edited_at = status.get("edited_at")
        yield self.item(status, status, ref, kind, thread_key, conversation_key, parent_key, media, edited_at)

    def fetch_history(
        self,
        status: dict[str, Any],
        known: Any,
        kind: str,
        thread_key: str | None,
        conversation_key: str | None,
        parent_key: str | None,
    ) -> Iterator[Observation]:
        """The versions between what the archive holds and the current one, oldest first."""
        exchange = self.session.get(self.api(f"statuses/{status['id']}/history"))
        history = exchange.json()
        _expect(isinstance(history, list), exchange, "a list of StatusEdit")
        since = _time(known.edited_at or known.created_at) if known is not None else None
        current = _time(status["edited_at"])
        for index, entry in enumerate(history):
            _expect(isinstance(entry, dict) and "created_at" in entry, exchange, "a StatusEdit")
            at = _time(entry["created_at"])
            if at is None or (current is not None and at >= current):
                continue  # the current version is observed from the status itself
            if since is not None and at <= since:
                continue  # already archived
            media = list((yield from self.fetch_media(entry.get("media_attachments") or [])))
            yield self.item(
                status,
                entry,
                exchange.ref,
                kind,
                thread_key,
                conversation_key,
                parent_key,
                media,
                entry["created_at"] if index > 0 else None,
            )

    def fetch_media(self, attachments: list[dict[str, Any]]) -> Iterator[Observation]:
        """Fetch attachments into the WARC (once per URL); returns the normalised media list."""
        normalised = []
        for attachment in attachments:
            url = attachment.get("url") or attachment.get("remote_url")
            entry = {
                "id": attachment.get("id"),
                "type": attachment.get("type"),
                "url": url,
                "description": attachment.get("description"),
            }
            if url and self.account.media and url not in self.media_fetched and not self.state.has_media(url):
                self.media_fetched.add(url)
                # Media may live on another host (a CDN): never send the token there.
                keep_going = self.revision >= MEDIA_FAILURES_NOTED
                exchange = yield from fetch_media_file(self.session, url, keep_going)
                if exchange is not None and exchange.status == 200:
                    digest = exchange.body_sha256
                    entry["sha256"] = digest
                    yield MediaFile(url, digest, exchange.body_size, exchange.headers.get("Content-Type"), exchange.ref)
            normalised.append(entry)
        return normalised

    def item(
        self,
        status: dict[str, Any],
        version: dict[str, Any],
        ref: CaptureRef,
        kind: str,
        thread_key: str | None,
        conversation_key: str | None,
        parent_key: str | None,
        media: list[dict[str, Any]],
        edited_at: str | None,
    ) -> Item:
        author = version.get("account") or status.get("account") or {}
        return Item(
            item_key=self.key(str(status["id"])),
            platform="mastodon",
            kind=kind,
            native_id=str(status["id"]),
            source=ref,
            raw=version,
            text=html_to_text(version.get("content") or ""),
            created_at=status.get("created_at"),
            edited_at=edited_at,
            parent_key=parent_key,
            thread_key=thread_key,
            conversation_key=conversation_key,
            author_id=str(author["id"]) if author.get("id") is not None else None,
            author_handle=author.get("acct"),
            author_name=author.get("display_name"),
            url=status.get("url") or status.get("uri"),
            visibility=status.get("visibility"),
            media=tuple(media),
            extra={
                "spoiler_text": version.get("spoiler_text") or "",
                "sensitive": bool(version.get("sensitive")),
                "poll": [o.get("title") for o in (version.get("poll") or {}).get("options", [])],
            },
        )
