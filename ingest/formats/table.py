"""The documented table format: CSV, JSON lines or a JSON array of Observation-shaped rows.

Three encodings (UTF-8; ``.gz`` allowed), chosen by ``TableSpec.kind`` or, with ``kind="auto"``, by the
first non-blank character (``[`` -> JSON array, ``{`` -> JSON lines, otherwise CSV):

* **CSV** - a header line, then one row per observation (RFC 4180 quoting; ``TableSpec.delimiter``).
  Lines starting with ``#`` and blank lines are skipped. One physical line per row.
* **JSON lines** - one JSON object per line.
* **JSON array** - ``[{...}, {...}, ...]``, read incrementally (constant memory).

Columns/keys are the Observation field names - ``station_id``, ``time``, ``air_temp_c``, ``tmax_c``,
``tmin_c``, ``ground_tmin_c``, ``rh_pct``, ``dewpoint_c``, ``precip_mm``, ``precip_period_h``, ``wind_ms``,
``gust_ms``, ``visibility_m``, ``pressure_hpa``, ``source``, ``qc`` (a JSON object; in CSV its JSON text).
``station_id`` and ``time`` are required; other columns are ignored. ``TableSpec.columns`` maps source
names to field names (``{"Station": "station_id", "Temp_F": "air_temp_c"}``); unmapped columns that
already carry a field name keep it.

Values: numbers (JSON numbers or numeric strings). Missing: an absent key, JSON ``null``, and (any case)
the strings in ``TableSpec.missing`` (default ``""``, ``NA``, ``N/A``, ``null``, ``None``, ``NaN``;
``NaN`` as the usual export of a missing value). Infinite or non-numeric values reject the row with a
reason. Units: SI as in the schema unless ``TableSpec.units`` names the unit of a field
(``{"air_temp_c": "degF", "wind_ms": "km/h"}``); see :data:`UNITS` for the accepted units.

Time: ISO-8601 (``2026-07-14T06:00:00Z``, ``2026-07-14 14:00+08:00``); a time without an offset is in
``TableSpec.time_zone`` (IANA name such as ``Asia/Shanghai``, or ``UTC`` - the default) and converted to
UTC. A bare date (``2026-07-14``) is a daily record and becomes ``2026-07-14T00:00:00Z`` unshifted, as
for GHCN-Daily. ``TableSpec.time_format`` may instead be a :func:`~datetime.datetime.strptime` pattern or
``"epoch"`` (Unix seconds); JSON numbers in the time field are always Unix seconds.

The station id goes through the station resolver like any other format (5-digit WMO ids pass as they
are); ``source`` defaults to ``table``.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ingest.formats.base import (
    MAX_LINE_BYTES,
    ParsedRow,
    PathLike,
    RowError,
    StationMapper,
    StationResolver,
    UnreadableFileError,
    clip,
    decoded_lines,
    iter_lines,
    open_binary,
)
from warning.shared.records import OBSERVATION_ELEMENTS, Observation
from warning.shared.times import iso_utc

__all__ = ["DEFAULT_MISSING", "UNITS", "TableSpec", "read_table"]

DEFAULT_MISSING: frozenset[str] = frozenset({"", "na", "n/a", "null", "none", "nan"})

_Conv = Callable[[float], float]


def _scale(k: float) -> _Conv:
    return lambda x: x * k


_IDENT: _Conv = _scale(1.0)
_TEMP: dict[str, _Conv] = {
    "degC": _IDENT, "C": _IDENT, "celsius": _IDENT,
    "degF": lambda x: (x - 32.0) * 5.0 / 9.0, "F": lambda x: (x - 32.0) * 5.0 / 9.0,
    "K": lambda x: x - 273.15, "kelvin": lambda x: x - 273.15,
}
_SPEED: dict[str, _Conv] = {
    "m/s": _IDENT, "m s-1": _IDENT, "km/h": _scale(1 / 3.6), "kn": _scale(1852 / 3600),
    "knot": _scale(1852 / 3600), "mph": _scale(0.44704),
}

#: Accepted source units per Observation field (converted to the schema unit of OBSERVATION_ELEMENTS).
UNITS: dict[str, dict[str, _Conv]] = {
    "air_temp_c": _TEMP, "tmax_c": _TEMP, "tmin_c": _TEMP, "ground_tmin_c": _TEMP, "dewpoint_c": _TEMP,
    "rh_pct": {"%": _IDENT, "percent": _IDENT, "1": _scale(100.0), "fraction": _scale(100.0)},
    "precip_mm": {"mm": _IDENT, "kg m-2": _IDENT, "cm": _scale(10.0), "m": _scale(1000.0),
                  "in": _scale(25.4)},
    "precip_period_h": {"h": _IDENT, "min": _scale(1 / 60), "s": _scale(1 / 3600), "d": _scale(24.0)},
    "wind_ms": _SPEED, "gust_ms": _SPEED,
    "visibility_m": {"m": _IDENT, "km": _scale(1000.0), "mi": _scale(1609.344), "ft": _scale(0.3048)},
    "pressure_hpa": {"hPa": _IDENT, "mbar": _IDENT, "mb": _IDENT, "Pa": _scale(0.01), "kPa": _scale(10.0),
                     "inHg": _scale(33.8639), "mmHg": _scale(1.333224)},
}

_FIELDS = ("station_id", "time", *OBSERVATION_ELEMENTS, "source", "qc")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DATE_ONLY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_KINDS = ("auto", "csv", "jsonl", "json")


@dataclass(frozen=True, slots=True)
class TableSpec:
    """Options of the table format (see the module docstring).

    kind: ``auto`` | ``csv`` | ``jsonl`` | ``json``; columns: source name -> Observation field;
    units: Observation field -> source unit (keys of :data:`UNITS`); time_zone: zone of times without
    an offset; time_format: None (ISO-8601), ``"epoch"`` or a strptime pattern; missing: lower-case
    strings read as missing; delimiter: CSV delimiter; source: default Observation.source.
    """

    kind: str = "auto"
    columns: Mapping[str, str] = field(default_factory=dict)
    units: Mapping[str, str] = field(default_factory=dict)
    time_zone: str = "UTC"
    time_format: str | None = None
    missing: frozenset[str] = DEFAULT_MISSING
    delimiter: str = ","
    source: str = "table"

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"table kind {self.kind!r}: expected one of {', '.join(_KINDS)}")
        for src, dst in self.columns.items():
            if dst not in _FIELDS:
                raise ValueError(f"column {src!r} mapped to {dst!r}, which is not an Observation field")
        for name, unit in self.units.items():
            if name not in UNITS:
                raise ValueError(f"units given for {name!r}, which is not a numeric Observation element")
            if unit not in UNITS[name]:
                raise ValueError(f"unit {unit!r} for {name}: expected one of {', '.join(UNITS[name])}")
        if len(self.delimiter) != 1:
            raise ValueError("delimiter must be one character")
        _zone(self.time_zone)


def _zone(name: str) -> dt.tzinfo:
    if name.upper() in ("UTC", "Z"):
        return dt.UTC
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", name)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        return dt.timezone(sign * dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


class _RowProblem(Exception):
    """A reason to reject one row."""


class _Converter:
    """Turns one mapping of source names to values into an Observation (or raises _RowProblem)."""

    def __init__(self, spec: TableSpec, mapper: StationMapper) -> None:
        self.spec = spec
        self.mapper = mapper
        self.tz = _zone(spec.time_zone)
        self.conv = {name: UNITS[name][unit] for name, unit in spec.units.items()}

    def key_map(self, names: list[str]) -> dict[str, str]:
        """Source name -> field for the names of one header (or one JSON object)."""
        out: dict[str, str] = {}
        for n in names:
            dst = self.spec.columns.get(n) or (n if n in _FIELDS else None)
            if dst is not None:
                if dst in out.values():
                    raise _RowProblem(f"two columns map to {dst!r}")
                out[n] = dst
        return out

    def convert(self, row: Mapping[str, Any], keys: Mapping[str, str]) -> Observation:
        vals: dict[str, Any] = {keys[k]: v for k, v in row.items() if k in keys}
        station, problem = self.mapper(self._text(vals.get("station_id")))
        if station is None:
            raise _RowProblem(problem or "unknown station")
        kwargs: dict[str, float | None] = {}
        for name in OBSERVATION_ELEMENTS:
            x = self._number(name, vals.get(name))
            if x is not None and name in self.conv:
                x = round(self.conv[name](x), 3)  # unit conversion noise (e.g. degF) is not data
                if not math.isfinite(x):
                    raise _RowProblem(f"{name}: value overflows after unit conversion")
            kwargs[name] = x
        obs = Observation(station_id=station, time=self._time(vals.get("time")), source=self.spec.source)
        for name, x in kwargs.items():
            setattr(obs, name, x)
        src = self._text(vals.get("source"))
        if src:
            obs.source = src
        obs.qc = self._qc(vals.get("qc"))
        return obs

    def _text(self, v: Any) -> str | None:
        if v is None:
            return None
        if isinstance(v, str):
            s = v.strip()
            return None if s.lower() in self.spec.missing else s
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        raise _RowProblem(f"expected text, got {type(v).__name__}")

    def _number(self, name: str, v: Any) -> float | None:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise _RowProblem(f"{name}: expected a number, got {type(v).__name__}")
        if isinstance(v, str):
            s = v.strip()
            if s.lower() in self.spec.missing:
                return None
            if not _NUMBER_RE.fullmatch(s):
                kind = "non-finite value" if s.lower().lstrip("+-") in ("inf", "infinity") else "not a number"
                raise _RowProblem(f"{name}: {kind}: {s[:40]!r}")
            x = float(s)
        else:
            x = float(v)
        if math.isnan(x):
            return None
        if not math.isfinite(x):
            raise _RowProblem(f"{name}: non-finite value {v!r}")
        return x

    def _time(self, v: Any) -> str:
        fmt = self.spec.time_format
        if v is None or (isinstance(v, str) and not v.strip()):
            raise _RowProblem("time: missing")
        try:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if not math.isfinite(v):
                    raise ValueError("non-finite epoch")
                t = dt.datetime.fromtimestamp(v, dt.UTC)
            elif not isinstance(v, str):
                raise ValueError(f"expected text, got {type(v).__name__}")
            elif fmt == "epoch":
                s = v.strip()
                if not _NUMBER_RE.fullmatch(s):
                    raise ValueError("expected Unix seconds")
                t = dt.datetime.fromtimestamp(float(s), dt.UTC)
            elif fmt is not None:
                t = dt.datetime.strptime(v.strip(), fmt)
            else:
                s = v.strip()
                if _DATE_ONLY_RE.fullmatch(s):
                    return dt.date.fromisoformat(s).strftime("%Y-%m-%dT00:00:00Z")
                t = dt.datetime.fromisoformat(s)
            if t.tzinfo is None:
                t = t.replace(tzinfo=self.tz)
            t = t.astimezone(dt.UTC)
        except (ValueError, OverflowError, OSError) as exc:
            raise _RowProblem(f"time: cannot read {str(v)[:40]!r}: {exc}") from None
        return iso_utc(t)

    def _qc(self, v: Any) -> dict[str, str]:
        if v is None or v == "":
            return {}
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                raise _RowProblem("qc: not a JSON object") from None
        if not isinstance(v, dict):
            raise _RowProblem("qc: not a JSON object")
        return {str(k): str(x) for k, x in v.items()}


def read_table(
    path: PathLike,
    spec: TableSpec | None = None,
    *,
    station_resolver: StationResolver | None = None,
    as_station: str | None = None,
) -> Iterator[ParsedRow]:
    """Stream a table file (CSV, JSON lines or JSON array) as Observations and RowErrors.

    Raises :class:`ingest.formats.UnreadableFileError` if the file cannot be opened, a CSV has no usable
    header, or a JSON array does not start with ``[``.
    """
    spec = spec or TableSpec()
    conv = _Converter(spec, StationMapper(station_resolver, as_station))
    kind = spec.kind
    name = os.fspath(path)
    fh = open_binary(path)
    if kind == "auto":
        kind = _sniff(fh)
    if kind == "json":
        return _json_array_rows(fh, conv, name)
    lines = iter_lines(fh)
    if kind == "jsonl":
        return _jsonl_rows(lines, conv)
    return _csv_rows(lines, conv, spec, name)


def _sniff(fh: IO[bytes]) -> str:
    peek = getattr(fh, "peek", None)
    head = peek(4096) if peek is not None else b""
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return {b"[": "json", b"{": "jsonl"}.get(first, "csv")


def _csv_rows(
    lines: Iterator[tuple[int, bytes, str | None]], conv: _Converter, spec: TableSpec, name: str
) -> Iterator[ParsedRow]:
    header: list[str] | None = None
    keys: dict[str, str] = {}
    for item in decoded_lines(lines, "utf-8"):
        if isinstance(item, RowError):
            yield item
            continue
        line_no, raw, text = item
        if header is None:
            text = text.lstrip("\ufeff")
        if not text.strip() or text.startswith("#"):
            continue
        try:
            fields = next(csv.reader([text], delimiter=spec.delimiter, strict=True))
        except (csv.Error, StopIteration) as exc:
            if header is None:
                raise UnreadableFileError(f"{name}: unreadable CSV header: {exc}") from None
            yield RowError(line_no, f"malformed CSV: {exc}", clip(raw))
            continue
        if header is None:
            header = [h.strip() for h in fields]
            try:
                keys = conv.key_map(header)
            except _RowProblem as exc:
                raise UnreadableFileError(f"{name}: {exc}") from None
            missing = {"station_id", "time"} - set(keys.values())
            if missing and not (missing == {"station_id"} and conv.mapper(None)[0] is not None):
                raise UnreadableFileError(
                    f"{name}: header has no column for {', '.join(sorted(missing))} "
                    f"(columns: {', '.join(header)[:200]}; map them with TableSpec.columns)"
                )
            continue
        if len(fields) != len(header):
            yield RowError(line_no, f"expected {len(header)} fields, found {len(fields)}", clip(raw))
            continue
        try:
            yield conv.convert(dict(zip(header, fields, strict=True)), keys)
        except _RowProblem as exc:
            yield RowError(line_no, str(exc), clip(raw))


def _parse_constant(name: str) -> float:
    return float(name.replace("Infinity", "inf"))


_DECODER = json.JSONDecoder(parse_constant=_parse_constant)


def _object(obj: Any, conv: _Converter) -> Observation:
    if not isinstance(obj, dict):
        raise _RowProblem(f"expected a JSON object, got {type(obj).__name__}")
    return conv.convert(obj, conv.key_map(list(obj)))


def _jsonl_rows(lines: Iterator[tuple[int, bytes, str | None]], conv: _Converter) -> Iterator[ParsedRow]:
    for item in decoded_lines(lines, "utf-8"):
        if isinstance(item, RowError):
            yield item
            continue
        line_no, raw, text = item
        text = text.lstrip("\ufeff").strip()
        if not text:
            continue
        try:
            obj = _DECODER.decode(text)
        except ValueError as exc:
            yield RowError(line_no, f"invalid JSON: {exc}", clip(raw))
            continue
        try:
            yield _object(obj, conv)
        except _RowProblem as exc:
            yield RowError(line_no, str(exc), clip(raw))


def _json_array_rows(fh: IO[bytes], conv: _Converter, name: str, chunk: int = 1 << 16) -> Iterator[ParsedRow]:
    """Incremental ``[obj, obj, ...]`` reader: decodes one element at a time with ``raw_decode``."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    buf, pos, line_no, eof = "", 0, 1, False
    state = "open"  # open -> value_or_close -> comma_or_close -> value -> ... -> done

    def more() -> str | None:
        """Read the next chunk; a problem string on failure."""
        nonlocal buf, pos, eof
        try:
            data = fh.read(chunk)
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            return f"not valid UTF-8 near byte {exc.start} of a chunk, rest of file lost"
        except (OSError, EOFError, ValueError) as exc:
            return f"read error, rest of file lost: {exc}"
        eof = not data
        buf = buf[pos:] + text
        pos = 0
        return None

    with fh:
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                line_no += buf[pos] == "\n"
                pos += 1
            if pos >= len(buf):
                if eof:
                    break
                problem = more()
                if problem is not None:
                    yield RowError(line_no, problem)
                    return
                continue
            c = buf[pos]
            if state == "open":
                if c != "[":
                    raise UnreadableFileError(f"{name}: a JSON array file must start with '['")
                pos += 1
                state = "value_or_close"
            elif state in ("comma_or_close", "value_or_close") and c == "]":
                pos += 1
                state = "done"
            elif state == "comma_or_close":
                if c != ",":
                    yield RowError(line_no, f"expected ',' or ']' between array elements, found {c!r}")
                    return
                pos += 1
                state = "value"
            elif state == "done":
                yield RowError(line_no, "data after the closing ']'", buf[pos:pos + 200].encode())
                return
            else:
                try:
                    obj, end = _DECODER.raw_decode(buf, pos)
                except ValueError as exc:
                    if not eof and len(buf) - pos <= MAX_LINE_BYTES:
                        problem = more()
                        if problem is None:
                            continue
                        yield RowError(line_no, problem)
                        return
                    why = "element too large" if len(buf) - pos > MAX_LINE_BYTES else f"invalid JSON: {exc}"
                    yield RowError(line_no, f"{why}; rest of the array skipped", clip(buf[pos:].encode()))
                    return
                text = buf[pos:end]
                start = line_no
                line_no += text.count("\n")
                pos = end
                state = "comma_or_close"
                try:
                    yield _object(obj, conv)
                except _RowProblem as exc:
                    yield RowError(start, str(exc), clip(text.encode()))
    if state == "open":
        raise UnreadableFileError(f"{name}: empty file, expected a JSON array")
    if state != "done":
        yield RowError(line_no, "truncated JSON array (no closing ']')")
