"""Device groups: devices that report as one (a lab line). Combine, split, merge, reorder, add and remove members.

Rules: a device is in at most one active group; all members belong to the group's hospital; an active group keeps
at least one member (an inactive group — merged away, split up entirely, or dissolved — keeps none, so a device
whose ``group`` is set is always in an active group). ``expected_models`` says which models the line should hold;
``model_mismatch`` tells, in Chinese, how the members differ from it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Sequence

from core import audit
from core.errors import Conflict, NotFound, Unprocessable
from core.models import Department, Hospital, User
from repair._shared import clean_text, ref_id, squeeze, transaction
from repair.devices import department_in_hospital, device_card, owner_in_hospital
from repair.models import Device, DeviceGroup

_UNSET: Any = object()
MAX_EXPECTED_MODELS = 100


def _model_key(model: str) -> str:
    return squeeze(model).upper()


def _clean_name(name: Any) -> str:
    cleaned = clean_text(name)
    if not cleaned:
        raise Unprocessable("请填写设备组名称", code="group_name_missing")
    if len(cleaned) > 64:
        raise Unprocessable("设备组名称太长（最多 64 个字）", code="too_long")
    return cleaned


def _clean_models(models: Iterable[Any] | None) -> list[str]:
    if models is None:
        return []
    if isinstance(models, str):
        raise Unprocessable("预期型号须为型号列表", code="invalid_expected_models")
    cleaned = [clean_text(m, nfkc=True) for m in models]
    if any(not m for m in cleaned):
        raise Unprocessable("预期型号不能为空", code="invalid_expected_models")
    if len(cleaned) > MAX_EXPECTED_MODELS:
        raise Unprocessable(f"预期型号最多 {MAX_EXPECTED_MODELS} 个", code="invalid_expected_models")
    return cleaned


def _device_ids(device_ids: Iterable[Any], *, what: str = "设备") -> list[int]:
    ids = [ref_id(d) for d in device_ids]
    if not ids:
        raise Unprocessable(f"请至少选择一台{what}", code="no_devices")
    if len(set(ids)) != len(ids):
        raise Unprocessable("同一台设备不能重复选择", code="duplicate_device")
    return ids


def _label(device: Device) -> str:
    return f"{device.name}（{device.system_number}）"


async def _lock_group(group, conn, *, active: bool = True) -> DeviceGroup:
    found = await DeviceGroup.filter(id=ref_id(group)).using_db(conn).select_for_update().first()
    if found is None:
        raise NotFound("设备组不存在", code="group_not_found")
    if active and not found.active:
        raise Conflict(f"设备组“{found.name}”已停用", code="group_inactive")
    return found


async def _members(group_id: int, conn=None) -> list[Device]:
    return await Device.filter(group_id=group_id).using_db(conn).order_by("group_position", "id")


async def _free_devices(hospital_id: int, ids: list[int], conn) -> list[Device]:
    """The devices, in the order asked, after checking they exist, belong to the hospital and are in no group."""
    found = {d.id: d for d in await Device.filter(id__in=ids).using_db(conn).select_for_update()}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound("设备不存在", code="device_not_found")
    devices = [found[i] for i in ids]
    for device in devices:
        if device.hospital_id != hospital_id:
            raise Unprocessable(f"设备{_label(device)}不属于该医院", code="device_of_other_hospital")
        if device.group_id is not None:
            other = await DeviceGroup.get(id=device.group_id, using_db=conn)
            raise Conflict(f"设备{_label(device)}已在设备组“{other.name}”中", code="device_in_group")
    return devices


async def _place(devices: Sequence[Device], group: DeviceGroup, conn, *, start: int = 0) -> None:
    """Give the devices to the group at positions start, start+1, …; the update only applies where the device's
    group is still what we read, so a concurrent change makes this fail instead of stealing the device."""
    for offset, device in enumerate(devices):
        moved = await Device.filter(id=device.id, group_id=device.group_id).using_db(conn).update(
            group_id=group.id, group_position=start + offset)
        if not moved:
            raise Conflict(f"设备{_label(device)}刚被其他操作修改，请重试", code="concurrent_change")
        device.group_id, device.group_position = group.id, start + offset


async def _renumber(devices: Sequence[Device], conn) -> None:
    for position, device in enumerate(devices):
        if device.group_position != position:
            await Device.filter(id=device.id).using_db(conn).update(group_position=position)
            device.group_position = position


def _common_department(devices: Sequence[Device]) -> int | None:
    departments = {d.department_id for d in devices}
    return departments.pop() if len(departments) == 1 else None


async def _rebuild(hospital_id: int) -> None:
    from repair.service_groups import rebuild_service_groups  # service groups read groups; import at use

    await rebuild_service_groups(hospital_id)


# -- reading ------------------------------------------------------------------------------------------------------
async def get_group(group: DeviceGroup | int) -> DeviceGroup:
    found = await DeviceGroup.get_or_none(id=ref_id(group))
    if found is None:
        raise NotFound("设备组不存在", code="group_not_found")
    return found


async def members(group: DeviceGroup | int) -> list[Device]:
    """The members in their order on the line."""
    return await _members(ref_id(group))


async def list_hospital_groups(hospital_id: int, *, include_inactive: bool = False) -> list[DeviceGroup]:
    query = DeviceGroup.filter(hospital_id=hospital_id)
    if not include_inactive:
        query = query.filter(active=True)
    return await query.order_by("name", "id")


def mismatch_hint(group_name: str, expected: Sequence[str], actual: Sequence[str]) -> str | None:
    """Compare the models as multisets (case, width and spaces ignored); None when they agree or nothing is
    expected."""
    if not expected:
        return None
    spelling: dict[str, str] = {}
    for model in list(expected) + list(actual):
        spelling.setdefault(_model_key(model), model or "（未填型号）")
    want, have = Counter(_model_key(m) for m in expected), Counter(_model_key(m) for m in actual)
    missing, extra = want - have, have - want
    if not missing and not extra:
        return None

    def listing(counter: Counter) -> str:
        return "、".join(spelling[k] + (f" ×{n}" if n > 1 else "") for k, n in sorted(counter.items()))

    parts = []
    if missing:
        parts.append(f"缺少 {listing(missing)}")
    if extra:
        parts.append(f"多出 {listing(extra)}")
    return f"设备组“{group_name}”的设备型号与预期不符：" + "；".join(parts) + "。请核对设备组成员或预期型号。"


async def model_mismatch(group: DeviceGroup | int) -> str | None:
    """A Chinese hint listing missing/unexpected models, or None when the members match ``expected_models``."""
    group = await get_group(group)  # read afresh: a caller's instance may predate a change
    return mismatch_hint(group.name, group.expected_models or [], [d.model for d in await _members(group.id)])


async def group_card(group: DeviceGroup | int) -> dict:
    """What a page or a WeChat reply shows about a group: its members in order, each as a device card."""
    group = await get_group(group)
    hospital = await Hospital.get(id=group.hospital_id)
    department = await Department.get_or_none(id=group.department_id) if group.department_id else None
    owner = await User.get_or_none(id=group.owner_id) if group.owner_id else None
    member_devices = await _members(group.id)
    return {
        "id": group.id, "scene": group.scene, "name": group.name, "hospital_id": group.hospital_id,
        "hospital": hospital.name, "department": department.name if department else "",
        "owner": owner.label() if owner else None, "active": group.active, "repair_count": group.repair_count,
        "expected_models": list(group.expected_models or []),
        "members": [await device_card(d) for d in member_devices],
        "mismatch": mismatch_hint(group.name, group.expected_models or [], [d.model for d in member_devices]),
    }


def card_text(card: dict) -> str:
    """The group card as a WeChat text reply."""
    lines = [f"设备组：{card['name']}", f"医院：{card['hospital']}" +
             (f"　科室：{card['department']}" if card["department"] else ""), "成员："]
    lines += [f"{i}. {m['name']}（{m['model'] or '未填型号'}，{m['system_number']}）"
              for i, m in enumerate(card["members"], 1)]
    if card["mismatch"]:
        lines.append(card["mismatch"])
    return "\n".join(lines)


# -- changing -----------------------------------------------------------------------------------------------------
async def create_group(hospital: Hospital | int, name: str, device_ids: Iterable[Any],
                       expected_models: Iterable[str] | None = None, *, department: Department | int | None = None,
                       owner: User | int | None = None, actor: User | None = None, actor_label: str | None = None,
                       using_db=None) -> DeviceGroup:
    """Combine devices into a new group, in the order given. The department defaults to the members' common one."""
    name = _clean_name(name)
    ids = _device_ids(device_ids)
    models = _clean_models(expected_models)
    hospital_id = ref_id(hospital)
    async with transaction(using_db) as conn:
        if not await Hospital.filter(id=hospital_id).using_db(conn).exists():
            raise NotFound("医院不存在", code="hospital_not_found")
        devices = await _free_devices(hospital_id, ids, conn)
        dep = await department_in_hospital(hospital_id, department, conn)
        owner_user = await owner_in_hospital(hospital_id, owner, conn)
        group = await DeviceGroup.create(hospital_id=hospital_id, name=name, expected_models=models, owner=owner_user,
                                         department_id=dep.id if dep else _common_department(devices),
                                         using_db=conn)
        await _place(devices, group, conn)
        await audit.record("group.created", "device_group", group.id, actor=actor, actor_label=actor_label,
                           changes={"name": name, "members": [d.system_number for d in devices],
                                    "expected_models": models, "owner": group.owner_id}, using_db=conn)
    if using_db is None:
        await _rebuild(hospital_id)
    return group


async def update_group(group: DeviceGroup | int, *, name: str = _UNSET, expected_models: Iterable[str] | None = _UNSET,
                       owner: User | int | None = _UNSET, department: Department | int | None = _UNSET,
                       actor: User | None = None, actor_label: str | None = None) -> DeviceGroup:
    """Rename, set the expected models, the owner or the department; only real changes are stored."""
    async with transaction() as conn:
        current = await _lock_group(group, conn)
        changes: dict = {}
        if name is not _UNSET and _clean_name(name) != current.name:
            changes["name"] = [current.name, _clean_name(name)]
            current.name = _clean_name(name)
        if expected_models is not _UNSET and _clean_models(expected_models) != current.expected_models:
            changes["expected_models"] = [current.expected_models, _clean_models(expected_models)]
            current.expected_models = _clean_models(expected_models)
        if owner is not _UNSET and ref_id(owner) != current.owner_id:
            changes["owner"] = [current.owner_id, ref_id(owner)]
            current.owner = await owner_in_hospital(current.hospital_id, owner, conn)
        if department is not _UNSET and ref_id(department) != current.department_id:
            changes["department"] = [current.department_id, ref_id(department)]
            current.department = await department_in_hospital(current.hospital_id, department, conn)
        if not changes:
            return current
        await current.save(using_db=conn)
        await audit.record("group.updated", "device_group", current.id, actor=actor, actor_label=actor_label,
                           changes=changes, using_db=conn)
    if "owner" in changes or "name" in changes:
        await _rebuild(current.hospital_id)
    return current


async def split_group(group: DeviceGroup | int, parts: Sequence[Sequence[Any]], names: Sequence[str], *,
                      actor: User | None = None, actor_label: str | None = None) -> list[DeviceGroup]:
    """Move each part (device ids, in the order given) into a new group named ``names[i]``.

    Members named in no part stay in the original group (its QR labels keep working); when the parts take every
    member, the original group is deactivated. Expected models travel with the members that fill them.
    """
    if not parts:
        raise Unprocessable("请至少指定一部分设备", code="no_parts")
    if len(names) != len(parts):
        raise Unprocessable("每一部分都需要一个新设备组名称", code="names_mismatch")
    clean_names = [_clean_name(n) for n in names]
    part_ids = [_device_ids(p) for p in parts]
    flat = [i for p in part_ids for i in p]
    if len(set(flat)) != len(flat):
        raise Unprocessable("同一台设备不能出现在两部分中", code="duplicate_device")
    async with transaction() as conn:
        original = await _lock_group(group, conn)
        current = await _members(original.id, conn)
        by_id = {d.id: d for d in current}
        strangers = [i for i in flat if i not in by_id]
        if strangers:
            raise Unprocessable(f"所选设备不属于设备组“{original.name}”", code="not_a_member")
        pool = list(original.expected_models or [])
        created = []
        for name, ids in zip(clean_names, part_ids):
            devices = [by_id[i] for i in ids]
            expected = []
            for device in devices:  # the expectations these members fill move with them
                match = next((m for m in pool if _model_key(m) == _model_key(device.model)), None)
                if match is not None:
                    pool.remove(match)
                    expected.append(match)
            new = await DeviceGroup.create(hospital_id=original.hospital_id, name=name, expected_models=expected,
                                           department_id=_common_department(devices) or original.department_id,
                                           owner_id=original.owner_id, using_db=conn)
            await _place(devices, new, conn)
            await audit.record("group.created", "device_group", new.id, actor=actor, actor_label=actor_label,
                               changes={"name": name, "members": [d.system_number for d in devices],
                                        "expected_models": expected, "split_from": original.id}, using_db=conn)
            created.append(new)
        remaining = [d for d in current if d.id not in set(flat)]
        await _renumber(remaining, conn)
        original.expected_models = pool if remaining else []
        original.active = bool(remaining)
        await original.save(using_db=conn)
        await audit.record("group.split", "device_group", original.id, actor=actor, actor_label=actor_label,
                           changes={"parts": [[by_id[i].system_number for i in ids] for ids in part_ids],
                                    "new_groups": [g.id for g in created], "deactivated": not remaining},
                           using_db=conn)
    await _rebuild(original.hospital_id)
    return created


async def merge_groups(target: DeviceGroup | int, source: DeviceGroup | int, *, actor: User | None = None,
                       actor_label: str | None = None) -> DeviceGroup:
    """Append the source's members (in their order) to the target; the source is deactivated.

    The target's expected models gain the source's; a side that expected nothing contributes its members' models,
    so the merge by itself never makes a mismatch.
    """
    if ref_id(target) == ref_id(source):
        raise Unprocessable("不能把设备组合并到它自己", code="same_group")
    async with transaction() as conn:
        # Lock in id order, so two merges of the same pair in opposite directions cannot deadlock.
        first, second = sorted((ref_id(target), ref_id(source)))
        locked = {g.id: g for g in (await _lock_group(first, conn), await _lock_group(second, conn))}
        into, away = locked[ref_id(target)], locked[ref_id(source)]
        if into.hospital_id != away.hospital_id:
            raise Unprocessable("只能合并同一医院的设备组", code="group_of_other_hospital")
        kept, moved = await _members(into.id, conn), await _members(away.id, conn)
        if into.expected_models or away.expected_models:
            into.expected_models = (into.expected_models or [d.model for d in kept]) + \
                                   (away.expected_models or [d.model for d in moved])
        await _place(moved, into, conn, start=len(kept))
        into.owner_id = into.owner_id or away.owner_id
        await into.save(using_db=conn)
        away.active, away.expected_models = False, []
        await away.save(using_db=conn)
        await audit.record("group.merged", "device_group", into.id, actor=actor, actor_label=actor_label,
                           changes={"source": away.id, "added": [d.system_number for d in moved]}, using_db=conn)
        await audit.record("group.merged_into", "device_group", away.id, actor=actor, actor_label=actor_label,
                           changes={"target": into.id}, using_db=conn)
    await _rebuild(into.hospital_id)
    return into


async def reorder(group: DeviceGroup | int, device_ids_in_order: Sequence[Any], *, actor: User | None = None,
                  actor_label: str | None = None) -> list[Device]:
    """Set the members' order on the line; the list must name every member exactly once."""
    ids = _device_ids(device_ids_in_order)
    async with transaction() as conn:
        current = await _lock_group(group, conn)
        by_id = {d.id: d for d in await _members(current.id, conn)}
        if set(ids) != set(by_id):
            raise Unprocessable("新顺序须包含设备组的全部设备，且不含其他设备", code="order_mismatch")
        ordered = [by_id[i] for i in ids]
        await _renumber(ordered, conn)
        await audit.record("group.reordered", "device_group", current.id, actor=actor, actor_label=actor_label,
                           changes={"order": [d.system_number for d in ordered]}, using_db=conn)
    return ordered


async def add_member(group: DeviceGroup | int, device: Device | int, *, position: int | None = None,
                     actor: User | None = None, actor_label: str | None = None) -> list[Device]:
    """Put a free device of the group's hospital into the group, at ``position`` (0-based) or at the end."""
    async with transaction() as conn:
        current = await _lock_group(group, conn)
        found = await Device.get_or_none(id=ref_id(device), using_db=conn)
        if found is not None and found.group_id == current.id:
            raise Conflict(f"设备{_label(found)}已在该设备组中", code="already_member")
        (new,) = await _free_devices(current.hospital_id, [ref_id(device)], conn)
        ordered = await _members(current.id, conn)
        at = len(ordered) if position is None else max(0, min(position, len(ordered)))
        await _place([new], current, conn, start=at)
        ordered.insert(at, new)
        await _renumber(ordered, conn)
        await audit.record("group.member_added", "device_group", current.id, actor=actor, actor_label=actor_label,
                           changes={"device": new.system_number, "position": at}, using_db=conn)
    await _rebuild(current.hospital_id)
    return ordered


async def remove_member(group: DeviceGroup | int, device: Device | int, *, actor: User | None = None,
                        actor_label: str | None = None) -> list[Device]:
    """Take a device out of the group; the last member cannot be removed (dissolve the group instead)."""
    async with transaction() as conn:
        current = await _lock_group(group, conn)
        ordered = await _members(current.id, conn)
        leaving = next((d for d in ordered if d.id == ref_id(device)), None)
        if leaving is None:
            raise Unprocessable("该设备不在此设备组中", code="not_a_member")
        if len(ordered) == 1:
            raise Conflict("设备组至少要保留一台设备；如不再需要该设备组，请解散它", code="last_member")
        await Device.filter(id=leaving.id).using_db(conn).update(group_id=None, group_position=None)
        ordered.remove(leaving)
        await _renumber(ordered, conn)
        await audit.record("group.member_removed", "device_group", current.id, actor=actor, actor_label=actor_label,
                           changes={"device": leaving.system_number}, using_db=conn)
    await _rebuild(current.hospital_id)
    return ordered


async def dissolve_group(group: DeviceGroup | int, *, actor: User | None = None,
                         actor_label: str | None = None) -> DeviceGroup:
    """Deactivate the group and free its members (their tickets keep pointing at it)."""
    async with transaction() as conn:
        current = await _lock_group(group, conn)
        released = await _members(current.id, conn)
        await Device.filter(group_id=current.id).using_db(conn).update(group_id=None, group_position=None)
        current.active = False
        await current.save(using_db=conn)
        await audit.record("group.dissolved", "device_group", current.id, actor=actor, actor_label=actor_label,
                           changes={"released": [d.system_number for d in released]}, using_db=conn)
    await _rebuild(current.hospital_id)
    return current
