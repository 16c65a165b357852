"""Where the observations agent keeps each obs partition's state: faust tables of LZ4 blocks (snapshots of the
columnar station state and QC context, keyed "partition:block") and a ring of batch deltas ("partition:slot"),
encoded by ``ingest.partition_state``. The state is cached while this worker is the only writer."""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lz4.frame
import numpy as np

from ingest import quantities
from ingest.columns import ELEMENTS, ObservationColumns
from ingest.partition_state import (
    SNAPSHOT_EVERY,
    PartitionState,
    encode_delta,
    restore,
    stamp,
)
from ingest.qc import QCState, check_columns
from ingest.qc import load_models as _load_models
from ingest.station_columns import BLOCK, SlotInfo, StationColumns
from warning.shared import metrics

log = logging.getLogger(__name__)

Table = MutableMapping[str, Any]


def pack(blob: bytes) -> bytes:
    """State blocks are mostly NaN, zeros and repeated values: LZ4 (frame format, with its checksum) shrinks them
    ~4x at ~1 GB/s (zlib level 1: ~7x but 5x the CPU, which measured 7 % of the worker), and the broker (tansu
    never compacts), the socket and restart recovery all carry less."""
    return bytes(lz4.frame.compress(blob, content_checksum=True))


def unpack(blob: bytes) -> bytes:
    try:
        return bytes(lz4.frame.decompress(blob))
    except RuntimeError as exc:  # lz4's error for anything that is not a valid frame
        raise ValueError(f"not a compressed state block: {exc}") from None


def load_qc_models(directory: Path) -> dict[str, Any]:
    """Per-station anomaly models fitted offline (saved with the climatology); none is fine: the range, step,
    persistence and consistency checks run without them."""
    if not directory.is_dir():
        return {}
    try:
        return dict(_load_models(directory))
    except Exception:
        log.exception("cannot load QC models from %s; continuing without them", directory)
        return {}


@dataclass(frozen=True)
class QualityControl:
    """WMO-style QC (ingest.qc) with a partition's columnar context."""

    elevations: dict[str, Any]
    models: dict[str, Any]

    def __call__(self, context: QCState, cols: ObservationColumns
                 ) -> tuple[list[tuple[int, str]], ObservationColumns]:
        """(hard failures as (row, reason), the rows that pass). Flagged values are removed from what grading
        reads (NaN), so a flagged value never triggers a warning on its own."""
        hard, flags = check_columns(cols.station_ids, cols.t, cols.values, context, elevations=self.elevations,
                                    models=self.models)
        keep = np.array([h is None for h in hard], dtype=bool)
        for i, flagged in flags.items():
            metrics.QC_FLAGGED.inc(len(flagged))
            for el in flagged:
                cols.values[el][i] = np.nan
        failed = [(i, str(h)) for i, h in enumerate(hard) if h]
        return failed, (cols if keep.all() else cols.take(keep))


def report_by_report(ps: PartitionState, cols: ObservationColumns, step: Callable[[ObservationColumns], Any]
                     ) -> tuple[list[Any], list[tuple[ObservationColumns, Exception]]]:
    """``step`` on each report alone; a report that raises is undone (what it half-applied is dropped) and
    returned with its exception."""
    done, failed = [], []
    for i in range(len(cols)):
        one = cols.take(np.arange(len(cols)) == i)
        before = ps.columns.copy()
        try:
            done.append(step(one))
        except Exception as exc:
            ps.columns = before
            failed.append((one, exc))
    return done, failed


@dataclass(frozen=True)
class FoldParams:
    """The rule parameters the station state folds with (from rules.toml, passed in by the composition root)."""

    api_decay: float
    ground_offset_c: float
    calm_wind_ms: float = quantities.CALM_WIND_MS
    drought_process: tuple[int, int] = (quantities.DROUGHT_PROCESS_MIN_DAYS, quantities.DROUGHT_PROCESS_END_DAYS)


class PartitionStore:
    """The obs partitions' state of this worker: cached, restored from the tables after a rebalance, recovery or
    error, and written back as deltas plus periodic snapshots.

    ``namespace``: "" for actual reports (the keys deployments already hold); exercise and test reports keep a
    station state of their own in the same tables under ``"<status>|partition:block"`` keys, so a drill replaying
    history never changes the live stations' state, nor a live report a drill's."""

    def __init__(self, tables: dict[str, Table], slot_info: Callable[[str], SlotInfo], mci_lookup: Any,
                 quality_control: QualityControl, fold_params: FoldParams, namespace: str = "") -> None:
        self.tables = tables  # "fast", "daily", "qc" (snapshots) and "log" (the delta ring)
        self.slot_info, self.mci_lookup = slot_info, mci_lookup
        self.quality_control = quality_control
        self.fold_params = fold_params
        self.prefix = f"{namespace}|" if namespace else ""
        self.partitions: dict[int, PartitionState] = {}

    def namespaced(self, namespace: str) -> PartitionStore:
        """The store of another status's station state (same tables, its own keys)."""
        return PartitionStore(self.tables, self.slot_info, self.mci_lookup, self.quality_control, self.fold_params,
                              namespace)

    def new_columns(self) -> StationColumns:
        return StationColumns(self.slot_info, self.mci_lookup)

    def get(self, part: int, reload: bool = False) -> PartitionState:
        """The partition's state: cached while this worker is the only writer (the tables still hold what it
        wrote last), else restored from the stored snapshot and deltas."""
        ps = self.partitions.get(part)
        if ps is not None and not reload and all(
                self.tables[name].get(key) is blob for (name, key), blob in ps.written.items()):
            return ps
        blocks: dict[str, list[bytes]] = {}
        try:
            for name in ("fast", "daily", "qc"):
                b, found = 0, []
                while (blob := self.tables[name].get(f"{self.prefix}{part}:{b}")) is not None:
                    found.append(unpack(blob))
                    b += 1
                blocks[name] = found
            deltas = [unpack(d) for i in range(SNAPSHOT_EVERY)
                      if (d := self.tables["log"].get(f"{self.prefix}{part}:{i}")) is not None]
            ps = restore(blocks, deltas, self.new_columns(), QCState(), ELEMENTS, self.fold)
        except ValueError:
            log.exception("observations: stored state of partition %d is unreadable; starting it afresh", part)
            ps = PartitionState(self.new_columns(), QCState(), snapshot_due=True)
        self.partitions[part] = ps
        return ps

    def apply(self, ps: PartitionState, batch: ObservationColumns) -> Any:
        f = self.fold_params
        return ps.columns.apply(batch.station_ids, batch.t, batch.values, api_decay=f.api_decay,
                                ground_offset_c=f.ground_offset_c, calm_wind_ms=f.calm_wind_ms,
                                drought_process=f.drought_process)

    def fold(self, ps: PartitionState, cols: ObservationColumns) -> None:
        """A replayed batch: QC and the station state, as live, without grading or rejects."""
        _, cols = self.quality_control(ps.qc, cols)
        try:
            self.apply(ps, cols)
        except Exception:  # as live: a batch that cannot be folded at once goes report by report
            report_by_report(ps, cols, lambda one: self.apply(ps, one))

    def store(self, part: int, ps: PartitionState, raw_cols: ObservationColumns) -> None:
        """The batch's delta into its ring slot; every SNAPSHOT_EVERY - 1 batches (and after a recovery) every
        block of the state, stamped with the batch sequence number."""
        ps.seq += 1
        key = f"{self.prefix}{part}:{ps.seq % SNAPSHOT_EVERY}"
        blob = pack(encode_delta(ps.seq, raw_cols))
        self.tables["log"][key] = blob
        ps.written["log", key] = blob
        if not ps.needs_snapshot():
            return
        columns, qc = ps.columns, ps.qc
        for b in range(columns.blocks()):
            for name in ("fast", "daily"):
                blob = pack(stamp(ps.seq, columns.encode_block(b, name)))
                self.tables[name][f"{self.prefix}{part}:{b}"] = blob
                ps.written[name, f"{self.prefix}{part}:{b}"] = blob
        for b in range((len(qc) + BLOCK - 1) // BLOCK):
            lo, hi = b * BLOCK, min((b + 1) * BLOCK, len(qc))
            blob = pack(stamp(ps.seq, qc.subset(np.arange(lo, hi)).to_bytes()))
            self.tables["qc"][f"{self.prefix}{part}:{b}"] = blob
            ps.written["qc", f"{self.prefix}{part}:{b}"] = blob
        ps.snapshot_seq, ps.snapshot_due = ps.seq, False

    def daily_precip_states(self) -> dict[str, dict[str, Any]]:
        """{station: {"pd": daily precipitation}} of this worker's partitions (the SPI product's input)."""
        out: dict[str, dict[str, Any]] = {}
        for part in list(self.partitions):
            columns = self.get(part).columns
            for sid in columns.station_ids:
                out[sid] = {"pd": columns.daily_precip(sid)}
        return out

