import orjson
import pytest

from alerts.delivery import classify, parse_retry_after, webhook_body
from alerts.routing import route
from alerts.subscriptions import SubscriptionError, new_subscription
from warning.shared.regions import RegionTree

TREE = RegionTree.load()


def sub(**kw: object):
    raw = {"name": "n", "department": "health", "url": "https://example.org/h", "regions": ["620900"],
           "hazards": ["heat"], "min_level": "orange", **kw}
    return new_subscription(raw, known_region=TREE.is_known, known_hazards={"heat", "frost"})


def event(level: str, msg_type: str = "alert", region: str = "620982") -> dict[str, str]:
    return {"hazard": "heat", "level": level, "msg_type": msg_type, "region_code": region}


def test_subscription_validation_names_the_field() -> None:
    for kw, field in [({"regions": ["999999"]}, "regions"), ({"hazards": ["tornado"]}, "hazards"),
                      ({"min_level": "pink"}, "min_level"), ({"department": "army"}, "department"),
                      ({"regions": []}, "regions"), ({"bogus": 1}, "bogus"), ({"name": ""}, "name")]:
        with pytest.raises(SubscriptionError) as info:
            sub(**kw)
        assert str(info.value).startswith(field), (kw, info.value)


def test_route_by_region_hazard_and_level() -> None:
    prefecture, province, other = sub(), sub(regions=["620000"], min_level="red"), sub(regions=["620100"])
    subs = [prefecture, province, other]
    assert [s.id for s, _ in route(event("orange"), subs, TREE.covers)] == [prefecture.id]
    assert {s.id for s, _ in route(event("red"), subs, TREE.covers)} == {prefecture.id, province.id}
    assert route(event("yellow"), subs, TREE.covers) == []


def test_updates_and_cancels_follow_the_original_receivers() -> None:
    s = sub(min_level="orange")
    late = sub(min_level="red")
    # downgrade below the filter still reaches the receiver of the alert; the red-only one never got it
    out = route(event("yellow", "update"), [s, late], TREE.covers, already_received=[s.id])
    assert out == [(s, "warning.update")]
    out = route(event("red", "update"), [s, late], TREE.covers, already_received=[s.id])
    assert out == [(s, "warning.update"), (late, "warning.alert")]
    assert route(event("red", "cancel"), [s, late], TREE.covers, already_received=[s.id]) == [
        (s, "warning.cancel")]


@pytest.mark.parametrize(("status", "result"), [(200, "delivered"), (204, "delivered"), (301, "dead"),
                                                (400, "dead"), (404, "dead"), (408, "retry"), (410, "gone"),
                                                (425, "retry"), (429, "retry"), (500, "retry"), (503, "retry")])
def test_classify(status: int, result: str) -> None:
    assert classify(status) == result


def test_parse_retry_after() -> None:  # the retry delays themselves: tests/unit/test_retry_policy.py
    assert parse_retry_after("30") == 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 60) == pytest.approx(60)
    assert parse_retry_after("soon") is None


def test_envelope_timestamp_is_the_events_time_on_every_attempt() -> None:
    """Standard Webhooks: ``timestamp`` is when the event occurred; the attempt time is the signed header."""
    event = {"id": "e1", "sent": "2026-07-14T06:00:00Z", "msg_type": "alert"}
    first = webhook_body("warning.alert", event)
    assert orjson.loads(first)["timestamp"] == "2026-07-14T06:00:00Z"
    assert webhook_body("warning.alert", event) == first  # a later attempt: the same bytes
    assert orjson.loads(webhook_body("warning.alert", {"id": "e2", "emitted_at": 0}))["timestamp"] == \
        "1970-01-01T00:00:00Z"
