"""The broker is not a way in (issue 17, point 3): a client with plain access to the broker reads no webhook
secret from `subscriptions`, and a forged operator cancel on `signals` or a forged subscription (or tombstone) on
`subscriptions` changes nothing; the service's own control records still work."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.support import WebhookReceiver, start_ews, until, wait_ready
from warning.broker import EmbeddedBroker
from warning.launch import EwsProcess
from warning.shared.topics import partition_for


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


async def read_topic(bootstrap: str, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        got: list[Any] = []
        while batch := await consumer.getmany(timeout_ms=1500):
            for records in batch.values():
                got.extend(records)
        return got
    finally:
        await consumer.stop()


async def api(s: aiohttp.ClientSession, ews: EwsProcess, method: str, path: str, body: Any = None) -> Any:
    async with s.request(method, ews.url + path, json=body, headers=ews.headers()) as r:
        assert r.status < 300, f"{method} {path}: {r.status} {await r.text()}"
        return await r.json() if r.content_type == "application/json" else await r.text()


async def forge(bootstrap: str, real: Any, region: str) -> None:
    """An operator cancel for ``region`` (no MAC, then a made-up one), a copy of the real subscription under
    another id pointing elsewhere, and a tombstone for the real one: written straight to the broker."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        cancel = orjson.dumps({"kind": "operator_cancel", "region_code": region, "hazard": "heat",
                               "time": iso(datetime.now(UTC)), "accepted_at": time.time()})
        part = partition_for(region, 4)
        await producer.send_and_wait("signals", cancel, key=region.encode(), partition=part)
        await producer.send_and_wait("signals", cancel, key=region.encode(), partition=part,
                                     headers=[("ews-mac", b"k1:" + b"0" * 64)])
        forged = orjson.loads(real.value) | {"id": "forged-sub", "url": "http://127.0.0.1:9/forged"}
        await producer.send_and_wait("subscriptions", orjson.dumps(forged), key=b"forged-sub",
                                     headers=[("ews-mac", b"k1:" + b"f" * 64)])
        await producer.send_and_wait("subscriptions", orjson.dumps(forged), key=b"forged-sub-2")
        await producer.send_and_wait("subscriptions", None, key=real.key)  # "delete" the real one
    finally:
        await producer.stop()


async def test_the_broker_is_not_a_way_in(broker: EmbeddedBroker, tmp_path: Path) -> None:
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-side-door"}
    ews = start_ews(tmp_path, env)
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    try:
        await wait_ready(ews)
        async with WebhookReceiver() as rec, aiohttp.ClientSession() as s:
            sub = await api(s, ews, "POST", "/api/v1/subscriptions",
                            {"name": "relief", "department": "relief", "url": rec.url, "regions": ["620000"],
                             "hazards": ["heat"]})
            rotated = await api(s, ews, "POST", f"/api/v1/subscriptions/{sub['id']}/rotate-secret")
            assert rotated["secret"].startswith("whsec_")
            await api(s, ews, "POST", "/api/v1/observations", {"station_id": "52418", "time": iso(t), "tmax_c": 40.6})
            [alert] = await rec.wait_for(1)
            warning_id = orjson.loads(alert["body"])["data"]["warning_id"]

            # third-party consumers route warnings records on their headers (docs/TOPICS.md)
            county = [r for r in await read_topic(broker.bootstrap, "warnings")
                      if orjson.loads(r.value).get("warning_id") == warning_id]
            assert county, "the alert is on the warnings topic"
            assert dict(county[0].headers) == {
                "ews-event-type": b"warning.alert", "ews-hazard": b"heat", "ews-level": b"red",
                "ews-region-level": b"county", "ews-region-code": orjson.loads(county[0].value)["region_code"].encode(),
                "ews-status": b"actual"}

            records = await read_topic(broker.bootstrap, "subscriptions")
            assert records and all(r.value is not None for r in records)
            raw = b"".join(r.value for r in records)
            assert b"whsec_" not in raw  # neither the current secret nor the previous one, in any record
            assert rotated["secret"].encode() not in raw and sub["secret"].encode() not in raw
            assert all(re.fullmatch(rb"k1:[0-9a-f]{64}", dict(r.headers)["ews-mac"]) for r in records)

            await forge(broker.bootstrap, records[-1], "620982")

            async def refused() -> dict[str, float]:
                text = await api(s, ews, "GET", "/metrics")
                found = re.findall(r'ews_control_records_rejected_total\{reason="(\w+)",topic="([\w.]+)"\} (\S+)',
                                   text)
                return {f"{topic}:{reason}": float(n) for reason, topic, n in found}

            want = {"signals:missing": 1.0, "signals:bad_mac": 1.0, "subscriptions:bad_mac": 1.0,
                    "subscriptions:missing": 2.0}
            for _ in range(100):
                if await refused() == want:
                    break
                await asyncio.sleep(0.1)
            assert await refused() == want

            subs = await api(s, ews, "GET", "/api/v1/subscriptions")
            assert [x["id"] for x in subs] == [sub["id"]]  # not deleted, nothing injected
            warnings = await api(s, ews, "GET", "/api/v1/warnings")
            county = [w for w in warnings if w["warning_id"] == warning_id and w["region_code"] == "620982"]
            assert county and county[-1]["msg_type"] == "alert"  # still active: the forged cancel did nothing

            # the service's own control records still work: a new county warns, an operator cancel cancels
            await api(s, ews, "POST", "/api/v1/observations", {"station_id": "52533", "time": iso(t), "tmax_c": 40.6})
            await rec.wait_for(2)
            await api(s, ews, "POST", f"/api/v1/warnings/{warning_id}/cancel")
            got = await rec.wait_for(3)
            assert {orjson.loads(g["body"])["data"]["change"] for g in got} >= {"issue", "operator_cancel"}
            assert all(g["path"] == "/hook" for g in got)
            assert await until(lambda: len(rec.received) == 3, 2.0) and len(rec.received) == 3
    finally:
        assert ews.stop() == 0, ews.output()[-3000:]
    assert "whsec_" not in ews.output()
