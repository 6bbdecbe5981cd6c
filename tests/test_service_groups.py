"""Service groups on both databases: who is in them, and how they follow changes of people, owners and groups."""

from __future__ import annotations

import pytest

from core.models import AuditEntry, Hospital, User
from repair import devices, groups
from repair.models import ServiceGroup, ServiceGroupMember
from repair.service_groups import members_of, rebuild_service_groups


@pytest.fixture
async def people(db):
    hospital = await Hospital.create(name="市第一人民医院")
    other = await Hospital.create(name="市中心医院")
    p = dict(hospital=hospital, other=other)
    p["agent"] = await User.create(name="李客服", role="agent")
    await p["agent"].served_hospitals.add(hospital, other)
    p["idle_agent"] = await User.create(name="周客服", role="agent")  # serves no hospital of ours
    await p["idle_agent"].served_hospitals.add(other)
    p["engineer"] = await User.create(name="张工", role="engineer", hospital=hospital)
    p["visiting"] = await User.create(name="孙工", role="engineer", hospital=other)
    await p["visiting"].served_hospitals.add(hospital)
    p["nurse"] = await User.create(name="王护士", role="staff", hospital=hospital)
    p["keeper"] = await User.create(name="陈设备", role="staff", hospital=hospital)
    p["gone"] = await User.create(name="吴离职", role="staff", hospital=hospital, active=False)
    p["elsewhere"] = await User.create(name="刘医生", role="staff", hospital=other)
    p["v1"] = await devices.create_device(hospital, system_number="A1", name="呼吸机", device_type="ventilator",
                                          owner=p["keeper"])
    p["v2"] = await devices.create_device(hospital, system_number="A2", name="分析仪", model="AU5800",
                                          device_type="biochemistry_analyser")
    return p


async def roles(hospital_id: int, device_group_id: int | None = None) -> dict[str, str]:
    return {m.user.name: m.role for m in await members_of(hospital_id, device_group_id)}


async def test_the_hospital_group_holds_agents_engineers_owners_and_staff(people):
    p = people
    (main,) = await rebuild_service_groups(p["hospital"].id)
    assert main.name == "市第一人民医院设备服务群" and main.device_group_id is None
    assert await roles(p["hospital"].id) == {"李客服": "agent", "张工": "engineer", "孙工": "engineer",
                                             "陈设备": "owner", "王护士": "staff"}
    assert [m.user.name for m in await members_of(p["hospital"].id)] == ["李客服", "孙工", "张工", "陈设备", "王护士"]


async def test_a_rebuild_is_idempotent(people):
    p = people
    await rebuild_service_groups(p["hospital"].id)
    rows = sorted(await ServiceGroupMember.all().values_list("id", "user_id", "role"))
    audits = await AuditEntry.filter(entity="service_group").count()
    await rebuild_service_groups(p["hospital"].id)
    assert sorted(await ServiceGroupMember.all().values_list("id", "user_id", "role")) == rows
    assert await AuditEntry.filter(entity="service_group").count() == audits
    assert await ServiceGroup.filter(hospital=p["hospital"]).count() == 1


async def test_membership_follows_people_and_owners(people):
    p = people
    await rebuild_service_groups(p["hospital"].id)
    # The nurse leaves, the agent stops serving this hospital, the nurse's colleague gets a device.
    await User.filter(id=p["nurse"].id).update(active=False)
    await p["agent"].served_hospitals.remove(p["hospital"])
    await rebuild_service_groups(p["hospital"].id)
    assert await roles(p["hospital"].id) == {"张工": "engineer", "孙工": "engineer", "陈设备": "owner"}
    entry = await AuditEntry.filter(action="service_group.updated").order_by("-id").first()
    assert entry.changes["removed"] == sorted([p["agent"].id, p["nurse"].id])

    late = await User.create(name="郑护士", role="staff", hospital=p["hospital"])
    await devices.set_owner(p["v2"], late)  # the device service rebuilds by itself
    assert (await roles(p["hospital"].id))["郑护士"] == "owner"
    await devices.set_owner(p["v1"], None)
    assert (await roles(p["hospital"].id))["陈设备"] == "staff"


async def test_an_owned_device_group_gets_its_own_service_group(people):
    p = people
    line = await groups.create_group(p["hospital"], "生化线", [p["v2"].id], owner=p["nurse"])
    assert await roles(p["hospital"].id, line.id) == {"李客服": "agent", "张工": "engineer", "孙工": "engineer",
                                                      "王护士": "owner"}
    assert (await roles(p["hospital"].id))["王护士"] == "owner"  # a group owner owns equipment of the hospital
    await groups.add_member(line, p["v1"])  # its device's owner joins
    assert (await roles(p["hospital"].id, line.id))["陈设备"] == "owner"
    sg = await ServiceGroup.get(device_group_id=line.id)
    assert sg.name == "市第一人民医院·生化线服务群"

    await groups.update_group(line, owner=None)
    assert not await ServiceGroup.filter(device_group_id=line.id).exists()
    assert await members_of(p["hospital"].id, line.id) == []
    assert await AuditEntry.filter(action="service_group.removed", entity_id=str(sg.id)).exists()


async def test_a_merged_away_groups_service_group_goes(people):
    p = people
    keep = await groups.create_group(p["hospital"], "甲线", [p["v1"].id])
    away = await groups.create_group(p["hospital"], "乙线", [p["v2"].id], owner=p["nurse"])
    assert await ServiceGroup.filter(device_group_id=away.id).exists()
    await groups.merge_groups(keep, away)
    # The owner came along with the merge: the kept group now has the service group, the source none.
    assert not await ServiceGroup.filter(device_group_id=away.id).exists()
    assert (await roles(p["hospital"].id, keep.id))["王护士"] == "owner"
