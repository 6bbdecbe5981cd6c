"""A voice message after scanning a label reports a fault: recognition as the description, the recording attached."""

from __future__ import annotations

import pytest
import xmltodict

from core.models import Hospital, MediaFile
from repair.models import Device, Ticket, TicketAttachment
from tests.wechat_messages import event_xml, sign, voice_xml
from tests.conftest import STANDIN_APP_ID, STANDIN_APP_SECRET

TOKEN = "medwxtoken"
APP_ID, APP_SECRET = STANDIN_APP_ID, STANDIN_APP_SECRET
AMR = b"#!AMR\n" + bytes([0x3C]) + b"\x00" * 31  # an AMR header and one frame


@pytest.fixture
async def live(serve, settings_for, database_url, standin):
    live = await serve(settings_for(database_url, wechat_app_id=APP_ID, wechat_app_secret=APP_SECRET,
                                    wechat_api_base=standin.base_url))
    hospital = await Hospital.create(name="市第一人民医院")
    await Device.create(hospital=hospital, system_number="D0001", nameplate_id="SN-1", name="呼吸机",
                        device_type="ventilator")
    return live


async def post(live, xml: str) -> str:
    status, _, body = await live.request("POST", "/wechat/callback", params=sign(TOKEN), data=xml.encode())
    assert status == 200
    return body


def with_media(xml: str, media_id: str) -> str:
    return xml.replace("<![CDATA[media1]]>", f"<![CDATA[{media_id}]]>")


async def test_voice_after_a_scan_opens_a_ticket_with_the_recording(live, standin):
    standin.add_media("voice-77", AMR)
    await post(live, event_xml("SCAN", sender="oNurse", key="d:D0001"))
    xml = with_media(voice_xml("呼吸机一直报警，显示E05", sender="oNurse"), "voice-77")
    reply = xmltodict.parse(await post(live, xml))["xml"]["Content"]
    ticket = await Ticket.get(device__system_number="D0001")
    assert f"工单 {ticket.number}" in reply and "/h5/repair?t=" in reply
    assert (ticket.description, ticket.channel, ticket.reporter_openid) == ("呼吸机一直报警，显示E05", "wechat", "oNurse")
    attachment = await TicketAttachment.get(ticket=ticket)
    media = await MediaFile.get(id=attachment.media_id)
    assert (attachment.kind, media.content_type) == ("voice", "audio/amr")
    assert xmltodict.parse(await post(live, xml))["xml"]["Content"] == reply  # WeChat's retry: same answer
    assert await Ticket.all().count() == 1


async def test_voice_without_a_recent_scan_is_not_a_report(live):
    reply = xmltodict.parse(await post(live, voice_xml("你好", sender="oNobody")))["xml"]["Content"]
    assert "设备服务助手" in reply  # the robot answers; no ticket
    assert await Ticket.all().count() == 0


async def test_a_recording_that_cannot_be_fetched_still_reports_the_words(live, standin):
    await post(live, event_xml("SCAN", sender="oNurse", key="d:D0001"))
    reply = xmltodict.parse(await post(live, with_media(voice_xml("不开机", sender="oNurse"), "gone")))["xml"]
    ticket = await Ticket.get(device__system_number="D0001")
    assert ticket.number in reply["Content"] and ticket.description == "不开机"
    assert await TicketAttachment.filter(ticket=ticket).count() == 0
