"""Escalation in the console (issue 20): a red warning its receiver does not acknowledge in time is sent to the
region's fallback subscription (a duty office), and the warning detail shows it: the duty office appears among
those who received it, the department stays "not acknowledged", and the duty office's acknowledgement of the
escalation shows there live. rules.toml's deadline is 3 s here and the grade agent ticks every 2 s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.browser.support import BROWSER_MARKS, open_console, report_dunhuang, subscribe
from tests.integration.test_acknowledgement import bodies, rules_with_short_deadline
from tests.support import WebhookReceiver
from warning.launch import EwsProcess

pytestmark = BROWSER_MARKS


@pytest.fixture
def ews_env(tmp_path: Path) -> dict[str, str]:
    return {"EWS_RULES": str(rules_with_short_deadline(tmp_path)), "EWS_TICK_INTERVAL": "2"}


async def test_the_detail_shows_the_escalation_to_the_duty_office(ews: EwsProcess, receiver: WebhookReceiver,
                                                                  page: Any, tmp_path: Path) -> None:
    subs: dict[str, Any] = {}
    async with aiohttp.ClientSession() as s:
        for name, path, fallback in (("Jiuquan water bureau", "jiuquan", False),
                                     ("Jiuquan duty office", "jiuquan-duty", True)):
            subs[path] = await subscribe(s, ews, name, receiver.url.replace("/hook", f"/hook/{path}"),
                                         department="water" if not fallback else "relief", fallback=fallback)
        await open_console(page, ews)
        await report_dunhuang(s, ews)
        item = page.locator('#warning-list li[data-region="620982"][data-level="red"]')
        await item.wait_for(timeout=60_000)
        await item.click()
        water = f'#detail-received tr[data-subscription="{subs["jiuquan"]["id"]}"]'
        duty = f'#detail-received tr[data-subscription="{subs["jiuquan-duty"]["id"]}"]'
        await page.wait_for_selector(f"{water} td.not-acked", timeout=30_000)
        # no acknowledgement: after the deadline the duty office receives it, and the open detail shows it
        await page.wait_for_selector(f"{duty} td.not-acked", timeout=60_000)
        [escalated] = bodies(receiver, "/hook/jiuquan-duty")
        assert escalated["escalation"] is True
        assert "Jiuquan duty office" in await page.inner_text(duty)
        async with s.post(escalated["ack_url"]) as r:  # the duty office takes it in hand
            assert r.status == 204
        await page.wait_for_selector(f"{duty} td.acked", timeout=15_000)
        await page.wait_for_selector(f"{water} td.not-acked", timeout=5_000)  # the department still has not
        assert any(orjson.loads(r["body"]).get("reminder") for r in receiver.received
                   if r["path"] == "/hook/jiuquan")
        duty_delivery = page.locator('#detail-deliveries td[data-why="escalation"]')
        await duty_delivery.first.wait_for(timeout=15_000)
        assert "escalation" in await duty_delivery.first.inner_text()
        # the receipts say why each was sent beyond routing (public: no token needed)
        async with s.get(f"{ews.url}/api/v1/warnings/{escalated['data']['warning_id']}") as r:
            why = {(d["subscription_id"], d["why"]) for d in (await r.json())["deliveries"]}
        assert {(subs["jiuquan"]["id"], None), (subs["jiuquan"]["id"], "reminder"),
                (subs["jiuquan-duty"]["id"], "escalation")} <= why, why

    shot = tmp_path / "escalated.png"
    await page.locator("#detail-panel").screenshot(path=str(shot))
    assert shot.stat().st_size > 5_000
    assert page.errors == [], page.errors
