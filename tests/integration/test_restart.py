"""A restarted worker on the same cluster still has its subscriptions (compacted topic), and `ews run` with
KAFKA_BOOTSTRAP set starts no broker of its own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson

from tests.support import WebhookReceiver, start_ews, wait_ready
from warning.broker import EmbeddedBroker


async def test_subscriptions_survive_a_worker_restart(broker: EmbeddedBroker, tmp_path: Path) -> None:
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-restart"}
    first = start_ews(tmp_path, env)
    try:
        await wait_ready(first)
        body = {"name": "water dept", "department": "water", "url": "http://127.0.0.1:9/h", "regions": ["620100"],
                "hazards": ["heat"]}
        async with aiohttp.ClientSession() as s, s.post(first.url + "/api/v1/subscriptions",
                                                        headers=first.headers(), json=body) as r:
            assert r.status == 201
            created = await r.json()
    finally:
        assert first.stop() == 0
    assert "embedded broker" not in first.output()
    second = start_ews(tmp_path, env)
    try:
        await wait_ready(second)
        async with aiohttp.ClientSession() as s:
            for _ in range(50):  # the mirror reads the topic from the start in the background
                async with s.get(second.url + "/api/v1/subscriptions", headers=second.headers()) as r:
                    listed = await r.json()
                if listed:
                    break
                await asyncio.sleep(0.1)
    finally:
        assert second.stop() == 0
    assert [(x["id"], x["department"], x["regions"]) for x in listed] == [(created["id"], "water", ["620100"])]


async def test_station_state_survives_a_worker_restart(broker: EmbeddedBroker, tmp_path: Path, receiver: WebhookReceiver
                                                       ) -> None:
    """Yellow heat needs Tmax >= 35 on 3 consecutive days: two days before a clean restart, the third after it.
    The restarted worker has committed past the first two reports, so only the recovered columnar station state
    (the station_columns changelog, raw LZ4 blocks) can supply them."""
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-state-restart"}
    today = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0)
    if today > datetime.now(UTC):
        today -= timedelta(days=1)
    day = [(today - timedelta(days=k)).strftime("%Y-%m-%dT%H:%M:%SZ") for k in (2, 1, 0)]
    first = start_ews(tmp_path, env)
    try:
        await wait_ready(first)
        async with aiohttp.ClientSession() as s:
            async with s.post(first.url + "/api/v1/subscriptions", headers=first.headers(),
                              json={"name": "Dunhuang health", "department": "health", "url": receiver.url,
                                    "regions": ["620982"], "hazards": ["heat"]}) as r:
                assert r.status == 201
            for t in day[:2]:
                async with s.post(first.url + "/api/v1/observations", headers=first.headers(),
                                  json=[{"station_id": "52418", "time": t, "tmax_c": 36.2}]) as r:
                    assert r.status == 202
            for _ in range(100):  # processed (not only accepted) before the clean stop commits the offsets
                async with s.get(first.url + "/metrics") as r:
                    text = await r.text()
                if "ews_observations_processed_total 2.0" in text:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the two reports were not processed")
    finally:
        assert first.stop() == 0
    assert not receiver.received  # 36 degC on one or two days is no warning
    second = start_ews(tmp_path, env)
    try:
        await wait_ready(second)
        async with aiohttp.ClientSession() as s, s.post(
                second.url + "/api/v1/observations", headers=second.headers(),
                json=[{"station_id": "52418", "time": day[2], "tmax_c": 36.4}]) as r:
            assert r.status == 202
        got = await receiver.wait_for(1, timeout_s=60)
        async with aiohttp.ClientSession() as s, s.get(second.url + "/metrics") as r:
            metrics_text = await r.text()
    finally:
        assert second.stop() == 0
    event = orjson.loads(got[0]["body"])["data"]
    assert (event["hazard"], event["level"], event["region_code"]) == ("heat", "yellow", "620982")
    # the first two reports were not read again: the days came from the recovered state
    assert "ews_observations_processed_total 1.0" in metrics_text
