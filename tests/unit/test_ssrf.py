import ipaddress

import pytest

from alerts.ssrf import DestinationRefused, address_refused, check_destination, check_url_syntax

LOCAL = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.mark.parametrize("addr", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                  "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1",
                                  "100.64.0.1"])
def test_private_and_special_addresses_are_refused(addr: str) -> None:
    assert address_refused(ipaddress.ip_address(addr)) is not None


@pytest.mark.parametrize("addr", ["8.8.8.8", "202.100.64.68", "2001:4860:4860::8888"])
def test_public_addresses_pass(addr: str) -> None:
    assert address_refused(ipaddress.ip_address(addr)) is None


def test_allow_list_opens_a_network_only() -> None:
    assert address_refused(ipaddress.ip_address("127.0.0.1"), LOCAL) is None
    assert address_refused(ipaddress.ip_address("10.0.0.1"), LOCAL) is not None


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "http:///nohost",
                                 "http://user:pw@example.com/", "gopher://x"])
def test_bad_url_syntax(url: str) -> None:
    with pytest.raises(DestinationRefused):
        check_url_syntax(url)


async def test_check_destination_resolves_names() -> None:
    with pytest.raises(DestinationRefused, match="loopback"):
        await check_destination("http://localhost:9/hook")
    await check_destination("http://localhost:9/hook", LOCAL)
    with pytest.raises(DestinationRefused):
        await check_destination("http://[::1]:9/")


class FlipResolver:
    """A DNS name that answers a public address first and a private one afterwards (rebinding)."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.calls = 0

    async def resolve(self, host: str, port: int = 0, family: object = None) -> list[dict[str, object]]:
        addr = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return [{"hostname": host, "host": addr, "port": port, "family": 2, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


async def test_rebinding_name_is_refused_at_connect_time() -> None:
    import aiohttp

    from alerts.delivery import deliver_webhook
    from alerts.ssrf import GuardedResolver

    flip = FlipResolver(["93.184.216.34", "127.0.0.1"])
    first = await flip.resolve("rebind.example")  # what a creation-time check would have seen: public
    assert address_refused(ipaddress.ip_address(first[0]["host"])) is None
    connector = aiohttp.TCPConnector(resolver=GuardedResolver((), inner=flip), use_dns_cache=False)  # type: ignore[arg-type]
    async with aiohttp.ClientSession(connector=connector) as session:
        outcome = await deliver_webhook(session, "http://rebind.example:8080/hook", ["whsec_" + "A" * 32],
                                        "msg_1", b"{}")
    assert outcome.result == "dead" and outcome.error is not None and "loopback" in outcome.error
    assert flip.calls == 2


async def test_ip_literal_and_mapped_ipv6_are_refused_without_dns() -> None:
    import aiohttp

    from alerts.delivery import deliver_webhook

    async with aiohttp.ClientSession() as session:
        for url in ("http://10.0.0.5/h", "http://[::ffff:192.168.0.1]/h", "http://100.64.1.1/h"):
            outcome = await deliver_webhook(session, url, ["whsec_" + "A" * 32], "msg_1", b"{}")
            assert outcome.result == "dead" and "destination refused" in (outcome.error or ""), url
