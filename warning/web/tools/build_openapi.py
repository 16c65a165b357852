"""Builds ``warning/web/openapi.json``, the OpenAPI 3.1 description of the HTTP API that the service ships and
serves (``GET /api/v1/openapi.json``, read as ``/api/docs``). Run after changing a route, a parameter or a record:

    python -m warning.web.tools.build_openapi

``tests/unit/test_openapi.py`` fails when the file differs from what this writes, or when an aiohttp route of
``make_web_app`` is not in it. The record schemas follow ``warning/shared/records.py``, ``ingest/validate.py`` and
``alerts/subscriptions.py``; the limits those modules check are named in the descriptions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from alerts.subscriptions import BASES, DEPARTMENTS, EDITABLE, FORMATS
from alerts.subscriptions import MSG_TYPES as SUBSCRIPTION_MSG_TYPES
from ingest.validate import GROSS_LIMITS, MAX_LEAD_H
from warning.shared.records import OBSERVATION_ELEMENTS, STATUSES
from warning.web.feeds import CERTAINTIES, MSG_TYPES, PAGE_MAX, REGION_LEVELS, SEVERITIES, URGENCIES

OUT = Path(__file__).resolve().parent.parent / "openapi.json"
VERSION = "0.1.0"
LEVELS = ["blue", "yellow", "orange", "red"]
HAZARDS = ["rainstorm", "heat", "frost", "cold_wave", "gale", "sandstorm", "drought", "flash_flood", "heat_health"]

Json = dict[str, Any]


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: Json) -> Json:
    return {"application/json": {"schema": schema}}


def error(description: str) -> Json:
    return {"description": description, "content": json_content(ref("Error"))}


ISO_TIME = {"type": "string", "format": "date-time", "description": "UTC ISO-8601, e.g. 2026-07-14T06:00:00Z"}
TIME_WITH_OFFSET = {"type": "string", "description": "ISO-8601 time with a UTC offset ('Z' or '+08:00')",
                    "examples": ["2026-07-14T06:00:00Z"]}
REGION_CODE = {"type": "string", "pattern": "^62[0-9]{4}$",
               "description": "GB/T 2260 code of a Gansu county, a prefecture or 620000 (the province)"}
NULLABLE_STR = {"type": ["string", "null"]}

# ---------------------------------------------------------------------------------------------- schemas


def _elements() -> Json:
    props: Json = {}
    for name, unit in OBSERVATION_ELEMENTS.items():
        lo, hi = GROSS_LIMITS[name]
        props[name] = {"type": ["number", "null"], "minimum": lo, "maximum": hi, "description": f"unit {unit}"}
    return props


SCHEMAS: Json = {
    "Error": {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string", "description": "the reason, starting with the field or parameter it names"}}},
    "Observation": {
        "type": "object", "additionalProperties": False, "required": ["station_id", "time"],
        "description": "One station report (SI units). At least one element; precip_mm needs precip_period_h. "
                       "Values beyond gross physical limits, times without an offset or more than 1 h ahead, and "
                       "stations outside the registry are rejected with a reason naming the field.",
        "properties": {
            "station_id": {"type": ["string", "integer"], "description": "5-digit WMO index (GET /api/v1/stations)",
                           "examples": ["52418"]},
            "time": TIME_WITH_OFFSET,
            **_elements(),
            "source": {"type": ["string", "null"], "maxLength": 64},
            "qc": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "flags from the source file: element -> note"},
            "status": {"enum": list(STATUSES), "description": "actual (default), exercise or test; not stored"},
        }},
    "ForecastPoint": {
        "type": "object", "additionalProperties": False,
        "required": ["station_id", "issued_at", "valid_from", "valid_to", "values"],
        "properties": {
            "station_id": {"type": "string"},
            "issued_at": TIME_WITH_OFFSET, "valid_from": TIME_WITH_OFFSET,
            "valid_to": {**TIME_WITH_OFFSET, "description": "after valid_from"},
            "lead_h": {"type": "number", "minimum": 0, "maximum": MAX_LEAD_H,
                       "description": "default valid_from - issued_at in hours"},
            "values": {"type": "object", "minProperties": 1, "description": "element -> value (Observation units)",
                       "properties": {k: {"type": "number", "minimum": GROSS_LIMITS[k][0],
                                          "maximum": GROSS_LIMITS[k][1]} for k in OBSERVATION_ELEMENTS},
                       "additionalProperties": False},
            "source": {"type": "string", "maxLength": 64},
            "status": {"enum": list(STATUSES)},
        }},
    "IngestResult": {"type": "object", "required": ["accepted", "rejected"], "properties": {
        "accepted": {"type": "integer", "minimum": 0},
        "rejected": {"type": "array", "items": {"type": "object", "required": ["index", "reason"], "properties": {
            "index": {"type": "integer"}, "reason": {"type": "string"}}}}}},
    "SubscriptionInput": {
        "type": "object", "additionalProperties": False, "required": ["name", "url", "regions"],
        "description": "A department's webhook subscription. The URL must be http(s), without credentials, and "
                       "resolve to public addresses only (SSRF guard) unless EWS_WEBHOOK_ALLOW_NETS allows it. "
                       "Lists hold at most EWS_SUBSCRIPTION_MAX_LIST (500) entries.",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "department": {"enum": list(DEPARTMENTS), "default": "other"},
            "url": {"type": "string", "format": "uri", "maxLength": 2000},
            "regions": {"type": "array", "minItems": 1, "items": REGION_CODE},
            "hazards": {"type": "array", "items": {"type": "string", "examples": HAZARDS},
                        "description": "empty: every hazard"},
            "min_level": {"enum": LEVELS, "default": "blue"},
            "format": {"enum": list(FORMATS), "default": "json",
                       "description": "json: the WebhookEnvelope; cap: the event's CAP 1.2 XML (docs/WEBHOOKS.md)"},
            "basis": {"type": "array", "items": {"enum": list(BASES)}, "description": "empty: both"},
            "msg_types": {"type": "array", "items": {"enum": list(SUBSCRIPTION_MSG_TYPES)},
                          "description": "empty: all"},
            "statuses": {"type": "array", "minItems": 1, "items": {"enum": list(STATUSES)},
                         "default": ["actual"]},
            "backfill": {"type": "boolean", "default": True,
                         "description": "send the active warnings it matches at once (create and resume only)"},
            "fallback": {"type": "boolean", "default": False,
                         "description": "a fallback (a duty office): no warning by routing, only the warnings of "
                                        "its regions a receiver did not acknowledge in time (rules.toml "
                                        "[acknowledgement]: red and orange), then their updates and cancel"},
        }},
    "Subscription": {
        "type": "object", "required": ["id", "name", "department", "url", "regions", "hazards", "min_level",
                                       "format", "active"],
        "description": "A subscription as the API shows it: never its secrets.",
        "properties": {
            "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"},
            "department": {"enum": list(DEPARTMENTS)}, "url": {"type": "string"},
            "regions": {"type": "array", "items": {"type": "string"}},
            "hazards": {"type": "array", "items": {"type": "string"}},
            "min_level": {"enum": LEVELS}, "format": {"enum": list(FORMATS)},
            "basis": {"type": "array", "items": {"type": "string"}},
            "msg_types": {"type": "array", "items": {"type": "string"}},
            "statuses": {"type": "array", "items": {"enum": list(STATUSES)}}, "fallback": {"type": "boolean"},
            "active": {"type": "boolean"}, "paused_reason": NULLABLE_STR,
            "previous_secret_expires": {"type": ["number", "null"], "description": "epoch s"},
            "created": {"type": "string"}, "updated": {"type": "string"}, "extra": {"type": "object"},
        }},
    "WarningEvent": {
        "type": "object",
        "required": ["id", "warning_id", "seq", "msg_type", "change", "region_code", "hazard", "level", "sent",
                     "onset", "expires", "references"],
        "description": "One step of a warning's alert -> update -> cancel chain for one region and hazard (a "
                       "`warnings` record). CAP 1.2 is rendered from it.",
        "properties": {
            "id": {"type": "string", "description": "uuid5(warning_id:seq)"},
            "warning_id": {"type": "string"}, "seq": {"type": "integer", "minimum": 0},
            "msg_type": {"enum": list(MSG_TYPES)},
            "change": {"enum": ["issue", "upgrade", "downgrade", "extend", "cancel", "expire", "operator_cancel"]},
            "region_code": {"type": "string"}, "region_level": {"enum": list(REGION_LEVELS)},
            "region_name": {"type": "string"}, "region_name_zh": {"type": "string"},
            "prefecture_code": NULLABLE_STR,
            "hazard": {"type": "string", "examples": HAZARDS}, "level": {"enum": LEVELS},
            "level_zh": {"type": "string"}, "basis": {"enum": list(BASES)},
            "sent": {**ISO_TIME, "description": "when it was made (exercise and test: the data time)"},
            "onset": ISO_TIME, "expires": ISO_TIME,
            "stations": {"type": "array", "items": {"type": "object"},
                         "description": "the live stations behind it (id, name, level, quantity, value, time)"},
            "references": {"type": "array", "items": {"type": "string"},
                           "description": "every earlier event id of the chain"},
            "headline_zh": {"type": "string"}, "headline_en": {"type": "string"},
            "description_zh": {"type": "string"}, "description_en": {"type": "string"},
            "instruction_zh": {"type": "string"}, "instruction_en": {"type": "string"},
            "cma_code": {"type": "string"}, "category": {"type": "string"},
            "severity": {"enum": list(SEVERITIES)}, "urgency": {"enum": list(URGENCIES)},
            "certainty": {"enum": list(CERTAINTIES)}, "source": {"type": "string"},
            "status": {"enum": list(STATUSES), "description": "absent: actual"},
            "note": {"type": "string"}, "emitted_at": {"type": "number", "description": "epoch s"},
            "review": {"type": "object", "description": "signed off at the desk (or cancelled by an operator): "
                                                        "who and when, and which fields were edited",
                       "properties": {"decision": {"enum": ["approved", "issue_unreviewed", "operator_cancel"]},
                                      "by": {"type": "string"}, "at": ISO_TIME, "draft_id": {"type": "string"},
                                      "edited": {"type": "array", "items": {"type": "string"}}}},
            "bases": {"type": "array", "items": {"enum": ["station", "grid"]},
                      "description": "what the region's live entries are: stations (observed or forecast at "
                                     "stations) and / or a forecast grid's cells (`ews ingest --format grid`)"},
            "grid": {"type": "object", "description": "the live grid-based level: level, quantity, value (the most "
                                                      "extreme cell), share and area_km2 of the county at it, "
                                                      "time (issue), onset, expires, source"},
            "area_polygons": {"type": "array", "items": {"type": "array", "items": {
                "type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}},
                "description": "when the grid alone holds the level: the cells at it as CAP polygons, each a "
                               "closed list of [lat, lon] (at most 100 points); CAP <area> carries them"},
        }},
    "WebhookEnvelope": {
        "type": "object", "required": ["type", "timestamp", "data", "ack_url"],
        "description": "The body of a `format: json` webhook (Standard Webhooks). `timestamp` is when the event "
                       "occurred (its `sent`): the same on every attempt of one `webhook-id`.",
        "properties": {
            "type": {"enum": ["warning.alert", "warning.update", "warning.cancel"]},
            "timestamp": ISO_TIME, "data": ref("WarningEvent"),
            "ack_url": {"type": "string", "format": "uri",
                        "description": "POST it (no body, no token) to acknowledge the warning: 204, also when "
                                       "repeated. Its signed token is this subscription's for this event only"},
            "backfill": {"type": "boolean", "description": "an active warning sent to a new or resumed "
                                                           "subscription"},
            "reminder": {"type": "boolean", "description": "sent again: not acknowledged in time"},
            "escalation": {"type": "boolean", "description": "sent to this fallback subscription: a receiver "
                                                             "did not acknowledge it in time"}}},
    "Acknowledgement": {
        "type": "object", "required": ["subscription_id", "name", "at"],
        "properties": {"subscription_id": {"type": "string"},
                       "name": {"type": "string", "description": "the subscription's name when it acknowledged"},
                       "at": ISO_TIME, "level": {"enum": LEVELS, "description": "the acknowledged event's level"},
                       "event_id": {"type": "string"}}},
    "Receipt": {
        "type": "object", "required": ["webhook_id", "subscription_id", "result", "attempt"],
        "description": "One delivery attempt. Without the token `error` is the outcome class only.",
        "properties": {
            "webhook_id": {"type": "string"}, "subscription_id": {"type": "string"},
            "department": NULLABLE_STR, "warning_id": NULLABLE_STR, "event_id": NULLABLE_STR,
            "type": NULLABLE_STR, "attempt": {"type": "integer"},
            "result": {"enum": ["delivered", "retry", "dead", "gone"]}, "status": {"type": ["integer", "null"]},
            "latency_s": {"type": ["number", "null"]}, "error": NULLABLE_STR, "error_class": NULLABLE_STR,
            "why": {"enum": ["backfill", "reminder", "escalation", None], "description": "sent beyond routing: "
                    "to a new subscription, again for want of an acknowledgement, or to a fallback subscription"},
            "time": {"type": ["string", "null"]},
            "subscription_name": {"type": "string", "description": "the subscriber's name (the console shows it)"}}},
    "DeliveryHealth": {
        "type": "object", "required": ["time", "receipts_window", "subscribers"],
        "description": "Delivery health without the token: per subscriber name and department, never an id, "
                       "endpoint, URL or host. Each webhook counted once, by its newest attempt on this worker.",
        "properties": {
            "time": ISO_TIME, "receipts_window": {"type": "integer"},
            "subscribers": {"type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "required": ["name", "department", "active", "delivered", "retrying", "parked", "last_result",
                             "last_outcome", "last_time"],
                "properties": {
                    "name": {"type": "string"}, "department": {"type": "string"}, "active": {"type": "boolean"},
                    "delivered": {"type": "integer"}, "retrying": {"type": "integer"},
                    "parked": {"type": "integer", "description": "dead letters (dead or gone)"},
                    "last_result": {"enum": ["delivered", "retry", "dead", "gone", None]},
                    "last_outcome": {"type": ["string", "null"],
                                     "description": "the last attempt's outcome class (timeout, refused, HTTP 503,"
                                                    " ...) or result"},
                    "last_time": {"type": ["string", "null"]}}}}}},
    "StationValues": {
        "type": "object", "required": ["time", "publish_every_s", "stations"],
        "description": "Every station's latest values and its last days, from the compacted `stations.latest` "
                       "topic (each worker publishes its partitions' summaries every `publish_every_s`).",
        "properties": {
            "time": ISO_TIME, "publish_every_s": {"type": "number"},
            "stations": {"type": "array", "items": {
                "type": "object", "required": ["station_id", "time", "day", "latest", "days"],
                "properties": {
                    "station_id": {"type": "string"},
                    "time": {"type": "string", "description": "the station's last report (UTC)"},
                    "day": {"type": ["string", "null"], "description": "its newest Beijing day (ISO date)"},
                    "latest": {"type": "object", "description": "that day's extremes (tmax_c, tmin_c, "
                               "ground_tmin_c, wind_max_ms, gust_max_ms, precip_mm) and the latest instantaneous "
                               "values (wind_ms, visibility_m, rh_pct); null when not reported",
                               "additionalProperties": {"type": ["number", "null"]}},
                    "days": {"type": "array", "description": "the last 7 days, oldest first: tmax_c and tmin_c "
                             "for the last 3 (the state keeps 3), precip_mm from the daily-rain ring",
                             "items": {"type": "object", "required": ["day"], "properties": {
                                 "day": {"type": "string"}, "tmax_c": {"type": ["number", "null"]},
                                 "tmin_c": {"type": ["number", "null"]},
                                 "precip_mm": {"type": ["number", "null"]}}}}}}}}},
    "WarningDetail": {"type": "object", "required": ["warning_id", "events", "deliveries", "acknowledgements",
                                                      "received"],
                      "properties": {
        "warning_id": {"type": "string"}, "events": {"type": "array", "items": ref("WarningEvent")},
        "deliveries": {"type": "array", "items": ref("Receipt")},
        "acknowledgements": {"type": "array", "items": ref("Acknowledgement"),
                             "description": "who acknowledged it and when, oldest first"},
        "received": {"type": "array", "description": "who knows: per subscription that received (a delivered "
                                                     "receipt in this worker's view) or acknowledged it",
                     "items": {"type": "object", "required": ["subscription_id", "name", "delivered_at",
                                                              "acknowledged_at"], "properties": {
                         "subscription_id": {"type": "string"}, "name": {"type": "string"},
                         "department": NULLABLE_STR, "delivered_at": {"type": ["string", "null"]},
                         "acknowledged_at": {"type": ["string", "null"]}}}},
        "audit": {"type": "array", "items": ref("AuditEntry"), "description": "desk decisions and operator "
                                                                             "cancels, oldest first"}}},
    "AuditEntry": {
        "type": "object", "required": ["action", "by", "at"],
        "description": "Who (a named operator token, `policy` for a timeout the rules allow), when, what, and "
                       "what changed (field -> {from, to}).",
        "properties": {
            "action": {"enum": ["approved", "rejected", "issue_unreviewed", "operator_cancel"]},
            "by": {"type": "string"}, "at": ISO_TIME, "reason": NULLABLE_STR,
            "changes": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "from": {}, "to": {}}}},
            "draft_id": {"type": "string"}, "event_id": {"type": "string"}, "msg_type": NULLABLE_STR,
            "level": NULLABLE_STR}},
    "Draft": {
        "type": "object", "required": ["id", "warning_id", "state", "event"],
        "description": "A warning event held for review (rules.toml `issue = \"review\"`); its id is the event "
                       "id. `state`: pending, approved, rejected, superseded (a newer event of the chain), "
                       "withdrawn (the warning ended first) or issued_unreviewed (the rules' timeout).",
        "properties": {
            "id": {"type": "string"}, "warning_id": {"type": "string"}, "chain_key": {"type": "string"},
            "hazard": {"type": "string"}, "level": {"enum": LEVELS}, "region_code": {"type": "string"},
            "region_name": NULLABLE_STR, "region_name_zh": NULLABLE_STR,
            "msg_type": {"enum": ["alert", "update", "cancel"]}, "status": {"enum": list(STATUSES)},
            "state": {"enum": ["pending", "approved", "rejected", "superseded", "withdrawn",
                               "issued_unreviewed"]},
            "event": ref("WarningEvent"), "made_at": {"type": "number", "description": "epoch s"},
            "made_at_data": {"type": "string"}, "age_s": {"type": "integer"},
            "escalated": {"type": "boolean", "description": "pending past [review] escalate_after_min"},
            "decision": {"oneOf": [ref("AuditEntry"), {"type": "null"}]},
            "decision_status": {"type": "string", "description": "202 only: the decision is on its way"}}},
    "DraftEdits": {
        "type": "object", "additionalProperties": False,
        "description": "Optional edits with an approval: texts of 1 to 2000 characters, `expires` after now and "
                       "the onset, within 7 days.",
        "properties": {**{k: {"type": "string", "minLength": 1, "maxLength": 2000}
                          for k in ("headline_zh", "headline_en", "description_zh", "description_en",
                                    "instruction_zh", "instruction_en")},
                       "expires": TIME_WITH_OFFSET}},
    "SilenceInput": {
        "type": "object", "required": ["ends", "reason"], "additionalProperties": False,
        "description": "`subscription_id`, or `regions` + `hazards`. Red warnings and cancels are never "
                       "silenced. At most EWS_SILENCE_MAX_H (168 h) from `starts` (default now) to `ends`.",
        "properties": {"subscription_id": {"type": "string"},
                       "regions": {"type": "array", "items": REGION_CODE, "minItems": 1},
                       "hazards": {"type": "array", "items": {"type": "string", "examples": HAZARDS},
                                   "minItems": 1},
                       "starts": TIME_WITH_OFFSET, "ends": TIME_WITH_OFFSET,
                       "reason": {"type": "string", "minLength": 1, "maxLength": 500}}},
    "Silence": {
        "type": "object", "required": ["id", "reason", "author", "starts", "ends", "state"],
        "properties": {"id": {"type": "string"}, "reason": {"type": "string"}, "author": {"type": "string"},
                       "starts": ISO_TIME, "ends": ISO_TIME, "created": ISO_TIME,
                       "subscription_id": NULLABLE_STR, "regions": {"type": "array", "items": {"type": "string"}},
                       "hazards": {"type": "array", "items": {"type": "string"}}, "ended_by": NULLABLE_STR,
                       "state": {"enum": ["pending", "active", "ended"]},
                       "held_sent": {"type": "integer", "description": "DELETE: held deliveries sent"}}},
    "ParkedDelivery": {
        "type": "object", "description": "A dead letter: the Delivery with `last_error` and `parked_at`.",
        "properties": {"webhook_id": {"type": "string"}, "subscription_id": {"type": "string"},
                       "type": {"type": "string"}, "event": ref("WarningEvent"), "attempt": {"type": "integer"},
                       "last_error": NULLABLE_STR, "parked_at": {"type": "string"}}},
    "Station": {"type": "object", "required": ["station_id", "latitude", "longitude", "county_code"], "properties": {
        "station_id": {"type": "string"}, "name": {"type": "string"}, "name_zh": {"type": "string"},
        "latitude": {"type": "number"}, "longitude": {"type": "number"}, "elevation_m": {"type": ["number", "null"]},
        "county_code": {"type": "string"}, "county_name": {"type": "string"},
        "prefecture_code": {"type": "string"}, "prefecture_name": {"type": "string"}}},
    "SubscriberHealth": {"type": "object", "required": ["subscribers"], "properties": {
        "time": {"type": "string"}, "receipts_window": {"type": "integer"},
        "subscribers": {"type": "array", "items": {"type": "object", "properties": {
            "subscription_id": {"type": "string"}, "name": {"type": "string"},
            "status": {"enum": ["paused", "unhealthy", "failing", "healthy"]}}}}}},
}

# ------------------------------------------------------------------------------------------- parameters


def query(name: str, schema: Json, description: str) -> Json:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def path_id(description: str) -> Json:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
            "description": description + " (the whole id or a unique prefix)"}


def csv_of(values: list[str] | tuple[str, ...]) -> Json:
    return {"type": "string", "description": "comma-separated: " + ", ".join(values)}


STATUS_PARAM = query("status", {"type": "string", "default": "actual", "examples": ["actual", "exercise", "all"]},
                     "actual (default), exercise, test, all, or a comma-separated list")
WARNINGS_PARAMS = [
    query("active", {"type": "boolean", "default": False}, "only warnings in force now"),
    STATUS_PARAM,
    query("msg_type", csv_of(MSG_TYPES), "the latest event's message type"),
    query("hazard", {"type": "string", "examples": HAZARDS}, "hazard names of the rules table (comma-separated); "
                                                              "an unknown one is 400"),
    query("level", {"enum": LEVELS}, "at least this level"),
    query("severity", csv_of(SEVERITIES), "CAP severity (case-insensitive)"),
    query("urgency", csv_of(URGENCIES), "CAP urgency (case-insensitive)"),
    query("certainty", csv_of(CERTAINTIES), "CAP certainty (case-insensitive)"),
    query("region", {"type": "string", "examples": ["620982", "620900", "620000"]},
          "GB/T 2260 codes (comma-separated): a county, a prefecture (with its counties) or 620000 (all)"),
    query("point", {"type": "string", "pattern": r"^-?[0-9.]+,-?[0-9.]+$", "examples": ["40.14,94.68"]},
          "lat,lon (WGS 84): warnings of the county containing it and its prefecture's roll-ups; none outside "
          "Gansu"),
    query("since", TIME_WITH_OFFSET, "sent at or after"),
    query("until", TIME_WITH_OFFSET, "sent at or before"),
    query("region_level", {"enum": list(REGION_LEVELS)}, "county warnings or prefecture roll-ups"),
    query("limit", {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_MAX},
          "items a page"),
    query("cursor", {"type": "string"}, "from the previous page's Link rel=next; opaque"),
]

# ---------------------------------------------------------------------------------------------- headers

CACHE_HEADERS = {
    "ETag": {"description": "strong validator (a hash of the body)", "schema": {"type": "string"}},
    "Last-Modified": {"description": "when the answer's content last changed (absent in the second of a change)",
                      "schema": {"type": "string"}},
    "Cache-Control": {"schema": {"type": "string"}},
}
NOT_MODIFIED = {"description": "Not Modified: If-None-Match names the ETag, or If-Modified-Since is not before "
                               "Last-Modified", "headers": CACHE_HEADERS}
CONDITIONAL_PARAMS = [
    {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
    {"name": "If-Modified-Since", "in": "header", "required": False, "schema": {"type": "string"}},
]

# ------------------------------------------------------------------------------------------- operations

TOKEN_ERRORS = {"401": error("missing or wrong bearer token"),
                "429": error("too many wrong tokens from this address (Retry-After)")}
BODY_ERRORS = {"400": error("invalid JSON, or a field that fails validation (named)"),
               "408": error("the body was not received within EWS_HTTP_BODY_TIMEOUT"),
               "413": error("body over EWS_MAX_BODY_BYTES, or over EWS_MAX_ITEMS items"),
               "415": error("compressed request bodies are not accepted")}
ID_ERRORS = {"400": error("an ambiguous id prefix"), "404": error("no such id")}


def op(summary: str, responses: Json, *, token: bool = False, params: list[Json] | None = None,
       body: Json | None = None, description: str = "", tag: str = "warnings",
       operation_id: str = "") -> Json:
    out: Json = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        out["description"] = description
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = {"required": True, "content": json_content(body)}
    out["responses"] = {**(BODY_ERRORS if body is not None else {}), **responses,
                        **(TOKEN_ERRORS if token else {})}
    out["security"] = [{"bearer": []}] if token else []
    return out


def ok(description: str, schema: Json | None = None, content_type: str = "application/json",
       headers: Json | None = None) -> Json:
    out: Json = {"description": description}
    if schema is not None:
        out["content"] = {content_type: {"schema": schema}}
    if headers:
        out["headers"] = headers
    return out


def list_of(name: str) -> Json:
    return {"type": "array", "items": ref(name)}


TEXT = {"type": "string"}
SUBSCRIPTION_ID = path_id("a subscription id")
PATHS: Json = {
    "/healthz": {"get": op("process is up", {"200": ok("up", {"type": "object"})}, tag="service",
                           operation_id="healthz")},
    "/readyz": {"get": op("worker ready", {"200": ok("ready", {"type": "object"}),
                                           "503": ok("starting", {"type": "object"})}, tag="service",
                          operation_id="readyz")},
    "/metrics": {"get": op("Prometheus metrics", {"200": ok("text exposition format", TEXT, "text/plain"),
                                                  **TOKEN_ERRORS}, tag="service", operation_id="metrics",
                           description="Needs the token only with EWS_METRICS_TOKEN_REQUIRED=1.")},
    "/api/v1/info": {"get": op("service info", {"200": ok("info", {"type": "object", "properties": {
        "service": TEXT, "demo": NULLABLE_STR, "broker": TEXT, "memory_only": {"type": "boolean"},
        "hazards": {"type": "array", "items": TEXT}, "stations": {"type": "integer"}}})}, tag="service",
        operation_id="info")},
    "/api/v1/openapi.json": {"get": op("this document", {"200": ok("OpenAPI 3.1", {"type": "object"},
                                                                   headers=CACHE_HEADERS),
                                                         "304": NOT_MODIFIED}, tag="service",
                                       operation_id="openapi", params=CONDITIONAL_PARAMS)},
    "/api/docs": {"get": op("this document as a plain HTML page", {"200": ok("HTML", TEXT, "text/html")},
                            tag="service", operation_id="docs")},
    "/api/v1/observations": {"post": op(
        "push observations", {"202": ok("accepted and rejected items", ref("IngestResult")),
                              "400": error("invalid JSON or ?status")},
        token=True, body={"oneOf": [ref("Observation"), list_of("Observation")]}, tag="intake",
        params=[query("status", {"enum": list(STATUSES)}, "the default status of the items")],
        operation_id="postObservations",
        description="Valid items go to the `obs` topic; invalid ones are answered with a reason naming the field "
                    "and kept in `obs.rejected`.")},
    "/api/v1/forecasts": {"post": op(
        "push forecast points", {"202": ok("accepted and rejected items", ref("IngestResult")),
                                 "400": error("invalid JSON or ?status")},
        token=True, body={"oneOf": [ref("ForecastPoint"), list_of("ForecastPoint")]}, tag="intake",
        params=[query("status", {"enum": list(STATUSES)}, "the default status of the items")],
        operation_id="postForecasts")},
    "/api/v1/subscriptions": {
        "post": op("create a subscription", {
            "201": ok("created; `secret` (whsec_...) is shown only here and on rotation", {"allOf": [
                ref("Subscription"), {"type": "object", "required": ["secret"], "properties": {
                    "secret": TEXT, "backfill": {"type": "integer"}}}]}),
            "400": error("a field that fails validation, or a refused destination")},
            token=True, body=ref("SubscriptionInput"), tag="subscriptions", operation_id="createSubscription"),
        "get": op("list subscriptions", {"200": ok("every subscription, never a secret", list_of("Subscription"))},
                  token=True, tag="subscriptions", operation_id="listSubscriptions"),
    },
    "/api/v1/subscriptions/{id}": {
        "get": op("one subscription", {"200": ok("the subscription", ref("Subscription")), **ID_ERRORS},
                  token=True, params=[SUBSCRIPTION_ID], tag="subscriptions", operation_id="getSubscription"),
        "patch": op("edit a subscription", {"200": ok("the edited subscription", ref("Subscription")),
                                            **ID_ERRORS},
                    token=True, params=[SUBSCRIPTION_ID], tag="subscriptions", operation_id="patchSubscription",
                    body={"type": "object", "additionalProperties": False,
                          "properties": {k: SCHEMAS["SubscriptionInput"]["properties"][k] for k in EDITABLE}}),
        "delete": op("delete a subscription", {"204": ok("deleted"), **ID_ERRORS}, token=True,
                     params=[SUBSCRIPTION_ID], tag="subscriptions", operation_id="deleteSubscription"),
    },
    "/api/v1/subscriptions/{id}/pause": {"post": op(
        "pause: deliveries are held until resumed", {"200": ok("paused", ref("Subscription")), **ID_ERRORS},
        token=True, params=[SUBSCRIPTION_ID], tag="subscriptions", operation_id="pauseSubscription")},
    "/api/v1/subscriptions/{id}/resume": {"post": op(
        "resume: held deliveries go out first, then the backfill",
        {"200": ok("resumed", {"allOf": [ref("Subscription"), {"type": "object", "properties": {
            "held_sent": {"type": "integer"}, "backfill": {"type": "integer"}}}]}), **ID_ERRORS,
         **BODY_ERRORS},
        token=True, params=[SUBSCRIPTION_ID], tag="subscriptions", operation_id="resumeSubscription",
        description="Optional body `{\"backfill\": false}`.")},
    "/api/v1/subscriptions/{id}/rotate-secret": {"post": op(
        "new signing secret; the old one also signs for grace_s",
        {"200": ok("the new secret", {"type": "object", "required": ["id", "secret"], "properties": {
            "id": TEXT, "secret": TEXT, "previous_secret_expires": {"type": ["number", "null"]}}}),
         **ID_ERRORS, **BODY_ERRORS},
        token=True, params=[SUBSCRIPTION_ID], tag="subscriptions", operation_id="rotateSecret",
        description="Optional body `{\"grace_s\": seconds in [0, 2592000]}` (default 86400).")},
    "/api/v1/subscriptions/{id}/deliveries": {"get": op(
        "recent delivery attempts, newest first", {"200": ok("receipts", list_of("Receipt")), **ID_ERRORS,
                                                   "400": error("limit: an integer")},
        token=True, tag="subscriptions", operation_id="subscriptionDeliveries",
        params=[SUBSCRIPTION_ID, query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                                       "at most this many")])},
    "/api/v1/dead-letters": {"get": op(
        "parked deliveries", {"200": ok("dead letters, newest first", list_of("ParkedDelivery")), **ID_ERRORS},
        token=True, tag="subscriptions", operation_id="listDeadLetters",
        params=[query("subscription_id", TEXT, "one subscription's (id or unique prefix)")])},
    "/api/v1/dead-letters/redrive": {"post": op(
        "re-send parked deliveries (same webhook-id)",
        {"200": ok("how many", {"type": "object", "required": ["redriven"], "properties": {
            "redriven": {"type": "integer"}}}), **ID_ERRORS, **BODY_ERRORS},
        token=True, tag="subscriptions", operation_id="redriveDeadLetters",
        description="Optional body `{\"subscription_id\": id}`; all without it.")},
    "/api/v1/warnings": {"get": op(
        "warnings: the latest event of each region and hazard, newest first",
        {"200": ok("one page", list_of("WarningEvent"), headers={
            **CACHE_HEADERS, "Link": {"description": "<...&cursor=...>; rel=\"next\" when more follow (from "
                                                     "EWS_PUBLIC_URL)", "schema": TEXT}}),
         "304": NOT_MODIFIED, "400": error("an unknown parameter or value (named)")},
        params=WARNINGS_PARAMS + CONDITIONAL_PARAMS, operation_id="listWarnings")},
    "/api/v1/warnings/{id}": {"get": op(
        "one warning: its chain and recent deliveries",
        {"200": ok("the chain (alert -> updates -> cancel)", ref("WarningDetail"), headers=CACHE_HEADERS),
         "304": NOT_MODIFIED, **ID_ERRORS},
        params=[path_id("a warning id"), *CONDITIONAL_PARAMS], operation_id="getWarning",
        description="Public; with the token the receipts carry the operator's detail and the answer is "
                    "`private, no-store`.")},
    "/api/v1/warnings/{id}.cap": {"get": op(
        "CAP 1.2 XML of an event id, or of a warning id's latest event",
        {"200": ok("CAP 1.2 alert", TEXT, "application/cap+xml", headers=CACHE_HEADERS), "304": NOT_MODIFIED,
         **ID_ERRORS}, params=[path_id("an event id or a warning id"), *CONDITIONAL_PARAMS],
        operation_id="getWarningCap")},
    "/api/v1/acks/{token}": {"post": op(
        "acknowledge a warning: the ack_url of a webhook", {
            "204": {"description": "acknowledged (now or before: repeating it changes nothing)"},
            "404": error("not an acknowledgement link of this service")},
        params=[{"name": "token", "in": "path", "required": True, "schema": TEXT,
                 "description": "the signed token of the webhook's ack_url"}],
        tag="subscriptions", operation_id="acknowledgeWarning",
        description="No body and no operator token: the signed token names the subscription, the warning and "
                    "the event. docs/WEBHOOKS.md.")},
    "/api/v1/warnings/{id}/cancel": {"post": op(
        "operator cancel", {"202": ok("cancel requested", {"type": "object", "properties": {
            "warning_id": TEXT, "region_code": TEXT, "hazard": TEXT, "status": TEXT}}), **ID_ERRORS},
        token=True, params=[path_id("a warning id")], operation_id="cancelWarning")},
    "/api/v1/cap/feed.atom": {"get": op(
        "ATOM feed of county warnings: open ones and the last EWS_FEED_WINDOW of alerts, updates and cancels",
        {"200": ok("ATOM 1.0", TEXT, "application/atom+xml", headers=CACHE_HEADERS), "304": NOT_MODIFIED,
         "400": error("status: an unknown value, or an unknown parameter")},
        params=[STATUS_PARAM, *CONDITIONAL_PARAMS], operation_id="capFeed")},
    "/api/v1/drafts": {"get": op(
        "the review queue: drafts (pending by default, oldest first)",
        {"200": ok("drafts", list_of("Draft")), "400": error("state: an unknown value")}, token=True, tag="desk",
        params=[query("state", {"enum": ["pending", "approved", "rejected", "superseded", "withdrawn",
                                         "issued_unreviewed", "all"], "default": "pending"}, "which drafts")],
        operation_id="listDrafts")},
    "/api/v1/drafts/{id}": {"get": op(
        "one draft", {"200": ok("the draft", ref("Draft")), **ID_ERRORS}, token=True, tag="desk",
        params=[path_id("a draft id")], operation_id="getDraft")},
    "/api/v1/drafts/{id}/approve": {"post": op(
        "approve a draft, optionally edited: it is issued and delivered",
        {"200": ok("decided", ref("Draft")), "202": ok("the decision is on its way", ref("Draft")), **ID_ERRORS,
         **BODY_ERRORS, "409": error("not pending (decided, superseded or withdrawn), or expired without a new "
                                     "expires")},
        token=True, tag="desk", params=[path_id("a draft id")], operation_id="approveDraft",
        description="Optional body: DraftEdits (`headline_*`, `description_*`, `instruction_*`, `expires`). "
                    "The operator the token names is recorded in the audit log and the CAP note.")},
    "/api/v1/drafts/{id}/reject": {"post": op(
        "reject a draft: nothing is sent; the desk is asked again only if the level rises",
        {"200": ok("decided", ref("Draft")), "202": ok("the decision is on its way", ref("Draft")), **ID_ERRORS,
         "409": error("not pending")},
        token=True, tag="desk", params=[path_id("a draft id")], operation_id="rejectDraft",
        body={"type": "object", "required": ["reason"], "properties": {
            "reason": {"type": "string", "minLength": 1, "maxLength": 500}}})},
    "/api/v1/silences": {
        "post": op("silence deliveries for a time (per subscription, or regions + hazards)",
                   {"201": ok("created", ref("Silence"))}, token=True, tag="desk", body=ref("SilenceInput"),
                   operation_id="createSilence"),
        "get": op("silences in force or to come (with ?ended=true also those ended in the last 7 days)",
                  {"200": ok("silences", list_of("Silence")), "400": error("ended: true or false")}, token=True,
                  tag="desk", params=[query("ended", {"enum": ["true", "false"], "default": "false"},
                                             "include ended silences")], operation_id="listSilences")},
    "/api/v1/silences/{id}": {"delete": op(
        "end a silence now: what it held is sent", {"200": ok("ended", ref("Silence")), **ID_ERRORS},
        token=True, tag="desk", params=[path_id("a silence id")], operation_id="endSilence")},
    "/api/v1/stations": {"get": op("the station registry", {"200": ok("stations", list_of("Station"))},
                                   tag="service", operation_id="listStations")},
    "/api/v1/drought/spi": {"get": op("monthly SPI per station (this worker's partitions)",
                                      {"200": ok("rows", {"type": "array", "items": {"type": "object"}})},
                                      operation_id="droughtSpi")},
    "/api/v1/regions": {"get": op("counties and prefectures with outlines",
                                  {"200": ok("GeoJSON FeatureCollection", {"type": "object"}, "application/geo+json")},
                                  tag="dashboard", operation_id="regions")},
    "/api/v1/events": {"get": op("live feed (Server-Sent Events): snapshot, warning, receipt, ack",
                                 {"200": ok("event stream", TEXT, "text/event-stream"),
                                  "503": error("too many live-feed clients (Retry-After)")},
                                 tag="dashboard", operation_id="events")},
    "/api/v1/delivery-health": {"get": op("delivery health per subscriber name, without the token",
                                          {"200": ok("health", ref("DeliveryHealth"))},
                                          tag="dashboard", operation_id="deliveryHealth")},
    "/api/v1/stations/latest": {"get": op("every station's latest values and last days",
                                          {"200": ok("station values", ref("StationValues"))},
                                          tag="service", operation_id="stationValues")},
    "/api/v1/subscribers/health": {"get": op("delivery health per subscription",
                                             {"200": ok("health", ref("SubscriberHealth"))}, token=True,
                                             tag="dashboard", operation_id="subscriberHealth")},
    "/": {"get": op("the dashboard page", {"200": ok("HTML", TEXT, "text/html"), "304": NOT_MODIFIED},
                    tag="dashboard", operation_id="dashboard")},
    "/static/{path}": {"get": op("the dashboard's files", {"200": ok("a file"), "304": NOT_MODIFIED,
                                                           "404": ok("not found", TEXT, "text/plain")},
                                 params=[{"name": "path", "in": "path", "required": True,
                                          "schema": {"type": "string"}}],
                                 tag="dashboard", operation_id="staticFile")},
}

WEBHOOKS: Json = {
    "warning": {"post": {
        "operationId": "warningWebhook",
        "summary": "a warning's alert, update or cancel, POSTed to a subscription's url",
        "description": "Signed per Standard Webhooks v1: `webhook-id` (stable across attempts: deduplicate on it), "
                       "`webhook-timestamp` (this attempt, epoch s) and `webhook-signature` (`v1,<base64 "
                       "HMAC-SHA256>`, space-separated during a secret rotation). `format: json`: the envelope; "
                       "`format: cap`: the CAP 1.2 XML (verify the raw bytes; docs/WEBHOOKS.md). 2xx delivered; "
                       "410 pauses the subscription; 408, 425, 429 and 5xx are retried.",
        "parameters": [*({"name": n, "in": "header", "required": True, "schema": TEXT}
                         for n in ("webhook-id", "webhook-timestamp", "webhook-signature")),
                       {"name": "ews-ack-url", "in": "header", "required": True, "schema": TEXT,
                        "description": "the delivery's ack_url (also in the JSON envelope): POST it to acknowledge "
                                       "the warning; the only place a CAP delivery carries it"}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": ref("WebhookEnvelope")},
            "application/cap+xml": {"schema": TEXT}}},
        "responses": {"2XX": {"description": "delivered"}}}},
}


def build() -> Json:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Gansu extreme-weather early warning (ews)", "version": VERSION,
            "description": "CMA warning signals per county as JSON, CAP 1.2 and ATOM, and signed webhooks to "
                           "departments. Writes, and reads about subscriptions, need `Authorization: Bearer "
                           "<token>`. Errors are `{\"error\": reason}`, the reason starting with the field or "
                           "parameter it names. Public reads carry ETag / Last-Modified / Cache-Control and answer "
                           "304 to If-None-Match or If-Modified-Since. Kafka topics for other consumers: "
                           "docs/TOPICS.md.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "servers": [{"url": "/", "description": "this service (links it writes use EWS_PUBLIC_URL)"}],
        "tags": [{"name": n} for n in ("warnings", "desk", "subscriptions", "intake", "dashboard", "service")],
        "paths": PATHS,
        "webhooks": WEBHOOKS,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "EWS_TOKEN or a named operator token"}}},
    }


def render() -> str:
    return json.dumps(build(), ensure_ascii=False, indent=1) + "\n"


def main() -> int:
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
