"""Issue 17's guards as units: tokens (length, named and hashed), receipt redaction and outcome classes, SSRF
unwrapping of IPv4-carrying IPv6 addresses, subscription list caps and printable names, terminal escaping, the
failed-token throttle. tests/integration/test_hostile_inputs.py replays the findings against a running service."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import aiohttp
import pytest

from alerts.delivery import ERROR_CLASSES, error_class, public_error, redact_urls
from alerts.ssrf import DestinationRefused, address_refused, embedded_ipv4
from alerts.subscriptions import SubscriptionError, new_subscription
from warning.operator_cli import format_table, terminal_safe
from warning.operator_tokens import MAIN_NAME, OperatorTokens, read_tokens, token_hash, write_tokens
from warning.shared.config import Settings, TokenError, ensure_token
from warning.web.auth import FailedTokens
from warning.web.views import public_receipt

LONG = "k" * 32


@pytest.mark.parametrize("token", ["", "   ", "x" * 31])
def test_empty_or_short_env_token_is_refused(tmp_path: Path, token: str) -> None:
    with pytest.raises(TokenError, match="EWS_TOKEN"):
        ensure_token(Settings.from_env({"EWS_TOKEN": token, "EWS_DATA_DIR": str(tmp_path)}))


def test_empty_token_file_is_refused_and_a_long_one_used(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    s = Settings.from_env({"EWS_DATA_DIR": str(tmp_path)})
    with pytest.raises(TokenError, match="empty"):
        ensure_token(s)
    (tmp_path / "token").write_text(LONG + "\n")
    assert ensure_token(s) == (LONG, False)


def test_named_tokens_are_stored_hashed_and_identify_their_operator(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    alice = "a" * 43
    write_tokens(path, {"alice": token_hash(alice)})
    assert alice not in path.read_text() and read_tokens(path) == {"alice": token_hash(alice)}
    tokens = OperatorTokens(LONG, path)
    assert tokens.identify(LONG) == MAIN_NAME
    assert tokens.identify(alice) == "alice"
    assert tokens.identify("b" * 43) is None and tokens.identify("") is None
    write_tokens(path, {})  # revoked: the file is re-read when it changes
    assert tokens.identify(alice) is None


def test_redaction_drops_query_strings_and_userinfo() -> None:
    text = ("ClientResponseError: 400, message='Bad status line', "
            "url='https://oapi.dingtalk.com/robot/send?access_token=SECRET1&sign=x' "
            "and http://user:pw@example.com:8443/hook#frag")
    out = redact_urls(text)
    assert "SECRET1" not in out and "access_token" not in out and "user:pw" not in out and "frag" not in out
    assert "https://oapi.dingtalk.com/robot/send?REDACTED" in out and "http://example.com:8443/hook?REDACTED" in out


@pytest.mark.parametrize(("error", "cls"), [
    ("timeout", "timeout"), ("HTTP 503", "HTTP 503"),
    ("ClientConnectorError: Cannot connect to host 10.0.0.1:443 ssl:default [Connect call failed]", "refused"),
    ("ClientResponseError: 400, message='Invalid', url='http://h:1/?a=b'", "malformed reply"),
    ("ServerDisconnectedError: Server disconnected", "reset"),
    ("destination refused: 10.0.0.1 is private", "destination refused"),
    ("ClientConnectorDNSError: Cannot connect to host x.invalid:443 ssl:default [Name or service not known]", "dns"),
    ("ClientConnectorCertificateError: Cannot connect to host h:443 ssl:True [SSLCertVerificationError]", "tls"),
    ("something odd at 10.0.0.1:99", "connection error"),
])
def test_public_error_is_a_class_never_the_text(error: str, cls: str) -> None:
    assert public_error(error) == cls
    assert cls in ERROR_CLASSES or cls.startswith("HTTP ")


def test_error_class_of_exceptions() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None)
    assert error_class(TimeoutError()) == "timeout"
    assert error_class(DestinationRefused("x")) == "destination refused"
    assert error_class(aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))) == "refused"
    assert error_class(aiohttp.ClientConnectorError(key, socket.gaierror(-2, "Name"))) == "dns"
    assert error_class(aiohttp.ServerDisconnectedError()) == "reset"
    assert error_class(aiohttp.ClientPayloadError("bad")) == "malformed reply"


def test_public_receipt_keeps_the_class_and_drops_the_detail() -> None:
    receipt = {"webhook_id": "w", "subscription_id": "s", "department": "water", "warning_id": "x", "event_id": "e",
               "type": "warning.alert", "attempt": 1, "result": "retry", "status": None, "latency_s": 0.1,
               "error": "ClientConnectorError: Cannot connect to host 10.1.2.3:8443", "time": "t"}
    assert public_receipt(receipt)["error"] == "connection error"
    assert public_receipt({**receipt, "error_class": "timeout"})["error"] == "timeout"
    assert "10.1.2.3" not in str(public_receipt(receipt))


@pytest.mark.parametrize(("addr", "inner"), [
    ("2002:7f00:1::1", "127.0.0.1"), ("2002:a9fe:a9fe::", "169.254.169.254"),
    ("64:ff9b::a9fe:a9fe", "169.254.169.254"), ("64:ff9b::7f00:1", "127.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:5601:5601", "169.254.169.254"), ("::ffff:10.0.0.1", "10.0.0.1"),
])
def test_ipv6_carrying_a_private_ipv4_is_refused(addr: str, inner: str) -> None:
    a = ipaddress.IPv6Address(addr)
    assert str(embedded_ipv4(a)) == inner
    reason = address_refused(a)
    assert reason is not None and inner in reason


def test_ipv6_carrying_a_public_ipv4_is_judged_by_it() -> None:
    assert address_refused(ipaddress.ip_address("2002:808:808::1")) is None
    assert address_refused(ipaddress.ip_address("64:ff9b::808:808")) is None
    assert embedded_ipv4(ipaddress.IPv6Address("2606:4700::1111")) is None
    allow = [ipaddress.ip_network("127.0.0.0/8")]
    assert address_refused(ipaddress.ip_address("2002:7f00:1::1"), allow) is None


def _sub(**raw: object) -> object:
    body = {"name": "n", "department": "other", "url": "https://example.com/h", "regions": ["620000"], **raw}
    return new_subscription(body, known_region=lambda r: True, known_hazards={"heat"}, max_list_items=5)


@pytest.mark.parametrize("key", ["regions", "hazards", "basis", "msg_types"])
def test_subscription_lists_are_capped_with_the_field_named(key: str) -> None:
    with pytest.raises(SubscriptionError, match=f"^{key}: 6 entries; at most 5"):
        _sub(**{key: ["heat"] * 6})


def test_control_characters_are_stripped_from_names() -> None:
    sub = _sub(name="Gansu\x1b]0;x\x07 health\x1b[2J\u202e\n")
    assert sub.name == "Gansu]0;x health[2J"  # type: ignore[attr-defined]
    with pytest.raises(SubscriptionError, match=r"^name:"):
        _sub(name="\x1b\x07")


def test_terminal_tables_show_control_characters_as_escapes() -> None:
    table = format_table([{"name": "evil\x1b[2J\x9b31m\u202e"}], [("name", "NAME")])
    assert "\x1b" not in table and "\x9b" not in table and "\u202e" not in table
    assert "evil\\x1b[2J" in table
    assert terminal_safe("a\nb 中文") == "a\nb 中文"


def test_failed_tokens_throttle_per_address_within_the_window() -> None:
    t = FailedTokens(limit=3, window_s=60)
    for i in range(3):
        assert t.retry_after("1.2.3.4", now=100.0 + i) is None
        t.failed("1.2.3.4", now=100.0 + i)
    assert t.retry_after("1.2.3.4", now=103.0) == pytest.approx(57.0)
    assert t.retry_after("5.6.7.8", now=103.0) is None  # per address
    assert t.retry_after("1.2.3.4", now=160.5) is None  # the first failure left the window


def test_limits_come_from_the_environment() -> None:
    s = Settings.from_env({"EWS_MAX_ITEMS": "7", "EWS_SUBSCRIPTION_MAX_LIST": "8", "EWS_SSE_MAX_CLIENTS": "9",
                           "EWS_HTTP_HEADER_TIMEOUT": "3", "EWS_HTTP_BODY_TIMEOUT": "4", "EWS_AUTH_FAILURES": "5",
                           "EWS_AUTH_WINDOW": "6", "EWS_METRICS_TOKEN_REQUIRED": "1",
                           "EWS_PUBLIC_URL": "https://ews.example.cn/", "EWS_HTTP_PORT": "9999"})
    assert (s.max_items, s.max_list_items, s.sse_max_clients, s.header_timeout_s, s.body_timeout_s,
            s.auth_failures, s.auth_window_s, s.metrics_token_required) == (7, 8, 9, 3.0, 4.0, 5, 6.0, True)
    assert s.public_base_url == "https://ews.example.cn"
    assert Settings.from_env({"EWS_HTTP_PORT": "9999"}).public_base_url == "http://127.0.0.1:9999"
