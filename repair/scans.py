"""What a WeChat user scanned last: the robot reads it as context ("this device") for the next half hour."""

from __future__ import annotations

from core.redis import Redis

SCAN_MEMORY_TTL = 30 * 60  # a conversation about one device rarely outlasts this; later questions start afresh


def _key(openid: str) -> str:
    return f"bot:scene:{openid}"


async def remember_scan(redis: Redis, openid: str, scene: str, *, ttl: int = SCAN_MEMORY_TTL) -> None:
    """Keep ``scene`` (``d:<system_number>`` / ``g:<group_id>``) as the user's last scan; a new scan replaces it."""
    await redis.set(_key(openid), scene, ex=ttl)


async def last_scene(redis: Redis, openid: str) -> str | None:
    """The scene the user scanned within the last ``SCAN_MEMORY_TTL`` seconds, or None."""
    value = await redis.get(_key(openid))
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value
