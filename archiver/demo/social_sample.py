"""The sample clinic on X and on Bluesky: small hand-written datasets for the demo, and their changes.

X: a dozen posts over twelve days (so some threads are older than recent search reaches, which the run
summary says), replies and nested answers, an image with alt text, a quoted post, an edit chain, a direct
conversation with PHI-like content and an attachment, a group conversation someone joins and leaves.
Bluesky: posts, nested replies, a quote with an image, a chat conversation. The second run finds new
replies, a further edit (X) and a replaced record (Bluesky), and a deleted post and a deleted reply on each.
All names are invented; the same `now` gives the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .bluesky_server import BlueskyState
from .png import make_png
from .x_server import XState

X_POSTS = [
    "Flu shots are available at our walk-in clinic this week, no appointment needed.",
    "Reminder: the pharmacy closes at 6pm on Fridays.",
    "We are hiring two registered nurses for the evening shift. Apply on our website.",
    "Heat advisory today: drink water, check on elderly neighbours, and call us if you feel dizzy.",
    "Our new paediatric wing opens on Monday. Thank you to everyone who made it possible!",
    "Free blood pressure checks in the lobby every Wednesday morning.",
    "Parking lot B is closed for resurfacing until Thursday.",
    "Diabetes support group meets tonight at 7pm in room 204.",
    "COVID-19 boosters: updated vaccines are in. Book online or walk in.",
    "Please do not share personal health details in replies; send us a direct message instead.",
    "Our phone lines are back after this morning's outage. Thank you for your patience.",
    "Weekend hours: Saturday 9-1, Sunday closed.",
]
REPLIES = [
    "Do I need to bring my insurance card?",
    "Thank you, this is so helpful!",
    "Is the walk-in open on Sundays too?",
    "My mother (DOB 03/14/1948) was seen last week and the staff were wonderful.",
    "Can I get the vaccine if I had a cold last week?",
    "What time does the lab open?",
]
BSKY_POSTS = [
    "We are now on Bluesky! Follow us for clinic news and health tips.",
    "Flu season is here: walk-in flu shots all week.",
    "Our lab now opens at 7am on weekdays.",
    "Tips for staying hydrated in the heat, thread below.",
    "Volunteers wanted for our community health fair on the 12th.",
    "Please keep personal health details out of replies; message us instead.",
    "Thank you to our night-shift nurses!",
    "The pharmacy drive-through is open again.",
]


@dataclass
class XSample:
    state: XState
    clinic: dict
    people: list[dict]
    posts: list[dict]
    replies: list[dict] = field(default_factory=list)
    edited: dict = field(default_factory=dict)


def build_x_sample(now: datetime) -> XSample:
    state = XState()
    clinic = state.add_user("riversideclinic", "Riverside Community Clinic")
    people = [
        state.add_user("ava_marsh", "Ava Marsh"),
        state.add_user("omar.okafor", "Omar Okafor"),
        state.add_user("lena_t", "Lena Tamura"),
        state.add_user("felix_b", "Felix Brennan"),
    ]
    news = state.add_user("countyhealth", "County Health Department")
    sample = XSample(state, clinic, people, [])
    quoted = state.add_tweet(
        news["id"], "County-wide heat advisory issued for this week.", created_at=now - timedelta(days=4)
    )
    for index, text in enumerate(X_POSTS):
        created = now - timedelta(days=12 - index, hours=3)
        media = [(make_png(32, 24, 500 + index), "Clinic entrance with a flu shot sign")] if index == 0 else None
        post = state.add_tweet(
            clinic["id"], text, created_at=created, media=media, quote=quoted["id"] if index == 3 else None
        )
        sample.posts.append(post)
        for offset, person in enumerate(people[: index % 3 + 1]):
            reply = state.add_tweet(
                person["id"],
                REPLIES[(index + offset) % len(REPLIES)],
                created_at=created + timedelta(hours=2 + offset),
                reply_to=post["id"],
            )
            sample.replies.append(reply)
            if offset == 0 and index % 2 == 0:
                state.add_tweet(
                    clinic["id"],
                    "Thanks for asking! Please send us a direct message with the details.",
                    created_at=created + timedelta(hours=5),
                    reply_to=reply["id"],
                )
    sample.edited = state.edit_tweet(
        sample.posts[10]["id"],
        "Our phone lines are back after this morning's outage. Thank you for your patience! (updated 10:40)",
        at=now - timedelta(days=2, hours=2),
    )
    ann = people[0]
    direct = f"{clinic['id']}-{ann['id']}"
    state.add_dm(
        direct,
        ann["id"],
        text="Hi, my MRN is 00482913, can you move my appointment?",
        created_at=now - timedelta(days=3),
    )
    state.add_dm(
        direct,
        clinic["id"],
        text="Of course. Please fill in the attached form.",
        created_at=now - timedelta(days=3) + timedelta(hours=1),
        media=[(make_png(16, 16, 77), "Appointment change form")],
    )
    group = "1578398451921985538"
    state.add_dm(
        group,
        clinic["id"],
        event_type="ParticipantsJoin",
        participant_ids=[people[1]["id"]],
        created_at=now - timedelta(days=2),
    )
    state.add_dm(
        group,
        people[1]["id"],
        text="Thanks for adding me to the volunteers group.",
        created_at=now - timedelta(days=2) + timedelta(minutes=5),
    )
    state.add_dm(
        group,
        people[1]["id"],
        event_type="ParticipantsLeave",
        participant_ids=[people[1]["id"]],
        created_at=now - timedelta(days=1),
    )
    return sample


def mutate_x_sample(sample: XSample, now: datetime) -> str:
    """New replies, a further edit, a deleted post and a deleted reply; returns a one-line description."""
    state = sample.state
    newest = sample.posts[-1]
    state.add_tweet(
        sample.people[2]["id"],
        "Are you open on the holiday Monday?",
        created_at=now - timedelta(minutes=30),
        reply_to=newest["id"],
    )
    state.edit_tweet(
        sample.edited["id"],
        "Our phone lines are back after this morning's outage. Thank you for your patience! (final update)",
        at=now - timedelta(minutes=20),
    )
    deleted_post = sample.posts[9]
    deleted_reply = next(r for r in sample.replies if r["conversation_id"] == sample.posts[8]["id"])
    state.delete_tweet(deleted_post["id"])
    state.delete_tweet(deleted_reply["id"])
    return f"X: 1 new reply, post {sample.edited['id']} edited again, post {deleted_post['id']} and a reply deleted"


@dataclass
class BlueskySample:
    state: BlueskyState
    clinic_did: str
    people: list[str]
    posts: list[dict]
    replies: list[dict] = field(default_factory=list)
    convo_id: str = ""


def build_bluesky_sample(now: datetime, app_password: str) -> BlueskySample:
    state = BlueskyState()
    clinic = state.add_account("riverside-clinic.example.org", "Riverside Community Clinic", app_password)
    people = [
        state.add_account("maya.example.org", "Maya Castillo").did,
        state.add_account("theo.example.org", "Theo Duval").did,
        state.add_account("iris.example.org", "Iris Holloway").did,
    ]
    sample = BlueskySample(state, clinic.did, people, [])
    for index, text in enumerate(BSKY_POSTS):
        created = now - timedelta(days=8 - index, hours=1)
        images = [(make_png(24, 24, 900 + index), "Nurses at the health fair stand")] if index == 4 else None
        post = state.add_post(clinic.did, text, created_at=created, images=images)
        sample.posts.append(post)
        for offset, person in enumerate(people[: index % 3 + 1]):
            reply = state.add_post(
                person,
                REPLIES[(index + offset) % len(REPLIES)],
                created_at=created + timedelta(hours=1 + offset),
                reply_to=post["uri"],
            )
            sample.replies.append(reply)
            if offset == 0:
                state.add_post(
                    clinic.did,
                    "Thank you! Please message us for anything personal.",
                    created_at=created + timedelta(hours=4),
                    reply_to=reply["uri"],
                )
    state.add_post(
        people[1],
        "Great initiative from our local clinic",
        created_at=now - timedelta(days=2),
        quote=sample.posts[4]["uri"],
        images=[(make_png(20, 20, 950), "A poster for the community health fair")],
    )
    convo = state.add_convo([clinic.did, people[0]])
    state.add_message(
        convo,
        people[0],
        "Hello, I was diagnosed with type 2 diabetes last month, do you run a support group?",
        at=now - timedelta(days=1, hours=5),
    )
    state.add_message(
        convo,
        clinic.did,
        "We do: Tuesdays at 7pm, room 204. You are welcome to join.",
        at=now - timedelta(days=1, hours=4),
    )
    sample.convo_id = convo.id
    return sample


def mutate_bluesky_sample(sample: BlueskySample, now: datetime) -> str:
    """A new reply and message, a replaced record, a deleted post and a deleted reply."""
    state = sample.state
    state.add_post(
        sample.people[2],
        "See you at the fair!",
        created_at=now - timedelta(minutes=40),
        reply_to=sample.posts[4]["uri"],
    )
    state.replace_post(sample.posts[2]["uri"], "Our lab now opens at 7am on weekdays and 8am on Saturdays.")
    state.delete_post(sample.posts[6]["uri"])
    lone = next(
        r
        for r in sample.replies
        if r["value"]["reply"]["parent"]["uri"] == sample.posts[5]["uri"] and r["uri"].split("/")[2] != sample.people[0]
    )
    state.delete_post(lone["uri"])
    state.add_message(
        state.convos[sample.convo_id],
        sample.people[0],
        "Thank you, I will come on Tuesday.",
        at=now - timedelta(minutes=10),
    )
    return "Bluesky: 1 new reply and message, 1 post replaced, 1 post and 1 reply deleted"
