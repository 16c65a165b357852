"""HTTP validators of the public reads (warning.web.caching): strong ETags, Last-Modified, 304s."""

import time
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import make_mocked_request

from warning.web import caching
from warning.web.caching import PUBLIC_SHORT, cached_response, http_date, not_modified, strong_etag


def answer(headers: dict[str, str], last_modified: float | None, body: bytes = b"[]", method: str = "GET") -> int:
    request = make_mocked_request(method, "/api/v1/warnings", headers=headers)
    return cached_response(request, body, content_type="application/json", cache_control=PUBLIC_SHORT,
                           last_modified=last_modified).status


def test_if_none_match_wins_over_if_modified_since() -> None:
    etag, old = strong_etag(b"[]"), time.time() - 100
    assert answer({"If-None-Match": etag}, old) == 304
    assert answer({"If-None-Match": f'"x", W/{etag}'}, old) == 304
    assert answer({"If-None-Match": "*"}, old) == 304
    assert answer({"If-None-Match": '"x"', "If-Modified-Since": http_date(time.time())}, old) == 200
    assert answer({"If-Modified-Since": http_date(old)}, old) == 304
    assert answer({"If-Modified-Since": http_date(old - 10)}, old) == 200
    assert answer({"If-Modified-Since": "yesterday"}, old) == 200  # unreadable: ignored


def test_no_last_modified_in_the_second_of_the_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second change within the same second would hide behind If-Modified-Since; the ETag still works."""
    request = make_mocked_request("GET", "/", headers={})
    now = float(int(time.time())) + 0.5
    # the clock the module reads stays inside now's second (a loaded machine may cross it between two calls)
    monkeypatch.setattr(caching, "time", SimpleNamespace(time=lambda: now))
    fresh = cached_response(request, b"x", content_type="text/plain", cache_control=PUBLIC_SHORT, last_modified=now)
    assert "Last-Modified" not in fresh.headers and fresh.headers["ETag"] == strong_etag(b"x")
    assert answer({"If-Modified-Since": http_date(now + 5)}, now) == 200
    old = cached_response(request, b"x", content_type="text/plain", cache_control=PUBLIC_SHORT,
                          last_modified=now - 5)
    assert old.headers["Last-Modified"] == http_date(now - 5)


def test_only_reads_are_answered_304() -> None:
    request = make_mocked_request("POST", "/", headers={"If-None-Match": "*"})
    assert not not_modified(request, strong_etag(b""), None)
