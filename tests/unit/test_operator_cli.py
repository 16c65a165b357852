"""`ews warnings | subscribers | dead-letters | replay` against a local aiohttp stub of the API (no broker)."""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from warning.broker import free_port
from warning.operator_cli import (
    ReplayStats,
    add_operator_parsers,
    format_table,
    replay_events,
    run_operator,
    show_time,
)

TOKEN = "tok-unit-9f8e7d6c5b4a"
SECRET = "whsec_c2VjcmV0LXNob3duLW9uY2U="
OLD_SECRET = "whsec_b2xkLXNlY3JldA=="

EVENT = {
    "id": "e1", "warning_id": "w-dunhuang-heat", "seq": 1, "msg_type": "alert", "change": "issue",
    "region_code": "620982", "region_level": "county", "region_name": "Dunhuang City", "region_name_zh": "敦煌市",
    "hazard": "heat", "level": "red", "basis": "observed", "sent": "2026-07-14T06:00:05Z",
    "onset": "2026-07-14T06:00:00Z", "expires": "2026-07-15T06:00:00Z",
    "stations": [{"station_id": "52418", "station_name": "敦煌", "level": "red", "quantity": "tmax_c",
                  "value": 40.6, "time": "2026-07-14T06:00:00Z", "basis": "observed"}],
}
EVENT_PREF = {**EVENT, "id": "e2", "warning_id": "w-jiuquan-heat", "region_code": "620900",
              "region_level": "prefecture", "region_name": "Jiuquan", "region_name_zh": "酒泉市"}
SUB = {"id": "sub-1", "name": "Jiuquan health", "department": "health", "url": "http://127.0.0.1:9000/hook",
       "regions": ["620900"], "hazards": ["heat"], "min_level": "yellow", "format": "json", "basis": [],
       "msg_types": [], "active": True, "paused_reason": None, "previous_secret_expires": None,
       "created": "2026-07-14T05:00:00Z", "updated": "2026-07-14T05:00:00Z", "extra": {}}
RECEIPT = {"webhook_id": "msg_1", "subscription_id": "sub-1", "department": "health",
           "warning_id": "w-dunhuang-heat", "event_id": "e1", "type": "warning.alert", "attempt": 1,
           "result": "delivered", "status": 204, "latency_s": 0.012, "error": None, "time": "2026-07-14T06:00:06Z"}
PARKED = {"webhook_id": "msg_2", "subscription_id": "sub-1", "type": "warning.alert", "event": EVENT, "attempt": 7,
          "last_error": "HTTP 503", "parked_at": "2026-07-15T06:00:00Z"}


@dataclass
class Stub:
    """Answers (method, path) from ``routes`` and records every request."""

    url: str = ""
    routes: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def last(self) -> dict[str, Any]:
        return self.requests[-1]


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        s.requests.append({"method": request.method, "path": request.path, "query": dict(request.query),
                           "headers": dict(request.headers), "body": json.loads(raw) if raw else None})
        status, body = s.routes.get((request.method, request.path), (404, {"error": "no such route"}))
        if callable(body):
            body = body(request)
        if isinstance(body, web.Response):
            return body
        if status == 204:
            return web.Response(status=204)
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    port = free_port()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    s.url = f"http://127.0.0.1:{port}"
    yield s
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("EWS_TOKEN", "EWS_URL", "KAFKA_BOOTSTRAP"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EWS_DATA_DIR", str(tmp_path / "data"))  # no ./data/token from the checkout


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ews")
    add_operator_parsers(p.add_subparsers(dest="command", required=True))
    return p


def ews(*argv: str) -> int:
    return run_operator(parser().parse_args(list(argv)))


def api(stub: Stub, *argv: str) -> int:
    """An API command with the stub's URL and the token (--url goes after the sub-command)."""
    return ews(*argv, "--url", stub.url, "--token", TOKEN)


# ---- warnings ---------------------------------------------------------------------------------------------------

def test_warnings_table_sends_filters_and_token(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("GET", "/api/v1/warnings")] = (200, [EVENT, EVENT_PREF])
    assert api(stub, "warnings", "--active", "--hazard", "heat", "--region", "620900", "--level", "orange",
               "--since", "2026-07-14T08:00:00+08:00") == 0
    req = stub.last()
    assert req["query"] == {"active": "true", "hazard": "heat", "region": "620900", "level": "orange",
                            "since": "2026-07-14T00:00:00Z", "limit": "500"}  # normalised to UTC before it is sent
    assert req["headers"]["Authorization"] == f"Bearer {TOKEN}"
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["SENT", "TYPE", "LEVEL", "HAZARD", "REGION", "NAME", "SCOPE", "BASIS", "EXPIRES",
                                "STATIONS", "WARNING", "ID"]
    assert len(lines) == 3
    # aligned: every column starts at the header's offset
    for header in ("LEVEL", "REGION", "SCOPE", "WARNING ID"):
        col = lines[0].index(header)
        assert all(line[col - 1] == " " and line[col] != " " for line in lines[1:]), (header, lines)
    assert "620982" in lines[1] and "alert/issue" in lines[1] and "red" in lines[1] and "52418" in lines[1]
    assert "prefecture" in lines[2]
    assert TOKEN not in out + err


def test_warnings_follows_the_cursor_but_never_the_links_host(stub: Stub,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Pages up to --limit through the API's cursor; the next link's host (the public URL) is not where the
    token goes: only its cursor is taken, and every new filter is passed on."""
    def page(request: web.Request) -> web.Response:
        if request.query.get("cursor") == "c1":
            return web.json_response([EVENT_PREF])
        return web.json_response([EVENT], headers={
            "Link": '<https://elsewhere.example/api/v1/warnings?limit=1&cursor=c1>; rel="next"'})

    stub.routes[("GET", "/api/v1/warnings")] = (200, page)
    assert api(stub, "warnings", "--limit", "2", "--msg-type", "cancel", "--severity", "Extreme", "--urgency",
               "Immediate", "--certainty", "Observed", "--point", "40.1,94.7", "--region-level", "county",
               "--until", "2026-07-15T00:00:00Z", "--json") == 0
    first, second = stub.requests
    assert first["query"] == {"msg_type": "cancel", "severity": "Extreme", "urgency": "Immediate",
                              "certainty": "Observed", "point": "40.1,94.7", "region_level": "county",
                              "until": "2026-07-15T00:00:00Z", "limit": "2"}
    assert second["query"] == {**first["query"], "limit": "1", "cursor": "c1"}
    assert [e["id"] for e in json.loads(capsys.readouterr().out)] == ["e1", "e2"]


def test_warnings_json(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("GET", "/api/v1/warnings")] = (200, [EVENT])
    assert api(stub, "warnings", "--json") == 0
    out, _ = capsys.readouterr()
    assert json.loads(out) == [EVENT]
    assert stub.last()["query"] == {"limit": "500"}
    assert "敦煌市" in out  # UTF-8, not \\u escapes


def test_warning_detail(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    cancel = {**EVENT, "id": "e3", "seq": 2, "msg_type": "cancel", "change": "expire", "stations": []}
    stub.routes[("GET", "/api/v1/warnings/w-dunhuang-heat")] = (
        200, {"warning_id": "w-dunhuang-heat", "events": [EVENT, cancel], "deliveries": [RECEIPT]})
    assert api(stub, "warnings", "w-dunhuang-heat") == 0
    out, _ = capsys.readouterr()
    assert "alert/issue" in out and "cancel/expire" in out and "delivered" in out and "msg_1" in out


@pytest.mark.parametrize(("value", "utc", "shown"), [
    ("2026-07-14T06:00:00Z", False, "2026-07-14 14:00 BJT"),
    ("2026-07-14T06:00:05Z", False, "2026-07-14 14:00:05 BJT"),  # seconds only when there are some
    ("2026-07-14T20:30:00Z", False, "2026-07-15 04:30 BJT"),  # the Beijing date, not the UTC one
    ("2026-07-14T14:00:00+08:00", False, "2026-07-14 14:00 BJT"),
    ("2026-07-14T06:00:00.250+00:00", False, "2026-07-14 14:00 BJT"),  # fractions are not shown
    ("2026-07-14T06:00:00Z", True, "2026-07-14 06:00 UTC"),
    ("2026-07-14T14:00:00+08:00", True, "2026-07-14 06:00 UTC"),
    ("2026-07-14T06:00:00", False, "2026-07-14T06:00:00"),  # no offset: not a time we can place, as it is
    ("2026-07-14", False, "2026-07-14"),
    ("w-2026-07-14T06:00:00Z", False, "w-2026-07-14T06:00:00Z"),
    ("2026-13-40T06:00:00Z", False, "2026-13-40T06:00:00Z"),
])
def test_show_time(value: str, utc: bool, shown: str) -> None:
    assert show_time(value, utc) == shown


def test_tables_show_beijing_time_or_utc_and_json_stays_utc(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    """One zone in the tables: Beijing time, labelled, as the dashboard shows; --utc for UTC; JSON (and so the
    API and webhooks) keeps UTC ISO-8601 whatever the flag."""
    stub.routes[("GET", "/api/v1/warnings")] = (200, [EVENT])
    assert api(stub, "warnings") == 0
    out = capsys.readouterr().out
    assert "2026-07-14 14:00:05 BJT" in out and "2026-07-15 14:00 BJT" in out  # sent, expires
    assert "T06:00" not in out and "UTC" not in out
    assert api(stub, "warnings", "--utc") == 0
    out = capsys.readouterr().out
    assert "2026-07-14 06:00:05 UTC" in out and "2026-07-15 06:00 UTC" in out and "BJT" not in out
    assert api(stub, "warnings", "--utc", "--json") == 0
    assert json.loads(capsys.readouterr().out)[0]["sent"] == "2026-07-14T06:00:05Z"
    assert format_table([{"t": "2026-07-14T06:00:00Z"}], [("t", "T")], utc=True).splitlines()[1] == \
        "2026-07-14 06:00 UTC"
    stub.routes[("GET", "/api/v1/dead-letters")] = (200, [PARKED])
    assert api(stub, "dead-letters", "list") == 0
    assert "2026-07-15 14:00 BJT" in capsys.readouterr().out  # parked at


def test_empty_list(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("GET", "/api/v1/warnings")] = (200, [])
    assert api(stub, "warnings") == 0
    assert capsys.readouterr().out.strip() == "(no warnings)"


def test_bad_since_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["warnings", "--since", "yesterday"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        parser().parse_args(["warnings", "--since", "2026-07-14T06:00:00"])  # no offset


# ---- errors -----------------------------------------------------------------------------------------------------

def test_api_error_exit_1_with_message(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("POST", "/api/v1/subscriptions/nope/pause")] = (404, {"error": "no such subscription"})
    assert api(stub, "subscribers", "pause", "nope") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "HTTP 404" in err and "no such subscription" in err


def test_unauthorised_exit_1_with_hint(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("GET", "/api/v1/subscriptions")] = (401, {"error": "missing or wrong bearer token"})
    assert ews("subscribers", "list", "--url", stub.url) == 1  # no token anywhere
    assert "Authorization" not in stub.last()["headers"]
    err = capsys.readouterr().err
    assert "missing or wrong bearer token" in err and "EWS_TOKEN" in err


def test_non_json_error_body(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("GET", "/api/v1/warnings")] = (502, "Bad Gateway from the proxy")
    assert api(stub, "warnings") == 1
    assert "HTTP 502: Bad Gateway from the proxy" in capsys.readouterr().err


def test_connection_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert ews("warnings", "--url", url, "--token", TOKEN) == 2
    err = capsys.readouterr().err
    assert "cannot reach the API" in err and url in err and TOKEN not in err


def test_token_never_printed_even_if_echoed(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("GET", "/api/v1/subscriptions")] = (
        400, lambda r: {"error": f"bad header {r.headers.get('Authorization')}"})
    assert api(stub, "subscribers", "list") == 1
    out, err = capsys.readouterr()
    assert TOKEN not in out + err and "Bearer ***" in err


# ---- token and URL sources ------------------------------------------------------------------------------------

def test_token_and_url_from_env(stub: Stub, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EWS_URL", stub.url + "/")
    monkeypatch.setenv("EWS_TOKEN", "env-token-1234")
    stub.routes[("GET", "/api/v1/subscriptions")] = (200, [])
    assert ews("subscribers", "list") == 0
    assert stub.last()["headers"]["Authorization"] == "Bearer env-token-1234"
    assert "env-token-1234" not in capsys.readouterr().out


def test_token_from_data_dir_file(stub: Stub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "token").write_text("file-token-5678\n")
    stub.routes[("GET", "/api/v1/subscriptions")] = (200, [])
    assert ews("subscribers", "list", "--url", stub.url) == 0
    assert stub.last()["headers"]["Authorization"] == "Bearer file-token-5678"


# ---- subscribers ------------------------------------------------------------------------------------------------

def test_add_prints_secret_once(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("POST", "/api/v1/subscriptions")] = (201, {**SUB, "secret": SECRET})
    assert ews("subscribers", "add", "--name", "Jiuquan health", "--department", "health",
               "--url", "http://127.0.0.1:9000/hook", "--region", "620900", "--region", "620982",
               "--hazard", "heat", "--min-level", "yellow", "--format", "json",
               "--api-url", stub.url, "--token", TOKEN) == 0
    req = stub.last()
    assert req["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert req["body"] == {"name": "Jiuquan health", "department": "health", "url": "http://127.0.0.1:9000/hook",
                           "regions": ["620900", "620982"], "hazards": ["heat"], "min_level": "yellow",
                           "format": "json"}
    out, err = capsys.readouterr()
    assert out.count(SECRET) == 1 and f"secret: {SECRET}" in out
    assert "sub-1" in out and "Jiuquan health" in out and "never shows it again" in err
    assert TOKEN not in out + err


def test_add_json_includes_secret(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("POST", "/api/v1/subscriptions")] = (201, {**SUB, "secret": SECRET})
    assert ews("subscribers", "add", "--name", "n", "--url", "http://127.0.0.1:9000/hook", "--region", "620900",
               "--json", "--api-url", stub.url, "--token", TOKEN) == 0
    assert json.loads(capsys.readouterr().out)["secret"] == SECRET
    assert stub.last()["body"]["department"] == "other" and stub.last()["body"]["hazards"] == []


def test_add_api_rejection(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("POST", "/api/v1/subscriptions")] = (400, {"error": "regions: unknown region code '999999'"})
    assert ews("subscribers", "add", "--name", "n", "--url", "http://x/", "--region", "999999",
               "--api-url", stub.url, "--token", TOKEN) == 1
    assert "regions: unknown region code '999999'" in capsys.readouterr().err


def test_list_never_shows_secrets(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    leaky = {**SUB, "secret": SECRET, "previous_secret": OLD_SECRET}  # an API bug must not reach the screen
    paused = {**SUB, "id": "sub-2", "name": "Water", "active": False, "paused_reason": "HTTP 410 Gone"}
    stub.routes[("GET", "/api/v1/subscriptions")] = (200, [leaky, paused])
    assert api(stub, "subscribers", "list") == 0
    out = capsys.readouterr().out
    assert SECRET not in out and OLD_SECRET not in out
    assert "sub-1" in out and "active" in out and "paused (HTTP 410 Gone)" in out
    assert api(stub, "subscribers", "list", "--json") == 0
    out = capsys.readouterr().out
    listed = json.loads(out)
    assert SECRET not in out and "secret" not in listed[0] and listed[1]["active"] is False


def test_pause_resume(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("POST", "/api/v1/subscriptions/sub-1/pause")] = (200, {**SUB, "active": False})
    stub.routes[("POST", "/api/v1/subscriptions/sub-1/resume")] = (200, {**SUB, "active": True, "secret": SECRET})
    assert api(stub, "subscribers", "pause", "sub-1") == 0
    assert stub.last()["method"] == "POST" and stub.last()["body"] == {}
    assert "paused" in capsys.readouterr().out
    assert api(stub, "subscribers", "resume", "sub-1", "--json") == 0
    out = capsys.readouterr().out
    assert json.loads(out)["active"] is True and SECRET not in out


def test_pause_without_body_in_answer(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("POST", "/api/v1/subscriptions/sub-1/pause")] = (204, None)
    assert api(stub, "subscribers", "pause", "sub-1") == 0
    assert capsys.readouterr().out.strip() == "paused sub-1"


def test_rotate_prints_new_secret(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("POST", "/api/v1/subscriptions/sub-1/rotate-secret")] = (
        200, {"id": "sub-1", "secret": SECRET, "previous_secret_expires": 1784095200.0})
    assert api(stub, "subscribers", "rotate", "sub-1", "--grace-s", "600") == 0
    assert stub.last()["body"] == {"grace_s": 600}
    out, err = capsys.readouterr()
    assert f"secret: {SECRET}" in out and "2026-07-15 14:00 BJT" in out and TOKEN not in out + err
    assert api(stub, "subscribers", "rotate", "sub-1", "--json") == 0
    assert stub.last()["body"] == {}
    assert json.loads(capsys.readouterr().out)["secret"] == SECRET


def test_deliveries_and_remove(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    failed = {**RECEIPT, "webhook_id": "msg_9", "result": "retry", "status": 503, "error": "HTTP 503"}
    stub.routes[("GET", "/api/v1/subscriptions/sub-1/deliveries")] = (200, [RECEIPT, failed])
    assert api(stub, "subscribers", "deliveries", "sub-1", "--limit", "5") == 0
    assert stub.last()["query"] == {"limit": "5"}
    out = capsys.readouterr().out
    assert "delivered" in out and "retry" in out and "HTTP 503" in out and len(out.splitlines()) == 3
    stub.routes[("DELETE", "/api/v1/subscriptions/sub-1")] = (204, None)
    assert api(stub, "subscribers", "remove", "sub-1") == 0
    assert stub.last()["method"] == "DELETE"
    assert capsys.readouterr().out.strip() == "removed sub-1"
    stub.routes[("DELETE", "/api/v1/subscriptions/sub-1")] = (404, {"error": "no such subscription"})
    assert api(stub, "subscribers", "remove", "sub-1", "--json") == 1


# ---- dead letters -----------------------------------------------------------------------------------------------

def test_dead_letters_list_and_redrive(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.routes[("GET", "/api/v1/dead-letters")] = (200, [PARKED])
    assert api(stub, "dead-letters", "list", "--subscription", "sub-1") == 0
    assert stub.last()["query"] == {"subscription_id": "sub-1"}
    out = capsys.readouterr().out
    assert "msg_2" in out and "HTTP 503" in out and "w-dunhuang-heat" in out and "620982" in out
    assert api(stub, "dead-letters", "list", "--json") == 0
    assert stub.last()["query"] == {}
    assert json.loads(capsys.readouterr().out) == [PARKED]

    stub.routes[("POST", "/api/v1/dead-letters/redrive")] = (200, {"redriven": 3})
    assert api(stub, "dead-letters", "redrive") == 0
    assert stub.last()["body"] == {}
    assert capsys.readouterr().out.strip() == "redriven: 3"
    assert api(stub, "dead-letters", "redrive", "--subscription", "sub-1", "--json") == 0
    assert stub.last()["body"] == {"subscription_id": "sub-1"}
    assert json.loads(capsys.readouterr().out) == {"redriven": 3}


# ---- tables -----------------------------------------------------------------------------------------------------

def test_table_aligns_wide_characters() -> None:
    text = format_table([{"a": "敦煌市", "b": 1}, {"a": "Dunhuang", "b": None}], [("a", "NAME"), ("b", "N")])
    lines = text.splitlines()
    # 敦煌市 takes six terminal columns: the second column starts at display column 10 on every line
    assert lines[1] == "敦煌市    1" and lines[2] == "Dunhuang  -" and lines[0] == "NAME      N"


# ---- replay (the in-memory part; the Kafka part is in tests/integration) -------------------------------------

def t(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


def test_replay_events_dunhuang_red_heat_then_expiry() -> None:
    obs = [{"station_id": "52418", "time": "2026-07-14T06:00:00Z", "tmax_c": 40.6},
           {"station_id": "52418", "time": "2026-07-14T06:00:00Z", "tmax_c": 40.6},  # duplicate: stale
           {"station_id": "99999", "time": "2026-07-14T06:00:00Z", "tmax_c": 41.0},  # unknown station
           {"station_id": "52418", "time": "2026-07-13T06:00:00Z", "tmax_c": 45.0},  # before the range
           {"station_id": "52418"}]  # malformed
    stats = ReplayStats()
    events = replay_events(obs, t("2026-07-14T00:00:00Z"), t("2026-07-14T12:00:00Z"), stats=stats)
    assert [(e["msg_type"], e["region_code"], e["hazard"], e["level"]) for e in events] == [
        ("alert", "620982", "heat", "red"), ("alert", "620900", "heat", "red")]
    assert events[0]["sent"] == "2026-07-14T06:00:00Z"  # sent at the data time: reproducible ids
    assert events[0]["stations"][0]["station_id"] == "52418"
    assert (stats.observations, stats.stale, stats.unknown_station, stats.malformed, stats.events) == (3, 1, 1, 1, 2)
    # two days later the warning has expired: ticks in data time issue the cancels
    later = replay_events(obs, t("2026-07-14T00:00:00Z"), t("2026-07-16T00:00:00Z"))
    assert [(e["msg_type"], e["change"]) for e in later if e["region_code"] == "620982"] == [
        ("alert", "issue"), ("cancel", "expire")]
    # the same input gives the same event ids
    assert [e["id"] for e in replay_events(obs, t("2026-07-14T00:00:00Z"), t("2026-07-16T00:00:00Z"))] == [
        e["id"] for e in later]


def test_replay_events_out_of_order_and_hazard_filter() -> None:
    obs = [{"station_id": "52418", "time": "2026-07-14T09:00:00Z", "tmax_c": 41.0},
           {"station_id": "52418", "time": "2026-07-14T06:00:00Z", "tmax_c": 38.0}]  # arrives late, sorted first
    events = replay_events(obs, t("2026-07-14T00:00:00Z"), t("2026-07-14T10:00:00Z"))
    county = [(e["msg_type"], e["change"], e["level"]) for e in events if e["region_code"] == "620982"]
    assert county == [("alert", "issue", "orange"), ("update", "upgrade", "red")]
    assert replay_events(obs, t("2026-07-14T00:00:00Z"), t("2026-07-14T10:00:00Z"), hazards=["gale"]) == []


def test_replay_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert ews("replay", "--from", "2026-07-14T00:00:00Z", "--to", "2026-07-15T00:00:00Z") == 2
    assert "KAFKA_BOOTSTRAP" in capsys.readouterr().err
    assert ews("replay", "--from", "2026-07-15T00:00:00Z", "--to", "2026-07-14T00:00:00Z",
               "--bootstrap", "127.0.0.1:1") == 2
    assert "before" in capsys.readouterr().err
    assert ews("replay", "--from", "2026-07-14T00:00:00Z", "--hazard", "tornado", "--bootstrap", "127.0.0.1:1") == 2
    assert "unknown hazard 'tornado'" in capsys.readouterr().err


def test_replay_unreachable_broker_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert ews("replay", "--from", "2026-07-14T00:00:00Z", "--bootstrap", f"127.0.0.1:{free_port()}") == 2
    assert "cannot reach Kafka" in capsys.readouterr().err


def test_json_output_handles_numpy_scalars(capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from warning.operator_cli import Context

    Context(url="http://x", token=None, json=True).emit_json([{"value": np.float64(40.6), "n": np.int64(2)}])
    assert json.loads(capsys.readouterr().out) == [{"value": 40.6, "n": 2}]


def test_redirect_is_not_followed_with_the_token(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    def redirect(request: web.Request) -> Any:
        raise web.HTTPFound("http://example.invalid/api/v1/warnings")

    stub.routes[("GET", "/api/v1/warnings")] = (200, redirect)
    assert api(stub, "warnings") == 1
    assert "redirected to http://example.invalid/api/v1/warnings" in capsys.readouterr().err
    assert len(stub.requests) == 1


# ---- replay grades as the service does: EWS_RULES, the data dir's climatology, the grade stage's fold ---------

RULES_TOML = Path(__file__).parents[2] / "warning" / "data" / "rules.toml"
DUNHUANG_40_6 = [{"station_id": "52418", "time": "2026-07-14T06:00:00Z", "tmax_c": 40.6}]


def rules_with_red_heat_at(tmp_path: Path, value: float) -> Path:
    text = RULES_TOML.read_text(encoding="utf-8")
    red = '{ quantity = "tmax_day", op = ">=", value = 40.0 }'
    assert text.count(red) == 1
    path = tmp_path / "rules.toml"
    path.write_text(text.replace(red, red.replace("40.0", str(value))), encoding="utf-8")
    return path


def test_replay_events_honours_ews_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    window = (t("2026-07-14T00:00:00Z"), t("2026-07-14T12:00:00Z"))
    monkeypatch.delenv("EWS_RULES", raising=False)
    assert [e["level"] for e in replay_events(DUNHUANG_40_6, *window)] == ["red", "red"]  # packaged: red >= 40
    monkeypatch.setenv("EWS_RULES", str(rules_with_red_heat_at(tmp_path, 41.0)))
    events = replay_events(DUNHUANG_40_6, *window)
    assert [(e["region_code"], e["level"]) for e in events] == [("620982", "orange"), ("620900", "orange")]


def test_ews_replay_command_uses_ews_rules_and_the_climatology(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`ews replay` takes the rules from EWS_RULES and the station climatology from <EWS_DATA_DIR>/climatology (the
    heat-health product needs it), as `ews run` does; the obs topic is stubbed."""
    import warning.climatology
    import warning.operator_cli

    days = [{"station_id": "52418", "time": f"2026-06-{d:02d}T04:00:00Z", "tmax_c": 32.0, "tmin_c": 22.0}
            for d in range(1, 31)]
    days += [{"station_id": "52418", "time": f"2026-07-{d:02d}T04:00:00Z", "tmax_c": 32.0, "tmin_c": 22.0}
             for d in range(1, 14)]
    observations = days + DUNHUANG_40_6

    async def obs_topic(bootstrap: str, **kw: Any) -> list[dict[str, Any]]:
        return [dict(o) for o in observations]

    class Climatology:  # EHF thresholds of every station: a daily mean of 27 degC is 1.4 x EHF85
        def t95(self, sid: str) -> float:
            return 20.0

        def ehf85(self, sid: str) -> float:
            return 5.0

        def mci_params(self, sid: str) -> None:
            return None

    loaded: list[tuple[Path, bool]] = []

    def load_climatology(out_dir: Path, *, missing_ok: bool = False) -> Climatology:
        loaded.append((Path(out_dir), missing_ok))
        return Climatology()

    monkeypatch.setattr(warning.operator_cli, "read_obs_topic", obs_topic)
    monkeypatch.setattr(warning.climatology, "load_climatology", load_climatology)
    monkeypatch.setenv("EWS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EWS_RULES", str(rules_with_red_heat_at(tmp_path, 41.0)))
    assert ews("replay", "--from", "2026-06-01T00:00:00Z", "--to", "2026-07-14T12:00:00Z", "--bootstrap",
               "127.0.0.1:1", "--region", "620982", "--json") == 0
    events = json.loads(capsys.readouterr().out)
    assert loaded == [(tmp_path / "data" / "climatology", True)]
    county = [e for e in events if e["region_code"] == "620982"]
    heat = [(e["msg_type"], e["level"]) for e in county if e["hazard"] == "heat"]
    assert heat == [("alert", "orange")]  # 40.6 degC is orange under the EWS_RULES table (red from 41)
    assert {e["level"] for e in county if e["hazard"] == "heat_health"} == {"orange"}  # EHF 7 K2 = 1.4 EHF85
    monkeypatch.setenv("EWS_RULES", str(tmp_path / "missing.toml"))
    assert ews("replay", "--from", "2026-06-01T00:00:00Z", "--bootstrap", "127.0.0.1:1") == 2
    assert "rules" in capsys.readouterr().err


# ---- first contact and acknowledgements (issue 20) ---------------------------------------------------------------

def test_the_running_services_api_is_found_in_the_data_dir(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    from warning.shared import running

    running.write(running.default_data_dir(), url=stub.url, bootstrap="127.0.0.1:1")  # as `ews run` does
    stub.routes[("GET", "/api/v1/warnings")] = (200, [EVENT])
    assert ews("warnings", "--token", TOKEN) == 0  # no --url, no EWS_URL
    assert stub.last()["path"] == "/api/v1/warnings"


def test_add_a_fallback_subscription(stub: Stub) -> None:
    stub.routes[("POST", "/api/v1/subscriptions")] = (201, {**SUB, "secret": SECRET, "fallback": True})
    assert ews("subscribers", "add", "--name", "Jiuquan duty office", "--url", "http://127.0.0.1:9000/hook",
               "--region", "620900", "--fallback", "--api-url", stub.url, "--token", TOKEN) == 0
    assert stub.last()["body"]["fallback"] is True


def test_one_warning_says_who_received_and_acknowledged(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    wid = EVENT["warning_id"]
    stub.routes[("GET", f"/api/v1/warnings/{wid}")] = (200, {
        "warning_id": wid, "events": [EVENT], "deliveries": [], "acknowledgements": [],
        "received": [{"subscription_id": "sub-1", "name": "Jiuquan health", "department": "health",
                      "delivered_at": "2026-07-14T08:00:01Z", "acknowledged_at": "2026-07-14T08:03:00Z"},
                     {"subscription_id": "sub-2", "name": "Jiuquan water", "department": "water",
                      "delivered_at": "2026-07-14T08:00:01Z", "acknowledged_at": None}]})
    assert api(stub, "warnings", wid) == 0
    out = capsys.readouterr().out
    who = out.split("who knows:")[1].split("deliveries:")[0]
    assert "Jiuquan health" in who and "2026-07-14 16:03 BJT" in who and "Jiuquan water" in who
