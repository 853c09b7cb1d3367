"""LinkedIn and YouTube harnesses for the fault suite (tests/test_faults.py on main: add both to HARNESSES).

Each plays a small clinic (3 posts or videos inside the re-check window, one comment each) on its sample
server, says where its listing and thread requests go, and how a transient rate limit is signalled. LinkedIn
itself sends no rate-limit header (its bare 429 is a stop until midnight UTC, tested in test_linkedin_run);
the transient case here uses a Retry-After, which DailyLimitUTC honours.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.request import Request, urlopen

from archiver.demo.linkedin_server import LinkedInState, SampleLinkedInServer
from archiver.demo.loopback import Fault
from archiver.demo.youtube_server import SampleYouTubeServer, YouTubeState, _page_token

NOW = datetime.now(UTC).replace(microsecond=0)
ORG = 501


class LinkedInHarness:
    platform = "linkedin"
    listing = r"/rest/posts\?"
    thread = r"/comments"
    items = 6

    def start(self, token: str) -> None:
        state = LinkedInState()
        state.add_organization(ORG, "Riverside Clinic", "riverside-clinic")
        for i in range(3):
            post = state.add_post(ORG, f"Clinic post {i}", created_at=NOW - timedelta(days=2, minutes=i))
            state.add_comment(post["id"], "urn:li:person:ann", f"Reply {i}", created_at=NOW - timedelta(days=1))
        self.server = SampleLinkedInServer(state, {token: {ORG}}).start()

    def stop(self) -> None:
        self.server.stop()

    def account(self, name: str, token_env: str) -> str:
        return (
            f'[[accounts]]\nname = "{name}"\nplatform = "linkedin"\napi_base = "{self.server.base_url}"\n'
            f'account = "urn:li:organization:{ORG}"\ntoken_env = "{token_env}"\n'
        )

    def add_fault(self, fault: Fault) -> None:
        self.server.faults.append(fault)

    def clear_faults(self) -> None:
        self.server.faults.clear()

    def set_token(self, token: str) -> None:
        self.server._tokens = {token: {ORG}}

    def rate_limit_headers(self, seconds: int) -> dict[str, str]:
        return {"Retry-After": str(seconds)}

    def listing_page(self) -> tuple[str, bytes]:
        """The first page of the posts finder, with a next link that points back at itself (for a loop)."""
        url = f"{self.server.base_url}/rest/posts?author=urn%3Ali%3Aorganization%3A{ORG}&q=author&start=0&count=50"
        token = next(iter(self.server._tokens))
        headers = {
            "Authorization": f"Bearer {token}",
            "LinkedIn-Version": "202610",
            "X-Restli-Protocol-Version": "2.0.0",
        }
        with urlopen(Request(url, headers=headers), timeout=5) as response:
            page = json.loads(response.read())
        page["paging"]["links"] = [{"rel": "next", "type": "application/json", "href": url.split("//", 1)[1]}]
        return url, json.dumps(page).encode()


class YouTubeHarness:
    platform = "youtube"
    listing = r"/youtube/v3/playlistItems"
    thread = r"/youtube/v3/commentThreads"
    items = 6

    def start(self, token: str) -> None:
        state = YouTubeState()
        channel = state.add_channel("Riverside Clinic", "@RiversideClinic", NOW - timedelta(days=400))
        self.channel_id = channel["id"]
        for i in range(3):
            video = state.add_video(
                channel["id"], f"Video {i}", "tips", published_at=NOW - timedelta(days=2, minutes=i)
            )
            state.add_comment(video["id"], "@AnnPatient", f"Reply {i}", at=NOW - timedelta(days=1))
        self.server = SampleYouTubeServer(state, api_key=token).start()

    def stop(self) -> None:
        self.server.stop()

    def account(self, name: str, token_env: str) -> str:
        return (
            f'[[accounts]]\nname = "{name}"\nplatform = "youtube"\napi_base = "{self.server.base_url}"\n'
            f'account = "{self.channel_id}"\ntoken_env = "{token_env}"\n'
        )

    def add_fault(self, fault: Fault) -> None:
        self.server.faults.append(fault)

    def clear_faults(self) -> None:
        self.server.faults.clear()

    def set_token(self, token: str) -> None:
        self.server._key = token

    def rate_limit_headers(self, seconds: int) -> dict[str, str]:
        return {"Retry-After": str(seconds)}

    def listing_page(self) -> tuple[str, bytes]:
        """The uploads page, with a nextPageToken that leads back to this same page (a loop)."""
        playlist = "UU" + self.channel_id[2:]
        url = (
            f"{self.server.base_url}/youtube/v3/playlistItems?part=contentDetails&playlistId={playlist}"
            f"&maxResults=50&key={self.server._key}"
        )
        with urlopen(url, timeout=5) as response:
            page = json.loads(response.read())
        page["nextPageToken"] = _page_token(0)
        return url, json.dumps(page).encode()
