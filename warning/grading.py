"""Station quantities -> station levels -> region warning lifecycle. Pure functions over plain dicts.

The streaming agents (``warning.app``) call these; unit tests call them without a broker. State is plain JSON
so it travels through faust changelogs unchanged.

Lifecycle per (region, hazard), after CMA practice for observed ("已达…且可能持续") and forecast ("预计…将")
signals:

* a station that meets a level keeps it (and every lower level) until ``valid_hours`` after its last report at
  that level (a forecast: until the end of its valid window), so a cool morning does not cancel yesterday's
  heat warning;
* the region's level is the highest unexpired station level; the event lists the stations behind it;
* no warning + a level -> ``alert``; a higher level -> ``update`` at once (upgrade); a lower level or none must
  persist ``downgrade_hold_h`` / ``cancel_hold_h`` before the ``update`` (downgrade) or ``cancel`` (hysteresis:
  a value oscillating around a threshold does not flap); the same level pushing the expiry at least
  ``extend_step_h`` further -> ``update`` (extend). Every update/cancel references all earlier event ids.

A prefecture's roll-up folds its counties' warnings, not their stations' signals: every county event becomes a
``{"kind": "county"}`` signal for the prefecture (``county_rollup``) that replaces the county's entry, so the
prefecture's level is the highest current county warning. Its changes follow at once (no hold times: the counties'
own holds already debounce them).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np

from warning.rules import CAP_SEVERITY, CMA_LEVEL_CODE, LEVEL_ZH, OPS, Condition, HazardRule, LevelRule
from warning.shared.records import ACTUAL, NAMESPACE, WarningLevel
from warning.shared.times import iso_utc, parse_utc

Series = Callable[[str], dict[str, float]]
# What a region's state keeps of its current warning: what the next event needs (chain, level, times). The
# whole event (texts, station list) is on the warnings topic; keeping it here made every region_state write
# (one per signal, changelogged) ~5 KB.
CURRENT_WARNING_FIELDS = ("id", "warning_id", "seq", "msg_type", "level", "onset", "expires", "references")


# What an exercise or test event says it is (its CAP note); actual events carry no note.
STATUS_NOTES = {
    "exercise": "演练 EXERCISE: a drill or demonstration, not a real warning; times are those of the replayed reports",
    "test": "测试 TEST: a technical test, not a real warning; times are those of the test reports",
}

# Why a warning ends, by the cancel's change (its description, zh / en; CAP shows it).
CANCEL_REASONS = {
    "cancel": ("各站已低于预警标准，预警解除。", "No station meets the warning criteria any more."),
    "expire": ("预警已到期，各站已低于预警标准。",
               "The warning has expired: no station meets the warning criteria any more."),
    "operator_cancel": ("值班员已人工解除本预警（站点资料不再作为发布依据）。",
                        "Cancelled by the duty operator: a manual cancel, not a change in the station reports."),
}

_LEVELS = {lv.colour: lv for lv in WarningLevel}
_RANK = {lv.colour: int(lv) for lv in WarningLevel}
# a station at a level also holds every level below it
_UP_TO = {lv: tuple(lower.colour for lower in WarningLevel if lower <= lv) for lv in WarningLevel}


def _level(colour: str) -> WarningLevel:
    """WarningLevel of a stored colour (a dict lookup: this runs for every station entry of every signal)."""
    lv = _LEVELS.get(colour)
    return lv if lv is not None else WarningLevel.parse(colour)


@lru_cache(maxsize=4)
def _wall_clock_iso(second: int) -> str:
    """The current second as ISO text, formatted once per second rather than once per signal."""
    return iso_utc(second)


def _consecutive(series: dict[str, float], cond_holds: Callable[[float], bool]) -> int:
    if not series:
        return 0
    n, d = 0, date.fromisoformat(max(series))
    while (v := series.get(d.isoformat())) is not None and cond_holds(v):
        n += 1
        d -= timedelta(days=1)
    return n


def condition_holds(c: Condition, v: float, scale: float = 1.0) -> bool:
    """``scale`` multiplies the threshold of >= / > conditions (flash-flood county and wet-ground factors)."""
    return OPS[c.op](v, c.value * scale if c.op in (">=", ">") else c.value)


def _judge(c: Condition, q: dict[str, float], series: Series | None, scale: float) -> bool | None:
    v = q.get(c.quantity)
    if v is None:
        return None
    if c.days > 1:
        if series is None:
            return None
        return _consecutive(series(c.quantity), lambda x: condition_holds(c, x, scale)) >= c.days
    return condition_holds(c, v, scale)


def level_holds(lr: LevelRule, q: dict[str, float], series: Series | None = None, scale: float = 1.0
                ) -> bool | None:
    """True/False, or None when a needed input quantity is missing (no judgement possible)."""
    all_ = [_judge(c, q, series, scale) for c in lr.all]
    any_ = [_judge(c, q, series, scale) for c in lr.any]
    if False in all_:
        return False
    if lr.any and True not in any_:
        return None if None in any_ and len(set(any_)) == 1 else (False if None not in all_ else None)
    return None if None in all_ else True


def grade(rule: HazardRule, q: dict[str, float], series: Series | None = None, scale: float = 1.0
          ) -> tuple[WarningLevel | None, str | None, float | None] | None:
    """(level or None, deciding quantity, its value); None when no level can be judged (inputs missing)."""
    judged = False
    for lr in rule.levels:
        ok = level_holds(lr, q, series, scale)
        if ok:
            c = next((c for c in lr.conditions if _judge(c, q, series, scale)), lr.conditions[0])
            return lr.level, c.quantity, q.get(c.quantity)
        judged = judged or ok is False
    if not judged:
        return None
    first = rule.levels[-1].conditions[0].quantity
    return None, first, q.get(first)


ARRAY_OPS: dict[str, Callable[[Any, Any], np.ndarray]] = {
    ">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less}


def grade_arrays(rule: HazardRule, q: dict[str, np.ndarray], n: int, scale: np.ndarray | float = 1.0,
                 series_at: Callable[[int, str], dict[str, float]] | None = None) -> np.ndarray:
    """Vectorised ``grade`` over a batch: quantities as float arrays (NaN = missing). Returns int8 codes per
    report: -1 no judgement possible, 0 no level, else the WarningLevel value. ``series_at(i, quantity)`` gives
    report i's daily series for multi-day conditions (called only where the single-day condition holds)."""
    nan = np.full(n, np.nan)
    # each input's present mask once; counted, so that the usual cases (an input reported by every report or
    # by none) skip the missing-input bookkeeping
    ok: dict[str, np.ndarray] = {}
    count: dict[str, int] = {}
    for c in (c for lr in rule.levels for c in lr.conditions):
        if c.quantity not in ok:
            ok[c.quantity] = present = ~np.isnan(q.get(c.quantity, nan))
            count[c.quantity] = int(np.count_nonzero(present))
    if not any(count.values()):  # no input at all: nothing can be judged
        return np.full(n, -1, dtype=np.int8)
    every = all(k == n for k in count.values())  # every input present: every level is judged
    judged = None if every else np.zeros(n, dtype=bool)
    holds_at_level: list[tuple[int, np.ndarray]] = []
    with np.errstate(invalid="ignore"):
        for lr in rule.levels:
            def cond(c: Condition) -> np.ndarray:
                x = q.get(c.quantity, nan)
                thr = c.value * scale if c.op in (">=", ">") else c.value
                res = ARRAY_OPS[c.op](x, thr)  # False where x is NaN (missing)
                if c.days > 1:
                    for i in np.flatnonzero(res).tolist():
                        if series_at is None:
                            res[i] = False
                            continue
                        t_i = float(thr[i]) if isinstance(thr, np.ndarray) else float(thr)
                        op = OPS[c.op]

                        def holds_at(v: float, t: float = t_i, op: Callable[[float, float], bool] = op) -> bool:
                            return op(v, t)
                        res[i] = _consecutive(series_at(i, c.quantity), holds_at) >= c.days
                return res
            all_res = [cond(c) for c in lr.all]
            any_res = [cond(c) for c in lr.any]
            # the level holds where every 'all' and some 'any' condition holds (none holds on a missing input)
            holds: np.ndarray | None = None
            for res in all_res:
                holds = res if holds is None else holds & res
            if any_res:
                some = any_res[0]
                for res in any_res[1:]:
                    some = some | res
                holds = some if holds is None else holds & some
            assert holds is not None  # a level has conditions (warning.rules)
            holds_at_level.append((int(lr.level), holds))
            if judged is not None:  # judged: an 'all' condition false on its input, or every input needed present
                all_false = np.zeros(n, dtype=bool)
                all_present = np.ones(n, dtype=bool)
                for c, res in zip(lr.all, all_res, strict=True):
                    all_false |= ok[c.quantity] > res  # present and false
                    all_present &= ok[c.quantity]
                if lr.any:
                    some_present = np.zeros(n, dtype=bool)
                    for c in lr.any:
                        some_present |= ok[c.quantity]
                    judged |= all_false | (all_present & some_present)
                else:
                    judged |= all_false | all_present
    out = np.full(n, 0 if judged is None else -1, dtype=np.int8)
    if judged is not None:
        out[judged] = 0
    for level, holds in reversed(holds_at_level):  # the first level (in rule order) that holds
        out[holds] = level
    return out


# ---- region lifecycle ------------------------------------------------------------------------------------------

def _effective(entry: dict[str, Any], t: str) -> tuple[WarningLevel, dict[str, Any]] | None:
    best = None
    for colour, info in entry["levels"].items():
        if info["expires"] > t:
            lv = _level(colour)
            if best is None or lv > best[0]:
                best = (lv, info)
    return best


def _live(stations: dict[str, dict[str, Any]], t: str
          ) -> tuple[dict[str, dict[str, Any]], WarningLevel | None, str | None, list[Any]]:
    """One pass over a region's station entries at time ``t``: (the entries with a level still live, the region's
    level = the highest live station level, the warning's expiry = the latest expiry of a live level at or above
    it, the summary ``[t, earliest live expiry, latest live expiry by level value]`` that lets the next signal
    skip this pass while nothing has expired: see ``_live_since``)."""
    live: dict[str, dict[str, Any]] = {}
    latest = ["", "", "", "", ""]  # by WarningLevel value: the latest live expiry
    earliest = "~"  # sorts after any ISO time
    for key, entry in stations.items():
        alive = False
        for colour, info in entry["levels"].items():
            expires = info["expires"]
            if expires > t:
                alive = True
                rank = _RANK.get(colour) or int(_level(colour))
                if expires > latest[rank]:
                    latest[rank] = expires
                if expires < earliest:
                    earliest = expires
        if alive:
            live[key] = entry
    return (live, *_level_and_expiry(latest), [t, earliest, latest])


_BY_VALUE = {int(lv): lv for lv in WarningLevel}


def _level_and_expiry(latest: list[str]) -> tuple[WarningLevel | None, str | None]:
    top = 4 if latest[4] else 3 if latest[3] else 2 if latest[2] else 1 if latest[1] else 0  # (a call per signal)
    return (_BY_VALUE[top], max(latest[top:])) if top else (None, None)


def _live_since(summary: list[Any], stations: dict[str, dict[str, Any]], changed: dict[str, Any] | None, t: str
                ) -> tuple[dict[str, dict[str, Any]], WarningLevel | None, str | None, list[Any]] | None:
    """``_live`` from the previous signal's summary when nothing can have expired since (the summary's time <= t
    < its earliest live expiry) and the changed entry's levels are all live: the stations are all still live and
    the per-level latest expiries only grow by the changed entry's. None when the full pass is needed. (A busy
    region folds a signal per report: the full pass over its stations was ~half the grade agent's time.)"""
    at, earliest, latest = summary
    if not at <= t < earliest:
        return None
    latest = list(latest)
    if changed is not None:
        for colour, info in changed["levels"].items():
            expires = info["expires"]
            if expires <= t:  # e.g. a forecast whose window has passed: the full pass decides about the entry
                return None
            rank = _RANK.get(colour) or int(_level(colour))
            if expires > latest[rank]:
                latest[rank] = expires
            if expires < earliest:
                earliest = expires
    return (stations, *_level_and_expiry(latest), [t, earliest, latest])


def _station_list(stations: dict[str, dict[str, Any]], t: str) -> list[dict[str, Any]]:
    out = []
    for s in stations.values():
        e = _effective(s, t)
        if s.get("grid"):
            continue  # the grid entry is the event's `grid`, not a station
        if e and "county_code" in s:  # a roll-up's county entry: the stations its county's warning listed
            out.extend(s["stations"])
        elif e:
            lv, info = e
            out.append({"station_id": s["station_id"], "station_name": s["station_name"], "level": lv.colour,
                        "quantity": info.get("quantity"), "value": info.get("value"), "time": info["time"],
                        "basis": info.get("basis", "observed")})
    return sorted(out, key=lambda s: (-_level(s["level"]), s["station_id"]))


@lru_cache(maxsize=65536)  # report times repeat across stations and signals
def _plus_hours(t: str, hours: float) -> str:
    return iso_utc(parse_utc(t) + timedelta(hours=hours))


@lru_cache(maxsize=65536)
def _hours_between(a: str, b: str) -> float:
    return (parse_utc(b) - parse_utc(a)).total_seconds() / 3600


def past_horizon(signal: dict[str, Any], rule: HazardRule, now_s: float) -> bool:
    """Whether an actual station or grid signal is older than the hazard's staleness horizon (a forecast: by its
    issue time, against ``forecast_stale_after_h``), measured against ``now_s`` (epoch seconds: when its report was
    accepted, else now). Such a report has updated its station's state but must not by itself issue, upgrade or
    extend a live warning."""
    horizon_h = rule.forecast_stale_after_h if signal.get("basis") == "forecast" else rule.stale_after_h
    return _plus_hours(signal["time"], horizon_h) < _wall_clock_iso(int(now_s))


GRID_ENTRY = "grid|forecast"  # a region's one entry for grid signals (warning.grid_signals)
GRID_NAME = "网格预报 grid forecast"
_GRID_FIELDS = ("share", "area_km2", "source", "lead_h")


def _station_entry(stations: dict[str, dict[str, Any]], signal: dict[str, Any], rule: HazardRule, t: str
                   ) -> dict[str, Any]:
    """Put a station signal's level (and every level below it) into the station's entry in ``stations`` (a new
    entry object), live until ``valid_hours`` after the report (a forecast: until its ``valid_to``); a level that
    already runs longer keeps its expiry. A ``grid`` signal goes to the region's grid entry alike, its level's info
    with the share and the polygons of the cells at it (the lower levels' infos without polygons: their own
    signals, sent after it, bring theirs). Returns the entry."""
    basis = signal.get("basis", "observed")
    grid = signal.get("kind") == "grid"
    key = GRID_ENTRY if grid else f"{signal['station_id']}|{basis}"
    expires = signal.get("valid_to") or _plus_hours(t, rule.valid_hours)
    old_entry = stations.get(key)
    if old_entry:
        entry = {**old_entry, "levels": dict(old_entry["levels"])}
    elif grid:
        entry = {"station_id": "grid", "station_name": GRID_NAME, "grid": True, "levels": {}}
    else:
        entry = {"station_id": signal["station_id"], "station_name": signal["station_name"], "levels": {}}
    own = _level(signal["level"]).colour
    for colour in _UP_TO[_level(signal["level"])]:
        old = entry["levels"].get(colour)
        if old is None or old["expires"] <= expires:
            info = {"time": t, "expires": expires, "value": signal.get("value"),
                    "quantity": signal.get("quantity"), "basis": basis, "onset": signal.get("onset", t)}
            if grid:
                info.update({k: signal[k] for k in _GRID_FIELDS if k in signal})
                if colour == own:
                    info["polygons"] = signal.get("polygons") or []
                elif old is not None and "polygons" in old:
                    info["polygons"] = old["polygons"]
            entry["levels"][colour] = info
    stations[key] = entry
    return entry


def _county_entry(stations: dict[str, dict[str, Any]], signal: dict[str, Any], t: str) -> None:
    """A prefecture's roll-up signal: the county's current warning replaces its entry (none: the entry goes)."""
    key = f"county|{signal['county_code']}"
    if signal.get("level"):
        levels = {colour: {"time": t, "expires": signal["expires"], "onset": signal.get("onset", t)}
                  for colour in _UP_TO[_level(signal["level"])]}
        stations[key] = {"county_code": signal["county_code"], "stations": signal.get("stations") or [],
                         "levels": levels, **({"bases": signal["bases"]} if signal.get("bases") else {})}
    else:
        stations.pop(key, None)


Make = Callable[[str, str, WarningLevel, str, str], dict[str, Any]]


def _transition(kind: str, current: dict[str, Any] | None, pending: dict[str, Any] | None,
                new_level: WarningLevel | None, warn_expiry: str | None, stations: dict[str, dict[str, Any]], t: str,
                rule: HazardRule, region: dict[str, Any], make: Make
                ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The lifecycle step at time ``t`` from the current warning to the region's level ``new_level``: (the event
    ``make(msg_type, change, level, onset, expires)`` made, or None; the pending change on hold, or None)."""
    cur_level = _level(current["level"]) if current else None
    event: dict[str, Any] | None = None
    if kind == "operator_cancel" and current is not None:
        event = make("cancel", "operator_cancel", cur_level, current["onset"], t)  # type: ignore[arg-type]
        pending = None
    elif current is None and new_level is not None:
        onset = min(i["onset"] for s in stations.values() for i in s["levels"].values() if i["expires"] > t)
        event = make("alert", "issue", new_level, onset, warn_expiry or _plus_hours(t, rule.valid_hours))
        pending = None
    elif current is not None and new_level is not None and new_level > cur_level:  # type: ignore[operator]
        event = make("update", "upgrade", new_level, current["onset"], max(warn_expiry or t, current["expires"]))
        pending = None
    elif current is not None and (new_level is None or new_level < cur_level):  # type: ignore[operator]
        target = new_level.colour if new_level else None
        if pending is None or pending["level"] != target:
            pending = {"level": target, "since": t}
        hold = rule.cancel_hold_h if new_level is None else rule.downgrade_hold_h
        if region.get("region_level") == "prefecture":
            hold = 0.0  # a roll-up follows its counties, whose own holds debounced the change
        if _hours_between(pending["since"], t) >= hold - 1e-9:
            if new_level is None:
                change = "expire" if current["expires"] <= t else "cancel"
                event = make("cancel", change, cur_level, current["onset"], t)  # type: ignore[arg-type]
            else:
                event = make("update", "downgrade", new_level, current["onset"], warn_expiry or current["expires"])
            pending = None
    elif current is not None:
        pending = None
        # extend when the expiry moves at least extend_step_h, or at all once the warning is within extend_step_h
        # of the expiry it was sent with: a station still meeting the level extends the warning before receivers
        # see it expire (at most about one extend per step either way)
        if warn_expiry and warn_expiry > current["expires"] and (
                _hours_between(current["expires"], warn_expiry) >= rule.extend_step_h - 1e-9
                or _hours_between(t, current["expires"]) <= rule.extend_step_h + 1e-9):
            event = make("update", "extend", cur_level, current["onset"], warn_expiry)  # type: ignore[arg-type]
        # (no event: the stored warning keeps the station list it was issued with; events list the live ones)
    return event, pending


def apply_signal(state: dict[str, Any] | None, signal: dict[str, Any], rule: HazardRule,
                 now: datetime | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Fold one station signal, tick or operator action into the region's state; return (state, event or None).

    Signals: ``{"kind": "station", station_id, station_name, level, quantity, value, time, basis[, valid_to,
    accepted_at]}`` (kind defaults to station), ``{"kind": "county", county_code, level or None, onset, expires,
    stations, time}`` (a prefecture's roll-up of a county warning: ``county_rollup``), ``{"kind": "tick", "time"}``
    and ``{"kind": "operator_cancel", "time", "accepted_at"}``; all carry region_code and hazard. After an operator
    cancel, station (and county) signals accepted before it (``accepted_at``, the API's clock) are ignored, so a
    report still in flight does not re-issue it.
    """
    st = state or {"stations": {}, "warning": None, "seq": 0, "pending": None, "region": {}}
    stations = dict(st["stations"])  # entries are replaced, never changed in place: the old state stays intact
    kind = signal.get("kind", "station")
    t = signal["time"]
    # (status: exercise and test chains keep it with their region fields; absent is actual)
    region: dict[str, Any] = {k: signal[k] for k in ("region_code", "region_name", "region_name_zh",
                                                     "prefecture_code", "region_level", "status") if k in signal}
    if "region_name" not in region:  # ticks and operator actions carry only the code
        region = {**st.get("region", {}), **region}
    current = st["warning"]
    status = region.get("status", ACTUAL)

    # reports accepted before an operator cancel do not re-issue what the operator withdrew
    suppressed_before = st.get("suppress_accepted_before", 0.0)
    late = kind in ("station", "county", "grid") and \
        float(signal.get("accepted_at", float("inf"))) <= suppressed_before
    entry: dict[str, Any] | None = None
    if kind in ("station", "grid") and signal.get("level") and not late:
        entry = _station_entry(stations, signal, rule, t)
    if kind == "county" and not late:
        _county_entry(stations, signal, t)
    # The region's clock never runs back: a late report (its obs partition behind the others, a backlog) updates
    # its station's entry as of its own time, but the region is judged at the latest time it has reached; judged
    # at the report's time, entries that had expired came back to life and re-issued or re-upgraded warnings.
    t = max(t, st.get("t", ""))
    if kind == "operator_cancel":
        stations = {}
        suppressed_before = max(suppressed_before, float(signal.get("accepted_at", 0.0)))
    summary = st.get("summary")
    # (a county entry may be lowered or removed: only station entries and ticks keep the summary's premise)
    fast = _live_since(summary, stations, entry, t) if summary and kind in ("station", "grid", "tick") else None
    stations, new_level, warn_expiry, summary = fast or _live(stations, t)

    # an actual event is sent now; an exercise or test event at its data time (a drill replaying history is
    # stamped with the replayed times, not with the day of the drill)
    wall = iso_utc(now) if now is not None else _wall_clock_iso(int(time.time()))
    sent = wall if status == ACTUAL else t

    def make(msg_type: str, change: str, level: WarningLevel, onset: str, expires: str) -> dict[str, Any]:
        if msg_type == "cancel":  # a cancel is in force from when it is sent: never expired on arrival
            expires = max(expires, sent)
        chain = f"{region.get('region_code')}:{rule.hazard}:{t}" + ("" if status == ACTUAL else f":{status}")
        wid = current["warning_id"] if current else str(uuid.uuid5(NAMESPACE, chain))
        refs = (current["references"] + [current["id"]]) if current else []
        return _event(wid, msg_type, change, level, region, rule, _station_list(stations, t), sent, onset, expires,
                      refs, st["seq"] + 1, _grid_part(stations, t, level))

    event, pending = _transition(kind, current, st.get("pending"), new_level, warn_expiry, stations, t, rule, region,
                                 make)
    latest = t  # the time this state has been brought to (catch_up starts after it)
    if event is None:
        return {"stations": stations, "warning": current, "seq": st["seq"], "pending": pending,
                "region": region, "suppress_accepted_before": suppressed_before, "t": latest,
                "summary": summary}, None
    if event["msg_type"] == "cancel":
        stations = {} if kind == "operator_cancel" else stations
    warning = None if event["msg_type"] == "cancel" else {k: event[k] for k in CURRENT_WARNING_FIELDS}
    return {"stations": stations, "warning": warning, "seq": event["seq"], "pending": pending,
            "region": region, "suppress_accepted_before": suppressed_before, "t": latest, "summary": summary}, event


def catch_up(state: dict[str, Any] | None, t: str, rule: HazardRule, now: datetime | None = None
             ) -> tuple[dict[str, Any] | None, list[tuple[dict[str, Any], str]]]:
    """Apply, in time order, the expiries (and their hold times) that fall before ``t``, so a region's chain is
    right even when reports arrive faster than the wall-clock ticks (a replayed file, a backlog after an outage).
    Call before folding a signal of time ``t``. Returns the state and each event with the (data) time it was made
    at (a county event's roll-up carries that time)."""
    events: list[tuple[dict[str, Any], str]] = []
    if not state or not (state.get("warning") or state.get("pending")):
        return state, events
    # only the ticks after the last time this state was brought to: earlier ones were applied then
    since = state.get("t", "")
    if t <= since:
        return state, events
    summary = state.get("summary")
    if state.get("pending") is None and summary and summary[0] == since and t < summary[1]:
        # no live level expires by t (summary: its earliest live expiry) and no change is on hold: every tick
        # would find the region as it is (levels that expired before ``since`` are in its level already)
        return state, events
    hold = max(rule.downgrade_hold_h, rule.cancel_hold_h)
    recent = _plus_hours(since, -hold) if since else ""
    expiries = sorted({i["expires"] for s in state["stations"].values() for i in s["levels"].values()
                       if recent < i["expires"] <= t})
    region = state.get("region", {})
    for te in expiries[:8]:
        for at in (te, _plus_hours(te, rule.downgrade_hold_h), _plus_hours(te, hold)):
            if at > t:
                break
            if at <= since:
                continue
            tick = {"kind": "tick", "time": at, "hazard": rule.hazard, **region}
            state, ev = apply_signal(state, tick, rule, now)
            if ev is not None:
                events.append((ev, at))
    return state, events


def county_rollup(event: dict[str, Any], at: str, prefecture: dict[str, Any]) -> dict[str, Any] | None:
    """The prefecture roll-up signal of a county warning event made at data time ``at`` (None for other events).
    ``prefecture``: the prefecture's region fields (region_code, region_name, region_name_zh, region_level)."""
    if event.get("region_level", "county") != "county" or not event.get("prefecture_code"):
        return None
    status = event.get("status", ACTUAL)
    status_field = {} if status == ACTUAL else {"status": status}
    return {**prefecture, **status_field, "kind": "county", "prefecture_code": event["prefecture_code"],
            "hazard": event["hazard"], "time": at, "county_code": event["region_code"],
            "level": None if event["msg_type"] == "cancel" else event["level"],
            "onset": event["onset"], "expires": event["expires"], "stations": event["stations"],
            **({"bases": event["bases"]} if event.get("bases") else {})}


def _grid_part(stations: dict[str, dict[str, Any]], t: str, level: WarningLevel) -> dict[str, Any]:
    """What an event says of its bases: ``bases`` (``station`` when a station entry is live, ``grid`` when the grid
    entry is), ``grid`` (the grid entry's live level and its share of the county) and, when the grid alone holds
    the event's level, ``area_polygons`` (the cells at it: the CAP area instead of the county outline)."""
    bases: set[str] = set()
    grid: tuple[WarningLevel, dict[str, Any]] | None = None
    station_at_level = False
    for s in stations.values():
        e = _effective(s, t)
        if e is None:
            continue
        if s.get("grid"):
            bases.add("grid")
            grid = e
        elif "county_code" in s:  # a prefecture's county entry: the bases of the county's warning
            bases.update(s.get("bases") or ("station",))
        else:
            bases.add("station")
            station_at_level = station_at_level or e[0] >= level
    out: dict[str, Any] = {"bases": sorted(bases)}
    if grid is not None:
        lv, info = grid
        out["grid"] = {"level": lv.colour, "quantity": info.get("quantity"), "value": info.get("value"),
                       "share": info.get("share"), "area_km2": info.get("area_km2"), "time": info["time"],
                       "onset": info.get("onset"), "expires": info["expires"], "source": info.get("source")}
        if lv >= level and not station_at_level:
            top = stations[GRID_ENTRY]["levels"].get(level.colour, info) if GRID_ENTRY in stations else info
            out["area_polygons"] = top.get("polygons") or info.get("polygons") or []
    return out


def _event(warning_id: str, msg_type: str, change: str, level: WarningLevel, region: dict[str, Any],
           rule: HazardRule, stations: list[dict[str, Any]], sent: str, onset: str, expires: str,
           references: list[str], seq: int, grid: dict[str, Any] | None = None) -> dict[str, Any]:
    lr = rule.level_rule(level)
    name = region.get("region_name", region.get("region_code", ""))
    name_zh = region.get("region_name_zh") or name
    verb_zh = {"alert": "发布", "update": "更新", "cancel": "解除"}[msg_type]
    verb_en = {"alert": "issued", "update": "updated", "cancel": "cancelled"}[msg_type]
    description_zh, description_en = lr.basis_zh, lr.basis_en
    if msg_type == "cancel":
        description_zh, description_en = CANCEL_REASONS.get(change, CANCEL_REASONS["cancel"])
        if change == "operator_cancel":
            verb_zh, verb_en = "人工解除", "cancelled by the duty operator"
    status = region.get("status", ACTUAL)
    grid = grid or {}
    top = [s for s in stations if s["level"] == level.colour]
    by_grid = "grid" in grid and _level(grid["grid"]["level"]) >= level
    basis = "forecast" if (not top and by_grid) or (top and all(s["basis"] != "observed" for s in top)) \
        else "observed"
    if basis == "observed":
        urgency, certainty = "Immediate", "Observed"
    else:
        soon = _hours_between(sent, onset) <= 1 if onset > sent else True
        urgency, certainty = ("Expected" if soon or _hours_between(sent, onset) <= 24 else "Future"), "Likely"
    return {
        "id": str(uuid.uuid5(NAMESPACE, f"{warning_id}:{seq}")),
        "warning_id": warning_id,
        "seq": seq,
        "msg_type": msg_type,
        "change": change,
        "region_code": region.get("region_code"),
        "region_level": region.get("region_level", "county"),
        "region_name": name,
        "region_name_zh": name_zh,
        "prefecture_code": region.get("prefecture_code"),
        "hazard": rule.hazard,
        "level": level.colour,
        "level_zh": LEVEL_ZH[level],
        "basis": basis,
        "sent": sent,
        "onset": onset,
        "expires": expires,
        "stations": stations,
        "references": references,
        "headline_zh": f"{name_zh}气象台{verb_zh}{rule.name_zh}{LEVEL_ZH[level]}预警信号",
        "headline_en": f"{rule.name_en} {level.colour} warning {verb_en} for {name}",
        "description_zh": description_zh,
        "description_en": description_en,
        "instruction_zh": lr.guidance_zh,
        "instruction_en": lr.guidance_en,
        "cma_code": rule.cma_code + CMA_LEVEL_CODE[level],
        "category": rule.cap_category,
        "severity": CAP_SEVERITY[level],
        "urgency": urgency,
        "certainty": certainty,
        "source": rule.source,
        "status": status,
        **({"note": STATUS_NOTES[status]} if status in STATUS_NOTES else {}),
        **{k: v for k, v in grid.items() if v or k == "bases"},
    }
