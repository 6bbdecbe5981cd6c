"""Messages owed to people (ticket template messages, consultation subscribe messages) are rows first, sent after.

A row is sent by whoever claims it: a conditional UPDATE that counts the attempt and takes a lease on the row
(``sending_until``). Of two deliveries of one event at the same moment (the event bus hands an event whose first
delivery is still running to another worker after its retry delay), one sends and the other finds it taken; a
lease left by a worker that died mid-send runs out, and the next delivery sends. The caller clears the lease when it
records the outcome.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tortoise.expressions import F, Q

SEND_LEASE = timedelta(seconds=60)  # longer than one send may take (token fetch and call, with their timeouts)


async def claim(model, row_id: int, *, lease: timedelta = SEND_LEASE) -> bool:
    """Take the pending row ``row_id`` of ``model`` (fields ``status``, ``attempts``, ``sending_until``) for one send
    attempt; False when it is no longer pending or another delivery holds it."""
    now = datetime.now(timezone.utc)
    return bool(await model.filter(Q(sending_until__isnull=True) | Q(sending_until__lt=now), id=row_id,
                                   status="pending").update(attempts=F("attempts") + 1, sending_until=now + lease))
