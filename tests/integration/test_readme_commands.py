"""First contact (issue 20): the README's first-steps block, run as written against a running `ews run` from its
directory (the commands find the service's broker, API and token in ./data by themselves); the URL and token
printed last, framed, once ready; a busy port refused in one line before anything is printed as ready; unknown
hazards and regions answered with the valid values."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.support import TOKEN, running_ews

ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- readme-test: first-steps -->"


def readme_commands(readme: Path = ROOT / "README.md") -> list[str]:
    """The shell commands of the code block after MARK: continuation lines joined, comments dropped."""
    text = readme.read_text(encoding="utf-8")
    block = text.split(MARK, 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands, current = [], ""
    for line in block.splitlines():
        current += line
        if current.rstrip().endswith("\\"):
            current = current.rstrip()[:-1] + " "
            continue
        words = shlex.split(current, comments=True)
        if words:
            commands.append(shlex.join(words))
        current = ""
    return commands


def shim_bin(tmp_path: Path) -> Path:
    """`ews` on the PATH as `. .venv/bin/activate` gives it, running this checkout's code."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ews = bin_dir / "ews"
    ews.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(ROOT))} exec {shlex.quote(sys.executable)} "
                   f"-m warning.cli \"$@\"\n")
    ews.chmod(0o755)
    return bin_dir


def user_env(bin_dir: Path) -> dict[str, str]:
    """A second terminal: no broker, URL, token or data dir in the environment."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP", "EWS_URL", "EWS_TOKEN", "EWS_DATA_DIR", "PYTHONPATH")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def sh(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def test_the_block_is_found() -> None:
    commands = readme_commands()
    assert [c.split()[:2] for c in commands] == [["ews", "ingest"], ["ews", "warnings"], ["ews", "replay"]]
    assert "--bootstrap" not in " ".join(commands)  # nothing the user could not know


async def test_readme_commands_as_written(tmp_path: Path) -> None:
    workdir = tmp_path / "checkout"  # the directory `make run` runs in: data/ here, tests/data beside it
    workdir.mkdir()
    (workdir / "tests").symlink_to(ROOT / "tests")
    env = user_env(shim_bin(tmp_path))
    async with running_ews(workdir, data_dir=workdir / "data") as ews:
        await asyncio.sleep(0.5)  # the banner follows readiness by a print
        out = ews.output()
        assert (workdir / "data" / "service.json").exists()
        # the URL and token last, framed, after the start-up logs
        tail = [line for line in out.splitlines() if line.strip()][-6:]
        frame = [i for i, line in enumerate(tail) if re.fullmatch(r"=+", line)]
        assert len(frame) == 2, tail
        framed = "\n".join(tail[frame[0]:frame[1] + 1])
        assert f"EWS is ready: {ews.url}/" in framed and "token:      from EWS_TOKEN" in framed
        assert TOKEN not in out

        # a second `ews run` on the same port: one line, exit 2, nothing printed as ready
        second = subprocess.run([sys.executable, "-m", "warning.cli", "run"], capture_output=True, text=True,
                                timeout=120, cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(ROOT), "EWS_TOKEN": TOKEN,
                                     "EWS_DATA_DIR": str(tmp_path / "second"), "EWS_HTTP_PORT": str(ews.port),
                                     "EWS_BROKER": "tansu"})
        assert second.returncode == 2
        assert second.stdout == ""
        assert second.stderr.strip().count("\n") == 0
        assert f"port {ews.port} on 127.0.0.1 is in use" in second.stderr

        commands = readme_commands()
        for command in commands:
            done = await asyncio.to_thread(sh, command, workdir, env)
            assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            if command.startswith("ews ingest"):
                assert "published" in done.stderr, done.stderr
            if command.startswith("ews warnings"):  # the drill's warnings arrive within seconds
                for _ in range(60):
                    if "heat" in done.stdout and "rainstorm" in done.stdout:
                        break
                    await asyncio.sleep(1)
                    done = await asyncio.to_thread(sh, command, workdir, env)
                assert "heat" in done.stdout and "rainstorm" in done.stdout, done.stdout
            if command.startswith("ews replay"):
                assert "heat" in done.stdout and "orange" in done.stdout, done.stdout

        # typos are errors naming the valid values, not "(no warnings)"
        bad_hazard = await asyncio.to_thread(sh, "ews warnings --hazard heet", workdir, env)
        assert bad_hazard.returncode == 1 and "heat" in bad_hazard.stderr and "rainstorm" in bad_hazard.stderr
        bad_region = await asyncio.to_thread(sh, "ews warnings --region 62098", workdir, env)
        assert bad_region.returncode == 1 and "620982 Dunhuang" in bad_region.stderr
        bad_level = await asyncio.to_thread(sh, "ews warnings --level amber", workdir, env)
        assert bad_level.returncode == 2 and "blue, yellow, orange, red" in bad_level.stderr
        bad_replay = await asyncio.to_thread(sh, "ews replay --from 2017-06-01T00:00:00Z --region 6201",
                                             workdir, env)
        assert bad_replay.returncode == 2 and "620100 Lanzhou" in bad_replay.stderr
    assert not (workdir / "data" / "service.json").exists()  # removed on stop

    # with the service gone, the commands say so instead of hanging on a dead broker
    gone = await asyncio.to_thread(sh, commands[0], workdir, env)
    assert gone.returncode == 2 and "no running service found" in gone.stderr
