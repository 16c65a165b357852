from datetime import UTC, datetime

import pytest

from ingest.validate import ObservationError, validate_observation

NOW = datetime(2026, 7, 14, 8, 0, tzinfo=UTC)


def ok(**kw: object) -> dict[str, object]:
    return {"station_id": "52418", "time": "2026-07-14T14:00:00+08:00", "tmax_c": 40.6, **kw}


def test_valid_observation_is_normalised_to_utc() -> None:
    obs = validate_observation(ok(), known_station=lambda s: s == "52418", now=NOW)
    assert obs.time == "2026-07-14T06:00:00Z" and obs.tmax_c == 40.6 and obs.source == "push"


@pytest.mark.parametrize(("raw", "field"), [
    ([1, 2], "observation"),
    ({"time": "2026-07-14T06:00:00Z", "tmax_c": 1}, "station_id"),
    (ok(station_id="99999"), "station_id"),
    (ok(time="yesterday"), "time"),
    (ok(time="2026-07-14T06:00:00"), "time"),
    (ok(time="2026-07-15T06:00:00Z"), "time"),
    (ok(tmax_c="hot"), "tmax_c"),
    (ok(tmax_c=True), "tmax_c"),
    (ok(tmax_c=75), "tmax_c"),
    (ok(rh_pct=101), "rh_pct"),
    (ok(precip_mm=3.0), "precip_period_h"),
    (ok(colour="red"), "colour"),
    ({"station_id": "52418", "time": "2026-07-14T06:00:00Z"}, "observation"),
])
def test_rejections_name_the_field(raw: object, field: str) -> None:
    with pytest.raises(ObservationError) as info:
        validate_observation(raw, known_station=lambda s: s == "52418", now=NOW)
    assert str(info.value).startswith(field + ":")


def test_nan_is_rejected() -> None:
    with pytest.raises(ObservationError, match="tmax_c"):
        validate_observation(ok(tmax_c=float("nan")), now=NOW)


def test_times_at_the_edge_of_the_calendar_are_rejected_not_crashing() -> None:
    for t in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+08:00", "1700-01-01T00:00:00Z"):
        with pytest.raises(ObservationError, match=r"^time: year"):
            validate_observation(ok(time=t), now=NOW)


def test_huge_station_id_is_rejected() -> None:
    with pytest.raises(ObservationError, match="station_id: longer"):
        validate_observation(ok(station_id="5" * 10**6), now=NOW)


def test_safe_dump_never_raises() -> None:
    from ingest.intake import safe_dump

    deep: object = []
    for _ in range(1000):
        deep = [deep]
    assert safe_dump(deep).startswith(b"[[[")
    assert safe_dump({"x": float("nan"), "y": object()})  # odd values still give bytes
