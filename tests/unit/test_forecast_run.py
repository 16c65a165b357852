"""Issue 18, point 2: a forecast run (several lead days from one issue time) gives forecast daily Tmax / Tmin per
day, so heat yellow, cold wave and frost are decided from forecasts as Order No. 16 words them, combined with the
observed days where the run starts today."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from warning.pipeline import StationGrader
from warning.rules import load_rules
from warning.shared.regions import RegionTree, StationRegistry

RULES = load_rules()
GRADER = StationGrader(RULES, StationRegistry.load(), RegionTree.load())
ISO = "%Y-%m-%dT%H:%M:%SZ"
# issued 2026-07-13 20:00 BJT (12:00Z): day k of the run is the Beijing day 2026-07-(14 + k), from 16:00Z on
ISSUED = datetime(2026, 7, 13, 12, 0, tzinfo=UTC)


def day_point(k: int, issued: datetime = ISSUED, **values: float) -> dict[str, Any]:
    """A 24 h point for Beijing day k after the issue day (00-24 BJT = 16:00Z-16:00Z)."""
    start = datetime(issued.year, issued.month, issued.day, 16, 0, tzinfo=UTC) + timedelta(days=k)
    return {"station_id": "52889", "issued_at": issued.strftime(ISO), "valid_from": start.strftime(ISO),
            "valid_to": (start + timedelta(hours=24)).strftime(ISO),
            "lead_h": (start - issued).total_seconds() / 3600, "values": values}


def levels(signals: list[dict[str, Any]], hazard: str) -> list[tuple[str, str]]:
    return [(s["level"], s["onset"][:10]) for s in signals if s["hazard"] == hazard]


@pytest.mark.parametrize(("tmax", "want"), [((36.0, 36.5, 36.8), ["yellow"]), ((35.0, 35.0, 35.0), ["yellow"]),
                                            ((36.0, 34.9, 36.8), []), ((36.0, 36.5), [])])
def test_forecast_heat_yellow_needs_three_forecast_days_at_35(tmax: tuple[float, ...], want: list[str]) -> None:
    run = [day_point(k, tmax_c=t) for k, t in enumerate(tmax)]
    got = [lv for lv, _ in levels(GRADER.forecast_run(run), "heat")]
    assert got == want  # the third day (lead 52 h, within yellow's 72 h) completes the run


def test_forecast_heat_yellow_combined_with_observed_days() -> None:
    # issued 08:00 BJT on 07-13: the run starts today (the rest of today, lead 0). Observed 36.1 and 35.4 on the
    # two previous days and 30.0 so far this morning; forecast 35.5 for today: the third day at 35, yellow today
    issued = datetime(2026, 7, 13, 0, 0, tzinfo=UTC)
    today = {"station_id": "52889", "issued_at": issued.strftime(ISO), "valid_from": issued.strftime(ISO),
             "valid_to": "2026-07-13T16:00:00Z", "lead_h": 0.0, "values": {"tmax_c": 35.5}}
    observed = {"2026-07-11": {"tmax": 36.1}, "2026-07-12": {"tmax": 35.4}, "2026-07-13": {"tmax": 30.0}}
    assert levels(GRADER.forecast_run([today], observed), "heat") == [("yellow", "2026-07-13")]
    # an observed day at 34.9 breaks the run; without the observed days the forecast alone is one day
    observed["2026-07-12"]["tmax"] = 34.9
    assert levels(GRADER.forecast_run([today], observed), "heat") == []
    assert levels(GRADER.forecast_run([today]), "heat") == []
    # the day's maximum is never below what was observed: 35.3 observed this morning, forecast 34.0
    observed = {"2026-07-11": {"tmax": 36.1}, "2026-07-12": {"tmax": 35.4}, "2026-07-13": {"tmax": 35.3}}
    today["values"] = {"tmax_c": 34.0}
    assert levels(GRADER.forecast_run([today], observed), "heat") == [("yellow", "2026-07-13")]


def test_forecast_heat_orange_only_within_24h() -> None:
    run = [day_point(0, tmax_c=37.2), day_point(1, tmax_c=37.5)]  # leads 4 h and 28 h
    assert levels(GRADER.forecast_run(run), "heat") == [("orange", "2026-07-13")]


def test_forecast_cold_wave_blue_from_the_48h_drop() -> None:
    # Tmin 10 then 6 then 1.9 (48 h drop 8.1 K, Tmin <= 4), wind force 5 (8.0 m/s): blue on the third day, 52 h ahead
    # -> beyond blue's 48 h; the same run issued a day later has the day at lead 28 h
    run = [day_point(0, tmin_c=10.0, wind_ms=5.0), day_point(1, tmin_c=6.0, wind_ms=6.0),
           day_point(2, tmin_c=1.9, wind_ms=8.0)]
    assert levels(GRADER.forecast_run(run), "cold_wave") == []
    later = ISSUED + timedelta(days=1)
    run = [day_point(-1, later, tmin_c=10.0), day_point(0, later, tmin_c=6.0, wind_ms=6.0),
           day_point(1, later, tmin_c=1.9, wind_ms=8.0)]
    assert levels(GRADER.forecast_run(run), "cold_wave") == [("blue", "2026-07-15")]
    run[-1]["values"]["tmin_c"] = 2.1  # 7.9 K: no cold wave
    assert levels(GRADER.forecast_run(run), "cold_wave") == []


def test_forecast_cold_wave_yellow_from_an_observed_day() -> None:
    # observed today's minimum 12.0; forecast 2.0 for tomorrow (24 h drop 10 K, lead 4 h: within yellow's 24 h),
    # wind force 6: yellow (onsets are UTC: tomorrow starts 07-13T16:00Z)
    observed = {"2026-07-13": {"tmin": 12.0}}
    run = [day_point(0, tmin_c=2.0, wind_ms=10.8)]
    assert levels(GRADER.forecast_run(run, observed), "cold_wave") == [("yellow", "2026-07-13")]
    run = [day_point(0, tmin_c=2.0, wind_ms=10.7)]  # force 5 only: the yellow wind fails; 48 h drop 10 >= 8: blue
    assert levels(GRADER.forecast_run(run, observed), "cold_wave") == [("blue", "2026-07-13")]
    assert levels(GRADER.forecast_run([day_point(0, tmin_c=2.0, wind_ms=10.8)]), "cold_wave") == []  # no history


def test_forecast_frost_ground_minimum_and_horizons() -> None:
    spring = datetime(2026, 4, 9, 12, 0, tzinfo=UTC)
    run = [day_point(0, spring, ground_tmin_c=-3.0), day_point(1, spring, ground_tmin_c=-5.5)]  # leads 4 h, 28 h
    # -3.0 at 4 h: yellow; -5.5 at 28 h: beyond orange's and yellow's 24 h, blue's 48 h holds
    assert levels(GRADER.forecast_run(run), "frost") == [("yellow", "2026-04-09"), ("blue", "2026-04-10")]


def test_forecast_frost_needs_a_growing_season_month() -> None:
    july = [day_point(0, ground_tmin_c=-6.0)]
    assert levels(GRADER.forecast_run(july), "frost") == []


def test_a_point_run_of_one_keeps_the_window_criteria() -> None:
    rain = {"station_id": "52889", "issued_at": "2026-07-14T00:00:00Z", "valid_from": "2026-07-14T01:00:00Z",
            "valid_to": "2026-07-14T04:00:00Z", "lead_h": 1.0, "values": {"precip_mm": 60.0}}
    got = [(s["hazard"], s["level"]) for s in GRADER.forecast(rain)]
    assert ("rainstorm", "orange") in got and not [h for h, _ in got if h in ("heat", "frost", "cold_wave")]


def test_a_rain_forecast_for_today_does_not_regrade_the_observed_day() -> None:
    issued = datetime(2026, 7, 13, 0, 0, tzinfo=UTC)
    rain = {"station_id": "52889", "issued_at": issued.strftime(ISO), "valid_from": "2026-07-13T01:00:00Z",
            "valid_to": "2026-07-13T04:00:00Z", "lead_h": 1.0, "values": {"precip_mm": 5.0}}
    observed = {"2026-07-13": {"tmax": 38.0}}
    assert [s for s in GRADER.forecast_run([rain], observed) if s["hazard"] == "heat"] == []
