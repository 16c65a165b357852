"""GHCN-Daily station files: the fixed-width ``.dly`` and the by-station "access" CSV.

``.dly`` layout (NCEI GHCN-Daily readme.txt, section III): one line per station-month-element, 269 chars::

    ID 1-11 | YEAR 12-15 | MONTH 16-17 | ELEMENT 18-21 |
    31 x [VALUE (5) | MFLAG (1) | QFLAG (1) | SFLAG (1)] from column 22

The access CSV (``STATION,DATE,LATITUDE,LONGITUDE,ELEVATION,NAME,PRCP,PRCP_ATTRIBUTES,...``) carries the
same native values, one row per station-day, each element followed by ``<EL>_ATTRIBUTES`` =
``"MFLAG,QFLAG,SFLAG"``; an empty field is missing. Rows are parsed with :mod:`csv` (``NAME`` contains a
quoted comma).

Elements mapped (readme section III units): TMAX -> tmax_c, TMIN -> tmin_c (tenths of degC), PRCP ->
precip_mm with precip_period_h = 24 (tenths of mm), AWND -> wind_ms (average daily wind speed), WSFG ->
gust_ms (peak gust), both tenths of m/s. Other elements (TAVG, SNOW, SNWD, WT**, ...) have no Observation
field and are skipped. ``-9999`` = missing; values on days that do not exist (Feb 30) must be missing and
are reported otherwise.

Flags (readme section III): a non-blank QFLAG means the value failed an NCEI quality check; it is dropped
and noted in ``qc[field]`` with the flag, its meaning and the value. MFLAG ``T`` (trace) -> 0.0 with
``qc[field] = "trace"``; ``P`` ("missing presumed zero") and ``L`` (temperature lagged) are kept and noted;
other MFLAGs (B, D, H, K, O, U, W: how a value was formed or converted) are informational and not copied.

Time: GHCN-Daily values are daily totals/extremes for the station's observation day (local time; for
many co-operative stations the day ends at the observation time, TOBS), not instants. Each day becomes one
Observation at ``YYYY-MM-DDT00:00:00Z`` labelled by its calendar date; no time-zone shift is applied, so
the date is never moved to a neighbouring day.

Streaming: ``.dly`` files are ordered by station, year-month, then element, so one station-month is
buffered (at most 31 days) and merged into one Observation per day; memory stays constant.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import re
from collections.abc import Iterator

from ingest.formats.base import (
    ParsedRow,
    PathLike,
    RowError,
    StationMapper,
    StationResolver,
    UnreadableFileError,
    add_qc,
    clip,
    decode_line,
    decoded_lines,
    iter_lines,
    open_binary,
)
from warning.shared.records import Observation

__all__ = ["ELEMENTS", "MFLAGS", "MISSING", "QFLAGS", "read_ghcn_csv", "read_ghcn_dly"]

MISSING = -9999
LINE_WIDTH = 269
_MIN_WIDTH = 21 + 30 * 8 + 5  # the last day's three flags may be blank and stripped

#: GHCN element -> (Observation field, divisor from native units).
ELEMENTS: dict[str, tuple[str, float]] = {
    "TMAX": ("tmax_c", 10.0),
    "TMIN": ("tmin_c", 10.0),
    "PRCP": ("precip_mm", 10.0),
    "AWND": ("wind_ms", 10.0),
    "WSFG": ("gust_ms", 10.0),
}

#: QFLAG meanings (readme.txt section III).
QFLAGS: dict[str, str] = {
    "D": "failed duplicate check",
    "G": "failed gap check",
    "I": "failed internal consistency check",
    "K": "failed streak/frequent-value check",
    "L": "failed check on length of multiday period",
    "M": "failed megaconsistency check",
    "N": "failed naught check",
    "O": "failed climatological outlier check",
    "R": "failed lagged range check",
    "S": "failed spatial consistency check",
    "T": "failed temporal consistency check",
    "W": "temperature too warm for snow",
    "X": "failed bounds check",
    "Z": "flagged as a result of an official Datzilla investigation",
}

#: MFLAG meanings (readme.txt section III).
MFLAGS: dict[str, str] = {
    "B": "precipitation total formed from two 12-hour totals",
    "D": "precipitation total formed from four six-hour totals",
    "H": "highest or lowest hourly temperature, or average of hourly values",
    "K": "converted from knots",
    "L": "temperature appears to be lagged with respect to reported hour of observation",
    "O": "converted from oktas",
    "P": "identified as 'missing presumed zero' in DSI 3200 and 3206",
    "T": "trace of precipitation, snowfall, or snow depth",
    "W": "converted from 16-point WBAN code (for wind direction)",
}

_VALUE_RE = re.compile(r" *-?\d{1,5}")
_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")

_Values = dict[str, float]


def _apply(vals: _Values, qc: dict[str, str], element: str, value: int, mflag: str, qflag: str) -> None:
    """Put one native GHCN value into ``vals`` / ``qc`` following the flag rules in the module docstring."""
    field, divisor = ELEMENTS[element]
    x = value / divisor
    if qflag.strip():
        meaning = QFLAGS.get(qflag, "unknown quality flag")
        add_qc(qc, field, f"ghcn qflag {qflag} ({meaning}): {x:g} dropped")
        return
    if mflag == "T":
        add_qc(qc, field, "trace" if value == 0 else f"trace (reported {x:g}, set to 0)")
        x = 0.0
    elif mflag == "P":
        add_qc(qc, field, "missing presumed zero (mflag P)")
    elif mflag == "L":
        add_qc(qc, field, "lagged with respect to the observation hour (mflag L)")
    vals[field] = x


def _observation(station: str, time: str, vals: _Values, qc: dict[str, str], source: str) -> Observation:
    precip = vals.get("precip_mm")
    return Observation(
        station_id=station,
        time=time,
        tmax_c=vals.get("tmax_c"),
        tmin_c=vals.get("tmin_c"),
        precip_mm=precip,
        precip_period_h=24.0 if precip is not None else None,
        wind_ms=vals.get("wind_ms"),
        gust_ms=vals.get("gust_ms"),
        source=source,
        qc=qc,
    )


# --------------------------------------------------------------------------------------------- .dly
def read_ghcn_dly(
    path: PathLike,
    *,
    station_resolver: StationResolver | None = None,
    as_station: str | None = None,
    source: str = "ghcn-dly",
) -> Iterator[ParsedRow]:
    """Stream a GHCN-Daily ``.dly`` file as daily Observations (one per station-day) and RowErrors.

    Raises :class:`ingest.formats.UnreadableFileError` if the file cannot be opened.
    """
    mapper = StationMapper(station_resolver, as_station)
    return _dly_rows(iter_lines(open_binary(path)), mapper, source)


def _dly_rows(
    lines: Iterator[tuple[int, bytes, str | None]], mapper: StationMapper, source: str
) -> Iterator[ParsedRow]:
    key: tuple[str, int, int] | None = None
    station: str | None = None
    station_problem: str | None = None
    days: dict[int, tuple[_Values, dict[str, str]]] = {}
    seen: set[str] = set()
    ndays = 31

    def flush() -> Iterator[ParsedRow]:
        if key is None or station is None:
            return
        for d in sorted(days):
            vals, qc = days[d]
            yield _observation(station, f"{key[1]:04d}-{key[2]:02d}-{d:02d}T00:00:00Z", vals, qc, source)

    for item in decoded_lines(lines, "ascii"):
        if isinstance(item, RowError):
            yield item
            continue
        line_no, raw, text = item
        body = text.rstrip()
        if not body:
            continue
        if not _MIN_WIDTH <= len(body) <= LINE_WIDTH:
            yield RowError(line_no, f"wrong width: {len(body)} characters, a .dly line has {LINE_WIDTH}",
                           clip(raw))
            continue
        line = body.ljust(LINE_WIDTH)
        raw_id, ys, ms, element = line[0:11], line[11:15], line[15:17], line[17:21]
        if not (ys.isdigit() and ms.isdigit() and 1 <= int(ms) <= 12 and raw_id.strip()):
            yield RowError(line_no, f"bad station/year/month fields {line[:17]!r}", clip(raw))
            continue
        k = (raw_id, int(ys), int(ms))
        if k != key:
            yield from flush()
            key, days, seen = k, {}, set()
            station, station_problem = mapper(raw_id.strip())
            ndays = calendar.monthrange(k[1], k[2])[1]
        if element not in ELEMENTS:
            continue  # no Observation field for it (TAVG, SNOW, WT**, ...)
        if station is None:
            yield RowError(line_no, station_problem or "unknown station", clip(raw))
            continue
        if element in seen:
            yield RowError(line_no, f"duplicate {element} line for {ys}-{ms}", clip(raw))
            continue
        seen.add(element)
        for d in range(31):
            off = 21 + 8 * d
            vs = line[off:off + 5]
            if not _VALUE_RE.fullmatch(vs):
                yield RowError(line_no, f"{element} day {d + 1}: not an integer value {vs!r}", clip(raw))
                continue
            value = int(vs)
            if value == MISSING:
                continue
            if d + 1 > ndays:
                yield RowError(line_no, f"{element} value {value} on impossible date {ys}-{ms}-{d + 1:02d}",
                               clip(raw))
                continue
            entry = days.get(d + 1)
            if entry is None:
                entry = days[d + 1] = ({}, {})
            _apply(entry[0], entry[1], element, value, line[off + 5], line[off + 6])
    yield from flush()


# --------------------------------------------------------------------------------------------- access CSV
def read_ghcn_csv(
    path: PathLike,
    *,
    station_resolver: StationResolver | None = None,
    as_station: str | None = None,
    source: str = "ghcn-csv",
) -> Iterator[ParsedRow]:
    """Stream a GHCN-Daily by-station access CSV as daily Observations and RowErrors.

    The header is read at once: raises :class:`ingest.formats.UnreadableFileError` if the file cannot be
    opened or has no ``STATION``/``DATE`` header.
    """
    mapper = StationMapper(station_resolver, as_station)
    name = str(path)
    fh = open_binary(path)
    lines = iter_lines(fh)
    try:
        first = next(lines, None)
        if first is None:
            raise UnreadableFileError(f"{name}: empty file, no GHCN CSV header")
        text, problem = decode_line(first[1], "utf-8")
        if text is None or first[2] is not None:
            raise UnreadableFileError(f"{name}: unreadable header: {first[2] or problem}")
        try:
            header = [h.strip().upper() for h in next(csv.reader([text.lstrip("\ufeff")]), [])]
        except csv.Error as exc:
            raise UnreadableFileError(f"{name}: unreadable header: {exc}") from None
        if "STATION" not in header or "DATE" not in header:
            raise UnreadableFileError(f"{name}: not a GHCN-Daily CSV (no STATION and DATE columns)")
    except BaseException:
        lines.close()
        fh.close()
        raise
    columns = [
        (el, header.index(el), header.index(f"{el}_ATTRIBUTES") if f"{el}_ATTRIBUTES" in header else None)
        for el in ELEMENTS
        if el in header
    ]
    i_station, i_date = header.index("STATION"), header.index("DATE")
    return _csv_rows(lines, mapper, source, i_station, i_date, len(header), columns)


def _csv_rows(
    lines: Iterator[tuple[int, bytes, str | None]],
    mapper: StationMapper,
    source: str,
    i_station: int,
    i_date: int,
    width: int,
    columns: list[tuple[str, int, int | None]],
) -> Iterator[ParsedRow]:
    prev: tuple[str, str] | None = None
    for item in decoded_lines(lines, "utf-8"):
        if isinstance(item, RowError):
            yield item
            continue
        line_no, raw, text = item
        if not text.strip():
            continue
        try:
            fields = next(csv.reader([text]))
        except (csv.Error, StopIteration) as exc:
            yield RowError(line_no, f"malformed CSV: {exc}", clip(raw))
            continue
        if len(fields) != width:
            yield RowError(line_no, f"expected {width} fields, found {len(fields)}", clip(raw))
            continue
        date = fields[i_date].strip()
        m = _DATE_RE.fullmatch(date)
        try:
            if m is None:
                raise ValueError("expected YYYY-MM-DD")
            dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError as exc:
            yield RowError(line_no, f"bad DATE {date[:40]!r}: {exc}", clip(raw))
            continue
        raw_id = fields[i_station].strip()
        station, station_problem = mapper(raw_id)
        if station is None:
            yield RowError(line_no, station_problem or "unknown station", clip(raw))
            continue
        if prev == (raw_id, date):
            yield RowError(line_no, f"duplicate row for {raw_id} {date}", clip(raw))
            continue
        prev = (raw_id, date)
        vals: _Values = {}
        qc: dict[str, str] = {}
        bad: str | None = None
        for element, i_value, i_attr in columns:
            vs = fields[i_value]
            if not vs.strip():
                continue
            if not _VALUE_RE.fullmatch(vs.strip().rjust(5)):
                bad = f"{element}: not an integer value {vs[:20]!r}"
                break
            value = int(vs)
            if value == MISSING:
                continue
            flags = (fields[i_attr].split(",") if i_attr is not None else []) + ["", ""]
            _apply(vals, qc, element, value, flags[0] or " ", flags[1] or " ")
        if bad is not None:
            yield RowError(line_no, bad, clip(raw))
            continue
        if vals or qc:
            yield _observation(station, f"{date}T00:00:00Z", vals, qc, source)
