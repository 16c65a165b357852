"""A delivery to an endpoint already at its concurrency limit waits a moment for it, then goes to a retry tier
(warning.app.ENDPOINT_BUSY_WAIT_S): a burst to one endpoint does not cycle through the first tier at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from warning import app as app_module
from warning.app import WarningService
from warning.config import Settings
from warning.regions import RegionTree, StationRegistry
from warning.rules import load_rules


@pytest.fixture
def svc(tmp_path: Path) -> WarningService:
    settings = Settings.from_env({"EWS_DATA_DIR": str(tmp_path), "EWS_ENDPOINT_CONCURRENCY": "1"})
    s = WarningService(settings, "127.0.0.1:1", StationRegistry.load(), RegionTree.load(), load_rules())
    sub = SimpleNamespace(id="sub-1", active=True)
    s.subscriptions.get = lambda sub_id: sub if sub_id == "sub-1" else None  # type: ignore[method-assign]
    return s


def record(webhook_id: str) -> bytes:
    return orjson.dumps({"webhook_id": webhook_id, "subscription_id": "sub-1", "type": "warning.alert",
                         "event": {"id": "e1", "warning_id": "w1"}, "attempt": 0})


def recorders(svc: WarningService) -> tuple[list[str], list[str]]:
    posted: list[str] = []
    retried: list[str] = []

    async def post(d: dict[str, Any], sub: Any, event: dict[str, Any]) -> None:
        posted.append(d["webhook_id"])

    async def retry(d: dict[str, Any], sub_id: str, retry_after_s: float | None = None) -> None:
        retried.append(d["webhook_id"])
    svc._post = post  # type: ignore[method-assign]
    svc.schedule_retry = retry  # type: ignore[method-assign]
    return posted, retried


async def test_a_delivery_waits_for_an_endpoint_that_frees_up_soon(svc: WarningService) -> None:
    posted, retried = recorders(svc)
    slot = svc._endpoint_slot("sub-1")
    await slot.acquire()  # another delivery to this endpoint is in flight
    asyncio.get_running_loop().call_later(0.05, slot.release)
    await svc._attempt(record("msg_a"), first=True)
    assert (posted, retried) == (["msg_a"], []) and not slot.locked()


async def test_a_delivery_to_an_endpoint_that_stays_busy_goes_to_a_retry_tier(
        svc: WarningService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "ENDPOINT_BUSY_WAIT_S", 0.05)
    posted, retried = recorders(svc)
    slot = svc._endpoint_slot("sub-1")
    await slot.acquire()
    await svc._attempt(record("msg_b"), first=False)
    assert (posted, retried) == ([], ["msg_b"])
    slot.release()
    await svc._attempt(record("msg_c"), first=False)  # the slot is free again and was not leaked by the timeout
    assert posted == ["msg_c"] and not slot.locked()
