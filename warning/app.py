"""The faust-streaming app: topics, tables and agents wiring. Logic lives in plain functions
(``warning.grading``, ``alerts.routing``, ``alerts.delivery``); agents only move records between topics.

Agents: ``observations`` (obs batches -> per-partition station state -> station signals), ``grade`` (signals ->
region lifecycle -> warnings), ``route`` (warnings x subscriptions -> alerts.outbox), ``deliver`` (outbox ->
signed HTTP -> receipts / retry / dead) and ``redeliver`` (retry topic, after its not-before time).
"""

from __future__ import annotations

import asyncio
import logging
import random
import reprlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import orjson

from alerts.delivery import deliver_webhook, new_session, webhook_body
from alerts.health import HealthTracker
from alerts.routing import route
from alerts.subscriptions import Subscription, SubscriptionStore, paused_subscription
from ingest.qc import QualityControl
from ingest.qc import load_models as _load_models
from ingest.validate import ObservationError, validate_observation
from warning import grading, metrics, quantities, topics
from warning.cap import render_cap
from warning.config import Settings
from warning.mirror import TopicMirror
from warning.pipeline import StationGrader
from warning.records import WarningLevel
from warning.regions import RegionTree, StationRegistry
from warning.rules import Rules
from warning.shapes import region_polygon
from warning.topics import partition_for

log = logging.getLogger(__name__)

TICK_INTERVAL_S = 30.0


def safe_dump(value: Any, limit: int = 65536) -> bytes:
    """Bytes of any decoded record for a dead letter: JSON when orjson can (it refuses > 254 levels of nesting
    and odd types), else a truncated repr; never raises."""
    try:
        return orjson.dumps(value, default=str)[:limit]
    except (TypeError, ValueError, RecursionError, OverflowError):
        shortened = reprlib.Repr()
        shortened.maxlevel, shortened.maxlist, shortened.maxdict, shortened.maxstring = 40, 200, 200, 4000
        return shortened.repr(value)[:limit].encode("utf-8", "replace")


def load_qc_models(directory: Path) -> dict[str, Any]:
    """Per-station anomaly models fitted offline (saved with the climatology); none is fine: the range, step,
    persistence and consistency checks run without them."""
    if not directory.is_dir():
        return {}
    try:
        return dict(_load_models(directory))
    except Exception:
        log.exception("cannot load QC models from %s; continuing without them", directory)
        return {}


def load_station_climatology(directory: Path) -> Any:
    """Station thresholds from `ews climatology build` (t95, EHF85, SPI parameters); empty when absent, so
    products that need it (heat_health) are skipped rather than the service."""
    from warning.climatology import load_climatology

    try:
        return load_climatology(directory, missing_ok=True)
    except Exception:
        log.exception("cannot load the climatology from %s; continuing without it", directory)
        return None


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class WarningService:
    """The faust app plus the in-memory views the HTTP API reads."""

    def __init__(self, settings: Settings, bootstrap: str, registry: StationRegistry, regions: RegionTree,
                 rules: Rules) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.registry = registry
        self.regions = regions
        self.rules = rules
        self.subscriptions = SubscriptionStore()
        self.warnings: dict[str, dict[str, Any]] = {}  # key region:hazard -> latest WarningEvent
        self.warning_history: dict[str, list[dict[str, Any]]] = {}  # warning_id -> events
        self.events_by_id: dict[str, dict[str, Any]] = {}
        self.recent_receipts: deque[dict[str, Any]] = deque(maxlen=2000)
        self.receipts_by_sub: dict[str, deque[dict[str, Any]]] = {}
        self._seen_receipts: set[tuple[str, int, str]] = set()
        self.dead_letters: dict[str, dict[str, Any]] = {}  # webhook_id -> parked delivery
        self.health = HealthTracker(settings.unhealthy_after_s)
        self._endpoint_slots: dict[str, asyncio.Semaphore] = {}
        self.ready = asyncio.Event()
        self.demo_label: str | None = None  # set when the labelled demo scenario runs
        self._own_writes: dict[str, bytes | None] = {}  # subscription id -> value written, until mirrored back
        # Called with ("warning", WarningEvent) and ("receipt", receipt) as they arrive: the dashboard's live feed.
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._http: Any = None
        self.data_clock = ""  # newest observation time seen (event-time clock for expiry)
        self.data_clock_at = time.time()
        self.climatology = load_station_climatology(settings.data_dir / "climatology")
        self.grader = StationGrader(rules, registry, regions, self.climatology)
        self._known_station = lambda sid: sid in registry
        self._elevations = {s.station_id: s.elevation_m for s in registry}
        self.qc_models = load_qc_models(settings.data_dir / "climatology" / "qc")
        st = settings.session_timeout_s
        self.app = faust.App(
            settings.app_id,
            broker=f"kafka://{bootstrap}",
            store=settings.store,
            datadir=str(settings.data_dir / "faust"),
            topic_partitions=settings.partitions,
            topic_replication_factor=1,
            processing_guarantee="at_least_once",  # exactly_once fails on tansu (BROKER.md §2.3)
            broker_session_timeout=st,
            broker_rebalance_timeout=st,
            broker_heartbeat_interval=max(0.3, st / 5),
            consumer_auto_offset_reset="earliest",
            producer_linger=0.005,
            table_standby_replicas=0,
            web_enabled=False,  # the operator API is our own aiohttp server (warning.web.api)
            web_bind="127.0.0.1",
        )
        self._wire()
        self._mirrors = [
            TopicMirror(bootstrap, topics.SUBSCRIPTIONS, self._apply_subscription),
            TopicMirror(bootstrap, topics.WARNINGS, self._apply_warning),
            TopicMirror(bootstrap, topics.RECEIPTS, self._mirror_receipt),
            TopicMirror(bootstrap, topics.DEAD, self._mirror_dead),
        ]

    # ---- views fed by topic mirrors -------------------------------------------------------------------
    def _apply_subscription(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        sub_id = key.decode()
        if sub_id in self._own_writes:
            # this worker wrote this id and applied it already: records before ours (one partition) are older
            if self._own_writes[sub_id] != value:
                return
            del self._own_writes[sub_id]
        self.subscriptions.apply(sub_id, orjson.loads(value) if value else None)
        metrics.SUBSCRIPTIONS.set(len(self.subscriptions))

    def _apply_warning(self, key: bytes | None, value: bytes | None) -> None:
        if key is None or value is None:
            return
        event = orjson.loads(value)
        self.events_by_id[event["id"]] = event
        history = self.warning_history.setdefault(event["warning_id"], [])
        if all(e["id"] != event["id"] for e in history):
            history.append(event)
            history.sort(key=lambda e: e["seq"])
        latest = self.warnings.get(key.decode())
        if latest is None or latest["warning_id"] != event["warning_id"] or latest["seq"] <= event["seq"]:
            self.warnings[key.decode()] = event
        self._refresh_active_gauge()
        self._notify("warning", event)

    def _notify(self, kind: str, record: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(kind, record)
            except Exception:  # a broken listener must not stop the pipeline
                log.exception("listener failed")

    def _refresh_active_gauge(self) -> None:
        metrics.WARNINGS_ACTIVE.clear()
        for e in self.active_warnings():
            metrics.WARNINGS_ACTIVE.labels(e["hazard"], e["level"]).inc()

    def active_warnings(self, at: str | None = None) -> list[dict[str, Any]]:
        t = at or now_iso()
        return [e for e in self.warnings.values() if e["msg_type"] != "cancel" and e["expires"] > t]

    # ---- producing --------------------------------------------------------------------------------------
    async def publish_observations(self, observations: list[dict[str, Any]]) -> None:
        """Group by partition and send one batch message per partition (BROKER.md: batches make a worker
        fast). The key is the batch's first station, the partition is explicit."""
        parts: dict[int, list[dict[str, Any]]] = {}
        for o in observations:
            parts.setdefault(partition_for(o["station_id"], self.settings.partitions), []).append(o)
        accepted_at = time.time()
        for p, batch in parts.items():
            for i in range(0, len(batch), 1000):
                chunk = batch[i:i + 1000]
                msg = {"accepted_at": accepted_at, "observations": chunk}
                await self.obs_topic.send(key=chunk[0]["station_id"].encode(), value=orjson.dumps(msg),
                                          partition=p)

    async def publish_forecasts(self, points: list[dict[str, Any]]) -> None:
        parts: dict[int, list[dict[str, Any]]] = {}
        for p in points:
            parts.setdefault(partition_for(p["station_id"], self.settings.partitions), []).append(p)
        for part, batch in parts.items():
            for i in range(0, len(batch), 1000):
                chunk = batch[i:i + 1000]
                await self.forecast_topic.send(key=chunk[0]["station_id"].encode(),
                                               value=orjson.dumps({"points": chunk}), partition=part)

    async def reject(self, raw: bytes, reason: str, source: str, key: str = "?") -> None:
        metrics.OBS_REJECTED.labels(reason.split(":", 1)[0][:40]).inc()
        record = {"reason": reason[:1000], "source": source[:200], "time": now_iso(),
                  "raw": raw[:65536].decode("utf-8", "replace")}
        await self.rejected_topic.send(key=key[:64].encode("utf-8", "replace"), value=orjson.dumps(record))

    async def put_subscription(self, sub: Subscription | None, sub_id: str) -> None:
        value = orjson.dumps(sub.to_dict()) if sub else None
        self._own_writes[sub_id] = value
        await self.subs_topic.send(key=sub_id.encode(), value=value)
        self.subscriptions.apply(sub_id, sub.to_dict() if sub else None)  # read-your-writes on this worker
        metrics.SUBSCRIPTIONS.set(len(self.subscriptions))

    # ---- wiring --------------------------------------------------------------------------------------
    def _wire(self) -> None:
        app = self.app
        def raw(name: str, partitions: int | None = None) -> Any:
            return app.topic(name, partitions=partitions, key_serializer="raw", value_serializer="raw")

        self.obs_topic = raw(topics.OBS)
        self.rejected_topic = raw(topics.OBS_REJECTED)
        self.signals_topic = raw(topics.SIGNALS)
        self.forecast_topic = raw(topics.FORECAST)
        self.warnings_topic = raw(topics.WARNINGS)
        self.subs_topic = raw(topics.SUBSCRIPTIONS, 1)
        self.outbox_topic = raw(topics.OUTBOX)
        self.retry_topics = [raw(topics.retry_tier(i)) for i in range(len(self.settings.retry_tiers_s))]
        self.dead_topic = raw(topics.DEAD)
        self.receipts_topic = raw(topics.RECEIPTS)
        # One entry per obs partition holding that partition's station states (BROKER.md: the fast, exactly
        # recovered pattern); reassigned once per batch.
        self.station_state = app.Table("station_state", default=None, partitions=self.settings.partitions)
        self.qc_state = app.Table("qc_state", default=None, partitions=self.settings.partitions)
        self.daily_state = app.Table("daily_state", default=None, partitions=self.settings.partitions)
        self.region_state = app.Table("region_state", default=None, partitions=self.settings.partitions)
        self.receivers = app.Table("receivers", default=None, partitions=self.settings.partitions)

        app.agent(self.obs_topic, name="observations")(self._observations)
        app.agent(self.forecast_topic, name="forecasts")(self._forecasts)
        app.timer(TICK_INTERVAL_S, name="tick")(self._tick)
        app.timer(10.0, name="lag")(self._measure_lag)
        app.agent(self.signals_topic, name="grade")(self._grade)
        app.agent(self.warnings_topic, name="route")(self._route)
        app.agent(self.outbox_topic, name="deliver", concurrency=8)(self._deliver)
        for i, topic in enumerate(self.retry_topics):
            app.agent(topic, name=f"redeliver-{i}", concurrency=4)(self._redeliver_agent(i))

    def _advance_clock(self, t: str) -> None:
        """Only validated report times reach here (at most 1 h ahead of the wall clock)."""
        if t > self.data_clock:
            self.data_clock = t
            self.data_clock_at = time.time()

    def now_data_time(self) -> str:
        """The event-time clock for expiry: the newest observation time, running on in real time after it.
        Replays of old data expire their warnings in data time, live data in (almost) wall time."""
        if not self.data_clock:
            return now_iso()
        # never ahead of the wall clock by more than validation allows (1 h)
        t = min(quantities.parse_utc(self.data_clock).timestamp() + (time.time() - self.data_clock_at),
                time.time() + 3600)
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def _observations(self, stream: Any) -> None:
        async for value in stream:
            part = stream.current_event.message.partition
            try:
                msg = orjson.loads(value)
                batch = msg["observations"]
                accepted_at = float(msg.get("accepted_at", time.time()))
                if not isinstance(batch, list):
                    raise TypeError("observations is not a list")
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                await self.reject(value if isinstance(value, bytes) else b"", f"batch: malformed ({exc})",
                                  "obs-topic")
                continue
            fast: dict[str, Any] = dict(self.station_state.get(part) or {})
            daily: dict[str, Any] = dict(self.daily_state.get(part) or {})
            qc_context: dict[str, Any] = dict(self.qc_state.get(part) or {})
            signals: list[dict[str, Any]] = []
            checked_batch = []
            for obs in batch:
                try:  # the topic is open to any producer: the same checks as the push API
                    checked = validate_observation(obs, known_station=self._known_station)
                except ObservationError as exc:
                    sid = obs.get("station_id", "?") if isinstance(obs, dict) else "?"
                    await self.reject(safe_dump(obs), str(exc), "obs-topic", str(sid)[:64])
                    continue
                clean = checked.to_dict()
                if isinstance(obs.get("qc"), dict):
                    clean["qc"] = obs["qc"]
                checked_batch.append(clean)
            valid = await self._quality_control(checked_batch, qc_context)
            touched = {o["station_id"] for o in valid}
            states = {sid: {**fast[sid], **daily.get(sid, {})} for sid in touched if sid in fast}
            before = {sid: states[sid].get("pd") for sid in states}
            try:  # the fast path: the whole batch graded at once
                trial = dict(states)
                applied, stale, sigs = self.grader.observe_batch(trial, valid, accepted_at=accepted_at)
                states.update(trial)
                signals.extend(sigs)
            except Exception:  # a bad value somewhere: grade one by one so only the bad record is rejected
                log.warning("observations: batch path failed; grading record by record", exc_info=True)
                applied, stale = 0, 0
                for obs in valid:
                    try:
                        new, sigs = self.grader.observe(states.get(obs["station_id"]), obs, accepted_at=accepted_at)
                    except Exception as exc:  # one bad record never stops the batch or the worker
                        await self.reject(safe_dump(obs), f"record: {type(exc).__name__}: {exc}"[:500], "obs-topic")
                        continue
                    if new is None:
                        stale += 1
                        continue
                    applied += 1
                    states[obs["station_id"]] = new
                    signals.extend(sigs)
            metrics.OBS_PROCESSED.inc(applied)
            metrics.OBS_STALE.inc(stale)
            if valid:
                self._advance_clock(max(o["time"] for o in valid))
            daily_changed = False
            for sid in touched:
                st = states.get(sid)
                if st is None:
                    continue
                fast[sid] = {k: st[k] for k in ("t", "d", "h", "now")}
                if sid not in before or st.get("pd") is not before[sid]:  # complete_day made new daily inputs
                    daily[sid] = {k: st[k] for k in quantities.DAILY_KEYS if k in st}
                    daily_changed = True
            try:
                # one changelog record per batch for the per-report part (must reassign); the once-a-day part
                # (150 days of rain, PET, EHF means, MCI) only when a station completed a day
                self.station_state[part] = fast
                if daily_changed:
                    self.daily_state[part] = daily
                self.qc_state[part] = qc_context
            except (TypeError, ValueError) as exc:  # a state that cannot be serialised must not kill the agent
                log.exception("observations: cannot store partition state")
                await self.reject(value, f"state: cannot store ({exc})", "obs-topic")
                continue
            for sig in signals:
                await self.signals_topic.send(key=sig["region_code"].encode(), value=orjson.dumps(sig))

    async def _quality_control(self, batch: list[Any], context: dict[str, Any]) -> list[dict[str, Any]]:
        """WMO-style QC (ingest.qc) with the partition's rolling context. Hard failures go to obs.rejected;
        flagged values stay on the record (``qc``) but are removed from what grading reads, so a flagged value
        never triggers a warning on its own."""
        good = [o for o in batch if isinstance(o, dict)]
        for o in batch:
            if not isinstance(o, dict):
                await self.reject(safe_dump(o), "observation: not an object", "obs-topic")
        if not good:
            return []
        qc = QualityControl(elevations=self._elevations, models=self.qc_models, context=context)
        results = qc.check_batch(good)
        out = []
        for obs, res in zip(good, results, strict=True):
            if res.hard_fail:
                await self.reject(safe_dump(obs), f"qc: {res.hard_fail}", "obs-topic", str(obs.get("station_id", "?")))
                continue
            if res.flags:
                metrics.QC_FLAGGED.inc(len(res.flags))
                obs = {k: v for k, v in obs.items() if k not in res.flags}
                obs["qc"] = {**obs.get("qc", {}), **{k: f"qc: {v}" for k, v in res.flags.items()}}
            out.append(obs)
        return out

    async def _forecasts(self, stream: Any) -> None:
        async for value in stream:
            try:
                points = orjson.loads(value)["points"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                await self.reject(value if isinstance(value, bytes) else b"", f"forecast batch: malformed ({exc})",
                                  "forecast-topic")
                continue
            for p in points:
                try:
                    await self._forecast_point(p)
                except Exception as exc:
                    log.exception("forecast: cannot apply point")
                    await self.reject(safe_dump(p), f"forecast: {type(exc).__name__}: {exc}"[:500], "forecast-topic")

    async def _forecast_point(self, p: dict[str, Any]) -> None:
        for sig in self.grader.forecast(p):
            await self.signals_topic.send(key=sig["region_code"].encode(), value=orjson.dumps(sig))

    async def _grade(self, stream: Any) -> None:
        async for value in stream:
            try:
                sig = orjson.loads(value)
                rule = self.rules[sig["hazard"]]
                key = f"{sig['region_code']}:{sig['hazard']}"
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                log.warning("grade: dropping malformed signal: %s", exc)
                continue
            prev = self.region_state.get(key)
            if sig.get("kind") == "tick":
                if prev is None:
                    continue
                # a region's clock runs on from its own latest report at real speed, so a tick taken from the
                # global clock during a fast replay cannot jump it past reports still on their way
                seen = prev.get("seen")
                if seen:
                    own_t = quantities.parse_utc(seen[0]).timestamp() + (time.time() - seen[1])
                    sig["time"] = min(sig["time"], grading.iso(datetime.fromtimestamp(own_t, UTC)))
            state, events = grading.catch_up(prev, sig["time"], rule)
            state, own = grading.apply_signal(state, sig, rule)
            if sig.get("kind", "station") == "station":
                state["seen"] = [max(sig["time"], (prev or {}).get("seen", [""])[0]), time.time()]
            elif prev and "seen" in prev:
                state["seen"] = prev["seen"]
            self.region_state[key] = state
            for event in [*events, own]:
                if event is None:
                    continue
                metrics.WARNING_EVENTS.labels(event["hazard"], event["level"], event["msg_type"]).inc()
                if event is own and "accepted_at" in sig:
                    metrics.PROCESSING_LATENCY.observe(max(0.0, time.time() - sig["accepted_at"]))
                event["emitted_at"] = time.time()
                await self.warnings_topic.send(key=key.encode(), value=orjson.dumps(event))
                log.info("warning %s %s %s %s", event["msg_type"], event["hazard"], event["level"],
                         event["region_code"],
                         extra={k: event[k] for k in ("warning_id", "hazard", "level", "region_code")}
                         | {"event_id": event["id"]})

    async def _tick(self) -> None:
        """Expiry and hysteresis run on time, not only on new reports: tick every region with a live warning or
        a pending change (through the signals topic, so the grade agent stays the only writer of its table)."""
        try:
            t = self.now_data_time()
            for key, state in list(self.region_state.items()):
                if not state or not (state.get("warning") or state.get("pending")):
                    continue
                region_code, hazard = key.rsplit(":", 1)
                sig = {"kind": "tick", "region_code": region_code, "hazard": hazard, "time": t}
                await self.signals_topic.send(key=region_code.encode(), value=orjson.dumps(sig))
        except Exception:  # a timer that raises would stop the app: log and try again next tick
            log.exception("tick failed")

    async def _measure_lag(self) -> None:
        """Consumer lag per source topic: the fetch high watermark (right on tansu, unlike ListOffsets) minus
        the next offset to process, summed over this worker's partitions."""
        consumer = self.app.consumer
        lag: dict[str, int] = {}
        for tp in consumer.assignment():
            if tp.topic.endswith("-changelog") or "__assignor" in tp.topic:  # read only during recovery
                continue
            try:
                hw = consumer.highwater(tp)
            except Exception:  # not fetched yet
                continue
            if hw is None:
                continue
            read = getattr(consumer, "_read_offset", {}).get(tp)  # faust keeps the last processed offset here
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, int(hw) - (int(read) + 1 if read is not None else 0))
        for topic, value in lag.items():
            metrics.CONSUMER_LAG.labels(topic).set(value)

    async def operator_cancel(self, warning_id: str) -> dict[str, Any] | None:
        history = self.warning_history.get(warning_id)
        if not history:
            return None
        last = history[-1]
        sig = {"kind": "operator_cancel", "region_code": last["region_code"], "hazard": last["hazard"],
               "time": self.now_data_time(), "accepted_at": time.time()}
        await self.signals_topic.send(key=last["region_code"].encode(), value=orjson.dumps(sig))
        return last

    async def _route(self, stream: Any) -> None:
        async for value in stream:
            try:
                event = orjson.loads(value)
                wid = event["warning_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                log.warning("route: dropping malformed warning: %s", exc)
                continue
            if event.get("region_level") == "prefecture":
                continue  # roll-ups are for the dashboard and API; counties issue the signals departments get
            received = list(self.receivers.get(wid) or [])
            targets = route(event, self.subscriptions, self.regions.covers, received)
            for sub, msg_type in targets:
                delivery = {
                    "webhook_id": "msg_" + uuid.uuid5(grading.NAMESPACE, f"{event['id']}:{sub.id}").hex,
                    "subscription_id": sub.id,
                    "type": msg_type,
                    "event": event,
                    "attempt": 0,
                    "first_attempt_at": None,
                }
                await self.outbox_topic.send(key=sub.id.encode(), value=orjson.dumps(delivery))
                if sub.id not in received:
                    received.append(sub.id)
            self.receivers[wid] = received

    async def _deliver(self, stream: Any) -> None:
        async for value in stream:
            await self._attempt(value, first=True)

    def _redeliver_agent(self, tier: int) -> Any:
        async def redeliver(stream: Any) -> None:
            """One agent per retry tier. A tier has one delay, so its records are (nearly) in due order and
            sleeping until the head is due never holds back a record due earlier in the same tier."""
            async for value in stream:
                metrics.RETRY_QUEUE.dec()
                try:
                    not_before = float(orjson.loads(value).get("not_before", 0))
                except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                    not_before = 0.0
                delay = not_before - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._attempt(value, first=False)
        return redeliver

    def _tier_for(self, attempt: int, retry_after_s: float | None) -> int:
        """Exponential backoff through the tiers (attempt 1 -> tier 0, ...); Retry-After picks a long-enough tier."""
        tiers = self.settings.retry_tiers_s
        tier = min(max(attempt - 1, 0), len(tiers) - 1)
        if retry_after_s:
            tier = max(tier, next((i for i, d in enumerate(tiers) if d >= retry_after_s), len(tiers) - 1))
        return tier

    async def schedule_retry(self, d: dict[str, Any], sub_id: str, retry_after_s: float | None = None) -> None:
        tier = self._tier_for(int(d.get("attempt", 1)), retry_after_s)
        delay = self.settings.retry_tiers_s[tier]
        d["not_before"] = time.time() + max(delay * (0.9 + 0.2 * random.random()), retry_after_s or 0.0)
        metrics.RETRY_SCHEDULED.labels(str(tier)).inc()
        metrics.RETRY_QUEUE.inc()
        await self.retry_topics[tier].send(key=sub_id.encode(), value=orjson.dumps(d))

    def _endpoint_slot(self, sub_id: str) -> asyncio.Semaphore:
        sem = self._endpoint_slots.get(sub_id)
        if sem is None:
            sem = self._endpoint_slots[sub_id] = asyncio.Semaphore(self.settings.endpoint_concurrency)
        return sem

    async def _attempt(self, value: bytes, first: bool) -> None:
        """One delivery attempt. Whatever happens, the outcome (receipt, retry or dead letter) is produced before
        this returns, and faust flushes the producer before committing the offset: nothing is lost on a crash,
        and a redelivered record carries the same webhook-id."""
        try:
            d = orjson.loads(value)
            sub_id = d["subscription_id"]
            event = d["event"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            await self.dead_topic.send(key=b"?", value=orjson.dumps(
                {"error": f"malformed delivery: {exc}", "raw": value[:65536].decode("utf-8", "replace")}))
            return
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            await self._park(d, "subscription deleted", None)
            return
        if not sub.active:
            await self._park(d, f"subscription paused ({sub.paused_reason or 'by operator'})", sub)
            return
        now = time.time()
        if first and self.health.unhealthy(sub.id, now):
            d["last_error"] = "endpoint unhealthy: waiting in the retry tiers"
            await self.schedule_retry(d, sub.id)  # not dropped: the retry attempt probes the endpoint
            return
        slot = self._endpoint_slot(sub.id)
        if slot.locked():
            # per-endpoint concurrency limit: a delivery to a busy endpoint goes (back) to a retry tier rather
            # than hold an agent slot, so a slow endpoint never holds up the others. (Waiting for the slot in the
            # retry agents stalled them after a crash-restart in `make chaos`; re-queueing costs extra records,
            # and duplicates after a crash, which carry the same webhook-id.)
            await self.schedule_retry(d, sub.id)
            return
        async with slot:
            await self._post(d, sub, event)

    async def _post(self, d: dict[str, Any], sub: Subscription, event: dict[str, Any]) -> None:
        d["attempt"] = int(d.get("attempt", 0)) + 1
        d["first_attempt_at"] = d.get("first_attempt_at") or time.time()
        if sub.format == "cap":
            earlier = [e for e in self.warning_history.get(event.get("warning_id", ""), [])
                       if e["seq"] < event.get("seq", 0)]
            polygon = region_polygon(event.get("region_code", ""))
            body, ctype = render_cap(event, referenced=earlier, polygon=polygon), "application/cap+xml"
        else:
            body, ctype = webhook_body(d["type"], event), "application/json"
        outcome = await deliver_webhook(self._session(), sub.url, sub.signing_secrets(time.time()), d["webhook_id"],
                                        body, self.settings.webhook_allow_nets, content_type=ctype)
        now = time.time()
        receipt = {"webhook_id": d["webhook_id"], "subscription_id": sub.id, "department": sub.department,
                   "warning_id": event.get("warning_id"), "event_id": event.get("id"), "type": d["type"],
                   "attempt": d["attempt"], "result": outcome.result, "status": outcome.status,
                   "latency_s": round(outcome.latency_s, 4), "error": outcome.error, "time": now_iso()}
        await self.receipts_topic.send(key=sub.id.encode(), value=orjson.dumps(receipt))
        self._apply_receipt(receipt)
        log.info("webhook %s (%s, attempt %d)", outcome.result, outcome.status or outcome.error, d["attempt"],
                 extra={"webhook_id": d["webhook_id"], "subscription_id": sub.id, "warning_id": event.get("warning_id"),
                        "event_id": event.get("id"), "result": outcome.result, "status": outcome.status,
                        "attempt": d["attempt"]})
        metrics.ATTEMPTS.labels(outcome.result).inc()
        if outcome.result == "delivered":
            self.health.success(sub.id, now)
            metrics.DELIVERIES.labels("delivered", sub.department).inc()
            if event.get("emitted_at"):
                metrics.DELIVERY_LATENCY.observe(max(0.0, now - float(event["emitted_at"])))
        else:
            self.health.failure(sub.id, now, outcome.error)
        metrics.UNHEALTHY.set(self.health.unhealthy_count(now))
        if outcome.result == "delivered":
            return
        if outcome.result == "gone":  # 410: the receiver says stop; pause, keep the delivery
            await self.put_subscription(paused_subscription(sub, False, "HTTP 410 Gone from the endpoint"), sub.id)
            await self._park(d, "HTTP 410 Gone: subscription paused", sub)
            return
        expires = event.get("expires", "")
        horizon_passed = now - d["first_attempt_at"] > self.settings.retry_horizon_s
        if outcome.result == "retry" and not horizon_passed and (not expires or expires > now_iso()):
            d["last_error"] = outcome.error
            await self.schedule_retry(d, sub.id, outcome.retry_after_s)
            return
        reason = outcome.error or outcome.result
        if outcome.result == "retry":
            reason = f"retries exhausted ({'warning expired' if not horizon_passed else 'retry horizon'}): {reason}"
        await self._park(d, reason, sub)

    async def _park(self, d: dict[str, Any], error: str, sub: Subscription | None) -> None:
        log.warning("webhook parked in alerts.dead: %s", error,
                    extra={"webhook_id": d.get("webhook_id"), "subscription_id": d.get("subscription_id")})
        d["last_error"] = error
        d["parked_at"] = now_iso()
        metrics.DEAD_LETTERS.labels(sub.department if sub else "unknown").inc()
        metrics.DELIVERIES.labels("dead", sub.department if sub else "unknown").inc()
        await self.dead_topic.send(key=str(d.get("subscription_id", "?")).encode(), value=orjson.dumps(d))
        self._apply_dead(orjson.dumps(d))

    # ---- receipts and dead letters (views for the API; fed locally and by mirrors of the topics) ----------
    def _apply_receipt(self, receipt: dict[str, Any]) -> None:
        key = (receipt["webhook_id"], receipt["attempt"], receipt["result"])
        if key in self._seen_receipts:
            return
        self._seen_receipts.add(key)
        if len(self._seen_receipts) > 20000:
            self._seen_receipts.clear()
        self.recent_receipts.append(receipt)
        per_sub = self.receipts_by_sub.setdefault(receipt["subscription_id"], deque(maxlen=200))
        per_sub.append(receipt)
        self._notify("receipt", receipt)

    def _mirror_receipt(self, key: bytes | None, value: bytes | None) -> None:
        if value:
            self._apply_receipt(orjson.loads(value))

    def _apply_dead(self, value: bytes | None) -> None:
        if not value:
            return
        rec = orjson.loads(value)
        if "redriven" in rec:  # a redrive marker: no longer parked
            self.dead_letters.pop(rec["redriven"], None)
        elif "webhook_id" in rec:
            self.dead_letters[rec["webhook_id"]] = rec

    def _mirror_dead(self, key: bytes | None, value: bytes | None) -> None:
        self._apply_dead(value)

    async def redrive(self, subscription_id: str | None = None) -> int:
        """Re-send parked deliveries (all, or one subscription's) through alerts.outbox with a fresh attempt
        budget; the webhook-id is unchanged so receivers still deduplicate."""
        n = 0
        for wid, d in list(self.dead_letters.items()):
            sub_id = d.get("subscription_id")
            if subscription_id and sub_id != subscription_id:
                continue
            fresh = {k: v for k, v in d.items() if k not in ("last_error", "parked_at", "not_before")}
            fresh.update(attempt=0, first_attempt_at=None, redriven_at=now_iso())
            await self.outbox_topic.send(key=str(sub_id).encode(), value=orjson.dumps(fresh))
            marker = orjson.dumps({"redriven": wid, "subscription_id": sub_id, "time": now_iso()})
            await self.dead_topic.send(key=str(sub_id).encode(), value=marker)
            self._apply_dead(marker)
            n += 1
        return n

    def _session(self) -> Any:
        if self._http is None or self._http.closed:
            self._http = new_session(self.settings.webhook_allow_nets, self.settings.webhook_timeout_s)
        return self._http

    async def start_views(self) -> None:
        for m in self._mirrors:
            await m.start()

    async def stop_views(self) -> None:
        for m in self._mirrors:
            await m.stop()
        if self._http is not None:
            await self._http.close()


def level_at_least(level: str, minimum: str) -> bool:
    return WarningLevel.parse(level) >= WarningLevel.parse(minimum)
