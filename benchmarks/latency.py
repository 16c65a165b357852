"""End-to-end latency: POST /api/v1/observations -> webhook 2xx at the receiver, through one `ews run` worker.

A steady 2,000 observations/s (200 per request every 0.1 s from 2,400 stations, so each station reports every
1.2 s, timed by the wall clock: data time = real time). 1 % of them (2 per request) cross a threshold: 21-51 mm
in the last hour (flash flood blue to red, rainstorm at >= 50 mm) in one Gansu county at a time, a new county
every 0.67 s, so new alerts and upgrades keep coming through the run (warnings live hours: no expiry, no cancel).
20 local aiohttp receivers, each subscribed to region 620000 (Gansu). Latency of a delivery = its arrival
time - the POST time of the newest observation listed in the event's ``stations`` (the one that triggered
it); cancels (no triggering observation) are counted but not timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import numpy as np
import orjson
from aiohttp import web

from benchmarks import common as c
from warning.broker import free_port
from warning.shared.times import iso_utc

STATIONS = 2400
RECEIVERS = 20
RATE = 2000
TICK_S = 0.1
LADDER_MM = (21.0, 31.0, 41.0, 51.0)  # rain_1h: flash flood blue, yellow, orange, red (51 mm: rainstorm too)
COUNTIES_PER_S = 1.5  # a new county every 0.67 s climbs the ladder: alerts + upgrades all through the run


class LiveReports:
    """Reports in real time: each station's time is the wall clock (whole seconds, strictly increasing per
    station), so data time = wall time and warnings live their real validity (no expiry during the run).
    Small noise around per-station means keeps QC's step and persistence checks quiet; no rain except
    the triggers (a trigger is the rain of the last hour: ``precip_period_h`` = 1)."""

    def __init__(self, stations: list[str], seed: int = 3) -> None:
        rng = np.random.default_rng(seed)
        self.stations = stations
        self.rng = rng
        self.temp = rng.uniform(14.0, 26.0, len(stations))
        self.rh = rng.uniform(35.0, 75.0, len(stations))
        self.wind = rng.uniform(1.0, 5.0, len(stations))
        self.last: dict[str, int] = {}
        self.i = 0

    def batch(self, n: int) -> list[dict[str, Any]]:
        now = int(time.time())
        s = len(self.stations)
        idx = [(self.i + j) % s for j in range(n)]
        self.i = (self.i + n) % s
        noise = self.rng.normal(0.0, 1.0, (3, n))
        out = []
        for j, k in enumerate(idx):
            sid = self.stations[k]
            t = max(now, self.last.get(sid, 0) + 1)
            self.last[sid] = t
            out.append({"station_id": sid, "time": iso_utc(t),
                        "air_temp_c": round(float(self.temp[k] + 0.05 * noise[0, j]), 2),
                        "rh_pct": round(float(self.rh[k] + 0.2 * noise[1, j]), 1),
                        "wind_ms": round(float(max(0.0, self.wind[k] + 0.1 * noise[2, j])), 2), "source": "bench"})
        return out


def _gansu_counties() -> tuple[list[str], dict[str, str]]:
    """Gansu (620000) county codes and station -> county of the benchmark registry."""
    from benchmarks.worker import synthetic_registry

    county = {st.station_id: st.county_code for st in synthetic_registry(STATIONS)}
    return sorted({cc for cc in county.values() if cc.startswith("62")}), county


async def _receivers(n: int, inbox: list[tuple[float, int, bytes, str]]) -> tuple[web.AppRunner, list[str]]:
    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        inbox.append((time.time(), int(request.match_info["i"]), body, request.headers.get("webhook-id", "")))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook/{i}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    urls = []
    for i in range(n):
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        urls.append(f"http://127.0.0.1:{port}/hook/{i}")
    return runner, urls


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 4) if xs else None


Inbox = list[tuple[float, int, bytes, str]]  # (arrival wall time, receiver index, body, webhook-id)
Posted = dict[tuple[str, str], float]  # (station, observation time) -> wall time of its POST


async def e2e(duration_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {"rate_obs_s": RATE, "duration_s": duration_s, "receivers": RECEIVERS,
                           "load_before": c.load_avg()}
    inbox: Inbox = []
    posted: Posted = {}
    post_lat: list[float] = []
    with c.broker() as b, c.workdir("lat") as wd:
        runner, urls = await _receivers(RECEIVERS, inbox)
        w = c.start_worker(b.bootstrap, "bench-lat", wd, stations=STATIONS)
        headers = {"Authorization": f"Bearer {c.TOKEN}"}
        try:
            async with aiohttp.ClientSession() as s:
                await c.wait_ready(s, w)
                await _subscribe(s, w, urls, headers)
                live = LiveReports(c.station_ids(STATIONS))
                counties, county_of = _gansu_counties()
                cpu0 = c.cpu_seconds(w.pid)
                out.update(await _post_steady_load(s, w, headers, duration_s, live, counties, county_of,
                                                   posted, post_lat))
                await _drain(inbox)
                out["worker_cpu_s"] = round(c.cpu_seconds(w.pid) - cpu0, 2)
                m = await c.metrics(s, w)
                out["warning_events"] = int(m.get("ews_warning_events_total", 0))
                out["observations_processed"] = int(c.consumed(m))
        finally:
            w.stop()
            with contextlib.suppress(Exception):
                await runner.cleanup()
    out.update(_delivery_figures(inbox, posted, post_lat))
    out["load_after"] = c.load_avg()
    return out


async def _subscribe(s: aiohttp.ClientSession, w: c.Worker, urls: list[str], headers: dict[str, str]) -> None:
    """Each receiver subscribes to the whole of Gansu (620000)."""
    for i, url in enumerate(urls):
        sub = {"name": f"bench receiver {i}", "department": "other", "url": url, "regions": ["620000"]}
        async with s.post(w.url + "/api/v1/subscriptions", json=sub, headers=headers) as r:
            if r.status != 201:
                raise RuntimeError(f"subscription refused: {r.status} {await r.text()}")


async def _post_steady_load(s: aiohttp.ClientSession, w: c.Worker, headers: dict[str, str], duration_s: float,
                            live: LiveReports, counties: list[str], county_of: dict[str, str],
                            posted: Posted, post_lat: list[float]) -> dict[str, Any]:
    """POST RATE observations/s for duration_s, one request per tick, without waiting for the answers (a slow
    answer must not slow the offered load). Records each observation's POST time in ``posted``."""
    per_tick = int(RATE * TICK_S)
    total = int(RATE * duration_s)
    triggers = 0
    tasks: list[asyncio.Task[None]] = []

    async def post(batch: list[dict[str, Any]]) -> None:
        t = time.time()
        for o in batch:
            posted[(o["station_id"], o["time"])] = t
        async with s.post(w.url + "/api/v1/observations", data=orjson.dumps(batch),
                          headers={**headers, "Content-Type": "application/json"}) as r:
            await r.read()
            if r.status != 202:
                raise RuntimeError(f"POST observations: {r.status}")
        post_lat.append(time.time() - t)

    t0 = time.monotonic()
    sent = 0
    k = 0
    while sent < total:
        batch = live.batch(min(per_tick, total - sent))
        triggers += _add_triggers(batch, k, counties, county_of)
        sent += len(batch)
        tasks.append(asyncio.create_task(post(batch)))
        k += 1
        delay = t0 + k * TICK_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*tasks)
    return {"post_wall_s": round(time.monotonic() - t0, 2), "observations_posted": sent, "triggers": triggers}


def _add_triggers(batch: list[dict[str, Any]], k: int, counties: list[str], county_of: dict[str, str]) -> int:
    """Give 1 % of the reports of tick k (2 of 200) a threshold-crossing rain, in the county of the moment, at
    the level of the moment: each county climbs blue -> red within 1/COUNTIES_PER_S s, then the next.
    Returns how many were given one."""
    pos = k * TICK_S * COUNTIES_PER_S
    target = counties[int(pos) % len(counties)]
    mm = LADDER_MM[min(len(LADDER_MM) - 1, int((pos % 1.0) * len(LADDER_MM)))]
    picked = [o for o in batch if county_of[o["station_id"]] == target][:len(batch) // 100]
    for o in picked:
        o["precip_mm"], o["precip_period_h"] = mm, 1.0
    return len(picked)


async def _drain(inbox: Inbox) -> None:
    """Wait until no webhook arrived for 5 s (at most 60 s)."""
    last, t_end = len(inbox), time.monotonic()
    while time.monotonic() - t_end < 60:
        await asyncio.sleep(1.0)
        if len(inbox) == last and inbox and time.time() - inbox[-1][0] > 5:
            break
        last = len(inbox)


def _delivery_figures(inbox: Inbox, posted: Posted, post_lat: list[float]) -> dict[str, Any]:
    """Latency percentiles of the alert / update deliveries (from the POST of the newest triggering observation),
    split at the moment the grade agent emitted the event; counts by type, duplicates, untimed deliveries."""
    lat: list[float] = []
    to_emit: list[float] = []  # POST -> grade agent emitted the warning event (event["emitted_at"])
    to_arrive: list[float] = []  # emitted -> receiver (route, outbox, deliver)
    unmatched = 0
    kinds: dict[str, int] = {}
    seen: set[tuple[int, str]] = set()
    dups = 0
    events: set[str] = set()
    for arrived, i, body, wid in inbox:
        if (i, wid) in seen:
            dups += 1
        seen.add((i, wid))
        try:
            msg = orjson.loads(body)
            ev = msg["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            unmatched += 1
            continue
        kinds[msg.get("type", "?")] = kinds.get(msg.get("type", "?"), 0) + 1
        events.add(ev.get("id", ""))
        times = [posted[key] for st in ev.get("stations", [])
                 if (key := (st.get("station_id"), st.get("time"))) in posted]
        if str(msg.get("type", "")).rsplit(".", 1)[-1] in ("alert", "update") and times:
            lat.append(arrived - max(times))
            if isinstance(ev.get("emitted_at"), int | float):
                to_emit.append(ev["emitted_at"] - max(times))
                to_arrive.append(arrived - ev["emitted_at"])
        else:
            unmatched += 1
    return dict(deliveries=len(inbox), distinct_events=len(events), by_type=kinds, timed=len(lat),
                not_timed=unmatched, duplicates=dups,
                p50_s=_pct(lat, 50), p95_s=_pct(lat, 95), p99_s=_pct(lat, 99),
                max_s=round(max(lat), 4) if lat else None,
                post_to_emitted_p50_s=_pct(to_emit, 50), post_to_emitted_p99_s=_pct(to_emit, 99),
                emitted_to_receiver_p50_s=_pct(to_arrive, 50), emitted_to_receiver_p99_s=_pct(to_arrive, 99),
                post_p50_s=_pct(post_lat, 50), post_p99_s=_pct(post_lat, 99))
