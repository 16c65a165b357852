"""What every handler module shares: the app keys (the wired service, the operator token), JSON replies and the
bearer-token check for writes and for anything that names a receiver."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from warning.app import WarningService

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SVC = web.AppKey("svc", WarningService)
TOKEN = web.AppKey("token", str)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, reason: str) -> web.Response:
    return json_response({"error": reason}, status)


def authorised(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), request.app[TOKEN].encode())


def require_token(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        if not authorised(request):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Bearer realm="ews"'},
                                body=orjson.dumps({"error": "missing or wrong bearer token"}),
                                content_type="application/json")
        return await handler(request)
    return wrapped
