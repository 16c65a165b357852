"""Issue 18, point 7: ``ews climatology build`` marks arid stations and the service uses their drought mode (SPI
zeros at the centre of the zero mass, MCI with MI30 standardized), labelled in the summary and the SPI product."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from tests.unit.indices.test_arid_drought import dunhuang
from warning.climatology import Climatology, DailySeries, _add_mci_gamma, _fit_mci, _StationFits
from warning.drought_products import spi_product


def fitted(scale_precip: float) -> tuple[_StationFits, dict[str, Any]]:
    days, _, precip, _ = dunhuang()
    doy = (days - days.astype("datetime64[Y]")).astype(int)
    tmean = 9.5 + 16 * np.sin(2 * np.pi * (doy - 105) / 365.25)
    s = DailySeries("52418", days, tmean + 7.5, tmean - 7.5, precip * scale_precip)
    fits = _StationFits.empty(1, 1, 3)
    info: dict[str, Any] = {"days_precip": days.size}
    _fit_mci(fits, 0, s, (1981, 2010), 10, info)
    return fits, info


def test_an_arid_station_is_labelled_and_gets_the_arid_mci() -> None:
    fits, info = fitted(1.0)
    assert fits.arid[0] and info["annual_precip_mm"] < 200 and info["drought_mode"].startswith("arid")
    ds = xr.Dataset(coords={"station": np.array(["52418"], dtype=object)})
    _add_mci_gamma(ds, fits.mci_gamma, fits.mci_mi30, fits.arid)
    clim = Climatology(dataset=ds)
    params = clim.mci_params("52418")
    assert params is not None and params.shape == (4, 366, 3) and clim.spi_zeros("52418") == "center_of_mass"


def test_a_wetter_station_keeps_the_standard_mci() -> None:
    fits, info = fitted(10.0)  # ~430 mm a year
    assert not fits.arid[0] and info["drought_mode"].startswith("standard")
    ds = xr.Dataset(coords={"station": np.array(["52418"], dtype=object)})
    _add_mci_gamma(ds, fits.mci_gamma, fits.mci_mi30, fits.arid)
    clim = Climatology(dataset=ds)
    params = clim.mci_params("52418")
    assert params is not None and params.shape == (3, 366, 3) and clim.spi_zeros("52418") == "classic"


def test_the_spi_product_says_which_zero_handling_it_used() -> None:
    class Clim:
        def spi(self, sid: str, totals: list[float], month: int) -> dict[int, float]:
            return {1: -0.3}

        def spi_zeros(self, sid: str) -> str:
            return "center_of_mass"
    days = {f"2026-06-{d:02d}": 0.0 for d in range(1, 31)}
    rows = spi_product({"52418": {"pd": days}}, Clim(), {"52418": "Dunhuang"})
    assert rows[0]["spi_zeros"] == "center_of_mass" and rows[0]["spi1"] == -0.3
