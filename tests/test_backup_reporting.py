"""Reporting without the label: hospital search, on-site device lists, "my devices" claims."""

from __future__ import annotations

import pytest

from core.errors import Conflict, Forbidden
from core.models import Hospital, User
from repair import claims, lookup
from repair.models import Device, DeviceGroup, Ticket


@pytest.fixture
async def city(db):
    first = await Hospital.create(name="市第一人民医院", aliases="市一院,一院", latitude=30.2741, longitude=120.1551)
    central = await Hospital.create(name="市中心医院", latitude=30.2500, longitude=120.1700)
    await Hospital.create(name="省妇幼保健院")
    nurse = await User.create(name="王护士", role="staff", hospital=first, openid="oNurse")
    owner = await User.create(name="赵主任", role="staff", hospital=first, openid="oOwner")
    admin = await User.create(name="管理员", role="admin", openid="oAdmin")
    stranger = await User.create(name="外院", role="staff", hospital=central, openid="oStranger")
    vent = await Device.create(hospital=first, system_number="D0001", nameplate_id="SN-1", name="呼吸机",
                               device_type="ventilator", owner=owner)
    await Device.create(hospital=first, system_number="D0002", nameplate_id="SN-2", name="旧监护仪",
                        device_type="monitor", status="retired")
    line = await DeviceGroup.create(hospital=first, name="生化流水线", owner=owner)
    return dict(first=first, central=central, nurse=nurse, owner=owner, admin=admin, stranger=stranger,
                vent=vent, line=line)


@pytest.mark.parametrize("query, expected", [
    ("第一人民", "市第一人民医院"), ("市一院", "市第一人民医院"), ("市　中心（医院）", "市中心医院"), ("中心", "市中心医院"),
    ("妇幼", "省妇幼保健院"), ("人民医院", "市第一人民医院"),
])
async def test_hospital_search_finds_by_name_alias_and_width(city, query, expected):
    found = [m.hospital.name for m in await lookup.search_hospitals(query)]
    assert found[0] == expected


async def test_nonsense_finds_nothing(city):
    assert await lookup.search_hospitals("xyz") == []


async def test_device_list_only_for_bound_people_on_site(city):
    devices = await lookup.hospital_devices_for(city["nurse"], city["first"].id, latitude=30.2745, longitude=120.1555)
    assert [d.system_number for d in devices] == ["D0001"]  # the retired one is not offered
    with pytest.raises(Forbidden) as refused:
        await lookup.hospital_devices_for(city["stranger"], city["first"].id)
    assert refused.value.code == "not_bound_to_hospital"
    with pytest.raises(Forbidden) as far:
        await lookup.hospital_devices_for(city["nurse"], city["first"].id, latitude=31.23, longitude=121.47)
    assert far.value.code == "too_far"
    assert len(await lookup.hospital_devices_for(city["admin"], city["first"].id)) == 1


async def test_claim_approval_and_my_devices_with_history(city):
    made = await claims.claim(city["nurse"], device_id=city["vent"].id)
    assert made.state == "pending"
    assert await claims.my_devices(city["nurse"]) == []
    assert [c.id for c in await claims.pending_for(city["owner"])] == [made.id]
    with pytest.raises(Forbidden):
        await claims.decide(made.id, city["stranger"], approve=True)
    await claims.decide(made.id, city["owner"], approve=True)
    with pytest.raises(Conflict):
        await claims.decide(made.id, city["owner"], approve=False)
    await Ticket.create(number="R2611230001", hospital=city["first"], device=city["vent"], description="报警")
    mine = await claims.my_devices(city["nurse"])
    assert [(m["kind"], m["item"].system_number, [t.number for t in m["tickets"]]) for m in mine] == \
        [("device", "D0001", ["R2611230001"])]
    group_claim = await claims.claim(city["admin"], group_id=city["line"].id)
    assert group_claim.state == "approved"  # an administrator needs nobody's approval
    with pytest.raises(Forbidden):
        await claims.claim(city["stranger"], device_id=city["vent"].id)
