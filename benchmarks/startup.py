"""Start-up of the single-machine mode, Apache Kafka next to tansu: ``python -m benchmarks.startup``.

For each broker, ``ews run`` is started on a fresh data dir (first start) and then again on the same data dir
(restart). Printed per start: broker ready (from the service's own line), worker ready (/readyz answers 200),
and first webhook (the time from launch to the first webhook of a red heat observation posted at ready;
on the first start a subscription is created first; on the restart the kept one is used — Kafka keeps it, tansu
keeps nothing, and then one is created again: ``subscription_kept``). Seconds from the process launch; the
ratio Kafka / tansu is the figure to compare (the machine's own speed varies between runs)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import FAST, WebhookReceiver, hot, one_station_per_county, start_ews
from warning.launch import EwsProcess

BROKER_READY = re.compile(r"(?:Apache Kafka \S+|tansu) on \S+, pid \d+, ready in ([\d.]+) s")


async def _ready(ews: EwsProcess, t0: float, timeout_s: float = 180) -> float:
    async with aiohttp.ClientSession() as s:
        while time.monotonic() - t0 < timeout_s:
            if ews.proc.poll() is not None:
                raise RuntimeError(f"ews exited {ews.proc.returncode}: see {ews.log}")
            try:
                async with s.get(ews.url + "/readyz") as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"not ready in {timeout_s} s: see {ews.log}")


async def one_start(work: Path, broker: str, rec: WebhookReceiver, station: str, subscribe: bool) -> dict[str, Any]:
    t0 = time.monotonic()
    ews: EwsProcess = start_ews(work, {**FAST, "EWS_BROKER": broker, "EWS_APP_ID": f"startup-{broker}"})
    try:
        ready_s = await _ready(ews, t0)
        before = len(rec.acked)
        async with aiohttp.ClientSession(headers=ews.headers()) as s:
            async with s.get(ews.url + "/api/v1/subscriptions") as r:
                kept = bool(await r.json())
            if subscribe or not kept:  # tansu keeps nothing across a restart
                async with s.post(ews.url + "/api/v1/subscriptions", json={
                        "name": "startup", "department": "health", "url": rec.url, "regions": ["620000"]}) as r:
                    assert r.status == 201, await r.text()
            # a fresh observation time per start: the restart's report is new, not a duplicate of the first
            async with s.post(ews.url + "/api/v1/observations",
                              json=hot([station], datetime.now(UTC) - timedelta(minutes=5))) as r:
                assert r.status == 202, await r.text()
        while len(rec.acked) == before:
            if time.monotonic() - t0 > 240:
                raise TimeoutError(f"no webhook: see {ews.log}")
            await asyncio.sleep(0.02)
        first_s = time.monotonic() - t0
    finally:
        stopped = ews.stop()
    found = BROKER_READY.search(Path(ews.log).read_text(errors="replace"))
    return {"broker_ready_s": float(found.group(1)) if found else None, "worker_ready_s": round(ready_s, 2),
            "first_webhook_s": round(first_s, 2), "subscription_kept": kept, "exit": stopped}


async def main() -> dict[str, Any]:
    out: dict[str, Any] = {}
    stations = one_station_per_county(2)
    async with WebhookReceiver("startup") as rec:
        for broker in ("tansu", "kafka"):
            with tempfile.TemporaryDirectory(prefix=f"ews-startup-{broker}-") as tmp:
                work = Path(tmp)
                first = await one_start(work, broker, rec, stations[0], subscribe=True)
                again = await one_start(work, broker, rec, stations[1], subscribe=False)
                out[broker] = {"first_start": first, "restart": again}
    for start in ("first_start", "restart"):
        for key in ("worker_ready_s", "first_webhook_s"):
            t, k = out["tansu"][start][key], out["kafka"][start][key]
            out.setdefault("kafka_over_tansu", {})[f"{start}.{key}"] = round(k / t, 2) if t else None
    return out


if __name__ == "__main__":
    result = asyncio.run(main())
    print(json.dumps(result, indent=1))
    sys.exit(0)
