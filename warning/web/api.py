"""Operator and subscription HTTP API (aiohttp). Reads need no token except subscriptions (they name
departments' endpoints); every write needs ``Authorization: Bearer <EWS_TOKEN>`` (or a named operator token).

What a client may cost before it is refused (issue 17; figures in ``Settings``): request bodies up to
``max_body_bytes``, read within ``body_timeout_s`` (408), never inflated (``Content-Encoding`` other than identity
is 415, before authentication and before the body is read); at most ``max_items`` observations or forecast points a
request (413); headers within ``header_timeout_s`` of connecting (aiohttp's keep-alive timer closes the
connection); ``auth_failures`` wrong tokens per address per ``auth_window_s`` (then 429); the ``Server`` header
names no versions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web, web_response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from alerts.dispatch import HELD
from alerts.routing import matches
from alerts.ssrf import DestinationRefused, check_destination
from alerts.subscriptions import (
    DEFAULT_GRACE_S,
    Subscription,
    SubscriptionError,
    new_subscription,
    patched_subscription,
    paused_subscription,
    rotated_subscription,
)
from ingest.intake import safe_dump
from ingest.validate import ObservationError, validate_forecast, validate_observation
from warning.app import WarningService
from warning.drought_products import spi_product
from warning.operator_tokens import OperatorTokens, tokens_path
from warning.shared import metrics
from warning.shared.config import Settings
from warning.shared.records import ACTUAL, STATUSES
from warning.web.acks import add_ack_routes
from warning.web.api_docs import add_docs_routes
from warning.web.auth import (
    OPERATOR,
    REQUIRES_TOKEN,
    SVC,
    THROTTLE,
    TOKENS,
    FailedTokens,
    Handler,
    check_token,
    require_token,
)
from warning.web.auth import error_response as _error
from warning.web.auth import json_response as _json
from warning.web.bodies import body_json as _body_json
from warning.web.caching import PRIVATE
from warning.web.console import add_console_routes
from warning.web.dashboard import add_dashboard_routes
from warning.web.desk import add_desk_routes
from warning.web.feeds import add_feed_routes, warning_chain
from warning.web.ids import resolve_id


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    if svc.ready.is_set():
        return _json({"status": "ready"})
    return _json({"status": "starting"}, 503)


async def info(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    return _json({"service": "extreme-warning", "demo": svc.demo_label,
                  "broker": svc.broker_label, "memory_only": "memory only" in svc.broker_label,
                  "hazards": sorted(svc.rules), "stations": len(svc.registry)})


async def metrics_view(request: web.Request) -> web.Response:
    if request.app[SVC].settings.metrics_token_required and (refused := check_token(request)) is not None:
        return refused
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _item_status(item: Any, default: str) -> str:
    """An item's ``status`` (taken out of it: the record schemas do not carry it), else ``default``."""
    if not isinstance(item, dict) or "status" not in item:
        return default
    status = item.pop("status")
    if status not in STATUSES:
        raise ObservationError(f"status: one of {', '.join(STATUSES)}")
    return str(status)


async def _accept_items(request: web.Request, validate: Callable[[Any], dict[str, Any]],
                        publish: Callable[[list[dict[str, Any]], str], Awaitable[None]], source: str
                        ) -> web.Response:
    """One object or a list: valid items are published, invalid ones answered with a reason naming the field
    and kept in obs.rejected (with the HTTP peer); 202 either way. Each item's ``status`` (actual, exercise or
    test), else ``?status=``, else actual: items of each status go out as batches of that status."""
    svc = request.app[SVC]
    default = request.query.get("status", ACTUAL)
    if default not in STATUSES:
        return _error(400, f"status: one of {', '.join(STATUSES)}")
    _, body = await _body_json(request)
    items = body if isinstance(body, list) else [body]
    if len(items) > svc.settings.max_items:
        return _error(413, f"body: {len(items)} items; at most {svc.settings.max_items} a request "
                           "(EWS_MAX_ITEMS): split the batch")
    accepted: dict[str, list[dict[str, Any]]] = {}
    rejected = []
    for i, item in enumerate(items):
        try:
            status = _item_status(item, default)
            accepted.setdefault(status, []).append(validate(item))
        except ObservationError as exc:
            rejected.append({"index": i, "reason": str(exc)})
            sid = item.get("station_id") if isinstance(item, dict) else None
            key = str(sid)[:64] if sid else "?"
            await svc.intake.reject(safe_dump(item), str(exc), f"{source} from {request.remote}", key)
    for status, batch in accepted.items():
        await publish(batch, status)
    return _json({"accepted": sum(map(len, accepted.values())), "rejected": rejected}, 202)


@require_token
async def post_observations(request: web.Request) -> web.Response:
    svc = request.app[SVC]

    def validate(item: Any) -> dict[str, Any]:
        return validate_observation(item, known_station=svc.registry.__contains__).to_dict()

    async def publish(accepted: list[dict[str, Any]], status: str) -> None:
        await svc.intake.publish_observations(accepted, status)
        metrics.OBS_IN.labels("push", status).inc(len(accepted))

    return await _accept_items(request, validate, publish, "push")


@require_token
async def post_forecasts(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    return await _accept_items(request, lambda item: validate_forecast(item, known_station=svc.registry.__contains__),
                               svc.intake.publish_forecasts, "push-forecast")


@require_token
async def cancel_warning(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    history = warning_chain(svc, request.match_info["id"])
    if not history:
        return _error(404, f"no such warning: no id or id prefix {request.match_info['id']!r}")
    last = history[-1]
    await svc.grade.operator_cancel(last, request[OPERATOR])
    return _json({"warning_id": last["warning_id"], "region_code": last["region_code"], "hazard": last["hazard"],
                  "status": "cancel requested"}, 202)


@require_token
async def post_subscription(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    _, body = await _body_json(request)
    try:
        backfill = _backfill_option(body)
        sub = new_subscription(body, **_known(svc))
        await check_destination(sub.url, svc.settings.webhook_allow_nets)
    except SubscriptionError as exc:
        return _error(400, str(exc))
    except DestinationRefused as exc:
        return _error(400, f"url: {exc}")
    await svc.subscriptions.put(sub, sub.id)
    backfilled = await _backfill(svc, sub) if backfill else 0
    return _json({**sub.public(), "id": sub.id, "secret": sub.secret, "backfill": backfilled}, 201)


def _backfill_option(body: Any) -> bool:
    """The create / resume body's ``backfill`` (default true), taken out of the subscription's fields."""
    if not isinstance(body, dict) or "backfill" not in body:
        return True
    value = body.pop("backfill")
    if not isinstance(value, bool):
        raise SubscriptionError("backfill: true or false")
    return value


async def _backfill(svc: WarningService, sub: Subscription) -> int:
    """The active county warnings ``sub`` matches go to it as ``warning.alert`` with ``backfill: true`` (through
    the grade agent, which checks each is still current). Returns how many were asked for."""
    events = [e for e in svc.warnings.active() if e.get("region_level", "county") == "county"
              and matches(sub, e, svc.regions.covers)]
    if events:
        await svc.grade.request_backfill(events, sub.id)
    return len(events)


@require_token
async def list_subscriptions(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    return _json([s.public() for s in svc.subscriptions])


@require_token
async def get_subscription(request: web.Request) -> web.Response:
    return _json(_subscription(request).public())


def _subscription(request: web.Request) -> Subscription:
    """The subscription named in the path (its id or a unique prefix), or a 404 / 400 answer."""
    subs = request.app[SVC].subscriptions
    sub = subs.get(resolve_id(request.match_info["id"], (s.id for s in subs), "subscription"))
    assert sub is not None
    return sub


async def _optional_body(request: web.Request) -> Any:
    """A JSON body when one was sent, else {}."""
    if not request.can_read_body:
        return {}
    _, body = await _body_json(request)
    return body


def _known(svc: WarningService) -> dict[str, Any]:
    return {"known_region": svc.regions.is_known, "known_hazards": set(svc.rules),
            "max_list_items": svc.settings.max_list_items}


@require_token
async def patch_subscription(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    sub = _subscription(request)
    _, body = await _body_json(request)
    try:
        new = patched_subscription(sub, body, **_known(svc))
        if new.url != sub.url:
            await check_destination(new.url, svc.settings.webhook_allow_nets)
    except SubscriptionError as exc:
        return _error(400, str(exc))
    except DestinationRefused as exc:
        return _error(400, f"url: {exc}")
    await svc.subscriptions.put(new, new.id)
    return _json(new.public())


def _set_active(active: bool) -> Handler:
    @require_token
    async def handler(request: web.Request) -> web.Response:
        svc = request.app[SVC]
        sub = _subscription(request)
        try:
            backfill = _backfill_option(await _optional_body(request)) if active else False
        except SubscriptionError as exc:
            return _error(400, str(exc))
        new = paused_subscription(sub, active, None if active else "paused by operator")
        await svc.subscriptions.put(new, new.id)
        if not active:
            return _json(new.public())
        # deliveries held while it was paused go out first, in the order they were held; then the active
        # warnings it has not had (the grade agent skips those it received)
        held = await svc.dead_letters.redrive(new.id, reason_prefix=HELD)
        backfilled = await _backfill(svc, new) if backfill else 0
        return _json({**new.public(), "held_sent": held, "backfill": backfilled})
    return handler


@require_token
async def rotate_secret(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    sub = _subscription(request)
    body = await _optional_body(request)
    grace = body.get("grace_s", DEFAULT_GRACE_S) if isinstance(body, dict) else None
    if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace <= 30 * 86400:
        return _error(400, "grace_s: seconds in [0, 2592000]")
    new = rotated_subscription(sub, float(grace))
    await svc.subscriptions.put(new, new.id)
    return _json({"id": new.id, "secret": new.secret, "previous_secret_expires": new.previous_secret_expires})


@require_token
async def subscription_deliveries(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    sub_id = _subscription(request).id
    try:
        limit = max(1, min(1000, int(request.query.get("limit", "100"))))
    except ValueError:
        return _error(400, "limit: an integer")
    receipts = list(svc.deliveries.by_sub.get(sub_id, []))[-limit:]
    return _json(receipts[::-1])


@require_token
async def list_dead_letters(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    sub_id = request.query.get("subscription_id")
    if sub_id:
        sub_id = _known_subscription(svc, sub_id)
    out = [d for d in svc.dead_letters.parked.values() if not sub_id or d.get("subscription_id") == sub_id]
    return _json(sorted(out, key=lambda d: d.get("parked_at", ""), reverse=True))


@require_token
async def redrive_dead_letters(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    body = await _optional_body(request)
    sub_id = body.get("subscription_id") if isinstance(body, dict) else None
    if sub_id is not None and not isinstance(sub_id, str):
        return _error(400, "subscription_id: a string")
    if sub_id is not None:
        sub_id = _known_subscription(svc, sub_id)
    return _json({"redriven": await svc.dead_letters.redrive(sub_id)})


def _known_subscription(svc: WarningService, given: str) -> str:
    """A subscription id (or unique prefix) among the subscriptions and the parked deliveries' owners (a deleted
    subscription's letters can still be listed and redriven)."""
    owners = {str(d.get("subscription_id")) for d in svc.dead_letters.parked.values()}
    return resolve_id(given, owners | {s.id for s in svc.subscriptions}, "subscription")


@require_token
async def delete_subscription(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    sub_id = _subscription(request).id
    await svc.subscriptions.put(None, sub_id)
    return web.Response(status=204)


async def drought_spi(request: web.Request) -> web.Response:
    """Monthly SPI drought monitoring (information product) from this worker's station states."""
    svc = request.app[SVC]
    states = svc.intake.store.daily_precip_states()
    names = {s.station_id: s.name_zh or s.name for s in svc.registry}
    return _json(spi_product(states, svc.climatology, names))


async def list_stations(request: web.Request) -> web.Response:
    return _json([s.to_dict() for s in request.app[SVC].registry])


SERVER_HEADER = "ews"  # instead of aiohttp's "Python/3.x aiohttp/3.x"
# aiohttp answers a request it cannot parse (400) before any middleware runs, with its default Server header
web_response.SERVER_SOFTWARE = SERVER_HEADER


def server_options(settings: Settings) -> dict[str, Any]:
    """aiohttp server (``AppRunner``) options: bodies are never inflated (compressed ones are refused by
    ``refuse_encoded_bodies``), and a connection that has not delivered a request's headers within
    ``header_timeout_s`` of connecting (or of its last answer) is closed: aiohttp's keep-alive timer is not
    reset by incoming bytes, so it bounds half-sent requests as well as idle ones."""
    return {"auto_decompress": False, "keepalive_timeout": settings.header_timeout_s}


@web.middleware
async def refuse_encoded_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    """415 for a compressed (any ``Content-Encoding`` but identity) request body, before authentication and
    before a byte of it is read: a 1 MiB gzip body can inflate to 1 GiB."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        resp = _error(415, "Content-Encoding: compressed request bodies are not accepted; send identity")
        resp.force_close()
        return resp
    return await handler(request)


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``Server: ews``; and no cache keeps what a token-protected route answers (receivers' endpoints, their
    deliveries, dead letters) unless the handler said otherwise."""
    response.headers["Server"] = SERVER_HEADER
    if "Cache-Control" not in response.headers and (
            getattr(request.match_info.route.handler, REQUIRES_TOKEN, False) or "Authorization" in request.headers):
        response.headers["Cache-Control"] = PRIVATE


def make_web_app(svc: WarningService, token: str) -> web.Application:
    app = web.Application(client_max_size=svc.settings.max_body_bytes, middlewares=[refuse_encoded_bodies])
    app[SVC] = svc
    app[TOKENS] = OperatorTokens(token, tokens_path(svc.settings))
    app[THROTTLE] = FailedTokens(svc.settings.auth_failures, svc.settings.auth_window_s)
    app.on_response_prepare.append(_common_headers)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/api/v1/info", info)
    app.router.add_post("/api/v1/observations", post_observations)
    app.router.add_post("/api/v1/subscriptions", post_subscription)
    app.router.add_get("/api/v1/subscriptions", list_subscriptions)
    app.router.add_get("/api/v1/subscriptions/{id}", get_subscription)
    app.router.add_delete("/api/v1/subscriptions/{id}", delete_subscription)
    app.router.add_patch("/api/v1/subscriptions/{id}", patch_subscription)
    app.router.add_post("/api/v1/subscriptions/{id}/pause", _set_active(False))
    app.router.add_post("/api/v1/subscriptions/{id}/resume", _set_active(True))
    app.router.add_post("/api/v1/subscriptions/{id}/rotate-secret", rotate_secret)
    app.router.add_get("/api/v1/subscriptions/{id}/deliveries", subscription_deliveries)
    app.router.add_get("/api/v1/dead-letters", list_dead_letters)
    app.router.add_post("/api/v1/dead-letters/redrive", redrive_dead_letters)
    add_feed_routes(app)
    add_ack_routes(app)
    add_docs_routes(app)
    app.router.add_post("/api/v1/warnings/{id}/cancel", cancel_warning)
    app.router.add_post("/api/v1/forecasts", post_forecasts)
    app.router.add_get("/api/v1/stations", list_stations)
    app.router.add_get("/api/v1/drought/spi", drought_spi)
    add_desk_routes(app)
    add_dashboard_routes(app)
    add_console_routes(app)
    return app
