"""The public warning reads (no token): the warnings list with its filters and cursor, one warning's chain, CAP
1.2 documents and the ATOM feed, all with ETag / Last-Modified / Cache-Control (``warning.web.caching``).

``GET /api/v1/warnings`` answers the latest event of each chain (county and prefecture), newest first by
``sent`` (then by event id), filtered by ``WarningQuery``; at most ``limit`` (default and largest 500) a page, the
next page linked by ``Link: <...>; rel="next"`` with an opaque ``cursor`` (keyset: the page's last sent and id, so
events arriving meanwhile neither repeat nor skip an item). Every parameter is checked: an unknown parameter, hazard,
region, level or CAP value answers 400 naming the parameter, never an empty list."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson
from aiohttp import web

from ingest.validate import ObservationError, format_time, parse_time
from warning.app import WarningService
from warning.cap import atom_feed, cap_time
from warning.shapes import county_at
from warning.shared.records import ACTUAL, STATUSES, WarningEvent, WarningLevel, status_of
from warning.shared.regions import RegionTree
from warning.web.auth import SVC, operator_of
from warning.web.auth import error_response as _error
from warning.web.caching import PRIVATE, PUBLIC_FEED, PUBLIC_IMMUTABLE_EVENT, PUBLIC_SHORT, cached_response
from warning.web.console import subscription_name
from warning.web.ids import find_id, resolve_id
from warning.web.views import public_receipt

T = TypeVar("T")

PAGE_MAX = 500  # items a page of GET /api/v1/warnings (also the default)
MSG_TYPES = ("alert", "update", "cancel")
SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")  # CAP 1.2 §3.2.2
URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")
CERTAINTIES = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
REGION_LEVELS = ("county", "prefecture")
WARNINGS_PARAMETERS = frozenset({"active", "status", "msg_type", "hazard", "level", "severity", "urgency",
                                 "certainty", "region", "point", "since", "until", "region_level", "limit",
                                 "cursor"})
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")


class QueryError(ValueError):
    """A query parameter that cannot be used; the message starts with its name."""


def level_at_least(level: str, minimum: str) -> bool:
    return WarningLevel.parse(level) >= WarningLevel.parse(minimum)


def statuses_of(query: Mapping[str, str]) -> set[str]:
    """``?status=`` (comma-separated, or ``all``): the statuses a list or feed includes; default actual only, so a
    reader that does not ask never takes a drill for a warning."""
    given = query.get("status", ACTUAL)
    wanted = set(STATUSES) if given == "all" else {s.strip() for s in given.split(",") if s.strip()}
    bad = sorted(wanted - set(STATUSES))
    if bad or not wanted:
        raise QueryError(f"status: {', '.join(STATUSES)} or all (comma-separated), not {given[:40]!r}")
    return wanted


def _one_of(query: Mapping[str, str], name: str, allowed: tuple[str, ...] | frozenset[str],
            fold: Callable[[str], str] = str.lower) -> set[str] | None:
    """A comma-separated parameter whose every value is one of ``allowed`` (matched after ``fold``)."""
    given = query.get(name)
    if given is None:
        return None
    by_folded = {fold(a): a for a in allowed}
    values = [v.strip() for v in given.split(",") if v.strip()]
    bad = [v for v in values if fold(v) not in by_folded]
    if bad or not values:
        raise QueryError(f"{name}: unknown {(bad or [given])[0][:40]!r}; one of {', '.join(sorted(allowed))} "
                         "(comma-separated)")
    return {by_folded[fold(v)] for v in values}


def _time(query: Mapping[str, str], name: str) -> str | None:
    given = query.get(name)
    if given is None:
        return None
    try:
        return format_time(parse_time(given, name))
    except ObservationError as exc:
        raise QueryError(str(exc)) from None


def _point(given: str) -> tuple[float, float]:
    try:
        lat_s, lon_s = given.split(",")
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise QueryError(f"point: lat,lon in decimal degrees (e.g. 36.06,103.83), not {given[:40]!r}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise QueryError(f"point: latitude in [-90, 90] and longitude in [-180, 180], not {given[:40]!r}")
    return lat, lon


def _cursor(given: str) -> tuple[str, str]:
    try:
        sent, _, event_id = base64.urlsafe_b64decode(given + "=" * (-len(given) % 4)).decode().partition("|")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise QueryError("cursor: not one this service gave; follow the next link as given") from None
    if not sent or not event_id:
        raise QueryError("cursor: not one this service gave; follow the next link as given")
    return sent, event_id


def make_cursor(event: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(f"{event['sent']}|{event['id']}".encode()).decode().rstrip("=")


@dataclass(frozen=True)
class WarningQuery:
    """The filters of ``GET /api/v1/warnings``; every one is optional and they combine with AND (values of one
    parameter with OR)."""

    active: bool = False
    statuses: frozenset[str] = frozenset({ACTUAL})
    msg_types: frozenset[str] | None = None
    hazards: frozenset[str] | None = None
    level: str | None = None  # at least
    severities: frozenset[str] | None = None
    urgencies: frozenset[str] | None = None
    certainties: frozenset[str] | None = None
    regions: tuple[str, ...] = ()  # GB/T 2260 codes: a county, a prefecture (its counties too) or 620000 (all)
    point_regions: tuple[str, ...] | None = None  # point=: the county containing it and its prefecture
    since: str | None = None
    until: str | None = None
    region_level: str | None = None
    limit: int = PAGE_MAX
    after: tuple[str, str] | None = None  # the cursor: (sent, id) of the previous page's last item

    @classmethod
    def parse(cls, query: Mapping[str, str], hazards: frozenset[str], known_region: Callable[[str], bool],
              parent_of: Callable[[str], str | None],
              region_hint: Callable[[str], str] | None = None) -> WarningQuery:
        region_hint = region_hint or RegionTree.load().valid_codes_hint
        unknown = sorted(set(query) - WARNINGS_PARAMETERS)
        if unknown:
            raise QueryError(f"{unknown[0][:40]}: unknown parameter; known: {', '.join(sorted(WARNINGS_PARAMETERS))}")
        active = query.get("active", "false").strip().lower()
        if active not in TRUE + FALSE:
            raise QueryError(f"active: true or false, not {query['active'][:40]!r}")
        level = query.get("level")
        if level is not None:
            try:
                level = WarningLevel.parse(level).colour
            except ValueError as exc:
                raise QueryError(f"level: {exc}") from None
        regions = tuple(r.strip() for r in query.get("region", "").split(",") if r.strip())
        bad_regions = [r for r in regions if not known_region(r)]
        if bad_regions or ("region" in query and not regions):
            raise QueryError(f"region: unknown region code {(bad_regions or [''])[0][:40]!r}; a GB/T 2260 code "
                             f"of a Gansu county, prefecture or 620000: {region_hint((bad_regions or [''])[0])}")
        point_regions = None
        if "point" in query:
            county = county_at(*_point(query["point"]))
            parent = parent_of(county) if county else None
            point_regions = tuple(c for c in (county, parent) if c)
        try:
            limit = int(query.get("limit", str(PAGE_MAX)))
        except ValueError:
            limit = 0
        if not 1 <= limit <= PAGE_MAX:
            raise QueryError(f"limit: an integer in [1, {PAGE_MAX}]")

        def frozen(values: set[str] | None) -> frozenset[str] | None:
            return None if values is None else frozenset(values)

        region_levels = _one_of(query, "region_level", REGION_LEVELS)
        return cls(active=active in TRUE, statuses=frozenset(statuses_of(query)),
                   msg_types=frozen(_one_of(query, "msg_type", MSG_TYPES)),
                   hazards=frozen(_one_of(query, "hazard", hazards, str)), level=level,
                   severities=frozen(_one_of(query, "severity", SEVERITIES)),
                   urgencies=frozen(_one_of(query, "urgency", URGENCIES)),
                   certainties=frozen(_one_of(query, "certainty", CERTAINTIES)),
                   regions=regions, point_regions=point_regions,
                   since=_time(query, "since"), until=_time(query, "until"),
                   region_level=next(iter(region_levels)) if region_levels and len(region_levels) == 1 else None,
                   limit=limit, after=_cursor(query["cursor"]) if "cursor" in query else None)

    def matches(self, e: Mapping[str, Any], covers: Callable[[str, str], bool]) -> bool:
        def within(values: frozenset[str] | None, value: Any) -> bool:
            return values is None or value in values

        return (status_of(e) in self.statuses and within(self.msg_types, e["msg_type"])
                and within(self.hazards, e["hazard"])
                and (self.level is None or level_at_least(e["level"], self.level))
                and within(self.severities, e.get("severity")) and within(self.urgencies, e.get("urgency"))
                and within(self.certainties, e.get("certainty"))
                and (not self.regions or any(covers(r, e["region_code"]) for r in self.regions))
                and (self.point_regions is None or e["region_code"] in self.point_regions)
                and (self.since is None or e["sent"] >= self.since)
                and (self.until is None or e["sent"] <= self.until)
                and (self.region_level is None or e.get("region_level", "county") == self.region_level))


def _order(e: Mapping[str, Any]) -> tuple[str, str]:
    return e["sent"], e["id"]


def select_warnings(candidates: list[WarningEvent], q: WarningQuery, covers: Callable[[str, str], bool]
                    ) -> tuple[list[WarningEvent], bool]:
    """One page of the matching events, newest first, and whether more follow."""
    events = sorted((e for e in candidates if q.matches(e, covers)), key=_order, reverse=True)
    if q.after is not None:
        events = [e for e in events if _order(e) < q.after]
    return events[:q.limit], len(events) > q.limit


async def list_warnings(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    try:
        q = WarningQuery.parse(request.query, frozenset(svc.rules), svc.regions.is_known,
                               lambda c: (p.code if (p := svc.regions.parent(c)) else None),
                               svc.regions.valid_codes_hint)
    except QueryError as exc:
        return _error(400, str(exc))
    candidates = svc.warnings.active() if q.active else list(svc.warnings.latest.values())
    page, more = select_warnings(candidates, q, svc.regions.covers)
    headers = {}
    if more:
        params = {**request.query, "cursor": make_cursor(page[-1])}
        headers["Link"] = f'<{svc.settings.public_base_url}/api/v1/warnings?{urlencode(params)}>; rel="next"'
    return cached_response(request, orjson.dumps(page), content_type="application/json", headers=headers,
                           cache_control=PUBLIC_SHORT, last_modified=svc.warnings.last_change())


VIEW_CATCH_UP_S = 1.0  # how long a lookup of an unknown warning waits for this worker's view to catch up


async def in_view(lookup: Callable[[], T | None], timeout_s: float = VIEW_CATCH_UP_S, poll_s: float = 0.05
                  ) -> T | None:
    """``lookup()``, waiting up to ``timeout_s`` while it finds nothing: a receiver may fetch a warning (or its
    CAP) the moment the webhook announcing it arrives, before the warnings mirror of the worker it asks has read
    the event (it fetches every 50 ms); an id that is not there after that is a 404."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (found := lookup()) is None and loop.time() < deadline:
        await asyncio.sleep(poll_s)
    return found


def warning_chain(svc: WarningService, given: str) -> list[WarningEvent] | None:
    """The events of the warning ``given`` names (its id or a unique prefix); None if none (yet); 400 if the
    prefix is ambiguous."""
    found = find_id(given, svc.warnings.history)
    if len(found) > 1:
        resolve_id(given, found, "warning")
    return svc.warnings.history.get(found[0]) if found else None


def audit_log(svc: WarningService, wid: str, history: list[WarningEvent]) -> list[dict[str, Any]]:
    """Who decided what about the warning, when, and what they changed: the desk's decisions on its drafts and
    the operators' cancels, oldest first."""
    cancels: list[dict[str, Any]] = [
        {"event_id": e["id"], "msg_type": e["msg_type"], "level": e["level"], "action": "operator_cancel",
         "by": e["review"].get("by"), "at": e["review"].get("at"), "reason": None, "changes": {}}
               for e in history if (e.get("review") or {}).get("decision") == "operator_cancel"]
    return sorted([*svc.drafts.audit(wid), *cancels], key=lambda a: str(a.get("at", "")))


def who_knows(svc: WarningService, receipts: list[Any], acknowledgements: list[dict[str, Any]]
              ) -> list[dict[str, Any]]:
    """Per subscription that received the warning (a delivered receipt in this worker's view) or acknowledged it:
    its name, when it first had it and when it first acknowledged it (null: not yet)."""
    out: dict[str, dict[str, Any]] = {}

    def row(sub_id: str) -> dict[str, Any]:
        if sub_id not in out:
            sub = svc.subscriptions.get(sub_id)
            out[sub_id] = {"subscription_id": sub_id, "name": sub.name if sub else "",
                           "department": sub.department if sub else None, "delivered_at": None,
                           "acknowledged_at": None}
        return out[sub_id]

    for r in sorted(receipts, key=lambda r: r.get("time") or ""):
        if r.get("result") == "delivered" and r.get("subscription_id"):
            entry = row(r["subscription_id"])
            entry["delivered_at"] = entry["delivered_at"] or r.get("time")
    for a in acknowledgements:
        entry = row(a["subscription_id"])
        entry["name"] = entry["name"] or a["name"]
        entry["acknowledged_at"] = entry["acknowledged_at"] or a["at"]
    return list(out.values())


async def get_warning(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    history = await in_view(lambda: warning_chain(svc, request.match_info["id"]) or None)
    if not history:
        return _error(404, f"no such warning: no id or id prefix {request.match_info['id']!r}")
    wid = history[-1]["warning_id"]
    receipts: list[Any] = [r for r in svc.deliveries.recent if r["warning_id"] == wid]
    detail = operator_of(request) is not None  # hosts, ports, URLs, exception text only with the token
    if not detail:
        receipts = [public_receipt(r) for r in receipts]
    receipts = [{**r, "subscription_name": subscription_name(svc, r["subscription_id"])}  # who, by name
                for r in receipts]
    acknowledgements = [{k: a[k] for k in ("subscription_id", "name", "at", "level", "event_id")}
                        for a in svc.acks.of_warning(wid)]
    changed = max(svc.warnings.warning_changed_at.get(wid, 0.0), svc.deliveries.warning_changed_at.get(wid, 0.0),
                  svc.drafts.changed_at if svc.drafts.audit(wid) else 0.0, svc.acks.changed_at.get(wid, 0.0))
    body = {"warning_id": wid, "events": history, "deliveries": receipts, "audit": audit_log(svc, wid, history),
            "acknowledgements": acknowledgements, "received": who_knows(svc, receipts, acknowledgements)}
    return cached_response(request, orjson.dumps(body),
                           content_type="application/json", cache_control=PRIVATE if detail else PUBLIC_SHORT,
                           last_modified=changed or None, vary="Authorization")


def _find_event(svc: WarningService, ident: str) -> tuple[WarningEvent, list[WarningEvent], bool] | None:
    """An event by event id, or the latest event of a warning id (either may be a unique prefix); with the
    earlier events of its chain, and whether ``ident`` named the event itself (its CAP never changes)."""
    chain = warning_chain(svc, ident)
    if chain:
        return chain[-1], chain[:-1], False
    found = find_id(ident, svc.warnings.events_by_id)
    if not found:
        return None
    event = svc.warnings.events_by_id[resolve_id(ident, found, "warning event")]
    chain = svc.warnings.history.get(event["warning_id"], [])
    return event, [e for e in chain if e["seq"] < event["seq"]], True


async def get_warning_cap(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    found = await in_view(lambda: _find_event(svc, request.match_info["id"]))
    if found is None:
        return _error(404, "no such warning or event")
    event, earlier, by_event_id = found
    return cached_response(request, svc.cap_document(event, earlier), content_type="application/cap+xml",
                           charset="utf-8", cache_control=PUBLIC_IMMUTABLE_EVENT if by_event_id else PUBLIC_SHORT,
                           last_modified=svc.warnings.warning_changed_at.get(event["warning_id"]))


async def cap_feed(request: web.Request) -> web.Response:
    """The ATOM feed of county warnings: the latest event of every open warning, and every alert, update and
    cancel of the last ``feed_window_s`` (so a consumer polling the feed learns of the cancel), newest first, each
    linking its CAP message. Links come from ``public_base_url``, never from the request's Host header."""
    svc = request.app[SVC]
    base = svc.settings.public_base_url
    unknown = sorted(set(request.query) - {"status"})
    if unknown:
        return _error(400, f"{unknown[0][:40]}: unknown parameter; known: status")
    try:
        statuses = statuses_of(request.query)
    except QueryError as exc:
        return _error(400, str(exc))
    window = svc.settings.feed_window_s
    events = [e for e in svc.warnings.feed_events(window) if e.get("region_level", "county") == "county"
              and status_of(e) in statuses]
    changed = svc.warnings.last_change(window_s=window)
    # an empty feed is as old as the view's last change, not "now": its ETag stays put between polls
    updated = None if events else cap_time(datetime.fromtimestamp(changed, UTC).isoformat())
    body = atom_feed(events, feed_url=base + "/api/v1/cap/feed.atom", rules=svc.rules, updated=updated,
                     cap_url=lambda e: f"{base}/api/v1/warnings/{e['id']}.cap", hub=svc.settings.websub_hub or None)
    return cached_response(request, body, content_type="application/atom+xml", charset="utf-8",
                           cache_control=PUBLIC_FEED, last_modified=changed or None)


def add_feed_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/warnings", list_warnings)
    app.router.add_get(r"/api/v1/warnings/{id:[^/.]+}.cap", get_warning_cap)
    app.router.add_get("/api/v1/cap/feed.atom", cap_feed)
    app.router.add_get("/api/v1/warnings/{id}", get_warning)
