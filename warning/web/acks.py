"""``POST /api/v1/acks/{token}``: a receiving department acknowledges a warning (the ``ack_url`` of every JSON
webhook). The signed token is the only credential: no operator token, no body. 204 whether this request recorded
the acknowledgement or an earlier one did; 404 for a token this service did not sign (never a 5xx on junk)."""

from __future__ import annotations

from aiohttp import web

from alerts.acks import ACK_PATH, parse_ack_token
from warning.web.auth import SVC
from warning.web.auth import error_response as _error


async def post_ack(request: web.Request) -> web.Response:
    svc = request.app[SVC]
    claim = parse_ack_token(svc.sealer, request.match_info["token"])
    if claim is None:
        return _error(404, "not an acknowledgement link of this service (use the ack_url of a webhook as given)")
    sub = svc.subscriptions.get(claim.subscription_id)
    await svc.acks.acknowledge(claim, sub.name if sub is not None else "")
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


def add_ack_routes(app: web.Application) -> None:
    app.router.add_post(ACK_PATH + "{token}", post_ack)
