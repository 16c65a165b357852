"""The delivery stage: the ``deliver`` agent (``alerts.outbox``) and one ``redeliver-N`` agent per retry tier
(``alerts.retry.N``). Each attempt is a signed POST (``alerts.delivery``) whose outcome the retry policy
(``alerts.retry``) turns into a receipt, a retry in a later tier or a dead letter; a 410 pauses the
subscription. Whatever happens, the outcome is produced before the attempt returns, and faust flushes the
producer before committing the offset: nothing is lost on a crash, and a redelivered record carries the same
webhook-id."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from alerts import retry
from alerts.dead_letters import DeadLetters
from alerts.delivery import Outcome, deliver_webhook, new_session
from alerts.health import HealthTracker
from alerts.ssrf import Network
from alerts.subscriptions import Subscription, SubscriptionBook, paused_subscription
from warning.shared import metrics
from warning.shared.bus import Topic, held_offsets, now_iso
from warning.shared.records import Delivery, Receipt, WarningEvent

log = logging.getLogger(__name__)

# (delivery, subscription) -> (body, content type): JSON envelope or CAP, chosen by the root.
RenderBody = Callable[[Delivery, Subscription], tuple[bytes, str]]
HELD = "subscription paused"  # the reason of deliveries held while their subscription is paused (sent on resume)


class DeliveryStage:
    def __init__(self, *, subscriptions: SubscriptionBook, dead_letters: DeadLetters, retry_topics: Sequence[Topic],
                 receipts: Topic, policy: retry.RetryPolicy, health: HealthTracker, render: RenderBody,
                 on_receipt: Callable[[Receipt], None], allow_nets: Sequence[Network], timeout_s: float,
                 endpoint_concurrency: int) -> None:
        self.subscriptions, self.dead_letters = subscriptions, dead_letters
        self.retry_topics, self.receipts = retry_topics, receipts
        self.policy, self.health, self.render, self.on_receipt = policy, health, render, on_receipt
        self.allow_nets, self.timeout_s, self.endpoint_concurrency = allow_nets, timeout_s, endpoint_concurrency
        self._endpoint_slots: dict[str, asyncio.Semaphore] = {}
        self._http: Any = None

    # ---- agents ------------------------------------------------------------------------------------------
    async def deliver(self, stream: Any) -> None:
        async for value in stream:
            async with held_offsets(stream, [stream.current_event]):
                await self.attempt(value, first=True)

    def redeliver_agent(self, tier: int) -> Callable[[Any], Any]:
        async def redeliver(stream: Any) -> None:
            """One agent per retry tier. A tier has one delay, so its records are (nearly) in due order and
            sleeping until the head is due never holds back a record due earlier in the same tier."""
            async for value in stream:
                async with held_offsets(stream, [stream.current_event]):
                    metrics.RETRY_QUEUE.dec()
                    try:
                        not_before = float(orjson.loads(value).get("not_before", 0))
                    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                        not_before = 0.0
                    delay = not_before - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await self.attempt(value, first=False)
        return redeliver

    # ---- one attempt -------------------------------------------------------------------------------------
    async def attempt(self, value: bytes, first: bool) -> None:
        """One delivery attempt of an outbox or retry record."""
        try:
            d: Delivery = orjson.loads(value)
            sub_id = d["subscription_id"]
            event = d["event"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            await self.dead_letters.dead.send(key=b"?", value=orjson.dumps(
                {"error": f"malformed delivery: {exc}", "raw": value[:65536].decode("utf-8", "replace")}))
            return
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            await self.park(d, "subscription deleted", None)
            return
        if not sub.active:
            await self.park(d, f"{HELD} ({sub.paused_reason or 'by operator'}): held until it is resumed", sub)
            return
        now = time.time()
        gate = retry.before_attempt(self.policy, first=first, endpoint_unhealthy=self.health.unhealthy(sub.id, now),
                                    attempt=int(d.get("attempt", 1)), now=now, jitter=random.random())
        if gate is not None:
            d["last_error"] = gate.reason
            await self.schedule_retry(d, sub.id, gate)  # not dropped: the retry attempt probes the endpoint
            return
        slot = self._endpoint_slot(sub.id)
        if slot.locked():
            # per-endpoint concurrency limit: a delivery to a busy endpoint goes (back) to a retry tier rather
            # than hold an agent slot, so a slow endpoint never holds up the others (measured: waiting for the
            # slot in the retry agents stalled them after a crash-restart; docs/ARCHITECTURE.md "Decisions").
            tier, not_before = retry.retry_at(self.policy, int(d.get("attempt", 1)), None, now, random.random())
            await self.schedule_retry(d, sub.id, retry.Decision("retry", "endpoint busy", tier, not_before))
            return
        async with slot:
            await self.post(d, sub, event)

    async def post(self, d: Delivery, sub: Subscription, event: WarningEvent) -> None:
        d["attempt"] = int(d.get("attempt", 0)) + 1
        first_attempt_at = d["first_attempt_at"] = d.get("first_attempt_at") or time.time()
        body, ctype = self.render(d, sub)
        outcome = await deliver_webhook(self._session(), sub.url, sub.signing_secrets(time.time()), d["webhook_id"],
                                        body, self.allow_nets, content_type=ctype)
        now = time.time()
        await self._record(d, sub, event, outcome, now)
        decision = retry.after_attempt(self.policy, outcome, attempt=d["attempt"],
                                       first_attempt_at=first_attempt_at, now=now,
                                       expires=event.get("expires", ""), jitter=random.random())
        if decision.action == "done":
            return
        if decision.action == "retry":
            d["last_error"] = outcome.error
            await self.schedule_retry(d, sub.id, decision)
            return
        if decision.action == "pause":  # 410: the receiver says stop; pause, keep the delivery
            await self.subscriptions.put(paused_subscription(sub, False, "HTTP 410 Gone from the endpoint"), sub.id)
        await self.park(d, decision.reason, sub)

    async def _record(self, d: Delivery, sub: Subscription, event: WarningEvent, outcome: Outcome,
                      now: float) -> None:
        """The attempt's receipt (topic and local view), log line, metrics and endpoint health."""
        receipt: Receipt = {
            "webhook_id": d["webhook_id"], "subscription_id": sub.id, "department": sub.department,
            "warning_id": event.get("warning_id"), "event_id": event.get("id"), "type": d["type"],
            "attempt": d["attempt"], "result": outcome.result, "status": outcome.status,
            "latency_s": round(outcome.latency_s, 4), "error": outcome.error, "time": now_iso(),
            "error_class": outcome.error_class}
        await self.receipts.send(key=sub.id.encode(), value=orjson.dumps(receipt))
        self.on_receipt(receipt)
        log.info("webhook %s (%s, attempt %d)", outcome.result, outcome.status or outcome.error, d["attempt"],
                 extra={"webhook_id": d["webhook_id"], "subscription_id": sub.id, "warning_id": event.get("warning_id"),
                        "event_id": event.get("id"), "result": outcome.result, "status": outcome.status,
                        "attempt": d["attempt"]})
        metrics.ATTEMPTS.labels(outcome.result).inc()
        self.health.observe(receipt)
        if outcome.result == "delivered":
            metrics.DELIVERIES.labels("delivered", sub.department).inc()
            if event.get("emitted_at"):
                metrics.DELIVERY_LATENCY.observe(max(0.0, now - float(event["emitted_at"])))
        metrics.UNHEALTHY.set(self.health.unhealthy_count(now))

    async def schedule_retry(self, d: Delivery, sub_id: str, decision: retry.Decision) -> None:
        tier = decision.tier or 0
        d["not_before"] = decision.not_before if decision.not_before is not None else time.time()
        metrics.RETRY_SCHEDULED.labels(str(tier)).inc()
        metrics.RETRY_QUEUE.inc()
        await self.retry_topics[tier].send(key=sub_id.encode(), value=orjson.dumps(d))

    async def park(self, d: Delivery, error: str, sub: Subscription | None) -> None:
        log.warning("webhook parked in alerts.dead: %s", error,
                    extra={"webhook_id": d.get("webhook_id"), "subscription_id": d.get("subscription_id")})
        d["last_error"] = error
        d["parked_at"] = now_iso()
        department = sub.department if sub else "unknown"
        metrics.DEAD_LETTERS.labels(department).inc()
        metrics.DELIVERIES.labels("dead", department).inc()
        await self.dead_letters.park(d, str(d.get("subscription_id", "?")))

    def _endpoint_slot(self, sub_id: str) -> asyncio.Semaphore:
        sem = self._endpoint_slots.get(sub_id)
        if sem is None:
            sem = self._endpoint_slots[sub_id] = asyncio.Semaphore(self.endpoint_concurrency)
        return sem

    def _session(self) -> Any:
        if self._http is None or self._http.closed:
            self._http = new_session(self.allow_nets, self.timeout_s)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
