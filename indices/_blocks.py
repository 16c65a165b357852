"""Shared building blocks for the index kernels.

Everything here works along the **last axis** (time) and is vectorised over any leading dimensions
(stations, grid cells). NaN means *missing* throughout: it is never silently treated as zero.

* :func:`as_array` / :func:`wrap_like` -- numpy or xarray in, the same kind out (DataArrays get ``units``,
  ``long_name`` and ``references`` attributes).
* :func:`compare` -- threshold comparison by operator name, NaN-aware.
* :func:`run_length_ending` / :func:`spell_membership` -- consecutive-run bookkeeping.
* :func:`rolling_sum` / :func:`trailing_weighted_sum` -- trailing windows with NaN propagation.
* :data:`SIGNAL_LEVELS` / :func:`signal_levels` -- the colour -> level-code encoding of signal kernels.

No warning thresholds live here or anywhere in ``indices``: signal kernels take them as parameters, which callers
build from the warning rules (``warning/data/rules.toml`` via ``warning.rule_params``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt
import xarray as xr

FloatArray: TypeAlias = npt.NDArray[np.float64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
#: What the public functions accept: anything array-like or an xarray DataArray.
ArrayLike: TypeAlias = npt.ArrayLike | xr.DataArray
#: What the public functions return: a float ndarray, or a DataArray when a DataArray came in.
Data: TypeAlias = FloatArray | xr.DataArray
T = TypeVar("T")

#: Comparison operators accepted wherever a threshold test is configurable.
OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
}


#: Level codes of the signal kernels' output (0 = none): the ordering of ``warning.shared.records.WarningLevel``
#: (CMA Order No. 16 (2007): 蓝 Ⅳ < 黄 Ⅲ < 橙 Ⅱ < 红 Ⅰ). An encoding, not a threshold.
SIGNAL_LEVELS: dict[str, int] = {"blue": 1, "yellow": 2, "orange": 3, "red": 4}


def signal_levels(criteria: Mapping[str, T]) -> list[tuple[float, T]]:
    """``criteria`` (colour -> the kernel's threshold(s) for that level) as (level code, threshold) pairs, lowest
    level first, so that applying them in order leaves the highest level met. Raises ``ValueError`` for an
    unknown colour or no criteria."""
    if not criteria:
        raise ValueError("criteria: at least one level is needed")
    unknown = sorted(set(criteria) - set(SIGNAL_LEVELS))
    if unknown:
        raise ValueError(f"criteria: unknown level {unknown[0]!r}; levels are {', '.join(SIGNAL_LEVELS)}")
    return sorted(((float(SIGNAL_LEVELS[c]), v) for c, v in criteria.items()), key=lambda lv: lv[0])


def as_array(x: ArrayLike, name: str = "input") -> FloatArray:
    """Return ``x`` as a float64 ndarray (a DataArray's values; a copy only when needed).

    Raises ``ValueError`` for non-numeric input.
    """
    raw = x.values if isinstance(x, xr.DataArray) else x
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected numeric data, got {type(raw).__name__}") from exc
    return arr


def first_dataarray(*xs: Any) -> xr.DataArray | None:
    """The first argument that is a DataArray (the template for the output), else None."""
    for x in xs:
        if isinstance(x, xr.DataArray):
            return x
    return None


def wrap_like(
    result: npt.NDArray[Any],
    like: xr.DataArray | None,
    *,
    units: str,
    long_name: str,
    references: str,
    name: str | None = None,
) -> Any:
    """Wrap ``result`` as a DataArray shaped like ``like`` (same dims and coords) or return it unchanged.

    If ``result`` does not have ``like``'s shape (e.g. broadcasting with a second DataArray), the dims are
    taken from ``like`` when the number of dimensions matches, otherwise a plain ndarray is returned.
    """
    if like is None:
        return result
    attrs = {"units": units, "long_name": long_name, "references": references}
    if result.shape == like.shape:
        out = xr.DataArray(result, dims=like.dims, coords=like.coords, attrs=attrs, name=name)
    elif result.ndim == like.ndim:
        coords = {k: v for k, v in like.coords.items() if set(v.dims) <= set(like.dims)
                  and all(v.sizes[d] == result.shape[like.dims.index(d)] for d in v.dims)}
        out = xr.DataArray(result, dims=like.dims, coords=coords, attrs=attrs, name=name)
    else:
        out = xr.DataArray(result, attrs=attrs, name=name)
    return out


def broadcast_arrays(*xs: FloatArray, names: tuple[str, ...] = ()) -> list[FloatArray]:
    """Broadcast ndarrays against each other, raising a clear ``ValueError`` on a shape mismatch."""
    try:
        return [np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(*xs)]
    except ValueError as exc:
        shapes = ", ".join(f"{n}={x.shape}" for n, x in zip(names or [""] * len(xs), xs, strict=False))
        raise ValueError(f"input shapes do not broadcast: {shapes}") from exc


def require_time_axis(x: FloatArray, name: str, min_len: int = 1) -> None:
    """Raise ``ValueError`` unless ``x`` has a last (time) axis of at least ``min_len`` steps."""
    if x.ndim == 0:
        raise ValueError(f"{name}: needs a time axis (last axis); got a scalar")
    if x.shape[-1] < min_len:
        raise ValueError(f"{name}: time axis has {x.shape[-1]} steps, need at least {min_len}")


def compare(x: FloatArray, threshold: float | FloatArray, op: str) -> BoolArray:
    """``x <op> threshold`` with ``op`` in :data:`OPERATORS`; NaN compares as False."""
    try:
        fn = OPERATORS[op]
    except KeyError as exc:
        raise ValueError(f"op must be one of {sorted(OPERATORS)}, got {op!r}") from exc
    with np.errstate(invalid="ignore"):
        return np.asarray(fn(x, threshold), dtype=bool)


def run_length_ending(mask: BoolArray) -> npt.NDArray[np.int64]:
    """Length of the run of consecutive True values ending at each position (0 where False), last axis.

    Vectorised: ``t - (index of the last False at or before t)``.
    """
    mask = np.asarray(mask, dtype=bool)
    n = mask.shape[-1]
    idx = np.broadcast_to(np.arange(n, dtype=np.int64), mask.shape)
    last_false = np.where(mask, -1, idx)
    last_false = np.maximum.accumulate(last_false, axis=-1)
    return np.asarray(idx - last_false, dtype=np.int64)


def spell_membership(mask: BoolArray, min_len: int) -> BoolArray:
    """True at every position that belongs to a run of >= ``min_len`` consecutive True values (last axis)."""
    if min_len < 1:
        raise ValueError(f"min_len must be >= 1, got {min_len}")
    mask = np.asarray(mask, dtype=bool)
    ending = run_length_ending(mask)
    starting = run_length_ending(mask[..., ::-1])[..., ::-1]
    total = ending + starting - 1
    return np.asarray(mask & (total >= min_len), dtype=bool)


def rolling_sum(x: FloatArray, window: int) -> FloatArray:
    """Trailing sum over ``window`` steps along the last axis: out[t] = sum(x[t-window+1 .. t]).

    The first ``window - 1`` values are NaN, and any NaN inside the window makes the sum NaN (missing is
    not zero). A window whose values are all exactly 0 sums to exactly 0.0 (no cumulative-sum round-off),
    which matters for the zero-probability mass of SPI.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    x = np.asarray(x, dtype=np.float64)
    if window == 1:
        return x.copy()
    n = x.shape[-1]
    out = np.full(x.shape, np.nan)
    if n < window:
        return out
    nan = np.isnan(x)
    filled = np.where(nan, 0.0, x)
    pad = [(0, 0)] * (x.ndim - 1) + [(1, 0)]
    csum = np.pad(np.cumsum(filled, axis=-1), pad)
    cnan = np.pad(np.cumsum(nan, axis=-1), pad)
    cnz = np.pad(np.cumsum(filled != 0.0, axis=-1), pad)
    s = csum[..., window:] - csum[..., :-window]
    n_nan = cnan[..., window:] - cnan[..., :-window]
    n_nz = cnz[..., window:] - cnz[..., :-window]
    s = np.where(n_nz == 0, 0.0, s)
    out[..., window - 1:] = np.where(n_nan > 0, np.nan, s)
    return out


def trailing_weighted_sum(x: FloatArray, weights: FloatArray) -> FloatArray:
    """out[t] = sum_i weights[i] * x[t - i], i = 0..len(weights)-1 (weights[0] applies to the current step).

    The first ``len(weights) - 1`` values are NaN; any NaN in the window gives NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    k = w.size
    out = np.full(x.shape, np.nan)
    if x.shape[-1] < k:
        return out
    win = np.lib.stride_tricks.sliding_window_view(x, k, axis=-1)  # (..., n-k+1, k), oldest first
    out[..., k - 1:] = win @ w[::-1]
    return out


#: Name of the time dimension that time-series kernels move to the last axis of DataArray inputs.
TIME_DIM = "time"


def harmonize(*xs: Any) -> list[Any]:
    """Make DataArray inputs safe for positional numpy broadcasting.

    If two or more arguments are DataArrays, they are aligned with ``join="exact"`` (mismatched coordinates
    raise ``ValueError``), broadcast against each other and transposed to a common dimension order (that of
    the first DataArray, with its ``time`` dim last if present). Non-DataArray arguments pass through.
    A single DataArray only gets its ``time`` dim moved last. Attributes (units) are kept.
    """
    das = [x for x in xs if isinstance(x, xr.DataArray)]
    if not das:
        return list(xs)
    if len(das) > 1:
        try:
            aligned = xr.align(*das, join="exact")
        except ValueError as exc:
            raise ValueError(f"DataArray inputs are not aligned: {exc}") from exc
        bc = xr.broadcast(*aligned)
        order = list(bc[0].dims)
        if TIME_DIM in order:
            order = [d for d in order if d != TIME_DIM] + [TIME_DIM]
        ordered = [b.transpose(*order) for b in bc]
        for b, d in zip(ordered, das, strict=True):
            b.attrs = dict(d.attrs)
        it = iter(ordered)
        return [next(it) if isinstance(x, xr.DataArray) else x for x in xs]
    return [time_last(x) if isinstance(x, xr.DataArray) else x for x in xs]


def time_last(x: Any) -> Any:
    """A DataArray with its ``time`` dimension moved to the last axis (other inputs unchanged)."""
    if isinstance(x, xr.DataArray) and TIME_DIM in x.dims and x.dims[-1] != TIME_DIM:
        return x.transpose(..., TIME_DIM)
    return x
