"""Silences: time-bounded holds on deliveries (a receiver down for planned work, a region's duty desk told by
phone), per subscription or per regions and hazards, each with a reason and its author. A delivery a silence
holds is parked as held (as a paused subscription's are) and sent when the silence ends, on its own at ``ends`` or
when an operator ends it. Red warnings and cancels are never silenced.

The ``silences`` topic (compacted, one partition, keyed by silence id) holds the records, each with the service's
MAC (``ews-mac``): a record without a valid one is refused and counted, so nobody on the broker can silence a
department."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from warning.shared import metrics
from warning.shared.bus import Topic
from warning.shared.sealing import Sealer
from warning.shared.times import iso_utc

log = logging.getLogger(__name__)

SILENCED = "silenced by"  # the reason prefix of deliveries a silence holds: "silenced by <id> (...)"
NEVER_SILENCED_LEVEL = "red"
MAX_TEXT = 500
KEEP_ENDED_S = 7 * 86400  # ended silences listed this long (the topic keeps the latest record of each)

Covers = Callable[[str, str], bool]  # (filter region code, event region code) -> bool


class SilenceError(ValueError):
    """A silence that cannot be made (the message names the field)."""


def _time(value: Any, name: str) -> datetime:
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise SilenceError(f"{name}: an ISO-8601 time with a UTC offset") from None
    if t.tzinfo is None:
        raise SilenceError(f"{name}: an ISO-8601 time with a UTC offset")
    return t


@dataclass
class Silence:
    id: str
    reason: str
    author: str
    starts: str
    ends: str
    created: str
    subscription_id: str | None = None
    regions: list[str] = field(default_factory=list)
    hazards: list[str] = field(default_factory=list)
    ended_by: str | None = None  # the operator who ended it early (DELETE)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Silence:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})

    def state(self, now: str) -> str:
        return "pending" if now < self.starts else "active" if now < self.ends else "ended"

    def held_prefix(self) -> str:
        return f"{SILENCED} {self.id}"

    def held_reason(self) -> str:
        return f"{self.held_prefix()} ({self.reason[:100]}): held until {self.ends}"

    def covers(self, sub_id: str, event: Mapping[str, Any], covers: Covers, now: str) -> bool:
        """Whether this silence holds ``event``'s delivery to subscription ``sub_id`` at ``now``."""
        if self.state(now) != "active":
            return False
        if event.get("level") == NEVER_SILENCED_LEVEL or event.get("msg_type") == "cancel":
            return False
        if self.subscription_id is not None:
            return self.subscription_id == sub_id
        code = str(event.get("region_code"))
        return event.get("hazard") in self.hazards and any(covers(r, code) for r in self.regions)


def new_silence(body: Any, *, author: str, now: datetime, known_subscription: Callable[[str], str | None],
                known_region: Callable[[str], bool], known_hazards: set[str], max_hours: float) -> Silence:
    """A silence from an API body: ``subscription_id``, or ``regions`` + ``hazards``; ``starts`` (default now),
    ``ends`` (after now and starts, within ``max_hours`` of the start) and ``reason``. ``known_subscription``
    resolves an id or unique prefix (None: unknown)."""
    if not isinstance(body, dict):
        raise SilenceError("body: an object")
    unknown = sorted(set(body) - {"subscription_id", "regions", "hazards", "starts", "ends", "reason"})
    if unknown:
        raise SilenceError(f"{unknown[0][:40]}: unknown field")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_TEXT:
        raise SilenceError(f"reason: text of 1 to {MAX_TEXT} characters")
    sub_id, regions, hazards = body.get("subscription_id"), body.get("regions"), body.get("hazards")
    if sub_id is not None:
        if regions or hazards:
            raise SilenceError("subscription_id: either a subscription or regions + hazards, not both")
        if not isinstance(sub_id, str) or (resolved := known_subscription(sub_id)) is None:
            raise SilenceError("subscription_id: no such subscription")
        sub_id, regions, hazards = resolved, [], []
    else:
        if not isinstance(regions, list) or not regions or not all(isinstance(r, str) for r in regions):
            raise SilenceError("regions: a list of region codes (or give subscription_id)")
        if not isinstance(hazards, list) or not hazards or not all(isinstance(h, str) for h in hazards):
            raise SilenceError("hazards: a list of hazards (or give subscription_id)")
        bad = next((r for r in regions if not known_region(r)), None)
        if bad is not None:
            raise SilenceError(f"regions: unknown region code {bad[:20]!r}")
        bad = next((h for h in hazards if h not in known_hazards), None)
        if bad is not None:
            raise SilenceError(f"hazards: unknown hazard {bad[:40]!r}; known: {', '.join(sorted(known_hazards))}")
        if len(regions) > 500 or len(hazards) > 50:
            raise SilenceError("regions / hazards: too many entries")
    starts = _time(body["starts"], "starts") if "starts" in body else now
    if "ends" not in body:
        raise SilenceError("ends: required (a silence is time-bounded)")
    ends = _time(body["ends"], "ends")
    if ends <= max(now, starts):
        raise SilenceError("ends: after now and after starts")
    if ends - starts > timedelta(hours=max_hours):
        raise SilenceError(f"ends: at most {max_hours:g} h after starts (EWS_SILENCE_MAX_H)")
    return Silence(id=str(uuid.uuid4()), reason=reason.strip(), author=author, starts=iso_utc(starts),
                   ends=iso_utc(ends), created=iso_utc(now), subscription_id=sub_id, regions=list(regions or []),
                   hazards=list(hazards or []))


class SilenceBook:
    """The silences this worker knows: from the ``silences`` mirror (MAC checked) and its own writes."""

    def __init__(self, topic: Topic, sealer: Sealer, covers: Covers) -> None:
        self.topic, self.sealer, self.covers = topic, sealer, covers
        self.by_id: dict[str, Silence] = {}

    def __iter__(self) -> Iterator[Silence]:
        return iter(list(self.by_id.values()))

    def mirror(self, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
        name = self.topic.get_topic_name()
        why = self.sealer.check(name, key, value, headers)
        silence = None
        if why is None and value:
            try:
                silence = Silence.from_dict(orjson.loads(value))
            except (orjson.JSONDecodeError, TypeError, AttributeError):
                why = "malformed"
        if why is not None or key is None:
            metrics.RECORDS_REJECTED.labels(name, why or "malformed").inc()
            log.warning("silences: refusing a record (%s): not applied", why)
            return
        self._apply(key.decode(errors="replace"), silence)

    def _apply(self, sid: str, silence: Silence | None) -> None:
        if silence is None:
            self.by_id.pop(sid, None)
        else:
            self.by_id[sid] = silence

    async def put(self, silence: Silence) -> None:
        key, value = silence.id.encode(), orjson.dumps(silence.to_dict())
        headers = self.sealer.headers(self.topic.get_topic_name(), key, value)
        await self.topic.send(key=key, value=value, headers=headers)
        self._apply(silence.id, silence)

    def holding(self, sub_id: str, event: Mapping[str, Any], now: datetime) -> Silence | None:
        """The silence that holds this delivery now, if any."""
        t = iso_utc(now)
        return next((s for s in self if s.covers(sub_id, event, self.covers, t)), None)

    def listing(self, now: datetime, include_ended: bool = False) -> list[Silence]:
        t, keep_from = iso_utc(now), iso_utc(now - timedelta(seconds=KEEP_ENDED_S))
        return sorted((s for s in self if (include_ended and s.ends >= keep_from) or s.state(t) != "ended"),
                      key=lambda s: s.starts)

    def ended(self, now: datetime) -> list[Silence]:
        """Silences that ended within KEEP_ENDED_S (what they held goes out)."""
        t, keep_from = iso_utc(now), iso_utc(now - timedelta(seconds=KEEP_ENDED_S))
        return [s for s in self if s.state(t) == "ended" and s.ends >= keep_from]

    def refresh_gauge(self, now: datetime) -> None:
        t = iso_utc(now)
        metrics.SILENCES_ACTIVE.set(sum(1 for s in self if s.state(t) == "active"))
