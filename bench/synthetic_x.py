"""A synthetic X API v2 on loopback for the scale benchmarks: any number of items, none of them held in memory.

Every post, reply and DM event is a pure function of (account, kind, index), so the server answers a
million-item account in a few kilobytes and the same bytes every time. Ids are X snowflakes: the creation
time in milliseconds since X's epoch, shifted 22 bits, with the account and the kind in the low bits, so
listings can be ordered and paged by id alone, as X's are.

Shapes follow docs.x.com as the demo's sample X server does (archiver/demo/x_server.py): timelines and DM
events page with `pagination_token`, search with `next_token`, 100 a page at most, newest first; `includes`
carry the users the expansions ask for; `tweet.fields` chooses the fields. Posts carry `entities` (urls with
their unwound preview, mentions, hashtags, annotations) so a post is about 1.5 KB of JSON, as real ones are.
Only what the archiver's X connector asks is routed: users/:id, users/:id/tweets, tweets/search/all
(conversation_id:<id>, start_time), tweets?ids=, dm_events.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.demo.loopback import LoopbackServer, Reply, Request
from archiver.demo.x_server import TWITTER_EPOCH_MS, format_base36, x_time

POST, REPLY, DM = 0, 1, 2
PAGE = 100

_WORDS = (
    "appointment clinic vaccine flu shot booster pharmacy refill parking hours weekend urgent care pediatrics "
    "cardiology oncology radiology mammogram screening wellness nutrition diabetes asthma allergy physical "
    "therapy telehealth portal billing insurance copay referral nurse doctor surgeon midwife maternity newborn "
    "visitor policy masks lobby cafeteria shuttle volunteer donation blood drive community health fair "
    "walk-in wait time emergency department ambulance discharge follow-up lab results imaging x-ray mri "
    "prescription dosage side effects recovery rehab stroke heart kidney liver skin dermatology dental vision "
    "hearing mental counseling support group caregiver seniors children teens families thanks grateful amazing "
    "staff kind helpful friendly rude slow fast clean crowded parking garage elevator signage website app "
    "schedule cancel reschedule reminder text call phone line hold minutes hours today tomorrow monday tuesday "
    "wednesday thursday friday saturday sunday morning afternoon evening night week month year season winter "
    "spring summer autumn holiday closed open new location downtown north south east west campus building "
    "floor room suite entrance exit sign-in check-in front desk receptionist survey feedback complaint praise"
)
WORDS = _WORDS.split()
_NAMES = (
    "Ana Ben Carla Dev Elif Femi Gus Hana Ivan Jo Kiran Lena Mo Nia Omar Pia Quinn Rosa Sam Tia Uma Vik Wen Yara "
    "Zoe Aiko Bruno Chen Dara Emil Farah Gio Hugo Ines Jun Kofi Lior Maya Noor Otto Priya Raul Sofia Teo Ugo"
)
NAMES = _NAMES.split()
TAGS = ("FluSeason", "HeartHealth", "WellnessWednesday", "CommunityHealth", "NurseAppreciation", "BloodDrive")


@dataclass(frozen=True)
class Shape:
    """How many items each account has, and when: posts spread evenly over `days` up to `end`."""

    accounts: int = 1
    posts: int = 100
    replies_per_post: int = 9
    dms: int = 100
    days: float = 365.0
    end: datetime = datetime(2026, 1, 1, tzinfo=UTC)

    @property
    def items_per_account(self) -> int:
        return self.posts * (1 + self.replies_per_post) + self.dms

    @property
    def items(self) -> int:
        return self.accounts * self.items_per_account

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)

    def step_ms(self, count: int) -> int:
        return max(1000 * 200, int(self.days * 86_400_000 / max(count, 1)))  # replies fit between two posts


def owner_id(account: int) -> str:
    return str(2_000_000 + account)


def token(account: int) -> str:
    return f"bench-x-token-{account:04d}-0123456789"


def person_id(n: int) -> str:
    return str(3_000_000 + n % 5000)


class Synthetic:
    """The items of a Shape, computed from their indices."""

    def __init__(self, shape: Shape):
        assert shape.accounts <= 1000 and shape.replies_per_post < 100
        self.shape = shape
        self.start_ms = int(shape.start.timestamp() * 1000)
        self.post_step = shape.step_ms(shape.posts)
        self.dm_step = shape.step_ms(shape.dms)

    # -- ids -----------------------------------------------------------------------------------------------
    def ms(self, account: int, kind: int, index: int, reply: int = 0) -> int:
        if kind == DM:
            return self.start_ms + index * self.dm_step + 500
        return self.start_ms + index * self.post_step + (reply * 1000 if kind == REPLY else 0)

    def id(self, account: int, kind: int, index: int, reply: int = 0) -> int:
        seq = account * 4 + kind
        return (self.ms(account, kind, index, reply) - TWITTER_EPOCH_MS) << 22 | seq

    def decode(self, item_id: int) -> tuple[int, int, int, int]:
        """(account, kind, index, reply) of an id this generator made."""
        seq = item_id & 4095
        account, kind = divmod(seq, 4)
        ms = (item_id >> 22) + TWITTER_EPOCH_MS
        if kind == DM:
            return account, kind, (ms - 500 - self.start_ms) // self.dm_step, 0
        index, rest = divmod(ms - self.start_ms, self.post_step)
        return account, kind, index, rest // 1000

    # -- objects -------------------------------------------------------------------------------------------
    def text(self, rng: random.Random, length: int) -> str:
        words = [rng.choice(WORDS) for _ in range(length)]
        if rng.random() < 0.15:  # a person named in one text in seven
            words.insert(rng.randrange(len(words)), rng.choice(NAMES))
        if rng.random() < 0.3:
            words.append(f"#{rng.choice(TAGS)}")
        words[0] = words[0].capitalize()
        return " ".join(words) + rng.choice((".", "!", "?"))

    def tweet(self, account: int, kind: int, index: int, reply: int = 0) -> dict[str, Any]:
        tweet_id = self.id(account, kind, index, reply)
        rng = random.Random(tweet_id)
        root = str(self.id(account, POST, index))
        author = owner_id(account) if kind == POST else person_id(index * 31 + reply)
        text = self.text(rng, rng.randint(18, 36))
        link = f"https://t.co/{rng.getrandbits(40):010x}"
        tweet: dict[str, Any] = {
            "id": str(tweet_id),
            "text": f"{text} {link}",
            "created_at": x_time(datetime.fromtimestamp(self.ms(account, kind, index, reply) / 1000, UTC)),
            "author_id": author,
            "conversation_id": root,
            "edit_history_tweet_ids": [str(tweet_id)],
            "edit_controls": {
                "is_edit_eligible": True,
                "editable_until": "2026-01-01T00:00:00.000Z",
                "edits_remaining": 5,
            },
            "entities": {
                "urls": [
                    {
                        "start": len(text) + 1,
                        "end": len(text) + 1 + len(link),
                        "url": link,
                        "expanded_url": f"https://clinic.example/news/{index}",
                        "display_url": f"clinic.example/news/{index}",
                        "status": 200,
                        "title": self.text(rng, 8),
                        "description": self.text(rng, 24),
                        "unwound_url": f"https://clinic.example/news/{index}?utm_source=x",
                    }
                ],
                "annotations": [
                    {
                        "start": 0,
                        "end": 5,
                        "probability": round(rng.random(), 4),
                        "type": "Place",
                        "normalized_text": "Clinic",
                    }
                ],
                "mentions": [{"start": 0, "end": 8, "username": f"user{author}", "id": author}],
            },
            "lang": "en",
            "possibly_sensitive": False,
            "reply_settings": "everyone",
        }
        if kind == REPLY:
            tweet["referenced_tweets"] = [{"type": "replied_to", "id": root}]
            tweet["in_reply_to_user_id"] = owner_id(account)
        return tweet

    def dm(self, account: int, index: int) -> dict[str, Any]:
        event_id = self.id(account, DM, index)
        rng = random.Random(event_id)
        other = person_id(index)
        sender = other if index % 2 == 0 else owner_id(account)
        return {
            "id": str(event_id),
            "event_type": "MessageCreate",
            "text": self.text(rng, rng.randint(12, 40)),
            "created_at": x_time(datetime.fromtimestamp(self.ms(account, DM, index) / 1000, UTC)),
            "dm_conversation_id": f"{other}-{owner_id(account)}",
            "sender_id": sender,
            "participant_ids": [other, owner_id(account)],
        }

    def user(self, user_id: str) -> dict[str, Any]:
        n = int(user_id)
        if n >= 3_000_000:
            return {"id": user_id, "name": f"{NAMES[n % len(NAMES)]} {n}", "username": f"user{user_id}"}
        return {"id": user_id, "name": f"Bench Clinic {n - 2_000_000}", "username": f"clinic{n - 2_000_000}"}


class SyntheticXServer(LoopbackServer):
    """Answers the X connector's calls for every account of a Shape (each with its own token); the requests
    are in `requests_log`, as on every loopback sample."""

    name = "synthetic-x"

    def __init__(self, shape: Shape, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.data = Synthetic(shape)
        self.shape = shape
        # each account's own user-context token: /2/dm_events answers the token's user
        self._tokens = {f"Bearer {token(a)}": a for a in range(shape.accounts)}

    def respond(self, request: Request) -> Reply:
        account = self._tokens.get(request.headers.get("authorization", ""))
        if account is None:
            return Reply.json(401, {"title": "Unauthorized", "status": 401, "detail": "Unauthorized"})
        status, body = self.route(request, account)
        headers = {"x-rate-limit-limit": "100000", "x-rate-limit-remaining": "99999", "x-rate-limit-reset": "0"}
        return Reply(status, json.dumps(body, separators=(",", ":")).encode(), headers)

    def route(self, request: Request, me: int) -> tuple[int, dict[str, Any]]:
        path, query = request.path, request.query
        fields = set(query.get("tweet.fields", "").split(",")) | {"id", "text", "edit_history_tweet_ids"}
        if m := re.fullmatch(r"/2/users/(\d+)", path):
            return 200, {"data": self.data.user(m[1])}
        if m := re.fullmatch(r"/2/users/(\d+)/tweets", path):
            account = int(m[1]) - 2_000_000
            first = self.shape.posts - 1
            if cursor := query.get("pagination_token"):
                first = self.data.decode(int(cursor, 36))[2] - 1
            last = 0
            if since := query.get("since_id"):
                last = self.data.decode(int(since))[2] + 1
            indices = range(first, max(last, first - PAGE + 1) - 1, -1)
            more = first - PAGE + 1 > last
            return 200, self.page([self.data.tweet(account, POST, i) for i in indices], fields, more)
        if path in ("/2/tweets/search/all", "/2/tweets/search/recent"):
            root = re.fullmatch(r"conversation_id:(\d+)", query.get("query", ""))
            if not root:
                return 400, {"errors": [{"message": "only conversation_id:<id>"}]}
            account, _, index, _ = self.data.decode(int(root[1]))
            replies = [self.data.tweet(account, REPLY, index, r) for r in range(self.shape.replies_per_post, 0, -1)]
            return 200, self.page(replies, fields, False)
        if path == "/2/tweets":
            found = []
            for value in query.get("ids", "").split(","):
                account, kind, index, reply = self.data.decode(int(value))
                found.append(self.data.tweet(account, kind, index, reply))
            return 200, self.page(found, fields, False)
        if path == "/2/dm_events":
            account = me
            first = self.shape.dms - 1
            if cursor := query.get("pagination_token"):
                first = self.data.decode(int(cursor, 36))[2] - 1
            indices = range(first, max(-1, first - PAGE), -1)
            return 200, self.page([self.data.dm(account, i) for i in indices], None, first - PAGE >= 0)
        return 404, {"title": "Not Found", "detail": f"no route for {path}"}

    def page(self, objects: list[dict[str, Any]], fields: set[str] | None, more: bool) -> dict:
        """A listing page; `more` adds a `next_token` (both paging parameters take it, as on X)."""
        if not objects:
            return {"meta": {"result_count": 0}}
        data = [{k: v for k, v in o.items() if k in fields} for o in objects] if fields else objects
        users = {o.get("author_id") or o.get("sender_id") for o in objects} | {
            p for o in objects for p in o.get("participant_ids", [])
        }
        meta: dict[str, Any] = {
            "result_count": len(objects),
            "newest_id": objects[0]["id"],
            "oldest_id": objects[-1]["id"],
        }
        if more:
            meta["next_token"] = format_base36(int(objects[-1]["id"]))
        return {"data": data, "includes": {"users": [self.data.user(u) for u in sorted(users) if u]}, "meta": meta}
