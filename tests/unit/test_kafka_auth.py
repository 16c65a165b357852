"""EWS_KAFKA_* settings build the credentials faust, aiokafka and kafka-python are given, and a missing or
inconsistent configuration fails at start with a message naming the variable."""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi
import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from ingest.kafka_producer import producer_config
from warning import cli
from warning.app import faust_app
from warning.shared.config import Settings
from warning.shared.kafka_auth import KafkaAuth, KafkaConfigError

CA = certifi.where()  # any PEM bundle will do as "the CA file"
SCRAM = {"KAFKA_BOOTSTRAP": "kafka:9093", "EWS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
         "EWS_KAFKA_SASL_USERNAME": "ews", "EWS_KAFKA_SASL_PASSWORD": "s3cret", "EWS_KAFKA_CA_FILE": CA}


def test_plaintext_by_default() -> None:
    auth = Settings.from_env({}).kafka
    assert auth == KafkaAuth() and auth.faust_credentials() is None
    assert auth.aiokafka() == auth.kafka_python() == {"security_protocol": "PLAINTEXT"}
    assert producer_config("h:1", auth)["security_protocol"] == "PLAINTEXT"


def test_sasl_ssl_scram_for_every_client() -> None:
    s = Settings.from_env(SCRAM)
    auth = s.kafka
    assert (auth.protocol, auth.mechanism, auth.username) == ("SASL_SSL", "SCRAM-SHA-512", "ews")
    assert "s3cret" not in repr(s)
    creds = auth.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    faust_kw = credentials_to_aiokafka_auth(creds)  # what faust hands its aiokafka consumer and producer
    assert {k: v for k, v in faust_kw.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "ews",
        "sasl_plain_password": "s3cret"}
    ctx = faust_kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    aio = auth.aiokafka()
    assert aio["security_protocol"] == "SASL_SSL" and aio["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(aio["ssl_context"], ssl.SSLContext)
    kp = producer_config("kafka:9093", auth)
    assert {k: kp[k] for k in ("security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
                               "ssl_cafile", "ssl_check_hostname")} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "ews",
        "sasl_plain_password": "s3cret", "ssl_cafile": CA, "ssl_check_hostname": True}
    app = faust_app(s, "kafka:9093")
    got = app.conf.broker_credentials
    assert isinstance(got, faust.SASLCredentials) and got.protocol.value == "SASL_SSL" and got.username == "ews"


def test_password_from_a_file_and_tls_only(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    env = {k: v for k, v in SCRAM.items() if k != "EWS_KAFKA_SASL_PASSWORD"} | {
        "EWS_KAFKA_SASL_PASSWORD_FILE": str(pw), "EWS_KAFKA_SASL_MECHANISM": "scram-sha-256"}
    auth = Settings.from_env(env).kafka
    assert (auth.password, auth.mechanism) == ("from-file", "SCRAM-SHA-256")
    tls = Settings.from_env({"KAFKA_BOOTSTRAP": "k:9093", "EWS_KAFKA_SECURITY_PROTOCOL": "ssl"}).kafka
    assert isinstance(tls.faust_credentials(), faust.SSLCredentials)
    assert tls.kafka_python() == {"security_protocol": "SSL", "ssl_check_hostname": True}


@pytest.mark.parametrize(("change", "message"), [
    ({"EWS_KAFKA_SECURITY_PROTOCOL": "TLS"}, "EWS_KAFKA_SECURITY_PROTOCOL: 'TLS' is not one of"),
    ({"EWS_KAFKA_SASL_USERNAME": ""}, "EWS_KAFKA_SASL_USERNAME: required with SASL_SSL"),
    ({"EWS_KAFKA_SASL_PASSWORD": ""}, "EWS_KAFKA_SASL_PASSWORD .or _FILE.: required"),
    ({"EWS_KAFKA_SASL_MECHANISM": "GSSAPI"}, "EWS_KAFKA_SASL_MECHANISM: 'GSSAPI' is not one of"),
    ({"EWS_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"}, "not both"),
    ({"EWS_KAFKA_SASL_PASSWORD": "", "EWS_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"},
     "EWS_KAFKA_SASL_PASSWORD_FILE: cannot read /nonexistent/pw"),
    ({"EWS_KAFKA_CA_FILE": "/nonexistent/ca.pem"}, "EWS_KAFKA_CA_FILE: /nonexistent/ca.pem does not exist"),
    ({"EWS_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, "EWS_KAFKA_SASL_\\* is set but EWS_KAFKA_SECURITY_PROTOCOL is"),
    ({"EWS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "EWS_KAFKA_SASL_MECHANISM": "PLAIN",
      "EWS_KAFKA_CA_FILE": ""}, "sends the password in clear"),
    ({"EWS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "EWS_KAFKA_CA_FILE is set but .* SASL_PLAINTEXT"),
])
def test_inconsistent_settings_fail_naming_the_variable(change: dict[str, str], message: str) -> None:
    with pytest.raises(KafkaConfigError, match=message) as exc:
        Settings.from_env(SCRAM | change)
    assert "s3cret" not in str(exc.value)


def test_ews_run_refuses_a_bad_kafka_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for k in ("KAFKA_BOOTSTRAP", "EWS_DATA_KEY", "EWS_DATA_KEY_FILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("EWS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    assert cli.main(["run", "--data-dir", str(tmp_path)]) == 2
    assert "EWS_KAFKA_SASL_USERNAME: required with SASL_SSL" in capsys.readouterr().err
    monkeypatch.setenv("EWS_KAFKA_SASL_USERNAME", "ews")
    monkeypatch.setenv("EWS_KAFKA_SASL_PASSWORD", "pw")
    # complete, but for the broker `ews run` would start itself: PLAINTEXT on loopback, so refused
    assert cli.main(["run", "--data-dir", str(tmp_path)]) == 2
    assert "needs KAFKA_BOOTSTRAP" in capsys.readouterr().err
    monkeypatch.setenv("EWS_DATA_KEY", "k1:short")
    assert cli.main(["run", "--data-dir", str(tmp_path)]) == 2
    assert "EWS_DATA_KEY: key 'k1' is not 32 bytes" in capsys.readouterr().err
