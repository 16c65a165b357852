"""deploy/: no container engine runs here, so the deployment files are checked by parsing them and following the
references between them (issue 7, point 5): compose services, ports and mounts, the Prometheus targets, the
Grafana provisioning paths, the dashboard's metric names against warning/shared/metrics.py, the Kubernetes objects that
refer to each other, and the Dockerfile's command."""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import certifi
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "ews.json"
K8S = DEPLOY / "k8s"
METRICS_PY = ROOT / "warning" / "shared" / "metrics.py"
CONFIG_PY = ROOT / "warning" / "shared" / "config.py"
KAFKA_AUTH_PY = ROOT / "warning" / "shared" / "kafka_auth.py"
START_KAFKA = DEPLOY / "kafka" / "start-kafka.sh"
MAKE_SECRETS = DEPLOY / "kafka" / "make-secrets.sh"

# Metrics the dashboard may use although the service does not export them: they come from a Kafka exporter, and a
# panel using one must say so in its description.
EXPORTER_METRICS = {"kafka_consumergroup_lag", "kafka_consumergroup_lag_sum"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
                   "bool", "inf", "nan"}


# ---- helpers ------------------------------------------------------------------------------------------------------
def load_yaml(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def env_file_vars(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def parse_port(entry: Any) -> tuple[str | None, str | None, str]:
    """A compose `ports` entry -> (host_ip, published, target)."""
    if isinstance(entry, dict):
        published = entry.get("published")
        return entry.get("host_ip"), None if published is None else str(published), str(entry["target"])
    spec = str(entry).split("/", 1)[0]
    host_ip = None
    if spec.startswith("["):  # [::1]:8080:8080
        host_ip, spec = spec[1:].split("]:", 1)
        published, target = spec.split(":", 1)
        return host_ip, published, target
    parts = spec.split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return None, parts[0], parts[1]
    return None, None, parts[0]


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def parse_listeners(value: str) -> dict[str, tuple[str, int]]:
    """`NAME://host:port,...` -> {NAME: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        out[name] = host_port(address)
    return out


def defined_metrics() -> dict[str, str]:
    """Metric name -> type, parsed from warning/shared/metrics.py (the names are string literals there)."""
    src = METRICS_PY.read_text(encoding="utf-8")
    found = re.findall(r"\b(Counter|Gauge|Histogram|Summary)\(\s*[\"']([a-zA-Z_:][a-zA-Z0-9_:]*)[\"']", src)
    return {name: kind for kind, name in found}


def exported_series(metrics: dict[str, str]) -> dict[str, str]:
    """Series name as queried in PromQL -> the metric it belongs to."""
    out = {}
    for name, kind in metrics.items():
        out[name] = name
        if kind in ("Histogram", "Summary"):
            for suffix in ("_bucket", "_sum", "_count"):
                out[name + suffix] = name
    return out


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, grouping labels, ranges, strings, Grafana
    variables and function names removed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    e = re.sub(r"\{[^{}]*\}", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\$\{[^}]*\}|\$\w+", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", e):
        token = m.group(0)
        if e[m.end():].lstrip().startswith("(") or token.lower() in PROMQL_KEYWORDS:
            continue
        names.add(token)
    return names


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(all_panels(p.get("panels", [])))
    return out


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    args = args.strip()
    return json.loads(args) if args.startswith("[") else shlex.split(args)


# ---- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    docs = load_yaml(COMPOSE_FILE)
    assert len(docs) == 1
    return docs[0]


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def workers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services built from deploy/Dockerfile: the `ews run` workers."""
    out = {}
    for name, svc in services.items():
        build = svc.get("build")
        if isinstance(build, dict):
            dockerfile = (COMPOSE_FILE.parent / build.get("context", ".") / build.get("dockerfile", "Dockerfile"))
            if dockerfile.resolve() == DOCKERFILE.resolve():
                out[name] = svc
    return out


@pytest.fixture(scope="module")
def kafka(services: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    found = [(n, s) for n, s in services.items() if str(s.get("image", "")).startswith("apache/kafka:")]
    assert len(found) == 1, "one Apache Kafka service (official image apache/kafka)"
    return found[0]


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    docs = []
    for path in yaml_files(K8S):
        if path.name != "kustomization.yaml":  # kubectl -k's index, not an object
            docs.extend(load_yaml(path))
    return docs


def k8s_get(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


@pytest.fixture(scope="module")
def workload(k8s: list[dict[str, Any]]) -> dict[str, Any]:
    found = [d for d in k8s if d.get("kind") in ("Deployment", "StatefulSet")]
    assert len(found) == 1, "one Deployment or StatefulSet runs the workers"
    return found[0]


@pytest.fixture(scope="module")
def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="module")
def configmap(k8s: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    names = [src["configMapRef"]["name"] for src in container.get("envFrom", []) if "configMapRef" in src]
    assert len(names) == 1
    (cm,) = k8s_get(k8s, "ConfigMap", names[0])
    return cm["data"]


# ---- every file parses ------------------------------------------------------------------------------------------
def test_every_yaml_file_parses() -> None:
    files = yaml_files(DEPLOY)
    assert COMPOSE_FILE in files and len(files) >= 10
    for path in files:
        docs = load_yaml(path)
        assert docs, f"{path} is empty"
        for doc in docs:
            assert isinstance(doc, dict), f"{path}: every document is a mapping"


def test_env_var_names_are_known_to_config(services: dict[str, Any], workers: dict[str, Any],
                                           configmap: dict[str, str]) -> None:
    """A misspelt variable would be silently ignored: every EWS_/KAFKA_ name given to the service is read by
    warning/shared/config.py."""
    known = set(re.findall(r"e\.get\(\"([A-Z0-9_]+)\"",
                           CONFIG_PY.read_text(encoding="utf-8") + KAFKA_AUTH_PY.read_text(encoding="utf-8")))
    assert {"KAFKA_BOOTSTRAP", "EWS_TOKEN", "EWS_STORE", "EWS_KAFKA_SASL_PASSWORD_FILE", "EWS_DATA_KEY_FILE"} <= known
    given = set(configmap)
    for svc in workers.values():
        given |= set(env_of(svc))
        for env_file in svc.get("env_file", []):
            given |= set(env_file_vars(COMPOSE_FILE.parent / f"{env_file}.example"))
    assert given - known == set()


# ---- compose ------------------------------------------------------------------------------------------------------
def test_compose_has_kafka_two_workers_prometheus_grafana(services: dict[str, Any], workers: dict[str, Any],
                                                          kafka: tuple[str, dict[str, Any]]) -> None:
    assert len(workers) >= 2
    images = {name: str(svc.get("image", "")) for name, svc in services.items()}
    assert any(i.startswith("prom/prometheus:") for i in images.values())
    assert any(i.startswith("grafana/grafana:") for i in images.values())
    for name, image in images.items():
        if name not in workers:
            tag = image.rpartition(":")[2]
            assert ":" in image and tag and tag != "latest", f"{name}: pin the image version ({image})"
    for name, svc in workers.items():
        if "command" in svc:  # otherwise the image's CMD, checked below
            command = svc["command"]
            assert (command if isinstance(command, list) else shlex.split(command)) == ["ews", "run"], name


def kafka_properties() -> dict[str, str]:
    """The broker's server.properties as deploy/kafka/start-kafka.sh writes them (the first heredoc)."""
    text = START_KAFKA.read_text(encoding="utf-8")
    body = text.split('cat > "$CONF" <<PROPS\n', 1)[1].split("\nPROPS\n", 1)[0]
    return dict(line.split("=", 1) for line in body.splitlines() if line and not line.startswith("#"))


def test_kafka_runs_kraft_combined_single_node_with_only_sasl_ssl_clients(kafka: tuple[str, dict[str, Any]],
                                                                          compose: dict[str, Any]) -> None:
    _, svc = kafka
    props = kafka_properties()
    assert env_of(svc)["CLUSTER_ID"]
    assert set(props["process.roles"].split(",")) == {"broker", "controller"}
    listeners = parse_listeners(props["listeners"].replace("://:", "://0.0.0.0:"))
    protocols = dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))
    controller = props["controller.listener.names"]
    assert listeners[controller][0] == "localhost"  # PLAINTEXT, but on the container's loopback only
    (voter,) = props["controller.quorum.voters"].split(",")
    assert voter == f"{props['node.id']}@localhost:{listeners[controller][1]}"
    assert {protocols[n] for n in listeners if n != controller} == {"SASL_SSL"}, "no PLAINTEXT client listener"
    assert protocols[props["inter.broker.listener.name"]] == "SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert "ScramLoginModule" in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert props["offsets.topic.replication.factor"] == "1"  # one broker
    # the store files are the compose secrets the service mounts, made by make-secrets.sh
    mounted = set(svc["secrets"])
    for key in ("ssl.keystore.location", "ssl.truststore.location"):
        secret = PurePosixPath(props[key].replace("$S", "/run/secrets")).name
        assert secret in mounted and (COMPOSE_FILE.parent / compose["secrets"][secret]["file"]).parent.name == "secrets"
    entry = svc["entrypoint"]
    script = next(v.split(":")[1] for v in svc["volumes"] if v.split(":")[0] == "./kafka/start-kafka.sh")
    assert entry[-1] == script
    assert "--add-scram" in START_KAFKA.read_text(encoding="utf-8")


def test_workers_connect_over_sasl_ssl_with_scram(workers: dict[str, Any], kafka: tuple[str, dict[str, Any]],
                                                  compose: dict[str, Any], tmp_path: Path) -> None:
    """The workers' environment, with the secret files in place, is a valid EWS_KAFKA_* configuration for the
    broker's advertised SASL_SSL listener."""
    from warning.shared.config import Settings

    kafka_name, kafka_svc = kafka
    props = kafka_properties()
    advertised = parse_listeners(props["advertised.listeners"])
    protocols = dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))
    app_ids = set()
    for name, svc in workers.items():
        env = env_of(svc)
        app_ids.add(env.get("EWS_APP_ID", "ews"))
        for address in env["KAFKA_BOOTSTRAP"].split(","):
            host, port = host_port(address)
            assert host in (kafka_name, kafka_svc.get("hostname")), f"{name}: {host} is not the kafka service"
            match = [ln for ln, (h, p) in advertised.items() if (h, p) == (host, port)]
            assert match and protocols[match[0]] == env["EWS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["EWS_KAFKA_SASL_MECHANISM"] in props["sasl.enabled.mechanisms"].split(",")
        assert env["EWS_KAFKA_SASL_USERNAME"] == "ews" and "EWS_KAFKA_SASL_PASSWORD" not in env
        local = {}
        for var in ("EWS_KAFKA_SASL_PASSWORD_FILE", "EWS_KAFKA_CA_FILE", "EWS_DATA_KEY_FILE"):
            secret = PurePosixPath(env[var])
            assert secret.parent == PurePosixPath("/run/secrets") and secret.name in svc["secrets"], var
            assert secret.name in compose["secrets"], var
            local[var] = tmp_path / secret.name
        local["EWS_KAFKA_SASL_PASSWORD_FILE"].write_text("pw\n")
        local["EWS_KAFKA_CA_FILE"].write_bytes(Path(certifi.where()).read_bytes())  # any CA bundle
        settings = Settings.from_env(env | {k: str(v) for k, v in local.items()})
        creds = settings.kafka.aiokafka()
        assert (creds["security_protocol"], creds["sasl_mechanism"], creds["sasl_plain_password"]) == (
            "SASL_SSL", "SCRAM-SHA-512", "pw") or pytest.fail(name)
        assert kafka_name in svc["depends_on"]
        assert env.get("EWS_TANSU_COMPAT", "0") in ("0", "false", "")
    assert len(app_ids) == 1, "all workers in one consumer group"


def test_make_secrets_makes_every_file_compose_mounts(compose: dict[str, Any], tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("no openssl")
    script = tmp_path / "kafka" / "make-secrets.sh"
    script.parent.mkdir()
    shutil.copy(MAKE_SECRETS, script)
    subprocess.run(["sh", str(script)], check=True, capture_output=True, timeout=120)
    for name, secret in compose["secrets"].items():
        if name == "ews_metrics_token":
            continue  # written from ews.env's EWS_TOKEN (the compose file's first lines), not by make-secrets.sh
        assert (tmp_path / secret["file"]).is_file(), name
    out = tmp_path / "kafka" / "secrets"
    assert oct(out.stat().st_mode & 0o777) == "0o700"
    check = subprocess.run(["openssl", "verify", "-CAfile", str(out / "ca.pem"), str(out / "broker.pem")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    san = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(out / "broker.pem")],
                         capture_output=True, text=True).stdout
    assert "DNS:kafka" in san
    keystore = (out / "broker-keystore.pem").read_text()
    assert "BEGIN PRIVATE KEY" in keystore and keystore.count("BEGIN CERTIFICATE") == 2  # PKCS#8 key + chain
    from warning.shared.sealing import KeyRing

    assert KeyRing.parse((out / "ews-data.key").read_text().splitlines(), "ews-data.key").current == "k1"


def test_workers_keep_rocksdb_state_in_their_own_volume(compose: dict[str, Any], workers: dict[str, Any]) -> None:
    sources = []
    for name, svc in workers.items():
        env = env_of(svc)
        assert env["EWS_STORE"].startswith("rocksdb://"), name
        mounts = [str(v).split(":") for v in svc.get("volumes", [])]
        data = [m[0] for m in mounts if m[1] == env["EWS_DATA_DIR"]]
        assert len(data) == 1, f"{name}: a volume on EWS_DATA_DIR"
        assert data[0] in compose["volumes"], f"{name}: a named volume"
        sources.append(data[0])
    assert len(set(sources)) == len(sources), "one volume per worker"


def test_worker_token_comes_from_an_env_file(workers: dict[str, Any]) -> None:
    for name, svc in workers.items():
        assert "EWS_TOKEN" not in env_of(svc), f"{name}: no token in the compose file"
        files = svc.get("env_file", [])
        assert files, f"{name}: EWS_TOKEN from an env file"
        for env_file in files:
            example = COMPOSE_FILE.parent / f"{env_file}.example"
            assert "EWS_TOKEN" in env_file_vars(example)
    gitignore = (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()
    assert all(f in gitignore for svc in workers.values() for f in svc["env_file"])


def test_worker_api_binds_all_interfaces_inside_the_container(workers: dict[str, Any]) -> None:
    for name, svc in workers.items():
        env = env_of(svc)
        assert env["EWS_HTTP_HOST"] == "0.0.0.0"
        port = env.get("EWS_HTTP_PORT", "8080")
        assert port == "8080"
        targets = {parse_port(p)[2] for p in svc.get("ports", [])}
        assert targets <= {port}, name


def test_host_ports_are_bound_to_loopback_only(services: dict[str, Any], workers: dict[str, Any]) -> None:
    published = set()
    for name, svc in services.items():
        for entry in svc.get("ports", []):
            host_ip, _, _ = parse_port(entry)
            assert host_ip and ipaddress.ip_address(host_ip).is_loopback, f"{name}: {entry} is not on 127.0.0.1"
            published.add(name)
    grafana = {n for n, s in services.items() if str(s.get("image", "")).startswith("grafana/grafana:")}
    assert published == set(workers) | grafana, "only the API and Grafana are published"


def test_compose_references_resolve(compose: dict[str, Any], services: dict[str, Any]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on", [])
        for dep in deps:
            assert dep in services, f"{name} depends on a missing service {dep}"
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: bind source {source} missing"
            else:
                assert source in compose.get("volumes", {}), f"{name}: volume {source} not declared"


# ---- prometheus ---------------------------------------------------------------------------------------------------
def bind_mounts(svc: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts."""
    out = {}
    for volume in svc.get("volumes", []):
        parts = str(volume).split(":")
        if parts[0].startswith((".", "/")):
            out[parts[1]] = (COMPOSE_FILE.parent / parts[0]).resolve()
    return out


def to_host(svc: dict[str, Any], container_path: str) -> Path | None:
    """A path inside the container, resolved through the service's bind mounts to the repository."""
    for target, source in sorted(bind_mounts(svc).items(), key=lambda kv: -len(kv[0])):
        try:
            rel = PurePosixPath(container_path).relative_to(target)
        except ValueError:
            continue
        return source.joinpath(*rel.parts)
    return None


def service_by_image(services: dict[str, Any], prefix: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(n, s) for n, s in services.items() if str(s.get("image", "")).startswith(prefix)]
    return found


def test_prometheus_scrapes_every_worker_on_its_api_port(services: dict[str, Any], workers: dict[str, Any]) -> None:
    _, prom = service_by_image(services, "prom/prometheus:")
    config_arg = [a for a in prom.get("command", []) if a.startswith("--config.file=")]
    config_path = config_arg[0].split("=", 1)[1] if config_arg else "/etc/prometheus/prometheus.yml"
    host = to_host(prom, config_path)
    assert host is not None and host == (DEPLOY / "prometheus" / "prometheus.yml").resolve()
    (config,) = load_yaml(host)
    targets = set()
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", []):
            targets.update(static["targets"])
    assert targets == {f"{name}:8080" for name in workers}


def test_prometheus_sends_the_token_the_workers_require(compose: dict[str, Any], services: dict[str, Any],
                                                       workers: dict[str, Any]) -> None:
    _, prom = service_by_image(services, "prom/prometheus:")
    (config,) = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "ews"]
    credentials = job["authorization"]["credentials_file"]
    assert job["authorization"].get("type", "Bearer") == "Bearer"
    (secret,) = prom["secrets"]
    assert credentials == f"/run/secrets/{secret}"
    assert compose["secrets"][secret]["file"] == "./prometheus-token"
    for worker in workers.values():
        assert str(worker["environment"]["EWS_METRICS_TOKEN_REQUIRED"]) == "1"


# ---- grafana ----------------------------------------------------------------------------------------------------
def test_grafana_provisioning_paths_exist(services: dict[str, Any]) -> None:
    prom_name, prom = service_by_image(services, "prom/prometheus:")
    _, grafana = service_by_image(services, "grafana/grafana:")
    provisioning = to_host(grafana, "/etc/grafana/provisioning")
    assert provisioning is not None and provisioning == (DEPLOY / "grafana" / "provisioning").resolve()

    datasources = yaml_files(provisioning / "datasources")
    assert datasources
    prom_port = 9090
    for arg in prom.get("command", []):
        if arg.startswith("--web.listen-address="):
            prom_port = host_port(arg.split("=", 1)[1])[1]
    urls = [ds["url"] for path in datasources for ds in load_yaml(path)[0]["datasources"]
            if ds["type"] == "prometheus"]
    assert urls
    for url in urls:
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == (prom_name, prom_port)

    providers = [p for path in yaml_files(provisioning / "dashboards") for p in load_yaml(path)[0]["providers"]]
    assert providers
    for provider in providers:
        folder = to_host(grafana, provider["options"]["path"])
        assert folder is not None and folder.is_dir(), provider["options"]["path"]
        assert (folder / DASHBOARD.name).resolve() == DASHBOARD.resolve()
    home = env_of(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        resolved = to_host(grafana, home)
        assert resolved is not None and resolved.resolve() == DASHBOARD.resolve()
    assert "GF_SECURITY_ADMIN_PASSWORD" in env_of(grafana)
    assert not env_of(grafana)["GF_SECURITY_ADMIN_PASSWORD"].startswith(("admin", "changeme"))


# ---- dashboard ----------------------------------------------------------------------------------------------------
def test_promql_metric_name_parser() -> None:
    assert promql_metric_names(
        'histogram_quantile(0.99, sum by (le) (rate(ews_x_bucket{instance=~"$instance", a="b{c}"}[$__rate_interval])))'
    ) == {"ews_x_bucket"}
    assert promql_metric_names("sum(a_total) by (job) / ignoring(x) b offset 5m > bool 1e3") == {"a_total", "b"}
    assert promql_metric_names("max by (hazard, level) (ews_w)") == {"ews_w"}


def test_dashboard_is_a_grafana_dashboard() -> None:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dash["uid"] and dash["title"]
    assert 36 <= dash["schemaVersion"] <= 41
    panels = all_panels(dash["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for p in panels:
        grid = p["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if p["type"] == "row":
            continue
        assert p["title"] and p["targets"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        assert all(t["expr"].strip() for t in p["targets"])
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instance"} <= variables


def test_dashboard_uses_only_metrics_from_warning_metrics_py() -> None:
    metrics = defined_metrics()
    assert len(metrics) >= 12
    series = exported_series(metrics)
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used: set[str] = set()
    for p in all_panels(dash["panels"]):
        for t in p.get("targets", []):
            names = promql_metric_names(t["expr"])
            unknown = names - set(series)
            if unknown & EXPORTER_METRICS:
                assert "exporter" in p.get("description", "").lower(), f"{p['title']}: say it needs an exporter"
                unknown -= EXPORTER_METRICS
            assert not unknown, f"{p['title']}: {unknown} not in warning/shared/metrics.py"
            if names & set(series) and "histogram_quantile" in t["expr"]:
                assert all(n.endswith("_bucket") for n in names), t["expr"]
            used |= {series[n] for n in names if n in series}
    for var in dash["templating"]["list"]:
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        m = re.match(r"\s*label_values\(\s*([^,]+),", text)
        if m:
            assert promql_metric_names(m.group(1)) <= set(series)
    missing = set(metrics) - used
    assert not missing, f"metrics without a dashboard panel (deploy/grafana/dashboards/ews.json): {missing}"


# ---- kubernetes -------------------------------------------------------------------------------------------------
def resolve_port(container: dict[str, Any], port: int | str) -> int:
    for p in container["ports"]:
        if port in (p["containerPort"], p.get("name")):
            return int(p["containerPort"])
    raise AssertionError(f"port {port} is not a container port")


def test_k8s_objects_share_the_namespace(k8s: list[dict[str, Any]]) -> None:
    (ns,) = k8s_get(k8s, "Namespace")
    for doc in k8s:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == ns["metadata"]["name"], doc["metadata"]["name"]


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in yaml_files(K8S) if p.name != "kustomization.yaml"}


def test_workload_env_from_names_exist(k8s: list[dict[str, Any]], container: dict[str, Any],
                                       configmap: dict[str, str]) -> None:
    sources = container["envFrom"]
    for src in sources:
        if "configMapRef" in src:
            assert k8s_get(k8s, "ConfigMap", src["configMapRef"]["name"])
        elif "secretRef" in src:
            (secret,) = k8s_get(k8s, "Secret", src["secretRef"]["name"])
            assert "EWS_TOKEN" in secret["stringData"]
        else:
            raise AssertionError(src)
    assert any("secretRef" in src for src in sources)
    assert {"KAFKA_BOOTSTRAP", "EWS_PARTITIONS", "EWS_HTTP_HOST", "EWS_DATA_DIR", "EWS_STORE"} <= set(configmap)
    assert all(isinstance(v, str) for v in configmap.values()), "ConfigMap values are strings"
    assert configmap["EWS_HTTP_HOST"] == "0.0.0.0"
    assert configmap["EWS_METRICS_TOKEN_REQUIRED"] == "1"  # on the pod network /metrics is not public either
    assert configmap["EWS_STORE"].startswith("rocksdb://")
    assert "EWS_TOKEN" not in configmap
    assert container.get("command", ["ews", "run"]) == ["ews", "run"]


def test_k8s_workers_connect_over_sasl_ssl(k8s: list[dict[str, Any]], workload: dict[str, Any],
                                           container: dict[str, Any], configmap: dict[str, str],
                                           tmp_path: Path) -> None:
    """ConfigMap + Secret + the mounted CA make a valid SASL_SSL/SCRAM configuration with one shared key ring."""
    from warning.shared.config import Settings

    (secret,) = k8s_get(k8s, "Secret", "ews-secrets")
    data = secret["stringData"]
    assert {"EWS_KAFKA_SASL_PASSWORD", "EWS_DATA_KEY"} <= set(data)
    assert not {"EWS_KAFKA_SASL_PASSWORD", "EWS_DATA_KEY"} & set(configmap), "secrets stay in the Secret"
    ca = PurePosixPath(configmap["EWS_KAFKA_CA_FILE"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    (vol,) = [n for n, path in mounts.items() if PurePosixPath(path) == ca.parent]
    assert [i["path"] for i in volumes[vol]["secret"]["items"]] == [ca.name]
    local_ca = tmp_path / "ca.crt"
    local_ca.write_bytes(Path(certifi.where()).read_bytes())
    env = configmap | data | {"EWS_KAFKA_CA_FILE": str(local_ca)}
    settings = Settings.from_env(env)
    assert (settings.kafka.protocol, settings.kafka.mechanism, settings.kafka.username) == (
        "SASL_SSL", "SCRAM-SHA-512", "ews")
    assert settings.data_key == data["EWS_DATA_KEY"]


def test_services_select_the_worker_pods(k8s: list[dict[str, Any]], workload: dict[str, Any],
                                         container: dict[str, Any]) -> None:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
    services = k8s_get(k8s, "Service")
    assert services
    for svc in services:
        assert svc["spec"]["selector"].items() <= labels.items(), svc["metadata"]["name"]
        for port in svc["spec"]["ports"]:
            resolve_port(container, port.get("targetPort", port["port"]))
    cluster_ip = [s for s in services if s["spec"].get("clusterIP") != "None"]
    assert cluster_ip and all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in cluster_ip)
    assert any(p["port"] == 8080 for s in cluster_ip for p in s["spec"]["ports"])
    for pdb in k8s_get(k8s, "PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_probes_and_scrape_annotations_use_the_api_port(workload: dict[str, Any], container: dict[str, Any],
                                                        configmap: dict[str, str]) -> None:
    api_port = int(configmap.get("EWS_HTTP_PORT", "8080"))
    assert resolve_port(container, "http") == api_port == 8080
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz" and liveness["path"] == "/healthz"
    assert resolve_port(container, readiness["port"]) == resolve_port(container, liveness["port"]) == api_port
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == api_port
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"


def test_pods_run_as_non_root_with_resources(workload: dict[str, Any], container: dict[str, Any]) -> None:
    pod = workload["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    requests = container["resources"]["requests"]
    assert requests["cpu"] and requests["memory"], "the HPA's CPU target needs a request"
    assert container["resources"]["limits"]["memory"]


def test_rocksdb_state_is_on_a_volume_per_pod(k8s: list[dict[str, Any]], workload: dict[str, Any],
                                              container: dict[str, Any], configmap: dict[str, str]) -> None:
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = mounts[configmap["EWS_DATA_DIR"]]
    if workload["kind"] == "StatefulSet":
        assert volume in {t["metadata"]["name"] for t in workload["spec"]["volumeClaimTemplates"]}
        (headless,) = k8s_get(k8s, "Service", workload["spec"]["serviceName"])
        assert headless["spec"]["clusterIP"] == "None"
    else:  # a Deployment's pods cannot share one RocksDB directory
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        assert "persistentVolumeClaim" not in volumes[volume]


def test_hpa_targets_the_workload_within_the_partition_count(k8s: list[dict[str, Any]], workload: dict[str, Any],
                                                            configmap: dict[str, str]) -> None:
    (hpa,) = k8s_get(k8s, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
        workload["apiVersion"], workload["kind"], workload["metadata"]["name"])
    assert 1 <= hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["maxReplicas"] <= int(configmap["EWS_PARTITIONS"]), "workers beyond the partitions idle"
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])


# ---- Dockerfile -------------------------------------------------------------------------------------------------
def test_dockerfile_runs_ews_as_non_root() -> None:
    instructions = dockerfile_instructions(DOCKERFILE)
    args = {i: [a for k, a in instructions if k == i] for i in {k for k, _ in instructions}}
    assert all(re.search(r"python:3\.11-slim", a) for a in args["ARG"] if a.startswith("PYTHON_IMAGE="))
    for base in args["FROM"]:
        assert base.split()[0] in ("python:3.11-slim", "${PYTHON_IMAGE}")
    assert exec_form(args["CMD"][-1]) == ["ews", "run"]
    assert "ENTRYPOINT" not in args
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["ews"] == "warning.cli:main"
    user = args["USER"][-1].split(":")[0]
    assert user not in ("root", "0")
    assert "8080" in args["EXPOSE"][-1].split()
    assert "/healthz" in args["HEALTHCHECK"][-1]
    env = " ".join(args["ENV"])
    assert re.search(r"\bEWS_HTTP_HOST=0\.0\.0\.0\b", env)
    assert "container network" in DOCKERFILE.read_text(encoding="utf-8"), "say why 0.0.0.0 is fine here"
    installs = [a for a in args["RUN"] if "pip " in a]
    assert installs and not any("[dev]" in a or ".[" in a for a in installs), "no dev extras in the image"


def test_dockerfile_copies_exist_and_are_not_ignored() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for kind, arg in dockerfile_instructions(DOCKERFILE):
        if kind != "COPY" or arg.startswith("--from"):
            continue
        *sources, _ = arg.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert "*" not in ignore or source.rstrip("/") in allowed, f"{source} is excluded from the context"


def test_deploy_runs_the_kafka_version_the_tests_use() -> None:
    """The single-machine mode and the Kafka tests run the jars of deploy/kafka/pom.xml; compose runs the same."""
    import re

    from warning.kafka_node import KAFKA_VERSION

    pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text()
    compose = (ROOT / "deploy" / "docker-compose.yml").read_text()
    assert re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1) == KAFKA_VERSION  # type: ignore[union-attr]
    assert f"image: apache/kafka:{KAFKA_VERSION}" in compose
