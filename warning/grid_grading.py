"""Forecast grids graded cell by cell, rolled up to county levels: ``ews ingest --format grid`` (cell grading).

Every cell of a forecast grid (``ingest.formats.grids.open_grid``: NetCDF, GRIB through cfgrib; CF names and units
as for station interpolation) that lies in a county (``warning.grid_counties``) is graded with the rules station
forecasts are graded with (``warning.forecast_run``):

* **window criteria** (rainstorm, flash flood, gale, sandstorm: every hazard not graded on days) per step, each
  level only within its own ``forecast_lead_h`` (``HazardRule.within_lead``; the lead of a step is its valid time
  minus the issue time). Rain over 1/3/6/12/24 h is summed over the steps whose windows end within that many hours
  of the step's end (hourly, or de-accumulated since-start precipitation); where the run has not yet lasted N h, or
  a step is longer than N h, the sum is a lower bound or missing, as for station points. Wind and gust are the
  step's (``quantities.forecast_quantities``: ``wind_max_day``, ``gust_max_day``, ``wind_now``);
* **daily criteria** (heat, cold wave, frost: ``forecast_run.daily_hazards``) on the run's forecast days by the
  day boundary (``[days] boundary_bjt_h``; a step belongs to the day of its window's middle): the day's highest
  and lowest temperature, highest wind and gust, ground minimum as ``quantities.ground_tmin`` (air minimum minus
  the frost offset on calm days), the cold-wave drops against the previous forecast days
  (``quantities.day_quantities``' definitions), consecutive-day conditions over consecutive forecast days; a day's
  lead is that of its earliest step. Observed days are not combined (a grid has no station state).

A county is at a level when its hazard's ``grid_rollup`` rule (rules.toml) holds for the cells at or above it. The
run's result per county, hazard and level it reached is one :class:`GridArea` record: the span of the steps (or
days) at which the county was at that level, the earliest lead, the deciding quantity's most extreme cell value,
the largest share of the county at the level, and the cells at or above the level at those steps merged into
polygons (``warning.grid_polygons``).

Memory: the grid is read in chunks of steps (``chunk_steps``), only the cells inside counties are kept
(``CountyCells.cells``), and what is carried from chunk to chunk is a ring of 24 h of cumulative rain and the daily
extremes per cell, so the peak is about one chunk of the file plus a few arrays per county cell.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ingest import quantities
from ingest.formats.grids import Accumulation, open_grid
from warning.forecast_run import daily_hazards
from warning.grading import ARRAY_OPS
from warning.grid_counties import CountyCells, county_cells
from warning.grid_polygons import county_polygons
from warning.rules import Condition, HazardRule, LevelRule, Rules
from warning.shared.times import iso_utc

RAIN_WINDOWS_H = quantities.RAIN_WINDOWS_H
_STEP_ELEMENTS = ("precip_mm", "wind_ms", "gust_ms", "visibility_m", "rh_pct", "air_temp_c", "tmax_c", "tmin_c")
_NOW = {"wind_ms": ("wind_max_day", "wind_now"), "gust_ms": ("gust_max_day",), "visibility_m": ("visibility",),
        "rh_pct": ("rh_now",)}
_MAX_LEVEL = 4


@dataclass
class GridStats:
    runs: int = 0
    steps: int = 0
    cells: int = 0
    areas: int = 0
    read_s: float = 0.0  # time spent reading and decoding the file's chunks


def _epoch(v: Any) -> float:
    return float(np.datetime64(v, "s").astype("int64"))


def grade_cells(rule: HazardRule, q: dict[str, np.ndarray], n: int, scale: np.ndarray | float = 1.0,
                consecutive: Callable[[Condition, np.ndarray | float], np.ndarray] | None = None) -> np.ndarray:
    """Per cell the highest level of ``rule`` that holds (int8: 0 none, else the WarningLevel value), the same
    criteria as ``grading.grade`` (all / any conditions, thresholds of >= and > scaled); a missing quantity (NaN,
    or absent) holds no condition. ``consecutive(c, threshold)`` gives, per cell, whether a ``days > 1``
    condition held on that many consecutive days ending on the graded day."""
    out = np.zeros(n, dtype=np.int8)
    with np.errstate(invalid="ignore"):
        for lr in reversed(rule.levels):  # least severe first: a more severe level that holds overwrites it
            holds = _level_holds(lr, q, n, scale, consecutive)
            out[holds] = int(lr.level)
    return out


def _level_holds(lr: LevelRule, q: dict[str, np.ndarray], n: int, scale: np.ndarray | float,
                 consecutive: Callable[[Condition, np.ndarray | float], np.ndarray] | None) -> np.ndarray:
    def cond(c: Condition) -> np.ndarray:
        x = q.get(c.quantity)
        if x is None:
            return np.zeros(n, dtype=bool)
        thr = c.value * scale if c.op in (">=", ">") else c.value
        res = ARRAY_OPS[c.op](x, thr)
        if c.days > 1:
            res = res & consecutive(c, thr) if consecutive is not None else np.zeros(n, dtype=bool)
        return np.asarray(res, dtype=bool)
    holds = np.ones(n, dtype=bool)
    for c in lr.all:
        holds &= cond(c)
    if lr.any:
        some = np.zeros(n, dtype=bool)
        for c in lr.any:
            some |= cond(c)
        holds &= some
    return holds


def _deciding(lr: LevelRule) -> Condition:
    return lr.all[0] if lr.all else lr.any[0]


@dataclass
class _LevelAcc:
    """What a run has shown of one hazard at one level, per county (and per cell-county pair)."""

    n_counties: int
    n_pairs: int
    lower_is_worse: bool
    quantity: str
    onset: np.ndarray = field(init=False)
    until: np.ndarray = field(init=False)
    lead: np.ndarray = field(init=False)
    share: np.ndarray = field(init=False)
    km2: np.ndarray = field(init=False)
    hit: np.ndarray = field(init=False)
    value: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.onset = np.full(self.n_counties, np.inf)
        self.until = np.full(self.n_counties, -np.inf)
        self.lead = np.full(self.n_counties, np.inf)
        self.share = np.zeros(self.n_counties)
        self.km2 = np.zeros(self.n_counties)
        self.hit = np.zeros(self.n_pairs, dtype=bool)
        self.value = np.full(self.n_pairs, np.nan, dtype=np.float32)


class RunGrader:
    """One run (one reference time) of a grid, fed step chunk by step chunk."""

    def __init__(self, rules: Rules, index: CountyCells, issued_s: float, analysis: bool) -> None:
        self.rules, self.index = rules, index
        self.issued_s, self.analysis = issued_s, analysis
        self.n = index.cells.size
        self.daily = daily_hazards(rules)
        self.window_hazards = [h for h in rules if h not in self.daily]
        self.acc: dict[tuple[str, int], _LevelAcc] = {}
        self._rain: list[tuple[float, np.ndarray]] = []  # (boundary time, rain since the first window start)
        self._days: dict[str, dict[str, Any]] = {}
        ff = rules.flash_flood
        county_scale = np.array([ff.counties.get(code, 1.0) for code in index.codes], dtype=np.float32)
        self._ff_scale = county_scale[index.cell_county] if index.cell_county.size else np.ones(0, np.float32)

    # ---- steps ---------------------------------------------------------------------------------------------
    def step(self, values: dict[str, np.ndarray], vfrom_s: float, vto_s: float, lead_h: float) -> None:
        """One step's element values (per county cell, NaN missing) over the window [vfrom, vto)."""
        q: dict[str, np.ndarray] = {}
        for el, names in _NOW.items():
            if el in values:
                for name in names:
                    q[name] = values[el]
        if "precip_mm" in values and vto_s > vfrom_s:
            q.update(self._rain_windows(values["precip_mm"], vfrom_s, vto_s))
        if q:
            for hazard in self.window_hazards:
                rule = self.rules[hazard]
                if lead_h > rule.forecast_lead_h + 1e-9 or not rule.quantities & set(q):
                    continue
                scale = self._ff_scale if hazard == "flash_flood" else 1.0
                self._grade(hazard, rule.within_lead(lead_h), q, scale, vfrom_s, vto_s, lead_h)
        self._fold_day(values, vfrom_s, vto_s, lead_h)

    def _rain_windows(self, rain: np.ndarray, vfrom_s: float, vto_s: float) -> dict[str, np.ndarray]:
        ring = self._rain
        if not ring or ring[-1][0] != vfrom_s:  # the first window, or a gap: sums start again here
            ring[:] = [(vfrom_s, np.zeros(self.n, dtype=np.float32))]
        cum = ring[-1][1] + rain.astype(np.float32)
        ring.append((vto_s, cum))
        while len(ring) > 2 and ring[1][0] <= vto_s - 24 * 3600:
            ring.pop(0)
        out: dict[str, np.ndarray] = {}
        for hours in RAIN_WINDOWS_H:
            start = vto_s - hours * 3600
            base = next(((t, c) for t, c in ring if t >= start - 1e-6), None)
            if base is None or base[0] >= vto_s:
                continue  # a step longer than the window: nothing known of the shorter window
            out[f"rain_{hours}h"] = cum - base[1]
        return out

    def _fold_day(self, values: dict[str, np.ndarray], vfrom_s: float, vto_s: float, lead_h: float) -> None:
        if not any(el in values for el in ("air_temp_c", "tmax_c", "tmin_c", "wind_ms", "gust_ms")):
            return
        mid = vfrom_s + max(vto_s - vfrom_s, 0.0) / 2
        day = quantities.day_of(datetime.fromtimestamp(mid, UTC))
        d = self._days.get(day)
        if d is None:
            d = self._days[day] = {"lead": lead_h, "from": vfrom_s, "to": vto_s}
        d["lead"], d["from"], d["to"] = min(d["lead"], lead_h), min(d["from"], vfrom_s), max(d["to"], vto_s)
        for el, name, combine in (("tmax_c", "tmax", np.fmax), ("air_temp_c", "tmax", np.fmax),
                                  ("tmin_c", "tmin", np.fmin), ("air_temp_c", "tmin", np.fmin),
                                  ("wind_ms", "wmax", np.fmax), ("gust_ms", "gmax", np.fmax)):
            v = values.get(el)
            if v is not None:
                d[name] = combine(d[name], v) if name in d else v.astype(np.float32, copy=True)

    # ---- days ----------------------------------------------------------------------------------------------
    def finish_days(self) -> None:
        """Grade the daily hazards on the run's forecast days (call after the last step)."""
        days = sorted(self._days)
        fr = self.rules.frost
        history: dict[str, dict[str, np.ndarray]] = {}
        for i, day in enumerate(days):
            d = self._days[day]
            q: dict[str, np.ndarray] = {}
            for name, field_ in (("tmax_day", "tmax"), ("tmin_day", "tmin"), ("wind_max_day", "wmax"),
                                 ("gust_max_day", "gmax")):
                if field_ in d:
                    q[name] = d[field_]
            if "tmin" in d:  # quantities.ground_tmin: the air minimum less the offset on calm days
                calm = ~(d["wmax"] > fr.calm_wind_ms) if "wmax" in d else np.ones(self.n, dtype=bool)
                q["ground_tmin_day"] = np.where(calm, d["tmin"] - fr.air_to_ground_offset_c, np.nan)
                prev = [self._days[days[i - k]].get("tmin") for k in (1, 2)
                        if i - k >= 0 and _day_before(day, k) == days[i - k]]
                if prev and prev[0] is not None and _day_before(day, 1) == days[i - 1]:
                    q["tmin_drop_24h"] = prev[0] - d["tmin"]
                have = [p for p in prev if p is not None]
                if have:
                    q["tmin_drop_48h"] = (np.fmax(*have) if len(have) == 2 else have[0]) - d["tmin"]
            history[day] = q

            def consecutive(c: Condition, thr: np.ndarray | float, upto: int = i) -> np.ndarray:
                run = np.zeros(self.n, dtype=np.int16)
                for j in range(upto + 1):
                    if j and _day_before(days[j], 1) != days[j - 1]:
                        run[:] = 0
                    x = history[days[j]].get(c.quantity)
                    with np.errstate(invalid="ignore"):
                        ok = ARRAY_OPS[c.op](x, thr) if x is not None else np.zeros(self.n, dtype=bool)
                    run = np.where(ok, run + 1, 0).astype(np.int16)
                return run >= c.days
            for hazard in sorted(self.daily):
                rule = self.rules[hazard]
                if hazard == "frost" and int(day[5:7]) not in fr.season_months:
                    continue
                lead_rule = rule.within_lead(d["lead"])
                if not lead_rule.levels or not rule.quantities & set(q):
                    continue
                self._grade(hazard, lead_rule, q, 1.0, d["from"], d["to"], d["lead"], consecutive)

    # ---- roll-up ---------------------------------------------------------------------------------------------
    def _grade(self, hazard: str, rule: HazardRule, q: dict[str, np.ndarray], scale: np.ndarray | float,
               vfrom_s: float, vto_s: float, lead_h: float,
               consecutive: Callable[[Condition, np.ndarray | float], np.ndarray] | None = None) -> None:
        levels = grade_cells(rule, q, self.n, scale, consecutive)
        top = int(levels.max()) if levels.size else 0
        if top == 0:
            return
        index = self.index
        pair_levels = levels[index.pair_cell]
        roll = self.rules[hazard].grid_rollup
        with np.errstate(invalid="ignore", divide="ignore"):
            for level in range(1, top + 1):
                at = pair_levels >= level
                km2 = index.county_sum(np.where(at, index.pair_km2, 0.0))
                share = np.where(index.county_km2 > 0, km2 / index.county_km2, 0.0)
                county_ok = share >= roll.min - 1e-12 if roll.method == "area_share" else km2 >= roll.min
                if not county_ok.any():
                    break  # fewer cells hold a higher level: no county reaches it either
                lr = next((r for r in rule.levels if int(r.level) == level), None)
                if lr is None:  # (a level between two others that this rule lacks)
                    continue
                c = _deciding(lr)
                acc = self.acc.get((hazard, level))
                if acc is None:
                    acc = self.acc[(hazard, level)] = _LevelAcc(index.n_counties, index.pair_cell.size,
                                                                c.op in ("<=", "<"), c.quantity)
                acc.onset = np.where(county_ok, np.minimum(acc.onset, vfrom_s), acc.onset)
                acc.until = np.where(county_ok, np.maximum(acc.until, vto_s), acc.until)
                acc.lead = np.where(county_ok, np.minimum(acc.lead, lead_h), acc.lead)
                acc.share = np.where(county_ok, np.maximum(acc.share, share), acc.share)
                acc.km2 = np.where(county_ok, np.maximum(acc.km2, km2), acc.km2)
                hit_now = at & county_ok[index.pair_county]
                acc.hit |= hit_now
                x = q.get(c.quantity)
                if x is not None:
                    v = np.where(hit_now, x[index.pair_cell], np.nan).astype(np.float32)
                    acc.value = np.fmin(acc.value, v) if acc.lower_is_worse else np.fmax(acc.value, v)

    def areas(self, lat: np.ndarray, lon: np.ndarray, issued: str, source: str) -> list[dict[str, Any]]:
        """The run's GridArea records (most severe level first per county and hazard)."""
        index = self.index
        out: list[dict[str, Any]] = []
        order = np.argsort(index.pair_county, kind="stable")
        bounds = np.searchsorted(index.pair_county[order], np.arange(index.n_counties + 1))
        for (hazard, level), acc in sorted(self.acc.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
            for k in np.flatnonzero(np.isfinite(acc.onset)).tolist():
                pairs = order[bounds[k]:bounds[k + 1]]
                pairs = pairs[acc.hit[pairs]]
                vals = acc.value[pairs]
                value = None
                if np.isfinite(vals).any():
                    value = float(np.nanmin(vals) if acc.lower_is_worse else np.nanmax(vals))
                flat = index.cells[index.pair_cell[pairs]]
                out.append({
                    "county_code": index.codes[k], "hazard": hazard, "level": _COLOUR[level],
                    "issued_at": issued, "valid_from": iso_utc(acc.onset[k]), "valid_to": iso_utc(acc.until[k]),
                    "lead_h": round(float(acc.lead[k]), 3), "quantity": acc.quantity,
                    "value": None if value is None else round(value, 2),
                    "share": round(float(acc.share[k]), 4), "area_km2": round(float(acc.km2[k]), 1),
                    "cells": int(flat.size), "source": source,
                    "polygons": county_polygons(index.codes[k], flat, index.shape, lat, lon),
                })
        return out


_COLOUR = {1: "blue", 2: "yellow", 3: "orange", 4: "red"}


def _day_before(day: str, k: int) -> str:
    return (datetime.fromisoformat(day) - timedelta(days=k)).date().isoformat()


def _window(period: float, valid_s: float, start_label: bool) -> tuple[float, float]:
    """[valid_from, valid_to) of a step as ``ingest.formats.grids`` reads it (an instant: one hour from it)."""
    if period <= 0:
        return valid_s, valid_s + 3600.0
    if start_label:
        return valid_s, valid_s + period
    return valid_s - period, valid_s


def grade_grid(path: str | os.PathLike[str], rules: Rules, *, cache_dir: Path | None = None,
               engine: str | None = None, issued_at: datetime | None = None, accumulation: Accumulation = "auto",
               chunk_steps: int = 6, source: str | None = None, stats: GridStats | None = None
               ) -> Iterator[dict[str, Any]]:
    """The GridArea records of every run in the file (see the module doc), run by run."""
    import time

    quantities.set_day_boundary(rules.days.boundary_bjt_h)
    stats = stats if stats is not None else GridStats()
    src = source or f"grid:{os.path.basename(os.fspath(path))}"
    ds = open_grid(path, engine=engine, accumulation=accumulation, issued_at=issued_at)
    try:
        if "latitude" not in ds.dims or "longitude" not in ds.dims:
            raise ValueError(f"{path}: cell grading needs a latitude x longitude grid")
        ds = ds.transpose("reftime", "step", "latitude", "longitude")
        lat = np.asarray(ds["latitude"].values, dtype="float64")
        lon = np.asarray(ds["longitude"].values, dtype="float64")
        index = county_cells(lat, lon, cache_dir)
        stats.cells = int(index.cells.size)
        elements = [e for e in _STEP_ELEMENTS if e in ds.data_vars]
        period = np.asarray(ds["period_s"].values, dtype="float64")
        start_label = bool(ds.attrs.get("ews_daily_start_label"))
        analysis = ds.attrs.get("ews_kind") == "analysis"
        steps_s = np.asarray(ds["step"].values).astype("timedelta64[s]").astype("int64")
        for r, ref in enumerate(np.asarray(ds["reftime"].values)):
            ref_s = _epoch(ref)
            grader = RunGrader(rules, index, ref_s, analysis)
            for k0 in range(0, steps_s.size, max(1, chunk_steps)):
                t0 = time.perf_counter()
                chunk = _read_chunk(ds, elements, r, k0, chunk_steps, index)
                stats.read_s += time.perf_counter() - t0
                for i in range(next(iter(chunk.values())).shape[0] if chunk else 0):
                    si = k0 + i
                    vfrom, vto = _window(float(period[r, si]), ref_s + float(steps_s[si]), start_label)
                    lead_h = 0.0 if analysis else (vto - ref_s) / 3600.0
                    grader.step({e: a[i] for e, a in chunk.items()}, vfrom, vto, lead_h)
                    stats.steps += 1
            grader.finish_days()
            stats.runs += 1
            areas = grader.areas(lat, lon, iso_utc(ref_s), src)
            stats.areas += len(areas)
            yield from areas
    finally:
        ds.close()


def _read_chunk(ds: xr.Dataset, elements: list[str], r: int, k0: int, n: int, index: CountyCells
                ) -> dict[str, np.ndarray]:
    """Steps [k0, k0 + n) of run ``r``: per element a (steps, county cells) float32 array, read and decoded."""
    part = ds[elements].isel(reftime=r, step=slice(k0, k0 + n)).compute()
    out = {}
    for e in elements:
        a = np.asarray(part[e].values)
        out[e] = a.reshape(a.shape[0], -1)[:, index.cells].astype(np.float32)
    return out


def area_grader(rules: Rules, cache_dir: Path | None, chunk_steps: int = 6
                ) -> Callable[[str, dict[str, Any]], Iterator[dict[str, Any]]]:
    """The cell grading ``ews ingest --format grid`` runs (``ingest.forecasts.AreaGrader``): GridArea records of a
    file, its counters added to the ingest summary."""
    def grade(path: str, summary: dict[str, Any]) -> Iterator[dict[str, Any]]:
        stats = GridStats()
        try:
            yield from grade_grid(path, rules, cache_dir=cache_dir, chunk_steps=chunk_steps, stats=stats)
        finally:
            summary["grid_cells"] = summary.get("grid_cells", 0) + stats.cells
            summary["grid_steps"] = summary.get("grid_steps", 0) + stats.steps
    return grade
