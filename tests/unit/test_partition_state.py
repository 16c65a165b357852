"""Snapshots plus a ring of batch deltas rebuild exactly the live state, also after a snapshot interrupted
half-way (replay is idempotent)."""

import random
import time
from typing import Any

import numpy as np
import pytest

from ingest.columns import ELEMENTS, ObservationColumns, observation_columns
from ingest.partition_state import (
    SNAPSHOT_EVERY,
    PartitionState,
    copy_columns,
    decode_delta,
    encode_delta,
    restore,
    stamp,
    unstamp,
)
from ingest.qc import QCState, check_columns
from ingest.station_columns import BLOCK, StationColumns
from warning.rules import load_rules
from warning.shared.regions import StationRegistry

REGISTRY = StationRegistry.load()
RULES = load_rules()
FOLD = {"api_decay": RULES.flash_flood.api_decay, "ground_offset_c": RULES.frost.air_to_ground_offset_c}
IDS = [s.station_id for s in REGISTRY]


def batches(n: int, seed: int = 5) -> list[list[dict[str, Any]]]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1782864000 + k * 3 * 3600))
        rows = []
        for sid in rng.sample(IDS, 40):
            o: dict[str, Any] = {"station_id": sid, "time": t, "air_temp_c": round(rng.uniform(5, 38), 1),
                                 "rh_pct": round(rng.uniform(10, 90), 0)}
            if rng.random() < 0.3:
                o.update(precip_mm=round(rng.uniform(0, 30), 1), precip_period_h=3)
            rows.append(o)
        out.append(rows)
    return out


def fold(ps: PartitionState, cols: ObservationColumns) -> None:
    hard, flags = check_columns(cols.station_ids, cols.t, cols.values, ps.qc)
    for i, flagged in flags.items():
        for el in flagged:
            cols.values[el][i] = np.nan
    keep = np.array([h is None for h in hard], dtype=bool)
    cols = cols if keep.all() else cols.take(keep)
    ps.columns.apply(cols.station_ids, cols.t, cols.values, **FOLD)


def snapshot(ps: PartitionState, blocks: dict[str, list[bytes]], only_first: bool = False) -> None:
    fast = [stamp(ps.seq, ps.columns.encode_block(b, "fast")) for b in range(ps.columns.blocks())]
    daily = [stamp(ps.seq, ps.columns.encode_block(b, "daily")) for b in range(ps.columns.blocks())]
    qc = [stamp(ps.seq, ps.qc.subset(np.arange(b * BLOCK, min((b + 1) * BLOCK, len(ps.qc)))).to_bytes())
          for b in range((len(ps.qc) + BLOCK - 1) // BLOCK)]
    if only_first:  # the worker died after writing one block
        blocks["fast"][:1] = fast[:1]
        return
    blocks.update(fast=fast, daily=daily, qc=qc)
    ps.snapshot_seq = ps.seq


def same(a: PartitionState, b: PartitionState) -> None:
    assert a.columns.station_ids == b.columns.station_ids
    n = len(a.columns)
    for name, arr in a.columns.arrays.items():
        np.testing.assert_array_equal(arr[:n], b.columns.arrays[name][:n], err_msg=name)
    assert a.qc == b.qc


@pytest.mark.parametrize("interrupt", [False, True])
def test_restore_equals_live_state(interrupt: bool) -> None:
    live = PartitionState(StationColumns(), QCState())
    blocks: dict[str, list[bytes]] = {"fast": [], "daily": [], "qc": []}
    ring: dict[int, bytes] = {}
    for k, rows in enumerate(batches(3 * SNAPSHOT_EVERY + 5)):
        cols, rejected = observation_columns(rows, known_station=REGISTRY.__contains__)
        assert not rejected
        raw = copy_columns(cols)
        fold(live, cols)
        live.seq += 1
        ring[live.seq % SNAPSHOT_EVERY] = encode_delta(live.seq, raw)
        if live.needs_snapshot():
            snapshot(live, blocks, only_first=interrupt and k == 2 * SNAPSHOT_EVERY)
            if interrupt and k == 2 * SNAPSHOT_EVERY:
                break  # the crash: rebuild from half a snapshot and the ring
    got = restore(blocks, list(ring.values()), StationColumns(), QCState(), ELEMENTS, fold)
    same(got, live)
    assert got.seq == live.seq and got.snapshot_due


def test_delta_and_stamp_round_trip_and_reject_garbage() -> None:
    cols, _ = observation_columns(batches(1)[0], known_station=REGISTRY.__contains__)
    seq, back = decode_delta(encode_delta(7, cols), ELEMENTS)
    assert seq == 7 and back.station_ids == cols.station_ids and back.times == cols.times
    for e in ELEMENTS:
        np.testing.assert_array_equal(back.values[e], cols.values[e])
    assert unstamp(stamp(42, b"abc")) == (42, b"abc")
    for junk in (b"", b"\x05\x00\x00\x00{}", encode_delta(1, cols)[:-8]):
        with pytest.raises(ValueError):
            decode_delta(junk, ELEMENTS)
    with pytest.raises(ValueError):
        unstamp(b"\x01")


def test_report_by_report_undoes_a_failing_report() -> None:
    """The worker's fallback: a report that raises after changing the state leaves no trace; the others stay."""
    from ingest.partition_store import report_by_report

    ps = PartitionState(StationColumns(), QCState())
    rows = [{"station_id": sid, "time": "2026-07-01T06:00:00Z", "air_temp_c": 30.0} for sid in IDS[:3]]
    cols, _ = observation_columns(rows, known_station=REGISTRY.__contains__)

    def step(one: ObservationColumns) -> int:
        ps.columns.apply(one.station_ids, one.t, one.values, **FOLD)  # changes the state first ...
        if one.station_ids[0] == IDS[1]:
            raise ValueError("bad report")  # ... then fails
        return 1

    done, failed = report_by_report(ps, cols, step)
    assert done == [1, 1] and [(o.station_ids[0], str(e)) for o, e in failed] == [(IDS[1], "bad report")]
    t = {sid: ps.columns.arrays["t"][ps.columns.slot_of[sid]] for sid in IDS[:3] if sid in ps.columns.slot_of}
    assert t[IDS[0]] > 0 and t[IDS[2]] > 0 and IDS[1] not in t
