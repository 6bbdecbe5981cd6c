"""A consultation's room: the WebSocket conversation between the patient's side (kiosk or mini program) and the
doctor's console page, whichever worker each one is connected to.

Every socket of a room subscribes to one Redis pub/sub channel (``consultation:room:<room>``); what a socket sends
is published there and every socket of the room (on any worker) receives it. Chat messages are stored first
(``care.consultations.post_message``) and then published with their id; WebRTC signalling (``offer``, ``answer``,
``ice``) is relayed only, never stored, and never echoed to its sender.

Frames, client → server: ``{"type": "chat", "body"}``, ``{"type": "offer"|"answer"|"ice", "data"}``,
``{"type": "end"}``, ``{"type": "ping"}``. Server → client: ``hello`` (the consultation, the side, ICE servers, the
chat history), ``chat`` (``message``), ``offer``/``answer``/``ice`` (``from_side``, ``data``), ``presence``
(``side``, ``joined``, ``sides``), ``status``, ``ended``, ``pong``, ``error`` (``error: {code, message}``).

The socket is duck-typed (``send(str)``, ``recv()`` → str or None, ``close(code, reason)``): the transports hand in
Sanic's, tests may hand in their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

from core.errors import AppError
from core.events import EventBus
from core.redis import Redis
from care import consultations
from care.consultation_models import Consultation

log = logging.getLogger(__name__)

CHANNEL = "consultation:room:{}"
PRESENT = "consultation:present:{}"  # hash: connection id -> side
SIGNALS = ("offer", "answer", "ice")
MAX_FRAME = 64 * 1024  # an SDP offer with many candidates is a few KB
PRESENCE_TTL = 24 * 3600


def _dump(frame: dict) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


async def broadcast(redis: Redis, c: Consultation, frame: dict) -> None:
    await redis.publish(CHANNEL.format(c.room), _dump(frame))


async def end(redis: Redis, c: Consultation, by: str, *, events: EventBus | None) -> Consultation:
    """End the consultation and tell every socket in its room (they close)."""
    c = await consultations.end(c, by, events=events)
    await broadcast(redis, c, {"type": "ended", "ended_by": c.ended_by, "duration_seconds": c.duration_seconds})
    return c


async def serve_socket(ws, find, side: str, token: str | None, *, secret: str, redis: Redis,
                       events: EventBus | None, ice_servers: list | None = None) -> None:
    """A transport's whole WebSocket handler after the handshake: ``find()`` authenticates the caller and returns
    their consultation (raising ``AppError`` otherwise); then the room token and the room's state are checked.
    A refusal is an ``error`` frame and the close code 4000 + the HTTP status (4401, 4403, 4404, 4409)."""
    try:
        c = await find()
        consultations.check_room_token(secret, c, side, token)
        consultations.require_open_room(c)
    except AppError as exc:
        log.info("room socket (%s) refused: %s", side, exc.code)
        await ws.send(_dump({"type": "error", **exc.to_body()}))
        await ws.close(4000 + exc.status, exc.code)
        return
    try:
        await relay(ws, c, side, redis=redis, events=events, ice_servers=ice_servers)
    except Exception as exc:  # noqa: BLE001 - sorted below
        if not _gone(exc):
            raise


async def relay(ws, c: Consultation, side: str, *, redis: Redis, events: EventBus | None,
                ice_servers: list | None = None) -> None:
    """Serve one socket of the room until the client leaves or the consultation ends (the caller checked the room
    token and that the room is open)."""
    conn = secrets.token_hex(8)
    present = PRESENT.format(c.room)
    pubsub = redis.pubsub()
    await pubsub.subscribe(CHANNEL.format(c.room))  # before anything is announced: no frame falls in between
    tasks: list[asyncio.Task] = []
    try:
        await redis.hset(present, conn, side)
        await redis.expire(present, PRESENCE_TTL)
        history = [consultations.message_view(m) for m in await consultations.messages(c)]
        await ws.send(_dump({"type": "hello", "side": side, "ice_servers": list(ice_servers or []),
                             "consultation": await consultations.view(c), "messages": history}))
        sides = sorted(set(await redis.hvals(present)))
        await broadcast(redis, c, {"type": "presence", "side": side, "joined": True, "sides": sides, "from": conn})
        if {"patient", "doctor"} <= set(sides):
            started = await consultations.mark_started(c, events=events)
            if started.status == "active" and c.status != "active":
                await broadcast(redis, c, {"type": "status", "status": "active",
                                           "started_at": consultations._iso(started.started_at)})
            c = started
        tasks = [asyncio.create_task(_from_client(ws, c, side, conn, redis, events)),
                 asyncio.create_task(_to_client(ws, pubsub, conn))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception) and not _gone(outcome):
                log.error("room %s socket (%s) failed", c.id, side, exc_info=outcome)
        try:
            await redis.hdel(present, conn)
            sides = sorted(set(await redis.hvals(present)))
            await broadcast(redis, c, {"type": "presence", "side": side, "joined": False, "sides": sides,
                                       "from": conn})
        except Exception:  # noqa: BLE001 - Redis went first (shutdown): the presence entry expires by itself
            log.warning("room %s: presence of a leaving socket not cleared", c.id)
        await pubsub.unsubscribe()
        await pubsub.aclose()


def _gone(exc: BaseException) -> bool:
    """The client went away while we read or wrote: nothing to report."""
    from sanic.exceptions import ServerError, WebsocketClosed
    from websockets.exceptions import ConnectionClosed

    return isinstance(exc, (WebsocketClosed, ConnectionClosed, ServerError, ConnectionError,
                            asyncio.CancelledError))


async def _error(ws, code: str, message: str) -> None:
    await ws.send(_dump({"type": "error", "error": {"code": code, "message": message}}))


async def _from_client(ws, c: Consultation, side: str, conn: str, redis: Redis, events: EventBus | None) -> None:
    while True:
        raw = await ws.recv()
        if raw is None:
            return  # the client left
        if len(raw) > MAX_FRAME:
            await _error(ws, "frame_too_large", "消息过大")
            continue
        try:
            frame = json.loads(raw)
        except (TypeError, ValueError):
            frame = None
        if not isinstance(frame, dict):
            await _error(ws, "invalid_frame", "消息须为 JSON 对象")
            continue
        kind = frame.get("type")
        try:
            if kind == "chat":
                message = await consultations.post_message(c, side, frame.get("body"), events=events)
                await broadcast(redis, c, {"type": "chat", "message": consultations.message_view(message)})
            elif kind in SIGNALS:
                consultations.require_open_room(await Consultation.get(id=c.id))
                await broadcast(redis, c, {"type": kind, "from_side": side, "data": frame.get("data"),
                                           "from": conn})
            elif kind == "end":
                await end(redis, c, side, events=events)
            elif kind == "ping":
                await ws.send('{"type":"pong"}')
            else:
                await _error(ws, "unknown_frame", "不支持的消息类型")
        except AppError as exc:
            await ws.send(_dump({"type": "error", **exc.to_body()}))


async def _to_client(ws, pubsub, conn: str) -> None:
    async for message in pubsub.listen():
        if message.get("type") != "message":
            continue
        try:
            frame: dict[str, Any] = json.loads(message["data"])
        except (TypeError, ValueError):
            continue
        if frame.pop("from", None) == conn and frame.get("type") != "chat":
            continue  # one's own signalling and presence are not echoed
        await ws.send(_dump(frame))
        if frame.get("type") == "ended":
            await ws.close(1000, "ended")
            return
