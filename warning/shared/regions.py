"""Gansu's national surface stations and administrative regions (GB/T 2260), for grading and routing.

Two package files, read lazily on first use (``importlib.resources``), never at import:

``data/stations.csv``
    Gansu's national surface meteorological stations (国家级地面气象观测站): 5-digit CMA/WMO index, name,
    latitude/longitude (decimal degrees), elevation (m) and the county / prefecture that holds the station.
    Identifiers and coordinates come from the station tables that CMA's verification package ``meteva``
    ships (``sta2411_alt.txt``, the 2411 national stations, and ``station_global_alt_11621.txt``),
    cross-checked against NOAA ISD ``isd-history`` and the WMO station list; county assignment from the
    station names (CMA names a station after its county seat or prefixes the county) checked against the
    station -> adcode mapping of NMC's city list. Details, per-column sources and the known uncertainties:
    ``data/STATIONS_SOURCES.md``.

``data/regions.csv``
    The province (620000), its 14 prefecture-level divisions and 86 county-level divisions with current
    GB/T 2260 codes (2020+ edition: 华亭市 620881, not the old 华亭县 620824), plus one row for 嘉峪关:
    a prefecture-level city without counties, represented at county level by the NBS statistical code of the
    city itself (620201), so that its station has a county to belong to like every other station.

Routing semantics (:meth:`RegionTree.covers`): 620000 covers every Gansu region, a prefecture covers its
counties (and itself), a county covers itself. Unknown codes cover nothing and are covered by nothing.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

PROVINCE_CODE = "620000"
STATIONS_FILE = "stations.csv"
REGIONS_FILE = "regions.csv"

Level = Literal["province", "prefecture", "county"]
_LEVELS: tuple[Level, ...] = ("province", "prefecture", "county")

_STATION_COLUMNS = (
    "station_id", "name", "name_zh", "latitude", "longitude", "elevation_m", "county_code", "county_name",
    "county_name_zh", "prefecture_code", "prefecture_name", "prefecture_name_zh",
)
_REGION_COLUMNS = ("code", "name", "name_zh", "level", "parent_code")


def _read_data(filename: str) -> str:
    return resources.files("warning").joinpath("data", filename).read_text(encoding="utf-8")


def _rows(text: str, columns: tuple[str, ...], what: str) -> Iterator[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != columns:
        raise ValueError(f"{what}: columns {reader.fieldnames!r}, expected {columns!r}")
    for row in reader:
        yield {k: (v or "").strip() for k, v in row.items()}


def _code(value: object) -> str:
    """A region code or station id as the canonical string (accepts ints, strips blanks)."""
    return str(value).strip()


# --------------------------------------------------------------------------------------------- stations


@dataclass(frozen=True)
class Station:
    station_id: str
    name: str
    name_zh: str
    latitude: float
    longitude: float
    elevation_m: float
    county_code: str
    county_name: str
    prefecture_code: str
    prefecture_name: str

    def to_dict(self) -> dict[str, Any]:
        """The station as served by ``GET /api/v1/stations``."""
        return {
            "station_id": self.station_id,
            "name": self.name,
            "name_zh": self.name_zh,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "elevation_m": self.elevation_m,
            "county_code": self.county_code,
            "county_name": self.county_name,
            "prefecture_code": self.prefecture_code,
            "prefecture_name": self.prefecture_name,
        }


class StationRegistry:
    """Stations by id. Immutable once built; :meth:`load` returns the shared registry of the package data."""

    def __init__(self, stations: Iterable[Station]) -> None:
        by_id: dict[str, Station] = {}
        for station in stations:
            if station.station_id in by_id:
                raise ValueError(f"duplicate station_id {station.station_id!r}")
            by_id[station.station_id] = station
        self._by_id = dict(sorted(by_id.items()))

    @classmethod
    def load(cls) -> StationRegistry:
        """The registry of ``data/stations.csv`` (read once, then cached)."""
        return _default_registry()

    @classmethod
    def from_csv(cls, text: str) -> StationRegistry:
        stations = []
        for i, row in enumerate(_rows(text, _STATION_COLUMNS, STATIONS_FILE), start=2):
            try:
                stations.append(Station(
                    station_id=row["station_id"], name=row["name"], name_zh=row["name_zh"],
                    latitude=float(row["latitude"]), longitude=float(row["longitude"]),
                    elevation_m=float(row["elevation_m"]), county_code=row["county_code"],
                    county_name=row["county_name"], prefecture_code=row["prefecture_code"],
                    prefecture_name=row["prefecture_name"],
                ))
            except ValueError as exc:
                raise ValueError(f"{STATIONS_FILE} line {i}: {exc}") from None
        return cls(stations)

    def get(self, station_id: str | int) -> Station | None:
        return self._by_id.get(_code(station_id))

    def __contains__(self, station_id: object) -> bool:
        return isinstance(station_id, str | int) and _code(station_id) in self._by_id

    def __iter__(self) -> Iterator[Station]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def stations(self) -> list[Station]:
        """All stations, sorted by id."""
        return list(self._by_id.values())

    def in_region(self, code: str | int, tree: RegionTree | None = None) -> list[Station]:
        """Stations whose county is covered by region ``code`` (see :meth:`RegionTree.covers`)."""
        tree = tree or RegionTree.load()
        return [s for s in self._by_id.values() if tree.covers(code, s.county_code)]


@lru_cache(maxsize=1)
def _default_registry() -> StationRegistry:
    """The packaged registry, or the CSV named by EWS_STATIONS_FILE (same columns): a bureau's full station
    list, or the benchmarks' 2,400 synthetic stations."""
    path = os.environ.get("EWS_STATIONS_FILE")
    if path:
        return StationRegistry.from_csv(Path(path).read_text(encoding="utf-8"))
    return StationRegistry.from_csv(_read_data(STATIONS_FILE))


# ---------------------------------------------------------------------------------------------- regions


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    name_zh: str
    level: Level
    parent_code: str | None  # None for the province


class RegionTree:
    """Province -> prefectures -> counties, by GB/T 2260 code."""

    def __init__(self, regions: Iterable[Region]) -> None:
        by_code: dict[str, Region] = {}
        for region in regions:
            if region.code in by_code:
                raise ValueError(f"duplicate region code {region.code!r}")
            by_code[region.code] = region
        children: dict[str, list[str]] = {code: [] for code in by_code}
        for region in by_code.values():
            if region.parent_code is None:
                continue
            parent = by_code.get(region.parent_code)
            if parent is None:
                raise ValueError(f"region {region.code}: unknown parent {region.parent_code!r}")
            if _LEVELS.index(parent.level) != _LEVELS.index(region.level) - 1:
                raise ValueError(f"region {region.code} ({region.level}) "
                                 f"under {parent.code} ({parent.level})")
            children[parent.code].append(region.code)
        self._by_code = by_code
        self._children = {code: tuple(sorted(kids)) for code, kids in children.items()}

    @classmethod
    def load(cls) -> RegionTree:
        """The tree of ``data/regions.csv`` (read once, then cached)."""
        return _default_tree()

    @classmethod
    def from_csv(cls, text: str) -> RegionTree:
        regions = []
        for i, row in enumerate(_rows(text, _REGION_COLUMNS, REGIONS_FILE), start=2):
            level = row["level"]
            if level not in _LEVELS:
                raise ValueError(f"{REGIONS_FILE} line {i}: level {level!r}, expected one of {_LEVELS}")
            regions.append(Region(code=row["code"], name=row["name"], name_zh=row["name_zh"],
                                  level=cast(Level, level), parent_code=row["parent_code"] or None))
        return cls(regions)

    def region(self, code: str | int) -> Region | None:
        return self._by_code.get(_code(code))

    def is_known(self, code: str | int) -> bool:
        return _code(code) in self._by_code

    def parent(self, code: str | int) -> Region | None:
        region = self.region(code)
        if region is None or region.parent_code is None:
            return None
        return self._by_code[region.parent_code]

    def ancestors(self, code: str | int) -> list[Region]:
        """The region's parent, its parent's parent, ... up to the province (empty for unknown codes)."""
        out = []
        region = self.parent(code)
        while region is not None:
            out.append(region)
            region = self.parent(region.code)
        return out

    def prefecture_of(self, code: str | int) -> Region | None:
        """The prefecture of a county (or the prefecture itself); None for the province or unknown codes."""
        region = self.region(code)
        if region is None or region.level == "province":
            return None
        return region if region.level == "prefecture" else self.parent(region.code)

    def children(self, code: str | int) -> tuple[str, ...]:
        return self._children.get(_code(code), ())

    def counties_of(self, code: str | int) -> tuple[str, ...]:
        """County codes under ``code``: all of them for 620000, a prefecture's own, a county itself."""
        region = self.region(code)
        if region is None:
            return ()
        if region.level == "county":
            return (region.code,)
        return tuple(sorted(c for kid in self.children(region.code) for c in self.counties_of(kid)))

    def covers(self, filter_code: str | int, county_code: str | int) -> bool:
        """Whether a subscription/filter on ``filter_code`` receives warnings for ``county_code``.

        True when both codes are known and ``filter_code`` is ``county_code`` itself or one of its ancestors:
        620000 covers every county (and every prefecture), a prefecture covers its counties, a county only
        itself.
        """
        f, c = _code(filter_code), _code(county_code)
        if f not in self._by_code or c not in self._by_code:
            return False
        return f == c or any(r.code == f for r in self.ancestors(c))

    def regions(self, level: Level | None = None) -> list[Region]:
        return [r for r in self._by_code.values() if level is None or r.level == level]

    def valid_codes_hint(self, given: str) -> str:
        """What to say after "unknown region code": the codes nearest the one given (by code or by name, so a typo
        or "Dunhuang" both find 620982), the prefectures and the province; the full list is GET /api/v1/regions."""
        import difflib

        text = given.strip()[:40]
        by_name = {r.name.lower(): r.code for r in self._by_code.values()}
        by_name.update({r.name_zh: r.code for r in self._by_code.values() if r.name_zh})
        near = difflib.get_close_matches(text, list(self._by_code), n=3, cutoff=0.6)
        near += [by_name[n] for n in difflib.get_close_matches(text.lower(), list(by_name), n=3, cutoff=0.6)]
        near += [by_name[n] for n in difflib.get_close_matches(text, list(by_name), n=3, cutoff=0.6)]
        named = lambda code: f"{code} {self._by_code[code].name}"  # noqa: E731
        parts = []
        if near:
            parts.append("did you mean " + ", ".join(named(c) for c in dict.fromkeys(near)))
        prefectures = sorted(r.code for r in self.regions("prefecture"))
        province = [r.code for r in self.regions("province")]
        parts.append("prefectures: " + ", ".join(named(c) for c in prefectures))
        parts.append(", ".join(named(c) for c in province) + " (the province); every county: GET /api/v1/regions")
        return "; ".join(parts)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str | int) and self.is_known(code)

    def __len__(self) -> int:
        return len(self._by_code)


@lru_cache(maxsize=1)
def _default_tree() -> RegionTree:
    return RegionTree.from_csv(_read_data(REGIONS_FILE))


# ------------------------------------------------------------------------------ module-level conveniences


def covers(filter_code: str | int, county_code: str | int) -> bool:
    """:meth:`RegionTree.covers` on the package's region tree (the ``Covers`` callable routing takes)."""
    return RegionTree.load().covers(filter_code, county_code)


def is_known(code: str | int) -> bool:
    """Whether ``code`` is a Gansu region code of the package's tree (for subscription validation)."""
    return RegionTree.load().is_known(code)


def consistency_problems(registry: StationRegistry, tree: RegionTree) -> list[str]:
    """Stations whose county is not a known county of their prefecture (empty when the data agree)."""
    problems = []
    for s in registry:
        county = tree.region(s.county_code)
        if county is None or county.level != "county":
            problems.append(f"{s.station_id}: county {s.county_code} is not a known county")
        elif county.parent_code != s.prefecture_code:
            problems.append(f"{s.station_id}: county {s.county_code} is in {county.parent_code}, "
                            f"not in prefecture {s.prefecture_code}")
    return problems
