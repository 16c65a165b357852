"""The operators' dashboard in a real browser (Debian Chromium driven by playwright) against `ews run`.

One Dunhuang observation (52418, tmax 40.6 °C) must turn county 620982 red on the map and put the warning in
the list without a page reload; the detail shows the alert with its CAP link and the delivery, and the
subscriber panel (token typed into its password field) shows the subscription healthy. A screenshot is
written to the test's tmp dir.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from tests.browser.support import BROWSER_MARKS, open_console, report_dunhuang, subscribe
from tests.support import TOKEN, WebhookReceiver
from warning.launch import EwsProcess

RED = "#e60000"  # app.js COLOURS.red (CMA red)
NO_WARNING_FILL = "#f7f8fa"

pytestmark = BROWSER_MARKS


async def test_dunhuang_turns_red_live(ews: EwsProcess, receiver: WebhookReceiver, page: Any, tmp_path: Path) -> None:
    county = 'svg path.county[data-code="620982"]'
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as s:
        sub = await subscribe(s, ews, "Jiuquan health", receiver.url, min_level="yellow")
        await open_console(page, ews)
        await page.wait_for_selector(county, state="attached", timeout=30_000)
        assert await page.get_attribute(county, "fill") == NO_WARNING_FILL
        assert await page.locator("svg path.county").count() == 87
        assert await page.locator("svg path.prefecture").count() == 14
        assert await page.locator("#warning-list li").count() == 0
        # the tests' service runs on tansu (EWS_BROKER=tansu): the page says nothing survives a stop
        await page.wait_for_selector("#memory-banner:not([hidden])", timeout=10_000)
        assert "memory only: everything is lost when it stops" in await page.inner_text("#memory-banner")

        # the operator's token goes into the password field, is kept in sessionStorage, never in the URL
        await page.fill("#token", TOKEN)
        await page.click("#token-form button[type=submit]")
        row = f'#subs-body tr[data-subscription-id="{sub["id"]}"]'
        await page.wait_for_selector(row, timeout=15_000)
        assert TOKEN not in page.url
        assert await page.evaluate("sessionStorage.getItem('ews.operatorToken')") == TOKEN
        assert await page.input_value("#token") == ""

        await page.evaluate("window.__notReloaded = true")
        assert (await report_dunhuang(s, ews))["accepted"] == 1

        # live: the county turns red and the warning is listed, with no reload of the page
        await page.wait_for_selector(f'{county}[fill="{RED}"]', state="attached", timeout=60_000)
        assert await page.get_attribute(county, "data-level") == "red"
        fill = await page.eval_on_selector(county, "p => getComputedStyle(p).fill")
        assert fill == "rgb(230, 0, 0)"
        item = page.locator('#warning-list li[data-region="620982"][data-level="red"]')
        await item.wait_for(timeout=10_000)
        assert "敦煌" in await item.inner_text()
        assert await page.evaluate("window.__notReloaded === true")
        assert await page.get_attribute('svg circle.station[data-station="52418"]', "data-level") == "red"

        # detail: history (alert), the CAP link, and the delivery to the subscriber
        await item.click()
        await page.wait_for_selector('#detail-history li[data-msg-type="alert"]', timeout=10_000)
        warning_id = await item.get_attribute("data-warning-id")
        assert await page.get_attribute("#detail-cap", "href") == f"/api/v1/warnings/{warning_id}.cap"
        await receiver.wait_for(1)
        await page.wait_for_selector("#detail-deliveries td.result-delivered", timeout=30_000)
        await page.wait_for_selector(f'{row}[data-status="healthy"]', timeout=30_000)
        assert "health" in await page.inner_text(row)

        # the redrive button calls the endpoint with the token and shows the HTTP result, whatever it is
        await page.click("#redrive")
        await page.wait_for_selector("#redrive-result[data-status]", timeout=10_000)
        assert (await page.inner_text("#redrive-result")).startswith("HTTP ")

        # "show ended" asks the warnings list (its filters) for what ended in the last day; the operator's cancel
        # is then listed as ended
        async with s.post(ews.url + f"/api/v1/warnings/{warning_id}/cancel", headers=headers) as r:
            assert r.status == 202
        await page.wait_for_selector(f"{county}[fill=\"{NO_WARNING_FILL}\"]", state="attached", timeout=30_000)
        async with page.expect_response(lambda r: "/api/v1/warnings?" in r.url and "msg_type=cancel" in r.url
                                        ) as listed:
            await page.check("#show-ended")
        assert (await listed.value).status == 200
        await page.wait_for_selector('#warning-list li.ended[data-region="620982"][data-msg-type="cancel"]',
                                     timeout=10_000)

    shot = tmp_path / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert page.errors == [], page.errors


async def test_a_grid_based_warning_shows_its_polygon_over_the_county(broker: Any, page: Any, tmp_path: Path) -> None:
    """A storm over Aksay (no station) from `ews ingest --format grid --grid-to counties`: 70 mm in 3 h is rainstorm
    orange and flash-flood red; the county is tinted red (its highest level) and each warning's area (the storm's
    cells) drawn over it in its level's colour; the list says the grid's share."""
    from tests.support import ews_ingest_grid, running_ews, storm_grid
    from warning.grid_counties import county_geometries

    codes, geoms, _ = county_geometries()
    centre = geoms[codes.index("620924")].representative_point()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    grid = storm_grid(tmp_path / "storm.nc", centre.y, centre.x, now)
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-grid-dashboard"}
    async with running_ews(tmp_path, env) as ews:
        await page.goto(ews.url + "/")
        county = 'svg path.county[data-code="620924"]'
        await page.wait_for_selector(county, state="attached", timeout=30_000)
        done = ews_ingest_grid(grid, broker.bootstrap, tmp_path / "ingest")
        assert done.returncode == 0, done.stderr
        area = 'svg g.areas path.grid-area[data-region="620924"][data-hazard="rainstorm"]'
        await page.wait_for_selector(area, state="attached", timeout=60_000)
        assert await page.get_attribute(area, "data-level") == "orange"
        await page.wait_for_selector('svg g.areas path.grid-area[data-hazard="flash_flood"][data-level="red"]',
                                     state="attached", timeout=30_000)
        assert await page.get_attribute(county, "data-partial") == "1"
        assert await page.get_attribute(county, "data-level") == "red"
        box_area = await page.locator(area).bounding_box()
        box_county = await page.locator(county).bounding_box()
        assert box_area and box_county and 0 < box_area["width"] < box_county["width"]  # the cells, inside it
        item = page.locator('#warning-list li[data-region="620924"][data-level="orange"]')
        assert "% of the county" in await item.inner_text()
        await page.screenshot(path=str(tmp_path / "grid_area.png"), full_page=True)
    assert page.errors == [], page.errors
