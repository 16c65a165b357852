"""Prometheus metrics (docs/ARCHITECTURE.md "Observability"). Label sets stay small: no per-station labels."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

OBS_IN = Counter("ews_observations_total", "Observations accepted into the pipeline", ["source", "status"])
OBS_REJECTED = Counter("ews_observations_rejected_total", "Observations rejected", ["reason"])
OBS_PROCESSED = Counter("ews_observations_processed_total", "Observations applied to station state")
OBS_STALE = Counter("ews_observations_stale_total", "Observations skipped as not newer than station state")
PROCESSING_LATENCY = Histogram(
    "ews_processing_latency_seconds", "Observation accepted -> warning event emitted",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
PAST_HORIZON = Counter("ews_reports_past_horizon_total", "Actual station signals older than their hazard's staleness "
                       "horizon (rules.toml stale_after_h): the station state took them, no live warning did",
                       ["hazard"])
EXPIRED_NOT_SENT = Counter("ews_expired_events_not_routed_total", "Actual warning events already expired when made: "
                           "kept on the warnings topic, routed to no subscription", ["hazard"])
WARNING_EVENTS = Counter("ews_warning_events_total", "Warning lifecycle events emitted",
                         ["hazard", "level", "msg_type", "status"])
WARNINGS_ACTIVE = Gauge("ews_warnings_active", "Active warnings", ["hazard", "level", "status"])
DELIVERIES = Counter("ews_deliveries_total", "Webhook delivery attempts by outcome", ["outcome", "department"])
DELIVERY_LATENCY = Histogram(
    "ews_delivery_latency_seconds", "Warning event emitted -> 2xx at the receiver",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600))
DEAD_LETTERS = Counter("ews_dead_letters_total", "Deliveries parked in alerts.dead", ["department"])
RETRY_SCHEDULED = Counter("ews_retries_scheduled_total", "Deliveries sent to a retry tier", ["tier"])
RETRY_QUEUE = Gauge("ews_retry_queue_depth", "Deliveries waiting in retry tiers (scheduled - taken, this worker)")
ALREADY_DELIVERED = Counter("ews_deliveries_already_delivered_total", "Delivery records not posted because the "
                            "receiver already took their webhook-id (read again after a restart)")
ATTEMPTS = Counter("ews_delivery_attempts_total", "Webhook POST attempts", ["result"])
UNHEALTHY = Gauge("ews_unhealthy_endpoints", "Subscriptions whose endpoint is marked unhealthy")
SUBSCRIPTIONS = Gauge("ews_subscriptions", "Subscriptions known to this worker")
QC_FLAGGED = Counter("ews_qc_flagged_values_total", "Observation values flagged by quality control (kept, not graded)")
SIGNALS = Counter("ews_signals_total", "Signals (station levels, ticks, operator actions) sent to and graded from "
                  "the signals topic", ["stage"])
RECORDS_REJECTED = Counter("ews_control_records_rejected_total", "Control records (subscriptions, signals) refused "
                           "for a missing or invalid MAC or secret seal", ["topic", "reason"])
DRAFTS_MADE = Counter("ews_drafts_total", "Warning events held as drafts for review (rules.toml issue = review)",
                      ["hazard", "level"])
DRAFT_DECISIONS = Counter("ews_draft_decisions_total", "Drafts closed: approved, rejected, issued_unreviewed "
                          "(the policy's timeout), superseded or withdrawn (by the lifecycle)", ["action"])
DRAFTS_PENDING = Gauge("ews_drafts_pending", "Drafts waiting for a decision; escalated = waiting longer than "
                       "[review] escalate_after_min (full view on every worker: take the max)", ["escalated"])
DELIVERIES_SILENCED = Counter("ews_deliveries_silenced_total", "Deliveries held by a silence (sent when it ends)",
                              ["department"])
SILENCES_ACTIVE = Gauge("ews_silences_active", "Silences in force now (full view on every worker)")
ACKS = Counter("ews_acknowledgements_total", "Warnings acknowledged by a receiving subscription (first POST of its "
               "ack_url; repeats are not counted)", ["level"])
UNACKNOWLEDGED = Gauge("ews_warnings_unacknowledged", "Live warnings at a level that needs acknowledgement "
                       "(rules.toml [acknowledgement]) that a receiver has not acknowledged (this worker's regions: "
                       "sum over workers)", ["level"])
ESCALATIONS = Counter("ews_ack_escalations_total", "Receivers reminded, and fallback subscriptions sent the warning, "
                      "because a receiver had not acknowledged in time", ["level", "kind"])
CONSUMER_LAG = Gauge("ews_consumer_lag_records", "Records not yet processed on this worker's partitions", ["topic"])


def measure_lag(consumer: Any) -> None:
    """Consumer lag per source topic: the fetch high watermark (right on tansu, unlike ListOffsets) minus the
    next offset to process, summed over this worker's partitions."""
    lag: dict[str, int] = {}
    for tp in consumer.assignment():
        if tp.topic.endswith("-changelog") or "__assignor" in tp.topic:  # read only during recovery
            continue
        try:
            hw = consumer.highwater(tp)
        except Exception:  # not fetched yet
            continue
        if hw is None:
            continue
        read = getattr(consumer, "_read_offset", {}).get(tp)  # faust keeps the last processed offset here
        lag[tp.topic] = lag.get(tp.topic, 0) + max(0, int(hw) - (int(read) + 1 if read is not None else 0))
    for topic, value in lag.items():
        CONSUMER_LAG.labels(topic).set(value)
