"""Which subscriptions a WarningEvent goes to (the filter half of Alertmanager-style routing)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from alerts.subscriptions import Subscription
from warning.records import WarningLevel

Covers = Callable[[str, str], bool]  # (filter region code, event region code) -> bool


def matches(sub: Subscription, event: dict[str, Any], covers: Covers) -> bool:
    if not sub.active:
        return False
    if sub.hazards and event["hazard"] not in sub.hazards:
        return False
    if WarningLevel.parse(event["level"]) < WarningLevel.parse(sub.min_level):
        return False
    if sub.basis and event.get("basis", "observed") not in sub.basis:
        return False
    return any(covers(code, event["region_code"]) for code in sub.regions)


def route(event: dict[str, Any], subs: Iterable[Subscription], covers: Covers,
          already_received: Iterable[str] = ()) -> list[tuple[Subscription, str]]:
    """(subscription, webhook type) pairs for one WarningEvent.

    Updates and cancels go to every subscription that received an earlier message of the same warning, even
    if the new level is below its filter. A subscription that first matches at an update (an upgrade past its
    minimum level) gets it as ``warning.alert``: it has nothing to update. Cancels go only to past receivers.
    """
    received = set(already_received)
    out: list[tuple[Subscription, str]] = []
    for sub in subs:
        if not sub.active or (sub.msg_types and event["msg_type"] not in sub.msg_types):
            continue
        if sub.id in received and event["msg_type"] != "alert":
            out.append((sub, f"warning.{event['msg_type']}"))
        elif event["msg_type"] != "cancel" and matches(sub, event, covers):
            out.append((sub, "warning.alert"))
    return out
