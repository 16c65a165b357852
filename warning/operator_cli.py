"""Operators' commands of ``ews``: ``warnings``, ``subscribers``, ``dead-letters`` (all through the HTTP API with
the operator token) and ``replay`` (a what-if re-run of a time range of ``obs`` read straight from Kafka).

Output is an aligned table, times in Beijing time (``2026-07-14 14:00 BJT``, UTC+8, the bureau's clock; ``--utc``
shows them in UTC), or JSON with ``--json`` (times as the API gives them: UTC ISO-8601). Exit codes: 0 ok, 1 the
API answered with an error (its message goes to stderr), 2 usage or connection problems. The token is never
printed; a subscription's secret is printed only by ``subscribers add`` and ``subscribers rotate``, the only
answers of the API that carry it.

Wiring (``warning.cli``)::

    add_operator_parsers(sub)          # sub = parser.add_subparsers(dest="command", required=True)
    args = parser.parse_args(argv)
    if getattr(args, "operator", None) is not None:
        return run_operator(args)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, quote, urlsplit

import orjson

from warning.shared import running
from warning.shared.records import status_of
from warning.shared.times import iso_utc

if TYPE_CHECKING:
    from warning.shared.records import Signal

DEFAULT_URL = "http://127.0.0.1:8080"
API = "/api/v1"
LEVELS = ("blue", "yellow", "orange", "red")
DEPARTMENTS = ("agriculture", "water", "health", "relief", "other")
FORMATS = ("json", "cap")
SECRET_KEYS = frozenset({"secret", "previous_secret", "secrets"})
OPERATOR_COMMANDS = frozenset({"warnings", "subscribers", "dead-letters", "replay"})

Handler = Callable[[argparse.Namespace, "Context"], Awaitable[int]]


class ApiError(Exception):
    """The API answered with an HTTP error status (exit 1)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class UsageError(Exception):
    """Bad input, or the service / broker cannot be reached (exit 2)."""


# ---- context: where the API is, the token, output ------------------------------------------------------------

def terminal_safe(text: str, keep: str = "\n") -> str:
    """``text`` with control and format characters (ESC and the rest of C0/C1, bidi overrides) shown as escapes
    (``\\x1b``), so nothing the API returns (a subscription's name, an error) can drive the operator's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c in keep or unicodedata.category(c) not in ("Cc", "Cf")
                   else c.encode("unicode_escape").decode("ascii") for c in text)


def _read_token_file() -> str | None:
    path = Path(os.environ.get("EWS_DATA_DIR") or "data") / "token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


@dataclass
class Context:
    url: str
    token: str | None
    json: bool
    timeout_s: float = 30.0
    utc: bool = False  # tables in UTC (--utc) instead of Beijing time; JSON is always the API's UTC
    next_cursor: str | None = None  # the last answer's ``Link: <...?cursor=...>; rel="next"`` cursor, if any

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        # --url, EWS_URL, else the service running on this data dir (it may listen on another port), else 8080
        url = (getattr(args, "api_url", None) or os.environ.get("EWS_URL") or running.find_url()
               or DEFAULT_URL).rstrip("/")
        token = getattr(args, "token", None) or os.environ.get("EWS_TOKEN") or _read_token_file()
        return cls(url=url, token=token, json=bool(getattr(args, "json", False)),
                   timeout_s=float(getattr(args, "timeout", None) or 30.0), utc=bool(getattr(args, "utc", False)))

    # Everything printed goes through here: the token is masked wherever it might appear (an echoed header in
    # an error page, say), so no output of this CLI can leak it; control characters are shown as escapes.
    def _scrub(self, text: str) -> str:
        if self.token and len(self.token) >= 4:
            text = text.replace(self.token, "***")
        return terminal_safe(text)

    def out(self, text: str = "") -> None:
        _write(sys.stdout, self._scrub(text))

    def err(self, text: str) -> None:
        _write(sys.stderr, self._scrub(text))

    def emit_json(self, data: Any) -> None:
        self.out(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY,
                              default=_json_default).decode())

    def show(self, data: Any, human: Callable[[], None]) -> int:
        """A command's answer: ``data`` as JSON with --json, else what ``human`` prints (a table, a line)."""
        if self.json:
            self.emit_json(data)
        else:
            human()
        return 0

    async def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                      body: Any = None) -> Any:
        """One API call; the decoded JSON answer (None for 204). Raises ApiError / UsageError."""
        import aiohttp

        headers = {"Accept": "application/json", "User-Agent": "ews-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
                    method, self.url + path, params=params, data=data, headers=headers,
                    allow_redirects=False) as resp:  # the token goes to the configured URL and nowhere else
                raw = await resp.read()
                status = resp.status
                location = resp.headers.get("Location", "")
                # only the cursor is taken from a next link: the token never follows a URL the answer names
                next_link = resp.links.get("next")
                next_url = next_link.get("url") if next_link is not None else None
                cursors = parse_qs(urlsplit(str(next_url)).query).get("cursor", []) if next_url is not None else []
                self.next_cursor = cursors[0] if cursors else None
        except (aiohttp.InvalidURL, ValueError) as exc:
            raise UsageError(f"bad API URL {self.url!r}: {exc}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            raise UsageError(f"cannot reach the API at {self.url}: {reason}") from None
        if status >= 400:
            raise ApiError(status, _error_message(raw, status))
        if 300 <= status < 400:
            raise ApiError(status, f"redirected to {location or '?'}; give --url / EWS_URL the API's own address")
        if status == 204 or not raw.strip():
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(status, f"not a JSON answer: {raw[:200].decode('utf-8', 'replace')!r}") from None


def _write(stream: IO[str], text: str) -> None:
    try:
        stream.write(text + "\n")
    except UnicodeEncodeError:  # a terminal without UTF-8: keep the Chinese names readable as escapes
        stream.write(text.encode("ascii", "backslashreplace").decode() + "\n")


def _json_default(value: Any) -> Any:
    """Scalars from numpy and friends (replay computes with the pipeline's numeric code)."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _error_message(raw: bytes, status: int) -> str:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:500] or f"HTTP {status}"
    if isinstance(body, dict):
        for key in ("error", "message", "detail", "reason"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return orjson.dumps(body).decode()[:500]


def _without_secrets(data: Any) -> Any:
    """Drop secret fields wherever they are (the API should not send them outside add/rotate; be sure)."""
    if isinstance(data, dict):
        return {k: _without_secrets(v) for k, v in data.items() if k not in SECRET_KEYS}
    if isinstance(data, list):
        return [_without_secrets(v) for v in data]
    return data


# ---- tables ---------------------------------------------------------------------------------------------------

def _width(text: str) -> int:
    """Display width: CJK (wide / fullwidth) characters take two terminal columns."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1
               for c in text)


BJT = timezone(timedelta(hours=8), "BJT")  # Beijing time: China has one zone and no daylight saving
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")


def show_time(value: str, utc: bool = False) -> str:
    """An ISO-8601 time with an offset as a table shows it: ``2026-07-14 14:00 BJT`` (Beijing time, the bureau's
    and the dashboard's clock) or, with ``utc``, ``2026-07-14 06:00 UTC``; seconds only when there are some.
    Anything else (no offset, not a time) is returned as it is."""
    if not _ISO_TIME.match(value):
        return value
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    t = t.astimezone(UTC if utc else BJT)
    return t.strftime("%Y-%m-%d %H:%M" + (":%S" if t.second else "") + (" UTC" if utc else " BJT"))


def _cell(value: Any, utc: bool = False) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v, utc) for v in value) if value else "-"
    if isinstance(value, str) and _ISO_TIME.match(value):
        return show_time(value, utc)
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    return terminal_safe(" ".join(str(value).split()), keep="")  # no newlines, tabs or escapes in a cell


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]],
                 clip: dict[str, int] | None = None, utc: bool = False) -> str:
    """An aligned text table of ``rows``; ``columns`` are (key, header); ``clip`` caps some columns' widths.
    Times (ISO-8601 with an offset) are shown in Beijing time, or in UTC with ``utc`` (:func:`show_time`)."""
    clip = clip or {}
    cells = [[_clip(_cell(row.get(key), utc), clip.get(key, 10_000)) for key, _ in columns] for row in rows]
    headers = [header for _, header in columns]
    widths = [max([_width(h)] + [_width(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        padded = [v + " " * (w - _width(v)) for v, w in zip(values, widths, strict=True)]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers)] + [line(r) for r in cells])


def _iso_epoch(value: Any) -> Any:
    """previous_secret_expires may be unix seconds: as UTC ISO (then shown like any time)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return iso_utc(value)
    return value


WARNING_COLUMNS = [("sent", "SENT"), ("type", "TYPE"), ("level", "LEVEL"), ("hazard", "HAZARD"),
                   ("region_code", "REGION"), ("region_name", "NAME"), ("region_level", "SCOPE"),
                   ("basis", "BASIS"), ("expires", "EXPIRES"), ("station_ids", "STATIONS"),
                   ("warning_id", "WARNING ID")]
SUBSCRIPTION_COLUMNS = [("id", "ID"), ("name", "NAME"), ("department", "DEPARTMENT"), ("state", "STATE"),
                        ("regions", "REGIONS"), ("hazards", "HAZARDS"), ("min_level", "MIN LEVEL"),
                        ("format", "FORMAT"), ("url", "URL")]
RECEIVED_COLUMNS = [("name", "SUBSCRIBER"), ("department", "DEPARTMENT"), ("delivered_at", "RECEIVED"),
                    ("acknowledged_at", "ACKNOWLEDGED"), ("subscription_id", "SUBSCRIPTION")]
DELIVERY_COLUMNS = [("time", "TIME"), ("result", "RESULT"), ("status", "STATUS"), ("attempt", "ATTEMPT"),
                    ("type", "TYPE"), ("department", "DEPARTMENT"), ("warning_id", "WARNING ID"),
                    ("latency_s", "LATENCY S"), ("error", "ERROR"), ("webhook_id", "WEBHOOK ID")]
AUDIT_COLUMNS = [("at", "AT"), ("by", "BY"), ("action", "ACTION"), ("msg_type", "TYPE"), ("level", "LEVEL"),
                 ("changed", "CHANGED"), ("reason", "REASON")]
DEAD_COLUMNS = [("parked_at", "PARKED AT"), ("subscription_id", "SUBSCRIPTION"), ("type", "TYPE"),
                ("hazard", "HAZARD"), ("level", "LEVEL"), ("region_code", "REGION"), ("attempt", "ATTEMPT"),
                ("last_error", "LAST ERROR"), ("warning_id", "WARNING ID"), ("webhook_id", "WEBHOOK ID")]


def _warning_row(e: dict[str, Any]) -> dict[str, Any]:
    kind = e.get("msg_type") or "-"
    if e.get("change"):
        kind = f"{kind}/{e['change']}"
    stations = [s.get("station_id") for s in e.get("stations") or [] if isinstance(s, dict)]
    return {**e, "type": kind, "station_ids": stations}


def _subscription_row(s: dict[str, Any]) -> dict[str, Any]:
    state = "active" if s.get("active", True) else "paused"
    if not s.get("active", True) and s.get("paused_reason"):
        state = f"paused ({s['paused_reason']})"
    return {**s, "state": state, "hazards": s.get("hazards") or "all"}


def _dead_row(d: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = d["event"] if isinstance(d.get("event"), dict) else {}
    return {**d, **{k: event.get(k) for k in ("warning_id", "hazard", "level", "region_code")}}


def _print_rows(ctx: Context, rows: list[dict[str, Any]], columns: Sequence[tuple[str, str]], empty: str,
                clip: dict[str, int] | None = None) -> None:
    if not rows:
        ctx.out(f"({empty})")
        return
    ctx.out(format_table(rows, columns, clip, utc=ctx.utc))


def _print_warnings(ctx: Context, events: list[dict[str, Any]], empty: str = "no warnings") -> None:
    _print_rows(ctx, [_warning_row(e) for e in events], WARNING_COLUMNS, empty, {"station_ids": 40})


def _as_list(data: Any, what: str) -> list[dict[str, Any]]:
    if isinstance(data, dict):  # tolerate {"items": [...]}-style envelopes
        for key in ("items", what, "results"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list):
        raise ApiError(200, f"expected a list of {what}, got {type(data).__name__}")
    return [x for x in data if isinstance(x, dict)]


# ---- warnings -------------------------------------------------------------------------------------------------

PAGE_LIMIT = 500  # the API's largest page
WARNING_FILTERS = ("hazard", "region", "level", "since", "until", "status", "msg_type", "severity", "urgency",
                   "certainty", "point", "region_level")

async def cmd_warnings(args: argparse.Namespace, ctx: Context) -> int:
    if args.warning_id:
        detail = await ctx.request("GET", f"{API}/warnings/{quote(args.warning_id, safe='')}")
        if ctx.json:
            ctx.emit_json(_without_secrets(detail))
            return 0
        ctx.out(f"warning {detail.get('warning_id', args.warning_id)}")
        ctx.out()
        _print_warnings(ctx, _as_list(detail.get("events", []), "events"), "no events")
        ctx.out()
        ctx.out("who knows:")
        _print_rows(ctx, _as_list(detail.get("received", []), "received"), RECEIVED_COLUMNS, "nobody yet")
        ctx.out()
        ctx.out("deliveries:")
        _print_rows(ctx, _as_list(detail.get("deliveries", []), "deliveries"), DELIVERY_COLUMNS, "no deliveries",
                    {"error": 60})
        audit = [{**a, "changed": sorted(a.get("changes") or {})} for a in _as_list(detail.get("audit", []), "audit")]
        if audit:
            ctx.out()
            ctx.out("audit log:")
            _print_rows(ctx, audit, AUDIT_COLUMNS, "no decisions", {"reason": 50})
        return 0
    params: dict[str, str] = {}
    if args.active:
        params["active"] = "true"
    for key in WARNING_FILTERS:
        if getattr(args, key):
            params[key] = getattr(args, key)
    events: list[dict[str, Any]] = []
    while len(events) < args.limit:  # page by page (the API's cursor), up to --limit
        params["limit"] = str(min(PAGE_LIMIT, args.limit - len(events)))
        events += _as_list(await ctx.request("GET", f"{API}/warnings", params=params), "warnings")
        if ctx.next_cursor is None:
            break
        params["cursor"] = ctx.next_cursor
    return ctx.show(_without_secrets(events), lambda: _print_warnings(ctx, events))


# ---- subscribers ----------------------------------------------------------------------------------------------

def _sub_path(sub_id: str, tail: str = "") -> str:
    return f"{API}/subscriptions/{quote(sub_id, safe='')}{tail}"


def _show_subscriptions(ctx: Context, subs: list[dict[str, Any]]) -> None:
    _print_rows(ctx, [_subscription_row(s) for s in subs], SUBSCRIPTION_COLUMNS, "no subscriptions", {"url": 60})


async def cmd_sub_list(args: argparse.Namespace, ctx: Context) -> int:
    subs = _without_secrets(_as_list(await ctx.request("GET", f"{API}/subscriptions"), "subscriptions"))
    return ctx.show(subs, lambda: _show_subscriptions(ctx, subs))


async def cmd_sub_add(args: argparse.Namespace, ctx: Context) -> int:
    body: dict[str, Any] = {"name": args.name, "department": args.department, "url": args.hook_url,
                            "regions": args.region, "hazards": args.hazard or []}
    if args.min_level:
        body["min_level"] = args.min_level
    if args.format:
        body["format"] = args.format
    if args.basis:
        body["basis"] = args.basis
    if args.msg_type:
        body["msg_types"] = args.msg_type
    if args.fallback:
        body["fallback"] = True
    created = await ctx.request("POST", f"{API}/subscriptions", body=body)
    if not isinstance(created, dict):
        raise ApiError(200, "unexpected answer to POST /subscriptions")
    if ctx.json:
        ctx.emit_json(created)  # the secret included: this is the one time the API shows it
        return 0
    _show_subscriptions(ctx, [_without_secrets(created)])
    ctx.out()
    ctx.out(f"secret: {created.get('secret', '-')}")
    ctx.err("store the secret now: the API never shows it again (ews subscribers rotate makes a new one)")
    return 0


async def _sub_action(ctx: Context, sub_id: str, action: str, done: str) -> int:
    answer = await ctx.request("POST", _sub_path(sub_id, f"/{action}"), body={})
    answer = _without_secrets(answer)
    if ctx.json:
        ctx.emit_json(answer if answer is not None else {"id": sub_id, "status": done})
    elif isinstance(answer, dict) and ("name" in answer or "url" in answer):
        _show_subscriptions(ctx, [answer])
    else:
        ctx.out(f"{done} {sub_id}")
    return 0


async def cmd_sub_pause(args: argparse.Namespace, ctx: Context) -> int:
    return await _sub_action(ctx, args.id, "pause", "paused")


async def cmd_sub_resume(args: argparse.Namespace, ctx: Context) -> int:
    return await _sub_action(ctx, args.id, "resume", "resumed")


async def cmd_sub_rotate(args: argparse.Namespace, ctx: Context) -> int:
    body = {"grace_s": args.grace_s} if args.grace_s is not None else {}
    answer = await ctx.request("POST", _sub_path(args.id, "/rotate-secret"), body=body)
    if not isinstance(answer, dict):
        raise ApiError(200, "unexpected answer to rotate-secret")
    if ctx.json:
        ctx.emit_json(answer)  # the new secret included: shown once
        return 0
    ctx.out(f"id: {answer.get('id', args.id)}")
    ctx.out(f"secret: {answer.get('secret', '-')}")
    ctx.out(f"previous secret valid until: {_cell(_iso_epoch(answer.get('previous_secret_expires')), ctx.utc)}")
    ctx.err("store the new secret now: the API never shows it again")
    return 0


async def cmd_sub_deliveries(args: argparse.Namespace, ctx: Context) -> int:
    params = {"limit": str(args.limit)} if args.limit else None
    receipts = _as_list(await ctx.request("GET", _sub_path(args.id, "/deliveries"), params=params), "deliveries")
    receipts = _without_secrets(receipts)
    return ctx.show(receipts, lambda: _print_rows(ctx, receipts, DELIVERY_COLUMNS, "no deliveries", {"error": 60}))


async def cmd_sub_remove(args: argparse.Namespace, ctx: Context) -> int:
    await ctx.request("DELETE", _sub_path(args.id))
    return ctx.show({"id": args.id, "removed": True}, lambda: ctx.out(f"removed {args.id}"))


# ---- dead letters ---------------------------------------------------------------------------------------------

async def cmd_dead_list(args: argparse.Namespace, ctx: Context) -> int:
    params = {"subscription_id": args.subscription} if args.subscription else None
    parked = _without_secrets(_as_list(await ctx.request("GET", f"{API}/dead-letters", params=params),
                                       "dead-letters"))
    return ctx.show(parked, lambda: _print_rows(ctx, [_dead_row(d) for d in parked], DEAD_COLUMNS, "no dead letters",
                                                {"last_error": 60}))


async def cmd_dead_redrive(args: argparse.Namespace, ctx: Context) -> int:
    body = {"subscription_id": args.subscription} if args.subscription else {}
    answer = _without_secrets(await ctx.request("POST", f"{API}/dead-letters/redrive", body=body))
    if ctx.json:
        ctx.emit_json(answer)
    else:
        n = answer.get("redriven") if isinstance(answer, dict) else answer
        ctx.out(f"redriven: {_cell(n)}")
    return 0


# ---- replay ---------------------------------------------------------------------------------------------------

def _parse_iso(value: str) -> datetime:
    t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError("needs a UTC offset ('Z' or '+08:00')")
    return t.astimezone(UTC)


def iso_time(value: str) -> str:
    """argparse type: an ISO-8601 time with an offset, normalised to UTC 'Z' form."""
    try:
        return iso_utc(_parse_iso(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time with offset: {value!r} ({exc})") from None


@dataclass
class ReplayStats:
    records: int = 0  # obs-topic messages read
    malformed: int = 0  # messages or observations that could not be read
    observations: int = 0  # observations in the time range
    unknown_station: int = 0
    stale: int = 0  # not newer than the station's previous report (duplicates)
    signals: int = 0
    events: int = 0

    def line(self) -> str:
        return (f"replay: {self.records} obs records read, {self.observations} observations in range "
                f"({self.stale} stale, {self.unknown_station} unknown station, {self.malformed} malformed), "
                f"{self.signals} station signals, {self.events} warning events (nothing published)")


def replay_setup(settings: Any = None) -> tuple[Any, Any]:
    """The rules and the station climatology ``ews replay`` grades with, found as the service finds them: the rules
    from EWS_RULES (``Settings.rules_path``; the packaged table when unset), the climatology from
    ``<EWS_DATA_DIR>/climatology`` (``ews climatology build``; empty when absent, so its products are skipped).
    Raises RulesError for a malformed rules table."""
    from warning.climatology import load_climatology
    from warning.rules import load_rules
    from warning.shared.config import Settings

    settings = settings if settings is not None else Settings.from_env()
    rules = load_rules(settings.rules_path)
    try:
        climatology = load_climatology(settings.data_dir / "climatology", missing_ok=True)
    except Exception as exc:  # as the service: a broken climatology skips its products, not the replay
        print(f"replay: cannot load the climatology from {settings.data_dir}: {exc}; continuing without it",
              file=sys.stderr)
        climatology = None
    return rules, climatology


def _in_range(observations: Iterable[dict[str, Any]], start: datetime, end: datetime, stats: ReplayStats
              ) -> list[tuple[datetime, str, dict[str, Any]]]:
    """The observations in [start, end] as (time, station, observation), per station in time order (arrival order
    on ties); malformed ones are counted and left out."""
    timed: list[tuple[datetime, str, dict[str, Any]]] = []
    for obs in observations:
        try:
            t = _parse_iso(obs["time"])
            sid = str(obs["station_id"])
        except (KeyError, TypeError, ValueError, AttributeError):
            stats.malformed += 1
            continue
        if start <= t <= end:
            timed.append((t, sid, {**obs, "station_id": sid, "time": iso_utc(t)}))
    timed.sort(key=lambda x: (x[0], x[1]))  # stable: per station in time order, arrival order on ties
    stats.observations += len(timed)
    return timed


class _ReplayGrade:
    """The grade stage in memory: each region's signals go through the live fold (``GradeStage._fold``, which
    catches up expiries and hold times before each signal), each county event becomes its prefecture's roll-up
    signal (``StationGrader.rollup``, folded after the county's events as the live stage sends them), and regions
    with a live warning or a pending change are ticked in data time."""

    def __init__(self, rules: Any, grader: Any) -> None:
        from warning.grade import GradeStage

        self.fold_region = GradeStage._fold
        self.rules, self.grader = rules, grader
        self.region_state: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []

    def fold(self, sig: dict[str, Any]) -> None:
        key = f"{sig['region_code']}:{sig['hazard']}"
        rule = self.rules.get(sig["hazard"])
        if rule is None:
            return
        state = self.region_state.get(key)
        if sig.get("kind") == "tick" and state and "seen" in state:
            # Live, a tick from the global clock is held back to the region's latest report plus the wall time since
            # ("seen"), so a fast replay's clock cannot outrun reports still in flight. Here every report before the
            # tick has been folded already and data time is the only clock: the wall-clock anchor is dropped.
            state = {k: v for k, v in state.items() if k != "seen"}
        state, made = self.fold_region(state, [cast("Signal", sig)], rule)
        self.region_state[key] = state
        rollups = []
        for made_event, at, accepted_at in made:
            event: dict[str, Any] = {**made_event, "sent": at}  # sent at the data time it was made at: reproducible
            self.events.append(event)
            rollup = self.grader.rollup(event, at, accepted_at)  # a county's event -> its prefecture's roll-up
            if rollup is not None:
                rollups.append(rollup)
        for rollup in rollups:
            self.fold(rollup)

    def tick(self, at: datetime) -> None:
        for key, state in list(self.region_state.items()):
            if state and (state.get("warning") or state.get("pending")):
                code, hazard = key.rsplit(":", 1)
                self.fold({"kind": "tick", "region_code": code, "hazard": hazard, "time": iso_utc(at)})


def replay_events(observations: Iterable[dict[str, Any]], start: datetime, end: datetime, *,
                  hazards: Iterable[str] | None = None, tick_s: float = 3600.0, grader: Any = None,
                  rules: Any = None, climatology: Any = None, stats: ReplayStats | None = None) -> list[dict[str, Any]]:
    """The WarningEvents the pipeline would have issued for ``observations`` in [start, end], in memory.

    Observations are graded per station in time order (StationGrader, with the station climatology), their signals
    folded into each region's lifecycle with the grade stage's own fold and the prefecture roll-ups
    (:class:`_ReplayGrade`); regions with a live warning or a pending change are ticked every ``tick_s`` of data time
    and at ``end``, so expiries, downgrades and cancels after the hold times appear as they would have (to the tick's
    resolution). Events are sent at the data time they were made at. Without ``rules`` (and ``grader``), the rules
    and climatology are the service's (:func:`replay_setup`: EWS_RULES, <EWS_DATA_DIR>/climatology).
    """
    from warning.pipeline import StationGrader
    from warning.shared.regions import RegionTree, StationRegistry

    if rules is None:
        rules, found = replay_setup()
        climatology = climatology if climatology is not None else found
    grader = grader or StationGrader(rules, StationRegistry.load(), RegionTree.load(), climatology)
    stats = stats if stats is not None else ReplayStats()
    wanted = set(hazards) if hazards else None
    regions = _ReplayGrade(rules, grader)
    step = timedelta(seconds=tick_s)
    next_tick = datetime.fromtimestamp((start.timestamp() // tick_s + 1) * tick_s, UTC)

    def tick_until(t: datetime, inclusive: bool) -> None:
        nonlocal next_tick
        while next_tick < t or (inclusive and next_tick == t):
            regions.tick(next_tick)
            next_tick += step

    station_state: dict[str, Any] = {}
    for t, sid, obs in _in_range(observations, start, end, stats):
        tick_until(t, inclusive=False)
        try:
            new, signals = grader.observe(station_state.get(sid), obs)
        except KeyError:
            stats.unknown_station += 1
            continue
        except (TypeError, ValueError):
            stats.malformed += 1
            continue
        if new is None:
            stats.stale += 1
            continue
        station_state[sid] = new
        for sig in signals:
            if wanted is None or sig["hazard"] in wanted:
                stats.signals += 1
                regions.fold(sig)
    tick_until(end, inclusive=True)
    if next_tick - step != end:
        regions.tick(end)
    stats.events += len(regions.events)
    return regions.events


async def read_obs_topic(bootstrap: str, *, topic: str = "obs", idle_s: float = 2.0,
                         stats: ReplayStats | None = None, status: str = "actual") -> list[dict[str, Any]]:
    """Every observation of batches of ``status`` in ``topic``, read outside any consumer group from the beginning
    of each partition until nothing new arrived for ``idle_s`` (end offsets are not trusted: tansu reports them
    wrong). Nothing is committed or published."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError
    from aiokafka.structs import TopicPartition

    from ingest.columns import BatchError, batch_rows

    stats = stats if stats is not None else ReplayStats()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100, request_timeout_ms=15000,
                                client_id="ews-replay")
    loop = asyncio.get_running_loop()
    out: list[dict[str, Any]] = []
    try:
        try:
            await consumer.start()
        except (KafkaError, OSError) as exc:
            raise UsageError(f"cannot reach Kafka at {bootstrap}: {exc}") from None
        parts = consumer.partitions_for_topic(topic)
        deadline = loop.time() + 10.0
        while not parts and loop.time() < deadline:
            await asyncio.sleep(0.5)
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise UsageError(f"no topic {topic!r} on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started = last = loop.time()
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            now = loop.time()
            got = False
            for records in batches.values():
                for rec in records:
                    got = True
                    stats.records += 1
                    try:
                        msg = orjson.loads(rec.value) if rec.value is not None else None
                        batch = batch_rows(msg)
                    except (orjson.JSONDecodeError, BatchError):  # either batch form (ingest.columns)
                        stats.malformed += 1
                        continue
                    if status_of(msg) != status:  # a drill's reports are not the season's, nor the reverse
                        continue
                    out.extend(o for o in batch if isinstance(o, dict))
            if got:
                last = now
                continue
            # idle counts once every partition has answered a fetch (or after 10 s, whichever first)
            answered = all(consumer.highwater(tp) is not None for tp in tps) or now - started > 10.0
            if answered and now - last >= idle_s:
                break
            if not answered:
                last = now
    except KafkaError as exc:
        raise UsageError(f"Kafka error while reading {topic!r} from {bootstrap}: {exc}") from None
    finally:
        await consumer.stop()
    return out


async def cmd_replay(args: argparse.Namespace, ctx: Context) -> int:
    try:  # --bootstrap, KAFKA_BOOTSTRAP, else the broker of the service running on this data dir
        bootstrap = running.find_bootstrap(args.bootstrap)
    except running.NoRunningService as exc:
        raise UsageError(str(exc)) from None
    start = _parse_iso(args.start)
    end = _parse_iso(args.end) if args.end else datetime.now(UTC).replace(microsecond=0)
    if end < start:
        raise UsageError(f"--to {iso_utc(end)} is before --from {iso_utc(start)}")
    from warning.rules import RulesError

    try:  # the rules and climatology the service runs with (EWS_RULES, EWS_DATA_DIR)
        rules, climatology = replay_setup()
    except (RulesError, OSError) as exc:
        raise UsageError(f"cannot use the warning rules: {exc}") from None
    unknown = [h for h in args.hazard or [] if h not in rules]
    if unknown:
        raise UsageError(f"--hazard: unknown hazard {unknown[0]!r}; known: {', '.join(sorted(rules))}")
    if args.region:
        from warning.shared.regions import RegionTree

        tree = RegionTree.load()
        if not tree.is_known(args.region):
            raise UsageError(f"--region: unknown region code {args.region[:40]!r}; "
                             f"{tree.valid_codes_hint(args.region)}")
    stats = ReplayStats()
    observations = await read_obs_topic(bootstrap, idle_s=args.idle, stats=stats, status=args.status)
    events = replay_events(observations, start, end, hazards=args.hazard, rules=rules, climatology=climatology,
                           stats=stats)
    if args.region:
        events = [e for e in events if tree.covers(args.region, e["region_code"])
                  or tree.covers(e["region_code"], args.region)]
    if args.level:
        minimum = LEVELS.index(args.level)
        events = [e for e in events if e.get("level") in LEVELS and LEVELS.index(e["level"]) >= minimum]
    ctx.err(stats.line())
    return ctx.show(events, lambda: _print_warnings(ctx, events, "no warning events in this range"))


# ---- parsers --------------------------------------------------------------------------------------------------

def _api_options(url_flag: bool = True) -> argparse.ArgumentParser:
    """--url (also --api-url; only --api-url where --url names a webhook), --token, --timeout, --json."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("API")
    flags = ("--url", "--api-url") if url_flag else ("--api-url",)
    g.add_argument(*flags, dest="api_url", default=None, metavar="URL",
                   help=f"API base URL (env EWS_URL, else the service running on <EWS_DATA_DIR or ./data>, "
                        f"else {DEFAULT_URL})")
    g.add_argument("--token", default=None,
                   help="operator token (env EWS_TOKEN, else <EWS_DATA_DIR or ./data>/token; prefer the env: "
                        "arguments are visible in the process list)")
    g.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout in seconds (default 30)")
    g.add_argument("--json", action="store_true",
                   help="JSON output for scripts (times in UTC, as the API gives them)")
    g.add_argument("--utc", action="store_true", help="tables show times in UTC (default: Beijing time, BJT = UTC+8)")
    return p


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"a positive integer, not {value!r}")
    return n


def _level(value: str) -> str:
    v = value.strip().lower()
    if v not in LEVELS:
        raise argparse.ArgumentTypeError(f"level: one of {', '.join(LEVELS)}")
    return v


def add_operator_parsers(subparsers: Any) -> None:
    """Add ``warnings``, ``subscribers``, ``dead-letters`` and ``replay`` to the ``ews`` sub-command parsers."""
    api = _api_options()

    p = subparsers.add_parser("warnings", parents=[api], help="list warnings, or show one warning's history",
                              description="Warnings known to the service (latest event per region and hazard).")
    p.add_argument("warning_id", nargs="?", help="show this warning's history and deliveries instead")
    p.add_argument("--active", action="store_true", help="only warnings in force now")
    p.add_argument("--hazard", help="e.g. heat, rainstorm, gale")
    p.add_argument("--region", metavar="CODE", help="GB/T 2260 code: a county, a prefecture or 620000")
    p.add_argument("--level", type=_level, help="at least this level (blue, yellow, orange, red)")
    p.add_argument("--since", type=iso_time, metavar="ISO", help="sent at or after this time")
    p.add_argument("--until", type=iso_time, metavar="ISO", help="sent at or before this time")
    p.add_argument("--status", metavar="STATUS",
                   help="actual (default), exercise, test, all, or a comma-separated list")
    p.add_argument("--msg-type", dest="msg_type", metavar="TYPE", help="alert, update, cancel (comma-separated)")
    p.add_argument("--severity", help="CAP severity: Extreme, Severe, Moderate, Minor (comma-separated)")
    p.add_argument("--urgency", help="CAP urgency: Immediate, Expected, Future (comma-separated)")
    p.add_argument("--certainty", help="CAP certainty: Observed, Likely, Possible (comma-separated)")
    p.add_argument("--point", metavar="LAT,LON", help="warnings of the county containing this point")
    p.add_argument("--region-level", dest="region_level", choices=("county", "prefecture"),
                   help="county warnings or prefecture roll-ups only")
    p.add_argument("--limit", type=_positive_int, default=PAGE_LIMIT,
                   help=f"at most this many, newest first (default {PAGE_LIMIT}; pages of {PAGE_LIMIT} are followed)")
    p.set_defaults(operator=cmd_warnings)

    p = subparsers.add_parser("subscribers", help="department subscriptions (webhooks)",
                              description="Manage the departments' webhook subscriptions.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", parents=[api], help="all subscriptions")
    a.set_defaults(operator=cmd_sub_list)
    a = actions.add_parser("add", parents=[_api_options(url_flag=False)],
                           help="create a subscription (prints its secret once)")
    a.add_argument("--name", required=True)
    a.add_argument("--department", default="other", choices=DEPARTMENTS)
    a.add_argument("--url", dest="hook_url", required=True, metavar="WEBHOOK_URL", help="the receiver's URL")
    a.add_argument("--region", action="append", required=True, metavar="CODE",
                   help="region code (repeatable; 620000 = the whole province)")
    a.add_argument("--hazard", action="append", help="hazard (repeatable; default every hazard)")
    a.add_argument("--min-level", type=_level, help="lowest level delivered (default blue)")
    a.add_argument("--format", choices=FORMATS, help="json (default) or cap")
    a.add_argument("--basis", action="append", choices=("observed", "forecast"), help="(repeatable; default both)")
    a.add_argument("--msg-type", action="append", choices=("alert", "update", "cancel"),
                   help="(repeatable; default all)")
    a.add_argument("--fallback", action="store_true",
                   help="a fallback (a duty office): only the red and orange warnings of its regions that a "
                   "receiver did not acknowledge in time (rules.toml [acknowledgement])")
    a.set_defaults(operator=cmd_sub_add)
    for name, handler, text in (("pause", cmd_sub_pause, "hold deliveries (kept in alerts.dead as 'subscription "
                                                         "paused'; sent in order on resume)"),
                                ("resume", cmd_sub_resume, "deliver again: the held deliveries first, then the active "
                                                           "warnings it has not had (backfill)"),
                                ("remove", cmd_sub_remove, "delete the subscription")):
        a = actions.add_parser(name, parents=[api], help=text)
        a.add_argument("id", help="subscription id or a unique prefix of it")
        a.set_defaults(operator=handler)
    a = actions.add_parser("rotate", parents=[api], help="new signing secret (prints it once)")
    a.add_argument("id", help="subscription id")
    a.add_argument("--grace-s", type=int, default=None, metavar="SECONDS",
                   help="how long the old secret keeps signing too (server default: a day)")
    a.set_defaults(operator=cmd_sub_rotate)
    a = actions.add_parser("deliveries", parents=[api], help="recent delivery receipts")
    a.add_argument("id", help="subscription id")
    a.add_argument("--limit", type=int, default=None, metavar="N")
    a.set_defaults(operator=cmd_sub_deliveries)

    p = subparsers.add_parser("dead-letters", help="parked deliveries", description="Parked webhook deliveries.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", parents=[api], help="parked deliveries")
    a.add_argument("--subscription", metavar="ID", help="only this subscription's")
    a.set_defaults(operator=cmd_dead_list)
    a = actions.add_parser("redrive", parents=[api], help="send parked deliveries again")
    a.add_argument("--subscription", metavar="ID", help="only this subscription's (default: all)")
    a.set_defaults(operator=cmd_dead_redrive)

    p = subparsers.add_parser(
        "replay", help="what-if: re-grade a time range of obs from Kafka, publishing nothing",
        description="Read the obs topic from the beginning outside any consumer group, keep the observations "
                    "in [--from, --to], grade them in memory as the service does (the rules of EWS_RULES, else the "
                    "packaged table; the station climatology in <EWS_DATA_DIR>/climatology; the grade stage's "
                    "fold and prefecture roll-ups) and print the warning events that would have been issued. "
                    "Nothing is published or committed.")
    p.add_argument("--from", dest="start", required=True, type=iso_time, metavar="ISO")
    p.add_argument("--to", dest="end", type=iso_time, metavar="ISO", help="default: now")
    p.add_argument("--bootstrap", metavar="HOST:PORT",
                   help="Kafka bootstrap (env KAFKA_BOOTSTRAP, else the running service's, from its data dir)")
    p.add_argument("--hazard", action="append", help="only this hazard (repeatable)")
    p.add_argument("--region", metavar="CODE", help="only events for regions under (or over) this code")
    p.add_argument("--level", type=_level, help="only events at least this level")
    p.add_argument("--idle", type=float, default=2.0, metavar="S",
                   help="stop reading after S seconds without new records (default 2)")
    p.add_argument("--status", default="actual", choices=("actual", "exercise", "test"),
                   help="re-grade the batches sent with this status (default actual: the live record)")
    p.add_argument("--json", action="store_true", help="JSON output for scripts (times in UTC)")
    p.add_argument("--utc", action="store_true", help="the table shows times in UTC (default: Beijing time, BJT)")
    p.set_defaults(operator=cmd_replay)


# ---- entry ----------------------------------------------------------------------------------------------------

async def run_operator_async(args: argparse.Namespace) -> int:
    """Run a parsed operator command (for callers already inside an event loop)."""
    ctx = Context.from_args(args)
    handler: Handler | None = getattr(args, "operator", None)
    if handler is None:
        ctx.err("error: not an operator command")
        return 2
    try:
        return await handler(args, ctx)
    except ApiError as exc:
        hint = ""
        if exc.status == 401:
            hint = " (set EWS_TOKEN or --token, or run where <EWS_DATA_DIR>/token is readable)"
        ctx.err(f"error: {exc}{hint}")
        return 1
    except UsageError as exc:
        ctx.err(f"error: {exc}")
        return 2


def run_operator(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run_operator_async(args))
    except KeyboardInterrupt:
        return 130
