"""First contact (issue 20): how the commands find the running service, the busy-port refusal, the ready banner,
and region typos answered with the valid codes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from warning.service import PortInUse, bind_listener, ready_banner
from warning.shared import running
from warning.shared.config import Settings
from warning.shared.regions import RegionTree


def test_the_running_service_is_found_while_it_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    with pytest.raises(running.NoRunningService, match="no running service found"):
        running.find_bootstrap(None, tmp_path)
    path = running.write(tmp_path, url="http://127.0.0.1:8123", bootstrap="127.0.0.1:39001")
    assert path.stat().st_mode & 0o777 == 0o600
    assert running.find_bootstrap(None, tmp_path) == "127.0.0.1:39001"
    assert running.find_url(tmp_path) == "http://127.0.0.1:8123"
    assert running.find_bootstrap("10.0.0.9:9092", tmp_path) == "10.0.0.9:9092"  # --bootstrap wins
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "kafka:9092")
    assert running.find_bootstrap(None, tmp_path) == "kafka:9092"  # so does KAFKA_BOOTSTRAP
    running.remove(tmp_path)
    assert not path.exists()


def test_a_record_of_a_dead_process_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / running.FILE_NAME).write_text(
        f'{{"pid": {gone.pid}, "url": "http://127.0.0.1:8124", "bootstrap": "127.0.0.1:1"}}')
    with pytest.raises(running.NoRunningService, match=f"pid {gone.pid}.*is not running"):
        running.find_bootstrap(None, tmp_path)
    assert running.find_url(tmp_path) is None


def test_remove_leaves_another_process_record(tmp_path: Path) -> None:
    (tmp_path / running.FILE_NAME).write_text(f'{{"pid": {os.getppid()}, "url": "u", "bootstrap": "b"}}')
    running.remove(tmp_path)  # a second `ews run` refused at start must not remove the first one's record
    assert (tmp_path / running.FILE_NAME).exists()


def test_a_busy_port_is_one_clear_error(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is in use.*EWS_HTTP_PORT=8081"):
            bind_listener(Settings(http_port=port, data_dir=tmp_path))
    finally:
        taken.close()
    sock = bind_listener(Settings(http_port=port, data_dir=tmp_path))  # free again: ours
    try:
        assert sock.getsockname()[1] == port
    finally:
        sock.close()


def test_the_ready_banner_frames_url_and_token(tmp_path: Path) -> None:
    text = ready_banner(Settings(http_port=8090, data_dir=tmp_path), "tok" * 12, True, "embedded tansu")
    lines = text.splitlines()
    assert set(lines[0]) == {"="} and lines[-1] == lines[0]
    assert all(len(line) < len(lines[0]) for line in lines[1:-1])
    assert "EWS is ready: http://127.0.0.1:8090/" in text and "tok" * 12 in text and "stored 0600" in text
    from_env = ready_banner(Settings(http_port=8090, data_dir=tmp_path, token="x" * 40), "x" * 40, False, "k")
    assert "x" * 40 not in from_env and "from EWS_TOKEN" in from_env


def test_region_typos_name_the_nearest_codes_and_the_prefectures() -> None:
    tree = RegionTree.load()
    hint = tree.valid_codes_hint("62098")
    assert hint.startswith("did you mean 620982 Dunhuang")
    assert "620100 Lanzhou" in hint and "620000" in hint
    assert "620982" in tree.valid_codes_hint("Dunhuang")
