"""`ews run`: embedded broker (unless KAFKA_BOOTSTRAP), topics, the faust worker and the HTTP server in one
process and one event loop."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

import faust
import mode
from aiohttp import web

from warning import kafka_node, tansu_compat
from warning.app import WarningService
from warning.broker import EmbeddedBroker
from warning.cap_signing import CapSigner, CapSigningError
from warning.kafka_node import KafkaNode
from warning.logs import lean_log_records, logging_config
from warning.rules import RulesError, load_rules
from warning.shared import running
from warning.shared.config import Settings, TokenError, ensure_token
from warning.shared.kafka_auth import KafkaConfigError
from warning.shared.regions import RegionTree, StationRegistry
from warning.shared.sealing import DataKeyError, load_key_ring
from warning.shared.topics import ensure_topics
from warning.web.api import make_web_app, server_options

log = logging.getLogger(__name__)


def _demo_label() -> str:
    from warning.demo import LABEL

    return LABEL


class HttpServer(mode.Service):  # type: ignore[misc]
    """The operator API; starts before the worker is ready so /healthz answers during start-up."""

    def __init__(self, svc: WarningService, token: str, listener: socket.socket, **kw: Any) -> None:
        self.svc = svc
        self.token = token
        self.listener = listener  # bound before the broker started (a busy port fails first, plainly)
        self.runner: web.AppRunner | None = None
        super().__init__(**kw)

    async def on_start(self) -> None:
        await self.svc.start_views()
        self.runner = web.AppRunner(make_web_app(self.svc, self.token), access_log=None,
                                    **server_options(self.svc.settings))
        await self.runner.setup()
        await web.SockSite(self.runner, self.listener).start()
        s = self.svc.settings
        log.info("HTTP API on %s", api_url(s))
        # the commands (`ews ingest`, `ews replay`, `ews warnings`) find this service's broker and API here
        running.write(s.data_dir, url=api_url(s), bootstrap=self.svc.bootstrap)

    async def on_stop(self) -> None:
        running.remove(self.svc.settings.data_dir)
        if self.runner is not None:
            await self.runner.cleanup()
        await self.svc.stop_views()


def api_url(settings: Settings) -> str:
    host = settings.http_host
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{settings.http_port}"


class PortInUse(OSError):
    """The API's port is taken (another `ews run`?): said in one line before anything starts."""


def bind_listener(settings: Settings) -> socket.socket:
    """The API's listening socket, bound now so a busy port stops `ews run` before the broker or worker starts."""
    family = socket.AF_INET6 if ":" in settings.http_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp: a TIME_WAIT socket is no owner
    try:
        sock.bind((settings.http_host, settings.http_port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {settings.http_port} on {settings.http_host} is in use (another `ews run`?); "
                            f"stop it, or choose another port: EWS_HTTP_PORT=8081 make run, or "
                            f"ews run --http-port 8081") from None
        raise PortInUse(f"cannot listen on {settings.http_host}:{settings.http_port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def ready_banner(settings: Settings, token: str, created: bool, broker_label: str) -> str:
    """The framed lines printed last, once the worker is ready: where to go and with what token."""
    url = api_url(settings)
    if settings.token:
        token_line = "token:      from EWS_TOKEN"
    else:  # printed to the operator's console only; never written to the log
        token_line = (f"token:      {token}\n            ({'new, ' if created else ''}stored 0600 in "
                      f"{settings.data_dir / 'token'})")
    lines = [f"EWS is ready: {url}/   (API docs: {url}/api/docs)",
             token_line,
             f"broker:     {broker_label}",
             "commands:   ews warnings, ews ingest FILE, ews replay --from ISO (each finds this service by itself)"]
    width = max(len(line) for text in lines for line in text.splitlines()) + 2
    bar = "=" * width
    return "\n".join([bar, *lines, bar])


@dataclass(frozen=True)
class ReplayPlan:
    """What `ews run` replays once the worker is ready: the demo scenario and/or files, and as what. Demos and
    replays are exercise unless the operator says ``--status actual``."""

    demo: bool = False
    files: tuple[str, ...] = ()
    speed: float | None = None
    status: str = "exercise"
    as_station: str | None = None

    def ingest_argv(self, bootstrap: str, partitions: int) -> list[str]:
        argv = ["ingest", *self.files, "--bootstrap", bootstrap, "--partitions", str(partitions),
                "--status", self.status]
        if self.speed:
            argv += ["--replay-speed", str(self.speed)]
        if self.as_station:
            argv += ["--as-station", self.as_station]
        return argv


class ScenarioReplay(mode.Service):  # type: ignore[misc]
    """After the worker is ready: replay the labelled demo scenario, or the user's files through `ews ingest`."""

    def __init__(self, svc: WarningService, plan: ReplayPlan, banner: str = "", **kw: Any) -> None:
        self.svc, self.plan, self.banner = svc, plan, banner
        super().__init__(**kw)

    @mode.Service.task
    async def _replay(self) -> None:
        await self.svc.ready.wait()
        plan = self.plan
        if plan.demo:
            from warning import demo

            print(f"{demo.LABEL}: replaying as {plan.status}", flush=True)

            async def publish(step: list[dict[str, Any]]) -> None:
                await self.svc.intake.publish_observations(step, plan.status)
            n = await demo.replay(publish)
            print(f"demo: {n} synthetic reports replayed as {plan.status}; open the dashboard", flush=True)
        if plan.files:
            import argparse

            from ingest.producer import EXIT_NOTHING_ACCEPTED, add_ingest_parser, run_ingest

            parser = argparse.ArgumentParser(prog="ews")
            add_ingest_parser(parser.add_subparsers(dest="command"))
            argv = plan.ingest_argv(self.svc.bootstrap, self.svc.settings.partitions)
            rc = await asyncio.to_thread(run_ingest, parser.parse_args(argv))
            print(f"replay of {', '.join(plan.files)} as {plan.status} finished (exit {rc})", flush=True)
            if rc == EXIT_NOTHING_ACCEPTED:
                print("replay: NOTHING was accepted; a file of a station outside the registry needs "
                      "--as-station WMO (make run FILE=... AS_STATION=WMO)", file=sys.stderr, flush=True)
        if self.banner:  # the replay's warnings logged over the ready banner: the URL and token again, last
            print(self.banner, flush=True)


class EwsWorker(faust.Worker):  # type: ignore[misc]
    def __init__(self, svc: WarningService, *services: Any, banner: str = "", **kw: Any) -> None:
        self.svc = svc
        self.banner = banner
        self.t0 = time.monotonic()
        super().__init__(svc.app, *services, **kw)

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        print(f"worker ready in {time.monotonic() - self.t0:.1f} s", flush=True)
        if self.banner:  # last, after faust's start-up tables, so the URL and token stay on the screen
            print(self.banner, flush=True)
        self.svc.ready.set()


MEMORY_ONLY = "memory only: everything is lost when it stops"


def start_broker(settings: Settings) -> tuple[EmbeddedBroker | KafkaNode | None, str, str]:
    """(the broker this process started or None, its bootstrap, a label for the console and dashboard).
    KAFKA_BOOTSTRAP: that cluster, nothing started. Else one Apache Kafka node with its data under the data dir
    when Java and the jars are here (EWS_BROKER=tansu forces tansu), else tansu in memory, said plainly."""
    if settings.kafka_bootstrap:
        if settings.tansu_compat:
            tansu_compat.install()  # an external tansu (tests, demos): the ListOffsets workaround
        return None, settings.kafka_bootstrap, "external Kafka"
    why_not = "EWS_BROKER=tansu" if settings.broker == "tansu" else kafka_node.available()
    if settings.broker == "kafka" and why_not is not None:
        raise RuntimeError(f"EWS_BROKER=kafka but {why_not}")
    if why_not is None:
        node = KafkaNode(settings.data_dir / "kafka", partitions=settings.partitions).start()
        print(f"embedded Apache Kafka {kafka_node.KAFKA_VERSION} on {node.bootstrap}, pid {node.pid}, ready in "
              f"{node.startup_s:.1f} s (data in {node.data})", flush=True)
        return node, node.bootstrap, f"embedded Apache Kafka {kafka_node.KAFKA_VERSION}"
    broker = EmbeddedBroker(log_path=settings.data_dir / "tansu.log").start()
    tansu_compat.install()  # ListOffsets workaround (BROKER.md §4); only needed on tansu
    banner = f"embedded tansu ({MEMORY_ONLY})"
    print(f"{'=' * 100}\n{banner}: {why_not}\ntansu on {broker.bootstrap}, pid {broker.pid}, ready in "
          f"{broker.startup_s:.3f} s\n{'=' * 100}", flush=True)
    return broker, broker.bootstrap, banner


def run(settings: Settings, *, demo: bool = False, replay_files: list[str] | None = None,
        replay_speed: float | None = None, replay_status: str = "exercise", as_station: str | None = None) -> int:
    try:  # refuse a malformed table before anything starts
        rules = load_rules(settings.rules_path)
    except RulesError as exc:
        print(f"ews run: the warning rules are invalid: {exc}", file=sys.stderr, flush=True)
        return 2
    registry = StationRegistry.load()
    regions = RegionTree.load()
    try:
        token, created = ensure_token(settings)
    except TokenError as exc:
        print(f"ews run: refusing to start: {exc}", file=sys.stderr, flush=True)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        listener = bind_listener(settings)
    except PortInUse as exc:
        print(f"ews run: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        return _run(settings, listener, token, created, rules, registry, regions, demo=demo,
                    replay_files=replay_files, replay_speed=replay_speed, replay_status=replay_status,
                    as_station=as_station)
    finally:
        listener.close()


def _run(settings: Settings, listener: socket.socket, token: str, created: bool, rules: Any,
         registry: StationRegistry, regions: RegionTree, *, demo: bool, replay_files: list[str] | None,
         replay_speed: float | None, replay_status: str, as_station: str | None) -> int:
    try:  # the data keys (sealed secrets, MACs), next to the token; and no TLS/SASL settings for a loopback broker
        keys, keys_from = load_key_ring(settings.data_key, settings.data_key_file, settings.data_dir)
        settings.check_broker()
        if CapSigner.from_files(settings.cap_signing_key, settings.cap_signing_cert) is not None:
            print(f"CAP documents are signed (XMLDSig) with {settings.cap_signing_key}", flush=True)
    except (DataKeyError, KafkaConfigError, CapSigningError) as exc:
        print(f"ews run: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"data keys: current {keys.current!r} of {len(keys.keys)}, from {keys_from}", flush=True)
    try:
        broker, bootstrap, broker_label = start_broker(settings)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"ews run: the embedded broker did not start: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        try:
            ensure_topics(bootstrap, settings.partitions, len(settings.retry_tiers_s), auth=settings.kafka)
        except Exception as exc:  # NoBrokersAvailable, KafkaTimeoutError, ...
            print(f"ews run: cannot reach Kafka at {bootstrap} ({type(exc).__name__}); check KAFKA_BOOTSTRAP",
                  file=sys.stderr, flush=True)
            return 2
        svc = WarningService(settings, bootstrap, registry, regions, rules, keys)
        svc.demo_label = _demo_label() if demo else None
        if replay_files and replay_status != "actual":
            svc.demo_label = f"{replay_status.upper()}: replay of {', '.join(replay_files)}"
        svc.broker_label = broker_label
        http = HttpServer(svc, token, listener)
        services: list[Any] = [http]
        banner = ready_banner(settings, token, created, broker_label)
        if demo or replay_files:
            plan = ReplayPlan(demo, tuple(replay_files or ()), replay_speed, replay_status, as_station)
            services.append(ScenarioReplay(svc, plan, banner))
        log_config = logging_config(settings.log_level, settings.json_logs)
        if log_config is not None:  # JSON lines: records need no caller, thread or process fields
            lean_log_records()
        worker = EwsWorker(svc, *services, loglevel=settings.log_level, redirect_stdouts=False,
                           logging_config=log_config,
                           banner=banner)
        print(f"starting: API {api_url(settings)}/ (/healthz answers now; ready once the worker has joined)",
              flush=True)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0
    finally:
        if broker is not None:
            broker.stop()
            sys.stdout.flush()
