"""The obs topic's two batch forms (ingest.columns.decode_batch): rows and columns decode to the same columns, the
same rejections with the same reasons and the same dead-letter records; a malformed envelope is a BatchError."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ingest.columns import BatchError, batch_rows, decode_batch, encode_batch

NOW = datetime(2026, 7, 1, 12, tzinfo=UTC)
KNOWN = frozenset({"52889", "52533", "52418"}).__contains__

values = st.one_of(
    st.floats(-100, 2000, allow_nan=False), st.integers(-10, 5000), st.none(), st.booleans(),
    # (list items within 64 bits: orjson reads a longer integer back as a float, so no dead letter could carry it
    # as sent; a bare 2 ** 70 value is still tried)
    st.sampled_from(["12.5", "", "x" * 40]), st.lists(st.integers(-2 ** 63, 2 ** 63 - 1), max_size=2),
    st.just(2 ** 70),
    st.just(1.0e308),
)
rows = st.lists(st.fixed_dictionaries(
    {"station_id": st.sampled_from(["52889", "52533", "52418", "99999", 52889, None])},
    optional={
        "time": st.sampled_from(["2026-07-01T08:00:00Z", "2026-07-01T09:00:00+08:00", "2026-07-01T10:00Z",
                                 "2100-01-01T00:00:00Z", "yesterday", 5, ["2026"]]),
        "air_temp_c": values, "precip_mm": values, "precip_period_h": values, "rh_pct": values,
        "source": st.sampled_from(["isd", None, 3]), "colour": st.just("red"),
    }), max_size=12)


def _same(a: Any, b: Any) -> None:
    assert a.rejected == b.rejected
    ca, cb = a.columns, b.columns
    assert ca.station_ids == cb.station_ids and ca.times == cb.times and ca.rows.tolist() == cb.rows.tolist()
    np.testing.assert_array_equal(ca.t, cb.t)
    assert ca.values.keys() == cb.values.keys()
    for e in ca.values:
        np.testing.assert_array_equal(ca.values[e], cb.values[e])


@settings(max_examples=300, deadline=None)
@given(rows)
@example([{"station_id": 52889, "time": "2026-07-01T08:00:00Z", "source": None, "air_temp_c": 0.0}])  # null source
def test_columns_and_rows_decode_alike(batch: list[dict[str, Any]]) -> None:
    as_rows = decode_batch(_dumps({"accepted_at": 1.7e9, "observations": batch}), known_station=KNOWN, now=NOW)
    as_cols = decode_batch(_dumps({"accepted_at": 1.7e9, "columns": _columns(batch)}), known_station=KNOWN, now=NOW)
    _same(as_rows, as_cols)
    for i, _ in as_rows.rejected:  # dead letters carry the row as sent (the column form has no nulls)
        assert as_cols.record(i) == {k: v for k, v in batch[i].items() if v is not None}
    assert as_rows.accepted_at == as_cols.accepted_at == 1.7e9


def _dumps(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg).encode()  # stdlib: integers beyond 64 bits, as any producer may send


def _columns(batch: list[dict[str, Any]]) -> dict[str, list[Any]]:
    keys = sorted(set().union(*batch)) if batch else ["station_id"]
    return {k: [o.get(k) for o in batch] for k in keys}


def test_encode_batch_round_trip() -> None:
    batch = [{"station_id": "52889", "time": "2026-07-01T08:00:00Z", "air_temp_c": 31.5, "source": "isd"},
             {"station_id": "52533", "time": "2026-07-01T08:00:00Z", "precip_mm": 22.0, "precip_period_h": 1.0,
              "source": "isd"}]
    value = encode_batch(batch, 1.7e9)
    msg = orjson.loads(value)
    assert set(msg) == {"accepted_at", "columns"} and msg["columns"]["air_temp_c"] == [31.5, None]
    assert batch_rows(msg) == batch
    assert len(value) < len(orjson.dumps({"accepted_at": 1.7e9, "observations": batch}))
    got = decode_batch(value, known_station=KNOWN, now=NOW)
    assert got.rejected == [] and got.columns.station_ids == ["52889", "52533"]
    assert got.columns.values["precip_mm"][1] == 22.0 and np.isnan(got.columns.values["precip_mm"][0])


def test_unhashable_time_is_a_rejected_row_not_a_crash() -> None:
    batch = [{"station_id": "52889", "time": ["2026-07-01T08:00:00Z"], "air_temp_c": 30.0},
             {"station_id": "52889", "time": "2026-07-01T08:00:00Z", "air_temp_c": 30.0}]
    got = decode_batch(orjson.dumps({"observations": batch}), known_station=KNOWN, now=NOW)
    assert [i for i, _ in got.rejected] == [0] and got.rejected[0][1].startswith("time:")
    assert got.columns.station_ids == ["52889"] and got.accepted_at is None


@pytest.mark.parametrize(("value", "reason"), [
    (b"", "empty record"),
    (None, "empty record"),
    (b"\xff\xfe garbage", "malformed"),
    (b"[1, 2]", "expected an object"),
    (b'{"observations": [], "m": 1}', "unknown field 'm'"),
    (b'{"accepted_at": "soon", "observations": []}', "accepted_at"),
    (b'{"accepted_at": [1], "observations": []}', "accepted_at"),
    (b'{"accepted_at": 1}', "one of 'observations' or 'columns'"),
    (b'{"observations": [], "columns": {}}', "one of 'observations' or 'columns'"),
    (b'{"observations": "x"}', "observations is not a list"),
    (b'{"columns": [1]}', "columns is not an object of lists"),
    (b'{"columns": {"station_id": "52889"}}', "columns is not an object of lists"),
    (b'{"columns": {"station_id": ["52889"], "time": []}}', "columns of different lengths"),
])
def test_malformed_envelopes(value: bytes | None, reason: str) -> None:
    with pytest.raises(BatchError, match=reason):
        decode_batch(value, known_station=KNOWN, now=NOW)


def test_unknown_column_rejects_the_rows_that_carry_it() -> None:
    value = orjson.dumps({"columns": {"station_id": ["52889", "52533"], "time": ["2026-07-01T08:00:00Z"] * 2,
                                      "air_temp_c": [30.0, 31.0], "colour": ["red", None]}})
    got = decode_batch(value, known_station=KNOWN, now=NOW)
    assert got.rejected == [(0, "colour: unknown field")] and got.columns.station_ids == ["52533"]
