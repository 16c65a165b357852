"""Browser-test fixtures: the integration helpers' webhook receiver, re-exported for tests here."""

from tests.integration.conftest import receiver

__all__ = ["receiver"]
