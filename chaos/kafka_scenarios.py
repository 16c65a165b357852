"""Fault runs of the nothing-lost issue: a paused subscription resumed, a full stop and start of the single-machine
mode on Apache Kafka, and the broker and the worker SIGKILLed together. Each fills a Result like the others."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from chaos.harness import (
    FAST,
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
from chaos.scenarios import N_COUNTIES, N_RECEIVERS, Result, _counties, _dead_letters, _fill, _hour_ago, _receivers
from chaos.scenarios import _tear_down as tear_down
from warning.kafka_node import KafkaNode

SLOW_S = 0.1  # each receiver answers this late: a burst lasts a few seconds, so a fault lands in its middle


async def pause_resume(work: Path, res: Result) -> None:
    """Every subscription paused before a burst: nothing is sent, everything is held; resumed, all arrive."""
    work.mkdir(parents=True, exist_ok=True)
    receivers = await _receivers(N_RECEIVERS)
    stations = one_station_per_county(N_COUNTIES)
    counties = _counties(stations)
    procs: list[EwsProcess] = []
    try:
        ews = start_ews(work, {**FAST, "EWS_APP_ID": "chaos-pause"})
        procs.append(ews)
        res.figures["ready_s"] = round(await wait_ready(ews), 1)
        await subscribe(ews, receivers)
        async with aiohttp.ClientSession() as s:
            for r in receivers:
                await api(s, ews, "POST", f"/api/v1/subscriptions/{r.sub_id}/pause")
        await post_observations(ews, hot(stations, _hour_ago()))
        total = len(stations) * len(receivers)
        async with aiohttp.ClientSession() as s:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 90 and (await _dead_letters(ews) or 0) < total:
                await asyncio.sleep(0.5)
            res.figures["held_while_paused"] = await _dead_letters(ews)
            res.figures["sent_while_paused"] = sum(len(r.ok) for r in receivers)
            t_resume = time.monotonic()
            sent = [(await api(s, ews, "POST", f"/api/v1/subscriptions/{r.sub_id}/resume"))["held_sent"]
                    for r in receivers]
        res.figures["held_sent_on_resume"] = sum(sent)
        done = await until(delivered_all(receivers, counties), 120)
        res.recover_s = round(time.monotonic() - t_resume, 1)
        _fill(res, receivers, counties)
        res.figures["dead_letters_after"] = await _dead_letters(ews)
        res.ok = (done and res.lost == 0 and res.figures["sent_while_paused"] == 0
                  and res.figures["held_sent_on_resume"] == total)
    finally:
        await tear_down(res, procs, [], receivers)


async def _quarter_of_a_burst(ews: EwsProcess, receivers: list[Receiver], stations: list[str]) -> str:
    """Subscribe the receivers, post a burst of red heat and wait until a quarter of its webhooks arrived: the
    moment to inject the fault. Returns "delivered/expected"."""
    await subscribe(ews, receivers)
    await post_observations(ews, hot(stations, _hour_ago()))
    total = len(stations) * len(receivers)
    await until(lambda: sum(len(r.ok) for r in receivers) >= total // 4, 90)
    return f"{sum(len(r.ok) for r in receivers)}/{total}"


async def _restart_and_drain(work: Path, env: dict[str, str], port: int, procs: list[EwsProcess], res: Result,
                             receivers: list[Receiver], counties: list[str], t_fault: float) -> bool:
    """Start the worker again on the same data and port, wait for every webhook; fills the figures."""
    ews = start_ews(work, env, port=port)
    procs.append(ews)
    res.figures["restart_ready_s"] = round(await wait_ready(ews, timeout_s=180), 1)
    done = await until(delivered_all(receivers, counties), 180)
    res.recover_s = round(time.monotonic() - t_fault, 1)
    _fill(res, receivers, counties)
    return done


async def stop_start(work: Path, res: Result) -> None:
    """`ews run` on its own Apache Kafka (data under the data dir), stopped mid-burst and started again."""
    work.mkdir(parents=True, exist_ok=True)
    receivers = await _receivers(N_RECEIVERS, delay_s=SLOW_S)
    stations = one_station_per_county(N_COUNTIES)
    counties = _counties(stations)
    env = {**FAST, "EWS_BROKER": "kafka", "EWS_APP_ID": "chaos-stopstart", "EWS_ENDPOINT_CONCURRENCY": "1"}
    procs: list[EwsProcess] = []
    try:
        ews = start_ews(work, env)
        procs.append(ews)
        res.figures["first_start_ready_s"] = round(await wait_ready(ews, timeout_s=180), 1)
        res.figures["delivered_at_stop"] = await _quarter_of_a_burst(ews, receivers, stations)
        t_stop = time.monotonic()
        res.figures["stop_exit_code"] = ews.stop(timeout_s=60)
        done = await _restart_and_drain(work, env, ews.port, procs, res, receivers, counties, t_stop)
        res.ok = done and res.lost == 0 and "embedded Apache Kafka" in procs[0].output()
    finally:
        await tear_down(res, procs, [], receivers)


async def kill_broker_and_worker(work: Path, res: Result) -> None:
    """An Apache Kafka node and a worker SIGKILLed together mid-burst, both restarted on the same data."""
    work.mkdir(parents=True, exist_ok=True)
    receivers = await _receivers(N_RECEIVERS, delay_s=SLOW_S)
    stations = one_station_per_county(N_COUNTIES)
    counties = _counties(stations)
    node = KafkaNode(work / "kafka").start()
    res.figures["kafka_ready_s"] = round(node.startup_s or 0.0, 1)
    env = {**FAST, "KAFKA_BOOTSTRAP": node.bootstrap, "EWS_APP_ID": "chaos-killboth", "EWS_ENDPOINT_CONCURRENCY": "1"}
    procs: list[EwsProcess] = []
    try:
        ews = start_ews(work, env)
        procs.append(ews)
        res.figures["ready_s"] = round(await wait_ready(ews, timeout_s=120), 1)
        res.figures["delivered_at_kill"] = await _quarter_of_a_burst(ews, receivers, stations)
        ews.kill()
        node.kill()
        t_kill = time.monotonic()
        node = KafkaNode(work / "kafka", port=node.port).start()
        res.figures["kafka_recovery_s"] = round(node.startup_s or 0.0, 1)
        done = await _restart_and_drain(work, env, ews.port, procs, res, receivers, counties, t_kill)
        res.ok = done and res.lost == 0
    finally:
        await tear_down(res, procs, [node], receivers)


KAFKA_SCENARIOS = {
    "pause": ("5 subscriptions paused during a burst, then resumed", pause_resume),
    "stopstart": ("6 single-machine mode on Kafka: stop mid-burst, start", stop_start),
    "killboth": ("7 Kafka broker + worker SIGKILLed together mid-burst", kill_broker_and_worker),
}
