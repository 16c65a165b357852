"""Isolation between receivers (issue 17 point 1): a receiver answering 503 with a huge Retry-After never holds
the retry tiers' slots another department's retries need, deleting its subscription releases its pending
deliveries at once, and a graceful stop with them pending finishes within 10 s and loses none. Real broker,
real HTTP, short retry tiers (the last one 2.4 s, so the hostile deliveries wait there capped at 3600 s)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import FAST, WebhookReceiver, hot, one_station_per_county, start_ews, until, wait_ready
from warning.broker import EmbeddedBroker
from warning.launch import EwsProcess

N = 8  # warnings: twice the 4 slots of a retry tier


@pytest.fixture
def ews_env() -> dict[str, str]:
    return FAST


@pytest.fixture
async def hostile() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver("hostile", 503, retry_after="100000") as rec:
        yield rec


@pytest.fixture
async def healthy() -> AsyncIterator[WebhookReceiver]:
    """Answers the first copy of every webhook 503 with Retry-After: 2 (so its retry goes to the last tier, the
    hostile one's), then 204."""
    rec = WebhookReceiver("healthy", retry_after="2")

    def answer() -> int:
        headers = rec.received[-1]["headers"]
        wid = headers.get("webhook-id") or headers.get("Webhook-Id", "?")
        return 503 if rec.by_id[wid] == 1 else 204

    rec.mode = answer
    async with rec:
        yield rec


async def call(s: aiohttp.ClientSession, ews: EwsProcess, method: str, path: str, body: object = None) -> Any:
    async with s.request(method, ews.url + path, json=body, headers=ews.headers()) as r:
        assert r.status < 300, f"{method} {path}: {r.status} {await r.text()}"
        return await r.json() if r.status != 204 else None


async def subscribe(s: aiohttp.ClientSession, ews: EwsProcess, rec: WebhookReceiver, department: str) -> str:
    sub = await call(s, ews, "POST", "/api/v1/subscriptions",
                     {"name": rec.name, "department": department, "url": rec.url, "regions": ["620000"]})
    rec.sub_id = sub["id"]
    return str(sub["id"])


async def deleted_letters(s: aiohttp.ClientSession, ews: EwsProcess, sub_id: str) -> list[dict[str, Any]]:
    dead = await call(s, ews, "GET", "/api/v1/dead-letters")  # by id: 404 until the deleted one has a letter
    return [d for d in dead if d.get("subscription_id") == sub_id
            and "subscription deleted" in str(d.get("last_error", ""))]


def retry_latencies(rec: WebhookReceiver) -> list[float]:
    """Per webhook id: seconds from its first (503) answer to its first 204."""
    out = []
    for answers in rec.history.values():
        first = answers[0][0]
        ok = [t for t, a in answers if a == "204"]
        if ok:
            out.append(ok[0] - first)
    return sorted(out)


async def test_hostile_retry_after_does_not_hold_the_tiers_and_delete_releases(
        ews: EwsProcess, hostile: WebhookReceiver, healthy: WebhookReceiver) -> None:
    stations = one_station_per_county(N)
    async with aiohttp.ClientSession() as s:
        bad = await subscribe(s, ews, hostile, "other")
        await subscribe(s, ews, healthy, "relief")
        await call(s, ews, "POST", "/api/v1/observations", hot(stations, datetime.now(UTC) - timedelta(hours=1)))
        assert await until(lambda: len(healthy.ok) >= N, 60), \
            f"healthy got {len(healthy.ok)} of {N} while hostile deliveries wait: {healthy.answers}"
        assert len(hostile.by_id) == N and hostile.requests == N  # all still pending (capped at 3600 s)
        lat = retry_latencies(healthy)
        print(f"healthy retries through the hostile receiver's tier: {len(lat)} delivered, first 503 -> 204 "
              f"max {lat[-1]:.2f} s (Retry-After 2 s, tier 2.4 s)")
        assert lat[-1] < 20
        t0 = time.monotonic()
        await call(s, ews, "DELETE", f"/api/v1/subscriptions/{bad}")
        letters: list[dict[str, Any]] = []

        async def parked() -> bool:
            letters[:] = await deleted_letters(s, ews, bad)
            return len(letters) >= N

        deadline = time.monotonic() + 10
        while not await parked() and time.monotonic() < deadline:
            await until(lambda: False, 0.2)
        released_s = time.monotonic() - t0
    print(f"deleting the hostile subscription parked {len(letters)} pending deliveries in {released_s:.1f} s")
    assert len(letters) == N, f"{len(letters)} of {N} parked 'subscription deleted' after {released_s:.1f} s"
    assert released_s < 10


async def test_sigterm_with_hostile_deliveries_pending_stops_fast_and_loses_none(
        broker: EmbeddedBroker, tmp_path: Path, hostile: WebhookReceiver) -> None:
    """Pending: 8 deliveries waiting for a capped Retry-After, and POSTs in flight to a receiver that answers after
    35 s (webhook timeout 30 s; 4 at once, the others wait in the retry tiers as "endpoint busy"). SIGTERM exits
    within 10 s; after the restart, all are still there."""
    env = {**FAST, "KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-iso",
           "EWS_WEBHOOK_TIMEOUT": "30"}
    stations = one_station_per_county(N)
    ews = start_ews(tmp_path, env)
    async with WebhookReceiver("slow", 204, delay_s=35) as slow:
        try:
            await wait_ready(ews)
            async with aiohttp.ClientSession() as s:
                bad = await subscribe(s, ews, hostile, "other")
                await subscribe(s, ews, slow, "relief")
                await call(s, ews, "POST", "/api/v1/observations",
                           hot(stations, datetime.now(UTC) - timedelta(hours=1)))
                assert await until(lambda: len(hostile.by_id) >= N and len(slow.by_id) >= 4, 60), \
                    f"hostile got {len(hostile.by_id)}, slow {len(slow.by_id)} of {N}"
                await until(lambda: False, 4.0)  # past the 2.4 s tier: every hostile one waits in the room
        finally:
            t0 = time.monotonic()
            code = ews.stop()
            stop_s = time.monotonic() - t0
        print(f"SIGTERM with {N} hostile deliveries waiting and {len(slow.by_id)} slow POSTs in flight: "
              f"stopped in {stop_s:.1f} s (code {code})")
        assert code == 0 and stop_s < 10, f"stop took {stop_s:.1f} s, code {code}:\n{ews.output()[-3000:]}"
        slow.delay_s = 0
        ews = start_ews(tmp_path, env)
        try:
            await wait_ready(ews)
            assert await until(lambda: len(slow.ok) >= N, 60), f"slow: {len(slow.ok)} of {N} after the restart"
            async with aiohttp.ClientSession() as s:
                await call(s, ews, "DELETE", f"/api/v1/subscriptions/{bad}")
                letters: list[dict[str, Any]] = []
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    letters = await deleted_letters(s, ews, bad)
                    if len({d["webhook_id"] for d in letters}) >= N:
                        break
                    await until(lambda: False, 0.3)
        finally:
            assert ews.stop() == 0
    assert len({d["webhook_id"] for d in letters}) == N, f"{len(letters)} parked after the restart: lost some"
