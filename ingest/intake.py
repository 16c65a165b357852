"""The intake stage: the ``observations`` and ``forecasts`` agents. Observation batches are decoded, checked
(validation and QC), folded into their partition's station state (``ingest.partition_store``) and graded by the
station grader the composition root passes in; the station signals go to ``signals``. Bad records go to
``obs.rejected`` with the reason; nothing that arrives stops the agent."""

from __future__ import annotations

import logging
import reprlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from ingest.columns import BatchError, ObservationBatch, ObservationColumns, decode_batch, encode_batch
from ingest.partition_state import copy_columns
from ingest.partition_store import PartitionStore, report_by_report
from ingest.station_columns import drought_inputs, observed_days
from warning.shared import metrics
from warning.shared.bus import DataClock, SignalSink, Topic, held_offsets, key_event, now_iso
from warning.shared.records import ACTUAL, STATUSES, Signal
from warning.shared.topics import partition_for

log = logging.getLogger(__name__)

OBS_TAKE = 8  # obs messages the observations agent takes together (their signals leave in one message per partition)
OBS_WITHIN_S = 0.01  # ... or what arrived within this long (a live push waits at most this for company)
BATCH_ROWS = 1000  # reports per obs / forecast message
# Forecast runs split over several messages (a grid file per lead time, batches of BATCH_ROWS) are put together
# again: the points of the most recent runs are kept (per status, station and issue time) and a run is graded
# with every point of it seen so far. Regrading an earlier point repeats its signal, which the region lifecycle
# folds without a new event (same level, same window).
RUN_CACHE = 4096  # runs kept
RUN_POINTS = 480  # points kept per run (e.g. 10 days of hourly points, 2 elements)


class StationGrading(Protocol):
    """What intake needs of the grading stage (``warning.pipeline.StationGrader``)."""

    def observe_columns(self, state: Any, cols: Any, **extra: Any) -> tuple[int, int, list[Any]]: ...

    def forecast_run(self, points: list[dict[str, Any]], observed: dict[str, dict[str, float]] | None = None,
                     drought_inputs: dict[str, dict[str, float]] | None = None, **extra: Any) -> list[Any]: ...

    def grid_signals(self, areas: list[Any], **extra: Any) -> tuple[list[Any], list[tuple[Any, str]]]: ...


def status_fields(status: str) -> dict[str, str]:
    """What a signal carries of its report's status: nothing for actual (the signals every reader knows)."""
    return {} if status == ACTUAL else {"status": status}


def safe_dump(value: Any, limit: int = 65536) -> bytes:
    """Bytes of any decoded record for a dead letter: JSON when orjson can (it refuses > 254 levels of nesting
    and odd types), else a truncated repr; never raises."""
    try:
        return orjson.dumps(value, default=str)[:limit]
    except (TypeError, ValueError, RecursionError, OverflowError):
        shortened = reprlib.Repr()
        shortened.maxlevel, shortened.maxlist, shortened.maxdict, shortened.maxstring = 40, 200, 200, 4000
        return shortened.repr(value)[:limit].encode("utf-8", "replace")


class Rejects:
    """``obs.rejected``: the raw record, the reason naming the field, where it came from and when."""

    def __init__(self, topic: Topic) -> None:
        self.topic = topic

    async def reject(self, raw: bytes, reason: str, source: str, key: str = "?") -> None:
        metrics.OBS_REJECTED.labels(reason.split(":", 1)[0][:40]).inc()
        record = {"reason": reason[:1000], "source": source[:200], "time": now_iso(),
                  "raw": raw[:65536].decode("utf-8", "replace")}
        await self.topic.send(key=key[:64].encode("utf-8", "replace"), value=orjson.dumps(record))


class Intake:
    """The ``observations`` and ``forecasts`` agents and the producers the push API uses."""

    def __init__(self, *, partitions: int, obs_topic: Topic, forecast_topic: Topic, rejects: Rejects,
                 store: PartitionStore, grader: StationGrading, signals: SignalSink, clock: DataClock,
                 known_station: Callable[[str], bool]) -> None:
        self.partitions = partitions
        self.obs_topic, self.forecast_topic = obs_topic, forecast_topic
        self.rejects, self.store, self.grader = rejects, store, grader
        # exercise and test reports fold into station states of their own (PartitionStore.namespaced)
        self.stores = {status: store if status == ACTUAL else store.namespaced(status) for status in STATUSES}
        self.signals, self.clock = signals, clock
        self.known_station = known_station
        self._runs: OrderedDict[tuple[str, str, str], list[dict[str, Any]]] = OrderedDict()

    # ---- producing (the push API) ------------------------------------------------------------------------
    async def publish_observations(self, observations: list[dict[str, Any]], status: str = ACTUAL) -> None:
        """Group by partition and send one batch message per partition (batches make a worker fast). The key
        is the batch's first station, the partition is explicit; ``status`` applies to the whole batch."""
        accepted_at = time.time()
        for p, chunk in self._chunks(observations):
            await self.obs_topic.send(key=chunk[0]["station_id"].encode(),
                                      value=encode_batch(chunk, accepted_at, status), partition=p)

    async def publish_forecasts(self, points: list[dict[str, Any]], status: str = ACTUAL) -> None:
        for p, chunk in self._chunks(points):
            msg: dict[str, Any] = {"points": chunk, **status_fields(status), "accepted_at": time.time()}
            await self.forecast_topic.send(key=chunk[0]["station_id"].encode(), value=orjson.dumps(msg), partition=p)

    def _chunks(self, records: list[dict[str, Any]]) -> list[tuple[int, list[dict[str, Any]]]]:
        parts: dict[int, list[dict[str, Any]]] = {}
        for r in records:
            parts.setdefault(partition_for(r["station_id"], self.partitions), []).append(r)
        return [(p, batch[i:i + BATCH_ROWS]) for p, batch in parts.items() for i in range(0, len(batch), BATCH_ROWS)]

    async def reject(self, raw: bytes, reason: str, source: str, key: str = "?") -> None:
        await self.rejects.reject(raw, reason, source, key)

    # ---- the observations agent --------------------------------------------------------------------------
    async def observations(self, stream: Any) -> None:
        """Obs messages are taken OBS_TAKE at a time (or what came within OBS_WITHIN_S); each is decoded, checked,
        folded and stored on its own, and the take's signals go out together, one signals message per partition:
        under a backlog ~OBS_TAKE times fewer messages for the grade agent. Events are acked after the take."""
        async for events in stream.take_events(OBS_TAKE, within=OBS_WITHIN_S):
            async with held_offsets(stream, events):
                signals: list[Signal] = []
                for event in events:
                    with key_event(event):  # the partition's state tables are written under its own message
                        signals.extend(await self._observe_message(event.message.partition, event.value))
                await self.signals.send(signals)

    async def _observe_message(self, part: int, value: Any) -> list[Signal]:
        """One obs message -> its station signals (bad records and batches go to obs.rejected)."""
        raw = value if isinstance(value, bytes) else b""
        try:
            batch = decode_batch(value, known_station=self.known_station)
        except BatchError as exc:  # the envelope is a schema too: the whole record goes to obs.rejected
            await self.reject(raw, f"batch: {exc}", "obs-topic")
            return []
        except Exception as exc:  # a bug must not stop the agent: the record is kept with the reason
            log.exception("observations: cannot decode a batch")
            await self.reject(raw, f"batch: {type(exc).__name__}: {exc}"[:500], "obs-topic")
            return []
        return await self._observe_batch(part, batch, value)

    async def _observe_batch(self, part: int, batch: ObservationBatch, raw: bytes) -> list[Signal]:
        """QC, fold into the partition's columnar state and grade one decoded batch message; then log the
        batch's delta (and, now and then, a snapshot of the state). Returns the station signals."""
        cols = batch.columns
        accepted_at = batch.accepted_at if batch.accepted_at is not None else time.time()
        store = self.stores[batch.status]
        for i, reason in batch.rejected:  # the topic is open to any producer: the same checks as the push API
            obs = batch.record(i)
            sid = obs.get("station_id", "?") if isinstance(obs, dict) else "?"
            await self.reject(safe_dump(obs), reason, "obs-topic", str(sid)[:64])
        if not len(cols):
            return []
        ps = store.get(part)
        raw_cols = copy_columns(cols)  # before QC: what the delta records and a replay folds in again
        hard, cols = store.quality_control(ps.qc, cols)
        for i, reason in hard:
            await self.reject(safe_dump(batch.record(int(raw_cols.rows[i]))), f"qc: {reason}", "obs-topic",
                              raw_cols.station_ids[i])
        extra = {"accepted_at": accepted_at, **status_fields(batch.status)}
        try:  # the fast path: the whole batch at once
            applied, stale, signals = self.grader.observe_columns(ps.columns, cols, **extra)
        except Exception:  # a bug or an odd value: start again from the stored state, one report at a time
            log.warning("observations: batch path failed; grading record by record", exc_info=True)
            applied, stale, signals = await self._grade_one_by_one(store, part, raw_cols, extra)
        metrics.OBS_PROCESSED.inc(applied)
        metrics.OBS_STALE.inc(stale)
        if len(cols):
            self.clock.advance(max(cols.times))
        try:
            store.store(part, store.partitions[part], raw_cols)
        except Exception as exc:  # a state that cannot be stored must not kill the agent
            log.exception("observations: cannot store partition state")
            await self.reject(raw[:65536], f"state: cannot store ({exc})", "obs-topic")
            return []
        return signals

    async def _grade_one_by_one(self, store: PartitionStore, part: int, raw_cols: ObservationColumns,
                                extra: dict[str, Any]) -> tuple[int, int, list[Signal]]:
        ps = store.get(part, reload=True)
        _, cols = store.quality_control(ps.qc, copy_columns(raw_cols))
        done, failed = report_by_report(
            ps, cols, lambda one: self.grader.observe_columns(ps.columns, one, **extra))
        for one, exc in failed:  # one bad record never stops the batch or the worker
            await self.reject(safe_dump(one.record(0)), f"record: {type(exc).__name__}: {exc}"[:500], "obs-topic")
        return sum(d[0] for d in done), sum(d[1] for d in done), [sig for d in done for sig in d[2]]

    # ---- the forecasts agent -----------------------------------------------------------------------------
    async def forecasts(self, stream: Any) -> None:
        async for value in stream:
            event = stream.current_event
            async with held_offsets(stream, [event]):
                await self._forecast_message(value, getattr(getattr(event, "message", None), "partition", None))

    def _whole_run(self, status: str, station_id: str, issued: str, points: list[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
        """The run's points seen so far with ``points`` (a point replaces an earlier one of the same window)."""
        key = (status, station_id, issued)
        by_window = {(p.get("valid_from"), p.get("valid_to"), tuple(sorted(p.get("values") or {}))): p
                     for p in self._runs.pop(key, [])}
        for p in points:
            by_window[(p.get("valid_from"), p.get("valid_to"), tuple(sorted(p.get("values") or {})))] = p
        run = list(by_window.values())[-RUN_POINTS:]
        self._runs[key] = run
        while len(self._runs) > RUN_CACHE:
            self._runs.popitem(last=False)
        return run

    def _observed(self, status: str, part: int | None, station_id: str
                  ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
        """The station's observed days and drought inputs (its partition's state, which the forecast topic shares
        with obs), so a forecast run that starts today is combined with what was observed and the drought branch
        continues the observed record; nothing when not available here."""
        if part is None:
            return {}, {}
        try:
            columns = self.stores[status].get(part).columns
            return observed_days(columns, station_id), drought_inputs(columns, station_id)
        except Exception:  # a state this worker cannot read: grade the forecast days alone
            log.debug("forecasts: no observed days for %s", station_id, exc_info=True)
            return {}, {}

    async def _grid_areas(self, msg: dict[str, Any], value: bytes) -> None:
        """A message of GridArea records (``ews ingest --format grid`` cell grading) -> grid signals for the
        counties; bad records go to obs.rejected."""
        areas, status = msg.get("areas"), msg.get("status", ACTUAL)
        if not isinstance(areas, list) or status not in STATUSES:
            why = "areas is not a list" if not isinstance(areas, list) else f"status {str(status)[:20]!r}"
            await self.reject(value, f"forecast batch: {why}", "forecast-topic")
            return
        try:
            accepted_at = float(msg.get("accepted_at") or time.time())
        except (TypeError, ValueError):
            accepted_at = time.time()
        signals, rejects = self.grader.grid_signals(areas, accepted_at=accepted_at, **status_fields(status))
        for raw, reason in rejects:
            await self.reject(safe_dump(raw), reason, "forecast-topic")
        await self.signals.send(signals)

    async def _forecast_message(self, value: Any, part: int | None = None) -> None:
        """One forecast message -> its station signals (bad messages and points go to obs.rejected)."""
        try:
            msg = orjson.loads(value)
            if isinstance(msg, dict) and "areas" in msg and "points" not in msg:
                await self._grid_areas(msg, value)
                return
            points = msg["points"]
            status = msg.get("status", ACTUAL)
            extra: dict[str, Any] = {"accepted_at": float(msg.get("accepted_at") or time.time())}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            await self.reject(value if isinstance(value, bytes) else b"", f"forecast batch: malformed ({exc})",
                              "forecast-topic")
            return
        if not isinstance(points, list) or status not in STATUSES:
            why = "points is not a list" if not isinstance(points, list) else f"status {str(status)[:20]!r}"
            await self.reject(value, f"forecast batch: {why}", "forecast-topic")
            return
        extra.update(status_fields(status))
        signals: list[Signal] = []
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}  # a station's points of one issue time: one run
        for p in points:
            if not isinstance(p, dict) or not isinstance(p.get("station_id"), str):
                await self.reject(safe_dump(p), "forecast: not a forecast point", "forecast-topic")
                continue
            runs.setdefault((p["station_id"], str(p.get("issued_at"))), []).append(p)
        for (sid, issued), new in runs.items():
            run = self._whole_run(status, sid, issued, new)
            try:
                observed, drought_inputs = self._observed(status, part, sid)
                signals.extend(self.grader.forecast_run(run, observed, drought_inputs, **extra))
            except Exception as exc:
                log.exception("forecast: cannot apply a run")
                for p in run:
                    await self.reject(safe_dump(p), f"forecast: {type(exc).__name__}: {exc}"[:500], "forecast-topic")
        await self.signals.send(signals)
