"""Fixtures for the indices unit tests (reference data live in <repo>/../shared/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()


def _shared_subdir(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"shared reference data not available: {path}")
    return path


@pytest.fixture(scope="session")
def spi_cases_dir() -> Path:
    return _shared_subdir("spi_cases")


@pytest.fixture(scope="session")
def heat_index_dir() -> Path:
    return _shared_subdir("heat_index")


@pytest.fixture(scope="session")
def netcdf_dir() -> Path:
    return _shared_subdir("netcdf")
