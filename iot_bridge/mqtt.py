"""The MQTT side: every server worker subscribes to ``medwx/<gateway>/readings`` (one shared subscription, so each
message reaches one worker) and hands the readings to ``monitoring.ingest.accept``.

A message is JSON: ``{"key": "<the gateway's API key>", "readings": [...]}`` (readings as for HTTP). The key travels
in the payload because the broker, not this server, sees the MQTT username and password: this server cannot tell
who published a message otherwise. The ``<gateway>`` in the topic must be the key's gateway. Give the broker
per-gateway accounts and topic ACLs as well, if it can; that keeps gateways from even publishing on another's topic.

Nothing a gateway sends can stop the consumer: a bad message is counted (``iot:stats:<gateway>``, or
``iot:stats:unauthenticated`` before the key is known) and dropped; over the gateway's rate the message is dropped
and counted (MQTT has no way to say "later"); a full buffer makes the consumer wait (the broker holds the rest), so
no gateway's readings are lost to another's flood. Messages waiting together are checked together (one Redis call
per gateway), which is what lets one worker keep up with thousands of small messages a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import defaultdict
from urllib.parse import unquote, urlparse

import aiomqtt

from core.errors import AppError, ServiceBusy, TooManyRequests, Unauthorized
from core.redis import Redis
from core.settings import Settings
from iot_bridge.readings_api import readings_of
from monitoring import gateways, ingest

log = logging.getLogger(__name__)

TOPIC = "medwx/+/readings"
SHARED_TOPIC = "$share/medwx-ingest/" + TOPIC  # one delivery per message across the workers
QUEUE_SIZE = 10_000  # messages taken from the broker but not yet checked; beyond, the broker keeps them
DRAIN = 500  # messages checked together at most
BUSY_PATIENCE = 60.0  # seconds to wait for room in a full buffer before a message is dropped (and counted)


def broker_address(url: str) -> dict:
    """``mqtt://user:password@host:1883`` → aiomqtt.Client arguments (the server's own account, if any)."""
    u = urlparse(url)
    if u.scheme not in ("mqtt", "tcp", ""):
        raise ValueError(f"MQTT_URL must be mqtt://host:port, not {url!r}")
    return {"hostname": u.hostname or "127.0.0.1", "port": u.port or 1883,
            "username": unquote(u.username) if u.username else None,
            "password": unquote(u.password) if u.password else None}


class MqttIngest:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.address = broker_address(settings.mqtt_url)
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_SIZE)
        self.received = 0
        self.connected = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._receive(), name="mqtt-receive"),
                       asyncio.create_task(self._check(), name="mqtt-check")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _receive(self) -> None:
        delay = 1.0
        while True:
            try:
                async with aiomqtt.Client(**self.address, identifier=f"medwx-{uuid.uuid4().hex[:12]}",
                                          clean_session=True) as client:
                    await client.subscribe(SHARED_TOPIC, qos=1)
                    log.info("MQTT: subscribed to %s at %s:%s", TOPIC, self.address["hostname"],
                             self.address["port"])
                    self.connected.set()
                    delay = 1.0
                    async for message in client.messages:
                        self.received += 1
                        await self.queue.put((message.topic.value, message.payload))
            except asyncio.CancelledError:
                raise
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                log.warning("MQTT broker at %s:%s: %s; reconnecting in %.0f s", self.address["hostname"],
                            self.address["port"], exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _check(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < DRAIN and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                await self.handle(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - never let one batch stop the consumer
                log.exception("MQTT: %d messages could not be checked", len(batch))

    async def handle(self, messages: list[tuple[str, bytes]]) -> None:
        """Group the messages by (topic gateway, key), then accept each group's readings together."""
        groups: dict[tuple[str, str], list] = defaultdict(list)
        unreadable = 0
        for topic, payload in messages:
            parts = topic.split("/")
            try:
                body = json.loads(payload)
                key = body.get("key") if isinstance(body, dict) else None
                readings = readings_of(body)
            except (ValueError, AppError):
                unreadable += 1
                continue
            if len(parts) != 3 or not isinstance(key, str) or not readings:
                unreadable += 1
                continue
            groups[(parts[1], key)].extend(readings)
        if unreadable:
            await ingest.count_unauthenticated(self.redis, unreadable)
        for (name, key), readings in groups.items():
            try:
                gateway = await gateways.authenticate(key)
                if gateway.name != name:
                    raise Unauthorized("网关密钥与主题不符", code="topic_of_other_gateway")
            except Unauthorized:
                await ingest.count_unauthenticated(self.redis)
                log.info("MQTT: message on %s refused: wrong key", name)
                continue
            for start in range(0, len(readings), ingest.MAX_BATCH):
                await self._accept(gateway, readings[start:start + ingest.MAX_BATCH])

    async def _accept(self, gateway, readings: list) -> None:
        waited = 0.0
        while True:
            try:
                await ingest.accept(gateway, readings, redis=self.redis, settings=self.settings)
                return
            except TooManyRequests:
                return  # counted as rate_limited by accept
            except ServiceBusy:
                if waited >= BUSY_PATIENCE:
                    log.error("MQTT: buffer full for %.0f s; %d readings of %s dropped", waited, len(readings),
                              gateway.name)
                    await self.redis.hincrby(ingest.stats_key(gateway.id), "dropped_busy", len(readings))
                    return
                await asyncio.sleep(0.5)
                waited += 0.5
