"""The composition root: creates the faust app, its topics and tables, and wires the stages into one pipeline,
as Alertmanager assembles its notification pipeline from named stages in one place.

    obs, forecast --[ingest.intake: observations, forecasts]--> signals
    signals --[warning.grade: grade, tick]--> warnings + (alerts.routing.Router) alerts.outbox
    alerts.outbox, alerts.retry.N --[alerts.dispatch: deliver, redeliver-N]--> receipts | retry | alerts.dead

The API's read models (``warning.web.views``) follow ``warnings``, ``alerts.receipts``, ``alerts.dead`` and
``subscriptions`` through whole-topic mirrors. Topic, table and agent names are a deployment's contract: a
unit test lists them.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import faust
import orjson

from alerts.acks import AckBook, ack_token, ack_url
from alerts.dead_letters import DeadLetters
from alerts.delivery import webhook_body
from alerts.dispatch import DeliveryStage
from alerts.health import HealthTracker
from alerts.retry import RetryPolicy
from alerts.routing import Router
from alerts.silences import Silence, SilenceBook
from alerts.subscriptions import Subscription, SubscriptionBook
from ingest.intake import Intake, Rejects
from ingest.partition_store import FoldParams, PartitionStore, QualityControl, load_qc_models
from ingest.station_columns import SlotInfo
from warning import faust_fixes
from warning.cap import render_cap
from warning.cap_signing import CapSigner
from warning.drafts import DraftSink, DraftsView
from warning.escalation import AckEscalation
from warning.grade import GradeStage
from warning.pipeline import StationGrader, fold_params
from warning.rules import Rules
from warning.shapes import region_polygon
from warning.shared import metrics, topics
from warning.shared.bus import DataClock, Headers, SignalSink
from warning.shared.config import Settings
from warning.shared.mirror import TopicMirror
from warning.shared.records import ACTUAL, Delivery, WarningEvent, status_of
from warning.shared.regions import RegionTree, StationRegistry
from warning.shared.sealing import KeyRing, Sealer, load_key_ring
from warning.shared.times import now_iso
from warning.station_values import StationValuesPublisher, StationValuesView
from warning.web.views import DeliveriesView, LiveFeed, WarningsView

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 10.0
SILENCE_CHECK_S = 2.0  # how often ended silences are looked for (their held deliveries go out then)
REDELIVER_CONCURRENCY = 4  # attempts at once per retry tier (agent slots, and the tier's waiting room)
# first attempts at once: each is a coroutine awaiting its POST, and an endpoint not proven healthy may hold only
# one of them (alerts.dispatch.endpoint_limit), so a slow receiver holds one slot of many (chaos "neighbours")
DELIVER_CONCURRENCY = 32
STATE_TABLES = {"fast": "station_columns", "daily": "station_daily", "qc": "qc_columns", "log": "obs_log"}


def load_station_climatology(settings: Settings) -> Any:
    """Station thresholds from `ews climatology build` (t95, EHF85, SPI parameters); empty when absent, so
    products that need it (heat_health) are skipped rather than the service."""
    from warning.climatology import load_climatology

    try:
        return load_climatology(settings.data_dir / "climatology", missing_ok=True)
    except Exception:
        log.exception("cannot load the climatology from %s; continuing without it", settings.data_dir)
        return None


def faust_app(settings: Settings, bootstrap: str) -> faust.App:
    faust_fixes.install()  # faust's consumer loop marked records read that the streams never got
    st = settings.session_timeout_s
    return faust.App(
        settings.app_id, broker=f"kafka://{bootstrap}", store=settings.store,
        datadir=str(settings.data_dir / "faust"), topic_partitions=settings.partitions, topic_replication_factor=1,
        processing_guarantee=settings.processing_guarantee,  # exactly_once: Kafka only (fails on tansu)
        broker_session_timeout=st, broker_rebalance_timeout=st, broker_heartbeat_interval=max(0.3, st / 5),
        consumer_auto_offset_reset="earliest", producer_linger=0.005, table_standby_replicas=0,
        # a stop or rebalance does not wait for records in processing (a retry waiting for its time, a POST to a
        # slow receiver): they stay uncommitted and are processed again by the partition's next owner
        stream_wait_empty=False,
        web_enabled=False,  # the operator API is our own aiohttp server (warning.web.api)
        web_bind="127.0.0.1",
        broker_credentials=settings.kafka.faust_credentials())  # EWS_KAFKA_*: TLS + SASL on a real cluster


class WarningService:
    """The wired pipeline: the faust app, its stages, and the read models the HTTP API serves."""

    def __init__(self, settings: Settings, bootstrap: str, registry: StationRegistry, regions: RegionTree,
                 rules: Rules, keys: KeyRing | None = None) -> None:
        self.settings, self.bootstrap = settings, bootstrap
        if keys is None:
            keys, _ = load_key_ring(settings.data_key, settings.data_key_file, settings.data_dir)
        self.sealer = sealer = Sealer(keys)  # secrets sealed on `subscriptions`, MACs on control records
        self.registry, self.regions, self.rules = registry, regions, rules
        self.cap_signer = CapSigner.from_files(settings.cap_signing_key, settings.cap_signing_cert)
        self.ready = asyncio.Event()
        self.demo_label: str | None = None  # set when the labelled demo scenario runs
        self.broker_label = "external Kafka"  # or the embedded broker `ews run` started
        self.climatology = load_station_climatology(settings)
        self.clock = DataClock()
        self.app = app = faust_app(settings, bootstrap)

        def raw(name: str, partitions: int | None = None) -> Any:
            return app.topic(name, partitions=partitions, key_serializer="raw", value_serializer="raw")

        def table(name: str, **kw: Any) -> Any:
            return app.Table(name, default=None, partitions=settings.partitions, **kw)

        async def produce(topic: str, key: bytes, value: bytes, partition: int | None,
                          headers: Headers | None = None) -> None:
            await app.producer.send(topic, key, value, partition, None, headers)  # no per-message channel futures

        t = {name: raw(name) for name in (topics.OBS, topics.OBS_REJECTED, topics.FORECAST, topics.SIGNALS,
                                          topics.WARNINGS, topics.OUTBOX, topics.DEAD, topics.RECEIPTS)}
        t[topics.SUBSCRIPTIONS] = raw(topics.SUBSCRIPTIONS, 1)
        t[topics.SILENCES] = raw(topics.SILENCES, 1)
        t[topics.ACKS] = raw(topics.ACKS)
        retry_topics = [raw(topics.retry_tier(i)) for i in range(len(settings.retry_tiers_s))]
        # value_type=bytes: faust's raw codec for the LZ4 state blocks, in writes and in changelog recovery
        state_tables = {k: table(name, key_type=str, value_type=bytes) for k, name in STATE_TABLES.items()}
        region_state, receivers = table("region_state"), table("receivers")
        ack_escalations = table("ack_escalations")  # chain key -> the current warning's acknowledgement clock

        self.feed = LiveFeed()
        self.warnings = WarningsView(self.feed)
        self.deliveries = DeliveriesView(self.feed)
        self.health = HealthTracker(settings.unhealthy_after_s)  # endpoint health: delivery gate and dashboard
        self.subscriptions = SubscriptionBook(t[topics.SUBSCRIPTIONS], sealer)
        self.dead_letters = DeadLetters(t[topics.DEAD], t[topics.OUTBOX])
        self.silences = SilenceBook(t[topics.SILENCES], sealer, regions.covers)
        self.drafts = DraftsView(topics.DRAFTS, sealer, rules.review.escalate_after_min)
        self.acks = AckBook(t[topics.ACKS], sealer, on_ack=lambda a: self.feed.notify("ack", dict(a)))
        signals = SignalSink(produce, topics.SIGNALS, settings.partitions, sealer)
        grader = StationGrader(rules, registry, regions, self.climatology)
        self.intake = Intake(
            partitions=settings.partitions, obs_topic=t[topics.OBS], forecast_topic=t[topics.FORECAST],
            rejects=Rejects(t[topics.OBS_REJECTED]), store=self._partition_store(state_tables), grader=grader,
            signals=signals, clock=self.clock,
            known_station=frozenset(s.station_id for s in registry).__contains__)
        self.router = Router(self.subscriptions, regions.covers, receivers, t[topics.OUTBOX])
        escalation = AckEscalation(policy=lambda: rules.acknowledgement, router=self.router, receivers=receivers,
                                   escalations=ack_escalations, acks=self.acks, subscriptions=self.subscriptions,
                                   history=self.warnings.history.get, regions=regions)
        self.grade = GradeStage(rules=rules, rollups=grader, region_state=region_state, signals=signals,
                                produce=produce, warnings_topic=topics.WARNINGS, router=self.router,
                                clock=self.clock, drafts=DraftSink(produce, topics.DRAFTS, sealer),
                                escalation=escalation)
        self.delivery = DeliveryStage(
            subscriptions=self.subscriptions, dead_letters=self.dead_letters, retry_topics=retry_topics,
            receipts=t[topics.RECEIPTS], policy=RetryPolicy.from_settings(settings),
            health=self.health, render=self.render_body,
            on_receipt=self.deliveries.apply, allow_nets=settings.webhook_allow_nets,
            timeout_s=settings.webhook_timeout_s, endpoint_concurrency=settings.endpoint_concurrency,
            tier_concurrency=REDELIVER_CONCURRENCY, waiting_max=settings.retry_waiting_max,
            retry_hold_s=settings.retry_hold_s, silences=self.silences, ack_link=self.ack_link)

        app.agent(t[topics.OBS], name="observations")(self.intake.observations)
        app.agent(t[topics.FORECAST], name="forecasts")(self.intake.forecasts)
        app.timer(settings.tick_interval_s, name="tick")(self.grade.tick)
        app.timer(LAG_INTERVAL_S, name="lag")(self._measure_lag)
        app.timer(SILENCE_CHECK_S, name="silences")(self.release_ended_silences)
        # the console's station values: summaries of the owned partitions' state, off the hot path
        self.station_values = StationValuesView()
        publisher = StationValuesPublisher(topics.STATIONS_LATEST, self._owned_obs_partitions, self._cached_columns,
                                           lambda topic, key, value: produce(topic, key, value, 0))
        app.timer(settings.station_values_s, name="station_values")(publisher.publish)
        app.agent(t[topics.SIGNALS], name="grade")(self.grade.grade)
        app.agent(t[topics.OUTBOX], name="deliver", concurrency=DELIVER_CONCURRENCY)(self.delivery.deliver)
        for i, topic in enumerate(retry_topics):
            app.agent(topic, name=f"redeliver-{i}", concurrency=REDELIVER_CONCURRENCY)(self.delivery.redeliver_agent(i))
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]  # mode stub: a Callable union
        auth = settings.kafka
        self._mirrors = [
            TopicMirror(bootstrap, topics.SUBSCRIPTIONS, self.subscriptions.mirror, auth=auth, with_headers=True),
            TopicMirror(bootstrap, topics.WARNINGS, self.warnings.mirror, fetch_max_wait_ms=50, auth=auth),  # CAP
            TopicMirror(bootstrap, topics.RECEIPTS, self._mirror_receipt, auth=auth),
            TopicMirror(bootstrap, topics.DEAD, self.dead_letters.mirror, auth=auth),
            TopicMirror(bootstrap, topics.DRAFTS, self.drafts.mirror, auth=auth, with_headers=True),
            TopicMirror(bootstrap, topics.SILENCES, self.silences.mirror, auth=auth, with_headers=True),
            TopicMirror(bootstrap, topics.ACKS, self.acks.mirror, auth=auth, with_headers=True,
                        on_caught_up=self.acks.caught_up.set),
            TopicMirror(bootstrap, topics.STATIONS_LATEST, self.station_values.mirror, auth=auth),
        ]

    def _owned_obs_partitions(self) -> list[int]:
        try:
            return [tp.partition for tp in self.app.consumer.assignment() if tp.topic == topics.OBS]
        except Exception:  # no consumer yet (starting): nothing owned
            return []

    def _cached_columns(self, part: int) -> Any:
        """The partition's station state as the observations agent holds it (never a restore from here)."""
        ps = self.intake.store.partitions.get(part)
        return ps.columns if ps is not None else None

    async def _on_revoked(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Waiting retries of revoked partitions (``args[0]``) are left to their next owner (uncommitted, read
        again there)."""
        n = self.delivery.drop_waiting(args[0] if args else kwargs.get("revoked", ()))
        if n:
            log.info("left %d waiting retries of revoked partitions to their next owner", n)

    def _partition_store(self, tables: dict[str, Any]) -> PartitionStore:
        c, registry = self.climatology, self.registry

        def slot_info(sid: str) -> SlotInfo:
            station = registry.get(sid)
            return SlotInfo(station.latitude if station else 36.0, c.t95(sid) if c is not None else None,
                            c.ehf85(sid) if c is not None else None)

        qc = QualityControl({s.station_id: s.elevation_m for s in registry},
                            load_qc_models(self.settings.data_dir / "climatology" / "qc"))
        fold = FoldParams(**fold_params(self.rules))
        return PartitionStore(tables, slot_info, getattr(c, "mci_params", None) if c is not None else None, qc, fold)

    def cap_document(self, event: WarningEvent, earlier: list[WarningEvent]) -> bytes:
        """The event as CAP 1.2, with the service's rules and the county outline, or the affected cells when a
        forecast grid alone holds the level (``area_polygons``), with the county geocode either way (webhooks and
        the API alike); with an XML signature when EWS_CAP_SIGNING_KEY / _CERT are set (``warning.cap_signing``)."""
        cells = [[(lat, lon) for lat, lon in poly] for poly in event.get("area_polygons") or ()]
        xml = render_cap(event, referenced=earlier, rules=self.rules, polygons=cells or None,
                         polygon=region_polygon(event.get("region_code", "")))
        return self.cap_signer.sign(xml) if self.cap_signer is not None else xml

    def render_body(self, d: Delivery, sub: Subscription) -> tuple[bytes, str]:
        event = d["event"]
        if sub.format == "cap":
            return self.cap_document(event, self.warnings.earlier(event)), "application/cap+xml"
        flags = [f for f in ("reminder", "escalation") if d.get(f)]
        return webhook_body(d["type"], event, d.get("backfill", False), self.ack_link(d, sub),
                            flags), "application/json"

    def ack_link(self, d: Delivery, sub: Subscription) -> str:
        """The delivery's ``ack_url``: in the JSON envelope and, for every format, the ``ews-ack-url`` header."""
        event = d["event"]
        token = ack_token(self.sealer, event["warning_id"], event["id"], sub.id, event["level"])
        return ack_url(self.settings.public_base_url, token)

    def _mirror_receipt(self, key: bytes | None, value: bytes | None) -> None:
        if value:
            receipt = orjson.loads(value)
            self.health.observe(receipt)
            self.delivery.delivered.observe(receipt)
            self.deliveries.apply(receipt)

    async def _measure_lag(self) -> None:
        self.warnings.refresh_active_gauge(force=True)  # warnings also expire without new events
        self.drafts.refresh_gauge()
        self.silences.refresh_gauge(datetime.now(UTC))
        metrics.measure_lag(self.app.consumer)

    async def release_silence(self, silence: Silence) -> int:
        """Send the deliveries ``silence`` held, in the order they were held (those of warnings that ended
        meanwhile are let go: their cancel was never silenced); each leaves the parked set with its marker."""
        return await self.dead_letters.redrive(reason_prefix=silence.held_prefix(), still_current=self._still_current)

    def _still_current(self, event: dict[str, Any]) -> bool:
        chain = self.warnings.history.get(str(event.get("warning_id")), [])
        latest = chain[-1] if chain else event
        if latest.get("msg_type") == "cancel":
            return False
        return status_of(latest) != ACTUAL or str(latest.get("expires", "")) > now_iso()

    async def release_ended_silences(self) -> None:
        """Silences end on their own: what an ended silence still holds goes out (normally nothing: the first
        pass after its end sent it). Every worker runs this timer; a held delivery two workers send carries
        the same webhook-id (receivers deduplicate)."""
        try:
            for silence in self.silences.ended(datetime.now(UTC)):
                if any(str(d.get("last_error", "")).startswith(silence.held_prefix())
                       for d in self.dead_letters.parked.values()):
                    n = await self.release_silence(silence)
                    log.info("silence %s ended: %d held deliveries sent", silence.id, n)
        except Exception:  # a timer that raises would stop the app: log and try again next time
            log.exception("releasing ended silences failed")

    async def start_views(self) -> None:
        for m in self._mirrors:
            await m.start()

    async def stop_views(self) -> None:
        for m in self._mirrors:
            await m.stop()
        await self.delivery.close()
