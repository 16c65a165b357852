import stat
from pathlib import Path

from warning.shared.config import Settings, ensure_token


def test_generated_token_is_stored_0600_and_reused(tmp_path: Path) -> None:
    s = Settings.from_env({"EWS_DATA_DIR": str(tmp_path)})
    token, created = ensure_token(s)
    assert created and len(token) >= 32
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    assert ensure_token(s) == (token, False)


def test_env_token_wins_and_defaults_bind_loopback(tmp_path: Path) -> None:
    s = Settings.from_env({"EWS_TOKEN": "a" * 32, "EWS_DATA_DIR": str(tmp_path),
                           "EWS_WEBHOOK_ALLOW_NETS": "127.0.0.0/8, 10.0.0.0/8"})
    assert ensure_token(s) == ("a" * 32, False)
    assert s.http_host == "127.0.0.1" and s.http_port == 8080 and s.kafka_bootstrap is None
    assert [str(n) for n in s.webhook_allow_nets] == ["127.0.0.0/8", "10.0.0.0/8"]


def test_tick_interval_is_30_s_unless_configured() -> None:
    assert Settings.from_env({}).tick_interval_s == 30.0
    assert Settings.from_env({"EWS_TICK_INTERVAL": "2"}).tick_interval_s == 2.0
