"""Hospitals and their departments, as administrators manage them (every change audited).

A refused change names the field it is about (``details.field``) and leaves nothing changed.
"""

from __future__ import annotations

from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core import audit
from core.errors import BadRequest, Conflict, NotFound
from core.models import Department, Hospital, User
from core.people import require_admin
from core.textutil import storable

HOSPITAL_FIELDS = ("name", "aliases", "address", "latitude", "longitude")


def _text(value: Any, field: str, label: str, limit: int, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{label}须为文字", code="invalid_field", details={"field": field})
    value = " ".join(storable(value).split())
    if required and not value:
        raise BadRequest(f"请填写{label}", code="invalid_field", details={"field": field})
    if len(value) > limit:
        raise BadRequest(f"{label}不能超过 {limit} 个字", code="invalid_field", details={"field": field})
    return value


def _coordinate(value: Any, field: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        label = "纬度" if field == "latitude" else "经度"
        raise BadRequest(f"{label}须为 {low:g} 到 {high:g} 之间的数", code="invalid_field", details={"field": field})
    return float(value)


def _hospital_values(data: dict) -> dict:
    values: dict = {}
    if "name" in data:
        values["name"] = _text(data["name"], "name", "医院名称", 128, required=True)
    if "aliases" in data:
        values["aliases"] = _text(data["aliases"] or "", "aliases", "别名", 512)
    if "address" in data:
        values["address"] = _text(data["address"] or "", "address", "地址", 256)
    if "latitude" in data:
        values["latitude"] = _coordinate(data["latitude"], "latitude", -90, 90)
    if "longitude" in data:
        values["longitude"] = _coordinate(data["longitude"], "longitude", -180, 180)
    return values


def _name_taken(name: str) -> Conflict:
    return Conflict(f"医院“{name}”已存在", code="hospital_exists", details={"field": "name"})


async def list_hospitals(scope: set[int] | None = None) -> list[Hospital]:
    query = Hospital.all() if scope is None else Hospital.filter(id__in=sorted(scope))
    return await query.order_by("id")


async def get_hospital(hospital_id: int) -> Hospital:
    hospital = await Hospital.get_or_none(id=hospital_id)
    if hospital is None:
        raise NotFound("医院不存在", code="hospital_not_found", details={"field": "hospital_id"})
    return hospital


async def create_hospital(admin: User, data: dict) -> Hospital:
    require_admin(admin)
    values = _hospital_values({k: v for k, v in data.items() if k in HOSPITAL_FIELDS})
    if "name" not in values:
        raise BadRequest("请填写医院名称", code="invalid_field", details={"field": "name"})
    if await Hospital.exists(name=values["name"]):
        raise _name_taken(values["name"])
    try:
        async with in_transaction() as conn:
            hospital = await Hospital.create(**values, using_db=conn)
            await audit.record("hospital.created", "hospital", hospital.id, actor=admin, changes=values,
                               using_db=conn)
    except IntegrityError:  # created by someone else meanwhile
        raise _name_taken(values["name"]) from None
    return hospital


async def update_hospital(admin: User, hospital_id: int, data: dict) -> Hospital:
    require_admin(admin)
    values = _hospital_values({k: v for k, v in data.items() if k in HOSPITAL_FIELDS})
    try:
        async with in_transaction() as conn:
            hospital = await Hospital.filter(id=hospital_id).using_db(conn).select_for_update().first()
            if hospital is None:
                raise NotFound("医院不存在", code="hospital_not_found", details={"field": "hospital_id"})
            changes = {k: [getattr(hospital, k), v] for k, v in values.items() if getattr(hospital, k) != v}
            if "name" in changes and await Hospital.filter(name=values["name"]).exclude(id=hospital.id) \
                    .using_db(conn).exists():
                raise _name_taken(values["name"])
            if changes:
                for k, (_, v) in changes.items():
                    setattr(hospital, k, v)
                await hospital.save(using_db=conn, update_fields=list(changes))
                await audit.record("hospital.updated", "hospital", hospital.id, actor=admin, changes=changes,
                                   using_db=conn)
    except IntegrityError:
        raise _name_taken(values.get("name", "")) from None
    return hospital


async def list_departments(hospital_id: int) -> list[Department]:
    await get_hospital(hospital_id)
    return await Department.filter(hospital_id=hospital_id).order_by("name")


async def create_department(admin: User, hospital_id: int, name: Any) -> Department:
    require_admin(admin)
    hospital = await get_hospital(hospital_id)
    name = _text(name, "name", "科室名称", 64, required=True)
    taken = Conflict(f"{hospital.name}已有科室“{name}”", code="department_exists", details={"field": "name"})
    if await Department.exists(hospital_id=hospital.id, name=name):
        raise taken
    try:
        async with in_transaction() as conn:
            department = await Department.create(hospital=hospital, name=name, using_db=conn)
            await audit.record("department.created", "hospital", hospital.id, actor=admin,
                               changes={"department": department.id, "name": name}, using_db=conn)
    except IntegrityError:
        raise taken from None
    return department
