"""report.html: the bundle read by a person, in any browser, offline.

One self-contained page: inline styles, no scripts at all, nothing fetched (a Content-Security-Policy says
so to the browser); media are shown from the bundle's own media/ folder. Per item: its timeline of events,
its versions side by side, the evidence of a deletion, the digests and WARC record ids to check it by, its
flags and its consents.

The report is a pure function of the bundle's own rows and custody.json, so that verify-bundle makes it
again and compares it byte for byte: what it shows cannot be changed apart from the rows that are proven.
Anything it needs from the archive beyond the rows (which flags were in the review queue) is recorded in
custody.json. Any change to what it writes must bump REPORT_FORMAT: verify-bundle holds a bundle of the
current format to an identical report, and one of another format only to showing its rows' texts and events.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, timedelta
from html import escape
from typing import Any

from ..operator import Operator
from .extract import media_name
from .gather import attachments, items_view, media_index, media_row_of

# What custody.json's report_format says: the report verify-bundle can make again, byte for byte.
REPORT_FORMAT = "archiver-report/1"
NOT_QUEUED = "not in the review queue at export (no longer current)"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#1b1b1b}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.6em 0 .4em;border-top:2px solid #ccc;padding-top:.6em}
h3{font-size:1em;margin:1em 0 .3em}table{border-collapse:collapse;margin:.3em 0 .8em}
td,th{border:1px solid #ccc;padding:.25em .5em;vertical-align:top;text-align:left}
th{background:#f1f1f1}code,.digest{font:12px ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
.versions{display:flex;gap:.8em;flex-wrap:wrap}.version{border:1px solid #bbb;padding:.5em;flex:1 1 18em;max-width:32em}
.version .text{white-space:pre-wrap;background:#fafafa;border-left:3px solid #888;padding:.4em;margin:.4em 0}
.status-deleted{color:#a00;font-weight:bold}.status-edited{color:#a60;font-weight:bold}
.evidence{background:#fff4f4;border:1px solid #e0b4b4;padding:.5em;margin:.4em 0}
.meta td:first-child{font-weight:bold;white-space:nowrap}img{max-width:12em;max-height:12em;border:1px solid #ccc}
nav ol{columns:2}
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def media_paths(media_rows: list[dict[str, Any]]) -> dict[str, str]:
    """Each media file's path in report.html (beside media/) by its row's url."""
    return {row["url"]: f"media/{media_name(row)}" for row in media_rows}


def render_report(rows: dict[str, list[dict[str, Any]]], custody: dict[str, Any]) -> str:
    """report.html from the bundle's rows (table -> rows, in the order of their JSON Lines) and custody.json,
    and nothing else."""
    versions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows.get("item_versions", []):
        versions[row["item_key"]].append(row)
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows.get("events", []):
        events[row["item_key"]].append(row)
    flags: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows.get("flags", []):
        flags[row["item_key"]].append(row)
    by_url, by_sha = media_index(rows.get("media_files", []))
    paths = media_paths(rows.get("media_files", []))
    reviews = latest_reviews(rows.get("flags", []), rows.get("flag_reviews", []))
    operators = {r["review_id"]: r["operator"] for r in rows.get("review_operators", [])}
    # None (a bundle made before it was recorded, or an archive without a queue): every undecided flag is open
    recorded = custody.get("flags_in_review_queue")
    queued = set(recorded) if isinstance(recorded, list) else None
    consents = _Consents(rows, str(custody["exported_at"])[:10]) if "consent_links" in rows else None
    items = items_view(rows)
    in_extract = {r["record_id"] for r in custody["warc_records"]}
    statement = json.loads(custody["checkpoint"]["statement"])
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>Evidence bundle: case {_e(custody['case_id'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>Evidence bundle: case {_e(custody['case_id'])}</h1>",
        '<table class="meta">',
    ]
    meta = [
        ("Organisation", custody["organisation"]),
        ("Exported by", f"{_exporter(custody)} on {custody['host']}"),
        ("Exported at", custody["exported_at"]),
        ("Software", f"archiver {custody['software']['version']}"),
        ("Selectors", json.dumps({k: v for k, v in custody["selectors"].items() if v}, ensure_ascii=False)),
        ("Counts", ", ".join(f"{k} {v}" for k, v in custody["counts"].items())),
        ("Signed checkpoint", f"ledger seq {statement['ledger']['seq']}, created {statement['created_at']}"),
        ("Ledger head hash", statement["ledger"]["hash"]),
    ]
    out.extend(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta)
    out.append("</table>")
    out.append(
        "<p>Every row below is copied from the archive as stored; <code>custody.json</code> holds each row's "
        "ledger entry and the signed checkpoint, <code>evidence.warc.gz</code> the captured records. Check the "
        "whole bundle with <code>archiver verify-bundle --public-key</code> and the archive's public key "
        "obtained separately from its operators (never the key in the bundle), or without this software: the "
        "signature in <code>signature.json</code> over <code>tagmanifest-sha256.txt</code> with that key "
        "(<code>openssl pkeyutl -verify -rawin</code>), both manifests with <code>sha256sum -c</code>, no file "
        "beside those they list, and <code>warcio check</code>.</p>"
    )
    out.extend(_other_items_section(custody.get("other_items_in_records") or []))
    out.append("<nav><h2>Items</h2><ol>")
    for i, item in enumerate(items):
        out.append(
            f'<li><a href="#item-{i}">{_e(item["kind"])} by {_e(item["author_handle"])}, '
            f'{_e(item["created_at"])}</a> <span class="status-{_e(item["status"])}">{_e(item["status"])}</span></li>'
        )
    out.append("</ol></nav>")
    for i, item in enumerate(items):
        key = item["item_key"]
        out.append(f'<section id="item-{i}"><h2>{_e(item["kind"])} {_e(key)}</h2><table class="meta">')
        for label, value in (
            ("Status", item["status"]),
            ("Author", f"{item['author_handle'] or ''} ({item['author_name'] or ''})"),
            ("Account / platform", f"{item['account']} / {item['platform']}"),
            ("Posted", item["created_at"]),
            ("URL", item["url"]),
            ("In reply to", item["parent_key"]),
            ("Thread", item["thread_key"]),
            ("Conversation", item["conversation_key"]),
            ("Visibility", item["visibility"]),
        ):
            if value:
                out.append(f"<tr><td>{_e(label)}</td><td>{_e(value)}</td></tr>")
        out.append("</table><h3>Timeline</h3><table><tr><th>observed</th><th>event</th><th>version</th>")
        out.append("<th>evidence (WARC record)</th></tr>")
        for event in events[key]:
            evidence = json.loads(event["evidence"])
            record = evidence.get("warc_record_id") or evidence.get("observed_in") or ""
            mark = "" if not record or record in in_extract else " (not in this bundle)"
            out.append(
                f"<tr><td>{_e(event['observed_at'])}</td><td>{_e(event['event'])}</td>"
                f"<td>{_e(event['version_id'])}</td><td><code>{_e(record)}</code>{_e(mark)}</td></tr>"
            )
        out.append("</table>")
        for event in events[key]:
            if event["event"] == "deleted":
                out.append(
                    '<div class="evidence"><strong>Deletion evidence</strong> (observed '
                    f"{_e(event['observed_at'])}):<pre>{_e(json.dumps(json.loads(event['evidence']), indent=1))}"
                    "</pre></div>"
                )
        out.append(f'<h3>Versions ({len(versions[key])})</h3><div class="versions">')
        for n, version in enumerate(versions[key], 1):
            out.append(
                f'<div class="version"><strong>Version {n}</strong> (row {_e(version["id"])})<br>'
                f"captured {_e(version['captured_at'])}"
                + (f"<br>edited {_e(version['edited_at'])}" if version["edited_at"] else "")
                + f'<div class="text">{_e(version["text"])}</div>'
            )
            for attachment in attachments(version):
                row = media_row_of(attachment, by_url, by_sha)
                path = paths.get(row["url"]) if row else None
                if row and path:
                    out.append(
                        f'<div><img src="{_e(path)}" alt="{_e(attachment.get("description"))}"><br>'
                        f'<span class="digest">sha256 {_e(row["sha256"])}</span></div>'
                    )
                else:
                    out.append(f"<div>attachment {_e(attachment.get('url'))} (not captured)</div>")
            out.append(
                f'<div class="digest">content sha256 {_e(version["content_sha256"])}<br>'
                f"WARC record {_e(version['warc_record_id'])}<br>from {_e(version['warc_file'])} "
                f"@ {_e(version['warc_offset'])}</div></div>"
            )
        out.append("</div>")
        if flags[key]:
            out.extend(_flags_table(flags[key], reviews, operators, queued))
        if consents is not None:
            out.extend(consents.section(key, flags[key]))
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _exporter(custody: dict[str, Any]) -> str:
    """Who exported: the account name, with its uid and the SUDO_USER the environment claimed where the
    custody record holds them."""
    account = custody.get("exported_by_account")
    if not isinstance(account, dict):
        return str(custody["exported_by"])
    return str(Operator(custody["exported_by"], account["uid"], account["sudo_user_claimed"]))


def latest_reviews(flags: list[dict[str, Any]], reviews: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Each flag's latest review over the same hit, from the bundle's own rows, as the archive's flag_status
    view decides it: a review of the flag itself, or of a flag of the same item, rule, span and matched text on
    an earlier or the same version (a rescan, or a moderator's hide, flags the same hit again). A consent flag's
    decision is its own."""
    by_flag: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for review in reviews:
        by_flag[review["flag_id"]].append(review)
    hits: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for flag in flags:
        hits[_hit(flag)].append(flag)
    found = {}
    for flag in flags:
        same = (
            [flag]
            if flag.get("category") == "consent"
            else [
                g
                for g in hits[_hit(flag)]
                if g["version_id"] <= flag["version_id"]
                and (g["version_id"] == flag["version_id"] or g.get("matched") == flag.get("matched"))
            ]
        )
        decided = [r for g in same for r in by_flag[g["id"]]]
        if decided:
            found[flag["id"]] = max(decided, key=lambda r: r["id"])
    return found


def _hit(flag: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(flag.get(c) for c in ("item_key", "rule_id", "span_start", "span_end"))


def _flags_table(
    flags: list[dict[str, Any]], reviews: dict[int, dict[str, Any]], operators: dict[int, str], queued: set[Any] | None
) -> list[str]:
    """An item's flags, each with the privacy office's latest decision on its hit, the name its reviewer gave
    and the account that recorded it (none for reviews made before that was kept). An undecided flag is open
    while it is in the review queue; one the queue no longer held at export (a consent linked since, the item
    deleted) is not shown as open, which would read as a matter still pending."""
    out = [
        "<h3>Flags</h3><table><tr><th>rule</th><th>category</th><th>severity</th><th>matched</th><th>reason</th>",
        "<th>decision</th><th>reviewer</th><th>recorded by</th><th>reviewed</th><th>note</th></tr>",
    ]
    for flag in flags:
        cells = [flag.get(c) for c in ("rule_id", "category", "severity", "matched", "reason")]
        review = reviews.get(flag["id"])
        if review is None:
            open_ = queued is None or flag["id"] in queued
            cells += ["open (not reviewed)" if open_ else NOT_QUEUED, "", "", "", ""]
        else:
            on = "" if review["flag_id"] == flag["id"] else f" (on flag {review['flag_id']}, the same hit)"
            recorded_by = operators.get(review["id"], "")
            cells += [review["decision"] + on, review["reviewer"], recorded_by, review["created_at"], review["note"]]
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return out


def consent_status(row: dict[str, Any], day: str) -> str:
    """A consent's status on `day` (YYYY-MM-DD) from its latest register row: covered from granted_on through
    expires_on, nothing from revoked_on on; a lapsed one named by what ended it first (a revocation on the day
    after the expiry counts as the revocation). The register's rule (archiver/consent/state.py), written out
    here because the report must stay what verify-bundle makes again: a change to it is a new REPORT_FORMAT."""
    revoked, expires = row.get("revoked_on"), row.get("expires_on")
    after_expiry = (date.fromisoformat(expires) + timedelta(days=1)).isoformat() if expires else None
    if revoked and revoked <= day and (after_expiry is None or revoked <= after_expiry):
        return "revoked"
    if expires and expires < day:
        return "expired"
    if row["granted_on"] > day:
        return "pending"
    return "live"


class _Consents:
    """The bundle's consent rows by item and by consent, for each item's Consent section."""

    def __init__(self, rows: dict[str, list[dict[str, Any]]], day: str):
        self.day = day  # the export's day (UTC), on which each consent's status is given
        self.links: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for link in rows.get("consent_links", []):
            self.links[link["item_key"]].append(link)
        self.history: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows.get("consent_register", []):
            self.history[row["consent_id"]].append(row)
        self.imports = {row["id"]: row for row in rows.get("consent_imports", [])}

    def section(self, key: str, flags: list[dict[str, Any]]) -> list[str]:
        """The consents linked to an item, each as its latest register row states it with its status on the
        export day, then every register row of each (its grant, changes and revocation). Shown for an item
        with a consent linked or a consent flag."""
        links = self.links.get(key, [])
        if not links and not any(f.get("category") == "consent" for f in flags):
            return []
        out = ["<h3>Consent</h3>"]
        if not links:
            out.append("<p>No consent was linked to this item in the archive's consent register at export.</p>")
            return out
        out.append(
            "<p>Each consent linked to this item, as its latest row in the consent register states it, and its "
            f"status on the day of the export ({_e(self.day)}). The signed form stays in the organisation's "
            "records system; its SHA-256 is given.</p><table><tr><th>consent</th><th>patient ref</th>"
            "<th>scope</th><th>covers</th><th>granted</th><th>expires (last day)</th><th>revoked (from)</th>"
            f"<th>signed form sha256</th><th>linked by</th><th>linked at</th><th>status on {_e(self.day)}</th></tr>"
        )
        for link in links:
            history = self.history.get(link["consent_id"], [])
            latest = history[-1] if history else {}
            status = consent_status(latest, self.day) if latest else "not in the register"
            cells = [link["consent_id"], latest.get("patient_ref"), latest.get("scope")]
            cells.append(f"attachment {link['media_url']}" if link.get("media_url") else "the whole post")
            cells += [latest.get(c) for c in ("granted_on", "expires_on", "revoked_on", "document_sha256")]
            cells += [self._by(link), link["linked_at"], status]
            out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
        out.append("</table>")
        for consent_id in dict.fromkeys(link["consent_id"] for link in links):
            out.extend(self._history(consent_id))
        return out

    def _by(self, link: dict[str, Any]) -> str:
        found = self.imports.get(link.get("import_id"))
        return f"{link['linked_by']} (import {found['id']}, {found['file_name']})" if found else str(link["linked_by"])

    def _history(self, consent_id: str) -> list[str]:
        out = [
            f"<p>Register rows of consent <code>{_e(consent_id)}</code>, oldest first (a revocation, a new expiry "
            "or a renewal is a new row):</p><table><tr><th>row</th><th>recorded</th><th>granted</th>"
            "<th>expires (last day)</th><th>revoked (from)</th><th>scope</th><th>platform / account</th>"
            "<th>signed form sha256</th><th>imported from</th></tr>"
        ]
        for row in self.history.get(consent_id, []):
            found = self.imports.get(row["import_id"])
            source = (
                f"{found['file_name']} row {row['source_row']} (import {found['id']}, file sha256 "
                f"{found['file_sha256']}, {found['imported_at']})"
                if found
                else f"import {row['import_id']} row {row['source_row']}"
            )
            cells = [row["id"], row["recorded_at"], row["granted_on"], row["expires_on"], row["revoked_on"]]
            cells += [
                row["scope"],
                " / ".join(c for c in (row["platform"], row["account"]) if c),
                row["document_sha256"],
                source,
            ]
            out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
        out.append("</table>")
        return out


def _other_items_section(others: list[dict[str, Any]]) -> list[str]:
    """The archived items besides the selected ones that the WARC records, copied whole, also hold."""
    if not others:
        return []
    count = len({key for entry in others for key in entry["item_keys"]})
    out = [
        "<h2>Other archived items in the copied records</h2>",
        f"<p>The WARC records are copied whole, as captured, because they are the evidence. {len(others)} of "
        f"them (a listing, a thread or a conversation page) also hold {count} other archived item(s), other "
        "people's posts, comments or messages among them, which this bundle does not otherwise include. "
        "Review them before sharing the bundle.</p>",
        "<table><tr><th>WARC record</th><th>URL</th><th>other items it holds</th></tr>",
    ]
    for entry in others:
        out.append(
            f"<tr><td><code>{_e(entry['record_id'])}</code></td><td><code>{_e(entry['target_uri'])}</code></td>"
            f"<td>{'<br>'.join(f'<code>{_e(key)}</code>' for key in entry['item_keys'])}</td></tr>"
        )
    out.append("</table>")
    return out
