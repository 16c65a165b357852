"""Whole-pipeline benchmarks against `ews run` workers (subprocesses) on an embedded tansu broker.

* throughput (+ memory): ``obs`` pre-loaded with N observations from 2,400 stations by the real producer
  (ingest.producer.KafkaSink, batches of 1000 per partition); baseline = a bare aiokafka consumer that only
  reads and orjson-decodes the same messages; then one worker consumes the backlog (rate from its /metrics; the run
  ends when the observations are processed and every signal they produced is graded: the whole path).
  The same run samples the worker's RSS and reads its peak (VmHWM).
* per-event: the same observations sent one per message (KafkaSink with max_batch=1).
* scale-out: 1 vs 2 workers of one group consuming the same backlog; rebalance time when a worker joins and
  when one leaves (SIGTERM), read from faust's assignment log lines.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks import common as c

STATIONS = 2400


@dataclass
class Sizes:
    throughput_n: int
    per_event_n: int
    scaleout_n: int
    memory_n: int


FULL = Sizes(throughput_n=1_000_000, per_event_n=5_000, scaleout_n=200_000, memory_n=1_000_000)
QUICK = Sizes(throughput_n=200_000, per_event_n=3_000, scaleout_n=80_000, memory_n=200_000)


def _rss_summary(samples: list[tuple[float, int]], progress: list[tuple[float, float]], n: int) -> dict[str, Any]:
    """RSS (MB) at 25/50/75/100 % of the backlog and the growth over the second half per 100k observations."""
    if not samples or not progress:
        return {}

    def consumed_at(t: float) -> float:
        best = 0.0
        for tp, v in progress:
            if tp <= t:
                best = v
        return best

    marks: dict[str, float] = {}
    for frac in (0.25, 0.5, 0.75, 1.0):
        for t, kb in samples:
            if consumed_at(t) >= frac * n * 0.999:
                marks[f"{int(frac * 100)}%"] = round(kb / 1024, 1)
                break
    half = [(consumed_at(t), kb) for t, kb in samples if consumed_at(t) >= n / 2]
    growth = None
    if len(half) >= 2 and half[-1][0] > half[0][0]:
        growth = round((half[-1][1] - half[0][1]) / 1024 / ((half[-1][0] - half[0][0]) / 100_000), 2)
    return {"rss_mb_at": marks, "rss_growth_mb_per_100k_2nd_half": growth,
            "rss_samples_mb": [round(kb / 1024, 1) for _, kb in samples[:: max(1, len(samples) // 20)]]}


def _quarters(p: c.Progress) -> list[int]:
    """Rate over each quarter of the backlog: does the worker slow down as station state fills up?"""
    out = []
    marks = [p.n * q / 4 for q in range(5)]
    for a, b in itertools.pairwise(marks):
        pts = [(t, v) for t, v in p.samples if a <= v <= b]
        if len(pts) >= 2 and pts[-1][0] > pts[0][0]:
            out.append(round((pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])))
    return out


async def throughput(n: int, profile_s: float = 0.0, pyspy: str | None = None) -> dict[str, Any]:
    """Backlog of n observations (batches of 1000): bare consumer rate, then one worker's rate, CPU and RSS."""
    out: dict[str, Any] = {"n": n, "stations": STATIONS, "load_before": c.load_avg()}
    with c.broker() as b, c.workdir("tp") as wd:
        pub, msgs, dt = c.preload(b.bootstrap, c.observations(c.station_ids(STATIONS), n))
        out.update(preload_msgs=msgs, preload_s=round(dt, 2), preload_obs_s=round(pub / dt))
        bare, bare_cpu = await c.bare_consume(b.bootstrap, n)
        out.update(bare_obs_s=round(bare), bare_cpu_us_per_obs=round(bare_cpu, 2))
        w = c.start_worker(b.bootstrap, "bench-tp", wd, stations=STATIONS)
        spy: subprocess.Popen[bytes] | None = None
        try:
            async with aiohttp.ClientSession() as s:
                out["ready_s"] = round(await c.wait_ready(s, w), 2)
                cpu0, tansu0 = c.cpu_seconds(w.pid), c.cpu_seconds(b.pid or 0)
                if pyspy and profile_s > 0:
                    spy = start_profile(pyspy, w.pid, wd / "profile.txt", profile_s)
                p = await c.follow(s, [w], n, timeout_s=330.0, rss_every_s=0.5)
                dt_run = p.t_done - p.t_first
                w.rss_samples.append((p.t_done, c.proc_status_kb(w.pid, "VmRSS")))
                out.update(
                    pipeline_obs_s=round(p.rate), consumed=int(p.done), rejected=int(p.rejected), timed_out=p.timed_out,
                    run_s=round(dt_run, 2),
                    grade_drain_s=round(p.t_done - p.t_obs_done, 2),  # after the obs agent: signals still to grade
                    worker_cpu_s=round(c.cpu_seconds(w.pid) - cpu0, 2),
                    tansu_cpu_s=round(c.cpu_seconds(b.pid or 0) - tansu0, 2),
                    peak_rss_mb=round(c.proc_status_kb(w.pid, "VmHWM") / 1024, 1),
                    broker_rss_mb=round(c.proc_status_kb(b.pid or 0, "VmRSS") / 1024, 1),
                )
                out["worker_cpu_us_per_obs"] = round(out["worker_cpu_s"] / max(1, n) * 1e6, 1)
                out.update(_rss_summary(w.rss_samples, p.samples, n))
                out["rate_by_quarter_obs_s"] = _quarters(p)
                m = await c.metrics(s, w)
                out["warning_events"] = int(m.get("ews_warning_events_total", 0))
                out["qc_flagged"] = int(m.get("ews_qc_flagged_values_total", 0))
                if spy is not None:
                    out["profile"] = stop_profile(spy, wd / "profile.txt")
        finally:
            if spy is not None and spy.poll() is None:
                spy.kill()
            w.stop()
    out["ratio_vs_bare"] = round(out["pipeline_obs_s"] / out["bare_obs_s"], 4) if out.get("bare_obs_s") else None
    out["load_after"] = c.load_avg()
    return out


async def per_event(n: int) -> dict[str, Any]:
    """The same observations one per message ({"observations": [one]}): faust's per-event path."""
    out: dict[str, Any] = {"n": n, "load_before": c.load_avg()}
    with c.broker() as b, c.workdir("pe") as wd:
        _, msgs, dt = c.preload(b.bootstrap, c.observations(c.station_ids(STATIONS), n), batch=1)
        out.update(preload_msgs=msgs, preload_s=round(dt, 2))
        bare, _ = await c.bare_consume(b.bootstrap, n)
        out["bare_obs_s"] = round(bare)
        w = c.start_worker(b.bootstrap, "bench-pe", wd, stations=STATIONS)
        try:
            async with aiohttp.ClientSession() as s:
                await c.wait_ready(s, w)
                cpu0 = c.cpu_seconds(w.pid)
                p = await c.follow(s, [w], n, timeout_s=90.0)
                out.update(pipeline_obs_s=round(p.rate), timed_out=p.timed_out, worker_cpu_us_per_obs=round(
                    (c.cpu_seconds(w.pid) - cpu0) / n * 1e6, 1))
        finally:
            w.stop()
    out["ratio_vs_bare"] = round(out["pipeline_obs_s"] / out["bare_obs_s"], 4) if out.get("bare_obs_s") else None
    out["load_after"] = c.load_avg()
    return out


# --------------------------------------------------------------------------------------------- scale-out
_TS = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
_OBS_ROW = re.compile(r"^\|\s*obs\s*\|\s*\{([^}]*)\}")
_OBS_TP = re.compile(r"TopicPartition\(topic='obs', partition=(\d+)\)")


def _line(line: str) -> tuple[float | None, str]:
    """(wall time or None, message) of a worker log line: faust's text format or JSON lines."""
    if line.startswith("{"):
        try:
            rec = orjson.loads(line)
            t = datetime.fromisoformat(str(rec["time"]).replace("Z", "+00:00")).timestamp()
            return t, str(rec.get("message", ""))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None, line
    m = _TS.match(line)
    if not m:
        return None, line
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp(), line


def _parts(spec: str) -> set[int]:
    out: set[int] = set()
    for piece in spec.split(","):
        piece = piece.strip()
        if not piece:
            continue
        if "-" in piece:
            a, b = piece.split("-")
            out.update(range(int(a), int(b) + 1))
        else:
            out.add(int(piece))
    return out


@dataclass
class Assignment:
    assigned_at: float  # wall time of "Setting newly assigned partitions"
    obs: set[int]
    resumed_at: float | None  # first "Resuming flow" after it (tables recovered, processing again)
    revoked_at: float | None  # the "Revoking previously assigned partitions" that preceded it


def assignments(log: Path) -> list[Assignment]:
    """faust's assignment history for the obs topic, from a worker log (INFO level; text or JSON lines)."""
    out: list[Assignment] = []
    last_ts: float | None = None
    revoked: float | None = None
    cur: Assignment | None = None
    in_table = False
    for raw in log.read_text(errors="replace").splitlines():
        t, line = _line(raw)
        if t is not None:
            last_ts = t
            in_table = False
        if "Revoking previously assigned partitions" in line:
            revoked = t
        elif "Setting newly assigned partitions" in line and t is not None:
            cur = Assignment(t, {int(p) for p in _OBS_TP.findall(line)}, None, revoked)
            out.append(cur)
            in_table = True
        elif in_table and cur is not None:
            m = _OBS_ROW.match(line)
            if m:
                cur.obs = _parts(m.group(1))
        elif "Resuming flow" in line and cur is not None and cur.resumed_at is None:
            cur.resumed_at = last_ts
    return out


def split_done(logs: list[Path], since: float) -> float | None:
    """Wall time at which every worker runs an assignment made after ``since`` whose obs partitions are
    disjoint, non-empty and together cover all partitions (None until then)."""
    finals = []
    for log in logs:
        a = [x for x in assignments(log) if x.assigned_at >= since - 0.5]
        if not a or a[-1].resumed_at is None or not a[-1].obs:
            return None
        finals.append(a[-1])
    union: set[int] = set()
    for f in finals:
        if union & f.obs:
            return None
        union |= f.obs
    if union != set(range(c.PARTITIONS)):
        return None
    return max(f.resumed_at or 0.0 for f in finals)


async def _wait_split(logs: list[Path], since: float, timeout_s: float = 90.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        done = split_done(logs, since)
        if done is not None:
            return done
        await asyncio.sleep(0.2)
    raise TimeoutError(f"partitions not split between {len(logs)} workers within {timeout_s} s")


async def _trickle(bootstrap: str, stop: asyncio.Event, rate_obs_s: int = 2000) -> int:
    """Steady load during a rebalance: batches to every partition every 0.1 s (aiokafka, producer format)."""
    from aiokafka import AIOKafkaProducer

    from warning.shared.topics import partition_for

    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await prod.start()
    sent = 0
    gen = c.observations(c.station_ids(STATIONS), 10_000_000, seed=99)
    try:
        while not stop.is_set():
            parts: dict[int, list[dict[str, Any]]] = {}
            for _ in range(rate_obs_s // 10):
                o = next(gen)
                parts.setdefault(partition_for(o["station_id"], c.PARTITIONS), []).append(o)
            for p, batch in parts.items():
                await prod.send("obs", orjson.dumps({"accepted_at": time.time(), "observations": batch}),
                                key=batch[0]["station_id"].encode(), partition=p)
                sent += len(batch)
            await asyncio.sleep(0.1)
        await prod.flush()
    finally:
        await prod.stop()
    return sent


async def _group_rate(n_workers: int, n: int) -> dict[str, Any]:
    """n_workers in one group, started together and split; then n observations are produced; rate."""
    out: dict[str, Any] = {"workers": n_workers}
    with c.broker() as b, c.workdir(f"so{n_workers}") as wd:
        from warning.shared.topics import ensure_topics

        ensure_topics(b.bootstrap, c.PARTITIONS)
        since = time.time()
        ws = [c.start_worker(b.bootstrap, "bench-so", wd, stations=STATIONS, name=f"w{i}") for i in range(n_workers)]
        try:
            async with aiohttp.ClientSession() as s:
                await asyncio.gather(*(c.wait_ready(s, w) for w in ws))
                await _wait_split([w.log for w in ws], since)
                await asyncio.sleep(1.0)
                cpu0 = sum(c.cpu_seconds(w.pid) for w in ws)
                _, _, dt = await asyncio.to_thread(
                    c.preload, b.bootstrap, c.observations(c.station_ids(STATIONS), n, seed=5))
                p = await c.follow(s, ws, n, timeout_s=120.0)
                out.update(obs_s=round(p.rate), produce_s=round(dt, 2), timed_out=p.timed_out,
                           cpu_s=round(sum(c.cpu_seconds(w.pid) for w in ws) - cpu0, 2))
        finally:
            for w in ws:
                w.stop()
    return out


async def scaleout(n: int) -> dict[str, Any]:
    """Throughput of 2 workers vs 1 on the same backlog, and rebalance times (join, leave)."""
    out: dict[str, Any] = {"n": n, "load_before": c.load_avg()}
    one = await _group_rate(1, n)
    two = await _group_rate(2, n)
    out.update(one_worker_obs_s=one["obs_s"], two_workers_obs_s=two["obs_s"],
               ratio_2_vs_1=round(two["obs_s"] / one["obs_s"], 3) if one["obs_s"] else None,
               cpu_s_1=one["cpu_s"], cpu_s_2=two["cpu_s"])
    out.update(await rebalance())
    out["load_after"] = c.load_avg()
    return out


async def rebalance() -> dict[str, Any]:
    """Worker A runs under a steady 2,000 obs/s; B joins (rebalance until both run their half), then B is
    stopped with SIGTERM (until A runs all partitions again). Times from faust's log lines."""
    out: dict[str, Any] = {}
    with c.broker() as b, c.workdir("rb") as wd:
        from warning.shared.topics import ensure_topics

        ensure_topics(b.bootstrap, c.PARTITIONS)
        a = c.start_worker(b.bootstrap, "bench-rb", wd, stations=STATIONS, name="a")
        stop = asyncio.Event()
        trickle: asyncio.Task[int] | None = None
        bw: c.Worker | None = None
        try:
            async with aiohttp.ClientSession() as s:
                await c.wait_ready(s, a)
                trickle = asyncio.create_task(_trickle(b.bootstrap, stop))
                await asyncio.sleep(3.0)
                t_start = time.time()
                bw = c.start_worker(b.bootstrap, "bench-rb", wd, stations=STATIONS, name="b")
                out["join_worker_ready_s"] = round(await c.wait_ready(s, bw), 2)
                t_split = await _wait_split([a.log, bw.log], t_start)
                out["join_split_running_s"] = round(t_split - t_start, 2)  # both consuming their half
                # issue 8: from the new worker's start until both answer /readyz and the partitions are split
                out["join_rebalance_s"] = round(max(t_split - t_start, out["join_worker_ready_s"]), 2)
                hist = [x for x in assignments(a.log) if x.assigned_at >= t_start]
                if hist and hist[-1].revoked_at and hist[-1].resumed_at:
                    out["join_pause_on_running_worker_s"] = round(hist[-1].resumed_at - hist[-1].revoked_at, 2)
                await asyncio.sleep(3.0)
                t_leave = time.time()
                bw.terminate()
                t_all = None
                t0 = time.monotonic()
                while time.monotonic() - t0 < 90:
                    hist = [x for x in assignments(a.log) if x.assigned_at >= t_leave - 0.5]
                    if hist and hist[-1].obs == set(range(c.PARTITIONS)) and hist[-1].resumed_at:
                        t_all = hist[-1].resumed_at
                        if hist[-1].revoked_at:
                            out["leave_pause_on_running_worker_s"] = round(t_all - hist[-1].revoked_at, 2)
                        break
                    await asyncio.sleep(0.2)
                out["leave_rebalance_s"] = round(t_all - t_leave, 2) if t_all else None
                await asyncio.sleep(1.0)
                stop.set()
                out["trickle_sent"] = await trickle
                await asyncio.sleep(2.0)
                ma = await c.metrics(s, a)
                out["stale_after_rebalances"] = int(ma.get("ews_observations_stale_total", 0))
        finally:
            stop.set()
            if trickle is not None and not trickle.done():
                trickle.cancel()
            for w in (a, bw):
                if w is not None:
                    w.stop()
    return out


# --------------------------------------------------------------------------------------------- profile
def start_profile(pyspy: str, pid: int, path: Path, duration_s: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([pyspy, "record", "-p", str(pid), "-r", "100", "-f", "raw", "-o", str(path),
                             "-d", str(int(duration_s)), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profile(spy: subprocess.Popen[bytes], path: Path) -> dict[str, Any]:
    """Stop py-spy (SIGINT writes the file) and summarise: top self and inclusive frames (% of samples)."""
    import signal

    if spy.poll() is None:
        spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
    if path.exists() and os.environ.get("BENCH_KEEP_PROFILE"):  # the raw stacks, for a closer look
        shutil.copy(path, os.environ["BENCH_KEEP_PROFILE"])
    return summarise_profile(path)


def summarise_profile(path: Path, top: int = 15) -> dict[str, Any]:
    from collections import Counter

    if not path.exists():
        return {}
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        try:
            k = int(count)
        except ValueError:
            continue
        frames = stack.split(";")
        total += k
        self_c[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    if not total:
        return {}
    ours = ("warning/", "ingest/", "alerts/", "indices/", "faust/", "aiokafka/", "json", "orjson")
    return {
        "samples": total,
        "self_pct": [(f, round(100 * k / total, 1)) for f, k in self_c.most_common(top)],
        "inclusive_pct": [(f, round(100 * k / total, 1)) for f, k in incl.most_common(80)
                          if any(o in f for o in ours)][:top + 10],
    }
