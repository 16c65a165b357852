"""faust acks a stream's event in a ``finally`` when the agent's loop is left, also when a stop cancels it in the
middle of a record: ``held_offsets`` keeps such a record's offset uncommitted (it is processed again after the
restart) and acks it once the body has produced its outcome."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.types.tuples import Message

from warning.shared.bus import held_offsets


class ConsumerMessage(Message):
    def on_final_ack(self, consumer: Any) -> bool:  # as faust's: the final ack makes the offset committable
        return bool(consumer.ack(self))


@dataclass
class Consumer:
    committable: list[int] = field(default_factory=list)

    def ack(self, message: Message) -> bool:
        self.committable.append(message.offset)
        return True


@dataclass
class Event:
    message: Message


@dataclass
class Stream:
    consumer: Consumer

    async def ack(self, event: Event) -> bool:
        return event.message.ack(self.consumer)


def _event(offset: int) -> Event:
    message = ConsumerMessage("alerts.retry.0", 0, offset, 0.0, 0, None, b"k", b"v", None)
    message.incref()  # faust's conductor: one reference per stream reading the topic
    return Event(message)


async def _agent_record(stream: Stream, event: Event, body: Any) -> None:
    """What faust's stream does around one record: the body, then its own ack in a finally."""
    try:
        async with held_offsets(stream, [event]):
            await body()
    finally:
        await stream.ack(event)


async def test_a_record_done_is_acked_once() -> None:
    stream, event = Stream(Consumer()), _event(7)

    async def body() -> None:
        await asyncio.sleep(0)

    await _agent_record(stream, event, body)
    assert stream.consumer.committable == [7]


async def test_a_record_cancelled_mid_way_is_not_committable() -> None:
    stream, event = Stream(Consumer()), _event(8)

    async def body() -> None:
        await asyncio.sleep(3600)  # a retry waiting for its time when the worker stops

    task = asyncio.create_task(_agent_record(stream, event, body))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.consumer.committable == [] and not event.message.acked


async def test_a_record_whose_body_raises_is_acked_as_faust_would() -> None:
    stream, event = Stream(Consumer()), _event(9)

    async def body() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        await _agent_record(stream, event, body)
    assert stream.consumer.committable == [9]


async def test_without_the_hold_faust_would_commit_the_cancelled_record() -> None:
    """The mechanism itself: the stream's own finally makes a cancelled record committable."""
    stream, event = Stream(Consumer()), _event(10)

    async def run() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await stream.ack(event)

    task = asyncio.create_task(run())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.consumer.committable == [10]
