"""Acknowledgements: a receiving department confirms a warning with one request.

Every webhook carries ``ack_url`` = ``<public base>/api/v1/acks/<token>``. The token names the warning, the event,
the subscription and the event's level, and is signed with the service's data key (``Sealer.sign_token``, a key
derived for URL tokens): nothing else in the URL is secret, and no one can make a token for another subscription
or warning. ``POST`` on it records one ``Acknowledgement`` on the compacted ``alerts.acks`` topic (key
``warning_id:subscription_id:event_id``, ``ews-mac`` header like every control record) and answers 204; a repeat
answers 204 and writes nothing (the token is used once; it stays valid so a receiver's retry is harmless).

``AckBook`` is the view of that topic every worker mirrors: who acknowledged which warning, when, at which level.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import orjson

from warning.shared import metrics
from warning.shared.bus import Topic
from warning.shared.records import WarningLevel
from warning.shared.sealing import Sealer
from warning.shared.times import iso_utc

log = logging.getLogger(__name__)

ACK_PATH = "/api/v1/acks/"
TOKEN_PURPOSE = "ack/v1"
MAX_TOKEN_CHARS = 400  # a real token is ~170 characters; longer input is junk and is not decoded


class Acknowledgement(TypedDict):
    warning_id: str
    event_id: str
    subscription_id: str
    name: str  # the subscription's name when it acknowledged
    level: str  # the acknowledged event's level: an upgrade needs a new acknowledgement
    at: str  # UTC ISO-8601, when the service took the acknowledgement


@dataclass(frozen=True)
class AckClaim:
    """What a valid token says: this subscription was sent this event of this warning at this level."""

    warning_id: str
    event_id: str
    subscription_id: str
    level: str

    @property
    def key(self) -> str:
        return f"{self.warning_id}:{self.subscription_id}:{self.event_id}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def ack_token(sealer: Sealer, warning_id: str, event_id: str, subscription_id: str, level: str) -> str:
    """``<base64url payload>.<key id>.<base64url MAC>``: deterministic, so every attempt of a webhook carries the
    same body bytes (its signature and ``webhook-id`` stay what receivers deduplicate on)."""
    payload = "|".join((warning_id, event_id, subscription_id, level)).encode()
    return f"{_b64(payload)}.{sealer.sign_token(TOKEN_PURPOSE, payload)}"


def ack_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}{ACK_PATH}{token}"


def parse_ack_token(sealer: Sealer, token: str) -> AckClaim | None:
    """The claim of a token this service signed, or None for anything else (never raises on junk)."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        return None
    encoded, _, signed = token.partition(".")
    try:
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        return None
    if not sealer.token_ok(TOKEN_PURPOSE, payload, signed):
        return None
    try:
        warning_id, event_id, subscription_id, level = payload.decode().split("|")
    except (UnicodeDecodeError, ValueError):
        return None
    return AckClaim(warning_id, event_id, subscription_id, level)


class AckBook:
    """Acknowledgements from the ``alerts.acks`` topic (a whole-topic mirror on every worker) plus this worker's
    own writes, applied at once. Records without the service's MAC are refused and counted."""

    def __init__(self, topic: Topic, sealer: Sealer,
                 on_ack: Callable[[Acknowledgement], None] | None = None) -> None:
        self.topic, self.sealer, self.on_ack = topic, sealer, on_ack  # on_ack: the console's live feed
        self._by_warning: dict[str, dict[str, Acknowledgement]] = {}  # warning id -> record key -> record
        self.caught_up = asyncio.Event()  # set by the mirror once it has read the topic to its end once
        self.changed_at: dict[str, float] = {}  # warning id -> when its acknowledgements last changed (Last-Modified)

    def mirror(self, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
        if key is None:
            return
        name = self.topic.get_topic_name()
        why = self.sealer.check(name, key, value, headers)
        record: Any = None
        if why is None and value is not None:
            try:
                record = orjson.loads(value)
                if not isinstance(record, dict) or not all(isinstance(record.get(f), str) for f in
                                                           Acknowledgement.__annotations__):
                    why = "malformed"
            except orjson.JSONDecodeError:
                why = "malformed"
        if why is not None:
            metrics.RECORDS_REJECTED.labels(name, why).inc()
            log.warning("alerts.acks: refusing the record for %r (%s): not applied",
                        key.decode(errors="replace")[:120], why)
            return
        if record is not None:
            self._apply(key.decode(), record)

    def _apply(self, key: str, record: Acknowledgement) -> bool:
        """Keep the first acknowledgement of a key (two workers may take the same token at once)."""
        acks = self._by_warning.setdefault(record["warning_id"], {})
        if key in acks and acks[key]["at"] <= record["at"]:
            return False
        acks[key] = record
        self.changed_at[record["warning_id"]] = time.time()
        if self.on_ack is not None:
            self.on_ack(record)
        return True

    def has(self, claim: AckClaim) -> bool:
        return claim.key in self._by_warning.get(claim.warning_id, {})

    async def acknowledge(self, claim: AckClaim, name: str, now: float | None = None) -> bool:
        """Record the claim's acknowledgement; False (nothing written) when it was already recorded."""
        if self.has(claim):
            return False
        record: Acknowledgement = {"warning_id": claim.warning_id, "event_id": claim.event_id,
                                   "subscription_id": claim.subscription_id, "name": name, "level": claim.level,
                                   "at": iso_utc(time.time() if now is None else now)}
        key, value = claim.key.encode(), orjson.dumps(record)
        await self.topic.send(key=key, value=value,
                              headers=self.sealer.headers(self.topic.get_topic_name(), key, value))
        self._apply(claim.key, record)
        metrics.ACKS.labels(claim.level).inc()
        return True

    def of_warning(self, warning_id: str) -> list[Acknowledgement]:
        """The warning's acknowledgements, oldest first."""
        return sorted(self._by_warning.get(warning_id, {}).values(), key=lambda a: (a["at"], a["subscription_id"]))

    def acknowledged(self, warning_id: str, subscription_id: str, level: str) -> bool:
        """Whether the subscription acknowledged an event of the warning at ``level`` or above."""
        wanted = WarningLevel.parse(level)
        return any(a["subscription_id"] == subscription_id and WarningLevel.parse(a["level"]) >= wanted
                   for a in self._by_warning.get(warning_id, {}).values())
