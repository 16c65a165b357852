"""The pipeline's fast path computes some quantities itself that the cited kernels in ``indices/`` also compute:
these property tests hold the two equal, so each quantity has one definition.

Both station-state paths run over the same reports: ``ingest.quantities`` (the readable per-report reference) and
``ingest.station_columns`` (the worker's columnar hot path; tests/unit/test_station_columns.py holds it equal to the
reference). Their quantities are compared with the kernels run on the whole series:

* rolling rainfall ``rain_<N>h``  == ``indices.precip.rolling_accumulation`` (where the reports cover the window:
  the fast path counts an hour without a report as dry, the kernel as missing);
* ``api_mm``                      == ``indices.precip.antecedent_precipitation_index(window=10)`` (complete days);
* ``tmin_drop_24h / 48h``         == ``indices.wind.tmin_drop`` (one definition: the highest previous minimum);
* ``ground_tmin_day``             == ``indices.frost.effective_ground_tmin`` (the rules' offset);
* ``ehf_severity``                == ``indices.heat`` daily mean -> excess heat factor -> severity.

And the levels the rules give from those quantities (``warning.grading.grade``) equal the signal kernels run with
the criteria ``warning.rule_params`` reads from the same rules: rainstorm, gale, cold wave, frost, sandstorm and the
heat hot spell. (The fast path computes no heat index, humidex or apparent temperature: nothing to compare there.)
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from indices import frost, heat, precip, wind
from ingest import quantities
from ingest.columns import observation_columns
from ingest.station_columns import SlotInfo, StationColumns
from warning import grading, rule_params
from warning.rules import load_rules
from warning.shared.records import WarningLevel

RULES = load_rules()
OFFSET, DECAY = RULES.frost.air_to_ground_offset_c, RULES.flash_flood.api_decay
FOLD = {"api_decay": DECAY, "ground_offset_c": OFFSET}
SID = "52889"  # Lanzhou
LAT = 36.05
T0 = datetime(2026, 7, 1, tzinfo=UTC)
NOW = datetime(2030, 1, 1, tzinfo=UTC)
NAN = math.nan
EXAMPLES = settings(max_examples=30, deadline=None, database=None)

tenths = st.integers(-200, 200).map(lambda k: k / 10)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Paths:
    """One station's reports (in time order) through both state paths: each path's quantities after each report."""

    def __init__(self, reports: list[dict[str, Any]], t95: float | None = None, ehf85: float | None = None) -> None:
        self.reference: list[dict[str, float]] = []
        self.states: list[dict[str, Any]] = []
        state = None
        for o in reports:
            new = quantities.update_station(state, o)
            assert new is not None
            state = quantities.complete_day(state, new, LAT, None)
            self.states.append(state)
            self.reference.append(quantities.station_quantities(state, t95=t95, ehf85=ehf85, **FOLD))
        cols, rejected = observation_columns(reports, now=NOW)
        assert not rejected
        columns = StationColumns(lambda sid: SlotInfo(LAT, t95, ehf85))
        self.applied = columns.apply(cols.station_ids, cols.t, cols.values, **FOLD)
        self.columns = [{k: float(v[i]) for k, v in self.applied.quantities.items() if not math.isnan(v[i])}
                        for i in range(len(reports))]

    def both(self) -> list[tuple[str, list[dict[str, float]]]]:
        return [("reference", self.reference), ("columns", self.columns)]

    def series(self, path: str, i: int) -> grading.Series:
        """The daily series of report i (for consecutive-day conditions), from that path's state."""
        if path == "reference":
            return lambda name: quantities.daily_series(self.states[i], name, ground_offset_c=OFFSET)
        return lambda name: self.applied.series(i, name)


def agree(fast: dict[str, float], name: str, kernel: float) -> None:
    """The fast path's quantity equals the kernel's value; absent exactly where the kernel gives NaN."""
    if math.isnan(kernel):
        assert name not in fast, (name, fast.get(name))
    else:
        assert fast[name] == pytest.approx(kernel, rel=1e-9, abs=1e-9), name


def level_code(g: Any) -> int:
    """grading.grade's result as a kernel level code (0: no level or no judgement)."""
    return 0 if g is None or g[0] is None else int(g[0])


def kernel_code(x: float) -> int:
    return 0 if math.isnan(x) else int(x)


# ---- rainfall ------------------------------------------------------------------------------------------------

def hourly(rows: list[tuple[int, float, bool]]) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray, np.ndarray]:
    """Reports on whole hours from (gap hours, amount or NaN, period = gap?): the reports, their end times,
    amounts and periods (h) as the kernel takes them."""
    reports, ends, amounts, periods = [], [], [], []
    h = 0
    for gap, amount, whole_gap in rows:
        h += gap
        period = gap if whole_gap else 1
        t = T0 + timedelta(hours=h)
        o: dict[str, Any] = {"station_id": SID, "time": iso(t), "air_temp_c": 20.0}
        if not math.isnan(amount):
            o.update(precip_mm=amount, precip_period_h=period)
        reports.append(o)
        ends.append(np.datetime64(t.replace(tzinfo=None), "s"))
        amounts.append(amount)
        periods.append(float(period))
    return reports, np.array(ends), np.array(amounts), np.array(periods)


@EXAMPLES
@given(st.lists(st.tuples(st.sampled_from([1, 1, 1, 1, 2, 3]),
                          st.one_of(st.integers(0, 300).map(lambda k: k / 10), st.just(NAN)), st.booleans()),
                min_size=1, max_size=60))
def test_rolling_rain_equals_rolling_accumulation(rows: list[tuple[int, float, bool]]) -> None:
    reports, ends, amounts, periods = hourly(rows)
    paths = Paths(reports)
    for n in quantities.RAIN_WINDOWS_H:
        acc = np.asarray(precip.rolling_accumulation(amounts, n, times=ends, period_h=periods))
        for i, value in enumerate(acc.tolist()):
            if math.isnan(value):
                continue  # the window is not covered by reports: the fast path counts the gap as dry
            for _, qs in paths.both():
                assert qs[i][f"rain_{n}h"] == pytest.approx(value, rel=1e-9, abs=1e-9), (n, i)


@EXAMPLES
@given(st.lists(st.tuples(st.sampled_from([1, 1, 1, 2]), st.one_of(st.integers(0, 60).map(float), st.just(NAN))),
                min_size=1, max_size=40))
def test_rainstorm_level_equals_rainstorm_signal_level(rows: list[tuple[int, float]]) -> None:
    """Hourly reports of whole millimetres (sums are exact in both paths): the rules' level is the kernel's."""
    reports, ends, amounts, periods = hourly([(gap, amount, False) for gap, amount in rows])
    paths = Paths(reports)
    criteria = rule_params.rainstorm_criteria(RULES)
    windows = {hours for hours, _ in criteria.values()}
    acc = {w: precip.rolling_accumulation(amounts, w, times=ends, period_h=periods) for w in windows}
    levels = np.asarray(precip.rainstorm_signal_level(acc, criteria))
    covered = np.logical_and.reduce([~np.isnan(np.asarray(a)) for a in acc.values()])
    for path, qs in paths.both():
        for i in np.flatnonzero(covered).tolist():
            assert level_code(grading.grade(RULES["rainstorm"], qs[i])) == kernel_code(levels[i]), (path, i)


@EXAMPLES
@given(st.lists(st.integers(0, 400).map(lambda k: k / 10), min_size=10, max_size=30),
       st.lists(st.integers(0, 29), max_size=2))
def test_api_equals_antecedent_precipitation_index(rain: list[float], missing: list[int]) -> None:
    """One report a day with the day's rain (some days unreported): API_t = sum_i k^i P_t-i over 10 days."""
    days = [NAN if d in missing else p for d, p in enumerate(rain)]
    reported = [d for d, p in enumerate(days) if not math.isnan(p)]
    paths = Paths([{"station_id": SID, "time": iso(T0 + timedelta(days=d, hours=4)), "precip_mm": days[d],
                    "precip_period_h": 1} for d in reported])
    api = np.asarray(precip.antecedent_precipitation_index(np.array(days), DECAY, window=quantities.API_DAYS))
    for _, qs in paths.both():
        for i, d in enumerate(reported):
            if not math.isnan(api[d]):
                assert qs[i]["api_mm"] == pytest.approx(float(api[d]), rel=1e-9, abs=1e-9), d


# ---- daily temperature, wind: drops, ground minimum, cold wave, frost, gale, hot spell ---------------------------

# the rules' own thresholds are drawn often, so that every comparison is tried at its edge
GALE, COLD = rule_params.gale_criteria(RULES), rule_params.cold_wave_criteria(RULES)
TMIN_EDGES = sorted({c.tmin_max_c for c in COLD.values()} | set(rule_params.frost_criteria(RULES).values()))
WIND_EDGES = sorted({v for pair in GALE.values() for v in pair} | {c.wind_min_ms for c in COLD.values()})
day_values = st.tuples(st.one_of(tenths, st.sampled_from(TMIN_EDGES), st.just(NAN)),                 # tmin
                       st.one_of(tenths, st.sampled_from(TMIN_EDGES), st.just(NAN)),                 # ground tmin
                       st.one_of(st.integers(0, 400).map(lambda k: k / 10), st.sampled_from(WIND_EDGES)),  # wind
                       st.one_of(st.integers(0, 450).map(lambda k: k / 10), st.sampled_from(WIND_EDGES),
                                 st.just(NAN)),                                                     # gust
                       st.one_of(st.integers(300, 420).map(lambda k: k / 10), st.just(35.0)))       # tmax


def daily(days: list[tuple[float, float, float, float, float] | None]
          ) -> tuple[list[dict[str, Any]], list[int], dict[str, np.ndarray]]:
    """One report a day (None: no report that day): the reports, their day indexes and the day series."""
    reports, reported = [], []
    cols = {k: np.full(len(days), NAN) for k in ("tmin", "gtmin", "wind", "gust", "tmax")}
    for d, v in enumerate(days):
        if v is None:
            continue
        o: dict[str, Any] = {"station_id": SID, "time": iso(T0 + timedelta(days=d, hours=4))}
        for key, element, x in zip(("tmin", "gtmin", "wind", "gust", "tmax"),
                                   ("tmin_c", "ground_tmin_c", "wind_ms", "gust_ms", "tmax_c"), v, strict=True):
            if not math.isnan(x):
                o[element] = x
                cols[key][d] = x
        reports.append(o)
        reported.append(d)
    return reports, reported, cols


@EXAMPLES
@given(st.lists(st.one_of(day_values, day_values, day_values, st.none()), min_size=1, max_size=12))
@example([(12.0, NAN, 8.0, NAN, 35.0), (8.0, NAN, 8.0, NAN, 35.0), (4.0, NAN, 8.0, NAN, 35.0)])  # blue at its edges
@example([(14.0, NAN, 3.0, NAN, 36.0), (4.0, NAN, 10.8, 13.9, 35.0), None, (0.0, -3.0, 8.0, NAN, 35.0)])
def test_daily_quantities_and_levels_equal_kernels(days: list[tuple[float, float, float, float, float] | None]) -> None:
    reports, reported, s = daily(days)
    if not reports:
        return
    paths = Paths(reports)
    drop24, drop48 = np.asarray(wind.tmin_drop(s["tmin"], 24)), np.asarray(wind.tmin_drop(s["tmin"], 48))
    calm = RULES.frost.calm_wind_ms
    ground = np.asarray(frost.effective_ground_tmin(s["tmin"], s["gtmin"], air_ground_offset_c=OFFSET,
                                                    wind_max_ms=s["wind"], calm_wind_ms=calm))
    cold = np.asarray(wind.cold_wave_signal_level(s["tmin"], s["wind"],
                                                  criteria=rule_params.cold_wave_criteria(RULES)))
    frost_level = np.asarray(frost.frost_intensity(s["tmin"], s["gtmin"], air_ground_offset_c=OFFSET,
                                                   criteria=rule_params.frost_criteria(RULES), wind_max_ms=s["wind"],
                                                   calm_wind_ms=calm))
    gale = np.asarray(wind.gale_signal_level(s["wind"], s["gust"], criteria=rule_params.gale_criteria(RULES)))
    hot_c, hot_days = rule_params.hot_spell_criterion(RULES)
    spell = np.asarray(heat.hot_spell(s["tmax"], hot_c, min_days=hot_days, output="signal"))
    yellow = RULES["heat"].level_rule(WarningLevel.YELLOW)
    for path, qs in paths.both():
        for i, d in enumerate(reported):
            q = qs[i]
            agree(q, "tmin_drop_24h", float(drop24[d]))
            agree(q, "tmin_drop_48h", float(drop48[d]))
            agree(q, "ground_tmin_day", float(ground[d]))
            assert level_code(grading.grade(RULES["cold_wave"], q)) == kernel_code(cold[d]), (path, d)
            assert level_code(grading.grade(RULES["frost"], q)) == kernel_code(frost_level[d]), (path, d)
            assert level_code(grading.grade(RULES["gale"], q)) == kernel_code(gale[d]), (path, d)
            holds = grading.level_holds(yellow, q, paths.series(path, i))
            assert bool(holds) == (spell[d] == 1.0), (path, d)


def test_tmin_drop_has_one_definition() -> None:
    """The case that told the two definitions apart: 48 h is today's minimum against the higher of the two
    previous days' (a plain two-day difference would give 3 - 0 = 3 here, not 20)."""
    days = [(3.0, NAN, 5.0, NAN, 35.0), (20.0, NAN, 5.0, NAN, 35.0), (0.0, NAN, 8.0, NAN, 35.0)]
    reports, _, s = daily(list(days))
    q = Paths(reports).reference[-1]
    assert q["tmin_drop_48h"] == float(np.asarray(wind.tmin_drop(s["tmin"], 48))[-1]) == 20.0
    assert level_code(grading.grade(RULES["cold_wave"], q)) == int(WarningLevel.BLUE)


# ---- sandstorm (instantaneous values) ------------------------------------------------------------------------

@EXAMPLES
@given(st.lists(st.tuples(st.one_of(st.integers(1, 2000).map(lambda k: k * 5.0),
                                    st.sampled_from(sorted(rule_params.sandstorm_criteria(RULES).values()))),
                          st.one_of(st.integers(0, 200).map(lambda k: k / 10), st.just(5.0)),
                          st.one_of(st.integers(5, 100).map(float), st.just(70.0))), min_size=1, max_size=20))
def test_sandstorm_level_equals_sandstorm_signal_level(rows: list[tuple[float, float, float]]) -> None:
    reports = [{"station_id": SID, "time": iso(T0 + timedelta(hours=h)), "visibility_m": vis, "wind_ms": w,
                "rh_pct": rh} for h, (vis, w, rh) in enumerate(rows)]
    paths = Paths(reports)
    vis, w, rh = (np.array(c) for c in zip(*rows, strict=True))
    wind_min, rh_below = rule_params.sandstorm_dust_discriminator(RULES)
    levels = np.asarray(wind.sandstorm_signal_level(vis, (w >= wind_min) & (rh < rh_below),
                                                    criteria=rule_params.sandstorm_criteria(RULES)))
    for path, qs in paths.both():
        for i, q in enumerate(qs):
            assert level_code(grading.grade(RULES["sandstorm"], q)) == kernel_code(levels[i]), (path, i)


# ---- excess heat factor -------------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(150, 300).map(lambda k: k / 10), st.integers(0, 150).map(lambda k: k / 10)),
                min_size=34, max_size=40),
       st.lists(st.integers(0, 39), max_size=2), st.sampled_from([None, 0, 1]))
def test_ehf_severity_equals_heat_kernels(days: list[tuple[float, float]], missing: list[int],
                                          missing_tmin: int | None) -> None:
    """Daily Tmax/Tmin (some days unreported, one report without Tmin): the fast path's daily means and EHF
    severity of the latest complete day equal daily_mean_temperature -> excess_heat_factor -> ehf_severity."""
    t95, ehf85 = 24.0, 30.0
    tmax, tmin = np.full(len(days), NAN), np.full(len(days), NAN)
    reports, reported = [], []
    for d, (hot, spread) in enumerate(days):
        if d in missing:
            continue
        o: dict[str, Any] = {"station_id": SID, "time": iso(T0 + timedelta(days=d, hours=4)), "tmax_c": hot}
        tmax[d] = hot
        if missing_tmin is None or d != len(days) // 2 + missing_tmin:
            o["tmin_c"] = round(hot - spread, 1)
            tmin[d] = o["tmin_c"]
        reports.append(o)
        reported.append(d)
    paths = Paths(reports, t95=t95, ehf85=ehf85)
    means = np.asarray(heat.daily_mean_temperature(tmax, tmin))
    severity = np.asarray(heat.ehf_severity(heat.excess_heat_factor(means, t95, align="end"), ehf85))
    for _, qs in paths.both():
        for i, d in enumerate(reported):
            # a day's mean needs the following night's minimum (the next day's), known once that day completes
            done = [k for k in range(d - 1) if not math.isnan(means[k])]
            agree(qs[i], "ehf_severity", float(severity[done[-1]]) if done else NAN)
