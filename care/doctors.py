"""Doctors for a patient's advice: the departments it names, doctors ranked by specialty fit and availability.

- Departments come from the advice (the rules name them for each abnormal reading, most pressing first); a doctor
  belongs to one when their department is its name or one of its aliases in the rule table (HIS spell them
  differently: 心内科 / 心血管内科).
- A doctor who has seen the patient before in a recommended department (the patient's chronic-disease doctor) is
  proposed first: the visit history knows them, by the doctor's department or the visit's.
- Then the department's other doctors: most specialty words shared with the advice first, then whoever has the
  earliest free slot; doctors with no free slot come last.
- Availability is ``PractitionerSlot`` rows, from the HIS's FHIR ``Schedule``/``Slot`` (``sync_from_his``, or
  ``python -m care.doctors sync-his`` against ``HIS_BASE_URL``) or added here (``add_slot``); booking one is
  ``care.consultations``' business.
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.expressions import Q

from core.errors import BadRequest, NotFound
from care import advice as advice_rules
from care.advice import GRADE_NAMES, Advice, RuleTable
from care.doctor_models import SLOT_STATES, PractitionerSlot
from care.models import Patient, Practitioner, Visit

KIND_NAMES = {"blood_pressure": "血压", "heart_rate": "心率", "body_temperature": "体温", "spo2": "血氧",
              "respiratory_rate": "呼吸", "blood_glucose": "血糖", "bmi": "体重指数"}
SLOT_HORIZON = timedelta(days=60)  # free slots further ahead than this do not count as "available"
DEFAULT_LIMIT = 10


@dataclass
class Recommendation:
    practitioner: Practitioner
    reason: str  # one line, for the patient
    next_slot: PractitionerSlot | None
    from_history: bool  # the patient has seen this doctor in a recommended department
    department: str = ""  # the recommended department the doctor is in
    specialty_fit: list[str] | None = None  # the doctor's specialties matching the advice


def _fold(text: str) -> str:
    return str(text or "").strip().casefold()


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- slots -----------------------------------------------------------------------------------------------------------
def _aware(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise BadRequest(f"{name} 须为日期时间", code="invalid_field", details={"field": name})
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


async def add_slot(practitioner: Practitioner, start: datetime, end: datetime, *, status: str = "free",
                   his_id: str | None = None) -> PractitionerSlot:
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        raise BadRequest("结束时间须晚于开始时间", code="invalid_field", details={"field": "end"})
    if status not in SLOT_STATES:
        raise BadRequest("时段状态须为 free 或 booked", code="invalid_field", details={"field": "status"})
    return await PractitionerSlot.create(practitioner=practitioner, start=start, end=end, status=status,
                                         his_id=his_id)


async def free_slots(practitioner: Practitioner | int, *, after: datetime | None = None,
                     limit: int = 20) -> list[PractitionerSlot]:
    """The doctor's free slots starting after ``after`` (now), earliest first."""
    pid = practitioner if isinstance(practitioner, int) else practitioner.id
    after = after or _now()
    return await PractitionerSlot.filter(practitioner_id=pid, status="free", start__gt=after,
                                         start__lt=after + SLOT_HORIZON).order_by("start", "id").limit(limit)


async def _next_free(ids: list[int], after: datetime) -> dict[int, PractitionerSlot]:
    found: dict[int, PractitionerSlot] = {}
    if not ids:
        return found
    for slot in await PractitionerSlot.filter(practitioner_id__in=ids, status="free", start__gt=after,
                                              start__lt=after + SLOT_HORIZON).order_by("start", "id"):
        found.setdefault(slot.practitioner_id, slot)
    return found


# -- recommendation --------------------------------------------------------------------------------------------------
def _department_of(table: RuleTable, departments: list[str], *names: str) -> int | None:
    """The rank (index in ``departments``) of the first recommended department any of ``names`` is."""
    folded = {_fold(n) for n in names if n}
    for rank, department in enumerate(departments):
        if folded & table.department_names(department):
            return rank
    return None


def _fit(practitioner: Practitioner, wanted: list[str]) -> list[str]:
    """The advice's specialty words that the doctor's specialties mention, in the advice's order."""
    theirs = " ".join(_fold(s) for s in practitioner.specialties or [] if isinstance(s, str))
    return [w for w in wanted if _fold(w) and _fold(w) in theirs]


def _when(slot: PractitionerSlot | None, tz: ZoneInfo) -> str:
    if slot is None:
        return "暂无可约时段"
    local = slot.start.astimezone(tz)
    return f"最近可约 {local.month}月{local.day}日 {local:%H:%M}"


def _why(table: RuleTable, advice: Advice) -> dict[str, str]:
    """department -> what brought it ("血压需留意"), from the most pressing item naming it."""
    by_rule = {r.id: r for r in table.rules}
    out: dict[str, str] = {}
    for item in advice.items:
        rule = by_rule.get(item.get("rule"))
        if rule is None or item["grade"] == "normal":
            continue
        for department in rule.departments:
            out.setdefault(department, f"{KIND_NAMES.get(item['kind'], item['kind'])}{GRADE_NAMES[item['grade']]}")
    return out


async def _visits_by_doctor(patient: Patient) -> dict[int, list[Visit]]:
    visits: dict[int, list[Visit]] = defaultdict(list)
    for visit in await Visit.filter(patient_id=patient.id, practitioner_id__not_isnull=True) \
            .prefetch_related("practitioner"):
        visits[visit.practitioner_id].append(visit)
    return visits


async def recommend(patient: Patient, advice: Advice, *, now: datetime | None = None, limit: int = DEFAULT_LIMIT,
                    tz: str = "Asia/Shanghai", table: RuleTable | None = None) -> list[Recommendation]:
    """Doctors for ``advice`` (``care.advice.advise``), best first; empty when nothing calls for a doctor."""
    table = table or advice_rules.current_table()
    departments = list(advice.departments)
    if not departments:
        return []
    now, zone = now or _now(), ZoneInfo(tz)
    doctors = Practitioner.filter(active=True)
    if patient.hospital_id:
        doctors = doctors.filter(Q(hospital_id=patient.hospital_id) | Q(hospital_id__isnull=True))
    history = await _visits_by_doctor(patient)
    candidates: dict[int, tuple[Practitioner, int]] = {}  # id -> (doctor, department rank)
    for doctor in await doctors:
        rank = _department_of(table, departments, doctor.department)
        if rank is not None:
            candidates[doctor.id] = (doctor, rank)
    # A doctor the patient saw in a recommended department counts as that department's, whatever the HIS filed
    # the doctor under (the import may not know departments).
    for pid, visits in history.items():
        doctor = visits[0].practitioner
        if not doctor.active or (patient.hospital_id and doctor.hospital_id not in (None, patient.hospital_id)):
            continue
        ranks = [r for v in visits if (r := _department_of(table, departments, v.department,
                                                           doctor.department)) is not None]
        if ranks:
            candidates[pid] = (doctor, min(ranks))
    slots = await _next_free(list(candidates), now)
    why = _why(table, advice)
    out: list[tuple[tuple, Recommendation]] = []
    for pid, (doctor, rank) in candidates.items():
        department = departments[rank]
        fit = _fit(doctor, advice.specialties)
        slot = slots.get(pid)
        seen = [v for v in history.get(pid, []) if _department_of(table, departments, v.department,
                                                                   doctor.department) is not None]
        if seen:
            last = max((v.start_at for v in seen if v.start_at), default=None)
            local = last.astimezone(zone) if last else None
            reason = f"曾为您诊治 {len(seen)} 次" + (f"（最近 {local:%Y-%m-%d}）" if local else "") + \
                     f"，熟悉您的情况；{department}；{_when(slot, zone)}"
            key = (0, rank, -len(seen), -(last.timestamp() if last else 0))
        else:
            lead = why.get(department)
            reason = (f"{lead} · " if lead else "") + f"{department}" + \
                (f"，擅长{'、'.join(fit)}" if fit else "") + f"；{_when(slot, zone)}"
            key = (1, rank, -len(fit), slot is None, slot.start.timestamp() if slot else 0)
        out.append((key + (doctor.name, pid), Recommendation(doctor, reason, slot, bool(seen), department, fit)))
    out.sort(key=lambda pair: pair[0])
    return [rec for _, rec in out[:limit]]


def slot_out(slot: PractitionerSlot | None) -> dict | None:
    if slot is None:
        return None
    return {"id": slot.id, "start": slot.start.isoformat(), "end": slot.end.isoformat(), "status": slot.status}


def recommendation_out(rec: Recommendation) -> dict:
    """Plain data for an API answer."""
    doctor = rec.practitioner
    return {"practitioner": {"id": doctor.id, "name": doctor.name, "department": doctor.department,
                             "specialties": list(doctor.specialties or [])},
            "department": rec.department, "reason": rec.reason, "from_history": rec.from_history,
            "specialty_fit": rec.specialty_fit or [], "next_slot": slot_out(rec.next_slot)}


async def get_doctor(practitioner_id: Any) -> Practitioner:
    doctor = await Practitioner.get_or_none(id=practitioner_id, active=True) \
        if isinstance(practitioner_id, int) else None
    if doctor is None:
        raise NotFound("未找到该医生", code="practitioner_not_found")
    return doctor


async def search_practitioners(text: str, *, limit: int = 20) -> list[Practitioner]:
    """Active practitioners whose name, department or HIS id holds ``text`` (all when empty), by name; each with
    the console account already linked to it fetched (``account__user``), for the admin screen's doctor picker."""
    q = " ".join((text or "").split())[:64]
    query = Practitioner.filter(active=True)
    if q:
        query = query.filter(Q(name__icontains=q) | Q(department__icontains=q) | Q(his_id__icontains=q))
    return await query.order_by("name", "id").limit(limit).prefetch_related("account__user")


# -- from the HIS ----------------------------------------------------------------------------------------------------
SLOT_STATUS = {"free": "free", "busy": "booked", "busy-unavailable": "booked", "busy-tentative": "booked"}


async def sync_from_his(his, *, since: datetime | None = None) -> dict[str, int]:
    """Departments and specialties (FHIR ``PractitionerRole``) and availability (``Schedule`` + ``Slot``) of the
    practitioners already imported, from the HIS (``integrations.his.HISClient``). Matched by HIS id: running it
    again updates. Slots the HIS marks ``entered-in-error`` are dropped; past slots are skipped."""
    from care.fhir_import import _datetime, _text  # the import's FHIR readers

    since = since or _now()
    counts = {"roles": 0, "slots": 0, "skipped": 0}

    async def doctor_of(reference: Any) -> Practitioner | None:
        ref = str((reference or {}).get("reference") or "") if isinstance(reference, dict) else ""
        rtype, _, rid = ref.rpartition("/")
        if rtype.rsplit("/", 1)[-1] != "Practitioner" or not rid:
            return None
        return await Practitioner.get_or_none(his_id=rid)

    async for role in his.search("PractitionerRole"):
        doctor = await doctor_of(role.get("practitioner"))
        if doctor is None or role.get("active") is False:
            counts["skipped"] += 1
            continue
        specialties = [t for t in (_text(c) for c in role.get("specialty") or []) if t]
        department = str((role.get("organization") or {}).get("display") or "") or \
            next(iter(specialties), "") or doctor.department
        merged = list(dict.fromkeys([*(doctor.specialties or []), *specialties,
                                     *(t for t in (_text(c) for c in role.get("code") or []) if t)]))
        await doctor.update_from_dict({"department": department[:64], "specialties": merged}).save()
        counts["roles"] += 1
    schedules: dict[str, Practitioner] = {}
    async for schedule in his.search("Schedule"):
        for actor in schedule.get("actor") or []:
            doctor = await doctor_of(actor)
            if doctor is not None and schedule.get("id"):
                schedules[str(schedule["id"])] = doctor
                break
    async for slot in his.search("Slot", {"start": f"ge{since.isoformat()}"}):
        ref = str((slot.get("schedule") or {}).get("reference") or "")
        doctor = schedules.get(ref.rpartition("/")[2])
        start, end = _datetime(slot.get("start")), _datetime(slot.get("end"))
        sid = str(slot.get("id") or "")
        if slot.get("status") == "entered-in-error" and sid:
            await PractitionerSlot.filter(his_id=sid).delete()
            continue
        if doctor is None or not sid or start is None or end is None or end <= start or end <= since:
            counts["skipped"] += 1
            continue
        status = SLOT_STATUS.get(slot.get("status"), "booked")
        existing = await PractitionerSlot.get_or_none(his_id=sid)
        if existing is None:
            await PractitionerSlot.create(his_id=sid, practitioner=doctor, start=start, end=end, status=status)
        elif existing.status == "free" or status == "booked":  # a booking made here is not undone by the HIS
            await existing.update_from_dict({"practitioner": doctor, "start": start, "end": end,
                                             "status": status}).save()
        counts["slots"] += 1
    return counts


async def _sync_command() -> int:
    from core.db import close_db, init_db
    from core.errors import AppError
    from core.settings import Settings
    from integrations.his import HISClient

    settings = Settings.from_env()
    if not settings.his_base_url:
        print("未设置 HIS_BASE_URL（医院信息系统的 FHIR 地址）", file=sys.stderr)
        return 1
    await init_db(settings)
    try:
        async with HISClient(settings.his_base_url) as his:
            counts = await sync_from_his(his)
    except AppError as exc:
        print(f"同步失败：{exc.message} {exc.details or ''}".rstrip(), file=sys.stderr)
        return 1
    finally:
        await close_db()
    print(f"已同步：医生科室与专长 {counts['roles']} 位，号源 {counts['slots']} 个，跳过 {counts['skipped']} 条")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["sync-his"]:
        print("用法：python -m care.doctors sync-his", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(asyncio.run(_sync_command()))
