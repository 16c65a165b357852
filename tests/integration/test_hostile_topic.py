"""Records that bypass the API (anything a producer writes onto `obs`) never stop the worker: far-future and
out-of-calendar times, deep nesting, wrong types, garbage bytes go to obs.rejected, and a valid report still warns."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from tests.support import WebhookReceiver, start_ews, wait_ready
from warning.broker import EmbeddedBroker
from warning.shared.topics import partition_for


async def test_hostile_records_on_the_obs_topic(broker: EmbeddedBroker, tmp_path: Path,
                                                receiver: WebhookReceiver) -> None:
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-hostile",
           "EWS_TICK_INTERVAL": "2"}
    ews = start_ews(tmp_path, env)
    deep: object = {"station_id": "52418"}
    for _ in range(600):
        deep = [deep]
    hostile = [
        {"observations": [{"station_id": "52418", "time": "9999-12-31T23:59:59-05:00", "tmax_c": 41.0}]},
        {"observations": [{"station_id": "52418", "time": "2100-01-01T00:00:00Z", "tmax_c": 41.0}]},
        {"observations": [deep]},
        {"observations": [{"station_id": ["52418"], "time": 5}]},
        {"observations": [{"station_id": "52418", "time": ["2026-07-01T08:00:00Z"], "tmax_c": 41.0}]},  # unhashable
        {"columns": {"station_id": ["52418", "52418"], "time": ["2026-07-01T08:00:00Z"]}},  # ragged columns
        {"columns": {"station_id": ["52418"], "time": [[1]], "tmax_c": ["hot"]}},
        {"observations": "not a list"},
        {"nothing": True},
    ]
    try:
        await wait_ready(ews)
        async with aiohttp.ClientSession() as s, s.post(
                ews.url + "/api/v1/subscriptions", headers=ews.headers(),
                json={"name": "x", "department": "other", "url": receiver.url, "regions": ["620000"]}) as r:
            assert r.status == 201
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            part = partition_for("52418", 4)
            for rec in hostile:  # stdlib json: orjson itself refuses > 254 levels
                await producer.send_and_wait("obs", json.dumps(rec).encode(), key=b"52418", partition=part)
            await producer.send_and_wait("obs", b"\xff\xfe garbage", key=b"?", partition=part)
            await producer.send_and_wait("obs", None, key=b"52418", partition=part)  # tombstone
        finally:
            await producer.stop()
        await asyncio.sleep(5)  # two full ticks (EWS_TICK_INTERVAL 2 s) with whatever the clock saw
        t = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        async with aiohttp.ClientSession() as s:
            async with s.get(ews.url + "/readyz") as r:
                assert r.status == 200
            async with s.post(ews.url + "/api/v1/observations", headers=ews.headers(),
                              json={"station_id": "52418", "time": t, "tmax_c": 40.4}) as r:
                assert r.status == 202
        [got] = await receiver.wait_for(1)
    finally:
        assert ews.stop() == 0, ews.output()[-3000:]
    assert "Crashed" not in ews.output()
    data = orjson.loads(got["body"])["data"]
    assert (data["region_code"], data["level"], data["stations"][0]["value"]) == ("620982", "red", 40.4)
