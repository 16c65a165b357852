"""Nothing lost: a paused subscription's deliveries are held and sent, in order, on resume; a new or resumed
subscription receives the active warnings it matches (backfill); ids are taken whole or as a unique prefix, and
an unknown or ambiguous one is an error with its reason."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson

from tests.support import WebhookReceiver
from warning.launch import EwsProcess


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


async def call(s: aiohttp.ClientSession, ews: EwsProcess, method: str, path: str, body: Any = None,
               status: int | None = None) -> Any:
    async with s.request(method, ews.url + path, json=body, headers=ews.headers()) as r:
        if status is not None:
            assert r.status == status, await r.text()
        else:
            assert r.status < 300, await r.text()
        return await r.json() if r.status != 204 else None


def subscription(url: str, name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "department": "health", "url": url, "regions": ["620000"], "hazards": ["heat"], **kw}


async def test_pause_holds_and_resume_sends_in_order(ews: EwsProcess, receiver: WebhookReceiver) -> None:
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    async with aiohttp.ClientSession() as s:
        sub = await call(s, ews, "POST", "/api/v1/subscriptions", subscription(receiver.url, "held"))
        await call(s, ews, "POST", f"/api/v1/subscriptions/{sub['id']}/pause")
        await call(s, ews, "POST", "/api/v1/observations", {"station_id": "52533", "time": iso(t), "tmax_c": 37.5})
        await call(s, ews, "POST", "/api/v1/observations",
                   {"station_id": "52533", "time": iso(t + timedelta(hours=1)), "tmax_c": 40.1})
        for _ in range(200):
            held = await call(s, ews, "GET", f"/api/v1/dead-letters?subscription_id={sub['id'][:8]}")
            if len(held) >= 2:
                break
            await asyncio.sleep(0.1)
        assert len(held) == 2 and all(d["last_error"].startswith("subscription paused") for d in held)
        assert receiver.received == []
        resumed = await call(s, ews, "POST", f"/api/v1/subscriptions/{sub['id'][:8]}/resume")
        got = await receiver.wait_for(2)
    assert resumed["held_sent"] == 2 and resumed["active"] is True
    assert sorted(g["headers"]["webhook-id"] for g in got) == sorted(d["webhook_id"] for d in held)
    types = [orjson.loads(g["body"])["type"] for g in got]
    assert sorted(types) == ["warning.alert", "warning.update"]


async def test_a_new_subscription_gets_the_active_warnings_unless_it_says_not(ews: EwsProcess,
                                                                           receiver: WebhookReceiver) -> None:
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    async with aiohttp.ClientSession() as s:
        await call(s, ews, "POST", "/api/v1/observations", {"station_id": "52418", "time": iso(t), "tmax_c": 40.6})
        for _ in range(200):
            active = await call(s, ews, "GET", "/api/v1/warnings?active=true")
            if any(w["region_code"] == "620982" for w in active):
                break
            await asyncio.sleep(0.1)
        quiet = await call(s, ews, "POST", "/api/v1/subscriptions",
                           subscription(receiver.url + "?quiet", "no backfill", backfill=False))
        late = await call(s, ews, "POST", "/api/v1/subscriptions", subscription(receiver.url, "late"))
        [got] = await receiver.wait_for(1)
        await asyncio.sleep(1.0)  # time for a wrong second delivery (to the subscription that said no)
    assert quiet["backfill"] == 0 and late["backfill"] == 1
    assert len(receiver.received) == 1 and got["path"] == "/hook" and "quiet" not in str(got.get("query", ""))
    msg = orjson.loads(got["body"])
    assert msg["type"] == "warning.alert" and msg["backfill"] is True
    assert (msg["data"]["region_code"], msg["data"]["level"]) == ("620982", "red")


async def test_ids_whole_or_unique_prefix_unknown_404_ambiguous_400(ews: EwsProcess, receiver: WebhookReceiver) -> None:
    async with aiohttp.ClientSession() as s:
        subs = [await call(s, ews, "POST", "/api/v1/subscriptions", subscription(receiver.url, f"s{i}"))
                for i in range(40)]  # 40 random uuids: some share a first hex digit
        ids = [x["id"] for x in subs]
        shared = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1)
        one = ids[0]
        prefix = next(one[:n] for n in range(1, 36) if sum(i.startswith(one[:n]) for i in ids) == 1)
        assert (await call(s, ews, "GET", f"/api/v1/subscriptions/{prefix}"))["id"] == one
        missing = await call(s, ews, "GET", "/api/v1/subscriptions/ffffffff-no-such", status=404)
        ambiguous = await call(s, ews, "GET", f"/api/v1/subscriptions/{shared}", status=400)
        redrive_missing = await call(s, ews, "POST", "/api/v1/dead-letters/redrive", {"subscription_id": "zzz"},
                                     status=404)
        redrive_ambiguous = await call(s, ews, "POST", "/api/v1/dead-letters/redrive", {"subscription_id": shared},
                                       status=400)
        assert (await call(s, ews, "POST", "/api/v1/dead-letters/redrive", {"subscription_id": prefix})
                ) == {"redriven": 0}
        warning_missing = await call(s, ews, "GET", "/api/v1/warnings/no-such-warning", status=404)
    assert "no such subscription" in missing["error"] and "ambiguous" in ambiguous["error"]
    assert "zzz" in redrive_missing["error"] and "ambiguous" in redrive_ambiguous["error"]
    assert "no such warning" in warning_missing["error"]
