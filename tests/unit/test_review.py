"""The forecasters' desk (issue 20): the review policy as data in the rules, drafts made by the grade stage instead
of sent, approval (with edits) and rejection as MACed signals through the grade agent, the audit log in the draft
records, the warning's events and CAP."""

from __future__ import annotations

import asyncio
import tomllib
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import orjson
import pytest

from warning import review
from warning.cap import render_cap
from warning.drafts import DraftsView
from warning.grade import GradeStage
from warning.pipeline import StationGrader
from warning.rules import RulesError, load_rules, parse_rules
from warning.shared.bus import DataClock, SignalSink
from warning.shared.records import WarningLevel, chain_key
from warning.shared.regions import RegionTree, StationRegistry
from warning.shared.sealing import KeyRing, Sealer

SEALER = Sealer(KeyRing.generate())
PACKAGED = tomllib.loads(resources.files("warning").joinpath("data/rules.toml").read_text(encoding="utf-8"))


def rules_with(review_levels: dict[str, list[str]], **review_table: float) -> Any:
    """The packaged rules with ``issue = "review"`` on the given hazards' levels."""
    doc = orjson.loads(orjson.dumps(PACKAGED))
    for hazard, levels in review_levels.items():
        for lv in doc["hazards"][hazard]["levels"]:
            if lv["level"] in levels:
                lv["issue"] = "review"
    if review_table:
        doc["review"] = {**doc.get("review", {}), **review_table}
    return parse_rules(doc)


RULES = rules_with({"heat": ["orange", "red"]})
GRADER = StationGrader(RULES, StationRegistry.load(), RegionTree.load())


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------------ the policy
def test_the_packaged_rules_issue_every_level_automatically() -> None:
    rules = load_rules()
    assert {lr.issue for rule in rules.values() for lr in rule.levels} == {"auto"}
    assert rules.issue_policy("heat", "red") == "auto" and rules.issue_policy("nope", "red") == "auto"
    assert (rules.review.escalate_after_min, rules.review.issue_unhandled_after_min) == (15.0, 0.0)


def test_review_is_set_per_level_per_hazard_or_in_defaults() -> None:
    assert RULES.issue_policy("heat", "red") == "review" and RULES.issue_policy("heat", "orange") == "review"
    assert RULES.issue_policy("heat", "yellow") == "auto" and RULES.issue_policy("rainstorm", "red") == "auto"
    doc = orjson.loads(orjson.dumps(PACKAGED))
    doc["hazards"]["gale"]["issue"] = "review"
    doc["defaults"]["issue"] = "review"
    doc["hazards"]["frost"]["levels"][0]["issue"] = "auto"
    rules = parse_rules(doc)
    assert {lr.issue for lr in rules["gale"].levels} == {"review"}
    assert rules.issue_policy("rainstorm", "blue") == "review"  # [defaults]
    first, *others = (lv["level"] for lv in doc["hazards"]["frost"]["levels"])
    assert rules.issue_policy("frost", first) == "auto"  # its own setting wins
    assert {rules.issue_policy("frost", lv) for lv in others} == {"review"}


def test_a_bad_policy_or_review_table_names_what_is_wrong() -> None:
    doc = orjson.loads(orjson.dumps(PACKAGED))
    doc["hazards"]["heat"]["levels"][0]["issue"] = "manual"
    with pytest.raises(RulesError, match=r"hazards.heat.levels\[0\]: 'issue' must be one of auto, review"):
        parse_rules(doc)
    with pytest.raises(RulesError, match="review: 'escalate_after_min' must be a number"):
        rules_with({}, escalate_after_min=-1)
    doc = orjson.loads(orjson.dumps(PACKAGED))
    doc["review"] = {"escalate_after": 5}
    with pytest.raises(RulesError, match="review: unknown key 'escalate_after'"):
        parse_rules(doc)


# ------------------------------------------------------------------------------------------------ the gate
def event(seq: int, level: str, msg_type: str = "alert", change: str = "issue", wid: str = "w1",
          **kw: Any) -> dict[str, Any]:
    return {"id": f"e{seq}", "warning_id": wid, "seq": seq, "msg_type": msg_type, "change": change,
            "hazard": "heat", "level": level, "region_code": "620982", "region_level": "county",
            "references": [f"e{i}" for i in range(1, seq)], "onset": "2026-07-14T06:00:00Z",
            "expires": "2026-07-15T06:00:00Z", "sent": "2026-07-14T06:00:00Z", "headline_en": f"{level} {seq}",
            "status": "actual", **kw}


def gate(r: Any, e: dict[str, Any]) -> review.Outcome:
    return review.gate(r, e, RULES.issue_policy, chain_key="620982:heat", at=e["sent"], now=1000.0)


def test_auto_levels_are_published_and_review_levels_become_drafts() -> None:
    r, publish, records = gate(None, event(1, "yellow"))
    assert [e["id"] for e in publish] == ["e1"] and records == [] and r["published"] == ["e1"]
    r, publish, records = gate(r, event(2, "red", "update", "upgrade"))
    assert publish == [] and [(d["id"], d["state"], d["msg_type"]) for d in records] == [("e2", "pending", "update")]
    assert r["draft"]["id"] == "e2" and r["published_level"] == "yellow"


def test_an_update_of_a_draft_nobody_approved_is_an_alert_to_receivers_and_supersedes_it() -> None:
    r, _, [_first] = gate(None, event(1, "orange"))
    r, publish, records = gate(r, event(2, "red", "update", "upgrade"))
    assert publish == [] and [(d["id"], d["state"]) for d in records] == [("e1", "superseded"), ("e2", "pending")]
    draft = records[1]["event"]
    assert (draft["msg_type"], draft["change"], draft["references"]) == ("alert", "issue", [])  # e1 never went out


def test_approve_publishes_the_edited_draft_with_who_when_and_what_changed() -> None:
    r, _, [_draft] = gate(None, event(1, "red"))
    edits = {"headline_en": "Red heat warning for Dunhuang: stay indoors", "expires": "2026-07-14T18:00:00Z"}
    (r, publish, [closed]), why = review.decide(r, "e1", "approve", by="zhang", at="2026-07-14T06:05:00Z",
                                                edits=edits)
    assert why is None
    [out] = publish
    assert out["headline_en"] == edits["headline_en"] and out["expires"] == "2026-07-14T18:00:00Z"
    assert out["sent"] == "2026-07-14T06:05:00Z"  # sent when approved
    assert out["review"] == {"decision": "approved", "by": "zhang", "at": "2026-07-14T06:05:00Z", "draft_id": "e1",
                             "edited": ["expires", "headline_en"]}
    assert closed["state"] == "approved" and closed["decision"]["by"] == "zhang"
    assert closed["decision"]["changes"]["expires"] == {"from": "2026-07-15T06:00:00Z", "to": "2026-07-14T18:00:00Z"}
    assert r["published"] == ["e1"] and r["draft"] is None
    # a second decision on the same draft changes nothing
    (r2, publish2, records2), why = review.decide(r, "e1", "reject", by="li", at="2026-07-14T06:06:00Z")
    assert why is not None and (r2, publish2, records2) == (r, [], [])


def test_a_rejected_level_is_not_asked_again_until_it_rises() -> None:
    r, _, _ = gate(None, event(1, "orange"))
    (r, publish, [closed]), _ = review.decide(r, "e1", "reject", by="zhang", at="t", reason="station fault")
    assert publish == [] and closed["state"] == "rejected" and closed["decision"]["reason"] == "station fault"
    r, publish, records = gate(r, event(2, "orange", "update", "extend"))
    assert (publish, records) == ([], [])  # the extend of what was rejected: nothing to ask
    r, publish, [again] = gate(r, event(3, "red", "update", "upgrade"))
    assert publish == [] and again["state"] == "pending" and again["event"]["msg_type"] == "alert"
    r, publish, [withdrawn] = gate(r, event(4, "red", "cancel", "cancel"))
    assert publish == [] and withdrawn["state"] == "withdrawn"  # nothing was sent: nothing to cancel


def test_cancels_of_a_reviewed_warning_are_reviewed_but_expiry_and_operator_cancels_are_not() -> None:
    r, _, _ = gate(None, event(1, "orange"))
    (r, _, _), _ = review.decide(r, "e1", "approve", by="zhang", at="t")
    _r2, publish, [draft] = gate(r, event(2, "orange", "cancel", "cancel"))
    assert publish == [] and draft["msg_type"] == "cancel" and draft["event"]["references"] == ["e1"]
    for change in ("expire", "operator_cancel"):
        _, publish, _ = gate(r, event(2, "orange", "cancel", change))
        assert [e["msg_type"] for e in publish] == ["cancel"]
    # a downgrade of a reviewed warning to an auto level is reviewed too (receivers hold the orange)
    _, publish, [d] = gate(r, event(2, "yellow", "update", "downgrade"))
    assert publish == [] and d["state"] == "pending"


def test_a_new_warning_of_the_chain_withdraws_the_old_ones_draft() -> None:
    r, _, _ = gate(None, event(1, "red"))
    r, publish, records = gate(r, event(1, "yellow", wid="w2"))
    assert [e["id"] for e in publish] == ["e1"] and [d["state"] for d in records] == ["withdrawn"]
    assert r["warning_id"] == "w2"


def test_edits_are_checked_field_by_field() -> None:
    now = datetime(2026, 7, 14, 6, tzinfo=UTC)
    onset = "2026-07-14T05:00:00Z"
    assert review.validate_edits({"expires": "2026-07-14T20:00:00+08:00"}, now=now, onset=onset) == {
        "expires": "2026-07-14T12:00:00Z"}
    for body, field in [({"level": "red"}, "level"), ({"headline_zh": ""}, "headline_zh"),
                        ({"instruction_en": "a\x1b[2Jb"}, "instruction_en"), ({"expires": "tomorrow"}, "expires"),
                        ({"expires": "2026-07-14T05:30:00Z"}, "expires"), ({"expires": "2026-08-14T05:30:00Z"},
                                                                           "expires"), ([], "body")]:
        with pytest.raises(review.ReviewError, match=f"^{field}"):
            review.validate_edits(body, now=now, onset=onset)


# ------------------------------------------------------------------------------------- through the grade stage
class Router:
    def __init__(self) -> None:
        self.routed: list[dict[str, Any]] = []
        self.backfilled: list[tuple[str, str]] = []

    async def route(self, event: Any) -> None:
        self.routed.append(event)

    async def backfill(self, event: Any, sub_id: str) -> bool:
        self.backfilled.append((event["id"], sub_id))
        return True


def stage(rules: Any = RULES) -> tuple[GradeStage, Router, list[tuple[str, bytes, bytes, Any]]]:
    sent: list[tuple[str, bytes, bytes, Any]] = []

    async def produce(topic: str, key: bytes, value: bytes, partition: int | None, headers: Any = None) -> None:
        sent.append((topic, key, value, headers))
    router = Router()
    grader = StationGrader(rules, StationRegistry.load(), RegionTree.load())
    grade = GradeStage(rules=rules, rollups=grader, region_state={}, signals=SignalSink(produce, "signals", 4, SEALER),
                       produce=produce, warnings_topic="warnings", router=router, clock=DataClock())
    return grade, router, sent


def heat(t: datetime, level: str) -> dict[str, Any]:
    station = GRADER.registry.get("52418")
    assert station is not None
    (sig,) = GRADER.station_signals(station, "heat", WarningLevel.parse(level), "tmax_day", 40.6, iso(t),
                                    accepted_at=t.timestamp())
    return sig


def fold(grade: GradeStage, sigs: list[dict[str, Any]]) -> list[Any]:
    """Fold as the grade agent does; returns the prefecture roll-ups it would send."""
    key = chain_key(sigs[0]["region_code"], sigs[0]["hazard"])
    state, rollups = asyncio.run(grade.grade_key(key, sigs))  # type: ignore[arg-type]
    if state is not None:
        grade.region_state[key] = state  # type: ignore[index]
    return rollups


def topic(sent: list[tuple[str, bytes, bytes, Any]], name: str) -> list[dict[str, Any]]:
    return [orjson.loads(v) for t, _, v, _ in sent if t == name]


def decide_through_signals(grade: GradeStage, sent: list[tuple[str, bytes, bytes, Any]], draft: dict[str, Any],
                           action: str, **kw: Any) -> list[Any]:
    """The API's path: a MACed review signal, folded by the grade agent."""
    before = len(sent)
    asyncio.run(grade.review_decision(draft, action, "zhang", **kw))
    [(name, key, value, headers)] = sent[before:]
    assert name == "signals" and SEALER.check("signals", key, value, headers) is None
    return fold(grade, [orjson.loads(value)])


def test_a_review_level_is_a_draft_until_approved_then_routed_and_rolled_up() -> None:
    grade, router, sent = stage()
    now = datetime.now(UTC).replace(microsecond=0)
    rollups = fold(grade, [heat(now - timedelta(minutes=5), "red")])
    assert topic(sent, "warnings") == [] and router.routed == [] and rollups == []  # nothing public yet
    [draft] = topic(sent, "warnings.drafts")
    [(_, key, value, headers)] = [s for s in sent if s[0] == "warnings.drafts"]
    assert SEALER.check("warnings.drafts", key, value, headers) is None  # the desk's records carry the MAC
    assert (draft["state"], draft["level"], draft["region_code"]) == ("pending", "red", "620982")
    state = grade.region_state["620982:heat"]  # type: ignore[index]
    assert state["review"]["draft"]["id"] == draft["id"] and state["warning"]["id"] == draft["id"]

    sent.clear()
    rollups = decide_through_signals(grade, sent, draft, "approve",
                                     edits={"headline_en": "Dunhuang: red heat, stay indoors"})
    [published] = topic(sent, "warnings")
    assert published["id"] == draft["id"] and published["headline_en"] == "Dunhuang: red heat, stay indoors"
    assert published["review"]["by"] == "zhang" and published["review"]["edited"] == ["headline_en"]
    assert [e["id"] for e in router.routed] == [draft["id"]]
    [decided] = topic(sent, "warnings.drafts")
    assert decided["state"] == "approved" and decided["decision"]["changes"]["headline_en"]["to"].startswith("Dun")
    [rollup] = rollups
    assert rollup["kind"] == "county" and rollup["level"] == "red"
    assert b"Approved by zhang at" in render_cap(published, rules=RULES)


def test_reject_sends_nothing_and_an_approved_expiry_becomes_the_lifecycles() -> None:
    grade, router, sent = stage()
    now = datetime.now(UTC).replace(microsecond=0)
    fold(grade, [heat(now - timedelta(minutes=5), "red")])
    [draft] = topic(sent, "warnings.drafts")
    decide_through_signals(grade, sent, draft, "reject", reason="sensor fault at Dunhuang")
    assert topic(sent, "warnings") == [] and router.routed == []
    assert topic(sent, "warnings.drafts")[-1]["decision"]["reason"] == "sensor fault at Dunhuang"
    fold(grade, [heat(now - timedelta(minutes=1), "red")])  # the same level again: not asked again
    assert topic(sent, "warnings") == [] and len(topic(sent, "warnings.drafts")) == 2

    grade, router, sent = stage()
    fold(grade, [heat(now - timedelta(minutes=5), "red")])
    [draft] = topic(sent, "warnings.drafts")
    expires = iso(now + timedelta(hours=6))
    decide_through_signals(grade, sent, draft, "approve", edits={"expires": expires})
    assert grade.region_state["620982:heat"]["warning"]["expires"] == expires  # type: ignore[index]


def test_a_draft_is_issued_on_its_own_only_where_the_policy_says_so() -> None:
    for minutes, issued in ((0, False), (1, True)):
        rules = rules_with({"heat": ["red"]}, issue_unhandled_after_min=minutes)
        grade, router, _sent = stage(rules)
        now = datetime.now(UTC).replace(microsecond=0)
        fold(grade, [heat(now - timedelta(minutes=5), "red")])
        state = grade.region_state["620982:heat"]  # type: ignore[index]
        state["review"]["draft"]["made_at"] -= 120  # waited two minutes
        fold(grade, [{"kind": "tick", "region_code": "620982", "hazard": "heat", "time": iso(now)}])
        assert bool(router.routed) is issued
        if issued:
            assert router.routed[0]["review"]["decision"] == "issue_unreviewed"
            assert router.routed[0]["review"]["by"] == review.POLICY


def test_the_drafts_view_refuses_records_without_the_mac_and_keeps_the_audit_log() -> None:
    view = DraftsView("warnings.drafts", SEALER, escalate_after_min=15)
    r, _, [draft] = gate(None, event(1, "red"))
    draft["made_at"] = datetime.now(UTC).timestamp() - 20 * 60
    value = orjson.dumps(draft)
    view.mirror(b"e1", value, [])  # forged: no MAC
    assert view.by_id == {}
    view.mirror(b"e1", value, SEALER.headers("warnings.drafts", b"e1", value))
    [shown] = view.listing()
    assert shown["escalated"] is True and shown["age_s"] >= 1200
    from prometheus_client import REGISTRY

    view.refresh_gauge()
    assert REGISTRY.get_sample_value("ews_drafts_pending", {"escalated": "yes"}) == 1.0
    (_, _, [closed]), _ = review.decide(r, "e1", "approve", by="zhang", at="2026-07-14T06:05:00Z")
    value = orjson.dumps(closed)
    view.mirror(b"e1", value, SEALER.headers("warnings.drafts", b"e1", value))
    assert view.listing() == [] and [a["by"] for a in view.audit("w1")] == ["zhang"]
    view.refresh_gauge()
    assert REGISTRY.get_sample_value("ews_drafts_pending", {"escalated": "yes"}) == 0.0


def test_a_new_subscription_is_backfilled_with_what_was_published_while_an_upgrade_waits() -> None:
    grade, router, sent = stage(rules_with({"heat": ["red"]}))
    now = datetime.now(UTC).replace(microsecond=0)
    fold(grade, [heat(now - timedelta(minutes=20), "orange")])
    [orange] = topic(sent, "warnings")
    fold(grade, [heat(now - timedelta(minutes=10), "red")])
    assert len(topic(sent, "warnings")) == 1 and topic(sent, "warnings.drafts")[0]["level"] == "red"
    fold(grade, [{"kind": "backfill", "region_code": "620982", "hazard": "heat", "time": iso(now),
                  "subscription_id": "sub-new", "event": orange}])
    assert router.backfilled == [(orange["id"], "sub-new")]
