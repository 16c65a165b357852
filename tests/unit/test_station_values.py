"""The console's station values (warning.station_values): the summary of a partition's station state, the view
that merges the `stations.latest` records (newest report wins), and the publisher (only changed partitions)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson

from ingest.columns import observation_columns
from ingest.station_columns import StationColumns
from warning.pipeline import fold_params
from warning.rules import load_rules
from warning.shared.regions import StationRegistry
from warning.station_values import SPARK_DAYS, StationValuesPublisher, StationValuesView, summarise

ISO = "%Y-%m-%dT%H:%M:%SZ"
RULES = load_rules()
REGISTRY = frozenset(s.station_id for s in StationRegistry.load())


def folded(reports: list[dict[str, object]]) -> StationColumns:
    columns = StationColumns()
    cols, _ = observation_columns(reports, known_station=REGISTRY.__contains__)
    columns.apply(cols.station_ids, cols.t, cols.values, **fold_params(RULES))
    return columns


def test_summary_has_the_latest_values_and_the_last_days() -> None:
    t0 = datetime(2026, 7, 12, 6, 0, tzinfo=UTC)  # 14:00 Beijing time
    reports = [{"station_id": "52418", "time": (t0 + timedelta(days=k)).strftime(ISO), "tmax_c": 36.0 + k,
                "precip_mm": 2.0 * k, "precip_period_h": 24, "wind_ms": 5.0 + k} for k in range(3)]
    s = summarise(folded(reports))["52418"]
    assert s["time"] == "2026-07-14T06:00:00Z" and s["day"] == "2026-07-14"
    assert s["latest"]["tmax_c"] == 38.0 and s["latest"]["wind_ms"] == 7.0
    assert len(s["days"]) == SPARK_DAYS and s["days"][-1]["day"] == "2026-07-14"
    assert [d["tmax_c"] for d in s["days"][-3:]] == [36.0, 37.0, 38.0]
    assert s["days"][0]["tmax_c"] is None  # older than the 3-day ring: no extreme, not made up
    assert orjson.loads(orjson.dumps(s)) == s  # JSON as published


def test_view_keeps_the_newest_report_of_a_station_across_records() -> None:
    view = StationValuesView()
    old = {"time": "2026-07-14T05:00:00Z", "latest": {}, "days": []}
    new = {"time": "2026-07-14T06:00:00Z", "latest": {"tmax_c": 40.6}, "days": []}
    view.mirror(b"1", orjson.dumps({"stations": {"52418": new}}))
    view.mirror(b"2", orjson.dumps({"stations": {"52418": old, "52533": old}}))  # a previous owner, once more
    got = {s["station_id"]: s for s in view.stations()}
    assert got["52418"]["latest"] == {"tmax_c": 40.6} and set(got) == {"52418", "52533"}
    view.mirror(b"2", None)  # tombstone
    assert [s["station_id"] for s in view.stations()] == ["52418"]
    view.mirror(b"3", b"not json")  # ignored, logged
    assert len(view.stations()) == 1


def test_publisher_sends_only_owned_loaded_and_changed_partitions() -> None:
    sent: list[tuple[str, bytes, bytes]] = []
    columns = {0: folded([{"station_id": "52418", "time": "2026-07-14T06:00:00Z", "tmax_c": 40.6}])}

    async def send(topic: str, key: bytes, value: bytes) -> None:
        sent.append((topic, key, value))

    pub = StationValuesPublisher("stations.latest", lambda: [0, 1], columns.get, send)
    assert asyncio.run(pub.publish()) == 1  # partition 1 owned but not loaded: nothing
    assert sent[0][0] == "stations.latest" and sent[0][1] == b"0:0"  # partition 0, block 0
    assert asyncio.run(pub.publish()) == 0  # unchanged: not sent again
    view = StationValuesView()
    view.mirror(sent[0][1], sent[0][2])
    assert view.stations()[0]["latest"]["tmax_c"] == 40.6


def test_a_big_partition_goes_out_in_blocks_under_a_megabyte() -> None:
    ids = [f"{60000 + i:05d}" for i in range(600)]
    columns = StationColumns()
    cols, _ = observation_columns([{"station_id": sid, "time": "2026-07-14T06:00:00Z", "tmax_c": 30.0, "wind_ms": 3.0}
                                   for sid in ids], known_station=lambda s: True)
    columns.apply(cols.station_ids, cols.t, cols.values, **fold_params(RULES))
    sent: list[tuple[str, bytes, bytes]] = []

    async def send(topic: str, key: bytes, value: bytes) -> None:
        sent.append((topic, key, value))

    asyncio.run(StationValuesPublisher("stations.latest", lambda: [3], {3: columns}.get, send).publish())
    assert [k for _, k, _ in sent] == [b"3:0", b"3:1", b"3:2"]  # 256 slots a block
    assert max(len(v) for _, _, v in sent) < 1_000_000
    view = StationValuesView()
    for _, k, v in sent:
        view.mirror(k, v)
    assert len(view.stations()) == 600
