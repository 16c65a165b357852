"""Live or not, through the real broker: history sent as actual reports updates the station state but warns nobody
(a fresh report that completes the run does); an exercise report makes an Exercise CAP delivered only to the
subscription that opted in, on a chain of its own; the demo's warnings are Exercise; `ews run --replay FILE
--as-station` (what `make run FILE=... AS_STATION=...` runs) replays a real file of a station outside the registry."""

from __future__ import annotations

import argparse
import asyncio
import io
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from ingest.producer import EXIT_OK, add_ingest_parser, run_ingest
from tests.support import CAP_XSD, ISD, WebhookReceiver, running_ews, until
from warning.broker import EmbeddedBroker
from warning.cap import validate_cap
from warning.launch import EwsProcess

BEIJING = timezone(timedelta(hours=8))
DUNHUANG_STATION, DUNHUANG = "52418", "620982"


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def subscribe(s: aiohttp.ClientSession, ews: EwsProcess, url: str, **kw: Any) -> dict[str, Any]:
    body = {"name": "Dunhuang", "department": "health", "url": url, "regions": [DUNHUANG], "hazards": ["heat"], **kw}
    async with s.post(ews.url + "/api/v1/subscriptions", json=body, headers=ews.headers()) as r:
        assert r.status == 201, await r.text()
        return dict(await r.json())


async def get_json(s: aiohttp.ClientSession, url: str) -> Any:
    async with s.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def metric(s: aiohttp.ClientSession, ews: EwsProcess, name: str) -> float:
    """The sum of a metric's samples (0 when absent)."""
    async with s.get(ews.url + "/metrics") as r:
        text = await r.text()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


async def until_metric(s: aiohttp.ClientSession, ews: EwsProcess, name: str, at_least: float,
                       timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await metric(s, ews, name) < at_least:
        assert asyncio.get_running_loop().time() < deadline, f"{name} stayed below {at_least}"
        await asyncio.sleep(0.1)


def ingest(bootstrap: str, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    add_ingest_parser(parser.add_subparsers(dest="command"))
    out, err = io.StringIO(), io.StringIO()
    rc = run_ingest(parser.parse_args(["ingest", *argv, "--bootstrap", bootstrap]), stdout=out, stderr=err)
    return rc, err.getvalue()


async def test_an_old_file_as_actual_warns_nobody_but_its_days_complete_a_fresh_run(
        broker: EmbeddedBroker, tmp_path: Path, receiver: WebhookReceiver) -> None:
    """A backfill after an outage: five days ago 41 °C (red had it been live), then 36 °C early on each of the
    last two Beijing days, all past heat's 36 h horizon or too short a run to warn. Nothing goes out; a live 36 °C
    today is the third hot day in a row: yellow."""
    today = datetime.now(BEIJING).replace(hour=0, minute=30, second=0, microsecond=0)  # 00:30 Beijing time today
    old = [(today - timedelta(days=5) + timedelta(hours=13, minutes=30), 41.0),
           (today - timedelta(days=2), 36.0), (today - timedelta(days=1), 36.0)]
    path = tmp_path / "backfill.csv"
    path.write_text("station_id,time,tmax_c\n" + "".join(f"{DUNHUANG_STATION},{iso(t)},{v}\n" for t, v in old))
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-backfill"}
    async with running_ews(tmp_path, env) as ews, aiohttp.ClientSession() as s:
        await subscribe(s, ews, receiver.url)
        rc, err = ingest(broker.bootstrap, str(path))
        assert rc == EXIT_OK, err
        await until_metric(s, ews, "ews_observations_processed_total", 3)
        await until_metric(s, ews, "ews_reports_past_horizon_total", 1)  # the 41 °C day at least
        await asyncio.sleep(2.0)  # time for anything that would have gone out
        assert receiver.received == []
        assert await get_json(s, ews.url + "/api/v1/warnings?active=true") == []
        async with s.post(ews.url + "/api/v1/observations", headers=ews.headers(),
                          json={"station_id": DUNHUANG_STATION, "time": iso(datetime.now(UTC)), "tmax_c": 36.0}) as r:
            assert r.status == 202
        [got] = await receiver.wait_for(1)
    data = orjson.loads(got["body"])["data"]
    assert (data["msg_type"], data["hazard"], data["level"], data["status"]) == ("alert", "heat", "yellow", "actual")


async def test_an_exercise_is_its_own_chain_and_reaches_only_the_subscription_that_opted_in(
        ews: EwsProcess) -> None:
    async with WebhookReceiver("live only") as live, WebhookReceiver("drills too") as drills, \
            aiohttp.ClientSession() as s:
        await subscribe(s, ews, live.url)
        await subscribe(s, ews, drills.url, format="cap", statuses=["actual", "exercise"])
        t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        async with s.post(ews.url + "/api/v1/observations?status=exercise", headers=ews.headers(),
                          json={"station_id": DUNHUANG_STATION, "time": iso(t), "tmax_c": 40.6}) as r:
            assert r.status == 202 and (await r.json())["accepted"] == 1
        [exercise_cap] = await drills.wait_for(1)
        # a live report of the same county and hazard: an alert of the actual chain, not an update of the drill's
        async with s.post(ews.url + "/api/v1/observations", headers=ews.headers(),
                          json={"station_id": DUNHUANG_STATION, "time": iso(t + timedelta(minutes=10)),
                                "tmax_c": 37.5, "status": "actual"}) as r:
            assert r.status == 202
        [live_alert] = await live.wait_for(1)
        got = await drills.wait_for(2)
        await asyncio.sleep(1.0)
        assert len(live.received) == 1 and len(drills.received) == 2
        feed = await (await s.get(ews.url + "/api/v1/cap/feed.atom")).text()
        drill_feed = await (await s.get(ews.url + "/api/v1/cap/feed.atom?status=exercise")).text()
        exercises = await get_json(s, ews.url + "/api/v1/warnings?status=exercise&active=true")
        metrics_text = await (await s.get(ews.url + "/metrics")).text()
    xml = exercise_cap["body"].decode()
    assert "<status>Exercise</status>" in xml and "<note>" in xml and "EXERCISE" in xml
    assert validate_cap(exercise_cap["body"], CAP_XSD) == []
    assert exercise_cap["headers"]["Content-Type"].startswith("application/cap+xml")
    live_data = orjson.loads(live_alert["body"])["data"]
    assert (live_data["msg_type"], live_data["level"], live_data["status"]) == ("alert", "orange", "actual")
    assert "note" not in live_data
    actual_cap = next(g["body"].decode() for g in got if g is not exercise_cap)
    assert "<status>Actual</status>" in actual_cap and "<note>" not in actual_cap
    [drill] = [e for e in exercises if e["region_code"] == DUNHUANG]
    assert drill["status"] == "exercise" and drill["level"] == "red" and drill["warning_id"] != live_data["warning_id"]
    assert drill["sent"] == iso(t)  # stamped with the report's time, not the wall clock
    assert drill["id"] not in feed and live_data["id"] in feed
    assert drill["id"] in drill_feed and live_data["id"] not in drill_feed
    # (the county's alert and its prefecture roll-up's)
    assert 'ews_warning_events_total{hazard="heat",level="red",msg_type="alert",status="exercise"} 2.0' in metrics_text
    assert 'ews_warning_events_total{hazard="heat",level="orange",msg_type="alert",status="actual"} 2.0' in metrics_text


async def test_the_demo_is_an_exercise(tmp_path: Path) -> None:
    async with running_ews(tmp_path, run_args=("--demo",)) as ews, aiohttp.ClientSession() as s:
        drills: list[dict[str, Any]] = []

        async def some_drill() -> bool:
            drills[:] = await get_json(s, ews.url + "/api/v1/warnings?status=all")
            return bool(drills)
        deadline = asyncio.get_running_loop().time() + 60
        while not await some_drill():
            assert asyncio.get_running_loop().time() < deadline, "the demo made no warning"
            await asyncio.sleep(0.5)
        live = await get_json(s, ews.url + "/api/v1/warnings")
        info = await get_json(s, ews.url + "/api/v1/info")
        text = await (await s.get(ews.url + "/metrics")).text()
    assert live == [] and {e["status"] for e in drills} == {"exercise"}
    assert info["demo"] and 'status="exercise"' in text


async def test_run_replay_of_a_real_file_with_a_station_override(tmp_path: Path) -> None:
    """`make run FILE=<ISD Beijing 2017> AS_STATION=52889`: every row replayed as Lanzhou, as an exercise."""
    args = ("--replay", str(ISD), "--as-station", "52889")
    async with running_ews(tmp_path, run_args=args) as ews, aiohttp.ClientSession() as s:
        assert await until(lambda: "finished (exit" in ews.output(), 90), ews.output()[-3000:]
        await until_metric(s, ews, "ews_observations_processed_total", 8000, timeout_s=90)
        drills: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + 30
        while not drills:
            drills = [e for e in await get_json(s, ews.url + "/api/v1/warnings?status=exercise")
                      if e["region_code"] == "620102"]
            assert asyncio.get_running_loop().time() < deadline, "the replay made no Lanzhou warning"
            await asyncio.sleep(0.5)
        live = await get_json(s, ews.url + "/api/v1/warnings")
    assert "as exercise finished (exit 0)" in ews.output()
    assert live == [] and all(e["sent"].startswith("2017-") and e["status"] == "exercise" for e in drills)
