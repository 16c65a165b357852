"""The pipeline's semantics in memory (StationGrader + catch_up + apply_signal, county signals): the oracle
for scenario tests that drive the same rows through the real broker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from warning.grading import apply_signal, catch_up
from warning.pipeline import StationGrader
from warning.rules import load_rules
from warning.shared.regions import RegionTree, StationRegistry


def model_events(rows: list[dict[str, Any]], status: str = "actual") -> list[dict[str, Any]]:
    rules = load_rules()
    grader = StationGrader(rules, StationRegistry.load(), RegionTree.load())
    states: dict[str, Any] = {}
    regions: dict[tuple[str, str], Any] = {}
    out: list[dict[str, Any]] = []
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for obs in rows:
        extra = {} if status == "actual" else {"status": status}  # as the intake marks a drill's signals
        new, sigs = grader.observe(states.get(obs["station_id"]), obs, **extra)
        if new is None:
            continue
        states[obs["station_id"]] = new
        for s in sigs:
            if s["region_level"] != "county":
                continue
            key = (s["region_code"], s["hazard"])
            rule = rules[s["hazard"]]
            st, caught = catch_up(regions.get(key), s["time"], rule, now)
            st, ev = apply_signal(st, s, rule, now)
            regions[key] = st
            out.extend(e for e in [*(e for e, _ in caught), ev] if e is not None)
    return out
