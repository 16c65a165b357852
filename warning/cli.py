"""`ews` command line: run | broker | ingest | climatology | keys | warnings | subscribers | dead-letters |
replay | token."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from warning.shared.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ews", description="Extreme-weather early-warning service")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run the service (embedded broker unless KAFKA_BOOTSTRAP is set)")
    p_run.add_argument("--http-port", type=int, default=None, help="HTTP port (env EWS_HTTP_PORT, default 8080)")
    p_run.add_argument("--http-host", default=None, help="bind address (env EWS_HTTP_HOST, default 127.0.0.1)")
    p_run.add_argument("--data-dir", type=Path, default=None, help="data dir (env EWS_DATA_DIR, default ./data)")
    p_run.add_argument("--demo", action="store_true",
                       help="replay the labelled demo scenario (synthetic, built on published station normals)")
    p_run.add_argument("--replay", nargs="+", metavar="FILE", default=None,
                       help="replay station files (any `ews ingest` format) once the worker is ready")
    p_run.add_argument("--replay-speed", type=float, default=None, help="data seconds per second for --replay")
    p_run.add_argument("--as-station", default=None, metavar="WMO",
                       help="--replay: the files' reports as if from this registry station (a file of a station "
                       "outside the registry, e.g. an ISD-Lite file of another country)")
    p_run.add_argument("--status", default=None, choices=("actual", "exercise", "test"),
                       help="status of what --demo and --replay send (default exercise: drill warnings of their "
                       "own, CAP status Exercise, only to subscriptions that opt in); actual only on purpose")
    p_broker = sub.add_parser("broker", help="run the embedded tansu broker alone")
    p_broker.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    p_broker.add_argument("--storage", default="memory://tansu/", help="memory://tansu/ or s3://bucket/")
    from ingest.producer import add_ingest_parser

    add_ingest_parser(sub)
    from warning.climatology import add_climatology_parser

    add_climatology_parser(sub)
    from warning.operator_cli import add_operator_parsers, run_operator

    add_operator_parsers(sub)
    from warning.desk_cli import add_desk_parsers

    add_desk_parsers(sub)
    from warning.operator_tokens import add_token_parser

    add_token_parser(sub)
    from warning.keys_cli import add_keys_parser, run_keys

    add_keys_parser(sub)
    args = parser.parse_args(argv)
    if getattr(args, "operator", None) is not None:
        return run_operator(args)

    if args.command == "run":
        from warning.service import run

        try:
            settings = Settings.from_env(http_port=args.http_port, http_host=args.http_host, data_dir=args.data_dir)
        except ValueError as exc:  # KafkaConfigError names the variable; a malformed number says what it got
            print(f"ews run: configuration: {exc}", file=sys.stderr, flush=True)
            return 2
        return run(settings, demo=args.demo, replay_files=args.replay, replay_speed=args.replay_speed,
                   replay_status=args.status or "exercise", as_station=args.as_station)
    if args.command == "token":
        from warning.operator_tokens import run_token

        return run_token(args)
    if args.command == "keys":
        return run_keys(args)
    if args.command == "broker":
        if os.environ.get("KAFKA_BOOTSTRAP"):
            print("KAFKA_BOOTSTRAP is set: not starting an embedded broker", file=sys.stderr)
            return 2
        from warning.broker import run_forever

        return run_forever(args.port, args.storage)
    if args.command == "climatology":
        from warning.climatology import run_climatology

        return run_climatology(args)
    if args.command == "ingest":
        from ingest.producer import run_ingest

        if args.format == "grid" and args.grid_to != "stations":  # cell grading with the configured rules
            from warning.grid_grading import area_grader
            from warning.rules import load_rules
            from warning.shared.config import Settings as IngestSettings

            ingest_settings = IngestSettings.from_env()
            rules = load_rules(ingest_settings.rules_path)
            args.grid_area_grader = area_grader(rules, ingest_settings.data_dir / "grid_index",
                                                args.grid_chunk_steps)
            args.grid_hazards = frozenset(rules)
        return run_ingest(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
