"""A forecast grid ingested with `ews ingest --format grid` issues forecast-basis warnings in `ews run`."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import pandas as pd
import xarray as xr

from ingest.producer import add_ingest_parser, run_ingest
from tests.support import WebhookReceiver, running_ews
from warning.broker import EmbeddedBroker


async def test_grid_to_forecast_warning(broker: EmbeddedBroker, tmp_path: Path, receiver: WebhookReceiver) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    lat, lon = np.arange(39.0, 41.5, 0.5), np.arange(93.0, 96.5, 0.5)  # around Dunhuang (40.15 N, 94.68 E)
    t2m = np.full((1, 2, len(lat), len(lon)), 273.15 + 41.5)
    ds = xr.Dataset({"t2m": (("time", "step", "latitude", "longitude"), t2m, {"units": "K"})},
                    coords={"time": [np.datetime64(now)], "step": pd.to_timedelta([3, 6], unit="h"),
                            "latitude": lat, "longitude": lon})
    grid = tmp_path / "fc.nc"
    ds.to_netcdf(grid)
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-grid"}
    async with running_ews(tmp_path, env) as ews:
        async with aiohttp.ClientSession() as s, s.post(
                ews.url + "/api/v1/subscriptions", headers=ews.headers(),
                json={"name": "health", "department": "health", "url": receiver.url, "regions": ["620982"],
                      "hazards": ["heat"]}) as r:
            assert r.status == 201
        parser = argparse.ArgumentParser()
        add_ingest_parser(parser.add_subparsers(dest="command"))
        err = io.StringIO()
        rc = run_ingest(parser.parse_args(["ingest", str(grid), "--format", "grid", "--bootstrap", broker.bootstrap]),
                        stdout=io.StringIO(), stderr=err)
        assert rc == 0, err.getvalue()
        [got] = await receiver.wait_for(1)
    data = orjson.loads(got["body"])["data"]
    assert (data["hazard"], data["level"], data["basis"], data["certainty"]) == ("heat", "red", "forecast", "Likely")
    assert data["region_code"] == "620982"
