"""Text (and recognised voice) reaches the robot; a hand-off about a known device opens a ticket for an agent."""

from __future__ import annotations

import logging

from wechatpy.messages import BaseMessage

from bot.router import BotContext, Reply, router
from core import identities
from core.models import User
from knowledge.robot import AskContext, answer
from repair import labels, reporting, scans, tickets
from repair.models import Device
from repair.tickets import Actor

log = logging.getLogger(__name__)


@router.message("text")
async def on_text(message: BaseMessage, ctx: BotContext) -> Reply:
    await identities.record_interaction(message.source)
    said = ctx.text_of(message)
    scene = await scans.last_scene(ctx.redis, message.source)
    target = await _scanned(scene)
    ask = AskContext(openid=message.source, redis=ctx.redis,
                     device_type=target.device_type if isinstance(target, Device) else None,
                     device_name=getattr(target, "name", None))
    reply = await answer(said, ask)
    if reply.kind == "handoff" and target is not None:
        # After "不是" or a device choice, the ticket describes the question, not the "2" that settled it.
        number = await _hand_off(ctx, message, target, reply.about or said, reply.tier)
        return f"{reply.text}\n工单号：{number}"
    return reply.text


async def _scanned(scene: str | None):
    if not scene:
        return None
    try:
        return await labels.resolve_scene(scene)
    except Exception:  # noqa: BLE001 - a label retired since the scan: answer without it
        return None


async def _hand_off(ctx: BotContext, message: BaseMessage, target, said: str, tier: str | None) -> str:
    """Open a ticket for the scanned device and pass it to the remote service centre."""
    reporter = await User.get_or_none(openid=message.source)
    ticket, created = await reporting.submit_report(
        ctx.settings, ctx.events, target, description=said or "用户要求人工服务", reporter=reporter,
        reporter_openid=message.source, client_request_id=f"wx-text:{message.id}", channel="wechat", tier=tier)
    if created and ticket.state == "new":
        await tickets.change_state(ticket, "with_agent", events=ctx.events, actor=Actor(label="机器人"),
                                   note="机器人转人工")
    return ticket.number
