"""Where the running service is: `ews run` writes ``<data dir>/service.json`` (its pid, API URL and broker
bootstrap) once it listens, and removes it when it stops. `ews ingest`, `ews replay` and the operator commands
read it, so they find the embedded broker (on a random port) and the API without flags.

Explicit settings win: ``--bootstrap`` / ``KAFKA_BOOTSTRAP`` and ``--url`` / ``EWS_URL``. A file left by a process
that is gone (a SIGKILL) is ignored, and the commands say so.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import orjson

FILE_NAME = "service.json"


@dataclass(frozen=True)
class RunningService:
    pid: int
    url: str  # the API's base, e.g. http://127.0.0.1:8080
    bootstrap: str  # the Kafka bootstrap the service uses (its own embedded broker, or KAFKA_BOOTSTRAP)
    path: Path

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: it exists
            return True
        return True


def default_data_dir() -> Path:
    """The data dir the commands look in: EWS_DATA_DIR, else ./data (as `ews run`)."""
    return Path(os.environ.get("EWS_DATA_DIR") or "data")


def write(data_dir: Path, *, url: str, bootstrap: str) -> Path:
    """Record this process as the running service (0600: it is the operator's, as the token next to it)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / FILE_NAME
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps({"pid": os.getpid(), "url": url, "bootstrap": bootstrap}))
    os.replace(tmp, path)
    return path


def remove(data_dir: Path) -> None:
    """Remove the record if it is this process's (a second `ews run` refused at start must not remove the first's)."""
    found = read(data_dir)
    if found is not None and found.pid == os.getpid():
        with contextlib.suppress(OSError):
            found.path.unlink()


def read(data_dir: Path | None = None) -> RunningService | None:
    """The record in ``data_dir`` (default :func:`default_data_dir`), alive or not; None when there is none."""
    path = (data_dir or default_data_dir()) / FILE_NAME
    try:
        raw = orjson.loads(path.read_bytes())
        return RunningService(int(raw["pid"]), str(raw["url"]), str(raw["bootstrap"]), path)
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class NoRunningService(LookupError):
    """No broker given and no live service recorded in the data dir; the message says what to do."""


def find_bootstrap(explicit: str | None, data_dir: Path | None = None) -> str:
    """``explicit`` (``--bootstrap``), else KAFKA_BOOTSTRAP, else the running service's broker."""
    if explicit:
        return explicit
    if os.environ.get("KAFKA_BOOTSTRAP"):
        return os.environ["KAFKA_BOOTSTRAP"]
    found = read(data_dir)
    where = (data_dir or default_data_dir()) / FILE_NAME
    if found is None:
        raise NoRunningService(f"no running service found ({where} does not exist): start it with `make run` "
                               "(or `ews run`) in this directory, set EWS_DATA_DIR to its data dir, or give "
                               "--bootstrap HOST:PORT / KAFKA_BOOTSTRAP")
    if not found.alive():
        raise NoRunningService(f"the service recorded in {where} (pid {found.pid}) is not running: start it with "
                               "`make run`, or give --bootstrap HOST:PORT / KAFKA_BOOTSTRAP")
    return found.bootstrap


def find_url(data_dir: Path | None = None) -> str | None:
    """The running service's API URL, or None (no record, or its process is gone)."""
    found = read(data_dir)
    return found.url if found is not None and found.alive() else None
