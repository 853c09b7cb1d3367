"""The sample clinic's patient stories and its consent register, for the demo's consent check.

Four of the clinic's posts are patient content: a story whose consent is on file, a testimonial whose
consent the patient revokes between the two runs, a patient photo (its alt text) whose consent has already
expired, and a story with no consent at all. The register is imported before the first run and linked to the
posts once the first run has archived them; the revocation is imported before the second run. All names are
invented; the patient references are opaque ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ..consent.state import local_today
from .mastodon_server import MastodonState
from .png import make_png

PATIENT_POSTS = {
    "story": "Meet our patient Nora, back on her bike and training for the river run. Thank you for letting us "
    "share your story, Nora!",
    "testimonial": '"The nurses here saved my life." In his own words, Felix on his time with us at Riverside.',
    "photo": "A very good day on the children's ward.",
    "unconsented": "Patient spotlight: Omar shares his story of getting back to the football pitch this spring.",
}
PHOTO_ALT = "A boy in a hospital bed smiling with his nurse"
CSV_HEADER = "consent_id,patient_ref,account,item,scope,granted_on,expires_on,revoked_on,document_sha256\n"


@dataclass(frozen=True)
class ConsentSample:
    status_ids: dict[str, str]  # post name -> status id on the sample server
    account: str
    granted_on: str
    expired_on: str  # the photo consent's last day (yesterday)
    today: str

    def form_sha256(self, consent_id: str) -> str:
        """A stand-in for the digest of the signed form kept in the records system."""
        return hashlib.sha256(f"signed consent form {consent_id}".encode()).hexdigest()

    def register_csv(self, path: Path) -> Path:
        rows = [
            ("C-DEMO-001", "PT-104233", "story and bike photo", None),
            ("C-DEMO-002", "PT-209871", "testimonial quote", None),
            ("C-DEMO-003", "PT-311402", "photo on the children's ward", self.expired_on),
        ]
        body = "".join(
            f"{cid},{ref},{self.account},,{scope},{self.granted_on},{expires or ''},,{self.form_sha256(cid)}\n"
            for cid, ref, scope, expires in rows
        )
        path.write_text(CSV_HEADER + body, "utf-8")
        return path

    def revocation_csv(self, path: Path) -> Path:
        """The records system's next export: the testimonial's consent revoked today."""
        cid = "C-DEMO-002"
        row = (
            f"{cid},PT-209871,{self.account},,testimonial quote,{self.granted_on},,{self.today},"
            f"{self.form_sha256(cid)}\n"
        )
        path.write_text(CSV_HEADER + row, "utf-8")
        return path

    def links(self, host: str) -> list[tuple[str, str]]:
        """(consent id, item key) for the posts that have a consent."""
        key = {name: f"mastodon:{host}:{sid}" for name, sid in self.status_ids.items()}
        return [("C-DEMO-001", key["story"]), ("C-DEMO-002", key["testimonial"]), ("C-DEMO-003", key["photo"])]


def add_patient_posts(state: MastodonState, clinic_id: str, account: str, now: datetime) -> ConsentSample:
    """Post the four patient posts a few days ago (before the quiet hour, so both runs see the same)."""
    ids = {}
    for offset, (name, text) in enumerate(PATIENT_POSTS.items()):
        media = [(make_png(64, 48, 9000 + offset), PHOTO_ALT)] if name == "photo" else None
        at = now - timedelta(days=5 - offset, hours=3)
        ids[name] = state.add_status(clinic_id, text, created_at=at, media=media)["id"]
    today = local_today(now)  # the register's days are local ones, as the check's
    return ConsentSample(
        ids,
        account,
        granted_on=(today - timedelta(days=60)).isoformat(),
        expired_on=(today - timedelta(days=1)).isoformat(),
        today=today.isoformat(),
    )
