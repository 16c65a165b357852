"""The delivered ledger: a delivery record read again after its receiver took it (a restart re-reads what it had
not committed) is not posted a second time; anything not taken is attempted as before."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from alerts.dispatch import DeliveryStage
from alerts.ledger import DeliveredLedger


def receipt(webhook_id: str, result: str) -> Any:
    return {"webhook_id": webhook_id, "subscription_id": "s1", "result": result}


def test_only_delivered_receipts_count_and_the_oldest_go_first() -> None:
    ledger = DeliveredLedger(capacity=2)
    for webhook_id, result in (("msg_a", "delivered"), ("msg_b", "retry"), ("msg_c", "dead"), ("msg_d", "delivered")):
        ledger.observe(receipt(webhook_id, result))
    assert "msg_a" in ledger and "msg_d" in ledger
    assert "msg_b" not in ledger and "msg_c" not in ledger
    ledger.observe(receipt("msg_e", "delivered"))
    assert len(ledger) == 2 and "msg_a" not in ledger and "msg_e" in ledger


class NoSubscriptions:
    """Reached only by a delivery that is attempted."""

    def get(self, sub_id: str) -> Any:
        raise LookupError(f"attempted: {sub_id}")


def stage(ledger: DeliveredLedger) -> DeliveryStage:
    none: Any = None
    return DeliveryStage(subscriptions=NoSubscriptions(), dead_letters=none, retry_topics=[],  # type: ignore[arg-type]
                         receipts=none, policy=none, health=none, render=none, on_receipt=lambda r: None,
                         allow_nets=[], timeout_s=1, endpoint_concurrency=1, delivered=ledger)


def delivery(webhook_id: str) -> bytes:
    return orjson.dumps({"webhook_id": webhook_id, "subscription_id": "s1", "type": "warning.alert",
                         "event": {"id": "e1"}, "attempt": 1})


def test_a_delivery_its_receiver_took_is_not_attempted_again_and_is_counted() -> None:
    ledger = DeliveredLedger()
    ledger.observe(receipt("msg_taken", "delivered"))
    ledger.observe(receipt("msg_failed", "retry"))
    s = stage(ledger)
    before = REGISTRY.get_sample_value("ews_deliveries_already_delivered_total") or 0.0
    asyncio.run(s.attempt(delivery("msg_taken"), first=False))  # returns before looking up the subscription
    assert (REGISTRY.get_sample_value("ews_deliveries_already_delivered_total") or 0.0) - before == 1
    with pytest.raises(LookupError, match="attempted: s1"):
        asyncio.run(s.attempt(delivery("msg_failed"), first=False))
