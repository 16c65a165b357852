"""Per-station state and the quantities warning rules read (the names used in rules.toml).

A station's state is plain JSON (it lives in a faust table): the last report time, daily extremes per
Beijing-time day, hourly rainfall buckets and the latest instantaneous values. ``update_station`` folds one
Observation into it; ``station_quantities`` derives every named quantity from it. Both are pure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np

from warning.shared.times import parse_utc

BEIJING = timedelta(hours=8)
KEEP_DAYS = 3  # daily extremes per station: 3-day heat, 48 h cold wave (older days live in the daily part)
API_DAYS = 10  # antecedent precipitation index window: completed days from "pd" plus today
KEEP_HOURS = 24  # hourly rain buckets: the longest rolling window
EHF_DAYS = 33  # 3-day window + 30-day acclimatisation period (Nairn & Fawcett 2015)
DAILY_KEYS = ("m", "pd", "pe", "mci")  # parts of a station state that change once a day (complete_day)
MCI_PRECIP_DAYS = 150  # SPI150, the longest MCI term (GB/T 20481-2017)
MCI_PET_DAYS = 30  # MI30
MCI_KEEP_DAYS = 40  # MCI history for the drought-process run length
DROUGHT_LIGHT = -0.5  # MCI <= -0.5: light drought (轻旱) or worse, GB/T 20481-2017
# The packaged rules' values of the settings below (rules.toml [drought], [frost]); callers pass the configured ones.
DROUGHT_PROCESS_MIN_DAYS = 15
DROUGHT_PROCESS_END_DAYS = 5
CALM_WIND_MS = 5.4
RAIN_WINDOWS_H = (1, 3, 6, 12, 24)

State = dict[str, Any]


@dataclass(frozen=True)
class Quantity:
    """A named input to rules: ``daily`` quantities have a per-day series (for ``days = N`` conditions)."""

    name: str
    daily: bool
    description: str


QUANTITIES: dict[str, Quantity] = {q.name: q for q in [
    *(Quantity(f"rain_{n}h", False, f"rolling {n} h rainfall (mm) ending at the latest report")
      for n in RAIN_WINDOWS_H),
    Quantity("api_mm", False, "antecedent precipitation index (mm), daily, decay k (rules: flash_flood.api_decay)"),
    Quantity("tmax_day", True, "daily maximum temperature (degC), Beijing day"),
    Quantity("tmin_day", True, "daily minimum temperature (degC), Beijing day"),
    Quantity("ground_tmin_day", True, "daily 0 cm ground minimum (degC); else, on a calm day, air minimum - offset"),
    Quantity("tmin_drop_24h", False, "yesterday's minus today's daily minimum (degC)"),
    Quantity("tmin_drop_48h", False, "the higher of the 2 previous days' minimum minus today's (degC)"),
    Quantity("wind_max_day", True, "highest 10-min mean wind of the day (m/s)"),
    Quantity("gust_max_day", True, "highest gust of the day (m/s)"),
    Quantity("visibility", False, "visibility at the latest report (m)"),
    Quantity("wind_now", False, "mean wind at the latest report (m/s)"),
    Quantity("rh_now", False, "relative humidity at the latest report (%)"),
    Quantity("mci_day", False, "GB/T 20481-2017 composite drought index MCI of the latest complete day "
             "(needs the station's MCI climatology)"),
    Quantity("drought_run_days", False, "days of the drought process the latest complete day is in (0: none): a "
             "process starts with >= [drought] process_min_days consecutive days at MCI <= -0.5 (light drought or "
             "worse) and ends only after [drought] process_end_days consecutive days without (GB/T 20481-2017)"),
    Quantity("ehf_severity", False, "excess heat factor / station EHF85 on the latest complete 3-day window "
             "(Nairn & Fawcett 2015; Nairn 2018); needs the station climatology"),
]}

# quantity -> the observation elements that can change it: a report re-grades only the hazards it informs
QUANTITY_ELEMENTS: dict[str, frozenset[str]] = {
    **{f"rain_{n}h": frozenset({"precip_mm"}) for n in RAIN_WINDOWS_H},
    "api_mm": frozenset({"precip_mm"}),
    "tmax_day": frozenset({"tmax_c", "air_temp_c"}),
    "tmin_day": frozenset({"tmin_c", "air_temp_c"}),
    "ground_tmin_day": frozenset({"ground_tmin_c", "tmin_c", "air_temp_c"}),
    "tmin_drop_24h": frozenset({"tmin_c", "air_temp_c"}),
    "tmin_drop_48h": frozenset({"tmin_c", "air_temp_c"}),
    "wind_max_day": frozenset({"wind_ms"}),
    "gust_max_day": frozenset({"gust_ms"}),
    "visibility": frozenset({"visibility_m"}),
    "wind_now": frozenset({"wind_ms"}),
    "rh_now": frozenset({"rh_pct"}),
    "ehf_severity": frozenset({"tmax_c", "tmin_c", "air_temp_c"}),
    # a new day's first report completes the previous day, whatever it carries
    "mci_day": frozenset({"air_temp_c", "tmax_c", "tmin_c", "ground_tmin_c", "rh_pct", "dewpoint_c", "precip_mm",
                          "wind_ms", "gust_ms", "visibility_m", "pressure_hpa"}),
    "drought_run_days": frozenset({"air_temp_c", "tmax_c", "tmin_c", "precip_mm"}),
}

# daily field -> (observation elements, combine)
_DAILY: dict[str, tuple[tuple[str, ...], Callable[[float, float], float]]] = {
    "tmax": (("tmax_c", "air_temp_c"), max),
    "tmin": (("tmin_c", "air_temp_c"), min),
    "gtmin": (("ground_tmin_c",), min),
    "wmax": (("wind_ms",), max),
    "gmax": (("gust_ms",), max),
}
_NOW = {"visibility_m": "vis", "wind_ms": "wind", "rh_pct": "rh"}


# The day boundary (日界) of daily extremes and totals, in Beijing time. CMA surface records use 20:00 BJT for every
# element but sunshine (日落) and weather phenomena (0时) (地面气象观测规范; "记录日界", qixiangzhan.cn: "其余观测项目
# 均以北京时20时为日界"): the record of day D runs from 20:00 BJT on D-1 to 20:00 BJT on D. Set from rules.toml
# [days] boundary_bjt_h by every entry point that grades or builds a climatology (``set_day_boundary``), so the
# live path, ``ews replay`` and ``ews climatology build`` share one boundary.
DEFAULT_DAY_BOUNDARY_BJT_H = 20
_day_shift = [timedelta(hours=8 + (24 - DEFAULT_DAY_BOUNDARY_BJT_H) % 24)]


def set_day_boundary(hour_bjt: int) -> None:
    """Use ``hour_bjt`` (0-23; 0 = the calendar day) as the day boundary from now on (process-wide)."""
    if not 0 <= hour_bjt <= 23:
        raise ValueError("day boundary: an hour 0-23 of Beijing time")
    shift = timedelta(hours=8 + (24 - hour_bjt) % 24)
    if shift != _day_shift[0]:
        _day_shift[0] = shift
        time_keys.cache_clear()


def day_shift_s() -> int:
    """Seconds to add to a UTC epoch time so that its UTC calendar date is its day: 8 h (Beijing) plus the hours
    from the boundary to midnight (12 h for 20:00 BJT)."""
    return int(_day_shift[0].total_seconds())


def beijing_date(iso_utc: str) -> str:
    """The Beijing-time (UTC+8) calendar date of a UTC time."""
    return (parse_utc(iso_utc) + BEIJING).date().isoformat()


def station_day(iso_utc: str) -> str:
    """The day (ISO date) of a report time by the day boundary: the key of daily extremes and totals."""
    return day_of(parse_utc(iso_utc))


def day_of(t: datetime) -> str:
    """The day (ISO date) a UTC time belongs to, by the day boundary."""
    return (t + _day_shift[0]).date().isoformat()


@lru_cache(maxsize=4096)
def time_keys(iso_utc: str) -> tuple[int, str]:
    """(UTC hour index, day by the day boundary) of a report time; cached, as a batch repeats a few report
    times (cleared when the boundary changes)."""
    t = parse_utc(iso_utc)
    return int(t.timestamp() // 3600), (t + _day_shift[0]).date().isoformat()


@lru_cache(maxsize=4096)
def _ordinal(d: str) -> int:
    return date.fromisoformat(d).toordinal()


@lru_cache(maxsize=4096)
def _day(d: str, offset: int) -> str:
    return (date.fromisoformat(d) + timedelta(days=offset)).isoformat()


def update_station(state: State | None, obs: dict[str, Any]) -> State | None:
    """New station state after ``obs``, or None when ``obs`` is not newer than the last one applied.

    Skipping old observations makes the update idempotent under at-least-once redelivery of whole batches.
    Rain with ``precip_period_h`` p > 1 is spread evenly over the p hours ending at the report (so rolling sums
    over windows >= p are exact and shorter windows get the mean rate).
    """
    st = state or {"t": "", "d": {}, "h": {}, "now": {}}
    if obs["time"] <= st["t"]:
        return None
    end, day = time_keys(obs["time"])
    days = dict(st["d"])
    today = dict(days.get(day, {}))
    for field_, (elements, combine) in _DAILY.items():
        for el in elements:
            v = obs.get(el)
            if v is not None:
                today[field_] = combine(float(v), today[field_]) if field_ in today else float(v)
    hours = st["h"]
    if obs.get("precip_mm") is not None:
        amount = float(obs["precip_mm"])
        period = max(1, round(float(obs.get("precip_period_h") or 1)))
        hours = dict(hours)
        for i in range(min(period, KEEP_HOURS)):
            k = str(end - i)
            hours[k] = hours.get(k, 0.0) + amount / period
        if len(hours) > KEEP_HOURS:
            for old in sorted(hours, key=int)[:-KEEP_HOURS]:
                del hours[old]
        today["rain"] = today.get("rain", 0.0) + amount
    days[day] = today
    if len(days) > KEEP_DAYS:
        for old in sorted(days)[:-KEEP_DAYS]:
            del days[old]
    now = {**st["now"], **{short: float(obs[el]) for el, short in _NOW.items() if obs.get(el) is not None}}
    out = {"t": obs["time"], "d": days, "h": hours, "now": now}
    for key in DAILY_KEYS:  # daily inputs (EHF, MCI), advanced only by complete_day: the same objects
        if key in st:
            out[key] = st[key]
    return out


def complete_day(prev: State | None, new: State, latitude_deg: float, mci_params: Any | None) -> State:
    """When ``new`` starts a day, fold the day just completed into the daily inputs: the previous day's mean
    temperature (for EHF: its maximum with the following night's minimum), its precipitation
    total (a day without any precipitation report is missing, not dry), its Hargreaves PET from Tmin/Tmax
    (FAO-56 eq. 52) and, with the station's MCI parameters, its MCI (GB/T 20481-2017). Once a day per station."""
    if prev is None or not prev["d"] or not new["d"]:
        return new
    done, today = max(prev["d"]), max(new["d"])
    if today <= done:
        return new
    day = prev["d"][done]
    pd, pe, mci = dict(prev.get("pd", {})), dict(prev.get("pe", {})), dict(prev.get("mci", {}))
    means = dict(prev.get("m", {}))
    # EHF's daily mean temperature pairs a day's maximum with the following night's minimum (Nairn & Fawcett 2015:
    # DMT = (Tmax_i + Tmin_i+1) / 2); that night's minimum is in the next day (the day boundary is in the evening),
    # so the day before the one just completed gets its mean now
    before = prev["d"].get(_day(done, -1), {})
    if "tmax" in before and "tmin" in day:
        means[_day(done, -1)] = (before["tmax"] + day["tmin"]) / 2
    if "rain" in day:
        pd[done] = day["rain"]
    if "tmax" in day and "tmin" in day:
        from indices.drought import pet_hargreaves

        pe[done] = float(np.asarray(pet_hargreaves(np.array([day["tmin"]]), np.array([day["tmax"]]),
                                                   latitude_deg, np.array([done], dtype="datetime64[D]")))[0])
    for store, keep in ((pd, MCI_PRECIP_DAYS), (pe, MCI_PET_DAYS), (means, EHF_DAYS)):
        if len(store) > keep:
            for old in sorted(store)[:-keep]:
                del store[old]
    if mci_params is not None:
        p_days = [_day(done, -i) for i in range(MCI_PRECIP_DAYS - 1, -1, -1)]
        if all(d in pd for d in p_days) and all(d in pe for d in p_days[-MCI_PET_DAYS:]):
            from indices.drought import daily_slot, mci_from_params

            v = float(mci_from_params(np.array([pd[d] for d in p_days]),
                                      np.array([pe[d] for d in p_days[-MCI_PET_DAYS:]]),
                                      int(done[5:7]), daily_slot(done), mci_params))
            if math.isfinite(v):
                mci[done] = v
                if len(mci) > MCI_KEEP_DAYS:
                    for old in sorted(mci)[:-MCI_KEEP_DAYS]:
                        del mci[old]
    out = {**new, "pd": pd, "pe": pe, "m": means}
    if mci:
        out["mci"] = mci
    return out


def station_ehf(means: dict[str, float], t95: float) -> float | None:
    """EHF (K^2) of the latest 3-day window, when the 33 daily means up to it are all present."""
    if len(means) < EHF_DAYS:
        return None
    last = max(means)
    days = [_day(last, -i) for i in range(EHF_DAYS - 1, -1, -1)]
    if any(d not in means for d in days):
        return None
    from indices.heat import excess_heat_factor  # the cited kernel; imported lazily (numpy only)

    ehf = float(np.asarray(excess_heat_factor(np.array([means[d] for d in days]), t95, align="end"))[-1])
    return ehf if math.isfinite(ehf) else None


def station_quantities(st: State, *, api_decay: float, ground_offset_c: float,
                       t95: float | None = None, ehf85: float | None = None, calm_wind_ms: float = CALM_WIND_MS,
                       drought_process: tuple[int, int] = (DROUGHT_PROCESS_MIN_DAYS, DROUGHT_PROCESS_END_DAYS)
                       ) -> dict[str, float]:
    """Every quantity that the state can give (missing inputs leave the quantity out). ``api_decay``,
    ``ground_offset_c``, ``calm_wind_ms`` and ``drought_process`` (min days, end days) are the rules' settings
    (rules.toml [flash_flood] api_decay, [frost] air_to_ground_offset_c and calm_wind_ms, [drought]
    process_min_days and process_end_days): their one place is the rules table, so the caller passes them."""
    q: dict[str, float] = {}
    if not st["t"]:
        return q
    end, today = time_keys(st["t"])
    days = st["d"]
    cur = days.get(today, {})
    q.update(day_quantities(days, today, ground_offset_c=ground_offset_c, calm_wind_ms=calm_wind_ms))
    if st["h"]:
        hours = st["h"]
        total, i = 0.0, 0
        for n in RAIN_WINDOWS_H:  # one pass over the buckets, windows nested
            while i < n:
                total += hours.get(str(end - i), 0.0)
                i += 1
            q[f"rain_{n}h"] = total
    if "rain" in cur or st.get("pd"):
        # API_t = sum_i k^i P_(t-i): today's rain so far plus completed days (Kohler & Linsley 1951)
        api = cur.get("rain", 0.0)
        pd = st.get("pd", {})
        for i in range(1, API_DAYS):
            r = pd.get(_day(today, -i))
            if r is None:
                r = days.get(_day(today, -i), {}).get("rain")
            if r:
                api += api_decay ** i * r
        q["api_mm"] = api
    for short, name in (("vis", "visibility"), ("wind", "wind_now"), ("rh", "rh_now")):
        if short in st["now"]:
            q[name] = st["now"][short]
    mci = st.get("mci")
    if mci:
        last = max(mci)
        q["mci_day"] = mci[last]
        window = [mci.get(_day(last, -i)) for i in range(MCI_KEEP_DAYS - 1, -1, -1)]
        q["drought_run_days"] = float(drought_process_days(window, *drought_process))
    if t95 is not None and ehf85 and "m" in st:
        ehf = station_ehf(st["m"], t95)
        if ehf is not None:
            q["ehf_severity"] = ehf / ehf85
    return q


def drought_process_days(mci: list[float | None], min_days: int, end_days: int) -> int:
    """Days of the drought process that the last day of ``mci`` (daily MCI, oldest first, None = missing) is in,
    0 when none is going on. GB/T 20481-2017 drought process (干旱过程; STANDARDS.md §1.3.3, wording
    UNCONFIRMED): it starts when ``min_days`` consecutive days are at light drought or worse (MCI <= -0.5; the
    process begins on the first of them) and ends only after ``end_days`` consecutive days without drought (a
    missing day counts as without), so one shower inside a severe drought does not end it. Only the window given
    is seen (MCI_KEEP_DAYS days): an older start is not."""
    start, run, wet = -1, 0, 0
    for i, v in enumerate(mci):
        if v is not None and v == v and v <= DROUGHT_LIGHT:
            run, wet = run + 1, 0
            if start < 0 and run >= min_days:
                start = i - run + 1
        else:
            run, wet = 0, wet + 1
            if start >= 0 and wet >= end_days:
                start = -1
    return len(mci) - start if start >= 0 else 0


def ground_tmin(gtmin: float | None, tmin: float | None, wmax: float | None, *, ground_offset_c: float,
                calm_wind_ms: float) -> float | None:
    """The day's 0 cm ground minimum: the reported one, else the air minimum minus ``ground_offset_c`` on a calm
    day (the day's highest 10-min mean wind at most ``calm_wind_ms``, or not reported): radiative cooling makes
    the surface colder than the screen on calm clear nights only; with wind the layers mix and the offset does
    not hold ([frost] calm_wind_ms, UNCONFIRMED; cloud cover is not observed here, so "clear" is not checked)."""
    if gtmin is not None:
        return gtmin
    if tmin is None or (wmax is not None and wmax > calm_wind_ms):
        return None
    return tmin - ground_offset_c


def day_quantities(days: dict[str, dict[str, float]], today: str, *, ground_offset_c: float,
                   calm_wind_ms: float = CALM_WIND_MS) -> dict[str, float]:
    """The daily quantities of day ``today`` from per-day extremes (day -> {tmax, tmin, gtmin, wmax, gmax}):
    observed days (a station state) and forecast days (``warning.forecast_run``) alike, so the cold-wave drops
    have one definition: ``tmin_drop_24h`` = yesterday's minimum minus today's, ``tmin_drop_48h`` = the higher of
    the two previous days' minima minus today's (GB/T 21987-2017 降温幅度, as rules.toml reads it)."""
    q: dict[str, float] = {}
    cur = days.get(today, {})
    for name, field_ in (("tmax_day", "tmax"), ("tmin_day", "tmin"), ("wind_max_day", "wmax"),
                         ("gust_max_day", "gmax")):
        if field_ in cur:
            q[name] = cur[field_]
    g = ground_tmin(cur.get("gtmin"), cur.get("tmin"), cur.get("wmax"), ground_offset_c=ground_offset_c,
                    calm_wind_ms=calm_wind_ms)
    if g is not None:
        q["ground_tmin_day"] = g
    if "tmin" in cur:
        y1, y2 = days.get(_day(today, -1), {}).get("tmin"), days.get(_day(today, -2), {}).get("tmin")
        if y1 is not None:
            q["tmin_drop_24h"] = y1 - cur["tmin"]
        prev = [v for v in (y1, y2) if v is not None]
        if prev:
            q["tmin_drop_48h"] = max(prev) - cur["tmin"]
    return q


def daily_series(st: State, quantity: str, *, ground_offset_c: float, calm_wind_ms: float = CALM_WIND_MS
                 ) -> dict[str, float]:
    """Per-day values of a daily quantity (for consecutive-day conditions)."""
    return days_series(st["d"], quantity, ground_offset_c=ground_offset_c, calm_wind_ms=calm_wind_ms)


def days_series(days: dict[str, dict[str, float]], quantity: str, *, ground_offset_c: float,
                calm_wind_ms: float = CALM_WIND_MS) -> dict[str, float]:
    """Per-day values of a daily quantity from per-day extremes (``day_quantities``' input)."""
    if quantity == "ground_tmin_day":
        return {d: g for d, v in days.items()
                if (g := ground_tmin(v.get("gtmin"), v.get("tmin"), v.get("wmax"), ground_offset_c=ground_offset_c,
                                     calm_wind_ms=calm_wind_ms)) is not None}
    field_ = {"tmax_day": "tmax", "tmin_day": "tmin", "wind_max_day": "wmax", "gust_max_day": "gmax"}[quantity]
    return {d: v[field_] for d, v in days.items() if field_ in v}


def forecast_quantities(values: dict[str, float], window_h: float) -> dict[str, float]:
    """Quantities from one ForecastPoint's element values over its valid window.

    Rain over a w-hour window is a lower bound for every rolling window >= w (and says nothing about shorter
    ones); daily extremes map to the day quantities.
    """
    q: dict[str, float] = {}
    mapping = {"tmax_c": "tmax_day", "tmin_c": "tmin_day", "ground_tmin_c": "ground_tmin_day",
               "wind_ms": "wind_max_day", "gust_ms": "gust_max_day", "visibility_m": "visibility",
               "rh_pct": "rh_now"}
    for el, name in mapping.items():
        if values.get(el) is not None:
            q[name] = float(values[el])
    if values.get("wind_ms") is not None:
        q["wind_now"] = float(values["wind_ms"])
    if values.get("air_temp_c") is not None:
        q.setdefault("tmax_day", float(values["air_temp_c"]))
    if values.get("precip_mm") is not None:
        for n in RAIN_WINDOWS_H:
            if n >= window_h - 1e-9:
                q[f"rain_{n}h"] = float(values["precip_mm"])
    return q
