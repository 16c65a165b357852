"""The kafka-python producer settings `ews ingest` uses for observation batches and forecast points."""

from __future__ import annotations

from typing import Any


def producer_config(bootstrap: str) -> dict[str, Any]:
    """kafka-python producer settings for the obs batches (BROKER.md §1c, §3; no idempotence on tansu)."""
    return {
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
