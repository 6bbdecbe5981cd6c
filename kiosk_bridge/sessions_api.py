"""``/kiosk/v1``: face login or enrolment, the patient's session at the kiosk, its second factor, what it may read.

Every call carries the kiosk's ``X-Kiosk-Key``; a patient's calls also ``Authorization: Bearer <session>`` from
``POST /kiosk/v1/sessions``. The session is bound to the kiosk it was opened at.
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.builders import SpecificationBuilder
from sanic_ext.extensions.openapi.definitions import RequestBody, Response

from care import kiosks, patients
from kiosk_bridge.auth import current_kiosk, current_session
from kiosk_bridge.schemas import (PATIENT_EXAMPLE, UNAUTHORIZED, CodeOut, DigitsBody, LoginOut, MeOut, RecordsOut,
                                  SessionOut, error, json_body, ok)
from miniprogram_api.schemas import parse

bp = Blueprint("kiosk_sessions", url_prefix="/kiosk/v1")
TAG = "kiosk"
KEY_ONLY = {"kiosk_key": []}
KEY_AND_SESSION = {"kiosk_key": [], "kiosk_session": []}


@bp.before_server_start
async def document_security(app):
    spec = SpecificationBuilder()
    spec.add_security_scheme("kiosk_key", "apiKey", location="header", name="X-Kiosk-Key",
                             description="the kiosk's API key, printed once by `python -m kiosk_bridge add-kiosk NAME`")
    spec.add_security_scheme("kiosk_session", "http", bearer_format="opaque",
                             description="the `session` from POST /kiosk/v1/sessions (same kiosk only)")


def _brief(patient) -> dict:
    return {"number": patient.number, "name": patient.name}


_LOGIN_EXAMPLE = {"session": "q8Jm2x…", "patient": PATIENT_EXAMPLE, "enrolled": False, "second_factor": False,
                  "expires_in": 900}


@bp.post("/sessions")
@openapi.definition(
    summary="Log in (or enrol) a patient by face",
    description="multipart/form-data with one image file `photo` (JPEG, PNG or WebP, up to 10 MB by default; "
                "the largest face is used). A known face opens a session for that patient (200). An unknown face "
                "becomes a new patient: a patient number is allocated and the face saved (201, `enrolled: true`). "
                "Nothing is stored when the photo is refused. The session is face-only (`second_factor: false`) "
                "until the patient gives the last four digits of their ID card or phone, or confirms in their mini "
                "program.",
    tag=TAG, secured=KEY_ONLY,
    body=RequestBody({"multipart/form-data": {"schema": {
        "type": "object", "required": ["photo"],
        "properties": {"photo": {"type": "string", "format": "binary", "description": "the camera's photo"}}}}},
        required=True, description="the photo"),
    response=[ok(200, LoginOut, _LOGIN_EXAMPLE, "a known patient"),
              ok(201, LoginOut, dict(_LOGIN_EXAMPLE, patient={"number": "P00000043", "name": ""}, enrolled=True),
                 "an unknown face: a new patient"),
              error(400, "photo_required", "请上传照片（字段 photo）", "no `photo` file"),
              UNAUTHORIZED,
              error(413, "image_too_large", "照片太大（上限 10 MB）", "the photo is larger than FACE_MAX_BYTES"),
              error(422, "no_face", "未检测到人脸", "no face (`no_face`), several faces of similar size "
                    "(`ambiguous_faces`), not an image or a broken one (`bad_image`), HEIC "
                    "(`unsupported_image`)"),
              error(503, "busy", "服务繁忙，请稍后再试", "all face workers busy: retry after `Retry-After` seconds")],
)
async def log_in(request: Request) -> HTTPResponse:
    kiosk = await current_kiosk(request)
    upload = request.files.get("photo") if request.files else None
    settings = request.app.ctx.settings
    login = await kiosks.face_login(request.app.ctx.redis, kiosk, upload.body if upload else b"",
                                    ttl=settings.kiosk_session_ttl)
    return json({"session": login.token, "patient": _brief(login.patient), "enrolled": login.enrolled,
                 "second_factor": login.session.strong, "expires_in": login.session.expires_in},
                status=201 if login.enrolled else 200)


@bp.get("/sessions/current")
@openapi.definition(
    summary="The current session",
    description="Whose session it is, whether the second factor was given (poll it after showing a confirmation "
                "code) and the seconds left.",
    tag=TAG, secured=KEY_AND_SESSION,
    response=[ok(200, SessionOut, {"patient": PATIENT_EXAMPLE, "second_factor": True, "expires_in": 640},
                 "the session"), UNAUTHORIZED],
)
async def session_state(request: Request) -> HTTPResponse:
    session = await current_session(request)
    patient = await kiosks.session_patient(session)
    return json({"patient": _brief(patient), "second_factor": session.strong, "expires_in": session.expires_in})


@bp.delete("/sessions/current")
@openapi.definition(
    summary="End the session (the patient leaves)",
    description="The token is refused from now on (`session_ended`), also if replayed.",
    tag=TAG, secured=KEY_AND_SESSION,
    response=[Response(status=204, description="ended"), UNAUTHORIZED],
)
async def end(request: Request) -> HTTPResponse:
    await kiosks.end_session(request.app.ctx.redis, await current_session(request))
    return empty()


@bp.post("/sessions/current/second-factor")
@openapi.definition(
    summary="Give the second factor: last four digits of the ID card or phone",
    description="Right digits make the session strong. Each wrong try says how many are left; the fifth ends the "
                "session (the patient logs in again).",
    tag=TAG, secured=KEY_AND_SESSION,
    body=json_body(DigitsBody, {"digits": "1234"}, "the digits"),
    response=[ok(200, SessionOut, {"patient": PATIENT_EXAMPLE, "second_factor": True, "expires_in": 700},
                 "the session is strong"),
              error(400, "invalid_field", "请输入身份证或手机号的后四位", "not four digits (or X)"),
              UNAUTHORIZED,
              error(403, "wrong_digits", "验证未通过，还可尝试 4 次",
                    "wrong digits (`details.attempts_left`); `too_many_attempts`: the session has ended")],
)
async def second_factor(request: Request) -> HTTPResponse:
    session = await current_session(request)
    body = parse(request, DigitsBody)
    session = await kiosks.give_digits(request.app.ctx.redis, session, body.digits)
    patient = await kiosks.session_patient(session)
    return json({"patient": _brief(patient), "second_factor": session.strong, "expires_in": session.expires_in})


@bp.post("/sessions/current/confirmation-code")
@openapi.definition(
    summary="A one-time code for confirming in the patient's mini program",
    description="Show the code; the patient (or a relative bound to them) enters it in the mini program "
                "(`POST /mp/v1/patient/confirm-kiosk`), which makes this session strong. Poll "
                "`GET /kiosk/v1/sessions/current` for `second_factor`. A new code replaces the previous one.",
    tag=TAG, secured=KEY_AND_SESSION,
    response=[ok(201, CodeOut, {"code": "482913", "expires_in": 300}, "the code"), UNAUTHORIZED],
)
async def confirmation_code(request: Request) -> HTTPResponse:
    session = await current_session(request)
    code, expires_in = await kiosks.confirmation_code(request.app.ctx.redis, session)
    return json({"code": code, "expires_in": expires_in}, status=201)


@bp.get("/me")
@openapi.definition(
    summary="The logged-in patient (a face is enough)",
    tag=TAG, secured=KEY_AND_SESSION,
    response=[ok(200, MeOut, dict(PATIENT_EXAMPLE, second_factor=False), "number, name"), UNAUTHORIZED],
)
async def me(request: Request) -> HTTPResponse:
    session = await current_session(request)
    patient = await kiosks.session_patient(session)
    return json({**_brief(patient), "second_factor": session.strong})


_RECORDS_EXAMPLE = {
    "patient": PATIENT_EXAMPLE,
    "visits": [{"hospital": "市第一人民医院", "department": "心内科", "doctor": "李医生", "diagnosis": "高血压",
                "medication": "氨氯地平 5mg qd", "kind": "outpatient", "status": "finished",
                "start": "2026-03-02T09:30:00+00:00", "end": "2026-03-02T10:00:00+00:00"}],
    "records": [{"kind": "vitals", "title": "血压", "data": {"systolic": 138, "diastolic": 88}, "source": "kiosk",
                 "recorded_at": "2026-03-02T09:10:00+00:00"}],
}


@bp.get("/me/records")
@openapi.definition(
    summary="The patient's visits and records (needs the second factor)",
    description="A face alone can be a photo of someone: this answers 403 `second_factor_required` until the "
                "session is strong.",
    tag=TAG, secured=KEY_AND_SESSION,
    response=[ok(200, RecordsOut, _RECORDS_EXAMPLE, "visits and records, newest first"), UNAUTHORIZED,
              error(403, "second_factor_required", "请先验证身份（身份证或手机号后四位，或在小程序中确认）",
                    "face-only session")],
)
async def my_records(request: Request) -> HTTPResponse:
    session = await current_session(request)
    kiosks.require_strong(session)
    patient = await kiosks.session_patient(session)
    return json({"patient": _brief(patient), **await patients.history(patient)})
