"""``ews drafts`` and ``ews silences``: the bureau's desk from the command line, clients of the API
(``warning.web.desk``) in the style of ``warning.operator_cli`` (tables in Beijing time, ``--utc`` for UTC, or
JSON with ``--json``, in UTC)."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from warning.operator_cli import API, ApiError, Context, _api_options, _as_list, _print_rows, iso_time, show_time
from warning.shared.times import iso_utc

DRAFT_COLUMNS = [("made", "MADE"), ("state", "STATE"), ("esc", "ESCALATED"), ("msg_type", "TYPE"),
                 ("level", "LEVEL"), ("hazard", "HAZARD"), ("region_code", "REGION"), ("region_name", "NAME"),
                 ("headline", "HEADLINE"), ("expires", "EXPIRES"), ("decided", "DECIDED"), ("id", "DRAFT ID")]
SILENCE_COLUMNS = [("id", "ID"), ("state", "STATE"), ("starts", "STARTS"), ("ends", "ENDS"), ("scope", "SILENCES"),
                   ("author", "AUTHOR"), ("reason", "REASON")]
EDIT_FLAGS = ("headline_zh", "headline_en", "description_zh", "description_en", "instruction_zh", "instruction_en")


def _draft_row(d: dict[str, Any], utc: bool = False) -> dict[str, Any]:
    event: dict[str, Any] = d.get("event") if isinstance(d.get("event"), dict) else {}  # type: ignore[assignment]
    decision: dict[str, Any] = d.get("decision") if isinstance(d.get("decision"), dict) else {}  # type: ignore[assignment]
    made = d.get("made_at")
    return {**d, "made": iso_utc(made) if isinstance(made, int | float) else made,
            "esc": "yes" if d.get("escalated") else "", "headline": event.get("headline_en"),
            "expires": event.get("expires"),
            "decided": f"{decision.get('by')} {show_time(str(decision.get('at')), utc)}" if decision else ""}


def _show_drafts(ctx: Context, drafts: list[dict[str, Any]], empty: str = "no drafts waiting") -> None:
    _print_rows(ctx, [_draft_row(d, ctx.utc) for d in drafts], DRAFT_COLUMNS, empty, {"headline": 60})


async def cmd_drafts_list(args: argparse.Namespace, ctx: Context) -> int:
    drafts = _as_list(await ctx.request("GET", f"{API}/drafts", params={"state": args.state}), "drafts")
    empty = "no drafts waiting" if args.state == "pending" else "no drafts"
    return ctx.show(drafts, lambda: _show_drafts(ctx, drafts, empty))


async def _decide(ctx: Context, draft_id: str, action: str, body: dict[str, Any]) -> int:
    answer = await ctx.request("POST", f"{API}/drafts/{quote(draft_id, safe='')}/{action}", body=body)
    if not isinstance(answer, dict):
        raise ApiError(200, f"unexpected answer to {action}")
    if ctx.json:
        ctx.emit_json(answer)
    else:
        _show_drafts(ctx, [answer])
        if answer.get("state") == "pending":
            ctx.err("the decision is on its way to the grade agent; `ews drafts list --state all` shows it")
    return 0


async def cmd_drafts_approve(args: argparse.Namespace, ctx: Context) -> int:
    body = {k: getattr(args, k) for k in EDIT_FLAGS if getattr(args, k) is not None}
    if args.expires:
        body["expires"] = args.expires
    return await _decide(ctx, args.id, "approve", body)


async def cmd_drafts_reject(args: argparse.Namespace, ctx: Context) -> int:
    return await _decide(ctx, args.id, "reject", {"reason": args.reason})


def _silence_row(s: dict[str, Any]) -> dict[str, Any]:
    scope = (f"subscription {s['subscription_id']}" if s.get("subscription_id")
             else f"{','.join(s.get('hazards') or [])} in {','.join(s.get('regions') or [])}")
    return {**s, "scope": scope}


def _show_silences(ctx: Context, silences: list[dict[str, Any]]) -> None:
    _print_rows(ctx, [_silence_row(s) for s in silences], SILENCE_COLUMNS, "no silences", {"reason": 50})


async def cmd_silences_list(args: argparse.Namespace, ctx: Context) -> int:
    params = {"ended": "true"} if args.ended else None
    silences = _as_list(await ctx.request("GET", f"{API}/silences", params=params), "silences")
    return ctx.show(silences, lambda: _show_silences(ctx, silences))


async def cmd_silences_add(args: argparse.Namespace, ctx: Context) -> int:
    body: dict[str, Any] = {"reason": args.reason, "ends": args.ends}
    if args.subscription:
        body["subscription_id"] = args.subscription
    else:
        body["regions"], body["hazards"] = args.region or [], args.hazard or []
    if args.starts:
        body["starts"] = args.starts
    created = await ctx.request("POST", f"{API}/silences", body=body)
    if ctx.json:
        ctx.emit_json(created)
    else:
        _show_silences(ctx, [created])
        ctx.err("red warnings and cancels are never silenced; what it holds goes out when it ends")
    return 0


async def cmd_silences_remove(args: argparse.Namespace, ctx: Context) -> int:
    answer = await ctx.request("DELETE", f"{API}/silences/{quote(args.id, safe='')}")
    if ctx.json:
        ctx.emit_json(answer)
    else:
        _show_silences(ctx, [answer])
        ctx.out(f"held deliveries sent: {answer.get('held_sent', 0)}")
    return 0


def add_desk_parsers(subparsers: Any) -> None:
    """``ews drafts list|approve|reject`` and ``ews silences list|add|remove``."""
    api = _api_options()
    p = subparsers.add_parser("drafts", help="the review queue: warnings waiting for a forecaster's decision",
                              description="Warnings at levels under review (rules.toml issue = \"review\") are "
                                          "drafts: nothing is sent until approved (optionally edited) or rejected.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", parents=[api], help="drafts waiting (or --state)")
    a.add_argument("--state", default="pending", choices=("pending", "approved", "rejected", "superseded",
                                                          "withdrawn", "issued_unreviewed", "all"))
    a.set_defaults(operator=cmd_drafts_list)
    a = actions.add_parser("approve", parents=[api], help="issue a draft, optionally edited")
    a.add_argument("id", help="draft id or a unique prefix of it")
    for flag in EDIT_FLAGS:
        a.add_argument("--" + flag.replace("_", "-"), dest=flag, metavar="TEXT", help=f"edited {flag}")
    a.add_argument("--expires", type=iso_time, metavar="ISO", help="edited expiry (UTC or with an offset)")
    a.set_defaults(operator=cmd_drafts_approve)
    a = actions.add_parser("reject", parents=[api], help="send nothing; asked again only if the level rises")
    a.add_argument("id", help="draft id or a unique prefix of it")
    a.add_argument("--reason", required=True)
    a.set_defaults(operator=cmd_drafts_reject)

    p = subparsers.add_parser("silences", help="hold deliveries for a while (never red warnings or cancels)",
                              description="Time-bounded silences per subscription or per regions + hazards.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", parents=[api], help="silences in force or to come")
    a.add_argument("--ended", action="store_true", help="also those ended in the last 7 days")
    a.set_defaults(operator=cmd_silences_list)
    a = actions.add_parser("add", parents=[api], help="silence a subscription, or hazards in regions")
    a.add_argument("--subscription", metavar="ID", help="subscription id or a unique prefix")
    a.add_argument("--region", action="append", metavar="CODE", help="region code (repeatable)")
    a.add_argument("--hazard", action="append", help="hazard (repeatable)")
    a.add_argument("--starts", type=iso_time, metavar="ISO", help="default now")
    a.add_argument("--ends", type=iso_time, required=True, metavar="ISO")
    a.add_argument("--reason", required=True)
    a.set_defaults(operator=cmd_silences_add)
    a = actions.add_parser("remove", parents=[api], help="end a silence now (what it held is sent)")
    a.add_argument("id", help="silence id or a unique prefix")
    a.set_defaults(operator=cmd_silences_remove)
