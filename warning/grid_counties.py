"""Which grid cells lie in which county, and by how much: the cell-to-county index of one grid definition.

Built once per grid definition (its latitude and longitude axes) from the county outlines (the dashboard's GeoJSON,
``warning.shapes``) with shapely, and cached in memory and on disk (``.npz`` under a cache directory, keyed by a
hash of the axes and the outlines). A cell is the box around its centre, half-way to its neighbours. Cells wholly
inside a county weigh their full area; cells cut by a county's outline weigh the area of the part inside (exact
box-polygon intersection), so a cell on a border counts in both counties by its share. Areas are in km² on the
sphere (a cell of dlat x dlon degrees at latitude φ: dlat·dlon·111.32²·cos φ).

The index is a list of (cell, county, weight) pairs; grading works on the distinct cells (``cells``) and rolls
their levels up to counties with ``np.bincount`` over the pairs (``warning.grid_grading``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape

log = logging.getLogger(__name__)

KM_PER_DEGREE = 111.32  # on the sphere of 6,371 km
INDEX_VERSION = 1  # part of the cache key: bump when the index's construction changes


@dataclass(frozen=True)
class CountyCells:
    """The cell-to-county index of one grid (latitude x longitude, in the file's order)."""

    codes: tuple[str, ...]  # county codes; a pair's ``county`` indexes this
    shape: tuple[int, int]  # (n latitudes, n longitudes)
    cells: np.ndarray  # distinct flat cell indices (i_lat * n_lon + i_lon) in some county, sorted
    pair_cell: np.ndarray  # per pair: position of its cell in ``cells``
    pair_county: np.ndarray  # per pair: county number
    pair_km2: np.ndarray  # per pair: km² of the cell inside the county
    county_km2: np.ndarray  # per county: its area covered by the grid (the sum of its pairs' km²)
    cell_county: np.ndarray  # per distinct cell: the county holding most of it (per-county thresholds)
    key: str

    @property
    def n_counties(self) -> int:
        return len(self.codes)

    def county_sum(self, values: np.ndarray) -> np.ndarray:
        """Per county, the sum over its pairs of ``values`` (one per pair)."""
        return np.bincount(self.pair_county, weights=values, minlength=self.n_counties)


@lru_cache(maxsize=1)
def county_geometries() -> tuple[tuple[str, ...], tuple[Any, ...], str]:
    """(codes, shapely geometries, digest of the GeoJSON) of every county outline, made valid."""
    text = resources.files("warning").joinpath("web/static/gansu_counties.geojson").read_text(encoding="utf-8")
    codes, geoms = [], []
    for feature in json.loads(text).get("features", []):
        geom = feature.get("geometry")
        if not geom:
            continue
        g = shape(geom)
        if not g.is_valid:  # keep the polygonal parts of the repaired outline
            g = shapely.union_all([p for p in shapely.get_parts(shapely.make_valid(g))
                                   if p.geom_type in ("Polygon", "MultiPolygon")])
        codes.append(str(feature["properties"]["code"]))
        geoms.append(g)
    return tuple(codes), tuple(geoms), hashlib.sha256(text.encode()).hexdigest()[:16]


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges of an axis of centres (ascending or descending): half-way between neighbours, half a spacing
    beyond the ends."""
    c = np.asarray(centres, dtype="float64")
    if c.size == 1:
        return np.array([c[0] - 0.005, c[0] + 0.005])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def grid_key(lat: np.ndarray, lon: np.ndarray) -> str:
    _, _, digest = county_geometries()
    h = hashlib.sha256()
    for part in (np.asarray(lat, dtype="float64").tobytes(), np.asarray(lon, dtype="float64").tobytes(),
                 digest.encode(), str(INDEX_VERSION).encode()):
        h.update(part)
    return h.hexdigest()[:24]


def _window(edges: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    """Index range [i0, i1) of the cells whose [edge_i, edge_i+1] overlaps [lo, hi] (edges in either order)."""
    a, b = np.minimum(edges[:-1], edges[1:]), np.maximum(edges[:-1], edges[1:])
    hit = np.flatnonzero((b > lo) & (a < hi))
    return (int(hit[0]), int(hit[-1]) + 1) if hit.size else (0, 0)


def _county_pairs(geom: Any, lat_e: np.ndarray, lon_e: np.ndarray, lat_c: np.ndarray, lon_c: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(flat cell indices, km² inside) of one county's cells."""
    minx, miny, maxx, maxy = geom.bounds
    i0, i1 = _window(lat_e, miny, maxy)
    j0, j1 = _window(lon_e, minx, maxx)
    if i1 <= i0 or j1 <= j0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    mesh_i, mesh_j = np.meshgrid(np.arange(i0, i1), np.arange(j0, j1), indexing="ij")
    ii, jj = mesh_i.ravel(), mesh_j.ravel()
    y0, y1 = np.minimum(lat_e[ii], lat_e[ii + 1]), np.maximum(lat_e[ii], lat_e[ii + 1])
    x0, x1 = np.minimum(lon_e[jj], lon_e[jj + 1]), np.maximum(lon_e[jj], lon_e[jj + 1])
    cos = np.cos(np.radians(lat_c[ii]))
    km2_per_deg2 = KM_PER_DEGREE ** 2 * cos
    shapely.prepare(geom)
    inside = shapely.contains_xy(geom, lon_c[jj], lat_c[ii])
    # cells the outline passes through: boxes hit by a segment of any ring (short segments, small envelopes)
    boxes = shapely.box(x0, y0, x1, y1)
    tree = shapely.STRtree(boxes)
    rings = shapely.get_rings(shapely.get_parts(geom))
    coords = [np.asarray(shapely.get_coordinates(r)) for r in rings]
    segs = shapely.linestrings(np.concatenate([np.stack([c[:-1], c[1:]], axis=1) for c in coords if len(c) > 1]))
    _, edge = tree.query(segs, predicate="intersects")
    edge = np.unique(edge)
    km2 = np.where(inside, (y1 - y0) * (x1 - x0) * km2_per_deg2, 0.0)
    if edge.size:
        km2[edge] = shapely.area(shapely.intersection(boxes[edge], geom)) * km2_per_deg2[edge]
    keep = km2 > 0
    return (ii[keep] * lon_c.size + jj[keep]).astype(np.int64), km2[keep]


def build_index(lat: np.ndarray, lon: np.ndarray) -> CountyCells:
    """The index of the grid with these axes (1-D, degrees; longitudes -180..180 or 0..360)."""
    lat_c = np.asarray(lat, dtype="float64")
    lon_c = np.asarray(lon, dtype="float64")
    lon_c = np.where(lon_c > 180.0, lon_c - 360.0, lon_c)
    lat_e, lon_e = _edges(lat_c), _edges(lon_c)
    codes, geoms, _ = county_geometries()
    pc, pk, pw = [], [], []
    for k, geom in enumerate(geoms):
        cells, km2 = _county_pairs(geom, lat_e, lon_e, lat_c, lon_c)
        pc.append(cells)
        pk.append(np.full(cells.size, k, dtype=np.int32))
        pw.append(km2)
    flat = np.concatenate(pc) if pc else np.zeros(0, dtype=np.int64)
    county = np.concatenate(pk) if pk else np.zeros(0, dtype=np.int32)
    km2 = np.concatenate(pw) if pw else np.zeros(0)
    return _assemble(codes, (lat_c.size, lon_c.size), flat, county, km2, grid_key(lat, lon))


def _assemble(codes: tuple[str, ...], shape_: tuple[int, int], flat: np.ndarray, county: np.ndarray,
              km2: np.ndarray, key: str) -> CountyCells:
    cells, pair_cell = np.unique(flat, return_inverse=True)
    county_km2 = np.bincount(county, weights=km2, minlength=len(codes))
    # per cell the county with the largest part of it: sort pairs by (cell, km2) and take each cell's last
    order = np.lexsort((km2, pair_cell))
    cell_county = np.empty(cells.size, dtype=np.int32)
    if order.size:
        last = np.r_[pair_cell[order][1:] != pair_cell[order][:-1], True]
        cell_county[pair_cell[order][last]] = county[order][last]
    return CountyCells(codes, shape_, cells, pair_cell.astype(np.int64), county.astype(np.int32),
                       km2.astype("float64"), county_km2, cell_county, key)


_MEMORY: dict[str, CountyCells] = {}


def county_cells(lat: np.ndarray, lon: np.ndarray, cache_dir: Path | None = None) -> CountyCells:
    """The index of this grid definition: from memory, else from ``cache_dir``, else built (and stored there)."""
    key = grid_key(lat, lon)
    have = _MEMORY.get(key)
    if have is not None:
        return have
    path = cache_dir / f"county-cells-{key}.npz" if cache_dir is not None else None
    index: CountyCells | None = None
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                index = _assemble(tuple(str(c) for c in z["codes"]), (int(z["shape"][0]), int(z["shape"][1])),
                                  z["flat"], z["county"], z["km2"], key)
        except (OSError, KeyError, ValueError):
            log.warning("grid index cache %s unreadable; building it again", path)
    if index is None:
        index = build_index(lat, lon)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.npz")
                np.savez_compressed(tmp, codes=np.array(index.codes), shape=np.array(index.shape),
                                    flat=index.cells[index.pair_cell], county=index.pair_county, km2=index.pair_km2)
                tmp.replace(path)
            except OSError:
                log.warning("cannot store the grid index in %s", path, exc_info=True)
    if len(_MEMORY) >= 4:
        _MEMORY.clear()
    _MEMORY[key] = index
    return index
