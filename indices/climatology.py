"""Station climatology: SPI distribution parameters and percentile thresholds fitted once from history.

The streaming path must never refit decades of history per message. This module fits, from a station
history held in memory (DataArrays with ``station`` and ``time`` dims; no files here, see
``warning.climatology`` for the I/O edge):

* :func:`fit_spi_params` -- SPI distribution parameters per station, accumulation scale and calendar month
  (built on :func:`indices.drought.spi_fit`, so identical to what :func:`indices.drought.spi` fits), as an
  ``xarray.Dataset`` that can be written to NetCDF; :func:`spi_for_month` then gives the SPI of a new month
  from those parameters (:func:`indices.drought.spi_from_params`), equal to the full-record ``spi`` at that
  month.
* :func:`percentile_thresholds` -- a percentile of daily values per station over a base period: the
  95th percentile of the daily mean temperature (DMT95, "T95") of the Excess Heat Factor
  (Nairn & Fawcett 2015).
* :func:`ehf85_thresholds` -- EHF85, the 85th percentile of all positive EHF values over the base period,
  the unit of the heatwave severity (Nairn et al. 2018) used by :func:`indices.heat.ehf_severity`.

NaN is missing throughout. See ../shared/docs/STANDARDS.md sections 2.1 (SPI), 2.6 (EHF), 3.1 (the
climate_indices algorithm that :mod:`indices.drought` follows).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np
import xarray as xr

from indices._blocks import FloatArray, rolling_sum
from indices.drought import SPI_DISTRIBUTIONS, SPI_REF, calibration_rows, spi_fit, spi_from_params
from indices.heat import EHF_REF, excess_heat_factor
from indices.units import quantity

#: Parameter names (in order) stored for each SPI distribution, with their units.
SPI_PARAMS: dict[str, tuple[str, ...]] = {
    "gamma": ("alpha", "beta", "prob_zero"),
    "pearson3": ("prob_zero", "loc", "scale", "skew", "valid"),
}
SPI_PARAM_UNITS: dict[str, str] = {"alpha": "1", "beta": "mm", "prob_zero": "1", "loc": "mm", "scale": "mm",
                                   "skew": "1", "valid": "1"}
#: Default SPI accumulation scales (months).
SPI_SCALES: tuple[int, ...] = (1, 3, 6, 12)
#: Default reference period (WMO 1981-2010 normals period; Nairn 2018 used 1971-2000 for EHF).
DEFAULT_BASE: tuple[int, int] = (1981, 2010)
#: Percentiles of the Excess Heat Factor method: T95 of daily mean temperature, EHF85 of positive EHF.
T95_QUANTILE = 0.95
EHF85_QUANTILE = 0.85
#: Fewest valid days in the base period for a percentile; with fewer, the whole record is used instead
#: (and with fewer than this in the whole record the threshold is NaN).
MIN_PERCENTILE_DAYS = 365

PERCENTILE_REF = ("Nairn & Fawcett (2015) IJERPH 12:227 (DMT95: 95th percentile of daily mean temperature "
                  "over a climate reference period); percentiles by numpy linear interpolation (Hyndman & Fan "
                  "1996 definition 7)")
EHF85_REF = ("Nairn, Beaumont & Lee (2018) IJERPH 15:2494 (EHF85: 85th percentile of all positive EHF values "
             "in the reference period; severity = EHF / EHF85); " + EHF_REF)
CLIMATOLOGY_SPI_REF = SPI_REF + "; parameters fitted once per station and calendar month (indices.drought.spi_fit)"


# ------------------------------------------------------------------------------------------ helpers
def _station_time(da: Any, name: str) -> xr.DataArray:
    """``da`` as a (station, time) DataArray with a datetime64 time coordinate (a 1-D series gets a station)."""
    if not isinstance(da, xr.DataArray):
        raise ValueError(f"{name}: expected an xarray DataArray with dims (station, time)")
    if "time" not in da.dims:
        raise ValueError(f"{name}: needs a 'time' dimension, got dims {da.dims}")
    if da.ndim == 1:
        da = da.expand_dims(station=["0"])
    if da.ndim != 2 or "station" not in da.dims:
        raise ValueError(f"{name}: expected dims (station, time), got {da.dims}")
    if "time" not in da.coords or not np.issubdtype(da["time"].dtype, np.datetime64):
        raise ValueError(f"{name}: the time coordinate must be datetime64")
    return da.transpose("station", "time")


def _check_period(period: tuple[int, int], name: str) -> tuple[int, int]:
    try:
        y0, y1 = (int(period[0]), int(period[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"{name} must be (first_year, last_year), got {period!r}") from exc
    if y0 > y1:
        raise ValueError(f"{name} start {y0} is after its end {y1}")
    return y0, y1


def _check_quantile(q: float) -> float:
    qq = float(q)
    if not 0.0 < qq < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    return qq


def _scales(scales: Iterable[int]) -> list[int]:
    out = [int(s) for s in scales]
    if not out or any(s < 1 for s in out) or len(set(out)) != len(out):
        raise ValueError(f"scales must be distinct positive integers, got {scales!r}")
    return out


# ------------------------------------------------------------------------------------------ SPI
def fit_spi_params(
    precip_monthly: xr.DataArray,
    scales: Sequence[int] = SPI_SCALES,
    distribution: str = "gamma",
    calibration: tuple[int, int] = DEFAULT_BASE,
) -> xr.Dataset:
    """Fit the SPI distribution per station, accumulation scale and calendar month, once.

    ``precip_monthly``: monthly precipitation totals (mm; a ``units`` attribute is converted), dims
    ``(station, time)`` with consecutive monthly datetime64 time coordinates; NaN is missing. For each
    scale k the k-month sums are fitted per calendar month over the ``calibration`` years exactly as
    :func:`indices.drought.spi` does (:func:`indices.drought.spi_fit`):

    * ``"gamma"``: Thom (1958) alpha, beta on the non-zero sums; ``prob_zero`` q = zeros / non-missing in
      the calibration years; H = q + (1 - q) G(x; alpha, beta).
    * ``"pearson3"``: L-moment Pearson III (Hosking) ``loc``, ``scale``, ``skew``, ``prob_zero`` and
      ``valid`` (1 where the fit succeeded), climate_indices' rules.

    A calibration period outside the record falls back to the whole record (climate_indices policy; the
    years actually used are in the ``calibration_used`` attribute). All stations share the time axis, so
    this policy applies to the common record; fit stations with very different records separately.

    Returns a Dataset with variable ``spi_params`` (dims ``station, scale, month, param``; ``month`` 1..12,
    ``param`` the names of :data:`SPI_PARAMS`, their units in the ``param_units`` coordinate) and
    ``n_calibration`` (station, scale, month: number of non-missing k-month sums in the fit).

    References: McKee, Doesken & Kleist (1993); WMO-No. 1090 (2012); Thom (1958); Hosking (1990);
    climate_indices ``indices.spi`` (Adams 2017).
    """
    if distribution not in SPI_DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {SPI_DISTRIBUTIONS}, got {distribution!r}")
    da = _station_time(precip_monthly, "precip_monthly")
    c0, c1 = _check_period(calibration, "calibration")
    ks = _scales(scales)
    names = SPI_PARAMS[distribution]
    p = quantity(da, "mm", "precipitation", "precip_monthly")
    series = xr.DataArray(p, dims=("station", "time"), coords={"time": da["time"].values}, attrs={"units": "mm"})
    months = da["time"].values.astype("datetime64[M]").astype(np.int64)
    if months.size > 1 and np.any(np.diff(months) != 1):
        raise ValueError("precip_monthly must have consecutive months along time")
    start_year = int(months[0] // 12 + 1970) if months.size else c0
    n_years = int((months[-1] // 12) - (months[0] // 12) + 1) if months.size else 0
    rows = calibration_rows(start_year, max(n_years, 1), (c0, c1))
    used = (start_year + int(rows.start), start_year + int(rows.stop) - 1)
    out = np.full((p.shape[0], len(ks), 12, len(names)), np.nan)
    n_cal = np.zeros((p.shape[0], len(ks), 12), dtype=np.int64)
    for i, k in enumerate(ks):
        fitted = spi_fit(series, k, distribution=distribution, calibration=(c0, c1))
        for j, name in enumerate(names):
            out[:, i, :, j] = fitted[name]
        n_cal[:, i, :] = _calibration_counts(p, months, k, used)
    params = xr.DataArray(
        out, dims=("station", "scale", "month", "param"),
        coords={"station": da["station"].values, "scale": ks, "month": np.arange(1, 13), "param": list(names),
                "param_units": ("param", [SPI_PARAM_UNITS[n] for n in names])},
        attrs={"long_name": f"SPI {distribution} distribution parameters per calendar month",
               "units": "see param_units", "references": CLIMATOLOGY_SPI_REF},
    )
    counts = xr.DataArray(
        n_cal, dims=("station", "scale", "month"),
        coords={"station": da["station"].values, "scale": ks, "month": np.arange(1, 13)},
        attrs={"long_name": "number of non-missing accumulations in the calibration fit", "units": "1"})
    return xr.Dataset(
        {"spi_params": params, "n_calibration": counts},
        attrs={"spi_distribution": distribution, "calibration": np.array([c0, c1], dtype=np.int32),
               "calibration_used": np.array(used, dtype=np.int32), "references": CLIMATOLOGY_SPI_REF},
    )


def _calibration_counts(p: FloatArray, months: np.ndarray, k: int, years: tuple[int, int]) -> np.ndarray:
    """Non-missing k-month sums per station and calendar month inside the calibration years."""
    sums = rolling_sum(p, k)
    year = months // 12 + 1970
    inside = (year >= years[0]) & (year <= years[1])
    ok = ~np.isnan(sums) & inside[None, :]
    cal_month = months % 12
    return np.stack([ok[:, cal_month == m].sum(axis=-1) for m in range(12)], axis=-1)


def spi_params_for(params: xr.Dataset | xr.DataArray, scale: int) -> dict[str, FloatArray]:
    """The ``spi_from_params`` dict (name -> array (station, 12)) of one accumulation scale."""
    da = params["spi_params"] if isinstance(params, xr.Dataset) else params
    try:
        sel = da.sel(scale=int(scale))
    except KeyError as exc:
        raise ValueError(f"no SPI parameters for scale {scale} (have {list(da['scale'].values)})") from exc
    return {str(n): np.asarray(sel.sel(param=n).transpose(..., "month").values, dtype=np.float64)
            for n in da["param"].values}


def spi_for_month(
    params: xr.Dataset,
    recent_precip: xr.DataArray,
    *,
    scales: Sequence[int] | None = None,
    month: int | None = None,
) -> xr.DataArray:
    """SPI of the latest month from stored parameters (no refit): dims ``(station, scale)``.

    ``recent_precip``: monthly totals (mm), dims ``(station, time)``, ending at the month to score (at least
    the largest requested scale of months; extra earlier months are ignored). For each scale k the sum of
    the last k months is transformed with the parameters of that calendar month
    (:func:`indices.drought.spi_from_params`): the result equals :func:`indices.drought.spi` of the full
    record at that month when the parameters were fitted on the same record. The calendar month is taken
    from the last time coordinate, or from ``month`` (1..12) when the time axis has no dates. Stations are
    matched by the ``station`` coordinate; stations without parameters get NaN. A missing month inside the
    window gives NaN (missing is not zero).

    References: as :func:`fit_spi_params`.
    """
    if not isinstance(recent_precip, xr.DataArray) or "time" not in recent_precip.dims:
        raise ValueError("recent_precip: expected a DataArray with dims (station, time)")
    rp = recent_precip if recent_precip.ndim == 2 else recent_precip.expand_dims(station=["0"])
    if "station" not in rp.dims or rp.ndim != 2:
        raise ValueError(f"recent_precip: expected dims (station, time), got {recent_precip.dims}")
    rp = rp.transpose("station", "time")
    if month is None:
        if "time" not in rp.coords or not np.issubdtype(rp["time"].dtype, np.datetime64):
            raise ValueError("give month= (1..12) or a datetime64 time coordinate")
        month = int(rp["time"].values[-1].astype("datetime64[M]").astype(np.int64) % 12 + 1)
    if not 1 <= int(month) <= 12:
        raise ValueError(f"month must be 1..12, got {month}")
    distribution = str(params.attrs.get("spi_distribution", "gamma"))
    have = [int(s) for s in params["scale"].values]
    ks = _scales(scales) if scales is not None else have
    x = quantity(rp, "mm", "precipitation", "recent_precip")
    n = x.shape[-1]
    stations = rp["station"].values
    aligned = params["spi_params"].reindex(station=stations)
    out = np.full((len(stations), len(ks)), np.nan)
    for i, k in enumerate(ks):
        if k not in have:
            raise ValueError(f"no SPI parameters for scale {k} (have {have})")
        if n < k:
            continue  # not enough months: NaN
        acc = x[:, n - k:].sum(axis=-1)  # NaN if any month is missing
        z = spi_from_params(acc, int(month) - 1, spi_params_for(aligned, k), distribution=distribution)
        out[:, i] = np.asarray(z, dtype=np.float64)
    return xr.DataArray(out, dims=("station", "scale"), coords={"station": stations, "scale": ks},
                        attrs={"units": "1", "long_name": f"SPI ({distribution}) of month {int(month)}",
                               "references": CLIMATOLOGY_SPI_REF}, name="spi")


# ------------------------------------------------------------------------------------------ percentiles
def _base_mask(da: xr.DataArray, base: tuple[int, int]) -> np.ndarray:
    years = da["time"].values.astype("datetime64[Y]").astype(np.int64) + 1970
    return np.asarray((years >= base[0]) & (years <= base[1]))


def _percentile_with_fallback(
    x: FloatArray, in_base: np.ndarray, q: float, min_days: int, method: str
) -> tuple[FloatArray, np.ndarray, np.ndarray]:
    """Per row: percentile over the base-period values, or over the whole row when the base has fewer than
    ``min_days`` valid values. Returns (value, used_base (bool), n_values)."""
    valid = ~np.isnan(x)
    n_base = (valid & in_base[None, :]).sum(axis=-1)
    use_base = n_base >= min_days
    masked = np.where(use_base[:, None] & ~in_base[None, :], np.nan, x)
    n_used = (~np.isnan(masked)).sum(axis=-1)
    out = np.full(x.shape[0], np.nan)
    ok = n_used >= min_days
    if ok.any():
        out[ok] = np.nanpercentile(masked[ok], 100.0 * q, axis=-1, method=cast(Any, method))
    return out, use_base, n_used


def _check_daily(da: xr.DataArray, name: str) -> None:
    days = da["time"].values.astype("datetime64[D]").astype(np.int64)
    if days.size > 1 and np.any(np.diff(days) != 1):
        raise ValueError(f"{name} must have consecutive days along time (fill gaps with NaN)")


def percentile_thresholds(
    tmean_daily: xr.DataArray,
    q: float = T95_QUANTILE,
    base: tuple[int, int] = DEFAULT_BASE,
    *,
    min_days: int = MIN_PERCENTILE_DAYS,
    method: str = "linear",
) -> xr.DataArray:
    """The ``q`` quantile of daily values per station over the ``base`` years (default: T95, the 95th
    percentile of the daily mean temperature DMT = (Tmax + Tmin)/2 that the Excess Heat Factor compares
    with, Nairn & Fawcett 2015).

    ``tmean_daily``: dims ``(station, time)``, consecutive days (datetime64), degC (other declared units are
    converted); NaN is missing and ignored. All days of the year enter (the EHF threshold is not seasonal).
    A station with fewer than ``min_days`` valid days in the base period uses its whole record instead
    (coordinate ``base_used`` = False); fewer than ``min_days`` in total gives NaN. ``method``: numpy's
    percentile method (default linear interpolation). Coordinates ``n_days`` (values used) and
    ``base_used`` are attached.

    References: Nairn & Fawcett (2015) IJERPH 12:227-253; Nairn et al. (2018) IJERPH 15:2494 (1971-2000
    reference period); the default base here is the WMO 1981-2010 normals period.
    """
    da = _station_time(tmean_daily, "tmean_daily")
    _check_daily(da, "tmean_daily")
    qq = _check_quantile(q)
    b = _check_period(base, "base")
    x = quantity(da, "degC", "temperature", "tmean_daily")
    val, used_base, n_used = _percentile_with_fallback(x, _base_mask(da, b), qq, int(min_days), method)
    return xr.DataArray(
        val, dims=("station",),
        coords={"station": da["station"].values, "n_days": ("station", n_used), "base_used": ("station", used_base)},
        attrs={"units": "degC", "long_name": f"{100 * qq:g}th percentile of daily mean temperature",
               "base_period": f"{b[0]}-{b[1]}", "references": PERCENTILE_REF},
        name="t95_c" if qq == T95_QUANTILE else "percentile",
    )


def ehf85_thresholds(
    tmean_daily: xr.DataArray,
    t95: xr.DataArray | float,
    q: float = EHF85_QUANTILE,
    base: tuple[int, int] = DEFAULT_BASE,
    *,
    min_days: int = MIN_PERCENTILE_DAYS,
    method: str = "linear",
) -> xr.DataArray:
    """EHF85 per station: the ``q`` (0.85) quantile of all **positive** Excess Heat Factor values of the
    base period, the threshold of the heatwave severity EHF/EHF85 (Nairn et al. 2018;
    :func:`indices.heat.ehf_severity`).

    EHF is computed with :func:`indices.heat.excess_heat_factor` (paper convention: value at the first day
    of the 3-day window) from ``tmean_daily`` (dims ``(station, time)``, consecutive days, degC) and
    ``t95`` (one value per station, e.g. from :func:`percentile_thresholds`, matched by the station
    coordinate). The base-period rule follows :func:`percentile_thresholds`: the base years are used when
    the station has at least ``min_days`` valid days there, else its whole record. Stations with no
    positive EHF value (or a NaN t95) get NaN. Coordinate ``n_positive`` counts the values used.

    References: Nairn & Fawcett (2015) IJERPH 12:227; Nairn, Beaumont & Lee (2018) IJERPH 15:2494.
    """
    da = _station_time(tmean_daily, "tmean_daily")
    _check_daily(da, "tmean_daily")
    qq = _check_quantile(q)
    b = _check_period(base, "base")
    x = quantity(da, "degC", "temperature", "tmean_daily")
    if isinstance(t95, xr.DataArray):
        thr = np.asarray(t95.reindex(station=da["station"].values).values if "station" in t95.dims
                         else np.broadcast_to(t95.values, (x.shape[0],)), dtype=np.float64)
    else:
        thr = np.broadcast_to(np.asarray(t95, dtype=np.float64), (x.shape[0],)).astype(np.float64)
    ehf = np.full(x.shape, np.nan)
    finite = np.isfinite(thr)
    if finite.any():
        ehf[finite] = np.asarray(excess_heat_factor(x[finite], thr[finite]), dtype=np.float64)
    in_base = _base_mask(da, b)
    n_base = (~np.isnan(x) & in_base[None, :]).sum(axis=-1)
    use_base = n_base >= int(min_days)
    window = np.where(use_base[:, None], in_base[None, :], True)
    pos = np.where(window & (ehf > 0.0), ehf, np.nan)
    n_pos = (~np.isnan(pos)).sum(axis=-1)
    out = np.full(x.shape[0], np.nan)
    ok = n_pos > 0
    if ok.any():
        out[ok] = np.nanpercentile(pos[ok], 100.0 * qq, axis=-1, method=cast(Any, method))
    return xr.DataArray(
        out, dims=("station",),
        coords={"station": da["station"].values, "n_positive": ("station", n_pos), "base_used": ("station", use_base)},
        attrs={"units": "K2", "long_name": f"{100 * qq:g}th percentile of positive excess heat factor",
               "base_period": f"{b[0]}-{b[1]}", "references": EHF85_REF},
        name="ehf85",
    )


def ehf_thresholds(
    tmean_daily: xr.DataArray,
    base: tuple[int, int] = DEFAULT_BASE,
    *,
    q_t95: float = T95_QUANTILE,
    q_ehf: float = EHF85_QUANTILE,
    min_days: int = MIN_PERCENTILE_DAYS,
) -> xr.Dataset:
    """Both EHF thresholds per station: ``t95_c`` (:func:`percentile_thresholds`) and ``ehf85``
    (:func:`ehf85_thresholds` with that t95). References: Nairn & Fawcett (2015); Nairn et al. (2018)."""
    t95 = percentile_thresholds(tmean_daily, q_t95, base, min_days=min_days)
    e85 = ehf85_thresholds(tmean_daily, t95.drop_vars(["n_days", "base_used"]), q_ehf, base, min_days=min_days)
    return xr.Dataset({
        "t95_c": t95.drop_vars("base_used"),
        "ehf85": e85.drop_vars("base_used"),
        "base_used": t95["base_used"].drop_vars("n_days"),
    })
