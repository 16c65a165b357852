"""Unit handling and plausibility checks for the index kernels.

The kernels work in fixed units (degC, %, m s-1, mm, m). A DataArray input whose ``units`` attribute names
another known unit is converted; an unknown unit raises ``ValueError``. Plain numpy input is assumed to be
in the documented unit and is range-checked, so that Kelvin passed as Celsius (or a humidity fraction
declared as a fraction) fails loudly instead of producing a silently wrong number.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from indices._blocks import ArrayLike, FloatArray, as_array

KELVIN_OFFSET = 273.15
#: m s-1 per knot and per km h-1
KNOT_MS = 0.514444
KMH_MS = 1.0 / 3.6

_IDENT: Callable[[FloatArray], FloatArray] = lambda v: v  # noqa: E731

#: target unit -> {accepted spelling: converter to the target unit}
CONVERSIONS: dict[str, dict[str, Callable[[FloatArray], FloatArray]]] = {
    "degC": {
        **dict.fromkeys(("degC", "°C", "C", "celsius", "degree_Celsius", "deg_C", "degrees_C"), _IDENT),
        **dict.fromkeys(("K", "kelvin", "degK"), lambda v: v - KELVIN_OFFSET),
        **dict.fromkeys(("degF", "°F", "F", "fahrenheit", "degree_Fahrenheit"),
                        lambda v: (v - 32.0) * 5.0 / 9.0),
    },
    "%": {
        **dict.fromkeys(("%", "percent", "pct"), _IDENT),
        **dict.fromkeys(("1", "", "fraction", "dimensionless", "0-1"), lambda v: v * 100.0),
    },
    "m s-1": {
        **dict.fromkeys(("m s-1", "m/s", "m s**-1", "meter / second", "m.s-1"), _IDENT),
        **dict.fromkeys(("km h-1", "km/h", "kph"), lambda v: v * KMH_MS),
        **dict.fromkeys(("knot", "knots", "kt", "kn"), lambda v: v * KNOT_MS),
    },
    "mm": {
        **dict.fromkeys(("mm", "kg m-2", "millimeter", "millimetre"), _IDENT),
        "cm": lambda v: v * 10.0,
        "m": lambda v: v * 1000.0,
    },
    "m": {
        **dict.fromkeys(("m", "meter", "metre"), _IDENT),
        "km": lambda v: v * 1000.0,
    },
    "degrees_north": {
        **dict.fromkeys(("degrees_north", "degree_north", "deg", "degrees", "°", "degree_N", "degN"), _IDENT),
    },
}

#: Plausible physical ranges (in the kernel unit) for numpy input that carries no unit attribute.
#: Values outside raise ValueError; they usually mean a wrong unit (e.g. Kelvin given as degC).
PLAUSIBLE_RANGE: dict[str, tuple[float, float]] = {
    "temperature": (-95.0, 65.0),        # degC; world records are about -89 .. +57
    "ground_temperature": (-95.0, 95.0),  # degC; bare ground surface can exceed 70 degC
    "relative_humidity": (0.0, 105.0),   # %; small supersaturation reports tolerated
    "wind_speed": (0.0, 120.0),          # m s-1
    "precipitation": (0.0, 10000.0),     # mm per report / period (record month ~9300 mm, day ~1825 mm)
    "visibility": (0.0, 1.0e6),          # m
    "latitude": (-90.0, 90.0),           # degrees
    "pet": (-50.0, 2000.0),              # mm per period
}


def convert(x: ArrayLike, target: str, name: str) -> FloatArray:
    """Return ``x`` as a float array in ``target`` units.

    A DataArray's ``units`` attribute (if present) is converted via :data:`CONVERSIONS`; an unknown unit
    raises ``ValueError``. Anything else is assumed to already be in ``target``.
    """
    arr = as_array(x, name)
    if isinstance(x, xr.DataArray) and "units" in x.attrs:
        u = str(x.attrs["units"]).strip()
        table = CONVERSIONS[target]
        if u not in table:
            raise ValueError(f"{name}: unsupported units {u!r}; expected one of {sorted(table)}")
        arr = np.asarray(table[u](arr), dtype=np.float64)
    return arr


def check_range(arr: FloatArray, kind: str, name: str) -> None:
    """Raise ``ValueError`` if ``arr`` holds +-inf or a finite value outside :data:`PLAUSIBLE_RANGE`[kind]."""
    if arr.size == 0:
        return
    lo, hi = PLAUSIBLE_RANGE[kind]
    flat = arr.ravel()
    vmin = float(np.fmin.reduce(flat))  # NaN-ignoring, no warning; NaN only if all values are NaN
    vmax = float(np.fmax.reduce(flat))
    if np.isinf(vmin) or np.isinf(vmax):
        raise ValueError(f"{name}: contains infinite values (use NaN for missing)")
    if vmin < lo or vmax > hi:
        raise ValueError(
            f"{name}: values {vmin:.4g}..{vmax:.4g} outside the plausible {kind} range [{lo}, {hi}] -- wrong units?"
        )


#: Relative humidity given as a fraction is the commonest silent unit error: if every finite value of a
#: numpy RH input (no units attribute) is in (0, RH_FRACTION_GUARD] it is rejected (real RH <= 1 % everywhere
#: in an array is practically impossible). Declare ``units="1"`` on a DataArray to pass fractions.
RH_FRACTION_GUARD = 1.0


def quantity(x: ArrayLike, target: str, kind: str, name: str) -> FloatArray:
    """:func:`convert` to ``target`` then :func:`check_range` for ``kind`` (plus the RH fraction guard)."""
    arr = convert(x, target, name)
    check_range(arr, kind, name)
    if kind == "relative_humidity" and arr.size and not (isinstance(x, xr.DataArray) and "units" in x.attrs):
        vmax = float(np.fmax.reduce(arr.ravel()))
        if 0.0 < vmax <= RH_FRACTION_GUARD:
            raise ValueError(f"{name}: all values <= {RH_FRACTION_GUARD} -- a fraction? pass percent (0-100) "
                             "or a DataArray with units='1'")
    return arr


def celsius_to_fahrenheit(t_c: FloatArray) -> FloatArray:
    """degF = degC * 9/5 + 32."""
    return np.asarray(t_c * 1.8 + 32.0, dtype=np.float64)


def fahrenheit_to_celsius(t_f: FloatArray) -> FloatArray:
    """degC = (degF - 32) * 5/9."""
    return np.asarray((t_f - 32.0) / 1.8, dtype=np.float64)
