"""Shared pieces of the benchmarks: synthetic observations, pre-loading ``obs`` with the real producer,
`ews run` workers as subprocesses (launched, awaited and their broker started by tests/support.py, as in the
tests), their /metrics, and /proc readings (RSS, CPU time, load)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from tests import support
from warning import launch
from warning.shared.times import iso_utc, now_iso
from warning.shared.topics import partition_for

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdef-0123456789abcdef"  # >= 32 bytes: shorter ones are refused
PARTITIONS = 4
CLK_TCK = os.sysconf("SC_CLK_TCK")
TRIGGER_MM = 21.0  # rain_1h >= 20 mm: flash-flood blue (rules.toml); 2 in 24 h stay below rain_24h 50 mm


# --------------------------------------------------------------------------------------------- machine
def load_avg() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gb": round(mem_gb, 1),
            "python": sys.version.split()[0], "date": now_iso()}


def proc_status_kb(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` field in kB (VmHWM = peak RSS, VmRSS = current); 0 if the process is gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    return 0.0


# --------------------------------------------------------------------------------------------- data
def station_ids(n: int) -> list[str]:
    """The synthetic registry's ids (benchmarks.worker), or the packaged registry's when n <= 0."""
    if n > 0:
        return [f"B{i:05d}" for i in range(n)]
    from warning.shared.regions import StationRegistry

    return [s.station_id for s in StationRegistry.load()]


def iso(t: datetime) -> str:
    return iso_utc(t)


def base_time(hours: int) -> datetime:
    """A whole hour far enough in the past that ``hours`` hourly reports never reach the future."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=hours + 48)


def observations(stations: list[str], n: int, *, seed: int = 8, trigger_frac: float = 0.01,
                 start: datetime | None = None) -> Iterator[dict[str, Any]]:
    """``n`` hourly reports, round-robin over ``stations`` in time order (Observation.to_dict form).

    Realistic summer values for Gansu: a diurnal temperature and humidity cycle with noise (never identical
    runs, so QC persistence checks stay quiet), light wind, 8 % light rain and ``trigger_frac`` of reports
    with 21-24 mm in the hour: flash-flood blue (rain_1h >= 20 mm), i.e. about 1 % of reports cross a
    warning threshold. No element crosses another hazard's threshold.
    """
    s = len(stations)
    hours = math.ceil(n / s)
    t0 = start or base_time(hours)
    rng = np.random.default_rng(seed)
    offs = rng.normal(0.0, 2.0, s)
    done = 0
    for h in range(hours):
        k = min(s, n - done)
        t = t0 + timedelta(hours=h)
        ts = iso(t)
        phase = math.sin(2 * math.pi * ((t.hour + 8) % 24 - 9) / 24)  # Beijing-time diurnal cycle
        temp = np.round(19.0 + offs[:k] + 6.0 * phase + rng.normal(0, 0.6, k), 1)
        rh = np.round(np.clip(55.0 - 15.0 * phase + rng.normal(0, 4.0, k), 10, 98), 1)
        wind = np.round(np.clip(rng.gamma(2.0, 1.3, k), 0.0, 8.5), 1)
        u = rng.random(k)
        rain = np.where(u < trigger_frac, np.round(TRIGGER_MM + 3 * rng.random(k), 1),
                        np.where(u < trigger_frac + 0.08, np.round(0.1 + 1.9 * rng.random(k), 1), 0.0))
        tl, rl, wl, pl = temp.tolist(), rh.tolist(), wind.tolist(), rain.tolist()
        for i in range(k):
            yield {"station_id": stations[i], "time": ts, "air_temp_c": tl[i], "rh_pct": rl[i], "wind_ms": wl[i],
                   "precip_mm": pl[i], "precip_period_h": 1.0, "source": "bench"}
        done += k


def preload(bootstrap: str, obs: Iterator[dict[str, Any]], batch: int = 1000) -> tuple[int, int, float]:
    """Publish with the real producer (ingest.producer.KafkaSink: one message per partition buffer of
    ``batch`` observations, kafka-python, the `ews ingest` settings). Returns (observations, messages, s)."""
    from kafka import KafkaProducer

    from ingest.producer import KafkaSink, producer_config
    from warning.shared.topics import ensure_topics

    ensure_topics(bootstrap, PARTITIONS)
    producer = KafkaProducer(**producer_config(bootstrap))
    sink = KafkaSink(producer, PARTITIONS, time.monotonic, partition_for, max_batch=batch)
    t0 = time.perf_counter()
    for o in obs:
        sink.add(o)
    published, failed, error = sink.close()
    if failed or error:
        raise RuntimeError(f"preload failed: {failed} not delivered ({error})")
    return published, sink.messages, time.perf_counter() - t0


async def bare_consume(bootstrap: str, expected: int, timeout_s: float = 120.0) -> tuple[float, float]:
    """The physical baseline: a bare aiokafka consumer that only reads and orjson-decodes the obs batches.
    Returns (observations/s, client CPU µs per observation)."""
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                         max_partition_fetch_bytes=8 << 20, fetch_max_bytes=32 << 20)
    await c.start()
    try:
        tps = [TopicPartition("obs", p) for p in range(PARTITIONS)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        n = 0
        t0 = time.perf_counter()
        c0 = time.process_time()
        while n < expected:
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"bare consumer read {n} of {expected}")
            batches = await c.getmany(timeout_ms=500, max_records=50000)
            for records in batches.values():
                for r in records:
                    msg = orjson.loads(r.value)  # either batch form (ingest.columns.decode_batch)
                    n += len(msg["columns"]["station_id"] if "columns" in msg else msg["observations"])
        dt = time.perf_counter() - t0
        return n / dt, (time.process_time() - c0) / n * 1e6
    finally:
        await c.stop()


# --------------------------------------------------------------------------------------------- workers
@dataclass
class Worker(launch.EwsProcess):
    ready_at: float | None = None
    rss_samples: list[tuple[float, int]] = field(default_factory=list)


def start_worker(bootstrap: str, app_id: str, workdir: Path, *, stations: int, name: str = "w",
                 extra_env: dict[str, str] | None = None) -> Worker:
    env = {"KAFKA_BOOTSTRAP": bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": app_id,
           "BENCH_STATIONS": str(stations), **(extra_env or {})}
    return support.start_ews(workdir, env, token=TOKEN, module="benchmarks.worker", data_dir=workdir / f"data-{name}",
                             log_name=name, cls=Worker)


async def wait_ready(s: aiohttp.ClientSession, w: Worker, timeout_s: float = 120.0) -> float:
    """Seconds from process start until /readyz answers 200 (also kept in ``w.ready_at``)."""
    await support.wait_ready(w, timeout_s, session=s, poll_s=0.1)
    w.ready_at = time.monotonic()
    return w.ready_at - w.started


def parse_metrics(text: str, labelled: bool = False) -> dict[str, float]:
    """Prometheus text -> {name: value summed over label sets}; with ``labelled`` also {name{labels}: value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            out[name] = out.get(name, 0.0) + float(value)
            if labelled and name_labels != name:
                out[name_labels] = float(value)
    return out


async def metrics(s: aiohttp.ClientSession, w: Worker, labelled: bool = False) -> dict[str, float]:
    try:
        async with s.get(w.url + "/metrics", timeout=aiohttp.ClientTimeout(total=5)) as r:
            return parse_metrics(await r.text(), labelled)
    except (TimeoutError, aiohttp.ClientError):
        return {}


def consumed(m: dict[str, float]) -> float:
    """Observations the worker is done with: applied to state, or skipped as not newer (replays)."""
    return m.get("ews_observations_processed_total", 0.0) + m.get("ews_observations_stale_total", 0.0)


@dataclass
class Progress:
    """Consumption of a backlog by one or more workers, from their /metrics."""

    n: int
    t_first: float = 0.0
    c_first: float = 0.0
    t_done: float = 0.0
    t_obs_done: float = 0.0  # when the obs agents had the backlog (the grade agents may still be folding signals)
    done: float = 0.0
    rejected: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (t, consumed)
    timed_out: bool = False

    @property
    def rate(self) -> float:
        dt = self.t_done - self.t_first
        return (self.done - self.c_first) / dt if dt > 0 else 0.0


def signals_pending(m: dict[str, float]) -> float:
    """Signals sent to the signals topic and not yet graded (``ews_signals_total`` by stage)."""
    return m.get('ews_signals_total{stage="sent"}', 0.0) - m.get('ews_signals_total{stage="graded"}', 0.0)


async def follow(s: aiohttp.ClientSession, workers: list[Worker], n: int, timeout_s: float,
                 poll_s: float = 0.25, rss_every_s: float = 0.0) -> Progress:
    """Poll the workers' counters until their sum reaches ``n`` (observations processed + stale + rejected) and
    every signal those produced has been graded (the whole path, region lifecycle included), or ``timeout_s``
    passed (``timed_out``; the rate is then the rate so far).
    Rate = (consumed at the end - consumed at the first poll that saw any) / (t_done - t_first)."""
    p = Progress(n)
    t0 = time.monotonic()
    last_rss = 0.0
    while True:
        now = time.monotonic()
        if now - t0 > timeout_s:  # bounded run: report the rate so far
            p.t_done, p.timed_out = now, True
            return p
        ms = await asyncio.gather(*(metrics(s, w, labelled=True) for w in workers))
        now = time.monotonic()
        total = sum(consumed(m) for m in ms)
        rej = sum(m.get("ews_observations_rejected_total", 0.0) for m in ms)
        if rss_every_s and now - last_rss >= rss_every_s:
            last_rss = now
            for w in workers:
                w.rss_samples.append((now, proc_status_kb(w.pid, "VmRSS")))
        if total > 0 and not p.t_first:
            p.t_first, p.c_first = now, total
        p.samples.append((now, total))
        p.done, p.rejected = total, rej
        if total + rej >= n:
            p.t_obs_done = p.t_obs_done or now
            if sum(signals_pending(m) for m in ms) <= 0:
                p.t_done = now
                return p
        for w in workers:
            if w.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {w.proc.returncode}:\n{w.output()[-3000:]}")
        await asyncio.sleep(poll_s)


broker = support.running_broker  # a fresh embedded tansu (memory storage) per measurement: no leaks between runs


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    keep = os.environ.get("BENCH_KEEP")
    d = Path(tempfile.mkdtemp(prefix=f"ews-bench-{prefix}-"))
    try:
        yield d
    except BaseException:
        print(f"[bench] worker logs kept in {d}", file=sys.stderr, flush=True)
        raise
    if not keep:
        import shutil

        shutil.rmtree(d, ignore_errors=True)
