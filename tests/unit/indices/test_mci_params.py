"""Fit once, score a day: mci_from_params equals the full-series mci() with the same calibration."""

import numpy as np
import pytest

from indices.drought import daily_slot, mci, mci_fit, mci_from_params


def test_mci_from_params_equals_full_series() -> None:
    rng = np.random.default_rng(1)
    dates = np.arange(np.datetime64("1981-01-01"), np.datetime64("2011-01-01"))
    n = dates.size
    p = np.where(rng.random(n) < 0.3, rng.gamma(0.8, 6.0, n), 0.0)
    e = 2.0 + rng.random(n) * 3.0
    full = np.asarray(mci(p, e, dates))
    params = mci_fit(p, dates)
    assert params.shape == (3, 366, 3)
    for idx in (n - 1, n - 200, n - 3000, n - 5000):
        d = dates[idx]
        v = mci_from_params(p[idx - 149: idx + 1], e[idx - 29: idx + 1], int(str(d)[5:7]), daily_slot(d), params)
        assert float(v) == pytest.approx(float(full[idx]), abs=1e-9)


def test_missing_day_gives_nan_and_bad_windows_raise() -> None:
    params = np.ones((3, 366, 3))
    p = np.ones(150)
    p[10] = np.nan
    assert np.isnan(mci_from_params(p, np.ones(30), 6, 160, params))
    with pytest.raises(ValueError):
        mci_from_params(np.ones(149), np.ones(30), 6, 160, params)
