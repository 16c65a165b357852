"""The single-machine mode's broker: one Apache Kafka node in KRaft mode (broker and controller in one JVM) with
its data under the data dir, so stop/start and SIGKILL keep every topic. Started, health-checked and stopped like
the tansu broker (``warning.broker``): a child process that dies with its parent, ready once it answers a Kafka
Metadata request, stopped with SIGTERM (a controlled shutdown), then SIGKILL.

The jars come from Maven Central (``make kafka``: deploy/kafka/pom.xml into ``.venv/kafka/libs``) and Java 17 from
the system (``JAVA_HOME`` or ``java`` on PATH). The ports are free ones picked at each start: a KRaft node
identifies its voters by node id, and its data does not depend on the ports.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from warning.broker import BrokerProcess, die_with_parent, free_port

log = logging.getLogger(__name__)

KAFKA_VERSION = "3.9.1"
HEAP = "-Xmx768m"
LOG4J = """log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={log}
log4j.appender.file.MaxFileSize=10MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
"""


def java_binary() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def kafka_libs() -> Path | None:
    """The directory of Kafka's jars: ``EWS_KAFKA_LIBS``, else ``<venv>/kafka/libs`` (``make kafka``)."""
    for cand in (os.environ.get("EWS_KAFKA_LIBS"), str(Path(sys.prefix) / "kafka" / "libs")):
        if cand and any(Path(cand).glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
            return Path(cand)
    return None


def available() -> str | None:
    """None when a Kafka node can be started here, else why not (shown on the console and dashboard)."""
    if java_binary() is None:
        return "no Java runtime (install Java 17 or set JAVA_HOME)"
    if kafka_libs() is None:
        return f"no Kafka {KAFKA_VERSION} jars (run `make kafka`, or set EWS_KAFKA_LIBS)"
    return None


def server_properties(data: Path, host: str, port: int, controller_port: int, partitions: int) -> str:
    return "\n".join([
        "process.roles=broker,controller", "node.id=1",
        f"controller.quorum.voters=1@{host}:{controller_port}",
        f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        f"advertised.listeners=PLAINTEXT://{host}:{port}",
        "controller.listener.names=CONTROLLER", "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={data / 'logs'}", f"num.partitions={partitions}",
        "offsets.topic.replication.factor=1", "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1", "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        "group.min.session.timeout.ms=500",  # the service shortens its session on one machine (EWS_SESSION_TIMEOUT)
        "log.cleaner.backoff.ms=1000",  # compacted topics (subscriptions, warnings) are cleaned soon after a roll
        "",
    ])


@dataclass(frozen=True)
class SaslSsl:
    """A second client listener, SASL_SSL with SCRAM-SHA-512 as deploy/kafka/start-kafka.sh configures it: PEM
    stores (``keystore``: the PKCS#8 key and the certificate chain; ``truststore``: the CA) and the SCRAM users
    (name -> password) added when the storage is formatted. The PLAINTEXT listener stays (the readiness probe and
    inter-broker traffic), so a test reaches both; deploy/ has no PLAINTEXT client listener at all."""

    keystore: Path
    truststore: Path
    users: dict[str, str] = field(default_factory=dict, repr=False)
    port: int | None = None

    def properties(self) -> list[str]:
        return [
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            # the server side of SCRAM needs a login context; its credentials are checked against the metadata
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.sasl_ssl.ssl.keystore.type=PEM",
            f"listener.name.sasl_ssl.ssl.keystore.location={self.keystore}",
            "listener.name.sasl_ssl.ssl.truststore.type=PEM",
            f"listener.name.sasl_ssl.ssl.truststore.location={self.truststore}",
            "listener.name.sasl_ssl.ssl.client.auth=none",
        ]

    def format_args(self) -> list[str]:
        return [a for name, pw in self.users.items()
                for a in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={pw}]")]


def new_cluster_id() -> str:
    """A KRaft cluster id as Kafka's ``Uuid.randomUuid`` makes it: base64url of 16 random bytes, never one that
    starts with '-' (StorageTool's argument parser would read ``-t -abc...`` as an option: one first start in 64
    failed that way)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


class KafkaNode(BrokerProcess):
    """One KRaft node on loopback; with ``sasl_ssl``, also a SASL_SSL (SCRAM-SHA-512) listener on ``sasl_port``."""

    label = f"Apache Kafka {KAFKA_VERSION}"
    stop_timeout_s = 30.0  # a controlled shutdown flushes and closes the logs

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int | None = None, partitions: int = 4,
                 *, sasl_ssl: SaslSsl | None = None) -> None:
        super().__init__(host, port)
        self.data = Path(data_dir).resolve()
        self.controller_port = free_port(host)
        self.partitions = partitions
        self.sasl_ssl = sasl_ssl
        self.sasl_port = (sasl_ssl.port or free_port(host)) if sasl_ssl else None

    @property
    def sasl_bootstrap(self) -> str:
        if self.sasl_port is None:
            raise RuntimeError("this node has no SASL_SSL listener")
        return f"{self.host}:{self.sasl_port}"

    def _properties(self) -> str:
        text = server_properties(self.data, self.host, self.port, self.controller_port, self.partitions)
        if self.sasl_ssl is None or self.sasl_port is None:
            return text
        sasl = f"SASL_SSL://{self.host}:{self.sasl_port}"
        lines = [line + (f",{sasl}" if line.startswith(("listeners=", "advertised.listeners=")) else "")
                 for line in text.splitlines()]
        lines = [line + ",SASL_SSL:SASL_SSL" if line.startswith("listener.security.protocol.map=") else line
                 for line in lines]
        return "\n".join(lines + self.sasl_ssl.properties() + [""])

    def _java(self, main: str, *args: str) -> list[str]:
        java, libs = java_binary(), kafka_libs()
        if java is None or libs is None:
            raise RuntimeError(f"cannot start Apache Kafka: {available()}")
        return [java, HEAP, "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{self.data / 'log4j.properties'}", "-cp", f"{libs}/*", main, *args]

    def _configure(self) -> Path:
        self.data.mkdir(parents=True, exist_ok=True)
        (self.data / "log4j.properties").write_text(LOG4J.format(log=self.data / "server.log"))
        props = self.data / "server.properties"
        props.write_text(self._properties())
        if not (self.data / "logs" / "meta.properties").exists():  # first start: format the storage once
            cluster_id = new_cluster_id()
            scram = self.sasl_ssl.format_args() if self.sasl_ssl else []
            done = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), *scram),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
            if done.returncode != 0:  # the tool's own words, not only its exit status
                raise RuntimeError(f"formatting Kafka's storage in {self.data} failed: "
                                   f"{done.stderr.decode(errors='replace').strip()[-800:]}")
        return props

    def start(self, timeout_s: float = 90.0) -> KafkaNode:
        t0 = time.monotonic()
        props = self._configure()
        with open(self.data / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen(self._java("kafka.Kafka", str(props)), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        self._await_ready(t0, timeout_s, 0.1, f"see {self.data / 'server.log'}")
        return self
