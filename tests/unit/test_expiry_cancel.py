"""Issue 18, point 6: expiry, extend and cancel agree. An event's ``expires`` is never before its ``sent`` (a cancel
is in force when it is sent), a station still meeting the level extends the warning before receivers see it expire,
operator cancels say an operator cancelled them, and English CAP text names stations in English."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lxml import etree

from warning.cap import CAP_NS, render_cap
from warning.grading import apply_signal
from warning.rules import load_rules

RULES = load_rules()
NS = {"c": CAP_NS}


def sig(hazard: str, level: str | None, time: str, **kw: Any) -> dict[str, Any]:
    return {"region_code": "620982", "region_name": "Dunhuang City", "region_name_zh": "敦煌市",
            "prefecture_code": "620900", "station_id": "52418", "station_name": "敦煌", "hazard": hazard,
            "level": level, "quantity": "rain_3h", "value": 55.0, "time": time, "basis": "observed", **kw}


def test_an_operator_cancel_is_not_sent_expired_and_says_an_operator_cancelled_it() -> None:
    rule = RULES["heat"]
    st, alert = apply_signal(None, sig("heat", "red", "2026-07-14T06:00:00Z"), rule,
                             datetime(2026, 7, 14, 6, 1, tzinfo=UTC))
    # the operator cancels at 09:00 wall time; the region's data clock is still at 06:00
    wall = datetime(2026, 7, 14, 9, 0, tzinfo=UTC)
    st, ev = apply_signal(st, {"kind": "operator_cancel", "region_code": "620982", "hazard": "heat",
                               "time": "2026-07-14T06:00:00Z", "accepted_at": wall.timestamp()}, rule, wall)
    assert ev is not None and ev["change"] == "operator_cancel"
    assert ev["sent"] == "2026-07-14T09:00:00Z" and ev["expires"] >= ev["sent"]
    assert "operator" in ev["headline_en"] and "人工解除" in ev["headline_zh"]
    assert "duty operator" in ev["description_en"] and "no station meets" not in ev["description_en"].lower()
    root = etree.fromstring(render_cap(ev, referenced=[alert]))
    texts = {i.findtext("c:language", namespaces=NS): i.findtext("c:description", namespaces=NS)
             for i in root.findall("c:info", NS)}
    assert "duty operator" in texts["en-US"] and "no station meets" not in texts["en-US"]
    assert "人工解除" in texts["zh-CN"]


def test_a_criteria_cancel_keeps_its_reason() -> None:
    rule = RULES["heat"]
    st, _ = apply_signal(None, sig("heat", "red", "2026-07-14T06:00:00Z"), rule, datetime(2026, 7, 14, tzinfo=UTC))
    st, ev = apply_signal(st, {"kind": "tick", "region_code": "620982", "hazard": "heat",
                               "time": "2026-07-15T06:00:00Z"}, rule, datetime(2026, 7, 15, 6, tzinfo=UTC))
    st, ev = apply_signal(st, {"kind": "tick", "region_code": "620982", "hazard": "heat",
                               "time": "2026-07-15T07:00:00Z"}, rule, datetime(2026, 7, 15, 7, tzinfo=UTC))
    assert ev is not None and ev["change"] == "expire" and "no station meets" in ev["description_en"]
    assert ev["expires"] >= ev["sent"]


def test_a_still_triggering_station_extends_before_the_warning_expires() -> None:
    # rainstorm: valid 6 h, extend_step 3 h. Alert at 10:00 (expires 16:00); hourly reports keep orange.
    rule = RULES["rainstorm"]
    now = datetime(2026, 7, 14, 10, tzinfo=UTC)
    st, ev = apply_signal(None, sig("rainstorm", "orange", "2026-07-14T10:00:00Z"), rule, now)
    assert ev is not None and ev["expires"] == "2026-07-14T16:00:00Z"
    extends = []
    for hour in range(11, 19):
        st, ev = apply_signal(st, sig("rainstorm", "orange", f"2026-07-14T{hour:02d}:00:00Z"), rule, now)
        if ev is not None:
            assert ev["change"] == "extend"
            extends.append((hour, ev["expires"]))
    # 13:00 is within 3 h of 16:00: extended to 19:00; 16:00 within 3 h of 19:00: to 22:00. Before: the expiry
    # moved by 1 h per report, never 3 h at once, so nothing was sent and receivers saw it expire at 16:00
    assert extends == [(13, "2026-07-14T19:00:00Z"), (16, "2026-07-14T22:00:00Z")]
    # the warning the receivers hold never lapses while the station still meets the level
    held = "2026-07-14T16:00:00Z"
    for hour, expires in extends:
        assert f"2026-07-14T{hour:02d}:00:00Z" < held
        held = expires


def test_english_cap_names_stations_in_english() -> None:
    rule = RULES["heat"]
    _, ev = apply_signal(None, sig("heat", "red", "2026-07-14T06:00:00Z", quantity="tmax_day", value=40.5), rule,
                         datetime(2026, 7, 14, 6, 1, tzinfo=UTC))
    assert ev is not None and ev["stations"][0]["station_name"] == "敦煌"
    root = etree.fromstring(render_cap(ev, referenced=[]))
    texts = {i.findtext("c:language", namespaces=NS): i.findtext("c:description", namespaces=NS)
             for i in root.findall("c:info", NS)}
    assert "Dunhuang (52418)" in texts["en-US"] and "敦煌" not in texts["en-US"]
    assert "敦煌（52418）" in texts["zh-CN"]
