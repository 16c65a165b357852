"""Rainfall and flood indices: rolling accumulations from irregular reports, n-day totals, antecedent
precipitation index.

Precipitation is in mm. A missing report (or a gap between reports) is **missing, not zero**: a window that
is not completely covered by non-missing reports gives NaN. See ../shared/docs/STANDARDS.md sections
1.1.1 (rainstorm signal: rolling 12 h / 6 h / 3 h), 1.2 (GB/T 28592-2012 grades), 1.8 and 2.9 (API).
Signal thresholds are parameters: their one place is warning/data/rules.toml.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr

from indices._blocks import (
    ArrayLike,
    Data,
    FloatArray,
    compare,
    first_dataarray,
    require_time_axis,
    rolling_sum,
    signal_levels,
    time_last,
    trailing_weighted_sum,
    wrap_like,
)
from indices.units import quantity

#: Default rolling windows (hours) of :func:`rolling_accumulations`: those the rules in warning/data/rules.toml read
#: (rain_1h .. rain_24h). The signal thresholds are parameters (:func:`rainstorm_signal_level`).
ACCUMULATION_WINDOWS_H: tuple[int, ...] = (1, 3, 6, 12, 24)
#: Default accumulation period of one report (hours): hourly AWS precipitation.
DEFAULT_REPORT_PERIOD_H = 1.0
ACCUMULATION_REF = ("CMA Order No. 16 (2007) annex, 暴雨 signal (rolling 3/6/12 h accumulations); "
                    "GB/T 28592-2012")

#: Kohler & Linsley (1951) API decay constant range quoted in the literature (k ~ 0.85-0.98).
API_DECAY_RANGE = (0.0, 1.0)
API_FORMS = ("kohler_linsley", "pa")
API_REF = (
    "Kohler & Linsley (1951) U.S. Weather Bureau Res. Paper 34 (API_t = k API_t-1 + P_t); "
    "finite window form: Schröter et al. (2015), xclim antecedent_precipitation_index; "
    "Chinese 前期影响雨量 Pa_t+1 = K(Pa_t + P_t) capped at Wm "
    "(standard hydrological practice; citation UNCONFIRMED)"
)


def _times_to_seconds(times: Any) -> npt.NDArray[np.int64]:
    """datetime64 (any resolution) -> int64 seconds; NaT -> INT64 min sentinel."""
    t = np.asarray(times)
    if not np.issubdtype(t.dtype, np.datetime64):
        raise ValueError(f"times must be datetime64, got dtype {t.dtype}")
    nat = np.isnat(t)
    secs = t.astype("datetime64[s]").astype(np.int64)
    return np.where(nat, np.iinfo(np.int64).min, secs)


def _report_grid(p: FloatArray, times: Any, period_h: ArrayLike
                 ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The report end times (int64 s, NaT as the INT64 min sentinel) and periods (int64 s), as [rows, n]."""
    ends = _times_to_seconds(times.values if isinstance(times, xr.DataArray) else times)
    if ends.shape not in (p.shape[-1:], p.shape):
        raise ValueError(f"times shape {ends.shape} must be {p.shape[-1:]} or {p.shape}")
    per_h = np.asarray(period_h.values if isinstance(period_h, xr.DataArray) else period_h, dtype=np.float64)
    if np.any(~np.isfinite(per_h)) or np.any(per_h <= 0):
        raise ValueError("period_h must be finite and > 0")
    try:
        per = np.broadcast_to(np.rint(per_h * 3600.0).astype(np.int64), p.shape)
    except ValueError as exc:
        raise ValueError(f"period_h shape {per_h.shape} does not broadcast to {p.shape}") from exc
    rows = int(np.prod(p.shape[:-1], dtype=np.int64))
    n = p.shape[-1]
    return np.broadcast_to(ends, p.shape).reshape(rows, n).copy(), per.reshape(rows, n)


def _pad_nat(en: npt.NDArray[np.int64], pr: FloatArray, pe: npt.NDArray[np.int64], w: int) -> npt.NDArray[np.bool_]:
    """Replace trailing NaT padding in ``en`` (in place) by increasing dummy times after the row's last time, and
    check the order of the times and that the report periods do not overlap. Returns the valid-time mask."""
    nat = en == np.iinfo(np.int64).min
    valid_t = ~nat
    if nat.any():
        if np.any(np.diff(nat.astype(np.int8), axis=-1) < 0):
            raise ValueError("NaT in times is only allowed as trailing padding")
        if np.any(nat & ~np.isnan(pr)):
            raise ValueError("NaT times must carry NaN precipitation")
        last = np.where(valid_t, en, np.iinfo(np.int64).min).max(axis=-1, keepdims=True)
        last = np.where(last == np.iinfo(np.int64).min, 0, last)
        step = w + int(pe.max()) + 1
        en[...] = np.where(nat, last + step * np.cumsum(nat, axis=-1), en)
    if en.shape[-1] > 1:
        d = np.diff(en, axis=-1)
        if np.any(d <= 0):
            raise ValueError("times must be strictly increasing along the last axis")
        if np.any(pe[:, 1:][valid_t[:, 1:]] > d[valid_t[:, 1:]]):
            raise ValueError("report periods overlap (period_h longer than the spacing between reports)")
    return valid_t


def _window_totals(en: npt.NDArray[np.int64], pr: FloatArray, pe: npt.NDArray[np.int64], w: int) -> FloatArray:
    """[rows, n] window totals: all rows laid on one time line, separated by more than a window, for one vectorised
    searchsorted; NaN where the reports in the window do not cover it exactly or one is missing."""
    rows, n = pr.shape
    base = en.min(axis=-1, keepdims=True)
    span = int((en - base).max()) + w + int(pe.max()) + 1
    flat = ((en - base) + np.arange(rows, dtype=np.int64)[:, None] * span).ravel()
    k0 = np.searchsorted(flat, flat - w, side="right")  # first report ending after the window start
    amt = pr.ravel()
    perf = pe.ravel()
    isnan = np.isnan(amt)
    c_amt = np.concatenate([[0.0], np.cumsum(np.where(isnan, 0.0, amt))])
    c_nan = np.concatenate([[0], np.cumsum(isnan)])
    c_nz = np.concatenate([[0], np.cumsum(np.where(isnan, 0.0, amt) != 0.0)])
    c_per = np.concatenate([[0], np.cumsum(perf)])
    j = np.arange(flat.size)
    total = c_amt[j + 1] - c_amt[k0]
    total = np.where(c_nz[j + 1] - c_nz[k0] == 0, 0.0, total)
    covered = c_per[j + 1] - c_per[k0]
    start_ok = (flat[k0] - perf[k0]) >= flat - w
    ok = (c_nan[j + 1] - c_nan[k0] == 0) & start_ok & (covered == w)
    return np.asarray(np.where(ok, total, np.nan).reshape(rows, n), dtype=np.float64)


def rolling_accumulation(
    precip_mm: ArrayLike,
    window_h: float,
    *,
    times: Any = None,
    period_h: ArrayLike = DEFAULT_REPORT_PERIOD_H,
) -> Data:
    """Precipitation accumulated over the ``window_h`` hours ending at each report time.

    Each report j carries the amount that fell in (t_j - period_j, t_j]. The accumulation at report time t is
    ``sum(P_k for reports with (t_k - period_k, t_k] inside (t - W, t])`` and is defined only when those
    periods cover the whole window: a gap, a missing (NaN) amount or a report whose period straddles the
    window start gives NaN (missing is never zero, and a longer report is never split).

    ``times``: datetime64 of the report ends, shape (n,) shared by all series or the full shape of
    ``precip_mm``; NaT entries (padding) must be trailing and carry NaN amounts. If ``precip_mm`` is a
    DataArray and ``times`` is None, its last dimension's coordinate is used. ``period_h`` is the
    accumulation period of each report (scalar or same shape, e.g. the ``precip_period_h`` field).
    Raises ``ValueError`` for unsorted/duplicate times or overlapping report periods.

    Reference: CMA Order No. 16 (2007) annex (rolling 12/6/3 h rainstorm criteria).
    """
    precip_mm = time_last(precip_mm)
    like = first_dataarray(precip_mm)
    p = quantity(precip_mm, "mm", "precipitation", "precip_mm")
    require_time_axis(p, "precip_mm")
    if times is None:
        if not isinstance(precip_mm, xr.DataArray):
            raise ValueError("times is required for numpy input")
        times = precip_mm[precip_mm.dims[-1]].values
    if window_h <= 0:
        raise ValueError(f"window_h must be > 0, got {window_h}")
    en, pe = _report_grid(p, times, period_h)
    pr = p.reshape(en.shape)
    w = round(window_h * 3600.0)
    valid_t = _pad_nat(en, pr, pe, w)
    out: FloatArray = np.where(valid_t, _window_totals(en, pr, pe, w), np.nan).reshape(p.shape)
    return wrap_like(out, like, units="mm", long_name=f"{window_h:g} h precipitation accumulation",
                     references=ACCUMULATION_REF, name=f"precip_{window_h:g}h")


def rolling_accumulations(
    precip_mm: ArrayLike,
    windows_h: tuple[float, ...] = ACCUMULATION_WINDOWS_H,
    *,
    times: Any = None,
    period_h: ArrayLike = DEFAULT_REPORT_PERIOD_H,
) -> dict[float, Data]:
    """:func:`rolling_accumulation` for each window in ``windows_h`` (default 1, 3, 6, 12, 24 h)."""
    return {w: rolling_accumulation(precip_mm, w, times=times, period_h=period_h) for w in windows_h}


def n_day_total(precip_daily_mm: ArrayLike, n: int) -> Data:
    """Trailing n-day precipitation total along the last (daily) axis: S_t = sum(P_t-n+1 .. P_t).

    The first n-1 days are NaN and any missing day in the window gives NaN. An all-zero window is exactly 0.

    Reference: ETCCDI Rx5day-style running totals (Zhang et al. 2011); GB/T 28592-2012 24 h grades.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    precip_daily_mm = time_last(precip_daily_mm)
    like = first_dataarray(precip_daily_mm)
    p = quantity(precip_daily_mm, "mm", "precipitation", "precip_daily_mm")
    require_time_axis(p, "precip_daily_mm")
    return wrap_like(rolling_sum(p, n), like, units="mm", long_name=f"{n}-day precipitation total",
                     references="Zhang et al. (2011) WIREs Clim. Change 2:851 (ETCCDI)", name=f"precip_{n}d")


def antecedent_precipitation_index(
    precip_daily_mm: ArrayLike,
    decay: float,
    *,
    window: int | None = None,
    form: str = "kohler_linsley",
    initial_mm: float = 0.0,
    capacity_mm: float | None = None,
) -> Data:
    """Antecedent precipitation index (mm) along the last (daily) axis, decay constant ``decay`` = k.

    * ``form="kohler_linsley"`` (default), ``window=None``: API_t = k API_t-1 + P_t, API_-1 = ``initial_mm``
      (Kohler & Linsley 1951). For steady rain P it tends to P / (1 - k). The recursion has infinite memory,
      so a missing day makes that day and every later day NaN.
    * ``window=w``: the finite form API_t = sum_{i=0}^{w-1} k^i P_t-i (xclim
      ``antecedent_precipitation_index(pr, window, p_exp=k)``, Schröter et al. 2015); a missing day only
      affects the w days whose window contains it (recommended for streaming).
    * ``form="pa"``: Chinese 前期影响雨量 Pa_t = K (Pa_t-1 + P_t-1), i.e. the state at the start of day t
      (excluding day t's rain), capped at the soil capacity Wm = ``capacity_mm``
      (standard hydrological practice; exact standard citation UNCONFIRMED). Missing days propagate as above.

    ``capacity_mm`` (Wm) may also cap the Kohler-Linsley recursion. Reference: see :data:`API_REF`.
    """
    if not (API_DECAY_RANGE[0] < decay < API_DECAY_RANGE[1]):
        raise ValueError(f"decay must be in (0, 1), got {decay}")
    if form not in API_FORMS:
        raise ValueError(f"form must be one of {API_FORMS}, got {form!r}")
    precip_daily_mm = time_last(precip_daily_mm)
    like = first_dataarray(precip_daily_mm)
    p = quantity(precip_daily_mm, "mm", "precipitation", "precip_daily_mm")
    require_time_axis(p, "precip_daily_mm")
    if window is not None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if form != "kohler_linsley" or capacity_mm is not None:
            raise ValueError("window= is only defined for the uncapped kohler_linsley form")
        out = trailing_weighted_sum(p, decay ** np.arange(window, dtype=np.float64))
    else:
        cap = np.inf if capacity_mm is None else float(capacity_mm)
        out = np.empty(p.shape)
        state = np.full(p.shape[:-1], float(initial_mm))
        for t in range(p.shape[-1]):  # loop over time only; vectorised over all series; NaN propagates
            if form == "kohler_linsley":
                state = np.minimum(decay * state + p[..., t], cap)
            elif t == 0:
                state = np.minimum(state, cap)
            else:
                state = np.minimum(decay * (state + p[..., t - 1]), cap)
            out[..., t] = state
    return wrap_like(np.asarray(out, dtype=np.float64), like, units="mm",
                     long_name="antecedent precipitation index", references=API_REF, name="api")


def rainstorm_signal_level(accumulations: Mapping[float, Data],
                           criteria: Mapping[str, tuple[float, float]]) -> Data:
    """Highest rainstorm signal level met by rolling accumulations (0 none, 1 blue .. 4 red).

    level = max{ L : A_w(L) >= R(L) } over the levels L of ``criteria`` (colour -> (window w hours, R mm)); 0 when
    none is met; NaN where every needed accumulation is missing. ``accumulations`` maps window hours to arrays
    (e.g. from :func:`rolling_accumulations`) and must hold every window the criteria name. The Order No. 16
    observed-branch criteria (12, 6 and 3 h accumulations; 以上 read as >=) are in warning/data/rules.toml
    [hazards.rainstorm] (``warning.rule_params.rainstorm_criteria``).

    Reference: CMA Order No. 16 (2007) annex, 暴雨 signal.
    """
    levels = signal_levels(criteria)
    like = first_dataarray(*accumulations.values())
    arrays = {h: np.asarray(a.values if isinstance(a, xr.DataArray) else a, dtype=np.float64)
              for h, a in accumulations.items()}
    needed = {hours for _, (hours, _) in levels}
    missing = needed - set(arrays)
    if missing:
        raise ValueError(f"accumulations lacks windows {sorted(missing)} h")
    shape = np.broadcast_shapes(*(arrays[h].shape for h in needed))
    level = np.zeros(shape)
    all_nan = np.ones(shape, dtype=bool)
    for code, (hours, mm) in levels:
        a = arrays[hours]
        all_nan &= np.isnan(a)
        level = np.where(compare(a, mm, ">="), np.maximum(level, code), level)
    out = np.where(all_nan, np.nan, level)
    return wrap_like(out, like, units="1", long_name="rainstorm signal level (0 none .. 4 red)",
                     references=ACCUMULATION_REF, name="rainstorm_level")
