"""For the systems that consume warnings (issue 19), against a running service over real HTTP: the webhook
envelope's ``timestamp`` is the event's time on every attempt; the ATOM feed keeps updates and cancels; ETags,
Last-Modified and 304s; the warnings list's filters and cursor."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from lxml import etree
from standardwebhooks.webhooks import Webhook

from tests.support import FAST, WebhookReceiver, hot, one_station_per_county, running_ews
from warning.launch import EwsProcess
from warning.shared.regions import StationRegistry

HUB = "https://hub.example.cn/"


@pytest.fixture
def ews_env() -> dict[str, str]:
    return {**FAST, "EWS_PUBLIC_URL": "https://ews.example.cn/base", "EWS_WEBSUB_HUB": HUB}


async def call(s: aiohttp.ClientSession, ews: EwsProcess, method: str, path: str, body: object = None) -> Any:
    async with s.request(method, ews.url + path, json=body, headers=ews.headers()) as r:
        assert r.status < 300, f"{method} {path}: {r.status} {await r.text()}"
        return await r.json() if r.status != 204 else None


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_envelope_timestamp_is_the_events_time_on_every_attempt(ews: EwsProcess) -> None:
    """The first attempt answered 503, the retry 204: one webhook-id, the same body (``timestamp`` = the event's
    ``sent``), each attempt's own ``webhook-timestamp`` header, and both verify with the official
    ``standardwebhooks`` library."""
    answers = itertools.chain([503], itertools.repeat(204))
    async with WebhookReceiver("once 503", mode=lambda: next(answers)) as rec, WebhookReceiver("cap") as cap, \
            aiohttp.ClientSession() as s:
        sub = await call(s, ews, "POST", "/api/v1/subscriptions",
                         {"name": "retry", "department": "health", "url": rec.url, "regions": ["620000"]})
        cap_sub = await call(s, ews, "POST", "/api/v1/subscriptions",
                             {"name": "cap", "department": "water", "url": cap.url, "regions": ["620000"],
                              "format": "cap"})
        [station] = one_station_per_county(1)
        await call(s, ews, "POST", "/api/v1/observations", hot([station], datetime.now(UTC) - timedelta(hours=1)))
        first, second = await rec.wait_for(2, timeout_s=60)
        [cap_delivery] = await cap.wait_for(1, timeout_s=30)
    # format: cap (docs/WEBHOOKS.md): the library's default verify parses the body as JSON and so fails on CAP;
    # verifying the raw bytes without parsing passes
    assert cap_delivery["headers"]["Content-Type"].startswith("application/cap+xml")
    receiver = Webhook(cap_sub["secret"])
    with pytest.raises(ValueError):  # json.JSONDecodeError
        receiver.verify(cap_delivery["body"], cap_delivery["headers"])
    assert receiver.verify(cap_delivery["body"], cap_delivery["headers"], json_parse=False) is None
    etree.fromstring(cap_delivery["body"])  # then parse it as the XML it is
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert first["body"] == second["body"]
    envelope = orjson.loads(first["body"])
    assert envelope["timestamp"] == envelope["data"]["sent"]
    for attempt in (first, second):
        header_ts = int(attempt["headers"]["webhook-timestamp"])
        assert abs(header_ts - attempt["time"]) < 5  # the attempt's time (a failure bound, not a timing claim)
        Webhook(sub["secret"]).verify(attempt["body"], attempt["headers"])


ATOM = "{http://www.w3.org/2005/Atom}"
CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
PUBLIC = "https://ews.example.cn/base"


async def _warn_counties(s: aiohttp.ClientSession, ews: EwsProcess, stations: list[str]) -> list[dict[str, Any]]:
    """Red heat in each station's county; the county warnings once all are in the view."""
    await call(s, ews, "POST", "/api/v1/observations", hot(stations, datetime.now(UTC) - timedelta(hours=1)))
    found: list[dict[str, Any]] = []

    async def county_warnings() -> list[dict[str, Any]]:
        async with s.get(ews.url + "/api/v1/warnings?active=true&region_level=county") as r:
            return list(await r.json())

    for _ in range(300):
        found = await county_warnings()
        if len(found) >= len(stations):
            break
        await asyncio.sleep(0.1)
    assert len(found) == len(stations), found
    return found


async def test_feed_keeps_cancels_with_links_from_the_public_url(ews: EwsProcess) -> None:
    """Two county warnings, both cancelled by the operator: the feed lists their Cancel entries (newest first, a
    cancel before its alert), every link built from EWS_PUBLIC_URL whatever the Host header, the WebSub hub."""
    async with aiohttp.ClientSession() as s:
        alerts = await _warn_counties(s, ews, one_station_per_county(2, skip=3))
        for event in alerts:
            await call(s, ews, "POST", f"/api/v1/warnings/{event['warning_id']}/cancel")
        for _ in range(300):
            if not await (await s.get(ews.url + "/api/v1/warnings?active=true&region_level=county")).json():
                break
            await asyncio.sleep(0.1)
        async with s.get(ews.url + "/api/v1/cap/feed.atom", headers={"Host": "evil.example:666"}) as r:
            assert r.status == 200
            feed = etree.fromstring(await r.read())
        entries = feed.findall(f"{ATOM}entry")
        kinds = [(e.findtext(f"{CAP}msgType"), e.findtext(f"{CAP}geocode/{CAP}value")) for e in entries]
        cap_links = [e.find(f"{ATOM}link").get("href") for e in entries]
        for link in cap_links:  # each entry's CAP answers, from the path under the public base
            async with s.get(ews.url + link.removeprefix(PUBLIC)) as r:
                assert r.status == 200 and r.content_type == "application/cap+xml"
    counties = {e["region_code"] for e in alerts}
    assert sorted(k for k in kinds if k[0] == "Cancel") == sorted(("Cancel", c) for c in counties)
    assert sorted(k for k in kinds if k[0] == "Alert") == sorted(("Alert", c) for c in counties)
    for county in counties:  # newest first: each county's cancel before its alert
        assert kinds.index(("Cancel", county)) < kinds.index(("Alert", county))
    assert feed.findtext(f"{ATOM}id") == PUBLIC + "/api/v1/cap/feed.atom"
    assert all(link.startswith(PUBLIC + "/api/v1/warnings/") for link in cap_links)
    assert "evil.example" not in etree.tostring(feed).decode()
    [hub] = [link.get("href") for link in feed.findall(f"{ATOM}link") if link.get("rel") == "hub"]
    assert hub == HUB


async def test_public_reads_revalidate_with_etag_and_last_modified(ews: EwsProcess) -> None:
    """The warnings list, one warning, its CAP (by event id and by warning id) and the ATOM feed carry a strong
    ETag, Last-Modified (once the second of the last change has passed) and Cache-Control; If-None-Match and
    If-Modified-Since answer 304; a new event changes the ETag; with the token nothing may be kept."""
    async with aiohttp.ClientSession() as s:
        [event] = await _warn_counties(s, ews, one_station_per_county(1, skip=7))
        await asyncio.sleep(1.1)  # past the second of the last change: Last-Modified is given
        paths = {"/api/v1/warnings": "public, max-age=30",
                 f"/api/v1/warnings/{event['warning_id']}": "public, max-age=30",
                 f"/api/v1/warnings/{event['id']}.cap": "public, max-age=86400",
                 f"/api/v1/warnings/{event['warning_id']}.cap": "public, max-age=30",
                 "/api/v1/cap/feed.atom": "public, max-age=60"}
        first: dict[str, tuple[str, str]] = {}
        for path, cache_control in paths.items():
            async with s.get(ews.url + path) as r:
                assert r.status == 200, path
                etag, last_modified = r.headers["ETag"], r.headers["Last-Modified"]
                assert etag.startswith('"') and r.headers["Cache-Control"] == cache_control, (path, r.headers)
            first[path] = etag, last_modified
            for conditional in ({"If-None-Match": etag}, {"If-None-Match": f'"other", W/{etag}'},
                                {"If-Modified-Since": last_modified}):
                async with s.get(ews.url + path, headers=conditional) as r:
                    assert r.status == 304, (path, conditional)
                    assert await r.read() == b"" and r.headers["ETag"] == etag
            async with s.get(ews.url + path, headers={"If-None-Match": '"other"'}) as r:
                assert r.status == 200
            async with s.get(ews.url + path, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}) as r:
                assert r.status == 200
        async with s.get(ews.url + f"/api/v1/warnings/{event['warning_id']}", headers=ews.headers()) as r:
            assert r.status == 200 and r.headers["Cache-Control"] == "private, no-store"
            assert r.headers["Vary"] == "Authorization"
        async with s.get(ews.url + "/api/v1/subscriptions", headers=ews.headers()) as r:
            assert r.status == 200 and r.headers["Cache-Control"] == "private, no-store"
        await call(s, ews, "POST", f"/api/v1/warnings/{event['warning_id']}/cancel")
        changed = {"/api/v1/warnings", f"/api/v1/warnings/{event['warning_id']}",
                   f"/api/v1/warnings/{event['warning_id']}.cap", "/api/v1/cap/feed.atom"}
        for path in changed:  # the cancel reaches the view: each answers in full again
            for _ in range(300):
                async with s.get(ews.url + path, headers={"If-None-Match": first[path][0]}) as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.1)
            assert r.status == 200 and r.headers["ETag"] != first[path][0], path
        await asyncio.sleep(1.1)
        for path in changed:  # and its old Last-Modified no longer matches
            async with s.get(ews.url + path, headers={"If-Modified-Since": first[path][1]}) as r:
                assert r.status == 200, path
        async with s.get(ews.url + f"/api/v1/warnings/{event['id']}.cap",
                         headers={"If-None-Match": first[f"/api/v1/warnings/{event['id']}.cap"][0]}) as r:
            assert r.status == 304  # the alert's own CAP message never changes


async def test_warnings_filters_and_cursor(ews: EwsProcess) -> None:
    """The list's filters on a running service: three red heat warnings (county events and their prefecture
    roll-ups), one cancelled; CAP values, region, point, times, region level; a cursor walk with limit=1 follows
    the next links through every item once; a typo in any parameter is 400 naming it."""
    stations = one_station_per_county(3, skip=12)
    async with aiohttp.ClientSession() as s:
        counties = await _warn_counties(s, ews, stations)
        registry = StationRegistry.load()
        by_county = {e["region_code"]: e for e in counties}
        cancelled = by_county[registry.get(stations[0]).county_code]  # type: ignore[union-attr]
        await call(s, ews, "POST", f"/api/v1/warnings/{cancelled['warning_id']}/cancel")

        async def get(query: str, status: int = 200) -> Any:
            async with s.get(ews.url + "/api/v1/warnings" + query) as r:
                assert r.status == status, (query, await r.text())
                return await r.json()

        for _ in range(300):
            if await get("?msg_type=cancel&region_level=county"):
                break
            await asyncio.sleep(0.1)
        codes = {e["region_code"] for e in counties}
        every = await get("")
        assert {e["region_code"] for e in every} >= codes and {e["region_level"] for e in every} == \
            {"county", "prefecture"}
        assert [e["region_code"] for e in await get("?msg_type=cancel&region_level=county")] == \
            [cancelled["region_code"]]
        assert {e["region_code"] for e in await get("?active=true&region_level=county")} == \
            codes - {cancelled["region_code"]}
        assert {e["region_code"] for e in await get("?region_level=county&severity=extreme&urgency=Immediate"
                                                   "&certainty=Observed&level=orange&hazard=heat")} == codes
        assert await get("?region_level=county&severity=Minor,Moderate") == []
        assert await get("?hazard=rainstorm") == []
        station = registry.get(stations[1])
        assert station is not None
        one = by_county[station.county_code]
        assert [e["region_code"] for e in await get(f"?region={one['region_code']}")] == [one["region_code"]]
        by_prefecture = await get(f"?region={one['prefecture_code']}")
        assert {e["region_code"] for e in by_prefecture} >= {one["region_code"], one["prefecture_code"]}
        assert {e["region_code"] for e in await get("?region=620000")} == {e["region_code"] for e in every}
        at_point = await get(f"?point={station.latitude},{station.longitude}")
        assert {e["region_code"] for e in at_point} == {one["region_code"], one["prefecture_code"]}
        assert await get("?point=0,0") == []  # nowhere in Gansu
        sent = max(e["sent"] for e in every)
        assert {e["id"] for e in await get(f"?since={sent}")} == {e["id"] for e in every if e["sent"] >= sent}
        assert {e["id"] for e in await get(f"?until={sent}")} == {e["id"] for e in every}
        assert await get("?until=2001-01-01T00:00:00Z") == []

        walked: list[str] = []
        url: str | None = ews.url + "/api/v1/warnings?limit=1"
        while url:
            async with s.get(url) as r:
                assert r.status == 200
                walked += [e["id"] for e in await r.json()]
                url = r.links.get("next", {}).get("url")  # type: ignore[assignment]
                if url is not None:
                    assert str(url).startswith(PUBLIC + "/api/v1/warnings?")
                    url = ews.url + str(url).removeprefix(PUBLIC)
        assert walked == [e["id"] for e in every]

        for query, name in (("?hazard=haet", "hazard"), ("?region=620999", "region"), ("?level=purple", "level"),
                            ("?hazrd=heat", "hazrd"), ("?severity=bad", "severity"), ("?msg_type=x", "msg_type"),
                            ("?urgency=soon", "urgency"), ("?certainty=sure", "certainty"),
                            ("?point=36.1", "point"), ("?point=91,0", "point"), ("?since=yesterday", "since"),
                            ("?until=x", "until"), ("?region_level=city", "region_level"), ("?limit=501", "limit"),
                            ("?limit=0", "limit"), ("?cursor=@@", "cursor"), ("?active=maybe", "active"),
                            ("?status=live", "status")):
            error = (await get(query, 400))["error"]
            assert error.startswith(name), (query, error)


async def test_cap_is_signed_when_a_key_and_certificate_are_configured(tmp_path: Path) -> None:
    """EWS_CAP_SIGNING_KEY / _CERT: the CAP a receiver fetches and the one a `format: cap` webhook carries both
    verify with the certificate (signxml's verifier; unsigned stays the default: tests above)."""
    signxml = pytest.importorskip("signxml")
    from tests.unit.test_cap_signing import key_and_cert

    key_pem, cert_pem = key_and_cert()
    (tmp_path / "cap-key.pem").write_bytes(key_pem)
    (tmp_path / "cap-cert.pem").write_bytes(cert_pem)
    env = {"EWS_CAP_SIGNING_KEY": str(tmp_path / "cap-key.pem"), "EWS_CAP_SIGNING_CERT": str(tmp_path / "cap-cert.pem")}
    async with running_ews(tmp_path, env) as ews, WebhookReceiver("cap") as rec, aiohttp.ClientSession() as s:
        await call(s, ews, "POST", "/api/v1/subscriptions",
                   {"name": "cap", "department": "water", "url": rec.url, "regions": ["620000"], "format": "cap"})
        [event] = await _warn_counties(s, ews, one_station_per_county(1, skip=20))
        [delivery] = await rec.wait_for(1, timeout_s=30)
        async with s.get(ews.url + f"/api/v1/warnings/{event['id']}.cap") as r:
            fetched = await r.read()
    for document in (fetched, delivery["body"]):
        verified = signxml.XMLVerifier().verify(document, x509_cert=cert_pem.decode())
        assert verified.signed_xml.findtext(f"{CAP}identifier").endswith(event["id"])
