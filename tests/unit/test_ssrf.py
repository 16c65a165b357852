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
