"""What every station-file reader shares: line reading in constant memory, row errors, station-id mapping
and small unit helpers (``ingest.formats`` dispatches to the readers)."""

from __future__ import annotations

import gzip
import math
import os
import re
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import IO, cast

from warning.shared.records import Observation

PathLike = str | os.PathLike[str]
StationResolver = Callable[[str], str | None]

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
