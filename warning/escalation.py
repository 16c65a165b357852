"""Escalation of unacknowledged warnings (rules.toml [acknowledgement]).

The grade agent asks after every fold of a county chain, ticks included (every 30 s while a warning is live), so
the check runs on the worker that owns the region, under the region's key partition: the ``receivers`` table it
extends and the ``ack_escalations`` table it keeps are written where the region's state is. A warning whose level
has a deadline is watched from the first fold that sees it at that level; when the deadline passes, every
receiver that has not acknowledged it at that level or above is sent the current event once more (a reminder, new
``webhook-id``), and every fallback subscription whose filters match it (regions covering the county, hazard,
level, status) is sent it as an escalation, once per warning. What was done is kept in ``ack_escalations``
(key = chain key, so a restart neither repeats nor forgets it, and a new warning on the chain starts afresh).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, Protocol

from alerts.acks import AckBook
from alerts.routing import matches
from alerts.subscriptions import Subscription
from warning.rules import AcknowledgementPolicy
from warning.shared import metrics
from warning.shared.records import WarningEvent, parse_chain_key
from warning.shared.regions import RegionTree

log = logging.getLogger(__name__)


class Escalating(Protocol):
    """``alerts.routing.Router``'s reminder and escalation sends."""

    async def remind(self, event: WarningEvent, sub_id: str) -> None: ...

    async def escalate(self, event: WarningEvent, sub_id: str) -> bool: ...


class Subscriptions(Protocol):
    def get(self, sub_id: str) -> Subscription | None: ...

    def __iter__(self) -> Any: ...


class AckEscalation:
    def __init__(self, *, policy: Callable[[], AcknowledgementPolicy], router: Escalating,
                 receivers: MutableMapping[str, Any], escalations: MutableMapping[str, Any], acks: AckBook,
                 subscriptions: Subscriptions, history: Callable[[str], list[WarningEvent] | None],
                 regions: RegionTree, clock: Callable[[], float] = time.time) -> None:
        self.policy, self.router, self.receivers, self.escalations = policy, router, receivers, escalations
        self.acks, self.subscriptions, self.history, self.regions = acks, subscriptions, history, regions
        self.clock = clock
        self._unacknowledged: dict[str, str] = {}  # chain key -> level, for the gauge (this worker's regions)

    async def review(self, key: str, state: dict[str, Any] | None) -> None:
        region_code, _, _ = parse_chain_key(key)
        region = self.regions.region(region_code)
        if region is None or region.level != "county":
            return  # roll-ups are not delivered to anyone
        current = (state or {}).get("warning")
        deadline_s = self.policy().after_s(current["level"]) if current else None
        if current is None or deadline_s is None:
            self._count(key, None)
            return
        wid, level, now = current["warning_id"], current["level"], self.clock()
        entry = self.escalations.get(key)
        if not entry or entry.get("warning_id") != wid or entry.get("level") != level:
            entry = {"warning_id": wid, "level": level, "since": now, "done": []}  # the clock starts
            self.escalations[key] = entry
        receivers = [s for s in self.receivers.get(wid) or []
                     if (sub := self.subscriptions.get(s)) is not None and not sub.fallback]
        waiting = [s for s in receivers if not self.acks.acknowledged(wid, s, level)]
        self._count(key, level if waiting else None)
        if not waiting or now - float(entry["since"]) < deadline_s or not self.acks.caught_up.is_set():
            return
        todo = [s for s in waiting if s not in entry["done"]]
        event = next((e for e in reversed(self.history(wid) or []) if e["id"] == current["id"]), None)
        if not todo or event is None:
            return  # done already, or the warnings mirror has not the event yet: the next tick tries again
        for sub_id in todo:
            await self.router.remind(event, sub_id)
        metrics.ESCALATIONS.labels(level, "reminder").inc(len(todo))
        fallbacks = [f.id for f in self._fallbacks(event) if f.id not in receivers]
        sent = [f for f in fallbacks if await self.router.escalate(event, f)]
        metrics.ESCALATIONS.labels(level, "fallback").inc(len(sent))
        log.warning("warning %s %s %s not acknowledged by %d receiver(s) within %.0f s: reminded them, escalated "
                    "to %d fallback subscription(s)", event["hazard"], level, region_code, len(todo), deadline_s,
                    len(sent), extra={"warning_id": wid, "event_id": event["id"]})
        self.escalations[key] = {**entry, "done": [*entry["done"], *todo]}

    def _fallbacks(self, event: WarningEvent) -> Iterable[Subscription]:
        return [s for s in self.subscriptions if s.fallback and matches(s, event, self.regions.covers)]

    def _count(self, key: str, level: str | None) -> None:
        before = self._unacknowledged.get(key)
        if before == level:
            return
        if level is None:
            self._unacknowledged.pop(key, None)
        else:
            self._unacknowledged[key] = level
        for colour in {before, level} - {None}:
            metrics.UNACKNOWLEDGED.labels(colour).set(
                sum(1 for lv in self._unacknowledged.values() if lv == colour))
