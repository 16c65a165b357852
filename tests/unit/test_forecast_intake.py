"""Issue 18: the ``forecasts`` agent groups points into runs (also across messages: a grid file per lead time) and
combines a run that starts today with the station's observed days from its partition state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import orjson

from ingest.columns import observation_columns
from ingest.intake import Intake
from ingest.station_columns import StationColumns
from warning.pipeline import StationGrader, fold_params
from warning.rules import load_rules
from warning.shared.regions import RegionTree, StationRegistry

RULES = load_rules()
REGISTRY = StationRegistry.load()
ISO = "%Y-%m-%dT%H:%M:%SZ"


class Sink:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, signals: list[dict[str, Any]]) -> None:
        self.sent.extend(signals)


class Rejects:
    async def reject(self, raw: bytes, reason: str, source: str, key: str = "?") -> None:
        raise AssertionError(reason)


class Store:
    def __init__(self, columns: StationColumns) -> None:
        self.columns = columns

    def namespaced(self, status: str) -> Store:
        return self

    def get(self, part: int) -> Any:
        return SimpleNamespace(columns=self.columns)


def intake(columns: StationColumns) -> tuple[Intake, Sink]:
    sink = Sink()
    grader = StationGrader(RULES, REGISTRY, RegionTree.load())
    it = Intake(partitions=1, obs_topic=None, forecast_topic=None, rejects=Rejects(),  # type: ignore[arg-type]
                store=Store(columns), grader=grader, signals=sink, clock=None,  # type: ignore[arg-type]
                known_station=REGISTRY.__contains__)
    return it, sink


def day_point(issued: datetime, k: int, **values: float) -> dict[str, Any]:
    start = issued + timedelta(hours=1 + 24 * k)
    return {"station_id": "52889", "issued_at": issued.strftime(ISO), "valid_from": start.strftime(ISO),
            "valid_to": (start + timedelta(hours=24)).strftime(ISO), "lead_h": 1.0 + 24 * k, "values": values}


def heat(sink: Sink) -> list[str]:
    return [s["level"] for s in sink.sent if s["hazard"] == "heat"]


def test_a_run_split_over_two_messages_is_graded_whole() -> None:
    it, sink = intake(StationColumns())
    issued = datetime(2026, 7, 14, 0, 0, tzinfo=UTC)
    first = {"points": [day_point(issued, 0, tmax_c=36.0), day_point(issued, 1, tmax_c=36.5)]}
    asyncio.run(it._forecast_message(orjson.dumps(first), 0))
    assert heat(sink) == []
    asyncio.run(it._forecast_message(orjson.dumps({"points": [day_point(issued, 2, tmax_c=36.8)]}), 0))
    assert heat(sink) == ["yellow"]


def test_a_run_starting_today_is_combined_with_the_observed_days() -> None:
    # observed 36 degC on the two previous days (Tmax reports at 06:00Z, 14:00 BJT), then a forecast for today
    columns = StationColumns()
    t0 = datetime(2026, 7, 12, 6, 0, tzinfo=UTC)
    obs = [{"station_id": "52889", "time": (t0 + timedelta(days=k)).strftime(ISO), "tmax_c": 36.0} for k in (0, 1)]
    cols, _ = observation_columns(obs, known_station=REGISTRY.__contains__)
    columns.apply(cols.station_ids, cols.t, cols.values, **fold_params(RULES))
    it, sink = intake(columns)
    issued = datetime(2026, 7, 14, 0, 0, tzinfo=UTC)  # 08:00 BJT: today is 07-14
    today = {"station_id": "52889", "issued_at": issued.strftime(ISO), "valid_from": issued.strftime(ISO),
             "valid_to": "2026-07-14T12:00:00Z", "lead_h": 0.0, "values": {"tmax_c": 35.5}}
    asyncio.run(it._forecast_message(orjson.dumps({"points": [today]}), 0))
    assert heat(sink) == ["yellow"]
    # without the observed days (another worker's partition) the forecast day alone is no three-day run
    it, sink = intake(StationColumns())
    asyncio.run(it._forecast_message(orjson.dumps({"points": [today]}), 0))
    assert heat(sink) == []
