"""The operators' CLI against a real `ews run` on its own tansu broker: warnings, the subscriber lifecycle,
dead letters and a what-if replay of the obs topic. Commands run in-process (run_operator), output via capsys."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support import TOKEN, running_broker, start_ews, wait_ready
from warning.broker import EmbeddedBroker, free_port
from warning.launch import EwsProcess
from warning.operator_cli import add_operator_parsers, run_operator

pytestmark = pytest.mark.integration


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def cli_broker() -> Iterator[EmbeddedBroker]:
    """This module's own broker (like conftest's ``broker``, but shared by the module's tests so that one service
    serves them all; no other test's records are on it)."""
    with running_broker() as b:
        yield b


@pytest.fixture(scope="module")
def ews(cli_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EwsProcess]:
    env = {"KAFKA_BOOTSTRAP": cli_broker.bootstrap, "EWS_TANSU_COMPAT": "1",
           "EWS_APP_ID": f"ews-cli-{uuid.uuid4().hex[:8]}"}
    proc = start_ews(tmp_path_factory.mktemp("ews-cli"), env)
    try:
        asyncio.run(wait_ready(proc))
        yield proc
    finally:
        assert proc.stop() == 0, proc.output()[-3000:]


def cli(*argv: str) -> int:
    p = argparse.ArgumentParser(prog="ews")
    add_operator_parsers(p.add_subparsers(dest="command", required=True))
    return run_operator(p.parse_args(list(argv)))


class Ops:
    """Runs CLI commands against the service and collects everything they printed (to check for the token)."""

    def __init__(self, ews: EwsProcess, capsys: pytest.CaptureFixture[str]) -> None:
        self.ews = ews
        self.capsys = capsys
        self.printed: list[str] = []

    def run(self, *argv: str, api_flags: bool = True) -> tuple[int, str, str]:
        extra = ("--url", self.ews.url, "--token", TOKEN) if api_flags else ()
        code = cli(*argv, *extra)
        out, err = self.capsys.readouterr()
        self.printed += [out, err]
        return code, out, err

    def json(self, *argv: str) -> Any:
        code, out, err = self.run(*argv, "--json")
        assert code == 0, err
        return json.loads(out)

    def wait_listed(self, sub_id: str, expect: Callable[[dict[str, Any] | None], bool], what: str,
                    timeout_s: float = 10.0) -> None:
        """The list shows a change. Eventually, not at once: the worker's subscriptions mirror can re-apply
        the previous topic record over its own newer local write for a moment (reported to the lead)."""
        deadline = time.monotonic() + timeout_s
        while not expect({s["id"]: s for s in self.json("subscribers", "list")}.get(sub_id)):
            assert time.monotonic() < deadline, f"subscription {sub_id} never {what}"
            time.sleep(0.2)

    def wait_active(self, sub_id: str, active: bool) -> None:
        self.wait_listed(sub_id, lambda s: s is not None and s["active"] is active, f"became active={active}")


def post_observation(ews: EwsProcess, obs: dict[str, Any]) -> None:
    req = urllib.request.Request(ews.url + "/api/v1/observations", data=json.dumps(obs).encode(), method="POST",
                                 headers={**ews.headers(), "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 202
        assert json.loads(r.read())["accepted"] == 1


def test_warnings_active_shows_dunhuang_red_heat(ews: EwsProcess, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ops = Ops(ews, capsys)
    post_observation(ews, {"station_id": "52418", "time": iso(datetime.now(UTC) - timedelta(minutes=5)),
                           "tmax_c": 40.6})
    deadline = time.monotonic() + 60
    red: list[dict[str, Any]] = []
    while not red:
        assert time.monotonic() < deadline, f"no red heat warning for 620982: {ops.printed[-2:]}"
        events = ops.json("warnings", "--active", "--hazard", "heat")
        red = [e for e in events if e["region_code"] == "620982" and e["level"] == "red"]
        if not red:
            time.sleep(0.5)
    event = red[0]
    assert event["hazard"] == "heat" and event["msg_type"] in ("alert", "update")
    assert "52418" in [s["station_id"] for s in event["stations"]]

    code, out, _ = ops.run("warnings", "--active", "--region", "620900")  # the table, filtered by prefecture
    assert code == 0 and out.splitlines()[0].startswith("SENT")
    assert any("620982" in line and "red" in line and "heat" in line for line in out.splitlines()[1:])

    code, out, _ = ops.run("warnings", event["warning_id"])  # one warning's history
    assert code == 0 and event["warning_id"] in out and "deliveries:" in out

    # URL and token from the environment
    monkeypatch.setenv("EWS_URL", ews.url)
    monkeypatch.setenv("EWS_TOKEN", TOKEN)
    code, out, _ = ops.run("warnings", "--active", "--json", api_flags=False)
    assert code == 0 and any(e["warning_id"] == event["warning_id"] for e in json.loads(out))

    code, _, err = ops.run("warnings", "no-such-warning")
    assert code == 1 and "no such warning" in err
    assert all(TOKEN not in text for text in ops.printed)


def test_subscriber_lifecycle(ews: EwsProcess, capsys: pytest.CaptureFixture[str]) -> None:
    ops = Ops(ews, capsys)
    hook = f"http://127.0.0.1:{free_port()}/hook"
    created = ops.json("subscribers", "add", "--name", "Lanzhou agriculture", "--department", "agriculture",
                       "--url", hook, "--region", "620100", "--hazard", "frost", "--hazard", "gale",
                       "--min-level", "orange", "--api-url", ews.url, "--token", TOKEN)
    ops.printed.append(json.dumps(created))
    sub_id, secret = created["id"], created["secret"]
    assert secret.startswith("whsec_")
    assert (created["regions"], created["hazards"], created["min_level"]) == (["620100"], ["frost", "gale"],
                                                                              "orange")

    code, out, _ = ops.run("subscribers", "add", "--name", "Dunhuang relief", "--department", "relief",
                           "--url", hook, "--region", "620100", "--hazard", "frost", "--api-url", ews.url,
                           "--token", TOKEN)
    assert code == 0 and out.count("whsec_") == 1  # the table form prints the new secret once
    [other_secret] = [w for w in out.split() if w.startswith("whsec_")]

    code, out, _ = ops.run("subscribers", "list")
    assert code == 0 and sub_id in out and "Lanzhou agriculture" in out and "active" in out
    assert secret not in out and other_secret not in out and "whsec_" not in out
    listed = {s["id"]: s for s in ops.json("subscribers", "list")}
    assert "secret" not in listed[sub_id] and listed[sub_id]["active"] is True

    code, out, _ = ops.run("subscribers", "pause", sub_id)
    assert code == 0 and "paused" in out and "whsec_" not in out
    ops.wait_active(sub_id, False)
    code, out, _ = ops.run("subscribers", "resume", sub_id)
    assert code == 0 and "active" in out
    ops.wait_active(sub_id, True)

    rotated = ops.json("subscribers", "rotate", sub_id, "--grace-s", "60")
    assert rotated["id"] == sub_id and rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    assert rotated["previous_secret_expires"] == pytest.approx(time.time() + 60, abs=30)
    code, out, _ = ops.run("subscribers", "rotate", sub_id)
    assert code == 0 and "secret: whsec_" in out and rotated["secret"] not in out

    assert isinstance(ops.json("subscribers", "deliveries", sub_id, "--limit", "10"), list)
    assert isinstance(ops.json("dead-letters", "list", "--subscription", sub_id), list)
    code, out, _ = ops.run("dead-letters", "list")
    assert code == 0
    assert ops.json("dead-letters", "redrive", "--subscription", sub_id) == {"redriven": 0}

    code, out, _ = ops.run("subscribers", "remove", sub_id)
    assert code == 0 and out.strip() == f"removed {sub_id}"
    ops.wait_listed(sub_id, lambda s: s is None, "disappeared")
    code, _, err = ops.run("subscribers", "remove", sub_id)
    assert code == 1 and "no such subscription" in err
    code, _, err = ops.run("subscribers", "pause", sub_id)
    assert code == 1 and "no such subscription" in err

    code, _, err = ops.run("subscribers", "list", "--url", ews.url, "--token", "wrong-token-000", api_flags=False)
    assert code == 1 and "missing or wrong bearer token" in err

    for s in ops.json("subscribers", "list"):  # leave no subscriber behind for other tests on this service
        if s["name"] == "Dunhuang relief":
            assert ops.run("subscribers", "remove", s["id"])[0] == 0
    assert all(TOKEN not in text for text in ops.printed)


def test_replay_reissues_red_heat_from_the_obs_topic(ews: EwsProcess, cli_broker: EmbeddedBroker,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ops = Ops(ews, capsys)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)  # clear of the other tests
    post_observation(ews, {"station_id": "52418", "time": iso(at), "tmax_c": 40.6})
    window = ("--from", iso(at - timedelta(minutes=1)), "--to", iso(at + timedelta(minutes=1)),
              "--bootstrap", cli_broker.bootstrap, "--hazard", "heat")
    events: list[dict[str, Any]] = []
    for _ in range(5):  # the 202 means sent; give the producer a moment if the record is not readable yet
        code, out, err = ops.run("replay", *window, "--json", api_flags=False)
        assert code == 0, err
        assert "nothing published" in err
        events = [e for e in json.loads(out) if e["region_code"] == "620982"]
        if events:
            break
        time.sleep(1)
    assert events, "replay found no warning event for Dunhuang"
    first = events[0]
    assert (first["msg_type"], first["hazard"], first["level"]) == ("alert", "heat", "red")
    assert first["sent"] == iso(at)  # the what-if is sent at data time
    assert [s["station_id"] for s in first["stations"]] == ["52418"]
    assert all(e["hazard"] == "heat" for e in json.loads(out))

    code, out, _ = ops.run("replay", *window, "--region", "620982", api_flags=False)
    assert code == 0
    rows = out.splitlines()
    assert rows[0].startswith("SENT") and any("620982" in r and "red" in r and "alert/issue" in r for r in rows)

    # a window before the observation: nothing from it
    code, out, _ = ops.run("replay", "--from", iso(at - timedelta(minutes=3)), "--to",
                           iso(at - timedelta(minutes=2)), "--bootstrap", cli_broker.bootstrap, "--region", "620982",
                           "--json", api_flags=False)
    assert code == 0 and [e for e in json.loads(out) if e["sent"] == iso(at)] == []
