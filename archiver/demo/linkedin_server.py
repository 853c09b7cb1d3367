"""A LinkedIn Community Management API on loopback, in-process: the tests' and the demo's sample LinkedIn page.

It serves the versioned REST resources an organisation page archive reads, in their documented shapes:
`/rest/organizations/{id}`, the Posts finder `/rest/posts?q=author&author={urn}` (start/count paging with
`paging.links`), a post by URN `/rest/posts/{urn}` (404 once deleted), `/rest/socialActions/{urn}/comments`
(comments on a post or, given a comment URN, the replies to it) and `/rest/socialActions/{urn}/comments/{id}`,
and `/rest/images|videos|documents/{urn}` (a signed `downloadUrl` for the media bytes). Like LinkedIn it
requires a `LinkedIn-Version: YYYYMM` header and `X-Restli-Protocol-Version: 2.0.0`, refuses URNs that are
not URL-encoded, answers errors as `{"status", "code", "message"}` bodies, and, past the day's call budget
(`daily_limit`), a bare 429 with no rate-limit or Retry-After header. Faults can be injected as on the
sample Mastodon server. Standard library only; one lock guards the state.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from .loopback import Fault, LoopbackServer, Reply, Request

MEDIA_PREFIX = "/dms/image/"
SUPPORTED_VERSIONS = {f"{year}{month:02d}" for year in (2025, 2026) for month in range(1, 13)}


def ms(ts: datetime) -> int:
    """LinkedIn's times: milliseconds since the epoch."""
    return int(ts.timestamp() * 1000)


def encode_urn(urn: str) -> str:
    """A URN as it must appear in a URL (Rest.li 2.0): every reserved character percent-encoded."""
    return quote(urn, safe="")


class LinkedInState:
    """One or more organisation pages, their posts, comments and media. Tests change it while it serves."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.organizations: dict[str, dict[str, Any]] = {}
        self.posts: dict[str, dict[str, Any]] = {}  # post URN -> Post
        self.comments: dict[str, dict[str, Any]] = {}  # comment URN -> Comment
        self.children: dict[str, list[str]] = {}  # post or comment URN -> comment URNs, oldest first
        self.media: dict[str, dict[str, Any]] = {}  # image/video/document URN -> {"bytes", "type", ...}
        self._seq = 7100000000000000000
        self.base_url = "http://127.0.0.1"

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def add_organization(self, org_id: int, name: str, vanity: str) -> dict[str, Any]:
        with self.lock:
            org = {
                "id": org_id,
                "localizedName": name,
                "vanityName": vanity,
                "name": {"localized": {"en_US": name}, "preferredLocale": {"country": "US", "language": "en"}},
                "primaryOrganizationType": "NONE",
                "localizedWebsite": f"https://{vanity}.example",
            }
            self.organizations[str(org_id)] = org
            return org

    def add_media(self, data: bytes, kind: str = "image", content_type: str = "image/png") -> str:
        with self.lock:
            urn = f"urn:li:{kind}:D4E22AQ{self._next()}"
            self.media[urn] = {"bytes": data, "type": kind, "content_type": content_type}
            return urn

    def add_post(
        self,
        org_id: int,
        text: str,
        *,
        created_at: datetime,
        image: tuple[bytes, str] | None = None,
        article: dict[str, Any] | None = None,
        lifecycle_state: str = "PUBLISHED",
        visibility: str = "PUBLIC",
    ) -> dict[str, Any]:
        """A post as the Posts API returns it; `image` is (bytes, alt text), `article` {source, title, ...}."""
        with self.lock:
            urn = f"urn:li:share:{self._next()}"
            content: dict[str, Any] | None = None
            if image is not None:
                content = {"media": {"id": self.add_media(image[0]), "altText": image[1]}}
            elif article is not None:
                content = {"article": dict(article)}
            post = {
                "id": urn,
                "author": f"urn:li:organization:{org_id}",
                "commentary": text,
                "visibility": visibility,
                "distribution": {"feedDistribution": "MAIN_FEED", "thirdPartyDistributionChannels": []},
                "lifecycleState": lifecycle_state,
                "lifecycleStateInfo": {"isEditedByAuthor": False},
                "isReshareDisabledByAuthor": False,
                "createdAt": ms(created_at),
                "publishedAt": ms(created_at),
                "lastModifiedAt": ms(created_at),
            }
            if content is not None:
                post["content"] = content
            self.posts[urn] = post
            return post

    def edit_post(
        self, urn: str, text: str, *, at: datetime, lifecycle_state: str | None = None, by_author: bool = True
    ) -> dict[str, Any]:
        """A change of the post; `by_author` False is one LinkedIn made (isEditedByAuthor, once true, stays)."""
        with self.lock:
            post = self.posts[urn]
            post["commentary"] = text
            post["lastModifiedAt"] = ms(at)
            edited = by_author or post["lifecycleStateInfo"].get("isEditedByAuthor", False)
            post["lifecycleStateInfo"] = {"isEditedByAuthor": edited}
            if lifecycle_state:
                post["lifecycleState"] = lifecycle_state
            return post

    def delete_post(self, urn: str) -> None:
        with self.lock:
            del self.posts[urn]

    def add_comment(
        self, on: str, actor: str, text: str, *, created_at: datetime, image: bytes | None = None
    ) -> dict[str, Any]:
        """A comment on a post (`on` a post URN) or a reply to a comment (`on` a comment URN)."""
        with self.lock:
            parent = self.comments.get(on)
            post_urn = parent["object"] if parent else on
            activity = post_urn.rsplit(":", 1)[1]
            comment_id = str(self._next())
            urn = f"urn:li:comment:(urn:li:activity:{activity},{comment_id})"
            stamp = {"actor": actor, "time": ms(created_at)}
            comment: dict[str, Any] = {
                "actor": actor,
                "commentUrn": urn,
                "id": comment_id,
                "object": post_urn,
                "message": {"text": text, "attributes": []},
                "created": dict(stamp),
                "lastModified": dict(stamp),
                "likesSummary": {"totalLikes": 0, "likedByCurrentUser": False, "selectedLikes": []},
                "commentsSummary": {"totalFirstLevelComments": 0, "aggregatedTotalComments": 0, "selectedComments": []},
            }
            if parent is not None:
                comment["parentComment"] = on
            if image is not None:
                media_urn = self.add_media(image)
                comment["content"] = [{"type": "IMAGE", "entity": {"image": media_urn}}]
            self.comments[urn] = comment
            self.children.setdefault(on, []).append(urn)
            self._recount(on)
            return comment

    def edit_comment(self, urn: str, text: str, *, at: datetime) -> dict[str, Any]:
        with self.lock:
            comment = self.comments[urn]
            comment["message"] = {"text": text, "attributes": []}
            comment["lastModified"] = {"actor": comment["actor"], "time": ms(at)}
            return comment

    def delete_comment(self, urn: str) -> None:
        with self.lock:
            comment = self.comments.pop(urn)
            on = comment.get("parentComment") or comment["object"]
            self.children[on].remove(urn)
            self._recount(on)

    def _recount(self, on: str) -> None:
        if on in self.comments:
            count = len(self.children.get(on, []))
            self.comments[on]["commentsSummary"].update(
                {"totalFirstLevelComments": count, "aggregatedTotalComments": count}
            )

    # -- queries (under the lock) --------------------------------------------------------------------------
    def posts_by(self, author: str) -> list[dict[str, Any]]:
        own = [p for p in self.posts.values() if p["author"] == author]
        return sorted(own, key=lambda p: (p["lastModifiedAt"], p["id"]), reverse=True)


def _error(status: int, code: str, message: str, service_code: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if service_code is not None:
        body["serviceErrorCode"] = service_code
    return body


NOT_FOUND = (404, _error(404, "NOT_FOUND", "Not Found", 100))
THROTTLED = _error(
    429,
    "TOO_MANY_REQUESTS",
    "Resource level throttle APPLICATION DAY limit for calls to this resource is reached.",
    101,
)
VERSION_MISSING = _error(
    400,
    "VERSION_MISSING",
    "A version must be present. Please specify a version by adding the LinkedIn-Version header.",
)
NOT_ENCODED = _error(400, "ILLEGAL_ARGUMENT", "Syntax exception in path variables: URNs must be URL-encoded")


class SampleLinkedInServer(LoopbackServer):
    """Serves a LinkedInState on 127.0.0.1 from a daemon thread. Use as a context manager or start()/stop().

    `tokens` maps each accepted bearer token to the organisation ids it administers. `daily_limit` caps the
    API calls a token may make (None: no cap); past it every API call gets LinkedIn's bare 429.
    """

    name = "sample-linkedin"

    def __init__(
        self,
        state: LinkedInState,
        tokens: dict[str, set[int]],
        host: str = "127.0.0.1",
        port: int = 0,
        daily_limit: int | None = None,
    ):
        super().__init__(host, port)
        self.state = state
        self._tokens = tokens
        self.daily_limit = daily_limit
        self.calls: dict[str, int] = {}
        state.base_url = self.base_url

    def log_entry(self, method: str, path: str, query: str, headers: dict[str, str]) -> tuple:
        return (method, path, query, headers)  # the tests read the version and protocol headers sent

    def fault_body(self, fault: Fault) -> bytes:
        return json.dumps(
            THROTTLED if fault.status == 429 else _error(fault.status, "INJECTED", "Injected fault")
        ).encode()

    @staticmethod
    def _json(status: int, value: Any) -> Reply:
        return Reply(status, json.dumps(value).encode("utf-8"), content_type="application/json")

    def respond(self, request: Request) -> Reply:
        path, headers = request.path, request.headers
        if path.startswith(MEDIA_PREFIX):  # the CDN: signed URLs, no token
            with self.state.lock:
                media = self.state.media.get(unquote(path[len(MEDIA_PREFIX) :]))
            if media is None:
                return self._json(*NOT_FOUND)
            return Reply(200, media["bytes"], content_type=media["content_type"])
        if not path.startswith("/rest/"):
            return self._json(*NOT_FOUND)
        auth = headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        if token not in self._tokens:
            return self._json(401, _error(401, "INVALID_ACCESS_TOKEN", "Invalid access token", 65600))
        version = headers.get("linkedin-version")
        if not version:
            return self._json(400, VERSION_MISSING)
        if version not in SUPPORTED_VERSIONS:
            return self._json(426, _error(426, "NONEXISTENT_VERSION", f"Requested version {version} is not active"))
        if headers.get("x-restli-protocol-version") != "2.0.0":
            return self._json(400, _error(400, "ILLEGAL_ARGUMENT", "Rest.li protocol version 2.0.0 is required"))
        with self.state.lock:
            self.calls[token] = self.calls.get(token, 0) + 1
            if self.daily_limit is not None and self.calls[token] > self.daily_limit:
                return self._json(429, THROTTLED)  # no Retry-After, no rate-limit headers: LinkedIn's way
            status, value = self._route(path, request.raw_query, self._tokens[token])
        return self._json(status, value)

    def _paged(self, path: str, query: dict[str, str], elements: list[Any], raw_query: str) -> dict[str, Any]:
        try:
            start = max(0, int(query.get("start", "0")))
            count = max(1, min(int(query.get("count", "10")), 100))
        except ValueError:
            start, count = 0, 10
        page = elements[start : start + count]
        links = []
        if start + count < len(elements):
            rest = re.sub(r"(^|&)(start|count)=[^&]*", "", raw_query).lstrip("&")
            links.append(
                {
                    "type": "application/json",
                    "rel": "next",
                    "href": f"{path}?{rest + '&' if rest else ''}start={start + count}&count={count}",
                }
            )
        return {"paging": {"start": start, "count": count, "links": links, "total": len(elements)}, "elements": page}

    def _route(self, path: str, raw_query: str, orgs: set[int]) -> tuple[int, Any]:
        state = self.state
        query = {k: v[-1] for k, v in parse_qs(raw_query).items()}
        if m := re.fullmatch(r"/rest/organizations/(\d+)", path):
            org = state.organizations.get(m[1])
            if org is None or int(m[1]) not in orgs:
                return 403, _error(403, "ACCESS_DENIED", f"Not enough permissions to access: organizations/{m[1]}", 100)
            return 200, org
        if path == "/rest/posts":
            if query.get("q") != "author" or "author" not in query:
                return 400, _error(400, "ILLEGAL_ARGUMENT", "Missing finder parameter q=author with author")
            if not re.search(r"(^|&)author=urn%3Ali%3Aorganization%3A\d+(&|$)", raw_query):
                return 400, NOT_ENCODED
            org_id = int(query["author"].rsplit(":", 1)[1])
            if org_id not in orgs:
                return 403, _error(403, "ACCESS_DENIED", "Not enough permissions to access: posts.FINDER-author", 100)
            return 200, self._paged(path, query, state.posts_by(query["author"]), raw_query)
        resources = r"/rest/(posts|images|videos|documents|socialActions)/([^/]+)(/comments)?(?:/([^/]+))?"
        if m := re.fullmatch(resources, path):
            resource, encoded, comments, comment_id = m[1], m[2], m[3], m[4]
            if ":" in encoded or "(" in encoded:
                return 400, NOT_ENCODED
            urn = unquote(encoded)
            if resource == "posts" and not comments:
                post = state.posts.get(urn)
                return (200, post) if post else NOT_FOUND
            if resource in ("images", "videos", "documents") and not comments:
                media = state.media.get(urn)
                if media is None:
                    return NOT_FOUND
                expires = ms(datetime.now(UTC)) + 3_600_000
                signed = f"{self.base_url}{MEDIA_PREFIX}{encode_urn(urn)}?e={expires}&v=beta&t=s{expires % 9973}"
                return 200, {
                    "id": urn,
                    "status": "AVAILABLE",
                    "downloadUrl": signed,
                    "downloadUrlExpiresAt": expires,
                    "owner": next(iter(f"urn:li:organization:{o}" for o in sorted(orgs)), None),
                }
            if resource == "socialActions" and comments:
                if urn not in state.posts and urn not in state.comments:
                    return NOT_FOUND
                if comment_id is not None:
                    under = [state.comments[c] for c in state.children.get(urn, [])]
                    found = next((c for c in under if c["id"] == comment_id), None)
                    return (200, found) if found else NOT_FOUND
                listed = [state.comments[c] for c in state.children.get(urn, [])]
                return 200, self._paged(path, query, listed, raw_query)
        return NOT_FOUND
