"""Wire records: JSON on the wire (orjson), SI units, UTC ISO-8601 times.

Records are plain dataclasses rather than ``faust.Record``: the hot path carries batches of observations as raw
orjson bytes (BROKER.md: deserialising into models costs ~20 % per event), and plain types keep ``indices/``
and ``ingest/`` free of faust.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

# Measured elements an Observation may carry, with their units (the schema of ARCHITECTURE.md).
OBSERVATION_ELEMENTS: dict[str, str] = {
    "air_temp_c": "degC",
    "tmax_c": "degC",
    "tmin_c": "degC",
    "ground_tmin_c": "degC",  # 0 cm (ground surface) minimum, used for frost
    "rh_pct": "%",
    "dewpoint_c": "degC",
    "precip_mm": "mm",
    "precip_period_h": "h",
    "wind_ms": "m s-1",
    "gust_ms": "m s-1",
    "visibility_m": "m",
    "pressure_hpa": "hPa",
}


class WarningLevel(enum.IntEnum):
    """CMA signal colours (Order No. 16): blue IV .. red I. Ordered so that max() is the most severe."""

    BLUE = 1
    YELLOW = 2
    ORANGE = 3
    RED = 4

    @property
    def colour(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> WarningLevel:
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown level {value!r}; expected one of blue, yellow, orange, red") from None


@dataclass(slots=True)
class Observation:
    """One station report. ``time`` is UTC ISO-8601 (``2026-07-14T06:00:00Z``); missing elements are None."""

    station_id: str
    time: str
    air_temp_c: float | None = None
    tmax_c: float | None = None
    tmin_c: float | None = None
    ground_tmin_c: float | None = None
    rh_pct: float | None = None
    dewpoint_c: float | None = None
    precip_mm: float | None = None
    precip_period_h: float | None = None
    wind_ms: float | None = None
    gust_ms: float | None = None
    visibility_m: float | None = None
    pressure_hpa: float | None = None
    source: str = "unknown"
    qc: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Compact dict: None elements and empty qc are left out to keep batches small."""
        out: dict[str, Any] = {"station_id": self.station_id, "time": self.time}
        for name in OBSERVATION_ELEMENTS:
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        out["source"] = self.source
        if self.qc:
            out["qc"] = self.qc
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Observation:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(slots=True)
class ForecastPoint:
    """A forecast element value at a station (grid interpolated), valid over [valid_from, valid_to)."""

    station_id: str
    issued_at: str
    valid_from: str
    valid_to: str
    lead_h: float
    values: dict[str, float]
    source: str = "unknown"
