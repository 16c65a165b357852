"""What the tests, the benchmarks (benchmarks/common.py) and the fault runs (chaos/harness.py) share.

* Where the reference data lives: ``tests/data`` (origins, licences and trimming in tests/data/README.md).
* The service: ``start_ews`` (`ews run` as a child process on a free loopback port, via warning.launch),
  ``wait_ready`` (until /readyz answers 200), ``running_ews`` (both, and a clean stop), ``running_broker``
  (an embedded tansu on a free port, ready when entered).
* ``WebhookReceiver``: an aiohttp server on a free loopback port that collects the signed webhook POSTs and
  answers them by a script (a status, a late answer or a connection reset).

The pytest fixtures built on these are in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
from aiohttp import web

from alerts.signing import SignatureError, verify
from warning import launch
from warning.broker import EmbeddedBroker, free_port
from warning.launch import EwsProcess
from warning.shared.regions import StationRegistry

# --------------------------------------------------------------------------------------------- reference data
DATA = Path(__file__).resolve().parent / "data"
STATION_OBS = DATA / "station_obs"
ISD = STATION_OBS / "isd_lite" / "545110-99999-2017"  # Beijing 2017, canonical fixed-width ISD-Lite
ISD_COLLAPSED = STATION_OBS / "isd_lite" / "545110-99999-2017.as_committed.txt.gz"  # same, whitespace-collapsed
DLY = STATION_OBS / "ghcnd_dly" / "USW00023062.dly.gz"  # Denver Stapleton GHCN-Daily .dly, 1940-2019
GHCN_CSV = STATION_OBS / "ghcnd_csv" / "CHM00054511.csv.gz"  # Beijing GHCN-Daily access CSV, 1945-2025
NETCDF = DATA / "netcdf"
SPI_CASES = DATA / "spi_cases"
HEAT_INDEX = DATA / "heat_index"
CAP = DATA / "cap"
CAP_XSD = CAP / "CAP-v1.2.xsd"

# --------------------------------------------------------------------------------------------- the service
TOKEN = "test-token-0123456789abcdefghijklmnopqrstuv"  # >= 32 bytes: ews run refuses shorter
# Short retry tiers and webhook timeout, so that a delivery scenario finishes in seconds.
FAST = {"EWS_RETRY_TIERS": "0.3,0.6,1.2,2.4", "EWS_WEBHOOK_TIMEOUT": "1", "EWS_UNHEALTHY_AFTER": "3600"}

P = TypeVar("P", bound=EwsProcess)


class NotReadyError(RuntimeError):
    """The service exited, or did not answer /readyz with 200 in time."""


def start_ews(workdir: Path, env: dict[str, str] | None = None, *, token: str = TOKEN, port: int | None = None,
              module: str = "warning.cli", data_dir: Path | None = None, log_name: str = "ews",
              cls: type[P] = EwsProcess, run_args: tuple[str, ...] = ()) -> P:  # type: ignore[assignment]
    """``python -m <module> run [run_args]`` with its own data dir under ``workdir``, a free (or the given) loopback
    HTTP port, ``token`` and ``env`` on top of the launcher's environment; output appended to <log_name>-<port>.log."""
    return launch.start_ews(workdir, token=token, env_extra=env, port=port, module=module, data_dir=data_dir,
                            log_name=log_name, cls=cls, run_args=run_args)


async def wait_ready(proc: EwsProcess, timeout_s: float = 90.0, *, session: aiohttp.ClientSession | None = None,
                     poll_s: float = 0.2) -> float:
    """Seconds from this call until GET /readyz answered 200 (a failure bound, not a performance assertion).
    Raises NotReadyError when the process exits first or ``timeout_s`` passes; one probe waits at most 2 s."""
    t0 = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        if session is None:
            session = await stack.enter_async_context(aiohttp.ClientSession())
        while time.monotonic() - t0 < timeout_s:
            if not proc.alive():
                raise NotReadyError(f"{proc.log.stem} exited with {proc.proc.returncode}:\n{proc.output()[-4000:]}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(proc.url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            await asyncio.sleep(poll_s)
    raise NotReadyError(f"{proc.log.stem} not ready after {timeout_s} s:\n{proc.output()[-4000:]}")


@contextlib.asynccontextmanager
async def running_ews(workdir: Path, env: dict[str, str] | None = None, **kw: Any) -> AsyncIterator[EwsProcess]:
    """A ready service (``start_ews`` + ``wait_ready``); on exit it must stop with code 0 after SIGTERM."""
    proc = start_ews(workdir, env, **kw)
    try:
        await wait_ready(proc)
        yield proc
    finally:
        code = proc.stop()
        if code != 0:
            raise AssertionError(f"{proc.log.stem} stopped with {code}:\n{proc.output()[-3000:]}")


@contextlib.contextmanager
def running_broker(**kw: Any) -> Iterator[EmbeddedBroker]:
    """An embedded tansu broker (memory storage unless ``storage`` says otherwise) on a free loopback port,
    answering metadata requests when entered, stopped on exit. Topics never leak between two of them."""
    with EmbeddedBroker(**kw) as b:
        yield b


def one_station_per_county(n: int, skip: int = 0) -> list[str]:
    """The first station of each county of the packaged registry: counties ``skip`` to ``skip + n``."""
    seen: dict[str, str] = {}
    for s in StationRegistry.load():
        seen.setdefault(s.county_code, s.station_id)
    return list(seen.values())[skip:skip + n]


def hot(stations: list[str], t: datetime) -> list[dict[str, Any]]:
    """One red heat report per station (tmax 40.5 °C) at ``t``."""
    return [{"station_id": sid, "time": t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "tmax_c": 40.5}
            for sid in stations]


async def until(pred: Callable[[], bool], timeout_s: float, step_s: float = 0.1) -> bool:
    """Whether ``pred()`` became true within ``timeout_s`` (checked every ``step_s``)."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step_s)
    return True


# --------------------------------------------------------------------------------------------- webhooks
Answer = int | str  # an HTTP status, "timeout" (2xx after timeout_sleep_s) or "reset" (connection closed)


class WebhookReceiver:
    """A webhook endpoint on a free loopback port (any POST path; ``url`` ends in /hook) that records every
    request and answers by a script: ``mode`` is an HTTP status, "timeout" (204 after ``timeout_sleep_s``, i.e.
    after the sender gave up), "reset" (closes the connection), or a callable returning one per request.
    With ``secret`` set, the first copy of each webhook id answered 2xx in time has its signature checked.
    Use as ``async with WebhookReceiver() as rec`` or ``await rec.start()`` ... ``await rec.stop()``."""

    def __init__(self, name: str = "receiver", mode: Answer | Callable[[], Answer] = 204, *, delay_s: float = 0.0,
                 timeout_sleep_s: float = 1.6, secret: str = "", retry_after: str = "") -> None:
        self.name = name
        self.retry_after = retry_after  # sent as Retry-After with every 429 and 503 answer when set
        self.mode = mode
        self.delay_s = delay_s  # before answering any request
        self.timeout_sleep_s = timeout_sleep_s
        self.secret = secret
        self.sub_id = ""
        self.url = ""
        self.received: list[dict[str, Any]] = []  # every request: headers, body (bytes), path, time (epoch s)
        self.ok: dict[str, dict[str, Any]] = {}  # webhook-id -> first request answered 2xx in time
        self.acked: dict[str, dict[str, Any]] = {}  # webhook-id -> first request answered 2xx, in time or late
        self.processed: Counter[str] = Counter()  # webhook-id -> copies answered 2xx (acted on), in time or late
        self.by_id: Counter[str] = Counter()  # webhook-id -> requests
        self.answers: Counter[str] = Counter()  # answer -> requests
        self.history: dict[str, list[tuple[float, str]]] = {}  # webhook-id -> (time, answer) per request
        self.bad_signatures = 0
        self.first_ok_at: float | None = None  # monotonic
        self.last_ok_at: float | None = None
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def requests(self) -> int:
        return len(self.received)

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        wid = request.headers.get("webhook-id", "?")
        rec = {"headers": dict(request.headers), "body": await request.read(), "path": request.path,
               "time": time.time()}
        self.received.append(rec)
        self.by_id[wid] += 1
        self.arrived.set()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        answer = self.mode() if callable(self.mode) else self.mode
        self.answers[str(answer)] += 1
        self.history.setdefault(wid, []).append((time.time(), str(answer)))
        if answer == "reset":
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError
        if answer == "timeout":
            await asyncio.sleep(self.timeout_sleep_s)  # longer than the sender's timeout: it gave up on this copy
            self._acted(wid, rec, in_time=False)  # a slow receiver still acted on it: a retry is a duplicate
            return web.Response(status=204)
        status = int(answer)
        if 200 <= status < 300:
            self._acted(wid, rec, in_time=True)
        if status in (429, 503) and self.retry_after:
            return web.Response(status=status, headers={"Retry-After": self.retry_after})
        return web.Response(status=status)

    def _acted(self, wid: str, rec: dict[str, Any], in_time: bool) -> None:
        self.processed[wid] += 1
        self.acked.setdefault(wid, rec)
        if not in_time or wid in self.ok:
            return
        if self.secret:
            try:
                verify(self.secret, rec["headers"], rec["body"])
            except SignatureError:
                self.bad_signatures += 1
        self.remember_ok(wid, rec)
        self.first_ok_at = self.first_ok_at or time.monotonic()
        self.last_ok_at = time.monotonic()

    def remember_ok(self, wid: str, rec: dict[str, Any]) -> None:
        """Keep the first in-time 2xx request of a webhook id (a subclass may keep another view of it)."""
        self.ok[wid] = rec

    def duplicates(self) -> int:
        """Copies the receiver acted on beyond the first, over all webhook ids."""
        return sum(n - 1 for n in self.processed.values() if n > 1)

    async def wait_for(self, n: int, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Every request received so far, once there are at least ``n``; AssertionError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} got {len(self.received)} of {n} webhooks: {self.received}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.5)
        return self.received


def storm_grid(path: Path, centre_lat: float, centre_lon: float, issued: Any, radius: float = 0.4,
               mm_per_h: float = 35.0) -> Path:
    """A 0.02° hourly precipitation grid (ERA5 style, m per step) over western Gansu (38-40 N, 92.2-96.8 E) for 6
    lead hours from ``issued`` (naive UTC datetime): ``mm_per_h`` inside the disc in the first two hours (70 mm in
    3 h: rainstorm orange within its 3 h), dry elsewhere; zlib-compressed NetCDF."""
    import numpy as np
    import pandas as pd
    import xarray as xr

    lat, lon = np.arange(38.0, 40.0, 0.02), np.arange(92.2, 96.8, 0.02)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    storm = (la - centre_lat) ** 2 + (lo - centre_lon) ** 2 < radius ** 2
    steps = pd.to_timedelta(np.arange(1, 7), unit="h")
    tp = np.zeros((1, steps.size, lat.size, lon.size), dtype=np.float32)
    tp[0, 0][storm] = tp[0, 1][storm] = mm_per_h / 1000.0
    xr.Dataset({"tp": (("time", "step", "latitude", "longitude"), tp, {"units": "m"})},
               coords={"time": [np.datetime64(issued)], "step": steps, "latitude": lat, "longitude": lon}
               ).to_netcdf(path, encoding={"tp": {"zlib": True}})
    return path


def ews_ingest_grid(path: Path, bootstrap: str, data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`ews ingest FILE --format grid --grid-to counties` in a child process (the command's own cell grader)."""
    return subprocess.run(
        [sys.executable, "-m", "warning.cli", "ingest", str(path), "--format", "grid", "--grid-to", "counties",
         "--bootstrap", bootstrap, *extra],
        env={**os.environ, "EWS_DATA_DIR": str(data_dir)}, capture_output=True, text=True, timeout=240)
