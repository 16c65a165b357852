"""`ews ingest --format grid`: a forecast grid over Gansu becomes validated ForecastPoints at the stations."""

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ingest.producer import add_ingest_parser, run_ingest


def gansu_grid(path: Path) -> Path:
    lat = np.arange(32.0, 43.5, 0.5)
    lon = np.arange(92.0, 109.5, 0.5)
    steps = pd.to_timedelta([6, 12, 18, 24], unit="h")
    t2m = np.full((1, len(steps), len(lat), len(lon)), 273.15 + 30.0)
    t2m[:, 2, :, :] = 273.15 + 41.0  # +18 h: 41 degC everywhere
    ds = xr.Dataset(
        {"t2m": (("time", "step", "latitude", "longitude"), t2m,
                 {"units": "K", "standard_name": "air_temperature"})},
        coords={"time": [np.datetime64("2026-07-14T00:00")], "step": steps, "latitude": lat, "longitude": lon})
    ds.to_netcdf(path)
    return path


def test_grid_dry_run_gives_points_at_every_station(tmp_path: Path) -> None:
    grid = gansu_grid(tmp_path / "fc.nc")
    parser = argparse.ArgumentParser()
    add_ingest_parser(parser.add_subparsers(dest="command"))
    out, err = io.StringIO(), io.StringIO()
    rc = run_ingest(parser.parse_args(["ingest", str(grid), "--format", "grid", "--dry-run"]), stdout=out, stderr=err)
    assert rc == 0, err.getvalue()
    points = [json.loads(line) for line in out.getvalue().splitlines()]
    stations = {p["station_id"] for p in points}
    assert "52418" in stations and "52889" in stations and len(stations) >= 80
    hot = [p for p in points if p["station_id"] == "52889" and p["lead_h"] == 18.0]
    assert hot and abs(next(iter(hot[0]["values"].values())) - 41.0) < 1e-6
    assert all(p["issued_at"] == "2026-07-14T00:00:00Z" for p in points)
