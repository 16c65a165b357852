"""Issue 18, point 8: the drought signal's forecast branch ("预计未来一周综合气象干旱指数达到重旱"): the station's
observed rain, PET and MCI continued with a forecast run's daily rain, each forecast day's MCI from the station's
parameters, within the level's 168 h horizon and inside a drought process."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest

from indices.drought import mci_fit
from warning.pipeline import StationGrader
from warning.rules import load_rules
from warning.shared.regions import RegionTree, StationRegistry

RULES = load_rules()


@pytest.fixture(scope="module")
def grader() -> StationGrader:
    rng = np.random.default_rng(3)
    hist_days = np.arange(np.datetime64("1981-01-01"), np.datetime64("2011-01-01"))
    rain = np.where(rng.random(hist_days.size) < 0.3, rng.gamma(0.8, 6.0, hist_days.size), 0.0)
    params = mci_fit(rain, hist_days)

    class Clim:
        def t95(self, sid: str) -> None:
            return None

        def ehf85(self, sid: str) -> None:
            return None

        def mci_params(self, sid: str) -> np.ndarray:
            return params
    return StationGrader(RULES, StationRegistry.load(), RegionTree.load(), Clim())


LAST = date(2026, 5, 20)  # the last observed (complete) day


def inputs(mci_history: list[float]) -> dict[str, dict[str, float]]:
    """150 observed days: wet until April, then no rain; PET 5 mm a day; the given MCI history up to LAST."""
    pd = {(LAST - timedelta(days=i)).isoformat(): (0.0 if i < 40 else 2.0) for i in range(150)}
    pe = {(LAST - timedelta(days=i)).isoformat(): 5.0 for i in range(30)}
    mci = {(LAST - timedelta(days=len(mci_history) - 1 - i)).isoformat(): v for i, v in enumerate(mci_history)}
    return {"pd": pd, "pe": pe, "mci": mci}


def week(rain_mm: float, issued_lead0: float = 4.0) -> list[dict[str, Any]]:
    """Daily points for the 7 days after LAST (days of 20:00-20:00 BJT = 12:00Z-12:00Z); the lead of day k is
    issued_lead0 + 24 k hours."""
    start0 = LAST + timedelta(days=1)
    issued = f"{LAST.isoformat()}T08:00:00Z"
    out = []
    for k in range(7):
        vf = f"{(start0 + timedelta(days=k - 1)).isoformat()}T12:00:00Z"
        vt = f"{(start0 + timedelta(days=k)).isoformat()}T12:00:00Z"
        out.append({"station_id": "52889", "issued_at": issued, "valid_from": vf, "valid_to": vt,
                    "lead_h": issued_lead0 + 24 * k, "values": {"precip_mm": rain_mm}})
    return out


def drought(grader: StationGrader, run: list[dict[str, Any]], history: list[float]) -> list[tuple[str, Any]]:
    return [(s["level"], round(s["value"], 2)) for s in grader.forecast_run(run, {}, inputs(history))
            if s["hazard"] == "drought"]


def test_a_dry_forecast_week_inside_a_drought_process_gives_the_forecast_drought_signal(grader: StationGrader
                                                                                        ) -> None:
    got = drought(grader, week(0.0), [-1.2] * 20)
    assert len(got) == 7 and {lv for lv, _ in got} <= {"orange", "red"}
    assert all(v <= -1.5 for _, v in got)


def test_rain_in_the_forecast_week_gives_no_drought_signal(grader: StationGrader) -> None:
    assert drought(grader, week(25.0), [-1.2] * 20) == []


def test_no_process_no_drought_warning(grader: StationGrader) -> None:
    # MCI history wet (no process): 7 forecast days cannot make the 15 days a process needs
    assert drought(grader, week(0.0), [0.2] * 20) == []


def test_beyond_the_week_no_drought_signal(grader: StationGrader) -> None:
    assert drought(grader, week(0.0, issued_lead0=170.0), [-1.2] * 20) == []


def test_without_station_parameters_no_forecast_drought() -> None:
    plain = StationGrader(RULES, StationRegistry.load(), RegionTree.load())
    assert [s for s in plain.forecast_run(week(0.0), {}, inputs([-1.2] * 20)) if s["hazard"] == "drought"] == []
