"""`ews ingest --format grid`: forecast grids (NetCDF, GRIB through cfgrib) -> the `forecast` topic.

``--grid-to`` chooses what a grid becomes (default ``both``):

* ``stations``: ForecastPoints at the registry stations (interpolated), in the worker's batch format
  ``{"points": [...]}`` (one partition's stations per message, like `obs`), validated exactly as pushed forecasts;
* ``counties``: every cell inside a county graded and rolled up to county levels (``area_grader``, which the
  ``ews`` command passes in: ``warning.grid_grading``), as GridArea records ``{"areas": [...]}`` keyed and
  partitioned by county code (``ingest.validate.validate_grid_area``);
* ``both``: the two, so station and cell signals of one county meet in one chain.

Rejects go to `obs.rejected`."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import IO, Any

import orjson

from ingest.formats.grids import GridStats, read_forecast_points
from ingest.validate import ObservationError, validate_forecast, validate_grid_area
from warning.shared import running
from warning.shared.regions import RegionTree, StationRegistry
from warning.shared.topics import FORECAST, OBS_REJECTED, ensure_topics, partition_for

BATCH = 1000
AREA_BATCH = 20  # GridArea records a message (each up to 10 polygons of 100 points: well under Kafka's 1 MB)
GRID_TO = ("both", "counties", "stations")
#: (grid file, stats) -> GridArea dicts: the cell grading ``ews ingest`` passes in (warning.grid_grading)
AreaGrader = Callable[[str, dict[str, Any]], Iterator[dict[str, Any]]]


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


def grid_areas(paths: list[str], grader: AreaGrader, tree: RegionTree, hazards: frozenset[str] | None,
               stats: dict[str, Any]) -> Iterator[dict[str, Any] | tuple[str, str]]:
    """Validated GridArea dicts of every file's cells, or (reason, raw) for rejects."""
    def county(code: str) -> bool:
        region = tree.region(code)
        return region is not None and region.level == "county"
    for path in paths:
        try:
            for area in grader(path, stats):
                stats["areas"] += 1
                try:
                    yield validate_grid_area(area, known_county=county,
                                             known_hazard=None if hazards is None else hazards.__contains__)
                except ObservationError as exc:
                    yield str(exc), json.dumps(area, default=str)
        except Exception as exc:  # an unreadable file: the others are still read
            stats["errors"].append(f"{path}: {exc}")


def run_grid_ingest(paths: list[str], *, bootstrap: str | None, partitions: int | None, dry_run: bool,
                    out: IO[str], err: IO[str], status: str = "actual", grid_to: str = "both",
                    area_grader: AreaGrader | None = None, hazards: frozenset[str] | None = None) -> int:
    if grid_to not in GRID_TO:
        err.write(f"ews ingest: --grid-to must be one of {', '.join(GRID_TO)}\n")
        return 2
    if grid_to != "stations" and area_grader is None:
        if grid_to == "counties":
            err.write("ews ingest: cell grading (--grid-to counties) needs the ews command's grader\n")
            return 2
        grid_to = "stations"  # a library caller without the grader: the station points alone
    registry = StationRegistry.load()
    stats: dict[str, Any] = {"read": 0, "published": 0, "rejected": 0, "errors": [], "skipped_stations": 0,
                             "areas": 0, "areas_published": 0}

    def records() -> Iterator[tuple[str, dict[str, Any] | tuple[str, str]]]:
        if grid_to != "counties":
            for item in forecast_points(paths, registry, stats):
                yield "point", item
        if grid_to != "stations":
            assert area_grader is not None
            for item in grid_areas(paths, area_grader, RegionTree.load(), hazards, stats):
                yield "area", item

    if dry_run:
        for kind, item in records():
            if isinstance(item, tuple):
                stats["rejected"] += 1
            else:
                out.write(json.dumps(item) + "\n")
                stats["published" if kind == "point" else "areas_published"] += 1
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
    buffers: dict[tuple[str, int], list[dict[str, Any]]] = {}

    def flush(kind: str, part: int) -> None:
        batch = buffers.pop((kind, part), [])
        if batch:
            field, key, counter = ("points", "station_id", "published") if kind == "point" else \
                ("areas", "county_code", "areas_published")
            msg: dict[str, Any] = {field: batch, "accepted_at": time.time()}
            if status != "actual":  # the batch's status (ews ingest --status): absent is actual
                msg["status"] = status
            producer.send(FORECAST, value=orjson.dumps(msg), key=batch[0][key].encode(), partition=part)
            stats[counter] += len(batch)

    try:
        for kind, item in records():
            if isinstance(item, tuple):
                reason, raw = item
                producer.send(OBS_REJECTED, key=b"?", value=orjson.dumps(
                    {"reason": reason, "source": "ews ingest --format grid", "raw": raw}))
                stats["rejected"] += 1
                continue
            part = partition_for(item["station_id" if kind == "point" else "county_code"], n_parts)
            buffers.setdefault((kind, part), []).append(item)
            if len(buffers[(kind, part)]) >= (BATCH if kind == "point" else AREA_BATCH):
                flush(kind, part)
        for kind, part in list(buffers):
            flush(kind, part)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=5)
    err.write(json.dumps(stats) + "\n")
    return 2 if stats["errors"] else 0
