"""The doctor's console page in a real browser (Debian's Chromium through Playwright): the doctor logs in, opens the
accepted consultation's room and chats with a kiosk client (a WebSocket from the test) both ways, then ends it.
The page's Content-Security-Policy must let it run without a single refused script, style or connection."""

from __future__ import annotations

import asyncio

import pytest

from care.consultation_models import Consultation, ConsultationMessage
from tests.console_support import signed_in_page, unexpected_problems
from tests.consultation_support import CALLBACK_SECRET, make_site, ws_url
from tests.test_consultations import next_frame


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # one database kind is enough for the browser
async def test_doctor_page_chats_with_a_kiosk(serve, settings_for, database_url, browser, tmp_path):
    site = await make_site(serve, settings_for, database_url, his_poll_interval=0)
    try:
        patient = await site.patient("王芳", "13800001234")
        session = await site.kiosk_session(patient)
        _, asked = await site.kiosk_call("POST", "/kiosk/v1/consultations", session,
                                         json={"practitioner_id": site.practitioner.id,
                                               "slot_id": (await site.slot()).id})
        accepted = site.his.answer_appointment(asked["his_appointment_id"], accept=True)
        status, _ = await site.his.notify(site.live.url("/fhir-callback/appointment"), accepted, CALLBACK_SECRET)
        assert status == 200
        _, view = await site.kiosk_call("GET", f"/kiosk/v1/consultations/{asked['id']}", session)

        context, page = await signed_in_page(browser, site.live.url("/console/doctor"), "dr.li", "doctor-password-1")
        row = page.locator(f"[data-consultation='{asked['id']}']")
        await row.get_by_text("王芳").wait_for()
        await row.get_by_role("button", name="进入诊室").click()
        await page.get_by_text("已进入诊室").wait_for()

        headers = {"X-Kiosk-Key": site.kiosk_key, "Authorization": f"Bearer {session}"}
        async with site.live.http.ws_connect(ws_url(site.live, f"/kiosk/v1/rooms/{asked['id']}/ws"),
                                             params={"token": view["room"]["token"]}, headers=headers) as kiosk:
            await next_frame(kiosk, "hello")
            await page.get_by_text("患者在线").wait_for()
            await kiosk.send_json({"type": "chat", "body": "医生您好，我头晕 <b>两天</b>"})
            await page.locator("#room-messages").get_by_text("医生您好，我头晕 <b>两天</b>").wait_for()

            await page.fill("#chat-input", "请先测一下血压")
            await page.press("#chat-input", "Enter")
            got = await next_frame(kiosk, "chat")
            while got["message"]["sender"] != "doctor":
                got = await next_frame(kiosk, "chat")
            assert got["message"]["body"] == "请先测一下血压"
            await page.screenshot(path=str(tmp_path / "doctor-room.png"))

            await page.click("#end-room")
            assert (await next_frame(kiosk, "ended"))["type"] == "ended"
            await page.get_by_text("已结束").first.wait_for()

        c = await Consultation.get(id=asked["id"])
        assert c.status == "ended" and c.ended_by == "doctor"
        assert [m.sender for m in await ConsultationMessage.filter(consultation_id=c.id).order_by("id")] == [
            "patient", "doctor"]
        await asyncio.sleep(0)  # let the page's last requests settle into the problem list
        assert unexpected_problems(page.problems) == []
        await context.close()
    finally:
        await site.his.stop()
