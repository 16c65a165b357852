"""Apache Kafka's log cleaner really compacts the topics the service declares compacted (``subscriptions``,
``warnings``): many versions of one key become its latest, and a tombstone removes the key (tansu never
compacts)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from warning import kafka_node
from warning.kafka_node import KafkaNode
from warning.shared import topics

pytestmark = pytest.mark.skipif(kafka_node.available() is not None, reason=f"{kafka_node.available()}")

# Segments roll and the cleaner runs within seconds (production keeps Kafka's defaults).
FAST_CLEANING = {"segment.ms": "200", "min.cleanable.dirty.ratio": "0.001", "delete.retention.ms": "100",
                 "min.compaction.lag.ms": "0"}


def _read_all(bootstrap: str, topic: str) -> list[tuple[bytes, bytes | None]]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=1500)
    try:
        return [(m.key, m.value) for m in consumer]
    finally:
        consumer.close()


def test_the_subscriptions_topic_is_compacted_by_the_log_cleaner(tmp_path: Path) -> None:
    with KafkaNode(tmp_path / "kafka") as node:
        topics.ensure_topics(node.bootstrap, 4)
        admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
        try:
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topics.SUBSCRIPTIONS,
                                                configs=FAST_CLEANING)])
            described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topics.SUBSCRIPTIONS)])
        finally:
            admin.close()
        assert "compact" in str(described)
        producer = KafkaProducer(bootstrap_servers=node.bootstrap)
        for version in range(200):
            producer.send(topics.SUBSCRIPTIONS, key=b"sub-a", value=b'{"v": %d}' % version)
            producer.send(topics.SUBSCRIPTIONS, key=b"sub-gone", value=b"{}")
        producer.send(topics.SUBSCRIPTIONS, key=b"sub-gone", value=None)  # deleted
        producer.flush()
        deadline = time.monotonic() + 90
        while True:
            time.sleep(1.0)
            producer.send(topics.SUBSCRIPTIONS, key=b"filler", value=b"{}")  # rolls the active segment
            producer.flush()
            records = _read_all(node.bootstrap, topics.SUBSCRIPTIONS)
            versions = [v for k, v in records if k == b"sub-a"]
            if len(versions) <= 2 or time.monotonic() > deadline:
                break
        producer.close()
    assert versions[-1] == b'{"v": 199}' and len(versions) <= 2, f"{len(versions)} of 200 versions left"
    assert [v for k, v in records if k == b"sub-gone" and v is not None] == []
