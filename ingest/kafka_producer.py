"""The kafka-python producer settings `ews ingest` uses for observation batches and forecast points."""

from __future__ import annotations

import os
from typing import Any

from warning.shared.kafka_auth import KafkaAuth


def producer_config(bootstrap: str, auth: KafkaAuth | None = None) -> dict[str, Any]:
    """kafka-python producer settings for the obs batches (BROKER.md §1c, §3; no idempotence on tansu), with
    TLS and SASL from ``auth`` (default: the EWS_KAFKA_* environment)."""
    auth = auth if auth is not None else KafkaAuth.from_env(os.environ)
    return {
        **auth.kafka_python(),
        "bootstrap_servers": bootstrap,
        "client_id": "ews-ingest",
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 1 << 20,
        "retries": 5,
        "retry_backoff_ms": 200,
        "enable_idempotence": False,
        "max_in_flight_requests_per_connection": 1,  # a retry cannot reorder a station's batches
        "request_timeout_ms": 30000,
        "max_block_ms": 30000,
    }
