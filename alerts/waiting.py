"""The waiting room of a retry tier: records not yet due wait here, out of the ``redeliver-N`` agent's slots.

A tier's agent hands a record that is not due to :meth:`WaitingRoom.admit` and takes the next one at once, so a
receiver's long (capped) Retry-After never holds a slot another receiver's retry needs. Each waiting record keeps
its offset held (``warning.shared.bus.hold``): nothing past it in its partition is committed until it is done, so
a crash or stop re-reads it (at least once, same webhook-id). A record is let out:

* when it is due: its attempt runs (at most ``concurrency`` at once per tier), then its offset is released;
* when its subscription is deleted or paused (checked every ``check_s``): its attempt runs at once, and the
  attempt parks it ("subscription deleted") or holds it for the resume, as from the agent;
* after ``hold_s`` still not due: a copy goes back to the end of the tier and the original is released, so a
  partition's commit point never stays behind one record for longer than that;
* on stop or partition revocation, or when its attempt raised (a producer stopping under it): dropped
  unacknowledged (its offset stays uncommitted: the next owner, or this worker after its restart, reads it again).

At most ``capacity`` records wait at once; past that the agent waits for room (back-pressure, so a retry
backlog stays in Kafka rather than in memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from warning.shared.bus import abandon, hold, release

log = logging.getLogger(__name__)


@dataclass
class Waiting:
    value: bytes
    sub_id: str
    not_before: float
    since: float
    stream: Any
    event: Any
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def tp(self) -> Any:
        return getattr(getattr(self.event, "message", None), "tp", None)


class WaitingRoom:
    def __init__(self, *, attempt: Callable[[bytes], Awaitable[None]], requeue: Callable[[Waiting], Awaitable[None]],
                 released: Callable[[str], bool], concurrency: int, capacity: int, hold_s: float,
                 check_s: float = 0.5) -> None:
        self.attempt, self.requeue, self.released = attempt, requeue, released
        self.capacity, self.hold_s, self.check_s = max(1, capacity), hold_s, check_s
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._tasks: dict[asyncio.Task[None], Waiting] = {}
        self._space = asyncio.Event()
        self._checker: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._tasks)

    async def admit(self, stream: Any, event: Any, value: bytes, sub_id: str, not_before: float) -> None:
        """Take a record that is not due yet; returns at once unless the room is full."""
        while len(self._tasks) >= self.capacity:
            self._space.clear()
            await self._space.wait()
        w = Waiting(value, sub_id, not_before, time.time(), stream, event)
        hold(event)
        task = asyncio.get_running_loop().create_task(self._wait(w))
        self._tasks[task] = w
        task.add_done_callback(self._done)
        if self._checker is None or self._checker.done():
            self._checker = asyncio.get_running_loop().create_task(self._check())

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._space.set()

    async def _wait(self, w: Waiting) -> None:
        try:
            while True:
                now = time.time()
                if now >= w.not_before or self.released(w.sub_id):
                    async with self._slots:
                        await self.attempt(w.value)
                    break
                if now - w.since >= self.hold_s:
                    await self.requeue(w)
                    break
                w.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(w.wake.wait(), min(w.not_before, w.since + self.hold_s) - now)
        except asyncio.CancelledError:
            abandon(w.event)  # unacknowledged: read again by the partition's next owner or after the restart
            raise
        except Exception:
            # e.g. "Producer service not yet started" while the worker stops: acknowledging it (faust's way) could
            # let a commit pass a delivery that never went out; unacknowledged, it is read again (at least once)
            log.exception("waiting retry failed; left unacknowledged, to be read again")
            abandon(w.event)
            return
        await release(w.stream, w.event)

    async def _check(self) -> None:
        """Wake the records whose subscription was deleted or paused, so they are parked or held at once."""
        while self._tasks:
            await asyncio.sleep(self.check_s)
            for w in list(self._tasks.values()):
                if not w.wake.is_set() and self.released(w.sub_id):
                    w.wake.set()

    def drop(self, tps: Iterable[Any] | None = None) -> int:
        """Drop the waiting records (of partitions ``tps``, or all) unacknowledged; returns how many."""
        wanted = None if tps is None else set(tps)
        dropped = [t for t, w in self._tasks.items() if wanted is None or w.tp in wanted]
        for t in dropped:
            t.cancel()
        return len(dropped)

    async def close(self) -> None:
        self.drop()
        tasks = list(self._tasks)
        if self._checker is not None:
            self._checker.cancel()
            tasks.append(self._checker)
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
