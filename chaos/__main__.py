"""`python -m chaos [scenario ...] [--workdir DIR] [--json FILE]`: run the fault scenarios, print a table, exit 1
if a webhook was lost or a scenario failed its checks."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from chaos.kafka_scenarios import KAFKA_SCENARIOS
from chaos.neighbours import hostile_neighbours
from chaos.scenarios import SCENARIOS as FIRST_SCENARIOS
from chaos.scenarios import Result

SCENARIOS = {**FIRST_SCENARIOS, **KAFKA_SCENARIOS,
             "neighbours": ("3 healthy receivers beside 5 hostile ones: p99 within 2x", hostile_neighbours)}
BUDGET_S = {"flaky": 150, "sigkill": 200, "broker": 330, "hostile": 360, "pause": 240, "stopstart": 420,
            "killboth": 420, "neighbours": 300}


async def _run_one(name: str, work: Path) -> Result:
    title, scenario = SCENARIOS[name]
    res = Result(title)
    try:
        await asyncio.wait_for(scenario(work / name, res), BUDGET_S[name])
    except TimeoutError:
        res.ok = False
        res.note(f"scenario timed out after {BUDGET_S[name]} s")
    except Exception as exc:
        res.ok = False
        res.note(f"scenario aborted: {type(exc).__name__}: {str(exc)[:1500]}")
        res.note("chaos traceback: " + traceback.format_exc()[-1500:].replace("\n", "\n    "))
    return res


def _print(results: list[Result]) -> None:
    head = f"{'scenario':<62} {'expected':>8} {'delivered':>9} {'lost':>5} {'dups':>5} {'recover s':>9}  ok"
    print("\n" + head)
    print("-" * len(head))
    for r in results:
        rec = "-" if r.recover_s is None else f"{r.recover_s:.1f}"
        print(f"{r.name:<62} {r.expected:>8} {r.delivered:>9} {r.lost:>5} {r.duplicates:>5} {rec:>9}  "
              f"{'yes' if r.ok else 'NO'}")
    for r in results:
        print(f"\n## {r.name}")
        for k, v in r.figures.items():
            print(f"  {k}: {v}")
        for n in r.notes:
            print(f"  NOTE: {n}")
        if r.crash_log:
            print("  worker log excerpt:")
            print("    " + r.crash_log.replace("\n", "\n    "))


def main(argv: list[str] | None = None) -> int:
    # moto/boto3 installed outside the venv (pip install --target DIR): visible to this runner and to moto_server
    # only, never to the worker (CHAOS_EXTRA_PATH is appended, so the venv's own packages win here).
    extra = os.environ.get("CHAOS_EXTRA_PATH")
    if extra and extra not in sys.path:
        sys.path.append(extra)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the receivers' scripted connection resets
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    p = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--workdir", type=Path, default=None, help="logs and data (default: a temporary dir)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = p.parse_args(argv)
    names = args.scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ews-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"chaos: {', '.join(names)}; logs in {work}", flush=True)
    results: list[Result] = []
    t0 = time.monotonic()
    for name in names:
        t = time.monotonic()
        res = asyncio.run(_run_one(name, work))
        res.figures["scenario_s"] = round(time.monotonic() - t, 1)
        print(f"  {name}: {'ok' if res.ok else 'FAILED'} in {res.figures['scenario_s']} s "
              f"(lost {res.lost}, duplicates {res.duplicates})", flush=True)
        if "issue 17 findings" in res.figures:
            print(f"  {name}: issue 17 findings {res.figures['issue 17 findings']}", flush=True)
        results.append(res)
    _print(results)
    print(f"\ntotal {time.monotonic() - t0:.0f} s; logs in {work}")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2, default=str))
    lost = sum(r.lost for r in results)
    return 1 if lost or not all(r.ok for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
