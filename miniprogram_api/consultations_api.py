"""``/mp/v1/patient/consultations`` and the room socket ``/mp/v1/patient/rooms/<id>/ws``: a patient (or a relative
bound to them) books a consultation from the mini program, follows it and joins the room.

Which patient: the user's bound patient; a user bound to several names one with ``patient`` (our number) in the
query or body. A patient the user is not bound to is refused (403), another patient's consultation is unknown (404).
The socket takes the JWT as ``Authorization: Bearer`` (``wx.connectSocket`` sends headers) or ``?jwt=``, and the
room token as ``?token=``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi

from care import consultations, rooms
from care.patient_binding import acting_patient
from core.auth import bearer_session
from core.errors import Unauthorized
from miniprogram_api.schemas import parse
from miniprogram_api.session import current_user

bp = Blueprint("mp_consultations", url_prefix="/mp/v1/patient")
TAG = "mini program: consultations"
SECURED = {"bearer": []}


class ConsultationBody(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    practitioner_id: StrictInt = Field(ge=1)
    slot_id: StrictInt = Field(ge=1)
    reason: StrictStr = Field("", max_length=500)
    patient: StrictStr | None = Field(None, max_length=16, description="our patient number, when bound to several")


def _view_args(request: Request) -> dict:
    settings = request.app.ctx.settings
    return {"secret": settings.secret_key, "side": "patient", "ice_servers": settings.ice_servers}


@bp.post("/consultations")
@openapi.definition(summary="Book a consultation (sent to the HIS)", tag=TAG, secured=SECURED,
                    description="`{practitioner_id, slot_id, reason?, patient?}` → 201 `status: requested`. "
                                "409 `slot_unavailable` for a booked or past slot; nothing is stored when the HIS "
                                "refuses (502).")
async def book(request: Request) -> HTTPResponse:
    user = await current_user(request)
    body = parse(request, ConsultationBody)
    patient = await acting_patient(user, body.patient)
    c = await consultations.request(patient, body.practitioner_id, body.slot_id, his=request.app.ctx.his,
                                    events=request.app.ctx.events, source="mp", user_id=user.id,
                                    reason=body.reason)
    return json(await consultations.view(c, **_view_args(request)), status=201)


@bp.get("/consultations")
@openapi.definition(summary="The patient's consultations, newest first", tag=TAG, secured=SECURED)
async def mine(request: Request) -> HTTPResponse:
    patient = await acting_patient(await current_user(request), request.args.get("patient"))
    return json({"consultations": [await consultations.view(c)
                                   for c in await consultations.list_for_patient(patient)]})


@bp.get("/consultations/<consultation_id:int>")
@openapi.definition(summary="One consultation; `room` (token, ICE servers) once accepted", tag=TAG,
                    secured=SECURED)
async def one(request: Request, consultation_id: int) -> HTTPResponse:
    patient = await acting_patient(await current_user(request), request.args.get("patient"))
    c = await consultations.for_patient(patient, consultation_id)
    return json(await consultations.view(c, **_view_args(request)))


@bp.get("/consultations/<consultation_id:int>/messages")
@openapi.definition(summary="The consultation's chat history", tag=TAG, secured=SECURED)
async def history(request: Request, consultation_id: int) -> HTTPResponse:
    patient = await acting_patient(await current_user(request), request.args.get("patient"))
    c = await consultations.for_patient(patient, consultation_id)
    return json({"messages": [consultations.message_view(m) for m in await consultations.messages(c)]})


@bp.post("/consultations/<consultation_id:int>/end")
@openapi.definition(summary="End the consultation", tag=TAG, secured=SECURED)
async def finish(request: Request, consultation_id: int) -> HTTPResponse:
    patient = await acting_patient(await current_user(request), request.args.get("patient"))
    c = await consultations.for_patient(patient, consultation_id)
    c = await rooms.end(request.app.ctx.redis, c, "patient", events=request.app.ctx.events)
    return json(await consultations.view(c))


@bp.post("/consultations/<consultation_id:int>/cancel")
@openapi.definition(summary="Withdraw a request not yet started (the slot is freed)", tag=TAG, secured=SECURED)
async def withdraw(request: Request, consultation_id: int) -> HTTPResponse:
    patient = await acting_patient(await current_user(request), request.args.get("patient"))
    c = await consultations.for_patient(patient, consultation_id)
    c = await consultations.cancel(c, "patient", events=request.app.ctx.events)
    return json(await consultations.view(c))


@bp.websocket("/rooms/<consultation_id:int>/ws")
async def room(request: Request, ws, consultation_id: int):
    """The patient's side of the room from the mini program (frames: ``care.rooms``)."""
    app = request.app

    async def find():
        if not request.headers.get("authorization"):
            jwt = request.args.get("jwt")
            if not jwt:
                raise Unauthorized("请先登录", code="login_required")
            request.ctx.session = bearer_session(app.ctx.settings.secret_key, f"Bearer {jwt}")
        patient = await acting_patient(await current_user(request), request.args.get("patient"))
        return await consultations.for_patient(patient, consultation_id)

    await rooms.serve_socket(ws, find, "patient", request.args.get("token"), secret=app.ctx.settings.secret_key,
                             redis=app.ctx.redis, events=app.ctx.events, ice_servers=app.ctx.settings.ice_servers)
