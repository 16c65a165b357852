"""Grid reader on the real ERA5 / AHCCD NetCDF files of tests/data/netcdf (origins and trimming in
tests/data/README.md; the reference numbers are those the data collection's netcdf/README.md gives) and on small
synthetic forecast files written to tmp_path."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ingest.formats import UnreadableFileError
from ingest.formats.grids import GridFormatError, GridStats, interpolate_to_points, open_grid, read_forecast_points
from ingest.validate import validate_forecast
from tests.support import NETCDF
from warning.shared.regions import StationRegistry

ERA5 = NETCDF / "era5_1995-07-14T12.nc"
ERA5_NC3 = NETCDF / "derived_netcdf3" / "era5_1995-07-14T12.window.nc3.nc"  # a window round the compared points
GLOBAL = NETCDF / "era5_2t_1.nc"
CITIES = NETCDF / "daily_surface_cancities_1990-1993.saskatoon.nc"  # Saskatoon only
CITIES_NC3 = NETCDF / "derived_netcdf3" / "daily_surface_cancities_1990-1993.saskatoon.nc3.nc"
AHCCD = NETCDF / "ahccd_1950-2013.nc"


@dataclass(frozen=True)
class Pt:
    station_id: str
    latitude: float
    longitude: float


CHICAGO = Pt("chicago", 41.75, -87.75)  # exactly the ERA5 cell of the README
LANZHOU = Pt("52889", 36.05, 103.88)  # far outside the CONUS grid


def hand_bilinear(da: xr.DataArray, lat: float, lon: float) -> float:
    """Bilinear value from the 4 surrounding cells, written out by hand."""
    lats = da["latitude"].values.astype(float)
    lons = da["longitude"].values.astype(float)
    la0 = lats[lats <= lat].max()
    la1 = lats[lats >= lat].min()
    lo0 = lons[lons <= lon].max()
    lo1 = lons[lons >= lon].min()
    f = {(a, b): float(da.sel(latitude=a, longitude=b)) for a in (la0, la1) for b in (lo0, lo1)}
    wy = 0.0 if la1 == la0 else (lat - la0) / (la1 - la0)
    wx = 0.0 if lo1 == lo0 else (lon - lo0) / (lo1 - lo0)
    return ((1 - wy) * ((1 - wx) * f[la0, lo0] + wx * f[la0, lo1])
            + wy * ((1 - wx) * f[la1, lo0] + wx * f[la1, lo1]))


# --------------------------------------------------------------------------------------------- real files
def test_open_era5_is_lazy_named_and_in_degc() -> None:
    import dask.array as dsa

    ds = open_grid(ERA5)
    raw = xr.open_dataset(ERA5)
    try:
        assert set(ds.data_vars) == {"air_temp_c", "dewpoint_c", "wind_ms", "pressure_hpa"}
        assert ds.attrs["ews_kind"] == "analysis"
        assert ds["air_temp_c"].dims == ("reftime", "step", "latitude", "longitude")
        assert isinstance(ds["air_temp_c"].data, dsa.Array)  # nothing read yet
        assert ds["air_temp_c"].attrs["units"] == "degC"
        # K -> degC against the file's own t2m_C (float32, written by GeoCAT)
        got = ds["air_temp_c"].isel(reftime=0, step=0).values
        np.testing.assert_allclose(got, raw["t2m_C"].values, atol=2e-5)
        np.testing.assert_allclose(got, raw["t2m"].values - 273.15, atol=1e-12)
        assert float(raw["t2m"].min()) == pytest.approx(272.1212, abs=1e-4)
        np.testing.assert_allclose(ds["pressure_hpa"].isel(reftime=0, step=0).values, raw["sp"].values / 100.0)
    finally:
        ds.close()
        raw.close()


def test_nearest_gives_the_readme_chicago_cell() -> None:
    stats = GridStats()
    fps = list(read_forecast_points(ERA5, [Pt("chi", 41.80, -87.70)], method="nearest", stats=stats))
    assert len(fps) == 1 and stats.records == 1 and not stats.skipped
    fp = fps[0]
    assert fp.values["air_temp_c"] == pytest.approx(302.1445 - 273.15, abs=1e-3)  # 28.99 degC
    assert fp.values["dewpoint_c"] == pytest.approx(299.2679 - 273.15, abs=1e-3)  # 26.12 degC
    # reanalysis: issued at its own data time, lead 0, instant with the nominal one-hour window
    assert (fp.issued_at, fp.valid_from, fp.valid_to, fp.lead_h) == (
        "1995-07-14T12:00:00Z", "1995-07-14T12:00:00Z", "1995-07-14T13:00:00Z", 0.0)
    raw = xr.open_dataset(ERA5)
    cell = raw.sel(latitude=41.75, longitude=-87.75)
    assert fp.values["wind_ms"] == pytest.approx(math.hypot(float(cell.u10), float(cell.v10)), abs=1e-3)
    raw.close()
    validate_forecast({"station_id": fp.station_id, "issued_at": fp.issued_at, "valid_from": fp.valid_from,
                       "valid_to": fp.valid_to, "lead_h": fp.lead_h, "values": fp.values})


@pytest.mark.parametrize(("lat", "lon"), [(41.83, -87.62), (36.12, -115.17), (29.76, -95.37), (47.61, -122.33)])
def test_bilinear_matches_hand_computed_four_cells(lat: float, lon: float) -> None:
    raw = xr.open_dataset(ERA5)
    want_t = hand_bilinear(raw["t2m"], lat, lon) - 273.15
    want_td = hand_bilinear(raw["d2m"], lat, lon) - 273.15
    raw.close()
    ds = open_grid(ERA5)
    pts = interpolate_to_points(ds, [lat], [lon], "bilinear").compute()
    assert float(pts["air_temp_c"].squeeze()) == pytest.approx(want_t, abs=1e-9)
    assert float(pts["dewpoint_c"].squeeze()) == pytest.approx(want_td, abs=1e-9)
    # and the ForecastPoint (rounded to 1e-3) carries the same value
    (fp,) = read_forecast_points(ERA5, [Pt("p", lat, lon)])
    assert fp.values["air_temp_c"] == pytest.approx(want_t, abs=6e-4)
    ds.close()


def test_bilinear_on_a_grid_point_is_the_cell_value() -> None:
    (fp,) = read_forecast_points(ERA5, [CHICAGO], method="bilinear")
    assert fp.values["air_temp_c"] == pytest.approx(28.9945, abs=1e-3)


def test_stations_outside_the_grid_yield_nothing() -> None:
    stats = GridStats()
    fps = list(read_forecast_points(ERA5, [CHICAGO, LANZHOU, Pt("south", 10.0, -90.0), Pt("edge", 50.2, -100.0)],
                                    stats=stats))
    assert [f.station_id for f in fps] == ["chicago"]
    assert set(stats.skipped) == {"52889", "south", "edge"}
    assert all(r == "outside the grid" for r in stats.skipped.values())
    assert all(math.isfinite(v) for f in fps for v in f.values.values())
    # the whole Gansu registry is outside CONUS: no records, every station counted
    reg = StationRegistry.load()
    stats = GridStats()
    assert list(read_forecast_points(ERA5, reg, stats=stats)) == []
    assert len(stats.skipped) == len(reg) == stats.stations


def test_global_0_360_grid_wraps_and_takes_negative_longitudes() -> None:
    raw = xr.open_dataset(GLOBAL)
    t = raw["t2m"].isel(time=0)
    ds = open_grid(GLOBAL)
    # -10 E = 350 E lies between the 340 E column and the 0 E column (wrapped to 360)
    pts = interpolate_to_points(ds, [50.0, 50.0, 30.0], [-10.0, 350.0, 190.0], "bilinear").compute()
    v = pts["air_temp_c"].values.reshape(-1)
    at = {lon: float(t.sel(latitude=la, longitude=lon)) for la in (40.0, 60.0) for lon in (340.0, 0.0)}
    want = 0.5 * (0.5 * float(t.sel(latitude=40.0, longitude=340.0)) + 0.5 * float(t.sel(latitude=40.0, longitude=0.0))
                  ) + 0.5 * (0.5 * float(t.sel(latitude=60.0, longitude=340.0))
                             + 0.5 * float(t.sel(latitude=60.0, longitude=0.0))) - 273.15
    assert at  # the four cells exist
    assert v[0] == pytest.approx(want, abs=1e-9)
    assert v[1] == pytest.approx(v[0], abs=1e-12)
    assert v[2] == pytest.approx(hand_bilinear(t, 30.0, 190.0) - 273.15, abs=1e-9)
    # every Gansu registry station gets a record from the global field
    reg = StationRegistry.load()
    stats = GridStats()
    fps = list(read_forecast_points(GLOBAL, reg, stats=stats))
    assert len(fps) == len(reg) and not stats.skipped
    assert {f.issued_at for f in fps} == {"2021-03-01T12:00:00Z"}
    raw.close()
    ds.close()


def test_netcdf3_copies_via_scipy_engine() -> None:
    pts = [CHICAGO, Pt("p", 36.12, -115.17)]
    a = list(read_forecast_points(ERA5, pts))
    b = list(read_forecast_points(ERA5_NC3, pts, engine="scipy"))
    assert [x.values for x in a] == [x.values for x in b]
    ds = open_grid(GLOBAL, engine="scipy")
    assert float(ds["air_temp_c"].max()) < 60
    ds.close()
    sk = Pt("saskatoon", 52.0, -106.65)
    c4 = list(read_forecast_points(CITIES, [sk]))
    c3 = list(read_forecast_points(CITIES_NC3, [sk], engine="scipy"))
    assert len(c4) == len(c3) == 1461
    assert c4[400].values == c3[400].values


def test_daily_series_file_saskatoon_reference_numbers() -> None:
    stats = GridStats()
    fps = list(read_forecast_points(CITIES, [Pt("saskatoon", 52.1, -106.6), LANZHOU], stats=stats))
    assert stats.skipped == {"52889": "no location within 30 km"}
    assert len(fps) == 1461
    first = fps[0]
    # daily data: labelled at the start of the day, 24 h window, pr (kg m-2 s-1, daily mean) x 86400 s
    assert (first.valid_from, first.valid_to) == ("1990-01-01T00:00:00Z", "1990-01-02T00:00:00Z")
    assert first.values["precip_period_h"] == 24.0
    annual = {y: sum(f.values["precip_mm"] for f in fps if f.valid_from.startswith(str(y))) for y in range(1990, 1994)}
    for y, want in {1990: 401.17, 1991: 559.89, 1992: 418.33, 1993: 494.55}.items():
        assert annual[y] == pytest.approx(want, abs=0.02)
    tmax = max(fps, key=lambda f: f.values["tmax_c"])
    tmin = min(fps, key=lambda f: f.values["tmin_c"])
    assert (tmax.values["tmax_c"], tmax.valid_from[:10]) == (pytest.approx(34.835, abs=1e-3), "1991-09-01")
    assert (tmin.values["tmin_c"], tmin.valid_from[:10]) == (pytest.approx(-43.251, abs=1e-3), "1990-12-21")
    assert min(f.values["rh_pct"] for f in fps) >= 0 and max(f.values["rh_pct"] for f in fps) <= 100  # fraction -> %


def test_ahccd_noleap_calendar_and_mm_per_day() -> None:
    fps = list(read_forecast_points(AHCCD, [Pt("vancouver", 49.1, -123.1)]))
    assert fps[0].valid_from == "1950-01-01T00:00:00Z"
    assert fps[-1].valid_from == "2013-12-31T00:00:00Z"
    raw = xr.open_dataset(AHCCD)
    van = raw.sel(location="Vancouver")
    n_pr = int(np.isfinite(van["pr"].values).sum())
    got = [f.values["precip_mm"] for f in fps if "precip_mm" in f.values]
    assert len(got) == n_pr
    assert sum(got) == pytest.approx(float(np.nansum(van["pr"].values)), rel=1e-6)  # mm day-1 x 1 day
    assert all(f.values.get("precip_period_h", 24.0) == 24.0 for f in fps)  # noleap: Feb 28 -> Mar 1 is a day
    raw.close()


# --------------------------------------------------------------------------------------------- synthetic
def _write_accumulated(path: Path, acc_mm: list[float], *, meta: bool = True, name: str = "tp") -> None:
    lat = np.array([35.0, 36.0, 37.0])
    lon = np.array([103.0, 104.0, 105.0])
    steps = pd.to_timedelta([0, 6, 12, 18, 24], unit="h")
    acc = np.array(acc_mm)[None, :, None, None] / 1000.0 * np.ones((1, 5, 3, 3))
    attrs = {"units": "m", "long_name": "Total precipitation"}
    if meta:
        attrs["GRIB_stepType"] = "accum"
    ds = xr.Dataset(
        {name: (("time", "step", "latitude", "longitude"), acc, attrs),
         "t2m": (("time", "step", "latitude", "longitude"), 280.0 + np.arange(45.0).reshape(1, 5, 3, 3),
                 {"units": "K", "standard_name": "air_temperature"})},
        coords={"time": ("time", pd.to_datetime(["2026-07-14T00:00"]), {"standard_name": "forecast_reference_time"}),
                "step": steps, "latitude": lat, "longitude": lon},
    )
    ds.to_netcdf(path)


def test_accumulated_precip_is_deaccumulated(tmp_path: Path) -> None:
    p = tmp_path / "acc.nc"
    _write_accumulated(p, [0.0, 1.0, 3.0, 3.0, 6.5])
    fps = list(read_forecast_points(p, [Pt("a", 36.5, 104.5)]))
    assert [f.lead_h for f in fps] == [0.0, 6.0, 12.0, 18.0, 24.0]
    assert {f.issued_at for f in fps} == {"2026-07-14T00:00:00Z"}
    assert "precip_mm" not in fps[0].values  # step 0: nothing can have fallen yet
    assert [f.values["precip_mm"] for f in fps[1:]] == pytest.approx([1.0, 2.0, 0.0, 3.5])
    assert [f.values["precip_period_h"] for f in fps[1:]] == [6.0] * 4
    assert [(f.valid_from[11:16], f.valid_to[11:16]) for f in fps[1:]] == [
        ("00:00", "06:00"), ("06:00", "12:00"), ("12:00", "18:00"), ("18:00", "00:00")]
    # t2m (K) bilinear at the cell centre of the 4 corners, step 1: mean of cells 4,5,7,8 of 9..17 -> +280 K
    assert fps[1].values["air_temp_c"] == pytest.approx(280 + 9 + 6 - 273.15, abs=1e-3)
    for f in fps:
        validate_forecast({"station_id": f.station_id, "issued_at": f.issued_at, "valid_from": f.valid_from,
                           "valid_to": f.valid_to, "lead_h": f.lead_h, "values": f.values})
    # forcing per-step keeps the accumulated values (m -> mm only)
    raw = list(read_forecast_points(p, [Pt("a", 36.5, 104.5)], accumulation="per_step"))
    assert [f.values["precip_mm"] for f in raw[1:]] == pytest.approx([1.0, 3.0, 3.0, 6.5])


def test_per_step_amounts_are_not_deaccumulated(tmp_path: Path) -> None:
    """ERA5-style hourly amounts (each step its own period) decrease somewhere: left as they are."""
    p = tmp_path / "hourly.nc"
    _write_accumulated(p, [0.0, 2.0, 1.0, 0.0, 4.0])
    fps = list(read_forecast_points(p, [Pt("a", 36.0, 104.0)], method="nearest"))
    assert [f.values["precip_mm"] for f in fps[1:]] == pytest.approx([2.0, 1.0, 0.0, 4.0])
    # an unknown name without "accum" metadata: never de-accumulated, even if non-decreasing
    q = tmp_path / "nometa.nc"
    _write_accumulated(q, [0.0, 1.0, 3.0, 3.0, 6.5], meta=False, name="precip")
    fps = list(read_forecast_points(q, [Pt("a", 36.0, 104.0)], method="nearest"))
    assert [f.values["precip_mm"] for f in fps[1:]] == pytest.approx([1.0, 3.0, 3.0, 6.5])
    # ECMWF's tp written to NetCDF without GRIB keys: known to accumulate, and the sample agrees
    r = tmp_path / "tp_nometa.nc"
    _write_accumulated(r, [0.0, 1.0, 3.0, 3.0, 6.5], meta=False)
    fps = list(read_forecast_points(r, [Pt("a", 36.0, 104.0)], method="nearest"))
    assert [f.values["precip_mm"] for f in fps[1:]] == pytest.approx([1.0, 2.0, 0.0, 3.5])


def test_cf_forecast_with_reftime_and_flux(tmp_path: Path) -> None:
    lat = np.array([35.0, 36.0, 37.0])
    lon = np.array([103.0, 104.0, 105.0])
    times = pd.date_range("2026-07-14T03:00", periods=4, freq="3h")
    ds = xr.Dataset(
        {"pr": (("time", "lat", "lon"), np.full((4, 3, 3), 2.0 / 3600.0),
                {"units": "kg m-2 s-1", "standard_name": "precipitation_flux"}),
         "hurs": (("time", "lat", "lon"), np.full((4, 3, 3), 101.0), {"units": "%"})},
        coords={"time": times, "reftime": pd.Timestamp("2026-07-14T00:00"),
                "lat": ("lat", lat, {"units": "degrees_north"}), "lon": ("lon", lon, {"units": "degrees_east"})},
    )
    p = tmp_path / "cf.nc"
    ds.to_netcdf(p)
    fps = list(read_forecast_points(p, [Pt("a", 36.2, 103.8)], method="nearest"))
    assert [f.lead_h for f in fps] == [3.0, 6.0, 9.0, 12.0]
    assert [f.values["precip_mm"] for f in fps] == pytest.approx([6.0] * 4)  # 2 mm/h x 3 h
    assert fps[0].valid_from == "2026-07-14T00:00:00Z" and fps[0].valid_to == "2026-07-14T03:00:00Z"
    assert all(f.values["rh_pct"] == 100.0 for f in fps)  # clipped to the schema's 100 %
    # a caller-supplied issue time turns plain valid times into leads
    ds2 = ds.drop_vars("reftime")
    q = tmp_path / "plain.nc"
    ds2.to_netcdf(q)
    fps = list(read_forecast_points(q, [Pt("a", 36.0, 104.0)], method="nearest", issued_at="2026-07-13T21:00:00Z"))
    assert [f.lead_h for f in fps] == [6.0, 9.0, 12.0, 15.0]


def test_unreadable_and_grib_without_cfgrib(tmp_path: Path) -> None:
    with pytest.raises(GridFormatError):
        open_grid(tmp_path / "missing.nc")
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not a netcdf file at all")
    with pytest.raises(UnreadableFileError):
        open_grid(bad)
    if importlib.util.find_spec("cfgrib") is None:
        g = tmp_path / "x.grib2"
        g.write_bytes(b"GRIB\x00\x00\x00\x02" + b"\x00" * 32)
        with pytest.raises(GridFormatError, match="cfgrib"):
            open_grid(g)
    nothing = tmp_path / "nothing.nc"
    xr.Dataset({"orog": (("latitude", "longitude"), np.zeros((2, 2)), {"units": "m"})},
               coords={"latitude": [0.0, 1.0], "longitude": [0.0, 1.0]}).to_netcdf(nothing)
    with pytest.raises(GridFormatError, match="no recognised variable"):
        open_grid(nothing)


def test_odd_and_static_variables_are_skipped_not_fatal(tmp_path: Path) -> None:
    lat, lon = np.array([35.0, 36.0]), np.array([103.0, 104.0])
    times = pd.date_range("2026-07-14T00:00", periods=2, freq="1h")
    p = tmp_path / "mixed.nc"
    xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), np.full((2, 2, 2), 300.0), {"units": "K"}),
         "si10": (("time", "latitude", "longitude"), np.ones((2, 2, 2)), {"units": "furlongs per fortnight"}),
         "sp": (("latitude", "longitude"), np.full((2, 2), 1.0e5), {"units": "Pa"})},
        coords={"time": times, "latitude": lat, "longitude": lon},
    ).to_netcdf(p)
    ds = open_grid(p)
    assert set(ds.data_vars) == {"air_temp_c"}
    assert "furlongs" in ds.attrs["ews_skipped"] and "sp: no time axis" in ds.attrs["ews_skipped"]
    ds.close()
    fps = list(read_forecast_points(p, [Pt("a", 35.5, 103.5)]))
    # hourly analysis: windows end at the data time and last one spacing of the time axis
    assert [(f.valid_from[11:16], f.valid_to[11:16], f.values) for f in fps] == [
        ("23:00", "00:00", {"air_temp_c": pytest.approx(26.85)}), ("00:00", "01:00", {"air_temp_c": 26.85})]


def test_yx_dims_and_reftime_variable_and_lazy_points(tmp_path: Path) -> None:
    import dask.array as dsa

    p = tmp_path / "yx.nc"
    xr.Dataset(
        {"tas": (("time", "y", "x"), np.stack([np.full((2, 3), 290.0), np.full((2, 3), 300.0)]), {"units": "K"}),
         "reftime": ((), np.datetime64("2026-07-14T00:00", "ns"))},
        coords={"time": pd.date_range("2026-07-14T06:00", periods=2, freq="6h"),
                "lat": ("y", [35.0, 36.0], {"units": "degrees_north"}),
                "lon": ("x", [103.0, 104.0, 105.0], {"units": "degrees_east"})},
    ).to_netcdf(p)
    ds = open_grid(p)
    pts = interpolate_to_points(ds, [35.5], [104.2])
    assert isinstance(pts["air_temp_c"].data, dsa.Array)  # still lazy: computed per block by the reader
    ds.close()
    fps = list(read_forecast_points(p, [Pt("a", 35.5, 104.2)]))
    assert [(f.issued_at, f.lead_h, f.values["air_temp_c"]) for f in fps] == [
        ("2026-07-14T00:00:00Z", 6.0, pytest.approx(16.85)), ("2026-07-14T00:00:00Z", 12.0, pytest.approx(26.85))]
