"""Each ticket transition tells the people it concerns by template message, through the WeChat stand-in."""

from __future__ import annotations

import asyncio

import pytest

from core.models import Hospital, User
from repair import tickets
from repair.messaging import TicketNotifier
from repair.models import Device, Notification
from repair.tickets import Actor, TicketRequest
from tests.conftest import STANDIN_APP_ID, STANDIN_APP_SECRET

APP_ID, APP_SECRET = STANDIN_APP_ID, STANDIN_APP_SECRET


@pytest.fixture
async def live(serve, settings_for, database_url, standin):
    return await serve(settings_for(database_url, wechat_app_id=APP_ID, wechat_app_secret=APP_SECRET,
                                    wechat_api_base=standin.base_url, wechat_template_ticket="TPL-TICKET",
                                    public_base_url="https://repair.example.cn"))


async def _people():
    hospital = await Hospital.create(name="市第一人民医院")
    people = dict(
        nurse=await User.create(name="王护士", role="staff", hospital=hospital, openid="oNurse"),
        owner=await User.create(name="赵主任", role="staff", hospital=hospital, openid="oOwner"),
        agent=await User.create(name="李客服", role="agent", openid="oAgent"),
        engineer=await User.create(name="张工", role="engineer", hospital=hospital, openid="oEngineer"),
    )
    device = await Device.create(hospital=hospital, system_number="D0001", nameplate_id="SN-1", name="呼吸机",
                                 device_type="ventilator", owner=people["owner"])
    return hospital, device, people


async def _messages_for(standin, n: int, timeout: float = 5.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while len(standin.template_messages) < n and loop.time() < end:
        await asyncio.sleep(0.05)
    return [(m["touser"], m["data"]["keyword3"]["value"]) for m in standin.template_messages]


async def test_each_transition_reaches_the_people_it_concerns(live, standin):
    events = live.app.ctx.events
    hospital, device, p = await _people()
    ticket, _ = await tickets.open_ticket(TicketRequest(hospital=hospital, device=device, description="报警",
                                                        reporter=p["nurse"]), events=events)
    assert await _messages_for(standin, 2) == [("oNurse", "新工单"), ("oOwner", "新工单")]
    first = standin.template_messages[0]
    assert first["template_id"] == "TPL-TICKET"
    assert first["url"] == f"https://repair.example.cn/h5/tickets/{ticket.number}"
    assert first["data"]["keyword1"]["value"] == ticket.number
    assert first["data"]["keyword2"]["value"] == "呼吸机（D0001）"

    standin.template_messages.clear()
    await tickets.change_state(ticket, "with_agent", events=events, actor=Actor(label="机器人"), agent=p["agent"])
    assert sorted(await _messages_for(standin, 2)) == [("oAgent", "客服处理中"), ("oNurse", "客服处理中")]

    standin.template_messages.clear()
    await tickets.change_state(ticket, "with_engineer", events=events, actor=Actor(user=p["agent"]),
                               engineer=p["engineer"])
    got = sorted(await _messages_for(standin, 3))
    assert got == [("oEngineer", "工程师处理中"), ("oNurse", "工程师处理中"), ("oOwner", "工程师处理中")]

    standin.template_messages.clear()
    await tickets.change_state(ticket, "done", events=events, actor=Actor(user=p["engineer"]), note="已更换电池")
    got = sorted(await _messages_for(standin, 2))
    assert got == [("oAgent", "已完成待确认"), ("oNurse", "已完成待确认")]
    remark = next(m for m in standin.template_messages if m["touser"] == "oNurse")["data"]["remark"]["value"]
    assert remark == "已更换电池"
    assert await Notification.filter(ticket=ticket, status="sent").count() == 9


@pytest.fixture
async def just_opened(db, standin, redis_client, tmp_path):
    """(notifier, ticket, its ``ticket.opened`` event): the listener called as the event bus calls it."""
    from core.events import EventBus
    from core.settings import Settings
    from integrations.wechat import WeChatClient

    settings = Settings(var_dir=tmp_path, secret_key="t", wechat_app_id=APP_ID, wechat_app_secret=APP_SECRET,
                        wechat_api_base=standin.base_url, wechat_template_ticket="TPL-TICKET")
    events = EventBus(redis_client)
    hospital, device, p = await _people()
    async with WeChatClient(settings, redis_client) as wechat:
        ticket, _ = await tickets.open_ticket(TicketRequest(hospital=hospital, device=device, description="报警",
                                                            reporter=p["nurse"]), events=events)
        yield TicketNotifier(settings, wechat), ticket, (await events.read_after("0-0"))[0]


async def test_a_failed_send_is_kept_and_retried_without_losing_the_transition(just_opened, standin):
    notifier, ticket, opened = just_opened
    standin.fail_next("/cgi-bin/message/template/send", -1, "system error")  # WeChat busy: try again
    standin.fail_next("/cgi-bin/message/template/send", 43004, "require subscribe")  # unfollowed: final
    with pytest.raises(Exception):
        await notifier.on_ticket(opened)
    assert (await tickets.get_ticket(ticket.number)).state == "new"  # the ticket is untouched
    rows = {n.openid: (n.status, n.attempts) for n in await Notification.filter(ticket=ticket)}
    assert rows == {"oNurse": ("pending", 1), "oOwner": ("failed", 1)}
    await notifier.on_ticket(opened)  # the bus's redelivery
    rows = {n.openid: (n.status, n.attempts) for n in await Notification.filter(ticket=ticket)}
    assert rows == {"oNurse": ("sent", 2), "oOwner": ("failed", 1)}
    assert [m["touser"] for m in standin.template_messages] == ["oNurse"]
    await notifier.on_ticket(opened)  # a late duplicate delivery sends nothing twice
    assert [m["touser"] for m in standin.template_messages] == ["oNurse"]


async def test_one_event_delivered_twice_at_once_sends_each_message_once(just_opened, standin):
    """The bus hands an event whose first delivery still runs to another worker: each person is told once."""
    notifier, ticket, opened = just_opened
    outcomes = await asyncio.gather(*(notifier.on_ticket(opened) for _ in range(3)), return_exceptions=True)
    # A delivery that found a send taken asks the bus to come back; by then it is settled.
    assert all(o is None or isinstance(o, Exception) for o in outcomes)
    await notifier.on_ticket(opened)
    assert sorted(m["touser"] for m in standin.template_messages) == ["oNurse", "oOwner"]
    rows = {n.openid: (n.status, n.attempts, n.sending_until) for n in await Notification.filter(ticket=ticket)}
    assert rows == {"oNurse": ("sent", 1, None), "oOwner": ("sent", 1, None)}
