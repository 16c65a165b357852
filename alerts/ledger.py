"""The webhook-ids receivers have already answered 2xx to, so that a delivery record read again (a worker restarted
after a crash re-reads what it had not committed; a retry copy beside its original) is not posted again.

Fed by this worker's own attempts and by the ``alerts.receipts`` mirror (read from the start, so a restarted worker
knows what went out before the crash once the mirror has caught up, and every worker knows what the others sent).
Only a "delivered" receipt of the same webhook-id counts: the id is made from the event and the subscription
(``alerts.routing.webhook_id``), the same key a Standard Webhooks receiver deduplicates on, so skipping it changes
nothing the receiver would keep; anything else (a failure, a parked or held delivery) is attempted as before.
"""

from __future__ import annotations

from collections import OrderedDict

from warning.shared.records import Receipt

DEFAULT_CAPACITY = 200_000  # ~30 MB at most; far more than the deliveries of the retry horizon


class DeliveredLedger:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = max(1, capacity)
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, webhook_id: object) -> bool:
        return webhook_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def observe(self, receipt: Receipt) -> None:
        """A receipt from this worker or the mirror: remember its webhook-id when the receiver took it."""
        webhook_id = str(receipt.get("webhook_id") or "")  # (a mirrored record is whatever the topic holds)
        if receipt.get("result") == "delivered" and webhook_id:
            self._ids[webhook_id] = None
            self._ids.move_to_end(webhook_id)
            if len(self._ids) > self.capacity:
                self._ids.popitem(last=False)
