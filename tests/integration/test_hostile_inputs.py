"""Issue 17, replayed against a running service: every finding (receiver detail in public views, gzip bodies,
unbounded requests and replies, SSE clients, half-sent requests, empty or short tokens, SSRF through 6to4 / NAT64 /
Teredo, terminal escapes, the Host header in ATOM links, open /metrics, the Server header, unthrottled token
guessing) must be held. The checks are chaos/issue17.py's, which `python -m chaos hostile` tallies too."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos import issue17
from tests.support import running_ews


@pytest.mark.timeout(240)
async def test_every_issue_17_finding_is_held(tmp_path: Path) -> None:
    async with running_ews(tmp_path, issue17.ENV) as ews:
        findings = await issue17.run_all(ews, tmp_path)
    print(findings.report())
    assert len(findings.verdicts) == 16
    assert all(v.held for v in findings.verdicts), findings.report()
