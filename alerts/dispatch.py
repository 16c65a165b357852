"""The delivery stage: the ``deliver`` agent (``alerts.outbox``) and one ``redeliver-N`` agent per retry tier
(``alerts.retry.N``). Each attempt is a signed POST (``alerts.delivery``) whose outcome the retry policy
(``alerts.retry``) turns into a receipt, a retry in a later tier or a dead letter; a 410 pauses the
subscription. Whatever happens, the outcome is produced before the attempt returns, and faust flushes the
producer before committing the offset: nothing is lost on a crash, and a redelivered record carries the same
webhook-id."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from alerts import retry
from alerts.dead_letters import DeadLetters
from alerts.delivery import Outcome, deliver_webhook, new_session
from alerts.health import HealthTracker
from alerts.ledger import DeliveredLedger
from alerts.silences import SilenceBook
from alerts.ssrf import Network
from alerts.subscriptions import Subscription, SubscriptionBook, paused_subscription
from alerts.waiting import Waiting, WaitingRoom
from warning.shared import metrics
from warning.shared.bus import Topic, held_offsets, now_iso
from warning.shared.records import Delivery, Receipt, WarningEvent

log = logging.getLogger(__name__)

# (delivery, subscription) -> (body, content type): JSON envelope or CAP, chosen by the root.
RenderBody = Callable[[Delivery, Subscription], tuple[bytes, str]]
AckLink = Callable[[Delivery, Subscription], str]  # the delivery's ack_url (alerts.acks), also sent as a header
ACK_HEADER = "ews-ack-url"  # every delivery, CAP ones included (their body has no envelope to carry it)
HELD = "subscription paused"  # the reason of deliveries held while their subscription is paused (sent on resume)


def _due(value: bytes) -> tuple[str, str, float]:
    """(subscription id, webhook-id, not_before) of a retry record; ("", "", 0) when unreadable (the attempt
    dead-letters it)."""
    try:
        d = orjson.loads(value)
        not_before = float(d.get("not_before", 0))
        return (str(d.get("subscription_id", "")), str(d.get("webhook_id", "")),
                not_before if math.isfinite(not_before) else 0.0)
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return "", "", 0.0


class DeliveryStage:
    def __init__(self, *, subscriptions: SubscriptionBook, dead_letters: DeadLetters, retry_topics: Sequence[Topic],
                 receipts: Topic, policy: retry.RetryPolicy, health: HealthTracker, render: RenderBody,
                 on_receipt: Callable[[Receipt], None], allow_nets: Sequence[Network], timeout_s: float,
                 endpoint_concurrency: int, tier_concurrency: int = 4, waiting_max: int = 10_000,
                 retry_hold_s: float = 60.0, silences: SilenceBook | None = None,
                 ack_link: AckLink | None = None, delivered: DeliveredLedger | None = None) -> None:
        self.subscriptions, self.dead_letters, self.ack_link = subscriptions, dead_letters, ack_link
        self.silences = silences  # deliveries a silence holds are parked as held, sent when it ends
        self.retry_topics, self.receipts = retry_topics, receipts
        self.policy, self.health, self.render, self.on_receipt = policy, health, render, on_receipt
        self.allow_nets, self.timeout_s, self.endpoint_concurrency = allow_nets, timeout_s, endpoint_concurrency
        self._in_flight: dict[str, int] = {}  # subscription id -> attempts posting now
        self.rooms: dict[int, WaitingRoom] = {}  # retry tier -> its records not yet due
        self.tier_concurrency, self.waiting_max, self.retry_hold_s = tier_concurrency, waiting_max, retry_hold_s
        self._http: Any = None
        self.delivered = delivered if delivered is not None else DeliveredLedger()  # webhook-ids taken already

    # ---- agents ------------------------------------------------------------------------------------------
    async def deliver(self, stream: Any) -> None:
        async for value in stream:
            async with held_offsets(stream, [stream.current_event]):
                await self.attempt(value, first=True)

    def redeliver_agent(self, tier: int) -> Callable[[Any], Any]:
        async def redeliver(stream: Any) -> None:
            """One agent per retry tier. A record that is due is attempted here; one that is not waits in the
            tier's waiting room (``alerts.waiting``), so no slot is held by a delivery waiting for its time."""
            room = self.room(tier)
            async for value in stream:
                metrics.RETRY_QUEUE.dec()
                sub_id, webhook_id, not_before = _due(value)
                if not_before > time.time() and webhook_id not in self.delivered:  # (a delivered one: skipped now)
                    await room.admit(stream, stream.current_event, value, sub_id, not_before)
                    continue
                async with held_offsets(stream, [stream.current_event]):
                    await self.attempt(value, first=False)
        return redeliver

    def room(self, tier: int) -> WaitingRoom:
        room = self.rooms.get(tier)
        if room is None:
            async def requeue(w: Waiting) -> None:  # still not due after the hold: to the end of its tier
                metrics.RETRY_QUEUE.inc()
                await self.retry_topics[tier].send(key=w.sub_id.encode(), value=w.value)

            room = self.rooms[tier] = WaitingRoom(
                attempt=lambda value: self.attempt(value, first=False), requeue=requeue, released=self.released,
                concurrency=self.tier_concurrency, capacity=self.waiting_max, hold_s=self.retry_hold_s)
        return room

    def released(self, sub_id: str) -> bool:
        """A waiting delivery's subscription was deleted or paused: attempt it at once (it is parked or held)."""
        sub = self.subscriptions.get(sub_id)
        return sub is None or not sub.active

    def drop_waiting(self, tps: Any = None) -> int:
        """Revoked partitions (or all, on stop): their waiting records stay uncommitted for the next owner."""
        return sum(room.drop(tps) for room in self.rooms.values())

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
        if d.get("webhook_id") in self.delivered:
            # read again (a restart re-reads what was not committed) after the receiver took it: not sent twice
            metrics.ALREADY_DELIVERED.inc()
            log.debug("webhook %s was delivered already; not sent again", d.get("webhook_id"))
            return
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            await self.park(d, "subscription deleted", None)
            return
        if not sub.active:
            await self.park(d, f"{HELD} ({sub.paused_reason or 'by operator'}): held until it is resumed", sub)
            return
        silence = self.silences.holding(sub.id, event, datetime.now(UTC)) if self.silences is not None else None
        if silence is not None:
            metrics.DELIVERIES_SILENCED.labels(sub.department).inc()
            await self.park(d, silence.held_reason(), sub, held=True)
            return
        now = time.time()
        gate = retry.before_attempt(self.policy, first=first, endpoint_unhealthy=self.health.unhealthy(sub.id, now),
                                    attempt=int(d.get("attempt", 1)), now=now, jitter=random.random())
        if gate is not None:
            d["last_error"] = gate.reason
            await self.schedule_retry(d, sub.id, gate)  # not dropped: the retry attempt probes the endpoint
            return
        if self._in_flight.get(sub.id, 0) >= self.endpoint_limit(sub.id):
            # per-endpoint concurrency limit: a delivery to a busy endpoint goes (back) to a retry tier rather
            # than hold an agent slot, so a slow endpoint never holds up the others (measured: waiting for the
            # slot in the retry agents stalled them after a crash-restart; docs/ARCHITECTURE.md "Decisions").
            tier, not_before = retry.busy_retry_at(self.policy, now, random.random())
            await self.schedule_retry(d, sub.id, retry.Decision("retry", "endpoint busy", tier, not_before))
            return
        self._in_flight[sub.id] = self._in_flight.get(sub.id, 0) + 1
        try:
            await self.post(d, sub, event)
        finally:
            self._in_flight[sub.id] -= 1

    def endpoint_limit(self, sub_id: str) -> int:
        """Attempts one endpoint may have posting at once: the configured concurrency, or one while its last attempt
        failed, so a slow or broken receiver (a body dripping until the timeout, a reply that never ends) holds one
        of the ``deliver`` agent's slots, not several (measured in chaos ``neighbours``)."""
        return 1 if self.health.get(sub_id).consecutive_failures else self.endpoint_concurrency

    async def post(self, d: Delivery, sub: Subscription, event: WarningEvent) -> None:
        d["attempt"] = int(d.get("attempt", 0)) + 1
        first_attempt_at = d["first_attempt_at"] = d.get("first_attempt_at") or time.time()
        body, ctype = self.render(d, sub)
        extra = {ACK_HEADER: self.ack_link(d, sub)} if self.ack_link is not None else None
        outcome = await deliver_webhook(self._session(), sub.url, sub.signing_secrets(time.time()), d["webhook_id"],
                                        body, self.allow_nets, content_type=ctype, extra_headers=extra)
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
        why = next((flag for flag in ("escalation", "reminder", "backfill") if d.get(flag)), None)
        if why is not None:
            receipt["why"] = why
        await self.receipts.send(key=sub.id.encode(), value=orjson.dumps(receipt))
        self.on_receipt(receipt)
        self.delivered.observe(receipt)
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

    async def park(self, d: Delivery, error: str, sub: Subscription | None, held: bool = False) -> None:
        """Park ``d`` in alerts.dead with ``error``; ``held`` (a silence's hold, planned) is not counted dead."""
        log.log(logging.INFO if held else logging.WARNING, "webhook parked in alerts.dead: %s", error,
                extra={"webhook_id": d.get("webhook_id"), "subscription_id": d.get("subscription_id")})
        d["last_error"] = error
        d["parked_at"] = now_iso()
        department = sub.department if sub else "unknown"
        if not held:
            metrics.DEAD_LETTERS.labels(department).inc()
            metrics.DELIVERIES.labels("dead", department).inc()
        await self.dead_letters.park(d, str(d.get("subscription_id", "?")))

    def _session(self) -> Any:
        if self._http is None or self._http.closed:
            self._http = new_session(self.allow_nets, self.timeout_s)
        return self._http

    async def close(self) -> None:
        for room in self.rooms.values():
            await room.close()
        if self._http is not None:
            await self._http.close()
