"""What every handler module shares: the app keys (the wired service, the operator tokens), JSON replies, the
bearer-token check for writes and for anything that names a receiver, and the throttle on failed tokens.

A request that passes the check carries its operator's name in ``request[OPERATOR]`` (``operator`` for the main
token, else the name from ``<EWS_DATA_DIR>/tokens``). A client address that sent ``auth_failures`` wrong tokens
within ``auth_window_s`` gets 429 with Retry-After, without its token being checked, until the window has passed.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from warning.app import WarningService
from warning.operator_tokens import OperatorTokens

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SVC = web.AppKey("svc", WarningService)
TOKENS = web.AppKey("tokens", OperatorTokens)
OPERATOR = "ews.operator"  # request key: the name of the operator whose token it carried
MAX_TRACKED_CLIENTS = 10_000  # addresses with recent failures kept; the oldest are forgotten beyond


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, reason: str) -> web.Response:
    return json_response({"error": reason}, status)


class FailedTokens:
    """Failed token attempts per client address in a sliding window (bounded memory)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str, now: float | None = None) -> float | None:
        """Seconds until ``client`` may try a token again, or None when it may now."""
        now = time.monotonic() if now is None else now
        times = self._recent(client, now)
        if self.limit <= 0 or times is None or len(times) < self.limit:
            return None
        return times[-self.limit] + self.window_s - now

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        times = self._recent(client, now)
        if times is None:
            if len(self._failures) >= MAX_TRACKED_CLIENTS:
                self._failures.pop(next(iter(self._failures)))
            times = self._failures[client] = deque(maxlen=max(1, self.limit))
        times.append(now)


THROTTLE = web.AppKey("failed_tokens", FailedTokens)


def operator_of(request: web.Request) -> str | None:
    """The operator named by the request's bearer token, or None (no token, or a wrong one)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return None
    return request.app[TOKENS].identify(given)


def authorised(request: web.Request) -> bool:
    return operator_of(request) is not None


def _client(request: web.Request) -> str:
    return request.remote or "?"


def check_token(request: web.Request) -> web.Response | None:
    """None when the request carries a valid token (its operator then in ``request[OPERATOR]``), else the answer:
    429 for a throttled client, 401 otherwise (which counts as a failure against the client)."""
    throttle = request.app[THROTTLE]
    wait = throttle.retry_after(_client(request))
    if wait is not None:
        return web.Response(status=429, headers={"Retry-After": str(max(1, math.ceil(wait)))},
                            body=orjson.dumps({"error": "too many failed token attempts from this address; "
                                                        "retry later"}), content_type="application/json")
    name = operator_of(request)
    if name is None:
        throttle.failed(_client(request))
        return web.Response(status=401, headers={"WWW-Authenticate": 'Bearer realm="ews"'},
                            body=orjson.dumps({"error": "missing or wrong bearer token"}),
                            content_type="application/json")
    request[OPERATOR] = name
    return None


REQUIRES_TOKEN = "ews_requires_token"  # attribute set on the handlers require_token wraps (the API description)


def require_token(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        refused = check_token(request)
        if refused is not None:
            return refused
        return await handler(request)
    setattr(wrapped, REQUIRES_TOKEN, True)
    wrapped.__name__ = wrapped.__qualname__ = getattr(handler, "__name__", "handler")
    return wrapped
