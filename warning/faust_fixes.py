"""A correction to faust-streaming 0.15.3's consumer loop (``Consumer._drain_messages``) that lost records.

Measured (tests/integration/test_delivery.py, the SIGTERM-mid-burst test; ``make chaos`` broker scenario): after
a restart, a block of ``alerts.retry.0`` records never reached the agent while later ones did, and faust committed
past them. Two steps of the loop do it:

* it hands each fetched record to the streams with ``wait_first(callback(message), suspend_flow.wait())`` and marks
  the record read whatever won: when a rebalance or recovery suspends the flow, the hand-over is cancelled, yet the
  rest of the fetched batch is marked read too, so the records fetched again after the seek to the committed
  offsets are dropped as already read ("DROPPED MESSAGE ROFF");
* a jump in offsets is recorded as a gap (``_add_gap``) that the commit treats as acknowledged, which is right
  for compacted topics and transaction markers but, for the service's stream topics (never compacted, no
  transactions), commits over records that were dropped on the way (faust-streaming issues #216, #223, #312).

Here a record is marked read only once the streams have it; a suspended flow ends the batch (the recovery seeks
back to the committed offsets); and a jump in an acknowledged topic seeks back to the first missing offset
instead of recording a gap. Everything else is faust's loop as it is.

The commit (``Consumer._new_offset``) has a third: the first commit of a partition in a process (no committed
offset known yet, or 0) takes the first run of consecutive acknowledged offsets even when a lower offset is still
being processed, so with concurrent actors (``deliver`` runs 8) a stop while the lowest record is in flight
committed past it (make chaos "stopstart": 25 of 200 webhooks lost). The corrected commit stops below the lowest
record still in flight and below a gap at the head.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from faust.transport import consumer as faust_consumer
from faust.utils import functional as faust_functional

log = logging.getLogger(__name__)

_installed = False


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
    yield_every, num_since_yield = 100, 0
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
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
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if tp in reread or (r_offset is not None and offset < r_offset):
                        continue  # read already (faust: "DROPPED MESSAGE ROFF"), or fetched again after the seek
                    if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                        log.warning("offsets %d-%d of %s were skipped on the way to the streams; reading them "
                                    "again", r_offset + 1, offset - 1, tp)
                        await self.seek(tp, r_offset + 1)
                        reread.add(tp)
                        continue
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    hand_over = callback(message)
                    handed = await self.wait_first(hand_over, self.suspend_flow.wait())
                    if handed.stopped or hand_over not in handed.done:
                        break  # the flow was suspended before the streams had it: read again after the seek
                    set_read_offset(tp, offset)
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


def _new_offset(self: Any, tp: Any) -> int | None:
    """The offset to commit for ``tp``: past the first run of consecutive acknowledged offsets, but never past a
    gap at the head (after the committed offset) or a record still being processed."""
    acked = self._acked[tp]
    if not acked:
        return None
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


def install() -> None:
    """Replace faust's consumer loop with the corrected one (idempotent)."""
    global _installed
    if _installed:
        return
    faust_consumer.Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    faust_consumer.Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    _installed = True
