"""`make run` installs the package with its `embedded` extra only: nothing `ews run` and the operator commands
import at start may come from the dev extra (a fresh clone's `make run` failed on lxml, a dev-only package)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# top-level modules of the dev and cap-signing extras (pyproject.toml), none of them in the runtime install
DEV_ONLY = ("pytest", "hypothesis", "ruff", "mypy", "climate_indices", "metpy", "xclim", "thermofeel", "xmlschema",
            "lxml", "playwright", "schemathesis", "standardwebhooks", "signxml")

PROBE = f"""
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {DEV_ONLY!r}:
            raise ImportError('dev-only module imported at run time: ' + name)
        return None
sys.meta_path.insert(0, Refuse())
for m in list(sys.modules):
    if m.split('.')[0] in {DEV_ONLY!r}:
        del sys.modules[m]
import warning.cli, warning.service, warning.app, warning.operator_cli, ingest.producer, ingest.forecasts
import warning.web.api, warning.keys_cli, warning.operator_tokens, warning.climatology
try:
    warning.cli.main(['--help'])
except SystemExit as exc:
    assert exc.code == 0, exc.code
print('ok')
"""


def test_run_time_modules_need_no_dev_extra() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
