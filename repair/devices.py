"""Devices: create and update them, find them by label number or nameplate, set owners, and the card that pages
and WeChat replies render.

System numbers are ours (printed on the label, QR scene ``d:<system_number>``): stored upper-case, half-width and
without spaces, so a number typed on a phone finds its device. Nameplate IDs are the maker's: stored half-width
without spaces, case kept, compared case-insensitively.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from tortoise.exceptions import IntegrityError

from core import audit
from core.errors import Conflict, NotFound, Unprocessable
from core.models import Department, Hospital, User
from repair._shared import clean_text, ref_id, squeeze, transaction
from repair.models import DEVICE_STATUSES, Device, DeviceGroup

DEVICE_STATUS_LABELS = {"in_service": "在用", "under_repair": "维修中", "retired": "已停用"}
# Type codes the project uses, with what people call them; an unknown type is stored as written.
DEVICE_TYPE_LABELS = {
    "ventilator": "呼吸机", "centrifuge": "离心机", "biochemistry_analyser": "生化分析仪",
    "immunoassay_analyser": "免疫分析仪", "haematology_analyser": "血细胞分析仪", "monitor": "监护仪",
    "infusion_pump": "输液泵", "syringe_pump": "注射泵", "defibrillator": "除颤仪", "anaesthesia_machine": "麻醉机",
    "ultrasound": "超声诊断仪", "ecg": "心电图机", "ct": "CT", "dr": "DR", "endoscope": "内窥镜",
}
_TYPE_BY_LABEL = {label: code for code, label in DEVICE_TYPE_LABELS.items()}
_SYSTEM_NUMBER = re.compile(r"^[A-Z0-9][A-Z0-9_.-]{0,31}$")
# Fields ``update_device`` may change. The system number and hospital are fixed: printed labels carry them.
EDITABLE = ("nameplate_id", "name", "model", "device_type", "manufacturer", "department", "install_date",
            "maintenance_score", "status", "owner")
_MAX_LENGTHS = {"nameplate_id": ("铭牌号", 64), "name": ("设备名称", 64), "model": ("型号", 64),
                "device_type": ("设备类型", 32), "manufacturer": ("厂家", 64)}


def normalise_system_number(text: Any) -> str:
    return squeeze(text).upper()


def normalise_nameplate(text: Any) -> str:
    return squeeze(text)


def device_type_code(text: Any) -> str:
    """"呼吸机" → "ventilator"; a code or an unknown type comes back trimmed."""
    cleaned = clean_text(text)
    return _TYPE_BY_LABEL.get(cleaned, cleaned)


def device_type_label(code: str) -> str:
    return DEVICE_TYPE_LABELS.get(code, code)


def check_system_number(text: Any) -> str:
    number = normalise_system_number(text)
    if not number:
        raise Unprocessable("请填写系统编号", code="system_number_missing")
    if not _SYSTEM_NUMBER.match(number):
        raise Unprocessable(f"系统编号“{number}”格式不对：只能用字母、数字和 - _ .，最多 32 位",
                            code="invalid_system_number")
    return number


def clean_values(values: dict) -> dict:
    """Validate and normalise device fields (those present) without touching the database.

    Raises ``Unprocessable`` with a Chinese message naming the field; used by the services and the importer.
    """
    out: dict = {}
    for key, value in values.items():
        if key == "nameplate_id":
            out[key] = normalise_nameplate(value)
        elif key == "model":
            out[key] = clean_text(value, nfkc=True)
        elif key == "device_type":
            out[key] = device_type_code(value)
            if not out[key]:
                raise Unprocessable("请填写设备类型", code="device_type_missing")
        elif key in ("name", "manufacturer"):
            out[key] = clean_text(value)
            if key == "name" and not out[key]:
                raise Unprocessable("请填写设备名称", code="name_missing")
        elif key == "maintenance_score":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                raise Unprocessable("维护评分须为 0–100 的整数", code="invalid_score")
            out[key] = value
        elif key == "status":
            if value not in DEVICE_STATUSES:
                raise Unprocessable(f"设备状态“{value}”无效，可选：在用、维修中、已停用", code="invalid_status")
            out[key] = value
        elif key == "install_date":
            out[key] = _date(value)
        else:
            out[key] = value
        if key in _MAX_LENGTHS and len(out[key]) > _MAX_LENGTHS[key][1]:
            label, limit = _MAX_LENGTHS[key]
            raise Unprocessable(f"{label}太长（最多 {limit} 个字）", code="too_long")
    return out


def _date(value: Any) -> date | None:
    if value is None or isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, datetime):
        return value.date()
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise Unprocessable("安装日期无效，请写成 2021-03-05", code="invalid_date") from None


async def department_in_hospital(hospital_id: int, department, conn) -> Department | None:
    if department is None:
        return None
    dep = await Department.get_or_none(id=ref_id(department), using_db=conn)
    if dep is None or dep.hospital_id != hospital_id:
        raise Unprocessable("科室不属于该医院", code="department_of_other_hospital")
    return dep


async def owner_in_hospital(hospital_id: int, owner, conn) -> User | None:
    if owner is None:
        return None
    user = await User.get_or_none(id=ref_id(owner), using_db=conn)
    if user is None or not user.active:
        raise NotFound("负责人不存在或已停用", code="owner_not_found")
    if user.hospital_id != hospital_id:
        raise Unprocessable("负责人须为本医院的人员", code="owner_of_other_hospital")
    return user


def _snapshot(device: Device) -> dict:
    return {"system_number": device.system_number, "nameplate_id": device.nameplate_id, "name": device.name,
            "model": device.model, "device_type": device.device_type, "manufacturer": device.manufacturer,
            "department": device.department_id, "install_date": _iso(device.install_date),
            "maintenance_score": device.maintenance_score, "status": device.status, "owner": device.owner_id}


def _iso(value):
    return value.isoformat() if isinstance(value, date) else value


async def create_device(hospital: Hospital | int, *, system_number: str, name: str, device_type: str,
                        nameplate_id: str = "", model: str = "", manufacturer: str = "",
                        department: Department | int | None = None, install_date: date | None = None,
                        owner: User | int | None = None, maintenance_score: int = 100, status: str = "in_service",
                        actor: User | None = None, actor_label: str | None = None, using_db=None) -> Device:
    """Store a new device of a hospital. With ``using_db`` it joins the caller's transaction (and the caller
    rebuilds service groups when owners changed)."""
    number = check_system_number(system_number)
    values = clean_values({"nameplate_id": nameplate_id, "name": name, "model": model, "device_type": device_type,
                           "manufacturer": manufacturer, "install_date": install_date,
                           "maintenance_score": maintenance_score, "status": status})
    async with transaction(using_db) as conn:
        hospital_obj = hospital if isinstance(hospital, Hospital) else \
            await Hospital.get_or_none(id=hospital, using_db=conn)
        if hospital_obj is None:
            raise NotFound("医院不存在", code="hospital_not_found")
        if await Device.filter(system_number=number).using_db(conn).exists():
            raise Conflict(f"系统编号“{number}”已被使用", code="system_number_taken")
        dep = await department_in_hospital(hospital_obj.id, department, conn)
        owner_user = await owner_in_hospital(hospital_obj.id, owner, conn)
        try:
            device = await Device.create(hospital=hospital_obj, department=dep, system_number=number,
                                         owner=owner_user, using_db=conn, **values)
        except IntegrityError:  # the same number stored by someone else since the check above
            raise Conflict(f"系统编号“{number}”已被使用", code="system_number_taken") from None
        await audit.record("device.created", "device", number, actor=actor, actor_label=actor_label,
                           changes=_snapshot(device), using_db=conn)
    if owner_user is not None and using_db is None:
        await _rebuild(hospital_obj.id)
    return device


async def get_device(device: Device | int) -> Device:
    found = await Device.get_or_none(id=ref_id(device))
    if found is None:
        raise NotFound("设备不存在", code="device_not_found")
    return found


def diff_device(device: Device, values: dict) -> dict:
    """{field: [old, new]} for the cleaned ``values`` that differ from the stored device (foreign keys as ids)."""
    changes = {}
    for key, new in values.items():
        old = getattr(device, f"{key}_id") if key in ("department", "owner") else getattr(device, key)
        new = ref_id(new) if key in ("department", "owner") else new
        if old != new:
            changes[key] = [_iso(old), _iso(new)]
    return changes


async def update_device(device: Device | int, *, actor: User | None = None, actor_label: str | None = None,
                        using_db=None, **fields: Any) -> Device:
    """Change some of ``EDITABLE``; only real changes are stored and audited (as {field: [old, new]})."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise Unprocessable("系统编号和所属医院不能修改" if unknown & {"system_number", "hospital", "hospital_id"}
                            else f"不能修改的字段：{', '.join(sorted(unknown))}", code="field_not_editable")
    refs = {k: fields.pop(k) for k in ("department", "owner") if k in fields}
    values = clean_values(fields)
    async with transaction(using_db) as conn:
        current = await Device.filter(id=ref_id(device)).using_db(conn).select_for_update().first()
        if current is None:
            raise NotFound("设备不存在", code="device_not_found")
        if "department" in refs:
            values["department"] = await department_in_hospital(current.hospital_id, refs["department"], conn)
        if "owner" in refs:
            values["owner"] = await owner_in_hospital(current.hospital_id, refs["owner"], conn)
        changes = diff_device(current, values)
        if not changes:
            return current
        for key in changes:
            setattr(current, key, values[key])
        await current.save(using_db=conn)
        await audit.record("device.updated", "device", current.system_number, actor=actor, actor_label=actor_label,
                           changes=changes, using_db=conn)
    if "owner" in changes and using_db is None:
        await _rebuild(current.hospital_id)
    return current


async def set_owner(device: Device | int, owner: User | int | None, *, actor: User | None = None,
                    actor_label: str | None = None) -> Device:
    """Make a person of the device's hospital its owner (``None`` removes the owner); service groups follow."""
    return await update_device(device, owner=owner, actor=actor, actor_label=actor_label)


async def _rebuild(hospital_id: int) -> None:
    from repair.service_groups import rebuild_service_groups  # service groups read devices; import at use

    await rebuild_service_groups(hospital_id)


async def get_by_scene_number(system_number: str) -> Device:
    """The device of a QR scene ``d:<system_number>`` (or a typed system number)."""
    device = await Device.get_or_none(system_number=normalise_system_number(system_number))
    if device is None:
        raise NotFound("未找到该设备，请核对设备标签上的系统编号", code="device_not_found")
    return device


async def find_by_identifier(text: str, hospital_id: int | None = None) -> list[Device]:
    """Devices a person means by what they typed: the system number (one device), else the nameplate ID.

    Several devices may share a nameplate ID across hospitals (makers' serials are not unique among makers): all
    are returned, so the caller can ask which one. Empty when nothing matches.
    """
    number = normalise_system_number(text)
    if not number:
        return []
    query = Device.filter(system_number=number)
    if hospital_id is not None:
        query = query.filter(hospital_id=hospital_id)
    device = await query.first()
    if device is not None:
        return [device]
    query = Device.filter(nameplate_id__iexact=normalise_nameplate(text))
    if hospital_id is not None:
        query = query.filter(hospital_id=hospital_id)
    return await query.order_by("hospital_id", "system_number")


async def list_hospital_devices(hospital_id: int, department_id: int | None = None) -> list[Device]:
    query = Device.filter(hospital_id=hospital_id)
    if department_id is not None:
        query = query.filter(department_id=department_id)
    return await query.order_by("system_number")


async def device_card(device: Device) -> dict:
    """What a page or a WeChat reply shows about one device."""
    hospital = await Hospital.get(id=device.hospital_id)
    department = await Department.get_or_none(id=device.department_id) if device.department_id else None
    group = await DeviceGroup.get_or_none(id=device.group_id) if device.group_id else None
    owner = await User.get_or_none(id=device.owner_id) if device.owner_id else None
    return {
        "id": device.id, "system_number": device.system_number, "scene": device.scene,
        "nameplate_id": device.nameplate_id, "name": device.name, "model": device.model,
        "device_type": device.device_type, "device_type_label": device_type_label(device.device_type),
        "manufacturer": device.manufacturer, "hospital_id": device.hospital_id, "hospital": hospital.name,
        "department": department.name if department else "", "status": device.status,
        "status_label": DEVICE_STATUS_LABELS.get(device.status, device.status),
        "repair_count": device.repair_count, "maintenance_score": device.maintenance_score,
        "group_id": group.id if group and group.active else None,
        "group": group.name if group and group.active else None,
        "owner": owner.label() if owner else None, "install_date": _iso(device.install_date),
    }


def card_text(card: dict) -> str:
    """The card as a WeChat text reply."""
    title = card["name"] + (f"（{card['model']}）" if card["model"] else "")
    lines = [f"设备：{title}", f"系统编号：{card['system_number']}", f"类型：{card['device_type_label']}",
             f"医院：{card['hospital']}" + (f"　科室：{card['department']}" if card["department"] else ""),
             f"状态：{card['status_label']}",
             f"维修次数：{card['repair_count']}　维护评分：{card['maintenance_score']}"]
    if card["group"]:
        lines.append(f"所属设备组：{card['group']}")
    return "\n".join(lines)
