"""Webhook retry policy (ALERTING.md): after each attempt, deliver-done, retry in a tier, park in alerts.dead, or
pause the subscription (410) and park.

Pure functions: no I/O, no clock reads, no randomness. The caller passes ``now`` (epoch seconds) and a ``jitter``
drawn from [0, 1), and carries out the returned :class:`Decision` (produce to ``alerts.retry.<tier>`` with
``not_before``, park, pause). Outcome classification (HTTP status -> delivered / retry / dead / gone) stays in
:func:`alerts.delivery.classify`.

The rules:

* tiers: attempt 1 -> tier 0, attempt 2 -> tier 1, ... capped at the last tier; a tier's delay is jittered by
  x(0.9 + 0.2 * jitter);
* Retry-After is obeyed up to ``max_retry_after_s``: it picks the first tier at least that long, and the retry is
  never due before it;
* a retry is never due after the retry horizon (``horizon_s`` since the first attempt) nor at or after the warning's
  expiry: such a delivery parks instead ("retries exhausted (retry horizon | warning expired): <error>"); when both
  limits are hit, the horizon is named;
* the health gate: a first attempt to an unhealthy endpoint waits in the retry tiers instead, and its retry attempt
  (which is not gated) probes the endpoint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from alerts.delivery import Outcome

DEFAULT_MAX_RETRY_AFTER_S = 3600.0
UNHEALTHY_REASON = "endpoint unhealthy: waiting in the retry tiers"
GONE_REASON = "HTTP 410 Gone: subscription paused"

Action = Literal["done", "retry", "park", "pause"]  # pause: 410, pause the subscription AND park the delivery


class RetrySettings(Protocol):
    """What :meth:`RetryPolicy.from_settings` reads (``warning.shared.config.Settings`` has it); an optional
    ``max_retry_after_s`` attribute is read with getattr."""

    @property
    def retry_tiers_s(self) -> Sequence[float]: ...

    @property
    def retry_horizon_s(self) -> float: ...


@dataclass(frozen=True)
class RetryPolicy:
    tiers_s: tuple[float, ...]  # the retry tiers' delays, e.g. (10, 60, 300, 1800, 7200, 21600)
    horizon_s: float  # no retry is due later than this long after the first attempt
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S  # Retry-After is obeyed only up to this
    # a delivery to an endpoint with all its POSTs in flight is tried again this soon (jittered), not after a
    # failure tier's delay: it did not fail (UNCONFIRMED engineering choice; a burst to one department otherwise
    # waited the first tier's 10 s)
    busy_delay_s: float = 0.25

    def __post_init__(self) -> None:
        tiers = tuple(float(d) for d in self.tiers_s)
        if not tiers:
            raise ValueError("retry tiers: at least one delay")
        if not all(math.isfinite(d) and d >= 0 for d in tiers):
            raise ValueError(f"retry tiers: finite delays >= 0, got {tiers}")
        for name in ("horizon_s", "max_retry_after_s", "busy_delay_s"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: a finite number >= 0, got {value}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "tiers_s", tiers)

    @classmethod
    def from_settings(cls, settings: RetrySettings) -> RetryPolicy:
        max_retry_after = getattr(settings, "max_retry_after_s", None)
        return cls(tiers_s=tuple(settings.retry_tiers_s), horizon_s=settings.retry_horizon_s,
                   max_retry_after_s=DEFAULT_MAX_RETRY_AFTER_S if max_retry_after is None else max_retry_after)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str  # for the dead letter / last_error / log
    tier: int | None = None  # retry only: the alerts.retry.<tier> topic
    not_before: float | None = None  # retry only: epoch seconds


def _check_jitter(jitter: float) -> None:
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")


def capped_retry_after(policy: RetryPolicy, retry_after_s: float | None) -> float:
    """The Retry-After to obey, in seconds: 0 for none (or a negative / NaN one), at most ``max_retry_after_s``."""
    if retry_after_s is None or math.isnan(retry_after_s) or retry_after_s <= 0:
        return 0.0
    return min(retry_after_s, policy.max_retry_after_s)


def tier_for(policy: RetryPolicy, attempt: int, retry_after_s: float | None = None) -> int:
    """Exponential backoff through the tiers (attempt 1 -> tier 0, ...); a (capped) Retry-After picks a tier at
    least that long, else the last one."""
    tiers = policy.tiers_s
    tier = min(max(attempt - 1, 0), len(tiers) - 1)
    wait = capped_retry_after(policy, retry_after_s)
    if wait:
        tier = max(tier, next((i for i, d in enumerate(tiers) if d >= wait), len(tiers) - 1))
    return tier


def retry_at(policy: RetryPolicy, attempt: int, retry_after_s: float | None, now: float,
             jitter: float) -> tuple[int, float]:
    """(tier, not_before) of a retry after ``attempt`` attempts: the tier's delay jittered by x(0.9 + 0.2 * jitter),
    and never before the (capped) Retry-After. No horizon or expiry check: :func:`after_attempt` does that."""
    _check_jitter(jitter)
    tier = tier_for(policy, attempt, retry_after_s)
    delay = policy.tiers_s[tier] * (0.9 + 0.2 * jitter)
    return tier, now + max(delay, capped_retry_after(policy, retry_after_s))


def busy_retry_at(policy: RetryPolicy, now: float, jitter: float) -> tuple[int, float]:
    """(tier, not_before) for a delivery whose endpoint is busy: the first tier, ``busy_delay_s`` x (0.5 + jitter)."""
    _check_jitter(jitter)
    return 0, now + policy.busy_delay_s * (0.5 + jitter)


def expiry_epoch(expires: str) -> float | None:
    """A warning's ISO-8601 expiry ('2026-07-15T00:00:00Z'; no offset means UTC) in epoch seconds; None when it
    is empty or unreadable (no expiry limit then)."""
    if not expires:
        return None
    try:
        t = datetime.fromisoformat(expires.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _exhausted(limit: str, error: str) -> Decision:
    return Decision("park", f"retries exhausted ({limit}): {error}")


def after_attempt(policy: RetryPolicy, outcome: Outcome, *, attempt: int, first_attempt_at: float, now: float,
                  expires: str, jitter: float) -> Decision:
    """What to do with a delivery after its ``attempt``-th attempt (counting this one) ended in ``outcome``.

    ``first_attempt_at``: epoch seconds of the delivery's first attempt; ``expires``: the warning event's
    ISO-8601 UTC expiry (may be "")."""
    _check_jitter(jitter)
    if outcome.result == "delivered":
        return Decision("done", "delivered")
    if outcome.result == "gone":
        return Decision("pause", GONE_REASON)
    error = outcome.error or outcome.result
    if outcome.result != "retry":
        return Decision("park", error)  # dead: other 4xx, 3xx, refused destination
    expiry = expiry_epoch(expires)
    if now - first_attempt_at > policy.horizon_s:
        return _exhausted("retry horizon", error)
    if expiry is not None and now >= expiry:
        return _exhausted("warning expired", error)
    tier, not_before = retry_at(policy, attempt, outcome.retry_after_s, now, jitter)
    if not_before - first_attempt_at > policy.horizon_s:
        return _exhausted("retry horizon", error)
    if expiry is not None and not_before >= expiry:
        return _exhausted("warning expired", error)
    return Decision("retry", error, tier, not_before)


def before_attempt(policy: RetryPolicy, *, first: bool, endpoint_unhealthy: bool, attempt: int, now: float,
                   jitter: float) -> Decision | None:
    """The health gate, before posting: a first attempt (from alerts.outbox) to an unhealthy endpoint goes to a
    retry tier rather than being posted; None: go ahead. Retry attempts are never gated, whatever their attempt
    count (a gated or busy-endpoint delivery reaches its retry tier with attempt 0): they probe the endpoint."""
    if not (first and endpoint_unhealthy):
        return None
    tier, not_before = retry_at(policy, attempt, None, now, jitter)
    return Decision("retry", UNHEALTHY_REASON, tier, not_before)
