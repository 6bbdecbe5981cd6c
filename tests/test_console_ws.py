"""The console's live queue: frames for tickets in the agent's hospitals only, replay after a reconnect, a socket
without a session refused, a client too far behind dropped, and events from another worker."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from core.models import Hospital
from repair.models import Device
from repair.tickets import Actor, TicketRequest, change_state, open_ticket
from tests.console_support import console_login, make_console_user


@pytest.fixture
async def world(serve, settings_for, database_url):
    live = await serve(settings_for(database_url))
    first = await Hospital.create(name="市第一人民医院")
    other = await Hospital.create(name="市中心医院")
    vent = await Device.create(hospital=first, system_number="D0001", nameplate_id="SN-778", name="呼吸机",
                               device_type="ventilator")
    pump = await Device.create(hospital=other, system_number="D0900", nameplate_id="SN-900", name="输液泵",
                               device_type="pump")
    agent = await make_console_user("agent", "liqing", "agent-pass", [first], name="李青")
    return dict(live=live, first=first, other=other, vent=vent, pump=pump, agent=agent)


async def report(live, device: Device, text: str = "不通电"):
    ticket, _ = await open_ticket(TicketRequest(hospital=await device.hospital, device=device, description=text),
                                  events=live.app.ctx.events)
    return ticket


async def next_frame(ws, timeout: float = 10.0) -> dict:
    """The next frame that is not a ping."""
    while True:
        frame = await asyncio.wait_for(ws.receive_json(), timeout)
        if frame["type"] != "ping":
            return frame


async def test_an_agent_sees_tickets_of_their_hospitals_live(world):
    live = world["live"]
    client = await console_login(live, "liqing", "agent-pass")
    async with client.websocket() as ws:
        hello = await next_frame(ws)
        assert hello["type"] == "hello" and hello["user"]["username"] == "liqing"
        elsewhere = await report(live, world["pump"])
        mine = await report(live, world["vent"], "呼吸机报警")
        frame = await next_frame(ws)  # the other hospital's ticket came first and was not sent
        assert frame["type"] == "event" and frame["event"] == "ticket.opened"
        assert frame["data"]["number"] == mine.number and frame["data"]["hospital_id"] == world["first"].id
        assert elsewhere.number != mine.number
        # An admin sees every hospital's tickets.
        await make_console_user("admin", "boss", "boss-pass")
        admin = await console_login(live, "boss", "boss-pass")
        async with admin.websocket() as admin_ws:
            await next_frame(admin_ws)
            third = await report(live, world["pump"], "漏液")
            assert (await next_frame(admin_ws))["data"]["number"] == third.number
        fourth = await report(live, world["vent"], "屏幕黑")
        assert (await next_frame(ws))["data"]["number"] == fourth.number


async def test_device_alerts_reach_the_agents_of_that_hospital_live(world):
    live = world["live"]
    events = live.app.ctx.events
    client = await console_login(live, "liqing", "agent-pass")
    async with client.websocket() as ws:
        await next_frame(ws)  # hello
        await events.publish("device.alert", {"alert_id": 1, "device_id": world["pump"].id,
                                              "hospital_id": world["other"].id, "severity": "high",
                                              "text": "输液泵电机电流偏高"})
        await events.publish("device.alert", {"alert_id": 2, "device_id": world["vent"].id,
                                              "hospital_id": world["first"].id, "severity": "critical",
                                              "text": "呼吸机涡轮温度 49 ℃，高于 45 ℃"})
        frame = await next_frame(ws)  # the other hospital's alert was not sent
        assert (frame["event"], frame["data"]["alert_id"]) == ("device.alert", 2)
        assert frame["data"]["text"] == "呼吸机涡轮温度 49 ℃，高于 45 ℃"
    # A reconnect replays it too.
    async with client.websocket(after="0-0") as ws:
        await next_frame(ws)
        replayed = await next_frame(ws)
        assert (replayed["event"], replayed["data"]["alert_id"]) == ("device.alert", 2)


async def test_a_reconnect_replays_what_was_missed(world):
    live = world["live"]
    client = await console_login(live, "liqing", "agent-pass")
    async with client.websocket() as ws:
        await next_frame(ws)
        seen = await next_frame(ws) if await report(live, world["vent"]) else None
    missed = [await report(live, world["vent"], "报警一"), await report(live, world["pump"], "别家的"),
              await report(live, world["vent"], "报警二")]
    async with client.websocket(after=seen["id"]) as ws:
        assert (await next_frame(ws))["type"] == "hello"
        replayed = [await next_frame(ws), await next_frame(ws)]
        assert [f["data"]["number"] for f in replayed] == [missed[0].number, missed[2].number]
        live_one = await report(live, world["vent"], "之后的")
        assert (await next_frame(ws))["data"]["number"] == live_one.number  # then live, nothing twice
        # The same socket can ask again: {"type": "resume", "after": id}.
        await ws.send_json({"type": "resume", "after": replayed[0]["id"]})
        again = [await next_frame(ws), await next_frame(ws)]
        assert [f["data"]["number"] for f in again] == [missed[2].number, live_one.number]


async def test_a_socket_without_a_valid_session_is_refused(world):
    live = world["live"]
    ws_url = live.url("/console/ws").replace("http", "ws", 1)
    for headers in ({}, {"Cookie": "medwx_console=forged"}):
        async with live.http.ws_connect(ws_url, headers=headers) as ws:
            frame = await ws.receive_json(timeout=10)
            assert frame == {"type": "error", "error": {"code": "login_required", "message": "请先登录"}}
            assert (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4401
    # A page of another site cannot use the agent's cookie.
    client = await console_login(live, "liqing", "agent-pass")
    async with live.http.ws_connect(ws_url, headers={**client.cookies, "Origin": "https://evil.example"}) as ws:
        assert (await ws.receive_json(timeout=10))["error"]["code"] == "origin"
        await ws.receive(timeout=10)
        assert ws.close_code == 4403
    # After logging out, the cookie opens nothing.
    await client.post("/console/api/v1/logout")
    async with client.websocket() as ws:
        assert (await ws.receive_json(timeout=10))["error"]["code"] == "login_required"


async def test_an_engineer_sees_only_their_own_tickets(world):
    live, first = world["live"], world["first"]
    engineer = await make_console_user("engineer", "zhanggong", "eng-pass", [first], name="张工")
    client = await console_login(live, "zhanggong", "eng-pass")
    async with client.websocket() as ws:
        await next_frame(ws)
        not_theirs = await report(live, world["vent"], "不是他的")
        theirs = await report(live, world["vent"], "派给他的")
        events = live.app.ctx.events
        await change_state(theirs, "with_agent", events=events, actor=Actor(label="客服"))
        await change_state(theirs, "with_engineer", events=events, actor=Actor(label="客服"), engineer=engineer)
        names = []
        while "ticket.assigned" not in names:
            frame = await next_frame(ws)
            assert frame["data"]["number"] == theirs.number != not_theirs.number
            names.append(frame["event"])
    # A ticket assigned to them in a hospital they do not serve adds that hospital to what they may see.
    elsewhere = await report(live, world["pump"], "外院的")
    await change_state(elsewhere, "with_agent", events=events, actor=Actor(label="客服"))
    await change_state(elsewhere, "with_engineer", events=events, actor=Actor(label="客服"), engineer=engineer)
    status, me = await client.get("/console/api/v1/me")
    assert [h["name"] for h in me["user"]["hospitals"]] == ["市第一人民医院", "市中心医院"]


async def test_a_client_too_far_behind_is_dropped_and_resumes_without_loss(world, monkeypatch):
    import console.ws

    monkeypatch.setattr(console.ws, "MAX_BEHIND", 3)
    live = world["live"]
    events = live.app.ctx.events
    client = await console_login(live, "liqing", "agent-pass")
    async with client.websocket() as ws:
        hello = await next_frame(ws)
        # Ten events in one transaction reach this worker in one read: more than the socket may hold.
        async with live.app.ctx.redis.pipeline(transaction=True) as pipe:
            for n in range(10):
                pipe.xadd(events.stream, {"name": "ticket.opened",
                                          "data": f'{{"number":"B{n}","hospital_id":{world["first"].id}}}'})
            await pipe.execute()
        received = []
        while True:
            message = await ws.receive(timeout=10)
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            received.append(message.json())
        assert ws.close_code == 4429
    got = [f["data"]["number"] for f in received if f["type"] == "event"]
    last = next((f["id"] for f in reversed(received) if f["type"] == "event"), hello["last_id"])
    async with client.websocket(after=last) as ws:
        await next_frame(ws)
        while len(got) < 10:
            got.append((await next_frame(ws))["data"]["number"])
    assert got == [f"B{n}" for n in range(10)]


async def test_a_ticket_opened_on_another_worker_reaches_this_workers_sockets(serve, settings_for, database_url,
                                                                              real_redis_url):
    worker_a = await serve(settings_for(database_url, real_redis_url))
    worker_b = await serve(settings_for(database_url, real_redis_url))
    first = await Hospital.create(name="市第一人民医院")
    vent = await Device.create(hospital=first, system_number="D0001", nameplate_id="SN-778", name="呼吸机",
                               device_type="ventilator")
    await make_console_user("agent", "liqing", "agent-pass", [first])
    client = await console_login(worker_b, "liqing", "agent-pass")  # the session lives in the shared Redis
    async with client.websocket() as ws:
        await next_frame(ws)
        ticket = await report(worker_a, vent)  # published through worker A's event bus
        frame = await next_frame(ws)
        assert frame["data"]["number"] == ticket.number
        assert worker_a.app.ctx.events is not worker_b.app.ctx.events


async def test_pings_keep_coming_and_a_logout_closes_the_open_socket(world, monkeypatch):
    import console.ws

    monkeypatch.setattr(console.ws, "PING_EVERY", 0.2)
    live = world["live"]
    client = await console_login(live, "liqing", "agent-pass")
    async with client.websocket() as ws:
        await next_frame(ws)
        assert (await ws.receive_json(timeout=10)) == {"type": "ping"}
        await client.post("/console/api/v1/logout")
        frames = []
        while (message := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
            frames.append(message.json())
        assert frames[-1]["error"]["code"] == "login_required" and ws.close_code == 4401
