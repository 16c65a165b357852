"""The wire's time text: ISO-8601 UTC with a Z, whole seconds, from any datetime or epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from warning.shared.times import iso_utc, now_iso, parse_utc

BJT = timezone(timedelta(hours=8))


def test_iso_utc_of_aware_naive_and_epoch_times() -> None:
    assert iso_utc(datetime(2026, 7, 1, 20, 0, tzinfo=BJT)) == "2026-07-01T12:00:00Z"  # converted, not relabelled
    assert iso_utc(datetime(2026, 7, 1, 12, 0, 59, 999_999, tzinfo=UTC)) == "2026-07-01T12:00:59Z"  # truncated
    assert iso_utc(datetime(2026, 7, 1, 12, 0)) == "2026-07-01T12:00:00Z"  # naive: taken as UTC
    assert iso_utc(1782907200) == "2026-07-01T12:00:00Z"
    assert iso_utc(1782907200.9) == "2026-07-01T12:00:00Z"


def test_iso_utc_round_trips_through_parse_utc() -> None:
    text = now_iso()
    assert iso_utc(parse_utc(text)) == text
    assert iso_utc(parse_utc(text).timestamp()) == text
