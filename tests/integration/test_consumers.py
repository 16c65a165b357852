"""For the systems that consume warnings (issue 19), against a running service over real HTTP: the webhook
envelope's ``timestamp`` is the event's time on every attempt; the ATOM feed keeps updates and cancels; ETags,
Last-Modified and 304s; the warnings list's filters and cursor."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from tests.support import FAST, WebhookReceiver, hot, one_station_per_county
from warning.launch import EwsProcess


@pytest.fixture
def ews_env() -> dict[str, str]:
    return {**FAST, "EWS_PUBLIC_URL": "https://ews.example.cn/base"}


async def call(s: aiohttp.ClientSession, ews: EwsProcess, method: str, path: str, body: object = None) -> Any:
    async with s.request(method, ews.url + path, json=body, headers=ews.headers()) as r:
        assert r.status < 300, f"{method} {path}: {r.status} {await r.text()}"
        return await r.json() if r.status != 204 else None


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_envelope_timestamp_is_the_events_time_on_every_attempt(ews: EwsProcess) -> None:
    """The first attempt answered 503, the retry 204: one webhook-id, the same body (``timestamp`` = the event's
    ``sent``), each attempt's own ``webhook-timestamp`` header, and both verify with the official
    ``standardwebhooks`` library."""
    answers = itertools.chain([503], itertools.repeat(204))
    async with WebhookReceiver("once 503", mode=lambda: next(answers)) as rec, aiohttp.ClientSession() as s:
        sub = await call(s, ews, "POST", "/api/v1/subscriptions",
                         {"name": "retry", "department": "health", "url": rec.url, "regions": ["620000"]})
        [station] = one_station_per_county(1)
        await call(s, ews, "POST", "/api/v1/observations", hot([station], datetime.now(UTC) - timedelta(hours=1)))
        first, second = await rec.wait_for(2, timeout_s=60)
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert first["body"] == second["body"]
    envelope = orjson.loads(first["body"])
    assert envelope["timestamp"] == envelope["data"]["sent"]
    for attempt in (first, second):
        header_ts = int(attempt["headers"]["webhook-timestamp"])
        assert abs(header_ts - attempt["time"]) < 5  # the attempt's time (a failure bound, not a timing claim)
        Webhook(sub["secret"]).verify(attempt["body"], attempt["headers"])
