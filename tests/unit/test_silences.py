"""Silences (issue 20): time-bounded, per subscription or per regions + hazards, never red warnings or cancels;
held by the delivery stage as a paused subscription's deliveries are, and let go when they end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from alerts.dead_letters import DeadLetters
from alerts.dispatch import DeliveryStage
from alerts.silences import SilenceBook, SilenceError, new_silence
from warning.shared.regions import RegionTree
from warning.shared.sealing import KeyRing, Sealer

SEALER = Sealer(KeyRing.generate())
REGIONS = RegionTree.load()
NOW = datetime(2026, 7, 14, 6, tzinfo=UTC)


class Topic:
    def __init__(self, name: str) -> None:
        self.name, self.sent = name, []  # type: ignore[var-annotated]

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, *, key: bytes | None = None, value: bytes | None = None, partition: int | None = None,
                   headers: Any = None) -> None:
        self.sent.append((key, value, headers))


def make(body: dict[str, Any], now: datetime = NOW) -> Any:
    return new_silence(body, author="zhang", now=now,
                       known_subscription=lambda s: "sub-1" if "sub-1".startswith(s) else None,
                       known_region=REGIONS.is_known, known_hazards={"heat", "rainstorm"}, max_hours=168)


def ev(level: str = "orange", msg_type: str = "alert", hazard: str = "heat", region: str = "620982") -> dict[str, Any]:
    return {"id": "e1", "warning_id": "w1", "seq": 1, "level": level, "msg_type": msg_type, "hazard": hazard,
            "region_code": region, "expires": "2026-07-15T00:00:00Z"}


def at(hours: float) -> str:
    return (NOW + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_silence_names_what_is_wrong_with_it() -> None:
    cases = [({"ends": at(1)}, "reason"),
             ({"reason": "x"}, "regions"),
             ({"reason": "x", "subscription_id": "nope", "ends": at(1)}, "subscription_id"),
             ({"reason": "x", "subscription_id": "sub", "regions": ["620982"], "ends": at(1)}, "subscription_id"),
             ({"reason": "x", "regions": ["629999"], "hazards": ["heat"], "ends": at(1)}, "regions"),
             ({"reason": "x", "regions": ["620982"], "hazards": ["hail"], "ends": at(1)}, "hazards"),
             ({"reason": "x", "regions": ["620982"], "hazards": ["heat"]}, "ends"),
             ({"reason": "x", "subscription_id": "sub", "ends": at(-1)}, "ends"),
             ({"reason": "x", "subscription_id": "sub", "ends": at(200)}, "ends"),
             ({"reason": "x", "subscription_id": "sub", "ends": "soon"}, "ends"),
             ({"reason": "x", "subscription_id": "sub", "ends": at(1), "level": "red"}, "level")]
    for body, field in cases:
        with pytest.raises(SilenceError, match=f"^{field}"):
            make(body)
    s = make({"reason": "receiver maintenance", "subscription_id": "sub", "ends": at(2)})
    assert (s.subscription_id, s.author, s.starts, s.ends) == ("sub-1", "zhang", at(0), at(2))


def test_red_warnings_and_cancels_are_never_silenced_and_a_silence_ends_on_its_own() -> None:
    by_sub = make({"reason": "planned work", "subscription_id": "sub-1", "ends": at(2)})
    by_area = make({"reason": "duty desk told by phone", "regions": ["620900"], "hazards": ["heat"],
                    "ends": at(2)})  # the prefecture covers its counties
    now = at(1)
    for s in (by_sub, by_area):
        assert s.covers("sub-1", ev("orange"), REGIONS.covers, now)
        assert not s.covers("sub-1", ev("red"), REGIONS.covers, now)
        assert not s.covers("sub-1", ev("orange", "cancel"), REGIONS.covers, now)
        assert not s.covers("sub-1", ev("orange"), REGIONS.covers, at(2))  # ended
    assert not by_sub.covers("sub-2", ev("orange"), REGIONS.covers, now)
    assert by_area.covers("sub-2", ev("yellow", "update"), REGIONS.covers, now)
    assert not by_area.covers("sub-2", ev("orange", hazard="rainstorm"), REGIONS.covers, now)
    assert not by_area.covers("sub-2", ev("orange", region="620102"), REGIONS.covers, now)  # Lanzhou
    later = make({"reason": "next week", "subscription_id": "sub-1", "starts": at(24), "ends": at(30)})
    assert later.state(now) == "pending" and not later.covers("sub-1", ev(), REGIONS.covers, now)


def test_the_book_refuses_silences_without_the_mac() -> None:
    topic = Topic("silences")
    book = SilenceBook(topic, SEALER, REGIONS.covers)
    s = make({"reason": "planned work", "subscription_id": "sub-1", "ends": at(2)})
    asyncio.run(book.put(s))
    [(key, value, headers)] = topic.sent
    other = SilenceBook(Topic("silences"), SEALER, REGIONS.covers)
    other.mirror(key, value, [])  # forged on the broker: refused
    assert other.by_id == {}
    other.mirror(key, value, headers)
    assert other.holding("sub-1", ev(), NOW + timedelta(hours=1)) == s


class Subs:
    def __init__(self, sub: Any) -> None:
        self.sub = sub

    def get(self, sub_id: str) -> Any:
        return self.sub if sub_id == self.sub.id else None


def test_the_delivery_stage_holds_what_a_silence_covers_and_it_goes_out_when_the_silence_ends() -> None:
    from alerts.subscriptions import new_subscription

    sub = new_subscription({"name": "Jiuquan health", "department": "health", "url": "https://example.org/hook",
                            "regions": ["620900"]}, known_region=REGIONS.is_known, known_hazards={"heat"})
    now = datetime.now(UTC).replace(microsecond=0)
    dead, outbox = Topic("alerts.dead"), Topic("alerts.outbox")
    letters = DeadLetters(dead, outbox)
    book = SilenceBook(Topic("silences"), SEALER, REGIONS.covers)
    silence = new_silence({"reason": "receiver maintenance", "subscription_id": sub.id,
                           "ends": (now + timedelta(hours=1)).isoformat()}, author="zhang", now=now,
                          known_subscription=lambda s: s, known_region=REGIONS.is_known, known_hazards={"heat"},
                          max_hours=168)
    asyncio.run(book.put(silence))
    none: Any = None
    stage = DeliveryStage(subscriptions=Subs(sub), dead_letters=letters, retry_topics=[], receipts=none,  # type: ignore[arg-type]
                          policy=none, health=none, render=none, on_receipt=lambda r: None, allow_nets=[],
                          timeout_s=1, endpoint_concurrency=1, silences=book)
    from prometheus_client import REGISTRY

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"department": "health"}) or 0.0

    dead_before, silenced_before = sample("ews_dead_letters_total"), sample("ews_deliveries_silenced_total")
    for i, level in enumerate(("orange", "yellow")):
        d = {"webhook_id": f"msg_{i}", "subscription_id": sub.id, "type": "warning.alert",
             "event": {**ev(level), "id": f"e{i}"}, "attempt": 0, "first_attempt_at": None}
        asyncio.run(stage.attempt(orjson.dumps(d), first=True))
    held = sorted(letters.parked.values(), key=lambda d: d["webhook_id"])
    assert [d["webhook_id"] for d in held] == ["msg_0", "msg_1"]
    assert held[0]["last_error"].startswith(f"silenced by {silence.id} (receiver maintenance): held until ")
    # held, not dead: planned work does not count as failed deliveries
    assert sample("ews_deliveries_silenced_total") - silenced_before == 2
    assert sample("ews_dead_letters_total") == dead_before
    # the silence ends: held deliveries of warnings still current go out, one of a warning ended meanwhile does not
    n = asyncio.run(letters.redrive(reason_prefix=silence.held_prefix(),
                                    still_current=lambda e: e["id"] != "e1"))
    assert n == 1 and letters.parked == {}
    assert [orjson.loads(v)["webhook_id"] for _, v, _ in outbox.sent] == ["msg_0"]
