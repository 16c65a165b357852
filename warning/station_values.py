"""Station latest values and the last days, for the console (issue 20; served as ``GET /api/v1/stations/latest``
by ``warning.web.console``).

Station state lives in faust tables partitioned by station (the ``observations`` agent's ``StationColumns``); the
worker that answers an HTTP request may own none of those partitions. So every worker, on a timer
(``PUBLISH_EVERY_S``), summarises the partitions it owns from the state the grade path already keeps (last report
time, the "now" values, the 3-day ring of daily extremes, the 150-day daily-rain ring) and publishes one record per
block of 256 station slots of an obs partition to the small compacted topic ``stations.latest`` (key:
``partition:block``); every worker mirrors that topic into :class:`StationValuesView`. Nothing is added to the
per-observation hot path: the cost is one pass over the worker's stations a minute (~50 ms for 2,400 stations,
yielding between blocks) and one record per block whose summary changed; the view holds one record per block
(~700 B a station). Values lag the reports by up to ``PUBLISH_EVERY_S``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from ingest.station_columns import BLOCK, DAY_FIELDS, KEEP_DAYS, NONE, NOW_FIELDS, StationColumns, iso_day
from warning.shared.bus import now_iso
from warning.shared.times import iso_utc

log = logging.getLogger(__name__)

PUBLISH_EVERY_S = 60.0  # the default of EWS_STATION_VALUES_S
SPARK_DAYS = 7  # days in a station's sparkline (daily rain from the 150-day ring; extremes only for the last 3)
DAY_KEYS = {"tmax": "tmax_c", "tmin": "tmin_c", "gtmin": "ground_tmin_c", "wmax": "wind_max_ms",
            "gmax": "gust_max_ms", "rain": "precip_mm"}
NOW_KEYS = {"visibility_m": "visibility_m", "wind_ms": "wind_ms", "rh_pct": "rh_pct"}


def _num(v: float) -> float | None:
    return None if v != v or math.isinf(v) else round(float(v), 1)


def summarise(columns: StationColumns, lo: int = 0, hi: int | None = None) -> dict[str, dict[str, Any]]:
    """station id -> {"time", "latest": today's extremes and the latest instantaneous values, "days": the last
    SPARK_DAYS days (tmax/tmin where the 3-day ring has them, daily rain)} of one partition's station state
    (slots ``lo`` to ``hi``)."""
    a = columns.arrays
    out: dict[str, dict[str, Any]] = {}
    for slot in range(lo, len(columns.station_ids) if hi is None else min(hi, len(columns.station_ids))):
        sid = columns.station_ids[slot]
        t = float(a["t"][slot])
        if not math.isfinite(t):
            continue
        latest: dict[str, Any] = {}
        for i, f in enumerate(NOW_FIELDS):
            latest[NOW_KEYS[f]] = _num(a["now"][slot, i])
        day_end = int(a["day_end"][slot])
        extremes: dict[int, dict[str, float | None]] = {}
        if day_end != NONE:
            for u in range(day_end - KEEP_DAYS + 1, day_end + 1):
                row = a["day"][slot, u % KEEP_DAYS]
                extremes[u] = {DAY_KEYS[f]: _num(row[i]) for i, f in enumerate(DAY_FIELDS)}
            latest.update(extremes[day_end])
        pd_end, pd = int(a["pd_end"][slot]), a["pd"]
        end = max(day_end, pd_end)
        days = []
        if end != NONE:
            for u in range(end - SPARK_DAYS + 1, end + 1):
                day = extremes.get(u, {})
                rain = day.get("precip_mm")
                if rain is None and pd_end != NONE and pd_end - pd.shape[1] < u <= pd_end:
                    rain = _num(pd[slot, u % pd.shape[1]])
                days.append({"day": iso_day(u), "tmax_c": day.get("tmax_c"), "tmin_c": day.get("tmin_c"),
                             "precip_mm": rain})
        out[sid] = {"time": iso_utc(t),
                    "day": iso_day(day_end) if day_end != NONE else None, "latest": latest, "days": days}
    return out


class StationValuesView:
    """The mirror of ``stations.latest``: per record key (obs partition and block), its stations' summaries. A
    station is taken from the record with its newest report (a partition's previous owner may publish once more
    after a rebalance)."""

    def __init__(self) -> None:
        self.by_partition: dict[str, dict[str, dict[str, Any]]] = {}
        self.changed_at = ""

    def mirror(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:
            self.by_partition.pop(key.decode(), None)
            return
        try:
            self.by_partition[key.decode()] = orjson.loads(value)["stations"]
        except (ValueError, KeyError, TypeError):
            log.warning("stations.latest: unreadable record for key %r", key)
            return
        self.changed_at = now_iso()

    def stations(self) -> list[dict[str, Any]]:
        best: dict[str, dict[str, Any]] = {}
        for stations in self.by_partition.values():
            for sid, s in stations.items():
                if sid not in best or s["time"] > best[sid]["time"]:
                    best[sid] = s
        return [{"station_id": sid, **best[sid]} for sid in sorted(best)]


class StationValuesPublisher:
    """The timer's work on one worker: its owned obs partitions' summaries, one record per block of BLOCK station
    slots (key ``partition:block``: ~170 KiB a record, under Kafka's 1 MB default, where a whole partition of
    2,400 stations is 1.6 MiB), each sent when it changed; the loop yields between blocks (~6 ms each) so the
    agents on this event loop are not held up for the whole pass (~50 ms for 2,400 stations)."""

    def __init__(self, topic: str, owned: Callable[[], Iterable[int]],
                 columns_of: Callable[[int], StationColumns | None],
                 send: Callable[[str, bytes, bytes], Awaitable[None]]) -> None:
        self.topic, self.owned, self.columns_of, self.send = topic, owned, columns_of, send
        self._sent: dict[str, bytes] = {}  # record key -> digest of the last record sent from here

    async def publish(self) -> int:
        sent = 0
        try:
            for part in sorted(self.owned()):
                columns = self.columns_of(part)
                if columns is None:  # not loaded here yet: the agent restores it with its first batch
                    continue
                for block in range((len(columns.station_ids) + BLOCK - 1) // BLOCK):
                    stations = summarise(columns, block * BLOCK, (block + 1) * BLOCK)
                    await asyncio.sleep(0)
                    if not stations:
                        continue
                    key = f"{part}:{block}"
                    digest = hashlib.blake2b(orjson.dumps(stations, option=orjson.OPT_SORT_KEYS),
                                             digest_size=16).digest()
                    if self._sent.get(key) == digest:
                        continue
                    await self.send(self.topic, key.encode(), orjson.dumps({"partition": part, "at": now_iso(),
                                                                            "stations": stations}))
                    self._sent[key] = digest
                    sent += 1
        except Exception:  # a timer that raises would stop the app: log and try again next time
            log.exception("stations.latest: publishing the station summaries failed")
        return sent
