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
from typing import Any

import numpy as np

from ingest.validate import (
    _ALLOWED,
    GROSS_LIMITS,
    MAX_FUTURE,
    ObservationError,
    format_time,
    parse_time,
    validate_observation,
)
from warning.records import OBSERVATION_ELEMENTS

ELEMENTS: tuple[str, ...] = tuple(OBSERVATION_ELEMENTS)
_NUMBER = (float, int, type(None))
_ALLOWED_KEYS = frozenset(_ALLOWED)


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
    """Validate ``batch`` column-wise. Returns the valid rows as columns and (row, reason) for the rejected ones."""
    n = len(batch)
    now = now or datetime.now(UTC)
    suspect = np.zeros(n, dtype=bool)
    is_dict = [type(o) is dict for o in batch]
    rows = batch if all(is_dict) else [o if ok else {} for o, ok in zip(batch, is_dict, strict=True)]
    suspect |= ~np.array(is_dict, dtype=bool)
    keys: set[str] = set().union(*rows)  # one pass; the per-row subset test costs 8x more
    if not keys <= _ALLOWED_KEYS:
        for i, r in enumerate(rows):
            if not r.keys() <= _ALLOWED_KEYS:
                suspect[i] = True
    sids = [r.get("station_id") for r in rows]
    for i, s in enumerate(sids):
        if type(s) is not str or (known_station is not None and not known_station(s)):
            suspect[i] = True
    raw_times = [r.get("time") for r in rows]
    parsed: dict[str, tuple[str, float] | str] = {}
    for s in set(raw_times):
        if type(s) is str:
            parsed[s] = _time(s, now)
    times: list[str] = []
    t = np.full(n, np.nan)
    for i, s in enumerate(raw_times):
        p = parsed.get(s) if type(s) is str else None  # type: ignore[arg-type]
        if type(p) is tuple:
            times.append(p[0])
            t[i] = p[1]
        else:
            times.append("")
            suspect[i] = True
    values: dict[str, np.ndarray] = {}
    n_present = np.zeros(n, dtype=np.int64)
    for e in ELEMENTS:
        if e not in keys:
            values[e] = np.full(n, np.nan)
            continue
        col = [r.get(e) for r in rows]
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
    if "precip_mm" in keys:
        suspect |= ~np.isnan(values["precip_mm"]) & np.isnan(values["precip_period_h"])
    suspect |= n_present == 0
    if "source" in keys:
        for i, s in enumerate(r.get("source") for r in rows):
            if s is not None and type(s) is not str:
                suspect[i] = True
    rejected: list[tuple[int, str]] = []
    keep = ~suspect
    station_ids: list[str] = [s if type(s) is str else "" for s in sids]
    for i in np.flatnonzero(suspect).tolist():
        try:
            obs = validate_observation(batch[i], known_station=known_station, now=now)
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
