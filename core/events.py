"""Events on a Redis Stream: one domain change, one event; small listeners react to it.

- ``publish(name, data)`` appends to the stream (``XADD``, trimmed to about ``maxlen`` entries) and returns the id.
- ``read_after(last_id)`` replays what came after an id: a reconnecting console resumes where it stopped.
- Two kinds of listener:
  * ``on(name)`` runs in **every** worker (pushing to this worker's WebSockets, refreshing an in-memory index);
  * ``on(name, once=True)`` runs in **one** worker per event (sending a template message, updating statistics):
    each such listener has its own consumer group, so one failing listener is retried without re-running the
    others. A delivery not acknowledged (the worker died, the listener raised) is claimed again after
    ``retry_after_ms``; after ``max_deliveries`` attempts it goes to the dead-letter stream and is logged.

Names: ``ticket.opened``, ``ticket.handed_off``, ``ticket.assigned``, ``ticket.state_changed``, ``ticket.message``,
``device.alert``, ``kb.changed``, ``face.enrolled``, ``wechat.followed`` …
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from redis.exceptions import RedisError, ResponseError

from core.redis import Redis

log = logging.getLogger(__name__)

STREAM = "medwx:events"
DEAD_LETTERS = "medwx:events:dead"

Listener = Callable[["Event"], Awaitable[None]]


@dataclass(frozen=True)
class Event:
    id: str
    name: str
    data: dict

    @classmethod
    def from_entry(cls, entry_id: str, fields_: dict) -> "Event":
        try:
            data = json.loads(fields_.get("data") or "{}")
        except ValueError:
            data = {"_raw": fields_.get("data")}
        return cls(id=entry_id, name=fields_.get("name", ""), data=data)

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "data": self.data}


@dataclass
class _OnceListener:
    name: str  # the consumer group's name
    event_names: frozenset
    fn: Listener


@dataclass
class EventBus:
    redis: Redis
    stream: str = STREAM
    maxlen: int = 100_000
    block_ms: int = 2_000
    retry_after_ms: int = 30_000
    max_deliveries: int = 5
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")

    def __post_init__(self) -> None:
        self._each: dict[str, list[Listener]] = {}
        self._once: list[_OnceListener] = []
        self._tasks: list[asyncio.Task] = []

    # -- writing and reading -------------------------------------------------------------------------------
    async def publish(self, name: str, data: dict[str, Any] | None = None) -> str:
        payload = json.dumps(data or {}, ensure_ascii=False, default=str, separators=(",", ":"))
        return await self.redis.xadd(self.stream, {"name": name, "data": payload},
                                     maxlen=self.maxlen, approximate=True)

    async def read_after(self, last_id: str = "0-0", count: int = 500) -> list[Event]:
        """Events after ``last_id`` (exclusive), oldest first."""
        entries = await self.redis.xrange(self.stream, min=f"({last_id}", max="+", count=count)
        return [Event.from_entry(i, f) for i, f in entries]

    async def last_id(self) -> str:
        entries = await self.redis.xrevrange(self.stream, count=1)
        return entries[0][0] if entries else "0-0"

    # -- listeners -------------------------------------------------------------------------------------------
    def on(self, *names: str, once: bool = False, group: str | None = None) -> Callable[[Listener], Listener]:
        def register(fn: Listener) -> Listener:
            if once:
                self._once.append(_OnceListener(group or f"{fn.__module__}.{fn.__qualname__}", frozenset(names), fn))
            else:
                for n in names:
                    self._each.setdefault(n, []).append(fn)
            return fn

        return register

    async def start(self) -> None:
        """Start this worker's reading loops (call once per worker, after the listeners are registered).

        A Redis that does not answer yet delays the loops, not the server: they retry until it does."""
        if self._each:
            start_id = await self._try(self.last_id())
            self._tasks.append(asyncio.create_task(self._each_worker_loop(start_id), name="events-each"))
        for listener in self._once:
            ready = await self._try(self._ensure_group(listener.name), True)
            self._tasks.append(asyncio.create_task(self._once_loop(listener, ready is True),
                                                   name=f"events-{listener.name}"))

    @staticmethod
    async def _try(step, done=None):
        """The step's result (or ``done``), or None when Redis does not answer: the loop then does it later."""
        try:
            result = await step
            return done if done is not None else result
        except (RedisError, OSError):
            log.warning("Redis does not answer yet; event listeners will start when it does")
            return None

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _ensure_group(self, group: str) -> None:
        try:
            # "$": a listener added today reacts to today's events, not to the whole history.
            await self.redis.xgroup_create(self.stream, group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, read) -> list:
        """A blocking read; an empty answer that came back early (the in-process Redis does not always block)
        waits a little instead of spinning."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        reply = await read
        if not any(entries for _stream, entries in reply or []):
            if loop.time() - started < self.block_ms / 2000:
                await asyncio.sleep(min(0.05, self.block_ms / 1000))
            return []
        return reply

    async def _each_worker_loop(self, last_id: str | None) -> None:
        while True:
            try:
                if last_id is None:
                    last_id = await self.last_id()
                reply = await self._read(self.redis.xread({self.stream: last_id}, count=200, block=self.block_ms))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis hiccup: wait and go on, never die
                log.exception("event stream read failed; retrying")
                await asyncio.sleep(1)
                continue
            for _stream, entries in reply or []:
                for entry_id, fields_ in entries:
                    last_id = entry_id
                    event = Event.from_entry(entry_id, fields_)
                    for fn in self._each.get(event.name, ()):
                        await self._call(fn, event)

    async def _once_loop(self, listener: _OnceListener, group_ready: bool) -> None:
        next_claim = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if not group_ready:
                    await self._ensure_group(listener.name)
                    group_ready = True
                if loop.time() >= next_claim:
                    await self._reclaim(listener)
                    next_claim = loop.time() + self.retry_after_ms / 1000 / 2
                reply = await self._read(self.redis.xreadgroup(listener.name, self.consumer, {self.stream: ">"},
                                                               count=100, block=self.block_ms))
                for _stream, entries in reply or []:
                    for entry_id, fields_ in entries:
                        await self._deliver(listener, Event.from_entry(entry_id, fields_))
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # the stream was deleted (tests, an operator): make the group again
                    await self._ensure_group(listener.name)
                    continue
                log.exception("event group read failed; retrying")
                await asyncio.sleep(1)
            except Exception:  # noqa: BLE001
                log.exception("event group read failed; retrying")
                await asyncio.sleep(1)

    async def _deliver(self, listener: _OnceListener, event: Event) -> None:
        if event.name in listener.event_names and not await self._call(listener.fn, event):
            return  # not acknowledged: claimed again after retry_after_ms
        await self.redis.xack(self.stream, listener.name, event.id)

    async def _reclaim(self, listener: _OnceListener) -> None:
        """Take over deliveries another consumer (or an earlier failure) left unacknowledged for too long."""
        pending = await self.redis.xpending_range(self.stream, listener.name, min="-", max="+", count=100,
                                                  idle=self.retry_after_ms)
        for item in pending:
            entry_id = item["message_id"]
            claimed = await self.redis.xclaim(self.stream, listener.name, self.consumer,
                                              min_idle_time=self.retry_after_ms, message_ids=[entry_id])
            for claimed_id, fields_ in claimed:
                if fields_ is None:  # trimmed away meanwhile
                    await self.redis.xack(self.stream, listener.name, claimed_id)
                    continue
                event = Event.from_entry(claimed_id, fields_)
                if item["times_delivered"] >= self.max_deliveries:
                    log.error("event %s %s gave up after %s deliveries to %s", event.id, event.name,
                              item["times_delivered"], listener.name)
                    await self.redis.xadd(DEAD_LETTERS, {"listener": listener.name, "id": event.id,
                                                         "name": event.name, "data": json.dumps(event.data)},
                                          maxlen=10_000, approximate=True)
                    await self.redis.xack(self.stream, listener.name, claimed_id)
                else:
                    await self._deliver(listener, event)

    @staticmethod
    async def _call(fn: Listener, event: Event) -> bool:
        try:
            await fn(event)
            return True
        except Exception:  # noqa: BLE001 - one listener's failure must not stop the others
            log.exception("listener %s failed on %s %s", getattr(fn, "__qualname__", fn), event.name, event.id)
            return False
