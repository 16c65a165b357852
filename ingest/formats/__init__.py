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
import os
import re
import zlib
from collections.abc import Iterator

from ingest.formats import ghcn_daily, isd_lite
from ingest.formats import table as table_mod
from ingest.formats.base import (
    FormatDetectionError,
    ParsedRow,
    PathLike,
    RowError,
    StationResolver,
    UnreadableFileError,
    open_binary,
    rh_from_dewpoint,
    wmo_from_id,
)
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

FORMATS: tuple[str, ...] = ("isd-lite", "ghcn-dly", "ghcn-csv", "table", "grid")


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
