"""``/mp/v1/patient``: what a patient (or a relative bound to them) does in the mini program.

For now: confirming a kiosk session with the code the kiosk shows (the second factor of a face login).
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi

from pydantic import BaseModel, ConfigDict, Field
from sanic_ext.extensions.openapi.definitions import Component, RequestBody, Response

from care import kiosks
from miniprogram_api.schemas import ErrorOut, parse
from miniprogram_api.session import current_user

bp = Blueprint("mp_patient", url_prefix="/mp/v1/patient")
TAG = "mini program: patient"


class ConfirmBody(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    code: str = Field(min_length=6, max_length=6, description="the 6-digit code the kiosk shows")


class PatientOut(BaseModel):
    number: str
    name: str


class ConfirmedOut(BaseModel):
    confirmed: bool
    patient: PatientOut


def _example(model: type[BaseModel], example) -> dict:
    return {"application/json": {"schema": Component(model), "example": example}}


def _error(status: int, code: str, message: str, description: str) -> Response:
    return Response(_example(ErrorOut, {"error": {"code": code, "message": message}}), status=status,
                    description=description)


@bp.post("/confirm-kiosk")
@openapi.definition(
    summary="Confirm a kiosk session with the code it shows",
    description="The signed-in user must be bound to the session's patient. The session at the kiosk becomes "
                "strong (history and records may be read there). A code works once; ten wrong codes in five "
                "minutes are refused with 429.",
    tag=TAG, secured={"bearer": []},
    body=RequestBody(_example(ConfirmBody, {"code": "482913"}), required=True, description="the code"),
    response=[Response(_example(ConfirmedOut, {"confirmed": True, "patient": {"number": "P00000042", "name": "张三"}}),
                       status=200, description="confirmed"),
              _error(400, "invalid_field", "请输入终端上显示的 6 位确认码", "not six digits"),
              _error(401, "login_required", "请先登录", "not signed in"),
              _error(403, "patient_not_bound", "您尚未绑定该就诊人，无法确认", "the user is not bound to that patient"),
              _error(404, "invalid_confirmation_code", "确认码无效或已过期，请以终端上显示的为准",
                    "unknown, used or expired code, or the kiosk session has ended"),
              _error(429, "too_many_attempts", "尝试次数过多，请稍后再试", "too many wrong codes")],
)
async def confirm_kiosk(request: Request) -> HTTPResponse:
    user = await current_user(request)
    body = parse(request, ConfirmBody)
    patient = await kiosks.confirm_from_mini_program(request.app.ctx.redis, user, body.code)
    return json({"confirmed": True, "patient": {"number": patient.number, "name": patient.name}})
