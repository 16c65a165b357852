"""`make bench` = ``python -m benchmarks``: every benchmark, one table, ``benchmarks/results.json``.

Each row carries the baseline measured in the same run (a bare aiokafka consumer on the same broker, the
reference library on the same input, or the issue's aim where there is no physical baseline) and the ratio.
Options: ``--quick`` (smaller sizes, < 3 min), ``--only NAME`` (repeatable), ``--profile`` (py-spy on the
throughput worker, if py-spy is found: ``$PY_SPY``, ``/tmp/pyspy/bin/py-spy`` or on PATH), ``--out FILE``.
Benchmarks are not tests: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import sys
import time
import traceback
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import orjson

from benchmarks import common as c
from benchmarks import grid_bench, ingest_bench, latency, pipeline
from benchmarks import indices as kernels

NAMES = ("throughput", "per_event", "latency", "scaleout", "memory", "kernels", "ingest", "grid")
CODE_DIRS = ("warning", "ingest", "alerts", "indices")


def code_fingerprint() -> str:
    """sha256 over the pipeline's Python sources: runs of different code are told apart."""
    h = hashlib.sha256()
    for d in CODE_DIRS:
        for p in sorted((c.ROOT / d).rglob("*.py")):
            h.update(p.relative_to(c.ROOT).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def find_pyspy() -> str | None:
    for cand in (os.environ.get("PY_SPY"), "/tmp/pyspy/bin/py-spy", shutil.which("py-spy")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and abs(v) < 10:
        return f"{v:.3g}{unit}"
    if isinstance(v, int | float):
        return f"{v:,.0f}{unit}"
    return f"{v}{unit}"


def _ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 4) if isinstance(a, int | float) and isinstance(b, int | float) and b else None


def table(d: dict[str, Any]) -> tuple[list[tuple[str, str, str, str, str]], dict[str, Any]]:
    """Rows (what, ours, same-run baseline, ratio, note) and the results.json figures."""
    rows: list[tuple[str, str, str, str, str]] = []
    res: dict[str, Any] = {}
    tp = d.get("throughput")
    if tp:
        res.update(throughput_obs_s=tp["pipeline_obs_s"], throughput_ratio_vs_raw_consumer=tp["ratio_vs_bare"],
                   throughput_bare_consumer_obs_s=tp["bare_obs_s"])
        rows.append(("throughput, batches of 1000 (obs/s)", _fmt(tp["pipeline_obs_s"]),
                     f"{_fmt(tp['bare_obs_s'])} bare aiokafka+orjson", _fmt(tp["ratio_vs_bare"]),
                     f"{tp['n']:,} obs, {tp['stations']:,} stations, {tp['worker_cpu_us_per_obs']} us CPU/obs"
                     + (" TIMED OUT" if tp.get("timed_out") else "")))
    pe = d.get("per_event")
    if pe:
        res.update(per_event_obs_s=pe["pipeline_obs_s"], per_event_ratio_vs_raw_consumer=pe["ratio_vs_bare"])
        rows.append(("per-event, 1 obs per message (obs/s)", _fmt(pe["pipeline_obs_s"]),
                     f"{_fmt(pe['bare_obs_s'])} bare, same messages", _fmt(pe["ratio_vs_bare"]),
                     f"{pe['n']:,} obs" + (" TIMED OUT" if pe.get("timed_out") else "")))
    la = d.get("latency")
    if la:
        res.update(e2e_latency_p50_s=la["p50_s"], e2e_latency_p95_s=la["p95_s"], e2e_latency_p99_s=la["p99_s"])
        note = (f"{la['rate_obs_s']:,} obs/s x {la['duration_s']:g} s, {la['timed']:,} timed deliveries of "
                f"{la['distinct_events']} events to {la['receivers']} receivers")
        for q in ("p50", "p95", "p99"):
            rows.append((f"e2e latency {q}, POST -> webhook (s)", _fmt(la[f"{q}_s"]), "aim p99 < 1 s",
                         _fmt(_ratio(la[f"{q}_s"], 1.0)), note if q == "p50" else ""))
    so = d.get("scaleout")
    if so:
        res.update(scaleout_ratio_2_vs_1=so["ratio_2_vs_1"], rebalance_s=so.get("join_rebalance_s"),
                   rebalance_leave_s=so.get("leave_rebalance_s"))
        rows.append(("scale-out, 2 workers (obs/s)", _fmt(so["two_workers_obs_s"]),
                     f"{_fmt(so['one_worker_obs_s'])} 1 worker", _fmt(so["ratio_2_vs_1"]),
                     f"{so['n']:,} obs; 2 cores shared with tansu"))
        rows.append(("rebalance, worker joins (s)", _fmt(so.get("join_rebalance_s")), "-", "-",
                     f"new worker start -> both /readyz and split ({_fmt(so.get('join_split_running_s'))} s to "
                     f"split); running worker paused "
                     f"{_fmt(so.get('join_pause_on_running_worker_s'))} s"))
        rows.append(("rebalance, worker leaves (SIGTERM) (s)", _fmt(so.get("leave_rebalance_s")), "-", "-",
                     f"paused {_fmt(so.get('leave_pause_on_running_worker_s'))} s"))
    mem = d.get("memory")
    if mem:
        at = mem.get("rss_mb_at", {})
        res.update(peak_rss_mb=mem["peak_rss_mb"],
                   rss_growth_mb_per_100k_obs=mem.get("rss_growth_mb_per_100k_2nd_half"))
        rows.append(("worker peak RSS (MB)", _fmt(mem["peak_rss_mb"]), f"{_fmt(at.get('25%'))} at 25 % of backlog",
                     _fmt(_ratio(mem["peak_rss_mb"], at.get("25%"))),
                     f"after {mem['n']:,} obs; RSS at 25/50/75/100 %: {list(at.values())}; growth 2nd half "
                     f"{mem.get('rss_growth_mb_per_100k_2nd_half')} MB/100k; tansu RSS {mem.get('broker_rss_mb')} MB"))
    k = d.get("kernels")
    if k:
        res.update(spi_ratio_vs_climate_indices=k["spi"]["ratio"],
                   heat_index_ratio_vs_metpy=k["heat_index"]["ratio"],
                   spi_from_params_ms=k["spi_from_params"]["median_ms"])
        s, h, f = k["spi"], k["heat_index"], k["spi_from_params"]
        rows.append((f"spi {s['shape'][0]}x{s['shape'][1]} (s)", _fmt(s["ours_s"]),
                     f"{_fmt(s['ref_s'])} climate_indices",
                     _fmt(s["ratio"]), f"max |diff| {s['max_abs_diff']:.1e}"))
        rows.append((f"heat_index {h['cells'] / 1e6:g}M cells (s)", _fmt(h["ours_s"]), f"{_fmt(h['ref_s'])} MetPy",
                     _fmt(h["ratio"]), f"max |diff| {h['max_abs_diff']:.1e}"))
        rows.append((f"spi_from_params {f['stations']:,} stations (ms)", _fmt(f["median_ms"]), "aim 10 ms",
                     _fmt(_ratio(10.0, f["median_ms"])), f"max |diff| vs spi {f['max_abs_diff_vs_spi']:.1e}"))
    ing = d.get("ingest")
    if ing:
        for key, v in ing.items():
            if key.startswith("ingest_"):
                res[f"{key}_ratio_vs_raw_producer"] = v["ratio"]
                rows.append((f"{key.removeprefix('ingest_')} parse+QC+produce (rec/s)", _fmt(v["records_s"]),
                             f"{_fmt(v['raw_producer_records_s'])} raw kafka-python", _fmt(v["ratio"]),
                             f"{v['records']:,} records; aim >= 0.5"))
        g = ing.get("grid_1m_cells_x24_to_500_stations", {})
        if "seconds" in g:
            res["grid_to_stations_s"] = round(g["seconds"], 2)
            res["grid_to_stations_peak_rss_mb"] = round(g["peak_rss_mb"])
            rows.append(("forecast grid -> 500 stations (s)", _fmt(g["seconds"]), "-", "-",
                         f"{g['points']:,} points; peak RSS {g['peak_rss_mb']:.0f} MB; file {g['file_mb']:.0f} MB"))
    gr = d.get("grid", {})
    if "ratio" in gr:
        graded, read = gr["graded"], gr["read_decode"]
        res.update(grid_county_s=round(graded["seconds"], 2), grid_read_s=round(read["seconds"], 2),
                   grid_county_ratio_vs_read=round(gr["ratio"], 2), grid_peak_rss_mb=round(graded["peak_rss_mb"]))
        rows.append((f"forecast grid {gr['grid']} -> counties (s)", _fmt(graded["seconds"]),
                     f"{_fmt(read['seconds'])} read + decode", _fmt(gr["ratio"]),
                     f"aim <= 2; {graded['cells']:,} county cells, {graded['areas']} areas in {graded['counties']} "
                     f"counties; peak RSS {graded['peak_rss_mb']:.0f} MB (aim <= 1024); file {gr['file_mb']:.0f} MB; "
                     f"index build {gr.get('index_build_s', 0):.1f} s once"))
    for name, err in d.get("errors", {}).items():
        rows.append((name, "FAILED", "-", "-", err.splitlines()[0][:150] if err else ""))
    return rows, res


def print_table(rows: list[tuple[str, str, str, str, str]]) -> None:
    head = ("benchmark", "ours", "baseline (same run)", "ratio", "notes")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = "  ".join(h.ljust(w) for h, w in zip(head[:4], widths, strict=True)) + "  " + head[4]
    print(line)
    print("-" * min(len(line) + 40, 160))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r[:4], widths, strict=True)) + "  " + r[4])


async def run(names: list[str], quick: bool, pyspy: str | None) -> dict[str, Any]:
    sizes = pipeline.QUICK if quick else pipeline.FULL
    d: dict[str, Any] = {}

    async def step(name: str, coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any] | None:
        """One benchmark; a failure is reported and recorded (``errors``), the others still run."""
        print(f"[bench] {name} ... (load {c.load_avg()[0]:.2f})", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            out = await coro
        except Exception as exc:
            traceback.print_exc()
            d.setdefault("errors", {})[name] = f"{type(exc).__name__}: {str(exc)[:2000]}"
            return None
        print(f"[bench] {name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        return out

    if "kernels" in names:
        d["kernels"] = await step("kernels", asyncio.to_thread(kernels.run, quick))
    if "ingest" in names:
        d["ingest"] = await step("ingest (parse + QC + produce; forecast grid)",
                                 asyncio.to_thread(ingest_bench.run, quick))
    if "grid" in names:
        d["grid"] = await step("forecast grid -> counties", asyncio.to_thread(grid_bench.run, quick))
    if "throughput" in names or "memory" in names:
        n = max(sizes.throughput_n if "throughput" in names else 0, sizes.memory_n if "memory" in names else 0)
        tp = await step("throughput + memory (one run)",
                        pipeline.throughput(n, profile_s=120.0 if pyspy else 0.0, pyspy=pyspy))
        if "throughput" in names:
            d["throughput"] = tp
        if "memory" in names:
            d["memory"] = tp
    if "per_event" in names:
        d["per_event"] = await step("per-event", pipeline.per_event(sizes.per_event_n))
    if "latency" in names:
        d["latency"] = await step("latency", latency.e2e(10.0 if quick else 30.0))
    if "scaleout" in names:
        d["scaleout"] = await step("scale-out + rebalance", pipeline.scaleout(sizes.scaleout_n))
    return {k: v for k, v in d.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (< 3 min)")
    ap.add_argument("--only", action="append", choices=NAMES, metavar="NAME",
                    help=f"run only this benchmark (repeatable): {', '.join(NAMES)}")
    ap.add_argument("--profile", action="store_true", help="py-spy profile of the throughput worker")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results.json",
                    help="results file (default benchmarks/results.json)")
    args = ap.parse_args(argv)
    names = args.only or list(NAMES)
    pyspy = find_pyspy() if args.profile else None
    if args.profile and not pyspy:
        print("py-spy not found: no profile (pip install --target /tmp/pyspy py-spy)", file=sys.stderr)
    t0 = time.monotonic()
    load0 = c.load_avg()
    details = asyncio.run(run(names, args.quick, pyspy))
    rows, res = table(details)
    if details.get("errors"):
        res["errors"] = details["errors"]
    wall = time.monotonic() - t0
    print()
    print_table(rows)
    m = c.machine()
    print(f"\n{m['date']}  {m['nproc']} x {m['cpu']}, {m['ram_gb']} GB RAM, Python {m['python']}; "
          f"load average {load0[0]:.2f} at start, {c.load_avg()[0]:.2f} at end; {wall:.0f} s; "
          f"{'quick' if args.quick else 'full'} run; code {code_fingerprint()}")
    out = {**res, "mode": "quick" if args.quick else "full", "only": args.only, "wall_s": round(wall, 1),
           "machine": m, "load_start": load0, "load_end": c.load_avg(), "code_fingerprint": code_fingerprint(),
           "details": details}
    args.out.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
