"""Wind, cold-wave and sandstorm helpers: Beaufort force, gale signal, minimum-temperature drops and cold
wave grade/signal, sand-dust class and sandstorm signal.

Wind in m s-1, temperatures in degC, visibility in m; NaN is missing. Signal levels use 0 = none, 1 = blue,
2 = yellow, 3 = orange, 4 = red (:data:`indices._blocks.SIGNAL_LEVELS`). 以上 is read as >=, 以下 as <=
(STANDARDS.md preamble). See ../shared/docs/STANDARDS.md 1.1.1 and 1.5.

Signal thresholds are parameters (``criteria``: colour -> threshold(s)); their one place is
warning/data/rules.toml (``warning.rule_params`` builds the criteria from the loaded rules). What stays here are
the standards' own class definitions, cited: the Beaufort bands (GB/T 28591-2012), the cold-wave grades
(GB/T 21987-2017) and the sand-dust visibility classes (GB/T 20480-2017).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from indices._blocks import (
    ArrayLike,
    Data,
    FloatArray,
    as_array,
    broadcast_arrays,
    compare,
    first_dataarray,
    harmonize,
    require_time_axis,
    signal_levels,
    time_last,
    wrap_like,
)
from indices.units import quantity

#: GB/T 28591-2012 风力等级: lower bound (m s-1) of Beaufort forces 0..17 (UNCONFIRMED here; standard
#: values, 0.1 m s-1 resolution: force 5 = 8.0-10.7, 6 = 10.8-13.8, ..., 13 = 37.0-41.4).
BEAUFORT_LOWER_MS: tuple[float, ...] = (0.0, 0.3, 1.6, 3.4, 5.5, 8.0, 10.8, 13.9, 17.2, 20.8, 24.5, 28.5, 32.7,
                                        37.0, 41.5, 46.2, 51.0, 56.1)
#: Wind speeds are reported to 0.1 m s-1; values are rounded to this resolution before banding.
WIND_RESOLUTION_MS = 0.1
BEAUFORT_REF = "GB/T 28591-2012 风力等级 (band limits UNCONFIRMED against the official text)"
GALE_REF = "CMA Order No. 16 (2007) annex, 大风 signal (mean wind or gust at Beaufort-band lower limits)"

#: Single-station cold wave (冷空气国家标准 / GB/T 21987-2017): grade -> ((24, 48, 72 h Tmin drop), Tmin max).
#: The standard's classification (not a warning signal). Grade 1 寒潮 confirmed; 2 强寒潮 and 3 超强寒潮 UNCONFIRMED.
COLD_WAVE_GRADES: dict[int, tuple[tuple[float, float, float], float]] = {
    1: ((8.0, 10.0, 12.0), 4.0),
    2: ((10.0, 12.0, 14.0), 2.0),
    3: ((12.0, 14.0, 16.0), 0.0),
}
COLD_WAVE_NAMES = {0: "none", 1: "cold wave 寒潮", 2: "strong 强寒潮", 3: "extreme 超强寒潮"}
COLD_WAVE_REF = ("GB/T 21987-2017 寒潮等级 / 冷空气国家标准 (grade 1 confirmed, 2-3 UNCONFIRMED); "
                 "CMA Order No. 16 (2007) annex, 寒潮 signal")
TMIN_DROP_HOURS = (24, 48, 72)

#: GB/T 20480-2017 沙尘天气等级 visibility limits (m), UNCONFIRMED here: class -> visibility below. Class 1
#: (< 10 km) is the definition of sand-dust weather; 3-5 are 沙尘暴, 强沙尘暴, 特强沙尘暴.
SAND_DUST_VIS_M: dict[int, float] = {1: 10000.0, 3: 1000.0, 4: 500.0, 5: 50.0}
SAND_DUST_NAMES = {0: "none", 1: "floating dust 浮尘", 2: "blowing sand 扬沙", 3: "sandstorm 沙尘暴",
                   4: "severe sandstorm 强沙尘暴", 5: "extreme sandstorm 特强沙尘暴"}
SAND_REF = ("GB/T 20480-2017 沙尘天气等级 (limits UNCONFIRMED here); CMA Order No. 16 (2007) annex, 沙尘暴 "
            "signal; Lanzhou local blue dust warning")


class ColdWaveCriterion(NamedTuple):
    """One level of the cold-wave signal: the Tmin drop over ``drop_hours`` (24, 48 or 72) is at least ``drop_c``,
    the day's Tmin at most ``tmin_max_c`` and the day's wind at least ``wind_min_ms`` (all must hold)."""

    drop_hours: int
    drop_c: float
    tmin_max_c: float
    wind_min_ms: float


def beaufort_force(wind_ms: ArrayLike) -> Data:
    """Beaufort force (0..17) from wind speed in m s-1 (GB/T 28591-2012 bands).

    The speed is rounded to 0.1 m s-1 (reporting resolution), then force = max{k : v >= lower_k} with the
    lower band limits :data:`BEAUFORT_LOWER_MS` (force 6 = 10.8-13.8 m s-1, ...). NaN in -> NaN out.

    Reference: GB/T 28591-2012 风力等级 (UNCONFIRMED against the official text here).
    """
    like = first_dataarray(wind_ms)
    v = quantity(wind_ms, "m s-1", "wind_speed", "wind_ms")
    r = np.round(v / WIND_RESOLUTION_MS) * WIND_RESOLUTION_MS
    lower = np.asarray(BEAUFORT_LOWER_MS)
    with np.errstate(invalid="ignore"):
        force = (np.searchsorted(lower, r + 1e-9, side="right") - 1).astype(np.float64)
    force = np.where(np.isnan(v), np.nan, force)
    return wrap_like(force, like, units="1", long_name="Beaufort wind force", references=BEAUFORT_REF,
                     name="beaufort")


def gale_signal_level(mean_wind_ms: ArrayLike, gust_ms: ArrayLike | None = None, *,
                      criteria: Mapping[str, tuple[float, float]]) -> Data:
    """Gale signal level from mean wind and gust (m s-1): the highest level whose mean-wind **or** gust threshold
    is reached, level = max{ L : V >= V_L or G >= G_L } with ``criteria`` colour -> (V_L, G_L) m s-1.

    The Order No. 16 text names Beaufort forces; warning/data/rules.toml ([hazards.gale];
    ``warning.rule_params.gale_criteria``) writes them as the forces' lower band limits in m s-1 (GB/T 28591-2012,
    :data:`BEAUFORT_LOWER_MS`), compared with the reported (0.1 m s-1) value as the station grading does. A
    missing gust is ignored (mean wind alone decides); NaN where the mean wind is missing and the gust gives no
    level.

    Reference: CMA Order No. 16 (2007) annex, 大风 signal; forces per GB/T 28591-2012.
    """
    levels = signal_levels(criteria)
    mean_wind_ms, gust_ms = harmonize(mean_wind_ms, gust_ms)
    like = first_dataarray(mean_wind_ms, gust_ms)
    vm = quantity(mean_wind_ms, "m s-1", "wind_speed", "mean_wind_ms")
    vg = np.full(vm.shape, np.nan) if gust_ms is None else quantity(gust_ms, "m s-1", "wind_speed", "gust_ms")
    vm, vg = broadcast_arrays(vm, vg, names=("mean_wind_ms", "gust_ms"))
    level = np.zeros(vm.shape)
    for code, (v_mean, v_gust) in levels:
        level = np.where(compare(vm, v_mean, ">=") | compare(vg, v_gust, ">="), code, level)
    level = np.where(np.isnan(vm) & ~(level > 0), np.nan, level)
    return wrap_like(level, like, units="1", long_name="gale signal level (0 none .. 4 red)", references=GALE_REF,
                     name="gale_level")


def tmin_drop(tmin_daily_c: ArrayLike, hours: int) -> Data:
    """Fall of the daily minimum temperature over ``hours`` (24, 48 or 72) along the last (daily) axis:
    drop_t = max(Tmin_t-1, ..., Tmin_t-k) - Tmin_t with k = hours / 24 (positive = colder): today's minimum
    against the highest minimum of the k previous days. 24 h is yesterday's minus today's.

    Missing days (NaN, and the days before the series starts) are left out of the max; NaN where today's
    Tmin is missing or none of the k previous days is known. This is the definition the rules read
    (warning/data/rules.toml, cold wave; ingest.quantities ``tmin_drop_24h`` / ``tmin_drop_48h``, held equal by
    tests/unit/test_fast_path_vs_kernels.py). Reading "the higher of the previous days" as the 降温幅度 of the
    standard is the rules' (GB/T 21987-2017); some services use the plain day-to-day difference (UNCONFIRMED).

    Reference: GB/T 21987-2017 寒潮等级; 冷空气国家标准 (GB/T 20484-2017).
    """
    if hours not in TMIN_DROP_HOURS:
        raise ValueError(f"hours must be 24, 48 or 72, got {hours}")
    tmin_daily_c = time_last(tmin_daily_c)
    like = first_dataarray(tmin_daily_c)
    t = quantity(tmin_daily_c, "degC", "temperature", "tmin_daily_c")
    require_time_axis(t, "tmin_daily_c")
    highest = np.full(t.shape, np.nan)
    for back in range(1, hours // 24 + 1):
        if t.shape[-1] > back:
            shifted = np.full(t.shape, np.nan)
            shifted[..., back:] = t[..., :-back]
            highest = np.fmax(highest, shifted)  # fmax: a NaN side gives the other
    out = highest - t
    return wrap_like(out, like, units="K", long_name=f"{hours} h minimum-temperature drop",
                     references=COLD_WAVE_REF, name=f"tmin_drop_{hours}h")


def _drops(t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    return (as_array(tmin_drop(t, 24)), as_array(tmin_drop(t, 48)), as_array(tmin_drop(t, 72)))


def cold_wave_grade(tmin_daily_c: ArrayLike) -> Data:
    """Single-station cold-wave grade per day along the last (daily) axis: 0 none, 1 寒潮, 2 强寒潮, 3 超强寒潮.

    Grade g when (24 h drop >= D24_g or 48 h drop >= D48_g or 72 h drop >= D72_g) and Tmin <= Tmax_g, with
    (D24, D48, D72; Tmin) = (8, 10, 12; 4), (10, 12, 14; 2), (12, 14, 16; 0) degC (:data:`COLD_WAVE_GRADES`;
    grades 2-3 UNCONFIRMED). Drops from :func:`tmin_drop`. NaN where Tmin is missing or no drop is known.

    Reference: GB/T 21987-2017 寒潮等级; CCTV/中国天气网 restatement of the national cold-air standard.
    """
    tmin_daily_c = time_last(tmin_daily_c)
    like = first_dataarray(tmin_daily_c)
    t = quantity(tmin_daily_c, "degC", "temperature", "tmin_daily_c")
    require_time_axis(t, "tmin_daily_c")
    d24, d48, d72 = _drops(t)
    grade = np.zeros(t.shape)
    with np.errstate(invalid="ignore"):
        for g, ((a, b, c), tmax) in sorted(COLD_WAVE_GRADES.items()):
            hit = ((d24 >= a) | (d48 >= b) | (d72 >= c)) & (t <= tmax)
            grade = np.where(hit, float(g), grade)
    unknown = np.isnan(t) | (np.isnan(d24) & np.isnan(d48) & np.isnan(d72))
    grade = np.where(unknown & ~(grade > 0), np.nan, grade)
    return wrap_like(grade, like, units="1", long_name="cold wave grade (0 none .. 3 extreme)",
                     references=COLD_WAVE_REF, name="cold_wave_grade")


def cold_wave_signal_level(tmin_daily_c: ArrayLike, wind_ms: ArrayLike, *,
                           criteria: Mapping[str, ColdWaveCriterion]) -> Data:
    """Cold-wave signal level per day along the last (daily) axis (0 none .. 4 red): the highest level L of
    ``criteria`` with drop_h(L) >= D_L and Tmin <= T_L and wind >= W_L (:class:`ColdWaveCriterion`; drops from
    :func:`tmin_drop`). ``wind_ms``: the day's wind, same shape as ``tmin_daily_c`` (the station grading reads
    the day's highest 10-minute mean wind). NaN where Tmin, the wind or every drop is missing and no level is met.

    The Order No. 16 criteria (a drop over 48 or 24 h, a Tmin ceiling and a mean-wind Beaufort force per level)
    are in warning/data/rules.toml [hazards.cold_wave] (``warning.rule_params.cold_wave_criteria``).

    Reference: CMA Order No. 16 (2007) annex, 寒潮 signal.
    """
    levels = signal_levels(criteria)
    tmin_daily_c, wind_ms = harmonize(tmin_daily_c, wind_ms)
    like = first_dataarray(tmin_daily_c, wind_ms)
    t = quantity(tmin_daily_c, "degC", "temperature", "tmin_daily_c")
    require_time_axis(t, "tmin_daily_c")
    wind = quantity(wind_ms, "m s-1", "wind_speed", "wind_ms")
    t, wind = broadcast_arrays(t, wind, names=("tmin_daily_c", "wind_ms"))
    drops = {h: as_array(tmin_drop(t, h)) for h in sorted({c.drop_hours for _, c in levels})}
    level = np.zeros(t.shape)
    for code, c in levels:
        hit = compare(drops[c.drop_hours], c.drop_c, ">=") & compare(t, c.tmin_max_c, "<=") & \
            compare(wind, c.wind_min_ms, ">=")
        level = np.where(hit, code, level)
    no_drop = np.logical_and.reduce([np.isnan(d) for d in drops.values()])
    unknown = np.isnan(t) | np.isnan(wind) | no_drop
    level = np.where(unknown & ~(level > 0), np.nan, level)
    return wrap_like(level, like, units="1", long_name="cold wave signal level (0 none .. 4 red)",
                     references=COLD_WAVE_REF, name="cold_wave_level")


def sand_dust_class(visibility_m: ArrayLike, wind_ms: ArrayLike | None = None, dust: ArrayLike | None = None, *,
                    floating_dust_max_wind_ms: float) -> Data:
    """Sand-dust weather class (GB/T 20480-2017): 0 none, 1 浮尘, 2 扬沙, 3 沙尘暴 (< 1 km),
    4 强沙尘暴 (< 500 m), 5 特强沙尘暴 (< 50 m).

    Visibility < 10 km is dust weather only where ``dust`` is true (present-weather says sand/dust; haze and
    fog also reduce visibility); if ``dust`` is None, every reduced visibility is assumed to be dust. In
    1-10 km, 扬沙 if the mean wind > ``floating_dust_max_wind_ms`` else 浮尘 (wind None -> 扬沙); the wind limit is
    in warning/data/rules.toml ([sandstorm] floating_dust_max_wind_ms: 5.4 m/s, the top of force 3, GB/T 20480-2017
    "风力≤3级", UNCONFIRMED). Visibility limits
    :data:`SAND_DUST_VIS_M` (the standard's classes, UNCONFIRMED here).

    Reference: GB/T 20480-2017 沙尘天气等级.
    """
    visibility_m, wind_ms, dust = harmonize(visibility_m, wind_ms, dust)
    like = first_dataarray(visibility_m, wind_ms)
    vis = quantity(visibility_m, "m", "visibility", "visibility_m")
    wind = np.full(vis.shape, np.nan) if wind_ms is None else quantity(wind_ms, "m s-1", "wind_speed", "wind_ms")
    is_dust = np.ones(vis.shape) if dust is None else as_array(dust, "dust")
    vis, wind, is_dust = broadcast_arrays(vis, wind, is_dust, names=("visibility_m", "wind_ms", "dust"))
    cls = np.zeros(vis.shape)
    blowing = ~compare(wind, floating_dust_max_wind_ms, "<=")  # NaN wind -> blowing sand
    cls = np.where(compare(vis, SAND_DUST_VIS_M[1], "<"), np.where(blowing, 2.0, 1.0), cls)
    for c in (3, 4, 5):
        cls = np.where(compare(vis, SAND_DUST_VIS_M[c], "<"), float(c), cls)
    cls = np.where(is_dust > 0, cls, 0.0)
    cls = np.where(np.isnan(vis) | np.isnan(is_dust), np.nan, cls)
    return wrap_like(cls, like, units="1", long_name="sand-dust weather class (0 none .. 5 extreme)",
                     references=SAND_REF, name="sand_dust_class")


def sandstorm_signal_level(visibility_m: ArrayLike, dust: ArrayLike | None = None, *, criteria: Mapping[str, float],
                           local_blue_visibility_m: float | None = None) -> Data:
    """Sandstorm signal level from visibility (observed branch): the highest level L of ``criteria`` (colour ->
    visibility V_L m) with dust weather and visibility < V_L; 0 otherwise. Dust weather: visibility < 10 km
    (GB/T 20480-2017 class >= 1) where ``dust`` is true (None: every reduced visibility is dust; the station
    grading's discriminator is wind >= 5 m s-1 and RH < 70 %, rules.toml).

    The Order No. 16 levels (sandstorm, strong and extreme sandstorm visibilities) are in warning/data/rules.toml
    [hazards.sandstorm] (``warning.rule_params.sandstorm_criteria``). ``local_blue_visibility_m`` (rules.toml
    [sandstorm] local_blue_visibility_m) adds Gansu/Lanzhou's local blue (1) for floating dust / blowing sand
    below that visibility, a local extension below the national levels; None leaves it out.

    Reference: CMA Order No. 16 (2007) annex, 沙尘暴 signal; Lanzhou local dust warning (2025-09-15).
    """
    levels = signal_levels(criteria)
    visibility_m, dust = harmonize(visibility_m, dust)
    like = first_dataarray(visibility_m, dust)
    vis = quantity(visibility_m, "m", "visibility", "visibility_m")
    is_dust = np.ones(vis.shape) if dust is None else as_array(dust, "dust")
    vis, is_dust = broadcast_arrays(vis, is_dust, names=("visibility_m", "dust"))
    dusty = compare(vis, SAND_DUST_VIS_M[1], "<") & (is_dust > 0)
    level = np.zeros(vis.shape)
    if local_blue_visibility_m is not None:
        level = np.where(dusty & compare(vis, local_blue_visibility_m, "<"), 1.0, level)
    for code, below in levels:
        level = np.where(dusty & compare(vis, below, "<"), code, level)
    level = np.where(np.isnan(vis) | np.isnan(is_dust), np.nan, level)
    return wrap_like(level, like, units="1", long_name="sandstorm signal level (0 none .. 4 red)",
                     references=SAND_REF, name="sandstorm_level")
