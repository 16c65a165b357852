"""indices.heat against MetPy, thermofeel, xclim, the heat-index vectors of tests/data and hand-computed values."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from indices import heat
from warning.rule_params import hot_spell_criterion
from warning.rules import load_rules

HOT_C, HOT_DAYS = hot_spell_criterion(load_rules())  # Order No. 16 heat yellow, from warning/data/rules.toml

F2C = 5.0 / 9.0


def _to_c(v: float, u: str) -> float:
    return {"degC": v, "degF": (v - 32.0) * F2C, "kelvin": v - 273.15}[u]


# ------------------------------------------------------------------------------------------ heat index
def test_heat_index_matches_metpy_sweep() -> None:
    metpy_calc = pytest.importorskip("metpy.calc")
    units = pytest.importorskip("metpy.units").units
    t = np.linspace(26.7, 50.0, 120)  # T >= 80 F: where MetPy defines the index
    rh = np.linspace(0.0, 100.0, 101)
    tt, rr = np.meshgrid(t, rh)
    ref = metpy_calc.heat_index(tt * units.degC, rr * units.percent).to("degC")
    ref = np.ma.filled(np.ma.asarray(ref.magnitude, dtype=float), np.nan)
    ours = heat.heat_index(tt, rr)
    ok = np.isfinite(ref)
    assert ok.sum() > 10000
    assert np.max(np.abs(ours[ok] - ref[ok])) < 0.1  # measured 1.4e-12 degC
    # cooler than 80 F: MetPy computes the same numbers with mask_undefined=False
    tc = np.linspace(-10, 26.6, 50)
    tt, rr = np.meshgrid(tc, rh)
    ref = metpy_calc.heat_index(tt * units.degC, rr * units.percent, mask_undefined=False).to("degC")
    assert np.max(np.abs(heat.heat_index(tt, rr) - np.asarray(ref.magnitude, dtype=float))) < 0.1


def test_heat_index_shared_metpy_vectors(heat_index_dir: Path) -> None:
    vec = json.loads((heat_index_dir / "heat_index_vectors.json").read_text())
    n = 0
    for case in vec["metpy"]["cases"]:
        for t, rh, exp in zip(case["temp"], case["rh"], case["expected"], strict=True):
            t_c = _to_c(t, case["temp_units"])
            rh_pct = rh * 100.0 if case["rh_units"] == "fraction" else rh
            got = float(heat.heat_index(np.array([t_c]), np.array([rh_pct]), mask_undefined=True)[0])
            if exp is None:
                assert np.isnan(got)
                continue
            got_exp_units = got if case["expected_units"] == "degC" else got / F2C + 32.0
            assert abs(got_exp_units - exp) < 1.5 * 10.0 ** (-case["decimal"]), (case["test"], t, rh)
            n += 1
    assert n >= 12
    for case in vec["metpy"]["mask_cases"]:
        t_c = np.array([_to_c(t, case["temp_units"]) for t in case["temp"]])
        got = heat.heat_index(t_c, np.array(case["rh"], dtype=float), mask_undefined=True)
        assert list(np.isnan(got)) == case["expected_mask"]


def test_heat_index_nws_chart(heat_index_dir: Path) -> None:
    rows = list(csv.DictReader((heat_index_dir / "nws_chart_transcribed.csv").open()))
    t_c = np.array([(float(r["temp_F"]) - 32.0) * F2C for r in rows])
    rh = np.array([float(r["rh_pct"]) for r in rows])
    chart_f = np.array([float(r["hi_F_rfcafe"]) for r in rows])
    for method in heat.HI_METHODS:
        got_f = np.asarray(heat.heat_index(t_c, rh, method=method)) / F2C + 32.0
        # chart is Steadman's table; regression reproduces it to ~2.3 F (80 F/100 % corner)
        assert np.max(np.abs(got_f - chart_f)) <= 2.5


def test_heat_index_wpc_matches_thermofeel() -> None:
    tf = pytest.importorskip("thermofeel")
    rng = np.random.default_rng(1)
    t_k = rng.uniform(250.0, 320.0, 2000)
    td_k = t_k - rng.uniform(0.0, 40.0, 2000)
    rh = tf.calculate_relative_humidity_percent(t_k, td_k)
    ref = tf.calculate_heat_index_adjusted(t_k, td_k) - 273.15
    ours = heat.heat_index(t_k - 273.15, rh, method="wpc")
    assert np.max(np.abs(ours - ref)) < 1e-6


def test_heat_index_dataarray_units_and_attrs() -> None:
    t = xr.DataArray([308.15, 293.15], dims="station", attrs={"units": "K"})
    rh = xr.DataArray([0.7, 0.7], dims="station", attrs={"units": "1"})
    out = heat.heat_index(t, rh)
    assert isinstance(out, xr.DataArray)
    assert out.dims == ("station",)
    assert out.attrs["units"] == "degC" and "Rothfusz" in out.attrs["references"] and out.attrs["long_name"]
    assert abs(float(out[0]) - 50.3405) < 2e-4


def test_heat_index_rejects_wrong_units_and_shapes() -> None:
    with pytest.raises(ValueError, match="wrong units"):
        heat.heat_index(np.array([300.0]), np.array([50.0]))  # Kelvin passed as degC
    with pytest.raises(ValueError, match="relative_humidity"):
        heat.heat_index(np.array([30.0]), np.array([150.0]))
    with pytest.raises(ValueError, match="broadcast"):
        heat.heat_index(np.ones(3) * 30, np.ones(4) * 50)
    with pytest.raises(ValueError, match="unsupported units"):
        heat.heat_index(xr.DataArray([30.0], attrs={"units": "furlong"}), np.array([50.0]))
    with pytest.raises(ValueError, match="fraction"):
        heat.heat_index(np.array([30.0, 31.0]), np.array([0.7, 0.5]))  # RH fraction given as percent
    with pytest.raises(ValueError, match="method"):
        heat.heat_index(np.array([30.0]), np.array([50.0]), method="xclim")


def test_heat_index_empty_and_leading_dims() -> None:
    assert heat.heat_index(np.array([]), np.array([])).shape == (0,)
    t = np.full((2, 3, 4), 35.0)
    assert heat.heat_index(t, 70.0).shape == (2, 3, 4)


@settings(max_examples=60, deadline=None, database=None)
@given(st.floats(27.0, 45.0), st.floats(50.0, 100.0))
def test_heat_index_not_below_temperature_when_humid(t: float, rh: float) -> None:
    assert float(heat.heat_index(np.array([t]), np.array([rh]))[0]) >= t - 1e-9


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(st.one_of(st.floats(-40.0, 50.0), st.just(float("nan"))), min_size=1, max_size=20),
       st.floats(1.5, 100.0))
def test_heat_index_nan_in_nan_out(temps: list[float], rh: float) -> None:
    t = np.array(temps)
    out = heat.heat_index(t, rh)
    assert np.array_equal(np.isnan(out), np.isnan(t))


# ------------------------------------------------------------------------------------ humidex, AT
def test_humidex_vs_thermofeel_and_xclim() -> None:
    tf = pytest.importorskip("thermofeel")
    rng = np.random.default_rng(2)
    t = rng.uniform(15.0, 45.0, 500)
    td = t - rng.uniform(0.0, 25.0, 500)
    ours = heat.humidex(t, td)
    ref_tf = tf.calculate_humidex(t + 273.15, td + 273.15) - 273.15
    # thermofeel uses 273.15 instead of 273.16 and 0.5555 instead of 5/9 -> small differences
    assert np.max(np.abs(ours - ref_tf)) < 0.1
    xc = pytest.importorskip("xclim.indices")
    tas = xr.DataArray(t, dims="x", attrs={"units": "degC"})
    tdps = xr.DataArray(td, dims="x", attrs={"units": "degC"})
    ref_xc = xc.humidex(tas, tdps=tdps)
    assert np.max(np.abs(ours - np.asarray(ref_xc))) < 0.1
    # Environment Canada worked value: T = 30 C, Td = 15 C -> humidex ~ 34
    assert round(float(heat.humidex(np.array([30.0]), np.array([15.0]))[0])) == 34


def test_apparent_temperature_vs_thermofeel() -> None:
    tf = pytest.importorskip("thermofeel")
    rng = np.random.default_rng(3)
    t = rng.uniform(-10.0, 45.0, 500)
    rh = rng.uniform(5.0, 100.0, 500)
    ws = rng.uniform(0.0, 15.0, 500)
    ref = tf.calculate_apparent_temperature(t + 273.15, ws, rh) - 273.15
    assert np.max(np.abs(heat.apparent_temperature(t, rh, ws) - ref)) < 1e-9
    # hand value: T=30, RH=50, ws=2 -> e = 0.5*6.105*exp(17.27*30/267.7) = 21.21 hPa; AT = 30+7.0-1.4-4 = 31.6
    at = heat.apparent_temperature(np.array([30.0]), np.array([50.0]), np.array([2.0]))
    assert abs(float(at[0]) - 31.6) < 0.05


# ---------------------------------------------------------------------------------------------- EHF
def _ehf_loop(dmt: np.ndarray, t95: float) -> np.ndarray:
    out = np.full(dmt.size, np.nan)
    for i in range(30, dmt.size - 2):
        m3 = dmt[i:i + 3].mean()
        m30 = dmt[i - 30:i].mean()
        out[i] = (m3 - t95) * np.maximum(1.0, m3 - m30)
    return out


def test_ehf_hand_computed() -> None:
    dmt = np.full(40, 20.0)
    dmt[30:33] = 30.0  # 3 hot days after 30 days at 20 C; T95 = 25
    ehf = heat.excess_heat_factor(dmt, 25.0)
    # day 30: EHI_sig = 30 - 25 = 5; EHI_accl = 30 - 20 = 10 -> EHF = 50 K^2
    assert ehf[30] == pytest.approx(50.0)
    # day 31: window 31..33 = (30+30+20)/3 = 26.667; prev 30 days mean = (29*20+30)/30 = 20.333
    m3 = 80.0 / 3.0
    assert ehf[31] == pytest.approx((m3 - 25.0) * (m3 - 610.0 / 30.0))
    assert np.isnan(ehf[:30]).all() and np.isnan(ehf[-2:]).all()
    end = heat.excess_heat_factor(dmt, 25.0, align="end")
    np.testing.assert_allclose(end[32:], ehf[30:-2])


def test_ehf_vs_loop_and_thermofeel_blocks() -> None:
    tfe = pytest.importorskip("thermofeel.excess_heat")
    rng = np.random.default_rng(4)
    dmt = 22.0 + 6.0 * rng.standard_normal((3, 120))
    dmt[1, 50] = np.nan
    t95 = np.array([25.0, 26.0, 27.0])
    ours = heat.excess_heat_factor(dmt, t95)
    for k in range(3):
        ref = _ehf_loop(dmt[k], float(t95[k]))
        np.testing.assert_allclose(ours[k], ref, rtol=1e-12, atol=1e-12, equal_nan=True)
        i = 100
        m3, m30 = dmt[k, i:i + 3].mean(), dmt[k, i - 30:i].mean()
        sig, accl = tfe.significance_index(m3, t95[k]), tfe.acclimatisation_index(m3, m30)
        tf_val = tfe.excess_heat_factor(sig, accl)
        assert ours[k, i] == pytest.approx(float(tf_val))
    assert np.isnan(ours[1, 48:51]).all() and np.isnan(ours[1, 51:81]).all()


def test_ehf_severity_classes() -> None:
    ehf = np.array([-3.0, 0.0, 5.0, 10.0, 25.0, 31.0, np.nan])
    cls = heat.ehf_severity_class(ehf, 10.0)
    np.testing.assert_array_equal(cls, [0, 0, 1, 1, 2, 3, np.nan])
    np.testing.assert_allclose(heat.ehf_severity(ehf, 10.0), ehf / 10.0)
    with pytest.raises(ValueError):
        heat.ehf_severity(ehf, 0.0)


def test_ehf_dataarray() -> None:
    da = xr.DataArray(np.full((2, 40), 20.0), dims=("station", "time"), attrs={"units": "degC"})
    out = heat.excess_heat_factor(da, 25.0)
    assert isinstance(out, xr.DataArray) and out.attrs["units"] == "K2" and "Nairn" in out.attrs["references"]


# ----------------------------------------------------------------------------------------- hot spell
def test_hot_spell_outputs() -> None:
    tx = np.array([34.0, 35.0, 36.0, 35.0, 33.0, 35.0, 35.0, np.nan, 36.0, 37.0, 38.0, 39.0])
    assert (HOT_C, HOT_DAYS) == (35.0, 3)
    np.testing.assert_array_equal(heat.hot_spell(tx, HOT_C, min_days=HOT_DAYS),
                                  [0, 1, 2, 3, 0, 1, 2, np.nan, 1, 2, 3, 4])
    nan = np.nan
    in_spell = heat.hot_spell(tx, HOT_C, min_days=HOT_DAYS, output="in_spell")
    np.testing.assert_array_equal(in_spell, [0, 1, 1, 1, 0, 0, 0, nan, 1, 1, 1, 1])
    np.testing.assert_array_equal(heat.hot_spell(tx, HOT_C, min_days=HOT_DAYS, output="signal"),
                                  [0, 0, 0, 1, 0, 0, 0, nan, 0, 0, 1, 1])
    np.testing.assert_array_equal(heat.hot_spell(tx, HOT_C, min_days=HOT_DAYS, op=">")[:4], [0, 0, 1, 0])


def test_hot_spell_vs_xclim_max_length() -> None:
    xc = pytest.importorskip("xclim.indices")
    rng = np.random.default_rng(5)
    vals = 33.0 + 3.0 * rng.standard_normal(365)
    time = xr.date_range("2001-01-01", periods=365, freq="D")
    tas = xr.DataArray(vals, dims="time", coords={"time": time}, attrs={"units": "degC"})
    ref = xc.hot_spell_max_length(tas, thresh=f"{HOT_C} degC", window=1, freq="YS", op=">=")
    assert np.nanmax(heat.hot_spell(vals, HOT_C, min_days=HOT_DAYS)) == float(ref.values[0])


@settings(max_examples=50, deadline=None, database=None)
@given(st.lists(st.floats(20.0, 45.0), min_size=1, max_size=50))
def test_hot_spell_run_length_properties(temps: list[float]) -> None:
    x = np.array(temps)
    run = heat.hot_spell(x, HOT_C, min_days=HOT_DAYS)
    assert (run >= 0).all() and (run <= np.arange(1, x.size + 1)).all()
    assert ((run > 0) == (x >= HOT_C)).all()


def test_ehf_per_station_threshold_dataarray() -> None:
    rng = np.random.default_rng(6)
    vals = 22.0 + 5.0 * rng.standard_normal((40, 2))
    tmean = xr.DataArray(vals, dims=("time", "station"), coords={"station": ["a", "b"]}, attrs={"units": "degC"})
    t95 = xr.DataArray([26.0, 24.0], dims="station", coords={"station": ["a", "b"]}, attrs={"units": "degC"})
    out = heat.excess_heat_factor(tmean, t95)
    assert out.dims == ("station", "time")
    np.testing.assert_allclose(out.sel(station="b").values, _ehf_loop(vals[:, 1], 24.0), equal_nan=True)


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(st.one_of(st.floats(-30.0, 45.0), st.just(float("nan"))), min_size=1, max_size=60))
def test_heat_kernels_nan_in_nan_out(temps: list[float]) -> None:
    t = np.array(temps)
    nan = np.isnan(t)
    assert np.array_equal(np.isnan(heat.humidex(t, t - 5.0)), nan)
    assert np.array_equal(np.isnan(heat.apparent_temperature(t, 50.0, 3.0)), nan)
    assert np.isnan(heat.hot_spell(t, HOT_C, min_days=HOT_DAYS)[nan]).all()
    ehf = heat.excess_heat_factor(t, 25.0)
    for i in np.flatnonzero(nan):  # any window containing a missing day is missing
        assert np.isnan(ehf[max(0, i - 2):i + 31]).all()
