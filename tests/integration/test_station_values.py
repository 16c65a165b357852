"""Station values with two workers in one group (issue 20): the group assigns the obs partitions (in this run on
tansu, all of them to one worker), yet either one answers GET /api/v1/stations/latest with every station, the one
that owns no obs partition too, because each publishes its own partitions' summaries to the compacted
`stations.latest` topic and both mirror it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import one_station_per_county, running_ews
from warning.shared.topics import partition_for


async def test_either_worker_answers_for_every_station(broker: Any, tmp_path: Path) -> None:
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-station-values",
           "EWS_STATION_VALUES_S": "1", "EWS_PARTITIONS": "4"}
    stations = one_station_per_county(12)
    assert len({partition_for(s, 4) for s in stations}) > 1  # over several partitions
    t = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    async with running_ews(tmp_path / "a", env) as a, running_ews(tmp_path / "b", env) as b, \
            aiohttp.ClientSession() as s:
        reports = [{"station_id": sid, "time": t, "tmax_c": 20.0 + i, "wind_ms": 3.0}
                   for i, sid in enumerate(stations)]
        async with s.post(a.url + "/api/v1/observations", headers=a.headers(), json=reports) as r:
            assert r.status == 202 and (await r.json())["accepted"] == len(stations)
        got: dict[str, dict[str, Any]] = {}

        async def every_station_on(url: str) -> bool:
            async with s.get(url + "/api/v1/stations/latest") as r:
                assert r.status == 200
                body = await r.json()
            got[url] = {x["station_id"]: x for x in body["stations"]}
            return set(stations) <= set(got[url])

        for worker in (a, b):
            deadline = time.monotonic() + 90
            while not await every_station_on(worker.url):
                assert time.monotonic() < deadline, (worker.url, sorted(got.get(worker.url, {})))
                await asyncio.sleep(0.5)
            for i, sid in enumerate(stations):
                assert got[worker.url][sid]["latest"]["tmax_c"] == 20.0 + i
                assert got[worker.url][sid]["time"] == t
