"""The bureau's desk in the API: the review queue (drafts: list, approve with optional edits, reject) and
silences (create, list, end). Everything here needs the operator token; the operator it names is the audit
log's "who". Decisions go to the grade agent as MACed ``review`` signals (``GradeStage.review_decision``)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from alerts.silences import SilenceError, new_silence
from warning.review import PENDING, ReviewError, validate_edits
from warning.shared.records import ACTUAL, status_of
from warning.shared.times import iso_utc, now_iso
from warning.web.auth import OPERATOR, SVC, require_token
from warning.web.auth import error_response as _error
from warning.web.auth import json_response as _json
from warning.web.bodies import body_json
from warning.web.ids import find_id, resolve_id

DECISION_WAIT_S = 5.0  # an approve / reject answers with the decided draft when the grade agent is this quick


async def _body(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    _, body = await body_json(request)
    return body


def _draft(request: web.Request) -> dict[str, Any]:
    view = request.app[SVC].drafts
    return view.by_id[resolve_id(request.match_info["id"], view.by_id, "draft")]


@require_token
async def list_drafts(request: web.Request) -> web.Response:
    state = request.query.get("state", PENDING)
    states = (PENDING, "approved", "rejected", "superseded", "withdrawn", "issued_unreviewed", "all")
    if state not in states:
        return _error(400, f"state: one of {', '.join(states)}")
    return _json(request.app[SVC].drafts.listing(None if state == "all" else state))


@require_token
async def get_draft(request: web.Request) -> web.Response:
    return _json(request.app[SVC].drafts.shown(_draft(request)))


async def _decided(request: web.Request, draft_id: str) -> web.Response:
    """The draft once the grade agent has decided it (200), or 202 while it has not yet (the decision is on
    its way); 409 when the draft was superseded or withdrawn before the decision reached it."""
    view = request.app[SVC].drafts
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DECISION_WAIT_S
    while view.by_id[draft_id].get("state") == PENDING and loop.time() < deadline:
        await asyncio.sleep(0.05)
    record = view.shown(view.by_id[draft_id])
    if record["state"] == PENDING:
        return _json({**record, "decision_status": "sent"}, 202)
    if record["state"] in ("superseded", "withdrawn"):
        return _error(409, f"draft {draft_id}: {record['state']} before the decision reached it")
    return _json(record)


def _pending(draft: dict[str, Any]) -> web.Response | None:
    if draft.get("state") != PENDING:
        return _error(409, f"draft {draft['id']}: {draft.get('state')}, not pending")
    return None


@require_token
async def approve_draft(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    draft = _draft(request)
    if (refused := _pending(draft)) is not None:
        return refused
    now = datetime.now(UTC)
    event = draft["event"]
    try:
        edits = validate_edits(await _body(request), now=now, onset=event["onset"])
    except ReviewError as exc:
        return _error(400, str(exc))
    expires = edits.get("expires", event["expires"])
    if status_of(event) == ACTUAL and event["msg_type"] != "cancel" and expires <= iso_utc(now):
        return _error(409, f"draft {draft['id']}: expired at {expires}; approve with a later 'expires'")
    await svc.grade.review_decision(draft, "approve", request[OPERATOR], edits=edits)
    return await _decided(request, draft["id"])


@require_token
async def reject_draft(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    draft = _draft(request)
    if (refused := _pending(draft)) is not None:
        return refused
    body = await _body(request)
    reason = body.get("reason") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        return _error(400, "reason: text of 1 to 500 characters")
    await svc.grade.review_decision(draft, "reject", request[OPERATOR], reason=reason.strip())
    return await _decided(request, draft["id"])


@require_token
async def post_silence(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    subs = svc.subscriptions

    def known_subscription(given: str) -> str | None:
        found = find_id(given, (s.id for s in subs))
        return found[0] if len(found) == 1 else None

    try:
        silence = new_silence(await _body(request), author=request[OPERATOR], now=datetime.now(UTC),
                              known_subscription=known_subscription, known_region=svc.regions.is_known,
                              known_hazards=set(svc.rules), max_hours=svc.settings.silence_max_h)
    except SilenceError as exc:
        return _error(400, str(exc))
    await svc.silences.put(silence)
    return _json(_shown(silence.to_dict()), 201)


def _shown(silence: dict[str, Any]) -> dict[str, Any]:
    now = now_iso()
    state = "pending" if now < silence["starts"] else "active" if now < silence["ends"] else "ended"
    return {**silence, "state": state}


@require_token
async def list_silences(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    ended = request.query.get("ended", "false")
    if ended not in ("true", "false"):
        return _error(400, "ended: true or false")
    return _json([_shown(s.to_dict()) for s in svc.silences.listing(datetime.now(UTC), ended == "true")])


@require_token
async def delete_silence(request: web.Request) -> web.Response:
    """End a silence now (the record stays, with ``ended_by``): what it held goes out at once."""
    svc = request.app[SVC]
    book = svc.silences
    silence = book.by_id[resolve_id(request.match_info["id"], book.by_id, "silence")]
    now = now_iso()
    if silence.ends > now:
        silence = replace(silence, starts=min(now, silence.starts), ends=now, ended_by=request[OPERATOR])
        await book.put(silence)
    held = await svc.release_silence(silence)
    return _json({**_shown(silence.to_dict()), "held_sent": held})


def add_desk_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/drafts", list_drafts)
    app.router.add_get("/api/v1/drafts/{id}", get_draft)
    app.router.add_post("/api/v1/drafts/{id}/approve", approve_draft)
    app.router.add_post("/api/v1/drafts/{id}/reject", reject_draft)
    app.router.add_post("/api/v1/silences", post_silence)
    app.router.add_get("/api/v1/silences", list_silences)
    app.router.add_delete("/api/v1/silences/{id}", delete_silence)
