"""Integration fixtures: the real tansu broker, `ews run` as a subprocess, a local webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from warning import launch
from warning.broker import EmbeddedBroker, free_port
from warning.launch import EwsProcess

TOKEN = "test-token-0123456789"


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    """A fresh broker per test (ready in ~20 ms): topics are shared by every app on a broker, so tests that
    start workers against an external broker must not see each other's records."""
    with EmbeddedBroker() as b:
        yield b


def start_ews(tmp: Path, env_extra: dict[str, str] | None = None) -> EwsProcess:
    return launch.start_ews(tmp, token=TOKEN, env_extra=env_extra)


async def wait_ready(ews: EwsProcess, timeout_s: float = 90.0) -> float:
    """Seconds until /readyz answered 200 (a failure bound, not a performance assertion)."""
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as s:
        while time.monotonic() - t0 < timeout_s:
            if ews.proc.poll() is not None:
                raise AssertionError(f"ews exited with {ews.proc.returncode}:\n{ews.output()[-4000:]}")
            try:
                async with s.get(ews.url + "/readyz") as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"ews not ready after {timeout_s} s:\n{ews.output()[-4000:]}")


@dataclass
class Receiver:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 204
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, n: int, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver got {len(self.received)} of {n} webhooks: {self.received}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.5)
        return self.received


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        rec.received.append({"headers": dict(request.headers), "body": body, "path": request.path,
                             "time": time.time()})
        rec.arrived.set()
        return web.Response(status=rec.status)

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    await runner.cleanup()
