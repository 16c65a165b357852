"""Chinese renders on a machine without a CJK font (issue 20): the dashboard's bundled Noto Sans SC subset
(warning/web/static/NotoSansSC-subset.woff2) is loaded once the page shows Chinese text, and Chromium draws that
text with it (CDP ``CSS.getPlatformFontsForNode``), not with a system font or as .notdef boxes. The CSP allows
it (font-src 'self'). Screenshots of the warning list and the page are written to the test's tmp dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.browser.support import BROWSER_MARKS, open_console, report_dunhuang
from warning.launch import EwsProcess

pytestmark = BROWSER_MARKS

FAMILY = "Noto Sans SC"  # the @font-face of app.css


async def test_chinese_text_is_drawn_with_the_bundled_font(ews: EwsProcess, page: Any, tmp_path: Path) -> None:
    csp_errors: list[str] = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    font_responses: list[Any] = []
    page.on("response", lambda r: font_responses.append(r) if r.url.endswith(".woff2") else None)
    async with aiohttp.ClientSession() as s:
        await open_console(page, ews)
        await report_dunhuang(s, ews)
    # the Dunhuang warning in the list: its Chinese place name and headline
    item = page.locator('#warning-list li[data-region="620982"]').first
    await item.wait_for(timeout=60_000)
    assert "敦煌" in await item.inner_text()
    if await page.get_attribute("html", "lang") != "zh-CN":  # the page chrome in Chinese (the zh/en switch)
        await page.click("#lang")
    await page.evaluate("document.fonts.ready")

    faces = await page.evaluate("""() => [...document.fonts].map(f => ({family: f.family, status: f.status}))""")
    ours = [f for f in faces if f["family"].strip("\"'") == FAMILY]
    assert ours and all(f["status"] == "loaded" for f in ours), faces
    assert await page.evaluate(f"document.fonts.check('16px \"{FAMILY}\"', '敦煌市')")
    assert [r.status for r in font_responses] == [200]
    assert font_responses[0].headers["content-type"] == "font/woff2"

    # What Chromium actually drew: for every element with Chinese in its own text, the bundled face must have
    # drawn at least one glyph per CJK character (CDP counts glyphs per font; .notdef boxes are counted under the
    # system font). The list may re-render under us (live updates): an element gone by then is skipped.
    counts: list[int] = await page.evaluate(r"""() => {
        const cjk = /[\u2103\u2e80-\u2fdf\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]/g;
        const out = [];
        for (const el of document.body.querySelectorAll('*')) {
            let n = 0;
            for (const t of el.childNodes) if (t.nodeType === Node.TEXT_NODE) n += (t.data.match(cjk) || []).length;
            if (n && el.getClientRects().length) { el.setAttribute('data-cjk-probe', String(out.length)); out.push(n); }
        }
        return out;
    }""")
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("DOM.enable")
    await cdp.send("CSS.enable")
    root = (await cdp.send("DOM.getDocument", {"depth": -1}))["root"]["nodeId"]
    checked, boxes = 0, []
    for i, n in enumerate(counts):
        node = await cdp.send("DOM.querySelector", {"nodeId": root, "selector": f'[data-cjk-probe="{i}"]'})
        if not node["nodeId"]:
            continue
        fonts = (await cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]}))["fonts"]
        ours = sum(f["glyphCount"] for f in fonts if f["isCustomFont"] and f["familyName"] == FAMILY)
        checked += 1
        if ours < n:
            outer = await cdp.send("DOM.getOuterHTML", {"nodeId": node["nodeId"]})
            boxes.append((outer["outerHTML"][:200], fonts))
    assert checked >= 5 and boxes == [], (checked, boxes)  # the header, the legend, the warning, its region...

    shot = tmp_path / "cjk_font.png"
    await page.locator("#warning-list").screenshot(path=str(shot))
    assert shot.stat().st_size > 2_000
    await page.screenshot(path=str(tmp_path / "cjk_font_page.png"))
    assert csp_errors == [], csp_errors
    assert page.errors == [], page.errors
