"""The API's read models, fed by whole-topic mirrors (``warning.shared.mirror``) and by this worker's own writes:
the warnings view (latest event per region and hazard, each warning's chain), the deliveries view (recent
receipts) and the live feed the dashboard's SSE stream listens to."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import orjson

from alerts.delivery import public_error
from warning.shared import metrics
from warning.shared.bus import now_iso
from warning.shared.records import ACTUAL, Receipt, SeenOnce, WarningEvent, status_of
from warning.shared.times import iso_utc, parse_utc

log = logging.getLogger(__name__)

MAX_WARNING_HISTORIES = 5000  # warnings (with all their events) the in-memory API views keep
PUBLIC_RECEIPT_FIELDS = ("webhook_id", "subscription_id", "department", "warning_id", "event_id", "type", "attempt",
                         "result", "status", "latency_s", "time", "why")

Listener = Callable[[str, dict[str, Any]], None]


def public_receipt(receipt: Receipt | dict[str, Any]) -> dict[str, Any]:
    """A receipt as views without the token show it: its ``error`` is the outcome class (timeout, refused,
    HTTP 503, ...), never the receiver's host, port, URL or the exception's text (issue 17)."""
    out = {k: receipt.get(k) for k in PUBLIC_RECEIPT_FIELDS}
    out["error"] = receipt.get("error_class") or public_error(receipt.get("error"))
    return out


class LiveFeed:
    """Listeners called with ("warning", WarningEvent) and ("receipt", Receipt) as they arrive."""

    def __init__(self) -> None:
        self.listeners: list[Listener] = []

    def notify(self, kind: str, record: Any) -> None:
        for listener in list(self.listeners):
            try:
                listener(kind, record)
            except Exception:  # a broken listener must not stop the pipeline
                log.exception("listener failed")


class WarningsView:
    def __init__(self, feed: LiveFeed) -> None:
        self.feed = feed
        self.latest: dict[str, WarningEvent] = {}  # key region:hazard -> latest WarningEvent
        self.history: dict[str, list[WarningEvent]] = {}  # warning_id -> events, in seq order
        self.events_by_id: dict[str, WarningEvent] = {}
        self.changed_at = 0.0  # wall clock when this worker's view last took in an event (HTTP Last-Modified)
        self.warning_changed_at: dict[str, float] = {}  # warning_id -> when its chain last grew here
        self._gauge_at = 0.0

    def mirror(self, key: bytes | None, value: bytes | None) -> None:
        if key is None or value is None:
            return
        event = orjson.loads(value)
        is_new = event["id"] not in self.events_by_id
        self.events_by_id[event["id"]] = event
        history = self.history.pop(event["warning_id"], [])  # re-inserted last: most recently updated
        self.history[event["warning_id"]] = history
        if is_new:
            history.append(event)
            if len(history) > 1 and history[-2]["seq"] > event["seq"]:
                history.sort(key=lambda e: e["seq"])
            self.changed_at = self.warning_changed_at[event["warning_id"]] = time.time()
        latest = self.latest.get(key.decode())
        if latest is None or latest["warning_id"] != event["warning_id"] or latest["seq"] <= event["seq"]:
            self.latest[key.decode()] = event
        if len(self.history) > MAX_WARNING_HISTORIES + MAX_WARNING_HISTORIES // 10:
            self._prune()
        self.refresh_active_gauge()
        self.feed.notify("warning", event)

    def _prune(self) -> None:
        """Bound the API's memory: keep the MAX_WARNING_HISTORIES most recently updated warnings (and every one
        that is still the latest of its region and hazard); the warnings topic keeps them all."""
        current = {e["warning_id"] for e in self.latest.values()}
        excess = len(self.history) - MAX_WARNING_HISTORIES
        for wid in list(self.history):
            if excess <= 0:
                break
            if wid in current:
                continue
            for e in self.history.pop(wid):
                self.events_by_id.pop(e["id"], None)
            self.warning_changed_at.pop(wid, None)
            excess -= 1

    def refresh_active_gauge(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._gauge_at < 1.0:  # at most once a second under an event storm
            return
        self._gauge_at = now
        metrics.WARNINGS_ACTIVE.clear()
        for e in self.active():
            metrics.WARNINGS_ACTIVE.labels(e["hazard"], e["level"], status_of(e)).inc()

    def active(self, at: str | None = None) -> list[WarningEvent]:
        """The latest event of each open warning. An actual warning is open until its cancel or its expiry on
        the wall clock; an exercise or test chain runs on its replayed data's clock (a drill of 2017 data expires
        in 2017), so it is open until the grade stage ends it with its cancel."""
        t = at or now_iso()
        return [e for e in self.latest.values()
                if e["msg_type"] != "cancel" and (e["expires"] > t or status_of(e) != ACTUAL)]

    def feed_events(self, window_s: float, now: float | None = None, at: str | None = None) -> list[WarningEvent]:
        """What the ATOM feed lists: the latest event of every open warning, however old, and every event (alert,
        update, cancel) made within the last ``window_s`` seconds, so a warning's cancel stays in the feed that
        long. When an event was made is its ``emitted_at`` (wall clock; an exercise's ``sent`` is its data time),
        else its ``sent``."""
        cutoff = (time.time() if now is None else now) - window_s
        cutoff_iso = iso_utc(cutoff)
        chosen = {e["id"]: e for e in self.active(at)}
        for e in self.events_by_id.values():
            made = e.get("emitted_at")
            if made >= cutoff if made is not None else e["sent"] >= cutoff_iso:
                chosen.setdefault(e["id"], e)
        return list(chosen.values())

    def last_change(self, now: float | None = None, window_s: float | None = None) -> float:
        """When the lists made from this view last changed: the newest event's arrival, an actual warning's
        expiry since then (it leaves the active lists), and with ``window_s`` an event leaving the feed's
        window."""
        t = time.time() if now is None else now
        changed = self.changed_at
        t_iso = iso_utc(t)
        for e in self.latest.values():
            if e["msg_type"] != "cancel" and status_of(e) == ACTUAL and e["expires"] <= t_iso:
                changed = max(changed, parse_utc(e["expires"]).timestamp())
        if window_s is not None:
            for e in self.events_by_id.values():
                made = e.get("emitted_at")
                if made is not None and made + window_s <= t:
                    changed = max(changed, made + window_s)
        return changed

    def earlier(self, event: WarningEvent) -> list[WarningEvent]:
        """The events of ``event``'s warning before it (what its CAP references)."""
        return [e for e in self.history.get(event.get("warning_id", ""), []) if e["seq"] < event.get("seq", 0)]


class DeliveriesView:
    """Recent delivery receipts, overall and per subscription (fed locally and by the receipts mirror)."""

    def __init__(self, feed: LiveFeed) -> None:
        self.feed = feed
        self.recent: deque[Receipt] = deque(maxlen=2000)
        self.by_sub: dict[str, deque[Receipt]] = {}
        self.warning_changed_at: OrderedDict[str, float] = OrderedDict()  # warning_id -> its last receipt's arrival
        self._seen = SeenOnce()

    def apply(self, receipt: Receipt) -> None:
        if not self._seen.first(receipt):
            return
        self.recent.append(receipt)
        self.by_sub.setdefault(receipt["subscription_id"], deque(maxlen=200)).append(receipt)
        wid = str(receipt.get("warning_id", ""))
        self.warning_changed_at.pop(wid, None)
        self.warning_changed_at[wid] = time.time()
        if len(self.warning_changed_at) > MAX_WARNING_HISTORIES:
            self.warning_changed_at.popitem(last=False)
        self.feed.notify("receipt", receipt)
