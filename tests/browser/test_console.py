"""The console (issue 20, point 4) in a real browser (Debian Chromium, playwright) against `ews run`.

Dunhuang (52418) reports 40.6 °C and a 22 m/s gust: heat red AND gale yellow in county 620982. The county is
filled red, and both hazards are on the map (one marker each) and in the "by county" list; the warning detail is
titled by its headline, names its subscribers (no ids); delivery health (delivered / retrying / parked per
subscriber name) shows without the token and never an endpoint; times are Beijing time with UTC in the title;
the zh/en switch changes the chrome and is remembered; the live badge turns "not ready" while /readyz answers
503; the archive search finds the warning by hazard, region, level and time range and opens its detail.
Screenshots at 1280x800 and 1920x1080 go to the test's tmp dir (and to EWS_SCREENSHOTS=DIR when set).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.browser.support import (
    BROWSER_MARKS,
    CHROMIUM,
    CHROMIUM_ARGS,
    iso,
    open_console,
    playwright,
    post,
    shot,
    subscribe,
)
from tests.support import WebhookReceiver
from warning.launch import EwsProcess

pytestmark = BROWSER_MARKS
COUNTY = "620982"  # Dunhuang


@pytest.fixture
def ews_env() -> dict[str, str]:
    return {"EWS_STATION_VALUES_S": "1"}  # station summaries published every second (60 s by default)


async def test_console_two_hazards_names_health_archive_language(ews: EwsProcess, receiver: WebhookReceiver,
                                                                 tmp_path: Path) -> None:
    async with WebhookReceiver("failing", mode=503) as failing, aiohttp.ClientSession() as s:
        await subscribe(s, ews, "Jiuquan health commission", receiver.url, hazards=["heat", "gale"])
        await subscribe(s, ews, "Dunhuang water bureau", failing.url, department="water", regions=["620982"],
                        hazards=["gale"])
        t = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
        await post(s, ews, "/api/v1/observations",
                   {"station_id": "52418", "time": iso(t), "tmax_c": 40.6, "gust_ms": 22.0})

        async with playwright().async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
                page = await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await open_console(page, ews)
                await check_two_hazards(page)
                await check_labels(page, tmp_path)
                await check_detail(page, receiver, failing)
                await check_public_health(page, failing)
                await check_archive(page, t)
                await check_stations(page)
                await page.locator("#map-panel").scroll_into_view_if_needed()
                await shot(page, tmp_path, "console-1280.png")
                await shot(page, tmp_path, "console-full-1280.png", full=True)
                await page.locator("#subscribers-panel").scroll_into_view_if_needed()
                await shot(page, tmp_path, "console-health-1280.png")
                await page.set_viewport_size({"width": 1920, "height": 1080})
                await page.wait_for_timeout(300)
                await shot(page, tmp_path, "console-1920.png")
                await check_no_clipping(page)
                await page.set_viewport_size({"width": 1280, "height": 800})
                await check_language(page, tmp_path)
                await check_ready_badge(page)
                assert errors == [], errors
                # a first visit from a Chinese browser starts in Chinese
                zh = await (await browser.new_context(viewport={"width": 1280, "height": 800},
                                                      locale="zh-CN")).new_page()
                await zh.goto(ews.url + "/")
                await zh.wait_for_selector("html[lang='zh-CN']", state="attached", timeout=10_000)
                assert await zh.inner_text("[data-i18n=warnings]") == "预警"
                assert await zh.inner_text("#lang") == "English"
            finally:
                await browser.close()


async def hover_county(page: Any, county: str) -> None:
    """The pointer over the county below its centre (its hazard markers sit above the centre)."""
    box = await page.locator(county).bounding_box()
    assert box
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.75)


async def check_two_hazards(page: Any) -> None:
    county = f'svg path.county[data-code="{COUNTY}"]'
    await page.wait_for_selector(f'{county}[data-level="red"]', state="attached", timeout=60_000)
    badges = f'svg g.badges g.badge[data-region="{COUNTY}"]'
    await page.wait_for_selector(f'{badges}[data-hazard="gale"]', state="attached", timeout=30_000)
    assert await page.get_attribute(f'{badges}[data-hazard="heat"]', "data-level") == "red"
    assert await page.get_attribute(f'{badges}[data-hazard="gale"]', "data-level") == "yellow"
    assert await page.locator(badges).count() == 2
    for hazard in ("heat", "gale"):  # both drawn, inside the map, not hidden under the fill
        box = await page.locator(f'{badges}[data-hazard="{hazard}"]').bounding_box()
        assert box and box["width"] > 5 and box["height"] > 5
    row = page.locator(f'#county-list li[data-region="{COUNTY}"]')
    assert await row.get_attribute("data-count") == "2"
    text = await row.inner_text()
    assert "Dunhuang" in text and "heat red" in text and "gale yellow" in text
    await hover_county(page, county)  # the hover line lists every hazard too
    hover = await page.inner_text("#hover")
    assert "heat red" in hover and "gale yellow" in hover


async def check_labels(page: Any, tmp_path: Path) -> None:
    assert await page.locator("svg text.pref-label").count() == 14
    jiuquan = page.locator('svg text.pref-label[data-code="620900"]')
    assert await jiuquan.text_content() == "Jiuquan"
    assert await jiuquan.is_visible()
    label = page.locator('svg text.county-label[data-code="620982"]')
    await hover_county(page, f'svg path.county[data-code="{COUNTY}"]')
    assert await label.is_visible()  # county names show on hover ...
    await page.hover("#legend")
    assert not await label.is_visible()
    await page.check("#show-county-names")  # ... or all of them with the toggle
    assert await label.is_visible()
    await page.uncheck("#show-county-names")
    box = await page.locator("#map svg").bounding_box()
    assert box
    await page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.3)
    for _ in range(4):  # zoomed in over Jiuquan: county names show without the toggle
        await page.mouse.wheel(0, -120)
    await page.wait_for_selector("#map.zoomed", timeout=5_000)
    await page.hover("#legend")
    assert await label.is_visible()
    await page.locator("#map").screenshot(path=str(tmp_path / "console-zoomed.png"))
    if os.environ.get("EWS_SCREENSHOTS"):
        await page.locator("#map").screenshot(path=str(Path(os.environ["EWS_SCREENSHOTS"]) / "console-zoomed.png"))
    await page.dblclick("#map svg")
    await page.wait_for_selector("#map:not(.zoomed)", timeout=5_000)


async def check_detail(page: Any, receiver: WebhookReceiver, failing: WebhookReceiver) -> None:
    await receiver.wait_for(2)
    await page.locator(f'#county-list li[data-region="{COUNTY}"] .hz[data-hazard="gale"]').click()
    await page.wait_for_selector("#detail-panel:not([hidden]) #detail-history li", timeout=10_000)
    title = await page.inner_text("#detail-title")
    assert "gale" in title.lower() or "Gale" in title, title  # the headline, not an id
    wid = await page.get_attribute("#detail-title", "data-warning-id")
    assert wid and wid not in title
    await page.wait_for_selector("#detail-deliveries td.result-retry", timeout=30_000)
    await page.wait_for_selector("#detail-deliveries td.result-delivered", timeout=30_000)
    deliveries = await page.inner_text("#detail-deliveries")
    assert "Jiuquan health commission" in deliveries and "Dunhuang water bureau" in deliveries
    assert "127.0.0.1" not in deliveries and "/hook" not in deliveries
    received = await page.inner_text("#detail-received")
    assert "Jiuquan health commission" in received
    # one time zone: Beijing on the page, the UTC instant in the title
    cell = page.locator("#detail-deliveries tr td").first
    assert (await cell.inner_text()).endswith("BJT")
    utc = await cell.get_attribute("title")
    assert utc and utc.endswith("Z")
    bj = datetime.strptime((await cell.inner_text())[:16], "%Y-%m-%d %H:%M")
    assert bj == datetime.strptime(utc[:16], "%Y-%m-%dT%H:%M") + timedelta(hours=8)


async def check_public_health(page: Any, failing: WebhookReceiver) -> None:
    await page.evaluate("sessionStorage.clear()")  # no token
    row = page.locator('#public-health-body tr[data-name="Dunhuang water bureau"]')
    await row.wait_for(timeout=30_000)
    ok = page.locator('#public-health-body tr[data-name="Jiuquan health commission"]')
    await page.wait_for_function(
        """() => { const r = document.querySelector('#public-health-body tr[data-name="Jiuquan health commission"]');
                   return r && r.querySelector('.n-delivered').textContent === '2'; }""", timeout=30_000)
    assert "health" in await ok.inner_text()
    await page.wait_for_function(
        """() => { const r = document.querySelector('#public-health-body tr[data-name="Dunhuang water bureau"]');
                   return r && r.querySelector('.n-retrying').textContent === '1'; }""", timeout=30_000)
    text = await page.inner_text("#public-health-table")
    assert "HTTP 503" in text
    assert "127.0.0.1" not in text and "http" not in text.lower().replace("http 503", "")


async def check_archive(page: Any, t: datetime) -> None:
    await page.select_option("#archive-hazard", "heat")
    await page.fill("#archive-region", "620900")
    await page.select_option("#archive-level", "orange")
    bj = t + timedelta(hours=8)
    await page.fill("#archive-since", (bj - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    await page.fill("#archive-until", (bj + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    async with page.expect_response(lambda r: "/api/v1/warnings?" in r.url and "until=" in r.url) as listed:
        await page.click("#archive-form button[type=submit]")
    assert (await listed.value).status == 200
    item = page.locator('#archive-list li[data-hazard="heat"][data-region="620982"]')
    await item.wait_for(timeout=10_000)
    hazards = await page.eval_on_selector_all("#archive-list li", "ls => ls.map(l => l.dataset.hazard)")
    assert set(hazards) == {"heat"}  # the county's warning and its prefecture roll-up; no gale
    await item.click()
    await page.wait_for_function("() => /High temperature/.test(document.getElementById('detail-title').textContent)",
                                 timeout=10_000)
    # a time range before the warning finds nothing
    await page.fill("#archive-until", (bj - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    await page.click("#archive-form button[type=submit]")
    await page.wait_for_selector('#archive-status-line[data-count="0"]', timeout=10_000)


async def check_no_clipping(page: Any) -> None:
    """Nothing clipped: every table either fits its panel or scrolls inside its wrapper."""
    clipped = await page.evaluate("""() => Array.from(document.querySelectorAll('.table-wrap')).filter(w => {
        const panel = w.closest('.panel'); if (!panel || panel.hidden || !w.offsetParent) return false;
        const p = panel.getBoundingClientRect(), r = w.getBoundingClientRect();
        return r.right > p.right + 1 || (w.scrollWidth > w.clientWidth + 1 &&
               getComputedStyle(w).overflowX !== 'auto'); }).map(w => w.querySelector('tbody').id)""")
    assert clipped == [], clipped


async def check_language(page: Any, tmp_path: Path) -> None:
    assert await page.inner_text("#lang") == "中文"
    assert await page.inner_text("[data-i18n=warnings]") == "Warnings"
    await page.click("#lang")
    assert await page.inner_text("[data-i18n=warnings]") == "预警"
    assert await page.inner_text("[data-i18n=archive]") == "历史预警查询"
    assert await page.text_content('svg text.pref-label[data-code="620900"]') == "酒泉市"
    row = await page.inner_text(f'#county-list li[data-region="{COUNTY}"]')
    assert "高温" in row and "大风" in row
    await page.reload()  # remembered
    await page.wait_for_selector("body[data-live='1']", state="attached", timeout=30_000)
    assert await page.evaluate("localStorage.getItem('ews.lang')") == "zh"
    assert await page.inner_text("[data-i18n=warnings]") == "预警"
    await page.wait_for_selector(f'svg g.badges g.badge[data-region="{COUNTY}"]', state="attached", timeout=30_000)
    await shot(page, tmp_path, "console-zh-1280.png")
    await page.click("#lang")
    assert await page.evaluate("localStorage.getItem('ews.lang')") == "en"


async def check_ready_badge(page: Any) -> None:
    await page.wait_for_selector('#conn[data-state="live"]', timeout=15_000)
    await page.route("**/readyz", lambda route: route.fulfill(status=503, body='{"status":"starting"}',
                                                               content_type="application/json"))
    await page.wait_for_selector('#conn[data-state="notready"]', timeout=15_000)
    assert await page.inner_text("#conn") == "not ready"
    colour = await page.eval_on_selector("#conn", "n => getComputedStyle(n).backgroundColor")
    assert colour == "rgb(185, 28, 28)"
    await page.unroute("**/readyz")
    await page.wait_for_selector('#conn[data-state="live"]', timeout=15_000)


async def check_stations(page: Any) -> None:
    row = page.locator('#stations-body tr[data-station="52418"]')
    await row.wait_for(timeout=30_000)  # published by the worker's timer, mirrored from stations.latest
    text = await row.inner_text()
    assert "Dunhuang" in text and "max 40.6 °C" in text and "gust 22.0 m/s" in text
    assert await row.locator('svg.spark[data-quantity="tmax_c"]').get_attribute("data-points") == "1"
    assert await row.locator("td").first.locator("span.t").get_attribute("title") is not None
