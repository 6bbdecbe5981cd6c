"""``/console/ws``: the live ticket queue.

Each worker keeps the set of its connected console sockets (``LiveQueue``). An every-worker event listener turns a
ticket event into one JSON frame and offers it to each socket allowed to see it; each socket has its own bounded
queue and its own writer, so a slow client delays only itself. A client that falls ``MAX_BEHIND`` frames behind is
disconnected (close code 4429) and resumes with ``?after=<last id>`` (replayed from the event stream).

Frames: ``hello`` on connect, ``event`` per ticket event, ``ping`` every ``PING_EVERY`` seconds, ``error``
before a refusal. Close codes: 4401 no valid session, 4403 foreign origin, 4429 too far behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from sanic import Blueprint, Request
from sanic.exceptions import ServerError, WebsocketClosed
from sanic.server.websockets.impl import WebsocketImplProtocol

from console.auth import COOKIE, console_user, may_see_hospital, read_session, served_hospital_ids, user_out
from core.errors import AppError
from core.events import Event, EventBus
from core.models import User

log = logging.getLogger(__name__)

bp = Blueprint("console_ws", url_prefix="/console")

TICKET_EVENTS = ("ticket.opened", "ticket.state_changed", "ticket.handed_off", "ticket.assigned", "ticket.message")
# What the live queue carries: ticket events, and IoT early warnings (``device.alert``: hospital-scoped like tickets;
# an engineer sees one when its preventive ticket is theirs).
LIVE_EVENTS = (*TICKET_EVENTS, "device.alert")
MAX_BEHIND = 500  # frames waiting for one socket before it is dropped
PING_EVERY = 25.0  # seconds
REPLAY_PAGE = 500
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


def stream_key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def event_frame(event: Event) -> str:
    return json.dumps({"type": "event", "id": event.id, "event": event.name, "data": event.data},
                      ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class _Resume:
    after: str


_PING = object()


class _Socket:
    """One connected console: who, what they may see, and the frames waiting to be written."""

    def __init__(self, ws: WebsocketImplProtocol, user: User, scope: set[int] | None):
        self.ws, self.user, self.scope = ws, user, scope
        self.queue: asyncio.Queue = asyncio.Queue(MAX_BEHIND)
        self.dropped = False
        self.ping_timer: asyncio.TimerHandle | None = None

    def ping_due(self) -> None:
        # A timer, not a wait with a timeout per frame: the writer's loop stays a plain queue.get().
        self.offer(_PING)
        self.ping_timer = asyncio.get_running_loop().call_later(PING_EVERY, self.ping_due)

    @property
    def engineer(self) -> bool:
        return self.user.role == "engineer"

    def offer(self, item) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # Synchronous and never blocks: a client that stopped reading cannot hold up the others.
            self.dropped = True
            log.warning("console socket of %s dropped: %s frames behind", self.user.label(), self.queue.maxsize)
            self.ws.fail_connection(4429, "behind")


class LiveQueue:
    """This worker's console sockets, fed by an every-worker listener on the live events."""

    def __init__(self, events: EventBus):
        self.events = events
        self.sockets: set[_Socket] = set()
        events.on(*LIVE_EVENTS)(self.dispatch)

    async def dispatch(self, event: Event) -> None:
        if not self.sockets:
            return
        frame, key = event_frame(event), stream_key(event.id)
        owner: list = []  # the ticket's engineer, looked up once and only when an engineer is connected
        for sock in list(self.sockets):
            if sock.engineer:
                if not owner:
                    owner.append(await _engineer_of(event))
                if owner[0] != sock.user.id:
                    continue
            elif not may_see_hospital(sock.scope, event.data.get("hospital_id")):
                continue
            sock.offer((key, frame))

    async def visible(self, sock: _Socket, event: Event) -> bool:
        if event.name not in LIVE_EVENTS:
            return False
        if sock.engineer:
            return await _engineer_of(event) == sock.user.id
        return may_see_hospital(sock.scope, event.data.get("hospital_id"))


async def _engineer_of(event: Event) -> int | None:
    """Engineers see only their own tickets; the event carries the ticket id, not the engineer."""
    from repair.models import Ticket

    ticket_id = event.data.get("ticket_id")
    if ticket_id is None:
        return None
    try:
        found = await Ticket.filter(id=ticket_id).values_list("engineer_id", flat=True)
    except Exception:  # noqa: BLE001 - the database hiccuped: engineers miss this frame, agents still get it
        log.exception("engineer of ticket %s not read; the event goes to no engineer", ticket_id)
        return None
    return found[0] if found else None


def _foreign_origin(request: Request) -> bool:
    """Browsers send Origin on a WebSocket handshake: refuse pages of other sites (cookies go with the handshake)."""
    origin = request.headers.get("origin")
    if not origin:
        return False  # not a browser
    netloc = urlsplit(origin).netloc
    own = {request.headers.get("host", ""), urlsplit(request.app.ctx.settings.public_base_url).netloc}
    return netloc not in own


async def _refuse(ws: WebsocketImplProtocol, code: int, error: AppError) -> None:
    await ws.send(json.dumps({"type": "error", **error.to_body()}, ensure_ascii=False))
    await ws.close(code, error.code)


@bp.websocket("/ws")
async def live_queue(request: Request, ws: WebsocketImplProtocol):
    if _foreign_origin(request):
        log.warning("console socket refused: origin %s", request.headers.get("origin"))
        return await _refuse(ws, 4403, AppError("来源不被允许", code="origin", status=403))
    try:
        user = await console_user(request)
    except AppError as exc:
        log.info("console socket refused: %s", exc.code)
        return await _refuse(ws, 4401, exc)
    after = request.args.get("after")
    if after is not None and not _STREAM_ID.match(after):
        return await _refuse(ws, 4400, AppError("after 参数有误", code="invalid_after"))

    hub: LiveQueue = request.app.ctx.live_queue
    sock = _Socket(ws, user, await served_hospital_ids(user))
    hub.sockets.add(sock)  # before reading the stream: nothing published from now on is missed
    loop = asyncio.get_running_loop()
    sock.ping_timer = loop.call_later(PING_EVERY, sock.ping_due)
    tasks = []
    try:
        last_id = await hub.events.last_id()
        await ws.send(json.dumps({"type": "hello", "user": await user_out(user), "last_id": last_id},
                                 ensure_ascii=False))
        tasks = [asyncio.create_task(_write(request, hub, sock, after)), asyncio.create_task(_read_client(sock))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)  # the writer quit, or the client left
    except (WebsocketClosed, ServerError, ConnectionError):
        pass  # the client went away (or was dropped) while we wrote: nothing to tell anyone
    finally:
        hub.sockets.discard(sock)
        sock.ping_timer.cancel()
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception) and not isinstance(outcome, (WebsocketClosed, ServerError,
                                                                            ConnectionError)):
                log.error("console socket of %s failed", user.label(), exc_info=outcome)


async def _read_client(sock: _Socket) -> None:
    """Client → server: ``{"type": "resume", "after": "<id>"}``; anything else is ignored."""
    async for message in sock.ws:
        try:
            frame = json.loads(message)
        except (TypeError, ValueError):
            continue
        if isinstance(frame, dict) and frame.get("type") == "resume" and _STREAM_ID.match(str(frame.get("after"))):
            sock.offer(_Resume(str(frame["after"])))


async def _write(request: Request, hub: LiveQueue, sock: _Socket, after: str | None) -> None:
    """This socket's only writer: replay, then frames in stream order; a frame a replay already sent is skipped."""
    sent = await _replay(hub, sock, after) if after else (0, 0)
    while True:
        item = await sock.queue.get()
        if item is _PING:
            if not await _still_signed_in(request, sock):
                return
            await sock.ws.send('{"type":"ping"}')
        elif isinstance(item, _Resume):
            sent = await _replay(hub, sock, item.after)
        else:
            key, frame = item
            if key > sent:
                await sock.ws.send(frame)
                sent = key


async def _replay(hub: LiveQueue, sock: _Socket, after: str) -> tuple[int, int]:
    """Send the visible ticket events after ``after``; the stream key of the last one read."""
    last = after
    while True:
        batch = await hub.events.read_after(last, count=REPLAY_PAGE)
        for event in batch:
            if await hub.visible(sock, event):
                await sock.ws.send(event_frame(event))
        if batch:
            last = batch[-1].id
        if len(batch) < REPLAY_PAGE:
            return stream_key(last)


async def _still_signed_in(request: Request, sock: _Socket) -> bool:
    """At each idle ping: a session that ended (logout, expiry, account disabled) closes the socket; the scope is
    read again (an administrator may have changed the hospitals served)."""
    app = request.app
    session = await read_session(app.ctx.redis, app.ctx.settings, request.cookies.get(COOKIE), touch=False)
    user = await User.get_or_none(id=sock.user.id)
    if session is None or user is None or not user.active:
        await _refuse(sock.ws, 4401, AppError("登录已过期，请重新登录", code="login_required", status=401))
        return False
    sock.user, sock.scope = user, await served_hospital_ids(user)
    return True
