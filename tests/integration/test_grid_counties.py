"""`ews ingest --format grid --grid-to counties` through the broker to `ews run`: a storm over a county without a
station issues that county's warning, whose CAP area carries the county geocode and the storm's cells."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from shapely.geometry import Point, Polygon

from tests.support import WebhookReceiver, ews_ingest_grid, running_ews, storm_grid
from warning.broker import EmbeddedBroker
from warning.grid_counties import county_geometries

AKSAY = "620924"  # Aksay Kazakh Autonomous County: no station of the registry


async def test_grid_cells_to_a_county_warning_with_its_polygon(broker: EmbeddedBroker, tmp_path: Path,
                                                               receiver: WebhookReceiver) -> None:
    codes, geoms, _ = county_geometries()
    centre = geoms[codes.index(AKSAY)].representative_point()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    grid = storm_grid(tmp_path / "storm.nc", centre.y, centre.x, now)
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-grid-counties"}
    async with running_ews(tmp_path, env) as ews:
        async with aiohttp.ClientSession() as s, s.post(
                ews.url + "/api/v1/subscriptions", headers=ews.headers(),
                json={"name": "water", "department": "water", "url": receiver.url, "regions": ["620900"],
                      "hazards": ["rainstorm"], "format": "json"}) as r:
            assert r.status == 201
        ingest = ews_ingest_grid(grid, broker.bootstrap, tmp_path / "ingest")
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
