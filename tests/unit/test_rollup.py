"""Prefecture roll-ups are folded from their counties' warning events (grading.county_rollup), not from a
second signal per station: the prefecture's level is the highest current county warning, at once."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from warning import grading
from warning.operator_cli import replay_events
from warning.pipeline import StationGrader
from warning.rules import load_rules
from warning.shared.records import WarningLevel
from warning.shared.regions import RegionTree, StationRegistry

RULES = load_rules()
HEAT = RULES["heat"]
NOW = datetime(2026, 7, 14, 8, 0, tzinfo=UTC)
GRADER = StationGrader(RULES, StationRegistry.load(), RegionTree.load())
DUNHUANG, GUAZHOU = "620982", "620922"  # two counties of Jiuquan (620900)


def station_sig(county: str, station: str, level: str, time: str) -> dict[str, Any]:
    s = GRADER.registry.get(station)
    assert s is not None and s.county_code == county
    (out,) = GRADER.station_signals(s, "heat", WarningLevel.parse(level), "tmax_day", 40.0, time)
    return out


class Province:
    """County states fed station signals; every county event's roll-up folded into the prefecture's state."""

    def __init__(self) -> None:
        self.states: dict[str, Any] = {}
        self.prefecture_events: list[dict[str, Any]] = []

    def fold(self, sig: dict[str, Any]) -> list[dict[str, Any]]:
        key = sig["region_code"]
        state, caught = grading.catch_up(self.states.get(key), sig["time"], HEAT, NOW)
        state, own = grading.apply_signal(state, sig, HEAT, NOW)
        self.states[key] = state
        timed = [*caught, *([(own, sig["time"])] if own else [])]
        for event, at in timed:
            rollup = GRADER.rollup(event, at)
            if rollup is not None:
                assert event["region_level"] == "county"
                self.prefecture_events.extend(self.fold(rollup))
            else:
                assert event["region_level"] == "prefecture"
        return [event for event, _ in timed]


def test_a_station_report_makes_one_county_signal() -> None:
    sig = station_sig(DUNHUANG, "52418", "orange", "2026-07-14T06:00:00Z")
    assert (sig["region_code"], sig["region_level"], sig["prefecture_code"]) == (DUNHUANG, "county", "620900")


def test_prefecture_follows_the_highest_county_warning() -> None:
    p = Province()
    p.fold(station_sig(DUNHUANG, "52418", "yellow", "2026-07-14T06:00:00Z"))
    (issued,) = p.prefecture_events
    assert (issued["msg_type"], issued["level"], issued["region_code"], issued["region_level"]) == (
        "alert", "yellow", "620900", "prefecture")
    assert issued["region_name_zh"] == "酒泉市" and "酒泉市" in issued["headline_zh"]
    assert [s["station_id"] for s in issued["stations"]] == ["52418"]
    county = p.states[DUNHUANG]["warning"]
    assert (issued["onset"], issued["expires"]) == (county["onset"], county["expires"])

    # another county goes orange: the prefecture upgrades at once and lists both counties' stations
    p.fold(station_sig(GUAZHOU, "52424", "orange", "2026-07-14T07:00:00Z"))
    up = p.prefecture_events[-1]
    assert (up["msg_type"], up["change"], up["level"]) == ("update", "upgrade", "orange")
    assert [s["station_id"] for s in up["stations"]] == ["52424", "52418"]  # most severe first
    assert up["warning_id"] == issued["warning_id"] and up["references"] == [issued["id"]]

    # Guazhou's orange lapses at its warning's expiry (07-15T07:00) while Dunhuang keeps yellow alive: the county
    # cancels after its hold time; the roll-up already follows the county warning's own expiry, with no hold
    p.fold(station_sig(DUNHUANG, "52418", "yellow", "2026-07-15T06:00:00Z"))
    n = len(p.prefecture_events)
    p.fold({"kind": "tick", "region_code": GUAZHOU, "hazard": "heat", "time": "2026-07-15T07:30:00Z"})
    assert len(p.prefecture_events) == n and p.states[GUAZHOU]["pending"]  # the county's cancel is on hold
    p.fold({"kind": "tick", "region_code": GUAZHOU, "hazard": "heat", "time": "2026-07-15T08:30:00Z"})
    assert p.states[GUAZHOU]["warning"] is None
    down = p.prefecture_events[-1]
    assert (down["msg_type"], down["change"], down["level"]) == ("update", "downgrade", "yellow")
    assert [s["station_id"] for s in down["stations"]] == ["52418"]
    assert p.states["620900"]["t"] >= "2026-07-15T07:00:00Z"

    # the last county warning ends: so does the roll-up
    p.fold({"kind": "tick", "region_code": DUNHUANG, "hazard": "heat", "time": "2026-07-16T06:30:00Z"})
    p.fold({"kind": "tick", "region_code": DUNHUANG, "hazard": "heat", "time": "2026-07-16T07:30:00Z"})
    assert p.states[DUNHUANG]["warning"] is None
    end = p.prefecture_events[-1]
    assert end["msg_type"] == "cancel" and p.states["620900"]["warning"] is None


def test_prefecture_events_make_no_rollup_and_operator_cancel_suppresses_earlier_reports() -> None:
    p = Province()
    p.fold({**station_sig(DUNHUANG, "52418", "red", "2026-07-14T06:00:00Z"), "accepted_at": 100.0})
    (issued,) = p.prefecture_events
    assert GRADER.rollup(issued, "2026-07-14T06:00:00Z") is None
    state, cancel = grading.apply_signal(p.states["620900"], {
        "kind": "operator_cancel", "region_code": "620900", "hazard": "heat", "time": "2026-07-14T06:10:00Z",
        "accepted_at": 200.0}, HEAT, NOW)
    assert cancel is not None and cancel["change"] == "operator_cancel"
    # a county event from a report accepted before the cancel does not re-issue the prefecture; a later one does
    event = p.states[DUNHUANG]["warning"]
    late = GRADER.rollup({**issued, **event, "region_level": "county", "region_code": DUNHUANG, "level": "red",
                          "stations": issued["stations"]}, "2026-07-14T06:20:00Z", accepted_at=150.0)
    assert late is not None
    state, ev = grading.apply_signal(state, late, HEAT, NOW)
    assert ev is None
    state, ev = grading.apply_signal(state, {**late, "accepted_at": 250.0}, HEAT, NOW)
    assert ev is not None and (ev["msg_type"], ev["level"]) == ("alert", "red")


def test_replayed_prefecture_level_is_always_its_highest_county_level() -> None:
    """``ews replay`` folds the roll-ups too: after every event, each prefecture's warning level equals the highest
    current warning of its counties (random reports at Jiuquan's stations)."""
    rng = random.Random(5)
    stations = [s for s in GRADER.registry if s.prefecture_code == "620900"]
    t0 = datetime(2026, 7, 14, tzinfo=UTC)
    rows = []
    for h in range(24 * 6):
        for s in rng.sample(stations, 4):
            rows.append({"station_id": s.station_id, "time": (t0 + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "air_temp_c": round(rng.uniform(20, 42), 1)})
    events = replay_events(rows, t0, t0 + timedelta(days=7), hazards=["heat"], grader=GRADER, rules=RULES)
    assert any(e["region_level"] == "prefecture" for e in events)
    # events by data time (replay sends at the signal's time); after each time that changed a county's warning
    # (alert/update) or the roll-up, the roll-up's level is the highest county warning live at that time
    latest: dict[str, dict[str, Any]] = {}
    checked = 0
    for sent in sorted({e["sent"] for e in events}):
        now = [e for e in events if e["sent"] == sent]
        for e in now:
            latest[e["region_code"]] = e
        if not any(e["region_level"] == "prefecture" or e["msg_type"] != "cancel" for e in now):
            continue
        live = [e["level"] for code, e in latest.items()
                if code != "620900" and e["msg_type"] != "cancel" and e["expires"] > sent]
        top = max(live, key=WarningLevel.parse) if live else None
        pref = latest.get("620900")
        assert (pref["level"] if pref and pref["msg_type"] != "cancel" else None) == top, sent
        checked += 1
    assert checked > 10
