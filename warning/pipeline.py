"""Observation / forecast -> station state -> graded station signals: the pure core of the ``observations`` and
``forecasts`` agents, shared with ``ews replay`` (what-if runs) and the benchmarks. No Kafka, no I/O."""

from __future__ import annotations

import math
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np

from ingest import quantities
from warning import forecast_run, grading, grid_signals
from warning.rules import LevelRule, Rules
from warning.shared.records import OBSERVATION_ELEMENTS as OBS_ELEMENTS
from warning.shared.records import WarningLevel
from warning.shared.regions import RegionTree, Station, StationRegistry

SCALAR_GRADING_MAX = 2  # batches up to this many reports are graded per report (identical results)


@lru_cache(maxsize=4096)
def _month(ordinal: int) -> int:
    return date.fromordinal(ordinal).month


def _necessary(rule: Any) -> tuple[tuple[str, str, float, bool], ...]:
    """Comparisons (quantity, op, value, threshold scaled) of which one holds wherever a level of ``rule``
    holds: per level its first 'all' condition, else its 'any' conditions; per quantity and direction the
    loosest value (>= the smallest of > / >=, whose thresholds grading scales; <= the largest of < / <=)."""
    loosest: dict[tuple[str, bool], float] = {}
    for lr in rule.levels:
        for c in lr.all[:1] if lr.all else lr.any:
            up = c.op in (">=", ">")
            old = loosest.get((c.quantity, up))
            loosest[(c.quantity, up)] = c.value if old is None else (min(old, c.value) if up else max(old, c.value))
    return tuple((quantity, ">=" if up else "<=", value, up) for (quantity, up), value in loosest.items())


def fold_params(rules: Rules) -> dict[str, Any]:
    """The rules' settings the station state and its quantities are computed with (``quantities.station_quantities``
    and ``StationColumns.apply`` keywords): one place, the rules table."""
    return {"api_decay": rules.flash_flood.api_decay, "ground_offset_c": rules.frost.air_to_ground_offset_c,
            "calm_wind_ms": rules.frost.calm_wind_ms,
            "drought_process": (rules.drought.process_min_days, rules.drought.process_end_days)}


class StationGrader:
    def __init__(self, rules: Rules, registry: StationRegistry, regions: RegionTree,
                 climatology: Any = None) -> None:
        """``climatology``: station thresholds (``t95(sid)``, ``ehf85(sid)``, e.g. warning.climatology.Climatology);
        without it the heat-health (EHF) product is not judged."""
        self.rules = rules
        quantities.set_day_boundary(rules.days.boundary_bjt_h)  # the live path's and replay's days
        self.fold = fold_params(rules)
        self.climatology = climatology
        self.registry = registry
        self.regions = regions
        self.hazard_quantities = {h: r.quantities for h, r in rules.items()}
        self._county_of = {s.station_id: s.county_code for s in registry}
        # per-batch grading constants: the elements that inform each hazard, the frost months by month number,
        # (level, level rule) by (hazard, code), the region part of a station's signals
        self._hazard_elements = {h: frozenset(el for name in qs for el in quantities.QUANTITY_ELEMENTS[name])
                                 for h, qs in self.hazard_quantities.items()}
        self._graded_elements = frozenset(el for els in self._hazard_elements.values() for el in els)
        self._frost_months = np.isin(np.arange(13), rules.frost.season_months)
        self._necessary = {h: _necessary(r) for h, r in rules.items()}
        self._level_rules: dict[tuple[str, int], tuple[WarningLevel, LevelRule]] = {}
        self._signal_bases: dict[str, tuple[Station, dict[str, Any]]] = {}
        self._prefecture_fields: dict[str, dict[str, Any]] = {}

    def hazard_scale(self, hazard: str, county_code: str, q: dict[str, float]) -> float:
        """Threshold scale: flash-flood county critical-rainfall factor, lowered on wet ground (API)."""
        if hazard != "flash_flood":
            return 1.0
        ff = self.rules.flash_flood
        scale = ff.counties.get(county_code, 1.0)
        if q.get("api_mm", 0.0) >= ff.wet_api_mm:
            scale *= ff.wet_factor
        return scale

    def grade_station(self, state: dict[str, Any], obs: dict[str, Any]) -> list[tuple[str, Any]]:
        """(hazard, grade) for every hazard this report informs; grade = (level, quantity, value)."""
        rules = self.rules
        q = quantities.station_quantities(state, **self.fold,
                                          **self._thresholds(obs["station_id"]))
        present = {el for el, v in obs.items() if v is not None}
        month = int(quantities.station_day(obs["time"])[5:7])

        def series(name: str) -> dict[str, float]:
            return quantities.daily_series(state, name, ground_offset_c=rules.frost.air_to_ground_offset_c,
                                           calm_wind_ms=rules.frost.calm_wind_ms)

        out = []
        for hazard, rule in rules.items():
            if not any(quantities.QUANTITY_ELEMENTS[n] & present for n in self.hazard_quantities[hazard]):
                continue
            if hazard == "frost" and month not in rules.frost.season_months:
                continue
            scale = self.hazard_scale(hazard, self._county_of.get(obs["station_id"], ""), q)
            g = grading.grade(rule, q, series, scale)
            if g is not None:
                out.append((hazard, g))
        return out

    def station_signals(self, station: Station, hazard: str, level: Any, quantity: str | None, value: float | None,
                        time_: str, basis: str = "observed", **extra: Any) -> list[dict[str, Any]]:
        """The signal for the station's county (the unit that issues warnings). The prefecture's roll-up is made
        from the county's warning events (``rollup``), not from a second signal per station."""
        fields = {"hazard": hazard, "level": level.colour, "quantity": quantity, "value": value, "time": time_,
                  "basis": basis, **extra}
        return [{**self._signal_base(station), **fields}]

    def _signal_base(self, station: Station) -> dict[str, Any]:
        """The station and region fields of a station's county signals (once per station)."""
        have = self._signal_bases.get(station.station_id)
        if have is not None and (have[0] is station or have[0] == station):
            return have[1]
        base = {"kind": "station", **self._region_fields(station.county_code, "county"),
                "prefecture_code": station.prefecture_code, "station_id": station.station_id,
                "station_name": station.name_zh or station.name}
        self._signal_bases[station.station_id] = (station, base)
        return base

    def _region_fields(self, code: str, level: str) -> dict[str, Any]:
        region = self.regions.region(code)
        return {"region_code": code, "region_level": level, "region_name": region.name if region else code,
                "region_name_zh": region.name_zh if region else code}

    def rollup(self, event: dict[str, Any], at: str, accepted_at: float | None = None) -> dict[str, Any] | None:
        """The prefecture roll-up signal of a county warning event made at data time ``at`` (grading.county_rollup),
        None for a prefecture's own events. ``accepted_at``: when the report behind the event was accepted."""
        code = str(event.get("prefecture_code") or "")
        fields = self._prefecture_fields.get(code)
        if fields is None:
            fields = self._prefecture_fields[code] = self._region_fields(code, "prefecture")
        sig = grading.county_rollup(event, at, fields)
        if sig is not None and accepted_at is not None:
            sig["accepted_at"] = accepted_at
        return sig

    def observe_batch(self, states: dict[str, Any], batch: list[dict[str, Any]], **extra: Any
                      ) -> tuple[int, int, list[dict[str, Any]]]:
        """Fold a batch into ``states`` (station id -> state, updated in place) and grade it vectorised.

        Per report, Python only updates the station's state and derives its quantities; the level criteria
        of every hazard are then numpy comparisons over the whole batch (BROKER.md: batches make a worker
        fast). Returns (applied, stale, signals). Unknown stations raise KeyError before anything changes.
        """
        rules = self.rules
        offset = rules.frost.air_to_ground_offset_c
        kept: list[tuple[dict[str, Any], dict[str, Any]]] = []
        qs: list[dict[str, float]] = []
        stale = 0
        for obs in batch:
            sid = obs["station_id"]
            prev = states.get(sid)
            new = quantities.update_station(prev, obs)
            if new is None:
                stale += 1
                continue
            new = self._complete_day(sid, prev, new)
            states[sid] = new
            kept.append((obs, new))
            qs.append(quantities.station_quantities(new, **self.fold, **self._thresholds(sid)))
        n = len(kept)
        if n == 0:
            return 0, stale, []
        names = {name for hq in self.hazard_quantities.values() for name in hq} | {"api_mm"}
        arrays = {name: np.array([q.get(name, np.nan) for q in qs], dtype=float) for name in names}
        present = {el: np.array([obs.get(el) is not None for obs, _ in kept]) for el in OBS_ELEMENTS}
        months = np.array([int((new["d"] and max(new["d"])[5:7]) or 0) for _, new in kept])

        def series_at(i: int, name: str) -> dict[str, float]:
            return quantities.daily_series(kept[i][1], name, ground_offset_c=offset,
                                           calm_wind_ms=rules.frost.calm_wind_ms)

        signals = self.grade_reports(arrays, present, months, [obs["station_id"] for obs, _ in kept],
                                     [obs["time"] for obs, _ in kept], series_at, **extra)
        return n, stale, signals

    def observe_columns(self, state: Any, cols: Any, **extra: Any) -> tuple[int, int, list[dict[str, Any]]]:
        """``observe_batch`` on columns (ingest.columns.ObservationColumns) with the columnar state
        (ingest.station_columns.StationColumns): the worker's hot path. Returns (applied, stale, signals), the
        same as ``observe_batch`` (property-tested)."""
        done = state.apply(cols.station_ids, cols.t, cols.values, **self.fold)
        elements = self._graded_elements
        if done.applied.all():  # the usual batch, nothing stale: the columns as they are
            n = len(cols)
            if n == 0:
                return 0, 0, []
            arrays = done.quantities
            present = {el: ~np.isnan(cols.values[el]) for el in elements}
            days, slots = done.day, done.slots
            station_ids, times, series_at = cols.station_ids, cols.times, done.series
        else:
            kept = np.flatnonzero(done.applied)
            n = int(kept.size)
            if n == 0:
                return 0, len(cols), []
            arrays = {name: v[kept] for name, v in done.quantities.items()}
            present = {el: ~np.isnan(cols.values[el][kept]) for el in elements}
            days, slots = done.day[kept], done.slots[kept]
            pick = kept.tolist()
            station_ids, times = [cols.station_ids[i] for i in pick], [cols.times[i] for i in pick]

            def series_at(i: int, name: str) -> dict[str, float]:
                return done.series(pick[i], name)
        first, last = int(days.min()), int(days.max())
        if first == last:  # a batch is mostly within one Beijing day
            months = np.full(n, _month(first))
        else:
            distinct, which = np.unique(days, return_inverse=True)
            months = np.array([_month(d) for d in distinct.tolist()])[which]
        # the stations' county threshold scales, kept by the state per slot
        county_scale = state.per_slot((self, "flash_flood_county_scale"), self._county_scale)[slots]
        signals = self._grade(arrays, present, months, station_ids, times, series_at, county_scale, extra)
        return n, len(cols) - n, signals

    def _county_scale(self, station_id: str) -> float:
        return float(self.rules.flash_flood.counties.get(self._county_of.get(station_id, ""), 1.0))

    def grade_reports(self, arrays: dict[str, np.ndarray], present: dict[str, np.ndarray], months: np.ndarray,
                      station_ids: list[str], times: list[str], series_at: Any, **extra: Any) -> list[dict[str, Any]]:
        """Every hazard's level criteria as numpy comparisons over a batch of reports (quantities as of each
        report, NaN = missing) -> station signals, per hazard in report order."""
        return self._grade(arrays, present, months, station_ids, times, series_at, None, extra)

    def _grade(self, arrays: dict[str, np.ndarray], present: dict[str, np.ndarray], months: np.ndarray,
               station_ids: list[str], times: list[str], series_at: Any, county_scale: np.ndarray | None,
               extra: dict[str, Any]) -> list[dict[str, Any]]:
        """``grade_reports``; ``county_scale``: the flash-flood county scale per report, if known."""
        rules = self.rules
        n = len(station_ids)
        informed_by = self._informed_by(present, n)
        graded: list[tuple[str, list[int], list[int], np.ndarray | float]] = []  # hazard, reports, codes, scale
        for hazard, rule in rules.items():
            informed = informed_by(hazard)
            if hazard == "frost":
                informed = informed & self._frost_months[months]
            if informed is False or (isinstance(informed, np.ndarray) and not informed.any()):
                continue  # a hazard no report informs gives no signal
            scale: np.ndarray | float = 1.0
            if hazard == "flash_flood":
                if county_scale is None:
                    county_scale = np.array([rules.flash_flood.counties.get(self._county_of.get(sid, ""), 1.0)
                                             for sid in station_ids])
                scale = self._flash_flood_scale(arrays, n, county_scale)
            hits = self._levels(hazard, rule, arrays, n, scale, informed, series_at)
            if hits is not None:
                graded.append((hazard, *hits, scale))
        signals: list[dict[str, Any]] = []
        for hazard, rows_, codes_, sc in graded:
            for i, code in zip(rows_, codes_, strict=True):
                level, lr = self._level_rule(hazard, code)
                c, value = self._decide(lr, arrays, i, float(sc[i]) if isinstance(sc, np.ndarray) else sc)
                station = self.registry.get(station_ids[i])
                assert station is not None
                signals.extend(self.station_signals(station, hazard, level, c, value, times[i], **extra))
        return signals

    def _informed_by(self, present: dict[str, np.ndarray], n: int) -> Any:
        """hazard -> the reports that carry an element of the hazard (True: all of them, False: none)."""
        seen: dict[str, tuple[bool, bool]] = {}  # element -> (in every report, in some report)

        def informed_by(hazard: str) -> np.ndarray | bool:
            some: list[np.ndarray] = []
            for el in self._hazard_elements[hazard]:
                if el not in seen:
                    k = int(np.count_nonzero(present[el]))
                    seen[el] = (k == n, k > 0)
                every, any_ = seen[el]
                if every:
                    return True
                if any_:
                    some.append(present[el])
            if not some:
                return False
            out = some[0]
            for p in some[1:]:
                out = out | p
            return out
        return informed_by

    def _flash_flood_scale(self, arrays: dict[str, np.ndarray], n: int, county_scale: np.ndarray) -> np.ndarray:
        """Per report: the county's critical-rainfall scale, times the wet-ground factor where API is high."""
        ff = self.rules.flash_flood
        api = arrays.get("api_mm")
        wet = (np.where(np.isnan(api), 0.0, api) if api is not None else np.zeros(n)) >= ff.wet_api_mm
        return np.asarray(np.where(wet, county_scale * ff.wet_factor, county_scale))

    def _levels(self, hazard: str, rule: Any, arrays: dict[str, np.ndarray], n: int, scale: np.ndarray | float,
                informed: np.ndarray | bool, series_at: Any) -> tuple[list[int], list[int]] | None:
        """The informed reports that meet a level of ``rule``, and their level codes (None: no report does)."""
        if n <= SCALAR_GRADING_MAX:  # a report or two: numpy's per-call overhead would dominate
            codes = self._grade_scalar(rule, arrays, n, scale, series_at)
        else:
            # most reports meet no level: grade only the candidates, those that meet a condition necessary
            # for some level (the codes of the others are not signals)
            cand = self._candidates(hazard, arrays, n, scale)
            if cand is not None:
                if informed is not True:
                    cand &= informed
                idx = np.flatnonzero(cand)
                if idx.size == 0:
                    return None
                if idx.size < n:
                    pick = idx.tolist()

                    def sub_series(i: int, name: str, pick: list[int] = pick) -> dict[str, float]:
                        return series_at(pick[i], name)
                    sub = {name: arrays[name][idx] for name in self.hazard_quantities[hazard] if name in arrays}
                    sub_codes = grading.grade_arrays(rule, sub, idx.size, scale[idx] if isinstance(
                        scale, np.ndarray) else scale, sub_series)
                    hit = np.flatnonzero(sub_codes > 0)
                    return (idx[hit].tolist(), sub_codes[hit].tolist()) if hit.size else None
            codes = grading.grade_arrays(rule, arrays, n, scale, series_at)
        hits = codes > 0
        if informed is not True:
            hits &= informed
        rows = np.flatnonzero(hits)
        return (rows.tolist(), codes[rows].tolist()) if rows.size else None

    def _candidates(self, hazard: str, arrays: dict[str, np.ndarray], n: int, scale: np.ndarray | float
                    ) -> np.ndarray | None:
        """Reports that meet one of the hazard's necessary comparisons (``_necessary``), or None when the
        threshold scale is not >= 0 everywhere (then the loosest scaled threshold is not the smallest)."""
        if not (bool((scale >= 0).all()) if isinstance(scale, np.ndarray) else scale >= 0):
            return None
        cand: np.ndarray | None = None
        for quantity, op, value, scaled in self._necessary[hazard]:
            x = arrays.get(quantity)
            if x is None:
                continue
            with np.errstate(invalid="ignore"):
                hit = grading.ARRAY_OPS[op](x, value * scale if scaled else value)  # False where x is NaN
            cand = hit if cand is None else cand | hit
        return cand if cand is not None else np.zeros(n, dtype=bool)

    def _level_rule(self, hazard: str, code: int) -> tuple[WarningLevel, LevelRule]:
        key = (hazard, code)
        got = self._level_rules.get(key)
        if got is None:
            level = WarningLevel(code)
            got = self._level_rules[key] = (level, self.rules[hazard].level_rule(level))
        return got

    @staticmethod
    def _decide(lr: LevelRule, arrays: dict[str, np.ndarray], i: int, scale: float) -> tuple[str | None, float | None]:
        """The quantity reported with a level (the first of its conditions that holds for report i, else the first
        condition's) and its value, reading only the level's quantities."""
        for c in lr.conditions:
            v = arrays.get(c.quantity)
            if v is not None:
                x = float(v[i])
                if x == x and grading.condition_holds(c, x, scale):
                    return str(c.quantity), x
        if not lr.conditions:
            return None, None
        first = str(lr.conditions[0].quantity)
        v = arrays.get(first)
        x = float(v[i]) if v is not None else math.nan
        return first, (x if x == x else None)

    @staticmethod
    def _grade_scalar(rule: Any, arrays: dict[str, np.ndarray], n: int, scale: np.ndarray | float,
                      series_at: Any) -> np.ndarray:
        """``grading.grade_arrays`` codes from the per-report ``grading.grade`` (the same criteria, tested equal)."""
        codes = np.zeros(n, dtype=np.int8)
        for i in range(n):
            q = {name: float(v[i]) for name, v in arrays.items() if v[i] == v[i]}
            sc = float(scale[i]) if isinstance(scale, np.ndarray) else scale
            def series(name: str, i: int = i) -> dict[str, float]:
                return dict(series_at(i, name))

            g = grading.grade(rule, q, series, sc)
            codes[i] = -1 if g is None else (int(g[0]) if g[0] is not None else 0)
        return codes

    def _complete_day(self, sid: str, prev: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
        if prev is None or not prev["d"] or not new["d"] or max(new["d"]) <= max(prev["d"]):
            return new  # the common case: same day, nothing to complete
        station = self.registry.get(sid)
        lookup = getattr(self.climatology, "mci_params", None) if self.climatology is not None else None
        params = lookup(sid) if lookup is not None else None
        return quantities.complete_day(prev, new, station.latitude if station else 36.0, params)

    def _thresholds(self, station_id: str) -> dict[str, Any]:
        c = self.climatology
        if c is None:
            return {}
        return {"t95": c.t95(station_id), "ehf85": c.ehf85(station_id)}

    def observe(self, state: dict[str, Any] | None, obs: dict[str, Any], **extra: Any
                ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """(new station state, signals); the state is None when ``obs`` is not newer than the station's last."""
        station = self.registry.get(obs["station_id"])
        if station is None:
            raise KeyError(f"station_id: unknown station {obs['station_id']!r}")
        new = quantities.update_station(state, obs)
        if new is None:
            return None, []
        new = self._complete_day(obs["station_id"], state, new)
        signals: list[dict[str, Any]] = []
        for hazard, (level, quantity, val) in self.grade_station(new, obs):
            if level is not None:
                signals.extend(self.station_signals(station, hazard, level, quantity, val, obs["time"], **extra))
        return new, signals

    def forecast(self, p: dict[str, Any], **extra: Any) -> list[dict[str, Any]]:
        """Signals from one ForecastPoint (a run of one point: ``forecast_run``)."""
        return self.forecast_run([p], None, **extra)

    def forecast_run(self, points: list[dict[str, Any]], observed: dict[str, dict[str, float]] | None = None,
                     drought_inputs: dict[str, dict[str, float]] | None = None, **extra: Any) -> list[dict[str, Any]]:
        """Signals from the points of one station's forecast run (one issue time): window criteria per point,
        daily criteria (heat, cold wave, frost) on the run's forecast days combined with ``observed`` days
        (``StationColumns.observed_days``); each level only within its own forecast_lead_h
        (``warning.forecast_run``). ``extra``: fields every signal carries (accepted_at, status)."""
        if not points:
            return []
        station = self.registry.get(points[0]["station_id"])
        if station is None:
            return []
        return forecast_run.run_signals(self, station, points, observed or {}, drought_inputs, extra)

    def grid_signals(self, areas: list[Any], **extra: Any) -> tuple[list[dict[str, Any]], list[tuple[Any, str]]]:
        """``grid`` signals of GridArea records (cell grading of a forecast grid) and the rejected records."""
        return grid_signals.grid_signals(self.rules, self.regions, areas, extra)
