"""The Server header names no versions, also on the 400 aiohttp writes for a request it cannot parse (issue 17)."""

from __future__ import annotations

import asyncio

from aiohttp import web

import warning.web.api  # noqa: F401  (sets aiohttp's default Server header)


async def test_a_request_aiohttp_cannot_parse_is_answered_without_versions() -> None:
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        head = (await asyncio.wait_for(reader.read(4096), 10)).decode("latin-1")
        writer.close()
    finally:
        await runner.cleanup()
    assert head.startswith("HTTP/1.") and " 400 " in head.split("\r\n")[0]
    server = [line for line in head.split("\r\n") if line.lower().startswith("server:")]
    assert server == ["Server: ews"], head
