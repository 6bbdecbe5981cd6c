"""``GET /fhir/Observation?patient=<number>`` (a searchset Bundle, newest first), ``GET /fhir/Observation/<id>`` and
``GET /fhir/Binary/<id>`` (an observation's ECG waveform or stethoscope audio). Answers are
``application/fhir+json``; values are in the stored units (``care.vital_kinds``).

Search parameters: ``patient`` (our number, or ``Patient/<number>``; required), ``code`` (``[system|]code``,
comma-separated), ``date`` (``ge``/``gt``/``le``/``lt``/``eq`` + a date or date-time, repeatable), ``_count``
(1–200, default 50), ``_offset``. The ``next`` link pages on.
"""

from __future__ import annotations

import json as jsonlib
import logging
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, file, raw
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.builders import SpecificationBuilder
from sanic_ext.extensions.openapi.definitions import Parameter, Response

from care import patients, vitals
from care.vitals_models import Observation
from core.errors import BadRequest, Forbidden, NotFound
from core.media import media_path
from fhir_api.access import Reader, current_reader
from kiosk_bridge.schemas import error

log = logging.getLogger(__name__)

bp = Blueprint("fhir_observations", url_prefix="/fhir")
TAG = "FHIR (hospital systems)"
SECURED = {"fhir_token": []}
FHIR_JSON = "application/fhir+json; charset=utf-8"
MAX_COUNT = 200


@bp.before_server_start
async def document_security(app):
    SpecificationBuilder().add_security_scheme(
        "fhir_token", "http", bearer_format="opaque",
        description="a hospital system's token (`python -m care add-api-client NAME`, starts with `mac_`); or the "
                    "patient's mini-program JWT; or a kiosk session (with `X-Kiosk-Key`, second factor given)")


def _fhir(body: dict, status: int = 200) -> HTTPResponse:
    return raw(jsonlib.dumps(body, ensure_ascii=False), status=status, content_type=FHIR_JSON)


def _base(request: Request) -> str:
    return f"{request.scheme}://{request.host}"


def _int_arg(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise BadRequest(f"参数 {name} 须为 {low}–{high} 的整数", code="invalid_parameter", details={"field": name})
    return int(value)


def _dates(request: Request, tz: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    since = until = None
    for value in request.args.getlist("date") or []:
        prefix, text = (value[:2], value[2:]) if value[:2] in ("ge", "gt", "le", "lt", "eq") else ("eq", value)
        try:
            day_only = len(text) == 10
            moment = datetime.fromisoformat(text.replace("Z", "+00:00") + ("T00:00:00" if day_only else ""))
        except ValueError:
            raise BadRequest("参数 date 须为 ISO 8601 日期或时间，可带 ge/gt/le/lt/eq 前缀", code="invalid_parameter",
                             details={"field": "date"}) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
        moment = moment.astimezone(timezone.utc)
        end = moment + (timedelta(days=1) if day_only else timedelta(0))  # a day covers the whole day
        if prefix in ("ge", "gt", "eq"):
            since = max(since, moment) if since else moment
        if prefix in ("le", "lt", "eq"):
            stop = end - timedelta(microseconds=1) if day_only else end
            until = min(until, stop) if until else stop
    return since, until


async def _patient(reader: Reader, value: str | None):
    number = (value or "").strip().rpartition("Patient/")[2]
    if not number:
        raise BadRequest("缺少参数 patient（患者编号）", code="invalid_parameter", details={"field": "patient"})
    try:
        patient = await patients.get_by_number(number)
    except NotFound:
        patient = None
    if patient is None or not reader.may_read(patient.id):
        if reader.patient_ids is not None:  # a patient's own reader: never say whether another number exists
            raise Forbidden("只能查看本人（或已绑定就诊人）的数据", code="other_patient", details={"field": "patient"})
        return None
    return patient


_PARAMS = [Parameter("patient", str, "query", required=True, description="our patient number, e.g. P00000042"),
           Parameter("code", str, "query", description="LOINC code(s), comma-separated, e.g. 85354-9"),
           Parameter("date", str, "query", description="ge2026-01-01, le2026-03-31T23:59:59+08:00 (repeatable)"),
           Parameter("_count", int, "query", description="page size, 1–200 (50)"),
           Parameter("_offset", int, "query", description="entries to skip")]
_BUNDLE_EXAMPLE = {"resourceType": "Bundle", "type": "searchset", "total": 1,
                   "link": [{"relation": "self", "url": "https://medwx.example/fhir/Observation?patient=P00000042"}],
                   "entry": [{"fullUrl": "https://medwx.example/fhir/Observation/17", "search": {"mode": "match"},
                              "resource": {"resourceType": "Observation", "id": "17", "status": "final"}}]}


@bp.get("/Observation")
@openapi.definition(
    summary="Search a patient's vital signs (FHIR searchset Bundle)",
    description="Newest first. A hospital system may read any patient (an unknown number: an empty Bundle); a "
                "patient's mini program or strong kiosk session only their own (another number: 403).",
    tag=TAG, secured=SECURED, parameter=_PARAMS,
    response=[Response({"application/fhir+json": {"example": _BUNDLE_EXAMPLE}}, status=200, description="Bundle"),
              error(400, "invalid_parameter", "缺少参数 patient（患者编号）", "missing or malformed parameter"),
              error(401, "invalid_api_token", "接口令牌无效或已停用", "no, a wrong or a revoked token"),
              error(403, "other_patient", "只能查看本人（或已绑定就诊人）的数据",
                    "another patient's data; `second_factor_required` for a face-only kiosk session")],
)
async def search(request: Request) -> HTTPResponse:
    reader = await current_reader(request)
    patient = await _patient(reader, request.args.get("patient"))
    count = _int_arg(request, "_count", 50, 1, MAX_COUNT)
    offset = _int_arg(request, "_offset", 0, 0, 10 ** 9)
    since, until = _dates(request, ZoneInfo(request.app.ctx.settings.timezone))
    kinds = vitals.kinds_for_code(request.args.get("code")) if request.args.get("code") else None
    rows, total = ([], 0) if patient is None or kinds == [] else await vitals.search(
        patient, kinds=kinds, since=since, until=until, offset=offset, limit=count)
    base = _base(request)
    log.info("fhir read by %s: patient %s, %d of %d", reader.label, patient.number if patient else "-", len(rows),
             total)
    query = [(k, v) for k, values in request.args.items() if k != "_offset" for v in values]
    links = [{"relation": "self", "url": f"{base}/fhir/Observation?{urlencode(query + [('_offset', offset)])}"}]
    if offset + len(rows) < total:
        links.append({"relation": "next",
                      "url": f"{base}/fhir/Observation?{urlencode(query + [('_offset', offset + count)])}"})
    return _fhir({"resourceType": "Bundle", "type": "searchset", "total": total, "link": links,
                  "entry": [{"fullUrl": f"{base}/fhir/Observation/{row.id}", "search": {"mode": "match"},
                             "resource": vitals.to_fhir(row, patient=patient, base_url=base)} for row in rows]})


async def _readable(reader: Reader, observation_id: int) -> Observation:
    row = await Observation.get_or_none(id=observation_id).prefetch_related("patient", "attachment")
    # Another patient's observation looks like none at all.
    if row is None or not reader.may_read(row.patient_id):
        raise NotFound("未找到该观测记录", code="observation_not_found")
    return row


@bp.get("/Observation/<observation_id:int>")
@openapi.definition(
    summary="One vital-sign Observation",
    tag=TAG, secured=SECURED,
    response=[Response({"application/fhir+json": {"example": _BUNDLE_EXAMPLE["entry"][0]["resource"]}}, status=200,
                       description="the Observation"),
              error(401, "invalid_api_token", "接口令牌无效或已停用", "no, a wrong or a revoked token"),
              error(404, "observation_not_found", "未找到该观测记录", "no such observation, or another patient's")],
)
async def read(request: Request, observation_id: int) -> HTTPResponse:
    row = await _readable(await current_reader(request), observation_id)
    return _fhir(vitals.to_fhir(row, base_url=_base(request)))


@bp.get("/Binary/<media_id:int>")
@openapi.definition(
    summary="An observation's file (ECG waveform, stethoscope audio)",
    description="The raw bytes with their content type; the URL is in the Observation's attachment extension.",
    tag=TAG, secured=SECURED,
    response=[Response(status=200, description="the file"),
              error(404, "not_found", "未找到该文件", "no such file, or not one the caller may read")],
)
async def binary(request: Request, media_id: int) -> HTTPResponse:
    reader = await current_reader(request)
    row = await Observation.filter(attachment_id=media_id).prefetch_related("attachment").first()
    if row is None or row.attachment is None or not reader.may_read(row.patient_id):
        raise NotFound("未找到该文件", code="not_found")
    path = media_path(request.app.ctx.settings, row.attachment)
    if not path.exists():
        raise NotFound("文件已不存在", code="not_found")
    return await file(path, mime_type=row.attachment.content_type,
                      headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})
