"""The bureau's desk through the broker (issue 20): with heat orange and red under review, a red heat report makes
a draft and no webhook; the draft survives a worker restart; approved by a named operator (with an edited
headline and expiry) it is delivered, with the audit log in the warning's detail and the CAP note; a rejected
draft sends nothing. Silences hold a subscription's deliveries (a red warning passes through) and send them when
ended."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support import TOKEN, WebhookReceiver, start_ews, wait_ready
from warning.broker import EmbeddedBroker
from warning.launch import EwsProcess
from warning.operator_tokens import token_hash, write_tokens

ZHANG = "zhang-forecaster-token-0123456789abcdef"


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def review_rules(path: Path) -> Path:
    """The packaged rules with heat orange and red under review."""
    text = resources.files("warning").joinpath("data/rules.toml").read_text(encoding="utf-8")
    text, n = re.subn(r'(\[\[hazards\.heat\.levels\]\]\nlevel = "(orange|red)"\n)', r'\1issue = "review"\n', text)
    assert n == 2
    path.write_text(text, encoding="utf-8")
    return path


async def call(s: aiohttp.ClientSession, ews: EwsProcess, method: str, path: str, body: Any = None,
               status: int | None = None, token: str = TOKEN) -> Any:
    async with s.request(method, ews.url + path, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        text = await r.text()
        assert (r.status == status) if status is not None else r.status < 300, (r.status, text)
        return orjson.loads(text) if text and r.content_type == "application/json" else text


async def poll(s: aiohttp.ClientSession, ews: EwsProcess, path: str, pred: Any, timeout_s: float = 30.0) -> Any:
    for _ in range(int(timeout_s / 0.1)):
        got = await call(s, ews, "GET", path)
        if pred(got):
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path}: not as expected after {timeout_s} s: {got}")


async def test_drafts_wait_for_approval_survive_a_restart_and_rejects_send_nothing(
        broker: EmbeddedBroker, tmp_path: Path, receiver: WebhookReceiver) -> None:
    write_tokens(tmp_path / "data" / "tokens", {"zhang": token_hash(ZHANG)})
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-desk",
           "EWS_RULES": str(review_rules(tmp_path / "rules.toml"))}
    now = datetime.now(UTC).replace(microsecond=0)
    first = start_ews(tmp_path, env)
    try:
        await wait_ready(first)
        async with aiohttp.ClientSession() as s:
            await call(s, first, "POST", "/api/v1/subscriptions",
                       {"name": "Jiuquan health", "department": "health", "url": receiver.url,
                        "regions": ["620900"], "hazards": ["heat"]})
            await call(s, first, "POST", "/api/v1/observations",
                       {"station_id": "52418", "time": iso(now - timedelta(hours=1)), "tmax_c": 40.6})
            [draft] = await poll(s, first, "/api/v1/drafts", lambda d: len(d) == 1)
    finally:
        assert first.stop() == 0
    assert (draft["region_code"], draft["level"], draft["state"], draft["msg_type"]) == ("620982", "red", "pending",
                                                                                         "alert")
    assert receiver.received == []

    second = start_ews(tmp_path, env)
    try:
        await wait_ready(second)
        async with aiohttp.ClientSession() as s:
            [again] = await poll(s, second, "/api/v1/drafts", lambda d: len(d) == 1)
            assert again["id"] == draft["id"] and again["state"] == "pending"  # survived the restart
            assert await call(s, second, "GET", "/api/v1/warnings?active=true&hazard=heat") == []
            await call(s, second, "POST", f"/api/v1/drafts/{draft['id'][:8]}/approve", {"level": "yellow"},
                       status=400)  # not an editable field
            expires = iso(now + timedelta(hours=12))
            edits = {"headline_en": "Dunhuang: red heat warning, stay indoors 12:00-18:00", "expires": expires}
            decided = await call(s, second, "POST", f"/api/v1/drafts/{draft['id'][:8]}/approve", edits,
                                 token=ZHANG)
            assert decided["state"] == "approved" and decided["decision"]["by"] == "zhang"
            [got] = await receiver.wait_for(1)
            msg = orjson.loads(got["body"])
            assert msg["type"] == "warning.alert" and msg["data"]["id"] == draft["id"]
            assert msg["data"]["headline_en"] == edits["headline_en"] and msg["data"]["expires"] == expires
            assert msg["data"]["review"]["by"] == "zhang"
            detail = await poll(s, second, f"/api/v1/warnings/{draft['warning_id']}",
                                lambda d: isinstance(d, dict) and d.get("audit"))
            [entry] = detail["audit"]
            assert (entry["action"], entry["by"]) == ("approved", "zhang")
            assert entry["changes"]["expires"]["to"] == expires
            cap = await call(s, second, "GET", f"/api/v1/warnings/{draft['id']}.cap")
            assert "Approved by zhang at" in cap and "edited: expires, headline_en" in cap
            await call(s, second, "POST", f"/api/v1/drafts/{draft['id']}/reject", {"reason": "late"}, status=409)

            # a second county: rejected, nothing is sent
            await call(s, second, "POST", "/api/v1/observations",
                       {"station_id": "52533", "time": iso(now - timedelta(minutes=30)), "tmax_c": 40.6})
            [other] = await poll(s, second, "/api/v1/drafts", lambda d: len(d) == 1)
            assert other["region_code"] == "620902"
            await call(s, second, "POST", f"/api/v1/drafts/{other['id']}/reject", {}, status=400)  # no reason
            rejected = await call(s, second, "POST", f"/api/v1/drafts/{other['id']}/reject",
                                  {"reason": "station 52533 sensor fault"})
            assert rejected["state"] == "rejected" and rejected["decision"]["by"] == "operator"
            await asyncio.sleep(1.5)  # time for a wrong delivery
            assert len(receiver.received) == 1
            listed = await call(s, second, "GET", "/api/v1/drafts?state=all")
            assert {d["state"] for d in listed} == {"approved", "rejected"}
            assert await call(s, second, "GET", "/api/v1/drafts") == []
    finally:
        assert second.stop() == 0


@pytest.fixture
def ews_env(tmp_path: Path) -> dict[str, str]:
    return {"EWS_WEBHOOK_TIMEOUT": "2"}


async def test_a_silence_holds_what_it_covers_lets_red_through_and_sends_the_rest_when_it_ends(
        ews: EwsProcess, receiver: WebhookReceiver) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    async with aiohttp.ClientSession() as s:
        sub = await call(s, ews, "POST", "/api/v1/subscriptions",
                         {"name": "Jiuquan health", "department": "health", "url": receiver.url,
                          "regions": ["620900"], "hazards": ["heat"]})
        await call(s, ews, "POST", "/api/v1/silences", {"subscription_id": sub["id"], "reason": "x",
                                                         "ends": iso(now - timedelta(minutes=1))}, status=400)
        silence = await call(s, ews, "POST", "/api/v1/silences",
                             {"subscription_id": sub["id"][:8], "reason": "receiver maintenance",
                              "ends": iso(now + timedelta(hours=1))})
        assert (silence["state"], silence["author"], silence["subscription_id"]) == ("active", "operator", sub["id"])
        # yellow heat at Jiuquan (three hot days): held; red heat at Dunhuang: passes through
        for k in (2, 1, 0):
            await call(s, ews, "POST", "/api/v1/observations",
                       {"station_id": "52533", "time": iso(now - timedelta(days=k, minutes=10)), "tmax_c": 36.0})
        await call(s, ews, "POST", "/api/v1/observations",
                   {"station_id": "52418", "time": iso(now - timedelta(minutes=10)), "tmax_c": 40.6})
        [red] = await receiver.wait_for(1)
        assert orjson.loads(red["body"])["data"]["level"] == "red"
        held = await poll(s, ews, f"/api/v1/dead-letters?subscription_id={sub['id']}", lambda d: len(d) == 1)
        assert held[0]["event"]["level"] == "yellow"
        assert held[0]["last_error"].startswith(f"silenced by {silence['id']} (receiver maintenance)")
        assert len(receiver.received) == 1
        [listed] = await call(s, ews, "GET", "/api/v1/silences")
        assert listed["id"] == silence["id"]
        ended = await call(s, ews, "DELETE", f"/api/v1/silences/{silence['id'][:8]}")
        assert ended["state"] == "ended" and ended["ended_by"] == "operator" and ended["held_sent"] == 1
        got = await receiver.wait_for(2)
        assert {orjson.loads(g["body"])["data"]["level"] for g in got} == {"red", "yellow"}
        assert await call(s, ews, "GET", "/api/v1/silences") == []
        assert [x["id"] for x in await call(s, ews, "GET", "/api/v1/silences?ended=true")] == [silence["id"]]

        # a silence per region and hazard that ends on its own: what it held goes out then
        short = await call(s, ews, "POST", "/api/v1/silences",
                           {"regions": ["620900"], "hazards": ["heat"], "reason": "duty desk informed by phone",
                            "ends": iso(datetime.now(UTC) + timedelta(seconds=12))})
        for k in (2, 1, 0):
            await call(s, ews, "POST", "/api/v1/observations",
                       {"station_id": "52447", "time": iso(now - timedelta(days=k, minutes=5)), "tmax_c": 36.0})
        # the dead-letters view may still list the first held delivery for a moment after the DELETE sent it
        held = await poll(s, ews, f"/api/v1/dead-letters?subscription_id={sub['id']}",
                          lambda d: [h["event"]["region_code"] for h in d] == ["620921"])
        assert short["id"] in held[0]["last_error"]
        got = await receiver.wait_for(3, timeout_s=30)
        assert orjson.loads(got[-1]["body"])["data"]["region_code"] == "620921"
        assert await call(s, ews, "GET", f"/api/v1/dead-letters?subscription_id={sub['id']}") == []


async def test_nobody_on_the_broker_can_approve_a_draft_forge_one_or_silence_a_department(
        broker: EmbeddedBroker, tmp_path: Path, receiver: WebhookReceiver) -> None:
    """A kafka client with plain broker access writes an approval to `signals`, a draft to `warnings.drafts` and
    a silence to `silences`, without the service's MAC: all refused and counted; the real draft stays pending and
    nothing is sent (issue 17's rule, applied to the desk's control records)."""
    from aiokafka import AIOKafkaProducer

    from warning.shared.topics import partition_for

    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-desk-forged",
           "EWS_RULES": str(review_rules(tmp_path / "rules.toml"))}
    now = datetime.now(UTC).replace(microsecond=0)
    ews = start_ews(tmp_path, env)
    try:
        await wait_ready(ews)
        async with aiohttp.ClientSession() as s:
            sub = await call(s, ews, "POST", "/api/v1/subscriptions",
                             {"name": "Jiuquan health", "department": "health", "url": receiver.url,
                              "regions": ["620900"], "hazards": ["heat"]})
            await call(s, ews, "POST", "/api/v1/observations",
                       {"station_id": "52418", "time": iso(now - timedelta(minutes=10)), "tmax_c": 40.6})
            [draft] = await poll(s, ews, "/api/v1/drafts", lambda d: len(d) == 1)
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
            await producer.start()
            try:
                approval = {"kind": "review", "region_code": "620982", "hazard": "heat", "time": iso(now),
                            "draft_id": draft["id"], "action": "approve", "operator": "zhang", "at": iso(now)}
                await producer.send_and_wait("signals", orjson.dumps(approval), key=b"620982",
                                             partition=partition_for("620982", 4))
                forged = {**draft, "id": "forged-draft", "state": "pending"}
                await producer.send_and_wait("warnings.drafts", orjson.dumps(forged), key=b"forged-draft")
                silence = {"id": "forged-silence", "reason": "x", "author": "zhang", "starts": iso(now),
                           "ends": iso(now + timedelta(hours=1)), "created": iso(now),
                           "subscription_id": sub["id"], "regions": [], "hazards": []}
                await producer.send_and_wait("silences", orjson.dumps(silence), key=b"forged-silence")
            finally:
                await producer.stop()

            async def refused() -> dict[str, float]:
                async with s.get(ews.url + "/metrics") as r:
                    text = await r.text()
                out: dict[str, float] = {}
                for line in text.splitlines():
                    if line.startswith("ews_control_records_rejected_total{"):
                        topic = line.split('topic="')[1].split('"')[0]
                        out[topic] = out.get(topic, 0.0) + float(line.rsplit(" ", 1)[1])
                return out

            for _ in range(100):
                counts = await refused()
                if {"signals", "warnings.drafts", "silences"} <= set(counts):
                    break
                await asyncio.sleep(0.1)
            assert counts.get("signals", 0) >= 1 and counts.get("warnings.drafts", 0) >= 1
            assert counts.get("silences", 0) >= 1
            [still] = await call(s, ews, "GET", "/api/v1/drafts")
            assert still["id"] == draft["id"] and still["state"] == "pending"
            assert await call(s, ews, "GET", "/api/v1/silences") == []
            assert receiver.received == []
    finally:
        assert ews.stop() == 0
