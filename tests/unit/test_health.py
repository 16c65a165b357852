"""One definition of endpoint health, fed by receipts: what the delivery gate stops on is what the dashboard shows."""

from __future__ import annotations

from alerts.health import HealthTracker
from warning.shared.records import Receipt


def _receipt(attempt: int, result: str, time: str, webhook_id: str = "msg_1") -> Receipt:
    return {"webhook_id": webhook_id, "subscription_id": "s1", "department": "water", "warning_id": "w",
            "event_id": "e", "type": "warning.alert", "attempt": attempt, "result": result, "status": 503,
            "latency_s": 0.1, "error": "HTTP 503", "time": time}


T0 = 1_784_000_000.0  # 2026-07-14T03:33:20Z


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_failing_then_unhealthy_after_the_configured_time_then_healthy_on_success() -> None:
    h = HealthTracker(unhealthy_after_s=300)
    assert h.status("s1", True, T0) == "healthy"
    h.observe(_receipt(1, "retry", _iso(T0)))
    assert h.status("s1", True, T0 + 10) == "failing" and not h.unhealthy("s1", T0 + 10)
    h.observe(_receipt(2, "retry", _iso(T0 + 100)))
    assert h.status("s1", True, T0 + 300) == "unhealthy" and h.unhealthy("s1", T0 + 300)  # the gate's rule
    assert h.status("s1", False, T0 + 300) == "paused"
    h.observe(_receipt(3, "delivered", _iso(T0 + 400)))
    assert h.status("s1", True, T0 + 400) == "healthy" and h.unhealthy_count(T0 + 400) == 0


def test_a_receipt_seen_twice_counts_once() -> None:
    """Own receipts are applied at once and again when the receipts mirror reads them back."""
    h = HealthTracker(unhealthy_after_s=300)
    r = _receipt(1, "retry", _iso(T0))
    h.observe(r)
    h.observe(r)
    assert h.get("s1").consecutive_failures == 1


def test_a_failing_endpoint_may_hold_one_delivery_slot_a_healthy_one_its_concurrency() -> None:
    from typing import Any

    from alerts.dispatch import DeliveryStage

    none: Any = None
    h = HealthTracker(unhealthy_after_s=300)
    stage = DeliveryStage(subscriptions=none, dead_letters=none, retry_topics=[], receipts=none, policy=none,
                          health=h, render=none, on_receipt=lambda r: None, allow_nets=[], timeout_s=5,
                          endpoint_concurrency=4)
    assert stage.endpoint_limit("a") == 4
    h.failure("a", 101.0, "timeout")
    assert stage.endpoint_limit("a") == 1 and stage.endpoint_limit("b") == 4
    h.success("a", 102.0)
    assert stage.endpoint_limit("a") == 4
