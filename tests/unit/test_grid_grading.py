"""Forecast grids graded cell by cell and rolled up to counties (warning.grid_grading, grid_counties, grid_polygons),
on synthetic grids with known answers and on a real ERA5 field; the cell-to-county index against the polygons."""

from __future__ import annotations

import json
import math
import tomllib
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from shapely.geometry import Point, Polygon

from tests.support import CAP_XSD
from warning.cap import check_text_rules, check_xsd, render_cap
from warning.grading import apply_signal
from warning.grid_counties import KM_PER_DEGREE, build_index, county_cells, county_geometries
from warning.grid_grading import GridStats, grade_grid
from warning.grid_signals import grid_signals
from warning.rules import load_rules, parse_rules
from warning.shapes import county_at
from warning.shared.regions import RegionTree, StationRegistry

RULES = load_rules()
AKSAY, LINXIA, JISHISHAN = "620924", "622921", "622927"
ISSUED = np.datetime64("2026-07-14T00:00")


def geometry(code: str) -> Any:
    codes, geoms, _ = county_geometries()
    return geoms[codes.index(code)]


def rain_grid(path: Path, lat: np.ndarray, lon: np.ndarray, disc: tuple[float, float, float],
              wet_leads: tuple[int, ...], mm_per_h: float = 40.0, hours: int = 24) -> Path:
    """Hourly precipitation (ERA5 style: m per step) over 24 lead hours: ``mm_per_h`` inside the disc (lat, lon,
    radius in degrees) at the given lead hours (the step ending then), dry elsewhere."""
    steps = pd.to_timedelta(np.arange(1, hours + 1), unit="h")
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    inside = (la - disc[0]) ** 2 + (lo - disc[1]) ** 2 < disc[2] ** 2
    tp = np.zeros((1, steps.size, lat.size, lon.size), dtype=np.float32)
    for lead in wet_leads:
        tp[0, lead - 1][inside] = mm_per_h / 1000.0
    ds = xr.Dataset({"tp": (("time", "step", "latitude", "longitude"), tp, {"units": "m"})},
                    coords={"time": [ISSUED], "step": steps, "latitude": lat, "longitude": lon})
    ds.to_netcdf(path, encoding={"tp": {"zlib": True}})
    return path


def areas_by(areas: list[dict[str, Any]], hazard: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a in areas:
        if a["hazard"] == hazard:
            out.setdefault(a["county_code"], set()).add(a["level"])
    return out


def check_cap_polygons(polygons: list[list[list[float]]]) -> None:
    assert polygons
    for poly in polygons:
        assert 4 <= len(poly) <= 100 and poly[0] == poly[-1]
        assert all(-90 <= lat <= 90 and -180 <= lon <= 180 for lat, lon in poly)
        assert Polygon([(lon, lat) for lat, lon in poly]).is_valid


# ---- the cell-to-county index -------------------------------------------------------------------------------
def test_index_weights_add_up_to_each_county_area_and_cells_lie_in_their_county() -> None:
    lat, lon = np.arange(42.9, 32.4, -0.05), np.arange(92.2, 108.8, 0.05)  # descending latitudes, as ERA5
    index = build_index(lat, lon)
    codes, geoms, _ = county_geometries()
    for k, geom in enumerate(geoms):  # the polygon's own area on the sphere, part by part
        expect = sum(p.area * KM_PER_DEGREE ** 2 * math.cos(math.radians(p.centroid.y))
                     for p in shapely.get_parts(geom))
        assert index.county_km2[k] == pytest.approx(expect, rel=0.01), codes[k]
    cell_km2 = 0.05 * 0.05 * KM_PER_DEGREE ** 2 * np.cos(np.radians(lat[index.cells // lon.size]))
    per_cell = np.bincount(index.pair_cell, weights=index.pair_km2, minlength=index.cells.size)
    # no cell counts more than its own area over all counties, but where the (simplified) outlines overlap
    overlap_deg2 = sum(g.area for g in geoms) - shapely.union_all(geoms).area
    excess_km2 = np.clip(per_cell - cell_km2, 0, None).sum()
    assert excess_km2 <= overlap_deg2 * KM_PER_DEGREE ** 2 + 1.0
    # a cell wholly inside one county: its centre is in that county's outline (warning.shapes.county_at)
    full = np.flatnonzero(np.isclose(index.pair_km2, cell_km2[index.pair_cell], rtol=1e-6))
    rng = np.random.default_rng(21)
    for p in rng.choice(full, 300, replace=False):
        flat = index.cells[index.pair_cell[p]]
        assert county_at(float(lat[flat // lon.size]), float(lon[flat % lon.size])) == codes[index.pair_county[p]]


def test_index_is_built_once_per_grid_and_cached_on_disk(tmp_path: Path) -> None:
    lat, lon = np.arange(35.0, 36.5, 0.03), np.arange(102.0, 104.0, 0.03)
    first = county_cells(lat, lon, tmp_path)
    assert county_cells(lat, lon, tmp_path) is first  # memory
    [stored] = list(tmp_path.glob("county-cells-*.npz"))
    from warning import grid_counties

    grid_counties._MEMORY.clear()
    again = county_cells(lat, lon, tmp_path)  # from the file
    assert again is not first and again.key == first.key == stored.stem.removeprefix("county-cells-")
    for name in ("cells", "pair_cell", "pair_county", "pair_km2", "county_km2", "cell_county"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    assert county_cells(lat + 0.01, lon, tmp_path).key != first.key  # another grid definition, another index


# ---- cell grading with known answers ------------------------------------------------------------------------
def test_a_storm_over_a_county_without_a_station_issues_that_county(tmp_path: Path) -> None:
    assert not [s for s in StationRegistry.load() if s.county_code == AKSAY]
    lat, lon = np.arange(38.0, 40.0, 0.02), np.arange(92.2, 96.8, 0.02)
    centre = geometry(AKSAY).representative_point()
    grid = rain_grid(tmp_path / "storm.nc", lat, lon, (centre.y, centre.x, 0.5), wet_leads=(2, 3, 4))
    stats = GridStats()
    areas = list(grade_grid(grid, RULES, stats=stats))
    storm = areas_by(areas, "rainstorm")
    # 40 mm/h ending at leads 2, 3, 4: 80 mm in 3 h at lead 3 (orange, within its 3 h); 120 mm in 3 h only at
    # lead 4, beyond red's 3 h horizon: never red; 120 mm in 6 h within 6 h: yellow; blue within 12 h
    assert storm == {AKSAY: {"orange", "yellow", "blue"}}
    orange = next(a for a in areas if a["hazard"] == "rainstorm" and a["level"] == "orange")
    assert (orange["quantity"], orange["value"], orange["lead_h"]) == ("rain_3h", 80.0, 3.0)
    assert (orange["valid_from"], orange["valid_to"]) == ("2026-07-14T02:00:00Z", "2026-07-14T03:00:00Z")
    in_county = Point(centre.x, centre.y).buffer(0.5, 256).intersection(geometry(AKSAY))
    assert orange["area_km2"] == pytest.approx(
        in_county.area * KM_PER_DEGREE ** 2 * math.cos(math.radians(centre.y)), rel=0.05)
    check_cap_polygons(orange["polygons"])
    poly = shapely.union_all([Polygon([(lon_, lat_) for lat_, lon_ in p]) for p in orange["polygons"]])
    assert poly.contains(Point(centre.x, centre.y))
    assert poly.symmetric_difference(in_county).area < 0.08 * in_county.area
    assert stats.runs == 1 and stats.steps == 24


def test_a_storm_straddling_two_counties_issues_both_with_their_own_polygons(tmp_path: Path) -> None:
    border = geometry(LINXIA).boundary.intersection(geometry(JISHISHAN).boundary)
    mid = shapely.line_interpolate_point(shapely.line_merge(border), 0.5, normalized=True) \
        if border.geom_type != "Point" else border
    mid = shapely.get_parts(mid)[0] if mid.geom_type.startswith("Multi") else mid
    lat, lon = np.arange(35.0, 36.2, 0.01), np.arange(102.4, 103.6, 0.01)
    r = 0.12
    grid = rain_grid(tmp_path / "straddle.nc", lat, lon, (mid.y, mid.x, r), wet_leads=(1, 2))
    areas = list(grade_grid(grid, RULES))
    storm = areas_by(areas, "rainstorm")
    assert set(storm) == {LINXIA, JISHISHAN} and storm[LINXIA] == storm[JISHISHAN] == {"orange", "yellow", "blue"}
    disc = Point(mid.x, mid.y).buffer(r, 256)
    for code in (LINXIA, JISHISHAN):
        [area] = [a for a in areas if a["hazard"] == "rainstorm" and a["level"] == "orange"
                  and a["county_code"] == code]
        check_cap_polygons(area["polygons"])
        got = shapely.union_all([Polygon([(x, y) for y, x in p]) for p in area["polygons"]])
        want = disc.intersection(geometry(code))
        # the county's own part of the storm, to within a cell's width along its edge and the simplification
        assert got.symmetric_difference(want).area < 0.12 * want.area, code
        assert got.difference(geometry(code)).area < 0.02 * got.area


def test_leads_beyond_a_levels_horizon_do_not_issue_it(tmp_path: Path) -> None:
    lat, lon = np.arange(38.0, 40.0, 0.02), np.arange(92.2, 96.8, 0.02)
    centre = geometry(AKSAY).representative_point()
    late = rain_grid(tmp_path / "late.nc", lat, lon, (centre.y, centre.x, 0.5), wet_leads=(13, 14, 15))
    assert areas_by(list(grade_grid(late, RULES)), "rainstorm") == {}  # blue's horizon is 12 h
    mid = rain_grid(tmp_path / "mid.nc", lat, lon, (centre.y, centre.x, 0.5), wet_leads=(8, 9, 10))
    assert areas_by(list(grade_grid(mid, RULES)), "rainstorm") == {AKSAY: {"blue"}}  # 120 mm in 12 h, 8-10 h out


def heat_grid(path: Path, tmax_by_day: list[float]) -> Path:
    """Hourly 2 m temperature over the province for len(tmax_by_day) Beijing days (20:00 BJT boundaries): 25 °C
    at night, the day's maximum from 06 to 09 UTC (14-17 BJT)."""
    lat, lon = np.arange(32.5, 43.0, 0.25), np.arange(92.2, 108.8, 0.25)
    issued = np.datetime64("2026-07-14T12:00")  # 20:00 BJT: the run starts at a day boundary
    steps = pd.to_timedelta(np.arange(1, 24 * len(tmax_by_day) + 1), unit="h")
    t = np.full((1, steps.size, lat.size, lon.size), 25.0 + 273.15, dtype=np.float32)
    for d, tmax in enumerate(tmax_by_day):
        for utc_h in (6, 7, 8, 9):
            t[0, 24 * d + 12 + utc_h - 1] = tmax + 273.15  # step ending at utc_h of the next UTC day
    ds = xr.Dataset({"t2m": (("time", "step", "latitude", "longitude"), t, {"units": "K"})},
                    coords={"time": [issued], "step": steps, "latitude": lat, "longitude": lon})
    ds.to_netcdf(path)
    return path


def test_daily_criteria_on_forecast_days_each_level_within_its_lead(tmp_path: Path) -> None:
    # 41 °C on the first day (lead <= 24 h: red), then 36 / 36 (three days >= 35: yellow within 72 h)
    areas = list(grade_grid(heat_grid(tmp_path / "hot.nc", [41.0, 36.0, 36.0]), RULES))
    heat = areas_by(areas, "heat")
    assert len(heat) == 87 and all(levels == {"red", "orange", "yellow"} for levels in heat.values())
    yellow = next(a for a in areas if a["hazard"] == "heat" and a["level"] == "yellow")
    assert yellow["valid_to"] == "2026-07-17T12:00:00Z" and yellow["share"] == 1.0
    # 41 °C only on the second day (lead > 24 h): never red or orange, and no three-day run
    assert areas_by(list(grade_grid(heat_grid(tmp_path / "later.nc", [30.0, 41.0, 30.0]), RULES)), "heat") == {}


# ---- into the county chain and CAP --------------------------------------------------------------------------
def test_grid_signals_make_one_chain_with_the_stations_and_a_cap_area_of_the_cells(tmp_path: Path) -> None:
    lat, lon = np.arange(35.0, 36.2, 0.01), np.arange(102.4, 103.6, 0.01)
    centre = geometry(LINXIA).representative_point()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    grid = rain_grid(tmp_path / "s.nc", lat, lon, (centre.y, centre.x, 0.1), wet_leads=(1, 2))
    areas = [a for a in grade_grid(grid, RULES, issued_at=now.replace(tzinfo=None))
             if a["hazard"] == "rainstorm" and a["county_code"] == LINXIA]
    signals, rejects = grid_signals(RULES, RegionTree.load(), areas, {"accepted_at": now.timestamp()})
    assert rejects == [] and [s["level"] for s in signals] == ["orange", "yellow", "blue"]
    rule = RULES["rainstorm"]
    state, event = None, None
    for s in signals:
        state, ev = apply_signal(state, s, rule)
        event = ev or event
    assert event is not None and (event["msg_type"], event["level"], event["basis"]) == ("alert", "orange", "forecast")
    assert event["bases"] == ["grid"] and event["stations"] == []
    assert event["grid"]["share"] > 0.05 and event["area_polygons"] == signals[0]["polygons"]
    xml = render_cap(event, polygons=[[tuple(p) for p in poly] for poly in event["area_polygons"]], rules=RULES)
    assert check_xsd(xml, CAP_XSD) == [] and check_text_rules(xml) == []
    assert b"<valueName>GB/T 2260</valueName>" in xml and xml.count(b"<polygon>") == 2 * len(event["area_polygons"])
    # a station of the county at red: the same chain, upgraded; both bases; the county is the area again
    station = next(s for s in StationRegistry.load() if s.county_code == LINXIA) if any(
        s.county_code == LINXIA for s in StationRegistry.load()) else None
    sig = {**{k: signals[0][k] for k in ("region_code", "region_level", "region_name", "region_name_zh",
                                         "prefecture_code", "hazard")},
           "kind": "station", "station_id": station.station_id if station else "52984",
           "station_name": "Linxia", "level": "red", "quantity": "rain_3h", "value": 105.0,
           "time": signals[0]["time"], "basis": "observed"}
    state, up = apply_signal(state, sig, rule)
    assert up is not None and (up["msg_type"], up["change"], up["level"]) == ("update", "upgrade", "red")
    assert up["warning_id"] == event["warning_id"] and up["bases"] == ["grid", "station"]
    assert "area_polygons" not in up and up["grid"]["level"] == "orange"


def test_unknown_counties_and_bad_polygons_are_rejected() -> None:
    good = {"county_code": AKSAY, "hazard": "rainstorm", "level": "blue", "issued_at": "2026-07-14T00:00:00Z",
            "valid_from": "2026-07-14T01:00:00Z", "valid_to": "2026-07-14T02:00:00Z", "lead_h": 1.0,
            "quantity": "rain_12h", "value": 60.0, "share": 0.2, "area_km2": 100.0, "cells": 10,
            "polygons": [[[39.0, 94.0], [39.1, 94.0], [39.1, 94.1], [39.0, 94.0]]]}
    bad = [{**good, "county_code": "620900"}, {**good, "polygons": [[[39.0, 94.0], [39.1, 94.0], [39.1, 94.1]]]},
           {**good, "polygons": [[[39.0, 94.0]] * 101 + [[39.0, 94.0]]]}, {**good, "hazard": "tsunami"},
           {**good, "level": "purple"}, {**good, "share": 2}]
    signals, rejects = grid_signals(RULES, RegionTree.load(), [good, *bad], {})
    assert len(signals) == 1 and len(rejects) == len(bad)
    assert signals[0]["region_name"] and signals[0]["prefecture_code"] == "620900"


# ---- a real grid --------------------------------------------------------------------------------------------
def test_real_era5_field_over_gansu_matches_a_brute_force_rollup(netcdf_dir: Path, tmp_path: Path) -> None:
    """The ERA5 2 m temperature of 1995-07-14 12 UTC (0.25°, packed int16, K), its CONUS window 24.5-34.5 N,
    110.5-94.25 W moved onto Gansu's box, read as a forecast valid 12 h after issue and graded with a bureau's
    table whose heat red is the field's 70th percentile. Each county's red must equal an independent roll-up: the
    file's values in °C, each cell's box intersected with the county outline by shapely, red where >= 25 % of the
    area is at or above the threshold."""
    raw = xr.open_dataset(netcdf_dir / "era5_1995-07-14T12.nc")
    window = raw["t2m"].sel(latitude=slice(34.5, 24.5), longitude=slice(-110.5, -94.25))
    lat = np.round(window["latitude"].values - 24.5 + 32.5, 4)  # 42.5 .. 32.5 (descending, as ERA5)
    lon = np.round(window["longitude"].values + 110.5 + 92.5, 4)  # 92.5 .. 108.75
    t2m = window.values[None, None]
    ds = xr.Dataset({"t2m": (("time", "step", "latitude", "longitude"), t2m, {"units": "K"})},
                    coords={"time": [np.datetime64("1995-07-14T00:00")], "step": pd.to_timedelta([12], unit="h"),
                            "latitude": lat, "longitude": lon})
    ds.to_netcdf(tmp_path / "era5_gansu.nc")
    celsius = t2m[0, 0] - 273.15
    threshold = round(float(np.percentile(celsius, 70)), 1)
    doc = tomllib.loads(resources.files("warning").joinpath("data/rules.toml").read_text(encoding="utf-8"))
    red = next(lv for lv in doc["hazards"]["heat"]["levels"] if lv["level"] == "red")
    red["all"][0]["value"] = threshold
    rules = parse_rules(doc)
    areas = list(grade_grid(tmp_path / "era5_gansu.nc", rules))
    got = {a["county_code"] for a in areas if a["hazard"] == "heat" and a["level"] == "red"}

    hot = celsius >= threshold
    assert 0.05 < hot.mean() < 0.95  # the real field is neither all hot nor all cool here
    codes, geoms, _ = county_geometries()
    expect = set()
    for code, geom in zip(codes, geoms, strict=True):
        minx, miny, maxx, maxy = geom.bounds
        area = at = 0.0
        for i in np.flatnonzero((lat >= miny - 0.125) & (lat <= maxy + 0.125)):
            for j in np.flatnonzero((lon >= minx - 0.125) & (lon <= maxx + 0.125)):
                box = shapely.box(lon[j] - 0.125, lat[i] - 0.125, lon[j] + 0.125, lat[i] + 0.125)
                part = box.intersection(geom).area * math.cos(math.radians(lat[i]))
                area += part
                at += part if hot[i, j] else 0.0
        if area > 0 and at / area >= 0.25:
            expect.add(code)
    assert got == expect and got


def test_precipitation_accumulated_since_the_start_grades_as_the_hourly_amounts(tmp_path: Path) -> None:
    lat, lon = np.arange(38.0, 40.0, 0.02), np.arange(92.2, 96.8, 0.02)
    centre = geometry(AKSAY).representative_point()
    hourly = rain_grid(tmp_path / "hourly.nc", lat, lon, (centre.y, centre.x, 0.5), wet_leads=(2, 3, 4))
    ds = xr.open_dataset(hourly)
    acc = ds.assign(tp=ds["tp"].cumsum("step").assign_attrs(units="m", long_name="Total precipitation"))
    acc.to_netcdf(tmp_path / "accumulated.nc")  # ECMWF style: tp accumulated since the reference time
    ds.close()
    strip = [{k: v for k, v in a.items() if k != "source"} for a in grade_grid(hourly, RULES)]
    assert strip and strip == [{k: v for k, v in a.items() if k != "source"}
                               for a in grade_grid(tmp_path / "accumulated.nc", RULES)]


def test_cold_wave_on_forecast_days_each_level_within_its_lead(tmp_path: Path) -> None:
    """Minimum 8 °C on the first forecast day, -3 °C with a 12 m/s wind on the second (a drop of 11 K in 24 h):
    yellow's criteria hold, but the second day's lead (from 25 h) is beyond yellow's 24 h; blue (48 h: a drop of
    >= 8 K within 48 h, minimum <= 4 °C, wind >= 8 m/s) is issued."""
    lat, lon = np.arange(35.0, 36.2, 0.05), np.arange(102.4, 103.6, 0.05)
    issued = np.datetime64("2026-07-14T12:00")  # 20:00 BJT: forecast days are steps 1-24, 25-48
    steps = pd.to_timedelta(np.arange(1, 49), unit="h")
    t = np.full((1, 48, lat.size, lon.size), 12.0 + 273.15, dtype=np.float32)
    t[0, 10] = 8.0 + 273.15  # the first day's minimum
    t[0, 24:48] = 2.0 + 273.15
    t[0, 34] = -3.0 + 273.15  # the second day's minimum
    wind = np.full_like(t, 3.0)
    wind[0, 24:48] = 12.0
    ds = xr.Dataset({"t2m": (("time", "step", "latitude", "longitude"), t, {"units": "K"}),
                     "si10": (("time", "step", "latitude", "longitude"), wind, {"units": "m s-1"})},
                    coords={"time": [issued], "step": steps, "latitude": lat, "longitude": lon})
    ds.to_netcdf(tmp_path / "cold.nc")
    areas = list(grade_grid(tmp_path / "cold.nc", RULES))
    cold = areas_by(areas, "cold_wave")
    assert cold and all(levels == {"blue"} for levels in cold.values())
    assert LINXIA in cold and JISHISHAN in cold
    blue = next(a for a in areas if a["hazard"] == "cold_wave" and a["county_code"] == LINXIA)
    assert (blue["quantity"], blue["value"], blue["lead_h"]) == ("tmin_drop_48h", 11.0, 25.0)
    # the 12 m/s wind is gale blue by value, but from lead 25 h, beyond gale blue's 24 h; July: no frost season
    assert {a["hazard"] for a in areas} == {"cold_wave"}


def test_ews_ingest_dry_run_writes_the_grid_areas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The `ews` command chooses cell grading (its grader, the configured rules, the index cached in the data dir):
    --grid-to counties writes GridAreas only, both adds the station points."""
    from warning.cli import main

    monkeypatch.setenv("EWS_DATA_DIR", str(tmp_path / "data"))
    lat, lon = np.arange(38.0, 40.0, 0.02), np.arange(92.2, 96.8, 0.02)
    centre = geometry(AKSAY).representative_point()
    grid = rain_grid(tmp_path / "storm.nc", lat, lon, (centre.y, centre.x, 0.5), wet_leads=(2, 3, 4))
    assert main(["ingest", str(grid), "--format", "grid", "--grid-to", "counties", "--dry-run"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines and all(x["county_code"] == AKSAY for x in lines)
    assert {x["level"] for x in lines if x["hazard"] == "rainstorm"} == {"orange", "yellow", "blue"}
    assert list((tmp_path / "data" / "grid_index").glob("county-cells-*.npz"))
    assert main(["ingest", str(grid), "--format", "grid", "--dry-run"]) == 0
    both = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert any("station_id" in x for x in both) and sum("county_code" in x for x in both) == len(lines)
