"""Fixtures for every test under tests/, built on tests/support.py: the embedded broker, `ews run`, a webhook
receiver and the reference-data folders (tests/data)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support import HEAT_INDEX, NETCDF, SPI_CASES, WebhookReceiver, running_broker, running_ews
from warning.broker import EmbeddedBroker
from warning.launch import EwsProcess


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    """A fresh broker per test (ready in ~20 ms): topics are shared by every app on a broker, so tests that
    start workers against an external broker must not see each other's records."""
    with running_broker() as b:
        yield b


@pytest.fixture
def ews_env() -> dict[str, str]:
    """Environment added for the ``ews`` fixture's service; a module overrides this fixture to change it."""
    return {}


@pytest.fixture
async def ews(tmp_path: Path, ews_env: dict[str, str]) -> AsyncIterator[EwsProcess]:
    """`ews run` (embedded broker) in tmp_path, ready; it must stop cleanly after the test."""
    async with running_ews(tmp_path, ews_env) as proc:
        yield proc


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A webhook receiver answering 204 to every POST; ``receiver.received`` holds them all."""
    async with WebhookReceiver() as rec:
        yield rec


@pytest.fixture(scope="session")
def spi_cases_dir() -> Path:
    return SPI_CASES


@pytest.fixture(scope="session")
def heat_index_dir() -> Path:
    return HEAT_INDEX


@pytest.fixture(scope="session")
def netcdf_dir() -> Path:
    return NETCDF
