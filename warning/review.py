"""The forecasters' desk, as pure functions over a region's review state (kept in ``region_state`` under
``"review"`` by the grade agent, its only writer; docs/ARCHITECTURE.md "Review").

The lifecycle (``warning.grading``) runs as before; what it makes passes the desk before anyone sees it. An event
whose level (or, for an update or cancel, the level receivers already hold) is ``issue = "review"`` in the rules
becomes a **draft**: nothing goes to ``warnings`` or to a subscription until an operator approves it (optionally
with an edited headline, description, instruction and expiry) or rejects it. One draft waits per chain: a newer
event of the chain supersedes it. What is published is what receivers can follow: the first published event of a
warning is an ``alert``, and ``references`` lists the published events only.

The review state of a chain::

    {"warning_id": the warning the desk knows, "published": [event ids sent], "published_level": colour | None,
     "draft": the pending draft record | None, "rejected_level": colour | None}

A draft record (``warnings.drafts``, keyed by its id, the event id): ``id, warning_id, chain_key, hazard, level,
region_code, region_name, region_name_zh, msg_type, status, state, event, made_at, made_at_data, decision``;
``state`` is pending, approved, rejected, superseded (a newer event of the chain), withdrawn (the lifecycle
ended the warning before anyone decided) or issued_unreviewed (the policy's timeout); ``decision`` is the audit
entry: ``action, by, at, reason, changes`` (field -> {from, to}).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from warning.shared.records import WarningLevel, status_of
from warning.shared.times import iso_utc

EDITABLE_TEXT = ("headline_zh", "headline_en", "description_zh", "description_en", "instruction_zh", "instruction_en")
EDITABLE = (*EDITABLE_TEXT, "expires")
MAX_TEXT = 2000  # characters of an edited text field
MAX_EXPIRY_DAYS = 7  # an edited expiry at most this far after the approval (UNCONFIRMED: no CMA rule; a week)
# Cancels the desk never holds: an expiry only says what receivers already know, and an operator's cancel is
# itself a named operator's decision (recorded in the event).
AUTO_CANCELS = ("expire", "operator_cancel")
PENDING = "pending"
POLICY = "policy"  # the audit log's "by" of a draft issued unreviewed by the policy's timeout

Policy = Callable[[str, str], str]  # (hazard, level colour) -> "auto" | "review"
Outcome = tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]  # review, publish, records


class ReviewError(ValueError):
    """An approval's edits that cannot be applied (the message names the field)."""


def _rank(colour: str | None) -> int:
    return int(WarningLevel.parse(colour)) if colour else 0


def _fresh(warning_id: str) -> dict[str, Any]:
    return {"warning_id": warning_id, "published": [], "published_level": None, "draft": None,
            "rejected_level": None}


def _closed(draft: dict[str, Any], state: str, by: str, at: str, reason: str | None = None,
            changes: dict[str, Any] | None = None, event: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**draft, "state": state, "event": event or draft["event"],
            "decision": {"action": state, "by": by, "at": at, "reason": reason, "changes": changes or {}}}


def for_publication(event: dict[str, Any], published: list[str]) -> dict[str, Any]:
    """The event as receivers can follow it: an alert when nothing of its warning was sent yet (an update of a
    draft nobody approved is, to them, the warning's first message); ``references`` only what was sent."""
    out = {**event, "references": [r for r in event.get("references", []) if r in published]}
    if not published and out["msg_type"] == "update":
        out["msg_type"], out["change"] = "alert", "issue"
    return out


def new_draft(event: dict[str, Any], chain_key: str, made_at: float, made_at_data: str) -> dict[str, Any]:
    return {"id": event["id"], "warning_id": event["warning_id"], "chain_key": chain_key,
            "hazard": event["hazard"], "level": event["level"], "region_code": event["region_code"],
            "region_name": event.get("region_name"), "region_name_zh": event.get("region_name_zh"),
            "msg_type": event["msg_type"], "status": status_of(event), "state": PENDING, "event": event,
            "made_at": made_at, "made_at_data": made_at_data, "decision": None}


def gate(review: dict[str, Any] | None, event: dict[str, Any], policy: Policy, *, chain_key: str, at: str,
         now: float) -> Outcome:
    """One county event the lifecycle made at data time ``at``: (the new review state, the events to publish now,
    the draft records to write)."""
    r = dict(review) if review else None
    records: list[dict[str, Any]] = []
    wall = iso_utc(now)
    if r is None or r["warning_id"] != event["warning_id"]:
        if r and r.get("draft"):  # a new warning of the chain: the old one's question is moot
            records.append(_closed(r["draft"], "withdrawn", "lifecycle", wall, "a new warning of the chain"))
        r = _fresh(event["warning_id"])
    published: list[str] = list(r["published"])
    pending = r.get("draft")
    cancel = event["msg_type"] == "cancel"
    if cancel and not published:
        # nothing was sent, so there is nothing to cancel: a draft still waiting is withdrawn
        if pending:
            records.append(_closed(pending, "withdrawn", "lifecycle", wall, event.get("description_en")))
        return {**r, "draft": None, "rejected_level": None}, [], records
    if not cancel and r.get("rejected_level") and _rank(event["level"]) <= _rank(r["rejected_level"]):
        # rejected at this level or above: the desk is not asked again until the level rises
        if pending:
            records.append(_closed(pending, "superseded", "lifecycle", wall, "the level fell back"))
        return {**r, "draft": None}, [], records
    if pending:
        records.append(_closed(pending, "superseded", "lifecycle", wall, f"a newer event ({event['id']})"))
    out = for_publication(event, published)
    level = r["published_level"] if cancel else max(event["level"], r["published_level"] or "", key=_rank)
    if policy(event["hazard"], level) == "review" and not (cancel and event.get("change") in AUTO_CANCELS):
        draft = new_draft(out, chain_key, now, at)
        records.append(draft)
        return {**r, "draft": draft}, [], records
    return _published({**r, "draft": None}, out), [out], records


def _published(r: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return {**r, "published": [*r["published"], event["id"]], "published_level": event["level"],
            "rejected_level": None}


def decide(review: dict[str, Any] | None, draft_id: str, action: str, *, by: str, at: str,
           edits: dict[str, Any] | None = None, reason: str | None = None) -> tuple[Outcome, str | None]:
    """An operator's (or the policy's) decision on the chain's pending draft: ``approve`` (with ``edits``),
    ``reject`` or ``issue_unreviewed``. Returns the outcome and None, or the unchanged review and why not."""
    draft = (review or {}).get("draft")
    if review is None or not draft or draft["id"] != draft_id:
        return (review, [], []), "no longer pending (superseded, withdrawn or decided)"
    if action == "reject":
        closed = _closed(draft, "rejected", by, at, reason)
        rejected = review.get("rejected_level")
        if draft["msg_type"] != "cancel":
            rejected = max(draft["level"], rejected or "", key=_rank)
        return ({**review, "draft": None, "rejected_level": rejected}, [], [closed]), None
    if action not in ("approve", "issue_unreviewed"):
        return (review, [], []), f"unknown action {action!r}"
    event, changes = apply_edits(draft["event"], edits or {})
    if status_of(event) == "actual":
        event["sent"] = at  # sent when it is sent: on approval
    event["review"] = {"decision": "approved" if action == "approve" else action, "by": by, "at": at,
                       "draft_id": draft["id"], "edited": sorted(changes)}
    closed = _closed(draft, "approved" if action == "approve" else action, by, at, reason, changes, event)
    return (_published({**review, "draft": None}, event), [event], [closed]), None


def apply_edits(event: dict[str, Any], edits: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The event with ``edits`` (already validated) applied, and what changed: field -> {from, to}."""
    out, changes = dict(event), {}
    for field in EDITABLE:
        if field in edits and edits[field] != event.get(field):
            changes[field] = {"from": event.get(field), "to": edits[field]}
            out[field] = edits[field]
    return out, changes


def validate_edits(body: Any, *, now: datetime, onset: str) -> dict[str, Any]:
    """An approval body's edits: the editable fields only, texts of 1..MAX_TEXT characters without control
    characters (newlines allowed), ``expires`` a UTC time after now and the onset, within MAX_EXPIRY_DAYS."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ReviewError("body: an object of edited fields")
    unknown = sorted(set(body) - set(EDITABLE))
    if unknown:
        raise ReviewError(f"{unknown[0][:40]}: not an editable field; editable: {', '.join(EDITABLE)}")
    edits: dict[str, Any] = {}
    for field in EDITABLE_TEXT:
        if field not in body:
            continue
        text = body[field]
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise ReviewError(f"{field}: text of 1 to {MAX_TEXT} characters")
        if any(unicodedata.category(c) in ("Cc", "Cf") and c != "\n" for c in text):
            raise ReviewError(f"{field}: control or format characters are not allowed")
        edits[field] = text.strip()
    if "expires" in body:
        edits["expires"] = _valid_expiry(body["expires"], now, onset)
    return edits


def _valid_expiry(value: Any, now: datetime, onset: str) -> str:
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ReviewError("expires: an ISO-8601 time with a UTC offset") from None
    if t.tzinfo is None:
        raise ReviewError("expires: an ISO-8601 time with a UTC offset")
    if t <= now or iso_utc(t) <= onset:
        raise ReviewError("expires: after now and after the warning's onset")
    if t > now + timedelta(days=MAX_EXPIRY_DAYS):
        raise ReviewError(f"expires: at most {MAX_EXPIRY_DAYS} days from now")
    return iso_utc(t)


def overdue(draft: dict[str, Any], now: float, minutes: float) -> bool:
    """Whether a pending draft has waited ``minutes`` or longer (``minutes`` 0: never)."""
    return minutes > 0 and draft.get("state") == PENDING and now - float(draft["made_at"]) >= minutes * 60
