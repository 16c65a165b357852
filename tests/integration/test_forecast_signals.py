"""Issue 18 end to end through the real broker: forecast-worded Order No. 16 signals from POSTed forecasts, each
level only within its own horizon. Forecast heat yellow from a three-day run, forecast cold wave from a run's
daily minima, and rainstorm red only within 3 h (110 mm in 3 h forecast 11 h ahead is blue)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.support import WebhookReceiver, running_ews
from warning.broker import EmbeddedBroker


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def point(sid: str, issued: datetime, start_h: float, hours: float, **values: float) -> dict[str, Any]:
    start = issued + timedelta(hours=start_h)
    return {"station_id": sid, "issued_at": iso(issued), "valid_from": iso(start),
            "valid_to": iso(start + timedelta(hours=hours)), "values": values}


async def forecast_events(broker: EmbeddedBroker, tmp_path: Path, receiver: WebhookReceiver,
                          points: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """POST the forecasts to a running service on the broker; the county events of the first ``n`` webhooks,
    plus any that arrive within 2 s after them (what the forecasts should not have made)."""
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-forecast18"}
    async with running_ews(tmp_path, env) as ews, aiohttp.ClientSession() as s:
        async with s.post(ews.url + "/api/v1/subscriptions", headers=ews.headers(),
                          json={"name": "all", "department": "relief", "url": receiver.url,
                                "regions": ["620000"]}) as r:
            assert r.status == 201, await r.text()
        async with s.post(ews.url + "/api/v1/forecasts", headers=ews.headers(), json=points) as r:
            assert r.status in (201, 202), await r.text()
            assert (await r.json())["accepted"] == len(points)
        await receiver.wait_for(n)
        await asyncio.sleep(2.0)
        return [orjson.loads(g["body"])["data"] for g in receiver.received]


async def test_forecast_heat_yellow_from_a_three_day_run(broker: EmbeddedBroker, tmp_path: Path,
                                                         receiver: WebhookReceiver) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    # Lanzhou (620102): Tmax 36.0 / 36.5 / 36.8 on three forecast days (leads 1, 25, 49 h): heat yellow
    points = [point("52889", now, 1 + 24 * k, 24, tmax_c=t) for k, t in enumerate((36.0, 36.5, 36.8))]
    events = await forecast_events(broker, tmp_path, receiver, points, 1)
    assert [(e["hazard"], e["region_code"], e["level"], e["basis"], e["msg_type"]) for e in events] == [
        ("heat", "620102", "yellow", "forecast", "alert")]
    assert events[0]["stations"][0]["quantity"] == "tmax_day"


async def test_forecast_cold_wave_from_the_daily_minima_of_a_run(broker: EmbeddedBroker, tmp_path: Path,
                                                                 receiver: WebhookReceiver) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    # Wuwei (620602): Tmin 12 then 1.5 with force-5 wind the next day (lead 25 h): the 48 h drop 10.5 K is
    # cold-wave blue (48 h horizon); the 24 h drop would be yellow, but yellow's horizon is 24 h
    points = [point("52679", now, 1, 24, tmin_c=12.0), point("52679", now, 25, 24, tmin_c=1.5, wind_ms=8.0)]
    events = await forecast_events(broker, tmp_path, receiver, points, 1)
    assert [(e["hazard"], e["region_code"], e["level"], e["basis"]) for e in events] == [
        ("cold_wave", "620602", "blue", "forecast")]
    assert events[0]["stations"][0]["quantity"] in ("tmin_drop_48h", "tmin_drop_24h")


async def test_rainstorm_red_only_within_3h(broker: EmbeddedBroker, tmp_path: Path,
                                            receiver: WebhookReceiver) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    # 110 mm in 3 h: 11 h ahead at Zhangye (620702) is rainstorm blue (12 h), never red (3 h); 2 h ahead at
    # Tianshui (620502) it is red. Flash flood (24 h horizon) follows both.
    points = [point("52652", now, 11, 3, precip_mm=110.0), point("57006", now, 2, 3, precip_mm=110.0)]
    events = await forecast_events(broker, tmp_path, receiver, points, 4)
    rain = {e["region_code"]: e["level"] for e in events if e["hazard"] == "rainstorm"}
    assert rain == {"620702": "blue", "620502": "red"}
    assert {e["hazard"] for e in events} == {"rainstorm", "flash_flood"} and len(events) == 4
