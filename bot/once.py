"""Each WeChat message handled once, across retries and workers.

WeChat waits 5 s for an answer and then sends the same message again (three times at most). The first arrival
claims the message id in Redis; later arrivals get the first reply again, or, while the first is still being
handled, wait for it inside their own window and otherwise answer ``success``.
"""

from __future__ import annotations

import asyncio
import time

from core.redis import Redis

PENDING = "\x00pending"
_PREFIX = "wx:once:"


class MessageOnce:
    def __init__(self, redis: Redis, *, claim_ttl: int = 60, reply_ttl: int = 300, poll_interval: float = 0.05):
        self.redis = redis
        # A claim outlives every retry (WeChat stops after ~15 s); a crashed worker's claim then expires.
        self.claim_ttl = claim_ttl
        self.reply_ttl = reply_ttl
        self.poll_interval = poll_interval

    async def claim(self, key: str) -> bool:
        """True for the first arrival of this message: it must be handled."""
        return bool(await self.redis.set(_PREFIX + key, PENDING, nx=True, ex=self.claim_ttl))

    async def finish(self, key: str, reply: str) -> None:
        """Store the reply given (``""`` when the answer went out another way) for retries to repeat."""
        await self.redis.set(_PREFIX + key, reply, ex=self.reply_ttl)

    async def earlier_reply(self, key: str, deadline: float) -> str | None:
        """The first arrival's reply, waiting for it until ``deadline`` (``time.monotonic()``); None if not ready."""
        while True:
            value = await self.redis.get(_PREFIX + key)
            if value is None:
                return None  # the claim expired without an answer: nothing to repeat
            if value != PENDING:
                return value
            if time.monotonic() + self.poll_interval >= deadline:
                return None
            await asyncio.sleep(self.poll_interval)
