"""A whole-topic reader outside any consumer group: every worker holds the full compacted view of small
topics such as ``subscriptions`` and ``warnings`` (like a faust GlobalTable, without its recovery quirks on
tansu). Records are applied in offset order per partition; ``apply`` must be idempotent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from warning.shared.kafka_auth import KafkaAuth

log = logging.getLogger(__name__)

# How long an idle fetch waits at the broker, by default: each idle mirror at 50 ms cost ~2 % of a core in fetch
# round trips (4 per worker). The warnings view keeps 50 ms: a receiver may fetch the CAP of a webhook at once.
FETCH_MAX_WAIT_MS = 250


class TopicMirror:
    """``apply(key, value)``, or ``apply(key, value, headers)`` with ``with_headers`` (records whose MAC is
    checked: ``subscriptions``)."""

    def __init__(self, bootstrap: str, topic: str, apply: Callable[..., None],
                 fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS, *, auth: KafkaAuth | None = None,
                 with_headers: bool = False, on_caught_up: Callable[[], None] | None = None) -> None:
        self.bootstrap = bootstrap
        self.on_caught_up = on_caught_up  # called once, at the first fetch that brings nothing (the topic's end)
        self.auth = auth or KafkaAuth()
        self.with_headers = with_headers
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.topic = topic
        self.apply = apply
        self._task: asyncio.Task[Any] | None = None
        self.records = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mirror:{self.topic}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                        auto_offset_reset="earliest",
                                        fetch_max_wait_ms=self.fetch_max_wait_ms, **self.auth.aiokafka())
            try:
                await consumer.start()
                parts = consumer.partitions_for_topic(self.topic)
                while not parts:
                    await asyncio.sleep(0.5)
                    await consumer._client.force_metadata_update()
                    parts = consumer.partitions_for_topic(self.topic)
                tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                while True:
                    batches = await consumer.getmany(timeout_ms=200, max_records=500)
                    if not batches and self.on_caught_up is not None:
                        self.on_caught_up()
                        self.on_caught_up = None
                    for records in batches.values():
                        for rec in records:
                            try:
                                if self.with_headers:
                                    self.apply(rec.key, rec.value, rec.headers)
                                else:
                                    self.apply(rec.key, rec.value)
                            except Exception:  # a bad record must not stop the mirror
                                log.exception("mirror %s: cannot apply record at offset %s", self.topic,
                                              rec.offset)
                            self.records += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("mirror %s failed; restarting in 1 s", self.topic)
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
