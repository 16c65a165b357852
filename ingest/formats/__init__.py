"""Station-file readers: NOAA ISD-Lite, GHCN-Daily (.dly and access CSV) and a documented table format.

Every reader is a generator over :data:`ParsedRow` (an :class:`~warning.shared.records.Observation` or a
:class:`RowError`). Files are read line by line in binary mode (``.gz`` through :func:`gzip.open`), so
memory stays constant on large files; each line is decoded on its own so a non-UTF-8 byte, a truncated
line or an over-long line costs that row only. A reader raises :class:`UnreadableFileError` only when the
file cannot be read at all (missing, not gzip, no usable header).

Station ids are mapped to a 5-digit WMO index by a ``station_resolver(raw_id) -> str | None``; the default,
:func:`wmo_from_id`, applies the documented id rules only (a GHCN id with network code ``M``, e.g.
``CHM00054511`` -> ``54511``; an ISD USAF id ``545110`` = WMO x 10 -> ``54511``); checking the result
against the station registry is the caller's business (wrap :func:`wmo_from_id`). ``as_station`` replaces
the station of every row (drills) and skips resolution.

Format names (as used by ``ews ingest --format``): ``isd-lite``, ``ghcn-dly``, ``ghcn-csv``, ``table``,
``grid`` (grids are read by ``ingest.formats.grids``, not here).
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import re
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, cast

from warning.shared.records import Observation

if TYPE_CHECKING:
    from ingest.formats.table import TableSpec

__all__ = [
    "FORMATS",
    "FormatDetectionError",
    "ParsedRow",
    "RowError",
    "StationResolver",
    "UnreadableFileError",
    "detect_format",
    "read_observations",
    "rh_from_dewpoint",
    "wmo_from_id",
]

PathLike = str | os.PathLike[str]
StationResolver = Callable[[str], str | None]

FORMATS: tuple[str, ...] = ("isd-lite", "ghcn-dly", "ghcn-csv", "table", "grid")

#: Longest line accepted (bytes); longer lines are skipped in constant memory and reported.
MAX_LINE_BYTES = 1 << 20
#: How much of a bad line is kept in ``RowError.raw`` (dead letters carry the raw bytes).
RAW_KEEP_BYTES = 4096


class UnreadableFileError(Exception):
    """The file cannot be read at all (missing, unreadable, not gzip, no usable header)."""


class FormatDetectionError(UnreadableFileError):
    """``detect_format`` could not tell which format a file is in."""


@dataclass(slots=True, frozen=True)
class RowError:
    """A row that could not become an Observation: 1-based line number, a clear reason, the raw bytes."""

    line_no: int
    reason: str
    raw: bytes = b""


ParsedRow = Observation | RowError


# --------------------------------------------------------------------------------------------- file access
def open_binary(path: PathLike) -> IO[bytes]:
    """Open ``path`` for binary reading, through gzip when the name ends ``.gz``; raise if unreadable."""
    p = os.fspath(path)
    try:
        if p.endswith(".gz"):
            gz = gzip.open(p, "rb")  # noqa: SIM115 - the reader generator owns and closes it
            try:
                gz.peek(1)  # reads and checks the gzip header now, not at the first row
            except BaseException:
                gz.close()
                raise
            return cast(IO[bytes], gz)
        return open(p, "rb")
    except (OSError, EOFError, zlib.error) as exc:
        raise UnreadableFileError(f"{p}: cannot read: {exc}") from exc


Lines = Generator[tuple[int, bytes, str | None], None, None]


def iter_lines(fh: IO[bytes], max_line: int = MAX_LINE_BYTES) -> Lines:
    """Yield ``(line_no, raw_line_without_eol, problem)``; ``problem`` is None for a good line.

    A line longer than ``max_line`` is skipped in constant memory (only its head is kept); a read error
    part-way (truncated or corrupt gzip) ends the stream with one problem entry.
    """
    line_no = 0
    with fh:
        while True:
            try:
                chunk = fh.readline(max_line + 1)
            except (OSError, EOFError, zlib.error) as exc:
                yield line_no + 1, b"", f"read error, rest of file lost (corrupt or truncated): {exc}"
                return
            if not chunk:
                return
            line_no += 1
            if len(chunk) > max_line and not chunk.endswith(b"\n"):
                head, total = chunk[:RAW_KEEP_BYTES], len(chunk)
                try:
                    while True:
                        more = fh.readline(max_line)
                        total += len(more)
                        if not more or more.endswith(b"\n"):
                            break
                except (OSError, EOFError, zlib.error) as exc:
                    yield line_no, head, f"read error, rest of file lost (corrupt or truncated): {exc}"
                    return
                yield line_no, head, f"line too long ({total} bytes > {max_line}), skipped"
                continue
            yield line_no, chunk.rstrip(b"\r\n"), None


def decode_line(raw: bytes, encoding: str = "utf-8") -> tuple[str | None, str | None]:
    """Decode one line strictly: ``(text, None)`` or ``(None, reason)``."""
    try:
        return raw.decode(encoding), None
    except UnicodeDecodeError as exc:
        return None, f"not valid {encoding} (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})"


def clip(raw: bytes) -> bytes:
    """The part of a bad line kept in a RowError."""
    return raw[:RAW_KEEP_BYTES]


def decoded_lines(lines: Iterator[tuple[int, bytes, str | None]], encoding: str
                  ) -> Iterator[tuple[int, bytes, str] | RowError]:
    """The readers' common first step: (line number, raw bytes, text) per line, or a RowError for a line that was
    too long or does not decode."""
    for line_no, raw, problem in lines:
        if problem is not None:
            yield RowError(line_no, problem, clip(raw))
            continue
        text, problem = decode_line(raw, encoding)
        if text is None:
            yield RowError(line_no, problem or "undecodable", clip(raw))
            continue
        yield line_no, raw, text


# --------------------------------------------------------------------------------------------- stations
_WMO_RE = re.compile(r"\d{5}")
# GHCN-Daily readme.txt section IV: chars 1-2 FIPS country, char 3 network code ("M" = WMO id), 4-11 id.
_GHCN_WMO_RE = re.compile(r"[A-Z]{2}M000(\d{5})")
# ISD station = USAF (6) + WBAN (5), e.g. 545110-99999; the USAF id of a WMO station is WMO x 10.
_ISD_RE = re.compile(r"(\d{6})(?:-?(\d{5}))?")
_ISD_FILE_RE = re.compile(r"^([0-9A-Z]{6})-(\d{5})(?:-\d{4})?(?:[._-]|$)")


def wmo_from_id(raw_id: str) -> str | None:
    """Default station rule: map a WMO, GHCN or ISD id to a 5-digit WMO index, or None.

    ``54511`` -> ``54511``; ``CHM00054511`` (GHCN network code M = WMO id) -> ``54511``;
    ``545110-99999`` / ``545110`` (ISD USAF = WMO x 10) -> ``54511``. Other ids (``USW00023062``, USAF
    ids not ending in 0, ``999999``) are not derivable and give None.
    """
    s = raw_id.strip().upper()
    if _WMO_RE.fullmatch(s):
        return s
    m = _GHCN_WMO_RE.fullmatch(s)
    if m:
        return m.group(1)
    m = _ISD_RE.fullmatch(s)
    if m and m.group(1).endswith("0") and m.group(1) != "999990":
        return m.group(1)[:5]
    return None


def isd_id_from_filename(path: PathLike) -> str | None:
    """``USAF-WBAN`` from an ISD(-Lite) file name such as ``545110-99999-2017.gz``, else None."""
    m = _ISD_FILE_RE.match(os.path.basename(os.fspath(path)).upper())
    return f"{m.group(1)}-{m.group(2)}" if m else None


class StationMapper:
    """Resolve raw ids once each (cached); ``as_station`` wins over any resolver."""

    __slots__ = ("_as_station", "_cache", "_resolver")

    def __init__(self, station_resolver: StationResolver | None, as_station: str | None) -> None:
        if as_station is not None and not as_station.strip():
            raise ValueError("as_station must be a non-empty station id")
        self._as_station = as_station.strip() if as_station is not None else None
        self._resolver: StationResolver = station_resolver or wmo_from_id
        self._cache: dict[str, tuple[str | None, str | None]] = {}

    def __call__(self, raw_id: str | None) -> tuple[str | None, str | None]:
        """``(station_id, None)`` or ``(None, reason)``."""
        if self._as_station is not None:
            return self._as_station, None
        if raw_id is None or not raw_id.strip():
            return None, "no station id (give as_station or use a file named USAF-WBAN-YEAR)"
        hit = self._cache.get(raw_id)
        if hit is None:
            try:
                sid = self._resolver(raw_id)
            except Exception as exc:
                hit = (None, f"station resolver failed for {raw_id!r}: {exc!r}")
            else:
                hit = (sid, None) if sid else (None, f"unknown station {raw_id!r} (no WMO index for it)")
            if len(self._cache) < 100_000:
                self._cache[raw_id] = hit
        return hit


# --------------------------------------------------------------------------------------------- physics
# Alduchov, O. A. and Eskridge, R. E. (1996): Improved Magnus form approximation of saturation vapor
# pressure. J. Appl. Meteor. 35, 601-609 (AERK coefficients, over water, -40..50 degC):
# e_s(T) = 6.1094 * exp(17.625 T / (T + 243.04)) hPa.
_MAGNUS_A = 17.625
_MAGNUS_B = 243.04


def rh_from_dewpoint(t_c: float, td_c: float) -> float:
    """Relative humidity (%) from air temperature and dew point (degC), Magnus form with the
    Alduchov-Eskridge (1996) coefficients: RH = 100 e_s(Td) / e_s(T). Not clipped: a dew point above the
    air temperature gives > 100 % for QC to judge. Rounded to 0.1 %."""
    ratio = math.exp(_MAGNUS_A * td_c / (_MAGNUS_B + td_c) - _MAGNUS_A * t_c / (_MAGNUS_B + t_c))
    return round(100.0 * ratio, 1)


def add_qc(qc: dict[str, str], key: str, note: str) -> None:
    """Append a note to ``qc[key]`` (notes joined with '; ')."""
    old = qc.get(key)
    qc[key] = f"{old}; {note}" if old else note


# --------------------------------------------------------------------------------------------- dispatch
_GRID_SUFFIXES = (".nc", ".nc4", ".netcdf", ".grib", ".grib2", ".grb", ".grb2", ".zarr")
_DLY_LINE_RE = re.compile(r"[A-Z0-9]{11}\d{4}(0[1-9]|1[0-2])[A-Z0-9]{4}[ 0-9-]{5}")
_ISD_LINE_RE = re.compile(r"\s*\d{4} +\d{1,2} +\d{1,2} +\d{1,2}(?:\s+-?\d+){8}\s*")


def detect_format(path: PathLike) -> str:
    """Guess the format of ``path`` from its name and first line; one of :data:`FORMATS`.

    ``.dly`` -> ghcn-dly; NetCDF/GRIB names or magic -> grid; first line in the ISD-Lite layout ->
    isd-lite; a CSV header with STATION, DATE and element columns -> ghcn-csv; JSON or other CSV -> table.
    """
    p = os.fspath(path)
    name = os.path.basename(p).lower()
    base = name[:-3] if name.endswith(".gz") else name
    if base.endswith(_GRID_SUFFIXES):
        return "grid"
    if base.endswith(".dly"):
        return "ghcn-dly"
    fh = open_binary(p)
    try:
        with fh:
            head = fh.read(65536)
    except (OSError, EOFError, zlib.error) as exc:
        raise UnreadableFileError(f"{p}: cannot read: {exc}") from exc
    if head.startswith((b"CDF", b"\x89HDF", b"GRIB")):
        return "grid"
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")), "")
    if not first:
        raise FormatDetectionError(f"{p}: empty file, format unknown")
    if _DLY_LINE_RE.match(first):
        return "ghcn-dly"
    if _ISD_LINE_RE.fullmatch(first):
        return "isd-lite"
    stripped = first.lstrip()
    if stripped.startswith(("[", "{")):
        return "table"
    try:
        header = [h.strip().upper() for h in next(csv.reader([first]))]
    except csv.Error:
        header = []
    if "STATION" in header and "DATE" in header and any(h.endswith("_ATTRIBUTES") for h in header):
        return "ghcn-csv"
    if len(header) >= 2:
        return "table"
    raise FormatDetectionError(f"{p}: format not recognised (first line {first[:80]!r})")


def read_observations(
    path: PathLike,
    fmt: str = "auto",
    *,
    station_resolver: StationResolver | None = None,
    as_station: str | None = None,
    table: TableSpec | None = None,
) -> Iterator[ParsedRow]:
    """Stream Observations / RowErrors from ``path`` in format ``fmt`` (``auto`` = :func:`detect_format`).

    ``table`` configures the table format (column mapping, units, time zone); ignored by other formats.
    Raises :class:`UnreadableFileError` if the file cannot be read at all, ValueError for a bad ``fmt``.
    """
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "isd-lite":
        return isd_lite.read_isd_lite(path, station_resolver=station_resolver, as_station=as_station)
    if fmt == "ghcn-dly":
        return ghcn_daily.read_ghcn_dly(path, station_resolver=station_resolver, as_station=as_station)
    if fmt == "ghcn-csv":
        return ghcn_daily.read_ghcn_csv(path, station_resolver=station_resolver, as_station=as_station)
    if fmt == "table":
        return table_mod.read_table(path, table, station_resolver=station_resolver, as_station=as_station)
    if fmt == "grid":
        raise ValueError(f"{os.fspath(path)}: forecast grids are read by ingest.formats.grids, not here")
    raise ValueError(f"unknown format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")


# Submodules import the helpers above from this package, so they are imported last.
from ingest.formats import ghcn_daily, isd_lite  # noqa: E402
from ingest.formats import table as table_mod  # noqa: E402
