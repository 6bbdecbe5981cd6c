"""Redis through redis-py's asyncio client, or an in-process stand-in for the embedded default.

With ``REDIS_URL`` unset the server runs as one process on ``fakeredis`` (with Lua, so locks work). It cannot be
shared between processes: several workers need a real Redis.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from core.settings import Settings

Redis = aioredis.Redis


def create_redis(settings: Settings) -> Redis:
    if settings.embedded_redis:
        import fakeredis

        # One fake server per client tree: all connections of this process see the same data.
        return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    return aioredis.from_url(settings.redis_url, decode_responses=True, health_check_interval=30)


async def redis_answers(client: Redis) -> bool:
    try:
        return bool(await client.ping())
    except Exception:  # noqa: BLE001 - health check: any failure means "no"
        return False
