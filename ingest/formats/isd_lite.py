"""NOAA ISD-Lite hourly files (one station-year per file, e.g. ``545110-99999-2017[.gz]``).

Layout per the NCEI "Integrated Surface Data - Lite Format Documentation" (isd-lite-format.txt, 2006):

====  ===========  ==================================================  ============
pos   field        content                                             scaling
====  ===========  ==================================================  ============
1-4   year         observation year                                    -
6-7   month                                                            -
9-10  day                                                              -
12-13 hour         UTC                                                 -
14-19 air temp     degC                                                x 10
20-25 dew point    degC                                                x 10
26-31 SLP          sea-level pressure, hPa                             x 10
32-37 wind dir     degrees (calm = 0)                                  x 1
38-43 wind speed   m/s                                                 x 10
44-49 sky cover    total coverage code                                 -
50-55 precip 1 h   liquid precipitation, one-hour duration, mm         x 10
56-61 precip 6 h   liquid precipitation, six-hour duration, mm         x 10
====  ===========  ==================================================  ============

Missing = ``-9999``; trace precipitation = ``-1``. Fields are split on whitespace, which reads the
fixed-width layout and the whitespace-collapsed copies found in the wild alike (every value is at most
5 characters, so fixed-width fields are always blank-separated).

Mapping to Observation: air_temp_c, dewpoint_c, rh_pct (computed from the dew point, Magnus /
Alduchov-Eskridge 1996), pressure_hpa (= sea-level pressure), wind_ms; wind direction and sky cover
have no Observation field and are dropped. Precipitation: the 1-hour amount when reported
(precip_period_h = 1) and otherwise the 6-hour amount (precip_period_h = 6); when both are reported the
6-hour amount is kept as the note ``qc["precip_6h_mm"]``. Trace (-1) -> 0.0 mm with
``qc["precip_mm"] = "trace"``. The file carries no station id: it comes from the file name
(``USAF-WBAN``) or ``as_station``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator

from ingest.formats.base import (
    ParsedRow,
    PathLike,
    RowError,
    StationMapper,
    StationResolver,
    add_qc,
    clip,
    decoded_lines,
    isd_id_from_filename,
    iter_lines,
    open_binary,
    rh_from_dewpoint,
)
from warning.shared.records import Observation

__all__ = ["MISSING", "TRACE", "read_isd_lite"]

MISSING = -9999
TRACE = -1

_LINE_RE = re.compile(r"\s*(\d{4})\s+(\d{1,2})\s+(\d{1,2})\s+(\d{1,2})" + r"\s+(-?\d{1,6})" * 8 + r"\s*")


def read_isd_lite(
    path: PathLike,
    *,
    station_resolver: StationResolver | None = None,
    as_station: str | None = None,
    source: str = "isd-lite",
) -> Iterator[ParsedRow]:
    """Stream an ISD-Lite file as Observations (hourly, UTC) and RowErrors.

    The station is the file name's ``USAF-WBAN`` mapped by ``station_resolver`` (default
    :func:`ingest.formats.wmo_from_id`: USAF = WMO x 10), or ``as_station``. Raises
    :class:`ingest.formats.UnreadableFileError` if the file cannot be opened.
    """
    mapper = StationMapper(station_resolver, as_station)
    fh = open_binary(path)
    return _rows(iter_lines(fh), mapper, isd_id_from_filename(path), source, os.fspath(path))


def _rows(
    lines: Iterator[tuple[int, bytes, str | None]],
    mapper: StationMapper,
    raw_id: str | None,
    source: str,
    path: str,
) -> Iterator[ParsedRow]:
    station, station_problem = mapper(raw_id)
    prev_time: str | None = None
    for item in decoded_lines(lines, "ascii"):
        if isinstance(item, RowError):
            yield item
            continue
        line_no, raw, text = item
        if not text.strip():
            continue
        m = _LINE_RE.fullmatch(text)
        if m is None:
            yield RowError(line_no, _explain(text), clip(raw))
            continue
        if station is None:
            yield RowError(line_no, f"{station_problem} ({os.path.basename(path)})", clip(raw))
            continue
        v = [int(g) for g in m.groups()]
        try:
            when = dt.datetime(v[0], v[1], v[2], v[3])
        except ValueError as exc:
            stamp = f"{v[0]:04d}-{v[1]:02d}-{v[2]:02d}T{v[3]:02d}"
            yield RowError(line_no, f"impossible date/hour {stamp}: {exc}", clip(raw))
            continue
        time = when.strftime("%Y-%m-%dT%H:00:00Z")
        if time == prev_time:
            yield RowError(line_no, f"duplicate record for {time}", clip(raw))
            continue
        prev_time = time
        yield _observation(station, time, v, source)


def _explain(text: str) -> str:
    """Why a line does not match the ISD-Lite layout."""
    parts = text.split()
    if len(parts) != 12:
        return f"expected 12 ISD-Lite fields, found {len(parts)} (truncated or wrong widths)"
    bad = next((p for p in parts if not re.fullmatch(r"-?\d+", p)), None)
    if bad is not None:
        return f"non-integer field {bad[:20]!r}"
    return "field out of the ISD-Lite layout (year 4 digits, month/day/hour 2, values <= 6 characters)"


def _tenths(value: int) -> float | None:
    return None if value == MISSING else value / 10


def _observation(station: str, time: str, v: list[int], source: str) -> Observation:
    qc: dict[str, str] = {}
    t, td = _tenths(v[4]), _tenths(v[5])
    rh = rh_from_dewpoint(t, td) if t is not None and td is not None else None
    p1, n1 = _precip(v[10])
    p6, n6 = _precip(v[11])
    precip: float | None = None
    period: float | None = None
    if p1 is not None:
        precip, period = p1, 1.0
        if n1:
            qc["precip_mm"] = n1
        if p6 is not None:
            qc["precip_6h_mm"] = n6 or f"{p6:g}"
        elif n6:
            qc["precip_6h_mm"] = n6
    else:
        if p6 is not None:
            precip, period = p6, 6.0
            if n6:
                qc["precip_mm"] = n6
        elif n6:
            qc["precip_6h_mm"] = n6
        if n1:
            qc["precip_1h_mm"] = n1
    wind = _tenths(v[8])
    if wind is not None and wind < 0:
        add_qc(qc, "wind_ms", f"negative speed {wind:g} dropped")
        wind = None
    return Observation(
        station_id=station,
        time=time,
        air_temp_c=t,
        dewpoint_c=td,
        rh_pct=rh,
        pressure_hpa=_tenths(v[6]),
        wind_ms=wind,
        precip_mm=precip,
        precip_period_h=period,
        source=source,
        qc=qc,
    )


def _precip(value: int) -> tuple[float | None, str | None]:
    """Scaled precipitation (mm) and a note: trace (-1) -> 0.0 "trace"; other negatives dropped."""
    if value == MISSING:
        return None, None
    if value == TRACE:
        return 0.0, "trace"
    if value < 0:
        return None, f"invalid negative amount {value} dropped"
    return value / 10, None
