"""Issue 17 ("no one in, no one stalls the rest"): each finding replayed against a running `ews run`, with a
verdict per finding (held or not). Used by ``tests/integration/test_hostile_inputs.py`` (every one must hold) and
by ``python -m chaos hostile`` (which prints the ``tried / held`` tally).

The service must run with ``ENV`` (small caps so the checks are cheap: 20 SSE clients, 2 s header and body
timeouts, /metrics behind the token) and loopback webhooks allowed (the launcher's default).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import secrets
import subprocess
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from alerts.delivery import ERROR_CLASSES
from tests.support import FAST, hot, one_station_per_county, until
from warning import launch
from warning.launch import EwsProcess

ENV = {**FAST, "EWS_SSE_MAX_CLIENTS": "20", "EWS_HTTP_HEADER_TIMEOUT": "2", "EWS_HTTP_BODY_TIMEOUT": "2",
       "EWS_METRICS_TOKEN_REQUIRED": "1"}
SSE_MAX = 20
HEADER_TIMEOUT_S = BODY_TIMEOUT_S = 2.0
MIB = 1 << 20
BIG_REPLY = 200 * MIB
_HTTP_CLASS = re.compile(r"^HTTP [1-5][0-9]{2}$")


@dataclass
class Verdict:
    finding: str
    held: bool
    note: str = ""


@dataclass
class Findings:
    """The verdicts so far; ``tally`` is the ``tried / held`` line."""

    verdicts: list[Verdict] = field(default_factory=list)

    async def check(self, finding: str, probe: Callable[[], Awaitable[str]]) -> None:
        """Run ``probe`` (it raises AssertionError when the finding is not held; returns a note when it is)."""
        try:
            self.verdicts.append(Verdict(finding, True, await probe()))
        except AssertionError as exc:
            self.verdicts.append(Verdict(finding, False, str(exc)[:600]))
        except Exception as exc:  # a probe that crashed tells nothing: not held
            self.verdicts.append(Verdict(finding, False, f"probe failed: {type(exc).__name__}: {exc}"[:600]))

    @property
    def tally(self) -> str:
        return f"issue 17 findings tried {len(self.verdicts)} / held {sum(v.held for v in self.verdicts)}"

    def report(self) -> str:
        lines = [self.tally]
        lines += [f"  {'held' if v.held else 'NOT HELD'}: {v.finding}{' (' + v.note + ')' if v.note else ''}"
                  for v in self.verdicts]
        return "\n".join(lines)


# ---- receivers that misbehave ---------------------------------------------------------------------------------

class Misbehaving:
    """Three webhook endpoints: one answering garbage instead of HTTP, one refusing connections (a closed port) and
    one answering 200 with a 200 MiB body (counting what it could write)."""

    def __init__(self) -> None:
        self.secret = "tok" + secrets.token_hex(16)  # the access_token in every URL: must never be shown publicly
        self.big_written = 0
        self._garbage: asyncio.AbstractServer | None = None
        self._runner: web.AppRunner | None = None
        self.ports: dict[str, int] = {}

    async def start(self) -> Misbehaving:
        self._garbage = await asyncio.start_server(self._answer_garbage, "127.0.0.1", 0)
        self.ports["garbage"] = self._garbage.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._answer_big)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.ports["big"] = self._runner.addresses[0][1]
        closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # a port nobody listens on after
        self.ports["refused"] = closed.sockets[0].getsockname()[1]
        closed.close()
        await closed.wait_closed()
        return self

    def url(self, which: str) -> str:
        return f"http://127.0.0.1:{self.ports[which]}/hook?access_token={self.secret}"

    async def _answer_garbage(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read(65536)
            writer.write(b"SURPRISE this is not HTTP\r\n\r\n")
            await writer.drain()
        writer.close()

    async def _answer_big(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(status=200)
        resp.content_length = BIG_REPLY
        await resp.prepare(request)
        # 64 KiB at a time, aiohttp's write buffer: the first chunk is counted as soon as the reply has started;
        # with 1 MiB chunks the first write waited for the sender to read, and a sender that closes without
        # reading counted 0 bytes ("never answered"), once in a full make test
        chunk = b"\0" * (64 * 1024)
        with contextlib.suppress(ConnectionError, RuntimeError):
            while self.big_written < BIG_REPLY:
                await resp.write(chunk)
                self.big_written += len(chunk)
        return resp

    async def stop(self) -> None:
        if self._garbage is not None:
            self._garbage.close()
        if self._runner is not None:
            await self._runner.cleanup()


# ---- helpers --------------------------------------------------------------------------------------------------

async def _json(s: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with s.request(method, url, **kw) as r:
        raw = await r.read()
        try:
            return r.status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return r.status, raw.decode("utf-8", "replace")


async def _text(s: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, str]:
    async with s.get(url, **kw) as r:
        return r.status, await r.text()


async def _sse_snapshot(s: aiohttp.ClientSession, url: str) -> str:
    """The first ``snapshot`` event of the live feed, as text."""
    async with s.get(url + "/api/v1/events", timeout=aiohttp.ClientTimeout(total=10)) as r:
        assert r.status == 200, f"SSE answered {r.status}"
        buf = b""
        while b"event: snapshot" not in buf or not buf.rstrip(b"\n").endswith(b"}") or not buf.endswith(b"\n\n"):
            chunk = await r.content.readany()
            if not chunk:
                break
            buf += chunk
        return buf.decode("utf-8", "replace")


def _cli(ews: EwsProcess, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**ews.env, "EWS_URL": ews.url}
    return subprocess.run([sys.executable, "-m", "warning.cli", *argv], capture_output=True, text=True,
                          timeout=60, env=env, cwd=launch.ROOT)


@functools.lru_cache(maxsize=1)
def gzip_bomb(inflated: int = 1 << 30) -> bytes:
    """A gzip body of ~1 MiB that inflates to ``inflated`` bytes of zeros (1 GiB)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (4 * MIB)
    parts = [z.compress(zeros) for _ in range(inflated // len(zeros))]
    return b"".join(parts) + z.flush()


# ---- the checks -------------------------------------------------------------------------------------------------

async def run_all(ews: EwsProcess, workdir: Path) -> Findings:
    """Every finding of issue 17 against ``ews`` (started with ``ENV``); the throttle check runs last (it locks
    this address out of token checks for a minute)."""
    f = Findings()
    bad = await Misbehaving().start()
    try:
        async with aiohttp.ClientSession() as s:
            wid = await _warning_with_bad_receivers(s, ews, bad)
            await f.check("receipts reveal host:port, URL or exception text publicly (warning JSON, SSE, ATOM, "
                          "CAP, dashboard, logs)", lambda: _receipts_are_public_safe(s, ews, bad, wid))
            await f.check("a 200 MiB webhook response body is read whole", lambda: _big_reply_not_read(s, ews, bad))
            await f.check("gzip bodies stall the pipeline before authentication", lambda: _gzip_refused(s, ews))
            await f.check("349,524 items in one request", lambda: _items_capped(s, ews))
            await f.check("a subscription with 50,000 regions", lambda: _lists_capped(s, ews))
            await f.check("1,000 SSE clients accepted", lambda: _sse_capped(ews))
            await f.check("half-sent requests stay open (no header-read timeout)", lambda: _header_timeout(ews))
            await f.check("a body trickled forever (no body-read timeout)", lambda: _body_timeout(ews))
            await f.check("6to4 / NAT64 / Teredo addresses embedding 169.254.169.254 pass the SSRF guard",
                          lambda: _embedded_v4_refused(s, ews))
            await f.check("terminal escapes in names reach `ews subscribers list`", lambda: _escapes(s, ews))
            await f.check("the Host header is reflected into ATOM links", lambda: _host_not_reflected(s, ews))
            await f.check("/metrics open without the token", lambda: _metrics_need_token(s, ews))
            await f.check("the Server header shows versions", lambda: _server_header(s, ews))
            await f.check("named operator tokens (ews token add) work, stored hashed", lambda: _named_token(s, ews))
            await f.check("an empty or short token disables authentication", lambda: _short_tokens_refused(workdir))
            await f.check("failed token attempts are not throttled", lambda: _throttled(s, ews))
    finally:
        await bad.stop()
    return f


async def _warning_with_bad_receivers(s: aiohttp.ClientSession, ews: EwsProcess, bad: Misbehaving) -> str:
    """Three subscriptions (garbage, refused, 200 MiB reply) for the province, then a red heat warning; its id
    once every subscription has a receipt for it."""
    sub_ids = {}
    for which in ("garbage", "refused", "big"):
        status, body = await _json(s, "POST", ews.url + "/api/v1/subscriptions", headers=ews.headers(),
                                   json={"name": f"bad {which}", "department": "water", "url": bad.url(which),
                                         "regions": ["620000"], "hazards": ["heat"]})
        assert status == 201, body
        sub_ids[which] = body["id"]
    [sid] = one_station_per_county(1, skip=7)
    status, body = await _json(s, "POST", ews.url + "/api/v1/observations", headers=ews.headers(),
                               json=hot([sid], datetime.now(UTC) - timedelta(hours=1)))
    assert status == 202 and body["accepted"] == 1, body
    found: dict[str, Any] = {}

    async def receipts_for_all() -> bool:
        _, active = await _json(s, "GET", ews.url + "/api/v1/warnings?active=true")
        for e in active:
            if e.get("region_level") == "county":
                _, w = await _json(s, "GET", ews.url + f"/api/v1/warnings/{e['warning_id']}")
                found.update(w)
        return {r["subscription_id"] for r in found.get("deliveries", [])} >= set(sub_ids.values())

    deadline = time.monotonic() + 60
    while not await receipts_for_all():
        assert time.monotonic() < deadline, f"no receipts from all three receivers: {found}"
        await asyncio.sleep(0.5)
    return str(found["warning_id"])


def _leaks(text: str, bad: Misbehaving) -> list[str]:
    needles = [bad.secret, "access_token", *(f":{p}" for p in bad.ports.values()), "Cannot connect",
               "ClientResponseError", "Error:"]
    return [n for n in needles if n in text]


async def _receipts_are_public_safe(s: aiohttp.ClientSession, ews: EwsProcess, bad: Misbehaving, wid: str) -> str:
    views = {
        "warning JSON": (await _text(s, ews.url + f"/api/v1/warnings/{wid}"))[1],
        "warnings list": (await _text(s, ews.url + "/api/v1/warnings"))[1],
        "SSE snapshot": await _sse_snapshot(s, ews.url),
        "ATOM": (await _text(s, ews.url + "/api/v1/cap/feed.atom"))[1],
        "CAP": (await _text(s, ews.url + f"/api/v1/warnings/{wid}.cap"))[1],
        "dashboard page": (await _text(s, ews.url + "/"))[1],
        "log": ews.output(),
    }
    leaked = {view: _leaks(text, bad) for view, text in views.items()}
    leaked["log"] = [n for n in leaked["log"] if n in (bad.secret, "access_token")]  # the log may name hosts
    leaked = {k: v for k, v in leaked.items() if v}
    assert not leaked, f"receiver detail in public views: {leaked}"
    _, public = await _json(s, "GET", ews.url + f"/api/v1/warnings/{wid}")
    classes = {r["error"] for r in public["deliveries"] if r["error"]}
    assert all(c in ERROR_CLASSES or _HTTP_CLASS.match(c) for c in classes), classes
    assert {"malformed reply", "refused"} <= classes, classes
    status, private = await _text(s, ews.url + f"/api/v1/warnings/{wid}", headers=ews.headers())
    assert status == 200 and bad.secret not in private, "the token view shows the URL's query string"
    assert "Cannot connect" in private or "ClientConnectorError" in private, "the token view lost the detail"
    return f"public error classes {sorted(classes)}; detail only with the token, query redacted"


async def _big_reply_not_read(s: aiohttp.ClientSession, ews: EwsProcess, bad: Misbehaving) -> str:
    assert await until(lambda: bad.big_written > 0, 10), "the 200 MiB receiver never answered"
    await asyncio.sleep(1.0)
    assert bad.big_written < 32 * MIB, f"{bad.big_written / MIB:.0f} MiB of the reply were taken"
    _, subs = await _json(s, "GET", ews.url + "/api/v1/subscriptions", headers=ews.headers())
    big = next(x for x in subs if x["name"] == "bad big")
    _, receipts = await _json(s, "GET", ews.url + f"/api/v1/subscriptions/{big['id']}/deliveries",
                              headers=ews.headers())
    assert receipts and receipts[0]["result"] == "delivered", receipts
    return f"{bad.big_written / MIB:.0f} MiB written before the sender closed; delivered in " \
           f"{receipts[0]['latency_s']} s"


async def _healthz_ms(s: aiohttp.ClientSession, url: str) -> float:
    t0 = time.monotonic()
    async with s.get(url + "/healthz") as r:
        assert r.status == 200
    return (time.monotonic() - t0) * 1000


async def _gzip_refused(s: aiohttp.ClientSession, ews: EwsProcess) -> str:
    bomb = await asyncio.to_thread(gzip_bomb)
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json", "Authorization": "Bearer wrong"}

    async def send() -> int:
        async with aiohttp.ClientSession() as own, own.post(ews.url + "/api/v1/observations", data=bomb,
                                                            headers=headers) as r:
            return r.status

    sends = [asyncio.ensure_future(send()) for _ in range(3)]
    worst = 0.0
    while not all(t.done() for t in sends):
        worst = max(worst, await _healthz_ms(s, ews.url))
        await asyncio.sleep(0.05)
    statuses = [t.result() for t in sends]
    worst = max(worst, await _healthz_ms(s, ews.url))
    assert statuses == [415] * 3, statuses
    assert worst < 1000, f"/healthz took {worst:.0f} ms while the gzip bodies were refused"
    return f"{len(bomb) / MIB:.1f} MiB gzip (1 GiB inflated) x3: {statuses}; /healthz at most {worst:.0f} ms"


async def _items_capped(s: aiohttp.ClientSession, ews: EwsProcess) -> str:
    body = b"[" + b",".join([b"{}"] * 349_524) + b"]"
    t0 = time.monotonic()
    status, answer = await _json(s, "POST", ews.url + "/api/v1/observations", data=body,
                                 headers={**ews.headers(), "Content-Type": "application/json"})
    took = time.monotonic() - t0
    assert status == 413 and "at most 10000" in str(answer), (status, str(answer)[:300])
    assert took < 5, f"{took:.1f} s to refuse"
    return f"413 in {took * 1000:.0f} ms: {answer['error']}"


async def _lists_capped(s: aiohttp.ClientSession, ews: EwsProcess) -> str:
    status, answer = await _json(s, "POST", ews.url + "/api/v1/subscriptions", headers=ews.headers(),
                                 json={"name": "many", "department": "other", "url": "http://127.0.0.1:9/hook",
                                       "regions": ["620100"] * 50_000})
    assert status == 400 and str(answer.get("error", "")).startswith("regions:"), (status, answer)
    return f"400: {answer['error']}"


async def _sse_capped(ews: EwsProcess) -> str:
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:
        opened = await asyncio.gather(*(s.get(ews.url + "/api/v1/events") for _ in range(SSE_MAX + 5)))
        statuses = sorted(r.status for r in opened)
        retry = [r.headers.get("Retry-After") for r in opened if r.status == 503]
        for r in opened:
            r.close()
    assert statuses.count(200) <= SSE_MAX and statuses.count(503) >= 5 and all(retry), (statuses, retry)
    return f"{statuses.count(200)} streams, {statuses.count(503)} x 503 with Retry-After"


async def _header_timeout(ews: EwsProcess) -> str:
    conns = [await asyncio.open_connection("127.0.0.1", ews.port) for _ in range(20)]
    for _, w in conns:
        w.write(b"POST /api/v1/observations HTTP/1.1\r\nHost: x\r\nContent-Ty")
        await w.drain()
    t0 = time.monotonic()
    closed = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(HEADER_TIMEOUT_S + 4):
            for r, _ in conns:
                await r.read()  # EOF when the server closes
                closed += 1
    for _, w in conns:
        w.close()
    assert closed == 20, f"{closed} of 20 half-sent requests closed within {HEADER_TIMEOUT_S + 4} s"
    return f"20 of 20 closed after {time.monotonic() - t0:.1f} s"


async def _body_timeout(ews: EwsProcess) -> str:
    r, w = await asyncio.open_connection("127.0.0.1", ews.port)
    w.write(f"POST /api/v1/observations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ews.token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{".encode())
    await w.drain()
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S + 4):
            head = await r.readline()
    except TimeoutError:
        head = b"(nothing)"
    finally:
        w.close()
    assert head.startswith(b"HTTP/1.1 408"), head
    return f"408 after {time.monotonic() - t0:.1f} s"


async def _embedded_v4_refused(s: aiohttp.ClientSession, ews: EwsProcess) -> str:
    # 169.254.169.254 as 6to4, NAT64 and Teredo (client address XOR 0xffffffff); 127.0.0.0/8 is allow-listed here
    urls = ["http://[2002:a9fe:a9fe::1]/hook", "http://[64:ff9b::a9fe:a9fe]/hook",
            "http://[2001:0:4136:e378:8000:63bf:5601:5601]/hook"]
    answers = []
    for url in urls:
        status, answer = await _json(s, "POST", ews.url + "/api/v1/subscriptions", headers=ews.headers(),
                                     json={"name": "ssrf", "department": "other", "url": url,
                                           "regions": ["620000"]})
        assert status == 400 and "169.254.169.254" in str(answer), (url, status, answer)
        answers.append(status)
    return f"{answers}"


async def _escapes(s: aiohttp.ClientSession, ews: EwsProcess) -> str:
    evil = "Gansu\x1b]0;owned\x07 health\x1b[2J\u202e"
    status, created = await _json(s, "POST", ews.url + "/api/v1/subscriptions", headers=ews.headers(),
                                  json={"name": evil, "department": "health", "url": "http://127.0.0.1:9/hook",
                                        "regions": ["620000"]})
    assert status == 201 and created["name"] == "Gansu]0;owned health[2J", created
    listing = await asyncio.to_thread(_cli, ews, "subscribers", "list", "--token", ews.token)
    assert listing.returncode == 0, listing.stderr
    assert "\x1b" not in listing.stdout and "\x07" not in listing.stdout, repr(listing.stdout[:500])
    assert "Gansu]0;owned health[2J" in listing.stdout
    return "stripped on input; the table shows no control characters"


async def _host_not_reflected(s: aiohttp.ClientSession, ews: EwsProcess) -> str:
    status, atom = await _text(s, ews.url + "/api/v1/cap/feed.atom", headers={"Host": "evil.example:666"})
    assert status == 200 and "evil.example" not in atom, atom[:400]
    assert f"http://127.0.0.1:{ews.port}/api/v1/warnings/" in atom, atom[:400]
    return "links from EWS_PUBLIC_URL (default http://127.0.0.1:PORT)"


async def _metrics_need_token(s: aiohttp.ClientSession, ews: EwsProcess) -> str:
    anonymous, _ = await _text(s, ews.url + "/metrics")
    with_token, text = await _text(s, ews.url + "/metrics", headers=ews.headers())
    assert (anonymous, with_token) == (401, 200) and "ews_deliveries_total" in text, (anonymous, with_token)
    return "401 without, 200 with (EWS_METRICS_TOKEN_REQUIRED=1)"


async def _server_header(s: aiohttp.ClientSession, ews: EwsProcess) -> str:
    servers = set()
    for path in ("/healthz", "/api/v1/nothing-here", "/api/v1/subscriptions"):
        async with s.get(ews.url + path) as r:
            servers.add(r.headers.get("Server", ""))
    assert not any(re.search(r"\d|aiohttp|python", v, re.I) for v in servers), servers
    return f"Server: {sorted(servers)}"


async def _named_token(s: aiohttp.ClientSession, ews: EwsProcess) -> str:
    made = await asyncio.to_thread(_cli, ews, "token", "add", "alice")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    stored = (Path(ews.env["EWS_DATA_DIR"]) / "tokens").read_text()
    assert len(token) >= 32 and token not in stored and "alice " in stored, stored
    status, _ = await _json(s, "GET", ews.url + "/api/v1/subscriptions", headers={"Authorization": f"Bearer {token}"})
    assert status == 200, status
    return "alice's token works; the file holds its SHA-256 only"


async def _short_tokens_refused(workdir: Path) -> str:
    outcomes = []
    for name, token in (("empty", ""), ("short", "x" * 31)):
        proc: EwsProcess = launch.start_ews(workdir / f"token-{name}", token=token, log_name=f"token-{name}")
        code = await asyncio.to_thread(proc.proc.wait, 60)
        out = proc.output()
        assert code == 2 and "refusing to start" in out and "EWS_TOKEN" in out, (name, code, out[-600:])
        outcomes.append(f"{name}: exit {code}")
    return "; ".join(outcomes)


async def _throttled(s: aiohttp.ClientSession, ews: EwsProcess) -> str:
    statuses, retry_after = [], None
    for i in range(15):
        async with s.get(ews.url + "/api/v1/subscriptions", headers={"Authorization": f"Bearer wrong-{i}"}) as r:
            statuses.append(r.status)
            retry_after = retry_after or r.headers.get("Retry-After")
    assert 429 in statuses and statuses[-1] == 429 and retry_after and int(retry_after) > 0, (statuses, retry_after)
    async with s.get(ews.url + "/api/v1/subscriptions", headers=ews.headers()) as r:
        assert r.status == 429, "the right token is still checked for a throttled address"
    return f"{statuses.count(401)} x 401, then 429 (Retry-After {retry_after} s)"
