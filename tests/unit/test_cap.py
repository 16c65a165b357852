"""warning.cap: OASIS CAP 1.2 (2010) rendering of WarningEvents, the ATOM feed and the conformance checker.

Every hazard of the rules table x each of its levels x alert/update/cancel is rendered from events made by
``warning.grading.apply_signal`` and validated against the OASIS XSD and the spec §3 text rules. The XSD lives
in tests/data/cap (origin in tests/data/README.md). The validator is also run on the real CAP messages there,
to show it accepts real valid alerts and rejects the negative case.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.support import CAP, CAP_XSD
from warning.cap import (
    ATOM_NS,
    CAP_NS,
    atom_feed,
    cap_time,
    check_text_rules,
    format_polygon,
    render_cap,
    render_cap_json,
    validate_cap,
)
from warning.grading import apply_signal
from warning.rules import load_rules

XSD = CAP_XSD

RULES = load_rules()
SENDER = "62000041600000"
NS = {"c": CAP_NS}
T0 = datetime(2026, 7, 14, 6, 0, tzinfo=UTC)  # 14:00 Beijing time
LAG = timedelta(minutes=5)  # processing delay: sent = signal time + LAG
CAP_DT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")
ORDER = ("blue", "yellow", "orange", "red")
# Expected values written out independently of warning.cap (STANDARDS.md §4.3).
SEVERITY = {"red": "Extreme", "orange": "Severe", "yellow": "Moderate", "blue": "Minor"}
LEVEL_CODE = {"blue": "01", "yellow": "02", "orange": "03", "red": "04"}
COLOUR_ZH = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}
ROMAN = {"blue": "Ⅳ", "yellow": "Ⅲ", "orange": "Ⅱ", "red": "Ⅰ"}
POLYGON = [(40.30, 94.40), (40.30, 94.90), (39.90, 94.90), (39.90, 94.40), (40.30, 94.40)]  # box near Dunhuang


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def signal(hazard: str, level: str | None, t: datetime, *, basis: str = "observed", kind: str = "station",
           value: float = 41.2) -> dict[str, Any]:
    return {"kind": kind, "region_code": "620982", "region_name": "Dunhuang City", "region_name_zh": "敦煌市",
            "prefecture_code": "620900", "station_id": "52418", "station_name": "Dunhuang", "hazard": hazard,
            "level": level, "value": value, "time": iso(t), "basis": basis}


def levels_of(hazard: str) -> list[str]:
    return sorted((lr.level.colour for lr in RULES[hazard].levels), key=ORDER.index)


def chain(hazard: str, level: str, msg_type: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(event of ``msg_type`` at ``level``, the earlier events it references), made by apply_signal.

    update: an upgrade from the hazard's lowest level, or (at the lowest level) an extension of the expiry;
    cancel: an operator cancel of an alert at ``level``.
    """
    rule = RULES[hazard]
    lowest = levels_of(hazard)[0]
    first = lowest if msg_type == "update" and level != lowest else level
    st, alert = apply_signal(None, signal(hazard, first, T0), rule, T0 + LAG)
    assert alert is not None and alert["msg_type"] == "alert"
    if msg_type == "alert":
        return alert, []
    t1 = T0 + timedelta(hours=max(float(rule.extend_step_h), 1.0))
    if msg_type == "update":
        st, ev = apply_signal(st, signal(hazard, level, t1), rule, t1 + LAG)
    else:
        st, ev = apply_signal(st, signal(hazard, None, t1, kind="operator_cancel"), rule, t1 + LAG)
    assert ev is not None and ev["msg_type"] == msg_type and ev["level"] == level
    return ev, [alert]


MATRIX = [(h, lv, m) for h in RULES for lv in levels_of(h) for m in ("alert", "update", "cancel")]
IDS = [f"{h}-{lv}-{m}" for h, lv, m in MATRIX]


def parse(xml: bytes) -> etree._Element:
    return etree.fromstring(xml)


def text(el: etree._Element, path: str) -> str:
    found = el.find(path, NS)
    assert found is not None, path
    return (found.text or "").strip()


def pairs(el: etree._Element, tag: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in el.findall(f"c:{tag}", NS):
        out.setdefault(text(p, "c:valueName"), []).append(text(p, "c:value"))
    return out


# ------------------------------------------------------------------------------ every hazard x level x msgType


def test_matrix_covers_every_hazard_of_the_rules_table() -> None:
    assert {h for h, _, _ in MATRIX} == set(RULES)
    assert ("heat", "red", "cancel") in MATRIX


@pytest.mark.parametrize(("hazard", "level", "msg_type"), MATRIX, ids=IDS)
def test_every_hazard_level_and_msg_type_is_conformant_cap(hazard: str, level: str, msg_type: str) -> None:
    ev, earlier = chain(hazard, level, msg_type)
    xml = render_cap(ev, referenced=earlier)
    assert validate_cap(xml, XSD) == []
    # an independent XSD processor (libxml2) agrees
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    assert schema.validate(parse(xml)), schema.error_log
    with_polygon = render_cap(ev, referenced=earlier, polygon=POLYGON)
    assert validate_cap(with_polygon, XSD) == []


@pytest.mark.parametrize(("hazard", "level", "msg_type"), MATRIX, ids=IDS)
def test_fields(hazard: str, level: str, msg_type: str) -> None:
    rule = RULES[hazard]
    ev, earlier = chain(hazard, level, msg_type)
    xml = render_cap(ev, referenced=earlier)
    assert check_text_rules(xml) == []
    assert xml.startswith(b"<?xml") and "敦煌市".encode() in xml  # UTF-8, not character references
    root = parse(xml)
    assert root.tag == f"{{{CAP_NS}}}alert"
    assert text(root, "c:identifier") == f"{SENDER}_{ev['id']}"
    assert text(root, "c:sender") == SENDER
    assert text(root, "c:status") == "Actual" and text(root, "c:scope") == "Public"
    assert text(root, "c:msgType") == msg_type.capitalize()
    sent = text(root, "c:sent")
    assert CAP_DT.match(sent) and sent == cap_time(ev["sent"])
    if msg_type == "alert":
        assert root.find("c:references", NS) is None
    else:
        # every earlier event as sender,identifier,sent with the referenced message's own sent time
        assert text(root, "c:references").split() == [
            f"{SENDER},{SENDER}_{e['id']},{cap_time(e['sent'])}" for e in earlier]
        assert text(root, "c:references").split()[0].endswith(",2026-07-14T14:05:00+08:00")
    infos = root.findall("c:info", NS)
    assert [text(i, "c:language") for i in infos] == ["zh-CN", "en-US"]
    for info in infos:
        zh = text(info, "c:language") == "zh-CN"
        assert [c.text for c in info.findall("c:category", NS)] == (
            ["Met", "Health"] if rule.hazard == "heat_health" else ["Met"])
        assert text(info, "c:event") == (f"{rule.name_zh}{COLOUR_ZH[level]}预警" if zh
                                         else f"{rule.name_en} {level} warning")
        assert text(info, "c:severity") == SEVERITY[level]
        assert (text(info, "c:urgency"), text(info, "c:certainty")) == ("Immediate", "Observed")
        expected_response = "AllClear" if msg_type == "cancel" else (
            "Execute" if level in ("orange", "red") else "Prepare")
        assert text(info, "c:responseType") == expected_response
        codes = pairs(info, "eventCode")
        assert codes == {"CMA_11B": [rule.cma_code], "CMA_11B_level": [rule.cma_code + LEVEL_CODE[level]]}
        if hazard == "heat":
            assert codes["CMA_11B"] == ["11B09"]
        assert text(info, "c:onset") == "2026-07-14T14:00:00+08:00"
        for tag in ("onset", "expires"):
            assert CAP_DT.match(text(info, f"c:{tag}"))
        params = pairs(info, "parameter")
        assert params["signalColour"] == [COLOUR_ZH[level] if zh else level]
        assert params["signalLevel"] == [ROMAN[level]]
        assert params["awareness_level"][0].endswith(f"; {level}; {SEVERITY[level]}")
        assert text(info, "c:headline") == ev["headline_zh" if zh else "headline_en"]
        description = text(info, "c:description")
        if ev["stations"]:
            assert "52418" in description and "41.2" in description
        assert (info.find("c:instruction", NS) is None) == (msg_type == "cancel")
        area = info.find("c:area", NS)
        assert area is not None
        assert text(area, "c:areaDesc") == ("敦煌市" if zh else "Dunhuang City")
        assert pairs(area, "geocode") == {"GB/T 2260": ["620982"], "GB/T 2260 prefecture": ["620900"]}
        assert area.find("c:polygon", NS) is None


def test_severity_mapping_and_times_in_beijing() -> None:
    for level, severity in SEVERITY.items():
        if any(lr.level.colour == level for lr in RULES["rainstorm"].levels):
            ev, _ = chain("rainstorm", level, "alert")
            assert f"<severity>{severity}</severity>" in render_cap(ev).decode()
    assert cap_time("2026-07-14T06:00:00Z") == "2026-07-14T14:00:00+08:00"
    assert cap_time("2026-07-14T17:30:00.123456+00:00") == "2026-07-15T01:30:00+08:00"  # no fractions
    with pytest.raises(ValueError, match="no UTC offset"):
        cap_time("2026-07-14T06:00:00")


def test_rendering_is_deterministic() -> None:
    ev, earlier = chain("heat", "red", "update")
    assert render_cap(ev, referenced=earlier) == render_cap(ev, referenced=earlier)


def test_references_fall_back_to_the_chain_onset_without_the_earlier_events() -> None:
    ev, earlier = chain("heat", "red", "cancel")
    refs = text(parse(render_cap(ev)), "c:references").split()
    assert refs == [f"{SENDER},{SENDER}_{earlier[0]['id']},2026-07-14T14:00:00+08:00"]


def test_forecast_basis_gives_expected_likely() -> None:
    """Issue 4: a forecast that Tmax reaches 40 within 24 h issues red heat, urgency Expected, certainty Likely."""
    _, ev = apply_signal(None, signal("heat", "red", T0, basis="forecast"), RULES["heat"], T0 + LAG)
    assert ev is not None
    info = parse(render_cap(ev)).find("c:info", NS)
    assert info is not None
    assert (text(info, "c:urgency"), text(info, "c:certainty"), text(info, "c:severity")) == (
        "Expected", "Likely", "Extreme")


def by_hand(**over: Any) -> dict[str, Any]:
    ev, _ = chain("heat", "orange", "alert")
    return {**ev, **over}


def test_heat_health_is_met_and_health() -> None:
    ev = by_hand(hazard="heat_health", cma_code="11B0903")
    xml = render_cap(ev, hazard_names={"heat_health": ("高温健康", "Heat-health")})
    assert validate_cap(xml, XSD) == []
    for info in parse(xml).findall("c:info", NS):
        assert [c.text for c in info.findall("c:category", NS)] == ["Met", "Health"]
    assert "<event>高温健康橙色预警</event>" in xml.decode()


def test_station_lines_name_the_quantity_and_unit() -> None:
    ev = by_hand(hazard="rainstorm", cma_code="11B0303", stations=[
        {"station_id": "52418", "station_name": "Dunhuang", "level": "orange", "quantity": "rain_3h",
         "value": 55.0, "time": "2026-07-14T06:00:00Z", "basis": "observed"}])
    xml = render_cap(ev).decode()
    assert "敦煌（52418）：3小时降水量 55毫米，橙色，2026-07-14 14:00（北京时）" in xml
    assert "Dunhuang (52418): 3 h rainfall 55 mm, orange, 2026-07-14 14:00 Beijing time" in xml


def test_region_names_and_prefecture_completed_from_the_region_tree() -> None:
    ev = by_hand(region_name_zh="Dunhuang City", prefecture_code=None)
    area = parse(render_cap(ev)).find("c:info/c:area", NS)
    assert area is not None
    assert text(area, "c:areaDesc") == "敦煌市"
    assert pairs(area, "geocode") == {"GB/T 2260": ["620982"], "GB/T 2260 prefecture": ["620900"]}


@pytest.mark.parametrize(("over", "msg"), [
    ({"id": "has space"}, "identifier"),
    ({"id": "a,b"}, "identifier"),
    ({"level": "purple"}, "level"),
    ({"msg_type": "ack"}, "msg_type"),
    ({"msg_type": "update", "references": []}, "must reference"),
    ({"category": "Weather"}, "category"),
])
def test_bad_events_are_refused(over: dict[str, Any], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        render_cap(by_hand(**over))


# ------------------------------------------------------------------------------------------------ polygons


def test_valid_polygon_is_rendered_in_both_languages() -> None:
    xml = render_cap(by_hand(), polygon=POLYGON)
    assert validate_cap(xml, XSD) == []
    polys = [p.text for p in parse(xml).iterfind("c:info/c:area/c:polygon", NS)]
    assert polys == ["40.3,94.4 40.3,94.9 39.9,94.9 39.9,94.4 40.3,94.4"] * 2


@pytest.mark.parametrize(("polygon", "msg"), [
    (POLYGON[:-1], "not closed"),                                  # open
    ([(40.3, 94.4), (39.9, 94.9), (40.3, 94.4)], "at least 4"),    # closed but 3 points
    ([(40.3, 94.4), (39.9, 94.9), (39.9, 94.4)], "at least 4"),    # 3 points, open
    ([(40.3, 94.4), (95.0, 94.9), (39.9, 94.4), (40.3, 94.4)], "WGS 84"),  # latitude out of range
])
def test_bad_polygons_raise(polygon: list[tuple[float, float]], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        render_cap(by_hand(), polygon=polygon)
    with pytest.raises(ValueError, match=msg):
        format_polygon(polygon)


def test_minimal_closed_polygon_is_accepted() -> None:
    assert format_polygon([(40, 94), (40, 95), (39, 95), (40, 94)]) == "40,94 40,95 39,95 40,94"


# ------------------------------------------------------------------------------- text rules the XSD misses


def mutate(xml: bytes, old: str, new: str) -> bytes:
    s = xml.decode()
    assert old in s
    return s.replace(old, new, 1).encode()


@pytest.mark.parametrize(("old", "new", "msg"), [
    ("</areaDesc>", "</areaDesc><polygon>40,94 40,95 39,95 39,94</polygon>", "not closed"),
    ("</areaDesc>", "</areaDesc><polygon>40,94 40,95 40,94</polygon>", "at least 4"),
    ("</areaDesc>", "</areaDesc><polygon>40,94 40,95, 39,95 40,94</polygon>", "lat,lon"),
    ("<identifier>62000041600000_", "<identifier>62000041600000 ", "identifier"),
    ("+08:00</sent>", "-00:00</sent>", ""),  # control: -00:00 is the spec's UTC form, no problem
    ("T14:05:00+08:00</sent>", "T06:05:00+00:00</sent>", "UTC must be written -00:00"),
    ("+08:00</onset>", ".5+08:00</onset>", "no fractional seconds"),
    ("<msgType>Alert</msgType>", "<msgType>Update</msgType>", "without references"),
    ("<scope>Public</scope>", "<scope>Public</scope><references>62000041600000,x</references>", "references"),
    ("<scope>Public</scope>", "<scope>Restricted</scope>", "without restriction"),
])
def test_text_rules(old: str, new: str, msg: str) -> None:
    xml = render_cap(by_hand())
    assert check_text_rules(xml) == []
    problems = check_text_rules(mutate(xml, old, new))
    if msg:
        assert any(msg in p for p in problems), problems
    else:
        assert problems == []


def test_not_a_cap_alert() -> None:
    assert check_text_rules(b"<feed/>") == ["root element 'feed' is not a CAP alert"]
    assert check_text_rules(b"<alert") and "well-formed" in check_text_rules(b"<alert")[0]


# ------------------------------------------------------------------------------- the real CAP examples


EXAMPLES = {  # file -> XSD-valid CAP 1.2 (as in the data collection's cap/README.md and check_cap.py)
    "NOAA_MultiplePolygons.txt": True,
    "australia_bom.cap": True,
    "iceland_met_office.cap": True,
    "CanadaNaad.xml": True,
    "mexico.xml": True,
    "oasis_spec_amber_alert_example.cap.xml": True,
    "noaa_errors.cap": False,
}


@pytest.mark.parametrize(("name", "valid"), EXAMPLES.items())
def test_validator_on_real_cap_messages(name: str, valid: bool) -> None:
    xml = (CAP / "examples" / name).read_bytes()
    problems = validate_cap(xml, XSD)
    xsd_problems = [p for p in problems if p.startswith("xsd:")]
    text_problems = [p for p in problems if not p.startswith("xsd:")]
    assert (xsd_problems == []) == valid, xsd_problems
    if name == "australia_bom.cap":
        # XSD-valid, but writes UTC as +00:00 where spec §3.2.1 requires -00:00: the only text-rule finding
        assert text_problems and all("UTC must be written -00:00" in p for p in text_problems)
    elif valid:
        assert text_problems == []
    else:  # CAP 1.1 namespace, and a polygon with stray commas ("-118.09, +40.86,...")
        assert any("is not CAP 1.2" in p for p in text_problems)
        assert any("polygon" in p for p in text_problems)


def test_xsd_rejects_what_it_should() -> None:
    xml = render_cap(by_hand())
    assert any(p.startswith("xsd:") for p in validate_cap(mutate(xml, "+08:00</sent>", "Z</sent>"), XSD))
    assert any(p.startswith("xsd:") for p in validate_cap(mutate(xml, "<severity>Severe", "<severity>Orange"), XSD))
    assert any(p.startswith("xsd:") for p in validate_cap(mutate(xml, "<status>Actual</status>", ""), XSD))


# ----------------------------------------------------------------------------------------------------- ATOM


def cap_url(ev: dict[str, Any]) -> str:
    return f"https://ews.example/api/v1/warnings/{ev['id']}.cap"


def test_atom_feed_of_active_warnings() -> None:
    events = [chain("heat", "red", "update")[0], chain("gale", "blue", "alert")[0]]
    feed_url = "https://ews.example/api/v1/cap/feed.atom"
    root = etree.fromstring(atom_feed(events, feed_url=feed_url, cap_url=cap_url))
    a = {"a": ATOM_NS, "c": CAP_NS}
    assert root.tag == f"{{{ATOM_NS}}}feed"
    assert root.findtext("a:id", namespaces=a) == feed_url
    assert root.find("a:link[@rel='self']", a).get("href") == feed_url
    assert CAP_DT.match(root.findtext("a:updated", namespaces=a) or "")
    entries = root.findall("a:entry", a)
    assert len(entries) == len(events)
    by_id = {e.findtext("a:id", namespaces=a): e for e in entries}
    for ev in events:
        entry = by_id[f"urn:uuid:{ev['id']}"]
        assert entry.findtext("a:title", namespaces=a) == ev["headline_en"]
        assert entry.findtext("a:updated", namespaces=a) == cap_time(ev["sent"])
        assert entry.findtext("a:summary", namespaces=a) == ev["description_en"]
        link = entry.find("a:link[@rel='alternate']", a)
        assert link is not None and link.get("type") == "application/cap+xml" and link.get("href") == cap_url(ev)
        terms = {c.get("term") for c in entry.findall("a:category", a)}
        assert {ev["hazard"], ev["level"], SEVERITY[ev["level"]]} <= terms
        assert entry.findtext("c:severity", namespaces=a) == SEVERITY[ev["level"]]
        assert entry.findtext("c:geocode/c:value", namespaces=a) == "620982"
    # newest first
    updated = [e.findtext("a:updated", namespaces=a) for e in entries]
    assert updated == sorted(updated, reverse=True)


def test_atom_feed_keeps_a_cancel_before_its_alert_and_announces_the_hub() -> None:
    cancel, [alert] = chain("heat", "red", "cancel")
    same_second = {**cancel, "sent": alert["sent"]}  # a cancel in the alert's second still comes first (seq)
    a = {"a": ATOM_NS, "c": CAP_NS}
    for ev in (cancel, same_second):
        root = etree.fromstring(atom_feed([alert, ev], feed_url="https://x/feed.atom", cap_url=cap_url,
                                          hub="https://hub.example/"))
        assert [e.findtext("c:msgType", namespaces=a) for e in root.findall("a:entry", a)] == ["Cancel", "Alert"]
        assert root.find("a:link[@rel='hub']", a).get("href") == "https://hub.example/"
    root = etree.fromstring(atom_feed([alert], feed_url="https://x/feed.atom", cap_url=cap_url))
    assert root.find("a:link[@rel='hub']", a) is None


def test_empty_atom_feed_is_valid_xml() -> None:
    root = etree.fromstring(atom_feed([], feed_url="https://x/feed.atom", cap_url=cap_url,
                                      updated="2026-07-14T14:00:00+08:00"))
    assert root.findall(f"{{{ATOM_NS}}}entry") == []
    assert root.findtext(f"{{{ATOM_NS}}}updated") == "2026-07-14T14:00:00+08:00"


def test_cap_json_mirrors_the_xml() -> None:
    ev, earlier = chain("heat", "red", "update")
    doc = render_cap_json(ev, referenced=earlier, polygon=POLYGON)
    root = parse(render_cap(ev, referenced=earlier, polygon=POLYGON))
    assert doc["identifier"] == text(root, "c:identifier") and doc["msgType"] == "Update"
    assert doc["references"] == text(root, "c:references")
    assert [i["language"] for i in doc["info"]] == ["zh-CN", "en-US"]
    en = doc["info"][1]
    assert en["severity"] == "Extreme" and en["category"] == ["Met"]
    assert {p["valueName"]: p["value"] for p in en["parameter"]}["signalColour"] == "red"
    assert en["area"][0]["geocode"][0] == {"valueName": "GB/T 2260", "value": "620982"}
    assert len(en["area"][0]["polygon"]) == 1


def test_hazard_names_come_from_the_configured_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CAP names the hazard as the rules the service runs with (EWS_RULES), not as the packaged table; a caller
    may pass its rules table instead."""
    from warning.rules import load_rules as load

    packaged = (Path(__file__).resolve().parents[2] / "warning" / "data" / "rules.toml").read_text(encoding="utf-8")
    own = tmp_path / "rules.toml"
    own.write_text(packaged.replace('name_zh = "高温"\nname_en = "High temperature"',
                                    'name_zh = "酷热"\nname_en = "Extreme heat"'), encoding="utf-8")
    ev = by_hand()
    monkeypatch.delenv("EWS_RULES", raising=False)
    assert "<event>High temperature orange warning</event>" in render_cap(ev).decode()
    monkeypatch.setenv("EWS_RULES", str(own))
    xml = render_cap(ev).decode()
    assert "<event>酷热橙色预警</event>" in xml and "<event>Extreme heat orange warning</event>" in xml
    feed = atom_feed([ev], feed_url="https://x/feed.atom", cap_url=lambda e: f"https://x/{e['id']}.xml").decode()
    assert "Extreme heat orange warning" in feed
    monkeypatch.delenv("EWS_RULES")
    assert "<event>Extreme heat orange warning</event>" in render_cap(ev, rules=load(own)).decode()
    assert "<event>High temperature orange warning</event>" in render_cap(ev).decode()
