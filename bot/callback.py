"""``GET/POST /wechat/callback``: the public account's server endpoint.

403 only for a forged signature. Anything correctly signed gets 200, because WeChat retries anything else and then
shows the user "该公众号暂时无法提供服务": unreadable input is logged and answered ``success``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import NoReturn

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, text
from wechatpy.messages import BaseMessage
from wechatpy.replies import ArticlesReply, BaseReply, TextReply

import bot.handlers  # noqa: F401 - registers the default handlers
from bot.once import MessageOnce
from bot.protocol import Forged, Inbound, Unreadable, WeChatProtocol
from bot.router import BotContext, Reply, render, router
from core import errors

log = logging.getLogger(__name__)

bp = Blueprint("wechat", url_prefix="/wechat")

SORRY = "抱歉，系统繁忙，请稍后再试。"
_XML = "application/xml; charset=utf-8"


@bp.before_server_start
async def set_up(app):
    settings = app.ctx.settings
    app.ctx.wechat_protocol = WeChatProtocol(settings)
    app.ctx.message_once = MessageOnce(app.ctx.redis)
    app.ctx.bot = BotContext(settings=settings, redis=app.ctx.redis, events=app.ctx.events, wechat=app.ctx.wechat)
    app.ctx.late_replies = set()


@bp.after_server_stop
async def finish_late_replies(app):
    pending = getattr(app.ctx, "late_replies", set())
    if pending:
        await asyncio.wait(pending, timeout=app.ctx.settings.wechat_reply_window)


def _refuse(request: Request, exc: Forged) -> NoReturn:
    log.warning("refused callback from %s: %s", request.remote_addr or request.ip, exc)
    raise errors.Forbidden("签名无效", code="bad_signature")


@bp.get("/callback")
async def verify_url(request: Request) -> HTTPResponse:
    """WeChat's server-configuration check."""
    try:
        return text(request.app.ctx.wechat_protocol.verify_url(request.args))
    except Forged as exc:
        _refuse(request, exc)


@bp.post("/callback")
async def receive(request: Request) -> HTTPResponse:
    ctx = request.app.ctx
    deadline = time.monotonic() + ctx.settings.wechat_reply_window
    try:
        inbound = ctx.wechat_protocol.read(request.body, request.args)
    except Forged as exc:
        _refuse(request, exc)
    except Unreadable as exc:
        log.warning("signed callback not handled: %s", exc)
        return text("success")

    key = inbound.dedupe_key
    if not await ctx.message_once.claim(key):
        earlier = await ctx.message_once.earlier_reply(key, deadline)
        log.info("repeated delivery %s answered %s", key, "again" if earlier else "success")
        return _answer(ctx, earlier or "", inbound)

    task = asyncio.create_task(_handle(inbound.message, ctx.bot))
    done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
    if task in done:
        xml = render(task.result(), inbound.message)
        await ctx.message_once.finish(key, xml)
        return _answer(ctx, xml, inbound)

    # Too slow for the passive reply: answer now, send the reply as a customer-service message when it is ready.
    await ctx.message_once.finish(key, "")
    late = asyncio.create_task(_deliver_late(task, inbound.message, ctx.bot))
    ctx.late_replies.add(late)
    late.add_done_callback(ctx.late_replies.discard)
    log.info("message %s answered late by customer-service message", key)
    return text("success")


def _answer(ctx, xml: str, inbound: Inbound) -> HTTPResponse:
    if not xml:
        return text("success")
    return HTTPResponse(ctx.wechat_protocol.wrap(xml, inbound), content_type=_XML)


async def _handle(message: BaseMessage, bot: BotContext) -> Reply:
    """Run the message's handler; any failure becomes a polite reply (never an error to WeChat)."""
    try:
        return await router.dispatch(message, bot)
    except errors.AppError as exc:
        log.info("handler refused %s: %s", message.type, exc.code)
        return exc.message
    except Exception:  # noqa: BLE001 - the user gets an apology, the log gets the trace
        log.exception("handler failed on %s message from %s", message.type, message.source)
        return SORRY


async def _deliver_late(task: asyncio.Task, message: BaseMessage, bot: BotContext) -> None:
    reply = await task
    if reply is None or reply == "":
        return
    try:
        await send_as_customer_message(bot, message.source, reply)
    except Exception:  # noqa: BLE001 - the user already had "success"; log and move on
        log.exception("late reply to %s could not be sent", message.source)


async def send_as_customer_message(bot: BotContext, openid: str, reply: Reply | BaseReply) -> None:
    if isinstance(reply, str):
        await bot.wechat.send_text(openid, reply)
    elif isinstance(reply, TextReply):
        await bot.wechat.send_text(openid, reply.content)
    elif isinstance(reply, ArticlesReply) and reply.articles:
        # A customer-service news message carries one article (WeChat answers 45008 for more).
        first = reply.articles[0]
        await bot.wechat.send_news(openid, [{"title": first.get("title", ""), "description": first.get("description", ""),
                                             "url": first.get("url", ""), "picurl": first.get("image", "")}])
    else:
        log.error("late %s reply to %s cannot be sent as a customer-service message", type(reply).__name__, openid)
