"""Acknowledgements (issue 20): the signed ack token, the alerts.acks view with its MACs, the escalation of red and
orange warnings not acknowledged in time, fallback subscriptions, and the [acknowledgement] policy."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from alerts.acks import AckBook, AckClaim, ack_token, ack_url, parse_ack_token
from alerts.delivery import webhook_body
from alerts.routing import route
from alerts.subscriptions import Subscription, SubscriptionError, new_subscription
from warning.escalation import AckEscalation
from warning.rules import AcknowledgementPolicy, RulesError, load_rules, parse_rules
from warning.shared import metrics
from warning.shared.regions import RegionTree
from warning.shared.sealing import KeyRing, Sealer

RING = KeyRing.generate()
SEALER = Sealer(RING)
WID, EID, SUB = "5e91c3ee-369f-5849-a215-2b96bff4caf7", "1035588d-6c23-5587-b41f-bcccc84dc74b", "sub-a"


class FakeTopic:
    def __init__(self, name: str = "alerts.acks") -> None:
        self.name, self.sent = name, []

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, *, key: bytes | None = None, value: bytes | None = None, partition: int | None = None,
                   headers: Any = None) -> None:
        self.sent.append((key, value, headers))


# ---- the token -------------------------------------------------------------------------------------------------

def test_a_token_names_its_warning_event_subscription_and_level() -> None:
    token = ack_token(SEALER, WID, EID, SUB, "red")
    assert token == ack_token(SEALER, WID, EID, SUB, "red")  # deterministic: the same body on every attempt
    assert parse_ack_token(SEALER, token) == AckClaim(WID, EID, SUB, "red")
    url = ack_url("https://ews.example.org/", token)
    assert url == f"https://ews.example.org/api/v1/acks/{token}" and "whsec" not in url


@pytest.mark.parametrize("junk", ["", "x", "a.b.c", "..", "é.k1.x", "%00", "a" * 5000, "YQ.k1.", "YQ..AAAA"])
def test_junk_and_forged_tokens_are_refused(junk: str) -> None:
    assert parse_ack_token(SEALER, junk) is None


def test_a_token_cannot_be_moved_to_another_subscription_or_level() -> None:
    token = ack_token(SEALER, WID, EID, SUB, "orange")
    _, _, signed = token.partition(".")
    import base64

    forged_payload = base64.urlsafe_b64encode(f"{WID}|{EID}|sub-b|orange".encode()).decode().rstrip("=")
    assert parse_ack_token(SEALER, f"{forged_payload}.{signed}") is None
    other_key = Sealer(KeyRing.generate())  # another service's key
    assert parse_ack_token(other_key, token) is None
    rotated = Sealer(KeyRing(RING.rotated().current, {**RING.rotated().keys, **RING.keys}))
    assert parse_ack_token(rotated, token) is not None  # older ring keys still read


def test_every_json_envelope_carries_the_ack_url() -> None:
    event = {"id": EID, "warning_id": WID, "level": "red", "sent": "2026-07-14T08:00:00Z"}
    body = orjson.loads(webhook_body("warning.alert", event, ack_url="https://x/api/v1/acks/t", flags=["reminder"]))
    assert body["ack_url"] == "https://x/api/v1/acks/t" and body["reminder"] is True


# ---- the view --------------------------------------------------------------------------------------------------

async def test_acknowledging_twice_writes_once_and_survives_a_mirror_replay() -> None:
    topic = FakeTopic()
    book = AckBook(topic, SEALER)
    claim = AckClaim(WID, EID, SUB, "orange")
    assert await book.acknowledge(claim, "Jiuquan health", now=1_780_000_000)
    assert not await book.acknowledge(claim, "Jiuquan health", now=1_780_000_100)
    assert len(topic.sent) == 1
    assert book.of_warning(WID) == [{"warning_id": WID, "event_id": EID, "subscription_id": SUB,
                                     "name": "Jiuquan health", "level": "orange", "at": "2026-05-28T20:26:40Z"}]
    replica = AckBook(FakeTopic(), SEALER)  # another worker, or this one after a restart, reading the topic
    key, value, headers = topic.sent[0]
    replica.mirror(key, value, headers)
    assert replica.of_warning(WID) == book.of_warning(WID)
    assert replica.acknowledged(WID, SUB, "orange") and replica.acknowledged(WID, SUB, "yellow")
    assert not replica.acknowledged(WID, SUB, "red")  # an upgrade needs a new acknowledgement
    assert not replica.acknowledged(WID, "sub-b", "orange")


def test_records_without_the_service_mac_are_refused_and_counted() -> None:
    book = AckBook(FakeTopic(), SEALER)
    value = orjson.dumps({"warning_id": WID, "event_id": EID, "subscription_id": SUB, "name": "x", "level": "red",
                          "at": "2026-07-14T08:00:00Z"})
    key = f"{WID}:{SUB}:{EID}".encode()
    before = metrics.RECORDS_REJECTED.labels("alerts.acks", "missing")._value.get()
    book.mirror(key, value, [])
    forged = Sealer(KeyRing.generate()).headers("alerts.acks", key, value)
    book.mirror(key, value, forged)
    assert book.of_warning(WID) == []
    assert metrics.RECORDS_REJECTED.labels("alerts.acks", "missing")._value.get() == before + 1
    book.mirror(key, b'{"warning_id": 1}', SEALER.headers("alerts.acks", key, b'{"warning_id": 1}'))
    assert book.of_warning(WID) == []


# ---- fallback subscriptions ------------------------------------------------------------------------------------

def _sub(sub_id: str, regions: list[str], fallback: bool = False, **kw: Any) -> Subscription:
    return Subscription(id=sub_id, name=sub_id, department="relief", url="https://x", secret="whsec_x",
                        regions=regions, hazards=[], fallback=fallback, **kw)


def _event(level: str = "red", msg_type: str = "alert", event_id: str = EID) -> dict[str, Any]:
    return {"id": event_id, "warning_id": WID, "seq": 1, "msg_type": msg_type, "hazard": "heat", "level": level,
            "region_code": "620982", "region_level": "county", "status": "actual", "basis": "observed"}


def test_a_fallback_subscription_gets_nothing_by_routing_but_follows_what_it_was_escalated() -> None:
    tree = RegionTree.load()
    primary, duty = _sub("primary", ["620982"]), _sub("duty", ["620000"], fallback=True)
    assert route(_event(), [primary, duty], tree.covers) == [(primary, "warning.alert")]
    assert route(_event(msg_type="cancel"), [primary, duty], tree.covers, ["primary", "duty"]) == [
        (primary, "warning.cancel"), (duty, "warning.cancel")]


def test_fallback_is_a_boolean_field() -> None:
    sub = new_subscription({"name": "Duty office", "url": "https://x", "regions": ["620000"], "fallback": True},
                           known_region=RegionTree.load().is_known, known_hazards={"heat"})
    assert sub.fallback is True and sub.public()["fallback"] is True
    with pytest.raises(SubscriptionError, match="fallback: true or false"):
        new_subscription({"name": "x", "url": "https://x", "regions": ["620000"], "fallback": "yes"},
                         known_region=RegionTree.load().is_known, known_hazards={"heat"})


# ---- escalation ------------------------------------------------------------------------------------------------

class FakeRouter:
    def __init__(self, receivers: dict[str, Any]) -> None:
        self.receivers, self.reminded, self.escalated = receivers, [], []

    async def remind(self, event: Any, sub_id: str) -> None:
        self.reminded.append((event["id"], sub_id))

    async def escalate(self, event: Any, sub_id: str) -> bool:
        if sub_id in self.receivers.get(event["warning_id"], []):
            return False
        self.escalated.append((event["id"], sub_id))
        self.receivers[event["warning_id"]] = [*self.receivers.get(event["warning_id"], []), sub_id]
        return True


class Book(dict):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        return iter(list(self.values()))


def _escalation(receivers: dict[str, Any], subs: list[Subscription], acks: AckBook, clock: list[float],
                history: list[dict[str, Any]], table: dict[str, Any] | None = None
                ) -> tuple[AckEscalation, FakeRouter, dict[str, Any]]:
    router = FakeRouter(receivers)
    table = {} if table is None else table
    esc = AckEscalation(policy=lambda: AcknowledgementPolicy({"red": 1.0, "orange": 2.0}), router=router,
                        receivers=receivers, escalations=table, acks=acks, subscriptions=Book({s.id: s for s in subs}),
                        history=lambda wid: history if wid == WID else None, regions=RegionTree.load(),
                        clock=lambda: clock[0])
    return esc, router, table


def _state(level: str, event_id: str = EID) -> dict[str, Any]:
    return {"warning": {"id": event_id, "warning_id": WID, "level": level}}


async def test_an_unacknowledged_red_warning_is_reminded_and_escalated_once() -> None:
    acks = AckBook(FakeTopic(), SEALER)
    acks.caught_up.set()
    subs = [_sub("a", ["620982"]), _sub("b", ["620900"]), _sub("duty", ["620900"], fallback=True),
            _sub("far-duty", ["620100"], fallback=True), _sub("drill-duty", ["620000"], fallback=True,
                                                               statuses=["exercise"])]
    receivers = {WID: ["a", "b"]}
    clock = [1000.0]
    esc, router, table = _escalation(receivers, subs, acks, clock, [_event("red")])
    key = "620982:heat"
    await esc.review(key, _state("red"))  # the clock starts
    assert table[key]["since"] == 1000.0 and metrics.UNACKNOWLEDGED.labels("red")._value.get() >= 1
    await acks.acknowledge(AckClaim(WID, EID, "a", "red"), "a")
    clock[0] = 1059.0
    await esc.review(key, _state("red"))
    assert router.reminded == [] and router.escalated == []  # 59 s < 1 min
    clock[0] = 1061.0
    await esc.review(key, _state("red"))
    assert router.reminded == [(EID, "b")]  # "a" acknowledged
    assert router.escalated == [(EID, "duty")]  # of the same region, opted in to actual
    await esc.review(key, _state("red"))
    clock[0] = 5000.0
    await esc.review(key, _state("red"))
    assert router.reminded == [(EID, "b")] and router.escalated == [(EID, "duty")]  # once
    # a restart: the table (its changelog) says what was done
    again, router2, _ = _escalation(receivers, subs, acks, clock, [_event("red")], table)
    await again.review(key, _state("red"))
    assert router2.reminded == [] and router2.escalated == []


async def test_an_upgrade_starts_a_new_clock_and_lower_levels_never_escalate() -> None:
    acks = AckBook(FakeTopic(), SEALER)
    acks.caught_up.set()
    receivers = {WID: ["a"]}
    clock = [0.0]
    up = "2035588d-6c23-5587-b41f-bcccc84dc74b"
    esc, router, table = _escalation(receivers, [_sub("a", ["620982"])], acks, clock,
                                     [_event("yellow"), _event("orange", "update", up)])
    key = "620982:heat"
    await esc.review(key, _state("yellow"))
    clock[0] = 10_000.0
    await esc.review(key, _state("yellow"))
    assert router.reminded == [] and key not in table  # yellow: no deadline
    await acks.acknowledge(AckClaim(WID, EID, "a", "yellow"), "a")
    await esc.review(key, _state("orange", up))
    clock[0] = 10_121.0
    await esc.review(key, _state("orange", up))
    assert router.reminded == [(up, "a")]  # a yellow acknowledgement does not cover the orange upgrade


async def test_nothing_escalates_before_the_acknowledgements_are_read() -> None:
    acks = AckBook(FakeTopic(), SEALER)  # not caught up: a restart still reading alerts.acks
    clock = [0.0]
    esc, router, _ = _escalation({WID: ["a"]}, [_sub("a", ["620982"])], acks, clock, [_event("red")])
    await esc.review("620982:heat", _state("red"))
    clock[0] = 999.0
    await esc.review("620982:heat", _state("red"))
    assert router.reminded == []


async def test_prefecture_roll_ups_are_not_watched() -> None:
    acks = AckBook(FakeTopic(), SEALER)
    acks.caught_up.set()
    esc, _, table = _escalation({WID: ["a"]}, [_sub("a", ["620900"])], acks, [0.0], [])
    await esc.review("620900:heat", _state("red"))
    assert table == {}


# ---- the policy ------------------------------------------------------------------------------------------------

def test_the_packaged_policy_and_a_bureaus_own() -> None:
    policy = load_rules().acknowledgement
    assert policy.after_s("red") == 15 * 60 and policy.after_s("orange") == 30 * 60
    assert policy.after_s("yellow") is None and policy.after_s("blue") is None
    import tomllib
    from importlib import resources

    doc = tomllib.loads(resources.files("warning").joinpath("data/rules.toml").read_text(encoding="utf-8"))
    doc["acknowledgement"] = {"after_min": {"red": 5}}
    assert parse_rules(doc).acknowledgement.after_min == {"red": 5.0}
    doc["acknowledgement"] = {"after_min": {"purple": 5}}
    with pytest.raises(RulesError, match=r"acknowledgement\.after_min"):
        parse_rules(doc)
    doc["acknowledgement"] = {"after_min": {"red": 0}}
    with pytest.raises(RulesError, match="minutes > 0"):
        parse_rules(doc)
    del doc["acknowledgement"]
    assert parse_rules(doc).acknowledgement.after_s("red") == 900  # an older table: the packaged policy


def test_caught_up_is_an_event() -> None:
    assert isinstance(AckBook(FakeTopic(), SEALER).caught_up, asyncio.Event)
