"""Settings from the environment. One place that reads os.environ; everything else takes a Settings."""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from warning.shared.kafka_auth import KafkaAuth, KafkaConfigError

DEFAULT_HTTP_PORT = 8080
DEFAULT_PARTITIONS = 4
MIN_TOKEN_BYTES = 32  # an operator token shorter than this (or empty) is refused at start


class TokenError(ValueError):
    """An operator token (EWS_TOKEN or the token file) that must not be used: empty or too short."""


def _nets(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for part in raw.split(","):
        part = part.strip()
        if part:
            out.append(ipaddress.ip_network(part, strict=False))
    return tuple(out)


def _tristate(raw: str) -> bool | None:
    return {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(raw.strip().lower())


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str | None = None  # None: start the embedded broker (Apache Kafka if it can, else tansu)
    broker: str = ""  # EWS_BROKER: "" (Apache Kafka when Java and its jars are here, else tansu) | kafka | tansu
    data_dir: Path = Path("data")
    http_host: str = "127.0.0.1"
    http_port: int = DEFAULT_HTTP_PORT
    token: str | None = None
    app_id: str = "ews"
    partitions: int = DEFAULT_PARTITIONS
    # tansu holds every JoinGroup for session_timeout/2 (BROKER.md §3): keep it short on the embedded broker.
    session_timeout_s: float = 6.0
    webhook_allow_nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(default=())
    webhook_timeout_s: float = 10.0
    max_body_bytes: int = 1 << 20
    store: str = "memory://"
    log_level: str = "info"
    retry_tiers_s: tuple[float, ...] = (10.0, 60.0, 300.0, 1800.0, 7200.0, 21600.0)
    retry_horizon_s: float = 24 * 3600.0
    processing_guarantee: str = "at_least_once"  # or exactly_once (faust transactions; Apache Kafka only)
    max_retry_after_s: float = 3600.0  # a receiver's Retry-After is obeyed up to this (UNCONFIRMED; alerts.retry)
    unhealthy_after_s: float = 300.0
    endpoint_concurrency: int = 4
    tick_interval_s: float = 30.0  # how often expiry, hysteresis and acknowledgement deadlines are checked
    retry_hold_s: float = 60.0  # a retry not yet due waits in memory this long at most, then goes back to its tier
    silence_max_h: float = 168.0  # the longest silence (h; UNCONFIRMED: a week of planned work)
    retry_waiting_max: int = 10_000  # retries not yet due held in memory per tier (past it the tier's agent waits)
    tansu_compat: bool = False  # apply the tansu ListOffsets workaround to an external broker too
    json_logs: bool | None = None  # None: JSON lines when stderr is not a terminal
    rules_path: Path | None = None  # a bureau's own rules.toml instead of the packaged one
    # ---- what a hostile client may cost (issue 17; the figures are our choices, UNCONFIRMED by any standard) --
    public_url: str = ""  # EWS_PUBLIC_URL: base of the ATOM feed's links ("": http://127.0.0.1:<http_port>)
    feed_window_s: float = 24 * 3600.0  # EWS_FEED_WINDOW: how long updates and cancels stay in the ATOM feed
    websub_hub: str = ""  # EWS_WEBSUB_HUB: a WebSub hub the ATOM feed announces (<link rel="hub">); "": none
    cap_signing_key: Path | None = None  # EWS_CAP_SIGNING_KEY: PEM private key; with the cert, CAP is signed
    cap_signing_cert: Path | None = None  # EWS_CAP_SIGNING_CERT: its PEM X.509 certificate (in <KeyInfo>)
    max_items: int = 10_000  # observations / forecast points in one request (413 beyond)
    max_list_items: int = 500  # entries of a subscription's regions / hazards / basis / msg_types lists (400)
    sse_max_clients: int = 100  # concurrent /api/v1/events streams on this worker (503 beyond)
    sse_snapshot_warnings: int = 500  # newest warnings in an SSE snapshot (plus every active one)
    station_values_s: float = 60.0  # how often each worker publishes its stations' summaries (stations.latest)
    header_timeout_s: float = 10.0  # a connection must deliver a request's headers within this (then closed)
    body_timeout_s: float = 30.0  # reading a request body (408 beyond)
    auth_failures: int = 10  # failed bearer tokens per client address within auth_window_s before 429
    auth_window_s: float = 60.0
    metrics_token_required: bool = False  # EWS_METRICS_TOKEN_REQUIRED: GET /metrics needs a token
    kafka: KafkaAuth = field(default_factory=KafkaAuth)  # EWS_KAFKA_*: TLS and SASL to a real cluster
    data_key: str | None = field(default=None, repr=False)  # EWS_DATA_KEY: the key ring (warning.shared.sealing)
    data_key_file: Path | None = None  # EWS_DATA_KEY_FILE; neither: <data dir>/keys, created 0600

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        e = dict(os.environ if env is None else env)
        kw: dict[str, object] = {
            "kafka_bootstrap": e.get("KAFKA_BOOTSTRAP") or None,
            "broker": e.get("EWS_BROKER", "").strip().lower(),
            "data_dir": Path(e.get("EWS_DATA_DIR", "data")),
            "http_host": e.get("EWS_HTTP_HOST", "127.0.0.1"),
            "http_port": int(e.get("EWS_HTTP_PORT", DEFAULT_HTTP_PORT)),
            "token": e.get("EWS_TOKEN"),  # "" (set but empty) is refused by ensure_token
            "app_id": e.get("EWS_APP_ID", "ews"),
            "partitions": int(e.get("EWS_PARTITIONS", DEFAULT_PARTITIONS)),
            "session_timeout_s": float(e.get("EWS_SESSION_TIMEOUT", "6")),
            "webhook_allow_nets": _nets(e.get("EWS_WEBHOOK_ALLOW_NETS", "")),
            "webhook_timeout_s": float(e.get("EWS_WEBHOOK_TIMEOUT", "10")),
            "max_body_bytes": int(e.get("EWS_MAX_BODY_BYTES", 1 << 20)),
            "store": e.get("EWS_STORE", "memory://"),
            "log_level": e.get("EWS_LOG_LEVEL", "info"),
            "tansu_compat": e.get("EWS_TANSU_COMPAT", "0").lower() in ("1", "true", "yes"),
            "json_logs": _tristate(e.get("EWS_JSON_LOGS", "")),
            "rules_path": Path(e["EWS_RULES"]) if e.get("EWS_RULES") else None,
            "retry_tiers_s": tuple(float(x) for x in e.get("EWS_RETRY_TIERS", "10,60,300,1800,7200,21600").split(",")),
            "retry_horizon_s": float(e.get("EWS_RETRY_HORIZON", 24 * 3600)),
            "max_retry_after_s": float(e.get("EWS_MAX_RETRY_AFTER", 3600)),
            "processing_guarantee": e.get("EWS_PROCESSING_GUARANTEE", "at_least_once"),
            "unhealthy_after_s": float(e.get("EWS_UNHEALTHY_AFTER", 300)),
            "endpoint_concurrency": int(e.get("EWS_ENDPOINT_CONCURRENCY", 4)),
            "retry_hold_s": float(e.get("EWS_RETRY_HOLD", 60)),
            "tick_interval_s": float(e.get("EWS_TICK_INTERVAL", 30)),
            "silence_max_h": float(e.get("EWS_SILENCE_MAX_H", 168)),
            "retry_waiting_max": int(e.get("EWS_RETRY_WAITING_MAX", 10_000)),
            "public_url": e.get("EWS_PUBLIC_URL", "").strip().rstrip("/"),
            "feed_window_s": float(e.get("EWS_FEED_WINDOW", 24 * 3600)),
            "websub_hub": e.get("EWS_WEBSUB_HUB", "").strip(),
            "cap_signing_key": Path(e["EWS_CAP_SIGNING_KEY"]) if e.get("EWS_CAP_SIGNING_KEY") else None,
            "cap_signing_cert": Path(e["EWS_CAP_SIGNING_CERT"]) if e.get("EWS_CAP_SIGNING_CERT") else None,
            "max_items": int(e.get("EWS_MAX_ITEMS", 10_000)),
            "max_list_items": int(e.get("EWS_SUBSCRIPTION_MAX_LIST", 500)),
            "sse_max_clients": int(e.get("EWS_SSE_MAX_CLIENTS", 100)),
            "sse_snapshot_warnings": int(e.get("EWS_SSE_SNAPSHOT_WARNINGS", 500)),
            "station_values_s": float(e.get("EWS_STATION_VALUES_S", 60)),
            "header_timeout_s": float(e.get("EWS_HTTP_HEADER_TIMEOUT", 10)),
            "body_timeout_s": float(e.get("EWS_HTTP_BODY_TIMEOUT", 30)),
            "auth_failures": int(e.get("EWS_AUTH_FAILURES", 10)),
            "auth_window_s": float(e.get("EWS_AUTH_WINDOW", 60)),
            "metrics_token_required": _tristate(e.get("EWS_METRICS_TOKEN_REQUIRED", "")) or False,
            "kafka": KafkaAuth.from_env(e),
            "data_key": e.get("EWS_DATA_KEY") or None,
            "data_key_file": Path(e["EWS_DATA_KEY_FILE"]) if e.get("EWS_DATA_KEY_FILE") else None,
        }
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)  # type: ignore[arg-type]

    def check_broker(self) -> None:
        """`ews run`: TLS or SASL settings without KAFKA_BOOTSTRAP are a mistake, not a silent PLAINTEXT."""
        if self.kafka.protocol != "PLAINTEXT" and not self.kafka_bootstrap:
            raise KafkaConfigError(f"EWS_KAFKA_SECURITY_PROTOCOL={self.kafka.protocol} needs KAFKA_BOOTSTRAP: "
                                   "the broker `ews run` starts itself is PLAINTEXT on loopback only")

    @property
    def public_base_url(self) -> str:
        """Where clients reach this API, for links the service writes (ATOM): never taken from a request."""
        return self.public_url or f"http://127.0.0.1:{self.http_port}"


def check_token(token: str, where: str) -> str:
    """``token`` when it is long enough to be an operator token, else TokenError naming ``where`` it came from."""
    if not token:
        raise TokenError(f"{where} is empty: authentication would be off; set a random token of at least "
                         f"{MIN_TOKEN_BYTES} bytes (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if len(token.encode()) < MIN_TOKEN_BYTES:
        raise TokenError(f"{where} is {len(token.encode())} bytes; an operator token needs at least "
                         f"{MIN_TOKEN_BYTES} (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def ensure_token(settings: Settings) -> tuple[str, bool]:
    """The operator token: EWS_TOKEN, else the one stored in the data dir, else a new one stored 0600.

    Returns (token, created). The token is never logged; the CLI prints it once to the console. An empty or short
    token (EWS_TOKEN set to "", an emptied token file) is TokenError: it must never turn authentication off.
    """
    if settings.token is not None:
        return check_token(settings.token.strip(), "EWS_TOKEN"), False
    path = settings.data_dir / "token"
    if path.exists():
        return check_token(path.read_text().strip(), str(path)), False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(MIN_TOKEN_BYTES)  # 43 characters
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, True
