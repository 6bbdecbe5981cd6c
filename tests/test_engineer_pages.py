"""The engineer's job pages inside WeChat, over real HTTP (both databases): sign-in, only their own tickets,
accept, a note with a photo, mark done (the reporter and the agent are told through the WeChat stand-in), user text
escaped."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from core.auth import issue_session
from core.models import Hospital, User
from repair import tickets
from repair.models import Device, Ticket, TicketAttachment, TicketMessage, TicketTransition
from repair.tickets import Actor, TicketRequest
from tests.conftest import STANDIN_APP_ID, STANDIN_APP_SECRET
from tests.h5_support import png_bytes

SECRET = "test-secret"


@pytest.fixture
async def live(serve, settings_for, database_url, standin):
    return await serve(settings_for(database_url, wechat_app_id=STANDIN_APP_ID, wechat_app_secret=STANDIN_APP_SECRET,
                                    wechat_api_base=standin.base_url, wechat_template_ticket="TPL-TICKET"))


@pytest.fixture
async def job(live):
    hospital = await Hospital.create(name="市第一人民医院")
    nurse = await User.create(name="王护士", role="staff", hospital=hospital, openid="oNurse")
    agent = await User.create(name="李客服", role="agent", openid="oAgent")
    engineer = await User.create(name="张工", role="engineer", hospital=hospital, openid="oEngineer")
    stranger = await User.create(name="赵工", role="engineer", hospital=hospital, openid="oStranger")
    device = await Device.create(hospital=hospital, system_number="D0001", nameplate_id="SN-1", name="呼吸机",
                                 device_type="ventilator")
    events = live.app.ctx.events
    ticket, _ = await tickets.open_ticket(TicketRequest(
        hospital=hospital, device=device, description="报警 <script>alert('x')</script>", reporter=nurse),
        events=events)
    await tickets.change_state(ticket, "with_agent", events=events, actor=Actor(user=agent), agent=agent)
    await tickets.change_state(ticket, "with_engineer", events=events, actor=Actor(user=agent), engineer=engineer)
    return dict(ticket=ticket, nurse=nurse, agent=agent, engineer=engineer, stranger=stranger)


def as_user(user: User) -> dict:
    token = issue_session(SECRET, user_id=user.id, openid=user.openid or "", roles=[user.role])
    return {"Cookie": f"medwx_h5={token}"}


def page(number: str = "") -> str:
    return f"/h5/engineer/tickets/{number}" if number else "/h5/engineer/tickets"


async def _template_to(standin, openid: str, state_label: str, timeout: float = 5.0) -> dict | None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        for m in standin.template_messages:
            if m["touser"] == openid and m["data"]["keyword3"]["value"] == state_label:
                return m
        await asyncio.sleep(0.05)
    return None


async def test_without_a_session_the_page_signs_in_through_wechat(live, job):
    number = job["ticket"].number
    status, headers, _ = await live.request("GET", page(number), allow_redirects=False)
    assert status == 302
    target = urlsplit(headers["Location"])
    assert target.path == "/h5/auth/start" and parse_qs(target.query)["next"] == [page(number)]


async def test_the_engineer_sees_their_job_with_user_text_escaped(live, job, standin):
    number = job["ticket"].number
    invitation = await _template_to(standin, "oEngineer", "工程师处理中")
    assert invitation and invitation["url"].endswith(page(number))  # the assignment links to this page
    status, _, body = await live.request("GET", page(), headers=as_user(job["engineer"]))
    assert status == 200 and number in body and "待接单" in body
    status, headers, body = await live.request("GET", page(number), headers=as_user(job["engineer"]))
    assert status == 200 and "script-src 'self'" in headers["Content-Security-Policy"]
    assert "报警 &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in body and "<script>alert" not in body
    assert 'id="accept-btn"' in body and 'id="done-btn"' in body


async def test_another_engineer_is_refused_and_nothing_changes(live, job):
    number = job["ticket"].number
    status, _, body = await live.request("GET", page(number), headers=as_user(job["stranger"]))
    assert status == 403 and "该工单未指派给您" in body
    status, _, body = await live.request("GET", page(), headers=as_user(job["stranger"]))
    assert number not in body
    for action in ("accept", "done"):
        status, _, body = await live.request("POST", page(number) + f"/{action}", headers=as_user(job["stranger"]))
        assert status == 403 and json.loads(body)["error"]["code"] == "not_your_ticket"
    status, _, body = await live.request("POST", page(number) + "/done", headers=as_user(job["nurse"]))
    assert status == 403
    ticket = await Ticket.get(id=job["ticket"].id)
    assert (ticket.state, ticket.engineer_accepted_at) == ("with_engineer", None)
    assert await TicketMessage.all().count() == 0


async def test_accept_note_with_photo_and_done_tell_the_reporter_and_the_agent(live, job, standin):
    number, me = job["ticket"].number, as_user(job["engineer"])
    status, _, body = await live.request("POST", page(number) + "/accept", headers=me)
    assert status == 200 and json.loads(body)["state"] == "with_engineer"
    assert (await Ticket.get(id=job["ticket"].id)).engineer_accepted_at is not None

    form = aiohttp.FormData()
    form.add_field("text", "电源板烧毁 <img src=x onerror=alert(1)>，已更换")
    form.add_field("photos", png_bytes(colour="#aa3300"), filename="board.png", content_type="image/png")
    status, _, body = await live.request("POST", page(number) + "/notes", data=form, headers=me)
    assert status == 201
    note = await TicketMessage.get(id=json.loads(body)["id"])
    assert note.text == "电源板烧毁 <img src=x onerror=alert(1)>，已更换"
    photo = await TicketAttachment.get(message_id=note.id)
    async with live.http.get(live.url(f"/h5/media/{photo.media_id}/thumb"), headers=me) as resp:
        assert resp.status == 200 and resp.content_type == "image/jpeg"
    status, _, body = await live.request("GET", page(number), headers=me)
    assert "电源板烧毁 &lt;img src=x onerror=alert(1)&gt;，已更换" in body and f"/h5/media/{photo.media_id}" in body

    # A refused photo stores nothing.
    bad = aiohttp.FormData()
    bad.add_field("text", "再拍一张")
    bad.add_field("photos", b"not an image", filename="x.png", content_type="image/png")
    status, _, body = await live.request("POST", page(number) + "/notes", data=bad, headers=me)
    assert status == 422 and await TicketMessage.filter(kind="note").count() == 1

    standin.template_messages.clear()
    status, _, body = await live.request("POST", page(number) + "/done", data={"note": "试机正常"}, headers=me)
    assert status == 200 and json.loads(body)["state"] == "done"
    assert await _template_to(standin, "oNurse", "已完成待确认")
    assert await _template_to(standin, "oAgent", "已完成待确认")
    trail = [(t.action, t.to_state) for t in await TicketTransition.filter(ticket_id=job["ticket"].id).order_by("id")]
    assert trail[-4:] == [("accept", "with_engineer"), ("note", "with_engineer"), ("note", "with_engineer"),
                          ("", "done")]
    status, _, body = await live.request("POST", page(number) + "/done", headers=me)
    assert status == 409  # done once
