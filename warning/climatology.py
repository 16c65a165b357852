"""Station climatology build and load: ``ews climatology build HISTORY... --out DIR`` and what ``ews run`` loads.

The I/O edge of :mod:`indices.climatology`. :func:`build_climatology` reads historical station files through
:func:`ingest.formats.read_observations` (GHCN-Daily ``.dly`` / access CSV, ISD-Lite, the table format),
builds one daily series per station, and fits what the indices need so that the streaming path never refits
history:

* SPI distribution parameters per station, accumulation scale (1, 3, 6, 12 months) and calendar month
  (:func:`indices.climatology.fit_spi_params`), for the monthly SPI drought information product; only for
  stations with at least :data:`MIN_SPI_YEARS` years of complete monthly precipitation (otherwise skipped,
  with the reason in the summary). WMO-No. 1090 recommends >= 30 years; shorter records get a note.
* ``t95_c`` (95th percentile of the daily mean temperature) and ``ehf85`` (85th percentile of the positive
  Excess Heat Factor values) per station, for the ``heat_health`` product
  (:func:`indices.climatology.ehf_thresholds`; Nairn & Fawcett 2015, Nairn et al. 2018).
* The QC anomaly models (:func:`ingest.qc.fit_anomaly_models`, on at most :data:`QC_MAX_REPORTS` reports per
  station, a seeded uniform sample), saved with :func:`ingest.qc.save_models`.

Output directory (default ``<EWS_DATA_DIR or ./data>/climatology``, where ``ews run`` looks)::

    climatology.nc   xarray Dataset, dim station: t95_c, ehf85, spi_params (station, scale, month, param), ...
    summary.json     what was read and fitted per station, and why something was skipped
    qc/              qc_anomaly_<station>.joblib + qc_anomaly_models.json (ingest.qc.load_models)

Daily series (all days are **Beijing-time (UTC+8) calendar days**):

* Daily records (GHCN-Daily; any Observation with ``tmax_c``/``tmin_c``, or precipitation with a period of
  >= 24 h) are labelled by the Beijing date of their time stamp. GHCN-Daily stamps ``YYYY-MM-DDT00:00Z``,
  whose Beijing date is the GHCN date, so a GHCN day is never moved.
* Sub-daily records (ISD-Lite hourly): Tmax/Tmin are the maximum/minimum of the hourly air temperatures of
  the Beijing day, kept only when the day has >= :data:`MIN_HOURLY_REPORTS` reports covering all four 6-hour
  blocks (sub-daily samples underestimate the true extremes slightly; daily records win where both exist).
  A precipitation amount over ``p`` hours ending at ``t`` is attributed to the Beijing day of the period's
  midpoint ``t - p/2``. Per day, the period class (1 h, 6 h, ...) with the largest coverage is summed (never
  1 h and 6 h amounts together, which would double count). ISD-Lite marks hours without a precipitation
  group as missing (-9999), not as dry, so by default a day is complete only when its reports cover 24 h;
  ``hourly_precip_absent_as_zero=True`` (CLI ``--hourly-no-report-dry``) counts hours without a report as
  dry on days that have >= :data:`MIN_HOURLY_REPORTS` reports of any kind (an assumption: check the station's
  reporting practice before using it).
* A day with Tmin > Tmax loses both values (internal consistency; counted in the summary).
* Monthly precipitation is the sum of a calendar month only when every day of it has a value (missing is
  never zero).

The calibration period (default 1981-2010) is used for the SPI fit and as the base period of t95/ehf85. A
period not covered by a station's record falls back to the whole record (SPI: climate_indices' rule; t95:
fewer than 365 valid days in the base period), recorded per station.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from ingest.formats import FORMATS, RowError, UnreadableFileError, detect_format, read_observations
from ingest.quantities import day_shift_s, set_day_boundary
from warning.shared.records import Observation
from warning.shared.times import now_iso

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "CLIMATOLOGY_FILE",
    "QC_DIR",
    "SUMMARY_FILE",
    "Climatology",
    "DailySeries",
    "add_climatology_parser",
    "build_climatology",
    "daily_series",
    "default_out_dir",
    "format_summary",
    "load_climatology",
    "read_daily_series",
    "run_climatology",
]

CLIMATOLOGY_FILE = "climatology.nc"
SUMMARY_FILE = "summary.json"
QC_DIR = "qc"
#: Days are Beijing-time (UTC + 8 h) days ending at the service's day boundary (rules.toml [days], 20:00 BJT by
#: default, ``ingest.quantities.day_shift_s``), as the live path's days. GHCN-Daily records keep their own dates.
DAY_S = 86400
#: Fewest sub-daily temperature reports for a day's Tmax/Tmin (with all four 6-hour blocks represented).
MIN_HOURLY_REPORTS = 8
#: Fewest years (complete months / 12) of monthly precipitation for an SPI fit.
MIN_SPI_YEARS = 10
#: WMO-No. 1090 (2012): at least 30 years of data for SPI calibration.
WMO_SPI_YEARS = 30
#: Reports per station kept for the QC anomaly fit (a uniform random sample beyond this; the robust
#: covariance itself uses at most 3000 of them, see ingest.qc.fit_anomaly_model).
QC_MAX_REPORTS = 100_000
#: Precipitation with this period (h) or longer is a daily record (GHCN-Daily: 24).
DAILY_PERIOD_H = 24.0
DEFAULT_CALIBRATION = (1981, 2010)
#: Arid station: mean annual precipitation below this (mm). China's dry-wet zoning puts 干旱区 below 200 mm a year
#: (中国气候区划; UNCONFIRMED here); rules.toml [drought] arid_annual_precip_mm is the value in force.
ARID_ANNUAL_PRECIP_MM = 200.0
DEFAULT_SCALES = (1, 3, 6, 12)
STATION_FORMATS = tuple(f for f in FORMATS if f != "grid")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def default_out_dir() -> Path:
    """``<EWS_DATA_DIR or ./data>/climatology`` -- where ``ews run`` loads the climatology from."""
    return Path(os.environ.get("EWS_DATA_DIR") or "data") / "climatology"


# --------------------------------------------------------------------------------------------- daily series
def _epoch_s(time: str) -> int | None:
    """UTC epoch seconds of an Observation time (``YYYY-MM-DDTHH:MM:SSZ`` or any ISO form with a zone)."""
    try:
        t = datetime.fromisoformat(time.replace("Z", "+00:00") if time.endswith("Z") else time)
    except (ValueError, AttributeError):
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp())


def _bjt_day(epoch_s: float) -> int:
    """Days since 1970-01-01 of the Beijing-time date of an instant."""
    return int((epoch_s + day_shift_s()) // DAY_S)


@dataclass
class _History:
    """What one station's observations contribute, gathered while streaming the files."""

    daily: dict[int, list[float | None]] = field(default_factory=dict)  # day -> [tmax, tmin, precip]
    hourly_t: list[tuple[int, float]] = field(default_factory=list)  # (epoch s, air temp)
    hourly_p: list[tuple[int, float, float]] = field(default_factory=list)  # (end epoch s, mm, period h)
    report_times: list[int] = field(default_factory=list)  # every sub-daily report (epoch s)
    observations: list[Observation] = field(default_factory=list)  # QC sample (reservoir, seeded)
    n_obs: int = 0
    _rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)
    conflicts: int = 0
    bad_time: int = 0

    def add(self, obs: Observation) -> None:
        t = _epoch_s(obs.time)
        if t is None:
            self.bad_time += 1
            return
        self.n_obs += 1
        if len(self.observations) < QC_MAX_REPORTS:
            self.observations.append(obs)
        else:  # reservoir sampling (Vitter's algorithm R): a uniform sample in constant memory
            j = self._rng.randrange(self.n_obs)
            if j < QC_MAX_REPORTS:
                self.observations[j] = obs
        period = obs.precip_period_h if obs.precip_period_h is not None else DAILY_PERIOD_H
        daily_precip = obs.precip_mm is not None and period >= DAILY_PERIOD_H
        if obs.tmax_c is not None or obs.tmin_c is not None or daily_precip:
            day = _bjt_day(t)
            slot = self.daily.get(day)
            if slot is None:
                slot = self.daily[day] = [None, None, None]
            for i, v in enumerate((obs.tmax_c, obs.tmin_c, obs.precip_mm if daily_precip else None)):
                if v is None:
                    continue
                if slot[i] is None:
                    slot[i] = float(v)
                elif slot[i] != v:
                    self.conflicts += 1  # first value wins (files are read in the order given)
        if obs.air_temp_c is not None:
            self.hourly_t.append((t, float(obs.air_temp_c)))
        if obs.precip_mm is not None and not daily_precip:
            self.hourly_p.append((t, float(obs.precip_mm), float(period)))
        if obs.tmax_c is None and obs.tmin_c is None and not daily_precip:
            self.report_times.append(t)


@dataclass
class DailySeries:
    """One station's daily series on consecutive Beijing-time days (NaN = missing)."""

    station_id: str
    days: np.ndarray  # datetime64[D]
    tmax_c: np.ndarray
    tmin_c: np.ndarray
    precip_mm: np.ndarray
    inconsistent_days: int = 0
    hourly_days: int = 0

    @property
    def tmean_c(self) -> np.ndarray:
        """DMT_i = (Tmax_i + Tmin_i+1) / 2: a day's maximum with the following night's minimum (Nairn & Fawcett
        2015), as the live path pairs them (``ingest.quantities.complete_day``); NaN on the last day."""
        tmin_next = np.append(self.tmin_c[1:], np.nan)
        return np.asarray(0.5 * (self.tmax_c + tmin_next))

    def monthly_precip(self) -> tuple[np.ndarray, np.ndarray]:
        """(months datetime64[M], totals mm): complete months only, NaN otherwise (missing is not zero)."""
        if self.days.size == 0:
            return np.array([], dtype="datetime64[M]"), np.array([], dtype=np.float64)
        months = self.days.astype("datetime64[M]")
        m0 = months[0]
        idx = (months - m0).astype(np.int64)
        n = int(idx[-1]) + 1
        valid = ~np.isnan(self.precip_mm)
        total = np.bincount(idx, weights=np.where(valid, self.precip_mm, 0.0), minlength=n)
        count = np.bincount(idx, weights=valid.astype(np.float64), minlength=n)
        axis = m0 + np.arange(n)
        ym = axis.astype(np.int64)
        length = np.array([calendar.monthrange(int(v // 12 + 1970), int(v % 12 + 1))[1] for v in ym])
        return axis, np.where(count == length, total, np.nan)


def _hourly_extremes(samples: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(days, tmax, tmin) from sub-daily temperatures, days with enough, well-spread reports only."""
    if not samples:
        empty = np.array([], dtype=np.int64)
        return empty, empty.astype(np.float64), empty.astype(np.float64)
    arr = np.asarray(samples, dtype=np.float64)
    local = arr[:, 0] + day_shift_s()
    day = np.floor_divide(local, DAY_S).astype(np.int64)
    block = (np.mod(local, DAY_S) // (6 * 3600)).astype(np.int64)
    days, inv = np.unique(day, return_inverse=True)
    tmax = np.full(days.size, -np.inf)
    tmin = np.full(days.size, np.inf)
    np.maximum.at(tmax, inv, arr[:, 1])
    np.minimum.at(tmin, inv, arr[:, 1])
    count = np.bincount(inv, minlength=days.size)
    blocks = np.zeros(days.size, dtype=np.int64)
    np.bitwise_or.at(blocks, inv, np.left_shift(1, block))
    ok = (count >= MIN_HOURLY_REPORTS) & (blocks == 0b1111)
    return days[ok], tmax[ok], tmin[ok]


def _hourly_precip(reports: list[tuple[int, float, float]], report_times: list[int],
                   absent_as_zero: bool) -> tuple[np.ndarray, np.ndarray]:
    """(days, mm) from sub-daily precipitation amounts; see the module docstring for the rules."""
    out: dict[int, float] = {}
    if absent_as_zero and report_times:
        rt = np.asarray(report_times, dtype=np.float64)
        d, c = np.unique(np.floor_divide(rt + day_shift_s(), DAY_S).astype(np.int64), return_counts=True)
        out.update({int(k): 0.0 for k in d[c >= MIN_HOURLY_REPORTS]})
    by_day: dict[int, dict[float, list[float]]] = {}
    for end, mm, period in reports:
        day = _bjt_day(end - period * 3600.0 / 2.0)
        cls = by_day.setdefault(day, {}).setdefault(period, [0.0, 0.0])
        cls[0] += mm
        cls[1] += period
    for day, classes in by_day.items():
        period, (total, covered) = max(classes.items(), key=lambda kv: (kv[1][1], -kv[0]))
        if covered >= 24.0 or (absent_as_zero and day in out):
            out[day] = total
        elif not absent_as_zero:
            out.pop(day, None)
    if not out:
        return np.array([], dtype=np.int64), np.array([], dtype=np.float64)
    keys = np.array(sorted(out), dtype=np.int64)
    return keys, np.array([out[int(k)] for k in keys], dtype=np.float64)


def daily_series(station_id: str, hist: _History, *, hourly_precip_absent_as_zero: bool = False) -> DailySeries:
    """Assemble a station's consecutive-day series from daily records and sub-daily aggregates."""
    hd, htx, htn = _hourly_extremes(hist.hourly_t)
    pd_, pmm = _hourly_precip(hist.hourly_p, hist.report_times, hourly_precip_absent_as_zero)
    dd = np.array(sorted(hist.daily), dtype=np.int64)
    candidates = [a for a in (hd, pd_, dd) if a.size]
    if not candidates:
        empty = np.array([], dtype=np.float64)
        return DailySeries(station_id, np.array([], dtype="datetime64[D]"), empty, empty, empty)
    d0 = int(min(int(a.min()) for a in candidates))
    d1 = int(max(int(a.max()) for a in candidates))
    n = d1 - d0 + 1
    tmax, tmin, precip = (np.full(n, np.nan) for _ in range(3))
    tmax[hd - d0], tmin[hd - d0] = htx, htn
    precip[pd_ - d0] = pmm
    for day, (tx, tn, pr) in hist.daily.items():
        i = day - d0
        if tx is not None:
            tmax[i] = tx
        if tn is not None:
            tmin[i] = tn
        if pr is not None:
            precip[i] = pr
    with np.errstate(invalid="ignore"):
        bad = tmin > tmax
    tmax[bad] = np.nan
    tmin[bad] = np.nan
    days = np.datetime64("1970-01-01", "D") + np.arange(d0, d1 + 1)
    return DailySeries(station_id, days, tmax, tmin, precip, inconsistent_days=int(bad.sum()),
                       hourly_days=int(hd.size))


# --------------------------------------------------------------------------------------------- build
def _read_files(files: Sequence[Path | str], fmt: str, as_station: str | None
                ) -> tuple[dict[str, _History], list[dict[str, Any]]]:
    stations: dict[str, _History] = {}
    reports: list[dict[str, Any]] = []
    for path in files:
        rep: dict[str, Any] = {"path": str(path), "format": fmt, "rows": 0, "observations": 0, "row_errors": 0}
        reports.append(rep)
        reasons: Counter[str] = Counter()
        try:
            rep["format"] = detect_format(path) if fmt == "auto" else fmt
            for row in read_observations(path, rep["format"], as_station=as_station):
                rep["rows"] += 1
                if isinstance(row, RowError):
                    rep["row_errors"] += 1
                    reasons[row.reason.split(":")[0][:80]] += 1
                    continue
                rep["observations"] += 1
                stations.setdefault(row.station_id, _History()).add(row)
        except (UnreadableFileError, ValueError) as exc:
            rep["error"] = str(exc)
        if reasons:
            rep["row_error_reasons"] = dict(reasons.most_common(5))
    return stations, reports


def read_daily_series(
    files: Sequence[Path | str],
    *,
    fmt: str = "auto",
    as_station: str | None = None,
    hourly_precip_absent_as_zero: bool = False,
) -> dict[str, DailySeries]:
    """The daily series per station that :func:`build_climatology` fits (same reading and day rules);
    unreadable files are skipped. For checks, demos and notebooks."""
    histories, _ = _read_files(files, fmt, as_station)
    return {sid: daily_series(sid, h, hourly_precip_absent_as_zero=hourly_precip_absent_as_zero)
            for sid, h in sorted(histories.items())}


def _registry() -> Any:
    try:
        from warning.shared.regions import StationRegistry

        return StationRegistry.load()
    except Exception:  # the registry is metadata here, not a requirement
        return None


def build_climatology(
    files: Sequence[Path | str],
    out_dir: Path | str,
    *,
    fmt: str = "auto",
    as_station: str | None = None,
    calibration: tuple[int, int] = DEFAULT_CALIBRATION,
    scales: Sequence[int] = DEFAULT_SCALES,
    distribution: str = "gamma",
    hourly_precip_absent_as_zero: bool = False,
    min_spi_years: int = MIN_SPI_YEARS,
    arid_annual_precip_mm: float = ARID_ANNUAL_PRECIP_MM,
) -> dict[str, Any]:
    """Read station history files, fit the climatology and write it to ``out_dir``; returns the summary.

    ``fmt``: ``auto`` or one of the station formats of ``ews ingest``; ``as_station``: treat every file as
    this station (drills: a foreign GHCN/ISD record standing in for a Gansu station); ``calibration``: SPI
    calibration years and the t95/ehf85 base period; ``arid_annual_precip_mm``: a station whose calibration
    years average less precipitation than this is arid (its MCI and SPI: ``indices.drought`` center_of_mass zeros
    and standardized MI30, labelled ``drought_mode`` in the summary). Writes ``climatology.nc``,
    ``summary.json`` and the QC models in ``qc/`` (see the module docstring). A file that cannot be read is
    reported in the summary (``files[i]["error"]``) and the others are still used. Raises ValueError if
    nothing usable was read.
    """
    from indices.climatology import SPI_PARAMS
    from ingest.qc import save_models

    if fmt != "auto" and fmt not in STATION_FORMATS:
        raise ValueError(f"format must be auto or one of {', '.join(STATION_FORMATS)}, got {fmt!r}")
    if distribution not in SPI_PARAMS:
        raise ValueError(f"distribution must be one of {sorted(SPI_PARAMS)}, got {distribution!r}")
    c0, c1 = int(calibration[0]), int(calibration[1])
    if c0 > c1:
        raise ValueError(f"calibration start {c0} is after its end {c1}")
    ks = [int(k) for k in scales]
    out = Path(out_dir)
    histories, file_reports = _read_files(files, fmt, as_station)
    series = {sid: daily_series(sid, h, hourly_precip_absent_as_zero=hourly_precip_absent_as_zero)
              for sid, h in sorted(histories.items())}
    series = {sid: s for sid, s in series.items() if s.days.size}
    if not series:
        problems = "; ".join(f"{r['path']}: {r.get('error') or str(r['row_errors']) + ' bad rows'}"
                             for r in file_reports)
        raise ValueError(f"no usable daily station data in {len(file_reports)} file(s): {problems}")
    registry = _registry()
    sids = list(series)
    names = SPI_PARAMS[distribution]
    fits = _StationFits.empty(len(sids), len(ks), len(names))
    stations: dict[str, dict[str, Any]] = {}
    for i, sid in enumerate(sids):
        s = series[sid]
        months, mp = s.monthly_precip()
        info = _station_info(sid, s, histories[sid], int(np.isfinite(mp).sum()), registry)
        _fit_ehf(fits, i, sid, s, (c0, c1), info)
        _fit_spi(fits, i, sid, months, mp, ks, distribution, (c0, c1), min_spi_years, info)
        _fit_mci(fits, i, s, (c0, c1), min_spi_years, info, registry, arid_annual_precip_mm)
        stations[sid] = info
    models = _fit_qc_models(sids, histories, stations)
    out.mkdir(parents=True, exist_ok=True)
    qc_paths = save_models(models, out / QC_DIR)
    ds = _dataset(sids, registry, fits.t95, fits.ehf85, fits.t95_days, fits.ehf_npos, fits.base_used, fits.spi,
                  fits.spi_cal, ks, names, distribution, (c0, c1), series)
    _add_mci_gamma(ds, fits.mci_gamma, fits.mci_mi30, fits.arid)
    _write_netcdf(out / CLIMATOLOGY_FILE, ds)
    summary: dict[str, Any] = {
        "out_dir": str(out),
        "built_at": now_iso(),
        "files": file_reports,
        "as_station": as_station,
        "calibration": [c0, c1],
        "spi_distribution": distribution,
        "spi_scales": ks,
        "hourly_precip_absent_as_zero": hourly_precip_absent_as_zero,
        "stations": stations,
        "written": [CLIMATOLOGY_FILE, SUMMARY_FILE, *[f"{QC_DIR}/{p.name}" for p in qc_paths],
                    f"{QC_DIR}/qc_anomaly_models.json"],
    }
    tmp_json = out / (SUMMARY_FILE + ".tmp")
    tmp_json.write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp_json, out / SUMMARY_FILE)
    return summary


@dataclass
class _StationFits:
    """What is fitted per station (row i = the i-th station); NaN, -1 or 0 where nothing was fitted."""

    t95: np.ndarray  # degC
    ehf85: np.ndarray  # K2
    t95_days: np.ndarray  # days in the t95 sample
    ehf_npos: np.ndarray  # positive EHF values in the ehf85 sample
    base_used: np.ndarray  # the base period was used (else the whole record)
    spi: np.ndarray  # (station, scale, month, param)
    spi_cal: np.ndarray  # (station, 2): SPI calibration years used
    mci_gamma: np.ndarray  # (station, MCI term, 366 calendar-day slots, alpha/beta/q)
    mci_mi30: np.ndarray  # (station, 366 slots, mean/std) of MI30: arid stations only
    arid: np.ndarray  # bool per station

    @classmethod
    def empty(cls, n: int, n_scales: int, n_params: int) -> _StationFits:
        return cls(t95=np.full(n, np.nan), ehf85=np.full(n, np.nan), t95_days=np.zeros(n, dtype=np.int64),
                   ehf_npos=np.zeros(n, dtype=np.int64), base_used=np.zeros(n, dtype=bool),
                   spi=np.full((n, n_scales, 12, n_params), np.nan), spi_cal=np.full((n, 2), -1, dtype=np.int32),
                   mci_gamma=np.full((n, 3, 366, 3), np.nan), mci_mi30=np.full((n, 366, 2), np.nan),
                   arid=np.zeros(n, dtype=bool))


def _station_info(sid: str, s: DailySeries, h: _History, n_months: int, registry: Any) -> dict[str, Any]:
    """The summary entry of a station before any fit: its record, and notes on what was dropped while reading."""
    info: dict[str, Any] = {
        "record": [str(s.days[0]), str(s.days[-1])],
        "observations": h.n_obs,
        "days_tmax_tmin": int(np.isfinite(s.tmean_c).sum()),
        "days_precip": int(np.isfinite(s.precip_mm).sum()),
        "days_from_hourly": s.hourly_days,
        "complete_precip_months": n_months,
        "precip_years": round(n_months / 12.0, 1),
        "notes": [],
    }
    if h.conflicts:
        info["notes"].append(f"{h.conflicts} value(s) reported twice for one day with different values "
                             "(the first file's value kept)")
    if s.inconsistent_days:
        info["notes"].append(f"{s.inconsistent_days} day(s) with Tmin > Tmax dropped")
    if h.bad_time:
        info["notes"].append(f"{h.bad_time} observation(s) with an unreadable time ignored")
    if registry is not None:
        info["in_registry"] = sid in registry
        if sid not in registry:
            info["notes"].append("not a station of the Gansu registry: ews run will not look it up")
    return info


def _fit_ehf(fits: _StationFits, i: int, sid: str, s: DailySeries, base: tuple[int, int],
             info: dict[str, Any]) -> None:
    """EHF thresholds (t95_c, ehf85) of station i, into ``fits`` and its summary ``info``."""
    import xarray as xr

    from indices.climatology import ehf_thresholds

    c0, c1 = base
    tm = xr.DataArray(s.tmean_c[None, :], dims=("station", "time"),
                      coords={"station": [sid], "time": s.days.astype("datetime64[ns]")},
                      attrs={"units": "degC"})
    thr = ehf_thresholds(tm, (c0, c1))
    fits.t95[i] = float(thr["t95_c"].values[0])
    fits.ehf85[i] = float(thr["ehf85"].values[0])
    fits.t95_days[i] = int(thr["n_days"].values[0])
    fits.ehf_npos[i] = int(thr["n_positive"].values[0])
    fits.base_used[i] = bool(thr["base_used"].values[0])
    info["t95_c"] = None if np.isnan(fits.t95[i]) else round(fits.t95[i], 4)
    info["ehf85"] = None if np.isnan(fits.ehf85[i]) else round(fits.ehf85[i], 4)
    info["t95_days"] = int(fits.t95_days[i])
    info["ehf85_positive_values"] = int(fits.ehf_npos[i])
    info["t95_base"] = f"{c0}-{c1}" if fits.base_used[i] else "whole record (too few days in the base period)"
    if np.isnan(fits.t95[i]):
        info["t95_reason"] = (f"only {info['days_tmax_tmin']} day(s) with both Tmax and Tmin "
                              "(need at least 365)")
    elif info["days_tmax_tmin"] < 3650:
        info["notes"].append(f"t95/ehf85 from {info['days_tmax_tmin']} days (< 10 years): a rough estimate")


def _fit_spi(fits: _StationFits, i: int, sid: str, months: np.ndarray, mp: np.ndarray, ks: list[int],
             distribution: str, calibration: tuple[int, int], min_spi_years: int, info: dict[str, Any]) -> None:
    """SPI parameters of station i from its monthly precipitation ``mp`` (NaN: incomplete month), when it has at
    least ``min_spi_years`` years of complete months; the fit runs from its first to its last complete month."""
    import xarray as xr

    from indices.climatology import fit_spi_params

    c0, c1 = calibration
    n_months = info["complete_precip_months"]
    if n_months < 12 * min_spi_years:
        info["spi"] = "skipped"
        info["spi_reason"] = (f"{n_months / 12.0:.1f} years of complete monthly precipitation "
                              f"(< {min_spi_years} years needed for an SPI fit)")
        return
    first = int(np.argmax(np.isfinite(mp)))
    last = len(mp) - int(np.argmax(np.isfinite(mp[::-1])))
    pm = xr.DataArray(mp[None, first:last], dims=("station", "time"),
                      coords={"station": [sid], "time": months[first:last].astype("datetime64[ns]")},
                      attrs={"units": "mm"})
    fitted = fit_spi_params(pm, ks, distribution, (c0, c1))
    fits.spi[i] = fitted["spi_params"].values[0]
    used = [int(v) for v in fitted.attrs["calibration_used"]]
    fits.spi_cal[i] = used
    info["spi"] = "fitted"
    info["spi_calibration"] = used
    info["spi_months"] = [str(months[first]), str(months[last - 1])]
    info["spi_min_values_per_month"] = int(fitted["n_calibration"].values.min())
    if used != [c0, c1]:
        info["notes"].append(f"SPI calibrated on {used[0]}-{used[1]} (the record does not cover "
                             f"{c0}-{c1})")
    if n_months < 12 * WMO_SPI_YEARS:
        info["notes"].append(f"SPI from {n_months / 12.0:.1f} years (< {WMO_SPI_YEARS} recommended by "
                             "WMO-No. 1090)")


def _fit_mci(fits: _StationFits, i: int, s: DailySeries, calibration: tuple[int, int], min_spi_years: int,
             info: dict[str, Any], registry: Any = None, arid_annual_precip_mm: float = ARID_ANNUAL_PRECIP_MM
             ) -> None:
    """MCI gamma parameters per calendar-day slot (GB/T 20481-2017 daily drought index) of station i, when it
    has at least ``min_spi_years`` years' worth of days with precipitation; for an arid station (calibration
    years' mean annual precipitation below ``arid_annual_precip_mm``) also MI30's mean and spread per slot (from
    Hargreaves PET, as the live path computes it), so its MCI adds MI30 standardized."""
    if info["days_precip"] >= 365 * min_spi_years:
        from indices.drought import mci_fit, mi30_fit, pet_hargreaves

        fits.mci_gamma[i] = mci_fit(s.precip_mm, s.days, calibration=calibration)
        info["mci"] = "fitted"
        years = s.days.astype("datetime64[Y]").astype(np.int64) + 1970
        in_cal = (years >= calibration[0]) & (years <= calibration[1])
        if not np.isfinite(s.precip_mm[in_cal]).any():
            in_cal = np.ones(s.days.size, dtype=bool)  # a record outside the calibration years: all of it
        annual = float(np.nanmean(s.precip_mm[in_cal]) * 365.25)
        info["annual_precip_mm"] = round(annual, 1)
        if annual < arid_annual_precip_mm:
            station = registry.get(s.station_id) if registry is not None else None
            pet = np.asarray(pet_hargreaves(s.tmin_c, s.tmax_c, station.latitude if station else 36.0, s.days))
            mi = mi30_fit(s.precip_mm, pet, s.days, calibration=calibration)
            if np.isfinite(mi).any():
                fits.mci_mi30[i], fits.arid[i] = mi, True
                info["drought_mode"] = (f"arid (annual precipitation {annual:.0f} mm < {arid_annual_precip_mm:g}): "
                                        "SPI zeros center_of_mass, MCI with MI30 standardized")
        info.setdefault("drought_mode", "standard: SPI zeros classic, MCI with MI30 as GB/T 20481-2017")
    else:
        info["mci"] = "skipped"
        info["mci_reason"] = f"{info['days_precip']} days of daily precipitation (< {min_spi_years} years)"


def _fit_qc_models(sids: list[str], histories: dict[str, _History], stations: dict[str, dict[str, Any]]
                   ) -> dict[str, Any]:
    """The QC anomaly models of the stations (ingest.qc), noted in their summary entries."""
    from ingest.qc import fit_anomaly_models

    models = fit_anomaly_models([o for sid in sids for o in histories[sid].observations])
    for sid in sids:
        m = models.get(sid)
        stations[sid]["qc_model"] = m is not None
        stations[sid]["qc_reports_sampled"] = len(histories[sid].observations)
        if m is not None:
            stations[sid]["qc_feature_sets"] = [",".join(k) for k in m.models]
        else:
            stations[sid]["notes"].append("no QC anomaly model (too few complete reports)")
    return models


def _add_mci_gamma(ds: xr.Dataset, mci_gamma: np.ndarray, mci_mi30: np.ndarray | None = None,
                   arid: np.ndarray | None = None) -> None:
    import xarray as xr

    if mci_mi30 is not None and arid is not None:
        ds["mci_mi30"] = xr.DataArray(
            mci_mi30, dims=("station", "slot", "moment"), coords={"moment": ["mean", "std"]},
            attrs={"units": "1", "long_name": "MI30 mean and standard deviation per 366-day slot (arid stations)"})
        ds["arid"] = xr.DataArray(arid.astype(np.int8), dims=("station",), attrs={
            "units": "1", "long_name": "arid station: SPI zeros center_of_mass, MCI with MI30 standardized"})

    from indices.drought import MCI_REF, MCI_TERMS

    ds["mci_gamma"] = xr.DataArray(
        mci_gamma, dims=("station", "mci_term", "slot", "gparam"),
        coords={"mci_term": list(MCI_TERMS), "slot": np.arange(366, dtype=np.int32),
                "gparam": ["alpha", "beta", "q"]},
        attrs={"units": "alpha 1, beta mm, q 1", "references": MCI_REF,
               "long_name": "gamma parameters of WAP60, P90 and P150 per 366-day calendar slot (NaN: not fitted)"})


def _write_netcdf(path: Path, ds: xr.Dataset) -> None:
    """Write through a temporary file, so that ``ews run`` never loads a half-written climatology."""
    tmp = path.with_name(path.name + ".tmp")
    ds.to_netcdf(tmp)
    os.replace(tmp, path)


def _dataset(sids: list[str], registry: Any, t95: np.ndarray, ehf85: np.ndarray, t95_days: np.ndarray,
             ehf_npos: np.ndarray, base_used: np.ndarray, spi: np.ndarray, spi_cal: np.ndarray, ks: list[int],
             names: tuple[str, ...], distribution: str, calibration: tuple[int, int],
             series: dict[str, DailySeries]) -> xr.Dataset:
    import xarray as xr

    from indices.climatology import CLIMATOLOGY_SPI_REF, EHF85_REF, PERCENTILE_REF, SPI_PARAM_UNITS

    def meta(attr: str) -> list[Any]:
        vals = []
        for sid in sids:
            st = registry.get(sid) if registry is not None else None
            vals.append(getattr(st, attr) if st is not None else (np.nan if attr != "name" else ""))
        return vals

    station = ("station",)
    coords = {
        "station": np.array(sids, dtype=object),
        "name": (station, np.array(meta("name"), dtype=object)),
        "latitude": (station, np.array(meta("latitude"), dtype=np.float64), {"units": "degrees_north"}),
        "longitude": (station, np.array(meta("longitude"), dtype=np.float64), {"units": "degrees_east"}),
        "elevation_m": (station, np.array(meta("elevation_m"), dtype=np.float64), {"units": "m"}),
        "scale": ("scale", np.array(ks, dtype=np.int32), {"units": "month", "long_name": "SPI accumulation"}),
        "month": ("month", np.arange(1, 13, dtype=np.int32), {"long_name": "calendar month"}),
        "param": ("param", np.array(names, dtype=object)),
        "param_units": ("param", np.array([SPI_PARAM_UNITS[p] for p in names], dtype=object)),
    }
    first = np.array([series[s].days[0] for s in sids], dtype="datetime64[ns]")
    last = np.array([series[s].days[-1] for s in sids], dtype="datetime64[ns]")
    data = {
        "t95_c": (station, t95, {"units": "degC", "long_name": "95th percentile of daily mean temperature "
                                 "(EHF T95)", "references": PERCENTILE_REF}),
        "ehf85": (station, ehf85, {"units": "K2", "long_name": "85th percentile of positive excess heat "
                                   "factor (EHF85)", "references": EHF85_REF}),
        "t95_days": (station, t95_days.astype(np.int32), {"units": "1", "long_name": "days in the t95 sample"}),
        "ehf85_positive_values": (station, ehf_npos.astype(np.int32),
                                  {"units": "1", "long_name": "positive EHF values in the ehf85 sample"}),
        "t95_base_used": (station, base_used.astype(np.int8),
                          {"units": "1", "long_name": "1: base period used; 0: whole record"}),
        "spi_params": (("station", "scale", "month", "param"), spi,
                       {"units": "see param_units", "long_name": f"SPI {distribution} parameters per calendar "
                        "month (NaN: not fitted)", "references": CLIMATOLOGY_SPI_REF}),
        "spi_calibration": (("station", "bound"), spi_cal,
                            {"units": "year", "long_name": "SPI calibration years used (-1: not fitted)"}),
        "record_start": (station, first, {"long_name": "first day of the daily record (Beijing time)"}),
        "record_end": (station, last, {"long_name": "last day of the daily record (Beijing time)"}),
    }
    return xr.Dataset(data, coords=coords, attrs={
        "title": "Station climatology for the Gansu early-warning service",
        "spi_distribution": distribution,
        "calibration": np.array(calibration, dtype=np.int32),
        "day_definition": "Beijing-time (UTC+8) calendar days",
        "history": f"{now_iso()} ews climatology build",
        "Conventions": "CF-1.8",
    })


# --------------------------------------------------------------------------------------------- load
@dataclass
class Climatology:
    """A loaded climatology: per-station lookups for the streaming path (no refit, no file access per call).

    ``ews run`` loads it once: ``load_climatology(settings.data_dir / "climatology", missing_ok=True)``.
    """

    dataset: xr.Dataset | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    directory: Path | None = None
    _t95: dict[str, float] = field(default_factory=dict, repr=False)
    _ehf85: dict[str, float] = field(default_factory=dict, repr=False)
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        ds = self.dataset
        if ds is None:
            return
        sids = [str(s) for s in ds["station"].values]
        self._index = {s: i for i, s in enumerate(sids)}
        for name, target in (("t95_c", self._t95), ("ehf85", self._ehf85)):
            if name in ds:
                for s, v in zip(sids, ds[name].values, strict=True):
                    if np.isfinite(v):
                        target[s] = float(v)

    @property
    def stations(self) -> list[str]:
        return list(self._index)

    def __contains__(self, station_id: object) -> bool:
        return str(station_id) in self._index

    def __len__(self) -> int:
        return len(self._index)

    @property
    def qc_dir(self) -> Path | None:
        """Directory of the QC anomaly models (``ingest.qc.load_models`` / ``warning.app.load_qc_models``)."""
        return self.directory / QC_DIR if self.directory is not None else None

    @property
    def spi_distribution(self) -> str:
        return str(self.dataset.attrs.get("spi_distribution", "gamma")) if self.dataset is not None else "gamma"

    def t95(self, station_id: str) -> float | None:
        """T95 (degC) of the station, or None (not in the climatology / too little data)."""
        return self._t95.get(str(station_id))

    def ehf85(self, station_id: str) -> float | None:
        """EHF85 (K^2) of the station, or None."""
        return self._ehf85.get(str(station_id))

    def arid(self, station_id: str) -> bool:
        """Whether the station is arid (``build_climatology``'s ``arid_annual_precip_mm``): its SPI scores zeros
        at the centre of the zero mass and its MCI adds MI30 standardized (``indices.drought``)."""
        i = self._index.get(str(station_id))
        if i is None or self.dataset is None or "arid" not in self.dataset:
            return False
        return bool(self.dataset["arid"].values[i])

    def mci_params(self, station_id: str) -> np.ndarray | None:
        """``(3 terms, 366 slots, 3)`` gamma parameters for :func:`indices.drought.mci_from_params` (an arid
        station's with the MI30 term, ``indices.drought.arid_mci_params``), or None."""
        i = self._index.get(str(station_id))
        if i is None or self.dataset is None or "mci_gamma" not in self.dataset:
            return None
        vals = np.asarray(self.dataset["mci_gamma"].values[i], dtype=np.float64)
        if not np.isfinite(vals).any():
            return None
        if self.arid(station_id) and "mci_mi30" in self.dataset:
            from indices.drought import arid_mci_params

            return arid_mci_params(vals, np.asarray(self.dataset["mci_mi30"].values[i], dtype=np.float64))
        return vals

    def spi_params(self, station_id: str) -> dict[int, dict[str, np.ndarray]] | None:
        """``{scale: {param: array(12)}}`` for :func:`indices.drought.spi_from_params` (step = month - 1), or
        None when SPI was not fitted for the station."""
        i = self._index.get(str(station_id))
        if i is None or self.dataset is None:
            return None
        da = self.dataset["spi_params"]
        vals = np.asarray(da.values[i], dtype=np.float64)  # (scale, month, param)
        if not np.isfinite(vals).any():
            return None
        names = [str(p) for p in da["param"].values]
        return {int(k): {p: vals[j, :, m].copy() for m, p in enumerate(names)}
                for j, k in enumerate(da["scale"].values)}

    def spi_zeros(self, station_id: str) -> str:
        """The station's SPI zero handling (``indices.drought.SPI_ZERO_HANDLING``): center_of_mass when arid."""
        return "center_of_mass" if self.arid(station_id) else "classic"

    def spi(self, station_id: str, recent_monthly_mm: Sequence[float], month: int) -> dict[int, float] | None:
        """SPI per scale of the month ``month`` (1..12) whose total is the last of ``recent_monthly_mm``
        (monthly totals in time order, mm); NaN for a scale with too few months. None without parameters."""
        from indices.drought import spi_from_params

        params = self.spi_params(station_id)
        if params is None:
            return None
        x = np.asarray(recent_monthly_mm, dtype=np.float64)
        out: dict[int, float] = {}
        for k, p in params.items():
            if x.size < k:
                out[k] = float("nan")
                continue
            z = spi_from_params(np.array([x[-k:].sum()]), int(month) - 1, {n: v[None, :] for n, v in p.items()},
                                distribution=self.spi_distribution, zeros=self.spi_zeros(station_id))
            out[k] = float(np.asarray(z)[0])
        return out

    def spi_dataset(self) -> xr.Dataset | None:
        """The SPI part as :func:`indices.climatology.spi_for_month` expects (vectorised over stations)."""
        if self.dataset is None:
            return None
        ds = self.dataset[["spi_params"]]
        ds.attrs["spi_distribution"] = self.spi_distribution
        return ds


def load_climatology(out_dir: Path | str, *, missing_ok: bool = False) -> Climatology:
    """Load ``climatology.nc`` (into memory; the file is closed) and ``summary.json`` from ``out_dir``.

    ``missing_ok=True`` returns an empty :class:`Climatology` (every lookup None) when the file is absent,
    which is how ``ews run`` should call it: EHF/SPI products are then skipped, not the service.
    """
    import xarray as xr

    d = Path(out_dir)
    path = d / CLIMATOLOGY_FILE
    if not path.is_file():
        if missing_ok:
            return Climatology(directory=d)
        raise FileNotFoundError(f"{path}: no climatology (run 'ews climatology build HISTORY... --out {d}')")
    with xr.open_dataset(path) as ds:
        loaded = ds.load()
    summary: dict[str, Any] = {}
    sp = d / SUMMARY_FILE
    if sp.is_file():
        summary = json.loads(sp.read_text(encoding="utf-8"))
    return Climatology(dataset=loaded, summary=summary, directory=d)


# --------------------------------------------------------------------------------------------- CLI
def _period_arg(text: str) -> tuple[int, int]:
    parts = text.replace("/", "-").split("-")
    try:
        y0, y1 = int(parts[0]), int(parts[1])
        if len(parts) != 2 or not 1800 <= y0 <= y1 <= 2200:
            raise ValueError
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST years such as 1981-2010, got {text!r}") from None
    return y0, y1


def add_climatology_parser(subparsers: Any) -> None:
    """Add ``climatology build HISTORY... [--out DIR] ...`` to an ``argparse`` subparsers object."""
    p = subparsers.add_parser("climatology", help="build the station climatology that 'ews run' loads",
                              description="Station climatology: SPI parameters, EHF thresholds, QC models.")
    sub = p.add_subparsers(dest="climatology_command", required=True)
    b = sub.add_parser(
        "build", help="fit the climatology from historical station files",
        description="Read historical station files (GHCN-Daily .dly/CSV, ISD-Lite, table), build daily series "
        "per station (Beijing-time days) and write climatology.nc (t95_c, ehf85, SPI parameters per station, "
        "scale and calendar month), summary.json and the QC anomaly models (qc/) into DIR. Exit 2 on a usage "
        "error or if a file cannot be read at all (the others are still used), 1 if nothing could be built.")
    b.add_argument("history", nargs="+", metavar="HISTORY", help="station history files (.gz read through gzip)")
    b.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output directory (default: <EWS_DATA_DIR or ./data>/climatology, where 'ews run' looks)")
    b.add_argument("--format", default="auto", choices=("auto", *STATION_FORMATS),
                   help="file format (default: detected per file)")
    b.add_argument("--as-station", default=None, metavar="WMO",
                   help="treat every file as this registry station (e.g. a foreign record for drills)")
    b.add_argument("--calibration", type=_period_arg, default=DEFAULT_CALIBRATION, metavar="FIRST-LAST",
                   help="SPI calibration and t95/ehf85 base years (default 1981-2010)")
    b.add_argument("--distribution", default="gamma", choices=("gamma", "pearson3"),
                   help="SPI distribution (default gamma)")
    b.add_argument("--hourly-no-report-dry", action="store_true",
                   help="sub-daily files: count hours without a precipitation report as dry (ISD-Lite marks them "
                   "missing; default: such days have no precipitation value)")
    b.add_argument("--json-summary", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_climatology)
    b.set_defaults(func=run_climatology)


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable summary of :func:`build_climatology`."""
    lines = [f"climatology written to {summary['out_dir']} (calibration {summary['calibration'][0]}-"
             f"{summary['calibration'][1]}, SPI {summary['spi_distribution']})"]
    for f in summary["files"]:
        state = f"ERROR {f['error']}" if "error" in f else (
            f"{f['observations']} observations, {f['row_errors']} bad rows")
        lines.append(f"  file {f['path']} [{f['format']}]: {state}")
    for sid, s in summary["stations"].items():
        t95 = "-" if s["t95_c"] is None else f"{s['t95_c']:.2f} degC"
        e85 = "-" if s["ehf85"] is None else f"{s['ehf85']:.2f} K2"
        spi = "SPI fitted " + "-".join(map(str, s["spi_calibration"])) if s["spi"] == "fitted" else (
            f"SPI skipped: {s['spi_reason']}")
        lines.append(f"  station {sid}: {s['record'][0]}..{s['record'][1]}, {s['days_tmax_tmin']} temperature days, "
                     f"{s['complete_precip_months']} precip months; t95 {t95}, ehf85 {e85}; {spi}; "
                     f"QC model {'yes' if s['qc_model'] else 'no'}")
        lines.extend(f"    note: {n}" for n in s["notes"])
    return "\n".join(lines)


def run_climatology(args: argparse.Namespace, *, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    """Run ``ews climatology build``; prints the summary. Exit 0 ok, 1 nothing built, 2 usage/unreadable file."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    if getattr(args, "climatology_command", "build") != "build":
        err.write("ews climatology: expected a subcommand: build\n")
        return EXIT_USAGE
    as_station = args.as_station.strip() if getattr(args, "as_station", None) else None
    if as_station is not None:
        registry = _registry()
        if registry is not None and as_station not in registry:
            err.write(f"ews climatology: --as-station {as_station}: not a station of the registry\n")
            return EXIT_USAGE
    out_dir = args.out if getattr(args, "out", None) is not None else default_out_dir()
    try:
        from warning.rules import load_rules  # the configured rules' day boundary, as ews run and ews replay

        rules_path = os.environ.get("EWS_RULES")
        rules = load_rules(Path(rules_path) if rules_path else None)
        set_day_boundary(rules.days.boundary_bjt_h)
        summary = build_climatology(
            [Path(p) for p in args.history], out_dir, fmt=getattr(args, "format", "auto"), as_station=as_station,
            calibration=getattr(args, "calibration", DEFAULT_CALIBRATION),
            distribution=getattr(args, "distribution", "gamma"),
            hourly_precip_absent_as_zero=bool(getattr(args, "hourly_no_report_dry", False)),
            arid_annual_precip_mm=rules.drought.arid_annual_precip_mm)
    except (ValueError, OSError) as exc:
        err.write(f"ews climatology: {exc}\n")
        return EXIT_FAILED
    if getattr(args, "json_summary", False):
        out.write(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    else:
        out.write(format_summary(summary) + "\n")
    return EXIT_USAGE if any("error" in f for f in summary["files"]) else EXIT_OK
