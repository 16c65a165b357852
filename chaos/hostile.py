"""Malformed and hostile inputs: HTTP bodies for /api/v1/observations and /api/v1/forecasts, and raw records for
the ``obs`` topic. Every input is invalid by construction (the last of duplicate keys is the bad one, stations
are unknown, ...), so each must end as a 4xx, or a 202 naming it in ``rejected`` plus an ``obs.rejected`` record.

Topic records carry a marker (``CHAOS-<n>`` or ``CHAOS-<n>.<i>`` per observation) within their first bytes so
that each one can be found again in ``obs.rejected`` (which keeps the first 64 KiB of a rejected record).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from warning.shared.times import iso_utc

UNKNOWN = ("00000", "99999", "5241", "524180", " ", "５２４１８", "52418\x00", "-1", "ABCDE", "52418; DROP TABLE")
MB = 1_000_000


def _t(hours_ago: float = 1.0) -> str:
    return iso_utc(datetime.now(UTC) - timedelta(hours=hours_ago))


def nested(depth: int, kind: str = "list", leaf: Any = 1) -> Any:
    v: Any = leaf
    for _ in range(depth):
        v = [v] if kind == "list" else {"a": v}
    return v


def nested_text(depth: int, kind: str = "list") -> bytes:
    """Nesting as text: orjson itself cannot dump past 254 levels."""
    if kind == "list":
        return b"[" * depth + b"1" + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@dataclass
class HttpCase:
    path: str
    kind: str
    body: bytes
    content_type: str = "application/json"


@dataclass
class TopicCase:
    kind: str
    value: bytes | None
    key: bytes | None
    markers: list[str] = field(default_factory=list)  # each must show up in obs.rejected
    lenient: int = 0  # observations that may be dropped as stale or flagged instead of rejected


def _bad_observation(rng: random.Random, known: list[str]) -> tuple[str, Any]:
    """One invalid observation as a JSON-able object (or raw text when orjson cannot express it)."""
    sid = rng.choice(known)
    kinds = [
        "station_type", "station_unknown", "time_type", "time_garbage", "time_naive", "time_future", "time_overflow",
        "value_type", "value_range", "value_bool", "no_element", "precip_no_period", "unknown_field", "source_type",
        "not_object", "dup_key_station", "dup_key_value", "nan_token", "big_int", "utf8_invalid", "lone_surrogate",
        "nested_value",
    ]
    k = rng.choice(kinds) if rng.random() > 0.01 else rng.choice(["mb_string", "mb_station"])  # 1 MB: 1 %
    base = {"station_id": sid, "time": _t(), "tmax_c": 40.5}
    if k == "station_type":
        return k, {**base, "station_id": rng.choice([[sid], {"id": sid}, True, 52418.5, None, ""])}
    if k == "station_unknown":
        return k, {**base, "station_id": rng.choice(UNKNOWN)}
    if k == "time_type":
        return k, {**base, "time": rng.choice([1_700_000_000, [2026, 7, 1], {"t": 1}, True, None])}
    if k == "time_garbage":
        return k, {**base, "time": rng.choice(["yesterday", "2026-13-45T99:99:99Z", "", "Z" * 1000, "2026-07-01Z"])}
    if k == "time_naive":
        return k, {**base, "time": "2026-07-01T06:00:00"}
    if k == "time_future":
        return k, {**base, "time": "2100-01-01T00:00:00Z"}
    if k == "time_overflow":  # datetime edge: converting to UTC leaves year 1..9999
        return k, {**base, "time": rng.choice(["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])}
    if k == "value_type":
        return k, {**base, "tmax_c": rng.choice(["40.5", [40.5], {"v": 40.5}, "hot"])}
    if k == "value_range":
        return k, {**base, "tmax_c": rng.choice([1e308, -1e308, 400.0, -300.0, 1e18])}
    if k == "value_bool":
        return k, {**base, "tmax_c": True}
    if k == "no_element":
        return k, {"station_id": sid, "time": _t()}
    if k == "precip_no_period":
        return k, {"station_id": sid, "time": _t(), "precip_mm": 50.0}
    if k == "unknown_field":
        return k, {**base, rng.choice(["__proto__", "constructor", "tmax", "x" * 300]): 1}
    if k == "source_type":
        return k, {**base, "source": rng.choice([1, [1], {"a": 1}])}
    if k == "not_object":
        return k, rng.choice([1, "x", None, [1, 2], 3.5, True])
    if k == "dup_key_station":  # the last duplicate wins: unknown station
        return k, f'{{"station_id":"{sid}","time":"{_t()}","tmax_c":40.5,"station_id":"00000"}}'.encode()
    if k == "dup_key_value":
        return k, f'{{"station_id":"{sid}","time":"{_t()}","tmax_c":40.5,"tmax_c":"hot"}}'.encode()
    if k == "nan_token":
        tok = rng.choice(["NaN", "Infinity", "-Infinity", "nan", "1e999"])
        return k, f'{{"station_id":"{sid}","time":"{_t()}","tmax_c":{tok}}}'.encode()
    if k == "big_int":
        return k, f'{{"station_id":"{sid}","time":"{_t()}","tmax_c":{10**40}}}'.encode()
    if k == "utf8_invalid":
        return k, b'{"station_id":"' + rng.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]) + \
            b'","time":"' + _t().encode() + b'","tmax_c":40.5}'
    if k == "lone_surrogate":
        return k, f'{{"station_id":"\\ud800{sid}","time":"{_t()}","tmax_c":40.5}}'.encode()
    if k == "nested_value":
        depth = rng.choice([50, 200, 254, 255, 300, 900, 990, 999, 1000, 1010, 1023])
        inner = nested_text(depth, rng.choice(["list", "dict"]))
        return k, b'{"station_id":"' + sid.encode() + b'","time":"' + _t().encode() + b'","tmax_c":' + inner + b"}"
    if k == "mb_string":
        return k, {**base, "source": "s" * MB}  # valid otherwise, but... source is a string: see below
    return k, {**base, "station_id": "9" * MB}  # mb_station: a 1 MB unknown station id


def _as_bytes(v: Any) -> bytes:
    return v if isinstance(v, bytes) else orjson.dumps(v)


_OBS_PATH, _FC_PATH = "/api/v1/observations", "/api/v1/forecasts"
_WHOLE_BODY_KINDS = ["over_limit", "empty", "utf16", "bom", "garbage_bytes", "truncated", "nested_body",
                    "nested_body_deep", "big_list", "ws"]
_FORECAST_KINDS = ["station_type", "station_unknown", "times_missing", "times_order", "times_type",
                  "time_overflow", "lead", "values_type", "values_empty", "values_unknown", "values_bad",
                  "values_nonfinite", "unknown_field", "not_object", "nan_token", "nested",
                  "utf8_invalid", "dup_key"]
_FORECAST_HEADER_KINDS = frozenset({"station_type", "station_unknown", "times_missing", "times_order", "times_type",
                                   "time_overflow", "lead"})
_TOPIC_ITEM_KINDS = ["string", "list", "number", "unknown", "sid_type", "sid_missing", "deep", "deep",
                    "time_bad", "known_bad_value", "known_bad_time", "known_qc"]
_KNOWN_STATION_KINDS = frozenset({"known_bad_value", "known_bad_time", "known_qc"})

# Every case draws from one shared random.Random in a fixed order, so the helpers below take the generator and
# must keep the order of their draws: the cases for a seed stay the same, and a failure can be replayed.


def http_cases(n_obs: int, n_fc: int, known: list[str], seed: int = 11) -> Iterator[HttpCase]:
    """n_obs bodies for /api/v1/observations and n_fc for /api/v1/forecasts."""
    rng = random.Random(seed)
    for _ in range(n_obs):
        yield _whole_body_case(rng, known) if rng.random() < 0.02 else _observation_body_case(rng, known)
    for _ in range(n_fc):
        yield _forecast_case(rng, known)


def _whole_body_case(rng: random.Random, known: list[str]) -> HttpCase:
    """An attack on the body as a whole (size, encoding, syntax, nesting), with a random content type."""
    k = rng.choice(_WHOLE_BODY_KINDS)
    body = _whole_body(rng, k, known)
    return HttpCase(_OBS_PATH, k, body, rng.choice(["application/json", "text/plain", "application/x-evil"]))


def _whole_body(rng: random.Random, k: str, known: list[str]) -> bytes:
    if k == "over_limit":
        return b'[{"station_id":"' + b"9" * (rng.choice([1, 2, 5]) * (1 << 20)) + b'"}]'
    if k == "empty":
        return b""
    if k == "utf16":
        return orjson.dumps({"station_id": known[0], "time": _t(), "tmax_c": 40.5}).decode().encode("utf-16")
    if k == "bom":
        return b"\xef\xbb\xbf" + orjson.dumps({"station_id": "00000", "time": _t(), "tmax_c": 40.5})
    if k == "garbage_bytes":
        return rng.randbytes(rng.randint(1, 4096))
    if k == "truncated":
        return orjson.dumps([{"station_id": known[0], "time": _t(), "tmax_c": 40.5}])[:-3]
    if k == "nested_body":
        return nested_text(rng.choice([100, 500, 900, 999]), rng.choice(["list", "dict"]))
    if k == "nested_body_deep":  # orjson's own limit is 1024 levels
        return nested_text(rng.choice([1000, 1010, 1023, 1024, 5000]), rng.choice(["list", "dict"]))
    if k == "big_list":
        return orjson.dumps([{"station_id": "00000", "time": _t(), "tmax_c": 1} for _ in range(2000)])
    return b"   \n\t  "  # ws


def _observation_body_case(rng: random.Random, known: list[str]) -> HttpCase:
    """One to twenty bad observations, as a list or (for one) sometimes a bare object."""
    items = []
    kinds = []
    for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 20)):
        k, v = _bad_observation(rng, known)
        if k == "mb_string":  # a valid report with a 1 MB source would be accepted: make the station unknown
            v = {**v, "station_id": "00000"}
        kinds.append(k)
        items.append(v)
    raw = [_as_bytes(v) for v in items]
    single = len(raw) == 1 and rng.random() < 0.5  # a single object, not a list
    body = raw[0] if single else b"[" + b",".join(raw) + b"]"
    if len(body) > (1 << 20):
        body = raw[0]
    return HttpCase(_OBS_PATH, "+".join(sorted(set(kinds))), body)


def _forecast_case(rng: random.Random, known: list[str]) -> HttpCase:
    sid = rng.choice(known)
    base = {"station_id": sid, "issued_at": _t(2), "valid_from": _t(-1), "valid_to": _t(-7),
            "values": {"tmax_c": 40.5}}
    k = rng.choice(_FORECAST_KINDS) if rng.random() > 0.01 else "mb_station"
    if k in _FORECAST_HEADER_KINDS:
        body = _forecast_header_body(rng, k, base)
    elif k.startswith("values_"):
        body = _forecast_values_body(rng, k, base)
    else:
        body = _forecast_text_body(rng, k, base, sid)
    return HttpCase(_FC_PATH, k, body)


def _forecast_header_body(rng: random.Random, k: str, base: dict[str, Any]) -> bytes:
    """A bad station, issue / validity time or lead time."""
    if k == "station_type":
        return orjson.dumps({**base, "station_id": rng.choice([52418, [base["station_id"]], None, True])})
    if k == "station_unknown":
        return orjson.dumps({**base, "station_id": rng.choice(UNKNOWN)})
    if k == "times_missing":
        drop = rng.choice(["issued_at", "valid_from", "valid_to"])
        return orjson.dumps({key: v for key, v in base.items() if key != drop})
    if k == "times_order":
        return orjson.dumps({**base, "valid_to": base["valid_from"]})
    if k == "times_type":
        return orjson.dumps({**base, "valid_from": rng.choice([1, None, [1], "soon"])})
    if k == "time_overflow":
        return orjson.dumps({**base, "issued_at": rng.choice(["0001-01-01T00:00:00+05:00",
                                                              "9999-12-31T23:59:59-05:00"])})
    return orjson.dumps({**base, "lead_h": rng.choice([-1, 10_000, "3", True, None])})  # lead


def _forecast_values_body(rng: random.Random, k: str, base: dict[str, Any]) -> bytes:
    """A bad ``values`` object: wrong type, empty, unknown element, bad or non-finite number."""
    if k == "values_type":
        return orjson.dumps({**base, "values": rng.choice([[40.5], "40.5", 40.5, None])})
    if k == "values_empty":
        return orjson.dumps({**base, "values": {}})
    if k == "values_unknown":
        return orjson.dumps({**base, "values": {"tmax": 40.5}})
    if k == "values_bad":
        return orjson.dumps({**base, "values": {"tmax_c": rng.choice(["x", True, [1], 1e308, None])}})
    return orjson.dumps(base).replace(b"40.5", rng.choice([b"NaN", b"Infinity", b"-Infinity"]))  # values_nonfinite


def _forecast_text_body(rng: random.Random, k: str, base: dict[str, Any], sid: str) -> bytes:
    """A bad document shape or bad JSON text (NaN, deep nesting, 1 MB, invalid UTF-8, duplicate key)."""
    if k == "unknown_field":
        return orjson.dumps({**base, "evil": {"$where": "1"}})
    if k == "not_object":
        return orjson.dumps(rng.choice([[1, 2], ["x"], [None], [[[]]]]))
    if k == "nan_token":
        return orjson.dumps(base).replace(b'"values":{"tmax_c":40.5}', b'"values":{"tmax_c":NaN}')
    if k == "nested":
        depth = rng.choice([200, 600, 999, 1000, 1023])
        return orjson.dumps(base)[:-1] + b',"values_x":' + nested_text(depth, "dict") + b"}"
    if k == "mb_station":
        return orjson.dumps({**base, "station_id": "9" * MB})
    if k == "utf8_invalid":
        return orjson.dumps(base).replace(sid.encode(), b"\xff\xfe\xfd")
    return orjson.dumps(base)[:-1] + b',"station_id":"00000"}'  # dup_key: the last one wins


def topic_cases(n: int, known: list[str], seed: int = 23, live: tuple[str, ...] = ()) -> Iterator[TopicCase]:
    """n raw records for the ``obs`` topic (bypassing the API), each with its marker(s). Stations in ``live``
    (with a warning in force) also get far-future reports: they must not end or expire those warnings."""
    rng = random.Random(seed)
    yield from _future_reports_for_live_stations(live)
    for i in range(n - 2 * len(live)):
        yield _topic_case(rng, f"CHAOS-{i}", known)


def _future_reports_for_live_stations(live: tuple[str, ...]) -> Iterator[TopicCase]:
    """Two far-future reports per live station (the caller counts 2 per station)."""
    for sid in live:
        for t in ("2100-01-01T00:00:00Z", "2099-12-31T23:00:00+08:00"):
            obs: list[Any] = [{"station_id": sid, "time": t, "tmax_c": 20.0}]
            value = orjson.dumps({"accepted_at": 1.7e9, "observations": obs})
            yield TopicCase("future_report_live_station", value, sid.encode(), [], 1)


def _topic_case(rng: random.Random, m: str, known: list[str]) -> TopicCase:
    """One raw record marked ``m``: random bytes, a tombstone, a malformed batch, 1 MB, or bad observations."""
    r = rng.random()
    key = rng.choice([None, b"", rng.randbytes(8), known[0].encode(), b"\xff" * 300])
    if r < 0.15:
        return TopicCase("random_bytes", m.encode() + b"-" + rng.randbytes(rng.randint(0, 2000)), key, [m])
    if r < 0.18:
        return TopicCase("tombstone", None, key or b"tombstone")  # the client needs a key or a value
    if r < 0.25:
        return TopicCase("malformed_batch", _malformed_batch(rng, m), key, [m])
    if r < 0.253:
        size = rng.choice([MB, MB + 500_000])
        return TopicCase("mb_record", m.encode() + b"-" + b"x" * size, key, [m])
    return _observation_items_record(rng, m, key, known)


def _malformed_batch(rng: random.Random, m: str) -> bytes:
    """A batch whose envelope is wrong: not an object, bad ``observations`` or ``accepted_at``, bad JSON text."""
    return rng.choice([
        orjson.dumps([m, 1, 2]), orjson.dumps(m), orjson.dumps({"m": m}),
        orjson.dumps({"m": m, "observations": {"a": 1}}), orjson.dumps({"m": m, "observations": "x"}),
        orjson.dumps({"m": m, "observations": None}), orjson.dumps({"m": m, "accepted_at": "soon",
                                                                    "observations": []}),
        orjson.dumps({"m": m, "accepted_at": [1], "observations": []}),
        b'{"m":"' + m.encode() + b'","observations":[{"station_id":"52418","tmax_c":NaN}]}',
        b'{"m":"' + m.encode() + b'","observations":[' + b"\xff\xfe" + b"]}",
        b'{"m":"' + m.encode() + b'","observations":' + nested_text(rng.choice([300, 1023, 1100])) + b"}",
    ])


def _observation_items_record(rng: random.Random, m: str, key: bytes | None, known: list[str]) -> TopicCase:
    """A well-formed batch of one to six bad observations, each marked ``<m>.<j>`` unless it is a known station's
    report (those may be dropped as stale or flagged instead, so they count as lenient)."""
    obs: list[Any] = []
    markers: list[str] = []
    lenient = 0
    accepted_at: Any = rng.choice([1.7e9, "inf", "nan", 0, -1, 1e300])
    for j in range(rng.randint(1, 6)):
        mj = f"{m}.{j}"
        k = rng.choice(_TOPIC_ITEM_KINDS)
        k = k if rng.random() > 0.005 else "mb"
        if k in _KNOWN_STATION_KINDS:
            lenient += 1
            obs.append(_known_station_bad_item(rng, k, known))
        else:
            obs.append(_marked_bad_item(rng, k, mj, known))
            markers.append(mj)
    try:
        value = orjson.dumps({"accepted_at": accepted_at, "observations": obs})
    except orjson.JSONEncodeError:  # too deep for orjson: write the text by hand
        import json

        value = json.dumps({"accepted_at": accepted_at, "observations": obs}).encode()
    return TopicCase("observation_items", value, key, markers, lenient)


def _marked_bad_item(rng: random.Random, k: str, mj: str, known: list[str]) -> Any:
    """A bad observation carrying its marker ``mj`` (unknown station, bad types, deep nesting, 1 MB, bad time)."""
    if k == "string":
        return mj
    if k == "list":
        return [mj, {"station_id": known[0]}]
    if k == "number":  # a number has no room for a marker: use a one-key object elsewhere
        return {"m": mj, "station_id": 52418.0, "time": _t()}
    if k == "unknown":
        return {"m": mj, "station_id": rng.choice(UNKNOWN), "time": _t(), "tmax_c": 40.5}
    if k == "sid_type":
        return {"m": mj, "station_id": rng.choice([[1], {"a": 1}, True, None]), "time": _t()}
    if k == "sid_missing":
        return {"m": mj, "time": _t(), "tmax_c": 40.5}
    if k == "deep":
        d = rng.choice([100, 253, 255, 300, 600])
        return {"m": mj, "station_id": "00000", "time": _t(), "x": nested(d)} if rng.random() < 0.5 \
            else [mj, nested(d)]
    if k == "mb":
        return {"m": mj, "station_id": "00000", "time": _t(), "tmax_c": 1, "s": "s" * (MB // 4)}
    return {"m": mj, "station_id": "00000",  # time_bad
            "time": rng.choice([5, None, "never", "0001-01-01T00:00:00+05:00"]), "tmax_c": 40.5}


def _known_station_bad_item(rng: random.Random, k: str, known: list[str]) -> dict[str, Any]:
    """A known station with garbage values: QC or grading must reject it or at least not crash."""
    bad: dict[str, Any] = {"station_id": rng.choice(known), "time": _t(0.5)}
    if k == "known_bad_value":
        bad["tmax_c"] = rng.choice(["hot", [1], {"a": 1}, True, None, 1e308])
    elif k == "known_bad_time":
        bad.update(time=rng.choice([5, None, "never", "9999-12-31T23:59:59-05:00",
                                    "2100-01-01T00:00:00Z"]), tmax_c=20.0)
    else:  # known_qc
        bad.update(tmax_c=20.0, rh_pct=rng.choice([-5, 250, "x"]), wind_ms=rng.choice([-1, 1e9]))
    return bad
