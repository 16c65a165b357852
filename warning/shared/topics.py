"""Topic names and their creation (docs/ARCHITECTURE.md "Topics")."""

from __future__ import annotations

import logging
import socket
import struct
from functools import lru_cache

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from warning.shared.kafka_auth import KafkaAuth

log = logging.getLogger(__name__)

OBS = "obs"
OBS_REJECTED = "obs.rejected"
FORECAST = "forecast"
INDICES = "indices"
SIGNALS = "signals"  # station levels keyed by county: the repartition step before region grading
WARNINGS = "warnings"
SUBSCRIPTIONS = "subscriptions"
OUTBOX = "alerts.outbox"
RETRY = "alerts.retry"  # tier topics alerts.retry.0 .. alerts.retry.N-1, one per backoff delay
DEAD = "alerts.dead"
RECEIPTS = "alerts.receipts"
DRAFTS = "warnings.drafts"  # the forecasters' desk: drafts and their decisions (the audit log), keyed by draft id
SILENCES = "silences"  # time-bounded silences of deliveries, keyed by silence id
ACKS = "alerts.acks"  # departments' acknowledgements of warnings (compacted, MACed control records)

STATIONS_LATEST = "stations.latest"  # per obs partition: its stations' latest values and last days (the console)
COMPACTED = {WARNINGS, SUBSCRIPTIONS, DRAFTS, SILENCES, ACKS, STATIONS_LATEST}
SINGLE_PARTITION = {SUBSCRIPTIONS, DRAFTS, SILENCES, STATIONS_LATEST}  # total order of registry changes; few records
ALL = (OBS, OBS_REJECTED, FORECAST, INDICES, SIGNALS, WARNINGS, SUBSCRIPTIONS, OUTBOX, DEAD, RECEIPTS, DRAFTS,
       SILENCES, ACKS, STATIONS_LATEST)


@lru_cache(maxsize=1 << 16)  # station ids and region codes: a bounded set, and murmur2 is pure Python (~5 us)
def partition_for(station_id: str, partitions: int) -> int:
    """The ``obs``/``forecast`` partition of a station: murmur2 of the raw key, as Kafka's default partitioner,
    so one station's reports stay in order on one partition. (aiokafka is imported here, not at module import:
    `ews ingest --dry-run` starts faster.)"""
    from aiokafka.partitioner import murmur2

    return (murmur2(station_id.encode()) & 0x7FFFFFFF) % partitions


def retry_tier(i: int) -> str:
    return f"{RETRY}.{i}"


def ensure_topics(bootstrap: str, partitions: int, retry_tiers: int = 6, auth: KafkaAuth | None = None
                  ) -> list[str]:
    """Create missing topics; existing ones are left as they are. Returns the names created. (The raw metadata
    probe speaks PLAINTEXT only; over TLS or SASL the admin client's own connection errors say it.)"""
    auth = auth or KafkaAuth()
    if auth.protocol == "PLAINTEXT" and not any(
            metadata_ok(server.strip(), timeout_s=3.0) for server in bootstrap.split(",") if server.strip()):
        raise ConnectionError(f"no broker answers a metadata request at {bootstrap}")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="ews-admin", request_timeout_ms=10000,
                             **auth.kafka_python())
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, 1 if name in SINGLE_PARTITION else partitions, 1,
                     topic_configs={"cleanup.policy": "compact"} if name in COMPACTED else {})
            for name in (*ALL, *(retry_tier(i) for i in range(retry_tiers))) if name not in existing
        ]
        created = []
        for topic in new:  # one by one: a racing worker creating the same topic is not an error
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def metadata_ok(bootstrap: str, timeout_s: float = 1.0) -> bool:
    """True when the broker answers a Kafka Metadata (v0) request, not just a TCP accept.

    A raw request on one socket: bounded by ``timeout_s``, unlike a client library's bootstrap retries.
    """
    host, _, port = bootstrap.rpartition(":")
    client_id = b"ews-ready-probe"
    correlation = 0x0E5
    # api_key=3 (Metadata), api_version=0, correlation id, client id, topics=[] (all topics in v0)
    body = struct.pack(">hhih", 3, 0, correlation, len(client_id)) + client_id + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = b""
            while len(header) < 8:
                chunk = sock.recv(8 - len(header))
                if not chunk:
                    return False
                header += chunk
    except OSError:
        return False
    size, corr = struct.unpack(">ii", header)
    return corr == correlation and size >= 4
