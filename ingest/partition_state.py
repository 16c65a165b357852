"""A partition's worker state (columnar station state + QC context), stored as periodic snapshots plus a ring of
batch deltas: the event-sourcing half of the worker's storage. No faust, no Kafka: ``warning.app`` writes what
this module encodes to its tables.

Why: writing the touched state blocks after every batch cost ~750 bytes per station per batch of changelog (the
same stations are touched by every batch of hourly data) and its compression ~7 % of the worker. A batch's
validated observations are ~10x smaller than the state they change. So each batch writes its *delta* (the
validated columns, before QC) into one of ``SNAPSHOT_EVERY`` ring slots, and every ``SNAPSHOT_EVERY - 1`` batches
the whole state is written once, each block stamped with the batch sequence number it includes.

Recovery loads the blocks and replays, in sequence order, every delta newer than the oldest block's stamp. Replay
is idempotent, so blocks that already include a delta (a snapshot interrupted half-way) are not changed by it:
a report not newer than its station's last one is skipped by both QC and the station state. The first batch after
a recovery writes a full snapshot, so the ring never has to hold more than ``SNAPSHOT_EVERY`` deltas.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ingest.columns import ObservationColumns
from ingest.qc import QCState
from ingest.station_columns import StationColumns
from warning.shared.times import iso_utc

SNAPSHOT_EVERY = 16  # delta ring slots; a full snapshot after every SNAPSHOT_EVERY - 1 batches
_STAMP = struct.Struct("<q")


@dataclass
class PartitionState:
    columns: StationColumns
    qc: QCState
    seq: int = 0  # sequence number of the last batch folded in
    snapshot_seq: int = 0  # every stored block includes at least the batches up to here
    snapshot_due: bool = False  # set after a recovery: the stored blocks may be of different ages
    written: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (table, key) -> the blob written last

    def needs_snapshot(self) -> bool:
        return self.snapshot_due or self.seq - self.snapshot_seq >= SNAPSHOT_EVERY - 1


def stamp(seq: int, blob: bytes) -> bytes:
    return _STAMP.pack(seq) + blob


def unstamp(blob: bytes) -> tuple[int, bytes]:
    if len(blob) < _STAMP.size:
        raise ValueError("state block: too short for its sequence stamp")
    return _STAMP.unpack_from(blob)[0], blob[_STAMP.size:]


def encode_delta(seq: int, cols: ObservationColumns) -> bytes:
    """A batch's validated observations (before QC): station ids, epoch seconds and the reported elements."""
    elements = [e for e, v in cols.values.items() if not np.isnan(v).all()]
    header = orjson.dumps({"v": 1, "seq": seq, "ids": cols.station_ids, "elements": elements})
    body = [np.ascontiguousarray(cols.t, dtype="<f8").tobytes()]
    body += [np.ascontiguousarray(cols.values[e], dtype="<f8").tobytes() for e in elements]
    return struct.pack("<I", len(header)) + header + b"".join(body)


def decode_delta(blob: bytes, all_elements: tuple[str, ...]) -> tuple[int, ObservationColumns]:
    """Inverse of ``encode_delta`` (the time text is rebuilt from the epoch seconds). ValueError on anything else."""
    try:
        (hlen,) = struct.unpack_from("<I", blob, 0)
        header = orjson.loads(blob[4:4 + hlen])
        seq, ids, elements = int(header["seq"]), [str(x) for x in header["ids"]], list(header["elements"])
    except (struct.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a batch delta: {exc}") from None
    n = len(ids)
    if len(blob) != 4 + hlen + 8 * n * (1 + len(elements)) or not set(elements) <= set(all_elements):
        raise ValueError("batch delta: wrong size or unknown element")
    arrays = np.frombuffer(blob, dtype="<f8", offset=4 + hlen).reshape(1 + len(elements), n)
    values = {e: np.full(n, np.nan) for e in all_elements}
    for k, e in enumerate(elements):
        values[e] = arrays[1 + k].copy()
    t = arrays[0].copy()
    text = {v: iso_utc(v) for v in set(t.tolist())}  # whole seconds
    return seq, ObservationColumns(np.arange(n), ids, [text[v] for v in t.tolist()], t, values)


def copy_columns(cols: ObservationColumns) -> ObservationColumns:
    return ObservationColumns(cols.rows.copy(), list(cols.station_ids), list(cols.times), cols.t.copy(),
                              {e: v.copy() for e, v in cols.values.items()})


def restore(blocks: dict[str, list[bytes]], deltas: list[bytes], columns: StationColumns, qc: QCState,
            elements: tuple[str, ...], fold: Any) -> PartitionState:
    """Rebuild from stored blocks (``{"fast": [...], "daily": [...], "qc": [...]}``, block order, each stamped and
    unpacked) and the delta ring; ``fold(state, cols)`` applies one replayed batch (QC + station state)."""
    stamps: list[int] = []
    for b, blob in enumerate(blocks.get("fast", [])):
        s, raw = unstamp(blob)
        columns.load_block(b, raw)
        stamps.append(s)
    for b, blob in enumerate(blocks.get("daily", [])):
        s, raw = unstamp(blob)
        columns.load_block(b, raw)
        stamps.append(s)
    for blob in blocks.get("qc", []):
        s, raw = unstamp(blob)
        qc.merge(QCState.from_bytes(raw))
        stamps.append(s)
    oldest = min(stamps) if stamps else 0
    state = PartitionState(columns, qc, seq=max(stamps) if stamps else 0, snapshot_seq=oldest, snapshot_due=True)
    for seq, cols in sorted((decode_delta(d, elements) for d in deltas), key=lambda x: x[0]):
        if seq > oldest:
            fold(state, cols)
            state.seq = max(state.seq, seq)
    return state
