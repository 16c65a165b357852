"""Issue 17 point 1 measured: healthy departments' delivery latency with and without hostile neighbours.

Three runs of the same bursts on a fresh worker each, with the service's own retry tiers and webhook timeout:
the healthy receivers alone; beside five polite neighbours (answering 204); beside five hostile ones — a 503 with
``Retry-After: 100000``, a body that drips a byte every half second, a 200 MiB body, a reply that is not HTTP and
a connection reset (served from a subprocess, so their CPU is not the scenario's). A first burst (other counties)
goes to the neighbours only, so their retries are pending when the measured burst (one red heat warning per
county for ``N_COUNTIES`` counties, to every healthy receiver) is posted. The figure is the healthy receivers' p99
from the POST to each webhook's first 2xx, and its ratio to the run without neighbours (must be <= 2; the ratio
to the polite run is printed too). Nothing may be lost: every healthy webhook arrives, and every hostile delivery
is parked as a dead letter when its subscription is deleted (none is dropped); the worker then stops in < 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from chaos.harness import (
    EwsProcess,
    Receiver,
    api,
    delivered_all,
    hot,
    one_station_per_county,
    post_observations,
    start_ews,
    subscribe,
    until,
    wait_ready,
)
from chaos.issue17 import Misbehaving
from chaos.scenarios import N_COUNTIES, Result, _counties, _fill, _hour_ago
from chaos.scenarios import _tear_down as tear_down

N_HEALTHY = 3
MAX_RATIO = 2.0
WARM_S = 8.0  # the hostile deliveries of the first burst have gone through every retry tier by then


class DrippingBody:
    """Answers 200 and then writes its body one byte every half second for a minute."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.requests = 0

    async def start(self) -> DrippingBody:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await request.read()
        resp = web.StreamResponse(status=200)
        resp.content_length = 120
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError, RuntimeError):
            for _ in range(120):
                await resp.write(b"x")
                await asyncio.sleep(0.5)
        return resp

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _latencies(receivers: list[Receiver], t0_wall: float) -> list[float]:
    return sorted(r.ok[w]["time"] - t0_wall for r in receivers for w in r.ok
                  if r.ok[w]["body"]["data"]["msg_type"] == "alert")


def _p(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def _burst(work: Path, healthy: list[Receiver], hostile_urls: dict[str, str], res: Result, tag: str
                 ) -> tuple[list[float], EwsProcess, dict[str, str]]:
    """A fresh worker; the hostile receivers (if any) subscribed to the province and the healthy ones to the
    counties of the measured burst. A first burst (other counties) goes to the hostile ones only, and after
    ``WARM_S`` their retries are cycling; then the measured burst. Returns the healthy latencies, the worker (still
    running) and the hostile subscriptions' ids by name. The run without neighbours posts the same two bursts."""
    first, measured = one_station_per_county(N_COUNTIES, skip=N_COUNTIES), one_station_per_county(N_COUNTIES)
    # the service's own retry tiers and webhook timeout (10 s, then 60 s...; 10 s): the fast test tiers would
    # retry each hostile delivery every 0.3-2.4 s, CPU the 2-core machine's scenario then measures, not isolation
    ews = start_ews(work / tag, {"EWS_APP_ID": f"chaos-neighbours-{tag}"})
    res.figures[f"{tag}_ready_s"] = round(await wait_ready(ews), 1)
    hostile_ids: dict[str, str] = {}
    async with aiohttp.ClientSession() as s:
        for name, url in hostile_urls.items():
            sub = await api(s, ews, "POST", "/api/v1/subscriptions",
                            {"name": name, "department": "other", "url": url, "regions": ["620000"]})
            hostile_ids[name] = str(sub["id"])
    await subscribe(ews, healthy, _counties(measured))
    await post_observations(ews, hot(first, _hour_ago()))
    await asyncio.sleep(WARM_S)
    t0_wall = time.time()
    await post_observations(ews, hot(measured, _hour_ago()))
    done = await until(delivered_all(healthy, _counties(measured)), 120)
    if not done:
        res.note(f"{tag}: not every healthy webhook arrived within 120 s")
    return _latencies(healthy, t0_wall), ews, hostile_ids


async def _hostile_kept(ews: EwsProcess, hostile_ids: dict[str, str], expected: int, res: Result) -> bool:
    """Every failing hostile subscription's deliveries are accounted for: deleting it parks what is pending as dead
    letters; none may have vanished (``expected``: the counties of both bursts). The 200 MiB body answers 200:
    delivered."""
    async with aiohttp.ClientSession() as s:
        for sub_id in hostile_ids.values():
            await api(s, ews, "DELETE", f"/api/v1/subscriptions/{sub_id}")

        async def parked() -> dict[str, int]:
            dead: list[dict[str, Any]] = await api(s, ews, "GET", "/api/v1/dead-letters")
            return {name: sum(1 for d in dead if d.get("subscription_id") == sid) for name, sid in hostile_ids.items()}

        counts: dict[str, int] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            counts = await parked()
            if all(n >= expected for n in counts.values()):
                break
            await asyncio.sleep(0.5)
    res.figures["hostile_parked_after_delete"] = counts
    return all(n >= expected for n in counts.values())


def _lost_and_reset(res: Result, healthy: list[Receiver], counties: list[str]) -> int:
    """The healthy receivers' losses in the run just ended; then their records are cleared for the next run."""
    _fill(res, healthy, counties)
    for r in healthy:
        for store in (r.ok, r.acked, r.history, r.processed, r.by_id, r.answers):
            store.clear()
        r.received.clear()
    return res.lost


class HostileReceivers:
    """The hostile receivers in a process of their own (``python -m chaos.neighbours``), as they would be on other
    machines: their own work (writing 200 MiB bodies, dripping bytes) must not slow the healthy receivers' clocks
    in this process. Prints their URLs as one JSON line; on SIGTERM, their request counts."""

    def __init__(self, polite: bool = False) -> None:
        self.polite = polite  # the same five receivers answering 204 at once: the baseline with neighbours
        self.urls: dict[str, str] = {}
        self.counts: dict[str, Any] = {}
        self._proc: subprocess.Popen[str] | None = None

    async def start(self) -> HostileReceivers:
        argv = [sys.executable, "-m", "chaos.neighbours", *(["--polite"] if self.polite else [])]
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                                      cwd=Path(__file__).resolve().parent.parent)
        assert self._proc.stdout is not None
        line = await asyncio.to_thread(self._proc.stdout.readline)
        self.urls = json.loads(line)
        return self

    async def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired, json.JSONDecodeError):
            out, _ = await asyncio.to_thread(self._proc.communicate, None, 15)
            self.counts = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc = None


async def _serve_hostile(polite: bool) -> None:
    retry_after = await Receiver("retry-after", mode=lambda: 503).start()
    retry_after.retry_after = "100000"
    reset = await Receiver("reset", mode=lambda: "reset").start()
    dripping = await DrippingBody().start()
    bad = await Misbehaving().start()
    urls = {"retry-after": retry_after.url, "reset": reset.url, "dripping-body": dripping.url,
            "200MiB-body": bad.url("big"), "not-http": bad.url("garbage")}
    if polite:
        for name, polite_rec in zip(urls, [await Receiver(f"polite{i}").start() for i in range(len(urls))],
                                    strict=True):
            urls[name] = polite_rec.url
    print(json.dumps(urls), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    print(json.dumps({"retry-after": retry_after.requests, "reset": reset.requests,
                      "dripping-body": dripping.requests, "200MiB-body bytes written": bad.big_written}), flush=True)
    for server in (retry_after, reset, dripping, bad):
        await server.stop()


async def hostile_neighbours(work: Path, res: Result) -> None:
    work.mkdir(parents=True, exist_ok=True)
    procs: list[EwsProcess] = []
    healthy = [await Receiver(f"healthy{i}").start() for i in range(N_HEALTHY)]
    hostile = await HostileReceivers().start()
    polite = await HostileReceivers(polite=True).start()
    measured = _counties(one_station_per_county(N_COUNTIES))
    both = len(set(measured) | set(_counties(one_station_per_county(N_COUNTIES, skip=N_COUNTIES))))
    try:
        alone, ews, _ = await _burst(work, healthy, {}, res, "alone")
        procs.append(ews)
        ews.stop()
        lost_before = _lost_and_reset(res, healthy, measured)
        with_polite, ews, _ = await _burst(work, healthy, polite.urls, res, "polite")
        procs.append(ews)
        ews.stop()
        lost_before += _lost_and_reset(res, healthy, measured)
        beside, ews, hostile_ids = await _burst(work, healthy, hostile.urls, res, "beside")
        procs.append(ews)
        _fill(res, healthy, measured)
        res.recover_s = round(beside[-1], 1) if beside else None
        p99_alone, p99_beside = _p(alone, 0.99), _p(beside, 0.99)
        ratio = p99_beside / p99_alone if p99_alone else float("inf")
        res.figures["healthy_p50_alone_s"] = round(_p(alone, 0.5), 2)
        res.figures["healthy_p99_alone_s"] = round(p99_alone, 2)
        res.figures["healthy_p50_beside_polite_s"] = round(_p(with_polite, 0.5), 2)
        res.figures["healthy_p99_beside_polite_s"] = round(_p(with_polite, 0.99), 2)
        res.figures["healthy_p50_beside_hostile_s"] = round(_p(beside, 0.5), 2)
        res.figures["healthy_p99_beside_hostile_s"] = round(p99_beside, 2)
        res.figures["p99_ratio"] = round(ratio, 2)
        p99_polite = _p(with_polite, 0.99)
        res.figures["p99_ratio_to_polite"] = round(p99_beside / p99_polite, 2) if p99_polite else None
        failing = {k: v for k, v in hostile_ids.items() if k != "200MiB-body"}  # that one answers 200: delivered
        kept = await _hostile_kept(ews, failing, both, res)
        t0 = time.monotonic()
        res.figures["stop_exit_code"] = ews.stop()
        res.figures["stop_s"] = round(time.monotonic() - t0, 1)
        await hostile.stop()
        res.figures["hostile_requests"] = hostile.counts
        res.ok = (res.lost == 0 and lost_before == 0 and ratio <= MAX_RATIO and kept
                  and res.figures["stop_s"] < 10)
        if ratio > MAX_RATIO:
            res.note(f"healthy p99 {p99_beside:.2f} s beside hostile receivers is {ratio:.1f}x the {p99_alone:.2f} s "
                     "without them")
    finally:
        await tear_down(res, procs, [], [*healthy, hostile, polite])


if __name__ == "__main__":
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the scripted connection resets, not errors
    asyncio.run(_serve_hostile("--polite" in sys.argv))
