"""Heat indices: NWS heat index, humidex, apparent temperature, Excess Heat Factor, hot spells.

All temperatures are degC, relative humidity in %, wind in m s-1 (DataArrays with other declared units are
converted, see :mod:`indices.units`). NaN is missing and propagates. Time series functions work along the
last axis and are vectorised over leading axes. See ../shared/docs/STANDARDS.md sections 1.1.1, 2.3, 2.4,
2.6.
"""

from __future__ import annotations

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
    rolling_sum,
    run_length_ending,
    spell_membership,
    time_last,
    wrap_like,
)
from indices.units import KELVIN_OFFSET, celsius_to_fahrenheit, fahrenheit_to_celsius, quantity

# --------------------------------------------------------------------------------------------------
# NWS heat index constants (Rothfusz 1990, NWS SR 90-23; WPC heat index equation page). T in degF, RH in %.
# --------------------------------------------------------------------------------------------------
#: Steadman-consistent simple formula HI_s = 0.5 * (T + 61.0 + (T - 68.0) * 1.2 + 0.094 * RH)
HI_SIMPLE = {"c0": 61.0, "t_ref": 68.0, "t_slope": 1.2, "rh": 0.094}
#: WPC text: the regression is used when (HI_s + T) / 2 >= this value (degF).
HI_REGRESSION_SWITCH_F = 80.0
#: Anderson et al. (2013) Fig. 3 / MetPy: the regression is used when HI_s >= this value (degF).
HI_SIMPLE_SWITCH_F = 79.0
#: Branch-selection variants accepted by :func:`heat_index`.
HI_METHODS = ("anderson2013", "wpc")
#: Rothfusz regression coefficients (c0 .. c8 for 1, T, RH, T*RH, T^2, RH^2, T^2*RH, T*RH^2, T^2*RH^2).
ROTHFUSZ_F = (-42.379, 2.04901523, 10.14333127, -0.22475541, -6.83783e-3, -5.481717e-2,
              1.22874e-3, 8.5282e-4, -1.99e-6)
#: Low-humidity adjustment: applied where RH < 13 % and 80 <= T <= 112 degF.
HI_LOW_RH = {"rh_max": 13.0, "t_min": 80.0, "t_max": 112.0}
#: High-humidity adjustment: applied where RH > 85 % and 80 <= T <= 87 degF.
HI_HIGH_RH = {"rh_min": 85.0, "t_min": 80.0, "t_max": 87.0}
#: At or below this temperature (degF) the heat index is the air temperature (MetPy/thermofeel convention,
#: not in the WPC text).
HI_COLD_PASSTHROUGH_F = 40.0
#: Below this temperature (degF) the heat index is undefined (MetPy ``mask_undefined``).
HI_UNDEFINED_BELOW_F = 80.0

#: Elements per chunk in :func:`heat_index` (keeps the temporaries in cache).
_CHUNK = 65536

HEAT_INDEX_REF = (
    "Rothfusz (1990) NWS Technical Attachment SR 90-23; NWS/WPC heat index equation "
    "(https://www.wpc.ncep.noaa.gov/html/heatindex_equation.shtml); Steadman (1979) J. Appl. Meteor. 18:861"
)

# Humidex (Masterton & Richardson 1979, Environment Canada): e from the dew point.
HUMIDEX_E0_HPA = 6.11
HUMIDEX_L_RV = 5417.7530  # K (latent heat / water vapour gas constant)
HUMIDEX_T0_K = 273.16
HUMIDEX_FACTOR = 5.0 / 9.0
HUMIDEX_E_OFFSET_HPA = 10.0
HUMIDEX_REF = ("Masterton & Richardson (1979) Humidex, a method of quantifying human discomfort, "
               "Environment Canada CLI 1-79")

# Apparent temperature, BoM non-radiation form (Steadman 1994).
AT_COEF = {"e": 0.33, "ws": -0.70, "c": -4.00}
#: Vapour pressure e = RH/100 * 6.105 * exp(17.27 T / (237.7 + T)) hPa (BoM)
AT_VP = {"e0": 6.105, "a": 17.27, "b": 237.7}
AT_REF = ("Steadman (1994) Aust. Met. Mag. 43:1-16; Bureau of Meteorology thermal stress "
          "(http://www.bom.gov.au/info/thermal_stress/#atapproximation)")

# Excess Heat Factor (Nairn & Fawcett 2015) and severity (Nairn 2018).
EHF_SIG_DAYS = 3
EHF_ACCL_DAYS = 30
#: Severity classes of the index (Nairn et al. 2018; the BoM heatwave service): EHF/EHF85 in (0, 1] low-intensity,
#: (1, 3] severe, > 3 extreme. The index's own classification, not a warning threshold: the heat-health warning
#: levels are rules.toml [hazards.heat_health] (which maps these classes to colours).
EHF_SEVERE_RATIO = 1.0
EHF_EXTREME_RATIO = 3.0
EHF_CLASSES = {0: "none", 1: "low-intensity", 2: "severe", 3: "extreme"}
EHF_REF = ("Nairn & Fawcett (2015) Int. J. Environ. Res. Public Health 12:227-253, "
           "doi:10.3390/ijerph120100227; severity: Nairn et al. (2018) IJERPH 15:2494, "
           "doi:10.3390/ijerph15112494")

HOT_SPELL_REF = "CMA Order No. 16 (2007), annex: 高温 yellow signal (Tmax at or above a threshold on consecutive days)"


def _heat_index_f(t: FloatArray, rh: FloatArray, method: str) -> FloatArray:
    """NWS heat index in degF from T (degF) and RH (%); see :func:`heat_index`.

    1-D input. Written with in-place operations (few temporaries); the adjustments are evaluated only on
    the (usually small) subsets where they apply.
    """
    s = HI_SIMPLE
    # simple form 0.5 [T + 61 + 1.2 (T - 68) + 0.094 RH]
    hi = t + s["c0"]
    hi += (t - s["t_ref"]) * s["t_slope"]
    hi += s["rh"] * rh
    hi *= 0.5
    c = ROTHFUSZ_F
    # Rothfusz regression, Horner-like: c0 + T(c1 + c4 T) + RH(c2 + c5 RH) + T RH (c3 + c6 T + c7 RH + c8 T RH)
    tr = t * rh
    reg = tr * c[8]
    reg += c[3]
    reg += c[6] * t
    reg += c[7] * rh
    reg *= tr
    tmp = t * c[4]
    tmp += c[1]
    tmp *= t
    reg += tmp
    np.multiply(rh, c[5], out=tmp)
    tmp += c[2]
    tmp *= rh
    reg += tmp
    reg += c[0]
    with np.errstate(invalid="ignore"):
        # branch-free select hi = where(use_reg, reg, simple): random masks make np.where slow
        if method == "wpc":
            np.add(hi, t, out=tmp)
            keep_simple = tmp < 2.0 * HI_REGRESSION_SWITCH_F
            _apply_adjustments(reg, t, rh, inclusive=False)
        else:
            keep_simple = hi < HI_SIMPLE_SWITCH_F
        hi -= reg
        hi *= keep_simple
        hi += reg
        if method != "wpc":
            _apply_adjustments(hi, t, rh, inclusive=True)
        cold = np.flatnonzero(t <= HI_COLD_PASSTHROUGH_F)
        if cold.size:
            hi[cold] = np.where(np.isnan(rh[cold]), np.nan, t[cold])
    return hi


def _apply_adjustments(hi: FloatArray, t: FloatArray, rh: FloatArray, *, inclusive: bool) -> None:
    """In place: HI -= [(13 - RH)/4] sqrt[(17 - |T - 95|)/17] where RH < 13 % (<= if inclusive) and
    80 <= T <= 112 degF; HI += [(RH - 85)/10] [(87 - T)/5] where RH > 85 % and 80 <= T <= 87 degF."""
    a, b = HI_LOW_RH, HI_HIGH_RH
    with np.errstate(invalid="ignore"):
        idx = np.flatnonzero((rh <= a["rh_max"]) if inclusive else (rh < a["rh_max"]))
        if idx.size:
            ts, rs = t[idx], rh[idx]
            sel = (ts >= a["t_min"]) & (ts <= a["t_max"])
            idx, ts, rs = idx[sel], ts[sel], rs[sel]
            hi[idx] -= ((a["rh_max"] - rs) / 4.0) * np.sqrt(
                np.clip((17.0 - np.abs(ts - 95.0)) / 17.0, 0.0, None))
        idx = np.flatnonzero(rh > b["rh_min"])
        if idx.size:
            ts, rs = t[idx], rh[idx]
            sel = (ts >= b["t_min"]) & (ts <= b["t_max"])
            idx, ts, rs = idx[sel], ts[sel], rs[sel]
            hi[idx] += ((rs - b["rh_min"]) / 10.0) * ((b["t_max"] - ts) / 5.0)


def heat_index(
    temp_c: ArrayLike, rh_pct: ArrayLike, *, mask_undefined: bool = False, method: str = "anderson2013"
) -> Data:
    """NWS heat index (degC) from air temperature (degC) and relative humidity (%).

    Algorithm (T in degF, RH in %), per the WPC heat-index page:

    1. HI_s = 0.5 * [T + 61.0 + (T - 68.0) * 1.2 + 0.094 RH]  (Steadman-consistent simple form)
    2. If HI_s >= 79 degF (``method="anderson2013"``, the default: Anderson et al. 2013 Fig. 3, MetPy)
       or (HI_s + T) / 2 >= 80 degF (``method="wpc"``, the WPC page's wording) use the Rothfusz regression
       HI = -42.379 + 2.04901523 T + 10.14333127 RH - 0.22475541 T RH - 6.83783e-3 T^2
       - 5.481717e-2 RH^2 + 1.22874e-3 T^2 RH + 8.5282e-4 T RH^2 - 1.99e-6 T^2 RH^2, with
       - RH < 13 % and 80 <= T <= 112 degF: HI -= [(13 - RH) / 4] * sqrt[(17 - |T - 95|) / 17]
       - RH > 85 % and 80 <= T <= 87 degF: HI += [(RH - 85) / 10] * [(87 - T) / 5]
       otherwise HI = HI_s.
    3. T <= 40 degF: HI = T (MetPy / thermofeel convention; not part of the WPC text).

    ``mask_undefined=True`` returns NaN where T < 80 degF (MetPy's default masking). NaN input gives NaN.
    The two methods differ only for 80 <= T < 82 degF at low/moderate RH (up to 0.77 degC): there MetPy
    (``anderson2013``) applies the low-RH adjustment to whichever branch was chosen, while ``wpc`` (as in
    thermofeel ``calculate_heat_index_adjusted``) adjusts only the regression. The default reproduces MetPy
    to ~1e-12 degC wherever MetPy defines the index (T >= 80 degF).

    References: Rothfusz (1990) NWS SR 90-23; WPC heat index equation; Steadman (1979).
    Not the Celsius Blazejczyk regression used by xclim, nor the GB/T 29457 炎热指数.
    """
    if method not in HI_METHODS:
        raise ValueError(f"method must be one of {HI_METHODS}, got {method!r}")
    temp_c, rh_pct = harmonize(temp_c, rh_pct)
    like = first_dataarray(temp_c, rh_pct)
    t_c = quantity(temp_c, "degC", "temperature", "temp_c")
    rh = quantity(rh_pct, "%", "relative_humidity", "rh_pct")
    t_c, rh = broadcast_arrays(t_c, rh, names=("temp_c", "rh_pct"))
    shape = t_c.shape
    tf, rf = np.ravel(t_c), np.ravel(rh)
    out = np.empty(tf.size)
    # process in cache-sized chunks: the kernel is memory-bound on large grids
    for i in range(0, tf.size, _CHUNK):
        t = celsius_to_fahrenheit(tf[i:i + _CHUNK])
        hi_f = _heat_index_f(t, np.ascontiguousarray(rf[i:i + _CHUNK]), method)
        if mask_undefined:
            hi_f[np.flatnonzero(~(t >= HI_UNDEFINED_BELOW_F))] = np.nan
        out[i:i + _CHUNK] = fahrenheit_to_celsius(hi_f)
    return wrap_like(out.reshape(shape), like, units="degC", long_name="NWS heat index", references=HEAT_INDEX_REF,
                     name="heat_index")


def humidex(temp_c: ArrayLike, dewpoint_c: ArrayLike) -> Data:
    """Humidex (degC-like) from air temperature and dew point (degC).

    H = T + (5/9) (e - 10), e = 6.11 exp[5417.7530 (1/273.16 - 1/Td)] hPa, Td in K
    (Masterton & Richardson 1979; Environment Canada). Comfort scale (xclim docstring): 20-29 none,
    30-39 some discomfort, 40-45 great discomfort, >= 46 dangerous. NaN in -> NaN out.

    Reference: Masterton & Richardson (1979) Environment Canada CLI 1-79.
    """
    temp_c, dewpoint_c = harmonize(temp_c, dewpoint_c)
    like = first_dataarray(temp_c, dewpoint_c)
    t = quantity(temp_c, "degC", "temperature", "temp_c")
    td = quantity(dewpoint_c, "degC", "temperature", "dewpoint_c")
    t, td = broadcast_arrays(t, td, names=("temp_c", "dewpoint_c"))
    e = HUMIDEX_E0_HPA * np.exp(HUMIDEX_L_RV * (1.0 / HUMIDEX_T0_K - 1.0 / (td + KELVIN_OFFSET)))
    out = t + HUMIDEX_FACTOR * (e - HUMIDEX_E_OFFSET_HPA)
    return wrap_like(np.asarray(out), like, units="degC", long_name="humidex", references=HUMIDEX_REF,
                     name="humidex")


def vapour_pressure_hpa(temp_c: FloatArray, rh_pct: FloatArray) -> FloatArray:
    """Vapour pressure e = RH/100 * 6.105 * exp(17.27 T / (237.7 + T)) hPa (BoM; used by AT)."""
    return np.asarray(rh_pct / 100.0 * AT_VP["e0"] * np.exp(AT_VP["a"] * temp_c / (AT_VP["b"] + temp_c)))


def apparent_temperature(temp_c: ArrayLike, rh_pct: ArrayLike, wind_ms: ArrayLike) -> Data:
    """Apparent temperature (degC), Steadman (1994) non-radiation form as used by the Australian BoM.

    AT = Ta + 0.33 e - 0.70 ws - 4.00, e = RH/100 * 6.105 exp(17.27 Ta / (237.7 + Ta)) hPa,
    ws = wind speed at 10 m (m s-1).

    References: Steadman (1994) Aust. Met. Mag. 43:1-16; BoM thermal stress page.
    """
    temp_c, rh_pct, wind_ms = harmonize(temp_c, rh_pct, wind_ms)
    like = first_dataarray(temp_c, rh_pct, wind_ms)
    t = quantity(temp_c, "degC", "temperature", "temp_c")
    rh = quantity(rh_pct, "%", "relative_humidity", "rh_pct")
    ws = quantity(wind_ms, "m s-1", "wind_speed", "wind_ms")
    t, rh, ws = broadcast_arrays(t, rh, ws, names=("temp_c", "rh_pct", "wind_ms"))
    out = t + AT_COEF["e"] * vapour_pressure_hpa(t, rh) + AT_COEF["ws"] * ws + AT_COEF["c"]
    return wrap_like(np.asarray(out), like, units="degC", long_name="apparent temperature",
                     references=AT_REF, name="apparent_temperature")


def daily_mean_temperature(tmax_c: ArrayLike, tmin_c: ArrayLike, *, pairing: str = "following_night") -> Data:
    """DMT_i = (Tmax_i + Tmin_i+1) / 2 along the last (daily) axis: a day's maximum with the following night's
    minimum (Nairn & Fawcett 2015, on a 9 am - 9 am day, where the minimum is the next morning's; with a 20:00
    BJT day boundary that night's minimum is the next day's), NaN on the last day. ``pairing="same_day"``:
    (Tmax_i + Tmin_i) / 2, for series whose day already ends after the night."""
    if pairing not in ("following_night", "same_day"):
        raise ValueError(f"pairing must be following_night or same_day, got {pairing!r}")
    tmax_c, tmin_c = harmonize(tmax_c, tmin_c)
    like = first_dataarray(tmax_c, tmin_c)
    tx = quantity(tmax_c, "degC", "temperature", "tmax_c")
    tn = quantity(tmin_c, "degC", "temperature", "tmin_c")
    tx, tn = broadcast_arrays(tx, tn, names=("tmax_c", "tmin_c"))
    if pairing == "following_night":
        tn = _shift(tn, -1) if tn.ndim else tn
    return wrap_like(np.asarray(0.5 * (tx + tn)), like, units="degC", long_name="daily mean temperature",
                     references=EHF_REF, name="dmt")


def _trailing_mean(x: FloatArray, window: int) -> FloatArray:
    """Mean over x[t-window+1 .. t]; NaN in the first window-1 steps or if any value is missing."""
    return rolling_sum(x, window) / window


def _shift(x: FloatArray, k: int) -> FloatArray:
    """out[t] = x[t - k] along the last axis (k > 0 delays, k < 0 advances), NaN-filled."""
    if k == 0:
        return x
    out = np.full(x.shape, np.nan)
    n = x.shape[-1]
    if abs(k) >= n:
        return out
    if k > 0:
        out[..., k:] = x[..., :-k]
    else:
        out[..., :k] = x[..., -k:]
    return out


def excess_heat_factor(tmean_daily: ArrayLike, t95: ArrayLike, *, align: str = "start") -> Data:
    """Excess Heat Factor (K^2) along the last (daily) axis.

    With DMT the daily mean temperature (day i):

    * EHI_sig = (DMT_i + DMT_i+1 + DMT_i+2)/3 - T95
    * EHI_accl = (DMT_i + DMT_i+1 + DMT_i+2)/3 - (DMT_i-1 + ... + DMT_i-30)/30
    * EHF = EHI_sig * max(1, EHI_accl); a heatwave day has EHF > 0.

    ``t95`` is the 95th percentile of DMT over a reference period (1971-2000 in Nairn 2018): a scalar, one
    value per series (shape = leading dims) or one value per day (shape = input shape).
    ``align="start"`` (paper convention) stores the value at day i, the first day of the 3-day window, so the
    last 2 days are NaN (they need future days); ``align="end"`` stores it at day i+2, the day the 3-day
    window completes (useful on observations). The first 30 days (no acclimatisation window) are NaN, as
    is any window containing a missing day.

    Reference: Nairn & Fawcett (2015) IJERPH 12:227, eqs. 1-3.
    """
    if align not in ("start", "end"):
        raise ValueError(f"align must be 'start' or 'end', got {align!r}")
    tmean_daily, t95 = harmonize(tmean_daily, t95)
    like = first_dataarray(tmean_daily)
    x = quantity(tmean_daily, "degC", "temperature", "tmean_daily")
    require_time_axis(x, "tmean_daily")
    thr = quantity(t95, "degC", "temperature", "t95")
    # per-day thresholds keep their shape; per-series thresholds get a trailing time axis
    thr_b = thr if thr.ndim in (0, x.ndim) else thr[..., None]
    m3 = _shift(_trailing_mean(x, EHF_SIG_DAYS), 0)  # at t: mean of t-2..t
    prev30 = _shift(_trailing_mean(x, EHF_ACCL_DAYS), EHF_SIG_DAYS)  # at t: mean of t-32..t-3
    if align == "start":  # move to the first day of the 3-day window
        m3 = _shift(m3, -(EHF_SIG_DAYS - 1))
        prev30 = _shift(prev30, -(EHF_SIG_DAYS - 1))
    try:
        sig = m3 - thr_b
    except ValueError as exc:
        raise ValueError(f"t95 shape {thr.shape} does not match tmean_daily {x.shape}") from exc
    accl = m3 - prev30
    ehf = sig * np.maximum(1.0, accl)  # NaN propagates through np.maximum
    return wrap_like(np.asarray(ehf, dtype=np.float64), like, units="K2", long_name="excess heat factor",
                     references=EHF_REF, name="ehf")


def ehf_severity(ehf: ArrayLike, ehf85: ArrayLike) -> Data:
    """Heatwave severity = EHF / EHF85 (Nairn 2018, eq. 4); EHF85 is the 85th percentile of all positive
    EHF values in the reference period (scalar or one value per series, i.e. leading dims)."""
    ehf, ehf85 = harmonize(ehf, ehf85)
    like = first_dataarray(ehf)
    e = as_array(ehf, "ehf")
    t = as_array(ehf85, "ehf85")
    if t.ndim and t.ndim < e.ndim:
        t = t[..., None]
    if np.any(t[np.isfinite(t)] <= 0):
        raise ValueError("ehf85 must be > 0")
    out = broadcast_arrays(e, t, names=("ehf", "ehf85"))
    return wrap_like(np.asarray(out[0] / out[1]), like, units="1", long_name="heatwave severity (EHF/EHF85)",
                     references=EHF_REF, name="ehf_severity")


def ehf_severity_class(ehf: ArrayLike, ehf85: ArrayLike) -> Data:
    """Heatwave severity class: 0 none (EHF <= 0), 1 low-intensity (0 < EHF <= EHF85),
    2 severe (EHF85 < EHF <= 3 EHF85), 3 extreme (EHF > 3 EHF85); NaN where EHF is missing.
    Names in :data:`EHF_CLASSES`. Reference: Nairn et al. (2018) IJERPH 15:2494; BoM heatwave service."""
    sev = ehf_severity(ehf, ehf85)
    like = first_dataarray(ehf)
    s = as_array(sev)
    with np.errstate(invalid="ignore"):
        cls = np.select([s > EHF_EXTREME_RATIO, s > EHF_SEVERE_RATIO, s > 0.0], [3.0, 2.0, 1.0], 0.0)
    cls = np.where(np.isnan(s), np.nan, cls)
    return wrap_like(cls, like, units="1", long_name="heatwave severity class (0 none .. 3 extreme)",
                     references=EHF_REF, name="ehf_class")


def hot_spell(
    tmax_c: ArrayLike,
    threshold_c: float,
    *,
    min_days: int,
    op: str = ">=",
    output: str = "run_length",
) -> Data:
    """Consecutive hot days along the last (daily) axis.

    A day is hot when ``tmax_c <op> threshold_c``. ``output``:

    * ``"run_length"`` (default): number of consecutive hot days ending on each day (0 if not hot);
    * ``"in_spell"``: 1.0 on every day belonging to a run of >= ``min_days`` hot days, else 0.0;
    * ``"signal"``: 1.0 on days where the run ending that day has reached ``min_days`` (the observed
      branch of the yellow signal), else 0.0.

    A missing day (NaN) breaks the run and is NaN in the output (never assumed hot or cool). The Order No. 16
    heat yellow criterion (Tmax at or above a threshold on consecutive days; 以上 read as >=) is in
    warning/data/rules.toml [hazards.heat] (``warning.rule_params.hot_spell_criterion``).

    Reference: CMA Order No. 16 (2007) annex; ETCCDI/xclim ``hot_spell_*`` (thresh, window, op).
    """
    if output not in ("run_length", "in_spell", "signal"):
        raise ValueError(f"output must be run_length, in_spell or signal, got {output!r}")
    tmax_c = time_last(tmax_c)
    like = first_dataarray(tmax_c)
    x = quantity(tmax_c, "degC", "temperature", "tmax_c")
    require_time_axis(x, "tmax_c")
    hot = compare(x, threshold_c, op)
    if output == "run_length":
        res = run_length_ending(hot).astype(np.float64)
        long_name = f"consecutive days with tmax {op} {threshold_c} degC"
        units = "days"
    elif output == "in_spell":
        res = spell_membership(hot, min_days).astype(np.float64)
        long_name = f"day in a spell of >= {min_days} days with tmax {op} {threshold_c} degC"
        units = "1"
    else:
        res = (run_length_ending(hot) >= min_days).astype(np.float64)
        long_name = f"{min_days}-day tmax {op} {threshold_c} degC criterion met"
        units = "1"
    res = np.where(np.isnan(x), np.nan, res)
    return wrap_like(res, like, units=units, long_name=long_name, references=HOT_SPELL_REF, name="hot_spell")
