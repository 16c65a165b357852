"""The bureau's desk in a real browser (Debian Chromium, playwright) against `ews run` with heat orange and red
under review (issue 20): a red heat draft shows in the review queue; edited and approved on the page it is
delivered with the edit and the operator in its audit log; a second draft rejected on the page sends nothing;
a silence added on the page holds a yellow warning while a red one passes through. Screenshots go to the test's
tmp dir (and, with EWS_SCREENSHOTS=DIR, there too)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.browser.support import BROWSER_MARKS, iso, open_console, post, shot, subscribe
from tests.integration.test_desk import review_rules
from tests.support import TOKEN, WebhookReceiver
from warning.launch import EwsProcess

pytestmark = BROWSER_MARKS


@pytest.fixture
def ews_env(tmp_path: Path) -> dict[str, str]:
    return {"EWS_RULES": str(review_rules(tmp_path / "rules.toml"))}


async def test_review_queue_edit_approve_deliver_and_reject_sends_nothing(
        ews: EwsProcess, receiver: WebhookReceiver, page: Any, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    async with aiohttp.ClientSession() as s:
        await subscribe(s, ews, "Jiuquan health", receiver.url)
        await open_console(page, ews)
        await page.fill("#token", TOKEN)
        await page.click("#token-form button[type=submit]")
        await post(s, ews, "/api/v1/observations",
                   {"station_id": "52418", "time": iso(now - timedelta(minutes=30)), "tmax_c": 40.6})
        item = page.locator("#review-list li").first
        await item.wait_for(timeout=30_000)
        assert "敦煌" in await item.inner_text() and await item.get_attribute("data-escalated") == "0"
        assert receiver.received == []
        await shot(page, tmp_path, "desk-review-queue.png", full=True)

        # edit and approve on the page
        await item.locator("[data-action=edit]").click()
        await item.locator("input[name=headline_en]").fill("Dunhuang: red heat, stay indoors 12:00-18:00")
        await shot(page, tmp_path, "desk-edit.png", full=True)
        await item.locator("form.edit-form button[type=submit]").click()
        [got] = await receiver.wait_for(1)
        data = orjson.loads(got["body"])["data"]
        assert data["headline_en"] == "Dunhuang: red heat, stay indoors 12:00-18:00"
        assert data["review"]["by"] == "operator" and data["review"]["edited"] == ["headline_en"]
        await page.wait_for_selector("#review-last[data-state=approved]", timeout=10_000)
        await page.wait_for_selector("#review-list li", state="detached", timeout=10_000)

        # the warning's detail shows the audit log
        await page.locator("#warning-list li", has_text="620982").first.click(timeout=10_000)
        await page.wait_for_selector("#detail-audit li[data-action=approved]", timeout=10_000)
        assert "edited: headline_en" in await page.inner_text("#detail-audit")
        await shot(page, tmp_path, "desk-audit.png", full=True)

        # a second county's draft, rejected on the page: nothing is sent
        await post(s, ews, "/api/v1/observations",
                   {"station_id": "52533", "time": iso(now - timedelta(minutes=20)), "tmax_c": 40.6})
        item = page.locator("#review-list li").first
        await item.wait_for(timeout=30_000)
        await item.locator("[data-action=reject]").click()
        await item.locator("input[name=reason]").fill("station 52533 sensor fault")
        await item.locator("form.edit-form button[type=submit]").click()
        await page.wait_for_selector("#review-last[data-state=rejected]", timeout=10_000)
        await asyncio.sleep(1.5)  # time for a wrong delivery
        assert len(receiver.received) == 1
    assert page.errors == []


async def test_a_silence_added_on_the_page_holds_yellow_and_lets_red_through(
        ews: EwsProcess, receiver: WebhookReceiver, page: Any, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    async with aiohttp.ClientSession() as s:
        sub = await subscribe(s, ews, "Jiuquan health", receiver.url)
        await open_console(page, ews)
        await page.fill("#token", TOKEN)
        await page.click("#token-form button[type=submit]")
        form = page.locator("#silence-form")
        await form.locator("input[name=subscription_id]").fill(sub["id"][:8])
        await form.locator("input[name=ends]").fill(iso(now + timedelta(hours=2)))
        await form.locator("input[name=reason]").fill("receiver maintenance")
        await form.locator("button[type=submit]").click()
        row = page.locator("#silences-body tr[data-state=active]")
        await row.wait_for(timeout=10_000)
        assert "receiver maintenance" in await row.inner_text()
        # yellow heat (auto) at Jinta, held; red heat at Dunhuang is a draft here (review), approved: passes
        for k in (2, 1, 0):
            await post(s, ews, "/api/v1/observations",
                       {"station_id": "52447", "time": iso(now - timedelta(days=k, minutes=5)), "tmax_c": 36.0})
        await post(s, ews, "/api/v1/observations",
                   {"station_id": "52418", "time": iso(now - timedelta(minutes=5)), "tmax_c": 40.6})
        item = page.locator("#review-list li").first
        await item.wait_for(timeout=30_000)
        await item.locator("[data-action=approve]").click()
        [red] = await receiver.wait_for(1)
        assert orjson.loads(red["body"])["data"]["level"] == "red"
        await shot(page, tmp_path, "desk-silence.png", full=True)
        await row.locator("button").click()  # end the silence now: the held yellow goes out
        got = await receiver.wait_for(2)
        assert sorted(orjson.loads(g["body"])["data"]["level"] for g in got) == ["red", "yellow"]
        await page.wait_for_selector("#silences-body tr", state="detached", timeout=10_000)
    assert page.errors == []
