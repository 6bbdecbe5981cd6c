"""Each way a staff member reports a fault in the mini program, to a stored ticket with photo and voice."""

from __future__ import annotations

import io
import json
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest
from PIL import Image

from core import people
from core.models import Hospital, MediaFile, User
from repair import labels
from repair.models import Device, DeviceGroup, Ticket, TicketAttachment
from tests.h5_support import png_bytes, wav_bytes


@pytest.fixture
async def site(serve, settings_for, database_url):
    live = await serve(settings_for(database_url, wechat_app_id=""))  # labels carry the signed link
    first = await Hospital.create(name="市第一人民医院", latitude=30.2741, longitude=120.1551)
    other = await Hospital.create(name="市中心医院")
    nurse = await User.create(name="王护士", role="staff", hospital=first, openid="oNurse")
    owner = await User.create(name="赵主任", role="staff", hospital=first, openid="oOwner")
    vent = await Device.create(hospital=first, system_number="D0001", nameplate_id="SN-778", name="呼吸机",
                               model="V60", device_type="ventilator", owner=owner)
    await Device.create(hospital=other, system_number="D0900", nameplate_id="SN-900", name="离心机",
                        device_type="centrifuge")
    settings = live.app.ctx.settings

    def bearer(user: User) -> dict:
        return {"Authorization": f"Bearer {people.session_token(settings, user)}"}

    return dict(live=live, settings=settings, first=first, nurse=nurse, owner=owner, vent=vent, bearer=bearer)


def report_form(**fields) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, str(value))
    form.add_field("photos", png_bytes(), filename="fault.png", content_type="image/png")
    form.add_field("voices", wav_bytes(), filename="voice.wav", content_type="audio/wav")
    return form


async def _stored_with_photo_and_voice(number: str) -> Ticket:
    ticket = await Ticket.get(number=number)
    kinds = sorted(a.kind for a in await TicketAttachment.filter(ticket=ticket))
    assert kinds == ["photo", "voice"]
    return ticket


async def test_report_after_scanning_a_label(site):
    live, nurse = site["live"], site["nurse"]
    token = parse_qs(urlparse(labels.repair_link(site["settings"], "d:D0001")).query)["t"][0]
    status, _, body = await live.request("GET", "/mp/v1/scan", params={"t": token}, headers=site["bearer"](nurse))
    card = json.loads(body)
    assert status == 200 and (card["system_number"], card["hospital"]) == ("D0001", "市第一人民医院")
    status, _, body = await live.request("POST", "/mp/v1/tickets", headers=site["bearer"](nurse),
                                         data=report_form(t=token, description="呼吸机报警 E-05"))
    assert status == 201
    ticket = await _stored_with_photo_and_voice(json.loads(body)["number"])
    assert (ticket.channel, ticket.reporter_id, ticket.state) == ("mp", nurse.id, "new")


async def test_report_by_nameplate_id_when_the_label_is_gone(site):
    live, nurse = site["live"], site["nurse"]
    status, _, body = await live.request("GET", "/mp/v1/devices/lookup", params={"q": "ｓｎ－778"},
                                         headers=site["bearer"](nurse))
    assert status == 200 and [d["system_number"] for d in json.loads(body)["devices"]] == ["D0001"]
    status, _, body = await live.request("POST", "/mp/v1/tickets", headers=site["bearer"](nurse),
                                         data=report_form(system_number="D0001", description="不通电"))
    assert status == 201
    await _stored_with_photo_and_voice(json.loads(body)["number"])
    # Another hospital's device is refused, not shown.
    status, _, body = await live.request("GET", "/mp/v1/devices/lookup", params={"q": "SN-900"},
                                         headers=site["bearer"](nurse))
    assert status == 403 and json.loads(body)["error"]["code"] == "device_of_other_hospital"
    status, _, _ = await live.request("POST", "/mp/v1/tickets", headers=site["bearer"](nurse),
                                      data=report_form(system_number="D0900", description="x"))
    assert status == 403


async def test_report_by_hospital_search_on_site(site):
    live, nurse = site["live"], site["nurse"]
    status, _, body = await live.request("GET", "/mp/v1/hospitals", params={"q": "第一人民"},
                                         headers=site["bearer"](nurse))
    hospital_id = json.loads(body)["hospitals"][0]["id"]
    status, _, body = await live.request("GET", f"/mp/v1/hospitals/{hospital_id}/devices",
                                         params={"lat": "30.2745", "lng": "120.1556"}, headers=site["bearer"](nurse))
    assert status == 200
    chosen = json.loads(body)["devices"][0]
    status, _, far = await live.request("GET", f"/mp/v1/hospitals/{hospital_id}/devices",
                                        params={"lat": "39.9", "lng": "116.4"}, headers=site["bearer"](nurse))
    assert status == 403 and "不在该医院附近" in json.loads(far)["error"]["message"]
    status, _, body = await live.request("POST", "/mp/v1/tickets", headers=site["bearer"](nurse),
                                         data=report_form(system_number=chosen["system_number"], description="异响"))
    assert status == 201
    await _stored_with_photo_and_voice(json.loads(body)["number"])


async def test_report_from_my_devices_after_a_claim(site):
    live, nurse, owner, vent = site["live"], site["nurse"], site["owner"], site["vent"]
    status, _, body = await live.request("POST", "/mp/v1/my/claims", json={"device_id": vent.id},
                                         headers=site["bearer"](nurse))
    claim = json.loads(body)
    assert (status, claim["state"]) == (201, "pending")
    status, _, body = await live.request("GET", "/mp/v1/my/devices", headers=site["bearer"](nurse))
    assert json.loads(body)["items"] == []
    status, _, body = await live.request("GET", "/mp/v1/my/claims/pending", headers=site["bearer"](owner))
    assert [c["user"] for c in json.loads(body)["claims"]] == ["王护士"]
    status, _, _ = await live.request("POST", f"/mp/v1/claims/{claim['id']}/decision", json={"approve": True},
                                      headers=site["bearer"](owner))
    assert status == 200
    status, _, body = await live.request("GET", "/mp/v1/my/devices", headers=site["bearer"](nurse))
    item = json.loads(body)["items"][0]
    assert item["system_number"] == "D0001" and item["tickets"] == []
    status, _, body = await live.request("POST", "/mp/v1/tickets", headers=site["bearer"](nurse),
                                         data=report_form(t=parse_qs(urlparse(item["repair_url"]).query)["t"][0],
                                                          description="屏幕不亮"))
    number = json.loads(body)["number"]
    await _stored_with_photo_and_voice(number)
    status, _, body = await live.request("GET", "/mp/v1/my/devices", headers=site["bearer"](nurse))
    assert [t["number"] for t in json.loads(body)["items"][0]["tickets"]] == [number]


async def test_a_group_report_names_members(site):
    live, nurse = site["live"], site["nurse"]
    group = await DeviceGroup.create(hospital=site["first"], name="生化流水线")
    a = await Device.create(hospital=site["first"], system_number="D0101", nameplate_id="A1", name="分析仪A",
                            device_type="analyser", group=group, group_position=1)
    form = report_form(group_id=group.id, description="卡样", member_ids=a.id)
    status, _, body = await live.request("POST", "/mp/v1/tickets", headers=site["bearer"](nurse), data=form)
    assert status == 201
    ticket = await Ticket.get(number=json.loads(body)["number"])
    assert ticket.group_id == group.id
    assert [d.system_number for d in await ticket.member_devices.all()] == ["D0101"]


async def test_bad_reports_are_refused_and_store_nothing(site):
    live, nurse = site["live"], site["nurse"]
    bad = aiohttp.FormData()
    bad.add_field("system_number", "D0001")
    bad.add_field("description", "报警")
    bad.add_field("photos", b"just text, not a picture", filename="fake.jpg", content_type="image/jpeg")
    status, _, body = await live.request("POST", "/mp/v1/tickets", headers=site["bearer"](nurse), data=bad)
    assert status == 422 and json.loads(body)["error"]["code"] == "not_image"
    forged = report_form(t="forged-token", description="x")
    status, _, body = await live.request("POST", "/mp/v1/tickets", headers=site["bearer"](nurse), data=forged)
    assert status == 403 and json.loads(body)["error"]["code"] == "link_invalid"
    status, _, _ = await live.request("POST", "/mp/v1/tickets", data=report_form(system_number="D0001",
                                                                                  description="x"))
    assert status == 401
    assert await Ticket.all().count() == 0 and await MediaFile.all().count() == 0


async def test_a_repeated_submit_returns_the_same_ticket(site):
    live, nurse = site["live"], site["nurse"]
    answers = []
    for _ in range(2):
        status, _, body = await live.request("POST", "/mp/v1/tickets", headers=site["bearer"](nurse),
                                             data=report_form(system_number="D0001", description="报警",
                                                              client_request_id="cr-42"))
        answers.append((status, json.loads(body)["number"]))
    assert [s for s, _ in answers] == [201, 200] and answers[0][1] == answers[1][1]
    assert await Ticket.all().count() == 1 and await TicketAttachment.all().count() == 2


async def test_the_reporter_escalates_confirms_and_sees_history(site):
    from repair import tickets
    from repair.tickets import Actor

    live, nurse = site["live"], site["nurse"]
    status, _, body = await live.request("POST", "/mp/v1/tickets", headers=site["bearer"](nurse),
                                         data=report_form(system_number="D0001", description="报警"))
    number = json.loads(body)["number"]
    ticket = await Ticket.get(number=number)
    await tickets.change_state(ticket, "answered_by_robot", events=live.app.ctx.events, actor=Actor(label="机器人"))
    status, _, body = await live.request("POST", f"/mp/v1/tickets/{number}/escalate", headers=site["bearer"](nurse))
    assert (status, json.loads(body)["state"]) == (200, "with_agent")
    status, _, body = await live.request("POST", f"/mp/v1/tickets/{number}/confirm", headers=site["bearer"](nurse))
    assert status == 409 and "不能改为" in json.loads(body)["error"]["message"]
    status, _, _ = await live.request("GET", f"/mp/v1/tickets/{number}", headers=site["bearer"](site["owner"]))
    assert status == 403
    status, _, body = await live.request("GET", f"/mp/v1/tickets/{number}", headers=site["bearer"](nurse))
    detail = json.loads(body)
    assert [h["to"] for h in detail["history"]] == ["new", "answered_by_robot", "with_agent"]
    assert len(detail["photos"]) == 1 and len(detail["voices"]) == 1
    status, _, body = await live.request("GET", "/mp/v1/tickets", headers=site["bearer"](nurse))
    assert [t["number"] for t in json.loads(body)["tickets"]] == [number]


async def test_labels_print_for_admins_and_the_hospitals_engineers(site):
    import pypdf

    live = site["live"]
    engineer = await User.create(name="张工", role="engineer", hospital=site["first"], openid="oEng")
    async with live.http.get(live.url("/mp/v1/labels/d:D0001/label.png"), headers=site["bearer"](engineer)) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        with Image.open(io.BytesIO(await resp.read())) as label:
            assert label.width > 200
    async with live.http.get(live.url(f"/mp/v1/hospitals/{site['first'].id}/labels.pdf"),
                             headers=site["bearer"](engineer)) as resp:
        assert resp.status == 200 and resp.content_type == "application/pdf"
        pdf = pypdf.PdfReader(io.BytesIO(await resp.read()))
    assert "D0001" in pdf.pages[0].extract_text()
    status, _, body = await live.request("GET", "/mp/v1/labels/d:D0001/label.png", headers=site["bearer"](site["nurse"]))
    assert status == 403 and json.loads(body)["error"]["code"] == "label_printer_required"
    status, _, _ = await live.request("GET", "/mp/v1/labels/d:NOPE/label.png", headers=site["bearer"](engineer))
    assert status == 404


async def test_malformed_claim_and_decision_bodies_are_400(site):
    live, nurse = site["live"], site["nurse"]
    for body in ({"device_id": "1"}, {"device_id": True}, "not json"):
        kwargs = {"data": body} if isinstance(body, str) else {"json": body}
        status, _, out = await live.request("POST", "/mp/v1/my/claims", headers=site["bearer"](nurse), **kwargs)
        assert status == 400 and json.loads(out)["error"]["message"], body
    status, _, _ = await live.request("POST", "/mp/v1/claims/1/decision", json={"approve": "yes"},
                                      headers=site["bearer"](site["owner"]))
    assert status == 400
