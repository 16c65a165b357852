"""The console's public reads (issue 20, point 4): delivery health without the token.

``GET /api/v1/delivery-health``  per subscription (its name and department only): webhooks delivered, still
                                 retrying and parked (dead letters), the last attempt's outcome class and time,
                                 from this worker's recent receipts. Never an id, an endpoint, a URL or a host: a
                                 department's receiver address is the operator's business (issue 17).
``GET /api/v1/stations/latest``  every station's latest values and its last days (``warning.station_values``: a
                                 mirror of the compacted ``stations.latest`` topic, so any worker answers).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from warning.app import WarningService
from warning.shared.bus import now_iso
from warning.web.auth import SVC
from warning.web.views import public_receipt

PARKED = ("dead", "gone")


def public_delivery_health(svc: WarningService) -> list[dict[str, Any]]:
    """Per subscription: each webhook (``webhook_id``) counted once, by its newest attempt's result."""
    latest: dict[str, dict[str, Any]] = {}  # webhook_id -> its newest receipt
    for receipt in svc.deliveries.recent:
        prev = latest.get(receipt["webhook_id"])
        if prev is None or (receipt["time"], receipt["attempt"]) >= (prev["time"], prev["attempt"]):
            latest[receipt["webhook_id"]] = dict(receipt)
    per_sub: dict[str, list[dict[str, Any]]] = {}
    for r in latest.values():
        per_sub.setdefault(r["subscription_id"], []).append(r)
    out: list[dict[str, Any]] = []
    for sub in svc.subscriptions:
        mine = per_sub.get(sub.id, [])
        last = max(mine, key=lambda r: r["time"], default=None)
        out.append({
            "name": sub.name, "department": sub.department, "active": sub.active,
            "delivered": sum(1 for r in mine if r["result"] == "delivered"),
            "retrying": sum(1 for r in mine if r["result"] == "retry"),
            "parked": sum(1 for r in mine if r["result"] in PARKED),
            "last_result": last["result"] if last else None,
            "last_outcome": (public_receipt(last)["error"] or last["result"]) if last else None,
            "last_time": last["time"] if last else None,
        })
    out.sort(key=lambda h: (-(int(h["parked"]) + int(h["retrying"])), str(h["department"]), str(h["name"])))
    return out


def health_response(svc: WarningService, subscribers: list[dict[str, Any]]) -> web.Response:
    """A delivery-health answer (public or with the token): never cached, it is the live state."""
    body = {"time": now_iso(), "receipts_window": len(svc.deliveries.recent), "subscribers": subscribers}
    return web.Response(body=orjson.dumps(body), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def delivery_health(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    return health_response(svc, public_delivery_health(svc))


def subscription_name(svc: WarningService, sub_id: Any) -> str:
    """The subscriber's name for a receipt shown on the console (names, not ids); "" for a deleted one."""
    sub = svc.subscriptions.get(str(sub_id))
    return sub.name if sub else ""


async def stations_latest(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    body = {"time": now_iso(), "publish_every_s": svc.settings.station_values_s,
            "stations": svc.station_values.stations()}
    return web.Response(body=orjson.dumps(body), content_type="application/json",
                        headers={"Cache-Control": "public, max-age=30"})


def add_console_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/delivery-health", delivery_health)
    app.router.add_get("/api/v1/stations/latest", stations_latest)
