"""Service functions over WeChat identities (the transports call these, never the model)."""

from __future__ import annotations

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


async def record_interaction(openid: str) -> None:
    """Remember the last message time (it opens the 48-hour customer-service window)."""
    updated = await WechatUser.filter(openid=openid).update(last_interaction_at=_now())
    if not updated:
        await WechatUser.get_or_create(openid=openid, defaults={"last_interaction_at": _now()})
