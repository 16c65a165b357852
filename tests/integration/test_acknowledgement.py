"""Acknowledgement through the broker (issue 20): a red warning reaches two departments with an ack_url each; one
acknowledges (204, again 204), the warning lists it; the other does not, so after the deadline (rules.toml
[acknowledgement], here 3 s) it is reminded and the warning goes to the fallback subscription of the region, never
to a fallback elsewhere; the acknowledgement survives a restart of the service (alerts.acks on the broker)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.support import WebhookReceiver, running_ews, until
from warning.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_MIN = 0.05  # 3 s: the escalation is checked at the grade agent's next tick (EWS_TICK_INTERVAL, 2 s here)


def rules_with_short_deadline(tmp_path: Path) -> Path:
    text = (ROOT / "warning" / "data" / "rules.toml").read_text(encoding="utf-8")
    old = "after_min = { red = 15, orange = 30 }"
    assert old in text
    path = tmp_path / "rules.toml"
    path.write_text(text.replace(old, f"after_min = {{ red = {DEADLINE_MIN}, orange = {DEADLINE_MIN} }}"),
                    encoding="utf-8")
    return path


def bodies(receiver: WebhookReceiver, path: str) -> list[dict[str, Any]]:
    return [orjson.loads(r["body"]) for r in receiver.received if r["path"] == path]


async def test_ack_is_listed_and_no_ack_is_reminded_and_escalated(broker: EmbeddedBroker, tmp_path: Path,
                                                                  receiver: WebhookReceiver) -> None:
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-ack",
           "EWS_RULES": str(rules_with_short_deadline(tmp_path)), "EWS_TICK_INTERVAL": "2"}
    async with running_ews(tmp_path, env) as ews, aiohttp.ClientSession() as s:
        subs: dict[str, str] = {}
        for name, regions, fallback in (("Dunhuang health", ["620982"], False), ("Jiuquan water", ["620900"], False),
                                        ("Jiuquan duty office", ["620900"], True),
                                        ("Lanzhou duty office", ["620100"], True)):
            async with s.post(ews.url + "/api/v1/subscriptions", headers=ews.headers(), json={
                    "name": name, "department": "relief", "url": f"{receiver.url}/{name.split()[0].lower()}"
                    f"{'-duty' if fallback else ''}", "regions": regions, "hazards": ["heat"],
                    "fallback": fallback}) as r:
                assert r.status == 201, await r.text()
                subs[name] = (await r.json())["id"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        async with s.post(ews.url + "/api/v1/observations", headers=ews.headers(),
                          json={"station_id": "52418", "time": now, "tmax_c": 40.6}) as r:
            assert r.status == 202
        assert await until(lambda: bodies(receiver, "/hook/dunhuang") and bodies(receiver, "/hook/jiuquan"), 60)
        first = bodies(receiver, "/hook/dunhuang")[0]
        assert first["data"]["level"] == "red" and first["ack_url"].startswith(ews.url + "/api/v1/acks/")
        assert bodies(receiver, "/hook/jiuquan")[0]["ack_url"] != first["ack_url"]  # per subscription
        sent = next(r for r in receiver.received if r["path"] == "/hook/dunhuang")
        assert {k.lower(): v for k, v in sent["headers"].items()}["ews-ack-url"] == first["ack_url"]  # CAP too
        wid = first["data"]["warning_id"]

        for _ in range(2):  # idempotent
            async with s.post(first["ack_url"]) as r:
                assert r.status == 204
        async with s.post(first["ack_url"][:-3] + "AAA") as r:
            assert r.status == 404
        async with s.post(ews.url + "/api/v1/acks/not-a-token") as r:
            assert r.status == 404

        async def acknowledgements() -> list[dict[str, Any]]:
            async with s.get(f"{ews.url}/api/v1/warnings/{wid}") as r:
                assert r.status == 200
                return (await r.json())["acknowledgements"]

        acks = await acknowledgements()
        assert [(a["subscription_id"], a["name"], a["level"]) for a in acks] == [
            (subs["Dunhuang health"], "Dunhuang health", "red")]
        assert acks[0]["at"] >= now

        # no acknowledgement from Jiuquan water: after the deadline, at the next tick, reminded and escalated
        assert await until(lambda: bool(bodies(receiver, "/hook/jiuquan-duty")), 75), receiver.received
        escalated = bodies(receiver, "/hook/jiuquan-duty")[0]
        assert escalated["escalation"] is True and escalated["data"]["warning_id"] == wid
        assert escalated["ack_url"] not in (first["ack_url"],)
        assert await until(lambda: any(b.get("reminder") for b in bodies(receiver, "/hook/jiuquan")), 10)
        assert not any(b.get("reminder") for b in bodies(receiver, "/hook/dunhuang"))  # it acknowledged
        assert not bodies(receiver, "/hook/lanzhou-duty")  # a fallback of another prefecture
        reminder = next(b for b in bodies(receiver, "/hook/jiuquan") if b.get("reminder"))
        webhook_ids = {r["headers"].get("webhook-id") for r in receiver.received if r["path"] == "/hook/jiuquan"}
        assert len(webhook_ids) == 2  # the reminder is a new webhook-id: receivers do not drop it as a repeat
        async with s.get(ews.url + "/metrics") as r:
            text = await r.text()
        assert 'ews_ack_escalations_total{kind="fallback",level="red"} 1.0' in text
        assert 'ews_ack_escalations_total{kind="reminder",level="red"} 1.0' in text
        assert 'ews_warnings_unacknowledged{level="red"} 1.0' in text  # Jiuquan water has not, yet
        assert 'ews_acknowledgements_total{level="red"} 1.0' in text
        async with s.post(reminder["ack_url"]) as r:
            assert r.status == 204
        duty_ack = escalated["ack_url"]
        async with s.post(duty_ack) as r:
            assert r.status == 204
        names = [a["name"] for a in await acknowledgements()]
        assert sorted(names) == ["Dunhuang health", "Jiuquan duty office", "Jiuquan water"]
        port = ews.port

    # the acknowledgements are on the broker: a restarted service lists them (MACs checked with the same keys)
    async with running_ews(tmp_path, env, port=port) as ews, aiohttp.ClientSession() as s:  # same public URL
        async def listed() -> list[str]:
            async with s.get(f"{ews.url}/api/v1/warnings/{wid}") as r:
                return sorted(a["name"] for a in (await r.json())["acknowledgements"]) if r.status == 200 else []

        for _ in range(50):
            if len(await listed()) == 3:
                break
            await asyncio.sleep(0.2)
        assert await listed() == ["Dunhuang health", "Jiuquan duty office", "Jiuquan water"]
        async with s.post(first["ack_url"]) as r:  # still valid, still idempotent
            assert r.status == 204
