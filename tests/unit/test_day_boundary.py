"""Issue 18, point 3: daily extremes and totals end at the configured day boundary (default 20:00 Beijing time,
as CMA surface records), the same in the readable reference, the columnar hot path, forecasts and climatology."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ingest import quantities
from ingest.columns import observation_columns
from ingest.station_columns import StationColumns
from warning.pipeline import StationGrader
from warning.rules import load_rules, parse_rules
from warning.shared.regions import RegionTree, StationRegistry

RULES = load_rules()
REGISTRY = StationRegistry.load()
FOLD = {"api_decay": RULES.flash_flood.api_decay, "ground_offset_c": RULES.frost.air_to_ground_offset_c}

# A cold front in the evening of 01-10 (Beijing time): the minimum was 12 degC up to 20:00 BJT, 11 at 21:00 BJT,
# 2 in the early morning of 01-11, wind force 6 on the 11th.
FRONT = [("2026-01-09T22:00:00Z", 12.0, 4.0), ("2026-01-10T06:00:00Z", 16.0, 4.0),  # 06:00, 14:00 BJT 01-10
         ("2026-01-10T13:00:00Z", 11.0, 9.0),  # 21:00 BJT 01-10: the front arrives
         ("2026-01-10T21:00:00Z", 2.0, 11.0), ("2026-01-11T06:00:00Z", 3.0, 11.0)]  # 05:00, 14:00 BJT 01-11


def front_reports() -> list[dict[str, Any]]:
    return [{"station_id": "52889", "time": t, "air_temp_c": a, "wind_ms": w} for t, a, w in FRONT]


@pytest.fixture
def boundary() -> Iterator[Any]:
    yield quantities.set_day_boundary
    quantities.set_day_boundary(RULES.days.boundary_bjt_h)


def reference(obs: list[dict[str, Any]]) -> dict[str, float]:
    st = None
    for o in obs:
        st = quantities.update_station(st, o) or st
    assert st is not None
    return quantities.station_quantities(st, **FOLD)


def columns(obs: list[dict[str, Any]]) -> dict[str, float]:
    cols, _ = observation_columns(obs, known_station=REGISTRY.__contains__)
    done = StationColumns().apply(cols.station_ids, cols.t, cols.values, **FOLD)
    return {k: float(v[-1]) for k, v in done.quantities.items() if v[-1] == v[-1]}


def test_the_packaged_boundary_is_20_bjt() -> None:
    assert RULES.days.boundary_bjt_h == 20
    assert quantities.station_day("2026-07-14T11:59:00Z") == "2026-07-14"  # 19:59 BJT
    assert quantities.station_day("2026-07-14T12:00:00Z") == "2026-07-15"  # 20:00 BJT: the next day's record


def test_an_evening_front_counts_the_whole_drop_at_20_bjt(boundary: Any) -> None:
    q = reference(front_reports())
    assert q["tmin_drop_24h"] == 10.0 and q["tmin_day"] == 2.0  # 12 -> 2: cold-wave yellow's 10 K
    assert columns(front_reports())["tmin_drop_24h"] == 10.0
    grader = StationGrader(RULES, REGISTRY, RegionTree.load())
    levels = [s["level"] for s in grader.observe_batch({}, front_reports())[2] if s["hazard"] == "cold_wave"]
    assert levels[-1] == "yellow"
    # with the calendar day (boundary 0) the 21:00 report lands on the 10th: 11 -> 2, a 9 K drop, only blue
    boundary(0)
    q = reference(front_reports())
    assert q["tmin_drop_24h"] == 9.0 and columns(front_reports())["tmin_drop_24h"] == 9.0
    grader = StationGrader(parse_rules({**_doc(), "days": {"boundary_bjt_h": 0}}), REGISTRY, RegionTree.load())
    levels = [s["level"] for s in grader.observe_batch({}, front_reports())[2] if s["hazard"] == "cold_wave"]
    assert levels[-1] == "blue"


def test_forecast_days_use_the_same_boundary() -> None:
    from datetime import UTC, datetime

    assert quantities.day_of(datetime(2026, 7, 14, 12, 0, tzinfo=UTC)) == "2026-07-15"
    assert quantities.day_of(datetime(2026, 7, 14, 11, 59, tzinfo=UTC)) == "2026-07-14"


def test_climatology_days_use_the_same_boundary() -> None:
    from warning.climatology import _bjt_day

    assert _bjt_day(datetime_s("2026-07-14T12:00:00Z")) - _bjt_day(datetime_s("2026-07-14T11:59:00Z")) == 1


def test_bad_boundary_refused() -> None:
    from warning.rules import RulesError

    with pytest.raises(RulesError, match="boundary_bjt_h"):
        parse_rules({**_doc(), "days": {"boundary_bjt_h": 24}})


def datetime_s(iso: str) -> float:
    return quantities.parse_utc(iso).timestamp()


def _doc() -> dict[str, Any]:
    import tomllib
    from pathlib import Path

    return tomllib.loads(Path(__file__).parents[2].joinpath("warning/data/rules.toml").read_text())
