"""Subscriptions: who receives which warnings, where. Validated here; stored in the compacted
``subscriptions`` topic (key = id, value = JSON, tombstone = delete) and held in memory by every worker."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from alerts.signing import new_secret
from warning.records import WarningLevel

DEPARTMENTS = ("agriculture", "water", "health", "relief", "other")
FORMATS = ("json", "cap")


class SubscriptionError(ValueError):
    """Invalid subscription; the message names the field."""


@dataclass
class Subscription:
    id: str
    name: str
    department: str
    url: str
    secret: str
    regions: list[str]
    hazards: list[str]  # empty: every hazard
    min_level: str = "blue"
    format: str = "json"
    active: bool = True
    created: str = ""
    updated: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """What the API shows after creation: never the secret."""
        d = self.to_dict()
        d.pop("secret")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Subscription:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def _str_list(raw: dict[str, Any], key: str) -> list[str]:
    v = raw.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str | int) and not isinstance(x, bool) for x in v):
        raise SubscriptionError(f"{key}: expected a list of strings")
    return [str(x) for x in v]


def new_subscription(raw: Any, *, known_region: Callable[[str], bool], known_hazards: set[str],
                     now: datetime | None = None) -> Subscription:
    if not isinstance(raw, dict):
        raise SubscriptionError("body: expected a JSON object")
    allowed = {"name", "department", "url", "regions", "hazards", "min_level", "format"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise SubscriptionError(f"{unknown[0]}: unknown field")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise SubscriptionError("name: required string (1-200 characters)")
    dept = raw.get("department", "other")
    if dept not in DEPARTMENTS:
        raise SubscriptionError(f"department: one of {', '.join(DEPARTMENTS)}")
    url = raw.get("url")
    if not isinstance(url, str) or len(url) > 2000:
        raise SubscriptionError("url: required string")
    regions = _str_list(raw, "regions")
    if not regions:
        raise SubscriptionError("regions: at least one GB/T 2260 code (620000 for the whole province)")
    for r in regions:
        if not known_region(r):
            raise SubscriptionError(f"regions: unknown region code {r!r}")
    hazards = _str_list(raw, "hazards")
    for h in hazards:
        if h not in known_hazards:
            raise SubscriptionError(f"hazards: unknown hazard {h!r}; known: {', '.join(sorted(known_hazards))}")
    try:
        min_level = WarningLevel.parse(str(raw.get("min_level", "blue"))).colour
    except ValueError as exc:
        raise SubscriptionError(f"min_level: {exc}") from None
    fmt = raw.get("format", "json")
    if fmt not in FORMATS:
        raise SubscriptionError(f"format: one of {', '.join(FORMATS)}")
    ts = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Subscription(id=str(uuid.uuid4()), name=name.strip(), department=dept, url=url, secret=new_secret(),
                        regions=regions, hazards=hazards, min_level=min_level, format=fmt, created=ts,
                        updated=ts)


class SubscriptionStore:
    """The in-memory view of the compacted topic. ``apply`` is idempotent, so replays are harmless."""

    def __init__(self) -> None:
        self._subs: dict[str, Subscription] = {}

    def apply(self, key: str, value: dict[str, Any] | None) -> None:
        if value is None:
            self._subs.pop(key, None)
        else:
            self._subs[key] = Subscription.from_dict(value)

    def get(self, sub_id: str) -> Subscription | None:
        return self._subs.get(sub_id)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self._subs.values()))

    def __len__(self) -> int:
        return len(self._subs)
