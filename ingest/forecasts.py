"""`ews ingest --format grid`: forecast grids (NetCDF, GRIB through cfgrib) -> ForecastPoints at the registry
stations -> the `forecast` topic, in the worker's batch format ``{"points": [...]}`` (one partition's stations per
message, like `obs`). Rows are validated exactly as pushed forecasts are; rejects go to `obs.rejected`."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import IO, Any

import orjson

from ingest.formats.grids import GridStats, read_forecast_points
from ingest.validate import ObservationError, validate_forecast
from warning.shared import running
from warning.shared.regions import StationRegistry
from warning.shared.topics import FORECAST, OBS_REJECTED, ensure_topics, partition_for

BATCH = 1000


def forecast_points(paths: list[str], registry: StationRegistry, stats: dict[str, Any]
                    ) -> Iterator[dict[str, Any] | tuple[str, str]]:
    """Validated ForecastPoint dicts, or (reason, raw) for rejects; per-file failures are recorded in stats."""
    for path in paths:
        gstats = GridStats()
        try:
            for fp in read_forecast_points(path, registry.stations(), stats=gstats):
                raw = asdict(fp)
                stats["read"] += 1
                try:
                    yield validate_forecast(raw, known_station=lambda s: s in registry)
                except ObservationError as exc:
                    yield str(exc), json.dumps(raw, default=str)
        except Exception as exc:  # an unreadable file: the others are still read
            stats["errors"].append(f"{path}: {exc}")
        stats["skipped_stations"] += len(getattr(gstats, "skipped", []) or [])


def run_grid_ingest(paths: list[str], *, bootstrap: str | None, partitions: int | None, dry_run: bool,
                    out: IO[str], err: IO[str], status: str = "actual") -> int:
    registry = StationRegistry.load()
    stats: dict[str, Any] = {"read": 0, "published": 0, "rejected": 0, "errors": [], "skipped_stations": 0}
    if dry_run:
        for item in forecast_points(paths, registry, stats):
            if isinstance(item, tuple):
                stats["rejected"] += 1
            else:
                out.write(json.dumps(item) + "\n")
                stats["published"] += 1
        err.write(json.dumps(stats) + "\n")
        return 2 if stats["errors"] else 0
    try:  # --bootstrap, KAFKA_BOOTSTRAP, else the running service's broker (its data dir)
        bootstrap = running.find_bootstrap(bootstrap)
    except running.NoRunningService as exc:
        err.write(f"ews ingest: {exc}; or use --dry-run\n")
        return 2
    from kafka import KafkaProducer

    from ingest.kafka_producer import producer_config
    from warning.shared.kafka_auth import KafkaAuth

    n_parts = partitions or int(os.environ.get("EWS_PARTITIONS", "4"))
    auth = KafkaAuth.from_env(os.environ)
    ensure_topics(bootstrap, n_parts, auth=auth)
    producer = KafkaProducer(**producer_config(bootstrap, auth))
    buffers: dict[int, list[dict[str, Any]]] = {}

    def flush(part: int) -> None:
        batch = buffers.pop(part, [])
        if batch:
            msg: dict[str, Any] = {"points": batch, "accepted_at": time.time()}
            if status != "actual":  # the batch's status (ews ingest --status): absent is actual
                msg["status"] = status
            producer.send(FORECAST, value=orjson.dumps(msg), key=batch[0]["station_id"].encode(), partition=part)
            stats["published"] += len(batch)

    try:
        for item in forecast_points(paths, registry, stats):
            if isinstance(item, tuple):
                reason, raw = item
                producer.send(OBS_REJECTED, key=b"?", value=orjson.dumps(
                    {"reason": reason, "source": "ews ingest --format grid", "raw": raw}))
                stats["rejected"] += 1
                continue
            part = partition_for(item["station_id"], n_parts)
            buffers.setdefault(part, []).append(item)
            if len(buffers[part]) >= BATCH:
                flush(part)
        for part in list(buffers):
            flush(part)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=5)
    err.write(json.dumps(stats) + "\n")
    return 2 if stats["errors"] else 0
