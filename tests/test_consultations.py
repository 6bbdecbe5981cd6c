"""Consultations end to end against the HIS stand-in: a patient at a kiosk asks for a doctor, the request reaches the
HIS as a FHIR Appointment (proposed), the HIS accepts (read back by the app's poll) or declines (called back), the
patient and the doctor's console chat in the room both ways with WebRTC signalling relayed, either side ends it.
Every refused input leaves nothing stored."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from care.consultation_models import Consultation, ConsultationMessage
from care.doctor_models import PractitionerSlot
from care.models import Practitioner
from tests.conftest import need_conformance
from tests.consultation_support import CALLBACK_SECRET, ICE, make_site, ws_url


@pytest.fixture
async def site(serve, settings_for, database_url):
    site = await make_site(serve, settings_for, database_url)
    yield site
    await site.his.stop()


@pytest.fixture
async def callback_site(serve, settings_for, database_url):
    """The HIS answers only by calling back (no polling)."""
    site = await make_site(serve, settings_for, database_url, his_poll_interval=0)
    yield site
    await site.his.stop()


async def next_frame(ws, *types: str, timeout: float = 10.0) -> dict:
    """The next frame of one of ``types`` (presence and status frames in between are skipped)."""
    while True:
        frame = json.loads((await ws.receive(timeout=timeout)).data)
        if not types or frame["type"] in types:
            return frame


async def ask(site, session: str, slot, **extra):
    return await site.kiosk_call("POST", "/kiosk/v1/consultations", session,
                                 json={"practitioner_id": site.practitioner.id, "slot_id": slot.id, **extra})


def validate_appointment(resource: dict) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    get_fhir_model_class("Appointment").model_validate(resource)


# -- the whole way ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("redis_kind", ["embedded", "real"])
async def test_kiosk_consultation_from_request_to_chat_both_ways(serve, settings_for, database_url, redis_kind,
                                                                 real_redis_url_or_empty):
    site = await make_site(serve, settings_for, database_url, real_redis_url_or_empty(redis_kind))
    try:
        await _whole_way(site)
    finally:
        await site.his.stop()


@pytest.fixture
def real_redis_url_or_empty(request):
    def pick(kind: str) -> str:
        return request.getfixturevalue("real_redis_url") if kind == "real" else ""

    return pick


async def _whole_way(site):
    patient = await site.patient("王芳", "13800001234")
    session = await site.kiosk_session(patient)
    slot = await site.slot()

    status, body = await ask(site, session, slot, reason="最近头晕，血压偏高")
    assert status == 201, body
    assert body["status"] == "requested" and "room" not in body
    assert body["practitioner"]["name"] == "李医生" and body["slot"]["id"] == slot.id
    assert (await PractitionerSlot.get(id=slot.id)).status == "booked"

    # The HIS received a valid FHIR R4 Appointment asking for this slot, patient and doctor.
    [call] = site.his.calls_to("/fhir/Appointment")
    appointment = call.json
    validate_appointment(appointment)
    assert appointment["status"] == "proposed"
    assert appointment["description"] == "最近头晕，血压偏高"
    actors = [p["actor"] for p in appointment["participant"]]
    assert {"system": "urn:medwx:patient", "value": patient.number} in [a.get("identifier") for a in actors]
    assert "Practitioner/pr-li" in [a.get("reference") for a in actors]
    his_id = body["his_appointment_id"]
    assert his_id in site.his.resources["Appointment"]

    # The hospital accepts; the app's poll reads it back.
    site.his.answer_appointment(his_id, accept=True)
    await site.wait_status(body["id"], "accepted")
    status, view = await site.kiosk_call("GET", f"/kiosk/v1/consultations/{body['id']}", session)
    assert status == 200 and view["status"] == "accepted"
    assert view["room"]["ice_servers"] == ICE
    patient_token = view["room"]["token"]

    doctor = await site.doctor()
    status, listing = await doctor.get("/console/api/v1/doctor/consultations")
    assert status == 200 and [c["id"] for c in listing["consultations"]] == [body["id"]]
    status, doctor_view = await doctor.get(f"/console/api/v1/doctor/consultations/{body['id']}")
    assert status == 200 and doctor_view["patient"]["name"] == "王芳"
    doctor_token = doctor_view["room"]["token"]

    kiosk_headers = {"X-Kiosk-Key": site.kiosk_key, "Authorization": f"Bearer {session}"}
    async with site.live.http.ws_connect(ws_url(site.live, f"/kiosk/v1/rooms/{body['id']}/ws"),
                                         params={"token": patient_token}, headers=kiosk_headers) as kiosk_ws:
        hello = await next_frame(kiosk_ws, "hello")
        assert hello["side"] == "patient" and hello["ice_servers"] == ICE and hello["messages"] == []
        async with site.live.http.ws_connect(ws_url(site.live, f"/console/rooms/{body['id']}/ws"),
                                             params={"token": doctor_token}, headers=doctor.cookies) as doctor_ws:
            assert (await next_frame(doctor_ws, "hello"))["side"] == "doctor"
            assert (await next_frame(kiosk_ws, "status"))["status"] == "active"  # both sides in the room

            await kiosk_ws.send_json({"type": "chat", "body": "医生您好，我最近头晕"})
            got = await next_frame(doctor_ws, "chat")
            assert got["message"]["sender"] == "patient" and got["message"]["body"] == "医生您好，我最近头晕"
            assert (await next_frame(kiosk_ws, "chat"))["message"]["id"] == got["message"]["id"]

            await doctor_ws.send_json({"type": "chat", "body": "请问血压多少？"})
            got = await next_frame(kiosk_ws, "chat")
            assert got["message"]["sender"] == "doctor" and got["message"]["body"] == "请问血压多少？"

            # WebRTC signalling is relayed to the other side, not echoed, not stored.
            offer = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}
            await doctor_ws.send_json({"type": "offer", "data": offer})
            relayed = await next_frame(kiosk_ws, "offer", "chat")
            assert relayed == {"type": "offer", "from_side": "doctor", "data": offer}
            await kiosk_ws.send_json({"type": "answer", "data": {"type": "answer", "sdp": "v=0"}})
            await kiosk_ws.send_json({"type": "ice", "data": {"candidate": "candidate:1 1 udp 1 10.0.0.2 5000 typ host"}})
            # The doctor's next frames are the kiosk's answer and candidate, not an echo of the doctor's own offer.
            assert (await next_frame(doctor_ws, "offer", "answer", "ice"))["type"] == "answer"
            assert (await next_frame(doctor_ws, "offer", "answer", "ice"))["type"] == "ice"

            await kiosk_ws.send_json({"type": "chat", "body": "  "})
            assert (await next_frame(kiosk_ws, "error"))["error"]["code"] == "invalid_field"

            await kiosk_ws.send_json({"type": "end"})
            ended = await next_frame(doctor_ws, "ended")
            assert ended["duration_seconds"] >= 0
            assert (await next_frame(kiosk_ws, "ended"))["type"] == "ended"

    c = await Consultation.get(id=body["id"])
    assert c.status == "ended" and c.ended_by == "patient" and c.started_at and c.ended_at
    assert c.duration_seconds == int((c.ended_at - c.started_at).total_seconds())
    stored = await ConsultationMessage.filter(consultation_id=c.id).order_by("id")
    assert [(m.sender, m.body) for m in stored] == [("patient", "医生您好，我最近头晕"), ("doctor", "请问血压多少？")]
    status, history = await site.kiosk_call("GET", f"/kiosk/v1/consultations/{c.id}/messages", session)
    assert status == 200 and [m["body"] for m in history["messages"]] == ["医生您好，我最近头晕", "请问血压多少？"]
    status, view = await site.kiosk_call("GET", f"/kiosk/v1/consultations/{c.id}", session)
    assert view["status"] == "ended" and "room" not in view
    # The hospital's record of the appointment says it took place.
    stored = await his_appointment_becomes(site, his_id, "fulfilled")
    assert stored["meta"]["versionId"] == "3"  # proposed, booked by the HIS, fulfilled by us: nothing overwritten


async def his_appointment_becomes(site, his_id: str, status: str, timeout: float = 15.0) -> dict:
    """The stand-in's Appointment once a listener of the app has written ``status`` to it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        appointment = site.his.resources["Appointment"][his_id]
        if appointment["status"] == status:
            return appointment
        await asyncio.sleep(0.05)
    raise AssertionError(f"Appointment/{his_id} stayed {site.his.resources['Appointment'][his_id]['status']}")


# -- the HIS's answer by callback -----------------------------------------------------------------------------------------
async def test_decline_called_back_by_the_his_frees_the_slot(callback_site):
    site = callback_site
    patient = await site.patient("赵强", "13900002222")
    session = await site.kiosk_session(patient)
    slot = await site.slot()
    status, body = await ask(site, session, slot)
    assert status == 201
    declined = site.his.answer_appointment(body["his_appointment_id"], accept=False, comment="李医生今日停诊")

    callback = site.live.url("/fhir-callback/appointment")
    status, answer = await site.his.notify(callback, declined, "wrong-secret")
    assert status == 401 and answer["error"]["code"] == "invalid_callback_secret"
    assert (await Consultation.get(id=body["id"])).status == "requested"

    status, answer = await site.his.notify(callback, declined, CALLBACK_SECRET)
    assert status == 200 and answer == {"updated": [body["id"]]}
    status, view = await site.kiosk_call("GET", f"/kiosk/v1/consultations/{body['id']}", session)
    assert view["status"] == "declined" and view["answer_note"] == "李医生今日停诊" and "room" not in view
    assert (await PractitionerSlot.get(id=slot.id)).status == "free"
    # A room of a declined consultation does not open.
    async with site.live.http.ws_connect(ws_url(site.live, f"/kiosk/v1/rooms/{body['id']}/ws"),
                                         params={"token": "x"}, headers={"X-Kiosk-Key": site.kiosk_key,
                                                                         "Authorization": f"Bearer {session}"}) as ws:
        assert (await next_frame(ws, "error"))["error"]["code"] == "link_invalid"


async def test_the_hl7_booked_example_accepts_through_the_callback(callback_site):
    """The HIS answers with its own Appointment (the HL7 R4 example, status booked) naming our request."""
    site = callback_site
    example = json.loads(need_conformance("fhir", "appointment-example.json").read_text(encoding="utf-8"))
    patient = await site.patient("钱丽", "13700003333")
    session = await site.kiosk_session(patient)
    status, body = await ask(site, session, await site.slot())
    assert status == 201
    answer = dict(example, id=body["his_appointment_id"])
    status, result = await site.his.notify(site.live.url("/fhir-callback/appointment"), answer, CALLBACK_SECRET)
    assert status == 200 and result == {"updated": [body["id"]]}
    status, view = await site.kiosk_call("GET", f"/kiosk/v1/consultations/{body['id']}", session)
    assert view["status"] == "accepted" and view["room"]["token"]


async def test_callback_refuses_what_is_not_an_appointment(site):
    url = "/fhir-callback/appointment"
    headers = {"Authorization": f"Bearer {CALLBACK_SECRET}"}
    status, _, body = await site.live.request("POST", url, headers=headers, data=b"{not json")
    assert status == 400 and json.loads(body)["error"]["code"] == "invalid_json"
    status, _, body = await site.live.request("POST", url, headers=headers, json={"resourceType": "Patient"})
    assert status == 400 and json.loads(body)["error"]["code"] == "not_an_appointment"
    # An appointment that is none of ours is acknowledged and changes nothing.
    status, _, body = await site.live.request("POST", url, headers=headers,
                                              json={"resourceType": "Appointment", "id": "other", "status": "booked"})
    assert status == 200 and json.loads(body) == {"updated": []}


# -- bookings refused -----------------------------------------------------------------------------------------------------
async def test_unavailable_slots_and_bad_fields_are_refused_and_nothing_is_stored(site):
    patient = await site.patient("孙悦", "13600004444")
    session = await site.kiosk_session(patient)
    booked = await site.slot(status="booked")
    past = await site.slot(hours=-1)
    other_doctor = await Practitioner.create(name="周医生", department="内分泌科")
    foreign = await site.slot(other_doctor)

    status, body = await ask(site, session, booked)
    assert status == 409 and body["error"]["code"] == "slot_unavailable"
    assert body["error"]["details"]["field"] == "slot_id"
    status, body = await ask(site, session, past)
    assert status == 409 and body["error"]["code"] == "slot_unavailable"
    status, body = await ask(site, session, foreign)
    assert status == 404 and body["error"]["code"] == "slot_not_found"
    status, body = await site.kiosk_call("POST", "/kiosk/v1/consultations", session,
                                         json={"practitioner_id": site.practitioner.id})
    assert status == 400 and "slot_id" in body["error"]["message"]
    status, body = await site.kiosk_call("POST", "/kiosk/v1/consultations", session,
                                         json={"practitioner_id": "李医生", "slot_id": booked.id})
    assert status == 400 and "practitioner_id" in body["error"]["message"]
    status, body = await site.kiosk_call("POST", "/kiosk/v1/consultations", session,
                                         json={"practitioner_id": 999999, "slot_id": booked.id})
    assert status == 404 and body["error"]["code"] == "practitioner_not_found"

    assert await Consultation.all().count() == 0
    assert site.his.calls_to("/fhir/Appointment") == []
    assert (await PractitionerSlot.get(id=past.id)).status == "free"


async def test_a_his_failure_leaves_no_consultation_and_frees_the_slot(site):
    patient = await site.patient("周敏", "13500005555")
    session = await site.kiosk_session(patient)
    slot = await site.slot()
    site.his.fail_next("/fhir/Appointment", 500)
    status, body = await ask(site, session, slot)
    assert status == 502 and body["error"]["code"] == "upstream_error"
    assert await Consultation.all().count() == 0
    assert (await PractitionerSlot.get(id=slot.id)).status == "free"
    status, body = await ask(site, session, slot)  # the HIS is back: the same slot can be booked
    assert status == 201


async def test_two_patients_one_slot_one_wins(site):
    slot = await site.slot()
    first = await site.kiosk_session(await site.patient("甲", "13100000001"))
    second = await site.kiosk_session(await site.patient("乙", "13100000002"))
    answers = await asyncio.gather(ask(site, first, slot), ask(site, second, slot))
    assert sorted(status for status, _ in answers) == [201, 409]
    assert await Consultation.all().count() == 1


async def test_a_face_only_session_cannot_ask(site):
    patient = await site.patient("吴刚", "13400006666")
    weak = await site.kiosk_session(patient, strong=False)
    status, body = await ask(site, weak, await site.slot())
    assert status == 403 and body["error"]["code"] == "second_factor_required"
    assert await Consultation.all().count() == 0


# -- one patient, one doctor, one room ------------------------------------------------------------------------------------
async def test_no_one_reaches_another_patients_consultation_or_room(site):
    alice = await site.patient("郑洁", "13300007777")
    bob = await site.patient("冯伟", "13300008888")
    alice_session, bob_session = await site.kiosk_session(alice), await site.kiosk_session(bob)
    _, a = await ask(site, alice_session, await site.slot())
    _, b = await ask(site, bob_session, await site.slot(hours=3))
    for c in (a, b):
        site.his.answer_appointment(c["his_appointment_id"], accept=True)
        await site.wait_status(c["id"], "accepted")

    status, body = await site.kiosk_call("GET", f"/kiosk/v1/consultations/{a['id']}", bob_session)
    assert status == 404 and body["error"]["code"] == "consultation_not_found"
    status, body = await site.kiosk_call("GET", f"/kiosk/v1/consultations/{a['id']}/messages", bob_session)
    assert status == 404
    _, a_view = await site.kiosk_call("GET", f"/kiosk/v1/consultations/{a['id']}", alice_session)
    _, b_view = await site.kiosk_call("GET", f"/kiosk/v1/consultations/{b['id']}", bob_session)

    headers = {"X-Kiosk-Key": site.kiosk_key, "Authorization": f"Bearer {bob_session}"}
    # Bob's own room with Alice's room token: refused, the token names another consultation.
    async with site.live.http.ws_connect(ws_url(site.live, f"/kiosk/v1/rooms/{b['id']}/ws"),
                                         params={"token": a_view["room"]["token"]}, headers=headers) as ws:
        frame = await ws.receive_json(timeout=10)
        assert frame["type"] == "error" and frame["error"]["code"] == "room_token_mismatch"
        closing = await ws.receive(timeout=10)
        assert closing.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4403, (closing, ws.close_code)
    # Alice's room with Bob's session: as unknown as a missing one.
    async with site.live.http.ws_connect(ws_url(site.live, f"/kiosk/v1/rooms/{a['id']}/ws"),
                                         params={"token": a_view["room"]["token"]}, headers=headers) as ws:
        assert (await ws.receive_json(timeout=10))["error"]["code"] == "consultation_not_found"
        closing = await ws.receive(timeout=10)
        assert closing.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4404, (closing, ws.close_code)
    # The doctor's token does not open the patient's side.
    doctor = await site.doctor()
    _, doctor_view = await doctor.get(f"/console/api/v1/doctor/consultations/{b['id']}")
    async with site.live.http.ws_connect(ws_url(site.live, f"/kiosk/v1/rooms/{b['id']}/ws"),
                                         params={"token": doctor_view["room"]["token"]}, headers=headers) as ws:
        assert (await next_frame(ws))["error"]["code"] == "room_token_mismatch"
    assert b_view["room"]["token"] != doctor_view["room"]["token"]
    assert await ConsultationMessage.all().count() == 0


async def test_a_doctor_sees_only_their_own_consultations(site):
    from care import consultations
    from tests.console_support import console_login, make_console_user

    patient = await site.patient("陈晨", "13200009999")
    _, c = await ask(site, await site.kiosk_session(patient), await site.slot())
    other = await Practitioner.create(name="周医生", department="内分泌科")
    user = await make_console_user("doctor", "dr.zhou", "doctor-password-2")
    await consultations.link_doctor(user, other)
    zhou = await console_login(site.live, "dr.zhou", "doctor-password-2")
    status, listing = await zhou.get("/console/api/v1/doctor/consultations")
    assert status == 200 and listing["consultations"] == []
    status, body = await zhou.get(f"/console/api/v1/doctor/consultations/{c['id']}")
    assert status == 404
    # An agent is no doctor.
    await make_console_user("agent", "agent1", "agent-password-1")
    agent = await console_login(site.live, "agent1", "agent-password-1")
    status, body = await agent.get("/console/api/v1/doctor/consultations")
    assert status == 403 and body["error"]["code"] == "role"


# -- the HIS hears what happened here -------------------------------------------------------------------------------------
async def test_a_cancelled_request_is_cancelled_at_the_his_too(site):
    patient = await site.patient("孙悦", "13600004444")
    session = await site.kiosk_session(patient)
    slot = await site.slot()
    _, body = await ask(site, session, slot)
    status, view = await site.kiosk_call("POST", f"/kiosk/v1/consultations/{body['id']}/cancel", session)
    assert status == 200 and view["status"] == "cancelled"
    assert (await PractitionerSlot.get(id=slot.id)).status == "free"

    appointment = await his_appointment_becomes(site, body["his_appointment_id"], "cancelled")
    validate_appointment(appointment)
    assert appointment["cancelationReason"]["coding"][0]["code"] == "pat"
    assert appointment["cancelationReason"]["text"] == "患者取消问诊"
    by_actor = {(p["actor"].get("identifier") or {}).get("value") or p["actor"].get("reference"): p["status"]
                for p in appointment["participant"]}
    assert by_actor == {patient.number: "declined", "Practitioner/pr-li": "needs-action"}
    [put] = [c for c in site.his.calls if c.method == "PUT"]
    assert put.path == f"/fhir/Appointment/{body['his_appointment_id']}"
    from core.models import AuditEntry

    assert await AuditEntry.filter(action="consultation.his_updated", entity_id=str(body["id"])).count() == 1


async def test_telling_the_his_keeps_what_the_his_decided_and_retries_a_failure(site):
    """The listener on its own: a HIS failure raises (the event bus delivers again) and changes nothing; a decision
    the HIS made meanwhile (declined, fulfilled) is never overwritten; a stale version is refused by the HIS."""
    from care.consultations import tell_his
    from core.errors import UpstreamError
    from core.events import Event
    from integrations.his import HISClient

    patient = await site.patient("何静", "13600005555")
    session = await site.kiosk_session(patient)
    _, body = await ask(site, session, await site.slot())
    his_id = body["his_appointment_id"]
    await Consultation.filter(id=body["id"]).update(status="cancelled")  # as cancel() leaves it
    event = Event("1-0", "consultation.cancelled", {"consultation_id": body["id"]})
    async with HISClient(site.his.base_url) as his:
        site.his.fail_next(f"/fhir/Appointment/{his_id}", 503)
        with pytest.raises(UpstreamError):
            await tell_his(event, his=his)
        assert site.his.resources["Appointment"][his_id]["status"] == "proposed"
        await tell_his(event, his=his)  # the bus's next delivery
        assert site.his.resources["Appointment"][his_id]["status"] == "cancelled"

        # The HIS had already declined: nothing is written.
        _, other = await ask(site, session, await site.slot(hours=4))
        site.his.answer_appointment(other["his_appointment_id"], accept=False, comment="停诊")
        puts = len([c for c in site.his.calls if c.method == "PUT"])
        await tell_his(Event("2-0", "consultation.cancelled", {"consultation_id": other["id"]}), his=his)
        assert len([c for c in site.his.calls if c.method == "PUT"]) == puts
        assert site.his.resources["Appointment"][other["his_appointment_id"]]["comment"] == "停诊"

        # A write based on an older version is refused (412), so a change the HIS made meanwhile survives.
        read = await his.read("Appointment", his_id)
        site.his.answer_appointment(his_id, accept=True)  # the HIS writes in between
        with pytest.raises(UpstreamError) as refused:
            await his.update(dict(read, status="fulfilled"))
        assert refused.value.details["status"] == 412
        assert site.his.resources["Appointment"][his_id]["status"] == "booked"
