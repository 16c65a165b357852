"""Schemathesis against a running service, from the OpenAPI document it serves: a bounded run (a few examples
per operation, fixed seed, the operator token), no 5xx and every response conforming to the document (status
code, content type, headers, schema). Seeded with a warning and a subscription so lists and lookups answer with
data, not only empty lists and 404s."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.support import TOKEN, WebhookReceiver, hot, one_station_per_county, running_ews, until

pytest.importorskip("schemathesis", reason="schemathesis (dev extra) is not installed")
pytestmark = pytest.mark.timeout(240)

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance")
# the live feed never ends (a stream), and a flood of wrong tokens would only test the throttle
EXCLUDED = ("--exclude-path", "/api/v1/events")


async def test_schemathesis_finds_no_server_error_and_no_nonconforming_answer(tmp_path: Path) -> None:
    env = {"EWS_WEBHOOK_ALLOW_NETS": "127.0.0.0/8", "EWS_AUTH_FAILURES": "100000", "EWS_SSE_MAX_CLIENTS": "5"}
    async with running_ews(tmp_path, env) as ews, WebhookReceiver() as rec, aiohttp.ClientSession() as s:
        async with s.post(ews.url + "/api/v1/subscriptions", headers=ews.headers(), json={
                "name": "seed", "department": "relief", "url": rec.url, "regions": ["620000"]}) as r:
            assert r.status == 201
        async with s.post(ews.url + "/api/v1/observations", headers=ews.headers(),
                          json=hot(one_station_per_county(2), datetime.now(UTC) - timedelta(hours=1))) as r:
            assert r.status == 202
        assert await until(lambda: len(rec.received) >= 2, 60)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "schemathesis.cli", "run", ews.url + "/api/v1/openapi.json",
            "--header", f"Authorization: Bearer {TOKEN}", "--checks", CHECKS, *EXCLUDED,
            "--max-examples", "3", "--seed", "19", "--phases", "examples,coverage,fuzzing,stateful", "--workers", "1",
            "--request-timeout", "10", "--no-shrink", "--max-failures", "20",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}, cwd=tmp_path)
        out, _ = await asyncio.wait_for(proc.communicate(), 180)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-12000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", text)
    tested = re.search(r"Tested: (\d+)", text)
    assert selected and tested, text[-6000:]
    # every operation but the SSE stream ran
    assert int(tested.group(1)) == int(selected.group(1)) == int(selected.group(2)) - 1 >= 30, text[-6000:]
    assert " passed" in text, text[-6000:]
