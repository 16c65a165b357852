"""What the browser tests share: the Chromium they drive (Debian's, through playwright), their marks, and the
steps most console tests start with: subscribe a receiver, open the console and wait until it is live, report
Dunhuang (52418) hot enough for a red heat warning."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import TOKEN
from warning.launch import EwsProcess
from warning.shared.times import iso_utc as iso

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
BROWSER_MARKS = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian Chromium is not installed at /usr/bin/chromium "
                                                     "(`apt-get install -y chromium`; `make test` does it)"),
]
AUTH = {"Authorization": f"Bearer {TOKEN}"}

__all__ = ["BROWSER_MARKS", "CHROMIUM", "CHROMIUM_ARGS", "iso", "open_console", "playwright", "post",
           "report_dunhuang", "shot", "subscribe"]


def playwright() -> Any:
    """playwright's async API; the test is skipped where it is not installed (the dev extra)."""
    return pytest.importorskip("playwright.async_api", reason="playwright (dev extra) is not installed")


async def post(s: aiohttp.ClientSession, ews: EwsProcess, path: str, body: Any) -> Any:
    """An operator's POST (the token), which must succeed; its JSON answer."""
    async with s.post(ews.url + path, headers=AUTH, json=body) as r:
        assert r.status < 300, await r.text()
        return await r.json()


async def subscribe(s: aiohttp.ClientSession, ews: EwsProcess, name: str, url: str, **fields: Any) -> dict[str, Any]:
    """A subscription to Jiuquan (620900) heat warnings unless ``fields`` say otherwise."""
    body = {"name": name, "department": "health", "url": url, "regions": ["620900"], "hazards": ["heat"], **fields}
    sub: dict[str, Any] = await post(s, ews, "/api/v1/subscriptions", body)
    return sub


async def open_console(page: Any, ews: EwsProcess) -> None:
    """The console, once it shows live data (its SSE stream is connected)."""
    await page.goto(ews.url + "/")
    await page.wait_for_selector("body[data-live='1']", state="attached", timeout=30_000)


async def report_dunhuang(s: aiohttp.ClientSession, ews: EwsProcess, **values: float) -> Any:
    """An observation of Dunhuang (52418) an hour ago, 40.6 °C (heat red in 620982) unless ``values`` say else;
    the API's answer."""
    t = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    return await post(s, ews, "/api/v1/observations",
                      {"station_id": "52418", "time": iso(t), **(values or {"tmax_c": 40.6})})


async def shot(page: Any, tmp_path: Path, name: str, full: bool = False) -> Path:
    """A screenshot in the test's tmp dir (and in EWS_SCREENSHOTS=DIR when set)."""
    path = tmp_path / name
    await page.screenshot(path=str(path), full_page=full)
    if os.environ.get("EWS_SCREENSHOTS"):
        await page.screenshot(path=str(Path(os.environ["EWS_SCREENSHOTS"]) / name), full_page=full)
    return path
