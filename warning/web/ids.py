"""Ids as operators type them: the whole id, or a unique prefix of it (the short id the dashboard and the CLI
show). Unknown ids answer 404 and ambiguous prefixes 400, each with the reason."""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from aiohttp import web

SHOWN_CANDIDATES = 5


def _reply(error: type[web.HTTPException], reason: str) -> web.HTTPException:
    return error(body=orjson.dumps({"error": reason}), content_type="application/json")


def find_id(given: str, ids: Iterable[str]) -> list[str]:
    """The ids ``given`` names: itself when it is one, else every id it is a prefix of."""
    candidates = list(ids)
    if given in candidates:
        return [given]
    return [i for i in candidates if given and i.startswith(given)] if given else []


def resolve_id(given: str, ids: Iterable[str], what: str) -> str:
    """The one id ``given`` names; raises the HTTP answer (404 unknown, 400 ambiguous) otherwise."""
    found = find_id(given, ids)
    if not found:
        raise _reply(web.HTTPNotFound, f"no such {what}: no id or id prefix {given!r}")
    if len(found) > 1:
        shown = ", ".join(sorted(found)[:SHOWN_CANDIDATES]) + (", ..." if len(found) > SHOWN_CANDIDATES else "")
        raise _reply(web.HTTPBadRequest,
                     f"{what} id prefix {given!r} is ambiguous: it matches {len(found)} ({shown}); give more of it")
    return found[0]
