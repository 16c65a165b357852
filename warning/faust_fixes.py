"""Corrections to faust-streaming 0.15.3's consumer that lost records, each measured before it was made.

1. The loop that hands fetched records to the streams (``Consumer._drain_messages``) kept one "read offset" per
   partition that meant "last record handed over" after a hand-over but "next record to read" after a seek, marked
   a record read even when a suspended flow cancelled its hand-over, and recorded a jump in offsets as a gap that
   the commit treats as acknowledged (faust-streaming issues #216, #223, #312). Seen: after a restart a block of
   ``alerts.retry.0`` records never reached the agent while later ones did, and was committed past
   (tests/integration/test_delivery.py, the SIGTERM-mid-burst test). Here each partition of an acknowledged
   topic has one number, the next offset the streams expect: a record below it was handed over already (or is
   the stale rest of a batch fetched before a seek) and is skipped; a record above it means records went missing
   on the way (a batch cut short by a suspended flow, a cleared queue), so the loop seeks back to it. A gap that
   is still there after that seek is real (retention, transaction markers) and is recorded as faust does.
2. The commit (``Consumer._new_offset``): the first commit of a partition in a process took the first run of
   consecutive acknowledged offsets even when a lower offset was still being processed (``deliver`` runs 32
   actors), so a stop while the lowest record was in flight committed past it (make chaos "stopstart": 25 of 200
   webhooks lost). The corrected commit stops below the lowest record in flight and below a gap at the head.
3. The recovery after every assignment resumes the flow once early, seeks the stream partitions to their
   committed offsets, then calls ``flow_control.resume()`` again, which empties every agent's queue: records
   handed over in between were never processed, never acknowledged, never fetched again, and the commit stayed
   below them for the life of the process (make chaos "stopstart", the restarted worker: 7-30 of 200 webhooks not
   sent in 3 of 4 runs). The corrected ``clear`` seeks each partition whose records it throws away back to the
   first of them.

   A seek or rewind can also land while the loop waits for a hand-over to finish (the recovery seeks and clears
   from its own task); the loop then leaves the new expected offset alone and drops the rest of its batch for
   that partition, instead of writing "this record + 1" over it and skipping the records read again (measured:
   a restarted worker rewound ``alerts.retry.0`` to 323 after clearing the queues, the hand-over of 384 then
   set 385, and 323-384 were skipped as "handed over already").

4. Whatever the cause, a record can still leave the pipeline unseen (measured: 3-15 of 200 webhooks in 2 of 4
   "stopstart" runs after 1-3). So the loop checks every few seconds, per partition, that the record at the
   commit point is somewhere: acknowledged, in flight in an agent, waiting in an agent's queue, or not yet handed
   over. One that is nowhere in two checks in a row was lost on the way, and the loop reads the partition again
   from it; records acknowledged since are skipped, not processed twice.

5. A partition the group never committed has no commit point in faust (``None``): the check of 4 had nothing to
   look at, and the first commit (2) took the first run of acknowledged offsets wherever it began, so records
   lost on the way at the head of such a partition were committed past, silently (a worker SIGKILLed before its
   first commit, then restarted: its retry topics had no committed offsets). Such a partition's commit point is
   now the start of its log, where ``consumer_auto_offset_reset="earliest"`` reads from.

6. A table written in an agent checks, once per source topic, that its changelog topic has as many partitions as
   the source. On a fresh Apache Kafka the consumer's metadata can list the changelog topic faust has just created
   with 0 partitions for a moment; the check then raised ``PartitionsMismatch`` in the ``grade`` agent (the
   ``receivers`` table; make test, tests/integration/test_kafka_crash.py, 2 of ~6 runs under load: the burst
   never started). Kafka has no topic with 0 partitions, so 0 means "not known yet": the check waits for the
   metadata and runs on a later write.

7. A seek or rewind recorded while a hand-over was pending (3) assumed the batch being handed over was fetched
   before aiokafka moved, so that the rest of it comes again from the new position. The recovery's seek reaches
   aiokafka before it is recorded here (it awaits the log starts in between), so the loop may already be handing
   over a batch fetched from the new position: the rest of that batch was dropped and nothing brought it again
   (tests/integration/test_delivery.py, the SIGTERM-mid-burst test, 1 run in 6: the restarted worker stopped
   fetching ``alerts.retry.0`` after its first batch, deliveries stalled until the next restart). aiokafka's fetch
   position tells the two apart: past the recorded offset, the batch is the new position's records and is handed
   over on. And a check like 4, for records aiokafka returned that never reached the streams: between batches the
   streams' next offset equals aiokafka's position; below it in two checks in a row, the partition is read again
   from there (never below its commit point; a partition with nothing handed over since the recovery's seek is
   checked against its commit point: after a SIGKILL restart a batch of a never committed ``alerts.outbox``
   partition, cut off by a suspended flow, was never fetched again, since aiokafka does not move such a partition
   at the seek: no delivery at all in 120 s, once in a full make test). And the loop hands nothing over while the
   recovery seeks: a batch fetched from the new position and handed over before the seek was recorded was read
   again from the committed offset, so every record in flight then was processed twice (22 - 45 duplicate webhooks
   of 30 in that test).

Everything else is faust's code as it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

from aiokafka.structs import TopicPartition
from faust.tables import base as faust_tables
from faust.transport import consumer as faust_consumer
from faust.utils import functional as faust_functional
from mode.utils import queues as mode_queues

log = logging.getLogger(__name__)

LOST_CHECK_S = 5.0  # how often the loop looks for a record lost at a commit point (two looks before it re-reads)

_installed = False


def _moves(consumer: Any) -> dict[Any, int]:
    """How many times each partition's expected offset was set by a seek or rewind (not by a hand-over)."""
    moves: dict[Any, int] | None = consumer.__dict__.get("_ews_moves")
    if moves is None:
        moves = consumer.__dict__["_ews_moves"] = {}
    return moves


def _moved(consumer: Any, tp: Any) -> None:
    moves = _moves(consumer)
    moves[tp] = moves.get(tp, 0) + 1


def _seek_idle(consumer: Any) -> asyncio.Event:
    """Set while no recovery seek (``_perform_seek``) is running: the loop hands nothing over while one is."""
    idle: asyncio.Event | None = consumer.__dict__.get("_ews_seek_idle")
    if idle is None:
        idle = consumer.__dict__["_ews_seek_idle"] = asyncio.Event()
        idle.set()
    return idle


def _expected(consumer: Any) -> dict[Any, int]:
    """The next offset the streams expect, per partition of an acknowledged topic (set by seeks and hand-overs)."""
    expected: dict[Any, int] | None = consumer.__dict__.get("_ews_expected")
    if expected is None:
        expected = consumer.__dict__["_ews_expected"] = {}
    return expected


async def _drain_messages(self: Any, fetcher: Any) -> None:
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
    set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    expected = _expected(self)
    moves = _moves(self)
    seek_idle = _seek_idle(self)
    sought_for_gap: dict[Any, int] = {}  # partition -> the offset last sought back to because of a gap
    yield_every, num_since_yield = 100, 0
    next_check = time.monotonic() + LOST_CHECK_S
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + LOST_CHECK_S
                for tp, offset in _lost_at_commit_points(self):
                    log.warning("offset %d of %s reached no agent; reading the partition again from it", offset, tp)
                    await self.seek(tp, offset)
                for tp, offset, position in _fetched_not_handed_over(self):
                    log.warning("offsets %d-%d of %s were fetched but never handed to the streams; reading them "
                                "again", offset, position - 1, tp)
                    await self.seek(tp, offset)
            set_flag(flag_consumer_fetching)
            ait = cast(Any, getmany(timeout=1.0))
            await self.sleep(0)
            if not self.should_stop:
                reread: set[Any] = set()  # partitions sought back in this batch: their later records come again
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await asyncio.sleep(0)
                        num_since_yield = 0
                    if not seek_idle.is_set():
                        # fetched while the recovery seeks: hand it over against the offsets the seek sets, not
                        # the ones it is about to overwrite (records handed over meanwhile were read again)
                        await seek_idle.wait()
                    offset = message.offset
                    acked_topic = acks_enabled_for(message.topic)
                    if tp in reread:
                        continue
                    if acked_topic:
                        want = expected.get(tp)
                        if want is not None and offset < want:
                            continue  # handed over already, or the stale rest of a batch fetched before a seek
                        if offset in self._acked_index[tp]:
                            expected[tp] = offset + 1  # read again after a seek, and processed already
                            continue
                        if want is not None and offset > want:
                            if sought_for_gap.get(tp) != want:
                                log.warning("offsets %d-%d of %s were skipped on the way to the streams; reading "
                                            "them again", want, offset - 1, tp)
                                sought_for_gap[tp] = want
                                await self.seek(tp, want)
                                reread.add(tp)
                                continue
                            log.error("offsets %d-%d of %s are not in the log (retention or transaction markers); "
                                      "going on from %d", want, offset - 1, tp, offset)
                            self._gap[tp].addi(want, offset)  # acknowledged for the commit (_new_offset)
                    else:
                        r_offset = get_read_offset(tp)
                        if r_offset is not None and offset < r_offset:
                            continue  # faust's "DROPPED MESSAGE ROFF"
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    move = moves.get(tp, 0)
                    hand_over = callback(message)
                    handed = await self.wait_first(hand_over, self.suspend_flow.wait())
                    if handed.stopped or hand_over not in handed.done:
                        break  # the flow was suspended before the streams had it: read again after the seek
                    set_read_offset(tp, offset)
                    if acked_topic:
                        if moves.get(tp, 0) != move and not _fetched_after_move(self, tp):
                            # sought or rewound meanwhile (the recovery's seek, a cleared queue): that position
                            # stands, and the rest of this batch comes again from it
                            reread.add(tp)
                            continue
                        expected[tp] = offset + 1
                        sought_for_gap.pop(tp, None)
                unset_flag(flag_consumer_fetching)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


def _lost_at_commit_points(self: Any) -> list[tuple[Any, int]]:
    """Partitions whose record at the commit point was handed over yet is nowhere now, in two checks in a row."""
    app = self.app
    suspects: dict[Any, int] = self.__dict__.setdefault("_ews_suspects", {})
    if not self.flow_active or app.in_recovery or app.rebalancing:
        suspects.clear()
        return []
    expected = _expected(self)
    candidates: dict[Any, int] = {}
    for tp, want in expected.items():
        committed = self._committed_offset.get(tp)
        if (committed is not None and committed < want and committed not in self._acked_index[tp]
                and not self._gap[tp].overlaps(committed)):
            candidates[tp] = committed
    if candidates:
        for message in list(self._unacked_messages):
            if candidates.get(message.tp) == message.offset:
                del candidates[message.tp]
        for queue in list(app.flow_control._queues):
            for event in list(getattr(queue, "_queue", ())):
                message = getattr(event, "message", None)
                if message is not None and candidates.get(message.tp) == message.offset:
                    del candidates[message.tp]
    lost = [(tp, offset) for tp, offset in candidates.items() if suspects.get(tp) == offset]
    suspects.clear()
    suspects.update(candidates)
    return lost


def _fetch_position(self: Any, tp: Any) -> int | None:
    """The next offset aiokafka fetches of ``tp`` (advanced when a batch is returned, set by a seek), or None."""
    try:
        assignment = self._thread._ensure_consumer()._subscription.subscription.assignment
        state = assignment.state_value(TopicPartition(tp.topic, tp.partition)) if assignment is not None else None
    except Exception:  # no consumer thread yet, or stopped
        return None
    if state is None or not state.has_valid_position:
        return None
    return int(state.position)


def _fetched_after_move(self: Any, tp: Any) -> bool:
    """A seek or rewind was recorded while a hand-over of ``tp`` was pending: was the batch being handed over
    fetched after aiokafka moved? Then aiokafka's position is past the recorded one (after a move it is the moved-to
    offset until the next batch is returned), the batch is the new position's records, and nothing brings it again.
    Measured: the recovery's seek to the committed 64 of ``alerts.retry.0`` reached aiokafka, the loop fetched and
    handed over 64-99 while the recovery still awaited the log starts, then the recorded move made the loop drop
    100-132 as "coming again" with aiokafka's position already at 133: a stall until the next restart."""
    position = _fetch_position(self, tp)
    want = _expected(self).get(tp)
    return position is not None and want is not None and position > want


def _fetched_not_handed_over(self: Any) -> list[tuple[Any, int, int]]:
    """Partitions whose records aiokafka returned but the streams never got, in two checks in a row: the next
    offset the streams expect stayed below aiokafka's position (between batches the two are equal unless records
    were dropped on the way: a batch abandoned for a seek that never came, faust's getmany breaking off). Each is
    (partition, offset to read again from, aiokafka's position); the offset is never below the committed one. A
    partition nothing was handed over from since the recovery's seek is expected at its commit point."""
    app = self.app
    suspects: dict[Any, tuple[int, int]] = self.__dict__.setdefault("_ews_behind", {})
    if not self.flow_active or app.in_recovery or app.rebalancing:
        suspects.clear()
        return []
    wants = dict(_expected(self))
    acks_enabled_for = app.topics.acks_enabled_for
    for tp, committed in list(self._committed_offset.items()):
        # nothing handed over since the recovery's seek (a never committed partition, whose position aiokafka
        # does not move): the streams expect the commit point (measured: a batch of alerts.outbox cut off by a
        # suspended flow right after a SIGKILL restart stalled every delivery, 30 records of lag, no attempt)
        if tp not in wants and committed is not None and acks_enabled_for(tp.topic):
            wants[tp] = committed
    candidates: dict[Any, tuple[int, int]] = {}
    for tp, want in wants.items():
        position = _fetch_position(self, tp)
        if position is not None and position > want:
            candidates[tp] = (want, position)
    behind = []
    for tp, (want, position) in candidates.items():
        if suspects.get(tp) == (want, position):
            committed = self._committed_offset.get(tp)
            behind.append((tp, max(want, committed) if committed is not None else want, position))
    suspects.clear()
    suspects.update(candidates)
    return behind


_faust_seek = faust_consumer.Consumer.seek


async def _seek(self: Any, partition: Any, offset: int) -> None:
    await _faust_seek(self, partition, offset)
    tp = faust_consumer.ensure_TP(partition)
    _expected(self)[tp] = offset
    _moved(self, tp)


async def _perform_seek(self: Any) -> None:
    """Seek all partitions to their committed offsets (faust's ``perform_seek``), and expect those next. A partition
    without a committed offset keeps the start of its log as its commit point (see 5 above). The loop hands
    nothing over meanwhile (see 7)."""
    seeking: int = self.__dict__.get("_ews_seeking", 0)
    self.__dict__["_ews_seeking"] = seeking + 1
    _seek_idle(self).clear()
    try:
        await _seek_to_committed(self)
    finally:
        self.__dict__["_ews_seeking"] -= 1
        if not self.__dict__["_ews_seeking"]:
            _seek_idle(self).set()


async def _seek_to_committed(self: Any) -> None:
    committed_now = {faust_consumer.ensure_TP(tp): offset for tp, offset in (await self.seek_to_committed()).items()}
    log_start = await _log_starts(self, [tp for tp, offset in committed_now.items() if offset is None or offset < 0])
    expected = _expected(self)
    for tp, offset in committed_now.items():
        if offset is not None and offset >= 0:
            expected[tp] = offset
            self._committed_offset[tp] = offset
            if offset > 0:  # aiokafka seeks only then; otherwise the fetch position stays where it is
                _moved(self, tp)
        else:
            expected.pop(tp, None)
            self._committed_offset[tp] = log_start.get(tp)
    self._read_offset.update({tp: offset if offset is not None and offset >= 0 else None
                              for tp, offset in committed_now.items()})


async def _log_starts(self: Any, tps: list[Any]) -> dict[Any, int]:
    """The first offset in the log of each acknowledged partition of ``tps`` ({} when the broker cannot say)."""
    acks_enabled_for = self.app.topics.acks_enabled_for
    tps = [tp for tp in tps if acks_enabled_for(tp.topic)]
    if not tps:
        return {}
    try:
        earliest = await self.earliest_offsets(*tps)
    except Exception:
        log.warning("cannot read where %d never committed partitions start; their first commit takes the first "
                    "run of acknowledged offsets", len(tps), exc_info=True)
        return {}
    return {faust_consumer.ensure_TP(tp): int(offset) for tp, offset in earliest.items()
            if offset is not None and offset >= 0}


def _new_offset(self: Any, tp: Any) -> int | None:
    """The offset to commit for ``tp``: past the first run of consecutive acknowledged offsets, but never past a
    gap at the head (after the committed offset) or a record still being processed."""
    acked = self._acked[tp]
    if not acked:
        return None
    gap = self._gap[tp]
    if gap:  # offsets not in the log count as acknowledged, as in faust's own commit
        missing = sorted(o for iv in gap.overlap(0, max(acked)) for o in range(iv.begin, iv.end))
        if missing:
            acked.extend(missing)
            gap.chop(0, max(missing[-1], max(acked)) + 1)
    acked.sort()
    committed = self._committed_offset[tp]
    if committed is not None and acked[0] > committed:
        return None  # the next record to commit is not acknowledged yet
    batch = next(faust_functional.consecutive_numbers(acked))
    generation = self.app.consumer_generation_id  # older generations' records are read again after the seek
    in_flight = [m.offset for m in list(self._unacked_messages)
                 if m.tp == tp and not m.acked and m.generation_id == generation]
    if in_flight:
        lowest = min(in_flight)
        batch = [o for o in batch if o < lowest]
        if not batch:
            return None
    acked[: len(batch)] = []
    self._acked_index[tp].difference_update(batch)
    return int(batch[-1]) + 1


_clear_queues = mode_queues.FlowControlEvent.clear


def _clear_and_rewind(self: Any) -> None:
    """Empty the agents' queues (faust's ``FlowControlEvent.clear``), then seek every partition whose records were
    in them back to the first one, so that they are fetched and handed over again."""
    first: dict[Any, tuple[int, Any]] = {}
    for queue in list(self._queues):
        for item in list(getattr(queue, "_queue", ())):
            message = getattr(item, "message", None)
            if message is None or message.acked:
                continue
            tp, offset = message.tp, message.offset
            if tp not in first or offset < first[tp][0]:
                first[tp] = (offset, item.app.consumer)
    _clear_queues(self)
    for tp, (offset, consumer) in first.items():
        try:
            if tp not in consumer.assignment():
                continue  # revoked: its next owner starts from the committed offset
            consumer._thread.seek(tp, offset)
            consumer._read_offset[tp] = offset
            _expected(consumer)[tp] = offset
            _moved(consumer, tp)
        except Exception:  # a stopped consumer: the records stay uncommitted for the next start
            log.warning("cannot rewind %s to %d after clearing the agents' queues", tp, offset, exc_info=True)
            continue
        log.info("rewound %s to offset %d: its records were cleared from the agents' queues", tp, offset)


_faust_verify_partitions = faust_tables.Collection._verify_source_topic_partitions


def _verify_source_topic_partitions(self: Any, source_topic: str) -> None:
    """faust's check, once the changelog topic's partitions are known (a count of 0 is metadata not caught up)."""
    if source_topic not in self._verified_source_topics_for_partitions \
            and not self.app.consumer.topic_partitions(self.changelog_topic_name):
        return
    _faust_verify_partitions(self, source_topic)


def install() -> None:
    """Replace faust's consumer loop with the corrected one (idempotent)."""
    global _installed
    if _installed:
        return
    faust_consumer.Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    faust_consumer.Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    faust_consumer.Consumer.seek = _seek  # type: ignore[method-assign]
    faust_consumer.Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    mode_queues.FlowControlEvent.clear = _clear_and_rewind  # type: ignore[method-assign]
    faust_tables.Collection._verify_source_topic_partitions = (  # type: ignore[method-assign]
        _verify_source_topic_partitions)
    _installed = True
