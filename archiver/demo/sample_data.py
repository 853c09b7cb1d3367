"""The sample clinic: a fictional community clinic's Mastodon account and the public talking to it.

About 200 posts over 90 days (some with photos and alt text), about 1,000 replies from some 150 people
(a few nested, some answered by the clinic, many on the last two weeks' posts), 50 direct-message
conversations, two posts edited. A few replies and messages carry PHI-like content (dates of birth, record
numbers, phone numbers, diagnoses), as real ones do: that is what the archive must hold and protect. All
names are invented. Deterministic for a seed; phrases are combined from short lists to stay varied.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .mastodon_server import MastodonState
from .png import make_png

HANDLE = "riverside"
CLINIC_NAME = "Riverside Community Clinic"
CLINIC_BIO = (
    "Primary care, pediatrics, counselling and a pharmacy for the Riverside neighbourhood (fictional).\n\n"
    "This account is not monitored 24/7. In an emergency call 911. Please don't post health details here."
)
# fmt: off
FIRST = (
    "Ava", "Liam", "Maya", "Noah", "Zoe", "Eli", "Ruth", "Omar", "Lena", "Theo", "Iris", "Caleb", "Nora", "Felix",
    "Hana", "Jonah", "Mira", "Owen", "Priya", "Samir", "Tess", "Ulla", "Viktor", "Wren", "Yusuf", "Ada", "Bram",
    "Cleo", "Dario", "Esme",
)
LAST = (
    "Marsh", "Okafor", "Lindqvist", "Tamura", "Brennan", "Castillo", "Duval", "Ekwueme", "Fairlie", "Grummet",
    "Holloway", "Ibarra", "Jorgensen", "Kowalczyk", "Lachance", "Moreau", "Nakashima", "Oyelaran", "Pettigrew",
    "Quintero", "Rasmussen", "Szabo", "Thorne", "Underhill", "Varga",
)
# fmt: on
DOCTORS = ("Dr. Helen Arbogast", "Dr. Samuel Ndiaye", "Dr. Priya Raman", "Dr. Tomas Velde", "Nurse Kit Oduya")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
TIMES = ("9am-noon", "10am-2pm", "1pm-5pm", "8am-11am", "3pm-7pm")
CONDITIONS = (
    "type 2 diabetes",
    "breast cancer",
    "early-onset Alzheimer's",
    "COPD",
    "hepatitis C",
    "depression",
)
MEDICATIONS = ("lisinopril", "metformin", "sertraline", "albuterol", "levothyroxine")

# (template, alt texts of its photos: empty when the post never has one)
TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Flu shots are here! Walk-ins welcome {day} {time}, no appointment needed. Bring your insurance card "
        "if you have one. #FluSeason",
        (
            "A nurse in blue scrubs gives a flu shot to an older man seated in a clinic chair.",
            "A hand-written sign reading 'Flu shots today, walk-ins welcome' next to a tray of bandages.",
        ),
    ),
    (
        "Staff spotlight: meet {doctor}, who has cared for Riverside families for {years} years. Say hi at "
        "your next visit! #StaffSpotlight",
        ("{doctor} smiling in a white coat in front of the clinic's painted river mural.",),
    ),
    ("Reminder: our pharmacy now opens at 8am on {day}s.", ()),
    (
        "Free blood pressure checks at the Riverside farmers market this {day}, {time}. #HeartHealth",
        ("Volunteers at a green tented booth measuring a woman's blood pressure at an outdoor market.",),
    ),
    (
        "Heat advisory today. Drink water, check on older neighbours and know the signs of heat exhaustion: "
        "dizziness, nausea, heavy sweating.",
        (),
    ),
    (
        "Diabetes support group meets {day} evenings at 6pm in Room {room}. Family members welcome. #Diabetes",
        (),
    ),
    ("Holiday hours: we are closed {day}. Urgent care stays open 24/7.", ()),
    (
        "Allergy season tip: keep windows closed in the early morning when pollen counts peak, and shower "
        "after time outdoors.",
        (),
    ),
    (
        "We're hiring medical assistants and front desk staff. Apply on our website or ask at the desk. #Jobs",
        (),
    ),
    (
        "COVID-19 and RSV vaccines are available for adults 60+. Ask at the front desk or book online. #Vaccines",
        (),
    ),
    (
        "Thank you to the {years} volunteers who packed wellness kits for the Riverside food bank on {day}!",
        ("Volunteers in green T-shirts packing boxes of soap and toothbrushes on long folding tables.",),
    ),
    ("Sun safety: SPF 30+, reapply every two hours and find shade around midday.", ()),
    (
        "Our counselling service has new evening slots on {day}s. Mental health care is health care. #MentalHealth",
        (),
    ),
    (
        "Back-to-school checkups: book now, {day} slots fill quickly. Bring your child's vaccination record. "
        "#Pediatrics",
        ("A pediatrician listens to a young girl's heartbeat while she holds a stuffed bear.",),
    ),
    (
        "Community health fair this {day}, {time}, in the library parking lot: screenings, cooking demos and "
        "a bouncy castle.",
        (
            "Families walking between white tents at an outdoor health fair on a sunny day.",
            "A chef in an apron demonstrates a vegetable stir-fry to a small crowd.",
        ),
    ),
    ("Our phones are down this morning. Please use the patient portal or come to the front desk.", ()),
    (
        "Did you know? You can request prescription refills through the patient portal, no phone call needed.",
        (),
    ),
    (
        "Our new pediatric wing opens on {day}. Thank you to everyone who made it possible!",
        ("A bright waiting room with low blue chairs, a play corner and a fish tank.",),
    ),
)
QUESTIONS = (
    "Is this open to people without insurance?",
    "Do I need an appointment or can I just walk in?",
    "What about kids under 5?",
    "Is there parking nearby?",
    "Can I bring my elderly dad?",
    "Is there Spanish-speaking staff?",
    "How long is the usual wait?",
    "Does this cost anything?",
    "Is the pharmacy open on Sundays?",
    "Can you do this at the east side location too?",
    "Is the building wheelchair accessible?",
    "Can I book this online?",
    "Do you take Medicaid?",
    "Is this for adults only?",
)
QUESTION_OPENERS = ("", "", "Hi! ", "Quick question: ", "Hello, ")
PRAISE = (
    "Thank you for sharing this!",
    "Great news for the neighbourhood.",
    "Love this team, always so kind.",
    "Shared with my family group.",
    "The front desk staff were wonderful last week.",
    "Finally, been waiting for this!",
    "Booked already, see you there!",
    "Very helpful tip, thanks.",
    "So grateful for this clinic.",
    "Best clinic in town, no contest.",
)
PRAISE_CLOSERS = ("", "", "", " 🙏", " Thanks!", " 💙")
COMPLAINTS = (
    "I've been on hold for 40 minutes this morning.",
    "The portal keeps logging me out.",
    "Parking was a nightmare on Tuesday.",
    "Why does it take three weeks to get an appointment?",
)
PEER_REPLIES = (
    "Same question here!",
    "They do, I went last month.",
    "Yes, there's a lot behind the library.",
    "+1",
    "It was free for me.",
    "Call early, the line gets long after 10.",
)
CLINIC_ANSWERS = (
    "Yes, everyone is welcome regardless of insurance.",
    "Please call the front desk at 555-0100 and we'll help you.",
    "Great question! Details are on our website.",
    "Thank you, we'll pass that on to the team!",
    "Please don't share personal health details here; send us a direct message instead.",
    "We're sorry about the wait. We're adding phone staff this month.",
)
THANKS = ("Thank you!", "Perfect, thanks for the quick answer.", "Got it, thanks.")
PHI_REPLIES = (
    "My mother was diagnosed with {condition} last month, can she join the group?",
    "I was in on {day}, my MRN is 00482913, still waiting on my lab results",
    "Please call me back at {phone} about my son's asthma inhaler",
    "My DOB is {dob}, I can't log in to the portal to see my biopsy results",
    "My husband finished chemo here in the spring and the nurses were amazing",
    "I'm on {medication} and my pharmacy says the refill was never sent",
)
DM_OPENERS = (
    "Hi, I need to reschedule my appointment on {day}.",
    "Can I get a refill of my {medication} prescription?",
    "My name is {name}, DOB {dob}, I need a copy of my vaccination record.",
    "Is Dr. Raman taking new patients?",
    "I got a bill I don't understand, account number {acct}.",
    "My daughter has had a fever of 39C since yesterday, should we come in?",
    "Hello, what documents do I need for my first visit?",
    "My MRN is {mrn}, my test results aren't in the portal.",
    "I was just diagnosed with {condition} and I'm scared. Can I talk to someone?",
)
DM_FOLLOWUPS = (
    "Thank you!",
    "OK, I will call tomorrow.",
    "My phone number is {phone}.",
    "That works, see you then.",
    "Can I come {day} instead?",
    "I also need a note for my employer.",
)
# A direct message written from one of these templates carries PHI-like content.
PHI_MARKERS = ("{dob}", "{mrn}", "{acct}", "{condition}", "{phone}", "{medication}", "fever")
CLINIC_DM_ANSWERS = (
    "Thanks for reaching out. Please call us at 555-0100 so we can verify your identity.",
    "We have passed your message to the care team; someone will contact you today.",
    "We can help with that. For your privacy please use the patient portal for records.",
    "If this is an emergency, call 911 or go to the nearest emergency department.",
)


@dataclass
class SampleFacts:
    """What the dataset holds, for the demo's summary and the tests' expectations."""

    clinic_id: str
    handle: str
    posts: int = 0
    replies: int = 0  # public replies, the clinic's answers included
    dm_conversations: int = 0
    dm_messages: int = 0
    media: int = 0
    edited_post_ids: list[str] = field(default_factory=list)
    recent_post_ids: list[str] = field(default_factory=list)  # inside the 14-day re-check window, with replies
    phi_status_ids: list[str] = field(default_factory=list)  # replies and messages with PHI-like content
    public_account_ids: list[str] = field(default_factory=list)


@dataclass
class Mutation:
    """What mutate_for_second_run changed, by status id."""

    new_reply_ids: list[str]
    new_post_id: str
    edited_post_id: str
    deleted_post_id: str
    deleted_reply_id: str
    deleted_reply_parent_id: str
    new_dm_id: str


def build_clinic_dataset(now: datetime, seed: int = 7) -> tuple[MastodonState, SampleFacts]:
    """The Riverside clinic as of `now`: same seed and `now`, same statuses and ids."""
    rng = random.Random(seed)
    state = MastodonState()
    clinic = state.add_account(
        HANDLE,
        CLINIC_NAME,
        CLINIC_BIO,
        now - timedelta(days=900),
        followers_count=2417,
        fields=[("Website", "https://riverside-clinic.example"), ("Phone", "555-0100")],
    )
    people = _people(state, rng, now)
    facts = SampleFacts(clinic["id"], HANDLE, public_account_ids=[p["id"] for p in people])
    posts = _posts(state, rng, now, clinic, facts, seed)
    _replies(state, rng, now, clinic, people, posts, facts)
    _conversations(state, rng, now, clinic, people, facts)
    # Two older posts were edited before the archive ever saw them.
    for post in rng.sample(posts[:150], 2):
        text = state.sources[post["id"]]["text"] + "\n\nUpdate: times corrected, see our website."
        state.edit_status(post["id"], text, at=_parse(post["created_at"]) + timedelta(minutes=rng.randrange(5, 90)))
        facts.edited_post_ids.append(post["id"])
    recent = [p for p in posts if now - _parse(p["created_at"]) < timedelta(days=12) and p["replies_count"] >= 2]
    facts.recent_post_ids = [p["id"] for p in recent]
    return state, facts


def _people(state: MastodonState, rng: random.Random, now: datetime) -> list[dict]:
    people = []
    for first, last in rng.sample([(f, ln) for f in FIRST for ln in LAST], 150):
        style = rng.randrange(4)
        username = (
            f"{first}{last}",
            f"{first}_{last[0]}",
            f"{first[0]}{last}{rng.randrange(10, 99)}",
            first,
        )[style]
        username = username.lower()
        while state.account_by_username(username):
            username += str(rng.randrange(10))
        display = f"{first} {last}" if style != 3 else f"{first} {last[0]}."
        joined = now - timedelta(days=rng.randrange(30, 2000))
        people.append(state.add_account(username, display, created_at=joined, followers_count=rng.randrange(300)))
    return people


def _posts(
    state: MastodonState, rng: random.Random, now: datetime, clinic: dict, facts: SampleFacts, seed: int
) -> list[dict]:
    start = now - timedelta(days=90)
    times = sorted(start + timedelta(minutes=rng.randrange(0, 90 * 24 * 60 - 180)) for _ in range(200))
    posts = []
    for index, at in enumerate(times):
        template, alts = rng.choice(TOPICS)
        slots = {
            "day": rng.choice(DAYS),
            "time": rng.choice(TIMES),
            "doctor": rng.choice(DOCTORS),
            "years": rng.randrange(3, 30),
            "room": rng.choice("ABC"),
        }
        media = []
        if alts and facts.media < 30 and rng.random() < 0.45:
            count = 2 if len(alts) > 1 and rng.random() < 0.3 else 1
            for n, alt in enumerate(rng.sample(alts, count)):
                image = make_png(64, 48, seed * 10_000 + index * 10 + n)
                media.append((image, alt.format(**slots)))
            facts.media += count
        posts.append(state.add_status(clinic["id"], template.format(**slots), created_at=at, media=media))
    facts.posts = len(posts)
    return posts


def _replies(
    state: MastodonState,
    rng: random.Random,
    now: datetime,
    clinic: dict,
    people: list[dict],
    posts: list[dict],
    facts: SampleFacts,
) -> None:
    """About 1,000 public replies, weighted to the last two weeks; some nested, some answered by the clinic."""
    latest = now - timedelta(minutes=10)
    weights = [5 if now - _parse(p["created_at"]) < timedelta(days=14) else 1 for p in posts]
    by_post: dict[str, list[dict]] = {}

    def reply(author: dict, parent: dict, text: str, at: datetime) -> dict:
        status = state.add_status(
            author["id"],
            f"@{parent['account']['username']} {text}",
            in_reply_to_id=parent["id"],
            created_at=at,
        )
        facts.replies += 1
        return status

    while facts.replies < 1000:
        post = rng.choices(posts, weights)[0]
        author = rng.choice(people)
        earlier = by_post.setdefault(post["id"], [])
        if earlier and rng.random() < 0.12:  # a reply to another person's reply
            parent = rng.choice(earlier)
            text = rng.choice(PEER_REPLIES)
        else:
            parent = post
            text = _comment(rng)
        at = _parse(parent["created_at"]) + timedelta(minutes=rng.randrange(3, 2 * 24 * 60))
        if at >= latest or parent["account"]["id"] == author["id"]:
            continue
        phi = rng.random() < 0.03
        if phi:
            text = rng.choice(PHI_REPLIES).format(**_phi(rng, author))
        status = reply(author, parent, text, at)
        earlier.append(status)
        if phi:
            facts.phi_status_ids.append(status["id"])
        if rng.random() < 0.1:  # the clinic answers, and sometimes gets thanked
            answer_at = at + timedelta(minutes=rng.randrange(10, 600))
            if answer_at < latest:
                answer = reply(clinic, status, rng.choice(CLINIC_ANSWERS), answer_at)
                thanks_at = answer_at + timedelta(minutes=rng.randrange(5, 300))
                if rng.random() < 0.3 and thanks_at < latest:
                    reply(author, answer, rng.choice(THANKS), thanks_at)


def _comment(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.45:
        return rng.choice(QUESTION_OPENERS) + rng.choice(QUESTIONS)
    if kind < 0.92:
        return rng.choice(PRAISE) + rng.choice(PRAISE_CLOSERS)
    return rng.choice(COMPLAINTS)


def _conversations(
    state: MastodonState,
    rng: random.Random,
    now: datetime,
    clinic: dict,
    people: list[dict],
    facts: SampleFacts,
) -> None:
    """50 direct-message threads of 2-6 messages, opened by a person and answered by the clinic."""
    for person in rng.sample(people, 50):
        gaps = [timedelta(minutes=rng.randrange(5, 600)) for _ in range(rng.randrange(1, 6))]
        at = now - timedelta(days=rng.randrange(0, 60), minutes=rng.randrange(20, 1440)) - sum(gaps, timedelta())
        phi = _phi(rng, person)
        templates = [rng.choice(DM_OPENERS)]
        for turn in range(len(gaps)):
            templates.append(rng.choice(CLINIC_DM_ANSWERS if turn % 2 == 0 else DM_FOLLOWUPS))
        messages = []
        for turn, template in enumerate(templates):
            at += gaps[turn - 1] if turn else timedelta()
            messages.append((clinic["id"] if turn % 2 else person["id"], template.format(**phi), at))
        conversation = state.add_conversation(person["id"], messages)
        facts.dm_conversations += 1
        facts.dm_messages += len(messages)
        last = conversation["last_status"]
        thread = [*state.context(last["id"])["ancestors"], last]
        phi_ids = [s["id"] for s, t in zip(thread, templates, strict=True) if any(k in t for k in PHI_MARKERS)]
        facts.phi_status_ids.extend(phi_ids)


def mutate_for_second_run(state: MastodonState, facts: SampleFacts, now: datetime, seed: int = 11) -> Mutation:
    """What happens between two nights: new replies, a new post and DM, an edit, a deleted post and reply."""
    rng = random.Random(seed)
    with state.lock:
        recent = [state.statuses[i] for i in facts.recent_post_ids if i in state.statuses]
        if len(recent) < 4:
            raise ValueError("the dataset needs at least four recent posts with replies")
        deleted_post, edited_post, reply_host, *others = recent
        deleted_reply = state.children(reply_host["id"])[0]
        people = [state.accounts[i] for i in facts.public_account_ids]
        new_replies = []
        for i in range(10):
            target = others[i % len(others)]
            text = f"@{HANDLE} {_comment(rng)}"
            at = now - timedelta(minutes=40 - i)
            new_replies.append(
                state.add_status(rng.choice(people)["id"], text, in_reply_to_id=target["id"], created_at=at)
            )
        new_post = state.add_status(
            facts.clinic_id,
            "The clinic closes at 3pm today for staff training. Urgent care stays open.",
            created_at=now - timedelta(minutes=15),
        )
        text = state.sources[edited_post["id"]]["text"] + "\n\nCorrection: Room C, not Room B."
        state.edit_status(edited_post["id"], text, at=now - timedelta(minutes=12))
        conversation_id = rng.choice(sorted(state.conversations, key=int))
        dm = state.reply_in_conversation(
            conversation_id,
            facts.clinic_id,
            "Following up on your message: did the care team reach you?",
            created_at=now - timedelta(minutes=5),
        )
        state.delete_status(deleted_post["id"])
        state.delete_status(deleted_reply["id"])
    return Mutation(
        [s["id"] for s in new_replies],
        new_post["id"],
        edited_post["id"],
        deleted_post["id"],
        deleted_reply["id"],
        reply_host["id"],
        dm["id"],
    )


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _phi(rng: random.Random, person: dict) -> dict[str, str]:
    """Made-up identifiers in the shapes people really type them."""
    return {
        "day": rng.choice(DAYS),
        "name": person["display_name"],
        "dob": f"{rng.randrange(1, 13):02d}/{rng.randrange(1, 29):02d}/{rng.randrange(1940, 2015)}",
        "acct": f"{rng.randrange(10**7, 10**8)}",
        "mrn": f"{rng.randrange(10**7, 10**8):08d}",
        "phone": f"555-{rng.randrange(200, 999)}-{rng.randrange(1000, 9999)}",
        "condition": rng.choice(CONDITIONS),
        "medication": rng.choice(MEDICATIONS),
    }
