"""County and prefecture outlines (the dashboard's GeoJSON, sources in warning/web/static/SOURCES.md) as CAP
polygons: the exterior ring of the largest part, as (lat, lon) pairs, closed (CAP 1.2 §3.2.4 "polygon")."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from itertools import pairwise
from typing import Any

Polygon = list[tuple[float, float]]


def _area(ring: list[list[float]]) -> float:
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in pairwise(ring))) / 2


@lru_cache(maxsize=1)
def _polygons() -> dict[str, Polygon]:
    out: dict[str, Polygon] = {}
    for name in ("gansu_counties.geojson", "gansu_prefectures.geojson"):
        try:
            text = resources.files("warning").joinpath(f"web/static/{name}").read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        for feature in json.loads(text).get("features", []):
            geom: dict[str, Any] = feature.get("geometry") or {}
            parts = [geom["coordinates"]] if geom.get("type") == "Polygon" else geom.get("coordinates", [])
            rings = [p[0] for p in parts if p and len(p[0]) >= 4]
            if not rings:
                continue
            ring = max(rings, key=_area)
            poly = [(round(lat, 4), round(lon, 4)) for lon, lat in ring]
            if poly[0] != poly[-1]:
                poly.append(poly[0])
            out[str(feature["properties"]["code"])] = poly
    return out


def region_polygon(code: str) -> Polygon | None:
    return _polygons().get(str(code))


@lru_cache(maxsize=1)
def _county_parts() -> list[tuple[str, tuple[float, float, float, float], list[list[list[float]]]]]:
    """Every county outline as (code, bounding box (min lon, min lat, max lon, max lat), polygon parts, each a list
    of rings of [lon, lat]: the exterior first, then any holes), every part kept."""
    try:
        text = resources.files("warning").joinpath("web/static/gansu_counties.geojson").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for feature in json.loads(text).get("features", []):
        geom: dict[str, Any] = feature.get("geometry") or {}
        parts = [geom["coordinates"]] if geom.get("type") == "Polygon" else geom.get("coordinates", [])
        for part in parts:
            if not part or len(part[0]) < 4:
                continue
            lons, lats = [p[0] for p in part[0]], [p[1] for p in part[0]]
            out.append((str(feature["properties"]["code"]), (min(lons), min(lats), max(lons), max(lats)), part))
    return out


def _inside(lon: float, lat: float, ring: list[list[float]]) -> bool:
    """Ray casting (even-odd rule)."""
    inside = False
    for (x0, y0), (x1, y1) in pairwise(ring):
        if (y0 > lat) != (y1 > lat) and lon < x0 + (lat - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def county_at(lat: float, lon: float) -> str | None:
    """The GB/T 2260 code of the county whose outline contains (lat, lon) (WGS 84 degrees), or None (outside
    Gansu, or in a gap between the simplified outlines)."""
    for code, (x0, y0, x1, y1), rings in _county_parts():
        if x0 <= lon <= x1 and y0 <= lat <= y1 and _inside(lon, lat, rings[0]) \
                and not any(_inside(lon, lat, hole) for hole in rings[1:]):
            return code
    return None
