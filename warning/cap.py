"""WarningEvent -> OASIS CAP 1.2 XML, an ATOM 1.0 feed of active warnings, and CAP conformance checks.

References: OASIS Common Alerting Protocol Version 1.2 (1 July 2010; = ITU-T X.1303) — "spec §3.2.x" below is
its element dictionary (§3.2.1 alert, §3.2.2 info, §3.2.3 resource, §3.2.4 area) and §4.2 its conformance
clause (XSD-valid *and* the §3 textual rules). China specifics and the colour mapping:
``../shared/docs/STANDARDS.md`` §4.3/§4.4.

Choices for what neither the spec nor the brief fixes (see also the function docstrings):

* ``identifier`` = ``<sender>_<event id>``: derived from the event id only, so it is stable across re-renders
  and a later event can reference it without knowing anything else (the CMA form
  ``62000041600000_20250915094307`` also starts with the sender code; a timestamp would not be unique per
  sender when several counties change in the same second).
* ``responseType``: blue/yellow ``Prepare`` (Order 16 guidance "做好…准备"), orange/red ``Execute`` (guidance
  "落实…措施"/"采取应急措施", i.e. carry out pre-planned measures), cancel ``AllClear``.
* ``awareness_level``: MeteoAlarm has no blue; blue is written ``1; blue; Minor`` (MeteoAlarm's level 1 is
  green/Minor = "no particular awareness"; the CMA blue signal is a real, lowest-level warning, so the colour
  word stays blue and the number/severity follow the Minor mapping; STANDARDS.md §4.3 marks blue -> Minor as
  UNCONFIRMED).
* The prefecture is a second geocode with its own valueName ``GB/T 2260 prefecture``: spec §3.2.4 makes an
  area the *union* of its geocodes, so the county and prefecture codes are kept under different value names
  and a receiver matching on ``GB/T 2260`` sees exactly the county.
* ``incidents`` = the identifier form of the warning id (``<sender>_<warning_id>``): every event of one
  lifecycle chain (alert, updates, cancel) names the same incident (spec §3.2.1 incidents).
* Referenced events are assumed to have the same sender as the referencing one (one chain, one issuer).
* Cancel messages keep the cancelled level's severity/urgency/certainty from the event, describe the
  cancellation instead of the level's criterion, and carry no instruction.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_NS_ANY = re.compile(r"^urn:oasis:names:tc:emergency:cap:1\.[0-2]$")
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MIME = "application/cap+xml"
BEIJING_TZ = timezone(timedelta(hours=8))
DEFAULT_SENDER = "62000041600000"  # 兰州中心气象台's CMA sender code (STANDARDS.md §1.1.2)
DEFAULT_SENDER_NAME = "甘肃省气象局 / Gansu Meteorological Bureau"

MSG_TYPE = {"alert": "Alert", "update": "Update", "cancel": "Cancel"}
# spec §3.2.1 status: an event's status (absent: actual) -> the CAP code; exercise and test messages carry a note
CAP_STATUS = {"actual": "Actual", "exercise": "Exercise", "test": "Test"}
LEVELS = ("blue", "yellow", "orange", "red")
COLOUR_ZH = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}
SIGNAL_LEVEL = {"blue": "Ⅳ", "yellow": "Ⅲ", "orange": "Ⅱ", "red": "Ⅰ"}  # Order 16: 蓝 Ⅳ .. 红 Ⅰ
SEVERITY = {"blue": "Minor", "yellow": "Moderate", "orange": "Severe", "red": "Extreme"}
AWARENESS_LEVEL = {"blue": "1; blue; Minor", "yellow": "2; yellow; Moderate", "orange": "3; orange; Severe",
                   "red": "4; red; Extreme"}
RESPONSE_TYPE = {"blue": "Prepare", "yellow": "Prepare", "orange": "Execute", "red": "Execute"}
# MeteoAlarm awareness_type codes for the hazards the service grades (hazards not listed get no parameter).
AWARENESS_TYPE = {"gale": "1; Wind", "heat": "5; high-temperature", "heat_health": "5; high-temperature",
                  "frost": "6; low-temperature", "cold_wave": "6; low-temperature", "rainstorm": "10; Rain",
                  "flash_flood": "13; rain-flood"}
CATEGORIES = ("Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
              "CBRNE", "Other")
# The station ``value`` in <description>: (label zh, label en, unit) per rule quantity (ingest.quantities);
# stations without a known quantity fall back to the hazard's main unit.
QUANTITY_LABELS = {
    "tmax_day": ("日最高气温", "daily max temperature", "degC"),
    "tmin_day": ("日最低气温", "daily min temperature", "degC"),
    "ground_tmin_day": ("地面最低温度", "ground min temperature", "degC"),
    "tmin_drop_24h": ("24小时降温", "24 h min-temperature fall", "degC"),
    "tmin_drop_48h": ("48小时降温", "48 h min-temperature fall", "degC"),
    "wind_max_day": ("日最大平均风速", "daily max mean wind", "m s-1"),
    "gust_max_day": ("日极大风速", "daily max gust", "m s-1"),
    "wind_now": ("平均风速", "mean wind", "m s-1"),
    "visibility": ("能见度", "visibility", "m"),
    "rh_now": ("相对湿度", "relative humidity", "%"),
    "api_mm": ("前期降水指数", "antecedent precipitation index", "mm"),
    **{f"rain_{n}h": (f"{n}小时降水量", f"{n} h rainfall", "mm") for n in (1, 3, 6, 12, 24)},
}
HAZARD_UNIT = {"heat": "degC", "frost": "degC", "rainstorm": "mm", "flash_flood": "mm", "gale": "m s-1",
               "sandstorm": "m"}
UNITS = {"degC": ("℃", " °C"), "mm": ("毫米", " mm"), "m s-1": ("米/秒", " m/s"), "m": ("米", " m"), "%": ("%", " %")}

# spec §3.2.1 sent: dateTime with an explicit numeric offset, no fractional seconds, no "Z".
DATETIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$")
FORBIDDEN_ID_CHARS = frozenset(" \t\r\n,<&")

Polygon = Sequence[tuple[float, float]]


# ------------------------------------------------------------------------------------------------ helpers


def cap_time(iso: str) -> str:
    """A UTC ISO time ('...Z' or with offset) as a CAP dateTime in Beijing time (spec §3.2.1 sent).

    Fractional seconds are dropped (the CAP pattern has none); e.g. ``2026-07-14T06:00:00Z`` ->
    ``2026-07-14T14:00:00+08:00``.
    """
    t = datetime.fromisoformat(iso.strip().replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"time {iso!r} has no UTC offset")
    return t.astimezone(BEIJING_TZ).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%S+08:00")


def _check_token(what: str, value: str) -> str:
    """Spec §3.2.1 identifier/sender: no spaces, commas or restricted characters (< and &)."""
    if not value or FORBIDDEN_ID_CHARS & set(value):
        raise ValueError(f"{what} {value!r} is empty or contains a space, comma, '<' or '&' (CAP 1.2 §3.2.1)")
    return value


def cap_identifier(event_id: str, sender: str = DEFAULT_SENDER) -> str:
    """The CAP ``identifier`` of an event: ``<sender>_<event id>`` (stable; unique per sender)."""
    return _check_token("identifier", f"{_check_token('sender', sender)}_{event_id}")


def format_polygon(polygon: Polygon) -> str:
    """Spec §3.2.4 polygon: >= 4 WGS 84 'lat,lon' pairs separated by spaces, first == last; else ValueError."""
    points = [(float(lat), float(lon)) for lat, lon in polygon]
    if len(points) < 4:
        raise ValueError(f"polygon has {len(points)} points; CAP 1.2 §3.2.4 needs at least 4")
    if points[0] != points[-1]:
        raise ValueError("polygon is not closed: the first and last points must be equal (CAP 1.2 §3.2.4)")
    for lat, lon in points:
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(f"polygon point ({lat}, {lon}) is not a WGS 84 latitude,longitude")
    return " ".join(f"{_num(lat)},{_num(lon)}" for lat, lon in points)


def _num(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".") or "0"


@lru_cache(maxsize=4)
def _rule_table(path: Path | None) -> dict[str, tuple[str, str]]:
    """hazard -> (name_zh, name_en) from the rules table at ``path`` (None: the packaged one); {} if it cannot
    load."""
    from warning.rules import RulesError, load_rules
    try:
        rules = load_rules(path)
    except (RulesError, OSError) as exc:  # the service refuses a bad table at start; rendering just degrades
        log.warning("CAP: hazard names unavailable: %s", exc)
        return {}
    return _names(rules)


def _names(rules: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    return {h: (r.name_zh, r.name_en) for h, r in rules.items()}


def configured_hazard_names() -> dict[str, tuple[str, str]]:
    """hazard -> (name_zh, name_en) of the rules the service runs with: EWS_RULES (``Settings.rules_path``), else
    the packaged ``warning/data/rules.toml``."""
    from warning.shared.config import Settings

    return _rule_table(Settings.from_env().rules_path)


def _hazard_names(hazard: str, hazard_names: Mapping[str, Any] | None, rules: Mapping[str, Any] | None = None
                  ) -> tuple[str, str, str]:
    """(name_zh, name_en, unit): from ``rules`` (the caller's rules table) if given, else the configured rules
    (:func:`configured_hazard_names`). ``hazard_names[h]`` may override them with ``(zh, en)`` or
    ``{"zh":…, "en":…, "unit":…}``."""
    table = _names(rules) if rules is not None else configured_hazard_names()
    zh, en = table.get(hazard, (hazard, hazard.replace("_", " ").capitalize()))
    unit = HAZARD_UNIT.get(hazard, "")
    given = (hazard_names or {}).get(hazard)
    if isinstance(given, Mapping):
        zh, en, unit = given.get("zh", zh), given.get("en", en), given.get("unit", unit)
    elif given is not None:
        zh, en = given[0], given[1]
    return zh, en, unit


def _region_names(event: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(name_zh, name_en, prefecture code), completed from warning.shared.regions where the event lacks them."""
    from warning.shared.regions import RegionTree
    tree = RegionTree.load()
    code = str(event["region_code"])
    region = tree.region(code)
    name_en = event.get("region_name") or (region.name if region else code)
    name_zh = event.get("region_name_zh") or ""
    if (not name_zh or name_zh == name_en) and region is not None:
        name_zh = region.name_zh  # grading falls back to the English name when the signal has no zh name
    prefecture = event.get("prefecture_code")
    if not prefecture:
        pref = tree.prefecture_of(code)
        prefecture = pref.code if pref is not None and pref.code != code else None
    return name_zh or name_en, name_en, prefecture


def _references(event: Mapping[str, Any], sender: str, referenced: Iterable[Mapping[str, Any]] | None) -> str:
    """Spec §3.2.1 references: space-separated ``sender,identifier,sent`` of the earlier messages.

    ``sent`` comes from the referenced event when given in ``referenced``. Otherwise it falls back to the
    chain's ``onset`` (for observed warnings the alert's observation time, minutes before the alert's ``sent``;
    for forecasts possibly later): the triple then names the right identifier but not the exact ``sent``; receivers
    matching on sender+identifier (the spec's uniqueness key) are unaffected. Pass ``referenced`` for
    exact triples.
    """
    by_id = {str(r["id"]): r for r in referenced or ()}
    out = []
    for ref in event.get("references") or ():
        earlier = by_id.get(str(ref))
        if earlier is not None:
            sent = cap_time(earlier["sent"])
        else:
            log.info("CAP: sent of referenced event %s unknown; using the chain onset", ref)
            sent = cap_time(event["onset"])
        out.append(f"{sender},{cap_identifier(str(ref), sender)},{sent}")
    return " ".join(out)


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = text
    return el


def _pair(parent: ET.Element, tag: str, name: str, value: str) -> None:
    el = _sub(parent, tag)
    _sub(el, "valueName", name)
    _sub(el, "value", value)


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.0f}"
    return str(value)


def _station_name(station_id: str, zh: bool) -> str | None:
    """The registry's Chinese or English name of a station (events carry the Chinese one)."""
    from warning.shared.regions import StationRegistry
    station = StationRegistry.load().get(station_id)
    if station is None:
        return None
    return (station.name_zh if zh else station.name) or None


def _station_lines(stations: Sequence[Mapping[str, Any]], unit: str, zh: bool) -> list[str]:
    lines = []
    for s in stations:
        when = cap_time(s["time"])[:16].replace("T", " ")
        label_zh, label_en, q_unit = QUANTITY_LABELS.get(s.get("quantity") or "", ("", "", unit))
        u = UNITS.get(q_unit, ("", ""))[0 if zh else 1]
        label = label_zh if zh else label_en
        value = "" if s.get("value") is None else (label + " " if label else "") + _fmt_value(s["value"]) + u
        colour = COLOUR_ZH.get(s.get("level", ""), s.get("level", "")) if zh else s.get("level", "")
        name = _station_name(str(s["station_id"]), zh) or (s.get("station_name") if zh else None) or s["station_id"]
        if zh:
            lines.append(f"{name}（{s['station_id']}）：{value}，{colour}，{when}（北京时）")
        else:
            lines.append(f"{name} ({s['station_id']}): {value}, {colour}, {when} Beijing time")
    return lines


def _categories(event: Mapping[str, Any]) -> list[str]:
    """Spec §3.2.2 category: the rule's category (Met), plus Health for the heat-health product."""
    raw = event.get("category") or "Met"
    cats = [c for c in re.split(r"[\s,;+]+", raw if isinstance(raw, str) else " ".join(raw)) if c]
    if event.get("hazard") == "heat_health":
        cats.append("Health")
    out = list(dict.fromkeys(cats))
    bad = [c for c in out if c not in CATEGORIES]
    if bad:
        raise ValueError(f"category {bad} not in the CAP 1.2 §3.2.2 list {CATEGORIES}")
    return out


# ------------------------------------------------------------------------------------------------- render


@dataclass(frozen=True)
class _InfoText:
    """What both ``info`` blocks of one message share (see :func:`build_cap`)."""

    level: str
    cancel: bool
    code: str
    name_zh: str
    name_en: str
    unit: str
    region_zh: str
    region_en: str
    prefecture: str | None
    sender_zh: str
    sender_en: str
    sender_name: str
    polys: tuple[str, ...]
    web: str | None


def _info(alert: ET.Element, event: Mapping[str, Any], lang: str, c: _InfoText) -> None:
    """One ``info`` block (spec §3.2.2) of ``alert`` in ``lang`` (zh-CN or en-US)."""
    zh = lang == "zh-CN"
    info = _sub(alert, "info")
    _sub(info, "language", lang)
    for cat in _categories(event):
        _sub(info, "category", cat)
    _sub(info, "event", f"{c.name_zh}{COLOUR_ZH[c.level]}预警" if zh else f"{c.name_en} {c.level} warning")
    _sub(info, "responseType", "AllClear" if c.cancel else RESPONSE_TYPE[c.level])
    _sub(info, "urgency", event.get("urgency") or "Unknown")
    _sub(info, "severity", event.get("severity") or SEVERITY[c.level])
    _sub(info, "certainty", event.get("certainty") or "Unknown")
    _pair(info, "eventCode", "CMA_11B", c.code[:-2] if len(c.code) > 5 else c.code)
    _pair(info, "eventCode", "CMA_11B_level", c.code)
    if event.get("onset"):
        _sub(info, "onset", cap_time(event["onset"]))
    if event.get("expires"):
        _sub(info, "expires", cap_time(event["expires"]))
    _sub(info, "senderName", (c.sender_zh if zh else c.sender_en) or c.sender_name)
    headline = event.get("headline_zh" if zh else "headline_en")
    if headline:
        _sub(info, "headline", headline)
    if c.cancel:  # why it ends: the event's cancel reason (grading.CANCEL_REASONS: operator, expiry, criteria)
        reason = event.get("description_zh" if zh else "description_en") if event.get("change") else None
        if event.get("change") == "operator_cancel":
            desc = (f"{c.region_zh}{c.name_zh}{COLOUR_ZH[c.level]}预警信号已由值班员人工解除。" if zh else
                    f"The {c.name_en.lower()} {c.level} warning for {c.region_en} was cancelled by the duty operator.")
        else:
            desc = (f"{c.region_zh}{c.name_zh}{COLOUR_ZH[c.level]}预警信号解除：各站已低于预警标准。" if zh else
                    f"The {c.name_en.lower()} {c.level} warning for {c.region_en} is cancelled: no station meets "
                    "the warning criteria any more.")
        if reason and event.get("change") == "operator_cancel":
            desc += (" " if not zh else "") + reason
    else:
        desc = event.get("description_zh" if zh else "description_en") or ""
    lines = _station_lines(event.get("stations") or (), c.unit, zh)
    grid = event.get("grid")
    if isinstance(grid, Mapping) and grid.get("share") is not None:  # the grid's part: its share of the county
        share = f"{100 * float(grid['share']):.0f}%"
        colour = COLOUR_ZH.get(str(grid.get("level")), "") if zh else str(grid.get("level"))
        lines.append(f"网格预报：县域{share}面积达到{colour}标准" if zh else
                     f"Grid forecast: {share} of the county's area at {colour}")
    if lines:
        desc += ("\n依据站点：\n" if zh else "\nStations:\n") + "\n".join(lines)
    if desc:
        _sub(info, "description", desc)
    instruction = None if c.cancel else event.get("instruction_zh" if zh else "instruction_en")
    if instruction:
        _sub(info, "instruction", instruction)
    if c.web:
        _sub(info, "web", c.web)
    _pair(info, "parameter", "signalColour", COLOUR_ZH[c.level] if zh else c.level)
    _pair(info, "parameter", "signalLevel", SIGNAL_LEVEL[c.level])
    _pair(info, "parameter", "awareness_level", AWARENESS_LEVEL[c.level])
    if event["hazard"] in AWARENESS_TYPE:
        _pair(info, "parameter", "awareness_type", AWARENESS_TYPE[event["hazard"]])
    area = _sub(info, "area")
    _sub(area, "areaDesc", c.region_zh if zh else c.region_en)
    for poly in c.polys:
        _sub(area, "polygon", poly)
    _pair(area, "geocode", "GB/T 2260", str(event["region_code"]))
    if c.prefecture and str(c.prefecture) != str(event["region_code"]):
        _pair(area, "geocode", "GB/T 2260 prefecture", str(c.prefecture))


def review_note(event: Mapping[str, Any]) -> str:
    """The CAP note of a reviewed event: who approved it (or cancelled it) and when, and what they edited. The
    ``sender`` stays the bureau's CMA sender code: identifiers and references are built on it."""
    review = event.get("review")
    if not isinstance(review, Mapping):
        return ""
    verb = {"approved": "Approved", "operator_cancel": "Cancelled",
            "issue_unreviewed": "Issued unreviewed (policy timeout)"}.get(str(review.get("decision")), "Reviewed")
    edited = review.get("edited") or []
    return (f"{verb} by {review.get('by')} at {review.get('at')}"
            + (f"; edited: {', '.join(map(str, edited))}" if edited else ""))


def build_cap(event: Mapping[str, Any], *, sender: str = DEFAULT_SENDER, sender_name: str = DEFAULT_SENDER_NAME,
              polygon: Polygon | None = None, polygons: Sequence[Polygon] | None = None,
              hazard_names: Mapping[str, Any] | None = None,
              referenced: Iterable[Mapping[str, Any]] | None = None, web: str | None = None,
              rules: Mapping[str, Any] | None = None) -> ET.Element:
    """The CAP 1.2 ``<alert>`` element of a WarningEvent (see :func:`render_cap`)."""
    level = event["level"]
    if level not in LEVELS:
        raise ValueError(f"level {level!r} is not one of {LEVELS}")
    msg_type = MSG_TYPE.get(event["msg_type"])
    if msg_type is None:
        raise ValueError(f"msg_type {event['msg_type']!r} is not one of {sorted(MSG_TYPE)}")
    polys = tuple(format_polygon(p) for p in polygons) if polygons else \
        ((format_polygon(polygon),) if polygon is not None else ())
    refs = _references(event, sender, referenced)
    if msg_type != "Alert" and not refs:
        raise ValueError(f"a {msg_type} must reference the earlier event(s) (CAP 1.2 §3.2.1 msgType)")
    name_zh, name_en, unit = _hazard_names(event["hazard"], hazard_names, rules)
    region_zh, region_en, prefecture = _region_names(event)
    sender_zh, _, sender_en = (p.strip() for p in sender_name.partition(" / "))
    cancel = msg_type == "Cancel"
    code = str(event["cma_code"])

    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier", cap_identifier(str(event["id"]), sender))
    _sub(alert, "sender", sender)
    _sub(alert, "sent", cap_time(event["sent"]))
    status = str(event.get("status") or "actual")
    if status not in CAP_STATUS:
        raise ValueError(f"status {status!r} is not one of {sorted(CAP_STATUS)}")
    _sub(alert, "status", CAP_STATUS[status])
    _sub(alert, "msgType", msg_type)
    if event.get("source"):
        _sub(alert, "source", str(event["source"]))
    _sub(alert, "scope", "Public")
    notes = []
    if status != "actual":  # spec §3.2.1 note: what the message is, so no receiver mistakes a drill for a warning
        notes.append(str(event.get("note") or f"{CAP_STATUS[status].upper()}: not a real warning"))
    if review_note(event):  # the audit log's entry: the named operator who signed it off (or cancelled it)
        notes.append(review_note(event))
    if notes:
        _sub(alert, "note", "; ".join(notes))
    if refs:
        _sub(alert, "references", refs)
    _sub(alert, "incidents", cap_identifier(str(event["warning_id"]), sender))  # the lifecycle chain

    text = _InfoText(level, cancel, code, name_zh, name_en, unit, region_zh, region_en, prefecture, sender_zh,
                     sender_en, sender_name, polys, web)
    for lang in ("zh-CN", "en-US"):
        _info(alert, event, lang, text)
    return alert


def render_cap(event: Mapping[str, Any], *, sender: str = DEFAULT_SENDER, sender_name: str = DEFAULT_SENDER_NAME,
               polygon: Polygon | None = None, polygons: Sequence[Polygon] | None = None,
              hazard_names: Mapping[str, Any] | None = None,
               referenced: Iterable[Mapping[str, Any]] | None = None, web: str | None = None,
               rules: Mapping[str, Any] | None = None) -> bytes:
    """A WarningEvent (``warning.grading._event``) as UTF-8 OASIS CAP 1.2 XML.

    * ``polygon``: ``[(lat, lon), ...]`` WGS 84, closed, >= 4 points (spec §3.2.4), else ``ValueError``.
    * ``polygons``: several such polygons (the area is their union), instead of ``polygon`` when given: a
      grid-based warning's affected cells (``event["area_polygons"]``).
    * ``rules``: the rules table the event was graded with (``warning.rules.Rules``), for the hazard names;
      default: the configured rules (EWS_RULES, else the packaged table; :func:`configured_hazard_names`).
    * ``hazard_names``: ``{hazard: (name_zh, name_en)}`` overrides of the rules' names.
    * ``referenced``: the earlier events named in ``event["references"]``, for the exact ``sent`` of each
      ``sender,identifier,sent`` triple (spec §3.2.1 references); without them the chain onset is used.
    * ``web``: optional ``<web>`` URL (spec §3.2.2).

    Two ``info`` blocks (zh-CN, en-US; spec §3.2.2: one per language), one ``area`` per block (the county).
    """
    alert = build_cap(event, sender=sender, sender_name=sender_name, polygon=polygon, polygons=polygons,
                      hazard_names=hazard_names,
                      referenced=referenced, web=web, rules=rules)
    ET.register_namespace("", CAP_NS)
    ET.indent(alert, space="  ")
    return ET.tostring(alert, encoding="utf-8", xml_declaration=True)


_REPEATED = frozenset({"code", "info", "category", "responseType", "eventCode", "parameter", "resource", "area",
                       "polygon", "circle", "geocode"})  # maxOccurs="unbounded" in the CAP 1.2 XSD


def _to_json(el: ET.Element) -> Any:
    if len(el) == 0:
        return el.text or ""
    out: dict[str, Any] = {}
    for child in el:
        tag = child.tag.rpartition("}")[2]
        value = _to_json(child)
        if tag in _REPEATED:
            out.setdefault(tag, []).append(value)
        else:
            out[tag] = value
    return out


def render_cap_json(event: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The same CAP 1.2 message as a JSON-ready dict (element names as keys; repeatable elements as lists,
    e.g. ``info``, ``parameter``, ``geocode``); takes the keyword arguments of :func:`render_cap`."""
    result: dict[str, Any] = _to_json(build_cap(event, **kwargs))
    return result


# ------------------------------------------------------------------------------------------------- ATOM


def atom_feed(events: Sequence[Mapping[str, Any]], *, feed_url: str, cap_url: Callable[[Mapping[str, Any]], str],
              title: str = "甘肃省气象预警 / Gansu active weather warnings (CAP 1.2)",
              author: str = DEFAULT_SENDER_NAME, updated: str | None = None,
              rules: Mapping[str, Any] | None = None, hub: str | None = None) -> bytes:
    """An ATOM 1.0 (RFC 4287) feed of warnings, one entry per event, newest first, like the NWS/MeteoAlarm
    CAP feeds: entry id ``urn:uuid:<event id>``, title the English headline, summary the English
    description, ``link rel=alternate type=application/cap+xml`` to ``cap_url(event)``, categories for the
    hazard, level and CAP severity, and a few ``cap:`` elements (event, msgType, urgency, severity, certainty,
    onset, expires, areaDesc, geocode) for readers that filter without fetching the CAP message.

    The caller chooses the events (the API: the latest event of each open warning and every event of the last
    day, so updates and cancels stay listed; several entries may belong to one warning, each its own CAP
    message). Newest first by ``sent``, a later step of one chain first at equal times. ``updated`` defaults to
    the newest ``sent`` (or now for an empty feed); times are RFC 3339 in +08:00. Hazard names as in
    :func:`render_cap` (``rules``, else the configured rules). ``hub``: a WebSub hub, announced as
    ``<link rel="hub">`` (W3C WebSub §4).
    """
    ET.register_namespace("", ATOM_NS)
    ET.register_namespace("cap", CAP_NS)

    def a(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    ordered = sorted(events, key=lambda e: (cap_time(e["sent"]), e.get("seq", 0)), reverse=True)
    if updated is None:
        updated = (max(cap_time(e["sent"]) for e in ordered) if ordered
                   else cap_time(datetime.now(UTC).isoformat()))
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    a(feed, "id", feed_url)
    a(feed, "title", title)
    a(feed, "updated", updated)
    a(feed, "link", rel="self", href=feed_url, type="application/atom+xml")
    if hub:
        a(feed, "link", rel="hub", href=hub)
    a(a(feed, "author"), "name", author)
    a(feed, "generator", "extreme-warning warning.cap")
    for ev in ordered:
        entry = a(feed, "entry")
        try:
            entry_id = uuid.UUID(str(ev["id"])).urn
        except ValueError:
            entry_id = cap_url(ev)
        a(entry, "id", entry_id)
        a(entry, "title", ev.get("headline_en") or ev.get("headline_zh") or str(ev["id"]))
        a(entry, "updated", cap_time(ev["sent"]))
        a(entry, "published", cap_time(ev["sent"]))
        a(entry, "summary", ev.get("description_en") or "")
        a(entry, "link", rel="alternate", type=CAP_MIME, href=cap_url(ev))
        a(entry, "category", term=str(ev["hazard"]), label=_hazard_names(str(ev["hazard"]), None, rules)[1],
          scheme="urn:ews:hazard")
        a(entry, "category", term=str(ev["level"]), scheme="urn:ews:level")
        severity = ev.get("severity") or SEVERITY.get(ev["level"], "Unknown")
        a(entry, "category", term=severity, scheme=f"{CAP_NS}:severity")
        for tag, value in (("event", f"{_hazard_names(str(ev['hazard']), None, rules)[1]} {ev['level']} warning"),
                           ("msgType", MSG_TYPE.get(ev["msg_type"], ev["msg_type"])),
                           ("urgency", ev.get("urgency")), ("severity", severity), ("certainty", ev.get("certainty")),
                           ("onset", ev.get("onset") and cap_time(ev["onset"])),
                           ("expires", ev.get("expires") and cap_time(ev["expires"])),
                           ("areaDesc", ev.get("region_name"))):
            if value:
                _sub(entry, tag, str(value))
        _pair(entry, "geocode", "GB/T 2260", str(ev["region_code"]))
    ET.indent(feed, space="  ")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


# ---------------------------------------------------------------------------------------------- validate


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _check_datetime(where: str, value: str) -> list[str]:
    if not DATETIME_RE.match(value):
        return [f"{where}: {value!r} is not a CAP dateTime (YYYY-MM-DDThh:mm:ss±hh:mm, explicit numeric offset, "
                "no 'Z', no fractional seconds; CAP 1.2 §3.2.1 sent)"]
    problems = []
    try:
        datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"{where}: {value!r} is not a valid date/time")
    if value.endswith("+00:00"):
        problems.append(f"{where}: {value!r}: UTC must be written -00:00 (CAP 1.2 §3.2.1 sent)")
    return problems


def _check_polygon(where: str, text: str) -> list[str]:
    pairs = text.split()
    try:
        points = [tuple(float(x) for x in p.split(",")) for p in pairs]
    except ValueError:
        return [f"{where}: {text[:60]!r} is not a list of 'lat,lon' pairs (CAP 1.2 §3.2.4)"]
    problems = []
    if any(len(p) != 2 or not (-90 <= p[0] <= 90 and -180 <= p[1] <= 180) for p in points):
        problems.append(f"{where}: every point must be a WGS 84 'lat,lon' pair (CAP 1.2 §3.2.4)")
    if len(points) < 4:
        problems.append(f"{where}: {len(points)} points; at least 4 required (CAP 1.2 §3.2.4)")
    if points and points[0] != points[-1]:
        problems.append(f"{where}: not closed, the first and last points differ (CAP 1.2 §3.2.4)")
    return problems


def _check_circle(where: str, text: str) -> list[str]:
    m = re.fullmatch(r"\s*(-?[\d.]+),(-?[\d.]+)\s+([\d.]+)\s*", text)
    try:
        ok = m is not None and -90 <= float(m[1]) <= 90 and -180 <= float(m[2]) <= 180 and float(m[3]) >= 0
    except ValueError:
        ok = False
    return [] if ok else [f"{where}: {text!r} is not 'lat,lon radius_km' (CAP 1.2 §3.2.4 circle)"]


def check_text_rules(xml: bytes) -> list[str]:
    """The CAP 1.2 §3 rules the XSD cannot express; [] when the message meets them.

    identifier/sender without spaces, commas, '<', '&'; every dateTime with an explicit numeric offset, no
    fractional seconds, UTC as -00:00; Update/Cancel/Ack/Error carry references; references are
    whitespace-separated ``sender,identifier,sent`` triples; Restricted needs restriction, Private needs
    addresses; polygons closed with >= 4 WGS 84 points; circles 'lat,lon radius'; ceiling only with altitude.
    An empty ``<references/>`` counts as absent (it occurs in operational CAP-CP messages).
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        return [f"not well-formed XML: {exc}"]
    ns_uri = root.tag[1:].partition("}")[0] if root.tag.startswith("{") else ""
    if root.tag.rpartition("}")[2] != "alert" or not CAP_NS_ANY.match(ns_uri):
        return [f"root element {root.tag!r} is not a CAP alert"]
    problems = [] if ns_uri == CAP_NS else [f"namespace {ns_uri!r} is not CAP 1.2 ({CAP_NS})"]
    ns = {"c": ns_uri}

    def find(el: ET.Element, path: str) -> str:
        return _text(el.find(path, ns))

    for tag in ("identifier", "sender"):
        value = find(root, f"c:{tag}")
        if not value or FORBIDDEN_ID_CHARS & set(value):
            problems.append(f"{tag}: {value!r} is empty or has a space, comma, '<' or '&' (CAP 1.2 §3.2.1)")
    problems += _check_datetime("sent", find(root, "c:sent"))
    msg_type, scope = find(root, "c:msgType"), find(root, "c:scope")
    refs = find(root, "c:references")
    if msg_type in ("Update", "Cancel", "Ack", "Error") and not refs:
        problems.append(f"msgType {msg_type} without references (CAP 1.2 §3.2.1 msgType)")
    for i, triple in enumerate(refs.split()):
        parts = triple.split(",")
        if len(parts) != 3 or not parts[0] or not parts[1] or "<" in triple or "&" in triple:
            problems.append(f"references[{i}]: {triple[:80]!r} is not 'sender,identifier,sent' (CAP 1.2 §3.2.1)")
        else:
            problems += _check_datetime(f"references[{i}] sent", parts[2])
    if scope == "Restricted" and not find(root, "c:restriction"):
        problems.append("scope Restricted without restriction (CAP 1.2 §3.2.1)")
    if scope == "Private" and not find(root, "c:addresses"):
        problems.append("scope Private without addresses (CAP 1.2 §3.2.1)")
    for i, info in enumerate(root.findall("c:info", ns)):
        for tag in ("effective", "onset", "expires"):
            if (value := find(info, f"c:{tag}")):
                problems += _check_datetime(f"info[{i}]/{tag}", value)
        for j, area in enumerate(info.findall("c:area", ns)):
            where = f"info[{i}]/area[{j}]"
            for k, poly in enumerate(area.findall("c:polygon", ns)):
                problems += _check_polygon(f"{where}/polygon[{k}]", _text(poly))
            for k, circle in enumerate(area.findall("c:circle", ns)):
                problems += _check_circle(f"{where}/circle[{k}]", _text(circle))
            if area.find("c:ceiling", ns) is not None and area.find("c:altitude", ns) is None:
                problems.append(f"{where}: ceiling without altitude (CAP 1.2 §3.2.4)")
    return problems


@lru_cache(maxsize=4)
def _schema(xsd_path: str) -> Any:
    import xmlschema  # dev/validation extra; only needed for the XSD check

    # use_fallback=False: validate against the OASIS schema alone. xmlschema would otherwise load its bundled
    # xmldsig schema for the <ds:Signature> wildcard (processContents="lax"), which lxml/libxml2 and the OASIS
    # file by itself do not (e.g. the NAAD Signature's Id="NAADS Signature" is not an xs:ID).
    return xmlschema.XMLSchema(xsd_path, use_fallback=False)


def check_xsd(xml: bytes, xsd_path: str | Path) -> list[str]:
    """Errors of ``xml`` against the OASIS CAP 1.2 XSD at ``xsd_path`` (needs ``xmlschema``)."""
    import xmlschema

    schema = _schema(str(xsd_path))
    try:
        resource = xmlschema.XMLResource(xml, allow="none", defuse="always")
    except (xmlschema.XMLSchemaException, ET.ParseError) as exc:
        return [f"xsd: not well-formed XML: {exc}"]
    out = []
    for err in schema.iter_errors(resource):
        out.append(f"xsd: {err.reason or err.message} at {err.path}")
    return out


def validate_cap(xml: bytes, xsd_path: str | Path | None = None) -> list[str]:
    """CAP 1.2 conformance problems (spec §4.2: XSD-valid and the §3 text rules); [] when conformant.

    The XSD check runs only when ``xsd_path`` is given (the schema is not shipped with the package).
    """
    problems = check_xsd(xml, xsd_path) if xsd_path is not None else []
    return problems + check_text_rules(xml)
