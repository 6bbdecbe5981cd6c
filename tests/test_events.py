"""Events on Redis Streams: replay after an id, every-worker listeners, one-worker listeners with retries."""

from __future__ import annotations

import asyncio

from core.events import DEAD_LETTERS, EventBus


async def _until(predicate, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_replay_after_the_last_seen_id(redis_client):
    bus = EventBus(redis_client)
    first = await bus.publish("ticket.opened", {"number": "R2611230001"})
    await bus.publish("ticket.assigned", {"number": "R2611230001", "engineer": "张工"})
    replay = await bus.read_after(first)
    assert [(e.name, e.data) for e in replay] == [("ticket.assigned", {"number": "R2611230001", "engineer": "张工"})]
    assert [e.id for e in await bus.read_after("0-0")][0] == first


async def test_every_worker_sees_every_event(redis_client):
    seen = {"w1": [], "w2": []}
    workers = [EventBus(redis_client, block_ms=100), EventBus(redis_client, block_ms=100)]
    for name, bus in zip(seen, workers):
        bus.on("ticket.opened")(lambda e, n=name: _append(seen[n], e.data["number"]))
        await bus.start()
    try:
        await workers[0].publish("ticket.opened", {"number": "A"})
        await workers[1].publish("ticket.opened", {"number": "B"})
        await workers[1].publish("kb.changed", {})
        await _until(lambda: len(seen["w1"]) == 2 and len(seen["w2"]) == 2)
        assert seen == {"w1": ["A", "B"], "w2": ["A", "B"]}
    finally:
        for bus in workers:
            await bus.stop()


async def _append(lst, value):
    lst.append(value)


async def test_a_once_listener_runs_in_one_worker_per_event(redis_client):
    handled = []
    workers = [EventBus(redis_client, block_ms=100) for _ in range(2)]
    for i, bus in enumerate(workers):
        bus.on("ticket.assigned", once=True, group="notify-engineer")(
            lambda e, i=i: _append(handled, (i, e.data["n"])))
        await bus.start()
    try:
        for n in range(20):
            await workers[n % 2].publish("ticket.assigned", {"n": n})
        await _until(lambda: len(handled) >= 20)
        await asyncio.sleep(0.3)
        assert sorted(n for _, n in handled) == list(range(20))  # each once, none twice
    finally:
        for bus in workers:
            await bus.stop()


async def test_a_failing_once_listener_is_retried_then_dead_lettered(redis_client):
    attempts = []

    async def flaky(event):
        attempts.append(event.data["n"])
        if event.data["n"] == 1 and attempts.count(1) < 2:
            raise RuntimeError("WeChat did not answer")  # fails once, then works
        if event.data["n"] == 2:
            raise RuntimeError("always fails")

    bus = EventBus(redis_client, block_ms=50, retry_after_ms=100, max_deliveries=3)
    bus.on("ticket.message", once=True, group="send-template")(flaky)
    await bus.start()
    try:
        await bus.publish("ticket.message", {"n": 1})
        await bus.publish("ticket.message", {"n": 2})
        await _until(lambda: attempts.count(1) == 2 and attempts.count(2) >= 3, timeout=5)
        dead = []
        for _ in range(100):
            dead = await redis_client.xrange(DEAD_LETTERS)
            if dead:
                break
            await asyncio.sleep(0.05)
        assert [f["listener"] for _, f in dead] == ["send-template"]
        assert attempts.count(2) == 3
        pending = await redis_client.xpending(bus.stream, "send-template")
        assert pending["pending"] == 0
    finally:
        await bus.stop()


async def test_a_listener_added_later_does_not_replay_history(redis_client):
    bus = EventBus(redis_client, block_ms=50)
    await bus.publish("device.alert", {"old": True})
    got = []
    bus.on("device.alert", once=True, group="new-listener")(lambda e: _append(got, e.data))
    await bus.start()
    try:
        await bus.publish("device.alert", {"old": False})
        await _until(lambda: got)
        await asyncio.sleep(0.2)
        assert got == [{"old": False}]
    finally:
        await bus.stop()
