"""Operator and subscription HTTP API (aiohttp). Reads need no token except subscriptions (they name
departments' endpoints); every write needs ``Authorization: Bearer <EWS_TOKEN>``."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from alerts.ssrf import DestinationRefused, check_destination
from alerts.subscriptions import SubscriptionError, new_subscription
from ingest.validate import ObservationError, format_time, parse_time, validate_forecast, validate_observation
from warning import metrics
from warning.app import WarningService, level_at_least
from warning.cap import atom_feed, render_cap

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SVC = web.AppKey("svc", WarningService)
TOKEN = web.AppKey("token", str)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, reason: str) -> web.Response:
    return _json({"error": reason}, status)


def _authorised(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              request.app[TOKEN].encode())


def require_token(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        if not _authorised(request):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Bearer realm="ews"'},
                                body=orjson.dumps({"error": "missing or wrong bearer token"}),
                                content_type="application/json")
        return await handler(request)
    return wrapped


async def _body_json(request: web.Request) -> Any:
    raw = await request.read()  # client_max_size caps this (413)
    try:
        return raw, orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(body=orjson.dumps({"error": f"body: invalid JSON ({exc})"}),
                                 content_type="application/json") from None


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    if svc.ready.is_set():
        return _json({"status": "ready"})
    return _json({"status": "starting"}, 503)


async def metrics_view(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@require_token
async def post_observations(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    _, body = await _body_json(request)
    items = body if isinstance(body, list) else [body]
    accepted, rejected = [], []
    for i, item in enumerate(items):
        try:
            obs = validate_observation(item, known_station=lambda s: s in svc.registry)
        except ObservationError as exc:
            rejected.append({"index": i, "reason": str(exc)})
            sid = item.get("station_id") if isinstance(item, dict) else None
            await svc.reject(json.dumps(item, default=str).encode(), str(exc), "push",
                             str(sid) if sid else "?")
            continue
        accepted.append(obs.to_dict())
    if accepted:
        await svc.publish_observations(accepted)
        metrics.OBS_IN.labels("push").inc(len(accepted))
    return _json({"accepted": len(accepted), "rejected": rejected}, 202)


@require_token
async def post_forecasts(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    _, body = await _body_json(request)
    items = body if isinstance(body, list) else [body]
    accepted, rejected = [], []
    for i, item in enumerate(items):
        try:
            accepted.append(validate_forecast(item, known_station=lambda s: s in svc.registry))
        except ObservationError as exc:
            rejected.append({"index": i, "reason": str(exc)})
            await svc.reject(json.dumps(item, default=str).encode(), str(exc), "push-forecast")
    if accepted:
        await svc.publish_forecasts(accepted)
    return _json({"accepted": len(accepted), "rejected": rejected}, 202)


@require_token
async def cancel_warning(request: web.Request) -> web.Response:
    last = await request.app[SVC].operator_cancel(request.match_info["id"])
    if last is None:
        return _error(404, "no such warning")
    return _json({"warning_id": last["warning_id"], "region_code": last["region_code"], "hazard": last["hazard"],
                  "status": "cancel requested"}, 202)


@require_token
async def post_subscription(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    _, body = await _body_json(request)
    try:
        sub = new_subscription(body, known_region=svc.regions.is_known, known_hazards=set(svc.rules))
        await check_destination(sub.url, svc.settings.webhook_allow_nets)
    except SubscriptionError as exc:
        return _error(400, str(exc))
    except DestinationRefused as exc:
        return _error(400, f"url: {exc}")
    await svc.put_subscription(sub, sub.id)
    return _json({**sub.public(), "id": sub.id, "secret": sub.secret}, 201)


@require_token
async def list_subscriptions(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    return _json([s.public() for s in svc.subscriptions])


@require_token
async def get_subscription(request: web.Request) -> web.Response:
    sub = request.app[SVC].subscriptions.get(request.match_info["id"])
    return _json(sub.public()) if sub else _error(404, "no such subscription")


@require_token
async def delete_subscription(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    sub_id = request.match_info["id"]
    if svc.subscriptions.get(sub_id) is None:
        return _error(404, "no such subscription")
    await svc.put_subscription(None, sub_id)
    return web.Response(status=204)


async def list_warnings(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    active = request.query.get("active", "false").lower() in ("1", "true", "yes")
    events = svc.active_warnings() if active else list(svc.warnings.values())
    hazard = request.query.get("hazard")
    region = request.query.get("region")
    level = request.query.get("level")
    since = request.query.get("since")
    if hazard:
        events = [e for e in events if e["hazard"] == hazard]
    if region:
        events = [e for e in events if svc.regions.covers(region, e["region_code"])]
    if level:
        try:
            events = [e for e in events if level_at_least(e["level"], level)]
        except ValueError as exc:
            return _error(400, f"level: {exc}")
    if since:
        try:
            t = format_time(parse_time(since, "since"))
        except ObservationError as exc:
            return _error(400, str(exc))
        events = [e for e in events if e["sent"] >= t]
    events.sort(key=lambda e: e["sent"], reverse=True)
    return _json(events)


async def get_warning(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    history = svc.warning_history.get(request.match_info["id"])
    if not history:
        return _error(404, "no such warning")
    receipts = [r for r in svc.recent_receipts if r["warning_id"] == request.match_info["id"]]
    return _json({"warning_id": request.match_info["id"], "events": history, "deliveries": receipts})


def _find_event(svc: WarningService, ident: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """An event by event id, or the latest event of a warning id; with the earlier events of its chain."""
    if ident in svc.warning_history:
        chain = svc.warning_history[ident]
        return chain[-1], chain[:-1]
    event = svc.events_by_id.get(ident)
    if event is None:
        return None
    chain = svc.warning_history.get(event["warning_id"], [])
    return event, [e for e in chain if e["seq"] < event["seq"]]


async def get_warning_cap(request: web.Request) -> web.Response:
    found = _find_event(request.app[SVC], request.match_info["id"])
    if found is None:
        return _error(404, "no such warning or event")
    event, earlier = found
    return web.Response(body=render_cap(event, referenced=earlier), content_type="application/cap+xml",
                        charset="utf-8")


async def cap_feed(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    base = f"{request.scheme}://{request.host}"
    events = [e for e in svc.active_warnings() if e.get("region_level", "county") == "county"]
    body = atom_feed(events, feed_url=base + "/api/v1/cap/feed.atom",
                     cap_url=lambda e: f"{base}/api/v1/warnings/{e['id']}.cap")
    return web.Response(body=body, content_type="application/atom+xml", charset="utf-8")


async def list_stations(request: web.Request) -> web.Response:
    return _json([s.to_dict() for s in request.app[SVC].registry])


def make_web_app(svc: WarningService, token: str) -> web.Application:
    app = web.Application(client_max_size=svc.settings.max_body_bytes)
    app[SVC] = svc
    app[TOKEN] = token
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_post("/api/v1/observations", post_observations)
    app.router.add_post("/api/v1/subscriptions", post_subscription)
    app.router.add_get("/api/v1/subscriptions", list_subscriptions)
    app.router.add_get("/api/v1/subscriptions/{id}", get_subscription)
    app.router.add_delete("/api/v1/subscriptions/{id}", delete_subscription)
    app.router.add_get("/api/v1/warnings", list_warnings)
    app.router.add_get(r"/api/v1/warnings/{id:[^/.]+}.cap", get_warning_cap)
    app.router.add_get("/api/v1/cap/feed.atom", cap_feed)
    app.router.add_get("/api/v1/warnings/{id}", get_warning)
    app.router.add_post("/api/v1/warnings/{id}/cancel", cancel_warning)
    app.router.add_post("/api/v1/forecasts", post_forecasts)
    app.router.add_get("/api/v1/stations", list_stations)
    from warning.web.dashboard import add_dashboard_routes

    add_dashboard_routes(app)
    return app
