"""Scenario tests through the real broker: forecasts, several hazards, restart in the middle of a chain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson

from tests.support import WebhookReceiver, running_ews
from warning.broker import EmbeddedBroker


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _post(s: aiohttp.ClientSession, url: str, headers: dict[str, str], body: object) -> dict:
    async with s.post(url, json=body, headers=headers) as r:
        assert r.status in (201, 202), await r.text()
        return await r.json()


async def test_forecast_and_observed_hazards_then_restart_mid_chain(broker: EmbeddedBroker, tmp_path: Path,
                                                                   receiver: WebhookReceiver) -> None:
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-scenario"}
    now = datetime.now(UTC).replace(microsecond=0)
    async with running_ews(tmp_path, env) as ews:
        async with aiohttp.ClientSession() as s:
            await _post(s, ews.url + "/api/v1/subscriptions", ews.headers(),
                        {"name": "relief", "department": "relief", "url": receiver.url, "regions": ["620000"]})
            # a forecast that Tmax reaches 40.5 within 24 h at Lanzhou: red heat, Expected / Likely
            res = await _post(s, ews.url + "/api/v1/forecasts", ews.headers(), [
                {"station_id": "52889", "issued_at": iso(now - timedelta(hours=1)), "valid_from": iso(now),
                 "valid_to": iso(now + timedelta(hours=24)), "values": {"tmax_c": 40.5}},
                {"station_id": "52889", "issued_at": iso(now), "valid_from": iso(now + timedelta(hours=72)),
                 "valid_to": iso(now + timedelta(hours=96)), "values": {"tmax_c": 45.0}},  # beyond 24 h lead
                {"station_id": "52889", "issued_at": "bad", "valid_from": iso(now), "valid_to": iso(now),
                 "values": {}}])
            assert res["accepted"] == 2 and res["rejected"][0]["reason"].startswith("issued_at")
            # an observed 3-hour downpour at Tianshui (57006): 3 h >= 50 mm -> orange rainstorm
            await _post(s, ews.url + "/api/v1/observations", ews.headers(),
                        {"station_id": "57006", "time": iso(now - timedelta(minutes=30)), "precip_mm": 55.0,
                         "precip_period_h": 3})
            got = await receiver.wait_for(3)  # heat alert + rainstorm alert + flash-flood (3 h >= 50 -> orange)
        msgs = {(m["data"]["hazard"], m["data"]["region_code"]): m for m in (orjson.loads(g["body"]) for g in got)}
        heat = msgs[("heat", "620102")]["data"]
        assert (heat["level"], heat["basis"], heat["urgency"], heat["certainty"]) == ("red", "forecast", "Expected",
                                                                                     "Likely")
        rain = msgs[("rainstorm", "620502")]["data"]
        assert (rain["level"], rain["basis"], rain["certainty"]) == ("orange", "observed", "Observed")
        assert msgs[("flash_flood", "620502")]["data"]["level"] == "orange"
        assert rain["stations"][0]["quantity"] == "rain_3h" and rain["stations"][0]["value"] == 55.0

    # a new worker on the same cluster continues the chains: more rain upgrades, it does not re-issue
    async with running_ews(tmp_path, env) as ews, aiohttp.ClientSession() as s:
        await _post(s, ews.url + "/api/v1/observations", ews.headers(),
                    {"station_id": "57006", "time": iso(now - timedelta(minutes=10)), "precip_mm": 70.0,
                     "precip_period_h": 1})
        got = await receiver.wait_for(5)
    later = [orjson.loads(g["body"]) for g in got[3:]]
    by_hazard = {m["data"]["hazard"]: m for m in later}
    assert set(by_hazard) == {"rainstorm", "flash_flood"}
    up = by_hazard["rainstorm"]
    assert (up["type"], up["data"]["change"], up["data"]["level"]) == ("warning.update", "upgrade", "red")
    assert up["data"]["warning_id"] == rain["warning_id"] and up["data"]["references"] == [rain["id"]]
    assert by_hazard["flash_flood"]["data"]["level"] == "red"  # 1 h 70 mm (3 h >= 100 in whatever hour buckets)
