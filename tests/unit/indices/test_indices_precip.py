"""indices.precip against pandas/xclim, a brute-force reference and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from indices import precip
from warning.rule_params import rainstorm_criteria
from warning.rules import load_rules

H = np.timedelta64(1, "h")
RAINSTORM = rainstorm_criteria(load_rules())  # the thresholds' one place: warning/data/rules.toml
T0 = np.datetime64("2025-07-20T00:00")


def _brute(times: np.ndarray, p: np.ndarray, period_h: np.ndarray, window_h: float) -> np.ndarray:
    """Direct transcription of the definition, one report at a time."""
    out = np.full(p.size, np.nan)
    w = np.timedelta64(int(window_h * 3600), "s")
    for j in range(p.size):
        start = times[j] - w
        inside = (times > start) & (times <= times[j])
        covered = sum(int(period_h[k] * 3600) for k in np.flatnonzero(inside))
        first = np.flatnonzero(inside)[0]
        straddle = times[first] - np.timedelta64(int(period_h[first] * 3600), "s") < start
        if covered == int(window_h * 3600) and not straddle and not np.isnan(p[inside]).any():
            out[j] = p[inside].sum()
    return out


def test_hourly_complete_series_matches_pandas_rolling() -> None:
    rng = np.random.default_rng(0)
    p = rng.gamma(0.3, 4.0, 200) * (rng.random(200) < 0.3)
    times = T0 + np.arange(200) * H
    s = pd.Series(p, index=pd.DatetimeIndex(times))
    for w in precip.ACCUMULATION_WINDOWS_H:
        ours = precip.rolling_accumulation(p, w, times=times)
        ref = s.rolling(w, min_periods=w).sum().to_numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-9, equal_nan=True)


def test_gaps_are_missing_not_zero() -> None:
    times = T0 + np.array([1, 2, 3, 5, 6, 7]) * H  # report for hour 4 absent
    p = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    acc3 = precip.rolling_accumulation(p, 3, times=times)
    np.testing.assert_array_equal(acc3, [np.nan, np.nan, 6.0, np.nan, np.nan, 15.0])
    p2 = p.copy()
    p2[1] = np.nan  # a reported-but-missing value is missing too
    np.testing.assert_array_equal(precip.rolling_accumulation(p2, 1, times=times), p2)
    assert np.isnan(precip.rolling_accumulation(p2, 3, times=times)[2])


def test_longer_report_periods_are_not_split() -> None:
    times = T0 + np.array([3, 6, 9, 12]) * H  # 3-hourly SYNOP totals
    p = np.array([10.0, 20.0, 0.0, 30.0])
    np.testing.assert_array_equal(precip.rolling_accumulation(p, 1, times=times, period_h=3.0), [np.nan] * 4)
    np.testing.assert_array_equal(precip.rolling_accumulation(p, 3, times=times, period_h=3.0), p)
    np.testing.assert_array_equal(precip.rolling_accumulation(p, 6, times=times, period_h=3.0),
                                  [np.nan, 30.0, 20.0, 30.0])
    # mixed periods: a 6 h report followed by hourly ones
    times = T0 + np.array([6, 7, 8, 9]) * H
    per = np.array([6.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(precip.rolling_accumulation(np.array([6.0, 1, 1, 1]), 9, times=times,
                                                              period_h=per), [np.nan] * 3 + [9.0])


def test_per_series_times_with_nat_padding_and_dataarray() -> None:
    times = np.array([T0 + np.arange(4) * H, np.concatenate([T0 + np.arange(3) * H, [np.datetime64("NaT")]])])
    p = np.array([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, np.nan]])
    out = precip.rolling_accumulation(p, 3, times=times)
    np.testing.assert_array_equal(out, [[np.nan, np.nan, 3.0, 3.0], [np.nan, np.nan, 6.0, np.nan]])
    da = xr.DataArray(p[0], dims="time", coords={"time": T0 + np.arange(4) * H}, attrs={"units": "mm"})
    res = precip.rolling_accumulations(da, (1, 3))
    assert isinstance(res[3], xr.DataArray) and res[3].attrs["units"] == "mm"
    np.testing.assert_array_equal(res[3].values, [np.nan, np.nan, 3.0, 3.0])


def test_rolling_accumulation_errors() -> None:
    times = T0 + np.array([1, 1, 2]) * H
    with pytest.raises(ValueError, match="increasing"):
        precip.rolling_accumulation(np.ones(3), 3, times=times)
    with pytest.raises(ValueError, match="overlap"):
        precip.rolling_accumulation(np.ones(2), 3, times=T0 + np.array([1, 2]) * H, period_h=3.0)
    with pytest.raises(ValueError, match="times is required"):
        precip.rolling_accumulation(np.ones(2), 3)
    with pytest.raises(ValueError, match="wrong units"):
        precip.rolling_accumulation(-np.ones(2), 3, times=T0 + np.arange(2) * H)
    with pytest.raises(ValueError, match="shape"):
        precip.rolling_accumulation(np.ones(3), 3, times=T0 + np.arange(2) * H)


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.one_of(st.floats(0, 30), st.just(float("nan")))),
                min_size=1, max_size=25),
       st.sampled_from([1, 3, 6, 12, 24]))
def test_rolling_accumulation_matches_brute_force(reports: list[tuple[int, float]], window: int) -> None:
    gaps = np.array([g for g, _ in reports])
    p = np.array([v for _, v in reports])
    # each report covers 1 h; a gap of g hours between report ends leaves g-1 uncovered hours
    times = T0 + np.cumsum(gaps) * H
    per = np.ones(p.size)
    ours = precip.rolling_accumulation(p, window, times=times, period_h=per)
    np.testing.assert_allclose(ours, _brute(times, p, per, window), atol=1e-9, equal_nan=True)


def test_n_day_total_vs_pandas_and_xclim() -> None:
    rng = np.random.default_rng(1)
    p = rng.gamma(0.4, 5.0, 365) * (rng.random(365) < 0.4)
    p[100] = np.nan
    ref = pd.Series(p).rolling(5, min_periods=5).sum().to_numpy()
    ours = precip.n_day_total(p, 5)
    np.testing.assert_allclose(ours, ref, atol=1e-9, equal_nan=True)
    xc = pytest.importorskip("xclim.indices")
    p2 = np.nan_to_num(p)
    time = xr.date_range("2001-01-01", periods=365, freq="D")
    pr = xr.DataArray(p2, dims="time", coords={"time": time}, attrs={"units": "mm/d"})
    rx5 = xc.max_n_day_precipitation_amount(pr, window=5, freq="YS")
    assert np.nanmax(precip.n_day_total(p2, 5)) == pytest.approx(float(rx5.values[0]), abs=1e-9)
    assert precip.n_day_total(np.zeros(10), 3)[-1] == 0.0


def test_api_window_form_vs_xclim() -> None:
    xc = pytest.importorskip("xclim.indices")
    rng = np.random.default_rng(2)
    p = rng.gamma(0.5, 6.0, 120) * (rng.random(120) < 0.5)
    time = xr.date_range("2001-01-01", periods=120, freq="D")
    pr = xr.DataArray(p, dims="time", coords={"time": time}, attrs={"units": "mm/d"})
    ref = xc.antecedent_precipitation_index(pr, window=7, p_exp=0.935)
    ours = precip.antecedent_precipitation_index(p, 0.935, window=7)
    np.testing.assert_allclose(ours, ref.values, atol=1e-9, equal_nan=True)


def test_api_recursive_forms() -> None:
    k = 0.9
    steady = precip.antecedent_precipitation_index(np.full(400, 5.0), k)
    assert steady[-1] == pytest.approx(5.0 / (1.0 - k))  # Kohler-Linsley identity P/(1-k)
    p = np.array([10.0, 0.0, 0.0, 5.0])
    np.testing.assert_allclose(precip.antecedent_precipitation_index(p, 0.5), [10.0, 5.0, 2.5, 6.25])
    np.testing.assert_allclose(precip.antecedent_precipitation_index(p, 0.5, initial_mm=4.0),
                               [12.0, 6.0, 3.0, 6.5])
    # Chinese Pa: state at the start of the day, capped at Wm
    pa = precip.antecedent_precipitation_index(p, 0.5, form="pa")
    np.testing.assert_allclose(pa, [0.0, 5.0, 2.5, 1.25])
    np.testing.assert_allclose(precip.antecedent_precipitation_index(p, 0.5, form="pa", capacity_mm=3.0),
                               [0.0, 3.0, 1.5, 0.75])
    with_nan = precip.antecedent_precipitation_index(np.array([1.0, np.nan, 1.0, 1.0]), 0.8)
    assert np.isnan(with_nan[1:]).all() and with_nan[0] == 1.0
    windowed = precip.antecedent_precipitation_index(np.array([1.0, np.nan, 1.0, 1.0, 1.0]), 0.8, window=2)
    np.testing.assert_allclose(windowed, [np.nan, np.nan, np.nan, 1.8, 1.8])
    with pytest.raises(ValueError):
        precip.antecedent_precipitation_index(p, 1.2)


def test_api_leading_dims_and_dataarray() -> None:
    p = np.tile(np.array([10.0, 0.0, 0.0, 5.0]), (3, 2, 1))
    out = precip.antecedent_precipitation_index(p, 0.5)
    assert out.shape == (3, 2, 4)
    np.testing.assert_allclose(out[2, 1], [10.0, 5.0, 2.5, 6.25])
    da = xr.DataArray(p, dims=("a", "b", "time"))
    res = precip.antecedent_precipitation_index(da, 0.5)
    assert isinstance(res, xr.DataArray) and "Kohler" in res.attrs["references"]


def test_rainstorm_signal_level() -> None:
    acc = {3: np.array([10.0, 55.0, 120.0, np.nan, np.nan]), 6: np.array([20.0, 60.0, 130.0, 52.0, np.nan]),
           12: np.array([51.0, 60.0, 130.0, 60.0, np.nan])}
    np.testing.assert_array_equal(precip.rainstorm_signal_level(acc, RAINSTORM), [1, 3, 4, 2, np.nan])
    # the criteria are parameters: a table with a lower red threshold gives red at 55 mm in 3 h
    lower_red = {**RAINSTORM, "red": (3, 55.0)}
    np.testing.assert_array_equal(precip.rainstorm_signal_level(acc, lower_red), [1, 4, 4, 2, np.nan])
    with pytest.raises(ValueError, match="lacks windows"):
        precip.rainstorm_signal_level({3: acc[3]}, RAINSTORM)
    with pytest.raises(ValueError, match="unknown level"):
        precip.rainstorm_signal_level(acc, {"purple": (3, 1.0)})


def test_rainstorm_signal_level_dataarray() -> None:
    times = T0 + np.arange(13) * H
    da = xr.DataArray(np.r_[np.zeros(10), 20.0, 20.0, 20.0], dims="time", coords={"time": times},
                      attrs={"units": "mm"})
    acc = precip.rolling_accumulations(da, (3, 6, 12))
    level = precip.rainstorm_signal_level(acc, RAINSTORM)
    assert isinstance(level, xr.DataArray) and level.attrs["units"] == "1"
    np.testing.assert_array_equal(level.values[-3:], [0, 0, 3])  # 3 h = 60 mm >= 50 -> orange
