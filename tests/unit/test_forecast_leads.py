"""Issue 18, point 1: every level has its own forecast horizon (CMA Order No. 16 "N小时内"), so a forecast beyond
a level's horizon can issue only the levels whose horizon covers it."""

from __future__ import annotations

from typing import Any

import pytest

from warning.pipeline import StationGrader
from warning.rules import load_rules, parse_rules
from warning.shared.regions import RegionTree, StationRegistry

RULES = load_rules()
GRADER = StationGrader(RULES, StationRegistry.load(), RegionTree.load())


def point(lead_h: float, window_h: float = 3, **values: float) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta

    issued = datetime(2026, 7, 14, 0, 0, tzinfo=UTC)
    start = issued + timedelta(hours=lead_h)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return {"station_id": "52889", "issued_at": issued.strftime(iso), "valid_from": start.strftime(iso),
            "valid_to": (start + timedelta(hours=window_h)).strftime(iso), "lead_h": lead_h, "values": values}


def levels(p: dict[str, Any], hazard: str) -> list[str]:
    return [s["level"] for s in GRADER.forecast(p) if s["hazard"] == hazard]


def test_each_level_has_the_order16_horizon() -> None:
    def leads(h: str) -> dict[str, float]:
        return {lr.level.colour: lr.forecast_lead_h for lr in RULES[h].levels}
    assert leads("rainstorm") == {"blue": 12, "yellow": 6, "orange": 3, "red": 3}
    assert leads("gale") == {"blue": 24, "yellow": 12, "orange": 6, "red": 6}
    assert leads("sandstorm") == {"yellow": 12, "orange": 6, "red": 6}
    assert leads("frost") == {"blue": 48, "yellow": 24, "orange": 24}
    assert leads("cold_wave") == {"blue": 48, "yellow": 24, "orange": 24, "red": 24}
    assert leads("heat") == {"yellow": 72, "orange": 24, "red": 24}
    assert RULES["rainstorm"].forecast_lead_h == 12 and RULES["gale"].forecast_lead_h == 24


@pytest.mark.parametrize(("lead", "want"), [
    (3.0, ["red"]), (3.5, ["yellow"]), (6.0, ["yellow"]), (6.5, ["blue"]), (11.0, ["blue"]), (12.0, ["blue"]),
    (12.5, [])])
def test_rainstorm_110mm_in_3h_is_red_only_within_3h(lead: float, want: list[str]) -> None:
    # 110 mm in a 3 h window gives rain_3h, rain_6h and rain_12h >= 110: red within 3 h, then the highest level
    # whose horizon covers the lead (yellow 6 h, blue 12 h); 11 h ahead is blue, never red (issue 18)
    assert levels(point(lead, **{"precip_mm": 110.0}), "rainstorm") == want


@pytest.mark.parametrize(("lead", "want"), [(6.0, "red"), (6.5, "yellow"), (12.0, "yellow"), (12.5, "blue"),
                                            (24.0, "blue"), (24.5, None)])
def test_gale_levels_by_lead(lead: float, want: str | None) -> None:
    got = levels(point(lead, 6, wind_ms=33.0), "gale")
    assert got == ([want] if want else [])


@pytest.mark.parametrize(("lead", "want"), [(6.0, "red"), (6.01, "yellow"), (12.0, "yellow"), (12.01, None)])
def test_sandstorm_levels_by_lead(lead: float, want: str | None) -> None:
    got = levels(point(lead, 6, visibility_m=40.0, wind_ms=12.0, rh_pct=20.0), "sandstorm")
    assert got == ([want] if want else [])


def test_a_bureau_table_with_one_hazard_horizon_applies_it_to_every_level() -> None:
    lv = {"basis_zh": "x", "basis_en": "x", "guidance_zh": "x", "guidance_en": "x"}
    doc = {"hazards": {"rainstorm": {
        "name_zh": "暴雨", "name_en": "Rainstorm", "cma_code": "11B03", "cap_category": "Met", "valid_hours": 6,
        "source": "s", "forecast_lead_h": 9,
        "levels": [{"level": "red", "all": [{"quantity": "rain_3h", "op": ">=", "value": 100.0}], **lv},
                   {"level": "blue", "forecast_lead_h": 12,
                    "all": [{"quantity": "rain_12h", "op": ">=", "value": 50.0}], **lv}]}}}
    rule = parse_rules(doc)["rainstorm"]
    assert {lr.level.colour: lr.forecast_lead_h for lr in rule.levels} == {"red": 9, "blue": 12}
    assert rule.forecast_lead_h == 12
    assert [lr.level.colour for lr in rule.within_lead(10).levels] == ["blue"]
