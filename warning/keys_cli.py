"""`ews keys rotate | reseal`: the data key ring's rotation and the re-sealing of the ``subscriptions`` topic
(docs/ARCHITECTURE.md "Data keys").

* ``rotate``: a new current key, older keys kept for reading. With the ring in a file (``<data dir>/keys`` or
  ``EWS_DATA_KEY_FILE``) the file is rewritten (0600); with ``EWS_DATA_KEY`` the new value is printed for the
  operator to set on every worker. Workers read the ring at start: restart them after a rotation.
* ``reseal``: rewrite every subscription whose latest record is sealed or MACed with an older key, with the
  current one (so the older key can later be dropped). ``--adopt-unsigned`` also rewrites the records written by
  a version before sealing (no MAC, plain secrets) instead of leaving them refused: run it once, on upgrade, while
  the topic is trusted. Run it while no one edits subscriptions: a change made meanwhile can be overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson

from alerts.subscriptions import SECRET_FIELDS, Subscription, opened_record, sealed_record
from warning.shared import topics
from warning.shared.config import Settings
from warning.shared.sealing import (
    MAC_HEADER,
    DataKeyError,
    KeyRing,
    Sealer,
    SealError,
    header_value,
    load_key_ring,
    sealed_key_id,
    write_key_file,
)


def add_keys_parser(sub: Any) -> None:
    p = sub.add_parser("keys", help="rotate the data key ring; re-seal the subscriptions topic")
    keys_sub = p.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("rotate", help="a new current data key; older ones kept for reading")
    p_reseal = keys_sub.add_parser("reseal", help="rewrite subscriptions sealed with older keys")
    p_reseal.add_argument("--bootstrap", default=None, help="Kafka bootstrap (default: env KAFKA_BOOTSTRAP)")
    p_reseal.add_argument("--adopt-unsigned", action="store_true",
                          help="also seal and sign records from before sealing (no MAC): once, on upgrade")


def run_keys(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        settings = Settings.from_env()
        if args.keys_command == "rotate":
            return rotate(settings, out)
        bootstrap = args.bootstrap or settings.kafka_bootstrap
        if not bootstrap:
            err.write("ews keys reseal: give --bootstrap HOST:PORT or set KAFKA_BOOTSTRAP\n")
            return 2
        ring, _ = load_key_ring(settings.data_key, settings.data_key_file, settings.data_dir)
        counts = reseal(bootstrap, settings, Sealer(ring), adopt_unsigned=args.adopt_unsigned)
    except (DataKeyError, ValueError) as exc:
        err.write(f"ews keys: {exc}\n")
        return 2
    out.write(", ".join(f"{k}: {v}" for k, v in counts.items()) + "\n")
    return 1 if counts["refused"] else 0


def rotate(settings: Settings, out: TextIO) -> int:
    if settings.data_key:
        ring = KeyRing.parse(settings.data_key.split(","), "EWS_DATA_KEY").rotated()
        entries = ring.to_text().replace(" ", ":").splitlines()
        out.write("set on every worker, then restart them:\nEWS_DATA_KEY=" + ",".join(entries) + "\n")
        return 0
    path = settings.data_key_file or settings.data_dir / "keys"
    ring, _ = load_key_ring(None, path if path.exists() else None, settings.data_dir)
    new = ring.rotated()
    write_key_file(Path(path), new)
    out.write(f"{path}: current key {new.current!r}, {len(new.keys) - 1} older kept for reading; restart the "
              "workers, then run `ews keys reseal`\n")
    return 0


def reseal(bootstrap: str, settings: Settings, sealer: Sealer, *, adopt_unsigned: bool) -> dict[str, int]:
    """Rewrite the latest record of every subscription not sealed and signed with the current key."""
    from kafka import KafkaConsumer, KafkaProducer

    consumer = KafkaConsumer(topics.SUBSCRIPTIONS, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000, client_id="ews-keys",
                             **settings.kafka.kafka_python())
    latest: dict[bytes, Any] = {}
    try:
        for rec in consumer:
            if rec.key is not None:
                latest[rec.key] = rec
    finally:
        consumer.close()
    counts = {"current": 0, "resealed": 0, "adopted": 0, "refused": 0, "deleted": 0}
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="ews-keys", acks="all",
                             **settings.kafka.kafka_python())
    try:
        for key, rec in latest.items():
            outcome, value = _resealed(sealer, key, rec.value, rec.headers, adopt_unsigned)
            counts[outcome] += 1
            if value is not None:
                producer.send(topics.SUBSCRIPTIONS, key=key, value=value,
                              headers=sealer.headers(topics.SUBSCRIPTIONS, key, value))
        producer.flush()
    finally:
        producer.close()
    return counts


def _resealed(sealer: Sealer, key: bytes, value: bytes | None, headers: Any, adopt_unsigned: bool
              ) -> tuple[str, bytes | None]:
    """(outcome, the value to write or None) for one subscription's latest record."""
    why = sealer.check(topics.SUBSCRIPTIONS, key, value, headers)
    if value is None:
        return ("deleted", None) if why is None else ("refused", None)
    if why is not None and not (why == "missing" and adopt_unsigned):
        return "refused", None
    try:
        stored = orjson.loads(value)
        secrets = [stored[f] for f in SECRET_FIELDS if stored.get(f)]
        sub = Subscription.from_dict(opened_record(key.decode(), dict(stored), sealer))
    except (SealError, orjson.JSONDecodeError, TypeError, AttributeError, KeyError):
        return "refused", None
    current = sealer.ring.current
    mac_kid = (header_value(headers, MAC_HEADER) or b"").decode(errors="replace").partition(":")[0]
    if why is None and mac_kid == current and all(sealed_key_id(v) == current for v in secrets):
        return "current", None
    return ("adopted" if why else "resealed"), orjson.dumps(sealed_record(sub, sealer))
