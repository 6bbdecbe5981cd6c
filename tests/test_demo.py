"""Demo data on both databases: what it makes, and that loading it twice changes nothing."""

from __future__ import annotations

import json

from core.demo import load_all
from core.models import AuditEntry, Hospital, InvitationCode, User
from knowledge.demo import SEED
from repair.demo import load_demo
from repair.models import Device, DeviceGroup, ServiceGroup
from repair.service_groups import members_of


async def counts() -> tuple:
    return (await Hospital.all().count(), await Device.all().count(), await DeviceGroup.all().count(),
            await User.all().count(), await InvitationCode.all().count(), await AuditEntry.all().count())


async def test_demo_data_is_loaded_once(db):
    lines = await load_all(db)
    assert lines[0].startswith("demo: 2 hospitals")
    first = await Hospital.get(name="滨江市第一人民医院")
    assert first.address and first.latitude and first.longitude
    assert await Device.filter(hospital=first).count() == 8 and await Device.all().count() == 13
    assert len({d.device_type for d in await Device.all()}) >= 6
    line = await DeviceGroup.get(name="检验科生化免疫流水线").prefetch_related("members")
    assert sorted(d.system_number for d in line.members) == ["A0001", "A0002", "A0003"]
    code = await InvitationCode.get().prefetch_related("created_by", "hospital")
    assert (code.created_by.role, code.hospital.name) == ("admin", "滨江市第一人民医院")
    assert code.code in lines[1]
    assert "/h5/repair?t=" in lines[2]  # a page to try in a browser
    shipped = len(json.loads(SEED.read_text()))
    assert lines[3].startswith("demo: knowledge base") and f"新增 {shipped} 条" in lines[3]
    for hospital in await Hospital.all():
        assert "owner" in {m.role for m in await members_of(hospital.id)}
    assert await ServiceGroup.filter(device_group_id=line.id).exists()

    before = await counts()
    assert await load_all(db) == ["demo data not loaded: the database already has hospitals"]
    assert await load_demo() == []
    assert await counts() == before
