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
