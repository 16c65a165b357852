"""Webhook delivery: one signed POST, its outcome classified for retry / dead letter (ALERTING.md)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from alerts.signing import signature_headers
from alerts.ssrf import DestinationRefused, GuardedResolver, Network, address_refused

RETRYABLE_STATUS = {408, 425, 429}
USER_AGENT = "ews-webhooks/0.1 (+Standard Webhooks)"


@dataclass(frozen=True)
class Outcome:
    """delivered | retry | dead | gone (410: pause the subscription); alerts.retry decides what follows."""

    result: str
    status: int | None
    latency_s: float
    error: str | None = None
    retry_after_s: float | None = None


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


def webhook_body(msg_type: str, event: Mapping[str, Any], backfill: bool = False) -> bytes:
    envelope: dict[str, Any] = {"type": msg_type, "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                "data": event}
    if backfill:
        envelope["backfill"] = True
    return orjson.dumps(envelope)


def new_session(allow: Sequence[Network], timeout_s: float, limit_per_host: int = 4) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow), limit_per_host=limit_per_host,
                                     use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(5.0, timeout_s))
    return aiohttp.ClientSession(connector=connector, timeout=timeout, headers={"User-Agent": USER_AGENT})


async def deliver_webhook(session: aiohttp.ClientSession, url: str, secrets: Sequence[str], webhook_id: str,
                          body: bytes, allow: Sequence[Network] = (), content_type: str = "application/json"
                          ) -> Outcome:
    """POST ``body`` signed with every secret in ``secrets``; never raises for network problems."""
    t0 = time.monotonic()
    host = urlsplit(url).hostname or ""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None and (reason := address_refused(literal, allow)):  # IP literals skip the resolver
        return Outcome("dead", None, 0.0, f"destination refused: {reason}")
    headers = {**signature_headers(secrets, webhook_id, body), "content-type": content_type}
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
            await resp.read()
            latency = time.monotonic() - t0
            result = classify(resp.status)
            return Outcome(result, resp.status, latency,
                           None if result == "delivered" else f"HTTP {resp.status}",
                           parse_retry_after(resp.headers.get("Retry-After")))
    except DestinationRefused as exc:
        return Outcome("dead", None, time.monotonic() - t0, str(exc))
    except TimeoutError:
        return Outcome("retry", None, time.monotonic() - t0, "timeout")
    except aiohttp.ClientError as exc:
        return Outcome("retry", None, time.monotonic() - t0, f"{type(exc).__name__}: {exc}"[:300])
