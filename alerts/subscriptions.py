"""Subscriptions: who receives which warnings, where. Validated here; stored in the compacted
``subscriptions`` topic (key = id, value = JSON with the secrets sealed, tombstone = delete; every record and
tombstone with the service's MAC) and held in memory by every worker."""

from __future__ import annotations

import logging
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from alerts.signing import new_secret
from warning.shared import metrics
from warning.shared.bus import Topic
from warning.shared.records import ACTUAL, STATUSES, WarningLevel
from warning.shared.regions import RegionTree
from warning.shared.sealing import Sealer, SealError, is_sealed
from warning.shared.times import iso_utc, now_iso

log = logging.getLogger(__name__)

DEPARTMENTS = ("agriculture", "water", "health", "relief", "other")
FORMATS = ("json", "cap")
BASES = ("observed", "forecast")
MSG_TYPES = ("alert", "update", "cancel")
DEFAULT_GRACE_S = 24 * 3600  # old and new secret both sign for a day after a rotation
DEFAULT_MAX_LIST_ITEMS = 500  # Settings.max_list_items (EWS_SUBSCRIPTION_MAX_LIST) is what the API passes
SECRET_FIELDS = ("secret", "previous_secret")  # sealed on the topic (warning.shared.sealing), plain in memory


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
    basis: list[str] = field(default_factory=list)  # empty: observed and forecast
    msg_types: list[str] = field(default_factory=list)  # empty: alert, update and cancel
    # which statuses it receives: actual only unless it opts in to exercise (drills, demos) or test messages
    statuses: list[str] = field(default_factory=lambda: [ACTUAL])
    # a fallback (a duty office, say) gets no warning by routing: only the red and orange warnings of its regions
    # that a receiver did not acknowledge in time (rules.toml [acknowledgement]), then their updates and cancel
    fallback: bool = False
    active: bool = True
    paused_reason: str | None = None
    previous_secret: str | None = None
    previous_secret_expires: float | None = None  # unix time; until then both secrets sign
    created: str = ""
    updated: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def signing_secrets(self, now: float) -> list[str]:
        """The secrets to sign with: the current one, plus the previous one during a rotation's grace period."""
        if self.previous_secret and self.previous_secret_expires and now < self.previous_secret_expires:
            return [self.secret, self.previous_secret]
        return [self.secret]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """What the API shows after creation: never the secret."""
        d = self.to_dict()
        d.pop("secret")
        d.pop("previous_secret")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Subscription:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def _str_list(raw: dict[str, Any], key: str, max_items: int) -> list[str]:
    v = raw.get(key, [])
    if isinstance(v, list) and len(v) > max_items:
        raise SubscriptionError(f"{key}: {len(v)} entries; at most {max_items}")
    if not isinstance(v, list) or not all(isinstance(x, str | int) and not isinstance(x, bool) for x in v):
        raise SubscriptionError(f"{key}: expected a list of strings")
    return [str(x) for x in v]


def printable(text: str) -> str:
    """``text`` without control and format characters (C0/C1 controls such as ESC, bidi overrides): a name
    reaches operators' terminals (``ews subscribers list``) and pages."""
    return "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf"))


EDITABLE = ("name", "department", "url", "regions", "hazards", "min_level", "format", "basis", "msg_types",
            "statuses", "fallback")


def _validated_fields(raw: Any, *, known_region: Callable[[str], bool], known_hazards: set[str],
                      partial: bool, max_list_items: int = DEFAULT_MAX_LIST_ITEMS) -> dict[str, Any]:
    """The editable fields of ``raw`` checked one by one; errors name the field."""
    if not isinstance(raw, dict):
        raise SubscriptionError("body: expected a JSON object")
    unknown = sorted(set(raw) - set(EDITABLE))
    if unknown:
        raise SubscriptionError(f"{unknown[0]}: unknown or read-only field")
    out: dict[str, Any] = {}
    if "name" in raw or not partial:
        name = raw.get("name")
        if isinstance(name, str):
            name = " ".join(printable(name.replace("\t", " ").replace("\n", " ")).split())
        if not isinstance(name, str) or not name or len(name) > 200:
            raise SubscriptionError("name: required string (1-200 printable characters)")
        out["name"] = name
    if "department" in raw or not partial:
        dept = raw.get("department", "other")
        if dept not in DEPARTMENTS:
            raise SubscriptionError(f"department: one of {', '.join(DEPARTMENTS)}")
        out["department"] = dept
    if "url" in raw or not partial:
        url = raw.get("url")
        if not isinstance(url, str) or len(url) > 2000:
            raise SubscriptionError("url: required string")
        out["url"] = url
    if "regions" in raw or not partial:
        regions = _str_list(raw, "regions", max_list_items)
        if not regions:
            raise SubscriptionError("regions: at least one GB/T 2260 code (620000 for the whole province)")
        for r in regions:
            if not known_region(r):
                raise SubscriptionError(f"regions: unknown region code {r[:40]!r}; "
                                        f"{RegionTree.load().valid_codes_hint(r)}")
        out["regions"] = regions
    if "hazards" in raw or not partial:
        hazards = _str_list(raw, "hazards", max_list_items)
        for h in hazards:
            if h not in known_hazards:
                raise SubscriptionError(f"hazards: unknown hazard {h!r}; known: {', '.join(sorted(known_hazards))}")
        out["hazards"] = hazards
    if "min_level" in raw or not partial:
        try:
            out["min_level"] = WarningLevel.parse(str(raw.get("min_level", "blue"))).colour
        except ValueError as exc:
            raise SubscriptionError(f"min_level: {exc}") from None
    if "format" in raw or not partial:
        fmt = raw.get("format", "json")
        if fmt not in FORMATS:
            raise SubscriptionError(f"format: one of {', '.join(FORMATS)}")
        out["format"] = fmt
    for key, allowed in (("basis", BASES), ("msg_types", MSG_TYPES)):
        if key in raw or not partial:
            values = _str_list(raw, key, max_list_items)
            bad = [v for v in values if v not in allowed]
            if bad:
                raise SubscriptionError(f"{key}: {bad[0]!r} is not one of {', '.join(allowed)}")
            out[key] = values
    if "statuses" in raw or not partial:
        statuses = _str_list(raw, "statuses", max_list_items) if "statuses" in raw else [ACTUAL]
        bad = [v for v in statuses if v not in STATUSES]
        if bad or not statuses:
            raise SubscriptionError(f"statuses: a non-empty list of {', '.join(STATUSES)}"
                                    + (f" ({bad[0]!r} is not one)" if bad else ""))
        out["statuses"] = list(dict.fromkeys(statuses))
    if "fallback" in raw or not partial:
        fallback = raw.get("fallback", False)
        if not isinstance(fallback, bool):
            raise SubscriptionError("fallback: true or false")
        out["fallback"] = fallback
    return out


def _now(now: datetime | None) -> str:
    return iso_utc(now) if now is not None else now_iso()


def new_subscription(raw: Any, *, known_region: Callable[[str], bool], known_hazards: set[str],
                     now: datetime | None = None, max_list_items: int = DEFAULT_MAX_LIST_ITEMS) -> Subscription:
    fields = _validated_fields(raw, known_region=known_region, known_hazards=known_hazards, partial=False,
                               max_list_items=max_list_items)
    ts = _now(now)
    return Subscription(id=str(uuid.uuid4()), secret=new_secret(), created=ts, updated=ts, **fields)


def patched_subscription(sub: Subscription, raw: Any, *, known_region: Callable[[str], bool],
                         known_hazards: set[str], now: datetime | None = None,
                         max_list_items: int = DEFAULT_MAX_LIST_ITEMS) -> Subscription:
    fields = _validated_fields(raw, known_region=known_region, known_hazards=known_hazards, partial=True,
                               max_list_items=max_list_items)
    return replace(sub, **fields, updated=_now(now))


def rotated_subscription(sub: Subscription, grace_s: float = DEFAULT_GRACE_S, now: float | None = None
                         ) -> Subscription:
    """A new secret; the old one keeps signing (space-separated second signature) for ``grace_s`` seconds."""
    t = time.time() if now is None else now
    return replace(sub, secret=new_secret(), previous_secret=sub.secret, previous_secret_expires=t + grace_s,
                   updated=_now(None))


def paused_subscription(sub: Subscription, active: bool, reason: str | None = None) -> Subscription:
    return replace(sub, active=active, paused_reason=None if active else reason, updated=_now(None))


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


def sealed_record(sub: Subscription, sealer: Sealer) -> dict[str, Any]:
    """The subscription as the topic stores it: its secrets sealed, bound to its id and field."""
    d = sub.to_dict()
    for f in SECRET_FIELDS:
        if d.get(f):
            d[f] = sealer.seal(d[f], f"{sub.id}:{f}")
    return d


def opened_record(sub_id: str, d: dict[str, Any], sealer: Sealer) -> dict[str, Any]:
    """A topic record with its secrets opened (SealError when one cannot be). A plain ``whsec_`` secret in a
    record that carries a valid MAC (a writer from before sealing whose record was adopted) is accepted with a
    warning and sealed on the subscription's next write."""
    for f in SECRET_FIELDS:
        v = d.get(f)
        if isinstance(v, str) and v:
            if is_sealed(v):
                d[f] = sealer.open(v, f"{sub_id}:{f}")
            else:
                log.warning("subscription %s: %s is not sealed on the topic; it is sealed on its next write",
                            sub_id, f, extra={"subscription_id": sub_id})
    return d


class SubscriptionBook(SubscriptionStore):
    """The store kept from the ``subscriptions`` topic (a whole-topic mirror on every worker), plus this worker's
    writes to it, applied at once (read-your-writes) and skipped when the mirror brings older records back.
    Records and tombstones without the service's MAC, or with a secret that does not open, are refused."""

    def __init__(self, topic: Topic, sealer: Sealer) -> None:
        super().__init__()
        self.topic, self.sealer = topic, sealer
        self._own_writes: dict[str, bytes | None] = {}  # subscription id -> value written, until mirrored back

    def mirror(self, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
        if key is None:
            return
        name = self.topic.get_topic_name()
        why = self.sealer.check(name, key, value, headers)
        sub_id = key.decode(errors="replace")
        try:
            record = opened_record(sub_id, orjson.loads(value), self.sealer) if value and why is None else None
        except (SealError, orjson.JSONDecodeError, TypeError, AttributeError) as exc:
            why = "unsealable" if isinstance(exc, SealError) else "malformed"
        if why is not None:
            metrics.RECORDS_REJECTED.labels(name, why).inc()
            log.warning("subscriptions: refusing the record for %r (%s): not applied", sub_id[:64], why)
            return
        if sub_id in self._own_writes:
            # this worker wrote this id and applied it already: records before ours (one partition) are older
            if self._own_writes[sub_id] != value:
                return
            del self._own_writes[sub_id]
        self.apply(sub_id, record)
        metrics.SUBSCRIPTIONS.set(len(self))

    async def put(self, sub: Subscription | None, sub_id: str) -> None:
        """Create, change or (with None) delete a subscription: secrets sealed, record and tombstone MACed."""
        value = orjson.dumps(sealed_record(sub, self.sealer)) if sub else None
        self._own_writes[sub_id] = value
        key = sub_id.encode()
        await self.topic.send(key=key, value=value,
                              headers=self.sealer.headers(self.topic.get_topic_name(), key, value))
        self.apply(sub_id, sub.to_dict() if sub else None)
        metrics.SUBSCRIPTIONS.set(len(self))
