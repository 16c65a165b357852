"""Delivery health without the token (GET /api/v1/delivery-health, issue 20): counts per subscriber name and
department, each webhook once by its newest attempt; never an id, an endpoint, a host or an exception's text."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

from alerts.subscriptions import Subscription
from warning.web.console import public_delivery_health


def receipt(webhook: str, sub: str, attempt: int, result: str, t: str, error: str | None = None,
            error_class: str | None = None, status: int | None = None) -> dict[str, Any]:
    return {"webhook_id": webhook, "subscription_id": sub, "department": "water", "warning_id": "w1",
            "event_id": "e1", "type": "warning.alert", "attempt": attempt, "result": result, "status": status,
            "latency_s": 0.1, "error": error, "time": t, "error_class": error_class}


def test_counts_by_newest_attempt_and_nothing_about_the_receiver() -> None:
    subs = [Subscription(id="sub-aaaa", name="Dunhuang water bureau", department="water",
                         url="https://receiver.example.net:8443/hook?key=s3cret", secret="whsec_x", regions=[],
                         hazards=[]),
            Subscription(id="sub-bbbb", name="Jiuquan health", department="health",
                         url="http://10.0.0.7/hook", secret="whsec_y", regions=[], hazards=[])]
    recent = [
        receipt("h1", "sub-aaaa", 0, "retry", "2026-07-14T06:00:00Z", "ClientConnectorError: Cannot connect to "
                "host receiver.example.net:8443 ssl:default [Connect call failed]", "refused"),
        receipt("h1", "sub-aaaa", 1, "delivered", "2026-07-14T06:00:10Z", status=204),  # h1 delivered at last
        receipt("h2", "sub-aaaa", 0, "retry", "2026-07-14T06:01:00Z", "HTTP 503", "HTTP 503", 503),
        receipt("h3", "sub-aaaa", 0, "dead", "2026-07-14T05:00:00Z", "HTTP 404", "HTTP 404", 404),
        receipt("h4", "sub-bbbb", 0, "delivered", "2026-07-14T06:02:00Z", status=204),
    ]
    svc = SimpleNamespace(deliveries=SimpleNamespace(recent=recent), subscriptions=subs)
    rows = {r["name"]: r for r in public_delivery_health(svc)}  # type: ignore[arg-type]
    water = rows["Dunhuang water bureau"]
    assert (water["delivered"], water["retrying"], water["parked"]) == (1, 1, 1)
    assert water["last_result"] == "retry" and water["last_outcome"] == "HTTP 503"
    assert water["last_time"] == "2026-07-14T06:01:00Z"
    assert rows["Jiuquan health"]["delivered"] == 1 and rows["Jiuquan health"]["last_outcome"] == "delivered"
    body = orjson.dumps(public_delivery_health(svc)).decode()  # type: ignore[arg-type]
    for secret in ("receiver.example.net", "8443", "s3cret", "10.0.0.7", "hook", "sub-aaaa", "whsec", "Connect"):
        assert secret not in body, secret
    assert list(rows["Jiuquan health"]) == ["name", "department", "active", "delivered", "retrying", "parked",
                                            "last_result", "last_outcome", "last_time"]
    # the failing subscriber first: what an operator looks for
    assert public_delivery_health(svc)[0]["name"] == "Dunhuang water bureau"  # type: ignore[arg-type]
