"""indices.drought against climate_indices (same input and arguments) and its fixtures in tests/data/spi_cases."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from indices import drought

START = 1895
# the reference library warns about short calibrations / poor fits and divides by zero internally
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:climate_indices"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning:climate_indices"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning:scipy"),
]


@pytest.fixture(scope="module")
def ci():  # type: ignore[no-untyped-def]
    """climate_indices (a dev extra), with its structured info logging silenced."""
    mod = pytest.importorskip("climate_indices.indices")
    compute = pytest.importorskip("climate_indices.compute")
    eto = pytest.importorskip("climate_indices.eto")
    try:
        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    except ImportError:  # pragma: no cover
        pass
    return mod, compute, eto


@pytest.fixture(scope="module")
def monthly(spi_cases_dir: Path) -> dict[str, np.ndarray]:
    fx = spi_cases_dir / "fixture"
    return {
        "P": np.load(fx / "precips_mm_monthly.npy").ravel(),
        "PET": np.load(fx / "pet_thornthwaite.npy").ravel(),
        "T": np.load(fx / "temp_celsius.npy").ravel(),
    }


# ------------------------------------------------------------------------------------------------ SPI
@pytest.mark.parametrize(
    ("name", "sub", "scale", "dist", "cal"),
    [
        ("spi_01_gamma", "fixture", 1, "gamma", (1895, 2017)),
        ("spi_06_gamma", "fixture", 6, "gamma", (1895, 2017)),
        ("spi_06_pearson3", "fixture", 6, "pearson3", (1981, 2010)),
        ("spi_03_gamma_cal1981-2010", "derived", 3, "gamma", (1981, 2010)),
        ("spi_03_pearson3_cal1981-2010", "derived", 3, "pearson3", (1981, 2010)),
        ("spi_01_pearson3_cal1981-2010", "derived", 1, "pearson3", (1981, 2010)),
    ],
)
def test_spi_fixtures(spi_cases_dir: Path, monthly: dict[str, np.ndarray], name: str, sub: str, scale: int,
                      dist: str, cal: tuple[int, int]) -> None:
    exp = np.load(spi_cases_dir / sub / f"{name}.npy")
    got = drought.spi(monthly["P"], scale, distribution=dist, start_year=START, calibration=cal)
    assert np.array_equal(np.isnan(got), np.isnan(exp))
    assert np.nanmax(np.abs(got - exp)) < 1e-6  # measured <= 1.3e-11


@pytest.mark.parametrize("scale", [1, 3, 6, 12])
@pytest.mark.parametrize("dist", ["gamma", "pearson3"])
def test_spi_vs_climate_indices(ci, monthly: dict[str, np.ndarray], scale: int, dist: str) -> None:  # type: ignore[no-untyped-def]
    mod, compute, _ = ci
    cd = mod.Distribution.gamma if dist == "gamma" else mod.Distribution.pearson
    ref = mod.spi(monthly["P"], scale, cd, START, 1981, 2010, compute.Periodicity.monthly)
    got = drought.spi(monthly["P"], scale, distribution=dist, start_year=START, calibration=(1981, 2010))
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.nanmax(np.abs(got - ref)) < 0.01  # measured <= 2.7e-11


@pytest.mark.parametrize("scale", [1, 3, 6, 12])
@pytest.mark.parametrize("dist", ["gamma", "pearson3"])
def test_spi_vs_climate_indices_synthetic_arid(ci, scale: int, dist: str) -> None:  # type: ignore[no-untyped-def]
    """Same comparison on a synthetic arid record with dry months (no fixture needed)."""
    mod, compute, _ = ci
    rng = np.random.default_rng(21)
    p = rng.gamma(0.8, 15.0, 50 * 12) * (rng.random(50 * 12) > 0.25)  # ~25 % zero months
    p[100:103] = np.nan
    cd = mod.Distribution.gamma if dist == "gamma" else mod.Distribution.pearson
    ref = mod.spi(p, scale, cd, 1971, 1981, 2010, compute.Periodicity.monthly)
    got = drought.spi(p, scale, distribution=dist, start_year=1971, calibration=(1981, 2010))
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.nanmax(np.abs(got - ref)) < 0.01


@pytest.mark.parametrize("scale", [1, 30])
@pytest.mark.parametrize("dist", ["gamma", "pearson3"])
def test_spi_daily_many_zeros_vs_climate_indices(ci, spi_cases_dir: Path, scale: int, dist: str) -> None:  # type: ignore[no-untyped-def]
    mod, compute, _ = ci
    p = np.load(spi_cases_dir / "fixture" / "precips_mm_daily.npy").ravel()  # 93.6 % zeros
    cd = mod.Distribution.gamma if dist == "gamma" else mod.Distribution.pearson
    ref = mod.spi(p, scale, cd, 1998, 1998, 2016, compute.Periodicity.daily)
    got = drought.spi(p, scale, distribution=dist, start_year=1998, calibration=(1998, 2016),
                      periodicity="daily")
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.nanmax(np.abs(got - ref)) < 0.01  # measured <= 3.3e-12


def test_spi_vectorised_and_dataarray(monthly: dict[str, np.ndarray]) -> None:
    p = monthly["P"]
    block = np.stack([p, p * 2.0, p[::-1].copy()])[None]  # (1, 3, time): scale-invariance and leading dims
    out = drought.spi(block, 3, start_year=START)
    single = drought.spi(p, 3, start_year=START)
    assert out.shape == block.shape
    np.testing.assert_allclose(out[0, 0], single, equal_nan=True)
    np.testing.assert_allclose(out[0, 1], single, atol=1e-9, equal_nan=True)
    time = xr.date_range(f"{START}-01-01", periods=p.size, freq="MS")
    da = xr.DataArray(p, dims="time", coords={"time": time}, attrs={"units": "mm"})
    res = drought.spi(da, 3)  # start_year from the time coordinate
    assert isinstance(res, xr.DataArray) and res.attrs["units"] == "1" and "McKee" in res.attrs["references"]
    np.testing.assert_allclose(res.values, single, equal_nan=True)


def test_spi_errors() -> None:
    p = np.ones(48)
    with pytest.raises(ValueError, match="distribution"):
        drought.spi(p, 1, distribution="weibull", start_year=2000)
    with pytest.raises(ValueError, match="start_year"):
        drought.spi(p, 1)
    with pytest.raises(ValueError, match="scale"):
        drought.spi(p, 0, start_year=2000)
    with pytest.raises(ValueError, match="periodicity"):
        drought.spi(p, 1, start_year=2000, periodicity="weekly")
    with pytest.raises(ValueError, match="wrong units"):
        drought.spi(-p, 1, start_year=2000)
    with pytest.raises(ValueError, match="calibration"):
        drought.spi(p, 1, start_year=2000, calibration=(2010, 2000))
    with pytest.raises(ValueError, match="time axis"):
        drought.spi(np.empty((3, 0)), 1, start_year=2000)


@settings(max_examples=25, deadline=None, database=None)
@given(st.lists(st.one_of(st.floats(0.0, 500.0), st.just(float("nan")), st.just(0.0)), min_size=36,
                max_size=120),
       st.sampled_from([1, 3, 6]), st.sampled_from(["gamma", "pearson3"]))
def test_spi_properties(values: list[float], scale: int, dist: str) -> None:
    p = np.array(values)
    z = drought.spi(p, scale, distribution=dist, start_year=2000, calibration=(2000, 2009))
    assert z.shape == p.shape
    finite = z[np.isfinite(z)]
    assert (np.abs(finite) <= drought.SPI_CLIP).all()
    assert np.isnan(z[np.isnan(p)]).all()  # NaN in -> NaN out
    assert np.isnan(z[: scale - 1]).all()


# ------------------------------------------------------------------------------------------------ SPEI
@pytest.mark.parametrize(
    ("name", "sub", "scale", "dist", "tol"),
    [
        ("spei_06_gamma", "fixture", 6, "gamma", 1e-2),  # fixture stored rounded to ~3 decimals
        ("spei_06_pearson3", "fixture", 6, "pearson3", 1e-2),
        ("spei_03_gamma_cal1895-2017", "derived", 3, "gamma", 1e-6),
        ("spei_03_pearson3_cal1895-2017", "derived", 3, "pearson3", 1e-6),
    ],
)
def test_spei_fixtures(spi_cases_dir: Path, monthly: dict[str, np.ndarray], name: str, sub: str, scale: int,
                       dist: str, tol: float) -> None:
    exp = np.load(spi_cases_dir / sub / f"{name}.npy")
    got = drought.spei(monthly["P"], monthly["PET"], scale, distribution=dist, start_year=START,
                       calibration=(1895, 2017))
    assert np.array_equal(np.isnan(got), np.isnan(exp))
    assert np.nanmax(np.abs(got - exp)) < tol


@pytest.mark.parametrize("scale", [1, 3, 6, 12])
def test_spei_loglogistic_vs_climate_indices(ci, monthly: dict[str, np.ndarray], scale: int) -> None:  # type: ignore[no-untyped-def]
    """Named reference: climate_indices Distribution.loglogistic (GLO by ub-PWM L-moments = R SPEI >= 1.7)."""
    mod, compute, _ = ci
    if not hasattr(mod.Distribution, "loglogistic"):
        pytest.skip("climate_indices without loglogistic SPEI")
    ref = mod.spei(monthly["P"], monthly["PET"], scale, mod.Distribution.loglogistic,
                   compute.Periodicity.monthly, START, 1981, 2010)
    got = drought.spei(monthly["P"], monthly["PET"], scale, start_year=START)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.nanmax(np.abs(got - ref)) < 0.01  # measured <= 7.1e-13
    # original Vicente-Serrano (2010) plotting-position PWMs: same family, different estimator
    pp = drought.spei(monthly["P"], monthly["PET"], scale, start_year=START, pwm="plotting")
    assert np.nanmedian(np.abs(pp - ref)) < 0.1


def test_spei_shape_errors(monthly: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="broadcast"):
        drought.spei(np.ones(24), np.ones(12), 1, start_year=2000)
    with pytest.raises(ValueError, match="pwm"):
        drought.spei(np.ones(24), np.ones(24), 1, start_year=2000, pwm="moments")


# ------------------------------------------------------------------------------------------------ PET
def test_pet_thornthwaite_fixture_and_reference(ci, monthly: dict[str, np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    _, _, eto = ci
    got = drought.pet_thornthwaite(monthly["T"], 25.2292, START)
    ref = eto.eto_thornthwaite(monthly["T"], 25.2292, START)
    rel = np.abs(got - ref) / np.where(ref > 0, ref, np.nan)
    assert np.nanmax(rel) < 0.01  # measured 5e-16
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, monthly["PET"], atol=1e-3, equal_nan=True)  # upstream fixture
    both = drought.pet_thornthwaite(np.stack([monthly["T"], monthly["T"]]), np.array([25.2292, 40.0]), START)
    np.testing.assert_allclose(both[1], eto.eto_thornthwaite(monthly["T"], 40.0, START), rtol=1e-9,
                               equal_nan=True)


@pytest.mark.parametrize("lat", [25.0, 36.05, 60.0, -30.0])
def test_pet_hargreaves_vs_climate_indices(ci, lat: float) -> None:  # type: ignore[no-untyped-def]
    _, _, eto = ci
    rng = np.random.default_rng(0)
    dates = np.arange(np.datetime64("2000-01-01"), np.datetime64("2001-01-01"))  # leap year: same day numbers
    tmin = rng.uniform(-5.0, 20.0, dates.size)
    tmax = tmin + rng.uniform(2.0, 15.0, dates.size)
    ref = eto.eto_hargreaves(tmin, tmax, (tmin + tmax) / 2.0, lat)
    got = drought.pet_hargreaves(tmin, tmax, lat, dates)
    assert np.nanmax(np.abs(got - ref) / ref) < 0.01  # measured 0.0


def test_pet_hargreaves_fao56_example_and_errors() -> None:
    # FAO-56 Example 8: 20 S, 3 September (J = 246) -> Ra = 32.2 MJ m-2 d-1
    assert float(drought.extraterrestrial_radiation(-20.0, 246.0)) == pytest.approx(32.2, abs=0.05)
    dates = np.array(["2021-09-03"], dtype="datetime64[D]")
    out = drought.pet_hargreaves(np.array([10.0, 12.0]), np.array([25.0, 11.0]), 36.0, np.repeat(dates, 2))
    assert np.isfinite(out[0]) and np.isnan(out[1])  # tmax < tmin -> NaN
    with pytest.raises(ValueError, match="dates"):
        drought.pet_hargreaves(np.ones(3), np.ones(3) * 5, 36.0)
    with pytest.raises(ValueError, match="latitude"):
        drought.pet_hargreaves(np.ones(1), np.ones(1) * 5, 120.0, dates)


# ------------------------------------------------------------------------------------------------ grades
def test_drought_grade() -> None:
    x = np.array([0.0, -0.5, -0.51, -1.0, -1.2, -1.5, -1.9, -2.0, -3.0, np.nan])
    np.testing.assert_array_equal(drought.drought_grade(x), [1, 2, 2, 3, 3, 4, 4, 5, 5, np.nan])
    np.testing.assert_array_equal(drought.drought_grade(np.array([-0.3, -0.4, -0.7, -0.9, -0.96]), "mi"),
                                  [1, 2, 3, 4, 5])
    with pytest.raises(ValueError):
        drought.drought_grade(x, "pdsi")


# ------------------------------------------------------------------------------------------------ MCI
@pytest.fixture(scope="module")
def daily_case() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    dates = np.arange(np.datetime64("1981-01-01"), np.datetime64("2012-01-01"))
    n = dates.size
    p = rng.gamma(0.3, 8.0, (2, n)) * (rng.random((2, n)) < 0.25)
    pet = np.clip(3.0 + 2.0 * np.sin(2 * np.pi * (np.arange(n) / 365.25 - 0.3)), 0.1, None) * np.ones((2, 1))
    return {"dates": dates, "p": p, "pet": pet}


def test_standardize_daily_equals_spi_on_366_day_layout(daily_case: dict[str, np.ndarray]) -> None:
    """standardize_daily(dates) == spi(periodicity="daily") on the climate_indices 366-day layout (which
    is itself checked against climate_indices above)."""
    from indices._blocks import rolling_sum

    dates, p = daily_case["dates"], daily_case["p"]
    s90 = rolling_sum(p, 90)
    z = drought.standardize_daily(s90, dates)
    yr, slot, _ = drought._daily_slots(dates, dates.size)
    layout = np.full((2, int(yr[-1]) + 1, 366), np.nan)
    layout[..., yr, slot] = s90
    ref = drought.spi(layout.reshape(2, -1), 1, start_year=1981, periodicity="daily").reshape(layout.shape)
    np.testing.assert_allclose(z, ref[..., yr, slot], atol=1e-12, equal_nan=True)


def test_mci_recomposes_from_hand_checked_terms(daily_case: dict[str, np.ndarray]) -> None:
    from indices._blocks import rolling_sum

    dates, p, pet = daily_case["dates"], daily_case["p"], daily_case["pet"]
    r = drought.mci(p, pet, dates, return_components=True)
    a, b, c, d = drought.MCI_WEIGHTS["north"]
    expect = r["ka"] * (a * r["spiw60"] + b * r["mi30"] + c * r["spi90"] + d * r["spi150"])
    expect = np.where(r["ka"] == 0, 0.0, expect)
    ok = np.isfinite(expect) & (np.arange(dates.size) >= 149)  # SPI150 needs 150 days
    np.testing.assert_allclose(r["mci"][ok], expect[ok], atol=1e-12)
    assert np.isnan(r["mci"][:, :149]).all()
    # MI30 by hand on one day; WAP weights 0.85^n
    t = 5000
    p30, e30 = p[0, t - 29:t + 1].sum(), pet[0, t - 29:t + 1].sum()
    assert r["mi30"][0, t] == pytest.approx((p30 - e30) / e30)
    wap = drought.trailing_weighted_sum_days(p, 0.85, 60)
    assert wap[1, t] == pytest.approx(sum(0.85**k * p[1, t - k] for k in range(60)))
    np.testing.assert_allclose(r["spi90"], drought.standardize_daily(rolling_sum(p, 90), dates), equal_nan=True)
    # Ka = 0 from November to March: MCI = 0; first 149 days lack SPI150
    month = dates.astype("datetime64[M]").astype(int) % 12
    winter = np.isin(month, [0, 1, 2, 10, 11]) & (np.arange(dates.size) >= 149)
    assert (r["mci"][:, winter] == 0.0).all()
    summer = (month == 6) & (np.arange(dates.size) >= 149)
    assert np.isfinite(r["mci"][:, summer]).all() and (np.abs(r["mci"][:, summer]) > 0).any()


def test_mci_dry_spell_is_drought(daily_case: dict[str, np.ndarray]) -> None:
    dates, p, pet = daily_case["dates"], daily_case["p"].copy(), daily_case["pet"]
    last = dates.size - 1
    p[:, last - 120:] = 0.0  # no rain from early September to year end, after a normal record
    out = drought.mci(p, pet, dates)
    sept = last - 100  # late September, Ka = 0.9
    assert out[0, sept] < -1.0
    assert drought.mci_class(out[:, sept])[0] in ("moderate", "severe", "extreme")


def test_mci_class_and_errors() -> None:
    labels = drought.mci_class(np.array([0.2, -0.7, -1.2, -1.7, -2.5, np.nan]))
    assert list(labels) == ["none", "light", "moderate", "severe", "extreme", ""]
    da = drought.mci_class(xr.DataArray([-0.6], dims="station"))
    assert isinstance(da, xr.DataArray) and da.values[0] == "light"
    with pytest.raises(ValueError, match="dates"):
        drought.mci(np.ones(200), np.ones(200))
    with pytest.raises(ValueError, match="ka_monthly"):
        drought.mci(np.ones(3), np.ones(3), np.arange(np.datetime64("2000-01-01"), np.datetime64("2000-01-04")),
                    ka_monthly=(1.0,))


# ------------------------------------------------------------------------------------- streaming params
@pytest.mark.parametrize("dist", ["gamma", "pearson3"])
def test_spi_from_stored_params_equals_full_computation(dist: str) -> None:
    rng = np.random.default_rng(11)
    p = rng.gamma(1.2, 30.0, (50, 31 * 12 + 5))
    p[3, :] = np.where(rng.random(p.shape[1]) < 0.3, 0.0, p[3, :])  # zeros: probability-of-zero path
    full = drought.spi(p, 3, distribution=dist, start_year=1981)
    params = drought.spi_fit(p[:, :-1], 3, distribution=dist, start_year=1981)
    assert all(v.shape == (50, 12) for v in params.values())
    new = drought.spi_from_params(p[:, -3:].sum(axis=-1), (p.shape[1] - 1) % 12, params, distribution=dist)
    np.testing.assert_allclose(new, full[:, -1], atol=1e-9)
    with pytest.raises(ValueError, match="params lacks"):
        drought.spi_from_params(np.ones(50), 0, params, distribution="pearson3" if dist == "gamma" else "gamma")


def test_dataarray_dim_order_and_alignment() -> None:
    from indices import heat

    rng = np.random.default_rng(12)
    t = xr.DataArray(rng.uniform(28, 40, (3, 4)), dims=("station", "time"), attrs={"units": "degC"})
    rh = xr.DataArray(rng.uniform(30, 90, (4, 3)), dims=("time", "station"), attrs={"units": "%"})
    out = heat.heat_index(t, rh)
    np.testing.assert_allclose(out.transpose("station", "time").values,
                               heat.heat_index(t.values, rh.values.T))
    shifted = rh.assign_coords(time=np.arange(1, 5))
    with pytest.raises(ValueError, match="aligned"):
        heat.heat_index(t.assign_coords(time=np.arange(4)), shifted)
    # time-first DataArray: SPI still runs along time
    time = xr.date_range("1981-01-01", periods=120, freq="MS")
    p = xr.DataArray(rng.gamma(1.0, 20.0, (120, 2)), dims=("time", "station"), coords={"time": time})
    res = drought.spi(p, 1)
    np.testing.assert_allclose(res.sel(station=1).values, drought.spi(p.values[:, 1], 1, start_year=1981),
                               equal_nan=True)


@settings(max_examples=30, deadline=None, database=None)
@given(st.sampled_from([np.inf, -np.inf]), st.integers(0, 47))
def test_infinite_input_is_rejected(bad: float, pos: int) -> None:
    p = np.full(48, 10.0)
    p[pos] = bad
    with pytest.raises(ValueError):
        drought.spi(p, 1, start_year=2000)


def test_spi_dataarray_placed_by_dates() -> None:
    from indices._blocks import rolling_sum

    rng = np.random.default_rng(31)
    p = rng.gamma(1.0, 25.0, 40 * 12 - 6)
    time = xr.date_range("1981-07-01", periods=p.size, freq="MS")  # starts in July
    da = xr.DataArray(p, dims="time", coords={"time": time}, attrs={"units": "mm"})
    padded = np.concatenate([np.full(6, np.nan), p])  # the same record laid out from January
    ref = drought.spi(padded, 3, start_year=1981)[6:]
    np.testing.assert_allclose(drought.spi(da, 3).values, ref, equal_nan=True)
    with pytest.raises(ValueError, match="consecutive"):
        drought.spi(da.isel(time=[0, 1, 3, 4]), 1)
    with pytest.raises(ValueError, match="contradicts"):
        drought.spi(da, 1, start_year=1990)
    # daily with real dates: Feb 29 exists only in leap years, rolling sums over real days
    days = xr.date_range("1981-01-01", "2012-12-31", freq="D")
    pd_ = rng.gamma(0.3, 8.0, days.size) * (rng.random(days.size) < 0.3)
    dd = xr.DataArray(pd_, dims="time", coords={"time": days})
    z = drought.spi(dd, 30, periodicity="daily")
    np.testing.assert_allclose(z.values, drought.standardize_daily(rolling_sum(pd_, 30), days.values),
                               equal_nan=True)
