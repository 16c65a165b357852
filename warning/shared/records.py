"""Wire records: JSON on the wire (orjson), SI units, UTC ISO-8601 times.

Records are plain dataclasses rather than ``faust.Record``: the hot path carries batches of observations as raw
orjson bytes (BROKER.md: deserialising into models costs ~20 % per event), and plain types keep ``indices/``
and ``ingest/`` free of faust.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

# Stable ids (warning events, webhook-ids) for replay-safe deduplication: uuid5 under this namespace.
NAMESPACE = uuid.UUID("6f1c2b8e-5d0a-4e7b-9a55-2f0c7e1d4a90")

# Measured elements an Observation may carry, with their units (docs/ARCHITECTURE.md "Records").
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


# Whether a report (and every warning made from it) is live: ``actual`` (the default), or a drill or demo
# (``exercise``) or a technical test (``test``), as CAP 1.2 §3.2.1 status. Exercise and test reports are graded
# in their own station state and region chains and never reach a subscription that did not opt in.
STATUSES = ("actual", "exercise", "test")
ACTUAL = "actual"


def chain_key(region_code: str, hazard: str, status: str = ACTUAL) -> str:
    """The key of a region's warning chain (``region_state``, ``warnings``): ``region:hazard`` for actual
    reports (the keys deployments already hold), ``region:hazard:status`` for exercise and test chains, so they
    never mix with the actual chain of the same county and hazard."""
    return f"{region_code}:{hazard}" if status == ACTUAL else f"{region_code}:{hazard}:{status}"


def parse_chain_key(key: str) -> tuple[str, str, str]:
    """(region code, hazard, status) of a ``chain_key``."""
    parts = key.split(":")
    if len(parts) >= 3 and parts[-1] in STATUSES:
        return ":".join(parts[:-2]), parts[-2], parts[-1]
    region, _, hazard = key.rpartition(":")
    return region, hazard, ACTUAL


def status_of(record: Any) -> str:
    """A signal's, batch's or event's status; records written before statuses existed are actual."""
    return str(record.get("status") or ACTUAL) if isinstance(record, dict) else ACTUAL


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


class Signal(TypedDict, total=False):
    """A ``signals`` record (ingest -> warning, keyed by region): a station's level for one hazard (kind
    ``station``), a prefecture's roll-up of a county event (``county``), a timer ``tick`` or an
    ``operator_cancel``. Every kind carries region_code, hazard and time; the rest depends on the kind
    (``warning.grading.apply_signal``)."""

    kind: Literal["station", "county", "grid", "tick", "operator_cancel", "backfill", "review"]
    region_code: str
    region_level: str
    region_name: str
    region_name_zh: str
    prefecture_code: str | None
    hazard: str
    time: str
    level: str | None
    station_id: str
    station_name: str
    quantity: str
    value: float | None
    basis: str
    valid_to: str
    accepted_at: float
    county_code: str
    onset: str
    expires: str
    stations: list[dict[str, Any]]
    status: str  # exercise or test (absent: actual); part of the chain key
    subscription_id: str  # backfill: the new or resumed subscription
    event: WarningEvent  # backfill: the warning's latest event as the API's view holds it
    draft_id: str  # review: the draft decided on
    action: str  # review: approve | reject
    operator: str  # review, operator_cancel: the named operator (warning.operator_tokens)
    at: str  # review: when the operator decided (UTC)
    edits: dict[str, Any]  # review (approve): edited headline / description / instruction / expires
    reason: str  # review (reject): why
    # grid (a county's level from a forecast grid's cells, warning.grid_signals): share of the county at the level,
    # km² at it, the cells as CAP polygons ([[lat, lon], ...] closed), the grid run's lead and file
    share: float
    area_km2: float
    polygons: list[list[list[float]]]
    lead_h: float
    source: str
    bases: list[str]  # county (roll-up): the bases of the county's warning


class WarningEvent(TypedDict):
    """A ``warnings`` record (warning -> alerts and every reader): one step of a warning's alert/update/cancel
    chain for one region and hazard (``warning.grading``); CAP 1.2 is rendered from it."""

    id: str
    warning_id: str
    seq: int
    msg_type: Literal["alert", "update", "cancel"]
    change: str
    region_code: str
    region_level: str
    region_name: str
    region_name_zh: str
    prefecture_code: str | None
    hazard: str
    level: str
    level_zh: str
    basis: str
    sent: str
    onset: str
    expires: str
    stations: list[dict[str, Any]]
    references: list[str]
    headline_zh: str
    headline_en: str
    description_zh: str
    description_en: str
    instruction_zh: str
    instruction_en: str
    cma_code: str
    category: str
    severity: str
    urgency: str
    certainty: str
    source: str
    status: NotRequired[str]  # actual | exercise | test (events before statuses existed: actual)
    note: NotRequired[str]  # exercise and test: what the message is (CAP note)
    review: NotRequired[dict[str, Any]]  # approved at the desk: decision, by, at, draft_id, edited (warning.review)
    emitted_at: NotRequired[float]
    bases: NotRequired[list[str]]  # what the county's live entries are: "station" and / or "grid" (forecast cells)
    grid: NotRequired[dict[str, Any]]  # the live grid level: level, quantity, value, share, area_km2, times, source
    area_polygons: NotRequired[list[list[list[float]]]]  # the grid alone holds the level: its cells, CAP polygons


WARNING_HEADERS = ("ews-event-type", "ews-hazard", "ews-level", "ews-region-level", "ews-region-code",
                   "ews-status")


def warning_headers(event: WarningEvent) -> list[tuple[str, bytes]]:
    """The Kafka headers of a ``warnings`` record, so a consumer can route or skip a record without decoding it
    (docs/TOPICS.md): the webhook type (``warning.alert`` / ``.update`` / ``.cancel``), hazard, level, region
    level (county, or a prefecture roll-up), region code and status; UTF-8 values."""
    values = (f"warning.{event['msg_type']}", event["hazard"], event["level"], event.get("region_level", "county"),
              event["region_code"], status_of(event))
    return [(name, str(value).encode()) for name, value in zip(WARNING_HEADERS, values, strict=True)]


class Delivery(TypedDict):
    """An ``alerts.outbox`` / ``alerts.retry.N`` / ``alerts.dead`` record: one warning event for one
    subscription. ``webhook_id`` is stable across attempts and redrives (receivers deduplicate on it)."""

    webhook_id: str
    subscription_id: str
    type: str  # the webhook type: warning.alert | warning.update | warning.cancel
    event: WarningEvent
    attempt: int
    first_attempt_at: float | None
    not_before: NotRequired[float]
    last_error: NotRequired[str | None]
    parked_at: NotRequired[str]
    redriven_at: NotRequired[str]
    backfill: NotRequired[bool]  # an active warning sent to a subscription made (or resumed) after it was issued
    reminder: NotRequired[bool]  # sent again: the receiver had not acknowledged it in time (rules.toml)
    escalation: NotRequired[bool]  # sent to a fallback subscription: a receiver had not acknowledged it in time


class Receipt(TypedDict):
    """An ``alerts.receipts`` record: the outcome of one delivery attempt."""

    webhook_id: str
    subscription_id: str
    department: str
    warning_id: str | None
    event_id: str | None
    type: str
    attempt: int
    result: str
    status: int | None
    latency_s: float
    error: str | None  # the operator's detail (URL query strings redacted): shown with the token only
    time: str
    error_class: NotRequired[str | None]  # timeout, refused, HTTP 503, ...: what views without the token show
    why: NotRequired[str]  # backfill, reminder or escalation: why it was sent beyond routing (absent: routed)


class SeenOnce:
    """Receipts lately seen, by attempt: a worker applies its own receipts at once and then reads them back through
    the receipts mirror, and each consumer of them must count an attempt once. Bounded: forgets all at ``limit``."""

    def __init__(self, limit: int = 20000) -> None:
        self.limit = limit
        self._seen: set[tuple[str, int, str]] = set()

    def first(self, receipt: Receipt) -> bool:
        key = (receipt["webhook_id"], receipt["attempt"], receipt["result"])
        if key in self._seen:
            return False
        if len(self._seen) >= self.limit:
            self._seen.clear()
        self._seen.add(key)
        return True
