"""Reading a request's JSON body within the API's limits: its size (aiohttp's ``client_max_size``: 413), the
time to receive it (``body_timeout_s``: 408) and valid JSON (400)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from warning.web.auth import SVC


async def body_json(request: web.Request) -> Any:
    try:
        async with asyncio.timeout(request.app[SVC].settings.body_timeout_s):
            raw = await request.read()  # client_max_size caps this (413)
    except TimeoutError:
        raise web.HTTPRequestTimeout(body=orjson.dumps({"error": "body: not received in time"}),
                                     content_type="application/json", headers={"Connection": "close"}) from None
    try:
        return raw, orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(body=orjson.dumps({"error": f"body: invalid JSON ({exc})"}),
                                 content_type="application/json") from None
