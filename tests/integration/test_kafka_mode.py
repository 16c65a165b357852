"""The single-machine mode on Apache Kafka (KRaft, data under the data dir): a stop and start of `ews run` keeps
subscriptions, active warnings and the open chain, whose next upgrade references the alert sent before the stop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support import WebhookReceiver, start_ews, wait_ready
from warning import kafka_node

pytestmark = pytest.mark.skipif(kafka_node.available() is not None, reason=f"{kafka_node.available()}")


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _get(s: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Any:
    async with s.get(url, headers=headers) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def _post(s: aiohttp.ClientSession, url: str, headers: dict[str, str], body: Any) -> Any:
    async with s.post(url, headers=headers, json=body) as r:
        assert r.status in (201, 202), await r.text()
        return await r.json()


async def _until(fetch: Any, ok: Any, what: str, timeout_s: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        got = await fetch()
        if ok(got):
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: {got}")
        await asyncio.sleep(0.2)


async def test_stop_and_start_keep_subscriptions_warnings_and_the_open_chain(tmp_path: Path,
                                                                              receiver: WebhookReceiver) -> None:
    env = {"EWS_BROKER": "kafka", "EWS_APP_ID": "ews-kafka-mode"}
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    first = start_ews(tmp_path, env)
    try:
        await wait_ready(first, timeout_s=180)
        async with aiohttp.ClientSession() as s:
            sub = await _post(s, first.url + "/api/v1/subscriptions", first.headers(),
                              {"name": "Lanzhou health", "department": "health", "url": receiver.url,
                               "regions": ["620000"], "hazards": ["heat"]})
            await _post(s, first.url + "/api/v1/observations", first.headers(),
                        {"station_id": "52533", "time": iso(t), "tmax_c": 37.5})
            [alert] = await receiver.wait_for(1)
    finally:
        assert first.stop(timeout_s=60) == 0
    assert "embedded Apache Kafka" in first.output()
    alert_data = orjson.loads(alert["body"])["data"]
    assert (alert_data["msg_type"], alert_data["level"]) == ("alert", "orange")

    second = start_ews(tmp_path, env)
    try:
        await wait_ready(second, timeout_s=180)
        async with aiohttp.ClientSession() as s:
            subs = await _until(lambda: _get(s, second.url + "/api/v1/subscriptions", second.headers()),
                                lambda x: bool(x), "subscriptions after the restart")
            active = await _until(lambda: _get(s, second.url + "/api/v1/warnings?active=true", {}),
                                  lambda x: any(w["warning_id"] == alert_data["warning_id"] for w in x),
                                  "the active warning after the restart")
            await _post(s, second.url + "/api/v1/observations", second.headers(),
                        {"station_id": "52533", "time": iso(t + timedelta(hours=1)), "tmax_c": 40.1})
            got = await receiver.wait_for(2)
    finally:
        assert second.stop(timeout_s=60) == 0
    assert [x["id"] for x in subs] == [sub["id"]]
    assert any(w["level"] == "orange" and w["region_code"] == alert_data["region_code"] for w in active)
    update = orjson.loads(got[1]["body"])["data"]
    assert (update["msg_type"], update["level"]) == ("update", "red")
    assert update["warning_id"] == alert_data["warning_id"] and update["references"] == [alert_data["id"]]
