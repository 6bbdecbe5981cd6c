"""Routes a parsed WeChat message to the handler for its type, event, menu key or QR scene.

Handlers are ``async def handler(message, ctx) -> reply`` where the reply is a text (``str``), a wechatpy reply
object, or ``None`` for no passive reply (``success``). Later features register their handlers here; what nobody
has claimed falls to the defaults in ``bot.handlers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from wechatpy.messages import BaseMessage
from wechatpy.replies import BaseReply, TextReply

from core.events import EventBus
from core.redis import Redis
from core.settings import Settings

Reply = str | BaseReply | None
Handler = Callable[[BaseMessage, "BotContext"], Awaitable[Reply]]


@dataclass
class BotContext:
    settings: Settings
    redis: Redis
    events: EventBus
    wechat: Any  # integrations.wechat.WeChatClient

    def text_of(self, message: BaseMessage) -> str:
        """What the user said: the text, or WeChat's speech recognition of a voice message."""
        if message.type == "text":
            return (message.content or "").strip()
        if message.type == "voice":
            return (getattr(message, "recognition", None) or "").strip()
        return ""


class Router:
    def __init__(self) -> None:
        self._messages: dict[str, Handler] = {}
        self._events: dict[str, Handler] = {}
        self._clicks: dict[str, Handler] = {}
        self._scenes: dict[str, Handler] = {}
        self.fallback_message: Handler | None = None
        self.fallback_event: Handler | None = None
        self.fallback_click: Handler | None = None
        self.fallback_scene: Handler | None = None

    # -- registration -----------------------------------------------------------------------------------------
    def message(self, *types: str) -> Callable[[Handler], Handler]:
        """text, voice, image, video, shortvideo, location, link, …"""
        return self._register(self._messages, [t.lower() for t in types])

    def event(self, *names: str) -> Callable[[Handler], Handler]:
        """wechatpy's event types: subscribe, subscribe_scan, scan, unsubscribe, click, view, location, …"""
        return self._register(self._events, [n.lower() for n in names])

    def click(self, *keys: str) -> Callable[[Handler], Handler]:
        """A custom-menu CLICK by its EventKey."""
        return self._register(self._clicks, keys)

    def scene(self, *prefixes: str) -> Callable[[Handler], Handler]:
        """A QR scene (``d`` for ``d:<system number>``, ``g`` for ``g:<group>``), from a follow or a scan."""
        return self._register(self._scenes, [p.lower() for p in prefixes])

    @staticmethod
    def _register(table: dict, keys) -> Callable[[Handler], Handler]:
        def decorator(fn: Handler) -> Handler:
            for key in keys:
                table[key] = fn
            return fn

        return decorator

    # -- dispatch ------------------------------------------------------------------------------------------------
    def handler_for(self, message: BaseMessage) -> Handler | None:
        if message.type != "event":
            return self._messages.get(message.type, self.fallback_message)
        event = message.event
        if event == "click":
            return self._clicks.get(message.key or "", self.fallback_click)
        return self._events.get(event, self.fallback_event)

    def message_handler(self, message_type: str) -> Handler | None:
        return self._messages.get(message_type)

    def scene_handler(self, scene: str) -> Handler | None:
        prefix = scene.split(":", 1)[0].lower() if ":" in scene else ""
        return self._scenes.get(prefix, self.fallback_scene)

    async def dispatch(self, message: BaseMessage, ctx: BotContext) -> Reply:
        handler = self.handler_for(message)
        return await handler(message, ctx) if handler else None


def render(reply: Reply, message: BaseMessage) -> str:
    """The passive-reply XML for a handler's answer ('' for none)."""
    if reply is None or reply == "":
        return ""
    if isinstance(reply, str):
        reply = TextReply(content=reply, message=message)
    return reply.render()


router = Router()
