"""Vital signs: read from FHIR R4 Observations (alone or in a Bundle) or a simple JSON form, converted to one unit
per kind, checked, stored, and given back as FHIR.

- ``parse(payload)`` → ``Reading`` list, or a 4xx naming the field (``details.field``, a FHIRPath-like path such as
  ``entry[1].resource.component[0].valueQuantity.unit``) — nothing is stored when any reading is refused.
- ``record(patient, observations, source=...)`` stores all readings in one transaction (attachments first: an ECG
  waveform or stethoscope audio, checked by their bytes), then publishes ``vitals.recorded``
  ``{"patient_id", "observation_ids"}``.
- ``latest``, ``series``, ``search`` read them; ``to_fhir`` answers a vital-signs Observation in the stored unit.

A FHIR ``subject`` is not trusted to choose the patient: the caller (a kiosk session) decides; ``Reading.subject``
keeps the reference so the transport can refuse one naming another of our patients.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence
from zoneinfo import ZoneInfo

from tortoise.models import Model
from tortoise.transactions import in_transaction

from care import vital_kinds as vk
from care.models import Patient
from care.vitals_models import Observation
from core import media
from core.errors import BadRequest, PayloadTooLarge, Unprocessable
from core.textutil import storable

ACCEPTED_STATUSES = ("final", "amended", "corrected", "preliminary")
CLOCK_SKEW = timedelta(minutes=5)  # a kiosk's clock may run a little ahead
EARLIEST = datetime(1900, 1, 1, tzinfo=timezone.utc)
MAX_READINGS = 50  # per request
EVENT = "vitals.recorded"


@dataclass
class Upload:
    """A file sent with the readings (multipart), for the ECG or stethoscope reading."""

    data: bytes
    name: str = ""


@dataclass
class Reading:
    kind: vk.Kind
    values: dict
    measured_at: datetime
    field: str = ""  # where it came from in the request, for messages
    subject: str | None = None  # the FHIR subject reference as sent (FHIR only)
    upload: Upload | None = None


def _refuse(code: str, message: str, path: str, status: int = 422) -> Exception:
    cls = Unprocessable if status == 422 else BadRequest
    return cls(message, code=code, details={"field": path})


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return name
    return prefix + name if name.startswith("[") else f"{prefix}.{name}"


# -- time --------------------------------------------------------------------------------------------------------------
def _when(value: Any, path: str, tz: ZoneInfo, now: datetime) -> datetime:
    """An ISO 8601 date or date-time; without a zone it is the hospital's local time (``TIMEZONE``)."""
    if not isinstance(value, str) or not value.strip():
        raise _refuse("invalid_date", "时间格式不正确，应为 ISO 8601（如 2026-03-02T09:30:00+08:00）", path)
    text = value.strip().replace("Z", "+00:00")
    try:
        if len(text) == 10:  # a date only (FHIR allows it): midnight, local
            parsed = datetime.fromisoformat(text + "T00:00:00")
        elif len(text) in (4, 7):  # a year or a month: FHIR allows them, a measurement time cannot be that vague
            raise ValueError(text)
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _refuse("invalid_date", "时间格式不正确，应为 ISO 8601（如 2026-03-02T09:30:00+08:00）", path) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    parsed = parsed.astimezone(timezone.utc)
    if parsed > now + CLOCK_SKEW:
        raise _refuse("future_date", "测量时间不能晚于现在", path)
    if parsed < EARLIEST:
        raise _refuse("invalid_date", "测量时间不正确", path)
    return parsed


# -- numbers and units -------------------------------------------------------------------------------------------------
def _number(value: Any, path: str, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        if isinstance(value, str):
            try:
                return _number(float(value), path, label)
            except ValueError:
                pass
        raise _refuse("invalid_value", f"{label}须为数字", path)
    return float(value)


def _stored(kind: vk.Kind, part: vk.Part, value: float, unit: Any, value_path: str, unit_path: str) -> float | int:
    """``value`` in ``unit`` → the stored unit, rounded, range-checked."""
    if unit is None or (isinstance(unit, str) and not unit.strip()):
        raise _refuse("missing_unit", f"{part.label}缺少单位（如 {kind.unit_display}）", unit_path)
    convert = kind.units.get(vk.normalise_unit(unit))
    if convert is None:
        accepted = "、".join(sorted({s for s in kind.units if s.isascii()}))
        raise _refuse("unit_not_supported", f"{part.label}的单位“{unit}”不受支持（可用：{accepted}）", unit_path)
    converted = round(convert(value), part.digits)
    if part.digits == 0:
        converted = int(converted)
    if not part.low <= converted <= part.high:
        raise _refuse("impossible_value", f"{part.label} {converted:g} {kind.unit_display} 超出可能的范围"
                                          f"（{part.low:g}–{part.high:g} {kind.unit_display}），请重新测量",
                      value_path)
    return converted


def _check_pressure(values: dict, path: str) -> None:
    if values["diastolic"] >= values["systolic"]:
        raise _refuse("impossible_value", f"舒张压（{values['diastolic']}）应低于收缩压（{values['systolic']}），"
                                          "请重新测量", path)


def _text(value: Any, path: str, label: str, limit: int = 64) -> str:
    if not isinstance(value, str):
        raise _refuse("invalid_value", f"{label}须为文字", path)
    text = " ".join(storable(value).split())
    if len(text) > limit:
        raise _refuse("invalid_value", f"{label}不能超过 {limit} 个字", path)
    return text


# -- FHIR --------------------------------------------------------------------------------------------------------------
def _codings(concept: Any) -> list[dict]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, dict)]


def _kind_of(resource: dict, path: str) -> tuple[vk.Kind | None, str]:
    """The kind named by ``code`` (None for a vitals panel) and the code that named it."""
    codings = _codings(resource.get("code"))
    for coding in codings:
        system, code = coding.get("system") or vk.LOINC, str(coding.get("code") or "")
        if (system, code) in vk.BY_CODE:
            return vk.BY_CODE[(system, code)], code
    if any(c.get("code") == vk.VITALS_PANEL for c in codings):
        return None, vk.VITALS_PANEL
    sent = "、".join(f"{c.get('code')}" for c in codings if c.get("code")) or "无"
    raise _refuse("unknown_code", f"不支持的观测项目编码（{sent}）：仅接受血压、心率、体温、体重、身高、血糖、"
                                  "血氧、呼吸频率、心电图与听诊的 LOINC 编码", _join(path, "code.coding"))


def _quantity(kind: vk.Kind, part: vk.Part, holder: dict, path: str) -> float | int:
    quantity = holder.get("valueQuantity")
    qpath = _join(path, "valueQuantity")
    if not isinstance(quantity, dict) or quantity.get("value") is None:
        raise _refuse("missing_value", f"缺少{part.label}的数值", qpath)
    value = _number(quantity["value"], _join(qpath, "value"), part.label)
    if quantity.get("comparator"):
        raise _refuse("invalid_value", f"{part.label}须为确切的测量值（不带 < 或 >）", _join(qpath, "comparator"))
    # UCUM's code is the machine-readable unit; the free-text unit is the fallback.
    ucum = quantity.get("code") if quantity.get("system") in (None, vk.UCUM) else None
    unit = ucum if ucum and vk.normalise_unit(ucum) in kind.units else quantity.get("unit") or ucum
    return _stored(kind, part, value, unit, _join(qpath, "value"), _join(qpath, "unit"))


def _component(resource: dict, code: str) -> tuple[dict, int] | tuple[None, None]:
    for i, comp in enumerate(resource.get("component") or []):
        if isinstance(comp, dict) and any(c.get("code") == code for c in _codings(comp.get("code"))):
            return comp, i
    return None, None


def _attachment(resource: dict, path: str) -> Upload | None:
    for i, ext in enumerate(resource.get("extension") or []):
        if isinstance(ext, dict) and ext.get("url") == vk.ATTACHMENT_URL:
            att = ext.get("valueAttachment") or {}
            if not att.get("data"):
                return None  # a reference to a file held elsewhere (our own answer sent back): no bytes to keep
            try:
                return Upload(base64.b64decode(att["data"], validate=True), str(att.get("title") or ""))
            except (binascii.Error, ValueError, TypeError):
                raise _refuse("invalid_attachment", "附件不是有效的 base64 数据",
                              _join(path, f"extension[{i}].valueAttachment.data")) from None
    return None


def _concept_text(value: Any) -> str | None:
    if isinstance(value, dict):
        if value.get("text"):
            return value["text"]
        for c in _codings(value):
            if c.get("code") or c.get("display"):
                return c.get("code") or c.get("display")
    return None


def _fhir_values(kind: vk.Kind, code: str, resource: dict, path: str) -> dict:
    if kind is vk.BLOOD_PRESSURE:
        values = {}
        for part in kind.parts:
            comp, i = _component(resource, part.code)
            if comp is None:
                raise _refuse("missing_value", f"缺少{part.label}（component {part.code}）", _join(path, "component"))
            values[part.name] = _quantity(kind, part, comp, _join(path, f"component[{i}]"))
        _check_pressure(values, _join(path, "component"))
        return values
    if kind is vk.ECG:
        values: dict = {}
        comp, i = _component(resource, vk.ECG_HEART_RATE.code)
        if comp is not None:
            values["heart_rate"] = _quantity(vk.HEART_RATE, vk.ECG_HEART_RATE, comp,
                                             _join(path, f"component[{i}]"))
        rhythm = resource.get("valueString") or _concept_text(resource.get("valueCodeableConcept"))
        comp, i = _component(resource, vk.ECG_RHYTHM_CODE)
        if rhythm is None and comp is not None:
            rhythm = comp.get("valueString") or _concept_text(comp.get("valueCodeableConcept"))
        if rhythm is not None:
            values["rhythm"] = _text(rhythm, _join(path, "valueString"), "心律")
        return values
    if kind is vk.STETHOSCOPE:
        site = _concept_text(resource.get("bodySite"))
        return {"site": _text(site, _join(path, "bodySite"), "听诊部位")} if site else {}
    part = kind.parts[0]
    values = {"value": _quantity(kind, part, resource, path)}
    if kind is vk.BLOOD_GLUCOSE:
        context = vk.GLUCOSE_CONTEXT_BY_CODE.get(code)
        for i, ext in enumerate(resource.get("extension") or []):
            if isinstance(ext, dict) and ext.get("url") == vk.GLUCOSE_CONTEXT_URL:
                context = _context(ext.get("valueCode"), _join(path, f"extension[{i}].valueCode"))
        if context:
            values["context"] = context
    return values


def _context(value: Any, path: str) -> str:
    if value not in vk.GLUCOSE_CONTEXTS:
        raise _refuse("invalid_value", "血糖测量时机须为 fasting（空腹）、postprandial（餐后2小时）或 random（随机）",
                      path)
    return value


def _effective(resource: dict, path: str, tz: ZoneInfo, now: datetime) -> datetime:
    for name in ("effectiveDateTime", "effectiveInstant"):
        if resource.get(name) is not None:
            return _when(resource[name], _join(path, name), tz, now)
    period = resource.get("effectivePeriod")
    if isinstance(period, dict) and (period.get("start") or period.get("end")):
        name = "start" if period.get("start") else "end"
        return _when(period[name], _join(path, f"effectivePeriod.{name}"), tz, now)
    return now  # a kiosk sending what it has just measured


def _from_fhir(resource: dict, path: str, tz: ZoneInfo, now: datetime) -> Reading | None:
    if resource.get("resourceType") != "Observation":
        raise _refuse("invalid_resource", f"仅接受 Observation（收到 {resource.get('resourceType')}）",
                      _join(path, "resourceType"))
    status = resource.get("status")
    if status not in ACCEPTED_STATUSES:
        raise _refuse("bad_status", f"观测状态为“{status}”，只接受 final、amended、corrected 或 preliminary",
                      _join(path, "status"))
    kind, code = _kind_of(resource, path)
    if kind is None:
        return None  # a panel: its members come as entries of their own
    values = _fhir_values(kind, code, resource, path)
    upload = _attachment(resource, path)
    subject = resource.get("subject")
    return Reading(kind, values, _effective(resource, path, tz, now), path,
                   subject=subject.get("reference") if isinstance(subject, dict) else None, upload=upload)


def _validate_fhir(resources: list[tuple[dict, str]]) -> None:
    """The R4 structure of each Observation (types, cardinalities); runs in a thread (pydantic over big models)."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    model = get_fhir_model_class("Observation")
    for resource, path in resources:
        try:
            model.model_validate(resource)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
            raise _refuse("invalid_fhir", f"FHIR Observation 格式不正确：{first['msg']}", _join(path, where)) from None


# -- the simple form ---------------------------------------------------------------------------------------------------
def _from_simple(item: dict, path: str, tz: ZoneInfo, now: datetime) -> Reading:
    kind = vk.KINDS.get(item.get("type")) if isinstance(item.get("type"), str) else None
    if kind is None:
        raise _refuse("unknown_type", f"不支持的测量类型“{item.get('type')}”（可用：{'、'.join(vk.KINDS)}）",
                      _join(path, "type"))
    values: dict = {}
    if kind is vk.ECG:
        if item.get("heart_rate") is not None:
            hr = _number(item["heart_rate"], _join(path, "heart_rate"), "心率")
            values["heart_rate"] = _stored(vk.HEART_RATE, vk.ECG_HEART_RATE, hr, "/min", _join(path, "heart_rate"),
                                           _join(path, "unit"))
        if item.get("rhythm") is not None:
            values["rhythm"] = _text(item["rhythm"], _join(path, "rhythm"), "心律")
    elif kind is vk.STETHOSCOPE:
        if item.get("site") is not None:
            values["site"] = _text(item["site"], _join(path, "site"), "听诊部位")
    else:
        for part in kind.parts:
            name = part.name
            if item.get(name) is None:
                raise _refuse("missing_value", f"缺少{part.label}（字段 {name}）", _join(path, name))
            number = _number(item[name], _join(path, name), part.label)
            values[name] = _stored(kind, part, number, item.get("unit"), _join(path, name), _join(path, "unit"))
        if kind is vk.BLOOD_PRESSURE:
            _check_pressure(values, _join(path, "diastolic"))
        if kind is vk.BLOOD_GLUCOSE and item.get("context") is not None:
            values["context"] = _context(item["context"], _join(path, "context"))
    measured = item.get("measured_at")
    when = now if measured is None else _when(measured, _join(path, "measured_at"), tz, now)
    return Reading(kind, values, when, path)


# -- parsing a request -------------------------------------------------------------------------------------------------
def _items(payload: Any) -> list[tuple[dict, str]]:
    """(item, path) for every Observation or simple-form reading in the payload."""
    if isinstance(payload, list):
        return [(item, f"[{i}]") for i, item in enumerate(payload)]
    if not isinstance(payload, dict):
        raise _refuse("invalid_body", "请求体须为 JSON 对象、数组或 FHIR Bundle", "body", status=400)
    if payload.get("resourceType") == "Bundle":
        out = []
        for i, entry in enumerate(payload.get("entry") or []):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            out.append((resource, f"entry[{i}].resource"))
        return out
    if isinstance(payload.get("observations"), list):
        return [(item, f"observations[{i}]") for i, item in enumerate(payload["observations"])]
    return [(payload, "")]


async def parse(payload: Any, *, tz: str = "Asia/Shanghai", uploads: Sequence[Upload] = (),
                now: datetime | None = None) -> list[Reading]:
    """Every reading of a request, or the first refusal (nothing is half-accepted).

    ``uploads`` (multipart files) go to the request's one ECG or stethoscope reading."""
    now = now or datetime.now(timezone.utc)
    zone = ZoneInfo(tz)
    items = _items(payload)
    if not items:
        raise _refuse("no_observations", "没有可保存的测量数据", "entry" if isinstance(payload, dict) else "body")
    if len(items) > MAX_READINGS:
        raise _refuse("too_many_observations", f"一次最多上传 {MAX_READINGS} 项测量", "body", status=400)
    fhir = []
    for item, path in items:
        if not isinstance(item, dict):
            raise _refuse("invalid_body", "每一项须为 JSON 对象", path or "body", status=400)
        if "resourceType" in item:
            fhir.append((item, path))
    readings: list[Reading] = []
    for item, path in items:
        reading = _from_fhir(item, path, zone, now) if "resourceType" in item else _from_simple(item, path, zone, now)
        if reading is not None:
            readings.append(reading)
    if fhir:
        await asyncio.to_thread(_validate_fhir, fhir)
    if not readings:
        raise _refuse("no_observations", "没有可保存的测量数据（仅有汇总面板）", "entry")
    _attach(readings, list(uploads))
    return readings


def _attach(readings: list[Reading], uploads: list[Upload]) -> None:
    takers = [r for r in readings if r.kind.name in vk.ATTACHMENT_MEDIA]
    if uploads:
        if len(uploads) > 1 or len(takers) != 1 or takers[0].upload is not None:
            raise _refuse("unexpected_file", "文件须随一项心电图或听诊测量一起上传（每次一个文件）", "file")
        takers[0].upload = uploads[0]
    for r in takers:
        if r.kind is vk.STETHOSCOPE and r.upload is None:
            raise _refuse("missing_file", "听诊须上传录音文件", _join(r.field, "file") if r.field else "file")
        if r.kind is vk.ECG and r.upload is None and not r.values:
            raise _refuse("missing_value", "心电图须上传波形文件，或给出心率（heart_rate）/心律（rhythm）",
                          _join(r.field, "heart_rate") if r.field else "heart_rate")


# -- storing -----------------------------------------------------------------------------------------------------------
async def _store_file(settings, reading: Reading) -> int:
    kinds = vk.ATTACHMENT_MEDIA[reading.kind.name]
    mime = media.sniff(reading.upload.data)
    chosen = next((k for k in kinds if mime in media.KINDS[k].mimes), kinds[0])
    try:
        stored = await media.store_upload(settings, reading.upload.data, kind=chosen,
                                          original_name=reading.upload.name)
    except (Unprocessable, PayloadTooLarge) as exc:
        exc.details = {"field": _join(reading.field, "file") if reading.field else "file"}
        if exc.code.startswith("not_"):
            allowed = "PDF、DICOM 或图片" if reading.kind is vk.ECG else "录音（mp3、wav、m4a、amr 等）"
            exc.message = f"{reading.kind.label}文件须为{allowed}"
        raise
    return stored.id


async def record(patient: Patient, observations: Sequence[Reading] | Any, *, source: str, settings=None,
                 events=None, tz: str = "Asia/Shanghai") -> list[Observation]:
    """Store the readings for ``patient`` (all or none) and publish ``vitals.recorded`` after the commit.

    ``observations``: ``Reading``s from ``parse``, or a payload ``parse`` accepts. ``settings`` is needed when a
    reading carries a file (it says where media go)."""
    readings = list(observations) if _all_readings(observations) else await parse(observations, tz=tz)
    files = {}
    for reading in readings:
        if reading.upload is not None:
            if settings is None:
                raise ValueError("settings are needed to store an attachment")
            files[id(reading)] = await _store_file(settings, reading)
    async with in_transaction() as conn:
        rows = [await Observation.create(patient_id=patient.id, kind=r.kind.name, code=_stored_code(r),
                                         values=r.values, unit=r.kind.unit, measured_at=r.measured_at,
                                         source=source[:64], attachment_id=files.get(id(r)), using_db=conn)
                for r in readings]
    if events is not None:
        await events.publish(EVENT, {"patient_id": patient.id, "observation_ids": [o.id for o in rows]})
    return rows


def _all_readings(observations: Any) -> bool:
    return isinstance(observations, (list, tuple)) and bool(observations) and all(
        isinstance(o, Reading) for o in observations)


def _stored_code(reading: Reading) -> str:
    if reading.kind is vk.BLOOD_GLUCOSE and reading.values.get("context") == "fasting":
        return "14771-0"
    return reading.kind.code


# -- reading -----------------------------------------------------------------------------------------------------------
async def latest(patient: Patient) -> dict[str, Observation]:
    """The newest observation of each kind the patient has."""
    out: dict[str, Observation] = {}
    for kind in vk.KINDS:
        row = await Observation.filter(patient_id=patient.id, kind=kind).order_by("-measured_at", "-id").first()
        if row is not None:
            out[kind] = row
    return out


async def series(patient: Patient, kind: str, since: datetime | None = None, *, limit: int = 1000) -> list[Observation]:
    """One kind's observations, oldest first (a chart's order), from ``since`` on; the newest ``limit`` of them."""
    query = Observation.filter(patient_id=patient.id, kind=kind)
    if since is not None:
        query = query.filter(measured_at__gte=since)
    rows = await query.order_by("-measured_at", "-id").limit(limit)
    return rows[::-1]


async def search(patient: Patient, *, kinds: Iterable[str] | None = None, since: datetime | None = None,
                 until: datetime | None = None, offset: int = 0, limit: int = 50) -> tuple[list[Observation], int]:
    """Newest first, for FHIR searches and histories: (page, total)."""
    query = Observation.filter(patient_id=patient.id)
    if kinds is not None:
        query = query.filter(kind__in=list(kinds))
    if since is not None:
        query = query.filter(measured_at__gte=since)
    if until is not None:
        query = query.filter(measured_at__lte=until)
    total = await query.count()
    rows = await query.order_by("-measured_at", "-id").offset(offset).limit(limit).prefetch_related("attachment")
    return rows, total


def kinds_for_code(code: str) -> list[str]:
    """Kinds a FHIR ``code`` search parameter names (``[system|]code``, comma-separated); unknown codes → []."""
    out = []
    for token in code.split(","):
        system, _, value = token.strip().rpartition("|")
        kind = vk.BY_CODE.get((system or vk.LOINC, value))
        if kind is not None and kind.name not in out:
            out.append(kind.name)
    return out


# -- FHIR out ----------------------------------------------------------------------------------------------------------
def _quantity_out(kind: vk.Kind, value: float | int) -> dict:
    return {"value": value, "unit": kind.unit_display, "system": vk.UCUM, "code": kind.unit}


def _concept(system: str, code: str, display: str, text: str) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": text}


def to_fhir(obs: Observation, *, patient: Patient | None = None, base_url: str = "") -> dict:
    """A FHIR R4 vital-signs Observation, in the stored unit. ``patient`` (or ``obs.patient`` fetched) gives the
    subject's number; ``base_url`` prefixes the attachment's URL."""
    kind = vk.KINDS[obs.kind]
    patient = patient or _fetched(obs, "patient")
    resource: dict = {
        "resourceType": "Observation",
        "id": str(obs.id),
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]} if kind.unit else {},
        "status": "final",
        "category": [vk.VITAL_SIGNS_CATEGORY] if kind.unit else [],
        "code": _concept(kind.system, obs.code or kind.code, kind.display, kind.label),
        "subject": {"reference": f"Patient/{patient.number if patient else obs.patient_id}"},
        "effectiveDateTime": obs.measured_at.isoformat(),
        "issued": (obs.created_at or obs.measured_at).isoformat(),
    }
    if not resource["meta"]:
        del resource["meta"], resource["category"]
    values = obs.values or {}
    if kind is vk.BLOOD_PRESSURE:
        resource["component"] = [{"code": _concept(vk.LOINC, p.code, p.display, p.label),
                                  "valueQuantity": _quantity_out(kind, values[p.name])} for p in kind.parts]
    elif kind is vk.ECG:
        if "heart_rate" in values:
            resource["component"] = [{"code": _concept(vk.LOINC, "8867-4", "Heart rate", "心率"),
                                      "valueQuantity": _quantity_out(vk.HEART_RATE, values["heart_rate"])}]
        if values.get("rhythm"):
            resource["valueString"] = values["rhythm"]
    elif kind is vk.STETHOSCOPE:
        if values.get("site"):
            resource["bodySite"] = {"text": values["site"]}
    else:
        resource["valueQuantity"] = _quantity_out(kind, values["value"])
        if values.get("context"):
            resource["extension"] = [{"url": vk.GLUCOSE_CONTEXT_URL, "valueCode": values["context"]}]
    attachment = _fetched(obs, "attachment")
    if obs.attachment_id:
        att = {"url": f"{base_url}/fhir/Binary/{obs.attachment_id}"}
        if attachment is not None:
            att.update(contentType=attachment.content_type, size=attachment.size,
                       title=attachment.original_name or f"{kind.label}.{attachment.path.rsplit('.', 1)[-1]}")
        resource.setdefault("extension", []).append({"url": vk.ATTACHMENT_URL, "valueAttachment": att})
    return resource


def _fetched(obs: Observation, name: str):
    """A related row if it was fetched (prefetch_related / fetch_related), else None — never a query here."""
    value = obs.__dict__.get(f"_{name}")
    return value if isinstance(value, Model) else None
