"""Scanning a device or group label: the card with a signed, expiring link to its repair page; a voice message
after a scan reports a fault on that device.

WeChat sends the label's scene on a follow-by-scan (``subscribe`` + ``qrscene_<scene>``) and on a follower's scan
(``SCAN``); ``bot.handlers`` routes both here by the scene's prefix.
"""

from __future__ import annotations

import logging

from wechatpy.messages import BaseMessage
from wechatpy.replies import ArticlesReply

from bot import handlers
from bot.router import BotContext, Reply, router
from core import identities
from core.errors import AppError, NotFound
from core.models import User
from repair import labels, reporting, scans

log = logging.getLogger(__name__)


@router.scene("d", "g")
async def on_label_scan(message: BaseMessage, ctx: BotContext) -> Reply:
    scene = handlers.scene_of(message)
    if message.event == "scan":  # a follow was recorded by on_follow; a scan opens the customer-service window too
        await identities.record_interaction(message.source)
    try:
        card = await labels.scan_card(ctx.settings, scene)
    except NotFound:
        return handlers.UNKNOWN_SCENE
    # A retired device raises Conflict: the callback replies with its message.
    await scans.remember_scan(ctx.redis, message.source, card.scene)
    reply = ArticlesReply(message=message)
    reply.add_article({"title": card.title, "description": card.description, "url": card.url})
    return reply


@router.message("voice")
async def on_voice(message: BaseMessage, ctx: BotContext) -> Reply:
    """A voice message shortly after scanning a label reports a fault on that device: WeChat's speech recognition
    is the description, the recording is attached. Without a recent scan it is a question like any other."""
    scene = await scans.last_scene(ctx.redis, message.source)
    spoken = ctx.text_of(message)
    if not scene or not spoken:
        return await handlers.on_voice(message, ctx)
    await identities.record_interaction(message.source)
    target = await labels.resolve_scene(scene)
    uploads = []
    try:
        uploads.append(reporting.Upload(await ctx.wechat.download_media(message.media_id), "voice", "voice.amr"))
    except AppError as exc:  # the description is what matters; the recording is a bonus
        log.warning("voice %s not downloaded: %s", message.media_id, exc.message)
    reporter = await User.get_or_none(openid=message.source)
    ticket, _ = await reporting.submit_report(
        ctx.settings, ctx.events, target, description=spoken, uploads=uploads, reporter=reporter,
        reporter_openid=message.source, client_request_id=f"wx-voice:{message.id}", channel="wechat")
    link = labels.repair_link(ctx.settings, scene)
    return (f"已为“{target.name}”创建报修工单 {ticket.number}。\n故障描述：{spoken}\n"
            f"如需补充照片，请打开：{link}")
