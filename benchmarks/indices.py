"""Kernel benchmarks (issue 3 "Speed"): our indices/ against the reference libraries, same inputs, same run.

* ``spi``: 500 series x 720 months (SPI-3, gamma, calibration 1981-2010) vs ``climate_indices.indices.spi``
  (one call per series: its API is 1-D);
* ``heat_index``: 10 million cells vs ``metpy.calc.heat_index`` (Pint quantities, its default masking; ours
  with ``mask_undefined=True``, the same definition);
* ``spi_from_params``: SPI of one new month for 10,000 stations from stored ``spi_fit`` parameters (ms).

Times are the best of ``repeat`` runs for ours and of ``ref_repeat`` runs for the reference (wall clock,
perf_counter). The max abs difference on the cells both define is reported beside each ratio.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks import common as c


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _quiet_climate_indices() -> None:
    try:
        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    except ImportError:  # pragma: no cover
        pass
    for name in ("", "climate_indices", "kafka", "aiokafka"):  # it configures the root logger at INFO
        logging.getLogger(name).setLevel(logging.WARNING)


def precip_monthly(series: int, months: int, seed: int = 3) -> np.ndarray:
    """Arid-to-humid monthly totals (mm) with a seasonal cycle and ~10 % dry months."""
    rng = np.random.default_rng(seed)
    season = 1.0 + 0.8 * np.sin(2 * np.pi * (np.arange(months) % 12 - 3) / 12)
    scale = rng.uniform(5.0, 40.0, (series, 1))
    p = rng.gamma(1.2, 1.0, (series, months)) * scale * season
    p[rng.random((series, months)) < 0.1] = 0.0
    return np.round(p, 1)


def bench_spi(series: int, months: int = 720, repeat: int = 3) -> dict[str, Any]:
    from climate_indices import compute
    from climate_indices import indices as ci

    from indices import drought

    _quiet_climate_indices()
    p = precip_monthly(series, months)
    start = 1961
    ours_s, ours = _best(lambda: drought.spi(p, 3, distribution="gamma", start_year=start,
                                             calibration=(1981, 2010)), repeat)

    def ref() -> np.ndarray:
        return np.stack([ci.spi(p[i], 3, ci.Distribution.gamma, start, 1981, 2010, compute.Periodicity.monthly)
                         for i in range(series)])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_s, r = _best(ref, 1)
    ok = np.isfinite(r) & np.isfinite(ours)
    return {"shape": [series, months], "ours_s": round(ours_s, 4), "ref_s": round(ref_s, 3),
            "ratio": round(ref_s / ours_s, 1), "max_abs_diff": float(np.max(np.abs(ours[ok] - r[ok]))),
            "nan_agree": bool(np.array_equal(np.isnan(ours), np.isnan(r)))}


def bench_heat_index(cells: int, repeat: int = 3, ref_repeat: int = 2) -> dict[str, Any]:
    from metpy.calc import heat_index as mp_heat_index
    from metpy.units import units

    from indices import heat

    rng = np.random.default_rng(4)
    t = rng.uniform(-10.0, 48.0, cells)
    rh = rng.uniform(0.0, 100.0, cells)
    ours_s, ours = _best(lambda: heat.heat_index(t, rh, mask_undefined=True), repeat)

    def ref() -> np.ndarray:
        q = mp_heat_index(t * units.degC, rh * units.percent).to("degC")
        return np.ma.filled(np.ma.asarray(q.magnitude, dtype=float), np.nan)

    ref_s, r = _best(ref, ref_repeat)
    ok = np.isfinite(r) & np.isfinite(ours)
    return {"cells": cells, "ours_s": round(ours_s, 4), "ref_s": round(ref_s, 3), "ratio": round(ref_s / ours_s, 1),
            "max_abs_diff": float(np.max(np.abs(ours[ok] - r[ok]))),
            "nan_agree": bool(np.array_equal(np.isnan(ours), np.isnan(r)))}


def bench_spi_from_params(stations: int = 10_000, years: int = 30, repeat: int = 20) -> dict[str, Any]:
    from indices import drought

    p = precip_monthly(stations, years * 12, seed=5)
    t0 = time.perf_counter()
    params = drought.spi_fit(p, 3, distribution="gamma", start_year=1981, calibration=(1981, 2010))
    fit_s = time.perf_counter() - t0
    acc = p[:, -3:].sum(axis=1)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        z = drought.spi_from_params(acc, 11, params, distribution="gamma")
        times.append(time.perf_counter() - t0)
    full = drought.spi(p, 3, distribution="gamma", start_year=1981, calibration=(1981, 2010))[:, -1]
    ok = np.isfinite(full) & np.isfinite(z)
    return {"stations": stations, "median_ms": round(1000 * float(np.median(times)), 3),
            "best_ms": round(1000 * min(times), 3), "fit_s": round(fit_s, 3),
            "max_abs_diff_vs_spi": float(np.max(np.abs(np.asarray(z)[ok] - full[ok]))), "target_ms": 10.0}


def run(quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"load_before": c.load_avg()}
    out["spi"] = bench_spi(100 if quick else 500)
    out["heat_index"] = bench_heat_index(2_000_000 if quick else 10_000_000, ref_repeat=1 if quick else 2)
    out["spi_from_params"] = bench_spi_from_params()
    out["load_after"] = c.load_avg()
    return out


if __name__ == "__main__":  # python -m benchmarks.indices [--quick]
    import sys

    import orjson

    print(orjson.dumps(run("--quick" in sys.argv), option=orjson.OPT_INDENT_2).decode())
