"""Server-side request forgery guard for webhook destinations.

A subscription URL must be http(s), and every address its host resolves to must be public: loopback, private
(RFC 1918 / ULA), link-local (incl. cloud metadata 169.254.169.254), multicast, reserved and unspecified
addresses are refused unless an operator allow-lists a network (``EWS_WEBHOOK_ALLOW_NETS``). IPv6 addresses
that carry an IPv4 address (IPv4-mapped, 6to4 2002::/16, NAT64 64:ff9b::/96, Teredo 2001::/32) are judged by
it. The check runs when a subscription is created *and* on the address actually connected to
(``GuardedResolver``), so DNS rebinding between the two does not get through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(ValueError):
    pass


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: the last 32 bits are the IPv4 address


def embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and reaches: IPv4-mapped (::ffff:a.b.c.d), 6to4 (2002::/16),
    NAT64 (64:ff9b::/96) or Teredo (2001::/32, the client's address); None for a plain IPv6 address."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.teredo is not None:
        return addr.teredo[1]
    return None


def address_refused(addr: Address, allow: Sequence[Network] = ()) -> str | None:
    """The reason an address is refused, or None when it may be contacted. An IPv6 address that embeds an IPv4
    address (mapped, 6to4, NAT64, Teredo) is judged by the IPv4 address: 2002:7f00:1:: is 127.0.0.1."""
    if isinstance(addr, ipaddress.IPv6Address) and (inner := embedded_ipv4(addr)) is not None:
        reason = address_refused(inner, allow)
        return f"{addr} embeds {reason}" if reason else None
    if any(addr in net for net in allow):
        return None
    for attr in ("is_loopback", "is_link_local", "is_multicast", "is_unspecified", "is_reserved",
                 "is_private"):
        if getattr(addr, attr):
            return f"{addr} is {attr[3:].replace('_', '-')}"
    if not addr.is_global:
        return f"{addr} is not a global address"
    return None


def check_url_syntax(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL, or DestinationRefused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise DestinationRefused("url must use http or https")
    if not parts.hostname:
        raise DestinationRefused("url has no host")
    if parts.username or parts.password:
        raise DestinationRefused("url must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise DestinationRefused("url has an invalid port") from None
    return parts.hostname, port


async def check_destination(url: str, allow: Sequence[Network] = ()) -> None:
    """Resolve the URL's host and refuse it if any address is not allowed."""
    host, port = check_url_syntax(url)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DestinationRefused(f"host {host!r} does not resolve: {exc.strerror}") from None
    for info in infos:
        reason = address_refused(ipaddress.ip_address(info[4][0]), allow)
        if reason:
            raise DestinationRefused(f"destination refused: {reason}")


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that refuses disallowed addresses at connect time."""

    def __init__(self, allow: Sequence[Network] = (), inner: AbstractResolver | None = None) -> None:
        self.allow = tuple(allow)
        self.inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for r in results:
            reason = address_refused(ipaddress.ip_address(r["host"]), self.allow)
            if reason:
                raise DestinationRefused(f"destination refused: {reason}")
        return results

    async def close(self) -> None:
        await self.inner.close()
