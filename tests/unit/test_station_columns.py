"""The columnar station state (the worker's hot path) gives exactly the quantities and signals of the readable
per-report reference in ingest.quantities / StationGrader.observe_batch."""

import math
import random
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import quantities
from ingest.columns import observation_columns
from ingest.station_columns import BLOCK, SlotInfo, StationColumns
from warning.pipeline import StationGrader
from warning.rules import load_rules
from warning.shared.regions import RegionTree, StationRegistry

RULES = load_rules()
REGISTRY = StationRegistry.load()
FOLD = {"api_decay": RULES.flash_flood.api_decay, "ground_offset_c": RULES.frost.air_to_ground_offset_c}
STATIONS = ["52418", "52889", "57006", "56080", "52533"]


class Clim:
    """Station climatology stand-in: thresholds and MCI gamma parameters (alpha, beta, q per term and slot)."""

    def __init__(self) -> None:
        params = np.zeros((3, 366, 3))
        params[..., 0], params[..., 1], params[..., 2] = 1.6, 40.0, 0.05
        self.params = params

    def t95(self, sid: str) -> float | None:
        return 24.0 if sid != "52533" else None

    def ehf85(self, sid: str) -> float | None:
        return 30.0

    def mci_params(self, sid: str) -> np.ndarray | None:
        return self.params if sid != "57006" else None


def grader(clim: Any = None) -> StationGrader:
    return StationGrader(RULES, REGISTRY, RegionTree.load(), clim)


def columns_state(g: StationGrader) -> StationColumns:
    c = g.climatology

    def info(sid: str) -> SlotInfo:
        s = REGISTRY.get(sid)
        return SlotInfo(s.latitude if s else 36.0, c.t95(sid) if c else None, c.ehf85(sid) if c else None)

    return StationColumns(info, c.mci_params if c else None)


def reports(seed: int, n: int, step_s: int = 1800, p_missing: float = 0.5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    t0 = 1789000000  # 2026-09 (frost season)
    out = []
    k = 0
    for _ in range(n):
        k += rng.choice([1, 1, 1, 2, 5, 60])  # gaps of minutes to days; sometimes the same time (stale)
        o: dict[str, Any] = {"station_id": rng.choice(STATIONS),
                             "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + k * step_s))}
        for el, lo, hi in (("tmax_c", 25, 43), ("tmin_c", -8, 12), ("air_temp_c", -5, 40), ("precip_mm", 0, 60),
                           ("wind_ms", 0, 38), ("gust_ms", 0, 40), ("visibility_m", 20, 5000), ("rh_pct", 5, 99),
                           ("ground_tmin_c", -9, 5)):
            if rng.random() < p_missing:
                o[el] = round(rng.uniform(lo, hi), 1)
        if "precip_mm" in o:
            o["precip_period_h"] = rng.choice([1, 1, 3, 6, 12, 30, 0])
        if len(o) == 2:
            o["rh_pct"] = 50.0
        out.append(o)
    if n > 3:  # out-of-order and duplicate reports
        out.insert(rng.randrange(n), dict(out[rng.randrange(n)]))
    return out


def key(s: dict[str, Any]) -> tuple[Any, ...]:
    return (s["time"], s["station_id"], s["hazard"], s["region_code"], s["level"], s["quantity"], s["value"])


def compare(batches: list[list[dict[str, Any]]], g: StationGrader) -> int:
    """Run both paths over the same batches; assert equal signals (same order) and quantities per report."""
    states: dict[str, Any] = {}
    cstate = columns_state(g)
    signals = 0
    for batch in batches:
        cols, rejected = observation_columns(batch, known_station=REGISTRY.__contains__)
        assert not rejected
        # reference quantities after each report, one by one
        ref_q: list[dict[str, float] | None] = []
        probe = {k: v for k, v in states.items()}
        for o in batch:
            prev = probe.get(o["station_id"])
            new = quantities.update_station(prev, o)
            if new is None:
                ref_q.append(None)
                continue
            new = g._complete_day(o["station_id"], prev, new)
            probe[o["station_id"]] = new
            ref_q.append(quantities.station_quantities(new, api_decay=RULES.flash_flood.api_decay,
                                                       ground_offset_c=RULES.frost.air_to_ground_offset_c,
                                                       **g._thresholds(o["station_id"])))
        applied, stale, expected = g.observe_batch(states, batch)
        done = cstate.apply(cols.station_ids, cols.t, cols.values, api_decay=RULES.flash_flood.api_decay,
                            ground_offset_c=RULES.frost.air_to_ground_offset_c)
        assert done.applied.tolist() == [q is not None for q in ref_q]
        for i, q in enumerate(ref_q):
            if q is None:
                continue
            got = {name: float(v[i]) for name, v in done.quantities.items() if not math.isnan(v[i])}
            assert got == pytest.approx(q, rel=0, abs=0), (i, batch[i])
        # grading on a fresh state replayed to the same point gives the same signals, in the same order
        signals += len(expected)
    # signals: replay everything through observe_columns
    states2: dict[str, Any] = {}
    cstate2 = columns_state(g)
    for batch in batches:
        _, _, expected = g.observe_batch(states2, batch)
        cols, _ = observation_columns(batch, known_station=REGISTRY.__contains__)
        applied, stale, got = g.observe_columns(cstate2, cols)
        assert [key(s) for s in got] == [key(s) for s in expected]
        assert applied + stale == len(batch)
    return signals


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 150), st.integers(1, 60))
def test_columns_equal_reference(seed: int, n: int, batch_size: int) -> None:
    batch = reports(seed, n)
    compare([batch[i:i + batch_size] for i in range(0, len(batch), batch_size)], grader())


def test_daily_inputs_mci_and_ehf_equal_reference() -> None:
    """200 days of 6-hourly reports: EHF (t95/EHF85), MCI from 150 days of rain and PET, drought run days."""
    g = grader(Clim())
    rng = random.Random(7)
    t0 = 1767225600  # 2026-01-01
    batch: list[dict[str, Any]] = []
    for k in range(200 * 4):
        for sid in STATIONS:
            if rng.random() < 0.03:
                continue  # a missing report now and then
            o: dict[str, Any] = {"station_id": sid, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                          time.gmtime(t0 + k * 21600)),
                                 "air_temp_c": round(15 + 15 * math.sin(k / 60) + rng.uniform(-6, 6), 1),
                                 "precip_mm": 0.0 if rng.random() < 0.85 else round(rng.uniform(0, 12), 1),
                                 "precip_period_h": 6}
            if k % 4 == 3:
                o["tmax_c"] = o["air_temp_c"] + 6
                o["tmin_c"] = o["air_temp_c"] - 6
            batch.append(o)
    batches = [batch[i:i + 997] for i in range(0, len(batch), 997)]
    compare(batches, g)
    cstate = columns_state(g)
    for b in batches:
        cols, _ = observation_columns(b, known_station=REGISTRY.__contains__)
        cstate.apply(cols.station_ids, cols.t, cols.values, **FOLD)
    # the daily inputs really were exercised
    assert (cstate.arrays["mci_end"][: len(cstate)] > 0).sum() >= 3
    assert len(cstate.daily_precip("52418")) == 150


def test_blocks_round_trip_and_reject_garbage() -> None:
    g = grader(Clim())
    cstate = columns_state(g)
    batch = reports(3, 400)
    cols, _ = observation_columns(batch, known_station=REGISTRY.__contains__)
    cstate.apply(cols.station_ids, cols.t, cols.values, **FOLD)
    restored = columns_state(g)
    for b in range(cstate.blocks()):
        for part in ("fast", "daily"):
            restored.load_block(b, cstate.encode_block(b, part))
    n = len(cstate)
    assert restored.station_ids == cstate.station_ids
    for name, arr in cstate.arrays.items():
        np.testing.assert_array_equal(restored.arrays[name][:n], arr[:n])
    more = reports(4, 50)
    c1, _ = observation_columns(more, known_station=REGISTRY.__contains__)
    a = cstate.apply(c1.station_ids, c1.t, c1.values, **FOLD)
    b = restored.apply(c1.station_ids, c1.t, c1.values, **FOLD)
    for name in a.quantities:
        np.testing.assert_array_equal(a.quantities[name], b.quantities[name])
    for junk in (b"", b"\x00\x00\x00\x05{}", b"\xff" * 20, cstate.encode_block(0, "fast")[:-3]):
        with pytest.raises(ValueError):
            columns_state(g).load_block(0, junk)
    assert BLOCK >= 64


def test_many_stations_span_blocks() -> None:
    cstate = StationColumns()
    ids = [f"S{i}" for i in range(BLOCK + 10)]
    t = np.full(len(ids), 1.789e9)
    values = {e: np.full(len(ids), np.nan) for e in quantities.QUANTITY_ELEMENTS["mci_day"]}
    values.update({"precip_period_h": np.full(len(ids), np.nan), "air_temp_c": np.arange(len(ids), dtype=float) / 10})
    cstate.apply(ids, t, values, **FOLD)
    assert cstate.blocks() == 2
    restored = StationColumns()
    for b in range(2):
        restored.load_block(b, cstate.encode_block(b, "fast"))
    assert restored.arrays["day"][BLOCK + 5, :, 0].tolist().count(float(BLOCK + 5) / 10) == 1


def test_per_slot_constants_follow_new_stations() -> None:
    cstate = StationColumns()
    calls: list[str] = []

    def scale(sid: str) -> float:
        calls.append(sid)
        return float(len(sid))

    cstate.slots(["A", "BB"])
    assert cstate.per_slot("k", scale).tolist() == [1.0, 2.0]
    cstate.slots(["BB", "CCC"])
    assert cstate.per_slot("k", scale).tolist() == [1.0, 2.0, 3.0]
    assert calls == ["A", "BB", "CCC"]  # once per station
    assert StationColumns().per_slot("k", scale).size == 0
