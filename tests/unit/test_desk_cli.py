"""`ews drafts` and `ews silences` against the local API stub of test_operator_cli (no broker)."""

from __future__ import annotations

import argparse

import pytest

from tests.unit.test_operator_cli import EVENT, TOKEN, Stub, clean_env, stub
from warning.desk_cli import add_desk_parsers
from warning.operator_cli import run_operator

__all__ = ["clean_env", "stub"]  # the fixtures, used by name

DRAFT = {"id": "e1-draft", "warning_id": "w-dunhuang-heat", "chain_key": "620982:heat", "hazard": "heat",
         "level": "red", "region_code": "620982", "region_name": "Dunhuang City", "msg_type": "alert",
         "status": "actual", "state": "pending", "event": {**EVENT, "headline_en": "Heat red warning for Dunhuang"},
         "made_at": 1784008800.0, "age_s": 1300, "escalated": True, "decision": None}
SILENCE = {"id": "sil-1", "reason": "receiver maintenance", "author": "zhang", "starts": "2026-07-14T06:00:00Z",
           "ends": "2026-07-14T08:00:00Z", "created": "2026-07-14T06:00:00Z", "subscription_id": "sub-1",
           "regions": [], "hazards": [], "ended_by": None, "state": "active"}


def api(stub: Stub, *argv: str) -> int:
    p = argparse.ArgumentParser(prog="ews")
    add_desk_parsers(p.add_subparsers(dest="command", required=True))
    return run_operator(p.parse_args([*argv, "--url", stub.url, "--token", TOKEN]))


def test_drafts_list_shows_the_queue_with_escalation(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("GET", "/api/v1/drafts")] = (200, [DRAFT])
    assert api(stub, "drafts", "list") == 0
    assert stub.last()["query"] == {"state": "pending"}
    out, _ = capsys.readouterr()
    header, row = out.splitlines()
    assert header.split()[:4] == ["MADE", "STATE", "ESCALATED", "TYPE"]
    assert "pending" in row and "yes" in row and "Heat red warning for Dunhuang" in row and "e1-draft" in row


def test_approve_sends_the_edits_and_reject_the_reason(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    decided = {**DRAFT, "state": "approved", "escalated": False,
               "decision": {"action": "approved", "by": "zhang", "at": "2026-07-14T06:20:00Z", "changes": {}}}
    stub.routes[("POST", "/api/v1/drafts/e1/approve")] = (200, decided)
    assert api(stub, "drafts", "approve", "e1", "--headline-en", "Dunhuang: stay indoors",
               "--expires", "2026-07-14T20:00:00+08:00") == 0
    assert stub.last()["body"] == {"headline_en": "Dunhuang: stay indoors", "expires": "2026-07-14T12:00:00Z"}
    assert "zhang 2026-07-14 14:20 BJT" in capsys.readouterr().out  # Beijing time, as every table
    stub.routes[("POST", "/api/v1/drafts/e1/reject")] = (409, {"error": "draft e1-draft: approved, not pending"})
    assert api(stub, "drafts", "reject", "e1", "--reason", "sensor fault") == 1
    assert stub.last()["body"] == {"reason": "sensor fault"}
    assert "approved, not pending" in capsys.readouterr().err


def test_silences_add_list_and_remove(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("POST", "/api/v1/silences")] = (201, SILENCE)
    assert api(stub, "silences", "add", "--region", "620900", "--hazard", "heat", "--ends", "2026-07-14T16:00:00+08:00",
               "--reason", "duty desk informed") == 0
    assert stub.last()["body"] == {"reason": "duty desk informed", "ends": "2026-07-14T08:00:00Z",
                                   "regions": ["620900"], "hazards": ["heat"]}
    stub.routes[("GET", "/api/v1/silences")] = (200, [SILENCE])
    assert api(stub, "silences", "list", "--ended") == 0
    assert stub.last()["query"] == {"ended": "true"}
    assert "subscription sub-1" in capsys.readouterr().out
    stub.routes[("DELETE", "/api/v1/silences/sil-1")] = (200, {**SILENCE, "state": "ended", "held_sent": 2})
    assert api(stub, "silences", "remove", "sil-1") == 0
    assert "held deliveries sent: 2" in capsys.readouterr().out


def test_one_warning_shows_its_audit_log(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    from warning.operator_cli import add_operator_parsers

    audit = [{"draft_id": "e1", "msg_type": "alert", "level": "red", "action": "approved", "by": "zhang",
              "at": "2026-07-14T06:20:00Z", "reason": None, "changes": {"expires": {"from": "a", "to": "b"}}}]
    stub.routes[("GET", "/api/v1/warnings/w-dunhuang-heat")] = (200, {"warning_id": "w-dunhuang-heat",
                                                                      "events": [EVENT], "deliveries": [],
                                                                      "audit": audit})
    p = argparse.ArgumentParser(prog="ews")
    add_operator_parsers(p.add_subparsers(dest="command", required=True))
    assert run_operator(p.parse_args(["warnings", "w-dunhuang-heat", "--url", stub.url, "--token", TOKEN])) == 0
    out = capsys.readouterr().out
    assert "audit log:" in out
    row = out.splitlines()[-1]
    assert "zhang" in row and "approved" in row and "expires" in row


def test_desk_tables_in_beijing_time_or_utc(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("GET", "/api/v1/silences")] = (200, [SILENCE])
    assert api(stub, "silences", "list") == 0
    out = capsys.readouterr().out
    assert "2026-07-14 14:00 BJT" in out and "2026-07-14 16:00 BJT" in out  # starts, ends
    assert api(stub, "silences", "list", "--utc") == 0
    assert "2026-07-14 06:00 UTC" in capsys.readouterr().out
    stub.routes[("GET", "/api/v1/drafts")] = (200, [DRAFT])
    assert api(stub, "drafts", "list", "--utc") == 0
    assert "2026-07-14 06:00 UTC" in capsys.readouterr().out  # made_at (unix seconds from the API)
    assert api(stub, "drafts", "list") == 0
    assert "2026-07-14 14:00 BJT" in capsys.readouterr().out
