"""Forecast grid -> county warnings (issue 21): a synthetic Gansu grid at 0.01° (1,650 x 1,100 cells) with 72
hourly steps of precipitation, 2 m temperature and 10 m wind, zlib-compressed NetCDF, graded cell by cell and rolled
up to county GridArea records (``warning.grid_grading``), against the time to merely read and decode the same file
(every variable, every step, in the same step chunks) in the same run. Each measurement runs in a child process of
its own (its own peak RSS). Run alone: ``python -m benchmarks.grid_bench [--quick]``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHUNK_STEPS = 6


def write_grid(path: Path, n_lon: int = 1650, n_lat: int = 1100, steps: int = 72, res: float = 0.01) -> float:
    """The synthetic grid, written step by step (bounded memory): smooth temperature with a diurnal cycle and a
    hot south-east, a static small-scale pattern (terrain) and per-step noise in temperature and wind (so the file
    compresses as a model field does, not as a smooth formula), and a few storm cells drifting east (tens of mm/h
    in their cores) on a dry background. Returns its size in MB."""
    import netCDF4

    lat = 32.5 + res * np.arange(n_lat)
    lon = 92.3 + res * np.arange(n_lon)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", 1)
        nc.createDimension("step", steps)
        nc.createDimension("latitude", n_lat)
        nc.createDimension("longitude", n_lon)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.standard_name = "hours since 2026-07-14 00:00:00", "forecast_reference_time"
        t[:] = [0.0]
        s = nc.createVariable("step", "f8", ("step",))
        s.units = "hours"
        s[:] = np.arange(1, steps + 1)
        nc.createVariable("latitude", "f8", ("latitude",))[:] = lat
        nc.createVariable("longitude", "f8", ("longitude",))[:] = lon
        nc["latitude"].units, nc["longitude"].units = "degrees_north", "degrees_east"
        chunk = (1, 1, 275, 275)
        def field(name: str, units: str, digits: int) -> Any:
            v = nc.createVariable(name, "f4", ("time", "step", "latitude", "longitude"), zlib=True, complevel=4,
                                  shuffle=True, chunksizes=chunk, least_significant_digit=digits)
            v.units = units
            return v
        tp, t2m, si10 = field("tp", "m", 5), field("t2m", "K", 1), field("si10", "m s-1", 1)
        rng = np.random.default_rng(21)
        storms = [(rng.uniform(34, 41), rng.uniform(94, 104), rng.uniform(0.1, 0.4), rng.uniform(20, 60))
                  for _ in range(12)]
        coarse = rng.normal(0.0, 2.0, (n_lat // 10 + 1, n_lon // 10 + 1))
        terrain = np.kron(coarse, np.ones((10, 10)))[:n_lat, :n_lon] + rng.normal(0.0, 0.7, la.shape)
        base_t = 300.0 - 1.2 * (la - 32.5) + 0.4 * (lo - 92.3) + terrain
        base_w = 3.0 + 6.0 * np.exp(-(((la - 39.5) - 0.6 * (lo - 98.0)) ** 2) / 2.0)
        for k in range(steps):
            hour_bjt = (k + 1 + 8) % 24
            noise = rng.normal(0.0, 0.3, la.shape)
            t2m[0, k] = (base_t + noise + 6.0 * np.sin((hour_bjt - 9) / 24 * 2 * np.pi)).astype("f4")
            si10[0, k] = np.abs(base_w * (1.0 + 0.3 * np.sin(k / 7.0)) + noise).astype("f4")
            rain = np.zeros_like(la, dtype="f4")
            for clat, clon, r, peak in storms:
                c_lon = clon + 0.05 * k  # drifting east
                d2 = (la - clat) ** 2 + (lo - c_lon) ** 2
                near = d2 < (3 * r) ** 2
                rain[near] += (peak * np.exp(-d2[near] / (2 * r * r))).astype("f4")
            tp[0, k] = rain / 1000.0
    return path.stat().st_size / 1e6


_READ = """
import json, resource, sys, time
import xarray as xr
path, chunk = sys.argv[1], int(sys.argv[2])
xr.backends.list_engines()  # the engine plugins load once per process (seconds): not the file's read
t0 = time.perf_counter()
ds = xr.open_dataset(path, chunks={})
total = 0.0
for k in range(0, ds.sizes["step"], chunk):
    part = ds[["tp", "t2m", "si10"]].isel(time=0, step=slice(k, k + chunk)).compute()
    for v in part.data_vars.values():
        total += float(v.values[..., ::97, ::89].sum())
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_GRADE = """
import json, resource, sys, time
from pathlib import Path
import numpy as np
from warning.grid_grading import GridStats, grade_grid
from warning.rules import load_rules
path, chunk, cache = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
import xarray as xr
rules = load_rules()
xr.backends.list_engines()  # as in the baseline: plugin loading is not the file's read
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
stats = GridStats()
t0 = time.perf_counter()
areas = list(grade_grid(path, rules, cache_dir=cache, chunk_steps=chunk, stats=stats))
dt = time.perf_counter() - t0
levels = {}
for a in areas:
    levels[a["hazard"]] = levels.get(a["hazard"], 0) + 1
print(json.dumps({"seconds": dt, "read_decode_inside_s": stats.read_s, "areas": len(areas),
                  "counties": len({a["county_code"] for a in areas}), "areas_by_hazard": levels,
                  "cells": stats.cells, "steps": stats.steps, "rss_before_mb": rss0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "max_polygon_points": max((len(p) for a in areas for p in a["polygons"]), default=0)}))
"""


_INDEX = """
import json, sys, time
from pathlib import Path
import xarray as xr
from warning.grid_counties import county_cells
ds = xr.open_dataset(sys.argv[1])
lat, lon = ds["latitude"].values, ds["longitude"].values
t0 = time.perf_counter()
index = county_cells(lat, lon, Path(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - t0, "cells": int(index.cells.size),
                  "pairs": int(index.pair_cell.size)}))
"""


def _child(code: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=1800)
    if r.returncode != 0:
        return {"error": r.stderr[-800:]}
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def run(quick: bool = False) -> dict[str, Any]:
    """The grid row: the index built once (cached on disk), the read-and-decode baseline, cell grading with the
    cached index."""
    with tempfile.TemporaryDirectory() as d:
        path, cache = Path(d) / "gansu_0.01deg_72h.nc", Path(d) / "grid_index"
        t0 = time.perf_counter()
        size_mb = write_grid(path, *((550, 370, 24, 0.03) if quick else (1650, 1100, 72, 0.01)))
        written_s = time.perf_counter() - t0
        with open(path, "rb") as fh:  # the page cache holds the file for both readers alike
            while fh.read(1 << 24):
                pass
        index = _child(_INDEX, str(path), str(cache))  # built once per grid definition, stored in the cache
        read = _child(_READ, str(path), str(CHUNK_STEPS))
        graded = _child(_GRADE, str(path), str(CHUNK_STEPS), str(cache))
    out: dict[str, Any] = {"grid": "1650 x 1100 x 72 h, 0.01°" if not quick else "550 x 370 x 24 h, 0.03°",
                           "file_mb": size_mb,
                           "write_s": round(written_s, 1), "chunk_steps": CHUNK_STEPS, "read_decode": read,
                           "graded": graded, "index": index}
    if "seconds" in read and "seconds" in graded:
        out["ratio"] = graded["seconds"] / read["seconds"]
        out["index_build_s"] = index.get("seconds", 0.0)
    return out


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=1))
