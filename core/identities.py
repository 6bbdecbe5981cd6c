"""Service functions over WeChat identities (the transports call these, never the model)."""

from __future__ import annotations

import time
from collections import OrderedDict
from datetime import datetime, timezone

from core.models import WechatUser


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def record_follow(openid: str, scene: str | None = None) -> WechatUser:
    user, _ = await WechatUser.get_or_create(openid=openid)
    user.subscribed = True
    user.subscribed_at = _now()
    user.unsubscribed_at = None
    if scene:
        user.subscribe_scene = scene
    await user.save()
    return user


async def record_unfollow(openid: str) -> None:
    await WechatUser.filter(openid=openid).update(subscribed=False, unsubscribed_at=_now())


# openid -> when this process last stored an interaction. The 48-hour window does not need second precision, and a
# busy conversation should not cost a database write per message.
_recent: "OrderedDict[tuple[int, str], float]" = OrderedDict()
_REFRESH_AFTER = 300.0
_RECENT_MAX = 50_000


async def record_interaction(openid: str) -> None:
    """Remember the last message time (it opens the 48-hour customer-service window)."""
    now = time.monotonic()
    key = (id(WechatUser._meta.db), openid)  # per database connection, should the process switch databases
    seen = _recent.get(key)
    if seen is not None and now - seen < _REFRESH_AFTER:
        return
    _recent[key] = now
    _recent.move_to_end(key)
    while len(_recent) > _RECENT_MAX:
        _recent.popitem(last=False)
    updated = await WechatUser.filter(openid=openid).update(last_interaction_at=_now())
    if not updated:
        await WechatUser.get_or_create(openid=openid, defaults={"last_interaction_at": _now()})
