"""Device groups on both databases: combine, split, merge, reorder, members, the model-mismatch hint."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import Conflict, Unprocessable
from core.models import AuditEntry, Department, Hospital, User
from repair import devices, groups
from repair.models import Device, DeviceGroup


@pytest.fixture
async def lab(db):
    hospital = await Hospital.create(name="市第一人民医院")
    other = await Hospital.create(name="市中心医院")
    department = await Department.create(hospital=hospital, name="检验科")
    admin = await User.create(name="赵管理员", role="admin")
    owner = await User.create(name="王建国", role="staff", hospital=hospital)
    made = {}
    for number, model in [("L1", "AU5800"), ("L2", "AU5800"), ("L3", "DxI800"), ("L4", "ST16R"), ("L5", "AU680")]:
        made[number] = await devices.create_device(hospital, system_number=number, name="分析仪", model=model,
                                                   device_type="biochemistry_analyser", department=department)
    foreign = await devices.create_device(other, system_number="F1", name="分析仪", model="AU5800",
                                          device_type="biochemistry_analyser")
    return dict(hospital=hospital, other=other, department=department, admin=admin, owner=owner, foreign=foreign,
                **made)


def ids(w, *numbers) -> list[int]:
    return [w[n].id for n in numbers]


async def order(group) -> list[str]:
    return [d.system_number for d in await groups.members(group)]


async def test_combine_keeps_the_order_and_is_audited(lab):
    w = lab
    group = await groups.create_group(w["hospital"], "生化流水线", ids(w, "L3", "L1", "L2"),
                                      ["AU5800", "AU5800", "DxI800"], owner=w["owner"], actor=w["admin"])
    assert await order(group) == ["L3", "L1", "L2"]
    assert [d.group_position for d in await groups.members(group)] == [0, 1, 2]
    stored = await DeviceGroup.get(id=group.id)
    assert (stored.department_id, stored.owner_id, stored.active) == (w["department"].id, w["owner"].id, True)
    entry = await AuditEntry.get(entity="device_group", entity_id=str(group.id))
    assert (entry.action, entry.actor_label, entry.changes["members"]) == ("group.created", "赵管理员",
                                                                          ["L3", "L1", "L2"])
    assert await groups.model_mismatch(group) is None


async def test_a_device_is_in_one_group_and_one_hospital(lab):
    w = lab
    line = await groups.create_group(w["hospital"], "生化流水线", ids(w, "L1", "L2"))
    with pytest.raises(Conflict) as caught:
        await groups.create_group(w["hospital"], "另一条线", ids(w, "L3", "L2"))
    assert caught.value.message == "设备分析仪（L2）已在设备组“生化流水线”中"
    with pytest.raises(Unprocessable) as caught:
        await groups.create_group(w["hospital"], "跨院", [w["L3"].id, w["foreign"].id])
    assert caught.value.message == "设备分析仪（F1）不属于该医院"
    with pytest.raises(Unprocessable):
        await groups.create_group(w["hospital"], "重复", ids(w, "L3", "L3"))
    with pytest.raises(Unprocessable):
        await groups.create_group(w["hospital"], " ", ids(w, "L3"))
    # Nothing of the refused attempts was stored: L3 is still free, one group exists.
    assert (await Device.get(id=w["L3"].id)).group_id is None
    assert await DeviceGroup.all().count() == 1 and await order(line) == ["L1", "L2"]


async def test_two_combines_racing_for_one_device_give_it_to_one(lab):
    w = lab
    results = await asyncio.gather(groups.create_group(w["hospital"], "甲线", ids(w, "L1", "L2")),
                                   groups.create_group(w["hospital"], "乙线", ids(w, "L2", "L3")),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "DeviceGroup"]
    assert await DeviceGroup.all().count() == 1
    winner = next(r for r in results if isinstance(r, DeviceGroup))
    assert (await Device.get(id=w["L2"].id)).group_id == winner.id


async def test_split_moves_parts_and_their_expected_models(lab):
    w = lab
    line = await groups.create_group(w["hospital"], "检验流水线", ids(w, "L1", "L2", "L3", "L4"),
                                     ["AU5800", "AU5800", "DxI800", "ST16R"], owner=w["owner"])
    (immuno,) = await groups.split_group(line, [ids(w, "L4", "L3")], ["免疫线"], actor=w["admin"])
    assert await order(line) == ["L1", "L2"] and await order(immuno) == ["L4", "L3"]
    line, immuno = await DeviceGroup.get(id=line.id), await DeviceGroup.get(id=immuno.id)
    assert line.active and line.expected_models == ["AU5800", "AU5800"]
    assert immuno.expected_models == ["ST16R", "DxI800"] and immuno.owner_id == w["owner"].id
    assert await groups.model_mismatch(line) is None and await groups.model_mismatch(immuno) is None
    split = await AuditEntry.get(action="group.split")
    assert split.changes == {"parts": [["L4", "L3"]], "new_groups": [immuno.id], "deactivated": False}


async def test_split_into_parts_covering_everything_deactivates_the_original(lab):
    w = lab
    line = await groups.create_group(w["hospital"], "检验流水线", ids(w, "L1", "L2", "L3"))
    a, b = await groups.split_group(line, [ids(w, "L1"), ids(w, "L3", "L2")], ["甲", "乙"])
    assert not (await DeviceGroup.get(id=line.id)).active and await order(line) == []
    assert (await order(a), await order(b)) == (["L1"], ["L3", "L2"])
    with pytest.raises(Conflict):
        await groups.add_member(line, w["L4"])


async def test_split_refuses_strangers_and_nothing_changes(lab):
    w = lab
    line = await groups.create_group(w["hospital"], "检验流水线", ids(w, "L1", "L2"))
    with pytest.raises(Unprocessable) as caught:
        await groups.split_group(line, [ids(w, "L2", "L5")], ["乙"])
    assert caught.value.message == "所选设备不属于设备组“检验流水线”"
    with pytest.raises(Unprocessable):
        await groups.split_group(line, [ids(w, "L1"), ids(w, "L1")], ["甲", "乙"])
    with pytest.raises(Unprocessable):
        await groups.split_group(line, [ids(w, "L1")], [])
    assert await order(line) == ["L1", "L2"] and await DeviceGroup.all().count() == 1


async def test_merge_appends_the_source_in_order_and_deactivates_it(lab):
    w = lab
    target = await groups.create_group(w["hospital"], "生化线", ids(w, "L2", "L1"), ["AU5800", "AU5800"])
    source = await groups.create_group(w["hospital"], "免疫线", ids(w, "L4", "L3"), owner=w["owner"])
    merged = await groups.merge_groups(target, source, actor=w["admin"])
    assert await order(merged) == ["L2", "L1", "L4", "L3"]
    assert [d.group_position for d in await groups.members(merged)] == [0, 1, 2, 3]
    source = await DeviceGroup.get(id=source.id)
    assert not source.active and await order(source) == []
    merged = await DeviceGroup.get(id=target.id)
    # The source expected nothing: its members' models join the expectation, so the merge makes no mismatch.
    assert merged.expected_models == ["AU5800", "AU5800", "ST16R", "DxI800"]
    assert merged.owner_id == w["owner"].id and await groups.model_mismatch(merged) is None
    assert {e.action for e in await AuditEntry.filter(entity="device_group")} >= {"group.merged", "group.merged_into"}
    with pytest.raises(Conflict):
        await groups.merge_groups(target, source)
    with pytest.raises(Unprocessable):
        await groups.merge_groups(target, target)


async def test_merge_of_groups_of_two_hospitals_is_refused(lab):
    w = lab
    mine = await groups.create_group(w["hospital"], "生化线", ids(w, "L1"))
    theirs = await groups.create_group(w["other"], "外院线", [w["foreign"].id])
    with pytest.raises(Unprocessable) as caught:
        await groups.merge_groups(mine, theirs)
    assert caught.value.message == "只能合并同一医院的设备组"
    assert (await DeviceGroup.get(id=theirs.id)).active and await order(theirs) == ["F1"]


async def test_reorder_needs_exactly_the_members(lab):
    w = lab
    line = await groups.create_group(w["hospital"], "生化线", ids(w, "L1", "L2", "L3"))
    await groups.reorder(line, ids(w, "L3", "L1", "L2"), actor=w["admin"])
    assert await order(line) == ["L3", "L1", "L2"]
    assert (await AuditEntry.get(action="group.reordered")).changes == {"order": ["L3", "L1", "L2"]}
    for wrong in (ids(w, "L3", "L1"), ids(w, "L3", "L1", "L2", "L4"), ids(w, "L3", "L1", "L1")):
        with pytest.raises(Unprocessable):
            await groups.reorder(line, wrong)
    assert await order(line) == ["L3", "L1", "L2"]


async def test_add_and_remove_members_keep_at_least_one(lab):
    w = lab
    line = await groups.create_group(w["hospital"], "生化线", ids(w, "L1", "L2"))
    await groups.add_member(line, w["L3"], position=0)
    assert await order(line) == ["L3", "L1", "L2"]
    with pytest.raises(Conflict):
        await groups.add_member(line, w["L3"])
    with pytest.raises(Unprocessable):
        await groups.add_member(line, w["foreign"])
    await groups.remove_member(line, w["L1"])
    await groups.remove_member(line, w["L3"])
    assert await order(line) == ["L2"] and (await Device.get(id=w["L1"].id)).group_id is None
    with pytest.raises(Conflict) as caught:
        await groups.remove_member(line, w["L2"])
    assert caught.value.message == "设备组至少要保留一台设备；如不再需要该设备组，请解散它"
    assert await order(line) == ["L2"]
    await groups.dissolve_group(line)
    assert (await Device.get(id=w["L2"].id)).group_id is None and not (await DeviceGroup.get(id=line.id)).active


async def test_mismatch_hint_names_missing_and_unexpected_models(lab):
    w = lab
    line = await groups.create_group(w["hospital"], "生化线", ids(w, "L1", "L5"),
                                     ["au5800", "AU5800", "DxI800"])
    assert await groups.model_mismatch(line) == (
        "设备组“生化线”的设备型号与预期不符：缺少 au5800、DxI800；多出 AU680。请核对设备组成员或预期型号。")
    await groups.update_group(line, expected_models=["AU5800", "AU680"])
    assert await groups.model_mismatch(line) is None
    card = await groups.group_card(line)
    assert [m["system_number"] for m in card["members"]] == ["L1", "L5"]
    assert (card["name"], card["hospital"], card["department"], card["mismatch"]) == (
        "生化线", "市第一人民医院", "检验科", None)
    assert card["members"][0]["group"] == "生化线"
    assert groups.mismatch_hint("线", ["A", "A", "B"], ["B", "C", "C"]) == (
        "设备组“线”的设备型号与预期不符：缺少 A ×2；多出 C ×2。请核对设备组成员或预期型号。")
