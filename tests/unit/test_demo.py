from datetime import UTC, datetime

from warning.demo import SOURCE, Normal, scenario
from warning.pipeline import StationGrader
from warning.rules import load_rules
from warning.shared.regions import RegionTree, StationRegistry

NORMALS = [Normal("52418", 7, 33.4, 18.0, 15.0), Normal("57006", 7, 29.0, 18.5, 100.0),
           Normal("56080", 11, 5.0, -9.5, 3.0)]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_scenario_is_labelled_relative_to_now_and_triggers_the_intended_levels() -> None:
    steps = scenario(NOW, NORMALS)
    reports = [o for step in steps for o in step]
    assert all(o["source"] == SOURCE and "synthetic" in SOURCE for o in reports)
    assert all(o["time"] <= "2026-11-26T12:00:00Z" for o in reports)
    for sid in {o["station_id"] for o in reports}:  # each station's reports strictly increase in time
        times = [o["time"] for o in reports if o["station_id"] == sid]
        assert times == sorted(set(times))
    assert [o["tmax_c"] for o in reports if o["station_id"] == "52418"] == [36.4, 37.9, 39.4, 41.4]
    single = [o for step in scenario(NOW, [Normal("56091", 7, 26.4, 13.8, 80.7), Normal("56091", 11, 9.0, -2.6, 7.0)])
              for o in step]
    assert [o["time"] for o in single] == sorted({o["time"] for o in single})  # one station, all parts merged
    grader = StationGrader(load_rules(), StationRegistry.load(), RegionTree.load())
    states: dict = {}
    levels: dict[tuple[str, str], str] = {}
    for step in steps:
        for sig in grader.observe_batch(states, step)[2]:
            if sig["region_level"] == "county":
                levels[(sig["station_id"], sig["hazard"])] = sig["level"]
    assert levels[("52418", "heat")] == "red"
    assert levels[("57006", "rainstorm")] == "yellow"  # 6 x 12.5 mm = 75 mm in 6 h
    assert levels[("56080", "frost")] == "orange"  # ground minimum -13.5 degC
