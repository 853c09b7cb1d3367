"""The sample clinic on Meta: its Facebook Page and Instagram professional account, for `archiver demo`.

About 30 Page posts (photos, an album, visitors' posts) with some 120 comments and replies two levels
deep, a hidden spam comment, 8 Messenger conversations (one with a photo of an insurance card); about 15
Instagram media (images, a video, carousels) with comments, replies, a hidden one, and 4 Instagram Direct
conversations. Names are invented; a few messages carry PHI-like content, as real ones do. Deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .graph_server import GraphState
from .png import make_png
from .sample_data import CLINIC_ANSWERS, CLINIC_DM_ANSWERS, DM_OPENERS, FIRST, LAST, REPLIES, TOPICS, _phi

QUIET_HOUR = timedelta(hours=1)  # nothing newer than an hour ago: the second run's changes come after it


@dataclass
class GraphFacts:
    page_id: str
    ig_user_id: str
    posts: int = 0
    comments: int = 0
    media: int = 0
    ig_comments: int = 0
    conversations: int = 0
    recent_post_ids: list[str] = field(default_factory=list)
    recent_comment_ids: list[str] = field(default_factory=list)
    recent_media_ids: list[str] = field(default_factory=list)
    recent_ig_reply_ids: list[str] = field(default_factory=list)


@dataclass
class GraphMutation:
    edited_post_id: str
    deleted_comment_id: str
    edited_media_id: str
    deleted_ig_reply_id: str
    new_comment_ids: list[str]


def _person(rng: random.Random, index: int) -> dict[str, str]:
    return {"name": f"{rng.choice(FIRST)} {rng.choice(LAST)}", "id": str(6100000000000000 + index)}


def build_graph_dataset(now: datetime, seed: int = 11) -> tuple[GraphState, GraphFacts]:
    rng = random.Random(seed)
    quiet_from = now - QUIET_HOUR
    state = GraphState()
    page = state.add_page("Riverside Community Clinic (fictional)", "riversideclinic")
    ig = state.add_ig_user("riverside.clinic", "Riverside Community Clinic (fictional)")
    clinic = {"name": page["name"], "id": page["id"]}
    facts = GraphFacts(page["id"], ig["id"])
    people = [_person(rng, i) for i in range(40)]

    posts = []
    for index in range(30):
        at = now - timedelta(days=60) + timedelta(days=2 * index, minutes=rng.randrange(0, 600))
        at = min(at, quiet_from - timedelta(hours=30))
        template, photo = rng.choice(TOPICS)
        text = template.format(day="Monday", clinic="Riverside", doctor="Dr. Helen Arbogast", n=12)
        photos = [(make_png(64, 48, 5000 + index), text[:60])] if photo else []
        if index == 25:
            photos = [(make_png(64, 48, 5100 + k), f"Open day, photo {k + 1}") for k in range(3)]
        author = rng.choice(people) if index % 9 == 4 else None
        posts.append(state.add_post(page, text, at, photos=photos, author=author))
    facts.posts = len(posts)
    for post in posts:
        created = datetime.fromisoformat(post["created_time"].replace("+0000", "+00:00"))
        thread = []
        for _ in range(rng.randrange(1, 8)):
            at = created + timedelta(minutes=rng.randrange(10, 1400))
            parent = rng.choice(thread) if thread and rng.random() < 0.3 else None
            who = clinic if parent is not None and rng.random() < 0.4 else rng.choice(people)
            text = rng.choice(CLINIC_ANSWERS) if who is clinic else rng.choice(REPLIES)
            thread.append(state.add_comment(post, who, text, at, parent=parent))
        facts.comments += len(thread)
        if (now - created).days < 12:
            facts.recent_post_ids.append(post["id"])
            facts.recent_comment_ids.extend(c["id"] for c in thread)
    spam_text = "Cheap meds, no prescription! DM me"
    state.add_comment(posts[-1], rng.choice(people), spam_text, quiet_from - timedelta(hours=4), hidden=True)
    facts.comments += 1

    for index in range(8):
        person = rng.choice(people)
        conversation = state.add_conversation(page, "messenger", {**person, "email": f"{person['id']}@facebook.com"})
        at = quiet_from - timedelta(days=rng.randrange(0, 30), minutes=rng.randrange(0, 1440))
        images = [(make_png(48, 32, 5200 + index), "insurance-card.png")] if index == 0 else None
        opener = rng.choice(DM_OPENERS).format(**_phi(rng, {"display_name": person["name"]}))
        state.add_message(conversation, person, opener, at, images=images)
        state.add_message(conversation, clinic, rng.choice(CLINIC_DM_ANSWERS), at + timedelta(minutes=30))
        facts.conversations += 1

    for index in range(15):
        at = min(now - timedelta(days=45) + timedelta(days=3 * index), quiet_from - timedelta(hours=30))
        template, _ = rng.choice(TOPICS)
        caption = template.format(day="Friday", clinic="Riverside", doctor="Nurse Kit Oduya", n=8)
        if index % 5 == 2:
            images = [make_png(64, 64, 5300 + index * 10 + k) for k in range(3)]
            media = state.add_ig_media(ig, caption, at, images)
        elif index == 7:
            media = state.add_ig_media(ig, caption, at, [make_png(64, 64, 5400)], video=b"\x00\x00\x00\x18ftypmp42demo")
        else:
            media = state.add_ig_media(ig, caption, at, [make_png(64, 64, 5300 + index * 10)])
        facts.media += 1
        for _ in range(rng.randrange(0, 4)):
            who = rng.choice(people)["name"].split()[0].lower() + str(rng.randrange(10, 99))
            comment = state.add_ig_comment(media, who, rng.choice(REPLIES), at + timedelta(hours=rng.randrange(1, 20)))
            facts.ig_comments += 1
            if rng.random() < 0.5:
                reply = state.add_ig_comment(
                    media, "riverside.clinic", rng.choice(CLINIC_ANSWERS), at + timedelta(hours=21), parent=comment
                )
                facts.ig_comments += 1
                if (now - at).days < 12:
                    facts.recent_ig_reply_ids.append(reply["id"])
        if (now - at).days < 12:
            facts.recent_media_ids.append(media["id"])
    spam_target = state.nodes[facts.recent_media_ids[-1]]
    spam_at = quiet_from - timedelta(hours=2)
    state.add_ig_comment(spam_target, "promo.deals", "Follow for free followers", spam_at, hidden=True)
    facts.ig_comments += 1
    for index in range(4):
        person = rng.choice(people)
        handle = person["name"].split()[0].lower() + ".ig"
        conversation = state.add_conversation(page, "instagram", {"username": handle, "id": str(17800000000 + index)})
        at = quiet_from - timedelta(days=index + 1)
        opener = rng.choice(DM_OPENERS).format(**_phi(rng, {"display_name": person["name"]}))
        state.add_message(conversation, {"username": handle, "id": str(17800000000 + index)}, opener, at)
        state.add_message(
            conversation,
            {"username": "riverside.clinic", "id": page["id"]},
            rng.choice(CLINIC_DM_ANSWERS),
            at + timedelta(minutes=45),
        )
        facts.conversations += 1
    return state, facts


def mutate_graph_for_second_run(state: GraphState, facts: GraphFacts, now: datetime) -> GraphMutation:
    """Between the demo's runs: a post edited, a comment deleted, a caption edited, a reply deleted, new comments."""
    edited = facts.recent_post_ids[0]
    post = state.nodes[edited]
    state.edit_post(edited, post["message"] + " (Updated: now also on Saturdays.)", now - timedelta(minutes=20))
    deleted_comment = facts.recent_comment_ids[0]
    state.delete(deleted_comment)
    media_id = facts.recent_media_ids[0]
    state.edit_caption(media_id, state.nodes[media_id]["caption"] + " #thankyou")
    deleted_reply = facts.recent_ig_reply_ids[0] if facts.recent_ig_reply_ids else ""
    if deleted_reply:
        state.delete(deleted_reply)
    target = state.nodes[facts.recent_post_ids[-1]]
    new = [
        state.add_comment(target, {"name": "Ava Marsh", "id": "6100000000000999"}, text, now - timedelta(minutes=m))
        for text, m in (("Is the pharmacy open late on Thursdays?", 15), ("Thank you for the reminder!", 10))
    ]
    return GraphMutation(edited, deleted_comment, media_id, deleted_reply, [c["id"] for c in new])
