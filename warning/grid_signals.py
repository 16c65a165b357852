"""GridArea records (``forecast`` topic, ``{"areas": [...]}``; made by ``ews ingest --format grid`` cell grading,
``warning.grid_grading``) -> ``grid`` signals for the counties' chains.

A grid signal is a county's forecast level for one hazard from a grid run: it enters the county's region state as
one entry beside the stations' (``grading.apply_signal``), so station- and grid-based signals of a county make one
chain, the highest live level wins, and the event says which bases contributed (``bases``) and, when the grid alone
decides the level, carries the affected cells as polygons (``area_polygons``, CAP ``<area>``)."""

from __future__ import annotations

from typing import Any

from ingest.validate import validate_grid_area
from warning.rules import Rules
from warning.shared.regions import RegionTree

_RANK = {"blue": 1, "yellow": 2, "orange": 3, "red": 4}


def grid_signals(rules: Rules, regions: RegionTree, areas: list[Any], extra: dict[str, Any]
                 ) -> tuple[list[dict[str, Any]], list[tuple[Any, str]]]:
    """(signals, rejects as (raw area, reason)). Signals of one county and hazard go most severe first, so each
    level's own polygons are the ones its entry keeps (``grading._station_entry``)."""
    def county(code: str) -> bool:
        region = regions.region(code)
        return region is not None and region.level == "county"
    out: list[dict[str, Any]] = []
    rejects: list[tuple[Any, str]] = []
    for raw in areas:
        try:
            a = validate_grid_area(raw, known_county=county, known_hazard=rules.__contains__)
        except ValueError as exc:
            rejects.append((raw, f"grid area: {exc}"))
            continue
        region = regions.region(a["county_code"])
        prefecture = regions.prefecture_of(a["county_code"])
        assert region is not None
        out.append({
            "kind": "grid", "region_code": region.code, "region_level": "county", "region_name": region.name,
            "region_name_zh": region.name_zh, "prefecture_code": prefecture.code if prefecture else None,
            "hazard": a["hazard"], "level": a["level"], "quantity": a["quantity"], "value": a["value"],
            "time": a["issued_at"], "basis": "forecast", "onset": a["valid_from"], "valid_to": a["valid_to"],
            "lead_h": a["lead_h"], "share": a["share"], "area_km2": a["area_km2"], "polygons": a["polygons"],
            "source": a["source"], **extra})
    out.sort(key=lambda s: (s["region_code"], s["hazard"], -_RANK[s["level"]]))
    return out, rejects
