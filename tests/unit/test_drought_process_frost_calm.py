"""Issue 18, points 4 and 5: the drought process ends only after N consecutive days without drought (GB/T
20481-2017, N in rules.toml), and one frost rule for both bases (ground minimum, else the air minimum with the
offset on calm days only; the growing-season months for forecasts too)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ingest import quantities
from ingest.quantities import drought_process_days, ground_tmin
from warning import grading
from warning.pipeline import StationGrader
from warning.rules import load_rules
from warning.shared.records import WarningLevel
from warning.shared.regions import RegionTree, StationRegistry

RULES = load_rules()
MIN, END = RULES.drought.process_min_days, RULES.drought.process_end_days
DRY, WET, SEVERE = -1.0, -0.3, -1.6


def test_rules_hold_the_process_days() -> None:
    assert (MIN, END) == (15, 5)
    assert RULES.frost.calm_wind_ms == 5.4


@pytest.mark.parametrize(("days", "want"), [
    ([DRY] * 14, 0),                          # 14 days: no process yet
    ([DRY] * 15, 15),                         # the 15th day starts it (from the first)
    ([-0.5] * 15, 15),                        # -0.5 is light drought (<=)
    ([-0.49] * 15, 0),
    ([DRY] * 20 + [WET], 21),                 # one wet day inside: still in the process
    ([DRY] * 20 + [WET] + [DRY] * 3, 24),
    ([DRY] * 20 + [WET] * 4, 24),             # 4 days without drought: not ended
    ([DRY] * 20 + [WET] * 5, 0),              # 5 in a row: ended
    ([DRY] * 20 + [WET] * 5 + [DRY] * 3, 0),  # a new process needs 15 days again
    ([DRY] * 20 + [None] * 5, 0),             # missing days count as without drought
    ([WET] * 5 + [DRY] * 16, 16),
])
def test_drought_process_days(days: list[float | None], want: int) -> None:
    assert drought_process_days(days, MIN, END) == want


def _state(mci: list[float]) -> dict[str, Any]:
    last = datetime(2026, 6, 30)
    return {"t": "2026-07-01T01:00:00Z", "d": {}, "h": {}, "now": {},
            "mci": {(last - timedelta(days=len(mci) - 1 - i)).date().isoformat(): v for i, v in enumerate(mci)}}


def test_one_shower_inside_a_severe_drought_does_not_end_the_warning() -> None:
    rule = RULES["drought"]
    fold = {"api_decay": 0.85, "ground_offset_c": 2.0}
    history = [SEVERE] * 20
    q = quantities.station_quantities(_state(history), **fold)
    assert grading.grade(rule, q)[0] == WarningLevel.ORANGE
    q = quantities.station_quantities(_state([*history, WET]), **fold)
    assert q["drought_run_days"] == 21 and grading.grade(rule, q)[0] is None  # the shower day: no level ...
    q = quantities.station_quantities(_state([*history, WET, SEVERE]), **fold)
    assert grading.grade(rule, q)[0] == WarningLevel.ORANGE  # ... and orange again the next day (was: 15 days)
    q = quantities.station_quantities(_state(history + [WET] * 5 + [SEVERE]), **fold)
    assert q["drought_run_days"] == 0 and grading.grade(rule, q)[0] is None  # ended after 5 days without


@pytest.mark.parametrize(("gtmin", "tmin", "wind", "want"), [
    (None, 1.0, None, -1.0), (None, 1.0, 5.4, -1.0), (None, 1.0, 5.5, None), (None, 1.0, 12.0, None),
    (-0.5, 1.0, 12.0, -0.5), (None, None, 1.0, None)])
def test_ground_minimum_offset_on_calm_days_only(gtmin: float | None, tmin: float | None, wind: float | None,
                                                  want: float | None) -> None:
    assert ground_tmin(gtmin, tmin, wind, ground_offset_c=2.0, calm_wind_ms=5.4) == want


def test_observed_air_minimum_gives_frost_only_on_a_calm_day() -> None:
    grader = StationGrader(RULES, StationRegistry.load(), RegionTree.load())

    def frost(wind: float) -> list[str]:
        obs = [{"station_id": "52889", "time": "2026-04-10T21:00:00Z", "tmin_c": 1.5, "wind_ms": wind}]
        return [s["level"] for s in grader.observe_batch({}, obs)[2] if s["hazard"] == "frost"]
    assert frost(3.0) == ["blue"]  # ground 1.5 - 2 = -0.5
    assert frost(12.0) == []      # windy: no ground minimum from the air


def test_forecast_frost_from_the_air_minimum_on_calm_days_and_in_season() -> None:
    grader = StationGrader(RULES, StationRegistry.load(), RegionTree.load())

    def frost(month: int, **values: float) -> list[str]:
        issued = datetime(2026, month, 10, 0, 0, tzinfo=UTC)
        p = {"station_id": "52889", "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
             "valid_from": f"2026-{month:02d}-10T10:00:00Z", "valid_to": f"2026-{month:02d}-11T00:00:00Z",
             "lead_h": 10.0, "values": values}
        return [s["level"] for s in grader.forecast_run([p]) if s["hazard"] == "frost"]
    assert frost(4, tmin_c=-1.0, wind_ms=3.0) == ["yellow"]  # ground -3.0: yellow within 24 h
    assert frost(4, tmin_c=-1.0, wind_ms=12.0) == []
    assert frost(4, tmin_c=-1.0) == ["yellow"]  # no wind forecast: the offset applies
    assert frost(7, ground_tmin_c=-6.0) == []  # July is outside the growing-season months
