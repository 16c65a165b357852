"""Observation -> per-station state -> station level -> region warning lifecycle. Pure functions over dicts.

The streaming agents (``warning.app``) call these; unit tests call them without a broker. State is plain JSON
so it travels through faust changelogs unchanged.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from warning.records import WarningLevel
from warning.rules import CAP_SEVERITY, CMA_LEVEL_CODE, LEVEL_ZH, HazardRule

BEIJING = timedelta(hours=8)
KEEP_DAYS = 10  # daily extremes kept per station: enough for 3-day heat and 5-day spells
NAMESPACE = uuid.UUID("6f1c2b8e-5d0a-4e7b-9a55-2f0c7e1d4a90")  # stable ids for replay-safe deduplication


def beijing_date(iso_utc: str) -> str:
    """The Beijing-time (UTC+8) calendar date of a UTC time: CMA daily extremes are per local day."""
    t = datetime.fromisoformat(iso_utc.replace("Z", "+00:00"))
    return (t.astimezone(UTC) + BEIJING).date().isoformat()


def update_station(state: dict[str, Any] | None, obs: dict[str, Any]) -> dict[str, Any] | None:
    """New station state after ``obs``, or None when ``obs`` is not newer than the last one applied.

    Skipping old observations makes the update idempotent under at-least-once redelivery of whole batches.
    """
    st = state or {"t": "", "tmax": {}}
    if obs["time"] <= st["t"]:
        return None
    tmax = dict(st["tmax"])
    if obs.get("tmax_c") is not None:
        day = beijing_date(obs["time"])
        tmax[day] = max(float(obs["tmax_c"]), tmax.get(day, float("-inf")))
        for old in sorted(tmax)[:-KEEP_DAYS]:
            del tmax[old]
    return {"t": obs["time"], "tmax": tmax}


def _consecutive(days: dict[str, float], end: str, rule_holds: Any) -> int:
    n, d = 0, datetime.fromisoformat(end).date()
    while (v := days.get(d.isoformat())) is not None and rule_holds(v):
        n += 1
        d -= timedelta(days=1)
    return n


def grade_daily(days: dict[str, float], rule: HazardRule) -> tuple[WarningLevel | None, float | None]:
    """The most severe level whose criterion holds on enough consecutive days ending on the latest day."""
    if not days:
        return None, None
    latest = max(days)
    for lr in rule.levels:
        if _consecutive(days, latest, lr.holds) >= lr.consecutive_days:
            return lr.level, days[latest]
    return None, days[latest]


def station_signal(station: dict[str, Any], hazard: str, level: WarningLevel | None, value: float | None,
                   time: str, basis: str = "observed") -> dict[str, Any]:
    """A station's graded level for one hazard, keyed downstream by its county (region grading)."""
    return {"region_code": station["county_code"], "region_name": station["county_name"],
            "prefecture_code": station["prefecture_code"], "station_id": station["station_id"],
            "station_name": station["name"], "hazard": hazard, "level": level.colour if level else None,
            "value": value, "time": time, "basis": basis}


def region_level(stations: dict[str, dict[str, Any]]) -> WarningLevel | None:
    levels = [WarningLevel.parse(s["level"]) for s in stations.values() if s.get("level")]
    return max(levels) if levels else None


def apply_signal(state: dict[str, Any] | None, signal: dict[str, Any], rule: HazardRule,
                 now: datetime | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Fold one station signal into the region's state; return (state, WarningEvent or None).

    The region's level is the highest station level. No warning + a level -> ``alert``; a different level ->
    ``update`` (upgrade or downgrade); no station at any level -> ``cancel``; same level -> nothing (the
    warning's expiry is extended to the new observation's validity).
    """
    st = state or {"stations": {}, "warning": None, "seq": 0}
    stations = dict(st["stations"])
    sid = signal["station_id"]
    prev = stations.get(sid)
    if prev is not None and signal["time"] < prev["time"]:
        return st, None  # an older report of this station: nothing new
    if signal.get("level"):
        stations[sid] = {k: signal[k] for k in ("station_id", "station_name", "level", "value", "time")}
    else:
        stations.pop(sid, None)
    new_level = region_level(stations)
    current = st["warning"]
    cur_level = WarningLevel.parse(current["level"]) if current else None
    sent = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    expires = _plus_hours(signal["time"], rule.valid_hours)
    event: dict[str, Any] | None = None
    if current is None and new_level is not None:
        warning_id = str(uuid.uuid5(NAMESPACE, f"{signal['region_code']}:{rule.hazard}:{signal['time']}"))
        event = _event(warning_id, "alert", new_level, signal, rule, stations, sent, signal["time"], expires,
                       references=[], seq=st["seq"] + 1)
    elif current is not None and new_level is None:
        event = _event(current["warning_id"], "cancel", cur_level, signal, rule, stations, sent,  # type: ignore[arg-type]
                       current["onset"], signal["time"], references=current["references"] + [current["id"]],
                       seq=st["seq"] + 1)
    elif current is not None and new_level != cur_level:
        event = _event(current["warning_id"], "update", new_level, signal, rule, stations, sent,  # type: ignore[arg-type]
                       current["onset"], max(expires, current["expires"]),
                       references=current["references"] + [current["id"]], seq=st["seq"] + 1)
    elif current is not None:
        current = {**current, "expires": max(expires, current["expires"]), "stations": _station_list(stations)}
    if event is None:
        return {"stations": stations, "warning": current, "seq": st["seq"]}, None
    warning = None if event["msg_type"] == "cancel" else event
    return {"stations": stations, "warning": warning, "seq": event["seq"]}, event


def _plus_hours(iso: str, hours: int) -> str:
    t = datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(hours=hours)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _station_list(stations: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(stations.values(), key=lambda s: (-(WarningLevel.parse(s["level"])), s["station_id"]))


def _event(warning_id: str, msg_type: str, level: WarningLevel, signal: dict[str, Any], rule: HazardRule,
           stations: dict[str, dict[str, Any]], sent: str, onset: str, expires: str, *,
           references: list[str], seq: int) -> dict[str, Any]:
    lr = rule.level_rule(level)
    region = signal["region_name"]
    region_zh = signal.get("region_name_zh") or region
    verb_zh = {"alert": "发布", "update": "更新", "cancel": "解除"}[msg_type]
    verb_en = {"alert": "issued", "update": "updated", "cancel": "cancelled"}[msg_type]
    basis = signal.get("basis", "observed")
    return {
        "id": str(uuid.uuid5(NAMESPACE, f"{warning_id}:{seq}")),
        "warning_id": warning_id,
        "seq": seq,
        "msg_type": msg_type,
        "region_code": signal["region_code"],
        "region_name": region,
        "region_name_zh": region_zh,
        "prefecture_code": signal.get("prefecture_code"),
        "hazard": rule.hazard,
        "level": level.colour,
        "level_zh": LEVEL_ZH[level],
        "basis": basis,
        "sent": sent,
        "onset": onset,
        "expires": expires,
        "stations": _station_list(stations),
        "references": references,
        "headline_zh": f"{region_zh}气象台{verb_zh}{rule.name_zh}{LEVEL_ZH[level]}预警信号",
        "headline_en": f"{rule.name_en} {level.colour} warning {verb_en} for {region}",
        "description_zh": lr.basis_zh,
        "description_en": lr.basis_en,
        "instruction_zh": lr.guidance_zh,
        "instruction_en": lr.guidance_en,
        "cma_code": rule.cma_code + CMA_LEVEL_CODE[level],
        "category": rule.cap_category,
        "severity": CAP_SEVERITY[level],
        "urgency": "Immediate" if basis == "observed" else "Expected",
        "certainty": "Observed" if basis == "observed" else "Likely",
        "source": rule.source,
    }
