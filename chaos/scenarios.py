"""The four fault runs. Each returns a Result; none raises for a failed expectation (the report says it)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from chaos import issue17
from chaos.harness import (
    FAST,
    EwsProcess,
    MotoServer,
    Receiver,
    delivered_all,
    flaky_mode,
    hot,
    log_summary,
    one_station_per_county,
    post_observations,
    probe,
    read_topic,
    slowest,
    spread,
    start_ews,
    subscribe,
    tally,
    until,
    wait_ready,
)
from chaos.hostile import HttpCase, http_cases, topic_cases
from tests.support import running_ews
from warning.broker import EmbeddedBroker
from warning.shared.regions import StationRegistry

N_RECEIVERS = 5
N_COUNTIES = 40
WATCH_S = 62.0  # after the hostile inputs: two of the worker's 30 s ticks


@dataclass
class Result:
    name: str
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    recover_s: float | None = None
    ok: bool = False
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    crash_log: str = ""

    def note(self, text: str) -> None:
        self.notes.append(text)


def _hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


def _counties(stations: list[str]) -> list[str]:
    reg = StationRegistry.load()
    return [reg.get(s).county_code for s in stations]  # type: ignore[union-attr]


async def _receivers(n: int, **kw: Any) -> list[Receiver]:
    return [await Receiver(f"r{i}", **{k: (v(i) if callable(v) and k == "mode" else v) for k, v in kw.items()}
                           ).start() for i in range(n)]


def _fill(res: Result, receivers: list[Receiver], counties: list[str]) -> None:
    t = tally(receivers, counties)
    res.expected, res.delivered, res.lost, res.duplicates = t.expected, t.delivered, t.lost, t.duplicates
    res.figures.update(requests=t.requests, answers=t.answers, extra_webhooks=t.extra,
                       bad_signatures=t.bad_signatures)
    if t.missing:
        res.note(f"missing (county->receiver), first ones: {', '.join(t.missing)}")
    if t.bad_signatures:
        res.note(f"{t.bad_signatures} webhooks with a signature that does not verify")


async def _dead_letters(ews: EwsProcess) -> int | None:
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s, \
                s.get(ews.url + "/api/v1/dead-letters", headers=ews.headers()) as r:
            if r.status == 200:
                return len(await r.json())
    return None


async def _active_counties(ews: EwsProcess) -> set[str] | None:
    """Counties with an active warning; None when the API does not answer."""
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s, \
                s.get(ews.url + "/api/v1/warnings?active=true") as r:
            if r.status == 200:
                return {e["region_code"] for e in await r.json()}
    return None


def _worker_problems(res: Result, *ews: EwsProcess) -> None:
    text = "\n".join(e.output() for e in ews)
    exceptions, excerpt = log_summary(text)
    if exceptions:
        res.figures["worker_log_exceptions"] = exceptions
    if excerpt:
        res.crash_log = excerpt


async def _tear_down(res: Result, procs: list[EwsProcess], services: list[Any], receivers: list[Any]) -> None:
    """Stop the workers, then what they used (brokers, the S3 server), keep the workers' log problems, stop the
    receivers."""
    for p in procs:
        p.stop()
    for service in services:
        service.stop()
    _worker_problems(res, *procs)
    for r in receivers:
        await r.stop()


# ---- 1. flaky receivers -------------------------------------------------------------------------------------
async def flaky_receivers(work: Path, res: Result) -> None:
    rng = random.Random(1)
    receivers = await _receivers(N_RECEIVERS, mode=lambda i: flaky_mode(random.Random(rng.random())))
    stations = one_station_per_county(N_COUNTIES)
    counties = _counties(stations)
    ews = start_ews(work / "s1-flaky", FAST)
    try:
        res.figures["ready_s"] = round(await wait_ready(ews), 1)
        await subscribe(ews, receivers)
        t0, t0_wall = time.monotonic(), time.time()
        await post_observations(ews, hot(stations, _hour_ago()))
        done = await until(delivered_all(receivers, counties), 120)
        res.recover_s = round(time.monotonic() - t0, 1)
        res.figures["post_to_2xx"] = spread(receivers, t0_wall)
        res.figures["max_requests_one_webhook"] = max(max(r.by_id.values(), default=0) for r in receivers)
        res.figures["slowest_webhook_answers"] = slowest(receivers, t0_wall)
        await asyncio.sleep(3.0)  # late retries of timed-out deliveries still land: count them as duplicates
        _fill(res, receivers, counties)
        res.figures["dead_letters"] = await _dead_letters(ews)
        res.figures["healthz_readyz"] = await probe(ews)
        res.ok = done and res.lost == 0 and res.figures["dead_letters"] == 0 and ews.alive()
        if not done:
            res.note("not every webhook arrived within 120 s")
    finally:
        rc = ews.stop()
        res.figures["worker_exit"] = rc
        _worker_problems(res, ews)
        for r in receivers:
            await r.stop()


# ---- 2. SIGKILL of the worker mid-burst ---------------------------------------------------------------------
async def worker_sigkill(work: Path, res: Result) -> None:
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2)
    receivers = await _receivers(N_RECEIVERS, delay_s=0.15,
                                 mode=lambda i: flaky_mode(random.Random(rng.random()), 0.10, 0.0, 0.0))
    stations = one_station_per_county(N_COUNTIES)
    counties = _counties(stations)
    broker = EmbeddedBroker(log_path=work / "tansu.log").start()
    env = {**FAST, "KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "chaos-kill",
           "EWS_ENDPOINT_CONCURRENCY": "1"}
    procs: list[EwsProcess] = []
    try:
        ews = start_ews(work, env)
        procs.append(ews)
        res.figures["ready_s"] = round(await wait_ready(ews), 1)
        await subscribe(ews, receivers)
        t0_wall = time.time()
        await post_observations(ews, hot(stations, _hour_ago()))
        total = len(stations) * len(receivers)
        await until(lambda: sum(len(r.ok) for r in receivers) >= total // 4, 60)
        ews.kill()
        t_kill = time.monotonic()
        at_kill = sum(len(r.ok) for r in receivers)
        res.figures["delivered_at_kill"] = f"{at_kill}/{total}"
        if at_kill >= total:
            res.note("the burst finished before the kill: nothing was tested")
        ews = start_ews(work, env, port=ews.port)
        procs.append(ews)
        res.figures["restart_ready_s"] = round(await wait_ready(ews), 1)
        done = await until(delivered_all(receivers, counties), 120)
        res.recover_s = round(time.monotonic() - t_kill, 1)
        res.figures["post_to_2xx"] = spread(receivers, t0_wall)
        await asyncio.sleep(2.0)
        _fill(res, receivers, counties)
        res.figures["dead_letters"] = await _dead_letters(ews)
        res.figures["healthz_readyz"] = await probe(ews)
        res.ok = done and res.lost == 0 and at_kill < total and ews.alive()
    finally:
        await _tear_down(res, procs, [broker], receivers)


# ---- 3. broker (tansu on S3/moto) SIGKILLed and restarted mid-stream -----------------------------------------
async def _post_with_retry(ews: EwsProcess, obs: list[dict[str, Any]], budget_s: float) -> tuple[bool, str]:
    """POST until a 202 (the API may fail while its producer reconnects). (accepted, last status/error)."""
    deadline = time.monotonic() + budget_s
    last = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        while time.monotonic() < deadline:
            try:
                async with s.post(ews.url + "/api/v1/observations", json=obs, headers=ews.headers()) as r:
                    last = f"HTTP {r.status}"
                    if r.status == 202:
                        body = await r.json()
                        return body.get("accepted") == len(obs), last
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"[:120]
            await asyncio.sleep(0.5)
    return False, last


async def broker_restart(work: Path, res: Result) -> None:
    work.mkdir(parents=True, exist_ok=True)
    receivers = await _receivers(N_RECEIVERS, delay_s=0.1)
    burst_a = one_station_per_county(N_COUNTIES)  # before the kill
    burst_b = one_station_per_county(20, skip=N_COUNTIES)  # posted while the broker is down
    burst_c = one_station_per_county(19, skip=N_COUNTIES + 20)  # after the restart
    moto = MotoServer(work / "moto.log").start()
    bucket = "ews-chaos"
    res.figures["bucket_created_with"] = moto.create_bucket(bucket)
    storage = f"s3://{bucket}/"
    broker = EmbeddedBroker(storage=storage, env=moto.broker_env(), log_path=work / "tansu.log").start()
    res.figures["broker_cold_start_s"] = round(broker.startup_s or 0.0, 3)
    env = {**FAST, "KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "chaos-s3",
           "EWS_ENDPOINT_CONCURRENCY": "1"}
    procs: list[EwsProcess] = []
    brokers = [broker]
    accepted: list[str] = []
    try:
        ews = start_ews(work, env)
        procs.append(ews)
        res.figures["ready_s"] = round(await wait_ready(ews, 120), 1)
        await subscribe(ews, receivers)
        await post_observations(ews, hot(burst_a, _hour_ago()))
        accepted += burst_a
        total_a = len(burst_a) * len(receivers)
        await until(lambda: sum(len(r.ok) for r in receivers) >= total_a // 4, 90)
        at_kill = sum(len(r.ok) for r in receivers)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGKILL)
        broker.proc.wait(timeout=10)
        broker.proc = None
        t_kill = time.monotonic()
        res.figures["delivered_at_broker_kill"] = f"{at_kill}/{total_a}"
        # while the broker is down: the API answers? a POST either fails or must not lose what it accepted
        ok_b, status_b = await _post_with_retry(ews, hot(burst_b, _hour_ago()), budget_s=3.0)
        res.figures["post_during_outage"] = f"{'accepted' if ok_b else 'refused'} ({status_b})"
        if ok_b:
            accepted += burst_b
        await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - t_kill)))
        broker = EmbeddedBroker(broker.port, storage=storage, env=moto.broker_env(),
                                log_path=work / "tansu.log").start()
        brokers.append(broker)
        res.figures["broker_down_s"] = round(time.monotonic() - t_kill, 1)
        res.figures["broker_restart_ready_s"] = round(broker.startup_s or 0.0, 3)
        ok_c, status_c = await _post_with_retry(ews, hot(burst_c, _hour_ago()), budget_s=60.0)
        res.figures["post_after_restart"] = f"{'accepted' if ok_c else 'refused'} ({status_c})"
        if ok_c:
            accepted += burst_c
        counties = _counties(accepted)
        done = await until(delivered_all(receivers, counties), 90)
        res.figures["worker_restarted"] = "no"
        if not done:
            t = tally(receivers, counties)
            health = await probe(ews)
            res.note(f"worker did NOT recover by itself: {t.delivered}/{t.expected} delivered 90 s after the "
                     f"broker restart, alive={ews.alive()}, /healthz,/readyz={health}; restarting the worker")
            res.figures["worker_restarted"] = f"yes (after {round(time.monotonic() - t_kill)} s)"
            rc = ews.stop(timeout_s=20)
            res.figures["stuck_worker_exit"] = rc
            ews = start_ews(work, env, port=ews.port)
            procs.append(ews)
            await wait_ready(ews, 120)
            if not ok_c:
                ok_c, status_c = await _post_with_retry(ews, hot(burst_c, _hour_ago()), budget_s=30.0)
                if ok_c:
                    accepted += burst_c
                    counties = _counties(accepted)
            done = await until(delivered_all(receivers, counties), 120)
        res.recover_s = round(time.monotonic() - t_kill, 1)
        await asyncio.sleep(2.0)
        _fill(res, receivers, counties)
        res.figures["accepted_counties"] = len(counties)
        res.figures["dead_letters"] = await _dead_letters(ews)
        res.figures["healthz_readyz"] = await probe(ews)
        res.ok = done and res.lost == 0 and ews.alive()
    finally:
        await _tear_down(res, procs, [*brokers, moto], receivers)


def _rejected_figures(res: Result, records: list[tuple[bytes | None, bytes | None]], markers: set[str],
                      tombstones: int, push_rejected: int) -> tuple[set[str], int]:
    """Count obs.rejected by source and find every topic marker in it. Returns (missing markers, HTTP rejects)."""
    sources: Counter[str] = Counter()
    found: set[str] = set()
    empty_raw = 0
    for _key, value in records:
        rec = orjson.loads(value or b"{}")
        sources[rec.get("source", "?")] += 1
        raw = rec.get("raw", "")
        if rec.get("source") != "obs-topic":
            continue
        empty_raw += raw == ""
        idx = raw.find("CHAOS-")
        while idx >= 0:
            end = idx + 6
            while end < len(raw) and (raw[end].isdigit() or raw[end] == "."):
                end += 1
            found.add(raw[idx:end].rstrip("."))
            idx = raw.find("CHAOS-", end)
    missing = markers - found
    http_rej = sum(n for src, n in sources.items() if src.startswith("push"))  # "push", "push-forecast", ...
    res.figures["obs.rejected"] = dict(sources)
    res.figures["topic_markers_found"] = f"{len(markers & found)}/{len(markers)}"
    res.figures["tombstones_rejected"] = f"{min(empty_raw, tombstones)}/{tombstones}"
    res.figures["http_rejections_in_topic"] = f"{http_rej}/{push_rejected}"
    res.notes = [n for n in res.notes if "never reached obs.rejected" not in n]
    if missing:
        res.note(f"{len(missing)} raw obs records/observations never reached obs.rejected, e.g. "
                 f"{sorted(missing, key=lambda m: [int(x) for x in m[6:].split('.')])[:8]}")
    return missing, http_rej


# ---- 4. 10,000 malformed and hostile inputs -----------------------------------------------------------------
async def hostile_inputs(work: Path, res: Result, n_obs: int = 4000, n_fc: int = 2000, n_topic: int = 4000
                         ) -> None:
    work.mkdir(parents=True, exist_ok=True)
    known = [s.station_id for s in StationRegistry.load()]
    receivers = await _receivers(1)
    broker = EmbeddedBroker(log_path=work / "tansu.log").start()
    env = {**FAST, "KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "chaos-hostile"}
    ews = start_ews(work, env)
    procs = [ews]
    try:
        res.figures["ready_s"] = round(await wait_ready(ews), 1)
        await subscribe(ews, receivers)
        # -- three real warnings first: hostile inputs must neither cancel nor expire them
        live = one_station_per_county(3, skip=61)
        live_counties = _counties(live)
        await post_observations(ews, hot(live, _hour_ago()))
        if not await until(delivered_all(receivers, live_counties), 60):
            res.note("the three warnings issued before the hostile inputs were not delivered")
        http = await _post_hostile_bodies(ews, res, known, n_obs, n_fc)
        topic = await _produce_hostile_records(broker.bootstrap, res, known, live, n_topic)
        ews, crashed, missing, http_rej = await _watch_worker_after_inputs(work, env, procs, broker.bootstrap,
                                                                           res, topic, http.push_rejected)
        # -- a valid observation afterwards still produces its warning
        got, health_before_valid = await _valid_observation_still_warns(ews, res, receivers, live_counties)
        cancels, still = await _live_warnings_survived(ews, res, receivers, live_counties)
        if not got:
            res.note("the valid observation after the hostile inputs produced NO webhook within 60 s")
        # lost here = bad inputs that were neither answered 4xx nor rejected to obs.rejected
        n_5xx = http.n_5xx()
        res.figures["bad_inputs_unaccounted"] = len(missing) + max(0, http.push_rejected - http_rej) + n_5xx
        res.figures["hostile_inputs_that_made_webhooks"] = res.figures.get("extra_webhooks", 0)
        res.ok = (got and ews.alive() and not crashed and n_5xx == 0 and not cancels
                  and still and not missing and http_rej >= http.push_rejected
                  and not http.accepted_bad and health_before_valid == (200, 200))
    finally:
        await _tear_down(res, procs, [broker], receivers)
    await _issue17_findings(work / "issue17", res)


async def _issue17_findings(work: Path, res: Result) -> None:
    """Issue 17's findings (chaos/issue17.py) against a service of their own: the ``tried / held`` tally."""
    async with running_ews(work, issue17.ENV) as ews:
        findings = await issue17.run_all(ews, work)
    res.figures["issue 17 findings"] = findings.tally.removeprefix("issue 17 findings ")
    for v in findings.verdicts:
        if not v.held:
            res.note(f"issue 17 NOT HELD: {v.finding}: {v.note}")
    res.ok = res.ok and all(v.held for v in findings.verdicts)


@dataclass
class _HttpOutcome:
    """What the hostile HTTP bodies got back."""

    statuses: Counter[str] = field(default_factory=Counter)
    by_kind_5xx: Counter[str] = field(default_factory=Counter)  # 5xx answers and connection failures, by kind
    sample_5xx: list[str] = field(default_factory=list)
    push_rejected: int = 0  # observations named in the ``rejected`` of 202 answers
    accepted_bad: list[str] = field(default_factory=list)

    def n_5xx(self) -> int:
        """5xx answers plus connection failures (except those of over-limit bodies, which the server may cut)."""
        return sum(v for k, v in self.statuses.items() if k.startswith("5")) + sum(
            v for k, v in self.by_kind_5xx.items() if k.startswith("conn:"))


async def _post_hostile_bodies(ews: EwsProcess, res: Result, known: list[str], n_obs: int, n_fc: int
                               ) -> _HttpOutcome:
    """POST every hostile body, 16 at a time; each must get a 4xx, or a 202 that rejects it."""
    out = _HttpOutcome()
    sem = asyncio.Semaphore(16)
    t0 = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60),
                                     connector=aiohttp.TCPConnector(limit=16)) as s:
        await asyncio.gather(*(_post_hostile_body(s, sem, ews, c, out) for c in http_cases(n_obs, n_fc, known)))
    res.figures["http_s"] = round(time.monotonic() - t0, 1)
    res.figures["http_statuses"] = dict(sorted(out.statuses.items()))
    res.figures["http_push_rejections"] = out.push_rejected
    if out.by_kind_5xx:
        res.note(f"5xx/connection failures by input kind: {dict(out.by_kind_5xx)}")
        res.note("samples: " + " | ".join(out.sample_5xx))
    if out.accepted_bad:
        res.note(f"{len(out.accepted_bad)} hostile bodies were ACCEPTED, e.g. {out.accepted_bad[:3]}")
    return out


async def _post_hostile_body(s: aiohttp.ClientSession, sem: asyncio.Semaphore, ews: EwsProcess, case: HttpCase,
                             out: _HttpOutcome) -> None:
    async with sem:
        try:
            async with s.post(ews.url + case.path, data=case.body,
                              headers={**ews.headers(), "Content-Type": case.content_type}) as r:
                text = await r.read()
                status = r.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            out.statuses[f"conn:{type(exc).__name__}"] += 1
            if case.kind != "over_limit":
                out.by_kind_5xx[f"conn:{case.kind if '+' not in case.kind else 'list of several'}"] += 1
            return
    out.statuses[str(status)] += 1
    if status >= 500:
        out.by_kind_5xx[case.kind if "+" not in case.kind else "list of several"] += 1
        if len(out.sample_5xx) < 5:
            out.sample_5xx.append(f"{case.path} {case.kind} -> {status} {text[:120]!r}")
    elif status == 202:
        body = orjson.loads(text)
        out.push_rejected += len(body.get("rejected", []))
        if body.get("accepted"):
            out.accepted_bad.append(f"{case.path} {case.kind}: {case.body[:160]!r}")


@dataclass
class _TopicOutcome:
    """What the broker took of the raw ``obs`` records: the markers to find in obs.rejected, and so on."""

    markers: set[str] = field(default_factory=set)
    lenient: int = 0  # observations that may be dropped as stale or flagged instead of rejected
    tombstones: int = 0


async def _produce_hostile_records(bootstrap: str, res: Result, known: list[str], live: list[str], n_topic: int
                                   ) -> _TopicOutcome:
    """Raw records straight onto the obs topic. Only records the broker acknowledged are expected downstream."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024,
                                acks="all", linger_ms=5)
    await producer.start()
    out = _TopicOutcome()
    produce_refused = 0
    kinds: Counter[str] = Counter()
    t0 = time.monotonic()
    try:
        futures = []
        for case in topic_cases(n_topic, known, live=tuple(live)):
            kinds[case.kind] += 1
            try:
                futures.append((case, await producer.send(topic="obs", value=case.value, key=case.key,
                                                          partition=random.randrange(4))))
            except Exception as exc:  # too large for the client: counts as refused, not as an input
                produce_refused += 1
                res.note(f"producer refused a {case.kind} record: {type(exc).__name__}")
                continue
        for case, fut in futures:
            try:
                await fut
            except Exception as exc:
                produce_refused += 1
                if produce_refused <= 3:
                    res.note(f"broker refused a {case.kind} record ({len(case.value or b'')} B): "
                             f"{type(exc).__name__}")
                continue
            out.markers.update(case.markers)
            out.lenient += case.lenient
            out.tombstones += case.value is None
    finally:
        await producer.stop()
    res.figures["topic_records"] = dict(kinds)
    res.figures["topic_refused_by_broker"] = produce_refused
    res.figures["topic_produce_s"] = round(time.monotonic() - t0, 1)
    return out


async def _watch_worker_after_inputs(work: Path, env: dict[str, str], procs: list[EwsProcess], bootstrap: str,
                                     res: Result, topic: _TopicOutcome, push_rejected: int
                                     ) -> tuple[EwsProcess, bool, set[str], int]:
    """Does the worker (procs[-1]) stay up? Its tick timer (every 30 s) reads the data clock: watch two ticks.
    On a crash, restart it (twice on a crash loop) so that the later checks can run. Returns (the worker now
    running, whether it crashed, the topic markers missing from obs.rejected, HTTP rejections found there)."""
    ews = procs[-1]
    t_done = time.monotonic()
    records = await read_topic(bootstrap, "obs.rejected", idle_s=8.0, timeout_s=150.0)
    res.figures["read_rejected_s"] = round(time.monotonic() - t_done, 1)
    missing, http_rej = _rejected_figures(res, records, topic.markers, topic.tombstones, push_rejected)
    await until(lambda: not ews.alive(), max(0.0, WATCH_S - (time.monotonic() - t_done)), 0.5)
    res.figures["healthz_readyz_after_inputs"] = await probe(ews)
    crashed = not ews.alive()
    res.figures["worker_crashed"] = "no"
    res.figures["lenient_observations"] = topic.lenient
    if crashed:
        res.figures["worker_crashed"] = f"YES, {time.monotonic() - t_done:.0f} s after the inputs"
        res.note(f"WORKER CRASHED {time.monotonic() - t_done:.0f} s after the hostile inputs "
                 f"(exit {ews.proc.returncode}); restarting it once to finish the checks")
        ews = start_ews(work, env, port=ews.port)
        procs.append(ews)
        await wait_ready(ews, 90)
        loop = await until(lambda: not ews.alive(), WATCH_S, 0.5)
        records = await read_topic(bootstrap, "obs.rejected", idle_s=8.0, timeout_s=120.0)
        missing, http_rej = _rejected_figures(res, records, topic.markers, topic.tombstones, push_rejected)
        if loop or not ews.alive():
            res.figures["worker_crashed"] += "; the restarted worker CRASHED AGAIN (crash loop)"
            res.note(f"the restarted worker CRASHED AGAIN (exit {ews.proc.returncode}): a crash loop on the "
                     "uncommitted records it re-reads; a third start runs the valid-observation check")
            ews.stop(5)
            ews = start_ews(work, env, port=ews.port)
            procs.append(ews)
            await wait_ready(ews, 90)
    return ews, crashed, missing, http_rej


async def _valid_observation_still_warns(ews: EwsProcess, res: Result, receivers: list[Receiver],
                                         live_counties: list[str]) -> tuple[bool, tuple[int | None, int | None]]:
    """POST one valid hot observation and wait for its webhook. Returns (delivered, /healthz,/readyz before)."""
    from chaos.harness import county_of

    health_before_valid = await probe(ews)
    [station] = one_station_per_county(1, skip=60)
    t0 = time.monotonic()
    await post_observations(ews, hot([station], _hour_ago()))
    got = await until(delivered_all(receivers, [county_of(station)]), 60)
    res.recover_s = round(time.monotonic() - t0, 1)
    res.figures["healthz_readyz_end"] = await probe(ews)
    _fill(res, receivers, [county_of(station), *live_counties])
    return got, health_before_valid


async def _live_warnings_survived(ews: EwsProcess, res: Result, receivers: list[Receiver],
                                  live_counties: list[str]) -> tuple[int, bool]:
    """Were the warnings in force before the hostile inputs left alone? Returns (cancel or update webhooks sent,
    whether all of them are still active)."""
    cancels = sum(1 for r in receivers for x in r.ok.values() if x["body"]["data"]["msg_type"] != "alert")
    active = await _active_counties(ews)
    still = set(live_counties) <= active if active is not None else False
    res.figures["earlier_warnings_still_active"] = (
        f"{len(set(live_counties) & active)}/{len(live_counties)}" if active is not None else "unknown: API down")
    res.figures["cancel_or_update_webhooks_caused"] = cancels
    if cancels or (active is not None and not still):
        res.note("hostile inputs CANCELLED or expired live warnings (cancel webhooks sent to departments)")
    return cancels, still


SCENARIOS: dict[str, tuple[str, Callable[[Path, Result], Awaitable[None]]]] = {
    "flaky": ("1 flaky receivers: 30% 5xx, 10% timeouts, 3% resets", flaky_receivers),
    "sigkill": ("2 worker SIGKILL mid-burst, restart", worker_sigkill),
    "broker": ("3 broker (tansu s3:// on moto) SIGKILL mid-stream", broker_restart),
    "hostile": ("4 10,000 hostile inputs (HTTP + raw obs records)", hostile_inputs),
}
