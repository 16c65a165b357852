"""Processes and receivers shared by the scenarios: `ews run` as a subprocess and the flaky webhook receivers that
count deliveries by webhook-id (both from tests/support.py, as in the integration tests), a local S3 server (moto)
and a topic reader that stops when the topic is idle (never trusts tansu's end offsets)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests import support
from tests.support import FAST as FAST  # re-exported for chaos.scenarios, like the next five
from tests.support import hot as hot
from tests.support import one_station_per_county as one_station_per_county
from tests.support import until as until
from tests.support import wait_ready as wait_ready
from warning.broker import free_port
from warning.launch import EwsProcess as EwsProcess
from warning.shared.regions import StationRegistry

TOKEN = "chaos-token-0123456789abcdef-0123456789abcdef"  # >= 32 bytes: shorter ones are refused


def county_of(station_id: str) -> str:
    station = StationRegistry.load().get(station_id)
    if station is None:
        raise KeyError(station_id)
    return station.county_code


def start_ews(workdir: Path, env_extra: dict[str, str] | None = None, port: int | None = None) -> EwsProcess:
    """`python -m warning.cli run` with its own data dir and HTTP port; output appended to ews-<port>.log."""
    return support.start_ews(workdir, env_extra, token=TOKEN, port=port)


async def probe(ews: EwsProcess) -> tuple[int | None, int | None]:
    """(/healthz status, /readyz status); None when the connection failed."""
    out: list[int | None] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        for path in ("/healthz", "/readyz"):
            try:
                async with s.get(ews.url + path) as r:
                    out.append(r.status)
            except (aiohttp.ClientError, OSError, TimeoutError):
                out.append(None)
    return out[0], out[1]


async def api(s: aiohttp.ClientSession, ews: EwsProcess, method: str, path: str, body: object = None) -> Any:
    async with s.request(method, ews.url + path, json=body, headers=ews.headers()) as r:
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {await r.text()}")
        return await r.json() if r.status != 204 else None


async def subscribe(ews: EwsProcess, receivers: list[Receiver], regions: list[str] | None = None) -> None:
    async with aiohttp.ClientSession() as s:
        for i, rec in enumerate(receivers):
            sub = await api(s, ews, "POST", "/api/v1/subscriptions",
                            {"name": f"chaos-{i}", "department": "relief", "url": rec.url,
                             "regions": regions or ["620000"], "hazards": ["heat"]})
            rec.sub_id, rec.secret = sub["id"], sub["secret"]


async def post_observations(ews: EwsProcess, obs: list[dict[str, Any]]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        got: dict[str, Any] = await api(s, ews, "POST", "/api/v1/observations", obs)
    if got.get("accepted") != len(obs):
        raise RuntimeError(f"observations not all accepted: {got}")
    return got


class Receiver(support.WebhookReceiver):
    """The scenarios' webhook endpoint (tests/support.py), answering by a script: a status, 'timeout' (2xx after
    the sender's timeout) or 'reset'. ``ok`` keeps the parsed body and the time of each webhook id's first in-time
    2xx answer; ``processed`` counts every copy acted on (a retry of a late-answered copy is a duplicate)."""

    def __init__(self, name: str, mode: Callable[[], Any] | None = None, delay_s: float = 0.0,
                 timeout_sleep_s: float = 1.6) -> None:
        super().__init__(name, mode or (lambda: 204), delay_s=delay_s, timeout_sleep_s=timeout_sleep_s)

    def remember_ok(self, wid: str, rec: dict[str, Any]) -> None:
        self.ok[wid] = {"body": orjson.loads(rec["body"]), "time": time.time()}

    def pairs(self) -> set[tuple[str, str]]:
        """(county code, msg type) of every webhook answered 2xx in time."""
        return {(r["body"]["data"]["region_code"], r["body"]["data"]["msg_type"]) for r in self.ok.values()}


def flaky_mode(rng: random.Random, errors: float = 0.30, timeouts: float = 0.10, resets: float = 0.03
               ) -> Callable[[], Any]:
    ok = 1.0 - errors - timeouts - resets
    choices: list[Any] = [204, 500, 503, "timeout", "reset"]
    weights = [ok, errors * 0.6, errors * 0.4, timeouts, resets]
    return lambda: rng.choices(choices, weights)[0]


@dataclass
class Tally:
    """What the receivers got, against the expected (county, subscription) alerts."""

    expected: int
    delivered: int
    lost: int
    duplicates: int
    extra: int
    bad_signatures: int
    requests: int
    answers: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def tally(receivers: list[Receiver], counties: list[str]) -> Tally:
    expected = {(c, r.name) for c in counties for r in receivers}
    got: set[tuple[str, str]] = set()
    extra = 0
    answers: Counter[str] = Counter()
    for r in receivers:
        answers.update(r.answers)
        for body in (x["body"] for x in r.ok.values()):
            pair = (body["data"]["region_code"], r.name)
            if body["data"]["msg_type"] == "alert" and pair in expected:
                got.add(pair)
            else:
                extra += 1
    missing = sorted(f"{c}->{n}" for c, n in expected - got)
    return Tally(expected=len(expected), delivered=len(got), lost=len(expected - got),
                 duplicates=sum(r.duplicates() for r in receivers), extra=extra,
                 bad_signatures=sum(r.bad_signatures for r in receivers), requests=sum(r.requests for r in receivers),
                 answers=dict(answers), missing=missing[:10])


def spread(receivers: list[Receiver], t0_wall: float) -> str:
    """p50 / p95 / max seconds from t0 to each webhook's first in-time 2xx, and the most requests one id took."""
    times = sorted(r.ok[w]["time"] - t0_wall for r in receivers for w in r.ok)
    if not times:
        return "-"
    def q(p: float) -> float:
        return times[min(len(times) - 1, int(p * len(times)))]
    return f"p50 {q(0.5):.1f} / p95 {q(0.95):.1f} / max {times[-1]:.1f} s"


def slowest(receivers: list[Receiver], t0_wall: float) -> str:
    """The webhook whose first in-time 2xx came last: its answers with their times after t0."""
    last = max(((r.ok[w]["time"], r, w) for r in receivers for w in r.ok), default=None, key=lambda x: x[0])
    if last is None:
        return "-"
    _, r, w = last
    return " ".join(f"{t - t0_wall:.1f}:{a}" for t, a in r.history.get(w, []))


def delivered_all(receivers: list[Receiver], counties: list[str]) -> Callable[[], bool]:
    want = set(counties)

    def check() -> bool:
        for r in receivers:
            have = {c for c, t in r.pairs() if t == "alert"}
            if not want <= have:
                return False
        return True
    return check


_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): ?(.*)$")
_CRASH_RE = re.compile(r"Crashed reason=.*|We experienced a crash.*|\[CRITICAL\].*")


def log_summary(text: str, blocks: int = 3, lines_per_block: int = 14) -> tuple[dict[str, int], str]:
    """(exception lines counted by type and message, excerpts around the first distinct crashes of a worker log).
    Reads plain faust log lines and JSON log lines ({"message", "exception"})."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                lines.append(line)
                continue
            lines.append(f"[{rec.get('time', '')}] [{str(rec.get('level', '')).upper()}] {rec.get('message', '')}")
            lines.extend(str(rec.get("exception") or "").splitlines())
        else:
            lines.append(line)
    exc: Counter[str] = Counter()
    for line in lines:
        m = _EXC_LINE.match(line)
        if m:
            exc[f"{m.group(1)}: {m.group(2)[:100]}"] += 1
    out: list[str] = []
    seen: set[str] = set()
    for i, line in enumerate(lines):
        m = _CRASH_RE.search(line)
        if not m or m.group(0) in seen or len(seen) >= blocks:
            continue
        seen.add(m.group(0))
        n = lines_per_block if m.group(0).startswith("Crashed") else 1
        out.extend(x[:240] for x in lines[i:i + n])
        out.append("...")
    restarts = sum("Restarting dead" in line for line in lines)
    if restarts:
        exc[f"(faust restarted a crashed agent {restarts} times)"] = restarts
    return dict(exc.most_common(10)), "\n".join(out)


# ---- local S3 (moto) ---------------------------------------------------------------------------------------
class MotoServer:
    """`moto_server` on a free loopback port. In memory: it must outlive every broker restart (BROKER.md)."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def command() -> list[str] | None:
        """CHAOS_MOTO_SERVER (a command line), else moto importable here (the dev extra, or CHAOS_EXTRA_PATH),
        else `moto_server` on PATH."""
        if os.environ.get("CHAOS_MOTO_SERVER"):
            return shlex.split(os.environ["CHAOS_MOTO_SERVER"])
        with contextlib.suppress(ImportError):
            import moto.server  # noqa: F401

            extra = os.environ.get("CHAOS_EXTRA_PATH")
            return ["env", f"PYTHONPATH={extra}", sys.executable, "-m", "moto.server"] if extra else \
                [sys.executable, "-m", "moto.server"]
        exe = shutil.which("moto_server")
        return [exe] if exe else None

    def start(self, timeout_s: float = 30.0) -> MotoServer:
        cmd = self.command()
        if cmd is None:
            raise RuntimeError("no S3 server: install moto[server] (dev extra) or set CHAOS_MOTO_SERVER")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(self.port)], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        import socket

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}: {self.log_path}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return self
            time.sleep(0.1)
        raise TimeoutError("moto_server did not listen")

    def create_bucket(self, bucket: str) -> str:
        """With boto3 when it is installed (the dev extra); otherwise a plain PUT, which moto accepts unsigned."""
        try:
            import boto3
        except ImportError:
            import urllib.request

            req = urllib.request.Request(f"{self.endpoint}/{bucket}", method="PUT")
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
            return "plain PUT (boto3 not installed)"
        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                     region_name="us-east-1").create_bucket(Bucket=bucket)
        return "boto3"

    def broker_env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- reading a topic to the end --------------------------------------------------------------------------
async def read_topic(bootstrap: str, topic: str, idle_s: float = 6.0, timeout_s: float = 120.0
                     ) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of a topic, from the beginning until nothing new arrived for idle_s seconds. tansu's
    ListOffsets(latest) is wrong (BROKER.md), so end_offsets() is never used to decide where the end is."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100,
                                max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    out: list[tuple[bytes | None, bytes | None]] = []
    try:
        parts = consumer.partitions_for_topic(topic)
        while not parts:
            await asyncio.sleep(0.5)
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        t0 = last = time.monotonic()
        while time.monotonic() - last < idle_s and time.monotonic() - t0 < timeout_s:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for rec in records:
                    out.append((rec.key, rec.value))
                    last = time.monotonic()
    finally:
        await consumer.stop()
    return out
