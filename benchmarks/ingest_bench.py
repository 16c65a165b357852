"""Ingest speed (issue 5): parsing + validation + QC + producing real station files, against the raw
kafka-python producer rate on the same records in the same run; and a forecast grid of 1 million cells x 24
lead times interpolated to 500 stations (time, peak RSS). Run alone: ``python -m benchmarks.ingest_bench``."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests import support

ROOT = Path(__file__).resolve().parents[1]
# The real station files of tests/data (the .dly and the CSV are gzipped there: their rates include gunzip).
FILES = {"isd-lite": support.ISD, "ghcn-csv": support.GHCN_CSV, "ghcn-dly": support.DLY}


def _first(path: Path) -> Path | None:
    if path.is_file():
        return path
    files = sorted(p for p in path.glob("*") if p.is_file() and not p.name.endswith(".md")) if path.is_dir() else []
    return files[0] if files else None


def _records(path: Path) -> list[dict[str, Any]]:
    from ingest.formats import read_observations
    from warning.shared.records import Observation

    return [r.to_dict() for r in read_observations(str(path), as_station="52889") if isinstance(r, Observation)]


def raw_producer_rate(bootstrap: str, records: list[dict[str, Any]]) -> float:
    """Baseline: kafka-python sending the same records, one JSON record per message, as fast as it can."""
    import orjson
    from kafka import KafkaProducer

    from ingest.producer import producer_config

    cfg = producer_config(bootstrap) | {"client_id": "bench-raw"}
    p = KafkaProducer(**cfg)
    t0 = time.perf_counter()
    for r in records:
        p.send("bench.raw", value=orjson.dumps(r), key=r["station_id"].encode())
    p.flush(timeout=120)
    dt = time.perf_counter() - t0
    p.close()
    return len(records) / dt


def ingest_rate(bootstrap: str, path: Path) -> tuple[float, int]:
    """Ours: `ews ingest` (parse + validate + batch + produce) plus QC over the same rows."""
    from ingest.producer import add_ingest_parser, run_ingest
    from ingest.qc import QualityControl

    parser = argparse.ArgumentParser()
    add_ingest_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ingest", str(path), "--as-station", "52889", "--bootstrap", bootstrap,
                              "--json-summary"])
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    run_ingest(args, stdout=out, stderr=err)
    t_ingest = time.perf_counter() - t0
    summary = json.loads(out.getvalue().strip().splitlines()[-1]) if out.getvalue().strip() else {}
    n = int(summary.get("published", 0)) or len(_records(path))
    records = _records(path)
    qc = QualityControl()
    t0 = time.perf_counter()
    for i in range(0, len(records), 1000):
        qc.check_batch(records[i:i + 1000])
    t_qc = time.perf_counter() - t0
    return n / (t_ingest + t_qc), n


def grid_run(cells_side: int = 1000, leads: int = 24, stations: int = 500) -> dict[str, Any]:
    """A 1000 x 1000 grid x 24 lead times (float32, NetCDF) -> 500 stations, in a child process (peak RSS)."""
    code = f"""
import time, resource, numpy as np, pandas as pd, xarray as xr, tempfile, os, json
from ingest.formats.grids import read_forecast_points
from warning.shared.regions import StationRegistry
d = tempfile.mkdtemp()
path = os.path.join(d, "grid.nc")
lat = np.linspace(30.0, 45.0, {cells_side}); lon = np.linspace(90.0, 110.0, {cells_side})
steps = pd.to_timedelta(np.arange(1, {leads} + 1) * 3, unit="h")
shape = (1, {leads}, {cells_side}, {cells_side})
values = np.random.default_rng(0).normal(300, 5, shape).astype("float32")
coords = {{"time": [np.datetime64("2026-07-14T00:00")], "step": steps, "latitude": lat, "longitude": lon}}
ds = xr.Dataset({{"t2m": (("time", "step", "latitude", "longitude"), values, {{"units": "K"}})}}, coords=coords)
ds.to_netcdf(path, encoding={{"t2m": {{"chunksizes": (1, 1, 250, 250)}}}})
del ds
reg = list(StationRegistry.load())
rng = np.random.default_rng(1)
class S:
    def __init__(self, i):
        base = reg[i % len(reg)]
        self.station_id = base.station_id
        self.latitude, self.longitude = float(rng.uniform(31, 44)), float(rng.uniform(91, 109))
stations = [S(i) for i in range({stations})]
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
n = sum(1 for _ in read_forecast_points(path, stations))
dt = time.perf_counter() - t0
print(json.dumps({{"points": n, "seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_mb": rss0 / 1024, "file_mb": os.path.getsize(path) / 1e6}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=900)
    if r.returncode != 0:
        return {"error": r.stderr[-500:]}
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def run(quick: bool = False) -> dict[str, Any]:
    from warning.broker import EmbeddedBroker

    out: dict[str, Any] = {}
    with EmbeddedBroker() as b:
        for fmt, loc in FILES.items():
            path = _first(loc)
            if path is None:
                continue
            records = _records(path)
            if quick:
                records = records[:20000]
            raw = raw_producer_rate(b.bootstrap, records)
            ours, n = ingest_rate(b.bootstrap, path)
            out[f"ingest_{fmt}"] = {"records": n, "records_s": round(ours), "raw_producer_records_s": round(raw),
                                    "ratio": round(ours / raw, 3)}
    out["grid_1m_cells_x24_to_500_stations"] = grid_run(500 if quick else 1000)
    return out


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    with tempfile.TemporaryDirectory():
        print(json.dumps(run("--quick" in sys.argv), indent=1))
