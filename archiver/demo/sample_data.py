"""The sample clinic: a fictional community clinic's Mastodon account and the public talking to it.

About 200 posts over 90 days, about 1,000 replies from some 150 people (a few nested, some answered by the
clinic), 50 direct-message conversations, some posts edited, about 30 images. A few replies and messages
carry PHI-like content (dates of birth, record numbers, phone numbers, diagnoses), as real ones do; all
names are invented. Deterministic for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .mastodon_server import MastodonState
from .png import make_png

FIRST = [
    "Ava",
    "Liam",
    "Maya",
    "Noah",
    "Zoe",
    "Eli",
    "Ruth",
    "Omar",
    "Lena",
    "Theo",
    "Iris",
    "Caleb",
    "Nora",
    "Felix",
    "Hana",
    "Jonah",
    "Mira",
    "Owen",
    "Priya",
    "Samir",
    "Tess",
    "Ulla",
    "Vik",
    "Wren",
    "Yusuf",
]
LAST = [
    "Marsh",
    "Okafor",
    "Lindqvist",
    "Tamura",
    "Brennan",
    "Castillo",
    "Duval",
    "Ekwueme",
    "Fairlie",
    "Grummet",
    "Holloway",
    "Ibarra",
    "Jorgensen",
    "Kowalczyk",
    "Lachance",
    "Moreau",
]
DOCTORS = ["Dr. Helen Arbogast", "Dr. Samuel Ndiaye", "Dr. Priya Raman", "Dr. Tomas Velde", "Nurse Kit Oduya"]
TOPICS = [
    ("Flu shots are available this week, no appointment needed. Walk-ins {day} 9am-noon.", True),
    ("Reminder: our {clinic} pharmacy now opens at 8am on {day}s.", False),
    ("Staff spotlight: meet {doctor}, who has served our community for {n} years.", True),
    ("Heat advisory today: drink water, check on neighbours, and know the signs of heat exhaustion.", False),
    ("Free blood pressure checks at the farmers market this {day}, 10am-2pm.", True),
    ("Our new pediatric wing opens on {day}. Thank you to everyone who made it possible!", True),
    ("Allergy season tip: keep windows closed in the morning when pollen counts peak.", False),
    ("We are hiring! Medical assistants and front desk staff, apply on our website.", False),
    ("Diabetes support group meets {day} evenings at 6pm in Room B. All welcome.", False),
    ("Holiday hours: closed {day}, urgent care stays open 24/7.", False),
    ("COVID-19 and RSV vaccines are both available for adults 60+. Ask at the front desk.", False),
    ("Thank you to the volunteers who packed 400 wellness kits for the food bank!", True),
    ("Sun safety: SPF 30+, reapply every two hours, and shade at midday.", False),
    ("Mental health matters. Our counselling service has new evening slots on {day}s.", False),
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
REPLIES = [
    "Thank you for sharing this!",
    "Is this open to people without insurance?",
    "Great news for the neighbourhood.",
    "Do I need to bring anything?",
    "What about kids under 5?",
    "Love this team, always so kind.",
    "Will there be parking nearby?",
    "Can I bring my elderly dad?",
    "Is there a waitlist?",
    "Shared with my family group.",
    "The front desk staff were wonderful last week.",
    "Any Spanish-speaking staff?",
    "How long is the usual wait?",
    "Finally! Been waiting for this.",
    "Does this cost anything?",
    "Please post this on the website too.",
    "Is the pharmacy open Sundays?",
    "Thanks, very helpful tip.",
    "Can you do this at the east side location too?",
    "Booked already, see you there!",
]
PHI_REPLIES = [
    "My mother was diagnosed with type 2 diabetes last month, can she join the group?",
    "I was there Tuesday, my MRN is 00482913, still waiting on my lab results",
    "Please call me back at 555-201-7734 about my son's asthma medication",
    "My DOB is 03/14/1985, I can't log in to the portal to see my biopsy results",
    "My husband had his chemo at your clinic in room 4 and the nurses were amazing",
    "I'm HIV positive and want to know if the counselling is confidential",
]
CLINIC_ANSWERS = [
    "Thanks for asking! Yes, everyone is welcome.",
    "Please call the front desk and we will help you.",
    "Great question, details are on our website.",
    "We are glad to hear it, thank you!",
    "Please don't share personal health details here; send us a direct message instead.",
]
DM_OPENERS = [
    "Hi, I need to reschedule my appointment on {day}.",
    "Can I get a refill of my lisinopril prescription?",
    "My name is {name}, DOB {dob}, I need a copy of my vaccination record.",
    "Is Dr. Raman taking new patients?",
    "I got a bill I don't understand, account number {acct}.",
    "My daughter {name} has a fever of 39C since yesterday, should we come in?",
    "Hello, what documents do I need for my first visit?",
    "My MRN is {mrn}, my test results aren't in the portal.",
]
DM_FOLLOWUPS = [
    "Thank you!",
    "OK, I will call tomorrow.",
    "My phone number is {phone}.",
    "That works, see you then.",
    "Can I come {day} instead?",
    "I also need a note for my employer.",
]
CLINIC_DM_ANSWERS = [
    "Thanks for reaching out. Please call us at 555-0100 so we can verify your identity.",
    "We have passed your message to the care team; someone will contact you today.",
    "We can help with that. For your privacy please use the patient portal for records.",
    "If this is an emergency, call 911 or go to the nearest emergency department.",
]


QUIET_HOUR = timedelta(hours=1)


@dataclass
class SampleFacts:
    clinic_id: str
    handle: str
    posts: int
    replies: int
    dm_conversations: int
    dm_messages: int
    media: int
    edited_post_ids: list[str] = field(default_factory=list)
    recent_post_ids: list[str] = field(default_factory=list)  # inside the 14-day re-check window, with replies
    public_account_ids: list[str] = field(default_factory=list)


@dataclass
class Mutation:
    new_reply_ids: list[str]
    new_post_id: str
    edited_post_id: str
    deleted_post_id: str
    deleted_reply_id: str
    deleted_reply_parent_id: str
    new_dm_id: str


def build_clinic_dataset(now: datetime, seed: int = 7) -> tuple[MastodonState, SampleFacts]:
    rng = random.Random(seed)
    # Nothing in the sample is newer than an hour ago: the second run's changes happen in that hour, so they
    # are newer than everything the first run saw, as on a real instance (ids grow with time).
    quiet_from = now - QUIET_HOUR
    state = MastodonState()
    clinic = state.add_account(
        "riverside",
        "Riverside Community Clinic (fictional)",
        note="Primary care, pediatrics and pharmacy for the Riverside neighbourhood. Not monitored 24/7.",
    )
    people = []
    for i in range(150):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        people.append(state.add_account(f"{name.split()[0].lower()}{i}", name))
    facts = SampleFacts(clinic["id"], "riverside", 0, 0, 0, 0, 0, public_account_ids=[p["id"] for p in people])

    start = now - timedelta(days=90)
    times = sorted(start + timedelta(minutes=rng.randrange(0, 90 * 24 * 60 - 120)) for _ in range(200))
    posts = []
    for index, at in enumerate(times):
        template, photo = rng.choice(TOPICS)
        text = template.format(
            day=rng.choice(DAYS), clinic="Riverside", doctor=rng.choice(DOCTORS), n=rng.randrange(3, 30)
        )
        media = []
        if photo and facts.media < 30 and rng.random() < 0.5:
            media = [(make_png(64, 48, seed * 1000 + index), f"Photo for: {text[:60]}")]
            facts.media += 1
        posts.append(state.add_status(clinic["id"], text, created_at=at, media=media))
    facts.posts = len(posts)

    # Replies: recent posts get more, so the re-check window has plenty to re-read.
    weights = [1 + (3 if (now - _parse(p["created_at"])).days < 14 else 0) for p in posts]
    replies = []
    while len(replies) < 1000:
        post = rng.choices(posts, weights)[0]
        parent = post
        siblings = [r for r in replies[-40:] if r["in_reply_to_id"] == post["id"]]
        if siblings and rng.random() < 0.15:
            parent = rng.choice(siblings)  # a nested reply
        at = _parse(parent["created_at"]) + timedelta(minutes=rng.randrange(5, 3000))
        if at >= quiet_from:
            continue
        text = rng.choice(PHI_REPLIES) if rng.random() < 0.03 else rng.choice(REPLIES)
        replies.append(state.add_status(rng.choice(people)["id"], text, in_reply_to_id=parent["id"], created_at=at))
        if rng.random() < 0.08:
            answer_at = at + timedelta(minutes=rng.randrange(10, 600))
            if answer_at < quiet_from:
                replies.append(
                    state.add_status(
                        clinic["id"], rng.choice(CLINIC_ANSWERS), in_reply_to_id=replies[-1]["id"], created_at=answer_at
                    )
                )
    facts.replies = len(replies)

    for _ in range(50):
        person = rng.choice(people)
        at = quiet_from - timedelta(days=rng.randrange(0, 60), minutes=rng.randrange(0, 1440))
        opener = rng.choice(DM_OPENERS).format(**_phi(rng, person))
        message = state.add_status(person["id"], f"@riverside {opener}", visibility="direct", created_at=at)
        facts.dm_conversations += 1
        facts.dm_messages += 1
        for turn in range(rng.randrange(1, 6)):
            at += timedelta(minutes=rng.randrange(5, 600))
            if at >= quiet_from:
                break
            if turn % 2 == 0:
                text = f"@{person['acct']} {rng.choice(CLINIC_DM_ANSWERS)}"
                message = state.add_status(
                    clinic["id"], text, visibility="direct", in_reply_to_id=message["id"], created_at=at
                )
            else:
                text = f"@riverside {rng.choice(DM_FOLLOWUPS).format(**_phi(rng, person))}"
                message = state.add_status(
                    person["id"], text, visibility="direct", in_reply_to_id=message["id"], created_at=at
                )
            facts.dm_messages += 1

    # Two older posts were edited before the archive ever saw them.
    for post in rng.sample(posts[:150], 2):
        state.edit_status(
            post["id"],
            _text(post) + " (Updated: times corrected.)",
            at=_parse(post["created_at"]) + timedelta(minutes=20),
        )
        facts.edited_post_ids.append(post["id"])
    recent = [p for p in posts if (now - _parse(p["created_at"])).days < 12 and p["replies_count"] >= 2]
    facts.recent_post_ids = [p["id"] for p in recent]
    return state, facts


def mutate_for_second_run(state: MastodonState, facts: SampleFacts, now: datetime, seed: int = 11) -> Mutation:
    """What happens between two nights: new replies, a new post and DM, an edit, a deleted post and reply."""
    rng = random.Random(seed)
    with state.lock:
        recent = [state.statuses[i] for i in facts.recent_post_ids if i in state.statuses]
        deleted_post, edited_post, reply_host = recent[0], recent[1], recent[2]
        reply = state.children(reply_host["id"])[0]
        people = facts.public_account_ids
        new_replies = []
        for i in range(10):
            target = recent[3 + i % max(1, len(recent) - 3)] if len(recent) > 3 else edited_post
            new_replies.append(
                state.add_status(
                    rng.choice(people),
                    rng.choice(REPLIES),
                    in_reply_to_id=target["id"],
                    created_at=now - timedelta(minutes=30 - i),
                )["id"]
            )
        new_post = state.add_status(
            facts.clinic_id, "Clinic closed early today for staff training.", created_at=now - timedelta(minutes=15)
        )
        state.edit_status(
            edited_post["id"], _text(edited_post) + " Correction: Room C, not Room B.", at=now - timedelta(minutes=12)
        )
        conversation = next(iter(state.conversations.values()))
        last = state.statuses[max(conversation["status_ids"], key=int)]
        dm = state.add_status(
            facts.clinic_id,
            "@" + last["account"]["acct"] + " Following up on your message.",
            visibility="direct",
            in_reply_to_id=last["id"],
            created_at=now - timedelta(minutes=5),
        )
        state.delete_status(deleted_post["id"])
        state.delete_status(reply["id"])
    return Mutation(
        new_replies, new_post["id"], edited_post["id"], deleted_post["id"], reply["id"], reply_host["id"], dm["id"]
    )


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _text(status: dict) -> str:
    return status["content"].removeprefix("<p>").removesuffix("</p>").replace("&amp;", "&")


def _phi(rng: random.Random, person: dict) -> dict[str, str]:
    return {
        "day": rng.choice(DAYS),
        "name": person["display_name"],
        "dob": f"{rng.randrange(1, 13):02d}/{rng.randrange(1, 29):02d}/{rng.randrange(1940, 2015)}",
        "acct": f"{rng.randrange(10**7, 10**8)}",
        "mrn": f"{rng.randrange(10**7, 10**8):08d}",
        "phone": f"555-{rng.randrange(200, 999)}-{rng.randrange(1000, 9999)}",
    }
