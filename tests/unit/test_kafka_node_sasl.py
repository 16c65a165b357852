"""KafkaNode's optional SASL_SSL listener: the properties and format arguments it adds (no Java needed; the
node itself is exercised in tests/integration/test_kafka_sasl.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from warning.kafka_node import KafkaNode, SaslSsl


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_plain_node_has_no_sasl_listener(tmp_path: Path) -> None:
    node = KafkaNode(tmp_path, port=9092)
    p = _props(node._properties())
    assert node.sasl_port is None
    assert "SASL_SSL" not in p["listeners"] and "sasl.enabled.mechanisms" not in p


def test_sasl_ssl_listener_is_added_beside_plaintext(tmp_path: Path) -> None:
    sasl = SaslSsl(tmp_path / "ks.pem", tmp_path / "ca.pem", {"ews": "pw1", "admin": "pw2"}, port=9093)
    node = KafkaNode(tmp_path, port=9092, sasl_ssl=sasl)
    p = _props(node._properties())
    assert node.sasl_bootstrap == "127.0.0.1:9093"
    assert p["listeners"].endswith(",SASL_SSL://127.0.0.1:9093") and "PLAINTEXT://127.0.0.1:9092" in p["listeners"]
    assert p["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9093"
    assert p["listener.security.protocol.map"].endswith(",SASL_SSL:SASL_SSL")
    assert p["inter.broker.listener.name"] == "PLAINTEXT"
    assert p["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert p["listener.name.sasl_ssl.ssl.keystore.location"] == str(tmp_path / "ks.pem")
    assert p["listener.name.sasl_ssl.ssl.truststore.type"] == "PEM"
    assert sasl.format_args() == ["--add-scram", "SCRAM-SHA-512=[name=ews,password=pw1]",
                                  "--add-scram", "SCRAM-SHA-512=[name=admin,password=pw2]"]
    assert "pw1" not in repr(sasl)


def test_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """StorageTool reads ``-t -abc`` as an option; Kafka's own Uuid.randomUuid skips such ids, and so must we."""
    import uuid

    from warning import kafka_node

    dash_first = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))  # base64url "-A..."
    fresh = iter([dash_first, uuid.UUID(int=1 << 100)])
    monkeypatch.setattr(kafka_node.uuid, "uuid4", lambda: next(fresh))
    cid = kafka_node.new_cluster_id()
    assert not cid.startswith("-") and len(cid) == 22
