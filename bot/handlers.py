"""Default handlers: what the public account answers before (or besides) a feature claiming a message.

Replies are short, polite, in Chinese, and say what the user can do next.
"""

from __future__ import annotations

import logging

from wechatpy.messages import BaseMessage

from bot.router import BotContext, Reply, router
from core import identities

log = logging.getLogger(__name__)

HELP = (
    "您好，这里是医疗设备服务助手。\n"
    "· 设备报修：扫描设备上的二维码，按页面提示描述故障；\n"
    "· 故障咨询：直接发送设备名称和故障现象（文字或语音）；\n"
    "· 人工服务：回复“转人工”。"
)
WELCOME = "感谢关注！" + HELP.removeprefix("您好，")
UNKNOWN_SCENE = "未能识别该二维码，可能已停用。请改用“我的设备”或输入设备铭牌号报修。"
VOICE_UNCLEAR = "抱歉，没有听清您的语音，请再说一遍或改用文字描述。"
UNSUPPORTED = "暂不支持此类消息。" + "请用文字或语音描述您的问题，或回复“转人工”。"


def scene_of(message: BaseMessage) -> str:
    """The QR scene of a follow-by-scan (wechatpy strips ``qrscene_``) or of a scan by a follower."""
    return (getattr(message, "scene_id", None) or getattr(message, "key", None) or "").strip()


async def answer_scene(message: BaseMessage, ctx: BotContext, scene: str) -> Reply:
    handler = router.scene_handler(scene)
    if handler is None:
        return UNKNOWN_SCENE
    return await handler(message, ctx)


@router.event("subscribe", "subscribe_scan")
async def on_follow(message: BaseMessage, ctx: BotContext) -> Reply:
    scene = scene_of(message) if message.event == "subscribe_scan" else ""
    await identities.record_follow(message.source, scene or None)
    await ctx.events.publish("wechat.followed", {"openid": message.source, "scene": scene or None})
    if not scene:
        return WELCOME
    return await answer_scene(message, ctx, scene)


@router.event("scan")
async def on_scan(message: BaseMessage, ctx: BotContext) -> Reply:
    return await answer_scene(message, ctx, scene_of(message))


@router.event("unsubscribe")
async def on_unfollow(message: BaseMessage, ctx: BotContext) -> Reply:
    await identities.record_unfollow(message.source)
    await ctx.events.publish("wechat.unfollowed", {"openid": message.source})
    return None


@router.message("voice")
async def on_voice(message: BaseMessage, ctx: BotContext) -> Reply:
    """A voice message with WeChat's recognition is handled as the text it says."""
    if not ctx.text_of(message):
        await identities.record_interaction(message.source)
        return VOICE_UNCLEAR
    text_handler = router.message_handler("text")  # the robot (bot.robot_handlers)
    return await text_handler(message, ctx) if text_handler else HELP


@router.message("image")
async def on_image(message: BaseMessage, ctx: BotContext) -> Reply:
    await identities.record_interaction(message.source)
    return "已收到图片。报修请先扫描设备二维码，在报修页面上传照片，工程师能看得更清楚。"


@router.message("location")
async def on_location(message: BaseMessage, ctx: BotContext) -> Reply:
    await identities.record_interaction(message.source)
    label = getattr(message, "label", "") or ""
    return f"已收到您的位置{('：' + label) if label else ''}。如需按医院查找设备报修，请发送医院名称。"


async def on_other_message(message: BaseMessage, ctx: BotContext) -> Reply:
    await identities.record_interaction(message.source)
    return UNSUPPORTED


async def on_unclaimed_click(message: BaseMessage, ctx: BotContext) -> Reply:
    log.warning("menu key %r has no handler", message.key)
    return "该菜单暂不可用。" + HELP.removeprefix("您好，这里是医疗设备服务助手。\n")


async def on_other_event(message: BaseMessage, ctx: BotContext) -> Reply:
    """VIEW, location reports, template-send receipts and the like need no answer."""
    return None


router.fallback_message = on_other_message
router.fallback_click = on_unclaimed_click
router.fallback_event = on_other_event
