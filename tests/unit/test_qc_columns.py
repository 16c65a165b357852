"""ingest.qc.check_columns / QCState against the scalar check_batch path (independent code): same hard
fails, same flags, same context after every batch; QCState conversions and its byte format."""

from __future__ import annotations

import copy
import json
import math
import struct
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.qc import (
    ELEMENTS,
    PERSISTENCE,
    SMALL_BATCH,
    AnomalyModel,
    QCState,
    QualityControl,
    check_batch,
    check_columns,
    fit_anomaly_model,
)

BASE = 1_784_000_000  # 2026-07-14T03:33:20Z
STATIONS = ("A", "B", "C", "D", "E")
ELEV = {"A": 0.0, "B": 3000.0, "C": 1500.0, "E": 800.0}  # D unknown: 0 m
SCALAR = 10**9  # small_batch: everything through the scalar _check_one


@cache
def models() -> dict[str, AnomalyModel]:
    """Cheap anomaly models: 400 synthetic hourly reports (sub-daily and daily feature sets)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(400):
        h = 2 * math.pi * i / 24
        air = 10.0 + 5.0 * math.sin(h) + float(rng.normal(0, 1))
        rows.append({"station_id": "A", "time": iso(BASE + 3600 * i), "air_temp_c": air,
                     "dewpoint_c": air - 5.0 + float(rng.normal(0, 1)),
                     "tmax_c": 20.0 + float(rng.normal(0, 1)), "tmin_c": 10.0 + float(rng.normal(0, 1))})
    return {"A": fit_anomaly_model(rows, min_samples=200, max_samples=400)}


def iso(sec: float) -> str:
    whole = math.floor(sec)
    s = datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{s}.5Z" if sec != whole else f"{s}Z"


def columns(rows: list[dict[str, Any]]) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """What a worker holds after parsing: ids, epoch seconds, float columns with NaN = missing."""
    t = np.array([datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp() for r in rows])
    vals = {e: np.array([math.nan if r.get(e) is None else float(r[e]) for r in rows]) for e in ELEMENTS}
    return [r["station_id"] for r in rows], t, vals


def as_lists(hard: list[str | None], flags: dict[int, dict[str, str]], n: int) -> list[tuple[Any, Any]]:
    return [(hard[i], list(flags.get(i, {}).items())) for i in range(n)]


# --------------------------------------------------------------------------------------------- strategies
VALUES: dict[str, list[Any]] = {
    "air_temp_c": [None, 10.0, 10.0, 10, 10.4, 11.0, 22.0, -5.0, 45.0, 55.0, 70.0],
    "tmax_c": [None, None, 20.0, 20.0, 30.0, 50.0],
    "tmin_c": [None, None, 10.0, 10.0, 25.0, -40.0],
    "ground_tmin_c": [None, None, 5.0, -60.0],
    "rh_pct": [None, 50.0, 100.0, 100.0, 100.4, 30.0, 120.0],
    "dewpoint_c": [None, 5.0, 5.0, 9.0, 12.0, 35.0],
    "precip_mm": [None, 0.0, 0.0, 0.1, 5.0, 150.0, 600.0],
    "precip_period_h": [None, 1.0, 24.0, 6.0],
    "wind_ms": [None, 0.0, 0.0, 3.0, 3.0, 25.0, 45.0],
    "gust_ms": [None, 5.0, 2.0, 30.0, 70.0],
    "visibility_m": [None, 10000.0, 90000.0],
    "pressure_hpa": [None, 1013.0, 1013.0, 1005.0, 700.0, 880.0],
}
STUCK = {"air_temp_c": 10.0, "dewpoint_c": 5.0, "rh_pct": 71.0, "pressure_hpa": 1013.0, "wind_ms": 3.0,
         "gust_ms": 5.0, "tmax_c": 20.0, "tmin_c": 10.0, "precip_mm": 0.0, "precip_period_h": 1.0}
MALFORMED = {"sid": ("station_id", ""), "nosid": ("station_id", None), "time": ("time", "yesterday"),
             "value": ("wind_ms", "fast"), "nan": ("air_temp_c", float("nan")), "bool": ("rh_pct", True)}


@st.composite
def batch_sequences(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """Batches of interleaved stations, mostly hourly, with duplicates, out-of-order and sub-second times,
    gaps beyond the step checks' reach, stuck sensors, spikes and some malformed reports."""
    clock = dict.fromkeys(STATIONS, 0.0)
    out = []
    for _ in range(draw(st.integers(1, 5))):
        rows = []
        for _ in range(draw(st.sampled_from([1, 2, 5, SMALL_BATCH, SMALL_BATCH + 1, 40]))):
            s = draw(st.sampled_from(STATIONS))
            clock[s] += draw(st.sampled_from([3600.0, 3600.0, 3600.0, 1800.0, 0.0, -7200.0, 0.5, -0.5, 18000.0,
                                              54000.0]))
            r: dict[str, Any] = {"station_id": s, "time": iso(BASE + clock[s])}
            if draw(st.booleans()):
                r.update(STUCK)
            else:
                for e in ELEMENTS:
                    v = draw(st.sampled_from(VALUES[e]))
                    if v is not None:
                        r[e] = v
            bad = draw(st.sampled_from([None] * 10 + list(MALFORMED)))
            if bad:
                key, v = MALFORMED[bad]
                r[key] = v
                r["_bad"] = True
            rows.append(r)
        out.append(rows)
    return out


@st.composite
def dense_batch_sequences(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """Batches where each element is in every report or in none, except the daily ones, which may share a subset
    of the reports: check_columns then runs the step/persistence checks of several elements in one pass."""
    clock = dict.fromkeys(STATIONS, 0.0)
    out = []
    for _ in range(draw(st.integers(1, 5))):
        always = draw(st.sets(st.sampled_from(ELEMENTS)))
        daily = draw(st.sets(st.sampled_from(("tmax_c", "tmin_c", "ground_tmin_c")))) - always
        rows = []
        for _ in range(draw(st.sampled_from([SMALL_BATCH + 1, 40]))):
            s = draw(st.sampled_from(STATIONS))
            clock[s] += draw(st.sampled_from([3600.0, 3600.0, 3600.0, 1800.0, 0.0, -7200.0, 0.5, 18000.0, 54000.0]))
            r: dict[str, Any] = {"station_id": s, "time": iso(BASE + clock[s])}
            stuck, with_daily = draw(st.booleans()), draw(st.booleans())
            for e in ELEMENTS:
                if e in always or (with_daily and e in daily):
                    v = STUCK.get(e) if stuck else None
                    r[e] = v if v is not None else draw(st.sampled_from([v for v in VALUES[e] if v is not None]))
            rows.append(r)
        out.append(rows)
    return out


# --------------------------------------------------------------------------------------------- equivalence
def run_all_paths(batches: list[list[dict[str, Any]]], with_models: bool) -> None:
    mdl = models() if with_models else {}
    ref = QualityControl(elevations=ELEV, models=mdl, context={})
    vec = QualityControl(elevations=ELEV, models=mdl, context={})
    via_state = QualityControl(elevations=ELEV, models=mdl, context=QCState())
    state = QCState(capacity=1)  # grows while stations appear
    for rows in batches:
        plain = [{k: v for k, v in r.items() if k != "_bad"} for r in rows]
        want = check_batch(plain, ref, small_batch=SCALAR)
        want_l = [(r.hard_fail, list(r.flags.items())) for r in want]
        got = check_batch(plain, vec, small_batch=0)  # vectorised, dict context
        assert [(r.hard_fail, list(r.flags.items())) for r in got] == want_l
        assert vec.context == ref.context
        assert [(r.hard_fail, list(r.flags.items())) for r in via_state.check_batch(plain)] == want_l
        # check_columns only sees parsed reports: malformed ones never reach it
        keep = [i for i, r in enumerate(rows) if not r.get("_bad")]
        sids, t, vals = columns([plain[i] for i in keep])
        hard, flags = check_columns(sids, t, vals, state, elevations=ELEV, models=mdl)
        assert as_lists(hard, flags, len(keep)) == [want_l[i] for i in keep]
        assert all(flags[i] for i in flags)  # only flagged rows
        assert state == QCState.from_dict(ref.context)
        assert state.to_dict() == ref.context
        assert QCState.from_bytes(state.to_bytes()) == state
        assert via_state.context == state


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch_sequences(), st.booleans())
def test_check_columns_equals_scalar_check_batch(batches: list[list[dict[str, Any]]], with_models: bool) -> None:
    run_all_paths(batches, with_models)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(dense_batch_sequences(), st.booleans())
def test_check_columns_elements_checked_together(batches: list[list[dict[str, Any]]], with_models: bool) -> None:
    """Elements present in the same reports share one vectorised pass: same results as element by element."""
    run_all_paths(batches, with_models)


def test_explicit_sequences() -> None:
    """A spike and its return, a level shift, a stuck sensor across batch boundaries, tmin > tmax, a
    duplicate, an out-of-order report, a sub-second reordering and a hard fail, in batches both sides of
    SMALL_BATCH."""
    n_air = PERSISTENCE["air_temp_c"][0]
    rows: list[dict[str, Any]] = []
    for h in range(40):
        for s, shift in (("A", 0.0), ("B", 3.0), ("C", -2.0)):
            air = 10.0 + shift + (h % 5) * 0.3
            if s == "A" and h == 7:
                air = 30.0  # spike
            if s == "B" and h >= 20:
                air = 40.0  # level shift, then stuck
            rows.append({"station_id": s, "time": iso(BASE + 3600 * h), "air_temp_c": air,
                         "dewpoint_c": air - 4.0, "tmax_c": 20.0, "tmin_c": 22.0 if h == 9 else 10.0})
    rows.insert(30, dict(rows[27]))  # duplicate of A's h=9 report (tmin > tmax)
    d = {"station_id": "D", "time": iso(BASE + 3600 * 9 + 0.5), "air_temp_c": 10.0}
    rows[45:45] = [d, dict(d, air_temp_c=-30.0),  # same sub-second time: not newer, skipped
                   dict(d, time=iso(BASE + 3600 * 10), air_temp_c=10.5)]
    rows.insert(50, dict(rows[9], air_temp_c=-30.0))  # A's h=3 again: out of order, skipped
    rows[60]["air_temp_c"] = 99.0  # hard fail
    sizes = [1, SMALL_BATCH, SMALL_BATCH + 1, 3, 50, 1000]
    batches, i = [], 0
    while i < len(rows):
        n = sizes[len(batches) % len(sizes)]
        batches.append(rows[i:i + n])
        i += n
    run_all_paths(batches, with_models=True)
    # and what the flags are
    res = check_batch(rows, QualityControl(elevations=ELEV), small_batch=SCALAR)
    flags = [(r["station_id"], r["time"][11:19], res[i].flags) for i, r in enumerate(rows) if res[i].flags]
    assert any(s == "A" and "step" in f.get("air_temp_c", "") for s, _, f in flags)
    assert any(s == "B" and "persistence" in f.get("air_temp_c", "") and f"{n_air} consecutive" in
               f["air_temp_c"] for s, _, f in flags)
    assert sum("consistency: tmin" in f.get("tmin_c", "") for _, _, f in flags) == 4  # 3 + the duplicate
    # skipped reports get no step flag (only the per-report checks: dew point above -30 degC here)
    assert not [x for x in flags if x[0] == "D"]
    assert [x[2] for x in flags if "-30" in str(x[2])] == [
        {"dewpoint_c": "consistency: dew point 6.9 > air temperature -30"}]
    assert res[60].hard_fail is not None


def test_check_columns_state_matches_stored_dict_context() -> None:
    """A QCState made from an existing (JSON round-tripped) dict context continues exactly like it."""
    rows = [{"station_id": s, "time": iso(BASE + 3600 * h), "air_temp_c": 10.0 + (h % 3), "wind_ms": 2.0,
             "pressure_hpa": 1010.0 + h % 2} for h in range(30) for s in ("A", "B")]
    ctx: dict[str, Any] = {}
    check_batch(rows[:30], ctx, small_batch=SCALAR)
    ctx = json.loads(json.dumps(ctx))
    state = QCState.from_dict(ctx)
    assert state.to_dict() == ctx and len(state) == 2
    rest = rows[30:]
    rest[5] = dict(rest[5], air_temp_c=35.0)
    want = check_batch(rest, ctx, small_batch=SCALAR)
    hard, flags = check_columns(*columns(rest), state)  # no elevations: 0 m, as with a plain dict context
    assert as_lists(hard, flags, len(rest)) == [(r.hard_fail, list(r.flags.items())) for r in want]
    assert "step" in flags[5]["air_temp_c"]
    assert state.to_dict() == ctx


def test_from_dict_reads_malformed_entries_like_check_batch() -> None:
    ctx: dict[str, Any] = {
        "A": {"t": 1.0e9, "e": {"air_temp_c": [10, 1.0e9, None, None, 0, 3], "wind_ms": [1.0, 2.0]}},
        "B": 5,
        "C": {"t": "soon", "e": []},
        "D": {"t": None, "e": {"air_temp_c": [None, "x", 1.0, 2.0, True, "7"], "nope": [1.0] * 6}},
        "E": {"t": 1.0e9, "e": {"air_temp_c": (1.0, 1.0e9, 0.5, 9.0e8, 1, 2)}},
    }
    s = QCState.from_dict(ctx)
    assert s.station_ids == ["A", "B", "C", "D", "E"]
    k, nan = ELEMENTS.index("air_temp_c"), math.nan
    assert s.t.tolist() == [1.0e9, -math.inf, -math.inf, -math.inf, 1.0e9]
    np.testing.assert_array_equal(s.e[0, k], [10.0, 1.0e9, nan, nan, 0.0, 3.0])
    np.testing.assert_array_equal(s.e[0, ELEMENTS.index("wind_ms")], [nan, nan, nan, nan, 0.0, 0.0])  # length 2
    np.testing.assert_array_equal(s.e[1:3], QCState.from_dict({"x": {}, "y": {}}).e)  # not a dict / no "e" dict
    np.testing.assert_array_equal(s.e[3, k], [nan, nan, 1.0, 2.0, 1.0, 7.0])  # read value by value, as _f does
    np.testing.assert_array_equal(s.e[4, k], [1.0, 1.0e9, 0.5, 9.0e8, 1.0, 2.0])  # a tuple is read too
    assert s.to_dict() == {"A": {"t": 1.0e9, "e": {"air_temp_c": [10.0, 1.0e9, None, None, 0, 3]}},
                           "D": {"t": None, "e": {"air_temp_c": [None, None, 1.0, 2.0, 1, 7]}},
                           "E": {"t": 1.0e9, "e": {"air_temp_c": [1.0, 1.0e9, 0.5, 9.0e8, 1, 2]}}}
    # the same reports after it: identical to check_batch on the dict
    rows = [{"station_id": sid, "time": iso(1.0e9 + 3600 * h), "air_temp_c": 10.0} for h in range(1, 4)
            for sid in "ABCDE"]
    want = check_batch(rows, copy.deepcopy(ctx), small_batch=SCALAR)
    hard, flags = check_columns(*columns(rows), s)
    assert as_lists(hard, flags, len(rows)) == [(r.hard_fail, list(r.flags.items())) for r in want]


@pytest.mark.parametrize("odd", [None, [1.0, 2.0, "3", None, 0, 1], [1, 2, 3, 4, True, 5], [None] * 6,
                                 [1.0, 2.0, 3.0, 4.0, -1, math.inf], (1.0, 2.0, 3.0, 4.0, 1, 2)])
def test_from_dict_many_stations_reads_each_entry_alike(odd: Any) -> None:
    """Many entries are converted in one numpy call: the same numbers as entry by entry."""
    ctx: dict[str, Any] = {
        f"S{i}": {"t": 1.0e9 + i, "e": {e: [float(i), 1.0e9 + i, None if i % 3 else 0.5, None, i % 2, i]
                                        for e in ELEMENTS[: 1 + i % 12]}} for i in range(40)}
    if odd is not None:
        ctx["S7"]["e"]["wind_ms"] = odd
    big = QCState.from_dict(ctx)
    for sid, st_ in ctx.items():
        one = QCState.from_dict({sid: st_})  # few entries: one by one
        assert np.array_equal(big.e[big.slot_of[sid]], one.e[0], equal_nan=True), sid


# --------------------------------------------------------------------------------------------- QCState API
def test_elevation_is_cached_per_slot() -> None:
    class Counting(dict[str, float]):
        calls = 0

        def get(self, key: Any, default: Any = None) -> Any:
            Counting.calls += 1
            return super().get(key, default)

    elev = Counting(B=3000.0)
    s = QCState()
    rows = [{"station_id": sid, "time": iso(BASE + 3600 * h), "air_temp_c": 45.0} for h in range(3) for sid in "AB"]
    for h in range(3):
        _, flags = check_columns(*columns(rows[2 * h:2 * h + 2]), s, elevations=elev)
        assert 0 not in flags and "range" in flags[1]["air_temp_c"]  # 45 degC: fine at 0 m, not at 3000 m
    assert Counting.calls == 2
    # without a table: 0 m, and nothing cached
    s2 = QCState()
    _, flags = check_columns(*columns(rows[:2]), s2)
    assert flags == {}
    check_columns(*columns(rows[2:4]), s2, elevations=elev)
    assert Counting.calls == 4


def test_check_columns_input_checks() -> None:
    sids, t, vals = columns([{"station_id": "A", "time": iso(BASE), "air_temp_c": 10.0}])
    s = QCState()
    with pytest.raises(ValueError, match="station ids"):
        check_columns(["A", "B"], t, vals, s)
    with pytest.raises(ValueError, match="shape"):
        check_columns(sids, t, dict(vals, wind_ms=np.zeros(3)), s)
    hard, flags = check_columns(["", "A", "A"], np.array([BASE, math.nan, BASE]), {"air_temp_c": np.full(3, 70.0)}, s)
    assert [h.split(":")[0] if h else h for h in hard] == ["station_id", "time", "air_temp_c"]
    assert flags == {} and len(s) == 0  # rejected reports create no station
    hard, flags = check_columns([], np.zeros(0), {}, s)
    assert hard == [] and flags == {}


def test_bytes_round_trip_exact() -> None:
    s = QCState(capacity=1)
    ids = ["52889", "ü-station", "a,b", "with\x00nul", "\ud800", ""] + [f"x{i}" for i in range(100)]
    s._add_slots(ids)
    rng = np.random.default_rng(1)
    s.t[:] = rng.normal(1.7e9, 1e6, len(ids))
    s.t[0] = -math.inf
    s.e[:, : 3] = rng.normal(size=(len(ids), 3, 6))
    s.e[1, 1, 2] = math.inf
    s.e[2, 0, 3] = -0.0
    b = s.to_bytes()
    r = QCState.from_bytes(b)
    assert r.station_ids == ids and r == s
    assert r.t.tobytes() == s.t.tobytes() and r.e.tobytes() == s.e.tobytes()  # bit for bit (sign of -0.0 too)
    assert QCState.from_bytes(bytearray(b)) == s and QCState.from_bytes(memoryview(b)) == s
    assert r.to_bytes() == b
    # unused element columns are left out of the bytes
    assert len(b) < 8 * len(ids) * (1 + 6 * len(ELEMENTS))
    empty = QCState.from_bytes(QCState().to_bytes())
    assert len(empty) == 0 and empty == QCState()
    # a state read back keeps working (and growing)
    sids, t, vals = columns([{"station_id": f"y{i}", "time": iso(BASE), "air_temp_c": 1.0} for i in range(300)])
    check_columns(sids, t, vals, r)
    assert len(r) == len(ids) + 300 and QCState.from_bytes(r.to_bytes()) == r


def test_from_bytes_rejects_garbage() -> None:
    good = QCState.from_dict({"A": {"t": 1.0, "e": {"air_temp_c": [1.0, 1.0, None, None, 0, 1]}}}).to_bytes()
    bad = [b"", b"QCS1", b"\x00" * 64, good[:-1], good + b"\x00", b"XXXX" + good[4:],
           good[:4] + struct.pack("<H", 999) + good[6:],  # element names run past the end
           good[:8] + struct.pack("<I", 2**31) + good[12:],  # absurd station count
           QCState.from_dict({"A": {}, "B": {}}).to_bytes().replace(b"B", b"A")]  # duplicate ids
    for b in bad:
        with pytest.raises(ValueError):
            QCState.from_bytes(b)
    with pytest.raises(TypeError):
        QCState.from_bytes(10**12)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 400), st.binary(min_size=1, max_size=8))
def test_from_bytes_never_crashes(noise: bytes, at: int, patch: bytes) -> None:
    good = QCState.from_dict({"52889": {"t": 1.0, "e": {"air_temp_c": [1.0, 1.0, None, None, 0, 1]}},
                              "ü": {"t": 2.0, "e": {}}}).to_bytes()
    for b in (noise, good[:at] + patch + good[at + len(patch):], good[:at]):
        try:
            s = QCState.from_bytes(b)
        except ValueError:
            continue
        assert QCState.from_bytes(s.to_bytes()) == s


def test_state_api() -> None:
    s = QCState(capacity=2)
    assert len(s) == 0 and s.t.shape == (0,) and s.e.shape == (0, len(ELEMENTS), 6)
    slots = s.slots_for(["a", "b", "a", "c"], create=np.array([True, True, True, False]))
    assert slots.tolist() == [0, 1, 0, -1] and s.station_ids == ["a", "b"] and s.slot_of == {"a": 0, "b": 1}
    assert s.slots_for(["c", "d", "e"], create=np.ones(3, dtype=bool)).tolist() == [2, 3, 4]  # grew
    assert s.slots_for(["zz", "a"]).tolist() == [-1, 0] and "zz" not in s.slot_of  # create=None: look up only
    assert len(s) == 5 and np.isneginf(s.t).all() and np.isnan(s.e[:, :, :4]).all() and (s.e[:, :, 4:] == 0).all()
    assert s.to_dict() == {}  # no report yet
    with pytest.raises(ValueError):
        s._add_slots(["a"])
    assert QCState() != s and s != object()


def test_state_in_blocks_round_trips() -> None:
    """The worker stores the context in blocks of slots (subset) and rebuilds it block by block (merge)."""
    s = QCState()
    ids = [f"S{i}" for i in range(300)]
    t = np.full(300, 1.789e9)
    vals = {"air_temp_c": np.linspace(-5, 30, 300), "rh_pct": np.full(300, 40.0)}
    check_columns(ids, t, vals, s)
    check_columns(ids, t + 3600, {k: v + 1 for k, v in vals.items()}, s)
    back = QCState()
    for lo in range(0, 300, 128):
        back.merge(QCState.from_bytes(s.subset(np.arange(lo, min(lo + 128, 300))).to_bytes()))
    assert back == s and back.station_ids == s.station_ids
