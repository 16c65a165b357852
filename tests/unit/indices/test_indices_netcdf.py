"""End-to-end checks on real reanalysis / station NetCDF files in tests/data/netcdf."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from indices import drought, heat

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:climate_indices"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning:climate_indices"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning:scipy"),
]


def test_era5_grid_heat_index_vs_metpy(netcdf_dir: Path) -> None:
    metpy_calc = pytest.importorskip("metpy.calc")
    units = pytest.importorskip("metpy.units").units
    ds = xr.open_dataset(netcdf_dir / "era5_1995-07-14T12.nc")
    t2m, d2m = ds["t2m"], ds["d2m"]
    assert t2m.attrs.get("units") == "K"
    rh = metpy_calc.relative_humidity_from_dewpoint(t2m.values * units.K, d2m.values * units.K).to("percent")
    rh_da = xr.DataArray(np.clip(rh.magnitude, 0.0, 100.0), dims=t2m.dims, coords=t2m.coords,
                         attrs={"units": "%"})
    out = heat.heat_index(t2m, rh_da)  # Kelvin DataArray converted through its units attribute
    assert isinstance(out, xr.DataArray) and out.dims == t2m.dims
    assert out.attrs["units"] == "degC" and "latitude" in out.coords
    ref = metpy_calc.heat_index(t2m.values * units.K, rh_da.values * units.percent).to("degC")
    ref = np.ma.filled(np.ma.asarray(ref.magnitude, dtype=float), np.nan)
    ok = np.isfinite(ref)
    assert ok.sum() > 1000
    assert np.max(np.abs(out.values[ok] - ref[ok])) < 0.1  # measured ~1e-12 degC
    chicago = out.sel(latitude=41.75, longitude=-87.75)
    assert 30.0 < float(chicago) < 40.0  # 29 C at 84.5 % RH


def test_era5_grid_humidex_vs_thermofeel(netcdf_dir: Path) -> None:
    tf = pytest.importorskip("thermofeel")
    ds = xr.open_dataset(netcdf_dir / "era5_1995-07-14T12.nc")
    out = heat.humidex(ds["t2m"], ds["d2m"])
    ref = tf.calculate_humidex(ds["t2m"].values, ds["d2m"].values) - 273.15
    assert np.nanmax(np.abs(out.values - ref)) < 0.1  # 273.15 vs 273.16 and 0.5555 vs 5/9


def test_ahccd_monthly_spi_vs_climate_indices(netcdf_dir: Path) -> None:
    ci = pytest.importorskip("climate_indices.indices")
    compute = pytest.importorskip("climate_indices.compute")
    try:
        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    except ImportError:  # pragma: no cover
        pass
    ds = xr.open_dataset(netcdf_dir / "ahccd_1950-2013.nc")
    monthly = ds["pr"].resample(time="MS").sum(skipna=False)  # mm per month, 1950-2013 (cftime noleap)
    p = monthly.transpose("location", "time").values.astype(np.float64)
    worst = 0.0
    for dist, cd in (("gamma", ci.Distribution.gamma), ("pearson3", ci.Distribution.pearson)):
        for scale in (1, 3, 6, 12):
            ours = drought.spi(p, scale, distribution=dist, start_year=1950)
            for k in range(p.shape[0]):
                ref = ci.spi(p[k], scale, cd, 1950, 1981, 2010, compute.Periodicity.monthly)
                assert np.array_equal(np.isnan(ours[k]), np.isnan(ref))
                worst = max(worst, float(np.nanmax(np.abs(ours[k] - ref))))
    assert worst < 0.01  # measured ~1e-10
