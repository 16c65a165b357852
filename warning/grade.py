"""The grading stage: the ``grade`` agent folds each region's signals through its warning lifecycle
(``warning.grading``), sends the warning events to ``warnings`` and hands each county event to the router as it
is made; the ``tick`` timer lets expiry and hysteresis run on time; operator cancels enter as signals, so the
grade agent stays the only writer of ``region_state``."""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from typing import Any, Protocol, cast

import orjson

from warning import grading, review
from warning.drafts import DraftSink
from warning.rules import Rules
from warning.shared import metrics, topics
from warning.shared.bus import DataClock, Produce, SignalSink, held_offsets, key_event
from warning.shared.records import (
    ACTUAL,
    Signal,
    WarningEvent,
    chain_key,
    parse_chain_key,
    status_of,
    warning_headers,
)
from warning.shared.times import iso_utc, now_iso, parse_utc

log = logging.getLogger(__name__)

GRADE_TAKE = 32  # signals messages the grade agent folds together (one region_state write per key per take)
GRADE_WITHIN_S = 0.02  # ... or what arrived within this long: the most a signal waits for company


class RollUp(Protocol):
    def rollup(self, event: Any, at: str, accepted_at: float | None = None) -> Any: ...


class Router(Protocol):
    """``alerts.routing.Router``: a made event's deliveries, and the backfill of one subscription."""

    async def route(self, event: WarningEvent) -> None: ...

    async def backfill(self, event: WarningEvent, sub_id: str) -> bool: ...


class Escalation(Protocol):
    """``warning.escalation.AckEscalation``: after a fold, remind and escalate what is not acknowledged in time."""

    async def review(self, key: str, state: dict[str, Any] | None) -> None: ...


class GradeStage:
    def __init__(self, *, rules: Rules, rollups: RollUp, region_state: MutableMapping[str, Any],
                 signals: SignalSink, produce: Produce, warnings_topic: str, router: Router,
                 clock: DataClock, drafts: DraftSink | None = None,
                 escalation: Escalation | None = None) -> None:
        self.rules, self.rollups, self.region_state = rules, rollups, region_state
        # warnings.drafts: the desk's drafts and decisions, MACed with the signals' key ring
        self.drafts = drafts or DraftSink(produce, topics.DRAFTS, signals.sealer)
        self.signals, self.produce, self.warnings_topic = signals, produce, warnings_topic
        self.router, self.clock, self.escalation = router, clock, escalation

    async def grade(self, stream: Any) -> None:
        """Signals messages are taken GRADE_TAKE at a time (or what came within GRADE_WITHIN_S) and folded per
        region and hazard, in order, with one region_state write per key per take: under load that is ~5x fewer
        changelog records than one write per key per message. Events are acked after the whole take."""
        async for events in stream.take_events(GRADE_TAKE, within=GRADE_WITHIN_S):
            async with held_offsets(stream, events):
                await self._grade_take(events)

    async def _grade_take(self, events: list[Any]) -> None:
        by_key, taken = self._by_key(events)
        rollups: list[Signal] = []
        folded: list[tuple[str, Any, dict[str, Any]]] = []
        for key, (sigs, event) in by_key.items():
            with key_event(event):  # the receivers table, written while routing, goes to the key's partition
                state, ups = await self.grade_key(key, sigs)
            rollups.extend(ups)
            if state is not None:
                folded.append((key, event, state))
        await self.signals.send(rollups)  # prefectures' roll-ups of the take's county events, through their keys
        # The states last: a worker killed before its offsets are committed folds these signals again; had a new
        # state reached the changelog before the events, deliveries and roll-ups it made, that second fold would
        # make none of them.
        for key, event, state in folded:
            with key_event(event):
                self.region_state[key] = state
        metrics.SIGNALS.labels("graded").inc(taken)  # folded (or dropped as malformed)

    def _by_key(self, events: list[Any]) -> tuple[dict[str, tuple[list[Signal], Any]], int]:
        """The take's signals by region:hazard (in order), each with the faust event it came in; messages
        without the service's MAC (forged: an operator cancel written straight to the topic), malformed messages
        and signals are logged and dropped."""
        by_key: dict[str, tuple[list[Signal], Any]] = {}
        taken = 0
        for event in events:
            why = self.signals.refused(event)
            if why is not None:
                log.warning("grade: refusing a signals message without a valid MAC (%s) at partition %s offset %s",
                            why, event.message.partition, event.message.offset)
                continue
            try:
                msg = orjson.loads(event.value)
                signals = msg["signals"] if isinstance(msg, dict) and "signals" in msg else [msg]
                if not isinstance(signals, list):
                    raise TypeError("signals is not a list")
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                log.warning("grade: dropping malformed signal message: %s", exc)
                continue
            taken += len(signals)
            for sig in signals:
                try:  # exercise and test signals fold into chains of their own
                    key = chain_key(sig["region_code"], sig["hazard"], status_of(sig))
                except (KeyError, TypeError, AttributeError) as exc:
                    log.warning("grade: dropping malformed signal: %s", exc)
                    continue
                sigs, _ = by_key.get(key) or ([], None)
                sigs.append(sig)
                by_key[key] = (sigs, event)  # a key's signals all come from its one partition
        return by_key, taken

    async def grade_key(self, key: str, signals: list[Signal]) -> tuple[dict[str, Any] | None, list[Signal]]:
        """Fold one region's signals, in order; send its warning events and their deliveries. Returns the new state
        (None if unchanged), for the caller to store once the take's sends are out, and the prefecture roll-ups.
        County events pass the forecasters' desk (``warning.review``) first: at a level the rules put under
        review they become drafts, sent only once approved (desk decisions arrive as ``review`` signals)."""
        _, hazard, status = parse_chain_key(key)
        rule = self.rules.get(hazard)
        if rule is None:
            log.warning("grade: dropping signals for unknown hazard %r", hazard[:40])
            return None, []
        if status == ACTUAL:
            signals = self._within_horizon(signals, rule)
        first = self.region_state.get(key)
        aside = [s for s in signals if s.get("kind") in ("backfill", "review")]
        if aside:
            signals = [s for s in signals if s.get("kind") not in ("backfill", "review")]
        desk = _Desk(self, key, first)
        for sig in aside:
            if sig.get("kind") == "review":
                first = desk.decide(first, sig)
        state, events = self._fold(first, signals, rule)
        for event, at, accepted_at in events:
            desk.gate(event, at, accepted_at)
        if any(s.get("kind") == "tick" for s in signals):
            desk.issue_unhandled()
        for event, _, _ in desk.publish:
            await self._emit(key, event)
        for record in desk.records:
            await self.drafts.write(record)
        rollups = [r for event, at, accepted_at in desk.publish
                   if (r := self.rollups.rollup(event, at, accepted_at)) is not None]
        for sig in aside:
            if sig.get("kind") == "backfill":
                await self._backfill(state, sig, desk.review)
        # every fold, ticks included (a deadline passes without new reports); while a draft waits at the desk the
        # chain's current event is not what receivers hold, so its deadline waits for the decision
        if self.escalation is not None and not (desk.review or {}).get("draft"):
            await self.escalation.review(key, state)
        if state is first and not desk.changed:
            return None, []
        if desk.review is not None:
            state = {**(state or {}), "review": desk.review}
        return state, rollups

    @staticmethod
    def _within_horizon(signals: list[Signal], rule: Any) -> list[Signal]:
        """The actual chain's signals without the station reports older than the hazard's staleness horizon
        (against the wall clock when they were accepted): those updated their station's state, but a backfilled
        or replayed old report must not by itself issue, upgrade or extend a live warning."""
        now = time.time()
        kept = [s for s in signals if s.get("kind", "station") not in ("station", "grid")
                or not grading.past_horizon(cast(dict[str, Any], s), rule, float(s.get("accepted_at", now)))]
        if len(kept) < len(signals):
            metrics.PAST_HORIZON.labels(rule.hazard).inc(len(signals) - len(kept))
        return kept

    async def _backfill(self, state: dict[str, Any] | None, sig: Signal, desk: dict[str, Any] | None) -> None:
        """Send the region's live warning to a new (or resumed) subscription when the event the API saw is still
        the warning's latest (the latest published, where a newer event waits at the desk as a draft); a later
        event was made after the subscription existed and was routed to it. An exercise or test chain runs on its
        own data clock (the time its state was brought to)."""
        event, current = sig["event"], (state or {}).get("warning")
        now = self.clock.now() if status_of(event) == ACTUAL else (state or {}).get("t", "")
        desk = desk or {}
        published = (desk.get("published") or []) if desk.get("warning_id") == event["warning_id"] else []
        latest = current and current["warning_id"] == event["warning_id"] and (
            current["seq"] == event["seq"] or (published and published[-1] == event["id"]))
        if latest and event["expires"] > now:
            await self.router.backfill(event, sig["subscription_id"])

    async def request_backfill(self, events: list[WarningEvent], sub_id: str) -> None:
        """Ask the grade agent (the regions' only writer) to backfill ``events`` to subscription ``sub_id``."""
        now = self.clock.now()
        signals: list[Signal] = []
        for e in events:
            sig: Signal = {"kind": "backfill", "region_code": e["region_code"], "hazard": e["hazard"], "time": now,
                           "subscription_id": sub_id, "event": e}
            signals.append(_with_status(sig, status_of(e)))
        await self.signals.send(signals)

    @staticmethod
    def _fold(first: dict[str, Any] | None, signals: list[Signal], rule: Any
              ) -> tuple[Any, list[tuple[WarningEvent, str, float | None]]]:
        """The region's state after ``signals`` and the events made on the way, each with the data time it was
        made at and when its report was accepted (operator cancels suppress by that)."""
        state = first
        events: list[tuple[WarningEvent, str, float | None]] = []
        for sig in signals:
            prev = state
            if sig.get("kind") == "tick":
                if prev is None:
                    continue
                # a region's clock runs on from its own latest report at real speed, so a tick taken from the
                # global clock during a fast replay cannot jump it past reports still on their way
                seen = prev.get("seen")
                if seen:
                    own_t = parse_utc(seen[0]).timestamp() + (time.time() - seen[1])
                    sig["time"] = min(sig["time"], iso_utc(own_t))
            state, caught = grading.catch_up(prev, sig["time"], rule)
            state, own = grading.apply_signal(state, cast(dict[str, Any], sig), rule)
            kind = sig.get("kind", "station")
            if kind in ("station", "county", "grid"):
                state["seen"] = [max(sig["time"], (prev or {}).get("seen", [""])[0]), time.time()]
            elif prev and "seen" in prev:
                state["seen"] = prev["seen"]
            events.extend((cast(WarningEvent, e), at, None) for e, at in caught)
            if own is not None:
                if kind == "operator_cancel":  # the audit log: which named operator withdrew it, and when
                    own["review"] = {"decision": "operator_cancel", "by": sig.get("operator", "operator"),
                                     "at": iso_utc(sig.get("accepted_at", time.time()))}
                events.append((cast(WarningEvent, own), sig["time"], sig.get("accepted_at")))
                if kind in ("station", "grid") and "accepted_at" in sig:
                    metrics.PROCESSING_LATENCY.observe(max(0.0, time.time() - sig["accepted_at"]))
        return state, events

    async def _emit(self, key: str, event: WarningEvent) -> None:
        status = status_of(event)
        metrics.WARNING_EVENTS.labels(event["hazard"], event["level"], event["msg_type"], status).inc()
        event["emitted_at"] = time.time()
        await self.produce(self.warnings_topic, key.encode(), orjson.dumps(event), None, warning_headers(event))
        if status == ACTUAL and event["msg_type"] != "cancel" and event["expires"] <= now_iso():
            # a live alert or update that has already expired informs nobody (its cancel still goes to receivers)
            metrics.EXPIRED_NOT_SENT.labels(event["hazard"]).inc()
            log.info("warning %s %s not routed: expired %s", event["msg_type"], event["region_code"],
                     event["expires"], extra={"warning_id": event["warning_id"], "event_id": event["id"]})
            return
        await self.router.route(event)
        log.info("warning %s %s %s %s", event["msg_type"], event["hazard"], event["level"], event["region_code"],
                 extra={"warning_id": event["warning_id"], "hazard": event["hazard"],
                        "warning_level": event["level"], "region_code": event["region_code"],
                        "event_id": event["id"]})  # not "level": the JSON line's level is the log level

    async def tick(self) -> None:
        """Expiry and hysteresis run on time, not only on new reports: tick every region with a live warning or
        a pending change (through the signals topic, so the grade agent stays the only writer of its table)."""
        try:
            t = self.clock.now()
            ticks: list[Signal] = []
            for key, state in list(self.region_state.items()):
                if not state or not (state.get("warning") or state.get("pending")
                                     or (state.get("review") or {}).get("draft")):
                    continue  # (a pending draft is ticked too: the policy may issue it unhandled)
                region_code, hazard, status = parse_chain_key(key)
                ticks.append(_with_status({"kind": "tick", "region_code": region_code, "hazard": hazard,
                                           "time": t}, status))
            for sig in ticks:
                await self.signals.send_one(sig)
        except Exception:  # a timer that raises would stop the app: log and try again next tick
            log.exception("tick failed")

    async def operator_cancel(self, last: WarningEvent, operator: str = "operator") -> None:
        """Cancel the warning whose latest event is ``last`` (the API finds it in its view), by ``operator``."""
        sig = _with_status({"kind": "operator_cancel", "region_code": last["region_code"], "hazard": last["hazard"],
                            "time": self.clock.now(), "accepted_at": time.time(), "operator": operator},
                           status_of(last))
        await self.signals.send_one(sig)

    async def review_decision(self, draft: dict[str, Any], action: str, operator: str,
                              edits: dict[str, Any] | None = None, reason: str | None = None) -> None:
        """An operator's decision on a draft, through ``signals`` (MACed: nobody on the broker can approve one)
        to the grade agent, the chain's only writer."""
        region_code, hazard, status = parse_chain_key(draft["chain_key"])
        sig: Signal = {"kind": "review", "region_code": region_code, "hazard": hazard, "time": self.clock.now(),
                       "draft_id": draft["id"], "action": action, "operator": operator, "at": now_iso()}
        if edits:
            sig["edits"] = edits
        if reason:
            sig["reason"] = reason
        await self.signals.send_one(_with_status(sig, status))


class _Desk:
    """One key's pass through the forecasters' desk within a take: the review state (``warning.review``), the
    events to publish (each with its data time and accepted-at) and the draft records to write."""

    def __init__(self, stage: GradeStage, key: str, first: dict[str, Any] | None) -> None:
        self.stage, self.key = stage, key
        self.review: dict[str, Any] | None = (first or {}).get("review")
        self.publish: list[tuple[WarningEvent, str, float | None]] = []
        self.records: list[dict[str, Any]] = []
        self.changed = False

    def _take(self, outcome: review.Outcome, at: str) -> None:
        new, publish, records = outcome
        self.changed = self.changed or new != self.review or bool(records)
        self.review = new
        self.publish.extend((cast(WarningEvent, e), at, None) for e in publish)
        self.records.extend(records)
        for r in records:
            if r["state"] == review.PENDING:
                metrics.DRAFTS_MADE.labels(r["hazard"], r["level"]).inc()
            else:
                metrics.DRAFT_DECISIONS.labels(r["state"]).inc()
                log.info("draft %s %s by %s", r["id"], r["state"], r["decision"]["by"],
                         extra={"warning_id": r["warning_id"], "event_id": r["id"]})

    def gate(self, event: WarningEvent, at: str, accepted_at: float | None) -> None:
        if event.get("region_level", "county") != "county":  # roll-ups come from published county events only
            self.publish.append((event, at, accepted_at))
            return
        self._take(review.gate(self.review, cast(dict[str, Any], event), self.stage.rules.issue_policy,
                               chain_key=self.key, at=at, now=time.time()), at)

    def decide(self, first: dict[str, Any] | None, sig: Signal) -> dict[str, Any] | None:
        """An operator's decision; an approved expiry also becomes the lifecycle's (it extends from what
        receivers were told). Returns the state to fold on."""
        draft = (self.review or {}).get("draft") or {}
        outcome, why = review.decide(self.review, sig.get("draft_id", ""), sig.get("action", ""),
                                     by=sig.get("operator", "operator"), at=sig.get("at") or now_iso(),
                                     edits=sig.get("edits"), reason=sig.get("reason"))
        if why is not None:
            log.warning("draft %s: %s not applied: %s", str(sig.get("draft_id"))[:40], sig.get("action"), why)
            return first
        self._take(outcome, draft.get("made_at_data") or sig["time"])
        current = (first or {}).get("warning")
        for event in outcome[1]:
            if current and current["id"] == event["id"] and current["expires"] != event["expires"]:
                first = {**cast(dict[str, Any], first), "warning": {**current, "expires": event["expires"]}}
        return first

    def issue_unhandled(self) -> None:
        """The policy's timeout ([review] issue_unhandled_after_min > 0): a draft nobody handled is issued."""
        draft = (self.review or {}).get("draft")
        minutes = self.stage.rules.review.issue_unhandled_after_min
        if draft and review.overdue(draft, time.time(), minutes):
            outcome, why = review.decide(self.review, draft["id"], "issue_unreviewed", by=review.POLICY,
                                         at=now_iso(), reason=f"not handled within {minutes:g} min")
            if why is None:
                self._take(outcome, draft.get("made_at_data") or now_iso())


def _with_status(sig: Signal, status: str) -> Signal:
    """``sig`` of a chain of ``status``: actual signals carry none (the signals every reader knows)."""
    if status != ACTUAL:
        sig["status"] = status
    return sig
