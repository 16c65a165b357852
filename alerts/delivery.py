"""Webhook delivery: one signed POST, its outcome classified for retry / dead letter (ALERTING.md)."""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from alerts.signing import signature_headers
from alerts.ssrf import DestinationRefused, GuardedResolver, Network, address_refused
from warning.shared.times import iso_utc

RETRYABLE_STATUS = {408, 425, 429}
USER_AGENT = "ews-webhooks/0.1 (+Standard Webhooks)"
# A receiver's reply is read up to this many bytes and discarded (the status is all we use); a longer body is not
# drained: the connection is closed instead. Not a policy anyone tunes: nothing in a reply is ever needed.
RESPONSE_BODY_CAP = 64 * 1024

# What a receipt may say about a failure where anyone can read it (issue 17): the class, never the text.
ERROR_CLASSES = ("timeout", "refused", "reset", "dns", "tls", "malformed reply", "destination refused",
                 "connection error")
_HTTP_CLASS = re.compile(r"^HTTP [1-5][0-9]{2}$")


@dataclass(frozen=True)
class Outcome:
    """delivered | retry | dead | gone (410: pause the subscription); alerts.retry decides what follows.

    ``error`` is the operator's detail (the exception's text with every URL's query string and userinfo
    redacted); ``error_class`` what may be shown publicly (one of ERROR_CLASSES or "HTTP <status>")."""

    result: str
    status: int | None
    latency_s: float
    error: str | None = None
    retry_after_s: float | None = None
    error_class: str | None = None


_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?:[^\s/@'\"<>]*@)?(?P<rest>[^\s'\"<>]*)")


def redact_urls(text: str) -> str:
    """``text`` with every URL's userinfo dropped and its query string and fragment replaced by ``?REDACTED``
    (DingTalk / WeCom bot URLs carry ``?access_token=...``)."""
    def one(m: re.Match[str]) -> str:
        rest = m.group("rest")
        for sep in ("?", "#"):
            if sep in rest:
                rest = rest.split(sep, 1)[0] + "?REDACTED"
        return m.group("scheme") + rest
    return _URL.sub(one, text)


def public_error(error: str | None, result: str | None = None) -> str | None:
    """The class of a receipt's ``error`` text, for views without the token (also for receipts written before the
    class was recorded): never a host, port, URL or exception text."""
    if not error:
        return None
    if error in ERROR_CLASSES or _HTTP_CLASS.match(error):
        return error
    low = error.lower()
    for needle, cls in (("destination refused", "destination refused"), ("timeout", "timeout"),
                        ("connect call failed", "refused"), ("refused", "refused"), ("reset", "reset"),
                        ("disconnected", "reset"), ("name or service", "dns"), ("does not resolve", "dns"),
                        ("dns", "dns"), ("certificate", "tls"), ("sslerror", "tls"), ("ssl error", "tls"),
                        ("payload", "malformed reply"), ("message=", "malformed reply")):
        if needle in low:
            return cls
    return "connection error"


def error_class(exc: BaseException) -> str:
    """The outcome class of a failed POST's exception."""
    if isinstance(exc, DestinationRefused):
        return "destination refused"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return "tls"
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(getattr(exc, "os_error", None),
                                                                      socket.gaierror):
        return "dns"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "refused" if isinstance(exc.os_error, ConnectionRefusedError) else "connection error"
    if isinstance(exc, aiohttp.ServerDisconnectedError) or (isinstance(exc, aiohttp.ClientOSError) and isinstance(
            exc.__cause__ or exc, ConnectionResetError | BrokenPipeError)):
        return "reset"
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return "malformed reply"
    return "connection error"


def _failed(result: str, t0: float, exc: BaseException) -> Outcome:
    detail = redact_urls(f"{type(exc).__name__}: {exc}")[:300]
    return Outcome(result, None, time.monotonic() - t0, detail, error_class=error_class(exc))


def classify(status: int) -> str:
    if 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    if status in RETRYABLE_STATUS or status >= 500:
        return "retry"
    return "dead"  # other 4xx and 3xx (redirects are not followed)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now or time.time()))


def event_time(event: Mapping[str, Any]) -> str:
    """When the event occurred, as the envelope's ``timestamp`` (Standard Webhooks: "the timestamp of when the
    event occurred"): the event's ``sent`` (an exercise's data time), so every attempt, redrive and re-fold of one
    ``webhook-id`` carries the same body; the attempt's time is the ``webhook-timestamp`` header."""
    sent = event.get("sent")
    if isinstance(sent, str) and sent:
        return sent
    emitted = event.get("emitted_at")  # an event without ``sent`` (never made by this service): when it was made
    if isinstance(emitted, int | float):
        return iso_utc(emitted)
    return "1970-01-01T00:00:00Z"


def webhook_body(msg_type: str, event: Mapping[str, Any], backfill: bool = False, ack_url: str | None = None,
                 flags: Sequence[str] = ()) -> bytes:
    """The JSON envelope ``{"type", "timestamp", "data", "ack_url"[, "backfill", "reminder", "escalation"]}``: the
    same bytes on every attempt (the ack token is deterministic)."""
    envelope: dict[str, Any] = {"type": msg_type, "timestamp": event_time(event), "data": event}
    if ack_url is not None:
        envelope["ack_url"] = ack_url
    if backfill:
        envelope["backfill"] = True
    for flag in flags:
        envelope[flag] = True
    return orjson.dumps(envelope)


def new_session(allow: Sequence[Network], timeout_s: float, limit_per_host: int = 4) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow), limit_per_host=limit_per_host,
                                     use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(5.0, timeout_s))
    return aiohttp.ClientSession(connector=connector, timeout=timeout, headers={"User-Agent": USER_AGENT},
                                 read_bufsize=RESPONSE_BODY_CAP)


async def deliver_webhook(session: aiohttp.ClientSession, url: str, secrets: Sequence[str], webhook_id: str,
                          body: bytes, allow: Sequence[Network] = (), content_type: str = "application/json",
                          extra_headers: Mapping[str, str] | None = None) -> Outcome:
    """POST ``body`` signed with every secret in ``secrets``; never raises for network problems."""
    t0 = time.monotonic()
    host = urlsplit(url).hostname or ""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None and (reason := address_refused(literal, allow)):  # IP literals skip the resolver
        return Outcome("dead", None, 0.0, f"destination refused: {reason}", error_class="destination refused")
    headers = {**(extra_headers or {}), **signature_headers(secrets, webhook_id, body), "content-type": content_type}
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
            await _discard_reply(resp)
            latency = time.monotonic() - t0
            result = classify(resp.status)
            error = None if result == "delivered" else f"HTTP {resp.status}"
            return Outcome(result, resp.status, latency, error,
                           parse_retry_after(resp.headers.get("Retry-After")), error)
    except DestinationRefused as exc:
        return _failed("dead", t0, exc)
    except (TimeoutError, aiohttp.ClientError) as exc:
        return _failed("retry", t0, exc)


async def _discard_reply(resp: aiohttp.ClientResponse, cap: int = RESPONSE_BODY_CAP) -> None:
    """Read at most ``cap`` bytes of the reply and drop them; past that, close the connection instead of reading
    on (a 200 MiB reply costs 64 KiB)."""
    got = 0
    while got < cap:
        chunk = await resp.content.read(cap - got)
        if not chunk:
            return
        got += len(chunk)
    if not resp.content.at_eof():
        resp.close()
