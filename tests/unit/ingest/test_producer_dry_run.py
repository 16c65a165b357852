"""`ews ingest` without a broker: --dry-run on the real ISD-Lite file and on small broken files, the batching
sink on a fake producer, the replay schedule on a fake clock. Values asserted were read by hand from the file."""

from __future__ import annotations

import argparse
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.columns import batch_rows
from ingest.producer import (
    EXIT_BROKER,
    EXIT_NOTHING_ACCEPTED,
    EXIT_OK,
    EXIT_USAGE,
    MAX_BATCH,
    KafkaSink,
    Progress,
    add_ingest_parser,
    parse_iso,
    partition_for,
    reason_key,
    run_ingest,
)
from tests.support import ISD

# Lanzhou (52889) and Jiuquan (52533) are registry stations; 52889 = WMO of ISD USAF 528890.
GOOD = "2017 07 01 00   272   210 10025   200    20     7 -9999 -9999"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ews")
    add_ingest_parser(p.add_subparsers(dest="command", required=True))
    return p


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]

    @property
    def summary(self) -> dict[str, Any]:
        """The --json-summary object (last stderr line in a dry run)."""
        return json.loads(self.err.strip().splitlines()[-1])


def ingest(*argv: str, **kw: Any) -> Run:
    args = parser().parse_args(["ingest", *argv])
    assert args.func is run_ingest
    out, err = io.StringIO(), io.StringIO()
    code = run_ingest(args, stdout=out, stderr=err, **kw)
    return Run(code, out.getvalue(), err.getvalue())


def isd_file(tmp: Path, name: str, lines: list[bytes]) -> Path:
    path = tmp / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


# --------------------------------------------------------------------------------------------- real file
def test_real_isd_slice_as_lanzhou() -> None:
    run = ingest(str(ISD), "--dry-run", "--as-station", "52889", "--since", "2017-07-01T00:00:00Z",
                 "--until", "2017-07-02", "--json-summary")
    assert run.code == EXIT_OK, run.err
    recs = run.records
    assert len(recs) == 24
    assert [r["time"] for r in recs] == [f"2017-07-01T{h:02d}:00:00Z" for h in range(24)]
    assert {r["station_id"] for r in recs} == {"52889"}
    assert {r["source"] for r in recs} == {"isd-lite"}
    # line 4331: 2017 07 01 00   272   210 10025   200    20     7 -9999 -9999
    assert recs[0] == {"station_id": "52889", "time": "2017-07-01T00:00:00Z", "air_temp_c": 27.2,
                       "rh_pct": 68.9, "dewpoint_c": 21.0, "wind_ms": 2.0, "pressure_hpa": 1002.5,
                       "source": "isd-lite"}
    # line 4340: 2017 07 01 09   355   194  9991   200    30 ...
    assert recs[9]["air_temp_c"] == 35.5 and recs[9]["dewpoint_c"] == 19.4 and recs[9]["pressure_hpa"] == 999.1
    assert "pressure_hpa" not in recs[1]  # -9999
    s = run.summary
    assert s["read"] == 8733 and s["accepted"] == 24 and s["published"] == 24
    assert s["filtered"] == 8733 - 24 and s["rejected"] == 0 and s["rejected_by_reason"] == {}
    assert s["files"][0]["format"] == "isd-lite" and s["unreadable_files"] == [] and s["dry_run"] is True


def test_real_isd_without_as_station_is_beijing_and_rejected() -> None:
    """545110 -> WMO 54511 (Beijing) by the default rule: not a registry station, every row rejected, and the run
    says so in its exit code (3) and summary instead of ending as if the file had been replayed."""
    run = ingest(str(ISD), "--dry-run", "--since", "2017-01-01", "--until", "2017-01-02", "--json-summary")
    assert run.code == EXIT_NOTHING_ACCEPTED
    assert run.out == ""
    s = run.summary
    assert s["accepted"] == 0 and s["rejected"] == 24 and s["rejected_by_reason"] == {"station_id": 24}
    assert f"rejected {ISD}@2017-01-01T00:00:00Z: station_id: unknown station '54511'" in run.err


def test_a_file_of_a_station_outside_the_registry_says_how_to_replay_it() -> None:
    run = ingest(str(ISD), "--dry-run", "--since", "2017-01-01", "--until", "2017-01-02")
    assert run.code == EXIT_NOTHING_ACCEPTED
    assert "NOTHING ACCEPTED" in run.err and "--as-station WMO" in run.err and "AS_STATION=WMO" in run.err


def test_status_is_an_ingest_option() -> None:
    assert parser().parse_args(["ingest", "f"]).status == "actual"
    assert parser().parse_args(["ingest", "f", "--status", "exercise"]).status == "exercise"
    with pytest.raises(SystemExit):
        parser().parse_args(["ingest", "f", "--status", "drill"])


def test_human_summary_on_stderr(tmp_path: Path) -> None:
    run = ingest(str(ISD), "--dry-run", "--as-station", "52889", "--since", "2017-12-31T20:00Z")
    assert run.code == EXIT_OK
    assert len(run.records) == 4
    assert "8,733 rows read from 1 file(s)" in run.err
    assert "written (dry run): 4" in run.err and "rejected: 0" in run.err
    assert "\r" not in run.err  # no progress line when stderr is not a terminal


# --------------------------------------------------------------------------------------------- bad input
def test_bad_rows_are_rejected_with_reasons_and_good_rows_kept(tmp_path: Path) -> None:
    path = isd_file(tmp_path, "528890-99999-2017", [
        b"2017 07 01 00   272   210 10025   200    20     7 -9999 -9999",
        b"2017 07 01 01   290   220",  # truncated
        b"2017 07 01 02   3x0   220 -9999 -9999    10     0 -9999 -9999",  # non-integer
        b"2017 02 30 03   296   221 10022   110    20     7 -9999 -9999",  # impossible date
        b"2017 07 01 04   320   220 -9999   170    20     0 -9999 -9999",
        b"2017 07 01 04   320   220 -9999   170    20     0 -9999 -9999",  # duplicate
        b"2017 07 01 05   \xff30   230 -9999   140    30     0 -9999 -9999",  # not ASCII
        b"2017 07 01 06   700   220 10004   200    30     7 -9999 -9999",  # 70 degC: beyond the gross limit
        b"2017 07 01 07   350   220 -9999   180    40 -9999 -9999 -9999",
    ])
    run = ingest(str(path), "--dry-run", "--json-summary")  # 528890 -> 52889 by the default rule
    assert run.code == EXIT_OK, run.err
    assert [(r["station_id"], r["time"]) for r in run.records] == [
        ("52889", "2017-07-01T00:00:00Z"), ("52889", "2017-07-01T04:00:00Z"), ("52889", "2017-07-01T07:00:00Z")]
    s = run.summary
    assert s["read"] == 9 and s["accepted"] == 3 and s["rejected"] == 6
    by = s["rejected_by_reason"]
    assert by["expected N ISD-Lite fields, found N (truncated or wrong widths)"] == 1
    assert by["non-integer field '…'"] == 1
    assert by["impossible date/hour N-N-NTN"] == 1
    assert by["duplicate record for N-N-NTN"] == 1
    assert by["air_temp_c"] == 1
    assert sum(by.values()) == 6
    assert f"rejected {path}:2: expected 12 ISD-Lite fields, found 6" in run.err
    assert f"rejected {path}:7: not valid ascii" in run.err
    assert f"rejected {path}@2017-07-01T06:00:00Z: air_temp_c: 70 outside the physical range" in run.err


def test_unreadable_file_exits_2_and_other_files_are_processed(tmp_path: Path) -> None:
    good = isd_file(tmp_path, "528890-99999-2017", [GOOD.encode()])
    other = isd_file(tmp_path, "525330-99999-2017", [GOOD.replace("00   272", "01   280").encode()])
    broken_gz = tmp_path / "528890-99999-2016.gz"
    broken_gz.write_bytes(b"this is not gzip")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    missing = tmp_path / "nope-2017"
    run = ingest(str(good), str(missing), str(broken_gz), str(empty), str(other), "--dry-run", "--json-summary")
    assert run.code == EXIT_USAGE
    assert [(r["station_id"], r["time"]) for r in run.records] == [
        ("52889", "2017-07-01T00:00:00Z"), ("52533", "2017-07-01T01:00:00Z")]
    s = run.summary
    assert s["unreadable_files"] == [str(missing), str(broken_gz), str(empty)]
    assert s["read"] == 2 and s["published"] == 2
    errors = {f["path"]: f["error"] for f in s["files"]}
    assert "cannot read" in errors[str(missing)] and errors[str(good)] is None


def test_grid_files_are_refused_per_file(tmp_path: Path) -> None:
    grid = tmp_path / "forecast.nc"
    grid.write_bytes(b"CDF\x01")
    good = isd_file(tmp_path, "528890-99999-2017", [GOOD.encode()])
    run = ingest(str(grid), str(good), "--dry-run", "--json-summary")
    assert run.code == EXIT_USAGE
    assert len(run.records) == 1
    assert "forecast grid" in run.summary["files"][0]["error"] and "--format grid" in run.summary["files"][0]["error"]


def test_gzip_and_explicit_format(tmp_path: Path) -> None:
    path = tmp_path / "528890-99999-2017.gz"
    path.write_bytes(gzip.compress((GOOD + "\n").encode()))
    run = ingest(str(path), "--dry-run", "--format", "isd-lite")
    assert run.code == EXIT_OK and len(run.records) == 1


def test_table_file_many_stations_and_unknown_station(tmp_path: Path) -> None:
    path = tmp_path / "obs.csv"
    path.write_text("station_id,time,tmax_c,precip_mm,precip_period_h\n"
                    "52889,2026-07-14T06:00:00Z,36.5,0,24\n"
                    "52533,2026-07-14T06:00:00Z,33.0,,\n"
                    "99999,2026-07-14T06:00:00Z,30.0,,\n"
                    "52889,2026-07-14T07:00:00Z,,5.0,\n")  # precip without its period
    run = ingest(str(path), "--dry-run", "--json-summary")
    assert run.code == EXIT_OK
    assert [r["station_id"] for r in run.records] == ["52889", "52533"]
    assert run.records[0] == {"station_id": "52889", "time": "2026-07-14T06:00:00Z", "tmax_c": 36.5,
                              "precip_mm": 0.0, "precip_period_h": 24.0, "source": "table"}
    assert run.summary["rejected_by_reason"] == {"station_id": 1, "precip_period_h": 1}


# --------------------------------------------------------------------------------------------- arguments
def test_no_broker_without_dry_run_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    good = isd_file(tmp_path, "528890-99999-2017", [GOOD.encode()])
    run = ingest(str(good))
    assert run.code == EXIT_USAGE
    assert "--bootstrap" in run.err and "KAFKA_BOOTSTRAP" in run.err and "--dry-run" in run.err
    assert run.out == ""


def test_unreachable_broker_exits_1(tmp_path: Path) -> None:
    from warning.broker import free_port

    good = isd_file(tmp_path, "528890-99999-2017", [GOOD.encode()])
    run = ingest(str(good), "--bootstrap", f"127.0.0.1:{free_port()}")
    assert run.code == EXIT_BROKER
    assert "broker 127.0.0.1:" in run.err


def test_as_station_must_be_in_the_registry(tmp_path: Path) -> None:
    good = isd_file(tmp_path, "528890-99999-2017", [GOOD.encode()])
    run = ingest(str(good), "--dry-run", "--as-station", "54511")
    assert run.code == EXIT_USAGE and "54511" in run.err


def test_argument_parsing() -> None:
    p = parser()
    a = p.parse_args(["ingest", "a", "b", "--replay-speed", "3600", "--since", "2017-07-01",
                      "--until", "2017-07-01T08:00+08:00", "--partitions", "8"])
    assert a.files == ["a", "b"] and a.replay_speed == 3600.0 and a.format == "auto"
    assert a.since == "2017-07-01T00:00:00Z" and a.until == "2017-07-01T00:00:00Z" and a.partitions == 8
    for bad in (["--replay-speed", "0"], ["--replay-speed", "x"], ["--since", "yesterday"], ["--format", "xls"]):
        with pytest.raises(SystemExit):
            p.parse_args(["ingest", "a", *bad])
    assert parse_iso("2017-07-01T06:30:00Z") == "2017-07-01T06:30:00Z"


def test_since_not_before_until(tmp_path: Path) -> None:
    run = ingest("x", "--dry-run", "--since", "2017-07-02", "--until", "2017-07-01")
    assert run.code == EXIT_USAGE and "--since" in run.err


def test_reason_key() -> None:
    assert reason_key("station_id: unknown station '54511'") == "station_id"
    assert reason_key("duplicate record for 2017-01-01T00:00:00Z") == "duplicate record for N-N-NTN"
    assert reason_key("unknown station 'USW00023062' (no WMO index for it)") == \
        "unknown station '…' (no WMO index for it)"
    assert reason_key("") == "unknown"


# --------------------------------------------------------------------------------------------- replay, progress
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_replay_merges_files_by_time_and_sleeps_by_data_time(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    a.write_text("station_id,time,tmax_c\n52889,2026-07-14T00:00:00Z,30\n52889,2026-07-14T02:00:00Z,31\n"
                 "52889,2026-07-14T05:00:00Z,32\n")
    b.write_text("station_id,time,tmax_c\n52533,2026-07-14T01:00:00Z,20\n52533,2026-07-14T02:00:00Z,21\n"
                 "52533,2026-07-14T03:30:00Z,22\n")
    clock = FakeClock()
    run = ingest(str(a), str(b), "--dry-run", "--replay-speed", "3600", clock=clock, sleep=clock.sleep)
    assert run.code == EXIT_OK, run.err
    times = [r["time"][11:16] for r in run.records]
    assert times == ["00:00", "01:00", "02:00", "02:00", "03:30", "05:00"]
    # one hour of data per second: pauses of 1 h, 1 h, 1.5 h, 1.5 h of data time
    assert clock.sleeps == pytest.approx([1.0, 1.0, 1.5, 1.5])
    clock2 = FakeClock()
    ingest(str(a), str(b), "--dry-run", "--replay-speed", "7200", clock=clock2, sleep=clock2.sleep)
    assert clock2.sleeps == pytest.approx([s / 2 for s in clock.sleeps])


def test_progress_only_on_a_terminal_and_at_most_5_per_second() -> None:
    from ingest.producer import IngestStats

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock = FakeClock()
    stats = IngestStats(started=clock())
    tty = Tty()
    prog = Progress(tty, clock)
    assert prog.enabled
    for i in range(100):  # 1 s of calls, every 10 ms
        stats.read = i
        prog.update(stats, i)
        clock.now += 0.01
    assert 4 <= tty.getvalue().count("\r") <= 6
    assert "rows/s" in tty.getvalue()
    plain = io.StringIO()
    Progress(plain, clock).update(stats, 1, force=True)
    assert plain.getvalue() == ""


# --------------------------------------------------------------------------------------------- batching sink
class FakeFuture:
    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def add_callback(self, fn: Any, *args: Any) -> FakeFuture:
        fn(*args, None)
        return self

    def add_errback(self, fn: Any, *args: Any) -> FakeFuture:
        return self


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, topic: str, value: bytes, key: bytes, partition: int | None = None) -> FakeFuture:
        self.sent.append({"topic": topic, "value": json.loads(value), "key": key, "partition": partition})
        return FakeFuture()

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


def obs_rows(stations: list[str], n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        for s in stations:
            yield {"station_id": s, "time": f"2026-07-14T{i % 24:02d}:00:00Z", "tmax_c": 30.0, "source": "t"}


def test_sink_batches_by_partition_at_most_1000_with_first_station_key() -> None:
    from warning.shared.regions import StationRegistry

    stations = [s.station_id for s in StationRegistry.load()][:40]
    prod = FakeProducer()
    clock = FakeClock()
    sink = KafkaSink(prod, 4, clock, partition_for)
    rows = list(obs_rows(stations, 120))
    for r in rows:
        sink.add(r)
    published, failed, error = sink.close()
    assert (published, failed, error) == (len(rows), 0, None)
    seen = []
    for m in prod.sent:
        batch = batch_rows(m["value"])
        assert m["topic"] == "obs" and 1 <= len(batch) <= MAX_BATCH
        assert {partition_for(o["station_id"], 4) for o in batch} == {m["partition"]}
        assert m["key"] == batch[0]["station_id"].encode()
        assert isinstance(m["value"]["accepted_at"], float)
        seen += batch
    assert sorted(json.dumps(o, sort_keys=True) for o in seen) == sorted(json.dumps(o, sort_keys=True) for o in rows)
    assert any(len(batch_rows(m["value"])) == MAX_BATCH for m in prod.sent)


def test_sink_writes_the_status_of_an_exercise_on_every_batch_and_none_for_actual() -> None:
    from ingest.columns import decode_batch

    for status, expected in (("exercise", "exercise"), ("actual", None)):
        prod = FakeProducer()
        sink = KafkaSink(prod, 4, FakeClock(), partition_for, status=status)
        for r in obs_rows(["52889", "52533"], 3):
            sink.add(r)
        assert sink.close()[:2] == (6, 0)
        assert {m["value"].get("status") for m in prod.sent} == {expected}
        assert {decode_batch(json.dumps(m["value"]).encode()).status for m in prod.sent} == {status}


def test_sink_time_flush_and_size_split() -> None:
    prod = FakeProducer()
    clock = FakeClock()
    sink = KafkaSink(prod, 4, clock, partition_for, flush_interval_s=0.5, max_bytes=2000)
    sink.add(next(obs_rows(["52889"], 1)))
    sink.tick(clock.now + 0.4)
    assert prod.sent == []
    sink.tick(clock.now + 0.5)
    assert len(prod.sent) == 1
    for r in obs_rows(["52889"], 60):  # ~80 B each: 60 rows > 2000 B -> split into messages under the limit
        sink.add(r)
    sink.flush()
    sizes = [len(batch_rows(m["value"])) for m in prod.sent[1:]]
    assert sum(sizes) == 60 and len(sizes) > 1
    assert all(len(json.dumps(m["value"])) <= 2000 for m in prod.sent[1:])


def test_partition_for_matches_the_worker() -> None:
    from warning.shared.regions import StationRegistry
    from warning.shared.topics import partition_for as worker_partition_for

    for s in StationRegistry.load():
        for n in (1, 3, 4, 8):
            assert partition_for(s.station_id, n) == worker_partition_for(s.station_id, n)


def test_sink_failures_are_counted_not_raised_late() -> None:
    from ingest.producer import SinkFailed

    class Refusing(FakeProducer):
        def send(self, topic: str, value: bytes, key: bytes, partition: int | None = None) -> FakeFuture:
            raise TimeoutError("Failed to update metadata after 30.0 secs")

    class FailingFuture(FakeFuture):
        def add_callback(self, fn: Any, *args: Any) -> FakeFuture:
            return self

        def add_errback(self, fn: Any, *args: Any) -> FakeFuture:
            fn(*args, RuntimeError("NotLeaderForPartition"))
            return self

    class Nacking(FakeProducer):
        def send(self, topic: str, value: bytes, key: bytes, partition: int | None = None) -> FakeFuture:
            super().send(topic, value, key, partition)
            return FailingFuture()

    clock = FakeClock()
    sink = KafkaSink(Refusing(), 4, clock, partition_for, max_batch=2)
    sink.add(next(obs_rows(["52889"], 1)))
    with pytest.raises(SinkFailed):
        sink.add(next(obs_rows(["52889"], 1)))
    assert sink.close()[:2] == (0, 2)

    sink = KafkaSink(Nacking(), 4, clock, partition_for)
    for r in obs_rows(["52889", "52533"], 3):
        sink.add(r)
    published, failed, error = sink.close()
    assert (published, failed) == (0, 6) and error is not None and "NotLeaderForPartition" in error
