"""Observation / forecast -> station state -> graded station signals: the pure core of the ``observations`` and
``forecasts`` agents, shared with ``ews replay`` (what-if runs) and the benchmarks. No Kafka, no I/O."""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np

from warning import grading, quantities
from warning.records import OBSERVATION_ELEMENTS as OBS_ELEMENTS
from warning.records import WarningLevel
from warning.regions import RegionTree, Station, StationRegistry
from warning.rules import Rules

SCALAR_GRADING_MAX = 2  # batches up to this many reports are graded per report (identical results)


@lru_cache(maxsize=4096)
def _month(ordinal: int) -> int:
    return date.fromordinal(ordinal).month


class StationGrader:
    def __init__(self, rules: Rules, registry: StationRegistry, regions: RegionTree,
                 climatology: Any = None) -> None:
        """``climatology``: station thresholds (``t95(sid)``, ``ehf85(sid)``, e.g. warning.climatology.Climatology);
        without it the heat-health (EHF) product is not judged."""
        self.rules = rules
        self.climatology = climatology
        self.registry = registry
        self.regions = regions
        self.hazard_quantities = {h: r.quantities for h, r in rules.items()}
        self._county_of = {s.station_id: s.county_code for s in registry}

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
        q = quantities.station_quantities(state, api_decay=rules.flash_flood.api_decay,
                                          ground_offset_c=rules.frost.air_to_ground_offset_c,
                                          **self._thresholds(obs["station_id"]))
        present = {el for el, v in obs.items() if v is not None}
        month = int(quantities.beijing_date(obs["time"])[5:7])

        def series(name: str) -> dict[str, float]:
            return quantities.daily_series(state, name, ground_offset_c=rules.frost.air_to_ground_offset_c)

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
        """One signal for the county (the unit that issues signals) and one for the prefecture roll-up."""
        out = []
        for code, region_level in ((station.county_code, "county"), (station.prefecture_code, "prefecture")):
            region = self.regions.region(code)
            out.append({"kind": "station", "region_code": code, "region_level": region_level,
                        "region_name": region.name if region else code,
                        "region_name_zh": region.name_zh if region else code,
                        "prefecture_code": station.prefecture_code, "station_id": station.station_id,
                        "station_name": station.name_zh or station.name, "hazard": hazard, "level": level.colour,
                        "quantity": quantity, "value": value, "time": time_, "basis": basis, **extra})
        return out

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
            qs.append(quantities.station_quantities(new, api_decay=rules.flash_flood.api_decay,
                                                    ground_offset_c=offset, **self._thresholds(sid)))
        n = len(kept)
        if n == 0:
            return 0, stale, []
        names = {name for hq in self.hazard_quantities.values() for name in hq} | {"api_mm"}
        arrays = {name: np.array([q.get(name, np.nan) for q in qs], dtype=float) for name in names}
        present = {el: np.array([obs.get(el) is not None for obs, _ in kept]) for el in OBS_ELEMENTS}
        months = np.array([int((new["d"] and max(new["d"])[5:7]) or 0) for _, new in kept])

        def series_at(i: int, name: str) -> dict[str, float]:
            return quantities.daily_series(kept[i][1], name, ground_offset_c=offset)

        signals = self.grade_reports(arrays, present, months, [obs["station_id"] for obs, _ in kept],
                                     [obs["time"] for obs, _ in kept], series_at, **extra)
        return n, stale, signals

    def observe_columns(self, state: Any, cols: Any, **extra: Any) -> tuple[int, int, list[dict[str, Any]]]:
        """``observe_batch`` on columns (ingest.columns.ObservationColumns) with the columnar state
        (warning.station_columns.StationColumns): the worker's hot path. Returns (applied, stale, signals), the
        same as ``observe_batch`` (property-tested)."""
        rules = self.rules
        done = state.apply(cols.station_ids, cols.t, cols.values, api_decay=rules.flash_flood.api_decay,
                           ground_offset_c=rules.frost.air_to_ground_offset_c)
        kept = np.flatnonzero(done.applied)
        n = int(kept.size)
        stale = len(cols) - n
        if n == 0:
            return 0, stale, []
        arrays = {name: v[kept] for name, v in done.quantities.items()}
        present = {el: ~np.isnan(cols.values[el][kept]) for el in OBS_ELEMENTS}
        months = np.array([_month(d) for d in done.day[kept].tolist()])
        pick = kept.tolist()
        signals = self.grade_reports(arrays, present, months, [cols.station_ids[i] for i in pick],
                                     [cols.times[i] for i in pick], lambda i, name: done.series(pick[i], name),
                                     **extra)
        return n, stale, signals

    def grade_reports(self, arrays: dict[str, np.ndarray], present: dict[str, np.ndarray], months: np.ndarray,
                      station_ids: list[str], times: list[str], series_at: Any, **extra: Any) -> list[dict[str, Any]]:
        """Every hazard's level criteria as numpy comparisons over a batch of reports (quantities as of each
        report, NaN = missing) -> station signals, per hazard in report order."""
        rules = self.rules
        n = len(station_ids)
        counties = [self._county_of.get(sid, "") for sid in station_ids]
        level_codes: dict[str, np.ndarray] = {}
        scales: dict[str, np.ndarray | float] = {}
        for hazard, rule in rules.items():
            informed = np.zeros(n, dtype=bool)
            for name in self.hazard_quantities[hazard]:
                for el in quantities.QUANTITY_ELEMENTS[name]:
                    informed |= present[el]
            if hazard == "frost":
                informed &= np.isin(months, rules.frost.season_months)
            scale: np.ndarray | float = 1.0
            if hazard == "flash_flood":
                ff = rules.flash_flood
                county_scale = np.array([ff.counties.get(c, 1.0) for c in counties])
                scale = np.where(np.nan_to_num(arrays.get("api_mm", np.zeros(n)), nan=0.0) >= ff.wet_api_mm,
                                 county_scale * ff.wet_factor, county_scale)
            if n <= SCALAR_GRADING_MAX:  # a report or two: numpy's per-call overhead would dominate
                codes = self._grade_scalar(rule, arrays, n, scale, series_at)
            else:
                codes = grading.grade_arrays(rule, arrays, n, scale, series_at)
            codes[~informed] = -1
            level_codes[hazard] = codes
            scales[hazard] = scale
        signals: list[dict[str, Any]] = []
        for hazard, codes in level_codes.items():
            rule = rules[hazard]
            for i in np.flatnonzero(codes > 0).tolist():
                level = WarningLevel(int(codes[i]))
                sc = scales[hazard]
                q = {name: float(v[i]) for name, v in arrays.items() if v[i] == v[i]}
                c = self._decider(rule.level_rule(level), q, float(sc[i]) if isinstance(sc, np.ndarray) else sc)
                station = self.registry.get(station_ids[i])
                assert station is not None
                signals.extend(self.station_signals(station, hazard, level, c, q.get(c) if c else None,
                                                    times[i], **extra))
        return signals

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

    def _thresholds(self, station_id: str) -> dict[str, float | None]:
        c = self.climatology
        if c is None:
            return {}
        return {"t95": c.t95(station_id), "ehf85": c.ehf85(station_id)}

    @staticmethod
    def _decider(lr: Any, q: dict[str, float], scale: float = 1.0) -> str | None:
        """The quantity reported with a level: the first of its conditions that holds."""
        for c in lr.conditions:
            if c.quantity in q and grading.condition_holds(c, q[c.quantity], scale):
                return str(c.quantity)
        return str(lr.conditions[0].quantity) if lr.conditions else None

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

    def forecast(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """Signals from one ForecastPoint: levels whose onset lead is within the hazard's forecast_lead_h."""
        station = self.registry.get(p["station_id"])
        if station is None:
            return []
        window_h = max(0.0, (quantities.parse_utc(p["valid_to"]) - quantities.parse_utc(p["valid_from"]))
                       .total_seconds() / 3600)
        q = quantities.forecast_quantities(p["values"], window_h)
        lead_h = float(p.get("lead_h", 0))  # "within N hours": the forecast onset is at most N hours ahead
        out: list[dict[str, Any]] = []
        for hazard, rule in self.rules.items():
            if lead_h > rule.forecast_lead_h + 1e-9:
                continue
            g = grading.grade(rule, q, None, self.hazard_scale(hazard, station.county_code, q))
            if g is None or g[0] is None:
                continue
            level, quantity, val = g
            out.extend(self.station_signals(station, hazard, level, quantity, val, p["issued_at"], "forecast",
                                            valid_to=p["valid_to"], onset=p["valid_from"]))
        return out
