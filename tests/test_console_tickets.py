"""Agents' ticket work in the console over real HTTP (both databases): the scoped queue and ticket view, take,
reply over WeChat (the stand-in), resolve, assign and reassign an engineer, close, reopen, canned replies, saving a
reply to the knowledge base; refusals change nothing."""

from __future__ import annotations

import asyncio

import pytest

from core.models import AuditEntry, Hospital, User
from knowledge.models import KBEntry
from repair import tickets
from repair.models import Device, Notification, Ticket, TicketMessage, TicketTransition
from repair.tickets import NewAttachment, TicketRequest
from tests.conftest import STANDIN_APP_ID, STANDIN_APP_SECRET
from tests.console_support import console_login, make_console_user
from tests.h5_support import png_bytes

PASSWORD = "correct horse battery"
API = "/console/api/v1"


@pytest.fixture
async def live(serve, settings_for, database_url, standin):
    return await serve(settings_for(database_url, wechat_app_id=STANDIN_APP_ID, wechat_app_secret=STANDIN_APP_SECRET,
                                    wechat_api_base=standin.base_url, wechat_template_ticket="TPL-TICKET",
                                    public_base_url="https://repair.example.cn"))


@pytest.fixture
async def world(live):
    ours = await Hospital.create(name="市第一人民医院")
    theirs = await Hospital.create(name="市中心医院")
    nurse = await User.create(name="王护士", role="staff", hospital=ours, openid="oNurse")
    vent = await Device.create(hospital=ours, system_number="D0001", nameplate_id="SN-1", name="呼吸机",
                               model="V60", device_type="ventilator")
    pump = await Device.create(hospital=theirs, system_number="D0900", nameplate_id="SN-9", name="输液泵",
                               device_type="pump")
    agent = await make_console_user("agent", "agent1", PASSWORD, [ours], name="李客服")
    engineer = await make_console_user("engineer", "eng1", PASSWORD, [ours], name="张工")
    engineer.openid = "oEngineerZhang"
    await engineer.save()
    other_engineer = await make_console_user("engineer", "eng2", PASSWORD, [ours], name="赵工")
    other_engineer.openid = "oEngineerZhao"
    await other_engineer.save()
    agent.openid = "oAgentLi"
    await agent.save()
    events = live.app.ctx.events
    from core.media import store_upload

    photo = await store_upload(live.app.ctx.settings, png_bytes(), kind="image", uploaded_by=nurse)
    ticket, _ = await tickets.open_ticket(TicketRequest(
        hospital=ours, device=vent, description="呼吸机报警 E-05 <script>alert(1)</script>", reporter=nurse,
        reporter_openid="oNurse", attachments=[NewAttachment(media=photo, kind="photo")]), events=events)
    foreign, _ = await tickets.open_ticket(TicketRequest(hospital=theirs, device=pump, description="不滴",
                                                         reporter_openid="oSomeone"), events=events)
    return dict(ours=ours, theirs=theirs, nurse=nurse, vent=vent, agent=agent, engineer=engineer,
                other_engineer=other_engineer, ticket=ticket, foreign=foreign, photo=photo)


async def _wait_for(predicate, timeout: float = 5.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate() and loop.time() < end:
        await asyncio.sleep(0.05)
    return predicate()


async def test_an_agent_sees_only_the_hospitals_they_serve(live, world):
    agent = await console_login(live, "agent1", PASSWORD)
    status, body = await agent.get(f"{API}/tickets")
    assert status == 200
    assert [t["number"] for t in body["items"]] == [world["ticket"].number] and body["total"] == 1
    item = body["items"][0]
    assert item["hospital"]["name"] == "市第一人民医院" and item["device"]["system_number"] == "D0001"
    assert item["state_label"] == "新工单"

    status, body = await agent.get(f"{API}/tickets/{world['foreign'].number}")
    assert status == 403 and body["error"]["code"] == "other_hospital"
    status, body = await agent.post(f"{API}/tickets/{world['foreign'].number}/take")
    assert status == 403
    assert (await Ticket.get(id=world["foreign"].id)).state == "new"  # nothing changed

    status, view = await agent.get(f"{API}/tickets/{world['ticket'].number}")
    assert status == 200
    assert view["description"] == "呼吸机报警 E-05 <script>alert(1)</script>"  # stored as text; pages escape it
    assert view["device"]["name"] == "呼吸机" and view["device"]["maintenance_score"] == 100
    assert [a["kind"] for a in view["attachments"]] == ["photo"]
    assert "take" in view["actions"] and "close" not in view["actions"]
    # The ticket's photo is served to the agent; a media id of nothing they may see is refused.
    status, _, data = await agent.raw("GET", view["attachments"][0]["url"])
    assert status == 200 and data == png_bytes()
    status, _, _ = await agent.raw("GET", view["attachments"][0]["thumb_url"])
    assert status == 200
    other = await console_login(live, *await _agent_of(world["theirs"]))
    status, _ = await other.get(view["attachments"][0]["url"])
    assert status == 403


async def _agent_of(hospital) -> tuple[str, str]:
    await make_console_user("agent", "agent2", PASSWORD, [hospital])
    return "agent2", PASSWORD


async def test_take_reply_assign_reassign_and_the_engineer_is_told(live, world, standin):
    agent = await console_login(live, "agent1", PASSWORD)
    number = world["ticket"].number
    status, view = await agent.post(f"{API}/tickets/{number}/take")
    assert status == 200 and view["state"] == "with_agent" and view["agent"]["name"] == "李客服"

    standin.template_messages.clear()
    status, message = await agent.post(f"{API}/tickets/{number}/reply",
                                       {"text": "请先检查电源线<b>是否</b>插好", "via": "custom"})
    assert status == 201 and message["delivery"] == "sent"
    assert await _wait_for(lambda: standin.custom_messages)
    sent = standin.custom_messages[-1]
    assert sent["touser"] == "oNurse" and "请先检查电源线<b>是否</b>插好" in sent["text"]["content"]
    stored = await TicketMessage.get(id=message["id"])
    assert (stored.kind, stored.via, stored.text) == ("reply", "custom", "请先检查电源线<b>是否</b>插好")
    names = [e.name for e in await live.app.ctx.events.read_after("0-0")]
    assert "ticket.message" in names

    status, message = await agent.post(f"{API}/tickets/{number}/reply", {"text": "工程师今天下午到", "via": "template"})
    assert status == 201 and message["delivery"] == "sent"
    template = next(m for m in standin.template_messages if m["data"]["first"]["value"].startswith("客服回复"))
    assert template["touser"] == "oNurse" and template["data"]["remark"]["value"] == "工程师今天下午到"
    assert template["url"] == f"https://repair.example.cn/h5/tickets/{number}"

    standin.template_messages.clear()
    status, view = await agent.post(f"{API}/tickets/{number}/assign",
                                    {"engineer_id": world["engineer"].id, "note": "带电源板"})
    assert status == 200 and view["state"] == "with_engineer" and view["engineer"]["name"] == "张工"
    # The engineer and the reporter are told (the agent acted, so not the agent).
    assert await _wait_for(lambda: {m["touser"] for m in standin.template_messages} == {"oEngineerZhang", "oNurse"})
    to_engineer = next(m for m in standin.template_messages if m["touser"] == "oEngineerZhang")
    assert to_engineer["url"] == f"https://repair.example.cn/h5/engineer/tickets/{number}"

    # Reassigned while with the first engineer: the state stays, the change is in the trail, only the new
    # engineer is told.
    standin.template_messages.clear()
    status, view = await agent.post(f"{API}/tickets/{number}/assign", {"engineer_id": world["other_engineer"].id})
    assert status == 200 and view["state"] == "with_engineer" and view["engineer"]["name"] == "赵工"
    last = view["transitions"][-1]
    assert (last["from"], last["to"], last["action"], last["label"]) == (
        "with_engineer", "with_engineer", "reassign", "改派工程师")
    assert await _wait_for(lambda: any(m["touser"] == "oEngineerZhao" for m in standin.template_messages))
    await asyncio.sleep(0.3)  # let any other message of this transition arrive too
    # Who was told of the reassignment (late messages of the earlier steps may still be arriving): only him.
    reassign = await TicketTransition.filter(ticket__number=number, action="reassign").get()
    told = await Notification.filter(transition=reassign).values_list("openid", flat=True)
    assert told == ["oEngineerZhao"]
    status, body = await agent.post(f"{API}/tickets/{number}/assign", {"engineer_id": world["other_engineer"].id})
    assert status == 409 and body["error"]["code"] == "already_assigned"

    actions = [t.action for t in await TicketTransition.filter(ticket_id=world["ticket"].id).order_by("id")]
    assert actions == ["", "", "reply", "reply", "", "reassign"]
    audited = await AuditEntry.filter(entity="ticket", entity_id=number).values_list("action", flat=True)
    assert audited.count("ticket.reply") == 2 and audited.count("ticket.state_changed") == 3


async def test_a_reply_that_cannot_be_delivered_is_kept_with_the_reason(live, world, standin):
    agent = await console_login(live, "agent1", PASSWORD)
    number = world["ticket"].number
    standin.fail_next("/cgi-bin/message/custom/send", 45015, "response out of time limit")
    status, message = await agent.post(f"{API}/tickets/{number}/reply", {"text": "请回电", "via": "custom"})
    assert status == 201 and message["delivery"] == "failed" and "模板消息" in message["delivery_error"]
    assert (await TicketMessage.get(id=message["id"])).delivery == "failed"
    status, view = await agent.get(f"{API}/tickets/{number}")
    assert [m["text"] for m in view["messages"]] == ["请回电"]


async def test_resolve_close_and_reopen_follow_the_state_machine(live, world, standin):
    agent = await console_login(live, "agent1", PASSWORD)
    number = world["ticket"].number
    status, body = await agent.post(f"{API}/tickets/{number}/resolve", {"note": "x"})
    assert status == 409 and body["error"]["code"] == "illegal_transition"  # take it first
    await agent.post(f"{API}/tickets/{number}/take")
    status, view = await agent.post(f"{API}/tickets/{number}/resolve", {"note": "指导重启后恢复"})
    assert status == 200 and view["state"] == "done"
    assert [t["to"] for t in view["transitions"]][-2:] == ["remote", "done"]
    assert await _wait_for(lambda: any(m["touser"] == "oNurse" and m["data"]["keyword3"]["value"] == "已完成待确认"
                                       for m in standin.template_messages))
    status, view = await agent.post(f"{API}/tickets/{number}/close")
    assert status == 200 and view["state"] == "closed"
    status, body = await agent.post(f"{API}/tickets/{number}/reply", {"text": "还好吗", "via": "custom"})
    assert status == 409 and body["error"]["code"] == "ticket_closed"
    status, view = await agent.post(f"{API}/tickets/{number}/reopen", {"note": "又报警了"})
    assert status == 200 and view["state"] == "reopened" and "assign" in view["actions"]


async def test_engineers_see_and_touch_only_their_own_tickets(live, world):
    agent = await console_login(live, "agent1", PASSWORD)
    number = world["ticket"].number
    await agent.post(f"{API}/tickets/{number}/take")
    await agent.post(f"{API}/tickets/{number}/assign", {"engineer_id": world["engineer"].id})

    mine = await console_login(live, "eng1", PASSWORD)
    status, body = await mine.get(f"{API}/tickets")
    assert [t["number"] for t in body["items"]] == [number]
    status, view = await mine.get(f"{API}/tickets/{number}")
    assert status == 200 and view["actions"] == ["accept", "note", "done"]

    stranger = await console_login(live, "eng2", PASSWORD)
    status, body = await stranger.get(f"{API}/tickets")
    assert body["items"] == []
    status, body = await stranger.get(f"{API}/tickets/{number}")
    assert status == 403 and body["error"]["code"] == "not_your_ticket"
    status, body = await stranger.post(f"{API}/tickets/{number}/close")
    assert status == 403
    status, body = await mine.post(f"{API}/tickets/{number}/close")  # closing is the agent's, not the engineer's
    assert status == 403 and body["error"]["code"] == "role"
    status, body = await stranger.post(f"{API}/tickets/{number}/done", {"note": "修好了"})
    assert status == 403 and body["error"]["code"] == "not_your_ticket"
    assert (await Ticket.get(id=world["ticket"].id)).state == "with_engineer"

    # At a desk the engineer does the same work as on the mobile page.
    status, view = await mine.post(f"{API}/tickets/{number}/accept")
    assert status == 200 and view["engineer_accepted_at"] and view["actions"] == ["note", "done"]
    status, note = await mine.post(f"{API}/tickets/{number}/notes", {"text": "已到现场"})
    assert status == 201 and note["kind"] == "note"
    status, view = await mine.post(f"{API}/tickets/{number}/done", {"note": "更换保险丝"})
    assert status == 200 and view["state"] == "done" and view["transitions"][-1]["note"] == "更换保险丝"


async def test_bad_input_is_refused_with_a_clear_message(live, world):
    agent = await console_login(live, "agent1", PASSWORD)
    number = world["ticket"].number
    status, body = await agent.post(f"{API}/tickets/{number}/reply", {"via": "custom"})
    assert status == 400 and "text" in body["error"]["message"]
    status, body = await agent.post(f"{API}/tickets/{number}/reply", {"text": "x", "via": "sms"})
    assert status == 400 and body["error"]["code"] == "invalid_field"
    await agent.post(f"{API}/tickets/{number}/take")
    status, body = await agent.post(f"{API}/tickets/{number}/assign", {"engineer_id": world["nurse"].id})
    assert status == 422 and body["error"]["code"] == "not_an_engineer"
    status, body = await agent.get(f"{API}/tickets", params={"state": "bogus"})
    assert status == 400 and body["error"]["code"] == "invalid_field"
    status, body = await agent.get(f"{API}/tickets/R0000000000")
    assert status == 404
    assert await TicketMessage.all().count() == 0
    assert (await Ticket.get(id=world["ticket"].id)).engineer_id is None


async def test_filters_and_search(live, world):
    agent = await console_login(live, "agent1", PASSWORD)
    status, body = await agent.get(f"{API}/tickets", params={"q": "D0001"})
    assert [t["number"] for t in body["items"]] == [world["ticket"].number]
    status, body = await agent.get(f"{API}/tickets", params={"state": "with_agent"})
    assert body["items"] == []
    status, body = await agent.get(f"{API}/tickets", params={"mine": "1"})
    assert body["items"] == []
    await agent.post(f"{API}/tickets/{world['ticket'].number}/take")
    status, body = await agent.get(f"{API}/tickets", params={"mine": "1", "state": "open"})
    assert [t["number"] for t in body["items"]] == [world["ticket"].number]
    status, body = await agent.get(f"{API}/engineers", params={"hospital_id": world["ours"].id})
    assert sorted(e["name"] for e in body["items"]) == ["张工", "赵工"]
    status, body = await agent.get(f"{API}/engineers", params={"hospital_id": world["theirs"].id})
    assert status == 403


async def test_canned_replies(live, world):
    agent = await console_login(live, "agent1", PASSWORD)
    status, body = await agent.post(f"{API}/canned-replies", {"title": "重启", "text": "请先关机 10 秒后重启",
                                                              "hospital_id": world["ours"].id})
    assert status == 201
    status, body = await agent.post(f"{API}/canned-replies", {"title": "全院", "text": "x"})
    assert status == 403  # only an administrator adds one for every hospital
    status, body = await agent.post(f"{API}/canned-replies", {"title": "别院", "text": "x",
                                                              "hospital_id": world["theirs"].id})
    assert status == 403
    status, body = await agent.get(f"{API}/canned-replies")
    assert [(c["title"], c["text"]) for c in body["items"]] == [("重启", "请先关机 10 秒后重启")]


async def test_a_reply_saved_to_the_knowledge_base(live, world):
    await KBEntry.create(id="vent-e05", device_type="ventilator", question="呼吸机报警 E-05", answer="检查管路")
    agent = await console_login(live, "agent1", PASSWORD)
    number = world["ticket"].number
    status, body = await agent.post(f"{API}/tickets/{number}/save-to-kb",
                                    {"kind": "variant", "entry_id": "vent-e05", "question": "呼吸机一直嘀嘀响"})
    assert status == 201 and body["status"] == "applied"
    assert "呼吸机一直嘀嘀响" in (await KBEntry.get(id="vent-e05")).variants
    status, body = await agent.post(f"{API}/tickets/{number}/save-to-kb",
                                    {"kind": "entry", "entry_id": "vent-e99", "question": "屏幕不亮",
                                     "answer": "检查电源"})
    assert status == 201 and body["status"] == "pending"
    entry = await KBEntry.get(id="vent-e99")
    assert (entry.device_type, entry.active) == ("ventilator", False)  # from the ticket's device; awaits review
    status, view = await agent.get(f"{API}/tickets/{number}")
    assert [t["action"] for t in view["transitions"]].count("save_to_kb") == 2
