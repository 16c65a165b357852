"""`ews ingest` into the embedded tansu broker: every observation arrives exactly once, in batch messages of at
most 1000 observations that all belong to the message's partition; rejected rows land on obs.rejected; a replay
keeps time order and pauses in proportion to data time (fake clock, never wall time)."""

from __future__ import annotations

import argparse
import io
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.columns import batch_rows
from ingest.producer import EXIT_NOTHING_ACCEPTED, EXIT_OK, MAX_BATCH, add_ingest_parser, run_ingest
from tests.support import ISD
from warning.broker import EmbeddedBroker
from warning.shared.regions import StationRegistry
from warning.shared.topics import partition_for

pytestmark = pytest.mark.integration

PARTITIONS = 4


@pytest.fixture
def bootstrap(broker: EmbeddedBroker) -> str:
    """The conftest's fresh broker per test: the obs topic holds only this test's messages."""
    return broker.bootstrap


def ingest(bootstrap: str, *argv: str, **kw: Any) -> tuple[int, dict[str, Any], str]:
    p = argparse.ArgumentParser(prog="ews")
    add_ingest_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["ingest", *argv, "--bootstrap", bootstrap, "--partitions", str(PARTITIONS),
                         "--json-summary"])
    out, err = io.StringIO(), io.StringIO()
    code = run_ingest(args, stdout=out, stderr=err, **kw)
    return code, json.loads(out.getvalue()), err.getvalue()


def read_topic(bootstrap: str, topic: str, partitions: int, expected: int, count: Any = len,
               idle_s: float = 5.0, limit_s: float = 60.0) -> list[Any]:
    """All messages of ``topic`` (assign every partition, seek to the beginning) until ``expected`` items were
    counted or nothing arrived for ``idle_s``. Not end_offsets(): tansu reports them wrong (BROKER.md §5)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             fetch_max_wait_ms=100)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got: list[Any] = []
        n = 0
        start = last = time.monotonic()
        while n < expected and time.monotonic() - last < idle_s and time.monotonic() - start < limit_s:
            batch = consumer.poll(timeout_ms=200)
            for records in batch.values():
                for m in records:
                    got.append(m)
                    n += count([m])
                    last = time.monotonic()
        # a short extra poll: anything beyond the expected count (a duplicate) shows up here
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
        return got
    finally:
        consumer.close()


def obs_count(msgs: list[Any]) -> int:
    return sum(len(batch_rows(orjson.loads(m.value))) for m in msgs)


def table_file(path: Path, stations: list[str], hours: int, extra: str = "") -> list[tuple[str, str]]:
    """A CSV in the table format: every station every hour (time-ordered); returns the (station, time) keys."""
    keys = []
    lines = ["station_id,time,tmax_c,precip_mm,precip_period_h"]
    for h in range(hours):
        t = f"2026-07-{14 + h // 24:02d}T{h % 24:02d}:00:00Z"
        for i, s in enumerate(stations):
            lines.append(f"{s},{t},{20 + (i + h) % 15}.5,{h % 3}.0,1")
            keys.append((s, t))
    path.write_text("\n".join(lines) + "\n" + extra)
    return keys


def test_every_observation_once_in_partition_batches(bootstrap: str, tmp_path: Path) -> None:
    stations = [s.station_id for s in StationRegistry.load()]  # all 90
    path = tmp_path / "obs.csv"
    keys = table_file(path, stations, 72, extra="99999,2026-07-16T00:00:00Z,30,,\n"   # unknown station
                                                "52889,2026-07-16T00:00:00Z,abc,,\n")  # not a number
    code, summary, err = ingest(bootstrap, str(path))
    assert code == EXIT_OK, err
    assert summary["published"] == summary["accepted"] == len(keys) == 90 * 72
    assert summary["rejected"] == 2 and summary["failed"] == 0

    msgs = read_topic(bootstrap, "obs", PARTITIONS, len(keys), count=obs_count)
    arrived: list[tuple[str, str]] = []
    for m in msgs:
        body = orjson.loads(m.value)
        batch = batch_rows(body)
        assert "columns" in body  # ingest writes the column form
        assert 1 <= len(batch) <= MAX_BATCH
        assert isinstance(body["accepted_at"], float)
        assert m.key == batch[0]["station_id"].encode()
        assert {partition_for(o["station_id"], PARTITIONS) for o in batch} == {m.partition}
        arrived += [(o["station_id"], o["time"]) for o in batch]
    assert Counter(arrived) == Counter(keys)  # each exactly once
    assert any(len(batch_rows(orjson.loads(m.value))) == MAX_BATCH for m in msgs)  # full batches happen
    # per station, in time order across the partition's messages
    by_station: dict[str, list[str]] = {}
    for sid, t in arrived:
        by_station.setdefault(sid, []).append(t)
    assert all(ts == sorted(ts) for ts in by_station.values())

    rejected = read_topic(bootstrap, "obs.rejected", PARTITIONS, 2)
    assert len(rejected) == 2
    by_key = {m.key: orjson.loads(m.value) for m in rejected}
    unknown, bad = by_key[b"99999"], by_key[b"?"]  # the station id when known, "?" for a refused row
    assert unknown["reason"] == "station_id: unknown station '99999'"
    assert unknown["source"] == f"{path}@2026-07-16T00:00:00Z" and '"station_id":"99999"' in unknown["raw"]
    assert bad["source"] == f"{path}:{len(keys) + 3}" and bad["reason"].startswith("tmax_c")
    assert bad["raw"] == "52889,2026-07-16T00:00:00Z,abc,,"
    recs = [unknown, bad]
    assert all(set(r) == {"reason", "source", "time", "raw"} for r in recs)


def test_real_isd_slice_as_lanzhou(bootstrap: str) -> None:
    code, summary, err = ingest(bootstrap, str(ISD), "--as-station", "52889", "--since", "2017-07-01",
                                "--until", "2017-07-08")
    assert code == EXIT_OK, err
    assert summary["published"] == 7 * 24 and summary["rejected"] == 0 and summary["filtered"] == 8733 - 168
    msgs = read_topic(bootstrap, "obs", PARTITIONS, 168, count=obs_count)
    obs = [o for m in msgs for o in batch_rows(orjson.loads(m.value))]
    assert len(obs) == 168
    assert {m.partition for m in msgs} == {partition_for("52889", PARTITIONS)}
    assert [o["time"] for o in obs] == sorted(o["time"] for o in obs)
    assert obs[0] == {"station_id": "52889", "time": "2017-07-01T00:00:00Z", "air_temp_c": 27.2, "rh_pct": 68.9,
                      "dewpoint_c": 21.0, "wind_ms": 2.0, "pressure_hpa": 1002.5, "source": "isd-lite"}


def test_real_isd_unknown_station_goes_to_obs_rejected(bootstrap: str) -> None:
    code, summary, _ = ingest(bootstrap, str(ISD), "--since", "2017-03-01", "--until", "2017-03-02")
    assert code == EXIT_NOTHING_ACCEPTED  # every row rejected: the run says so
    assert summary["published"] == 0 and summary["rejected_by_reason"] == {"station_id": 24}
    recs = [orjson.loads(m.value) for m in read_topic(bootstrap, "obs.rejected", PARTITIONS, 24)]
    assert len(recs) == 24
    assert all(r["reason"] == "station_id: unknown station '54511'" for r in recs)


class FakeClock:
    """Time advances only when the replay sleeps; each pause is recorded with the data sent before it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_replay_speed_order_and_proportional_pauses(bootstrap: str, tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    keys_a = table_file(a, ["52889", "52533"], 6)  # hourly 00..05
    b.write_text("station_id,time,tmax_c\n52681,2026-07-14T00:30:00Z,25\n52681,2026-07-14T03:30:00Z,26\n")
    clock = FakeClock()
    code, summary, err = ingest(bootstrap, str(a), str(b), "--replay-speed", "3600", clock=clock,
                                sleep=clock.sleep)
    assert code == EXIT_OK, err
    assert summary["published"] == len(keys_a) + 2
    # data times 00:00 00:30 01:00 02:00 03:00 03:30 04:00 05:00 -> pauses of data delta / 3600 s
    assert clock.sleeps == pytest.approx([0.5, 0.5, 1.0, 1.0, 0.5, 0.5, 1.0])
    msgs = read_topic(bootstrap, "obs", PARTITIONS, summary["published"], count=obs_count)
    obs = [o for m in sorted(msgs, key=lambda m: (m.partition, m.offset))
           for o in batch_rows(orjson.loads(m.value))]
    assert len(obs) == summary["published"]
    # everything due before a pause was sent before it: no message mixes data times
    assert all(len({o["time"] for o in batch_rows(orjson.loads(m.value))}) == 1 for m in msgs)
    for sid in ("52889", "52533", "52681"):
        ts = [o["time"] for o in obs if o["station_id"] == sid]
        assert ts == sorted(ts) and len(ts) == (2 if sid == "52681" else 6)

    clock2 = FakeClock()  # twice the speed, half the pauses
    ingest(bootstrap, str(a), str(b), "--replay-speed", "7200", clock=clock2, sleep=clock2.sleep)
    assert clock2.sleeps == pytest.approx([s / 2 for s in clock.sleeps])


def test_existing_obs_topic_partition_count_wins(bootstrap: str, tmp_path: Path) -> None:
    """The worker routes by the obs topic's real partition count, so ingest must too."""
    from warning.shared.topics import ensure_topics

    ensure_topics(bootstrap, 2)
    stations = [s.station_id for s in StationRegistry.load()][:20]
    path = tmp_path / "obs.csv"
    keys = table_file(path, stations, 3)
    code, summary, err = ingest(bootstrap, str(path))  # asks for 4
    assert code == EXIT_OK and summary["published"] == len(keys)
    assert "has 2 partitions, not 4" in err
    msgs = read_topic(bootstrap, "obs", 2, len(keys), count=obs_count)
    assert obs_count(msgs) == len(keys)
    for m in msgs:
        assert {partition_for(o["station_id"], 2) for o in batch_rows(orjson.loads(m.value))} == {m.partition}
