from datetime import UTC, datetime
from pathlib import Path

import pytest

from warning.grading import apply_signal, beijing_date, grade_daily, update_station
from warning.records import WarningLevel
from warning.rules import RulesError, load_rules, parse_rules

RULES = load_rules()
HEAT = RULES["heat"]
NOW = datetime(2026, 7, 14, 8, 0, tzinfo=UTC)


def test_rules_table_has_cma_heat_thresholds() -> None:
    assert [(r.level, r.threshold, r.consecutive_days) for r in HEAT.levels] == [
        (WarningLevel.RED, 40.0, 1), (WarningLevel.ORANGE, 37.0, 1), (WarningLevel.YELLOW, 35.0, 3)]
    assert HEAT.cma_code == "11B09"


@pytest.mark.parametrize(("doc", "msg"), [
    ({}, "no \\[hazards"),
    ({"hazards": {"heat": {"levels": []}}}, "no levels"),
    ({"hazards": {"heat": {"levels": [{"level": "red", "op": ">=", "threshold": 1}]}}}, "missing 'basis_zh'"),
    ({"hazards": {"heat": {**{k: "x" for k in ("name_zh", "name_en", "cma_code", "cap_category", "element",
                                              "source")}, "valid_hours": 24,
                           "levels": [{"level": "purple"}]}}}, "unknown level 'purple'"),
])
def test_malformed_rules_are_refused_with_a_clear_message(doc: dict, msg: str) -> None:
    with pytest.raises(RulesError, match=msg):
        parse_rules(doc)


def test_bad_threshold_type_named(tmp_path: Path) -> None:
    text = Path(__file__).parents[2].joinpath("warning/data/rules.toml").read_text()
    bad = tmp_path / "rules.toml"
    bad.write_text(text.replace("threshold = 40.0", 'threshold = "forty"'))
    with pytest.raises(RulesError, match=r"hazards.heat.levels\[2\]: 'threshold' has the wrong type"):
        load_rules(bad)


def test_beijing_day() -> None:
    assert beijing_date("2026-07-14T15:59:00Z") == "2026-07-14"
    assert beijing_date("2026-07-14T16:00:00Z") == "2026-07-15"


@pytest.mark.parametrize(("days", "level"), [
    ({"2026-07-14": 40.0}, WarningLevel.RED),
    ({"2026-07-14": 39.9}, WarningLevel.ORANGE),
    ({"2026-07-14": 37.0}, WarningLevel.ORANGE),
    ({"2026-07-12": 35.0, "2026-07-13": 36.0, "2026-07-14": 35.5}, WarningLevel.YELLOW),
    ({"2026-07-11": 35.0, "2026-07-13": 36.0, "2026-07-14": 35.5}, None),  # a gap breaks the run
    ({"2026-07-12": 34.9, "2026-07-13": 36.0, "2026-07-14": 35.5}, None),
    ({"2026-07-13": 41.0, "2026-07-14": 30.0}, None),  # the latest day decides
])
def test_grade_heat(days: dict[str, float], level: WarningLevel | None) -> None:
    assert grade_daily(days, HEAT)[0] == level


def test_station_state_is_idempotent_and_keeps_daily_max() -> None:
    s = update_station(None, {"time": "2026-07-14T04:00:00Z", "tmax_c": 38.0})
    s = update_station(s, {"time": "2026-07-14T06:00:00Z", "tmax_c": 36.0})
    assert s is not None and s["tmax"] == {"2026-07-14": 38.0}
    assert update_station(s, {"time": "2026-07-14T06:00:00Z", "tmax_c": 45.0}) is None  # replayed
    assert update_station(s, {"time": "2026-07-14T05:00:00Z", "tmax_c": 45.0}) is None  # older


def sig(level: str | None, station: str = "52418", time: str = "2026-07-14T06:00:00Z", value: float = 40.5
        ) -> dict[str, object]:
    return {"region_code": "620982", "region_name": "Dunhuang City", "region_name_zh": "敦煌市",
            "prefecture_code": "620900", "station_id": station, "station_name": "Dunhuang", "hazard": "heat",
            "level": level, "value": value, "time": time, "basis": "observed"}


def test_lifecycle_alert_same_level_upgrade_downgrade_cancel() -> None:
    st, ev = apply_signal(None, sig("orange", value=38), HEAT, NOW)
    assert ev is not None and ev["msg_type"] == "alert" and ev["level"] == "orange"
    assert ev["severity"] == "Severe" and ev["cma_code"] == "11B0903" and ev["certainty"] == "Observed"
    assert "敦煌市" in ev["headline_zh"] and "橙色" in ev["headline_zh"]
    first = ev
    st, ev = apply_signal(st, sig("orange", time="2026-07-14T07:00:00Z", value=38.5), HEAT, NOW)
    assert ev is None  # same level: no second alert
    st, ev = apply_signal(st, sig("red", "52424", time="2026-07-14T07:00:00Z"), HEAT, NOW)
    assert ev is not None and ev["msg_type"] == "update" and ev["level"] == "red"
    assert ev["warning_id"] == first["warning_id"] and ev["references"] == [first["id"]]
    assert [s["station_id"] for s in ev["stations"]] == ["52424", "52418"]  # most severe first
    st, ev = apply_signal(st, sig(None, "52424", time="2026-07-14T08:00:00Z"), HEAT, NOW)
    assert ev is not None and ev["msg_type"] == "update" and ev["level"] == "orange"
    st, ev = apply_signal(st, sig(None, time="2026-07-14T09:00:00Z"), HEAT, NOW)
    assert ev is not None and ev["msg_type"] == "cancel" and st["warning"] is None


def test_event_ids_are_deterministic_for_replays() -> None:
    _, a = apply_signal(None, sig("red"), HEAT, NOW)
    _, b = apply_signal(None, sig("red"), HEAT, datetime(2026, 7, 15, tzinfo=UTC))
    assert a is not None and b is not None and a["id"] == b["id"]
