"""Client-side workaround for tansu 0.6.0's wrong ListOffsets(LATEST) (BROKER.md §4 and §6.1).

tansu answers ListOffsets(LATEST) with ``<base offset of the last written batch> + 1`` instead of the log end,
so faust stops changelog recovery early and silently loses the newest table updates (memory store) or raises
ConsistencyError (RocksDB). The Fetch high watermark is right, so we read it with a short-lived consumer
positioned inside the last batch. On Apache Kafka the listed value is already the true end and the patch
changes nothing (the fetched high watermark equals it); ``install()`` is only called for the embedded broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

_installed = False
# tansu does not answer a pending Fetch early when records arrive: each hop waits out fetch_max_wait_ms, which
# faust hard-codes to 1500 ms (measured: 3.0 s from POST to webhook over 4 hops; 0.11 s p50 at 50 ms, with
# 4 % + 10 % of a core idle for worker + broker; 20 ms gave 0.055 s for 7 % + 15 %). A short wait on tansu only;
# Apache Kafka's long poll returns as soon as data arrives.
FETCH_MAX_WAIT_MS = 50


async def true_end_offsets(bootstrap: str, listed: Mapping[Any, int], timeout_s: float = 5.0) -> dict[Any, int]:
    """Raise each listed end offset to the partition's Fetch high watermark where that is higher."""
    result = dict(listed)
    need = {TopicPartition(tp.topic, tp.partition): tp for tp, off in listed.items() if off and off > 0}
    if not need:
        return result
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10,
                                max_partition_fetch_bytes=64 * 1024)
    await consumer.start()
    try:
        consumer.assign(list(need))
        for ktp, tp in need.items():
            consumer.seek(ktp, listed[tp] - 1)  # inside the last batch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            await consumer.getmany(timeout_ms=100, max_records=1)
            if all(consumer.highwater(k) is not None for k in need):
                break
        for ktp, tp in need.items():
            hw = consumer.highwater(ktp)
            if hw is not None and hw > result[tp]:
                result[tp] = hw
    finally:
        await consumer.stop()
    return result


def install() -> None:
    """Patch faust's aiokafka driver so table recovery reads to the true end of each changelog."""
    global _installed
    if _installed:
        return
    from faust.transport.drivers import aiokafka as driver

    original = driver.AIOKafkaConsumerThread._highwaters

    async def _highwaters(self: Any, partitions: Any) -> Mapping[Any, int]:
        listed = await original(self, partitions)
        if self.consumer.in_transaction:
            return listed
        url = self.transport.url[0]
        return await true_end_offsets(f"{url.host}:{url.port or 9092}", listed)

    driver.AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]

    create = driver.AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts its fetcher
        return consumer

    driver.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    _installed = True
