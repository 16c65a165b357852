"""PLACEHOLDER (replaced by the pure policy module): today's behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from alerts.delivery import Outcome


@dataclass(frozen=True)
class RetryPolicy:
    tiers_s: tuple[float, ...]
    horizon_s: float
    max_retry_after_s: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Any) -> RetryPolicy:
        return cls(tuple(settings.retry_tiers_s), float(settings.retry_horizon_s),
                   float(getattr(settings, "max_retry_after_s", 3600.0)))


@dataclass(frozen=True)
class Decision:
    action: Literal["done", "retry", "park", "pause"]
    reason: str
    tier: int | None = None
    not_before: float | None = None


def retry_at(policy: RetryPolicy, attempt: int, retry_after_s: float | None, now: float,
             jitter: float) -> tuple[int, float]:
    tiers = policy.tiers_s
    tier = min(max(attempt - 1, 0), len(tiers) - 1)
    if retry_after_s:
        tier = max(tier, next((i for i, d in enumerate(tiers) if d >= retry_after_s), len(tiers) - 1))
    return tier, now + max(tiers[tier] * (0.9 + 0.2 * jitter), retry_after_s or 0.0)


def before_first_attempt(policy: RetryPolicy, *, endpoint_unhealthy: bool, attempt: int, now: float,
                         jitter: float) -> Decision | None:
    if not endpoint_unhealthy:
        return None
    tier, nb = retry_at(policy, max(attempt, 1), None, now, jitter)
    return Decision("retry", "endpoint unhealthy: waiting in the retry tiers", tier, nb)


def after_attempt(policy: RetryPolicy, outcome: Outcome, *, attempt: int, first_attempt_at: float, now: float,
                  expires: str, jitter: float) -> Decision:
    if outcome.result == "delivered":
        return Decision("done", "delivered")
    if outcome.result == "gone":
        return Decision("pause", "HTTP 410 Gone: subscription paused")
    now_text = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    horizon_passed = now - first_attempt_at > policy.horizon_s
    if outcome.result == "retry" and not horizon_passed and (not expires or expires > now_text):
        tier, nb = retry_at(policy, attempt, outcome.retry_after_s, now, jitter)
        return Decision("retry", outcome.error or "retry", tier, nb)
    reason = outcome.error or outcome.result
    if outcome.result == "retry":
        reason = f"retries exhausted ({'warning expired' if not horizon_passed else 'retry horizon'}): {reason}"
    return Decision("park", reason)
