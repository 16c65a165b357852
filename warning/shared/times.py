"""UTC times as the wire carries them: ISO-8601 with a ``Z``, whole seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

WIRE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def iso_utc(t: datetime | float) -> str:
    """``t`` as the wire writes it: a datetime (naive ones are taken as UTC) or seconds since the epoch."""
    if isinstance(t, datetime):
        return (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)).strftime(WIRE_FORMAT)
    return time.strftime(WIRE_FORMAT, time.gmtime(t))


def now_iso() -> str:
    return iso_utc(time.time())


def parse_utc(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)
