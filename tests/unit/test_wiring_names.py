"""The names a running deployment depends on: topics, tables (their changelog topics) and agents. Renaming any of
them would strand a deployment's data or consumer offsets, so the composition root must keep them."""

from __future__ import annotations

from pathlib import Path

from warning.app import WarningService
from warning.rules import load_rules
from warning.shared.config import Settings
from warning.shared.regions import RegionTree, StationRegistry

TOPICS = {"obs", "obs.rejected", "forecast", "signals", "warnings", "subscriptions", "alerts.outbox", "alerts.dead",
          "alerts.receipts", "warnings.drafts", "silences", "alerts.acks", "stations.latest",
          *(f"alerts.retry.{i}" for i in range(6))}
TABLES = {"station_columns", "station_daily", "qc_columns", "obs_log", "region_state", "receivers",
          "ack_escalations"}
AGENTS = {"observations", "forecasts", "grade", "deliver", *(f"redeliver-{i}" for i in range(6))}


def _service(tmp_path: Path) -> WarningService:
    settings = Settings.from_env({"EWS_DATA_DIR": str(tmp_path)})
    return WarningService(settings, "127.0.0.1:1", StationRegistry.load(), RegionTree.load(), load_rules())


def test_topic_table_and_agent_names_are_unchanged(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    app = svc.app
    assert set(app.agents.keys()) == AGENTS
    assert set(app.tables.keys()) == TABLES
    assert {name: agent.channel.topics for name, agent in app.agents.items()} == {
        "observations": ("obs",), "forecasts": ("forecast",), "grade": ("signals",), "deliver": ("alerts.outbox",),
        **{f"redeliver-{i}": (f"alerts.retry.{i}",) for i in range(6)}}
    assert {m.topic for m in svc._mirrors} == {"subscriptions", "warnings", "alerts.receipts", "alerts.dead",
                                          "warnings.drafts", "silences", "alerts.acks", "stations.latest"}


def test_every_named_topic_is_created(tmp_path: Path) -> None:
    from warning.shared import topics

    assert {*topics.ALL, *(topics.retry_tier(i) for i in range(6))} >= TOPICS
