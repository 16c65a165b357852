"""How stages put records on topics and keep time, without knowing faust's app: a raw producer function, the
signals sink (one message per partition), the event-time clock and the faust current-event scope."""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from typing import Any, Protocol

import orjson
from faust.streams import _current_event as faust_current_event

from warning.shared import metrics
from warning.shared.records import Signal
from warning.shared.sealing import Sealer
from warning.shared.times import iso_utc, now_iso, parse_utc
from warning.shared.topics import partition_for

Headers = list[tuple[str, bytes]]


class Produce(Protocol):
    """(topic name, key, value, partition or None[, headers]): raw bytes straight to the producer. Offsets stay
    after outcomes: faust flushes its producer before every commit."""

    def __call__(self, topic: str, key: bytes, value: bytes, partition: int | None,
                 headers: Headers | None = None) -> Awaitable[None]: ...


class Topic(Protocol):
    """What a stage needs of a faust topic: its name and ``send`` (faust's channel path)."""

    def get_topic_name(self) -> str: ...

    async def send(self, *, key: bytes | None = None, value: bytes | None = None,
                   partition: int | None = None, headers: Headers | None = None) -> Any: ...


class DataClock:
    """The event-time clock for expiry: the newest observation time, running on in real time after it. Replays
    of old data expire their warnings in data time, live data in (almost) wall time."""

    def __init__(self) -> None:
        self.data_clock = ""
        self.data_clock_at = time.time()

    def advance(self, t: str) -> None:
        """Only validated report times reach here (at most 1 h ahead of the wall clock)."""
        if t > self.data_clock:
            self.data_clock = t
            self.data_clock_at = time.time()

    def now(self) -> str:
        if not self.data_clock:
            return now_iso()
        # never ahead of the wall clock by more than validation allows (1 h)
        t = min(parse_utc(self.data_clock).timestamp() + (time.time() - self.data_clock_at), time.time() + 3600)
        return iso_utc(t)


class SignalSink:
    """Sends signals to ``signals``: one message per partition (the region's, as the key would pick), in
    emission order, each with the MAC (``ews-mac`` header) the grade agent requires."""

    def __init__(self, produce: Produce, topic: str, partitions: int, sealer: Sealer) -> None:
        self.produce, self.topic, self.partitions, self.sealer = produce, topic, partitions, sealer

    async def send_one(self, sig: Signal) -> None:
        """One bare signal (a tick, an operator cancel) keyed by its region."""
        metrics.SIGNALS.labels("sent").inc()
        key, value = sig["region_code"].encode(), orjson.dumps(sig)
        await self.produce(self.topic, key, value, None, self.sealer.headers(self.topic, key, value))

    def refused(self, event: Any) -> str | None:
        """Why a consumed ``signals`` message is refused (no valid MAC), or None: counted and logged (topic,
        partition, offset and reason only), never graded."""
        msg = event.message
        why = self.sealer.check(self.topic, msg.key, msg.value, msg.headers)
        if why is not None:
            metrics.RECORDS_REJECTED.labels(self.topic, why).inc()
        return why

    async def send(self, signals: list[Signal]) -> None:
        if not signals:
            return
        by_part: dict[int, list[Signal]] = {}
        for sig in signals:
            by_part.setdefault(partition_for(sig["region_code"], self.partitions), []).append(sig)
        for p, sigs in by_part.items():
            metrics.SIGNALS.labels("sent").inc(len(sigs))
            key, value = sigs[0]["region_code"].encode(), orjson.dumps({"signals": sigs})
            await self.produce(self.topic, key, value, p, self.sealer.headers(self.topic, key, value))


@contextlib.contextmanager
def key_event(event: Any) -> Iterator[None]:
    """Make ``event`` the task's current faust event: faust writes a table's changelog to the partition of the
    current event (a context variable). Not Stream._set_current_event: that also sets stream.current_event, which
    take_events' buffer reads to know which event to ack."""
    token = faust_current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_current_event.reset(token)


_ABANDONED: list[Any] = []  # messages whose processing a stop or rebalance cancelled: never committed here


@contextlib.asynccontextmanager
async def held_offsets(stream: Any, events: Sequence[Any]) -> AsyncIterator[None]:
    """Keep ``events``' offsets uncommitted until the body has produced their outcomes. faust acks a stream's
    event in a ``finally`` when its generator is closed, also when a stop or rebalance cancels the agent in the
    middle of a record; an extra reference makes that ack a no-op, and this one, after the body, the final one.
    A cancelled body leaves its records unacked: the next owner of the partition processes them again (at least
    once; webhook-ids and event ids are stable). Any other exception acks, as faust would."""
    held = [e for e in events if e is not None and getattr(e, "message", None) is not None]
    for e in held:
        e.message.incref()
    try:
        yield
    except asyncio.CancelledError:
        _ABANDONED.extend(e.message for e in held)  # alive, so the commit still sees them in flight (a weak set)
        raise
    except BaseException:
        await _ack_all(stream, held)
        raise
    await _ack_all(stream, held)


async def _ack_all(stream: Any, events: list[Any]) -> None:
    for e in events:
        await stream.ack(e)


def hold(event: Any) -> None:
    """Keep ``event``'s offset uncommitted beyond the agent's turn (faust's own ack becomes a no-op), until
    :func:`release` (done) or :func:`abandon` (cancelled: read again by the partition's next owner)."""
    if event is not None and getattr(event, "message", None) is not None:
        event.message.incref()


async def release(stream: Any, event: Any) -> None:
    """The outcome of a :func:`hold` event is produced: its final acknowledgement."""
    if event is not None and getattr(event, "message", None) is not None:
        await stream.ack(event)


def abandon(event: Any) -> None:
    """A :func:`hold` event whose processing was cancelled: never acknowledged, kept alive for the commit check."""
    if event is not None and getattr(event, "message", None) is not None:
        _ABANDONED.append(event.message)
