"""The labelled demo scenario that `make run` replays: synthetic reports built on published station normals.

Nothing here is a real observation. The scenario takes the 1991-2020 (or 1981-2010) monthly normals in
``warning/data/normals.csv`` (sources in NORMALS_SOURCES.md) and adds documented anomalies, dated relative to
now so that the warnings are live on the dashboard:

* heat: four daily reports at every station with July normals, Tmax = July mean maximum + 3, 4.5, 6, 8 °C
  (stations with hot normals reach the heat levels; cooler ones stay below them);
* rainstorm / flash flood: six hourly reports at the wettest July station, each 1/8 of its July normal
  (most of a month's rain in 6 hours, a rare but real storm on the Loess plateau);
* frost: a clear night at the coldest November station, ground minimum = its November mean minimum - 4 °C.

Only stations with sourced normals take part (currently Zhangxian 56091: see NORMALS_SOURCES.md).

Every report carries ``source = "demo: synthetic, built on published normals"``.
"""

from __future__ import annotations

import asyncio
import csv
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from warning.shared.times import iso_utc

log = logging.getLogger(__name__)

SOURCE = "demo: synthetic, built on published normals"
LABEL = ("DEMO scenario: synthetic reports built on published station normals (warning/data/normals.csv); "
         "not real observations")
HEAT_ANOMALIES_C = (3.0, 4.5, 6.0, 8.0)


@dataclass(frozen=True)
class Normal:
    station_id: str
    month: int
    tmax_mean_c: float | None
    tmin_mean_c: float | None
    precip_mm: float | None


def _num(v: str) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def load_normals() -> list[Normal]:
    try:
        text = resources.files("warning").joinpath("data/normals.csv").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [Normal(r["station_id"], int(r["month"]), _num(r.get("tmax_mean_c", "")), _num(r.get("tmin_mean_c", "")),
                   _num(r.get("precip_mm", ""))) for r in csv.DictReader(text.splitlines())]


def scenario(now: datetime, normals: list[Normal] | None = None) -> list[list[dict[str, Any]]]:
    """The scenario as steps in time order (each a list of observations at one time, replayed in order).

    Reports of one station at one time are merged, so every station's reports are strictly increasing in time
    (the pipeline skips a report not newer than the station's last)."""
    normals = load_normals() if normals is None else normals
    july = [n for n in normals if n.month == 7]
    nov = [n for n in normals if n.month == 11 and n.tmin_mean_c is not None]
    t_end = now.replace(minute=0, second=0, microsecond=0)
    reports: dict[tuple[str, datetime], dict[str, Any]] = {}

    def put(sid: str, t: datetime, **values: Any) -> None:
        reports.setdefault((sid, t), {"station_id": sid, "time": iso_utc(t), "source": SOURCE}).update(values)

    for k, anomaly in enumerate(HEAT_ANOMALIES_C):  # one afternoon report a day, the last one now
        t = t_end - timedelta(days=len(HEAT_ANOMALIES_C) - 1 - k)
        for n in july:
            if n.tmax_mean_c is not None:
                put(n.station_id, t, tmax_c=round(n.tmax_mean_c + anomaly, 1))
    wet = max((n for n in july if n.precip_mm), key=lambda n: n.precip_mm or 0.0, default=None)
    if wet is not None and wet.precip_mm:
        for h in range(6):
            put(wet.station_id, t_end - timedelta(hours=5 - h), precip_mm=round(wet.precip_mm / 8, 1),
                precip_period_h=1)
    cold = min(nov, key=lambda n: n.tmin_mean_c or 0.0, default=None)
    if cold is not None and cold.tmin_mean_c is not None:
        put(cold.station_id, t_end - timedelta(hours=5), ground_tmin_c=round(cold.tmin_mean_c - 4.0, 1),
            tmin_c=round(cold.tmin_mean_c - 1.0, 1))
    steps: dict[datetime, list[dict[str, Any]]] = {}
    for (_, t), obs in sorted(reports.items(), key=lambda kv: kv[0][1]):
        steps.setdefault(t, []).append(obs)
    return [steps[t] for t in sorted(steps)]


async def replay(publish: Callable[[list[dict[str, Any]]], Awaitable[None]], *, pause_s: float = 2.0,
                 now: datetime | None = None) -> int:
    """Publish the scenario step by step (a pause between steps so the dashboard shows it unfold)."""
    steps = scenario(now or datetime.now(UTC))
    if not steps:
        log.warning("demo: no normals found (warning/data/normals.csv); nothing to replay")
        return 0
    n = 0
    for step in steps:
        await publish(step)
        n += len(step)
        await asyncio.sleep(pause_s)
    return n
