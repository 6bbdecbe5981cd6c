"""``/mp/v1/patient``: binding the WeChat identity to a patient (with the code a kiosk shows), who the user acts for,
and the patient's vitals (history and chart series).

Sign-in is the mini program's usual ``POST /mp/v1/auth/login`` (code2session → JWT). After a binding the answer's
token carries the ``patient`` role; access is still checked against the stored bindings on every call.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.definitions import Component, Parameter, RequestBody, Response

from care import kiosks, patient_binding, vitals
from care.vital_kinds import KINDS
from core.auth import issue_session
from core.errors import BadRequest
from miniprogram_api.schemas import ErrorOut, parse
from miniprogram_api.session import current_user

bp = Blueprint("mp_patient_vitals", url_prefix="/mp/v1/patient")
TAG = "mini program: patient"
SECURED = {"bearer": []}
HISTORY_LIMIT = 200
DEFAULT_DAYS = 90


class BindCodeBody(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    code: str = Field(min_length=8, max_length=32, description="the 8-digit code the kiosk shows, or its QR text")


def _example(example, model: type[BaseModel] | None = None) -> dict:
    body = {"example": example}
    if model is not None:
        body["schema"] = Component(model)
    return {"application/json": body}


def _error(status: int, code: str, message: str, description: str) -> Response:
    return Response(_example({"error": {"code": code, "message": message}}, ErrorOut), status=status,
                    description=description)


def _patient_out(patient) -> dict:
    return {"number": patient.number, "name": patient.name, "sex": patient.sex,
            "birth_date": patient.birth_date.isoformat() if patient.birth_date else None}


_PATIENT_EXAMPLE = {"number": "P00000042", "name": "张三", "sex": "male", "birth_date": "1960-05-01"}


@bp.post("/bind")
@openapi.definition(
    summary="Bind the signed-in WeChat user to a patient with the kiosk's code",
    description="The patient asks the kiosk for a binding code (`POST /kiosk/v1/sessions/current/binding-code`, "
                "after the second factor) and scans or types it here. One use per code; ten wrong codes in five "
                "minutes → 429. Answers a new token with the `patient` role.",
    tag=TAG, secured=SECURED,
    body=RequestBody(_example({"code": "48291377"}, BindCodeBody), required=True, description="the code"),
    response=[Response(_example({"token": "eyJ…", "patient": _PATIENT_EXAMPLE}), status=200, description="bound"),
              _error(400, "invalid_field", "请输入终端上显示的 8 位绑定码", "not 8 digits"),
              _error(401, "login_required", "请先登录", "not signed in"),
              _error(404, "invalid_binding_code", "绑定码无效或已过期，请以终端上显示的为准",
                     "unknown, used or expired code"),
              _error(429, "too_many_attempts", "尝试次数过多，请稍后再试", "too many wrong codes")],
)
async def bind(request: Request) -> HTTPResponse:
    user = await current_user(request)
    body = parse(request, BindCodeBody)
    patient = await patient_binding.bind_with_code(request.app.ctx.redis, user, body.code)
    roles = [user.role, "patient"] if user.role != "patient" else ["patient"]
    token = issue_session(request.app.ctx.settings.secret_key, user_id=user.id, openid=user.openid or "",
                          roles=roles, hospital_id=user.hospital_id)
    return json({"token": token, "patient": _patient_out(patient)})


@bp.get("/me")
@openapi.definition(
    summary="The patients the signed-in user may act for",
    description="Themself and relatives bound with a kiosk's code; empty until the first binding.",
    tag=TAG, secured=SECURED,
    response=[Response(_example({"patients": [_PATIENT_EXAMPLE]}), status=200, description="bound patients"),
              _error(401, "login_required", "请先登录", "not signed in")],
)
async def me(request: Request) -> HTTPResponse:
    user = await current_user(request)
    return json({"patients": [_patient_out(p) for p in await kiosks.bound_patients(user)]})


def _since(request: Request, tz: str) -> datetime:
    text = request.args.get("since")
    if not text:
        return datetime.now(timezone.utc) - timedelta(days=DEFAULT_DAYS)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") + ("T00:00:00" if len(text) == 10 else ""))
    except ValueError:
        raise BadRequest("参数 since 须为日期（如 2026-01-01）或 ISO 8601 时间", code="invalid_parameter",
                         details={"field": "since"}) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(tz))).astimezone(timezone.utc)


def _reading(row) -> dict:
    return {"id": row.id, "kind": row.kind, "label": KINDS[row.kind].label, "values": row.values,
            "unit": KINDS[row.kind].unit_display, "measured_at": row.measured_at.isoformat(), "source": row.source,
            "attachment": bool(row.attachment_id)}


def _series(kind: str, rows) -> dict:
    """Chart-ready: the times, and one list per value (``systolic``/``diastolic``, or ``value``)."""
    names = [p.name for p in KINDS[kind].parts] or sorted({k for r in rows for k, v in (r.values or {}).items()
                                                           if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return {"kind": kind, "label": KINDS[kind].label, "unit": KINDS[kind].unit_display,
            "times": [r.measured_at.isoformat() for r in rows],
            "values": {name: [(r.values or {}).get(name) for r in rows] for name in names}}


_VITALS_EXAMPLE = {
    "patient": _PATIENT_EXAMPLE, "since": "2026-01-01T00:00:00+00:00",
    "history": [{"id": 17, "kind": "blood_pressure", "label": "血压", "values": {"systolic": 128, "diastolic": 82},
                 "unit": "mmHg", "measured_at": "2026-03-02T01:30:00+00:00", "source": "kiosk:1",
                 "attachment": False}],
    "series": [{"kind": "blood_pressure", "label": "血压", "unit": "mmHg", "times": ["2026-03-02T01:30:00+00:00"],
                "values": {"systolic": [128], "diastolic": [82]}}],
}


@bp.get("/vitals")
@openapi.definition(
    summary="My vitals: history (newest first) and series for charts (oldest first)",
    description="`kind` limits to one kind (blood_pressure, heart_rate, body_temperature, body_weight, body_height, "
                "blood_glucose, spo2, respiratory_rate, ecg, stethoscope); `since` (date or date-time, default 90 "
                "days ago); `patient` (our number) when the user is bound to several patients. History is capped "
                "at 200 readings. The full record, as FHIR: `GET /fhir/Observation?patient=` with the same token.",
    tag=TAG, secured=SECURED,
    parameter=[Parameter("kind", str, "query"), Parameter("since", str, "query"), Parameter("patient", str, "query")],
    response=[Response(_example(_VITALS_EXAMPLE), status=200, description="history and series"),
              _error(400, "invalid_parameter", "不支持的测量类型", "unknown kind, malformed since, or several "
                     "bound patients and no `patient`"),
              _error(401, "login_required", "请先登录", "not signed in"),
              _error(403, "patient_not_bound", "您尚未绑定该就诊人", "not bound to that (or any) patient")],
)
async def my_vitals(request: Request) -> HTTPResponse:
    user = await current_user(request)
    patient = await patient_binding.acting_patient(user, request.args.get("patient"))
    kind = request.args.get("kind")
    if kind is not None and kind not in KINDS:
        raise BadRequest(f"不支持的测量类型“{kind}”", code="invalid_parameter", details={"field": "kind"})
    since = _since(request, request.app.ctx.settings.timezone)
    rows, _ = await vitals.search(patient, kinds=[kind] if kind else None, since=since, limit=HISTORY_LIMIT)
    by_kind: dict[str, list] = {}
    for row in reversed(rows):  # oldest first for the charts
        by_kind.setdefault(row.kind, []).append(row)
    return json({"patient": _patient_out(patient), "since": since.isoformat(),
                 "history": [_reading(r) for r in rows],
                 "series": [_series(k, by_kind[k]) for k in KINDS if k in by_kind]})
