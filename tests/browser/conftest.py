"""The ``page`` fixture of every browser test: a fresh Chromium page whose uncaught errors are kept in
``page.errors``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, playwright


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Any]:
    async with playwright().async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1440, "height": 1100})
            pg = await context.new_page()
            errors: list[str] = []
            pg.on("pageerror", lambda exc: errors.append(str(exc)))
            pg.errors = errors
            yield pg
            await context.close()
        finally:
            await browser.close()
