"""How every Kafka client of the service connects: PLAINTEXT (the embedded loopback broker) or, on a real
cluster, TLS and SASL (SCRAM-SHA-512 in deploy/). One validated description, rendered for faust
(``broker_credentials``), aiokafka (the mirrors) and kafka-python (the admin client, ``ews ingest``).

Environment: ``EWS_KAFKA_SECURITY_PROTOCOL`` (PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL),
``EWS_KAFKA_SASL_MECHANISM`` (SCRAM-SHA-512 by default with SASL, SCRAM-SHA-256, PLAIN),
``EWS_KAFKA_SASL_USERNAME``, ``EWS_KAFKA_SASL_PASSWORD`` or ``EWS_KAFKA_SASL_PASSWORD_FILE``, ``EWS_KAFKA_CA_FILE``
(the CA that signed the brokers' certificates; the system's CAs when unset), ``EWS_KAFKA_CHECK_HOSTNAME`` (1).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class KafkaConfigError(ValueError):
    """A missing or inconsistent Kafka connection setting; the message names the variable (never a password)."""


@dataclass(frozen=True)
class KafkaAuth:
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    check_hostname: bool = True

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @classmethod
    def from_env(cls, e: Mapping[str, str]) -> KafkaAuth:
        """Read and validate the EWS_KAFKA_* variables; raises KafkaConfigError naming the variable."""
        protocol = e.get("EWS_KAFKA_SECURITY_PROTOCOL", "").strip().upper() or "PLAINTEXT"
        password = e.get("EWS_KAFKA_SASL_PASSWORD") or None
        password_file = e.get("EWS_KAFKA_SASL_PASSWORD_FILE") or None
        if password and password_file:
            raise KafkaConfigError("set EWS_KAFKA_SASL_PASSWORD or EWS_KAFKA_SASL_PASSWORD_FILE, not both")
        if password_file:
            try:
                password = Path(password_file).read_text().strip()
            except OSError as exc:
                raise KafkaConfigError(f"EWS_KAFKA_SASL_PASSWORD_FILE: cannot read {password_file}: "
                                       f"{exc.strerror}") from None
        mechanism = e.get("EWS_KAFKA_SASL_MECHANISM", "").strip().upper() or None
        if mechanism is None and protocol.startswith("SASL_"):
            mechanism = "SCRAM-SHA-512"
        auth = cls(protocol=protocol, mechanism=mechanism, username=e.get("EWS_KAFKA_SASL_USERNAME") or None,
                   password=password, ca_file=Path(e["EWS_KAFKA_CA_FILE"]) if e.get("EWS_KAFKA_CA_FILE") else None,
                   check_hostname=e.get("EWS_KAFKA_CHECK_HOSTNAME", "1").strip().lower() not in ("0", "false", "no"))
        auth.validate()
        return auth

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaConfigError(f"EWS_KAFKA_SECURITY_PROTOCOL: {self.protocol!r} is not one of "
                                   f"{', '.join(PROTOCOLS)}")
        if self.sasl:
            if self.mechanism not in MECHANISMS:
                raise KafkaConfigError(f"EWS_KAFKA_SASL_MECHANISM: {self.mechanism!r} is not one of "
                                       f"{', '.join(MECHANISMS)}")
            if not self.username:
                raise KafkaConfigError(f"EWS_KAFKA_SASL_USERNAME: required with {self.protocol}")
            if not self.password:
                raise KafkaConfigError(f"EWS_KAFKA_SASL_PASSWORD (or _FILE): required with {self.protocol}")
            if self.mechanism == "PLAIN" and not self.tls:
                raise KafkaConfigError("EWS_KAFKA_SASL_MECHANISM=PLAIN over SASL_PLAINTEXT sends the password in "
                                       "clear: use SASL_SSL or SCRAM")
        elif self.mechanism or self.username or self.password:
            raise KafkaConfigError(f"EWS_KAFKA_SASL_* is set but EWS_KAFKA_SECURITY_PROTOCOL is {self.protocol}: "
                                   "use SASL_SSL (or unset the SASL variables)")
        if self.ca_file is not None:
            if not self.tls:
                raise KafkaConfigError(f"EWS_KAFKA_CA_FILE is set but EWS_KAFKA_SECURITY_PROTOCOL is "
                                       f"{self.protocol} (no TLS): use SSL or SASL_SSL")
            if not self.ca_file.is_file():
                raise KafkaConfigError(f"EWS_KAFKA_CA_FILE: {self.ca_file} does not exist")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        ctx.check_hostname = self.check_hostname
        return ctx

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's consumer, producer and admin client."""
        kw: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            kw["ssl_context"] = self.ssl_context()
        if self.sasl:
            kw.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                      sasl_plain_password=self.password)
        return kw

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient."""
        kw: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            kw.update(ssl_check_hostname=self.check_hostname)
            if self.ca_file:
                kw["ssl_cafile"] = str(self.ca_file)
        if self.sasl:
            kw.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                      sasl_plain_password=self.password)
        return kw

    def faust_credentials(self) -> Any:
        """faust's ``broker_credentials``: None (PLAINTEXT), SSLCredentials or SASLCredentials."""
        import faust

        if self.sasl:
            return faust.SASLCredentials(username=self.username, password=self.password, mechanism=self.mechanism,
                                         ssl_context=self.ssl_context())
        if self.tls:
            return faust.SSLCredentials(self.ssl_context())
        return None
