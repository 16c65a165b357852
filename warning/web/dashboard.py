"""Operators' dashboard: the static page and the JSON/SSE endpoints it reads.

Routes (added to the API app by :func:`add_dashboard_routes`):

``GET /``                            the page (``static/index.html``)
``GET /static/{path}``               package files under ``warning/web/static/`` (no listing)
``GET /api/v1/events``               Server-Sent Events: ``snapshot`` on connect, then ``warning`` and
                                     ``receipt`` records as the service sees them; a comment every 15 s
``GET /api/v1/regions``              the region tree with its shapes, a GeoJSON FeatureCollection
``GET /api/v1/subscribers/health``   (token) delivery health per subscription, from the recent receipts

Region shapes are package files built once by ``warning/web/tools/build_shapes.py`` from npm packages; where
they come from is in ``static/SOURCES.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from warning.app import WarningService
from warning.shared.bus import now_iso
from warning.shared.records import Receipt
from warning.shared.regions import RegionTree
from warning.web.auth import SVC, error_response, require_token
from warning.web.console import health_response, subscription_name
from warning.web.views import public_receipt

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
HEARTBEAT_S = 15.0
QUEUE_MAX = 1000  # records buffered per SSE client before it is resynchronised with a fresh snapshot
SNAPSHOT_RECEIPTS = 50
CLOSING = web.AppKey("dashboard_closing", asyncio.Event)
SSE_CLIENTS = web.AppKey("sse_clients", set)  # id() of each open stream's request

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".geojson": "application/geo+json",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",  # the bundled CJK subset (static/SOURCES.md)
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",  # shown, not downloaded
}
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$")
_SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_PAGE_HEADERS = {
    **_SECURITY_HEADERS,
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                                "form-action 'none'"),
    "X-Frame-Options": "DENY",
}


# ------------------------------------------------------------------------------------------- static files


def _static_file(rel: str) -> Path | None:
    """The package file at ``rel`` under the static directory, or None (traversal, hidden, unknown type)."""
    if not _SAFE_PATH.match(rel) or ".." in rel.split("/"):
        return None
    path = (STATIC_DIR / rel).resolve()
    if STATIC_DIR not in path.parents or path.suffix.lower() not in CONTENT_TYPES or not path.is_file():
        return None
    return path


def _file_response(path: Path, request: web.Request, page: bool = False) -> web.Response:
    body = path.read_bytes()
    etag = f'"{len(body):x}-{int(path.stat().st_mtime_ns):x}"'
    headers = {**(_PAGE_HEADERS if page else _SECURITY_HEADERS), "Cache-Control": "no-cache", "ETag": etag}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    resp = web.Response(body=body, headers={**headers, "Content-Type": CONTENT_TYPES[path.suffix.lower()]})
    if len(body) > 4096 and path.suffix.lower() not in (".png", ".woff2"):  # both compressed already
        resp.enable_compression()
    return resp


async def index(request: web.Request) -> web.Response:
    return _file_response(STATIC_DIR / "index.html", request, page=True)


async def static_file(request: web.Request) -> web.Response:
    path = _static_file(request.match_info["path"])
    if path is None:
        raise web.HTTPNotFound(text="not found")
    return _file_response(path, request)


# ----------------------------------------------------------------------------------------------- SSE feed


def _snapshot(svc: WarningService) -> dict[str, Any]:
    """What a new SSE client gets first: every active warning plus the newest others, up to
    ``sse_snapshot_warnings`` in all (active ones first), and the last receipts in their public form."""
    active = svc.warnings.active()
    limit = max(svc.settings.sse_snapshot_warnings, len(active))
    newest = heapq.nlargest(limit, svc.warnings.latest.values(), key=lambda e: e["sent"])
    chosen = {e["id"]: e for e in active}
    for e in newest:
        if len(chosen) >= limit:
            break
        chosen.setdefault(e["id"], e)
    warnings = sorted(chosen.values(), key=lambda e: e["sent"], reverse=True)
    receipts = [named_receipt(svc, r) for r in list(svc.deliveries.recent)[-SNAPSHOT_RECEIPTS:]]
    return {"server_time": now_iso(), "warnings": warnings,
            "active": [e["warning_id"] for e in active], "receipts": receipts}


def named_receipt(svc: WarningService, record: Any) -> dict[str, Any]:
    """A receipt in its public form with the subscriber's name (the console names who, never an address)."""
    out = public_receipt(record)
    out["subscription_name"] = subscription_name(svc, out.get("subscription_id"))  # one dict lookup
    return out


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events; ``EventSource`` reconnects by itself and gets a fresh snapshot on every connect."""
    svc = request.app[SVC]
    clients = request.app[SSE_CLIENTS]
    if len(clients) >= svc.settings.sse_max_clients:
        resp = error_response(503, f"too many live-feed clients ({svc.settings.sse_max_clients}); retry later")
        resp.headers["Retry-After"] = "30"
        return resp
    clients.add(id(request))
    try:
        return await _stream(request, svc)
    finally:
        clients.discard(id(request))


async def _stream(request: web.Request, svc: WarningService) -> web.StreamResponse:
    closing = request.app[CLOSING]
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=QUEUE_MAX)
    overflow = asyncio.Event()

    def put(kind: str, record: dict[str, Any]) -> None:
        try:
            queue.put_nowait((kind, record))
        except asyncio.QueueFull:
            overflow.set()

    def listener(kind: str, record: dict[str, Any]) -> None:
        # listeners run on the service's loop today; call_soon_threadsafe keeps this right from a thread too
        out = named_receipt(svc, record) if kind == "receipt" else record
        loop.call_soon_threadsafe(put, kind, out)

    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no", **_SECURITY_HEADERS})
    svc.feed.listeners.append(listener)
    try:
        await resp.prepare(request)
        await resp.write(b"retry: 3000\n\n" + _sse("snapshot", _snapshot(svc)))
        while not closing.is_set():
            if overflow.is_set():  # a slow client: drop what it missed and resynchronise
                while not queue.empty():
                    queue.get_nowait()
                overflow.clear()
                await resp.write(_sse("snapshot", _snapshot(svc)))
                continue
            get = asyncio.ensure_future(queue.get())
            stop = asyncio.ensure_future(closing.wait())
            done, _ = await asyncio.wait({get, stop}, timeout=HEARTBEAT_S, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if get not in done:
                get.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await get
                if not done:
                    await resp.write(b": heartbeat\n\n")
                continue
            kind, record = get.result()
            await resp.write(_sse(kind, record))
    except (ConnectionResetError, ConnectionError):
        pass  # the browser went away
    finally:
        with contextlib.suppress(ValueError):
            svc.feed.listeners.remove(listener)
    return resp


async def _on_shutdown(app: web.Application) -> None:
    app[CLOSING].set()  # SSE streams end so the server's graceful shutdown need not wait for them


# ------------------------------------------------------------------------------------------------ regions


@lru_cache(maxsize=4)
def _regions_geojson(tree: RegionTree) -> bytes:
    shapes: dict[str, Any] = {}
    for name in ("gansu_prefectures.geojson", "gansu_counties.geojson"):
        path = STATIC_DIR / name
        if path.is_file():
            for f in orjson.loads(path.read_bytes())["features"]:
                shapes[str(f["properties"]["code"])] = f["geometry"]
        else:
            log.warning("dashboard: region shapes %s missing", path)
    features = []
    for r in sorted(tree.regions(), key=lambda r: r.code):
        features.append({"type": "Feature", "id": r.code,
                         "properties": {"code": r.code, "name": r.name, "name_zh": r.name_zh, "level": r.level,
                                        "parent_code": r.parent_code},
                         "geometry": shapes.get(r.code)})
    return orjson.dumps({"type": "FeatureCollection", "features": features})


async def regions(request: web.Request) -> web.Response:
    body = _regions_geojson(request.app[SVC].regions)
    resp = web.Response(body=body, headers={"Content-Type": "application/geo+json",
                                            "Cache-Control": "public, max-age=3600", **_SECURITY_HEADERS})
    resp.enable_compression()
    return resp


# ----------------------------------------------------------------------------------------- delivery health

DEAD_RESULTS = ("dead", "gone")


def subscriber_health(svc: WarningService) -> list[dict[str, Any]]:
    """Per subscription: its status by the delivery gate's own rule (``alerts.health.HealthTracker.status``), and
    from ``svc.deliveries.recent`` (this worker's last 2000 attempts) last success, failures since then, last error
    and the attempts that were parked as dead letters (``dead``/``gone`` results)."""
    now = time.time()
    by_sub: dict[str, list[Receipt]] = {}
    for r in svc.deliveries.recent:
        by_sub.setdefault(r["subscription_id"], []).append(r)
    out = []
    for sub in svc.subscriptions:
        receipts = sorted(by_sub.get(sub.id, []), key=lambda r: r["time"])  # ISO UTC: sorts as time
        last_ok = next((r for r in reversed(receipts) if r["result"] == "delivered"), None)
        failures = 0
        for r in reversed(receipts):
            if r["result"] == "delivered":
                break
            failures += 1
        last_err = next((r for r in reversed(receipts) if r["result"] != "delivered"), None)
        dead = sum(1 for r in receipts if r["result"] in DEAD_RESULTS)
        status = svc.health.status(sub.id, sub.active, now)
        out.append({
            "subscription_id": sub.id, "name": sub.name, "department": sub.department, "active": sub.active,
            "regions": sub.regions, "hazards": sub.hazards, "min_level": sub.min_level,
            "status": status, "attempts": len(receipts),
            "delivered": sum(1 for r in receipts if r["result"] == "delivered"),
            "last_success": last_ok["time"] if last_ok else None,
            "last_attempt": receipts[-1]["time"] if receipts else None,
            "consecutive_failures": failures,
            "last_error": (last_err.get("error") or last_err["result"]) if last_err else None,
            "last_error_time": last_err["time"] if last_err else None,
            "dead_letters": dead,
        })
    out.sort(key=lambda h: (h["status"] == "healthy", h["name"]))
    return out


@require_token
async def subscribers_health(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    return health_response(svc, subscriber_health(svc))


# ------------------------------------------------------------------------------------------------- wiring


def add_dashboard_routes(app: web.Application) -> None:
    app[CLOSING] = asyncio.Event()
    app[SSE_CLIENTS] = set()
    app.on_shutdown.append(_on_shutdown)
    app.router.add_get("/", index)
    app.router.add_get("/static/{path:.+}", static_file)
    app.router.add_get("/api/v1/events", events)
    app.router.add_get("/api/v1/regions", regions)
    app.router.add_get("/api/v1/subscribers/health", subscribers_health)
