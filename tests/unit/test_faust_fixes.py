"""warning/faust_fixes.py without a broker: its functions run on a small fake consumer carrying only the attributes
they read (laid out as faust's ``Consumer.__init__`` lays them out), with faust's real ``TP`` and ``Message`` and
mode's real ``FlowControlEvent`` / ``FlowControlQueue``."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types.tuples import TP, Message
from intervaltree import IntervalTree
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from warning import faust_fixes

TOPIC = "alerts.retry.0"
TP0 = TP(TOPIC, 0)
TP1 = TP(TOPIC, 1)
GENERATION = 7


def msg(offset: int, tp: TP = TP0, generation_id: int = GENERATION, acked: bool = False) -> Message:
    m = Message(tp.topic, tp.partition, offset, 0.0, 0, None, b"k", b"v", None, tp=tp, generation_id=generation_id)
    m.acked = acked
    return m


class FakeConsumer:
    """The state faust's Consumer keeps per partition, plus the app attributes the fixes consult."""

    def __init__(self) -> None:
        self._acked: defaultdict[TP, list[int]] = defaultdict(list)
        self._acked_index: defaultdict[TP, set[int]] = defaultdict(set)
        self._gap: defaultdict[TP, IntervalTree] = defaultdict(IntervalTree)
        self._committed_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)
        self._read_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)
        self._unacked_messages: set[Message] = set()
        self.flow_active = True
        self.queues: list[Any] = []  # agents' queues: objects with a ``_queue`` deque of events
        self.app = SimpleNamespace(
            in_recovery=False,
            rebalancing=False,
            consumer_generation_id=GENERATION,
            flow_control=SimpleNamespace(_queues=self.queues),
            topics=SimpleNamespace(acks_enabled_for=lambda topic: True),
        )

    def ack(self, tp: TP, *offsets: int) -> None:
        self._acked[tp].extend(offsets)
        self._acked_index[tp].update(offsets)

    def queue_event(self, message: Message) -> None:
        self.queues.append(SimpleNamespace(_queue=deque([SimpleNamespace(message=message)])))


# --- 4. a record lost at the commit point -----------------------------------------------------------------------


def lost_setup() -> FakeConsumer:
    """Committed at 10, the streams expect 15: offset 10 was handed over and, unless found somewhere, is lost."""
    c = FakeConsumer()
    c._committed_offset[TP0] = 10
    faust_fixes._expected(c)[TP0] = 15
    return c


def test_lost_record_reported_only_on_second_consecutive_check() -> None:
    c = lost_setup()
    # One look is not enough: the record may be between two places (e.g. being handed over).
    assert faust_fixes._lost_at_commit_points(c) == []
    # Still nowhere, same offset: now it is lost and reported with that offset.
    assert faust_fixes._lost_at_commit_points(c) == [(TP0, 10)]


def test_lost_record_needs_same_offset_in_both_checks() -> None:
    c = lost_setup()
    assert faust_fixes._lost_at_commit_points(c) == []
    c._committed_offset[TP0] = 11  # the commit moved on between the looks: a different suspect, start over
    assert faust_fixes._lost_at_commit_points(c) == []
    assert faust_fixes._lost_at_commit_points(c) == [(TP0, 11)]


def test_not_lost_when_expected_offset_not_past_commit_point() -> None:
    c = lost_setup()
    faust_fixes._expected(c)[TP0] = 10  # not handed over yet: it is still to be fetched
    assert faust_fixes._lost_at_commit_points(c) == []
    assert faust_fixes._lost_at_commit_points(c) == []


@pytest.mark.parametrize(
    "where",
    ["in_flight", "in_flight_other_offset", "queued", "queued_other_tp", "acked", "gap"],
)
def test_lost_record_found_somewhere(where: str) -> None:
    c = lost_setup()
    if where == "in_flight":
        c._unacked_messages.add(msg(10))  # an agent is processing it
    elif where == "in_flight_other_offset":
        c._unacked_messages.add(msg(11))  # a later record in flight does not account for offset 10
    elif where == "queued":
        c.queue_event(msg(10))  # waiting in an agent's queue
    elif where == "queued_other_tp":
        c.queue_event(msg(10, tp=TP1))  # same offset, other partition: does not account for TP0's record
    elif where == "acked":
        c.ack(TP0, 10)
    elif where == "gap":
        c._gap[TP0].addi(8, 12)  # not in the log: counts as acknowledged
    first = faust_fixes._lost_at_commit_points(c)
    second = faust_fixes._lost_at_commit_points(c)
    assert first == []
    if where in ("in_flight_other_offset", "queued_other_tp"):
        assert second == [(TP0, 10)]  # the look-alikes must not hide the lost record
    else:
        assert second == []


@pytest.mark.parametrize("state", ["flow_suspended", "in_recovery", "rebalancing"])
def test_lost_check_paused_while_flow_not_running(state: str) -> None:
    c = lost_setup()
    assert faust_fixes._lost_at_commit_points(c) == []  # first look: a suspect
    if state == "flow_suspended":
        c.flow_active = False
    else:
        setattr(c.app, state, True)
    assert faust_fixes._lost_at_commit_points(c) == []  # nothing reported while paused
    c.flow_active, c.app.in_recovery, c.app.rebalancing = True, False, False
    # The pause forgot the suspect: it takes two fresh looks after the flow runs again.
    assert faust_fixes._lost_at_commit_points(c) == []
    assert faust_fixes._lost_at_commit_points(c) == [(TP0, 10)]


# --- 2. the commit ----------------------------------------------------------------------------------------------


def test_new_offset_commits_past_consecutive_run() -> None:
    c = FakeConsumer()
    c._committed_offset[TP0] = 5
    c.ack(TP0, 7, 5, 6, 9)  # 8 not acked: the run is 5-7
    assert faust_fixes._new_offset(c, TP0) == 8
    # The committed run leaves the bookkeeping; 9 stays for a later commit.
    assert c._acked[TP0] == [9]
    assert c._acked_index[TP0] == {9}


def test_new_offset_none_when_head_not_acked() -> None:
    c = FakeConsumer()
    c._committed_offset[TP0] = 5
    c.ack(TP0, 6, 7)  # 5 (the commit point) is not acknowledged: nothing may be committed
    assert faust_fixes._new_offset(c, TP0) is None
    assert c._acked[TP0] == [6, 7]  # and nothing was consumed from the bookkeeping


def test_new_offset_none_when_nothing_acked() -> None:
    c = FakeConsumer()
    c._committed_offset[TP0] = 5
    assert faust_fixes._new_offset(c, TP0) is None


def test_new_offset_stops_below_lowest_in_flight() -> None:
    c = FakeConsumer()
    c._committed_offset[TP0] = 5
    c.ack(TP0, 5, 6, 7, 8)
    c._unacked_messages |= {msg(7), msg(9)}  # 7 is acked in _acked but still processing
    assert faust_fixes._new_offset(c, TP0) == 7  # commit 5, 6; never past 7
    assert c._acked[TP0] == [7, 8]


def test_new_offset_none_when_head_in_flight() -> None:
    c = FakeConsumer()
    c._committed_offset[TP0] = 5
    c.ack(TP0, 5, 6)
    c._unacked_messages.add(msg(5))
    assert faust_fixes._new_offset(c, TP0) is None


def test_new_offset_ignores_in_flight_of_other_generation_tp_or_acked() -> None:
    c = FakeConsumer()
    c._committed_offset[TP0] = 5
    c.ack(TP0, 5, 6, 7)
    c._unacked_messages |= {
        msg(5, generation_id=GENERATION - 1),  # an older generation's record is read again after the seek
        msg(5, tp=TP1),  # another partition
        msg(6, acked=True),  # already acknowledged
    }
    assert faust_fixes._new_offset(c, TP0) == 8


def test_new_offset_gap_at_head_is_passed() -> None:
    c = FakeConsumer()
    c._committed_offset[TP0] = 5
    c._gap[TP0].addi(5, 8)  # 5-7 are not in the log
    c.ack(TP0, 8, 9)
    assert faust_fixes._new_offset(c, TP0) == 10  # the gap counts as acknowledged
    assert not c._gap[TP0].overlaps(5, 8)  # and is consumed


def test_new_offset_gap_in_middle_joins_runs() -> None:
    c = FakeConsumer()
    c._committed_offset[TP0] = 5
    c._gap[TP0].addi(7, 9)  # 7, 8 missing from the log
    c.ack(TP0, 5, 6, 9, 11)
    assert faust_fixes._new_offset(c, TP0) == 10  # 5-9 committed, 10 not acked


# --- 3. a cleared queue rewinds ---------------------------------------------------------------------------------


class RewindConsumer:
    def __init__(self, assigned: set[TP], fail: bool = False) -> None:
        self.assigned = assigned
        self.seeks: list[tuple[TP, int]] = []
        self._read_offset: dict[TP, int | None] = {}
        self.fail = fail
        self._thread = SimpleNamespace(seek=self._thread_seek)

    def assignment(self) -> set[TP]:
        return self.assigned

    def _thread_seek(self, tp: TP, offset: int) -> None:
        if self.fail:
            raise RuntimeError("consumer stopped")
        self.seeks.append((tp, offset))


def queued(consumer: RewindConsumer, message: Message) -> Any:
    return SimpleNamespace(message=message, app=SimpleNamespace(consumer=consumer))


def test_clear_rewinds_each_partition_to_lowest_cleared_offset() -> None:
    consumer = RewindConsumer({TP0, TP1})
    flow = FlowControlEvent(initially_suspended=False)
    q1 = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    q2 = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    for offset in (12, 14):
        q1.put_nowait(queued(consumer, msg(offset)))
    for offset in (11, 13):  # TP0's lowest is in the other queue, and never the last one seen
        q2.put_nowait(queued(consumer, msg(offset)))
    q2.put_nowait(queued(consumer, msg(3, tp=TP1)))
    q2.put_nowait(queued(consumer, msg(1, tp=TP1, acked=True)))  # acknowledged: no reason to read it again
    faust_fixes._clear_and_rewind(flow)
    assert q1.empty() and q2.empty()  # faust's clear still happens
    # One seek per partition, to the first record thrown away.
    assert sorted(consumer.seeks) == [(TP0, 11), (TP1, 3)]
    assert consumer._read_offset == {TP0: 11, TP1: 3}
    assert faust_fixes._expected(consumer) == {TP0: 11, TP1: 3}


def test_clear_does_not_seek_revoked_partition() -> None:
    consumer = RewindConsumer({TP1})  # TP0 was revoked
    flow = FlowControlEvent(initially_suspended=False)
    q = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    q.put_nowait(queued(consumer, msg(12)))
    q.put_nowait(queued(consumer, msg(4, tp=TP1)))
    faust_fixes._clear_and_rewind(flow)
    assert q.empty()
    assert consumer.seeks == [(TP1, 4)]
    assert TP0 not in consumer._read_offset
    assert TP0 not in faust_fixes._expected(consumer)


def test_clear_survives_stopped_consumer(caplog: pytest.LogCaptureFixture) -> None:
    consumer = RewindConsumer({TP0}, fail=True)
    flow = FlowControlEvent(initially_suspended=False)
    q = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    q.put_nowait(queued(consumer, msg(12)))
    with caplog.at_level(logging.WARNING, logger=faust_fixes.__name__):
        faust_fixes._clear_and_rewind(flow)  # must not raise out of flow_control.resume()
    assert q.empty()
    assert TP0 not in faust_fixes._expected(consumer)  # a failed seek must not move the expected offset
    assert "cannot rewind" in caplog.text


# --- 1. the loop handing records to the streams ----------------------------------------------------------------


class DrainConsumer(FakeConsumer):
    """Enough of faust's Consumer for one pass of ``_drain_messages`` over one scripted batch."""

    def __init__(self, batch: list[Message]) -> None:
        super().__init__()
        self.batch = batch
        self.handed: list[int] = []
        self.seeks: list[tuple[TP, int]] = []
        self._stopped = SimpleNamespace(is_set=lambda: self.stopped)
        self.stopped = False
        self.should_stop = False
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self._commit_every = None
        self._n_acked = 0
        self.suspend_flow = SimpleNamespace(wait=lambda: object())
        self.consumer_stopped_errors = ()
        self.transport = SimpleNamespace(app=SimpleNamespace(should_stop=False))

    def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        async def gen() -> AsyncIterator[tuple[TP, Message]]:
            self.stopped = True  # one batch, then the loop ends (also when the batch is abandoned)
            for m in self.batch:
                yield m.tp, m

        return gen()

    async def sleep(self, seconds: float) -> None:
        return None

    async def seek(self, tp: TP, offset: int) -> None:  # as faust_fixes._seek: the streams expect it next
        self.seeks.append((tp, offset))
        faust_fixes._expected(self)[tp] = offset

    def callback(self, message: Message) -> Any:
        self.handed.append(message.offset)
        return ("hand-over", message.offset)

    async def wait_first(self, *coros: Any) -> Any:
        return SimpleNamespace(stopped=False, done={coros[0]})


async def drain(c: DrainConsumer) -> None:
    fetcher = SimpleNamespace(_stopped=SimpleNamespace(is_set=lambda: False))
    await asyncio.wait_for(faust_fixes._drain_messages(c, fetcher), 2)  # a loop that never ends fails fast


async def test_drain_seeks_back_when_records_skipped_on_the_way() -> None:
    c = DrainConsumer([msg(13), msg(14)])
    faust_fixes._expected(c)[TP0] = 10  # sought to 10: 10-12 never arrived
    await drain(c)
    assert c.seeks == [(TP0, 10)]  # read again from the first missing one
    assert c.handed == []  # neither 13 nor the rest of the batch is handed over before 10-12
    assert not c._gap[TP0]  # not recorded as a gap (which the commit would treat as acknowledged)


async def test_drain_gap_recorded_when_still_there_after_seek() -> None:
    # Within one loop: the batch after the seek starts at 13 again, so 10-12 are really not in the log.
    c = DrainConsumer([])
    faust_fixes._expected(c)[TP0] = 10
    batches = [[msg(13), msg(14)], [msg(13), msg(14)]]

    def getmany(timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        batch = batches.pop(0)

        async def gen() -> AsyncIterator[tuple[TP, Message]]:
            for m in batch:
                yield m.tp, m
            c.stopped = not batches

        return gen()

    c.getmany = getmany  # type: ignore[method-assign]
    await drain(c)
    assert c.seeks == [(TP0, 10)]  # sought once only
    assert c._gap[TP0].overlaps(10, 13)  # then 10-12 became a gap, as faust records one
    assert c.handed == [13, 14]
    assert faust_fixes._expected(c)[TP0] == 15


async def test_drain_skips_records_below_expected() -> None:
    c = DrainConsumer([msg(8), msg(9), msg(10), msg(11)])
    faust_fixes._expected(c)[TP0] = 10  # 8, 9 were handed over already (stale rest of an older batch)
    await drain(c)
    assert c.handed == [10, 11]
    assert c.seeks == []
    assert faust_fixes._expected(c)[TP0] == 12
    assert c._read_offset[TP0] == 11  # faust's read offset: the last record handed over


async def test_drain_skips_acked_record_and_advances_expected() -> None:
    c = DrainConsumer([msg(10), msg(11), msg(12)])
    faust_fixes._expected(c)[TP0] = 10
    c.ack(TP0, 10, 11)  # processed before the seek back: not processed twice
    await drain(c)
    assert c.handed == [12]
    assert c.seeks == []  # skipping 10, 11 moved the expected offset, so 12 is not a jump
    assert faust_fixes._expected(c)[TP0] == 13


async def test_drain_suspended_hand_over_does_not_mark_read() -> None:
    c = DrainConsumer([msg(10), msg(11)])
    faust_fixes._expected(c)[TP0] = 10

    async def suspended(*coros: Any) -> Any:
        return SimpleNamespace(stopped=False, done={coros[1]})  # the flow was suspended first

    c.wait_first = suspended  # type: ignore[method-assign]
    await drain(c)
    assert c.handed == [10]  # the batch is abandoned at the first cancelled hand-over
    assert faust_fixes._expected(c)[TP0] == 10  # still expected: it is read again after the seek
    assert c._read_offset[TP0] is None


def test_a_changelog_topic_listed_with_0_partitions_is_not_yet_known_not_a_mismatch() -> None:
    """Fresh Kafka: the metadata listed the just-created changelog with 0 partitions and faust's check raised
    PartitionsMismatch in the grade agent. Now 0 waits for the metadata; a real mismatch still raises."""
    from faust.exceptions import PartitionsMismatch

    partitions = {"signals": 4, "ews-receivers-changelog": 0}
    table = SimpleNamespace(
        app=SimpleNamespace(consumer=SimpleNamespace(topic_partitions=partitions.get)), name="receivers",
        changelog_topic_name="ews-receivers-changelog", _verified_source_topics_for_partitions=set())
    faust_fixes._verify_source_topic_partitions(table, "signals")
    assert table._verified_source_topics_for_partitions == set()  # checked again on a later write
    partitions["ews-receivers-changelog"] = 4
    faust_fixes._verify_source_topic_partitions(table, "signals")
    assert table._verified_source_topics_for_partitions == {"signals"}
    table._verified_source_topics_for_partitions.clear()
    partitions["ews-receivers-changelog"] = 2
    with pytest.raises(PartitionsMismatch):
        faust_fixes._verify_source_topic_partitions(table, "signals")


async def test_drain_keeps_a_rewind_made_while_a_hand_over_was_pending() -> None:
    # The recovery clears the agents' queues (and rewinds) from its own task, while the loop waits for the hand-over
    # of 384: measured on a restarted worker, the loop then wrote 385 over the rewind to 323 and skipped 323-384
    # when they came again, as "handed over already".
    c = DrainConsumer([msg(384), msg(385)])
    faust_fixes._expected(c)[TP0] = 384
    rewinds: list[tuple[TP, int]] = []
    c.assignment = lambda: {TP0}  # type: ignore[attr-defined]
    c._thread = SimpleNamespace(seek=lambda tp, offset: rewinds.append((tp, offset)))  # type: ignore[attr-defined]
    flow = FlowControlEvent(initially_suspended=False)
    q = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    for offset in range(323, 384):  # handed over earlier, not yet taken by an agent
        q.put_nowait(SimpleNamespace(message=msg(offset), app=SimpleNamespace(consumer=c)))

    async def hand_over_during_clear(*coros: Any) -> Any:
        faust_fixes._clear_and_rewind(flow)  # the recovery's flow_control.resume() empties the queues
        return SimpleNamespace(stopped=False, done={coros[0]})

    c.wait_first = hand_over_during_clear  # type: ignore[method-assign]
    await drain(c)
    assert rewinds == [(TP0, 323)]
    assert faust_fixes._expected(c)[TP0] == 323  # not 385: 323-384 are handed over again when they come
    assert c.handed == [384]  # the rest of the batch comes again after the rewind
    assert c.seeks == []


class SeekConsumer(FakeConsumer):
    """A consumer whose group committed ``committed`` (None: never) and whose logs start at ``starts``."""

    def __init__(self, committed: dict[TP, int | None], starts: dict[TP, int] | Exception) -> None:
        super().__init__()
        self.committed, self.starts = committed, starts

    async def seek_to_committed(self) -> dict[TP, int | None]:
        return dict(self.committed)

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        if isinstance(self.starts, Exception):
            raise self.starts
        return {tp: self.starts[tp] for tp in tps}


async def test_perform_seek_never_committed_partition_commits_from_log_start() -> None:
    # A worker SIGKILLed before its first commit leaves its partitions without committed offsets. The restarted
    # worker lost 0-2 on the way (e.g. a rewind overwritten, above) and acknowledged 3-5: the first commit must
    # not jump over 0-2, and the lost-record check must look at 0.
    c = SeekConsumer({TP0: None, TP1: 5}, {TP0: 0, TP1: 0})
    await faust_fixes._perform_seek(c)
    assert c._committed_offset[TP0] == 0 and c._committed_offset[TP1] == 5
    assert faust_fixes._expected(c) == {TP1: 5}  # where a never committed partition is read from is left alone
    c.ack(TP0, 3, 4, 5)
    faust_fixes._expected(c)[TP0] = 6
    assert faust_fixes._new_offset(c, TP0) is None  # 0 is not acknowledged
    assert faust_fixes._lost_at_commit_points(c) == []
    assert faust_fixes._lost_at_commit_points(c) == [(TP0, 0)]  # nowhere twice: read again from 0


async def test_perform_seek_without_log_start_keeps_faust_behaviour(caplog: pytest.LogCaptureFixture) -> None:
    c = SeekConsumer({TP0: None}, RuntimeError("broker away"))
    with caplog.at_level(logging.WARNING, logger=faust_fixes.__name__):
        await faust_fixes._perform_seek(c)
    assert c._committed_offset[TP0] is None
    assert "never committed" in caplog.text


async def test_perform_seek_of_never_committed_partition_does_not_cut_a_pending_hand_over() -> None:
    # aiokafka does not seek a partition without a committed offset: the fetch position stays, so the loop must go
    # on with its batch (dropping it would lose it: nothing reads it again).
    c = DrainConsumer([msg(7), msg(8)])
    c.committed, c.starts = {TP0: None}, {TP0: 0}  # type: ignore[attr-defined]
    c.seek_to_committed = SeekConsumer.seek_to_committed.__get__(c)  # type: ignore[attr-defined]
    c.earliest_offsets = SeekConsumer.earliest_offsets.__get__(c)  # type: ignore[attr-defined]

    async def seek_during_hand_over(*coros: Any) -> Any:
        if c.handed == [7]:
            await faust_fixes._perform_seek(c)
        return SimpleNamespace(stopped=False, done={coros[0]})

    c.wait_first = seek_during_hand_over  # type: ignore[method-assign]
    await drain(c)
    assert c.handed == [7, 8]
    assert faust_fixes._expected(c)[TP0] == 9


# --- 7. a batch fetched after a move, and records fetched but never handed over ----------------------------------


def fetch_positions(c: Any, positions: dict[TP, int]) -> None:
    """aiokafka's fetch positions as faust_fixes reads them (the consumer thread's subscription state)."""
    def state_value(tp: Any) -> Any:
        position = positions.get(TP(tp.topic, tp.partition))
        return None if position is None else SimpleNamespace(has_valid_position=True, position=position)

    assignment = SimpleNamespace(state_value=state_value)
    consumer = SimpleNamespace(_subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment)))
    seek = getattr(getattr(c, "_thread", None), "seek", None)
    c._thread = SimpleNamespace(_ensure_consumer=lambda: consumer, seek=seek)


async def test_drain_goes_on_with_a_batch_fetched_after_the_move() -> None:
    # Measured on a restarted worker: the recovery's seek to the committed 64 reached aiokafka, the loop fetched
    # 64-132 and handed over 64-99 while the recovery awaited the log starts; the move recorded then made the loop
    # drop 100-132 as "coming again", but aiokafka's position was 133 already: nothing brought them again.
    c = DrainConsumer([msg(offset) for offset in range(64, 70)])
    faust_fixes._expected(c)[TP0] = 64
    fetch_positions(c, {TP0: 70})  # the batch's end: it was fetched after aiokafka moved to 64

    async def recorded_move_during_hand_over(*coros: Any) -> Any:
        if c.handed == [64, 65, 66]:
            faust_fixes._expected(c)[TP0] = 64  # as _perform_seek records it, late
            faust_fixes._moved(c, TP0)
        return SimpleNamespace(stopped=False, done={coros[0]})

    c.wait_first = recorded_move_during_hand_over  # type: ignore[method-assign]
    await drain(c)
    assert c.handed == [64, 65, 66, 67, 68, 69]  # the rest of the batch is not dropped
    assert faust_fixes._expected(c)[TP0] == 70
    assert c.seeks == []


async def test_drain_drops_the_rest_of_a_batch_fetched_before_the_move() -> None:
    c = DrainConsumer([msg(offset) for offset in range(64, 70)])
    faust_fixes._expected(c)[TP0] = 64
    positions = {TP0: 70}
    fetch_positions(c, positions)

    async def seek_during_hand_over(*coros: Any) -> Any:
        if c.handed == [64, 65, 66]:
            positions[TP0] = 50  # aiokafka moved after this batch: it fetches 50 next
            faust_fixes._expected(c)[TP0] = 50
            faust_fixes._moved(c, TP0)
        return SimpleNamespace(stopped=False, done={coros[0]})

    c.wait_first = seek_during_hand_over  # type: ignore[method-assign]
    await drain(c)
    assert c.handed == [64, 65, 66]  # 67-69 come again after 50-63
    assert faust_fixes._expected(c)[TP0] == 50


def test_fetched_not_handed_over_needs_two_checks_and_reads_again_from_the_commit_point() -> None:
    c = FakeConsumer()
    faust_fixes._expected(c)[TP0] = 64
    faust_fixes._expected(c)[TP1] = 10
    c._committed_offset[TP0] = 100  # 64-99 were processed and committed: read again from 100, not 64
    positions = {TP0: 133, TP1: 10}  # TP1: everything fetched was handed over
    fetch_positions(c, positions)
    assert faust_fixes._fetched_not_handed_over(c) == []  # one look: maybe a batch between two places
    assert faust_fixes._fetched_not_handed_over(c) == [(TP0, 100, 133)]


def test_fetched_not_handed_over_not_while_moving_or_flow_stopped() -> None:
    c = FakeConsumer()
    faust_fixes._expected(c)[TP0] = 64
    positions = {TP0: 133}
    fetch_positions(c, positions)
    assert faust_fixes._fetched_not_handed_over(c) == []
    positions[TP0] = 140  # still fetching: a different look, start over
    assert faust_fixes._fetched_not_handed_over(c) == []
    c.app.in_recovery = True
    assert faust_fixes._fetched_not_handed_over(c) == []
    c.app.in_recovery = False
    assert faust_fixes._fetched_not_handed_over(c) == []  # the recovery forgot the suspect
    assert faust_fixes._fetched_not_handed_over(c) == [(TP0, 64, 140)]
    faust_fixes._expected(c)[TP0] = 140  # handed over meanwhile
    assert faust_fixes._fetched_not_handed_over(c) == []


async def test_drain_hands_nothing_over_while_the_recovery_seeks() -> None:
    # Measured: the recovery's seek reached aiokafka (committed 66), the loop fetched and handed over 66-148 while
    # the recovery awaited the log starts of the never committed partitions, then the recovery recorded 66 as
    # expected: the next batch (149) looked like a jump, and 66-148 were read again, the ones in flight twice.
    c = DrainConsumer([msg(offset) for offset in range(66, 71)])
    c.committed, c.starts = {TP0: 66, TP1: None}, {TP1: 0}  # type: ignore[attr-defined]
    c.seek_to_committed = SeekConsumer.seek_to_committed.__get__(c)  # type: ignore[attr-defined]
    log_starts_asked = asyncio.Event()

    async def slow_earliest_offsets(*tps: TP) -> dict[TP, int]:
        log_starts_asked.set()
        await asyncio.sleep(0.05)
        return {tp: 0 for tp in tps}

    c.earliest_offsets = slow_earliest_offsets  # type: ignore[attr-defined]
    seek = asyncio.ensure_future(faust_fixes._perform_seek(c))
    await log_starts_asked.wait()  # aiokafka has moved to 66; the recovery has not recorded it yet
    await drain(c)  # the batch fetched from 66
    await seek
    assert c.handed == [66, 67, 68, 69, 70]
    assert faust_fixes._expected(c)[TP0] == 71  # the next batch, 71 on, is no jump
    assert c.seeks == []


def test_fetched_not_handed_over_also_where_nothing_was_handed_over_since_the_seek() -> None:
    # After a SIGKILL restart: alerts.outbox never committed (commit point: the log start, 0), nothing handed over
    # (no expected offset), but aiokafka returned 0-29 (a batch cut off by a suspended flow): 30 records of lag and
    # not one delivery attempt, since aiokafka does not move a never committed partition at the recovery's seek.
    c = FakeConsumer()
    c._committed_offset[TP0] = 0
    c._committed_offset[TP1] = 5
    fetch_positions(c, {TP0: 30, TP1: 5})  # TP1: nothing fetched past its commit point
    assert faust_fixes._fetched_not_handed_over(c) == []
    assert faust_fixes._fetched_not_handed_over(c) == [(TP0, 0, 30)]
    c.app.topics.acks_enabled_for = lambda topic: False  # a topic without acks (a changelog) is never checked
    assert faust_fixes._fetched_not_handed_over(c) == []
