import os
import signal
import subprocess
import sys
import time

from kafka import KafkaAdminClient

from warning.broker import EmbeddedBroker, metadata_ok


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
        return f.read().split()[2] != "Z"


def test_embedded_broker_answers_metadata_and_stops_by_pid() -> None:
    b = EmbeddedBroker().start()
    pid = b.pid
    assert pid is not None and b.host == "127.0.0.1"
    admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    assert isinstance(admin.list_topics(), list)
    admin.close()
    b.stop()
    assert not _alive(pid)
    assert not metadata_ok(b.bootstrap, timeout_s=0.3)


def test_ews_broker_command_stops_tansu_on_sigterm_and_sigint() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([sys.executable, "-m", "warning.cli", "broker"], stdout=subprocess.PIPE,
                                text=True, env={k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"})
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "embedded broker (tansu) on 127.0.0.1:" in line, line
        tansu_pid = int(line.split("pid ")[1].split(";")[0])
        assert _alive(tansu_pid)
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
        deadline = time.monotonic() + 5
        while _alive(tansu_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(tansu_pid)


def test_ews_broker_refuses_when_kafka_bootstrap_set() -> None:
    r = subprocess.run([sys.executable, "-m", "warning.cli", "broker"], capture_output=True, text=True,
                       env={**os.environ, "KAFKA_BOOTSTRAP": "127.0.0.1:1"}, timeout=30)
    assert r.returncode == 2 and "KAFKA_BOOTSTRAP" in r.stderr
