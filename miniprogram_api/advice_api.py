"""``/mp/v1/patient/advice`` and ``/mp/v1/patient/doctors``: the patient's latest health advice and the doctors
recommended from it, in the mini program.

Which patient: the user's bound patient; a user bound to several names one with ``?patient=`` (our number). A
patient the user is not bound to is refused (403).
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi

from care import advice, doctors
from care.patient_binding import acting_patient
from miniprogram_api.session import current_user

bp = Blueprint("mp_advice", url_prefix="/mp/v1/patient")
TAG = "mini program: advice and doctors"
SECURED = {"bearer": []}


@bp.get("/advice")
@openapi.definition(
    summary="The health advice on the patient's latest vitals",
    description="Each kind's latest reading of the last 90 days, graded normal / watch / see_doctor / urgent, "
                "in plain words with the guideline each rule cites; `departments` to see when a doctor is advised.",
    tag=TAG, secured=SECURED,
)
async def latest(request: Request) -> HTTPResponse:
    patient = await acting_patient(await current_user(request), request.args.get("patient"))
    found = await advice.latest_advice(patient)
    return json({"patient": {"number": patient.number, "name": patient.name}, **found.as_dict()})


@bp.get("/doctors")
@openapi.definition(
    summary="Doctors recommended from the latest advice",
    description="A doctor who has seen the patient before in a recommended department first (`from_history`), "
                "then by specialty fit and earliest free slot, with a one-line `reason` and `next_slot`.",
    tag=TAG, secured=SECURED,
)
async def recommended(request: Request) -> HTTPResponse:
    patient = await acting_patient(await current_user(request), request.args.get("patient"))
    found = await advice.latest_advice(patient)
    recs = await doctors.recommend(patient, found, tz=request.app.ctx.settings.timezone)
    return json({"advice": {"grade": found.grade, "grade_name": found.grade_name, "summary": found.summary,
                            "departments": found.departments},
                 "doctors": [doctors.recommendation_out(r) for r in recs]})


@bp.get("/doctors/<practitioner_id:int>/slots")
@openapi.definition(summary="A doctor's free slots in the next 60 days", tag=TAG, secured=SECURED)
async def slots(request: Request, practitioner_id: int) -> HTTPResponse:
    await acting_patient(await current_user(request), request.args.get("patient"))
    doctor = await doctors.get_doctor(practitioner_id)
    return json({"practitioner_id": doctor.id,
                 "slots": [doctors.slot_out(s) for s in await doctors.free_slots(doctor)]})
