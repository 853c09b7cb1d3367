"""The sample clinic's LinkedIn page and YouTube channel, and what changes on them before the demo's second run.

LinkedIn: 24 posts over 60 days (some with a photo, one linking an article), comments from the public and a
few answers from the page nested under them. YouTube: 8 videos over 60 days with comment threads, replies
from the clinic and the public, and the odd PHI-like comment, as real ones have. All names are invented;
deterministic for a seed. Nothing is newer than an hour before `now`; the changes come after that.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .linkedin_server import LinkedInState
from .png import make_png
from .sample_data import CLINIC_ANSWERS, DAYS, DOCTORS, FIRST, LAST, PHI_REPLIES, REPLIES, TOPICS
from .youtube_server import YouTubeState

LINKEDIN_ORG = 2202
VIDEO_TOPICS = [
    ("How to check your blood pressure at home", "Our nurses show the right cuff position and timing."),
    ("Flu season: what to expect", "Dr. Arbogast answers the questions we hear most."),
    ("A tour of the new pediatric wing", "Bright rooms, shorter waits, and a play corner."),
    ("Managing diabetes day to day", "Small habits that make a big difference."),
    ("Sun safety in two minutes", "SPF, shade and hydration, explained."),
    ("Meet our counselling team", "Evening slots are now available."),
    ("Allergy season tips", "When pollen peaks and what helps."),
    ("Volunteer day at the food bank", "400 wellness kits packed together."),
]


@dataclass
class PagesFacts:
    linkedin_posts: int = 0
    linkedin_comments: int = 0
    youtube_videos: int = 0
    youtube_comments: int = 0
    recent_post: str = ""  # a LinkedIn post inside the re-check window: the second run's changes land there
    recent_comments: list[str] = field(default_factory=list)
    recent_video: str = ""
    recent_threads: list[str] = field(default_factory=list)


@dataclass
class PagesMutation:
    edited_linkedin_comment: str
    deleted_linkedin_comment: str
    new_linkedin_comment: str
    edited_youtube_comment: str
    deleted_youtube_comment: str
    new_youtube_reply: str


def _person(rng: random.Random) -> tuple[str, str]:
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    return f"urn:li:person:{name.replace(' ', '')}{rng.randrange(100, 999)}", name


def build_linkedin_page(now: datetime, seed: int = 5) -> tuple[LinkedInState, PagesFacts]:
    rng = random.Random(seed)
    state = LinkedInState()
    state.add_organization(LINKEDIN_ORG, "Riverside Community Clinic", "riverside-community-clinic")
    facts = PagesFacts()
    org = f"urn:li:organization:{LINKEDIN_ORG}"
    quiet_from = now - timedelta(hours=1)
    times = sorted(
        now - timedelta(days=60) + timedelta(minutes=rng.randrange(0, 60 * 24 * 60 - 600)) for _ in range(24)
    )
    times[-1] = now - timedelta(days=2)  # one recent post for the second run's changes
    for index, at in enumerate(times):
        template, photo = rng.choice(TOPICS)
        text = template.format(
            day=rng.choice(DAYS), clinic="Riverside", doctor=rng.choice(DOCTORS), n=rng.randrange(3, 30)
        )
        if index == 5:
            article = {
                "source": "https://riverside-clinic.example/flu-guide",
                "title": "Our flu season guide",
                "description": "Who should get vaccinated, and where.",
            }
            post = state.add_post(LINKEDIN_ORG, "Read our flu season guide.", created_at=at, article=article)
        else:
            image = (make_png(48, 32, seed * 100 + index), f"Photo: {text[:40]}") if photo and index % 3 == 0 else None
            post = state.add_post(LINKEDIN_ORG, text, created_at=at, image=image)
        facts.linkedin_posts += 1
        for _ in range(rng.randrange(1, 5) if index < len(times) - 1 else 4):
            comment_at = at + timedelta(minutes=rng.randrange(10, 2000))
            if comment_at >= quiet_from:
                continue
            actor, _ = _person(rng)
            text = rng.choice(PHI_REPLIES) if rng.random() < 0.05 else rng.choice(REPLIES)
            comment = state.add_comment(post["id"], actor, text, created_at=comment_at)
            facts.linkedin_comments += 1
            if index == len(times) - 1:
                facts.recent_comments.append(comment["commentUrn"])
            if rng.random() < 0.3 and comment_at + timedelta(hours=2) < quiet_from:
                answer = rng.choice(CLINIC_ANSWERS)
                state.add_comment(comment["commentUrn"], org, answer, created_at=comment_at + timedelta(hours=2))
                facts.linkedin_comments += 1
        if index == len(times) - 1:
            facts.recent_post = post["id"]
    return state, facts


def mutate_linkedin_page(state: LinkedInState, facts: PagesFacts, now: datetime) -> PagesMutation:
    """A comment edited, one deleted, one new: the demo's second run captures them (the first two by proof)."""
    edited, deleted = facts.recent_comments[0], facts.recent_comments[1]
    state.edit_comment(
        edited, "Is this open to people without insurance? (asking for my father)", at=now - timedelta(minutes=20)
    )
    state.delete_comment(deleted)
    actor, _ = _person(random.Random(99))
    new = state.add_comment(
        facts.recent_post, actor, "Shared this with my parents, thanks!", created_at=now - timedelta(minutes=10)
    )
    return PagesMutation(edited, deleted, new["commentUrn"], "", "", "")


def build_youtube_channel(now: datetime, seed: int = 6) -> tuple[YouTubeState, PagesFacts]:
    rng = random.Random(seed)
    state = YouTubeState()
    channel = state.add_channel("Riverside Community Clinic", "@RiversideClinic", now - timedelta(days=1200))
    facts = PagesFacts()
    quiet_from = now - timedelta(hours=1)
    for index, (title, description) in enumerate(VIDEO_TOPICS):
        published = now - timedelta(days=60 - index * 8, hours=rng.randrange(0, 12))
        if index == len(VIDEO_TOPICS) - 1:
            published = now - timedelta(days=3)
        video = state.add_video(channel["id"], title, description, published_at=published)
        facts.youtube_videos += 1
        for _ in range(rng.randrange(2, 6)):
            at = published + timedelta(minutes=rng.randrange(30, 3000))
            if at >= quiet_from:
                continue
            author = "@" + rng.choice(FIRST) + rng.choice(LAST) + str(rng.randrange(10, 99))
            text = rng.choice(PHI_REPLIES) if rng.random() < 0.08 else rng.choice(REPLIES)
            thread = state.add_comment(video["id"], author, text, at=at)
            facts.youtube_comments += 1
            if index == len(VIDEO_TOPICS) - 1:
                facts.recent_threads.append(thread["id"])
            for reply_number in range(rng.randrange(0, 4)):
                reply_at = at + timedelta(hours=reply_number + 1)
                if reply_at >= quiet_from:
                    break
                who = "@RiversideClinic" if reply_number == 0 else "@" + rng.choice(FIRST) + str(rng.randrange(10, 99))
                state.add_reply(
                    thread["id"], who, rng.choice(CLINIC_ANSWERS if reply_number == 0 else REPLIES), at=reply_at
                )
                facts.youtube_comments += 1
        if index == len(VIDEO_TOPICS) - 1:
            facts.recent_video = video["id"]
    return state, facts


def mutate_youtube_channel(state: YouTubeState, facts: PagesFacts, now: datetime) -> PagesMutation:
    """A comment edited (updatedAt), a thread deleted, a new reply: the second run captures them."""
    edited, deleted = facts.recent_threads[0], facts.recent_threads[1]
    state.edit_comment(
        edited, "Thank you for sharing this! (edited: the link works now)", at=now - timedelta(minutes=15)
    )
    state.delete_comment(deleted)
    reply = state.add_reply(edited, "@RiversideClinic", "Glad it helped!", at=now - timedelta(minutes=5))
    return PagesMutation("", "", "", edited, deleted, reply["id"])
