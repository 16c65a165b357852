"""HTTP caching of the public reads (RFC 9110 §8.8, §13; RFC 9111): a strong ``ETag`` (a hash of the body's
bytes), ``Last-Modified`` (when what the answer is made of last changed on this worker), ``Cache-Control``, and
``304 Not Modified`` for ``If-None-Match`` (which wins when both are sent) or ``If-Modified-Since``.

``Last-Modified`` has whole seconds. An answer given in the same second as its resource's last change carries no
``Last-Modified``: a second change within that second would otherwise be hidden from a client that revalidates
with ``If-Modified-Since`` (its ETag still revalidates exactly)."""

from __future__ import annotations

import hashlib
import math
import time
from email.utils import formatdate, parsedate_to_datetime

from aiohttp import web

# Cache-Control of the answers (our choices: consumers poll; a CAP message of an event id never changes).
PUBLIC_SHORT = "public, max-age=30"  # warnings lists, one warning without the token, a warning's latest CAP
PUBLIC_FEED = "public, max-age=60"  # the ATOM feed
PUBLIC_IMMUTABLE_EVENT = "public, max-age=86400"  # the CAP message of one event id
PRIVATE = "private, no-store"  # anything answered with the token (receivers' detail, subscriptions)


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def http_date(epoch_s: float) -> str:
    return formatdate(math.floor(epoch_s), usegmt=True)


def _etag_matches(header: str, etag: str) -> bool:
    """``If-None-Match`` uses the weak comparison (RFC 9110 §13.1.2): ``W/"x"`` matches ``"x"``."""
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


def not_modified(request: web.Request, etag: str, last_modified: float | None) -> bool:
    """Whether a GET (or HEAD) may be answered 304: its ``If-None-Match`` names ``etag``, or, without an
    ``If-None-Match``, its ``If-Modified-Since`` is not before ``last_modified``."""
    if request.method not in ("GET", "HEAD"):
        return False
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        return _etag_matches(inm, etag)
    ims = request.headers.get("If-Modified-Since")
    if not ims or last_modified is None:
        return False
    try:
        since = parsedate_to_datetime(ims).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return False  # an unreadable date is ignored (RFC 9110 §13.1.3)
    return math.floor(last_modified) <= since


def cached_response(request: web.Request, body: bytes, *, content_type: str, cache_control: str,
                    last_modified: float | None, charset: str | None = None,
                    vary: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    """``body`` with its validators and ``Cache-Control``, or a 304 with the same headers and no body."""
    etag = strong_etag(body)
    out = {**(headers or {}), "ETag": etag, "Cache-Control": cache_control}
    if last_modified is not None and math.floor(last_modified) < math.floor(time.time()):
        out["Last-Modified"] = http_date(last_modified)
    if vary:
        out["Vary"] = vary
    if not_modified(request, etag, last_modified if "Last-Modified" in out else None):
        return web.Response(status=304, headers=out)
    return web.Response(body=body, headers=out, content_type=content_type, charset=charset)
