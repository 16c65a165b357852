"""Live or not, without a broker: chain keys per status, the staleness horizon and the expired-alert guard in the
grade stage, exercise events stamped with data times, CAP status and note, subscriptions' statuses, batch
envelopes, per-status station state keys, the rules' horizons and the Makefile's replay options."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from alerts.routing import matches
from alerts.subscriptions import SubscriptionError, new_subscription
from ingest.columns import BatchError, decode_batch, encode_batch
from tests.support import CAP_XSD
from warning import grading
from warning.cap import render_cap, validate_cap
from warning.grade import GradeStage
from warning.pipeline import StationGrader
from warning.rules import RulesError, load_rules, parse_rules
from warning.shared.bus import DataClock, SignalSink
from warning.shared.records import WarningLevel, chain_key, parse_chain_key
from warning.shared.regions import RegionTree, StationRegistry
from warning.shared.sealing import KeyRing, Sealer
from warning.shared.times import iso_utc
from warning.web.views import LiveFeed, WarningsView

RULES = load_rules()
GRADER = StationGrader(RULES, StationRegistry.load(), RegionTree.load())
ROOT = Path(__file__).resolve().parents[2]
SEALER = Sealer(KeyRing.generate())


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def heat_signal(t: datetime, level: str = "red", hazard: str = "heat", **extra: Any) -> dict[str, Any]:
    station = GRADER.registry.get("52418")
    assert station is not None
    (sig,) = GRADER.station_signals(station, hazard, WarningLevel.parse(level), "tmax_day", 40.6, iso(t), **extra)
    return sig


class Router:
    def __init__(self) -> None:
        self.routed: list[dict[str, Any]] = []

    async def route(self, event: Any) -> None:
        self.routed.append(event)

    async def backfill(self, event: Any, sub_id: str) -> bool:
        return True


HEADERS: list[tuple[str, Any]] = []  # (topic, headers) of every record the stages below produced


def stage() -> tuple[GradeStage, Router, list[tuple[str, bytes, bytes]], dict[str, Any]]:
    sent: list[tuple[str, bytes, bytes]] = []

    async def produce(topic: str, key: bytes, value: bytes, partition: int | None, headers: Any = None) -> None:
        sent.append((topic, key, value))
        HEADERS.append((topic, headers))
    router, table = Router(), {}
    signals = SignalSink(produce, "signals", 4, SEALER)
    grade = GradeStage(rules=RULES, rollups=GRADER, region_state=table, signals=signals, produce=produce,
                       warnings_topic="warnings", router=router, clock=DataClock())
    return grade, router, sent, table


def fold(grade: GradeStage, sigs: list[dict[str, Any]]) -> dict[str, Any] | None:
    by_key: dict[str, list[Any]] = {}
    for sig in sigs:
        by_key.setdefault(chain_key(sig["region_code"], sig["hazard"], sig.get("status", "actual")), []).append(sig)
    state = None
    for key, group in by_key.items():
        state, _ = asyncio.run(grade.grade_key(key, group))
        if state is not None:
            grade.region_state[key] = state  # type: ignore[index]
    return state


def test_chain_keys_keep_the_actual_keys_and_separate_exercise_and_test() -> None:
    assert chain_key("620982", "heat") == "620982:heat"
    assert chain_key("620982", "heat", "exercise") == "620982:heat:exercise"
    for status in ("actual", "exercise", "test"):
        assert parse_chain_key(chain_key("620982", "cold_wave", status)) == ("620982", "cold_wave", status)


def test_an_actual_report_past_the_horizon_issues_nothing_and_a_fresh_one_does() -> None:
    grade, router, sent, table = stage()
    now = datetime.now(UTC).replace(microsecond=0)
    fold(grade, [heat_signal(now - timedelta(hours=40), accepted_at=now.timestamp())])  # heat's horizon: 36 h
    assert sent == [] and router.routed == [] and table == {}
    fold(grade, [heat_signal(now - timedelta(hours=1), accepted_at=now.timestamp())])
    assert [orjson.loads(v)["msg_type"] for t, _, v in sent if t == "warnings"] == ["alert"]
    assert len(router.routed) == 1 and router.routed[0]["status"] == "actual"


def test_warning_records_carry_headers_for_consumers() -> None:
    """Event type, hazard, level, region level (and region code, status) as Kafka headers of every warnings
    record: the county alert and, after the roll-up, nothing else is needed to route it."""
    grade, _, sent, _ = stage()
    HEADERS.clear()
    now = datetime.now(UTC).replace(microsecond=0)
    fold(grade, [heat_signal(now - timedelta(hours=1), accepted_at=now.timestamp())])
    [(_, headers)] = [(t, h) for t, h in HEADERS if t == "warnings"]
    event = orjson.loads(next(v for t, _, v in sent if t == "warnings"))
    assert dict(headers) == {"ews-event-type": b"warning.alert", "ews-hazard": b"heat", "ews-level": b"red",
                             "ews-region-level": b"county", "ews-region-code": event["region_code"].encode(),
                             "ews-status": b"actual"}


def test_the_horizon_is_measured_from_when_the_report_was_accepted() -> None:
    """A worker catching up on a backlog still warns for reports that were live when the API took them (a
    rainstorm report 4 h old: past its 3 h horizon now, within it when accepted, valid for 6 h)."""
    t = datetime.now(UTC) - timedelta(hours=4)
    late, _, _, _ = stage()
    fold(late, [heat_signal(t, "blue", "rainstorm", accepted_at=datetime.now(UTC).timestamp())])
    backlog, router, _, _ = stage()
    fold(backlog, [heat_signal(t, "blue", "rainstorm", accepted_at=(t + timedelta(minutes=5)).timestamp())])
    assert late.router.routed == [] and len(router.routed) == 1  # type: ignore[attr-defined]


def test_an_actual_alert_already_expired_is_kept_but_not_routed() -> None:
    """30 h old: within heat's 36 h horizon, but its 24 h validity has passed."""
    grade, router, sent, _ = stage()
    fold(grade, [heat_signal(datetime.now(UTC) - timedelta(hours=30))])
    assert [orjson.loads(v)["msg_type"] for t, _, v in sent if t == "warnings"] == ["alert"]
    assert router.routed == []


def test_an_exercise_of_history_is_its_own_chain_stamped_with_its_data_times() -> None:
    grade, router, sent, table = stage()
    t = datetime(2017, 6, 9, 6, tzinfo=UTC)
    now = datetime.now(UTC) - timedelta(hours=1)
    fold(grade, [heat_signal(t, status="exercise"), heat_signal(now, "orange")])
    assert set(table) == {"620982:heat:exercise", "620982:heat"}
    events = {e["status"]: e for e in router.routed}
    drill, live = events["exercise"], events["actual"]
    assert drill["msg_type"] == live["msg_type"] == "alert" and drill["warning_id"] != live["warning_id"]
    assert drill["sent"] == iso(t) and drill["expires"] == iso(t + timedelta(hours=24))
    assert "EXERCISE" in drill["note"] and "note" not in live
    assert {k for _, k, _ in sent} >= {b"620982:heat:exercise", b"620982:heat"}


def test_ticks_and_operator_cancels_keep_the_chain_of_their_status() -> None:
    grade, _, sent, table = stage()
    fold(grade, [heat_signal(datetime.now(UTC) - timedelta(hours=1), status="test")])
    asyncio.run(grade.tick())
    tick = orjson.loads([v for t, _, v in sent if t == "signals"][-1])
    assert tick["kind"] == "tick" and tick["status"] == "test"
    event = orjson.loads(next(v for t, _, v in sent if t == "warnings"))
    asyncio.run(grade.operator_cancel(event))
    cancel = orjson.loads([v for t, _, v in sent if t == "signals"][-1])
    assert cancel["kind"] == "operator_cancel" and cancel["status"] == "test"
    assert list(table) == ["620982:heat:test"]


def test_cap_of_an_exercise_says_so_and_is_valid() -> None:
    event = grading.apply_signal(None, heat_signal(datetime(2017, 6, 9, 6, tzinfo=UTC), status="exercise"),
                                 RULES["heat"])[1]
    assert event is not None
    xml = render_cap(event, rules=RULES)
    assert b"<status>Exercise</status>" in xml and b"<note>" in xml
    assert validate_cap(xml, CAP_XSD) == []
    test_xml = render_cap({**event, "status": "test", "note": ""}, rules=RULES)
    assert b"<status>Test</status>" in test_xml and b"TEST: not a real warning" in test_xml
    assert b"<status>Actual</status>" in render_cap({**event, "status": "actual"}, rules=RULES)


def test_subscriptions_receive_actual_only_unless_they_opt_in() -> None:
    known = {"region": lambda code: True, "hazards": set(RULES)}
    base = {"name": "x", "url": "https://example.org/h", "regions": ["620000"]}
    plain = new_subscription(base, known_region=known["region"], known_hazards=known["hazards"])
    drills = new_subscription({**base, "statuses": ["actual", "exercise"]}, known_region=known["region"],
                              known_hazards=known["hazards"])
    assert plain.statuses == ["actual"]
    event = {"hazard": "heat", "level": "red", "region_code": "620982", "status": "exercise"}
    covers = RegionTree.load().covers
    assert not matches(plain, event, covers) and matches(drills, event, covers)
    assert matches(plain, {**event, "status": "actual"}, covers)
    assert matches(plain, {k: v for k, v in event.items() if k != "status"}, covers)  # events before statuses
    for bad in (["drill"], []):
        with pytest.raises(SubscriptionError, match="statuses"):
            new_subscription({**base, "statuses": bad}, known_region=known["region"], known_hazards=known["hazards"])


def test_batches_carry_their_status_in_the_envelope() -> None:
    rows = [{"station_id": "52418", "time": "2026-07-14T06:00:00Z", "tmax_c": 40.6}]
    now = datetime(2026, 7, 14, 8, tzinfo=UTC)
    assert b"status" not in encode_batch(rows, 1.0)
    assert decode_batch(encode_batch(rows, 1.0), now=now).status == "actual"
    assert decode_batch(encode_batch(rows, 1.0, "exercise"), now=now).status == "exercise"
    with pytest.raises(BatchError, match="status"):
        decode_batch(orjson.dumps({"status": "live", "observations": rows}), now=now)


def test_exercise_station_state_has_keys_of_its_own() -> None:
    from ingest.partition_store import FoldParams, PartitionStore, QualityControl
    from ingest.station_columns import SlotInfo

    tables: dict[str, dict[str, Any]] = {name: {} for name in ("fast", "daily", "qc", "log")}
    actual = PartitionStore(tables, lambda sid: SlotInfo(36.0, 1.0, 0.0), None,  # type: ignore[arg-type]
                            QualityControl({}, {}), FoldParams(0.85, 2.0))
    drill = actual.namespaced("exercise")
    assert (actual.prefix, drill.prefix) == ("", "exercise|")
    cols = decode_batch(encode_batch([{"station_id": "52418", "time": "2026-07-14T06:00:00Z", "tmax_c": 40.6}], 1.0),
                        now=datetime(2026, 7, 14, 8, tzinfo=UTC)).columns
    ps = drill.get(0)
    drill.apply(ps, cols)
    drill.store(0, ps, cols)
    assert all(key.startswith("exercise|0:") for t in tables.values() for key in t) and tables["log"]
    assert actual.get(0).columns.station_ids == [] and drill.get(0).columns.station_ids == ["52418"]


def test_rules_give_every_hazard_a_staleness_horizon() -> None:
    assert {h: r.stale_after_h for h, r in RULES.items()} == {
        "rainstorm": 3.0, "flash_flood": 3.0, "gale": 3.0, "sandstorm": 3.0,
        "heat": 36.0, "frost": 36.0, "cold_wave": 36.0, "heat_health": 36.0, "drought": 36.0}
    import tomllib

    doc = tomllib.loads((ROOT / "warning/data/rules.toml").read_text(encoding="utf-8"))
    del doc["hazards"]["heat"]["stale_after_h"]
    assert parse_rules(doc)["heat"].stale_after_h == 36.0  # a bureau's table without it: the packaged value
    doc["hazards"]["heat"]["stale_after_h"] = 0
    with pytest.raises(RulesError, match="stale_after_h"):
        parse_rules(doc)


def test_a_drill_stays_active_on_its_own_clock_and_live_warnings_expire_on_the_wall_clock() -> None:
    view = WarningsView(LiveFeed())
    old = {"id": "e1", "warning_id": "w1", "seq": 1, "msg_type": "alert", "hazard": "heat", "level": "red",
           "expires": "2017-06-10T06:00:00Z"}
    view.mirror(b"620982:heat:exercise", orjson.dumps({**old, "status": "exercise"}))
    view.mirror(b"620982:heat", orjson.dumps({**old, "id": "e2", "warning_id": "w2", "status": "actual"}))
    assert [e["id"] for e in view.active()] == ["e1"]


def test_make_run_passes_the_file_the_station_and_the_status() -> None:
    out = subprocess.run(["make", "-n", "--no-print-directory", "run", "FILE=f.isd", "AS_STATION=52889",
                          "STATUS=actual"], cwd=ROOT, capture_output=True, text=True, check=False).stdout
    assert "ews run --replay f.isd --as-station 52889 --status actual" in out
    demo = subprocess.run(["make", "-n", "--no-print-directory", "run"], cwd=ROOT, capture_output=True, text=True,
                          check=False).stdout
    assert "ews run --demo" in demo and "--status" not in demo


def test_a_forecast_is_stale_by_its_issue_time_after_the_forecast_horizon_not_the_report_one() -> None:
    """A global model run reaches the bureau hours after its reference time (ECMWF 00 UTC: 05:45-07:34 UTC, open
    data an hour later): an hourly hazard's 3 h report horizon would let no such run warn; forecasts have 12 h."""
    from warning.grading import past_horizon

    assert {h: r.forecast_stale_after_h for h, r in RULES.items()} == {
        "rainstorm": 12.0, "flash_flood": 12.0, "gale": 12.0, "sandstorm": 12.0,
        "heat": 36.0, "frost": 36.0, "cold_wave": 36.0, "heat_health": 36.0, "drought": 36.0}
    accepted = datetime(2026, 7, 14, 8, tzinfo=UTC).timestamp()
    rain = RULES["rainstorm"]

    def signal(hours_ago: float, basis: str) -> dict[str, Any]:
        return {"time": iso_utc(accepted - hours_ago * 3600), "basis": basis}

    assert not past_horizon(signal(7.5, "forecast"), rain, accepted)  # the 00 UTC run, ingested at 07:30
    assert past_horizon(signal(12.5, "forecast"), rain, accepted)
    assert past_horizon(signal(3.5, "observed"), rain, accepted)  # a report keeps its own 3 h
    assert not past_horizon(signal(30, "forecast"), RULES["heat"], accepted)  # the longer of the two
    import tomllib

    doc = tomllib.loads((ROOT / "warning/data/rules.toml").read_text(encoding="utf-8"))
    doc["hazards"]["rainstorm"]["forecast_stale_after_h"] = 6
    assert parse_rules(doc)["rainstorm"].forecast_stale_after_h == 6.0  # a bureau's own, per hazard
    del doc["defaults"]["forecast_stale_after_h"]
    assert parse_rules(doc)["gale"].forecast_stale_after_h == 12.0  # left out: the packaged value
    doc["defaults"]["forecast_stale_after_h"] = -1
    with pytest.raises(RulesError, match="forecast_stale_after_h"):
        parse_rules(doc)
