"""Issue 18, point 7: SPI exposes its zero handling (``center_of_mass``) and MCI's arid behaviour is checked in the
station's own calibration climate: in 30 synthetic normal years of a Dunhuang-like climate (about 43 mm a year,
PET ~1 m) drought days must be about as frequent as the grades imply for a standardized index (light or worse:
P(z <= -0.5) = 30.9 %; orange, MCI <= -1.5: 6.7 %)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import special

from indices.drought import (
    arid_mci_params,
    daily_slot,
    gamma_transform,
    mci,
    mci_fit,
    mci_from_params,
    mi30_fit,
    pet_hargreaves,
    spi,
)

CAL = (1981, 2010)


def dunhuang(years: int = 30, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Daily (days, month, precipitation, Hargreaves PET) of a Dunhuang-like climate: monthly means and wet-day
    counts after the station normals (~43 mm a year, mostly June-August), gamma amounts, a seasonal temperature
    cycle with AR(1) noise."""
    rng = np.random.default_rng(seed)
    days = np.arange(np.datetime64("1981-01-01"), np.datetime64(f"{1981 + years}-01-01"))
    month = days.astype("datetime64[M]").astype(int) % 12
    mm = np.array([0.9, 0.8, 2.0, 2.5, 3.8, 9.0, 13.0, 7.0, 2.0, 0.8, 0.9, 0.6])
    wet = np.array([1, 1, 1.5, 2, 2.5, 4, 5, 3.5, 1.5, 0.8, 0.8, 0.8])
    dim = np.array([31, 28.25, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    rain = rng.random(days.size) < (wet / dim)[month]
    precip = np.where(rain, np.maximum(rng.gamma(0.6, (mm / wet)[month] / 0.6), 0.1), 0.0)
    doy = (days - days.astype("datetime64[Y]")).astype(int)
    noise, e = np.zeros(days.size), rng.normal(0, 2.0, days.size)
    for i in range(1, days.size):
        noise[i] = 0.7 * noise[i - 1] + e[i]
    tmean = 9.5 + 16 * np.sin(2 * np.pi * (doy - 105) / 365.25) + noise
    pet = np.asarray(pet_hargreaves(tmean - 7.5, tmean + 7.5, 40.15, days))
    return days, month + 1, precip, pet


@pytest.fixture(scope="module")
def climate() -> dict[str, Any]:
    days, months, precip, pet = dunhuang()
    return {"days": days, "months": months, "precip": precip, "pet": pet,
            "before": np.asarray(mci(precip, pet, days, calibration=CAL)),
            "after": np.asarray(mci(precip, pet, days, calibration=CAL, zeros="center_of_mass", mi="standardized"))}


def frequencies(m: np.ndarray, months: np.ndarray) -> tuple[float, float]:
    season = ~np.isnan(m) & (months >= 4) & (months <= 10)
    return float(np.mean(m[season] <= -0.5)), float(np.mean(m[season] <= -1.5))


def test_standard_mci_overstates_drought_in_an_arid_climate(climate: dict[str, Any]) -> None:
    light, orange = frequencies(climate["before"], climate["months"])
    assert light > 0.40  # measured 43.5 % light drought or worse in Apr-Oct of normal years (normal: 30.9 %)
    assert orange > 0.067  # measured 7.3 %


def test_arid_mci_is_as_rare_as_its_grades_imply(climate: dict[str, Any]) -> None:
    light, orange = frequencies(climate["after"], climate["months"])
    normal_light, normal_orange = special.ndtr(-0.5), special.ndtr(-1.5)  # 30.9 %, 6.7 %
    assert abs(light - normal_light) < 0.05  # measured 31.3 %
    assert normal_orange / 2 < orange < normal_orange * 1.25  # measured 6.1 %


def test_arid_mci_from_params_equals_the_whole_record_kernel(climate: dict[str, Any]) -> None:
    p, e, d = climate["precip"], climate["pet"], climate["days"]
    params = arid_mci_params(mci_fit(p, d, calibration=CAL), mi30_fit(p, e, d, calibration=CAL))
    assert params.shape == (4, 366, 3)
    for i in (400, 2000, 5000, 9000, 10900):
        got = mci_from_params(p[i - 149:i + 1], e[i - 29:i + 1], int(climate["months"][i]), daily_slot(d[i]),
                              params)
        assert float(got) == pytest.approx(float(climate["after"][i]), abs=1e-9)


def test_zero_handling_center_of_mass() -> None:
    one = np.array([1.0])
    zero = np.zeros((1, 1))
    classic = float(gamma_transform(zero, one, one, np.array([0.8]))[0, 0])
    centre = float(gamma_transform(zero, one, one, np.array([0.8]), zeros="center_of_mass")[0, 0])
    assert classic == pytest.approx(special.ndtri(0.8)) and classic > 0.84  # a rainless month reads wet
    assert centre == pytest.approx(special.ndtri(0.4))  # the middle of the zero mass: -0.25
    with pytest.raises(ValueError, match="zeros must be one of"):
        gamma_transform(zero, one, one, np.array([0.8]), zeros="median")


def test_spi_of_rainless_cool_season_months(climate: dict[str, Any]) -> None:
    d, p = climate["days"], climate["precip"]
    months, inv = np.unique(d.astype("datetime64[M]"), return_inverse=True)
    total = np.bincount(inv, weights=p)
    cool = np.isin(months.astype(int) % 12 + 1, [11, 12, 1, 2, 3]) & (total == 0)
    classic = np.asarray(spi(total, 1, start_year=1981, calibration=CAL))[cool]
    centre = np.asarray(spi(total, 1, start_year=1981, calibration=CAL, zeros="center_of_mass"))[cool]
    assert (centre <= 0).all() and (centre < classic).all()
    assert classic.max() > 0  # classic: some rainless months score above normal
