"""Frost indices: frost intensity / signal level from air and ground (0 cm) minimum temperature, frost days.

Temperatures in degC; NaN is missing. Signal levels use 0 = none, 1 = blue, 2 = yellow, 3 = orange,
4 = red (the ordering of ``warning.shared.records.WarningLevel``). See ../shared/docs/STANDARDS.md 1.1.1, 1.6, 2.8.
"""

from __future__ import annotations

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
    time_last,
    wrap_like,
)
from indices.units import quantity

#: Order No. 16 frost signal on the **ground (0 cm) minimum temperature**, degC, level -> "at or below".
#: Blue (48 h, <= 0) and yellow (24 h, <= -3) confirmed from 12379 relays; orange (24 h, <= -5) is
#: UNCONFIRMED for the national ground-temperature wording (a provincial variant uses air temperature).
FROST_SIGNAL_GROUND_C: dict[int, float] = {1: 0.0, 2: -3.0, 3: -5.0}
#: Offset (K) used to estimate the ground minimum from the 2 m air minimum when no ground observation
#: exists: ground ~= air - offset. UNCONFIRMED heuristic ("2 m Tmin of 2-4 degC on a clear calm night can
#: give ground <= 0 degC"); calibrate per station from paired observations before operational use.
AIR_TO_GROUND_OFFSET_C = 3.0
#: ETCCDI frost day: TN < 0 degC.
FROST_DAY_THRESHOLD_C = 0.0
FROST_REF = ("CMA Order No. 16 (2007) annex, 霜冻 signal on the 地面 (0 cm) minimum temperature; "
             "orange threshold and air-to-ground offset UNCONFIRMED")
ETCCDI_REF = "Zhang et al. (2011) WIREs Clim. Change 2:851 (ETCCDI FD: TN < 0 degC)"


def effective_ground_tmin(
    tmin_air_c: ArrayLike,
    tmin_ground_c: ArrayLike | None = None,
    *,
    air_ground_offset_c: float = AIR_TO_GROUND_OFFSET_C,
) -> Data:
    """Ground (0 cm) minimum temperature: observed where available, else Tmin_air - offset (degC).

    T_g = tmin_ground_c if not NaN, else tmin_air_c - ``air_ground_offset_c`` (UNCONFIRMED heuristic offset,
    default 3 K). NaN where both are missing.

    Reference: CMA Order No. 16 frost signal (uses 地面最低温度); offset heuristic, see STANDARDS.md 1.6.
    """
    tmin_air_c, tmin_ground_c = harmonize(tmin_air_c, tmin_ground_c)
    like = first_dataarray(tmin_ground_c, tmin_air_c)
    air = quantity(tmin_air_c, "degC", "temperature", "tmin_air_c")
    if tmin_ground_c is None:
        ground = np.full(air.shape, np.nan)
    else:
        ground = quantity(tmin_ground_c, "degC", "ground_temperature", "tmin_ground_c")
    air, ground = broadcast_arrays(air, ground, names=("tmin_air_c", "tmin_ground_c"))
    out = np.where(np.isnan(ground), air - air_ground_offset_c, ground)
    return wrap_like(out, like, units="degC", long_name="ground (0 cm) minimum temperature (observed or "
                     "estimated)", references=FROST_REF, name="ground_tmin")


def frost_intensity(
    tmin_air_c: ArrayLike,
    tmin_ground_c: ArrayLike | None = None,
    *,
    air_ground_offset_c: float = AIR_TO_GROUND_OFFSET_C,
) -> Data:
    """Frost intensity as the Order No. 16 frost signal level from the ground minimum temperature.

    T_g from :func:`effective_ground_tmin`; level 0 if T_g > 0, 1 (blue) if T_g <= 0, 2 (yellow) if
    T_g <= -3, 3 (orange) if T_g <= -5 degC (:data:`FROST_SIGNAL_GROUND_C`; 以下 read as <=; orange
    UNCONFIRMED). The lead time of the signal (48 h blue, 24 h yellow/orange) is the caller's: pass the
    forecast minimum for that horizon, or the observed one for the "observed" branch. NaN where missing.

    Reference: CMA Order No. 16 (2007) annex, 霜冻 signal.
    """
    like = first_dataarray(tmin_ground_c, tmin_air_c)
    tg = np.asarray(effective_ground_tmin(tmin_air_c, tmin_ground_c, air_ground_offset_c=air_ground_offset_c))
    tg = np.asarray(tg, dtype=np.float64)
    level = np.zeros(tg.shape)
    for lev, thr in sorted(FROST_SIGNAL_GROUND_C.items()):
        level = np.where(compare(tg, thr, "<="), float(lev), level)
    level = np.where(np.isnan(tg), np.nan, level)
    return wrap_like(level, like, units="1", long_name="frost signal level (0 none, 1 blue, 2 yellow, 3 orange)",
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
