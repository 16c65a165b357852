"""indices.frost and indices.wind against xclim and hand-computed Order No. 16 / GB/T cases."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from indices import frost, wind
from warning import rule_params
from warning.rules import load_rules

NAN = np.nan
# the thresholds' one place: warning/data/rules.toml (the kernels take them as parameters)
RULES = load_rules()
OFFSET = RULES.frost.air_to_ground_offset_c  # 2.0 (indices.frost once defaulted to 3.0; the rules' value wins)
FROST = rule_params.frost_criteria(RULES)
GALE = rule_params.gale_criteria(RULES)
COLD_WAVE = rule_params.cold_wave_criteria(RULES)
SANDSTORM = rule_params.sandstorm_criteria(RULES)
SAND = RULES.sandstorm


# ---------------------------------------------------------------------------------------------- frost
def test_frost_intensity_levels_ground_and_air() -> None:
    ground = np.array([1.0, 0.0, -2.9, -3.0, -5.0, -8.0, NAN, NAN])
    air = np.array([5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 1.5, NAN])
    kw = {"air_ground_offset_c": OFFSET, "criteria": FROST}
    np.testing.assert_array_equal(frost.frost_intensity(air, ground, **kw), [0, 1, 1, 2, 3, 3, 1, NAN])
    # air only: ground estimated as air - the rules' offset (2 K, UNCONFIRMED heuristic)
    assert OFFSET == 2.0
    np.testing.assert_array_equal(frost.effective_ground_tmin(np.array([4.0, 2.0]), air_ground_offset_c=OFFSET),
                                  [2.0, 0.0])
    np.testing.assert_array_equal(frost.frost_intensity(np.array([4.0, 2.0]), air_ground_offset_c=0.0,
                                                        criteria=FROST), [0, 0])
    da = frost.frost_intensity(xr.DataArray([274.15], dims="station", attrs={"units": "K"}), **kw)
    assert isinstance(da, xr.DataArray) and float(da[0]) == 1.0 and "Order No. 16" in da.attrs["references"]
    with pytest.raises(ValueError, match="wrong units"):
        frost.frost_intensity(np.array([270.0]), **kw)
    with pytest.raises(TypeError):
        frost.effective_ground_tmin(np.array([4.0]))  # type: ignore[call-arg]  # no default offset any more


def test_frost_days_vs_xclim() -> None:
    xc = pytest.importorskip("xclim.indices")
    rng = np.random.default_rng(0)
    tn = 2.0 + 6.0 * rng.standard_normal(365)
    time = xr.date_range("2001-01-01", periods=365, freq="D")
    da = xr.DataArray(tn, dims="time", coords={"time": time}, attrs={"units": "degC"})
    assert np.nansum(frost.frost_days(tn)) == float(xc.frost_days(da, freq="YS").values[0])
    ref = xc.maximum_consecutive_frost_days(da, freq="YS")
    assert np.nanmax(frost.consecutive_frost_days(tn)) == float(ref.values[0])


def test_consecutive_frost_days_missing_breaks_run() -> None:
    tn = np.array([-1.0, -2.0, NAN, -1.0, 3.0, -4.0])
    np.testing.assert_array_equal(frost.consecutive_frost_days(tn), [1, 2, NAN, 1, 0, 1])


# ----------------------------------------------------------------------------------------------- wind
def test_beaufort_band_edges() -> None:
    v = np.array([0.0, 0.2, 0.3, 7.9, 8.0, 10.7, 10.8, 13.8, 13.9, 17.1, 17.2, 32.6, 32.7, 36.9, 37.0, 41.4,
                  41.5, 60.0, NAN])
    exp = [0, 0, 1, 4, 5, 5, 6, 6, 7, 7, 8, 11, 12, 12, 13, 13, 14, 17, NAN]
    np.testing.assert_array_equal(wind.beaufort_force(v), exp)
    kt = xr.DataArray([21.0], dims="x", attrs={"units": "knot"})  # 10.8 m/s
    assert float(wind.beaufort_force(kt)[0]) == 6
    with pytest.raises(ValueError):
        wind.beaufort_force(np.array([-1.0]))


@settings(max_examples=60, deadline=None, database=None)
@given(st.floats(0.0, 60.0), st.floats(0.0, 5.0))
def test_beaufort_monotonic(v: float, dv: float) -> None:
    f = wind.beaufort_force(np.array([v, v + dv]))
    assert f[1] >= f[0]


def test_gale_signal_level() -> None:
    mean = np.array([5.0, 10.8, 9.0, 17.2, 24.5, 32.7, NAN, NAN])
    gust = np.array([8.0, 9.0, 13.9, 10.0, 10.0, 10.0, 37.0, NAN])
    np.testing.assert_array_equal(wind.gale_signal_level(mean, gust, criteria=GALE), [0, 1, 1, 2, 3, 4, 4, NAN])
    np.testing.assert_array_equal(wind.gale_signal_level(np.array([20.8]), criteria=GALE), [2])
    # the thresholds are the lower Beaufort band limits of the forces the Order No. 16 text names
    bands = wind.BEAUFORT_LOWER_MS
    forces = {"blue": (bands[6], bands[7]), "yellow": (bands[8], bands[9]), "orange": (bands[10], bands[11]),
              "red": (bands[12], bands[13])}
    assert forces == GALE


def test_tmin_drop_and_cold_wave_grade() -> None:
    tn = np.array([10.0, 9.0, 1.0, 0.5, -1.0, 14.0, 5.0, 2.0, -12.0])
    np.testing.assert_array_equal(wind.tmin_drop(tn, 24), [NAN, 1, 8, 0.5, 1.5, -15, 9, 3, 14])
    # 48 / 72 h: today's minimum against the highest of the 2 / 3 previous days' (the rules' definition)
    np.testing.assert_array_equal(wind.tmin_drop(tn, 48), [NAN, 1, 9, 8.5, 2, -13.5, 9, 12, 17])
    np.testing.assert_array_equal(wind.tmin_drop(tn, 72), [NAN, 1, 9, 9.5, 10, -13, 9, 12, 26])
    # a missing day is left out of the max; a missing today is NaN
    np.testing.assert_array_equal(wind.tmin_drop(np.array([10.0, NAN, 4.0, NAN]), 48), [NAN, NAN, 6, NAN])
    # day 2: 24 h drop 8, Tmin 1 <= 4 -> grade 1; day 3: 48 h 8.5 < 10, 72 h 9.5 < 12 -> 0; day 6: drop 9 but
    # Tmin 5 > 4 -> 0; day 7: 48 h drop 12 and Tmin 2 <= 2 -> grade 2; day 8: 24 h drop 14, Tmin -12 -> 3
    np.testing.assert_array_equal(wind.cold_wave_grade(tn), [NAN, 0, 1, 0, 0, 0, 0, 2, 3])
    with pytest.raises(ValueError):
        wind.tmin_drop(tn, 36)


def test_cold_wave_signal_level() -> None:
    tn = np.array([12.0, 8.0, 4.0, 14.0, 3.0, 20.0, 0.0, 16.0, -1.0])
    w = np.array([3.0, 3.0, 8.0, 3.0, 10.8, 3.0, 10.8, 3.0, 10.8])
    # day 2: 48 h drop 8, Tmin 4, force 5 -> blue; day 4: 24 h drop 11, Tmin 3, force 6 -> yellow;
    # day 6: 24 h drop 20, Tmin 0, force 6 -> red; day 8: 24 h drop 17, Tmin -1 -> red
    np.testing.assert_array_equal(wind.cold_wave_signal_level(tn, w, criteria=COLD_WAVE), [NAN, 0, 1, 0, 2, 0, 4, 0, 4])
    w2 = w.copy()
    w2[6] = 8.0  # only force 5: no 24 h level; the 48 h drop from the higher previous minimum (20) is 20 -> blue
    assert wind.cold_wave_signal_level(tn, w2, criteria=COLD_WAVE)[6] == 1
    w2[6] = 7.9  # below force 5: none
    assert wind.cold_wave_signal_level(tn, w2, criteria=COLD_WAVE)[6] == 0


def test_sand_dust_class_and_signal() -> None:
    vis = np.array([20000.0, 5000.0, 5000.0, 900.0, 400.0, 40.0, NAN, 800.0])
    ws = np.array([10.0, 2.0, 8.0, 15.0, 20.0, 25.0, 10.0, 10.0])
    dust = np.array([1, 1, 1, 1, 1, 1, 1, 0])
    floating = SAND.floating_dust_max_wind_ms
    assert floating == 5.4  # GB/T 20480-2017 floating dust: wind force <= 3, i.e. <= 5.4 m/s
    # at 5.4 m/s in 5 km visibility: floating dust (1); above it: blowing sand (2)
    np.testing.assert_array_equal(wind.sand_dust_class(np.array([5000.0, 5000.0]), np.array([5.4, 5.5]),
                                                       np.array([1, 1]), floating_dust_max_wind_ms=floating), [1, 2])
    np.testing.assert_array_equal(wind.sand_dust_class(vis, ws, dust, floating_dust_max_wind_ms=floating),
                                  [0, 1, 2, 3, 4, 5, NAN, 0])
    np.testing.assert_array_equal(wind.sandstorm_signal_level(vis, dust, criteria=SANDSTORM),
                                  [0, 0, 0, 2, 3, 4, NAN, 0])
    local_blue = SAND.local_blue_visibility_m
    np.testing.assert_array_equal(
        wind.sandstorm_signal_level(vis, dust, criteria=SANDSTORM, local_blue_visibility_m=local_blue),
        [0, 1, 1, 2, 3, 4, NAN, 0])
    km = xr.DataArray([0.45], dims="x", attrs={"units": "km"})
    assert float(wind.sandstorm_signal_level(km, criteria=SANDSTORM)[0]) == 3
