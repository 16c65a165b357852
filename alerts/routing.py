"""Which subscriptions a WarningEvent goes to (the filter half of Alertmanager-style routing)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

import orjson

from alerts.subscriptions import Subscription
from warning.shared.bus import Topic
from warning.shared.records import NAMESPACE, Delivery, WarningEvent, WarningLevel, status_of

Covers = Callable[[str, str], bool]  # (filter region code, event region code) -> bool


def matches(sub: Subscription, event: Mapping[str, Any], covers: Covers) -> bool:
    """Whether ``event`` passes ``sub``'s filters. A paused subscription still matches: its deliveries are held
    (parked as "subscription paused") and sent on resume, never dropped. Exercise and test events match only a
    subscription that opted in to their status."""
    if status_of(event) not in sub.statuses:
        return False
    if sub.hazards and event["hazard"] not in sub.hazards:
        return False
    if WarningLevel.parse(event["level"]) < WarningLevel.parse(sub.min_level):
        return False
    if sub.basis and event.get("basis", "observed") not in sub.basis:
        return False
    return any(covers(code, event["region_code"]) for code in sub.regions)


def route(event: Mapping[str, Any], subs: Iterable[Subscription], covers: Covers,
          already_received: Iterable[str] = ()) -> list[tuple[Subscription, str]]:
    """(subscription, webhook type) pairs for one WarningEvent.

    Updates and cancels go to every subscription that received an earlier message of the same warning, even
    if the new level is below its filter. A subscription that first matches at an update (an upgrade past its
    minimum level) gets it as ``warning.alert``: it has nothing to update. Cancels go only to past receivers.
    """
    received = set(already_received)
    out: list[tuple[Subscription, str]] = []
    for sub in subs:
        if sub.msg_types and event["msg_type"] not in sub.msg_types:
            continue
        if sub.id in received and event["msg_type"] != "alert":
            out.append((sub, f"warning.{event['msg_type']}"))
        elif event["msg_type"] != "cancel" and not sub.fallback and matches(sub, event, covers):
            out.append((sub, "warning.alert"))
    return out


def webhook_id(event_id: str, sub_id: str) -> str:
    """Stable across attempts, redrives and a re-fold after a crash: receivers deduplicate on it."""
    return "msg_" + uuid.uuid5(NAMESPACE, f"{event_id}:{sub_id}").hex


class Router:
    """The deliveries of each county warning event to ``alerts.outbox``. The grade agent calls ``route`` as it
    makes the event: the ``receivers`` table (who got each warning, so that its updates and cancel follow them)
    is written under the same key partition as the region's state."""

    def __init__(self, subscriptions: Iterable[Subscription], covers: Covers,
                 receivers: MutableMapping[str, Any], outbox: Topic) -> None:
        self.subscriptions, self.covers = subscriptions, covers
        self.receivers, self.outbox = receivers, outbox

    async def route(self, event: WarningEvent) -> None:
        if event.get("region_level") == "prefecture":
            return  # roll-ups are for the dashboard and API; counties issue the signals departments get
        wid = event["warning_id"]
        received = list(self.receivers.get(wid) or [])
        targets = route(event, self.subscriptions, self.covers, received)
        if not targets:
            return  # nothing to send and nothing new to remember: no table write
        for sub, msg_type in targets:
            await self._send(event, sub.id, msg_type)
            if sub.id not in received:
                received.append(sub.id)
        self.receivers[wid] = received

    async def backfill(self, event: WarningEvent, sub_id: str) -> bool:
        """Send a live warning's current event to a subscription made (or resumed) after it was issued, as
        ``warning.alert`` marked ``backfill``; its updates and cancel then follow it. False if it has it already."""
        wid = event["warning_id"]
        received = list(self.receivers.get(wid) or [])
        if sub_id in received:
            return False
        await self._send(event, sub_id, "warning.alert", backfill=True)
        self.receivers[wid] = [*received, sub_id]
        return True

    async def remind(self, event: WarningEvent, sub_id: str) -> None:
        """The warning's current event again to a receiver that has not acknowledged it: a new ``webhook-id`` (the
        first was delivered, and receivers drop a repeat), ``"reminder": true`` in the envelope."""
        await self._send(event, sub_id, f"warning.{event['msg_type']}", flag="reminder",
                         hook_id=webhook_id(event["id"], f"{sub_id}:reminder:{event['level']}"))

    async def escalate(self, event: WarningEvent, sub_id: str) -> bool:
        """The warning's current event to a fallback subscription, as ``warning.alert`` marked ``escalation``; its
        updates and cancel then follow it. False if it has the warning already."""
        wid = event["warning_id"]
        received = list(self.receivers.get(wid) or [])
        if sub_id in received:
            return False
        await self._send(event, sub_id, "warning.alert", flag="escalation")
        self.receivers[wid] = [*received, sub_id]
        return True

    async def _send(self, event: WarningEvent, sub_id: str, msg_type: str, backfill: bool = False,
                    flag: str | None = None, hook_id: str | None = None) -> None:
        delivery: Delivery = {"webhook_id": hook_id or webhook_id(event["id"], sub_id), "subscription_id": sub_id,
                              "type": msg_type, "event": event, "attempt": 0, "first_attempt_at": None}
        if backfill:
            delivery["backfill"] = True
        if flag == "reminder":  # said in the envelope
            delivery["reminder"] = True
        elif flag == "escalation":
            delivery["escalation"] = True
        await self.outbox.send(key=sub_id.encode(), value=orjson.dumps(delivery))
