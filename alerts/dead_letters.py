"""Parked deliveries (``alerts.dead``) and their redrive. The topic holds parked deliveries and redrive markers;
every worker keeps the set still parked from a whole-topic mirror plus its own writes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from warning.shared.bus import Topic, now_iso
from warning.shared.records import Delivery


class DeadLetters:
    def __init__(self, dead: Topic, outbox: Topic) -> None:
        self.dead, self.outbox = dead, outbox
        self.parked: dict[str, dict[str, Any]] = {}  # webhook_id -> parked delivery

    def apply(self, value: bytes | None) -> None:
        if not value:
            return
        rec = orjson.loads(value)
        if "redriven" in rec:  # a redrive marker: no longer parked
            self.parked.pop(rec["redriven"], None)
        elif "webhook_id" in rec:
            self.parked[rec["webhook_id"]] = rec

    def mirror(self, key: bytes | None, value: bytes | None) -> None:
        self.apply(value)

    async def park(self, d: Delivery, key: str) -> None:
        value = orjson.dumps(d)
        await self.dead.send(key=key.encode(), value=value)
        self.apply(value)

    async def redrive(self, subscription_id: str | None = None, reason_prefix: str = "",
                      still_current: Callable[[dict[str, Any]], bool] | None = None) -> int:
        """Re-send parked deliveries (all, or one subscription's, or only those parked for ``reason_prefix``)
        through alerts.outbox, in the order they were parked, with a fresh attempt budget; the webhook-id is
        unchanged so receivers still deduplicate. With ``still_current``, a delivery whose warning has ended
        since (its event false) is let go with its marker instead (a silence's hold of a warning cancelled
        meanwhile: the cancel already went out)."""
        n = 0
        in_order = sorted(self.parked.items(), key=lambda kv: (kv[1].get("parked_at", ""),
                                                                kv[1].get("event", {}).get("seq", 0)))
        for wid, d in in_order:
            sub_id = d.get("subscription_id")
            if subscription_id and sub_id != subscription_id:
                continue
            if not str(d.get("last_error", "")).startswith(reason_prefix):
                continue
            current = still_current is None or still_current(d.get("event") or {})
            if current:
                fresh = {k: v for k, v in d.items() if k not in ("last_error", "parked_at", "not_before")}
                fresh.update(attempt=0, first_attempt_at=None, redriven_at=now_iso())
                await self.outbox.send(key=str(sub_id).encode(), value=orjson.dumps(fresh))
            marker = orjson.dumps({"redriven": wid, "subscription_id": sub_id, "time": now_iso(),
                                   **({} if current else {"dropped": "the warning ended while it was held"})})
            await self.dead.send(key=str(sub_id).encode(), value=marker)
            self.apply(marker)
            n += current
        return n
