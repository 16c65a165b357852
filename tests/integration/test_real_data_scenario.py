"""A real station file through the real broker: NOAA ISD-Lite Beijing, June 2017, replayed as Lanzhou (52889)
with `ews ingest --as-station --status exercise` into `ews run` (a drill of history); the webhooks to a subscription
that opted in to exercises must be exactly the events of the in-memory model (tests/scenario_model.py), Exercise
events stamped with the data times, and include the documented facts of that month (orange heat from 2017-06-09).
The same file as actual reports updates the station state but warns nobody; and `ews run --replay FILE
--as-station` (what `make run FILE=... AS_STATION=...` runs) replays it as an exercise."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import orjson

from ingest.producer import add_ingest_parser, run_ingest
from tests.scenario_model import model_events
from tests.support import ISD, WebhookReceiver, running_ews
from warning.broker import EmbeddedBroker

WINDOW = ["--as-station", "52889", "--since", "2017-06-01T00:00:00Z", "--until", "2017-07-01T00:00:00Z"]


def _ingest(*extra: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    add_ingest_parser(parser.add_subparsers(dest="command"))
    out, err = io.StringIO(), io.StringIO()
    rc = run_ingest(parser.parse_args(["ingest", str(ISD), *WINDOW, *extra]), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


async def test_isd_june_2017_as_lanzhou(broker: EmbeddedBroker, tmp_path: Path, receiver: WebhookReceiver) -> None:
    rc, rows_text, err = _ingest("--dry-run")
    assert rc == 0, err
    expected = [e for e in model_events([json.loads(x) for x in rows_text.splitlines()], "exercise")
                if e["region_code"] == "620102"]
    assert expected[0]["hazard"] == "heat" and expected[0]["level"] == "orange"  # 37.5 degC on 2017-06-09
    env = {"KAFKA_BOOTSTRAP": broker.bootstrap, "EWS_TANSU_COMPAT": "1", "EWS_APP_ID": "ews-isd"}
    async with running_ews(tmp_path, env) as ews:
        import aiohttp

        async with aiohttp.ClientSession() as s, s.post(
                ews.url + "/api/v1/subscriptions", headers=ews.headers(),
                json={"name": "Lanzhou relief", "department": "relief", "url": receiver.url,
                      "regions": ["620102"], "statuses": ["exercise"]}) as r:
            assert r.status == 201
        rc, _, err = _ingest("--bootstrap", broker.bootstrap, "--status", "exercise")
        assert rc == 0, err
        got = await receiver.wait_for(len(expected), timeout_s=90)
    events = [orjson.loads(g["body"])["data"] for g in got]
    assert {e["status"] for e in events} == {"exercise"} and all(e["note"] for e in events)
    assert all(e["sent"].startswith("2017-0") for e in events)  # stamped with the replayed data times

    def per_hazard(evs: list[dict]) -> dict[str, list[tuple[str, str, str, str, str]]]:
        """Each hazard's events in chain order. Webhooks to one endpoint run concurrently (as Standard Webhooks
        allows), so arrival order is not the chain order: receivers order by the event's sent time and seq."""
        out: dict[str, list[tuple[str, str, str, str, str]]] = {}
        for e in sorted(evs, key=lambda e: (e["onset"], e["warning_id"], e["seq"])):
            out.setdefault(e["hazard"], []).append((e["warning_id"], e["msg_type"], e["change"], e["level"], e["id"]))
        return out

    assert len({e["id"] for e in events}) == len(events)  # no duplicates
    assert per_hazard(events) == per_hazard(expected)  # same events, same deterministic ids
