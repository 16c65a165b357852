"""A warning a webhook just announced is found even if this worker's view reads it a moment later."""

from __future__ import annotations

import asyncio

from warning.web.feeds import in_view


async def test_a_lookup_waits_for_the_view_to_catch_up() -> None:
    view: dict[str, str] = {}
    asyncio.get_running_loop().call_later(0.12, view.__setitem__, "w1", "event")
    assert await in_view(lambda: view.get("w1"), timeout_s=2.0, poll_s=0.01) == "event"


async def test_an_unknown_id_is_none_after_the_timeout() -> None:
    calls = 0

    def lookup() -> None:
        nonlocal calls
        calls += 1

    assert await in_view(lookup, timeout_s=0.1, poll_s=0.01) is None
    assert calls > 1  # it looked again while waiting, not once
