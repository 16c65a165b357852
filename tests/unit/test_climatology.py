"""Station climatology: indices.climatology (pure fits) and warning.climatology (build / load / CLI).

The data-based tests use the real station files of tests/data/station_obs (GHCN-Daily Denver .dly
1948-2019, GHCN-Daily Beijing access CSV 1951-2025, ISD-Lite Beijing 2017) replayed as Gansu stations
(``as_station``), because no Gansu station history is available offline. Every reference value is
recomputed here independently from ``ingest.formats.read_observations`` output with plain numpy.
"""

from __future__ import annotations

import argparse
import calendar
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from indices.climatology import (
    ehf85_thresholds,
    ehf_thresholds,
    fit_spi_params,
    percentile_thresholds,
    spi_for_month,
    spi_params_for,
)
from indices.drought import spi, spi_fit
from indices.heat import excess_heat_factor
from tests.support import DLY as DENVER
from tests.support import GHCN_CSV as BEIJING_CSV
from tests.support import ISD as BEIJING_ISD

BASE = (1981, 2010)


# --------------------------------------------------------------------------------------------- pure kernels
def _synthetic_monthly(seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    t = np.arange("1961-01", "2021-01", dtype="datetime64[M]").astype("datetime64[ns]")
    p = rng.gamma(1.3, 25.0, (3, t.size))
    p[0, rng.random(t.size) < 0.3] = 0.0  # arid station: many dry months
    p[1, 100] = np.nan
    return xr.DataArray(p, dims=("station", "time"), coords={"station": ["a", "b", "c"], "time": t},
                        attrs={"units": "mm"})


@pytest.mark.parametrize("distribution", ["gamma", "pearson3"])
def test_fit_spi_params_equals_spi_fit_and_spi(distribution: str) -> None:
    da = _synthetic_monthly()
    ds = fit_spi_params(da, distribution=distribution)
    assert ds["spi_params"].dims == ("station", "scale", "month", "param")
    assert list(ds["scale"].values) == [1, 3, 6, 12]
    assert ds.attrs["spi_distribution"] == distribution
    assert list(ds.attrs["calibration_used"]) == [1981, 2010]
    for k in (1, 3, 6, 12):
        direct = spi_fit(da, k, distribution=distribution)
        stored = spi_params_for(ds, k)
        for name, arr in direct.items():
            np.testing.assert_allclose(stored[name], arr, rtol=0, atol=0, equal_nan=True)
        full = np.asarray(spi(da, k, distribution=distribution))
        for n in (da.sizes["time"], da.sizes["time"] - 5, 400):  # last month, and two earlier months
            z = spi_for_month(ds, da.isel(time=slice(0, n)))
            np.testing.assert_allclose(z.sel(scale=k).values, full[:, n - 1], atol=1e-6, equal_nan=True)


def test_spi_for_month_unknown_station_and_short_window_give_nan() -> None:
    da = _synthetic_monthly()
    ds = fit_spi_params(da, scales=(1, 3))
    recent = da.isel(time=slice(-2, None)).assign_coords(station=["a", "zz", "c"])
    z = spi_for_month(ds, recent)
    assert np.isnan(z.sel(station="zz")).all()
    assert np.isnan(z.sel(scale=3)).all()  # only 2 months given
    assert np.isfinite(z.sel(station="a", scale=1))
    with pytest.raises(ValueError, match="scale 6"):
        spi_for_month(ds, recent, scales=(6,))


def test_percentile_thresholds_match_numpy_and_fall_back_to_record() -> None:
    rng = np.random.default_rng(1)
    t = np.arange("1975-01-01", "2015-01-01", dtype="datetime64[D]")
    seasonal = 10.0 - 14.0 * np.cos(2 * np.pi * np.arange(t.size) / 365.25)
    x = seasonal + rng.normal(0.0, 3.0, (2, t.size))
    x[1, : np.searchsorted(t, np.datetime64("2010-06-01"))] = np.nan  # < 365 days inside 1981-2010
    da = xr.DataArray(x, dims=("station", "time"), coords={"station": ["s1", "s2"], "time": t},
                      attrs={"units": "degC"})
    thr = percentile_thresholds(da, 0.95, BASE)
    years = t.astype("datetime64[Y]").astype(int) + 1970
    in_base = (years >= 1981) & (years <= 2010)
    assert thr.values[0] == pytest.approx(np.percentile(x[0, in_base], 95), abs=1e-12)
    assert thr.values[1] == pytest.approx(np.nanpercentile(x[1], 95), abs=1e-12)  # whole record
    assert list(thr["base_used"].values) == [True, False]
    assert thr.attrs["units"] == "degC"
    ehf = np.asarray(excess_heat_factor(x[0], thr.values[0]))
    e85 = ehf85_thresholds(da, thr, 0.85, BASE)
    pos = ehf[in_base & (ehf > 0)]
    assert e85.values[0] == pytest.approx(np.percentile(pos, 85), abs=1e-12)
    assert int(e85["n_positive"].values[0]) == pos.size
    assert e85.attrs["units"] == "K2"
    both = ehf_thresholds(da, BASE)
    np.testing.assert_allclose(both["t95_c"].values, thr.values)
    np.testing.assert_allclose(both["ehf85"].values, e85.values)


def test_kernels_reject_bad_input() -> None:
    t = np.array(["2000-01-01", "2000-01-03"], dtype="datetime64[D]")
    gap = xr.DataArray([[1.0, 2.0]], dims=("station", "time"), coords={"time": t})
    with pytest.raises(ValueError, match="consecutive days"):
        percentile_thresholds(gap)
    with pytest.raises(ValueError, match="DataArray"):
        percentile_thresholds(np.zeros((2, 3)))  # type: ignore[arg-type]
    ok = xr.DataArray([[1.0, 2.0]], dims=("station", "time"),
                      coords={"time": np.array(["2000-01-01", "2000-01-02"], dtype="datetime64[D]")})
    with pytest.raises(ValueError, match="q must be"):
        percentile_thresholds(ok, q=95)
    with pytest.raises(ValueError, match="distribution"):
        fit_spi_params(_synthetic_monthly(), distribution="weibull")
    kelvin = xr.DataArray(np.full((1, 400), 300.0), dims=("station", "time"),
                          coords={"time": np.arange("2000-01-01", 400, dtype="datetime64[D]")})
    with pytest.raises(ValueError, match="wrong units"):
        percentile_thresholds(kelvin)


# --------------------------------------------------------------------------------------------- real files
def _independent_daily(path: Path) -> dict[str, tuple[float | None, float | None, float | None]]:
    """date -> (tmax, tmin, precip) straight from the reader (GHCN days keep their own date)."""
    from ingest.formats import RowError, read_observations

    out = {}
    for row in read_observations(path, as_station="52889"):
        assert not isinstance(row, RowError)
        out[row.time[:10]] = (row.tmax_c, row.tmin_c, row.precip_mm)
    return out


def _calendar(daily: dict[str, tuple[float | None, float | None, float | None]]):
    days = np.array(sorted(daily), dtype="datetime64[D]")
    full = np.arange(days[0], days[-1] + 1)
    vals = np.full((full.size, 3), np.nan)
    idx = (days - days[0]).astype(int)
    vals[idx] = np.array([[np.nan if v is None else v for v in daily[str(d)]] for d in days])
    return full, vals


def _monthly(full: np.ndarray, precip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    months = full.astype("datetime64[M]")
    axis = np.arange(months[0], months[-1] + 1)
    tot = np.full(axis.size, np.nan)
    for i, m in enumerate(axis):
        sel = precip[months == m]
        y, mo = int(str(m)[:4]), int(str(m)[5:7])
        if sel.size == calendar.monthrange(y, mo)[1] and not np.isnan(sel).any():
            tot[i] = sel.sum()
    first = int(np.argmax(np.isfinite(tot)))
    last = tot.size - int(np.argmax(np.isfinite(tot[::-1])))
    return axis[first:last], tot[first:last]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    from warning.climatology import build_climatology

    out = {}
    for key, path in (("denver", DENVER), ("beijing", BEIJING_CSV)):
        d = tmp_path_factory.mktemp(key) / "climatology"
        out[key] = (d, build_climatology([path], d, as_station="52889"))
    return out


@pytest.mark.parametrize("key,path", [("denver", DENVER), ("beijing", BEIJING_CSV)])
def test_t95_and_ehf85_equal_direct_numpy(built, key: str, path: Path) -> None:
    from warning.climatology import load_climatology

    out_dir, summary = built[key]
    clim = load_climatology(out_dir)
    full, vals = _calendar(_independent_daily(path))
    tmean = 0.5 * (vals[:, 0] + np.append(vals[1:, 1], np.nan))  # Tmax with the following night's Tmin
    years = full.astype("datetime64[Y]").astype(int) + 1970
    in_base = (years >= 1981) & (years <= 2010)
    t95 = np.percentile(tmean[in_base & np.isfinite(tmean)], 95)
    assert clim.t95("52889") == pytest.approx(t95, abs=1e-9)
    assert summary["stations"]["52889"]["t95_days"] == int((in_base & np.isfinite(tmean)).sum())
    ehf = np.asarray(excess_heat_factor(tmean, t95))
    pos = ehf[in_base & (ehf > 0)]
    assert clim.ehf85("52889") == pytest.approx(np.percentile(pos, 85), abs=1e-9)
    assert summary["stations"]["52889"]["ehf85_positive_values"] == pos.size
    # plausible values for a semi-arid continental (Denver) / monsoon (Beijing) summer
    assert 20.0 < clim.t95("52889") < 32.0
    assert clim.t95("99999") is None and clim.ehf85("99999") is None


@pytest.mark.parametrize("key,path", [("denver", DENVER), ("beijing", BEIJING_CSV)])
def test_spi_params_reproduce_full_spi(built, key: str, path: Path) -> None:
    from warning.climatology import load_climatology

    out_dir, summary = built[key]
    clim = load_climatology(out_dir)
    full, vals = _calendar(_independent_daily(path))
    months, tot = _monthly(full, vals[:, 2])
    info = summary["stations"]["52889"]
    assert info["spi"] == "fitted" and info["spi_calibration"] == [1981, 2010]
    assert info["spi_months"] == [str(months[0]), str(months[-1])]
    assert info["complete_precip_months"] == int(np.isfinite(tot).sum())
    start = int(str(months[0])[:4])
    assert str(months[0])[5:7] == "01"  # both records start in January
    params = clim.spi_params("52889")
    assert params is not None and sorted(params) == [1, 3, 6, 12]
    series = xr.DataArray(tot[None, :], dims=("station", "time"),
                          coords={"station": ["52889"], "time": months.astype("datetime64[ns]")})
    checked = 0
    for k in (1, 3, 6, 12):
        direct = spi_fit(tot, k, start_year=start, calibration=BASE)
        for name in ("alpha", "beta", "prob_zero"):
            np.testing.assert_allclose(params[k][name], direct[name], rtol=1e-12, equal_nan=True)
        z_full = np.asarray(spi(tot, k, start_year=start, calibration=BASE))
        last_finite = int(np.flatnonzero(np.isfinite(z_full))[-1]) + 1
        # the last month of the record, the last month with a value, and one in the calibration period
        for n in (tot.size, last_finite, (2000 - start) * 12 + 7):
            expect = z_full[n - 1]
            month = int(str(months[n - 1])[5:7])
            got = clim.spi("52889", tot[:n], month)
            assert got is not None
            vec = spi_for_month(clim.spi_dataset(), series.isel(time=slice(0, n))).sel(scale=k).item()
            if np.isnan(expect):
                assert np.isnan(got[k]) and np.isnan(vec)
            else:
                assert got[k] == pytest.approx(expect, abs=1e-6)
                assert vec == pytest.approx(expect, abs=1e-6)
                checked += 1
    assert checked >= 8  # gaps in the recent Beijing record leave the last months NaN for long scales


def test_qc_models_saved_and_loadable(built) -> None:
    from ingest.partition_store import load_qc_models
    from ingest.qc import load_models

    out_dir, summary = built["denver"]
    models = load_models(out_dir / "qc")
    assert set(models) == {"52889"}
    assert ("tmax_c", "tmin_c") in models["52889"].models
    assert models["52889"].models[("tmax_c", "tmin_c")].n_train > 20000
    assert set(load_qc_models(out_dir / "qc")) == {"52889"}  # the path and loader 'ews run' uses
    assert summary["stations"]["52889"]["qc_model"] is True


def test_netcdf_and_summary_round_trip(built) -> None:
    from warning.climatology import load_climatology

    out_dir, summary = built["denver"]
    with xr.open_dataset(out_dir / "climatology.nc") as ds:
        assert ds["t95_c"].dims == ("station",) and ds["t95_c"].attrs["units"] == "degC"
        assert ds["ehf85"].attrs["units"] == "K2"
        assert ds["spi_params"].dims == ("station", "scale", "month", "param")
        assert [str(p) for p in ds["param"].values] == ["alpha", "beta", "prob_zero"]
        assert [str(s) for s in ds["station"].values] == ["52889"]
        assert str(ds["name"].values[0]) == "Lanzhou"  # registry metadata
        assert float(ds["t95_c"].values[0]) == pytest.approx(summary["stations"]["52889"]["t95_c"], abs=1e-4)
    assert json.loads((out_dir / "summary.json").read_text(encoding="utf-8")) == summary
    clim = load_climatology(out_dir)
    assert clim.stations == ["52889"] and "52889" in clim and len(clim) == 1
    assert clim.summary == summary and clim.qc_dir == out_dir / "qc"
    assert clim.spi_params("12345") is None
    empty = load_climatology(out_dir.parent / "nowhere", missing_ok=True)
    assert len(empty) == 0 and empty.t95("52889") is None and empty.spi_params("52889") is None
    with pytest.raises(FileNotFoundError):
        load_climatology(out_dir.parent / "nowhere")


def test_short_hourly_record_skips_spi_and_uses_beijing_days(tmp_path: Path) -> None:
    from ingest.formats import read_observations
    from warning.climatology import build_climatology, load_climatology, read_daily_series

    summary = build_climatology([BEIJING_ISD], tmp_path / "c", as_station="52889")
    info = summary["stations"]["52889"]
    assert info["spi"] == "skipped" and "< 10 years" in info["spi_reason"]
    assert info["t95_c"] is None and "365" in info["t95_reason"]  # 364 complete Beijing days in 2017
    clim = load_climatology(tmp_path / "c")
    assert clim.spi_params("52889") is None and clim.t95("52889") is None
    # hourly -> Beijing-time daily extremes, checked against the raw hourly reports
    hourly = [(np.datetime64(o.time[:-1]) + np.timedelta64(8, "h"), o.air_temp_c)
              for o in read_observations(BEIJING_ISD, as_station="52889") if o.air_temp_c is not None]
    day = np.datetime64("2017-06-15")
    temps = [t for when, t in hourly if when.astype("datetime64[D]") == day]
    series = read_daily_series([BEIJING_ISD], as_station="52889")["52889"]
    i = int((day - series.days[0]).astype(int))
    assert series.tmax_c[i] == max(temps) == 39.0  # README: 39.0 degC at 06-15T07Z = 15 BJT
    assert series.tmin_c[i] == min(temps)
    assert np.isnan(series.precip_mm).all() or np.nanmax(series.precip_mm) > 0  # only complete 24 h days
    wet = read_daily_series([BEIJING_ISD], as_station="52889", hourly_precip_absent_as_zero=True)["52889"]
    assert np.nansum(wet.precip_mm) == pytest.approx(579.1, abs=1e-6)  # README: 130 six-hour reports


def test_cli_build_reports_unreadable_file_and_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from warning.climatology import add_climatology_parser, default_out_dir, run_climatology

    parser = argparse.ArgumentParser(prog="ews")
    add_climatology_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "clim"
    args = parser.parse_args(["climatology", "build", str(BEIJING_ISD), str(tmp_path / "missing.dly"),
                              "--out", str(out), "--calibration", "1991-2020"])
    assert args.calibration == (1991, 2020)
    assert run_climatology(args) == 2  # a file could not be read; the other one is still used
    text = capsys.readouterr().out
    assert "station 54511" in text and "ERROR" in text and "not a station of the Gansu registry" in text
    assert (out / "climatology.nc").is_file() and (out / "qc" / "qc_anomaly_models.json").is_file()
    bad = parser.parse_args(["climatology", "build", str(BEIJING_ISD), "--as-station", "12345", "--out",
                             str(tmp_path / "x")])
    assert run_climatology(bad) == 2 and "not a station of the registry" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["climatology", "build", "f", "--calibration", "2010-1981"])
    monkeypatch.setenv("EWS_DATA_DIR", str(tmp_path / "data"))
    assert default_out_dir() == tmp_path / "data" / "climatology"
