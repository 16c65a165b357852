"""A batch of observations as columns: the validated form the worker's hot path reads.

``observation_columns`` checks a decoded batch (a list of whatever JSON arrived) with numpy over whole columns
and keeps per-record Python to what cannot be vectorised (key sets, distinct time strings). A record that any
column check finds suspect goes through :func:`ingest.validate.validate_observation`, the one definition of what
is valid, so the error text a producer sees is the same on every path and a record the fast checks were too
strict about is still accepted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import orjson

from ingest.validate import (
    _ALLOWED,
    GROSS_LIMITS,
    MAX_FUTURE,
    ObservationError,
    format_time,
    parse_time,
    validate_observation,
)
from warning.shared.records import ACTUAL, OBSERVATION_ELEMENTS, STATUSES

ELEMENTS: tuple[str, ...] = tuple(OBSERVATION_ELEMENTS)
_NUMBER = (float, int, type(None))
_ALLOWED_KEYS = frozenset(_ALLOWED)
_COLUMN_KEYS = frozenset({"station_id", "time", "source", *ELEMENTS})  # what the checks read ("qc" is not)
_FIELD_ORDER = ("station_id", "time", *ELEMENTS, "source", "qc")
_FIELD_SET = frozenset(_FIELD_ORDER)


@dataclass(slots=True)
class ObservationColumns:
    """Valid observations as columns. ``rows`` are the positions in the original batch (arrival order kept),
    ``t`` epoch seconds (whole seconds, as in the normalised time strings), ``values[element]`` float64 with
    NaN where the element was not reported."""

    rows: np.ndarray
    station_ids: list[str]
    times: list[str]
    t: np.ndarray
    values: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.station_ids)

    def take(self, keep: np.ndarray) -> ObservationColumns:
        """The rows where ``keep`` (bool mask) holds."""
        idx = np.flatnonzero(keep)
        pick = idx.tolist()
        return ObservationColumns(self.rows[idx], [self.station_ids[i] for i in pick], [self.times[i] for i in pick],
                                  self.t[idx], {e: v[idx] for e, v in self.values.items()})

    def record(self, i: int) -> dict[str, Any]:
        """Row ``i`` as an Observation dict (for dead letters and the per-record fallback)."""
        out: dict[str, Any] = {"station_id": self.station_ids[i], "time": self.times[i]}
        for e, v in self.values.items():
            if v[i] == v[i]:
                out[e] = float(v[i])
        return out


def _floats(col: list[Any]) -> np.ndarray | None:
    """float64 column (None -> NaN), or None when a value cannot be one (e.g. an integer beyond float range)."""
    try:
        return np.array(col, dtype=float)
    except (OverflowError, TypeError, ValueError):
        return None


def _time(value: str, now: datetime) -> tuple[str, float] | str:
    """(normalised time, epoch seconds) or the error text."""
    try:
        t = parse_time(value)
    except ObservationError as exc:
        return str(exc)
    if t > now + MAX_FUTURE:
        return f"time: {format_time(t)} is in the future"
    norm = format_time(t)
    return norm, float(math.floor(t.timestamp()))


def observation_columns(batch: Sequence[Any], *, known_station: Callable[[str], bool] | None = None,
                        now: datetime | None = None) -> tuple[ObservationColumns, list[tuple[int, str]]]:
    """Validate ``batch`` (rows: a list of whatever JSON arrived) column-wise. Returns the valid rows as columns
    and (row, reason) for the rejected ones."""
    n = len(batch)
    suspect = np.zeros(n, dtype=bool)
    is_dict = [type(o) is dict for o in batch]
    rows = batch if all(is_dict) else [o if ok else {} for o, ok in zip(batch, is_dict, strict=True)]
    suspect |= ~np.array(is_dict, dtype=bool)
    keys: set[str] = set().union(*rows)  # one pass; the per-row subset test costs 8x more
    if not keys <= _ALLOWED_KEYS:
        for i, r in enumerate(rows):
            if not r.keys() <= _ALLOWED_KEYS:
                suspect[i] = True
    lists = {k: [r.get(k) for r in rows] for k in keys & _COLUMN_KEYS}
    return _validated(lists, n, suspect, batch.__getitem__, known_station, now or datetime.now(UTC))


def column_observations(columns: dict[str, list[Any]], *, known_station: Callable[[str], bool] | None = None,
                        now: datetime | None = None) -> tuple[ObservationColumns, list[tuple[int, str]]]:
    """``observation_columns`` for a batch in column form: {field: [value per row]} (lists of one length, null
    where a row has no value; see :func:`decode_batch`). The same checks, results and messages as for rows."""
    n = len(next(iter(columns.values()), []))
    suspect = np.zeros(n, dtype=bool)
    if not columns.keys() <= _ALLOWED_KEYS:
        suspect[:] = True  # every row carries the unknown field: the validator names it per row
    lists = {k: v for k, v in columns.items() if k in _COLUMN_KEYS}
    return _validated(lists, n, suspect, partial(column_row, columns), known_station, now or datetime.now(UTC))


def column_row(columns: dict[str, list[Any]], i: int) -> dict[str, Any]:
    """Row ``i`` of a batch in column form, as the row form would carry it (no nulls)."""
    return {k: v[i] for k, v in columns.items() if v[i] is not None}


def _validated(lists: dict[str, list[Any]], n: int, suspect: np.ndarray, record: Callable[[int], Any],
               known_station: Callable[[str], bool] | None, now: datetime
               ) -> tuple[ObservationColumns, list[tuple[int, str]]]:
    """The column checks shared by both forms; ``record(i)`` is row i as received (for the validator)."""
    none = [None] * n
    sids = lists.get("station_id", none)
    if set(map(type, sids)) != {str} or (known_station is not None and not all(map(known_station, sids))):
        for i, s in enumerate(sids):
            if type(s) is not str or (known_station is not None and not known_station(s)):
                suspect[i] = True
    times, t = _times(lists.get("time", none), n, suspect, now)
    values: dict[str, np.ndarray] = {}
    n_present = np.zeros(n, dtype=np.int64)
    for e in ELEMENTS:
        col = lists.get(e)
        if col is None:
            values[e] = np.full(n, np.nan)
            continue
        types = set(map(type, col))
        arr = _floats(col) if types <= {float, int, type(None)} else None
        if arr is None:  # strings, bools, objects: those rows go to the validator for its message
            bad = [type(v) not in _NUMBER or (type(v) is int and abs(v) > 1e300) for v in col]
            suspect |= np.array(bad, dtype=bool)
            arr = np.array([np.nan if b else v for v, b in zip(col, bad, strict=True)], dtype=float)
        lo, hi = GROSS_LIMITS[e]
        present = ~np.isnan(arr)
        with np.errstate(invalid="ignore"):
            suspect |= present & ~((arr >= lo) & (arr <= hi))  # inf and out of range
        n_present += present
        values[e] = arr
    if "precip_mm" in lists:
        suspect |= ~np.isnan(values["precip_mm"]) & np.isnan(values["precip_period_h"])
    suspect |= n_present == 0
    sources = lists.get("source")
    if sources is not None and not set(map(type, sources)) <= {str, type(None)}:
        for i, s in enumerate(sources):
            if s is not None and type(s) is not str:
                suspect[i] = True
    rejected: list[tuple[int, str]] = []
    keep = ~suspect
    station_ids: list[str] = [s if type(s) is str else "" for s in sids] if suspect.any() else list(sids)
    for i in np.flatnonzero(suspect).tolist():
        try:
            obs = validate_observation(record(i), known_station=known_station, now=now)
        except ObservationError as exc:
            rejected.append((i, str(exc)))
            continue
        except Exception as exc:  # hostile input must never stop the batch
            rejected.append((i, f"observation: {type(exc).__name__}: {str(exc)[:200]}"))
            continue
        keep[i] = True  # the fast checks were too strict (e.g. an integer station id): take the validated form
        station_ids[i] = obs.station_id
        times[i] = obs.time
        t[i] = float(math.floor(parse_time(obs.time).timestamp()))
        for e in ELEMENTS:
            v = getattr(obs, e)
            values[e][i] = np.nan if v is None else float(v)
    cols = ObservationColumns(np.arange(n), station_ids, times, t, values)
    return (cols if keep.all() else cols.take(keep)), rejected


def _times(raw: list[Any], n: int, suspect: np.ndarray, now: datetime) -> tuple[list[str], np.ndarray]:
    """(normalised time per row, epoch seconds per row); rows whose time is not a valid one are marked suspect.
    A batch holds few distinct times: each is parsed once."""
    if set(map(type, raw)) == {str}:
        parsed = {s: _time(s, now) for s in set(raw)}
        if all(type(p) is tuple for p in parsed.values()):
            norm = {s: p[0] for s, p in parsed.items()}
            epoch = {s: p[1] for s, p in parsed.items()}
            return list(map(norm.__getitem__, raw)), np.fromiter(map(epoch.__getitem__, raw), dtype=float, count=n)
    times: list[str] = []
    t = np.full(n, np.nan)
    cache: dict[str, tuple[str, float] | str] = {}
    for i, s in enumerate(raw):
        p = (cache[s] if s in cache else cache.setdefault(s, _time(s, now))) if type(s) is str else None
        if type(p) is tuple:
            times.append(p[0])
            t[i] = p[1]
        else:  # not a string (a list, a number, null) or not a valid time
            times.append("")
            suspect[i] = True
    return times, t


# ---- the obs topic's batch message ---------------------------------------------------------------------------

class BatchError(ValueError):
    """A batch message that is not one (its envelope): the whole raw record goes to obs.rejected."""


@dataclass(slots=True)
class ObservationBatch:
    """A decoded ``obs`` message: its valid rows as columns, the rejected rows with reasons, ``record(i)`` (row i
    as received, for dead letters), ``accepted_at`` (when the API or ingest took it; None if not given) and
    ``status`` (actual, exercise or test: the whole batch's)."""

    columns: ObservationColumns
    rejected: list[tuple[int, str]]
    record: Callable[[int], Any]
    accepted_at: float | None
    status: str = ACTUAL


_ENVELOPE = frozenset({"accepted_at", "status", "observations", "columns"})


def envelope_status(msg: dict[str, Any]) -> str:
    """The batch's status (absent: actual), or BatchError: a batch is live or a drill as a whole."""
    status = msg.get("status", ACTUAL)
    if status not in STATUSES:
        raise BatchError(f"malformed (status: {str(status)[:20]!r} is not one of {', '.join(STATUSES)})")
    return str(status)


def decode_batch(value: bytes | None, *, known_station: Callable[[str], bool] | None = None,
                 now: datetime | None = None) -> ObservationBatch:
    """Decode and validate one ``obs`` message. Two forms (docs/ARCHITECTURE.md, "Observation batches"):

    * rows: ``{"accepted_at": s, "observations": [Observation, ...]}`` (any producer);
    * columns: ``{"accepted_at": s, "columns": {"station_id": [...], "time": [...], element: [...], ...}}``, every
      list as long as the others, null where a row has no value (what ``encode_batch`` writes: 2.5x smaller and
      3x cheaper to decode and check than rows).

    Raises BatchError for a malformed envelope (not JSON, not an object, an unknown top-level field, both or
    neither form, columns of different lengths); a bad row only rejects that row.
    """
    if not isinstance(value, bytes | bytearray | memoryview) or not value:
        raise BatchError("empty record")
    try:
        msg = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BatchError(f"malformed ({exc})") from None
    if type(msg) is not dict:
        raise BatchError(f"malformed (expected an object, got {type(msg).__name__})")
    if not msg.keys() <= _ENVELOPE:  # the envelope is a schema too
        raise BatchError(f"malformed (unknown field {sorted(set(msg) - _ENVELOPE)[0][:40]!r})")
    try:
        accepted_at = float(msg["accepted_at"]) if "accepted_at" in msg else None
    except (TypeError, ValueError) as exc:
        raise BatchError(f"malformed (accepted_at: {exc})") from None
    status = envelope_status(msg)
    if ("observations" in msg) == ("columns" in msg):
        raise BatchError("malformed (expected one of 'observations' or 'columns')")
    if "observations" in msg:
        rows = msg["observations"]
        if type(rows) is not list:
            raise BatchError("malformed (observations is not a list)")
        cols, rejected = observation_columns(rows, known_station=known_station, now=now)
        return ObservationBatch(cols, rejected, rows.__getitem__, accepted_at, status)
    columns = _column_lists(msg["columns"])
    cols, rejected = column_observations(columns, known_station=known_station, now=now)
    return ObservationBatch(cols, rejected, partial(column_row, columns), accepted_at, status)


def _column_lists(columns: Any) -> dict[str, list[Any]]:
    """``columns`` if it is the column form's body (an object of lists of one length), else BatchError."""
    if type(columns) is not dict or not all(type(v) is list for v in columns.values()):
        raise BatchError("malformed (columns is not an object of lists)")
    if len({len(v) for v in columns.values()}) > 1:
        raise BatchError("malformed (columns of different lengths)")
    return columns


def encode_batch(batch: Sequence[dict[str, Any]], accepted_at: float, status: str = ACTUAL) -> bytes:
    """A batch of Observation dicts as an ``obs`` message in column form (the fields any row has); ``status``
    is written only when it is not actual (the envelope every earlier reader knows)."""
    present: set[str] = set().union(*batch)
    keys = [k for k in _FIELD_ORDER if k in present] + sorted(present - _FIELD_SET)
    msg: dict[str, Any] = {"accepted_at": accepted_at}
    if status != ACTUAL:
        msg["status"] = status
    msg["columns"] = {k: [o.get(k) for o in batch] for k in keys}
    return orjson.dumps(msg)


def batch_rows(msg: Any) -> list[Any]:
    """The rows of a decoded ``obs`` message in either form (tools and tests that read the topic). Raises
    BatchError when it is neither."""
    if isinstance(msg, dict) and "columns" in msg:
        columns = _column_lists(msg["columns"])
        return [column_row(columns, i) for i in range(len(next(iter(columns.values()), [])))]
    rows = msg.get("observations") if isinstance(msg, dict) else None
    if type(rows) is not list:
        raise BatchError("neither observations nor columns")
    return rows
