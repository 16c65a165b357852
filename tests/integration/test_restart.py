"""A restarted worker on the same cluster still has its subscriptions (compacted topic), and `ews run` with
KAFKA_BOOTSTRAP set starts no broker of its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.integration.conftest import start_ews, wait_ready
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
