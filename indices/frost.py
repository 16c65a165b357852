"""Frost indices: frost intensity / signal level from air and ground (0 cm) minimum temperature, frost days.

Temperatures in degC; NaN is missing. Signal levels use 0 = none, 1 = blue, 2 = yellow, 3 = orange,
4 = red (:data:`indices._blocks.SIGNAL_LEVELS`). See ../shared/docs/STANDARDS.md 1.1.1, 1.6, 2.8.

The frost-signal thresholds, the air-to-ground offset and its calm-wind limit are parameters; their one place is
warning/data/rules.toml ([hazards.frost] levels, [frost] air_to_ground_offset_c and calm_wind_ms;
``warning.rule_params``). This
module used to default the offset to 3.0 K while the rules said 2.0: the rules' value is the one in force.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from indices._blocks import (
    ArrayLike,
    Data,
    broadcast_arrays,
    compare,
    first_dataarray,
    harmonize,
    require_time_axis,
    run_length_ending,
    signal_levels,
    time_last,
    wrap_like,
)
from indices.units import quantity

#: ETCCDI frost day: TN < 0 degC (the index's definition, Zhang et al. 2011; not a warning threshold).
FROST_DAY_THRESHOLD_C = 0.0
FROST_REF = ("CMA Order No. 16 (2007) annex, 霜冻 signal on the 地面 (0 cm) minimum temperature; "
             "orange threshold and air-to-ground offset UNCONFIRMED")
ETCCDI_REF = "Zhang et al. (2011) WIREs Clim. Change 2:851 (ETCCDI FD: TN < 0 degC)"


def effective_ground_tmin(
    tmin_air_c: ArrayLike,
    tmin_ground_c: ArrayLike | None = None,
    *,
    air_ground_offset_c: float,
    wind_max_ms: ArrayLike | None = None,
    calm_wind_ms: float = float("inf"),
) -> Data:
    """Ground (0 cm) minimum temperature: observed where available, else Tmin_air - offset on calm days (degC).

    T_g = tmin_ground_c if not NaN, else tmin_air_c - ``air_ground_offset_c`` where the day's highest mean wind
    ``wind_max_ms`` is at most ``calm_wind_ms`` or missing (radiative cooling runs the surface colder than the
    screen on calm clear nights only), else NaN. NaN where both temperatures are missing. The offset and the calm
    limit are UNCONFIRMED heuristics (calibrate per station from paired observations); their values are rules.toml
    [frost] air_to_ground_offset_c and calm_wind_ms (the station grading's ``ingest.quantities.ground_tmin``).

    Reference: CMA Order No. 16 frost signal (uses 地面最低温度); offset heuristic, see STANDARDS.md 1.6.
    """
    tmin_air_c, tmin_ground_c = harmonize(tmin_air_c, tmin_ground_c)
    like = first_dataarray(tmin_ground_c, tmin_air_c)
    air = quantity(tmin_air_c, "degC", "temperature", "tmin_air_c")
    if tmin_ground_c is None:
        ground = np.full(air.shape, np.nan)
    else:
        ground = quantity(tmin_ground_c, "degC", "ground_temperature", "tmin_ground_c")
    if wind_max_ms is None:
        wind = np.full(air.shape, np.nan)
    else:
        wind = quantity(wind_max_ms, "m s-1", "wind_speed", "wind_max_ms")
    air, ground, wind = broadcast_arrays(air, ground, wind, names=("tmin_air_c", "tmin_ground_c", "wind_max_ms"))
    with np.errstate(invalid="ignore"):
        windy = wind > calm_wind_ms  # False where missing
    out = np.where(np.isnan(ground), np.where(windy, np.nan, air - air_ground_offset_c), ground)
    return wrap_like(out, like, units="degC", long_name="ground (0 cm) minimum temperature (observed or "
                     "estimated)", references=FROST_REF, name="ground_tmin")


def frost_intensity(
    tmin_air_c: ArrayLike,
    tmin_ground_c: ArrayLike | None = None,
    *,
    air_ground_offset_c: float,
    criteria: Mapping[str, float],
    wind_max_ms: ArrayLike | None = None,
    calm_wind_ms: float = float("inf"),
) -> Data:
    """Frost intensity as the frost signal level from the ground minimum temperature.

    T_g from :func:`effective_ground_tmin`; level = max{ L : T_g <= G_L } over ``criteria`` (colour -> G_L degC;
    以下 read as <=), 0 if none holds, NaN where T_g is missing. The Order No. 16 ground-temperature levels are in
    warning/data/rules.toml [hazards.frost] (``warning.rule_params.frost_criteria``; the orange wording is
    UNCONFIRMED). The lead time of the signal is the caller's: pass the forecast minimum for that horizon, or the
    observed one for the "observed" branch.

    Reference: CMA Order No. 16 (2007) annex, 霜冻 signal.
    """
    levels = signal_levels(criteria)
    like = first_dataarray(tmin_ground_c, tmin_air_c)
    tg = np.asarray(effective_ground_tmin(tmin_air_c, tmin_ground_c, air_ground_offset_c=air_ground_offset_c,
                                          wind_max_ms=wind_max_ms, calm_wind_ms=calm_wind_ms), dtype=np.float64)
    level = np.zeros(tg.shape)
    for code, at_or_below in levels:
        level = np.where(compare(tg, at_or_below, "<="), code, level)
    level = np.where(np.isnan(tg), np.nan, level)
    return wrap_like(level, like, units="1", long_name="frost signal level (0 none .. 4 red)",
                     references=FROST_REF, name="frost_level")


def frost_days(tmin_c: ArrayLike, threshold_c: float = FROST_DAY_THRESHOLD_C, *, op: str = "<") -> Data:
    """Frost-day indicator per day: 1.0 where TN <op> threshold (ETCCDI FD: TN < 0 degC), else 0; NaN missing.

    Sum along time for the FD count. Reference: Zhang et al. (2011), ETCCDI; xclim ``frost_days``.
    """
    like = first_dataarray(tmin_c)
    t = quantity(tmin_c, "degC", "temperature", "tmin_c")
    out = np.where(np.isnan(t), np.nan, compare(t, threshold_c, op).astype(np.float64))
    return wrap_like(out, like, units="1", long_name=f"frost day (tmin {op} {threshold_c} degC)",
                     references=ETCCDI_REF, name="frost_day")


def consecutive_frost_days(tmin_c: ArrayLike, threshold_c: float = FROST_DAY_THRESHOLD_C, *,
                           op: str = "<") -> Data:
    """Run length of consecutive frost days ending on each day along the last (daily) axis (0 if not a
    frost day, NaN where missing; a missing day breaks the run). Max over time = xclim
    ``consecutive_frost_days``. Reference: ETCCDI (Zhang et al. 2011); xclim."""
    tmin_c = time_last(tmin_c)
    like = first_dataarray(tmin_c)
    t = quantity(tmin_c, "degC", "temperature", "tmin_c")
    require_time_axis(t, "tmin_c")
    run = run_length_ending(compare(t, threshold_c, op)).astype(np.float64)
    out = np.where(np.isnan(t), np.nan, run)
    return wrap_like(out, like, units="days", long_name="consecutive frost days", references=ETCCDI_REF,
                     name="cfd")
