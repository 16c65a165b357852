"""Forecasts -> station signals, as CMA Order No. 16 words each signal's forecast branch ("预计…将").

Two kinds of criteria:

* **window criteria** (rainstorm, gale, sandstorm, flash flood): graded per ForecastPoint, from the point's
  element values over its valid window (``quantities.forecast_quantities``);
* **daily criteria** (heat, cold wave, frost: every hazard with a condition on a daily temperature quantity,
  ``DAY_TEMPERATURE_QUANTITIES``): a forecast *run* (the points of one station from one issue time, several lead
  days) is folded into forecast days (daily Tmax, Tmin, ground Tmin, highest mean wind and gust per day, each day
  by the day boundary of the observed days), combined with the station's observed days where the run starts
  today (``StationColumns.observed_days``: today's extremes so far, yesterday's and the day before's), and each
  forecast day is graded as a station day is graded, with the same definitions (``quantities.day_quantities``:
  one ``tmin_drop_24h`` / ``tmin_drop_48h``; ``days = N`` conditions over consecutive days). So forecast Tmax
  36.0 / 36.5 / 36.8 °C on three days is heat yellow ("连续三天日最高气温将在35℃以上"), and a forecast minimum
  8 K below yesterday's observed one within 48 h, at or below 4 °C, with force-5 wind, is cold-wave blue
  ("48小时内最低气温将要下降8℃以上…").

Either way a level is issued only when the lead is within that level's own horizon (rules.toml
``forecast_lead_h`` per level, ``HazardRule.within_lead``); a forecast day's lead is that of its earliest point.
Frost needs a growing-season month ([frost] season_months) for forecast days as for observed ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ingest import quantities
from warning import grading
from warning.rules import HazardRule, Rules
from warning.shared.times import parse_utc

DAY_TEMPERATURE_QUANTITIES = frozenset({"tmax_day", "tmin_day", "ground_tmin_day", "tmin_drop_24h",
                                        "tmin_drop_48h"})
# forecast element -> (daily field, combine): a day's extremes over the points that fall in it
_DAY_FIELDS: tuple[tuple[str, str, Callable[[float, float], float]], ...] = (
    ("tmax_c", "tmax", max), ("air_temp_c", "tmax", max), ("tmin_c", "tmin", min), ("air_temp_c", "tmin", min),
    ("ground_tmin_c", "gtmin", min), ("wind_ms", "wmax", max), ("gust_ms", "gmax", max),
    ("precip_mm", "rain", lambda a, b: a + b))


def daily_hazards(rules: Rules) -> frozenset[str]:
    """The hazards graded on forecast days rather than per point."""
    return frozenset(h for h, r in rules.items() if r.quantities & DAY_TEMPERATURE_QUANTITIES)


@dataclass
class ForecastDay:
    """One forecast day of a run: its extremes (the fields of a station state's day), the earliest lead of the
    points in it and the span of their windows."""

    day: str
    lead_h: float
    valid_from: str
    valid_to: str
    values: dict[str, float] = field(default_factory=dict)


def forecast_days(points: Iterable[dict[str, Any]], day_of: Callable[[datetime], str],
                  max_rain_lead_h: float = float("inf")) -> dict[str, ForecastDay]:
    """Fold a run's points into forecast days. A point belongs to the day (``day_of``, the observed days' day
    boundary) of its window's middle; a day's maximum is the largest of its points' maxima (or air
    temperatures), its minimum the smallest, its rain the sum of its points' (only the drought branch reads it:
    a day's total is complete only when the points cover the whole day, which the caller's run is trusted for)."""
    days: dict[str, ForecastDay] = {}
    for p in points:
        vals = p["values"]
        if not any(vals.get(el) is not None for el, _, _ in _DAY_FIELDS):
            continue
        if set(vals) <= {"precip_mm"} and float(p.get("lead_h", 0.0)) > max_rain_lead_h:
            continue  # rain only matters to the drought branch, within its horizon
        vf, vt = parse_utc(p["valid_from"]), parse_utc(p["valid_to"])
        d = day_of(vf + (vt - vf) / 2)
        fd = days.get(d)
        lead = float(p.get("lead_h", 0.0))
        if fd is None:
            fd = days[d] = ForecastDay(d, lead, p["valid_from"], p["valid_to"])
        else:
            fd.lead_h = min(fd.lead_h, lead)
            fd.valid_from, fd.valid_to = min(fd.valid_from, p["valid_from"]), max(fd.valid_to, p["valid_to"])
        for el, name, combine in _DAY_FIELDS:
            v = vals.get(el)
            if v is not None:
                fd.values[name] = combine(float(v), fd.values[name]) if name in fd.values else float(v)
    return days


def combine_days(observed: dict[str, dict[str, float]], run: dict[str, ForecastDay]) -> dict[str, dict[str, float]]:
    """Observed days up to the run's last day plus the forecast days; a day both observed (so far) and forecast
    (a run that starts today) takes the more extreme of each: the day's maximum cannot be lower than what was
    already observed, nor its minimum higher."""
    last = max(run) if run else ""
    out = {d: dict(v) for d, v in observed.items() if d <= last}
    for d, fd in run.items():
        cur = out.setdefault(d, {})
        for name, v in fd.values.items():
            if name == "rain":
                continue
            have = cur.get(name)
            if have is None:
                cur[name] = v
            else:
                cur[name] = min(have, v) if name in ("tmin", "gtmin") else max(have, v)
    return out


def grade_run_days(rules: Rules, hazards: Iterable[str], run: dict[str, ForecastDay],
                   observed: dict[str, dict[str, float]]) -> list[tuple[str, ForecastDay, Any]]:
    """(hazard, forecast day, grade) for every forecast day and daily hazard that meets a level its lead may
    issue; grade = (level, quantity, value) as ``grading.grade``."""
    days = combine_days(observed, run)
    offset, calm = rules.frost.air_to_ground_offset_c, rules.frost.calm_wind_ms
    out = []
    for d in sorted(run):
        fd = run[d]
        if set(fd.values) <= {"rain"}:
            continue  # a day only rain was forecast for: nothing daily to judge (the observed part is observed)
        q = quantities.day_quantities(days, d, ground_offset_c=offset, calm_wind_ms=calm)
        if not q:
            continue

        def series(name: str, d: str = d) -> dict[str, float]:
            return {k: v for k, v in quantities.days_series(days, name, ground_offset_c=offset,
                                                            calm_wind_ms=calm).items() if k <= d}
        for hazard in hazards:
            if hazard == "frost" and int(d[5:7]) not in rules.frost.season_months:
                continue
            rule: HazardRule = rules[hazard].within_lead(fd.lead_h)
            if not rule.levels:
                continue
            g = grading.grade(rule, q, series)
            if g is not None and g[0] is not None:
                out.append((hazard, fd, g))
    return out


def drought_days(rules: Rules, run: dict[str, ForecastDay], inputs: dict[str, dict[str, float]],
                 params: Any, latitude: float) -> list[tuple[ForecastDay, dict[str, float]]]:
    """The drought signal's forecast branch (Order No. 16 干旱: "预计未来一周综合气象干旱指数达到重旱/特旱"):
    the station's observed daily rain, PET and MCI (``StationColumns.drought_inputs``) continued day by day with
    the run's forecast days, each forecast day's MCI computed as an observed day's (``indices.drought.
    mci_from_params`` with the station's parameters, an arid station's mode included), and the drought process
    over observed and forecast MCI (``quantities.drought_process_days``). A forecast day's PET is Hargreaves of
    its forecast Tmin/Tmax, else the last observed PET (persistence, UNCONFIRMED). Needs forecast rain on every
    day from the day after the last observed one: a gap ends the branch. Returns (forecast day, {mci_day,
    drought_run_days}) per forecast day."""
    from datetime import date, timedelta

    import numpy as np

    from indices.drought import daily_slot, mci_from_params, pet_hargreaves

    pd, pe, mci = dict(inputs.get("pd", {})), dict(inputs.get("pe", {})), dict(inputs.get("mci", {}))
    if params is None or not pd or not pe:
        return []
    out = []
    day = date.fromisoformat(max(pd))
    last_pe = pe[max(pe)]
    while True:
        day += timedelta(days=1)
        d = day.isoformat()
        fd = run.get(d)
        if fd is None or "rain" not in fd.values:
            break
        pd[d] = fd.values["rain"]
        if "tmin" in fd.values and "tmax" in fd.values:
            last_pe = float(np.asarray(pet_hargreaves(np.array([fd.values["tmin"]]), np.array([fd.values["tmax"]]),
                                                      latitude, np.array([d], dtype="datetime64[D]")))[0])
        pe[d] = last_pe
        p_days = [(day - timedelta(days=i)).isoformat() for i in range(quantities.MCI_PRECIP_DAYS - 1, -1, -1)]
        if not all(k in pd for k in p_days) or not all(k in pe for k in p_days[-quantities.MCI_PET_DAYS:]):
            break
        v = float(mci_from_params(np.array([pd[k] for k in p_days]),
                                  np.array([pe[k] for k in p_days[-quantities.MCI_PET_DAYS:]]),
                                  day.month, daily_slot(d), params))
        if v != v:
            break
        mci[d] = v
        window = [mci.get((day - timedelta(days=i)).isoformat())
                  for i in range(quantities.MCI_KEEP_DAYS - 1, -1, -1)]
        run_days = quantities.drought_process_days(window, rules.drought.process_min_days,
                                                   rules.drought.process_end_days)
        out.append((fd, {"mci_day": v, "drought_run_days": float(run_days)}))
    return out


def run_signals(grader: Any, station: Any, points: list[dict[str, Any]], observed: dict[str, dict[str, float]],
                drought_inputs: dict[str, dict[str, float]] | None, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """``StationGrader.forecast_run`` for a known station: window criteria per point, daily criteria on the run's
    forecast days, the drought branch where the station has MCI parameters and observed drought inputs."""
    rules: Rules = grader.rules
    daily = daily_hazards(rules)
    out: list[dict[str, Any]] = []
    for p in points:
        window_h = max(0.0, (parse_utc(p["valid_to"]) - parse_utc(p["valid_from"])).total_seconds() / 3600)
        q = quantities.forecast_quantities(p["values"], window_h)
        lead_h = float(p.get("lead_h", 0))  # "within N hours": the forecast onset is at most N hours ahead
        for hazard, rule in rules.items():
            if hazard in daily or lead_h > rule.forecast_lead_h + 1e-9:
                continue
            g = grading.grade(rule.within_lead(lead_h), q, None, grader.hazard_scale(hazard, station.county_code, q))
            if g is None or g[0] is None:
                continue
            out.extend(grader.station_signals(station, hazard, g[0], g[1], g[2], p["issued_at"], "forecast",
                                              valid_to=p["valid_to"], onset=p["valid_from"], **extra))
    drought = rules.get("drought")
    run = forecast_days(points, quantities.day_of, drought.forecast_lead_h if drought else 0.0)
    graded = grade_run_days(rules, daily, run, observed)
    lookup = getattr(grader.climatology, "mci_params", None)
    if drought is not None and drought_inputs and lookup is not None:  # the drought forecast branch
        for fd, dq in drought_days(rules, run, drought_inputs, lookup(station.station_id), station.latitude):
            rule = drought.within_lead(fd.lead_h)
            g = grading.grade(rule, dq) if rule.levels else None
            if g is not None and g[0] is not None:
                graded.append(("drought", fd, g))
    for hazard, fd, (level, quantity, val) in graded:
        out.extend(grader.station_signals(station, hazard, level, quantity, val, points[0]["issued_at"], "forecast",
                                          valid_to=fd.valid_to, onset=fd.valid_from, **extra))
    return out
