"""The retry tiers' waiting room (alerts/waiting.py) with fake faust events: a record not yet due never blocks
admit, leaves when due, at once when its subscription is released, goes back to its tier after the hold, and is
dropped unacknowledged on stop or revocation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from alerts.waiting import Waiting, WaitingRoom


class Message:
    def __init__(self, tp: str) -> None:
        self.tp, self.refs = tp, 0

    def incref(self) -> None:
        self.refs += 1


class Event:
    def __init__(self, tp: str = "t0") -> None:
        self.message = Message(tp)


class Stream:
    def __init__(self) -> None:
        self.acked: list[Any] = []

    async def ack(self, event: Any) -> None:
        self.acked.append(event)


def room(released: set[str] | None = None, hold_s: float = 60.0) -> tuple[WaitingRoom, list[bytes], list[bytes]]:
    attempted: list[bytes] = []
    requeued: list[bytes] = []

    async def attempt(value: bytes) -> None:
        attempted.append(value)

    async def requeue(w: Waiting) -> None:
        requeued.append(w.value)

    gone = released if released is not None else set()
    return (WaitingRoom(attempt=attempt, requeue=requeue, released=gone.__contains__, concurrency=4, capacity=100,
                        hold_s=hold_s, check_s=0.02), attempted, requeued)


async def test_not_due_waits_outside_the_agent_and_leaves_when_due() -> None:
    r, attempted, _ = room()
    stream, late, soon = Stream(), Event(), Event()
    t0 = time.monotonic()
    await r.admit(stream, late, b"late", "bad", time.time() + 3600)
    await r.admit(stream, soon, b"soon", "ok", time.time() + 0.1)
    assert time.monotonic() - t0 < 0.05 and len(r) == 2  # admit never waits for the due time
    await asyncio.sleep(0.3)
    assert attempted == [b"soon"] and stream.acked == [soon] and late.message.refs == 1
    await r.close()
    assert stream.acked == [soon] and len(r) == 0  # the late one dropped unacknowledged: read again later


async def test_a_deleted_subscription_is_attempted_at_once() -> None:
    gone: set[str] = set()
    r, attempted, _ = room(gone)
    stream, ev = Stream(), Event()
    await r.admit(stream, ev, b"v", "bad", time.time() + 3600)
    await asyncio.sleep(0.05)
    gone.add("bad")
    await asyncio.sleep(0.1)
    assert attempted == [b"v"] and stream.acked == [ev]  # the attempt parks it: "subscription deleted"
    await r.close()


async def test_held_past_the_bound_goes_back_to_its_tier() -> None:
    r, attempted, requeued = room(hold_s=0.1)
    stream, ev = Stream(), Event()
    await r.admit(stream, ev, b"v", "bad", time.time() + 3600)
    await asyncio.sleep(0.3)
    assert requeued == [b"v"] and attempted == [] and stream.acked == [ev]
    await r.close()


async def test_revoked_partitions_are_dropped_unacknowledged() -> None:
    r, attempted, _ = room()
    stream, a, b = Stream(), Event("t0"), Event("t1")
    await r.admit(stream, a, b"a", "s", time.time() + 3600)
    await r.admit(stream, b, b"b", "s", time.time() + 3600)
    assert r.drop(["t0"]) == 1
    await asyncio.sleep(0.05)
    assert len(r) == 1 and stream.acked == [] and attempted == []
    await r.close()


async def test_an_attempt_that_raises_is_left_unacknowledged() -> None:
    """A producer stopping under the attempt ("Producer service not yet started"): not acked, read again later."""
    async def attempt(value: bytes) -> None:
        raise RuntimeError("Producer service not yet started")

    async def requeue(w: Waiting) -> None:
        raise AssertionError("not requeued")

    r = WaitingRoom(attempt=attempt, requeue=requeue, released=lambda s: False, concurrency=4, capacity=100,
                    hold_s=60.0, check_s=0.02)
    stream, ev = Stream(), Event()
    await r.admit(stream, ev, b"v", "s", time.time() + 0.05)
    await asyncio.sleep(0.2)
    assert stream.acked == [] and len(r) == 0
    await r.close()
