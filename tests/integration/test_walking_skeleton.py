"""One observation in, one signed webhook out: `ews run` (embedded tansu) + a local receiver."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson

from alerts.signing import verify
from tests.support import CAP_XSD, WebhookReceiver
from warning.cap import validate_cap
from warning.launch import EwsProcess


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


async def subscribe(s: aiohttp.ClientSession, ews: EwsProcess, url: str, **kw: object) -> dict:
    body = {"name": "Gansu health commission", "department": "health", "url": url, "regions": ["620900"],
            "hazards": ["heat"], "min_level": "yellow", **kw}
    async with s.post(ews.url + "/api/v1/subscriptions", json=body, headers=ews.headers()) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def post_obs(s: aiohttp.ClientSession, ews: EwsProcess, obs: object) -> dict:
    async with s.post(ews.url + "/api/v1/observations", json=obs, headers=ews.headers()) as r:
        assert r.status == 202, await r.text()
        return await r.json()


async def test_dunhuang_40c_gives_one_signed_red_alert(ews: EwsProcess, receiver: WebhookReceiver) -> None:
    day1 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)  # live: within heat's staleness horizon
    async with aiohttp.ClientSession() as s:
        sub = await subscribe(s, ews, receiver.url)
        assert sub["secret"].startswith("whsec_")
        res = await post_obs(s, ews, {"station_id": "52418", "time": iso(day1), "tmax_c": 40.6})
        assert res == {"accepted": 1, "rejected": []}
        [first] = await receiver.wait_for(1)
        # the same level again, then an operator cancel: the receiver sees alert then cancel, never a 2nd alert
        await post_obs(s, ews, {"station_id": "52418", "time": iso(day1 + timedelta(hours=2)), "tmax_c": 41.2})
        async with s.post(ews.url + f"/api/v1/warnings/{orjson.loads(first['body'])['data']['warning_id']}/cancel",
                          headers=ews.headers()) as r:
            assert r.status == 202
        got = await receiver.wait_for(2)
        for _ in range(100):  # the API's view follows the warnings topic; give it a moment
            async with s.get(ews.url + "/api/v1/warnings") as r:
                warnings = await r.json()
            if any(w["msg_type"] == "cancel" for w in warnings):
                break
            await asyncio.sleep(0.05)
    verify(sub["secret"], first["headers"] | {k.lower(): v for k, v in first["headers"].items()}, first["body"])
    msg = orjson.loads(first["body"])
    assert msg["type"] == "warning.alert"
    data = msg["data"]
    assert (data["level"], data["hazard"], data["region_code"]) == ("red", "heat", "620982")
    assert data["prefecture_code"] == "620900" and data["stations"][0]["station_id"] == "52418"
    assert data["severity"] == "Extreme" and data["cma_code"] == "11B0904"
    assert [orjson.loads(g["body"])["type"] for g in got] == ["warning.alert", "warning.cancel"]
    assert len({g["headers"]["webhook-id"] for g in got}) == 2
    cancel = orjson.loads(got[1]["body"])["data"]
    assert cancel["change"] == "operator_cancel" and cancel["references"] == [data["id"]]
    county = [w for w in warnings if w["region_code"] == "620982"]
    assert county[0]["msg_type"] == "cancel" and county[0]["warning_id"] == data["warning_id"]
    # the prefecture roll-up exists for the dashboard but is not sent to departments
    assert any(w["region_code"] == "620900" and w["region_level"] == "prefecture" for w in warnings)


async def test_raising_the_level_sends_update(ews: EwsProcess, receiver: WebhookReceiver) -> None:
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    async with aiohttp.ClientSession() as s:
        sub = await subscribe(s, ews, receiver.url, regions=["620000"])
        await post_obs(s, ews, {"station_id": "52533", "time": iso(t), "tmax_c": 37.5})
        await receiver.wait_for(1)
        await post_obs(s, ews, {"station_id": "52533", "time": iso(t + timedelta(minutes=30)), "tmax_c": 38.0})
        await post_obs(s, ews, {"station_id": "52533", "time": iso(t + timedelta(hours=1)), "tmax_c": 40.1})
        got = await receiver.wait_for(2)
        # the prefecture's roll-up follows its county one hop later (a roll-up signal): poll for it, bounded
        for _ in range(50):
            async with s.get(ews.url + "/api/v1/warnings?active=true") as r:
                active = await r.json()
            if ("620900", "red") in {(w["region_code"], w["level"]) for w in active}:
                break
            await asyncio.sleep(0.1)
        async with s.get(ews.url + "/metrics") as r:
            metrics = await r.text()
        update_id = orjson.loads(got[1]["body"])["data"]["id"]
        async with s.get(ews.url + f"/api/v1/warnings/{update_id}.cap") as r:
            assert r.status == 200 and r.content_type == "application/cap+xml"
            cap = await r.read()
        async with s.get(ews.url + "/api/v1/cap/feed.atom") as r:
            feed = await r.text()
    assert validate_cap(cap, CAP_XSD) == []
    assert b"<msgType>Update</msgType>" in cap and b"11B0904" in cap and b"+08:00" in cap
    assert b"<polygon>" in cap  # the county outline (warning/shapes.py)
    assert f"/api/v1/warnings/{update_id}.cap" in feed
    msgs = [orjson.loads(g["body"]) for g in got]
    assert [(m["type"], m["data"]["level"]) for m in msgs] == [("warning.alert", "orange"),
                                                              ("warning.update", "red")]
    assert msgs[1]["data"]["references"] == [msgs[0]["data"]["id"]]
    for g in got:
        verify(sub["secret"], g["headers"], g["body"])
    assert sorted((w["region_code"], w["level"]) for w in active) == [("620900", "red"), ("620902", "red")]
    assert 'ews_deliveries_total{department="health",outcome="delivered"} 2.0' in metrics


async def test_api_guards(ews: EwsProcess, receiver: WebhookReceiver) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(ews.url + "/api/v1/observations", json={}) as r:
            assert r.status == 401
        async with s.post(ews.url + "/api/v1/observations", json={},
                          headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        async with s.get(ews.url + "/api/v1/subscriptions") as r:
            assert r.status == 401
        for url, reason in [("http://10.1.2.3/hook", "private"), ("http://169.254.169.254/", "link-local"),
                            ("ftp://example.org/", "http or https")]:
            async with s.post(ews.url + "/api/v1/subscriptions", headers=ews.headers(),
                              json={"name": "x", "url": url, "regions": ["620000"]}) as r:
                assert r.status == 400 and reason in (await r.json())["error"], url
        async with s.post(ews.url + "/api/v1/observations", headers=ews.headers(),
                          data=b"[" + b'{"station_id": "52418"},' * 60000 + b"{}]") as r:
            assert r.status == 413
        async with s.post(ews.url + "/api/v1/observations", headers=ews.headers(), data=b"{not json") as r:
            assert r.status == 400 and "invalid JSON" in (await r.json())["error"]
        res = await post_obs(s, ews, [{"station_id": "52889", "time": "2026-01-01T00:00:00Z", "tmin_c": -9.0},
                                      {"station_id": "00000", "time": "2026-01-01T00:00:00Z", "tmin_c": 1.0},
                                      {"station_id": "52889", "time": "2026-01-01T00:00:00Z", "tmin_c": "x"}])
        assert res["accepted"] == 1
        assert [(x["index"], x["reason"].split(":")[0]) for x in res["rejected"]] == [(1, "station_id"),
                                                                                     (2, "tmin_c")]
        sub = await subscribe(s, ews, receiver.url)
        async with s.get(ews.url + "/api/v1/subscriptions", headers=ews.headers()) as r:
            listed = await r.json()
        assert [x["id"] for x in listed] == [sub["id"]] and "secret" not in listed[0]
        async with s.delete(ews.url + f"/api/v1/subscriptions/{sub['id']}", headers=ews.headers()) as r:
            assert r.status == 204
        async with s.get(ews.url + "/api/v1/subscriptions", headers=ews.headers()) as r:
            assert await r.json() == []
        async with s.get(ews.url + "/api/v1/stations") as r:
            stations = {x["station_id"]: x for x in await r.json()}
    assert stations["52418"]["county_code"] == "620982" and len({x["prefecture_code"] for x in
                                                                 stations.values()}) == 14


async def test_quality_control_flags_and_rejects_before_grading(ews: EwsProcess, receiver: WebhookReceiver) -> None:
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    async with aiohttp.ClientSession() as s:
        await subscribe(s, ews, receiver.url)
        # inconsistent (tmin > tmax): both values flagged, kept on the record, not graded -> no heat warning
        await post_obs(s, ews, {"station_id": "52418", "time": iso(t), "tmax_c": 41.0, "tmin_c": 45.0})
        # beyond the world-record rainfall envelope: a hard QC failure -> obs.rejected
        await post_obs(s, ews, {"station_id": "52418", "time": iso(t + timedelta(minutes=10)), "precip_mm": 1900.0,
                                "precip_period_h": 1})
        # a clean report afterwards is graded as usual
        await post_obs(s, ews, {"station_id": "52418", "time": iso(t + timedelta(minutes=20)), "tmax_c": 40.2})
        [only] = await receiver.wait_for(1)
        async with s.get(ews.url + "/metrics") as r:
            metrics = await r.text()
    assert orjson.loads(only["body"])["data"]["stations"][0]["value"] == 40.2
    assert "ews_qc_flagged_values_total 2.0" in metrics
    assert 'ews_observations_rejected_total{reason="qc"} 1.0' in metrics
