"""`ews ingest --format grid --grid-to counties` through the broker to `ews run`: a storm over a county without a
station issues that county's warning, whose CAP area carries the county geocode and the storm's cells."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import pandas as pd
import xarray as xr
from shapely.geometry import Point, Polygon

from tests.support import WebhookReceiver, running_ews
from warning.broker import EmbeddedBroker
from warning.grid_counties import county_geometries

AKSAY = "620924"  # Aksay Kazakh Autonomous County: no station of the registry


async def test_grid_cells_to_a_county_warning_with_its_polygon(broker: EmbeddedBroker, tmp_path: Path,
                                                               receiver: WebhookReceiver) -> None:
    codes, geoms, _ = county_geometries()
    centre = geoms[codes.index(AKSAY)].representative_point()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    lat, lon = np.arange(38.0, 40.0, 0.02), np.arange(92.2, 96.8, 0.02)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    storm = (la - centre.y) ** 2 + (lo - centre.x) ** 2 < 0.4 ** 2
    steps = pd.to_timedelta(np.arange(1, 7), unit="h")
    tp = np.zeros((1, steps.size, lat.size, lon.size), dtype=np.float32)
    tp[0, 0][storm] = tp[0, 1][storm] = 0.035  # 35 mm in each of the first two hours: 70 mm in 3 h, orange
    grid = tmp_path / "storm.nc"
    xr.Dataset({"tp": (("time", "step", "latitude", "longitude"), tp, {"units": "m"})},
               coords={"time": [np.datetime64(now)], "step": steps, "latitude": lat, "longitude": lon}
               ).to_netcdf(grid, encoding={"tp": {"zlib": True}})
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-grid-counties"}
    async with running_ews(tmp_path, env) as ews:
        async with aiohttp.ClientSession() as s, s.post(
                ews.url + "/api/v1/subscriptions", headers=ews.headers(),
                json={"name": "water", "department": "water", "url": receiver.url, "regions": ["620900"],
                      "hazards": ["rainstorm"], "format": "json"}) as r:
            assert r.status == 201
        ingest = subprocess.run(
            [sys.executable, "-m", "warning.cli", "ingest", str(grid), "--format", "grid", "--grid-to", "counties",
             "--bootstrap", broker.bootstrap],
            env={**os.environ, "EWS_DATA_DIR": str(tmp_path / "ingest")}, capture_output=True, text=True,
            timeout=240)
        assert ingest.returncode == 0, ingest.stderr
        summary = orjson.loads(ingest.stderr.strip().splitlines()[-1])
        assert summary["areas_published"] >= 3 and summary["published"] == 0  # counties only: no station points
        assert list((tmp_path / "ingest" / "grid_index").glob("county-cells-*.npz"))  # the index, cached
        [got] = await receiver.wait_for(1)
        data = orjson.loads(got["body"])["data"]
        assert (data["region_code"], data["hazard"], data["level"]) == (AKSAY, "rainstorm", "orange")
        assert data["basis"] == "forecast" and data["bases"] == ["grid"] and data["stations"] == []
        assert data["grid"]["share"] >= 0.05
        async with aiohttp.ClientSession() as s, s.get(f"{ews.url}/api/v1/warnings/{data['id']}.cap") as r:
            assert r.status == 200
            cap = await r.text()
    assert "<valueName>GB/T 2260</valueName>" in cap and f"<value>{AKSAY}</value>" in cap
    polygons = [p.split("</polygon>")[0] for p in cap.split("<polygon>")[1:]]
    assert polygons and len(polygons) % 2 == 0  # the same area in both info blocks (zh, en)
    for text in polygons:
        pts = [tuple(map(float, pair.split(","))) for pair in text.split()]
        assert 4 <= len(pts) <= 100 and pts[0] == pts[-1]
        ring = Polygon([(lon_, lat_) for lat_, lon_ in pts])
        assert ring.is_valid and ring.contains(Point(centre.x, centre.y))
