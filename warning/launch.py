"""`ews run` as a child process: the one launcher the integration tests, `make chaos` and `make bench` share.

Each process gets its own data directory, a free loopback HTTP port, a known token, webhooks to loopback allowed
(the receivers are local) and a short group session timeout (tansu holds a join for half of it, BROKER.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from warning.broker import free_port

ROOT = Path(__file__).resolve().parents[1]  # the checkout: `-m benchmarks.worker` / `-m chaos` live beside warning/


@dataclass
class EwsProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    token: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


P = TypeVar("P", bound=EwsProcess)


def start_ews(workdir: Path, *, token: str, env_extra: dict[str, str] | None = None, port: int | None = None,
              module: str = "warning.cli", data_dir: Path | None = None, log_name: str = "ews",
              cls: type[P] = EwsProcess, run_args: tuple[str, ...] = ()) -> P:  # type: ignore[assignment]
    """``python -m <module> run [run_args]`` with its own data dir and HTTP port; output appended to
    <log_name>-<port>.log."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = workdir / f"{log_name}-{port}.log"
    env = {**os.environ, "EWS_BROKER": "tansu",  # fast tests; the Kafka tests ask for "kafka"
           "EWS_TOKEN": token, "EWS_DATA_DIR": str(data_dir or workdir / "data"),
           "EWS_HTTP_PORT": str(port), "EWS_WEBHOOK_ALLOW_NETS": "127.0.0.0/8", "EWS_SESSION_TIMEOUT": "2",
           **(env_extra or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    args = [sys.executable, "-m", module] + (["run", *run_args] if module == "warning.cli" else [])
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=workdir)
    return cls(proc, port, log, env, token)
