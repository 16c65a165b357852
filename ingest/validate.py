"""Schema validation of Observation objects from any source (push API, files), with reasons naming the field.

This is the syntactic gate: types, required fields, times, gross physical limits that no real sensor can
produce. Climatological range, step, persistence and anomaly checks are quality control (``ingest.qc``) and
flag values instead of rejecting the record.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from warning.shared.records import OBSERVATION_ELEMENTS, Observation
from warning.shared.times import iso_utc

# Gross limits (beyond any recorded value on Earth); WMO-No. 8 ranges are tighter and live in QC.
GROSS_LIMITS: dict[str, tuple[float, float]] = {
    "air_temp_c": (-90.0, 60.0),
    "tmax_c": (-90.0, 60.0),
    "tmin_c": (-90.0, 60.0),
    "ground_tmin_c": (-90.0, 90.0),
    "rh_pct": (0.0, 100.0),
    "dewpoint_c": (-100.0, 40.0),
    "precip_mm": (0.0, 2000.0),
    "precip_period_h": (0.0, 744.0),
    "wind_ms": (0.0, 120.0),
    "gust_ms": (0.0, 150.0),
    "visibility_m": (0.0, 100000.0),
    "pressure_hpa": (300.0, 1100.0),
}
MAX_FUTURE = timedelta(hours=1)  # clock skew allowance for station reports
MIN_YEAR, MAX_YEAR = 1800, 2200  # outside: no station record, and datetime arithmetic would overflow
_ALLOWED = set(OBSERVATION_ELEMENTS) | {"station_id", "time", "source", "qc"}


class ObservationError(ValueError):
    """Invalid observation; the message names the field."""


def parse_time(value: Any, field: str = "time") -> datetime:
    if not isinstance(value, str):
        raise ObservationError(f"{field}: expected an ISO-8601 string, got {type(value).__name__}")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ObservationError(f"{field}: not an ISO-8601 time: {value[:40]!r}") from None
    if t.tzinfo is None:
        raise ObservationError(f"{field}: time must carry a UTC offset (e.g. 'Z' or '+08:00')")
    if not MIN_YEAR <= t.year <= MAX_YEAR:
        raise ObservationError(f"{field}: year {t.year} outside {MIN_YEAR}-{MAX_YEAR}")
    return t.astimezone(UTC)


def format_time(t: datetime) -> str:
    return iso_utc(t)


def validate_observation(raw: Any, *, known_station: Callable[[str], bool] | None = None,
                         now: datetime | None = None, source: str | None = None) -> Observation:
    """Return a normalised Observation (time in UTC 'Z' form) or raise ObservationError naming the field."""
    if not isinstance(raw, dict):
        raise ObservationError(f"observation: expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _ALLOWED)
    if unknown:
        raise ObservationError(f"{unknown[0]}: unknown field")
    sid = raw.get("station_id")
    if not isinstance(sid, str | int) or isinstance(sid, bool) or not str(sid).strip():
        raise ObservationError("station_id: required string")
    sid = str(sid).strip()
    if len(sid) > 32:
        raise ObservationError("station_id: longer than 32 characters")
    if known_station is not None and not known_station(sid):
        raise ObservationError(f"station_id: unknown station {sid[:20]!r}")
    if "time" not in raw:
        raise ObservationError("time: required")
    t = parse_time(raw["time"])
    current = now or datetime.now(UTC)
    if t > current + MAX_FUTURE:
        raise ObservationError(f"time: {format_time(t)} is in the future")
    values: dict[str, float] = {}
    for name in OBSERVATION_ELEMENTS:
        v = raw.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ObservationError(f"{name}: expected a number, got {type(v).__name__}")
        fv = float(v)
        if not math.isfinite(fv):
            raise ObservationError(f"{name}: not a finite number")
        lo, hi = GROSS_LIMITS[name]
        if not lo <= fv <= hi:
            raise ObservationError(f"{name}: {fv:g} outside the physical range [{lo:g}, {hi:g}]")
        values[name] = fv
    if not values:
        raise ObservationError("observation: no measured element (e.g. tmax_c, precip_mm)")
    if "precip_mm" in values and "precip_period_h" not in values:
        raise ObservationError("precip_period_h: required with precip_mm")
    src = raw.get("source")
    if src is None:  # null is "not given", as for the elements (and as the column form of a batch writes it)
        src = source or "push"
    if not isinstance(src, str):
        raise ObservationError("source: expected a string")
    return Observation(station_id=sid, time=format_time(t), source=src[:64], **values)  # type: ignore[arg-type]


MAX_LEAD_H = 240.0


def validate_forecast(raw: Any, *, known_station: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """A ForecastPoint as a normalised dict, or ObservationError naming the field.

    ``{"station_id", "issued_at", "valid_from", "valid_to", "lead_h"?, "values": {element: number}, "source"?}``;
    lead_h defaults to valid_from - issued_at in hours.
    """
    if not isinstance(raw, dict):
        raise ObservationError(f"forecast: expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"station_id", "issued_at", "valid_from", "valid_to", "lead_h", "values", "source"})
    if unknown:
        raise ObservationError(f"{unknown[0]}: unknown field")
    sid = raw.get("station_id")
    if not isinstance(sid, str) or not sid.strip():
        raise ObservationError("station_id: required string")
    if known_station is not None and not known_station(sid):
        raise ObservationError(f"station_id: unknown station {sid[:20]!r}")
    times = {k: parse_time(raw.get(k), k) if k in raw else None for k in ("issued_at", "valid_from", "valid_to")}
    for k, v in times.items():
        if v is None:
            raise ObservationError(f"{k}: required")
    issued, vf, vt = times["issued_at"], times["valid_from"], times["valid_to"]
    assert issued is not None and vf is not None and vt is not None
    if vt <= vf:
        raise ObservationError("valid_to: must be after valid_from")
    lead = raw.get("lead_h", (vf - issued).total_seconds() / 3600)
    if isinstance(lead, bool) or not isinstance(lead, int | float) or not 0 <= lead <= MAX_LEAD_H:
        raise ObservationError(f"lead_h: a number of hours in [0, {MAX_LEAD_H:g}]")
    values = raw.get("values")
    if not isinstance(values, dict) or not values:
        raise ObservationError("values: required object of element values (e.g. {\"tmax_c\": 40.2})")
    clean: dict[str, float] = {}
    for name, v in values.items():
        if name not in OBSERVATION_ELEMENTS:
            raise ObservationError(f"values.{name}: unknown element")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
            raise ObservationError(f"values.{name}: expected a finite number")
        lo, hi = GROSS_LIMITS[name]
        if not lo <= float(v) <= hi:
            raise ObservationError(f"values.{name}: {float(v):g} outside the physical range [{lo:g}, {hi:g}]")
        clean[name] = float(v)
    src = raw.get("source", "push")
    return {"station_id": sid, "issued_at": format_time(issued), "valid_from": format_time(vf),
            "valid_to": format_time(vt), "lead_h": float(lead), "values": clean,
            "source": src[:64] if isinstance(src, str) else "push"}


# ---- grid areas: a county's forecast level for one hazard from a forecast grid's cells (warning.grid_grading) ----
GRID_AREA_FIELDS = frozenset({"county_code", "hazard", "level", "issued_at", "valid_from", "valid_to", "lead_h",
                              "quantity", "value", "share", "area_km2", "cells", "polygons", "source"})
GRID_LEVELS = ("blue", "yellow", "orange", "red")
MAX_AREA_POLYGONS = 10
MAX_POLYGON_POINTS = 100  # CAP polygons of at most 100 points (warning.grid_polygons)


def _polygons(raw: Any) -> list[list[list[float]]]:
    if not isinstance(raw, list) or len(raw) > MAX_AREA_POLYGONS:
        raise ObservationError(f"polygons: a list of at most {MAX_AREA_POLYGONS} polygons")
    out = []
    for i, poly in enumerate(raw):
        if not isinstance(poly, list) or not 4 <= len(poly) <= MAX_POLYGON_POINTS:
            raise ObservationError(f"polygons[{i}]: 4 to {MAX_POLYGON_POINTS} [lat, lon] points")
        pts = []
        for p in poly:
            if (not isinstance(p, list) or len(p) != 2 or any(isinstance(x, bool) or not isinstance(x, int | float)
                                                               or not math.isfinite(x) for x in p)
                    or not (-90 <= p[0] <= 90 and -180 <= p[1] <= 180)):
                raise ObservationError(f"polygons[{i}]: points are [lat, lon] in WGS 84 degrees")
            pts.append([float(p[0]), float(p[1])])
        if pts[0] != pts[-1]:
            raise ObservationError(f"polygons[{i}]: not closed (first point != last)")
        out.append(pts)
    return out


def validate_grid_area(raw: Any, *, known_county: Callable[[str], bool] | None = None,
                       known_hazard: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """A GridArea record (``forecast`` topic, ``{"areas": [...]}``) as a normalised dict, or ObservationError
    naming the field."""
    if not isinstance(raw, dict):
        raise ObservationError(f"area: expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - GRID_AREA_FIELDS)
    if unknown:
        raise ObservationError(f"{unknown[0]}: unknown field")
    code, hazard, level = raw.get("county_code"), raw.get("hazard"), raw.get("level")
    if not isinstance(code, str) or (known_county is not None and not known_county(code)):
        raise ObservationError(f"county_code: not a county code of the region tree ({str(code)[:12]!r})")
    if not isinstance(hazard, str) or (known_hazard is not None and not known_hazard(hazard)):
        raise ObservationError(f"hazard: unknown hazard {str(hazard)[:20]!r}")
    if level not in GRID_LEVELS:
        raise ObservationError(f"level: one of {', '.join(GRID_LEVELS)}")
    times = {k: parse_time(raw.get(k), k) for k in ("issued_at", "valid_from", "valid_to")}
    if times["valid_to"] <= times["valid_from"]:
        raise ObservationError("valid_to: must be after valid_from")
    out: dict[str, Any] = {"county_code": code, "hazard": hazard, "level": level,
                           **{k: format_time(v) for k, v in times.items()}}
    for name, lo, hi in (("lead_h", 0.0, MAX_LEAD_H), ("share", 0.0, 1.0 + 1e-9), ("area_km2", 0.0, 1e6)):
        v = raw.get(name)
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= float(v) <= hi:
            raise ObservationError(f"{name}: a number in [{lo:g}, {hi:g}]")
        out[name] = float(v)
    value = raw.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                              or not math.isfinite(float(value))):
        raise ObservationError("value: a finite number or null")
    quantity, source, cells = raw.get("quantity"), raw.get("source", "grid"), raw.get("cells", 0)
    if not isinstance(quantity, str) or len(quantity) > 40:
        raise ObservationError("quantity: required string")
    if isinstance(cells, bool) or not isinstance(cells, int) or cells < 0:
        raise ObservationError("cells: a count")
    out.update(value=None if value is None else float(value), quantity=quantity, cells=cells,
               source=source[:64] if isinstance(source, str) else "grid", polygons=_polygons(raw.get("polygons", [])))
    return out
