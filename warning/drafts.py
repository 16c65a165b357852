"""Draft records on ``warnings.drafts`` (compacted, keyed by draft id): written by the grade agent with the
service's MAC, read by every worker's mirror into ``DraftsView`` (the review queue and the audit log of the API,
the console and ``ews drafts``). A record without a valid MAC is refused and counted, never shown."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from warning.review import PENDING, overdue
from warning.shared import metrics
from warning.shared.bus import Produce
from warning.shared.sealing import Sealer

log = logging.getLogger(__name__)

KEEP_DECIDED = 5000  # decided drafts kept in a worker's view (the topic keeps them all, compacted per draft)


class DraftSink:
    def __init__(self, produce: Produce, topic: str, sealer: Sealer) -> None:
        self.produce, self.topic, self.sealer = produce, topic, sealer

    async def write(self, record: dict[str, Any]) -> None:
        key, value = record["id"].encode(), orjson.dumps(record)
        await self.produce(self.topic, key, value, None, self.sealer.headers(self.topic, key, value))


class DraftsView:
    """Every draft this worker has read, by id (pending ones always; the newest decided ones up to
    KEEP_DECIDED), and the decisions per warning (the audit log)."""

    def __init__(self, topic: str, sealer: Sealer, escalate_after_min: float) -> None:
        self.topic, self.sealer, self.escalate_after_min = topic, sealer, escalate_after_min
        self.by_id: dict[str, dict[str, Any]] = {}
        self.changed_at = 0.0
        self._escalated: set[str] = set()  # drafts already logged as escalated

    def mirror(self, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
        why = self.sealer.check(self.topic, key, value, headers)
        if why is None:
            try:
                record = orjson.loads(value) if value else None
                if record is not None and not (isinstance(record, dict) and isinstance(record.get("id"), str)):
                    raise TypeError("not a draft record")
            except (orjson.JSONDecodeError, TypeError):
                why = "malformed"
        if why is not None:
            metrics.RECORDS_REJECTED.labels(self.topic, why).inc()
            log.warning("%s: refusing a record (%s): not applied", self.topic, why)
            return
        if record is not None:
            self.apply(record)

    def apply(self, record: dict[str, Any]) -> None:
        self.by_id[record["id"]] = record
        self.changed_at = time.time()
        decided = [r for r in self.by_id.values() if r.get("state") != PENDING]
        if len(decided) > KEEP_DECIDED:
            for r in sorted(decided, key=lambda r: (r.get("decision") or {}).get("at", ""))[:-KEEP_DECIDED]:
                del self.by_id[r["id"]]

    def shown(self, record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
        """A record as the API shows it: with ``age_s`` and ``escalated`` (pending longer than the policy's
        ``escalate_after_min``)."""
        now = time.time() if now is None else now
        return {**record, "age_s": round(now - float(record.get("made_at", now))),
                "escalated": overdue(record, now, self.escalate_after_min)}

    def listing(self, state: str | None = PENDING) -> list[dict[str, Any]]:
        """Drafts of ``state`` (None: all), oldest pending first / newest decided first."""
        now = time.time()
        rows = [self.shown(r, now) for r in self.by_id.values() if state is None or r.get("state") == state]
        return sorted(rows, key=lambda r: float(r.get("made_at", 0)), reverse=state != PENDING)

    def audit(self, warning_id: str) -> list[dict[str, Any]]:
        """The warning's desk decisions, oldest first: who, when, what (and what changed)."""
        out = []
        for r in self.by_id.values():
            d = r.get("decision")
            if r.get("warning_id") == warning_id and d and d.get("by") != "lifecycle":
                out.append({"draft_id": r["id"], "msg_type": r.get("msg_type"), "level": r.get("level"), **d})
        return sorted(out, key=lambda e: e.get("at", ""))

    def refresh_gauge(self) -> None:
        """The pending-drafts gauge; a draft that has just become escalated is logged once (on this worker)."""
        now = time.time()
        counts = {"yes": 0, "no": 0}
        late_ids: set[str] = set()
        for r in self.by_id.values():
            if r.get("state") == PENDING:
                late = overdue(r, now, self.escalate_after_min)
                counts["yes" if late else "no"] += 1
                if late:
                    late_ids.add(r["id"])
                    if r["id"] not in self._escalated:
                        log.warning("draft %s (%s %s %s) not handled within %g min: escalated", r["id"],
                                    r.get("region_code"), r.get("hazard"), r.get("level"), self.escalate_after_min,
                                    extra={"warning_id": r.get("warning_id"), "event_id": r["id"]})
        self._escalated = late_ids
        for escalated, n in counts.items():
            metrics.DRAFTS_PENDING.labels(escalated).set(n)
