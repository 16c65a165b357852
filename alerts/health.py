"""Endpoint health, one definition for the delivery gate and the dashboard: consecutive failed attempts per
subscription, fed by every delivery receipt this worker sees (its own and, through the receipts mirror, other
workers'). An endpoint failing for longer than a configurable time with no success in between is unhealthy until
its next success (ALERTING.md: Svix disables after 5 days; we never drop, we only stop first attempts, so
deliveries wait in the retry tiers where the next attempt probes it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from warning.shared.records import Receipt, SeenOnce
from warning.shared.times import parse_utc

Status = Literal["paused", "unhealthy", "failing", "healthy"]


@dataclass
class EndpointHealth:
    consecutive_failures: int = 0
    failing_since: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_error: str | None = None


class HealthTracker:
    def __init__(self, unhealthy_after_s: float) -> None:
        self.unhealthy_after_s = unhealthy_after_s
        self._by_sub: dict[str, EndpointHealth] = {}
        self._seen = SeenOnce()

    def get(self, sub_id: str) -> EndpointHealth:
        return self._by_sub.setdefault(sub_id, EndpointHealth())

    def success(self, sub_id: str, now: float) -> None:
        h = self.get(sub_id)
        h.consecutive_failures, h.failing_since, h.last_success = 0, None, now

    def failure(self, sub_id: str, now: float, error: str | None) -> None:
        h = self.get(sub_id)
        h.consecutive_failures += 1
        h.failing_since = h.failing_since or now
        h.last_failure, h.last_error = now, error

    def observe(self, receipt: Receipt) -> None:
        """A delivery receipt (each attempt counted once, however often it is seen)."""
        if not self._seen.first(receipt):
            return
        at = parse_utc(receipt["time"]).timestamp()
        if receipt["result"] == "delivered":
            self.success(receipt["subscription_id"], at)
        else:
            self.failure(receipt["subscription_id"], at, receipt.get("error") or receipt["result"])

    def unhealthy(self, sub_id: str, now: float) -> bool:
        h = self._by_sub.get(sub_id)
        return bool(h and h.failing_since is not None and now - h.failing_since >= self.unhealthy_after_s)

    def unhealthy_count(self, now: float) -> int:
        return sum(1 for sid in self._by_sub if self.unhealthy(sid, now))

    def status(self, sub_id: str, active: bool, now: float) -> Status:
        """What the dashboard shows, by the same rule the delivery gate applies."""
        if not active:
            return "paused"
        if self.unhealthy(sub_id, now):
            return "unhealthy"
        h = self._by_sub.get(sub_id)
        return "failing" if h and h.consecutive_failures else "healthy"
