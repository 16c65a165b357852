"""`ews run` refuses a malformed rules table or an unreachable Kafka with one clear line and exit code 2."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_ews(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "warning.cli", "run"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EWS_DATA_DIR": str(tmp_path), "EWS_TOKEN": "t" * 32, **env})


def test_malformed_rules_stop_the_service_before_anything_starts(tmp_path: Path) -> None:
    text = (ROOT / "warning" / "data" / "rules.toml").read_text(encoding="utf-8")
    bad = tmp_path / "rules.toml"
    bad.write_text(text.replace('op = ">=", value = 40.0 }]', 'op = "=>", value = 40.0 }]'), encoding="utf-8")
    r = run_ews(tmp_path, EWS_RULES=str(bad))
    assert r.returncode == 2
    assert "rules are invalid" in r.stderr and "hazards.heat.levels[2].all[0]: op must be one of" in r.stderr


def test_unreachable_kafka_is_named(tmp_path: Path) -> None:
    r = run_ews(tmp_path, KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert r.returncode == 2 and "cannot reach Kafka at 127.0.0.1:1" in r.stderr
