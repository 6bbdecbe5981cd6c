"""``/kiosk/v1/doctors``: doctors recommended for the session's patient, and a doctor's free slots.

The recommendation starts from the advice on the patient's latest vitals and uses their visit history (a doctor
who saw them before comes first), so it needs a strong session, as the records do.
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi

from care import advice, doctors, kiosks
from kiosk_bridge.auth import current_session

bp = Blueprint("kiosk_doctors", url_prefix="/kiosk/v1")
TAG = "kiosk"
KEY_AND_SESSION = {"kiosk_key": [], "kiosk_session": []}


async def _strong_patient(request: Request):
    session = await current_session(request)
    kiosks.require_strong(session)
    return await kiosks.session_patient(session)


@bp.get("/doctors")
@openapi.definition(
    summary="Doctors recommended for the patient (needs the second factor)",
    description="From the advice on the patient's latest vitals (last 90 days): the departments it names, then "
                "the doctors there, a doctor who has seen the patient before first (`from_history`), the others by "
                "specialty fit and earliest free slot, each with a one-line `reason`. `doctors` is empty when the "
                "advice calls for no doctor. 403 `second_factor_required` for a face-only session.",
    tag=TAG, secured=KEY_AND_SESSION,
)
async def recommended(request: Request) -> HTTPResponse:
    patient = await _strong_patient(request)
    found = await advice.latest_advice(patient)
    recs = await doctors.recommend(patient, found, tz=request.app.ctx.settings.timezone)
    return json({"advice": found.as_dict(), "doctors": [doctors.recommendation_out(r) for r in recs]})


@bp.get("/doctors/<practitioner_id:int>/slots")
@openapi.definition(
    summary="A doctor's free slots (to book a consultation)",
    description="Free slots starting in the next 60 days, earliest first. 404 `practitioner_not_found`.",
    tag=TAG, secured=KEY_AND_SESSION,
)
async def slots(request: Request, practitioner_id: int) -> HTTPResponse:
    await _strong_patient(request)
    doctor = await doctors.get_doctor(practitioner_id)
    return json({"practitioner_id": doctor.id,
                 "slots": [doctors.slot_out(s) for s in await doctors.free_slots(doctor)]})
