"""``/kiosk/v1/consultations`` and the room socket ``/kiosk/v1/rooms/<id>/ws``: the patient at a kiosk asks a doctor
for a consultation (sent to the HIS), follows its answer and joins the room.

Everything here needs a strong session (face + second factor): a consultation reveals who the patient is seeing.
The socket authenticates like every kiosk call (``X-Kiosk-Key`` + ``Authorization: Bearer <session>``) and carries
the room token from ``GET /kiosk/v1/consultations/<id>`` as ``?token=``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi

from care import consultations, kiosks, rooms
from kiosk_bridge.auth import current_kiosk, current_session
from kiosk_bridge.schemas import UNAUTHORIZED, error
from miniprogram_api.schemas import parse

bp = Blueprint("kiosk_consultations", url_prefix="/kiosk/v1")
TAG = "kiosk: consultations"
KEY_AND_SESSION = {"kiosk_key": [], "kiosk_session": []}
WEAK = error(403, "second_factor_required", "请先验证身份（身份证或手机号后四位，或在小程序中确认）",
             "face-only session")


class ConsultationBody(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    practitioner_id: StrictInt = Field(ge=1, description="a recommended doctor (`GET /kiosk/v1/doctors`)")
    slot_id: StrictInt = Field(ge=1, description="one of that doctor's free slots")
    reason: StrictStr = Field("", max_length=500, description="what the patient wants to ask (optional)")


async def _strong_patient(request: Request):
    session = await current_session(request)
    kiosks.require_strong(session)
    return await kiosks.session_patient(session)


def _view_args(request: Request) -> dict:
    settings = request.app.ctx.settings
    return {"secret": settings.secret_key, "side": "patient", "ice_servers": settings.ice_servers}


@bp.post("/consultations")
@openapi.definition(
    summary="Ask for a consultation with a doctor",
    description="Books the slot and sends the request to the HIS as a FHIR Appointment (status proposed). "
                "201 with the consultation (`status: requested`); poll `GET /kiosk/v1/consultations/<id>` until "
                "`accepted` (it then carries `room.token`) or `declined`.",
    tag=TAG, secured=KEY_AND_SESSION,
    response=[error(400, "invalid_field", "字段 slot_id 的值有误", "a field missing or wrong (named)"),
              UNAUTHORIZED, WEAK,
              error(404, "slot_not_found", "该医生没有这个号源", "unknown doctor or slot (`practitioner_not_found`)"),
              error(409, "slot_unavailable", "该时段已不可预约，请选择其他时段",
                    "the slot is booked or past; `consultation_open`: already asked this doctor"),
              error(502, "upstream_error", "医院信息系统返回错误（500）", "the HIS refused: nothing stored")],
)
async def ask(request: Request) -> HTTPResponse:
    patient = await _strong_patient(request)
    body = parse(request, ConsultationBody)
    kiosk = await current_kiosk(request)
    c = await consultations.request(patient, body.practitioner_id, body.slot_id, his=request.app.ctx.his,
                                    events=request.app.ctx.events, source="kiosk", kiosk_id=kiosk.id,
                                    reason=body.reason)
    return json(await consultations.view(c, **_view_args(request)), status=201)


@bp.get("/consultations")
@openapi.definition(summary="The patient's consultations, newest first", tag=TAG, secured=KEY_AND_SESSION,
                    response=[UNAUTHORIZED, WEAK])
async def mine(request: Request) -> HTTPResponse:
    patient = await _strong_patient(request)
    found = await consultations.list_for_patient(patient)
    return json({"consultations": [await consultations.view(c) for c in found]})


@bp.get("/consultations/<consultation_id:int>")
@openapi.definition(summary="One consultation; `room` (token, ICE servers) once accepted", tag=TAG,
                    secured=KEY_AND_SESSION,
                    response=[UNAUTHORIZED, WEAK, error(404, "consultation_not_found", "未找到该问诊",
                                                        "unknown, or another patient's")])
async def one(request: Request, consultation_id: int) -> HTTPResponse:
    patient = await _strong_patient(request)
    c = await consultations.for_patient(patient, consultation_id)
    return json(await consultations.view(c, **_view_args(request)))


@bp.get("/consultations/<consultation_id:int>/messages")
@openapi.definition(summary="The consultation's chat history", tag=TAG, secured=KEY_AND_SESSION)
async def history(request: Request, consultation_id: int) -> HTTPResponse:
    patient = await _strong_patient(request)
    c = await consultations.for_patient(patient, consultation_id)
    return json({"messages": [consultations.message_view(m) for m in await consultations.messages(c)]})


@bp.post("/consultations/<consultation_id:int>/end")
@openapi.definition(summary="End the consultation (the patient leaves the room)", tag=TAG, secured=KEY_AND_SESSION)
async def finish(request: Request, consultation_id: int) -> HTTPResponse:
    patient = await _strong_patient(request)
    c = await consultations.for_patient(patient, consultation_id)
    c = await rooms.end(request.app.ctx.redis, c, "patient", events=request.app.ctx.events)
    return json(await consultations.view(c))


@bp.post("/consultations/<consultation_id:int>/cancel")
@openapi.definition(summary="Withdraw a request not yet started (the slot is freed)", tag=TAG,
                    secured=KEY_AND_SESSION)
async def withdraw(request: Request, consultation_id: int) -> HTTPResponse:
    patient = await _strong_patient(request)
    c = await consultations.for_patient(patient, consultation_id)
    c = await consultations.cancel(c, "patient", events=request.app.ctx.events)
    return json(await consultations.view(c))


@bp.websocket("/rooms/<consultation_id:int>/ws")
async def room(request: Request, ws, consultation_id: int):
    """The patient's side of the room (frames: ``care.rooms``)."""
    async def find():
        patient = await _strong_patient(request)
        return await consultations.for_patient(patient, consultation_id)

    app = request.app
    await rooms.serve_socket(ws, find, "patient", request.args.get("token"), secret=app.ctx.settings.secret_key,
                             redis=app.ctx.redis, events=app.ctx.events, ice_servers=app.ctx.settings.ice_servers)
