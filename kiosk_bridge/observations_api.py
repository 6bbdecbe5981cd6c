"""``POST /kiosk/v1/observations``: the kiosk sends what it measured for the session's patient; the answer carries the
stored readings (FHIR, in the stored units) and the health advice on them.
``POST /kiosk/v1/sessions/current/binding-code``: a one-time code (and its QR text) that binds the patient's mini
program to them.

Recording needs the session only (the patient stands at the kiosk); reading stored vitals back needs the second
factor (``GET /fhir/Observation`` with the session).
"""

from __future__ import annotations

import json as jsonlib

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.definitions import RequestBody, Response

from care import kiosks, patient_binding, vitals
from care.models import Patient
from core.errors import BadRequest, Forbidden
from kiosk_bridge.auth import current_kiosk, current_session
from kiosk_bridge.schemas import UNAUTHORIZED, error

bp = Blueprint("kiosk_observations", url_prefix="/kiosk/v1")
TAG = "kiosk: vitals"
KEY_AND_SESSION = {"kiosk_key": [], "kiosk_session": []}

_SIMPLE_EXAMPLE = {"type": "blood_pressure", "systolic": 128, "diastolic": 82, "unit": "mmHg",
                   "measured_at": "2026-03-02T09:30:00+08:00"}
_FHIR_EXAMPLE = {
    "resourceType": "Observation", "status": "final",
    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                              "code": "vital-signs"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
    "effectiveDateTime": "2026-03-02T09:31:00+08:00",
    "valueQuantity": {"value": 150, "unit": "lbs", "system": "http://unitsofmeasure.org", "code": "[lb_av]"},
}
_ANSWER_EXAMPLE = {
    "observations": [{"resourceType": "Observation", "id": "17", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                      "subject": {"reference": "Patient/P00000042"}, "effectiveDateTime": "2026-03-02T01:31:00+00:00",
                      "valueQuantity": {"value": 68.0, "unit": "kg", "system": "http://unitsofmeasure.org",
                                        "code": "kg"}}],
    "advice": {"grade": "normal", "grade_name": "正常", "items": [], "departments": []},
}


def _payload(request: Request) -> tuple[object, list[vitals.Upload]]:
    """The readings (JSON body, or the multipart field ``observation`` / ``observations``) and any file."""
    if request.content_type.startswith("multipart/form-data"):
        text = request.form.get("observation") or request.form.get("observations")
        if not text:
            raise BadRequest("缺少测量数据（表单字段 observation，JSON 文本）", code="invalid_body",
                             details={"field": "observation"})
        try:
            payload = jsonlib.loads(text)
        except ValueError:
            raise BadRequest("表单字段 observation 不是有效的 JSON", code="invalid_json",
                             details={"field": "observation"}) from None
        uploads = [vitals.Upload(f.body, f.name or "") for f in (request.files.getlist("file") or [])]
        return payload, uploads
    try:
        payload = request.json
    except Exception:  # noqa: BLE001 - sanic raises its own error for broken JSON
        raise BadRequest("请求体不是有效的 JSON", code="invalid_json", details={"field": "body"}) from None
    if payload is None:
        raise BadRequest("请求体为空", code="invalid_body", details={"field": "body"})
    return payload, []


async def _check_subjects(readings: list[vitals.Reading], patient: Patient) -> None:
    """A FHIR subject naming another of our patients (by number or HIS id) is refused: it was meant for them.
    References we do not know (a device's own patient id) are the session's patient."""
    for reading in readings:
        ref = (reading.subject or "").rpartition("Patient/")[2]
        if not ref or ref in (patient.number, patient.his_id):
            continue
        if await Patient.filter(number=ref).exists() or await Patient.filter(his_id=ref).exists():
            raise Forbidden("测量数据属于另一位患者，与当前会话不符", code="other_patient",
                            details={"field": f"{reading.field}.subject" if reading.field else "subject"})


async def _advice(patient: Patient, rows) -> dict | None:
    from care import advice

    return (await advice.advise(patient, rows)).as_dict()


@bp.post("/observations")
@openapi.definition(
    summary="Record vital signs for the session's patient",
    description="JSON: a FHIR R4 `Observation` (vital-signs: blood pressure 85354-9 with 8480-6/8462-4, heart rate "
                "8867-4, body temperature 8310-5, weight 29463-7, height 8302-2, glucose 15074-8/2339-0/1558-6…, "
                "SpO2 2708-6/59408-5, respiratory rate 9279-1, ECG 11524-6), a `Bundle` of them, or the simple form "
                "`{type, systolic|value, unit, measured_at?}` (one object, a list, or `{observations: [...]}`); "
                "types: blood_pressure, heart_rate, body_temperature, body_weight, body_height, blood_glucose "
                "(`context`: fasting | postprandial | random), spo2, respiratory_rate, ecg (`heart_rate`, `rhythm`), "
                "stethoscope (`site`). Units are converted (lb→kg, °F→°C, mg/dL→mmol/L, kPa→mmHg, in→cm) and "
                "stored in one unit. An ECG waveform (PDF, DICOM or image) or stethoscope audio goes as "
                "multipart/form-data: field `observation` (the JSON) and file `file`. Every reading is checked "
                "first: any refusal (unknown code, missing unit, impossible value, future time, …) stores nothing "
                "and names the field in `error.details.field`. 201: the stored Observations as FHIR (stored units) "
                "and the advice on them.",
    tag=TAG, secured=KEY_AND_SESSION,
    body=RequestBody({"application/json": {"schema": {"type": "object"}, "examples": {
        "simple": {"value": _SIMPLE_EXAMPLE}, "fhir": {"value": _FHIR_EXAMPLE}}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["observation"], "properties": {
            "observation": {"type": "string", "description": "the JSON, as above"},
            "file": {"type": "string", "format": "binary", "description": "ECG waveform or stethoscope audio"}}}}},
        required=True, description="the readings"),
    response=[Response({"application/json": {"example": _ANSWER_EXAMPLE}}, status=201,
                       description="stored; `advice` is null when no advice applies"),
              error(400, "invalid_json", "请求体不是有效的 JSON", "not JSON, or not an object / list / Bundle"),
              UNAUTHORIZED,
              error(403, "other_patient", "测量数据属于另一位患者，与当前会话不符",
                    "the FHIR subject names another of our patients"),
              error(413, "file_too_large", "波形文件文件太大（上限 20 MB）", "the file is too large"),
              error(422, "impossible_value", "收缩压 400 mmHg 超出可能的范围（40–300 mmHg），请重新测量",
                    "`unknown_code`, `unknown_type`, `missing_unit`, `unit_not_supported`, `missing_value`, "
                    "`impossible_value`, `future_date`, `invalid_date`, `bad_status`, `invalid_fhir`, "
                    "`missing_file`, `not_waveform`…; `details.field` names the field")],
)
async def record(request: Request) -> HTTPResponse:
    session = await current_session(request)
    kiosk = await current_kiosk(request)
    patient = await kiosks.session_patient(session)
    settings = request.app.ctx.settings
    payload, uploads = _payload(request)
    readings = await vitals.parse(payload, tz=settings.timezone, uploads=uploads)
    await _check_subjects(readings, patient)
    rows = await vitals.record(patient, readings, source=f"kiosk:{kiosk.id}", settings=settings,
                               events=request.app.ctx.events)
    for row in rows:
        if row.attachment_id:
            await row.fetch_related("attachment")  # its type and size go into the answer
    base = f"{request.scheme}://{request.host}"
    return json({"observations": [vitals.to_fhir(row, patient=patient, base_url=base) for row in rows],
                 "advice": await _advice(patient, rows)}, status=201)


@bp.post("/sessions/current/binding-code")
@openapi.definition(
    summary="A one-time code binding the patient's mini program (needs the second factor)",
    description="Show `code` (8 digits) or a QR code of `qr`; the patient scans or types it in the mini program "
                "(`POST /mp/v1/patient/bind`). One use, valid `expires_in` seconds and never beyond the session.",
    tag=TAG, secured=KEY_AND_SESSION,
    response=[Response({"application/json": {"example": {"code": "48291377", "qr": "medwx-bind:48291377",
                                                          "expires_in": 300}}}, status=201, description="the code"),
              UNAUTHORIZED,
              error(403, "second_factor_required", "请先验证身份（身份证或手机号后四位，或在小程序中确认）",
                    "face-only session")],
)
async def binding_code(request: Request) -> HTTPResponse:
    session = await current_session(request)
    code, ttl = await patient_binding.binding_code(request.app.ctx.redis, session)
    return json({"code": code, "qr": patient_binding.qr_text(code), "expires_in": ttl}, status=201)
