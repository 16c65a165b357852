"""`ews ingest FILE...`: read station files, check every row, publish observation batches to Kafka.

Each row of each file (``ingest.formats.read_observations``) is checked by
:func:`ingest.validate.validate_observation` against the station registry; the accepted observations are
grouped by ``warning.shared.topics.partition_for`` into one buffer per ``obs`` partition and sent as the worker's batch
message in column form (``ingest.columns.encode_batch``: ``{"accepted_at": unix_seconds, "columns": {field:
[value per observation]}}``; the worker also takes the row form ``{"observations": [...]}``) with at most
:data:`MAX_BATCH` observations, all of that partition, sent with an explicit ``partition=`` and the first
station id as key. A buffer is sent when full, when it has waited :data:`FLUSH_INTERVAL_S`, before every
replay pause and at the end. Rejected rows go to ``obs.rejected`` as orjson
``{"reason", "source", "time", "raw"}`` (key = station id, or ``b"?"`` when none is known); ``source`` is
``file:line`` for a row the parser refused and ``file@observation-time`` for a parsed row that failed
validation (the parsers do not report line numbers for good rows).

Producer: kafka-python with linger 20 ms, 1 MiB batches, ``acks=all``, retries, **no idempotence** (tansu
rejects it, BROKER.md §2.3) and one request in flight, so a retried request cannot overtake a later one: a
station's observations stay in time order (the worker drops an observation older than its station's last).

``--replay-speed X`` replays X seconds of data time per wall second, in time order (several files are merged
by time with :func:`heapq.merge`; rows are assumed time-ordered within a file); without it rows go as fast as
the broker takes them, file after file. ``--since`` (inclusive) and ``--until`` (exclusive) select by
observation time. ``--dry-run`` needs no broker: accepted Observations are written to stdout as JSON lines.

``--status`` (actual, exercise or test) is written on every batch: an exercise or test file makes drill warnings
of its own (their own station state and chains, CAP status Exercise/Test, sent only to subscriptions that opt in)
stamped with the file's data times. Actual reports older than a hazard's staleness horizon (rules.toml
``stale_after_h``) update the station state but issue no live warning: the summary says so.

Exit codes: 0 all files read and some row accepted (other row-level rejections never change it); 1 the broker
failed (unreachable, delivery errors); 2 usage error, or a file could not be read at all (the other files are
still processed); 3 rows were read but every one was rejected (e.g. a station outside the registry without
``--as-station``); 130 interrupted (what was read is flushed first).
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Protocol

import orjson

from ingest.columns import encode_batch
from ingest.formats import FORMATS, ParsedRow, RowError, UnreadableFileError, read_observations
from ingest.kafka_producer import producer_config
from ingest.validate import ObservationError, validate_observation
from warning.shared import running
from warning.shared.records import ACTUAL, STATUSES, Observation
from warning.shared.regions import StationRegistry
from warning.shared.times import iso_utc, now_iso
from warning.shared.topics import partition_for

__all__ = [
    "EXIT_BROKER",
    "EXIT_INTERRUPTED",
    "EXIT_NOTHING_ACCEPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "MAX_BATCH",
    "IngestStats",
    "add_ingest_parser",
    "partition_for",
    "reason_key",
    "run_ingest",
]

EXIT_OK = 0
EXIT_BROKER = 1
EXIT_USAGE = 2  # also: a file could not be read at all
EXIT_NOTHING_ACCEPTED = 3  # rows were read and every one was rejected: nothing reached the service
OLD_DATA_HINT_S = 24 * 3600  # newest accepted report older than this: the summary explains what actual means
EXIT_INTERRUPTED = 130

MAX_BATCH = 1000  # observations per obs message (the worker's batch pattern, BROKER.md)
MAX_MESSAGE_BYTES = 900_000  # below kafka-python's default max_request_size (1 MiB); bigger batches are split
FLUSH_INTERVAL_S = 0.5  # a partition buffer never waits longer than this (wall time)
PROGRESS_INTERVAL_S = 0.2  # at most 5 progress updates per second
RAW_KEEP = 65536  # bytes of a rejected row kept in its dead letter (as app.reject)
SHOW_REJECTED = 20  # --dry-run lists the first rejected rows on stderr
PROBE_TIMEOUT_S = 5.0  # an unreachable bootstrap address fails after this long
MIN_SLEEP_S = 0.001  # shorter replay pauses are skipped (the schedule is absolute, so nothing drifts)
OBS_TOPIC = "obs"
REJECTED_TOPIC = "obs.rejected"

Clock = Callable[[], float]
Sleep = Callable[[float], None]


# --------------------------------------------------------------------------------------------- arguments
def add_ingest_parser(subparsers: Any) -> None:
    """Add the ``ingest`` subcommand to an ``argparse`` subparsers object (``set_defaults(func=run_ingest)``)."""
    p = subparsers.add_parser(
        "ingest",
        help="read station files and publish their observations to the obs topic",
        description="Read station observation files, check every row and publish the accepted observations "
        "as batch messages to the 'obs' topic (rejected rows to 'obs.rejected'). Exit 2 if a file cannot "
        "be read at all (the others are still processed), 1 if the broker fails.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="station files (.gz is read through gzip)")
    p.add_argument("--format", default="auto", choices=("auto", *FORMATS),
                   help="file format (default: detected per file)")
    p.add_argument("--replay-speed", type=_positive_float, default=None, metavar="X",
                   help="replay in time order at X seconds of data per wall second (3600: one hour per "
                   "second); default: as fast as the broker takes it")
    p.add_argument("--since", type=_iso_arg, default=None, metavar="ISO",
                   help="only observations at or after this time (naive = UTC)")
    p.add_argument("--until", type=_iso_arg, default=None, metavar="ISO",
                   help="only observations before this time (exclusive; naive = UTC)")
    p.add_argument("--as-station", default=None, metavar="WMO",
                   help="replay the files as if they came from this registry station (drills)")
    p.add_argument("--status", default=ACTUAL, choices=STATUSES,
                   help="actual (default): live reports; exercise: a drill or demo (warnings of their own, CAP "
                   "status Exercise, stamped with the data times, sent only to subscriptions that opt in); "
                   "test: a technical test")
    p.add_argument("--dry-run", action="store_true",
                   help="no broker: write accepted observations to stdout as JSON lines, summary on stderr")
    p.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                   help="Kafka bootstrap servers (default: env KAFKA_BOOTSTRAP, else the broker of the service "
                   "running on <EWS_DATA_DIR or ./data>)")
    p.add_argument("--partitions", type=int, default=None, metavar="N",
                   help="partitions for topics created here (default: env EWS_PARTITIONS or 4); an existing "
                   "obs topic's own count is used for routing")
    p.add_argument("--grid-to", default="both", choices=("both", "counties", "stations"),
                   help="--format grid: 'counties' grades every cell and rolls it up to county levels (GridArea "
                   "records), 'stations' interpolates to the registry stations (ForecastPoints), 'both' (default) "
                   "sends the two")
    p.add_argument("--grid-chunk-steps", type=int, default=6, metavar="N",
                   help="--format grid, cell grading: lead-time steps read at once (memory: one chunk of the file)")
    p.add_argument("--json-summary", action="store_true",
                   help="print the final summary as one JSON object (stdout; stderr with --dry-run)")
    p.set_defaults(func=run_ingest)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return v


def parse_iso(text: str) -> str:
    """An ISO-8601 date or time (naive = UTC) as the observations' canonical ``YYYY-MM-DDTHH:MM:SSZ``."""
    s = text.strip()
    t = datetime.fromisoformat(s[:-1] + "+00:00" if s[-1:] in ("Z", "z") else s)
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return iso_utc(t)


def _iso_arg(text: str) -> str:
    try:
        return parse_iso(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date/time: {text!r}") from None


# --------------------------------------------------------------------------------------------- statistics
_DIGITS = re.compile(r"\d+")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def reason_key(reason: str) -> str:
    """The summary bucket of a reject reason: its text up to the first ':', quoted values and numbers
    blanked (so ``duplicate record for 2017-01-01T00:00:00Z`` and the next hour share a bucket)."""
    head = reason.split(":", 1)[0].strip()
    return _DIGITS.sub("N", _QUOTED.sub("'…'", head))[:80] or "unknown"


@dataclass
class FileStats:
    path: str
    format: str
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    filtered: int = 0
    error: str | None = None


@dataclass
class IngestStats:
    started: float
    read: int = 0
    accepted: int = 0  # passed validation and the time window (handed to the sink)
    filtered: int = 0  # outside --since/--until
    rejected: Counter[str] = field(default_factory=Counter)
    files: list[FileStats] = field(default_factory=list)
    newest: str = ""  # the newest accepted report time
    status: str = ACTUAL

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def summary(self, published: int, failed: int, now: float, dry_run: bool, interrupted: bool,
                error: str | None) -> dict[str, Any]:
        elapsed = max(now - self.started, 1e-9)
        return {
            "dry_run": dry_run,
            "files": [vars(f) for f in self.files],
            "read": self.read,
            "accepted": self.accepted,
            "published": published,
            "failed": failed,
            "filtered": self.filtered,
            "rejected": self.rejected_total,
            "rejected_by_reason": dict(self.rejected.most_common()),
            "unreadable_files": [f.path for f in self.files if f.error],
            "elapsed_s": round(elapsed, 3),
            "rate_per_s": round(self.read / elapsed, 1),
            "published_per_s": round(published / elapsed, 1),
            "interrupted": interrupted,
            "error": error,
            "status": self.status,
            "newest": self.newest or None,
        }


def format_summary(s: dict[str, Any]) -> str:
    """The human-readable summary (stderr)."""
    what = "written (dry run)" if s["dry_run"] else "published"
    lines = [
        f"ews ingest: {s['read']:,} rows read from {len(s['files'])} file(s) in {s['elapsed_s']:.2f} s "
        f"({s['rate_per_s']:,.0f} rows/s)",
        f"  {what}: {s['published']:,} ({s['published_per_s']:,.0f}/s)   accepted: {s['accepted']:,}   "
        f"outside --since/--until: {s['filtered']:,}   rejected: {s['rejected']:,}"
        + (f"   delivery failed: {s['failed']:,}" if s["failed"] else ""),
    ]
    lines += [f"    {n:>9,}  {reason}" for reason, n in s["rejected_by_reason"].items()]
    lines += [f"  UNREADABLE {f['path']}: {f['error']}" for f in s["files"] if f["error"]]
    if s["error"]:
        lines.append(f"  ERROR: {s['error']}")
    if s["interrupted"]:
        lines.append("  interrupted: stopped early")
    lines += _hints(s)
    return "\n".join(lines)


def _hints(s: dict[str, Any]) -> list[str]:
    """What an operator should know about what was sent: nothing accepted, or history sent as actual."""
    out = []
    if s["read"] and not s["accepted"] and s["rejected_by_reason"].get("station_id"):
        out.append("  NOTHING ACCEPTED: the file's station is not in the registry; to replay it as a registry "
                   "station give --as-station WMO (make run FILE=... AS_STATION=WMO)")
    newest = s.get("newest")
    if s.get("status", ACTUAL) == ACTUAL and newest and not s["dry_run"]:
        age = time.time() - (_epoch(newest) or time.time())
        if age > OLD_DATA_HINT_S:
            out.append(f"  NOTE: the newest report is from {newest}. Actual reports older than a hazard's staleness "
                       "horizon (rules.toml stale_after_h) update the station state but issue no live warning. "
                       "For a drill use --status exercise; to look at a past season use `ews replay`.")
    return out


class Progress:
    """A one-line ``\\r`` progress display on a terminal (at most 5 updates/s); silent otherwise."""

    def __init__(self, stream: IO[str], clock: Clock, enabled: bool | None = None, label: str = "published") -> None:
        self.stream = stream
        self.label = label
        self.clock = clock
        if enabled is None:
            isatty = getattr(stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self._last = float("-inf")
        self._width = 0

    def update(self, stats: IngestStats, published: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if not force and now - self._last < PROGRESS_INTERVAL_S:
            return
        self._last = now
        rate = stats.read / max(now - stats.started, 1e-9)
        text = (f"read {stats.read:,}  {self.label} {published:,}  rejected {stats.rejected_total:,}  "
                f"filtered {stats.filtered:,}  {rate:,.0f} rows/s")
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


# --------------------------------------------------------------------------------------------- sinks
class Sink(Protocol):
    def add(self, obs: dict[str, Any]) -> None: ...
    def reject(self, record: dict[str, Any], key: bytes) -> None: ...
    def tick(self, now: float) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> tuple[int, int, str | None]: ...  # (published, failed, first error)
    @property
    def published(self) -> int: ...


class SinkFailed(Exception):
    """The producer refused a send (broker gone past max_block_ms, message too large): stop reading input."""


class OutputClosed(Exception):
    """stdout was closed by its reader (a broken pipe): stop reading input."""


class DryRunSink:
    """Accepted observations as JSON lines on ``out``; the first rejected rows listed on ``err``."""

    def __init__(self, out: IO[str], err: IO[str], show_rejected: int = SHOW_REJECTED) -> None:
        self._bin: IO[bytes] | None = getattr(out, "buffer", None)
        self._out = out
        self._err = err
        self._chunk: list[bytes] = []
        self._written = 0
        self._show = show_rejected
        self._shown = 0
        self.closed_by_reader = False

    @property
    def published(self) -> int:
        return self._written

    def add(self, obs: dict[str, Any]) -> None:
        self._chunk.append(orjson.dumps(obs))
        self._written += 1
        if len(self._chunk) >= 1000:
            self.flush()

    def reject(self, record: dict[str, Any], key: bytes) -> None:
        if self._shown < self._show:
            self._err.write(f"rejected {record['source']}: {record['reason']}\n")
        elif self._shown == self._show:
            self._err.write("rejected: ... (more in the summary)\n")
        self._shown += 1

    def tick(self, now: float) -> None:
        pass

    def flush(self) -> None:
        if not self._chunk:
            return
        data = b"\n".join(self._chunk) + b"\n"
        self._chunk.clear()
        if self.closed_by_reader:
            return
        try:
            if self._bin is not None:
                self._out.flush()
                self._bin.write(data)
                self._bin.flush()
            else:
                self._out.write(data.decode())
                self._out.flush()
        except BrokenPipeError:  # `ews ingest --dry-run ... | head`: the reader has what it wanted
            self.closed_by_reader = True
            self._written -= data.count(b"\n")
            with contextlib.suppress(OSError, ValueError):  # no second error when Python flushes stdout at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), self._out.fileno())
            raise OutputClosed from None

    def close(self) -> tuple[int, int, str | None]:
        with contextlib.suppress(OutputClosed):
            self.flush()
        return self._written, 0, None


class KafkaSink:
    """Batches per obs partition sent with a kafka-python producer; delivery counted from broker acks."""

    def __init__(self, producer: Any, partitions: int, clock: Clock, partition_for: Callable[[str, int], int],
                 flush_interval_s: float = FLUSH_INTERVAL_S, max_batch: int = MAX_BATCH,
                 max_bytes: int = MAX_MESSAGE_BYTES, status: str = ACTUAL) -> None:
        self.producer = producer
        self.status = status  # every batch's: actual, exercise or test
        self.partitions = partitions
        self.clock = clock
        self.partition_for = partition_for
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self.max_bytes = max_bytes
        self._bufs: dict[int, list[dict[str, Any]]] = {}
        self._since: dict[int, float] = {}
        self._parts: dict[str, int] = {}  # station -> partition, cached
        self._lock = threading.Lock()
        self._published = 0
        self._failed = 0
        self._error: str | None = None
        self.messages = 0

    @property
    def published(self) -> int:
        return self._published

    def add(self, obs: dict[str, Any]) -> None:
        sid = obs["station_id"]
        p = self._parts.get(sid)
        if p is None:
            p = self._parts[sid] = self.partition_for(sid, self.partitions)
        buf = self._bufs.get(p)
        if buf is None:
            buf = self._bufs[p] = []
            self._since[p] = self.clock()
        buf.append(obs)
        if len(buf) >= self.max_batch:
            self._send(p)

    def reject(self, record: dict[str, Any], key: bytes) -> None:
        try:
            fut = self.producer.send(REJECTED_TOPIC, value=orjson.dumps(record), key=key)
        except Exception as exc:
            self._on_error(0, exc)
            raise SinkFailed(repr(exc)) from exc
        fut.add_errback(self._on_error, 0)

    def tick(self, now: float) -> None:
        for p in [p for p, t in self._since.items() if now - t >= self.flush_interval_s]:
            self._send(p)

    def flush(self) -> None:
        for p in list(self._bufs):
            self._send(p)

    def _send(self, p: int) -> None:
        batch = self._bufs.pop(p, None)
        self._since.pop(p, None)
        if batch:
            self._send_batch(p, batch, time.time())

    def _send_batch(self, p: int, batch: list[dict[str, Any]], accepted_at: float) -> None:
        value = encode_batch(batch, accepted_at, self.status)
        if len(value) > self.max_bytes and len(batch) > 1:
            half = len(batch) // 2
            self._send_batch(p, batch[:half], accepted_at)
            self._send_batch(p, batch[half:], accepted_at)
            return
        try:
            fut = self.producer.send(OBS_TOPIC, value=value, key=batch[0]["station_id"].encode(), partition=p)
        except Exception as exc:  # KafkaTimeoutError after max_block_ms, MessageSizeTooLargeError, ...
            self._on_error(len(batch), exc)
            raise SinkFailed(repr(exc)) from exc
        fut.add_callback(self._on_ok, len(batch))
        fut.add_errback(self._on_error, len(batch))
        self.messages += 1

    def _on_ok(self, n: int, _metadata: Any) -> None:
        with self._lock:
            self._published += n

    def _on_error(self, n: int, exc: BaseException) -> None:
        with self._lock:
            self._failed += n
            if self._error is None:
                self._error = f"delivery failed: {exc!r}"

    def close(self, timeout_s: float = 60.0) -> tuple[int, int, str | None]:
        with contextlib.suppress(SinkFailed):  # recorded as failed already
            self.flush()
        try:
            self.producer.flush(timeout=timeout_s)
        except Exception as exc:  # KafkaTimeoutError: what was not acked is reported as not published
            with self._lock:
                self._error = self._error or f"flush failed: {exc!r}"
        finally:
            self.producer.close(timeout=5)
        with self._lock:
            return self._published, self._failed, self._error


# --------------------------------------------------------------------------------------------- rows
def _open(path: str, fmt: str, as_station: str | None) -> tuple[FileStats, Iterator[ParsedRow] | None]:
    stats = FileStats(path=path, format=fmt)
    try:
        if fmt == "auto":
            from ingest.formats import detect_format

            stats.format = detect_format(path)
        if stats.format == "grid":
            raise UnreadableFileError(f"{path}: a forecast grid: ingest it with --format grid "
                                      "(ForecastPoints at the registry stations -> the forecast topic)")
        return stats, read_observations(path, stats.format, as_station=as_station)
    except (UnreadableFileError, OSError, ValueError) as exc:
        stats.error = str(exc)
        return stats, None


def _guarded(stats: FileStats, rows: Iterator[ParsedRow]) -> Iterator[tuple[FileStats, ParsedRow]]:
    """The file's rows; an unexpected failure part-way ends this file only (recorded as its error)."""
    try:
        for row in rows:
            yield stats, row
    except Exception as exc:
        stats.error = f"read failed after row {stats.read}: {exc!r}"


def _sequential(paths: Iterable[str], fmt: str, as_station: str | None,
                files: list[FileStats]) -> Iterator[tuple[FileStats, ParsedRow]]:
    """File after file (one open at a time)."""
    for path in paths:
        stats, rows = _open(path, fmt, as_station)
        files.append(stats)
        if rows is not None:
            yield from _guarded(stats, rows)


def _merged(paths: Iterable[str], fmt: str, as_station: str | None,
            files: list[FileStats]) -> Iterator[tuple[FileStats, ParsedRow]]:
    """All files merged by observation time (each file assumed time-ordered); a refused row keeps the time of
    the file's previous observation so it stays in place."""
    streams = []
    for path in paths:
        stats, rows = _open(path, fmt, as_station)
        files.append(stats)
        if rows is not None:
            streams.append(_keyed(_guarded(stats, rows)))
    for _key, item in heapq.merge(*streams, key=lambda kv: kv[0]):
        yield item


def _keyed(rows: Iterator[tuple[FileStats, ParsedRow]]) -> Iterator[tuple[str, tuple[FileStats, ParsedRow]]]:
    last = ""
    for item in rows:
        if isinstance(item[1], Observation):
            last = item[1].time
        yield last, item


_EPOCH_CACHE: dict[str, float] = {}


def _epoch(t: str) -> float | None:
    v = _EPOCH_CACHE.get(t)
    if v is None:
        try:
            v = datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith("Z") else t).timestamp()
        except ValueError:
            return None
        if len(_EPOCH_CACHE) > 4096:
            _EPOCH_CACHE.clear()
        _EPOCH_CACHE[t] = v
    return v


# --------------------------------------------------------------------------------------------- the run
class _UsageError(Exception):
    pass


def run_ingest(args: argparse.Namespace, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep,
               stdout: IO[str] | None = None, stderr: IO[str] | None = None,
               producer_factory: Callable[..., Any] | None = None, progress: bool | None = None) -> int:
    """Run ``ews ingest`` with parsed ``args``; returns the exit code.

    ``clock``/``sleep`` drive the replay schedule and the time flush (tests inject fakes), ``stdout``/
    ``stderr`` default to the process streams, ``producer_factory(**config)`` to ``kafka.KafkaProducer``,
    ``progress`` to "stderr is a terminal".
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        return _run(args, clock, sleep, out, err, producer_factory, progress)
    except _UsageError as exc:
        err.write(f"ews ingest: {exc}\n")
        return EXIT_USAGE


def _run(args: argparse.Namespace, clock: Clock, sleep: Sleep, out: IO[str], err: IO[str],
         producer_factory: Callable[..., Any] | None, progress_on: bool | None) -> int:
    if args.format == "grid":  # forecast grids go to the `forecast` topic (ingest.forecasts)
        from ingest.forecasts import run_grid_ingest

        return run_grid_ingest(list(args.files), bootstrap=args.bootstrap, partitions=args.partitions,
                               dry_run=bool(args.dry_run), out=out, err=err, status=args.status,
                               grid_to=getattr(args, "grid_to", "both"),
                               area_grader=getattr(args, "grid_area_grader", None),
                               hazards=getattr(args, "grid_hazards", None))
    registry = StationRegistry.load()
    as_station = args.as_station.strip() if args.as_station else None
    if as_station is not None and as_station not in registry:
        raise _UsageError(f"--as-station {as_station}: not a station of the registry")
    if args.since and args.until and args.since >= args.until:
        raise _UsageError(f"--since {args.since} is not before --until {args.until}")
    dry_run = bool(args.dry_run)
    stats = IngestStats(started=clock(), status=args.status)
    sink: Sink | None = DryRunSink(out, err) if dry_run else _broker_sink(args, clock, producer_factory, err)
    if sink is None:
        return EXIT_BROKER
    prog = Progress(err, clock, progress_on, label="written" if dry_run else "published")
    rows_of = _merged if args.replay_speed else _sequential
    rows = rows_of(args.files, args.format, as_station, stats.files)
    interrupted = _ingest_rows(rows, args, registry.__contains__, sink, stats, prog, clock, sleep, err)
    prog.update(stats, sink.published, force=True)
    published, failed, error = sink.close()
    prog.done()
    summary = stats.summary(published, failed, clock(), dry_run, interrupted, error)
    if args.json_summary:
        target = err if dry_run else out
        target.write(orjson.dumps(summary).decode() + "\n")
        target.flush()
    else:
        err.write(format_summary(summary) + "\n")
        err.flush()
    if interrupted:
        return EXIT_INTERRUPTED
    if any(f.error for f in stats.files):
        return EXIT_USAGE
    if failed or error:
        return EXIT_BROKER
    if stats.read and not stats.accepted and stats.rejected_total:
        return EXIT_NOTHING_ACCEPTED
    return EXIT_OK


def _broker_sink(args: argparse.Namespace, clock: Clock, producer_factory: Callable[..., Any] | None,
                 err: IO[str]) -> KafkaSink | None:
    """The Kafka sink of ``--bootstrap`` (or KAFKA_BOOTSTRAP); None, said on ``err``, when the broker fails."""
    try:  # --bootstrap, KAFKA_BOOTSTRAP, else the broker of the service running on this data dir
        bootstrap = running.find_bootstrap(args.bootstrap)
    except running.NoRunningService as exc:
        raise _UsageError(f"{exc}; or use --dry-run") from None
    if args.partitions is not None and args.partitions < 1:
        raise _UsageError(f"--partitions {args.partitions}: must be at least 1")
    try:
        return _kafka_sink(bootstrap, args.partitions, clock, partition_for, producer_factory, err, args.status)
    except Exception as exc:  # NoBrokersAvailable, KafkaTimeoutError, ...
        err.write(f"ews ingest: broker {bootstrap}: {exc!r}\n")
        return None


class _ReplaySchedule:
    """``--replay-speed``: data time ts is due at wall time w0 + (ts - t0) / speed, t0 and w0 taken at the first
    row with a readable time. The schedule is absolute, so skipped short pauses do not make it drift."""

    def __init__(self, speed: float, clock: Clock) -> None:
        self.speed = speed
        self.clock = clock
        self.t0: float | None = None
        self.w0 = 0.0

    def delay(self, t: str) -> float | None:
        """Seconds until the row of time ``t`` is due (<= 0: late); None if ``t`` cannot be read."""
        ts = _epoch(t)
        if ts is None:
            return None
        if self.t0 is None:
            self.t0, self.w0 = ts, self.clock()
        return self.w0 + (ts - self.t0) / self.speed - self.clock()


def _ingest_rows(rows: Iterator[tuple[FileStats, ParsedRow]], args: argparse.Namespace, known: Callable[[str], bool],
                 sink: Sink, stats: IngestStats, prog: Progress, clock: Clock, sleep: Sleep, err: IO[str]) -> bool:
    """Check every row of ``rows`` and hand it to ``sink`` (accepted, or rejected to obs.rejected), paced by
    ``--replay-speed`` and filtered by ``--since``/``--until``. Returns whether Ctrl-C interrupted it; a closed
    output or a failed send stops it early (said on ``err``). Always closes ``rows``."""
    since, until = args.since, args.until
    replay = _ReplaySchedule(args.replay_speed, clock) if args.replay_speed else None
    now_dt = datetime.now(UTC)
    interrupted = False
    counter = itertools.count(1)
    try:
        for fs, row in rows:
            n = next(counter)
            fs.read += 1
            stats.read += 1
            if n & 255 == 0:  # the clock, the time flush and the progress line cost too much for every row
                now = clock()
                sink.tick(now)
                prog.update(stats, sink.published)
                if n & 4095 == 0:
                    now_dt = datetime.now(UTC)
            if isinstance(row, RowError):
                _reject(sink, stats, fs, row.reason, f"{fs.path}:{row.line_no}", row.raw, b"?")
                continue
            t = row.time
            if (since is not None and t < since) or (until is not None and t >= until):
                fs.filtered += 1
                stats.filtered += 1
                continue
            delay = replay.delay(t) if replay is not None else None
            if delay is not None and delay >= MIN_SLEEP_S:
                sink.flush()  # everything due before this pause goes out now
                prog.update(stats, sink.published)
                sleep(delay)
            _validate_and_add(fs, row, known, now_dt, sink, stats)
    except KeyboardInterrupt:
        interrupted = True
    except OutputClosed:
        err.write("ews ingest: stdout closed by its reader; stopped\n")
    except SinkFailed as exc:
        err.write(f"ews ingest: stopped, the broker refused a send: {exc}\n")
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()
    return interrupted


def _validate_and_add(fs: FileStats, row: Observation, known: Callable[[str], bool], now: datetime, sink: Sink,
                      stats: IngestStats) -> None:
    """Validate a parsed row against the registry: to the sink if it passes, to obs.rejected if not."""
    raw = row.to_dict()
    try:
        obs = validate_observation(raw, known_station=known, now=now, source=row.source)
    except ObservationError as exc:
        _reject(sink, stats, fs, str(exc), f"{fs.path}@{row.time}", orjson.dumps(raw),
                row.station_id.encode()[:64] or b"?")
        return
    if row.qc:
        obs.qc = row.qc
    fs.accepted += 1
    stats.accepted += 1
    if obs.time > stats.newest:
        stats.newest = obs.time
    sink.add(obs.to_dict())


def _reject(sink: Sink, stats: IngestStats, fs: FileStats, reason: str, source: str, raw: bytes, key: bytes) -> None:
    """Count a rejected row (by file and by reason) and send its dead letter (the first RAW_KEEP bytes)."""
    fs.rejected += 1
    stats.rejected[reason_key(reason)] += 1
    record = {"reason": reason, "source": source, "time": now_iso(),
              "raw": raw[:RAW_KEEP].decode("utf-8", "replace")}
    sink.reject(record, key)


def _kafka_sink(bootstrap: str, partitions: int | None, clock: Clock, partition_for: Callable[[str, int], int],
                producer_factory: Callable[..., Any] | None, err: IO[str], status: str = ACTUAL) -> KafkaSink:
    from warning.shared.config import Settings
    from warning.shared.topics import ensure_topics, metadata_ok

    # A raw Metadata request bounded in time: the admin client would retry an unreachable address for ~30 s.
    servers = [s.strip() for s in bootstrap.split(",") if s.strip()]
    settings = Settings.from_env()
    if settings.kafka.protocol == "PLAINTEXT" and not any(metadata_ok(s, timeout_s=PROBE_TIMEOUT_S)
                                                          for s in servers):
        raise ConnectionError(f"no Kafka broker answers at {bootstrap} (probed for {PROBE_TIMEOUT_S:g} s each)")
    wanted = partitions or settings.partitions
    ensure_topics(bootstrap, wanted, auth=settings.kafka)
    if producer_factory is None:
        from kafka import KafkaProducer

        producer_factory = KafkaProducer
    producer = producer_factory(**producer_config(bootstrap, settings.kafka))
    try:
        found = producer.partitions_for(OBS_TOPIC)
        actual = len(found) if found else wanted
    except Exception:
        producer.close(timeout=5)
        raise
    if partitions and actual != partitions:
        err.write(f"ews ingest: topic {OBS_TOPIC} has {actual} partitions, not {partitions}: routing by {actual}\n")
    return KafkaSink(producer, actual, clock, partition_for, status=status)
