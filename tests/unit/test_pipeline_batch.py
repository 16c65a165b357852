"""The vectorised batch grader gives exactly the signals of the per-report grader."""

import random
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from warning.pipeline import StationGrader
from warning.rules import load_rules
from warning.shared.regions import RegionTree, StationRegistry

GRADER = StationGrader(load_rules(), StationRegistry.load(), RegionTree.load())
STATIONS = ["52418", "52889", "57006", "56080", "52533"]


def reports(seed: int, n: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    t0 = 1789000000  # 2026-09 (frost season) ... spans several days
    out = []
    for k in range(n):
        o: dict[str, Any] = {"station_id": rng.choice(STATIONS),
                             "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + k * 1800))}
        for el, lo, hi in (("tmax_c", 25, 43), ("tmin_c", -8, 12), ("air_temp_c", -5, 40), ("precip_mm", 0, 60),
                           ("wind_ms", 0, 38), ("gust_ms", 0, 40), ("visibility_m", 20, 5000), ("rh_pct", 5, 99),
                           ("ground_tmin_c", -9, 5)):
            if rng.random() < 0.5:
                o[el] = round(rng.uniform(lo, hi), 1)
        if "precip_mm" in o:
            o["precip_period_h"] = rng.choice([1, 1, 3, 6])
        out.append(o)
    return out


def scalar(batch: list[dict[str, Any]]) -> tuple[list[Any], dict[str, Any]]:
    states: dict[str, Any] = {}
    sigs: list[Any] = []
    for o in batch:
        new, s = GRADER.observe(states.get(o["station_id"]), o)
        if new is not None:
            states[o["station_id"]] = new
            sigs.extend(s)
    return sigs, states


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 120))
def test_batch_equals_scalar(seed: int, n: int) -> None:
    batch = reports(seed, n)
    expected, exp_states = scalar(batch)
    states: dict[str, Any] = {}
    applied, stale, got = GRADER.observe_batch(states, batch)
    key = lambda s: (s["time"], s["station_id"], s["hazard"], s["region_code"])  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, expected))
    assert {(key(s), s["level"], s["quantity"]) for s in got} == {(key(s), s["level"], s["quantity"]) for s in expected}
    assert states == exp_states and applied + stale == n
