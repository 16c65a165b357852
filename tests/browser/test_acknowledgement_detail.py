"""The warning detail answers "who knows?" (issue 20): after a red warning reaches a department, the console's
detail lists it as received and not acknowledged; when the department POSTs the webhook's ack_url, the row shows
when it acknowledged, live (the SSE "ack" event), without a reload. A screenshot is written to the tmp dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.browser.support import BROWSER_MARKS, open_console, report_dunhuang, subscribe
from tests.support import WebhookReceiver
from warning.launch import EwsProcess

pytestmark = BROWSER_MARKS


async def test_detail_shows_who_received_and_who_acknowledged(ews: EwsProcess, receiver: WebhookReceiver,
                                                              page: Any, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as s:
        sub = await subscribe(s, ews, "Jiuquan health commission", receiver.url)
        await open_console(page, ews)
        await report_dunhuang(s, ews)
        item = page.locator('#warning-list li[data-region="620982"][data-level="red"]')
        await item.wait_for(timeout=60_000)
        got = await receiver.wait_for(1)
        envelope = orjson.loads(got[0]["body"])
        await item.click()
        row = f'#detail-received tr[data-subscription="{sub["id"]}"]'
        await page.wait_for_selector(f"{row} td.not-acked", timeout=30_000)
        text = await page.inner_text(row)
        assert "Jiuquan health commission" in text and "health" in text and "not acknowledged" in text
        await page.evaluate("window.__notReloaded = true")

        async with s.post(envelope["ack_url"]) as r:  # the department acknowledges
            assert r.status == 204
        await page.wait_for_selector(f"{row} td.acked", timeout=15_000)
        assert "not acknowledged" not in await page.inner_text(row)
        assert await page.evaluate("window.__notReloaded === true")
        async with s.get(f"{ews.url}/api/v1/warnings/{envelope['data']['warning_id']}") as r:
            acked_at = (await r.json())["acknowledgements"][0]["at"]
        assert await page.get_attribute(f"{row} td.acked", "title") == acked_at

    shot = tmp_path / "acknowledged.png"
    await page.locator("#detail-panel").screenshot(path=str(shot))
    assert shot.stat().st_size > 5_000
    assert page.errors == [], page.errors
