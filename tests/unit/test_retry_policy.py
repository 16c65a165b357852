"""alerts.retry: the retry / park / pause decision after each webhook attempt, and the health gate before one.
HTTP statuses go through the real alerts.delivery.classify, so these cover status -> outcome -> decision."""

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.delivery import Outcome, classify
from alerts.retry import (
    GONE_REASON,
    UNHEALTHY_REASON,
    Decision,
    RetryPolicy,
    after_attempt,
    before_attempt,
    busy_retry_at,
    expiry_epoch,
    retry_at,
    tier_for,
)
from warning.shared.config import Settings

TIERS = (10.0, 60.0, 300.0, 1800.0, 7200.0, 21600.0)
HORIZON = 24 * 3600.0
POLICY = RetryPolicy(TIERS, HORIZON)
NOW = datetime(2026, 7, 14, 12, tzinfo=UTC).timestamp()
LATER = "2026-07-20T00:00:00Z"  # expiry well after every retry below


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def http(status: int, retry_after_s: float | None = None) -> Outcome:
    """The Outcome deliver_webhook returns for an HTTP response."""
    result = classify(status)
    return Outcome(result, status, 0.05, None if result == "delivered" else f"HTTP {status}", retry_after_s)


def decide(outcome: Outcome, *, attempt: int = 1, first_attempt_at: float = NOW, now: float = NOW,
           expires: str = LATER, jitter: float = 0.5, policy: RetryPolicy = POLICY) -> Decision:
    return after_attempt(policy, outcome, attempt=attempt, first_attempt_at=first_attempt_at, now=now,
                         expires=expires, jitter=jitter)


# ---- one outcome each ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_done(status: int) -> None:
    assert decide(http(status)) == Decision("done", "delivered")


@pytest.mark.parametrize("status", [408, 425, 429])
def test_retryable_4xx_retries_in_the_first_tier(status: int) -> None:
    assert decide(http(status), jitter=0.5) == Decision("retry", f"HTTP {status}", 0, NOW + 10.0)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
def test_5xx_retries(status: int) -> None:
    assert decide(http(status), jitter=0.5) == Decision("retry", f"HTTP {status}", 0, NOW + 10.0)


def test_timeout_retries() -> None:
    assert decide(Outcome("retry", None, 10.0, "timeout"), jitter=0.0) == Decision("retry", "timeout", 0,
                                                                                  NOW + 9.0)


def test_connection_error_retries() -> None:
    error = "ClientConnectorError: Cannot connect to host hooks.example.org:443"
    assert decide(Outcome("retry", None, 0.01, error), jitter=0.0) == Decision("retry", error, 0, NOW + 9.0)


def test_410_pauses_the_subscription_and_parks() -> None:
    assert decide(http(410)) == Decision("pause", GONE_REASON)
    assert GONE_REASON == "HTTP 410 Gone: subscription paused"  # today's wording, in the dead letters


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 413, 422, 451])
def test_other_4xx_parks_at_once(status: int) -> None:
    assert decide(http(status)) == Decision("park", f"HTTP {status}")


@pytest.mark.parametrize("status", [300, 301, 302, 303, 307, 308])
def test_3xx_parks_at_once(status: int) -> None:  # redirects are not followed
    assert decide(http(status)) == Decision("park", f"HTTP {status}")


def test_refused_destination_parks_with_its_error() -> None:
    refused = Outcome("dead", None, 0.0, "destination refused: 10.0.0.1 is private")
    assert decide(refused) == Decision("park", "destination refused: 10.0.0.1 is private")


# ---- the tiers and their jitter ----------------------------------------------------------------------------------
def test_each_attempt_goes_one_tier_up_to_the_last() -> None:
    tiers = [tier_for(POLICY, attempt) for attempt in range(0, 10)]
    assert tiers == [0, 0, 1, 2, 3, 4, 5, 5, 5, 5]
    d = decide(http(503), attempt=3, jitter=0.0)
    assert (d.action, d.tier, d.not_before) == ("retry", 2, NOW + 270.0)


def test_jitter_spreads_the_delay_over_plus_minus_ten_percent() -> None:
    assert retry_at(POLICY, 2, None, NOW, 0.0) == (1, NOW + 54.0)
    assert retry_at(POLICY, 2, None, NOW, 0.5) == (1, NOW + 60.0)
    assert retry_at(POLICY, 2, None, NOW, 0.999)[1] == pytest.approx(NOW + 65.988)
    for jitter in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="jitter"):
            retry_at(POLICY, 2, None, NOW, jitter)


# ---- Retry-After ------------------------------------------------------------------------------------------------
def test_retry_after_picks_a_long_enough_tier_and_is_never_undercut() -> None:
    d = decide(http(429, retry_after_s=120), jitter=0.5)
    assert (d.action, d.tier, d.not_before) == ("retry", 2, NOW + 300.0)  # 120 s -> the 300 s tier
    # the tier's jittered delay (0.9 x 300 = 270 s) is shorter than Retry-After: Retry-After wins
    d = decide(http(503, retry_after_s=290), jitter=0.0)
    assert (d.tier, d.not_before) == (2, NOW + 290.0)
    d = decide(http(503, retry_after_s=60), attempt=5, jitter=0.5)  # a later attempt's tier is kept
    assert (d.tier, d.not_before) == (4, NOW + 7200.0)
    for nothing in (None, 0.0):
        assert decide(http(429, retry_after_s=nothing), jitter=0.5).not_before == NOW + 10.0


def test_retry_after_is_capped_at_max_retry_after() -> None:
    d = decide(http(503, retry_after_s=10 * 86400), jitter=0.5)  # ten days: obeyed only up to 1 h
    assert (d.action, d.tier, d.not_before) == ("retry", 4, NOW + 7200.0)  # the first tier >= 3600 s
    short_tiers = RetryPolicy((10.0, 60.0), HORIZON)
    assert retry_at(short_tiers, 1, 10 * 86400, NOW, 0.5) == (1, NOW + 3600.0)  # the cap itself, not ten days
    capped = RetryPolicy(TIERS, HORIZON, max_retry_after_s=100.0)
    assert retry_at(capped, 1, 1000.0, NOW, 0.5) == (2, NOW + 300.0)
    assert retry_at(capped, 1, float("inf"), NOW, 0.0) == (2, NOW + 270.0)


# ---- the retry horizon and the warning's expiry --------------------------------------------------------------------
def test_retry_horizon_passed_parks() -> None:
    d = decide(http(503), attempt=12, first_attempt_at=NOW - HORIZON - 1)
    assert d == Decision("park", "retries exhausted (retry horizon): HTTP 503")
    timeout = decide(Outcome("retry", None, 10.0, "timeout"), first_attempt_at=NOW - HORIZON - 1)
    assert timeout.reason == "retries exhausted (retry horizon): timeout"


def test_retry_that_would_land_after_the_horizon_parks() -> None:
    # 20 h in, the last tier (6 h) would be due 2 h after the 24 h horizon: park now rather than retry then
    d = decide(http(503), attempt=8, first_attempt_at=NOW - 20 * 3600, jitter=0.5)
    assert d == Decision("park", "retries exhausted (retry horizon): HTTP 503")
    # ... so would a capped Retry-After, from an earlier tier
    d = decide(http(503, retry_after_s=3600), first_attempt_at=NOW - HORIZON + 1800, jitter=0.5)
    assert d.reason == "retries exhausted (retry horizon): HTTP 503"
    # a retry due right at the horizon is still made
    d = decide(http(503), attempt=1, first_attempt_at=NOW - HORIZON + 10, jitter=0.5)
    assert (d.action, d.not_before) == ("retry", NOW + 10.0)


def test_warning_already_expired_parks() -> None:
    for expires in (iso(NOW - 3600), iso(NOW)):  # expired at, or before, now
        d = decide(http(503), expires=expires)
        assert d == Decision("park", "retries exhausted (warning expired): HTTP 503")


def test_retry_that_would_land_after_expiry_parks() -> None:
    d = decide(http(503), expires=iso(NOW + 5), jitter=0.0)  # the first tier is due 9..11 s from now
    assert d == Decision("park", "retries exhausted (warning expired): HTTP 503")
    d = decide(http(503), expires=iso(NOW + 10), jitter=0.5)  # due at the expiry itself
    assert d.reason == "retries exhausted (warning expired): HTTP 503"
    d = decide(http(429, retry_after_s=1800), expires=iso(NOW + 900))  # Retry-After past the expiry
    assert d.reason == "retries exhausted (warning expired): HTTP 429"
    d = decide(http(503), expires=iso(NOW + 11), jitter=0.5)  # due 1 s before the expiry: retried
    assert (d.action, d.not_before) == ("retry", NOW + 10.0)


def test_horizon_is_named_when_both_limits_are_hit() -> None:
    d = decide(http(503), first_attempt_at=NOW - HORIZON - 1, expires=iso(NOW - 1))
    assert d.reason == "retries exhausted (retry horizon): HTTP 503"


@pytest.mark.parametrize("expires", ["", "soon", "2026-13-45"])
def test_no_or_unreadable_expiry_sets_no_limit(expires: str) -> None:
    assert expiry_epoch(expires) is None
    assert decide(http(503), expires=expires).action == "retry"


def test_expiry_formats() -> None:
    assert expiry_epoch("2026-07-14T12:00:00Z") == NOW
    assert expiry_epoch("2026-07-14T20:00:00+08:00") == NOW
    assert expiry_epoch("2026-07-14T12:00:00") == NOW  # no offset: UTC
    assert expiry_epoch("2026-07-14T12:00:00.5Z") == NOW + 0.5


# ---- the health gate --------------------------------------------------------------------------------------------
def test_unhealthy_endpoint_first_attempt_waits_in_a_retry_tier() -> None:
    d = before_attempt(POLICY, first=True, endpoint_unhealthy=True, attempt=0, now=NOW, jitter=0.5)
    assert d == Decision("retry", UNHEALTHY_REASON, 0, NOW + 10.0)
    assert UNHEALTHY_REASON == "endpoint unhealthy: waiting in the retry tiers"


def test_healthy_endpoint_first_attempt_goes_ahead() -> None:
    assert before_attempt(POLICY, first=True, endpoint_unhealthy=False, attempt=0, now=NOW, jitter=0.5) is None


@pytest.mark.parametrize("attempt", [0, 1, 4])
def test_retry_attempt_to_an_unhealthy_endpoint_is_not_gated(attempt: int) -> None:
    # attempt 0 too: a gated (or busy-endpoint) delivery reaches its retry tier unattempted, and probes the endpoint
    assert before_attempt(POLICY, first=False, endpoint_unhealthy=True, attempt=attempt, now=NOW,
                          jitter=0.5) is None


# ---- the policy itself ------------------------------------------------------------------------------------------
def test_from_settings() -> None:
    policy = RetryPolicy.from_settings(Settings())
    assert policy == RetryPolicy(TIERS, HORIZON, 3600.0)
    policy = RetryPolicy.from_settings(Settings(retry_tiers_s=(5.0, 50.0), retry_horizon_s=600.0))
    assert (policy.tiers_s, policy.horizon_s, policy.max_retry_after_s) == ((5.0, 50.0), 600.0, 3600.0)

    @dataclass(frozen=True)
    class WithCap:
        retry_tiers_s: tuple[float, ...] = (10.0,)
        retry_horizon_s: float = 60.0
        max_retry_after_s: float = 120.0

    assert RetryPolicy.from_settings(WithCap()).max_retry_after_s == 120.0


@pytest.mark.parametrize("kw", [{"tiers_s": ()}, {"tiers_s": (10.0, -1.0)}, {"tiers_s": (float("inf"),)},
                                {"horizon_s": float("nan")}, {"horizon_s": -1.0}, {"max_retry_after_s": -5.0}])
def test_policy_rejects_nonsense(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**{"tiers_s": TIERS, "horizon_s": HORIZON, **kw})  # type: ignore[arg-type]


# ---- property ---------------------------------------------------------------------------------------------------
_outcomes = st.one_of(
    st.builds(http, st.integers(200, 599), st.none() | st.floats(0, 1e9, allow_nan=False)),
    st.builds(Outcome, st.just("retry"), st.none(), st.just(10.0), st.sampled_from(["timeout", "OSError: reset"])),
)
_tiers = st.lists(st.floats(0, 86400, allow_nan=False), min_size=1, max_size=8).map(tuple)


@given(tiers=_tiers, horizon=st.floats(0, 7 * 86400), cap=st.floats(0, 86400), outcome=_outcomes,
       attempt=st.integers(0, 50), age=st.floats(0, 8 * 86400), expires_in=st.none() | st.integers(-86400, 8 * 86400),
       jitter=st.floats(0, 1, exclude_max=True))
def test_property_retries_are_due_between_now_and_both_limits(tiers: tuple[float, ...], horizon: float, cap: float,
                                                              outcome: Outcome, attempt: int, age: float,
                                                              expires_in: int | None, jitter: float) -> None:
    policy = RetryPolicy(tiers, horizon, cap)
    first_attempt_at = NOW - age
    expires = "" if expires_in is None else iso(NOW + expires_in)
    d = decide(outcome, attempt=attempt, first_attempt_at=first_attempt_at, expires=expires, jitter=jitter,
               policy=policy)
    expected = {"delivered": "done", "gone": "pause", "dead": "park"}.get(outcome.result)
    if expected:
        assert d.action == expected
    if d.action != "retry":
        assert d.tier is None and d.not_before is None
        return
    assert outcome.result == "retry" and d.reason == outcome.error
    assert d.tier is not None and d.not_before is not None
    assert 0 <= d.tier < len(tiers)
    assert d.not_before >= NOW
    assert d.not_before - first_attempt_at <= horizon
    assert expires_in is None or d.not_before < NOW + expires_in
    assert d.not_before >= NOW + min(outcome.retry_after_s or 0.0, cap)  # (capped) Retry-After obeyed


@given(tiers=_tiers, attempt=st.integers(-3, 50), retry_after=st.none() | st.floats(-10, 1e12),
       jitter=st.floats(0, 1, exclude_max=True))
def test_property_retry_at(tiers: tuple[float, ...], attempt: int, retry_after: float | None, jitter: float) -> None:
    policy = RetryPolicy(tiers, HORIZON)
    tier, not_before = retry_at(policy, attempt, retry_after, NOW, jitter)
    assert 0 <= tier < len(tiers)
    assert tier >= min(max(attempt - 1, 0), len(tiers) - 1)
    assert NOW + 0.9 * tiers[tier] <= not_before <= NOW + max(1.1 * tiers[tier], policy.max_retry_after_s)


def test_a_busy_endpoint_is_tried_again_within_the_busy_delay_not_after_the_first_tier() -> None:
    policy = RetryPolicy(tiers_s=(10.0, 60.0), horizon_s=3600.0, busy_delay_s=0.25)
    assert busy_retry_at(policy, 1000.0, 0.0) == (0, 1000.125)
    assert busy_retry_at(policy, 1000.0, 0.5) == (0, 1000.25)
    with pytest.raises(ValueError):
        RetryPolicy(tiers_s=(10.0,), horizon_s=60.0, busy_delay_s=float("nan"))
