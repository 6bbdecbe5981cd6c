"""The patients' mini program and consultations: book a doctor for a bound patient, follow the HIS's answer, chat in
the room with the doctor's console (the JWT as ``?jwt=``), end it from the mini program; another patient's data and a
patient the user is not bound to are refused."""

from __future__ import annotations

import aiohttp
import pytest

from care.consultation_models import Consultation
from tests.consultation_support import make_site, ws_url
from tests.test_consultations import next_frame


@pytest.fixture
async def site(serve, settings_for, database_url):
    site = await make_site(serve, settings_for, database_url)
    yield site
    await site.his.stop()


async def test_mini_program_books_chats_and_ends(site):
    mother = await site.patient("林秀英", "13800011111")
    jwt = await site.mp_user("oDaughter", mother)
    slot = await site.slot()

    status, body = await site.mp("POST", "/mp/v1/patient/consultations", jwt,
                                 json={"practitioner_id": site.practitioner.id, "slot_id": slot.id,
                                       "reason": "母亲血压高，想复诊"})
    assert status == 201, body
    assert body["status"] == "requested" and body["source"] == "mp" and body["patient"]["name"] == "林秀英"
    status, listing = await site.mp("GET", "/mp/v1/patient/consultations", jwt)
    assert status == 200 and [c["id"] for c in listing["consultations"]] == [body["id"]]

    site.his.answer_appointment(body["his_appointment_id"], accept=True)
    await site.wait_status(body["id"], "accepted")
    status, view = await site.mp("GET", f"/mp/v1/patient/consultations/{body['id']}", jwt)
    assert status == 200 and view["status"] == "accepted"

    doctor = await site.doctor()
    _, doctor_view = await doctor.get(f"/console/api/v1/doctor/consultations/{body['id']}")
    async with site.live.http.ws_connect(ws_url(site.live, f"/mp/v1/patient/rooms/{body['id']}/ws"),
                                         params={"token": view["room"]["token"], "jwt": jwt}) as mp_ws, \
            site.live.http.ws_connect(ws_url(site.live, f"/console/rooms/{body['id']}/ws"),
                                      params={"token": doctor_view["room"]["token"]},
                                      headers=doctor.cookies) as doctor_ws:
        assert (await next_frame(mp_ws, "hello"))["side"] == "patient"
        await next_frame(doctor_ws, "hello")
        await doctor_ws.send_json({"type": "chat", "body": "您好，最近一次量血压是多少？"})
        assert (await next_frame(mp_ws, "chat"))["message"]["body"] == "您好，最近一次量血压是多少？"
        assert (await next_frame(doctor_ws, "chat"))["message"]["sender"] == "doctor"  # the stored echo, with its id
        await mp_ws.send_json({"type": "chat", "body": "早上量的 150/95"})
        assert (await next_frame(doctor_ws, "chat"))["message"]["body"] == "早上量的 150/95"

        status, ended = await site.mp("POST", f"/mp/v1/patient/consultations/{body['id']}/end", jwt)
        assert status == 200 and ended["status"] == "ended" and ended["ended_by"] == "patient"
        assert (await next_frame(doctor_ws, "ended"))["type"] == "ended"

    status, history = await site.mp("GET", f"/mp/v1/patient/consultations/{body['id']}/messages", jwt)
    assert status == 200
    assert [(m["sender"], m["body"]) for m in history["messages"]] == [
        ("doctor", "您好，最近一次量血压是多少？"), ("patient", "早上量的 150/95")]


async def test_mini_program_reaches_only_bound_patients(site):
    mine = await site.patient("何平", "13800022222")
    other = await site.patient("罗兰", "13800033333")
    jwt = await site.mp_user("oHe", mine)
    unbound = await site.mp_user("oNobody")
    other_jwt = await site.mp_user("oLuo", other)
    slot = await site.slot()

    status, body = await site.mp("POST", "/mp/v1/patient/consultations", jwt,
                                 json={"practitioner_id": site.practitioner.id, "slot_id": slot.id,
                                       "patient": other.number})
    assert status == 403 and body["error"]["code"] == "patient_not_bound"
    status, body = await site.mp("POST", "/mp/v1/patient/consultations", unbound,
                                 json={"practitioner_id": site.practitioner.id, "slot_id": slot.id})
    assert status == 403 and body["error"]["code"] == "patient_not_bound"
    assert await Consultation.all().count() == 0

    status, theirs = await site.mp("POST", "/mp/v1/patient/consultations", other_jwt,
                                   json={"practitioner_id": site.practitioner.id, "slot_id": slot.id})
    assert status == 201
    status, body = await site.mp("GET", f"/mp/v1/patient/consultations/{theirs['id']}", jwt)
    assert status == 404 and body["error"]["code"] == "consultation_not_found"
    status, body = await site.mp("GET", f"/mp/v1/patient/consultations/{theirs['id']}/messages", jwt)
    assert status == 404
    status, body = await site.mp("POST", f"/mp/v1/patient/consultations/{theirs['id']}/cancel", jwt)
    assert status == 404
    # The owner withdraws it: the slot is free for the next patient.
    status, body = await site.mp("POST", f"/mp/v1/patient/consultations/{theirs['id']}/cancel", other_jwt)
    assert status == 200 and body["status"] == "cancelled"
    status, body = await site.mp("POST", "/mp/v1/patient/consultations", jwt,
                                 json={"practitioner_id": site.practitioner.id, "slot_id": slot.id})
    assert status == 201
    # Without a login the room says so.
    async with site.live.http.ws_connect(ws_url(site.live, f"/mp/v1/patient/rooms/{body['id']}/ws")) as ws:
        assert (await ws.receive_json(timeout=10))["error"]["code"] == "login_required"
        closing = await ws.receive(timeout=10)
        assert closing.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4401
