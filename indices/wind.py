"""Wind, cold-wave and sandstorm helpers: Beaufort force, gale signal, minimum-temperature drops and cold
wave grade/signal, sand-dust class and sandstorm signal.

Wind in m s-1, temperatures in degC, visibility in m; NaN is missing. Signal levels use 0 = none, 1 = blue,
2 = yellow, 3 = orange, 4 = red (the ordering of ``warning.shared.records.WarningLevel``). 以上 is read as >=,
以下 as <= (STANDARDS.md preamble). See ../shared/docs/STANDARDS.md 1.1.1 and 1.5.
"""

from __future__ import annotations

import numpy as np

from indices._blocks import (
    ArrayLike,
    Data,
    FloatArray,
    as_array,
    broadcast_arrays,
    first_dataarray,
    harmonize,
    require_time_axis,
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

#: Order No. 16 gale (大风) signal: level -> (mean wind force, gust force), either condition suffices.
GALE_SIGNAL_FORCE: dict[int, tuple[int, int]] = {1: (6, 7), 2: (8, 9), 3: (10, 11), 4: (12, 13)}
GALE_REF = "CMA Order No. 16 (2007) annex, 大风 signal (mean wind or gust Beaufort force)"

#: Single-station cold wave (冷空气国家标准 / GB/T 21987-2017): grade -> ((24, 48, 72 h Tmin drop), Tmin max).
#: Grade 1 寒潮 confirmed; 2 强寒潮 and 3 超强寒潮 UNCONFIRMED.
COLD_WAVE_GRADES: dict[int, tuple[tuple[float, float, float], float]] = {
    1: ((8.0, 10.0, 12.0), 4.0),
    2: ((10.0, 12.0, 14.0), 2.0),
    3: ((12.0, 14.0, 16.0), 0.0),
}
COLD_WAVE_NAMES = {0: "none", 1: "cold wave 寒潮", 2: "strong 强寒潮", 3: "extreme 超强寒潮"}
#: Order No. 16 cold-wave (寒潮) signal: level -> (drop window h, drop degC, Tmin max degC, wind force min).
COLD_WAVE_SIGNAL: dict[int, tuple[int, float, float, int]] = {
    1: (48, 8.0, 4.0, 5),
    2: (24, 10.0, 4.0, 6),
    3: (24, 12.0, 0.0, 6),
    4: (24, 16.0, 0.0, 6),
}
COLD_WAVE_REF = ("GB/T 21987-2017 寒潮等级 / 冷空气国家标准 (grade 1 confirmed, 2-3 UNCONFIRMED); "
                 "CMA Order No. 16 (2007) annex, 寒潮 signal")

#: GB/T 20480-2017 沙尘天气等级 visibility limits (m), UNCONFIRMED here: class -> visibility below.
SAND_DUST_VIS_M: dict[int, float] = {1: 10000.0, 3: 1000.0, 4: 500.0, 5: 50.0}
#: Floating dust (浮尘, class 1) vs blowing sand (扬沙, class 2) in 1-10 km visibility: mean wind <= this
#: (m s-1) is floating dust. UNCONFIRMED.
FLOATING_DUST_MAX_WIND_MS = 3.0
SAND_DUST_NAMES = {0: "none", 1: "floating dust 浮尘", 2: "blowing sand 扬沙", 3: "sandstorm 沙尘暴",
                   4: "severe sandstorm 强沙尘暴", 5: "extreme sandstorm 特强沙尘暴"}
#: Order No. 16 sandstorm signal (observed branch): level -> visibility below (m); yellow/orange/red.
SANDSTORM_SIGNAL_VIS_M: dict[int, float] = {2: 1000.0, 3: 500.0, 4: 50.0}
#: Gansu/Lanzhou local blue "沙尘" warning for floating dust/blowing sand (local extension, not Order 16).
SANDSTORM_LOCAL_BLUE_VIS_M = 10000.0
SAND_REF = ("GB/T 20480-2017 沙尘天气等级 (limits UNCONFIRMED here); CMA Order No. 16 (2007) annex, 沙尘暴 "
            "signal; Lanzhou local blue dust warning")


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


def gale_signal_level(mean_wind_ms: ArrayLike, gust_ms: ArrayLike | None = None) -> Data:
    """Order No. 16 gale signal level from mean wind and gust (m s-1): highest level whose mean-wind force
    **or** gust force is reached (blue 6/7, yellow 8/9, orange 10/11, red 12/13; :data:`GALE_SIGNAL_FORCE`).

    A missing gust is ignored (mean wind alone decides); NaN where the mean wind is missing and the gust
    gives no level. Reference: CMA Order No. 16 (2007) annex, 大风 signal; forces per GB/T 28591-2012.
    """
    mean_wind_ms, gust_ms = harmonize(mean_wind_ms, gust_ms)
    like = first_dataarray(mean_wind_ms, gust_ms)
    fm = as_array(beaufort_force(mean_wind_ms))
    fg = np.full(fm.shape, np.nan) if gust_ms is None else as_array(beaufort_force(gust_ms))
    fm, fg = broadcast_arrays(fm, fg, names=("mean_wind_ms", "gust_ms"))
    level = np.zeros(fm.shape)
    with np.errstate(invalid="ignore"):
        for lev, (f_mean, f_gust) in sorted(GALE_SIGNAL_FORCE.items()):
            level = np.where((fm >= f_mean) | (fg >= f_gust), float(lev), level)
    level = np.where(np.isnan(fm) & ~(level > 0), np.nan, level)
    return wrap_like(level, like, units="1", long_name="gale signal level (0 none .. 4 red)", references=GALE_REF,
                     name="gale_level")


def tmin_drop(tmin_daily_c: ArrayLike, hours: int) -> Data:
    """Fall of the daily minimum temperature over ``hours`` (24, 48 or 72) along the last (daily) axis:
    drop_t = Tmin_(t - hours/24) - Tmin_t (positive = colder). NaN for the first hours/24 days or if either
    day is missing. Interpretation of "24/48/72 h 降温" as the plain day-to-day difference is UNCONFIRMED
    (some services use the largest fall within the window).

    Reference: GB/T 21987-2017 寒潮等级; 冷空气国家标准 (GB/T 20484-2017).
    """
    if hours not in (24, 48, 72):
        raise ValueError(f"hours must be 24, 48 or 72, got {hours}")
    tmin_daily_c = time_last(tmin_daily_c)
    like = first_dataarray(tmin_daily_c)
    t = quantity(tmin_daily_c, "degC", "temperature", "tmin_daily_c")
    require_time_axis(t, "tmin_daily_c")
    k = hours // 24
    out = np.full(t.shape, np.nan)
    if t.shape[-1] > k:
        out[..., k:] = t[..., :-k] - t[..., k:]
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


def cold_wave_signal_level(tmin_daily_c: ArrayLike, wind_ms: ArrayLike) -> Data:
    """Order No. 16 cold-wave signal level per day along the last (daily) axis (0 none .. 4 red).

    blue: 48 h Tmin drop >= 8 and Tmin <= 4 degC and mean wind >= force 5; yellow: 24 h drop >= 10, Tmin <= 4,
    wind >= 6; orange: 24 h drop >= 12, Tmin <= 0, wind >= 6; red: 24 h drop >= 16, Tmin <= 0, wind >= 6
    (:data:`COLD_WAVE_SIGNAL`). ``wind_ms``: the day's (land) mean wind, same shape as ``tmin_daily_c``.

    Reference: CMA Order No. 16 (2007) annex, 寒潮 signal.
    """
    tmin_daily_c, wind_ms = harmonize(tmin_daily_c, wind_ms)
    like = first_dataarray(tmin_daily_c, wind_ms)
    t = quantity(tmin_daily_c, "degC", "temperature", "tmin_daily_c")
    require_time_axis(t, "tmin_daily_c")
    force = as_array(beaufort_force(wind_ms))
    t, force = broadcast_arrays(t, force, names=("tmin_daily_c", "wind_ms"))
    drops = {24: as_array(tmin_drop(t, 24)), 48: as_array(tmin_drop(t, 48))}
    level = np.zeros(t.shape)
    with np.errstate(invalid="ignore"):
        for lev, (hours, drop, tmax, fmin) in sorted(COLD_WAVE_SIGNAL.items()):
            hit = (drops[hours] >= drop) & (t <= tmax) & (force >= fmin)
            level = np.where(hit, float(lev), level)
    unknown = np.isnan(t) | np.isnan(force) | (np.isnan(drops[24]) & np.isnan(drops[48]))
    level = np.where(unknown & ~(level > 0), np.nan, level)
    return wrap_like(level, like, units="1", long_name="cold wave signal level (0 none .. 4 red)",
                     references=COLD_WAVE_REF, name="cold_wave_level")


def sand_dust_class(visibility_m: ArrayLike, wind_ms: ArrayLike | None = None,
                    dust: ArrayLike | None = None) -> Data:
    """Sand-dust weather class (GB/T 20480-2017): 0 none, 1 浮尘, 2 扬沙, 3 沙尘暴 (< 1 km),
    4 强沙尘暴 (< 500 m), 5 特强沙尘暴 (< 50 m).

    Visibility < 10 km is dust weather only where ``dust`` is true (present-weather says sand/dust; haze and
    fog also reduce visibility); if ``dust`` is None, every reduced visibility is assumed to be dust. In
    1-10 km, 扬沙 if the mean wind > 3.0 m s-1 else 浮尘 (wind None -> 扬沙). Limits UNCONFIRMED here
    (:data:`SAND_DUST_VIS_M`, :data:`FLOATING_DUST_MAX_WIND_MS`).

    Reference: GB/T 20480-2017 沙尘天气等级.
    """
    visibility_m, wind_ms, dust = harmonize(visibility_m, wind_ms, dust)
    like = first_dataarray(visibility_m, wind_ms)
    vis = quantity(visibility_m, "m", "visibility", "visibility_m")
    wind = np.full(vis.shape, np.nan) if wind_ms is None else quantity(wind_ms, "m s-1", "wind_speed", "wind_ms")
    is_dust = np.ones(vis.shape) if dust is None else as_array(dust, "dust")
    vis, wind, is_dust = broadcast_arrays(vis, wind, is_dust, names=("visibility_m", "wind_ms", "dust"))
    cls = np.zeros(vis.shape)
    with np.errstate(invalid="ignore"):
        reduced = vis < SAND_DUST_VIS_M[1]
        blowing = ~(wind <= FLOATING_DUST_MAX_WIND_MS)  # NaN wind -> blowing sand
        cls = np.where(reduced, np.where(blowing, 2.0, 1.0), cls)
        for c in (3, 4, 5):
            cls = np.where(vis < SAND_DUST_VIS_M[c], float(c), cls)
        cls = np.where(is_dust > 0, cls, 0.0)
    cls = np.where(np.isnan(vis) | np.isnan(is_dust), np.nan, cls)
    return wrap_like(cls, like, units="1", long_name="sand-dust weather class (0 none .. 5 extreme)",
                     references=SAND_REF, name="sand_dust_class")


def sandstorm_signal_level(visibility_m: ArrayLike, wind_ms: ArrayLike | None = None,
                           dust: ArrayLike | None = None, *, local_blue: bool = False) -> Data:
    """Order No. 16 sandstorm signal level from visibility (observed branch): 2 yellow (sandstorm, < 1000 m),
    3 orange (strong, < 500 m), 4 red (extreme, < 50 m); 0 otherwise. ``local_blue=True`` adds Gansu/Lanzhou's
    local blue (1) for floating dust / blowing sand (vis < 10 km), a local extension below the national
    levels. ``dust`` as in :func:`sand_dust_class`.

    Reference: CMA Order No. 16 (2007) annex, 沙尘暴 signal; Lanzhou local dust warning (2025-09-15).
    """
    visibility_m, wind_ms, dust = harmonize(visibility_m, wind_ms, dust)
    like = first_dataarray(visibility_m, wind_ms)
    vis = quantity(visibility_m, "m", "visibility", "visibility_m")
    cls = as_array(sand_dust_class(visibility_m, wind_ms, dust))
    vis, cls = broadcast_arrays(vis, cls, names=("visibility_m", "class"))
    level = np.zeros(cls.shape)
    with np.errstate(invalid="ignore"):
        is_dust = cls >= 1
        if local_blue:
            level = np.where(is_dust & (vis < SANDSTORM_LOCAL_BLUE_VIS_M), 1.0, level)
        for lev, thr in sorted(SANDSTORM_SIGNAL_VIS_M.items()):
            level = np.where(is_dust & (vis < thr), float(lev), level)
    level = np.where(np.isnan(cls), np.nan, level)
    return wrap_like(level, like, units="1", long_name="sandstorm signal level (0 none .. 4 red)",
                     references=SAND_REF, name="sandstorm_level")
