"""Forecast and (re)analysis grids (NetCDF; GRIB through cfgrib when installed) -> ForecastPoint records.

Pipeline: :func:`open_grid` (lazy, dask-chunked; names, units and time axes normalised) ->
:func:`interpolate_to_points` (nearest or bilinear at station points, on the stations' bounding box only) ->
:func:`read_forecast_points` (one :class:`~warning.shared.records.ForecastPoint` per station and valid time).

Files are opened with ``chunks`` so every variable is a dask array: nothing is read until a (small) result is
computed, the grid is cut to the stations' bounding box before interpolating, and results are computed in
blocks of reference times, so memory is bounded by the block, not the file.

**Variables** are recognised by name (ERA5/GRIB short names, CMIP/CF names: ``t2m``/``2t``/``tas``,
``tasmax``/``mx2t``, ``d2m``/``tdps``, ``tp``/``pr``, ``u10``/``v10``, ``si10``, ``hurs``, ``sp``, ...)
and otherwise by CF ``standard_name`` (``air_temperature`` with ``cell_methods`` maximum/minimum ->
``tmax_c``/``tmin_c``, ``dew_point_temperature``, ``precipitation_amount``, ``precipitation_flux``,
``lwe_thickness_of_precipitation_amount``, ``wind_speed``, ``eastward_wind``/``northward_wind``,
``wind_speed_of_gust``, ``relative_humidity``, ``surface_air_pressure``, ``visibility_in_air``). Each becomes
an Observation element name (``air_temp_c``, ``tmax_c``, ``tmin_c``, ``dewpoint_c``, ``precip_mm``,
``wind_ms``, ``gust_ms``, ``rh_pct``, ``pressure_hpa``, ``visibility_m``); a wind speed is derived from u/v
when no speed variable is present. Other variables are dropped.

**Units** (``units`` attribute): K/degC/degF -> degC; fraction (``1``, ``""``) or % -> %; m s-1, knots,
km h-1 -> m s-1; Pa/hPa/kPa -> hPa. Precipitation ends as **mm per step** (the amount that fell during the
record's valid window): amounts in m of water (ERA5 ``tp``) x 1000, mm / kg m-2 as is; rates
(kg m-2 s-1 = mm s-1, mm h-1, mm day-1) x the window length. A rate on a window of unknown or zero length
cannot be turned into an amount and is left out. ``precip_period_h`` (the window length) is added next to
``precip_mm``.

**Accumulations.** NWP models often write precipitation accumulated since the forecast reference time
(ECMWF ``tp``). Such a field is de-accumulated along the step axis: amount(step i) =
acc(step i) - acc(step i-1), amount(step 0) = acc(step 0) (accumulated from the reference time), negative
differences from packing noise are clipped to 0. ``accumulation="auto"`` decides per variable: amounts
(m, mm, kg m-2) on a forecast with >= 2 steps are treated as accumulated-since-start when the variable is
a known accumulating one (``tp``, ``apcp``, ``total_precipitation``) or its metadata says so ("accum" in
``GRIB_stepType``, ``long_name`` or ``cell_methods``) **and** a sample of <= 4096 grid cells (a central
window, else strided) is non-decreasing along the step axis (tolerance 0.01 mm) with some rain in it; per-step
amounts such as
hourly ERA5 ``tp`` (each step its own hour) fail the sample test and are kept as they are. Force it with
``accumulation="since_start"`` or ``"per_step"``.

**Time conventions** (normalised to dims ``reftime`` x ``step``; ``attrs["ews_kind"]`` says which):

* GRIB / cfgrib: ``time`` = forecast reference time (``standard_name: forecast_reference_time``), ``step``
  (timedelta), ``valid_time`` = time + step -> forecast.
* CDS NetCDF (2024+): ``forecast_reference_time`` + ``forecast_period`` -> forecast; ``valid_time`` alone ->
  analysis.
* CF: ``time`` (valid) with a ``reftime``/``forecast_reference_time`` coordinate -> forecast with
  step = time - reftime.
* plain ``time`` only (ERA5 ``grib_to_netcdf``, CMIP/xclim daily files) -> analysis: ``issued_at`` = the data
  time itself, ``step`` = 0, ``lead_h`` = 0. If the caller passes ``issued_at``, plain ``time`` is read as
  the valid times of a forecast issued then (step = time - issued_at).

**Valid window** of a record (``[valid_from, valid_to)``): the window *ends* at the valid time and lasts one
step (forecasts: step_i - step_{i-1}, the first step: step_0 itself; analyses: the spacing of the time axis).
Instantaneous elements are the state at ``valid_to``; precipitation is the total over the window (ECMWF
accumulations end at the validity time). ``lead_h`` is the step (valid time - reference time) in hours.
Exceptions: daily data (window >= 24 h, or ``cell_methods`` "within days") is labelled at the *start* of the
day (CMIP/CF convention), so the window is ``[time, time + 1 day)``; a value with no window length (a single
analysis time, forecast step 0) is an instant and gets the nominal window ``[time, time + 1 h)``
(:data:`INSTANT_WINDOW`; the forecast schema needs ``valid_to > valid_from``) and no precipitation.

**Points.** Station longitudes are moved to the grid's convention (0..360 or -180..180); a global grid is
padded with its first column at +360 so bilinear interpolation works across the seam. Latitude may be
descending (ERA5). A station outside the grid (or only NaN at it, e.g. outside a land mask) yields no
records; it is counted in :class:`GridStats`. Files of station series (``lat``/``lon`` along a
``location``/``station`` dim, e.g. xclim test data) are read by nearest location within
``max_distance_km``; "bilinear" then falls back to nearest.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import numpy as np
import xarray as xr

from ingest.formats.base import UnreadableFileError
from warning.shared.records import ForecastPoint
from warning.shared.times import iso_utc

__all__ = [
    "ELEMENTS",
    "GridFormatError",
    "GridStats",
    "interpolate_to_points",
    "open_grid",
    "read_forecast_points",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
Method = Literal["nearest", "bilinear"]
Accumulation = Literal["auto", "since_start", "per_step"]

KELVIN_OFFSET = 273.15
#: Elements a grid can provide, in the order values are written.
ELEMENTS: tuple[str, ...] = (
    "air_temp_c", "tmax_c", "tmin_c", "dewpoint_c", "rh_pct", "precip_mm", "wind_ms", "gust_ms",
    "pressure_hpa", "visibility_m",
)
_GRIB_SUFFIXES = (".grib", ".grib2", ".grb", ".grb2", ".grib1", ".grb1")
_ACC_TOL_MM = 0.01
_ACC_SAMPLE = 4096
_ACCUMULATING_NAMES = frozenset({"tp", "apcp", "apcp_surface", "total_precipitation", "tot_prec"})
_BLOCK_CELLS = 2_000_000
#: Window given to an instantaneous value that has no step length (a single analysis time, forecast step 0).
INSTANT_WINDOW = timedelta(hours=1)  # values computed at once (stations x times x variables) in read_forecast_points


class GridFormatError(UnreadableFileError):
    """The file is not a grid this module can read (engine missing, no lat/lon, no time, ...)."""


class StationLike(Protocol):
    @property
    def station_id(self) -> str: ...
    @property
    def latitude(self) -> float: ...
    @property
    def longitude(self) -> float: ...


@dataclass
class GridStats:
    """What :func:`read_forecast_points` did: records out, stations skipped with the reason."""

    records: int = 0
    stations: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    dropped_values: int = 0  # element values that were NaN at a station (left out of the record)


# --------------------------------------------------------------------------------------------- recognition
# Names (lower case) -> element; checked before standard names. "_u"/"_v" are wind components.
_NAMES: dict[str, str] = {
    **dict.fromkeys(("t2m", "2t", "tas", "t2", "tmp2m", "air_temperature", "temperature_2m", "tmp_2maboveground",
                     "temperature_height_above_ground", "air_temp"), "air_temp_c"),
    **dict.fromkeys(("tasmax", "mx2t", "mx2t3", "mx2t6", "mx2t24", "tmax", "tx", "tmax2m"), "tmax_c"),
    **dict.fromkeys(("tasmin", "mn2t", "mn2t3", "mn2t6", "mn2t24", "tmin", "tn", "tmin2m"), "tmin_c"),
    **dict.fromkeys(("d2m", "2d", "tdps", "td", "td2m", "dpt2m", "dewpoint", "dew_point_temperature"), "dewpoint_c"),
    **dict.fromkeys(("hurs", "r2", "2r", "rh", "rh2m", "relative_humidity"), "rh_pct"),
    **dict.fromkeys(("tp", "pr", "precip", "prcp", "apcp", "apcp_surface", "total_precipitation", "precipitation",
                     "tprate", "prate"), "precip_mm"),
    **dict.fromkeys(("si10", "10si", "sfcwind", "ws10", "wind_speed", "wspd", "ws"), "wind_ms"),
    **dict.fromkeys(("fg10", "10fg", "i10fg", "gust", "sfcwindmax", "wind_speed_of_gust", "gust_surface"), "gust_ms"),
    **dict.fromkeys(("sp", "ps", "pres", "pressure", "surface_pressure", "pres_surface"), "pressure_hpa"),
    **dict.fromkeys(("vis", "visibility"), "visibility_m"),
    **dict.fromkeys(("u10", "10u", "uas", "ugrd10m"), "_u"),
    **dict.fromkeys(("v10", "10v", "vas", "vgrd10m"), "_v"),
}
_STANDARD_NAMES: dict[str, str] = {
    "air_temperature": "air_temp_c",
    "dew_point_temperature": "dewpoint_c",
    "relative_humidity": "rh_pct",
    "precipitation_amount": "precip_mm",
    "precipitation_flux": "precip_mm",
    "lwe_thickness_of_precipitation_amount": "precip_mm",
    "lwe_precipitation_rate": "precip_mm",
    "wind_speed": "wind_ms",
    "wind_speed_of_gust": "gust_ms",
    "surface_air_pressure": "pressure_hpa",
    "visibility_in_air": "visibility_m",
    "eastward_wind": "_u",
    "northward_wind": "_v",
}
_LAT_NAMES = ("latitude", "lat", "nav_lat", "y_lat")
_LON_NAMES = ("longitude", "lon", "nav_lon", "x_lon")
_POINT_DIMS = ("location", "station", "site", "stations", "point", "points")


def _classify(name: Hashable, var: xr.DataArray) -> str | None:
    key = str(name).lower()
    elem = _NAMES.get(key) or _NAMES.get(str(var.attrs.get("GRIB_shortName", "")).lower())
    std = str(var.attrs.get("standard_name", "")).strip()
    if elem is None:
        elem = _STANDARD_NAMES.get(std)
    if elem == "air_temp_c":  # daily max/min written as air_temperature with a cell method
        cm = str(var.attrs.get("cell_methods", "")).lower()
        if "maximum" in cm:
            elem = "tmax_c"
        elif "minimum" in cm:
            elem = "tmin_c"
    return elem


# --------------------------------------------------------------------------------------------- units
def _u(units: Any) -> str:
    return str(units if units is not None else "").strip().replace("**", "").replace("^", "")


_TEMP = {
    **dict.fromkeys(("K", "kelvin", "degK", "deg K", "degrees_K", "Kelvin"), (1.0, -KELVIN_OFFSET)),
    **dict.fromkeys(("degC", "C", "°C", "celsius", "degree_Celsius", "degrees_C", "deg_C", "Celsius", "deg C"),
                    (1.0, 0.0)),
    **dict.fromkeys(("degF", "F", "°F", "fahrenheit", "degree_Fahrenheit"), (5.0 / 9.0, -32.0 * 5.0 / 9.0)),
}
_RH = {**dict.fromkeys(("%", "percent", "pct"), 1.0), **dict.fromkeys(("1", "", "fraction", "0-1"), 100.0)}
_WIND = {
    **dict.fromkeys(("m s-1", "m/s", "m.s-1", "meter second-1", "m s^-1", "ms-1"), 1.0),
    **dict.fromkeys(("knot", "knots", "kt", "kn"), 0.514444),
    **dict.fromkeys(("km h-1", "km/h", "kph"), 1.0 / 3.6),
}
_PRES = {**dict.fromkeys(("Pa",), 0.01), **dict.fromkeys(("hPa", "mbar", "mb", "millibar"), 1.0), "kPa": 10.0}
_VIS = {**dict.fromkeys(("m", "meter", "metre"), 1.0), "km": 1000.0}
# precipitation amounts -> mm; rates -> mm per second (times the window length in seconds)
_PR_AMOUNT = {**dict.fromkeys(("m", "m of water equivalent", "m of water"), 1000.0),
              **dict.fromkeys(("mm", "kg m-2", "kg/m2", "kg m-2 ", "millimeter", "millimetre"), 1.0), "cm": 10.0}
_PR_RATE = {
    **dict.fromkeys(("kg m-2 s-1", "mm s-1", "mm/s", "kg/m2/s", "kg m-2s-1"), 1.0),
    **dict.fromkeys(("mm h-1", "mm/h", "mm hr-1", "mm/hr"), 1.0 / 3600.0),
    **dict.fromkeys(("mm day-1", "mm/day", "mm d-1", "mm/d"), 1.0 / 86400.0),
    **dict.fromkeys(("m s-1",), 1000.0),
}


def _linear(var: xr.DataArray, table: dict[str, Any], elem: str) -> xr.DataArray:
    units = _u(var.attrs.get("units"))
    if units not in table:
        raise GridFormatError(f"{var.name}: unit {units!r} not understood for {elem}")
    conv = table[units]
    scale, offset = conv if isinstance(conv, tuple) else (conv, 0.0)
    out = var * scale + offset if (scale != 1.0 or offset != 0.0) else var
    return out


# --------------------------------------------------------------------------------------------- opening
def _is_grib(path: str) -> bool:
    if path.lower().endswith(_GRIB_SUFFIXES):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"GRIB"
    except OSError:
        return False


def _raw_open(path: str, engine: str | None, chunks: Any) -> xr.Dataset:
    if not os.path.exists(path):
        raise GridFormatError(f"{path}: no such file")
    if engine == "cfgrib" or (engine is None and _is_grib(path)):
        try:
            import cfgrib  # noqa: F401
        except ImportError as exc:
            raise GridFormatError(f"{path}: GRIB needs cfgrib (pip install cfgrib eccodes), not installed") from exc
        try:
            return xr.open_dataset(path, engine="cfgrib", chunks=chunks, backend_kwargs={"indexpath": ""})
        except Exception as exc:
            raise GridFormatError(f"{path}: cfgrib cannot read it: {exc}") from exc
    errors = []
    for eng in [engine] if engine else [None, "scipy"]:
        try:
            return xr.open_dataset(path, engine=eng, chunks=chunks, decode_timedelta=True)
        except Exception as exc:
            errors.append(f"{eng or 'default'}: {exc}")
    raise GridFormatError(f"{path}: not a readable NetCDF ({'; '.join(errors)})")


def _find_coord(ds: xr.Dataset, names: tuple[str, ...], std: str, units: tuple[str, ...]) -> str | None:
    for name in ds.coords:
        if str(ds[name].attrs.get("standard_name", "")) == std:
            return str(name)
    for name in names:
        if name in ds.coords or name in ds.variables:
            return name
    for name in ds.coords:
        if _u(ds[name].attrs.get("units")) in units:
            return str(name)
    return None


def _std(ds: xr.Dataset, name: str) -> str:
    return str(ds[name].attrs.get("standard_name", "")) if name in ds.variables else ""


def _to_timedelta_array(values: Any, units: str | None = None) -> np.ndarray:
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.timedelta64):
        return arr.astype("timedelta64[s]")
    scale = {"hours": 3600, "hour": 3600, "h": 3600, "minutes": 60, "seconds": 1, "s": 1, "days": 86400}
    s = scale.get((units or "hours").split(" ")[0].lower(), 3600)
    return (arr.astype("float64") * s).round().astype("int64").astype("timedelta64[s]")


def _normalise_time(ds: xr.Dataset, issued_at: datetime | None) -> xr.Dataset:
    """Give ``ds`` dims ``reftime`` x ``step`` (see the module doc)."""
    names = set(ds.variables)
    # GRIB / cfgrib: time = reference time, step = lead.
    if "step" in names and "time" in names and (
        _std(ds, "time") == "forecast_reference_time" or np.issubdtype(ds["step"].dtype, np.timedelta64)
    ):
        ds = ds.drop_vars([v for v in ("valid_time",) if v in ds.variables])
        ds = ds.rename({"time": "reftime"})
        for d in ("reftime", "step"):
            if d not in ds.dims:
                ds = ds.expand_dims(d) if d in ds.coords else ds.expand_dims({d: [np.timedelta64(0, "s")]})
        only_zero = ds.sizes["step"] == 1 and int(np.asarray(ds["step"].values).astype("timedelta64[s]")[0].astype(
            "int64")) == 0
        ds.attrs["ews_kind"] = "analysis" if only_zero else "forecast"  # GRIB analyses carry step = 0
        return ds
    # CDS NetCDF forecasts: forecast_reference_time + forecast_period.
    if "forecast_reference_time" in names and "forecast_period" in names:
        fp = ds["forecast_period"]
        steps = _to_timedelta_array(fp.values, str(fp.attrs.get("units", "hours")))
        ds = ds.drop_vars([v for v in ("valid_time",) if v in ds.variables])
        ds = ds.rename({"forecast_reference_time": "reftime"})
        if "forecast_period" in ds.dims:
            ds = ds.rename({"forecast_period": "step"}).assign_coords(step=("step", steps))
        else:
            ds = ds.drop_vars("forecast_period").expand_dims(step=steps)
        if "reftime" not in ds.dims:
            ds = ds.expand_dims("reftime")
        ds.attrs["ews_kind"] = "forecast"
        return ds
    tname: str | None = next((n for n in ("time", "valid_time", "t") if n in names), None)
    if tname is None:
        tname = next((str(n) for n in ds.coords if _std(ds, str(n)) == "time"), None)
    ref_names = ("reftime", "forecast_reference_time", "reference_time")
    ref_name: str | None = next((n for n in ref_names if n in names), None)
    if ref_name is None:
        ref_name = next((str(n) for n in ds.coords if _std(ds, str(n)) == "forecast_reference_time"), None)
    if tname is None:
        if issued_at is None:
            raise GridFormatError("no time coordinate; pass issued_at")
        ds = ds.expand_dims(reftime=[np.datetime64(issued_at.replace(tzinfo=None), "ns")])
        ds = ds.expand_dims(step=[np.timedelta64(0, "s")])
        ds.attrs["ews_kind"] = "forecast"
        return ds
    if tname in ds.coords and tname not in ds.dims:
        ds = ds.expand_dims(tname)
    if ref_name is not None or issued_at is not None:
        # CF forecast: time = valid time; reference time scalar (or given by the caller).
        if ref_name is not None and ds[ref_name].size == 1:
            ref = ds[ref_name].values.reshape(-1)[0]
            ds = ds.drop_vars(ref_name)
        elif ref_name is None:
            ref = np.datetime64(issued_at.replace(tzinfo=None) if issued_at else None, "ns")
        else:
            raise GridFormatError(f"{ref_name}: several reference times along {tname} are not supported")
        steps = np.asarray(ds[tname].values - ref).astype("timedelta64[s]")
        ds = ds.assign_coords(step=(tname, steps)).swap_dims({tname: "step"}).drop_vars(tname)
        ds = ds.expand_dims(reftime=[ref])
        ds.attrs["ews_kind"] = "forecast"
        return ds
    # Analysis / reanalysis: each time is its own issue time, step 0.
    ds = ds.rename({tname: "reftime"}).expand_dims(step=[np.timedelta64(0, "s")])
    ds.attrs["ews_kind"] = "analysis"
    return ds


def _sample_monotonic(var: xr.DataArray) -> bool:
    """True if sampled cells never decrease along ``step`` (beyond tolerance) and some rain is in the sample.

    First a contiguous window of <= 4096 cells at the grid centre (reads one or a few chunks); if it is dry,
    a strided sample over the whole grid (touches every chunk once, still chunk by chunk)."""
    spatial = [d for d in var.dims if d not in ("reftime", "step")]
    per_dim = max(1, int(_ACC_SAMPLE ** (1.0 / max(1, len(spatial)))))
    window: dict[Hashable, Any] = {}
    strided: dict[Hashable, Any] = {}
    for d in spatial:
        n = var.sizes[d]
        lo = max(0, n // 2 - per_dim // 2)
        window[d] = slice(lo, lo + per_dim)
        strided[d] = slice(None, None, max(1, n // per_dim))
    for idx in (window, strided):
        sample = np.asarray(var.isel(idx).transpose("step", ...).values, dtype="float64")
        if sample.size == 0 or not np.isfinite(sample).any() or not np.nanmax(sample) > 0:
            continue  # nothing to judge by: try the wider sample
        with np.errstate(invalid="ignore"):
            return bool(np.all(np.nan_to_num(np.diff(sample, axis=0), nan=0.0) >= -_ACC_TOL_MM))
    return False


def _deaccumulate(var: xr.DataArray) -> xr.DataArray:
    prev = var.shift(step=1, fill_value=0.0)
    out = (var - prev).clip(min=0.0)
    out.attrs = dict(var.attrs)
    return out


def _periods(ds: xr.Dataset) -> tuple[np.ndarray, bool]:
    """Window length (seconds) per (reftime, step) and whether the time labels mark the start (daily data)."""
    kind = ds.attrs.get("ews_kind")
    nref, nstep = ds.sizes["reftime"], ds.sizes["step"]
    steps = np.asarray(ds["step"].values).astype("timedelta64[s]").astype("int64")
    daily_cm = any("within days" in str(v.attrs.get("cell_methods", "")) for v in ds.data_vars.values())
    if kind == "analysis":
        refs = ds["reftime"].values
        if nref >= 2:
            try:  # differences in the file's own calendar (cftime noleap: Feb 28 -> Mar 1 is one day)
                sec = np.array([_seconds(refs[i + 1] - refs[i]) for i in range(nref - 1)])
            except (TypeError, ValueError):
                sec = np.zeros(nref - 1)
            per = np.concatenate([sec[:1], sec])
        else:
            per = np.full(nref, 86400.0 if daily_cm else 0.0)
        period = np.repeat(per[:, None], nstep, axis=1)
        start_label = daily_cm or bool(nref >= 2 and np.median(per) >= 86400)
        return period, start_label
    d = np.diff(steps, prepend=0).astype("float64")
    if nstep and steps[0] < 0:
        d[0] = 0.0
    return np.repeat(d[None, :], nref, axis=0), False


def _seconds(delta: Any) -> float:
    if isinstance(delta, np.timedelta64):
        return float(delta.astype("timedelta64[ms]").astype("int64")) / 1000.0
    return float(delta.total_seconds())


def open_grid(
    path: PathLike,
    *,
    engine: str | None = None,
    chunks: Any = None,
    accumulation: Accumulation = "auto",
    issued_at: datetime | None = None,
) -> xr.Dataset:
    """Open a NetCDF/GRIB grid lazily and normalise it (see the module doc).

    Result: data variables named by element (``air_temp_c``, ``precip_mm``, ...) in Observation units,
    dims ``reftime`` x ``step`` x (``latitude``, ``longitude``) or x a point dim, coordinates
    ``latitude``/``longitude``; ``attrs["ews_kind"]`` is "forecast" or "analysis"; precipitation is mm per
    window (``precip_mm``) with the window lengths in seconds as coordinate ``period_s`` and
    ``attrs["ews_daily_start_label"]`` telling whether the labels mark the window start. Raises
    :class:`GridFormatError` if the file cannot be read or has no usable variable.
    """
    p = os.fspath(path)
    raw = _raw_open(p, engine, {} if chunks is None else chunks)
    try:
        norm = _normalise(raw, p, accumulation, issued_at)
    except BaseException:
        raw.close()
        raise
    norm.set_close(raw.close)  # closing the result closes the file
    return norm


def _convert(elem: str, var: xr.DataArray) -> xr.DataArray:
    if elem in ("air_temp_c", "tmax_c", "tmin_c", "dewpoint_c"):
        return _linear(var, _TEMP, elem)
    if elem == "rh_pct":  # model RH can exceed 100 % slightly (supersaturation); the schema stops at 100
        return _linear(var, _RH, elem).clip(0.0, 100.0)
    if elem in ("wind_ms", "gust_ms"):
        return _linear(var, _WIND, elem)
    if elem == "pressure_hpa":
        return _linear(var, _PRES, elem)
    return _linear(var, _VIS, elem)


def _normalise(ds: xr.Dataset, p: str, accumulation: Accumulation, issued_at: datetime | None) -> xr.Dataset:
    lat = _find_coord(ds, _LAT_NAMES, "latitude", ("degrees_north", "degree_north", "degree_N", "degrees_N"))
    lon = _find_coord(ds, _LON_NAMES, "longitude", ("degrees_east", "degree_east", "degree_E", "degrees_E"))
    if lat is None or lon is None:
        raise GridFormatError(f"{p}: no latitude/longitude coordinates")
    ds = ds.rename({k: v for k, v in ((lat, "latitude"), (lon, "longitude")) if k != v})
    time_like = ("latitude", "longitude", "time", "valid_time", "step", "reftime", "forecast_reference_time",
                 "forecast_period", "reference_time")
    ds = ds.set_coords([v for v in time_like if v in ds.data_vars])
    la, lo = ds["latitude"], ds["longitude"]
    if la.ndim != 1 or lo.ndim != 1:
        raise GridFormatError(f"{p}: curvilinear grid (2-D latitude/longitude) is not supported; regrid it first")
    if la.dims != lo.dims:  # a regular grid whose dims have other names (y/x): index by the coordinates
        ds = ds.swap_dims({d: n for d, n in ((la.dims[0], "latitude"), (lo.dims[0], "longitude")) if d != n})

    skipped: list[str] = []
    found: dict[str, tuple[Hashable, xr.DataArray]] = {}
    for name, var in ds.data_vars.items():
        elem = _classify(name, var)
        if elem is None or elem in found:
            continue
        found[elem] = (name, var)
    if "wind_ms" not in found and "_u" in found and "_v" in found:
        try:
            uu, vv = _linear(found["_u"][1], _WIND, "wind_ms"), _linear(found["_v"][1], _WIND, "wind_ms")
        except GridFormatError as exc:
            skipped.append(str(exc))
        else:
            speed = (uu**2 + vv**2) ** 0.5
            speed.attrs = {"units": "m s-1"}
            found["wind_ms"] = (f"{found['_u'][0]}/{found['_v'][0]}", speed)
    out: dict[str, xr.DataArray] = {}
    raw_precip: xr.DataArray | None = None
    for elem, (name, var) in found.items():
        if elem.startswith("_"):
            continue
        if elem == "precip_mm":
            raw_precip = var.copy()
            raw_precip.attrs["source_variable"] = str(name)
            continue
        try:
            conv = _convert(elem, var)
        except GridFormatError as exc:  # one odd variable does not make the file unreadable
            skipped.append(str(exc))
            continue
        conv.attrs = {"units": _TARGET_UNITS[elem], "source_variable": str(name)}
        out[elem] = conv
    time_dims = {"time", "valid_time", "t", "step", "forecast_period", "forecast_reference_time", "reftime"}
    for elem in list(out):  # static fields (orography, masks) carry no time axis: not forecast values
        if not time_dims & set(map(str, out[elem].dims)) and any(
                str(d) in time_dims for d in ds.dims):
            skipped.append(f"{out[elem].attrs['source_variable']}: no time axis")
            del out[elem]
    if not out and raw_precip is None:
        raise GridFormatError(f"{p}: no recognised variable (have {', '.join(map(str, ds.data_vars))})"
                              + (f"; skipped: {'; '.join(skipped)}" if skipped else ""))
    norm = xr.Dataset(out, coords=dict(ds.coords.items()), attrs=dict(ds.attrs))
    if raw_precip is not None:
        norm["_precip_raw"] = raw_precip
    norm = _normalise_time(norm, issued_at)
    norm = norm.transpose("reftime", "step", ...)
    period, start_label = _periods(norm)
    norm = norm.assign_coords(period_s=(("reftime", "step"), period))
    norm.attrs["ews_daily_start_label"] = int(start_label)
    if raw_precip is not None:
        try:
            norm["precip_mm"] = _precip(norm["_precip_raw"], norm, accumulation)
        except GridFormatError as exc:
            skipped.append(str(exc))
        norm = norm.drop_vars("_precip_raw")
        if not norm.data_vars:
            raise GridFormatError(f"{p}: no usable variable; skipped: {'; '.join(skipped)}")
    if skipped:
        log.warning("%s: variables skipped: %s", p, "; ".join(skipped))
        norm.attrs["ews_skipped"] = "; ".join(skipped)
    return norm


_TARGET_UNITS = {"air_temp_c": "degC", "tmax_c": "degC", "tmin_c": "degC", "dewpoint_c": "degC", "rh_pct": "%",
                 "wind_ms": "m s-1", "gust_ms": "m s-1", "pressure_hpa": "hPa", "visibility_m": "m",
                 "precip_mm": "mm"}


def _precip(var: xr.DataArray, ds: xr.Dataset, accumulation: Accumulation) -> xr.DataArray:
    units = _u(var.attrs.get("units"))
    name = str(var.attrs.get("source_variable", var.name))
    if units in _PR_AMOUNT:
        amount = var * _PR_AMOUNT[units]
        acc = accumulation
        if acc == "auto":
            meta = " ".join(str(var.attrs.get(k, "")) for k in ("long_name", "cell_methods", "GRIB_stepType"))
            hinted = "accum" in meta.lower() or name.lower() in _ACCUMULATING_NAMES
            acc = ("since_start" if (ds.attrs.get("ews_kind") == "forecast" and ds.sizes["step"] >= 2 and hinted
                                     and _sample_monotonic(amount)) else "per_step")
        if acc == "since_start":
            amount = _deaccumulate(amount)
            how = "de-accumulated (accumulated since reference time)"
        else:
            how = "per step"
    elif units in _PR_RATE:
        amount = (var * _PR_RATE[units]) * ds["period_s"]
        how = "rate x window length"
    else:
        raise GridFormatError(f"{var.name}: precipitation unit {units!r} not understood")
    amount = amount.clip(min=0.0).where(ds["period_s"] > 0)  # nothing falls in a zero-length window
    amount.attrs = {"units": "mm", "source_variable": name, "ews_precip": how}
    return amount


# --------------------------------------------------------------------------------------------- points
def _grid_lon(lons: np.ndarray, grid_lon: np.ndarray) -> np.ndarray:
    if np.nanmax(grid_lon) > 180.0:
        return np.mod(lons, 360.0)
    return ((lons + 180.0) % 360.0) - 180.0


def _is_point_dataset(ds: xr.Dataset) -> bool:
    return ds["latitude"].ndim == 1 and ds["latitude"].dims == ds["longitude"].dims and \
        ds["latitude"].dims[0] not in ("latitude", "longitude")


def _inside(ds: xr.Dataset, lats: np.ndarray, lons: np.ndarray, method: Method) -> np.ndarray:
    glat = np.asarray(ds["latitude"].values, dtype="float64")
    glon = np.asarray(ds["longitude"].values, dtype="float64")
    tol_lat = abs(float(np.median(np.diff(glat)))) / 2 if method == "nearest" and glat.size > 1 else 1e-9
    tol_lon = abs(float(np.median(np.diff(glon)))) / 2 if method == "nearest" and glon.size > 1 else 1e-9
    return (np.isfinite(lats) & np.isfinite(lons)
            & (lats >= glat.min() - tol_lat) & (lats <= glat.max() + tol_lat)
            & (lons >= glon.min() - tol_lon) & (lons <= glon.max() + tol_lon))


def _wrap_global(ds: xr.Dataset) -> xr.Dataset:
    lon = np.asarray(ds["longitude"].values, dtype="float64")
    if lon.size < 2:
        return ds
    dlon = float(np.median(np.diff(lon)))
    if abs(lon.size * dlon - 360.0) < 1e-3 * 360.0:  # global: add the first column again at +360
        first = ds.isel(longitude=[0])
        first = first.assign_coords(longitude=first["longitude"] + 360.0)
        ds = xr.concat([ds, first], dim="longitude", data_vars="all", coords="minimal", compat="override",
                       join="outer")
    return ds


def interpolate_to_points(
    ds: xr.Dataset,
    lats: Iterable[float],
    lons: Iterable[float],
    method: Method = "bilinear",
    *,
    max_distance_km: float = 30.0,
) -> xr.Dataset:
    """Values of ``ds`` (from :func:`open_grid`) at points, along a new dim ``point`` (lazy where ``ds`` is).

    ``bilinear`` is ``xarray.Dataset.interp(method="linear")`` on the lat/lon axes; ``nearest`` picks the
    nearest cell. Coordinate ``inside`` (bool per point) marks points within the grid; points outside get
    NaN. Longitudes are moved to the grid convention, global grids wrap. For point datasets (station
    series along a ``location`` dim) the nearest location within ``max_distance_km`` is taken.
    """
    la = np.asarray(list(lats), dtype="float64")
    lo = np.asarray(list(lons), dtype="float64")
    if la.shape != lo.shape:
        raise ValueError("lats and lons differ in length")
    if method not in ("nearest", "bilinear"):
        raise ValueError(f"method must be 'nearest' or 'bilinear', not {method!r}")
    if _is_point_dataset(ds):
        return _nearest_location(ds, la, lo, max_distance_km)
    lo = _grid_lon(lo, np.asarray(ds["longitude"].values, dtype="float64"))
    g = ds
    if g["latitude"].size > 1 and float(g["latitude"][0]) > float(g["latitude"][-1]):
        g = g.isel(latitude=slice(None, None, -1))
    if g["longitude"].size > 1 and float(g["longitude"][0]) > float(g["longitude"][-1]):
        g = g.isel(longitude=slice(None, None, -1))
    g = _wrap_global(g)
    inside = _inside(g, la, lo, method)
    if inside.any():  # cut the grid to the stations' box (+1 cell) before interpolating
        glat = np.asarray(g["latitude"].values, dtype="float64")
        glon = np.asarray(g["longitude"].values, dtype="float64")
        i0 = max(0, int(np.searchsorted(glat, la[inside].min(), "right")) - 2)
        i1 = min(glat.size, int(np.searchsorted(glat, la[inside].max(), "left")) + 2)
        j0 = max(0, int(np.searchsorted(glon, lo[inside].min(), "right")) - 2)
        j1 = min(glon.size, int(np.searchsorted(glon, lo[inside].max(), "left")) + 2)
        g = g.isel(latitude=slice(i0, i1), longitude=slice(j0, j1))
    # points outside are sent to a valid location and masked afterwards (keeps interp/sel from failing)
    safe_la = np.where(inside, la, float(g["latitude"][0]))
    safe_lo = np.where(inside, lo, float(g["longitude"][0]))
    plat = xr.DataArray(safe_la, dims="point")
    plon = xr.DataArray(safe_lo, dims="point")
    if method == "nearest":
        res = g.sel(latitude=plat, longitude=plon, method="nearest")
    else:
        if g.sizes["latitude"] < 2 or g.sizes["longitude"] < 2:
            raise GridFormatError("bilinear interpolation needs at least 2 x 2 cells; use method='nearest'")
        res = g.interp(latitude=plat, longitude=plon, method="linear", kwargs={"bounds_error": False})
    res = res.drop_vars(["latitude", "longitude"], errors="ignore")
    res = res.where(xr.DataArray(inside, dims="point"))
    return res.assign_coords(point_lat=("point", la), point_lon=("point", lo), inside=("point", inside))


def _haversine_km(la1: np.ndarray, lo1: np.ndarray, la2: np.ndarray, lo2: np.ndarray) -> np.ndarray:
    r = math.pi / 180.0
    a = (np.sin((la2 - la1) * r / 2) ** 2
         + np.cos(la1 * r) * np.cos(la2 * r) * np.sin((lo2 - lo1) * r / 2) ** 2)
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _nearest_location(ds: xr.Dataset, la: np.ndarray, lo: np.ndarray, max_km: float) -> xr.Dataset:
    dim = ds["latitude"].dims[0]
    slat = np.asarray(ds["latitude"].values, dtype="float64")
    slon = np.asarray(ds["longitude"].values, dtype="float64")
    dist = _haversine_km(la[:, None], lo[:, None], slat[None, :], slon[None, :])
    dist = np.where(np.isfinite(dist), dist, np.inf)
    best = dist.argmin(axis=1) if slat.size else np.zeros(la.size, dtype=int)
    inside = dist[np.arange(la.size), best] <= max_km if slat.size else np.zeros(la.size, dtype=bool)
    res = ds.isel({dim: xr.DataArray(best, dims="point")})
    res = res.drop_vars(["latitude", "longitude", dim], errors="ignore")
    res = res.where(xr.DataArray(inside, dims="point"))
    return res.assign_coords(point_lat=("point", la), point_lon=("point", lo), inside=("point", inside))


# --------------------------------------------------------------------------------------------- records
def _py_time(v: Any) -> datetime:
    """A UTC datetime from numpy datetime64 or a cftime date (noleap etc. dates are valid Gregorian dates)."""
    if isinstance(v, np.datetime64):
        if np.isnat(v):
            raise ValueError("NaT")
        us = v.astype("datetime64[us]").astype("int64")
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(us))
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    if hasattr(v, "year") and hasattr(v, "hour"):  # cftime
        return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, tzinfo=UTC)
    raise TypeError(f"not a time: {v!r}")


def _as_utc(t: datetime | str) -> datetime:
    if isinstance(t, str):
        t = datetime.fromisoformat(t.replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def read_forecast_points(
    path: PathLike,
    stations: Iterable[StationLike],
    *,
    method: Method = "bilinear",
    issued_at: datetime | str | None = None,
    engine: str | None = None,
    accumulation: Accumulation = "auto",
    source: str | None = None,
    stats: GridStats | None = None,
    max_distance_km: float = 30.0,
) -> Iterator[ForecastPoint]:
    """Stream ForecastPoints: for every reference time, step and station inside the grid, one record.

    ``issued_at`` = forecast reference time; for analyses/reanalyses (no reference time in the file) the data
    time itself, unless ``issued_at`` is given, which makes the file's times valid times of a forecast issued
    then. ``lead_h`` = valid_to - issued_at in hours (0 for analyses). ``source`` defaults to
    ``grid:<file name>``. Stations outside the grid yield nothing and are listed in ``stats.skipped``.
    Ordered by reference time, step, station.
    """
    st_list = list(stations)
    stats = stats if stats is not None else GridStats()
    stats.stations = len(st_list)
    issued = _as_utc(issued_at) if issued_at is not None else None
    ds = open_grid(path, engine=engine, accumulation=accumulation, issued_at=issued)
    src = source or f"grid:{os.path.basename(os.fspath(path))}"
    try:
        yield from _records(ds, st_list, method, src, stats, max_distance_km)
    finally:
        ds.close()
        if stats.skipped:
            log.info("%s: %d of %d stations skipped (outside grid / no data)", src, len(stats.skipped),
                     len(st_list))


def _records(ds: xr.Dataset, st_list: list[StationLike], method: Method, src: str, stats: GridStats,
             max_km: float) -> Iterator[ForecastPoint]:
    if not st_list:
        return
    pts = interpolate_to_points(ds, [s.latitude for s in st_list], [s.longitude for s in st_list], method,
                                max_distance_km=max_km)
    inside = np.asarray(pts["inside"].values, dtype=bool)
    for s, ok in zip(st_list, inside, strict=True):
        if not ok:
            stats.skipped[s.station_id] = "outside the grid" if not _is_point_dataset(ds) else \
                f"no location within {max_km:g} km"
    if not inside.any():
        return
    pts = pts.isel(point=np.flatnonzero(inside))
    sts = [s for s, ok in zip(st_list, inside, strict=True) if ok]
    elems = [e for e in ELEMENTS if e in pts.data_vars]
    refs = [_py_time(v) for v in np.asarray(pts["reftime"].values).reshape(-1)]
    steps = [timedelta(seconds=int(s)) for s in np.asarray(pts["step"].values).astype("timedelta64[s]").astype("int64")]
    period = np.asarray(ds["period_s"].values, dtype="float64")
    start_label = bool(ds.attrs.get("ews_daily_start_label"))
    analysis = ds.attrs.get("ews_kind") == "analysis"
    nstep, npt = len(steps), len(sts)
    block = max(1, _BLOCK_CELLS // max(1, nstep * npt * max(1, len(elems))))
    with_values = np.zeros(npt, dtype=bool)
    for r0 in range(0, len(refs), block):
        chunk = pts.isel(reftime=slice(r0, r0 + block)).transpose("reftime", "step", "point").compute()
        arrays = {e: np.asarray(chunk[e].values, dtype="float64") for e in elems}
        for ri in range(arrays[elems[0]].shape[0] if elems else 0):
            ref = refs[r0 + ri]
            for si, step in enumerate(steps):
                valid = ref + step
                per = float(period[r0 + ri, si])
                if per <= 0:  # an instant: nominal window starting at it (the schema needs valid_to > valid_from)
                    vfrom, vto = valid, valid + INSTANT_WINDOW
                elif start_label:
                    vfrom, vto = valid, valid + timedelta(seconds=per)
                else:
                    vfrom, vto = valid - timedelta(seconds=per), valid
                lead_h = 0.0 if analysis else step.total_seconds() / 3600.0
                t_issued, t_from, t_to = iso_utc(ref), iso_utc(vfrom), iso_utc(vto)
                for pi in range(npt):
                    values: dict[str, float] = {}
                    for e in elems:
                        x = arrays[e][ri, si, pi]
                        if math.isfinite(x):
                            values[e] = round(float(x), 3)
                        else:
                            stats.dropped_values += 1
                    if "precip_mm" in values:
                        values["precip_period_h"] = round(per / 3600.0, 4)
                    if not values:
                        continue
                    with_values[pi] = True
                    stats.records += 1
                    yield ForecastPoint(station_id=sts[pi].station_id, issued_at=t_issued, valid_from=t_from,
                                        valid_to=t_to, lead_h=round(lead_h, 4), values=values, source=src)
    for s, had in zip(sts, with_values, strict=True):
        if not had:
            stats.skipped[s.station_id] = "no data at the station (all values missing)"
