"""Grid cells of one county -> CAP 1.2 polygons (§3.2.4): the cells merged, clipped to the county outline, each
part's exterior simplified to at most ``MAX_VERTICES`` points (closed, "lat,lon" pairs, valid).

At most 100 vertices a polygon follows the guidance for CAP areas (WMO's register of alerting authorities and
Google Public Alerts ask for polygons of at most 100 points). Cells are first merged row by row into runs (one
rectangle per run of neighbouring cells), so a county full of cells is a few hundred rectangles, not ten thousand
boxes, before the union. Holes are left out (CAP polygons have none: the area then covers them, erring towards
warning). At most ``MAX_POLYGONS`` parts are kept, the largest (UNCONFIRMED choice: a CAP area with dozens of
specks helps no receiver).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from warning.grid_counties import _edges, county_geometries

MAX_VERTICES = 100  # points of one CAP polygon, the closing point included
MAX_POLYGONS = 10


def _runs(flat: np.ndarray, n_lon: int) -> list[tuple[int, int, int]]:
    """(row, first column, last column) of each run of neighbouring cells in a row."""
    cells = np.unique(flat)
    rows, cols = cells // n_lon, cells % n_lon
    breaks = np.flatnonzero((np.diff(rows) != 0) | (np.diff(cols) != 1)) + 1
    starts = np.r_[0, breaks]
    ends = np.r_[breaks - 1, cells.size - 1]
    return list(zip(rows[starts].tolist(), cols[starts].tolist(), cols[ends].tolist(), strict=True))


def cells_geometry(flat: np.ndarray, shape: tuple[int, int], lat: np.ndarray, lon: np.ndarray) -> BaseGeometry:
    """The union of the cells (flat indices i_lat * n_lon + i_lon of a grid with these axes)."""
    lat_e = _edges(np.asarray(lat, dtype="float64"))
    lon_c = np.asarray(lon, dtype="float64")
    lon_e = _edges(np.where(lon_c > 180.0, lon_c - 360.0, lon_c))
    boxes = [shapely.box(min(lon_e[j0], lon_e[j1 + 1]), min(lat_e[i], lat_e[i + 1]),
                         max(lon_e[j0], lon_e[j1 + 1]), max(lat_e[i], lat_e[i + 1]))
             for i, j0, j1 in _runs(flat, shape[1])]
    return shapely.union_all(boxes) if boxes else Polygon()


def simplified_exterior(poly: Polygon, tolerance: float) -> list[tuple[float, float]] | None:
    """The exterior of ``poly`` simplified until it has at most MAX_VERTICES points: (lat, lon) pairs rounded to
    4 decimals, closed, at least 4 points, a valid ring; None when nothing valid remains."""
    shell = Polygon(poly.exterior)
    tol = tolerance
    for _ in range(40):
        simple = shell.simplify(tol, preserve_topology=True) if tol > 0 else shell
        ring = [(round(y, 4), round(x, 4)) for x, y in simple.exterior.coords]
        deduped = [p for i, p in enumerate(ring) if i == 0 or p != ring[i - 1]]
        if len(deduped) <= MAX_VERTICES and len(deduped) >= 4:
            if deduped[0] != deduped[-1]:
                deduped.append(deduped[0])
            check = Polygon([(lon, lat) for lat, lon in deduped])
            if check.is_valid and check.area > 0:
                return deduped
        tol = tol * 2 if tol > 0 else 1e-4
    return None


def county_polygons(code: str, flat: np.ndarray, shape: tuple[int, int], lat: np.ndarray, lon: np.ndarray
                    ) -> list[list[list[float]]]:
    """The cells of county ``code`` merged, clipped to its outline and simplified: a list of CAP polygons, each a
    closed list of [lat, lon]."""
    if flat.size == 0:
        return []
    codes, geoms, _ = county_geometries()
    geom: Any = cells_geometry(flat, shape, lat, lon)
    if code in codes:
        geom = shapely.intersection(geom, geoms[codes.index(code)])
    parts = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon) and p.area > 0]
    parts.sort(key=lambda p: p.area, reverse=True)
    step = float(np.median(np.abs(np.diff(lat)))) if len(lat) > 1 else 0.01
    out = []
    for p in parts[:MAX_POLYGONS]:
        ring = simplified_exterior(p, step / 4)
        if ring is not None:
            out.append([[a, b] for a, b in ring])
    return out
