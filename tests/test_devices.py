"""Device services on both databases: validation, normalised numbers, lookups, owners, the card, audit."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from core.errors import Conflict, NotFound, Unprocessable
from core.models import AuditEntry, Department, Hospital, User
from repair import devices
from repair.models import Device


@pytest.fixture
async def world(db):
    first = await Hospital.create(name="市第一人民医院")
    other = await Hospital.create(name="市中心医院")
    icu = await Department.create(hospital=first, name="重症医学科")
    lab = await Department.create(hospital=first, name="检验科")
    foreign_dep = await Department.create(hospital=other, name="急诊科")
    admin = await User.create(name="赵管理员", role="admin")
    nurse = await User.create(name="王护士", role="staff", hospital=first)
    outsider = await User.create(name="刘医生", role="staff", hospital=other)
    return dict(first=first, other=other, icu=icu, lab=lab, foreign_dep=foreign_dep, admin=admin, nurse=nurse,
                outsider=outsider)


async def _ventilator(w, **overrides) -> Device:
    values = dict(system_number="A0001", nameplate_id="SN-778", name="呼吸机", model="V60", device_type="呼吸机",
                  department=w["icu"], actor=w["admin"])
    values.update(overrides)
    return await devices.create_device(w["first"], **values)


async def test_created_device_is_stored_normalised_and_audited(world):
    device = await _ventilator(world, system_number=" ａ０００１ ", nameplate_id="ＳＮ ７７８",
                               install_date=date(2021, 3, 5))
    stored = await Device.get(id=device.id)
    assert (stored.system_number, stored.nameplate_id, stored.device_type) == ("A0001", "SN778", "ventilator")
    assert (stored.department_id, stored.status, stored.maintenance_score) == (world["icu"].id, "in_service", 100)
    entry = await AuditEntry.get(entity="device", entity_id="A0001")
    assert (entry.action, entry.actor_label) == ("device.created", "赵管理员")
    assert entry.changes["install_date"] == "2021-03-05" and entry.changes["name"] == "呼吸机"


@pytest.mark.parametrize("overrides, error, message", [
    (dict(department="foreign_dep"), Unprocessable, "科室不属于该医院"),
    (dict(device_type="  "), Unprocessable, "请填写设备类型"),
    (dict(maintenance_score=101), Unprocessable, "维护评分须为 0–100 的整数"),
    (dict(maintenance_score=-1), Unprocessable, "维护评分须为 0–100 的整数"),
    (dict(status="broken"), Unprocessable, "设备状态“broken”无效，可选：在用、维修中、已停用"),
    (dict(system_number="A 0001/ICU"), Unprocessable, "系统编号“A0001/ICU”格式不对：只能用字母、数字和 - _ .，最多 32 位"),
    (dict(system_number=""), Unprocessable, "请填写系统编号"),
    (dict(name=""), Unprocessable, "请填写设备名称"),
    (dict(owner="outsider"), Unprocessable, "负责人须为本医院的人员"),
])
async def test_bad_input_is_refused_and_nothing_is_stored(world, overrides, error, message):
    overrides = {k: world[v] if k in ("department", "owner") else v for k, v in overrides.items()}
    with pytest.raises(error) as caught:
        await _ventilator(world, **overrides)
    assert caught.value.message == message
    assert await Device.all().count() == 0 and await AuditEntry.all().count() == 0


async def test_system_numbers_are_unique_across_hospitals(world):
    await _ventilator(world)
    with pytest.raises(Conflict) as caught:
        await devices.create_device(world["other"], system_number="a0001", name="离心机", device_type="centrifuge")
    assert caught.value.message == "系统编号“A0001”已被使用"
    with pytest.raises(NotFound):
        await devices.create_device(999_999, system_number="A0009", name="离心机", device_type="centrifuge")
    assert await Device.all().count() == 1


async def test_update_stores_and_audits_only_real_changes(world):
    device = await _ventilator(world)
    await devices.update_device(device, model="V680", status="under_repair", name="呼吸机", actor=world["admin"])
    stored = await Device.get(id=device.id)
    assert (stored.model, stored.status) == ("V680", "under_repair")
    entry = await AuditEntry.filter(action="device.updated").get()
    assert entry.changes == {"model": ["V60", "V680"], "status": ["in_service", "under_repair"]}

    await devices.update_device(device, model="V680")  # nothing new
    assert await AuditEntry.filter(action="device.updated").count() == 1
    with pytest.raises(Unprocessable) as caught:
        await devices.update_device(device, system_number="B0001")
    assert caught.value.message == "系统编号和所属医院不能修改"
    with pytest.raises(Unprocessable):
        await devices.update_device(device, department=world["foreign_dep"])
    assert (await Device.get(id=device.id)).department_id == world["icu"].id


async def test_find_by_system_number_or_nameplate(world):
    mine = await _ventilator(world, nameplate_id="SN 778-X")
    theirs = await devices.create_device(world["other"], system_number="B0001", nameplate_id="sn778-x",
                                         name="呼吸机", device_type="ventilator")
    assert [d.id for d in await devices.find_by_identifier("ａ0001")] == [mine.id]
    assert [d.id for d in await devices.find_by_identifier(" a0001 ")] == [mine.id]
    # The same serial in two hospitals: both, so the caller can ask which one.
    assert [d.id for d in await devices.find_by_identifier("ＳＮ７７８－Ｘ")] == [mine.id, theirs.id]
    assert [d.id for d in await devices.find_by_identifier("sn 778-x", hospital_id=world["other"].id)] == [theirs.id]
    assert await devices.find_by_identifier("A0001", hospital_id=world["other"].id) == []
    assert await devices.find_by_identifier("SN999") == []
    assert await devices.find_by_identifier("   ") == []


async def test_scene_numbers_and_hospital_lists(world):
    await _ventilator(world)
    await _ventilator(world, system_number="A0002", name="离心机", device_type="离心机", department=world["lab"])
    await devices.create_device(world["other"], system_number="B0001", name="监护仪", device_type="monitor")
    assert (await devices.get_by_scene_number("a0002")).name == "离心机"
    with pytest.raises(NotFound) as caught:
        await devices.get_by_scene_number("Z9999")
    assert caught.value.message == "未找到该设备，请核对设备标签上的系统编号"
    listed = await devices.list_hospital_devices(world["first"].id)
    assert [d.system_number for d in listed] == ["A0001", "A0002"]
    in_lab = await devices.list_hospital_devices(world["first"].id, department_id=world["lab"].id)
    assert [d.system_number for d in in_lab] == ["A0002"]


async def test_owner_is_a_person_of_the_hospital(world):
    device = await _ventilator(world)
    await devices.set_owner(device, world["nurse"], actor=world["admin"])
    assert (await Device.get(id=device.id)).owner_id == world["nurse"].id
    entry = await AuditEntry.filter(action="device.updated").get()
    assert entry.changes == {"owner": [None, world["nurse"].id]}
    with pytest.raises(Unprocessable) as caught:
        await devices.set_owner(device, world["outsider"])
    assert caught.value.message == "负责人须为本医院的人员"
    await devices.set_owner(device, None)
    assert (await Device.get(id=device.id)).owner_id is None


async def test_device_card_says_what_a_user_needs(world):
    from repair import groups

    device = await _ventilator(world, maintenance_score=85)
    await groups.create_group(world["first"], "ICU 呼吸机组", [device.id])
    card = await devices.device_card(await Device.get(id=device.id))
    assert {k: card[k] for k in ("system_number", "name", "model", "device_type_label", "hospital", "department",
                                 "status_label", "repair_count", "maintenance_score", "group", "scene")} == {
        "system_number": "A0001", "name": "呼吸机", "model": "V60", "device_type_label": "呼吸机",
        "hospital": "市第一人民医院", "department": "重症医学科", "status_label": "在用", "repair_count": 0,
        "maintenance_score": 85, "group": "ICU 呼吸机组", "scene": "d:A0001"}
    assert devices.card_text(card).splitlines() == [
        "设备：呼吸机（V60）", "系统编号：A0001", "类型：呼吸机", "医院：市第一人民医院　科室：重症医学科", "状态：在用",
        "维修次数：0　维护评分：85", "所属设备组：ICU 呼吸机组"]


async def test_two_creations_of_one_number_at_once_give_one_device_and_a_conflict(world):
    results = await asyncio.gather(*(devices.create_device(world["first"], system_number="A0001", name="呼吸机",
                                                           device_type="ventilator") for _ in range(3)),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "Conflict", "Device"]
    assert await Device.all().count() == 1


async def test_values_as_a_transport_passes_them(world):
    device = await _ventilator(world, install_date="2021-03-05", department=str(world["icu"].id))
    assert (device.install_date, device.department_id) == (date(2021, 3, 5), world["icu"].id)
    for bad in (dict(install_date="5.3.2021"), dict(department="ICU"), dict(maintenance_score="85")):
        with pytest.raises(Unprocessable):
            await devices.update_device(device, **bad)
    assert (await Device.get(id=device.id)).install_date == date(2021, 3, 5)
